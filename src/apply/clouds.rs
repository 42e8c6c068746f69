//! Connecting to the clouds a plan uses, and reading what they run for it.

use crate::catalog::Cloud;
use crate::plan::Plan;
use crate::providers::aws::{AwsConnection, AwsProvider};
use crate::providers::azure::{AzureConnection, AzureProvider, AzureVmSettings};
use crate::providers::gcp::{GcpConnection, GcpProvider};
use crate::providers::{Instance, Provider, ProviderError};
use chrono::{DateTime, Utc};
use futures::future::try_join_all;
use std::collections::{BTreeMap, BTreeSet};

/// Where the clouds are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// The real clouds, through each one's standard configuration chain and
    /// the plan's endpoint overrides.
    Clouds,
    /// A gpufleet simulator at this URL, for every cloud.
    Simulator { url: String },
}

impl Target {
    pub fn clock(&self) -> Clock {
        match self {
            Target::Clouds => Clock::System,
            Target::Simulator { url } => Clock::Simulator { url: url.clone() },
        }
    }
}

/// Where "now" comes from: the system clock, or the simulator's clock when
/// running against one, so that simulated time drives shortage expiry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Clock {
    System,
    Simulator { url: String },
}

impl Clock {
    pub async fn now(&self) -> Result<DateTime<Utc>, crate::sim::SimError> {
        match self {
            Clock::System => Ok(Utc::now()),
            Clock::Simulator { url } => crate::sim::sim_now(url).await,
        }
    }
}

/// The providers one plan needs, by cloud.
pub struct Clouds {
    providers: BTreeMap<Cloud, Box<dyn Provider>>,
}

impl Clouds {
    /// Connect to every configured cloud, in its configured regions plus any
    /// region where the state still knows an instance (so that a region taken
    /// out of the plan is still refreshed and emptied).
    pub async fn connect(plan: &Plan, known: &[Instance], target: &Target) -> Result<Clouds, ProviderError> {
        let mut providers: BTreeMap<Cloud, Box<dyn Provider>> = BTreeMap::new();
        let mut aws_regions: BTreeSet<String> =
            plan.providers.aws.iter().flat_map(|a| a.regions.iter().cloned()).collect();
        aws_regions.extend(known.iter().filter(|i| i.cloud == Cloud::Aws).map(|i| i.region.clone()));
        if !aws_regions.is_empty() {
            let configured = plan.providers.aws.as_ref();
            let connection = match target {
                Target::Clouds => AwsConnection {
                    endpoint: configured.and_then(|a| a.endpoint.clone()),
                    profile: configured.and_then(|a| a.profile.clone()),
                    simulator_credentials: false,
                },
                Target::Simulator { url } => {
                    AwsConnection { endpoint: Some(url.clone()), profile: None, simulator_credentials: true }
                }
            };
            let regions: Vec<String> = aws_regions.into_iter().collect();
            providers.insert(Cloud::Aws, Box::new(AwsProvider::connect(&regions, &connection).await));
        }
        if let Some(gcp) = &plan.providers.gcp {
            let connection = match target {
                Target::Clouds => GcpConnection { endpoint: gcp.endpoint.clone(), anonymous: false },
                Target::Simulator { url } => GcpConnection { endpoint: Some(url.clone()), anonymous: true },
            };
            let mut zones: BTreeSet<String> = gcp.zones.iter().cloned().collect();
            zones.extend(known.iter().filter(|i| i.cloud == Cloud::Gcp).filter_map(|i| i.zone.clone()));
            let zones: Vec<String> = zones.into_iter().collect();
            providers.insert(Cloud::Gcp, Box::new(GcpProvider::connect(&gcp.project, &zones, &connection).await?));
        }
        if let Some(azure) = &plan.providers.azure {
            let connection = match target {
                Target::Clouds => AzureConnection { endpoint: azure.endpoint.clone(), simulator_credentials: false },
                Target::Simulator { url } => {
                    AzureConnection { endpoint: Some(url.clone()), simulator_credentials: true }
                }
            };
            let mut regions: BTreeSet<String> = azure.regions.iter().cloned().collect();
            regions.extend(known.iter().filter(|i| i.cloud == Cloud::Azure).map(|i| i.region.clone()));
            let regions: Vec<String> = regions.into_iter().collect();
            let vm = AzureVmSettings {
                subnet: azure.subnet.clone(),
                admin_username: "gpufleet".into(),
                ssh_public_key: azure.ssh_public_key.clone(),
            };
            let provider =
                AzureProvider::connect(&azure.subscription, &azure.resource_group, &regions, &connection, &vm).await?;
            providers.insert(Cloud::Azure, Box::new(provider));
        }
        Ok(Clouds { providers })
    }

    /// Build from given providers (tests script providers this way).
    pub fn from_providers(list: Vec<Box<dyn Provider>>) -> Clouds {
        Clouds { providers: list.into_iter().map(|p| (p.cloud(), p)).collect() }
    }

    pub fn get(&self, cloud: Cloud) -> Option<&dyn Provider> {
        self.providers.get(&cloud).map(|p| p.as_ref())
    }

    /// Everything the clouds run for `plan`, listed from all clouds at once.
    pub async fn list_owned(&self, plan: &str) -> Result<Vec<Instance>, ProviderError> {
        let lists = try_join_all(self.providers.values().map(|p| p.list_owned(plan))).await?;
        let mut all: Vec<Instance> = lists.into_iter().flatten().collect();
        all.sort();
        Ok(all)
    }
}
