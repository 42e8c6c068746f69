//! `gpufleet history PLAN --html FILE`: a plan's history as one
//! self-contained HTML page, for a person to see where each fleet lived and
//! why: nodes per placement over time, the shortages in force, the moves,
//! cost per hour, and every run in a table.
//!
//! PURE: history entries in, text out; no file, clock or network (the CLI
//! writes the file). The page loads nothing: inline CSS and SVG, no script,
//! and a content security policy that forbids fetching anything. Every text
//! that comes from the state (plan, fleet and placement names, shortages) is
//! escaped, since a state file may be edited by hand.

mod chart;
#[cfg(test)]
mod tests;

use crate::state::history::{HistoryEntry, MoveRecord};
use chart::{PALETTE, TimeAxis, utc};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write;

/// The page for `plan`'s `entries` (in any order; they are shown by time).
pub fn render(plan: &str, entries: &[HistoryEntry]) -> String {
    let mut out = String::new();
    let plan = escape(plan);
    let _ = write!(
        out,
        r#"<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1"><meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'"><title>gpufleet history: {plan}</title><style>{CSS}</style></head><body><main><header><h1>History of plan <span class="plan">{plan}</span></h1>"#
    );
    let Some(runs) = Runs::new(entries) else {
        let _ = write!(
            out,
            r#"</header><p class="empty">No history yet for plan <span class="plan">{plan}</span>: every apply, destroy and rebalance round adds a run here.</p></main></body></html>"#
        );
        return out;
    };
    summary(&mut out, &runs);
    out.push_str("</header>");

    let placements: BTreeSet<&str> =
        runs.entries.iter().flat_map(|e| e.nodes.values().flat_map(|p| p.keys().map(String::as_str))).collect();
    let colors: BTreeMap<&str, &str> =
        placements.iter().enumerate().map(|(i, p)| (*p, PALETTE[i % PALETTE.len()])).collect();
    let bands = bands(&runs);
    for (index, fleet) in runs.fleets().into_iter().enumerate() {
        fleet_section(&mut out, &runs, index, fleet, &colors, &bands);
    }
    out.push_str(r#"<section class="cost"><h2>Cost per hour</h2>"#);
    out.push_str(&chart::cost_chart(&runs));
    out.push_str("</section>");
    table(&mut out, &runs);
    out.push_str(
        r#"<footer>Times are UTC. Written by gpufleet from the plan's history.</footer></main></body></html>"#,
    );
    out
}

/// Text made safe for HTML content and attribute values alike.
pub(crate) fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// The entries by time, and the time axis they span.
struct Runs<'a> {
    entries: Vec<&'a HistoryEntry>,
    time: TimeAxis,
}

impl<'a> Runs<'a> {
    fn new(entries: &'a [HistoryEntry]) -> Option<Runs<'a>> {
        let mut entries: Vec<&HistoryEntry> = entries.iter().collect();
        entries.sort_by_key(|e| e.at);
        let first = entries.first()?.at.timestamp_millis();
        let last = entries.last()?.at.timestamp_millis();
        Some(Runs { entries, time: TimeAxis::new(first, last) })
    }

    /// Every fleet with nodes or moves in some run, by name.
    fn fleets(&self) -> BTreeSet<&'a str> {
        self.entries
            .iter()
            .flat_map(|e| e.nodes.keys().chain(e.moves.iter().map(|m| &m.fleet)).map(String::as_str))
            .collect()
    }

    /// `fleet`'s nodes at each placement after `entry`.
    fn nodes(entry: &'a HistoryEntry, fleet: &str) -> impl Iterator<Item = (&'a str, u64)> {
        entry.nodes.get(fleet).into_iter().flatten().map(|(p, n)| (p.as_str(), u64::from(*n)))
    }

    fn count(entry: &HistoryEntry, fleet: &str, placement: &str) -> u64 {
        entry.nodes.get(fleet).and_then(|p| p.get(placement)).map_or(0, |n| u64::from(*n))
    }

    fn total(entry: &HistoryEntry) -> u64 {
        entry.nodes.values().flat_map(|p| p.values()).map(|n| u64::from(*n)).sum()
    }
}

/// A shortage in force from one run until the first later run without it
/// (or the end of the chart); each distinct shortage keeps its own lane.
struct Band {
    label: String,
    lane: usize,
    from: i64,
    until: i64,
}

