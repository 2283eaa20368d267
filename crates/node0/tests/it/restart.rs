//! Persistence across restarts of the real process: a graceful stop keeps everything,
//! kill -9 under load loses no acknowledged attestation and the chain continues, and a
//! data directory refuses to serve another genesis or blocks of header version 1.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::common::*;
use bizra_ledger::crypto::Keypair;
use bizra_ledger::genesis::Genesis;
use serde_json::Value;

/// Where each attestation id sits: id → block hashes that list it.
async fn inclusion_index(node: &Node) -> HashMap<String, Vec<String>> {
    let mut index: HashMap<String, Vec<String>> = HashMap::new();
    for b in node.all_blocks().await {
        let hash = b["hash"].as_str().expect("hash").to_string();
        for id in b["attestation_ids"].as_array().expect("ids") {
            index
                .entry(id.as_str().expect("id").to_string())
                .or_default()
                .push(hash.clone());
        }
    }
    index
}

fn height(v: &Value) -> u64 {
    v["height"].as_u64().expect("height")
}

/// (epoch, height) of a status: heights restart at 1 in each epoch.
fn place(v: &Value) -> (u64, u64) {
    (v["epoch"].as_u64().expect("epoch"), height(v))
}

both_stores!(a_graceful_restart_keeps_everything_and_the_chain_continues);
async fn a_graceful_restart_keeps_everything_and_the_chain_continues(dir: TestDir) {
    let node = Node::start(&dir).await;
    let anchor = node.anchor().await;
    let genesis = node.get_ok("/api/consensus/genesis").await;
    let node_id = node.get_ok("/health").await["node_id"].clone();
    let key = Keypair::generate();
    let (items, ids): (Vec<Value>, Vec<String>) = (0..5).map(|_| signed(&anchor, &key)).unzip();
    let r = node
        .post_json("/api/validator/attestation/batch", &batch_body(items))
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let mut views = Vec::new();
    for id in &ids {
        views.push(node.wait_finalized(id).await);
    }
    let before = node.get_ok("/api/consensus/status").await;
    assert!(height(&before) >= 1);

    // An open event stream must not hold the shutdown open.
    let events = node
        .http
        .get(node.url("/api/events"))
        .timeout(PATIENCE)
        .send()
        .await
        .expect("GET /api/events");
    assert_eq!(events.status(), 200);
    let (status, log) = node.terminate().await;
    drop(events);
    assert!(status.success(), "SIGTERM exit: {status:?}\n{log}");
    assert!(
        log.contains("draining requests") && log.contains("stopped"),
        "not a graceful stop:\n{log}"
    );

    let node = Node::start_in(&dir, &[]).await;
    assert_eq!(node.get_ok("/health").await["node_id"], node_id, "same key");
    assert_eq!(
        node.get_ok("/api/consensus/genesis").await["genesis_hash"],
        genesis["genesis_hash"]
    );
    let after = node.get_ok("/api/consensus/status").await;
    assert_eq!(
        height(&after),
        height(&before),
        "the chain reloads as it was"
    );
    assert_eq!(after["finalized_height"], before["finalized_height"]);
    for (id, old) in ids.iter().zip(&views) {
        let v = node
            .get_ok(&format!("/api/validator/attestation/{id}"))
            .await;
        assert_eq!(v["status"], "finalized");
        assert_eq!(v["block"], old["block"]);
        assert_eq!(v["proof"], old["proof"]);
        check_inclusion(&node, id, &v).await;
    }

    // New work extends the same chain.
    let (att, id) = signed(&anchor, &key);
    node.submit_new(&att).await;
    let v = node.wait_finalized(&id).await;
    assert!(v["block"]["height"].as_u64() > Some(height(&before)));
    let parents = node
        .get_ok(&format!(
            "/api/consensus/block/{}",
            v["block"]["hash"].as_str().expect("hash")
        ))
        .await["header"]["parents"]
        .clone();
    assert!(parents.as_array().is_some_and(|p| !p.is_empty()));
    let stats = node.get_ok("/api/consensus/stats").await;
    assert_eq!(stats["attestations_accepted"], 6);
    // The resubmission of an old attestation is still recognised.
    let old = views[0]["attestation"].clone();
    assert_eq!(node.submit(&old).await.status, 200);
}

