//! Never forget a running node: instances in an account scope the plan left
//! (a provider section removed, a project or resource group changed) are
//! shown as deletions, counted in the cost, and deleted by apply; when their
//! scope cannot be reached, plan and apply fail and the state keeps them.

mod common;

use common::{SimServer, run, stderr, stdout, world_ids};
use serde_json::Value;
use std::path::Path;
use std::process::{Command, Output, Stdio};

const AWS: &str = r#"
[providers.aws]
regions = ["us-east-1"]
"#;

const AZURE: &str = r#"
[providers.azure]
subscription = "00000000-0000-0000-0000-000000000000"
resource_group = "RESOURCE_GROUP"
regions = ["eastus"]
ssh_public_key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIScopesTestKey ops@example"
"#;

const GCP: &str = r#"
[providers.gcp]
project = "PROJECT"
zones = ["us-central1-a"]
"#;

/// Two H100 trainers preferring one cloud; the other offerings follow by price.
const TRAINERS: &str = r#"
[fleets.trainers]
gpu = "H100"
gpus_per_node = 8
nodes = 2
prefer = ["PREFERRED"]
image = { aws = "ami-0123456789abcdef0", gcp = "projects/ml-images/global/images/family/trainer", azure = "Canonical:0001-com-ubuntu-server-jammy:22_04-lts-gen2:latest" }
"#;

/// A plan named `scopes` with the given sections.
fn write_plan(dir: &Path, sections: &[&str], preferred: &str) -> String {
    let text = format!("name = \"scopes\"\n{}", sections.concat()).replace("PREFERRED", preferred);
    let path = dir.join("scopes.toml");
    std::fs::write(&path, text).unwrap();
    path.to_str().unwrap().to_string()
}

fn admin(url: &str, path: &str) -> Value {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async { reqwest::get(format!("{url}{path}")).await.unwrap().json::<Value>().await.unwrap() })
}

