//! The refreshed catalog: which GPU instance types each region or zone sells
//! to the plan's accounts, as the clouds' own APIs said on a given day
//! (`gpufleet catalog refresh`), kept in a local JSON file.
//!
//! Built here from what the providers read ([`CloudRead`]), with the
//! clouds' GPU names mapped to the catalog's ([`super::mapping`]); merged
//! over the built-in catalog by [`Catalog::with_refreshed`]: in every region
//! a refresh read, what it found replaces the built-in offers. Prices stay
//! the built-in data's (unknown where it has none); offers the account may
//! not use (Azure's `NotAvailableForSubscription`) are kept in the file, as
//! such, and never become placeable.

use super::mapping::{ReportedGpu, gpu_model, jurisdiction_of};
use super::{Catalog, InstanceType, Region, RegionOffer};
use crate::model::Cloud;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// `kind` of a refreshed catalog file.
pub const KIND: &str = "gpufleet-catalog";
/// Format version of the file this gpufleet writes and reads.
pub const FORMAT_VERSION: u32 = 1;
/// The jurisdiction of a region whose name no known prefix covers: no
/// `residency` list can name it, so no residency constraint admits it.
pub const UNKNOWN_JURISDICTION: &str = "unknown";

/// One instance type one cloud sells in one region, as the cloud said it.
#[derive(Debug, Clone, PartialEq)]
pub struct Sighting {
    pub region: String,
    /// Zones of the region that sell it (empty for clouds that answer per region).
    pub zones: Vec<String>,
    pub instance_type: String,
    pub gpu: ReportedGpu,
    pub gpus: u32,
    /// Memory per GPU in GiB when the cloud reports it, else the model's.
    pub gpu_memory_gib: Option<u32>,
    pub vcpus: u32,
    /// Why the account may not use it in the region, e.g. `NotAvailableForSubscription`.
    pub restriction: Option<String>,
}

/// What a refresh read from one account of one cloud.
#[derive(Debug, Clone, PartialEq)]
pub struct CloudRead {
    pub cloud: Cloud,
    /// The account read, as [`account_label`] names it.
    pub account: String,
    /// Regions read in full, each with its zones: what they sell is all in `sightings`.
    pub regions: BTreeMap<String, BTreeSet<String>>,
    /// GPU instance types sold in those regions.
    pub sightings: Vec<Sighting>,
}

/// How the file names the account a cloud was read for: `profile NAME`
/// (AWS; `default` without one), `project ID`, `subscription ID`.
pub fn account_label(cloud: Cloud, id: Option<&str>) -> String {
    match cloud {
        Cloud::Aws => format!("profile {}", id.unwrap_or("default")),
        Cloud::Gcp => format!("project {}", id.unwrap_or_default()),
        Cloud::Azure => format!("subscription {}", id.unwrap_or_default()),
    }
}

/// The file `catalog refresh` writes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RefreshedCatalog {
    pub kind: String,
    pub format_version: u32,
    pub refreshed_at: DateTime<Utc>,
    pub clouds: Vec<CloudSection>,
}

/// What one cloud sells to the plan's account there.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CloudSection {
    pub cloud: Cloud,
    pub account: String,
    /// Regions read in full: the built-in offers there are replaced by `offers`.
    pub regions: Vec<ReadRegion>,
    pub offers: Vec<ReadOffer>,
    /// GPU instance types gpufleet cannot name the GPU of, left out.
    #[serde(default)]
    pub skipped: Vec<SkippedType>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReadRegion {
    pub name: String,
    /// From the built-in catalog, else from the region's name; absent when neither knows.
    pub jurisdiction: Option<String>,
    #[serde(default)]
    pub zones: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReadOffer {
    pub region: String,
    #[serde(default)]
    pub zones: Vec<String>,
    pub instance_type: String,
    /// The catalog's name of the GPU ("H100", "A100-80GB", ...).
    pub gpu: String,
    pub gpus: u32,
    pub gpu_memory_gib: u32,
    pub vcpus: u32,
    /// The cloud's reason the account may not use it in this region; such an offer is never placed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restricted: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SkippedType {
    pub instance_type: String,
    /// The GPU as the cloud reported it.
    pub gpu: String,
}

/// A refreshed catalog file that cannot be used.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
#[error("the refreshed catalog {} {problem}", path.display())]
#[diagnostic(help(
    "run `gpufleet catalog refresh PLAN` again, or delete {} to use the built-in catalog",
    path.display()
))]
pub struct RefreshedError {
    pub path: PathBuf,
    pub problem: String,
}

