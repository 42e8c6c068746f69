//! `gpufleet catalog refresh` on EC2, per region of the plan, read-only:
//! `DescribeInstanceTypeOfferings` by availability zone (which zones sell
//! which types) and `DescribeInstanceTypes` (each type's `GpuInfo` and
//! vCPUs), both paged to the end.

use super::{AwsProvider, classify};
use crate::catalog::mapping::ReportedGpu;
use crate::catalog::{CloudRead, Sighting, account_label};
use crate::model::Cloud;
use crate::providers::{Call, ProviderError, retrying};
use aws_sdk_ec2::Client;
use aws_sdk_ec2::types::LocationType;
use futures::future::try_join_all;
use std::collections::{BTreeMap, BTreeSet};

/// DescribeInstanceTypeOfferings page size: the largest EC2 accepts.
const OFFERINGS_PAGE: i32 = 1000;
/// DescribeInstanceTypes page size: the largest EC2 accepts.
const TYPES_PAGE: i32 = 100;

impl AwsProvider {
    pub(super) async fn read_offerings(&self) -> Result<CloudRead, ProviderError> {
        let per_region =
            try_join_all(self.clients.iter().map(|(region, client)| read_region(self, region, client))).await?;
        let mut read = CloudRead {
            cloud: Cloud::Aws,
            account: account_label(Cloud::Aws, self.account.as_deref()),
            regions: BTreeMap::new(),
            sightings: Vec::new(),
        };
        for ((region, _), (zones, sightings)) in self.clients.iter().zip(per_region) {
            read.regions.insert(region.clone(), zones);
            read.sightings.extend(sightings);
        }
        Ok(read)
    }
}

/// The zones of one region that sell something, and its GPU types with the zones selling each.
async fn read_region(
    provider: &AwsProvider,
    region: &str,
    client: &Client,
) -> Result<(BTreeSet<String>, Vec<Sighting>), ProviderError> {
    let offered = retrying(provider.retry, Call::new(Cloud::Aws, region, "DescribeInstanceTypeOfferings"), || async {
        let mut pages = client
            .describe_instance_type_offerings()
            .location_type(LocationType::AvailabilityZone)
            .max_results(OFFERINGS_PAGE)
            .into_paginator()
            .send();
        let mut zones_of: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        while let Some(page) = pages.next().await {
            for offering in page.map_err(|e| classify(region, e))?.instance_type_offerings() {
                if let (Some(instance_type), Some(zone)) = (offering.instance_type(), offering.location()) {
                    zones_of.entry(instance_type.as_str().to_string()).or_default().insert(zone.to_string());
                }
            }
        }
        Ok(zones_of)
    })
    .await?;
    let types = retrying(provider.retry, Call::new(Cloud::Aws, region, "DescribeInstanceTypes"), || async {
        let mut pages = client.describe_instance_types().max_results(TYPES_PAGE).into_paginator().send();
        let mut types = Vec::new();
        while let Some(page) = pages.next().await {
            types.extend(page.map_err(|e| classify(region, e))?.instance_types().iter().cloned());
        }
        Ok(types)
    })
    .await?;
    let zones: BTreeSet<String> = offered.values().flatten().cloned().collect();
    let sightings = types
        .iter()
        .filter_map(|info| {
            let name = info.instance_type()?.as_str();
            let zones = offered.get(name)?;
            // A type with GPUs of two kinds is not one catalog shape: its first kind names it.
            let gpu = info.gpu_info()?.gpus().first()?;
            let memory_mib = u32::try_from(gpu.memory_info()?.size_in_mib()?).ok()?;
            Some(Sighting {
                region: region.to_string(),
                zones: zones.iter().cloned().collect(),
                instance_type: name.to_string(),
                gpu: ReportedGpu::Ec2 {
                    manufacturer: gpu.manufacturer().unwrap_or_default().to_string(),
                    name: gpu.name().unwrap_or_default().to_string(),
                    memory_mib,
                },
                gpus: u32::try_from(gpu.count()?).ok().filter(|n| *n > 0)?,
                gpu_memory_gib: Some(memory_mib / 1024),
                vcpus: info.v_cpu_info().and_then(|v| v.default_v_cpus()).and_then(|n| u32::try_from(n).ok())?,
                restriction: None,
            })
        })
        .collect();
    Ok((zones, sightings))
}
