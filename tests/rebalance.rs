//! `gpufleet rebalance` end to end against the simulator: nodes that failed
//! over move home once home has been clear for `move_back_after`, a budget's
//! worth per round, make-before-break; capacity that is back too briefly
//! moves nothing. Time is the simulator's, moved with `sim advance`.

mod common;

use common::{Lines, home_plan, run, stderr, stdout};
use serde_json::Value;
use std::path::Path;
use std::process::Output;

/// Instances of the state by region.
fn regions(state: &str) -> Vec<String> {
    let out = run(&["state", "list", "--json", "--state-dir", state], 0);
    let listed: Vec<Value> = serde_json::from_str(&stdout(&out)).unwrap();
    let mut regions: Vec<String> = listed.iter().map(|i| i["region"].as_str().unwrap().to_string()).collect();
    regions.sort();
    regions
}

/// A plan of the test, run against the embedded simulator with a scenario,
/// its state in a directory of its own.
struct Rig {
    plan: String,
    scenario: String,
    state: String,
}

impl Rig {
    fn new(dir: &Path, plan: &str, scenario: &Path) -> Rig {
        std::fs::create_dir_all(dir).unwrap();
        let path = dir.join("plan.toml");
        std::fs::write(&path, plan).unwrap();
        Rig {
            plan: path.to_str().unwrap().to_string(),
            scenario: scenario.to_str().unwrap().to_string(),
            state: dir.join("state").to_str().unwrap().to_string(),
        }
    }

    /// `gpufleet VERB... PLAN --sim SCENARIO --state-dir STATE`.
    fn run(&self, verb: &[&str], expect: i32) -> Output {
        let mut args = verb.to_vec();
        args.extend([self.plan.as_str(), "--sim", &self.scenario, "--state-dir", &self.state]);
        run(&args, expect)
    }

    fn advance(&self, by: &str) {
        run(&["sim", "advance", by, "--state-dir", &self.state], 0);
    }
}

fn count(regions: &[String], region: &str) -> usize {
    regions.iter().filter(|r| *r == region).count()
}

