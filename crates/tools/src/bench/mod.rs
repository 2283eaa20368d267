//! `node0 bench`: the load generator and the quality gates of `bench/gates.toml`.
//!
//! - open model (`--mode open --rate R`): constant arrival rate, latency from each
//!   request's intended send time ([`open_loop`]);
//! - closed loop (`--mode closed -c C`): C connections back to back, for maximum
//!   throughput ([`closed_loop`]);
//! - scenarios and their prepared requests ([`scenario`], [`prepare`]);
//! - worker threads ([`engine`]), recording ([`record`]), the progress line
//!   ([`progress`]), the report ([`report`]) and gates ([`gates`]).

pub mod closed_loop;
pub mod conn;
pub mod durable;
pub mod engine;
pub mod finality;
pub mod gates;
pub mod open_loop;
pub mod prepare;
pub mod progress;
pub mod record;
pub mod report;
pub mod scenario;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use http::{HeaderName, HeaderValue, Uri};
use time::format_description::well_known::Rfc3339;

use crate::attest::{network_of, AttestError};
use crate::client::{Client, ClientError};
use crate::latency::HistogramError;
use crate::presign::PresignError;
use conn::Target;
use engine::{Load, Plan};
use gates::{GatesError, GatesFile};
use open_loop::Schedule;
use report::{Report, RunInfo};
pub use scenario::Scenario;
use scenario::{Kind, Workload};

/// Exit code of a run whose gates failed (1 is any other error).
pub const EXIT_GATE_FAILED: i32 = 2;
/// Pre-signed attestations per second of a closed-loop run when `--presign` is absent:
/// above the strict gate (10k/s) with room, bounded by [`PRESIGN_CAP`].
const PRESIGN_PER_S: usize = 30_000;
const PRESIGN_CAP: usize = 600_000;

