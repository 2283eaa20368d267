//! `node0`: the BIZRA Node0 binary. Each subcommand is a thin shell over a library crate:
//! `serve`/`init` over `bizra-node`, the client tools over `bizra-tools`.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context};
use bizra_ledger::crypto::Keypair;
use bizra_node::config::LogFormat;
use bizra_node::log_sink::{LogSink, LogSinkGuard};
use bizra_node::{ConfigArgs, Node};
use bizra_tools::attest::{network_of, parse_pair, AttestSpec};
use bizra_tools::client::Client;
use clap::{Parser, Subcommand};

mod testnet;

/// mimalloc instead of the system allocator: the request path allocates many small,
/// short-lived buffers across threads, and glibc's malloc and free stood out in the
/// node's profiles (bench/history/2026-11-29-second-day.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "node0",
    version,
    about = "BIZRA Node0: a Proof-of-Impact ledger node"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// The node the client tools talk to unless told otherwise: `node0 serve`'s default.
const DEFAULT_NODE_URL: &str = "http://127.0.0.1:8080";

/// The node a client tool talks to, given either way: `smoke URL` (as the README names
/// it) or `--url URL` (as `bench` and `attest` take it).
#[derive(clap::Args, Debug)]
struct NodeUrl {
    /// Base URL of the node.
    #[arg(value_name = "URL", default_value = DEFAULT_NODE_URL)]
    positional: String,
    /// The same, as an option.
    #[arg(long = "url", value_name = "URL", conflicts_with = "positional")]
    flag: Option<String>,
}

impl NodeUrl {
    fn get(self) -> String {
        self.flag.unwrap_or(self.positional)
    }
}

#[derive(Subcommand)]
enum Command {
    /// Run the node (creates the data directory on first start).
    Serve(ConfigArgs),
    /// Create the data directory (node key, single-validator genesis) and exit.
    Init(ConfigArgs),
    /// Write a new Ed25519 key (hex seed, mode 0600) and print its public key.
    Keygen {
        /// Where to write the key.
        #[arg(long)]
        out: PathBuf,
    },
    /// Build a signed attestation, submit it, print its id.
    Attest(AttestArgs),
    /// Check a running node end to end: health, stats, genesis, tipset, a signed submit,
    /// read-back until finalized, inclusion proof.
    Smoke {
        #[command(flatten)]
        url: NodeUrl,
        /// How long to wait for the attestation to be finalized.
        #[arg(long, default_value_t = 30)]
        finality_timeout_s: u64,
    },
    /// Load generator and quality gates (`bench/gates.toml`): open model (constant arrival
    /// rate) or closed loop; exits 2 when a gate fails.
    Bench(bizra_tools::bench::BenchArgs),
    /// Compress a ~612 KiB page of real signed attestations with each codec and level;
    /// print sizes, reductions, speeds, round-trip checks and the cache's codec as JSON.
    VerifyCompression,
    /// Prove that a pooled client reuses connections, from the node's own connection
    /// counter; exits 1 when it does not.
    KeepaliveCheck {
        #[command(flatten)]
        url: NodeUrl,
        /// Requests per client.
        #[arg(long, default_value_t = 200)]
        requests: u32,
    },
    /// Saturate the PostgreSQL store's connection pool with concurrent store operations;
    /// print acquire-wait and latency percentiles, connections in use and errors as JSON.
    /// Exits 1 when it cannot connect at all.
    DbPoolProbe(bizra_tools::db_pool_probe::ProbeArgs),
    /// A local network of N validators: one data directory per node under DIR (every
    /// validator proposes), then, unless --no-run, all N nodes started, one line per
    /// node printed, until Ctrl-C.
    Testnet(testnet::TestnetArgs),
    /// Print the version and the protocol this build speaks.
    Version,
}

