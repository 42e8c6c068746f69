//! `gpufleet catalog refresh` on Azure, for the whole subscription,
//! read-only: `ResourceSkus_List` (every VM size of every location, with its
//! zones, capabilities and the subscription's restrictions), paged to the end.
//! A size restricted in a location (`NotAvailableForSubscription`), or in
//! every zone it has there, is kept as restricted there; one restricted in
//! some zones only is not (Azure places a scale set in the zones it may use).

use super::{AzureProvider, classify};
use crate::catalog::mapping::ReportedGpu;
use crate::catalog::{CloudRead, Sighting, account_label};
use crate::model::Cloud;
use crate::providers::{Call, ProviderError, retrying};
use azure_mgmt_compute::package_2024_07_01::models::resource_sku_restrictions::Type as RestrictionType;
use azure_mgmt_compute::package_2024_07_01::models::{ResourceSku, ResourceSkuRestrictions};
use futures::StreamExt;
use std::collections::{BTreeMap, BTreeSet};

impl AzureProvider {
    pub(super) async fn read_offerings(&self) -> Result<CloudRead, ProviderError> {
        let region = self.regions.first().map(String::as_str).unwrap_or_default();
        let skus = retrying(self.retry, Call::new(Cloud::Azure, region, "resourceSkus.list"), || async {
            let mut pages = self.client.resource_skus_client().list(&self.subscription).into_stream();
            let mut out = Vec::new();
            while let Some(page) = pages.next().await {
                out.extend(page.map_err(|e| classify(region, e))?.value);
            }
            Ok(out)
        })
        .await?;
        let mut read = CloudRead {
            cloud: Cloud::Azure,
            account: account_label(Cloud::Azure, Some(&self.subscription)),
            regions: BTreeMap::new(),
            sightings: Vec::new(),
        };
        for sku in &skus {
            for location in &sku.locations {
                read.regions.entry(location.to_ascii_lowercase()).or_default();
            }
            if sku.resource_type.as_deref() == Some("virtualMachines") {
                read.sightings.extend(sightings(sku));
            }
        }
        Ok(read)
    }
}

/// A capability of a SKU as a number (`GPUs`, `vCPUs`).
fn capability(sku: &ResourceSku, name: &str) -> Option<u32> {
    let found = sku.capabilities.iter().find(|c| c.name.as_deref().is_some_and(|n| n.eq_ignore_ascii_case(name)))?;
    found.value.as_deref()?.parse().ok()
}

/// The subscription's restrictions of `kind` on a SKU in `location`.
fn restrictions<'s>(sku: &'s ResourceSku, location: &str, kind: RestrictionType) -> Vec<&'s ResourceSkuRestrictions> {
    let here = |v: &String| v.eq_ignore_ascii_case(location);
    sku.restrictions
        .iter()
        .filter(|r| r.type_.as_ref() == Some(&kind))
        .filter(|r| r.values.iter().any(here) || r.restriction_info.iter().flat_map(|i| &i.locations).any(here))
        .collect()
}

/// One sighting per location of a VM size with GPUs.
fn sightings(sku: &ResourceSku) -> Vec<Sighting> {
    let (Some(name), Some(gpus)) = (&sku.name, capability(sku, "GPUs").filter(|n| *n > 0)) else {
        return Vec::new();
    };
    sku.locations
        .iter()
        .map(|location| {
            let location_restriction = restrictions(sku, location, RestrictionType::Location)
                .first()
                .map(|r| r.reason_code.as_ref().map_or("restricted".to_string(), |code| format!("{code:?}")));
            let zones: BTreeSet<String> = sku
                .location_info
                .iter()
                .filter(|info| info.location.as_deref().is_some_and(|l| l.eq_ignore_ascii_case(location)))
                .flat_map(|info| info.zones.iter().cloned())
                .collect();
            let restricted_zones: BTreeSet<String> = restrictions(sku, location, RestrictionType::Zone)
                .into_iter()
                .flat_map(|r| r.restriction_info.iter().flat_map(|i| i.zones.iter().cloned()))
                .collect();
            // Azure places by region: a size restricted in every zone it has is restricted in the region.
            let all_zones_restricted = !zones.is_empty() && zones.is_subset(&restricted_zones);
            Sighting {
                region: location.to_ascii_lowercase(),
                zones: Vec::new(),
                instance_type: name.clone(),
                gpu: ReportedGpu::Azure { family: sku.family.clone().unwrap_or_default() },
                gpus,
                gpu_memory_gib: None,
                vcpus: capability(sku, "vCPUs").unwrap_or(0),
                restriction: location_restriction
                    .or_else(|| all_zones_restricted.then(|| "NotAvailableForSubscription in every zone".to_string())),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A resource SKU as ARM lists it (shape of the 2024-07-01 API).
    fn sku(restrictions: serde_json::Value) -> ResourceSku {
        serde_json::from_value(serde_json::json!({
            "resourceType": "virtualMachines",
            "name": "Standard_ND96isr_H100_v5",
            "tier": "Standard",
            "size": "ND96isr_H100_v5",
            "family": "standardNDSH100v5Family",
            "locations": ["WestEurope", "northeurope", "uksouth"],
            "locationInfo": [
                { "location": "WestEurope", "zones": ["1", "2"] },
                { "location": "northeurope", "zones": ["1", "2", "3"] },
                { "location": "uksouth", "zones": ["1", "2"] },
            ],
            "capabilities": [{ "name": "vCPUs", "value": "96" }, { "name": "GPUs", "value": "8" }],
            "restrictions": restrictions,
        }))
        .unwrap()
    }

    #[test]
    fn location_and_all_zone_restrictions_make_a_size_restricted_there_and_some_zones_do_not() {
        let found = sightings(&sku(serde_json::json!([
            {
                "type": "Location",
                "values": ["northeurope"],
                "restrictionInfo": { "locations": ["northeurope"] },
                "reasonCode": "NotAvailableForSubscription",
            },
            {
                "type": "Zone",
                "values": ["uksouth"],
                "restrictionInfo": { "locations": ["uksouth"], "zones": ["1", "2"] },
                "reasonCode": "NotAvailableForSubscription",
            },
            {
                "type": "Zone",
                "values": ["WestEurope"],
                "restrictionInfo": { "locations": ["WestEurope"], "zones": ["2"] },
                "reasonCode": "NotAvailableForSubscription",
            },
        ])));
        let by_region: Vec<(&str, Option<&str>)> =
            found.iter().map(|s| (s.region.as_str(), s.restriction.as_deref())).collect();
        assert_eq!(
            by_region,
            [
                ("westeurope", None),
                ("northeurope", Some("NotAvailableForSubscription")),
                ("uksouth", Some("NotAvailableForSubscription in every zone")),
            ]
        );
        assert!(found.iter().all(|s| (s.gpus, s.vcpus) == (8, 96)));
        assert_eq!(found[0].gpu, ReportedGpu::Azure { family: "standardNDSH100v5Family".into() });
        let mut cpu_only = sku(serde_json::json!([]));
        cpu_only.capabilities.retain(|c| c.name.as_deref() != Some("GPUs"));
        assert!(sightings(&cpu_only).is_empty(), "a size without GPUs is no GPU offering");
    }
}
