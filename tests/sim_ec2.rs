//! The simulator's EC2 API driven by the real Rust SDK (aws-sdk-ec2), over
//! HTTP on a loopback port: if the SDK can launch, page, tag, terminate and
//! see capacity errors here, gpufleet's AWS provider can rehearse against it.

use aws_sdk_ec2::Client;
use aws_sdk_ec2::config::retry::RetryConfig;
use aws_sdk_ec2::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_ec2::error::ProvideErrorMetadata;
use aws_sdk_ec2::types::{Filter, InstanceStateName, ResourceType, Tag, TagSpecification};

mod common;

/// The in-process simulator of the shared test helpers, with EC2 clients.
use common::InProcessSim as TestSim;
use std::time::Duration;

const SOLD_OUT_FOR_20_MINUTES: &str = r#"
[[offering]]
cloud = "aws"
region = "us-east-1"
instance_type = "p5.48xlarge"
capacity = 0
[[offering.timeline]]
after = "20m"
capacity = 2

# us-west-2 has stock in one zone only, so where a launch lands shows whose
# pools it drew from.
[[offering]]
cloud = "aws"
region = "us-west-2"
instance_type = "p5.48xlarge"
capacity = 0

[[offering]]
cloud = "aws"
region = "us-west-2"
zone = "us-west-2c"
instance_type = "p5.48xlarge"
capacity = 5
"#;

impl TestSim {
    /// An EC2 client for `region`. Retries are off: EC2 sends capacity errors
    /// as HTTP 500, which the SDK would otherwise retry after real-time backoff.
    fn client(&self, region: &'static str) -> Client {
        let config = aws_sdk_ec2::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new(region))
            .credentials_provider(Credentials::new("AKIDTEST", "secret", None, None, "test"))
            .endpoint_url(&self.url)
            .retry_config(RetryConfig::disabled())
            .build();
        Client::from_conf(config)
    }

    async fn admin_post(&self, path: &str, body: serde_json::Value) -> serde_json::Value {
        let response = reqwest::Client::new().post(format!("{}{path}", self.url)).json(&body).send().await.unwrap();
        assert!(response.status().is_success(), "{path}: {}", response.status());
        response.json().await.unwrap()
    }
}

fn tag(key: &str, value: &str) -> Tag {
    Tag::builder().key(key).value(value).build()
}

fn instance_tags(tags: &[Tag]) -> TagSpecification {
    TagSpecification::builder().resource_type(ResourceType::Instance).set_tags(Some(tags.to_vec())).build()
}

fn filter(name: &str, value: &str) -> Filter {
    Filter::builder().name(name).values(value).build()
}

#[tokio::test]
async fn sim_ec2_launch_with_tags_and_describe_in_pages() {
    let sim = TestSim::start(None).await;
    let ec2 = sim.client("us-east-1");
    for _ in 0..4 {
        let launched = ec2
            .run_instances()
            .image_id("ami-12345678")
            .instance_type("p5.48xlarge".into())
            .min_count(3)
            .max_count(3)
            .tag_specifications(instance_tags(&[tag("gpufleet-plan", "training"), tag("team", "ml & <research>")]))
            .user_data("ZWNobyBoaQ==")
            .send()
            .await
            .unwrap();
        let instances = launched.instances();
        assert_eq!(instances.len(), 3);
        assert!(launched.reservation_id().unwrap().starts_with("r-"));
        let first = &instances[0];
        assert_eq!(first.state().and_then(|s| s.name()), Some(&InstanceStateName::Pending));
        assert_eq!(first.state().and_then(|s| s.code()), Some(0));
        assert_eq!(first.launch_time().map(|t| t.secs()), Some(1_767_225_600), "simulated start 2026-01-01");
        assert!(first.placement().and_then(|p| p.availability_zone()).unwrap().starts_with("us-east-1"));
        assert!(first.tags().iter().any(|t| t.key() == Some("team") && t.value() == Some("ml & <research>")));
    }
    ec2.run_instances()
        .image_id("ami-12345678")
        .instance_type("p5.48xlarge".into())
        .min_count(2)
        .max_count(2)
        .tag_specifications(instance_tags(&[tag("gpufleet-plan", "other")]))
        .send()
        .await
        .unwrap();

    // Running once the default lifecycle's 15 s of pending have passed.
    gpufleet::sim::sim_advance(&sim.url, Duration::from_secs(15)).await.unwrap();
    let pages: Vec<_> = ec2
        .describe_instances()
        .filters(filter("tag:gpufleet-plan", "training"))
        .filters(filter("instance-state-name", "running"))
        .max_results(5)
        .into_paginator()
        .send()
        .collect::<Vec<_>>()
        .await;
    let per_page: Vec<usize> = pages
        .iter()
        .map(|page| page.as_ref().unwrap().reservations().iter().map(|r| r.instances().len()).sum())
        .collect();
    // Pages of at most 5, some short or empty, and a next token until the end.
    assert!(per_page.iter().all(|&n| n <= 5), "{per_page:?}");
    assert_eq!(per_page.iter().sum::<usize>(), 12, "{per_page:?}");
    let ids: std::collections::BTreeSet<String> = pages
        .iter()
        .flat_map(|page| page.as_ref().unwrap().reservations().to_vec())
        .flat_map(|r| r.instances().to_vec())
        .filter_map(|i| i.instance_id().map(str::to_string))
        .collect();
    assert_eq!(ids.len(), 12, "every instance once, none twice");

    let counters = sim.admin_get("/_sim/counters").await;
    assert_eq!(counters["aws"]["RunInstances"], 5);
    assert_eq!(counters["aws"]["DescribeInstances"], pages.len() as u64, "one call a page");
    sim.stop().await;
}

