//! Randomized schedules over real processes, in the spirit of Sui's randomized consensus
//! tests: each seed draws a schedule of restarts (SIGKILL or SIGTERM, one validator down
//! at a time, for a random while) and arms every node's network faults
//! (`NODE0_NET_FAULTS`: each peer call delayed up to 40 ms, 5 % of requests and 5 % of
//! answers lost) under a steady load, until the network has certified some hundreds of
//! heights. Then every node's committed sequence (blocks by `commit_seq`) and ledger must
//! be the same, and every acknowledged attestation finalized in it.
//!
//! A failure names its seed; the schedule and the fault draws of a seed are the same on
//! every run (the timing of the processes is not).

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::*;

/// Certified heights (over all epochs) a run goes through before its checks.
const HEIGHTS: usize = 200;

/// Most a run may take to certify [`HEIGHTS`] heights: the network stalling under the
/// schedule fails the run.
const RUN_LIMIT: Duration = Duration::from_secs(360);

/// The distinct (epoch, height) of the certified blocks `node` holds.
async fn certified_heights(node: &Node) -> usize {
    node.all_blocks()
        .await
        .iter()
        .filter(|b| b["certified"] == true)
        .map(|b| {
            (
                b["header"]["epoch"].as_u64(),
                b["header"]["height"].as_u64(),
            )
        })
        .collect::<BTreeSet<_>>()
        .len()
}

/// The committed blocks of `node` in commit order; fails unless `commit_seq` runs 0, 1,
/// 2, ... without a gap.
async fn committed_sequence(node: &Node) -> Vec<String> {
    let mut committed: Vec<(u64, String)> = node
        .all_blocks()
        .await
        .iter()
        .filter(|b| b["finalized"] == true && b["header"]["height"].as_u64() != Some(0))
        .map(|b| {
            let seq = b["commit_seq"]
                .as_u64()
                .unwrap_or_else(|| panic!("a committed block without commit_seq: {b}"));
            (seq, b["hash"].as_str().expect("hash").to_string())
        })
        .collect();
    committed.sort();
    for (i, (seq, hash)) in committed.iter().enumerate() {
        assert_eq!(*seq, i as u64, "commit_seq of {hash} at {}", node.base);
    }
    committed.into_iter().map(|(_, h)| h).collect()
}

async fn randomized_schedule(seed: u64) {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut net = Net::write(4, false, vec![]).await;
    for i in 0..4 {
        let faults = format!("seed={},delay_ms=40,drop_pct=5", seed * 16 + i as u64);
        net.env[i].push(("NODE0_NET_FAULTS".into(), faults));
        net.up(i).await;
    }
    let anchor = net.node(0).anchor().await;
    let load = Load::start(net.urls(), anchor, Duration::from_millis(30));
    let began = Instant::now();
    let mut schedule = Vec::new();
    loop {
        let watcher = (0..4).find(|i| net.nodes[*i].is_some()).expect("a node up");
        let heights = certified_heights(net.node(watcher)).await;
        if heights >= HEIGHTS {
            break;
        }
        assert!(
            began.elapsed() < RUN_LIMIT,
            "seed {seed}: {heights} certified heights after {:?}; schedule {schedule:?}",
            began.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(rng.gen_range(1_000..4_000))).await;
        let i = rng.gen_range(0..4);
        let graceful = rng.gen_bool(0.3);
        let down = Duration::from_millis(rng.gen_range(500..6_000));
        schedule.push((i, if graceful { "term" } else { "kill" }, down));
        match net.nodes[i].take() {
            Some(node) if graceful => {
                let (status, _) = node.terminate().await;
                assert!(
                    status.success(),
                    "seed {seed}: node-{i} exited with {status}"
                );
            }
            Some(node) => node.sigkill(),
            None => unreachable!("one node down at a time"),
        }
        tokio::time::sleep(down).await;
        net.up(i).await;
    }
    let acked = load.stop().await;
    assert!(
        acked.len() > 100,
        "seed {seed}: only {} acknowledged",
        acked.len()
    );
    let views = same_everywhere(&net, &acked).await;
    assert!(
        views.values().all(|v| v["status"] == "finalized"),
        "seed {seed}: an acknowledged attestation is not finalized"
    );
    same_ledgers(&net).await;
    let reference = committed_sequence(net.node(0)).await;
    for i in 1..4 {
        let node = net.node(i);
        eventually("every node has committed the same blocks", || async {
            let seq = committed_sequence(node).await;
            let n = seq.len().min(reference.len());
            assert_eq!(
                seq[..n],
                reference[..n],
                "seed {seed}: node-{i}'s committed sequence differs from node-0's; schedule {schedule:?}"
            );
            seq.len() >= reference.len()
        })
        .await;
    }
    eprintln!(
        "seed {seed}: {} blocks committed, {} attestations, schedule {schedule:?}",
        reference.len(),
        acked.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_randomized_schedule_commits_one_sequence_seed_1() {
    randomized_schedule(1).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_randomized_schedule_commits_one_sequence_seed_2() {
    randomized_schedule(2).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_randomized_schedule_commits_one_sequence_seed_3() {
    randomized_schedule(3).await
}
