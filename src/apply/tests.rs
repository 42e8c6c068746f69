//! The apply engine driven through a scripted fake [`Provider`] that records
//! every call: which offering is tried in which order, what is released,
//! what waits, where a run stops, and how far a saved plan may go.

use super::*;
use crate::model::{Instance, ManualClock, Placement, Scope};
use crate::plan::offerings::allowed_offerings;
use crate::providers::{CreateRequest, ErrorKind, Provider, ProviderError};
use crate::state::LocalBackend;
use chrono::{TimeZone, Utc};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::{Arc, Mutex};

#[derive(Debug, Clone, PartialEq)]
enum Call {
    Create { placement: Placement, count: u32, min_count: u32 },
    Delete { ids: Vec<String> },
}

/// What the fake cloud runs and how it answers, per placement.
#[derive(Default)]
struct World {
    instances: Vec<Instance>,
    calls: Vec<Call>,
    /// Creates here are refused for capacity.
    sold_out: BTreeSet<Placement>,
    /// Creates here give at most this many nodes, even below `min_count`
    /// (a cloud without all-or-nothing launches).
    at_most: BTreeMap<Placement, u32>,
    /// Raised once this many calls were made.
    stop_after: Option<(usize, Arc<Stop>)>,
    /// Creates are never answered (a cloud that hangs).
    hangs: bool,
    next_id: u32,
}

#[derive(Clone, Default)]
struct FakeAws {
    world: Arc<Mutex<World>>,
}

impl FakeAws {
    fn world(&self) -> std::sync::MutexGuard<'_, World> {
        self.world.lock().unwrap()
    }

    fn record(&self, call: Call) {
        let mut world = self.world();
        world.calls.push(call);
        let made = world.calls.len();
        if let Some((after, stop)) = &world.stop_after
            && made >= *after
        {
            stop.request();
        }
    }

    fn run(&self, id: &str, fleet: &str, placement: &Placement) {
        self.world().instances.push(instance(id, fleet, placement));
    }
}

fn instance(id: &str, fleet: &str, placement: &Placement) -> Instance {
    Instance {
        id: id.to_string(),
        cloud: placement.cloud,
        region: placement.region.clone(),
        zone: placement.zone.clone(),
        instance_type: placement.instance_type.clone(),
        fleet: fleet.to_string(),
        run: "earlier".into(),
        launched_at: Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap(),
        scope: Some(Scope::AwsRegion { region: placement.region.clone(), profile: None }),
    }
}

#[async_trait::async_trait]
impl Provider for FakeAws {
    fn cloud(&self) -> Cloud {
        Cloud::Aws
    }

    fn scopes(&self) -> Vec<Scope> {
        ["us-east-1", "us-west-2"].map(|region| Scope::AwsRegion { region: region.into(), profile: None }).to_vec()
    }

    async fn list_owned(&self, _plan: &str) -> Result<Vec<Instance>, ProviderError> {
        Ok(self.world().instances.clone())
    }

    async fn create(&self, request: &CreateRequest) -> Result<Vec<Instance>, ProviderError> {
        let placement = request.placement.clone();
        self.record(Call::Create { placement: placement.clone(), count: request.count, min_count: request.min_count });
        if self.world().hangs {
            std::future::pending::<()>().await;
        }
        let mut world = self.world();
        if world.sold_out.contains(&placement) {
            return Err(ProviderError {
                kind: ErrorKind::Capacity,
                cloud: Cloud::Aws,
                region: placement.region.clone(),
                code: "InsufficientInstanceCapacity".into(),
                message: "sold out".into(),
            });
        }
        let give = world.at_most.get(&placement).map_or(request.count, |most| request.count.min(*most));
        let mut made = Vec::new();
        for _ in 0..give {
            world.next_id += 1;
            made.push(instance(&format!("i-{:04}", world.next_id), &request.fleet, &placement));
        }
        world.instances.extend(made.iter().cloned());
        Ok(made)
    }

    async fn delete(&self, instances: &[Instance]) -> Result<(), ProviderError> {
        let ids: Vec<String> = instances.iter().map(|i| i.id.clone()).collect();
        self.record(Call::Delete { ids: ids.clone() });
        self.world().instances.retain(|i| !ids.contains(&i.id));
        Ok(())
    }
}

