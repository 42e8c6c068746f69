//! `gpufleet sim serve` and `gpufleet sim advance`.

use super::{Exit, Failure, SimAdvanceArgs, SimServeArgs, sim_failure};

pub async fn serve(args: &SimServeArgs) -> Result<Exit, Failure> {
    let latency = args.latency.map(Into::into);
    crate::sim::run_server(&args.listen, args.scenario.as_deref(), args.world.as_deref(), latency)
        .await
        .map_err(sim_failure)?;
    Ok(Exit::Ok)
}

pub fn advance(args: &SimAdvanceArgs) -> Result<Exit, Failure> {
    let now = crate::sim::advance_embedded(&args.state_dir, *args.duration).map_err(sim_failure)?;
    println!("simulated time is now {}", now.to_rfc3339_opts(chrono::SecondsFormat::Secs, true));
    Ok(Exit::Ok)
}
