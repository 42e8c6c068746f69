//! `gpufleet validate PLAN`: the format and the catalog check, nothing else.

use super::context::load_plan;
use super::{Exit, Failure, ValidateArgs};

pub fn run(args: &ValidateArgs) -> Result<Exit, Failure> {
    let (plan, _) = load_plan(&args.plan, &args.plan_file, &args.state_dir)?;
    println!("{} is valid: plan `{}` with {} fleet(s)", args.plan.display(), plan.name, plan.fleets.len());
    for fleet in plan.fleets.values() {
        println!(
            "  {}: {} node(s) of {}×{} (min {}, {:?})",
            fleet.name, fleet.nodes, fleet.gpus_per_node, fleet.gpu, fleet.min_nodes, fleet.placement
        );
    }
    Ok(Exit::Ok)
}
