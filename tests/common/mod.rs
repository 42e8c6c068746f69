//! Shared helpers of the integration tests: the real binary, and the Python
//! referees (official SDKs and moto) in a virtualenv of their own.

#![allow(dead_code)]

pub mod postgres;

use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_gpufleet")
}

pub fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// `gpufleet ARGS` from the repository root, no colors, no inherited sim URL.
pub fn gpufleet(args: &[&str]) -> Output {
    gpufleet_in(repo(), args)
}

/// `gpufleet ARGS` run from `dir` (relative paths in ARGS resolve there).
pub fn gpufleet_in(dir: &Path, args: &[&str]) -> Output {
    let mut command = command(args);
    command.current_dir(dir).output().expect("the gpufleet binary runs")
}

/// `gpufleet ARGS` ready to run from the repository root: no colors, no
/// inherited sim URL, state directory or database, no input.
pub fn command(args: &[&str]) -> Command {
    let mut command = Command::new(bin());
    command
        .args(args)
        .current_dir(repo())
        .env("NO_COLOR", "1")
        .env_remove("GPUFLEET_SIM_URL")
        .env_remove("GPUFLEET_STATE_DIR")
        .env_remove("GPUFLEET_STATE")
        .stdin(Stdio::null());
    command
}

/// A running child whose stdout lines arrive on a channel (its stderr is
/// the test's); killed on drop.
pub struct Lines {
    pub child: Child,
    lines: std::sync::mpsc::Receiver<String>,
}

impl Lines {
    pub fn spawn(mut command: Command) -> Lines {
        let mut child = command.stdout(Stdio::piped()).spawn().expect("the gpufleet binary starts");
        let stdout = child.stdout.take().expect("piped stdout");
        let (send, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if send.send(line).is_err() {
                    break;
                }
            }
        });
        Lines { child, lines }
    }

    /// The next line containing `text`, failing the test (not hanging it)
    /// if none comes.
    pub fn expect(&self, text: &str) -> String {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) if line.contains(text) => return line,
                Ok(_) => continue,
                Err(e) => panic!("no line with {text:?}: {e}"),
            }
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Lines {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The simulator's admin API (`/_sim/...`), called from synchronous tests.
pub struct Admin {
    pub url: String,
    pub runtime: tokio::runtime::Runtime,
}

impl Admin {
    pub fn new(url: &str) -> Admin {
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
        Admin { url: url.to_string(), runtime }
    }

    pub fn get(&self, path: &str) -> serde_json::Value {
        self.runtime.block_on(admin_get(format!("{}{path}", self.url)))
    }

    pub fn post(&self, path: &str, body: serde_json::Value) -> serde_json::Value {
        let url = format!("{}{path}", self.url);
        self.runtime.block_on(async move {
            let response = reqwest::Client::new().post(&url).json(&body).send().await.unwrap();
            let status = response.status();
            let text = response.text().await.unwrap();
            assert!(status.is_success(), "POST {url}: {status}: {text}");
            serde_json::from_str(&text).unwrap()
        })
    }
}

pub async fn admin_get(url: String) -> serde_json::Value {
    let response = reqwest::get(&url).await.unwrap_or_else(|e| panic!("GET {url}: {e}"));
    assert!(response.status().is_success(), "GET {url}: {}", response.status());
    response.json().await.unwrap()
}

/// Calls that change a simulated cloud, as `/_sim/counters` names them.
pub const MUTATING: [(&str, &str); 10] = [
    ("aws", "RunInstances"),
    ("aws", "TerminateInstances"),
    ("aws", "CreateTags"),
    ("gcp", "instances.insert"),
    ("gcp", "instances.bulkInsert"),
    ("gcp", "instances.delete"),
    ("azure", "VirtualMachineScaleSets_CreateOrUpdate"),
    ("azure", "VirtualMachineScaleSets_Update"),
    ("azure", "VirtualMachineScaleSets_Delete"),
    ("azure", "VirtualMachineScaleSets_DeleteInstances"),
];

/// `gpufleet ARGS`, failing the test (with both outputs) unless it exits with `expect`.
pub fn run(args: &[&str], expect: i32) -> Output {
    let out = gpufleet(args);
    assert_eq!(out.status.code(), Some(expect), "gpufleet {args:?}\n{}\n{}", stdout(&out), stderr(&out));
    out
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A `gpufleet sim serve` child, by default on an ephemeral port of
/// 127.0.0.1 (`extra` may name another `--listen`); killed on drop.
pub struct SimServer {
    child: Child,
    pub url: String,
}

impl SimServer {
    pub fn start(extra: &[&str]) -> SimServer {
        let mut child = Command::new(bin())
            .args(["sim", "serve"])
            .args(extra)
            .current_dir(repo())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("gpufleet sim serve starts");
        let mut first = String::new();
        BufReader::new(child.stdout.as_mut().expect("piped stdout"))
            .read_line(&mut first)
            .expect("the simulator prints its address");
        let url =
            first.trim().strip_prefix("listening on ").unwrap_or_else(|| panic!("unexpected first line {first:?}"));
        SimServer { url: url.to_string(), child }
    }

    /// The server's peak resident memory so far (`VmHWM`), in MiB.
    pub fn peak_rss_mib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).expect("/proc status");
        let line = status.lines().find(|l| l.starts_with("VmHWM:")).expect("VmHWM in /proc status");
        let kib: u64 = line.split_whitespace().nth(1).and_then(|n| n.parse().ok()).expect("VmHWM in kB");
        kib / 1024
    }
}

