//! End-to-end tests of the picloud binary and `build_app`: a real server on a random
//! loopback port, talked to over HTTP (see `common`). One binary for the crate (one link
//! instead of one per file); each file below is a module.

mod common;

mod access;
mod admin;
mod api;
mod browsers;
mod cli;
mod connections;
mod crash;
mod cron;
mod dispatch;
mod early_rejections;
mod functions;
mod openapi;
mod publish;
mod readme;
mod realtime;
mod realtime_server;
mod script_handlers;
mod scripts;
mod secrets;
mod smuggling;
mod sources;
mod storage;
mod stream_lifetimes;
mod test_runs;
mod triggers;
