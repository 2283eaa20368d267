//! The behaviour every store backend must have, written once against the `Store` trait.
//! A backend's test file supplies a `Harness` and expands `store_suite!`; the PostgreSQL
//! backend will reuse this file unchanged.

#![allow(dead_code)]

use std::collections::HashSet;
use std::future::Future;
use std::sync::Arc;

use bizra_ledger::attestation::builder::Draft;
use bizra_ledger::attestation::Attestation;
use bizra_ledger::block::{Block, BlockContent};
use bizra_ledger::crypto::Keypair;
use bizra_ledger::genesis::Genesis;
use bizra_ledger::params::NetworkAnchor;
use bizra_ledger::vote::{QcVote, QuorumCertificate, Vote};
use bizra_ledger::Hash32;
use bizra_store::{
    AttestationStatus, BlockAttestation, BlockInsert, CommitBatch, Cursor, IdentityCheck,
    InsertOutcome, LedgerRow, NewAttestation, PeerBlockInsert, RejectedRow, Signing, Store,
    StoreError, StoredBlock, META_CHAIN_ID, META_HEADER_VERSION,
};

/// Opens the backend under test; calling `open` again reaches the same data.
pub(crate) trait Harness: Send + Sync + 'static {
    type S: Store;
    fn open(&self) -> impl Future<Output = Self::S> + Send;
    /// Whether several processes can open this store at once (then leases tell holders
    /// apart).
    fn shared(&self) -> bool {
        false
    }
}

/// One `#[tokio::test]` per suite function, each with a fresh harness from `$make`.
macro_rules! store_suite {
    ($make:expr) => {
        store_suite!(@tests $make;
            idempotent_insert,
            duplicate_nonce_across_batches,
            nonce_owners_answers_each_pair_in_order,
            duplicates_within_one_batch,
            empty_batch_and_unrepresentable_input,
            block_attestations_are_stored_known_or_contested,
            block_attestations_refuse_what_the_tables_cannot_hold,
            pagination_never_skips_or_repeats_under_concurrent_inserts,
            attester_filter_pages_only_that_attester,
            insert_block_includes_attestations_and_proofs_rebuild,
            insert_block_is_all_or_nothing,
            a_block_keeps_first_placements_and_holds_contested_ones,
            a_large_block_is_placed_whole,
            a_peer_block_is_stored_with_its_attestations_and_qc,
            a_large_peer_block_is_stored_whole,
            a_peer_block_files_contested_attestations,
            a_refused_peer_block_writes_nothing,
            a_peer_block_without_qc_is_stored_uncertified,
            commit_writes_the_ledger_in_one_step,
            a_commit_that_does_not_fit_writes_nothing,
            a_second_rejection_keeps_the_first,
            ledger_lookup_and_attestation_keys,
            status_follows_the_life_of_an_attestation,
            revive_releases_the_work_of_dead_blocks,
            record_signing_takes_a_slot_once,
            signing_is_durable_across_a_reopen,
            insert_own_block_signs_its_slot_once,
            blocks_from_height_orders_by_height_then_hash,
            blocks_of_epoch_by_height_then_hash,
            certification_is_stored_once,
            votes_are_idempotent,
            registry_entries,
            meta_and_identity,
            reopen_keeps_everything,
            impact_summary_by_block_time,
            ping_and_pool_stats,
            a_lease_is_held_by_one_holder_at_a_time,
            a_fenced_block_is_stored_only_by_the_lease_holder,
            writes_abandoned_by_their_caller_finish_and_leave_the_store_usable,
        );
    };
    (@tests $make:expr; $($name:ident),+ $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                let harness = $make;
                suite::$name(&harness).await;
            }
        )+
    };
}
pub(crate) use store_suite;

// ---------------------------------------------------------------- fixtures

pub(crate) const CHAIN: &str = bizra_ledger::params::DEFAULT_CHAIN_ID;

pub(crate) fn key(seed: u8) -> Keypair {
    Keypair::from_seed([seed; 32])
}

/// A valid signed attestation by `kp` with nonce number `n`; `variant` changes the
/// content (and so the digest) without changing the nonce.
pub(crate) fn signed(kp: &Keypair, attester: &str, n: u64, variant: u8) -> (Attestation, Hash32) {
    let draft = Draft {
        network: NetworkAnchor::default(),
        attester_id: attester.to_string(),
        pack_sha256: Hash32::digest_parts(&[attester.as_bytes(), &n.to_be_bytes(), &[variant]]),
        dimensions: [("quality".into(), 0.25 + (n % 4) as f64 / 8.0)].into(),
        weights: [("quality".into(), 1.0)].into(),
        time_window: ["2026-11-27T00:00:00Z".into(), "2026-11-28T00:00:00Z".into()],
        nonce: format!("{n:032x}"),
        resources: None,
        benchmarks: None,
        methodology_ref: None,
    };
    draft.sign(kp).expect("draft signs")
}

pub(crate) fn new_att(a: &(Attestation, Hash32), received_at_ms: u64) -> NewAttestation {
    NewAttestation::new(&a.0, a.1, received_at_ms).expect("valid attestation")
}

/// `count` attestations by `kp` with nonces from `first`.
pub(crate) fn batch(kp: &Keypair, attester: &str, first: u64, count: u64) -> Vec<NewAttestation> {
    (first..first + count)
        .map(|n| new_att(&signed(kp, attester, n, 0), 1_000 + n))
        .collect()
}

pub(crate) fn genesis_block() -> Block {
    Genesis::single(
        key(200).public(),
        "http://127.0.0.1:8080",
        "2026-01-01T00:00:00Z",
    )
    .block()
    .expect("genesis block")
}

pub(crate) fn propose(height: u64, parents: Vec<Hash32>, ids: Vec<Hash32>, ts: u64) -> Block {
    propose_with_entries(height, parents, ids, vec![], ts)
}

/// [`propose`] with registry entry ids; the store keeps them as opaque digests.
pub(crate) fn propose_with_entries(
    height: u64,
    parents: Vec<Hash32>,
    ids: Vec<Hash32>,
    entry_ids: Vec<Hash32>,
    ts: u64,
) -> Block {
    Block::propose(
        BlockContent {
            chain_id: CHAIN.into(),
            epoch: 0,
            height,
            parents,
            attestation_ids: ids,
            entry_ids,
            timestamp_ms: ts,
        },
        &key(200),
    )
    .expect("block")
}

/// A block of `epoch` by the validator with key seed `proposer`.
pub(crate) fn propose_by(
    proposer: u8,
    epoch: u64,
    height: u64,
    parents: Vec<Hash32>,
    ids: Vec<Hash32>,
    ts: u64,
) -> Block {
    Block::propose(
        BlockContent {
            chain_id: CHAIN.into(),
            epoch,
            height,
            parents,
            attestation_ids: ids,
            entry_ids: vec![],
            timestamp_ms: ts,
        },
        &key(proposer),
    )
    .expect("block")
}

/// Registry entry ids as a block names them.
pub(crate) fn entry_ids(n: u8) -> Vec<Hash32> {
    (0..n).map(|i| Hash32::digest(&[b'e', i])).collect()
}

pub(crate) fn qc_for(hash: Hash32) -> QuorumCertificate {
    let v = Vote::sign(hash, &key(200));
    QuorumCertificate {
        block_hash: hash,
        votes: vec![QcVote {
            validator_id: v.validator_id,
            signature: v.signature,
        }],
        weight: 100,
        total_weight: 100,
    }
}

fn digests(items: &[NewAttestation]) -> Vec<Hash32> {
    items.iter().map(|a| a.digest).collect()
}

async fn insert_all<S: Store>(s: &S, items: &[NewAttestation]) -> Vec<u64> {
    s.insert_attestations(items)
        .await
        .expect("insert")
        .into_iter()
        .map(|o| match o {
            InsertOutcome::Inserted { seq } => seq,
            other => panic!("expected Inserted, got {other:?}"),
        })
        .collect()
}

// ---------------------------------------------------------------- attestations

pub(crate) async fn idempotent_insert<H: Harness>(h: &H) {
    let s = h.open().await;
    let a = signed(&key(1), "alice", 1, 0);
    let item = new_att(&a, 5_000);

    let out = s
        .insert_attestations(std::slice::from_ref(&item))
        .await
        .unwrap();
    let seq = match out.as_slice() {
        [InsertOutcome::Inserted { seq }] => *seq,
        other => panic!("{other:?}"),
    };

    // The same attestation again: the stored record, no second row.
    let out = s
        .insert_attestations(std::slice::from_ref(&item))
        .await
        .unwrap();
    let record = match out.as_slice() {
        [InsertOutcome::AlreadyStored { record }] => record.clone(),
        other => panic!("{other:?}"),
    };
    assert_eq!(record.seq, seq);
    assert_eq!(record.digest, a.1);
    assert_eq!(record.status, AttestationStatus::Accepted);
    assert_eq!(s.count_attestations().await.unwrap(), 1);
    assert_eq!(s.count_pending_attestations().await.unwrap(), 1);

    let got = s.get_attestation(&a.1).await.unwrap().expect("stored");
    assert_eq!(got, *record);
    assert_eq!(got.body, a.0.to_canonical_json().unwrap());
    assert_eq!(got.attestation().unwrap(), a.0);
    assert_eq!(got.attester_id, "alice");
    assert_eq!(got.attester_pubkey, key(1).public());
    assert_eq!(got.received_at_ms, 5_000);
    assert_eq!(got.impact_score, a.0.measurement.impact_score);
    assert!(got.block.is_none());
    assert!(s
        .get_attestation(&Hash32::digest(b"nope"))
        .await
        .unwrap()
        .is_none());
}

pub(crate) async fn duplicate_nonce_across_batches<H: Harness>(h: &H) {
    let s = h.open().await;
    let kp = key(1);
    let first = signed(&kp, "alice", 7, 0);
    let reuse = signed(&kp, "alice", 7, 1);
    assert_ne!(first.1, reuse.1);
    insert_all(&s, &[new_att(&first, 1)]).await;

    let out = s.insert_attestations(&[new_att(&reuse, 2)]).await.unwrap();
    assert_eq!(
        out,
        vec![InsertOutcome::DuplicateNonce {
            existing_digest: first.1
        }]
    );
    assert!(s.get_attestation(&reuse.1).await.unwrap().is_none());
    assert_eq!(
        s.nonce_owner(&kp.public(), &first.0.nonce).await.unwrap(),
        Some(first.1)
    );
    // The same nonce under another key is a different nonce.
    assert_eq!(
        s.nonce_owner(&key(2).public(), &first.0.nonce)
            .await
            .unwrap(),
        None
    );
    let other_key = signed(&key(2), "bob", 7, 0);
    insert_all(&s, &[new_att(&other_key, 3)]).await;
    assert_eq!(s.count_attestations().await.unwrap(), 2);
}

pub(crate) async fn nonce_owners_answers_each_pair_in_order<H: Harness>(h: &H) {
    let s = h.open().await;
    assert_eq!(s.nonce_owners(&[]).await.unwrap(), vec![]);
    let kp = key(1);
    let stored: Vec<_> = (0..300u64).map(|i| signed(&kp, "alice", i, 0)).collect();
    let rows: Vec<_> = stored.iter().map(|a| new_att(a, 1)).collect();
    insert_all(&s, &rows).await;
    // 300 stored pairs and 300 free ones interleaved (more than one statement's worth),
    // a stored pair asked twice, and a stored nonce under another key.
    let mut pairs = Vec::new();
    let mut expected = Vec::new();
    for (i, a) in stored.iter().enumerate() {
        pairs.push((kp.public(), a.0.nonce.clone()));
        expected.push(Some(a.1));
        pairs.push((kp.public(), format!("free-{i}")));
        expected.push(None);
    }
    pairs.push((kp.public(), stored[7].0.nonce.clone()));
    expected.push(Some(stored[7].1));
    pairs.push((key(2).public(), stored[7].0.nonce.clone()));
    expected.push(None);
    assert_eq!(s.nonce_owners(&pairs).await.unwrap(), expected);
    for (pair, want) in pairs.iter().zip(&expected).step_by(97) {
        assert_eq!(&s.nonce_owner(&pair.0, &pair.1).await.unwrap(), want);
    }
}

pub(crate) async fn duplicates_within_one_batch<H: Harness>(h: &H) {
    let s = h.open().await;
    let kp = key(1);
    let a = signed(&kp, "alice", 1, 0);
    let a_reuse = signed(&kp, "alice", 1, 1);
    let b = signed(&kp, "alice", 2, 0);
    let items = vec![
        new_att(&a, 1),
        new_att(&a, 1),
        new_att(&a_reuse, 1),
        new_att(&b, 1),
    ];
    let out = s.insert_attestations(&items).await.unwrap();
    assert_eq!(out.len(), 4);
    let seq_a = match &out[0] {
        InsertOutcome::Inserted { seq } => *seq,
        other => panic!("{other:?}"),
    };
    match &out[1] {
        InsertOutcome::AlreadyStored { record } => {
            assert_eq!((record.digest, record.seq), (a.1, seq_a))
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        out[2],
        InsertOutcome::DuplicateNonce {
            existing_digest: a.1
        }
    );
    match &out[3] {
        InsertOutcome::Inserted { seq } => assert!(*seq > seq_a),
        other => panic!("{other:?}"),
    }
    assert_eq!(s.count_attestations().await.unwrap(), 2);
    assert_eq!(s.count_pending_attestations().await.unwrap(), 2);
}

pub(crate) async fn empty_batch_and_unrepresentable_input<H: Harness>(h: &H) {
    let s = h.open().await;
    assert!(s.insert_attestations(&[]).await.unwrap().is_empty());

    let good = new_att(&signed(&key(1), "alice", 1, 0), 1);
    let mut nan = new_att(&signed(&key(1), "alice", 2, 0), 1);
    nan.impact_score = f64::NAN;
    let mut far = new_att(&signed(&key(1), "alice", 3, 0), 1);
    far.received_at_ms = u64::MAX;
    for bad in [nan, far] {
        let err = s
            .insert_attestations(&[good.clone(), bad])
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::Invalid(_)), "{err:?}");
    }
    // Nothing of a refused batch was written.
    assert_eq!(s.count_attestations().await.unwrap(), 0);
    assert!(s.get_attestation(&good.digest).await.unwrap().is_none());
}

