//! Refresh: the state reconciled with what the clouds report, before every
//! plan and apply. The clouds are the source of truth for what exists, but
//! an instance leaves the state only when its own scope was listed and did
//! not return it: one that cannot be seen is never assumed gone.

use super::{ApplyError, Event, Session};
use crate::model::{Instance, Placement, Scope};
use crate::plan::Providers;
use crate::state::State;
use crate::state::journal::{Entry, Event as JournalEvent};
use chrono::{DateTime, Utc};
use std::collections::{BTreeMap, BTreeSet};

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
    /// The clouds report something other than the state holds (instances
    /// adopted or gone, or found in another account scope).
    pub changed: bool,
}

impl Refreshed {
    pub fn observed_ids(&self) -> Vec<String> {
        let mut ids: Vec<String> = self.state.instances.iter().map(|i| i.id.clone()).collect();
        ids.sort();
        ids
    }
}

/// Instances the state knows in scopes that could not be listed.
#[derive(Debug)]
pub struct Unreachable {
    pub plan: String,
    /// Each scope with why it could not be listed and what the state holds there.
    pub scopes: Vec<(String, String, Vec<Instance>)>,
}

impl std::fmt::Display for Unreachable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let count: usize = self.scopes.iter().map(|(_, _, i)| i.len()).sum();
        write!(f, "{count} instance(s) of plan `{}` are where this gpufleet cannot list them:", self.plan)?;
        for (scope, why, instances) in &self.scopes {
            write!(f, "\n  {scope} ({why}):")?;
            for instance in instances {
                write!(f, "\n    {} {} (fleet {})", Placement::of(instance), instance.id, instance.fleet)?;
            }
        }
        Ok(())
    }
}

/// Read the state and replace its instances with what the clouds report:
/// instances carrying the plan's tags are adopted (a run killed mid-create
/// left them), instances missing from their own listed scope are dropped.
/// When a scope holding known instances cannot be listed, nothing is dropped
/// and the refresh fails, naming them.
pub async fn refresh(session: &Session<'_>) -> Result<Refreshed, ApplyError> {
    let plan = &session.plan.name;
    let mut state = session.backend.load(plan).await?;
    let serial_read = state.serial;
    assign_legacy_scopes(&session.plan.providers, &mut state.instances);
    let open_intents = session.backend.open_intents(plan).await?;
    let listing = session
        .stop
        .unless_requested(session.clouds.list_owned(plan))
        .await
        .ok_or(ApplyError::Interrupted)?
        .map_err(ApplyError::Refresh)?;
    let unreachable = unlisted(plan, &state.instances, &listing.listed, &listing.unreachable);
    if !unreachable.scopes.is_empty() {
        return Err(ApplyError::Unreachable(unreachable));
    }
    let known: BTreeSet<&str> = state.instances.iter().map(|i| i.id.as_str()).collect();
    let seen: BTreeSet<&str> = listing.instances.iter().map(|i| i.id.as_str()).collect();
    let adopted: Vec<String> = seen.difference(&known).map(|s| s.to_string()).collect();
    let vanished: Vec<String> = known.difference(&seen).map(|s| s.to_string()).collect();
    let now = session.clock.now().await?;
    tracing::info!(
        plan = %plan,
        instances = listing.instances.len(),
        scopes = listing.listed.len(),
        adopted = adopted.len(),
        vanished = vanished.len(),
        "refreshed"
    );
    let changed = state.instances != listing.instances;
    state.instances = listing.instances;
    state.forget_shortages_older_than(now, session.plan.rebalance.move_back_after);
    Ok(Refreshed { state, serial_read, now, open_intents, adopted, vanished, changed })
}

/// States written before scopes were recorded (format 1) name none: such an
/// instance lives in the scope the plan configures for its cloud, which is
/// where gpufleet of that format created and listed it.
fn assign_legacy_scopes(providers: &Providers, instances: &mut [Instance]) {
    for instance in instances.iter_mut().filter(|i| i.scope.is_none()) {
        instance.scope = providers.scope_of(instance.cloud, &instance.region);
    }
}

/// Known instances whose scope was not listed, grouped by scope.
fn unlisted(plan: &str, known: &[Instance], listed: &BTreeSet<Scope>, unreachable: &[(Scope, String)]) -> Unreachable {
    let mut by_scope: BTreeMap<String, (String, Vec<Instance>)> = BTreeMap::new();
    for instance in known {
        let (scope, why) = match &instance.scope {
            Some(scope) if listed.contains(scope) => continue,
            Some(scope) => {
                let why = unreachable.iter().find(|(s, _)| s == scope).map(|(_, why)| why.clone());
                (scope.to_string(), why.unwrap_or_else(|| "not listed".to_string()))
            }
            None => (
                format!("{} (account not recorded)", instance.cloud),
                format!("the state predates recorded scopes and the plan has no [providers.{}]", instance.cloud),
            ),
        };
        by_scope.entry(scope).or_insert_with(|| (why, Vec::new())).1.push(instance.clone());
    }
    Unreachable {
        plan: plan.to_string(),
        scopes: by_scope.into_iter().map(|(scope, (why, instances))| (scope, why, instances)).collect(),
    }
}

/// Keep what a refresh found when there is nothing to execute: close the
/// intents an interrupted run left open and write the reconciled state, so
/// that the state lists exactly what the clouds run (a run killed after a
/// terminate went through but before it was recorded would otherwise leave
/// the state naming an instance that is gone). A refresh that changed
/// nothing writes nothing, so a saved plan made meanwhile stays current.
/// The caller holds the lock.
pub async fn record_refresh(session: &Session<'_>, refreshed: &mut Refreshed) -> Result<(), ApplyError> {
    if refreshed.open_intents.is_empty() && !refreshed.changed {
        return Ok(());
    }
    let run = uuid::Uuid::new_v4().to_string();
    close_open_intents(session, &run, refreshed).await?;
    emit_refreshed(session, refreshed);
    session.backend.save(&mut refreshed.state).await?;
    Ok(())
}

/// Mark every intent left open by an interrupted run as reconciled by this
/// refresh (whose listing adopted or dropped what the call did).
pub(super) async fn close_open_intents(
    session: &Session<'_>,
    run: &str,
    refreshed: &Refreshed,
) -> Result<(), ApplyError> {
    if refreshed.open_intents.is_empty() {
        return Ok(());
    }
    for intent in &refreshed.open_intents {
        let entry = Entry {
            at: refreshed.now,
            run: run.to_string(),
            token: intent.token.clone(),
            event: JournalEvent::Recovered { note: format!("reconciled by refresh of run {run}") },
        };
        session.backend.append_journal(&session.plan.name, &entry).await?;
    }
    session.events.emit(&Event::Recovered { intents: refreshed.open_intents.len() });
    Ok(())
}

pub(super) fn emit_refreshed(session: &Session<'_>, refreshed: &Refreshed) {
    session.events.emit(&Event::Refreshed {
        instances: refreshed.state.instances.len(),
        adopted: refreshed.adopted.clone(),
        vanished: refreshed.vanished.clone(),
    });
}
