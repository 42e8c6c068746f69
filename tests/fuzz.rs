//! Fuzzing on the stable toolchain: every reader of hostile input, fed
//! arbitrary bytes and mutations of valid seeds, returns a value or a clean
//! error, never panics, and (for file readers) writes nowhere but the
//! directory it was given.
//!
//! Targets: the plan parser, the saved-plan reader, the state reader, the
//! journal reader, the lock file reader, the refreshed catalog reader, and the request decoders of the
//! simulator's three protocols (EC2 Query, Compute Engine JSON, ARM JSON),
//! posted to an in-process simulator. Seeds live in `tests/fuzz/seeds/<target>/`:
//! example plans, a saved plan, a state, journals and a refreshed catalog written by real runs,
//! a lock naming a holder, and requests the SDKs sent, captured on their way
//! to the simulator (`METHOD PATH`, a blank line, the body).
//!
//! Inputs are a seed with a few mutations (bit flips, truncation, splices of
//! another seed, inserted bytes, huge numbers, deep nesting), or arbitrary
//! bytes. The seed of the generator is fixed, so a run is reproducible;
//! `GPUFLEET_FUZZ_CASES` (default 256 per target) and `GPUFLEET_FUZZ_SEED`
//! run longer or elsewhere. A failure is saved in `tests/fuzz.proptest-regressions`
//! and replayed first by every later run; each one fixed also gets a named
//! test below.

mod common;

use gpufleet::apply::SavedPlan;
use gpufleet::catalog::{Catalog, RefreshedCatalog};
use gpufleet::state::journal::{Journal, open_intents_of, unfinished_moves_of};
use gpufleet::state::lock::{DEFAULT_LEASE, Holder, StateLock};
use gpufleet::state::{LocalBackend, StateBackend};
use proptest::prelude::*;
use proptest::sample::Index;
use proptest::test_runner::{Config, FileFailurePersistence, RngAlgorithm, RngSeed};
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

/// The generator's seed when `GPUFLEET_FUZZ_SEED` does not say otherwise.
const SEED: u64 = 0x6770_7566_6c65_6574;
/// Cases per target when `GPUFLEET_FUZZ_CASES` does not say otherwise:
/// the whole suite stays well under a minute in a debug build.
const CASES: u32 = 256;

fn config() -> Config {
    let env = |name: &str| std::env::var(name).ok().and_then(|v| v.parse::<u64>().ok());
    Config {
        cases: env("GPUFLEET_FUZZ_CASES").map_or(CASES, |n| u32::try_from(n).unwrap_or(u32::MAX)),
        rng_algorithm: RngAlgorithm::ChaCha,
        rng_seed: RngSeed::Fixed(env("GPUFLEET_FUZZ_SEED").unwrap_or(SEED)),
        failure_persistence: Some(Box::new(FileFailurePersistence::SourceParallel("proptest-regressions"))),
        max_shrink_time: 60_000,
        ..Config::default()
    }
}

/// The seeds of one target, in name order.
fn seeds(target: &str) -> Arc<Vec<Vec<u8>>> {
    let dir = common::repo().join("tests/fuzz/seeds").join(target);
    let mut paths: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.unwrap().path())
        .collect();
    paths.sort();
    assert!(!paths.is_empty(), "no seeds in {}", dir.display());
    Arc::new(paths.iter().map(|p| std::fs::read(p).unwrap()).collect())
}

/// One change to an input.
#[derive(Debug, Clone)]
enum Mutation {
    FlipBit {
        at: Index,
        bit: u8,
    },
    SetByte {
        at: Index,
        byte: u8,
    },
    Truncate {
        at: Index,
    },
    /// Replace a stretch with a stretch of another seed (or the same one).
    Splice {
        at: Index,
        len: usize,
        seed: Index,
        from: Index,
        take: usize,
    },
    Insert {
        at: Index,
        bytes: Vec<u8>,
    },
    Remove {
        at: Index,
        len: usize,
    },
    /// Replace the number at or after `at` with one no field can hold.
    HugeNumber {
        at: Index,
        number: &'static str,
    },
    /// Open `depth` arrays or tables at `at`, never closed.
    DeepNesting {
        at: Index,
        depth: usize,
        opener: &'static str,
    },
}

