//! Saved plans (`plan --out FILE`): the changeset plus what it was computed
//! from, so that `apply FILE` executes exactly it, or refuses when the plan
//! file, the state or the clouds moved since.

use super::{ApplyError, Refreshed};
use crate::catalog::Catalog;
use crate::model::Placement;
use crate::plan::offerings::allowed_offerings;
use crate::planner::{ActionKind, Changeset, Reason};
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
    /// Where it was read from, for messages; not part of the file.
    #[serde(skip)]
    pub file: PathBuf,
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
    Corrupt { path: PathBuf, source: crate::json::JsonError },
    #[error("{path} is JSON but not a gpufleet saved plan (kind {kind:?}, expected {SAVED_PLAN_KIND:?})")]
    NotSaved { path: PathBuf, kind: String },
    #[error("{path} does not fit the plan {plan_path}: {}", problems.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
    #[diagnostic(help("the saved plan was edited, or made for another plan: run `gpufleet plan --out FILE` again"))]
    Mismatch { path: PathBuf, plan_path: PathBuf, problems: Vec<Problem> },
}

/// One thing wrong in a saved plan, at a place in its JSON.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// E.g. `changeset.actions[2].fleet`.
    pub at: String,
    pub message: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.at, self.message)
    }
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
    /// A JSON object is meant as one: TOML cannot start with `{`, so damage
    /// to a saved plan is reported as such, not as a plan file that fails to parse.
    pub fn detect(path: &Path, bytes: &[u8]) -> Result<Option<SavedPlan>, SavedPlanError> {
        #[derive(Deserialize)]
        struct Header {
            kind: String,
            format_version: u32,
        }
        if bytes.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
            return Ok(None);
        }
        let corrupt = |source| SavedPlanError::Corrupt { path: path.to_path_buf(), source };
        let header: Header = crate::json::from_slice(bytes).map_err(corrupt)?;
        if header.kind != SAVED_PLAN_KIND {
            return Err(SavedPlanError::NotSaved { path: path.to_path_buf(), kind: header.kind });
        }
        if header.format_version != SAVED_PLAN_FORMAT_VERSION {
            return Err(SavedPlanError::Version { path: path.to_path_buf(), found: header.format_version });
        }
        let saved: SavedPlan = crate::json::from_slice(bytes).map_err(corrupt)?;
        Ok(Some(SavedPlan { file: path.to_path_buf(), ..saved }))
    }

    /// Refuses a saved changeset that `plan` cannot execute, each problem at
    /// its place in the file: an action for a fleet the plan does not have
    /// (except deleting what a fleet removed from the plan left), a create of
    /// no node or with `min_count` outside 1..=`count`, a delete of an
    /// instance that was not observed when the plan was saved, a create (or
    /// fallback) on an offering the fleet may not use.
    pub fn check_against(&self, plan: &crate::plan::Plan, catalog: &Catalog) -> Result<(), SavedPlanError> {
        let observed: BTreeSet<&str> = self.observed.iter().map(String::as_str).collect();
        let mut problems = Vec::new();
        let mut problem = |at: String, message: String| problems.push(Problem { at, message });
        for (i, action) in self.changeset.actions.iter().enumerate() {
            let at = |field: &str| format!("changeset.actions[{i}].{field}");
            let removed_fleet = action.kind == ActionKind::Delete && action.reason == Reason::DeleteBecauseNotInPlan;
            if !plan.fleets.contains_key(&action.fleet) && !removed_fleet {
                problem(at("fleet"), format!("fleet `{}` is not in the plan", action.fleet));
            }
            match action.kind {
                ActionKind::Create if action.count == 0 => {
                    problem(at("count"), "a create of 0 nodes".to_string());
                }
                ActionKind::Create if action.min_count == 0 || action.min_count > action.count => {
                    problem(
                        at("min_count"),
                        format!("min_count {} is not between 1 and count {}", action.min_count, action.count),
                    );
                }
                ActionKind::Create => {}
                ActionKind::Delete => {}
            }
            if let (ActionKind::Create, Some(fleet)) = (action.kind, plan.fleets.get(&action.fleet)) {
                let allowed: Vec<Placement> =
                    allowed_offerings(fleet, &plan.providers, catalog).iter().map(|o| o.placement()).collect();
                let places = std::iter::once(("placement".to_string(), &action.placement))
                    .chain(action.fallbacks.iter().enumerate().map(|(j, p)| (format!("fallbacks[{j}]"), p)));
                for (field, placement) in places {
                    if !allowed.contains(placement) {
                        problem(at(&field), format!("{placement} is not an offering fleet `{}` may use", fleet.name));
                    }
                }
            }
            match action.kind {
                ActionKind::Create => {}
                ActionKind::Delete => {
                    for (j, id) in action.instance_ids.iter().enumerate() {
                        if !observed.contains(id.as_str()) {
                            problem(
                                format!("changeset.actions[{i}].instance_ids[{j}]"),
                                format!("instance {id} is not among the instances observed when the plan was saved"),
                            );
                        }
                    }
                }
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(SavedPlanError::Mismatch { path: self.file.clone(), plan_path: plan.path.clone(), problems })
        }
    }
}
