//! The example scripts shipped in plans/scripts: every one is valid shell,
//! and the Kubernetes drain hook drains exactly the node of the instance
//! gpufleet names (against a stand-in `kubectl` that records its calls).

mod common;

use std::os::unix::fs::PermissionsExt;
use std::process::Command;

#[test]
fn every_example_script_is_valid_shell() {
    let scripts = common::repo().join("plans/scripts");
    let mut checked = 0;
    for entry in std::fs::read_dir(&scripts).unwrap() {
        let path = entry.unwrap().path();
        let out = Command::new("sh").arg("-n").arg(&path).output().unwrap();
        assert!(out.status.success(), "{}: {}", path.display(), String::from_utf8_lossy(&out.stderr));
        checked += 1;
    }
    assert!(checked >= 3, "found {checked} scripts");
}

/// Runs the drain hook for `instance` with a `kubectl` that lists two nodes
/// and logs every call; returns (exit code, the calls).
fn drain(instance: &str) -> (Option<i32>, String) {
    let dir = tempfile::tempdir().unwrap();
    let kubectl = dir.path().join("kubectl");
    std::fs::write(
        &kubectl,
        format!(
            "#!/bin/sh\n\
             printf '%s\\n' \"$*\" >> {log}\n\
             case \"$1\" in\n\
               get) printf 'gpu-a aws:///us-east-1a/i-0aaa\\ngpu-b aws:///us-east-1b/i-0bbb\\n' ;;\n\
             esac\n",
            log = dir.path().join("calls").display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&kubectl, std::fs::Permissions::from_mode(0o755)).unwrap();
    let path = format!("{}:{}", dir.path().display(), std::env::var("PATH").unwrap_or_default());
    let out = Command::new(common::repo().join("plans/scripts/drain-kubernetes.sh"))
        .env("PATH", path)
        .env("GPUFLEET_PLAN", "demo")
        .env("GPUFLEET_FLEET", "trainers")
        .env("GPUFLEET_CLOUD", "aws")
        .env("GPUFLEET_REGION", "us-east-1")
        .env("GPUFLEET_ZONE", "us-east-1b")
        .env("GPUFLEET_INSTANCE_ID", instance)
        .output()
        .unwrap();
    let calls = std::fs::read_to_string(dir.path().join("calls")).unwrap_or_default();
    (out.status.code(), calls)
}

#[test]
fn the_kubernetes_drain_hook_drains_the_node_of_the_instance_and_only_that_one() {
    let (code, calls) = drain("i-0bbb");
    assert_eq!(code, Some(0));
    let calls: Vec<&str> = calls.lines().collect();
    assert!(calls[0].starts_with("get nodes -l gpufleet.io/fleet=trainers"), "{calls:?}");
    assert_eq!(calls[1], "cordon gpu-b");
    assert!(calls[2].starts_with("drain gpu-b --ignore-daemonsets"), "{calls:?}");
    assert_eq!(calls.len(), 3);

    let (code, calls) = drain("i-0ccc");
    assert_eq!(code, Some(0), "an instance that never joined has nothing to drain");
    assert_eq!(calls.lines().count(), 1, "{calls}");
}
