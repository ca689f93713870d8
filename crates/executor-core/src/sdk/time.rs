//! `time::now_ms()`: the current time as Unix milliseconds.

use rhai::Module;

use super::sdk_fn;

pub(super) fn register(module: &mut Module) {
    sdk_fn("now_ms").set_into_module(module, picloud_shared::time::now_ms);
}
