//! clap definitions of every command and flag.

use crate::plan::MAX_DURATION;
use clap::{Args, Parser, Subcommand};
use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::PathBuf;

/// The exit codes, as `--help` shows them; scripts and CI branch on them.
pub const EXIT_CODES: &str = "Exit codes:
  0  success (for `plan --detailed-exitcode`: no changes)
  1  error, usage errors (a mistyped command or flag) included; for `check`:
     some fleet cannot reach `min_nodes`
  2  changes present (`plan --detailed-exitcode`), or `apply` or `rebalance`
     finished with a partial fill: some fleet below its `nodes` but at or
     above `min_nodes`; for `check`: some fleet can reach `min_nodes` only";

#[derive(Debug, Parser)]
#[command(
    name = "gpufleet",
    version,
    about = "Provision GPU capacity across AWS, Google Cloud and Azure from declarative plan files",
    long_about = "gpufleet reads a plan file that says how much GPU capacity each fleet needs and where \
it may live, lists what the clouds already run for the plan, and creates or deletes instances until \
the clouds match the plan. When one offering is sold out it records the shortage and places the nodes \
on the next allowed offering.\n\nTry it without a cloud account:\n  gpufleet apply plans/demo.toml --sim --auto-approve",
    after_help = EXIT_CODES
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check a plan file against the format and the catalog; touches no cloud.
    Validate(ValidateArgs),
    /// Show what apply would change, with costs before and after.
    Plan(PlanArgs),
    /// Before a first apply: ask every cloud, read-only, whether each offering
    /// a fleet may use is sold there, has its image and network, and how many
    /// nodes its quota admits; each problem with the cloud's code and the fix.
    Check(CheckArgs),
    /// Make the clouds match a plan file or a saved plan.
    Apply(ApplyArgs),
    /// Delete every instance a plan owns.
    Destroy(DestroyArgs),
    /// One rebalance round: fill shortfalls, then move nodes from fallback
    /// offerings to better ones, make-before-break, within the plan's
    /// `[rebalance]` budget. Never asks: it is meant for a scheduler.
    Rebalance(RebalanceArgs),
    /// Inspect the local state.
    State(StateArgs),
    /// What every apply, destroy and rebalance round of a plan did, oldest first.
    History(HistoryArgs),
    /// Print the JSON Schema of plan files (for editors).
    Schema,
    /// Run or drive the built-in cloud simulator.
    Sim(SimArgs),
    /// Read from the clouds which GPU instance types they sell where.
    Catalog(CatalogArgs),
}

#[derive(Debug, Args)]
pub struct ValidateArgs {
    /// Plan file (TOML).
    pub plan: PathBuf,
    #[command(flatten)]
    pub plan_file: PlanFileArgs,
    /// Directory whose `catalog/refreshed.json` (written by `catalog refresh`)
    /// is merged over the built-in catalog, when there is one.
    #[arg(long, env = "GPUFLEET_STATE_DIR", default_value = "state")]
    pub state_dir: PathBuf,
}

/// How a plan file is read.
#[derive(Debug, Clone, Default, Args)]
pub struct PlanFileArgs {
    /// Accept a fleet's `startup` script outside the plan file's directory;
    /// by default a path that leaves it (through `..` or a symlink) is refused.
    #[arg(long)]
    pub allow_startup_outside: bool,
    /// The refreshed catalog (`gpufleet catalog refresh`) to use over the
    /// built-in one when the file exists; default `catalog/refreshed.json` in
    /// the state directory.
    #[arg(long, env = "GPUFLEET_CATALOG", value_name = "FILE")]
    pub catalog: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct CatalogArgs {
    #[command(subcommand)]
    pub command: CatalogCommand,
}

#[derive(Debug, Subcommand)]
pub enum CatalogCommand {
    /// Read, from each cloud the plan configures and read-only, which GPU
    /// instance types every region and zone sells to the plan's accounts
    /// (and which the account may not use), and write them to the refreshed
    /// catalog file that plan, check, apply and rebalance then use over the
    /// built-in catalog. Prices stay the built-in data's.
    Refresh(CatalogRefreshArgs),
}

#[derive(Debug, Args)]
pub struct CatalogRefreshArgs {
    /// Plan file (TOML): its providers name the accounts (and AWS regions) to read.
    pub plan: PathBuf,
    /// Where to write the refreshed catalog; default: `--catalog FILE`, else
    /// `catalog/refreshed.json` in the state directory, where the other commands look.
    #[arg(short = 'o', long = "out", value_name = "FILE")]
    pub out: Option<PathBuf>,
    /// Print one JSON object instead of the summary.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub target: TargetArgs,
}

impl PlanFileArgs {
    pub fn options(&self) -> crate::plan::LoadOptions {
        crate::plan::LoadOptions { allow_startup_outside: self.allow_startup_outside }
    }

