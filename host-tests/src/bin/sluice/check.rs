//! `sluice check`: the same validation the filter runs in `on_configure`.

use std::path::PathBuf;
use std::process::ExitCode;

pub fn run(files: &[PathBuf]) -> ExitCode {
    let mut failed = false;
    for file in files {
        match std::fs::read(file) {
            Err(error) => {
                eprintln!("{}: cannot read: {error}", file.display());
                failed = true;
            }
            Ok(bytes) => match sluice_policy::Policy::from_json(&bytes) {
                Ok(policy) => println!("{}: ok ({} rules)", file.display(), policy.rules().len()),
                Err(error) => {
                    eprintln!("{}: {error}", file.display());
                    failed = true;
                }
            },
        }
    }
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}
