//! The local backend: `DIR/<plan>.json` (state) and `DIR/<plan>.json.backup`
//! (the state before the last save), `DIR/<plan>.lock`,
//! `DIR/<plan>.journal.jsonl`, `DIR/<plan>.history.jsonl`, and
//! `DIR/<name>.leader` for leader leases.
//!
//! File names come from plan names only (checked by [`is_valid_name`]),
//! never from what a file says: the directory may have other writers.

use super::backend::{Lease, PlanCopy, Repaired, StateBackend};
use super::history::HistoryEntry;
use super::journal::{Entry, Journal};
use super::lock::{Holder, LockError, StateLock};
use super::model::{STATE_FORMAT_VERSION, State};
use crate::files;
use crate::model::{is_valid_name, printable};
use chrono::{DateTime, Utc};
use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// What went wrong with stored state, in either backend. `at` says where,
/// as "state file PATH" or "the state of plan P in postgres://HOST/DB" (a
/// database location never carries its password).
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum StateError {
    #[error("cannot read state file {path}: {source}")]
    Read { path: PathBuf, source: io::Error },
    #[error("{at} is not valid gpufleet state: {source}")]
    #[diagnostic(help(
        "it was damaged or edited by hand: `gpufleet state repair {plan}` restores the state before the \
         last save, or starts over and re-adopts the plan's instances from the clouds"
    ))]
    Corrupt { at: String, plan: String, source: crate::json::JsonError },
    #[error("{at} is the state of plan `{}`, not of plan `{plan}`", printable(found))]
    #[diagnostic(help(
        "a state holds the plan it is stored as: `gpufleet state repair {plan}` restores the state before \
         the last save, or starts over and re-adopts the plan's instances from the clouds"
    ))]
    OtherPlan { at: String, plan: String, found: String },
    #[error("`{}` is not a plan name, so it names no state", printable(name))]
    #[diagnostic(help("plan names are 1 to 63 lowercase letters, digits and `-` (not first or last)"))]
    BadName { name: String },
    #[error("{at} has format version {found}; this gpufleet reads up to {STATE_FORMAT_VERSION}")]
    #[diagnostic(help("a newer gpufleet wrote it: use that version"))]
    TooNew { at: String, found: u32 },
    #[error("cannot write state file {path}: {source}")]
    Write { path: PathBuf, source: io::Error },
    #[error("cannot write history {path}: {source}")]
    History { path: PathBuf, source: io::Error },
    #[error("cannot use journal {path}: {source}")]
    Journal { path: PathBuf, source: io::Error },
    #[error(
        "state of plan `{plan}` changed underneath this run (serial {expected} expected, {found} stored at {location})"
    )]
    #[diagnostic(help("another run wrote the state meanwhile; run the command again"))]
    Conflict { plan: String, location: String, expected: u64, found: u64 },
    #[error("{at} has serial {serial}, the highest there is; it cannot be written again")]
    #[diagnostic(help("the state was edited by hand: restore it from a backup"))]
    SerialExhausted { at: String, serial: u64 },
    #[error("state database {location}: {}", with_causes(source.as_ref()))]
    #[diagnostic(help("check that the database is up and reachable, and the URL's user, password and database"))]
    Database { location: String, source: Box<dyn std::error::Error + Send + Sync> },
    #[error("state URL is not a PostgreSQL URL: {why}")]
    #[diagnostic(help("write it as postgres://USER:PASSWORD@HOST:PORT/DATABASE (or ?host=/socket/dir)"))]
    BadUrl { why: String },
    #[error("state database {location} has schema version {found}; this gpufleet knows up to {known}")]
    #[diagnostic(help("a newer gpufleet migrated it: use that version"))]
    SchemaTooNew { location: String, found: i32, known: i32 },
    #[error("plan `{plan}` already has state in {location}")]
    #[diagnostic(help("pass --force to replace its state, journal and history there with this copy"))]
    PlanExists { plan: String, location: String },
    #[error(transparent)]
    #[diagnostic(transparent)]
    Lock(#[from] LockError),
}

impl StateError {
    /// Whether the stored state itself is unusable, the case `state repair` is for.
    pub fn is_damage(&self) -> bool {
        matches!(self, StateError::Corrupt { .. } | StateError::OtherPlan { .. })
    }
}

