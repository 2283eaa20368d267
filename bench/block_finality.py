#!/usr/bin/env python3
"""Per-block finality delay on a node: finalized_at_ms - header.timestamp_ms of every block
from FROM_HEIGHT on that was finalized by its own certificate (the time the proposer's
fan-out took to gather a quorum), and the gaps between block timestamps.

usage: bench/block_finality.py URL [FROM_HEIGHT]     (standard library only)
"""
import json
import statistics
import sys
import urllib.request


def blocks(url, start):
    frm = start
    while True:
        with urllib.request.urlopen(f"{url}/api/consensus/blocks?from_height={frm}&limit=1000") as r:
            page = json.load(r)
        yield from page["items"]
        nxt = page["next_from_height"]
        if nxt is None or nxt <= frm:
            return
        frm = nxt


def main():
    url = sys.argv[1].rstrip("/")
    start = int(sys.argv[2]) if len(sys.argv) > 2 else 1
    items = [b for b in blocks(url, max(start, 1)) if b["header"]["height"] >= start]
    own = [b for b in items if b.get("qc") and b.get("finalized_at_ms")]
    delays = sorted(b["finalized_at_ms"] - b["header"]["timestamp_ms"] for b in own)
    stamps = [b["header"]["timestamp_ms"] for b in items]
    gaps = [b - a for a, b in zip(stamps, stamps[1:])]
    if not delays:
        print("no finalized blocks")
        return
    print(json.dumps({
        "blocks": len(items),
        "finalized_by_own_qc": len(own),
        "fanout_ms_p50": statistics.median(delays),
        "fanout_ms_max": delays[-1],
        "block_gap_ms_p50": statistics.median(gaps) if gaps else None,
        "attestations_per_block_p50": statistics.median(b["header"]["att_count"] for b in items),
    }))


if __name__ == "__main__":
    main()
