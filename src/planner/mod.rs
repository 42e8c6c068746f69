//! The planner: PURE. `(plan, observed instances, shortage memory, catalog,
//! now) → Changeset`. No I/O, no clock, no async: everything comes in as
//! values, so every decision is testable with plain values.
//!
//! Rules, per fleet:
//! - Instances whose placement the plan no longer allows are deleted; those of
//!   fleets that left the plan too.
//! - `fill`: a shortfall is created on the most preferred offering not in
//!   shortage memory (apply fails over to the next one when it is refused).
//! - `spread`: a shortfall is shared out over the zones, regions or clouds
//!   not in shortage memory, each new node to the one holding the fewest; a
//!   surplus leaves the ones holding the most (see `spread`).
//! - `pack`: all nodes in one region, the one already holding most of the
//!   fleet, else the most preferred; nodes elsewhere are deleted only once the
//!   region is full (make-before-break).
//! - Over count: the least preferred placement loses nodes first, newest first.
//! - A create of more than [`MAX_NODES_PER_CREATE`] nodes at one placement is
//!   split into creates of at most that many, one cloud call each.

mod changeset;
pub mod rebalance;
pub mod spread;

pub use changeset::*;

use crate::catalog::{Catalog, Offering};
use crate::model::{Cloud, Instance, MAX_NODES_PER_CREATE, Placement, Shortage, ShortageScope};
use crate::plan::offerings::{Exclusion, allowed_of, candidate_offerings};
use crate::plan::{Fleet, PlacementPolicy, Plan};
use chrono::{DateTime, Utc};
use std::collections::BTreeMap;

/// Compute what must change for the clouds to match `desired`.
pub fn plan(
    desired: &Plan,
    observed: &[Instance],
    shortages: &[Shortage],
    catalog: &Catalog,
    now: DateTime<Utc>,
) -> Changeset {
    let active: Vec<&Shortage> = shortages.iter().filter(|s| s.expires_at > now).collect();
    let mut by_fleet: BTreeMap<&str, Vec<&Instance>> = BTreeMap::new();
    for instance in observed {
        by_fleet.entry(instance.fleet.as_str()).or_default().push(instance);
    }

    let mut creates = Vec::new();
    let mut deletes = Vec::new();
    let mut fleets = Vec::new();
    let mut skipped = Vec::new();

    for fleet in desired.fleets.values() {
        let mine = by_fleet.remove(fleet.name.as_str()).unwrap_or_default();
        let sorted = sort_out(desired, fleet, &mine, catalog);
        let mut outcome = plan_fleet(fleet, &sorted, &active, catalog);
        for create in &mut outcome.creates {
            create.fallbacks = fallback_chain(fleet, &sorted, &active, catalog, &create.placement);
        }
        creates.extend(outcome.creates.into_iter().flat_map(one_call_each));
        deletes.extend(outcome.deletes);
        skipped.extend(outcome.skipped);
        fleets.push(outcome.outlook);
    }
    for (fleet, instances) in by_fleet {
        deletes.extend(delete_actions(fleet, &instances, Reason::DeleteBecauseNotInPlan, catalog));
    }

    let mut actions = creates;
    actions.extend(deletes);
    let cost = cost_summary(observed, &actions, catalog);
    Changeset { plan: desired.name.clone(), actions, fleets, skipped, cost }
}

/// The changeset of `gpufleet destroy`: delete everything the plan owns.
pub fn destroy(plan: &str, observed: &[Instance], catalog: &Catalog) -> Changeset {
    let mut by_fleet: BTreeMap<&str, Vec<&Instance>> = BTreeMap::new();
    for instance in observed {
        by_fleet.entry(instance.fleet.as_str()).or_default().push(instance);
    }
    let actions: Vec<Action> = by_fleet
        .into_iter()
        .flat_map(|(fleet, instances)| delete_actions(fleet, &instances, Reason::DeleteBecauseDestroy, catalog))
        .collect();
    let cost = cost_summary(observed, &actions, catalog);
    Changeset { plan: plan.to_string(), actions, fleets: Vec::new(), skipped: Vec::new(), cost }
}

