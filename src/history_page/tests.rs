use super::render;
use crate::state::history::{HistoryEntry, MoveRecord};
use chrono::{DateTime, TimeDelta, Utc};

const WEST: &str = "aws us-west-2a p5.48xlarge";
const EAST: &str = "aws us-east-1b p5.48xlarge";
const SOLD_OUT: &str = "aws us-east-1b p5.48xlarge: InsufficientInstanceCapacity";

fn start() -> DateTime<Utc> {
    "2026-01-01T00:00:00Z".parse().unwrap()
}

/// A run `minute` minutes in, with (fleet, placement, nodes) afterwards.
fn entry(minute: i64, nodes: &[(&str, &str, u32)], shortages: &[&str]) -> HistoryEntry {
    let mut by_fleet = std::collections::BTreeMap::<String, std::collections::BTreeMap<String, u32>>::new();
    for (fleet, placement, n) in nodes {
        by_fleet.entry(fleet.to_string()).or_default().insert(placement.to_string(), *n);
    }
    HistoryEntry {
        at: start() + TimeDelta::minutes(minute),
        run: format!("run-{minute}"),
        command: "rebalance".into(),
        host: "host".into(),
        pid: 1,
        serial: minute as u64,
        created: 0,
        deleted: 0,
        moves_started: 0,
        moves_finished: 0,
        nodes: by_fleet,
        shortages: shortages.iter().map(|s| s.to_string()).collect(),
        cost_per_hour: 393.2,
        outcome: "ok".into(),
        moves: Vec::new(),
        note: None,
    }
}

fn moved(fleet: &str, from: &str, to: &str, n: u32) -> MoveRecord {
    MoveRecord { fleet: fleet.into(), from: from.into(), to: to.into(), started: n, finished: n, failed: 0 }
}

/// The story of a fleet that failed over west and moved home east, two nodes a round.
fn story() -> Vec<HistoryEntry> {
    let mut first_move = entry(21, &[("trainers", WEST, 2), ("trainers", EAST, 2)], &[]);
    first_move.moves = vec![moved("trainers", WEST, EAST, 2)];
    first_move.moves_started = 2;
    first_move.moves_finished = 2;
    let mut second_move = entry(22, &[("trainers", EAST, 4)], &[]);
    second_move.moves = vec![moved("trainers", WEST, EAST, 2)];
    vec![
        entry(0, &[("trainers", WEST, 4)], &[SOLD_OUT]),
        entry(10, &[("trainers", WEST, 4)], &[SOLD_OUT]),
        first_move,
        second_move,
    ]
}

/// `(attribute values)` of every element matching `pattern`'s captures.
fn captures(html: &str, pattern: &str) -> Vec<Vec<String>> {
    regex::Regex::new(pattern)
        .unwrap()
        .captures_iter(html)
        .map(|c| c.iter().skip(1).map(|m| m.map_or(String::new(), |m| m.as_str().to_string())).collect())
        .collect()
}