#[test]
fn a_fleet_moves_home_two_nodes_a_round_to_zones_clear_for_fifteen_minutes_never_deleting_first() {
    let dir = tempfile::tempdir().unwrap();
    // us-east-1 is sold out for 20 minutes, then holds 8 per zone.
    let rig =
        Rig::new(dir.path(), &home_plan("home"), &common::repo().join("plans/scenarios/us-east-1-h100-soldout.toml"));
    let (plan, state) = (rig.plan.as_str(), rig.state.as_str());
    let call = |verb: &[&str], expect: i32| rig.run(verb, expect);
    call(&["apply", "--auto-approve"], 0);
    assert_eq!(count(&regions(state), "us-west-2"), 4, "failed over to us-west-2");

    // Every us-east-1 zone refused at minute 0: nothing moves before a zone
    // has been clear for 15 minutes.
    call(&["rebalance"], 0);
    rig.advance("10m");
    let dry = call(&["rebalance", "--dry-run"], 0);
    assert!(stdout(&dry).contains("No changes"), "clear for 10 of 15 minutes:\n{}", stdout(&dry));
    assert_eq!(count(&regions(state), "us-west-2"), 4);

    // At minute 16 a move to us-east-1a is tried and refused (sold out until
    // 20): nothing is deleted, and us-east-1a is held back for 15 more minutes.
    rig.advance("6m");
    let refused = call(&["rebalance"], 0);
    assert!(
        stdout(&refused).contains("tried aws us-east-1a p5.48xlarge: InsufficientInstanceCapacity"),
        "{}",
        stdout(&refused)
    );
    assert_eq!(count(&regions(state), "us-west-2"), 4, "make-before-break: the old nodes stay");

    // At minute 21 capacity is back; us-east-1a is not clear yet, us-east-1b is.
    rig.advance("5m");
    let shown: Value = serde_json::from_str(&stdout(&call(&["rebalance", "--dry-run", "--json"], 0))).unwrap();
    let actions = shown["actions"].as_array().unwrap();
    assert_eq!(actions.len(), 2, "one create and one delete: {shown}");
    assert_eq!((actions[0]["action"].as_str(), actions[0]["count"].as_u64()), (Some("create"), Some(2)));
    assert_eq!(actions[0]["zone"], "us-east-1b");
    assert_eq!(actions[1]["reason_code"]["reason"], "delete_because_moved");

    for (round, home) in [(1, 2), (2, 4)] {
        let out = call(&["rebalance"], 0);
        let now = regions(state);
        assert_eq!(now.len(), 4, "round {round}: never fewer nodes than the fleet runs:\n{}", stdout(&out));
        assert_eq!(count(&now, "us-east-1"), home, "round {round} moves two:\n{}", stdout(&out));
    }
    let settled = call(&["rebalance", "--dry-run"], 0);
    assert!(stdout(&settled).contains("No changes"), "{}", stdout(&settled));
    assert_eq!(count(&regions(state), "us-west-2"), 0, "the fallback is empty");

    // The history tells the story: the failover, the refused move, the two moves home.
    let history: Vec<Value> =
        serde_json::from_str(&stdout(&run(&["history", plan, "--json", "--state-dir", state], 0))).unwrap();
    let story: Vec<(String, u64, u64)> = history
        .iter()
        .filter(|e| e["created"].as_u64() > Some(0) || e["command"] == "apply")
        .map(|e| {
            let moved = e["moves_finished"].as_u64().unwrap();
            (e["command"].as_str().unwrap().to_string(), e["created"].as_u64().unwrap(), moved)
        })
        .collect();
    assert_eq!(story, [("apply".into(), 4, 0), ("rebalance".into(), 2, 2), ("rebalance".into(), 2, 2)]);
    let last = history.last().unwrap();
    assert_eq!(last["nodes"]["trainers"]["aws us-east-1b p5.48xlarge"], 4, "{last}");
    let table = stdout(&run(&["history", plan, "--state-dir", state], 0));
    assert!(table.starts_with("TIME                 COMMAND    OUTCOME"), "{table}");
}

#[test]
fn rebalance_settings_are_checked_with_their_location() {
    let dir = tempfile::tempdir().unwrap();
    let bad =
        home_plan("home").replace("max_disruption = 2", "max_disruption = \"lots\"").replace("\"15m\"", "\"soon\"");
    let path = Path::new(dir.path()).join("bad.toml");
    std::fs::write(&path, bad).unwrap();
    let out = run(&["validate", path.to_str().unwrap()], 1);
    let err = stderr(&out);
    assert!(err.contains("bad.toml:16:18: error: max_disruption `lots`"), "{err}");
    assert!(err.contains("move_back_after `soon` is not a duration"), "{err}");
}

/// A `rebalance --watch` child against the served simulator at `url`.
fn watch(plan: &str, url: &str, state: &str, extra: &[&str]) -> Lines {
    let mut command =
        common::command(&["rebalance", plan, "--watch", "--every", "1m", "--sim-url", url, "--state-dir", state]);
    command.args(extra);
    Lines::spawn(command)
}

/// The move-home plan and its state in a directory of their own, watched
/// against a served simulator.
struct Watched {
    server: common::SimServer,
    _dir: tempfile::TempDir,
    plan: String,
    state: String,
}

impl Watched {
    fn new() -> Watched {
        let dir = tempfile::tempdir().unwrap();
        let plan = dir.path().join("home.toml");
        std::fs::write(&plan, home_plan("home")).unwrap();
        Watched {
            server: common::SimServer::start(&[]),
            plan: plan.to_str().unwrap().to_string(),
            state: dir.path().join("state").to_str().unwrap().to_string(),
            _dir: dir,
        }
    }

    fn watcher(&self) -> Lines {
        watch(&self.plan, &self.server.url, &self.state, &[])
    }
}

