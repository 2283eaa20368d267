#!/usr/bin/env python3
"""What SQLite alone spends per attestation on the embedded store's schema, without the
node: the group-commit insert and the block placement, as the node issues them (WAL,
synchronous=FULL, temp_store=memory, multi-row statements, one transaction per group,
placement in transactions of 512). A floor to hold the node's writer against
(bench/threads.sh shows the writer's own time), and a bench for schema alternatives:

  current          the schema of crates/store/migrations/sqlite, the node's statements
  update-from      placement as UPDATE ... FROM (one pass over the VALUES list)
  placement-table  a block's placement rows in a table of their own and the pending
                   queue as a table kept by triggers, so an attestation row is written
                   once and never updated

    python3 bench/sqlite_floor.py [VARIANT] [ROWS]

Python's sqlite3 module and the machine's SQLite, not the bundled one the node links;
the Python-side cost per statement is small next to 64-row statements.
"""
import json
import os
import sqlite3
import sys
import tempfile
import time

GROUP = 64          # rows per group commit (the closed loop's 64 connections at most)
BLOCK = 1400        # attestations per block (5,600/s at --slot-ms 250)
CHUNK = 512         # placement rows per transaction (crates/store/src/sqlite/blocks.rs)
MIGRATIONS = os.path.join(os.path.dirname(__file__), "..", "crates", "store", "migrations", "sqlite")

PLACEMENT_TABLE = """
DROP INDEX attestations_pending;
DROP INDEX attestations_by_block;
CREATE TABLE attestation_blocks (seq INTEGER PRIMARY KEY, block_hash BLOB NOT NULL,
                                 block_index INTEGER NOT NULL);
CREATE INDEX attestation_blocks_by_block ON attestation_blocks (block_hash, block_index);
CREATE TABLE pending (seq INTEGER PRIMARY KEY);
CREATE TRIGGER pending_in AFTER INSERT ON attestations
    BEGIN INSERT INTO pending (seq) VALUES (new.seq); END;
CREATE TRIGGER pending_out AFTER INSERT ON attestation_blocks
    BEGIN DELETE FROM pending WHERE seq = new.seq; END;
"""


def values(row, n):
    return ",".join([row] * n)


def main():
    variant = sys.argv[1] if len(sys.argv) > 1 else "current"
    rows_total = int(sys.argv[2]) if len(sys.argv) > 2 else 60_000
    if variant not in ("current", "update-from", "placement-table"):
        sys.exit(f"unknown variant {variant}")
    with tempfile.TemporaryDirectory() as tmp:
        db = sqlite3.connect(os.path.join(tmp, "floor.sqlite"), isolation_level=None)
        try:
            measure(db, variant, rows_total)
        finally:
            db.close()


def measure(db, variant, rows_total):
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=FULL")
    db.execute("PRAGMA temp_store=memory")
    for name in sorted(os.listdir(MIGRATIONS)):
        db.executescript(open(os.path.join(MIGRATIONS, name)).read())
    if variant == "placement-table":
        db.executescript(PLACEMENT_TABLE)

    key = os.urandom(32)
    # An attestation's canonical JSON is about 1 KiB.
    body = json.dumps({"evidence": "x" * 900}).encode()
    insert_s = place_s = 0.0
    since_block = height = done = 0
    started = time.perf_counter()
    while done < rows_total:
        args = []
        for i in range(done, done + GROUP):
            args += [os.urandom(32), key, f"nonce-{i:012d}", "attester-1", body, 1.5, 1_700_000_000_000 + i]
        t = time.perf_counter()
        db.execute("BEGIN IMMEDIATE")
        inserted = db.execute(
            "INSERT INTO attestations (digest, attester_pubkey, nonce, attester_id, body, "
            "impact_score, received_at_ms) VALUES " + values("(?,?,?,?,?,?,?)", GROUP)
            + " ON CONFLICT DO NOTHING RETURNING seq, digest", args).fetchall()
        db.execute("UPDATE counters SET value = value + ? WHERE name IN "
                   "('attestations', 'pending_attestations')", (len(inserted),))
        db.execute("COMMIT")
        insert_s += time.perf_counter() - t
        done += GROUP
        since_block += GROUP
        if since_block < BLOCK:
            continue

        t = time.perf_counter()
        block = os.urandom(32)
        db.execute("INSERT INTO blocks (hash, height, timestamp_ms, header, attestation_ids, "
                   "created_at_ms, placed) VALUES (?, ?, 0, '{}', x'', 0, 0)", (block, height))
        if variant == "placement-table":
            pending = "SELECT a.digest FROM pending p JOIN attestations a ON a.seq = p.seq ORDER BY p.seq LIMIT ?"
        else:
            pending = "SELECT digest FROM attestations WHERE block_hash IS NULL ORDER BY seq LIMIT ?"
        digests = [r[0] for r in db.execute(pending, (BLOCK,))]
        for at in range(0, len(digests), CHUNK):
            chunk = digests[at:at + CHUNK]
            args = []
            for i, d in enumerate(chunk):
                args += [d, at + i]
            v = "WITH v(digest, idx) AS (VALUES " + values("(?,?)", len(chunk)) + ") "
            db.execute("BEGIN IMMEDIATE")
            if variant == "current":
                db.execute(v + "UPDATE attestations SET block_hash = ?, block_index = "
                           "(SELECT idx FROM v WHERE v.digest = attestations.digest) "
                           "WHERE digest IN (SELECT digest FROM v) AND block_hash IS NULL", args + [block])
            elif variant == "update-from":
                db.execute(v + "UPDATE attestations SET block_hash = ?, block_index = v.idx FROM v "
                           "WHERE attestations.digest = v.digest AND attestations.block_hash IS NULL",
                           args + [block])
            else:
                db.execute(v + "INSERT INTO attestation_blocks (seq, block_hash, block_index) "
                           "SELECT a.seq, ?, v.idx FROM v JOIN attestations a ON a.digest = v.digest "
                           "JOIN pending p ON p.seq = a.seq", args + [block])
            db.execute("UPDATE counters SET value = value - ? WHERE name = 'pending_attestations'",
                       (len(chunk),))
            db.execute("COMMIT")
        db.execute("UPDATE blocks SET placed = 1 WHERE hash = ?", (block,))
        place_s += time.perf_counter() - t
        height += 1
        since_block = 0

    total = time.perf_counter() - started
    per = lambda s: s / done * 1e6
    print(f"{variant}: {done} rows; per row: insert {per(insert_s):.1f} us, "
          f"placement {per(place_s):.1f} us, all {per(total):.1f} us wall, "
          f"{per(time.process_time()):.1f} us CPU")


if __name__ == "__main__":
    main()
