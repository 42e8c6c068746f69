//! Planner speed as a ratio against a baseline measured in the same run:
//! planning a 10-fleet plan over N observed instances, N = 10 (baseline),
//! 1 000 and 10 000. Ratios, not absolute times, because these machines are
//! noisy; a linear planner shows ratios near N / 10.
//!
//! Run: `cargo bench --bench planner` (optimized), or `cargo bench --profile dev
//! --bench planner` to reuse the debug build.

#[path = "support/mod.rs"]
mod support;

use chrono::{TimeZone, Utc};
use gpufleet::catalog::Catalog;
use gpufleet::model::Instance;
use std::hint::black_box;
use std::path::Path;
use std::time::{Duration, Instant};

const FLEETS: usize = 10;

fn plan_text() -> String {
    let mut text = String::from(
        "name = \"bench\"\n[providers.aws]\nregions = [\"us-east-1\", \"us-west-2\", \"us-east-2\", \"eu-west-2\"]\n",
    );
    for f in 0..FLEETS {
        let gpu = ["H100", "L4", "A100-80GB"][f % 3];
        text.push_str(&format!(
            "[fleets.f{f}]\ngpu = \"{gpu}\"\ngpus_per_node = 8\nnodes = 1000\nmin_nodes = 1\n\
             image = {{ aws = \"ami-0123456789abcdef0\" }}\n"
        ));
    }
    text
}

/// Median time of one plan over `observed`, from enough repetitions to last ~1 s.
fn measure(plan: &gpufleet::plan::Plan, observed: &[Instance], catalog: &Catalog) -> Duration {
    let now = Utc.with_ymd_and_hms(2026, 1, 1, 12, 0, 0).unwrap();
    let once = || black_box(gpufleet::planner::plan(plan, observed, &[], catalog, now));
    let start = Instant::now();
    once();
    let single = start.elapsed().max(Duration::from_micros(1));
    let reps = (Duration::from_secs(1).as_nanos() / single.as_nanos()).clamp(5, 10_000) as usize;
    let mut samples: Vec<Duration> = (0..reps)
        .map(|_| {
            let t = Instant::now();
            once();
            t.elapsed()
        })
        .collect();
    samples.sort();
    samples[samples.len() / 2]
}

fn main() {
    let catalog = Catalog::builtin();
    let plan = gpufleet::plan::parse("bench.toml", &plan_text(), Path::new("."), &catalog)
        .unwrap_or_else(|e| panic!("{}", e.render_plain()));
    let baseline_n = 10;
    let baseline = measure(&plan, &support::observed(baseline_n, &plan, &catalog), &catalog);
    println!("planner, {FLEETS} fleets: baseline N={baseline_n}: {baseline:?} per plan");
    for n in [1_000, 10_000] {
        let t = measure(&plan, &support::observed(n, &plan, &catalog), &catalog);
        println!(
            "N={n:>6}: {t:?} per plan, {:.1}× baseline ({:.3}× per instance)",
            t.as_secs_f64() / baseline.as_secs_f64(),
            (t.as_secs_f64() / n as f64) / (baseline.as_secs_f64() / baseline_n as f64)
        );
    }
}
