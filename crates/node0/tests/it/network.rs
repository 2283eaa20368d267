//! The validator network over real processes on loopback: a 4-validator testnet written
//! by `node0 testnet --no-run`, each node a `node0 serve` on its own data directory,
//! killed (SIGKILL) and restarted as the tests need. Every validator proposes; the
//! checks compare what every node committed.

use std::collections::{BTreeSet, HashMap};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::common::*;
use bizra_ledger::block::{Block, BlockContent};
use bizra_ledger::crypto::Keypair;
use bizra_ledger::vote::{QcVote, QuorumCertificate};
use bizra_ledger::Hash32;
use serde_json::{json, Value};

mod joining;
mod randomized;

/// Slot of the test networks: long enough for a round of votes on a busy 2-core machine.
const NET_SLOT_MS: u64 = 250;

/// The longest time without a commit that still counts as finality going on: ten slots.
/// The tests check that the network does not stall (the single-proposer network stopped
/// for as long as its proposer was down); how short the gaps are is measured by
/// `bench/dag_finality.sh` with release binaries and recorded in BENCHMARKS.md.
const STALL: Duration = Duration::from_millis(10 * NET_SLOT_MS);

/// A testnet in a temporary directory; `nodes[i]` is `None` while node i is down.
/// Fields drop in order: the nodes (printing their logs if the test failed) before the
/// directory and the schemas.
struct Net {
    nodes: Vec<Option<Node>>,
    ports: Vec<u16>,
    runs: usize,
    /// Extra `serve` flags per node.
    extra: Vec<Vec<String>>,
    /// Extra environment per node (fault points).
    env: Vec<Vec<(String, String)>>,
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
        let mut net = Net::write(n, pg, extra).await;
        for i in 0..n {
            net.up(i).await;
        }
        net
    }

    /// Writes the network without starting it.
    async fn write(n: usize, pg: bool, extra: Vec<Vec<String>>) -> Net {
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
        Net {
            nodes: (0..n).map(|_| None).collect(),
            ports: (0..n as u16).map(|i| base + i).collect(),
            runs: 0,
            extra,
            env: vec![Vec::new(); n],
            schemas,
            root,
        }
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
            // Several 4-node networks share two cores while the suite runs: heights at
            // most every 100 ms (the default is 50) halve the blocks a validator that
            // was away has to fetch and check again.
            .args(["--min-height-ms", "100"])
            .args(&self.extra[i]);
        for (k, v) in &self.env[i] {
            cmd.env(k, v);
        }
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

    fn urls(&self) -> Vec<String> {
        (0..self.ports.len()).map(|i| self.url(i)).collect()
    }

    fn key(&self, i: usize) -> Keypair {
        bizra_node::datadir::read_key(&self.dir(i).join("node.key")).expect("node key")
    }

    fn running(&self) -> impl Iterator<Item = &Node> {
        self.nodes.iter().flatten()
    }
}

/// Waits until `check` holds, or fails with `what`.
async fn eventually<F, Fut>(what: &str, check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    eventually_within(what, PATIENCE, check).await
}

