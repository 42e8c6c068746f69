//! The local backend: `DIR/<plan>.json` (state), `DIR/<plan>.lock`,
//! `DIR/<plan>.journal.jsonl`.

use super::files;
use super::journal::Journal;
use super::lock::{Holder, LockError, StateLock};
use super::model::{STATE_FORMAT_VERSION, State};
use std::io;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("cannot read state file {path}: {source}")]
    Read { path: PathBuf, source: io::Error },
    #[error("state file {path} is not valid gpufleet state: {source}")]
    Corrupt { path: PathBuf, source: crate::json::JsonError },
    #[error("state file {path} is the state of plan `{found}`, not of plan `{plan}`")]
    OtherPlan { path: PathBuf, plan: String, found: String },
    #[error("state file {path} has serial {serial}, the largest there is; it cannot be written again")]
    SerialOverflow { path: PathBuf, serial: u64 },
    #[error("state file {path} has format version {found}; this gpufleet reads up to {STATE_FORMAT_VERSION}")]
    TooNew { path: PathBuf, found: u32 },
    #[error("cannot write state file {path}: {source}")]
    Write { path: PathBuf, source: io::Error },
    #[error("cannot use journal {path}: {source}")]
    Journal { path: PathBuf, source: io::Error },
    #[error(transparent)]
    Lock(#[from] LockError),
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

    /// The plan's state, or a fresh one if it has none yet.
    pub fn read(&self, plan: &str) -> Result<State, StateError> {
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

    /// Every plan with a state file here, sorted by name.
    pub fn list_plans(&self) -> Result<Vec<String>, StateError> {
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

    /// Write the state atomically, bumping its serial.
    pub fn write(&self, state: &mut State) -> Result<(), StateError> {
        let path = self.state_path(&state.plan);
        state.serial = state
            .serial
            .checked_add(1)
            .ok_or_else(|| StateError::SerialOverflow { path: path.clone(), serial: state.serial })?;
        let mut bytes = serde_json::to_vec_pretty(state)
            .map_err(|e| StateError::Write { path: path.clone(), source: io::Error::other(e) })?;
        bytes.push(b'\n');
        files::write_atomic(&path, &bytes).map_err(|source| StateError::Write { path, source })
    }

    pub fn lock(&self, plan: &str, holder: Holder) -> Result<StateLock, StateError> {
        Ok(StateLock::acquire(plan, &self.lock_path(plan), holder)?)
    }

    pub fn journal(&self, plan: &str) -> Result<Journal, StateError> {
        let path = self.journal_path(plan);
        Journal::open(&path).map_err(|source| StateError::Journal { path, source })
    }
}

fn parse_state(path: &Path, bytes: &[u8]) -> Result<State, StateError> {
    #[derive(serde::Deserialize)]
    struct Version {
        format_version: u32,
    }
    let version: Version = from_json(path, bytes)?;
    if version.format_version > STATE_FORMAT_VERSION {
        return Err(StateError::TooNew { path: path.to_path_buf(), found: version.format_version });
    }
    from_json(path, bytes)
}

fn from_json<T: serde::de::DeserializeOwned>(path: &Path, bytes: &[u8]) -> Result<T, StateError> {
    crate::json::from_slice(bytes).map_err(|source| StateError::Corrupt { path: path.to_path_buf(), source })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn write_then_read_round_trips_with_private_mode_and_bumped_serial() {
        let dir = tempfile::tempdir().unwrap();
        let backend = LocalBackend::new(dir.path().join("nested"));
        let mut state = backend.read("demo").unwrap();
        assert_eq!(state.serial, 0);
        backend.write(&mut state).unwrap();
        backend.write(&mut state).unwrap();
        let back = backend.read("demo").unwrap();
        assert_eq!(back, state);
        assert_eq!(back.serial, 2);
        let mode = std::fs::metadata(backend.state_path("demo")).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(backend.list_plans().unwrap(), vec!["demo".to_string()]);
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

    #[test]
    fn serial_at_u64_max_is_refused_not_overflowed() {
        let dir = tempfile::tempdir().unwrap();
        let backend = LocalBackend::new(dir.path());
        let mut state = State::new("demo");
        state.serial = u64::MAX;
        let err = backend.write(&mut state).unwrap_err();
        assert!(matches!(err, StateError::SerialOverflow { .. }), "{err}");
        assert_eq!(state.serial, u64::MAX);
        assert!(!backend.state_path("demo").exists());
    }

    #[test]
    fn damaged_state_names_the_field_with_line_and_column() {
        let dir = tempfile::tempdir().unwrap();
        let backend = LocalBackend::new(dir.path());
        let mut state = State::new("demo");
        backend.write(&mut state).unwrap();
        let text = std::fs::read_to_string(backend.state_path("demo")).unwrap();
        std::fs::write(backend.state_path("demo"), text.replace("\"serial\": 1", "\"serial\": \"one\"")).unwrap();
        let message = backend.read("demo").unwrap_err().to_string();
        assert!(message.contains("demo.json") && message.contains("serial: invalid type"), "{message}");
        assert!(message.contains("line 3 column"), "{message}");
    }

    #[test]
    fn state_naming_another_plan_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let backend = LocalBackend::new(dir.path());
        let mut state = State::new("other");
        backend.write(&mut state).unwrap();
        std::fs::rename(backend.state_path("other"), backend.state_path("demo")).unwrap();
        assert!(matches!(backend.read("demo"), Err(StateError::OtherPlan { .. })));
    }
}