#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error("{url}: {why}")]
    Url { url: String, why: String },
    #[error("cannot connect to {addr}: {why}")]
    Unreachable { addr: SocketAddr, why: String },
    #[error("{0}")]
    Args(String),
    #[error(transparent)]
    Client(#[from] ClientError),
    #[error(transparent)]
    Attest(#[from] AttestError),
    #[error("preparing the run: {0}")]
    Prepare(String),
    #[error(transparent)]
    Gates(#[from] GatesError),
    #[error(transparent)]
    Histogram(#[from] HistogramError),
    #[error(transparent)]
    Presign(#[from] PresignError),
    #[error("starting a worker: {0}")]
    Runtime(std::io::Error),
    #[error("a worker thread panicked")]
    WorkerPanicked,
    #[error("internal: {0}")]
    Internal(&'static str),
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Constant arrival rate (`--rate`), latency from the intended send time.
    Open,
    /// `--connections` connections sending back to back: maximum throughput.
    Closed,
}

/// `node0 bench` arguments. Each option's help says what it does and its default; clap
/// adds `[default: ...]` where the default is a fixed value.
#[derive(Debug, Clone, clap::Args)]
pub struct BenchArgs {
    /// Base URL of the node to load.
    #[arg(
        long,
        default_value = "http://127.0.0.1:8080",
        conflicts_with = "against"
    )]
    pub url: String,
    /// Load any HTTP server instead of a node: GETs of this URL's path (or `--path`) with
    /// the `health` scenario, to compare with wrk or oha on the same target; default none.
    #[arg(long)]
    pub against: Option<String>,
    /// The requests to send (the values are described under `--help`).
    #[arg(long, value_enum, default_value_t = Scenario::Health)]
    pub scenario: Scenario,
    /// Load model; default `open` when `--rate` is given, else `closed`.
    #[arg(long, value_enum)]
    pub mode: Option<Mode>,
    /// Open loop: the arrival rate, requests per second; no default (giving it selects the
    /// open loop).
    #[arg(long, short = 'r')]
    pub rate: Option<f64>,
    /// Connections: the closed loop's concurrency; opened beforehand in the open loop
    /// (which opens more on demand, up to `--max-inflight`).
    #[arg(long, short = 'c', default_value_t = 64)]
    pub connections: usize,
    /// How long to offer load: `10s`, `500ms`, `2m` or seconds.
    #[arg(long, short = 'd', default_value = "10s", value_parser = parse_duration)]
    pub duration: Duration,
    /// Generator threads, each with its own single-threaded runtime and share of the
    /// connections. 1 leaves the other core to a node on the same 2-core machine.
    #[arg(long, short = 't', default_value_t = 1)]
    pub threads: usize,
    /// Open loop: in-flight requests at most; requests over it wait, their latency still
    /// counted from their intended time.
    #[arg(long, default_value_t = 4096)]
    pub max_inflight: usize,
    /// Timeout of each request (and of each connect); a request without an answer by then
    /// counts as a `timeout` failure.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub timeout: Duration,
    /// The path the `health` scenario GETs; default /health, or with `--against` the
    /// URL's path when it has one.
    #[arg(long)]
    pub path: Option<String>,
    /// A header for every request, `Name: value` (repeatable; default none), e.g.
    /// `-H 'Accept-Encoding: zstd'` to be served the node's compressed cache entries.
    #[arg(long = "header", short = 'H', value_parser = parse_header)]
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// Write the JSON report to this file; default none (the summary on stdout only).
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// The gates file (TOML); when this default file is missing, no gates are checked.
    #[arg(long, default_value = DEFAULT_GATES_FILE)]
    pub gates_file: PathBuf,
    /// Gate set to check on top of `floor`: `floor`, `strict`, another set of the file, or
    /// `none`.
    #[arg(long, default_value = gates::FLOOR)]
    pub gates: String,
    /// attestation-get / mixed: how many ids to read (seeded through the batch route when
    /// the node has fewer).
    #[arg(long, default_value_t = 1000)]
    pub ids: usize,
    /// attestation-list / mixed: how many list pages (50 items each) to walk.
    #[arg(long, default_value_t = 20)]
    pub pages: usize,
    /// Closed loop with submits: how many attestations to pre-sign; default 30,000 per
    /// second of duration (times the submit share of `mixed`), at most 600,000. The open
    /// loop pre-signs exactly what it sends.
    #[arg(long)]
    pub presign: Option<usize>,
    /// After the run, read back every attestation answered 201 and report how many read
    /// back (the `require_durable` gate needs it); default off.
    #[arg(long)]
    pub verify_durable: bool,
    /// After the run, wait until every acknowledged attestation is finalized and report
    /// submit-to-finalized latency (from each submit's intended send time to its block's
    /// finalized_at_ms; the node's clock and this machine's must agree, as on one box);
    /// attestation-submit only, default off.
    #[arg(long)]
    pub finality: bool,
    /// No progress line on stderr (the summary is still printed); default off.
    #[arg(long, short = 'q')]
    pub quiet: bool,
}

pub const DEFAULT_GATES_FILE: &str = "bench/gates.toml";

/// Parses `Name: value`.
pub fn parse_header(s: &str) -> Result<(HeaderName, HeaderValue), String> {
    let (name, value) = s
        .split_once(':')
        .ok_or_else(|| format!("{s:?} is not Name: value"))?;
    let name = HeaderName::from_bytes(name.trim().as_bytes())
        .map_err(|_| format!("{:?} is not a header name", name.trim()))?;
    let value = HeaderValue::from_str(value.trim())
        .map_err(|_| format!("{:?} is not a header value", value.trim()))?;
    Ok((name, value))
}

/// Parses `10s`, `250ms`, `2m`, `1.5` (seconds).
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (num, unit) = match s.find(|c: char| c.is_ascii_alphabetic()) {
        Some(i) => s.split_at(i),
        None => (s, "s"),
    };
    let v: f64 = num
        .trim()
        .parse()
        .map_err(|_| format!("{s:?} is not a duration (e.g. 10s, 500ms, 2m)"))?;
    let secs = match unit {
        "ms" => v / 1000.0,
        "s" => v,
        "m" => v * 60.0,
        "h" => v * 3600.0,
        _ => return Err(format!("{s:?}: unit must be ms, s, m or h")),
    };
    Duration::try_from_secs_f64(secs).map_err(|_| format!("{s:?} is not a duration"))
}

/// Runs `node0 bench` and returns the process exit code: 0, 1 on error, 2 when a gate
/// failed.
pub async fn main(args: BenchArgs) -> i32 {
    match run(args).await {
        Ok(r) if r.gates_passed => 0,
        Ok(_) => EXIT_GATE_FAILED,
        Err(e) => {
            eprintln!("bench: {e}");
            1
        }
    }
}

/// Runs the benchmark: prepare, run, read back, report, gates.
pub async fn run(args: BenchArgs) -> Result<Report, BenchError> {
    let open = match (args.mode, args.rate) {
        (Some(Mode::Closed), Some(_)) => {
            return Err(BenchError::Args(
                "--rate applies to --mode open only".into(),
            ))
        }
        (Some(Mode::Open), None) => {
            return Err(BenchError::Args("--mode open needs --rate".into()))
        }
        (Some(m), _) => m == Mode::Open,
        (None, rate) => rate.is_some(),
    };
    if let Some(r) = args.rate {
        if !(r.is_finite() && r > 0.0) {
            return Err(BenchError::Args("--rate must be > 0".into()));
        }
    }
    if args.duration.is_zero() || args.connections == 0 || args.threads == 0 {
        return Err(BenchError::Args(
            "--duration, --connections and --threads must be > 0".into(),
        ));
    }
    if args.against.is_some() && args.scenario != Scenario::Health {
        return Err(BenchError::Args(
            "--against runs the health scenario (a GET of one path) only".into(),
        ));
    }
    if (args.verify_durable || args.finality) && args.against.is_some() {
        return Err(BenchError::Args(
            "--verify-durable and --finality need a node, not --against".into(),
        ));
    }
    if args.finality && args.scenario != Scenario::AttestationSubmit {
        return Err(BenchError::Args(
            "--finality measures the attestation-submit scenario".into(),
        ));
    }
    // Read the gates first: a typo should not cost a whole run.
    let gates = load_gates(&args.gates_file, &args.gates)?;

    let url = args.against.as_deref().unwrap_or(&args.url);
    let target = Target::resolve(url).await?;
    conn::probe(target.addr, args.timeout).await?;
    let health_path = match (&args.path, &args.against) {
        (Some(p), _) => p.clone(),
        (None, Some(_)) if target.path != "/" => target.path.clone(),
        _ => "/health".to_string(),
    };
    // A closed loop cannot use more threads than connections.
    let threads = if open {
        args.threads
    } else {
        args.threads.min(args.connections)
    };
    let schedule = args.rate.map(|r| Schedule::new(r, args.duration));

    let client = Client::new(&target.base)?;
    let mut work = Workload {
        authority: Some(target.authority.clone()),
        schedule: args.scenario.schedule(),
        headers: args.headers.clone(),
        ..Default::default()
    };
    let submit_slices = prepare_workload(
        &args,
        &client,
        &mut work,
        &health_path,
        threads,
        schedule.filter(|_| open),
    )
    .await?;
    let work = Arc::new(work);

    let load = match schedule {
        Some(schedule) if open => Load::Open {
            schedule,
            max_inflight: args.max_inflight.max(threads),
        },
        _ => Load::Closed {
            duration: args.duration,
        },
    };
    let display_target = if args.scenario == Scenario::Health {
        format!("{}{}", target.base, health_path)
    } else {
        target.base.clone()
    };
    eprintln!(
        "bench: {} {} against {display_target} for {:.1} s",
        args.scenario.name(),
        match load {
            Load::Open { schedule, .. } => format!("open loop at {} req/s", schedule.rate),
            Load::Closed { .. } => format!("closed loop with {} connections", args.connections),
        },
        args.duration.as_secs_f64()
    );
    let started_at = time::OffsetDateTime::now_utc()
        .format(&Rfc3339)
        .unwrap_or_default();
    let plan = Plan {
        load,
        addr: target.addr,
        connections: args.connections,
        threads,
        timeout: args.timeout,
        work: work.clone(),
        submit_slices,
        progress: !args.quiet,
    };
    let outcome = tokio::task::spawn_blocking(move || engine::run(plan))
        .await
        .map_err(|_| BenchError::WorkerPanicked)??;

    let info = RunInfo {
        scenario: args.scenario.name().into(),
        mode: if open { Mode::Open } else { Mode::Closed },
        target: display_target,
        rate: args.rate.filter(|_| open),
        connections: args.connections,
        max_inflight: open.then_some(args.max_inflight),
        threads,
        duration_s: args.duration.as_secs_f64(),
        started_at,
    };
    let mut report = Report::new(info, &outcome.tally, outcome.elapsed.as_secs_f64());
    if args.finality {
        let sent: Vec<(String, Instant)> = outcome
            .tally
            .acked
            .iter()
            .filter_map(|(i, at)| work.submit_ids.get(*i as usize).map(|id| (id.clone(), *at)))
            .collect();
        eprintln!(
            "bench: waiting for {} acknowledged attestations to be finalized",
            sent.len()
        );
        report.finality = Some(finality::measure(&client, sent).await?);
    }
    if args.verify_durable {
        let ids: Vec<String> = outcome
            .tally
            .acked
            .iter()
            .filter_map(|(i, _)| work.submit_ids.get(*i as usize).cloned())
            .collect();
        eprintln!(
            "bench: reading back {} acknowledged attestations",
            ids.len()
        );
        report.durable = Some(durable::check(&client, ids).await);
    }
    let results = gates::evaluate(&gates, &report.measured());
    report.set_gates(results);
    print!("{}", report.summary());
    if let Some(path) = &args.json {
        report.write_json(path)?;
    }
    Ok(report)
}

fn load_gates(path: &Path, set: &str) -> Result<Vec<(String, gates::Gate)>, BenchError> {
    if set == "none" {
        return Ok(Vec::new());
    }
    if !path.exists() && path == Path::new(DEFAULT_GATES_FILE) {
        eprintln!("bench: no {DEFAULT_GATES_FILE} here; no gates checked");
        return Ok(Vec::new());
    }
    Ok(GatesFile::read(path)?.select(set)?)
}

/// Fills `work` for the scenario; returns each worker's slice of the pre-signed submits.
async fn prepare_workload(
    args: &BenchArgs,
    client: &Client,
    work: &mut Workload,
    health_path: &str,
    threads: usize,
    open: Option<Schedule>,
) -> Result<Vec<(usize, usize)>, BenchError> {
    let uri = |p: &str| {
        p.parse::<Uri>()
            .map_err(|_| BenchError::Args(format!("{p:?} is not a valid path")))
    };
    if !health_path.starts_with('/') {
        return Err(BenchError::Args("--path must start with /".into()));
    }
    let kinds = work.schedule.clone();
    let uses = |k: Kind| kinds.contains(&k);
    work.health = Some(uri(health_path)?);
    work.tipset = Some(uri("/api/consensus/tipset")?);
    if args.scenario == Scenario::Health {
        return Ok(Vec::new());
    }
    let network = network_of(client).await?;
    if uses(Kind::AttestationGet) || uses(Kind::AttestationList) {
        let need = if uses(Kind::AttestationList) {
            args.ids.max(args.pages * prepare::LIST_PAGE as usize)
        } else {
            args.ids
        };
        let ids = prepare::attestation_ids(client, &network, need.max(1)).await?;
        work.get = ids
            .iter()
            .map(|id| uri(&format!("/api/validator/attestation/{id}")))
            .collect::<Result<_, _>>()?;
        if uses(Kind::AttestationList) {
            work.list = prepare::list_pages(client, args.pages)
                .await?
                .iter()
                .map(|p| uri(p))
                .collect::<Result<_, _>>()?;
        }
    }
    if uses(Kind::Verify) {
        work.verify = Some(prepare::verify_body(client, &network).await?);
    }
    let mut slices = Vec::new();
    if uses(Kind::AttestationSubmit) {
        // Open loop: exactly what each worker's share of the schedule submits. Closed
        // loop: a generous supply split evenly; a worker stops when its share runs out.
        let per_worker: Vec<usize> = match open {
            Some(s) => (0..threads)
                .map(|k| {
                    s.demand(k, threads, Kind::AttestationSubmit, |i| work.kind_of(i)) as usize
                })
                .collect(),
            None => {
                // Scaled by the submit share of the mix (1 in 20 for `mixed`).
                let share = kinds
                    .iter()
                    .filter(|k| **k == Kind::AttestationSubmit)
                    .count() as f64
                    / kinds.len().max(1) as f64;
                let per_s = PRESIGN_PER_S as f64 * share;
                let total = match args.presign {
                    Some(n) => n,
                    None => {
                        ((per_s * args.duration.as_secs_f64()).ceil() as usize).min(PRESIGN_CAP)
                    }
                };
                (0..threads)
                    .map(|k| engine::split(total, threads, k))
                    .collect()
            }
        };
        let total: usize = per_worker.iter().sum();
        let signed = prepare::presign_async(&network, total).await?;
        work.submit = signed.bodies;
        work.submit_ids = signed.ids;
        let mut at = 0;
        for n in per_worker {
            slices.push((at, at + n));
            at += n;
        }
    }
    Ok(slices)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(clap::Parser)]
    struct Cli {
        #[command(flatten)]
        args: BenchArgs,
    }

    #[test]
    fn every_option_has_a_help() {
        use clap::CommandFactory;
        for arg in Cli::command().get_arguments() {
            assert!(arg.get_help().is_some(), "--{} has no help", arg.get_id());
        }
    }

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1.5"), Ok(Duration::from_millis(1500)));
        assert!(parse_duration("ten").is_err());
        assert!(parse_duration("5d").is_err());
        assert!(parse_duration("-1s").is_err());
    }

    #[test]
    fn headers_parse() {
        let (n, v) = parse_header("Accept-Encoding: zstd, br").unwrap();
        assert_eq!(n, http::header::ACCEPT_ENCODING);
        assert_eq!(v, "zstd, br");
        assert!(parse_header("no colon").is_err());
        assert!(parse_header("bad name: x").is_err());
    }

    #[test]
    fn the_shipped_gates_file_parses() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../bench/gates.toml");
        let f = GatesFile::read(&path).unwrap();
        assert!(!f.select("floor").unwrap().is_empty());
        assert!(f.select("strict").unwrap().len() > f.select("floor").unwrap().len());
    }
}
