#!/usr/bin/env python3
"""Reads every attestation of a node once, in turn, on one keep-alive connection, twice:
the first pass finds the finalized ones missing from the cache (each a store read), the
second finds them cached. Prints the mean time per GET of each pass.

    python3 bench/read_each.py [HOST:PORT]      (default 127.0.0.1:18111)

One client and one request at a time: it shows what a miss costs the node, not how many
the node can serve at once (that is `node0 bench`'s job).
"""
import http.client
import json
import sys
import time

host, _, port = (sys.argv[1] if len(sys.argv) > 1 else "127.0.0.1:18111").partition(":")
conn = http.client.HTTPConnection(host, int(port or 80))


def get(path):
    conn.request("GET", path)
    r = conn.getresponse()
    body = r.read()
    if r.status != 200:
        sys.exit(f"GET {path}: {r.status} {body[:200]!r}")
    return body


ids, cursor = [], None
while True:
    page = json.loads(get("/api/validator/attestations?limit=500" + (f"&cursor={cursor}" if cursor else "")))
    ids += [item["attestation_id"] for item in page["items"]]
    cursor = page.get("next_cursor")
    if not cursor:
        break
for label in ("first pass", "second pass"):
    start = time.perf_counter()
    for i in ids:
        get(f"/api/validator/attestation/{i}")
    took = time.perf_counter() - start
    print(f"{label}: {len(ids)} GETs, {took / max(len(ids), 1) * 1e6:.0f} us per GET")