/// Attestations carried by another validator's block: new ones are stored as a
/// submission would be, known ones are left alone, and a body whose key and nonce another
/// digest holds here is kept as contested, never refused, never pending, and never the
/// submit rule's owner of that nonce.
pub(crate) async fn block_attestations_are_stored_known_or_contested<H: Harness>(h: &H) {
    let s = h.open().await;
    assert_eq!(s.insert_block_attestations(&[]).await.unwrap(), vec![]);
    let kp = key(1);
    let x = new_att(&signed(&kp, "alice", 7, 0), 10);
    let y = new_att(&signed(&kp, "alice", 7, 1), 11); // x's key and nonce, another body
    let a = new_att(&signed(&kp, "alice", 1, 0), 12);
    let z = new_att(&signed(&kp, "alice", 8, 0), 13);
    let z2 = new_att(&signed(&kp, "alice", 8, 1), 14); // z's key and nonce, same call
    let seq_x = insert_all(&s, std::slice::from_ref(&x)).await[0];

    let items = vec![
        a.clone(),
        x.clone(),
        y.clone(),
        a.clone(),
        y.clone(),
        z.clone(),
        z2.clone(),
    ];
    let out = s.insert_block_attestations(&items).await.unwrap();
    assert_eq!(
        out,
        vec![
            BlockAttestation::Stored,
            BlockAttestation::Known,
            BlockAttestation::Contested { owner: x.digest },
            BlockAttestation::Known,
            BlockAttestation::Known,
            BlockAttestation::Stored,
            BlockAttestation::Contested { owner: z.digest },
        ]
    );
    // Only rows of `attestations` count, and only they wait for a block.
    assert_eq!(s.count_attestations().await.unwrap(), 3);
    assert_eq!(s.count_pending_attestations().await.unwrap(), 3);
    assert_eq!(
        s.pending_attestations(100).await.unwrap(),
        vec![x.digest, a.digest, z.digest]
    );

    // A contested attestation is found with its own body, in no block here.
    for (item, received) in [(&y, 11), (&z2, 14)] {
        let r = s
            .get_attestation(&item.digest)
            .await
            .unwrap()
            .expect("kept");
        assert_eq!(r.digest, item.digest);
        assert_eq!(r.body, item.body);
        assert_eq!(
            (r.attester_pubkey, r.nonce.as_str()),
            (kp.public(), item.nonce.as_str())
        );
        assert_eq!(
            (r.attester_id.as_str(), r.received_at_ms),
            ("alice", received)
        );
        assert_eq!(r.impact_score, item.impact_score);
        assert_eq!(r.status, AttestationStatus::Accepted);
        assert!(r.block.is_none());
    }
    // Its seq comes from the one sequence: no seq names two attestations, and later rows
    // are numbered after it.
    let mut seqs = Vec::new();
    for d in [x.digest, a.digest, y.digest, z.digest, z2.digest] {
        seqs.push(s.get_attestation(&d).await.unwrap().unwrap().seq);
    }
    assert_eq!(seqs[0], seq_x);
    assert_eq!(seqs.iter().collect::<HashSet<_>>().len(), 5, "{seqs:?}");
    let later = insert_all(&s, &batch(&key(2), "bob", 0, 1)).await[0];
    assert!(seqs.iter().all(|&q| q < later), "{seqs:?} then {later}");

    // The submit rule still answers from `attestations` alone.
    assert_eq!(
        s.nonce_owner(&kp.public(), &x.nonce).await.unwrap(),
        Some(x.digest)
    );
    assert_eq!(
        s.nonce_owners(&[(kp.public(), z.nonce.clone())])
            .await
            .unwrap(),
        vec![Some(z.digest)]
    );
    assert_eq!(
        s.insert_attestations(std::slice::from_ref(&y))
            .await
            .unwrap(),
        vec![InsertOutcome::DuplicateNonce {
            existing_digest: x.digest
        }]
    );
    // Contested attestations are not in the newest-first list of submissions.
    let listed: Vec<Hash32> = s
        .list_attestations(None, None, 100)
        .await
        .unwrap()
        .items
        .iter()
        .map(|r| r.digest)
        .collect();
    assert!(!listed.contains(&y.digest) && !listed.contains(&z2.digest));
    assert_eq!(listed.len(), 4);

    // The same block again (a second proposer's block, a retry): all known, no change.
    let again = s.insert_block_attestations(&items).await.unwrap();
    assert!(
        again.iter().all(|o| *o == BlockAttestation::Known),
        "{again:?}"
    );
    assert_eq!(s.count_attestations().await.unwrap(), 4);
    assert_eq!(s.count_pending_attestations().await.unwrap(), 4);
}

pub(crate) async fn block_attestations_refuse_what_the_tables_cannot_hold<H: Harness>(h: &H) {
    let s = h.open().await;
    let x = new_att(&signed(&key(1), "alice", 7, 0), 10);
    insert_all(&s, std::slice::from_ref(&x)).await;
    let good = new_att(&signed(&key(1), "alice", 1, 0), 1);
    let rival = new_att(&signed(&key(1), "alice", 7, 1), 1);
    let mut nan = new_att(&signed(&key(1), "alice", 2, 0), 1);
    nan.impact_score = f64::NAN;
    let err = s
        .insert_block_attestations(&[good.clone(), rival.clone(), nan])
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Invalid(_)), "{err:?}");
    // Nothing of the refused call was written, in either table.
    assert!(s.get_attestation(&good.digest).await.unwrap().is_none());
    assert!(s.get_attestation(&rival.digest).await.unwrap().is_none());
    assert_eq!(s.count_attestations().await.unwrap(), 1);
}

pub(crate) async fn pagination_never_skips_or_repeats_under_concurrent_inserts<H: Harness>(h: &H) {
    let s = Arc::new(h.open().await);
    let initial = batch(&key(1), "alice", 0, 250);
    for chunk in initial.chunks(50) {
        insert_all(&*s, chunk).await;
    }
    let initial: HashSet<Hash32> = digests(&initial).into_iter().collect();

    // A concurrent writer, and more inserts between pages from this task, so new rows
    // land both during and between page reads.
    let writer = {
        let s = Arc::clone(&s);
        tokio::spawn(async move {
            let mut added = Vec::new();
            for i in 0..30u64 {
                let items = batch(&key(2), "bob", i * 5, 5);
                insert_all(&*s, &items).await;
                added.extend(digests(&items));
                tokio::task::yield_now().await;
            }
            added
        })
    };

    let mut seen: Vec<(u64, Hash32)> = Vec::new();
    let mut between: Vec<Hash32> = Vec::new();
    let mut cursor: Option<Cursor> = None;
    let mut pages = 0;
    loop {
        let page = s.list_attestations(None, cursor, 40).await.unwrap();
        assert!(page.items.len() <= 40);
        seen.extend(page.items.iter().map(|r| (r.seq, r.digest)));
        pages += 1;
        let items = batch(&key(3), "carol", pages * 10, 10);
        insert_all(&*s, &items).await;
        between.extend(digests(&items));
        match page.next_cursor {
            // Through the text form, as a client would carry it.
            Some(c) => cursor = Some(c.encode().parse().unwrap()),
            None => break,
        }
        assert!(pages < 100, "pagination does not end");
    }
    let added = writer.await.unwrap();

    // Newest first, strictly: no repeats, and no seq out of order.
    assert!(
        seen.windows(2).all(|w| w[0].0 > w[1].0),
        "seqs not strictly descending"
    );
    let got: HashSet<Hash32> = seen.iter().map(|x| x.1).collect();
    assert_eq!(got.len(), seen.len(), "a row was repeated");
    // Everything present at the start, plus possibly rows that arrived since.
    assert!(initial.is_subset(&got), "a row was skipped");
    let new: HashSet<Hash32> = added.into_iter().chain(between).collect();
    assert!(got.difference(&initial).all(|d| new.contains(d)));
    assert!(pages >= 7);
}

pub(crate) async fn attester_filter_pages_only_that_attester<H: Harness>(h: &H) {
    let s = h.open().await;
    for i in 0..10u64 {
        insert_all(&s, &batch(&key(1), "alice", i * 3, 3)).await;
        insert_all(&s, &batch(&key(2), "bob", i * 2, 2)).await;
    }
    let mut cursor = None;
    let mut alice = Vec::new();
    loop {
        let page = s.list_attestations(Some("alice"), cursor, 7).await.unwrap();
        assert!(page.items.iter().all(|r| r.attester_id == "alice"));
        alice.extend(page.items.iter().map(|r| r.seq));
        cursor = page.next_cursor;
        if cursor.is_none() {
            break;
        }
    }
    assert_eq!(alice.len(), 30);
    assert!(alice.windows(2).all(|w| w[0] > w[1]));
    // An exact multiple of the page size ends with an empty cursor, not an empty page.
    let page = s.list_attestations(Some("bob"), None, 20).await.unwrap();
    assert_eq!((page.items.len(), page.next_cursor), (20, None));
    let page = s.list_attestations(Some("nobody"), None, 20).await.unwrap();
    assert!(page.items.is_empty() && page.next_cursor.is_none());
    // A cursor below every row gives an empty last page; limit 0 still gives one row.
    let page = s
        .list_attestations(None, Some(Cursor::before(0)), 10)
        .await
        .unwrap();
    assert!(page.items.is_empty() && page.next_cursor.is_none());
    let page = s.list_attestations(None, None, 0).await.unwrap();
    assert_eq!(page.items.len(), 1);
    assert!("garbage".parse::<Cursor>().is_err());
}

// ---------------------------------------------------------------- blocks

pub(crate) async fn insert_block_includes_attestations_and_proofs_rebuild<H: Harness>(h: &H) {
    let s = h.open().await;
    let items = batch(&key(1), "alice", 0, 10);
    insert_all(&s, &items).await;
    let genesis = genesis_block();
    assert_eq!(
        s.insert_block(&genesis, 1).await.unwrap(),
        BlockInsert::Inserted
    );

    let pending = s.pending_attestations(100).await.unwrap();
    assert_eq!(pending, digests(&items), "pending is oldest first");
    assert_eq!(
        s.pending_attestations(3).await.unwrap(),
        digests(&items[..3])
    );

    let ids = pending[..7].to_vec();
    let b1 = propose(1, vec![genesis.hash], ids.clone(), 2_000);
    assert_eq!(
        s.insert_block(&b1, 2_001).await.unwrap(),
        BlockInsert::Inserted
    );
    assert_eq!(
        s.insert_block(&b1, 9_999).await.unwrap(),
        BlockInsert::AlreadyStored
    );

    let stored = s.get_block(&b1.hash).await.unwrap().expect("block");
    assert_eq!(stored.block, b1);
    assert!(!stored.finalized && stored.qc.is_none() && stored.finalized_at_ms.is_none());
    assert_eq!(stored.created_at_ms, 2_001);
    let g = s.get_block(&genesis.hash).await.unwrap().expect("genesis");
    assert_eq!(g.block, genesis);
    assert!(g.block.signature.is_none());

    for (i, d) in ids.iter().enumerate() {
        let r = s.get_attestation(d).await.unwrap().unwrap();
        assert_eq!(r.status, AttestationStatus::Included);
        let at = r.block.expect("block ref");
        assert_eq!((at.hash, at.height, at.index), (b1.hash, 1, i as u64));
        // The proof a client gets, rebuilt from the stored block alone.
        let block = s.get_block(&at.hash).await.unwrap().unwrap().block;
        let proof = block.proof(at.index as usize).expect("proof");
        assert!(proof.verify(d, &block.header.att_root));
        assert_eq!(proof.tree_size, block.header.att_count);
    }
    assert_eq!(
        s.pending_attestations(100).await.unwrap(),
        digests(&items[7..])
    );
    assert_eq!(s.count_pending_attestations().await.unwrap(), 3);
    assert_eq!(s.count_attestations().await.unwrap(), 10);
    let untouched = s.get_attestation(&items[9].digest).await.unwrap().unwrap();
    assert_eq!(untouched.status, AttestationStatus::Accepted);
}

/// More attestations than the embedded store places in one transaction: every one is
/// placed at its index, and a block that fails late (its last attestation is unknown)
/// leaves nothing behind.
pub(crate) async fn a_large_block_is_placed_whole<H: Harness>(h: &H) {
    let s = h.open().await;
    let items = batch(&key(1), "alice", 0, 1_300);
    insert_all(&s, &items).await;
    let genesis = genesis_block();
    s.insert_block(&genesis, 1).await.unwrap();
    let ids = digests(&items);

    let mut late_unknown = ids[..1_200].to_vec();
    late_unknown.push(Hash32::digest(b"unknown"));
    let bad = propose(1, vec![genesis.hash], late_unknown, 10);
    let err = s.insert_block(&bad, 10).await.unwrap_err();
    assert!(matches!(err, StoreError::NotFound(_)), "{err:?}");
    assert!(s.get_block(&bad.hash).await.unwrap().is_none());
    assert_eq!(s.count_pending_attestations().await.unwrap(), 1_300);

    let b1 = propose(1, vec![genesis.hash], ids[..1_250].to_vec(), 11);
    assert_eq!(
        s.insert_block(&b1, 11).await.unwrap(),
        BlockInsert::Inserted
    );
    for (i, d) in ids[..1_250].iter().enumerate().step_by(37) {
        let r = s.get_attestation(d).await.unwrap().unwrap();
        assert_eq!(r.status, AttestationStatus::Included, "attestation {i}");
        let at = r.block.expect("block ref");
        assert_eq!((at.hash, at.index), (b1.hash, i as u64));
    }
    let last = s.get_attestation(&ids[1_249]).await.unwrap().unwrap();
    assert_eq!(last.block.map(|b| b.index), Some(1_249));
    assert_eq!(s.count_pending_attestations().await.unwrap(), 50);
    assert_eq!(s.pending_attestations(100).await.unwrap(), ids[1_250..]);
    assert_eq!(
        s.insert_block(&b1, 12).await.unwrap(),
        BlockInsert::AlreadyStored
    );

    // Another validator's block with all of them, in reverse order: the 1,250 placed in
    // b1 keep their place, the last 50 are placed in it (over several transactions on the
    // embedded store).
    let mut reversed = ids.clone();
    reversed.reverse();
    let b1b = Block::propose(
        BlockContent {
            chain_id: CHAIN.into(),
            epoch: 0,
            height: 1,
            parents: vec![genesis.hash],
            attestation_ids: reversed,
            entry_ids: vec![],
            timestamp_ms: 12,
        },
        &key(201),
    )
    .unwrap();
    assert_eq!(
        s.insert_block(&b1b, 12).await.unwrap(),
        BlockInsert::Inserted
    );
    assert_eq!(s.count_pending_attestations().await.unwrap(), 0);
    for (d, want) in [
        (ids[1_299], (b1b.hash, 0)),
        (ids[1_250], (b1b.hash, 49)),
        (ids[1_249], (b1.hash, 1_249)),
        (ids[0], (b1.hash, 0)),
    ] {
        let r = s.get_attestation(&d).await.unwrap().unwrap();
        assert_eq!(r.block.map(|b| (b.hash, b.index)), Some(want));
    }
}

