//! `gpufleet state list`, `show`, `forget`, `unlock`, `repair`, `push` and
//! `pull`, and `gpufleet history`.

use super::context::open_state;
use super::render::{instance_json, instance_table};
use super::{
    Exit, Failure, HistoryArgs, StateCopyArgs, StateForgetArgs, StateListArgs, StatePullArgs, StatePushArgs,
    StateRepairArgs, StateShowArgs, StateUnlockArgs, failure,
};
use crate::files::write_atomic;
use crate::model::{Clock, Instance, SystemClock, printable};
use crate::state::history::HistoryEntry;
use crate::state::lock::{DEFAULT_LEASE, Holder};
use crate::state::postgres::PostgresBackend;
use crate::state::{LocalBackend, PlanCopy, Repaired, StateBackend};
use std::path::Path;

/// Every (plan, instance) the state knows, optionally for one plan.
async fn rows(backend: &dyn StateBackend, only: Option<&str>) -> Result<Vec<(String, Instance)>, Failure> {
    let mut rows = Vec::new();
    for plan in backend.list_plans().await? {
        if only.is_some_and(|p| p != plan) {
            continue;
        }
        let state = backend.load(&plan).await?;
        rows.extend(state.instances.into_iter().map(|i| (plan.clone(), i)));
    }
    Ok(rows)
}

pub async fn list(args: &StateListArgs) -> Result<Exit, Failure> {
    let backend = open_state(&args.state).await?;
    let rows = rows(backend.as_ref(), args.plan.as_deref()).await?;
    if args.json {
        let list: Vec<_> = rows.iter().map(|(plan, i)| instance_json(plan, i)).collect();
        println!("{}", serde_json::to_string_pretty(&list).expect("JSON values serialize"));
    } else if rows.is_empty() {
        println!("No instances in state under {}.", backend.location());
    } else {
        print!("{}", instance_table(&rows));
    }
    Ok(Exit::Ok)
}

pub async fn show(args: &StateShowArgs) -> Result<Exit, Failure> {
    let backend = open_state(&args.state).await?;
    let rows = rows(backend.as_ref(), None).await?;
    let Some((plan, instance)) = rows.iter().find(|(_, i)| i.id == args.id) else {
        return Err(failure(
            format!("no instance {} in the state under {}", args.id, backend.location()),
            "`gpufleet state list` shows the instances the state knows",
        ));
    };
    let value = instance_json(plan, instance);
    if args.json {
        println!("{}", serde_json::to_string_pretty(&value).expect("JSON values serialize"));
    } else if let Some(fields) = value.as_object() {
        for (key, v) in fields {
            let text = v.as_str().map(str::to_string).unwrap_or_else(|| v.to_string());
            println!("{key:<14} {}", printable(&text));
        }
    }
    Ok(Exit::Ok)
}

/// Drop instances from a plan's state without touching the clouds: the way
/// out for instances in a scope gpufleet can no longer reach, once they have
/// been deleted by hand.
pub async fn forget(args: &StateForgetArgs) -> Result<Exit, Failure> {
    let backend = open_state(&args.state).await?;
    let now = SystemClock.now().await?;
    let lock = backend.lock(&args.plan, Holder::this_process("state forget", now, DEFAULT_LEASE)).await?;
    let mut state = backend.load(&args.plan).await?;
    let unknown: Vec<&str> =
        args.ids.iter().filter(|id| !state.instances.iter().any(|i| &i.id == *id)).map(String::as_str).collect();
    if !unknown.is_empty() {
        return Err(failure(
            format!("plan `{}` has no instance {} in its state", args.plan, unknown.join(", ")),
            format!("`gpufleet state list --plan {}` shows the instances the state knows", args.plan),
        ));
    }
    let (forgotten, kept): (Vec<Instance>, Vec<Instance>) =
        std::mem::take(&mut state.instances).into_iter().partition(|i| args.ids.contains(&i.id));
    state.instances = kept;
    backend.save(&mut state).await?;
    drop(lock);
    backend.close().await;
    println!("Forgot {} instance(s) of plan `{}`:", forgotten.len(), args.plan);
    for instance in &forgotten {
        let line =
            format!("  {} {} {}", instance.cloud, instance.zone.as_deref().unwrap_or(&instance.region), instance.id);
        println!("{}", printable(&line));
    }
    println!("gpufleet no longer tracks them: if they still run, they keep costing until deleted in the cloud.");
    Ok(Exit::Ok)
}

/// `gpufleet state unlock PLAN --force --reason TEXT`: take the lock over,
/// whoever holds it, and record the takeover in the plan's history.
pub async fn unlock(args: &StateUnlockArgs) -> Result<Exit, Failure> {
    if args.reason.trim().is_empty() {
        return Err(failure("--reason is empty", "say why the lock is taken over; the history keeps it"));
    }
    let backend = open_state(&args.state).await?;
    let now = SystemClock.now().await?;
    let me = Holder::this_process("state unlock --force", now, DEFAULT_LEASE);
    let (lock, previous) = backend.take_over(&args.plan, me).await?;
    let from = previous.as_ref().map_or_else(|| "no recorded holder".to_string(), |h| h.to_string());
    let state = backend.load(&args.plan).await?;
    let history = backend.history(&args.plan).await?;
    let note = format!("took the lock over from {from}: {}", args.reason.trim());
    let entry = HistoryEntry::takeover(history.last(), &state, lock.holder(), note);
    backend.append_history(&args.plan, &entry).await?;
    drop(lock);
    backend.close().await;
    println!("Took over the lock of plan `{}` from {from}; it is free now.", args.plan);
    if previous.is_some() {
        println!("If that run is still going, it stops before its next cloud call; the next apply finishes its work.");
    }
    Ok(Exit::Ok)
}

