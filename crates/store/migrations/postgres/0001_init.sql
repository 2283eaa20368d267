-- BIZRA Node0 PostgreSQL store, schema version 1. The same tables as the embedded store
-- (migrations/sqlite/0001_init.sql), in PostgreSQL types: hashes, keys and signatures are
-- BYTEA, u64 values BIGINT (range-checked by the store), the attestation body its exact
-- canonical bytes.

CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

-- Running totals kept in the same transactions as the rows they count.
CREATE TABLE counters (
    name  TEXT PRIMARY KEY,
    value BIGINT NOT NULL
);
INSERT INTO counters (name, value) VALUES ('attestations', 0), ('pending_attestations', 0);

CREATE TABLE blocks (
    hash            BYTEA   PRIMARY KEY CHECK (length(hash) = 32),
    height          BIGINT  NOT NULL,
    timestamp_ms    BIGINT  NOT NULL,
    header          TEXT    NOT NULL,
    signature       BYTEA   CHECK (signature IS NULL OR length(signature) = 64),
    attestation_ids BYTEA   NOT NULL CHECK (length(attestation_ids) % 32 = 0),
    finalized       BOOLEAN NOT NULL DEFAULT false,
    finalized_at_ms BIGINT,
    qc              TEXT,
    created_at_ms   BIGINT  NOT NULL
);
CREATE INDEX blocks_by_height ON blocks (height, hash);
CREATE INDEX blocks_by_time ON blocks (timestamp_ms);
CREATE INDEX blocks_finalized ON blocks (height) WHERE finalized;

CREATE TABLE attestations (
    -- Handed out under a transaction-scoped advisory lock held by every attestation
    -- insert, so seq order is commit order and newest-first pages never skip a row.
    seq             BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    digest          BYTEA  NOT NULL UNIQUE CHECK (length(digest) = 32),
    attester_pubkey BYTEA  NOT NULL CHECK (length(attester_pubkey) = 32),
    nonce           TEXT   NOT NULL,
    attester_id     TEXT   NOT NULL,
    body            BYTEA  NOT NULL,
    impact_score    DOUBLE PRECISION NOT NULL,
    received_at_ms  BIGINT NOT NULL,
    block_hash      BYTEA  REFERENCES blocks (hash),
    block_index     BIGINT,
    UNIQUE (attester_pubkey, nonce),
    CHECK ((block_hash IS NULL) = (block_index IS NULL))
);
CREATE INDEX attestations_by_attester ON attestations (attester_id, seq);
CREATE INDEX attestations_pending ON attestations (seq) WHERE block_hash IS NULL;
CREATE INDEX attestations_by_block ON attestations (block_hash, block_index)
    WHERE block_hash IS NOT NULL;

CREATE TABLE votes (
    block_hash   BYTEA NOT NULL CHECK (length(block_hash) = 32),
    validator_id BYTEA NOT NULL CHECK (length(validator_id) = 32),
    signature    BYTEA NOT NULL CHECK (length(signature) = 64),
    PRIMARY KEY (block_hash, validator_id)
);

CREATE TABLE registry_entries (
    seq        BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    kind       TEXT   NOT NULL,
    epoch      BIGINT NOT NULL,
    body       TEXT   NOT NULL,
    block_hash BYTEA  REFERENCES blocks (hash)
);
CREATE INDEX registry_pending ON registry_entries (seq) WHERE block_hash IS NULL;

-- Named leases: which replica does a job only one may do (block production). A lease, not
-- a session advisory lock: it works through PgBouncer's transaction pooling, and it
-- lapses when its holder stops renewing, even if that holder's connection stays open.
CREATE TABLE leases (
    name       TEXT PRIMARY KEY,
    holder     TEXT NOT NULL,
    expires_at TIMESTAMPTZ NOT NULL
);
