//! `gpufleet check`: a read-only preflight of every offering each fleet may
//! use (as the planner enumerates them from the catalog and the plan's
//! allow and deny rules), asking each cloud whether the type is sold there,
//! whether the image and the network exist there, and how many nodes the
//! quota still admits. It takes no lock, writes no state and makes no
//! mutating call; what it finds says how many nodes each fleet can reach.

use super::Clouds;
use crate::catalog::Catalog;
use crate::model::{Cloud, Placement};
use crate::plan::offerings::allowed_offerings;
use crate::plan::{Fleet, Plan};
use crate::providers::ProviderError;
use crate::providers::preflight::{OfferingFindings, PreflightRequest};
use futures::StreamExt;
use serde::Serialize;
use std::collections::BTreeMap;

/// Offerings checked at once.
const CONCURRENCY: usize = 8;

/// Whether a fleet can be created in full.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Readiness {
    /// Every node of `nodes` can be created.
    Ready,
    /// At least `min_nodes`, but not `nodes`.
    MinNodesOnly,
    /// Not even `min_nodes`.
    Short,
}

/// What one cloud said when it could not be asked at all.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CloudProblem {
    pub code: String,
    pub message: String,
}

/// One cloud of the plan: reachable or not, and how many offerings it was asked about.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CloudCheck {
    pub cloud: Cloud,
    pub offerings: usize,
    /// `None` when every question could be asked.
    pub problem: Option<CloudProblem>,
}