impl RefreshedCatalog {
    /// The file for these reads, with the clouds' GPU names mapped to the
    /// catalog's: types whose GPU gpufleet cannot name are listed as skipped;
    /// regions get their jurisdiction from `builtin`, else from their name.
    pub fn from_reads(reads: &[CloudRead], refreshed_at: DateTime<Utc>, builtin: &Catalog) -> RefreshedCatalog {
        let clouds = reads
            .iter()
            .map(|read| {
                let regions = read
                    .regions
                    .iter()
                    .filter(|(name, _)| !name.is_empty())
                    .map(|(name, zones)| ReadRegion {
                        name: name.clone(),
                        jurisdiction: builtin
                            .region(read.cloud, name)
                            .map(|r| r.jurisdiction.clone())
                            .or_else(|| jurisdiction_of(read.cloud, name).map(str::to_string)),
                        zones: if read.cloud.places_by_zone() { zones.iter().cloned().collect() } else { Vec::new() },
                    })
                    .collect();
                let mut offers: BTreeMap<(String, String), ReadOffer> = BTreeMap::new();
                let mut skipped = BTreeMap::new();
                // Only what the file's reader accepts: a type sold in a region read, with GPUs.
                let sold = read.sightings.iter().filter(|s| {
                    !s.instance_type.is_empty()
                        && s.gpus > 0
                        && !s.region.is_empty()
                        && read.regions.contains_key(&s.region)
                });
                for s in sold {
                    let Some(model) = gpu_model(&s.gpu) else {
                        skipped.insert(s.instance_type.clone(), s.gpu.to_string());
                        continue;
                    };
                    let offer =
                        offers.entry((s.instance_type.clone(), s.region.clone())).or_insert_with(|| ReadOffer {
                            region: s.region.clone(),
                            zones: Vec::new(),
                            instance_type: s.instance_type.clone(),
                            gpu: model.name.to_string(),
                            gpus: s.gpus,
                            gpu_memory_gib: s.gpu_memory_gib.unwrap_or(model.memory_gib),
                            vcpus: s.vcpus,
                            restricted: s.restriction.clone(),
                        });
                    // A type listed twice in a region (ARM lists a size per extended location
                    // too) is one offer there, usable where either listing is.
                    let zones = read.regions.get(&s.region).into_iter().flatten();
                    offer.zones.extend(s.zones.iter().filter(|z| zones.clone().any(|known| known == *z)).cloned());
                    offer.zones.sort();
                    offer.zones.dedup();
                    if s.restriction.is_none() {
                        offer.restricted = None;
                    }
                }
                if !read.cloud.places_by_zone() {
                    offers.values_mut().for_each(|o| o.zones.clear());
                }
                CloudSection {
                    cloud: read.cloud,
                    account: read.account.clone(),
                    regions,
                    offers: offers.into_values().collect(),
                    skipped: skipped
                        .into_iter()
                        .map(|(instance_type, gpu)| SkippedType { instance_type, gpu })
                        .collect(),
                }
            })
            .collect();
        RefreshedCatalog { kind: KIND.into(), format_version: FORMAT_VERSION, refreshed_at, clouds }
    }

