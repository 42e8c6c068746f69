//! Rendering for people (Terraform-like diffs, colored only on a terminal and
//! never with NO_COLOR) and for machines (`--json`).

use crate::apply::{ApplyReport, FleetStatus};
use crate::model::Instance;
use crate::model::printable;
use crate::planner::{Action, ActionKind, Changeset};
use crate::state::history::HistoryEntry;
use owo_colors::OwoColorize;
use serde_json::{Value, json};
use std::fmt::Write;

/// How much of long id lists and cloud messages a person sees: `Brief`
/// names a few ids and counts the rest, and keeps a cloud message's first
/// sentence; `-v` asks for `Full`. `--json` and `state list` always have it all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Detail {
    Brief,
    Full,
}

/// Ids named before "and N more".
const IDS_NAMED: usize = 3;
/// Characters of a cloud message kept in brief.
const REASON_CHARS: usize = 80;

impl Detail {
    pub fn of(verbose: bool) -> Detail {
        if verbose { Detail::Full } else { Detail::Brief }
    }

    /// "i-0a1, i-0b2, i-0c3 and 3,997 more".
    pub fn ids(self, ids: &[String]) -> String {
        if self == Detail::Full || ids.len() <= IDS_NAMED + 1 {
            return ids.join(", ");
        }
        format!("{} and {} more", ids[..IDS_NAMED].join(", "), thousands(ids.len() - IDS_NAMED))
    }

    /// A cloud's message cut to its first sentence, and to a line's length.
    pub fn reason(self, message: &str) -> String {
        if self == Detail::Full {
            return message.to_string();
        }
        let first = message.split_inclusive(". ").next().unwrap_or(message);
        let first = first.lines().next().unwrap_or(first).trim_end();
        if first.chars().count() <= REASON_CHARS {
            return first.to_string();
        }
        let cut: String = first.chars().take(REASON_CHARS - 1).collect();
        // At a word's end when there is one.
        let cut = cut.rsplit_once(' ').map_or(cut.as_str(), |(words, _)| words);
        format!("{}…", cut.trim_end())
    }
}

/// 3998 → "3,998".
pub fn thousands(n: usize) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, digit) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(digit);
    }
    out
}

/// Text that came from a plan, a state file or a cloud, with its control
/// characters escaped so that it cannot drive the terminal.
fn shown(text: impl std::fmt::Display) -> String {
    printable(&text.to_string()).into_owned()
}

fn money(per_hour: f64) -> String {
    format!("${per_hour:.2}/h")
}

/// The human diff of a changeset.
pub fn changeset_text(changeset: &Changeset, detail: Detail) -> String {
    let mut out = String::new();
    for s in &changeset.skipped {
        let _ = writeln!(
            out,
            "{}",
            shown(format!(
                "  ~ skipping {} for fleet {}: {} at {}, retry after {}",
                s.offering,
                s.fleet,
                s.code,
                s.since.format("%H:%M"),
                s.retry_after.format("%H:%M")
            ))
            .yellow()
        );
    }
    if !changeset.skipped.is_empty() {
        out.push('\n');
    }
    for fleet in &changeset.fleets {
        let _ = writeln!(
            out,
            "  fleet {}: {}×{} per node, want {} (min {}), have {} → {}",
            shown(&fleet.fleet).bold(),
            fleet.gpus_per_node,
            fleet.gpu,
            fleet.want,
            fleet.min_nodes,
            fleet.have,
            fleet.planned
        );
        for action in changeset.actions.iter().filter(|a| a.fleet == fleet.fleet) {
            out.push_str(&action_line(action, detail));
        }
        if let Some(why) = &fleet.shortfall_reason {
            let _ = writeln!(
                out,
                "    {}",
                shown(format!("! cannot place {} node(s): {why}", fleet.want - fleet.planned.min(fleet.want))).red()
            );
        }
    }
    let orphans: Vec<&Action> =
        changeset.actions.iter().filter(|a| !changeset.fleets.iter().any(|f| f.fleet == a.fleet)).collect();
    let mut fleet = "";
    for action in orphans {
        if action.fleet != fleet {
            fleet = &action.fleet;
            let _ = writeln!(out, "  fleet {}:", shown(fleet).bold());
        }
        out.push_str(&action_line(action, detail));
    }
    out.push('\n');
    if changeset.is_empty() {
        let _ = writeln!(out, "No changes. The clouds match the plan.");
    } else {
        let _ = writeln!(
            out,
            "Plan: {} to create, {} to delete.",
            changeset.count(ActionKind::Create),
            changeset.count(ActionKind::Delete)
        );
    }
    let cost = &changeset.cost;
    let delta = cost.after_per_hour - cost.before_per_hour;
    let _ = writeln!(
        out,
        "Cost: {} → {} ({}{}){}",
        money(cost.before_per_hour),
        money(cost.after_per_hour),
        if delta >= 0.0 { "+" } else { "-" },
        money(delta.abs()),
        if cost.has_unknown_prices { ", some prices unknown and left out" } else { "" }
    );
    out
}