#[derive(clap::Args)]
struct AttestArgs {
    /// Base URL of the node.
    #[arg(long, default_value = DEFAULT_NODE_URL)]
    url: String,
    /// Attester key file (hex seed, as `node0 keygen` writes); a fresh key when absent.
    #[arg(long)]
    key: Option<PathBuf>,
    /// A complete attestation JSON file to sign as it is (its signature fields are set).
    #[arg(long, conflicts_with_all = ["dimension", "weight"])]
    file: Option<PathBuf>,
    /// Attester id.
    #[arg(long, default_value = "node0-cli")]
    attester_id: String,
    /// A scored dimension, `name=value` with value in [0, 1]; repeat for more.
    #[arg(long, value_parser = parse_pair)]
    dimension: Vec<(String, f64)>,
    /// A weight, `name=value`; default equal weights over the dimensions.
    #[arg(long, value_parser = parse_pair)]
    weight: Vec<(String, f64)>,
    /// SHA-256 of the evidence pack (64 hex); derived from the nonce when absent.
    #[arg(long)]
    pack_sha256: Option<String>,
    /// Hours of work the time window covers, ending now.
    #[arg(long, default_value_t = 1)]
    window_hours: u32,
    /// Print the signed attestation instead of submitting it.
    #[arg(long)]
    dry_run: bool,
}

/// Logs go to stdout through a background writer (`bizra_node::log_sink`), so a request
/// never waits on the terminal or pipe; colours only on a terminal. The guard writes what
/// is left at exit.
fn init_logging(filter: &str, format: LogFormat) -> anyhow::Result<LogSinkGuard> {
    use std::io::IsTerminal;
    let filter = tracing_subscriber::EnvFilter::try_new(filter)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let ansi = std::io::stdout().is_terminal();
    let (writer, guard) = LogSink::spawn(std::io::stdout())?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer)
        .with_ansi(ansi);
    match format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Pretty => builder.init(),
    }
    Ok(guard)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve(args) => {
            let config = args.resolve()?;
            let _log_guard = init_logging(&config.log, config.log_format)?;
            let node = Node::open(config).await?;
            node.run(bizra_node::shutdown_signal()).await?;
        }
        Command::Init(args) => {
            let config = args.resolve()?;
            let p = bizra_node::datadir::prepare(&config)?;
            let genesis_hash = p.genesis.block().map(|b| b.hash)?;
            println!("data_dir     {}", config.data_dir.display());
            println!(
                "node key     {} ({})",
                config
                    .data_dir
                    .join(bizra_node::datadir::KEY_FILE)
                    .display(),
                if p.created_key { "created" } else { "existing" }
            );
            println!("validator_id {}", p.key.public().validator_id());
            println!("pubkey       {}", p.key.public());
            println!(
                "genesis      {} ({})",
                genesis_hash,
                if p.created_genesis {
                    "created"
                } else {
                    "existing"
                }
            );
        }
        Command::Keygen { out } => {
            if out.exists() {
                bail!("{} exists; refusing to overwrite a key", out.display());
            }
            let key = Keypair::generate();
            bizra_node::datadir::write_key(&out, &key)?;
            println!("pubkey       {}", key.public());
            println!("validator_id {}", key.public().validator_id());
        }
        Command::Attest(a) => attest(a).await?,
        Command::Smoke {
            url,
            finality_timeout_s,
        } => {
            let url = url.get();
            if let Err(e) =
                bizra_tools::smoke::run(&url, Duration::from_secs(finality_timeout_s)).await
            {
                eprintln!("FAIL {e}");
                std::process::exit(1);
            }
            println!("smoke: all steps passed against {url}");
        }
        Command::Bench(args) => {
            let code = bizra_tools::bench::main(args).await;
            if code != 0 {
                std::process::exit(code);
            }
        }
        Command::VerifyCompression => {
            let report =
                tokio::task::spawn_blocking(bizra_tools::verify_compression::run).await??;
            println!("{}", serde_json::to_string_pretty(&report)?);
            if !report.codecs.iter().all(|c| c.roundtrip_ok) {
                bail!("a codec failed its round trip");
            }
        }
        Command::KeepaliveCheck { url, requests } => {
            let report = bizra_tools::keepalive::run(&url.get(), requests).await?;
            println!("{}", serde_json::to_string_pretty(&report)?);
            if !report.ok {
                bail!("connections were not reused");
            }
        }
        Command::DbPoolProbe(args) => {
            let report = bizra_tools::db_pool_probe::run(&args).await?;
            println!("{}", serde_json::to_string_pretty(&report)?);
        }
        Command::Testnet(args) => testnet(args).await?,
        Command::Version => println!(
            "node0 {} (attestations {}, default chain {})",
            env!("CARGO_PKG_VERSION"),
            bizra_ledger::attestation::VERSION,
            bizra_ledger::params::DEFAULT_CHAIN_ID
        ),
    }
    Ok(())
}

