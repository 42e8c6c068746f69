//! The local backend: `DIR/<plan>.json` (state), `DIR/<plan>.lock`,
//! `DIR/<plan>.journal.jsonl`, and `DIR/<name>.leader` for leader leases.

use super::backend::{Lease, PlanCopy, StateBackend};
use super::files;
use super::history::HistoryEntry;
use super::journal::{Entry, Journal};
use super::lock::{Holder, LockError, StateLock};
use super::model::{STATE_FORMAT_VERSION, State};
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
        "it was damaged or edited by hand: restore it from a backup. Removing it makes gpufleet \
         start over, adopting what the plan's configured scopes run, but it forgets the rest"
    ))]
    Corrupt { at: String, source: crate::json::JsonError },
    #[error("state file {path} is the state of plan `{found}`, not of plan `{plan}`")]
    #[diagnostic(help("a state file holds the plan its name says; restore the right file from a backup"))]
    OtherPlan { path: PathBuf, plan: String, found: String },
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

    pub fn state_path(&self, plan: &str) -> PathBuf {
        self.dir.join(format!("{plan}.json"))
    }

    pub fn lock_path(&self, plan: &str) -> PathBuf {
        self.dir.join(format!("{plan}.lock"))
    }

    pub fn journal_path(&self, plan: &str) -> PathBuf {
        self.dir.join(format!("{plan}.journal.jsonl"))
    }

    fn history_path(&self, plan: &str) -> PathBuf {
        self.dir.join(format!("{plan}.history.jsonl"))
    }

    fn leader_path(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.leader"))
    }

    fn read(&self, plan: &str) -> Result<State, StateError> {
        let path = self.state_path(plan);
        match std::fs::read(&path) {
            Ok(bytes) => {
                let state = parse_state(&path, &bytes)?;
                // The state names the file it is written to: one naming
                // another plan would be written there, not here.
                if state.plan != plan {
                    return Err(StateError::OtherPlan { path, plan: plan.to_string(), found: state.plan });
                }
                Ok(state)
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(State::new(plan)),
            Err(source) => Err(StateError::Read { path, source }),
        }
    }
}

#[async_trait::async_trait]
impl StateBackend for LocalBackend {
    fn location(&self) -> String {
        self.dir.display().to_string()
    }

    async fn load(&self, plan: &str) -> Result<State, StateError> {
        self.read(plan)
    }

    async fn save(&self, state: &mut State) -> Result<(), StateError> {
        let stored = self.read(&state.plan)?.serial;
        if stored != state.serial {
            return Err(StateError::Conflict {
                plan: state.plan.clone(),
                location: self.location(),
                expected: state.serial,
                found: stored,
            });
        }
        let path = self.state_path(&state.plan);
        let written = next_stored(state, || file_at(&path))?;
        let mut bytes = serde_json::to_vec_pretty(&written)
            .map_err(|e| StateError::Write { path: path.clone(), source: io::Error::other(e) })?;
        bytes.push(b'\n');
        files::write_atomic(&path, &bytes).map_err(|source| StateError::Write { path, source })?;
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
            .filter(|n| !n.starts_with('.'))
            .collect();
        plans.sort();
        Ok(plans)
    }

    async fn lock(&self, plan: &str, holder: Holder) -> Result<Box<dyn Lease>, StateError> {
        Ok(Box::new(StateLock::acquire(plan, &self.lock_path(plan), holder)?))
    }

    async fn take_over(&self, plan: &str, holder: Holder) -> Result<(Box<dyn Lease>, Option<Holder>), StateError> {
        let (lock, previous) = StateLock::take_over(plan, &self.lock_path(plan), holder)?;
        Ok((Box::new(lock), previous))
    }

    async fn lead(&self, name: &str, holder: Holder) -> Result<Box<dyn Lease>, StateError> {
        Ok(Box::new(StateLock::acquire(name, &self.leader_path(name), holder)?))
    }

    async fn append_journal(&self, plan: &str, entry: &Entry) -> Result<(), StateError> {
        let path = self.journal_path(plan);
        Journal::open(&path)
            .and_then(|mut journal| journal.append(entry))
            .map_err(|source| StateError::Journal { path, source })
    }

