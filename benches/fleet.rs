//! Fleet-scale benchmark: what `plan` and `apply` cost at thousands of
//! instances when every cloud call is a real round trip, against the
//! per-resource baseline (the call pattern of a tool that refreshes each
//! resource on its own) run in the same process against the same simulator.
//!
//! Run: `cargo bench --bench fleet` (optimized), or `cargo bench --profile
//! dev --bench fleet` to reuse the debug build. Flags after `--`:
//! `--instances 10000` (owned by one plan, over 3 clouds × 3 regions),
//! `--latency 20ms` (held back on every cloud response by `sim serve
//! --latency`), `--baseline-sample N` (instances the baseline walks; its
//! wall time is scaled up to all of them, default: all).
//!
//! Prints a table, then one JSON object as its last line.

#[path = "support/mod.rs"]
mod support;

use gpufleet::catalog::Catalog;
use gpufleet::model::Cloud;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const GPU: &str = "H100";
/// Largest placement a fleet gets: the clouds' own per-request limits.
const MAX_FLEET: usize = 1000;
/// The APIs' largest pages: EC2 DescribeInstances MaxResults 1000, Compute
/// Engine aggregatedList maxResults 500 (CLOUD-FACTS.md), ARM's lists as the
/// simulator serves them (1000; ARM documents no size).
const EC2_PAGE: usize = 1000;
const GCE_PAGE: usize = 500;
const ARM_PAGE: usize = 1000;
/// Calls per instance of the per-resource baseline (DescribeInstances 1,
/// DescribeInstanceAttribute 4, DescribeInstanceTypes 1, DescribeTags 1,
/// DescribeVolumes 1, DescribeVpcs 1), and its parallelism.
const BASELINE_CALLS_PER_INSTANCE: usize = 9;
const BASELINE_PARALLELISM: usize = 10;

struct Args {
    instances: usize,
    latency: Duration,
    baseline_sample: Option<usize>,
}

fn args() -> Args {
    let mut parsed = Args { instances: 10_000, latency: Duration::from_millis(20), baseline_sample: None };
    let mut words = std::env::args().skip(1);
    while let Some(word) = words.next() {
        let mut value = || words.next().unwrap_or_else(|| panic!("{word} needs a value"));
        match word.as_str() {
            "--instances" => parsed.instances = value().parse().expect("--instances N"),
            "--latency" => parsed.latency = humantime::parse_duration(&value()).expect("--latency like 20ms"),
            "--baseline-sample" => parsed.baseline_sample = Some(value().parse().expect("--baseline-sample N")),
            // cargo bench passes --bench; anything else is a mistake.
            "--bench" => {}
            other => panic!("unknown flag {other}; use --instances N, --latency 20ms, --baseline-sample N"),
        }
    }
    parsed
}

/// Where one slice of the fleet lives.
#[derive(Clone)]
struct Slot {
    cloud: Cloud,
    region: String,
    zone: Option<String>,
}

/// Three regions per cloud that sell 8-GPU H100 nodes, from the catalog.
fn slots(catalog: &Catalog) -> Vec<Slot> {
    let mut slots = Vec::new();
    for cloud in [Cloud::Aws, Cloud::Gcp, Cloud::Azure] {
        let mut regions: Vec<(String, Option<String>)> = catalog
            .instance_types
            .iter()
            .filter(|t| t.cloud == cloud && t.gpu == GPU && t.gpus == 8)
            .flat_map(|t| t.offers.iter().map(|o| (o.region.clone(), o.zones.first().cloned())))
            .collect();
        regions.sort();
        regions.dedup_by(|a, b| a.0 == b.0);
        assert!(regions.len() >= 3, "the catalog sells {GPU} in fewer than 3 {cloud} regions");
        for (region, zone) in regions.into_iter().take(3) {
            let zone = (cloud == Cloud::Gcp).then(|| zone.unwrap_or_else(|| format!("{region}-a")));
            slots.push(Slot { cloud, region, zone });
        }
    }
    slots
}

