//! The simulator's Compute Engine API driven by the real Rust SDK
//! (google-cloud-compute-v1, anonymous credentials) and by gpufleet's GCP
//! provider, over HTTP on a loopback port: inserts, bulk inserts with
//! minCount, label-filtered and paged lists, deletes, operations waited,
//! and stock-outs and quota refusals inside finished operations.

use google_cloud_compute_v1::client::{Instances, Regions, ZoneOperations};
use google_cloud_compute_v1::model::{
    AttachedDisk, AttachedDiskInitializeParams, BulkInsertInstanceResource, Instance, InstanceProperties,
    NetworkInterface, Operation, operation,
};
use google_cloud_gax::retry_policy::NeverRetry;
use gpufleet::model::Cloud;
use gpufleet::model::{Launch, Placement};
use gpufleet::providers::gcp::{GcpConnection, GcpProvider};
use gpufleet::providers::{CreateRequest, ErrorKind, Provider};
use std::collections::BTreeMap;

mod common;

/// The in-process simulator of the shared test helpers, with Compute Engine clients.
use common::InProcessSim as TestSim;

const PROJECT: &str = "sim-project";
const ZONE: &str = "us-central1-a";

/// us-central1-a holds 3 a3-highgpu-8g; the region admits 8 L4 GPUs (one g2-standard-96).
const SCENARIO: &str = r#"
[[offering]]
cloud = "gcp"
region = "us-central1"
zone = "us-central1-a"
instance_type = "a3-highgpu-8g"
capacity = 3

[[quota]]
cloud = "gcp"
region = "us-central1"
metric = "NVIDIA_L4_GPUS"
limit = 8
"#;

impl TestSim {
    async fn instances(&self) -> Instances {
        let credentials = google_cloud_auth::credentials::anonymous::Builder::new().build();
        Instances::builder()
            .with_endpoint(&self.url)
            .with_credentials(credentials)
            .with_retry_policy(NeverRetry)
            .build()
            .await
            .unwrap()
    }

    async fn operations(&self) -> ZoneOperations {
        let credentials = google_cloud_auth::credentials::anonymous::Builder::new().build();
        ZoneOperations::builder().with_endpoint(&self.url).with_credentials(credentials).build().await.unwrap()
    }

    async fn provider(&self) -> GcpProvider {
        let connection = GcpConnection { endpoint: Some(self.url.clone()), anonymous: true, ..Default::default() };
        GcpProvider::connect(PROJECT, &[ZONE.to_string()], &connection).await.unwrap()
    }

    async fn counters(&self) -> serde_json::Value {
        reqwest::get(format!("{}/_sim/counters", self.url)).await.unwrap().json().await.unwrap()
    }
}

