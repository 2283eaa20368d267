//! Rows to records, shared by the backends: each backend reads its columns into these
//! plain structs (its own types: SQLite has no booleans, PostgreSQL has no unsigned), and
//! the checks that turn them into domain values live here once.

use std::collections::HashMap;

use bizra_ledger::block::{Block, BlockHeader};
use bizra_ledger::crypto::PublicKey;
use bizra_ledger::vote::{QuorumCertificate, Vote};
use bizra_ledger::Hash32;

use crate::codec::{clamp_limit, to_hash, to_pubkey, to_signature, to_u64, unpack_hashes};
use crate::cursor::{Cursor, Page};
use crate::error::StoreError;
use crate::types::{
    AttestationRecord, AttestationStatus, AttesterImpact, BlockRef, ImpactSummary, RegistryEntry,
    StoredBlock,
};

/// `SELECT` of a full attestation record (joined with its block, the ledger and the
/// rejections) followed by `$tail`, the backend's own `WHERE`/`ORDER BY` with its
/// placeholders. Columns match [`AttestationRow`].
macro_rules! select_record {
    ($tail:literal) => {
        concat!(
            "SELECT a.seq, a.digest, a.attester_pubkey, a.nonce, a.attester_id, a.body, \
             a.impact_score, a.received_at_ms, a.block_hash, a.block_index, \
             b.height AS block_height, b.certified_at_ms AS block_certified_at, ",
            $crate::rows::settled_columns!(),
            " FROM attestations a LEFT JOIN blocks b ON b.hash = a.block_hash ",
            $crate::rows::settled_joins!(),
            $tail
        )
    };
}
pub(crate) use select_record;

/// [`select_record!`] of `contested_attestations`: the same columns, with no placement
/// (a contested attestation is in another validator's block, never placed here). Only
/// used after `UNION ALL` with [`select_record!`], which types its NULL columns.
macro_rules! select_contested {
    ($tail:literal) => {
        concat!(
            "SELECT a.seq, a.digest, a.attester_pubkey, a.nonce, a.attester_id, a.body, \
             a.impact_score, a.received_at_ms, NULL AS block_hash, NULL AS block_index, \
             NULL AS block_height, NULL AS block_certified_at, ",
            $crate::rows::settled_columns!(),
            " FROM contested_attestations a ",
            $crate::rows::settled_joins!(),
            $tail
        )
    };
}
pub(crate) use select_contested;

/// What the ledger order made of attestation `a`: its ledger row and rejection, each with
/// its block's height.
macro_rules! settled_columns {
    () => {
        "l.log_index, l.block_hash AS ledger_block, l.block_index AS ledger_index, \
         lb.height AS ledger_height, r.owner AS rejected_by, r.block_hash AS rejected_block, \
         r.block_index AS rejected_index, rb.height AS rejected_height"
    };
}
pub(crate) use settled_columns;

macro_rules! settled_joins {
    () => {
        "LEFT JOIN ledger l ON l.digest = a.digest \
         LEFT JOIN blocks lb ON lb.hash = l.block_hash \
         LEFT JOIN rejected_attestations r ON r.digest = a.digest \
         LEFT JOIN blocks rb ON rb.hash = r.block_hash "
    };
}
pub(crate) use settled_joins;

/// `SELECT` of a full block row followed by `$tail`. Columns match [`BlockRow`].
macro_rules! select_block {
    ($tail:literal) => {
        concat!(
            "SELECT hash, header, signature, attestation_ids, entry_ids, finalized, \
             finalized_at_ms, qc, created_at_ms, certified_at_ms, commit_seq FROM blocks ",
            $tail
        )
    };
}
pub(crate) use select_block;

/// The columns of an attestation joined with its block, its ledger row and rejection.
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
    pub block_certified_at: Option<i64>,
    pub log_index: Option<i64>,
    pub ledger_block: Option<&'r [u8]>,
    pub ledger_index: Option<i64>,
    pub ledger_height: Option<i64>,
    pub rejected_by: Option<&'r [u8]>,
    pub rejected_block: Option<&'r [u8]>,
    pub rejected_index: Option<i64>,
    pub rejected_height: Option<i64>,
}

/// A block reference from its hash, index and the joined block's height; `what` names
/// the reference for a damaged row.
fn block_ref(
    digest: &Hash32,
    what: &str,
    hash: Option<&[u8]>,
    index: Option<i64>,
    height: Option<i64>,
) -> Result<Option<BlockRef>, StoreError> {
    match (hash, index, height) {
        (None, None, _) => Ok(None),
        (Some(hash), Some(index), Some(height)) => Ok(Some(BlockRef {
            hash: to_hash(hash, "attestation block_hash")?,
            height: to_u64(height, "block height")?,
            index: to_u64(index, "attestation block_index")?,
        })),
        _ => Err(StoreError::corrupt(format!(
            "attestation {digest} refers to a {what} block that is not stored"
        ))),
    }
}

