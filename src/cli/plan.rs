//! `gpufleet plan PLAN`: refresh, compute the changeset, show it; optionally save it.

use super::context::{Connected, load_plan, lock};
use super::render::{Detail, changeset_json, changeset_text};
use super::{Exit, Failure, PlanArgs, io_failure};
use crate::apply::{self, NoEvents, SavedPlan, digest};

pub async fn run(args: &PlanArgs) -> Result<Exit, Failure> {
    let (plan, catalog) = load_plan(&args.plan, &args.target.plan_file, &args.target.state.state_dir)?;
    let plan_bytes = std::fs::read(&args.plan).map_err(io_failure(args.plan.display()))?;
    let connected = Connected::open(&plan, &args.target).await?;
    let result = async {
        let never = apply::Stop::default();
        let session = connected.session(&plan, &catalog, &NoEvents, &never);
        let _lock = lock(&session, "plan", *args.target.lock_timeout).await?;
        let refreshed = apply::refresh(&session).await?;
        let changeset = apply::changeset(&session, &refreshed);
        if args.json {
            println!("{}", serde_json::to_string_pretty(&changeset_json(&changeset)).expect("JSON values serialize"));
        } else {
            println!(
                "gpufleet plan `{}`: {} instance(s) owned now, at {}\n",
                plan.name,
                refreshed.state.instances.len(),
                refreshed.now.format("%Y-%m-%d %H:%M:%S UTC")
            );
            if !refreshed.open_intents.is_empty() {
                println!(
                    "  note: {} call(s) of an interrupted run are reconciled from what the clouds report\n",
                    refreshed.open_intents.len()
                );
            }
            anstream::print!("{}", changeset_text(&changeset, Detail::of(args.verbose)));
        }
        if let Some(out) = &args.out {
            let saved = SavedPlan {
                kind: apply::SAVED_PLAN_KIND.to_string(),
                format_version: apply::SAVED_PLAN_FORMAT_VERSION,
                plan_path: args.plan.clone(),
                plan_digest: digest(&plan_bytes),
                state_lineage: refreshed.state.lineage.clone(),
                state_serial: refreshed.serial_read,
                observed: refreshed.observed_ids(),
                changeset: changeset.clone(),
                file: out.clone(),
            };
            saved.write(out)?;
            if !args.json {
                println!("\nSaved to {}; `gpufleet apply {}` executes exactly this.", out.display(), out.display());
            }
        }
        Ok(if args.detailed_exitcode && !changeset.is_empty() { Exit::Changes } else { Exit::Ok })
    }
    .await;
    connected.close().await?;
    result
}
