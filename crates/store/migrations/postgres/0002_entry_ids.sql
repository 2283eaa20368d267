-- Schema version 2, for block header version 2 (docs/protocol.md §3.1): a block carries
-- the digests of its registry entries, in block order, 32 bytes each, concatenated, as
-- attestation_ids does. A database holding version-1 headers is refused before any
-- migration runs (src/header_version.rs); the empty default is a block without entries.
ALTER TABLE blocks ADD COLUMN entry_ids BYTEA NOT NULL DEFAULT ''::bytea
    CHECK (length(entry_ids) % 32 = 0);
