//! Deciding rebalance moves: PURE, like the rest of the planner.
//!
//! `decide(plan, observed, shortages, catalog, now) -> Vec<Move>`: for each
//! fleet that has what it wants (shortfalls are the planner's to fill first),
//! a `spread` fleet first moves nodes from its fullest domain to its emptiest
//! while they differ by more than `max_skew`; then nodes on a worse offering
//! move to the best one that is clearly available again (for `spread`, the
//! best of their own domain). The invariants, asserted by property tests:
//! - never more nodes in motion per fleet than `max_disruption` allows;
//! - never a move to an offering with a live shortage, nor to one short
//!   within `move_back_after`;
//! - every move balances a `spread` fleet (its source domain held more than
//!   `max_skew` nodes above its destination), or goes to a place earlier in
//!   the fleet's `prefer` list, or, at the same place in it, cuts the price
//!   per GPU-hour by at least `min_gain`;
//! - only observed instances move, each at most once; a move creates before
//!   it deletes, so a fleet never drops below what it runs.

use super::spread::{Domain, counts, same_domain};
use super::{Action, ActionKind, Changeset, Reason, price_of};
use crate::catalog::{Catalog, Offering};
use crate::model::{Instance, Placement, Shortage};
use crate::plan::offerings::{allowed_offerings, preference_rank};
use crate::plan::{Fleet, PlacementPolicy, Plan, Preference, Spread};
use chrono::{DateTime, Utc};
use std::collections::BTreeMap;

/// Some nodes of a fleet leaving one placement for a better one.
#[derive(Debug, Clone, PartialEq)]
pub struct Move {
    pub fleet: String,
    pub from: Placement,
    pub to: Placement,
    /// The instances that go once their replacements run, sorted.
    pub instance_ids: Vec<String>,
    pub why: String,
}

/// The moves one round makes.
pub fn decide(
    plan: &Plan,
    observed: &[Instance],
    shortages: &[Shortage],
    catalog: &Catalog,
    now: DateTime<Utc>,
) -> Vec<Move> {
    let settings = &plan.rebalance;
    // Short now, or short too recently to trust: capacity that flips on and
    // off must not pull nodes back and forth.
    let settle = chrono::Duration::from_std(settings.move_back_after).unwrap_or(chrono::Duration::MAX);
    let unsettled: Vec<&Shortage> = shortages
        .iter()
        .filter(|s| s.expires_at > now || s.last_seen.checked_add_signed(settle).is_none_or(|clear| clear > now))
        .collect();
    let mut moves = Vec::new();
    for fleet in plan.fleets.values() {
        let mine: Vec<&Instance> = observed.iter().filter(|i| i.fleet == fleet.name).collect();
        // A fleet that is short or over count is the planner's to fix first;
        // a pack fleet gathers by its own rule.
        if fleet.placement == PlacementPolicy::Pack || mine.len() as u32 != fleet.nodes {
            continue;
        }
        moves.extend(decide_fleet(plan, fleet, &mine, &unsettled, catalog));
    }
    moves
}

fn decide_fleet(
    plan: &Plan,
    fleet: &Fleet,
    mine: &[&Instance],
    unsettled: &[&Shortage],
    catalog: &Catalog,
) -> Vec<Move> {
    let allowed = allowed_offerings(fleet, &plan.providers, catalog);
    let settled: Vec<&Offering> = allowed.iter().filter(|o| !unsettled.iter().any(|s| o.is_short(&s.scope))).collect();
    let mut budget = plan.rebalance.max_disruption.nodes_of(fleet.nodes);
    // Worst placed first (by the order offerings are tried in), newest first
    // among equals. Instances outside the allowed offerings are the planner's
    // to delete.
    let mut candidates: Vec<Candidate> = mine
        .iter()
        .filter_map(|i| allowed.iter().position(|o| o.hosts(i)).map(|order| (*i, order, &allowed[order])))
        .collect();
    candidates
        .sort_by(|(a, ra, _), (b, rb, _)| rb.cmp(ra).then(b.launched_at.cmp(&a.launched_at)).then(a.id.cmp(&b.id)));

    let mut routes: BTreeMap<(Placement, Placement, String), Vec<String>> = BTreeMap::new();
    let mut route = |instance: &Instance, to: &Offering, why: String| {
        routes.entry((Placement::of(instance), to.placement(), why)).or_default().push(instance.id.clone());
    };
    if let PlacementPolicy::Spread(spread) = fleet.placement {
        for (instance, to, why) in balance(spread, &mut candidates, &settled, &mut budget) {
            route(instance, to, why);
        }
    }
    for (instance, _, offering) in candidates {
        if budget == 0 {
            break;
        }
        let Some(best) = settled.iter().find(|o| same_domain(fleet.placement, &o.placement(), &offering.placement()))
        else {
            continue;
        };
        let Some(why) = improvement(&fleet.prefer, offering, best, plan.rebalance.min_gain) else { continue };
        route(instance, best, why);
        budget -= 1;
    }
    routes
        .into_iter()
        .map(|((from, to, why), mut instance_ids)| {
            instance_ids.sort();
            Move { fleet: fleet.name.clone(), from, to, instance_ids, why }
        })
        .collect()
}

/// An instance of the fleet, the order of the offering it runs on, and that offering.
type Candidate<'a> = (&'a Instance, usize, &'a Offering);

