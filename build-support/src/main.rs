//! `cargo run -p sluice-build-support --bin build-filter`: builds the sluice filter as it
//! ships (release build for wasm32-wasip1, then wasm-opt) and prints where it is.

use std::process::ExitCode;

fn main() -> ExitCode {
    let root = sluice_build_support::workspace_root();
    let build = sluice_build_support::shipped_filter();
    match build.run(&root) {
        Ok(path) => {
            let size = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
            let shown = path.strip_prefix(&root).unwrap_or(&path);
            println!("{} ({size} bytes)", shown.display());
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::FAILURE
        }
    }
}
