//! `gpufleet state list` and `gpufleet state show`.

use super::render::{instance_json, instance_table};
use super::{Exit, Failure, StateListArgs, StateShowArgs, failure};
use crate::providers::Instance;
use crate::state::LocalBackend;
use std::path::Path;

/// Every (plan, instance) the state directory knows, optionally for one plan.
fn rows(state_dir: &Path, only: Option<&str>) -> Result<Vec<(String, Instance)>, Failure> {
    let backend = LocalBackend::new(state_dir);
    let mut rows = Vec::new();
    for plan in backend.list_plans()? {
        if only.is_some_and(|p| p != plan) {
            continue;
        }
        let state = backend.read(&plan)?;
        rows.extend(state.instances.into_iter().map(|i| (plan.clone(), i)));
    }
    Ok(rows)
}

pub fn list(args: &StateListArgs) -> Result<Exit, Failure> {
    let rows = rows(&args.state_dir, args.plan.as_deref())?;
    if args.json {
        let list: Vec<_> = rows.iter().map(|(plan, i)| instance_json(plan, i)).collect();
        println!("{}", serde_json::to_string_pretty(&list).expect("JSON values serialize"));
    } else if rows.is_empty() {
        println!("No instances in state under {}.", args.state_dir.display());
    } else {
        print!("{}", instance_table(&rows));
    }
    Ok(Exit::Ok)
}

pub fn show(args: &StateShowArgs) -> Result<Exit, Failure> {
    let rows = rows(&args.state_dir, None)?;
    let Some((plan, instance)) = rows.iter().find(|(_, i)| i.id == args.id) else {
        return Err(failure(
            format!("no instance {} in the state under {}", args.id, args.state_dir.display()),
            "`gpufleet state list` shows the instances the state knows",
        ));
    };
    let value = instance_json(plan, instance);
    if args.json {
        println!("{}", serde_json::to_string_pretty(&value).expect("JSON values serialize"));
    } else if let Some(fields) = value.as_object() {
        for (key, v) in fields {
            let text = v.as_str().map(str::to_string).unwrap_or_else(|| v.to_string());
            println!("{key:<14} {text}");
        }
    }
    Ok(Exit::Ok)
}