/// A plan owning `instances` nodes spread evenly over `slots`, in fleets of
/// at most [`MAX_FLEET`] nodes each pinned to its slot.
fn plan_text(name: &str, slots: &[Slot], instances: usize) -> String {
    let mut text = format!("name = \"{name}\"\n");
    let regions = |cloud| -> Vec<String> {
        slots.iter().filter(|s| s.cloud == cloud).map(|s| format!("\"{}\"", s.region)).collect()
    };
    let zones: Vec<String> = slots.iter().filter_map(|s| s.zone.as_ref()).map(|z| format!("\"{z}\"")).collect();
    text += &format!("[providers.aws]\nregions = [{}]\n", regions(Cloud::Aws).join(", "));
    text += &format!("[providers.gcp]\nproject = \"bench-fleet\"\nzones = [{}]\n", zones.join(", "));
    text += &format!(
        "[providers.azure]\nsubscription = \"00000000-0000-0000-0000-000000000000\"\nresource_group = \"bench\"\n\
         regions = [{}]\nssh_public_key = \"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBenchKey bench@example\"\n",
        regions(Cloud::Azure).join(", ")
    );
    let image = "{ aws = \"ami-0123456789abcdef0\", gcp = \"projects/ml-images/global/images/family/trainer\", \
                 azure = \"Canonical:0001-com-ubuntu-server-jammy:22_04-lts-gen2:latest\" }";
    for (index, slot) in slots.iter().enumerate() {
        let share = instances / slots.len() + usize::from(index < instances % slots.len());
        let fleets = share.div_ceil(MAX_FLEET);
        for part in 0..fleets {
            let nodes = share / fleets + usize::from(part < share % fleets);
            let place = slot.zone.clone().unwrap_or_else(|| slot.region.clone());
            text += &format!(
                "[fleets.s{index}p{part}]\ngpu = \"{GPU}\"\ngpus_per_node = 8\nnodes = {nodes}\nmin_nodes = 0\n\
                 prefer = [\"{}:{place}\"]\nimage = {image}\n",
                slot.cloud
            );
        }
    }
    text
}

/// A `gpufleet sim serve` child keeping its world in a file.
struct Sim {
    child: Child,
    url: String,
    /// Read once at start; kept until the simulator goes.
    _scenario: tempfile::NamedTempFile,
}

impl Sim {
    /// A simulator without a world file: saving the whole world after every
    /// change would be the simulator's cost, not gpufleet's. Its lists give
    /// full pages, as the clouds mostly do: the page floor counts those.
    fn start() -> Sim {
        let scenario = tempfile::NamedTempFile::new().expect("a scenario file");
        std::fs::write(scenario.path(), "[paging]\nshort_pages = false\n").expect("the bench scenario is written");
        let mut child = gpufleet()
            .args(["sim", "serve", "--listen", "127.0.0.1:0", "--scenario"])
            .arg(scenario.path())
            .stdout(Stdio::piped())
            .spawn()
            .expect("gpufleet sim serve starts");
        let mut first = String::new();
        BufReader::new(child.stdout.as_mut().unwrap()).read_line(&mut first).unwrap();
        let url = first.trim().strip_prefix("listening on ").expect("the simulator prints its address").to_string();
        Sim { child, url, _scenario: scenario }
    }

    /// Hold every cloud response back by `latency` from now on.
    fn set_latency(&self, latency: Duration) {
        let url = format!("{}/_sim/latency", self.url);
        let body = json!({ "latency": format!("{}ms", latency.as_millis()) });
        runtime().block_on(async {
            let response = reqwest::Client::new().post(&url).json(&body).send().await.unwrap();
            assert!(response.status().is_success(), "{}", response.text().await.unwrap_or_default());
        });
    }

    fn get(&self, path: &str) -> Value {
        let url = format!("{}{path}", self.url);
        runtime().block_on(async { reqwest::get(&url).await.unwrap().json().await.unwrap() })
    }

    fn counters(&self) -> BTreeMap<String, u64> {
        let mut flat = BTreeMap::new();
        if let Value::Object(clouds) = self.get("/_sim/counters") {
            for (cloud, calls) in clouds {
                for (call, n) in calls.as_object().into_iter().flatten() {
                    flat.insert(format!("{cloud} {call}"), n.as_u64().unwrap_or(0));
                }
            }
        }
        flat
    }
}

impl Drop for Sim {
    /// SIGTERM, so the world is saved for the next start (and no simulator
    /// outlives a failed benchmark).
    fn drop(&mut self) {
        // SAFETY: signalling our own child.
        unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM) };
        let _ = self.child.wait();
    }
}

fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: std::sync::OnceLock<tokio::runtime::Runtime> = std::sync::OnceLock::new();
    RUNTIME.get_or_init(|| tokio::runtime::Runtime::new().unwrap())
}

fn gpufleet() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_gpufleet"));
    command.env("NO_COLOR", "1").env_remove("GPUFLEET_STATE").env_remove("GPUFLEET_SIM_URL").stdin(Stdio::null());
    command
}

/// What one run of the binary cost.
struct Cost {
    wall: Duration,
    cpu: Duration,
    peak_rss_mb: f64,
    calls: BTreeMap<String, u64>,
}

impl Cost {
    fn total(&self, read: bool) -> u64 {
        self.calls.iter().filter(|(call, _)| is_read(call) == read).map(|(_, n)| n).sum()
    }
}

/// Lists, gets and operation polls read; everything else changes.
fn is_read(call: &str) -> bool {
    let name = call.rsplit(' ').next().unwrap_or(call);
    ["Describe", "List", "list", "Get", "get", "wait", "Usage"].iter().any(|p| name.contains(p))
}

/// Run `gpufleet ARGS` against `sim`, measuring its own rusage (wait4).
fn measured(sim: &Sim, args: &[&str]) -> Cost {
    let before = sim.counters();
    let started = Instant::now();
    #[expect(clippy::zombie_processes, reason = "reaped by wait4 below, which also reads its rusage")]
    let child = gpufleet()
        .args(args)
        .args(["--sim-url", &sim.url])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut status = 0;
    // SAFETY: rusage is plain data written by the kernel; the pid is our unreaped child.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let pid = unsafe { libc::wait4(child.id() as libc::pid_t, &mut status, 0, &mut usage) };
    let wall = started.elapsed();
    assert!(pid > 0 && libc::WIFEXITED(status), "gpufleet {args:?} did not exit normally");
    let code = libc::WEXITSTATUS(status);
    assert!(code == 0 || code == 2, "gpufleet {args:?} exited {code}");
    let seconds = |t: libc::timeval| Duration::new(t.tv_sec as u64, (t.tv_usec as u32) * 1000);
    let calls = calls_since(&before, sim.counters());
    Cost {
        wall,
        cpu: seconds(usage.ru_utime) + seconds(usage.ru_stime),
        peak_rss_mb: usage.ru_maxrss as f64 / 1024.0,
        calls,
    }
}

/// The calls counted between two readings of the simulator's counters.
fn calls_since(before: &BTreeMap<String, u64>, after: BTreeMap<String, u64>) -> BTreeMap<String, u64> {
    after
        .into_iter()
        .filter_map(|(call, n)| {
            let delta = n - before.get(&call).copied().unwrap_or(0);
            (delta > 0).then_some((call, delta))
        })
        .collect()
}

/// The fewest sequential round trips a refresh needs: EC2 pages per region
/// and Compute Engine's aggregated pages per project run in parallel across
/// scopes; an Azure region lists its scale sets, then their VMs.
fn page_floor(world: &Value, plan: &str) -> (usize, usize) {
    let owned = |tags: &Value| tags["gpufleet-plan"].as_str() == Some(plan);
    let items = |key: &str| world[key].as_array().cloned().unwrap_or_default();
    let mut ec2: BTreeMap<String, usize> = BTreeMap::new();
    for i in items("instances").iter().filter(|i| i["state"] == "running" && owned(&i["tags"])) {
        *ec2.entry(i["region"].as_str().unwrap_or_default().to_string()).or_default() += 1;
    }
    let gce = items("gce_instances").iter().filter(|i| owned(&i["spec"]["labels"])).count();
    let mut sets: BTreeMap<String, usize> = BTreeMap::new();
    for vm in items("azure_vms").iter().filter(|vm| owned(&vm["tags"])) {
        *sets.entry(vm["scale_set_id"].as_str().unwrap_or_default().to_string()).or_default() += 1;
    }
    let ec2_pages: Vec<usize> = ec2.values().map(|n| n.div_ceil(EC2_PAGE).max(1)).collect();
    let gce_pages = gce.div_ceil(GCE_PAGE).max(1);
    let vm_pages: Vec<usize> = sets.values().map(|n| n.div_ceil(ARM_PAGE).max(1)).collect();
    // Azure: one scale-set list for the plan's resource group, then each set's VM pages.
    let scale_set_lists = 1;
    let pages = ec2_pages.iter().sum::<usize>() + gce_pages + scale_set_lists + vm_pages.iter().sum::<usize>();
    let slowest =
        [ec2_pages.iter().copied().max().unwrap_or(1), gce_pages, 1 + vm_pages.iter().copied().max().unwrap_or(0)]
            .into_iter()
            .max()
            .unwrap_or(1);
    (pages, slowest)
}

