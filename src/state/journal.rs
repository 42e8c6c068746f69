//! The journal: an append-only log of intents, written (and fsynced) before
//! every mutating cloud call, with the call's idempotency token, and of their
//! outcomes after. A run killed between the two leaves an open intent; the
//! next run sees it, adopts what the clouds report, and closes it.

use super::files;
use crate::model::Placement;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    pub at: DateTime<Utc>,
    pub run: String,
    /// Idempotency token of the call; ties an outcome to its intent.
    pub token: String,
    #[serde(flatten)]
    pub event: Event,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// About to ask a cloud for `count` nodes.
    CreateIntent { fleet: String, placement: Placement, count: u32, min_count: u32 },
    /// About to terminate these instances.
    DeleteIntent { fleet: String, placement: Placement, instance_ids: Vec<String> },
    /// The call returned: what it created (or deleted).
    Done { instance_ids: Vec<String> },
    /// The call failed; nothing to adopt beyond what a refresh finds.
    Failed { code: String },
    /// A later run reconciled an intent left open by an interrupted run.
    Recovered { note: String },
}

#[derive(Debug)]
pub struct Journal {
    path: PathBuf,
    file: File,
}

impl Journal {
    pub fn open(path: &Path) -> io::Result<Journal> {
        Ok(Journal { path: path.to_path_buf(), file: files::open_append(path)? })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Append one entry and make it durable before returning.
    pub fn append(&mut self, entry: &Entry) -> io::Result<()> {
        let mut line = serde_json::to_vec(entry).map_err(io::Error::other)?;
        line.push(b'\n');
        self.file.write_all(&line)?;
        self.file.sync_data()
    }

    /// Intents with no outcome yet: left by a run that was interrupted.
    /// A torn last line (a kill mid-write) is ignored: its call never started.
    pub fn open_intents(path: &Path) -> io::Result<Vec<Entry>> {
        let file = match File::open(path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        let mut open: BTreeMap<String, Entry> = BTreeMap::new();
        for line in BufReader::new(file).lines() {
            let Ok(entry) = serde_json::from_str::<Entry>(&line?) else { continue };
            match entry.event {
                Event::CreateIntent { .. } | Event::DeleteIntent { .. } => {
                    open.insert(entry.token.clone(), entry);
                }
                Event::Done { .. } | Event::Failed { .. } | Event::Recovered { .. } => {
                    open.remove(&entry.token);
                }
            }
        }
        let mut entries: Vec<Entry> = open.into_values().collect();
        entries.sort_by_key(|e| e.at);
        Ok(entries)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Cloud;
    use chrono::TimeZone;

    fn entry(token: &str, event: Event) -> Entry {
        Entry { at: Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap(), run: "r1".into(), token: token.into(), event }
    }

    fn placement() -> Placement {
        Placement { cloud: Cloud::Aws, region: "us-east-1".into(), zone: None, instance_type: "p5.48xlarge".into() }
    }

    #[test]
    fn intents_without_outcome_stay_open_and_torn_lines_are_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("demo.journal.jsonl");
        let mut journal = Journal::open(&path).unwrap();
        let create = |count| Event::CreateIntent { fleet: "f".into(), placement: placement(), count, min_count: 1 };
        journal.append(&entry("t1", create(2))).unwrap();
        journal.append(&entry("t1", Event::Done { instance_ids: vec!["i-1".into()] })).unwrap();
        journal.append(&entry("t2", create(3))).unwrap();
        drop(journal);
        let mut raw = files::open_append(&path).unwrap();
        raw.write_all(b"{\"at\":\"2026-01-01T00:00:00Z\",\"run\":\"r1\",\"tok").unwrap();
        let open = Journal::open_intents(&path).unwrap();
        assert_eq!(open.len(), 1);
        assert_eq!(open[0].token, "t2");
    }
}
