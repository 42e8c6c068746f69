//! Planner tests: snapshots of rendered changesets for the rules, and
//! property tests for the invariants.

use chrono::TimeZone;
use chrono::{DateTime, Utc};
use gpufleet::catalog::Catalog;
use gpufleet::model::{Cloud, Instance, MAX_NODES_PER_CREATE, Placement, Scope, Shortage, ShortageScope};
use gpufleet::plan::offerings::{allowed_offerings, preference_rank};
use gpufleet::plan::{
    AwsConfig, DEFAULT_SHORTAGE_TTL, Disruption, Fleet, PlacementPolicy, Plan, Preference, Providers, Rebalance,
    Spread, SpreadBy,
};
use gpufleet::planner::rebalance::{decide, rebalance};
use gpufleet::planner::spread::{Domain, counts};
use gpufleet::planner::{ActionKind, Changeset, Reason, destroy, plan};
use proptest::prelude::*;
use std::collections::BTreeMap;

const TEST_CATALOG: &str = r#"
as_of = "2026-11-01"
sources = ["test data"]
[[region]]
cloud = "aws"
name = "us-east-1"
jurisdiction = "US"
[[region]]
cloud = "aws"
name = "us-west-2"
jurisdiction = "US"
[[region]]
cloud = "aws"
name = "eu-west-1"
jurisdiction = "EU"
[[instance_type]]
cloud = "aws"
name = "p5.48xlarge"
gpu = "H100"
gpus = 8
gpu_memory_gib = 80
vcpus = 192
offers = [
  { region = "us-east-1", price_per_hour = 55.04 },
  { region = "us-west-2", price_per_hour = 55.04 },
  { region = "eu-west-1", price_per_hour = 61.0 },
]
[[instance_type]]
cloud = "aws"
name = "p5en.48xlarge"
gpu = "H200"
gpus = 8
gpu_memory_gib = 141
vcpus = 192
offers = [{ region = "us-east-1", price_per_hour = 63.3 }, { region = "us-west-2" }]
[[instance_type]]
cloud = "aws"
name = "g6.48xlarge"
gpu = "L4"
gpus = 8
gpu_memory_gib = 24
vcpus = 192
offers = [{ region = "us-east-1", price_per_hour = 13.35 }, { region = "us-west-2", price_per_hour = 12.0 }]
"#;

fn catalog() -> Catalog {
    Catalog::parse(TEST_CATALOG).unwrap()
}

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 1, 1, 12, 0, 0).unwrap()
}

fn fleet(name: &str, gpu: &str, nodes: u32) -> Fleet {
    Fleet {
        name: name.into(),
        gpu: gpu.into(),
        gpus_per_node: 8,
        nodes,
        min_nodes: nodes,
        placement: PlacementPolicy::Fill,
        prefer: vec![Preference { cloud: Cloud::Aws, location: Some("us-east-1".into()) }],
        residency: None,
        max_price_per_gpu_hour: None,
        image: BTreeMap::from([(Cloud::Aws, "ami-0123456789abcdef0".to_string())]),
        startup: None,
        labels: BTreeMap::new(),
        node: Default::default(),
    }
}

fn plan_of(fleets: Vec<Fleet>) -> Plan {
    Plan {
        name: "demo".into(),
        path: "plans/demo.toml".into(),
        providers: Providers {
            aws: Some(AwsConfig {
                regions: vec!["us-east-1".into(), "us-west-2".into(), "eu-west-1".into()],
                endpoint: None,
                profile: None,
                subnets: BTreeMap::new(),
                security_groups: BTreeMap::new(),
            }),
            gcp: None,
            azure: None,
        },
        fleets: fleets.into_iter().map(|f| (f.name.clone(), f)).collect(),
        shortage_ttl: DEFAULT_SHORTAGE_TTL,
        offerings: Vec::new(),
        rebalance: Rebalance::default(),
    }
}