impl Drop for SimServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The referees' Python: a virtualenv under the target directory with
/// tests/python/requirements.txt installed, built once (under a file lock,
/// since tests run in parallel processes) and rebuilt when the file changes.
pub fn python() -> PathBuf {
    let requirements = repo().join("tests/python/requirements.txt");
    let wanted = std::fs::read_to_string(&requirements).expect("tests/python/requirements.txt");
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("py-referees");
    std::fs::create_dir_all(dir.parent().unwrap()).unwrap();
    let lock = File::create(dir.with_extension("lock")).unwrap();
    // SAFETY: flock on a descriptor we own; blocks until the other test is done.
    assert_eq!(unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX) }, 0);
    let stamp = dir.join("requirements.installed");
    let python = dir.join("bin/python");
    let mut installed = String::new();
    let current = File::open(&stamp).and_then(|mut f| f.read_to_string(&mut installed)).is_ok() && installed == wanted;
    if !current {
        let _ = std::fs::remove_dir_all(&dir);
        run_ok(Command::new("python3").args(["-m", "venv"]).arg(&dir));
        run_ok(
            Command::new(&python)
                .args(["-m", "pip", "install", "--quiet", "--disable-pip-version-check", "-r"])
                .arg(&requirements),
        );
        std::fs::write(&stamp, &wanted).unwrap();
    }
    python
}

fn run_ok(command: &mut Command) {
    let out = command.output().unwrap_or_else(|e| panic!("cannot run {command:?}: {e}"));
    assert!(out.status.success(), "{command:?} failed:\n{}\n{}", stdout(&out), stderr(&out));
}

/// Run one pytest file of tests/python with the referees' Python; fails the
/// Rust test (with pytest's output) unless every Python test passed.
pub fn pytest(file: &str) {
    let out = Command::new(python())
        .args(["-m", "pytest", "-q", "-p", "no:cacheprovider", "-W", "error::pytest.PytestUnraisableExceptionWarning"])
        .arg(repo().join("tests/python").join(file))
        .current_dir(repo())
        .env("GPUFLEET_BIN", bin())
        .env("NO_COLOR", "1")
        .env_remove("GPUFLEET_SIM_URL")
        .output()
        .expect("pytest runs");
    let text = format!("{}\n{}", stdout(&out), stderr(&out));
    println!("{text}");
    assert!(out.status.success(), "pytest {file} failed:\n{text}");
    assert!(text.contains(" passed"), "pytest {file} ran no test:\n{text}");
}