pub(crate) async fn insert_block_is_all_or_nothing<H: Harness>(h: &H) {
    let s = h.open().await;
    let items = batch(&key(1), "alice", 0, 4);
    insert_all(&s, &items).await;
    let genesis = genesis_block();
    s.insert_block(&genesis, 1).await.unwrap();
    let ids = digests(&items);

    // An unknown attestation: nothing of the block is written.
    let unknown = Hash32::digest(b"unknown");
    let bad = propose(1, vec![genesis.hash], vec![ids[0], unknown], 10);
    let err = s.insert_block(&bad, 10).await.unwrap_err();
    assert!(matches!(err, StoreError::NotFound(_)), "{err:?}");
    assert!(s.get_block(&bad.hash).await.unwrap().is_none());
    let a0 = s.get_attestation(&ids[0]).await.unwrap().unwrap();
    assert_eq!(a0.status, AttestationStatus::Accepted);
    assert_eq!(s.count_pending_attestations().await.unwrap(), 4);

    // The same attestation twice in one block.
    let twice = propose(1, vec![genesis.hash], vec![ids[0], ids[0]], 11);
    let err = s.insert_block(&twice, 11).await.unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err:?}");
    assert!(s.get_block(&twice.hash).await.unwrap().is_none());

    // Twice in one block, even with a good block stored that holds it.
    let b1 = propose(1, vec![genesis.hash], vec![ids[0], ids[1]], 12);
    s.insert_block(&b1, 12).await.unwrap();
    let b1b = propose(1, vec![genesis.hash], vec![ids[2], ids[1], ids[2]], 13);
    let err = s.insert_block(&b1b, 13).await.unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err:?}");
    assert!(s.get_block(&b1b.hash).await.unwrap().is_none());
    let a2 = s.get_attestation(&ids[2]).await.unwrap().unwrap();
    assert_eq!(a2.status, AttestationStatus::Accepted);
    assert_eq!(s.count_pending_attestations().await.unwrap(), 2);

    // A hash stored with other content.
    let mut other = b1.clone();
    other.signature = None;
    let err = s.insert_block(&other, 14).await.unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err:?}");

    // A block whose header does not hash to its hash is refused before any write.
    let mut forged = propose(2, vec![b1.hash], vec![ids[2]], 14);
    forged.header.timestamp_ms += 1;
    let err = s.insert_block(&forged, 14).await.unwrap_err();
    assert!(matches!(err, StoreError::Invalid(_)), "{err:?}");
}

/// Two validators may include the same attestation, and a block may carry contested
/// ones: an attestation keeps its first placement, a contested one is never placed, and
/// only the rest are placed (and leave the pending count).
pub(crate) async fn a_block_keeps_first_placements_and_holds_contested_ones<H: Harness>(h: &H) {
    let s = h.open().await;
    let kp = key(1);
    let x = new_att(&signed(&kp, "alice", 1, 0), 1);
    let a = new_att(&signed(&kp, "alice", 2, 0), 2);
    let c = new_att(&signed(&kp, "alice", 3, 0), 3);
    let y = new_att(&signed(&kp, "alice", 1, 1), 4); // x's nonce
    insert_all(&s, &[x.clone(), a.clone(), c.clone()]).await;
    assert_eq!(
        s.insert_block_attestations(std::slice::from_ref(&y))
            .await
            .unwrap(),
        vec![BlockAttestation::Contested { owner: x.digest }]
    );
    let genesis = genesis_block();
    s.insert_block(&genesis, 1).await.unwrap();
    let b1 = propose(1, vec![genesis.hash], vec![x.digest, a.digest], 10);
    s.insert_block(&b1, 10).await.unwrap();
    assert_eq!(s.count_pending_attestations().await.unwrap(), 1);

    // Another proposer's block at the same height: a (placed in b1), y (contested), c.
    let b1b = Block::propose(
        BlockContent {
            chain_id: CHAIN.into(),
            epoch: 0,
            height: 1,
            parents: vec![genesis.hash],
            attestation_ids: vec![a.digest, y.digest, c.digest],
            entry_ids: vec![],
            timestamp_ms: 11,
        },
        &key(201),
    )
    .unwrap();
    assert_eq!(
        s.insert_block(&b1b, 11).await.unwrap(),
        BlockInsert::Inserted
    );
    let at = |d: Hash32| {
        let s = &s;
        async move {
            let r = s.get_attestation(&d).await.unwrap().unwrap();
            (r.status, r.block.map(|b| (b.hash, b.index)))
        }
    };
    assert_eq!(
        at(a.digest).await,
        (AttestationStatus::Included, Some((b1.hash, 1)))
    );
    assert_eq!(
        at(c.digest).await,
        (AttestationStatus::Included, Some((b1b.hash, 2)))
    );
    assert_eq!(at(y.digest).await, (AttestationStatus::Accepted, None));
    assert_eq!(s.count_pending_attestations().await.unwrap(), 0);
    assert!(s.pending_attestations(10).await.unwrap().is_empty());
    assert_eq!(s.get_block(&b1b.hash).await.unwrap().unwrap().block, b1b);
    // Again: the identical block, nothing changes.
    assert_eq!(
        s.insert_block(&b1b, 12).await.unwrap(),
        BlockInsert::AlreadyStored
    );
    assert_eq!(s.count_pending_attestations().await.unwrap(), 0);

    // A contested digest twice is still twice; an unknown one is still unknown.
    let twice = propose(2, vec![b1.hash], vec![y.digest, x.digest, y.digest], 20);
    let err = s.insert_block(&twice, 20).await.unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err:?}");
    let unknown = Hash32::digest(b"unknown");
    let missing = propose(2, vec![b1.hash], vec![y.digest, unknown], 21);
    let err = s.insert_block(&missing, 21).await.unwrap_err();
    assert_eq!(err, StoreError::NotFound(format!("attestation {unknown}")));
    for b in [&twice, &missing] {
        assert!(s.get_block(&b.hash).await.unwrap().is_none());
    }
}

// ---------------------------------------------------------------- peer blocks

/// Status and placement (hash, height, index) of one attestation.
async fn placed_at<S: Store>(
    s: &S,
    digest: &Hash32,
) -> (AttestationStatus, Option<(Hash32, u64, u64)>) {
    let r = s.get_attestation(digest).await.unwrap().expect("stored");
    (r.status, r.block.map(|b| (b.hash, b.height, b.index)))
}

/// Another validator's block with new attestations (and some submitted here) and its QC,
/// in one call: everything is visible after, the attestations certified where the block
/// placed them. The same call again changes nothing.
pub(crate) async fn a_peer_block_is_stored_with_its_attestations_and_qc<H: Harness>(h: &H) {
    let s = h.open().await;
    let genesis = genesis_block();
    s.insert_block(&genesis, 1).await.unwrap();
    let mine = batch(&key(2), "bob", 0, 2);
    insert_all(&s, &mine).await;
    let new = batch(&key(1), "alice", 0, 5);
    let items: Vec<NewAttestation> = new.iter().chain(&mine).cloned().collect();
    let b1 = propose_by(201, 0, 1, vec![genesis.hash], digests(&items), 100);
    let qc = qc_for(b1.hash);

    let out = s
        .insert_peer_block(&b1, &items, Some(&qc), 110, 120)
        .await
        .unwrap();
    let mut outcomes = vec![BlockAttestation::Stored; 5];
    outcomes.extend([BlockAttestation::Known; 2]);
    assert_eq!(
        out,
        PeerBlockInsert {
            attestations: outcomes,
            block: BlockInsert::Inserted,
            newly_certified: true,
        }
    );
    let stored = s.get_block(&b1.hash).await.unwrap().expect("stored");
    assert_eq!(stored.block, b1);
    assert!(stored.certified);
    assert_eq!(
        (
            stored.qc.as_ref(),
            stored.certified_at_ms,
            stored.created_at_ms
        ),
        (Some(&qc), Some(120), 110)
    );
    assert!(!stored.finalized && stored.finalized_at_ms.is_none() && stored.commit_seq.is_none());
    for (i, item) in items.iter().enumerate() {
        assert_eq!(
            placed_at(&s, &item.digest).await,
            (AttestationStatus::Certified, Some((b1.hash, 1, i as u64))),
            "attestation {i}"
        );
        let r = s.get_attestation(&item.digest).await.unwrap().unwrap();
        assert_eq!(
            (r.body.as_slice(), r.received_at_ms, r.attester_id.as_str()),
            (
                item.body.as_slice(),
                item.received_at_ms,
                item.attester_id.as_str()
            )
        );
    }
    assert_eq!(s.count_attestations().await.unwrap(), 7);
    assert_eq!(s.count_pending_attestations().await.unwrap(), 0);
    assert!(s.pending_attestations(10).await.unwrap().is_empty());
    // New rows are submissions of this store's sequence, listed newest first.
    let listed = s.list_attestations(None, None, 100).await.unwrap().items;
    assert_eq!(listed.len(), 7);
    assert!(listed.windows(2).all(|w| w[0].seq > w[1].seq));

    // The same call again (a retry, the block fetched twice), with another QC and times:
    // nothing changes, and the first certificate stays.
    let mut later = qc_for(b1.hash);
    later.weight = 1;
    let again = s
        .insert_peer_block(&b1, &items, Some(&later), 210, 220)
        .await
        .unwrap();
    assert_eq!(
        again,
        PeerBlockInsert {
            attestations: vec![BlockAttestation::Known; 7],
            block: BlockInsert::AlreadyStored,
            newly_certified: false,
        }
    );
    assert_eq!(s.get_block(&b1.hash).await.unwrap(), Some(stored));
    assert_eq!(s.count_attestations().await.unwrap(), 7);
    assert_eq!(s.count_pending_attestations().await.unwrap(), 0);
    assert!(!s.mark_certified(&qc, 300).await.unwrap());

    // A block with no attestations.
    let b2 = propose_by(201, 0, 2, vec![b1.hash], vec![], 200);
    assert_eq!(
        s.insert_peer_block(&b2, &[], Some(&qc_for(b2.hash)), 201, 202)
            .await
            .unwrap(),
        PeerBlockInsert {
            attestations: vec![],
            block: BlockInsert::Inserted,
            newly_certified: true,
        }
    );
    let b2_stored = s.get_block(&b2.hash).await.unwrap().unwrap();
    assert_eq!(
        (b2_stored.certified, b2_stored.certified_at_ms),
        (true, Some(202))
    );
}

/// More attestations than the embedded store places in one transaction: the new ones are
/// stored, the ones placed in another block keep their placement, the rest are placed at
/// their index, and the certificate is stored once the block is whole.
pub(crate) async fn a_large_peer_block_is_stored_whole<H: Harness>(h: &H) {
    let s = h.open().await;
    let genesis = genesis_block();
    s.insert_block(&genesis, 1).await.unwrap();
    let mine = batch(&key(2), "bob", 0, 40);
    insert_all(&s, &mine).await;
    let b1 = propose(1, vec![genesis.hash], digests(&mine), 10);
    s.insert_block(&b1, 10).await.unwrap();
    let new = batch(&key(1), "alice", 0, 260);
    // The peer's order: the new ones in reverse, then this store's.
    let items: Vec<NewAttestation> = new.iter().rev().chain(&mine).cloned().collect();
    let b1b = propose_by(201, 0, 1, vec![genesis.hash], digests(&items), 11);
    let qc = qc_for(b1b.hash);

    let out = s
        .insert_peer_block(&b1b, &items, Some(&qc), 12, 13)
        .await
        .unwrap();
    let mut outcomes = vec![BlockAttestation::Stored; 260];
    outcomes.extend([BlockAttestation::Known; 40]);
    assert_eq!(
        out,
        PeerBlockInsert {
            attestations: outcomes,
            block: BlockInsert::Inserted,
            newly_certified: true,
        }
    );
    assert_eq!(s.count_attestations().await.unwrap(), 300);
    assert_eq!(s.count_pending_attestations().await.unwrap(), 0);
    let stored = s.get_block(&b1b.hash).await.unwrap().unwrap();
    assert_eq!(stored.block, b1b);
    assert_eq!((stored.certified_at_ms, stored.qc), (Some(13), Some(qc)));
    for (i, item) in items.iter().enumerate() {
        let want = if i < 260 {
            (AttestationStatus::Certified, Some((b1b.hash, 1, i as u64)))
        } else {
            // b1 placed it first, and b1 has no QC.
            (
                AttestationStatus::Included,
                Some((b1.hash, 1, i as u64 - 260)),
            )
        };
        assert_eq!(placed_at(&s, &item.digest).await, want, "attestation {i}");
    }
    assert_eq!(
        placed_at(&s, &new[0].digest).await,
        (AttestationStatus::Certified, Some((b1b.hash, 1, 259)))
    );

    let again = s
        .insert_peer_block(&b1b, &items, Some(&qc_for(b1b.hash)), 20, 21)
        .await
        .unwrap();
    assert_eq!(
        again,
        PeerBlockInsert {
            attestations: vec![BlockAttestation::Known; 300],
            block: BlockInsert::AlreadyStored,
            newly_certified: false,
        }
    );
    assert_eq!(s.count_attestations().await.unwrap(), 300);
}

