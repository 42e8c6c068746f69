//! The history of a plan: one entry per apply, destroy and rebalance round,
//! for people to look back at where the fleet lived and why.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// One run, as it ended.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HistoryEntry {
    pub at: DateTime<Utc>,
    pub run: String,
    /// `apply`, `destroy` or `rebalance`.
    pub command: String,
    /// Who ran it: host and process.
    pub host: String,
    pub pid: u32,
    /// The state's serial after the run.
    pub serial: u64,
    pub created: u32,
    pub deleted: u32,
    pub moves_started: u32,
    pub moves_finished: u32,
    /// Nodes per fleet and placement afterwards: fleet → placement → count.
    pub nodes: BTreeMap<String, BTreeMap<String, u32>>,
    /// Shortages in force afterwards, as "placement or scope: code".
    pub shortages: Vec<String>,
    /// List price per hour of the nodes with a known price.
    pub cost_per_hour: f64,
    /// `ok`, `partial`, `error` or `interrupted`.
    pub outcome: String,
}