const HUGE_NUMBERS: [&str; 8] = [
    "18446744073709551616",
    "-9223372036854775809",
    "340282366920938463463374607431768211456",
    "1e999",
    "-0",
    "4294967296",
    "99999999999999999999999999999999999999999999999999999999999999999",
    "0.0000000000000000000000000000000000000000000000000000001",
];
const OPENERS: [&str; 5] = ["[", "{\"a\":", "a = [", "[a", "{a={"];

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<Index>(), 0u8..8).prop_map(|(at, bit)| Mutation::FlipBit { at, bit }),
        (any::<Index>(), any::<u8>()).prop_map(|(at, byte)| Mutation::SetByte { at, byte }),
        any::<Index>().prop_map(|at| Mutation::Truncate { at }),
        (any::<Index>(), 0usize..64, any::<Index>(), any::<Index>(), 0usize..256)
            .prop_map(|(at, len, seed, from, take)| Mutation::Splice { at, len, seed, from, take }),
        (any::<Index>(), prop::collection::vec(any::<u8>(), 1..16))
            .prop_map(|(at, bytes)| Mutation::Insert { at, bytes }),
        (any::<Index>(), 1usize..64).prop_map(|(at, len)| Mutation::Remove { at, len }),
        (any::<Index>(), prop::sample::select(&HUGE_NUMBERS[..]))
            .prop_map(|(at, number)| Mutation::HugeNumber { at, number }),
        (any::<Index>(), 1usize..20_000, prop::sample::select(&OPENERS[..]))
            .prop_map(|(at, depth, opener)| Mutation::DeepNesting { at, depth, opener }),
    ]
}

impl Mutation {
    fn apply(&self, input: &mut Vec<u8>, corpus: &[Vec<u8>]) {
        let position = |at: &Index, input: &Vec<u8>| at.index(input.len() + 1);
        match self {
            Mutation::FlipBit { at, bit } if !input.is_empty() => {
                let i = at.index(input.len());
                input[i] ^= 1 << bit;
            }
            Mutation::SetByte { at, byte } if !input.is_empty() => {
                let i = at.index(input.len());
                input[i] = *byte;
            }
            Mutation::Truncate { at } => input.truncate(position(at, input)),
            Mutation::Splice { at, len, seed, from, take } => {
                let donor = &corpus[seed.index(corpus.len())];
                let start = from.index(donor.len() + 1);
                let piece = donor[start..(start + take).min(donor.len())].to_vec();
                let i = position(at, input);
                let end = (i + len).min(input.len());
                input.splice(i..end, piece);
            }
            Mutation::Insert { at, bytes } => {
                let i = position(at, input);
                input.splice(i..i, bytes.iter().copied());
            }
            Mutation::Remove { at, len } => {
                let i = position(at, input);
                let end = (i + len).min(input.len());
                input.drain(i..end);
            }
            Mutation::HugeNumber { at, number } => {
                let i = position(at, input);
                let start = input[i..].iter().position(u8::is_ascii_digit).map_or(input.len(), |p| i + p);
                let end = input[start..].iter().position(|b| !b.is_ascii_digit()).map_or(input.len(), |p| start + p);
                input.splice(start..end, number.bytes());
            }
            Mutation::DeepNesting { at, depth, opener } => {
                let i = position(at, input);
                input.splice(i..i, opener.repeat(*depth).into_bytes());
            }
            Mutation::FlipBit { .. } | Mutation::SetByte { .. } => {}
        }
    }
}

/// A seed of `corpus` with a few mutations, or (one time in eight) arbitrary bytes.
fn input(corpus: Arc<Vec<Vec<u8>>>) -> impl Strategy<Value = Vec<u8>> {
    let count = corpus.len();
    prop_oneof![
        1 => prop::collection::vec(any::<u8>(), 0..1024),
        7 => (0..count, prop::collection::vec(mutation(), 1..6)).prop_map(move |(seed, mutations)| {
            let mut bytes = corpus[seed].clone();
            for mutation in &mutations {
                mutation.apply(&mut bytes, &corpus);
            }
            bytes
        }),
    ]
}