    /// The file's bytes: pretty JSON, so that a person can read and diff it.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut bytes = serde_json::to_vec_pretty(self).expect("a refreshed catalog serializes");
        bytes.push(b'\n');
        bytes
    }

    /// Reads the file at `path`: `Ok(None)` when there is none. A file that
    /// is damaged (truncated, hand-edited) is an error naming the file and
    /// what is wrong, never a silent fallback to the built-in data.
    pub fn read(path: &Path) -> Result<Option<RefreshedCatalog>, RefreshedError> {
        use std::io::Read;
        let problem = |problem: String| RefreshedError { path: path.to_path_buf(), problem };
        // Opened as it is: looking for the file creates no directory and changes no mode.
        let mut file = match crate::files::open_regular(path, std::fs::OpenOptions::new().read(true)) {
            Ok(file) => file,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(problem(format!("cannot be read: {e}"))),
        };
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes).map_err(|e| problem(format!("cannot be read: {e}")))?;
        let file: RefreshedCatalog =
            crate::json::from_slice(&bytes).map_err(|e| problem(format!("is damaged: {e}")))?;
        file.check().map_err(|p| problem(format!("is damaged: {p}")))?;
        Ok(Some(file))
    }

    /// What a hand edit can break that the types do not say.
    fn check(&self) -> Result<(), String> {
        if self.kind != KIND {
            return Err(format!("kind is `{}`, not `{KIND}`", self.kind));
        }
        if self.format_version != FORMAT_VERSION {
            return Err(format!(
                "format_version is {}; this gpufleet reads version {FORMAT_VERSION}",
                self.format_version
            ));
        }
        let mut clouds = BTreeSet::new();
        for (i, section) in self.clouds.iter().enumerate() {
            let at = format!("clouds[{i}]");
            if !clouds.insert(section.cloud) {
                return Err(format!("{at}: {} appears twice", section.cloud));
            }
            let mut regions: BTreeMap<&str, &ReadRegion> = BTreeMap::new();
            for (j, region) in section.regions.iter().enumerate() {
                if region.name.is_empty() || regions.insert(region.name.as_str(), region).is_some() {
                    return Err(format!("{at}.regions[{j}]: region `{}` is empty or listed twice", region.name));
                }
                if let Some(code) = region.jurisdiction.as_deref()
                    && !((2..=3).contains(&code.len()) && code.chars().all(|c| c.is_ascii_uppercase()))
                {
                    return Err(format!("{at}.regions[{j}].jurisdiction: `{code}` is not a jurisdiction code"));
                }
                if !section.cloud.places_by_zone() && !region.zones.is_empty() {
                    return Err(format!("{at}.regions[{j}]: {} places by region, so lists no zones", section.cloud));
                }
            }
            let mut seen = BTreeSet::new();
            for (j, offer) in section.offers.iter().enumerate() {
                let at = format!("{at}.offers[{j}]");
                let Some(region) = regions.get(offer.region.as_str()) else {
                    return Err(format!("{at}: region `{}` is not among the regions read", offer.region));
                };
                if !seen.insert((offer.instance_type.as_str(), offer.region.as_str())) {
                    return Err(format!("{at}: {} in {} is listed twice", offer.instance_type, offer.region));
                }
                if offer.gpus == 0 || offer.instance_type.is_empty() || offer.gpu.is_empty() {
                    return Err(format!("{at}: an offer needs an instance type, a GPU model and GPUs"));
                }
                if let Some(zone) = offer.zones.iter().find(|z| !region.zones.contains(z)) {
                    return Err(format!("{at}: zone `{zone}` is not among the zones of {}", offer.region));
                }
            }
        }
        Ok(())
    }

    /// The account `cloud` was read for, if it was read.
    pub fn account(&self, cloud: Cloud) -> Option<&str> {
        self.clouds.iter().find(|section| section.cloud == cloud).map(|section| section.account.as_str())
    }

    /// Offers the account may use, per cloud.
    pub fn placeable(&self) -> impl Iterator<Item = (Cloud, &ReadOffer)> {
        self.clouds.iter().flat_map(|section| {
            section
                .offers
                .iter()
                .filter(move |o| o.restricted.is_none() && (!section.cloud.places_by_zone() || !o.zones.is_empty()))
                .map(move |o| (section.cloud, o))
        })
    }
}

