//! Prometheus metrics of the rebalancer (`rebalance --watch --metrics-listen`),
//! with the prometheus-client crate: nodes per fleet and placement, shortfall,
//! moves started/finished/failed, drain failures, shortages by code, round
//! duration and cost per hour. Updated after every round; served as text by
//! the CLI.

use crate::apply::ApplyReport;
use crate::catalog::Catalog;
use crate::model::{Instance, Placement};
use crate::plan::Plan;
use crate::planner::price_of;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use std::collections::BTreeMap;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct NodeLabels {
    fleet: String,
    cloud: String,
    location: String,
    instance_type: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FleetLabels {
    fleet: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    outcome: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CodeLabels {
    code: String,
}

/// The rebalancer's metrics and the registry that encodes them.
pub struct Metrics {
    registry: Registry,
    nodes: Family<NodeLabels, Gauge>,
    shortfall: Family<FleetLabels, Gauge>,
    moves: Family<OutcomeLabels, Counter>,
    drain_failures: Counter,
    shortages: Family<CodeLabels, Counter>,
    rounds: Family<OutcomeLabels, Counter>,
    round_seconds: Histogram,
    cost: Gauge<f64, AtomicU64>,
}

impl Default for Metrics {
    fn default() -> Metrics {
        Metrics::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("gpufleet");
        let nodes = Family::<NodeLabels, Gauge>::default();
        registry.register("nodes", "Nodes the plan runs, by fleet and placement", nodes.clone());
        let shortfall = Family::<FleetLabels, Gauge>::default();
        registry.register("shortfall_nodes", "Nodes a fleet lacks to reach `nodes`", shortfall.clone());
        let moves = Family::<OutcomeLabels, Counter>::default();
        registry.register("moves", "Nodes moved by rebalancing: started, finished, failed", moves.clone());
        let drain_failures = Counter::default();
        registry.register(
            "drain_failures",
            "Nodes kept because their drain failed or timed out",
            drain_failures.clone(),
        );
        let shortages = Family::<CodeLabels, Counter>::default();
        registry.register("shortages", "Capacity or quota refusals, by the cloud's code", shortages.clone());
        let rounds = Family::<OutcomeLabels, Counter>::default();
        registry.register("rounds", "Rebalance rounds, by outcome", rounds.clone());
        let round_seconds = Histogram::new([0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0]);
        registry.register("round_duration_seconds", "Wall time of a rebalance round", round_seconds.clone());
        let cost = Gauge::<f64, AtomicU64>::default();
        registry.register(
            "cost_per_hour_dollars",
            "List price per hour of every node with a known price",
            cost.clone(),
        );
        Metrics { registry, nodes, shortfall, moves, drain_failures, shortages, rounds, round_seconds, cost }
    }

    /// Take in a finished round: its report, and what runs afterwards.
    pub fn round(&self, plan: &Plan, catalog: &Catalog, report: &ApplyReport, running: &[Instance], took: Duration) {
        let outcome = if report.is_error() { "error" } else { "ok" };
        self.rounds.get_or_create(&OutcomeLabels { outcome: outcome.into() }).inc();
        self.round_seconds.observe(took.as_secs_f64());
        for (outcome, n) in
            [("started", report.moves.started), ("finished", report.moves.finished), ("failed", report.moves.failed)]
        {
            self.moves.get_or_create(&OutcomeLabels { outcome: outcome.into() }).inc_by(u64::from(n));
        }
        self.drain_failures.inc_by(report.drain_failures.len() as u64);
        for refusal in report.fleets.iter().flat_map(|f| &f.refused) {
            self.shortages.get_or_create(&CodeLabels { code: refusal.code.clone() }).inc();
        }
        self.fleet_state(plan, catalog, running);
    }

    /// A round that failed before it could report: counted, nothing else known.
    pub fn failed_round(&self, took: Duration) {
        self.rounds.get_or_create(&OutcomeLabels { outcome: "failed".into() }).inc();
        self.round_seconds.observe(took.as_secs_f64());
    }

    /// Node gauges, shortfall and cost from what runs now.
    fn fleet_state(&self, plan: &Plan, catalog: &Catalog, running: &[Instance]) {
        self.nodes.clear();
        let mut per_placement: BTreeMap<(String, Placement), i64> = BTreeMap::new();
        let mut cost = 0.0;
        for instance in running {
            *per_placement.entry((instance.fleet.clone(), Placement::of(instance))).or_default() += 1;
            cost += price_of(&Placement::of(instance), catalog).unwrap_or(0.0);
        }
        for ((fleet, placement), count) in per_placement {
            let labels = NodeLabels {
                fleet,
                cloud: placement.cloud.to_string(),
                location: placement.zone.clone().unwrap_or(placement.region.clone()),
                instance_type: placement.instance_type.clone(),
            };
            self.nodes.get_or_create(&labels).set(count);
        }
        for fleet in plan.fleets.values() {
            let have = running.iter().filter(|i| i.fleet == fleet.name).count() as i64;
            let lacking = (i64::from(fleet.nodes) - have).max(0);
            self.shortfall.get_or_create(&FleetLabels { fleet: fleet.name.clone() }).set(lacking);
        }
        self.cost.set(cost);
    }

    /// The Prometheus text exposition of every metric.
    pub fn encode(&self) -> String {
        let mut text = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut text, &self.registry);
        text
    }
}
