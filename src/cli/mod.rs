//! The command line: clap definitions, per-command glue, rendering.
//!
//! Each verb lives in its own file and is a short function over the library.
//! Exit codes ([`EXIT_CODES`], shown in `--help`): 0 success; 1 error,
//! usage errors included; 2 changes present (`plan --detailed-exitcode`), a
//! partial fill at or above `min_nodes` (`apply`), or fleets that can reach
//! only `min_nodes` (`check`).

mod apply;
mod args;
mod catalog;
mod check;
mod context;
mod plan;
mod progress;
pub mod render;
mod sim;
mod state;
mod validate;

pub use args::*;

use crate::model::printable;
use clap::Parser;
use std::io::IsTerminal;
use std::process::ExitCode;

/// What a command asks the process to exit with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    Ok,
    /// Changes present (`plan --detailed-exitcode`) or partial fill (`apply`).
    Changes,
    Error,
}

impl From<Exit> for ExitCode {
    fn from(exit: Exit) -> ExitCode {
        match exit {
            Exit::Ok => ExitCode::SUCCESS,
            Exit::Error => ExitCode::from(1),
            Exit::Changes => ExitCode::from(2),
        }
    }
}

/// Entry point of the binary.
/// Structured logs on stderr when `RUST_LOG` asks for them (e.g.
/// `RUST_LOG=gpufleet=info`); none otherwise, so output stays as documented.
fn init_logs() {
    if let Ok(filter) = tracing_subscriber::EnvFilter::try_from_default_env() {
        let colors = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
        let _ =
            tracing_subscriber::fmt().with_env_filter(filter).with_ansi(colors).with_writer(std::io::stderr).try_init();
    }
}

pub fn main() -> ExitCode {
    init_logs();
    let cli = match Cli::try_parse_from(args::normalize(std::env::args_os())) {
        Ok(cli) => cli,
        Err(e) => return usage_exit(&e),
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(exit) => exit.into(),
        Err(failure) => {
            failure.print();
            ExitCode::from(1)
        }
    }
}

/// `--help` and `--version` print and succeed; any other usage error prints
/// clap's message and exits 1, never clap's default 2, which would read as
/// "changes present" under `plan --detailed-exitcode`.
fn usage_exit(e: &clap::Error) -> ExitCode {
    use clap::error::ErrorKind;
    // Printing fails only on a closed stdout or stderr: nothing more to say then.
    let _ = e.print();
    match e.kind() {
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => ExitCode::SUCCESS,
        _ => ExitCode::from(1),
    }
}

async fn run(cli: Cli) -> Result<Exit, Failure> {
    match cli.command {
        Command::Validate(a) => validate::run(&a),
        Command::Plan(a) => plan::run(&a).await,
        Command::Check(a) => check::run(&a).await,
        Command::Apply(a) => apply::run_apply(&a).await,
        Command::Destroy(a) => apply::run_destroy(&a).await,
        Command::Rebalance(a) => apply::run_rebalance(&a).await,
        Command::State(StateArgs { command: StateCommand::List(a) }) => state::list(&a).await,
        Command::State(StateArgs { command: StateCommand::Show(a) }) => state::show(&a).await,
        Command::State(StateArgs { command: StateCommand::Forget(a) }) => state::forget(&a).await,
        Command::State(StateArgs { command: StateCommand::Unlock(a) }) => state::unlock(&a).await,
        Command::State(StateArgs { command: StateCommand::Repair(a) }) => state::repair(&a).await,
        Command::State(StateArgs { command: StateCommand::Push(a) }) => state::push(&a).await,
        Command::State(StateArgs { command: StateCommand::Pull(a) }) => state::pull(&a).await,
        Command::History(a) => state::history(&a).await,
        Command::Schema => {
            let schema = crate::plan::json_schema();
            println!("{}", serde_json::to_string_pretty(&schema).expect("a JSON value serializes"));
            Ok(Exit::Ok)
        }
        Command::Sim(SimArgs { command: SimCommand::Serve(a) }) => sim::serve(&a).await,
        Command::Sim(SimArgs { command: SimCommand::Advance(a) }) => sim::advance(&a),
        Command::Catalog(CatalogArgs { command: CatalogCommand::Refresh(a) }) => catalog::refresh(&a).await,
    }
}

