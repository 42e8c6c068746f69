//! Executes changesets against the clouds, and the refresh that precedes
//! every plan and apply.
//!
//! Apply is a short reconcile loop around the pure planner: execute the
//! changeset; when a create is refused for capacity or quota, remember the
//! shortage and plan again, so the remaining nodes land on the next allowed
//! offering in the same run. Every mutating call is journaled (with its
//! idempotency token) before it is made, and the state is written after
//! every call, so a run killed at any point is completed by the next one.

mod clouds;
mod saved;

pub use clouds::{Clock, Clouds, Target};
pub use saved::{SAVED_PLAN_FORMAT_VERSION, SAVED_PLAN_KIND, SavedPlan, SavedPlanError, digest};

use crate::catalog::Catalog;
use crate::plan::Plan;
use crate::planner::{self, Action, ActionKind, Changeset, Reason};
use crate::providers::{CreateRequest, ErrorKind, Instance, Placement, ProviderError};
use crate::state::journal::{Entry, Event as JournalEvent, Journal};
use crate::state::lock::{DEFAULT_LEASE, Holder, StateLock};
use crate::state::{LocalBackend, Shortage, ShortageScope, State, StateError};
use chrono::{DateTime, Utc};
use serde::Serialize;
use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};

/// Upper bound on plan-execute rounds in one apply; each round makes
/// progress or rules out an offering, so real runs stop far earlier.
const MAX_ROUNDS: usize = 64;

#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error(transparent)]
    State(#[from] StateError),
    #[error("cannot read what the clouds run: {0}")]
    Refresh(ProviderError),
    #[error("cannot read the simulator's clock: {0}")]
    Clock(#[from] crate::sim::SimError),
    #[error("the saved plan is stale: {0}; run `gpufleet plan` again")]
    Stale(String),
    #[error("{cloud} is used by the plan's state but cannot be reached by this gpufleet")]
    NoProvider { cloud: crate::catalog::Cloud },
}

/// One step of an apply, for progress bars and `--json` event lines.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    Refreshed { instances: usize, adopted: Vec<String>, vanished: Vec<String> },
    Recovered { intents: usize },
    Attempt { fleet: String, placement: Placement, count: u32, min_count: u32 },
    Created { fleet: String, placement: Placement, requested: u32, instance_ids: Vec<String> },
    Shortage { fleet: String, placement: Placement, code: String, message: String, retry_after: DateTime<Utc> },
    Failover { fleet: String, from: Placement, to: Placement },
    Deleting { fleet: String, placement: Placement, instance_ids: Vec<String> },
    Deleted { fleet: String, placement: Placement, instance_ids: Vec<String> },
    Failed { fleet: String, placement: Placement, code: String, message: String },
    Postponed { fleet: String, placement: Placement, why: String },
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

/// What one apply run needs, borrowed.
pub struct Session<'a> {
    pub plan: &'a Plan,
    pub catalog: &'a Catalog,
    pub backend: &'a LocalBackend,
    pub clouds: &'a Clouds,
    pub clock: &'a Clock,
    pub events: &'a dyn EventSink,
    /// Set on SIGINT/SIGTERM: no new call starts; the calls in flight finish
    /// and are journaled, the state is written, the lock is released.
    pub stop: &'a AtomicBool,
}

impl Session<'_> {
    fn stopping(&self) -> bool {
        self.stop.load(Ordering::SeqCst)
    }
}

/// The result of a refresh: state reconciled with what the clouds report.
#[derive(Debug)]
pub struct Refreshed {
    pub state: State,
    /// Serial of the state as read, before the refresh changed it in memory.
    pub serial_read: u64,
    pub now: DateTime<Utc>,
    /// Intents left open by an interrupted run, reconciled by this refresh.
    pub open_intents: Vec<Entry>,
    pub adopted: Vec<String>,
    pub vanished: Vec<String>,
}

impl Refreshed {
    pub fn observed_ids(&self) -> Vec<String> {
        let mut ids: Vec<String> = self.state.instances.iter().map(|i| i.id.clone()).collect();
        ids.sort();
        ids
    }
}