/// A simulator served inside the test's tokio runtime on 127.0.0.1:0, from
/// scenario text; `stop` returns its final world.
pub struct InProcessSim {
    pub url: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    server: tokio::task::JoinHandle<Result<gpufleet::sim::World, gpufleet::sim::SimError>>,
}

impl InProcessSim {
    pub async fn start(scenario: Option<&str>) -> InProcessSim {
        let scenario =
            scenario.map(|text| gpufleet::sim::Scenario::parse(text, Path::new("test-scenario.toml")).unwrap());
        let world = gpufleet::sim::World::new(scenario.as_ref(), &gpufleet::catalog::Catalog::builtin()).unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(gpufleet::sim::serve(listener, world, None, async move {
            let _ = stopped.await;
        }));
        InProcessSim { url, stop: Some(stop), server }
    }

    /// `GET {url}{path}` of the admin API, as JSON.
    pub async fn admin_get(&self, path: &str) -> serde_json::Value {
        let response = reqwest::get(format!("{}{path}", self.url)).await.unwrap();
        assert!(response.status().is_success(), "{path}: {}", response.status());
        response.json().await.unwrap()
    }

    pub async fn stop(mut self) -> gpufleet::sim::World {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        self.server.await.unwrap().unwrap()
    }
}

/// Live instances carrying `gpufleet-plan = plan` in all three simulated
/// clouds (`/_sim/world`), by fleet, one entry per instance (an id seen twice
/// stays twice), sorted.
pub fn world_ids(world: &serde_json::Value, plan: &str) -> std::collections::BTreeMap<String, Vec<String>> {
    use serde_json::Value;
    let owned = |tags: &Value| tags["gpufleet-plan"] == plan;
    let mut ids: std::collections::BTreeMap<String, Vec<String>> = Default::default();
    let mut add = |tags: &Value, id: &Value| {
        let fleet = tags["gpufleet-fleet"].as_str().unwrap_or("(no fleet tag)").to_string();
        ids.entry(fleet).or_default().push(id.as_str().unwrap().to_string());
    };
    for ec2 in world["instances"].as_array().unwrap() {
        if ec2["state"] == "running" && owned(&ec2["tags"]) {
            add(&ec2["tags"], &ec2["id"]);
        }
    }
    for gce in world["gce_instances"].as_array().unwrap() {
        if owned(&gce["spec"]["labels"]) {
            add(&gce["spec"]["labels"], &gce["name"]);
        }
    }
    for vm in world["azure_vms"].as_array().unwrap() {
        if owned(&vm["tags"]) {
            add(&vm["tags"], &vm["name"]);
        }
    }
    ids.values_mut().for_each(|v| v.sort());
    ids
}

/// Instance ids by fleet, as `gpufleet state list --json` reports them, sorted.
pub fn state_ids(state_dir: &Path) -> std::collections::BTreeMap<String, Vec<String>> {
    let out = gpufleet(&["state", "list", "--json", "--state-dir", state_dir.to_str().unwrap()]);
    assert!(out.status.success(), "state list: {}", stderr(&out));
    let listed: Vec<serde_json::Value> = serde_json::from_str(&stdout(&out)).unwrap();
    let mut ids: std::collections::BTreeMap<String, Vec<String>> = Default::default();
    for instance in listed {
        let fleet = instance["fleet"].as_str().unwrap().to_string();
        ids.entry(fleet).or_default().push(instance["id"].as_str().unwrap().to_string());
    }
    ids.values_mut().for_each(|v| v.sort());
    ids
}

/// A fleet of 4 H100 nodes that prefers aws us-east-1 and may fail over to
/// us-west-2, moving home 2 nodes a round once home has been clear for 15
/// minutes.
pub fn home_plan(name: &str) -> String {
    format!(
        r#"
name = "{name}"
shortage_ttl = "5m"

[providers.aws]
regions = ["us-east-1", "us-west-2"]

[fleets.trainers]
gpu = "H100"
gpus_per_node = 8
nodes = 4
prefer = ["aws:us-east-1", "aws:us-west-2"]
image = {{ aws = "ami-0123456789abcdef0" }}

[rebalance]
max_disruption = 2
move_back_after = "15m"
"#
    )
}
