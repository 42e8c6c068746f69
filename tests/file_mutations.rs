//! Every file gpufleet reads, damaged: the state file, the journal, the lock
//! file, the embedded simulator's world file and a saved plan. Whatever the
//! damage (truncation, flipped bits, invalid UTF-8, unknown names, values of
//! the wrong type, huge numbers and timestamps), the commands that read the
//! file exit 0, 1 or 2: never a panic (101, or a panic message from a worker
//! thread), never a signal. A command that fails because the file no longer
//! parses says so on stderr, naming the file.
//!
//! Each case runs the real binary, so there are few cases per kind; the
//! deterministic tests at the end pin the damage that once broke something.

mod common;

use common::{gpufleet_in, stderr, stdout};
use proptest::prelude::*;
use proptest::test_runner::{Config, FileFailurePersistence};
use serde_json::Value;
use std::path::Path;
use std::process::Output;
use std::sync::OnceLock;

/// One small fleet per cloud, so the world file holds EC2, Compute Engine and
/// Azure records. `{EC2}` and `{GCE}` are node counts.
const PLAN: &str = r#"
name = "mut"

[providers.aws]
regions = ["us-east-1"]

[providers.gcp]
project = "mutations-test"
zones = ["us-central1-a"]

[providers.azure]
subscription = "00000000-0000-0000-0000-000000000000"
resource_group = "rg"
regions = ["eastus"]
ssh_public_key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIMutationsTestKey test@example"

[fleets.ec2]
gpu = "H100"
gpus_per_node = 8
nodes = {EC2}
prefer = ["aws:us-east-1"]
image = { aws = "ami-0123456789abcdef0" }

[fleets.gce]
gpu = "H100"
gpus_per_node = 8
nodes = {GCE}
prefer = ["gcp:us-central1-a"]
image = { gcp = "projects/mutations-test/global/images/trainer" }

[fleets.arm]
gpu = "H100"
gpus_per_node = 8
nodes = 1
prefer = ["azure:eastus"]
image = { azure = "Canonical:0001-com-ubuntu-server-jammy:22_04-lts-gen2:latest" }
"#;

const STATE: &str = "state/mut.json";
const JOURNAL: &str = "state/mut.journal.jsonl";
const LOCK: &str = "state/mut.lock";
const WORLD: &str = "state/sim/world.json";
const SAVED: &str = "saved.json";

fn plan_text(ec2: u32, gce: u32) -> String {
    PLAN.replace("{EC2}", &ec2.to_string()).replace("{GCE}", &gce.to_string())
}

/// Run in `dir`, showing everything when the run itself is required to pass.
fn ok_in(dir: &Path, args: &[&str]) -> Output {
    let out = gpufleet_in(dir, args);
    assert!(out.status.success(), "gpufleet {args:?}\nstdout:\n{}\nstderr:\n{}", stdout(&out), stderr(&out));
    out
}

/// A directory where real files exist: the plan applied on the embedded
/// simulator (2 EC2, 1 GCE, 1 Azure node), then changed (1 EC2, 2 GCE) and
/// planned into `saved.json` (one delete, one create). Built once; each case
/// works on a copy, every path in it relative so that the copy stands alone.
fn template() -> &'static Path {
    static TEMPLATE: OnceLock<tempfile::TempDir> = OnceLock::new();
    TEMPLATE
        .get_or_init(|| {
            let dir = tempfile::tempdir().unwrap();
            std::fs::write(dir.path().join("mut.toml"), plan_text(2, 1)).unwrap();
            ok_in(dir.path(), &["apply", "mut.toml", "--sim", "--auto-approve", "--state-dir", "state"]);
            std::fs::write(dir.path().join("mut.toml"), plan_text(1, 2)).unwrap();
            ok_in(dir.path(), &["plan", "mut.toml", "--sim", "--state-dir", "state", "--out", SAVED]);
            // A lock left by a killed run on this host: the holder is named,
            // nobody holds the flock.
            let now = chrono::Utc::now();
            let mut holder =
                gpufleet::state::lock::Holder::this_process("apply", now, std::time::Duration::from_secs(600));
            holder.pid = 1;
            std::fs::write(dir.path().join(LOCK), serde_json::to_vec_pretty(&holder).unwrap()).unwrap();
            dir
        })
        .path()
}

/// A fresh copy of the template.
fn case() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    copy_dir(template(), dir.path());
    dir
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