impl AttestationRow<'_> {
    /// The status of docs/protocol.md §2.5: rejected if the ledger order rejected it,
    /// finalized if it is in the ledger (then `block` is the ledger's), certified or
    /// included if it is placed (by its block's QC), else accepted.
    pub(crate) fn into_record(self) -> Result<AttestationRecord, StoreError> {
        let digest = to_hash(self.digest, "attestation digest")?;
        let placed = block_ref(
            &digest,
            "placement",
            self.block_hash,
            self.block_index,
            self.block_height,
        )?;
        let (status, block, log_index, rejected_by) = if let Some(owner) = self.rejected_by {
            let at = block_ref(
                &digest,
                "rejection",
                self.rejected_block,
                self.rejected_index,
                self.rejected_height,
            )?;
            let owner = to_hash(owner, "rejected owner")?;
            (AttestationStatus::Rejected, at, None, Some(owner))
        } else if let Some(log_index) = self.log_index {
            let at = block_ref(
                &digest,
                "ledger",
                self.ledger_block,
                self.ledger_index,
                self.ledger_height,
            )?;
            let log_index = to_u64(log_index, "log_index")?;
            (AttestationStatus::Finalized, at, Some(log_index), None)
        } else {
            let status = match (&placed, self.block_certified_at) {
                (None, _) => AttestationStatus::Accepted,
                (Some(_), None) => AttestationStatus::Included,
                (Some(_), Some(_)) => AttestationStatus::Certified,
            };
            (status, placed, None, None)
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
            log_index,
            rejected_by,
        })
    }
}

/// The columns of a block.
pub(crate) struct BlockRow<'r> {
    pub hash: &'r [u8],
    pub header: &'r str,
    pub signature: Option<&'r [u8]>,
    pub attestation_ids: &'r [u8],
    pub entry_ids: &'r [u8],
    pub finalized: bool,
    pub finalized_at_ms: Option<i64>,
    pub qc: Option<&'r str>,
    pub created_at_ms: i64,
    pub certified_at_ms: Option<i64>,
    pub commit_seq: Option<i64>,
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
        let entry_ids = unpack_hashes(self.entry_ids, "block entry ids")?;
        if header.entries_count != entry_ids.len() as u64 {
            return Err(StoreError::corrupt(format!(
                "block {hash} header counts {} registry entries, row holds {}",
                header.entries_count,
                entry_ids.len()
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
                entry_ids,
            },
            finalized: self.finalized,
            finalized_at_ms: self
                .finalized_at_ms
                .map(|v| to_u64(v, "finalized_at_ms"))
                .transpose()?,
            qc,
            created_at_ms: to_u64(self.created_at_ms, "created_at_ms")?,
            certified: self.certified_at_ms.is_some(),
            certified_at_ms: self
                .certified_at_ms
                .map(|v| to_u64(v, "certified_at_ms"))
                .transpose()?,
            commit_seq: self
                .commit_seq
                .map(|v| to_u64(v, "commit_seq"))
                .transpose()?,
        })
    }
}

/// `SELECT` of registry entries, oldest first: only those in no block yet, or all.
/// Columns match [`RegistryRow`]; no placeholders, so one text serves both backends.
pub(crate) fn select_registry(pending_only: bool) -> &'static str {
    // Pending: in no block (never placed, or its block is dead and `revive` released it)
    // and not committed.
    if pending_only {
        "SELECT seq, kind, epoch, body, block_hash, commit_seq FROM registry_entries \
         WHERE block_hash IS NULL AND commit_seq IS NULL ORDER BY seq"
    } else {
        "SELECT seq, kind, epoch, body, block_hash, commit_seq FROM registry_entries \
         ORDER BY seq"
    }
}

/// The columns of a registry entry.
pub(crate) struct RegistryRow<'r> {
    pub seq: i64,
    pub kind: String,
    pub epoch: i64,
    pub body: &'r str,
    pub block_hash: Option<&'r [u8]>,
    pub commit_seq: Option<i64>,
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
            commit_seq: self
                .commit_seq
                .map(|v| to_u64(v, "registry commit_seq"))
                .transpose()?,
        })
    }
}

