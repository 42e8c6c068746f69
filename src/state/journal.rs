//! The journal: an append-only log of intents, written (and fsynced) before
//! every mutating cloud call, with the call's idempotency token, and of their
//! outcomes after. A run killed between the two leaves an open intent; the
//! next run sees it, adopts what the clouds report, and closes it.
//!
//! A rebalance move is two calls, and each of its intents names both
//! halves: its create names the instances the new nodes replace, its delete
//! the instances that replaced them. So a run killed between the two leaves
//! a move the next run can finish ([`unfinished_moves_of`]).

use crate::files;
use crate::model::Placement;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
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
    CreateIntent {
        fleet: String,
        placement: Placement,
        count: u32,
        min_count: u32,
        /// For a move: the instances these nodes replace, deleted once they run.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        replaces: Vec<String>,
    },
    /// About to terminate these instances.
    DeleteIntent {
        fleet: String,
        placement: Placement,
        instance_ids: Vec<String>,
        /// For a move: the instances that replaced these.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        replaced_by: Vec<String>,
    },
    /// The call returned: what it created (or deleted).
    Done { instance_ids: Vec<String> },
    /// The call failed; nothing to adopt beyond what a refresh finds.
    Failed { code: String },
    /// A later run reconciled an intent left open by an interrupted run.
    Recovered { note: String },
}

impl Event {
    /// An announcement of a mutating call, rather than an outcome.
    pub fn is_intent(&self) -> bool {
        matches!(self, Event::CreateIntent { .. } | Event::DeleteIntent { .. })
    }
}

/// A move whose create was asked for, did not fail, and whose old
/// instances were not all deleted yet, as far as the journal knows.
#[derive(Debug, Clone, PartialEq)]
pub struct UnfinishedMove {
    /// The run that started it: the `gpufleet-run` tag of its new nodes.
    pub run: String,
    pub fleet: String,
    /// Where its new nodes go.
    pub to: Placement,
    /// Its old instances not yet deleted.
    pub replaces: Vec<String>,
    /// Its new instances; `None` when the run ended before the create answered.
    pub created: Option<Vec<String>>,
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
        let mut file = files::open(path, File::options().read(true).append(true).create(true))?;
        if ends_torn(&mut file)? {
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

    /// Every readable entry, in order. A torn line (a kill mid-write) is
    /// skipped: its call never started. So is any other line that is not an
    /// entry (damaged, not even UTF-8): the clouds, not the journal, say
    /// what exists, and a refresh adopts it by its ownership tags. Such lines
    /// are logged, naming the file, as nothing needs doing about them.
    pub fn entries(path: &Path) -> io::Result<Vec<Entry>> {
        let Some(bytes) = files::read(path)? else { return Ok(Vec::new()) };
        let lines: Vec<&[u8]> = bytes.split(|b| *b == b'\n').filter(|line| !line.is_empty()).collect();
        let entries: Vec<Entry> = lines.iter().filter_map(|line| serde_json::from_slice(line).ok()).collect();
        if entries.len() < lines.len() {
            tracing::warn!(
                path = %path.display(),
                skipped = lines.len() - entries.len(),
                "journal lines that are not entries were skipped; the next refresh adopts from the clouds \
                 whatever their calls made, so nothing needs doing"
            );
        }
        Ok(entries)
    }
}

/// The intents among `entries` (in the order written) with no outcome yet.
pub fn open_intents_of(entries: impl IntoIterator<Item = Entry>) -> Vec<Entry> {
    let mut open: BTreeMap<String, Entry> = BTreeMap::new();
    for entry in entries {
        if entry.event.is_intent() {
            open.insert(entry.token.clone(), entry);
        } else {
            open.remove(&entry.token);
        }
    }
    let mut entries: Vec<Entry> = open.into_values().collect();
    entries.sort_by_key(|e| e.at);
    entries
}

/// Moves among `entries` (in the order written) not known to be finished,
/// oldest first: a failed create ends a move (nothing was made), and so does
/// the deletion of all its old instances. Whatever else happened to them (a
/// refresh that found them gone, say) is for the caller to check against
/// the clouds.
pub fn unfinished_moves_of(entries: impl IntoIterator<Item = Entry>) -> Vec<UnfinishedMove> {
    let mut moves: Vec<(String, UnfinishedMove)> = Vec::new();
    let mut deleting: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for entry in entries {
        match entry.event {
            Event::CreateIntent { fleet, placement, replaces, .. } if !replaces.is_empty() => {
                let record = UnfinishedMove { run: entry.run, fleet, to: placement, replaces, created: None };
                moves.push((entry.token, record));
            }
            Event::DeleteIntent { instance_ids, .. } => {
                deleting.insert(entry.token, instance_ids);
            }
            Event::Done { instance_ids } => {
                if let Some(deleted) = deleting.remove(&entry.token) {
                    for (_, record) in &mut moves {
                        record.replaces.retain(|id| !deleted.contains(id));
                    }
                    moves.retain(|(_, record)| !record.replaces.is_empty());
                } else if let Some((_, record)) = moves.iter_mut().find(|(token, _)| *token == entry.token) {
                    record.created = Some(instance_ids);
                }
            }
            Event::Failed { .. } => moves.retain(|(token, _)| *token != entry.token),
            Event::CreateIntent { .. } | Event::Recovered { .. } => {}
        }
    }
    moves.into_iter().map(|(_, record)| record).collect()
}

/// Whether the file is non-empty and does not end with a newline.
fn ends_torn(file: &mut File) -> io::Result<bool> {
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

    fn create(count: u32) -> Event {
        Event::CreateIntent { fleet: "f".into(), placement: placement(), count, min_count: 1, replaces: Vec::new() }
    }

    #[test]
    fn intents_without_outcome_stay_open_and_torn_lines_are_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("demo.journal.jsonl");
        let mut journal = Journal::open(&path).unwrap();
        journal.append(&entry("t1", create(2))).unwrap();
        journal.append(&entry("t1", Event::Done { instance_ids: vec!["i-1".into()] })).unwrap();
        journal.append(&entry("t2", create(3))).unwrap();
        drop(journal);
        let mut raw = files::open_append(&path).unwrap();
        raw.write_all(b"{\"at\":\"2026-01-01T00:00:00Z\",\"run\":\"r1\",\"tok").unwrap();
        let open = open_intents_of(Journal::entries(&path).unwrap());
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
        journal.append(&entry("t3", create(1))).unwrap();
        let open = open_intents_of(Journal::entries(&path).unwrap());
        assert_eq!(open.iter().map(|e| e.token.as_str()).collect::<Vec<_>>(), ["t3"]);
    }

