//! From what the clouds call things to what the catalog calls them: GPU
//! models (EC2's `GpuInfo`, Compute Engine's accelerator types, Azure's SKU
//! families) and the jurisdiction of a region the built-in data lacks.
//!
//! Both are small tables, read in both directions: `catalog refresh` maps a
//! cloud's answer to a catalog name, and the simulator answers with the
//! cloud's own name for a catalog model, so the two cannot drift apart.

use crate::model::Cloud;

/// A GPU model the catalog names, and how each cloud reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GpuModel {
    /// The catalog's (and the plans') name, e.g. "A100-80GB".
    pub name: &'static str,
    /// Memory per GPU in GiB, for clouds that do not report it.
    pub memory_gib: u32,
    /// EC2 `GpuInfo.Gpus[].Name` and the range of `MemoryInfo.SizeInMiB` it
    /// covers (EC2 calls both A100s "A100"; their memory tells them apart).
    pub ec2: Option<(&'static str, u32, u32)>,
    /// Compute Engine accelerator type names.
    pub gce: &'static [&'static str],
    /// Azure SKU families (compared case-insensitively: Azure's casing is not uniform).
    pub azure: &'static [&'static str],
}

/// Below this many MiB an EC2 "A100" is the 40 GB part.
const A100_80GB_MIB: u32 = 60 * 1024;

/// Every GPU model gpufleet can name. A GPU a cloud reports that is not
/// here is skipped by `catalog refresh` (and counted), never guessed.
pub const GPU_MODELS: [GpuModel; 8] = [
    GpuModel {
        name: "H100",
        memory_gib: 80,
        ec2: Some(("H100", 0, u32::MAX)),
        gce: &["nvidia-h100-80gb", "nvidia-h100-mega-80gb"],
        azure: &["standardNDSH100v5Family"],
    },
    GpuModel { name: "H100-NVL", memory_gib: 94, ec2: None, gce: &[], azure: &["standardNCadsH100v5Family"] },
    GpuModel {
        name: "H200",
        memory_gib: 141,
        ec2: Some(("H200", 0, u32::MAX)),
        gce: &["nvidia-h200-141gb"],
        azure: &["standardNDSH200v5Family"],
    },
    GpuModel { name: "B200", memory_gib: 180, ec2: Some(("B200", 0, u32::MAX)), gce: &["nvidia-b200"], azure: &[] },
    GpuModel {
        name: "A100-40GB",
        memory_gib: 40,
        ec2: Some(("A100", 0, A100_80GB_MIB - 1)),
        gce: &["nvidia-tesla-a100"],
        azure: &["standardNDASv4_A100Family"],
    },
    GpuModel {
        name: "A100-80GB",
        memory_gib: 80,
        ec2: Some(("A100", A100_80GB_MIB, u32::MAX)),
        gce: &["nvidia-a100-80gb"],
        azure: &["standardNDAMSv4_A100Family", "StandardNCADSA100v4Family"],
    },
    GpuModel { name: "L4", memory_gib: 24, ec2: Some(("L4", 0, u32::MAX)), gce: &["nvidia-l4"], azure: &[] },
    GpuModel { name: "A10G", memory_gib: 22, ec2: Some(("A10G", 0, u32::MAX)), gce: &[], azure: &[] },
];

/// A GPU as a cloud reports it, before it has a catalog name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReportedGpu {
    /// EC2 `GpuInfo`: manufacturer, name, memory per GPU in MiB.
    Ec2 { manufacturer: String, name: String, memory_mib: u32 },
    /// A Compute Engine accelerator type, e.g. `nvidia-h100-80gb`.
    Gce { accelerator_type: String },
    /// An Azure SKU family, e.g. `standardNDSH100v5Family`.
    Azure { family: String },
}

impl std::fmt::Display for ReportedGpu {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ReportedGpu::Ec2 { manufacturer, name, memory_mib } => write!(f, "{manufacturer} {name} {memory_mib} MiB"),
            ReportedGpu::Gce { accelerator_type } => f.write_str(accelerator_type),
            ReportedGpu::Azure { family } => f.write_str(family),
        }
    }
}

/// The catalog's model for a GPU a cloud reports, if gpufleet knows it.
pub fn gpu_model(reported: &ReportedGpu) -> Option<&'static GpuModel> {
    GPU_MODELS.iter().find(|model| match reported {
        ReportedGpu::Ec2 { manufacturer, name, memory_mib } => {
            manufacturer.eq_ignore_ascii_case("NVIDIA")
                && model.ec2.is_some_and(|(ec2_name, low, high)| {
                    ec2_name.eq_ignore_ascii_case(name) && (low..=high).contains(memory_mib)
                })
        }
        ReportedGpu::Gce { accelerator_type } => model.gce.contains(&accelerator_type.as_str()),
        ReportedGpu::Azure { family } => model.azure.iter().any(|f| f.eq_ignore_ascii_case(family)),
    })
}

fn model_named(gpu: &str) -> Option<&'static GpuModel> {
    GPU_MODELS.iter().find(|model| model.name == gpu)
}

/// EC2's `GpuInfo` name of a catalog model ("A100-80GB" → "A100").
pub fn ec2_gpu_name(gpu: &str) -> Option<&'static str> {
    model_named(gpu).and_then(|model| model.ec2).map(|(name, _, _)| name)
}

