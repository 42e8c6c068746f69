//! What an apply says while it runs (events, for progress bars and `--json`
//! lines) and when it is done (the report, per fleet).

use crate::model::{Instance, Placement};
use crate::plan::Plan;
use crate::planner::SkippedOffering;
use crate::state::history::MoveRecord;
use chrono::{DateTime, Utc};
use serde::Serialize;

/// One step of an apply, for progress bars and `--json` event lines.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    Refreshed {
        instances: usize,
        adopted: Vec<String>,
        vanished: Vec<String>,
    },
    Recovered {
        intents: usize,
    },
    Attempt {
        fleet: String,
        placement: Placement,
        count: u32,
        min_count: u32,
    },
    Created {
        fleet: String,
        placement: Placement,
        requested: u32,
        instance_ids: Vec<String>,
    },
    Shortage {
        fleet: String,
        placement: Placement,
        code: String,
        message: String,
        retry_after: DateTime<Utc>,
    },
    Failover {
        fleet: String,
        from: Placement,
        to: Placement,
    },
    Deleting {
        fleet: String,
        placement: Placement,
        instance_ids: Vec<String>,
    },
    Deleted {
        fleet: String,
        placement: Placement,
        instance_ids: Vec<String>,
    },
    Failed {
        fleet: String,
        placement: Placement,
        code: String,
        message: String,
    },
    Postponed {
        fleet: String,
        placement: Placement,
        why: String,
    },
    DrainFailed {
        fleet: String,
        instance_id: String,
        message: String,
    },
    /// The run's history entry could not be written.
    HistoryNotRecorded {
        message: String,
    },
}

/// Receives apply events as they happen.
pub trait EventSink: Send + Sync {
    fn emit(&self, event: &Event);
}

/// Discards events.
pub struct NoEvents;
impl EventSink for NoEvents {
    fn emit(&self, _: &Event) {}
}

/// Why a fleet ended where it did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FleetStatus {
    Complete,
    /// Below `nodes`, at or above `min_nodes`.
    Partial,
    /// Below `min_nodes`.
    Unfilled,
}

/// An offering that refused a create, and why.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Attempted {
    pub offering: String,
    pub code: String,
    pub message: String,
}

/// A saved plan's create that landed on a fallback of its chain.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FallbackUsed {
    pub planned: String,
    pub used: String,
    /// 1 for the first fallback of the chain.
    pub position: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FleetResult {
    pub fleet: String,
    pub want: u32,
    pub min_nodes: u32,
    pub have: u32,
    pub status: FleetStatus,
    /// Offerings this run tried that refused, and why.
    pub refused: Vec<Attempted>,
    /// Offerings not tried because an earlier refusal is still remembered.
    pub skipped: Vec<SkippedOffering>,
    /// Saved plans only: creates that landed on a fallback of their chain.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub fallbacks_used: Vec<FallbackUsed>,
}

/// Nodes moved by rebalancing in one run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct MoveTally {
    /// Replacement nodes asked for.
    pub started: u32,
    /// Old nodes deleted once their replacements ran.
    pub finished: u32,
    /// Replacement nodes refused or failed: their old nodes stay.
    pub failed: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ApplyReport {
    pub run: String,
    pub created: u32,
    pub deleted: u32,
    pub fleets: Vec<FleetResult>,
    pub moves: MoveTally,
    /// The moves by fleet, from where to where.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub moved: Vec<MoveRecord>,
    /// Failures that were not capacity or quota refusals.
    pub errors: Vec<String>,
    /// The run was asked to stop before it was done.
    pub interrupted: bool,
    /// Nodes kept because their drain failed or timed out, with why.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub drain_failures: Vec<String>,
    /// Saved plans only: a create's fallback chain ran out; planning again
    /// is the way on.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub chains_exhausted: Vec<String>,
    /// Saved plans only: make-before-break deletes left undone because their
    /// fleet's creates went elsewhere than planned.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub postponed: Vec<String>,
}

impl ApplyReport {
    pub fn is_error(&self) -> bool {
        self.interrupted
            || !self.errors.is_empty()
            || !self.chains_exhausted.is_empty()
            || self.fleets.iter().any(|f| f.status == FleetStatus::Unfilled)
    }

    pub fn is_partial(&self) -> bool {
        self.fleets.iter().any(|f| f.status == FleetStatus::Partial)
    }
}

/// How each fleet of the plan stands after a run.
pub fn fleet_results(
    plan: &Plan,
    instances: &[Instance],
    refused: &[(String, Attempted)],
    skipped: &[SkippedOffering],
    fallbacks: &[(String, FallbackUsed)],
) -> Vec<FleetResult> {
    plan.fleets
        .values()
        .map(|fleet| {
            let have = instances.iter().filter(|i| i.fleet == fleet.name).count() as u32;
            let status = if have >= fleet.nodes {
                FleetStatus::Complete
            } else if have >= fleet.min_nodes {
                FleetStatus::Partial
            } else {
                FleetStatus::Unfilled
            };
            let mine = |name: &String| *name == fleet.name;
            FleetResult {
                fleet: fleet.name.clone(),
                want: fleet.nodes,
                min_nodes: fleet.min_nodes,
                have,
                status,
                refused: refused.iter().filter(|(f, _)| mine(f)).map(|(_, a)| a.clone()).collect(),
                skipped: skipped.iter().filter(|s| mine(&s.fleet)).cloned().collect(),
                fallbacks_used: fallbacks.iter().filter(|(f, _)| mine(f)).map(|(_, u)| u.clone()).collect(),
            }
        })
        .collect()
}
