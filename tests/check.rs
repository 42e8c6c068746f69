//! `gpufleet check` through the binary against a simulated new account
//! (plans/scenarios/new-account.toml): every problem listed with its code and
//! fix, no mutating call and no state written; granting quota in the scenario
//! turns the verdict; and apply's EC2 quota pre-check cuts a create to the
//! headroom and spends no call where there is none.

mod common;

use common::{Admin, SimServer, run, stdout};
use serde_json::Value;
use std::path::{Path, PathBuf};

const PLAN: &str = "plans/first-apply.toml";

fn new_account() -> String {
    std::fs::read_to_string(common::repo().join("plans/scenarios/new-account.toml")).unwrap()
}

/// The new account with one quota block's `limit = 0` set to `limit`.
fn granting(scenario: &str, cloud: &str, region: &str, metric: &str, limit: u32) -> String {
    let block = format!("cloud = \"{cloud}\"\nregion = \"{region}\"\nmetric = \"{metric}\"\nlimit = 0\n");
    assert!(scenario.contains(&block), "new-account.toml has no {cloud} {region} {metric} quota of 0");
    scenario.replace(&block, &block.replace("limit = 0", &format!("limit = {limit}")))
}

/// The new account with room for two p5.48xlarge in us-east-1 (384 vCPUs)
/// and `gpus` H100 GPUs in us-central1.
fn two_in_aws_and_gce_gpus(gpus: u32) -> String {
    let aws = granting(&new_account(), "aws", "us-east-1", "L-417A185B", 384);
    let regional = granting(&aws, "gcp", "us-central1", "NVIDIA_H100_GPUS", gpus);
    granting(&regional, "gcp", "global", "GPUS_ALL_REGIONS", gpus)
}

fn write_scenario(dir: &Path, text: &str) -> PathBuf {
    let path = dir.join("scenario.toml");
    std::fs::write(&path, text).unwrap();
    path
}

fn count(counters: &Value, cloud: &str, call: &str) -> u64 {
    counters[cloud][call].as_u64().unwrap_or(0)
}

#[test]
fn check_on_a_new_account_lists_every_problem_with_its_fix_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let scenario = write_scenario(dir.path(), &new_account());
    let server = SimServer::start(&["--scenario", scenario.to_str().unwrap()]);
    let state = dir.path().join("state");
    let out = run(&["check", PLAN, "--sim-url", &server.url, "--state-dir", state.to_str().unwrap()], 1);
    let text = stdout(&out);
    for expected in [
        "VcpuLimitExceeded",
        "request a quota increase for L-417A185B in us-east-1: need 768 vCPUs, have 0",
        "QUOTA_EXCEEDED",
        "request a quota increase for NVIDIA_H100_GPUS in us-central1: need 32 GPUs, have 0",
        "request a quota increase for standardNDSH100v5Family in eastus: need 384 vCPUs, have 0",
        "InvalidAMIID.NotFound: image ami-0123456789abcdef0 does not exist in us-west-2",
        "virtualNetworks/gpufleet-eastus/subnets/default not found",
        "can reach 0 of 4 node(s), fewer than min_nodes (2)",
    ] {
        assert!(text.contains(expected), "missing {expected:?} in:\n{text}");
    }
    insta::assert_snapshot!(text);

    let counters = Admin::new(&server.url).get("/_sim/counters");
    for (cloud, call) in common::MUTATING {
        assert_eq!(count(&counters, cloud, call), 0, "check made {cloud} {call}: {counters}");
    }
    for (cloud, call) in [
        ("aws", "DescribeInstanceTypeOfferings"),
        ("aws", "DescribeImages"),
        ("aws", "DescribeSubnets"),
        ("aws", "GetServiceQuota"),
        ("gcp", "machineTypes.get"),
        ("gcp", "images.getFromFamily"),
        ("gcp", "networks.get"),
        ("gcp", "regions.get"),
        ("azure", "ResourceSkus_List"),
        ("azure", "VirtualMachineImages_List"),
        ("azure", "ResourceGroups_Get"),
        ("azure", "Subnets_Get"),
        ("azure", "Usage_List"),
    ] {
        assert!(count(&counters, cloud, call) > 0, "check never asked {cloud} {call}: {counters}");
    }
    let written: Vec<_> =
        std::fs::read_dir(&state).map(|d| d.flatten().map(|e| e.file_name()).collect()).unwrap_or_default();
    assert!(written.is_empty(), "check wrote no state, no lock and no journal: {written:?}");
}

