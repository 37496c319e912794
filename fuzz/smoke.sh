#!/usr/bin/env bash
# Fuzz smoke (run by .ci/run): each cheap target under libFuzzer for a short while, starting
# from its committed corpus; a crash fails the run. The whole-filter target needs wasmtime,
# which CI builds once, for the test profile: its corpus is replayed by `cargo test` instead
# (host-tests/tests/filter/fuzz_corpus.rs), as are the others' (filters/*/tests/fuzz_corpus.rs).
#
# Installs what it needs: a nightly toolchain (the one present, else a pinned one) and a
# pinned cargo-fuzz in target/tools. SLUICE_FUZZ_SECONDS sets the time per target (20).
set -euo pipefail
cd "$(dirname "$0")"
root="$(cd .. && pwd)"
seconds="${SLUICE_FUZZ_SECONDS:-20}"
cargo_fuzz_version="0.13.2"
pinned_nightly="nightly-2026-05-20"

toolchain=nightly
if ! rustup run "$toolchain" rustc --version >/dev/null 2>&1; then
    toolchain="$pinned_nightly"
    rustup toolchain install "$toolchain" --profile minimal
fi

tools="$root/target/tools"
if ! "$tools/bin/cargo-fuzz" --version 2>/dev/null | grep -q "$cargo_fuzz_version"; then
    cargo install cargo-fuzz --version "$cargo_fuzz_version" --locked --root "$tools"
fi
export PATH="$tools/bin:$PATH"

for target in config request state nginx_conf decide_reply lease_wire lease_bucket edge_lease; do
    # New inputs go to a scratch directory: the committed corpus stays as it is.
    scratch="$(mktemp -d)"
    dict=()
    [ -f "$target.dict" ] && dict=("-dict=$target.dict")
    echo "fuzz smoke: $target for ${seconds}s"
    log="$scratch.log"
    status=0
    cargo "+$toolchain" fuzz run "$target" "$scratch" "corpus/$target" -- \
        -max_total_time="$seconds" -print_final_stats=1 "${dict[@]}" >"$log" 2>&1 || status=$?
    grep -E '^(#[0-9]+[[:space:]]+(INITED|DONE)|stat::(number_of_executed_units|average_exec_per_sec))' "$log" || true
    if [ "$status" -ne 0 ]; then
        tail -n 60 "$log" >&2
    fi
    rm -rf "$scratch" "$log"
    if [ "$status" -ne 0 ]; then
        echo "fuzz smoke: $target failed (exit $status); the input is in fuzz/artifacts/$target/" >&2
        exit 1
    fi
done
echo "fuzz smoke: config, request, state, nginx_conf, decide_reply, lease_wire, lease_bucket and edge_lease ran ${seconds}s each without a crash"
