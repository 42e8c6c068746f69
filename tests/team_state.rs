//! Team use of one PostgreSQL state database, through the real binary: runs
//! on the same plan from different state URLs against a served simulator.
//! Exactly one acts at a time; a killed holder's lease expires and the next
//! run completes its journal; a paused holder that lost its lease makes no
//! further cloud call; a database outage during `rebalance --watch` is
//! waited out. Stops come from the simulator's pause point and from drain
//! hooks blocked on FIFOs, and leases run on the simulator's clock, which
//! the tests move: no sleeps.

mod common;

use common::postgres::{PASSWORD, Postgres};
use common::{Admin, Lines, SimServer, home_plan, stderr, stdout};
use serde_json::json;
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};

/// A plan, a served simulator and a database; runs use the state URL given.
struct Team {
    pg: Postgres,
    sim: SimServer,
    admin: Admin,
    dir: tempfile::TempDir,
    plan: PathBuf,
}

impl Team {
    fn new(plan: &str) -> Team {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("home.toml");
        std::fs::write(&path, plan).unwrap();
        let sim = SimServer::start(&[]);
        Team { pg: Postgres::start(), admin: Admin::new(&sim.url), sim, plan: path, dir }
    }

    /// A second URL for the same database, as another engineer's machine
    /// would spell it.
    fn other_url(&self) -> String {
        format!("{}?application_name=second", self.pg.url)
    }

    fn command(&self, verb: &str, url: &str, extra: &[&str]) -> Command {
        let plan = self.plan.to_str().unwrap();
        let local = self.dir.path().join("local");
        let mut command = common::command(&[verb, plan, "--sim-url", &self.sim.url, "--state", url]);
        command.args(["--state-dir", local.to_str().unwrap()]).args(extra);
        command
    }

    /// Run to the end; fails the test unless it exits with `expect`. The
    /// password never shows.
    fn run(&self, verb: &str, url: &str, extra: &[&str], expect: i32) -> Output {
        let out = self.command(verb, url, extra).output().unwrap();
        let shown = format!("{}{}", stdout(&out), stderr(&out));
        assert_eq!(out.status.code(), Some(expect), "gpufleet {verb} {extra:?}\n{shown}");
        assert!(!shown.contains(PASSWORD), "the password leaked:\n{shown}");
        out
    }

    fn spawn(&self, verb: &str, url: &str, extra: &[&str]) -> Child {
        self.command(verb, url, extra).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap()
    }

    fn advance(&self, by: &str) {
        self.admin.post("/_sim/advance", json!({ "by": by }));
    }

    /// The simulator's instances of plan `home`.
    fn world_ids(&self) -> Vec<String> {
        common::world_ids(&self.admin.get("/_sim/world"), "home").into_values().flatten().collect()
    }

    /// What the database holds for plan `home`.
    fn stored(&self) -> gpufleet::state::PlanCopy {
        self.admin.runtime.block_on(async {
            let backend = gpufleet::state::postgres::PostgresBackend::connect(&self.pg.url).await.unwrap();
            gpufleet::state::PlanCopy::read(&backend, "home").await.unwrap()
        })
    }

    fn state_ids(&self) -> Vec<String> {
        self.stored().state.instances.into_iter().map(|i| i.id).collect()
    }
}

/// Wait for `child` to exit with `expect`, giving back what it said.
fn finished(child: Child, expect: i32) -> String {
    let out = child.wait_with_output().unwrap();
    let shown = format!("{}{}", stdout(&out), stderr(&out));
    assert_eq!(out.status.code(), Some(expect), "{shown}");
    assert!(!shown.contains(PASSWORD), "the password leaked:\n{shown}");
    shown
}

fn signal(child: &Child, signal: libc::c_int) {
    // SAFETY: signalling our own child, which has not been reaped.
    assert_eq!(unsafe { libc::kill(child.id() as libc::pid_t, signal) }, 0);
}

/// The home plan's first RunInstances: calls 1 and 2 list its two regions,
/// call 3 is the quota pre-check's GetServiceQuota, call 4 the AMI's root
/// device (DescribeImages) for the boot disk.
const FIRST_RUN_INSTANCES: u64 = 5;

