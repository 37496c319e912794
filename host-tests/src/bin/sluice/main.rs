//! `sluice`: run the sluice filter locally in front of an upstream, or check a config.
//!
//! `sluice serve` starts a local HTTP proxy whose requests pass through the real filter
//! `.wasm`, running in this crate's proxy-wasm host exactly as the end-to-end tests run it.

mod check;
mod echo;
mod serve;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// The sluice rate limiter, run locally through its proxy-wasm filter.
#[derive(Debug, Parser)]
#[command(name = "sluice", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a local HTTP proxy that passes every request through the filter and forwards
    /// allowed ones to an upstream.
    Serve(serve::ServeArgs),
    /// Validate sluice config files (JSON); exits non-zero if any is invalid.
    Check {
        /// Config files to check.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve(args) => match serve::run(args) {
            Ok(()) => ExitCode::SUCCESS,
            Err(error) => {
                eprintln!("sluice serve: {error:#}");
                ExitCode::FAILURE
            }
        },
        Command::Check { files } => check::run(&files),
    }
}