/// Take the plan's lock for `command`.
pub async fn lock(session: &Session<'_>, command: &str) -> Result<StateLock, ApplyError> {
    let now = Clock::System.now().await?;
    Ok(session.backend.lock(&session.plan.name, Holder::this_process(command, now, DEFAULT_LEASE))?)
}

/// Read the state and replace its instances with what the clouds report.
/// The clouds are the source of truth: instances carrying the plan's tags are
/// adopted (a run killed mid-create left them), instances gone are dropped.
pub async fn refresh(session: &Session<'_>) -> Result<Refreshed, ApplyError> {
    let state = session.backend.read(&session.plan.name)?;
    let serial_read = state.serial;
    let open_intents = Journal::open_intents(&session.backend.journal_path(&session.plan.name))
        .map_err(|source| StateError::Journal { path: session.backend.journal_path(&session.plan.name), source })?;
    let observed = session.clouds.list_owned(&session.plan.name).await.map_err(ApplyError::Refresh)?;
    let known: BTreeSet<&str> = state.instances.iter().map(|i| i.id.as_str()).collect();
    let seen: BTreeSet<&str> = observed.iter().map(|i| i.id.as_str()).collect();
    let adopted = seen.difference(&known).map(|s| s.to_string()).collect();
    let vanished = known.difference(&seen).map(|s| s.to_string()).collect();
    let now = session.clock.now().await?;
    let mut state = state;
    state.instances = observed;
    state.shortages.retain(|s| s.expires_at > now);
    Ok(Refreshed { state, serial_read, now, open_intents, adopted, vanished })
}

/// Keep what a refresh found when there is nothing to execute: close the
/// intents an interrupted run left open and write the reconciled state, so
/// that the state lists exactly what the clouds run (a run killed after a
/// terminate went through but before it was recorded would otherwise leave
/// the state naming an instance that is gone). A refresh that changed
/// nothing writes nothing, so a saved plan made meanwhile stays current.
/// The caller holds the lock.
pub fn record_refresh(session: &Session<'_>, refreshed: &mut Refreshed) -> Result<(), ApplyError> {
    if refreshed.open_intents.is_empty() && refreshed.adopted.is_empty() && refreshed.vanished.is_empty() {
        return Ok(());
    }
    let run = uuid::Uuid::new_v4().to_string();
    let mut journal = session.backend.journal(&session.plan.name)?;
    close_open_intents(session, &run, &mut journal, refreshed)?;
    emit_refreshed(session, refreshed);
    session.backend.write(&mut refreshed.state)?;
    Ok(())
}

/// Mark every intent left open by an interrupted run as reconciled by this
/// refresh (whose listing adopted or dropped what the call did).
fn close_open_intents(
    session: &Session<'_>,
    run: &str,
    journal: &mut Journal,
    refreshed: &Refreshed,
) -> Result<(), ApplyError> {
    if refreshed.open_intents.is_empty() {
        return Ok(());
    }
    for intent in &refreshed.open_intents {
        let note = format!("reconciled by refresh of run {run}");
        let entry = Entry {
            at: refreshed.now,
            run: run.to_string(),
            token: intent.token.clone(),
            event: JournalEvent::Recovered { note },
        };
        journal
            .append(&entry)
            .map_err(|source| ApplyError::State(StateError::Journal { path: journal.path().to_path_buf(), source }))?;
    }
    session.events.emit(&Event::Recovered { intents: refreshed.open_intents.len() });
    Ok(())
}

fn emit_refreshed(session: &Session<'_>, refreshed: &Refreshed) {
    session.events.emit(&Event::Refreshed {
        instances: refreshed.state.instances.len(),
        adopted: refreshed.adopted.clone(),
        vanished: refreshed.vanished.clone(),
    });
}

