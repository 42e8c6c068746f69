//! Crash safety: `gpufleet apply` killed with SIGKILL at any cloud call is
//! completed by the next run, with no duplicate and no orphan instance.
//!
//! Kill points are chosen by call, not by time: the simulator's pause hook
//! (`/_sim/pause`) holds the N-th cloud request of the run, before it is
//! applied or after it is applied but before its response; the test learns
//! of the hold from the `/_sim/paused` long poll, kills the apply, releases
//! the request, runs apply again, and compares what the state lists with
//! what the three simulated clouds hold. Trials come from a fixed seed (set
//! `CRASH_SAFETY_SEED` to explore others) and alternate the plan's node
//! counts, so half of them kill scale-ups and half kill scale-downs.
//!
//! The rerun starts while the killed apply is still an unreaped zombie: the
//! kernel has released its `flock`, and the next run must take the lock over
//! without any cleanup.
//!
//! `gpufleet rebalance` is killed the same way in the middle of a move
//! (make-before-break: create the new nodes, drain and delete the old ones):
//! the next round completes the move when its new nodes run (deleting exactly
//! the old nodes the journal names, no others) and rolls it back otherwise,
//! with the counts each kill point implies.

mod common;

use common::{Admin, SimServer, admin_get, gpufleet, stderr, stdout};
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;

const PLAN: &str = "crash";
const CALIBRATION_PLAN: &str = "crash-calibration";
const DEFAULT_SEED: u64 = 0x6b11_1ed5_a7e5_0001;
const TRIALS: usize = 60;

/// p5.48xlarge: one node per zone of us-east-1, so that three nodes take
/// several RunInstances calls (partial fills, then the next zone).
const SCENARIO: &str = r#"
start = "2026-01-01T00:00:00Z"

[[offering]]
cloud = "aws"
region = "us-east-1"
instance_type = "p5.48xlarge"
capacity = 1
"#;

/// Nodes per fleet in one version of the plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FleetSizes {
    aws: u32,
    gcp: u32,
    azure: u32,
}

impl FleetSizes {
    fn by_fleet(self) -> BTreeMap<String, usize> {
        BTreeMap::from([
            ("trainers".to_string(), self.aws as usize),
            ("finetune".to_string(), self.gcp as usize),
            ("serving".to_string(), self.azure as usize),
        ])
    }
}

const LARGE: FleetSizes = FleetSizes { aws: 3, gcp: 2, azure: 2 };
const SMALL: FleetSizes = FleetSizes { aws: 1, gcp: 1, azure: 1 };
/// Simulated time between trials: past the plan's shortage_ttl, so that a
/// zone remembered as full is tried again once a scale-down freed it.
const BETWEEN_TRIALS: &str = "10m";

fn plan_text(name: &str, sizes: FleetSizes) -> String {
    format!(
        r#"
name = "{name}"
shortage_ttl = "5m"

[providers.aws]
regions = ["us-east-1"]

[providers.gcp]
project = "ml-training-prod"
zones = ["us-central1-a"]

[providers.azure]
subscription = "00000000-0000-0000-0000-0000000000aa"
resource_group = "gpu-fleets"
regions = ["eastus"]
ssh_public_key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGpufleetCrashSafety crash@test"

[fleets.trainers]
gpu = "H100"
gpus_per_node = 8
nodes = {aws}
prefer = ["aws"]
image = {{ aws = "ami-0123456789abcdef0" }}

[fleets.finetune]
gpu = "H100"
gpus_per_node = 8
nodes = {gcp}
prefer = ["gcp"]
image = {{ gcp = "projects/ml-images/global/images/family/trainer" }}

[fleets.serving]
gpu = "H100"
gpus_per_node = 8
nodes = {azure}
prefer = ["azure"]
image = {{ azure = "Canonical:0001-com-ubuntu-server-jammy:22_04-lts-gen2:latest" }}
"#,
        aws = sizes.aws,
        gcp = sizes.gcp,
        azure = sizes.azure,
    )
}

/// SplitMix64: a tiny deterministic generator, enough to pick kill points.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform enough in `1..=max` for test coverage.
    fn one_to(&mut self, max: u64) -> u64 {
        1 + self.next() % max
    }
}

/// The simulator's admin API, called from blocking test code.
/// Blocks until `pid` has exited, leaving it unreaped (a zombie): its
/// descriptors, and so its `flock`, are released, its pid still taken.
fn wait_for_exit_without_reaping(pid: u32) {
    let pid = libc::id_t::from(pid);
    loop {
        // SAFETY: waitid writes only into the siginfo we own; WNOWAIT leaves the child waitable.
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        let rc = unsafe { libc::waitid(libc::P_PID, pid, &mut info, libc::WEXITED | libc::WNOWAIT) };
        if rc == 0 {
            return;
        }
        let err = std::io::Error::last_os_error();
        assert_eq!(err.kind(), std::io::ErrorKind::Interrupted, "waitid({pid}): {err}");
    }
}