#[tokio::test]
async fn sim_ec2_terminate_and_tag() {
    let sim = TestSim::start(None).await;
    let ec2 = sim.client("us-east-1");
    let launched = ec2
        .run_instances()
        .image_id("ami-12345678")
        .instance_type("p5.48xlarge".into())
        .min_count(3)
        .max_count(3)
        .send()
        .await
        .unwrap();
    let ids: Vec<String> = launched.instances().iter().filter_map(|i| i.instance_id().map(str::to_string)).collect();
    gpufleet::sim::sim_advance(&sim.url, Duration::from_secs(15)).await.unwrap();

    ec2.create_tags().resources(&ids[0]).tags(tag("gpufleet-fleet", "a")).send().await.unwrap();
    let tagged = ec2.describe_instances().filters(filter("tag-key", "gpufleet-fleet")).send().await.unwrap();
    assert_eq!(tagged.reservations()[0].instances()[0].instance_id(), Some(ids[0].as_str()));

    let terminated = ec2.terminate_instances().instance_ids(&ids[0]).instance_ids(&ids[1]).send().await.unwrap();
    let changes = terminated.terminating_instances();
    assert_eq!(changes.len(), 2);
    assert_eq!(changes[0].previous_state().and_then(|s| s.name()), Some(&InstanceStateName::Running));
    assert_eq!(changes[0].current_state().and_then(|s| s.code()), Some(32), "shutting-down");
    // Terminated once the default lifecycle's 30 s of shutting down have passed.
    gpufleet::sim::sim_advance(&sim.url, Duration::from_secs(30)).await.unwrap();

    let gone = ec2.describe_instances().filters(filter("instance-state-name", "terminated")).send().await.unwrap();
    let gone_ids: Vec<&str> =
        gone.reservations().iter().flat_map(|r| r.instances()).filter_map(|i| i.instance_id()).collect();
    assert_eq!(gone_ids, vec![ids[0].as_str(), ids[1].as_str()]);

    let unknown = ec2.terminate_instances().instance_ids(&ids[2]).instance_ids("i-0123456789abcdef0").send().await;
    assert_eq!(unknown.unwrap_err().code(), Some("InvalidInstanceID.NotFound"));
    let still = ec2.describe_instances().instance_ids(&ids[2]).send().await.unwrap();
    assert_eq!(
        still.reservations()[0].instances()[0].state().and_then(|s| s.name()),
        Some(&InstanceStateName::Running),
        "a failed terminate terminates nothing"
    );
    let malformed = ec2.terminate_instances().instance_ids("i-nope").send().await;
    assert_eq!(malformed.unwrap_err().code(), Some("InvalidInstanceID.Malformed"));
    sim.stop().await;
}

#[tokio::test]
async fn sim_ec2_capacity_error_until_the_clock_brings_stock_back() {
    let sim = TestSim::start(Some(SOLD_OUT_FOR_20_MINUTES)).await;
    let ec2 = sim.client("us-east-1");
    let launch =
        || ec2.run_instances().image_id("ami-12345678").instance_type("p5.48xlarge".into()).min_count(2).max_count(4);

    let refused = launch().send().await.unwrap_err();
    assert_eq!(refused.code(), Some("InsufficientInstanceCapacity"));
    assert_eq!(refused.raw_response().map(|r| r.status().as_u16()), Some(500));

    // The catalog sells p5.48xlarge in us-east-1 but not in eu-west-1.
    let unsupported = sim
        .client("eu-west-1")
        .run_instances()
        .image_id("ami-1")
        .instance_type("p5.48xlarge".into())
        .min_count(1)
        .max_count(1)
        .send()
        .await
        .unwrap_err();
    assert_eq!(unsupported.code(), Some("Unsupported"));
    assert!(unsupported.message().unwrap().contains("eu-west-1"), "{:?}", unsupported.message());

    let now = sim.admin_post("/_sim/advance", serde_json::json!({ "by": "20m" })).await;
    assert_eq!(now["now"], "2026-01-01T00:20:00Z");
    let launched = launch().send().await.unwrap();
    assert_eq!(launched.instances().len(), 2, "MaxCount 4 with 2 available in each zone launches 2");
    let zones: std::collections::BTreeSet<_> =
        launched.instances().iter().map(|i| i.placement().and_then(|p| p.availability_zone())).collect();
    assert_eq!(zones.len(), 1, "one launch, one zone: {zones:?}");
    assert_eq!(launched.instances()[0].launch_time().map(|t| t.secs()), Some(1_767_225_600 + 20 * 60));

    // The region comes from the request's signature: us-west-2 is its own world
    // (no zone of us-east-1 has 5 left).
    let west = sim.client("us-west-2");
    let in_west = west
        .run_instances()
        .image_id("ami-1")
        .instance_type("p5.48xlarge".into())
        .min_count(5)
        .max_count(5)
        .send()
        .await
        .unwrap();
    let west_zones: Vec<_> =
        in_west.instances().iter().map(|i| i.placement().and_then(|p| p.availability_zone())).collect();
    assert_eq!(west_zones, vec![Some("us-west-2c"); 5]);
    let east = ec2.describe_instances().send().await.unwrap();
    assert_eq!(east.reservations().iter().map(|r| r.instances().len()).sum::<usize>(), 2);
    sim.stop().await;
}

