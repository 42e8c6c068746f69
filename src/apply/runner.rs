//! The runner of one round: executes a changeset's actions through the
//! providers, journaling every mutating call before it is made, recording
//! refusals in shortage memory and writing the state once per batch of
//! calls (a round's creates, then its deletes), not once per call.

use super::events::{Attempted, Event, MoveTally};
use super::{ApplyError, Fence, Session};
use crate::model::{Cloud, Instance, Placement, Scope, Shortage, ShortageScope};
use crate::planner::{Action, ActionKind, Changeset, Reason};
use crate::providers::{CreateRequest, ErrorKind, ProviderError};
use crate::state::history::MoveRecord;
use crate::state::journal::{Entry, Event as JournalEvent, UnfinishedMove};
use crate::state::{State, StateError};
use chrono::{DateTime, Utc};
use std::collections::{BTreeMap, BTreeSet};

/// How one create of a round ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum CreateOutcome {
    /// Every node asked for came up.
    Filled,
    /// Some came up, at or above `min_count`; the offering has no more for now.
    Partial,
    /// Fewer than `min_count` came up and were released again.
    Released,
    /// Capacity or quota refused it; remembered as a shortage.
    Refused,
    /// Any other failure; reported as an error.
    Failed,
    /// The run was stopping: never called.
    NotStarted,
    /// The run stopped while the call was in flight: its intent stays open
    /// for the next run's refresh to reconcile.
    Abandoned,
}

impl CreateOutcome {
    /// A refusal of capacity: the place to try something else.
    pub(super) fn is_shortfall(self) -> bool {
        matches!(self, CreateOutcome::Partial | CreateOutcome::Released | CreateOutcome::Refused)
    }
}

/// One create of a round: how it ended and how many nodes it kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct CreateResult {
    pub outcome: CreateOutcome,
    pub kept: u32,
}

/// What one round did.
#[derive(Debug, Default)]
pub(super) struct RoundOutcome {
    /// Something was created, deleted or ruled out: planning again may differ.
    pub progressed: bool,
    /// One per create action of the changeset, in its order.
    pub creates: Vec<CreateResult>,
    /// Make-before-break deletes held back because their fleet's creates fell short.
    pub postponed: Vec<Action>,
}

/// Executes actions: journal, call, journal, state.
pub(super) struct Runner<'s> {
    session: &'s Session<'s>,
    fence: &'s Fence<'s>,
    pub run: String,
    pub refused: Vec<(String, Attempted)>,
    pub errors: Vec<String>,
    pub created: u32,
    pub deleted: u32,
    pub drain_failures: Vec<String>,
    /// Instances whose drain failed in this run.
    undrained: BTreeSet<String>,
    pub moves: MoveTally,
    /// The same moves, by fleet and from where to where.
    pub moved: Vec<MoveRecord>,
    /// The new instances of each move, by [`move_key`], for its delete's intent.
    replacements: BTreeMap<MoveKey, Vec<String>>,
    /// The state changed since it was last saved. It is saved per batch of
    /// calls (a round's creates, its deletes), not after each call: every
    /// call's intent and outcome are in the journal first, and the next
    /// run's refresh lists what the clouds hold, so a run killed between
    /// two saves loses nothing.
    unsaved: bool,
}

/// What ties a move's create to its delete: fleet, from, to.
type MoveKey = (String, String, String);

/// The move a create or a delete is half of, if it is.
fn move_key(action: &Action) -> Option<MoveKey> {
    match &action.reason {
        Reason::CreateBecauseMove { from, .. } => {
            Some((action.fleet.clone(), from.clone(), action.placement.to_string()))
        }
        Reason::DeleteBecauseMoved { to } => Some((action.fleet.clone(), action.placement.to_string(), to.clone())),
        _ => None,
    }
}

/// A create whose intent is journaled, ready to be sent.
struct PreparedCreate {
    request: CreateRequest,
    /// The quota pre-check cut the request to this many nodes.
    quota_cap: Option<u32>,
}