/// Where one plan's files are.
struct Workspace {
    plan_file: PathBuf,
    state_dir: PathBuf,
    logs: PathBuf,
}

impl Workspace {
    fn new(root: &Path, plan: &str) -> Workspace {
        let dir = root.join(plan);
        std::fs::create_dir_all(dir.join("logs")).unwrap();
        Workspace { plan_file: dir.join("plan.toml"), state_dir: dir.join("state"), logs: dir.join("logs") }
    }

    fn write_plan(&self, text: &str) {
        std::fs::write(&self.plan_file, text).unwrap();
    }

    fn args<'a>(&'a self, command: &'a str, sim_url: &'a str) -> Vec<&'a str> {
        vec![
            command,
            self.plan_file.to_str().unwrap(),
            "--sim-url",
            sim_url,
            "--state-dir",
            self.state_dir.to_str().unwrap(),
            "--auto-approve",
        ]
    }

    /// Runs `gpufleet COMMAND` to the end and insists on exit 0.
    fn run_to_completion(&self, command: &str, sim_url: &str, context: &str) -> String {
        let out = gpufleet(&self.args(command, sim_url));
        assert!(
            out.status.success(),
            "{context}: gpufleet {command} exited {:?}\nstdout:\n{}\nstderr:\n{}",
            out.status.code(),
            stdout(&out),
            stderr(&out)
        );
        stdout(&out)
    }

    /// Starts `gpufleet COMMAND` in the background, its output in `logs/`.
    fn spawn(&self, command: &str, sim_url: &str, trial: usize) -> Child {
        let log = |stream: &str| File::create(self.logs.join(format!("trial-{trial:02}.{stream}"))).unwrap();
        Command::new(common::bin())
            .args(self.args(command, sim_url))
            .current_dir(common::repo())
            .env("NO_COLOR", "1")
            .env_remove("GPUFLEET_SIM_URL")
            .env_remove("GPUFLEET_STATE_DIR")
            .stdin(Stdio::null())
            .stdout(log("stdout"))
            .stderr(log("stderr"))
            .spawn()
            .unwrap_or_else(|e| panic!("gpufleet {command} does not start: {e}"))
    }

    fn killed_run_output(&self, trial: usize) -> String {
        let read = |stream: &str| std::fs::read_to_string(self.logs.join(format!("trial-{trial:02}.{stream}")));
        format!("killed run stdout:\n{}\nkilled run stderr:\n{}", read("stdout").unwrap(), read("stderr").unwrap())
    }

    /// Instance ids by fleet, as `gpufleet state list --json` reports them.
    fn state_ids(&self) -> BTreeMap<String, Vec<String>> {
        common::state_ids(&self.state_dir)
    }

    fn open_intents(&self, plan: &str) -> usize {
        let journal = self.state_dir.join(format!("{plan}.journal.jsonl"));
        gpufleet::state::journal::open_intents_of(gpufleet::state::journal::Journal::entries(&journal).unwrap()).len()
    }
}

/// Where a trial's apply stopped.
#[derive(Debug)]
enum KillPoint {
    /// Killed while the simulator held this request.
    Held { call: u64, when: String, action: String },
    /// The command made fewer calls than the pause waited for and finished.
    Finished { calls: u64 },
}

/// The first of: the simulator holds a request, or the command exits.
enum FirstEvent {
    Held(Value),
    Exited,
}

