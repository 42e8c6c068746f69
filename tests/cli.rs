//! End to end: the real `gpufleet` binary against the simulator, embedded
//! (`--sim`) and served (`--sim-url`).

mod common;

use common::{SimServer, gpufleet, stderr, stdout};
use serde_json::Value;
use std::path::Path;

const H100_PLAN: &str = r#"
name = "e2e"
shortage_ttl = "5m"

[providers.aws]
regions = ["us-east-1", "us-west-2"]

[fleets.trainers]
gpu = "H100"
gpus_per_node = 8
nodes = NODES
min_nodes = MIN_NODES
prefer = ["aws:us-east-1", "aws:us-west-2"]
residency = ["US"]
image = { aws = "ami-0123456789abcdef0" }
labels = { team = "research" }
"#;

fn write_plan(dir: &Path, nodes: u32, min_nodes: u32) -> String {
    let path = dir.join("e2e.toml");
    let text = H100_PLAN.replace("MIN_NODES", &min_nodes.to_string()).replace("NODES", &nodes.to_string());
    std::fs::write(&path, text).unwrap();
    path.to_str().unwrap().to_string()
}

fn write_scenario(dir: &Path, text: &str) -> String {
    let path = dir.join("scenario.toml");
    std::fs::write(&path, text).unwrap();
    path.to_str().unwrap().to_string()
}

/// A two-node H100 plan in `dir` against the scenario where us-east-1 is
/// sold out for 20 minutes: (plan, scenario, state dir).
fn sold_out_east(dir: &Path) -> (String, String, String) {
    let scenario = common::repo().join("plans/scenarios/us-east-1-h100-soldout.toml");
    let state = dir.join("state");
    (write_plan(dir, 2, 2), scenario.to_str().unwrap().to_string(), state.to_str().unwrap().to_string())
}

fn json(out: &std::process::Output) -> Value {
    serde_json::from_str(&stdout(out)).unwrap_or_else(|e| panic!("not JSON ({e}):\n{}\n{}", stdout(out), stderr(out)))
}

fn code(out: &std::process::Output) -> i32 {
    out.status.code().expect("exited normally")
}

/// Run and check the exit code, showing everything on a mismatch.
fn run(args: &[&str], expect: i32) -> std::process::Output {
    let out = gpufleet(args);
    assert_eq!(code(&out), expect, "gpufleet {args:?}\nstdout:\n{}\nstderr:\n{}", stdout(&out), stderr(&out));
    out
}

#[test]
fn validate_accepts_the_demo_plan() {
    let out = run(&["validate", "plans/demo.toml"], 0);
    assert!(stdout(&out).contains("is valid"));
}

#[test]
fn every_bad_plan_fixture_gets_a_located_error_and_exit_1() {
    let dir = common::repo().join("tests/fixtures/plans");
    let mut checked = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "toml") {
            continue;
        }
        let rel = path.strip_prefix(common::repo()).unwrap().to_str().unwrap().to_string();
        let out = run(&["validate", &rel], 1);
        let err = stderr(&out);
        assert!(err.contains(&format!("{rel}:")), "{rel}: no location in\n{err}");
        assert!(!err.contains("panicked"), "{rel} panicked:\n{err}");
        checked += 1;
    }
    assert!(checked >= 10, "only {checked} fixtures found");
}

#[test]
fn plan_apply_replan_destroy_on_the_embedded_simulator() {
    let dir = tempfile::tempdir().unwrap();
    let plan = write_plan(dir.path(), 3, 3);
    let state = dir.path().join("state");
    let state = state.to_str().unwrap();

    let planned = json(&run(&["plan", &plan, "--sim", "--state-dir", state, "--json"], 0));
    assert_eq!(planned["summary"], serde_json::json!({"create": 3, "delete": 0}));
    assert_eq!(planned["actions"][0]["region"], "us-east-1");
    assert_eq!(planned["actions"][0]["instance_type"], "p5.48xlarge");
    run(&["plan", &plan, "--sim", "--state-dir", state, "--detailed-exitcode"], 2);

    let applied = run(&["apply", &plan, "--sim", "--state-dir", state, "--auto-approve"], 0);
    assert!(stdout(&applied).contains("3 created"), "{}", stdout(&applied));
    run(&["plan", &plan, "--sim", "--state-dir", state, "--detailed-exitcode"], 0);

    let listed = json(&run(&["state", "list", "--json", "--state-dir", state], 0));
    let listed = listed.as_array().unwrap();
    assert_eq!(listed.len(), 3);
    assert!(listed.iter().all(|i| i["fleet"] == "trainers" && i["cloud"] == "aws" && i["region"] == "us-east-1"));
    let id = listed[0]["id"].as_str().unwrap();
    let shown = json(&run(&["state", "show", id, "--json", "--state-dir", state], 0));
    assert_eq!(shown["id"], id);

    // Scale down: the newest go first, and the state follows.
    let plan = write_plan(dir.path(), 1, 1);
    let planned = json(&run(&["plan", &plan, "--sim", "--state-dir", state, "--json"], 0));
    assert_eq!(planned["summary"], serde_json::json!({"create": 0, "delete": 2}));
    run(&["apply", &plan, "--sim", "--state-dir", state, "--auto-approve"], 0);
    assert_eq!(json(&run(&["state", "list", "--json", "--state-dir", state], 0)).as_array().unwrap().len(), 1);

    run(&["destroy", &plan, "--sim", "--state-dir", state, "--auto-approve"], 0);
    assert_eq!(json(&run(&["state", "list", "--json", "--state-dir", state], 0)), serde_json::json!([]));
    run(&["plan", &plan, "--sim", "--state-dir", state, "--detailed-exitcode"], 2);
}