/// [`eventually`] with a deadline of its own.
async fn eventually_within<F, Fut>(what: &str, limit: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + limit;
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
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

/// Waits until `node` has settled `id` (finalized or rejected), also while the node
/// does not know it yet (it learns of it from a block).
async fn settled_at(node: &Node, id: &str) -> Value {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let r = node.get(&format!("/api/validator/attestation/{id}")).await;
        if r.status == 200 && matches!(r.json()["status"].as_str(), Some("finalized" | "rejected"))
        {
            return r.json();
        }
        assert!(
            r.status == 200 || r.status == 404,
            "GET attestation {id}: {}",
            r.text
        );
        assert!(
            Instant::now() < deadline,
            "{id} not settled at {} after {PATIENCE:?}: {}",
            node.base,
            r.text
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// [`settled_at`], finalized.
async fn final_at(node: &Node, id: &str) -> Value {
    let v = settled_at(node, id).await;
    assert_eq!(v["status"], "finalized", "{v}");
    v
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

/// The whole ledger of `node`, through `/api/ledger`.
async fn ledger(node: &Node) -> Vec<Value> {
    let mut out = Vec::new();
    let mut from = 0u64;
    loop {
        let page = node
            .get_ok(&format!("/api/ledger?from={from}&limit=1000"))
            .await;
        out.extend(page["items"].as_array().expect("items").iter().cloned());
        match page["next"].as_u64() {
            Some(n) => from = n,
            None => return out,
        }
    }
}

async fn ledger_size(node: &Node) -> u64 {
    node.get_ok("/api/consensus/status").await["ledger_size"]
        .as_u64()
        .expect("ledger_size")
}

/// Submissions in the background, one every `every`, to the nodes in turn; a node that
/// is down (or refuses) is skipped. Returns the ids acknowledged with 201/200.
struct Load {
    stop: tokio::sync::watch::Sender<bool>,
    task: tokio::task::JoinHandle<Vec<String>>,
}

impl Load {
    fn start(
        urls: Vec<String>,
        anchor: bizra_ledger::params::NetworkAnchor,
        every: Duration,
    ) -> Load {
        let (stop, mut stopped) = tokio::sync::watch::channel(false);
        let task = tokio::spawn(async move {
            let http = client(Duration::from_secs(5));
            let key = Keypair::generate();
            let mut acked = Vec::new();
            let mut i = 0usize;
            let mut tick = tokio::time::interval(every);
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    _ = stopped.changed() => break,
                }
                let (att, id) = signed(&anchor, &key);
                for _ in 0..urls.len() {
                    let url = &urls[i % urls.len()];
                    i += 1;
                    let r = http
                        .post(format!("{url}/api/validator/attestation/submit"))
                        .json(&att)
                        .send()
                        .await;
                    if let Ok(r) = r {
                        if r.status().as_u16() == 201 || r.status().as_u16() == 200 {
                            acked.push(id.clone());
                            break;
                        }
                    }
                }
            }
            acked
        });
        Load { stop, task }
    }

    async fn stop(self) -> Vec<String> {
        let _ = self.stop.send(true);
        self.task.await.expect("load task")
    }
}

/// Watches `node`'s ledger size every 50 ms for `for_`; returns the longest time
/// without growth while it watched.
async fn longest_commit_gap(node: &Node, for_: Duration) -> Duration {
    let end = Instant::now() + for_;
    let mut last = ledger_size(node).await;
    let mut since = Instant::now();
    let mut longest = Duration::ZERO;
    while Instant::now() < end {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let now = ledger_size(node).await;
        if now > last {
            longest = longest.max(since.elapsed());
            last = now;
            since = Instant::now();
        }
    }
    longest.max(since.elapsed())
}

/// Whether validator `id` proposed one of `blocks` and voted in the certificate of one
/// of another validator's.
fn proposes_and_votes(blocks: &[&Value], id: &str) -> bool {
    let proposes = blocks.iter().any(|b| b["header"]["proposer"] == id);
    let votes = blocks.iter().any(|b| {
        b["header"]["proposer"] != id
            && b["qc"]["votes"]
                .as_array()
                .is_some_and(|v| v.iter().any(|v| v["validator_id"] == id))
    });
    proposes && votes
}

/// Every node's view of every id is the same: status, `log_index`, block and proof.
async fn same_everywhere(net: &Net, ids: &[String]) -> HashMap<String, Value> {
    let mut views = HashMap::new();
    for id in ids {
        let mut first: Option<Value> = None;
        for node in net.running() {
            let v = settled_at(node, id).await;
            let seen = json!({
                "status": v["status"], "log_index": v["log_index"], "block": v["block"],
                "proof": v["proof"], "rejected_by": v["rejected_by"],
            });
            match &first {
                None => first = Some(seen),
                Some(f) => assert_eq!(&seen, f, "{id} differs at {}", node.base),
            }
        }
        views.insert(id.clone(), first.expect("a node"));
    }
    views
}

/// The four ledgers are the same, once each node has committed as far as the others.
async fn same_ledgers(net: &Net) -> Vec<Value> {
    let reference = ledger(net.running().next().expect("a node")).await;
    for node in net.running() {
        eventually("every node has the same ledger", || async {
            let l = ledger(node).await;
            let n = l.len().min(reference.len());
            assert_eq!(l[..n], reference[..n], "ledgers diverge at {}", node.base);
            l.len() >= reference.len()
        })
        .await;
    }
    reference
}

async fn four_validators_commit_one_ledger(pg: bool) {
    let net = Net::start(4, pg, vec![]).await;
    // Submissions spread over all four: each takes them into its own blocks.
    let mut ids = Vec::new();
    for i in 0..4 {
        ids.extend(submit_many(net.node(i), 5).await);
    }
    let views = same_everywhere(&net, &ids).await;
    for (id, v) in &views {
        assert_eq!(v["status"], "finalized", "{id}: {v}");
        check_inclusion(net.node(0), id, &final_at(net.node(0), id).await).await;
    }
    let indexes: BTreeSet<u64> = views
        .values()
        .filter_map(|v| v["log_index"].as_u64())
        .collect();
    assert_eq!(indexes.len(), ids.len(), "one log_index each");
    let ledger = same_ledgers(&net).await;
    assert_eq!(ledger.len(), ids.len());
    for (i, item) in ledger.iter().enumerate() {
        assert_eq!(item["log_index"], i as u64);
        let id = item["attestation_id"].as_str().expect("id");
        assert_eq!(views[id]["log_index"], i as u64);
        assert_eq!(views[id]["block"]["hash"], item["block_hash"]);
    }
    // Blocks of every proposer, certified by at least three of the four.
    let blocks = net.node(0).all_blocks().await;
    let proposers: BTreeSet<String> = blocks
        .iter()
        .filter(|b| b["header"]["height"].as_u64() > Some(0))
        .map(|b| {
            b["header"]["proposer"]
                .as_str()
                .expect("proposer")
                .to_string()
        })
        .collect();
    assert_eq!(proposers.len(), 4, "blocks by {proposers:?}");
    for b in blocks
        .iter()
        .filter(|b| b["certified"] == true && b["header"]["height"].as_u64() > Some(0))
    {
        assert!(
            b["qc"]["votes"].as_array().expect("votes").len() >= 3,
            "{b}"
        );
    }
    for node in net.running() {
        let status = node.get_ok("/api/consensus/status").await;
        assert_eq!(status["active_validators"], 4);
        assert_eq!(status["is_validator"], true);
        let h = node.get("/api/consensus/health").await;
        assert_eq!(h.status, 200, "{}", h.text);
    }
    for i in 1..4 {
        let p = peer_view(net.node(0), &net.url(i)).await;
        assert_eq!(p["circuit_breaker"], "closed", "{p}");
        assert_eq!(p["reachable"], true, "{p}");
    }
    // `node0 smoke` against any validator.
    let smoke = node0_command()
        .args(["smoke", &net.url(2)])
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
async fn four_validators_commit_one_ledger_sqlite() {
    four_validators_commit_one_ledger(false).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_validators_commit_one_ledger_postgres() {
    four_validators_commit_one_ledger(true).await
}

/// Node-0 (the genesis file's first validator, once the only proposer) killed with
/// SIGKILL for 30 s under load: the other three go on committing, without a stall; back up, it catches up from the others, proposes and votes again, and every
/// acknowledged attestation is finalized on every node.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_validator_killed_under_load_costs_no_finality() {
    // While node-0 is down the others' breakers for it open; they send it no blocks until
    // they close (the ones that suffice for a quorum are asked first), so it follows by
    // catch-up alone meanwhile. A short open period lets it take part again soon after
    // it is back, within the test's patience, on two cores shared by the whole suite.
    let breaker = || vec!["--peer-breaker-open-ms".to_string(), "2000".into()];
    let mut net = Net::start(4, false, (0..4).map(|_| breaker()).collect()).await;
    let anchor = net.node(0).anchor().await;
    let load = Load::start(net.urls(), anchor, Duration::from_millis(20));
    eventually("the ledger grows under load", || async {
        ledger_size(net.node(1)).await > 20
    })
    .await;
    net.kill(0);
    let gap = longest_commit_gap(net.node(1), Duration::from_secs(30)).await;
    assert!(gap <= STALL, "a commit gap of {gap:?} with node-0 down");
    net.up(0).await;
    let back = ledger_size(net.node(1)).await;
    // Thirty seconds of blocks under load to fetch and check again: more than the usual
    // patience.
    eventually_within(
        "the restarted validator catches up",
        3 * PATIENCE,
        || async { ledger_size(net.node(0)).await >= back },
    )
    .await;
    let restarted = net.key(0).public().validator_id().to_hex();
    let since = ledger_size(net.node(1)).await;
    eventually(
        "the restarted validator proposes and votes again",
        || async {
            let blocks = net.node(1).all_blocks().await;
            let recent = blocks
                .iter()
                .filter(|b| b["certified"] == true)
                .rev()
                .take(40)
                .collect::<Vec<_>>();
            proposes_and_votes(&recent, &restarted) && ledger_size(net.node(1)).await > since
        },
    )
    .await;
    let acked = load.stop().await;
    assert!(acked.len() > 100, "only {} acknowledged", acked.len());
    let views = same_everywhere(&net, &acked).await;
    assert!(views.values().all(|v| v["status"] == "finalized"));
    same_ledgers(&net).await;
}

/// One validator killed, then another 10 s after the first returned: finality goes on
/// throughout with three of four up. The breakers stay open for a minute once they
/// open, longer than the test's patience: the others' breakers for the first one must
/// be closed by their liveness probes soon after it is back, not by the breaker's
/// timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_returning_validator_counts_at_once_whatever_its_breaker() {
    let breaker = || vec!["--peer-breaker-open-ms".to_string(), "60000".into()];
    let mut net = Net::start(4, false, (0..4).map(|_| breaker()).collect()).await;
    let anchor = net.node(0).anchor().await;
    let load = Load::start(net.urls(), anchor, Duration::from_millis(25));
    eventually("the ledger grows under load", || async {
        ledger_size(net.node(0)).await > 20
    })
    .await;
    net.kill(1);
    let gap = longest_commit_gap(net.node(0), Duration::from_secs(15)).await;
    assert!(gap <= STALL, "gap {gap:?} with node-1 down");
    let opened = peer_view(net.node(0), &net.url(1)).await;
    // Open, or half open while a liveness probe is under way.
    assert_ne!(opened["circuit_breaker"], "closed", "{opened}");
    net.up(1).await;
    for i in [0, 2, 3] {
        eventually("the others' breakers for node-1 close", || async {
            peer_view(net.node(i), &net.url(1)).await["circuit_breaker"] == "closed"
        })
        .await;
    }
    let gap = longest_commit_gap(net.node(0), Duration::from_secs(10)).await;
    assert!(gap <= STALL, "gap {gap:?} as node-1 returned");
    net.kill(3);
    let gap = longest_commit_gap(net.node(0), Duration::from_secs(15)).await;
    assert!(
        gap <= STALL,
        "gap {gap:?} with node-3 down soon after node-1 returned"
    );
    net.up(3).await;
    let acked = load.stop().await;
    same_everywhere(&net, &acked).await;
    same_ledgers(&net).await;
}

/// Two of four killed: nothing commits, submissions are still acknowledged, the health
/// route says why within three slots; back up, the backlog finalizes everywhere.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_validators_down_stop_commits_until_they_return() {
    let mut net = Net::start(4, false, vec![]).await;
    let before = submit_many(net.node(0), 2).await;
    same_everywhere(&net, &before).await;
    net.kill(2);
    net.kill(3);
    let killed = Instant::now();
    let mut unhealthy = None;
    while unhealthy.is_none() {
        let h = net.node(0).get("/api/consensus/health").await;
        if h.status == 503 {
            unhealthy = Some((killed.elapsed(), h.json()));
        }
        assert!(killed.elapsed() < PATIENCE, "health never turned 503");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (after, body) = unhealthy.expect("503");
    assert!(
        after <= Duration::from_millis(3 * NET_SLOT_MS + 500),
        "503 only {after:?} after two validators went down: {body}"
    );
    assert!(
        body["reason"].as_str().is_some_and(|r| r.contains("2/3")),
        "{body}"
    );
    let size = ledger_size(net.node(0)).await;
    let mut backlog = submit_many(net.node(0), 3).await;
    backlog.extend(submit_many(net.node(1), 3).await);
    tokio::time::sleep(Duration::from_millis(8 * NET_SLOT_MS)).await;
    assert_eq!(
        ledger_size(net.node(0)).await,
        size,
        "committed without a quorum"
    );
    for id in &backlog {
        let v = net
            .node(0)
            .get(&format!("/api/validator/attestation/{id}"))
            .await;
        if v.status == 200 {
            assert_ne!(v.json()["status"], "finalized", "{}", v.text);
        }
    }
    net.up(2).await;
    net.up(3).await;
    let views = same_everywhere(&net, &backlog).await;
    assert!(views.values().all(|v| v["status"] == "finalized"));
    eventually("healthy again", || async {
        net.node(0).get("/api/consensus/health").await.status == 200
    })
    .await;
}

/// The same (key, nonce) with two bodies, submitted at once to two validators: both may
/// acknowledge it; then on every node one is finalized and the other rejected with
/// `duplicate_nonce`, the same one everywhere, and the rejected one has no `log_index`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_nonce_two_bodies_settle_the_same_everywhere() {
    let net = Net::start(4, false, vec![]).await;
    let anchor = net.node(0).anchor().await;
    let key = Keypair::generate();
    let mut raced = 0;
    for _ in 0..8 {
        let nonce = nonce();
        // Two bodies that differ in what they measure, under one key and nonce.
        let make = |quality: f64| {
            let mut d = draft(&anchor, "attester-dup");
            d.nonce = nonce.clone();
            d.dimensions = [("quality".into(), quality), ("reach".into(), 0.4)].into();
            let (att, digest) = d.sign(&key).expect("sign");
            (to_json(&att), digest.to_hex())
        };
        let ((a, id_a), (b, id_b)) = (make(0.5), make(0.75));
        let (ra, rb) = tokio::join!(net.node(1).submit(&a), net.node(2).submit(&b));
        let acked: Vec<&String> = [(&ra, &id_a), (&rb, &id_b)]
            .into_iter()
            .filter(|(r, _)| r.status == 201)
            .map(|(_, id)| id)
            .collect();
        for r in [&ra, &rb] {
            assert!(r.status == 201 || r.status == 409, "{}", r.text);
        }
        let views = same_everywhere(
            &net,
            &acked.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
        )
        .await;
        if acked.len() == 2 {
            raced += 1;
            let statuses: BTreeSet<&str> = views
                .values()
                .map(|v| v["status"].as_str().unwrap_or(""))
                .collect();
            assert_eq!(
                statuses,
                BTreeSet::from(["finalized", "rejected"]),
                "{views:?}"
            );
            let rejected = views
                .values()
                .find(|v| v["status"] == "rejected")
                .expect("rejected");
            assert!(rejected["log_index"].is_null(), "{rejected}");
            let winner = views
                .iter()
                .find(|(_, v)| v["status"] == "finalized")
                .map(|(id, _)| id)
                .expect("winner");
            assert_eq!(rejected["rejected_by"], winner.as_str());
        } else {
            assert_eq!(acked.len(), 1);
            assert!(views.values().all(|v| v["status"] == "finalized"));
        }
    }
    assert!(raced > 0, "no trial had both bodies acknowledged");
    same_ledgers(&net).await;
}

/// A validator killed between recording its vote and sending it (a fault point) never
/// votes otherwise for that (proposer, height) after its restart; a peer that signs two
/// blocks at one height is refused, reported, and slashed on every node at the next
/// epoch boundary. The equivocating peer is the test itself, holding node-3's key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_vote_recorded_before_a_crash_binds_the_restarted_validator() {
    let mut net = Net::write(4, false, vec![]).await;
    net.env[1] = vec![("NODE0_FAULTS".into(), "after-vote-record".into())];
    for i in 0..3 {
        net.up(i).await;
    }
    let genesis: Hash32 = net.node(0).get_ok("/api/consensus/genesis").await["genesis_hash"]
        .as_str()
        .expect("genesis_hash")
        .parse()
        .expect("hex");
    let key3 = net.key(3);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_millis() as u64;
    let block = |salt: u8| {
        Block::propose(
            BlockContent {
                chain_id: anchor_chain(),
                epoch: 0,
                height: 1,
                parents: vec![genesis],
                attestation_ids: vec![],
                entry_ids: vec![],
                timestamp_ms: now + u64::from(salt),
            },
            &key3,
        )
        .expect("block")
    };
    let (first, second) = (block(1), block(2));
    async fn send(node: &Node, b: &Block) -> Reply {
        let body = json!({"block": b, "attestations": []});
        node.post_json("/api/consensus/submit-block", &body).await
    }
    // Node 1 records its vote for the first block and stops before answering.
    let http = client(Duration::from_secs(5));
    let r = http
        .post(format!("{}/api/consensus/submit-block", net.url(1)))
        .json(&json!({"block": first, "attestations": []}))
        .send()
        .await;
    assert!(
        r.is_err() || r.is_ok_and(|r| !r.status().is_success()),
        "node 1 answered"
    );
    // The process is gone; take it down in the test's books and start it clean.
    if let Some(n) = net.nodes[1].take() {
        n.sigkill();
    }
    net.env[1].clear();
    net.up(1).await;
    // The second block of the slot: refused as equivocation, no vote.
    let r = send(net.node(1), &second).await;
    r.problem(409, "equivocation");
    // The first again: the vote it recorded before the crash.
    let r = send(net.node(1), &first).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json()["vote"]["block_hash"], json!(first.hash));
    // The others see both blocks too and refuse the second.
    for i in [0, 2] {
        assert_eq!(send(net.node(i), &first).await.status, 200);
        send(net.node(i), &second)
            .await
            .problem(409, "equivocation");
    }
    // The evidence goes into blocks, is committed, and slashes node-3 at the boundary.
    let offender = key3.public().validator_id().to_hex();
    for i in 0..3 {
        eventually("node-3 is slashed on every node", || async {
            net.node(i)
                .get_ok(&format!("/api/validator/{offender}"))
                .await["status"]
                == "slashed"
        })
        .await;
    }
}

