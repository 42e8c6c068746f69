//! Applying a plan's `[[offerings]]` entries to the catalog.
//!
//! A plan may correct a price (a negotiated rate, a price the catalog does not
//! know), sell a known instance type in another region, or add an instance type
//! the catalog has never heard of. The planner and plan validation both work on
//! the catalog with the overrides applied, so they see the same offerings.

use super::{Catalog, InstanceType, OverrideError, OverrideProblem, Region, RegionOffer};
use crate::model::OfferingOverride;

impl Catalog {
    /// The catalog with a plan's `[[offerings]]` applied, in order:
    /// - a known type in a region it is sold in: the price is replaced (for a
    ///   zone, that zone gets its own offer with the new price);
    /// - a known type in a new region: the region offer is added; the region must be
    ///   known to the catalog for that cloud or the entry must give `jurisdiction`;
    /// - an unknown type: it is added, and the entry must give `gpu` and `gpus_per_node`.
    ///
    /// Every entry is checked; all problems are returned, each with its entry's index.
    pub fn with_overrides(&self, overrides: &[OfferingOverride]) -> Result<Catalog, Vec<OverrideError>> {
        let mut catalog = self.clone();
        let mut errors = Vec::new();
        for (index, entry) in overrides.iter().enumerate() {
            if let Err(problem) = catalog.apply_override(entry) {
                errors.push(OverrideError { index, problem });
            }
        }
        if errors.is_empty() { Ok(catalog) } else { Err(errors) }
    }

    fn apply_override(&mut self, entry: &OfferingOverride) -> Result<(), OverrideProblem> {
        // Check everything before changing anything, so a rejected entry leaves no trace.
        let zone = entry.zone.as_deref();
        if zone.is_some() && !entry.cloud.places_by_zone() {
            return Err(OverrideProblem::ZoneOnRegionalCloud { cloud: entry.cloud });
        }
        if let Some(zone) = zone
            && !zone_belongs_to(zone, &entry.region)
        {
            return Err(OverrideProblem::ZoneOutsideRegion { zone: zone.to_string(), region: entry.region.clone() });
        }
        self.check_region(entry)?;
        let type_index = self.type_index_for(entry)?;

        self.ensure_region(entry);
        let instance_type = &mut self.instance_types[type_index];
        let region_zones = self
            .regions
            .iter()
            .find(|r| r.cloud == entry.cloud && r.name == entry.region)
            .map(|r| r.zones.clone())
            .unwrap_or_default();
        set_offer(instance_type, &entry.region, zone, &region_zones, entry.price_per_hour);
        Ok(())
    }

    /// A known region must agree with the entry's jurisdiction; an unknown one needs it.
    fn check_region(&self, entry: &OfferingOverride) -> Result<(), OverrideProblem> {
        match (self.region(entry.cloud, &entry.region), &entry.jurisdiction) {
            (Some(known), Some(given)) if known.jurisdiction != *given => Err(OverrideProblem::JurisdictionMismatch {
                cloud: entry.cloud,
                region: entry.region.clone(),
                catalog: known.jurisdiction.clone(),
                entry: given.clone(),
            }),
            (None, None) => {
                Err(OverrideProblem::NewRegionNeedsJurisdiction { cloud: entry.cloud, region: entry.region.clone() })
            }
            _ => Ok(()),
        }
    }

