//! What several commands share: loading a plan with its catalog, and
//! choosing where the clouds are (real, embedded simulator, running simulator).

use super::{Failure, PlanFileArgs, StateLocation, TargetArgs, failure, sim_failure};
use crate::apply::{ApplyError, Clouds, Drain, DrainScript, HomeFailures, NoDrain, Session, Stop, Target};
use crate::catalog::Catalog;
use crate::model::{Clock, SystemClock};
use crate::plan::Plan;
use crate::providers::{RetryPolicy, WaitClock};
use crate::sim::{EmbeddedSim, SimClock};
use crate::state::postgres::PostgresBackend;
use crate::state::{LocalBackend, StateBackend, StateError};
use std::path::Path;
use std::sync::Arc;

/// Load and validate a plan; the catalog comes back with the plan's offerings applied.
pub fn load_plan(path: &Path, args: &PlanFileArgs) -> Result<(Plan, Catalog), Failure> {
    let builtin = Catalog::builtin();
    let plan = crate::plan::load(path, &builtin, args.options()).map_err(Failure::Plan)?;
    // Validation already checked the overrides; this only fails if it and the catalog disagree.
    let catalog = builtin.with_overrides(&plan.offerings).map_err(|problems| {
        let list: Vec<String> = problems.iter().map(|p| format!("offerings[{}]: {p}", p.index)).collect();
        failure(
            format!("{}: the plan's [[offerings]] do not fit the catalog: {}", path.display(), list.join("; ")),
            "fix the [[offerings]] entries named above",
        )
    })?;
    Ok((plan, catalog))
}

/// Where state lives: the PostgreSQL database of `--state URL`, else the state directory.
pub async fn open_state(location: &StateLocation) -> Result<Box<dyn StateBackend>, Failure> {
    Ok(match &location.url {
        Some(url) => Box::new(PostgresBackend::connect(url).await?),
        None => Box::new(LocalBackend::new(&location.state_dir)),
    })
}

/// The clouds a command talks to, and the embedded simulator if it runs one.
pub struct Connected {
    pub backend: Box<dyn StateBackend>,
    pub clouds: Clouds,
    pub clock: Arc<dyn Clock>,
    /// The plan's drain hook, run before a node is deleted.
    pub drain: Box<dyn Drain>,
    embedded: Option<EmbeddedSim>,
}

impl Connected {
    pub async fn open(plan: &Plan, args: &TargetArgs) -> Result<Connected, Failure> {
        Connected::open_with(plan, args, HomeFailures::Fail).await
    }

    /// Like [`Connected::open`]; `home_failures` says whether a configured
    /// cloud that cannot be connected to fails the command.
    pub async fn open_with(plan: &Plan, args: &TargetArgs, home_failures: HomeFailures) -> Result<Connected, Failure> {
        let backend = open_state(&args.state).await?;
        let defaults = RetryPolicy::default();
        let retry = RetryPolicy {
            base: args.retry_base_ms.map_or(defaults.base, std::time::Duration::from_millis),
            call_timeout: args.call_timeout.into(),
            connect_timeout: args.connect_timeout.into(),
            ..defaults
        };
        let mut embedded = None;
        let target = match (&args.sim, &args.sim_url) {
            (Some(scenario), _) => {
                let sim = EmbeddedSim::start(&args.state.state_dir, scenario.as_deref()).await.map_err(sim_failure)?;
                let url = sim.url().to_string();
                embedded = Some(sim);
                Target::Simulator { url }
            }
            (None, Some(url)) => Target::Simulator { url: crate::sim::sim_url(url).map_err(sim_failure)? },
            (None, None) => Target::Clouds,
        };
        let known = backend.load(&plan.name).await?.instances;
        let clock: Arc<dyn Clock> = match &target {
            Target::Clouds => Arc::new(SystemClock),
            Target::Simulator { url } => Arc::new(SimClock { url: url.clone() }),
        };
        let clouds = Clouds::connect(plan, &known, &target, retry, WaitClock(clock.clone()), home_failures)
            .await
            .map_err(|e| {
                failure(
                    format!("cannot connect to {}: {e}", e.cloud),
                    "check the provider's configuration and credentials",
                )
            })?;
        let drain: Box<dyn Drain> = match &plan.rebalance.drain {
            Some(path) => Box::new(DrainScript { path: path.clone(), timeout: plan.rebalance.drain_timeout }),
            None => Box::new(NoDrain),
        };
        Ok(Connected { backend, clouds, clock, drain, embedded })
    }

    pub fn session<'a>(
        &'a self,
        plan: &'a Plan,
        catalog: &'a Catalog,
        events: &'a dyn crate::apply::EventSink,
        stop: &'a Stop,
    ) -> Session<'a> {
        Session {
            plan,
            catalog,
            backend: self.backend.as_ref(),
            clouds: &self.clouds,
            clock: self.clock.as_ref(),
            events,
            drain: self.drain.as_ref(),
            stop,
        }
    }

    /// Let the state backend finish (lease releases), and stop the embedded
    /// simulator, saving its world for the next command.
    pub async fn close(self) -> Result<(), Failure> {
        self.backend.close().await;
        if let Some(sim) = self.embedded {
            sim.stop().await.map_err(sim_failure)?;
        }
        Ok(())
    }
}

/// Take the plan's state lock, waiting up to `timeout` while another run
/// holds it; a lock still held says who holds it, where, and what to do.
pub async fn lock(
    session: &Session<'_>,
    command: &str,
    timeout: std::time::Duration,
) -> Result<Box<dyn crate::state::Lease>, Failure> {
    let deadline = std::time::Instant::now() + timeout;
    let mut announced = false;
    loop {
        match crate::apply::lock(session, command).await {
            Err(ApplyError::State(StateError::Lock(held)))
                if held.is_held() && std::time::Instant::now() < deadline && !session.stopping() =>
            {
                if !std::mem::replace(&mut announced, true) {
                    eprintln!("waiting up to {} for the lock: {held}", humantime::format_duration(timeout));
                }
                tokio::time::sleep(LOCK_POLL.min(deadline.saturating_duration_since(std::time::Instant::now()))).await;
            }
            other => return Ok(other?),
        }
    }
}

/// How often a run waiting for a lock asks again.
const LOCK_POLL: std::time::Duration = std::time::Duration::from_millis(500);

/// A stop requested by the first SIGINT or SIGTERM, or when the deadline
/// passes: the run starts no new call and abandons those in flight (their
/// intents stay open for the next run), saves its state and releases its
/// lock, instead of dying in the middle of a call or waiting on one forever.
pub fn stop_on_signal_or_deadline(deadline: Option<std::time::Duration>) -> Arc<Stop> {
    let stop = Arc::new(Stop::default());
    let flag = Arc::clone(&stop);
    tokio::spawn(async move {
        let Ok(mut terminate) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) else {
            return;
        };
        let deadline = async {
            match deadline {
                Some(d) => tokio::time::sleep(d).await,
                None => std::future::pending().await,
            }
        };
        let why = tokio::select! {
            _ = tokio::signal::ctrl_c() => "interrupted",
            _ = terminate.recv() => "terminated",
            _ = deadline => "deadline reached",
        };
        eprintln!(
            "stopping ({why}): calls in flight are abandoned and left for the next run to reconcile; run the command again to finish"
        );
        flag.request();
    });
    stop
}
