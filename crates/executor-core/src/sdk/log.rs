//! `log::info(message)`, `log::warn(message)`, `log::error(message)`: lines in the run log.
//! A message that is not a string is logged as Rhai displays it.

use rhai::Dynamic;

use rhai::Module;

use super::sdk_fn;
use crate::sandbox::{log_line, LogLevel};

pub(super) fn register(module: &mut Module) {
    sdk_fn("info").set_into_module(module, |m: Dynamic| {
        log_line(LogLevel::Info, &m.to_string())
    });
    sdk_fn("warn").set_into_module(module, |m: Dynamic| {
        log_line(LogLevel::Warn, &m.to_string())
    });
    sdk_fn("error").set_into_module(module, |m: Dynamic| {
        log_line(LogLevel::Error, &m.to_string())
    });
}
