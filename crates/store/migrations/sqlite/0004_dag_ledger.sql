-- Schema version 4: the leaderless DAG (docs/protocol.md §3.3–§3.6). Every validator
-- proposes, blocks are certified by quorum certificates and committed in one ledger order.

-- Attestations that arrived in another validator's block while this store holds another
-- body under the same (attester key, nonce) in `attestations` (two bodies submitted to two
-- validators at once). The ledger order decides which one is finalized; until then both
-- are kept. `attestations` keeps its UNIQUE (attester_pubkey, nonce): the submit rule.
-- `seq` is drawn from the same sequence as `attestations.seq` (the writer bumps
-- `sqlite_sequence`), so a seq names one attestation whichever table holds it.
CREATE TABLE contested_attestations (
    digest          BLOB    PRIMARY KEY NOT NULL CHECK (length(digest) = 32),
    seq             INTEGER NOT NULL UNIQUE,
    attester_pubkey BLOB    NOT NULL CHECK (length(attester_pubkey) = 32),
    nonce           TEXT    NOT NULL,
    attester_id     TEXT    NOT NULL,
    body            BLOB    NOT NULL,
    impact_score    REAL    NOT NULL,
    received_at_ms  INTEGER NOT NULL
);
CREATE INDEX contested_by_nonce ON contested_attestations (attester_pubkey, nonce);

-- Blocks: the epoch of their header (epoch pages, the rebuild's order), when their own QC
-- was stored (certified), and their position in the ledger's block order (committed;
-- `finalized` and `finalized_at_ms` now mean committed). NULL until then.
ALTER TABLE blocks ADD COLUMN epoch INTEGER NOT NULL DEFAULT 0 CHECK (epoch >= 0);
ALTER TABLE blocks ADD COLUMN certified_at_ms INTEGER;
ALTER TABLE blocks ADD COLUMN commit_seq INTEGER CHECK (commit_seq IS NULL OR commit_seq >= 0);
UPDATE blocks SET epoch = COALESCE(json_extract(header, '$.epoch'), 0);
CREATE INDEX blocks_by_epoch ON blocks (epoch, height, hash);
CREATE UNIQUE INDEX blocks_by_commit_seq ON blocks (commit_seq) WHERE commit_seq IS NOT NULL;

-- The ledger (docs/protocol.md §3.6): finalized attestations in ledger order. `log_index`
-- continues without a gap (`commit` checks it); the block and index are where the ledger
-- order met the attestation, in a committed block.
CREATE TABLE ledger (
    log_index   INTEGER PRIMARY KEY NOT NULL CHECK (log_index >= 0),
    digest      BLOB    NOT NULL UNIQUE CHECK (length(digest) = 32),
    block_hash  BLOB    NOT NULL REFERENCES blocks (hash),
    block_index INTEGER NOT NULL CHECK (block_index >= 0)
);

-- Attestations the ledger order rejected (`duplicate_nonce`): `owner` is the digest in
-- the ledger that used their attester key and nonce first.
CREATE TABLE rejected_attestations (
    digest      BLOB    PRIMARY KEY NOT NULL CHECK (length(digest) = 32),
    owner       BLOB    NOT NULL REFERENCES ledger (digest),
    block_hash  BLOB    NOT NULL REFERENCES blocks (hash),
    block_index INTEGER NOT NULL CHECK (block_index >= 0)
);

-- Registry entries: their position in the ledger's entry order once committed. An entry
-- is pending while it is in no block and not committed.
ALTER TABLE registry_entries ADD COLUMN commit_seq INTEGER
    CHECK (commit_seq IS NULL OR commit_seq >= 0);
CREATE UNIQUE INDEX registry_by_commit_seq ON registry_entries (commit_seq)
    WHERE commit_seq IS NOT NULL;
CREATE INDEX registry_by_block ON registry_entries (block_hash) WHERE block_hash IS NOT NULL;

INSERT INTO counters (name, value) VALUES ('ledger', 0), ('rejected', 0);

-- The signing guard (docs/protocol.md §3.4): this validator signs at most one block per
-- (epoch, height, proposer), its own block or its vote for another's. The row commits
-- before the signature leaves the node, so that no restart can sign a second block of
-- the slot. Rows are never deleted.
CREATE TABLE signed (
    epoch      INTEGER NOT NULL CHECK (epoch >= 0),
    height     INTEGER NOT NULL CHECK (height >= 0),
    proposer   BLOB    NOT NULL CHECK (length(proposer) = 32),
    block_hash BLOB    NOT NULL CHECK (length(block_hash) = 32),
    at_ms      INTEGER NOT NULL,
    PRIMARY KEY (epoch, height, proposer)
) WITHOUT ROWID;