/// A plan of one H100 fleet on AWS, preferring us-east-1 then us-west-2.
pub(super) fn plan(placement: &str, nodes: u32) -> Plan {
    let text = format!(
        r#"
name = "unit"
[providers.aws]
regions = ["us-east-1", "us-west-2"]
[fleets.trainers]
gpu = "H100"
gpus_per_node = 8
nodes = {nodes}
placement = "{placement}"
prefer = ["aws:us-east-1", "aws:us-west-2"]
image = {{ aws = "ami-0123456789abcdef0" }}
"#
    );
    crate::plan::parse("unit.toml", &text, Path::new("."), &Catalog::builtin()).unwrap()
}

/// The fleet's allowed offerings, most wanted first, as placements.
fn offerings(plan: &Plan) -> Vec<Placement> {
    allowed_offerings(&plan.fleets["trainers"], &plan.providers, &Catalog::builtin())
        .iter()
        .map(|o| o.placement())
        .collect()
}

/// Everything one apply needs, owned.
struct Rig {
    plan: Plan,
    catalog: Catalog,
    dir: tempfile::TempDir,
    fake: FakeAws,
    clouds: Clouds,
    clock: ManualClock,
    stop: Arc<Stop>,
}

impl Rig {
    fn new(plan: Plan) -> Rig {
        let fake = FakeAws::default();
        Rig {
            plan,
            catalog: Catalog::builtin(),
            dir: tempfile::tempdir().unwrap(),
            clouds: Clouds::from_providers(vec![Box::new(fake.clone())]),
            fake,
            clock: ManualClock::new(Utc.with_ymd_and_hms(2026, 1, 1, 12, 0, 0).unwrap()),
            stop: Arc::new(Stop::default()),
        }
    }

    async fn apply(&self, backend: &LocalBackend, mode: impl FnOnce(&Refreshed) -> Mode) -> ApplyReport {
        let session = Session {
            plan: &self.plan,
            catalog: &self.catalog,
            backend,
            clouds: &self.clouds,
            clock: &self.clock,
            events: &NoEvents,
            drain: &NoDrain,
            stop: &self.stop,
        };
        let lock = lock(&session, "apply").await.unwrap();
        let refreshed = refresh(&session).await.unwrap();
        let mode = mode(&refreshed);
        apply(&session, lock, mode, refreshed).await.unwrap()
    }

    async fn run(&self, mode: impl FnOnce(&Refreshed) -> Mode) -> ApplyReport {
        self.apply(&LocalBackend::new(self.dir.path()), mode).await
    }

    fn calls(&self) -> Vec<Call> {
        self.fake.world().calls.clone()
    }

    fn creates_at(&self) -> Vec<Placement> {
        self.calls()
            .into_iter()
            .filter_map(|c| match c {
                Call::Create { placement, .. } => Some(placement),
                Call::Delete { .. } => None,
            })
            .collect()
    }

    fn running(&self) -> Vec<Instance> {
        self.fake.world().instances.clone()
    }
}

#[tokio::test]
async fn refused_creates_fail_over_in_preference_order_within_one_run() {
    let rig = Rig::new(plan("fill", 4));
    let order = offerings(&rig.plan);
    rig.fake.world().sold_out.extend([order[0].clone(), order[1].clone()]);
    let report = rig.run(|_| Mode::Apply).await;
    assert_eq!(rig.creates_at(), order[..3].to_vec(), "tried in preference order, one at a time");
    assert!(rig.running().iter().all(|i| order[2].hosts(i)));
    assert_eq!(report.fleets[0].status, FleetStatus::Complete);
    assert_eq!(report.fleets[0].refused.len(), 2);
    assert!(!report.is_error());
}