#[test]
fn sold_out_region_fails_over_in_one_run_and_plan_remembers_it() {
    let dir = tempfile::tempdir().unwrap();
    let plan = write_plan(dir.path(), 4, 4);
    let scenario = common::repo().join("plans/scenarios/us-east-1-h100-soldout.toml");
    let scenario = scenario.to_str().unwrap();
    let state = dir.path().join("state");
    let state = state.to_str().unwrap();

    let out = run(&["apply", &plan, "--sim", scenario, "--state-dir", state, "--auto-approve", "--json"], 0);
    let events: Vec<Value> = stdout(&out).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let kinds: Vec<&str> = events.iter().map(|e| e["event"].as_str().unwrap()).collect();
    assert!(kinds.contains(&"shortage") && kinds.contains(&"failover"), "{kinds:?}");
    let summary = events.last().unwrap();
    assert_eq!(summary["event"], "summary");
    assert_eq!(summary["report"]["fleets"][0]["have"], 4);
    assert_eq!(summary["partial"], false);

    let listed = json(&run(&["state", "list", "--json", "--state-dir", state], 0));
    assert!(listed.as_array().unwrap().iter().all(|i| i["region"] == "us-west-2"), "{listed}");

    let replan = run(&["plan", &plan, "--sim", scenario, "--state-dir", state], 0);
    let text = stdout(&replan);
    for zone in ["us-east-1a", "us-east-1b", "us-east-1c", "us-east-1d", "us-east-1f"] {
        let line = format!("skipping aws {zone} p5.48xlarge for fleet trainers: InsufficientInstanceCapacity");
        assert!(text.contains(&line), "{text}");
    }
    assert!(text.contains("No changes"), "{text}");
}

#[test]
fn partial_fill_at_or_above_min_nodes_exits_2_below_exits_1_naming_what_was_tried() {
    let scenario_text = r#"
[[offering]]
cloud = "aws"
region = "us-east-1"
instance_type = "p5.48xlarge"
capacity = 1
[[offering]]
cloud = "aws"
region = "us-west-2"
instance_type = "p5.48xlarge"
capacity = 1
"#;
    let dir = tempfile::tempdir().unwrap();
    let scenario = write_scenario(dir.path(), scenario_text);
    let state = dir.path().join("state");
    let state = state.to_str().unwrap();

    // Each zone holds one node, so every zone gives a partial fill of 1 (5 in
    // us-east-1, 4 in us-west-2); the fleet wants far more.
    let plan = write_plan(dir.path(), 40, 2);
    let out = run(&["apply", &plan, "--sim", &scenario, "--state-dir", state, "--auto-approve"], 2);
    assert!(stdout(&out).contains("9 of 40 nodes (min 2) partial"), "{}", stdout(&out));

    let plan = write_plan(dir.path(), 40, 39);
    let out = run(&["apply", &plan, "--sim", &scenario, "--state-dir", state, "--auto-approve"], 1);
    let text = stdout(&out);
    assert!(text.contains("below min_nodes"), "{text}");
    for zone in ["us-east-1a", "us-east-1f", "us-west-2a", "us-west-2d"] {
        assert!(text.contains(&format!("skipped aws {zone} p5.48xlarge: PartialFill")), "{text}");
    }
}

#[test]
fn a_second_run_gets_a_lock_error_naming_the_holder() {
    use chrono::TimeZone;
    use gpufleet::state::lock::{Holder, StateLock};

    let dir = tempfile::tempdir().unwrap();
    let plan = write_plan(dir.path(), 1, 1);
    let state = dir.path().join("state");
    let since = chrono::Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
    let holder = Holder::this_process("apply", since, std::time::Duration::from_secs(3600 * 24 * 365 * 200));
    let _held = StateLock::acquire("e2e", &state.join("e2e.lock"), holder).unwrap();

    let out = run(&["apply", &plan, "--sim", "--state-dir", state.to_str().unwrap(), "--auto-approve"], 1);
    let err = stderr(&out);
    assert!(err.contains("locked by `apply`"), "{err}");
    assert!(err.contains(&format!("pid {}", std::process::id())), "{err}");
}