#[test]
fn two_watchers_one_leads_rounds_follow_simulated_time_and_the_other_takes_over_when_it_dies() {
    let watched = Watched::new();
    let (server, state) = (&watched.server, watched.state.as_str());

    let mut first = watched.watcher();
    first.expect("leading the rebalancing of plan `home`: a round every 1m");
    first.expect("round at 2026-01-01 00:00:00 UTC");
    assert_eq!(regions(state).len(), 4, "the first round fills the fleet");

    let second = watched.watcher();
    let waiting = second.expect("waiting:");
    assert!(waiting.contains(&format!("pid {}", first.pid())), "{waiting}");

    // Rounds follow the simulator's clock: a minute later, the leader runs
    // the next (at 00:01:15: the first round's creates let 15 s pass while
    // their instances were pending).
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let response = reqwest::Client::new()
            .post(format!("{}/_sim/advance", server.url))
            .json(&serde_json::json!({ "by": "1m" }))
            .send()
            .await
            .unwrap();
        assert!(response.status().is_success());
    });
    first.expect("round at 2026-01-01 00:01:15 UTC");

    // SIGKILL: the lease's flock goes with the process, and the other takes over.
    first.child.kill().unwrap();
    first.child.wait().unwrap();
    second.expect("leading the rebalancing of plan `home`");
    second.expect("round at 2026-01-01 00:01:");
    assert_eq!(regions(state).len(), 4, "no duplicate after the takeover");
}

#[test]
fn sigterm_ends_the_watch_after_its_round_and_releases_the_lease() {
    let watched = Watched::new();
    let state = watched.state.as_str();

    let mut leader = watched.watcher();
    leader.expect("leading the rebalancing of plan `home`");
    leader.expect("round at 2026-01-01 00:00:00 UTC");
    let lease = Path::new(state).join(format!("{}.leader", gpufleet::rebalance::leader_name("home")));
    assert!(std::fs::metadata(&lease).unwrap().len() > 0, "the lease names its holder");

    assert_eq!(unsafe { libc::kill(leader.pid() as libc::pid_t, libc::SIGTERM) }, 0);
    let status = leader.child.wait().unwrap();
    assert_eq!(status.code(), Some(0), "a stop is not a failure");
    assert_eq!(std::fs::metadata(&lease).unwrap().len(), 0, "the lease is released, not left to expire");
    assert_eq!(regions(state).len(), 4, "the round's work is recorded");

    // The next watcher leads at once, without waiting out a lease.
    let next = watched.watcher();
    let first = next.expect("rebalancing of plan `home`");
    assert!(first.contains("leading"), "{first}");
}

#[test]
fn a_node_whose_drain_fails_is_kept_and_goes_once_its_drain_succeeds() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let hook = dir.path().join("drain.sh");
    std::fs::write(
        &hook,
        "#!/bin/sh\n\
         here=$(dirname \"$0\")\n\
         echo \"$GPUFLEET_PLAN $GPUFLEET_FLEET $GPUFLEET_CLOUD $GPUFLEET_REGION $GPUFLEET_ZONE $GPUFLEET_INSTANCE_ID\" >> \"$here/drained.log\"\n\
         test -e \"$here/allow\" || { echo 'jobs still running' >&2; exit 3; }\n",
    )
    .unwrap();
    std::fs::set_permissions(&hook, std::fs::Permissions::from_mode(0o755)).unwrap();
    let plan = dir.path().join("home.toml");
    let sized =
        |nodes: u32| home_plan("home").replace("nodes = 4", &format!("nodes = {nodes}")) + "drain = \"drain.sh\"\n";
    std::fs::write(&plan, sized(2)).unwrap();
    let plan = plan.to_str().unwrap();
    let state = dir.path().join("state");
    let state = state.to_str().unwrap();
    run(&["apply", plan, "--sim", "--state-dir", state, "--auto-approve"], 0);
    assert_eq!(regions(state).len(), 2);

    std::fs::write(dir.path().join("home.toml"), sized(1)).unwrap();
    let out = run(&["apply", plan, "--sim", "--state-dir", state, "--auto-approve"], 0);
    assert!(stdout(&out).contains("drain failed:"), "{}", stdout(&out));
    assert!(stdout(&out).contains("exited with exit status: 3: jobs still running"), "{}", stdout(&out));
    assert_eq!(regions(state).len(), 2, "the node whose drain failed is kept");
    let log = std::fs::read_to_string(dir.path().join("drained.log")).unwrap();
    assert!(log.starts_with("home trainers aws us-east-1 us-east-1a i-"), "{log}");

    std::fs::write(dir.path().join("allow"), "").unwrap();
    run(&["apply", plan, "--sim", "--state-dir", state, "--auto-approve"], 0);
    assert_eq!(regions(state).len(), 1, "drained, then deleted");
    assert_eq!(std::fs::read_to_string(dir.path().join("drained.log")).unwrap().lines().count(), 2);
}

