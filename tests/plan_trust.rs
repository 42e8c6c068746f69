//! Plan values that reach a cloud, a file system or a terminal: endpoints
//! with credentials, control characters, image formats per cloud, and
//! `startup` scripts outside the plan's directory, FIFOs and oversized files.
//! Every refusal is located at the key that caused it.

use gpufleet::catalog::Catalog;
use gpufleet::plan::{self, LoadOptions, PlanError};
use std::path::Path;

const AZURE: &str = r#"
name = "demo"
[providers.azure]
subscription = "00000000-0000-0000-0000-000000000000"
resource_group = "gpu-fleets"
regions = ["eastus"]
ssh_public_key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAI you@host"
"#;

fn load(dir: &Path, text: &str, options: LoadOptions) -> Result<plan::Plan, PlanError> {
    let path = dir.join("plan.toml");
    std::fs::write(&path, text).unwrap();
    plan::load(&path, &Catalog::builtin(), options)
}

fn refused(dir: &Path, text: &str) -> String {
    match load(dir, text, LoadOptions::default()) {
        Ok(_) => panic!("the plan should not validate:\n{text}"),
        Err(error) => error.render_plain(),
    }
}

/// What a terminal would show: miette's report with its source snippet.
fn on_a_terminal(error: PlanError) -> String {
    let mut out = String::new();
    miette::GraphicalReportHandler::new_themed(miette::GraphicalTheme::unicode_nocolor())
        .render_report(&mut out, &error)
        .unwrap();
    out
}

/// The password was printed in errors and sent to Azure's token endpoint
/// as part of the OAuth scope.
#[test]
fn an_endpoint_with_credentials_is_refused_where_it_is_written_and_never_repeated() {
    let dir = tempfile::tempdir().unwrap();
    let text = format!("{AZURE}endpoint = \"https://admin:hunter2@management.example\"\n");
    let plain = refused(dir.path(), &text);
    assert!(plain.contains("plan.toml:8:12: error: endpoint") && plain.contains("user name or password"), "{plain}");
    let error = load(dir.path(), &text, LoadOptions::default()).unwrap_err();
    let rendered = format!("{plain}{}{error}", on_a_terminal(error.clone()));
    assert!(!rendered.contains("hunter2") && !rendered.contains("admin:"), "{rendered}");
    for cloud in [
        "[providers.aws]\nregions = [\"us-east-1\"]\n",
        "[providers.gcp]\nproject = \"ml-training\"\nzones = [\"us-central1-a\"]\n",
    ] {
        let text = format!("name = \"demo\"\n{cloud}endpoint = \"http://u:p4ss@127.0.0.1:5000\"\n");
        let plain = refused(dir.path(), &text);
        assert!(plain.contains("user name or password") && !plain.contains("p4ss"), "{plain}");
    }
}

#[test]
fn control_characters_are_refused_in_any_key_or_value_once_and_escaped() {
    let dir = tempfile::tempdir().unwrap();
    let text = "name = \"demo\"\n[providers.aws]\nregions = [\"us-east-1\"]\nprofile = \"ops\\r\\nX-Injected: 1\"\n\
                [fleets.a]\ngpu = \"H100\"\ngpus_per_node = 8\nnodes = 1\nimage = { aws = \"ami-0123456789abcdef0\\u001b]0;pwned\\u0007\" }\n";
    let plain = refused(dir.path(), text);
    assert!(plain.contains("plan.toml:4:11: error:") && plain.contains("control character \\u{d}"), "{plain}");
    assert!(plain.contains("plan.toml:9:17: error:") && plain.contains("control character \\u{1b}"), "{plain}");
    assert_eq!(plain.matches("error:").count(), 2, "one problem per value:\n{plain}");
    assert!(!plain.contains(['\x1b', '\x07', '\r']), "{plain:?}");
}

