//! The simulator's Azure Resource Manager API driven by the real Rust SDK
//! (azure_mgmt_compute) and by gpufleet's Azure provider, over HTTP on a
//! loopback port: flexible scale sets are created, scaled, listed (paged),
//! shrunk with delete-instances, and run out of capacity.

mod common;

use azure_core::auth::{AccessToken, TokenCredential};
use azure_mgmt_compute::package_2024_07_01::{Client, ClientBuilder, models};
use chrono::{DateTime, Utc};
use common::InProcessSim;
use futures::StreamExt;
use gpufleet::model::Cloud;
use gpufleet::model::{Launch, Placement};
use gpufleet::providers::azure::{AzureConnection, AzureProvider, AzureVmSettings, scale_set_name};
use gpufleet::providers::{CreateRequest, ErrorKind, Provider, WaitClock};
use gpufleet::sim::SimClock;
use serde_json::{Value, json};
use std::sync::Arc;

const SUB: &str = "00000000-0000-0000-0000-000000000001";
const RG: &str = "gpu";
const H100: &str = "Standard_ND96isr_H100_v5";

/// eastus holds 3 H100 nodes; everything else the catalog sells is unlimited.
const THREE_H100_IN_EASTUS: &str = r#"
[[offering]]
cloud = "azure"
region = "eastus"
instance_type = "Standard_ND96isr_H100_v5"
capacity = 3
"#;

/// A dummy credential, as a test of an SDK against a fake endpoint uses.
#[derive(Debug)]
struct Dummy;

#[async_trait::async_trait]
impl TokenCredential for Dummy {
    async fn get_token(&self, _scopes: &[&str]) -> azure_core::Result<AccessToken> {
        Ok(AccessToken::new("dummy", azure_core::date::parse_rfc3339("2999-01-01T00:00:00Z")?))
    }

    async fn clear_cache(&self) -> azure_core::Result<()> {
        Ok(())
    }
}

fn sdk(sim: &InProcessSim) -> Client {
    ClientBuilder::new(Arc::new(Dummy))
        .endpoint(azure_core::Url::parse(&sim.url).unwrap())
        .retry(azure_core::RetryOptions::none())
        .build()
        .unwrap()
}

fn scale_set(size: &str, capacity: u64) -> models::VirtualMachineScaleSet {
    serde_json::from_value(json!({
        "location": "eastus",
        "tags": { "gpufleet-plan": "training" },
        "sku": { "name": size, "capacity": capacity },
        "properties": {
            "orchestrationMode": "Flexible",
            "platformFaultDomainCount": 1,
            "virtualMachineProfile": {
                "storageProfile": { "imageReference": {
                    "publisher": "microsoft-dsvm", "offer": "ubuntu-hpc", "sku": "2204", "version": "latest" } },
                "osProfile": { "computerNamePrefix": "gf", "adminUsername": "gf", "customData": "ZWNobyBoaQ==" },
                "networkProfile": {
                    "networkApiVersion": "2020-11-01",
                    "networkInterfaceConfigurations": [{ "name": "nic", "properties": {
                        "primary": true,
                        "ipConfigurations": [{ "name": "ip", "properties": {} }],
                    } }],
                },
            },
        },
    }))
    .unwrap()
}

async fn vm_names(client: &Client, set_id: &str) -> (Vec<String>, usize) {
    let mut pages = client
        .virtual_machines_client()
        .list(RG, SUB)
        .filter(format!("'virtualMachineScaleSet/id' eq '{set_id}'"))
        .into_stream();
    let (mut names, mut count) = (Vec::new(), 0);
    while let Some(page) = pages.next().await {
        count += 1;
        names.extend(page.unwrap().value.into_iter().map(|vm| vm.resource.name.unwrap()));
    }
    (names, count)
}

