//! What gpufleet remembers between runs. Pure data, versioned on disk.

use crate::model::{Instance, Shortage};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// Version of the state file format; bumped with an upgrade path on change.
pub const STATE_FORMAT_VERSION: u32 = 2;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct State {
    pub format_version: u32,
    /// Incremented on every write; a saved plan records the serial it saw.
    pub serial: u64,
    /// Identifies this state's history; a saved plan from another lineage is refused.
    pub lineage: String,
    pub plan: String,
    /// The instances the clouds reported as owned at the last refresh, plus
    /// those created since.
    pub instances: Vec<Instance>,
    pub shortages: Vec<Shortage>,
}

impl State {
    pub fn new(plan: &str) -> State {
        State {
            format_version: STATE_FORMAT_VERSION,
            serial: 0,
            lineage: uuid::Uuid::new_v4().to_string(),
            plan: plan.to_string(),
            instances: Vec::new(),
            shortages: Vec::new(),
        }
    }

    /// Forget shortages that are neither in force at `now` nor recent enough
    /// to matter: one seen within `history` still holds nodes back from
    /// moving (a rebalance waits until an offering has been clear that long).
    pub fn forget_shortages_older_than(&mut self, now: DateTime<Utc>, history: std::time::Duration) {
        let history = chrono::Duration::from_std(history).unwrap_or(chrono::Duration::MAX);
        self.shortages
            .retain(|s| s.expires_at > now || s.last_seen.checked_add_signed(history).is_none_or(|until| until > now));
    }

    /// Remember a refusal; an existing memory of the same scope is refreshed
    /// (keeping when it was first seen).
    pub fn remember_shortage(&mut self, shortage: Shortage) {
        match self.shortages.iter_mut().find(|s| s.scope == shortage.scope) {
            Some(existing) => {
                existing.last_seen = shortage.last_seen;
                existing.expires_at = shortage.expires_at;
                existing.code = shortage.code;
                existing.message = shortage.message;
            }
            None => self.shortages.push(shortage),
        }
    }
}
