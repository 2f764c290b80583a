//! The command line: argument definitions and dispatch. Only this module and
//! its children parse user input from the terminal.

mod audit;
mod demo;
mod run;
mod schedule;
mod serve;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Exit code for an error of the command itself (bad file, bad JSON).
pub const EXIT_ERROR: u8 = 1;

/// ObjectOS Jobs: background jobs whose handlers are sandboxed WebAssembly components.
#[derive(Debug, Parser)]
#[command(name = "objectos", version, about, propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    Audit(audit::AuditArgs),
    Demo(demo::DemoArgs),
    Run(run::RunArgs),
    Schedule(schedule::ScheduleArgs),
    Serve(serve::ServeArgs),
}

/// Runs the chosen command and returns the process exit code.
pub fn dispatch(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Audit(args) => audit::audit(args),
        Command::Demo(args) => demo::demo(args),
        Command::Run(args) => run::run(args),
        Command::Schedule(args) => schedule::schedule(args),
        Command::Serve(args) => serve::serve(args),
    }
}