/// A failed command, rendered for the user at the top.
pub enum Failure {
    /// Plan file problems: rendered with source snippets on a terminal, as
    /// `file:line:col: error: ...` lines otherwise.
    Plan(crate::plan::PlanError),
    /// Anything else, with context and a hint.
    Other(miette::Report),
}

impl Failure {
    fn print(self) {
        let terminal = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
        match self {
            Failure::Plan(e) if terminal => eprintln!("{:?}", miette::Report::new(e)),
            Failure::Plan(e) => eprint!("{}", e.render_plain()),
            Failure::Other(report) => {
                let report = miette::Report::new(Printable::of(&report));
                if terminal {
                    eprintln!("{report:?}");
                } else {
                    eprint!("{}", plain(&report));
                }
            }
        }
    }
}

/// A report with all its text made [`printable`]: errors quote what files,
/// database rows and clouds said, and none of it may reach the terminal raw.
#[derive(Debug)]
struct Printable {
    message: String,
    help: Option<String>,
    cause: Option<Box<Printable>>,
}

impl Printable {
    fn of(report: &miette::Report) -> Printable {
        let cause = report.chain().skip(1).collect::<Vec<_>>().into_iter().rev().fold(None, |inner, cause| {
            Some(Box::new(Printable { message: printable(&cause.to_string()).into_owned(), help: None, cause: inner }))
        });
        // Help texts are gpufleet's own, and may span lines.
        let help = report.help().map(|help| help.to_string().lines().map(printable).collect::<Vec<_>>().join("\n"));
        Printable { message: printable(&report.to_string()).into_owned(), help, cause }
    }
}

impl std::fmt::Display for Printable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Printable {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.cause.as_deref().map(|cause| cause as &(dyn std::error::Error + 'static))
    }
}

impl miette::Diagnostic for Printable {
    fn help<'a>(&'a self) -> Option<Box<dyn std::fmt::Display + 'a>> {
        self.help.as_ref().map(|help| Box::new(help) as Box<dyn std::fmt::Display>)
    }
}

/// A report off a terminal: the error, each cause under it, then the help.
fn plain(report: &miette::Report) -> String {
    let mut out = format!("error: {report}\n");
    let mut seen = report.to_string();
    for cause in report.chain().skip(1) {
        let text = cause.to_string();
        // Causes a message already quotes are not said twice.
        if !seen.contains(&text) {
            out.push_str(&format!("  caused by: {text}\n"));
            seen.push_str(&text);
        }
    }
    if let Some(help) = report.help() {
        out.push_str(&format!("  help: {help}\n"));
    }
    out
}

impl<E: miette::Diagnostic + Send + Sync + 'static> From<E> for Failure {
    /// Keeps the error whole: its causes and its help reach the user.
    fn from(e: E) -> Failure {
        Failure::Other(miette::Report::new(e))
    }
}

/// A simulator error, keeping its help (e.g. what to do with a damaged world file).
pub(crate) fn sim_failure(e: crate::sim::SimError) -> Failure {
    Failure::Other(miette::Report::new(e))
}

/// A failure with a hint on what to do.
pub(crate) fn failure(message: impl std::fmt::Display, help: impl std::fmt::Display) -> Failure {
    Failure::Other(miette::miette!(help = help.to_string(), "{message}"))
}

/// An I/O failure on `what` (a path, the terminal), as a failure with a hint.
pub(crate) fn io_failure(what: impl std::fmt::Display) -> impl FnOnce(std::io::Error) -> Failure {
    move |e| failure(format!("cannot use {what}: {e}"), "check that it exists and that gpufleet may read it")
}
