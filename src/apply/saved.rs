//! Saved plans (`plan --out FILE`): the changeset plus what it was computed
//! from, so that `apply FILE` executes exactly it, or refuses when the plan
//! file, the state or the clouds moved since.

use super::{ApplyError, Refreshed};
use crate::planner::Changeset;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

pub const SAVED_PLAN_KIND: &str = "gpufleet-saved-plan";
/// Format 2: creates carry their fallback chains.
pub const SAVED_PLAN_FORMAT_VERSION: u32 = 2;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SavedPlan {
    pub kind: String,
    pub format_version: u32,
    /// The plan file, as given to `plan`.
    pub plan_path: PathBuf,
    /// SHA-256 of the plan file's bytes when planned.
    pub plan_digest: String,
    pub state_lineage: String,
    pub state_serial: u64,
    /// Ids of the instances the clouds reported when planned, sorted.
    pub observed: Vec<String>,
    pub changeset: Changeset,
}

#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum SavedPlanError {
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("cannot write {path}: {source}")]
    Write { path: PathBuf, source: std::io::Error },
    #[error("{path} is a saved plan of format version {found}; this gpufleet reads {SAVED_PLAN_FORMAT_VERSION}")]
    #[diagnostic(help("run `gpufleet plan --out FILE` again with this gpufleet"))]
    Version { path: PathBuf, found: u32 },
    #[error("{path} looks like a saved plan but cannot be read: {source}")]
    #[diagnostic(help("the file was damaged or edited: run `gpufleet plan --out FILE` again"))]
    Corrupt { path: PathBuf, source: serde_json::Error },
}

pub fn digest(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

impl SavedPlan {
    pub fn write(&self, path: &Path) -> Result<(), SavedPlanError> {
        let mut bytes = serde_json::to_vec_pretty(self).expect("saved plans serialize");
        bytes.push(b'\n');
        std::fs::write(path, bytes).map_err(|source| SavedPlanError::Write { path: path.to_path_buf(), source })
    }

    /// Refuses a saved plan made for another state, or before the state or
    /// the clouds changed.
    pub fn check_not_stale(&self, refreshed: &Refreshed) -> Result<(), ApplyError> {
        // A state never written has no lineage yet: its serial (0) says it all.
        if self.state_serial > 0 && self.state_lineage != refreshed.state.lineage {
            return Err(ApplyError::Stale("it was made for a different state (lineage differs)".into()));
        }
        if self.state_serial != refreshed.serial_read {
            return Err(ApplyError::Stale(format!(
                "the state changed since (serial {} then, {} now)",
                self.state_serial, refreshed.serial_read
            )));
        }
        let now_ids = refreshed.observed_ids();
        if self.observed != now_ids {
            let then: BTreeSet<&String> = self.observed.iter().collect();
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

    /// `Ok(None)` when `bytes` are not a saved plan (a TOML plan file, then).
    pub fn detect(path: &Path, bytes: &[u8]) -> Result<Option<SavedPlan>, SavedPlanError> {
        #[derive(Deserialize)]
        struct Header {
            kind: String,
            format_version: u32,
        }
        let Ok(header) = serde_json::from_slice::<Header>(bytes) else { return Ok(None) };
        if header.kind != SAVED_PLAN_KIND {
            return Ok(None);
        }
        if header.format_version != SAVED_PLAN_FORMAT_VERSION {
            return Err(SavedPlanError::Version { path: path.to_path_buf(), found: header.format_version });
        }
        serde_json::from_slice(bytes)
            .map(Some)
            .map_err(|source| SavedPlanError::Corrupt { path: path.to_path_buf(), source })
    }
}