/// Compute the changeset for the plan against a fresh refresh.
pub fn changeset(session: &Session<'_>, refreshed: &Refreshed) -> Changeset {
    planner::plan(session.plan, &refreshed.state.instances, &refreshed.state.shortages, session.catalog, refreshed.now)
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

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Attempted {
    pub offering: String,
    pub code: String,
    pub message: String,
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
    pub skipped: Vec<planner::SkippedOffering>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ApplyReport {
    pub run: String,
    pub created: u32,
    pub deleted: u32,
    pub fleets: Vec<FleetResult>,
    /// Failures that were not capacity or quota refusals.
    pub errors: Vec<String>,
    /// The run was asked to stop before it was done.
    pub interrupted: bool,
}

impl ApplyReport {
    pub fn is_error(&self) -> bool {
        self.interrupted || !self.errors.is_empty() || self.fleets.iter().any(|f| f.status == FleetStatus::Unfilled)
    }

    pub fn is_partial(&self) -> bool {
        self.fleets.iter().any(|f| f.status == FleetStatus::Partial)
    }
}

/// What to execute: the plan as it is now, a saved changeset, or deleting everything.
pub enum Mode {
    Apply,
    Saved(Box<SavedPlan>),
    Destroy,
}

/// Make the clouds match the plan (or the saved plan, or nothing for destroy).
/// The caller holds the lock and has refreshed under it.
pub async fn apply(
    session: &Session<'_>,
    lock: &mut StateLock,
    mode: Mode,
    mut refreshed: Refreshed,
) -> Result<ApplyReport, ApplyError> {
    if let Mode::Saved(saved) = &mode {
        check_not_stale(saved, &refreshed)?;
    }
    let run = uuid::Uuid::new_v4().to_string();
    let mut journal = session.backend.journal(&session.plan.name)?;
    close_open_intents(session, &run, &mut journal, &refreshed)?;
    emit_refreshed(session, &refreshed);
    let mut runner = Runner {
        session,
        run: run.clone(),
        journal: &mut journal,
        refused: Vec::new(),
        errors: Vec::new(),
        created: 0,
        deleted: 0,
    };
    let state = &mut refreshed.state;
    session.backend.write(state)?;

    let destroying = matches!(mode, Mode::Destroy);
    let mut saved = match mode {
        Mode::Saved(saved) => Some(saved.changeset),
        Mode::Apply | Mode::Destroy => None,
    };
    let mut last_failed: Vec<(String, Placement)> = Vec::new();
    for _ in 0..MAX_ROUNDS {
        if session.stopping() {
            break;
        }
        let now = session.clock.now().await?;
        lock.renew(Clock::System.now().await?, DEFAULT_LEASE).map_err(StateError::Lock)?;
        let changeset = match saved.take() {
            Some(changeset) => changeset,
            None if destroying => planner::destroy(&session.plan.name, &state.instances, session.catalog),
            None => planner::plan(session.plan, &state.instances, &state.shortages, session.catalog, now),
        };
        if changeset.is_empty() {
            break;
        }
        for (fleet, from) in last_failed.drain(..) {
            if let Some(next) = changeset.actions.iter().find(|a| a.kind == ActionKind::Create && a.fleet == fleet) {
                session.events.emit(&Event::Failover { fleet, from, to: next.placement.clone() });
            }
        }
        let round = runner.execute(&changeset, state, now).await?;
        last_failed = round.refused;
        if !round.progressed || !runner.errors.is_empty() {
            break;
        }
    }
    let fleets = if destroying {
        Vec::new()
    } else {
        let now = session.clock.now().await?;
        let outlook = planner::plan(session.plan, &state.instances, &state.shortages, session.catalog, now);
        fleet_results(session.plan, &state.instances, &runner.refused, &outlook.skipped)
    };
    Ok(ApplyReport {
        run,
        created: runner.created,
        deleted: runner.deleted,
        fleets,
        errors: runner.errors,
        interrupted: session.stopping(),
    })
}

fn check_not_stale(saved: &SavedPlan, refreshed: &Refreshed) -> Result<(), ApplyError> {
    // A state never written has no lineage yet: its serial (0) says it all.
    if saved.state_serial > 0 && saved.state_lineage != refreshed.state.lineage {
        return Err(ApplyError::Stale("it was made for a different state (lineage differs)".into()));
    }
    if saved.state_serial != refreshed.serial_read {
        return Err(ApplyError::Stale(format!(
            "the state changed since (serial {} then, {} now)",
            saved.state_serial, refreshed.serial_read
        )));
    }
    let now_ids = refreshed.observed_ids();
    if saved.observed != now_ids {
        let then: BTreeSet<&String> = saved.observed.iter().collect();
        let now: BTreeSet<&String> = now_ids.iter().collect();
        let appeared: Vec<&str> = now.difference(&then).map(|s| s.as_str()).collect();
        let gone: Vec<&str> = then.difference(&now).map(|s| s.as_str()).collect();
        return Err(ApplyError::Stale(format!(
            "the clouds changed since: {} instance(s) appeared [{}], {} gone [{}]",
            appeared.len(),
            appeared.join(", "),
            gone.len(),
            gone.join(", ")
        )));
    }
    Ok(())
}

fn fleet_results(
    plan: &Plan,
    instances: &[Instance],
    refused: &[(String, Attempted)],
    skipped: &[planner::SkippedOffering],
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
            FleetResult {
                fleet: fleet.name.clone(),
                want: fleet.nodes,
                min_nodes: fleet.min_nodes,
                have,
                status,
                refused: refused.iter().filter(|(f, _)| *f == fleet.name).map(|(_, a)| a.clone()).collect(),
                skipped: skipped.iter().filter(|s| s.fleet == fleet.name).cloned().collect(),
            }
        })
        .collect()
}

