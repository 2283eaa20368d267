//! Two `node0 serve` replicas on one PostgreSQL schema: one holds the producer
//! lease and makes blocks, the other serves reads and accepts submissions and follows the
//! chain from the store. The producer is killed mid-load; the other takes over, and every
//! acknowledged attestation ends up in exactly one block.

use std::collections::{HashMap, HashSet};
use std::os::unix::fs::PermissionsExt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::common::*;
use bizra_ledger::crypto::Keypair;
use serde_json::Value;

/// The lease lapses 3 s after its last renewal; allow for a slow shared machine.
const TAKEOVER: Duration = Duration::from_secs(10);

async fn is_leader(node: &Node) -> bool {
    let text = node.get("/metrics").await.text;
    text.lines().any(|l| l.trim() == "producer_leader 1")
}

/// A second data directory with the same validator key and genesis as `from`, so the
/// replica is the same validator.
fn replica_dir(from: &TestDir) -> TestDir {
    let dir = TestDir::new();
    std::fs::create_dir_all(dir.data()).expect("data dir");
    for file in ["node.key", "genesis.json"] {
        std::fs::copy(from.data().join(file), dir.data().join(file)).expect("copy");
    }
    std::fs::set_permissions(
        dir.data().join("node.key"),
        std::fs::Permissions::from_mode(0o600),
    )
    .expect("key mode");
    dir
}

fn pg_args(schema: &bizra_testkit::TestSchema) -> Vec<String> {
    vec![
        "--database-url".into(),
        schema.url.clone(),
        "--database-schema".into(),
        schema.name.clone(),
    ]
}

async fn start(dir: &TestDir, schema: &bizra_testkit::TestSchema) -> Node {
    let args = pg_args(schema);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    Node::start_in(dir, &args).await
}

async fn wait_until(what: &str, limit: Duration, mut f: impl AsyncFnMut() -> bool) -> Duration {
    let started = Instant::now();
    loop {
        if f().await {
            return started.elapsed();
        }
        assert!(started.elapsed() < limit, "{what}: not within {limit:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_producer_dies_mid_load_and_the_other_replica_takes_over() {
    let schema = bizra_testkit::TestSchema::create()
        .await
        .expect("test schema");
    let dir_a = TestDir::new();
    let a = start(&dir_a, &schema).await;
    let dir_b = replica_dir(&dir_a);
    let b = start(&dir_b, &schema).await;
    let anchor = a.anchor().await;

    // Exactly one leads; the first to start took the lease.
    wait_until("a leader", TAKEOVER, async || {
        is_leader(&a).await || is_leader(&b).await
    })
    .await;
    assert!(
        !(is_leader(&a).await && is_leader(&b).await),
        "two producers"
    );
    let (leader, follower, leader_dir) = if is_leader(&a).await {
        (a, b, &dir_a)
    } else {
        (b, a, &dir_b)
    };

    // The follower accepts a submission; the leader puts it in a block; the follower
    // serves it finalized, from its own view of the chain.
    let (att, id) = signed(&anchor, &Keypair::generate());
    follower.submit_new(&att).await;
    let view = follower.wait_finalized(&id).await;
    check_inclusion(&follower, &id, &view).await;

    // Load on both replicas.
    let acked: Arc<Mutex<Vec<String>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let mut submitters = Vec::new();
    for (i, base) in [leader.base.clone(), follower.base.clone()]
        .into_iter()
        .cycle()
        .take(4)
        .enumerate()
    {
        let (acked, stop, anchor) = (acked.clone(), stop.clone(), anchor.clone());
        let url = format!("{base}/api/validator/attestation/submit");
        submitters.push(tokio::spawn(async move {
            let key = Keypair::generate();
            let http = client(Duration::from_secs(5));
            while !stop.load(Ordering::Relaxed) {
                let (att, id) = signed(&anchor, &key);
                match http.post(&url).json(&att).send().await {
                    Ok(r) if r.status() == 201 => acked.lock().expect("lock").push(id),
                    Ok(r) if r.status() == 429 || r.status() == 503 => {}
                    Ok(r) => panic!("submit answered {}", r.status()),
                    // The killed replica: its submitters stop; nothing it did not
                    // acknowledge is expected anywhere.
                    Err(_) if i % 2 == 0 => return,
                    Err(e) => panic!("the surviving replica failed a submit: {e}"),
                }
            }
        }));
    }
    wait_until("load flowing", PATIENCE, async || {
        acked.lock().expect("lock").len() >= 100
    })
    .await;
    let heights_before = follower.get_ok("/api/consensus/status").await["height"]
        .as_u64()
        .expect("height");

    leader.sigkill();
    let took = wait_until("the follower takes over", TAKEOVER, async || {
        is_leader(&follower).await
    })
    .await;
    eprintln!("takeover after {took:?}");
    // The new producer makes blocks from the submissions still arriving.
    wait_until("blocks after the takeover", PATIENCE, async || {
        follower.get_ok("/api/consensus/status").await["height"]
            .as_u64()
            .unwrap_or(0)
            > heights_before + 2
    })
    .await;
    stop.store(true, Ordering::Relaxed);
    for s in submitters {
        s.await.expect("submitter");
    }
    let mut acked = acked.lock().expect("lock").clone();
    acked.push(id);
    for id in &acked {
        follower.wait_finalized(id).await;
    }

    // Exactly once: every acknowledged id in one committed block, no two blocks in one slot, and
    // every parent stored.
    let blocks = follower.all_blocks().await;
    let mut by_id: HashMap<String, usize> = HashMap::new();
    let mut heights = HashSet::new();
    let hashes: HashSet<String> = blocks
        .iter()
        .map(|b| b["hash"].as_str().expect("hash").to_string())
        .collect();
    for b in &blocks {
        // Heights start again at 1 in every epoch: the slot is (epoch, height).
        let slot = (
            b["header"]["epoch"].as_u64().expect("epoch"),
            b["header"]["height"].as_u64().expect("height"),
        );
        assert!(
            heights.insert(slot),
            "two blocks at epoch {} height {}",
            slot.0,
            slot.1
        );
        for p in b["header"]["parents"].as_array().expect("parents") {
            assert!(
                hashes.contains(p.as_str().expect("parent")),
                "unknown parent"
            );
        }
        // A block of a closed epoch that was never committed gave its work to a later
        // block: count the committed blocks.
        if b["finalized"] != true {
            continue;
        }
        for att in b["attestation_ids"].as_array().expect("attestation_ids") {
            *by_id
                .entry(att.as_str().expect("id").to_string())
                .or_default() += 1;
        }
    }
    for id in &acked {
        assert_eq!(by_id.get(id), Some(&1), "{id} not included exactly once");
    }

    // The killed replica comes back as a follower and catches up to the same tipset.
    let back = start(leader_dir, &schema).await;
    wait_until("the restarted replica catches up", PATIENCE, async || {
        let t1: Value = back.get_ok("/api/consensus/tipset").await;
        let t2: Value = follower.get_ok("/api/consensus/tipset").await;
        t1["tips"] == t2["tips"]
    })
    .await;
    assert!(is_leader(&follower).await && !is_leader(&back).await);
}
