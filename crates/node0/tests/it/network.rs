//! The validator network over real processes on loopback: a 4-validator
//! testnet written by `node0 testnet --no-run`, each node a `node0 serve` on its own
//! data directory, killed and restarted as the tests need.

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::common::*;
use bizra_ledger::block::{Block, BlockContent};
use bizra_ledger::crypto::Keypair;
use bizra_ledger::registry::epoch_of_time;
use bizra_ledger::vote::{QcVote, QuorumCertificate};
use bizra_ledger::Hash32;
use serde_json::{json, Value};

/// Slot of the test networks: long enough for a fan-out on a busy 2-core machine.
const NET_SLOT_MS: u64 = 250;

/// A testnet in a temporary directory; `nodes[i]` is `None` while node i is down.
/// Fields drop in order: the nodes (printing their logs if the test failed) before the
/// directory and the schemas.
struct Net {
    nodes: Vec<Option<Node>>,
    ports: Vec<u16>,
    runs: usize,
    /// Extra `serve` flags per node.
    extra: Vec<Vec<String>>,
    schemas: Vec<Option<bizra_testkit::TestSchema>>,
    root: tempfile::TempDir,
}

/// `n` consecutive free ports.
fn free_ports(n: usize) -> u16 {
    for _ in 0..50 {
        let base = free_port();
        if base as usize + n >= 65_000 {
            continue;
        }
        let free =
            (1..n as u16).all(|k| std::net::TcpListener::bind(("127.0.0.1", base + k)).is_ok());
        if free {
            return base;
        }
    }
    panic!("no {n} consecutive free ports");
}

