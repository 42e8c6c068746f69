//! Missing credentials are a message, not a dump: with nothing in a cloud's
//! chain, `plan` says in a line that none were found, where it looked, and
//! how to set them. Nothing leaves this machine: AWS's endpoint and Google's
//! metadata server are closed loopback ports, and IMDS is off.

mod common;

use common::{stderr, stdout};
use std::path::Path;
use std::process::{Command, Output, Stdio};

/// A loopback port nothing listens on.
fn closed_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// `gpufleet plan` with every credential chain empty, in a home of its own.
fn plan_without_credentials(dir: &Path, plan: &str) -> Output {
    let home = dir.join("home");
    std::fs::create_dir_all(&home).unwrap();
    std::fs::write(dir.join("plan.toml"), plan).unwrap();
    Command::new(common::bin())
        .args(["plan", "plan.toml", "--state-dir", "state"])
        .current_dir(dir)
        .env("NO_COLOR", "1")
        .env("HOME", &home)
        .env_remove("GPUFLEET_SIM_URL")
        .env_remove("GPUFLEET_STATE_DIR")
        .env_remove("AWS_ACCESS_KEY_ID")
        .env_remove("AWS_SECRET_ACCESS_KEY")
        .env_remove("AWS_SESSION_TOKEN")
        .env_remove("AWS_PROFILE")
        .env_remove("GOOGLE_APPLICATION_CREDENTIALS")
        .env_remove("CLOUDSDK_CONFIG")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("AWS_CONFIG_FILE", dir.join("no-aws-config"))
        .env("AWS_SHARED_CREDENTIALS_FILE", dir.join("no-aws-credentials"))
        .env("GCE_METADATA_HOST", format!("127.0.0.1:{}", closed_port()))
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

const FLEET: &str = r#"
[fleets.trainers]
gpu = "H100"
gpus_per_node = 8
nodes = 1
image = { aws = "ami-0123456789abcdef0", gcp = "projects/ml-images/global/images/family/trainer" }
"#;

#[test]
fn no_aws_credentials_is_one_line_naming_the_chain_and_the_way_to_log_in() {
    let dir = tempfile::tempdir().unwrap();
    let plan = format!(
        "name = \"creds\"\n[providers.aws]\nregions = [\"us-east-1\"]\nendpoint = \"http://127.0.0.1:{}\"\n{FLEET}",
        closed_port()
    );
    let out = plan_without_credentials(dir.path(), &plan);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{}\n{err}", stdout(&out));
    assert!(err.contains("NoCredentials: no AWS credentials found"), "{err}");
    assert!(err.contains("Environment") && err.contains("Profile") && err.contains("Ec2InstanceMetadata"), "{err}");
    assert!(err.contains("aws sso login") && err.contains("AWS_PROFILE"), "{err}");
    assert!(!err.contains("DispatchFailure") && !err.contains("\\u{a}"), "no SDK dump: {err}");
}

#[test]
fn no_google_credentials_says_so_instead_of_transient_errors() {
    let dir = tempfile::tempdir().unwrap();
    let plan =
        format!("name = \"creds\"\n[providers.gcp]\nproject = \"ml-proj\"\nzones = [\"us-central1-a\"]\n{FLEET}");
    let out = plan_without_credentials(dir.path(), &plan);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{}\n{err}", stdout(&out));
    assert!(err.contains("NoCredentials: no Google Cloud credentials found"), "{err}");
    assert!(err.contains("GOOGLE_APPLICATION_CREDENTIALS is not set"), "{err}");
    assert!(err.contains("gcloud auth application-default login"), "{err}");
    assert!(!err.to_lowercase().contains("transient"), "{err}");
}

/// Credentials that a cloud refuses, expired or not allowed the call: `check`
/// names each cloud's code and what to do, in a row each, and `plan` fails
/// with the same, not a dump.
#[test]
fn expired_and_forbidden_credentials_say_what_to_do_in_each_clouds_terms() {
    let dir = tempfile::tempdir().unwrap();
    let scenario = dir.path().join("refused.toml");
    std::fs::write(&scenario, "[credentials]\naws = \"expired\"\ngcp = \"forbidden\"\nazure = \"expired\"\n").unwrap();
    let server = common::SimServer::start(&["--scenario", scenario.to_str().unwrap()]);
    let state = dir.path().join("state");
    let state = state.to_str().unwrap();
    let plan = common::repo().join("plans/multicloud.toml");
    let plan = plan.to_str().unwrap();

    let checked = common::run(&["check", plan, "--sim-url", &server.url, "--state-dir", state], 1);
    let text = stdout(&checked);
    for (cloud, code, fix) in [
        ("aws", "ExpiredToken", "refresh them (`aws sso login`"),
        ("gcp", "forbidden", "grant it roles/compute.instanceAdmin.v1"),
        ("azure", "ExpiredAuthenticationToken", "run `az login` again"),
    ] {
        let row = text.lines().find(|l| l.contains(&format!("✗ {cloud} "))).unwrap_or_else(|| panic!("{text}"));
        assert!(row.contains(code) && row.contains(fix), "{cloud}: {row}");
        assert!(row.len() < 400, "a row, not a dump: {row}");
    }

    let planned = common::run(&["plan", plan, "--sim-url", &server.url, "--state-dir", state], 1);
    let said = stderr(&planned);
    assert!(said.contains("ExpiredToken") && said.contains("aws sso login"), "{said}");
    assert!(!said.contains("DispatchFailure") && !said.contains("ServiceError {"), "no SDK dump: {said}");
}
