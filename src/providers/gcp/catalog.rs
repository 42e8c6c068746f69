//! `gpufleet catalog refresh` on Compute Engine, for the whole project,
//! read-only: `machineTypes.aggregatedList` (every zone's machine types,
//! with the accelerators each carries) and `acceleratorTypes.aggregatedList`
//! (the accelerators each zone sells), both paged to the end. A machine
//! type is sold in a zone when the zone lists it and its accelerator.

use super::{GcpProvider, PAGE_SIZE, region_of_zone};
use crate::catalog::mapping::ReportedGpu;
use crate::catalog::{CloudRead, Sighting, account_label};
use crate::model::Cloud;
use crate::providers::ProviderError;
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
        let machine_pages = self
            .every_page(
                region,
                "machineTypes.aggregatedList",
                |token| {
                    self.machine_types
                        .aggregated_list()
                        .set_project(&self.project)
                        .set_max_results(PAGE_SIZE)
                        .set_page_token(token)
                        .send()
                },
                |page| page.next_page_token.as_ref(),
            )
            .await?;
        let accelerator_pages = self
            .every_page(
                region,
                "acceleratorTypes.aggregatedList",
                |token| {
                    self.accelerator_types
                        .aggregated_list()
                        .set_project(&self.project)
                        .set_max_results(PAGE_SIZE)
                        .set_page_token(token)
                        .send()
                },
                |page| page.next_page_token.as_ref(),
            )
            .await?;

        let mut zones: BTreeSet<String> = BTreeSet::new();
        let mut machines = Vec::new();
        for (scope, list) in machine_pages.iter().flat_map(|page| &page.items) {
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
        let sold: BTreeSet<(String, String)> = accelerator_pages
            .iter()
            .flat_map(|page| &page.items)
            .filter_map(|(scope, list)| Some((scope.strip_prefix("zones/")?, list)))
            .flat_map(|(zone, list)| {
                list.accelerator_types.iter().filter_map(|a| Some((zone.to_string(), a.name.clone()?)))
            })
            .collect();

        let mut read = CloudRead {
            cloud: Cloud::Gcp,
            account: account_label(Cloud::Gcp, Some(&self.project)),
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
                })
                .zones
                .push(machine.zone);
        }
        read.sightings = by_type.into_values().collect();
        Ok(read)
    }
}