/// One newest-first page of attestation records: rows with a `seq` below `before`, at
/// most `fetch` of them, which is one more than the page holds so that the extra row
/// tells whether another page follows.
pub(crate) struct PageQuery {
    pub before: i64,
    pub fetch: i64,
    limit: usize,
}

impl PageQuery {
    /// `limit` is clamped as for every list.
    pub(crate) fn new(cursor: Option<Cursor>, limit: u32) -> PageQuery {
        let limit = clamp_limit(limit);
        PageQuery {
            // No stored seq reaches i64::MAX, so a larger cursor simply means "from the
            // top".
            before: cursor.map_or(i64::MAX, |c| {
                i64::try_from(c.before_seq()).unwrap_or(i64::MAX)
            }),
            fetch: i64::from(limit) + 1,
            limit: limit as usize,
        }
    }

    /// The page the fetched `rows` (newest first) make, each read by `record`; its cursor
    /// continues below the last item when the extra row came back.
    pub(crate) fn page<R>(
        &self,
        rows: &[R],
        record: impl Fn(&R) -> Result<AttestationRecord, StoreError>,
    ) -> Result<Page<AttestationRecord>, StoreError> {
        let more = rows.len() > self.limit;
        let items = rows
            .iter()
            .take(self.limit)
            .map(record)
            .collect::<Result<Vec<_>, _>>()?;
        let next_cursor = match items.last() {
            Some(last) if more => Some(Cursor::before(last.seq)),
            _ => None,
        };
        Ok(Page { items, next_cursor })
    }
}

/// The columns of a nonce's owner: the key and nonce asked about, and the digest of the
/// attestation that used them.
pub(crate) struct NonceOwnerRow<'r> {
    pub attester_pubkey: &'r [u8],
    pub nonce: String,
    pub digest: &'r [u8],
}

/// What [`NonceOwnerRow`]s found, by (key, nonce).
pub(crate) type NonceOwners = HashMap<(PublicKey, String), Hash32>;

impl NonceOwnerRow<'_> {
    pub(crate) fn add_to(self, found: &mut NonceOwners) -> Result<(), StoreError> {
        let key = to_pubkey(self.attester_pubkey, "attester pubkey")?;
        let digest = to_hash(self.digest, "attestation digest")?;
        found.insert((key, self.nonce), digest);
        Ok(())
    }
}

/// One answer per asked pair, in the order asked.
pub(crate) fn owners_in_order(
    pairs: &[(PublicKey, String)],
    found: &NonceOwners,
) -> Vec<Option<Hash32>> {
    pairs.iter().map(|p| found.get(p).copied()).collect()
}

/// Name of the `counters` row that counts every attestation.
pub(crate) const COUNT_ALL: &str = "attestations";
/// Name of the `counters` row that counts attestations in no block yet.
pub(crate) const COUNT_PENDING: &str = "pending_attestations";
/// Name of the `counters` row that counts the ledger's attestations (its length).
pub(crate) const COUNT_LEDGER: &str = "ledger";
/// Name of the `counters` row that counts attestations the ledger order rejected.
pub(crate) const COUNT_REJECTED: &str = "rejected";

/// The value of counter `name`, as read (`None`: no such row).
pub(crate) fn counter_value(name: &str, value: Option<i64>) -> Result<u64, StoreError> {
    // The migrations create every counter, so a missing one is a damaged store, not 0.
    let value = value.ok_or_else(|| StoreError::corrupt(format!("counter {name} is missing")))?;
    to_u64(value, name)
}

/// The columns of the totals of an impact summary.
pub(crate) struct ImpactTotalsRow {
    pub attestations: i64,
    pub total_impact: f64,
}

/// The columns of one attester's line of an impact summary.
pub(crate) struct ImpactRow {
    pub attester_id: String,
    pub attestations: i64,
    pub total_impact: f64,
}

impl ImpactRow {
    pub(crate) fn into_impact(self) -> Result<AttesterImpact, StoreError> {
        Ok(AttesterImpact {
            attester_id: self.attester_id,
            attestations: to_u64(self.attestations, "count")?,
            total_impact: self.total_impact,
        })
    }
}

impl ImpactTotalsRow {
    /// The summary, with its `top` lines already read (highest total first).
    pub(crate) fn into_summary(
        self,
        top: Vec<AttesterImpact>,
    ) -> Result<ImpactSummary, StoreError> {
        Ok(ImpactSummary {
            attestations: to_u64(self.attestations, "count")?,
            total_impact: self.total_impact,
            top,
        })
    }
}

/// The columns of a vote, read for one block.
pub(crate) struct VoteRow<'r> {
    pub validator_id: &'r [u8],
    pub signature: &'r [u8],
}