/// A peer block holding a body whose key and nonce another digest holds here: the body is
/// kept as contested (never placed), the rest are placed, the block is stored whole.
pub(crate) async fn a_peer_block_files_contested_attestations<H: Harness>(h: &H) {
    let s = h.open().await;
    let genesis = genesis_block();
    s.insert_block(&genesis, 1).await.unwrap();
    let kp = key(1);
    let x = new_att(&signed(&kp, "alice", 7, 0), 10);
    let y = new_att(&signed(&kp, "alice", 7, 1), 11); // x's key and nonce
    let a = new_att(&signed(&kp, "alice", 8, 0), 12);
    insert_all(&s, std::slice::from_ref(&x)).await;
    let items = vec![a.clone(), y.clone(), x.clone()];
    let b1 = propose_by(201, 0, 1, vec![genesis.hash], digests(&items), 100);
    let qc = qc_for(b1.hash);

    let out = s
        .insert_peer_block(&b1, &items, Some(&qc), 100, 101)
        .await
        .unwrap();
    assert_eq!(
        out,
        PeerBlockInsert {
            attestations: vec![
                BlockAttestation::Stored,
                BlockAttestation::Contested { owner: x.digest },
                BlockAttestation::Known,
            ],
            block: BlockInsert::Inserted,
            newly_certified: true,
        }
    );
    let stored = s
        .get_block(&b1.hash)
        .await
        .unwrap()
        .expect("the block is stored");
    assert_eq!((stored.block, stored.certified), (b1.clone(), true));
    assert_eq!(
        placed_at(&s, &a.digest).await,
        (AttestationStatus::Certified, Some((b1.hash, 1, 0)))
    );
    assert_eq!(
        placed_at(&s, &x.digest).await,
        (AttestationStatus::Certified, Some((b1.hash, 1, 2)))
    );
    let r = s.get_attestation(&y.digest).await.unwrap().expect("kept");
    assert_eq!((r.status, r.block), (AttestationStatus::Accepted, None));
    assert_eq!((r.body, r.nonce), (y.body.clone(), y.nonce.clone()));
    // The submit rule's owner stays x; only rows of `attestations` count.
    assert_eq!(
        s.nonce_owner(&kp.public(), &x.nonce).await.unwrap(),
        Some(x.digest)
    );
    assert_eq!(s.count_attestations().await.unwrap(), 2);
    assert_eq!(s.count_pending_attestations().await.unwrap(), 0);

    let again = s
        .insert_peer_block(&b1, &items, Some(&qc), 200, 201)
        .await
        .unwrap();
    assert_eq!(
        again,
        PeerBlockInsert {
            attestations: vec![BlockAttestation::Known; 3],
            block: BlockInsert::AlreadyStored,
            newly_certified: false,
        }
    );
    assert_eq!(s.count_attestations().await.unwrap(), 2);
}

/// Everything `insert_peer_block` can write, to show a refused call wrote nothing.
#[derive(Debug, PartialEq)]
struct PeerSnapshot {
    attestations: u64,
    pending: u64,
    pending_list: Vec<Hash32>,
    listed: Vec<Hash32>,
    records: Vec<Option<bizra_store::AttestationRecord>>,
    blocks: Vec<StoredBlock>,
}

async fn peer_snapshot<S: Store>(s: &S, asked: &[Hash32]) -> PeerSnapshot {
    let mut records = Vec::new();
    for d in asked {
        records.push(s.get_attestation(d).await.unwrap());
    }
    PeerSnapshot {
        attestations: s.count_attestations().await.unwrap(),
        pending: s.count_pending_attestations().await.unwrap(),
        pending_list: s.pending_attestations(1000).await.unwrap(),
        listed: s
            .list_attestations(None, None, 1000)
            .await
            .unwrap()
            .items
            .iter()
            .map(|r| r.digest)
            .collect(),
        records,
        blocks: s.all_blocks().await.unwrap(),
    }
}

/// A call the store refuses writes nothing at all: attestations that are not exactly the
/// block's in block order, a QC for another block, an attestation the tables cannot hold,
/// one twice in the block, a forged header, or the hash stored with other content.
pub(crate) async fn a_refused_peer_block_writes_nothing<H: Harness>(h: &H) {
    let s = h.open().await;
    let genesis = genesis_block();
    s.insert_block(&genesis, 1).await.unwrap();
    let kp = key(1);
    let x = new_att(&signed(&kp, "alice", 7, 0), 10);
    insert_all(&s, std::slice::from_ref(&x)).await;
    let (p, q) = (
        new_att(&signed(&kp, "alice", 1, 0), 11),
        new_att(&signed(&kp, "alice", 2, 0), 12),
    );
    let b1 = propose_by(201, 0, 1, vec![genesis.hash], vec![p.digest, q.digest], 100);
    s.insert_peer_block(&b1, &[p.clone(), q.clone()], None, 100, 0)
        .await
        .unwrap();

    let n1 = new_att(&signed(&kp, "alice", 3, 0), 13);
    let y = new_att(&signed(&kp, "alice", 7, 1), 14); // x's key and nonce
    let n2 = new_att(&signed(&kp, "alice", 4, 0), 15);
    let stray = new_att(&signed(&kp, "alice", 5, 0), 16);
    let nb = propose_by(
        202,
        0,
        2,
        vec![b1.hash],
        digests(&[n1.clone(), y.clone(), n2.clone()]),
        200,
    );
    let good = vec![n1.clone(), y.clone(), n2.clone()];
    let asked: Vec<Hash32> = [&x, &p, &q, &n1, &y, &n2, &stray]
        .iter()
        .map(|i| i.digest)
        .collect();
    let before = peer_snapshot(&s, &asked).await;
    assert_eq!(
        (before.attestations, before.pending, before.blocks.len()),
        (3, 1, 2)
    );

    let mut nan = good.clone();
    nan[2].impact_score = f64::NAN;
    let twice = propose_by(202, 0, 2, vec![b1.hash], vec![n1.digest, n1.digest], 201);
    let mut forged = nb.clone();
    forged.header.timestamp_ms += 1;
    let mut other = b1.clone();
    other.signature = None;
    /// One refused call and whether its refusal is a `Conflict` (else `Invalid`).
    struct Refused<'b> {
        what: &'static str,
        block: &'b Block,
        items: Vec<NewAttestation>,
        qc: Option<QuorumCertificate>,
        conflict: bool,
    }
    let call = |what, block, items, qc, conflict| Refused {
        what,
        block,
        items,
        qc,
        conflict,
    };
    let nb_qc = Some(qc_for(nb.hash));
    let refused = vec![
        call("one missing", &nb, vec![n1.clone(), y.clone()], None, false),
        call(
            "one too many",
            &nb,
            vec![n1.clone(), y.clone(), n2.clone(), stray.clone()],
            None,
            false,
        ),
        call("none", &nb, vec![], nb_qc.clone(), false),
        call(
            "out of order",
            &nb,
            vec![n1.clone(), n2.clone(), y.clone()],
            nb_qc.clone(),
            false,
        ),
        call(
            "another attestation",
            &nb,
            vec![n1.clone(), y.clone(), stray.clone()],
            None,
            false,
        ),
        call(
            "a QC for another block",
            &nb,
            good.clone(),
            Some(qc_for(b1.hash)),
            false,
        ),
        call("a NaN impact score", &nb, nan, nb_qc.clone(), false),
        call(
            "an attestation twice",
            &twice,
            vec![n1.clone(), n1.clone()],
            None,
            true,
        ),
        call(
            "a forged header",
            &forged,
            good.clone(),
            nb_qc.clone(),
            false,
        ),
        call(
            "the hash stored with other content",
            &other,
            vec![p.clone(), q.clone()],
            Some(qc_for(b1.hash)),
            true,
        ),
    ];
    for r in refused {
        let err = s
            .insert_peer_block(r.block, &r.items, r.qc.as_ref(), 300, 301)
            .await
            .expect_err(r.what);
        let kind_ok = if r.conflict {
            matches!(err, StoreError::Conflict(_))
        } else {
            matches!(err, StoreError::Invalid(_))
        };
        assert!(kind_ok, "{}: {err:?}", r.what);
        assert_eq!(
            peer_snapshot(&s, &asked).await,
            before,
            "{} wrote something",
            r.what
        );
    }
    // b1 is still not certified, the refused call's QC notwithstanding.
    let b1_stored = s.get_block(&b1.hash).await.unwrap().unwrap();
    assert!(!b1_stored.certified && b1_stored.qc.is_none());

    // What was refused for its form goes in when it is right.
    let out = s
        .insert_peer_block(&nb, &good, Some(&qc_for(nb.hash)), 400, 401)
        .await
        .unwrap();
    assert_eq!(
        out.attestations,
        vec![
            BlockAttestation::Stored,
            BlockAttestation::Contested { owner: x.digest },
            BlockAttestation::Stored,
        ]
    );
    assert_eq!(
        (out.block, out.newly_certified),
        (BlockInsert::Inserted, true)
    );
    assert_eq!(s.count_attestations().await.unwrap(), 5);
    assert!(s.get_attestation(&stray.digest).await.unwrap().is_none());
}

/// Without a QC the block is stored and placed, not certified; the QC may come later, with
/// the block again or on its own.
pub(crate) async fn a_peer_block_without_qc_is_stored_uncertified<H: Harness>(h: &H) {
    let s = h.open().await;
    let genesis = genesis_block();
    s.insert_block(&genesis, 1).await.unwrap();
    let items = batch(&key(1), "alice", 0, 3);
    let b1 = propose_by(201, 0, 1, vec![genesis.hash], digests(&items), 100);
    let out = s
        .insert_peer_block(&b1, &items, None, 100, 999)
        .await
        .unwrap();
    assert_eq!(
        out,
        PeerBlockInsert {
            attestations: vec![BlockAttestation::Stored; 3],
            block: BlockInsert::Inserted,
            newly_certified: false,
        }
    );
    let stored = s.get_block(&b1.hash).await.unwrap().expect("stored");
    assert_eq!(stored.block, b1);
    assert!(!stored.certified && stored.qc.is_none() && stored.certified_at_ms.is_none());
    assert_eq!(stored.created_at_ms, 100);
    for (i, item) in items.iter().enumerate() {
        assert_eq!(
            placed_at(&s, &item.digest).await,
            (AttestationStatus::Included, Some((b1.hash, 1, i as u64)))
        );
    }
    assert_eq!(s.count_attestations().await.unwrap(), 3);
    assert_eq!(s.count_pending_attestations().await.unwrap(), 0);

    // The block again, now with its QC (a catch-up fetching it certified).
    let qc = qc_for(b1.hash);
    let again = s
        .insert_peer_block(&b1, &items, Some(&qc), 150, 160)
        .await
        .unwrap();
    assert_eq!(
        again,
        PeerBlockInsert {
            attestations: vec![BlockAttestation::Known; 3],
            block: BlockInsert::AlreadyStored,
            newly_certified: true,
        }
    );
    let certified = s.get_block(&b1.hash).await.unwrap().unwrap();
    assert_eq!(
        (
            certified.certified,
            certified.certified_at_ms,
            certified.qc.as_ref()
        ),
        (true, Some(160), Some(&qc))
    );
    assert_eq!(certified.created_at_ms, 100);
    assert_eq!(
        placed_at(&s, &items[2].digest).await,
        (AttestationStatus::Certified, Some((b1.hash, 1, 2)))
    );
    assert!(!s.mark_certified(&qc, 170).await.unwrap());

    // Or the QC on its own, later (a vote's block, certified by the votes).
    let b2 = propose_by(201, 0, 2, vec![b1.hash], vec![], 200);
    s.insert_peer_block(&b2, &[], None, 200, 0).await.unwrap();
    assert!(!s.get_block(&b2.hash).await.unwrap().unwrap().certified);
    assert!(s.mark_certified(&qc_for(b2.hash), 300).await.unwrap());
    assert_eq!(
        s.get_block(&b2.hash)
            .await
            .unwrap()
            .unwrap()
            .certified_at_ms,
        Some(300)
    );
}

// ---------------------------------------------------------------- the ledger

/// Two validators' blocks at height 1 and one at height 2, with what a commit needs:
/// `x`, `a`, `c` and `b` submitted here, `y` carried by b1b with x's key and nonce
/// (contested), registry entries in b1 and b1b.
pub(crate) struct World {
    pub x: NewAttestation,
    pub a: NewAttestation,
    pub c: NewAttestation,
    pub y: NewAttestation,
    pub b: NewAttestation,
    pub genesis: Block,
    pub b1: Block,
    pub b1b: Block,
    pub b2: Block,
    pub entries: Vec<u64>,
}

pub(crate) async fn world<S: Store>(s: &S) -> World {
    let k1 = key(1);
    let x = new_att(&signed(&k1, "alice", 1, 0), 10);
    let a = new_att(&signed(&k1, "alice", 2, 0), 11);
    let c = new_att(&signed(&k1, "alice", 3, 0), 12);
    let y = new_att(&signed(&k1, "alice", 1, 1), 13);
    let b = new_att(&signed(&key(2), "bob", 1, 0), 14);
    insert_all(s, &[x.clone(), a.clone(), c.clone(), b.clone()]).await;
    assert_eq!(
        s.insert_block_attestations(std::slice::from_ref(&y))
            .await
            .unwrap(),
        vec![BlockAttestation::Contested { owner: x.digest }]
    );
    let genesis = genesis_block();
    let b1 = propose_by(200, 0, 1, vec![genesis.hash], vec![x.digest, a.digest], 100);
    let b1b = propose_by(
        201,
        0,
        1,
        vec![genesis.hash],
        vec![y.digest, a.digest, c.digest],
        101,
    );
    let b2 = propose_by(200, 0, 2, vec![b1.hash, b1b.hash], vec![b.digest], 200);
    for blk in [&genesis, &b1, &b1b, &b2] {
        s.insert_block(blk, blk.header.timestamp_ms).await.unwrap();
    }
    let mut entries = Vec::new();
    for i in 0..3u64 {
        let body = serde_json::json!({ "entry": i });
        entries.push(s.insert_registry_entry("register", &body, 0).await.unwrap());
    }
    s.mark_registry_entries_included(&b1.hash, &entries[..2])
        .await
        .unwrap();
    s.mark_registry_entries_included(&b1b.hash, &entries[2..])
        .await
        .unwrap();
    World {
        x,
        a,
        c,
        y,
        b,
        genesis,
        b1,
        b1b,
        b2,
        entries,
    }
}

pub(crate) fn ledger_row(log_index: u64, digest: Hash32, block: &Block, index: u64) -> LedgerRow {
    LedgerRow {
        log_index,
        digest,
        block_hash: block.hash,
        block_index: index,
    }
}

impl World {
    /// The ledger order committing b1 then b1b: x first (so y is rejected), then a (b1b's
    /// copy is a duplicate), then c.
    pub(crate) fn first_commit(&self) -> CommitBatch {
        CommitBatch {
            blocks: vec![self.b1.hash, self.b1b.hash],
            appended: vec![
                ledger_row(0, self.x.digest, &self.b1, 0),
                ledger_row(1, self.a.digest, &self.b1, 1),
                ledger_row(2, self.c.digest, &self.b1b, 2),
            ],
            rejected: vec![RejectedRow {
                digest: self.y.digest,
                owner: self.x.digest,
                block_hash: self.b1b.hash,
                block_index: 0,
            }],
            entries: self.entries.clone(),
            state: serde_json::json!({"epoch": 0, "last_leader_height": 0}),
            at_ms: 500,
        }
    }

