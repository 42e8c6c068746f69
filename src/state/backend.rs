//! The one interface to wherever state lives: the local directory today, a
//! shared database next. Everything above `state` (plan, apply, destroy, the
//! rebalancer) goes through [`StateBackend`] and never sees a file or a table.

use super::StateError;
use super::history::HistoryEntry;
use super::journal::{self, Entry, UnfinishedMove};
use super::lock::Holder;
use super::model::State;
use chrono::{DateTime, Utc};
use std::time::Duration;

/// Where a plan's state, lock, journal and leader lease live.
#[async_trait::async_trait]
pub trait StateBackend: Send + Sync {
    /// Where this backend keeps things, for messages (never with secrets).
    fn location(&self) -> String;

    /// The plan's state, or a fresh one if it has none yet.
    async fn load(&self, plan: &str) -> Result<State, StateError>;

    /// Store `state` if the stored serial is still `state.serial` (the one
    /// it was loaded or last saved with), bumping the serial. A writer with a
    /// stale serial is refused ([`StateError::Conflict`]), never silently
    /// overwrites.
    async fn save(&self, state: &mut State) -> Result<(), StateError>;

    /// Every plan with stored state, sorted by name.
    async fn list_plans(&self) -> Result<Vec<String>, StateError>;

    /// Take the plan's lock for `holder`, or say who has it.
    async fn lock(&self, plan: &str, holder: Holder) -> Result<Box<dyn Lease>, StateError>;

    /// Take the plan's lock from whoever holds it, alive or not (`state
    /// unlock --force`). A live holder learns at its next renewal that it
    /// lost the lock, and starts no further call. Returns the lock and the
    /// holder it was taken from, if one was recorded.
    async fn take_over(&self, plan: &str, holder: Holder) -> Result<(Box<dyn Lease>, Option<Holder>), StateError>;

    /// Take the leader lease `name` (one long-running loop per plan acts at a time).
    async fn lead(&self, name: &str, holder: Holder) -> Result<Box<dyn Lease>, StateError>;

    /// Append one journal entry and make it durable before returning.
    async fn append_journal(&self, plan: &str, entry: &Entry) -> Result<(), StateError>;

    /// Every readable journal entry of the plan, in the order written.
    async fn journal(&self, plan: &str) -> Result<Vec<Entry>, StateError>;

    /// Intents with no outcome yet: left by a run that was interrupted.
    async fn open_intents(&self, plan: &str) -> Result<Vec<Entry>, StateError> {
        Ok(journal::open_intents_of(self.journal(plan).await?))
    }

    /// Moves a run started and did not finish: see [`journal::unfinished_moves_of`].
    async fn unfinished_moves(&self, plan: &str) -> Result<Vec<UnfinishedMove>, StateError> {
        Ok(journal::unfinished_moves_of(self.journal(plan).await?))
    }

    /// Record one finished run.
    async fn append_history(&self, plan: &str, entry: &HistoryEntry) -> Result<(), StateError>;

    /// Every recorded run, oldest first.
    async fn history(&self, plan: &str) -> Result<Vec<HistoryEntry>, StateError>;

    /// Store a plan's state, journal and history exactly as given (serial and
    /// lineage included), replacing what is stored for it: the way state
    /// moves between backends. Refused when the plan has state here, unless
    /// `replace`.
    async fn import(&self, copy: &PlanCopy, replace: bool) -> Result<(), StateError>;

    /// Put a plan whose stored state cannot be read (damaged, or naming
    /// another plan) back in working order: the state before its last save
    /// where one is kept and reads, else an empty state with a new lineage,
    /// whose instances the next refresh re-adopts from the clouds by their
    /// ownership tags. The damaged state is kept aside, never deleted. The
    /// caller holds the plan's lock; `now` names what is kept.
    async fn repair(&self, plan: &str, now: DateTime<Utc>) -> Result<Repaired, StateError>;

    /// Finish what the backend does in the background (releasing dropped
    /// leases), before the process exits.
    async fn close(&self) {}
}

/// What [`StateBackend::repair`] did.
#[derive(Debug, Clone, PartialEq)]
pub enum Repaired {
    /// The state reads: nothing to repair.
    Healthy,
    /// The state before the last save is back, with this serial; the damaged
    /// one is kept where `kept` says.
    FromBackup { serial: u64, kept: String },
    /// Nothing readable was left: the state starts over, empty, and the
    /// damaged one is kept where `kept` says.
    StartedOver { kept: String },
}

/// Everything a backend stores for one plan (leases aside).
#[derive(Debug, Clone, PartialEq)]
pub struct PlanCopy {
    pub state: State,
    pub journal: Vec<Entry>,
    pub history: Vec<HistoryEntry>,
}

impl PlanCopy {
    /// Read all of `plan` from `backend`.
    pub async fn read(backend: &dyn StateBackend, plan: &str) -> Result<PlanCopy, StateError> {
        Ok(PlanCopy {
            state: backend.load(plan).await?,
            journal: backend.journal(plan).await?,
            history: backend.history(plan).await?,
        })
    }
}

/// A held lock or leader lease; released when dropped.
#[async_trait::async_trait]
pub trait Lease: Send + Sync {
    fn holder(&self) -> &Holder;

    /// Extend the lease to `now + lease`.
    async fn renew(&mut self, now: DateTime<Utc>, lease: Duration) -> Result<(), StateError>;
}