impl Net {
    /// Writes the network and starts every node. `pg`: each node on a PostgreSQL schema
    /// of its own instead of its embedded store.
    async fn start(n: usize, pg: bool, extra: Vec<Vec<String>>) -> Net {
        let root = tempfile::tempdir().expect("temp dir");
        let base = free_ports(n);
        let out = node0_command()
            .args(["testnet", "--no-run", "--validators", &n.to_string()])
            .arg("--dir")
            .arg(root.path())
            .args(["--base-port", &base.to_string()])
            .args(["--slot-ms", &NET_SLOT_MS.to_string()])
            .output()
            .expect("run node0 testnet");
        assert!(
            out.status.success(),
            "node0 testnet --no-run: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let mut schemas = Vec::new();
        for _ in 0..n {
            schemas.push(if pg {
                Some(
                    bizra_testkit::TestSchema::create()
                        .await
                        .expect("a schema on the test PostgreSQL server"),
                )
            } else {
                None
            });
        }
        let mut extra = extra;
        extra.resize(n, Vec::new());
        let mut net = Net {
            nodes: (0..n).map(|_| None).collect(),
            ports: (0..n as u16).map(|i| base + i).collect(),
            runs: 0,
            extra,
            schemas,
            root,
        };
        for i in 0..n {
            net.up(i).await;
        }
        net
    }

    fn dir(&self, i: usize) -> PathBuf {
        self.root.path().join(format!("node-{i}"))
    }

    /// Starts node i (again) as `NODE0_DATA_DIR=DIR/node-i node0 serve` would.
    async fn up(&mut self, i: usize) {
        assert!(self.nodes[i].is_none(), "node {i} is running");
        let mut cmd = node0_command();
        cmd.arg("serve")
            .env("NODE0_DATA_DIR", self.dir(i))
            .args(["--log", "info"])
            .args(&self.extra[i]);
        if let Some(s) = &self.schemas[i] {
            cmd.args(["--database-url", &s.url, "--database-schema", &s.name]);
        }
        self.runs += 1;
        let log = self
            .root
            .path()
            .join(format!("node-{i}-run-{}.log", self.runs));
        self.nodes[i] = Some(Node::start_command(cmd, self.ports[i], log).await);
    }

    fn kill(&mut self, i: usize) {
        self.nodes[i].take().expect("node is running").sigkill();
    }

    fn node(&self, i: usize) -> &Node {
        self.nodes[i].as_ref().expect("node is running")
    }

    fn url(&self, i: usize) -> String {
        format!("http://127.0.0.1:{}", self.ports[i])
    }

    fn key(&self, i: usize) -> Keypair {
        bizra_node::datadir::read_key(&self.dir(i).join("node.key")).expect("node key")
    }

    fn running(&self) -> impl Iterator<Item = &Node> {
        self.nodes.iter().flatten()
    }
}

/// Waits until `check` holds, or fails with `what`.
async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + PATIENCE;
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The tipset without the fields a node computes from its own clock.
async fn tipset(node: &Node) -> Value {
    let t = node.get_ok("/api/consensus/tipset").await;
    json!({"tips": t["tips"], "height": t["height"], "total_weight": t["total_weight"]})
}

async fn peer_view(node: &Node, url: &str) -> Value {
    let peers = node.get_ok("/api/p2p/peers").await;
    peers["items"]
        .as_array()
        .expect("items")
        .iter()
        .find(|p| p["url"] == url)
        .cloned()
        .unwrap_or_else(|| panic!("{url} not among the peers: {peers}"))
}

/// Waits until `node` has `id` finalized; unlike [`Node::wait_finalized`] it also waits
/// while the node does not know the attestation yet (it learns of it from a proposal,
/// or catching up).
async fn final_at(node: &Node, id: &str) -> Value {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let r = node.get(&format!("/api/validator/attestation/{id}")).await;
        if r.status == 200 && r.json()["status"] == "finalized" {
            return r.json();
        }
        assert!(
            r.status == 200 || r.status == 404,
            "GET attestation {id}: {}",
            r.text
        );
        assert!(
            Instant::now() < deadline,
            "{id} not final at {} after {PATIENCE:?}: {}",
            node.base,
            r.text
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

async fn submit_many(node: &Node, n: usize) -> Vec<String> {
    let anchor = node.anchor().await;
    let key = Keypair::generate();
    let mut ids = Vec::new();
    for _ in 0..n {
        let (att, _) = signed(&anchor, &key);
        ids.push(node.submit_new(&att).await);
    }
    ids
}

/// Milliseconds from each final block's timestamp to its finality, at the proposer.
async fn finality_delays(node: &Node, above_height: u64) -> Vec<u64> {
    node.all_blocks()
        .await
        .iter()
        .filter(|b| b["header"]["height"].as_u64() > Some(above_height))
        .filter(|b| b["qc"].is_object())
        .filter_map(|b| {
            let at = b["finalized_at_ms"].as_u64()?;
            Some(at.saturating_sub(b["header"]["timestamp_ms"].as_u64()?))
        })
        .collect()
}

fn median(mut v: Vec<u64>) -> u64 {
    assert!(!v.is_empty(), "no samples");
    v.sort_unstable();
    v[v.len() / 2]
}

async fn four_validators_finalize(pg: bool) {
    let net = Net::start(4, pg, vec![]).await;
    let proposer = net.node(0);
    let mut ids = submit_many(proposer, 10).await;
    // Submitted to a validator: forwarded to the proposer, included like the rest.
    let anchor = proposer.anchor().await;
    let (att, _) = signed(&anchor, &Keypair::generate());
    ids.push(net.node(2).submit_new(&att).await);
    for id in &ids {
        final_at(proposer, id).await;
    }
    for id in &ids {
        let at_proposer = proposer
            .get_ok(&format!("/api/validator/attestation/{id}"))
            .await;
        check_inclusion(proposer, id, &at_proposer).await;
        let hash = at_proposer["block"]["hash"].as_str().expect("block hash");
        let block = proposer
            .get_ok(&format!("/api/consensus/block/{hash}"))
            .await;
        assert_eq!(block["finalized"], true);
        for node in net.running() {
            let view = final_at(node, id).await;
            assert_eq!(view["block"], at_proposer["block"], "block of {id}");
            assert_eq!(view["proof"], at_proposer["proof"], "proof of {id}");
            assert_eq!(view["attestation"], at_proposer["attestation"]);
        }
    }
    // The certificate of the newest block: at least 3 of the 4 validators.
    let blocks = proposer.all_blocks().await;
    let last_qc = blocks
        .iter()
        .rev()
        .find(|b| b["qc"].is_object())
        .expect("a block finalized by its own certificate");
    let voters = last_qc["qc"]["votes"].as_array().expect("votes");
    assert!(voters.len() >= 3, "QC with {} votes", voters.len());
    let expected = tipset(proposer).await;
    for node in net.running() {
        eventually("every node shows the proposer's tipset", || async {
            tipset(node).await == expected
        })
        .await;
        let status = node.get_ok("/api/consensus/status").await;
        assert_eq!(status["active_validators"], 4);
    }
    for i in 1..4 {
        let p = peer_view(proposer, &net.url(i)).await;
        assert_eq!(p["circuit_breaker"], "closed", "{p}");
        assert_eq!(p["reachable"], true, "{p}");
    }
    let ready = proposer.get_ok("/ready").await;
    assert_eq!(ready["checks"]["peers"]["status"], "ok", "{ready}");
    // `node0 smoke` against the network's proposer.
    let smoke = node0_command()
        .args(["smoke", &net.url(0)])
        .output()
        .expect("run node0 smoke");
    assert!(
        smoke.status.success(),
        "smoke: {}{}",
        String::from_utf8_lossy(&smoke.stdout),
        String::from_utf8_lossy(&smoke.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_validators_finalize_sqlite() {
    four_validators_finalize(false).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_validators_finalize_postgres() {
    four_validators_finalize(true).await
}

/// Node 3 killed: finality goes on with 3 of 4, its breaker opens, an open breaker adds
/// no latency; restarted, it catches up and the breaker closes through half-open.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_validator_down() {
    let breaker = vec!["--peer-breaker-open-ms".to_string(), "3000".into()];
    let mut net = Net::start(4, false, vec![breaker]).await;
    let dead_url = net.url(3);
    let ids = submit_many(net.node(0), 8).await;
    for id in &ids {
        net.node(0).wait_finalized(id).await;
    }
    let all_up = finality_delays(net.node(0), 0).await;
    let height_up = net.node(0).get_ok("/api/consensus/status").await["height"]
        .as_u64()
        .expect("height");

    net.kill(3);
    // Keep blocks coming until the breaker has seen enough failed calls to open.
    let proposer = net.node(0);
    let mut during = Vec::new();
    let deadline = Instant::now() + PATIENCE;
    while peer_view(proposer, &dead_url).await["circuit_breaker"] != "open" {
        assert!(
            Instant::now() < deadline,
            "breaker of the dead peer never opened"
        );
        during.extend(submit_many(proposer, 1).await);
        tokio::time::sleep(Duration::from_millis(NET_SLOT_MS)).await;
    }
    for id in &during {
        proposer.wait_finalized(id).await;
    }
    let height_open = proposer.get_ok("/api/consensus/status").await["height"]
        .as_u64()
        .expect("height");
    let with_open = {
        let ids = submit_many(proposer, 8).await;
        for id in &ids {
            proposer.wait_finalized(id).await;
        }
        finality_delays(proposer, height_open).await
    };
    assert!(finality_delays(proposer, height_up).await.len() >= 2);
    let (m_up, m_open) = (median(all_up), median(with_open));
    // 20 % of a few milliseconds is below the scheduler's noise here: the absolute
    // margin keeps the check about extra work (a call to the dead peer), not jitter.
    assert!(
        m_open <= m_up * 12 / 10 + 20,
        "finality with an open breaker {m_open} ms against {m_up} ms with all peers up"
    );
    let metrics = proposer.get("/metrics").await.text;
    assert!(
        metric(
            &metrics,
            "circuit_breaker_transitions_total",
            &format!("peer=\"{dead_url}\",to=\"open\"")
        ) >= 1.0,
        "no transition to open counted"
    );

    net.up(3).await;
    let expected_height = net.node(0).get_ok("/api/consensus/status").await["height"].clone();
    eventually("the restarted validator catches up", || async {
        net.node(3).get_ok("/api/consensus/status").await["height"] == expected_height
    })
    .await;
    // Blocks keep asking it; after the open period its breaker probes and closes.
    let deadline = Instant::now() + PATIENCE;
    while peer_view(net.node(0), &dead_url).await["circuit_breaker"] != "closed" {
        assert!(Instant::now() < deadline, "breaker never closed again");
        submit_many(net.node(0), 1).await;
        tokio::time::sleep(Duration::from_millis(NET_SLOT_MS)).await;
    }
    let metrics = net.node(0).get("/metrics").await.text;
    for to in ["half_open", "closed"] {
        assert!(
            metric(
                &metrics,
                "circuit_breaker_transitions_total",
                &format!("peer=\"{dead_url}\",to=\"{to}\"")
            ) >= 1.0,
            "no transition to {to} counted"
        );
    }
    let ids = submit_many(net.node(0), 3).await;
    for id in &ids {
        let at_proposer = net.node(0).wait_finalized(id).await;
        let at_restarted = final_at(net.node(3), id).await;
        assert_eq!(at_restarted["proof"], at_proposer["proof"]);
    }
}

/// Two of four down: below two thirds, nothing finalizes, the API says why; back up,
/// the backlog finalizes and nothing was lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_validators_down_halt_finality_until_they_return() {
    // Their breakers open while they are down; a short open period lets the test see
    // the backlog finalize soon after they return (30 s by default).
    let breaker = vec!["--peer-breaker-open-ms".to_string(), "2000".into()];
    let mut net = Net::start(4, false, vec![breaker]).await;
    let before = submit_many(net.node(0), 2).await;
    for id in &before {
        net.node(0).wait_finalized(id).await;
    }
    net.kill(2);
    net.kill(3);
    let proposer = net.node(0);
    let mut backlog = Vec::new();
    let deadline = Instant::now() + PATIENCE;
    loop {
        let h = proposer.get("/api/consensus/health").await;
        if h.status == 503 {
            let body = h.json();
            assert!(body["finality_lag"].as_u64() >= Some(10), "{body}");
            assert_eq!(body["healthy"], false);
            break;
        }
        assert!(
            Instant::now() < deadline,
            "finality lag never reached 10 blocks"
        );
        backlog.extend(submit_many(proposer, 1).await);
        tokio::time::sleep(Duration::from_millis(NET_SLOT_MS + 20)).await;
    }
    for id in &backlog {
        let v = proposer
            .get_ok(&format!("/api/validator/attestation/{id}"))
            .await;
        assert_ne!(v["status"], "finalized", "finalized without a quorum: {v}");
    }
    net.up(2).await;
    net.up(3).await;
    for id in &backlog {
        for node in net.running() {
            final_at(node, id).await;
        }
    }
    eventually("finality lag back under 10", || async {
        net.node(0).get("/api/consensus/health").await.status == 200
    })
    .await;
}

/// Proposals, certificates and votes that do not check are refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_proposals_and_certificates_are_refused() {
    let net = Net::start(4, false, vec![]).await;
    let proposer = net.node(0);
    let validator = net.node(1);
    let id = submit_many(proposer, 1).await.remove(0);
    let view = final_at(validator, &id).await;
    let block_hash: Hash32 = view["block"]["hash"]
        .as_str()
        .expect("hash")
        .parse()
        .expect("hex");
    let height = view["block"]["height"].as_u64().expect("height");
    let genesis_view = proposer.get_ok("/api/consensus/genesis").await;
    let genesis: Hash32 = genesis_view["genesis_hash"]
        .as_str()
        .expect("genesis_hash")
        .parse()
        .expect("hex");
    let chain_id = "bizra-testnet-001";
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_millis() as u64;
    // The epoch of `now`, as the producer sets it; no registry entries.
    let epoch = epoch_of_time(
        genesis_view["header"]["timestamp_ms"]
            .as_u64()
            .expect("genesis time"),
        now,
        genesis_view["parameters"]["slot_ms"]
            .as_u64()
            .expect("slot_ms"),
    );
    let propose_in = |epoch: u64, height: u64, parents: Vec<Hash32>, ids, key: &Keypair| {
        Block::propose(
            BlockContent {
                chain_id: chain_id.into(),
                epoch,
                height,
                parents,
                attestation_ids: ids,
                entry_ids: vec![],
                timestamp_ms: now,
            },
            key,
        )
        .expect("block")
    };
    let propose =
        |height, parents, ids, key: &Keypair| propose_in(epoch, height, parents, ids, key);

    // A block signed by a key that is not the proposer's.
    let outsider = Keypair::generate();
    let block = propose(1, vec![genesis], vec![], &outsider);
    let r = validator
        .post_json(
            "/api/consensus/submit-block",
            &json!({"block": block, "attestations": []}),
        )
        .await;
    r.problem(403, "not_proposer");
    // A validator's key is not the proposer's either.
    let block = propose(1, vec![genesis], vec![], &net.key(2));
    let r = validator
        .post_json(
            "/api/consensus/submit-block",
            &json!({"block": block, "attestations": []}),
        )
        .await;
    r.problem(403, "not_proposer");

    // Signed by the proposer, but the attestations do not match the ids.
    let key0 = net.key(0);
    let stranger = Hash32::digest(b"not an attestation");
    let block = propose(height + 1, vec![block_hash], vec![stranger], &key0);
    let r = validator
        .post_json(
            "/api/consensus/submit-block",
            &json!({"block": block, "attestations": []}),
        )
        .await;
    r.problem(400, "invalid_proposal");

    // A second block at a height where the proposer already signed one: equivocation.
    // (The first attestation of a fresh network is in block 1.)
    // Equivocation is two blocks of one epoch (docs/protocol.md §3.4): the second takes
    // the first one's.
    assert_eq!(height, 1, "{view}");
    let first_epoch = proposer
        .get_ok(&format!("/api/consensus/block/{block_hash}"))
        .await["header"]["epoch"]
        .as_u64()
        .expect("epoch");
    let other = propose_in(first_epoch, height, vec![genesis], vec![], &key0);
    let r = validator
        .post_json(
            "/api/consensus/submit-block",
            &json!({"block": other, "attestations": []}),
        )
        .await;
    r.problem(409, "equivocation");

    // A proposal whose parents this node never saw.
    let orphan = propose(50, vec![Hash32::digest(b"unknown")], vec![], &key0);
    let r = validator
        .post_json(
            "/api/consensus/submit-block",
            &json!({"block": orphan, "attestations": []}),
        )
        .await;
    r.problem(409, "unknown_parent");

    // Certificates: votes by outsiders, and a validator's id with a forged signature.
    let unfinal = propose(height + 1, vec![block_hash], vec![], &key0);
    let r = validator
        .post_json(
            "/api/consensus/submit-block",
            &json!({"block": unfinal, "attestations": []}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert!(
        r.json()["vote"].is_object(),
        "a validator votes: {}",
        r.text
    );
    let forged = |voters: Vec<(Hash32, Keypair)>| QuorumCertificate {
        block_hash: unfinal.hash,
        votes: voters
            .into_iter()
            .map(|(id, k)| QcVote {
                validator_id: id,
                signature: k.sign_tagged(bizra_ledger::crypto::VOTE_TAG, &unfinal.hash),
            })
            .collect(),
        weight: 0,
        total_weight: 0,
    };
    let outsiders = (0..3)
        .map(|_| {
            let k = Keypair::generate();
            (k.public().validator_id(), k)
        })
        .collect();
    let r = validator
        .post_json(
            "/api/consensus/qc",
            &serde_json::to_value(forged(outsiders)).expect("json"),
        )
        .await;
    r.problem(400, "invalid_qc");
    let impostors = (1..4)
        .map(|i| (net.key(i).public().validator_id(), Keypair::generate()))
        .collect();
    let r = validator
        .post_json(
            "/api/consensus/qc",
            &serde_json::to_value(forged(impostors)).expect("json"),
        )
        .await;
    r.problem(400, "invalid_qc");
    let status = validator
        .get_ok(&format!("/api/consensus/finality/{}", unfinal.hash))
        .await;
    assert_eq!(status["finalized"], false, "{status}");

    // The equivocation's evidence waits in the validator's store as a slash entry.
    let pending = validator
        .get_ok("/api/validator/entries?status=pending")
        .await;
    let items = pending["items"].as_array().expect("items");
    let slash = items
        .iter()
        .find(|e| e["kind"] == "slash")
        .unwrap_or_else(|| panic!("no slash entry among {pending}"));
    assert_eq!(slash["status"], "pending");
    assert_eq!(
        slash["entry"]["evidence"]["kind"], "double_proposal",
        "{slash}"
    );
    assert_eq!(
        slash["entry"]["evidence"]["second"]["hash"],
        json!(other.hash),
        "{slash}"
    );
}

/// A peer that answers with a forged vote, with garbage, or too slowly: no hang, each
/// failure counted by kind, the breaker opens, finality goes on with the honest three.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn misbehaving_peer_trips_its_breaker() {
    let proposer_flags = vec![
        "--peer-timeout-ms".to_string(),
        "300".into(),
        "--peer-breaker-open-ms".into(),
        "60000".into(),
    ];
    let mut net = Net::start(4, false, vec![proposer_flags]).await;
    let victim = 3;
    let victim_id = net.key(victim).public().validator_id();
    net.kill(victim);
    let fake = FakePeer::start(net.ports[victim], victim_id).await;
    let fake_url = net.url(victim);
    let proposer = net.node(0);
    let outcome = |metrics: &str, outcome: &str| {
        metric(
            metrics,
            "peer_calls_total",
            &format!("peer=\"{fake_url}\",outcome=\"{outcome}\""),
        )
    };

    // Forged votes: answered in time and well-formed, never counted.
    fake.set(Mode::ForgedVote);
    for id in submit_many(proposer, 3).await {
        let v = proposer.wait_finalized(&id).await;
        let hash = v["block"]["hash"].as_str().expect("hash");
        let block = proposer
            .get_ok(&format!("/api/consensus/block/{hash}"))
            .await;
        if let Some(votes) = block["qc"]["votes"].as_array() {
            assert!(
                votes
                    .iter()
                    .all(|v| v["validator_id"] != victim_id.to_hex()),
                "a forged vote was counted: {block}"
            );
        }
        let f = proposer
            .get_ok(&format!("/api/consensus/finality/{hash}"))
            .await;
        assert!(
            f["voters"]
                .as_array()
                .expect("voters")
                .iter()
                .all(|v| *v != victim_id.to_hex()),
            "a forged vote was stored: {f}"
        );
    }
    eventually("the forged votes were received", || async {
        outcome(&proposer.get("/metrics").await.text, "ok") >= 1.0
    })
    .await;

    // Garbage.
    fake.set(Mode::Garbage);
    for id in submit_many(proposer, 2).await {
        proposer.wait_finalized(&id).await;
    }
    eventually("garbage answers counted", || async {
        outcome(&proposer.get("/metrics").await.text, "bad_answer") >= 1.0
    })
    .await;

    // Silence past the timeout, until the breaker opens.
    fake.set(Mode::Silent);
    let deadline = Instant::now() + PATIENCE;
    let mut ids = Vec::new();
    while peer_view(proposer, &fake_url).await["circuit_breaker"] != "open" {
        assert!(
            Instant::now() < deadline,
            "the misbehaving peer's breaker never opened"
        );
        ids.extend(submit_many(proposer, 1).await);
        tokio::time::sleep(Duration::from_millis(NET_SLOT_MS)).await;
    }
    for id in &ids {
        proposer.wait_finalized(id).await;
    }
    let metrics = proposer.get("/metrics").await.text;
    assert!(outcome(&metrics, "timeout") >= 1.0, "no timeout counted");
    // Once open, calls stop reaching it (after the retries of calls under way).
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let calls = fake.calls();
    for id in submit_many(proposer, 3).await {
        proposer.wait_finalized(&id).await;
    }
    assert!(
        fake.calls() == calls,
        "calls went on past the open breaker: {} then {}",
        calls,
        fake.calls()
    );
    let metrics = proposer.get("/metrics").await.text;
    assert!(
        outcome(&metrics, "breaker_open") >= 1.0,
        "no call refused by the breaker"
    );
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
enum Mode {
    ForgedVote = 0,
    Garbage = 1,
    Silent = 2,
}

/// An HTTP server in the test that stands in for a validator, misbehaving as told.
struct FakePeer {
    calls: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    mode: std::sync::Arc<std::sync::atomic::AtomicU8>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FakePeer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FakePeer {
    async fn start(port: u16, claims: Hash32) -> FakePeer {
        use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
            .await
            .expect("bind the fake peer");
        let calls = std::sync::Arc::new(AtomicUsize::new(0));
        let mode = std::sync::Arc::new(AtomicU8::new(Mode::ForgedVote as u8));
        let (counter, current) = (calls.clone(), mode.clone());
        let task = tokio::spawn(async move {
            loop {
                let Ok((mut sock, _)) = listener.accept().await else {
                    return;
                };
                counter.fetch_add(1, Ordering::Relaxed);
                let mode = current.load(Ordering::Relaxed);
                tokio::spawn(async move {
                    // Read the request head and its Content-Length body, then answer.
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 65536];
                    loop {
                        let Ok(k) = sock.read(&mut chunk).await else {
                            return;
                        };
                        if k == 0 {
                            return;
                        }
                        buf.extend_from_slice(&chunk[..k]);
                        let text = String::from_utf8_lossy(&buf);
                        if let Some(end) = text.find("\r\n\r\n") {
                            let len = text[..end]
                                .lines()
                                .find_map(|l| {
                                    l.to_ascii_lowercase()
                                        .strip_prefix("content-length:")
                                        .map(|v| v.trim().parse::<usize>().unwrap_or(0))
                                })
                                .unwrap_or(0);
                            if buf.len() >= end + 4 + len {
                                break;
                            }
                        }
                    }
                    let body = if mode == Mode::Garbage as u8 {
                        "this is not json".to_string()
                    } else if mode == Mode::ForgedVote as u8 {
                        // A vote for the very block proposed, claiming to be the
                        // validator, signed by another key.
                        let liar = Keypair::generate();
                        let text = String::from_utf8_lossy(&buf);
                        let body = text.split_once("\r\n\r\n").map_or("", |(_, b)| b);
                        let hash: Hash32 = serde_json::from_str::<Value>(body)
                            .ok()
                            .and_then(|v| v["block"]["hash"].as_str().and_then(|h| h.parse().ok()))
                            .unwrap_or_else(|| Hash32::digest(b"no proposal"));
                        json!({
                            "block_hash": hash,
                            "stored": "new",
                            "vote": {
                                "block_hash": hash,
                                "validator_id": claims,
                                "signature": liar.sign_tagged(bizra_ledger::crypto::VOTE_TAG, &hash),
                            }
                        })
                        .to_string()
                    } else {
                        tokio::time::sleep(Duration::from_secs(5)).await;
                        "{}".to_string()
                    };
                    let answer = format!(
                        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = sock.write_all(answer.as_bytes()).await;
                });
            }
        });
        FakePeer { calls, mode, task }
    }

    fn set(&self, mode: Mode) {
        self.mode
            .store(mode as u8, std::sync::atomic::Ordering::Relaxed);
    }

    fn calls(&self) -> usize {
        self.calls.load(std::sync::atomic::Ordering::Relaxed)
    }
}

#[test]
fn testnet_refuses_a_directory_of_another_size() {
    let root = tempfile::tempdir().expect("temp dir");
    let run = |n: &str| -> std::process::Output {
        Command::new(BIN)
            .args([
                "testnet",
                "--no-run",
                "--validators",
                n,
                "--base-port",
                "9700",
            ])
            .arg("--dir")
            .arg(root.path())
            .output()
            .expect("run node0 testnet")
    };
    let first = run("3");
    assert!(first.status.success());
    let lines = String::from_utf8_lossy(&first.stdout).lines().count();
    assert_eq!(lines, 3, "one line per node");
    assert!(run("3").status.success(), "the same network again is fine");
    let other = run("5");
    assert!(!other.status.success());
    assert!(String::from_utf8_lossy(&other.stderr).contains("not a testnet directory"));
}

/// A registration filed with the proposer travels in its block to every validator: all
/// four derive the same registry, the newcomer pending and then active at the epoch
/// boundary. Filed with a validator instead, it is refused with the proposer's address.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registry_entries_reach_every_validator() {
    use bizra_ledger::registry::Registration;
    let net = Net::start(4, false, vec![]).await;
    let proposer = net.node(0);
    let newcomer = Keypair::generate();
    let id = newcomer.public().validator_id().to_hex();
    let chain = proposer.get_ok("/api/consensus/genesis").await["chain_id"]
        .as_str()
        .expect("chain_id")
        .to_string();
    let signed_now = |epoch: u64| {
        serde_json::to_value(
            Registration::sign(&chain, epoch, &newcomer, "http://127.0.0.1:9", 1000).expect("sign"),
        )
        .expect("json")
    };
    let epoch = proposer.get_ok("/api/validator/stats").await["epoch"]
        .as_u64()
        .expect("epoch");
    let r = net
        .node(1)
        .post_json("/api/validator/register", &signed_now(epoch))
        .await;
    let p = r.problem(409, "not_proposer");
    assert!(
        p["detail"].as_str().expect("detail").contains(&net.url(0)),
        "{p}"
    );
    let mut filed = false;
    for _ in 0..5 {
        let epoch = proposer.get_ok("/api/validator/stats").await["epoch"]
            .as_u64()
            .expect("epoch");
        let r = proposer
            .post_json("/api/validator/register", &signed_now(epoch))
            .await;
        if r.status == 202 {
            filed = true;
            break;
        }
        assert_eq!(r.json()["code"], "wrong_epoch", "{}", r.text);
    }
    assert!(filed, "could not file within an epoch");
    // Validators apply epoch boundaries as blocks arrive (so that each block's entries
    // meet the registry the proposer had): attestations keep blocks coming meanwhile.
    let anchor = proposer.anchor().await;
    let attester = Keypair::generate();
    for status in ["pending", "active"] {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let mut all = true;
            for node in net.running() {
                let r = node.get(&format!("/api/validator/{id}")).await;
                all &= r.status == 200 && r.json()["status"] == status;
            }
            if all {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "newcomer not {status} on every node"
            );
            let (att, _) = signed(&anchor, &attester);
            proposer.submit_new(&att).await;
            tokio::time::sleep(Duration::from_millis(NET_SLOT_MS)).await;
        }
    }
    // Every validator filed the entry once, as included in the block the proposer put it
    // in, whose header commits to it (header version 2), and serves that block's proposal
    // with exactly its entries.
    let newcomer_key = newcomer.public().to_string();
    let included_in = |entries: Value| -> Vec<String> {
        entries["items"]
            .as_array()
            .expect("items")
            .iter()
            .filter(|e| e["entry"]["pubkey_ed25519"] == newcomer_key.as_str())
            .map(|e| e["block_hash"].as_str().expect("block hash").to_string())
            .collect()
    };
    let blocks = included_in(proposer.get_ok("/api/validator/entries").await);
    assert_eq!(blocks.len(), 1, "filed once on the proposer: {blocks:?}");
    let block = &blocks[0];
    for node in net.running() {
        let here = included_in(node.get_ok("/api/validator/entries").await);
        assert_eq!(here, blocks, "stored once, in the same block");
        let p = node
            .get_ok(&format!("/api/consensus/block/{block}/proposal"))
            .await;
        let ids = p["block"]["entry_ids"]
            .as_array()
            .expect("entry ids")
            .clone();
        assert_eq!(p["block"]["header"]["entries_count"], ids.len());
        assert_eq!(p["entries"].as_array().expect("entries").len(), ids.len());
        assert!(
            p["entries"]
                .as_array()
                .expect("entries")
                .iter()
                .any(|e| e["pubkey_ed25519"] == newcomer_key.as_str()),
            "{p}"
        );
    }
    // Compared at one block seen by all: the proposer's registry may also have crossed
    // an epoch boundary since its last block, which the others apply with the next one.
    let deadline = Instant::now() + PATIENCE;
    loop {
        let (att, _) = signed(&anchor, &attester);
        let id = proposer.submit_new(&att).await;
        for node in net.running() {
            final_at(node, &id).await;
        }
        let expected = proposer.get_ok("/api/validator/list?limit=100").await;
        let stats = proposer.get_ok("/api/validator/stats").await;
        let mut same = true;
        for node in net.running() {
            same &= node.get_ok("/api/validator/list?limit=100").await == expected;
            same &= node.get_ok("/api/validator/stats").await == stats;
        }
        if same {
            assert_eq!(stats["active_count"], 5, "{stats}");
            break;
        }
        assert!(Instant::now() < deadline, "registries differ: {expected}");
    }
    // The registration is an included entry on every node, in the same block.
    let at_proposer = proposer
        .get_ok("/api/validator/entries?status=included")
        .await;
    let block = at_proposer["items"][0]["block_hash"].clone();
    assert!(block.is_string(), "{at_proposer}");
    for node in net.running() {
        let e = node.get_ok("/api/validator/entries?status=included").await;
        assert_eq!(e["items"][0]["kind"], "register", "{e}");
        assert_eq!(e["items"][0]["block_hash"], block, "{e}");
        assert_eq!(e["items"][0]["entry"], at_proposer["items"][0]["entry"]);
        let none = node.get_ok("/api/validator/entries?status=pending").await;
        assert_eq!(none["items"], json!([]), "{none}");
    }
    proposer
        .get("/api/validator/entries?status=bogus")
        .await
        .problem(400, "invalid_query");
    proposer
        .get("/api/validator/entries?cursor=nope")
        .await
        .problem(400, "invalid_cursor");
    // Four of five equal weights still finalize.
    for id in submit_many(proposer, 2).await {
        for node in net.running() {
            final_at(node, &id).await;
        }
    }
}

/// The proposer killed with SIGKILL under load and restarted: everything it acknowledged
/// is finalized on every node afterwards, and submissions that validators took while it
/// was down reach it and finalize too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proposer_killed_and_restarted_loses_nothing() {
    let mut net = Net::start(4, false, vec![]).await;
    let anchor = net.node(0).anchor().await;
    let key = Keypair::generate();
    let mut acked = Vec::new();
    for _ in 0..20 {
        let (att, _) = signed(&anchor, &key);
        acked.push(net.node(0).submit_new(&att).await);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    net.kill(0);
    // Taken by validators while the proposer is down: stored, forwarded later.
    let mut via_validators = Vec::new();
    for i in 1..4 {
        let (att, _) = signed(&anchor, &key);
        via_validators.push(net.node(i).submit_new(&att).await);
    }
    net.up(0).await;
    for _ in 0..5 {
        let (att, _) = signed(&anchor, &key);
        acked.push(net.node(0).submit_new(&att).await);
    }
    acked.extend(via_validators);
    for id in &acked {
        for node in net.running() {
            final_at(node, id).await;
        }
    }
    let expected = tipset(net.node(0)).await;
    for node in net.running() {
        eventually("same tipset after the restart", || async {
            tipset(node).await == expected
        })
        .await;
    }
}