/// An EC2 instance of the seeded world, as the baseline refreshes it.
struct Ec2Instance {
    id: String,
    region: String,
}

/// The per-resource baseline: for each EC2 instance, the reads the most used
/// IaC tool's AWS provider makes to refresh one `aws_instance`, one after
/// the other, through aws-sdk-ec2 (so every call is a real EC2 call the
/// simulator answers): DescribeInstances by id, DescribeInstanceTypes of its
/// type, DescribeInstanceAttribute for instanceInitiatedShutdownBehavior,
/// disableApiStop, disableApiTermination and userData, DescribeTags by
/// resource-id, DescribeVolumes by attachment.instance-id and DescribeVpcs
/// by vpc-id. At most [`BASELINE_PARALLELISM`] instances in flight, over
/// `walked` instances (the world's EC2 instances, cycled if there are fewer).
fn baseline(sim: &Sim, instances: &[Ec2Instance], walked: usize) -> Duration {
    use aws_sdk_ec2::types::Filter;
    use futures::StreamExt;
    let client = |region: &str| {
        let config = aws_sdk_ec2::Config::builder()
            .behavior_version(aws_sdk_ec2::config::BehaviorVersion::latest())
            .region(aws_sdk_ec2::config::Region::new(region.to_string()))
            .credentials_provider(aws_sdk_ec2::config::Credentials::new("AKIDBENCH", "secret", None, None, "bench"))
            .endpoint_url(&sim.url)
            .build();
        aws_sdk_ec2::Client::from_conf(config)
    };
    let clients: BTreeMap<&str, aws_sdk_ec2::Client> =
        instances.iter().map(|i| (i.region.as_str(), client(&i.region))).collect();
    let filter = |name: &str, value: &str| Filter::builder().name(name).values(value).build();
    let refresh = |instance: &Ec2Instance| {
        let ec2 = clients[instance.region.as_str()].clone();
        let id = instance.id.clone();
        async move {
            let described = ec2.describe_instances().instance_ids(&id).send().await.expect("DescribeInstances");
            let found = &described.reservations()[0].instances()[0];
            let instance_type = found.instance_type().expect("an instance type").clone();
            let vpc = found.vpc_id().expect("a VPC").to_string();
            ec2.describe_instance_types().instance_types(instance_type).send().await.expect("DescribeInstanceTypes");
            for attribute in
                ["instanceInitiatedShutdownBehavior", "disableApiStop", "disableApiTermination", "userData"]
            {
                ec2.describe_instance_attribute()
                    .instance_id(&id)
                    .attribute(attribute.into())
                    .send()
                    .await
                    .expect("DescribeInstanceAttribute");
            }
            ec2.describe_tags().filters(filter("resource-id", &id)).send().await.expect("DescribeTags");
            let volumes = ec2
                .describe_volumes()
                .filters(filter("attachment.instance-id", &id))
                .send()
                .await
                .expect("DescribeVolumes");
            assert_eq!(volumes.volumes().len(), 1, "{id} has its root volume");
            ec2.describe_vpcs().filters(filter("vpc-id", &vpc)).send().await.expect("DescribeVpcs");
        }
    };
    let started = Instant::now();
    runtime().block_on(
        futures::stream::iter((0..walked).map(|n| refresh(&instances[n % instances.len()])))
            .buffer_unordered(BASELINE_PARALLELISM)
            .collect::<Vec<()>>(),
    );
    started.elapsed()
}