fn instance(id: &str, fleet: &str, region: &str, instance_type: &str, minute: u32) -> Instance {
    Instance {
        id: id.into(),
        cloud: Cloud::Aws,
        region: region.into(),
        zone: Some(format!("{region}a")),
        instance_type: instance_type.into(),
        fleet: fleet.into(),
        run: "run-1".into(),
        launched_at: Utc.with_ymd_and_hms(2026, 1, 1, 10, minute, 0).unwrap(),
        scope: Some(Scope::AwsRegion { region: region.into(), profile: None }),
    }
}

fn shortage(region: &str, instance_type: &str) -> Shortage {
    Shortage {
        scope: ShortageScope::Offering {
            placement: Placement {
                cloud: Cloud::Aws,
                region: region.into(),
                zone: None,
                instance_type: instance_type.into(),
            },
        },
        code: "InsufficientInstanceCapacity".into(),
        message: "no capacity".into(),
        first_seen: now() - chrono::Duration::minutes(2),
        last_seen: now() - chrono::Duration::minutes(2),
        expires_at: now() + chrono::Duration::minutes(3),
    }
}

fn render(changeset: &Changeset) -> String {
    anstream::adapter::strip_str(&gpufleet::cli::render::changeset_text(
        changeset,
        gpufleet::cli::render::Detail::Brief,
    ))
    .to_string()
}

#[test]
fn empty_world_creates_the_whole_fleet_on_the_preferred_offering() {
    let desired = plan_of(vec![fleet("trainers", "H100", 4)]);
    let changeset = plan(&desired, &[], &[], &catalog(), now());
    insta::assert_snapshot!(render(&changeset));
}

#[test]
fn remembered_shortage_moves_creates_to_the_next_offering() {
    let desired = plan_of(vec![fleet("trainers", "H100", 4)]);
    let changeset = plan(&desired, &[], &[shortage("us-east-1", "p5.48xlarge")], &catalog(), now());
    insta::assert_snapshot!(render(&changeset));
}

#[test]
fn expired_shortage_is_ignored() {
    let desired = plan_of(vec![fleet("trainers", "H100", 4)]);
    let mut old = shortage("us-east-1", "p5.48xlarge");
    old.expires_at = now();
    let changeset = plan(&desired, &[], &[old], &catalog(), now());
    assert_eq!(changeset.actions[0].placement.region, "us-east-1");
    assert!(changeset.skipped.is_empty());
}

#[test]
fn scale_down_removes_least_preferred_then_newest() {
    let desired = plan_of(vec![fleet("trainers", "H100", 2)]);
    let observed = vec![
        instance("i-east-old", "trainers", "us-east-1", "p5.48xlarge", 0),
        instance("i-east-new", "trainers", "us-east-1", "p5.48xlarge", 30),
        instance("i-west-old", "trainers", "us-west-2", "p5.48xlarge", 1),
        instance("i-west-new", "trainers", "us-west-2", "p5.48xlarge", 31),
    ];
    let changeset = plan(&desired, &observed, &[], &catalog(), now());
    insta::assert_snapshot!(render(&changeset));
}

#[test]
fn scale_down_within_one_placement_takes_newest_first() {
    let desired = plan_of(vec![fleet("trainers", "H100", 2)]);
    let observed = vec![
        instance("i-a", "trainers", "us-east-1", "p5.48xlarge", 5),
        instance("i-b", "trainers", "us-east-1", "p5.48xlarge", 50),
        instance("i-c", "trainers", "us-east-1", "p5.48xlarge", 20),
    ];
    let changeset = plan(&desired, &observed, &[], &catalog(), now());
    assert_eq!(changeset.actions.len(), 1);
    assert_eq!(changeset.actions[0].instance_ids, vec!["i-b".to_string()]);
}