    /// Then b2.
    pub(crate) fn second_commit(&self) -> CommitBatch {
        CommitBatch {
            blocks: vec![self.b2.hash],
            appended: vec![ledger_row(3, self.b.digest, &self.b2, 0)],
            rejected: vec![],
            entries: vec![],
            state: serde_json::json!({"epoch": 0, "last_leader_height": 2}),
            at_ms: 600,
        }
    }
}

/// Status, block (hash, height, index), log_index and rejected_by of one attestation.
type Seen = (
    AttestationStatus,
    Option<(Hash32, u64, u64)>,
    Option<u64>,
    Option<Hash32>,
);

async fn seen<S: Store>(s: &S, digest: &Hash32) -> Seen {
    let r = s.get_attestation(digest).await.unwrap().expect("stored");
    (
        r.status,
        r.block.map(|b| (b.hash, b.height, b.index)),
        r.log_index,
        r.rejected_by,
    )
}

/// Everything a commit writes, to show a refused one wrote nothing.
#[derive(Debug, PartialEq)]
struct Snapshot {
    ledger: Vec<LedgerRow>,
    ledger_len: u64,
    rejected: u64,
    committed: Vec<Hash32>,
    blocks: Vec<(Hash32, bool, Option<u64>, Option<u64>)>,
    state: Option<serde_json::Value>,
    entries: Vec<(u64, Option<Hash32>, Option<u64>)>,
    pending: u64,
    records: Vec<Seen>,
}

async fn snapshot<S: Store>(s: &S, w: &World) -> Snapshot {
    let mut records = Vec::new();
    for d in [w.x.digest, w.a.digest, w.c.digest, w.y.digest, w.b.digest] {
        records.push(seen(s, &d).await);
    }
    Snapshot {
        ledger: s.ledger_page(0, 1000).await.unwrap(),
        ledger_len: s.ledger_len().await.unwrap(),
        rejected: s.count_rejected().await.unwrap(),
        committed: s.committed_blocks().await.unwrap(),
        blocks: s
            .all_blocks()
            .await
            .unwrap()
            .iter()
            .map(|b| (b.block.hash, b.finalized, b.finalized_at_ms, b.commit_seq))
            .collect(),
        state: s.commit_state().await.unwrap(),
        entries: s
            .registry_entries()
            .await
            .unwrap()
            .iter()
            .map(|e| (e.seq, e.block_hash, e.commit_seq))
            .collect(),
        pending: s.count_pending_attestations().await.unwrap(),
        records,
    }
}

/// One commit writes the blocks' order, the ledger, the rejections, the entries' order and
/// the state; every attestation's record follows.
pub(crate) async fn commit_writes_the_ledger_in_one_step<H: Harness>(h: &H) {
    let s = h.open().await;
    let w = world(&s).await;
    assert_eq!(s.ledger_len().await.unwrap(), 0);
    assert_eq!(s.commit_state().await.unwrap(), None);
    assert!(s.committed_blocks().await.unwrap().is_empty());
    assert!(s.ledger_page(0, 10).await.unwrap().is_empty());
    assert_eq!(s.finalized_height().await.unwrap(), None);

    s.commit(&w.first_commit()).await.unwrap();
    assert_eq!(s.ledger_len().await.unwrap(), 3);
    assert_eq!(s.count_rejected().await.unwrap(), 1);
    assert_eq!(
        s.ledger_page(0, 10).await.unwrap(),
        w.first_commit().appended
    );
    assert_eq!(
        s.ledger_page(1, 1).await.unwrap(),
        w.first_commit().appended[1..2]
    );
    assert!(s.ledger_page(3, 10).await.unwrap().is_empty());
    assert!(s.ledger_page(u64::MAX, 10).await.unwrap().is_empty());
    assert_eq!(
        s.committed_blocks().await.unwrap(),
        vec![w.b1.hash, w.b1b.hash]
    );
    for (blk, seq) in [(&w.b1, 0), (&w.b1b, 1)] {
        let stored = s.get_block(&blk.hash).await.unwrap().unwrap();
        assert!(stored.finalized);
        assert_eq!(
            (stored.finalized_at_ms, stored.commit_seq),
            (Some(500), Some(seq))
        );
    }
    let b2 = s.get_block(&w.b2.hash).await.unwrap().unwrap();
    assert!(!b2.finalized && b2.commit_seq.is_none() && b2.finalized_at_ms.is_none());
    assert_eq!(s.finalized_height().await.unwrap(), Some(1));
    assert_eq!(
        s.commit_state().await.unwrap(),
        Some(w.first_commit().state)
    );

    // Finalized: the ledger's block and index and the log_index; rejected: the block
    // where the ledger order met it and the owner.
    assert_eq!(
        seen(&s, &w.x.digest).await,
        (
            AttestationStatus::Finalized,
            Some((w.b1.hash, 1, 0)),
            Some(0),
            None
        )
    );
    assert_eq!(
        seen(&s, &w.a.digest).await,
        (
            AttestationStatus::Finalized,
            Some((w.b1.hash, 1, 1)),
            Some(1),
            None
        )
    );
    assert_eq!(
        seen(&s, &w.c.digest).await,
        (
            AttestationStatus::Finalized,
            Some((w.b1b.hash, 1, 2)),
            Some(2),
            None
        )
    );
    assert_eq!(
        seen(&s, &w.y.digest).await,
        (
            AttestationStatus::Rejected,
            Some((w.b1b.hash, 1, 0)),
            None,
            Some(w.x.digest)
        )
    );
    // The entries, committed in that order, are no longer pending; a new one is.
    let entries = s.registry_entries().await.unwrap();
    assert_eq!(
        entries.iter().map(|e| e.commit_seq).collect::<Vec<_>>(),
        vec![Some(0), Some(1), Some(2)]
    );
    assert!(s.pending_registry_entries().await.unwrap().is_empty());
    let fresh = s
        .insert_registry_entry("exit", &serde_json::json!({"v": 9}), 0)
        .await
        .unwrap();
    let pending = s.pending_registry_entries().await.unwrap();
    assert_eq!(
        pending.iter().map(|e| e.seq).collect::<Vec<_>>(),
        vec![fresh]
    );
    assert_eq!((pending[0].block_hash, pending[0].commit_seq), (None, None));
    // Counters: the four submissions are all placed now.
    assert_eq!(s.count_attestations().await.unwrap(), 4);
    assert_eq!(s.count_pending_attestations().await.unwrap(), 0);

    // The next step continues both orders and replaces the state.
    s.commit(&w.second_commit()).await.unwrap();
    assert_eq!(s.ledger_len().await.unwrap(), 4);
    assert_eq!(
        s.committed_blocks().await.unwrap(),
        vec![w.b1.hash, w.b1b.hash, w.b2.hash]
    );
    assert_eq!(
        s.get_block(&w.b2.hash).await.unwrap().unwrap().commit_seq,
        Some(2)
    );
    assert_eq!(
        s.commit_state().await.unwrap(),
        Some(w.second_commit().state)
    );
    assert_eq!(s.finalized_height().await.unwrap(), Some(2));
    assert_eq!(
        seen(&s, &w.b.digest).await,
        (
            AttestationStatus::Finalized,
            Some((w.b2.hash, 2, 0)),
            Some(3),
            None
        )
    );
    // A step that commits nothing new but the state (an empty leader block's history).
    let idle = CommitBatch {
        state: serde_json::json!({"epoch": 1}),
        at_ms: 700,
        ..CommitBatch::default()
    };
    s.commit(&idle).await.unwrap();
    assert_eq!(s.ledger_len().await.unwrap(), 4);
    assert_eq!(
        s.commit_state().await.unwrap(),
        Some(serde_json::json!({"epoch": 1}))
    );
}

/// A commit that does not fit what is stored is refused whole: nothing of it is written.
pub(crate) async fn a_commit_that_does_not_fit_writes_nothing<H: Harness>(h: &H) {
    let s = h.open().await;
    let w = world(&s).await;
    let b3 = propose_by(200, 0, 3, vec![w.b2.hash], vec![], 300);
    s.insert_block(&b3, 300).await.unwrap();
    let fourth = s
        .insert_registry_entry("exit", &serde_json::json!({"v": 4}), 0)
        .await
        .unwrap();
    s.mark_registry_entries_included(&w.b2.hash, &[fourth])
        .await
        .unwrap();

    // Before any commit: a ledger that does not start at 0.
    let mut late = w.first_commit();
    for r in &mut late.appended {
        r.log_index += 1;
    }
    let before = snapshot(&s, &w).await;
    let err = s.commit(&late).await.unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err:?}");
    assert_eq!(snapshot(&s, &w).await, before);

    s.commit(&w.first_commit()).await.unwrap();
    let before = snapshot(&s, &w).await;
    // The second step, spoiled in each way in turn; every part of it that is fine would
    // have been written (block b2, entry `fourth`, state, the ledger row of b).
    let good = || {
        let mut g = w.second_commit();
        g.entries = vec![fourth];
        g
    };
    let unknown_block = Hash32::digest(b"no such block");
    let unknown_att = Hash32::digest(b"no such attestation");
    type Expected = fn(&StoreError) -> bool;
    let mut cases: Vec<(&str, CommitBatch, Expected)> = Vec::new();
    let conflict: Expected = |e| matches!(e, StoreError::Conflict(_));
    let not_found: Expected = |e| matches!(e, StoreError::NotFound(_));
    let mut gap = good();
    gap.appended[0].log_index = 4;
    cases.push(("a gap in log_index", gap, conflict));
    let mut rewrite = good();
    rewrite.appended[0].log_index = 2;
    cases.push(("a log_index the ledger has", rewrite, conflict));
    let mut again = good();
    again.blocks.push(w.b1.hash);
    cases.push(("a block already committed", again, conflict));
    let mut unknown = good();
    unknown.blocks.push(unknown_block);
    cases.push(("an unknown block", unknown, not_found));
    let mut entry_again = good();
    entry_again.entries.push(w.entries[0]);
    cases.push(("an entry already committed", entry_again, conflict));
    let mut entry_unknown = good();
    entry_unknown.entries.push(9_999);
    cases.push(("an unknown entry", entry_unknown, not_found));
    let mut att_unknown = good();
    att_unknown
        .appended
        .push(ledger_row(4, unknown_att, &w.b2, 1));
    cases.push(("an unknown attestation", att_unknown, not_found));
    let mut outside = good();
    outside.appended[0].block_hash = b3.hash;
    cases.push(("a row in a block not committed", outside, conflict));
    let mut twice = good();
    twice.appended.push(ledger_row(4, w.a.digest, &w.b2, 1));
    cases.push(("a digest the ledger holds", twice, conflict));
    let mut reject_finalized = good();
    reject_finalized.rejected.push(RejectedRow {
        digest: w.c.digest,
        owner: w.x.digest,
        block_hash: w.b2.hash,
        block_index: 0,
    });
    cases.push(("rejecting a finalized digest", reject_finalized, conflict));
    let mut append_rejected = good();
    append_rejected
        .appended
        .push(ledger_row(4, w.y.digest, &w.b2, 1));
    cases.push(("appending a rejected digest", append_rejected, conflict));
    let mut no_owner = good();
    no_owner.rejected.push(RejectedRow {
        digest: w.b.digest,
        owner: unknown_att,
        block_hash: w.b2.hash,
        block_index: 0,
    });
    no_owner.appended.clear();
    cases.push(("an owner not in the ledger", no_owner, conflict));
    let mut dup_block = good();
    dup_block.blocks.push(w.b2.hash);
    cases.push(("a block twice", dup_block, conflict));

    for (what, batch, expected) in cases {
        let err = s.commit(&batch).await.unwrap_err();
        assert!(expected(&err), "{what}: {err:?}");
        assert_eq!(snapshot(&s, &w).await, before, "{what} wrote something");
        let stored = s.get_block(&w.b2.hash).await.unwrap().unwrap();
        assert!(!stored.finalized, "{what}");
    }
    // The unspoiled step is accepted, so the refusals were about what was spoiled.
    s.commit(&good()).await.unwrap();
    assert_eq!(s.ledger_len().await.unwrap(), 4);
    let entry = s.registry_entries().await.unwrap();
    assert_eq!(entry.last().map(|e| e.commit_seq), Some(Some(3)));
}

/// The ledger order meets a rejected attestation again in every later block holding it;
/// the first rejection stays.
pub(crate) async fn a_second_rejection_keeps_the_first<H: Harness>(h: &H) {
    let s = h.open().await;
    let w = world(&s).await;
    s.commit(&w.first_commit()).await.unwrap();
    let b3 = propose_by(202, 0, 2, vec![w.b1.hash], vec![w.y.digest], 250);
    s.insert_block(&b3, 250).await.unwrap();
    s.commit(&CommitBatch {
        blocks: vec![b3.hash],
        rejected: vec![RejectedRow {
            digest: w.y.digest,
            owner: w.x.digest,
            block_hash: b3.hash,
            block_index: 0,
        }],
        state: serde_json::json!({}),
        at_ms: 600,
        ..CommitBatch::default()
    })
    .await
    .unwrap();
    assert_eq!(s.count_rejected().await.unwrap(), 1);
    assert_eq!(
        seen(&s, &w.y.digest).await,
        (
            AttestationStatus::Rejected,
            Some((w.b1b.hash, 1, 0)),
            None,
            Some(w.x.digest)
        )
    );
}