impl VoteRow<'_> {
    pub(crate) fn into_vote(self, block_hash: Hash32) -> Result<Vote, StoreError> {
        Ok(Vote {
            block_hash,
            validator_id: to_hash(self.validator_id, "vote validator_id")?,
            signature: to_signature(self.signature, "vote signature")?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A record that only its seq tells apart: pages are about order and bounds.
    fn record(seq: &u64) -> Result<AttestationRecord, StoreError> {
        Ok(AttestationRecord {
            seq: *seq,
            digest: Hash32::digest(&seq.to_le_bytes()),
            attester_pubkey: PublicKey([1; 32]),
            attester_id: "a".into(),
            nonce: seq.to_string(),
            body: Vec::new(),
            impact_score: 0.0,
            received_at_ms: 0,
            status: AttestationStatus::Accepted,
            block: None,
            log_index: None,
            rejected_by: None,
        })
    }

    fn seqs(page: &Page<AttestationRecord>) -> Vec<u64> {
        page.items.iter().map(|r| r.seq).collect()
    }

    #[test]
    fn status_comes_from_rejection_ledger_qc_and_placement_in_that_order() {
        let (d, placed, ledger, rejected_at, owner) = (
            Hash32::digest(b"d"),
            Hash32::digest(b"placed"),
            Hash32::digest(b"ledger"),
            Hash32::digest(b"rejected"),
            Hash32::digest(b"owner"),
        );
        let key = [1u8; 32];
        let row = || AttestationRow {
            seq: 1,
            digest: d.as_bytes(),
            attester_pubkey: &key,
            attester_id: "a".into(),
            nonce: "n".into(),
            body: Vec::new(),
            impact_score: 0.5,
            received_at_ms: 2,
            block_hash: None,
            block_index: None,
            block_height: None,
            block_certified_at: None,
            log_index: None,
            ledger_block: None,
            ledger_index: None,
            ledger_height: None,
            rejected_by: None,
            rejected_block: None,
            rejected_index: None,
            rejected_height: None,
        };
        let seen = |r: AttestationRow<'_>| {
            let r = r.into_record().unwrap();
            (
                r.status,
                r.block.map(|b| (b.hash, b.height, b.index)),
                r.log_index,
                r.rejected_by,
            )
        };
        assert_eq!(seen(row()), (AttestationStatus::Accepted, None, None, None));
        let mut included = row();
        (
            included.block_hash,
            included.block_index,
            included.block_height,
        ) = (Some(placed.as_bytes().as_slice()), Some(3), Some(7));
        assert_eq!(
            seen(included),
            (
                AttestationStatus::Included,
                Some((placed, 7, 3)),
                None,
                None
            )
        );
        let certified = || {
            let mut r = row();
            (r.block_hash, r.block_index, r.block_height) =
                (Some(placed.as_bytes().as_slice()), Some(3), Some(7));
            r.block_certified_at = Some(9);
            r
        };
        assert_eq!(
            seen(certified()),
            (
                AttestationStatus::Certified,
                Some((placed, 7, 3)),
                None,
                None
            )
        );
        let finalized = || {
            let mut r = certified();
            r.log_index = Some(4);
            (r.ledger_block, r.ledger_index, r.ledger_height) =
                (Some(ledger.as_bytes().as_slice()), Some(0), Some(8));
            r
        };
        // Finalized: the ledger's block, not the placement.
        assert_eq!(
            seen(finalized()),
            (
                AttestationStatus::Finalized,
                Some((ledger, 8, 0)),
                Some(4),
                None
            )
        );
        let mut rejected = finalized();
        rejected.rejected_by = Some(owner.as_bytes().as_slice());
        (
            rejected.rejected_block,
            rejected.rejected_index,
            rejected.rejected_height,
        ) = (Some(rejected_at.as_bytes().as_slice()), Some(2), Some(9));
        assert_eq!(
            seen(rejected),
            (
                AttestationStatus::Rejected,
                Some((rejected_at, 9, 2)),
                None,
                Some(owner)
            )
        );
        // A ledger row whose block is not stored is a damaged store.
        let mut damaged = finalized();
        damaged.ledger_height = None;
        assert!(matches!(damaged.into_record(), Err(StoreError::Corrupt(_))));
    }

    #[test]
    fn a_page_fetches_one_more_row_than_it_holds() {
        let q = PageQuery::new(None, 3);
        assert_eq!((q.before, q.fetch), (i64::MAX, 4));
        // The extra row came back: the cursor continues below the last item kept.
        let page = q.page(&[9, 8, 7, 6], record).unwrap();
        assert_eq!(seqs(&page), [9, 8, 7]);
        assert_eq!(page.next_cursor, Some(Cursor::before(7)));
        // Exactly a page, or less: the last page.
        assert_eq!(q.page(&[9, 8, 7], record).unwrap().next_cursor, None);
        assert_eq!(q.page(&[2], record).unwrap().next_cursor, None);
        assert_eq!(q.page(&[], record).unwrap().items, []);
    }

    #[test]
    fn page_bounds_are_clamped_and_cursors_beyond_i64_start_at_the_top() {
        let q = PageQuery::new(Some(Cursor::before(40)), 0);
        assert_eq!((q.before, q.fetch), (40, 2));
        let q = PageQuery::new(Some(Cursor::before(u64::MAX)), u32::MAX);
        assert_eq!(
            (q.before, q.fetch),
            (i64::MAX, i64::from(crate::MAX_PAGE_LIMIT) + 1)
        );
    }

    #[test]
    fn a_row_that_does_not_read_fails_the_page() {
        let q = PageQuery::new(None, 10);
        let failing = |_: &u64| Err(StoreError::corrupt("bad row"));
        assert!(matches!(q.page(&[1], failing), Err(StoreError::Corrupt(_))));
    }

    #[test]
    fn nonce_owners_answer_in_the_order_asked() {
        let (k1, k2) = (PublicKey([1; 32]), PublicKey([2; 32]));
        let (d1, d2) = (Hash32::digest(b"1"), Hash32::digest(b"2"));
        let mut found = NonceOwners::new();
        for (key, nonce, digest) in [(&k2, "n", &d2), (&k1, "n", &d1)] {
            NonceOwnerRow {
                attester_pubkey: &key.0,
                nonce: nonce.into(),
                digest: digest.as_bytes(),
            }
            .add_to(&mut found)
            .unwrap();
        }
        let asked = [
            (k1, "n".to_string()),
            (k1, "m".to_string()),
            (k2, "n".to_string()),
        ];
        assert_eq!(owners_in_order(&asked, &found), [Some(d1), None, Some(d2)]);

        let short = NonceOwnerRow {
            attester_pubkey: &[0; 31],
            nonce: "n".into(),
            digest: d1.as_bytes(),
        };
        assert!(matches!(
            short.add_to(&mut found),
            Err(StoreError::Corrupt(_))
        ));
    }

    #[test]
    fn a_missing_or_negative_counter_is_corrupt() {
        assert_eq!(counter_value(COUNT_ALL, Some(5)), Ok(5));
        assert_eq!(
            counter_value(COUNT_PENDING, None),
            Err(StoreError::Corrupt(
                "counter pending_attestations is missing".into()
            ))
        );
        assert!(matches!(
            counter_value(COUNT_ALL, Some(-1)),
            Err(StoreError::Corrupt(_))
        ));
    }

    #[test]
    fn impact_rows_make_a_summary() {
        let line = ImpactRow {
            attester_id: "a".into(),
            attestations: 2,
            total_impact: 1.5,
        }
        .into_impact()
        .unwrap();
        let summary = ImpactTotalsRow {
            attestations: 3,
            total_impact: 2.0,
        }
        .into_summary(vec![line.clone()])
        .unwrap();
        assert_eq!(
            summary,
            ImpactSummary {
                attestations: 3,
                total_impact: 2.0,
                top: vec![AttesterImpact {
                    attester_id: "a".into(),
                    attestations: 2,
                    total_impact: 1.5,
                }],
            }
        );
        let negative = ImpactRow {
            attester_id: "a".into(),
            attestations: -1,
            total_impact: 0.0,
        };
        assert!(matches!(
            negative.into_impact(),
            Err(StoreError::Corrupt(_))
        ));
        let negative = ImpactTotalsRow {
            attestations: -1,
            total_impact: 0.0,
        };
        assert!(negative.into_summary(Vec::new()).is_err());
    }

    #[test]
    fn vote_rows_are_checked() {
        let block = Hash32::digest(b"block");
        let id = Hash32::digest(b"validator");
        let vote = VoteRow {
            validator_id: id.as_bytes(),
            signature: &[3; 64],
        }
        .into_vote(block)
        .unwrap();
        assert_eq!((vote.block_hash, vote.validator_id), (block, id));
        assert_eq!(vote.signature.0, [3; 64]);
        let short = VoteRow {
            validator_id: id.as_bytes(),
            signature: &[3; 63],
        };
        assert!(matches!(
            short.into_vote(block),
            Err(StoreError::Corrupt(_))
        ));
    }
}