/// Polls an operation URL the way a client must: status until terminal,
/// letting the `Retry-After` it is given pass between polls, in the
/// simulator's time.
async fn poll(sim: &InProcessSim, url: &str) -> Vec<Value> {
    let client = reqwest::Client::new();
    let mut seen = Vec::new();
    for _ in 0..5 {
        let response = client.get(url).bearer_auth("dummy").send().await.unwrap();
        let retry_after = response.headers().get("retry-after").and_then(|v| v.to_str().ok()?.parse().ok());
        let body: Value = response.json().await.unwrap();
        let done = body["status"] != "InProgress";
        seen.push(body);
        if done {
            break;
        }
        let wait =
            std::time::Duration::from_secs(retry_after.expect("an operation in progress says when to ask again"));
        gpufleet::sim::sim_advance(&sim.url, wait).await.unwrap();
    }
    seen
}

/// The `Azure-AsyncOperation` URL of a change's response.
fn operation_of(response: &azure_core::Response) -> String {
    response.headers().get_optional_string(&azure_core::headers::AZURE_ASYNCOPERATION).unwrap()
}

#[tokio::test]
async fn azure_mgmt_compute_creates_scales_lists_and_deletes_a_flexible_scale_set() {
    // Pages of 20, so that the SDK follows `nextLink`.
    let sim = InProcessSim::start(Some("arm_page_size = 20\n")).await;
    let client = sdk(&sim);
    let sets = client.virtual_machine_scale_sets_client();

    // A change runs for the default lifecycle's 30 s of simulated time.
    let response = sets.create_or_update(RG, "gf-a", scale_set(H100, 2), SUB).send().await.unwrap();
    let polls = poll(&sim, &operation_of(response.as_raw_response())).await;
    let statuses: Vec<&str> = polls.iter().map(|p| p["status"].as_str().unwrap()).collect();
    assert_eq!(statuses, ["InProgress", "Succeeded"]);
    let created = sets.get(RG, "gf-a", SUB).await.unwrap();
    assert_eq!(created.sku.unwrap().capacity, Some(2));
    let properties = created.properties.unwrap();
    assert!(matches!(properties.orchestration_mode, Some(models::OrchestrationMode::Flexible)));
    let set_id = created.resource.id.unwrap();

    // Scaling out answers with an operation to follow.
    let patch: models::VirtualMachineScaleSetUpdate =
        serde_json::from_value(json!({ "sku": { "capacity": 25 } })).unwrap();
    let response = sets.update(RG, "gf-a", patch, SUB).send().await.unwrap();
    let polls = poll(&sim, &operation_of(response.as_raw_response())).await;
    let statuses: Vec<&str> = polls.iter().map(|p| p["status"].as_str().unwrap()).collect();
    assert_eq!(statuses, ["InProgress", "Succeeded"]);

    let (names, pages) = vm_names(&client, &set_id).await;
    assert_eq!(names.len(), 25);
    assert!(pages >= 2, "25 VMs over pages of at most 20, some short: {pages} pages");
    assert!(names.iter().all(|n| n.starts_with("gf-a_")), "{names:?}");
    let vm = client.virtual_machines_client().get(RG, &names[0], SUB).await.unwrap();
    let vm_properties = vm.properties.unwrap();
    assert_eq!(vm_properties.virtual_machine_scale_set.unwrap().id.as_deref(), Some(set_id.as_str()));
    assert!(vm_properties.time_created.is_some());

    let listed: Vec<String> = sets
        .list(RG, SUB)
        .into_stream()
        .next()
        .await
        .unwrap()
        .unwrap()
        .value
        .into_iter()
        .map(|s| s.resource.name.unwrap())
        .collect();
    assert_eq!(listed, ["gf-a"]);

    let doomed = names[..20].to_vec();
    let ids = models::VirtualMachineScaleSetVmInstanceRequiredIDs::new(doomed.clone());
    let response = sets.delete_instances(RG, "gf-a", ids, SUB).send().await.unwrap();
    assert_eq!(response.as_raw_response().status(), azure_core::StatusCode::Accepted);
    let (left, _) = vm_names(&client, &set_id).await;
    assert_eq!(left, names[20..].to_vec());
    let after = sets.get(RG, "gf-a", SUB).await.unwrap();
    assert_eq!(after.sku.unwrap().capacity, Some(5));

    let counters = sim.admin_get("/_sim/counters").await;
    assert_eq!(counters["azure"]["VirtualMachineScaleSets_DeleteInstances"], 1);
    let (_, pages_after) = vm_names(&client, &set_id).await;
    let counters_after = sim.admin_get("/_sim/counters").await;
    let lists = |counters: &Value| counters["azure"]["VirtualMachines_List"].as_u64().unwrap();
    assert_eq!(lists(&counters_after) - lists(&counters), pages_after as u64, "one call a page");
    sim.stop().await;
}