#[test]
fn two_applies_from_two_urls_one_acts_the_other_fails_naming_it_or_waits_for_it() {
    let team = Team::new(&home_plan("home"));
    let url = team.pg.url.clone();
    team.admin.post("/_sim/pause", json!({ "at_call": FIRST_RUN_INSTANCES, "when": "before" }));
    let first = team.spawn("apply", &url, &["--auto-approve"]);
    let held = team.admin.get("/_sim/paused");
    assert!(held["action"].as_str().unwrap().contains("RunInstances"), "{held}");

    // Without --lock-timeout: refused at once, naming the holder.
    let refused = team.run("apply", &team.other_url(), &["--auto-approve"], 1);
    let said = stderr(&refused);
    assert!(said.contains(&format!("is held by `apply` (pid {} on ", first.id())), "{said}");

    // With it: waits, says for whom, and runs once the first is done.
    let mut waiting = team.spawn("apply", &team.other_url(), &["--auto-approve", "--lock-timeout", "2m"]);
    let mut line = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(waiting.stderr.as_mut().unwrap()), &mut line).unwrap();
    assert!(line.starts_with("waiting up to 2m for the lock: the lock of plan `home` is held by `apply`"), "{line}");
    // The held request is dropped unapplied: the first retries it with its token.
    team.admin.post("/_sim/resume", json!({}));
    finished(first, 0);
    let second = finished(waiting, 0);
    assert!(second.contains("No changes."), "{second}");

    let world = team.world_ids();
    assert_eq!(world.len(), 4, "exactly one apply created the nodes");
    let mut stored = team.state_ids();
    stored.sort();
    let mut world = world;
    world.sort();
    assert_eq!(stored, world, "no lost update: the state holds what runs");
    let commands: Vec<String> = team.stored().history.into_iter().map(|h| h.command).collect();
    assert_eq!(commands, ["apply", "apply"], "the refused run recorded nothing");
}

#[test]
fn a_killed_holder_s_lease_expires_and_the_next_run_completes_its_journal() {
    let team = Team::new(&home_plan("home"));
    let url = team.pg.url.clone();
    // The create is applied in the cloud; its answer never reaches the apply.
    team.admin.post("/_sim/pause", json!({ "at_call": FIRST_RUN_INSTANCES, "when": "after" }));
    let mut killed = team.spawn("apply", &url, &["--auto-approve"]);
    let held = team.admin.get("/_sim/paused");
    assert!(held["action"].as_str().unwrap().contains("RunInstances"), "{held}");
    killed.kill().unwrap();
    killed.wait().unwrap();
    team.admin.post("/_sim/resume", json!({}));
    assert_eq!(team.world_ids().len(), 4);
    assert!(team.state_ids().is_empty(), "the killed run never learned of its nodes");

    // Its lease still runs: nobody on another host can tell it is dead.
    let refused = team.run("apply", &team.other_url(), &["--auto-approve"], 1);
    assert!(stderr(&refused).contains(&format!("(pid {} on ", killed.id())), "{}", stderr(&refused));
    // Once it ends, the next run takes over and completes the journal.
    team.advance("11m");
    let done = team.run("apply", &team.other_url(), &["--auto-approve"], 0);
    let said = stdout(&done);
    assert!(said.contains("No changes.") || said.contains("trainers"), "{said}");

    let mut world = team.world_ids();
    let mut stored = team.state_ids();
    world.sort();
    stored.sort();
    assert_eq!(world.len(), 4, "no duplicate: the killed run's nodes were adopted");
    assert_eq!(stored, world, "no orphan: every running node is in the state");
    let stored = team.stored();
    assert!(gpufleet::state::journal::open_intents_of(stored.journal.clone()).is_empty(), "{:?}", stored.journal);
    let recovered =
        stored.journal.iter().filter(|e| matches!(e.event, gpufleet::state::journal::Event::Recovered { .. }));
    assert_eq!(recovered.count(), 1, "the dead run's intent is closed by the next run");
}

/// A drain hook that blocks its first call until the test says go: it
/// writes `ready` (a FIFO the test reads), then reads `go`.
fn blocking_drain(dir: &std::path::Path) -> (PathBuf, PathBuf) {
    use std::os::unix::fs::PermissionsExt;
    let (ready, go) = (dir.join("ready"), dir.join("go"));
    for fifo in [&ready, &go] {
        let path = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        // SAFETY: a NUL-terminated path we own.
        assert_eq!(unsafe { libc::mkfifo(path.as_ptr(), 0o600) }, 0);
    }
    let hook = dir.join("drain.sh");
    std::fs::write(
        &hook,
        "#!/bin/sh\n\
         here=$(dirname \"$0\")\n\
         if mkdir \"$here/blocked-once\" 2>/dev/null; then\n\
           echo \"$GPUFLEET_INSTANCE_ID\" > \"$here/ready\"\n\
           read go < \"$here/go\"\n\
         fi\n",
    )
    .unwrap();
    std::fs::set_permissions(&hook, std::fs::Permissions::from_mode(0o755)).unwrap();
    (ready, go)
}

/// Read a FIFO's one line in a thread, failing the test if none comes.
fn read_fifo(path: PathBuf) -> String {
    let (send, receive) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = send.send(std::fs::read_to_string(path).unwrap());
    });
    receive.recv_timeout(std::time::Duration::from_secs(60)).expect("the drain hook started")
}

