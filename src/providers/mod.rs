//! The boundary to the clouds: one [`Provider`] trait, one module per cloud.
//!
//! Providers are the only code that speaks to a cloud. They list what the plan
//! owns (by ownership tags), create N nodes at one placement with an
//! idempotency token, delete a set of instances, and sort every SDK error into
//! a few [`ErrorKind`]s so that nothing above this layer sees a raw SDK code.

pub mod aws;
pub mod azure;
pub mod gcp;

use crate::catalog::Cloud;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

/// Ownership tag: the plan's name.
pub const TAG_PLAN: &str = "gpufleet-plan";
/// Ownership tag: the fleet's name within the plan.
pub const TAG_FLEET: &str = "gpufleet-fleet";
/// Ownership tag: the apply run that created the instance.
pub const TAG_RUN: &str = "gpufleet-run";

/// One instance the clouds report as owned by a plan.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Instance {
    pub id: String,
    pub cloud: Cloud,
    pub region: String,
    pub zone: Option<String>,
    pub instance_type: String,
    pub fleet: String,
    /// The apply run that created it (its `gpufleet-run` tag).
    pub run: String,
    pub launched_at: DateTime<Utc>,
}

/// Where to create nodes: one offering of the catalog.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Placement {
    pub cloud: Cloud,
    pub region: String,
    pub zone: Option<String>,
    pub instance_type: String,
}

impl Placement {
    pub fn of(instance: &Instance) -> Placement {
        Placement {
            cloud: instance.cloud,
            region: instance.region.clone(),
            zone: instance.zone.clone(),
            instance_type: instance.instance_type.clone(),
        }
    }
}

impl fmt::Display for Placement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {} {}", self.cloud, self.zone.as_deref().unwrap_or(&self.region), self.instance_type)
    }
}

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
#[derive(Debug, Clone, thiserror::Error)]
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

/// Attempts of one call when the cloud throttles or fails transiently.
const MAX_ATTEMPTS: u32 = 6;
/// Default first backoff ceiling; `GPUFLEET_RETRY_BASE_MS` overrides it.
const BACKOFF_BASE: Duration = Duration::from_millis(200);
/// Environment variable naming the backoff base in milliseconds, read once.
/// Meant for tests against a simulator that throttles by call count, where
/// waiting buys nothing; Retry-After from the cloud still wins.
pub const RETRY_BASE_ENV: &str = "GPUFLEET_RETRY_BASE_MS";
const BACKOFF_CAP: Duration = Duration::from_secs(20);

/// Run `call` until it succeeds, fails for a reason retrying cannot fix, or
/// runs out of attempts. Throttled and transient failures wait with full
/// jitter exponential backoff, or as long as the cloud's Retry-After says.
/// The closure must reuse its idempotency token, so a retried create that
/// had in fact succeeded returns the same instances.
pub async fn retrying<T, F, Fut>(mut call: F) -> Result<T, ProviderError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, ProviderError>>,
{
    let mut attempt = 0;
    loop {
        attempt += 1;
        match call().await {
            Err(e) if e.kind.is_retryable() && attempt < MAX_ATTEMPTS => {
                tokio::time::sleep(backoff(attempt, e.kind.retry_after())).await;
            }
            result => return result,
        }
    }
}

/// Wait before attempt `attempt + 1`: the cloud's Retry-After if given, else
/// a random duration up to `base * 2^(attempt-1)`, capped.
fn backoff(attempt: u32, retry_after: Option<Duration>) -> Duration {
    if let Some(d) = retry_after {
        return d;
    }
    let ceiling = backoff_base().saturating_mul(1 << (attempt - 1).min(16)).min(BACKOFF_CAP);
    ceiling.mul_f64(fastrand::f64())
}

/// [`BACKOFF_BASE`], or `GPUFLEET_RETRY_BASE_MS` if set to a number.
fn backoff_base() -> Duration {
    static BASE: std::sync::OnceLock<Duration> = std::sync::OnceLock::new();
    *BASE.get_or_init(|| parse_base_ms(std::env::var(RETRY_BASE_ENV).ok().as_deref()))
}

fn parse_base_ms(value: Option<&str>) -> Duration {
    value.and_then(|v| v.trim().parse::<u64>().ok()).map_or(BACKOFF_BASE, Duration::from_millis)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_base_comes_from_the_environment_value_or_defaults() {
        assert_eq!(parse_base_ms(None), BACKOFF_BASE);
        assert_eq!(parse_base_ms(Some("1")), Duration::from_millis(1));
        assert_eq!(parse_base_ms(Some("fast")), BACKOFF_BASE, "unreadable values keep the default");
    }

    #[test]
    fn retry_after_wins_over_the_backoff() {
        assert_eq!(backoff(3, Some(Duration::ZERO)), Duration::ZERO);
        assert!(backoff(1, None) <= backoff_base());
    }
}
