//! `gpufleet catalog refresh` through the binary against a running
//! simulator whose scenario sells what the built-in catalog does not know:
//! p5.48xlarge in AWS eu-west-1, a3-highgpu-8g in us-central1-f, and ND H100
//! v5 in Azure westeurope (a region the built-in catalog lacks), plus ND
//! H100 v5 in northeurope restricted for the subscription, and in a region
//! whose name says nothing of its jurisdiction (marscentral). The refresh makes
//! only reads; afterwards `plan` places nodes on what only the refreshed
//! file has, never on the restricted size, and says which catalog it used.

mod common;

use common::{Admin, SimServer, gpufleet, run, stderr, stdout};
use serde_json::Value;
use std::path::Path;

const SCENARIO: &str = r#"
[[offering]]
cloud = "aws"
region = "eu-west-1"
instance_type = "p5.48xlarge"
capacity = 8

[[offering]]
cloud = "gcp"
region = "us-central1"
zone = "us-central1-f"
instance_type = "a3-highgpu-8g"
capacity = 8

[[offering]]
cloud = "azure"
region = "westeurope"
instance_type = "Standard_ND96isr_H100_v5"
capacity = 8

[[offering]]
cloud = "azure"
region = "northeurope"
instance_type = "Standard_ND96isr_H100_v5"
restricted = true

[[offering]]
cloud = "aws"
region = "eu-central-2"
instance_type = "p5.48xlarge"
capacity = 8

[[offering]]
cloud = "azure"
region = "marscentral"
instance_type = "Standard_ND96isr_H100_v5"
capacity = 8
"#;

const AZURE: &str = r#"subscription = "00000000-0000-0000-0000-000000000000"
resource_group = "gpufleet"
ssh_public_key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIRefreshTestKey ops@example""#;

/// A plan with one H100 fleet of three nodes, one per cloud where it can,
/// on the given providers' locations.
fn plan(aws: &str, gcp: &str, azure: &str, residency: &str) -> String {
    format!(
        r#"name = "refresh"

[providers.aws]
regions = [{aws}]

[providers.gcp]
project = "ml-research"
zones = [{gcp}]

[providers.azure]
{AZURE}
regions = [{azure}]

[fleets.trainers]
gpu = "H100"
gpus_per_node = 8
nodes = 3
placement = "spread"
spread_by = "cloud"
{residency}
image = {{ aws = "ami-0123456789abcdef0", gcp = "projects/ml-research/global/images/family/trainer", azure = "Canonical:0001-com-ubuntu-server-jammy:22_04-lts-gen2:latest" }}
"#
    )
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path.to_str().unwrap().to_string()
}

