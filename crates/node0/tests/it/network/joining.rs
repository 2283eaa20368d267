//! A validator that registers after genesis (docs/protocol.md §3.5) takes part like the
//! genesis validators once active: the others call it for votes and count it for
//! quorum. Three genesis validators of equal weight cannot certify with one of them
//! down (two thirds of the weight is just short of the quorum); with a fourth, registered
//! one they can, but only if it is asked to vote.

use bizra_ledger::registry::Registration;

use super::*;

impl Net {
    /// Adds a node that is not in the genesis file: its own key, the network's genesis,
    /// the genesis validators as its peers. Returns its index; it is not started.
    fn add_outsider(&mut self) -> usize {
        let i = self.nodes.len();
        let port = free_port();
        let dir = self.dir(i);
        std::fs::create_dir_all(&dir).expect("node dir");
        std::fs::copy(self.dir(0).join("genesis.json"), dir.join("genesis.json"))
            .expect("copy genesis");
        bizra_node::datadir::write_key(&dir.join("node.key"), &Keypair::generate())
            .expect("write key");
        let peers: Vec<String> = self.urls().iter().map(|u| format!("{u:?}")).collect();
        let config = format!(
            "listen = \"127.0.0.1:{port}\"\npeers = [{}]\nrate_limit = \"off\"\nslot_ms = {NET_SLOT_MS}\n",
            peers.join(", ")
        );
        std::fs::write(dir.join("node0.toml"), config).expect("write node0.toml");
        self.nodes.push(None);
        self.ports.push(port);
        self.extra.push(Vec::new());
        self.env.push(Vec::new());
        self.schemas.push(None);
        i
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_validator_registered_after_genesis_votes_and_holds_quorum() {
    let mut net = Net::start(3, false, vec![]).await;
    let newcomer = net.add_outsider();
    net.up(newcomer).await;
    let key = net.key(newcomer);
    let id = key.public().validator_id().to_hex();
    let address = net.url(newcomer);
    file_entry(net.node(0), "/api/validator/register", |chain, epoch| {
        serde_json::to_value(Registration::sign(chain, epoch, &key, &address, 1000).expect("sign"))
            .expect("json")
    })
    .await;
    for i in 0..=newcomer {
        eventually_within(
            "the newcomer is active everywhere",
            3 * PATIENCE,
            || async {
                // 404 until the registration is committed and applied there.
                let r = net.node(i).get(&format!("/api/validator/{id}")).await;
                r.status == 200 && r.json()["status"] == "active"
            },
        )
        .await;
    }
    // The genesis validators call it now: it is among their peers, under its id.
    for i in 0..3 {
        let p = peer_view(net.node(i), &net.url(newcomer)).await;
        assert_eq!(p["validator_id"], id.as_str(), "{p}");
    }
    let anchor = net.node(0).anchor().await;
    let load = Load::start(net.urls(), anchor, Duration::from_millis(25));
    eventually(
        "the newcomer votes for others' blocks and proposes",
        || async {
            let blocks = net.node(0).all_blocks().await;
            let certified: Vec<&Value> = blocks.iter().filter(|b| b["certified"] == true).collect();
            proposes_and_votes(&certified, &id)
        },
    )
    .await;
    // One genesis validator down: the other two and the newcomer hold the quorum.
    net.kill(2);
    let gap = longest_commit_gap(net.node(0), Duration::from_secs(10)).await;
    assert!(gap <= STALL, "a commit gap of {gap:?} with node-2 down");
    // What node-2 acknowledged before it died is in its store only: back up, it
    // proposes it.
    net.up(2).await;
    let acked = load.stop().await;
    assert!(acked.len() > 50, "only {} acknowledged", acked.len());
    let views = same_everywhere(&net, &acked).await;
    assert!(views.values().all(|v| v["status"] == "finalized"));
    same_ledgers(&net).await;
}