/// Names of the plan's live VMs in the simulated cloud, per (cloud, account).
fn live_in(world: &Value, cloud_key: &str, account_key: &str, account: &str) -> Vec<String> {
    world[cloud_key]
        .as_array()
        .unwrap()
        .iter()
        .filter(|vm| vm[account_key] == account)
        .map(|vm| vm["name"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn a_cloud_removed_from_the_plan_has_its_instances_deleted_not_forgotten() {
    let dir = tempfile::tempdir().unwrap();
    let server = SimServer::start(&[]);
    let state = dir.path().join("state");
    let state = state.to_str().unwrap();
    let azure = AZURE.replace("RESOURCE_GROUP", "gpu-fleets");
    let both = write_plan(dir.path(), &[AWS, &azure, TRAINERS], "azure:eastus");
    run(&["apply", &both, "--sim-url", &server.url, "--auto-approve", "--state-dir", state], 0);
    let world = admin(&server.url, "/_sim/world");
    assert_eq!(world_ids(&world, "scopes")["trainers"].len(), 2);
    let on_azure = live_in(&world, "azure_vms", "resource_group", "gpu-fleets");
    assert_eq!(on_azure.len(), 2, "both trainers run on Azure first: {world}");

    let aws_only = write_plan(dir.path(), &[AWS, TRAINERS], "aws:us-east-1");
    let out = run(&["plan", &aws_only, "--sim-url", &server.url, "--state-dir", state], 0);
    let text = stdout(&out);
    assert!(text.contains("[providers.azure] left the plan"), "{text}");
    for name in &on_azure {
        assert!(text.contains(name.as_str()), "{name} is shown as a deletion:\n{text}");
    }
    let out = run(&["plan", &aws_only, "--json", "--sim-url", &server.url, "--state-dir", state], 0);
    let plan: Value = serde_json::from_str(&stdout(&out)).unwrap();
    let deletes: Vec<&Value> = plan["actions"].as_array().unwrap().iter().filter(|a| a["action"] == "delete").collect();
    assert_eq!(deletes.len(), 1, "{plan}");
    assert_eq!(deletes[0]["reason_code"]["reason"], "delete_because_scope_left_plan");
    let price = deletes[0]["price_per_hour"].as_f64().expect("Azure H100 has a list price");
    let cost = &plan["cost"];
    let before = cost["before_per_hour"].as_f64().unwrap();
    assert!(before >= 2.0 * price - 0.01, "the Azure nodes count in the cost before: {cost}");

    run(&["apply", &aws_only, "--sim-url", &server.url, "--auto-approve", "--state-dir", state], 0);
    let world = admin(&server.url, "/_sim/world");
    assert!(live_in(&world, "azure_vms", "resource_group", "gpu-fleets").is_empty(), "{world}");
    assert_eq!(world_ids(&world, "scopes")["trainers"].len(), 2, "replaced on AWS");
    let listed = run(&["state", "list", "--json", "--state-dir", state], 0);
    let listed: Vec<Value> = serde_json::from_str(&stdout(&listed)).unwrap();
    assert!(listed.iter().all(|i| i["cloud"] == "aws"), "{listed:?}");
}

#[test]
fn a_changed_project_deletes_in_the_old_project_and_creates_in_the_new() {
    let dir = tempfile::tempdir().unwrap();
    let server = SimServer::start(&[]);
    let state = dir.path().join("state");
    let state = state.to_str().unwrap();
    let old = write_plan(dir.path(), &[AWS, &GCP.replace("PROJECT", "ml-old"), TRAINERS], "gcp:us-central1-a");
    run(&["apply", &old, "--sim-url", &server.url, "--auto-approve", "--state-dir", state], 0);
    let world = admin(&server.url, "/_sim/world");
    assert_eq!(live_in(&world, "gce_instances", "project", "ml-old").len(), 2, "{world}");

    let new = write_plan(dir.path(), &[AWS, &GCP.replace("PROJECT", "ml-new"), TRAINERS], "gcp:us-central1-a");
    let out = run(&["plan", &new, "--sim-url", &server.url, "--state-dir", state], 0);
    assert!(
        stdout(&out).contains("project changed: instances in ml-old, the plan now uses ml-new"),
        "{}",
        stdout(&out)
    );
    run(&["apply", &new, "--sim-url", &server.url, "--auto-approve", "--state-dir", state], 0);
    let world = admin(&server.url, "/_sim/world");
    assert!(live_in(&world, "gce_instances", "project", "ml-old").is_empty(), "{world}");
    assert_eq!(live_in(&world, "gce_instances", "project", "ml-new").len(), 2, "{world}");
    run(&["plan", &new, "--detailed-exitcode", "--sim-url", &server.url, "--state-dir", state], 0);
}

/// gpufleet against "real" clouds whose AWS endpoint is the simulator (the
/// plan's own override) and whose Google credentials are missing: nothing
/// leaves this machine, and Compute Engine cannot be reached.
fn without_gcp_credentials(args: &[&str], dir: &Path) -> Output {
    Command::new(common::bin())
        .args(args)
        .current_dir(common::repo())
        .env("NO_COLOR", "1")
        .env_remove("GPUFLEET_SIM_URL")
        .env_remove("GPUFLEET_STATE_DIR")
        .env("AWS_ACCESS_KEY_ID", "gpufleet-test")
        .env("AWS_SECRET_ACCESS_KEY", "gpufleet-test")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("AWS_CONFIG_FILE", dir.join("no-aws-config"))
        .env("AWS_SHARED_CREDENTIALS_FILE", dir.join("no-aws-credentials"))
        .env("GOOGLE_APPLICATION_CREDENTIALS", dir.join("no-such-credentials.json"))
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

#[test]
fn instances_in_a_scope_that_cannot_be_reached_fail_the_command_and_stay_in_the_state() {
    let dir = tempfile::tempdir().unwrap();
    let server = SimServer::start(&[]);
    let state_dir = dir.path().join("state");
    let state = state_dir.to_str().unwrap();
    let with_gcp = write_plan(dir.path(), &[AWS, &GCP.replace("PROJECT", "ml-gone"), TRAINERS], "gcp:us-central1-a");
    run(&["apply", &with_gcp, "--sim-url", &server.url, "--auto-approve", "--state-dir", state], 0);
    let before = common::state_ids(&state_dir);
    assert_eq!(before["trainers"].len(), 2);

    let aws_endpoint = format!("[providers.aws]\nregions = [\"us-east-1\"]\nendpoint = \"{}\"\n", server.url);
    let aws_only = write_plan(dir.path(), &[&aws_endpoint, TRAINERS], "aws:us-east-1");
    for command in [vec!["plan", aws_only.as_str()], vec!["apply", aws_only.as_str(), "--auto-approve"]] {
        let mut args = command.clone();
        args.extend(["--state-dir", state]);
        let out = without_gcp_credentials(&args, dir.path());
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(1), "{command:?}\n{}\n{err}", stdout(&out));
        assert!(err.contains("gcp project ml-gone"), "names the scope:\n{err}");
        for id in &before["trainers"] {
            assert!(err.contains(id.as_str()), "names {id}:\n{err}");
        }
        assert!(err.contains("state forget"), "gives the ways out:\n{err}");
        assert_eq!(common::state_ids(&state_dir), before, "nothing dropped from the state");
    }
    let world = admin(&server.url, "/_sim/world");
    assert_eq!(live_in(&world, "gce_instances", "project", "ml-gone").len(), 2, "and nothing deleted");

    // The second way out: delete them by hand, then forget them.
    let mut forget = vec!["state", "forget", "--plan", "scopes", "--state-dir", state];
    forget.extend(before["trainers"].iter().map(String::as_str));
    let out = run(&forget, 0);
    assert!(stdout(&out).contains("Forgot 2 instance(s)"), "{}", stdout(&out));
    assert!(common::state_ids(&state_dir).is_empty());
    let unknown = run(&["state", "forget", "--plan", "scopes", "--state-dir", state, "i-nope"], 1);
    assert!(stderr(&unknown).contains("i-nope"), "{}", stderr(&unknown));
}

#[test]
fn a_profile_renamed_for_the_same_account_keeps_the_nodes_and_records_the_new_profile() {
    let dir = tempfile::tempdir().unwrap();
    let server = SimServer::start(&[]);
    let state = dir.path().join("state");
    let state = state.to_str().unwrap();
    let with_profile = |profile: &str| {
        let aws =
            AWS.replace("regions = [\"us-east-1\"]", &format!("regions = [\"us-east-1\"]\nprofile = \"{profile}\""));
        write_plan(dir.path(), &[&aws, TRAINERS], "aws:us-east-1")
    };
    let plan = with_profile("gpu-prod");
    run(&["apply", &plan, "--sim-url", &server.url, "--auto-approve", "--state-dir", state], 0);
    let before = common::state_ids(Path::new(state));

    // The simulator is one account whatever the profile, like a profile
    // renamed in ~/.aws/config: the same nodes, now in the plan's account.
    let renamed = with_profile("gpu-production");
    let out = run(&["plan", &renamed, "--sim-url", &server.url, "--state-dir", state, "--detailed-exitcode"], 0);
    assert!(stdout(&out).contains("No changes"), "{}", stdout(&out));
    run(&["apply", &renamed, "--sim-url", &server.url, "--auto-approve", "--state-dir", state], 0);
    assert_eq!(common::state_ids(Path::new(state)), before, "kept, not deleted and recreated");
    let listed = run(&["state", "list", "--json", "--state-dir", state], 0);
    let listed: Vec<Value> = serde_json::from_str(&stdout(&listed)).unwrap();
    assert!(listed.iter().all(|i| i["scope"]["profile"] == "gpu-production"), "{listed:?}");
}
