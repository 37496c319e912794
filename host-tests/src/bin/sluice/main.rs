//! `sluice`: run the sluice filter locally in front of an upstream, or check a config.
//!
//! `sluice serve` starts a local HTTP proxy whose requests pass through the real filter
//! `.wasm`, running in this crate's proxy-wasm host exactly as the end-to-end tests run it.
//! `sluice check` validates configs, alone or inside a proxy's configuration file.

mod check;
mod echo;
mod embedded;
mod envoy_config;
mod istio_config;
mod nginx_conf;
mod serve;
mod yaml_tree;

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
    /// Validate sluice configs: plain JSON files, or every sluice config inside an
    /// nginx.conf, an Envoy config or an Istio WasmPlugin, with file and line. Exits non-zero
    /// if any is invalid or a file holds none. Run it before `nginx -s reload`.
    Check(check::CheckArgs),
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
        Command::Check(args) => check::run(&args),
    }
}
