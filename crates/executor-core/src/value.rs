//! JSON values in and out of scripts: what a script receives (`event`, `req`) and what it
//! returns travel as JSON, so scripts see the same shapes the HTTP API documents.

use rhai::Dynamic;

/// `value` as a script value: objects become maps, arrays arrays, numbers integers or
/// floats, `null` unit (`()`).
pub fn to_script(value: &serde_json::Value) -> Dynamic {
    rhai::serde::to_dynamic(value).unwrap_or(Dynamic::UNIT)
}

/// A script value as JSON; values JSON cannot hold (functions, timestamps, …) are an
/// error naming their type.
pub fn from_script(value: &Dynamic) -> Result<serde_json::Value, String> {
    rhai::serde::from_dynamic::<serde_json::Value>(value)
        .map_err(|e| format!("a {} cannot be turned into JSON: {e}", value.type_name()))
}
