//! The changeset: what apply will do, and why. Pure data, serializable so that
//! `plan --out` can save it and `apply` can execute exactly it.

use crate::model::Placement;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Changeset {
    pub plan: String,
    /// Creates first, then deletes, each group in fleet order.
    pub actions: Vec<Action>,
    pub fleets: Vec<FleetOutlook>,
    /// Offerings left out because a shortage is remembered for them.
    pub skipped: Vec<SkippedOffering>,
    pub cost: CostSummary,
}

impl Changeset {
    pub fn is_empty(&self) -> bool {
        self.actions.is_empty()
    }

    pub fn count(&self, kind: ActionKind) -> u32 {
        self.actions.iter().filter(|a| a.kind == kind).map(|a| a.count).sum()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ActionKind {
    Create,
    Delete,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Action {
    pub kind: ActionKind,
    pub fleet: String,
    pub placement: Placement,
    pub count: u32,
    /// For creates: the fewest nodes worth keeping from this attempt.
    pub min_count: u32,
    /// For deletes: exactly which instances.
    pub instance_ids: Vec<String>,
    pub reason: Reason,
    /// List price of one instance per hour, when known.
    pub price_per_hour: Option<f64>,
    /// For creates: where apply may go next, in order, if this placement
    /// refuses (within the fleet's constraints, after shortage memory). A
    /// saved plan fails over along this chain only.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fallbacks: Vec<Placement>,
}

/// Why an action is in the changeset.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "reason", rename_all = "snake_case")]
pub enum Reason {
    /// The fleet has fewer nodes than it wants.
    CreateBecauseShortfall { have: u32, want: u32 },
    /// Rebalancing: nodes move here from a worse offering.
    CreateBecauseMove { from: String, why: String },
    /// Rebalancing: these nodes moved to a better offering; they go once the
    /// fleet's new nodes run (make-before-break).
    DeleteBecauseMoved { to: String },
    /// The fleet has more nodes than it wants; least preferred and newest go first.
    DeleteBecauseOverCount { have: u32, want: u32 },
    /// The fleet is no longer in the plan.
    DeleteBecauseNotInPlan,
    /// `gpufleet destroy`: everything the plan owns goes.
    DeleteBecauseDestroy,
    /// A create gave fewer nodes than the fewest worth keeping (a cloud
    /// without all-or-nothing launches): they are released at once.
    DeleteBecauseBelowMinCount { min_count: u32 },
    /// The instance sits where the plan no longer allows (region, residency,
    /// price ceiling, GPU shape).
    DeleteBecauseNotAllowed { why: String },
    /// The instance lives in an account scope the plan no longer covers
    /// (a provider section removed, the project, subscription or resource
    /// group changed): surplus, like a resource removed from a Terraform config.
    DeleteBecauseScopeLeftPlan { why: String },
    /// A `pack` fleet is being gathered into one region; runs only after the
    /// fleet's creates in the same apply succeeded (make-before-break).
    DeleteBecausePackConsolidation { region: String },
}

impl Reason {
    /// A delete that must wait for its fleet's creates to succeed.
    pub fn is_make_before_break(&self) -> bool {
        matches!(self, Reason::DeleteBecausePackConsolidation { .. } | Reason::DeleteBecauseMoved { .. })
    }
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Reason::CreateBecauseShortfall { have, want } => write!(f, "shortfall: {have} of {want} nodes"),
            Reason::CreateBecauseMove { from, why } => write!(f, "move from {from}: {why}"),
            Reason::DeleteBecauseMoved { to } => write!(f, "moved to {to}, once the new nodes run"),
            Reason::DeleteBecauseOverCount { have, want } => write!(f, "over count: {have} of {want} nodes"),
            Reason::DeleteBecauseNotInPlan => f.write_str("fleet is not in the plan"),
            Reason::DeleteBecauseDestroy => f.write_str("destroy"),
            Reason::DeleteBecauseBelowMinCount { min_count } => {
                write!(f, "released: fewer than the {min_count} nodes worth keeping came up")
            }
            Reason::DeleteBecauseNotAllowed { why } => write!(f, "placement no longer allowed: {why}"),
            Reason::DeleteBecauseScopeLeftPlan { why } => f.write_str(why),
            Reason::DeleteBecausePackConsolidation { region } => {
                write!(f, "pack: gathering the fleet in {region}")
            }
        }
    }
}

/// How a fleet stands before and after the changeset.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FleetOutlook {
    pub fleet: String,
    pub gpu: String,
    pub gpus_per_node: u32,
    pub want: u32,
    pub min_nodes: u32,
    /// Nodes running now, wherever they are.
    pub have: u32,
    /// Nodes after the changeset, if every create is filled.
    pub planned: u32,
    /// Why the planned count falls short of `want`, when it does.
    pub shortfall_reason: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SkippedOffering {
    pub fleet: String,
    pub offering: String,
    pub code: String,
    pub since: DateTime<Utc>,
    pub retry_after: DateTime<Utc>,
}

/// List price per hour of everything the plan owns, before and after.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct CostSummary {
    pub before_per_hour: f64,
    pub after_per_hour: f64,
    /// Some instance involved has no known price; the sums leave it out.
    pub has_unknown_prices: bool,
}
