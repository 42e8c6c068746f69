//! Finishing the moves an interrupted run left half done, from what the
//! journal names of them and what the clouds run now. Pure: the runner
//! executes what this decides.
//!
//! A move whose new nodes run is completed: its old nodes, exactly those its
//! create named (and maybe already drained), are deleted, one for each of
//! its new nodes that runs, and never so many that the fleet drops below its
//! count. A move none of whose new nodes runs (its create never went through)
//! is rolled back: nothing of it was made, its old nodes stay, and the round
//! decides afresh.

use crate::catalog::Catalog;
use crate::model::{Instance, Placement};
use crate::plan::Plan;
use crate::planner::{Action, ActionKind, Reason, price_of};
use crate::state::journal::UnfinishedMove;
use std::collections::BTreeMap;

/// The delete that completes (part of) a move, and the instances that replaced its nodes.
#[derive(Debug, PartialEq)]
pub(super) struct Completion {
    pub action: Action,
    pub replaced_by: Vec<String>,
}

/// The deletes that complete the unfinished moves, given what runs now.
pub(super) fn completions(
    plan: &Plan,
    instances: &[Instance],
    moves: &[UnfinishedMove],
    catalog: &Catalog,
) -> Vec<Completion> {
    // A fleet gives up no more than it runs beyond its count: what else
    // happened since (a plan that wants more now) is the planner's to weigh.
    let mut beyond: BTreeMap<&str, usize> = plan
        .fleets
        .values()
        .map(|fleet| {
            let runs = instances.iter().filter(|i| i.fleet == fleet.name).count();
            (fleet.name.as_str(), runs.saturating_sub(fleet.nodes as usize))
        })
        .collect();
    let mut completions = Vec::new();
    for unfinished in moves {
        let Some(room) = beyond.get_mut(unfinished.fleet.as_str()) else { continue };
        let new: Vec<String> = instances
            .iter()
            .filter(|i| i.fleet == unfinished.fleet)
            .filter(|i| match &unfinished.created {
                Some(ids) => ids.contains(&i.id),
                // The create's answer was lost: its nodes carry its run's tag.
                None => i.run == unfinished.run && unfinished.to.hosts(i),
            })
            .map(|i| i.id.clone())
            .collect();
        let old: Vec<&Instance> = instances.iter().filter(|i| unfinished.replaces.contains(&i.id)).collect();
        let go = new.len().min(old.len()).min(*room);
        *room -= go;
        let mut by_placement: BTreeMap<Placement, Vec<String>> = BTreeMap::new();
        for instance in old.into_iter().take(go) {
            by_placement.entry(Placement::of(instance)).or_default().push(instance.id.clone());
        }
        for (placement, instance_ids) in by_placement {
            let action = Action {
                kind: ActionKind::Delete,
                fleet: unfinished.fleet.clone(),
                count: instance_ids.len() as u32,
                min_count: 0,
                instance_ids,
                reason: Reason::DeleteBecauseMoved { to: unfinished.to.to_string() },
                price_per_hour: price_of(&placement, catalog),
                placement,
                fallbacks: Vec::new(),
            };
            completions.push(Completion { action, replaced_by: new.clone() });
        }
    }
    completions
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Cloud;
    use chrono::{TimeZone, Utc};

    fn placement(zone: &str) -> Placement {
        Placement {
            cloud: Cloud::Aws,
            region: zone[..zone.len() - 1].to_string(),
            zone: Some(zone.to_string()),
            instance_type: "p5.48xlarge".into(),
        }
    }

    fn instance(id: &str, zone: &str, run: &str) -> Instance {
        let at = placement(zone);
        Instance {
            id: id.into(),
            cloud: at.cloud,
            region: at.region,
            zone: at.zone,
            instance_type: at.instance_type,
            fleet: "trainers".into(),
            run: run.into(),
            launched_at: Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap(),
            scope: None,
        }
    }

    fn fleet_of(run_new: &str, new: &[&str]) -> Vec<Instance> {
        let mut instances: Vec<Instance> =
            ["i-w1", "i-w2", "i-w3", "i-w4"].iter().map(|id| instance(id, "us-west-2a", "apply")).collect();
        instances.extend(new.iter().map(|id| instance(id, "us-east-1a", run_new)));
        instances
    }

    fn unfinished(created: Option<&[&str]>) -> UnfinishedMove {
        UnfinishedMove {
            run: "killed".into(),
            fleet: "trainers".into(),
            to: placement("us-east-1a"),
            replaces: vec!["i-w1".into(), "i-w2".into()],
            created: created.map(|ids| ids.iter().map(|id| id.to_string()).collect()),
        }
    }

    fn decide(instances: &[Instance], moves: &[UnfinishedMove]) -> Vec<(Vec<String>, Vec<String>)> {
        completions(&super::super::tests::plan("spread", 4), instances, moves, &Catalog::builtin())
            .into_iter()
            .map(|c| {
                assert_eq!(c.action.reason, Reason::DeleteBecauseMoved { to: "aws us-east-1a p5.48xlarge".into() });
                (c.action.instance_ids, c.replaced_by)
            })
            .collect()
    }

    fn ids(ids: &[&str]) -> Vec<String> {
        ids.iter().map(|id| id.to_string()).collect()
    }

    #[test]
    fn a_move_whose_new_nodes_run_deletes_exactly_the_old_nodes_it_named() {
        let instances = fleet_of("killed", &["i-e1", "i-e2"]);
        let expected = vec![(ids(&["i-w1", "i-w2"]), ids(&["i-e1", "i-e2"]))];
        assert_eq!(decide(&instances, &[unfinished(Some(&["i-e1", "i-e2"]))]), expected);
        // The create's answer was lost: its nodes are known by their run's tag.
        assert_eq!(decide(&instances, &[unfinished(None)]), expected);
    }

    #[test]
    fn a_move_whose_create_never_went_through_is_rolled_back() {
        assert_eq!(decide(&fleet_of("killed", &[]), &[unfinished(None)]), []);
        // Nodes of another run at the same place are not the move's.
        assert_eq!(decide(&fleet_of("other", &["i-e1", "i-e2"]), &[unfinished(None)]), []);
    }

    #[test]
    fn a_move_never_deletes_more_than_its_new_nodes_that_run_nor_below_the_fleets_count() {
        // One of two new nodes runs: one old node goes.
        assert_eq!(decide(&fleet_of("killed", &["i-e1"]), &[unfinished(Some(&["i-e1", "i-e2"]))]).len(), 1);
        // Both new nodes run but one old node is gone already: the fleet is
        // one over its count, so one more goes.
        let mut instances = fleet_of("killed", &["i-e1", "i-e2"]);
        instances.retain(|i| i.id != "i-w1");
        assert_eq!(
            decide(&instances, &[unfinished(Some(&["i-e1", "i-e2"]))]),
            [(ids(&["i-w2"]), ids(&["i-e1", "i-e2"]))]
        );
        // At its count (a delete went elsewhere): nothing.
        instances.retain(|i| i.id != "i-w3");
        assert_eq!(decide(&instances, &[unfinished(Some(&["i-e1", "i-e2"]))]), []);
    }
}
