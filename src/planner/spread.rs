//! `spread` fleets: nodes balanced across failure domains (zones, regions or
//! clouds), as Kubernetes topology spread balances pods, so that losing one
//! domain takes only its share of the fleet.
//!
//! New nodes go, one at a time, to the launchable domain holding the fewest
//! (ties to the one tried first); surplus nodes leave the domain holding the
//! most (ties to the one tried last). Domains in shortage take no nodes: the
//! fleet gets its capacity elsewhere, and the rebalancer restores the balance
//! once they are clear again.

use crate::catalog::Offering;
use crate::model::{Cloud, Instance, Placement};
use crate::plan::{PlacementPolicy, SpreadBy};
use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};
use std::fmt;

/// One failure domain: a cloud, a region of it, or a zone of that. Azure
/// places by region, so its "zone" domains are regions.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Domain {
    cloud: Cloud,
    region: Option<String>,
    zone: Option<String>,
}

impl Domain {
    pub fn of(by: SpreadBy, placement: &Placement) -> Domain {
        let cloud = placement.cloud;
        match by {
            SpreadBy::Zone => Domain { cloud, region: Some(placement.region.clone()), zone: placement.zone.clone() },
            SpreadBy::Region => Domain { cloud, region: Some(placement.region.clone()), zone: None },
            SpreadBy::Cloud => Domain { cloud, region: None, zone: None },
        }
    }
}

/// A [`Domain`] borrowed from an instance, ordered as `Domain` orders, so
/// that counting thousands of instances copies no string.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct DomainKey<'a> {
    cloud: Cloud,
    region: Option<&'a str>,
    zone: Option<&'a str>,
}

impl<'a> DomainKey<'a> {
    fn of(by: SpreadBy, instance: &'a Instance) -> DomainKey<'a> {
        let (cloud, region, zone) = (instance.cloud, instance.region.as_str(), instance.zone.as_deref());
        match by {
            SpreadBy::Zone => DomainKey { cloud, region: Some(region), zone },
            SpreadBy::Region => DomainKey { cloud, region: Some(region), zone: None },
            SpreadBy::Cloud => DomainKey { cloud, region: None, zone: None },
        }
    }

    fn owned(self) -> Domain {
        Domain { cloud: self.cloud, region: self.region.map(str::to_string), zone: self.zone.map(str::to_string) }
    }
}

impl fmt::Display for Domain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.zone, &self.region) {
            (Some(zone), _) => write!(f, "{} {zone}", self.cloud),
            (None, Some(region)) => write!(f, "{} {region}", self.cloud),
            (None, None) => write!(f, "{}", self.cloud),
        }
    }
}

/// Whether two placements are in one domain of the fleet: a `spread` fleet
/// fails over and upgrades within a zone, region or cloud first and balances
/// across them; to other fleets every placement is one domain.
pub fn same_domain(policy: PlacementPolicy, a: &Placement, b: &Placement) -> bool {
    match policy {
        PlacementPolicy::Spread(spread) => Domain::of(spread.by, a) == Domain::of(spread.by, b),
        PlacementPolicy::Fill | PlacementPolicy::Pack => true,
    }
}

/// Nodes per domain of the instances given.
pub fn counts<'a>(by: SpreadBy, instances: impl IntoIterator<Item = &'a Instance>) -> BTreeMap<Domain, u32> {
    let mut counts: BTreeMap<DomainKey<'a>, u32> = BTreeMap::new();
    for instance in instances {
        *counts.entry(DomainKey::of(by, instance)).or_insert(0) += 1;
    }
    counts.into_iter().map(|(key, n)| (key.owned(), n)).collect()
}

/// Where `new` more nodes go: the best launchable offering of each domain
/// that gets some, with how many, in the order the domains are tried.
/// `launchable` is in the order offerings are tried.
pub fn place<'o>(
    by: SpreadBy,
    running: &BTreeMap<Domain, u32>,
    launchable: &[&'o Offering],
    new: u32,
) -> Vec<(&'o Offering, u32)> {
    let mut domains: Vec<(Domain, &Offering)> = Vec::new();
    for offering in launchable {
        let domain = Domain::of(by, &offering.placement());
        if !domains.iter().any(|(d, _)| *d == domain) {
            domains.push((domain, offering));
        }
    }
    let held: Vec<u32> = domains.iter().map(|(d, _)| running.get(d).copied().unwrap_or(0)).collect();
    let added = water_fill(&held, new);
    domains.into_iter().zip(added).filter(|(_, n)| *n > 0).map(|((_, offering), n)| (offering, n)).collect()
}

/// How many of `new` nodes each domain gets when each goes to the domain
/// holding the fewest, ties to the earlier one.
fn water_fill(held: &[u32], new: u32) -> Vec<u32> {
    let mut added = vec![0; held.len()];
    let mut emptiest: BinaryHeap<Reverse<(u32, usize)>> = held.iter().copied().zip(0..).map(Reverse).collect();
    for _ in 0..new {
        let Some(Reverse((count, index))) = emptiest.pop() else { break };
        added[index] += 1;
        emptiest.push(Reverse((count.saturating_add(1), index)));
    }
    added
}

/// Which `excess` of the fleet's instances to remove: each from the domain
/// holding the most, ties to the domain tried last; within a domain, the
/// instance `kept` lists first. `kept` is ordered worst placed first.
pub fn surplus<'a>(by: SpreadBy, kept: &[(&'a Instance, usize)], excess: u32) -> Vec<&'a Instance> {
    let mut per_domain: BTreeMap<DomainKey<'a>, (usize, Vec<&'a Instance>)> = BTreeMap::new();
    for (instance, rank) in kept.iter().rev() {
        let (best, instances) = per_domain.entry(DomainKey::of(by, instance)).or_insert((usize::MAX, Vec::new()));
        *best = (*best).min(*rank);
        instances.push(instance);
    }
    let mut groups: Vec<Vec<&Instance>> = Vec::new();
    let mut fullest: BinaryHeap<(usize, usize, usize)> = BinaryHeap::new();
    for (best, instances) in per_domain.into_values() {
        fullest.push((instances.len(), best, groups.len()));
        groups.push(instances);
    }
    let mut removed = Vec::new();
    for _ in 0..excess {
        let Some((count, best, index)) = fullest.pop() else { break };
        // Each group lists its worst placed instance last.
        let Some(instance) = groups[index].pop() else { continue };
        removed.push(instance);
        fullest.push((count - 1, best, index));
    }
    removed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn water_fill_levels_the_emptiest_first_and_ties_go_to_the_earlier_domain() {
        assert_eq!(water_fill(&[0, 0, 0], 30), vec![10, 10, 10]);
        assert_eq!(water_fill(&[0, 0, 0], 4), vec![2, 1, 1]);
        assert_eq!(water_fill(&[15, 15, 0], 3), vec![0, 0, 3]);
        assert_eq!(water_fill(&[5, 0, 2], 4), vec![0, 3, 1]);
        assert_eq!(water_fill(&[], 4), Vec::<u32>::new());
    }
}
