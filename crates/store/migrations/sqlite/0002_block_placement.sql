-- Schema version 2: a block's attestations are placed in several transactions (so that
-- the single writer is never held for a whole large block), and `placed` says whether
-- all of them are. A block left at 0 by a crash was never acknowledged to its caller;
-- opening the store removes it and its partial placement. Blocks stored before this
-- version were placed in one transaction.
ALTER TABLE blocks ADD COLUMN placed INTEGER NOT NULL DEFAULT 1 CHECK (placed IN (0, 1));


-- Lets the check at open find unfinished blocks without reading every block row (each
-- carries its attestation ids); the index is empty but for a moment per large block.
CREATE INDEX blocks_unplaced ON blocks (hash) WHERE placed = 0;