#[test]
fn fleets_out_of_plan_and_disallowed_placements_are_deleted() {
    let mut trainers = fleet("trainers", "H100", 2);
    trainers.residency = Some(vec!["US".into()]);
    let desired = plan_of(vec![trainers]);
    let observed = vec![
        instance("i-eu", "trainers", "eu-west-1", "p5.48xlarge", 0),
        instance("i-us", "trainers", "us-east-1", "p5.48xlarge", 0),
        instance("i-gone", "retired", "us-west-2", "g6.48xlarge", 0),
    ];
    let changeset = plan(&desired, &observed, &[], &catalog(), now());
    insta::assert_snapshot!(render(&changeset));
}

#[test]
fn price_ceiling_excludes_expensive_and_unknown_prices() {
    let mut f = fleet("cheap", "H200", 1);
    f.max_price_per_gpu_hour = Some(7.0);
    let desired = plan_of(vec![f]);
    let changeset = plan(&desired, &[], &[], &catalog(), now());
    assert!(changeset.actions.is_empty(), "{changeset:?}");
    assert_eq!(changeset.fleets[0].shortfall_reason.as_deref(), Some("no offering is allowed by the plan"));
}

#[test]
fn pack_grows_where_the_fleet_already_runs_and_consolidates_after() {
    let mut f = fleet("inference", "L4", 3);
    f.placement = PlacementPolicy::Pack;
    f.min_nodes = 2;
    let desired = plan_of(vec![f]);
    let observed = vec![
        instance("i-w1", "inference", "us-west-2", "g6.48xlarge", 0),
        instance("i-w2", "inference", "us-west-2", "g6.48xlarge", 1),
        instance("i-e1", "inference", "us-east-1", "g6.48xlarge", 2),
    ];
    let changeset = plan(&desired, &observed, &[], &catalog(), now());
    insta::assert_snapshot!(render(&changeset));
    let create = &changeset.actions[0];
    assert_eq!((create.placement.region.as_str(), create.count, create.min_count), ("us-west-2", 1, 1));
    assert!(changeset.actions[1].reason.is_make_before_break());
}

#[test]
fn pack_asks_for_at_least_min_nodes_in_one_call() {
    let mut f = fleet("inference", "L4", 4);
    f.placement = PlacementPolicy::Pack;
    f.min_nodes = 3;
    let changeset = plan(&plan_of(vec![f]), &[], &[], &catalog(), now());
    assert_eq!((changeset.actions[0].count, changeset.actions[0].min_count), (4, 3));
}

#[test]
fn creates_past_one_calls_limit_are_split_keeping_the_minimum_up_front() {
    let mut f = fleet("inference", "L4", 2500);
    f.placement = PlacementPolicy::Pack;
    f.min_nodes = 1500;
    let changeset = plan(&plan_of(vec![f]), &[], &[], &catalog(), now());
    let parts: Vec<(u32, u32)> = changeset.actions.iter().map(|a| (a.count, a.min_count)).collect();
    assert_eq!(parts, [(1000, 1000), (1000, 500), (500, 1)]);
    assert!(changeset.actions.iter().all(|a| a.placement == changeset.actions[0].placement));
    assert!(changeset.actions.iter().all(|a| a.count <= MAX_NODES_PER_CREATE));
}

#[test]
fn quota_shortage_blocks_every_type_of_that_gpu_in_the_region() {
    let desired = plan_of(vec![fleet("trainers", "H100", 1)]);
    let quota = Shortage {
        scope: ShortageScope::Quota { cloud: Cloud::Aws, region: "us-east-1".into(), gpu: "H100".into() },
        ..shortage("us-east-1", "p5.48xlarge")
    };
    let changeset = plan(&desired, &[], &[quota], &catalog(), now());
    assert_eq!(changeset.actions[0].placement.region, "us-west-2");
}

#[test]
fn matching_world_plans_no_changes() {
    let desired = plan_of(vec![fleet("trainers", "H100", 2)]);
    let observed = vec![
        instance("i-1", "trainers", "us-east-1", "p5.48xlarge", 0),
        instance("i-2", "trainers", "us-west-2", "p5.48xlarge", 0),
    ];
    let changeset = plan(&desired, &observed, &[], &catalog(), now());
    assert!(changeset.is_empty());
    insta::assert_snapshot!(render(&changeset));
}