#[test]
fn a_refresh_makes_offerings_only_the_clouds_know_placeable_and_restricted_ones_not() {
    let dir = tempfile::tempdir().unwrap();
    let scenario = write(dir.path(), "scenario.toml", SCENARIO);
    let server = SimServer::start(&["--scenario", &scenario]);
    let state = dir.path().join("state");
    let state_dir = state.to_str().unwrap();
    let target = ["--sim-url", server.url.as_str(), "--state-dir", state_dir];

    // Without a refresh: nothing of the built-in catalog sells H100s in
    // eu-west-1 or us-central1-f, and westeurope is not a region it knows.
    let home = write(dir.path(), "home.toml", &plan("\"eu-west-1\"", "\"us-central1-f\"", "\"eastus\"", ""));
    let before = run(&[&["plan", &home, "--json"][..], &target].concat(), 0);
    let before: Value = serde_json::from_str(&stdout(&before)).unwrap();
    let placed = |changes: &Value| changes.to_string();
    let text = placed(&before);
    assert!(text.contains("Standard_ND96isr_H100_v5"), "{text}");
    assert!(!text.contains("p5.48xlarge") && !text.contains("a3-highgpu-8g"), "{text}");
    let europe = write(
        dir.path(),
        "europe.toml",
        &plan(
            "\"eu-west-1\"",
            "\"us-central1-f\"",
            "\"westeurope\", \"northeurope\", \"marscentral\"",
            "residency = [\"EU\"]",
        ),
    );
    let refused = gpufleet(&[&["validate", &europe], &target[2..]].concat());
    assert_eq!(refused.status.code(), Some(1));
    assert!(stderr(&refused).contains("unknown azure region `westeurope`"), "{}", stderr(&refused));

    // The refresh: reads only, one file, 0600.
    let before_counters = Admin::new(&server.url).get("/_sim/counters");
    let refresh = run(&[&["catalog", "refresh", &home], &target[..]].concat(), 0);
    let summary = stdout(&refresh);
    assert!(summary.contains("1 restricted for the account"), "{summary}");
    let file = state.join("catalog").join("refreshed.json");
    let mode = std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&file).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o600);
    let counters = Admin::new(&server.url).get("/_sim/counters");
    for (cloud, call) in common::MUTATING {
        assert_eq!(counters[cloud][call], before_counters[cloud][call], "refresh made {cloud} {call}: {counters}");
    }
    let calls = |cloud: &str, call: &str| {
        counters[cloud][call].as_u64().unwrap_or(0) - before_counters[cloud][call].as_u64().unwrap_or(0)
    };
    assert_eq!(calls("aws", "DescribeInstanceTypeOfferings"), 1, "{counters}");
    assert_eq!(calls("aws", "DescribeInstanceTypes"), 1, "{counters}");
    // Compute Engine's lists may answer short and empty pages: each is followed to its end.
    assert!(calls("gcp", "machineTypes.aggregatedList") >= 1, "{counters}");
    assert!(calls("gcp", "acceleratorTypes.aggregatedList") >= 1, "{counters}");
    assert_eq!(calls("azure", "ResourceSkus_List"), 1, "{counters}");
    let written: Value = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
    let azure = written["clouds"].as_array().unwrap().iter().find(|c| c["cloud"] == "azure").unwrap();
    let west = azure["regions"].as_array().unwrap().iter().find(|r| r["name"] == "westeurope").unwrap();
    assert_eq!(west["jurisdiction"], "EU");
    let north = azure["offers"].as_array().unwrap().iter().find(|o| o["region"] == "northeurope").unwrap();
    assert_eq!(north["restricted"], "NotAvailableForSubscription");
    let mars = azure["regions"].as_array().unwrap().iter().find(|r| r["name"] == "marscentral").unwrap();
    assert_eq!(mars["jurisdiction"], Value::Null, "no jurisdiction is guessed for a name no prefix covers");

    // After it: the plan places on what only the refresh found, says which
    // catalog it used, and keeps the built-in prices (unknown where none).
    let after = run(&[&["plan", &home, "--json"][..], &target].concat(), 0);
    assert!(
        stderr(&after).contains(&format!("catalog: refreshed 2026-01-01 from the clouds ({})", file.display())),
        "{}",
        stderr(&after)
    );
    let text = placed(&serde_json::from_str::<Value>(&stdout(&after)).unwrap());
    assert!(text.contains("p5.48xlarge") && text.contains("a3-highgpu-8g"), "{text}");
    let europe_plan = run(&[&["plan", &europe, "--json"][..], &target].concat(), 0);
    let text = placed(&serde_json::from_str::<Value>(&stdout(&europe_plan)).unwrap());
    assert!(text.contains("westeurope"), "{text}");
    assert!(!text.contains("northeurope"), "a restricted size is never placed: {text}");
    assert!(!text.contains("marscentral"), "residency never admits a region of unknown jurisdiction: {text}");
    let anywhere =
        write(dir.path(), "anywhere.toml", &plan("\"eu-west-1\"", "\"us-central1-f\"", "\"marscentral\"", ""));
    let text = placed(
        &serde_json::from_str::<Value>(&stdout(&run(&[&["plan", &anywhere, "--json"][..], &target].concat(), 0)))
            .unwrap(),
    );
    assert!(text.contains("marscentral"), "without residency it is placeable: {text}");

    // --json: the same summary as one object.
    let again = run(&[&["catalog", "refresh", &home, "--json"], &target[..]].concat(), 0);
    let summary: Value = serde_json::from_str(&stdout(&again)).unwrap();
    assert_eq!(summary["path"], file.display().to_string());
    let clouds: Vec<&str> = summary["clouds"].as_array().unwrap().iter().filter_map(|c| c["cloud"].as_str()).collect();
    assert_eq!(clouds, ["aws", "gcp", "azure"]);
    assert_eq!(summary["clouds"][2]["restricted_count"], 1);
}