/// Where the fleet's create would go next if `first` refused, and after
/// that, and so on: the planner asked again with each refused placement
/// remembered as short, exactly as apply does when a create is refused.
fn fallback_chain(
    fleet: &Fleet,
    sorted: &Sorted<'_>,
    active: &[&Shortage],
    catalog: &Catalog,
    first: &Placement,
) -> Vec<Placement> {
    let refused = |placement: &Placement| Shortage {
        scope: ShortageScope::Offering { placement: placement.clone() },
        code: String::new(),
        message: String::new(),
        first_seen: DateTime::<Utc>::MIN_UTC,
        last_seen: DateTime::<Utc>::MIN_UTC,
        expires_at: DateTime::<Utc>::MAX_UTC,
    };
    let mut tried = vec![refused(first)];
    let mut chain: Vec<Placement> = Vec::new();
    loop {
        let mut assumed: Vec<&Shortage> = active.to_vec();
        assumed.extend(tried.iter());
        // A spread fleet's nodes stay in their domain while it has room.
        let creates = plan_fleet(fleet, sorted, &assumed, catalog).creates;
        let next = creates
            .iter()
            .find(|c| spread::same_domain(fleet.placement, &c.placement, first))
            .or(creates.first())
            .cloned();
        match next {
            Some(create) if create.placement != *first && !chain.contains(&create.placement) => {
                tried.push(refused(&create.placement));
                chain.push(create.placement);
            }
            _ => return chain,
        }
    }
}

/// A create split into creates of at most [`MAX_NODES_PER_CREATE`] nodes.
/// Its all-or-nothing minimum is asked of the first parts, in order, as a
/// single call would have needed it.
fn one_call_each(create: Action) -> Vec<Action> {
    if create.count <= MAX_NODES_PER_CREATE {
        return vec![create];
    }
    let mut parts = Vec::new();
    let (mut left, mut min_left) = (create.count, create.min_count);
    while left > 0 {
        let count = left.min(MAX_NODES_PER_CREATE);
        let min_count = min_left.clamp(1, count);
        parts.push(Action { count, min_count, ..create.clone() });
        left -= count;
        min_left = min_left.saturating_sub(count);
    }
    parts
}

struct FleetPlan {
    creates: Vec<Action>,
    deletes: Vec<Action>,
    skipped: Vec<SkippedOffering>,
    outlook: FleetOutlook,
}

/// A fleet's instances sorted out once, whatever the shortages say: those
/// that may stay (with the rank of the offering they run on) and the
/// deletes of the others. Planning the fleet again under other shortages
/// (its fallback chains) starts from here.
struct Sorted<'a> {
    allowed: Vec<Offering>,
    kept: Vec<(&'a Instance, usize)>,
    deletes: Vec<Action>,
    /// All of the fleet's instances.
    have: u32,
}

fn sort_out<'a>(desired: &Plan, fleet: &Fleet, mine: &[&'a Instance], catalog: &Catalog) -> Sorted<'a> {
    let candidates = candidate_offerings(fleet, &desired.providers, catalog);
    let allowed = allowed_of(fleet, &candidates);
    // Split what runs into what may stay, what sits in an account scope the
    // plan left, and what sits where the plan no longer allows.
    let mut kept: Vec<(&Instance, usize)> = Vec::with_capacity(mine.len());
    let mut left_scope: BTreeMap<String, Vec<&Instance>> = BTreeMap::new();
    let mut not_allowed: BTreeMap<String, Vec<&Instance>> = BTreeMap::new();
    for &instance in mine {
        if let Some(why) = instance.scope.as_ref().and_then(|s| desired.providers.left_scope(s)) {
            left_scope.entry(why).or_default().push(instance);
            continue;
        }
        // A handful of offerings per fleet: a scan that copies nothing.
        match allowed.iter().position(|o| o.hosts(instance)) {
            Some(rank) => kept.push((instance, rank)),
            None => not_allowed.entry(why_not_allowed(instance, fleet, &candidates)).or_default().push(instance),
        }
    }
    let mut deletes = Vec::new();
    for (why, instances) in left_scope {
        deletes.extend(delete_actions(&fleet.name, &instances, Reason::DeleteBecauseScopeLeftPlan { why }, catalog));
    }
    for (why, instances) in not_allowed {
        deletes.extend(delete_actions(&fleet.name, &instances, Reason::DeleteBecauseNotAllowed { why }, catalog));
    }
    Sorted { allowed, kept, deletes, have: mine.len() as u32 }
}