#[test]
fn a_metrics_scrape_parses_as_openmetrics_text_with_the_rebalancer_series() {
    // us-east-1 is sold out: the first round fails over, five zones refusing.
    let scenario = common::repo().join("plans/scenarios/us-east-1-h100-soldout.toml");
    let server = common::SimServer::start(&["--scenario", scenario.to_str().unwrap()]);
    let dir = tempfile::tempdir().unwrap();
    let plan = dir.path().join("home.toml");
    std::fs::write(&plan, home_plan("home")).unwrap();
    let state = dir.path().join("state");
    let watcher =
        watch(plan.to_str().unwrap(), &server.url, state.to_str().unwrap(), &["--metrics-listen", "127.0.0.1:0"]);
    let listening = watcher.expect("metrics on http://127.0.0.1:");
    let url = listening.trim_start_matches("metrics on ").to_string();
    watcher.expect("round at");
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let text = runtime.block_on(async { reqwest::get(&url).await.unwrap().text().await.unwrap() });

    // The exposition format: comments, then `name{labels} value` samples, ending in `# EOF`.
    let mut samples = std::collections::BTreeMap::new();
    for line in text.lines() {
        if let Some(comment) = line.strip_prefix("# ") {
            let kind = comment.split(' ').next().unwrap();
            assert!(["HELP", "TYPE", "UNIT", "EOF"].contains(&kind), "{line}");
            continue;
        }
        let (series, value) = line.rsplit_once(' ').unwrap_or_else(|| panic!("not a sample: {line}"));
        let value: f64 = value.parse().unwrap_or_else(|_| panic!("not a number: {line}"));
        assert!(series.starts_with("gpufleet_"), "{line}");
        samples.insert(series.to_string(), value);
    }
    assert_eq!(text.lines().last(), Some("# EOF"));
    let nodes = r#"gpufleet_nodes{fleet="trainers",cloud="aws",location="us-west-2a",instance_type="p5.48xlarge"}"#;
    assert_eq!(samples.get(nodes), Some(&4.0), "{text}");
    assert_eq!(samples.get(r#"gpufleet_shortfall_nodes{fleet="trainers"}"#), Some(&0.0), "{text}");
    assert_eq!(samples.get(r#"gpufleet_rounds_total{outcome="ok"}"#), Some(&1.0), "{text}");
    assert_eq!(samples.get(r#"gpufleet_moves_total{outcome="started"}"#), Some(&0.0), "{text}");
    assert_eq!(samples.get("gpufleet_drain_failures_total"), Some(&0.0), "{text}");
    assert_eq!(samples.get("gpufleet_round_duration_seconds_count"), Some(&1.0), "{text}");
    let cost = samples.get("gpufleet_cost_per_hour_dollars").copied().unwrap_or_default();
    assert!((cost - 4.0 * 55.04).abs() < 0.01, "{text}");
    let refused = r#"gpufleet_shortages_total{code="InsufficientInstanceCapacity"}"#;
    assert_eq!(samples.get(refused), Some(&5.0), "{text}");
}

const SPREAD_PLAN: &str = r#"
name = "spread"
shortage_ttl = "5m"

[providers.gcp]
project = "ml-train"
zones = ["us-central1-a", "us-central1-b", "us-central1-c"]

[fleets.trainers]
gpu = "H100"
gpus_per_node = 8
nodes = 30
placement = "spread"
spread_by = "zone"
max_skew = 1
image = { gcp = "projects/ml-images/global/images/family/trainer" }

[rebalance]
max_disruption = 4
move_back_after = "15m"
"#;

/// us-central1-c has no H100 machine (a3-highgpu-8g nor a3-megagpu-8g) for
/// 20 simulated minutes.
const ZONE_C_STOCKOUT: &str = r#"
start = "2026-01-01T00:00:00Z"

[[offering]]
cloud = "gcp"
region = "us-central1"
zone = "us-central1-c"
instance_type = "a3-highgpu-8g"
capacity = 0

[[offering.timeline]]
after = "20m"
capacity = 100

[[offering]]
cloud = "gcp"
region = "us-central1"
zone = "us-central1-c"
instance_type = "a3-megagpu-8g"
capacity = 0

[[offering.timeline]]
after = "20m"
capacity = 100
"#;

/// Instances of the state per zone, in zone order.
fn zones(state: &str) -> Vec<(String, usize)> {
    let out = run(&["state", "list", "--json", "--state-dir", state], 0);
    let listed: Vec<Value> = serde_json::from_str(&stdout(&out)).unwrap();
    let mut zones: std::collections::BTreeMap<String, usize> = Default::default();
    for instance in &listed {
        *zones.entry(instance["zone"].as_str().unwrap().to_string()).or_default() += 1;
    }
    zones.into_iter().collect()
}

fn per_zone(a: usize, b: usize, c: usize) -> Vec<(String, usize)> {
    let all = [("us-central1-a", a), ("us-central1-b", b), ("us-central1-c", c)];
    all.into_iter().filter(|(_, n)| *n > 0).map(|(z, n)| (z.to_string(), n)).collect()
}

#[test]
fn a_spread_fleet_lands_evenly_and_rounds_restore_the_balance_a_stockout_skewed() {
    let dir = tempfile::tempdir().unwrap();
    let plenty = Rig::new(&dir.path().join("plenty"), SPREAD_PLAN, &common::repo().join("plans/scenarios/plenty.toml"));
    plenty.run(&["apply", "--auto-approve"], 0);
    assert_eq!(zones(&plenty.state), per_zone(10, 10, 10));

    let scenario = dir.path().join("zone-c-stockout.toml");
    std::fs::write(&scenario, ZONE_C_STOCKOUT).unwrap();
    let rig = Rig::new(&dir.path().join("skewed"), SPREAD_PLAN, &scenario);
    let out = rig.run(&["apply", "--auto-approve"], 0);
    assert_eq!(zones(&rig.state), per_zone(15, 15, 0), "us-central1-c refused:\n{}", stdout(&out));

    // Within max_skew of nothing while us-central1-c is short or not clear
    // for move_back_after.
    rig.advance("10m");
    let dry = rig.run(&["rebalance", "--dry-run"], 0);
    assert!(stdout(&dry).contains("No changes"), "clear for 10 of 15 minutes:\n{}", stdout(&dry));

    // Capacity is back at minute 20 and the zone clear since minute 0: four
    // nodes a round move to us-central1-c, created before the old ones go.
    rig.advance("11m");
    let mut rounds = Vec::new();
    loop {
        let before = zones(&rig.state);
        let out = rig.run(&["rebalance"], 0);
        let after = zones(&rig.state);
        if after == before {
            assert!(stdout(&out).contains("No changes"), "{}", stdout(&out));
            break;
        }
        let moved = after.iter().find(|(z, _)| z == "us-central1-c").map_or(0, |(_, n)| *n)
            - before.iter().find(|(z, _)| z == "us-central1-c").map_or(0, |(_, n)| *n);
        assert_eq!(after.iter().map(|(_, n)| n).sum::<usize>(), 30, "never fewer nodes than the fleet runs");
        rounds.push(moved);
        assert!(rounds.len() <= 5, "rounds do not settle: {rounds:?}");
    }
    assert_eq!(rounds, [4, 4, 2], "a budget's worth a round, until within max_skew");
    assert_eq!(zones(&rig.state), per_zone(10, 10, 10));
}
