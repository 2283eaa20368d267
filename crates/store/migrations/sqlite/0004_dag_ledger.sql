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