/// An id the state knows, for `state show`.
fn some_instance_id() -> String {
    let state: Value = serde_json::from_slice(&std::fs::read(template().join(STATE)).unwrap()).unwrap();
    state["instances"][0]["id"].as_str().unwrap().to_string()
}

// ---------------------------------------------------------------------------
// Mutations

/// What replaces a string value: names nothing knows, and odd text.
const STRINGS: &[&str] = &[
    "",
    "no-such-fleet",
    "p9.unknown-type",
    "mars-central1",
    "mars-central1-z",
    "../../../escape",
    "\u{202e}spoofed\u{0}",
    "ünïcödé-名前",
    "9999999999999999999999999",
];

/// Keys of the strings that name things (fleets, instance types, regions,
/// instances, plans, holders): `ReplaceString` aims at these first.
const NAME_KEYS: &[&str] = &[
    "fleet",
    "instance_type",
    "machine_type",
    "vm_size",
    "sku_name",
    "region",
    "zone",
    "location",
    "cloud",
    "plan",
    "plan_path",
    "kind",
    "id",
    "name",
    "host",
    "gpu",
    "instance_ids",
    "observed",
];

/// Timestamps at and beyond the edges of what anyone means by a date.
const TIMESTAMPS: &[&str] = &[
    "+262142-12-31T23:59:59Z",
    "-262143-01-01T00:00:00Z",
    "9999-12-31T23:59:59Z",
    "0000-01-01T00:00:00Z",
    "1970-01-01T00:00:00Z",
    "2026-13-45T99:99:99Z",
];

#[derive(Debug, Clone)]
enum Mutation {
    /// Keep only the first `at` bytes (modulo the length).
    Truncate { at: usize },
    /// Flip one bit at each (byte, bit).
    FlipBits { bits: Vec<(usize, u8)> },
    /// Insert bytes that are not UTF-8 at a position.
    InvalidUtf8 { at: usize, bytes: Vec<u8> },
    /// Replace the `pick`-th string value (of one JSON document) with `STRINGS[with]`.
    ReplaceString { pick: usize, with: usize },
    /// Give the `pick`-th value a value of another type.
    WrongType { pick: usize, to: WrongType },
    /// Replace the `pick`-th number with a huge (or negative, or fractional) one.
    HugeNumber { pick: usize, value: HugeNumber },
    /// Replace the `pick`-th timestamp with `TIMESTAMPS[with]`.
    Timestamp { pick: usize, with: usize },
}

#[derive(Debug, Clone, Copy)]
enum WrongType {
    /// Numbers become strings, strings numbers, objects arrays, arrays objects, the rest null.
    Swap,
    Null,
    Bool,
}

#[derive(Debug, Clone, Copy)]
enum HugeNumber {
    U64Max,
    I64Min,
    MinusOne,
    Float,
    U32MaxPlusOne,
}

impl HugeNumber {
    fn value(self) -> Value {
        match self {
            HugeNumber::U64Max => Value::from(u64::MAX),
            HugeNumber::I64Min => Value::from(i64::MIN),
            HugeNumber::MinusOne => Value::from(-1),
            HugeNumber::Float => Value::from(1.0e308),
            HugeNumber::U32MaxPlusOne => Value::from(u64::from(u32::MAX) + 1),
        }
    }
}

fn mutation() -> impl Strategy<Value = Mutation> {
    let index = 0..100_000usize;
    prop_oneof![
        1 => index.clone().prop_map(|at| Mutation::Truncate { at }),
        1 => prop::collection::vec((index.clone(), 0..8u8), 1..6).prop_map(|bits| Mutation::FlipBits { bits }),
        1 => (index.clone(), prop::sample::select(vec![vec![0xff], vec![0xc3], vec![0xfe, 0xff], vec![0xed, 0xa0, 0x80]]))
            .prop_map(|(at, bytes)| Mutation::InvalidUtf8 { at, bytes }),
        3 => (index.clone(), 0..STRINGS.len()).prop_map(|(pick, with)| Mutation::ReplaceString { pick, with }),
        1 => (index.clone(), prop::sample::select(vec![WrongType::Swap, WrongType::Null, WrongType::Bool]))
            .prop_map(|(pick, to)| Mutation::WrongType { pick, to }),
        1 => (
            index.clone(),
            prop::sample::select(vec![
                HugeNumber::U64Max,
                HugeNumber::I64Min,
                HugeNumber::MinusOne,
                HugeNumber::Float,
                HugeNumber::U32MaxPlusOne
            ])
        )
            .prop_map(|(pick, value)| Mutation::HugeNumber { pick, value }),
        1 => (index, 0..TIMESTAMPS.len()).prop_map(|(pick, with)| Mutation::Timestamp { pick, with }),
    ]
}