fn anchor_chain() -> String {
    bizra_ledger::params::DEFAULT_CHAIN_ID.to_string()
}

/// Proposals and certificates that do not check are refused, and change nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_proposals_and_certificates_are_refused() {
    let net = Net::start(4, false, vec![]).await;
    let validator = net.node(1);
    let genesis: Hash32 = validator.get_ok("/api/consensus/genesis").await["genesis_hash"]
        .as_str()
        .expect("genesis_hash")
        .parse()
        .expect("hex");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_millis() as u64;
    let content = |height: u64, parents: Vec<Hash32>, ids: Vec<Hash32>| BlockContent {
        chain_id: anchor_chain(),
        epoch: 0,
        height,
        parents,
        attestation_ids: ids,
        entry_ids: vec![],
        timestamp_ms: now,
    };
    let submit = |b: &Block| {
        let body = json!({"block": b, "attestations": []});
        async move {
            validator
                .post_json("/api/consensus/submit-block", &body)
                .await
        }
    };
    // A key outside the committee.
    let outsider = Keypair::generate();
    let b = Block::propose(content(1, vec![genesis], vec![]), &outsider).expect("block");
    submit(&b).await.problem(403, "not_validator");
    // A validator's header signed by another key.
    let mut b = Block::propose(content(1, vec![genesis], vec![]), &net.key(2)).expect("block");
    b.signature = Some(outsider.sign_tagged(bizra_ledger::crypto::BLOCK_TAG, &b.hash));
    submit(&b).await.problem(403, "not_validator");
    // Attestation ids without their attestations.
    let b = Block::propose(
        content(
            1,
            vec![genesis],
            vec![Hash32::digest(b"not an attestation")],
        ),
        &net.key(0),
    )
    .expect("block");
    submit(&b).await.problem(400, "invalid_proposal");
    // Height 2 citing blocks this node has never seen.
    let b = Block::propose(
        content(2, vec![Hash32::digest(b"unknown")], vec![]),
        &net.key(0),
    )
    .expect("block");
    submit(&b).await.problem(409, "unknown_parent");
    // Height 1 must cite the epoch's start block, genesis.
    let b = Block::propose(
        content(1, vec![Hash32::digest(b"other")], vec![]),
        &net.key(0),
    )
    .expect("block");
    submit(&b).await.problem(400, "invalid_block");
    // A valid block, voted for; then certificates that do not hold.
    let good = Block::propose(content(1, vec![genesis], vec![]), &net.key(0)).expect("block");
    let r = submit(&good).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert!(r.json()["vote"].is_object(), "{}", r.text);
    let forged = |voters: Vec<(Hash32, Keypair)>| QuorumCertificate {
        block_hash: good.hash,
        votes: voters
            .into_iter()
            .map(|(id, k)| QcVote {
                validator_id: id,
                signature: k.sign_tagged(bizra_ledger::crypto::VOTE_TAG, &good.hash),
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
    validator
        .post_json(
            "/api/consensus/qc",
            &serde_json::to_value(forged(outsiders)).expect("json"),
        )
        .await
        .problem(400, "invalid_qc");
    let impostors = (0..3)
        .map(|i| (net.key(i).public().validator_id(), Keypair::generate()))
        .collect();
    validator
        .post_json(
            "/api/consensus/qc",
            &serde_json::to_value(forged(impostors)).expect("json"),
        )
        .await
        .problem(400, "invalid_qc");
    // Two real votes of four: below 2/3.
    let two = (0..2)
        .map(|i| (net.key(i).public().validator_id(), net.key(i)))
        .collect();
    validator
        .post_json(
            "/api/consensus/qc",
            &serde_json::to_value(forged(two)).expect("json"),
        )
        .await
        .problem(400, "invalid_qc");
    let f = validator
        .get_ok(&format!("/api/consensus/finality/{}", good.hash))
        .await;
    assert_eq!(f["certified"], false, "{f}");
    assert_eq!(f["finalized"], false, "{f}");
}

#[test]
fn testnet_refuses_a_directory_of_another_size() {
    let root = tempfile::tempdir().expect("temp dir");
    let base = free_ports(4);
    let write = |n: &str| {
        node0_command()
            .args(["testnet", "--no-run", "--validators", n])
            .arg("--dir")
            .arg(root.path())
            .args(["--base-port", &base.to_string()])
            .output()
            .expect("run node0 testnet")
    };
    assert!(write("4").status.success());
    let again = write("3");
    assert!(!again.status.success());
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("4"),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );
}