#[tokio::test]
async fn a_create_below_min_count_is_released_before_the_next_offering_is_tried() {
    let rig = Rig::new(plan("pack", 4));
    let order = offerings(&rig.plan);
    rig.fake.world().at_most.insert(order[0].clone(), 2);
    let report = rig.run(|_| Mode::Apply).await;
    let calls = rig.calls();
    assert_eq!(calls[0], Call::Create { placement: order[0].clone(), count: 4, min_count: 4 });
    assert_eq!(calls[1], Call::Delete { ids: vec!["i-0001".into(), "i-0002".into()] }, "the two are released");
    assert!(matches!(&calls[2], Call::Create { placement, count: 4, .. } if *placement != order[0]));
    assert_eq!(calls.len(), 3);
    assert_eq!(rig.running().len(), 4);
    assert_eq!(report.fleets[0].status, FleetStatus::Complete);
}

#[tokio::test]
async fn pack_consolidation_deletes_wait_until_the_fleets_creates_succeed() {
    let rig = Rig::new(plan("pack", 4));
    let order = offerings(&rig.plan);
    let east: Vec<&Placement> = order.iter().filter(|p| p.region == "us-east-1").collect();
    let west = order.iter().find(|p| p.region == "us-west-2").unwrap();
    for (n, placement) in east.iter().take(3).enumerate() {
        rig.fake.run(&format!("i-east-{n}"), "trainers", placement);
    }
    rig.fake.run("i-west-0", "trainers", west);
    rig.fake.world().sold_out.extend(east.iter().map(|p| (*p).clone()));
    let report = rig.run(|_| Mode::Apply).await;
    assert!(!rig.calls().iter().any(|c| matches!(c, Call::Delete { .. })), "{:?}", rig.calls());
    assert!(rig.running().iter().any(|i| i.id == "i-west-0"), "the node outside the pack region stays");
    assert!(!rig.creates_at().is_empty() && rig.creates_at().iter().all(|p| p.region == "us-east-1"));
    assert_eq!(report.fleets[0].have, 4);

    // Once the region has room, the same apply gathers the fleet there.
    rig.fake.world().sold_out.clear();
    rig.clock.advance(chrono::Duration::hours(1));
    rig.run(|_| Mode::Apply).await;
    let running = rig.running();
    assert_eq!(running.len(), 4);
    assert!(running.iter().all(|i| i.region == "us-east-1"), "{running:?}");
}

#[tokio::test]
async fn a_stop_between_calls_starts_no_new_call_and_leaves_no_open_intent() {
    let rig = Rig::new(plan("fill", 4));
    let order = offerings(&rig.plan);
    rig.fake.world().sold_out.insert(order[0].clone());
    rig.fake.world().stop_after = Some((1, Arc::clone(&rig.stop)));
    let report = rig.run(|_| Mode::Apply).await;
    assert_eq!(rig.calls().len(), 1, "the refused create is not followed by a failover: {:?}", rig.calls());
    assert!(report.interrupted && report.is_error());
    let backend = LocalBackend::new(rig.dir.path());
    assert!(backend.open_intents("unit").await.unwrap().is_empty());
    assert_eq!(backend.load("unit").await.unwrap().shortages.len(), 1, "the refusal is remembered");
}

#[tokio::test]
async fn a_stop_during_a_call_that_never_answers_abandons_it_and_leaves_its_intent_open() {
    let rig = Rig::new(plan("fill", 4));
    rig.fake.world().hangs = true;
    rig.fake.world().stop_after = Some((1, Arc::clone(&rig.stop)));
    let report = rig.run(|_| Mode::Apply).await;
    assert_eq!(rig.calls().len(), 1, "{:?}", rig.calls());
    assert!(report.interrupted && report.is_error() && report.errors.is_empty(), "{report:?}");
    let backend = LocalBackend::new(rig.dir.path());
    let open = backend.open_intents("unit").await.unwrap();
    assert_eq!(open.len(), 1, "the abandoned create is left for the next refresh: {open:?}");
    assert!(backend.load("unit").await.unwrap().shortages.is_empty(), "an abandoned call is no refusal");
}

