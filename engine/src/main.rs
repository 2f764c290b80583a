//! The `objectos` command: parses the command line and hands over to `cli`.

use std::process::ExitCode;

use clap::Parser;

mod cli;

fn main() -> ExitCode {
    objectos_engine::allocator::keep_freed_memory();
    let args = cli::Cli::parse();
    match cli::dispatch(args) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            let exit = error.downcast_ref::<cli::Failure>().map_or(cli::EXIT_ERROR, |f| f.exit);
            ExitCode::from(exit)
        }
    }
}