#[test]
fn destroy_deletes_everything_owned() {
    let observed = vec![
        instance("i-1", "trainers", "us-east-1", "p5.48xlarge", 0),
        instance("i-2", "other", "us-west-2", "g6.48xlarge", 0),
    ];
    let changeset = destroy("demo", &observed, &catalog());
    assert_eq!(changeset.count(ActionKind::Delete), 2);
    assert!(changeset.actions.iter().all(|a| a.reason == Reason::DeleteBecauseDestroy));
}

const REGIONS: [&str; 3] = ["us-east-1", "us-west-2", "eu-west-1"];
const TYPES: [&str; 3] = ["p5.48xlarge", "p5en.48xlarge", "g6.48xlarge"];
const GPUS: [&str; 3] = ["H100", "H200", "L4"];

fn arb_instance() -> impl Strategy<Value = Instance> {
    (0..3usize, 0..3usize, 0..2usize, 0..60u32, 0..10_000u32)
        .prop_map(|(r, t, f, minute, n)| instance(&format!("i-{n:05}"), ["a", "b"][f], REGIONS[r], TYPES[t], minute))
}

fn arb_fleet(name: &'static str) -> impl Strategy<Value = Fleet> {
    (
        0..3usize,
        0..12u32,
        arb_placement(),
        prop::option::of(prop::sample::subsequence(vec!["US", "EU"], 1..=2)),
        prop::option::of(1.0..9.0f64),
        0..12u32,
    )
        .prop_map(move |(g, nodes, placement, residency, ceiling, min)| {
            let mut f = fleet(name, GPUS[g], nodes);
            f.min_nodes = min.min(nodes);
            f.placement = placement;
            f.residency = residency.map(|r| r.into_iter().map(String::from).collect());
            f.max_price_per_gpu_hour = ceiling;
            f
        })
}

fn arb_placement() -> impl Strategy<Value = PlacementPolicy> {
    let by = prop::sample::select(vec![SpreadBy::Zone, SpreadBy::Region, SpreadBy::Cloud]);
    prop_oneof![
        Just(PlacementPolicy::Fill),
        Just(PlacementPolicy::Pack),
        (by, 1..4u32).prop_map(|(by, max_skew)| PlacementPolicy::Spread(Spread { by, max_skew })),
    ]
}

/// Nodes per domain of a fleet's instances that run on offerings it may use.
fn held_per_domain(by: SpreadBy, fleet: &Fleet, desired: &Plan, observed: &[Instance]) -> BTreeMap<Domain, u32> {
    let allowed = allowed_offerings(fleet, &desired.providers, &catalog());
    counts(by, observed.iter().filter(|i| i.fleet == fleet.name && allowed.iter().any(|o| o.placement().hosts(i))))
}

fn arb_shortage() -> impl Strategy<Value = Shortage> {
    (0..3usize, 0..3usize, -10..10i64).prop_map(|(r, t, expiry)| {
        let mut s = shortage(REGIONS[r], TYPES[t]);
        s.expires_at = now() + chrono::Duration::minutes(expiry);
        s
    })
}