#[test]
fn saved_plan_applies_once_and_is_refused_when_stale() {
    let dir = tempfile::tempdir().unwrap();
    let plan = write_plan(dir.path(), 2, 2);
    let state = dir.path().join("state");
    let state = state.to_str().unwrap();
    let saved = dir.path().join("plan.out");
    let saved = saved.to_str().unwrap();

    run(&["plan", &plan, "--sim", "--state-dir", state, "-out", saved], 0);
    run(&["apply", saved, "--sim", "--state-dir", state], 0);
    assert_eq!(json(&run(&["state", "list", "--json", "--state-dir", state], 0)).as_array().unwrap().len(), 2);

    // Applying the same saved plan again: the state moved since.
    let out = run(&["apply", saved, "--sim", "--state-dir", state], 1);
    assert!(stderr(&out).contains("stale"), "{}", stderr(&out));

    // A saved plan whose plan file changed is refused too.
    run(&["plan", &plan, "--sim", "--state-dir", state, "--out", saved], 0);
    write_plan(dir.path(), 3, 3);
    let out = run(&["apply", saved, "--sim", "--state-dir", state], 1);
    assert!(stderr(&out).contains("changed since"), "{}", stderr(&out));
}

#[test]
fn a_saved_plan_fails_over_along_the_chain_it_showed_and_says_which_fallback_it_used() {
    let dir = tempfile::tempdir().unwrap();
    let (plan, scenario, state) = sold_out_east(dir.path());
    let (scenario, state) = (scenario.as_str(), state.as_str());
    let saved = dir.path().join("plan.out");
    let saved = saved.to_str().unwrap();

    let shown = run(&["plan", &plan, "--sim", scenario, "--state-dir", state, "--out", saved], 0);
    assert!(stdout(&shown).contains("if refused, then: aws us-east-1b p5.48xlarge"), "{}", stdout(&shown));
    let out = run(&["apply", saved, "--sim", scenario, "--state-dir", state], 0);
    let text = stdout(&out);
    // us-east-1a and its four sibling zones are sold out: the fifth fallback is us-west-2a.
    assert!(text.contains("used fallback 5 of the saved chain, aws us-west-2a p5.48xlarge"), "{text}");
    let listed = json(&run(&["state", "list", "--json", "--state-dir", state], 0));
    assert!(listed.as_array().unwrap().iter().all(|i| i["zone"] == "us-west-2a"), "{listed}");
}

#[test]
fn a_saved_plan_whose_chain_is_refused_stops_and_creates_nothing_it_did_not_show() {
    let dir = tempfile::tempdir().unwrap();
    let (plan, scenario, state) = sold_out_east(dir.path());
    let (scenario, state) = (scenario.as_str(), state.as_str());
    let saved = dir.path().join("plan.out");

    run(&["plan", &plan, "--sim", scenario, "--state-dir", state, "--out", saved.to_str().unwrap()], 0);
    // Keep only the us-east-1 part of the chain, as if us-west-2 had been
    // short when the plan was made.
    let mut document: Value = serde_json::from_slice(&std::fs::read(&saved).unwrap()).unwrap();
    let chain = document["changeset"]["actions"][0]["fallbacks"].as_array_mut().unwrap();
    chain.retain(|p| p["region"] == "us-east-1");
    assert_eq!(chain.len(), 4);
    std::fs::write(&saved, serde_json::to_vec(&document).unwrap()).unwrap();

    let out = run(&["apply", saved.to_str().unwrap(), "--sim", scenario, "--state-dir", state], 1);
    let text = format!("{}{}", stdout(&out), stderr(&out));
    assert!(text.contains("found no place on the saved chain"), "{text}");
    assert!(text.contains("run `gpufleet plan` again"), "{text}");
    assert_eq!(json(&run(&["state", "list", "--json", "--state-dir", state], 0)), serde_json::json!([]));
    // A new plan looks further, and its apply fills the fleet.
    run(&["apply", &plan, "--sim", scenario, "--state-dir", state, "--auto-approve"], 0);
}

#[test]
fn apply_without_approval_and_without_input_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let plan = write_plan(dir.path(), 1, 1);
    let state = dir.path().join("state");
    let state = state.to_str().unwrap();
    let out = run(&["apply", &plan, "--sim", "--state-dir", state], 1);
    assert!(stderr(&out).contains("--auto-approve"), "{}", stderr(&out));
    assert_eq!(json(&run(&["state", "list", "--json", "--state-dir", state], 0)), serde_json::json!([]));
}