/// Runs `gpufleet COMMAND` with a pause armed at `at_call`, kills it when
/// the pause holds a request, and releases the request once it is dead.
fn killed_at(
    admin: &Admin,
    work: &Workspace,
    command: &str,
    trial: usize,
    at_call: u64,
    when: &str,
) -> (KillPoint, Child) {
    admin.post("/_sim/pause", json!({ "at_call": at_call, "when": when }));
    let mut child = work.spawn(command, &admin.url, trial);
    let pid = child.id();
    let (events, first) = mpsc::channel();
    let poll = admin.runtime.spawn({
        let (events, url) = (events.clone(), format!("{}/_sim/paused", admin.url));
        async move {
            let paused = admin_get(url).await;
            if paused["paused"] == json!(true) {
                let _ = events.send(FirstEvent::Held(paused.clone()));
            }
            paused
        }
    });
    let exit_watch = std::thread::spawn(move || {
        wait_for_exit_without_reaping(pid);
        let _ = events.send(FirstEvent::Exited);
    });
    let point = match first.recv().expect("one of the watchers reports") {
        FirstEvent::Held(paused) => {
            child.kill().expect("SIGKILL the command");
            exit_watch.join().unwrap();
            // The killed command's request is still held: the world must answer meanwhile.
            assert!(admin.get("/_sim/world")["instances"].is_array());
            let resumed = admin.post("/_sim/resume", json!({}));
            assert_eq!(resumed["released"]["call"], paused["call"], "{resumed}");
            KillPoint::Held {
                call: paused["call"].as_u64().unwrap(),
                when: paused["when"].as_str().unwrap().to_string(),
                action: paused["action"].as_str().unwrap().to_string(),
            }
        }
        FirstEvent::Exited => {
            exit_watch.join().unwrap();
            let resumed = admin.post("/_sim/resume", json!({}));
            let paused = admin.runtime.block_on(poll).unwrap();
            assert_eq!(paused, json!({ "paused": false }), "{command} exited while a request was held");
            let status = child.wait().unwrap();
            assert!(
                status.success(),
                "trial {trial}: the unkilled {command} failed ({status})\n{}",
                work.killed_run_output(trial)
            );
            KillPoint::Finished { calls: resumed["calls_counted"].as_u64().unwrap() }
        }
    };
    (point, child)
}

/// Cloud calls of uninterrupted applies, by what they change: kill points
/// are drawn within the run they interrupt.
#[derive(Debug, Clone, Copy)]
struct CallCounts {
    nothing_to_large: u64,
    large_to_small: u64,
    small_to_large: u64,
}

impl CallCounts {
    fn of_trial(&self, trial: usize) -> u64 {
        match trial {
            0 => self.nothing_to_large,
            t if t.is_multiple_of(2) => self.small_to_large,
            _ => self.large_to_small,
        }
    }
}

/// Measures each kind of run on a plan of its own, with a pause armed
/// beyond reach, then destroys that plan.
fn calibrate(admin: &Admin, root: &Path) -> CallCounts {
    let work = Workspace::new(root, CALIBRATION_PLAN);
    let measure = |sizes: FleetSizes| {
        work.write_plan(&plan_text(CALIBRATION_PLAN, sizes));
        admin.post("/_sim/pause", json!({ "at_call": u64::MAX, "when": "before" }));
        work.run_to_completion("apply", &admin.url, &format!("calibration to {sizes:?}"));
        let calls = admin.post("/_sim/resume", json!({}))["calls_counted"].as_u64().unwrap();
        let counts: BTreeMap<String, usize> = work.state_ids().into_iter().map(|(f, ids)| (f, ids.len())).collect();
        assert_eq!(counts, sizes.by_fleet(), "calibration to {sizes:?}");
        admin.post("/_sim/advance", json!({ "by": BETWEEN_TRIALS }));
        calls
    };
    let counts =
        CallCounts { nothing_to_large: measure(LARGE), large_to_small: measure(SMALL), small_to_large: measure(LARGE) };
    work.run_to_completion("destroy", &admin.url, "calibration");
    assert!(common::world_ids(&admin.get("/_sim/world"), CALIBRATION_PLAN).is_empty(), "calibration plan destroyed");
    counts
}

