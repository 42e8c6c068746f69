//! The history of a plan: one entry per apply, destroy and rebalance round,
//! for people to look back at where the fleet lived and why.

use super::lock::Holder;
use super::model::State;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// One run, as it ended.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HistoryEntry {
    pub at: DateTime<Utc>,
    pub run: String,
    /// `apply`, `destroy` or `rebalance`.
    pub command: String,
    /// Who ran it: host and process.
    pub host: String,
    pub pid: u32,
    /// The state's serial after the run.
    pub serial: u64,
    pub created: u32,
    pub deleted: u32,
    pub moves_started: u32,
    pub moves_finished: u32,
    /// Nodes per fleet and placement afterwards: fleet → placement → count.
    pub nodes: BTreeMap<String, BTreeMap<String, u32>>,
    /// Shortages in force afterwards, as "placement or scope: code".
    pub shortages: Vec<String>,
    /// List price per hour of the nodes with a known price.
    pub cost_per_hour: f64,
    /// `ok`, `partial`, `error` or `interrupted`.
    pub outcome: String,
    /// The run's moves, from where to where (empty in entries written
    /// before moves were recorded this way).
    #[serde(default)]
    pub moves: Vec<MoveRecord>,
    /// What a person did and why, for entries that are not runs (a lock
    /// taken over with `state unlock --force`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

impl HistoryEntry {
    /// A forced takeover of the plan's lock at `at` by `taker`, recorded with
    /// `note` (whom it was taken from, and why). It changes no node: it
    /// carries the fleet as the last run left it, so charts stay level.
    pub fn takeover(last: Option<&HistoryEntry>, state: &State, taker: &Holder, note: String) -> HistoryEntry {
        HistoryEntry {
            at: taker.since,
            run: uuid::Uuid::new_v4().to_string(),
            command: taker.command.clone(),
            host: taker.host.clone(),
            pid: taker.pid,
            serial: state.serial,
            created: 0,
            deleted: 0,
            moves_started: 0,
            moves_finished: 0,
            nodes: last.map(|l| l.nodes.clone()).unwrap_or_default(),
            shortages: last.map(|l| l.shortages.clone()).unwrap_or_default(),
            cost_per_hour: last.map_or(0.0, |l| l.cost_per_hour),
            outcome: "lock taken over".into(),
            moves: Vec::new(),
            note: Some(note),
        }
    }
}

/// Nodes of one fleet moved by a run from one placement to another.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MoveRecord {
    pub fleet: String,
    /// Placements as in [`HistoryEntry::nodes`].
    pub from: String,
    pub to: String,
    /// Replacement nodes asked for at `to`.
    pub started: u32,
    /// Old nodes deleted at `from` once their replacements ran.
    pub finished: u32,
    /// Replacement nodes refused or failed: their old nodes stay.
    #[serde(default)]
    pub failed: u32,
}

impl MoveRecord {
    /// Adds to the record of `moved.fleet`, `.from` and `.to` in `records`,
    /// or keeps `moved` as a new record.
    pub fn tally(records: &mut Vec<MoveRecord>, moved: MoveRecord) {
        match records.iter_mut().find(|r| r.fleet == moved.fleet && r.from == moved.from && r.to == moved.to) {
            Some(record) => {
                record.started = record.started.saturating_add(moved.started);
                record.finished = record.finished.saturating_add(moved.finished);
                record.failed = record.failed.saturating_add(moved.failed);
            }
            None => records.push(moved),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_entry_written_before_moves_were_recorded_still_reads() {
        let old = r#"{"at":"2026-01-01T00:00:00Z","run":"r","command":"apply","host":"h","pid":1,"serial":1,
            "created":4,"deleted":0,"moves_started":0,"moves_finished":0,
            "nodes":{"trainers":{"aws us-west-2a p5.48xlarge":4}},"shortages":[],"cost_per_hour":1.0,"outcome":"ok"}"#;
        let entry: HistoryEntry = serde_json::from_str(old).unwrap();
        assert!(entry.moves.is_empty());
        assert_eq!(entry.nodes["trainers"]["aws us-west-2a p5.48xlarge"], 4);
    }

    #[test]
    fn moves_between_the_same_placements_add_up() {
        let record = |from: &str, started, finished, failed| MoveRecord {
            fleet: "t".into(),
            from: from.into(),
            to: "b".into(),
            started,
            finished,
            failed,
        };
        let mut records = Vec::new();
        MoveRecord::tally(&mut records, record("a", 3, 0, 1));
        MoveRecord::tally(&mut records, record("c", 1, 0, 0));
        MoveRecord::tally(&mut records, record("a", 0, 2, 0));
        assert_eq!(records, [record("a", 3, 2, 1), record("c", 1, 0, 0)]);
    }
}