#[test]
fn served_simulator_via_sim_url_round_trip() {
    let server = SimServer::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    let plan = write_plan(dir.path(), 2, 2);
    let state = dir.path().join("state");
    let state = state.to_str().unwrap();
    run(&["apply", &plan, "--sim-url", &server.url, "--state-dir", state, "--auto-approve"], 0);
    run(&["plan", &plan, "--sim-url", &server.url, "--state-dir", state, "--detailed-exitcode"], 0);

    // A fresh state directory adopts what the simulator runs for the plan.
    let other = dir.path().join("other-state");
    let other = other.to_str().unwrap();
    run(&["plan", &plan, "--sim-url", &server.url, "--state-dir", other, "--detailed-exitcode"], 0);

    run(&["destroy", &plan, "--sim-url", &server.url, "--state-dir", state, "--auto-approve"], 0);
    run(&["plan", &plan, "--sim-url", &server.url, "--state-dir", state, "--detailed-exitcode"], 2);
}

#[test]
fn sim_url_off_this_machine_is_refused() {
    // The second named 10.1.2.3 with the user "127.0.0.1" and password "80", and was let through.
    for url in ["http://10.1.2.3:80", "http://127.0.0.1:80@10.1.2.3:5000", "http://u:hunter2@127.0.0.1:5000"] {
        let out = run(&["plan", "plans/demo.toml", "--sim-url", url, "--state-dir", "/nonexistent"], 1);
        let err = stderr(&out);
        assert!(err.contains("not the address of a simulator on this machine"), "{url}: {err}");
        assert!(!err.contains("127.0.0.1:80@") && !err.contains("hunter2"), "{url}: the password is echoed: {err}");
    }
}

/// `--lock-timeout 500000000000y` overflowed the clock it was added to and
/// panicked; every duration flag is now bounded to a year when parsed.
#[test]
fn duration_flags_beyond_a_year_are_usage_errors() {
    let huge = "500000000000y";
    for args in [
        &["plan", "plans/demo.toml", "--sim", "--lock-timeout", huge][..],
        &["apply", "plans/demo.toml", "--sim", "--deadline", huge],
        &["rebalance", "plans/demo.toml", "--sim", "--watch", "--every", "2y"],
        &["sim", "advance", huge],
    ] {
        let out = run(args, 1);
        let err = stderr(&out);
        assert!(err.contains("longer than a year") && !err.contains("panicked"), "{args:?}: {err}");
    }
}

/// `--listen` and `--sim-url` accept the same hosts: a simulator served on
/// IPv6 loopback is reachable at its URL.
#[test]
fn sim_served_on_ipv6_loopback_is_reachable_by_sim_url() {
    let server = SimServer::start(&["--listen", "[::1]:0"]);
    assert!(server.url.starts_with("http://[::1]:"), "{}", server.url);
    let dir = tempfile::tempdir().unwrap();
    let plan = write_plan(dir.path(), 1, 1);
    let state = dir.path().join("state");
    run(&["plan", &plan, "--sim-url", &server.url, "--state-dir", state.to_str().unwrap()], 0);
}

/// A mistyped flag is a usage error: exit 1, never clap's default 2, which
/// `plan --detailed-exitcode` uses for "changes present".
#[test]
fn mistyped_flag_exits_1_not_2() {
    for args in [
        &["plan", "plans/demo.toml", "--sim", "--detailed-exitcod"][..],
        &["plan", "plans/demo.toml", "--detailed-exitcode", "--no-such-flag"],
        &["aply", "plans/demo.toml"],
        &["plan"],
        &[],
    ] {
        let out = run(args, 1);
        let err = stderr(&out);
        assert!(err.contains("error:") || err.contains("Usage:"), "gpufleet {args:?}: no usage message:\n{err}");
        assert!(!err.contains("panicked"), "gpufleet {args:?} panicked:\n{err}");
    }
}

#[test]
fn help_and_version_exit_0_and_help_lists_the_exit_codes() {
    for flag in ["--help", "-h"] {
        let out = run(&[flag], 0);
        let text = stdout(&out);
        assert!(text.contains("Exit codes:"), "{flag}:\n{text}");
        for code in ["0  success", "1  error, usage errors", "2  changes present"] {
            assert!(text.contains(code), "{flag}: no `{code}` in\n{text}");
        }
    }
    let out = run(&["--version"], 0);
    assert!(stdout(&out).starts_with("gpufleet "), "{}", stdout(&out));
    run(&["plan", "--help"], 0);
}

#[test]
fn schema_is_json_describing_the_plan_format() {
    let schema = json(&run(&["schema"], 0));
    let text = schema.to_string();
    for key in ["fleets", "providers", "gpus_per_node", "min_nodes", "residency"] {
        assert!(text.contains(key), "schema lacks {key}");
    }
}

