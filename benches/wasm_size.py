#!/usr/bin/env python3
"""What the bytes of a filter's `.wasm` are: its sections, and its code by crate and by function.

    python3 benches/wasm_size.py FILE.wasm [--functions N]

The file needs its names section to attribute code (build it with names kept, as
BENCHMARKS.md, ".wasm size", says); the shipped one is stripped, so only sections show.
Reads `wasm-objdump` (wabt) output.
"""

import argparse
import collections
import re
import subprocess
import sys

FUNC = re.compile(r"^ - func\[(\d+)\] size=(\d+)(?: <(.*)>)?$")
SECTION = re.compile(r"^\s*(\w+)\s+start=0x[0-9a-f]+\s+end=0x[0-9a-f]+\s+\(size=0x([0-9a-f]+)\)(.*)$")


def crate_of(name):
    """The crate a function belongs to, from its symbol: a Rust legacy (`_ZN`) or v0 (`_R`)
    mangled name, whose first path segment is the crate (for `<T as Trait>` impls, T's crate,
    since the code is T's); the proxy-wasm SDK's exported callbacks (`proxy_on_*`); or C
    (wasi-libc: the allocator, memcpy and the like)."""
    if name.startswith("_ZN"):
        m = re.match(r"_ZN(\d+)", name)
        if m:
            first = name[m.end(): m.end() + int(m.group(1))]
            first = first.lstrip("_").replace("$LT$", "").lstrip("$RF$").lstrip("$")
            return re.split(r"\.\.|\$", first)[0] or "?"
    if name.startswith("_R"):
        m = re.search(r"C(?:s[0-9a-zA-Z]*_)?(\d+)", name)
        if m:
            start = m.end()
            return name[start: start + int(m.group(1))]
    if name.startswith("proxy_on_") or name.startswith("proxy_abi_"):
        return "proxy_wasm"
    return "(C: wasi-libc)"


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("wasm")
    parser.add_argument("--functions", type=int, default=25, help="largest functions to list")
    args = parser.parse_args()

    headers = subprocess.run(["wasm-objdump", "-h", args.wasm], capture_output=True, text=True, check=True)
    total = 0
    print("sections:")
    for line in headers.stdout.splitlines():
        m = SECTION.match(line)
        if m:
            size = int(m.group(2), 16)
            total += size
            print(f"  {m.group(1):<10} {size:>9,}{m.group(3)}")
    details = subprocess.run(
        ["wasm-objdump", "-x", "-j", "Code", args.wasm], capture_output=True, text=True, check=True
    )
    functions = []
    for line in details.stdout.splitlines():
        m = FUNC.match(line)
        if m:
            functions.append((int(m.group(2)), m.group(3) or f"func[{m.group(1)}]"))
    code = sum(size for size, _ in functions)
    by_crate = collections.Counter()
    count = collections.Counter()
    for size, name in functions:
        crate = crate_of(name) if not name.startswith("func[") else "(unnamed)"
        by_crate[crate] += size
        count[crate] += 1
    print(f"\ncode by crate ({len(functions)} functions, {code:,} bytes of bodies):")
    for crate, size in by_crate.most_common():
        print(f"  {crate:<28} {size:>9,} {100 * size / max(code, 1):5.1f}%  ({count[crate]} functions)")
    print(f"\nlargest functions:")
    for size, name in sorted(functions, reverse=True)[: args.functions]:
        print(f"  {size:>8,}  {name[:150]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