    async fn append_history(&self, plan: &str, entry: &HistoryEntry) -> Result<(), StateError> {
        let path = self.history_path(plan);
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
        let path = self.history_path(plan);
        let bytes = match std::fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(source) => return Err(StateError::Read { path, source }),
        };
        Ok(bytes.split(|b| *b == b'\n').filter_map(|line| serde_json::from_slice(line).ok()).collect())
    }

    async fn journal(&self, plan: &str) -> Result<Vec<Entry>, StateError> {
        let path = self.journal_path(plan);
        Journal::entries(&path).map_err(|source| StateError::Journal { path, source })
    }

    async fn import(&self, copy: &PlanCopy, replace: bool) -> Result<(), StateError> {
        let plan = &copy.state.plan;
        let path = self.state_path(plan);
        if !replace && path.exists() {
            return Err(StateError::PlanExists { plan: plan.clone(), location: self.location() });
        }
        let write = |path: PathBuf, bytes: Vec<u8>| {
            files::write_atomic(&path, &bytes).map_err(|source| StateError::Write { path, source })
        };
        write(self.journal_path(plan), json_lines(&copy.journal))?;
        write(self.history_path(plan), json_lines(&copy.history))?;
        let mut state = serde_json::to_vec_pretty(&copy.state)
            .map_err(|e| StateError::Write { path: path.clone(), source: io::Error::other(e) })?;
        state.push(b'\n');
        write(path, state)
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

fn parse_state(path: &Path, bytes: &[u8]) -> Result<State, StateError> {
    parse_stored(&file_at(path), bytes)
}

fn file_at(path: &Path) -> String {
    format!("state file {}", path.display())
}

/// A stored state document, in any format this gpufleet reads; `at` names
/// where it was stored, for errors.
pub(super) fn parse_stored(at: &str, bytes: &[u8]) -> Result<State, StateError> {
    #[derive(serde::Deserialize)]
    struct Version {
        format_version: u32,
    }
    let corrupt = |source| StateError::Corrupt { at: at.to_string(), source };
    let version: Version = crate::json::from_slice(bytes).map_err(corrupt)?;
    if version.format_version > STATE_FORMAT_VERSION {
        return Err(StateError::TooNew { at: at.to_string(), found: version.format_version });
    }
    crate::json::from_slice(bytes).map_err(corrupt)
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
        let mode = std::fs::metadata(backend.state_path("demo")).unwrap().permissions().mode();
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
            serde_json::from_slice(&std::fs::read(backend.leader_path("demo-rebalance")).unwrap()).unwrap();
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
        std::fs::write(backend.state_path("demo"), serde_json::to_vec(&state).unwrap()).unwrap();
        let err = backend.save(&mut state).await.unwrap_err();
        assert!(matches!(err, StateError::SerialExhausted { .. }), "{err}");
    }

    #[test]
    fn newer_format_is_refused_not_misread() {
        let dir = tempfile::tempdir().unwrap();
        let backend = LocalBackend::new(dir.path());
        std::fs::write(backend.state_path("demo"), br#"{"format_version": 99}"#).unwrap();
        assert!(matches!(backend.read("demo"), Err(StateError::TooNew { found: 99, .. })));
        std::fs::write(backend.state_path("demo"), b"{not json").unwrap();
        assert!(matches!(backend.read("demo"), Err(StateError::Corrupt { .. })));
    }

    #[tokio::test]
    async fn damaged_state_names_the_field_with_line_and_column() {
        let dir = tempfile::tempdir().unwrap();
        let backend = LocalBackend::new(dir.path());
        let mut state = State::new("demo");
        backend.save(&mut state).await.unwrap();
        let text = std::fs::read_to_string(backend.state_path("demo")).unwrap();
        std::fs::write(backend.state_path("demo"), text.replace("\"serial\": 1", "\"serial\": \"one\"")).unwrap();
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
        std::fs::rename(backend.state_path("other"), backend.state_path("demo")).unwrap();
        assert!(matches!(backend.read("demo"), Err(StateError::OtherPlan { .. })));
    }
}