#[test]
fn granting_quota_in_the_scenario_turns_the_verdict_and_the_exit_code() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let check = |scenario: &str, expect: i32| {
        let path = write_scenario(dir.path(), scenario);
        let args = ["check", PLAN, "--sim", path.to_str().unwrap(), "--state-dir", state.to_str().unwrap()];
        stdout(&run(&args, expect))
    };
    // 384 vCPUs: two p5.48xlarge of 192, at least min_nodes but not nodes.
    let two = check(&granting(&new_account(), "aws", "us-east-1", "L-417A185B", 384), 2);
    assert!(two.contains("can reach 2 of 4 node(s): min_nodes (2) but not nodes"), "{two}");
    let four = check(&granting(&new_account(), "aws", "us-east-1", "L-417A185B", 768), 0);
    assert!(four.contains("✓ can reach all 4 node(s)") && four.contains("Every fleet can reach its nodes."), "{four}");
    // Two nodes in AWS and two on Compute Engine (16 GPUs) reach all four too.
    check(&two_in_aws_and_gce_gpus(16), 0);
}

#[test]
fn check_json_names_every_finding_with_its_status_and_the_readiness() {
    let dir = tempfile::tempdir().unwrap();
    let scenario = write_scenario(dir.path(), &granting(&new_account(), "aws", "us-east-1", "L-417A185B", 384));
    let state = dir.path().join("state");
    let out =
        run(&["check", PLAN, "--json", "--sim", scenario.to_str().unwrap(), "--state-dir", state.to_str().unwrap()], 2);
    let report: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(report["plan"], "first-apply");
    assert_eq!(report["readiness"], "min_nodes_only");
    let clouds: Vec<&str> = report["clouds"].as_array().unwrap().iter().map(|c| c["cloud"].as_str().unwrap()).collect();
    assert_eq!(clouds, ["aws", "gcp", "azure"]);
    assert!(report["clouds"].as_array().unwrap().iter().all(|c| c["problem"].is_null()));
    let fleet = &report["fleets"][0];
    assert_eq!((fleet["fleet"].as_str(), fleet["reachable"].as_u64()), (Some("trainers"), Some(2)));
    assert_eq!((fleet["nodes"].as_u64(), fleet["min_nodes"].as_u64()), (Some(4), Some(2)));
    let offerings = fleet["offerings"].as_array().unwrap();
    let east = &offerings[0];
    assert_eq!(east["placement"]["region"], "us-east-1");
    for check in ["offered", "image", "network"] {
        assert_eq!(east["findings"][check]["status"], "pass", "{check}: {east}");
    }
    let quota = &east["findings"]["quota"];
    assert_eq!((quota["status"].as_str(), quota["headroom_nodes"].as_u64()), (Some("fail"), Some(2)), "{quota}");
    assert_eq!(quota["fix"], "request a quota increase for L-417A185B in us-east-1: need 768 vCPUs, have 384");
    assert_eq!(east["findings"]["quota"]["key"], "aws default us-east-1 L-417A185B");
    let west = offerings.iter().find(|o| o["placement"]["region"] == "us-west-2").unwrap();
    let image = &west["findings"]["image"];
    assert_eq!((image["status"].as_str(), image["code"].as_str()), (Some("fail"), Some("InvalidAMIID.NotFound")));
    assert!(image["fix"].as_str().unwrap().contains("aws ec2 copy-image"), "{image}");
    let azure = offerings.iter().find(|o| o["placement"]["cloud"] == "azure").unwrap();
    assert_eq!(azure["findings"]["network"]["code"], "NotFound");
}

#[test]
fn apply_with_ec2_quota_for_two_nodes_makes_one_run_instances_of_two_and_places_the_rest_elsewhere() {
    let dir = tempfile::tempdir().unwrap();
    let scenario = write_scenario(dir.path(), &two_in_aws_and_gce_gpus(32));
    let server = SimServer::start(&["--scenario", scenario.to_str().unwrap()]);
    let state = dir.path().join("state");
    let state = state.to_str().unwrap();
    run(&["apply", PLAN, "--sim-url", &server.url, "--auto-approve", "--state-dir", state], 0);

    let admin = Admin::new(&server.url);
    let counters = admin.get("/_sim/counters");
    assert_eq!(count(&counters, "aws", "RunInstances"), 1, "{counters}");
    assert_eq!(count(&counters, "gcp", "instances.bulkInsert"), 1, "{counters}");
    assert_eq!(count(&counters, "azure", "VirtualMachineScaleSets_CreateOrUpdate"), 0, "{counters}");
    let world = admin.get("/_sim/world");
    let aws: Vec<&Value> = world["instances"].as_array().unwrap().iter().filter(|i| i["state"] == "running").collect();
    assert_eq!(aws.len(), 2, "one RunInstances of 2: {aws:?}");
    assert!(aws.iter().all(|i| i["region"] == "us-east-1"));
    assert_eq!(world["gce_instances"].as_array().unwrap().len(), 2, "the rest on Compute Engine");
    assert_eq!(common::state_ids(Path::new(state))["trainers"].len(), 4);
}