#[test]
fn remembered_shortage_expires_with_simulated_time() {
    let dir = tempfile::tempdir().unwrap();
    let (plan, scenario, state) = sold_out_east(dir.path());
    let (scenario, state) = (scenario.as_str(), state.as_str());

    let fresh = json(&run(&["plan", &plan, "--sim", scenario, "--state-dir", state, "--json"], 0));
    assert_eq!(fresh["actions"][0]["region"], "us-east-1", "nothing is remembered before a refusal");
    run(&["apply", &plan, "--sim", scenario, "--state-dir", state, "--auto-approve"], 0);
    run(&["destroy", &plan, "--sim", scenario, "--state-dir", state, "--auto-approve"], 0);

    let remembered = json(&run(&["plan", &plan, "--sim", scenario, "--state-dir", state, "--json"], 0));
    assert_eq!(remembered["actions"][0]["region"], "us-west-2");
    assert_eq!(remembered["skipped"][0]["code"], "InsufficientInstanceCapacity");

    // The first apply let 15 s pass while its instance was pending.
    let advanced = run(&["sim", "advance", "20m", "--state-dir", state], 0);
    assert!(stdout(&advanced).contains("2026-01-01T00:20:15Z"), "{}", stdout(&advanced));
    let expired = json(&run(&["plan", &plan, "--sim", scenario, "--state-dir", state, "--json"], 0));
    assert_eq!(expired["actions"][0]["region"], "us-east-1");
    assert_eq!(expired["skipped"], serde_json::json!([]));
    run(&["apply", &plan, "--sim", scenario, "--state-dir", state, "--auto-approve"], 0);
    let listed = json(&run(&["state", "list", "--json", "--state-dir", state], 0));
    assert!(listed.as_array().unwrap().iter().all(|i| i["region"] == "us-east-1"), "{listed}");
}

#[test]
fn plan_output_snapshot_on_the_demo_plan() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let out = run(&["plan", "plans/demo.toml", "--sim", "--state-dir", state.to_str().unwrap()], 0);
    insta::assert_snapshot!(stdout(&out));
}

/// The simulator's call counters, as `{cloud: {action: count}}`.
fn counters(url: &str) -> Value {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime
        .block_on(async { reqwest::get(format!("{url}/_sim/counters")).await.unwrap().json::<Value>().await.unwrap() })
}

/// A `gpufleet sim serve` with this scenario, and a plan file and state
/// directory in `dir`: (server, plan path, state dir).
fn served(dir: &Path, scenario: &str, plan_text: &str) -> (SimServer, String, String) {
    let scenario = write_scenario(dir, scenario);
    let server = SimServer::start(&["--scenario", &scenario]);
    let plan = dir.join("served-plan.toml");
    std::fs::write(&plan, plan_text).unwrap();
    let state = dir.join("state");
    (server, plan.to_str().unwrap().to_string(), state.to_str().unwrap().to_string())
}

const TWO_CLOUD_PLAN: &str = r#"
name = "two-clouds"

[providers.aws]
regions = ["us-east-1"]

[providers.gcp]
project = "ml-training-prod"
zones = ["us-central1-a", "us-central1-b"]

[fleets.trainers]
gpu = "H100"
gpus_per_node = 8
nodes = 12
min_nodes = 12
prefer = ["gcp:us-central1-a", "gcp:us-central1-b", "aws:us-east-1"]
image = { aws = "ami-0123456789abcdef0", gcp = "projects/ml-images/global/images/family/trainer" }
labels = { team = "research" }
"#;

#[test]
fn gcp_quota_of_64_gpus_holds_exactly_8_nodes_and_the_rest_fails_over_without_wasted_calls() {
    let dir = tempfile::tempdir().unwrap();
    let quota = "[[quota]]\ncloud = \"gcp\"\nregion = \"us-central1\"\nmetric = \"NVIDIA_H100_GPUS\"\nlimit = 64\n";
    let (server, plan, state) = served(dir.path(), quota, TWO_CLOUD_PLAN);
    let (plan, state) = (plan.as_str(), state.as_str());

    run(&["apply", plan, "--sim-url", &server.url, "--state-dir", state, "--auto-approve"], 0);
    let listed = json(&run(&["state", "list", "--json", "--state-dir", state], 0));
    let listed = listed.as_array().unwrap();
    let on = |cloud: &str| listed.iter().filter(|i| i["cloud"] == cloud).count();
    assert_eq!((on("gcp"), on("aws")), (8, 4), "{listed:?}");
    assert!(listed.iter().filter(|i| i["cloud"] == "gcp").all(|i| i["zone"] == "us-central1-a"));

    // One bulkInsert, sized by the quota read first; nothing spent on us-central1-b.
    let calls = counters(&server.url);
    assert_eq!(calls["gcp"]["instances.bulkInsert"], 1, "{calls}");
    assert_eq!(calls["aws"]["RunInstances"], 1, "{calls}");

    run(&["plan", plan, "--sim-url", &server.url, "--state-dir", state, "--detailed-exitcode"], 0);
    run(&["destroy", plan, "--sim-url", &server.url, "--state-dir", state, "--auto-approve"], 0);
    assert_eq!(json(&run(&["state", "list", "--json", "--state-dir", state], 0)), serde_json::json!([]));
}

const AZURE_PLAN: &str = r#"
name = "azure-quota"

