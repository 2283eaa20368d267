-- Schema version 3: the leaderless DAG (docs/protocol.md §3.3–§3.6). Every validator
-- proposes, blocks are certified by quorum certificates and committed in one ledger order.
-- The same tables as the embedded store (migrations/sqlite/0004_dag_ledger.sql).

-- Block-borne attestations whose (attester key, nonce) another digest holds in
-- `attestations` (two bodies submitted to two validators at once); the ledger order
-- decides between them. `seq` comes from the sequence of `attestations.seq`.
CREATE TABLE contested_attestations (
    digest          BYTEA  PRIMARY KEY CHECK (length(digest) = 32),
    seq             BIGINT NOT NULL UNIQUE,
    attester_pubkey BYTEA  NOT NULL CHECK (length(attester_pubkey) = 32),
    nonce           TEXT   NOT NULL,
    attester_id     TEXT   NOT NULL,
    body            BYTEA  NOT NULL,
    impact_score    DOUBLE PRECISION NOT NULL,
    received_at_ms  BIGINT NOT NULL
);
CREATE INDEX contested_by_nonce ON contested_attestations (attester_pubkey, nonce);
-- The identity sequence's name, resolved now (the default then names it by OID).
DO $$
BEGIN
    EXECUTE format(
        'ALTER TABLE contested_attestations ALTER COLUMN seq SET DEFAULT nextval(%L::regclass)',
        pg_get_serial_sequence('attestations', 'seq'));
END
$$;

-- Blocks: the epoch of their header, when their own QC was stored (certified), and their
-- position in the ledger's block order (committed; `finalized` and `finalized_at_ms` now
-- mean committed). NULL until then.
ALTER TABLE blocks ADD COLUMN epoch BIGINT NOT NULL DEFAULT 0 CHECK (epoch >= 0);
ALTER TABLE blocks ADD COLUMN certified_at_ms BIGINT;
ALTER TABLE blocks ADD COLUMN commit_seq BIGINT CHECK (commit_seq IS NULL OR commit_seq >= 0);
UPDATE blocks SET epoch = COALESCE((header::jsonb ->> 'epoch')::bigint, 0);
CREATE INDEX blocks_by_epoch ON blocks (epoch, height, hash);
CREATE UNIQUE INDEX blocks_by_commit_seq ON blocks (commit_seq) WHERE commit_seq IS NOT NULL;

-- The ledger (docs/protocol.md §3.6): finalized attestations in ledger order, without a
-- gap in `log_index`; the block and index are where the ledger order met each one.
CREATE TABLE ledger (
    log_index   BIGINT PRIMARY KEY CHECK (log_index >= 0),
    digest      BYTEA  NOT NULL UNIQUE CHECK (length(digest) = 32),
    block_hash  BYTEA  NOT NULL REFERENCES blocks (hash),
    block_index BIGINT NOT NULL CHECK (block_index >= 0)
);

-- Attestations the ledger order rejected (`duplicate_nonce`), with the ledger digest
-- that used their attester key and nonce first.
CREATE TABLE rejected_attestations (
    digest      BYTEA  PRIMARY KEY CHECK (length(digest) = 32),
    owner       BYTEA  NOT NULL REFERENCES ledger (digest),
    block_hash  BYTEA  NOT NULL REFERENCES blocks (hash),
    block_index BIGINT NOT NULL CHECK (block_index >= 0)
);

-- Registry entries: their position in the ledger's entry order once committed.
ALTER TABLE registry_entries ADD COLUMN commit_seq BIGINT
    CHECK (commit_seq IS NULL OR commit_seq >= 0);
CREATE UNIQUE INDEX registry_by_commit_seq ON registry_entries (commit_seq)
    WHERE commit_seq IS NOT NULL;
CREATE INDEX registry_by_block ON registry_entries (block_hash) WHERE block_hash IS NOT NULL;

INSERT INTO counters (name, value) VALUES ('ledger', 0), ('rejected', 0);

-- The signing guard (docs/protocol.md §3.4): at most one block signed per (epoch, height,
-- proposer). Replicas of one validator share this table, so a failover can never sign a
-- second block of a slot: each takes the slot with INSERT … ON CONFLICT DO NOTHING.
CREATE TABLE signed (
    epoch      BIGINT NOT NULL CHECK (epoch >= 0),
    height     BIGINT NOT NULL CHECK (height >= 0),
    proposer   BYTEA  NOT NULL CHECK (length(proposer) = 32),
    block_hash BYTEA  NOT NULL CHECK (length(block_hash) = 32),
    at_ms      BIGINT NOT NULL,
    PRIMARY KEY (epoch, height, proposer)
);