async fn wait(operations: &ZoneOperations, op: Operation) -> Operation {
    assert_eq!(op.status, Some(operation::Status::Running), "a new operation is still running: {op:?}");
    let done = operations
        .wait()
        .set_project(PROJECT)
        .set_zone(ZONE)
        .set_operation(op.name.clone().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(done.status, Some(operation::Status::Done));
    done
}

fn bulk(machine_type: &str, count: i64, min_count: i64, team: &str) -> BulkInsertInstanceResource {
    BulkInsertInstanceResource::new()
        .set_count(count)
        .set_min_count(min_count)
        .set_name_pattern(format!("{team}-####"))
        .set_instance_properties(
            InstanceProperties::new()
                .set_machine_type(machine_type)
                .set_labels([("team", team)])
                .set_disks([boot_disk()])
                .set_network_interfaces([NetworkInterface::new().set_network("global/networks/default")]),
        )
}

/// A boot disk from a public image: every create needs one.
fn boot_disk() -> AttachedDisk {
    AttachedDisk::new().set_boot(true).set_initialize_params(
        AttachedDiskInitializeParams::new().set_source_image("projects/debian-cloud/global/images/family/debian-12"),
    )
}

fn error_code(op: &Operation) -> Option<&str> {
    op.error.as_ref()?.errors.first()?.code.as_deref()
}

#[tokio::test]
async fn sim_gce_serves_the_rust_sdk() {
    let sim = TestSim::start(Some(SCENARIO)).await;
    let client = sim.instances().await;
    let operations = sim.operations().await;

    let op = client
        .insert()
        .set_project(PROJECT)
        .set_zone(ZONE)
        .set_request_id("2b1f0e4c-8a8e-4d0c-9d0a-6f1e2d3c4b5a")
        .set_body(
            Instance::new()
                .set_name("solo")
                .set_machine_type(format!("zones/{ZONE}/machineTypes/a3-highgpu-8g"))
                .set_labels([("team", "ops")])
                .set_disks([boot_disk()])
                .set_network_interfaces([NetworkInterface::new().set_network("global/networks/default")]),
        )
        .send()
        .await
        .unwrap();
    assert!(op.id.is_some() && op.target_id.is_some(), "uint64 ids arrive as strings: {op:?}");
    let done = wait(&operations, op).await;
    assert_eq!(error_code(&done), None);
    let solo = client.get().set_project(PROJECT).set_zone(ZONE).set_instance("solo").send().await.unwrap();
    assert_eq!(solo.id, done.target_id);
    assert_eq!(solo.status.as_ref().and_then(|s| s.name()), Some("RUNNING"));
    assert_eq!(solo.creation_timestamp.as_deref(), Some("2026-01-01T00:00:00.000+00:00"));
    assert!(solo.machine_type.unwrap().ends_with("/zones/us-central1-a/machineTypes/a3-highgpu-8g"));

    // Two left in the zone: count 5, minCount 2 creates two.
    let op =
        client.bulk_insert().set_project(PROJECT).set_zone(ZONE).set_body(bulk("a3-highgpu-8g", 5, 2, "ml")).send();
    let done = wait(&operations, op.await.unwrap()).await;
    let status =
        &done.instances_bulk_insert_operation_metadata.as_ref().unwrap().per_location_status["zones/us-central1-a"];
    assert_eq!((status.target_vm_count, status.created_vm_count), (Some(5), Some(2)));

    // Now none: the stock-out arrives inside the finished operation, not as an HTTP error.
    let op =
        client.bulk_insert().set_project(PROJECT).set_zone(ZONE).set_body(bulk("a3-highgpu-8g", 1, 1, "ml")).send();
    let refused = wait(&operations, op.await.unwrap()).await;
    assert_eq!(error_code(&refused), Some("ZONE_RESOURCE_POOL_EXHAUSTED"));

    // Quota: 8 L4 GPUs admit one g2-standard-96, so minCount 2 is refused.
    let op =
        client.bulk_insert().set_project(PROJECT).set_zone(ZONE).set_body(bulk("g2-standard-96", 2, 2, "web")).send();
    let refused = wait(&operations, op.await.unwrap()).await;
    assert_eq!(error_code(&refused), Some("QUOTA_EXCEEDED"));
    assert!(refused.error.unwrap().errors[0].message.as_deref().unwrap().contains("NVIDIA_L4_GPUS"));
    let op =
        client.bulk_insert().set_project(PROJECT).set_zone(ZONE).set_body(bulk("g2-standard-96", 2, 1, "web")).send();
    assert_eq!(error_code(&wait(&operations, op.await.unwrap()).await), None);
    let regions = Regions::builder()
        .with_endpoint(&sim.url)
        .with_credentials(google_cloud_auth::credentials::anonymous::Builder::new().build())
        .build()
        .await
        .unwrap();
    let region = regions.get().set_project(PROJECT).set_region("us-central1").send().await.unwrap();
    let l4 = region.quotas.iter().find(|q| q.metric.as_ref().and_then(|m| m.name()) == Some("NVIDIA_L4_GPUS")).unwrap();
    assert_eq!((l4.limit, l4.usage), (Some(8.0), Some(8.0)));

    // Label filter and paging, zonal and aggregated.
    let mut names = Vec::new();
    let mut token = String::new();
    let mut pages = 0;
    loop {
        let page = client
            .list()
            .set_project(PROJECT)
            .set_zone(ZONE)
            .set_filter("labels.team = ml")
            .set_max_results(1u32)
            .set_page_token(&token)
            .send()
            .await
            .unwrap();
        pages += 1;
        names.extend(page.items.into_iter().filter_map(|i| i.name));
        match page.next_page_token {
            Some(next) if !next.is_empty() => token = next,
            _ => break,
        }
    }
    assert_eq!((names.as_slice(), pages), (["ml-0001".to_string(), "ml-0002".to_string()].as_slice(), 2));
    let aggregated =
        client.aggregated_list().set_project(PROJECT).set_filter("labels.team != ml").send().await.unwrap();
    let mut others: Vec<String> =
        aggregated.items["zones/us-central1-a"].instances.iter().filter_map(|i| i.name.clone()).collect();
    others.sort();
    assert_eq!(others, ["solo", "web-0001"]);

    // Delete: the operation is waited, the instance is gone, a second delete is a 404.
    let op = client.delete().set_project(PROJECT).set_zone(ZONE).set_instance("ml-0001").send().await.unwrap();
    assert_eq!(error_code(&wait(&operations, op).await), None);
    let gone = client.get().set_project(PROJECT).set_zone(ZONE).set_instance("ml-0001").send().await.unwrap_err();
    assert_eq!(gone.http_status_code(), Some(404), "{gone:?}");
    let again = client.delete().set_project(PROJECT).set_zone(ZONE).set_instance("ml-0001").send().await.unwrap_err();
    assert_eq!(again.http_status_code(), Some(404));

    let counters = sim.counters().await;
    assert_eq!(counters["gcp"]["instances.bulkInsert"], 4);
    assert_eq!(counters["gcp"]["zoneOperations.wait"], 6);
    sim.stop().await;
}

fn request(run: &str, token: &str, instance_type: &str, count: u32, min_count: u32) -> CreateRequest {
    CreateRequest {
        plan: "demo".into(),
        fleet: "train".into(),
        run: run.into(),
        placement: Placement {
            cloud: Cloud::Gcp,
            region: "us-central1".into(),
            zone: Some(ZONE.into()),
            instance_type: instance_type.into(),
        },
        count,
        min_count,
        image: "projects/debian-cloud/global/images/family/debian-12".into(),
        user_data: Some("#!/bin/sh\necho hello\n".into()),
        labels: BTreeMap::from([("team".into(), "ml".into())]),
        launch: Launch { disk_gb: 200, ..Launch::default() },
        idempotency_token: token.into(),
    }
}

#[tokio::test]
async fn gcp_provider_creates_lists_and_deletes_against_the_simulator() {
    let sim = TestSim::start(Some(SCENARIO)).await;
    let provider = sim.provider().await;

    // Partial fill: 3 in stock, 5 asked, at least 2.
    let first = request("run-1", "0b6f3a52-8f0e-4f43-9a4b-1c2d3e4f5a6b", "a3-highgpu-8g", 5, 2);
    let created = provider.create(&first).await.unwrap();
    assert_eq!(created.len(), 3, "{created:?}");
    assert!(
        created.iter().all(|i| i.cloud == Cloud::Gcp && i.zone.as_deref() == Some(ZONE) && i.region == "us-central1")
    );
    assert!(created.iter().all(|i| i.fleet == "train" && i.run == "run-1" && i.instance_type == "a3-highgpu-8g"));
    // A retry with the same token returns the same instances and creates none.
    assert_eq!(provider.create(&first).await.unwrap(), created);

    // Another run in the same zone: its create returns only its own instances.
    let l4 = provider.create(&request("run-2", "9d8c7b6a-5f4e-4d3c-8b2a-1f0e9d8c7b6a", "g2-standard-96", 1, 1)).await;
    assert_eq!(l4.unwrap().len(), 1);

    let owned = provider.list_owned("demo").await.unwrap();
    assert_eq!(owned.len(), 4);
    assert!(provider.list_owned("other-plan").await.unwrap().is_empty());

    // Stock-out and quota, classified from the finished operations.
    let capacity = provider
        .create(&request("run-3", "c1c1c1c1-0000-4000-8000-000000000001", "a3-highgpu-8g", 1, 1))
        .await
        .unwrap_err();
    assert_eq!((capacity.kind, capacity.code.as_str()), (ErrorKind::Capacity, "ZONE_RESOURCE_POOL_EXHAUSTED"));
    let quota = provider
        .create(&request("run-3", "a1a1a1a1-0000-4000-8000-000000000002", "g2-standard-96", 1, 1))
        .await
        .unwrap_err();
    assert_eq!((&quota.kind, quota.code.as_str()), (&ErrorKind::Quota, "QUOTA_EXCEEDED"));
    assert!(quota.message.contains("NVIDIA_L4_GPUS"), "{quota}");
    let no_such_zone = CreateRequest {
        placement: Placement { zone: Some("us-central1-z".into()), ..first.placement.clone() },
        ..request("run-3", "b1b1b1b1-0000-4000-8000-000000000003", "a3-highgpu-8g", 1, 1)
    };
    assert_eq!(provider.create(&no_such_zone).await.unwrap_err().kind, ErrorKind::NotFound);

    // Delete everything, twice: instances already gone count as deleted.
    provider.delete(&owned).await.unwrap();
    provider.delete(&owned).await.unwrap();
    assert!(provider.list_owned("demo").await.unwrap().is_empty());
    // The capacity came back.
    assert_eq!(
        provider
            .create(&request("run-4", "d4d4d4d4-0000-4000-8000-000000000004", "a3-highgpu-8g", 3, 3))
            .await
            .unwrap()
            .len(),
        3
    );

    let world = sim.stop().await;
    let dump = serde_json::to_value(&world).unwrap();
    let vm = &dump["gce"]["instances"].as_object().unwrap().values().next().unwrap()["spec"];
    assert_eq!(vm["labels"]["gpufleet-plan"], "demo");
    assert_eq!(vm["metadata"]["startup-script"], "#!/bin/sh\necho hello\n");
    assert_eq!(vm["on_host_maintenance"], "TERMINATE");
    assert_eq!(vm["source_image"], "projects/debian-cloud/global/images/family/debian-12");
}

/// The project's GPUS_ALL_REGIONS binds when it has fewer GPUs free than
/// the region's quota of the model: a new project has 0 of it.
#[tokio::test]
async fn gcp_provider_headroom_is_the_smaller_of_the_regional_and_the_project_gpu_quota() {
    let quota = |region: &str, metric: &str, limit: u32| {
        format!("[[quota]]\ncloud = \"gcp\"\nregion = \"{region}\"\nmetric = \"{metric}\"\nlimit = {limit}\n")
    };
    let at = Placement {
        cloud: Cloud::Gcp,
        region: "us-central1".into(),
        zone: Some(ZONE.into()),
        instance_type: "a3-highgpu-8g".into(),
    };
    for (global, nodes) in [(16, 2), (64, 4), (0, 0)] {
        let scenario = quota("us-central1", "NVIDIA_H100_GPUS", 32) + &quota("global", "GPUS_ALL_REGIONS", global);
        let sim = TestSim::start(Some(&scenario)).await;
        let room = sim.provider().await.quota_headroom(&at, "H100", 8).await.unwrap();
        assert_eq!(room, Some(nodes), "GPUS_ALL_REGIONS {global}, 32 H100 in the region");
        assert_eq!(sim.counters().await["gcp"]["projects.get"], 1);
        sim.stop().await;
    }
}
