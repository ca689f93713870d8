//! The current version of each script, kept in memory so a function call or a handler
//! run does not read the database first. A save, restore or delete forgets the script on
//! the node that made it, after its commit; the other nodes forget it when the cluster
//! feed brings the `script-changed` notice sent in the same transaction (and forget
//! everything when the feed reconnects, since notices may have been lost).
//!
//! A lookup that misses reads the database; the row it read is kept only if nothing was
//! forgotten meanwhile, so a read racing a save never puts the older version back.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use picloud_shared::cluster::{Notice, NoticeHandler};

use crate::db::Db;
use crate::error::Result;
use crate::scripts::Script;

/// Most source bytes kept; past it the cache starts over.
const MAX_BYTES: usize = 64 * 1024 * 1024;

/// Scripts by (app, name).
#[derive(Debug, Default)]
pub struct ScriptCache {
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    scripts: HashMap<(String, String), Arc<Script>>,
    bytes: usize,
    /// Bumped by every forget: a read that began before one must not be kept.
    epoch: u64,
}

impl ScriptCache {
    /// Script `name` of `app` at its current version: from memory, or read from `db`.
    pub async fn get(&self, db: &Db, app: &str, name: &str) -> Result<Arc<Script>> {
        let key = (app.to_owned(), name.to_owned());
        let epoch = {
            let state = self.lock();
            if let Some(script) = state.scripts.get(&key) {
                return Ok(script.clone());
            }
            state.epoch
        };
        let script = Arc::new(db.get_script(app, name).await?);
        let mut state = self.lock();
        if state.epoch == epoch {
            let size = script.source.len();
            if state.bytes + size > MAX_BYTES {
                state.scripts.clear();
                state.bytes = 0;
            }
            if let Some(old) = state.scripts.insert(key, script.clone()) {
                state.bytes -= old.source.len();
            }
            state.bytes += size;
        }
        Ok(script)
    }

    /// Forgets script `name` of `app` (it was saved, restored or deleted).
    pub fn forget(&self, app: &str, name: &str) {
        let mut state = self.lock();
        state.epoch += 1;
        if let Some(old) = state.scripts.remove(&(app.to_owned(), name.to_owned())) {
            state.bytes -= old.source.len();
        }
    }

    /// Forgets every script of `app` (it was deleted).
    pub fn forget_app(&self, app: &str) {
        let mut state = self.lock();
        state.epoch += 1;
        let gone: usize = state
            .scripts
            .iter()
            .filter(|((a, _), _)| a == app)
            .map(|(_, s)| s.source.len())
            .sum();
        state.scripts.retain(|(a, _), _| a != app);
        state.bytes -= gone;
    }

    /// Forgets everything.
    pub fn clear(&self) {
        let mut state = self.lock();
        state.epoch += 1;
        state.scripts.clear();
        state.bytes = 0;
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // The state stays consistent if a holder panicked: every change is one step.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[async_trait]
impl NoticeHandler for ScriptCache {
    async fn handle(&self, notice: &Notice, _own: bool) {
        match notice {
            Notice::ScriptChanged { app, script } => self.forget(app, script),
            Notice::AppDeleted { app } => self.forget_app(app),
            _ => {}
        }
    }

    async fn reconnected(&self) {
        self.clear();
    }
}