#[test]
fn a_cloud_that_cannot_be_reached_is_one_row_and_its_offerings_are_not_asked() {
    // A port that was free a moment ago: every connection is refused.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let url = format!("http://{closed}");
    let state = dir.path().join("state");
    let out = common::command(&["check", PLAN, "--sim-url", &url, "--state-dir", state.to_str().unwrap()])
        .env("GPUFLEET_RETRY_BASE_MS", "0")
        .output()
        .unwrap();
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(1), "{text}\n{}", common::stderr(&out));
    for cloud in ["aws", "gcp", "azure"] {
        let row = text.lines().find(|l| l.starts_with(&format!("  ✗ {cloud} "))).unwrap_or_else(|| panic!("{text}"));
        assert!(row.len() < 300, "one short row, not a dump: {row}");
        assert!(text.contains(&format!("(not asked: {cloud} could not be reached)")), "{text}");
    }
    assert!(text.contains("can reach 0 of 4 node(s)"), "{text}");
}

#[test]
fn credentials_that_cannot_be_loaded_are_one_row_not_the_end_of_the_check() {
    let dir = tempfile::tempdir().unwrap();
    let plan = dir.path().join("gcp-only.toml");
    std::fs::write(
        &plan,
        r#"
name = "gcp-only"
[providers.gcp]
project = "ml-research"
zones = ["us-central1-a"]
[fleets.trainers]
gpu = "H100"
gpus_per_node = 8
nodes = 2
image = { gcp = "projects/ml-research/global/images/family/trainer" }
"#,
    )
    .unwrap();
    let missing = dir.path().join("no-such-key.json");
    let state = dir.path().join("state");
    // Application Default Credentials fail before any call: nothing reaches a network.
    let out = common::command(&["check", plan.to_str().unwrap(), "--state-dir", state.to_str().unwrap()])
        .env("GOOGLE_APPLICATION_CREDENTIALS", &missing)
        .output()
        .unwrap();
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(1), "{text}\n{}", common::stderr(&out));
    let row =
        text.lines().find(|l| l.starts_with("  ✗ gcp    CredentialsNotFound: ")).unwrap_or_else(|| panic!("{text}"));
    assert!(row.contains("GOOGLE_APPLICATION_CREDENTIALS"), "{row}");
    assert!(text.contains("(not asked: gcp could not be reached)"), "{text}");
}

/// A plan of the first apply that names its own subnet, security group, key
/// pair and instance profile, none of which the new account has yet.
const PLAN_WITH_OWN_NETWORK: &str = r#"
name = "first-apply"

[providers.aws]
regions = ["us-east-1"]
subnets = { "us-east-1a" = "subnet-0aaaaaaaaaaaaaaaa" }

[fleets.trainers]
gpu = "H100"
gpus_per_node = 8
nodes = 2
image = { aws = "ami-0123456789abcdef0" }
ssh_key = { aws = "ops" }
"#;