/// Balancing moves of a `spread` fleet, one node at a time from the domain
/// holding the most to the settled domain holding the fewest, while they
/// differ by more than `max_skew` and the budget lasts. The instances moved
/// are taken out of `candidates`.
fn balance<'a>(
    spread: Spread,
    candidates: &mut Vec<Candidate<'a>>,
    settled: &[&'a Offering],
    budget: &mut u32,
) -> Vec<(&'a Instance, &'a Offering, String)> {
    let domain_of = |instance: &Instance| Domain::of(spread.by, &Placement::of(instance));
    let mut held = counts(spread.by, candidates.iter().map(|(i, _, _)| *i));
    // The best settled offering of each domain, in the order they are tried.
    let mut targets: Vec<(Domain, &Offering)> = Vec::new();
    for offering in settled {
        let domain = Domain::of(spread.by, &offering.placement());
        held.entry(domain.clone()).or_insert(0);
        if !targets.iter().any(|(d, _)| *d == domain) {
            targets.push((domain, offering));
        }
    }
    let before = held.clone();
    let mut moves = Vec::new();
    while *budget > 0 {
        let count = |held: &BTreeMap<Domain, u32>, d: &Domain| held.get(d).copied().unwrap_or(0);
        let Some((to_domain, to)) = targets.iter().min_by_key(|(d, _)| count(&held, d)) else { break };
        // The fullest domain; among equals, the one whose nodes are worst placed.
        let fullest = candidates
            .iter()
            .map(|(i, order, _)| (domain_of(i), *order))
            .max_by_key(|(d, order)| (count(&held, d), *order));
        let Some((from_domain, _)) = fullest else { break };
        if count(&held, &from_domain) <= count(&held, to_domain).saturating_add(spread.max_skew) {
            break;
        }
        let Some(index) = candidates.iter().position(|c| domain_of(c.0) == from_domain) else { break };
        let (instance, _, _) = candidates.remove(index);
        let why = format!(
            "spreads the fleet: {to_domain} has {} nodes, {from_domain} has {}",
            count(&before, to_domain),
            count(&before, &from_domain)
        );
        moves.push((instance, *to, why));
        *held.entry(from_domain).or_default() -= 1;
        *held.entry(to_domain.clone()).or_default() += 1;
        *budget -= 1;
    }
    moves
}

/// Why moving from `current` to `best` is worth it, if it is: a better
/// place in the fleet's `prefer` list, or, at the same place in it, a price
/// per GPU-hour lower by at least `min_gain`. Never to a less preferred place,
/// and never for nothing (zones of one region at one price stay put).
fn improvement(prefer: &[Preference], current: &Offering, best: &Offering, min_gain: f64) -> Option<String> {
    let (now, then) = (preference_rank(prefer, current), preference_rank(prefer, best));
    if then < now {
        return Some(format!("{} is preferred", best.label()));
    }
    if then > now || best.placement() == current.placement() {
        return None;
    }
    let (old, new) = (current.price_per_gpu_hour()?, best.price_per_gpu_hour()?);
    (new <= old * (1.0 - min_gain))
        .then(|| format!("{} is {:.0}% cheaper per GPU-hour", best.label(), (1.0 - new / old) * 100.0))
}

/// The actions of these moves: each creates its nodes at the better offering
/// and deletes the old ones only after the fleet's creates all succeeded
/// (make-before-break; apply holds the deletes back otherwise).
pub fn move_actions(moves: &[Move], catalog: &Catalog) -> Vec<Action> {
    let mut creates = Vec::new();
    let mut deletes = Vec::new();
    for m in moves {
        let count = m.instance_ids.len() as u32;
        creates.push(Action {
            kind: ActionKind::Create,
            fleet: m.fleet.clone(),
            placement: m.to.clone(),
            count,
            min_count: count,
            instance_ids: Vec::new(),
            reason: Reason::CreateBecauseMove { from: m.from.to_string(), why: m.why.clone() },
            price_per_hour: price_of(&m.to, catalog),
            fallbacks: Vec::new(),
        });
        deletes.push(Action {
            kind: ActionKind::Delete,
            fleet: m.fleet.clone(),
            placement: m.from.clone(),
            count,
            min_count: 0,
            instance_ids: m.instance_ids.clone(),
            reason: Reason::DeleteBecauseMoved { to: m.to.to_string() },
            price_per_hour: price_of(&m.from, catalog),
            fallbacks: Vec::new(),
        });
    }
    creates.extend(deletes);
    creates
}

/// A rebalance round's changeset: what the plan needs (shortfalls filled,
/// surplus removed), then the moves of fleets that need nothing else.
pub fn rebalance(
    plan: &Plan,
    observed: &[Instance],
    shortages: &[Shortage],
    catalog: &Catalog,
    now: DateTime<Utc>,
) -> Changeset {
    let mut changeset = super::plan(plan, observed, shortages, catalog, now);
    let busy: Vec<String> = changeset.actions.iter().map(|a| a.fleet.clone()).collect();
    let moves: Vec<Move> =
        decide(plan, observed, shortages, catalog, now).into_iter().filter(|m| !busy.contains(&m.fleet)).collect();
    let actions = move_actions(&moves, catalog);
    let (creates, deletes): (Vec<Action>, Vec<Action>) =
        actions.into_iter().partition(|a| a.kind == ActionKind::Create);
    let mut ordered: Vec<Action> = changeset.actions.iter().filter(|a| a.kind == ActionKind::Create).cloned().collect();
    ordered.extend(creates);
    ordered.extend(changeset.actions.iter().filter(|a| a.kind == ActionKind::Delete).cloned());
    ordered.extend(deletes);
    changeset.actions = ordered;
    changeset.cost = super::cost_summary(observed, &changeset.actions, catalog);
    changeset
}
