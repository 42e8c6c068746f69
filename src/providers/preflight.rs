//! What `gpufleet check` asks each cloud about an offering before anything
//! is created: is the instance type sold there, does the image exist there,
//! is the network it launches into there, and how many nodes the quota
//! still admits. Every answer is read-only; a failure keeps the cloud's own
//! code and says what to do about it.

use super::{ErrorKind, ProviderError};
use crate::model::{Launch, Placement};
use serde::Serialize;

/// One offering of one fleet to check.
#[derive(Debug, Clone, PartialEq)]
pub struct PreflightRequest {
    pub placement: Placement,
    /// The fleet's image for this cloud.
    pub image: String,
    pub gpu: String,
    pub gpus_per_node: u32,
    /// Nodes the fleet wants, for the quota it would need.
    pub nodes: u32,
    /// The network, identity and key the nodes would be launched with.
    pub launch: Launch,
}

/// One thing checked about an offering.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum Finding {
    /// It is there; `detail` says what was found.
    Pass { detail: String },
    /// It is not: the cloud's own code, what it said, and what to do.
    Fail { code: String, message: String, fix: String },
    /// It could not be checked, and why.
    Unchecked { why: String },
}

impl Finding {
    pub fn pass(detail: impl Into<String>) -> Finding {
        Finding::Pass { detail: detail.into() }
    }

    pub fn fail(code: impl Into<String>, message: impl Into<String>, fix: impl Into<String>) -> Finding {
        Finding::Fail { code: code.into(), message: message.into(), fix: fix.into() }
    }

    pub fn unchecked(why: impl Into<String>) -> Finding {
        Finding::Unchecked { why: why.into() }
    }

    pub fn is_fail(&self) -> bool {
        matches!(self, Finding::Fail { .. })
    }
}

/// The quota finding, with the headroom behind it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct QuotaFinding {
    #[serde(flatten)]
    pub finding: Finding,
    /// Nodes the quota still admits; `None` when the cloud does not say.
    pub headroom_nodes: Option<u32>,
    /// Names the quota (cloud, account, region, metric): offerings with the
    /// same key draw on the same headroom.
    pub key: Option<String>,
}

/// Everything checked about one offering.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OfferingFindings {
    pub offered: Finding,
    pub image: Finding,
    pub network: Finding,
    /// The identity and SSH key pair the nodes run with.
    pub access: Finding,
    pub quota: QuotaFinding,
}

impl OfferingFindings {
    /// Whether nodes can be created here at all, quota aside.
    pub fn launchable(&self) -> bool {
        ![&self.offered, &self.image, &self.network, &self.access].iter().any(|f| f.is_fail())
    }
}

/// A read's error as a finding, unless it means the cloud cannot be asked
/// at all (credentials refused, endpoint unreachable, still throttled after
/// the retries): that ends the cloud's checks, as one error of its own.
pub fn refused(error: ProviderError, fix: impl Into<String>) -> Result<Finding, ProviderError> {
    match error.kind {
        ErrorKind::Auth | ErrorKind::Transient | ErrorKind::Throttled { .. } => Err(error),
        _ => Ok(Finding::fail(error.code, error.message, fix)),
    }
}

/// The fix of a quota short of `nodes`, in the cloud's own unit.
pub fn quota_fix(quota: &str, region: &str, need: u64, have: u64, unit: &str) -> String {
    format!("request a quota increase for {quota} in {region}: need {need} {unit}, have {have}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Cloud;

    fn error(kind: ErrorKind, code: &str) -> ProviderError {
        ProviderError { kind, cloud: Cloud::Aws, region: "us-east-1".into(), code: code.into(), message: "m".into() }
    }

    #[test]
    fn refusals_become_findings_and_unreachable_clouds_stay_errors() {
        let finding = refused(error(ErrorKind::NotFound, "InvalidAMIID.NotFound"), "copy it").unwrap();
        assert_eq!(finding, Finding::fail("InvalidAMIID.NotFound", "m", "copy it"));
        for kind in [ErrorKind::Auth, ErrorKind::Transient, ErrorKind::Throttled { retry_after_ms: None }] {
            assert!(refused(error(kind, "x"), "").is_err());
        }
        assert_eq!(
            quota_fix("L-417A185B", "us-east-1", 192, 0, "vCPUs"),
            "request a quota increase for L-417A185B in us-east-1: need 192 vCPUs, have 0"
        );
    }
}