impl<'s> Runner<'s> {
    pub(super) fn new(session: &'s Session<'s>, fence: &'s Fence<'s>, run: &str) -> Runner<'s> {
        Runner {
            session,
            fence,
            run: run.to_string(),
            refused: Vec::new(),
            errors: Vec::new(),
            created: 0,
            deleted: 0,
            drain_failures: Vec::new(),
            undrained: BTreeSet::new(),
            moves: MoveTally::default(),
            moved: Vec::new(),
            replacements: BTreeMap::new(),
            unsaved: false,
        }
    }

    /// Idempotency token: unique per call, stable across retries of it. A
    /// UUID, because Compute Engine's requestId must be one; it also fits
    /// EC2's 64-character ClientToken.
    fn next_token() -> String {
        uuid::Uuid::new_v4().to_string()
    }

    /// Journal `event`; an intent only while the run still holds the lock,
    /// since the call it announces follows.
    async fn journal(&self, token: &str, event: JournalEvent, now: DateTime<Utc>) -> Result<(), ApplyError> {
        if event.is_intent() {
            self.fence.confirm().await?;
        }
        let entry = Entry { at: now, run: self.run.clone(), token: token.to_string(), event };
        Ok(self.session.backend.append_journal(&self.session.plan.name, &entry).await?)
    }

    /// Save the state if a call changed it since the last save. Refused as
    /// stale, it says why when the reason is a lost lock: another run took
    /// over while this one was paused.
    pub(super) async fn save_changes(&mut self, state: &mut State) -> Result<(), ApplyError> {
        if !std::mem::take(&mut self.unsaved) {
            return Ok(());
        }
        match self.session.backend.save(state).await {
            Err(conflict @ StateError::Conflict { .. }) => {
                self.fence.confirm().await?;
                Err(conflict.into())
            }
            saved => Ok(saved?),
        }
    }

    /// Execute one changeset: its creates (concurrently across cloud and
    /// region), then its deletes, holding back make-before-break deletes of
    /// fleets whose creates fell short.
    pub(super) async fn execute(
        &mut self,
        changeset: &Changeset,
        state: &mut State,
        now: DateTime<Utc>,
    ) -> Result<RoundOutcome, ApplyError> {
        let session = self.session;
        let mut round = RoundOutcome::default();
        let creates: Vec<&Action> = changeset.actions.iter().filter(|a| a.kind == ActionKind::Create).collect();
        let mut results = vec![CreateResult { outcome: CreateOutcome::NotStarted, kept: 0 }; creates.len()];
        let mut prepared: Vec<(usize, PreparedCreate)> = Vec::new();
        // The old instances of each move, named in its create's intent.
        let replaced: BTreeMap<MoveKey, &[String]> = changeset
            .actions
            .iter()
            .filter(|a| a.kind == ActionKind::Delete)
            .filter_map(|a| Some((move_key(a)?, a.instance_ids.as_slice())))
            .collect();
        for (index, action) in creates.iter().enumerate() {
            if session.stopping() {
                break;
            }
            let replaces =
                move_key(action).and_then(|key| replaced.get(&key)).map_or_else(Vec::new, |ids| ids.to_vec());
            match self.prepare_create(action, replaces, state, now).await? {
                Ok(ready) => prepared.push((index, ready)),
                Err(outcome) => results[index] = CreateResult { outcome, kept: 0 },
            }
        }
        // The calls themselves run concurrently, one at a time per cloud and
        // region (the scope of the clouds' rate limits), all journaled above.
        let answers = call_creates(session, &prepared).await?;
        for ((index, ready), answer) in prepared.into_iter().zip(answers) {
            results[index] = self.finish_create(creates[index], ready, answer, state, now).await?;
        }
        // The new nodes are on record before any drain or delete, which may take long.
        self.save_changes(state).await?;
        let mut fleets_short: BTreeSet<&str> = BTreeSet::new();
        for (action, result) in creates.iter().zip(&results) {
            let sent = !matches!(result.outcome, CreateOutcome::NotStarted | CreateOutcome::Abandoned);
            if let Reason::CreateBecauseMove { from, .. } = &action.reason
                && sent
            {
                let failed = action.count.saturating_sub(result.kept);
                self.moves.started += action.count;
                self.moves.failed += failed;
                let moved = MoveRecord {
                    fleet: action.fleet.clone(),
                    from: from.clone(),
                    to: action.placement.to_string(),
                    started: action.count,
                    finished: 0,
                    failed,
                };
                MoveRecord::tally(&mut self.moved, moved);
            }
            round.progressed |= sent && result.outcome != CreateOutcome::Failed;
            if result.outcome != CreateOutcome::Filled {
                fleets_short.insert(&action.fleet);
            }
        }
        round.creates = results;
        for action in changeset.actions.iter().filter(|a| a.kind == ActionKind::Delete) {
            if session.stopping() {
                break;
            }
            if action.reason.is_make_before_break() && fleets_short.contains(action.fleet.as_str()) {
                session.events.emit(&Event::Postponed {
                    fleet: action.fleet.clone(),
                    placement: action.placement.clone(),
                    why: "the fleet's new nodes are not all in place yet".into(),
                });
                round.postponed.push(action.clone());
                continue;
            }
            if self.delete(action, state, now).await? {
                round.progressed = true;
            }
        }
        self.save_changes(state).await?;
        Ok(round)
    }

    /// Everything before the call: the quota pre-check, the request, its
    /// intent in the journal. `Err(outcome)` when no call is to be made.
    async fn prepare_create(
        &mut self,
        action: &Action,
        replaces: Vec<String>,
        state: &mut State,
        now: DateTime<Utc>,
    ) -> Result<Result<PreparedCreate, CreateOutcome>, ApplyError> {
        let session = self.session;
        let Some(fleet) = session.plan.fleets.get(&action.fleet) else {
            self.errors.push(format!("fleet `{}` is not in the plan; nothing was created for it", action.fleet));
            return Ok(Err(CreateOutcome::Failed));
        };
        let cloud = action.placement.cloud;
        let provider = session.clouds.home(cloud).ok_or(ApplyError::NoProvider { cloud })?;
        // Ask the quota first where the cloud tells it: no call is spent on
        // an offering the quota already rules out, and a request the quota
        // can only partly hold is cut to what fits.
        let mut count = action.count;
        let mut min_count = action.min_count;
        let mut quota_cap = None;
        let headroom = provider.quota_headroom(&action.placement, &fleet.gpu, fleet.gpus_per_node);
        let Some(headroom) = session.stop.unless_requested(headroom).await else {
            return Ok(Err(CreateOutcome::NotStarted));
        };
        if let Ok(Some(room)) = headroom {
            if room < min_count {
                let message = format!(
                    "quota allows {room} more node(s) of {}×{}; checked before creating",
                    fleet.gpus_per_node, fleet.gpu
                );
                self.remember(state, action, ErrorKind::Quota, "QUOTA_EXCEEDED", &message, now);
                self.unsaved = true;
                return Ok(Err(CreateOutcome::Refused));
            }
            if room < count {
                count = room;
                min_count = min_count.min(room);
                quota_cap = Some(room);
            }
        }
        let token = Self::next_token();
        let request = CreateRequest {
            plan: session.plan.name.clone(),
            fleet: action.fleet.clone(),
            run: self.run.clone(),
            placement: action.placement.clone(),
            count,
            min_count,
            image: fleet.image.get(&cloud).cloned().unwrap_or_default(),
            user_data: fleet.startup.as_ref().map(|s| with_placement(&s.content, &session.plan.name, action)),
            labels: fleet.labels.clone(),
            launch: session.plan.launch(fleet, &action.placement),
            idempotency_token: token.clone(),
        };
        let intent = JournalEvent::CreateIntent {
            fleet: action.fleet.clone(),
            placement: action.placement.clone(),
            count,
            min_count,
            replaces,
        };
        self.journal(&token, intent, now).await?;
        session.events.emit(&Event::Attempt {
            fleet: action.fleet.clone(),
            placement: action.placement.clone(),
            count,
            min_count,
        });
        Ok(Ok(PreparedCreate { request, quota_cap }))
    }

    /// Everything after the call: journal, state, events, shortage memory.
    async fn finish_create(
        &mut self,
        action: &Action,
        prepared: PreparedCreate,
        answer: Option<Result<Vec<Instance>, ProviderError>>,
        state: &mut State,
        now: DateTime<Utc>,
    ) -> Result<CreateResult, ApplyError> {
        let session = self.session;
        let PreparedCreate { request, quota_cap } = prepared;
        let min_count = request.min_count;
        let token = request.idempotency_token;
        let instances = match answer {
            None => {
                tracing::warn!(fleet = %action.fleet, placement = %action.placement, "create abandoned: the run is stopping");
                return Ok(CreateResult { outcome: CreateOutcome::Abandoned, kept: 0 });
            }
            Some(Ok(instances)) => instances,
            Some(Err(e)) => {
                tracing::warn!(fleet = %action.fleet, placement = %action.placement, code = %e.code, "create refused or failed");
                self.journal(&token, JournalEvent::Failed { code: e.code.clone() }, now).await?;
                if e.kind.is_shortage() {
                    self.remember(state, action, e.kind.clone(), &e.code, &e.message, now);
                    self.unsaved = true;
                    return Ok(CreateResult { outcome: CreateOutcome::Refused, kept: 0 });
                }
                self.failed(action, &e);
                return Ok(CreateResult { outcome: CreateOutcome::Failed, kept: 0 });
            }
        };
        let ids: Vec<String> = instances.iter().map(|i| i.id.clone()).collect();
        tracing::info!(fleet = %action.fleet, placement = %action.placement, asked = request.count, got = ids.len(), "created");
        self.journal(&token, JournalEvent::Done { instance_ids: ids.clone() }, now).await?;
        if let Some(key) = move_key(action) {
            self.replacements.insert(key, ids.clone());
        }
        let got = instances.len() as u32;
        self.created += got;
        state.instances.extend(instances);
        state.instances.sort();
        state.instances.dedup_by(|a, b| a.id == b.id);
        session.events.emit(&Event::Created {
            fleet: action.fleet.clone(),
            placement: action.placement.clone(),
            requested: action.count,
            instance_ids: ids.clone(),
        });
        if got >= action.count {
            self.unsaved = true;
            return Ok(CreateResult { outcome: CreateOutcome::Filled, kept: got });
        }
        if got < min_count {
            // A cloud without all-or-nothing launches (an Azure scale-out)
            // gave fewer than the fewest worth keeping: release them.
            let message = format!("only {got} of at least {min_count} nodes");
            self.remember(state, action, ErrorKind::Capacity, "BelowMinCount", &message, now);
            self.unsaved = true;
            let release = Action {
                kind: ActionKind::Delete,
                count: got,
                min_count: 0,
                instance_ids: ids,
                reason: Reason::DeleteBecauseBelowMinCount { min_count },
                fallbacks: Vec::new(),
                ..action.clone()
            };
            self.delete(&release, state, now).await?;
            return Ok(CreateResult { outcome: CreateOutcome::Released, kept: 0 });
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
        self.unsaved = true;
        Ok(CreateResult { outcome: CreateOutcome::Partial, kept: got })
    }

    /// A call failed for a reason other than capacity or quota: reported, and the run stops after this round.
    fn failed(&mut self, action: &Action, e: &ProviderError) {
        self.session.events.emit(&Event::Failed {
            fleet: action.fleet.clone(),
            placement: action.placement.clone(),
            code: e.code.clone(),
            message: e.message.clone(),
        });
        self.errors.push(e.to_string());
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
        let plan = self.session.plan;
        let scope = match (kind, plan.fleets.get(&action.fleet)) {
            (ErrorKind::Quota, Some(fleet)) => ShortageScope::Quota {
                cloud: action.placement.cloud,
                region: action.placement.region.clone(),
                gpu: fleet.gpu.clone(),
            },
            _ => ShortageScope::Offering { placement: action.placement.clone() },
        };
        // A TTL too large to add is as good as forever.
        let expires_at = chrono::Duration::from_std(plan.shortage_ttl)
            .ok()
            .and_then(|ttl| now.checked_add_signed(ttl))
            .unwrap_or(DateTime::<Utc>::MAX_UTC);
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

    /// Delete the action's instances, one call per account scope that holds
    /// them. True when anything was deleted.
    pub(super) async fn delete(
        &mut self,
        action: &Action,
        state: &mut State,
        now: DateTime<Utc>,
    ) -> Result<bool, ApplyError> {
        let mut by_scope: BTreeMap<Option<Scope>, Vec<Instance>> = BTreeMap::new();
        for instance in state.instances.iter().filter(|i| action.instance_ids.contains(&i.id)) {
            by_scope.entry(instance.scope.clone()).or_default().push(instance.clone());
        }
        // Nodes that came up short of min_count never took work: no drain.
        let drain = !matches!(action.reason, Reason::DeleteBecauseBelowMinCount { .. });
        let mut deleted_any = false;
        for group in by_scope.into_values() {
            // Drain one call's worth right before that call, so that a stop
            // leaves as few drained but running nodes as it can.
            let mut doomed = Vec::with_capacity(group.len());
            for instance in group {
                if !drain || self.drained(action, &instance).await {
                    doomed.push(instance);
                }
            }
            if self.session.stopping() || doomed.is_empty() {
                continue;
            }
            deleted_any |= self.delete_in_one_scope(action, &doomed, state, now).await?;
        }
        Ok(deleted_any)
    }

    /// Complete the moves an interrupted run left half done, or leave them
    /// rolled back (see `moves`): their old nodes go once their new ones run.
    pub(super) async fn finish_moves(
        &mut self,
        unfinished: &[UnfinishedMove],
        state: &mut State,
        now: DateTime<Utc>,
    ) -> Result<(), ApplyError> {
        let session = self.session;
        for completion in super::moves::completions(session.plan, &state.instances, unfinished, session.catalog) {
            if session.stopping() {
                break;
            }
            let super::moves::Completion { action, replaced_by } = completion;
            tracing::info!(fleet = %action.fleet, placement = %action.placement, instances = action.count, "completing an interrupted move");
            if let Some(key) = move_key(&action) {
                self.replacements.insert(key, replaced_by);
            }
            self.delete(&action, state, now).await?;
        }
        self.save_changes(state).await
    }

    /// Drain one node before its delete; false (reported) keeps it.
    async fn drained(&mut self, action: &Action, instance: &Instance) -> bool {
        // Stopping, or refused once this run already: not asked again.
        if self.session.stopping() || self.undrained.contains(&instance.id) {
            return false;
        }
        match self.session.drain.drain(&self.session.plan.name, instance).await {
            Ok(()) => true,
            Err(message) => {
                self.session.events.emit(&Event::DrainFailed {
                    fleet: action.fleet.clone(),
                    instance_id: instance.id.clone(),
                    message: message.clone(),
                });
                self.drain_failures.push(format!("{} (fleet {}) kept: {message}", instance.id, action.fleet));
                self.undrained.insert(instance.id.clone());
                false
            }
        }
    }

    async fn delete_in_one_scope(
        &mut self,
        action: &Action,
        doomed: &[Instance],
        state: &mut State,
        now: DateTime<Utc>,
    ) -> Result<bool, ApplyError> {
        let session = self.session;
        let cloud = action.placement.cloud;
        let provider = session.clouds.holding(&doomed[0]).ok_or(ApplyError::NoProvider { cloud })?;
        let ids: Vec<String> = doomed.iter().map(|i| i.id.clone()).collect();
        let token = Self::next_token();
        let intent = JournalEvent::DeleteIntent {
            fleet: action.fleet.clone(),
            placement: action.placement.clone(),
            instance_ids: ids.clone(),
            replaced_by: move_key(action).and_then(|key| self.replacements.get(&key).cloned()).unwrap_or_default(),
        };
        self.journal(&token, intent, now).await?;
        let event = |ids: Vec<String>| (action.fleet.clone(), action.placement.clone(), ids);
        let (fleet, placement, instance_ids) = event(ids.clone());
        session.events.emit(&Event::Deleting { fleet, placement, instance_ids });
        let Some(result) = session.stop.unless_requested(provider.delete(doomed)).await else {
            tracing::warn!(fleet = %action.fleet, placement = %action.placement, "delete abandoned: the run is stopping");
            return Ok(false);
        };
        tracing::info!(fleet = %action.fleet, placement = %action.placement, instances = ids.len(), ok = result.is_ok(), reason = %action.reason, "deleted");
        match result {
            Ok(()) => {
                self.journal(&token, JournalEvent::Done { instance_ids: ids.clone() }, now).await?;
                state.instances.retain(|i| !ids.contains(&i.id));
                self.unsaved = true;
                self.deleted += ids.len() as u32;
                if let Reason::DeleteBecauseMoved { to } = &action.reason {
                    self.moves.finished += ids.len() as u32;
                    let moved = MoveRecord {
                        fleet: action.fleet.clone(),
                        from: action.placement.to_string(),
                        to: to.clone(),
                        started: 0,
                        finished: ids.len() as u32,
                        failed: 0,
                    };
                    MoveRecord::tally(&mut self.moved, moved);
                }
                let (fleet, placement, instance_ids) = event(ids);
                session.events.emit(&Event::Deleted { fleet, placement, instance_ids });
                Ok(true)
            }
            Err(e) => {
                self.journal(&token, JournalEvent::Failed { code: e.code.clone() }, now).await?;
                self.failed(action, &e);
                Ok(false)
            }
        }
    }
}

/// A shell startup script with the node's place exported right after its
/// `#!` line, so that it can join its cluster with topology labels
/// (`topology.kubernetes.io/region`, `.../zone`, `gpufleet.io/fleet`). Other
/// user data (cloud-init YAML, say) goes unchanged.
pub(super) fn with_placement(script: &str, plan: &str, action: &Action) -> String {
    let Some((shebang, rest)) = script.split_once('\n').filter(|(first, _)| first.starts_with("#!")) else {
        return script.to_string();
    };
    let mut out = format!("{shebang}\n");
    for (name, value) in super::drain::placement_env(plan, &action.fleet, &action.placement) {
        // Names and places are validated words; quoting keeps the script a script regardless.
        out.push_str(&format!("export {name}='{}'\n", value.replace('\'', "")));
    }
    out.push_str(rest);
    out
}

/// What one create call answered; `None` when the run stopped first and the
/// call was abandoned (or never sent).
type CreateAnswer = Option<Result<Vec<Instance>, ProviderError>>;

/// Sends the prepared creates: concurrently across (cloud, region), in order
/// within one. Answers come back in the order of `prepared`. A create at a
/// placement that just refused for capacity or quota (the parts of a create
/// split at the per-call limit) gets that refusal without a call.
async fn call_creates(
    session: &Session<'_>,
    prepared: &[(usize, PreparedCreate)],
) -> Result<Vec<CreateAnswer>, ApplyError> {
    let mut lanes: BTreeMap<(Cloud, &str), Vec<usize>> = BTreeMap::new();
    for (position, (_, ready)) in prepared.iter().enumerate() {
        let placement: &Placement = &ready.request.placement;
        lanes.entry((placement.cloud, placement.region.as_str())).or_default().push(position);
    }
    let mut calls = Vec::new();
    for ((cloud, _), positions) in lanes {
        let provider = session.clouds.home(cloud).ok_or(ApplyError::NoProvider { cloud })?;
        calls.push(async move {
            let mut done = Vec::with_capacity(positions.len());
            let mut refused: Vec<(&Placement, ProviderError)> = Vec::new();
            for position in positions {
                let request = &prepared[position].1.request;
                if let Some((_, error)) = refused.iter().find(|(at, _)| **at == request.placement) {
                    done.push((position, Some(Err(error.clone()))));
                    continue;
                }
                let answer = session.stop.unless_requested(provider.create(request)).await;
                if let Some(Err(error)) = &answer
                    && error.kind.is_shortage()
                {
                    refused.push((&request.placement, error.clone()));
                }
                done.push((position, answer));
            }
            done
        });
    }
    let mut answers: Vec<Option<CreateAnswer>> = (0..prepared.len()).map(|_| None).collect();
    for (position, answer) in futures::future::join_all(calls).await.into_iter().flatten() {
        answers[position] = Some(answer);
    }
    Ok(answers.into_iter().map(|a| a.expect("every prepared create is in exactly one lane")).collect())
}
