//! Fencing: a run starts a mutating cloud call only while it provably holds
//! the plan's lock.
//!
//! Before every intent is journaled (and so before every create or delete),
//! the run renews its lease. A renewal succeeds only while the lease is still
//! this run's: a run that was paused or cut off while another took the lock
//! over learns it there, and stops before its next call. Between calls a
//! heartbeat renews the lease every third of its length, so a long drain or
//! a slow cloud call never lets a live run's lease run out.

use super::ApplyError;
use crate::model::Clock;
use crate::state::Lease;
use crate::state::lock::DEFAULT_LEASE;
use std::time::Duration;

/// The plan's lock, held by one run.
pub struct Fence<'a> {
    lease: tokio::sync::Mutex<Box<dyn Lease>>,
    clock: &'a dyn Clock,
}

/// How often the heartbeat renews: three chances before the lease ends.
const HEARTBEAT: Duration = Duration::from_secs(DEFAULT_LEASE.as_secs() / 3);

impl<'a> Fence<'a> {
    pub fn new(lease: Box<dyn Lease>, clock: &'a dyn Clock) -> Fence<'a> {
        Fence { lease: tokio::sync::Mutex::new(lease), clock }
    }

    /// Renew the lease now. An error (the lease was taken over, or the
    /// renewal could not be written) means no new call may start.
    pub async fn confirm(&self) -> Result<(), ApplyError> {
        let now = self.clock.now().await?;
        Ok(self.lease.lock().await.renew(now, DEFAULT_LEASE).await?)
    }

    /// Run `work` while a heartbeat renews the lease. A failed heartbeat is
    /// only logged: `work`'s next [`Fence::confirm`] fails the same way and
    /// stops it before it acts.
    pub async fn hold<T>(&self, work: impl Future<Output = T>) -> T {
        let heartbeat = async {
            loop {
                tokio::time::sleep(HEARTBEAT).await;
                if let Err(error) = self.confirm().await {
                    tracing::warn!(%error, "cannot renew the plan's lock");
                }
            }
        };
        tokio::select! {
            out = work => out,
            never = heartbeat => never,
        }
    }
}
