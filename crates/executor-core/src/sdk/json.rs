//! `json::parse(text)` and `json::stringify(value)`.

use rhai::Dynamic;

use super::{sdk_fn, throw, SdkResult};
use crate::value::{from_script, to_script};
use rhai::Module;

pub(super) fn register(module: &mut Module) {
    sdk_fn("parse").set_into_module(module, |text: &str| -> SdkResult<Dynamic> {
        match serde_json::from_str::<serde_json::Value>(text) {
            Ok(value) => Ok(to_script(&value)),
            Err(e) => throw(format!("json::parse: not JSON: {e}")),
        }
    });
    sdk_fn("stringify").set_into_module(module, |value: Dynamic| -> SdkResult<String> {
        match from_script(&value) {
            Ok(json) => Ok(json.to_string()),
            Err(e) => throw(format!("json::stringify: {e}")),
        }
    });
}
