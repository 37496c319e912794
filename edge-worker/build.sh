#!/usr/bin/env bash
# Builds the worker into edge-worker/build/ (index.js + index_bg.wasm) with worker-build,
# using only project-local tools, so that a fresh machine never downloads a binary:
#   - wasm-bindgen-cli 0.2.130 (the exact version of the wasm-bindgen library) and
#     worker-build 0.8.7, installed with cargo into TARGET/edge-worker/tools;
#   - wasm-opt (binaryen) and esbuild from edge-worker/node_modules (npm ci from the lock).
# TARGET is cargo's target directory: CARGO_TARGET_DIR (or CARGO_BUILD_TARGET_DIR) if set,
# relative to where this is run from as cargo takes it, else the checkout's target/. So
# checkouts sharing a target directory share the built tools. The worker itself is compiled
# in TARGET/edge-worker/cargo, never in TARGET itself, so it does not wait on the lock of an
# outer cargo run.
# wrangler runs it as the build command; the workerd tests run it before testing.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/.." && pwd)"
target="${CARGO_TARGET_DIR:-${CARGO_BUILD_TARGET_DIR:-$root/target}}"
case "$target" in
  /*) ;;
  *) target="$PWD/$target" ;;
esac
tools="$target/edge-worker/tools"
WASM_BINDGEN_VERSION=0.2.130
WORKER_BUILD_VERSION=0.8.7

installed_version() { "$1" --version 2>/dev/null | awk '{print $NF}'; }

install_tool() { # crate version binary
  if [ "$(installed_version "$tools/bin/$3")" != "$2" ]; then
    echo "edge-worker: installing $1 $2 into $tools" >&2
    # Its own target dir: never waits on the lock of an outer build. Without --locked:
    # dependencies resolve to their current compatible versions.
    CARGO_TARGET_DIR="$target/edge-worker/tools-build" \
      cargo install "$1" --version "$2" --bin "$3" --root "$tools" -j2
  fi
}

install_tool wasm-bindgen-cli "$WASM_BINDGEN_VERSION" wasm-bindgen
install_tool worker-build "$WORKER_BUILD_VERSION" worker-build

# npm ci from the committed lock when node_modules is missing or older than the lock.
if [ ! -f "$here/node_modules/.package-lock.json" ] ||
   [ "$here/package-lock.json" -nt "$here/node_modules/.package-lock.json" ]; then
  (cd "$here" && npm ci --no-audit --no-fund)
fi

rustup target add wasm32-unknown-unknown >/dev/null 2>&1 || true

export WASM_BINDGEN_BIN="$tools/bin/wasm-bindgen"
export WASM_OPT_BIN="$here/node_modules/.bin/wasm-opt"
export ESBUILD_BIN="$here/node_modules/.bin/esbuild"
export CARGO_TARGET_DIR="$target/edge-worker/cargo"
unset CARGO_BUILD_TARGET_DIR
cd "$here"
exec "$tools/bin/worker-build" --release
