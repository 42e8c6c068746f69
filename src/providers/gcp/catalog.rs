//! `gpufleet catalog refresh` on Compute Engine, for the whole project,
//! read-only: `machineTypes.aggregatedList` (every zone's machine types,
//! with the accelerators each carries) and `acceleratorTypes.aggregatedList`
//! (the accelerators each zone sells), both paged to the end. A machine
//! type is sold in a zone when the zone lists it and its accelerator.

use super::{GcpProvider, PAGE_SIZE, classify, region_of_zone};
use crate::catalog::mapping::ReportedGpu;
use crate::catalog::{CloudRead, Sighting};
use crate::model::Cloud;
use crate::providers::{Call, ProviderError, retrying};
use std::collections::{BTreeMap, BTreeSet};

/// One accelerator-carrying machine type of one zone.
struct ZoneMachine {
    zone: String,
    name: String,
    accelerator: String,
    count: u32,
    vcpus: u32,
}

impl GcpProvider {
    pub(super) async fn read_offerings(&self) -> Result<CloudRead, ProviderError> {
        let region = self.zones.first().map(|z| region_of_zone(z)).unwrap_or_default();
        let mut zones: BTreeSet<String> = BTreeSet::new();
        let mut machines = Vec::new();
        let mut page_token = String::new();
        loop {
            let page = retrying(self.retry, Call::new(Cloud::Gcp, region, "machineTypes.aggregatedList"), || async {
                self.machine_types
                    .aggregated_list()
                    .set_project(&self.project)
                    .set_max_results(PAGE_SIZE)
                    .set_page_token(&page_token)
                    .send()
                    .await
                    .map_err(|e| classify(region, &e))
            })
            .await?;
            for (scope, list) in &page.items {
                let Some(zone) = scope.strip_prefix("zones/") else { continue };
                zones.insert(zone.to_string());
                for machine in &list.machine_types {
                    let accelerator = machine.accelerators.first();
                    let count = accelerator.and_then(|a| a.guest_accelerator_count).and_then(|n| u32::try_from(n).ok());
                    let (Some(name), Some(accelerator), Some(count)) =
                        (&machine.name, accelerator.and_then(|a| a.guest_accelerator_type.clone()), count)
                    else {
                        continue;
                    };
                    let vcpus = machine.guest_cpus.and_then(|n| u32::try_from(n).ok()).unwrap_or(0);
                    if count > 0 {
                        machines.push(ZoneMachine {
                            zone: zone.to_string(),
                            name: name.clone(),
                            accelerator,
                            count,
                            vcpus,
                        });
                    }
                }
            }
            match page.next_page_token {
                Some(token) if !token.is_empty() => page_token = token,
                _ => break,
            }
        }

        let mut sold: BTreeSet<(String, String)> = BTreeSet::new();
        let mut page_token = String::new();
        loop {
            let page =
                retrying(self.retry, Call::new(Cloud::Gcp, region, "acceleratorTypes.aggregatedList"), || async {
                    self.accelerator_types
                        .aggregated_list()
                        .set_project(&self.project)
                        .set_max_results(PAGE_SIZE)
                        .set_page_token(&page_token)
                        .send()
                        .await
                        .map_err(|e| classify(region, &e))
                })
                .await?;
            for (scope, list) in &page.items {
                let Some(zone) = scope.strip_prefix("zones/") else { continue };
                sold.extend(list.accelerator_types.iter().filter_map(|a| Some((zone.to_string(), a.name.clone()?))));
            }
            match page.next_page_token {
                Some(token) if !token.is_empty() => page_token = token,
                _ => break,
            }
        }

        let mut read = CloudRead {
            cloud: Cloud::Gcp,
            account: format!("project {}", self.project),
            regions: BTreeMap::new(),
            sightings: Vec::new(),
        };
        for zone in zones {
            read.regions.entry(region_of_zone(&zone).to_string()).or_default().insert(zone);
        }
        // One sighting per machine type and region, with the zones that sell it and its accelerator.
        let mut by_type: BTreeMap<(String, String), Sighting> = BTreeMap::new();
        for machine in machines.into_iter().filter(|m| sold.contains(&(m.zone.clone(), m.accelerator.clone()))) {
            let region = region_of_zone(&machine.zone).to_string();
            by_type
                .entry((machine.name.clone(), region.clone()))
                .or_insert_with(|| Sighting {
                    region,
                    zones: Vec::new(),
                    instance_type: machine.name.clone(),
                    gpu: ReportedGpu::Gce { accelerator_type: machine.accelerator.clone() },
                    gpus: machine.count,
                    gpu_memory_gib: None,
                    vcpus: machine.vcpus,
                    restriction: None,
                    restricted_zones: Vec::new(),
                })
                .zones
                .push(machine.zone);
        }
        read.sightings = by_type.into_values().collect();
        Ok(read)
    }
}
