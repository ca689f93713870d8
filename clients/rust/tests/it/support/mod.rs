//! Helpers shared by the integration tests.

pub mod mock;
pub mod openapi;
pub mod server;