struct RoundOutcome {
    progressed: bool,
    /// Creates refused this round, by fleet, to report failovers.
    refused: Vec<(String, Placement)>,
}

/// Executes actions one by one: journal, call, journal, state.
struct Runner<'s, 'j> {
    session: &'s Session<'s>,
    run: String,
    journal: &'j mut Journal,
    refused: Vec<(String, Attempted)>,
    errors: Vec<String>,
    created: u32,
    deleted: u32,
}

impl Runner<'_, '_> {
    /// Idempotency token: unique per call, stable across retries of it. A
    /// UUID, because Compute Engine's requestId must be one; it also fits
    /// EC2's 64-character ClientToken.
    fn next_token(&mut self) -> String {
        uuid::Uuid::new_v4().to_string()
    }

    fn journal(&mut self, token: &str, event: JournalEvent, now: DateTime<Utc>) -> Result<(), ApplyError> {
        let entry = Entry { at: now, run: self.run.clone(), token: token.to_string(), event };
        self.journal.append(&entry).map_err(|source| {
            ApplyError::State(StateError::Journal { path: self.journal.path().to_path_buf(), source })
        })
    }

    async fn execute(
        &mut self,
        changeset: &Changeset,
        state: &mut State,
        now: DateTime<Utc>,
    ) -> Result<RoundOutcome, ApplyError> {
        let mut outcome = RoundOutcome { progressed: false, refused: Vec::new() };
        let mut fleets_short: BTreeSet<String> = BTreeSet::new();
        let creates: Vec<&Action> = changeset.actions.iter().filter(|a| a.kind == ActionKind::Create).collect();
        let mut outcomes: Vec<(&Action, CreateOutcome)> = Vec::new();
        let mut prepared: Vec<(&Action, PreparedCreate)> = Vec::new();
        for action in creates {
            if self.session.stopping() {
                break;
            }
            match self.prepare_create(action, state, now).await? {
                Ok(ready) => prepared.push((action, ready)),
                Err(outcome) => outcomes.push((action, outcome)),
            }
        }
        // The calls themselves run concurrently, one at a time per cloud and
        // region (the scope of the clouds' rate limits), all journaled above.
        let results = call_creates(self.session, &prepared).await?;
        for ((action, ready), result) in prepared.into_iter().zip(results) {
            let outcome = self.finish_create(action, ready, result, state, now)?;
            outcomes.push((action, outcome));
        }
        for (action, create) in outcomes {
            match create {
                CreateOutcome::Filled => outcome.progressed = true,
                CreateOutcome::BelowMinCount(ids) => {
                    outcome.progressed = true;
                    fleets_short.insert(action.fleet.clone());
                    outcome.refused.push((action.fleet.clone(), action.placement.clone()));
                    let release = Action {
                        kind: ActionKind::Delete,
                        count: ids.len() as u32,
                        min_count: 0,
                        instance_ids: ids,
                        reason: Reason::DeleteBecauseBelowMinCount { min_count: action.min_count },
                        ..action.clone()
                    };
                    self.delete(&release, state, now).await?;
                }
                CreateOutcome::Partial | CreateOutcome::Refused => {
                    // What the offering could not give is remembered: planning again moves on.
                    outcome.progressed = true;
                    fleets_short.insert(action.fleet.clone());
                    outcome.refused.push((action.fleet.clone(), action.placement.clone()));
                }
                CreateOutcome::Failed => {
                    fleets_short.insert(action.fleet.clone());
                }
            }
        }
        if self.session.stopping() {
            return Ok(outcome);
        }
        for action in changeset.actions.iter().filter(|a| a.kind == ActionKind::Delete) {
            if self.session.stopping() {
                return Ok(outcome);
            }
            if action.reason.is_make_before_break() && fleets_short.contains(&action.fleet) {
                self.session.events.emit(&Event::Postponed {
                    fleet: action.fleet.clone(),
                    placement: action.placement.clone(),
                    why: "the fleet's new nodes are not all in place yet".into(),
                });
                continue;
            }
            if self.delete(action, state, now).await? {
                outcome.progressed = true;
            }
        }
        Ok(outcome)
    }

