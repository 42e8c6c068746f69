//! GPU offerings: which instance types exist on which cloud, with which GPUs,
//! in which regions and zones, under which jurisdiction, at what list price.
//!
//! The data is a dated TOML file compiled into the binary (`catalog.toml` next
//! to this module). Plans may add or override offerings; see [`Catalog::with_overrides`].
//! A price that could not be sourced stays `None` ("unknown") and is never invented.
//! `gpufleet catalog refresh` reads what the clouds sell into a local file
//! that is merged over this data ([`Catalog::with_refreshed`]).

use crate::model::{Cloud, Instance, Placement, ShortageScope};
use serde::{Deserialize, Serialize};

/// The compiled-in catalog data.
const BUILTIN: &str = include_str!("catalog.toml");

/// A region of a cloud, with the jurisdiction its data lives under.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Region {
    pub cloud: Cloud,
    pub name: String,
    /// Jurisdiction code such as "US", "EU", "UK", "JP".
    pub jurisdiction: String,
    /// Zones of the region that the catalog knows (Google Cloud places by zone).
    #[serde(default)]
    pub zones: Vec<String>,
}

/// An instance type and where it is sold.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InstanceType {
    pub cloud: Cloud,
    pub name: String,
    /// GPU model as plans name it ("H100", "A100-80GB", "L4", ...).
    pub gpu: String,
    pub gpus: u32,
    pub gpu_memory_gib: u32,
    pub vcpus: u32,
    pub offers: Vec<RegionOffer>,
}

/// One region where an instance type is sold, with its on-demand list price.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegionOffer {
    pub region: String,
    /// Zones where the type is offered; empty means "every zone the catalog knows".
    #[serde(default)]
    pub zones: Vec<String>,
    /// On-demand list price in USD per instance-hour; absent means unknown.
    pub price_per_hour: Option<f64>,
}

/// The catalog: dated, sourced, complete for the instance types it lists.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Catalog {
    /// Date the prices were read ("2026-11-01").
    pub as_of: String,
    /// Where the prices come from.
    pub sources: Vec<String>,
    #[serde(rename = "region")]
    pub regions: Vec<Region>,
    #[serde(rename = "instance_type")]
    pub instance_types: Vec<InstanceType>,
}

/// A place a node of a fleet can be launched: one instance type in one region
/// (or one zone, for clouds that place by zone), with everything the planner
/// needs to filter and order it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Offering {
    pub cloud: Cloud,
    pub region: String,
    pub zone: Option<String>,
    pub instance_type: String,
    pub gpu: String,
    pub gpus_per_node: u32,
    pub jurisdiction: String,
    pub price_per_hour: Option<f64>,
}

impl Offering {
    /// Price per GPU-hour, the unit plans compare and cap.
    pub fn price_per_gpu_hour(&self) -> Option<f64> {
        self.price_per_hour.map(|p| p / f64::from(self.gpus_per_node.max(1)))
    }

    /// Where nodes of this offering are created.
    pub fn placement(&self) -> Placement {
        Placement {
            cloud: self.cloud,
            region: self.region.clone(),
            zone: self.zone.clone(),
            instance_type: self.instance_type.clone(),
        }
    }

    /// Whether an instance runs on this offering (one without a zone holds
    /// the whole region); [`Placement::hosts`] without building the placement.
    pub fn hosts(&self, instance: &Instance) -> bool {
        self.cloud == instance.cloud
            && self.region == instance.region
            && self.instance_type == instance.instance_type
            && (self.zone.is_none() || self.zone == instance.zone)
    }

    /// Whether a remembered refusal rules this offering out.
    pub fn is_short(&self, shortage: &ShortageScope) -> bool {
        shortage.covers(&self.placement(), &self.gpu)
    }

    /// "aws us-east-1 p5.48xlarge" or "gcp us-central1-a a3-highgpu-8g".
    pub fn label(&self) -> String {
        format!("{} {} {}", self.cloud, self.zone.as_deref().unwrap_or(&self.region), self.instance_type)
    }
}

