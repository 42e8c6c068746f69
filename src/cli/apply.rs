//! `gpufleet apply` and `gpufleet destroy`.

use super::context::{Connected, load_plan, lock};
use super::progress::{JsonLines, Progress};
use super::render::{Detail, changeset_json, changeset_text, report_text};
use super::{ApplyArgs, DestroyArgs, Exit, Failure, RebalanceArgs, RunArgs, failure, io_failure};
use crate::apply::{self, ApplyReport, EventSink, Mode, SavedPlan, digest};
use crate::model::printable;
use crate::planner;
use crate::rebalance::metrics::Metrics;
use crate::rebalance::{self, Pace, Watch};
use std::io::{BufRead, IsTerminal, Write};
use std::path::Path;
use std::sync::Arc;

pub async fn run_apply(args: &ApplyArgs) -> Result<Exit, Failure> {
    let bytes = std::fs::read(&args.plan).map_err(|e| {
        failure(
            format!("cannot read {}: {e}", args.plan.display()),
            "pass a plan file or a plan saved with `plan --out`",
        )
    })?;
    let saved = SavedPlan::detect(&args.plan, &bytes)?;
    let plan_path = saved.as_ref().map_or(args.plan.clone(), |s| s.plan_path.clone());
    if let Some(saved) = &saved {
        let current = std::fs::read(&plan_path).map_err(|e| {
            failure(
                format!(
                    "cannot read {}, the plan file of the saved plan {}: {e}",
                    plan_path.display(),
                    args.plan.display()
                ),
                "run `gpufleet plan PLAN --out FILE` again from where the plan file is",
            )
        })?;
        if digest(&current) != saved.plan_digest {
            return Err(failure(
                format!("{} changed since the saved plan {} was made", plan_path.display(), args.plan.display()),
                "run `gpufleet plan --out FILE` again",
            ));
        }
        let (plan, catalog) = load_plan(&plan_path, &args.run.target.plan_file, &args.run.target.state.state_dir)?;
        saved.check_against(&plan, &catalog).map_err(|e| {
            failure(e, "a saved plan is executed as `plan --out` wrote it; run `gpufleet plan --out FILE` again")
        })?;
    }
    let mode = match saved {
        Some(saved) => Mode::Saved(Box::new(saved)),
        None => Mode::Apply,
    };
    execute(&plan_path, &args.run, mode, "Apply", false).await
}

pub async fn run_destroy(args: &DestroyArgs) -> Result<Exit, Failure> {
    execute(&args.plan, &args.run, Mode::Destroy, "Destroy", false).await
}

/// One rebalance round. It runs unattended (a scheduler starts it), so it
/// never asks; `--dry-run` shows the round and changes nothing.
pub async fn run_rebalance(args: &RebalanceArgs) -> Result<Exit, Failure> {
    if args.watch {
        return watch_rebalance(args).await;
    }
    execute(&args.plan, &args.run, Mode::Rebalance, "Rebalance", args.dry_run).await
}

/// `rebalance --watch`: lead the plan's rebalancing until stopped, one round
/// every `--every`; each round is reported like a one-off `rebalance`.
async fn watch_rebalance(args: &RebalanceArgs) -> Result<Exit, Failure> {
    let run = &args.run;
    let (plan, catalog) = load_plan(&args.plan, &run.target.plan_file, &run.target.state.state_dir)?;
    let connected = Connected::open(&plan, &run.target).await?;
    let detail = Detail::of(run.verbose);
    let events: Box<dyn EventSink> = if run.json { Box::new(JsonLines) } else { Box::new(Progress::new(detail)) };
    let stop = super::context::stop_on_signal_or_deadline(run.deadline.map(Into::into));
    let every: std::time::Duration = args.every.map_or(plan.rebalance.every, Into::into);
    if every.is_zero() {
        return Err(failure(
            "--every 0s is not a usable time between rounds",
            "give a duration above zero, e.g. --every 5m",
        ));
    }
    let pace = Pace { every, poll: std::time::Duration::from_millis(200) };
    let metrics = Arc::new(Metrics::new());
    if let Some(addr) = args.metrics_listen {
        serve_metrics(addr, Arc::clone(&metrics)).await?;
    }
    let result = {
        let session = connected.session(&plan, &catalog, events.as_ref(), &stop);
        let mut report = |event: Watch<'_>| print_watch(&plan.name, event, run.json, detail);
        rebalance::watch(&session, pace, &metrics, &mut report).await
    };
    connected.close().await?;
    result?;
    Ok(Exit::Ok)
}

