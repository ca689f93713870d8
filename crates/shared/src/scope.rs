//! The API-key scopes and sets of them.

use std::fmt;

use serde::{Deserialize, Serialize};

/// What an API key may do. Every route names the scope it needs in [`crate::access`].
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
)]
pub enum Scope {
    /// Manage apps and keys of the whole instance; nothing inside an app.
    #[serde(rename = "instance:admin")]
    InstanceAdmin,
    /// Everything inside one app, including topic management and its keys.
    #[serde(rename = "app:admin")]
    AppAdmin,
    /// Read an app's topics, event log, triggers, deliveries and dead letters.
    #[serde(rename = "app:read")]
    AppRead,
    /// Publish events to the app's topics.
    #[serde(rename = "pubsub:publish")]
    PubsubPublish,
    /// Mint subscriber tokens for browsers.
    #[serde(rename = "pubsub:token")]
    PubsubToken,
    /// Create, change and delete triggers.
    #[serde(rename = "triggers:manage")]
    TriggersManage,
    /// Retry deliveries and replay or purge dead letters.
    #[serde(rename = "deliveries:manage")]
    DeliveriesManage,
    /// Save, restore and delete scripts, and read their source and runs.
    #[serde(rename = "scripts:manage")]
    ScriptsManage,
    /// Call the app's HTTP functions whose access is `key`.
    #[serde(rename = "functions:invoke")]
    FunctionsInvoke,
}

impl Scope {
    /// Every scope, in a stable order.
    pub const ALL: [Scope; 9] = [
        Scope::InstanceAdmin,
        Scope::AppAdmin,
        Scope::AppRead,
        Scope::PubsubPublish,
        Scope::PubsubToken,
        Scope::TriggersManage,
        Scope::DeliveriesManage,
        Scope::ScriptsManage,
        Scope::FunctionsInvoke,
    ];

    /// The scope's wire name, e.g. `pubsub:publish`.
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::InstanceAdmin => "instance:admin",
            Scope::AppAdmin => "app:admin",
            Scope::AppRead => "app:read",
            Scope::PubsubPublish => "pubsub:publish",
            Scope::PubsubToken => "pubsub:token",
            Scope::TriggersManage => "triggers:manage",
            Scope::DeliveriesManage => "deliveries:manage",
            Scope::ScriptsManage => "scripts:manage",
            Scope::FunctionsInvoke => "functions:invoke",
        }
    }

    /// Parses a wire name; `None` for anything else.
    pub fn parse(value: &str) -> Option<Scope> {
        Scope::ALL.into_iter().find(|s| s.as_str() == value)
    }

    /// Whether this scope belongs to an app key (all but `instance:admin`).
    pub fn is_app_scope(self) -> bool {
        self != Scope::InstanceAdmin
    }

    fn bit(self) -> u16 {
        1 << (self as u16)
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A set of scopes as held by one key.
///
/// `app:admin` grants every other app scope, so [`ScopeSet::grants`] is the one place
/// that implication lives.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct ScopeSet(u16);

impl ScopeSet {
    /// The empty set.
    pub const EMPTY: ScopeSet = ScopeSet(0);

    /// Whether the set holds `scope` literally.
    pub fn contains(self, scope: Scope) -> bool {
        self.0 & scope.bit() != 0
    }

    /// Whether a key holding this set may act with `scope`.
    pub fn grants(self, scope: Scope) -> bool {
        self.contains(scope) || (scope.is_app_scope() && self.contains(Scope::AppAdmin))
    }

    /// The set with `scope` added.
    pub fn with(self, scope: Scope) -> ScopeSet {
        ScopeSet(self.0 | scope.bit())
    }

    /// Whether the set is empty.
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The scopes in the set, in [`Scope::ALL`] order.
    pub fn iter(self) -> impl Iterator<Item = Scope> {
        Scope::ALL.into_iter().filter(move |s| self.contains(*s))
    }

    /// Space-separated wire names, the form stored in the database.
    pub fn to_db_string(self) -> String {
        self.iter().map(Scope::as_str).collect::<Vec<_>>().join(" ")
    }

    /// Parses the stored form; unknown names are dropped, so a scope retired in a later
    /// version grants nothing rather than failing every request.
    pub fn from_db_string(value: &str) -> ScopeSet {
        value.split_whitespace().filter_map(Scope::parse).collect()
    }
}

impl FromIterator<Scope> for ScopeSet {
    fn from_iter<I: IntoIterator<Item = Scope>>(iter: I) -> Self {
        iter.into_iter().fold(ScopeSet::EMPTY, ScopeSet::with)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_names_round_trip() {
        for s in Scope::ALL {
            assert_eq!(Scope::parse(s.as_str()), Some(s));
            let json = serde_json::to_string(&s).unwrap();
            assert_eq!(json, format!("\"{}\"", s.as_str()));
        }
        assert_eq!(Scope::parse("admin"), None);
    }

    #[test]
    fn app_admin_grants_app_scopes_only() {
        let admin: ScopeSet = [Scope::AppAdmin].into_iter().collect();
        for s in Scope::ALL {
            assert_eq!(admin.grants(s), s != Scope::InstanceAdmin, "{s}");
        }
        let instance: ScopeSet = [Scope::InstanceAdmin].into_iter().collect();
        assert!(instance.grants(Scope::InstanceAdmin));
        assert!(!instance.grants(Scope::AppRead));
        let publish: ScopeSet = [Scope::PubsubPublish].into_iter().collect();
        assert!(!publish.grants(Scope::AppRead));
    }

    #[test]
    fn db_string_round_trip() {
        let set: ScopeSet = [Scope::AppRead, Scope::PubsubToken].into_iter().collect();
        assert_eq!(set.to_db_string(), "app:read pubsub:token");
        assert_eq!(
            ScopeSet::from_db_string("app:read pubsub:token retired:x"),
            set
        );
    }
}