fn action_line(action: &Action, detail: Detail) -> String {
    let price = action.price_per_hour.map(|p| format!("{} each", money(p))).unwrap_or_else(|| "price unknown".into());
    match action.kind {
        ActionKind::Create => {
            let mut line = format!(
                "    {}\n",
                shown(format!("+ {}  +{}  {price}  ({})", action.placement, action.count, action.reason)).green()
            );
            if !action.fallbacks.is_empty() {
                line.push_str(&fallback_lines(action));
            }
            line
        }
        ActionKind::Delete => format!(
            "    {}\n",
            shown(format!(
                "- {}  -{}  {price}  ({})  [{}]",
                action.placement,
                action.count,
                action.reason,
                detail.ids(&action.instance_ids)
            ))
            .red()
        ),
    }
}

/// A create's fallback chain, wrapped to stay readable on a terminal.
fn fallback_lines(action: &Action) -> String {
    const WIDTH: usize = 100;
    let mut out = String::new();
    let mut line = "        if refused, then:".to_string();
    for (n, placement) in action.fallbacks.iter().enumerate() {
        let item = if n == 0 { format!(" {placement}") } else { format!(" → {placement}") };
        if line.chars().count() + item.chars().count() > WIDTH {
            let _ = writeln!(out, "{}", shown(line));
            line = format!("          {}", item.trim_start());
        } else {
            line.push_str(&item);
        }
    }
    let _ = writeln!(out, "{line}");
    out
}

/// The `plan --json` object.
pub fn changeset_json(changeset: &Changeset) -> Value {
    let actions: Vec<Value> = changeset
        .actions
        .iter()
        .map(|a| {
            let mut v = json!({
                "action": a.kind,
                "fleet": a.fleet,
                "cloud": a.placement.cloud,
                "region": a.placement.region,
                "instance_type": a.placement.instance_type,
                "count": a.count,
                "reason": a.reason.to_string(),
                "reason_code": a.reason,
                "price_per_hour": a.price_per_hour,
            });
            if let Some(zone) = &a.placement.zone {
                v["zone"] = json!(zone);
            }
            match a.kind {
                ActionKind::Create => {
                    v["min_count"] = json!(a.min_count);
                    v["fallbacks"] = json!(a.fallbacks);
                }
                ActionKind::Delete => v["instance_ids"] = json!(a.instance_ids),
            }
            v
        })
        .collect();
    json!({
        "plan": changeset.plan,
        "summary": {
            "create": changeset.count(ActionKind::Create),
            "delete": changeset.count(ActionKind::Delete),
        },
        "actions": actions,
        "fleets": changeset.fleets,
        "skipped": changeset.skipped,
        "cost": changeset.cost,
    })
}