/// Serve `metrics` at `http://ADDR/metrics` for as long as the process runs.
async fn serve_metrics(addr: std::net::SocketAddr, metrics: Arc<Metrics>) -> Result<(), Failure> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| failure(format!("cannot listen on {addr} for metrics: {e}"), "pick a free port, or 0"))?;
    let bound = listener.local_addr().map_err(io_failure("the metrics listener"))?;
    let app = axum::Router::new().route(
        "/metrics",
        axum::routing::get(move || {
            let metrics = Arc::clone(&metrics);
            async move {
                let content_type = "application/openmetrics-text; version=1.0.0; charset=utf-8";
                ([(axum::http::header::CONTENT_TYPE, content_type)], metrics.encode())
            }
        }),
    );
    anstream::println!("metrics on http://{bound}/metrics");
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok(())
}

fn print_watch(plan: &str, event: Watch<'_>, json: bool, detail: Detail) {
    let line = match (event, json) {
        (Watch::Waiting { holder }, false) => {
            format!("waiting: {holder} leads the rebalancing of plan `{plan}`; taking over when it stops")
        }
        (Watch::Waiting { holder }, true) => serde_json::json!({ "event": "waiting", "leader": holder }).to_string(),
        (Watch::Leading { every }, false) => {
            format!("leading the rebalancing of plan `{plan}`: a round every {}", humantime::format_duration(every))
        }
        (Watch::Leading { every }, true) => {
            serde_json::json!({ "event": "leading", "every_seconds": every.as_secs() }).to_string()
        }
        (Watch::Round { at, report }, false) => {
            format!("round at {}:{}", at.format("%Y-%m-%d %H:%M:%S UTC"), report_text(report, "Rebalance", detail))
        }
        (Watch::Round { at, report }, true) => {
            serde_json::json!({ "event": "round", "at": at, "report": report }).to_string()
        }
        (Watch::RoundFailed { at, error, retry_in }, false) => {
            let retry = retry_in.map(|wait| format!("; retrying in {}", humantime::format_duration(wait)));
            format!("round at {} failed: {error}{}", at.format("%Y-%m-%d %H:%M:%S UTC"), retry.unwrap_or_default())
        }
        (Watch::RoundFailed { at, error, retry_in }, true) => serde_json::json!({
            "event": "round_failed",
            "at": at,
            "error": error.to_string(),
            "retry_in_seconds": retry_in.map(|wait| wait.as_secs_f64()),
        })
        .to_string(),
        (Watch::LeaseUnavailable { error, retry_in }, false) => {
            format!("cannot take the leader lease: {error}; retrying in {}", humantime::format_duration(retry_in))
        }
        (Watch::LeaseUnavailable { error, retry_in }, true) => serde_json::json!({
            "event": "lease_unavailable",
            "error": error.to_string(),
            "retry_in_seconds": retry_in.as_secs_f64(),
        })
        .to_string(),
        (Watch::LostLead, false) => {
            format!("lost the leader lease of plan `{plan}` to another rebalancer; waiting to lead again")
        }
        (Watch::LostLead, true) => serde_json::json!({ "event": "lost_lead" }).to_string(),
    };
    // Errors quote databases and clouds: shown printable (JSON escapes its own).
    anstream::println!("{}", printable(&line));
    let _ = std::io::stdout().flush();
}

