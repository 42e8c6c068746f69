//! `gpufleet history PLAN --html FILE` end to end: real history made by the
//! real binary against the simulator (a fleet fails over, then moves home),
//! written as a page, and loaded in headless Chromium, whose DOM must show a
//! series per placement, the shortage and the moves.
//!
//! Chromium is found as `GPUFLEET_CHROMIUM`, or `chromium` or
//! `chromium-browser` on PATH. Without it the test fails and says how to
//! install it, unless `GPUFLEET_SKIP_BROWSER_TESTS=1`.

mod common;

use common::{run, stderr, stdout};
use serde_json::Value;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The rebalancing plan with a second fleet, which stays where it prefers to be.
fn plan_text() -> String {
    let inference = r#"
[fleets.inference]
gpu = "H100"
gpus_per_node = 8
nodes = 1
prefer = ["aws:us-west-2"]
image = { aws = "ami-0123456789abcdef0" }
"#;
    format!("{}{inference}", common::home_plan("home"))
}

/// The Chromium to use, `None` only when browser tests are to be skipped.
fn chromium() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("GPUFLEET_CHROMIUM") {
        return Some(PathBuf::from(path));
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    let found = std::env::split_paths(&path)
        .flat_map(|dir| ["chromium", "chromium-browser"].map(|name| dir.join(name)))
        .find(|candidate| candidate.is_file());
    if found.is_none() && std::env::var("GPUFLEET_SKIP_BROWSER_TESTS").as_deref() == Ok("1") {
        eprintln!(
            "\n*** SKIPPED: no Chromium found and GPUFLEET_SKIP_BROWSER_TESTS=1: the history page was NOT checked in a browser ***\n"
        );
        return None;
    }
    Some(found.unwrap_or_else(|| {
        panic!(
            "no Chromium: install it (Debian: `apt-get install -y chromium`), or set GPUFLEET_CHROMIUM=/path/to/chromium, \
             or set GPUFLEET_SKIP_BROWSER_TESTS=1 to skip the browser tests"
        )
    }))
}

/// The DOM of `page` as headless Chromium builds it; fails the test (not
/// hanging it) if Chromium does not answer within a minute.
fn dump_dom(chromium: &Path, page: &Path) -> String {
    let profile = tempfile::tempdir().unwrap();
    let child = Command::new(chromium)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-default-apps",
            "--disable-sync",
            "--no-first-run",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg("--dump-dom")
        .arg(format!("file://{}", page.display()))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", chromium.display()));
    let pid = child.id();
    let (send, answer) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = send.send(child.wait_with_output());
    });
    let out = match answer.recv_timeout(std::time::Duration::from_secs(60)) {
        Ok(out) => out.unwrap(),
        Err(e) => {
            // SAFETY: kill(2) on the pid of our own child, which has not been reaped.
            unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
            panic!("Chromium did not finish loading {}: {e}", page.display());
        }
    };
    assert!(out.status.success(), "Chromium failed on {}:\n{}", page.display(), stderr(&out));
    stdout(&out)
}

