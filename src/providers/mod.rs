//! The boundary to the clouds: one [`Provider`] trait, one module per cloud.
//!
//! Providers are the only code that speaks to a cloud. They list what the plan
//! owns (by ownership tags), create N nodes at one placement with an
//! idempotency token, delete a set of instances, and sort every SDK error into
//! a few [`ErrorKind`]s so that nothing above this layer sees a raw SDK code.

pub mod aws;
pub mod azure;
pub mod gcp;
pub mod preflight;

use crate::model::{Clock, Cloud, Instance, Launch, Placement, Scope, SystemClock, TAG_FLEET, TAG_PLAN, TAG_RUN};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::Arc;
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
    /// Network, identity, SSH key and boot disk of the new nodes.
    pub launch: Launch,
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

impl ProviderError {
    /// The error with what to do about it when the cloud refused the
    /// credentials: expired ones and ones not allowed the call need
    /// different fixes, each in the cloud's own terms.
    fn with_credentials_fix(mut self) -> ProviderError {
        if let Some(fix) = credentials_fix(self.cloud, &self.code) {
            self.message = format!("{}. {fix}", self.message.trim_end_matches('.'));
        }
        self
    }
}

/// What to do about credentials a cloud refused, by its code; `None` for
/// codes that say no more than "refused" (missing credentials already say
/// where they were looked for).
pub fn credentials_fix(cloud: Cloud, code: &str) -> Option<&'static str> {
    match (cloud, code) {
        (Cloud::Aws, "ExpiredToken" | "ExpiredTokenException" | "RequestExpired" | "TokenRefreshRequired") => Some(
            "The AWS credentials have expired: refresh them (`aws sso login` with AWS_PROFILE set, or new temporary keys)",
        ),
        (
            Cloud::Aws,
            "AuthFailure"
            | "InvalidClientTokenId"
            | "UnrecognizedClientException"
            | "SignatureDoesNotMatch"
            | "IncompleteSignature",
        ) => Some(
            "AWS does not accept these credentials: check AWS_PROFILE, or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY \
             (`aws sts get-caller-identity` says whose they are)",
        ),
        (Cloud::Aws, "UnauthorizedOperation" | "AccessDenied" | "AccessDeniedException") => Some(
            "The AWS identity is not allowed this call: grant it ec2:Describe*, ec2:RunInstances, \
             ec2:TerminateInstances, ec2:CreateTags and servicequotas:GetServiceQuota \
             (`aws sts get-caller-identity` says who it is)",
        ),
        (Cloud::Gcp, "HTTP 401" | "authError" | "unauthorized" | "UNAUTHENTICATED") => Some(
            "Google Cloud does not accept these credentials (expired or revoked): run \
             `gcloud auth application-default login` again, or point GOOGLE_APPLICATION_CREDENTIALS at a valid key",
        ),
        (Cloud::Gcp, "HTTP 403" | "forbidden" | "insufficientPermissions" | "PERMISSION_DENIED") => Some(
            "The Google Cloud account is not allowed this call: grant it roles/compute.instanceAdmin.v1 on the \
             project (`gcloud projects add-iam-policy-binding`)",
        ),
        (
            Cloud::Azure,
            "ExpiredAuthenticationToken"
            | "InvalidAuthenticationToken"
            | "InvalidAuthenticationTokenTenant"
            | "AuthenticationFailed",
        ) => Some(
            "Azure does not accept the token (expired or for another tenant): run `az login` again, or renew the \
             service principal's secret (AZURE_CLIENT_SECRET)",
        ),
        (Cloud::Azure, "AuthorizationFailed" | "LinkedAuthorizationFailed") => Some(
            "The Azure identity is not allowed this call: assign it the Virtual Machine Contributor role on the \
             resource group (and Network Contributor on the subnet)",
        ),
        _ => None,
    }
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

    /// Read-only checks of one offering for `gpufleet check`: the type is
    /// sold there, the image and the network exist there, and the quota's
    /// headroom. Errors only when the cloud cannot be asked at all
    /// (credentials, endpoint); every refusal of a read is a finding.
    async fn preflight(
        &self,
        _request: &preflight::PreflightRequest,
    ) -> Result<preflight::OfferingFindings, ProviderError> {
        let unchecked = || preflight::Finding::unchecked("this provider has no preflight checks");
        Ok(preflight::OfferingFindings {
            offered: unchecked(),
            image: unchecked(),
            network: unchecked(),
            access: unchecked(),
            quota: preflight::QuotaFinding { finding: unchecked(), headroom_nodes: None, key: None },
        })
    }

    /// For `gpufleet catalog refresh`: which GPU instance types the account
    /// may buy where, from the cloud's own catalog APIs, read-only. Every
    /// region it returns was read in full.
    async fn read_catalog(&self) -> Result<crate::catalog::CloudRead, ProviderError> {
        Err(ProviderError {
            kind: ErrorKind::Invalid,
            cloud: self.cloud(),
            region: String::new(),
            code: "Unsupported".into(),
            message: "this provider cannot read the cloud's catalog".into(),
        })
    }
}