/// The human summary at the end of apply or destroy.
pub fn report_text(report: &ApplyReport, verb: &str, detail: Detail) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "\n{verb} finished: {} created, {} deleted.", report.created, report.deleted);
    for fleet in &report.fleets {
        let line =
            shown(format!("  fleet {}: {} of {} nodes (min {})", fleet.fleet, fleet.have, fleet.want, fleet.min_nodes));
        match fleet.status {
            FleetStatus::Complete => {
                let _ = writeln!(out, "{} {}", line, "complete".green());
            }
            FleetStatus::Partial => {
                let _ = writeln!(out, "{} {}", line, "partial".yellow());
            }
            FleetStatus::Unfilled => {
                let _ = writeln!(out, "{} {}", line, "below min_nodes".red());
            }
        }
        // Refusals are worth knowing even when the fleet ended complete
        // (it failed over, or a rebalance move was refused and nothing moved).
        for refusal in &fleet.refused {
            let _ = writeln!(out, "{}", shown(format!("    tried {}: {}: {}", refusal.offering, refusal.code, detail.reason(&refusal.message))));
        }
        if fleet.status != FleetStatus::Complete {
            let tried_now = |offering: &str| fleet.refused.iter().any(|r| r.offering == offering);
            for skip in fleet.skipped.iter().filter(|s| !tried_now(&s.offering)) {
                let _ = writeln!(
                    out,
                    "{}",
                    shown(format!(
                        "    skipped {}: {} at {}, retry after {}",
                        skip.offering,
                        skip.code,
                        skip.since.format("%H:%M"),
                        skip.retry_after.format("%H:%M")
                    ))
                );
            }
        }
    }
    for fleet in &report.fleets {
        for used in &fleet.fallbacks_used {
            let _ = writeln!(
                out,
                "{}",
                shown(format!(
                    "  fleet {}: {} refused; used fallback {} of the saved chain, {}",
                    fleet.fleet, used.planned, used.position, used.used
                ))
            );
        }
    }
    for kept in &report.drain_failures {
        let _ = writeln!(out, "{} {}", "drain failed:".yellow(), shown(kept));
    }
    for postponed in &report.postponed {
        let _ = writeln!(out, "{} {}", "postponed:".yellow(), shown(postponed));
    }
    for exhausted in &report.chains_exhausted {
        let _ = writeln!(out, "{} {}", "error:".red(), shown(exhausted));
    }
    for error in &report.errors {
        let _ = writeln!(out, "{} {}", "error:".red(), shown(error));
    }
    if report.interrupted {
        let _ = writeln!(out, "{} stopped before the end; run the command again to finish", "interrupted:".red());
    }
    out
}

/// `state list` rows as JSON objects.
pub fn instance_json(plan: &str, i: &Instance) -> Value {
    json!({
        "id": i.id,
        "plan": plan,
        "fleet": i.fleet,
        "cloud": i.cloud,
        "region": i.region,
        "zone": i.zone,
        "instance_type": i.instance_type,
        "launched_at": i.launched_at,
        "run": i.run,
        "scope": i.scope,
    })
}

/// `history` as an aligned table, one run a line.
pub fn history_table(entries: &[HistoryEntry]) -> String {
    let header = ["TIME", "COMMAND", "OUTCOME", "CREATED", "DELETED", "MOVED", "NODES", "COST", "SHORTAGES"];
    let rows: Vec<[String; 9]> = entries
        .iter()
        .map(|e| {
            let nodes: u32 = e.nodes.values().flat_map(|placements| placements.values()).sum();
            [
                e.at.format("%Y-%m-%d %H:%M:%S").to_string(),
                e.command.clone(),
                e.outcome.clone(),
                e.created.to_string(),
                e.deleted.to_string(),
                e.moves_finished.to_string(),
                nodes.to_string(),
                money(e.cost_per_hour),
                e.shortages.len().to_string(),
            ]
        })
        .collect();
    let mut table = aligned(&header, &rows);
    for entry in entries {
        if let Some(note) = &entry.note {
            let line = format!("{} {}: {note}", entry.at.format("%Y-%m-%d %H:%M:%S"), entry.command);
            let _ = writeln!(table, "{}", printable(&line));
        }
    }
    table
}

/// `state list` as an aligned table.
pub fn instance_table(rows: &[(String, Instance)]) -> String {
    let header = ["ID", "PLAN", "FLEET", "CLOUD", "LOCATION", "INSTANCE TYPE", "LAUNCHED"];
    let cells: Vec<[String; 7]> = rows
        .iter()
        .map(|(plan, i)| {
            [
                i.id.clone(),
                plan.clone(),
                i.fleet.clone(),
                i.cloud.to_string(),
                i.zone.clone().unwrap_or_else(|| i.region.clone()),
                i.instance_type.clone(),
                i.launched_at.format("%Y-%m-%d %H:%M").to_string(),
            ]
        })
        .collect();
    aligned(&header, &cells)
}

