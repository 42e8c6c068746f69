//! Executes changesets against the clouds, and the refresh that precedes
//! every plan and apply.
//!
//! Apply is a short reconcile loop around the pure planner: execute the
//! changeset; when a create is refused for capacity or quota, remember the
//! shortage and plan again, so the remaining nodes land on the next allowed
//! offering in the same run. A saved plan is executed as saved, failing over
//! only along the fallback chains it showed. Every mutating call is journaled
//! (with its idempotency token) before it is made and its outcome after, and
//! the state is saved once per batch of calls (a round's creates, then its
//! deletes), so a run killed at any point is completed by the next: the
//! journal and the clouds' listings hold what happened since the last save.
//!
//! - [`refresh`]: state reconciled with what every account scope lists;
//! - `rounds`: which changeset each round executes (re-planned, destroy, saved chains);
//! - `runner`: one round's calls, journal and shortage memory;
//! - `moves`: what completes the moves an interrupted run left half done;
//! - [`events`]: progress events and the final report;
//! - [`check`]: the read-only preflight of `gpufleet check`.

pub mod check;
mod clouds;
mod drain;
pub mod events;
mod fence;
mod moves;
mod refresh;
mod rounds;
mod runner;
mod saved;
mod stop;
#[cfg(test)]
mod tests;

pub use clouds::{Clouds, HomeFailures, Listing, Target};
pub use drain::{Drain, DrainScript, NoDrain};
pub use events::{ApplyReport, Event, EventSink, FleetResult, FleetStatus, MoveTally, NoEvents};
pub use fence::Fence;
pub use refresh::{Refreshed, Unreachable, record_refresh, refresh};
pub use saved::{SAVED_PLAN_FORMAT_VERSION, SAVED_PLAN_KIND, SavedPlan, SavedPlanError, digest};
pub use stop::Stop;

use crate::catalog::Catalog;
use crate::model::{Clock, ClockError, Cloud, Placement};
use crate::plan::Plan;
use crate::planner::{self, Changeset};
use crate::providers::ProviderError;
use crate::state::history::HistoryEntry;
use crate::state::lock::{DEFAULT_LEASE, Holder};
use crate::state::{Lease, StateBackend, StateError};
use std::collections::BTreeMap;

#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum ApplyError {
    #[error(transparent)]
    #[diagnostic(transparent)]
    State(#[from] StateError),
    #[error("cannot read what the clouds run: {0}")]
    Refresh(ProviderError),
    #[error(transparent)]
    #[diagnostic(transparent)]
    Clock(#[from] ClockError),
    #[error("the saved plan is stale: {0}")]
    #[diagnostic(help("run `gpufleet plan --out FILE` again"))]
    Stale(String),
    #[error("{cloud} is used by the plan's state but cannot be reached by this gpufleet")]
    NoProvider { cloud: Cloud },
    #[error("{0}")]
    #[diagnostic(help(
        "gpufleet never drops an instance it cannot list. Either make its scope reachable again (restore the \
         credentials, or put the provider section back as it was) and apply, which deletes them; or delete \
         them yourself in the cloud and run `gpufleet state forget --plan PLAN ID...` to drop them from the state"
    ))]
    Unreachable(Unreachable),
    #[error("interrupted while reading what the clouds run; nothing was changed")]
    #[diagnostic(help("run the command again"))]
    Interrupted,
}

/// What one apply run needs, borrowed.
pub struct Session<'a> {
    pub plan: &'a Plan,
    pub catalog: &'a Catalog,
    pub backend: &'a dyn StateBackend,
    pub clouds: &'a Clouds,
    pub clock: &'a dyn Clock,
    pub events: &'a dyn EventSink,
    /// Runs before a node is deleted; a node whose drain fails is kept.
    pub drain: &'a dyn Drain,
    /// Requested on SIGINT/SIGTERM or at the deadline: no new call starts,
    /// the calls in flight are abandoned with their intents left open, the
    /// state is saved, the lock is released.
    pub stop: &'a Stop,
}

impl Session<'_> {
    pub fn stopping(&self) -> bool {
        self.stop.is_requested()
    }
}

/// Take the plan's lock for `command`, with a lease read from the session's clock.
pub async fn lock(session: &Session<'_>, command: &str) -> Result<Box<dyn Lease>, ApplyError> {
    let now = session.clock.now().await?;
    Ok(session.backend.lock(&session.plan.name, Holder::this_process(command, now, DEFAULT_LEASE)).await?)
}

/// Compute the changeset for the plan against a fresh refresh.
pub fn changeset(session: &Session<'_>, refreshed: &Refreshed) -> Changeset {
    planner::plan(session.plan, &refreshed.state.instances, &refreshed.state.shortages, session.catalog, refreshed.now)
}

/// What to execute: the plan as it is now, a saved changeset, deleting
/// everything, or a rebalance round (the plan plus moves to better offerings).
pub enum Mode {
    Apply,
    Saved(Box<SavedPlan>),
    Destroy,
    Rebalance,
}

/// Upper bound on rounds in one apply; each round makes progress or rules
/// out an offering, so real runs stop far earlier.
const MAX_ROUNDS: usize = 64;

/// Make the clouds match the plan (or the saved plan, or nothing for destroy).
/// The caller took the lock and refreshed under it; the run keeps the lock
/// renewed and starts no call once it is lost, and releases it at the end.
pub async fn apply(
    session: &Session<'_>,
    lock: Box<dyn Lease>,
    mode: Mode,
    refreshed: Refreshed,
) -> Result<ApplyReport, ApplyError> {
    let fence = Fence::new(lock, session.clock);
    fence.hold(run(session, &fence, mode, refreshed)).await
}