    /// The refreshed catalog file: `--catalog FILE`, else `catalog/refreshed.json`
    /// in `state_dir` (beside the simulator's `sim/`, apart from plans' `<plan>.json`).
    pub fn catalog_file(&self, state_dir: &std::path::Path) -> PathBuf {
        self.catalog.clone().unwrap_or_else(|| state_dir.join("catalog").join("refreshed.json"))
    }
}

/// Where state lives: a local directory, or a database a team shares.
#[derive(Debug, Clone, Args)]
pub struct StateLocation {
    /// Directory holding state, lock and journal files (and the embedded simulator's world).
    #[arg(long, env = "GPUFLEET_STATE_DIR", default_value = "state")]
    pub state_dir: PathBuf,
    /// Keep state, locks, journal and history in PostgreSQL instead:
    /// postgres://USER:PASSWORD@HOST:PORT/DATABASE. The password is never printed.
    #[arg(long = "state", env = "GPUFLEET_STATE", value_name = "URL", hide_env_values = true)]
    pub url: Option<String>,
}

/// Where the clouds are: real endpoints, the embedded simulator, or a running one.
#[derive(Debug, Args, Clone)]
pub struct TargetArgs {
    #[command(flatten)]
    pub state: StateLocation,
    #[command(flatten)]
    pub plan_file: PlanFileArgs,
    /// Run against the built-in simulator, in-process, with an optional scenario file;
    /// its world is kept under the state directory between commands.
    #[arg(long, value_name = "SCENARIO", num_args = 0..=1, conflicts_with = "sim_url")]
    pub sim: Option<Option<PathBuf>>,
    /// Point every provider at a running simulator (`gpufleet sim serve`).
    #[arg(long, env = "GPUFLEET_SIM_URL", value_name = "URL")]
    pub sim_url: Option<String>,
    /// First backoff ceiling of retried cloud calls, in milliseconds (default
    /// 200, doubling per attempt). Low values suit simulators that throttle
    /// by call count.
    #[arg(long, env = "GPUFLEET_RETRY_BASE_MS", value_name = "MS")]
    pub retry_base_ms: Option<u64>,
    /// Longest one attempt of a cloud call may take, connecting included
    /// (`60s`, `2m`); a call that gets no answer is retried like any
    /// transient failure, then reported as failed.
    #[arg(long, value_name = "DURATION", default_value = "60s", value_parser = positive_duration)]
    pub call_timeout: humantime::Duration,
    /// Longest opening a connection to a cloud's endpoint may take (EC2 and
    /// Azure; Compute Engine's client is bounded by `--call-timeout` alone).
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = positive_duration)]
    pub connect_timeout: humantime::Duration,
    /// How long to wait for the plan's lock when another run holds it
    /// (e.g. `2m`); by default a held lock fails at once, naming its holder.
    #[arg(long, value_name = "DURATION", default_value = "0s", value_parser = duration)]
    pub lock_timeout: humantime::Duration,
}

#[derive(Debug, Args)]
pub struct PlanArgs {
    /// Plan file (TOML).
    pub plan: PathBuf,
    /// Save the plan to FILE so that `apply FILE` executes exactly it (also `-out FILE`).
    #[arg(short = 'o', long = "out", value_name = "FILE")]
    pub out: Option<PathBuf>,
    /// Print one JSON object instead of the human diff.
    #[arg(long)]
    pub json: bool,
    /// Exit 0 when there is nothing to do, 2 when there are changes, 1 on error.
    #[arg(long)]
    pub detailed_exitcode: bool,
    /// Name every instance id instead of a few and a count.
    #[arg(short, long)]
    pub verbose: bool,
    #[command(flatten)]
    pub target: TargetArgs,
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// Plan file (TOML).
    pub plan: PathBuf,
    /// Print one JSON object instead of the tables.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub target: TargetArgs,
}

#[derive(Debug, Args)]
pub struct ApplyArgs {
    /// Plan file (TOML), or a plan saved with `plan --out`.
    pub plan: PathBuf,
    #[command(flatten)]
    pub run: RunArgs,
}

#[derive(Debug, Args)]
pub struct DestroyArgs {
    /// Plan file (TOML).
    pub plan: PathBuf,
    #[command(flatten)]
    pub run: RunArgs,
}