#[test]
fn check_lists_a_missing_subnet_and_key_pair_with_their_codes_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let scenario = write_scenario(dir.path(), &granting(&new_account(), "aws", "us-east-1", "L-417A185B", 768));
    let plan = dir.path().join("plan.toml");
    std::fs::write(&plan, PLAN_WITH_OWN_NETWORK).unwrap();
    let server = SimServer::start(&["--scenario", scenario.to_str().unwrap()]);
    let state = dir.path().join("state");
    let out =
        run(&["check", plan.to_str().unwrap(), "--sim-url", &server.url, "--state-dir", state.to_str().unwrap()], 1);
    let text = stdout(&out);
    for expected in [
        "✗ network, aws p5.48xlarge in us-east-1a:",
        "InvalidSubnetID.NotFound: The subnet ID 'subnet-0aaaaaaaaaaaaaaaa' does not exist",
        "InvalidKeyPair.NotFound: The key pair 'ops' does not exist",
        "aws ec2 import-key-pair --region us-east-1 --key-name ops",
    ] {
        assert!(text.contains(expected), "missing {expected:?} in:\n{text}");
    }
    // The other zones launch into the default VPC, which the new account has,
    // but every zone lacks the key pair: no node can start.
    assert!(text.contains("can reach 0 of 2 node(s)"), "{text}");
    let counters = Admin::new(&server.url).get("/_sim/counters");
    for (cloud, call) in common::MUTATING {
        assert_eq!(count(&counters, cloud, call), 0, "check made {cloud} {call}: {counters}");
    }
    assert!(count(&counters, "aws", "DescribeKeyPairs") > 0, "{counters}");
}

/// Every cloud of the first apply, with the plan's own network, identity,
/// key and boot disk on each.
const PLAN_WITH_EVERYTHING: &str = r#"
name = "first-apply"

[providers.aws]
regions = ["us-east-1"]
subnets = { "us-east-1a" = "subnet-0aaaaaaaaaaaaaaaa" }
security_groups = { "us-east-1" = ["sg-0aaaaaaaaaaaaaaaa"] }

[providers.gcp]
project = "ml-research"
zones = ["us-central1-a"]
network = "gpu"
subnetworks = { "us-central1" = "gpu-us-central1" }

[providers.azure]
subscription = "00000000-0000-0000-0000-000000000000"
resource_group = "gpufleet"
regions = ["eastus"]
subnet = "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/gpufleet/providers/Microsoft.Network/virtualNetworks/gpu/subnets/nodes"
ssh_public_key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFirstApplyExampleKeyReplaceWithYours ops@example"