impl Mutation {
    /// The damaged bytes. JSON-level mutations apply to one document; in a
    /// JSON-lines file, to the line `pick` falls on.
    fn apply(&self, bytes: &[u8]) -> Vec<u8> {
        let len = bytes.len().max(1);
        match self {
            Mutation::Truncate { at } => bytes[..at % len].to_vec(),
            Mutation::FlipBits { bits } => {
                let mut out = bytes.to_vec();
                for (at, bit) in bits {
                    if !out.is_empty() {
                        out[at % len] ^= 1 << bit;
                    }
                }
                out
            }
            Mutation::InvalidUtf8 { at, bytes: bad } => {
                let at = at % (bytes.len() + 1);
                [&bytes[..at], bad, &bytes[at..]].concat()
            }
            Mutation::ReplaceString { pick, .. }
            | Mutation::WrongType { pick, .. }
            | Mutation::HugeNumber { pick, .. }
            | Mutation::Timestamp { pick, .. } => {
                let text = String::from_utf8_lossy(bytes);
                let lines: Vec<&str> = text.split_inclusive('\n').collect();
                if let Ok(value) = serde_json::from_str::<Value>(&text) {
                    return self.apply_to_document(value).into_bytes();
                }
                // JSON lines: one line's document.
                if lines.is_empty() {
                    return bytes.to_vec();
                }
                let line = pick % lines.len();
                let Ok(value) = serde_json::from_str::<Value>(lines[line]) else { return bytes.to_vec() };
                let mut out = String::new();
                for (i, l) in lines.iter().enumerate() {
                    if i == line {
                        out.push_str(&self.apply_to_document(value.clone()));
                        out.push('\n');
                    } else {
                        out.push_str(l);
                    }
                }
                out.into_bytes()
            }
        }
    }

    fn apply_to_document(&self, mut doc: Value) -> String {
        let mut pointers = Vec::new();
        collect(&doc, String::new(), &mut pointers);
        let wanted = |v: &Value| match self {
            Mutation::ReplaceString { .. } => v.is_string(),
            Mutation::HugeNumber { .. } => v.is_number(),
            Mutation::Timestamp { .. } => v.as_str().is_some_and(looks_like_timestamp),
            _ => true,
        };
        pointers.retain(|p| doc.pointer(p).is_some_and(wanted));
        let mut pick = match self {
            Mutation::ReplaceString { pick, .. }
            | Mutation::WrongType { pick, .. }
            | Mutation::HugeNumber { pick, .. }
            | Mutation::Timestamp { pick, .. } => *pick,
            _ => 0,
        };
        if matches!(self, Mutation::ReplaceString { .. }) && pointers.iter().any(|p| name_key(p).is_some()) {
            // A name, each kind of name as likely as another: fleet names are
            // few among the strings, and matter most.
            let mut keys: Vec<String> = pointers.iter().filter_map(|p| name_key(p)).map(str::to_string).collect();
            keys.sort();
            keys.dedup();
            let key = keys[pick % keys.len()].clone();
            pick /= keys.len();
            pointers.retain(|p| name_key(p) == Some(key.as_str()));
        }
        let slot = pointers.get(pick % pointers.len().max(1)).and_then(|p| doc.pointer_mut(p));
        if let Some(slot) = slot {
            *slot = match self {
                Mutation::ReplaceString { with, .. } => Value::from(STRINGS[*with]),
                Mutation::Timestamp { with, .. } => Value::from(TIMESTAMPS[*with]),
                Mutation::HugeNumber { value, .. } => value.value(),
                Mutation::WrongType { to: WrongType::Null, .. } => Value::Null,
                Mutation::WrongType { to: WrongType::Bool, .. } => Value::Bool(true),
                Mutation::WrongType { to: WrongType::Swap, .. } => match slot.take() {
                    Value::Number(n) => Value::String(n.to_string()),
                    Value::String(_) => Value::from(42),
                    Value::Object(map) => Value::Array(map.into_iter().map(|(_, v)| v).collect()),
                    Value::Array(items) => {
                        Value::Object(items.into_iter().enumerate().map(|(i, v)| (i.to_string(), v)).collect())
                    }
                    Value::Null | Value::Bool(_) => Value::from("surprise"),
                },
                _ => unreachable!("byte-level mutations do not reach here"),
            };
        }
        serde_json::to_string_pretty(&doc).unwrap()
    }
}