/// What the ledger order asks the store before it places a batch: which digests the
/// ledger holds, which digest used a key and nonce (through either table), and the key
/// and nonce of each digest.
pub(crate) async fn ledger_lookup_and_attestation_keys<H: Harness>(h: &H) {
    let s = h.open().await;
    let w = world(&s).await;
    let k1 = key(1).public();
    let k2 = key(2).public();
    let nobody = Hash32::digest(b"nobody");
    assert_eq!(s.ledger_lookup(&[], &[]).await.unwrap(), (vec![], vec![]));
    assert_eq!(s.attestation_keys(&[]).await.unwrap(), vec![]);
    assert_eq!(
        s.attestation_keys(&[w.y.digest, nobody, w.x.digest, w.b.digest])
            .await
            .unwrap(),
        vec![
            Some((k1, w.y.nonce.clone())),
            None,
            Some((k1, w.x.nonce.clone())),
            Some((k2, w.b.nonce.clone())),
        ]
    );
    let asked = [w.x.digest, w.y.digest, nobody, w.b.digest];
    let pairs = [
        (k1, w.x.nonce.clone()),
        (k1, w.a.nonce.clone()),
        (k2, w.b.nonce.clone()),
        (k1, "free".to_string()),
    ];
    assert_eq!(
        s.ledger_lookup(&asked, &pairs).await.unwrap(),
        (vec![false; 4], vec![None; 4])
    );

    // The ledger order takes y (the contested body) first this time: x is rejected.
    s.commit(&CommitBatch {
        blocks: vec![w.b1b.hash, w.b1.hash],
        appended: vec![
            ledger_row(0, w.y.digest, &w.b1b, 0),
            ledger_row(1, w.a.digest, &w.b1b, 1),
            ledger_row(2, w.c.digest, &w.b1b, 2),
        ],
        rejected: vec![RejectedRow {
            digest: w.x.digest,
            owner: w.y.digest,
            block_hash: w.b1.hash,
            block_index: 0,
        }],
        entries: vec![],
        state: serde_json::json!({}),
        at_ms: 500,
    })
    .await
    .unwrap();
    assert_eq!(
        s.ledger_lookup(&asked, &pairs).await.unwrap(),
        (
            vec![false, true, false, false],
            vec![Some(w.y.digest), Some(w.a.digest), None, None]
        )
    );
    // The contested body is finalized at the ledger's block, which is not a placement.
    assert_eq!(
        seen(&s, &w.y.digest).await,
        (
            AttestationStatus::Finalized,
            Some((w.b1b.hash, 1, 0)),
            Some(0),
            None
        )
    );
    assert_eq!(
        seen(&s, &w.x.digest).await,
        (
            AttestationStatus::Rejected,
            Some((w.b1.hash, 1, 0)),
            None,
            Some(w.y.digest)
        )
    );
    // The submit rule still names x, the body submitted here.
    assert_eq!(
        s.nonce_owner(&k1, &w.x.nonce).await.unwrap(),
        Some(w.x.digest)
    );

    // More than one statement's worth of each.
    let many = batch(&key(3), "carol", 0, 300);
    insert_all(&s, &many).await;
    let mut asked: Vec<Hash32> = digests(&many);
    asked.insert(150, w.y.digest);
    let keys = s.attestation_keys(&asked).await.unwrap();
    assert_eq!(keys.len(), 301);
    assert_eq!(keys[150], Some((k1, w.y.nonce.clone())));
    assert_eq!(keys[300], Some((key(3).public(), many[299].nonce.clone())));
    let mut pairs: Vec<(bizra_ledger::crypto::PublicKey, String)> = many
        .iter()
        .map(|a| (a.attester_pubkey, a.nonce.clone()))
        .collect();
    pairs.push((k1, w.c.nonce.clone()));
    let (found, owners) = s.ledger_lookup(&asked, &pairs).await.unwrap();
    assert_eq!(found.iter().filter(|f| **f).count(), 1);
    assert!(found[150]);
    assert!(owners[..300].iter().all(Option::is_none));
    assert_eq!(owners[300], Some(w.c.digest));
}

/// A dead block's work is released: what the ledger has not settled is pending again (an
/// attestation also held by a live block included), its uncommitted entries too; settled
/// attestations and committed entries stay. A later commit places a released attestation
/// where the ledger met it.
pub(crate) async fn revive_releases_the_work_of_dead_blocks<H: Harness>(h: &H) {
    let s = h.open().await;
    let kp = key(5);
    let att = |n: u64, v: u8| new_att(&signed(&kp, "erin", n, v), 30 + n);
    let (d1, d2, f, g, hh) = (att(1, 0), att(2, 0), att(3, 0), att(4, 0), att(5, 0));
    let (gr, hr) = (att(4, 1), att(5, 1)); // rivals of g and hh, carried by blocks
    insert_all(
        &s,
        &[d1.clone(), d2.clone(), f.clone(), g.clone(), hh.clone()],
    )
    .await;
    s.insert_block_attestations(&[gr.clone(), hr.clone()])
        .await
        .unwrap();
    let genesis = genesis_block();
    s.insert_block(&genesis, 1).await.unwrap();
    // The dead block places all five first; two live blocks hold some of them too.
    let ids = |v: &[&NewAttestation]| v.iter().map(|a| a.digest).collect::<Vec<_>>();
    let dead = propose_by(
        202,
        0,
        1,
        vec![genesis.hash],
        ids(&[&d1, &d2, &f, &g, &hh]),
        10,
    );
    let l1 = propose_by(203, 0, 1, vec![genesis.hash], ids(&[&f, &gr, &g]), 11);
    let l2 = propose_by(204, 0, 1, vec![genesis.hash], ids(&[&d2, &hr, &hh]), 12);
    for b in [&dead, &l1, &l2] {
        s.insert_block(b, 20).await.unwrap();
    }
    assert_eq!(s.count_pending_attestations().await.unwrap(), 0);
    let mut entries = Vec::new();
    for i in 0..2 {
        entries.push(
            s.insert_registry_entry("register", &serde_json::json!({ "e": i }), 0)
                .await
                .unwrap(),
        );
    }
    s.mark_registry_entries_included(&dead.hash, &entries)
        .await
        .unwrap();
    // l1 commits first: f is finalized, gr wins g's nonce, and entries[1] is committed.
    s.commit(&CommitBatch {
        blocks: vec![l1.hash],
        appended: vec![
            ledger_row(0, f.digest, &l1, 0),
            ledger_row(1, gr.digest, &l1, 1),
        ],
        rejected: vec![RejectedRow {
            digest: g.digest,
            owner: gr.digest,
            block_hash: l1.hash,
            block_index: 2,
        }],
        entries: vec![entries[1]],
        state: serde_json::json!({}),
        at_ms: 30,
    })
    .await
    .unwrap();

    assert_eq!(s.revive(&[]).await.unwrap(), 0);
    assert_eq!(s.revive(&[dead.hash]).await.unwrap(), 3);
    assert_eq!(s.count_pending_attestations().await.unwrap(), 3);
    assert_eq!(
        s.pending_attestations(10).await.unwrap(),
        vec![d1.digest, d2.digest, hh.digest]
    );
    for a in [&d1, &d2, &hh] {
        assert_eq!(
            seen(&s, &a.digest).await,
            (AttestationStatus::Accepted, None, None, None)
        );
    }
    assert_eq!(seen(&s, &f.digest).await.0, AttestationStatus::Finalized);
    assert_eq!(
        seen(&s, &g.digest).await,
        (
            AttestationStatus::Rejected,
            Some((l1.hash, 1, 2)),
            None,
            Some(gr.digest)
        )
    );
    let pending: Vec<u64> = s
        .pending_registry_entries()
        .await
        .unwrap()
        .iter()
        .map(|e| e.seq)
        .collect();
    assert_eq!(pending, vec![entries[0]]);
    let committed = s.registry_entries().await.unwrap();
    assert_eq!(
        (committed[1].block_hash, committed[1].commit_seq),
        (Some(dead.hash), Some(0))
    );

    // Idempotent: nothing left to release.
    assert_eq!(s.revive(&[dead.hash, dead.hash]).await.unwrap(), 0);
    assert_eq!(s.count_pending_attestations().await.unwrap(), 3);
    // A committed block never reverts, an unknown one is unknown; nothing is written,
    // not even for the blocks before them in the call.
    let err = s.revive(&[l2.hash, l1.hash]).await.unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err:?}");
    let err = s
        .revive(&[l2.hash, Hash32::digest(b"no such block")])
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::NotFound(_)), "{err:?}");
    assert_eq!(s.count_pending_attestations().await.unwrap(), 3);
    assert_eq!(seen(&s, &d2.digest).await.0, AttestationStatus::Accepted);

    // l2 commits: d2 and hr join the ledger and hh is rejected; the two released ones
    // are placed where the ledger met them, and are no longer pending.
    s.commit(&CommitBatch {
        blocks: vec![l2.hash],
        appended: vec![
            ledger_row(2, d2.digest, &l2, 0),
            ledger_row(3, hr.digest, &l2, 1),
        ],
        rejected: vec![RejectedRow {
            digest: hh.digest,
            owner: hr.digest,
            block_hash: l2.hash,
            block_index: 2,
        }],
        entries: vec![],
        state: serde_json::json!({}),
        at_ms: 40,
    })
    .await
    .unwrap();
    assert_eq!(s.count_pending_attestations().await.unwrap(), 1);
    assert_eq!(s.pending_attestations(10).await.unwrap(), vec![d1.digest]);
    assert_eq!(
        seen(&s, &d2.digest).await,
        (
            AttestationStatus::Finalized,
            Some((l2.hash, 1, 0)),
            Some(2),
            None
        )
    );
    // A new block takes the last one (and the released entry) again.
    let again = propose_by(202, 0, 2, vec![l1.hash], vec![d1.digest], 50);
    s.insert_block(&again, 50).await.unwrap();
    s.mark_registry_entries_included(&again.hash, &entries[..1])
        .await
        .unwrap();
    assert_eq!(s.count_pending_attestations().await.unwrap(), 0);
    assert_eq!(
        seen(&s, &d1.digest).await,
        (
            AttestationStatus::Included,
            Some((again.hash, 2, 0)),
            None,
            None
        )
    );
    assert!(s.pending_registry_entries().await.unwrap().is_empty());
    // Released from dead, never again counted as its work.
    assert_eq!(s.revive(&[dead.hash]).await.unwrap(), 0);
}

/// accepted → included → certified → finalized, each with what the record carries then.
pub(crate) async fn status_follows_the_life_of_an_attestation<H: Harness>(h: &H) {
    let s = h.open().await;
    let w = world(&s).await;
    let d = new_att(&signed(&key(4), "dave", 1, 0), 20);
    insert_all(&s, std::slice::from_ref(&d)).await;
    assert_eq!(
        seen(&s, &d.digest).await,
        (AttestationStatus::Accepted, None, None, None)
    );
    let b3 = propose_by(200, 0, 3, vec![w.b2.hash], vec![d.digest], 300);
    s.insert_block(&b3, 300).await.unwrap();
    assert_eq!(
        seen(&s, &d.digest).await,
        (
            AttestationStatus::Included,
            Some((b3.hash, 3, 0)),
            None,
            None
        )
    );
    assert!(s.mark_certified(&qc_for(b3.hash), 310).await.unwrap());
    assert_eq!(
        seen(&s, &d.digest).await,
        (
            AttestationStatus::Certified,
            Some((b3.hash, 3, 0)),
            None,
            None
        )
    );
    // Before the commit x is certified in b1 and y (contested) accepted.
    assert!(s.mark_certified(&qc_for(w.b1.hash), 320).await.unwrap());
    assert_eq!(seen(&s, &w.x.digest).await.0, AttestationStatus::Certified);
    assert_eq!(
        seen(&s, &w.y.digest).await,
        (AttestationStatus::Accepted, None, None, None)
    );
    s.commit(&w.first_commit()).await.unwrap();
    s.commit(&w.second_commit()).await.unwrap();
    s.commit(&CommitBatch {
        blocks: vec![b3.hash],
        appended: vec![ledger_row(4, d.digest, &b3, 0)],
        state: serde_json::json!({}),
        at_ms: 400,
        ..CommitBatch::default()
    })
    .await
    .unwrap();
    assert_eq!(
        seen(&s, &d.digest).await,
        (
            AttestationStatus::Finalized,
            Some((b3.hash, 3, 0)),
            Some(4),
            None
        )
    );
    // accepted → rejected: y never had a placement here.
    assert_eq!(seen(&s, &w.y.digest).await.0, AttestationStatus::Rejected);
    let listed = s.list_attestations(Some("dave"), None, 10).await.unwrap();
    assert_eq!(listed.items[0].log_index, Some(4));
    assert_eq!(listed.items[0].status, AttestationStatus::Finalized);
}

pub(crate) async fn blocks_from_height_orders_by_height_then_hash<H: Harness>(h: &H) {
    let s = h.open().await;
    let genesis = genesis_block();
    // Inserted in a scrambled order: siblings at heights 1 and 2, a merge at 3.
    let a1 = propose(1, vec![genesis.hash], vec![], 10);
    let b1 = propose(1, vec![genesis.hash], vec![], 11);
    let c1 = propose(1, vec![genesis.hash], vec![], 12);
    let a2 = propose(2, vec![a1.hash], vec![], 20);
    let b2 = propose(2, vec![b1.hash, c1.hash], vec![], 21);
    let m3 = propose(3, vec![a2.hash, b2.hash], vec![], 30);
    for b in [&m3, &b1, &a2, &genesis, &c1, &b2, &a1] {
        s.insert_block(b, 1).await.unwrap();
    }
    let key_of = |b: &Block| (b.header.height, b.hash);
    let mut expected: Vec<(u64, Hash32)> = [&genesis, &a1, &b1, &c1, &a2, &b2, &m3]
        .iter()
        .map(|b| key_of(b))
        .collect();
    expected.sort();

    let keys = |v: Vec<StoredBlock>| v.iter().map(|b| key_of(&b.block)).collect::<Vec<_>>();
    assert_eq!(keys(s.all_blocks().await.unwrap()), expected);
    assert_eq!(keys(s.blocks_from_height(0, 100).await.unwrap()), expected);
    assert_eq!(
        keys(s.blocks_from_height(1, 2).await.unwrap()),
        expected[1..3].to_vec()
    );
    assert_eq!(
        keys(s.blocks_from_height(2, 100).await.unwrap()),
        expected[4..].to_vec()
    );
    assert!(s.blocks_from_height(4, 100).await.unwrap().is_empty());
    assert!(s
        .blocks_from_height(u64::MAX, 100)
        .await
        .unwrap()
        .is_empty());
    let all = s.all_blocks().await.unwrap();
    assert_eq!(
        all.iter().find(|b| b.block.hash == m3.hash).unwrap().block,
        m3
    );
}