/// A directory holding only `case/`, the directory a file reader is given:
/// after the reader ran, anything else in it was written outside.
struct Sandbox {
    root: tempfile::TempDir,
}

impl Sandbox {
    fn new() -> Sandbox {
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir(root.path().join("case")).unwrap();
        Sandbox { root }
    }

    fn dir(&self) -> PathBuf {
        self.root.path().join("case")
    }

    fn assert_nothing_written_outside(&self) {
        let entries: Vec<_> = std::fs::read_dir(self.root.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(entries, vec![std::ffi::OsString::from("case")], "a reader wrote outside its directory");
    }
}

fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap())
}

/// Parse `bytes` as a plan file and render whatever it says, as `validate` would.
fn plan_reader(bytes: &[u8], base_dir: &Path) {
    let text = String::from_utf8_lossy(bytes);
    if let Err(error) = gpufleet::plan::parse("fuzz.toml", &text, base_dir, &Catalog::builtin()) {
        let _ = error.render_plain();
        let _ = format!("{:?}", miette::Report::new(error));
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn fuzz_plan_parser(bytes in input(seeds("plan"))) {
        let sandbox = Sandbox::new();
        plan_reader(&bytes, &sandbox.dir());
        sandbox.assert_nothing_written_outside();
    }

    #[test]
    fn fuzz_saved_plan_reader(bytes in input(seeds("saved_plan"))) {
        let sandbox = Sandbox::new();
        let path = sandbox.dir().join("saved.json");
        std::fs::write(&path, &bytes).unwrap();
        match SavedPlan::detect(&path, &bytes) {
            Ok(Some(saved)) => {
                let multicloud = common::repo().join("plans/multicloud.toml");
                let catalog = Catalog::builtin();
                let plan = gpufleet::plan::load(&multicloud, &catalog, gpufleet::plan::LoadOptions::default()).unwrap();
                if let Err(error) = saved.check_against(&plan, &catalog) {
                    let _ = error.to_string();
                }
            }
            Ok(None) => plan_reader(&bytes, &sandbox.dir()),
            Err(error) => {
                let _ = error.to_string();
            }
        }
        sandbox.assert_nothing_written_outside();
    }

    #[test]
    fn fuzz_state_reader(bytes in input(seeds("state"))) {
        let sandbox = Sandbox::new();
        let backend = LocalBackend::new(sandbox.dir());
        std::fs::write(backend.state_path("fuzz").unwrap(), &bytes).unwrap();
        if let Err(error) = runtime().block_on(backend.load("fuzz")) {
            let _ = error.to_string();
        }
        sandbox.assert_nothing_written_outside();
    }

    #[test]
    fn fuzz_journal_reader(bytes in input(seeds("journal"))) {
        let sandbox = Sandbox::new();
        let path = sandbox.dir().join("fuzz.journal.jsonl");
        std::fs::write(&path, &bytes).unwrap();
        let entries = Journal::entries(&path).unwrap();
        let _ = open_intents_of(entries.clone());
        let _ = unfinished_moves_of(entries);
        sandbox.assert_nothing_written_outside();
    }

    #[test]
    fn fuzz_refreshed_catalog_reader(bytes in input(seeds("refreshed_catalog"))) {
        let sandbox = Sandbox::new();
        let path = sandbox.dir().join("refreshed.json");
        std::fs::write(&path, &bytes).unwrap();
        match RefreshedCatalog::read(&path) {
            Ok(Some(refreshed)) => {
                // Whatever reads back merges into a catalog that plans validate against.
                let merged = Catalog::builtin().with_refreshed(&refreshed);
                let _ = merged.offerings();
                let multicloud = common::repo().join("plans/multicloud.toml");
                let _ = gpufleet::plan::load(&multicloud, &merged, gpufleet::plan::LoadOptions::default());
            }
            Ok(None) => unreachable!("the file was just written"),
            Err(error) => {
                let _ = error.to_string();
            }
        }
        sandbox.assert_nothing_written_outside();
    }

    #[test]
    fn fuzz_lock_reader(bytes in input(seeds("lock"))) {
        let sandbox = Sandbox::new();
        let path = sandbox.dir().join("fuzz.lock");
        std::fs::write(&path, &bytes).unwrap();
        let me = Holder::this_process("fuzz", chrono::Utc::now(), DEFAULT_LEASE);
        match StateLock::acquire("fuzz", &path, me) {
            Ok(lock) => drop(lock),
            Err(error) => {
                let _ = error.to_string();
            }
        }
        sandbox.assert_nothing_written_outside();
    }
}

/// One simulator per protocol target, shared by its cases.
struct Sim {
    sim: common::InProcessSim,
    client: reqwest::Client,
}

impl Sim {
    fn start() -> Sim {
        let sim = runtime().block_on(common::InProcessSim::start(None));
        Sim { sim, client: reqwest::Client::new() }
    }

    /// Send a request written as `METHOD PATH`, a blank line, the body. The
    /// simulator must answer it, whatever it is: a panic in a handler drops
    /// the connection instead.
    fn send(&self, request: &[u8]) {
        let split = request.windows(2).position(|w| w == b"\n\n");
        let (head, body) = match split {
            Some(at) => (&request[..at], &request[at + 2..]),
            None => (request, &[][..]),
        };
        let head = String::from_utf8_lossy(head);
        let (method, target) = head.split_once(' ').unwrap_or(("POST", &head));
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap_or(reqwest::Method::POST);
        // Path and query set apart, so that no mutation sends the request to another host.
        let (path, query) = target.trim_end().split_once('?').map_or((target.trim_end(), None), |(p, q)| (p, Some(q)));
        let mut url = reqwest::Url::parse(&self.sim.url).unwrap();
        url.set_path(path);
        url.set_query(query);
        let request = self
            .client
            .request(method, url)
            .header("authorization", "AWS4-HMAC-SHA256 Credential=AKID/20260101/us-east-1/ec2/aws4_request")
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body.to_vec());
        let answered = runtime().block_on(async { request.send().await?.bytes().await });
        match answered {
            Ok(_) => {}
            // A request the client cannot even build (a URL it refuses) never reached the simulator.
            Err(error) if error.is_builder() => {}
            Err(error) => panic!("the simulator did not answer: {error}"),
        }
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn fuzz_sim_ec2_decoder(request in input(seeds("ec2"))) {
        static SIM: OnceLock<Sim> = OnceLock::new();
        SIM.get_or_init(Sim::start).send(&request);
    }

    #[test]
    fn fuzz_sim_gce_decoder(request in input(seeds("gce"))) {
        static SIM: OnceLock<Sim> = OnceLock::new();
        SIM.get_or_init(Sim::start).send(&request);
    }

    #[test]
    fn fuzz_sim_arm_decoder(request in input(seeds("arm"))) {
        static SIM: OnceLock<Sim> = OnceLock::new();
        SIM.get_or_init(Sim::start).send(&request);
    }
}

/// Found by `fuzz_plan_parser`: miette pads up to a problem's column with a
/// format width, which Rust caps at 65,535, so a problem further right on
/// its line panicked the terminal rendering of `gpufleet validate`.
#[test]
fn a_problem_far_right_on_a_long_line_renders_without_panicking() {
    let text = format!("{}name = 1\n", " ".repeat(70_000));
    let error = gpufleet::plan::parse("wide.toml", &text, Path::new("."), &Catalog::builtin()).unwrap_err();
    let rendered = format!("{:?}", miette::Report::new(error.clone()));
    let far = error.diagnostics().iter().find(|d| d.column() > Some(70_000)).expect("a problem past column 70,000");
    assert!(rendered.contains(far.message()), "{rendered}");
}