async fn run(
    session: &Session<'_>,
    fence: &Fence<'_>,
    mode: Mode,
    mut refreshed: Refreshed,
) -> Result<ApplyReport, ApplyError> {
    let command = match &mode {
        Mode::Apply | Mode::Saved(_) => "apply",
        Mode::Destroy => "destroy",
        Mode::Rebalance => "rebalance",
    };
    // A destroy deletes the moves' nodes anyway; a saved plan does only what it showed.
    let finishes_moves = matches!(mode, Mode::Apply | Mode::Rebalance);
    let mut rounds: Box<dyn rounds::Rounds> = match mode {
        Mode::Saved(saved) => {
            saved.check_not_stale(&refreshed)?;
            Box::new(rounds::SavedChains::new(saved.changeset))
        }
        Mode::Apply => Box::new(rounds::Replan::default()),
        Mode::Destroy => Box::new(rounds::Destroy),
        Mode::Rebalance => Box::new(rounds::Rebalance::default()),
    };
    let run = uuid::Uuid::new_v4().to_string();
    refresh::close_open_intents(session, &run, &refreshed).await?;
    refresh::emit_refreshed(session, &refreshed);
    let changed = refreshed.changed || !refreshed.open_intents.is_empty();
    let state = &mut refreshed.state;
    // Keep what the refresh found; a run with nothing to record writes
    // nothing, so saved plans made meanwhile stay current.
    if changed {
        session.backend.save(state).await?;
    }
    let mut runner = runner::Runner::new(session, fence, &run);
    if finishes_moves {
        let unfinished = session.backend.unfinished_moves(&session.plan.name).await?;
        runner.finish_moves(&unfinished, state, refreshed.now).await?;
    }
    for _ in 0..MAX_ROUNDS {
        if session.stopping() {
            break;
        }
        let now = session.clock.now().await?;
        let Some(changeset) = rounds.next(session, state, now) else { break };
        let outcome = runner.execute(&changeset, state, now).await?;
        let progressed = outcome.progressed;
        rounds.after(session, &changeset, outcome, state, now);
        if !progressed || !runner.errors.is_empty() {
            break;
        }
    }
    let fleets = if rounds.destroys() {
        Vec::new()
    } else {
        let now = session.clock.now().await?;
        let outlook = planner::plan(session.plan, &state.instances, &state.shortages, session.catalog, now);
        events::fleet_results(
            session.plan,
            &state.instances,
            &runner.refused,
            &outlook.skipped,
            rounds.fallbacks_used(),
        )
    };
    let report = ApplyReport {
        run,
        created: runner.created,
        deleted: runner.deleted,
        fleets,
        moves: runner.moves,
        moved: runner.moved,
        errors: runner.errors,
        interrupted: session.stopping(),
        drain_failures: runner.drain_failures,
        chains_exhausted: rounds.chains_exhausted(),
        postponed: rounds.postponed(),
    };
    let now = session.clock.now().await?;
    let entry = history_entry(session, command, state, &report, now);
    if let Err(e) = session.backend.append_history(&session.plan.name, &entry).await {
        // The run itself is done and recorded in the state: say so, do not fail it.
        session.events.emit(&Event::HistoryNotRecorded { message: e.to_string() });
    }
    Ok(report)
}

/// Record in the history a run that found nothing to do. (Its state is
/// written by [`record_refresh`] only if the refresh changed something.)
pub async fn record_unchanged(session: &Session<'_>, command: &str, refreshed: &Refreshed) -> Result<(), ApplyError> {
    let state = &refreshed.state;
    let report = ApplyReport {
        run: uuid::Uuid::new_v4().to_string(),
        created: 0,
        deleted: 0,
        fleets: events::fleet_results(session.plan, &state.instances, &[], &[], &[]),
        moves: MoveTally::default(),
        moved: Vec::new(),
        errors: Vec::new(),
        interrupted: false,
        drain_failures: Vec::new(),
        chains_exhausted: Vec::new(),
        postponed: Vec::new(),
    };
    let entry = history_entry(session, command, state, &report, refreshed.now);
    Ok(session.backend.append_history(&session.plan.name, &entry).await?)
}

/// What the history keeps of a finished run.
fn history_entry(
    session: &Session<'_>,
    command: &str,
    state: &crate::state::State,
    report: &ApplyReport,
    now: chrono::DateTime<chrono::Utc>,
) -> HistoryEntry {
    let mut nodes: BTreeMap<String, BTreeMap<String, u32>> = BTreeMap::new();
    let mut cost_per_hour = 0.0;
    for instance in &state.instances {
        let placement = Placement::of(instance);
        cost_per_hour += planner::price_of(&placement, session.catalog).unwrap_or(0.0);
        *nodes.entry(instance.fleet.clone()).or_default().entry(placement.to_string()).or_default() += 1;
    }
    let outcome = if report.interrupted {
        "interrupted"
    } else if report.is_error() {
        "error"
    } else if report.is_partial() {
        "partial"
    } else {
        "ok"
    };
    HistoryEntry {
        at: now,
        run: report.run.clone(),
        command: command.to_string(),
        host: gethostname::gethostname().to_string_lossy().into_owned(),
        pid: std::process::id(),
        serial: state.serial,
        created: report.created,
        deleted: report.deleted,
        moves_started: report.moves.started,
        moves_finished: report.moves.finished,
        nodes,
        shortages: state
            .shortages
            .iter()
            .filter(|s| s.expires_at > now)
            .map(|s| format!("{}: {}", s.scope, s.code))
            .collect(),
        cost_per_hour,
        outcome: outcome.to_string(),
        moves: report.moved.clone(),
        note: None,
    }
}