/// Why the catalog data cannot be used; the compiled-in data is checked by the test suite.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    #[error("catalog data is malformed: {0}")]
    Malformed(#[from] toml::de::Error),
    #[error("catalog lists {cloud} region {region} for {instance_type}, but that region is not declared")]
    UnknownRegion { cloud: Cloud, region: String, instance_type: String },
    #[error("catalog lists zone {zone} for {instance_type}, but {cloud} region {region} does not declare it")]
    UnknownZone { cloud: Cloud, region: String, zone: String, instance_type: String },
    #[error("catalog lists zones for {cloud} {instance_type}, but {cloud} places by region")]
    ZonesOnRegionalCloud { cloud: Cloud, instance_type: String },
    #[error("catalog declares {cloud} {what} {name} twice")]
    Duplicate { cloud: Cloud, what: &'static str, name: String },
    #[error("catalog gives {cloud} {instance_type} in {region} the price {price}, which is not a positive number")]
    BadPrice { cloud: Cloud, instance_type: String, region: String, price: f64 },
    #[error("catalog gives {cloud} {instance_type} no GPUs")]
    NoGpus { cloud: Cloud, instance_type: String },
}

/// One `[[offerings]]` entry of a plan that cannot be applied to the catalog.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{problem}")]
pub struct OverrideError {
    /// Position of the entry in the plan's `offerings` list.
    pub index: usize,
    pub problem: OverrideProblem,
}

/// What is wrong with an `[[offerings]]` entry.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum OverrideProblem {
    #[error(
        "{cloud} instance type `{instance_type}` is not in the catalog, so the entry must give `gpu` and `gpus_per_node`"
    )]
    NewTypeNeedsShape { cloud: Cloud, instance_type: String },
    #[error("{cloud} region `{region}` is not in the catalog, so the entry must give `jurisdiction`")]
    NewRegionNeedsJurisdiction { cloud: Cloud, region: String },
    #[error("the catalog says {cloud} `{instance_type}` has {field} {catalog}, but the entry says {entry}")]
    ShapeMismatch { cloud: Cloud, instance_type: String, field: &'static str, catalog: String, entry: String },
    #[error("the catalog puts {cloud} region `{region}` under jurisdiction {catalog}, but the entry says {entry}")]
    JurisdictionMismatch { cloud: Cloud, region: String, catalog: String, entry: String },
    #[error("{cloud} places instances by region, so the entry cannot name a zone")]
    ZoneOnRegionalCloud { cloud: Cloud },
    #[error(
        "zone `{zone}` is not in region `{region}` (zones are named after their region, e.g. us-east-1a, us-central1-a)"
    )]
    ZoneOutsideRegion { zone: String, region: String },
}

impl Catalog {
    /// The catalog compiled into this binary.
    pub fn builtin() -> Catalog {
        Catalog::parse(BUILTIN).expect("the compiled-in catalog is checked by the test suite")
    }