/// The simulator on its own: a world of `instances` EC2 instances listed
/// in pages of 1000, with no latency. Instances per second.
fn sim_list_throughput(instances: usize) -> f64 {
    let sim = Sim::start();
    let url = sim.url.clone();
    let rate = runtime().block_on(async move {
        let client = reqwest::Client::new();
        let post = |body: String| {
            client
                .post(&url)
                .header("content-type", "application/x-www-form-urlencoded")
                .header("authorization", "AWS4-HMAC-SHA256 Credential=AKID/20260101/us-east-1/ec2/aws4_request")
                .body(body)
                .send()
        };
        for batch in 0..instances.div_ceil(1000) {
            let count = (instances - batch * 1000).min(1000);
            let body = format!(
                "Action=RunInstances&Version=2016-11-15&ImageId=ami-0123456789abcdef0&InstanceType=p5.48xlarge\
                 &MinCount=1&MaxCount={count}&ClientToken=bench-{batch}"
            );
            let text = post(body).await.unwrap().text().await.unwrap();
            assert!(text.contains("<instancesSet>"), "RunInstances refused: {text}");
        }
        let started = Instant::now();
        let mut token: Option<String> = None;
        let mut listed = 0usize;
        loop {
            let mut body = "Action=DescribeInstances&Version=2016-11-15&MaxResults=1000".to_string();
            if let Some(t) = &token {
                body += &format!("&NextToken={t}");
            }
            let text = post(body).await.unwrap().text().await.unwrap();
            listed += text.matches("<instanceId>").count();
            token =
                text.split("<nextToken>").nth(1).and_then(|rest| rest.split("</nextToken>").next()).map(str::to_string);
            if token.is_none() {
                break;
            }
        }
        listed as f64 / started.elapsed().as_secs_f64()
    });
    drop(sim);
    rate
}

/// The pure planner on `n` observed instances: seconds per plan.
fn planner_alone(n: usize) -> f64 {
    let catalog = Catalog::builtin();
    let text = plan_text("planner", &slots(&catalog), n);
    let plan = gpufleet::plan::parse("planner.toml", &text, Path::new("."), &catalog)
        .unwrap_or_else(|e| panic!("{}", e.render_plain()));
    let observed = support::observed(n, &plan, &catalog);
    let now = chrono::Utc::now();
    let started = Instant::now();
    let reps = 3;
    for _ in 0..reps {
        std::hint::black_box(gpufleet::planner::plan(&plan, &observed, &[], &catalog, now));
    }
    started.elapsed().as_secs_f64() / f64::from(reps)
}