[providers.azure]
subscription = "00000000-0000-0000-0000-000000000000"
resource_group = "gpu-fleets"
regions = ["eastus", "eastus2"]
ssh_public_key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGpufleetTestKeyOnlyForTheSimulator test"

[fleets.trainers]
gpu = "H100"
gpus_per_node = 8
nodes = 4
min_nodes = 4
prefer = ["azure:eastus", "azure:eastus2"]
image = { azure = "Canonical:0001-com-ubuntu-server-jammy:22_04-lts-gen2:latest" }
labels = { team = "research" }
"#;

#[test]
fn azure_family_quota_of_192_vcpus_holds_exactly_2_nodes_and_the_rest_go_elsewhere_without_wasted_calls() {
    let dir = tempfile::tempdir().unwrap();
    let quota =
        "[[quota]]\ncloud = \"azure\"\nregion = \"eastus\"\nmetric = \"standardNDSH100v5Family\"\nlimit = 192\n";
    let (server, plan, state) = served(dir.path(), quota, AZURE_PLAN);
    let (plan, state) = (plan.as_str(), state.as_str());

    run(&["apply", plan, "--sim-url", &server.url, "--state-dir", state, "--auto-approve"], 0);
    let listed = json(&run(&["state", "list", "--json", "--state-dir", state], 0));
    let listed = listed.as_array().unwrap();
    let in_region = |region: &str| listed.iter().filter(|i| i["region"] == region).count();
    assert_eq!((in_region("eastus"), in_region("eastus2")), (2, 2), "{listed:?}");
    assert!(listed.iter().all(|i| i["instance_type"] == "Standard_ND96isr_H100_v5"), "{listed:?}");

    // One create-or-update per region, eastus's sized by the usages read
    // first: no refused scale-out, no PATCH.
    let calls = counters(&server.url);
    assert_eq!(calls["azure"]["VirtualMachineScaleSets_CreateOrUpdate"], 2, "{calls}");
    assert!(calls["azure"].get("VirtualMachineScaleSets_Update").is_none(), "{calls}");
    assert!(calls["azure"]["Usage_List"].as_u64().unwrap() >= 1, "{calls}");

    run(&["plan", plan, "--sim-url", &server.url, "--state-dir", state, "--detailed-exitcode"], 0);
    run(&["destroy", plan, "--sim-url", &server.url, "--state-dir", state, "--auto-approve"], 0);
    assert_eq!(json(&run(&["state", "list", "--json", "--state-dir", state], 0)), serde_json::json!([]));
}

#[test]
fn every_example_plan_validates() {
    for plan in ["plans/demo.toml", "plans/multicloud.toml"] {
        run(&["validate", plan], 0);
    }
}

#[test]
fn three_cloud_crunch_fills_every_fleet_in_one_run() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let state = state.to_str().unwrap();
    let sim = ["--sim", "plans/scenarios/h100-crunch.toml", "--state-dir", state];
    let out = run(&[&["apply", "plans/multicloud.toml", "--auto-approve", "--json"][..], &sim[..]].concat(), 0);
    let events: Vec<Value> = stdout(&out).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let summary = events.last().unwrap();
    assert_eq!(summary["partial"], false, "{summary}");

    let listed = json(&run(&["state", "list", "--json", "--state-dir", state], 0));
    let count = |fleet: &str, cloud: &str, place: &str| {
        listed
            .as_array()
            .unwrap()
            .iter()
            .filter(|i| i["fleet"] == fleet && i["cloud"] == cloud && (i["region"] == place || i["zone"] == place))
            .count()
    };
    // us-east-1 is sold out; the GCP quota holds 8 nodes; Azure eastus has 6; AWS us-west-2 takes the rest.
    assert_eq!(count("trainers", "aws", "us-east-1"), 0);
    assert_eq!(count("trainers", "gcp", "us-central1"), 8);
    assert_eq!(count("trainers", "azure", "eastus"), 6);
    assert_eq!(count("trainers", "aws", "us-west-2"), 2);
    assert_eq!(count("finetune", "gcp", "europe-west4-a"), 4);

    // The quota was read before creating: us-central1-b got no call at all.
    let attempts: Vec<&Value> = events.iter().filter(|e| e["event"] == "attempt").collect();
    assert!(attempts.iter().all(|e| e["placement"]["zone"] != "us-central1-b"), "{attempts:?}");

    run(&[&["plan", "plans/multicloud.toml", "--detailed-exitcode"][..], &sim[..]].concat(), 0);
    run(&[&["destroy", "plans/multicloud.toml", "--auto-approve"][..], &sim[..]].concat(), 0);
    assert_eq!(json(&run(&["state", "list", "--json", "--state-dir", state], 0)), serde_json::json!([]));
}