fn series(html: &str) -> Vec<(String, String)> {
    captures(html, r#"<path class="series" data-fleet="([^"]*)" data-placement="([^"]*)""#)
        .into_iter()
        .map(|c| (c[0].clone(), c[1].clone()))
        .collect()
}

#[test]
fn one_series_per_placement_of_each_fleet() {
    let mut entries = story();
    entries.push(entry(30, &[("trainers", EAST, 4), ("inference", WEST, 1)], &[]));
    let html = render("home", &entries);
    assert_eq!(
        series(&html),
        [
            ("inference".to_string(), WEST.to_string()),
            ("trainers".to_string(), EAST.to_string()),
            ("trainers".to_string(), WEST.to_string()),
        ],
        "one chart per fleet, by name; one stacked area per placement it ever used"
    );
    assert_eq!(html.matches(r#"<section class="fleet""#).count(), 2);
    // The same placement has the same color in every fleet's chart and legend.
    let colors = captures(&html, &format!(r#"data-placement="{WEST}" d="[^"]*" style="fill:(#[0-9a-f]{{6}})""#));
    assert_eq!(colors.len(), 2);
    assert_eq!(colors[0], colors[1]);
    assert_eq!(captures(&html, r#"<li class="legend-item" data-placement="([^"]*)""#).len(), 3);
}

#[test]
fn a_shortage_is_a_band_from_the_first_run_that_saw_it_until_the_first_that_did_not() {
    let html = render("home", &story());
    let bands =
        captures(&html, r#"<g class="shortage" data-shortage="([^"]*)" data-from="([^"]*)" data-until="([^"]*)""#);
    assert_eq!(bands, [[SOLD_OUT, "2026-01-01T00:00:00Z", "2026-01-01T00:21:00Z"]]);
    assert!(
        html.contains(r#"<li class="legend-key"><span class="swatch shortage-swatch"></span>shortage in force</li>"#)
    );

    // Shortages in force at once hatch the fleet's area once, over their union.
    let mut entries = story();
    entries[1].shortages.push("aws us-east-1a p5.48xlarge: InsufficientInstanceCapacity".into());
    let html = render("home", &entries);
    let lanes = captures(&html, r#"<g class="shortage" data-shortage="([^"]*)""#);
    assert_eq!(lanes.len(), 2, "a lane each");
    let shading = captures(&html, r#"<g class="shortage-shading" clip-path="[^"]*">((?:<rect [^>]*/>)*)</g>"#);
    assert_eq!(shading.len(), 1);
    assert_eq!(shading[0][0].matches("<rect ").count(), 1, "{shading:?}");

    // Still in force at the last run: the band runs to the end of the chart.
    let html = render("home", &story()[..2]);
    let bands =
        captures(&html, r#"<g class="shortage" data-shortage="[^"]*" data-from="([^"]*)" data-until="([^"]*)""#);
    assert_eq!(bands.len(), 1);
    assert!(bands[0][1].as_str() > "2026-01-01T00:10:00Z", "{bands:?}");
}

#[test]
fn runs_that_moved_nodes_are_marked_with_where_from_and_where_to() {
    let html = render("home", &story());
    let markers = captures(&html, r#"<g class="move-marker" data-at="([^"]*)"><title>([^<]*)</title>"#);
    assert_eq!(
        markers,
        [
            ["2026-01-01T00:21:00Z", &format!("{WEST} → {EAST}: 2 moved")],
            ["2026-01-01T00:22:00Z", &format!("{WEST} → {EAST}: 2 moved")],
        ]
    );
    assert_eq!(html.matches("⇢ 2 moved</text>").count(), 2, "a label on the chart at each marker");
    assert!(html.contains(&format!("<li><time>2026-01-01 00:21:00</time> {WEST} → {EAST}: 2 moved</li>")));
    assert!(html.contains(&format!("<div>trainers: {WEST} → {EAST}: 2 moved</div>")), "and in the table");
}

#[test]
fn a_refused_move_is_marked_as_failed() {
    let mut refused = entry(16, &[("trainers", WEST, 4)], &[SOLD_OUT]);
    refused.moves = vec![MoveRecord { failed: 2, finished: 0, ..moved("trainers", WEST, EAST, 2) }];
    let html = render("home", &[entry(0, &[("trainers", WEST, 4)], &[]), refused]);
    assert!(html.contains("⇢ 2 failed</text>"), "{html}");
    assert!(html.contains(r#"<g class="move-marker failed""#), "drawn apart from moves that happened");
    assert!(html.contains(&format!("<title>{WEST} → {EAST}: 2 failed</title>")));
}

#[test]
fn moves_recorded_before_placements_were_kept_mark_every_fleet_by_count() {
    let mut old = entry(5, &[("a", WEST, 1), ("b", EAST, 1)], &[]);
    old.moves_started = 1;
    let html = render("home", &[entry(0, &[("a", WEST, 1), ("b", EAST, 1)], &[]), old]);
    let markers = captures(&html, r#"<g class="move-marker" data-at="[^"]*"><title>([^<]*)</title>"#);
    assert_eq!(markers, [["1 started (placements not recorded)"], ["1 started (placements not recorded)"]]);
}

#[test]
fn text_from_the_state_is_escaped_everywhere() {
    let hostile = r#""><script>alert(1)</script><img src=x onerror=alert(2)>'"#;
    let mut entries = vec![entry(0, &[(hostile, hostile, 2)], &[hostile]), entry(3, &[(hostile, hostile, 1)], &[])];
    entries[1].moves = vec![moved(hostile, hostile, hostile, 1)];
    entries[1].command = hostile.into();
    entries[1].outcome = hostile.into();
    let html = render(hostile, &entries);
    for raw in ["<script", "<img", "onerror=alert(2)>"] {
        assert!(!html.contains(raw), "{raw} reached the page unescaped");
    }
    let escaped = "&quot;&gt;&lt;script&gt;alert(1)&lt;/script&gt;&lt;img src=x onerror=alert(2)&gt;&#39;";
    assert!(html.contains(&format!("<title>gpufleet history: {escaped}</title>")));
    assert!(html.contains(&format!(r#"data-placement="{escaped}""#)));
    assert!(html.contains(&format!(r#"data-shortage="{escaped}""#)));
    assert!(html.contains(r#"<span class="badge other">"#), "an unknown outcome names no CSS class of its own");
    // Every element the page opens, it closes: nothing from the state broke out.
    for tag in ["svg", "section", "table", "g", "path", "script"] {
        assert_eq!(
            html.matches(&format!("<{tag} ")).count() + html.matches(&format!("<{tag}>")).count(),
            html.matches(&format!("</{tag}>")).count(),
            "<{tag}>"
        );
    }
}

#[test]
fn the_table_lists_every_run_by_time_with_its_cost() {
    let mut entries = story();
    entries.reverse();
    let html = render("home", &entries);
    let times = captures(&html, r#"<tr class="run"><td class="time">([^<]*)</td>"#);
    assert_eq!(
        times.concat(),
        ["2026-01-01 00:00:00", "2026-01-01 00:10:00", "2026-01-01 00:21:00", "2026-01-01 00:22:00"]
    );
    assert!(html.contains(r#"<td class="num">$393.20</td>"#));
    assert!(html.contains(&format!("<td><div>{SOLD_OUT}</div></td></tr>")), "a shortage in force is listed");
    let many = render("home", &[entry(0, &[], &["a", "b", "c"])]);
    assert!(many.contains("<details><summary>3 in force</summary><div>a</div><div>b</div><div>c</div></details>"));
    assert!(html.contains(r#"<path class="cost-line""#));
    assert!(html.contains("time (UTC)"), "the time axis says its zone");
}

#[test]
fn the_page_loads_nothing_from_anywhere() {
    let html = render("home", &story());
    assert!(html.starts_with("<!DOCTYPE html>") && html.ends_with("</html>"));
    assert!(html.contains(r#"content="default-src 'none'; style-src 'unsafe-inline'""#));
    for fetching in ["://", "<script", "<link", "@import", "url(http", " src="] {
        assert!(!html.contains(fetching), "{fetching}");
    }
}

#[test]
fn an_empty_history_says_so() {
    let html = render("home", &[]);
    assert!(html.contains("No history yet for plan"), "{html}");
    assert!(!html.contains("<svg") && !html.contains("<table"), "{html}");
    assert!(html.ends_with("</html>"));
}

#[test]
fn odd_histories_render_without_panicking() {
    let one = [entry(0, &[], &[])];
    assert!(render("p", &one).contains(r#"<tr class="run">"#), "a single run, no nodes");
    let mut huge = entry(0, &[("f", WEST, u32::MAX), ("f", EAST, u32::MAX)], &["s"; 3]);
    huge.moves = vec![moved("f", WEST, EAST, u32::MAX), moved("f", EAST, WEST, u32::MAX)];
    huge.cost_per_hour = f64::MAX;
    let mut ancient = huge.clone();
    ancient.at = DateTime::<Utc>::MIN_UTC;
    let mut far = huge.clone();
    far.at = DateTime::<Utc>::MAX_UTC;
    let html = render("p", &[huge, ancient, far]);
    assert_eq!(series(&html).len(), 2);
}
