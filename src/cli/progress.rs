//! Apply progress: a bar per fleet on a terminal, plain lines on stderr
//! otherwise, or one JSON object per event on stdout with `--json`. People
//! get one line per event, ids past a few counted rather than listed, and a
//! table per fleet and placement at the end.

use super::render::{Detail, aligned};
use crate::apply::{Event, EventSink};
use crate::model::Placement;
use crate::model::printable;
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::collections::{BTreeMap, HashMap};
use std::io::IsTerminal;
use std::sync::Mutex;

/// `--json`: one event per line on stdout.
pub struct JsonLines;

impl EventSink for JsonLines {
    fn emit(&self, event: &Event) {
        if let Ok(line) = serde_json::to_string(event) {
            println!("{line}");
        }
    }
}

/// What one fleet did at one placement in this run.
#[derive(Debug, Default)]
struct Tally {
    created: usize,
    deleted: usize,
    /// Cloud codes of refusals and failures, in order.
    refused: Vec<String>,
}

/// Bars on a terminal; otherwise the same steps as plain lines on stderr.
pub struct Progress {
    multi: Option<MultiProgress>,
    detail: Detail,
    /// One bar per fleet and direction ("create", "delete"), as long as the
    /// nodes asked for so far less those refused.
    bars: Mutex<HashMap<(String, &'static str), ProgressBar>>,
    /// Nodes asked for per fleet, direction and placement whose answer is
    /// still out.
    pending: Mutex<HashMap<(String, &'static str, Placement), u64>>,
    tally: Mutex<BTreeMap<(String, String), Tally>>,
}

impl Progress {
    pub fn new(detail: Detail) -> Progress {
        let multi =
            std::io::stderr().is_terminal().then(|| MultiProgress::with_draw_target(ProgressDrawTarget::stderr()));
        Progress {
            multi,
            detail,
            bars: Mutex::new(HashMap::new()),
            pending: Mutex::new(HashMap::new()),
            tally: Mutex::new(BTreeMap::new()),
        }
    }

    /// Lines carry cloud error messages, instance ids and names from state:
    /// they are shown [`printable`].
    fn say(&self, line: String) {
        let line = printable(&line);
        match &self.multi {
            Some(multi) => {
                let _ = multi.println(line);
            }
            None => eprintln!("{line}"),
        }
    }

    /// `count` more nodes for the fleet's bar of `verb`, at `placement`.
    fn expect(&self, fleet: &str, verb: &'static str, placement: &Placement, count: u64) {
        let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        *pending.entry((fleet.to_string(), verb, placement.clone())).or_default() += count;
        let Some(multi) = &self.multi else { return };
        let mut bars = self.bars.lock().unwrap_or_else(|p| p.into_inner());
        let bar = bars.entry((fleet.to_string(), verb)).or_insert_with(|| {
            let bar = multi.add(ProgressBar::new(0));
            let style = ProgressStyle::with_template("{prefix:>8} {msg:<48} [{bar:30}] {pos}/{len}")
                .map(|s| s.progress_chars("=> "))
                .unwrap_or_else(|_| ProgressStyle::default_bar());
            bar.set_style(style);
            bar.set_prefix(verb);
            bar
        });
        bar.inc_length(count);
        bar.set_message(printable(&format!("{fleet}: {placement}")).into_owned());
    }

    /// The answer for the fleet's nodes at `placement`: `done` of them went
    /// through; the rest of what was asked there leaves the bar.
    fn settle(&self, fleet: &str, verb: &'static str, placement: &Placement, done: u64) {
        let asked = {
            let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
            pending.remove(&(fleet.to_string(), verb, placement.clone())).unwrap_or(done)
        };
        let bars = self.bars.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(bar) = bars.get(&(fleet.to_string(), verb)) {
            bar.set_length(bar.length().unwrap_or(0).saturating_sub(asked.saturating_sub(done)));
            bar.inc(done);
            if Some(bar.position()) == bar.length() {
                bar.finish();
            }
        }
    }

    fn pending_at(&self, fleet: &str, placement: &Placement, verb: &'static str) -> bool {
        let pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        pending.contains_key(&(fleet.to_string(), verb, placement.clone()))
    }

    fn count(&self, fleet: &str, placement: &Placement, change: impl FnOnce(&mut Tally)) {
        let mut tally = self.tally.lock().unwrap_or_else(|p| p.into_inner());
        change(tally.entry((fleet.to_string(), placement.to_string())).or_default());
    }

    /// What each fleet did at each placement, as a table; `None` when the
    /// run touched nothing.
    pub fn summary(&self) -> Option<String> {
        let tally = self.tally.lock().unwrap_or_else(|p| p.into_inner());
        if tally.is_empty() {
            return None;
        }
        let rows: Vec<[String; 5]> = tally
            .iter()
            .map(|((fleet, placement), t)| {
                [fleet.clone(), placement.clone(), t.created.to_string(), t.deleted.to_string(), t.refused.join(", ")]
            })
            .collect();
        Some(aligned(&["FLEET", "PLACEMENT", "CREATED", "DELETED", "REFUSED"], &rows))
    }
}

impl EventSink for Progress {
    fn emit(&self, event: &Event) {
        let detail = self.detail;
        match event {
            Event::Refreshed { instances, adopted, vanished } => {
                let mut line = format!("refreshed: {instances} instance(s) owned by the plan");
                if !adopted.is_empty() {
                    line.push_str(&format!(
                        "; adopted {} the state did not know: {}",
                        adopted.len(),
                        detail.ids(adopted)
                    ));
                }
                if !vanished.is_empty() {
                    line.push_str(&format!("; {} gone from the clouds: {}", vanished.len(), detail.ids(vanished)));
                }
                self.say(line);
            }
            Event::Recovered { intents } => {
                self.say(format!("recovered {intents} intent(s) left open by an interrupted run"))
            }
            Event::Attempt { fleet, placement, count, min_count } => {
                self.expect(fleet, "create", placement, u64::from(*count));
                if self.multi.is_none() {
                    self.say(format!("{fleet}: creating {count} (at least {min_count}) at {placement}"));
                }
            }
            Event::Created { fleet, placement, requested, instance_ids } => {
                let got = instance_ids.len();
                self.settle(fleet, "create", placement, got as u64);
                self.count(fleet, placement, |t| t.created += got);
                let ids = detail.ids(instance_ids);
                self.say(format!("{fleet}: created {got} of {requested} at {placement}: {ids}"));
            }
            Event::Shortage { fleet, placement, code, message, retry_after } => {
                self.settle(fleet, "create", placement, 0);
                self.count(fleet, placement, |t| t.refused.push(code.clone()));
                self.say(format!(
                    "{fleet}: {placement} refused: {code}: {} (remembered until {})",
                    detail.reason(message),
                    retry_after.format("%H:%M:%S UTC")
                ));
            }
            Event::Failover { fleet, from, to } => self.say(format!("{fleet}: failing over from {from} to {to}")),
            Event::HistoryNotRecorded { message } => {
                self.say(format!("warning: the run is not in the history: {message}"))
            }
            Event::DrainFailed { fleet, instance_id, message } => {
                self.say(format!("{fleet}: drain of {instance_id} failed, the node is kept: {message}"))
            }
            Event::Deleting { fleet, placement, instance_ids } => {
                self.expect(fleet, "delete", placement, instance_ids.len() as u64);
                if self.multi.is_none() {
                    self.say(format!("{fleet}: deleting {} at {placement}", instance_ids.len()));
                }
            }
            Event::Deleted { fleet, placement, instance_ids } => {
                self.settle(fleet, "delete", placement, instance_ids.len() as u64);
                self.count(fleet, placement, |t| t.deleted += instance_ids.len());
                self.say(format!("{fleet}: deleted {} at {placement}: {}", instance_ids.len(), detail.ids(instance_ids)));
            }
            Event::Failed { fleet, placement, code, message } => {
                // A failed delete leaves the delete bar, a failed create the create bar.
                let verb = if self.pending_at(fleet, placement, "delete") { "delete" } else { "create" };
                self.settle(fleet, verb, placement, 0);
                self.count(fleet, placement, |t| t.refused.push(code.clone()));
                self.say(format!("{fleet}: {placement} failed: {code}: {}", detail.reason(message)));
            }
            Event::Postponed { fleet, placement, why } => {
                self.say(format!("{fleet}: not deleting at {placement} yet: {why}"))
            }
        }
    }
}