/// A saved plan of the rig's plan whose create may fall back only to the
/// first `keep` offerings of its chain.
fn saved_with_chain(rig: &Rig, refreshed: &Refreshed, keep: usize) -> Mode {
    let mut changeset =
        planner::plan(&rig.plan, &refreshed.state.instances, &refreshed.state.shortages, &rig.catalog, refreshed.now);
    changeset.actions[0].fallbacks.truncate(keep);
    Mode::Saved(Box::new(SavedPlan {
        kind: SAVED_PLAN_KIND.into(),
        format_version: SAVED_PLAN_FORMAT_VERSION,
        plan_path: "unit.toml".into(),
        plan_digest: String::new(),
        state_lineage: refreshed.state.lineage.clone(),
        state_serial: refreshed.serial_read,
        observed: refreshed.observed_ids(),
        changeset,
        file: "unit.saved".into(),
    }))
}

#[tokio::test]
async fn a_saved_plan_fails_over_along_its_chain_and_says_which_fallback_it_used() {
    let rig = Rig::new(plan("fill", 4));
    let order = offerings(&rig.plan);
    rig.fake.world().sold_out.insert(order[0].clone());
    let report = rig.run(|refreshed| saved_with_chain(&rig, refreshed, 2)).await;
    assert_eq!(rig.creates_at(), order[..2].to_vec());
    let used = &report.fleets[0].fallbacks_used;
    assert_eq!(used.len(), 1);
    assert_eq!((used[0].position, used[0].used.clone()), (1, order[1].to_string()));
    assert!(!report.is_error());
}

#[tokio::test]
async fn a_saved_plan_whose_chain_runs_out_stops_there_and_asks_for_a_new_plan() {
    let rig = Rig::new(plan("fill", 4));
    let order = offerings(&rig.plan);
    assert!(order.len() > 3, "there are offerings beyond the chain");
    rig.fake.world().sold_out.extend([order[0].clone(), order[1].clone()]);
    let report = rig.run(|refreshed| saved_with_chain(&rig, refreshed, 1)).await;
    assert_eq!(rig.creates_at(), order[..2].to_vec(), "nothing beyond the saved chain is tried");
    assert!(rig.running().is_empty());
    assert!(report.is_error());
    assert!(report.chains_exhausted[0].contains("run `gpufleet plan` again"), "{:?}", report.chains_exhausted);
}

#[test]
fn a_shell_startup_script_gets_the_nodes_place_and_other_user_data_stays_as_it_is() {
    let plan = plan("fill", 1);
    let changeset =
        planner::plan(&plan, &[], &[], &Catalog::builtin(), Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap());
    let create = &changeset.actions[0];
    let script = runner::with_placement("#!/bin/sh\nset -eu\njoin\n", "unit", create);
    let zone = create.placement.zone.clone().unwrap();
    assert_eq!(
        script,
        format!(
            "#!/bin/sh\nexport GPUFLEET_PLAN='unit'\nexport GPUFLEET_FLEET='trainers'\nexport GPUFLEET_CLOUD='aws'\n\
             export GPUFLEET_REGION='us-east-1'\nexport GPUFLEET_ZONE='{zone}'\nset -eu\njoin\n"
        )
    );
    let cloud_config = "#cloud-config\nruncmd: [join]\n";
    assert_eq!(runner::with_placement(cloud_config, "unit", create), cloud_config);
}

/// The state was written whole after every create and delete call: a
/// 1,000-node apply over many placements rewrote it once per call.
#[tokio::test]
async fn the_state_is_written_once_per_batch_of_calls_not_once_per_call() {
    let rig = Rig::new(plan("spread", 12));
    let serial = |rig: &Rig| {
        let backend = LocalBackend::new(rig.dir.path());
        async move { backend.load("unit").await.unwrap().serial }
    };
    rig.run(|_| Mode::Apply).await;
    let creates = rig.creates_at().len();
    assert!(creates >= 4, "a spread fleet takes one create per placement: {:?}", rig.calls());
    assert_eq!(rig.running().len(), 12);
    assert_eq!(serial(&rig).await, 1, "one write for the round's {creates} creates");

    let rig = Rig { plan: plan("spread", 2), ..rig };
    rig.run(|_| Mode::Apply).await;
    let deletes = rig.calls().iter().filter(|c| matches!(c, Call::Delete { .. })).count();
    assert!(deletes >= 4, "{:?}", rig.calls());
    assert_eq!(rig.running().len(), 2);
    assert_eq!(serial(&rig).await, 2, "one more write for the round's {deletes} deletes");
}
