"""Fails when a dependency declares a newer rust-version than the workspace's crates.

Reads `cargo metadata --format-version 1 --locked` on standard input.
"""
import json
import sys


def version(text):
    parts = (text.split(".") + ["0", "0"])[:3]
    return tuple(int(p) for p in parts)


meta = json.load(sys.stdin)
ours = {p["rust_version"] for p in meta["packages"] if p["source"] is None}
if len(ours) != 1:
    sys.exit(f"the workspace crates declare different rust-versions: {sorted(map(str, ours))}")
msrv = ours.pop()
newer = []
for p in meta["packages"]:
    needs = p.get("rust_version")
    if needs and version(needs) > version(msrv):
        newer.append(f"{p['name']} {p['version']} needs {needs}")
if newer:
    sys.exit(f"rust-version {msrv} is too old for: " + "; ".join(newer))
print(f"rust-version {msrv}: no dependency needs a newer Rust")