#[test]
fn pack_that_no_zone_can_hold_fails_cleanly_naming_every_offering_and_leaves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    // Every zone of both regions holds 2 p5.48xlarge; the fleet needs 4 together.
    let scenario = write_scenario(
        dir.path(),
        r#"
[[offering]]
cloud = "aws"
region = "us-east-1"
instance_type = "p5.48xlarge"
capacity = 2
[[offering]]
cloud = "aws"
region = "us-west-2"
instance_type = "p5.48xlarge"
capacity = 2
"#,
    );
    let plan = dir.path().join("pack.toml");
    std::fs::write(
        &plan,
        H100_PLAN.replace("MIN_NODES", "4").replace("NODES", "4").replace("prefer =", "placement = \"pack\"\nprefer ="),
    )
    .unwrap();
    let plan = plan.to_str().unwrap();
    let state = dir.path().join("state");
    let state = state.to_str().unwrap();

    let out = run(&["apply", plan, "--sim", &scenario, "--state-dir", state, "--auto-approve"], 1);
    let text = stdout(&out);
    assert!(text.contains("0 of 4 nodes (min 4) below min_nodes"), "{text}");
    for zone in ["us-east-1a", "us-east-1b", "us-east-1c", "us-east-1d", "us-east-1f", "us-west-2a", "us-west-2d"] {
        assert!(text.contains(&format!("tried aws {zone} p5.48xlarge: InsufficientInstanceCapacity")), "{text}");
    }
    assert_eq!(json(&run(&["state", "list", "--json", "--state-dir", state], 0)), serde_json::json!([]));
}

const AZURE_PACK_PLAN: &str = r#"
name = "azure-pack"

[providers.azure]
subscription = "00000000-0000-0000-0000-0000000000bb"
resource_group = "gpu-fleets"
regions = ["eastus", "eastus2"]
ssh_public_key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAzurePackTestKey test@example"

[fleets.serving]
gpu = "H100"
gpus_per_node = 8
nodes = 3
placement = "pack"
prefer = ["azure:eastus", "azure:eastus2"]
image = { azure = "Canonical:0001-com-ubuntu-server-jammy:22_04-lts-gen2:latest" }
"#;

#[test]
fn azure_pack_below_min_nodes_is_released_and_the_next_region_is_tried() {
    let dir = tempfile::tempdir().unwrap();
    let two_left = "[[offering]]\ncloud = \"azure\"\nregion = \"eastus\"\ninstance_type = \"Standard_ND96isr_H100_v5\"\ncapacity = 2\n";
    let (server, plan, state) = served(dir.path(), two_left, AZURE_PACK_PLAN);
    let (plan, state) = (plan.as_str(), state.as_str());

    let out = run(&["apply", plan, "--sim-url", &server.url, "--state-dir", state, "--auto-approve"], 0);
    let text = format!("{}{}", stdout(&out), stderr(&out));
    assert!(text.contains("deleted 2 at azure eastus Standard_ND96isr_H100_v5"), "{text}");

    let listed = json(&run(&["state", "list", "--json", "--state-dir", state], 0));
    let regions: Vec<&str> = listed.as_array().unwrap().iter().map(|i| i["region"].as_str().unwrap()).collect();
    assert_eq!(regions, ["eastus2"; 3], "{listed}");

    // What was created in eastus for the failed attempt is gone from the cloud too.
    let world = tokio::runtime::Runtime::new().unwrap().block_on(async {
        reqwest::get(format!("{}/_sim/world", server.url)).await.unwrap().json::<Value>().await.unwrap()
    });
    let vms: Vec<&str> =
        world["azure_vms"].as_array().unwrap().iter().map(|v| v["location"].as_str().unwrap_or("?")).collect();
    assert!(vms.iter().all(|l| *l == "eastus2") && vms.len() == 3, "{vms:?}");
}

#[test]
fn a_held_lock_fails_at_once_or_is_waited_for_with_lock_timeout() {
    use std::io::BufRead;
    let dir = tempfile::tempdir().unwrap();
    let plan = dir.path().join("home.toml");
    std::fs::write(&plan, common::home_plan("home")).unwrap();
    let (plan, state) = (plan.to_str().unwrap(), dir.path().join("state"));
    let state = state.to_str().unwrap();
    common::run(&["apply", plan, "--sim", "--auto-approve", "--state-dir", state], 0);

    // Another run holds the plan: this test process, through the state backend.
    let runtime = tokio::runtime::Runtime::new().unwrap();
    // On one host the held `flock` decides, whatever the times say.
    let since = chrono::DateTime::parse_from_rfc3339("2026-01-01T00:00:00Z").unwrap().to_utc();
    let holder = gpufleet::state::lock::Holder::this_process(
        "apply (held by the test)",
        since,
        std::time::Duration::from_secs(600),
    );
    let backend = gpufleet::state::LocalBackend::new(state);
    let held = runtime.block_on(gpufleet::state::StateBackend::lock(&backend, "home", holder)).unwrap();

    let refused = common::run(&["plan", plan, "--sim", "--state-dir", state], 1);
    assert!(stderr(&refused).contains("locked by `apply (held by the test)`"), "{}", stderr(&refused));

    let mut waiting = std::process::Command::new(common::bin())
        .args(["plan", plan, "--sim", "--state-dir", state, "--lock-timeout", "1m"])
        .env("NO_COLOR", "1")
        .env_remove("GPUFLEET_SIM_URL")
        .env_remove("GPUFLEET_STATE_DIR")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let (send, lines) = std::sync::mpsc::channel();
    let err = waiting.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(err).lines().map_while(Result::ok) {
            let _ = send.send(line);
        }
    });
    // The bound only keeps a broken build from hanging the suite.
    let first = lines.recv_timeout(std::time::Duration::from_secs(60)).unwrap();
    assert!(first.starts_with("waiting up to 1m for the lock:"), "{first}");
    drop(held);
    let status = waiting.wait().unwrap();
    assert_eq!(status.code(), Some(0), "the waiting run goes on once the lock is free");
}