#[tokio::test]
async fn azure_mgmt_compute_follows_a_change_with_its_own_long_running_operation_loop() {
    // Operations that end at once: the SDK's loop sleeps in real time.
    let sim = InProcessSim::start(Some("[lifecycle]\nazure_operation = \"0s\"\n")).await;
    let sets = sdk(&sim).virtual_machine_scale_sets_client();
    let created = sets.create_or_update(RG, "gf-a", scale_set(H100, 2), SUB).await.unwrap();
    assert_eq!(created.sku.unwrap().capacity, Some(2));
    assert_eq!(created.properties.unwrap().provisioning_state.as_deref(), Some("Succeeded"));
    sim.stop().await;
}

#[tokio::test]
async fn azure_mgmt_compute_sees_allocation_failed_and_sku_not_available() {
    let sim = InProcessSim::start(Some(THREE_H100_IN_EASTUS)).await;
    let client = sdk(&sim);
    let sets = client.virtual_machine_scale_sets_client();

    let response = sets.create_or_update(RG, "gf-short", scale_set(H100, 5), SUB).send().await.unwrap();
    assert_eq!(response.as_raw_response().status(), azure_core::StatusCode::Created);
    let last = poll(&sim, &operation_of(response.as_raw_response())).await.pop().unwrap();
    assert_eq!(last["status"], "Failed");
    assert_eq!(last["error"]["code"], "AllocationFailed");
    let set = sets.get(RG, "gf-short", SUB).await.unwrap();
    assert_eq!(set.properties.unwrap().provisioning_state.as_deref(), Some("Failed"));
    let (names, _) = vm_names(&client, &set.resource.id.unwrap()).await;
    assert_eq!(names.len(), 3, "what was there was allocated");

    let error =
        sets.create_or_update(RG, "gf-h200", scale_set("Standard_ND96isr_H200_v5", 1), SUB).send().await.unwrap_err();
    match error.kind() {
        azure_core::error::ErrorKind::HttpResponse { status, error_code } => {
            assert_eq!((u16::from(*status), error_code.as_deref()), (409, Some("SkuNotAvailable")));
        }
        other => panic!("expected an HTTP error, got {other:?}"),
    }
    sim.stop().await;
}

fn request(plan: &str, fleet: &str, run: &str, instance_type: &str, count: u32) -> CreateRequest {
    CreateRequest {
        plan: plan.into(),
        fleet: fleet.into(),
        run: run.into(),
        placement: Placement {
            cloud: Cloud::Azure,
            region: "eastus".into(),
            zone: None,
            instance_type: instance_type.into(),
        },
        count,
        min_count: 1,
        image: "microsoft-dsvm:ubuntu-hpc:2204:latest".into(),
        user_data: Some("#!/bin/sh\necho hi\n".into()),
        labels: [("team".to_string(), "ml".to_string())].into(),
        launch: Launch { disk_gb: 200, ..Launch::default() },
        idempotency_token: format!("{run}-{fleet}"),
    }
}