/// JSON pointers to every value of a document, members before their
/// members (the root, `""`, included).
fn collect(value: &Value, at: String, out: &mut Vec<String>) {
    match value {
        Value::Array(items) => {
            for (i, v) in items.iter().enumerate() {
                collect(v, format!("{at}/{i}"), out);
            }
        }
        Value::Object(map) => {
            for (k, v) in map {
                collect(v, format!("{at}/{}", k.replace('~', "~0").replace('/', "~1")), out);
            }
        }
        _ => {}
    }
    out.push(at);
}

/// The key of a name (`/changeset/actions/0/fleet` → `fleet`) or of a list
/// of names (`/observed/2` → `observed`); `None` for anything else.
fn name_key(pointer: &str) -> Option<&str> {
    let mut segments = pointer.rsplit('/');
    let last = segments.next().unwrap_or_default();
    let key = if last.parse::<usize>().is_ok() { segments.next().unwrap_or_default() } else { last };
    NAME_KEYS.contains(&key).then_some(key)
}

fn looks_like_timestamp(s: &str) -> bool {
    chrono::DateTime::parse_from_rfc3339(s).is_ok()
}

// ---------------------------------------------------------------------------
// What must hold

/// The files, how a command would read them, and what must hold.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Kind {
    State,
    Journal,
    Lock,
    World,
    Saved,
}

impl Kind {
    fn path(self) -> &'static str {
        match self {
            Kind::State => STATE,
            Kind::Journal => JOURNAL,
            Kind::Lock => LOCK,
            Kind::World => WORLD,
            Kind::Saved => SAVED,
        }
    }

    /// The commands that read the file.
    fn commands(self) -> Vec<Vec<String>> {
        let plan = || "plan mut.toml --sim --state-dir state".to_string();
        let apply_saved = || format!("apply {SAVED} --sim --auto-approve --state-dir state");
        let apply = || "apply mut.toml --sim --auto-approve --state-dir state".to_string();
        let lines = match self {
            Kind::State => vec![
                plan(),
                "state list --state-dir state".into(),
                format!("state show {} --state-dir state", some_instance_id()),
                apply(),
            ],
            Kind::Journal => vec![apply_saved(), apply()],
            Kind::Lock => vec![plan(), apply()],
            Kind::World => vec![plan(), apply(), "sim advance 1m --state-dir state".into()],
            Kind::Saved => vec![apply_saved()],
        };
        lines.into_iter().map(|l| l.split(' ').map(str::to_string).collect()).collect()
    }

    /// Whether gpufleet's own types reject these bytes: then a command that
    /// reads the file must fail and say which file.
    fn rejects(self, bytes: &[u8]) -> bool {
        match self {
            Kind::State => serde_json::from_slice::<gpufleet::state::State>(bytes).is_err(),
            Kind::World => {
                let Ok(file) = serde_json::from_slice::<Value>(bytes) else { return true };
                file["format"] != 1 || serde_json::from_value::<gpufleet::sim::World>(file["world"].clone()).is_err()
            }
            Kind::Saved => serde_json::from_slice::<gpufleet::apply::SavedPlan>(bytes).is_err(),
            // Damaged journal lines are skipped (the clouds say what exists);
            // an unreadable lock record does not block (see `check_lock`).
            Kind::Journal | Kind::Lock => false,
        }
    }
}