    /// Everything before the call: the quota pre-check, the request, its
    /// intent in the journal. `Err(outcome)` when the quota already refuses.
    async fn prepare_create(
        &mut self,
        action: &Action,
        state: &mut State,
        now: DateTime<Utc>,
    ) -> Result<Result<PreparedCreate, CreateOutcome>, ApplyError> {
        let session = self.session;
        let fleet = &session.plan.fleets[&action.fleet];
        let cloud = action.placement.cloud;
        let Some(provider) = session.clouds.get(cloud) else { return Err(ApplyError::NoProvider { cloud }) };
        // Ask the quota first where the cloud tells it: no call is spent on
        // an offering the quota already rules out, and a request the quota
        // can only partly hold is cut to what fits.
        let mut count = action.count;
        let mut min_count = action.min_count;
        let mut quota_cap = None;
        if let Ok(Some(room)) = provider.quota_headroom(&action.placement, &fleet.gpu, fleet.gpus_per_node).await {
            if room < min_count {
                let message = format!(
                    "quota allows {room} more node(s) of {}×{}; checked before creating",
                    fleet.gpus_per_node, fleet.gpu
                );
                self.remember(state, action, ErrorKind::Quota, "QUOTA_EXCEEDED", &message, now);
                session.backend.write(state)?;
                return Ok(Err(CreateOutcome::Refused));
            }
            if room < count {
                count = room;
                min_count = min_count.min(room);
                quota_cap = Some(room);
            }
        }
        let token = self.next_token();
        let request = CreateRequest {
            plan: session.plan.name.clone(),
            fleet: action.fleet.clone(),
            run: self.run.clone(),
            placement: action.placement.clone(),
            count,
            min_count,
            image: fleet.image.get(&cloud).cloned().unwrap_or_default(),
            user_data: fleet.startup.as_ref().map(|s| s.content.clone()),
            labels: fleet.labels.clone(),
            idempotency_token: token.clone(),
        };
        self.journal(
            &token,
            JournalEvent::CreateIntent {
                fleet: action.fleet.clone(),
                placement: action.placement.clone(),
                count,
                min_count,
            },
            now,
        )?;
        session.events.emit(&Event::Attempt {
            fleet: action.fleet.clone(),
            placement: action.placement.clone(),
            count,
            min_count,
        });
        Ok(Ok(PreparedCreate { request, quota_cap }))
    }