async fn provider(sim: &InProcessSim) -> AzureProvider {
    let connection = AzureConnection {
        endpoint: Some(sim.url.clone()),
        simulator_credentials: true,
        // Polls wait in the simulator's time, which then moves on.
        clock: WaitClock(Arc::new(SimClock { url: sim.url.clone() })),
        ..Default::default()
    };
    let vm = AzureVmSettings {
        subnet: None,
        admin_username: "gpufleet".into(),
        ssh_public_key: "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGpufleetTestKeyOnlyForTheSimulator test".into(),
    };
    AzureProvider::connect(SUB, RG, &["eastus".to_string()], &connection, &vm).await.unwrap()
}

#[tokio::test]
async fn azure_provider_creates_lists_and_deletes_round_trip() {
    let sim = InProcessSim::start(None).await;
    let azure = provider(&sim).await;
    let nc = "Standard_NC24ads_A100_v4";

    let first = azure.create(&request("training", "llm", "run-1", nc, 3)).await.unwrap();
    assert_eq!(first.len(), 3);
    let start: DateTime<Utc> = "2026-01-01T00:00:00Z".parse().unwrap();
    for instance in &first {
        assert_eq!(
            (instance.cloud, instance.region.as_str(), instance.zone.as_deref()),
            (Cloud::Azure, "eastus", None)
        );
        assert_eq!((instance.instance_type.as_str(), instance.fleet.as_str()), (nc, "llm"));
        assert_eq!((instance.run.as_str(), instance.launched_at), ("run-1", start));
    }
    // Per create of a new scale set: GET (404), PUT, two polls, one VM list.
    let counters = sim.admin_get("/_sim/counters").await;
    assert_eq!(
        counters["azure"],
        json!({
            "VirtualMachineScaleSets_Get": 1,
            "VirtualMachineScaleSets_CreateOrUpdate": 1,
            "Operations_Get": 2,
            "VirtualMachines_List": 1,
        })
    );

    // A second create at the same placement scales the same set out by 2.
    let second = azure.create(&request("training", "llm", "run-2", nc, 2)).await.unwrap();
    assert_eq!(second.len(), 2);
    assert!(second.iter().all(|i| !first.contains(i) && i.run == "run-2"));
    let set = scale_set_name("training", "llm", "eastus", nc, 1);
    assert!(second.iter().all(|i| i.id.starts_with(&format!("{set}_"))));
    azure.create(&request("other-plan", "llm", "run-3", nc, 1)).await.unwrap();

    let owned = azure.list_owned("training").await.unwrap();
    assert_eq!(owned.len(), 5, "{owned:?}");
    assert!(owned.iter().all(|i| i.fleet == "llm"));

    let doomed = vec![first[0].clone(), second[1].clone()];
    azure.delete(&doomed).await.unwrap();
    // Deleting what is already gone (and more) succeeds.
    azure.delete(&[doomed[0].clone(), first[1].clone()]).await.unwrap();
    let left = azure.list_owned("training").await.unwrap();
    let mut expected = [first[2].clone(), second[0].clone()];
    expected.sort();
    assert_eq!(left.iter().map(|i| &i.id).collect::<Vec<_>>(), expected.iter().map(|i| &i.id).collect::<Vec<_>>());
    assert_eq!(azure.list_owned("other-plan").await.unwrap().len(), 1);
    sim.stop().await;
}