#[test]
fn images_follow_each_clouds_format() {
    let dir = tempfile::tempdir().unwrap();
    let fleet = |image: &str| {
        format!(
            "name = \"demo\"\n[providers.gcp]\nproject = \"ml-training\"\nzones = [\"us-central1-a\"]\n{}\
             [fleets.a]\ngpu = \"H100\"\ngpus_per_node = 8\nnodes = 1\nimage = {{ {image} }}\n",
            AZURE.replace("name = \"demo\"\n", "")
        )
    };
    for bad in [
        r#"gcp = "projects/p/global/images/Bad Name""#,
        r#"gcp = "projects/p/global/images/x?alt=media""#,
        r#"gcp = "projects/../global/images/family/x/y""#,
        r#"azure = "Canonical:ubuntu:22_04:latest?x""#,
        r#"azure = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Compute/images/i/../../x""#,
        r#"azure = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Network/virtualNetworks/v""#,
    ] {
        let plain = refused(dir.path(), &fleet(bad));
        assert!(plain.contains("plan.toml:15:") && plain.contains("is not a"), "{bad}: {plain}");
    }
    for good in [
        r#"gcp = "https://www.googleapis.com/compute/v1/projects/ml-images/global/images/family/trainer""#,
        r#"azure = "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/rg(1)/providers/Microsoft.Compute/galleries/g/images/i/versions/1.0.0""#,
    ] {
        load(dir.path(), &fleet(good), LoadOptions::default())
            .unwrap_or_else(|e| panic!("{good}: {}", e.render_plain()));
    }
}

fn with_startup(startup: &str) -> String {
    format!(
        "name = \"demo\"\n[providers.aws]\nregions = [\"us-east-1\"]\n[fleets.a]\ngpu = \"H100\"\ngpus_per_node = 8\n\
         nodes = 1\nimage = {{ aws = \"ami-0123456789abcdef0\" }}\nstartup = \"{startup}\"\n"
    )
}

/// `startup = "../../.ssh/id_ed25519"` sent a private key to every node as user data.
#[test]
fn a_startup_script_outside_the_plans_directory_is_refused_unless_allowed() {
    let outer = tempfile::tempdir().unwrap();
    let dir = outer.path().join("plans");
    std::fs::create_dir(&dir).unwrap();
    std::fs::write(outer.path().join("id_ed25519"), "PRIVATE KEY").unwrap();
    std::os::unix::fs::symlink(outer.path().join("id_ed25519"), dir.join("join.sh")).unwrap();
    for startup in ["../id_ed25519", "join.sh"] {
        let plain = refused(&dir, &with_startup(startup));
        assert!(
            plain.contains("plan.toml:9:11: error:") && plain.contains("outside the plan file's directory"),
            "{plain}"
        );
        assert!(plain.contains("--allow-startup-outside"), "{plain}");
        let allowed = LoadOptions { allow_startup_outside: true };
        let plan = load(&dir, &with_startup(startup), allowed).unwrap_or_else(|e| panic!("{}", e.render_plain()));
        assert_eq!(plan.fleets["a"].startup.as_ref().unwrap().content, "PRIVATE KEY");
    }
    std::fs::create_dir(dir.join("scripts")).unwrap();
    std::fs::write(dir.join("scripts").join("ok.sh"), "#!/bin/sh\n").unwrap();
    load(&dir, &with_startup("scripts/../scripts/ok.sh"), LoadOptions::default()).unwrap();
}

/// A FIFO named as the startup script hung `validate` forever; /dev/zero
/// would have been read until memory ran out.
#[test]
fn a_fifo_or_device_as_startup_script_is_refused_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("fifo.sh");
    let name = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(name.as_ptr(), 0o600) }, 0);
    let plain = refused(dir.path(), &with_startup("fifo.sh"));
    assert!(plain.contains("plan.toml:9:11: error:") && plain.contains("not a regular file"), "{plain}");
    let allowed = LoadOptions { allow_startup_outside: true };
    let error = load(dir.path(), &with_startup("/dev/zero"), allowed).unwrap_err().render_plain();
    assert!(error.contains("not a regular file"), "{error}");
}

#[test]
fn a_startup_script_is_held_to_the_user_data_limit_of_the_clouds_the_fleet_may_use() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("big.sh"), vec![b'#'; 20 * 1024]).unwrap();
    let plain = refused(dir.path(), &with_startup("big.sh"));
    assert!(plain.contains("plan.toml:9:11: error:") && plain.contains("aws user data"), "{plain}");
    // Compute Engine takes a 256 KiB metadata value.
    let gcp = "name = \"demo\"\n[providers.gcp]\nproject = \"ml-training\"\nzones = [\"us-central1-a\"]\n[fleets.a]\n\
               gpu = \"H100\"\ngpus_per_node = 8\nnodes = 1\nimage = { gcp = \"projects/p/global/images/i\" }\nstartup = \"big.sh\"\n";
    load(dir.path(), gcp, LoadOptions::default()).unwrap_or_else(|e| panic!("{}", e.render_plain()));
    std::fs::write(dir.path().join("big.sh"), vec![b'#'; 300 * 1024]).unwrap();
    assert!(refused(dir.path(), gcp).contains("gcp user data"));
}
