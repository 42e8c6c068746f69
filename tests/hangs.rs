//! Hangs: a cloud call that never answers neither holds a run forever nor
//! keeps SIGINT from stopping it.
//!
//! The simulator's pause hook (`/_sim/pause`) holds the run's RunInstances
//! (call 3: call 1 is the DescribeInstances of the refresh, call 2 the
//! quota pre-check's GetServiceQuota) without ever
//! answering it. With `--call-timeout`, every attempt times out and the run
//! ends with an error naming the call; with SIGINT, the run abandons the
//! call, keeps its intent open, releases its lock and exits, and the next
//! apply completes with no duplicate and no orphan. No test sleeps: waits
//! are the product's own timeouts, or channels with generous bounds that
//! fail the test rather than hang it.

mod common;

use common::{Admin, SimServer, command, home_plan, state_ids, stderr, stdout, world_ids};
use serde_json::json;
use std::path::Path;
use std::process::Output;
use std::time::{Duration, Instant};

const PLAN: &str = "hangs";

/// The run's RunInstances: call 1 is the refresh's DescribeInstances, call 2
/// the quota pre-check's GetServiceQuota (no applied value in the default
/// world), call 3 the AMI's root device (DescribeImages) for the boot disk.
const RUN_INSTANCES: u64 = 4;

/// The home plan, in one region, so that its calls come in a known order.
fn plan_file(dir: &Path) -> String {
    let path = dir.join("plan.toml");
    let text = home_plan(PLAN)
        .replace(r#"regions = ["us-east-1", "us-west-2"]"#, r#"regions = ["us-east-1"]"#)
        .replace(r#"prefer = ["aws:us-east-1", "aws:us-west-2"]"#, r#"prefer = ["aws:us-east-1"]"#);
    std::fs::write(&path, text).unwrap();
    path.to_str().unwrap().to_string()
}

fn args<'a>(verb: &'a str, plan: &'a str, sim: &'a SimServer, state: &'a Path, extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec![verb, plan, "--sim-url", &sim.url, "--state-dir", state.to_str().unwrap(), "--auto-approve"];
    args.extend(extra);
    args
}

fn show(out: &Output) -> String {
    format!("exit {:?}\nstdout:\n{}\nstderr:\n{}", out.status.code(), stdout(out), stderr(out))
}

/// Starts `gpufleet ARGS`, its output captured.
fn spawn(args: &[&str]) -> std::process::Child {
    let piped = std::process::Stdio::piped;
    command(args).stdout(piped()).stderr(piped()).spawn().unwrap()
}

/// The child's output, failing the test (not hanging it) if it has not
/// exited within `bound`.
fn exited_within(child: std::process::Child, bound: Duration, what: &str) -> Output {
    let (exited, exit) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = exited.send(child.wait_with_output());
    });
    exit.recv_timeout(bound).unwrap_or_else(|_| panic!("{what}: gpufleet did not exit within {bound:?}")).unwrap()
}

/// The next apply finishes, and the state names exactly what the cloud runs.
fn next_apply_completes(plan: &str, sim: &SimServer, admin: &Admin, state: &Path) {
    let out = command(&args("apply", plan, sim, state, &[])).output().unwrap();
    assert!(out.status.success(), "{}", show(&out));
    let world = world_ids(&admin.get("/_sim/world"), PLAN);
    assert_eq!(world["trainers"].len(), 4, "no duplicate: {world:?}");
    assert_eq!(world, state_ids(state), "no orphan: the state names what the cloud runs");
}

#[test]
fn a_call_that_never_answers_times_out_is_retried_and_fails_naming_the_call() {
    let sim = SimServer::start(&[]);
    let admin = Admin::new(&sim.url);
    let dir = tempfile::tempdir().unwrap();
    let (plan, state) = (plan_file(dir.path()), dir.path().join("state"));
    // Every attempt of RunInstances (the first and its five retries) is held.
    admin.post("/_sim/pause", json!({ "at_call": RUN_INSTANCES, "when": "before", "calls": 6 }));
    let timeouts = ["--call-timeout", "1s", "--retry-base-ms", "1"];
    // Six attempts of 1 s each, and next to no backoff: well within a minute.
    let out = exited_within(spawn(&args("apply", &plan, &sim, &state, &timeouts)), Duration::from_secs(60), "apply");
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    assert!(
        stdout(&out).contains("aws us-east-1: Timeout: RunInstances got no answer within 1s (attempt 6 of 6)"),
        "{}",
        show(&out)
    );
    let released = admin.post("/_sim/resume", json!({}));
    assert_eq!(released["calls_counted"], json!(RUN_INSTANCES + 5), "each attempt was sent: {released}");
    next_apply_completes(&plan, &sim, &admin, &state);
}

#[test]
fn sigint_stops_a_run_whose_call_never_answers_and_the_next_apply_completes_it() {
    // `before`: the held create never reaches the cloud; `after`: it did
    // launch the nodes, and only its answer is lost.
    for when in ["before", "after"] {
        let sim = SimServer::start(&[]);
        let admin = Admin::new(&sim.url);
        let dir = tempfile::tempdir().unwrap();
        let (plan, state) = (plan_file(dir.path()), dir.path().join("state"));
        admin.post("/_sim/pause", json!({ "at_call": RUN_INSTANCES, "when": when }));
        let child = spawn(&args("apply", &plan, &sim, &state, &[]));
        let pid = child.id();
        let held = admin.get("/_sim/paused");
        assert_eq!(held["action"], json!("ec2 RunInstances"), "{when}: {held}");

        let signalled = Instant::now();
        // SAFETY: kill(2) on the pid of the child this test spawned and has not reaped.
        assert_eq!(unsafe { libc::kill(pid as libc::pid_t, libc::SIGINT) }, 0);
        let out = exited_within(child, Duration::from_secs(30), when);
        println!("{when}: exited {:?} after SIGINT", signalled.elapsed());
        assert_eq!(out.status.code(), Some(1), "{when}: {}", show(&out));
        assert!(stderr(&out).contains("stopping (interrupted)"), "{when}: {}", show(&out));
        assert!(stdout(&out).contains("interrupted:"), "{when}: {}", show(&out));

        // The abandoned create's intent is open, and the lock is free: `plan` runs and says so.
        let planned = command(&args("plan", &plan, &sim, &state, &[])[..6]).output().unwrap();
        assert!(planned.status.success(), "{when}: {}", show(&planned));
        assert!(
            stdout(&planned).contains("1 call(s) of an interrupted run are reconciled"),
            "{when}: {}",
            show(&planned)
        );

        admin.post("/_sim/resume", json!({}));
        next_apply_completes(&plan, &sim, &admin, &state);
    }
}
