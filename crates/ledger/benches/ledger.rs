//! Criterion benchmarks of the ledger's hot paths. Run with
//! `cargo bench -p bizra-ledger --bench ledger`; figures go to BENCHMARKS.md.

use bizra_ledger::attestation::builder::Draft;
use bizra_ledger::attestation::Attestation;
use bizra_ledger::block::{Block, BlockContent};
use bizra_ledger::consensus::commit::{Committer, DEFAULT_GC_DEPTH};
use bizra_ledger::consensus::committee::Committee;
use bizra_ledger::consensus::dag::Dag;
use bizra_ledger::crypto::{verify, verify_batch, BatchItem, Keypair};
use bizra_ledger::genesis::Genesis;
use bizra_ledger::params::NetworkAnchor;
use bizra_ledger::vote::{QcVote, QuorumCertificate, Vote};
use bizra_ledger::{canonical, merkle, Hash32};
use criterion::{black_box, criterion_group, criterion_main, BatchSize, Criterion, Throughput};

fn typical_attestation(i: u32) -> (Attestation, Keypair) {
    let mut seed = [0u8; 32];
    seed[..4].copy_from_slice(&i.to_le_bytes());
    let kp = Keypair::from_seed(seed);
    let draft = Draft {
        network: NetworkAnchor::default(),
        attester_id: format!("lab-{i}"),
        pack_sha256: Hash32::digest(&i.to_le_bytes()),
        dimensions: [
            ("accuracy".into(), 0.91),
            ("coverage".into(), 0.77),
            ("reproducibility".into(), 0.85),
            ("privacy".into(), 0.99),
        ]
        .into(),
        weights: [
            ("accuracy".into(), 0.4),
            ("coverage".into(), 0.2),
            ("reproducibility".into(), 0.3),
            ("privacy".into(), 0.1),
        ]
        .into(),
        time_window: ["2026-11-27T00:00:00Z".into(), "2026-11-28T00:00:00Z".into()],
        nonce: format!("{:064x}", i),
        resources: None,
        benchmarks: None,
        methodology_ref: Some("https://example.org/methodology/v2".into()),
    };
    let (att, _) = draft.sign(&kp).expect("canonicalizes");
    (att, kp)
}

fn signature_items(n: u32) -> Vec<BatchItem> {
    (0..n)
        .map(|i| {
            let (att, kp) = typical_attestation(i);
            let msg = Attestation::signing_message(&att.digest().expect("digest"));
            BatchItem {
                key: kp.public(),
                sig: kp.sign(&msg),
                msg,
            }
        })
        .collect()
}

fn attestation(c: &mut Criterion) {
    let (att, _) = typical_attestation(1);
    let json = att.to_canonical_json().expect("json");
    c.bench_function("attestation/digest", |b| {
        b.iter(|| black_box(&att).digest())
    });
    c.bench_function("attestation/parse", |b| {
        b.iter(|| Attestation::from_json(black_box(&json)))
    });
    // The attestation's own canonical writer against the generic canonicalizer it
    // replaced (same bytes; a property test holds them equal).
    c.bench_function("attestation/canonical_json", |b| {
        b.iter(|| black_box(&att).to_canonical_json())
    });
    c.bench_function("attestation/canonical_json_generic", |b| {
        b.iter(|| canonical::to_canonical_bytes(black_box(&att)))
    });
}

fn signatures(c: &mut Criterion) {
    let items = signature_items(256);
    let mut g = c.benchmark_group("ed25519");
    g.throughput(Throughput::Elements(1));
    g.bench_function("verify_single", |b| {
        let it = &items[0];
        b.iter(|| verify(&it.key, &it.sig, black_box(&it.msg)))
    });
    for n in [64usize, 256] {
        g.throughput(Throughput::Elements(n as u64));
        g.bench_function(format!("verify_batch_{n}"), |b| {
            b.iter(|| verify_batch(black_box(&items[..n])))
        });
    }
    g.finish();
}

fn merkle_root(c: &mut Criterion) {
    let leaves: Vec<Hash32> = (0..4096u32)
        .map(|i| Hash32::digest(&i.to_le_bytes()))
        .collect();
    let mut g = c.benchmark_group("merkle");
    g.throughput(Throughput::Elements(4096));
    g.bench_function("root_4096", |b| b.iter(|| merkle::root(black_box(&leaves))));
    g.bench_function("prove_4096", |b| {
        b.iter(|| merkle::prove(black_box(&leaves), 1234))
    });
    g.finish();
}

/// The consensus core on a full 4-validator DAG of 250 heights (1,000 certified blocks,
/// each with a 4-vote certificate): insertion with every check, certificate signatures
/// included, and the commit rule run after each block, as a node does.
fn dag_commit(c: &mut Criterion) {
    let keys: Vec<Keypair> = (1..=4u8).map(|i| Keypair::from_seed([i; 32])).collect();
    let genesis = Genesis::single(
        keys[0].public(),
        "http://127.0.0.1:8080",
        "2026-01-01T00:00:00Z",
    )
    .block()
    .expect("genesis");
    let committee = Committee::new(0, keys.iter().map(|k| (k.public(), 100)));
    let mut blocks = Vec::new();
    let mut below = vec![genesis.hash];
    for h in 1..=250u64 {
        let this: Vec<(Block, QuorumCertificate)> = keys
            .iter()
            .map(|k| {
                let b = Block::propose(
                    BlockContent {
                        chain_id: genesis.header.chain_id.clone(),
                        epoch: 0,
                        height: h,
                        parents: below.clone(),
                        attestation_ids: vec![Hash32::digest(&h.to_le_bytes())],
                        entry_ids: vec![],
                        timestamp_ms: genesis.header.timestamp_ms + h,
                    },
                    k,
                )
                .expect("block");
                let qc = QuorumCertificate {
                    block_hash: b.hash,
                    votes: keys
                        .iter()
                        .map(|v| {
                            let vote = Vote::sign(b.hash, v);
                            QcVote {
                                validator_id: vote.validator_id,
                                signature: vote.signature,
                            }
                        })
                        .collect(),
                    weight: 0,
                    total_weight: 0,
                };
                (b, qc)
            })
            .collect();
        below = this.iter().map(|(b, _)| b.hash).collect();
        below.sort();
        blocks.extend(this);
    }
    let mut g = c.benchmark_group("consensus");
    g.sample_size(10);
    g.throughput(Throughput::Elements(blocks.len() as u64));
    g.bench_function("insert_and_commit_4x250", |b| {
        b.iter_batched(
            || (Dag::new(0, &genesis), Committer::new(DEFAULT_GC_DEPTH)),
            |(mut dag, mut committer)| {
                let mut committed = 0;
                for (blk, qc) in &blocks {
                    dag.insert(blk, qc, &committee).expect("insert");
                    committed += committer.commit(&dag, &committee, |_| 0).leaders.len();
                    committer.collect_garbage(&mut dag);
                }
                committed
            },
            BatchSize::SmallInput,
        )
    });
    g.finish();
}

criterion_group!(benches, attestation, signatures, merkle_root, dag_commit);
criterion_main!(benches);
