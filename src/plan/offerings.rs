//! Which offerings may host a fleet, and in which order they are tried.

use super::model::{Fleet, Preference, Providers};
use crate::catalog::{Catalog, Offering};
use std::cmp::Ordering;

/// Why an offering of the right GPU cannot host a fleet; used to explain
/// fleets that nothing can host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Exclusion {
    CloudNotConfigured,
    LocationNotConfigured,
    /// The fleet names no machine image for this cloud: it does not run there.
    NoImage,
    OutsideResidency,
    OverPriceCeiling,
    PriceUnknownUnderCeiling,
}

/// Offerings of the fleet's GPU model and node shape, with the reason each
/// one is excluded (`None` when it is allowed).
pub fn candidate_offerings(
    fleet: &Fleet,
    providers: &Providers,
    catalog: &Catalog,
) -> Vec<(Offering, Option<Exclusion>)> {
    catalog
        .offerings_of(|t| t.gpu == fleet.gpu && t.gpus == fleet.gpus_per_node)
        .into_iter()
        .map(|o| {
            let why = exclusion(&o, fleet, providers);
            (o, why)
        })
        .collect()
}

fn exclusion(o: &Offering, fleet: &Fleet, providers: &Providers) -> Option<Exclusion> {
    let Some(locations) = providers.locations(o.cloud) else {
        return Some(Exclusion::CloudNotConfigured);
    };
    let in_location = locations.iter().any(|l| *l == o.region || o.zone.as_deref() == Some(l.as_str()));
    if !in_location {
        return Some(Exclusion::LocationNotConfigured);
    }
    if !fleet.image.contains_key(&o.cloud) {
        return Some(Exclusion::NoImage);
    }
    if let Some(allowed) = &fleet.residency
        && !allowed.contains(&o.jurisdiction)
    {
        return Some(Exclusion::OutsideResidency);
    }
    if let Some(ceiling) = fleet.max_price_per_gpu_hour {
        match o.price_per_gpu_hour() {
            Some(p) if p > ceiling => return Some(Exclusion::OverPriceCeiling),
            None => return Some(Exclusion::PriceUnknownUnderCeiling),
            Some(_) => {}
        }
    }
    None
}

/// The offerings a fleet may use, most wanted first: by position in
/// `prefer`, then by price per GPU-hour (unknown prices last), then by name
/// so that the order is total and deterministic.
pub fn allowed_offerings(fleet: &Fleet, providers: &Providers, catalog: &Catalog) -> Vec<Offering> {
    allowed_of(fleet, &candidate_offerings(fleet, providers, catalog))
}

/// [`allowed_offerings`] from the fleet's [`candidate_offerings`], for a
/// caller that needs both.
pub fn allowed_of(fleet: &Fleet, candidates: &[(Offering, Option<Exclusion>)]) -> Vec<Offering> {
    let mut allowed: Vec<Offering> =
        candidates.iter().filter(|(_, why)| why.is_none()).map(|(o, _)| o.clone()).collect();
    allowed.sort_by(|a, b| preference_order(&fleet.prefer, a, b));
    allowed
}

/// Position of the first `prefer` entry that matches, or `prefer.len()`.
pub fn preference_rank(prefer: &[Preference], o: &Offering) -> usize {
    prefer
        .iter()
        .position(|p| {
            p.cloud == o.cloud && p.location.as_deref().is_none_or(|l| l == o.region || o.zone.as_deref() == Some(l))
        })
        .unwrap_or(prefer.len())
}

fn preference_order(prefer: &[Preference], a: &Offering, b: &Offering) -> Ordering {
    preference_rank(prefer, a)
        .cmp(&preference_rank(prefer, b))
        .then_with(|| match (a.price_per_gpu_hour(), b.price_per_gpu_hour()) {
            (Some(x), Some(y)) => x.total_cmp(&y),
            (Some(_), None) => Ordering::Less,
            (None, Some(_)) => Ordering::Greater,
            (None, None) => Ordering::Equal,
        })
        .then_with(|| {
            (a.cloud, &a.region, &a.zone, &a.instance_type).cmp(&(b.cloud, &b.region, &b.zone, &b.instance_type))
        })
}