    /// Everything after the call: journal, state, events, shortage memory.
    fn finish_create(
        &mut self,
        action: &Action,
        prepared: PreparedCreate,
        result: Result<Vec<Instance>, ProviderError>,
        state: &mut State,
        now: DateTime<Utc>,
    ) -> Result<CreateOutcome, ApplyError> {
        let session = self.session;
        let PreparedCreate { request, quota_cap } = prepared;
        let min_count = request.min_count;
        let token = request.idempotency_token;
        match result {
            Ok(instances) => {
                let ids: Vec<String> = instances.iter().map(|i| i.id.clone()).collect();
                let created = ids.clone();
                self.journal(&token, JournalEvent::Done { instance_ids: ids.clone() }, now)?;
                let got = instances.len() as u32;
                self.created += got;
                state.instances.extend(instances);
                state.instances.sort();
                state.instances.dedup_by(|a, b| a.id == b.id);
                session.events.emit(&Event::Created {
                    fleet: action.fleet.clone(),
                    placement: action.placement.clone(),
                    requested: action.count,
                    instance_ids: ids,
                });
                if got >= action.count {
                    session.backend.write(state)?;
                    return Ok(CreateOutcome::Filled);
                }
                if got < min_count {
                    // A cloud without all-or-nothing launches (an Azure scale-out)
                    // gave fewer than the fewest worth keeping: release them.
                    let message = format!("only {got} of at least {min_count} nodes");
                    self.remember(state, action, ErrorKind::Capacity, "BelowMinCount", &message, now);
                    session.backend.write(state)?;
                    return Ok(CreateOutcome::BelowMinCount(created));
                }
                if let Some(room) = quota_cap.filter(|room| got >= *room) {
                    // Everything the quota allowed was created: the quota is what is short.
                    let message = format!("quota allowed {room} of {} nodes", action.count);
                    self.remember(state, action, ErrorKind::Quota, "QUOTA_EXCEEDED", &message, now);
                } else {
                    // The offering gave what it had: it has no more for now.
                    let message = format!("partial fill: {got} of {} nodes", action.count);
                    self.remember(state, action, ErrorKind::Capacity, "PartialFill", &message, now);
                }
                session.backend.write(state)?;
                Ok(CreateOutcome::Partial)
            }
            Err(e) => {
                self.journal(&token, JournalEvent::Failed { code: e.code.clone() }, now)?;
                if e.kind.is_shortage() {
                    self.remember(state, action, e.kind.clone(), &e.code, &e.message, now);
                    session.backend.write(state)?;
                    Ok(CreateOutcome::Refused)
                } else {
                    session.events.emit(&Event::Failed {
                        fleet: action.fleet.clone(),
                        placement: action.placement.clone(),
                        code: e.code.clone(),
                        message: e.message.clone(),
                    });
                    self.errors.push(e.to_string());
                    Ok(CreateOutcome::Failed)
                }
            }
        }
    }

    /// Record a capacity or quota refusal in shortage memory, scoped by what it means.
    fn remember(
        &mut self,
        state: &mut State,
        action: &Action,
        kind: ErrorKind,
        code: &str,
        message: &str,
        now: DateTime<Utc>,
    ) {
        let scope = match kind {
            ErrorKind::Quota => ShortageScope::Quota {
                cloud: action.placement.cloud,
                region: action.placement.region.clone(),
                gpu: self.session.plan.fleets[&action.fleet].gpu.clone(),
            },
            _ => ShortageScope::Offering { placement: action.placement.clone() },
        };
        let ttl = chrono::Duration::from_std(self.session.plan.shortage_ttl).unwrap_or(chrono::Duration::MAX);
        let expires_at = now + ttl;
        state.remember_shortage(Shortage {
            scope,
            code: code.to_string(),
            message: message.to_string(),
            first_seen: now,
            last_seen: now,
            expires_at,
        });
        self.refused.push((
            action.fleet.clone(),
            Attempted { offering: action.placement.to_string(), code: code.to_string(), message: message.to_string() },
        ));
        self.session.events.emit(&Event::Shortage {
            fleet: action.fleet.clone(),
            placement: action.placement.clone(),
            code: code.to_string(),
            message: message.to_string(),
            retry_after: expires_at,
        });
    }