    /// A line that is not UTF-8 used to fail every command reading the journal.
    #[test]
    fn lines_that_are_not_utf8_are_skipped_not_fatal() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("demo.journal.jsonl");
        std::fs::write(&path, b"\xff\xfe not an entry\n").unwrap();
        let mut journal = Journal::open(&path).unwrap();
        journal.append(&entry("t4", create(1))).unwrap();
        assert_eq!(open_intents_of(Journal::entries(&path).unwrap()).len(), 1);
    }

    fn move_create(replaces: &[&str]) -> Event {
        Event::CreateIntent {
            fleet: "f".into(),
            placement: placement(),
            count: replaces.len() as u32,
            min_count: replaces.len() as u32,
            replaces: replaces.iter().map(|id| id.to_string()).collect(),
        }
    }

    fn move_delete(ids: &[&str], replaced_by: &[&str]) -> Event {
        let owned = |ids: &[&str]| ids.iter().map(|id| id.to_string()).collect();
        Event::DeleteIntent {
            fleet: "f".into(),
            placement: placement(),
            instance_ids: owned(ids),
            replaced_by: owned(replaced_by),
        }
    }

    fn done(ids: &[&str]) -> Event {
        Event::Done { instance_ids: ids.iter().map(|id| id.to_string()).collect() }
    }

    /// A move stays unfinished from its create's intent until all its old
    /// instances are deleted; a failed create ends it with nothing made.
    #[test]
    fn unfinished_moves_are_those_whose_old_half_was_not_deleted() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("demo.journal.jsonl");
        let mut journal = Journal::open(&path).unwrap();
        // Created, then killed before its delete.
        journal.append(&entry("c1", move_create(&["i-old1", "i-old2"]))).unwrap();
        journal.append(&entry("c1", done(&["i-new1", "i-new2"]))).unwrap();
        // Killed before its create answered.
        journal.append(&entry("c2", move_create(&["i-old3"]))).unwrap();
        // Refused: nothing to finish.
        journal.append(&entry("c3", move_create(&["i-old4"]))).unwrap();
        journal.append(&entry("c3", Event::Failed { code: "InsufficientInstanceCapacity".into() })).unwrap();
        // Finished.
        journal.append(&entry("c4", move_create(&["i-old5"]))).unwrap();
        journal.append(&entry("c4", done(&["i-new5"]))).unwrap();
        journal.append(&entry("d4", move_delete(&["i-old5"], &["i-new5"]))).unwrap();
        journal.append(&entry("d4", done(&["i-old5"]))).unwrap();
        // Half deleted, then killed.
        journal.append(&entry("d1", move_delete(&["i-old1"], &["i-new1", "i-new2"]))).unwrap();
        journal.append(&entry("d1", done(&["i-old1"]))).unwrap();
        journal.append(&entry("d2", move_delete(&["i-old2"], &["i-new1", "i-new2"]))).unwrap();

        let unfinished = |replaces: &[&str], created: Option<&[&str]>| UnfinishedMove {
            run: "r1".into(),
            fleet: "f".into(),
            to: placement(),
            replaces: replaces.iter().map(|id| id.to_string()).collect(),
            created: created.map(|ids| ids.iter().map(|id| id.to_string()).collect()),
        };
        assert_eq!(
            unfinished_moves_of(Journal::entries(&path).unwrap()),
            [unfinished(&["i-old2"], Some(&["i-new1", "i-new2"])), unfinished(&["i-old3"], None)]
        );
    }

    /// Both halves are on the record, and intents written before moves named
    /// them still read.
    #[test]
    fn a_moves_intents_name_both_halves_and_older_intents_still_read() {
        let line = serde_json::to_value(entry("c1", move_create(&["i-old1"]))).unwrap();
        assert_eq!(line["replaces"], serde_json::json!(["i-old1"]));
        let line = serde_json::to_value(entry("d1", move_delete(&["i-old1"], &["i-new1"]))).unwrap();
        assert_eq!(line["replaced_by"], serde_json::json!(["i-new1"]));
        let plain = serde_json::to_value(entry("c2", move_create(&[]))).unwrap();
        assert!(plain.get("replaces").is_none(), "{plain}");
        let older = r#"{"at":"2026-01-01T00:00:00Z","run":"r1","token":"t","event":"create_intent","fleet":"f",
            "placement":{"cloud":"aws","region":"us-east-1","zone":null,"instance_type":"p5.48xlarge"},"count":1,"min_count":1}"#;
        let read: Entry = serde_json::from_str(older).unwrap();
        assert!(matches!(read.event, Event::CreateIntent { ref replaces, .. } if replaces.is_empty()), "{read:?}");
    }
}