/// Epoch pages (the API, peers catching up) and the rebuild's order across epochs.
pub(crate) async fn blocks_of_epoch_by_height_then_hash<H: Harness>(h: &H) {
    let s = h.open().await;
    let genesis = genesis_block();
    let e0: Vec<Block> = (0..3)
        .map(|p| propose_by(10 + p, 0, 1, vec![genesis.hash], vec![], 10))
        .collect();
    let close = propose_by(10, 0, 2, vec![e0[0].hash, e0[1].hash], vec![], 20);
    let e1h1: Vec<Block> = (0..3)
        .map(|p| propose_by(10 + p, 1, 1, vec![close.hash], vec![], 30))
        .collect();
    let e1h2 = propose_by(11, 1, 2, e1h1.iter().map(|b| b.hash).collect(), vec![], 40);
    let mut scrambled = vec![&e1h2, &close, &genesis];
    scrambled.extend(e1h1.iter().rev());
    scrambled.extend(e0.iter());
    for b in scrambled {
        s.insert_block(b, 1).await.unwrap();
    }
    let key_of = |b: &Block| (b.header.epoch, b.header.height, b.hash);
    let keys = |v: Vec<StoredBlock>| v.iter().map(|b| key_of(&b.block)).collect::<Vec<_>>();
    let mut epoch1: Vec<_> = e1h1.iter().chain([&e1h2]).map(key_of).collect();
    epoch1.sort();
    assert_eq!(keys(s.blocks_of_epoch(1, 0, 100).await.unwrap()), epoch1);
    assert_eq!(keys(s.blocks_of_epoch(1, 1, 2).await.unwrap()), epoch1[..2]);
    assert_eq!(
        keys(s.blocks_of_epoch(1, 2, 100).await.unwrap()),
        epoch1[3..]
    );
    let mut epoch0: Vec<_> = [&genesis, &close]
        .into_iter()
        .chain(&e0)
        .map(key_of)
        .collect();
    epoch0.sort();
    assert_eq!(keys(s.blocks_of_epoch(0, 0, 100).await.unwrap()), epoch0);
    assert!(s.blocks_of_epoch(2, 0, 100).await.unwrap().is_empty());
    assert!(s
        .blocks_of_epoch(u64::MAX, 0, 100)
        .await
        .unwrap()
        .is_empty());
    assert!(s
        .blocks_of_epoch(1, u64::MAX, 100)
        .await
        .unwrap()
        .is_empty());
    // Limit 0 still gives one block, as lists do.
    assert_eq!(s.blocks_of_epoch(1, 0, 0).await.unwrap().len(), 1);
    // The rebuild: epoch 0 before epoch 1, though epoch 1 has the same heights.
    let all = keys(s.all_blocks().await.unwrap());
    assert_eq!(all, [epoch0, epoch1].concat());
    let stored = s.blocks_of_epoch(1, 2, 1).await.unwrap();
    assert_eq!(stored[0].block, e1h2);
}

/// A block is certified once: its own QC and the time it was stored stay.
pub(crate) async fn certification_is_stored_once<H: Harness>(h: &H) {
    let s = h.open().await;
    let genesis = genesis_block();
    s.insert_block(&genesis, 1).await.unwrap();
    let b1 = propose(1, vec![genesis.hash], vec![], 100);
    let b1b = propose_by(201, 0, 1, vec![genesis.hash], vec![], 100);
    s.insert_block(&b1, 100).await.unwrap();
    s.insert_block(&b1b, 100).await.unwrap();
    let fresh = s.get_block(&b1.hash).await.unwrap().unwrap();
    assert!(!fresh.certified && fresh.certified_at_ms.is_none() && fresh.qc.is_none());

    let err = s
        .mark_certified(&qc_for(Hash32::digest(b"missing")), 200)
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::NotFound(_)), "{err:?}");
    let qc = qc_for(b1.hash);
    assert!(s.mark_certified(&qc, 200).await.unwrap());
    let mut later = qc_for(b1.hash);
    later.weight = 1;
    assert!(!s.mark_certified(&later, 300).await.unwrap());
    let stored = s.get_block(&b1.hash).await.unwrap().unwrap();
    assert!(stored.certified);
    assert_eq!((stored.certified_at_ms, stored.qc), (Some(200), Some(qc)));
    // Certified is not committed.
    assert!(!stored.finalized && stored.finalized_at_ms.is_none() && stored.commit_seq.is_none());
    let other = s.get_block(&b1b.hash).await.unwrap().unwrap();
    assert!(!other.certified && other.qc.is_none());
}

// ---------------------------------------------------------------- the signing guard

fn validator(seed: u8) -> Hash32 {
    key(seed).public().validator_id()
}

/// A slot (epoch, height, proposer) is signed for one block: again for that block, never
/// for another; other slots are their own.
pub(crate) async fn record_signing_takes_a_slot_once<H: Harness>(h: &H) {
    let s = Arc::new(h.open().await);
    let (p1, p2) = (validator(200), validator(201));
    let (b1, b2) = (Hash32::digest(b"b1"), Hash32::digest(b"b2"));
    assert_eq!(
        s.record_signing(0, 5, &p1, &b1, 1).await.unwrap(),
        Signing::First
    );
    assert_eq!(
        s.record_signing(0, 5, &p1, &b1, 2).await.unwrap(),
        Signing::Again
    );
    assert_eq!(
        s.record_signing(0, 5, &p1, &b2, 3).await.unwrap(),
        Signing::Conflict { signed: b1 }
    );
    for (epoch, height, proposer) in [(0, 5, p2), (0, 6, p1), (1, 5, p1)] {
        assert_eq!(
            s.record_signing(epoch, height, &proposer, &b2, 4)
                .await
                .unwrap(),
            Signing::First,
            "({epoch}, {height}, {proposer})"
        );
    }
    let err = s
        .record_signing(u64::MAX, 0, &p1, &b1, 5)
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Invalid(_)), "{err:?}");

    // Eight signers race for one slot with eight blocks (on a shared store, eight stores:
    // the replicas of one validator): exactly one gets it, the others are told which.
    let mut stores = Vec::new();
    for _ in 0..8 {
        stores.push(if h.shared() {
            Arc::new(h.open().await)
        } else {
            Arc::clone(&s)
        });
    }
    let tasks: Vec<_> = stores
        .into_iter()
        .enumerate()
        .map(|(i, st)| {
            tokio::spawn(async move {
                let block = Hash32::digest(&[b'r', i as u8]);
                (
                    block,
                    st.record_signing(0, 9, &p1, &block, 7).await.unwrap(),
                )
            })
        })
        .collect();
    let mut outcomes = Vec::new();
    for t in tasks {
        outcomes.push(t.await.unwrap());
    }
    let winners: Vec<Hash32> = outcomes
        .iter()
        .filter(|(_, o)| *o == Signing::First)
        .map(|(b, _)| *b)
        .collect();
    assert_eq!(winners.len(), 1, "{outcomes:?}");
    for (block, outcome) in &outcomes {
        if *block != winners[0] {
            assert_eq!(*outcome, Signing::Conflict { signed: winners[0] });
        }
    }
}

/// What was signed stays signed: after a restart (the embedded store closed and opened
/// again) and from another process on a shared store.
pub(crate) async fn signing_is_durable_across_a_reopen<H: Harness>(h: &H) {
    let p = validator(200);
    let (b1, b2) = (Hash32::digest(b"b1"), Hash32::digest(b"b2"));
    let genesis = genesis_block();
    let own = propose_by(200, 0, 1, vec![genesis.hash], vec![], 10);
    let rival = propose_by(200, 0, 1, vec![genesis.hash], vec![], 11);
    {
        let s = h.open().await;
        assert_eq!(
            s.record_signing(0, 3, &p, &b1, 1).await.unwrap(),
            Signing::First
        );
        s.insert_block(&genesis, 1).await.unwrap();
        assert_eq!(
            s.insert_own_block(&own, 10, None).await.unwrap(),
            Signing::First
        );
        if h.shared() {
            // A second replica, while the first still runs.
            let other = h.open().await;
            assert_eq!(
                other.record_signing(0, 3, &p, &b2, 2).await.unwrap(),
                Signing::Conflict { signed: b1 }
            );
            assert_eq!(
                other.insert_own_block(&rival, 11, None).await.unwrap(),
                Signing::Conflict { signed: own.hash }
            );
            other.close().await;
        }
        s.close().await;
    }
    let s = h.open().await;
    assert_eq!(
        s.record_signing(0, 3, &p, &b1, 3).await.unwrap(),
        Signing::Again
    );
    assert_eq!(
        s.record_signing(0, 3, &p, &b2, 4).await.unwrap(),
        Signing::Conflict { signed: b1 }
    );
    assert_eq!(
        s.insert_own_block(&rival, 12, None).await.unwrap(),
        Signing::Conflict { signed: own.hash }
    );
    assert!(s.get_block(&rival.hash).await.unwrap().is_none());
    assert_eq!(
        s.insert_own_block(&own, 13, None).await.unwrap(),
        Signing::Again
    );
}

/// A validator's own block: its slot and the block in one step; nothing of a block for a
/// slot signed otherwise, nor of one the store refuses, nor of one the lease fences out.
pub(crate) async fn insert_own_block_signs_its_slot_once<H: Harness>(h: &H) {
    let s = h.open().await;
    let p = validator(200);
    let items = batch(&key(1), "alice", 0, 310);
    insert_all(&s, &items).await;
    let ids = digests(&items);
    let genesis = genesis_block();
    s.insert_block(&genesis, 1).await.unwrap();

    // More attestations than the embedded store places in one transaction.
    let own = propose_by(200, 0, 1, vec![genesis.hash], ids[..300].to_vec(), 10);
    assert_eq!(
        s.insert_own_block(&own, 10, None).await.unwrap(),
        Signing::First
    );
    let stored = s.get_block(&own.hash).await.unwrap().expect("stored");
    assert_eq!((stored.block, stored.created_at_ms), (own.clone(), 10));
    assert_eq!(s.count_pending_attestations().await.unwrap(), 10);
    let last = s.get_attestation(&ids[299]).await.unwrap().unwrap();
    assert_eq!(last.block.map(|b| (b.hash, b.index)), Some((own.hash, 299)));
    assert_eq!(
        s.record_signing(0, 1, &p, &own.hash, 11).await.unwrap(),
        Signing::Again
    );
    assert_eq!(
        s.insert_own_block(&own, 12, None).await.unwrap(),
        Signing::Again
    );

    // Another block for the same slot: refused, nothing written.
    let rival = propose_by(200, 0, 1, vec![genesis.hash], ids[300..].to_vec(), 13);
    assert_eq!(
        s.insert_own_block(&rival, 13, None).await.unwrap(),
        Signing::Conflict { signed: own.hash }
    );
    assert!(s.get_block(&rival.hash).await.unwrap().is_none());
    assert_eq!(s.count_pending_attestations().await.unwrap(), 10);
    assert_eq!(s.pending_attestations(100).await.unwrap(), ids[300..]);

    // Signed first (record_signing), stored after: Again, and stored.
    let b2 = propose_by(200, 0, 2, vec![own.hash], ids[300..302].to_vec(), 20);
    assert_eq!(
        s.record_signing(0, 2, &p, &b2.hash, 20).await.unwrap(),
        Signing::First
    );
    assert_eq!(
        s.insert_own_block(&b2, 21, None).await.unwrap(),
        Signing::Again
    );
    assert!(s.get_block(&b2.hash).await.unwrap().is_some());
    // Stored first (a peer sent it back), signed after: First, and the slot is taken.
    let b3 = propose_by(200, 0, 3, vec![b2.hash], vec![], 30);
    s.insert_block(&b3, 30).await.unwrap();
    assert_eq!(
        s.insert_own_block(&b3, 31, None).await.unwrap(),
        Signing::First
    );
    assert_eq!(
        s.record_signing(0, 3, &p, &Hash32::digest(b"other"), 32)
            .await
            .unwrap(),
        Signing::Conflict { signed: b3.hash }
    );

    // A block the store refuses takes no slot.
    let unknown = Hash32::digest(b"unknown");
    let bad = propose_by(200, 0, 4, vec![b3.hash], vec![ids[305], unknown], 40);
    let err = s.insert_own_block(&bad, 40, None).await.unwrap_err();
    assert_eq!(err, StoreError::NotFound(format!("attestation {unknown}")));
    assert!(s.get_block(&bad.hash).await.unwrap().is_none());
    let twice = propose_by(200, 0, 4, vec![b3.hash], vec![ids[305], ids[305]], 41);
    let err = s.insert_own_block(&twice, 41, None).await.unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err:?}");
    let b4 = propose_by(200, 0, 4, vec![b3.hash], vec![ids[305]], 42);

    // The lease fences the producer out on a shared store; the embedded store's one
    // process holds every lease.
    let ttl = std::time::Duration::from_secs(5);
    assert!(s.acquire_lease("producer", "a", ttl).await.unwrap());
    if h.shared() {
        let err = s
            .insert_own_block(&b4, 42, Some(("producer", "b")))
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::Conflict(_)), "{err:?}");
        assert!(s.get_block(&b4.hash).await.unwrap().is_none());
        assert_eq!(s.count_pending_attestations().await.unwrap(), 8);
    }
    assert_eq!(
        s.insert_own_block(&b4, 43, Some(("producer", "a")))
            .await
            .unwrap(),
        Signing::First
    );
    assert_eq!(s.count_pending_attestations().await.unwrap(), 7);
}

pub(crate) async fn votes_are_idempotent<H: Harness>(h: &H) {
    let s = h.open().await;
    let block = Hash32::digest(b"block");
    let votes: Vec<Vote> = (1..=3).map(|i| Vote::sign(block, &key(i))).collect();
    for v in &votes {
        assert!(s.insert_vote(v).await.unwrap());
        assert!(!s.insert_vote(v).await.unwrap());
    }
    assert!(s
        .insert_vote(&Vote::sign(Hash32::digest(b"other"), &key(1)))
        .await
        .unwrap());
    let mut expected = votes.clone();
    expected.sort_by_key(|v| v.validator_id);
    let got = s.votes_for(&block).await.unwrap();
    assert_eq!(got, expected);
    for v in &got {
        v.verify(
            &[key(1), key(2), key(3)]
                .iter()
                .map(|k| k.public())
                .find(|p| p.validator_id() == v.validator_id)
                .unwrap(),
        )
        .unwrap();
    }
    assert!(s
        .votes_for(&Hash32::digest(b"none"))
        .await
        .unwrap()
        .is_empty());
}