both_stores!(kill_9_under_load_loses_no_acknowledged_attestation);
async fn kill_9_under_load_loses_no_acknowledged_attestation(dir: TestDir) {
    let node = Node::start(&dir).await;
    let anchor = node.anchor().await;
    let genesis_hash = node.get_ok("/api/consensus/genesis").await["genesis_hash"].clone();

    // Submitters record every id the node acknowledged with 201, and every id whose
    // answer never came (the node may or may not have stored those).
    let acked: Arc<Mutex<Vec<String>>> = Arc::default();
    let in_doubt: Arc<Mutex<Vec<String>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let mut submitters = Vec::new();
    for _ in 0..4 {
        let (url, acked, in_doubt, stop, anchor) = (
            node.url("/api/validator/attestation/submit"),
            acked.clone(),
            in_doubt.clone(),
            stop.clone(),
            anchor.clone(),
        );
        submitters.push(tokio::spawn(async move {
            let key = Keypair::generate();
            let http = client(Duration::from_secs(5));
            while !stop.load(Ordering::Relaxed) {
                let (att, id) = signed(&anchor, &key);
                let sent = http.post(&url).json(&att).send().await;
                match sent {
                    Ok(r) if r.status() == 201 => acked.lock().expect("lock").push(id),
                    // Shed or throttled under load: not acknowledged, try the next one.
                    Ok(r) if r.status() == 429 || r.status() == 503 => {}
                    Ok(r) => panic!("submit answered {}", r.status()),
                    Err(_) => {
                        in_doubt.lock().expect("lock").push(id);
                        return;
                    }
                }
            }
        }));
    }

    // Kill once load is flowing and blocks are being made from it.
    let started = Instant::now();
    let mut seen = (0, 0);
    loop {
        let s = node.get_ok("/api/consensus/status").await;
        seen = seen.max(place(&s));
        if acked.lock().expect("lock").len() >= 60 && seen >= (0, 2) {
            break;
        }
        assert!(started.elapsed() < PATIENCE, "load does not flow");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    node.sigkill();
    stop.store(true, Ordering::Relaxed);
    for s in submitters {
        s.await.expect("submitter");
    }
    let acked = acked.lock().expect("lock").clone();
    let in_doubt = in_doubt.lock().expect("lock").clone();
    assert!(acked.len() >= 60);

    let node = Node::start_in(&dir, &[]).await;
    assert_eq!(
        node.get_ok("/api/consensus/genesis").await["genesis_hash"],
        genesis_hash
    );
    let restarted = node.get_ok("/api/consensus/status").await;
    assert!(
        place(&restarted) >= seen,
        "a block seen before the crash is gone: {:?} < {seen:?}",
        place(&restarted)
    );
    for id in &acked {
        let v = node.get(&format!("/api/validator/attestation/{id}")).await;
        assert_eq!(v.status, 200, "acknowledged {id} lost: {}", v.text);
    }
    for id in &acked {
        let v = node.wait_finalized(id).await;
        check_inclusion(&node, id, &v).await;
    }

    // The chain continues: a new submission finalizes after everything before it.
    let before = node.get_ok("/api/consensus/status").await["ledger_size"]
        .as_u64()
        .expect("ledger_size");
    let key = Keypair::generate();
    let (att, id) = signed(&anchor, &key);
    node.submit_new(&att).await;
    let v = node.wait_finalized(&id).await;
    assert!(v["log_index"].as_u64() >= Some(before), "{v}");

    // Every stored attestation is in exactly one block, and nothing is in two.
    let stats = node.get_ok("/api/consensus/stats").await;
    assert_eq!(stats["attestations_pending"], 0);
    let index = inclusion_index(&node).await;
    let twice: Vec<_> = index.iter().filter(|(_, b)| b.len() > 1).collect();
    assert!(twice.is_empty(), "included twice: {twice:?}");
    assert_eq!(
        stats["attestations_accepted"].as_u64(),
        Some(index.len() as u64),
        "stored and included counts differ"
    );
    for id in acked.iter().chain([&id]) {
        assert!(index.contains_key(id), "{id} in no block");
    }
    // An answer lost in the crash: stored whole and included, or not stored at all.
    for id in &in_doubt {
        let r = node.get(&format!("/api/validator/attestation/{id}")).await;
        match r.status {
            200 => assert!(index.contains_key(id)),
            404 => assert!(!index.contains_key(id)),
            s => panic!("GET in-doubt {id}: {s}"),
        }
    }
}

both_stores!(a_data_directory_refuses_another_genesis);
async fn a_data_directory_refuses_another_genesis(dir: TestDir) {
    let node = Node::start(&dir).await;
    let anchor = node.anchor().await;
    let (att, id) = signed(&anchor, &Keypair::generate());
    node.submit_new(&att).await;
    node.wait_finalized(&id).await;
    let genesis_hash = node.get_ok("/api/consensus/genesis").await["genesis_hash"].clone();
    assert!(node.terminate().await.0.success());

    let genesis_path = dir.data().join("genesis.json");
    let original = std::fs::read(&genesis_path).expect("genesis.json");
    let other = Genesis::single(
        Keypair::generate().public(),
        "http://127.0.0.1:1",
        "2026-01-01T00:00:00Z",
    );
    let other_path = dir.root().join("other.json");
    std::fs::write(&other_path, serde_json::to_vec(&other).expect("json")).expect("write");

    // `--genesis` naming another network.
    let other_arg = other_path.to_str().expect("utf-8 path");
    let (status, out) = serve_expecting_exit(&dir, &["--genesis", other_arg]).await;
    assert!(!status.success(), "served another genesis:\n{out}");
    assert!(
        out.contains("belongs to genesis") && out.contains("empty data directory"),
        "unclear message:\n{out}"
    );
    assert_eq!(
        std::fs::read(&genesis_path).expect("genesis.json"),
        original,
        "the refused start changed the data directory"
    );

    // The genesis file swapped underneath a store that belongs to the first network.
    std::fs::write(&genesis_path, serde_json::to_vec(&other).expect("json")).expect("write");
    let (status, out) = serve_expecting_exit(&dir, &[]).await;
    assert!(!status.success(), "served a store of another chain:\n{out}");
    assert!(out.contains("belongs to chain"), "unclear message:\n{out}");
    std::fs::write(&genesis_path, &original).expect("restore");

    // The same genesis, named explicitly, is fine, and the data is intact.
    let same = dir.root().join("same.json");
    std::fs::write(&same, &original).expect("write");
    let node = Node::start_in(&dir, &["--genesis", same.to_str().expect("utf-8")]).await;
    assert_eq!(
        node.get_ok("/api/consensus/genesis").await["genesis_hash"],
        genesis_hash
    );
    assert_eq!(node.wait_finalized(&id).await["attestation_id"], id);
}

both_stores!(a_store_of_block_header_version_1_is_refused_at_start);
/// A store that a build of header version 1 wrote: `serve` exits with a message naming
/// both versions (docs/protocol.md §3.1) and leaves the store as it was.
async fn a_store_of_block_header_version_1_is_refused_at_start(dir: TestDir) {
    use bizra_testkit::v1_store;
    let store_file = dir.data().join("ledger.sqlite");
    match &dir.pg {
        None => v1_store::write_sqlite(&store_file).await,
        Some(schema) => v1_store::write_postgres(schema).await,
    }
    .expect("a version-1 store");
    let (status, out) = serve_expecting_exit(&dir, &[]).await;
    assert!(!status.success(), "served a version-1 store:\n{out}");
    let place = if dir.pg.is_some() {
        "database schema"
    } else {
        "data directory"
    };
    let message = format!(
        "this {place} holds block headers of version 1; this node reads and writes version 2; \
         start it with a new {place} (no migration from version 1)"
    );
    assert!(out.contains(&message), "unclear message:\n{out}");
    let shape = match &dir.pg {
        None => v1_store::sqlite_shape(&store_file).await,
        Some(schema) => v1_store::postgres_shape(schema).await,
    }
    .expect("the store reads");
    let v1_schema = if dir.pg.is_some() {
        v1_store::POSTGRES_SCHEMA_VERSION
    } else {
        v1_store::SQLITE_SCHEMA_VERSION
    };
    assert_eq!(
        shape,
        (v1_schema, false),
        "the refused start migrated the store"
    );
}
