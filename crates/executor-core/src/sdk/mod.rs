//! The modules a script calls, registered on every engine ([`register`]):
//!
//! - `pubsub`: `publish`, `publish_batch`, `subscriber_token` (the app's own topics).
//! - `http`: `request`, through the server's guarded outbound client.
//! - `crypto`: `hmac_sha256`, `verify_hs256_jwt`.
//! - `json`: `parse`, `stringify`.
//! - `time`: `now_ms`.
//! - `log`: `info`, `warn`, `error` (to the run log, as `print` and `debug` are).
//!
//! A function that fails throws an error whose text says why; the script may catch it.

mod crypto;
mod http;
mod json;
mod log;
mod pubsub;
mod time;

use rhai::{Engine, EvalAltResult, FuncRegistration, Module};

/// Adds one module's functions.
type Filler = fn(&mut Module);

/// Registers every SDK module on `engine`.
pub fn register(engine: &mut Engine) {
    let modules: [(&str, Filler); 6] = [
        ("pubsub", pubsub::register),
        ("http", http::register),
        ("crypto", crypto::register),
        ("json", json::register),
        ("time", time::register),
        ("log", log::register),
    ];
    for (name, fill) in modules {
        let mut module = Module::new();
        fill(&mut module);
        engine.register_static_module(name, module.into());
    }
}

/// How every SDK function is registered: volatile (never folded at compile time: most
/// act on the world) and in its module's own namespace.
pub(crate) fn sdk_fn(name: &str) -> FuncRegistration {
    FuncRegistration::new(name)
        .with_volatility(true)
        .with_purity(true)
}

/// The result of an SDK function: an error text becomes a thrown runtime error.
pub(crate) type SdkResult<T> = Result<T, Box<EvalAltResult>>;

/// The string at `name` in `map`; `None` when absent or `()`. `context` prefixes the
/// error thrown when it is something else.
pub(crate) fn optional_string(
    map: &rhai::Map,
    name: &str,
    context: &str,
) -> SdkResult<Option<String>> {
    match map.get(name) {
        None => Ok(None),
        Some(v) if v.is_unit() => Ok(None),
        Some(v) => match v.clone().into_string() {
            Ok(s) => Ok(Some(s)),
            Err(_) => throw(format!("{context}: `{name}` is not a string")),
        },
    }
}

/// Throws `message` in the script.
pub(crate) fn throw<T>(message: impl Into<String>) -> SdkResult<T> {
    Err(message.into().into())
}
