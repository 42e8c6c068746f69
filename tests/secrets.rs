//! Credentials reach only their own cloud. With secrets planted in AWS's
//! standard chain (the environment), a whole life cycle against the
//! simulator as the plan's EC2 endpoint, with every log on, leaves no trace
//! of them in any output, in any file gpufleet wrote, or in what the cloud
//! recorded: plan, saved plan, apply through a refusal and a failover, state
//! list, history (table, JSON and HTML page), destroy.

mod common;

use common::{SimServer, stderr, stdout};
use std::path::Path;
use std::process::{Command, Output, Stdio};

const SECRET_KEY: &str = "plantedSecretKeyDoNotLeak0123456789abcdef";
const SESSION_TOKEN: &str = "plantedSessionTokenDoNotLeakFwoGZXIvYXdzEJr";

fn with_planted_secrets(args: &[&str], dir: &Path) -> Output {
    Command::new(common::bin())
        .args(args)
        .current_dir(dir)
        .env("NO_COLOR", "1")
        .env("RUST_LOG", "trace")
        .env_remove("GPUFLEET_SIM_URL")
        .env_remove("GPUFLEET_STATE_DIR")
        .env("AWS_ACCESS_KEY_ID", "AKIAPLANTEDKEYID0001")
        .env("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
        .env("AWS_SESSION_TOKEN", SESSION_TOKEN)
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("AWS_CONFIG_FILE", dir.join("no-aws-config"))
        .env("AWS_SHARED_CREDENTIALS_FILE", dir.join("no-aws-credentials"))
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

/// Every file under `dir`, as (path, bytes).
fn files_under(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            found.extend(files_under(&path));
        } else {
            found.push((path.display().to_string(), std::fs::read(&path).unwrap()));
        }
    }
    found
}

fn leaks(haystack: &[u8]) -> Vec<&'static str> {
    let text = String::from_utf8_lossy(haystack);
    [SECRET_KEY, SESSION_TOKEN].into_iter().filter(|secret| text.contains(secret)).collect()
}

#[test]
fn planted_aws_secrets_appear_in_no_output_file_or_cloud_record() {
    let dir = tempfile::tempdir().unwrap();
    // Served as a plain EC2 endpoint, the simulator's clock is not the one
    // gpufleet waits on (the machine's is), so its instances run at once.
    let shipped = std::fs::read_to_string(common::repo().join("plans/scenarios/us-east-1-h100-soldout.toml")).unwrap();
    let scenario = dir.path().join("scenario.toml");
    std::fs::write(&scenario, format!("{shipped}\n[lifecycle]\nec2_pending = \"0s\"\n")).unwrap();
    let server = SimServer::start(&["--scenario", scenario.to_str().unwrap()]);
    let plan = format!(
        r#"name = "secrets"

[providers.aws]
regions = ["us-east-1", "us-west-2"]
endpoint = "{}"

[fleets.trainers]
gpu = "H100"
gpus_per_node = 8
nodes = 2
prefer = ["aws:us-east-1"]
image = {{ aws = "ami-0123456789abcdef0" }}
"#,
        server.url
    );
    std::fs::write(dir.path().join("secrets.toml"), plan).unwrap();
    let state = "--state-dir=state";
    let steps: [&[&str]; 8] = [
        &["plan", "secrets.toml", state, "--out", "saved.json"],
        &["apply", "secrets.toml", state, "--auto-approve"],
        &["apply", "secrets.toml", state, "--auto-approve", "--json"],
        &["state", "list", "--plan", "secrets", state, "--json"],
        &["history", "secrets", state],
        &["history", "secrets", state, "--json"],
        &["history", "secrets", state, "--html", "history.html"],
        &["destroy", "secrets.toml", state, "--auto-approve"],
    ];
    let mut outputs = Vec::new();
    for args in steps {
        let out = with_planted_secrets(args, dir.path());
        assert_eq!(out.status.code(), Some(0), "{args:?}\n{}\n{}", stdout(&out), stderr(&out));
        outputs.push((format!("{args:?}"), out));
    }
    let report = stdout(&outputs[1].1);
    assert!(report.contains("InsufficientInstanceCapacity"), "the refusal was met and reported:\n{report}");
    assert!(stderr(&outputs[1].1).contains("TRACE"), "logs were on");

    for (what, out) in &outputs {
        assert_eq!(leaks(&out.stdout), Vec::<&str>::new(), "stdout of {what}");
        assert_eq!(leaks(&out.stderr), Vec::<&str>::new(), "stderr of {what}");
    }
    let written = files_under(dir.path());
    assert!(written.iter().any(|(path, _)| path.ends_with("secrets.journal.jsonl")), "{written:?}");
    for (path, bytes) in &written {
        assert_eq!(leaks(bytes), Vec::<&str>::new(), "{path}");
    }
    for admin in ["/_sim/world", "/_sim/counters"] {
        let body = common::Admin::new(&server.url).get(admin).to_string();
        assert_eq!(leaks(body.as_bytes()), Vec::<&str>::new(), "{admin}");
    }
}