/// A served world where p5.48xlarge is sold out in every zone of us-east-1,
/// and a plan of `nodes` H100 trainers preferring it, with us-west-2 as well.
fn us_east_1_sold_out(dir: &Path, nodes: u32) -> (SimServer, String, String) {
    let sold_out =
        "[[offering]]\ncloud = \"aws\"\nregion = \"us-east-1\"\ninstance_type = \"p5.48xlarge\"\ncapacity = 0\n";
    let plan_text = format!(
        r#"
name = "big"

[providers.aws]
regions = ["us-east-1", "us-west-2"]

[fleets.trainers]
gpu = "H100"
gpus_per_node = 8
nodes = {nodes}
prefer = ["aws:us-east-1"]
image = {{ aws = "ami-0123456789abcdef0" }}
"#
    );
    served(dir, sold_out, &plan_text)
}

/// 1,500 nodes at one placement are two creates (1,000 and 500), one call
/// each. Where the preferred zones are sold out, a first part's refusal
/// answers the second without a call, and both fail over. Destroying them
/// is two TerminateInstances of 1,000 and 500.
#[test]
fn a_create_past_the_per_call_limit_is_split_and_one_refusal_costs_one_call() {
    let dir = tempfile::tempdir().unwrap();
    let (server, plan, state) = us_east_1_sold_out(dir.path(), 1500);
    let (plan, state) = (plan.as_str(), state.as_str());
    let shown = run(&["plan", plan, "--sim-url", &server.url, "--state-dir", state], 0);
    let text = stdout(&shown);
    assert_eq!(text.matches("+1000").count(), 1, "{text}");
    assert_eq!(text.matches("+500").count(), 1, "{text}");

    let out = run(&["apply", plan, "--sim-url", &server.url, "--state-dir", state, "--auto-approve"], 0);
    let listed = json(&run(&["state", "list", "--json", "--state-dir", state], 0));
    let listed = listed.as_array().unwrap();
    assert_eq!(listed.len(), 1500, "{}", stdout(&out));
    assert!(listed.iter().all(|i| i["region"] == "us-west-2"));
    let calls = counters(&server.url);
    // us-east-1 sells p5.48xlarge in five zones (a, b, c, d, f): one refused
    // call each, where two would have gone without the shortcut; then two in us-west-2.
    assert_eq!(calls["aws"]["RunInstances"], 5 + 2, "{calls}");

    // Deletes go 1,000 ids to a TerminateInstances call.
    run(&["destroy", plan, "--sim-url", &server.url, "--state-dir", state, "--auto-approve"], 0);
    assert_eq!(counters(&server.url)["aws"]["TerminateInstances"], 2);
}

/// The human output of a 1,000-node apply that fails over through five sold
/// out zones: one line per event, three ids and a count, each refusal as
/// the cloud's code and its first sentence, and a table per fleet and
/// placement at the end. `-v` names every id.
#[test]
fn a_thousand_node_apply_reads_in_a_screen() {
    let dir = tempfile::tempdir().unwrap();
    let (server, plan, state) = us_east_1_sold_out(dir.path(), 1000);
    let out = run(&["apply", &plan, "--sim-url", &server.url, "--state-dir", &state, "--auto-approve"], 0);
    let text = format!("{}\n---- stderr ----\n{}", stdout(&out), stderr(&out));
    assert!(text.lines().all(|line| line.chars().count() < 200), "{text}");
    insta::with_settings!({ filters => vec![(r"i-[0-9a-f]{17}", "i-[id]")] }, {
        insta::assert_snapshot!(text);
    });

    let destroyed =
        run(&["destroy", &plan, "--sim-url", &server.url, "--state-dir", &state, "--auto-approve", "-v"], 0);
    let ids = regex::Regex::new(r"i-[0-9a-f]{17}").unwrap();
    assert_eq!(ids.find_iter(&stderr(&destroyed)).count(), 1000, "-v names every id deleted");
}
