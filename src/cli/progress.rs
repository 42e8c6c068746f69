//! Apply progress: a bar per placement on a terminal, plain lines on stderr
//! otherwise, or one JSON object per event on stdout with `--json`.

use crate::apply::{Event, EventSink};
use crate::model::Placement;
use crate::model::printable;
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::collections::HashMap;
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

/// Bars on a terminal; otherwise the same steps as plain lines on stderr.
pub struct Progress {
    multi: Option<MultiProgress>,
    bars: Mutex<HashMap<(String, Placement), ProgressBar>>,
}

impl Progress {
    pub fn new() -> Progress {
        let multi =
            std::io::stderr().is_terminal().then(|| MultiProgress::with_draw_target(ProgressDrawTarget::stderr()));
        Progress { multi, bars: Mutex::new(HashMap::new()) }
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

    fn start_bar(&self, fleet: &str, placement: &Placement, len: u64, verb: &str) {
        let Some(multi) = &self.multi else { return };
        let bar = multi.add(ProgressBar::new(len));
        let style = ProgressStyle::with_template("{prefix:>8} {msg:<48} [{bar:30}] {pos}/{len}")
            .map(|s| s.progress_chars("=> "))
            .unwrap_or_else(|_| ProgressStyle::default_bar());
        bar.set_style(style);
        bar.set_prefix(verb.to_string());
        bar.set_message(printable(&format!("{fleet}: {placement}")).into_owned());
        let mut bars = self.bars.lock().unwrap_or_else(|p| p.into_inner());
        bars.insert((fleet.to_string(), placement.clone()), bar);
    }

    fn finish_bar(&self, fleet: &str, placement: &Placement, done: u64, note: Option<String>) {
        let mut bars = self.bars.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(bar) = bars.remove(&(fleet.to_string(), placement.clone())) {
            bar.set_position(done);
            match note {
                Some(note) => {
                    bar.abandon_with_message(printable(&format!("{fleet}: {placement}: {note}")).into_owned())
                }
                None => bar.finish(),
            }
        }
    }
}

impl EventSink for Progress {
    fn emit(&self, event: &Event) {
        match event {
            Event::Refreshed { instances, adopted, vanished } => {
                let mut line = format!("refreshed: {instances} instance(s) owned by the plan");
                if !adopted.is_empty() {
                    line.push_str(&format!(
                        "; adopted {} the state did not know: {}",
                        adopted.len(),
                        adopted.join(", ")
                    ));
                }
                if !vanished.is_empty() {
                    line.push_str(&format!("; {} gone from the clouds: {}", vanished.len(), vanished.join(", ")));
                }
                self.say(line);
            }
            Event::Recovered { intents } => {
                self.say(format!("recovered {intents} intent(s) left open by an interrupted run"))
            }
            Event::Attempt { fleet, placement, count, min_count } => {
                self.start_bar(fleet, placement, u64::from(*count), "create");
                if self.multi.is_none() {
                    self.say(format!("{fleet}: creating {count} (at least {min_count}) at {placement}"));
                }
            }
            Event::Created { fleet, placement, requested, instance_ids } => {
                let got = instance_ids.len();
                let note = (got < *requested as usize).then(|| format!("partial: {got} of {requested}"));
                self.finish_bar(fleet, placement, got as u64, note);
                self.say(format!("{fleet}: created {got} of {requested} at {placement}: {}", instance_ids.join(", ")));
            }
            Event::Shortage { fleet, placement, code, message, retry_after } => {
                self.finish_bar(fleet, placement, 0, Some(code.clone()));
                self.say(format!(
                    "{fleet}: {placement} refused: {code}: {message} (remembered until {})",
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
                self.start_bar(fleet, placement, instance_ids.len() as u64, "delete");
                if self.multi.is_none() {
                    self.say(format!("{fleet}: deleting {} at {placement}", instance_ids.len()));
                }
            }
            Event::Deleted { fleet, placement, instance_ids } => {
                self.finish_bar(fleet, placement, instance_ids.len() as u64, None);
                self.say(format!("{fleet}: deleted {}: {}", placement, instance_ids.join(", ")));
            }
            Event::Failed { fleet, placement, code, message } => {
                self.finish_bar(fleet, placement, 0, Some(code.clone()));
                self.say(format!("{fleet}: {placement} failed: {code}: {message}"));
            }
            Event::Postponed { fleet, placement, why } => {
                self.say(format!("{fleet}: not deleting at {placement} yet: {why}"))
            }
        }
    }
}
