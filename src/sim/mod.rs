//! The cloud simulator: one capacity-aware world served over the clouds' real
//! wire protocols, so that gpufleet (and any official SDK) can rehearse
//! against stock-outs and comebacks without a cloud account.
//!
//! EC2 (with Service Quotas), Compute Engine and Azure Resource Manager are served. Two ways to run it:
//! - `gpufleet sim serve` ([`run_server`]): a standalone loopback server,
//!   optionally persisting its world to a file (`--world`);
//! - `--sim` on plan/apply/destroy ([`EmbeddedSim`]): in-process on an
//!   ephemeral port, its world kept under the state directory so that
//!   consecutive commands see the same clouds.
//!
//! Layout: [`scenario`] (TOML scenario files), [`world`] (the pure model),
//! [`faults`] (injected transient errors and call-count rate limits),
//! `ec2` (Query API wire format; its account reads and per-resource reads
//! in `ec2::account_reads` and `ec2::resource_reads`), `gce_world` and `gce` (Compute Engine's
//! part of the model and its REST wire format), `vmss` (Azure's scale sets in
//! that model) and `arm` (Azure Resource Manager wire format), `account`
//! (images, networks and EC2 vCPU quotas of the simulated accounts, read by
//! each protocol's preflight reads) and `service_quotas` (AWS Service Quotas,
//! awsJson1_1), `admin` (`/_sim/` JSON API), `store` (world
//! files, atomic), `server` (the router; the only socket code).

mod account;
mod admin;
mod arm;
mod ec2;
mod endpoint;
pub mod faults;
mod gce;
mod gce_world;
mod lifecycle;
mod paging;
pub mod scenario;
mod server;
mod service_quotas;
mod store;
mod vmss;
pub mod world;

pub use endpoint::{listen_addr, sim_url};
pub use scenario::{MAX_WIRE_LATENCY, Scenario};
pub use server::serve;
pub use world::World;

use crate::catalog::Catalog;
use chrono::{DateTime, Utc};
use std::io::Write as _;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum SimError {
    #[error("cannot listen on {addr}: {source}")]
    Listen { addr: SocketAddr, source: std::io::Error },
    #[error("the simulator only listens on loopback addresses, not `{addr}`")]
    #[diagnostic(help("use --listen 127.0.0.1:PORT, [::1]:PORT or localhost:PORT (port 0 picks a free one)"))]
    NotLoopback { addr: String },
    #[error("{url} is not the address of a simulator on this machine: {reason}")]
    #[diagnostic(help("give http://HOST:PORT with HOST localhost, 127.x.x.x or [::1], e.g. http://127.0.0.1:8787"))]
    NotLoopbackUrl { url: String, reason: String },
    #[error("cannot read scenario file {path}: {source}", path = path.display())]
    ReadScenario { path: PathBuf, source: std::io::Error },
    #[error("invalid scenario file {path}: {message}", path = path.display())]
    InvalidScenario { path: PathBuf, message: String },
    #[error("cannot read simulator world {path}: {source}", path = path.display())]
    ReadWorld { path: PathBuf, source: std::io::Error },
    #[error("simulator world {path} is unreadable: {message}", path = path.display())]
    #[diagnostic(help("delete the file to start a new world"))]
    InvalidWorld { path: PathBuf, message: String },
    #[error("cannot save simulator world {path}: {source}", path = path.display())]
    WriteWorld { path: PathBuf, source: std::io::Error },
    #[error("there is no simulator world at {path}", path = path.display())]
    #[diagnostic(help("run a command with --sim first; it creates the world"))]
    NoWorld { path: PathBuf },
    #[error("cannot move the simulated clock: {message}")]
    Clock { message: String },
    #[error("cannot write to stdout: {source}")]
    Stdout { source: std::io::Error },
    #[error("the simulator stopped serving: {source}")]
    Serve { source: std::io::Error },
    #[error("the embedded simulator crashed: {message}")]
    Crashed { message: String },
    #[error("cannot ask the simulator at {url}: {message}")]
    Client { url: String, message: String },
}

