//! The history of a plan: one entry per apply, destroy and rebalance round,
//! for people to look back at where the fleet lived and why.

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
}

impl MoveRecord {
    /// Adds `started` and `finished` nodes to the record of (`fleet`,
    /// `from`, `to`) in `records`, making one if there is none yet.
    pub fn tally(records: &mut Vec<MoveRecord>, fleet: &str, from: &str, to: &str, started: u32, finished: u32) {
        let index = match records.iter().position(|r| r.fleet == fleet && r.from == from && r.to == to) {
            Some(index) => index,
            None => {
                records.push(MoveRecord {
                    fleet: fleet.to_string(),
                    from: from.to_string(),
                    to: to.to_string(),
                    started: 0,
                    finished: 0,
                });
                records.len() - 1
            }
        };
        let record = &mut records[index];
        record.started = record.started.saturating_add(started);
        record.finished = record.finished.saturating_add(finished);
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
        let mut records = Vec::new();
        MoveRecord::tally(&mut records, "t", "a", "b", 2, 0);
        MoveRecord::tally(&mut records, "t", "c", "b", 1, 0);
        MoveRecord::tally(&mut records, "t", "a", "b", 0, 2);
        assert_eq!(records.len(), 2);
        assert_eq!((records[0].started, records[0].finished), (2, 2));
        assert_eq!((records[1].from.as_str(), records[1].started), ("c", 1));
    }
}