/// One offering of one fleet, with what was found; `None` when its cloud could not be asked.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OfferingCheck {
    pub placement: Placement,
    pub findings: Option<OfferingFindings>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FleetCheck {
    pub fleet: String,
    pub gpu: String,
    pub gpus_per_node: u32,
    pub nodes: u32,
    pub min_nodes: u32,
    pub offerings: Vec<OfferingCheck>,
    /// Nodes the launchable offerings' quotas admit, at most `nodes`.
    pub reachable: u32,
    pub readiness: Readiness,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CheckReport {
    pub plan: String,
    pub clouds: Vec<CloudCheck>,
    pub fleets: Vec<FleetCheck>,
}

impl CheckReport {
    /// The worst fleet's readiness (`Ready` for a plan without fleets).
    pub fn readiness(&self) -> Readiness {
        self.fleets.iter().map(|f| f.readiness).max().unwrap_or(Readiness::Ready)
    }
}

/// Asks every cloud about every offering of every fleet.
pub async fn check(plan: &Plan, catalog: &Catalog, clouds: &Clouds) -> CheckReport {
    let mut wanted: Vec<(&Fleet, PreflightRequest)> = Vec::new();
    for fleet in plan.fleets.values() {
        for offering in allowed_offerings(fleet, &plan.providers, catalog) {
            let image = fleet.image.get(&offering.cloud).cloned().unwrap_or_default();
            let request = PreflightRequest {
                placement: offering.placement(),
                image,
                gpu: fleet.gpu.clone(),
                gpus_per_node: fleet.gpus_per_node,
                nodes: fleet.nodes,
                launch: plan.launch(fleet, &offering.placement()),
            };
            wanted.push((fleet, request));
        }
    }
    let asks = wanted.iter().map(|(_, request)| async move {
        let cloud = request.placement.cloud;
        match (clouds.home(cloud), clouds.refused(cloud)) {
            (Some(provider), _) => provider.preflight(request).await,
            (None, Some(refused)) => Err(refused.clone()),
            (None, None) => Err(not_connected(cloud)),
        }
    });
    let answers: Vec<Result<OfferingFindings, ProviderError>> =
        futures::stream::iter(asks).buffered(CONCURRENCY).collect().await;

    let mut clouds_seen: BTreeMap<Cloud, CloudCheck> = plan
        .providers
        .clouds()
        .into_iter()
        .map(|cloud| {
            let problem =
                clouds.refused(cloud).map(|e| CloudProblem { code: e.code.clone(), message: e.message.clone() });
            (cloud, CloudCheck { cloud, offerings: 0, problem })
        })
        .collect();
    let mut by_fleet: BTreeMap<&str, Vec<OfferingCheck>> = BTreeMap::new();
    for ((fleet, request), answer) in wanted.iter().zip(answers) {
        let cloud = clouds_seen.entry(request.placement.cloud).or_insert(CloudCheck {
            cloud: request.placement.cloud,
            offerings: 0,
            problem: None,
        });
        cloud.offerings += 1;
        let findings = match answer {
            Ok(findings) => Some(findings),
            Err(e) => {
                cloud.problem.get_or_insert(CloudProblem { code: e.code, message: e.message });
                None
            }
        };
        by_fleet.entry(&fleet.name).or_default().push(OfferingCheck { placement: request.placement.clone(), findings });
    }
    let fleets = plan
        .fleets
        .values()
        .map(|fleet| {
            let offerings = by_fleet.remove(fleet.name.as_str()).unwrap_or_default();
            let reachable = reachable(fleet.nodes, &offerings);
            let readiness = match reachable {
                n if n >= fleet.nodes => Readiness::Ready,
                n if n >= fleet.min_nodes => Readiness::MinNodesOnly,
                _ => Readiness::Short,
            };
            FleetCheck {
                fleet: fleet.name.clone(),
                gpu: fleet.gpu.clone(),
                gpus_per_node: fleet.gpus_per_node,
                nodes: fleet.nodes,
                min_nodes: fleet.min_nodes,
                offerings,
                reachable,
                readiness,
            }
        })
        .collect();
    CheckReport { plan: plan.name.clone(), clouds: clouds_seen.into_values().collect(), fleets }
}

fn not_connected(cloud: Cloud) -> ProviderError {
    ProviderError {
        kind: crate::providers::ErrorKind::Invalid,
        cloud,
        region: String::new(),
        code: "NotConfigured".into(),
        message: format!("no {cloud} account is connected"),
    }
}

/// Nodes the launchable offerings can hold, at most `nodes`: each quota's
/// headroom counted once however many offerings draw on it (the largest,
/// as offerings of one quota may have nodes of different sizes), and an
/// offering whose quota the cloud does not tell holding any number.
fn reachable(nodes: u32, offerings: &[OfferingCheck]) -> u32 {
    let mut by_quota: BTreeMap<&str, u32> = BTreeMap::new();
    let mut unkeyed = 0u64;
    for findings in offerings.iter().filter_map(|o| o.findings.as_ref()).filter(|f| f.launchable()) {
        match (findings.quota.headroom_nodes, findings.quota.key.as_deref()) {
            (None, _) => return nodes,
            (Some(room), Some(key)) => {
                let entry = by_quota.entry(key).or_default();
                *entry = (*entry).max(room);
            }
            (Some(room), None) => unkeyed += u64::from(room),
        }
    }
    let total = by_quota.values().map(|room| u64::from(*room)).sum::<u64>() + unkeyed;
    u32::try_from(total.min(u64::from(nodes))).unwrap_or(nodes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::providers::preflight::{Finding, QuotaFinding};

    fn offering(launchable: bool, headroom: Option<u32>, key: Option<&str>) -> OfferingCheck {
        let pass = Finding::pass("ok");
        let image = if launchable { pass.clone() } else { Finding::fail("InvalidAMIID.NotFound", "m", "f") };
        OfferingCheck {
            placement: Placement {
                cloud: Cloud::Aws,
                region: "us-east-1".into(),
                zone: None,
                instance_type: "p5.48xlarge".into(),
            },
            findings: Some(OfferingFindings {
                offered: pass.clone(),
                image,
                network: pass.clone(),
                access: pass.clone(),
                quota: QuotaFinding { finding: pass, headroom_nodes: headroom, key: key.map(str::to_string) },
            }),
        }
    }

    #[test]
    fn a_shared_quota_counts_once_and_blocked_offerings_not_at_all() {
        let shared = [
            offering(true, Some(3), Some("gcp us-central1 H100")),
            offering(true, Some(3), Some("gcp us-central1 H100")),
        ];
        assert_eq!(reachable(8, &shared), 3, "two zones of one regional quota");
        let with_blocked = [offering(true, Some(2), Some("a")), offering(false, Some(5), Some("b"))];
        assert_eq!(reachable(8, &with_blocked), 2, "an offering without its image holds nothing");
        assert_eq!(reachable(8, &[offering(true, None, None)]), 8, "a quota the cloud does not tell holds any number");
        let unreachable_cloud = OfferingCheck { findings: None, ..offering(true, None, None) };
        assert_eq!(reachable(8, &[unreachable_cloud]), 0);
        assert_eq!(reachable(4, &[offering(true, Some(3), Some("a")), offering(true, Some(3), Some("b"))]), 4);
    }
}
