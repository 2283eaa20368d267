//! Validator registry entries over HTTP (docs/protocol.md §3.5): a signed registration is
//! filed, included in the next block (Pending), activated at the next epoch boundary, and a
//! signed exit moves it to Exiting. With a second active validator that runs no node, the
//! genesis validator alone holds half the weight: blocks stop finalizing, and the API shows
//! why.

use std::time::{Duration, Instant};

use crate::common::*;
use bizra_ledger::crypto::Keypair;
use bizra_ledger::registry::{ExitRequest, Registration};
use serde_json::{json, Value};

/// Epochs of 32 slots of 100 ms: 3.2 s, long enough to sign within one.
const SLOT: &str = "100";

async fn wait_for(node: &Node, path: &str, what: &str, ok: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let r = node.get(path).await;
        if r.status == 200 && ok(&r.json()) {
            return r.json();
        }
        assert!(
            Instant::now() < deadline,
            "{what}: last answer {} {}",
            r.status,
            r.text
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

both_stores!(register_activate_exit_and_the_finality_it_costs);
async fn register_activate_exit_and_the_finality_it_costs(dir: TestDir) {
    let node = Node::start_in(&dir, &["--slot-ms", SLOT]).await;
    let key = Keypair::from_seed([42; 32]);
    let id = key.public().validator_id().to_hex();

    // Refused entries change nothing.
    let chain = node.get_ok("/api/consensus/genesis").await["chain_id"]
        .as_str()
        .unwrap()
        .to_string();
    let mut forged = serde_json::to_value(
        Registration::sign(&chain, 0, &key, "http://127.0.0.1:9", 1000).unwrap(),
    )
    .unwrap();
    forged["stake_bond"] = json!(2000);
    let r = node.post_json("/api/validator/register", &forged).await;
    assert!(r.status == 400, "{}", r.text);
    let code = r.json()["code"].as_str().unwrap().to_string();
    assert!(code == "bad_signature" || code == "wrong_epoch", "{code}");
    node.get(&format!("/api/validator/{id}"))
        .await
        .problem(404, "not_found");

    let filed = file_entry(&node, "/api/validator/register", |chain, epoch| {
        serde_json::to_value(
            Registration::sign(chain, epoch, &key, "http://127.0.0.1:9", 1000).unwrap(),
        )
        .unwrap()
    })
    .await;
    assert_eq!(filed["status"], "pending");

    let path = format!("/api/validator/{id}");
    // Applied when a leader closes the epoch; the boundary after it may activate it in
    // the same step.
    let rec = wait_for(&node, &path, "registered", |v| {
        v["status"] == "pending" || v["status"] == "active"
    })
    .await;
    assert_eq!(rec["stake_bond"], 1000);
    included_by_id(&node, &filed).await;
    let again = file_once(&node, &chain, &key).await;
    again.problem(400, "already_registered");

    let rec = wait_for(&node, &path, "activated", |v| v["status"] == "active").await;
    assert!(rec["epoch_join"].as_u64().is_some());
    let stats = node.get_ok("/api/validator/stats").await;
    assert_eq!(stats["active_count"], 2);

    // Two validators of about equal weight; only one votes: nothing new finalizes.
    let anchor = node.anchor().await;
    let (att, att_id) = signed(&anchor, &Keypair::from_seed([7; 32]));
    node.submit(&att).await;
    let view = wait_for(
        &node,
        &format!("/api/validator/attestation/{att_id}"),
        "included",
        |v| v["status"] == "included",
    )
    .await;
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let still = node
        .get_ok(&format!("/api/validator/attestation/{att_id}"))
        .await;
    assert_eq!(still["status"], "included", "finalized without a quorum");
    let block = view["block"]["hash"].as_str().unwrap();
    let fin = node
        .get_ok(&format!("/api/consensus/finality/{block}"))
        .await;
    assert_eq!(fin["finalized"], false);
    assert!(
        fin["weight"].as_u64().unwrap() * 10_000
            < fin["total_weight"].as_u64().unwrap() * fin["threshold_bps"].as_u64().unwrap(),
        "{fin}"
    );

    // An exit is filed, but entries apply only once committed, and nothing commits
    // without a quorum: the validator stays active.
    file_entry(&node, "/api/validator/exit", |chain, epoch| {
        serde_json::to_value(ExitRequest::sign(chain, epoch, &key).unwrap()).unwrap()
    })
    .await;
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let rec = node.get_ok(&path).await;
    assert_eq!(rec["status"], "active", "{rec}");
}

/// The block that included the entry `filed` names it by its id (header version 2,
/// docs/protocol.md §3.1): `entry_ids` and the header's count, and its proposal carries
/// the entry's body.
async fn included_by_id(node: &Node, filed: &Value) {
    let entries = node.get_ok("/api/validator/entries?status=included").await;
    let item = entries["items"]
        .as_array()
        .expect("items")
        .iter()
        .find(|e| e["seq"] == filed["entry_seq"])
        .unwrap_or_else(|| panic!("entry not included: {entries}"))
        .clone();
    let block = item["block_hash"].as_str().expect("block hash");
    let proposal = node
        .get_ok(&format!("/api/consensus/block/{block}/proposal"))
        .await;
    assert_eq!(proposal["block"]["entry_ids"], json!([filed["entry_id"]]));
    assert_eq!(proposal["block"]["header"]["entries_count"], 1);
    assert_eq!(proposal["entries"], json!([item["entry"]]));
}

async fn file_once(node: &Node, chain: &str, key: &Keypair) -> Reply {
    let epoch = node.get_ok("/api/validator/stats").await["epoch"]
        .as_u64()
        .unwrap();
    let reg = Registration::sign(chain, epoch, key, "http://127.0.0.1:9", 1000).unwrap();
    node.post_json(
        "/api/validator/register",
        &serde_json::to_value(reg).unwrap(),
    )
    .await
}