#[derive(Debug, Args)]
pub struct RebalanceArgs {
    /// Plan file (TOML).
    pub plan: PathBuf,
    /// Show the round's changes (with `--json`, as one JSON object) and change nothing.
    #[arg(long, conflicts_with = "watch")]
    pub dry_run: bool,
    /// Keep running rounds, one every `--every` (or the plan's `[rebalance] every`),
    /// while leading the plan's rebalancing; another `--watch` on the same plan
    /// waits and takes over when this one stops.
    #[arg(long)]
    pub watch: bool,
    /// Time between rounds with `--watch` (`90s`, `5m`), on the clock of the clouds
    /// (the simulator's, against one).
    #[arg(long, value_name = "DURATION", requires = "watch", value_parser = duration)]
    pub every: Option<humantime::Duration>,
    /// Serve Prometheus metrics at http://ADDR/metrics while watching (port 0
    /// picks a free one; the first line printed says which).
    #[arg(long, value_name = "ADDR", requires = "watch")]
    pub metrics_listen: Option<SocketAddr>,
    #[command(flatten)]
    pub run: RunArgs,
}

/// How apply and destroy run.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// Do not ask for confirmation.
    #[arg(long)]
    pub auto_approve: bool,
    /// Print JSON lines, one event per step, and a final summary.
    #[arg(long)]
    pub json: bool,
    /// Name every instance id and give the clouds' messages whole, instead
    /// of a few ids and a count, and a message's first sentence.
    #[arg(short, long)]
    pub verbose: bool,
    /// Start no new cloud call after this long (`90s`, `30m`); calls in flight
    /// are abandoned (the next run reconciles them), and the run exits 1 as
    /// interrupted.
    #[arg(long, value_name = "DURATION", value_parser = duration)]
    pub deadline: Option<humantime::Duration>,
    #[command(flatten)]
    pub target: TargetArgs,
}

#[derive(Debug, Args)]
pub struct HistoryArgs {
    /// Plan file, or a plan's name.
    pub plan: String,
    /// Print a JSON array instead of the table.
    #[arg(long)]
    pub json: bool,
    /// Write one self-contained HTML page to FILE instead: nodes per
    /// placement over time for each fleet, shortages in force, moves, cost
    /// per hour, and every run in a table.
    #[arg(long, value_name = "FILE", conflicts_with = "json")]
    pub html: Option<PathBuf>,
    #[command(flatten)]
    pub state: StateLocation,
}

#[derive(Debug, Args)]
pub struct StateArgs {
    #[command(subcommand)]
    pub command: StateCommand,
}

#[derive(Debug, Subcommand)]
pub enum StateCommand {
    /// List the instances the state knows.
    List(StateListArgs),
    /// Show one instance (by id) with everything the state knows of it.
    Show(StateShowArgs),
    /// Drop instances from a plan's state without touching the clouds (after
    /// deleting them by hand where gpufleet cannot reach).
    Forget(StateForgetArgs),
    /// Take a plan's lock from its holder, alive or not, recording who did
    /// it and why in the plan's history. A live holder stops before its next
    /// cloud call; the next apply finishes what it left.
    Unlock(StateUnlockArgs),
    /// Put a plan's unreadable state back in working order: the state before
    /// its last save if that reads, else an empty one whose instances the
    /// next plan or apply re-adopts from the clouds. The damaged state is kept.
    Repair(StateRepairArgs),
    /// Copy the state directory's plans (state, journal, history) into a
    /// PostgreSQL database: the move from local to team state.
    Push(StatePushArgs),
    /// Copy plans from a PostgreSQL database into the state directory.
    Pull(StatePullArgs),
}

#[derive(Debug, Args)]
pub struct StatePushArgs {
    /// The database: postgres://USER:PASSWORD@HOST:PORT/DATABASE (never printed).
    #[arg(long, value_name = "URL", env = "GPUFLEET_STATE", hide_env_values = true)]
    pub to: String,
    #[command(flatten)]
    pub copy: StateCopyArgs,
}

#[derive(Debug, Args)]
pub struct StatePullArgs {
    /// The database: postgres://USER:PASSWORD@HOST:PORT/DATABASE (never printed).
    #[arg(long, value_name = "URL", env = "GPUFLEET_STATE", hide_env_values = true)]
    pub from: String,
    #[command(flatten)]
    pub copy: StateCopyArgs,
}

/// What `state push` and `state pull` copy.
#[derive(Debug, Args)]
pub struct StateCopyArgs {
    /// Only this plan (repeatable); default: every plan with state.
    #[arg(long = "plan", value_name = "NAME")]
    pub plans: Vec<String>,
    /// Replace a plan's state, journal and history where the target already has them.
    #[arg(long)]
    pub force: bool,
    /// The local state directory.
    #[arg(long, env = "GPUFLEET_STATE_DIR", default_value = "state")]
    pub state_dir: PathBuf,
}