/// Serves the simulator on `listen` (`HOST:PORT`, loopback only, see
/// [`listen_addr`]) until ctrl-c or SIGTERM. Prints `listening on
/// http://IP:PORT` as the first line on stdout, so that a caller who asked
/// for port 0 learns the port.
pub async fn run_server(
    listen: &str,
    scenario: Option<&Path>,
    world_file: Option<&Path>,
    wire_latency: Option<std::time::Duration>,
) -> Result<(), SimError> {
    let listen = listen_addr(listen)?;
    let scenario = scenario.map(Scenario::load).transpose()?;
    let mut world = open_world(world_file, scenario.as_ref())?;
    if let Some(latency) = wire_latency {
        world.wire_latency = latency;
    }
    let listener =
        tokio::net::TcpListener::bind(listen).await.map_err(|source| SimError::Listen { addr: listen, source })?;
    let addr = listener.local_addr().map_err(|source| SimError::Listen { addr: listen, source })?;
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "listening on http://{addr}")
        .and_then(|()| stdout.flush())
        .map_err(|source| SimError::Stdout { source })?;
    drop(stdout);
    let world = serve(listener, world, world_file.map(Path::to_path_buf), interrupted()).await?;
    match world_file {
        Some(path) => store::save(path, &world),
        None => Ok(()),
    }
}

/// Completes on ctrl-c or SIGTERM.
async fn interrupted() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        if let Ok(mut terminate) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = terminate.recv() => {}
            }
            return;
        }
    }
    // Without a ctrl-c handler either, serve until the process is killed.
    if tokio::signal::ctrl_c().await.is_err() {
        std::future::pending::<()>().await;
    }
}

/// The world stored in `world_file` if it was created from this scenario;
/// otherwise a new one (saved at once, so the file always exists).
fn open_world(world_file: Option<&Path>, scenario: Option<&Scenario>) -> Result<World, SimError> {
    let wanted = scenario.map_or(scenario::NO_SCENARIO_HASH, |s| s.content_hash.as_str());
    if let Some(path) = world_file
        && let Some(world) = store::load(path)?
    {
        if world.scenario_hash == wanted {
            return Ok(world);
        }
        eprintln!(
            "warning: the simulator world {} was created from a different scenario; starting a new world",
            path.display()
        );
    }
    let world = World::new(scenario, &Catalog::builtin()).map_err(|e| SimError::InvalidScenario {
        path: scenario.map(|s| s.path.clone()).unwrap_or_default(),
        message: e.to_string(),
    })?;
    if let Some(path) = world_file {
        store::save(path, &world)?;
    }
    Ok(world)
}

/// Where the embedded simulator keeps its world under a state directory.
fn embedded_world_file(state_dir: &Path) -> PathBuf {
    state_dir.join("sim").join("world.json")
}

/// The simulator running inside a gpufleet command (`--sim`), on an
/// ephemeral loopback port, with its world under the state directory.
pub struct EmbeddedSim {
    url: String,
    world_file: PathBuf,
    shutdown: tokio::sync::oneshot::Sender<()>,
    server: tokio::task::JoinHandle<Result<World, SimError>>,
}

impl EmbeddedSim {
    /// Starts serving the world kept at `state_dir/sim/world.json` (a new
    /// one, with a warning, if it came from another scenario).
    pub async fn start(state_dir: &Path, scenario: Option<&Path>) -> Result<EmbeddedSim, SimError> {
        let scenario = scenario.map(Scenario::load).transpose()?;
        let world_file = embedded_world_file(state_dir);
        let world = open_world(Some(&world_file), scenario.as_ref())?;
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, 0));
        let listener = tokio::net::TcpListener::bind(addr).await.map_err(|source| SimError::Listen { addr, source })?;
        let bound = listener.local_addr().map_err(|source| SimError::Listen { addr, source })?;
        let (shutdown, stopped) = tokio::sync::oneshot::channel::<()>();
        // Stops on `stop()`, and also when the EmbeddedSim is dropped.
        let until_stopped = async move {
            let _ = stopped.await;
        };
        let server = tokio::spawn(serve(listener, world, Some(world_file.clone()), until_stopped));
        Ok(EmbeddedSim { url: format!("http://{bound}"), world_file, shutdown, server })
    }

    /// `http://127.0.0.1:PORT`, the endpoint to give the SDKs.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Stops serving and saves the final world (call counters included).
    pub async fn stop(self) -> Result<(), SimError> {
        let _ = self.shutdown.send(());
        let world = self.server.await.map_err(|e| SimError::Crashed { message: e.to_string() })??;
        store::save(&self.world_file, &world)
    }
}

/// Moves the embedded simulator's clock forward (`gpufleet sim advance 20m`),
/// applying the scenario's timeline; returns the new simulated time.
pub fn advance_embedded(state_dir: &Path, by: std::time::Duration) -> Result<DateTime<Utc>, SimError> {
    let path = embedded_world_file(state_dir);
    let mut world = store::load(&path)?.ok_or_else(|| SimError::NoWorld { path: path.clone() })?;
    let now = world.advance(by).map_err(|e| SimError::Clock { message: e.to_string() })?;
    store::save(&path, &world)?;
    Ok(now)
}