    async fn delete(&mut self, action: &Action, state: &mut State, now: DateTime<Utc>) -> Result<bool, ApplyError> {
        let cloud = action.placement.cloud;
        let Some(provider) = self.session.clouds.get(cloud) else { return Err(ApplyError::NoProvider { cloud }) };
        let doomed: Vec<Instance> =
            state.instances.iter().filter(|i| action.instance_ids.contains(&i.id)).cloned().collect();
        if doomed.is_empty() {
            return Ok(false);
        }
        let ids: Vec<String> = doomed.iter().map(|i| i.id.clone()).collect();
        let token = self.next_token();
        self.journal(
            &token,
            JournalEvent::DeleteIntent {
                fleet: action.fleet.clone(),
                placement: action.placement.clone(),
                instance_ids: ids.clone(),
            },
            now,
        )?;
        self.session.events.emit(&Event::Deleting {
            fleet: action.fleet.clone(),
            placement: action.placement.clone(),
            instance_ids: ids.clone(),
        });
        match provider.delete(&doomed).await {
            Ok(()) => {
                self.journal(&token, JournalEvent::Done { instance_ids: ids.clone() }, now)?;
                state.instances.retain(|i| !ids.contains(&i.id));
                self.session.backend.write(state)?;
                self.deleted += ids.len() as u32;
                self.session.events.emit(&Event::Deleted {
                    fleet: action.fleet.clone(),
                    placement: action.placement.clone(),
                    instance_ids: ids,
                });
                Ok(true)
            }
            Err(e) => {
                self.journal(&token, JournalEvent::Failed { code: e.code.clone() }, now)?;
                self.session.events.emit(&Event::Failed {
                    fleet: action.fleet.clone(),
                    placement: action.placement.clone(),
                    code: e.code.clone(),
                    message: e.message.clone(),
                });
                self.errors.push(e.to_string());
                Ok(false)
            }
        }
    }
}

/// A create whose intent is journaled, ready to be sent.
struct PreparedCreate {
    request: CreateRequest,
    /// The quota pre-check cut the request to this many nodes.
    quota_cap: Option<u32>,
}

/// Sends the prepared creates: concurrently across (cloud, region), in order
/// within one. Results come back in the order of `prepared`.
async fn call_creates(
    session: &Session<'_>,
    prepared: &[(&Action, PreparedCreate)],
) -> Result<Vec<Result<Vec<Instance>, ProviderError>>, ApplyError> {
    let mut lanes: std::collections::BTreeMap<(crate::catalog::Cloud, &str), Vec<usize>> = Default::default();
    for (index, (action, _)) in prepared.iter().enumerate() {
        lanes.entry((action.placement.cloud, action.placement.region.as_str())).or_default().push(index);
    }
    let mut calls = Vec::new();
    for ((cloud, _), indexes) in lanes {
        let provider = session.clouds.get(cloud).ok_or(ApplyError::NoProvider { cloud })?;
        calls.push(async move {
            let mut done = Vec::with_capacity(indexes.len());
            for index in indexes {
                done.push((index, provider.create(&prepared[index].1.request).await));
            }
            done
        });
    }
    let mut results: Vec<Option<Result<Vec<Instance>, ProviderError>>> = (0..prepared.len()).map(|_| None).collect();
    for (index, result) in futures::future::join_all(calls).await.into_iter().flatten() {
        results[index] = Some(result);
    }
    Ok(results.into_iter().map(|r| r.expect("every prepared create was called")).collect())
}

enum CreateOutcome {
    Filled,
    Partial,
    /// Fewer than `min_count` came up; these are to be released.
    BelowMinCount(Vec<String>),
    Refused,
    Failed,
}
