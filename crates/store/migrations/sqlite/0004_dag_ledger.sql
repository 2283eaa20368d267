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
