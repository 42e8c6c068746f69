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
use std::io::{self, BufRead, BufReader, Read, Seek, SeekFrom, Write};
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
    /// Open for appending. A torn last line (a run killed mid-write) is
    /// closed with a newline first: glued to it, the next entry would be
    /// unreadable too.
    pub fn open(path: &Path) -> io::Result<Journal> {
        let mut file = files::open_append(path)?;
        if ends_torn(path)? {
            file.write_all(b"\n")?;
            file.sync_data()?;
        }
        Ok(Journal { path: path.to_path_buf(), file })
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
    /// A torn line (a kill mid-write) is ignored: its call never started. So
    /// is any other line that is not an entry (damaged, not even UTF-8): the
    /// clouds, not the journal, say what exists, and a refresh adopts it.
    pub fn open_intents(path: &Path) -> io::Result<Vec<Entry>> {
        let file = match File::open(path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        let mut open: BTreeMap<String, Entry> = BTreeMap::new();
        for line in BufReader::new(file).split(b'\n') {
            let Ok(entry) = serde_json::from_slice::<Entry>(&line?) else { continue };
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

/// Whether the file is non-empty and does not end with a newline.
fn ends_torn(path: &Path) -> io::Result<bool> {
    let mut file = File::open(path)?;
    if file.seek(SeekFrom::End(0))? == 0 {
        return Ok(false);
    }
    file.seek(SeekFrom::End(-1))?;
    let mut last = [0u8; 1];
    file.read_exact(&mut last)?;
    Ok(last[0] != b'\n')
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

    /// The next run's first entry used to be glued to the torn line, and lost with it.
    #[test]
    fn entries_appended_after_a_torn_line_are_read() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("demo.journal.jsonl");
        std::fs::write(&path, b"{\"at\":\"2026-01-01T00:00:00Z\",\"run\":\"r1\",\"tok").unwrap();
        let mut journal = Journal::open(&path).unwrap();
        let create = Event::CreateIntent { fleet: "f".into(), placement: placement(), count: 1, min_count: 1 };
        journal.append(&entry("t3", create)).unwrap();
        let open = Journal::open_intents(&path).unwrap();
        assert_eq!(open.iter().map(|e| e.token.as_str()).collect::<Vec<_>>(), ["t3"]);
    }

    /// A line that is not UTF-8 used to fail every command reading the journal.
    #[test]
    fn lines_that_are_not_utf8_are_skipped_not_fatal() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("demo.journal.jsonl");
        std::fs::write(&path, b"\xff\xfe not an entry\n").unwrap();
        let mut journal = Journal::open(&path).unwrap();
        let create = Event::CreateIntent { fleet: "f".into(), placement: placement(), count: 1, min_count: 1 };
        journal.append(&entry("t4", create)).unwrap();
        assert_eq!(Journal::open_intents(&path).unwrap().len(), 1);
    }
}