fn plan_fleet(fleet: &Fleet, sorted: &Sorted<'_>, active: &[&Shortage], catalog: &Catalog) -> FleetPlan {
    let allowed = &sorted.allowed;
    let mut skipped = Vec::new();
    let mut launchable: Vec<&Offering> = Vec::new();
    for offering in allowed {
        match active.iter().find(|s| offering.is_short(&s.scope)) {
            Some(s) => skipped.push(SkippedOffering {
                fleet: fleet.name.clone(),
                offering: offering.label(),
                code: s.code.clone(),
                since: s.last_seen,
                retry_after: s.expires_at,
            }),
            None => launchable.push(offering),
        }
    }
    let mut kept = sorted.kept.clone();
    let mut deletes = sorted.deletes.clone();

    let want = fleet.nodes;
    let mut creates = Vec::new();
    let mut shortfall_reason = None;
    match fleet.placement {
        PlacementPolicy::Fill => {
            let have = kept.len() as u32;
            if have > want {
                deletes.extend(trim(fleet, &mut kept, have - want, catalog));
            } else if have < want {
                match launchable.first() {
                    Some(o) => creates.push(create_action(fleet, o, want - have, 1, have)),
                    None => shortfall_reason = Some(no_offering_reason(allowed, &skipped)),
                }
            }
        }
        PlacementPolicy::Spread(spread) => {
            let have = kept.len() as u32;
            if have > want {
                worst_first(&mut kept);
                let removed = spread::surplus(spread.by, &kept, have - want);
                let reason = Reason::DeleteBecauseOverCount { have, want: fleet.nodes };
                deletes.extend(delete_actions(&fleet.name, &removed, reason, catalog));
            } else if have < want {
                let running = spread::counts(spread.by, kept.iter().map(|(i, _)| *i));
                let placed = spread::place(spread.by, &running, &launchable, want - have);
                if placed.is_empty() {
                    shortfall_reason = Some(no_offering_reason(allowed, &skipped));
                }
                creates.extend(placed.into_iter().map(|(o, count)| create_action(fleet, o, count, 1, have)));
            }
        }
        PlacementPolicy::Pack => {
            let target = pack_target(&kept, &launchable);
            let (mut in_target, outside): (Vec<_>, Vec<_>) =
                kept.into_iter().partition(|(i, _)| Some(region_of(i)) == target);
            let have = in_target.len() as u32;
            let mut region_full = have >= want;
            if have > want {
                deletes.extend(trim(fleet, &mut in_target, have - want, catalog));
            } else if have < want {
                let in_region = launchable.iter().filter(|o| Some((o.cloud, o.region.as_str())) == target);
                // Grow with the instance type the region already runs, if it still may.
                let offering = in_region
                    .clone()
                    .find(|o| in_target.iter().any(|(i, _)| i.instance_type == o.instance_type))
                    .or_else(|| in_region.clone().next());
                match offering {
                    Some(o) => {
                        let need = want - have;
                        let min_count = fleet.min_nodes.saturating_sub(have).clamp(1, need);
                        creates.push(create_action(fleet, o, need, min_count, have));
                        region_full = true;
                    }
                    None => shortfall_reason = Some(no_offering_reason(allowed, &skipped)),
                }
            }
            if region_full && !outside.is_empty() {
                let instances: Vec<&Instance> = outside.iter().map(|(i, _)| *i).collect();
                let region = target.map(|(_, r)| r.to_string()).unwrap_or_default();
                deletes.extend(delete_actions(
                    &fleet.name,
                    &instances,
                    Reason::DeleteBecausePackConsolidation { region },
                    catalog,
                ));
            }
        }
    }

    let have = sorted.have;
    let created: u32 = creates.iter().map(|a| a.count).sum();
    let deleted: u32 = deletes.iter().map(|a| a.count).sum();
    let outlook = FleetOutlook {
        fleet: fleet.name.clone(),
        gpu: fleet.gpu.clone(),
        gpus_per_node: fleet.gpus_per_node,
        want,
        min_nodes: fleet.min_nodes,
        have,
        planned: have + created - deleted,
        shortfall_reason,
    };
    FleetPlan { creates, deletes, skipped, outlook }
}