async fn execute(plan_path: &Path, run: &RunArgs, mode: Mode, verb: &str, dry_run: bool) -> Result<Exit, Failure> {
    let json = run.json;
    let auto_approve = run.auto_approve || matches!(mode, Mode::Rebalance);
    let (plan, catalog) = load_plan(plan_path, &run.target.plan_file, &run.target.state.state_dir)?;
    let connected = Connected::open(&plan, &run.target).await?;
    let detail = Detail::of(run.verbose);
    let progress = (!json).then(|| Progress::new(detail));
    let events: &dyn EventSink = match &progress {
        Some(progress) => progress,
        None => &JsonLines,
    };
    let stop = super::context::stop_on_signal_or_deadline(run.deadline.map(Into::into));
    let result = async {
        let session = connected.session(&plan, &catalog, events, &stop);
        let lock = lock(&session, &verb.to_lowercase(), *run.target.lock_timeout).await?;
        let mut refreshed = apply::refresh(&session).await?;
        if !matches!(mode, Mode::Saved(_)) {
            let (instances, shortages) = (&refreshed.state.instances, &refreshed.state.shortages);
            let changeset = match mode {
                Mode::Destroy => planner::destroy(&plan.name, instances, &catalog),
                Mode::Rebalance => planner::rebalance::rebalance(&plan, instances, shortages, &catalog, refreshed.now),
                _ => apply::changeset(&session, &refreshed),
            };
            if dry_run {
                if json {
                    println!(
                        "{}",
                        serde_json::to_string_pretty(&changeset_json(&changeset)).expect("JSON values serialize")
                    );
                } else {
                    anstream::print!("{}", changeset_text(&changeset, detail));
                }
                return Ok(Exit::Ok);
            }
            if changeset.is_empty() && changeset.fleets.iter().all(|f| f.shortfall_reason.is_none()) {
                apply::record_refresh(&session, &mut refreshed).await?;
                apply::record_unchanged(&session, &verb.to_lowercase(), &refreshed).await?;
                if !json {
                    println!("No changes. The clouds match the plan.");
                }
                return Ok(Exit::Ok);
            }
            if !json {
                anstream::print!("{}", changeset_text(&changeset, detail));
            }
            if !auto_approve && !confirm(verb)? {
                return Err(failure(format!("{verb} cancelled."), "answer `yes` to proceed, or pass --auto-approve"));
            }
        }
        let report = apply::apply(&session, lock, mode, refreshed).await?;
        Ok(finish(&report, progress.as_ref(), verb, detail))
    }
    .await;
    connected.close().await?;
    result
}

/// Ask on the terminal; only `yes` proceeds.
fn confirm(verb: &str) -> Result<bool, Failure> {
    let stdin = std::io::stdin();
    if stdin.is_terminal() {
        print!("\nDo you want to perform these actions? Only 'yes' will be accepted: ");
        std::io::stdout().flush().map_err(io_failure("the terminal"))?;
    }
    let mut answer = String::new();
    let read = stdin.lock().read_line(&mut answer).map_err(io_failure("the terminal"))?;
    if read == 0 {
        return Err(failure(
            format!("{verb} needs confirmation, and there is no input to read it from"),
            "pass --auto-approve to run without asking",
        ));
    }
    Ok(answer.trim() == "yes")
}

/// The run's report: for people (`progress` is theirs) with a table of what
/// each fleet did where, or one JSON summary line.
fn finish(report: &ApplyReport, progress: Option<&Progress>, verb: &str, detail: Detail) -> Exit {
    match progress {
        None => {
            let summary = serde_json::json!({ "event": "summary", "partial": report.is_partial(), "report": report });
            println!("{summary}");
        }
        Some(progress) => {
            anstream::print!("{}", report_text(report, verb, detail));
            if let Some(table) = progress.summary() {
                anstream::print!("\n{table}");
            }
        }
    }
    if report.is_error() {
        Exit::Error
    } else if report.is_partial() {
        Exit::Changes
    } else {
        Exit::Ok
    }
}
