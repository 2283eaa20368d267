//! A block becomes certified (docs/protocol.md §3.4): its certificate is checked against
//! the epoch's committee and the block against the DAG, then the certificate is stored,
//! the block enters the DAG and the commit rule runs. Checked before the store write, so
//! the store never holds a certificate the replay at start would refuse.

use std::sync::Arc;

use bizra_ledger::block::Block;
use bizra_ledger::consensus::dag::DagError;
use bizra_ledger::vote::QuorumCertificate;
use bizra_ledger::vote::{verify_certificate, CertificateError};
use bizra_ledger::Hash32;
use bizra_store::{Store, StoreError};
use serde_json::json;

use super::chain::{Chain, ChainError};
use super::commit::commit_ready;
use super::Consensus;
use crate::clock::now_ms;

#[derive(Debug, thiserror::Error)]
pub(crate) enum CertifyError {
    #[error("block is of epoch {got}; this node is in epoch {current}")]
    Epoch { current: u64, got: u64 },
    #[error("parent blocks not certified here: {}", list(.0))]
    MissingParents(Vec<Hash32>),
    #[error("certificate: {0}")]
    Certificate(#[from] CertificateError),
    #[error("certificate is for block {got}, not {expected}")]
    WrongBlock { expected: Hash32, got: Hash32 },
    #[error("block: {0}")]
    Dag(#[from] DagError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Chain(#[from] ChainError),
}

pub(crate) fn list(hashes: &[Hash32]) -> String {
    hashes
        .iter()
        .map(|h| h.to_hex())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Checks `qc` against the epoch's committee and `block` against the DAG; returns the
/// certificate with its weight and total as this node counts them.
pub(crate) fn check_certificate(
    chain: &Chain,
    block: &Block,
    qc: &QuorumCertificate,
) -> Result<QuorumCertificate, CertifyError> {
    if qc.block_hash != block.hash {
        return Err(CertifyError::WrongBlock {
            expected: block.hash,
            got: qc.block_hash,
        });
    }
    let committee = chain.engine.committee();
    let weight = verify_certificate(qc, committee)?;
    chain
        .engine
        .dag()
        .check(block, committee, None)
        .or_else(|e| match e {
            // Parents below the horizon: the insert takes it without them.
            DagError::UnknownParent(_) => Ok(()),
            e => Err(e),
        })?;
    Ok(QuorumCertificate {
        weight,
        total_weight: committee.total(),
        ..qc.clone()
    })
}

/// Whether the block was certified before.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Certified {
    New,
    Known,
}

/// The parents of `block` that the DAG lacks and still needs (those below its horizon
/// are out of every commit's reach and are not asked for).
pub(crate) fn missing_parents(chain: &Chain, block: &Block) -> Vec<Hash32> {
    let dag = chain.engine.dag();
    if block.header.height <= 1 || block.header.height - 1 < dag.horizon() {
        return Vec::new();
    }
    block
        .header
        .parents
        .iter()
        .filter(|p| !dag.contains(p))
        .copied()
        .collect()
}

/// Certifies a block that is stored here (the caller stored it and its attestations).
pub(crate) async fn certify(
    state: &Arc<Consensus>,
    chain: &mut Chain,
    block: &Block,
    qc: &QuorumCertificate,
) -> Result<Certified, CertifyError> {
    certify_stored(state, chain, block, qc, false).await
}

/// [`certify`]; with `qc_stored`, the caller stored the certificate with the block
/// already (`Store::insert_peer_block`) after checking it as [`check_certificate`] does.
pub(crate) async fn certify_stored(
    state: &Arc<Consensus>,
    chain: &mut Chain,
    block: &Block,
    qc: &QuorumCertificate,
    qc_stored: bool,
) -> Result<Certified, CertifyError> {
    if chain.engine.dag().contains(&block.hash) {
        return Ok(Certified::Known);
    }
    if block.header.epoch != chain.engine.epoch() {
        return Err(CertifyError::Epoch {
            current: chain.engine.epoch(),
            got: block.header.epoch,
        });
    }
    let missing = missing_parents(chain, block);
    if !missing.is_empty() {
        return Err(CertifyError::MissingParents(missing));
    }
    let stored = check_certificate(chain, block, qc)?;
    let weight = stored.weight;
    if !qc_stored {
        state.store.mark_certified(&stored, now_ms()).await?;
    }
    chain.engine.insert(block, &stored)?;
    chain.uncertified.remove(&block.hash);
    chain.certified_blocks += 1;
    chain.note_quorums(now_ms());
    state.metrics.blocks_certified.inc();
    state.events.publish(
        "block_certified",
        json!({"hash": block.hash, "epoch": block.header.epoch, "height": block.header.height, "proposer": block.header.proposer, "weight": weight}),
    );
    commit_ready(state, chain).await?;
    state.publish_head(chain);
    state.certified.notify_waiters();
    Ok(Certified::New)
}