    /// Index of the entry's instance type, adding the type when the entry describes a new one.
    fn type_index_for(&mut self, entry: &OfferingOverride) -> Result<usize, OverrideProblem> {
        let existing = self.instance_types.iter().position(|t| t.cloud == entry.cloud && t.name == entry.instance_type);
        let Some(index) = existing else {
            let (Some(gpu), Some(gpus)) = (&entry.gpu, entry.gpus_per_node) else {
                return Err(OverrideProblem::NewTypeNeedsShape {
                    cloud: entry.cloud,
                    instance_type: entry.instance_type.clone(),
                });
            };
            self.instance_types.push(InstanceType {
                cloud: entry.cloud,
                name: entry.instance_type.clone(),
                gpu: gpu.clone(),
                gpus,
                // A plan describes only what placement needs; the rest stays unknown (0).
                gpu_memory_gib: 0,
                vcpus: 0,
                offers: Vec::new(),
            });
            return Ok(self.instance_types.len() - 1);
        };
        let known = &self.instance_types[index];
        let mismatch = |field: &'static str, catalog: String, entry_value: String| OverrideProblem::ShapeMismatch {
            cloud: entry.cloud,
            instance_type: entry.instance_type.clone(),
            field,
            catalog,
            entry: entry_value,
        };
        if let Some(gpu) = entry.gpu.as_ref().filter(|g| **g != known.gpu) {
            return Err(mismatch("GPU model", known.gpu.clone(), gpu.clone()));
        }
        if let Some(gpus) = entry.gpus_per_node.filter(|g| *g != known.gpus) {
            return Err(mismatch("GPUs per node", known.gpus.to_string(), gpus.to_string()));
        }
        Ok(index)
    }

    /// Declares the entry's region (and zone) when the catalog does not know them yet.
    fn ensure_region(&mut self, entry: &OfferingOverride) {
        let position = self.regions.iter().position(|r| r.cloud == entry.cloud && r.name == entry.region);
        let index = position.unwrap_or_else(|| {
            self.regions.push(Region {
                cloud: entry.cloud,
                name: entry.region.clone(),
                // check_region guarantees a jurisdiction for a region the catalog lacks.
                jurisdiction: entry.jurisdiction.clone().unwrap_or_default(),
                zones: Vec::new(),
            });
            self.regions.len() - 1
        });
        let region = &mut self.regions[index];
        if let Some(zone) = &entry.zone
            && !region.zones.contains(zone)
        {
            region.zones.push(zone.clone());
        }
    }
}

/// Gives `instance_type` an offer in `region` (or only in `zone`) at `price`.
/// A price of `None` keeps whatever price the catalog had.
fn set_offer(
    instance_type: &mut InstanceType,
    region: &str,
    zone: Option<&str>,
    region_zones: &[String],
    price: Option<f64>,
) {
    let Some(zone) = zone else {
        match instance_type.offers.iter_mut().find(|o| o.region == region) {
            Some(offer) => {
                if price.is_some() {
                    offer.price_per_hour = price;
                }
            }
            None => instance_type.offers.push(RegionOffer {
                region: region.to_string(),
                zones: Vec::new(),
                price_per_hour: price,
            }),
        }
        return;
    };

    // A zone-level entry splits the zone out of the region's offer, so that the
    // other zones keep their catalog price.
    let mut kept_price = None;
    if let Some(i) = instance_type.offers.iter().position(|o| o.region == region && covers_zone(o, zone, region_zones))
    {
        let offer = &mut instance_type.offers[i];
        kept_price = offer.price_per_hour;
        if offer.zones.is_empty() {
            // "Every zone" must become an explicit list before one zone can leave it.
            offer.zones = region_zones.to_vec();
        }
        offer.zones.retain(|z| z != zone);
        if offer.zones.is_empty() {
            instance_type.offers.remove(i);
        }
    }
    instance_type.offers.push(RegionOffer {
        region: region.to_string(),
        zones: vec![zone.to_string()],
        price_per_hour: price.or(kept_price),
    });
}

fn covers_zone(offer: &RegionOffer, zone: &str, region_zones: &[String]) -> bool {
    if offer.zones.is_empty() { region_zones.iter().any(|z| z == zone) } else { offer.zones.iter().any(|z| z == zone) }
}

/// Google Cloud names zones `<region>-<suffix>`, e.g. `us-central1-a`.
/// Zones are named after their region: `us-east-1a` (AWS), `us-central1-a` (Google Cloud).
fn zone_belongs_to(zone: &str, region: &str) -> bool {
    zone.strip_prefix(region)
        .map(|rest| rest.strip_prefix('-').unwrap_or(rest))
        .is_some_and(|suffix| !suffix.is_empty() && suffix.chars().all(|c| c.is_ascii_alphanumeric()))
}
