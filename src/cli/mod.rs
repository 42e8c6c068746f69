//! The command line: clap definitions, per-command glue, rendering.
//!
//! Exit codes: 0 success, 1 error, 2 changes present (`plan --detailed-exitcode`)
//! or a partial fill (`apply`).

mod args;
pub use args::*;

use clap::Parser;
use std::process::ExitCode;

/// Entry point of the binary.
pub fn main() -> ExitCode {
    let cli = Cli::parse_from(args::normalize(std::env::args_os()));
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(report) => {
            eprintln!("{report:?}");
            ExitCode::from(1)
        }
    }
}

async fn run(cli: Cli) -> miette::Result<ExitCode> {
    match cli.command {
        Command::Sim(SimArgs { command: SimCommand::Serve(a) }) => {
            crate::sim::run_server(a.listen, a.scenario.as_deref(), a.world.as_deref())
                .await
                .map_err(miette::Report::new)?;
            Ok(ExitCode::SUCCESS)
        }
        _ => Err(miette::miette!("not built yet")),
    }
}