[fleets.trainers]
gpu = "H100"
gpus_per_node = 8
nodes = 3
placement = "spread"
spread_by = "cloud"
prefer = ["aws:us-east-1a"]
disk_gb = 300
image = { aws = "ami-0123456789abcdef0", gcp = "projects/ml-research/global/images/family/trainer", azure = "Canonical:0001-com-ubuntu-server-jammy:22_04-lts-gen2:latest" }
identity = { aws = "gpu-node", gcp = "gpu-node@ml-research.iam.gserviceaccount.com", azure = "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/gpufleet/providers/Microsoft.ManagedIdentity/userAssignedIdentities/gpu-node" }
ssh_key = { aws = "ops", gcp = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGcpKeyExampleReplaceWithYours ops@example" }
"#;

/// The new account with quota for one node on each cloud and the plan's own
/// network, identities and key pair.
fn account_with_everything(missing: &str) -> String {
    let mut scenario = granting(&new_account(), "aws", "us-east-1", "L-417A185B", 192);
    scenario = granting(&scenario, "gcp", "us-central1", "NVIDIA_H100_GPUS", 8);
    scenario = granting(&scenario, "gcp", "global", "GPUS_ALL_REGIONS", 8);
    scenario = granting(&scenario, "azure", "eastus", "standardNDSH100v5Family", 96);
    for (empty, named) in [
        (
            "aws_subnets = []",
            r#"aws_subnets = [{ id = "subnet-0aaaaaaaaaaaaaaaa", zone = "us-east-1a", vpc = "vpc-0aaaaaaaaaaaaaaaa" }]"#,
        ),
        (
            "aws_security_groups = []",
            r#"aws_security_groups = [{ id = "sg-0aaaaaaaaaaaaaaaa", region = "us-east-1", vpc = "vpc-0aaaaaaaaaaaaaaaa" }]"#,
        ),
        ("aws_key_pairs = []", r#"aws_key_pairs = ["us-east-1/ops"]"#),
        ("aws_instance_profiles = []", r#"aws_instance_profiles = ["gpu-node"]"#),
        ("gcp_networks = [\"default\"]", r#"gcp_networks = ["default", "gpu"]"#),
        ("gcp_subnetworks = []", r#"gcp_subnetworks = ["us-central1/gpu-us-central1"]"#),
        ("gcp_service_accounts = []", r#"gcp_service_accounts = ["gpu-node@ml-research.iam.gserviceaccount.com"]"#),
        ("azure_subnets = []", r#"azure_subnets = ["gpufleet/gpu/nodes"]"#),
        ("azure_identities = []", r#"azure_identities = ["gpufleet/gpu-node"]"#),
    ] {
        assert!(scenario.contains(empty), "new-account.toml has no `{empty}`");
        if !named.contains(missing) {
            scenario = scenario.replace(empty, named);
        }
    }
    scenario
}

#[test]
fn apply_launches_each_cloud_with_the_plans_network_identity_key_and_disk() {
    let dir = tempfile::tempdir().unwrap();
    let plan = dir.path().join("plan.toml");
    std::fs::write(&plan, PLAN_WITH_EVERYTHING).unwrap();
    let plan = plan.to_str().unwrap();
    let scenario = write_scenario(dir.path(), &account_with_everything("nothing is missing"));
    let server = SimServer::start(&["--scenario", scenario.to_str().unwrap()]);
    let state = dir.path().join("state");
    let state = state.to_str().unwrap();
    let check = run(&["check", plan, "--sim-url", &server.url, "--state-dir", state], 0);
    assert!(stdout(&check).contains("can reach all 3 node(s)"), "{}", stdout(&check));
    run(&["apply", plan, "--sim-url", &server.url, "--auto-approve", "--state-dir", state], 0);

    let world = Admin::new(&server.url).get("/_sim/world");
    let ec2 = &world["instances"][0];
    assert_eq!(ec2["zone"], "us-east-1a", "{ec2}");
    let attach = &ec2["attach"];
    assert_eq!(attach["subnet_id"], "subnet-0aaaaaaaaaaaaaaaa", "{ec2}");
    assert_eq!(attach["security_group_ids"], serde_json::json!(["sg-0aaaaaaaaaaaaaaaa"]));
    assert_eq!(
        (attach["key_name"].as_str(), attach["instance_profile_name"].as_str()),
        (Some("ops"), Some("gpu-node"))
    );
    assert_eq!(attach["block_devices"][0]["device_name"], "/dev/sda1", "the AMI's root device");
    assert_eq!(attach["block_devices"][0]["volume_size_gb"], 300);

    let spec = &world["gce_instances"][0]["spec"];
    assert_eq!(spec["networks"][0]["network"], "global/networks/gpu", "{spec}");
    assert_eq!(spec["networks"][0]["subnetwork"], "regions/us-central1/subnetworks/gpu-us-central1");
    assert_eq!(spec["service_accounts"][0]["email"], "gpu-node@ml-research.iam.gserviceaccount.com");
    assert_eq!(
        spec["service_accounts"][0]["scopes"],
        serde_json::json!(["https://www.googleapis.com/auth/cloud-platform"])
    );
    assert_eq!(spec["disk_size_gb"], 300);
    assert!(spec["metadata"]["ssh-keys"].as_str().is_some_and(|k| k.starts_with("gpufleet:ssh-ed25519 ")), "{spec}");

    assert_eq!(
        world["azure_vms"].as_array().map(Vec::len),
        Some(1),
        "the managed identity exists, so the scale set was made"
    );
    assert_eq!(common::state_ids(Path::new(state))["trainers"].len(), 3);
}

#[test]
fn apply_against_an_account_without_the_plans_identity_is_refused_in_each_clouds_words() {
    for (missing, code) in [
        ("disk_gb = 50", "InvalidBlockDeviceMapping"),
        ("ops", "InvalidKeyPair.NotFound"),
        ("[\"gpu-node\"]", "InvalidParameterValue"),
        ("sg-0aaa", "InvalidGroup.NotFound"),
        ("gpu-us-central1", "notFound"),
        ("iam.gserviceaccount.com", "invalid"),
        ("gpufleet/gpu-node", "FailedIdentityOperation"),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let plan = dir.path().join("plan.toml");
        // The AMI of the new account is 100 GB.
        let disk = if missing.starts_with("disk_gb") { missing } else { "disk_gb = 300" };
        std::fs::write(&plan, PLAN_WITH_EVERYTHING.replace("disk_gb = 300", disk)).unwrap();
        let scenario = write_scenario(dir.path(), &account_with_everything(missing));
        let state = dir.path().join("state");
        let args = ["apply", plan.to_str().unwrap(), "--sim", scenario.to_str().unwrap(), "--auto-approve"];
        let out = run(&[&args[..], &["--state-dir", state.to_str().unwrap()]].concat(), 1);
        let text = format!("{}{}", stdout(&out), common::stderr(&out));
        assert!(text.contains(code), "without {missing}: no {code} in\n{text}");
    }
}