#[tokio::test]
async fn azure_provider_sends_the_fleets_disk_key_and_identity_with_the_scale_set() {
    let identity = format!(
        "/subscriptions/{SUB}/resourceGroups/{RG}/providers/Microsoft.ManagedIdentity/userAssignedIdentities/node"
    );
    let sim = InProcessSim::start(Some(&format!("[networks]\nazure_identities = [\"{RG}/node\"]\n"))).await;
    let azure = provider(&sim).await;
    let nc = "Standard_NC24ads_A100_v4";
    let key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFleetKeyOverridesTheProviders ops@example";
    let launch =
        Launch { disk_gb: 512, ssh_key: Some(key.into()), identity: Some(identity.clone()), ..Launch::default() };
    let created = azure
        .create(&CreateRequest { launch: launch.clone(), ..request("training", "llm", "run-1", nc, 1) })
        .await
        .unwrap();
    assert_eq!(created.len(), 1);
    let set = sdk(&sim)
        .virtual_machine_scale_sets_client()
        .get(RG, scale_set_name("training", "llm", "eastus", nc, 1), SUB)
        .await
        .unwrap();
    let profile = set.properties.unwrap().virtual_machine_profile.unwrap();
    assert_eq!(profile.storage_profile.unwrap().os_disk.unwrap().disk_size_gb, Some(512));
    let ssh = profile.os_profile.unwrap().linux_configuration.unwrap().ssh.unwrap();
    assert_eq!(ssh.public_keys[0].key_data.as_deref(), Some(key), "the fleet's key, not the provider's");

    // An identity the subscription does not have is refused by ARM, so it was sent.
    let missing = Launch { identity: Some(identity.replace("/node", "/other")), ..launch };
    let refused = azure
        .create(&CreateRequest { launch: missing, ..request("training", "other", "run-2", nc, 1) })
        .await
        .unwrap_err();
    assert_eq!((refused.kind, refused.code.as_str()), (ErrorKind::Invalid, "FailedIdentityOperation"));
    sim.stop().await;
}

#[tokio::test]
async fn azure_provider_spills_into_a_second_scale_set_past_a_thousand_vms() {
    let sim = InProcessSim::start(None).await;
    let azure = provider(&sim).await;
    let nc = "Standard_NC24ads_A100_v4";
    let first = azure.create(&request("training", "llm", "run-1", nc, 900)).await.unwrap();
    let second = azure.create(&request("training", "llm", "run-2", nc, 1000)).await.unwrap();
    assert_eq!((first.len(), second.len()), (900, 1000));

    let in_set = |n: u32| {
        let prefix = format!("{}_", scale_set_name("training", "llm", "eastus", nc, n));
        move |i: &&gpufleet::model::Instance| i.id.starts_with(&prefix)
    };
    assert_eq!(second.iter().filter(in_set(1)).count(), 100, "the first set filled up to 1,000");
    assert_eq!(second.iter().filter(in_set(2)).count(), 900, "the rest went to a second set");
    let owned = azure.list_owned("training").await.unwrap();
    assert_eq!(owned.len(), 1900);

    // One delete spanning both sets empties what it names in each.
    let doomed: Vec<_> =
        second.iter().filter(in_set(1)).chain(second.iter().filter(in_set(2)).take(5)).cloned().collect();
    azure.delete(&doomed).await.unwrap();
    assert_eq!(azure.list_owned("training").await.unwrap().len(), 1900 - 105);
    sim.stop().await;
}

/// A location's total regional vCPUs (`cores` in `usages`) bind every
/// family: with room for 10 H100 VMs in the family and 1 in the region,
/// one is what a create may have, and the second is refused as quota.
#[tokio::test]
async fn azure_provider_headroom_is_also_bound_by_the_total_regional_vcpus() {
    let quota = |metric: &str, limit: u32| {
        format!("[[quota]]\ncloud = \"azure\"\nregion = \"eastus\"\nmetric = \"{metric}\"\nlimit = {limit}\n")
    };
    let sim = InProcessSim::start(Some(&(quota("standardNDSH100v5Family", 960) + &quota("cores", 100)))).await;
    let azure = provider(&sim).await;
    let at = Placement { cloud: Cloud::Azure, region: "eastus".into(), zone: None, instance_type: H100.into() };
    assert_eq!(azure.quota_headroom(&at, "H100", 8).await.unwrap(), Some(1), "100 regional vCPUs hold one VM of 96");
    azure.create(&request("training", "llm", "run-1", H100, 1)).await.unwrap();
    assert_eq!(azure.quota_headroom(&at, "H100", 8).await.unwrap(), Some(0));
    let refused = azure.create(&request("training", "llm", "run-2", H100, 1)).await.unwrap_err();
    assert_eq!((refused.kind, refused.code.as_str()), (ErrorKind::Quota, "OperationNotAllowed"));
    assert!(refused.message.contains("Total Regional Cores quota"), "{}", refused.message);
    sim.stop().await;
}

