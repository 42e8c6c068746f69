//! The boundary to the clouds: one [`Provider`] trait, one module per cloud.
//!
//! Providers are the only code that speaks to a cloud. They list what the plan
//! owns (by ownership tags), create N nodes at one placement with an
//! idempotency token, delete a set of instances, and sort every SDK error into
//! a few [`ErrorKind`]s so that nothing above this layer sees a raw SDK code.

pub mod aws;
pub mod azure;
pub mod gcp;

use crate::model::{Cloud, Instance, Placement, Scope, TAG_FLEET, TAG_PLAN, TAG_RUN};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::Duration;

/// A request to create between `min_count` and `count` nodes at one placement.
#[derive(Debug, Clone, PartialEq)]
pub struct CreateRequest {
    pub plan: String,
    pub fleet: String,
    pub run: String,
    pub placement: Placement,
    pub count: u32,
    pub min_count: u32,
    /// Machine image for this cloud (AMI id, image URL, image reference).
    pub image: String,
    /// Startup script, passed as user data / startup-script metadata.
    pub user_data: Option<String>,
    /// Extra tags/labels from the plan, added next to the ownership tags.
    pub labels: BTreeMap<String, String>,
    /// Makes a retried create idempotent (EC2 ClientToken, GCE requestId).
    pub idempotency_token: String,
}

impl CreateRequest {
    /// Ownership tags first, then the plan's labels (which cannot override them).
    pub fn tags(&self) -> BTreeMap<String, String> {
        let mut tags = self.labels.clone();
        tags.insert(TAG_PLAN.into(), self.plan.clone());
        tags.insert(TAG_FLEET.into(), self.fleet.clone());
        tags.insert(TAG_RUN.into(), self.run.clone());
        tags
    }
}

/// What a cloud refused, sorted so the planner and apply can act on it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ErrorKind {
    /// No stock for this instance type at this placement right now.
    Capacity,
    /// An account or regional limit rules the launch out.
    Quota,
    /// The API asked us to slow down.
    Throttled {
        retry_after_ms: Option<u64>,
    },
    /// 5xx, reset, timeout: the same call may succeed if retried.
    Transient,
    /// The request itself is wrong (bad image, bad parameter).
    Invalid,
    /// Credentials missing, expired or not allowed.
    Auth,
    NotFound,
}

impl ErrorKind {
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            ErrorKind::Throttled { retry_after_ms } => retry_after_ms.map(Duration::from_millis),
            _ => None,
        }
    }

    pub fn is_retryable(&self) -> bool {
        matches!(self, ErrorKind::Throttled { .. } | ErrorKind::Transient)
    }

    pub fn is_shortage(&self) -> bool {
        matches!(self, ErrorKind::Capacity | ErrorKind::Quota)
    }
}

/// An error from a cloud, classified, with the cloud's own code kept for the user.
#[derive(Debug, Clone, thiserror::Error, miette::Diagnostic)]
#[error("{cloud} {region}: {code}: {message}")]
pub struct ProviderError {
    pub kind: ErrorKind,
    pub cloud: Cloud,
    pub region: String,
    /// The cloud's error code, e.g. `InsufficientInstanceCapacity`.
    pub code: String,
    pub message: String,
}

/// The one interface gpufleet uses to talk to a cloud.
#[async_trait::async_trait]
pub trait Provider: Send + Sync {
    fn cloud(&self) -> Cloud;

    /// The scopes [`Provider::list_owned`] lists in full: an instance of one
    /// of them that the listing does not return is gone.
    fn scopes(&self) -> Vec<Scope>;

    /// Every instance carrying `gpufleet-plan = plan`, in every configured
    /// region, that is not terminated or shutting down.
    async fn list_owned(&self, plan: &str) -> Result<Vec<Instance>, ProviderError>;

    /// Launch between `min_count` and `count` nodes. A partial fill is
    /// returned as fewer instances, not as an error.
    async fn create(&self, request: &CreateRequest) -> Result<Vec<Instance>, ProviderError>;

    /// Terminate these instances (all of this cloud). Instances already gone
    /// count as deleted.
    async fn delete(&self, instances: &[Instance]) -> Result<(), ProviderError>;

    /// How many more nodes of `gpus_per_node` × `gpu` the cloud's quotas allow
    /// at this placement, for clouds that say so up front (Compute Engine
    /// region quotas); `None` when the cloud does not tell. Apply asks before
    /// creating, so no call is spent where quota already rules it out.
    async fn quota_headroom(
        &self,
        _placement: &Placement,
        _gpu: &str,
        _gpus_per_node: u32,
    ) -> Result<Option<u32>, ProviderError> {
        Ok(None)
    }
}

/// How a provider retries throttled and transient calls. Handed in by
/// whoever builds the provider: the CLI reads `GPUFLEET_RETRY_BASE_MS` (for
/// tests against a simulator that throttles by call count, where waiting buys
/// nothing); nothing below it reads the environment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts of one call, the first included.
    pub attempts: u32,
    /// Ceiling of the first backoff; doubled for every further attempt.
    pub base: Duration,
    /// No single wait is longer.
    pub cap: Duration,
}

impl Default for RetryPolicy {
    fn default() -> RetryPolicy {
        RetryPolicy { attempts: 6, base: Duration::from_millis(200), cap: Duration::from_secs(20) }
    }
}

impl RetryPolicy {
    /// Wait before attempt `attempt + 1`: the cloud's Retry-After if given,
    /// else a random duration up to `base * 2^(attempt-1)`, capped.
    fn backoff(&self, attempt: u32, retry_after: Option<Duration>) -> Duration {
        if let Some(d) = retry_after {
            return d;
        }
        let ceiling = self.base.saturating_mul(1 << attempt.saturating_sub(1).min(16)).min(self.cap);
        ceiling.mul_f64(fastrand::f64())
    }
}

/// Run `call` until it succeeds, fails for a reason retrying cannot fix, or
/// runs out of attempts. Throttled and transient failures wait with full
/// jitter exponential backoff, or as long as the cloud's Retry-After says.
/// The closure must reuse its idempotency token, so a retried create that
/// had in fact succeeded returns the same instances.
pub async fn retrying<T, F, Fut>(policy: RetryPolicy, mut call: F) -> Result<T, ProviderError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, ProviderError>>,
{
    let mut attempt = 0;
    loop {
        attempt += 1;
        match call().await {
            Err(e) if e.kind.is_retryable() && attempt < policy.attempts => {
                tokio::time::sleep(policy.backoff(attempt, e.kind.retry_after())).await;
            }
            result => return result,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_wins_over_the_backoff_and_the_backoff_stays_under_its_ceiling() {
        let policy = RetryPolicy::default();
        assert_eq!(policy.backoff(3, Some(Duration::ZERO)), Duration::ZERO);
        assert!(policy.backoff(1, None) <= policy.base);
        assert!(policy.backoff(40, None) <= policy.cap);
        let instant = RetryPolicy { base: Duration::ZERO, ..policy };
        assert_eq!(instant.backoff(5, None), Duration::ZERO);
    }
}
