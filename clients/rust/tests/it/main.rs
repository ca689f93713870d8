//! The Rust SDK's integration tests, one module per area, in one test binary (each
//! binary of its own links the whole dependency graph again).

mod errors;
mod manage;
mod openapi;
mod pubsub;
mod realtime;
mod retries;
mod routes;
mod support;
mod webhooks;
