//! The scheduled rebalancer: `gpufleet rebalance --watch`.
//!
//! A reconcile loop in kube-runtime's shape: take the plan's leader lease,
//! then run a round (refresh, decide, act) every `every`, renewing the lease
//! as it goes. One rebalancer acts per plan: a second one waits, saying who
//! leads, and takes over when the leader stops or its lease runs out. Time
//! comes from the session's clock, so against the simulator the loop follows
//! simulated time and tests move it instead of sleeping. A stop (SIGINT,
//! SIGTERM) ends the loop between calls; dropping the lease releases it.

pub mod metrics;

use crate::apply::{self, ApplyError, ApplyReport, Mode, Session};
use crate::state::lock::{Holder, LockError};
use crate::state::{Lease, StateError};
use chrono::{DateTime, Utc};
use metrics::Metrics;
use std::time::Duration;

/// What the loop reports as it goes.
pub enum Watch<'a> {
    /// Another rebalancer leads this plan; this one waits.
    Waiting { holder: &'a Holder },
    /// This rebalancer leads now.
    Leading { every: Duration },
    /// A round ran.
    Round { at: DateTime<Utc>, report: &'a ApplyReport },
    /// A round could not run or failed. The loop goes on: after `retry_in`
    /// when the failure may pass by itself (the database or the clock was
    /// unreachable), else with the next round.
    RoundFailed { at: DateTime<Utc>, error: &'a ApplyError, retry_in: Option<Duration> },
    /// The leader lease could not be taken or kept for now (the database is
    /// unreachable); asked again after `retry_in`.
    LeaseUnavailable { error: &'a ApplyError, retry_in: Duration },
    /// Another rebalancer took the leader lease over (this one was paused or
    /// cut off past its lease); this one goes back to waiting.
    LostLead,
}

/// How the loop paces itself.
#[derive(Debug, Clone, Copy)]
pub struct Pace {
    /// Time between the starts of two rounds, on the session's clock.
    pub every: Duration,
    /// How often, in real time, the loop looks at the clock while it waits
    /// (and a waiting rebalancer asks for the lease again).
    pub poll: Duration,
}

impl Pace {
    /// A leader's lease outlives two rounds, so that a slow round does not
    /// lose it, yet a dead leader on another host is replaced soon after.
    fn lease(&self) -> Duration {
        self.every.saturating_mul(2).max(Duration::from_secs(60))
    }
}

/// Real-time waits after failures that may pass by themselves: 1 s,
/// doubling up to a minute, back to 1 s after a success.
#[derive(Debug, Default)]
struct Backoff {
    failures: u32,
}

impl Backoff {
    const FIRST: Duration = Duration::from_secs(1);
    const MAX: Duration = Duration::from_secs(60);

    fn next(&mut self) -> Duration {
        let wait = Self::FIRST.saturating_mul(1 << self.failures.min(6)).min(Self::MAX);
        self.failures = self.failures.saturating_add(1);
        wait
    }
}

/// Whether `error` may pass by itself: the state database or the clock was
/// unreachable. Anything else waits for the next round.
fn is_transient(error: &ApplyError) -> bool {
    matches!(error, ApplyError::State(StateError::Database { .. }) | ApplyError::Clock(_))
}

/// The name of the leader lease of `plan`'s rebalancer.
pub fn leader_name(plan: &str) -> String {
    format!("{plan}.rebalance")
}

/// Lead the plan's rebalancing until the session is stopped; `metrics` take
/// in every round. A database outage is waited out; a lost leader lease
/// sends the loop back to waiting for it.
pub async fn watch(
    session: &Session<'_>,
    pace: Pace,
    metrics: &Metrics,
    report: &mut dyn FnMut(Watch<'_>),
) -> Result<(), ApplyError> {
    let mut backoff = Backoff::default();
    while !session.stopping() {
        let lease = match lead(session, pace, report).await {
            Ok(Some(lease)) => lease,
            Ok(None) => break,
            Err(error) if is_transient(&error) => {
                let retry_in = backoff.next();
                report(Watch::LeaseUnavailable { error: &error, retry_in });
                pause(session, pace, retry_in).await;
                continue;
            }
            Err(error) => return Err(error),
        };
        backoff = Backoff::default();
        report(Watch::Leading { every: pace.every });
        if lead_rounds(session, pace, metrics, report, lease).await? == Led::Lost {
            report(Watch::LostLead);
        }
    }
    Ok(())
}

/// How a stretch of leading ended.
#[derive(Debug, PartialEq, Eq)]
enum Led {
    Stopped,
    Lost,
}

/// Run a round every `pace.every` while holding `lease`, until stopped or
/// until the lease is lost.
async fn lead_rounds(
    session: &Session<'_>,
    pace: Pace,
    metrics: &Metrics,
    report: &mut dyn FnMut(Watch<'_>),
    mut lease: Box<dyn Lease>,
) -> Result<Led, ApplyError> {
    let mut renewed = session.clock.now().await?;
    let mut backoff = Backoff::default();
    while !session.stopping() {
        let started = match session.clock.now().await {
            Ok(now) => now,
            Err(error) => {
                let retry_in = backoff.next();
                report(Watch::RoundFailed { at: renewed, error: &error.into(), retry_in: Some(retry_in) });
                pause(session, pace, retry_in).await;
                continue;
            }
        };
        let timer = std::time::Instant::now();
        let mut retry_at = None;
        match round(session).await {
            Ok((done, running)) => {
                backoff = Backoff::default();
                tracing::info!(
                    plan = %session.plan.name,
                    created = done.created,
                    deleted = done.deleted,
                    moves_started = done.moves.started,
                    moves_finished = done.moves.finished,
                    "rebalance round"
                );
                metrics.round(session.plan, session.catalog, &done, &running, timer.elapsed());
                report(Watch::Round { at: started, report: &done });
            }
            Err(error) => {
                tracing::warn!(plan = %session.plan.name, %error, "rebalance round failed");
                metrics.failed_round(timer.elapsed());
                let retry_in = is_transient(&error).then(|| backoff.next());
                retry_at = retry_in.map(|wait| std::time::Instant::now() + wait);
                report(Watch::RoundFailed { at: started, error: &error, retry_in });
            }
        }
        let next = after(started, pace.every);
        loop {
            // A clock that cannot be read now may answer at the next poll.
            if let Ok(now) = session.clock.now().await {
                if now >= after(renewed, pace.lease() / 2) {
                    match lease.renew(now, pace.lease()).await {
                        Ok(()) => renewed = now,
                        Err(StateError::Lock(LockError::Lost { .. })) => return Ok(Led::Lost),
                        // Unreachable for now: asked again at the next poll,
                        // while the lease still runs.
                        Err(error) => tracing::warn!(%error, "cannot renew the leader lease"),
                    }
                }
                if now >= next {
                    break;
                }
            }
            if session.stopping() || retry_at.is_some_and(|at| std::time::Instant::now() >= at) {
                break;
            }
            tokio::time::sleep(pace.poll).await;
        }
    }
    Ok(Led::Stopped)
}

/// Wait `wait` in real time, or less if the session stops.
async fn pause(session: &Session<'_>, pace: Pace, wait: Duration) {
    let until = std::time::Instant::now() + wait;
    while !session.stopping() && std::time::Instant::now() < until {
        tokio::time::sleep(pace.poll.min(until.saturating_duration_since(std::time::Instant::now()))).await;
    }
}

/// Take the leader lease, waiting while another rebalancer holds it.
/// `None` when the session was stopped before it could.
async fn lead(
    session: &Session<'_>,
    pace: Pace,
    report: &mut dyn FnMut(Watch<'_>),
) -> Result<Option<Box<dyn Lease>>, ApplyError> {
    let name = leader_name(&session.plan.name);
    let mut announced: Option<Holder> = None;
    while !session.stopping() {
        let now = session.clock.now().await?;
        let me = Holder::this_process("rebalance --watch", now, pace.lease());
        match session.backend.lead(&name, me).await {
            Ok(lease) => return Ok(Some(lease)),
            Err(StateError::Lock(LockError::Held { holder, .. } | LockError::HeldShared { holder, .. })) => {
                let changed = announced.as_ref().is_none_or(|h| h.pid != holder.pid || h.host != holder.host);
                if changed {
                    report(Watch::Waiting { holder: &holder });
                    announced = Some(*holder);
                }
            }
            Err(StateError::Lock(LockError::HeldUnknown { .. } | LockError::HeldUnreadable { .. })) => {}
            Err(e) => return Err(e.into()),
        }
        tokio::time::sleep(pace.poll).await;
    }
    Ok(None)
}

/// One round under the plan's lock: refresh, then fill and move. Returns
/// the report and what runs afterwards.
async fn round(session: &Session<'_>) -> Result<(ApplyReport, Vec<crate::model::Instance>), ApplyError> {
    let lock = apply::lock(session, "rebalance --watch").await?;
    let refreshed = apply::refresh(session).await?;
    let report = apply::apply(session, lock, Mode::Rebalance, refreshed).await?;
    let running = session.backend.load(&session.plan.name).await?.instances;
    Ok((report, running))
}

/// `at + by`, or the end of time when that overflows.
fn after(at: DateTime<Utc>, by: Duration) -> DateTime<Utc> {
    chrono::Duration::from_std(by).ok().and_then(|d| at.checked_add_signed(d)).unwrap_or(DateTime::<Utc>::MAX_UTC)
}