/// A plan naming regions no catalog knows yet (AWS eu-central-2, Azure
/// westeurope) used to fail validation before the refresh could read them.
#[test]
fn a_first_refresh_reads_the_regions_only_the_plan_and_the_clouds_know() {
    let dir = tempfile::tempdir().unwrap();
    let scenario = write(dir.path(), "scenario.toml", SCENARIO);
    let state = dir.path().join("state");
    let target = ["--sim", scenario.as_str(), "--state-dir", state.to_str().unwrap()];
    let new = write(dir.path(), "new.toml", &plan("\"eu-central-2\"", "\"us-central1-a\"", "\"westeurope\"", ""));
    let refused = gpufleet(&[&["plan", &new], &target[..]].concat());
    assert_eq!(refused.status.code(), Some(1));
    assert!(stderr(&refused).contains("gpufleet catalog refresh PLAN"), "{}", stderr(&refused));
    run(&[&["catalog", "refresh", &new], &target[..]].concat(), 0);
    let written: Value =
        serde_json::from_slice(&std::fs::read(state.join("catalog").join("refreshed.json")).unwrap()).unwrap();
    let aws = &written["clouds"][0];
    assert_eq!(aws["regions"][0]["name"], "eu-central-2");
    assert_eq!(aws["regions"][0]["jurisdiction"], "CH", "Zurich is not in the EU");
    let planned = run(&[&["plan", &new, "--json"], &target[..]].concat(), 0);
    let text = stdout(&planned);
    assert!(text.contains("eu-central-2") && text.contains("westeurope"), "{text}");
    assert!(!stderr(&planned).contains("note"), "{}", stderr(&planned));

    // Another project than the one read: said, as what it may buy can differ.
    let other = write(
        dir.path(),
        "other.toml",
        &plan("\"eu-central-2\"", "\"us-central1-a\"", "\"westeurope\"", "")
            .replace("ml-research\"\nzones", "ml-other\"\nzones"),
    );
    let planned = run(&[&["plan", &other], &target[..]].concat(), 0);
    assert!(
        stderr(&planned)
            .contains("catalog: note: gcp was read for project ml-research, this plan uses project ml-other"),
        "{}",
        stderr(&planned)
    );
}

#[test]
fn a_damaged_refreshed_catalog_fails_the_plan_naming_the_file_and_the_fix() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let file = state.join("catalog").join("refreshed.json");
    std::fs::create_dir_all(file.parent().unwrap()).unwrap();
    let home = write(dir.path(), "home.toml", &plan("\"us-east-1\"", "\"us-central1-a\"", "\"eastus\"", ""));
    for damage in ["{\"kind\": \"gpufleet-catalog\", \"format_vers", "not json at all", "{}"] {
        std::fs::write(&file, damage).unwrap();
        let out = gpufleet(&["validate", &home, "--state-dir", state.to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(1), "{damage}");
        let text = stderr(&out);
        assert!(text.contains(&file.display().to_string()) && text.contains("is damaged"), "{text}");
        assert!(text.contains("gpufleet catalog refresh") && text.contains("delete"), "{text}");
        assert!(!text.contains("panicked"), "{text}");
    }
}