proptest! {
    #[test]
    fn planner_invariants(
        a in arb_fleet("a"),
        b in arb_fleet("b"),
        mut observed in prop::collection::vec(arb_instance(), 0..16),
        shortages in prop::collection::vec(arb_shortage(), 0..4),
    ) {
        observed.sort_by(|x, y| x.id.cmp(&y.id));
        observed.dedup_by(|x, y| x.id == y.id);
        let desired = plan_of(vec![a, b]);
        let catalog = catalog();
        let changeset = plan(&desired, &observed, &shortages, &catalog, now());

        // Deterministic.
        prop_assert_eq!(&changeset, &plan(&desired, &observed, &shortages, &catalog, now()));

        // Deletes name observed instances only, each at most once.
        let mut deleted: Vec<&String> = changeset.actions.iter().flat_map(|a| &a.instance_ids).collect();
        let total = deleted.len();
        deleted.sort();
        deleted.dedup();
        prop_assert_eq!(total, deleted.len());
        prop_assert!(deleted.iter().all(|id| observed.iter().any(|i| &&i.id == id)));

        for fleet in desired.fleets.values() {
            let outlook = changeset.fleets.iter().find(|o| o.fleet == fleet.name).unwrap();
            // Never more than `nodes` once the changeset is through.
            prop_assert!(outlook.planned <= fleet.nodes.max(outlook.have));
            if outlook.have <= fleet.nodes {
                prop_assert!(outlook.planned <= fleet.nodes);
            }
            for create in changeset.actions.iter().filter(|a| a.kind == ActionKind::Create && a.fleet == fleet.name) {
                let offering = catalog.offerings().into_iter().find(|o| {
                    o.region == create.placement.region && o.instance_type == create.placement.instance_type
                }).unwrap();
                // Never outside residency, price, GPU shape, or a live shortage.
                prop_assert_eq!(&offering.gpu, &fleet.gpu);
                if let Some(allowed) = &fleet.residency {
                    prop_assert!(allowed.contains(&offering.jurisdiction));
                }
                if let Some(ceiling) = fleet.max_price_per_gpu_hour {
                    prop_assert!(offering.price_per_gpu_hour().is_some_and(|p| p <= ceiling));
                }
                prop_assert!(!shortages.iter().any(|s| s.expires_at > now() && offering.is_short(&s.scope)));
                prop_assert!(create.min_count >= 1 && create.min_count <= create.count);
            }
            if let PlacementPolicy::Spread(spread) = fleet.placement {
                // New nodes level the emptiest launchable domains first: none
                // gets one while another launchable domain ends up two lower.
                let deleted_ids: Vec<&String> = changeset.actions.iter().flat_map(|a| &a.instance_ids).collect();
                let remaining: Vec<Instance> = observed.iter().filter(|i| !deleted_ids.contains(&&i.id)).cloned().collect();
                let mut after = held_per_domain(spread.by, fleet, &desired, &remaining);
                let launchable: Vec<Domain> = allowed_offerings(fleet, &desired.providers, &catalog)
                    .iter()
                    .filter(|o| !shortages.iter().any(|s| s.expires_at > now() && o.is_short(&s.scope)))
                    .map(|o| Domain::of(spread.by, &o.placement()))
                    .collect();
                let creates: Vec<_> = changeset.actions.iter().filter(|a| a.kind == ActionKind::Create && a.fleet == fleet.name).collect();
                for create in &creates {
                    *after.entry(Domain::of(spread.by, &create.placement)).or_default() += create.count;
                }
                let lowest = launchable.iter().map(|d| after.get(d).copied().unwrap_or(0)).min();
                for create in &creates {
                    let got = after[&Domain::of(spread.by, &create.placement)];
                    prop_assert!(lowest.is_some_and(|low| got <= low + 1), "{} ends with {got} nodes, another launchable domain with {lowest:?}", create.placement);
                }
            }
        }
    }
}

fn arb_shortage_history() -> impl Strategy<Value = Shortage> {
    (arb_shortage(), 0..40i64).prop_map(|(mut s, ago)| {
        s.last_seen = now() - chrono::Duration::minutes(ago);
        s.first_seen = s.last_seen;
        s
    })
}