impl Catalog {
    /// This catalog with the `locations` (regions, or Google Cloud zones) of
    /// `cloud` it lacks declared, under the jurisdiction their names give
    /// (else unknown), selling nothing. A plan naming regions that only a
    /// refresh will find validates against it, so that `catalog refresh`
    /// can learn which accounts and regions to read.
    pub fn declaring(&self, cloud: Cloud, locations: &[String]) -> Catalog {
        let mut out = self.clone();
        for location in locations.iter().filter(|l| !l.is_empty()) {
            let (region, zone) = match cloud {
                Cloud::Gcp => match location.rsplit_once('-') {
                    Some((region, _)) => (region, Some(location)),
                    None => continue,
                },
                Cloud::Aws | Cloud::Azure => (location.as_str(), None),
            };
            let index = match out.regions.iter().position(|r| r.cloud == cloud && r.name == region) {
                Some(index) => index,
                None => {
                    out.regions.push(Region {
                        cloud,
                        name: region.to_string(),
                        jurisdiction: jurisdiction_of(cloud, region).unwrap_or(UNKNOWN_JURISDICTION).to_string(),
                        zones: Vec::new(),
                    });
                    out.regions.len() - 1
                }
            };
            if let Some(zone) = zone.filter(|z| !out.regions[index].zones.contains(z)) {
                out.regions[index].zones.push(zone.clone());
            }
        }
        out
    }

    /// This catalog with a refresh applied: in every region the refresh
    /// read, the offers are what the cloud said (restricted ones left out),
    /// each at this catalog's price for the type there, or unknown; regions
    /// and instance types the refresh found that this catalog lacks are
    /// added. Regions the refresh did not read keep this catalog's offers.
    pub fn with_refreshed(&self, refreshed: &RefreshedCatalog) -> Catalog {
        let mut out = self.clone();
        for section in &refreshed.clouds {
            let cloud = section.cloud;
            for read in &section.regions {
                for it in out.instance_types.iter_mut().filter(|t| t.cloud == cloud) {
                    it.offers.retain(|o| o.region != read.name);
                }
                match out.regions.iter_mut().find(|r| r.cloud == cloud && r.name == read.name) {
                    Some(known) => {
                        let new: Vec<String> =
                            read.zones.iter().filter(|z| !known.zones.contains(z)).cloned().collect();
                        known.zones.extend(new);
                    }
                    None => out.regions.push(Region {
                        cloud,
                        name: read.name.clone(),
                        jurisdiction: read.jurisdiction.clone().unwrap_or_else(|| UNKNOWN_JURISDICTION.into()),
                        zones: read.zones.clone(),
                    }),
                }
            }
        }
        for (cloud, offer) in refreshed.placeable() {
            let price = self
                .instance_type(cloud, &offer.instance_type)
                .and_then(|t| t.offers.iter().find(|o| o.region == offer.region && o.price_per_hour.is_some()))
                .and_then(|o| o.price_per_hour);
            let index = match out.instance_types.iter().position(|t| t.cloud == cloud && t.name == offer.instance_type)
            {
                Some(index) => index,
                None => {
                    out.instance_types.push(InstanceType {
                        cloud,
                        name: offer.instance_type.clone(),
                        gpu: offer.gpu.clone(),
                        gpus: offer.gpus,
                        gpu_memory_gib: offer.gpu_memory_gib,
                        vcpus: offer.vcpus,
                        offers: Vec::new(),
                    });
                    out.instance_types.len() - 1
                }
            };
            let zones = if cloud.places_by_zone() { offer.zones.clone() } else { Vec::new() };
            out.instance_types[index].offers.push(RegionOffer {
                region: offer.region.clone(),
                zones,
                price_per_hour: price,
            });
        }
        out
    }
}
