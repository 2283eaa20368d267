#!/usr/bin/env python3
"""Where the submit-to-finalized time of a local network went, per attestation, read from
the nodes' embedded stores after a run (bench/dag_finality.sh with KEEP_DIR=DIR keeps the
network of its all-up phase in DIR/all-up).

    python3 bench/finality_breakdown.py DIR/all-up

For every attestation in node-0's ledger: submitted (the earliest received_at_ms over the
nodes, which is when the node it was submitted to stored it), in the block the ledger met
it in (that block's timestamp), certified, finalized. Then the worst 2 %: how many were in
more than one block (their first block died and their work was proposed again), and what
became of that first block.
"""
import collections
import json
import sqlite3
import sys
from pathlib import Path


def pct(xs, q):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))]


def main(net: Path) -> None:
    stores = sorted(net.glob("node-*/ledger.sqlite"))
    if not stores:
        sys.exit(f"no node-*/ledger.sqlite under {net}")
    received = {}
    for s in stores:
        for digest, at in sqlite3.connect(s).execute("SELECT digest, received_at_ms FROM attestations"):
            received[digest] = min(received.get(digest, at), at)
    db = sqlite3.connect(stores[0])
    blocks, cited = {}, set()
    for h, epoch, header, certified, finalized, ts, ids in db.execute(
        "SELECT hash, epoch, header, certified_at_ms, finalized_at_ms, timestamp_ms, attestation_ids "
        "FROM blocks WHERE height > 0"
    ):
        parents = json.loads(header)["parents"]
        cited.update(bytes.fromhex(p) for p in parents)
        blocks[h] = dict(epoch=epoch, certified=certified, finalized=finalized, ts=ts,
                         ids=[ids[k:k + 32] for k in range(0, len(ids), 32)])
    first, count = {}, collections.Counter()
    for h, b in blocks.items():
        for a in b["ids"]:
            count[a] += 1
            if a not in first or b["ts"] < blocks[first[a]]["ts"]:
                first[a] = h
    ledger = dict(db.execute("SELECT digest, block_hash FROM ledger"))
    parts = collections.defaultdict(list)
    for a, bh in ledger.items():
        b = blocks[bh]
        cert = b["certified"] or b["ts"]
        parts["submit -> block made"].append(b["ts"] - received[a])
        parts["block made -> certified"].append(cert - b["ts"])
        parts["certified -> finalized"].append(b["finalized"] - cert)
        parts["submit -> finalized"].append(b["finalized"] - received[a])
    print(f"{len(ledger)} attestations finalized; {sum(1 for a in ledger if count[a] > 1)} were in more than one block")
    for name, xs in parts.items():
        print(f"  {name:24} p50 {pct(xs, .5)} ms, p90 {pct(xs, .9)}, p99 {pct(xs, .99)}, max {max(xs)}")
    worst = sorted(ledger, key=lambda a: blocks[ledger[a]]["finalized"] - received[a])[-max(1, len(ledger) // 50):]
    kinds = collections.Counter()
    for a in worst:
        f, last = blocks[first[a]], blocks[ledger[a]]
        if first[a] == ledger[a]:
            kinds["in one block"] += 1
            continue
        kinds[("first block of a closed epoch" if f["epoch"] < last["epoch"] else "first block of the same epoch")
              + (", certified" if f["certified"] else ", never certified")
              + (", cited" if first[a] in cited else ", cited by nothing")] += 1
    print(f"the worst 2 % ({len(worst)}):")
    for k, v in kinds.most_common():
        print(f"  {v:5}  {k}")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    main(Path(sys.argv[1]))