proptest! {
    #[test]
    fn rebalance_invariants(
        a in arb_fleet("a"),
        b in arb_fleet("b"),
        mut observed in prop::collection::vec(arb_instance(), 0..16),
        shortages in prop::collection::vec(arb_shortage_history(), 0..4),
        budget in 0..5u32,
        as_percent in any::<bool>(),
        gain in 0..30u32,
    ) {
        observed.sort_by(|x, y| x.id.cmp(&y.id));
        observed.dedup_by(|x, y| x.id == y.id);
        let mut desired = plan_of(vec![a, b]);
        desired.rebalance = Rebalance {
            every: std::time::Duration::from_secs(300),
            max_disruption: if as_percent { Disruption::Percent(budget * 25) } else { Disruption::Nodes(budget) },
            move_back_after: std::time::Duration::from_secs(15 * 60),
            min_gain: f64::from(gain) / 100.0,
            ..Rebalance::default()
        };
        let catalog = catalog();
        let moves = decide(&desired, &observed, &shortages, &catalog, now());
        let settled = now() - chrono::Duration::minutes(15);

        let mut moved: Vec<&String> = moves.iter().flat_map(|m| &m.instance_ids).collect();
        let total = moved.len();
        moved.sort();
        moved.dedup();
        prop_assert_eq!(total, moved.len(), "an instance moves at most once");
        for fleet in desired.fleets.values() {
            let in_motion: usize = moves.iter().filter(|m| m.fleet == fleet.name).map(|m| m.instance_ids.len()).sum();
            prop_assert!(in_motion as u32 <= desired.rebalance.max_disruption.nodes_of(fleet.nodes));
        }
        for m in &moves {
            let fleet = &desired.fleets[&m.fleet];
            for id in &m.instance_ids {
                let instance = observed.iter().find(|i| &i.id == id);
                prop_assert!(instance.is_some_and(|i| i.fleet == m.fleet && m.from.hosts(i)), "moves observed nodes only");
            }
            let allowed = allowed_offerings(fleet, &desired.providers, &catalog);
            let moving = observed.iter().find(|i| i.id == m.instance_ids[0]).unwrap();
            let to = allowed.iter().position(|o| o.placement() == m.to);
            let from = allowed.iter().position(|o| o.placement().hosts(moving));
            prop_assert!(to.is_some() && from.is_some(), "both ends are allowed offerings");
            let to_offering = &allowed[to.unwrap()];
            prop_assert!(
                !shortages.iter().any(|s| to_offering.is_short(&s.scope) && (s.expires_at > now() || s.last_seen > settled)),
                "never to an offering short now or within move_back_after"
            );
            let from_offering = &allowed[from.unwrap()];
            let (rank_to, rank_from) =
                (preference_rank(&fleet.prefer, to_offering), preference_rank(&fleet.prefer, from_offering));
            let cheaper = match (to_offering.price_per_gpu_hour(), from_offering.price_per_gpu_hour()) {
                (Some(new), Some(old)) => new <= old * (1.0 - desired.rebalance.min_gain),
                _ => false,
            };
            let balances = match fleet.placement {
                PlacementPolicy::Spread(spread) => {
                    let held = held_per_domain(spread.by, fleet, &desired, &observed);
                    let (from_domain, to_domain) = (Domain::of(spread.by, &m.from), Domain::of(spread.by, &m.to));
                    let count = |d: &Domain| held.get(d).copied().unwrap_or(0);
                    if from_domain == to_domain {
                        false
                    } else {
                        prop_assert!(count(&from_domain) > count(&to_domain) + spread.max_skew, "a move across domains balances");
                        true
                    }
                }
                _ => false,
            };
            if !balances {
                prop_assert!(rank_to <= rank_from, "never to a less preferred place");
                prop_assert!(rank_to < rank_from || cheaper, "every move improves the preference or beats min_gain");
            }
        }
    }
}

#[test]
fn nodes_on_a_fallback_move_home_within_the_budget_once_home_has_been_clear_long_enough() {
    let mut desired = plan_of(vec![fleet("trainers", "H100", 4)]);
    desired.rebalance.max_disruption = Disruption::Nodes(3);
    let away: Vec<Instance> =
        (0..4).map(|n| instance(&format!("i-{n}"), "trainers", "us-west-2", "p5.48xlarge", n)).collect();
    let mut refused = shortage("us-east-1", "p5.48xlarge");
    refused.expires_at = now() - chrono::Duration::minutes(1);
    refused.last_seen = now() - chrono::Duration::minutes(10);
    assert!(decide(&desired, &away, &[refused.clone()], &catalog(), now()).is_empty(), "clear for 10 of 15 minutes");
    refused.last_seen = now() - chrono::Duration::minutes(16);
    let moves = decide(&desired, &away, &[refused], &catalog(), now());
    assert_eq!(moves.len(), 1);
    assert_eq!(moves[0].to.region, "us-east-1");
    assert_eq!(moves[0].instance_ids, vec!["i-1", "i-2", "i-3"], "newest first, three of four");
    let changeset = rebalance(&desired, &away, &[], &catalog(), now());
    insta::assert_snapshot!(render(&changeset));
}