fn main() {
    let args = args();
    let catalog = Catalog::builtin();
    let slots = slots(&catalog);
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let state = state.to_str().unwrap();
    let write_plan = |name: &str, instances: usize| -> PathBuf {
        let path = dir.path().join(format!("{name}.toml"));
        std::fs::write(&path, plan_text(name, &slots, instances)).unwrap();
        path
    };
    let fleet = write_plan("fleet", args.instances);
    let fleet = fleet.to_str().unwrap();

    // Seed the world without latency, then measure with it.
    let sim = Sim::start();
    let seeded = measured(&sim, &["apply", fleet, "--auto-approve", "--state-dir", state]);
    sim.set_latency(args.latency);
    let plan = measured(&sim, &["plan", fleet, "--state-dir", state]);
    let (pages, slowest) = page_floor(&sim.get("/_sim/world"), "fleet");
    let page_floor_s = slowest as f64 * args.latency.as_secs_f64();

    let ec2_instances: Vec<Ec2Instance> = sim.get("/_sim/world")["instances"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|i| i["state"] == "running")
        .filter_map(|i| Some(Ec2Instance { id: i["id"].as_str()?.into(), region: i["region"].as_str()?.into() }))
        .collect();
    let sample = args.baseline_sample.unwrap_or(args.instances).min(args.instances).max(1);
    let before = sim.counters();
    let walked = baseline(&sim, &ec2_instances, sample);
    let baseline_calls = calls_since(&before, sim.counters());
    let baseline_total: u64 = baseline_calls.values().sum();
    assert_eq!(
        baseline_total,
        (sample * BASELINE_CALLS_PER_INSTANCE) as u64,
        "the baseline makes {BASELINE_CALLS_PER_INSTANCE} calls per instance: {baseline_calls:?}"
    );
    let baseline_wall_s = walked.as_secs_f64() * args.instances as f64 / sample as f64;

    // apply 0 → 1,000, then ±10%.
    let small = write_plan("thousand", 1000);
    let small = small.to_str().unwrap();
    let up = measured(&sim, &["apply", small, "--auto-approve", "--state-dir", state]);
    let state_file = Path::new(state).join("thousand.json");
    let state_bytes = std::fs::metadata(&state_file).map_or(0, |m| m.len());
    let serial = |path: &Path| -> u64 {
        std::fs::read(path)
            .ok()
            .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
            .and_then(|v| v["serial"].as_u64())
            .unwrap_or(0)
    };
    let saves = serial(&state_file);
    std::fs::write(small, plan_text("thousand", &slots, 1100)).unwrap();
    let grow = measured(&sim, &["apply", small, "--auto-approve", "--state-dir", state]);
    std::fs::write(small, plan_text("thousand", &slots, 990)).unwrap();
    let shrink = measured(&sim, &["apply", small, "--auto-approve", "--state-dir", state]);
    drop(sim);

    let planner_100k_s = planner_alone(100_000);
    let sim_list_per_s = sim_list_throughput(100_000);

    let read_calls = plan.total(true);
    println!(
        "fleet benchmark: {} instances over {} slots, {} ms per call",
        args.instances,
        slots.len(),
        args.latency.as_millis()
    );
    println!("{:<42} {:>12}", "measure", "value");
    let rows: Vec<(String, String)> = vec![
        ("seed apply (no latency), wall".into(), format!("{:.2} s", seeded.wall.as_secs_f64())),
        ("plan: wall".into(), format!("{:.2} s", plan.wall.as_secs_f64())),
        ("plan: CPU".into(), format!("{:.2} s", plan.cpu.as_secs_f64())),
        ("plan: peak RSS".into(), format!("{:.0} MB", plan.peak_rss_mb)),
        ("plan: read calls".into(), read_calls.to_string()),
        ("pages at the APIs' maximum".into(), pages.to_string()),
        ("page floor (slowest scope)".into(), format!("{page_floor_s:.2} s ({slowest} round trips)")),
        ("per-resource baseline, wall".into(), format!("{baseline_wall_s:.1} s ({sample} instances walked)")),
        ("baseline / plan".into(), format!("{:.0}×", baseline_wall_s / plan.wall.as_secs_f64())),
        ("apply 0 → 1000: mutating calls".into(), up.total(false).to_string()),
        ("apply 0 → 1000: wall".into(), format!("{:.2} s", up.wall.as_secs_f64())),
        ("apply 0 → 1000: state writes".into(), saves.to_string()),
        ("apply 0 → 1000: state bytes written (≤)".into(), (state_bytes * saves).to_string()),
        (
            "apply 1000 → 1100: mutating calls, wall".into(),
            format!("{}, {:.2} s", grow.total(false), grow.wall.as_secs_f64()),
        ),
        (
            "apply 1100 → 990: mutating calls, wall".into(),
            format!("{}, {:.2} s", shrink.total(false), shrink.wall.as_secs_f64()),
        ),
        ("planner alone, 100k instances".into(), format!("{planner_100k_s:.3} s")),
        ("simulator alone, list 100k".into(), format!("{sim_list_per_s:.0} instances/s")),
    ];
    for (what, value) in &rows {
        println!("{what:<42} {value:>12}");
    }
    println!("plan calls by kind: {:?}", plan.calls);
    println!("per-resource baseline calls by kind ({sample} instances): {baseline_calls:?}");
    println!("apply 0 → 1000 calls by kind: {:?}", up.calls);
    let summary = json!({
        "instances": args.instances,
        "latency_ms": args.latency.as_millis() as u64,
        "plan_wall_s": plan.wall.as_secs_f64(),
        "plan_cpu_s": plan.cpu.as_secs_f64(),
        "page_floor_s": page_floor_s,
        "baseline_wall_s": baseline_wall_s,
        "baseline_calls_per_instance": baseline_total as f64 / sample as f64,
        "read_calls": read_calls,
        "pages": pages,
        "apply_1000_calls": up.total(false),
        "apply_1000_wall_s": up.wall.as_secs_f64(),
        "apply_1000_state_writes": saves,
        "apply_1000_state_bytes": state_bytes * saves,
        "resize_up_calls": grow.total(false),
        "resize_down_calls": shrink.total(false),
        "planner_100k_s": planner_100k_s,
        "sim_list_instances_per_s": sim_list_per_s,
        "peak_rss_mb": plan.peak_rss_mb,
    });
    println!("{summary}");
}
