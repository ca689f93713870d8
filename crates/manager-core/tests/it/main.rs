//! manager-core's integration tests: storage, publishing and delivery against both
//! databases, through the crate's public interface. One binary for the crate (one link
//! instead of one per file); each file below is a module.

mod admins;
mod dispatcher;
mod publish;
mod secrets;
mod storage;
mod triggers;