/// Rows under a header, each column as wide as its widest cell. Cells come
/// from state and history, which other writers may have filled: they are
/// shown [`printable`].
pub(super) fn aligned<const N: usize>(header: &[&str; N], rows: &[[String; N]]) -> String {
    let rows: Vec<[String; N]> = rows.iter().map(|row| row.clone().map(|c| printable(&c).into_owned())).collect();
    let mut out = String::new();
    let mut widths = header.map(str::len);
    for row in &rows {
        for (w, c) in widths.iter_mut().zip(row) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |cols: Vec<&str>| {
        let padded: Vec<String> = cols.iter().zip(widths).map(|(c, w)| format!("{c:<w$}")).collect();
        padded.join("  ").trim_end().to_string()
    };
    let _ = writeln!(out, "{}", line(header.to_vec()));
    for row in &rows {
        let _ = writeln!(out, "{}", line(row.iter().map(String::as_str).collect()));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::apply::events::Attempted;
    use crate::apply::{FleetResult, MoveTally};
    use crate::model::{Cloud, Placement};
    use crate::planner::{CostSummary, Reason};

    const HOSTILE: &str = "\u{1b}]0;owned\u{7}\u{1b}[2J";

    fn without_colors(text: &str) -> String {
        let colors = regex::Regex::new("\u{1b}\\[[0-9;]*m").unwrap();
        colors.replace_all(text, "").into_owned()
    }

    #[test]
    fn brief_detail_names_three_ids_and_a_first_sentence() {
        let ids: Vec<String> = (0..4000).map(|n| format!("i-{n:04}")).collect();
        assert_eq!(Detail::Brief.ids(&ids), "i-0000, i-0001, i-0002 and 3,997 more");
        assert_eq!(Detail::Brief.ids(&ids[..4]), "i-0000, i-0001, i-0002, i-0003");
        assert_eq!(Detail::Full.ids(&ids).matches(", ").count(), 3999);
        let paragraph = "We do not have sufficient p5.48xlarge capacity in us-east-1a. Our system will be working \
                         on provisioning additional capacity.";
        assert_eq!(Detail::Brief.reason(paragraph), "We do not have sufficient p5.48xlarge capacity in us-east-1a.");
        assert_eq!(Detail::Full.reason(paragraph), paragraph);
        let long = "x".repeat(500);
        assert_eq!(Detail::Brief.reason(&long).chars().count(), REASON_CHARS);
        let words = "word ".repeat(40);
        assert!(Detail::Brief.reason(&words).ends_with("word…"), "{}", Detail::Brief.reason(&words));
        assert_eq!((thousands(7), thousands(1000), thousands(1234567)), ("7".into(), "1,000".into(), "1,234,567".into()));
    }

    #[test]
    fn ids_and_cloud_messages_cannot_drive_the_terminal() {
        let placement = Placement {
            cloud: Cloud::Aws,
            region: "us-east-1".into(),
            zone: Some("us-east-1a".into()),
            instance_type: "p5.48xlarge".into(),
        };
        let delete = Action {
            kind: ActionKind::Delete,
            fleet: format!("gone{HOSTILE}"),
            placement,
            count: 1,
            min_count: 0,
            instance_ids: vec![format!("i-0{HOSTILE}")],
            reason: Reason::DeleteBecauseNotInPlan,
            price_per_hour: None,
            fallbacks: Vec::new(),
        };
        let cost = CostSummary { before_per_hour: 0.0, after_per_hour: 0.0, has_unknown_prices: true };
        let changeset =
            Changeset { plan: "home".into(), actions: vec![delete], fleets: Vec::new(), skipped: Vec::new(), cost };
        let report = ApplyReport {
            run: "r".into(),
            created: 0,
            deleted: 0,
            fleets: vec![FleetResult {
                fleet: "llm".into(),
                want: 1,
                min_nodes: 1,
                have: 0,
                status: FleetStatus::Unfilled,
                refused: vec![Attempted {
                    offering: "aws us-east-1a p5.48xlarge".into(),
                    code: format!("Code{HOSTILE}"),
                    message: format!("message{HOSTILE}"),
                }],
                skipped: Vec::new(),
                fallbacks_used: Vec::new(),
            }],
            moves: MoveTally::default(),
            moved: Vec::new(),
            errors: vec![format!("error{HOSTILE}")],
            interrupted: false,
            drain_failures: vec![format!("drain{HOSTILE}")],
            chains_exhausted: Vec::new(),
            postponed: Vec::new(),
        };
        for text in [changeset_text(&changeset, Detail::Full), report_text(&report, "Apply", Detail::Full)] {
            let plain = without_colors(&text);
            assert!(!plain.chars().any(|c| c.is_control() && c != '\n'), "{plain:?}");
            assert!(plain.contains("\\u{1b}]0;owned\\u{7}"), "{plain}");
        }
    }
}