fn bands(runs: &Runs) -> Vec<Band> {
    let mut lanes: BTreeMap<&str, usize> = BTreeMap::new();
    let mut open: BTreeMap<&str, i64> = BTreeMap::new();
    let mut closed: Vec<(&str, i64, i64)> = Vec::new();
    for entry in &runs.entries {
        let at = entry.at.timestamp_millis();
        let now: BTreeSet<&str> = entry.shortages.iter().map(String::as_str).collect();
        open.retain(|label, from| {
            let still = now.contains(label);
            if !still {
                closed.push((label, *from, at));
            }
            still
        });
        for label in now {
            let next = lanes.len();
            lanes.entry(label).or_insert(next);
            open.entry(label).or_insert(at);
        }
    }
    closed.extend(open.into_iter().map(|(label, from)| (label, from, runs.time.end())));
    closed
        .into_iter()
        .map(|(label, from, until)| Band { label: label.to_string(), lane: lanes[label], from, until })
        .collect()
}

/// A run that started or finished moves of a fleet.
struct Marker {
    at: i64,
    /// Short, on the chart: "⇢ 2 moved".
    label: String,
    /// One line per pair of placements: "A → B: 2 moved".
    details: Vec<String>,
    /// Every replacement was refused or failed: nothing moved.
    failed: bool,
}

/// Moves started, finished (old nodes deleted) and failed (replacements
/// refused) in one run.
#[derive(Default, Clone, Copy)]
struct Tally {
    started: u64,
    finished: u64,
    failed: u64,
}

impl Tally {
    fn of(record: &MoveRecord) -> Tally {
        Tally {
            started: u64::from(record.started),
            finished: u64::from(record.finished),
            failed: u64::from(record.failed),
        }
    }

    fn add(self, other: Tally) -> Tally {
        Tally {
            started: self.started.saturating_add(other.started),
            finished: self.finished.saturating_add(other.finished),
            failed: self.failed.saturating_add(other.failed),
        }
    }
}

/// "2 moved" when every replacement that came up also replaced its old
/// node in the run; else what was started, finished and failed.
impl std::fmt::Display for Tally {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let came_up = self.started.saturating_sub(self.failed);
        let mut parts = Vec::new();
        if came_up > 0 && came_up == self.finished {
            parts.push(format!("{came_up} moved"));
        } else {
            parts.extend((came_up > 0).then(|| format!("{came_up} started")));
            parts.extend((self.finished > 0).then(|| format!("{} finished", self.finished)));
        }
        parts.extend((self.failed > 0).then(|| format!("{} failed", self.failed)));
        f.write_str(&parts.join(", "))
    }
}

fn describe(record: &MoveRecord) -> String {
    format!("{} → {}: {}", record.from, record.to, Tally::of(record))
}

/// What an entry written before moves were recorded by fleet says of them.
fn counted(entry: &HistoryEntry) -> Tally {
    Tally { started: u64::from(entry.moves_started), finished: u64::from(entry.moves_finished), failed: 0 }
}

/// The runs that moved `fleet`'s nodes. Entries written before moves were
/// recorded by fleet have only counts: they mark every fleet.
fn markers(runs: &Runs, fleet: &str) -> Vec<Marker> {
    let mut markers = Vec::new();
    for entry in &runs.entries {
        let mine: Vec<&MoveRecord> = entry.moves.iter().filter(|m| m.fleet == fleet).collect();
        let (tally, details) = if !mine.is_empty() {
            let tally = mine.iter().map(|m| Tally::of(m)).fold(Tally::default(), Tally::add);
            (tally, mine.into_iter().map(describe).collect())
        } else if entry.moves.is_empty() && (entry.moves_started > 0 || entry.moves_finished > 0) {
            (counted(entry), vec![format!("{} (placements not recorded)", counted(entry))])
        } else {
            continue;
        };
        let failed = tally.failed > 0 && tally.failed >= tally.started && tally.finished == 0;
        markers.push(Marker { at: entry.at.timestamp_millis(), label: format!("⇢ {tally}"), details, failed });
    }
    markers
}