#[tokio::test]
async fn azure_provider_reports_partial_fills_and_classifies_capacity_errors() {
    let sim = InProcessSim::start(Some(THREE_H100_IN_EASTUS)).await;
    let azure = provider(&sim).await;

    let partial = azure.create(&request("training", "llm", "run-1", H100, 5)).await.unwrap();
    assert_eq!(partial.len(), 3, "the three that could be allocated");

    let none_left = azure.create(&request("training", "llm", "run-2", H100, 1)).await.unwrap_err();
    assert_eq!((none_left.kind, none_left.code.as_str()), (ErrorKind::Capacity, "AllocationFailed"));
    assert_eq!(none_left.region, "eastus");

    let not_sold = azure.create(&request("training", "llm", "run-3", "Standard_ND96isr_H200_v5", 1)).await.unwrap_err();
    assert_eq!((not_sold.kind, not_sold.code.as_str()), (ErrorKind::Capacity, "SkuNotAvailable"));

    let bad_image = CreateRequest { image: "ami-12345678".into(), ..request("training", "x", "run-4", H100, 1) };
    assert_eq!(azure.create(&bad_image).await.unwrap_err().kind, ErrorKind::Invalid);

    // Capacity comes back: the same scale set fills up again.
    azure.delete(&partial[..2]).await.unwrap();
    let refill = azure.create(&request("training", "llm", "run-5", H100, 2)).await.unwrap();
    assert_eq!(refill.len(), 2);
    assert_eq!(azure.list_owned("training").await.unwrap().len(), 3);
    sim.stop().await;
}

#[tokio::test]
async fn azure_provider_reads_family_quota_headroom_from_usages_and_classifies_quota_refusals() {
    let quota =
        "[[quota]]\ncloud = \"azure\"\nregion = \"eastus\"\nmetric = \"standardNDSH100v5Family\"\nlimit = 192\n";
    let sim = InProcessSim::start(Some(quota)).await;
    let azure = provider(&sim).await;
    let at =
        |size: &str| Placement { cloud: Cloud::Azure, region: "eastus".into(), zone: None, instance_type: size.into() };

    let room = azure.quota_headroom(&at(H100), "H100", 8).await.unwrap();
    assert_eq!(room, Some(2), "192 vCPUs hold two 96-vCPU VMs");
    assert_eq!(azure.quota_headroom(&at("Standard_NC24ads_A100_v4"), "A100-80GB", 1).await.unwrap(), None);
    assert_eq!(azure.quota_headroom(&at("Standard_D2s_v5"), "none", 0).await.unwrap(), None, "unknown size");
    azure.create(&request("training", "llm", "run-1", H100, 1)).await.unwrap();
    assert_eq!(azure.quota_headroom(&at(H100), "H100", 8).await.unwrap(), Some(1));

    let refused = azure.create(&request("training", "llm", "run-2", H100, 2)).await.unwrap_err();
    // The scale-out of the existing scale set beyond the family quota: the
    // simulator's refusal, as ARM words it, is a quota to the client.
    assert_eq!((refused.kind, refused.code.as_str()), (ErrorKind::Quota, "OperationNotAllowed"));
    assert!(refused.message.contains("standardNDSH100v5Family Cores quota"), "{}", refused.message);
    assert!(
        refused.message.contains("Current Limit: 192, Current Usage: 96, Additional Required: 192"),
        "{}",
        refused.message
    );
    assert_eq!(azure.list_owned("training").await.unwrap().len(), 1, "the refused scale-out created nothing");
    let counters = sim.admin_get("/_sim/counters").await;
    assert_eq!(counters["azure"]["Usage_List"], 3, "an unknown size asks nothing");
    assert_eq!(counters["azure"]["VirtualMachineScaleSets_Update"], 1, "a quota refusal is not retried");
    sim.stop().await;
}
