//! The HTTP routes manager-core serves. Access control is not done here: the
//! [`crate::auth::require_access`] layer applies the route table before any handler runs,
//! and handlers only check that the app they touch exists.

use std::sync::Arc;

use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::Authenticator;
use crate::db::Db;
use crate::http::event_input::PublishLimits;
use crate::publish::Publisher;

pub mod admin_session;
pub mod apps;
pub mod deliveries;
pub mod event_input;
pub mod events;
pub mod functions;
pub mod keys;
pub mod scripts;
pub mod sources;
pub mod test_runs;
pub mod topics;
pub mod triggers;

/// What manager-core handlers share: a handle on [`ManagerParts`]. axum clones the
/// state for every request, so it is one `Arc` (one count to bump), not the dozen
/// pools, caches and channels it holds (their clones and drops were 3-4% of a
/// publish's CPU).
#[derive(Clone)]
pub struct ManagerState(Arc<ManagerParts>);

impl ManagerState {
    /// The state of a router over `parts`.
    pub fn new(parts: ManagerParts) -> ManagerState {
        ManagerState(Arc::new(parts))
    }
}

impl std::ops::Deref for ManagerState {
    type Target = ManagerParts;

    fn deref(&self) -> &ManagerParts {
        &self.0
    }
}

/// Everything manager-core handlers share.
pub struct ManagerParts {
    /// The database.
    pub db: Db,
    /// The key authenticator, told about revocations and deletions.
    pub auth: Arc<Authenticator>,
    /// The group-committing event writer.
    pub publisher: Publisher,
    /// Publish size limits.
    pub limits: PublishLimits,
    /// Wakes the dispatcher when work is put back on the outbox.
    pub dispatch_wake: Arc<tokio::sync::Notify>,
    /// Dashboard session settings.
    pub admin: admin_session::AdminSettings,
    /// Live subscribers, told when a topic or app stops being subscribable.
    pub realtime: Arc<dyn picloud_shared::events::RealtimeBroadcaster>,
    /// This node's id in cluster notifications.
    pub node_id: String,
    /// Which addresses webhooks may reach: trigger URLs are checked against it when saved.
    pub webhook_policy: Arc<crate::dispatcher::ssrf::AddressPolicy>,
    /// Which addresses sources' databases may be at: checked when a source is added.
    pub source_policy: Arc<crate::dispatcher::ssrf::AddressPolicy>,
    /// Runs scripts (and compiles them before they are saved).
    pub scripts: picloud_executor_core::Executor,
    /// Where finished script runs are recorded.
    pub run_log: crate::run_log::RunLog,
    /// The scripts' current versions, so a call need not read them first.
    pub script_cache: std::sync::Arc<crate::script_cache::ScriptCache>,
}

impl ManagerState {
    /// Ends the live streams of `topic` of `app` (every topic when `None`) on this node.
    /// Other nodes hear of it from the cluster feed notice the change's transaction sent.
    pub fn close_streams(&self, app: &str, topic: Option<&picloud_shared::TopicName>) {
        if let Ok(id) = picloud_shared::AppId::parse(app) {
            match topic {
                Some(topic) => self.realtime.close_topic(&id, topic),
                None => self.realtime.close_app(&id),
            }
        }
    }
}

/// Every manager-core route with its OpenAPI description.
pub fn router(state: ManagerState) -> OpenApiRouter {
    OpenApiRouter::new()
        .routes(routes!(
            admin_session::sign_in,
            admin_session::current_session,
            admin_session::sign_out
        ))
        .routes(routes!(apps::list_apps, apps::create_app))
        .routes(routes!(apps::get_app, apps::delete_app))
        .routes(routes!(keys::list_app_keys, keys::create_app_key))
        .routes(routes!(keys::revoke_app_key))
        .routes(routes!(keys::list_instance_keys, keys::create_instance_key))
        .routes(routes!(keys::revoke_instance_key))
        .routes(routes!(topics::list_topics, topics::create_topic))
        .routes(routes!(topics::get_topic, topics::delete_topic))
        .routes(routes!(topics::set_external))
        .routes(routes!(events::publish, events::read_events))
        .routes(routes!(events::publish_batch))
        .routes(routes!(triggers::list_triggers, triggers::create_trigger))
        .routes(routes!(
            triggers::get_trigger,
            triggers::update_trigger,
            triggers::delete_trigger
        ))
        .routes(routes!(triggers::reveal_trigger_secret))
        .routes(routes!(triggers::rotate_trigger_secret))
        .routes(routes!(deliveries::list_deliveries))
        .routes(routes!(deliveries::get_delivery))
        .routes(routes!(deliveries::retry_delivery))
        .routes(routes!(
            deliveries::list_dead_letters,
            deliveries::purge_dead_letters
        ))
        .routes(routes!(
            deliveries::get_dead_letter,
            deliveries::purge_dead_letter
        ))
        .routes(routes!(deliveries::replay_dead_letter))
        .routes(routes!(deliveries::replay_dead_letters))
        .routes(routes!(scripts::list_scripts))
        .routes(routes!(
            scripts::save_script,
            scripts::get_script,
            scripts::delete_script
        ))
        .routes(routes!(scripts::list_script_versions))
        .routes(routes!(scripts::restore_script_version))
        .routes(routes!(scripts::list_script_runs))
        .routes(routes!(test_runs::test_script))
        .routes(routes!(sources::list_sources, sources::create_source))
        .routes(routes!(
            sources::get_source,
            sources::update_source,
            sources::delete_source
        ))
        .routes(routes!(
            functions::call_function_get,
            functions::call_function_post
        ))
        .with_state(state)
}
