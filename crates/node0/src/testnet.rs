//! `node0 testnet` (README.md shows its use): a local network of N validators, one complete
//! data directory per node (key, the shared genesis, a config with its port and its peers),
//! so that each node also runs alone with `NODE0_DATA_DIR=DIR/node-i node0 serve`.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use bizra_ledger::crypto::Keypair;
use bizra_ledger::genesis::{Genesis, GenesisValidator};
use bizra_ledger::params::{DEFAULT_CHAIN_ID, DEFAULT_GENESIS_MERKLE_ROOT};
use bizra_ledger::Hash32;
use bizra_node::datadir::{self, GENESIS_FILE, KEY_FILE};

/// Stake each testnet validator starts with: equal stakes, equal votes.
pub(crate) const TESTNET_STAKE: u64 = 1_000;

#[derive(Debug, Clone, clap::Args)]
pub(crate) struct TestnetArgs {
    /// Number of validators (one node each); each of them proposes.
    #[arg(long, default_value_t = 4)]
    pub validators: usize,
    /// Directory that receives node-0 ... node-{N-1}.
    #[arg(long)]
    pub dir: PathBuf,
    /// Node i listens on 127.0.0.1:(base-port + i).
    #[arg(long, default_value_t = 9100)]
    pub base_port: u16,
    /// Slot length written into every node's config, in milliseconds.
    #[arg(long)]
    pub slot_ms: Option<u64>,
    /// Write the directories and exit, without starting the nodes.
    #[arg(long)]
    pub no_run: bool,
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum TestnetError {
    #[error("--validators must be 1 to 100")]
    Count,
    #[error("ports {first}..={last} do not fit below 65536")]
    Ports { first: u16, last: usize },
    #[error("{0} exists and is not a testnet directory of this size; choose another --dir")]
    Occupied(PathBuf),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    DataDir(#[from] datadir::DataDirError),
    #[error("genesis: {0}")]
    Genesis(String),
}

/// One node of the network.
#[derive(Debug, Clone)]
pub(crate) struct TestnetNode {
    pub index: usize,
    pub dir: PathBuf,
    pub url: String,
    pub validator_id: Hash32,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> TestnetError + '_ {
    move |source| TestnetError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn node_dir(dir: &Path, i: usize) -> PathBuf {
    dir.join(format!("node-{i}"))
}

/// Writes the directories, or reads them back when this command wrote them before
/// (same size): a network is created once and restarted as often as wanted.
pub(crate) fn prepare(args: &TestnetArgs) -> Result<Vec<TestnetNode>, TestnetError> {
    let n = args.validators;
    if !(1..=100).contains(&n) {
        return Err(TestnetError::Count);
    }
    let last = args.base_port as usize + n - 1;
    if last > u16::MAX as usize {
        return Err(TestnetError::Ports {
            first: args.base_port,
            last,
        });
    }
    let existing = (0..n).all(|i| node_dir(&args.dir, i).join(GENESIS_FILE).exists());
    if existing && !node_dir(&args.dir, n).exists() {
        return read_back(args);
    }
    if (0..=n).any(|i| node_dir(&args.dir, i).exists()) {
        return Err(TestnetError::Occupied(args.dir.clone()));
    }
    write(args)
}

fn url_of(args: &TestnetArgs, i: usize) -> String {
    format!("http://127.0.0.1:{}", args.base_port as usize + i)
}

/// Now, in whole seconds, as a genesis file states its time.
fn genesis_time_now() -> Result<String, TestnetError> {
    let now = time::OffsetDateTime::now_utc();
    now.replace_nanosecond(0)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .ok_or_else(|| TestnetError::Genesis(format!("the time {now} does not format")))
}

fn write(args: &TestnetArgs) -> Result<Vec<TestnetNode>, TestnetError> {
    let n = args.validators;
    let keys: Vec<Keypair> = (0..n).map(|_| Keypair::generate()).collect();
    let genesis = Genesis {
        chain_id: DEFAULT_CHAIN_ID.into(),
        genesis_time: genesis_time_now()?,
        genesis_merkle_root: DEFAULT_GENESIS_MERKLE_ROOT
            .parse()
            .map_err(|_| TestnetError::Genesis("default merkle root".into()))?,
        validators: keys
            .iter()
            .enumerate()
            .map(|(i, k)| GenesisValidator {
                pubkey_ed25519: k.public(),
                stake_bond: TESTNET_STAKE,
                network_address: url_of(args, i),
            })
            .collect(),
    };
    genesis
        .check()
        .map_err(|e| TestnetError::Genesis(e.to_string()))?;
    let genesis_text =
        serde_json::to_vec_pretty(&genesis).map_err(|e| TestnetError::Genesis(e.to_string()))?;
    let mut nodes = Vec::with_capacity(n);
    for (i, key) in keys.iter().enumerate() {
        let dir = node_dir(&args.dir, i);
        fs::create_dir_all(&dir).map_err(io(&dir))?;
        datadir::write_key(&dir.join(KEY_FILE), key)?;
        let path = dir.join(GENESIS_FILE);
        fs::write(&path, &genesis_text).map_err(io(&path))?;
        let path = dir.join(bizra_node::config::CONFIG_FILE_NAME);
        fs::write(&path, config_text(args, i)).map_err(io(&path))?;
        nodes.push(TestnetNode {
            index: i,
            dir,
            url: url_of(args, i),
            validator_id: key.public().validator_id(),
        });
    }
    Ok(nodes)
}

fn config_text(args: &TestnetArgs, i: usize) -> String {
    let peers: Vec<String> = (0..args.validators)
        .filter(|j| *j != i)
        .map(|j| format!("{:?}", url_of(args, j)))
        .collect();
    let mut text = format!(
        "# Written by `node0 testnet`: node {i} of {n}; every validator proposes.\n\
         listen = \"127.0.0.1:{port}\"\n\
         peers = [{peers}]\n\
         # Every node and client of a local network shares 127.0.0.1, so per-address\n\
         # quotas would throttle the whole network as one client.\n\
         rate_limit = \"off\"\n",
        n = args.validators,
        port = args.base_port as usize + i,
        peers = peers.join(", "),
    );
    if let Some(ms) = args.slot_ms {
        text.push_str(&format!("slot_ms = {ms}\n"));
    }
    text
}

fn read_back(args: &TestnetArgs) -> Result<Vec<TestnetNode>, TestnetError> {
    (0..args.validators)
        .map(|i| {
            let dir = node_dir(&args.dir, i);
            let key = datadir::read_key(&dir.join(KEY_FILE))?;
            let genesis = datadir::read_genesis(&dir.join(GENESIS_FILE))?;
            let id = key.public().validator_id();
            let url = genesis
                .validators
                .iter()
                .find(|v| v.validator_id() == id)
                .map(|v| v.network_address.clone())
                .ok_or_else(|| TestnetError::Occupied(args.dir.clone()))?;
            Ok(TestnetNode {
                index: i,
                dir,
                url,
                validator_id: id,
            })
        })
        .collect()
}

/// Starts `node0 serve` for every node (logs in DIR/node-i/node0.log) and returns the
/// children.
pub(crate) fn start(exe: &Path, nodes: &[TestnetNode]) -> Result<Vec<Child>, TestnetError> {
    let mut children = Vec::with_capacity(nodes.len());
    for node in nodes {
        let log_path = node.dir.join("node0.log");
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .map_err(io(&log_path))?;
        let err = log.try_clone().map_err(io(&log_path))?;
        let child = Command::new(exe)
            .arg("serve")
            .env("NODE0_DATA_DIR", &node.dir)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(err)
            .spawn()
            .map_err(io(exe))?;
        children.push(child);
    }
    Ok(children)
}

/// Asks every child to stop (SIGTERM: a graceful shutdown), waits up to `grace`, then
/// kills what is left.
pub(crate) fn stop(children: &mut [Child], grace: Duration) {
    for c in children.iter() {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(c.id().to_string())
            .status();
    }
    let deadline = std::time::Instant::now() + grace;
    for c in children.iter_mut() {
        loop {
            match c.try_wait() {
                Ok(Some(_)) => break,
                Ok(None) if std::time::Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(50))
                }
                _ => {
                    let _ = c.kill();
                    let _ = c.wait();
                    break;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(dir: &Path, n: usize) -> TestnetArgs {
        TestnetArgs {
            validators: n,
            dir: dir.to_path_buf(),
            base_port: 9300,
            slot_ms: Some(250),
            no_run: true,
        }
    }

    #[test]
    fn writes_one_complete_directory_per_node_and_reads_them_back() {
        let tmp = tempfile::tempdir().unwrap();
        let a = args(tmp.path(), 4);
        let nodes = prepare(&a).unwrap();
        assert_eq!(nodes.len(), 4);
        let g0 = datadir::read_genesis(&nodes[0].dir.join(GENESIS_FILE)).unwrap();
        assert_eq!(g0.validators.len(), 4);
        for (i, node) in nodes.iter().enumerate() {
            let g = datadir::read_genesis(&node.dir.join(GENESIS_FILE)).unwrap();
            assert_eq!(g, g0, "every node shares one genesis");
            assert_eq!(g.validators[i].validator_id(), node.validator_id);
            assert_eq!(node.url, format!("http://127.0.0.1:{}", 9300 + i));
            let cfg = fs::read_to_string(node.dir.join("node0.toml")).unwrap();
            let parsed: toml::Value = toml::from_str(&cfg).unwrap();
            assert_eq!(
                parsed["listen"].as_str(),
                Some(&*format!("127.0.0.1:{}", 9300 + i))
            );
            assert_eq!(parsed["peers"].as_array().unwrap().len(), 3);
            assert_eq!(parsed["slot_ms"].as_integer(), Some(250));
        }
        // The second run starts the same network.
        let again = prepare(&a).unwrap();
        assert_eq!(
            again.iter().map(|n| n.validator_id).collect::<Vec<_>>(),
            nodes.iter().map(|n| n.validator_id).collect::<Vec<_>>()
        );
        // Another size over the same directory is refused, not mixed.
        assert!(matches!(
            prepare(&args(tmp.path(), 3)),
            Err(TestnetError::Occupied(_))
        ));
        assert!(matches!(
            prepare(&args(tmp.path(), 0)),
            Err(TestnetError::Count)
        ));
    }
}
