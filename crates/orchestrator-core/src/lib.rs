//! Realtime delivery for PiCloud: the Server-Sent-Events endpoint, the in-process
//! broadcaster and the HMAC subscriber-token authority.
//!
//! This crate depends only on `picloud-shared`; it meets the rest of PiCloud through the
//! traits defined there, so that `manager-core` never names it. Its behaviour lands with
//! the realtime issue; until then the crate only fixes its place in the dependency graph.