/// Two nodes applied, then a scale-down to one whose apply holds the lock
/// while its drain hook blocks: the team, that apply, and the FIFO that lets
/// its drain finish.
fn apply_blocked_in_a_drain() -> (Team, Child, PathBuf) {
    let sized =
        |nodes: u32| home_plan("home").replace("nodes = 4", &format!("nodes = {nodes}")) + "drain = \"drain.sh\"\n";
    let team = Team::new(&sized(2));
    let (ready, go) = blocking_drain(team.dir.path());
    team.run("apply", &team.pg.url, &["--auto-approve"], 0);
    assert_eq!(team.world_ids().len(), 2);
    std::fs::write(&team.plan, sized(1)).unwrap();
    let holder = team.spawn("apply", &team.pg.url, &["--auto-approve"]);
    let draining = read_fifo(ready);
    assert!(team.world_ids().contains(&draining.trim().to_string()), "{draining}");
    (team, holder, go)
}

#[test]
fn a_holder_paused_past_its_lease_makes_no_further_cloud_call_and_exits_1() {
    let (team, paused, go) = apply_blocked_in_a_drain();
    signal(&paused, libc::SIGSTOP);

    // Past its lease, another run takes over and does the scale-down itself.
    team.advance("11m");
    team.run("apply", &team.other_url(), &["--auto-approve"], 0);
    assert_eq!(team.world_ids().len(), 1);
    let calls = team.admin.get("/_sim/counters");

    // Resumed, with its drain done: it learns it lost the lock, and stops.
    signal(&paused, libc::SIGCONT);
    std::fs::write(go, "go\n").unwrap();
    let said = finished(paused, 1);
    assert!(said.contains("the lock of plan `home` was taken over in postgres://gpufleet@"), "{said}");
    assert_eq!(team.admin.get("/_sim/counters"), calls, "no cloud call after the lease was lost");
    assert_eq!(team.world_ids().len(), 1);
    assert_eq!(team.state_ids(), team.world_ids());
}

#[test]
fn a_database_outage_during_rebalance_watch_is_reported_retried_and_survived() {
    let team = Team::new(&home_plan("home"));
    let watcher = Lines::spawn(team.command("rebalance", &team.pg.url, &["--watch", "--every", "10m"]));
    watcher.expect("leading the rebalancing of plan `home`");
    watcher.expect("round at 2026-01-01 00:00:00 UTC:");
    assert_eq!(team.state_ids().len(), 4);

    // Ten minutes on, plus the 15 s the first round's creates waited while pending.
    team.pg.stop();
    team.advance("10m");
    let failed = watcher.expect("round at 2026-01-01 00:10:15 UTC failed");
    assert!(failed.contains("retrying in 1s"), "{failed}");
    assert!(!failed.contains(PASSWORD), "{failed}");
    team.pg.start_again();
    watcher.expect("round at 2026-01-01 00:10:15 UTC:");

    // The state is whole: every node in it, each run recorded once.
    let stored = team.stored();
    let mut ids: Vec<String> = stored.state.instances.iter().map(|i| i.id.clone()).collect();
    let mut world = team.world_ids();
    ids.sort();
    world.sort();
    assert_eq!(ids, world);
    assert_eq!(stored.history.len(), 2, "{:?}", stored.history);
    assert!(stored.history.iter().all(|h| h.outcome == "ok"), "{:?}", stored.history);
}

#[test]
fn state_unlock_force_takes_the_lock_over_records_why_and_fences_the_holder() {
    let (team, holder, go) = apply_blocked_in_a_drain();
    let url = team.pg.url.clone();

    let local = team.dir.path().join("local");
    let unlock = |extra: &[&str], expect: i32| {
        let mut args = vec!["state", "unlock", "home", "--state", &url, "--state-dir", local.to_str().unwrap()];
        args.extend(extra);
        let out = common::command(&args).output().unwrap();
        assert_eq!(out.status.code(), Some(expect), "{}{}", stdout(&out), stderr(&out));
        out
    };
    let unforced = unlock(&["--reason", "stuck"], 1);
    assert!(stderr(&unforced).contains("--force"), "{}", stderr(&unforced));
    let taken = stdout(&unlock(&["--force", "--reason", "apply hung on a drain"], 0));
    assert!(
        taken.contains(&format!("Took over the lock of plan `home` from `apply` (pid {} on ", holder.id())),
        "{taken}"
    );
    let calls = team.admin.get("/_sim/counters");

    std::fs::write(go, "go\n").unwrap();
    let said = finished(holder, 1);
    assert!(said.contains("was taken over"), "{said}");
    assert_eq!(team.admin.get("/_sim/counters"), calls, "the fenced holder made no call");
    let history = team.stored().history;
    let takeover = history.last().unwrap();
    assert_eq!(takeover.command, "state unlock --force");
    let note = takeover.note.as_deref().unwrap();
    assert!(note.contains("from `apply` (pid ") && note.ends_with(": apply hung on a drain"), "{note}");
    // The lock is free: the next run finishes the scale-down.
    team.run("apply", &url, &["--auto-approve"], 0);
    assert_eq!(team.world_ids().len(), 1);
}