    /// The compiled-in catalog, parsed once per process, for code that only looks types up.
    pub fn builtin_ref() -> &'static Catalog {
        static BUILT_IN: std::sync::OnceLock<Catalog> = std::sync::OnceLock::new();
        BUILT_IN.get_or_init(Catalog::builtin)
    }

    /// Parses catalog data and checks that it is consistent: every offer names a
    /// declared region (and declared zones), nothing is declared twice, prices are positive.
    pub fn parse(text: &str) -> Result<Catalog, CatalogError> {
        let catalog: Catalog = toml::from_str(text)?;
        catalog.check()?;
        Ok(catalog)
    }

    fn check(&self) -> Result<(), CatalogError> {
        let mut seen_regions = std::collections::BTreeSet::new();
        for region in &self.regions {
            if !seen_regions.insert((region.cloud, region.name.as_str())) {
                return Err(CatalogError::Duplicate { cloud: region.cloud, what: "region", name: region.name.clone() });
            }
        }
        let mut seen_types = std::collections::BTreeSet::new();
        for it in &self.instance_types {
            if !seen_types.insert((it.cloud, it.name.as_str())) {
                return Err(CatalogError::Duplicate { cloud: it.cloud, what: "instance type", name: it.name.clone() });
            }
            if it.gpus == 0 {
                return Err(CatalogError::NoGpus { cloud: it.cloud, instance_type: it.name.clone() });
            }
            for offer in &it.offers {
                let Some(region) = self.region(it.cloud, &offer.region) else {
                    return Err(CatalogError::UnknownRegion {
                        cloud: it.cloud,
                        region: offer.region.clone(),
                        instance_type: it.name.clone(),
                    });
                };
                if !offer.zones.is_empty() && !it.cloud.places_by_zone() {
                    return Err(CatalogError::ZonesOnRegionalCloud { cloud: it.cloud, instance_type: it.name.clone() });
                }
                if let Some(zone) = offer.zones.iter().find(|z| !region.zones.contains(z)) {
                    return Err(CatalogError::UnknownZone {
                        cloud: it.cloud,
                        region: region.name.clone(),
                        zone: zone.clone(),
                        instance_type: it.name.clone(),
                    });
                }
                if let Some(price) = offer.price_per_hour.filter(|p| !(p.is_finite() && *p > 0.0)) {
                    return Err(CatalogError::BadPrice {
                        cloud: it.cloud,
                        instance_type: it.name.clone(),
                        region: offer.region.clone(),
                        price,
                    });
                }
            }
        }
        Ok(())
    }

    pub fn region(&self, cloud: Cloud, name: &str) -> Option<&Region> {
        self.regions.iter().find(|r| r.cloud == cloud && r.name == name)
    }

    pub fn instance_type(&self, cloud: Cloud, name: &str) -> Option<&InstanceType> {
        self.instance_types.iter().find(|t| t.cloud == cloud && t.name == name)
    }

    /// Every GPU model some instance type carries, sorted.
    pub fn gpu_models(&self) -> Vec<String> {
        let mut models: Vec<String> = self.instance_types.iter().map(|t| t.gpu.clone()).collect();
        models.sort();
        models.dedup();
        models
    }

    /// The node shapes (GPUs per node) some instance type offers for a GPU model, sorted.
    pub fn gpus_per_node_offered(&self, gpu: &str) -> Vec<u32> {
        let mut counts: Vec<u32> = self.instance_types.iter().filter(|t| t.gpu == gpu).map(|t| t.gpus).collect();
        counts.sort_unstable();
        counts.dedup();
        counts
    }

    /// The regions the catalog knows for one cloud, in catalog order.
    pub fn regions_of(&self, cloud: Cloud) -> impl Iterator<Item = &Region> {
        self.regions.iter().filter(move |r| r.cloud == cloud)
    }

    /// Every jurisdiction some region is under, sorted; a region of unknown
    /// jurisdiction adds none, so that no `residency` can name it.
    pub fn jurisdictions(&self) -> Vec<String> {
        let mut all: Vec<String> = self
            .regions
            .iter()
            .filter(|r| r.jurisdiction != UNKNOWN_JURISDICTION)
            .map(|r| r.jurisdiction.clone())
            .collect();
        all.sort();
        all.dedup();
        all
    }

    /// All offerings, in catalog order. AWS and Azure place by region (zone
    /// `None`); Google Cloud places by zone, so it yields one offering per zone.
    pub fn offerings(&self) -> Vec<Offering> {
        self.offerings_of(|_| true)
    }

    /// The offerings of the instance types `wanted` picks, in catalog order.
    pub fn offerings_of(&self, wanted: impl Fn(&InstanceType) -> bool) -> Vec<Offering> {
        let mut out = Vec::new();
        for it in self.instance_types.iter().filter(|it| wanted(it)) {
            for offer in &it.offers {
                let Some(region) = self.region(it.cloud, &offer.region) else { continue };
                let base = Offering {
                    cloud: it.cloud,
                    region: offer.region.clone(),
                    zone: None,
                    instance_type: it.name.clone(),
                    gpu: it.gpu.clone(),
                    gpus_per_node: it.gpus,
                    jurisdiction: region.jurisdiction.clone(),
                    price_per_hour: offer.price_per_hour,
                };
                let zones = if offer.zones.is_empty() { &region.zones } else { &offer.zones };
                if it.cloud.places_by_zone() && !zones.is_empty() {
                    out.extend(zones.iter().map(|z| Offering { zone: Some(z.clone()), ..base.clone() }));
                } else {
                    out.push(base);
                }
            }
        }
        out
    }
}

pub mod mapping;
mod overrides;
mod refreshed;

pub use refreshed::{
    CloudRead, CloudSection, ReadOffer, ReadRegion, RefreshedCatalog, RefreshedError, Sighting, SkippedType,
    UNKNOWN_JURISDICTION, account_label,
};

/// Compute Engine's project-wide quota of GPUs of every model in every
/// region: a new project has 0 of it, whatever its regional quotas say.
pub const GCE_GPUS_ALL_REGIONS: &str = "GPUS_ALL_REGIONS";