/// Damage one file of a fresh copy and run what reads it.
fn check(kind: Kind, mutation: &Mutation) -> Result<(), TestCaseError> {
    let dir = case();
    let path = dir.path().join(kind.path());
    let original = std::fs::read(&path).unwrap();
    let damaged = mutation.apply(&original);
    std::fs::write(&path, &damaged).unwrap();
    let rejected = kind.rejects(&damaged);
    for args in kind.commands() {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = gpufleet_in(dir.path(), &args);
        let context = || {
            format!(
                "gpufleet {args:?} after {mutation:?} of {}\nstdout:\n{}\nstderr:\n{}",
                kind.path(),
                stdout(&out),
                stderr(&out)
            )
        };
        let err = stderr(&out);
        let code = out.status.code();
        prop_assert!(code.is_some(), "killed by a signal: {}", context());
        prop_assert!(matches!(code, Some(0..=2)), "exit {code:?}: {}", context());
        prop_assert!(!err.contains("panicked"), "a thread panicked: {}", context());
        if code == Some(1) {
            prop_assert!(!err.trim().is_empty(), "exit 1 without a word: {}", context());
        }
        if rejected {
            prop_assert_eq!(code, Some(1), "the damaged file was accepted: {}", context());
            let name = Path::new(kind.path()).file_name().unwrap().to_str().unwrap();
            prop_assert!(err.contains(name), "the error does not name {}: {}", name, context());
        }
        if kind == Kind::Lock && err.contains("is locked") {
            // Only a readable record may block: one naming another host whose lease runs.
            let holder = serde_json::from_slice::<gpufleet::state::lock::Holder>(&damaged);
            prop_assert!(holder.is_ok(), "an unreadable record of a dead holder blocks: {}", context());
            prop_assert!(err.contains("mut.lock"), "the lock error does not name the file: {}", context());
        }
    }
    Ok(())
}

/// 14 cases per kind keeps the file well under a minute in debug builds;
/// `PROPTEST_CASES=200` digs deeper.
fn config() -> Config {
    Config {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|n| n.parse().ok()).unwrap_or(14),
        max_shrink_iters: 16,
        failure_persistence: Some(Box::new(FileFailurePersistence::Off)),
        ..Config::default()
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn damaged_state_file_never_panics(m in mutation()) {
        check(Kind::State, &m)?;
    }

    #[test]
    fn damaged_journal_never_panics(m in mutation()) {
        check(Kind::Journal, &m)?;
    }

    #[test]
    fn damaged_lock_file_never_panics_nor_blocks(m in mutation()) {
        check(Kind::Lock, &m)?;
    }

    #[test]
    fn damaged_world_file_never_panics(m in mutation()) {
        check(Kind::World, &m)?;
    }

    #[test]
    fn damaged_saved_plan_never_panics(m in mutation()) {
        check(Kind::Saved, &m)?;
    }
}

// ---------------------------------------------------------------------------
// Regressions: one per thing that broke

/// Rewrite a JSON file in place.
fn edit_json(path: &Path, edit: impl FnOnce(&mut Value)) {
    let mut value: Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    edit(&mut value);
    std::fs::write(path, serde_json::to_vec_pretty(&value).unwrap()).unwrap();
}

fn run_in(dir: &Path, args: &[&str], expect: i32) -> Output {
    let out = gpufleet_in(dir, args);
    assert_eq!(
        out.status.code(),
        Some(expect),
        "gpufleet {args:?}\nstdout:\n{}\nstderr:\n{}",
        stdout(&out),
        stderr(&out)
    );
    assert!(!stderr(&out).contains("panicked"), "gpufleet {args:?} panicked:\n{}", stderr(&out));
    out
}

const APPLY: &[&str] = &["apply", "mut.toml", "--sim", "--auto-approve", "--state-dir", "state"];
const PLAN_CMD: &[&str] = &["plan", "mut.toml", "--sim", "--state-dir", "state"];

#[test]
fn state_serial_at_u64_max_is_refused_when_writing_instead_of_overflowing() {
    let dir = case();
    edit_json(&dir.path().join(STATE), |s| s["serial"] = Value::from(u64::MAX));
    let out = run_in(dir.path(), APPLY, 1);
    let err = stderr(&out);
    assert!(err.contains("mut.json") && err.contains("serial"), "{err}");
}

#[test]
fn lock_file_with_invalid_utf8_is_taken_over_when_nobody_holds_it() {
    let dir = case();
    std::fs::write(dir.path().join(LOCK), b"\xff\xfe{\"host\": \xc3").unwrap();
    run_in(dir.path(), PLAN_CMD, 0);
    run_in(dir.path(), APPLY, 0);
}