async fn testnet(args: testnet::TestnetArgs) -> anyhow::Result<()> {
    let nodes = testnet::prepare(&args)?;
    if args.no_run {
        for n in &nodes {
            println!(
                "node-{}  {}  validator {}  NODE0_DATA_DIR={}",
                n.index,
                n.url,
                n.validator_id,
                n.dir.display()
            );
        }
        return Ok(());
    }
    let exe = std::env::current_exe().context("cannot find the node0 executable")?;
    let mut children = testnet::start(&exe, &nodes)?;
    for n in &nodes {
        println!(
            "node-{}  {}  validator {}  log {}",
            n.index,
            n.url,
            n.validator_id,
            n.dir.join("node0.log").display()
        );
    }
    println!("{} nodes running; Ctrl-C stops them", nodes.len());
    bizra_node::shutdown_signal().await;
    tokio::task::spawn_blocking(move || {
        testnet::stop(&mut children, Duration::from_secs(10));
    })
    .await?;
    Ok(())
}

async fn attest(a: AttestArgs) -> anyhow::Result<()> {
    let client = Client::new(&a.url)?;
    let key = match &a.key {
        Some(p) => bizra_node::datadir::read_key(p)?,
        None => Keypair::generate(),
    };
    let (att, digest) = match &a.file {
        Some(path) => {
            let bytes =
                std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
            let mut att = bizra_ledger::attestation::Attestation::from_json(&bytes)
                .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
            let digest = bizra_ledger::attestation::builder::sign(&mut att, &key)?;
            (att, digest)
        }
        None => {
            let network = network_of(&client).await?;
            let pack_sha256 = match &a.pack_sha256 {
                Some(s) => Some(s.parse().map_err(|_| {
                    anyhow::anyhow!("--pack-sha256 must be 64 lowercase hex digits")
                })?),
                None => None,
            };
            AttestSpec {
                attester_id: a.attester_id.clone(),
                dimensions: a.dimension.iter().cloned().collect(),
                weights: a.weight.iter().cloned().collect(),
                pack_sha256,
                window_hours: a.window_hours,
                nonce: None,
                methodology_ref: None,
            }
            .sign(&network, &key)?
        }
    };
    if a.dry_run {
        println!("{}", serde_json::to_string_pretty(&att)?);
        return Ok(());
    }
    let answer = bizra_tools::attest::submit(&client, &att).await?;
    match answer.status {
        200 | 201 => {
            println!("{digest}");
            Ok(())
        }
        s => bail!("node answered {s}: {}", answer.body),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url_of(args: &[&str]) -> Result<String, clap::Error> {
        let cli = Cli::try_parse_from(args)?;
        Ok(match cli.command {
            Command::Smoke { url, .. } | Command::KeepaliveCheck { url, .. } => url.get(),
            _ => unreachable!("only smoke and keepalive-check are parsed here"),
        })
    }

    #[test]
    fn client_tools_take_the_url_either_way() {
        for tool in ["smoke", "keepalive-check"] {
            assert_eq!(url_of(&["node0", tool]).unwrap(), "http://127.0.0.1:8080");
            assert_eq!(
                url_of(&["node0", tool, "http://a:1"]).unwrap(),
                "http://a:1"
            );
            assert_eq!(
                url_of(&["node0", tool, "--url", "http://b:2"]).unwrap(),
                "http://b:2"
            );
            let both = url_of(&["node0", tool, "http://a:1", "--url", "http://b:2"]);
            assert_eq!(
                both.unwrap_err().kind(),
                clap::error::ErrorKind::ArgumentConflict
            );
        }
    }
}