#[test]
fn nodes_do_not_move_between_offerings_equally_preferred_and_priced() {
    let mut desired = plan_of(vec![fleet("trainers", "H100", 2)]);
    desired.rebalance.max_disruption = Disruption::Nodes(2);
    // Both regions are equally unpreferred and priced alike: staying put is right.
    desired.fleets.get_mut("trainers").unwrap().prefer.clear();
    let west: Vec<Instance> =
        (0..2).map(|n| instance(&format!("i-{n}"), "trainers", "us-west-2", "p5.48xlarge", n)).collect();
    assert!(decide(&desired, &west, &[], &catalog(), now()).is_empty());
}

fn spread_fleet(nodes: u32, by: SpreadBy, max_skew: u32) -> Fleet {
    let mut f = fleet("trainers", "H100", nodes);
    f.placement = PlacementPolicy::Spread(Spread { by, max_skew });
    f
}

/// Nodes per region of these creates and instances, in region order.
fn per_region(changeset: &Changeset, running: &[Instance]) -> Vec<(String, u32)> {
    let mut regions: BTreeMap<String, u32> = BTreeMap::new();
    for i in running {
        *regions.entry(i.region.clone()).or_default() += 1;
    }
    for a in &changeset.actions {
        let n = regions.entry(a.placement.region.clone()).or_default();
        match a.kind {
            ActionKind::Create => *n += a.count,
            ActionKind::Delete => *n -= a.count,
        }
    }
    regions.into_iter().collect()
}

fn running_in(counts: &[(&str, u32)]) -> Vec<Instance> {
    let mut running = Vec::new();
    for (region, n) in counts {
        for k in 0..*n {
            running.push(instance(&format!("i-{region}-{k:02}"), "trainers", region, "p5.48xlarge", k));
        }
    }
    running
}

#[test]
fn spread_shares_a_fleet_evenly_and_a_region_in_shortage_takes_none() {
    let desired = plan_of(vec![spread_fleet(30, SpreadBy::Region, 1)]);
    let changeset = plan(&desired, &[], &[], &catalog(), now());
    insta::assert_snapshot!(render(&changeset));
    let even = [("eu-west-1".to_string(), 10), ("us-east-1".to_string(), 10), ("us-west-2".to_string(), 10)];
    assert_eq!(per_region(&changeset, &[]), even);

    let changeset = plan(&desired, &[], &[shortage("eu-west-1", "p5.48xlarge")], &catalog(), now());
    assert_eq!(per_region(&changeset, &[]), [("us-east-1".to_string(), 15), ("us-west-2".to_string(), 15)]);

    // Growing an uneven fleet fills the emptiest first; the extra node of an
    // odd share goes where the fleet prefers.
    let running = running_in(&[("us-east-1", 6), ("us-west-2", 1)]);
    let desired = plan_of(vec![spread_fleet(12, SpreadBy::Region, 1)]);
    let changeset = plan(&desired, &running, &[], &catalog(), now());
    let expected = [("eu-west-1".to_string(), 3), ("us-east-1".to_string(), 6), ("us-west-2".to_string(), 3)];
    assert_eq!(per_region(&changeset, &running), expected);
}