/// How a provider bounds and retries its calls. Handed in by whoever builds
/// the provider: the CLI reads `--call-timeout`, `--connect-timeout` and
/// `GPUFLEET_RETRY_BASE_MS` (for tests against a simulator that throttles by
/// call count, where waiting buys nothing); nothing below it reads the
/// environment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts of one call, the first included.
    pub attempts: u32,
    /// Ceiling of the first backoff; doubled for every further attempt.
    pub base: Duration,
    /// No single wait is longer.
    pub cap: Duration,
    /// Longest one attempt of a call may take, connecting included: a cloud
    /// that never answers must not hold a run forever. A call that runs out
    /// of it is transient, and retried.
    pub call_timeout: Duration,
    /// Longest a connection to a cloud's endpoint may take to open, where the
    /// SDK lets it be set (EC2 and ARM); elsewhere `call_timeout` bounds it.
    pub connect_timeout: Duration,
}

/// Default of [`RetryPolicy::call_timeout`]: the clouds answer their
/// mutating calls at once (the work itself is a long-running operation
/// polled afterwards), so a minute without an answer is a lost call.
pub const DEFAULT_CALL_TIMEOUT: Duration = Duration::from_secs(60);
/// Default of [`RetryPolicy::connect_timeout`].
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

impl Default for RetryPolicy {
    fn default() -> RetryPolicy {
        RetryPolicy {
            attempts: 6,
            base: Duration::from_millis(200),
            cap: Duration::from_secs(20),
            call_timeout: DEFAULT_CALL_TIMEOUT,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
        }
    }
}

/// The clock a provider waits on while a cloud finishes work (an instance
/// starting, an operation running): the machine's against the clouds, the
/// simulator's against the simulator, whose time then moves on instead of
/// anyone sleeping.
#[derive(Clone)]
pub struct WaitClock(pub Arc<dyn Clock>);

impl Default for WaitClock {
    fn default() -> WaitClock {
        WaitClock(Arc::new(SystemClock))
    }
}

impl std::fmt::Debug for WaitClock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WaitClock")
    }
}

impl WaitClock {
    /// Lets `by` pass before `call` asks again.
    pub async fn sleep(&self, call: Call<'_>, by: Duration) -> Result<(), ProviderError> {
        self.0.sleep(by).await.map_err(|e| ProviderError {
            kind: ErrorKind::Transient,
            cloud: call.cloud,
            region: call.region.to_string(),
            code: "Clock".into(),
            message: format!("cannot wait before {} again: {e}", call.name),
        })
    }
}

/// One cloud call, named for the error a call that never answers gets.
#[derive(Debug, Clone, Copy)]
pub struct Call<'a> {
    pub cloud: Cloud,
    pub region: &'a str,
    /// The cloud's name of the operation, e.g. `RunInstances`, `instances.bulkInsert`.
    pub name: &'a str,
}

impl<'a> Call<'a> {
    pub fn new(cloud: Cloud, region: &'a str, name: &'a str) -> Call<'a> {
        Call { cloud, region, name }
    }

    /// The error of an attempt that got no answer within `timeout`.
    fn timed_out(&self, timeout: Duration, attempt: u32, attempts: u32) -> ProviderError {
        ProviderError {
            kind: ErrorKind::Transient,
            cloud: self.cloud,
            region: self.region.to_string(),
            code: "Timeout".into(),
            message: format!(
                "{} got no answer within {} (attempt {attempt} of {attempts})",
                self.name,
                humantime::format_duration(timeout)
            ),
        }
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

/// Run `send` until it succeeds, fails for a reason retrying cannot fix, or
/// runs out of attempts. Each attempt gets at most the policy's
/// `call_timeout`; one that runs out is abandoned and counts as transient.
/// Throttled and transient failures wait with full jitter exponential
/// backoff, or as long as the cloud's Retry-After says. The closure must
/// reuse its idempotency token, so a retried create that had in fact
/// succeeded returns the same instances.
pub async fn retrying<T, F, Fut>(policy: RetryPolicy, call: Call<'_>, mut send: F) -> Result<T, ProviderError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, ProviderError>>,
{
    let mut attempt = 0;
    loop {
        attempt += 1;
        let answer = tokio::time::timeout(policy.call_timeout, send())
            .await
            .unwrap_or_else(|_| Err(call.timed_out(policy.call_timeout, attempt, policy.attempts)));
        match answer {
            Err(e) if e.kind.is_retryable() && attempt < policy.attempts => {
                tokio::time::sleep(policy.backoff(attempt, e.kind.retry_after())).await;
            }
            Err(e) if e.kind == ErrorKind::Auth => return Err(e.with_credentials_fix()),
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

    #[tokio::test]
    async fn a_call_that_never_answers_times_out_as_transient_and_is_retried() {
        let policy = RetryPolicy {
            attempts: 3,
            base: Duration::ZERO,
            call_timeout: Duration::from_millis(20),
            ..RetryPolicy::default()
        };
        let call = Call { cloud: Cloud::Aws, region: "us-east-1", name: "RunInstances" };
        let mut attempts = 0;
        let result: Result<(), ProviderError> = retrying(policy, call, || {
            attempts += 1;
            std::future::pending()
        })
        .await;
        let error = result.unwrap_err();
        assert_eq!(attempts, 3, "every attempt is made");
        assert_eq!((&error.kind, error.code.as_str()), (&ErrorKind::Transient, "Timeout"));
        assert_eq!(
            error.to_string(),
            "aws us-east-1: Timeout: RunInstances got no answer within 20ms (attempt 3 of 3)"
        );

        let mut answered_late = 0;
        let second_answers = retrying(policy, call, || {
            answered_late += 1;
            let hangs = answered_late == 1;
            async move {
                if hangs {
                    std::future::pending::<()>().await;
                }
                Ok(answered_late)
            }
        })
        .await;
        assert_eq!(second_answers.unwrap(), 2, "the retry after a timeout answers");
    }
}
