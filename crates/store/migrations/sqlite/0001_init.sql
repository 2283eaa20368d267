-- BIZRA Node0 embedded store, schema version 1.
-- Hashes, keys and signatures are raw bytes (BLOB); u64 values are INTEGER (i64, checked on
-- the way in and out); JSON documents are TEXT, the attestation body is its exact
-- canonical bytes (BLOB) so that it is served byte for byte as it was signed.

-- Node identity (genesis hash, chain id) and other single values.
CREATE TABLE meta (
    key   TEXT PRIMARY KEY NOT NULL,
    value TEXT NOT NULL
) WITHOUT ROWID;

-- Running totals kept in the same transactions as the rows they count, so that stats
-- never scan a large table.
CREATE TABLE counters (
    name  TEXT PRIMARY KEY NOT NULL,
    value INTEGER NOT NULL
) WITHOUT ROWID;
INSERT INTO counters (name, value) VALUES ('attestations', 0), ('pending_attestations', 0);

CREATE TABLE blocks (
    hash            BLOB    PRIMARY KEY NOT NULL CHECK (length(hash) = 32),
    height          INTEGER NOT NULL,
    timestamp_ms    INTEGER NOT NULL,
    -- The BlockHeader as JSON; the hash is recomputed from it by whoever needs to check.
    header          TEXT    NOT NULL,
    signature       BLOB    CHECK (signature IS NULL OR length(signature) = 64),
    -- The attestation digests in block order, 32 bytes each, concatenated.
    attestation_ids BLOB    NOT NULL CHECK (length(attestation_ids) % 32 = 0),
    finalized       INTEGER NOT NULL DEFAULT 0 CHECK (finalized IN (0, 1)),
    finalized_at_ms INTEGER,
    -- QuorumCertificate JSON, on the head block of a finalization.
    qc              TEXT,
    created_at_ms   INTEGER NOT NULL
);
CREATE INDEX blocks_by_height ON blocks (height, hash);
CREATE INDEX blocks_by_time ON blocks (timestamp_ms);
CREATE INDEX blocks_finalized ON blocks (height) WHERE finalized = 1;

CREATE TABLE attestations (
    -- Monotonic: cursors page strictly below a seq, so pages never skip or repeat.
    -- AUTOINCREMENT so that a seq is never reused.
    seq             INTEGER PRIMARY KEY AUTOINCREMENT,
    digest          BLOB    NOT NULL UNIQUE CHECK (length(digest) = 32),
    attester_pubkey BLOB    NOT NULL CHECK (length(attester_pubkey) = 32),
    nonce           TEXT    NOT NULL,
    attester_id     TEXT    NOT NULL,
    body            BLOB    NOT NULL,
    impact_score    REAL    NOT NULL,
    received_at_ms  INTEGER NOT NULL,
    block_hash      BLOB    REFERENCES blocks (hash),
    block_index     INTEGER,
    UNIQUE (attester_pubkey, nonce),
    CHECK ((block_hash IS NULL) = (block_index IS NULL))
);
CREATE INDEX attestations_by_attester ON attestations (attester_id, seq);
CREATE INDEX attestations_pending ON attestations (seq) WHERE block_hash IS NULL;
CREATE INDEX attestations_by_block ON attestations (block_hash, block_index)
    WHERE block_hash IS NOT NULL;

CREATE TABLE votes (
    block_hash   BLOB NOT NULL CHECK (length(block_hash) = 32),
    validator_id BLOB NOT NULL CHECK (length(validator_id) = 32),
    signature    BLOB NOT NULL CHECK (length(signature) = 64),
    PRIMARY KEY (block_hash, validator_id)
) WITHOUT ROWID;

-- Validator registration / exit / slashing entries (SPEC §3.5), opaque JSON to the store.
CREATE TABLE registry_entries (
    seq           INTEGER PRIMARY KEY AUTOINCREMENT,
    kind          TEXT    NOT NULL,
    epoch         INTEGER NOT NULL,
    body          TEXT    NOT NULL,
    block_hash    BLOB    REFERENCES blocks (hash)
);
CREATE INDEX registry_pending ON registry_entries (seq) WHERE block_hash IS NULL;