pub(crate) async fn registry_entries<H: Harness>(h: &H) {
    let s = h.open().await;
    let bodies: Vec<serde_json::Value> = (0..3)
        .map(|i| serde_json::json!({"validator": i, "stake_bond": 1000 * i, "nested": {"a": [1, 2]}}))
        .collect();
    let mut seqs = Vec::new();
    for (i, b) in bodies.iter().enumerate() {
        seqs.push(
            s.insert_registry_entry("register", b, 5 + i as u64)
                .await
                .unwrap(),
        );
    }
    assert!(seqs.windows(2).all(|w| w[0] < w[1]));
    let pending = s.pending_registry_entries().await.unwrap();
    assert_eq!(pending.iter().map(|e| e.seq).collect::<Vec<_>>(), seqs);
    assert_eq!(pending[1].body, bodies[1]);
    assert_eq!(
        (pending[2].kind.as_str(), pending[2].epoch),
        ("register", 7)
    );

    let genesis = genesis_block();
    s.insert_block(&genesis, 1).await.unwrap();
    // The block names its two entries by digest, in block order, and keeps them so.
    let b1 = propose_with_entries(1, vec![genesis.hash], vec![], entry_ids(2), 10);
    s.insert_block(&b1, 10).await.unwrap();
    let stored = s.get_block(&b1.hash).await.unwrap().expect("stored");
    assert_eq!(stored.block.entry_ids, entry_ids(2));
    assert_eq!(stored.block, b1);
    s.mark_registry_entries_included(&b1.hash, &seqs[..2])
        .await
        .unwrap();
    // Idempotent for the same block.
    s.mark_registry_entries_included(&b1.hash, &seqs[..1])
        .await
        .unwrap();
    let pending = s.pending_registry_entries().await.unwrap();
    assert_eq!(pending.iter().map(|e| e.seq).collect::<Vec<_>>(), seqs[2..]);

    // Another block may not take an included entry; the whole call rolls back.
    let err = s
        .mark_registry_entries_included(&genesis.hash, &[seqs[2], seqs[0]])
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err:?}");
    assert_eq!(s.pending_registry_entries().await.unwrap().len(), 1);
    let err = s
        .mark_registry_entries_included(&Hash32::digest(b"no block"), &seqs[2..])
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::NotFound(_)), "{err:?}");
    let err = s
        .mark_registry_entries_included(&b1.hash, &[9_999])
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::NotFound(_)), "{err:?}");

    let all = s.registry_entries().await.unwrap();
    assert_eq!(all.len(), 3);
    assert_eq!(all[0].block_hash, Some(b1.hash));
    assert_eq!(all[2].block_hash, None);
}

pub(crate) async fn meta_and_identity<H: Harness>(h: &H) {
    let s = h.open().await;
    assert_eq!(s.get_meta("k").await.unwrap(), None);
    s.set_meta("k", "v1").await.unwrap();
    s.set_meta("k", "v2").await.unwrap();
    assert_eq!(s.get_meta("k").await.unwrap().as_deref(), Some("v2"));

    let g = Hash32::digest(b"genesis");
    assert_eq!(
        s.bind_identity(CHAIN, &g).await.unwrap(),
        IdentityCheck::Fresh
    );
    assert_eq!(
        s.bind_identity(CHAIN, &g).await.unwrap(),
        IdentityCheck::Matches
    );
    assert_eq!(
        s.get_meta(META_CHAIN_ID).await.unwrap().as_deref(),
        Some(CHAIN)
    );
    // Binding records the header version, which the next open checks.
    assert_eq!(
        s.get_meta(META_HEADER_VERSION).await.unwrap().as_deref(),
        Some("2")
    );
    let err = s
        .bind_identity(CHAIN, &Hash32::digest(b"other genesis"))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err:?}");
    let err = s.bind_identity("other-chain", &g).await.unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err:?}");
}

pub(crate) async fn reopen_keeps_everything<H: Harness>(h: &H) {
    let items = batch(&key(1), "alice", 0, 20);
    let genesis = genesis_block();
    let b1 = propose_with_entries(
        1,
        vec![genesis.hash],
        digests(&items[..5]),
        entry_ids(3),
        100,
    );
    let qc = qc_for(b1.hash);
    let vote = Vote::sign(b1.hash, &key(200));
    let before_records;
    let last_seq;
    {
        let s = h.open().await;
        s.bind_identity(CHAIN, &genesis.hash).await.unwrap();
        let seqs = insert_all(&s, &items).await;
        last_seq = *seqs.last().unwrap();
        s.insert_block(&genesis, 1).await.unwrap();
        s.insert_block(&b1, 100).await.unwrap();
        assert!(s.mark_certified(&qc, 140).await.unwrap());
        // Another validator's block with a rival body of items[3]'s nonce.
        let rival = new_att(&signed(&key(1), "alice", 3, 1), 7);
        s.insert_block_attestations(std::slice::from_ref(&rival))
            .await
            .unwrap();
        let b1b = propose_by(201, 0, 1, vec![genesis.hash], vec![rival.digest], 101);
        s.insert_block(&b1b, 101).await.unwrap();
        s.commit(&CommitBatch {
            blocks: vec![genesis.hash, b1.hash, b1b.hash],
            appended: (0..5)
                .map(|i| LedgerRow {
                    log_index: i,
                    digest: items[i as usize].digest,
                    block_hash: b1.hash,
                    block_index: i,
                })
                .collect(),
            rejected: vec![RejectedRow {
                digest: rival.digest,
                owner: items[3].digest,
                block_hash: b1b.hash,
                block_index: 0,
            }],
            entries: vec![],
            state: serde_json::json!({"epoch": 0, "leader_height": 0}),
            at_ms: 150,
        })
        .await
        .unwrap();
        s.insert_vote(&vote).await.unwrap();
        s.insert_registry_entry("exit", &serde_json::json!({"v": 1}), 3)
            .await
            .unwrap();
        before_records = s.list_attestations(None, None, 100).await.unwrap();
        s.close().await;
    }
    let s = h.open().await;
    assert_eq!(
        s.bind_identity(CHAIN, &genesis.hash).await.unwrap(),
        IdentityCheck::Matches
    );
    assert_eq!(
        s.list_attestations(None, None, 100).await.unwrap(),
        before_records
    );
    assert_eq!(s.count_attestations().await.unwrap(), 20);
    assert_eq!(s.count_pending_attestations().await.unwrap(), 15);
    let r = s.get_attestation(&items[3].digest).await.unwrap().unwrap();
    assert_eq!(
        (r.status, r.log_index),
        (AttestationStatus::Finalized, Some(3))
    );
    let rival = signed(&key(1), "alice", 3, 1).1;
    let r = s
        .get_attestation(&rival)
        .await
        .unwrap()
        .expect("contested kept");
    assert_eq!(
        (r.status, r.rejected_by),
        (AttestationStatus::Rejected, Some(items[3].digest))
    );
    let stored = s.get_block(&b1.hash).await.unwrap().unwrap();
    assert_eq!((stored.block, stored.qc), (b1.clone(), Some(qc)));
    assert_eq!(
        (
            stored.certified_at_ms,
            stored.commit_seq,
            stored.finalized_at_ms
        ),
        (Some(140), Some(1), Some(150))
    );
    assert_eq!(s.finalized_height().await.unwrap(), Some(1));
    assert_eq!(s.ledger_len().await.unwrap(), 5);
    assert_eq!(s.count_rejected().await.unwrap(), 1);
    assert_eq!(s.ledger_page(0, 100).await.unwrap().len(), 5);
    let committed = s.committed_blocks().await.unwrap();
    assert_eq!(committed[..2], [genesis.hash, b1.hash]);
    assert_eq!(committed.len(), 3);
    assert_eq!(
        s.commit_state().await.unwrap(),
        Some(serde_json::json!({"epoch": 0, "leader_height": 0}))
    );
    assert_eq!(s.all_blocks().await.unwrap().len(), 3);
    assert_eq!(s.votes_for(&b1.hash).await.unwrap(), vec![vote]);
    assert_eq!(s.registry_entries().await.unwrap().len(), 1);
    // Still idempotent, and seq keeps growing after a reopen.
    let again = s.insert_attestations(&items[..1]).await.unwrap();
    assert!(matches!(again[0], InsertOutcome::AlreadyStored { .. }));
    let more = insert_all(&s, &batch(&key(1), "alice", 100, 1)).await;
    assert!(more[0] > last_seq);
}

pub(crate) async fn impact_summary_by_block_time<H: Harness>(h: &H) {
    let s = h.open().await;
    let alice = batch(&key(1), "alice", 0, 4);
    let bob = batch(&key(2), "bob", 0, 2);
    let late = batch(&key(3), "carol", 0, 3);
    for b in [&alice, &bob, &late] {
        insert_all(&s, b).await;
    }
    let genesis = genesis_block();
    s.insert_block(&genesis, 1).await.unwrap();
    let mut ids = digests(&alice);
    ids.extend(digests(&bob));
    let b1 = propose(1, vec![genesis.hash], ids, 1_000);
    let b2 = propose(2, vec![b1.hash], digests(&late), 5_000);
    s.insert_block(&b1, 1).await.unwrap();
    s.insert_block(&b2, 1).await.unwrap();

    let sum = |v: &[NewAttestation]| v.iter().map(|a| a.impact_score).sum::<f64>();
    let summary = s.impact_summary(1_000, 5_000, 10).await.unwrap();
    assert_eq!(summary.attestations, 6);
    assert!((summary.total_impact - sum(&alice) - sum(&bob)).abs() < 1e-9);
    assert_eq!(summary.top.len(), 2);
    assert!(summary.top[0].total_impact >= summary.top[1].total_impact);
    let a = summary
        .top
        .iter()
        .find(|t| t.attester_id == "alice")
        .unwrap();
    assert_eq!(a.attestations, 4);

    let top1 = s.impact_summary(0, u64::MAX >> 1, 1).await.unwrap();
    assert_eq!((top1.attestations, top1.top.len()), (9, 1));
    let none = s.impact_summary(6_000, 7_000, 5).await.unwrap();
    assert_eq!((none.attestations, none.total_impact), (0, 0.0));
    assert!(none.top.is_empty());
}

pub(crate) async fn ping_and_pool_stats<H: Harness>(h: &H) {
    let s = h.open().await;
    s.ping().await.unwrap();
    let stats = s.pool_stats();
    assert!(stats.size >= 1 && stats.size <= stats.max_size);
    assert_eq!(stats.idle + stats.in_use, stats.size);
    s.close().await;
    let err = s.ping().await.unwrap_err();
    assert!(err.is_unavailable(), "{err:?}");
    let err = s.count_attestations().await.unwrap_err();
    assert!(err.is_unavailable(), "{err:?}");
}

pub(crate) async fn a_lease_is_held_by_one_holder_at_a_time<H: Harness>(h: &H) {
    let s = h.open().await;
    let ttl = std::time::Duration::from_millis(400);
    assert!(s.acquire_lease("producer", "a", ttl).await.unwrap());
    // Renewing one's own lease works; the embedded store has one process, so only a
    // shared store can tell holders apart.
    assert!(s.acquire_lease("producer", "a", ttl).await.unwrap());
    if h.shared() {
        assert!(!s.acquire_lease("producer", "b", ttl).await.unwrap());
        // Another name is another lease.
        assert!(s.acquire_lease("other", "b", ttl).await.unwrap());
        // Released: free at once.
        s.release_lease("producer", "a").await.unwrap();
        assert!(s.acquire_lease("producer", "b", ttl).await.unwrap());
        assert!(!s.acquire_lease("producer", "a", ttl).await.unwrap());
        // Not renewed: it lapses after its ttl.
        tokio::time::sleep(ttl + std::time::Duration::from_millis(100)).await;
        assert!(s.acquire_lease("producer", "a", ttl).await.unwrap());
    }
}

pub(crate) async fn a_fenced_block_is_stored_only_by_the_lease_holder<H: Harness>(h: &H) {
    let s = h.open().await;
    let genesis = genesis_block();
    s.insert_block(&genesis, 1).await.unwrap();
    let items = batch(&key(1), "alice", 0, 4);
    insert_all(&s, &items).await;
    let b1 = propose(1, vec![genesis.hash], digests(&items[..2]), 100);
    let ttl = std::time::Duration::from_secs(5);
    assert!(s.acquire_lease("producer", "a", ttl).await.unwrap());
    assert_eq!(
        s.insert_block_fenced(&b1, 100, "producer", "a")
            .await
            .unwrap(),
        BlockInsert::Inserted
    );
    if h.shared() {
        let b2 = propose(2, vec![b1.hash], digests(&items[2..]), 200);
        let err = s
            .insert_block_fenced(&b2, 200, "producer", "b")
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::Conflict(_)), "{err:?}");
        // Nothing of the refused block was written.
        assert!(s.get_block(&b2.hash).await.unwrap().is_none());
        assert_eq!(s.count_pending_attestations().await.unwrap(), 2);
    }
}

/// A caller that stops waiting for a write (its HTTP client went away, a deadline passed)
/// must not leave a transaction half-done on the connection: every abandoned write still
/// commits, and the writes after it work. (On the embedded store an abandoned
/// transaction used to poison the single writer: "begin at non-zero transaction depth".)
pub(crate) async fn writes_abandoned_by_their_caller_finish_and_leave_the_store_usable<
    H: Harness,
>(
    h: &H,
) {
    let store = h.open().await;
    let (kp, other) = (key(61), key(62));
    let mut abandoned = Vec::new();
    // Give-up times swept across the life of a write, from before its BEGIN reaches the
    // database to after its COMMIT, so that some land inside each step.
    for round in 0..400u64 {
        let rows = batch(&kp, "abandoned", round * 4, 4);
        abandoned.extend(rows.iter().map(|r| r.digest));
        let give_up = std::time::Duration::from_micros(1 + (round * 7) % 400);
        let _ = tokio::time::timeout(give_up, store.insert_attestations(&rows)).await;
        let after = batch(&other, "after", round, 1);
        let outcome = store
            .insert_attestations(&after)
            .await
            .unwrap_or_else(|e| panic!("a write after one abandoned at round {round}: {e}"));
        assert!(
            matches!(outcome[0], InsertOutcome::Inserted { .. }),
            "{outcome:?}"
        );
    }
    // The abandoned writes ran to their end all the same.
    for digest in abandoned {
        let mut found = None;
        for _ in 0..200 {
            found = store.get_attestation(&digest).await.expect("read");
            if found.is_some() {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        assert!(found.is_some(), "abandoned write of {digest} was lost");
    }
}