#[test]
fn apply_killed_at_any_cloud_call_is_completed_by_the_next_run_without_duplicates_or_orphans() {
    let seed = std::env::var("CRASH_SAFETY_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(DEFAULT_SEED);
    println!("crash safety: seed {seed} (set CRASH_SAFETY_SEED to replay another), {TRIALS} trials");
    let dir = tempfile::tempdir().unwrap();
    let scenario = dir.path().join("scenario.toml");
    std::fs::write(&scenario, SCENARIO).unwrap();
    let sim = SimServer::start(&["--scenario", scenario.to_str().unwrap()]);
    let admin = Admin::new(&sim.url);
    let calls = calibrate(&admin, dir.path());
    println!("cloud calls of uninterrupted applies: {calls:?}; LARGE = {LARGE:?}, SMALL = {SMALL:?}");

    let work = Workspace::new(dir.path(), PLAN);
    let mut random = SplitMix64(seed);
    let mut points = Vec::new();
    for trial in 0..TRIALS {
        let sizes = if trial.is_multiple_of(2) { LARGE } else { SMALL };
        work.write_plan(&plan_text(PLAN, sizes));
        let at_call = random.one_to(calls.of_trial(trial));
        let when = if random.next().is_multiple_of(2) { "before" } else { "after" };
        let (point, mut killed) = killed_at(&admin, &work, "apply", trial, at_call, when);

        // The killed apply is a zombie until `wait` below: dead, its flock released, its pid still taken.
        let context = format!("trial {trial} ({sizes:?}, {point:?})\n{}", work.killed_run_output(trial));
        work.run_to_completion("apply", &admin.url, &context);
        killed.wait().unwrap();

        let in_state = work.state_ids();
        let in_clouds = common::world_ids(&admin.get("/_sim/world"), PLAN);
        let counts: BTreeMap<String, usize> = in_state.iter().map(|(fleet, ids)| (fleet.clone(), ids.len())).collect();
        assert_eq!(counts, sizes.by_fleet(), "{context}: the state does not hold the desired count per fleet");
        for (fleet, ids) in &in_clouds {
            let mut unique = ids.clone();
            unique.dedup();
            assert_eq!(&unique, ids, "{context}: fleet {fleet} has duplicate ids in the clouds");
        }
        assert_eq!(in_clouds, in_state, "{context}: the clouds' tagged instances differ from the state (orphans?)");
        assert_eq!(work.open_intents(PLAN), 0, "{context}: the rerun left intents open in the journal");
        println!("trial {trial:2}: {sizes:?} killed at {point:?}; after the rerun {counts:?}, clouds = state");
        points.push(point);
        admin.post("/_sim/advance", json!({ "by": BETWEEN_TRIALS }));
    }

    let mut covered: BTreeMap<(u64, &str), Vec<&str>> = BTreeMap::new();
    let mut finished = Vec::new();
    for point in &points {
        match point {
            KillPoint::Held { call, when, action } => covered.entry((*call, when.as_str())).or_default().push(action),
            KillPoint::Finished { calls } => finished.push(*calls),
        }
    }
    println!("kill points covered (call, when): actions held there");
    for ((call, when), actions) in &covered {
        println!("  {call:2} {when:6}: {}", actions.join(" | "));
    }
    println!("{} of {TRIALS} trials finished before their kill point, after {finished:?} calls", finished.len());
    assert!(finished.len() * 4 <= TRIALS, "too few trials reached their kill point: {points:?}");
    // Operation waits are POSTs too, but change nothing.
    let mutating = |action: &str| {
        !action.ends_with("/wait")
            && ["RunInstances", "TerminateInstances", " POST ", " PUT ", " PATCH ", " DELETE "]
                .iter()
                .any(|m| action.contains(m))
    };
    for when in ["before", "after"] {
        assert!(
            covered.iter().any(|((_, w), actions)| *w == when && actions.iter().any(|a| mutating(a))),
            "no trial killed the apply {when} a mutating call: {covered:?}"
        );
    }
}

/// What a run killed right after a TerminateInstances went through leaves:
/// the instance is gone from the cloud, the state still names it, and the
/// journal holds the delete's intent without an outcome. The next run finds
/// nothing to do, and must still record what its refresh found.
#[test]
fn a_rerun_with_nothing_left_to_do_records_the_refresh_and_closes_open_intents() {
    use gpufleet::state::journal::{Entry, Event, Journal};

    let dir = tempfile::tempdir().unwrap();
    let sim = SimServer::start(&[]);
    let admin = Admin::new(&sim.url);
    let work = Workspace::new(dir.path(), PLAN);
    work.write_plan(&plan_text(PLAN, FleetSizes { aws: 2, gcp: 1, azure: 1 }));
    work.run_to_completion("apply", &sim.url, "first apply");
    let before = work.state_ids();
    let doomed = before["trainers"][0].clone();

    let terminate = format!("Action=TerminateInstances&Version=2016-11-15&InstanceId.1={doomed}");
    let status = admin.runtime.block_on(async {
        reqwest::Client::new()
            .post(&sim.url)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(terminate)
            .send()
            .await
            .unwrap()
            .status()
    });
    assert!(status.is_success(), "TerminateInstances: {status}");
    let intent = Entry {
        at: chrono::DateTime::UNIX_EPOCH,
        run: "killed-run".into(),
        token: "token-of-the-killed-terminate".into(),
        event: Event::DeleteIntent {
            fleet: "trainers".into(),
            placement: gpufleet::model::Placement {
                cloud: gpufleet::model::Cloud::Aws,
                region: "us-east-1".into(),
                zone: None,
                instance_type: "p5.48xlarge".into(),
            },
            instance_ids: vec![doomed.clone()],
            replaced_by: Vec::new(),
        },
    };
    Journal::open(&work.state_dir.join(format!("{PLAN}.journal.jsonl"))).unwrap().append(&intent).unwrap();
    assert_eq!(work.open_intents(PLAN), 1);

    work.write_plan(&plan_text(PLAN, FleetSizes { aws: 1, gcp: 1, azure: 1 }));
    let out = work.run_to_completion("apply", &sim.url, "rerun");
    assert!(out.contains("No changes"), "{out}");
    let after = work.state_ids();
    assert!(
        !after["trainers"].contains(&doomed),
        "the state still names {doomed}, which the cloud terminated: {after:?}"
    );
    assert_eq!(after, common::world_ids(&admin.get("/_sim/world"), PLAN));
    assert_eq!(work.open_intents(PLAN), 0, "the killed run's intent is still open");
}

/// Runs `gpufleet apply` with a pause armed at `at_call`; once a request is
/// held, sends `signal` and waits until the apply says it is stopping, then
/// releases the request. Returns the exit code and the output.
fn apply_stopped_while_held(
    admin: &Admin,
    work: &Workspace,
    at_call: u64,
    when: &str,
    signal: libc::c_int,
) -> (Option<i32>, String) {
    admin.post("/_sim/pause", json!({ "at_call": at_call, "when": when }));
    let mut apply = Command::new(common::bin())
        .args(work.args("apply", &admin.url))
        .current_dir(common::repo())
        .env("NO_COLOR", "1")
        .env_remove("GPUFLEET_SIM_URL")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("gpufleet apply starts");
    let held = admin.get("/_sim/paused");
    assert_eq!(held["paused"], json!(true), "{held}");
    // SAFETY: signalling our own child, which is alive (it has a request held).
    assert_eq!(unsafe { libc::kill(apply.id() as libc::pid_t, signal) }, 0);
    // Release the held request only once the apply says it is stopping, so
    // its stop flag is set before it could start another call.
    let mut stderr_lines = BufReader::new(apply.stderr.take().unwrap()).lines();
    let mut seen = Vec::new();
    for line in stderr_lines.by_ref() {
        let line = line.unwrap();
        let stopping = line.starts_with("stopping (");
        seen.push(line);
        if stopping {
            break;
        }
    }
    admin.post("/_sim/resume", json!({}));
    seen.extend(stderr_lines.map(|l| l.unwrap()));
    let out = apply.wait_with_output().unwrap();
    (out.status.code(), format!("stdout:\n{}\nstderr:\n{}", String::from_utf8_lossy(&out.stdout), seen.join("\n")))
}

/// The checks after a stopped apply: it exited 1 as interrupted, at most the
/// call it abandoned is left open in the journal, the lock is free, and a
/// rerun completes the plan with the state equal to the clouds and nothing open.
fn assert_stopped_cleanly(admin: &Admin, work: &Workspace, code: Option<i32>, output: &str, why: &str) {
    assert_eq!(code, Some(1), "an interrupted apply is not a success\n{output}");
    assert!(output.contains(&format!("stopping ({why})")) && output.contains("interrupted"), "{output}");
    assert!(work.open_intents(PLAN) <= 1, "only the abandoned call stays open\n{output}");
    let lock = std::fs::read_to_string(work.state_dir.join(format!("{PLAN}.lock"))).unwrap();
    assert!(lock.is_empty(), "the lock is still held: {lock}");
    work.run_to_completion("apply", &admin.url, "rerun after the stop");
    let world = admin.get("/_sim/world");
    assert_eq!(work.state_ids(), common::world_ids(&world, PLAN), "state and clouds disagree after the rerun");
    assert_eq!(work.open_intents(PLAN), 0, "the rerun reconciled the abandoned call");
    let counts: BTreeMap<String, usize> = work.state_ids().into_iter().map(|(f, ids)| (f, ids.len())).collect();
    assert_eq!(counts, LARGE.by_fleet());
}

fn stop_fixture(dir: &Path) -> (SimServer, Admin, Workspace) {
    let scenario = dir.join("scenario.toml");
    std::fs::write(&scenario, SCENARIO).unwrap();
    let sim = SimServer::start(&["--scenario", scenario.to_str().unwrap()]);
    let admin = Admin::new(&sim.url);
    let work = Workspace::new(dir, PLAN);
    work.write_plan(&plan_text(PLAN, LARGE));
    (sim, admin, work)
}

/// SIGTERM while a create's response is held (the call changed the world):
/// the call is abandoned with its intent open, no new call starts, and the
/// rerun adopts what the call created.
#[test]
fn sigterm_abandons_the_call_in_flight_and_the_rerun_adopts_what_it_created() {
    let dir = tempfile::tempdir().unwrap();
    let (_sim, admin, work) = stop_fixture(dir.path());
    let (code, output) = apply_stopped_while_held(&admin, &work, 5, "after", libc::SIGTERM);
    assert_stopped_cleanly(&admin, &work, code, &output, "terminated");
}

/// `--deadline` passes before the first cloud call: the run stops before
/// any call, exactly as on a signal.
#[test]
fn deadline_stops_the_run_like_a_signal() {
    let dir = tempfile::tempdir().unwrap();
    let (_sim, admin, work) = stop_fixture(dir.path());
    let out = gpufleet(&[work.args("apply", &admin.url), vec!["--deadline", "1ms"]].concat());
    let output = format!("stdout:\n{}\nstderr:\n{}", stdout(&out), stderr(&out));
    let created = common::world_ids(&admin.get("/_sim/world"), PLAN);
    assert!(created.is_empty(), "nothing may start after the deadline: {created:?}\n{output}");
    assert_stopped_cleanly(&admin, &work, out.status.code(), &output, "deadline reached");
}

/// The fleet's nodes and `max_disruption` in `common::home_plan`.
const MOVE_NODES: usize = 4;
const MOVE_BUDGET: usize = 2;
const HOME: &str = "us-east-1";
const FALLBACK: &str = "us-west-2";

/// `common::home_plan`, whose drain hook logs every node it drains to
/// `drained.log`, next to the plan.
fn move_plan_text(name: &str) -> String {
    common::home_plan(name) + "drain = \"drain.sh\"\n"
}

/// Region of each live instance of `plan` in the simulated EC2.
fn world_regions(admin: &Admin, plan: &str) -> BTreeMap<String, String> {
    let world = admin.get("/_sim/world");
    world["instances"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i["state"] == "running" && i["tags"]["gpufleet-plan"] == plan)
        .map(|i| (i["id"].as_str().unwrap().to_string(), i["region"].as_str().unwrap().to_string()))
        .collect()
}

fn in_region(regions: &BTreeMap<String, String>, region: &str) -> BTreeSet<String> {
    regions.iter().filter(|(_, r)| *r == region).map(|(id, _)| id.clone()).collect()
}

fn set_home_capacity(admin: &Admin, capacity: u32) {
    let pool = json!({ "cloud": "aws", "region": HOME, "instance_type": "p5.48xlarge", "capacity": capacity });
    admin.post("/_sim/capacity", pool);
}

/// A fleet of its own that failed over: every zone of us-east-1 refused it
/// at apply, so it runs in us-west-2; then us-east-1 gets capacity back and
/// the clock moves past `move_back_after`, so the next round moves nodes home.
fn failed_over_fleet(admin: &Admin, root: &Path, plan: &str) -> Workspace {
    use std::os::unix::fs::PermissionsExt;
    let work = Workspace::new(root, plan);
    work.write_plan(&move_plan_text(plan));
    let hook = work.plan_file.with_file_name("drain.sh");
    std::fs::write(&hook, "#!/bin/sh\necho \"$GPUFLEET_INSTANCE_ID\" >> \"$(dirname \"$0\")/drained.log\"\n").unwrap();
    std::fs::set_permissions(&hook, std::fs::Permissions::from_mode(0o755)).unwrap();
    set_home_capacity(admin, 0);
    work.run_to_completion("apply", &admin.url, &format!("{plan}: the apply that fails over"));
    assert_eq!(in_region(&world_regions(admin, plan), FALLBACK).len(), MOVE_NODES, "{plan} failed over");
    set_home_capacity(admin, 8);
    admin.post("/_sim/advance", json!({ "by": "16m" }));
    work
}

impl Workspace {
    /// Every node the drain hook was run for.
    fn drained(&self) -> BTreeSet<String> {
        let log = self.plan_file.with_file_name("drained.log");
        std::fs::read_to_string(log).unwrap_or_default().lines().map(str::to_string).collect()
    }

    fn journal_path(&self, plan: &str) -> PathBuf {
        self.state_dir.join(format!("{plan}.journal.jsonl"))
    }

    /// The moves the journal records: for each create of a move, the old
    /// instances it names and the new ones its delete intents name.
    fn journaled_moves(&self, plan: &str) -> Vec<(BTreeSet<String>, BTreeSet<String>)> {
        use gpufleet::state::journal::{Entry, Event};
        let text = std::fs::read_to_string(self.journal_path(plan)).unwrap();
        let entries: Vec<Entry> = text.lines().map(|line| serde_json::from_str(line).unwrap()).collect();
        let mut moves: Vec<(BTreeSet<String>, BTreeSet<String>)> = Vec::new();
        for entry in entries {
            match entry.event {
                Event::CreateIntent { replaces, .. } if !replaces.is_empty() => {
                    moves.push((replaces.into_iter().collect(), BTreeSet::new()));
                }
                Event::DeleteIntent { instance_ids, replaced_by, .. } => {
                    // The latest move naming them: an earlier one may have been rolled back.
                    let of_move =
                        moves.iter_mut().rev().find(|(old, _)| instance_ids.iter().all(|id| old.contains(id)));
                    if let Some((_, new)) = of_move {
                        assert!(!replaced_by.is_empty(), "the delete of a move's {instance_ids:?} names no new half");
                        new.extend(replaced_by);
                    }
                }
                _ => {}
            }
        }
        moves
    }
}

/// The cloud calls of one uninterrupted round that moves `MOVE_BUDGET` nodes
/// home, measured on a plan of its own.
fn calibrate_move(admin: &Admin, root: &Path) -> u64 {
    let plan = "move-calibration";
    let work = failed_over_fleet(admin, root, plan);
    admin.post("/_sim/pause", json!({ "at_call": u64::MAX, "when": "before" }));
    work.run_to_completion("rebalance", &admin.url, "calibration round");
    let calls = admin.post("/_sim/resume", json!({}))["calls_counted"].as_u64().unwrap();
    let regions = world_regions(admin, plan);
    assert_eq!(in_region(&regions, HOME).len(), MOVE_BUDGET, "the calibration round moves a budget's worth");
    assert_eq!(regions.len(), MOVE_NODES);
    calls
}

/// Whether the round killed at `point` had its move's creates applied in
/// the cloud: the RunInstances went through (held after it was applied),
/// or a later call was reached: a DescribeInstances asking after the new
/// nodes while they were pending (`launched`: the round had made its
/// RunInstances), or the TerminateInstances of the old nodes.
fn create_applied(point: &KillPoint, launched: bool) -> bool {
    match point {
        KillPoint::Held { action, when, .. } => {
            (action.contains("RunInstances") && when == "after")
                || (action.contains("DescribeInstances") && launched)
                || action.contains("TerminateInstances")
        }
        KillPoint::Finished { .. } => true,
    }
}

/// RunInstances calls the simulator has answered so far.
fn run_instances_calls(admin: &Admin) -> u64 {
    admin.get("/_sim/counters")["aws"]["RunInstances"].as_u64().unwrap_or(0)
}

/// Whether the round killed at `point` had journaled its move: it was
/// killed at the move's create (its AMI's root device lookup, or
/// RunInstances) or later.
fn move_started(point: &KillPoint) -> bool {
    match point {
        KillPoint::Held { action, .. } => {
            action.contains("DescribeImages")
                || action.contains("RunInstances")
                || action.contains("TerminateInstances")
        }
        KillPoint::Finished { .. } => true,
    }
}

#[test]
fn rebalance_killed_mid_move_is_completed_or_rolled_back_by_the_next_round_with_exact_counts() {
    let seed = std::env::var("CRASH_SAFETY_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(DEFAULT_SEED);
    let dir = tempfile::tempdir().unwrap();
    let scenario = dir.path().join("scenario.toml");
    // us-east-1 holds what each trial gives it with `/_sim/capacity`.
    std::fs::write(&scenario, SCENARIO).unwrap();
    let sim = SimServer::start(&["--scenario", scenario.to_str().unwrap()]);
    let admin = Admin::new(&sim.url);
    let calls = calibrate_move(&admin, dir.path());
    // One round makes few calls (a listing per region, the create with its
    // AMI's root device lookup, the delete): every one is tried, before and
    // after it is applied, in an order drawn from the seed.
    assert!((3..=9).contains(&calls), "a moving round made {calls} cloud calls");
    let mut points: Vec<(u64, &str)> = (1..=calls).flat_map(|call| [(call, "before"), (call, "after")]).collect();
    let mut random = SplitMix64(seed);
    for i in (1..points.len()).rev() {
        points.swap(i, random.next() as usize % (i + 1));
    }
    println!("rebalance crash safety: seed {seed} (CRASH_SAFETY_SEED), {calls} calls a round, kill points {points:?}");

    for (trial, (at_call, when)) in points.into_iter().enumerate() {
        let plan = format!("move-{trial}");
        let work = failed_over_fleet(&admin, dir.path(), &plan);
        let fallback = in_region(&world_regions(&admin, &plan), FALLBACK);
        let runs_before = run_instances_calls(&admin);
        let (point, mut killed) = killed_at(&admin, &work, "rebalance", trial, at_call, when);
        let context = format!("trial {trial} ({point:?})\n{}", work.killed_run_output(trial));
        let applied = create_applied(&point, run_instances_calls(&admin) > runs_before);
        let started = move_started(&point);

        // What the kill left: the old nodes all run, the new ones too once their create went through.
        let left = world_regions(&admin, &plan);
        let home_left = if applied { MOVE_BUDGET } else { 0 };
        assert_eq!(in_region(&left, HOME).len(), home_left, "{context}: {left:?}");
        assert!(left.len() >= MOVE_NODES, "{context}: below min_nodes in the cloud after the kill: {left:?}");

        // The recovery round: a move whose new nodes run is completed (its
        // old nodes deleted, exactly those it named); one whose create never
        // went through is rolled back (nothing of it is left), and the round
        // starts its own move of a budget's worth.
        work.run_to_completion("rebalance", &admin.url, &format!("{context}\nrecovery round"));
        killed.wait().unwrap();
        let after = world_regions(&admin, &plan);
        let in_state = work.state_ids();
        let in_clouds = common::world_ids(&admin.get("/_sim/world"), &plan);
        assert_eq!(in_clouds, in_state, "{context}: the clouds hold instances the state does not (orphans?)");
        assert_eq!(in_state["trainers"].len(), MOVE_NODES, "{context}: {in_state:?}");
        assert_eq!(after.len(), MOVE_NODES, "{context}: duplicates in the cloud: {after:?}");
        let home_now = if applied { 2 * MOVE_BUDGET } else { MOVE_BUDGET };
        assert_eq!(
            in_region(&after, HOME).len(),
            home_now,
            "{context}: nodes home after the recovery round: {after:?}"
        );
        let deleted: BTreeSet<String> = fallback.difference(&in_region(&after, FALLBACK)).cloned().collect();
        assert_eq!(deleted.len(), home_now, "{context}: one old node deleted per node moved home");
        assert_eq!(work.drained(), deleted, "{context}: the nodes drained are exactly the nodes deleted");
        assert_eq!(work.open_intents(&plan), 0, "{context}: the recovery round left intents open");
        // What the journal still calls unfinished must be over in the clouds: none of its old nodes runs.
        let nothing_left_to_finish = |running: &BTreeMap<String, String>| {
            let entries = gpufleet::state::journal::Journal::entries(&work.journal_path(&plan)).unwrap();
            let unfinished = gpufleet::state::journal::unfinished_moves_of(entries);
            let left: Vec<&String> =
                unfinished.iter().flat_map(|m| &m.replaces).filter(|id| running.contains_key(*id)).collect();
            assert_eq!(left, Vec::<&String>::new(), "{context}: moves left to finish: {unfinished:?}");
        };
        if applied {
            // Completed: the old nodes deleted are those the killed move named.
            let (killed_move, _) = &work.journaled_moves(&plan)[0];
            assert!(killed_move.is_subset(&deleted), "{context}: the killed move named {killed_move:?}");
            nothing_left_to_finish(&after);
        }

        // The next round brings the rest home, and then there is nothing left to move.
        work.run_to_completion("rebalance", &admin.url, &format!("{context}\nround after the recovery"));
        let settled = world_regions(&admin, &plan);
        assert_eq!(in_region(&settled, HOME).len(), MOVE_NODES, "{context}: {settled:?}");
        assert_eq!(work.drained(), fallback, "{context}: every old node drained once, then deleted");
        assert_eq!(common::world_ids(&admin.get("/_sim/world"), &plan), work.state_ids(), "{context}");
        nothing_left_to_finish(&settled);
        // Every move names both halves: the old nodes, and the new nodes that replaced them (none if rolled back).
        let home = in_region(&settled, HOME);
        let (finished, rolled_back): (Vec<_>, Vec<_>) =
            work.journaled_moves(&plan).into_iter().partition(|(_, new)| !new.is_empty());
        let expected = (MOVE_NODES / MOVE_BUDGET, usize::from(started && !applied));
        assert_eq!((finished.len(), rolled_back.len()), expected, "{context}");
        for (old, new) in &finished {
            assert_eq!((old.len(), new.len()), (MOVE_BUDGET, MOVE_BUDGET), "{context}: {old:?} replaced by {new:?}");
            assert!(old.is_subset(&fallback) && new.is_subset(&home), "{context}: {old:?} replaced by {new:?}");
        }
        println!("trial {trial}: killed at {point:?}; recovery round left {home_now} of {MOVE_NODES} home");
    }
}