/// The Compute Engine accelerator type a machine type carries (A3 Mega
/// machines have an accelerator type of their own).
pub fn gce_accelerator_type(machine_type: &str, gpu: &str) -> Option<&'static str> {
    let names = model_named(gpu)?.gce;
    let mega = machine_type.starts_with("a3-mega");
    names.iter().find(|name| name.contains("-mega-") == mega).or(names.first()).copied()
}

/// Jurisdiction codes by region-name prefix, per cloud; the longest prefix
/// that matches wins. Codes as in catalog.toml: ISO 3166 country codes, "EU"
/// for the member states of the European Union.
const JURISDICTIONS: &[(Cloud, &str, &str)] = &[
    (Cloud::Aws, "us-", "US"),
    (Cloud::Aws, "ca-", "CA"),
    (Cloud::Aws, "mx-", "MX"),
    (Cloud::Aws, "sa-east-", "BR"),
    (Cloud::Aws, "eu-", "EU"),
    (Cloud::Aws, "eu-west-2", "UK"),
    (Cloud::Aws, "eu-central-2", "CH"),
    (Cloud::Aws, "ap-northeast-1", "JP"),
    (Cloud::Aws, "ap-northeast-2", "KR"),
    (Cloud::Aws, "ap-northeast-3", "JP"),
    (Cloud::Aws, "ap-south-", "IN"),
    (Cloud::Aws, "ap-southeast-1", "SG"),
    (Cloud::Aws, "ap-southeast-2", "AU"),
    (Cloud::Aws, "ap-southeast-3", "ID"),
    (Cloud::Aws, "ap-southeast-4", "AU"),
    (Cloud::Aws, "ap-east-1", "HK"),
    (Cloud::Aws, "me-central-", "AE"),
    (Cloud::Aws, "me-south-", "BH"),
    (Cloud::Aws, "il-", "IL"),
    (Cloud::Aws, "af-south-", "ZA"),
    (Cloud::Gcp, "us-", "US"),
    (Cloud::Gcp, "northamerica-northeast", "CA"),
    (Cloud::Gcp, "northamerica-south", "MX"),
    (Cloud::Gcp, "southamerica-east", "BR"),
    (Cloud::Gcp, "southamerica-west", "CL"),
    (Cloud::Gcp, "europe-", "EU"),
    (Cloud::Gcp, "europe-west2", "UK"),
    (Cloud::Gcp, "europe-west6", "CH"),
    (Cloud::Gcp, "asia-northeast1", "JP"),
    (Cloud::Gcp, "asia-northeast2", "JP"),
    (Cloud::Gcp, "asia-northeast3", "KR"),
    (Cloud::Gcp, "asia-south", "IN"),
    (Cloud::Gcp, "asia-southeast1", "SG"),
    (Cloud::Gcp, "asia-southeast2", "ID"),
    (Cloud::Gcp, "asia-east1", "TW"),
    (Cloud::Gcp, "asia-east2", "HK"),
    (Cloud::Gcp, "australia-", "AU"),
    (Cloud::Gcp, "me-west1", "IL"),
    (Cloud::Gcp, "me-central1", "QA"),
    (Cloud::Gcp, "me-central2", "SA"),
    (Cloud::Gcp, "africa-south", "ZA"),
    (Cloud::Azure, "eastus", "US"),
    (Cloud::Azure, "westus", "US"),
    (Cloud::Azure, "centralus", "US"),
    (Cloud::Azure, "northcentralus", "US"),
    (Cloud::Azure, "southcentralus", "US"),
    (Cloud::Azure, "westcentralus", "US"),
    (Cloud::Azure, "canada", "CA"),
    (Cloud::Azure, "mexico", "MX"),
    (Cloud::Azure, "brazil", "BR"),
    (Cloud::Azure, "westeurope", "EU"),
    (Cloud::Azure, "northeurope", "EU"),
    (Cloud::Azure, "france", "EU"),
    (Cloud::Azure, "germany", "EU"),
    (Cloud::Azure, "sweden", "EU"),
    (Cloud::Azure, "italy", "EU"),
    (Cloud::Azure, "poland", "EU"),
    (Cloud::Azure, "spain", "EU"),
    (Cloud::Azure, "uk", "UK"),
    (Cloud::Azure, "norway", "NO"),
    (Cloud::Azure, "switzerland", "CH"),
    (Cloud::Azure, "japan", "JP"),
    (Cloud::Azure, "korea", "KR"),
    (Cloud::Azure, "centralindia", "IN"),
    (Cloud::Azure, "southindia", "IN"),
    (Cloud::Azure, "westindia", "IN"),
    (Cloud::Azure, "southeastasia", "SG"),
    (Cloud::Azure, "eastasia", "HK"),
    (Cloud::Azure, "australia", "AU"),
    (Cloud::Azure, "newzealand", "NZ"),
    (Cloud::Azure, "uae", "AE"),
    (Cloud::Azure, "qatar", "QA"),
    (Cloud::Azure, "israel", "IL"),
    (Cloud::Azure, "southafrica", "ZA"),
];

/// The jurisdiction of a region by its name, from [`JURISDICTIONS`];
/// `None` for a name no prefix covers (the region is then of unknown
/// jurisdiction, which no `residency` admits).
pub fn jurisdiction_of(cloud: Cloud, region: &str) -> Option<&'static str> {
    JURISDICTIONS
        .iter()
        .filter(|(c, prefix, _)| *c == cloud && region.starts_with(prefix))
        .max_by_key(|(_, prefix, _)| prefix.len())
        .map(|(_, _, code)| *code)
}