/// The `usages` name of an Azure location's vCPUs over every family ("Total
/// Regional vCPUs"): a VM must fit it as well as its family's quota.
pub const AZURE_TOTAL_REGIONAL_VCPUS: &str = "cores";

/// The Compute Engine regional quota metric that limits a machine type's GPUs,
/// e.g. `NVIDIA_H100_GPUS` (A3 Mega machines have their own metric).
pub fn gce_gpu_quota_metric(machine_type: &str, gpu: &str) -> String {
    match gpu {
        "H100" if machine_type.starts_with("a3-mega") => "NVIDIA_H100_MEGA_GPUS".into(),
        "H100" => "NVIDIA_H100_GPUS".into(),
        "H200" => "NVIDIA_H200_GPUS".into(),
        "B200" => "NVIDIA_B200_GPUS".into(),
        "A100-40GB" => "NVIDIA_A100_GPUS".into(),
        "A100-80GB" => "NVIDIA_A100_80GB_GPUS".into(),
        "L4" => "NVIDIA_L4_GPUS".into(),
        other => format!("NVIDIA_{}_GPUS", other.to_ascii_uppercase().replace(['-', ' '], "_")),
    }
}

/// The Azure vCPU quota family of a VM size, as `usages` names it, e.g.
/// `Standard_ND96isr_H100_v5` → `standardNDSH100v5Family`. Names follow
/// Azure's published family names (their casing is Azure's, which is not
/// uniform); sizes are matched case-insensitively, and family names should be
/// compared case-insensitively too. `None` for sizes gpufleet does not know.
pub fn azure_vcpu_family(size: &str) -> Option<&'static str> {
    const FAMILIES: [(&str, &str); 6] = [
        ("Standard_ND96isr_H100_v5", "standardNDSH100v5Family"),
        ("Standard_ND96isr_H200_v5", "standardNDSH200v5Family"),
        ("Standard_ND96asr_v4", "standardNDASv4_A100Family"),
        ("Standard_ND96amsr_A100_v4", "standardNDAMSv4_A100Family"),
        ("Standard_NC40ads_H100_v5", "standardNCadsH100v5Family"),
        ("Standard_NC24ads_A100_v4", "StandardNCADSA100v4Family"),
    ];
    FAMILIES.iter().find(|(name, _)| name.eq_ignore_ascii_case(size)).map(|(_, family)| *family)
}

/// An EC2 running On-Demand vCPU quota, as Service Quotas names it: EC2
/// limits On-Demand instances by the vCPUs running per instance family in a
/// region, not by instance count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ec2VcpuQuota {
    /// Service Quotas code, e.g. `L-417A185B`.
    pub code: &'static str,
    pub name: &'static str,
    /// Instance families it counts: the letters of a type's name before its generation digit.
    pub families: &'static [&'static str],
}

/// The EC2 vCPU quotas gpufleet knows (AWS's published codes): the GPU
/// families, and Standard for the rest of the letters that share one.
pub const EC2_VCPU_QUOTAS: [Ec2VcpuQuota; 3] = [
    Ec2VcpuQuota { code: "L-417A185B", name: "Running On-Demand P instances", families: &["p"] },
    Ec2VcpuQuota { code: "L-DB2E81BA", name: "Running On-Demand G and VT instances", families: &["g", "vt"] },
    Ec2VcpuQuota {
        code: "L-1216C47A",
        name: "Running On-Demand Standard (A, C, D, H, I, M, R, T, Z) instances",
        families: &["a", "c", "d", "h", "i", "m", "r", "t", "z"],
    },
];

/// The vCPU quota an EC2 instance type counts against, by its family
/// (`p5en.48xlarge` → P, `g6.48xlarge` → G and VT); `None` for families
/// gpufleet does not know.
pub fn ec2_vcpu_quota(instance_type: &str) -> Option<&'static Ec2VcpuQuota> {
    let family: String =
        instance_type.chars().take_while(char::is_ascii_alphabetic).collect::<String>().to_ascii_lowercase();
    EC2_VCPU_QUOTAS.iter().find(|quota| quota.families.contains(&family.as_str()))
}

/// The EC2 vCPU quota of this Service Quotas code, if gpufleet knows it.
pub fn ec2_vcpu_quota_by_code(code: &str) -> Option<&'static Ec2VcpuQuota> {
    EC2_VCPU_QUOTAS.iter().find(|quota| quota.code == code)
}

#[cfg(test)]
mod tests;
