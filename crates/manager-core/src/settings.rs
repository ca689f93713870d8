//! Instance-wide settings and one-time markers, such as "the first instance key was
//! created", kept in the `settings` table.

/// The marker claimed by the node that creates the first instance key.
pub const BOOTSTRAP_MARKER: &str = "bootstrap.instance_key";