#[derive(Debug, Args)]
pub struct StateForgetArgs {
    /// The plan (by name) whose state holds the instances.
    #[arg(long)]
    pub plan: String,
    /// Instance ids to forget.
    #[arg(required = true)]
    pub ids: Vec<String>,
    #[command(flatten)]
    pub state: StateLocation,
}

#[derive(Debug, Args)]
pub struct StateUnlockArgs {
    /// The plan (by name) whose lock to take over.
    pub plan: String,
    /// Confirm the takeover: the holder may still be running.
    #[arg(long, required = true)]
    pub force: bool,
    /// Why, recorded in the plan's history with who took the lock over.
    #[arg(long, value_name = "TEXT")]
    pub reason: String,
    #[command(flatten)]
    pub state: StateLocation,
}

#[derive(Debug, Args)]
pub struct StateRepairArgs {
    /// The plan (by name) whose state to repair.
    pub plan: String,
    #[command(flatten)]
    pub state: StateLocation,
}

#[derive(Debug, Args)]
pub struct StateListArgs {
    /// Only this plan (by name); default: every plan in the state directory.
    #[arg(long)]
    pub plan: Option<String>,
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub state: StateLocation,
}

#[derive(Debug, Args)]
pub struct StateShowArgs {
    /// Instance id.
    pub id: String,
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub state: StateLocation,
}

#[derive(Debug, Args)]
pub struct SimArgs {
    #[command(subcommand)]
    pub command: SimCommand,
}

#[derive(Debug, Subcommand)]
pub enum SimCommand {
    /// Serve the simulated clouds over HTTP (EC2 Query API and the `/_sim/` admin API).
    /// Prints `listening on http://ADDR` as its first line.
    Serve(SimServeArgs),
    /// Move the embedded simulator's clock forward (e.g. `20m`, `1h30m`).
    Advance(SimAdvanceArgs),
}

#[derive(Debug, Args)]
pub struct SimServeArgs {
    /// Loopback address to listen on: 127.x.x.x:PORT, [::1]:PORT or
    /// localhost:PORT; port 0 picks a free one.
    #[arg(long, default_value = "127.0.0.1:0")]
    pub listen: String,
    /// Scenario file (TOML): capacity per offering over simulated time.
    #[arg(long)]
    pub scenario: Option<PathBuf>,
    /// Keep the world in this file (loaded at start, saved after every change).
    #[arg(long)]
    pub world: Option<PathBuf>,
    /// Hold every cloud response back this long in real time (e.g. 20ms, at
    /// most 10s), so benchmarks see round trips; the simulated clock does
    /// not move. Overrides the scenario's `wire_latency`.
    #[arg(long, value_parser = wire_latency)]
    pub latency: Option<humantime::Duration>,
}

fn wire_latency(text: &str) -> Result<humantime::Duration, String> {
    let latency = duration(text)?;
    if *latency > crate::sim::MAX_WIRE_LATENCY {
        return Err(format!("at most {}", humantime::format_duration(crate::sim::MAX_WIRE_LATENCY)));
    }
    Ok(latency)
}

#[derive(Debug, Args)]
pub struct SimAdvanceArgs {
    /// How far to move the clock: `90s`, `20m`, `1h`.
    #[arg(value_parser = duration)]
    pub duration: humantime::Duration,
    #[arg(long, env = "GPUFLEET_STATE_DIR", default_value = "state")]
    pub state_dir: PathBuf,
}

/// A duration flag: as humantime writes it, at most [`MAX_DURATION`] (a
/// longer one overflowed the clock it was added to).
fn duration(text: &str) -> Result<humantime::Duration, String> {
    let duration: humantime::Duration = text.parse().map_err(|e| format!("{e}; write it like 90s, 5m or 1h30m"))?;
    if *duration > MAX_DURATION {
        return Err("longer than a year, the most gpufleet takes for any duration".into());
    }
    Ok(duration)
}

/// A duration flag that must be above zero: a timeout of nothing fails every call.
fn positive_duration(text: &str) -> Result<humantime::Duration, String> {
    let parsed = duration(text)?;
    if parsed.is_zero() {
        return Err("must be above zero, e.g. 30s".into());
    }
    Ok(parsed)
}

/// Accepts Terraform's single-dash `-out FILE` / `-out=FILE` as `--out`.
pub fn normalize(args: impl IntoIterator<Item = OsString>) -> Vec<OsString> {
    args.into_iter()
        .map(|a| match a.to_str() {
            Some("-out") => OsString::from("--out"),
            Some(s) if s.starts_with("-out=") => OsString::from(format!("-{s}")),
            _ => a,
        })
        .collect()
}