#[tokio::test]
async fn sim_ec2_client_token_makes_launches_idempotent() {
    let sim = TestSim::start(None).await;
    let ec2 = sim.client("us-east-1");
    let launch = |max: i32| {
        ec2.run_instances()
            .image_id("ami-12345678")
            .instance_type("p5.48xlarge".into())
            .min_count(1)
            .max_count(max)
            .client_token("gpufleet-run-7-fleet-a")
            .tag_specifications(instance_tags(&[tag("gpufleet-run", "7")]))
    };
    let first = launch(2).send().await.unwrap();
    let again = launch(2).send().await.unwrap();
    assert_eq!(first.reservation_id(), again.reservation_id());
    let ids = |r: &aws_sdk_ec2::operation::run_instances::RunInstancesOutput| {
        r.instances().iter().filter_map(|i| i.instance_id().map(str::to_string)).collect::<Vec<_>>()
    };
    assert_eq!(ids(&first), ids(&again));

    let mismatch = launch(3).send().await.unwrap_err();
    assert_eq!(mismatch.code(), Some("IdempotentParameterMismatch"));

    let world = sim.stop().await;
    assert_eq!(world.instances().count(), 2, "the replay launched nothing");
}

/// `wire_latency` holds each cloud response back in real time (never less),
/// and leaves the simulated clock where it was.
#[tokio::test]
async fn sim_wire_latency_holds_responses_back_without_moving_the_clock() {
    let sim = TestSim::start(Some("wire_latency = \"300ms\"\n")).await;
    let before = sim.admin_get("/_sim/time").await;
    let started = std::time::Instant::now();
    let listed = sim.client("us-east-1").describe_instances().send().await.unwrap();
    assert!(started.elapsed() >= std::time::Duration::from_millis(300), "{:?}", started.elapsed());
    assert!(listed.reservations().is_empty());
    assert_eq!(sim.admin_get("/_sim/time").await, before, "the simulated clock did not move");
    sim.stop().await;
}

/// gpufleet's AWS provider returns from a create once its instances have
/// left `pending`, having let the simulator's clock move on while it asked.
#[tokio::test]
async fn aws_provider_create_returns_once_its_instances_run() {
    use gpufleet::model::{Cloud, Placement};
    use gpufleet::providers::aws::{AwsConnection, AwsProvider};
    use gpufleet::providers::{CreateRequest, Provider, WaitClock};
    let sim = TestSim::start(Some("[lifecycle]\nec2_pending = \"12s\"\n")).await;
    let connection = AwsConnection {
        endpoint: Some(sim.url.clone()),
        simulator_credentials: true,
        clock: WaitClock(std::sync::Arc::new(gpufleet::sim::SimClock { url: sim.url.clone() })),
        ..Default::default()
    };
    let aws = AwsProvider::connect(&["us-east-1".to_string()], &connection).await;
    let request = CreateRequest {
        plan: "training".into(),
        fleet: "llm".into(),
        run: "run-1".into(),
        placement: Placement {
            cloud: Cloud::Aws,
            region: "us-east-1".into(),
            zone: Some("us-east-1a".into()),
            instance_type: "p5.48xlarge".into(),
        },
        count: 2,
        min_count: 1,
        image: "ami-12345678".into(),
        user_data: None,
        labels: Default::default(),
        launch: gpufleet::model::Launch { disk_gb: 200, ..Default::default() },
        idempotency_token: "run-1-llm".into(),
    };
    let created = aws.create(&request).await.unwrap();
    assert_eq!(created.len(), 2);

    let time = sim.admin_get("/_sim/time").await;
    assert_eq!(time["now"], "2026-01-01T00:00:15Z", "three polls 5 s apart: pending at 5 s and 10 s, running at 15 s");
    let counters = sim.admin_get("/_sim/counters").await;
    assert_eq!(counters["aws"]["DescribeInstances"], 3);
    let ec2 = sim.client("us-east-1");
    let ids: Vec<String> = created.iter().map(|i| i.id.clone()).collect();
    let described = ec2.describe_instances().set_instance_ids(Some(ids)).send().await.unwrap();
    let states: Vec<_> = described
        .reservations()
        .iter()
        .flat_map(|r| r.instances())
        .map(|i| i.state().and_then(|s| s.name()).cloned())
        .collect();
    assert_eq!(states, vec![Some(InstanceStateName::Running); 2]);
    sim.stop().await;
}