fn summary(out: &mut String, runs: &Runs) {
    let (Some(first), Some(last)) = (runs.entries.first(), runs.entries.last()) else {
        return;
    };
    let when = |e: &HistoryEntry| e.at.format("%Y-%m-%d %H:%M:%S UTC").to_string();
    let items = [
        ("runs", runs.entries.len().to_string()),
        ("first run", when(first)),
        ("last run", when(last)),
        ("nodes now", Runs::total(last).to_string()),
        ("cost now", format!("${:.2}/h", last.cost_per_hour)),
        ("shortages now", last.shortages.len().to_string()),
    ];
    out.push_str(r#"<dl class="summary">"#);
    for (term, value) in items {
        let _ = write!(out, "<div><dt>{term}</dt><dd>{}</dd></div>", escape(&value));
    }
    out.push_str("</dl>");
}

fn fleet_section(
    out: &mut String,
    runs: &Runs,
    index: usize,
    fleet: &str,
    colors: &BTreeMap<&str, &str>,
    bands: &[Band],
) {
    let mine: BTreeSet<&str> = runs.entries.iter().flat_map(|e| Runs::nodes(e, fleet).map(|(p, _)| p)).collect();
    let placements: Vec<(&str, &str)> =
        mine.into_iter().map(|p| (p, colors.get(p).copied().unwrap_or(PALETTE[0]))).collect();
    let markers = markers(runs, fleet);
    let name = escape(fleet);
    let _ = write!(
        out,
        r#"<section class="fleet" data-fleet="{name}"><h2>Fleet <span class="name">{name}</span>: nodes per placement</h2>"#
    );
    out.push_str(&chart::fleet_chart(runs, index, fleet, &placements, bands, &markers));

    let last = runs.entries.last().copied();
    out.push_str(r#"<ul class="legend">"#);
    for (placement, color) in &placements {
        let now = last.map_or(0, |e| Runs::count(e, fleet, placement));
        let text = escape(placement);
        let _ = write!(
            out,
            r#"<li class="legend-item" data-placement="{text}"><span class="swatch" style="background:{color}"></span>{text} <span class="now">{now} now</span></li>"#
        );
    }
    if !bands.is_empty() {
        out.push_str(r#"<li class="legend-key"><span class="swatch shortage-swatch"></span>shortage in force</li>"#);
    }
    if !markers.is_empty() {
        out.push_str(r#"<li class="legend-key"><span class="swatch move-swatch"></span>run that moved nodes</li>"#);
    }
    out.push_str("</ul>");
    if !markers.is_empty() {
        out.push_str(r#"<ol class="moves-list">"#);
        for marker in &markers {
            for line in &marker.details {
                let _ =
                    write!(out, r#"<li><time>{}</time> {}</li>"#, utc(marker.at, "%Y-%m-%d %H:%M:%S"), escape(line));
            }
        }
        out.push_str("</ol>");
    }
    out.push_str("</section>");
}

/// Every run, oldest first.
fn table(out: &mut String, runs: &Runs) {
    out.push_str(
        r#"<section class="runs"><h2>Runs</h2><table><thead><tr><th>time (UTC)</th><th>command</th><th>outcome</th><th class="num">created</th><th class="num">deleted</th><th>moves</th><th class="num">nodes</th><th class="num">cost/hour</th><th>shortages in force</th></tr></thead><tbody>"#,
    );
    for entry in &runs.entries {
        // Only known outcomes name a CSS class; anything else is shown as text.
        let badge = match entry.outcome.as_str() {
            known @ ("ok" | "partial" | "error" | "interrupted") => known,
            _ => "other",
        };
        let moves = if !entry.moves.is_empty() {
            entry.moves.iter().map(|m| format!("{}: {}", m.fleet, describe(m))).collect()
        } else if entry.moves_started > 0 || entry.moves_finished > 0 {
            vec![counted(entry).to_string()]
        } else {
            Vec::new()
        };
        let _ = write!(
            out,
            r#"<tr class="run"><td class="time">{}</td><td>{}</td><td><span class="badge {badge}">{}</span></td><td class="num">{}</td><td class="num">{}</td><td class="moves-cell">{}</td><td class="num">{}</td><td class="num">${:.2}</td><td>{}</td></tr>"#,
            entry.at.format("%Y-%m-%d %H:%M:%S"),
            match &entry.note {
                Some(note) => format!("{}<br><small>{}</small>", escape(&entry.command), escape(note)),
                None => escape(&entry.command),
            },
            escape(&entry.outcome),
            entry.created,
            entry.deleted,
            lines(&moves),
            Runs::total(entry),
            entry.cost_per_hour,
            shortage_cell(&entry.shortages)
        );
    }
    out.push_str("</tbody></table></section>");
}

/// A few shortages as lines; more folded under their count, since the
/// chart above shows them all.
fn shortage_cell(shortages: &[String]) -> String {
    if shortages.len() <= 2 {
        return lines(shortages);
    }
    format!("<details><summary>{} in force</summary>{}</details>", shortages.len(), lines(shortages))
}

/// Escaped lines, one under the other; a dash for none.
fn lines(items: &[String]) -> String {
    if items.is_empty() {
        return r#"<span class="none">–</span>"#.to_string();
    }
    items.iter().map(|s| format!("<div>{}</div>", escape(s))).collect()
}

const CSS: &str = r#"
:root { color-scheme: light; --ink: #1f2933; --muted: #616e7c; --rule: #e4e7eb; --short: #d64545; }
* { box-sizing: border-box; }
body { margin: 0; background: #f5f7fa; color: var(--ink); font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif; }
main { max-width: 1120px; margin: 0 auto; padding: 24px 28px 40px; }
h1 { font-size: 22px; margin: 0 0 12px; font-weight: 600; }
h2 { font-size: 16px; margin: 0 0 8px; font-weight: 600; }
.plan, .name { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; background: #e4e7eb; padding: 1px 6px; border-radius: 4px; }
.summary { display: flex; flex-wrap: wrap; gap: 10px; margin: 0 0 18px; }
.summary div { background: #fff; border: 1px solid var(--rule); border-radius: 8px; padding: 8px 14px; }
.summary dt { color: var(--muted); font-size: 12px; text-transform: uppercase; letter-spacing: .04em; }
.summary dd { margin: 0; font-size: 16px; font-weight: 600; font-variant-numeric: tabular-nums; }
section { background: #fff; border: 1px solid var(--rule); border-radius: 10px; padding: 16px 18px; margin: 0 0 18px; }
svg.chart { width: 100%; height: auto; display: block; font-size: 12px; }
.grid { stroke: #eef0f3; }
.baseline, .tick-mark { stroke: #9aa5b1; }
.tick { fill: var(--muted); font-variant-numeric: tabular-nums; }
.tick.date { font-size: 11px; }
.axis-title { fill: var(--muted); font-size: 12px; font-weight: 600; }
.series { stroke: #fff; stroke-width: 1; fill-opacity: .9; }
.shortage .band { fill: var(--short); fill-opacity: .06; }
.hatch { stroke: var(--short); stroke-width: 2; stroke-opacity: .35; }
.shortage .lane { fill: var(--short); fill-opacity: .22; }
.lane-label { fill: #8a1c1c; font-size: 11px; }
.move-marker line { stroke: #323f4b; stroke-width: 1.5; stroke-dasharray: 5 3; }
.move-marker text { fill: #323f4b; font-size: 12px; font-weight: 600; }
.move-marker.failed line { stroke: #ab091e; }
.move-marker.failed text { fill: #ab091e; }
summary { cursor: pointer; color: #8a1c1c; }
.cost-line { fill: none; stroke: #3e4c59; stroke-width: 2; }
.legend { list-style: none; display: flex; flex-wrap: wrap; gap: 6px 18px; padding: 0; margin: 10px 0 0 64px; }
.legend li { display: flex; align-items: center; gap: 6px; font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; font-size: 13px; }
.legend .now { color: var(--muted); font-family: system-ui, sans-serif; }
.swatch { width: 14px; height: 14px; border-radius: 3px; display: inline-block; }
.shortage-swatch { background: rgba(214, 69, 69, .3); }
.move-swatch { border-left: 2px dashed #323f4b; border-radius: 0; width: 8px; }
.legend-key { font-family: system-ui, sans-serif !important; color: var(--muted); }
.moves-list { margin: 10px 0 0 64px; padding: 0 0 0 18px; color: var(--ink); font-size: 13px; }
.moves-list time { color: var(--muted); font-variant-numeric: tabular-nums; margin-right: 6px; }
table { width: 100%; border-collapse: collapse; font-size: 13px; }
th { text-align: left; color: var(--muted); font-weight: 600; border-bottom: 2px solid var(--rule); padding: 6px 8px; }
td { border-bottom: 1px solid var(--rule); padding: 6px 8px; vertical-align: top; overflow-wrap: anywhere; }
.runs { overflow-x: auto; }
tbody tr:nth-child(even) { background: #fafbfc; }
.num { text-align: right; font-variant-numeric: tabular-nums; }
.time { white-space: nowrap; font-variant-numeric: tabular-nums; }
.moves-cell { min-width: 260px; font-size: 12px; }
th { white-space: nowrap; }
.none { color: #9aa5b1; }
.badge { display: inline-block; padding: 1px 8px; border-radius: 10px; font-size: 12px; font-weight: 600; background: #e4e7eb; }
.badge.ok { background: #e3f9e5; color: #207227; }
.badge.partial { background: #fff3c4; color: #8d6708; }
.badge.error, .badge.interrupted { background: #ffe3e3; color: #ab091e; }
.empty { background: #fff; border: 1px dashed #9aa5b1; border-radius: 10px; padding: 28px; font-size: 16px; color: var(--muted); }
footer { color: var(--muted); font-size: 12px; }
"#;