#[test]
fn lock_held_with_an_unreadable_record_names_the_file_and_the_way_out() {
    use std::os::fd::AsRawFd;
    let dir = case();
    let path = dir.path().join(LOCK);
    std::fs::write(&path, b"\xff\xfe garbage").unwrap();
    let file = std::fs::File::open(&path).unwrap();
    // SAFETY: flock on a descriptor we own; released when `file` is dropped.
    assert_eq!(unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) }, 0);
    let out = run_in(dir.path(), PLAN_CMD, 1);
    let err = stderr(&out);
    assert!(err.contains("mut.lock") && err.contains("unreadable"), "{err}");
    assert!(err.contains("help:"), "no way out in\n{err}");
    drop(file);
    run_in(dir.path(), PLAN_CMD, 0);
}

#[test]
fn world_file_with_request_sequence_at_u64_max_is_refused_naming_the_file() {
    let dir = case();
    edit_json(&dir.path().join(WORLD), |w| w["world"]["next_request_seq"] = Value::from(u64::MAX));
    let out = run_in(dir.path(), PLAN_CMD, 1);
    let err = stderr(&out);
    assert!(err.contains("world.json") && err.contains("next_request_seq"), "{err}");
    assert!(err.contains("delete the file"), "{err}");
}

#[test]
fn world_file_with_absurd_clock_is_refused_naming_the_file() {
    for now in ["+262142-12-31T23:59:59Z", "-262143-01-01T00:00:00Z"] {
        let dir = case();
        edit_json(&dir.path().join(WORLD), |w| w["world"]["now"] = Value::from(now));
        let err = stderr(&run_in(dir.path(), PLAN_CMD, 1));
        assert!(err.contains("world.json") && err.contains("now"), "{now}: {err}");
        let err = stderr(&run_in(dir.path(), &["sim", "advance", "1m", "--state-dir", "state"], 1));
        assert!(err.contains("world.json"), "{now}: {err}");
    }
}

#[test]
fn sim_advance_to_beyond_year_9999_is_refused() {
    let dir = case();
    let err = stderr(&run_in(dir.path(), &["sim", "advance", "100000years", "--state-dir", "state"], 1));
    assert!(err.contains("longer than a year"), "{err}");
    // Within a year of the clock's end, a shorter step is refused by the world.
    let path = dir.path().join("state/sim/world.json");
    let mut file: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    file["world"]["now"] = serde_json::json!("9999-12-31T00:00:00Z");
    std::fs::write(&path, serde_json::to_vec(&file).unwrap()).unwrap();
    let err = stderr(&run_in(dir.path(), &["sim", "advance", "2days", "--state-dir", "state"], 1));
    assert!(err.contains("clock stops at the end of year 9999"), "{err}");
    run_in(dir.path(), PLAN_CMD, 0);
}

/// A start near the end of chrono's range overflowed adding the first
/// timeline step; the clock keeps to years 1970 to 9999.
#[test]
fn scenario_starting_in_the_far_future_is_refused_naming_the_file() {
    let dir = case();
    let scenario = |start: &str| {
        format!(
            "start = \"{start}\"\n\n[[offering]]\ncloud = \"aws\"\nregion = \"us-east-1\"\n\
             instance_type = \"p5.48xlarge\"\ncapacity = 1\ntimeline = [{{ after = \"1000y\", capacity = 2 }}]\n"
        )
    };
    std::fs::write(dir.path().join("far.toml"), scenario("+262142-12-31T00:00:00Z")).unwrap();
    let out = run_in(dir.path(), &["plan", "mut.toml", "--sim", "far.toml", "--state-dir", "fresh"], 1);
    let err = stderr(&out);
    assert!(err.contains("far.toml") && err.contains("start"), "{err}");
    // The last year the clock keeps to still works, its timeline step never due.
    std::fs::write(dir.path().join("late.toml"), scenario("9999-12-31T00:00:00Z")).unwrap();
    run_in(dir.path(), &["apply", "mut.toml", "--sim", "late.toml", "--auto-approve", "--state-dir", "late"], 0);
}

#[test]
fn saved_plan_naming_a_fleet_the_plan_does_not_have_is_refused_not_a_panic() {
    let dir = case();
    edit_json(&dir.path().join(SAVED), |s| s["changeset"]["actions"][0]["fleet"] = Value::from("no-such-fleet"));
    let out = run_in(dir.path(), &["apply", SAVED, "--sim", "--auto-approve", "--state-dir", "state"], 1);
    let err = stderr(&out);
    assert!(err.contains("saved.json") && err.contains("changeset.actions[0].fleet"), "{err}");
    assert!(err.contains("no-such-fleet"), "{err}");
}

