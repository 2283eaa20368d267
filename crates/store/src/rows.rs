//! Rows to records, shared by the backends: each backend reads its columns into these
//! plain structs (its own types: SQLite has no booleans, PostgreSQL has no unsigned), and
//! the checks that turn them into domain values live here once.

use bizra_ledger::block::{Block, BlockHeader};
use bizra_ledger::vote::QuorumCertificate;

use crate::codec::{to_hash, to_pubkey, to_signature, to_u64, unpack_hashes};
use crate::error::StoreError;
use crate::types::{AttestationRecord, AttestationStatus, BlockRef, RegistryEntry, StoredBlock};

/// `SELECT` of a full attestation record (joined with its block) followed by `$tail`,
/// the backend's own `WHERE`/`ORDER BY` with its placeholders. Columns match
/// [`AttestationRow`].
macro_rules! select_record {
    ($tail:literal) => {
        concat!(
            "SELECT a.seq, a.digest, a.attester_pubkey, a.nonce, a.attester_id, a.body, \
             a.impact_score, a.received_at_ms, a.block_hash, a.block_index, \
             b.height AS block_height, b.finalized AS block_finalized \
             FROM attestations a LEFT JOIN blocks b ON b.hash = a.block_hash ",
            $tail
        )
    };
}
pub(crate) use select_record;

/// `SELECT` of a full block row followed by `$tail`. Columns match [`BlockRow`].
macro_rules! select_block {
    ($tail:literal) => {
        concat!(
            "SELECT hash, header, signature, attestation_ids, finalized, finalized_at_ms, qc, \
             created_at_ms FROM blocks ",
            $tail
        )
    };
}
pub(crate) use select_block;

/// The columns of an attestation joined with its block.
pub(crate) struct AttestationRow<'r> {
    pub seq: i64,
    pub digest: &'r [u8],
    pub attester_pubkey: &'r [u8],
    pub attester_id: String,
    pub nonce: String,
    pub body: Vec<u8>,
    pub impact_score: f64,
    pub received_at_ms: i64,
    pub block_hash: Option<&'r [u8]>,
    pub block_index: Option<i64>,
    pub block_height: Option<i64>,
    pub block_finalized: Option<bool>,
}

impl AttestationRow<'_> {
    pub(crate) fn into_record(self) -> Result<AttestationRecord, StoreError> {
        let digest = to_hash(self.digest, "attestation digest")?;
        let (block, status) = match (
            self.block_hash,
            self.block_index,
            self.block_height,
            self.block_finalized,
        ) {
            (None, None, _, _) => (None, AttestationStatus::Accepted),
            (Some(hash), Some(index), Some(height), Some(finalized)) => {
                let block = BlockRef {
                    hash: to_hash(hash, "attestation block_hash")?,
                    height: to_u64(height, "block height")?,
                    index: to_u64(index, "attestation block_index")?,
                };
                let status = if finalized {
                    AttestationStatus::Finalized
                } else {
                    AttestationStatus::Included
                };
                (Some(block), status)
            }
            _ => {
                return Err(StoreError::corrupt(format!(
                    "attestation {digest} refers to a block that is not stored"
                )))
            }
        };
        Ok(AttestationRecord {
            seq: to_u64(self.seq, "attestation seq")?,
            digest,
            attester_pubkey: to_pubkey(self.attester_pubkey, "attester pubkey")?,
            attester_id: self.attester_id,
            nonce: self.nonce,
            body: self.body,
            impact_score: self.impact_score,
            received_at_ms: to_u64(self.received_at_ms, "received_at_ms")?,
            status,
            block,
        })
    }
}

/// The columns of a block.
pub(crate) struct BlockRow<'r> {
    pub hash: &'r [u8],
    pub header: &'r str,
    pub signature: Option<&'r [u8]>,
    pub attestation_ids: &'r [u8],
    pub finalized: bool,
    pub finalized_at_ms: Option<i64>,
    pub qc: Option<&'r str>,
    pub created_at_ms: i64,
}

impl BlockRow<'_> {
    pub(crate) fn into_stored(self) -> Result<StoredBlock, StoreError> {
        let hash = to_hash(self.hash, "block hash")?;
        let header: BlockHeader = serde_json::from_str(self.header)
            .map_err(|e| StoreError::corrupt(format!("block {hash} header: {e}")))?;
        let signature = self
            .signature
            .map(|s| to_signature(s, "block signature"))
            .transpose()?;
        let attestation_ids = unpack_hashes(self.attestation_ids, "block attestation ids")?;
        if header.att_count != attestation_ids.len() as u64 {
            return Err(StoreError::corrupt(format!(
                "block {hash} header counts {} attestations, row holds {}",
                header.att_count,
                attestation_ids.len()
            )));
        }
        let qc = self
            .qc
            .map(|q| {
                serde_json::from_str::<QuorumCertificate>(q)
                    .map_err(|e| StoreError::corrupt(format!("block {hash} qc: {e}")))
            })
            .transpose()?;
        Ok(StoredBlock {
            block: Block {
                hash,
                header,
                signature,
                attestation_ids,
            },
            finalized: self.finalized,
            finalized_at_ms: self
                .finalized_at_ms
                .map(|v| to_u64(v, "finalized_at_ms"))
                .transpose()?,
            qc,
            created_at_ms: to_u64(self.created_at_ms, "created_at_ms")?,
        })
    }
}

/// The columns of a registry entry.
pub(crate) struct RegistryRow<'r> {
    pub seq: i64,
    pub kind: String,
    pub epoch: i64,
    pub body: &'r str,
    pub block_hash: Option<&'r [u8]>,
}

impl RegistryRow<'_> {
    pub(crate) fn into_entry(self) -> Result<RegistryEntry, StoreError> {
        let seq = to_u64(self.seq, "registry seq")?;
        let body = serde_json::from_str(self.body)
            .map_err(|e| StoreError::corrupt(format!("registry entry {seq} body: {e}")))?;
        Ok(RegistryEntry {
            seq,
            kind: self.kind,
            epoch: to_u64(self.epoch, "registry epoch")?,
            body,
            block_hash: self
                .block_hash
                .map(|h| to_hash(h, "registry block_hash"))
                .transpose()?,
        })
    }
}