/// Asks a running simulator for its simulated time (`GET {url}/_sim/time`).
pub async fn sim_now(url: &str) -> Result<DateTime<Utc>, SimError> {
    let client = reqwest::Client::new();
    sim_time(url, client.get(format!("{}/_sim/time", url.trim_end_matches('/')))).await
}

/// Moves a running simulator's clock forward (`POST {url}/_sim/advance`).
pub async fn sim_advance(url: &str, by: std::time::Duration) -> Result<DateTime<Utc>, SimError> {
    let body = serde_json::json!({ "by": humantime::format_duration(by).to_string() });
    let client = reqwest::Client::new();
    sim_time(url, client.post(format!("{}/_sim/advance", url.trim_end_matches('/'))).json(&body)).await
}

/// Sends an admin request that answers with the simulated time.
async fn sim_time(url: &str, request: reqwest::RequestBuilder) -> Result<DateTime<Utc>, SimError> {
    #[derive(serde::Deserialize)]
    struct Time {
        now: DateTime<Utc>,
    }
    let failed = |message: String| SimError::Client { url: url.to_string(), message };
    let response = request.send().await.map_err(|e| failed(e.to_string()))?;
    let response = response.error_for_status().map_err(|e| failed(e.to_string()))?;
    let time: Time = response.json().await.map_err(|e| failed(e.to_string()))?;
    Ok(time.now)
}

/// The clock of a running simulator, over its admin API: commands run
/// against a simulator live in its simulated time, so tests advance that
/// instead of sleeping, and a command that waits for the simulated clouds
/// moves it on.
pub struct SimClock {
    pub url: String,
}

fn clock_error(e: SimError) -> crate::model::ClockError {
    crate::model::ClockError { source_name: "simulator".into(), message: e.to_string() }
}

#[async_trait::async_trait]
impl crate::model::Clock for SimClock {
    async fn now(&self) -> Result<DateTime<Utc>, crate::model::ClockError> {
        sim_now(&self.url).await.map_err(clock_error)
    }

    async fn sleep(&self, by: std::time::Duration) -> Result<(), crate::model::ClockError> {
        sim_advance(&self.url, by).await.map(drop).map_err(clock_error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn sim_run_server_refuses_non_loopback_addresses() {
        let err = run_server("0.0.0.0:0", None, None, None).await.unwrap_err();
        assert!(matches!(err, SimError::NotLoopback { .. }), "{err}");
    }

    #[tokio::test]
    async fn sim_embedded_keeps_its_world_and_resets_on_another_scenario() {
        let state = tempfile::tempdir().unwrap();
        let scenario = state.path().join("s.toml");
        std::fs::write(&scenario, "start = \"2026-05-01T00:00:00Z\"\n").unwrap();

        let sim = EmbeddedSim::start(state.path(), Some(&scenario)).await.unwrap();
        assert!(sim.url().starts_with("http://127.0.0.1:"));
        assert_eq!(format_now(sim_now(sim.url()).await.unwrap()), "2026-05-01T00:00:00Z");
        sim.stop().await.unwrap();

        let now = advance_embedded(state.path(), std::time::Duration::from_secs(20 * 60)).unwrap();
        assert_eq!(format_now(now), "2026-05-01T00:20:00Z");
        let sim = EmbeddedSim::start(state.path(), Some(&scenario)).await.unwrap();
        assert_eq!(format_now(sim_now(sim.url()).await.unwrap()), "2026-05-01T00:20:00Z");
        sim.stop().await.unwrap();

        std::fs::write(&scenario, "start = \"2026-06-01T00:00:00Z\"\n").unwrap();
        let sim = EmbeddedSim::start(state.path(), Some(&scenario)).await.unwrap();
        assert_eq!(format_now(sim_now(sim.url()).await.unwrap()), "2026-06-01T00:00:00Z");
        sim.stop().await.unwrap();
    }

    #[test]
    fn sim_advance_without_a_world_says_what_to_do() {
        let state = tempfile::tempdir().unwrap();
        let err = advance_embedded(state.path(), std::time::Duration::from_secs(1)).unwrap_err();
        assert!(matches!(err, SimError::NoWorld { .. }), "{err}");
    }

    fn format_now(now: DateTime<Utc>) -> String {
        admin::format_time(now)
    }
}