/// `gpufleet state repair PLAN`: the way out of a state that no longer
/// reads, under the plan's lock so that no run writes meanwhile.
pub async fn repair(args: &StateRepairArgs) -> Result<Exit, Failure> {
    let backend = open_state(&args.state).await?;
    let now = SystemClock.now().await?;
    let lock = backend.lock(&args.plan, Holder::this_process("state repair", now, DEFAULT_LEASE)).await?;
    let repaired = backend.repair(&args.plan, now).await;
    drop(lock);
    backend.close().await;
    let plan = &args.plan;
    match repaired? {
        Repaired::Healthy => println!("The state of plan `{plan}` reads; nothing to repair."),
        Repaired::FromBackup { serial, kept } => {
            println!("Restored the state of plan `{plan}` from before its last save (serial {serial}).");
            println!("The damaged state is kept as {kept}.");
            println!("The next `gpufleet plan` or `apply` refreshes it from the clouds.");
        }
        Repaired::StartedOver { kept } => {
            println!("The state of plan `{plan}` started over, empty: no earlier state was readable.");
            println!("The damaged state is kept as {kept}.");
            println!(
                "The next `gpufleet plan` or `apply` re-adopts the plan's instances from the clouds by their \
                 ownership tags, in the scopes the plan configures; shortage memory starts empty."
            );
        }
    }
    Ok(Exit::Ok)
}

/// `gpufleet history PLAN`: the plan's runs as a table, JSON, or an HTML page.
pub async fn history(args: &HistoryArgs) -> Result<Exit, Failure> {
    // A plan file names its plan; anything else is taken as the name.
    let path = Path::new(&args.plan);
    let name = if path.is_file() {
        super::context::load_plan(path, &Default::default(), &args.state.state_dir)?.0.name
    } else {
        args.plan.clone()
    };
    let backend = open_state(&args.state).await?;
    let entries = backend.history(&name).await?;
    if let Some(file) = &args.html {
        let page = crate::history_page::render(&name, &entries);
        write_atomic(file, page.as_bytes()).map_err(|e| {
            failure(
                format!("cannot write the history page to {}: {e}", file.display()),
                "check that gpufleet may create files in its directory",
            )
        })?;
        println!("Wrote {} run(s) of plan `{name}` to {}.", entries.len(), file.display());
    } else if args.json {
        println!("{}", serde_json::to_string_pretty(&entries).expect("history entries serialize"));
    } else if entries.is_empty() {
        println!("No history for plan `{name}` under {}.", backend.location());
    } else {
        print!("{}", super::render::history_table(&entries));
    }
    Ok(Exit::Ok)
}

/// `gpufleet state push --to URL`: local plans into the database.
pub async fn push(args: &StatePushArgs) -> Result<Exit, Failure> {
    let database = PostgresBackend::connect(&args.to).await?;
    copy(&LocalBackend::new(&args.copy.state_dir), &database, &args.copy).await
}

/// `gpufleet state pull --from URL`: database plans into the state directory.
pub async fn pull(args: &StatePullArgs) -> Result<Exit, Failure> {
    let database = PostgresBackend::connect(&args.from).await?;
    copy(&database, &LocalBackend::new(&args.copy.state_dir), &args.copy).await
}

/// Copy each plan whole (state, journal, history, serial and lineage kept),
/// holding its lock on both sides so no run changes either meanwhile.
async fn copy(from: &dyn StateBackend, to: &dyn StateBackend, args: &StateCopyArgs) -> Result<Exit, Failure> {
    let stored = from.list_plans().await?;
    let plans = if args.plans.is_empty() { stored.clone() } else { args.plans.clone() };
    if let Some(missing) = plans.iter().find(|p| !stored.contains(p)) {
        return Err(failure(
            format!("plan `{missing}` has no state in {}", from.location()),
            "`gpufleet state list` shows the plans a state location holds",
        ));
    }
    let copied = async {
        for plan in &plans {
            let now = SystemClock.now().await?;
            let holder = || Holder::this_process("state copy", now, DEFAULT_LEASE);
            let _source = from.lock(plan, holder()).await?;
            let _target = to.lock(plan, holder()).await?;
            let copied = PlanCopy::read(from, plan).await?;
            to.import(&copied, args.force).await?;
            println!(
                "Copied plan `{plan}` (serial {}, {} instance(s), {} journal entries, {} runs) from {} to {}.",
                copied.state.serial,
                copied.state.instances.len(),
                copied.journal.len(),
                copied.history.len(),
                from.location(),
                to.location()
            );
        }
        Ok::<(), Failure>(())
    }
    .await;
    // The locks are released whatever happened, so a retry need not wait.
    from.close().await;
    to.close().await;
    copied?;
    if plans.is_empty() {
        println!("No plans with state in {}.", from.location());
    }
    Ok(Exit::Ok)
}
