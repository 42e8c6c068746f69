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
    /// A round could not run or failed; the loop goes on with the next.
    RoundFailed { at: DateTime<Utc>, error: &'a ApplyError },
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

/// The name of the leader lease of `plan`'s rebalancer.
pub fn leader_name(plan: &str) -> String {
    format!("{plan}.rebalance")
}

/// Lead the plan's rebalancing until the session is stopped; `metrics` take
/// in every round.
pub async fn watch(
    session: &Session<'_>,
    pace: Pace,
    metrics: &Metrics,
    report: &mut dyn FnMut(Watch<'_>),
) -> Result<(), ApplyError> {
    let Some(mut lease) = lead(session, pace, report).await? else { return Ok(()) };
    report(Watch::Leading { every: pace.every });
    let mut renewed = session.clock.now().await?;
    while !session.stopping() {
        let started = match session.clock.now().await {
            Ok(now) => now,
            Err(error) => {
                report(Watch::RoundFailed { at: renewed, error: &error.into() });
                tokio::time::sleep(pace.poll).await;
                continue;
            }
        };
        let timer = std::time::Instant::now();
        match round(session).await {
            Ok((done, running)) => {
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
                report(Watch::RoundFailed { at: started, error: &error });
            }
        }
        let next = after(started, pace.every);
        loop {
            // A clock that cannot be read now may answer at the next poll.
            if let Ok(now) = session.clock.now().await {
                if now >= after(renewed, pace.lease() / 2) {
                    lease.renew(now, pace.lease()).await?;
                    renewed = now;
                }
                if now >= next {
                    break;
                }
            }
            if session.stopping() {
                break;
            }
            tokio::time::sleep(pace.poll).await;
        }
    }
    Ok(())
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
    let mut lock = apply::lock(session, "rebalance --watch").await?;
    let refreshed = apply::refresh(session).await?;
    let report = apply::apply(session, lock.as_mut(), Mode::Rebalance, refreshed).await?;
    let running = session.backend.load(&session.plan.name).await?.instances;
    Ok((report, running))
}

/// `at + by`, or the end of time when that overflows.
fn after(at: DateTime<Utc>, by: Duration) -> DateTime<Utc> {
    chrono::Duration::from_std(by).ok().and_then(|d| at.checked_add_signed(d)).unwrap_or(DateTime::<Utc>::MAX_UTC)
}