fn region_of(instance: &Instance) -> (Cloud, &str) {
    (instance.cloud, instance.region.as_str())
}

/// The region a `pack` fleet gathers in: where most of it already runs (ties
/// to the more preferred), else the region of the best launchable offering.
fn pack_target<'a>(kept: &[(&'a Instance, usize)], launchable: &[&'a Offering]) -> Option<(Cloud, &'a str)> {
    let mut per_region: BTreeMap<(Cloud, &str), (usize, usize)> = BTreeMap::new();
    for (instance, rank) in kept {
        let entry = per_region.entry(region_of(instance)).or_insert((0, usize::MAX));
        entry.0 += 1;
        entry.1 = entry.1.min(*rank);
    }
    per_region
        .into_iter()
        .max_by(|a, b| a.1.0.cmp(&b.1.0).then(b.1.1.cmp(&a.1.1)))
        .map(|(region, _)| region)
        .or_else(|| launchable.first().map(|o| (o.cloud, o.region.as_str())))
}

fn why_not_allowed(instance: &Instance, fleet: &Fleet, candidates: &[(Offering, Option<Exclusion>)]) -> String {
    let exclusion = candidates.iter().find(|(o, _)| o.hosts(instance)).and_then(|(_, why)| why.clone());
    match exclusion {
        Some(Exclusion::CloudNotConfigured) => format!("{} is not a configured provider", instance.cloud),
        Some(Exclusion::LocationNotConfigured) => format!("{} is not a configured region", instance.region),
        Some(Exclusion::NoImage) => format!("the fleet has no {} image", instance.cloud),
        Some(Exclusion::OutsideResidency) => format!("{} is outside the fleet's residency", instance.region),
        Some(Exclusion::OverPriceCeiling) => "above the fleet's price ceiling".to_string(),
        Some(Exclusion::PriceUnknownUnderCeiling) => "price unknown under the fleet's price ceiling".to_string(),
        None => format!("{} is not a {}×{} offering", instance.instance_type, fleet.gpus_per_node, fleet.gpu),
    }
}

fn no_offering_reason(allowed: &[Offering], skipped: &[SkippedOffering]) -> String {
    if allowed.is_empty() {
        "no offering is allowed by the plan".to_string()
    } else {
        let codes: Vec<String> = skipped.iter().map(|s| format!("{} ({})", s.offering, s.code)).collect();
        format!("every allowed offering is in shortage: {}", codes.join(", "))
    }
}

fn create_action(fleet: &Fleet, offering: &Offering, count: u32, min_count: u32, have: u32) -> Action {
    Action {
        kind: ActionKind::Create,
        fleet: fleet.name.clone(),
        placement: offering.placement(),
        count,
        min_count,
        instance_ids: Vec::new(),
        reason: Reason::CreateBecauseShortfall { have, want: fleet.nodes },
        price_per_hour: offering.price_per_hour,
        fallbacks: Vec::new(),
    }
}