/// Values of attribute `name` on the elements that `open` starts, in order.
fn attribute(dom: &str, open: &str, name: &str) -> Vec<String> {
    let pattern = format!(r#"{}[^>]*?\s{name}="([^"]*)""#, regex::escape(open));
    regex::Regex::new(&pattern).unwrap().captures_iter(dom).map(|c| c[1].to_string()).collect()
}

#[test]
fn the_history_page_shows_each_placement_the_shortage_and_the_moves_home_in_a_browser() {
    let dir = tempfile::tempdir().unwrap();
    let plan = dir.path().join("home.toml");
    std::fs::write(&plan, plan_text()).unwrap();
    let plan = plan.to_str().unwrap();
    // us-east-1 is sold out for 20 minutes, then holds 8 per zone.
    let scenario = common::repo().join("plans/scenarios/us-east-1-h100-soldout.toml");
    let state = dir.path().join("state");
    let state = state.to_str().unwrap();
    let sim = ["--sim", scenario.to_str().unwrap(), "--state-dir", state];
    let verb = |words: &[&str], expect: i32| {
        let args: Vec<&str> = words.iter().copied().chain([plan]).chain(sim).collect();
        run(&args, expect)
    };

    // Minute 0: us-east-1 refuses, the trainers fail over to us-west-2; a
    // round then finds nothing to move yet.
    verb(&["apply", "--auto-approve"], 0);
    verb(&["rebalance"], 0);
    // Minute 21: us-east-1 has been clear long enough: two rounds move the trainers home.
    run(&["sim", "advance", "21m", "--state-dir", state], 0);
    verb(&["rebalance"], 0);
    verb(&["rebalance"], 0);

    let history: Vec<Value> =
        serde_json::from_str(&stdout(&run(&["history", plan, "--json", "--state-dir", state], 0))).unwrap();
    let placements = |fleet: &str| -> BTreeSet<String> {
        history.iter().flat_map(|e| e["nodes"][fleet].as_object().into_iter().flat_map(|p| p.keys().cloned())).collect()
    };
    let moving_runs = history.iter().filter(|e| e["moves"].as_array().is_some_and(|m| !m.is_empty())).count();
    assert_eq!(moving_runs, 2, "two rounds moved nodes: {history:?}");
    assert!(placements("trainers").iter().any(|p| p.contains("us-east-1")), "the trainers got home: {history:?}");
    assert!(placements("trainers").iter().any(|p| p.contains("us-west-2")), "after failing over: {history:?}");

    let page = dir.path().join("report/history.html");
    let wrote = run(&["history", plan, "--html", page.to_str().unwrap(), "--state-dir", state], 0);
    assert!(
        stdout(&wrote).contains(&format!("Wrote {} run(s) of plan `home` to", history.len())),
        "{}",
        stdout(&wrote)
    );

    let Some(chromium) = chromium() else { return };
    let dom = dump_dom(&chromium, &page);
    for fleet in ["trainers", "inference"] {
        let shown: BTreeSet<String> =
            attribute(&dom, &format!(r#"<path class="series" data-fleet="{fleet}""#), "data-placement")
                .into_iter()
                .collect();
        assert_eq!(shown, placements(fleet), "one series per placement of {fleet}");
        let series = attribute(&dom, &format!(r#"<path class="series" data-fleet="{fleet}""#), "d");
        assert_eq!(series.len(), shown.len(), "and only one each");
        assert!(series.iter().all(|d| d.starts_with('M') && d.ends_with('Z')), "each an area: {series:?}");
    }
    let markers = attribute(&dom, r#"<g class="move-marker""#, "data-at");
    assert_eq!(markers.len(), moving_runs, "a marker at each run that moved the trainers");
    assert!(dom.contains("⇢ 2 moved</text>"), "labeled on the chart");
    let shortages = attribute(&dom, r#"<g class="shortage""#, "data-shortage");
    assert!(
        shortages.iter().any(|s| s.starts_with("aws us-east-1") && s.ends_with("InsufficientInstanceCapacity")),
        "the sold-out region is a shaded band: {shortages:?}"
    );
    assert_eq!(dom.matches(r#"<tr class="run">"#).count(), history.len(), "the table has every run");
}

#[test]
fn a_plan_without_history_gets_a_page_that_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let page = dir.path().join("empty.html");
    let out = run(
        &["history", "nothing-yet", "--html", page.to_str().unwrap(), "--state-dir", dir.path().to_str().unwrap()],
        0,
    );
    assert!(stdout(&out).contains("Wrote 0 run(s) of plan `nothing-yet`"), "{}", stdout(&out));
    let html = std::fs::read_to_string(&page).unwrap();
    assert!(html.contains("No history yet for plan"), "{html}");
}

#[test]
fn html_and_json_together_are_a_usage_error() {
    let out = run(&["history", "p", "--html", "page.html", "--json"], 1);
    assert!(stderr(&out).contains("cannot be used with"), "{}", stderr(&out));
}

#[test]
fn a_page_that_cannot_be_written_fails_naming_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let blocker = dir.path().join("not-a-dir");
    std::fs::write(&blocker, "").unwrap();
    let page = blocker.join("page.html");
    let out = run(&["history", "p", "--html", page.to_str().unwrap(), "--state-dir", dir.path().to_str().unwrap()], 1);
    let err = stderr(&out);
    assert!(err.contains(&format!("cannot write the history page to {}", page.display())), "{err}");
}