#[test]
fn saved_plan_create_of_zero_or_below_its_min_count_is_refused() {
    for (count, min_count) in [(0, 0), (1, 2)] {
        let dir = case();
        let mut index = None;
        edit_json(&dir.path().join(SAVED), |s| {
            let actions = s["changeset"]["actions"].as_array_mut().unwrap();
            let i = actions.iter().position(|a| a["kind"] == "create").unwrap();
            actions[i]["count"] = Value::from(count);
            actions[i]["min_count"] = Value::from(min_count);
            index = Some(i);
        });
        let out = run_in(dir.path(), &["apply", SAVED, "--sim", "--auto-approve", "--state-dir", "state"], 1);
        let err = stderr(&out);
        let field = if count == 0 { "count" } else { "min_count" };
        let at = format!("changeset.actions[{}].{field}", index.unwrap());
        assert!(err.contains("saved.json") && err.contains(&at), "{count}/{min_count}: {err}");
    }
}

#[test]
fn saved_plan_deleting_an_instance_it_did_not_observe_is_refused() {
    let dir = case();
    let mut index = None;
    edit_json(&dir.path().join(SAVED), |s| {
        let actions = s["changeset"]["actions"].as_array_mut().unwrap();
        let i = actions.iter().position(|a| a["kind"] == "delete").unwrap();
        actions[i]["instance_ids"][0] = Value::from("i-0someoneelses000");
        index = Some(i);
    });
    let out = run_in(dir.path(), &["apply", SAVED, "--sim", "--auto-approve", "--state-dir", "state"], 1);
    let err = stderr(&out);
    let at = format!("changeset.actions[{}].instance_ids[0]", index.unwrap());
    assert!(err.contains("saved.json") && err.contains(&at) && err.contains("i-0someoneelses000"), "{err}");
}

#[test]
fn truncated_saved_plan_is_reported_as_a_damaged_saved_plan_with_its_location() {
    let dir = case();
    let path = dir.path().join(SAVED);
    let bytes = std::fs::read(&path).unwrap();
    std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
    let out = run_in(dir.path(), &["apply", SAVED, "--sim", "--auto-approve", "--state-dir", "state"], 1);
    let err = stderr(&out);
    assert!(err.contains("saved.json") && err.contains("line"), "{err}");
    assert!(!err.contains("TOML"), "read as a plan file: {err}");
}

#[test]
fn state_file_naming_another_plan_is_refused_instead_of_written_elsewhere() {
    let dir = case();
    edit_json(&dir.path().join(STATE), |s| s["plan"] = Value::from("../../../escape"));
    let err = stderr(&run_in(dir.path(), APPLY, 1));
    assert!(err.contains("mut.json"), "{err}");
    let err = stderr(&run_in(dir.path(), &["state", "list", "--state-dir", "state"], 1));
    assert!(err.contains("mut.json"), "{err}");
    assert!(!dir.path().join("escape.json").exists());
}

#[test]
fn journal_with_invalid_utf8_or_a_torn_line_does_not_block_and_loses_no_entry() {
    let dir = case();
    let path = dir.path().join(JOURNAL);
    let mut bytes = std::fs::read(&path).unwrap();
    bytes.extend_from_slice(b"{\"at\": \"2026-01-01T00:00:00Z\", \"run\": \"\xff\xfe");
    std::fs::write(&path, &bytes).unwrap();
    run_in(dir.path(), APPLY, 0);
    // The run appended after the torn fragment: its entries are whole lines.
    let text = String::from_utf8_lossy(&std::fs::read(&path).unwrap()).into_owned();
    let whole = text.lines().filter(|l| serde_json::from_str::<Value>(l).is_ok()).count();
    let total = text.lines().count();
    assert_eq!(total - whole, 1, "only the torn fragment is not an entry:\n{text}");
    run_in(dir.path(), APPLY, 0);
}

#[test]
fn saved_plan_whose_plan_file_is_gone_names_both_files() {
    let dir = case();
    edit_json(&dir.path().join(SAVED), |s| s["plan_path"] = Value::from("gone.toml"));
    let err = stderr(&run_in(dir.path(), &["apply", SAVED, "--sim", "--auto-approve", "--state-dir", "state"], 1));
    assert!(err.contains("gone.toml") && err.contains("saved.json"), "{err}");
}