/// Pick `excess` instances to remove: least preferred placement first, then
/// newest first; the chosen ones are taken out of `kept`.
fn trim(fleet: &Fleet, kept: &mut Vec<(&Instance, usize)>, excess: u32, catalog: &Catalog) -> Vec<Action> {
    let have = kept.len() as u32;
    worst_first(kept);
    let removed: Vec<&Instance> = kept.drain(..excess as usize).map(|(i, _)| i).collect();
    delete_actions(&fleet.name, &removed, Reason::DeleteBecauseOverCount { have, want: fleet.nodes }, catalog)
}

/// Least preferred placement first, then newest first: the order nodes are given up in.
fn worst_first(kept: &mut [(&Instance, usize)]) {
    kept.sort_by(|(a, ra), (b, rb)| rb.cmp(ra).then(b.launched_at.cmp(&a.launched_at)).then(b.id.cmp(&a.id)));
}

/// One delete action per placement, instance ids sorted.
fn delete_actions(fleet: &str, instances: &[&Instance], reason: Reason, catalog: &Catalog) -> Vec<Action> {
    // Grouped by borrowed fields, ordered as `Placement` orders: one
    // placement built per group, not one per instance.
    let mut per_placement: BTreeMap<(Cloud, &str, Option<&str>, &str), Vec<&Instance>> = BTreeMap::new();
    for instance in instances {
        let key = (instance.cloud, instance.region.as_str(), instance.zone.as_deref(), instance.instance_type.as_str());
        per_placement.entry(key).or_default().push(instance);
    }
    per_placement
        .into_values()
        .map(|group| {
            let placement = Placement::of(group[0]);
            let mut ids: Vec<String> = group.iter().map(|i| i.id.clone()).collect();
            ids.sort();
            Action {
                kind: ActionKind::Delete,
                fleet: fleet.to_string(),
                price_per_hour: price_of(&placement, catalog),
                placement,
                count: ids.len() as u32,
                min_count: 0,
                instance_ids: ids,
                reason: reason.clone(),
                fallbacks: Vec::new(),
            }
        })
        .collect()
}

/// List price per hour of one instance at a placement, when the catalog knows it.
pub fn price_of(placement: &Placement, catalog: &Catalog) -> Option<f64> {
    price_at(placement.cloud, &placement.region, &placement.instance_type, catalog)
}

fn price_at(cloud: Cloud, region: &str, instance_type: &str, catalog: &Catalog) -> Option<f64> {
    let it = catalog.instance_type(cloud, instance_type)?;
    it.offers.iter().find(|o| o.region == region)?.price_per_hour
}

/// Cloud, region and instance type: what a list price depends on.
type PriceKey<'a> = (Cloud, &'a str, &'a str);

fn cost_summary(observed: &[Instance], actions: &[Action], catalog: &Catalog) -> CostSummary {
    let mut unknown = false;
    let mut before = 0.0;
    // Each price looked up once per place (a few dozen at most), added once
    // per instance in the order of `observed` (floating-point sums depend on it).
    let mut prices: Vec<(PriceKey, Option<f64>)> = Vec::new();
    for instance in observed {
        let key = (instance.cloud, instance.region.as_str(), instance.instance_type.as_str());
        let price = match prices.iter().find(|(place, _)| *place == key) {
            Some((_, price)) => *price,
            None => {
                let price = price_at(key.0, key.1, key.2, catalog);
                prices.push((key, price));
                price
            }
        };
        match price {
            Some(p) => before += p,
            None => unknown = true,
        }
    }
    let mut after = before;
    for action in actions {
        let Some(p) = action.price_per_hour else {
            unknown = true;
            continue;
        };
        let delta = p * f64::from(action.count);
        match action.kind {
            ActionKind::Create => after += delta,
            ActionKind::Delete => after -= delta,
        }
    }
    CostSummary { before_per_hour: before, after_per_hour: after.max(0.0), has_unknown_prices: unknown }
}