/// An error and its causes, as one line: the driver's own message often
/// names only the step that failed ("error performing TLS handshake").
fn with_causes(error: &(dyn std::error::Error + 'static)) -> String {
    let mut line = error.to_string();
    let mut cause = error.source();
    while let Some(inner) = cause {
        let text = inner.to_string();
        if !line.contains(&text) {
            line.push_str(": ");
            line.push_str(&text);
        }
        cause = inner.source();
    }
    line
}

#[derive(Debug, Clone)]
pub struct LocalBackend {
    dir: PathBuf,
}

impl LocalBackend {
    pub fn new(dir: impl Into<PathBuf>) -> LocalBackend {
        LocalBackend { dir: dir.into() }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// `DIR/<name><suffix>`, for a plan name, or a plan name and a role
    /// (`demo.rebalance`): never a path, whoever passed it.
    fn file(&self, name: &str, suffix: &str) -> Result<PathBuf, StateError> {
        if !name.split('.').all(is_valid_name) {
            return Err(StateError::BadName { name: name.to_string() });
        }
        Ok(self.dir.join(format!("{name}{suffix}")))
    }

    pub fn state_path(&self, plan: &str) -> Result<PathBuf, StateError> {
        self.file(plan, ".json")
    }

    pub fn backup_path(&self, plan: &str) -> Result<PathBuf, StateError> {
        self.file(plan, ".json.backup")
    }

    pub fn lock_path(&self, plan: &str) -> Result<PathBuf, StateError> {
        self.file(plan, ".lock")
    }

    pub fn journal_path(&self, plan: &str) -> Result<PathBuf, StateError> {
        self.file(plan, ".journal.jsonl")
    }

    fn history_path(&self, plan: &str) -> Result<PathBuf, StateError> {
        self.file(plan, ".history.jsonl")
    }

    fn leader_path(&self, name: &str) -> Result<PathBuf, StateError> {
        self.file(name, ".leader")
    }

    /// The stored state of `plan` and the bytes it was read from (`None`
    /// when it has none yet).
    fn read(&self, plan: &str) -> Result<(State, Option<Vec<u8>>), StateError> {
        let path = self.state_path(plan)?;
        match files::read(&path).map_err(|source| StateError::Read { path: path.clone(), source })? {
            Some(bytes) => Ok((parse_stored(&file_at(&path), plan, &bytes)?, Some(bytes))),
            None => Ok((State::new(plan), None)),
        }
    }
}

#[async_trait::async_trait]
impl StateBackend for LocalBackend {
    fn location(&self) -> String {
        self.dir.display().to_string()
    }

    async fn load(&self, plan: &str) -> Result<State, StateError> {
        Ok(self.read(plan)?.0)
    }

    /// The state it replaces is kept as `<plan>.json.backup`, the way back
    /// (`state repair`) if the new one is damaged later.
    async fn save(&self, state: &mut State) -> Result<(), StateError> {
        let (stored, previous) = self.read(&state.plan)?;
        if stored.serial != state.serial {
            return Err(StateError::Conflict {
                plan: state.plan.clone(),
                location: self.location(),
                expected: state.serial,
                found: stored.serial,
            });
        }
        let path = self.state_path(&state.plan)?;
        let written = next_stored(state, || file_at(&path))?;
        if let Some(previous) = previous {
            write_file(self.backup_path(&state.plan)?, previous)?;
        }
        write_file(path, state_bytes(&written))?;
        *state = written;
        Ok(())
    }

    async fn list_plans(&self) -> Result<Vec<String>, StateError> {
        let entries = match std::fs::read_dir(&self.dir) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(source) => return Err(StateError::Read { path: self.dir.clone(), source }),
        };
        let mut plans: Vec<String> = entries
            .filter_map(|e| e.ok())
            .filter_map(|e| e.file_name().to_str().and_then(|n| n.strip_suffix(".json")).map(str::to_string))
            .filter(|n| is_valid_name(n))
            .collect();
        plans.sort();
        Ok(plans)
    }

    async fn lock(&self, plan: &str, holder: Holder) -> Result<Box<dyn Lease>, StateError> {
        Ok(Box::new(StateLock::acquire(plan, &self.lock_path(plan)?, holder)?))
    }

    async fn take_over(&self, plan: &str, holder: Holder) -> Result<(Box<dyn Lease>, Option<Holder>), StateError> {
        let (lock, previous) = StateLock::take_over(plan, &self.lock_path(plan)?, holder)?;
        Ok((Box::new(lock), previous))
    }

    async fn lead(&self, name: &str, holder: Holder) -> Result<Box<dyn Lease>, StateError> {
        Ok(Box::new(StateLock::acquire(name, &self.leader_path(name)?, holder)?))
    }

    async fn append_journal(&self, plan: &str, entry: &Entry) -> Result<(), StateError> {
        let path = self.journal_path(plan)?;
        Journal::open(&path)
            .and_then(|mut journal| journal.append(entry))
            .map_err(|source| StateError::Journal { path, source })
    }

    async fn append_history(&self, plan: &str, entry: &HistoryEntry) -> Result<(), StateError> {
        let path = self.history_path(plan)?;
        let write = || -> io::Result<()> {
            let mut line = serde_json::to_vec(entry).map_err(io::Error::other)?;
            line.push(b'\n');
            let mut file = files::open_append(&path)?;
            std::io::Write::write_all(&mut file, &line)?;
            file.sync_data()
        };
        write().map_err(|source| StateError::History { path: path.clone(), source })
    }

    /// Lines that do not parse (a torn last line, a hand edit) are skipped:
    /// history is for reading, and one bad line must not hide the rest.
    async fn history(&self, plan: &str) -> Result<Vec<HistoryEntry>, StateError> {
        let path = self.history_path(plan)?;
        let bytes = match files::read(&path) {
            Ok(bytes) => bytes.unwrap_or_default(),
            Err(source) => return Err(StateError::Read { path, source }),
        };
        Ok(bytes.split(|b| *b == b'\n').filter_map(|line| serde_json::from_slice(line).ok()).collect())
    }

    async fn journal(&self, plan: &str) -> Result<Vec<Entry>, StateError> {
        let path = self.journal_path(plan)?;
        Journal::entries(&path).map_err(|source| StateError::Journal { path, source })
    }

    async fn import(&self, copy: &PlanCopy, replace: bool) -> Result<(), StateError> {
        let plan = &copy.state.plan;
        let path = self.state_path(plan)?;
        if !replace && std::fs::symlink_metadata(&path).is_ok() {
            return Err(StateError::PlanExists { plan: plan.clone(), location: self.location() });
        }
        write_file(self.journal_path(plan)?, json_lines(&copy.journal))?;
        write_file(self.history_path(plan)?, json_lines(&copy.history))?;
        write_file(path, state_bytes(&copy.state))
    }

    /// The damaged file is renamed `<plan>.json.damaged-<time>`, and
    /// `<plan>.json.backup` copied back when it reads as this plan's state.
    async fn repair(&self, plan: &str, now: DateTime<Utc>) -> Result<Repaired, StateError> {
        match self.read(plan) {
            Ok(_) => return Ok(Repaired::Healthy),
            Err(e) if e.is_damage() => {}
            Err(e) => return Err(e),
        }
        let path = self.state_path(plan)?;
        let kept = self.file(plan, &format!(".json.damaged-{}", now.format("%Y%m%dT%H%M%SZ")))?;
        std::fs::rename(&path, &kept).map_err(|source| StateError::Write { path: kept.clone(), source })?;
        let kept = kept.display().to_string();
        let backup = self.backup_path(plan)?;
        let restored = files::read(&backup)
            .ok()
            .flatten()
            .and_then(|bytes| Some((parse_stored(&file_at(&backup), plan, &bytes).ok()?, bytes)));
        Ok(match restored {
            Some((state, bytes)) => {
                write_file(path, bytes)?;
                Repaired::FromBackup { serial: state.serial, kept }
            }
            None => {
                write_file(path, state_bytes(&State::new(plan)))?;
                Repaired::StartedOver { kept }
            }
        })
    }
}

/// One JSON document per line, as the journal and history files hold them.
fn json_lines<T: serde::Serialize>(items: &[T]) -> Vec<u8> {
    let mut bytes = Vec::new();
    for item in items {
        // Entries are plain data: serializing them cannot fail.
        if let Ok(line) = serde_json::to_vec(item) {
            bytes.extend(line);
            bytes.push(b'\n');
        }
    }
    bytes
}

#[async_trait::async_trait]
impl Lease for StateLock {
    fn holder(&self) -> &Holder {
        StateLock::holder(self)
    }

    async fn renew(&mut self, now: DateTime<Utc>, lease: Duration) -> Result<(), StateError> {
        Ok(StateLock::renew(self, now, lease)?)
    }
}

/// A state as the file holds it.
fn state_bytes(state: &State) -> Vec<u8> {
    // A state is plain data: serializing it cannot fail.
    let mut bytes = serde_json::to_vec_pretty(state).unwrap_or_default();
    bytes.push(b'\n');
    bytes
}

fn write_file(path: PathBuf, bytes: Vec<u8>) -> Result<(), StateError> {
    files::write_atomic(&path, &bytes).map_err(|source| StateError::Write { path, source })
}

fn file_at(path: &Path) -> String {
    format!("state file {}", path.display())
}

/// The state of `plan` stored as `bytes`, in any format this gpufleet
/// reads; `at` names where it was stored, for errors.
pub(super) fn parse_stored(at: &str, plan: &str, bytes: &[u8]) -> Result<State, StateError> {
    #[derive(serde::Deserialize)]
    struct Version {
        format_version: u32,
    }
    let corrupt = |source| StateError::Corrupt { at: at.to_string(), plan: plan.to_string(), source };
    let version: Version = crate::json::from_slice(bytes).map_err(corrupt)?;
    if version.format_version > STATE_FORMAT_VERSION {
        return Err(StateError::TooNew { at: at.to_string(), found: version.format_version });
    }
    let state: State = crate::json::from_slice(bytes).map_err(corrupt)?;
    // A state is saved where its `plan` says: one naming another plan (or a
    // path, `../../x`) would be written there, not where it was read from.
    if state.plan != plan {
        return Err(StateError::OtherPlan { at: at.to_string(), plan: plan.to_string(), found: state.plan });
    }
    Ok(state)
}

/// `state` as it is stored after a save: the next serial, this format (a
/// state read in an older one is written in this one: format 1 lacked
/// instance scopes, which refresh has filled in by now).
pub(super) fn next_stored(state: &State, at: impl FnOnce() -> String) -> Result<State, StateError> {
    let next =
        state.serial.checked_add(1).ok_or_else(|| StateError::SerialExhausted { at: at(), serial: state.serial })?;
    let mut written = state.clone();
    written.serial = next;
    written.format_version = STATE_FORMAT_VERSION;
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[tokio::test]
    async fn save_then_load_round_trips_with_private_mode_and_bumped_serial() {
        let dir = tempfile::tempdir().unwrap();
        let backend = LocalBackend::new(dir.path().join("nested"));
        let mut state = backend.load("demo").await.unwrap();
        assert_eq!(state.serial, 0);
        backend.save(&mut state).await.unwrap();
        backend.save(&mut state).await.unwrap();
        let back = backend.load("demo").await.unwrap();
        assert_eq!(back, state);
        assert_eq!(back.serial, 2);
        let mode = std::fs::metadata(backend.state_path("demo").unwrap()).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(backend.list_plans().await.unwrap(), vec!["demo".to_string()]);
    }

    #[tokio::test]
    async fn a_writer_holding_a_stale_serial_is_refused_and_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let backend = LocalBackend::new(dir.path());
        let mut first = backend.load("demo").await.unwrap();
        let mut stale = first.clone();
        backend.save(&mut first).await.unwrap();
        stale.shortages.clear();
        let err = backend.save(&mut stale).await.unwrap_err();
        assert!(matches!(err, StateError::Conflict { expected: 0, found: 1, .. }), "{err}");
        assert_eq!(backend.load("demo").await.unwrap(), first);
    }

    #[tokio::test]
    async fn one_leader_at_a_time_and_the_lease_is_renewed_in_the_file() {
        use chrono::TimeZone;
        let dir = tempfile::tempdir().unwrap();
        let backend = LocalBackend::new(dir.path());
        let start = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
        let holder = |command: &str| Holder::this_process(command, start, Duration::from_secs(60));
        let mut leader = backend.lead("demo-rebalance", holder("rebalance --watch")).await.unwrap();
        let second = backend.lead("demo-rebalance", holder("rebalance --watch")).await;
        assert!(matches!(second, Err(StateError::Lock(LockError::Held { .. }))));
        let later = start + chrono::Duration::minutes(5);
        leader.renew(later, Duration::from_secs(60)).await.unwrap();
        let recorded: Holder =
            serde_json::from_slice(&std::fs::read(backend.leader_path("demo-rebalance").unwrap()).unwrap()).unwrap();
        assert_eq!(recorded.lease_expires, later + chrono::Duration::minutes(1));
        drop(leader);
        backend.lead("demo-rebalance", holder("rebalance --watch")).await.unwrap();
    }

    #[tokio::test]
    async fn the_last_serial_is_refused_instead_of_wrapping() {
        let dir = tempfile::tempdir().unwrap();
        let backend = LocalBackend::new(dir.path());
        let mut state = State::new("demo");
        state.serial = u64::MAX;
        std::fs::write(backend.state_path("demo").unwrap(), serde_json::to_vec(&state).unwrap()).unwrap();
        let err = backend.save(&mut state).await.unwrap_err();
        assert!(matches!(err, StateError::SerialExhausted { .. }), "{err}");
    }

    #[test]
    fn newer_format_is_refused_not_misread() {
        let dir = tempfile::tempdir().unwrap();
        let backend = LocalBackend::new(dir.path());
        std::fs::write(backend.state_path("demo").unwrap(), br#"{"format_version": 99}"#).unwrap();
        assert!(matches!(backend.read("demo"), Err(StateError::TooNew { found: 99, .. })));
        std::fs::write(backend.state_path("demo").unwrap(), b"{not json").unwrap();
        assert!(matches!(backend.read("demo"), Err(StateError::Corrupt { .. })));
    }

    #[tokio::test]
    async fn damaged_state_names_the_field_with_line_and_column() {
        let dir = tempfile::tempdir().unwrap();
        let backend = LocalBackend::new(dir.path());
        let mut state = State::new("demo");
        backend.save(&mut state).await.unwrap();
        let text = std::fs::read_to_string(backend.state_path("demo").unwrap()).unwrap();
        std::fs::write(backend.state_path("demo").unwrap(), text.replace("\"serial\": 1", "\"serial\": \"one\""))
            .unwrap();
        let message = backend.read("demo").unwrap_err().to_string();
        assert!(message.contains("demo.json") && message.contains("serial: invalid type"), "{message}");
        assert!(message.contains("line 3 column"), "{message}");
    }

    #[tokio::test]
    async fn state_naming_another_plan_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let backend = LocalBackend::new(dir.path());
        let mut state = State::new("other");
        backend.save(&mut state).await.unwrap();
        std::fs::rename(backend.state_path("other").unwrap(), backend.state_path("demo").unwrap()).unwrap();
        assert!(matches!(backend.read("demo"), Err(StateError::OtherPlan { .. })));
    }

    /// A copy (from `state pull`) whose state named `../../evil-state` was
    /// written there, outside the state directory.
    #[tokio::test]
    async fn a_copy_whose_state_names_a_path_is_refused_and_nothing_is_written() {
        let dir = tempfile::tempdir().unwrap();
        let backend = LocalBackend::new(dir.path().join("a").join("state"));
        let copy = PlanCopy { state: State::new("../../evil-state"), journal: Vec::new(), history: Vec::new() };
        let err = backend.import(&copy, true).await.unwrap_err();
        assert!(matches!(err, StateError::BadName { .. }), "{err}");
        assert!(std::fs::read_dir(dir.path()).unwrap().count() == 0);
        let mut state = State::new("../evil");
        assert!(matches!(backend.save(&mut state).await, Err(StateError::BadName { .. })));
    }

    #[tokio::test]
    async fn every_save_keeps_the_state_it_replaces_as_a_private_backup() {
        let dir = tempfile::tempdir().unwrap();
        let backend = LocalBackend::new(dir.path());
        let mut state = backend.load("demo").await.unwrap();
        backend.save(&mut state).await.unwrap();
        assert!(!backend.backup_path("demo").unwrap().exists(), "nothing to keep before the first save");
        let first = state.clone();
        backend.save(&mut state).await.unwrap();
        let backup = backend.backup_path("demo").unwrap();
        assert_eq!(parse_stored("backup", "demo", &std::fs::read(&backup).unwrap()).unwrap(), first);
        assert_eq!(std::fs::metadata(&backup).unwrap().permissions().mode() & 0o777, 0o600);
        assert_eq!(backend.list_plans().await.unwrap(), ["demo"]);
    }

    /// Another writer of the state directory plants links where gpufleet
    /// writes: it must never write through them.
    #[tokio::test]
    async fn links_planted_as_state_lock_journal_or_history_are_refused_and_their_targets_untouched() {
        use std::os::unix::fs::symlink;
        let dir = tempfile::tempdir().unwrap();
        let backend = LocalBackend::new(dir.path().join("state"));
        let bashrc = dir.path().join("bashrc");
        std::fs::write(&bashrc, "precious").unwrap();
        std::fs::create_dir(backend.dir()).unwrap();
        for suffix in [".json", ".lock", ".journal.jsonl", ".history.jsonl"] {
            symlink(&bashrc, backend.file("demo", suffix).unwrap()).unwrap();
        }
        let now = Utc::now();
        let err =
            backend.lock("demo", Holder::this_process("apply", now, Duration::from_secs(60))).await.err().unwrap();
        assert!(err.to_string().contains("demo.lock") && err.to_string().contains("symbolic link"), "{err}");
        let err = backend.save(&mut State::new("demo")).await.unwrap_err();
        assert!(err.to_string().contains("demo.json") && err.to_string().contains("symbolic link"), "{err}");
        let entry = crate::state::journal::Entry {
            at: now,
            run: "r".into(),
            token: "t".into(),
            event: crate::state::journal::Event::Failed { code: "x".into() },
        };
        assert!(backend.append_journal("demo", &entry).await.is_err());
        assert!(backend.journal("demo").await.is_err());
        assert!(backend.history("demo").await.is_err());
        assert_eq!(std::fs::read_to_string(&bashrc).unwrap(), "precious");
        // `state unlock --force` is the way out of a planted lock.
        backend.take_over("demo", Holder::this_process("unlock", now, Duration::from_secs(60))).await.unwrap();
        assert_eq!(std::fs::read_to_string(&bashrc).unwrap(), "precious");
    }

    #[tokio::test]
    async fn repair_restores_the_backup_else_starts_over_and_keeps_the_damaged_file() {
        use chrono::TimeZone;
        let dir = tempfile::tempdir().unwrap();
        let backend = LocalBackend::new(dir.path());
        let now = Utc.with_ymd_and_hms(2026, 3, 1, 12, 0, 0).unwrap();
        let mut state = State::new("demo");
        backend.save(&mut state).await.unwrap();
        backend.save(&mut state).await.unwrap();
        assert_eq!(backend.repair("demo", now).await.unwrap(), Repaired::Healthy);
        let path = backend.state_path("demo").unwrap();
        std::fs::write(&path, b"{\"format_version\": 2, \"plan\": ").unwrap();
        let err = backend.load("demo").await.unwrap_err();
        let help = miette::Diagnostic::help(&err).unwrap().to_string();
        assert!(err.to_string().contains("demo.json") && help.contains("gpufleet state repair demo"), "{err}: {help}");

        let kept = dir.path().join("demo.json.damaged-20260301T120000Z");
        assert_eq!(
            backend.repair("demo", now).await.unwrap(),
            Repaired::FromBackup { serial: 1, kept: kept.display().to_string() }
        );
        assert_eq!(std::fs::read(&kept).unwrap(), b"{\"format_version\": 2, \"plan\": ");
        let restored = backend.load("demo").await.unwrap();
        assert_eq!((restored.serial, &restored.lineage), (1, &state.lineage));

        // A state of another plan, and a damaged backup: nothing to restore.
        std::fs::write(&path, serde_json::to_vec(&State::new("other")).unwrap()).unwrap();
        std::fs::write(backend.backup_path("demo").unwrap(), b"garbage").unwrap();
        let later = now + chrono::Duration::seconds(1);
        assert!(matches!(backend.repair("demo", later).await.unwrap(), Repaired::StartedOver { .. }));
        let fresh = backend.load("demo").await.unwrap();
        assert!(fresh.instances.is_empty() && fresh.lineage != state.lineage);
        assert!(dir.path().join("demo.json.damaged-20260301T120001Z").exists());
    }
}