#[test]
fn spread_by_cloud_is_one_domain_per_cloud_and_scale_down_leaves_the_fullest_domain_first() {
    // One cloud: every region is the same domain, so the fleet fills the preferred offering.
    let desired = plan_of(vec![spread_fleet(4, SpreadBy::Cloud, 1)]);
    let changeset = plan(&desired, &[], &[], &catalog(), now());
    assert_eq!(per_region(&changeset, &[]), [("us-east-1".to_string(), 4)]);

    let running = running_in(&[("us-east-1", 5), ("us-west-2", 2), ("eu-west-1", 3)]);
    let desired = plan_of(vec![spread_fleet(6, SpreadBy::Region, 1)]);
    let changeset = plan(&desired, &running, &[], &catalog(), now());
    let expected = [("eu-west-1".to_string(), 2), ("us-east-1".to_string(), 2), ("us-west-2".to_string(), 2)];
    assert_eq!(per_region(&changeset, &running), expected);
    let deleted: Vec<&String> = changeset.actions.iter().flat_map(|a| &a.instance_ids).collect();
    assert!(deleted.contains(&&"i-us-east-1-04".to_string()), "newest first within a domain: {deleted:?}");
    assert!(!deleted.contains(&&"i-us-east-1-00".to_string()), "the oldest stays: {deleted:?}");
}

#[test]
fn rebalance_restores_a_skewed_spread_within_the_budget_once_the_region_is_clear() {
    let mut desired = plan_of(vec![spread_fleet(30, SpreadBy::Region, 1)]);
    desired.rebalance.max_disruption = Disruption::Nodes(4);
    let mut running = running_in(&[("us-east-1", 15), ("us-west-2", 15)]);
    let mut refused = shortage("eu-west-1", "p5.48xlarge");
    refused.expires_at = now() - chrono::Duration::minutes(1);
    refused.last_seen = now() - chrono::Duration::minutes(10);
    assert!(decide(&desired, &running, &[refused.clone()], &catalog(), now()).is_empty(), "clear for 10 of 15 minutes");
    refused.last_seen = now() - chrono::Duration::minutes(16);
    let changeset = rebalance(&desired, &running, &[refused.clone()], &catalog(), now());
    insta::assert_snapshot!(render(&changeset));

    // Round after round, a budget's worth at a time, until within max_skew.
    let mut rounds = 0;
    loop {
        let moves = decide(&desired, &running, &[refused.clone()], &catalog(), now());
        if moves.is_empty() {
            break;
        }
        rounds += 1;
        let moved: usize = moves.iter().map(|m| m.instance_ids.len()).sum();
        assert!(moved <= 4, "round {rounds} moved {moved}");
        for m in &moves {
            assert_eq!(m.to.region, "eu-west-1");
            running.retain(|i| !m.instance_ids.contains(&i.id));
            for id in &m.instance_ids {
                running.push(instance(&format!("{id}-moved"), "trainers", "eu-west-1", "p5.48xlarge", 59));
            }
        }
    }
    assert_eq!(rounds, 3, "10 nodes to move, 4 a round");
    let held = counts(SpreadBy::Region, &running);
    assert_eq!(held.values().copied().collect::<Vec<_>>(), vec![10, 10, 10]);
}

#[test]
fn a_spread_fleet_within_max_skew_stays_put() {
    let mut desired = plan_of(vec![spread_fleet(7, SpreadBy::Region, 2)]);
    desired.rebalance.max_disruption = Disruption::Nodes(7);
    let running = running_in(&[("us-east-1", 3), ("us-west-2", 3), ("eu-west-1", 1)]);
    assert!(decide(&desired, &running, &[], &catalog(), now()).is_empty(), "3/3/1 is within a skew of 2");
    let running = running_in(&[("us-east-1", 4), ("us-west-2", 3)]);
    let moves = decide(&desired, &running, &[], &catalog(), now());
    assert_eq!(moves.len(), 1, "{moves:?}");
    assert_eq!(
        (moves[0].from.region.as_str(), moves[0].to.region.as_str(), moves[0].instance_ids.len()),
        ("us-east-1", "eu-west-1", 1)
    );
}
