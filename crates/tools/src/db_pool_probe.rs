//! `node0 db-pool-probe`: saturates the PostgreSQL store's connection pool and reports
//! what waiting for a connection costs.
//!
//! It opens a real [`PostgresStore`] with the pool size and acquire timeout asked for and
//! drives `--concurrency` tasks (default 4 × the pool) of real store operations against
//! it, so most of them wait for a connection. Every acquire is timed by the store itself
//! ([`PgConfig::on_acquire`], the same hook behind the node's `db_pool_acquire_seconds`)
//! and recorded into an HDR histogram; a separate task samples [`Store::pool_stats`] every
//! few milliseconds for the connections in use. One JSON document comes out.
//!
//! # Where it runs
//! - Default: a schema of its own (`node0_probe_<unix time>_<random>`), created with the
//!   store's tables, seeded with a few pre-signed attestations, and dropped afterwards. It
//!   never sees a node's tables. (A probe killed mid-run leaves its schema behind; the
//!   name says what it is.)
//! - `--schema S`: an existing node's schema, **read-only**: it must exist and be at this
//!   build's schema version (so opening the store migrates nothing), and only `ping`,
//!   `read` and `--hold-ms` are allowed; `write` and `mixed` are refused, because the
//!   probe's attestations would end up in that node's blocks.
//!
//! # What each operation is
//! - `ping`: [`Store::ping`] (`SELECT 1`);
//! - `read`: [`Store::get_attestation`] of a stored attestation (the seeded ones, or the
//!   newest 1000 of `--schema`), a primary-key read of the full record;
//! - `write`: [`Store::insert_attestations`] of `--write-batch` pre-signed attestations
//!   (one transaction with the commit-order lock, as group commit does);
//! - `mixed`: of every 10 operations, 6 reads, 1 [`Store::count_attestations`], 1 ping
//!   and 2 writes;
//! - `--hold-ms H` replaces the operation by [`PostgresStore::hold_connection`]: a pooled
//!   connection kept H ms in a read-only transaction (`pg_sleep`), to saturate the pool on
//!   purpose (with a short `--acquire-timeout-ms` it produces acquire timeouts).

use std::cell::Cell;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bizra_ledger::params::NetworkAnchor;
use bizra_ledger::Hash32;
use bizra_store::postgres::{
    default_pool_size, valid_schema_name, MAX_POOL_SIZE, PG_SCHEMA_VERSION,
};
use bizra_store::{
    InsertOutcome, NewAttestation, PgConfig, PostgresStore, Store, StoreError, MAX_PAGE_LIMIT,
};
use hdrhistogram::Histogram;
use serde::Serialize;
use sqlx::{Connection, PgConnection};

use crate::latency::{histogram, micros, round3, HistogramError, Percentiles};
use crate::presign::PresignError;

/// Prefix of the schemas the probe creates for itself.
pub const SCHEMA_PREFIX: &str = "node0_probe_";
/// Attestations stored in the probe's own schema before the run, for reads to find.
const SEED: usize = 256;
/// Pre-signed attestations per second of a timed run that writes (more than a small box
/// writes); when they run out, writes go on with the same ones again (reported as
/// `already_stored`).
const PRESIGN_PER_S: usize = 8_000;
const PRESIGN_CAP: usize = 1_000_000;
/// Error messages kept in the report, the first distinct ones.
const ERROR_SAMPLES: usize = 5;
/// The statement timeout the probe's store uses (the store's default).
const STATEMENT_TIMEOUT: Duration = Duration::from_millis(7500);

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ProbeOp {
    /// Store::ping (SELECT 1 on a pooled connection).
    Ping,
    /// Store::get_attestation of stored attestations (a primary-key read).
    Read,
    /// Store::insert_attestations of --write-batch pre-signed attestations (own schema only).
    Write,
    /// Of every 10 operations: 6 reads, 1 count_attestations, 1 ping, 2 writes (own schema only).
    Mixed,
}

#[derive(Debug, Clone, clap::Args)]
pub struct ProbeArgs {
    /// PostgreSQL URL (`postgres://user@host:port/db`), required; never printed.
    #[arg(long, env = "NODE0_DATABASE_URL")]
    pub database_url: String,
    /// Probe this existing node schema, read-only (ping, read or --hold-ms only); default a
    /// throw-away schema of the probe's own, dropped at the end.
    #[arg(long)]
    pub schema: Option<String>,
    /// Connections in the store's pool, 1 to 256; default the store's (2 × cores + 4).
    #[arg(long)]
    pub pool_size: Option<u32>,
    /// Operations running at once, 1 to 100000; default 4 × the pool size.
    #[arg(long)]
    pub concurrency: Option<u32>,
    /// Run length in seconds, 1 to 86400: no operation starts after it.
    #[arg(long, default_value_t = 10)]
    pub duration_s: u64,
    /// Run this many operations instead of for `--duration-s`; default none.
    #[arg(long, conflicts_with = "duration_s")]
    pub operations: Option<u64>,
    /// How long an operation may wait for a pooled connection before it fails, ms (the
    /// store's default).
    #[arg(long, default_value_t = 30_000)]
    pub acquire_timeout_ms: u64,
    /// The store operation to drive (the values are described under `--help`).
    #[arg(long, value_enum, default_value_t = ProbeOp::Read)]
    pub op: ProbeOp,
    /// Instead of `--op`, hold each pooled connection this many ms (1 to 7499) in a
    /// read-only transaction, to saturate the pool on purpose; default none.
    #[arg(long, conflicts_with = "op")]
    pub hold_ms: Option<u64>,
    /// Attestations per `write` operation (and per write of `mixed`), 1 to 1000.
    #[arg(long, default_value_t = 8)]
    pub write_batch: u32,
    /// How often the pool is sampled for connections in use, ms, 1 to 1000.
    #[arg(long, default_value_t = 2)]
    pub sample_ms: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error("{0}")]
    Args(String),
    #[error("cannot connect to the database: {0}")]
    Connect(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("preparing the run: {0}")]
    Prepare(String),
    #[error(transparent)]
    Presign(#[from] PresignError),
    #[error(transparent)]
    Histogram(#[from] HistogramError),
    #[error("a probe task failed: {0}")]
    Task(String),
}

// ---------------------------------------------------------------------------------------
// The report

#[derive(Debug, Clone, Serialize)]
pub struct ProbeConfig {
    pub pool_size: u32,
    pub concurrency: u32,
    /// `ping`, `read`, `write`, `mixed` or `hold`.
    pub op: String,
    pub hold_ms: Option<u64>,
    pub write_batch: Option<u32>,
    pub duration_s: Option<u64>,
    pub operations: Option<u64>,
    pub acquire_timeout_ms: u64,
    pub statement_timeout_ms: u64,
    pub sample_ms: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct SchemaInfo {
    pub name: String,
    /// True for the probe's own throw-away schema.
    pub owned: bool,
    /// Whether the own schema was dropped at the end (always false for `--schema`).
    pub dropped: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct OpCounts {
    pub ping: u64,
    pub get_attestation: u64,
    pub count_attestations: u64,
    pub insert_attestations: u64,
    pub hold: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Operations {
    /// Operations that finished (successfully or not).
    pub attempted: u64,
    /// Operations that succeeded.
    pub completed: u64,
    pub failed: u64,
    /// Successful operations by store call.
    pub by_call: OpCounts,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Errors {
    /// `acquire_timeout + statement_timeout`.
    pub timeout: u64,
    /// No connection within `--acquire-timeout-ms` (the pool was saturated).
    pub acquire_timeout: u64,
    /// The server cancelled a statement after the statement timeout.
    pub statement_timeout: u64,
    /// Any other "store unavailable" (connection refused or lost, server errors).
    pub unavailable: u64,
    /// Anything else (conflicts, corrupt rows, invalid input).
    pub other: u64,
    /// The first distinct error messages.
    pub samples: Vec<String>,
}

impl Errors {
    pub fn total(&self) -> u64 {
        self.timeout + self.unavailable + self.other
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct PoolReport {
    pub max_size: u32,
    /// Most connections in use at one sample.
    pub peak_in_use: u32,
    /// Most connections open at one sample.
    pub peak_size: u32,
    pub mean_in_use: f64,
    /// Share of samples with every connection of the pool in use.
    pub saturated_fraction: f64,
    pub samples: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Reads {
    pub hits: u64,
    /// Reads of an id that was not found (only with an empty `--schema`).
    pub misses: u64,
    /// How many distinct stored ids the reads cycle through.
    pub ids: usize,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Writes {
    pub batches: u64,
    pub inserted: u64,
    /// Pre-signed attestations written again once they ran out (idempotent writes).
    pub already_stored: u64,
    pub duplicate_nonce: u64,
    pub presigned: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub probe: &'static str,
    pub config: ProbeConfig,
    /// In words: what the operations were.
    pub driven: String,
    pub schema: SchemaInfo,
    pub elapsed_s: f64,
    pub operations: Operations,
    pub errors: Errors,
    /// Every connection acquire of the run, including the ones that timed out (see
    /// [`crate::latency`] for the names).
    pub acquire_wait_ms: Percentiles,
    /// Successful operations, end to end (acquire wait included).
    pub op_latency_ms: Percentiles,
    pub pool: PoolReport,
    /// Successful operations per second.
    pub throughput_ops_s: f64,
    pub reads: Option<Reads>,
    pub writes: Option<Writes>,
}

// ---------------------------------------------------------------------------------------
// Errors by kind

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    AcquireTimeout,
    StatementTimeout,
    Unavailable,
    Other,
}

/// An operation's failure by kind. `acquire_waited` is how long its last connection
/// acquire waited (from the store's own timing): an `Unavailable` after a wait as long as
/// the acquire timeout is the pool's timeout.
pub fn classify(
    e: &StoreError,
    acquire_waited: Option<Duration>,
    acquire_timeout: Duration,
) -> ErrorKind {
    match e {
        StoreError::Unavailable(_) if acquire_waited.is_some_and(|w| w >= acquire_timeout) => {
            ErrorKind::AcquireTimeout
        }
        StoreError::Unavailable(m) if m.contains("statement timeout") => {
            ErrorKind::StatementTimeout
        }
        StoreError::Unavailable(_) => ErrorKind::Unavailable,
        _ => ErrorKind::Other,
    }
}

impl Errors {
    fn add(&mut self, kind: ErrorKind, e: &StoreError) {
        match kind {
            ErrorKind::AcquireTimeout => {
                self.acquire_timeout += 1;
                self.timeout += 1;
            }
            ErrorKind::StatementTimeout => {
                self.statement_timeout += 1;
                self.timeout += 1;
            }
            ErrorKind::Unavailable => self.unavailable += 1,
            ErrorKind::Other => self.other += 1,
        }
        let msg = e.to_string();
        if self.samples.len() < ERROR_SAMPLES && !self.samples.contains(&msg) {
            self.samples.push(msg);
        }
    }

    fn merge(&mut self, o: Errors) {
        self.timeout += o.timeout;
        self.acquire_timeout += o.acquire_timeout;
        self.statement_timeout += o.statement_timeout;
        self.unavailable += o.unavailable;
        self.other += o.other;
        for m in o.samples {
            if self.samples.len() < ERROR_SAMPLES && !self.samples.contains(&m) {
                self.samples.push(m);
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// The run

tokio::task_local! {
    /// The wait of the current operation's last connection acquire, set by the store's
    /// acquire hook while the operation runs in this task.
    static LAST_WAIT: Cell<Option<Duration>>;
}

/// What one operation does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Call {
    Ping,
    Get,
    Count,
    Insert,
    Hold(Duration),
}

impl Call {
    /// The `i`-th operation of a run of `op`.
    fn nth(op: ProbeOp, hold: Option<Duration>, i: u64) -> Call {
        if let Some(h) = hold {
            return Call::Hold(h);
        }
        match op {
            ProbeOp::Ping => Call::Ping,
            ProbeOp::Read => Call::Get,
            ProbeOp::Write => Call::Insert,
            ProbeOp::Mixed => match i % 10 {
                0..=5 => Call::Get,
                6 => Call::Count,
                7 => Call::Ping,
                _ => Call::Insert,
            },
        }
    }
}

enum Outcome {
    Done,
    Read {
        hit: bool,
    },
    Wrote {
        inserted: u64,
        already: u64,
        dup: u64,
    },
}

struct Plan {
    store: PostgresStore,
    op: ProbeOp,
    hold: Option<Duration>,
    acquire_timeout: Duration,
    /// Ends the run: a deadline or a number of operations.
    deadline: Option<Instant>,
    operations: Option<u64>,
    next: AtomicU64,
    read_ids: Vec<Hash32>,
    presigned: Vec<NewAttestation>,
    write_batch: usize,
    write_cursor: AtomicUsize,
}

impl Plan {
    fn next_op(&self) -> Option<u64> {
        match (self.operations, self.deadline) {
            (Some(n), _) => {
                let i = self.next.fetch_add(1, Ordering::Relaxed);
                (i < n).then_some(i)
            }
            (None, Some(end)) => {
                (Instant::now() < end).then(|| self.next.fetch_add(1, Ordering::Relaxed))
            }
            (None, None) => None,
        }
    }

    async fn run_one(&self, call: Call, i: u64) -> Result<Outcome, StoreError> {
        match call {
            Call::Ping => self.store.ping().await.map(|()| Outcome::Done),
            Call::Count => self.store.count_attestations().await.map(|_| Outcome::Done),
            Call::Hold(h) => self.store.hold_connection(h).await.map(|()| Outcome::Done),
            Call::Get => {
                let digest = match self.read_ids.len() {
                    0 => Hash32::digest(&i.to_le_bytes()),
                    n => self.read_ids[(i % n as u64) as usize],
                };
                let found = self.store.get_attestation(&digest).await?;
                Ok(Outcome::Read {
                    hit: found.is_some(),
                })
            }
            Call::Insert => {
                let n = self.presigned.len();
                if n == 0 {
                    return Err(StoreError::Invalid("no pre-signed attestations".into()));
                }
                let start = self
                    .write_cursor
                    .fetch_add(self.write_batch, Ordering::Relaxed);
                let batch: Vec<NewAttestation> = (0..self.write_batch.min(n))
                    .map(|k| self.presigned[(start + k) % n].clone())
                    .collect();
                let outcomes = self.store.insert_attestations(&batch).await?;
                let (mut inserted, mut already, mut dup) = (0, 0, 0);
                for o in outcomes {
                    match o {
                        InsertOutcome::Inserted { .. } => inserted += 1,
                        InsertOutcome::AlreadyStored { .. } => already += 1,
                        InsertOutcome::DuplicateNonce { .. } => dup += 1,
                    }
                }
                Ok(Outcome::Wrote {
                    inserted,
                    already,
                    dup,
                })
            }
        }
    }
}

/// One worker's tally, merged at the end.
struct Tally {
    latency: Histogram<u64>,
    ops: Operations,
    errors: Errors,
    reads: Reads,
    writes: Writes,
}

async fn worker(plan: Arc<Plan>) -> Result<Tally, ProbeError> {
    let mut t = Tally {
        latency: histogram()?,
        ops: Operations::default(),
        errors: Errors::default(),
        reads: Reads::default(),
        writes: Writes::default(),
    };
    while let Some(i) = plan.next_op() {
        let call = Call::nth(plan.op, plan.hold, i);
        LAST_WAIT.with(|c| c.set(None));
        let started = Instant::now();
        let result = plan.run_one(call, i).await;
        let took = started.elapsed();
        t.ops.attempted += 1;
        match result {
            Ok(outcome) => {
                t.ops.completed += 1;
                t.latency.saturating_record(micros(took));
                let c = &mut t.ops.by_call;
                match call {
                    Call::Ping => c.ping += 1,
                    Call::Get => c.get_attestation += 1,
                    Call::Count => c.count_attestations += 1,
                    Call::Insert => c.insert_attestations += 1,
                    Call::Hold(_) => c.hold += 1,
                }
                match outcome {
                    Outcome::Done => {}
                    Outcome::Read { hit: true } => t.reads.hits += 1,
                    Outcome::Read { hit: false } => t.reads.misses += 1,
                    Outcome::Wrote {
                        inserted,
                        already,
                        dup,
                    } => {
                        t.writes.batches += 1;
                        t.writes.inserted += inserted;
                        t.writes.already_stored += already;
                        t.writes.duplicate_nonce += dup;
                    }
                }
            }
            Err(e) => {
                t.ops.failed += 1;
                let waited = LAST_WAIT.with(|c| c.get());
                t.errors.add(classify(&e, waited, plan.acquire_timeout), &e);
            }
        }
    }
    Ok(t)
}

/// Samples the pool until `stop` is set; fixed-size state however long it runs.
async fn sample_pool(store: PostgresStore, every: Duration, stop: Arc<AtomicBool>) -> PoolReport {
    let mut r = PoolReport::default();
    let mut sum: u64 = 0;
    let mut saturated: u64 = 0;
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    while !stop.load(Ordering::Relaxed) {
        tick.tick().await;
        let s = store.pool_stats();
        r.max_size = s.max_size;
        r.peak_in_use = r.peak_in_use.max(s.in_use);
        r.peak_size = r.peak_size.max(s.size);
        r.samples += 1;
        sum += u64::from(s.in_use);
        if s.in_use >= s.max_size {
            saturated += 1;
        }
    }
    if r.samples > 0 {
        r.mean_in_use = round3(sum as f64 / r.samples as f64);
        r.saturated_fraction = round3(saturated as f64 / r.samples as f64);
    }
    r
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// `count` signed attestations ([`crate::presign`]) ready for the store.
pub fn presign(count: usize) -> Result<Vec<NewAttestation>, ProbeError> {
    let received = now_ms();
    crate::presign::presign(
        &NetworkAnchor::default(),
        "node0-db-pool-probe",
        count,
        |att, digest| Ok::<_, ProbeError>(NewAttestation::new(&att, digest, received)?),
    )
}

/// Checked arguments.
struct Settings {
    pool_size: u32,
    concurrency: u32,
    acquire_timeout: Duration,
    hold: Option<Duration>,
    write_batch: usize,
    sample_every: Duration,
}

fn settings(a: &ProbeArgs) -> Result<Settings, ProbeError> {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get() as u32);
    let pool_size = a.pool_size.unwrap_or_else(|| default_pool_size(cores));
    if !(1..=MAX_POOL_SIZE).contains(&pool_size) {
        return Err(ProbeError::Args(format!(
            "--pool-size must be between 1 and {MAX_POOL_SIZE}"
        )));
    }
    let concurrency = a.concurrency.unwrap_or(4 * pool_size);
    if !(1..=100_000).contains(&concurrency) {
        return Err(ProbeError::Args(
            "--concurrency must be between 1 and 100000".into(),
        ));
    }
    if a.operations.is_none() && !(1..=86_400).contains(&a.duration_s) {
        return Err(ProbeError::Args(
            "--duration-s must be between 1 and 86400".into(),
        ));
    }
    if a.operations == Some(0) {
        return Err(ProbeError::Args("--operations must be at least 1".into()));
    }
    if a.acquire_timeout_ms == 0 {
        return Err(ProbeError::Args(
            "--acquire-timeout-ms must be at least 1".into(),
        ));
    }
    let hold = a.hold_ms.map(Duration::from_millis);
    if hold.is_some_and(|h| h.is_zero() || h >= STATEMENT_TIMEOUT) {
        return Err(ProbeError::Args(format!(
            "--hold-ms must be between 1 and {} (the statement timeout)",
            STATEMENT_TIMEOUT.as_millis() - 1
        )));
    }
    if !(1..=MAX_PAGE_LIMIT).contains(&a.write_batch) {
        return Err(ProbeError::Args(format!(
            "--write-batch must be between 1 and {MAX_PAGE_LIMIT}"
        )));
    }
    if !(1..=1000).contains(&a.sample_ms) {
        return Err(ProbeError::Args(
            "--sample-ms must be between 1 and 1000".into(),
        ));
    }
    if let Some(s) = &a.schema {
        if !valid_schema_name(s) {
            return Err(ProbeError::Args(format!(
                "--schema {s:?}: lower-case letters, digits and _ (at most 63)"
            )));
        }
        if hold.is_none() && matches!(a.op, ProbeOp::Write | ProbeOp::Mixed) {
            return Err(ProbeError::Args(
                "--schema is probed read-only: use --op ping or read (or --hold-ms); \
                 write and mixed run only in the probe's own schema"
                    .into(),
            ));
        }
    }
    Ok(Settings {
        pool_size,
        concurrency,
        acquire_timeout: Duration::from_millis(a.acquire_timeout_ms),
        hold,
        write_batch: a.write_batch as usize,
        sample_every: Duration::from_millis(a.sample_ms),
    })
}

fn own_schema_name() -> Result<String, ProbeError> {
    let mut random = [0u8; 6];
    getrandom::fill(&mut random).map_err(|e| ProbeError::Prepare(format!("randomness: {e}")))?;
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    Ok(format!("{SCHEMA_PREFIX}{secs}_{}", hex::encode(random)))
}

/// An existing node schema may be probed only when opening the store on it changes
/// nothing: it exists and is at this build's schema version.
async fn check_foreign_schema(conn: &mut PgConnection, schema: &str) -> Result<(), ProbeError> {
    let exists: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)")
            .bind(schema)
            .fetch_one(&mut *conn)
            .await
            .map_err(StoreError::from)?;
    if !exists {
        return Err(ProbeError::Args(format!(
            "schema {schema} does not exist (the probe creates no tables in a schema it does not own)"
        )));
    }
    let version: Option<i64> = sqlx::query_scalar(&format!(
        "SELECT max(version) FROM \"{schema}\".schema_version"
    ))
    .fetch_one(&mut *conn)
    .await
    .map_err(|e| {
        ProbeError::Args(format!(
            "schema {schema} holds no node tables ({})",
            StoreError::from(e)
        ))
    })?;
    if version != Some(PG_SCHEMA_VERSION) {
        return Err(ProbeError::Args(format!(
            "schema {schema} is at version {version:?}, this build at {PG_SCHEMA_VERSION}: \
             opening it would migrate it, so the probe refuses"
        )));
    }
    Ok(())
}

async fn drop_schema(url: &str, schema: &str) -> bool {
    let Ok(mut conn) = PgConnection::connect(url).await else {
        return false;
    };
    let dropped = sqlx::query(&format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE"))
        .execute(&mut conn)
        .await
        .is_ok();
    let _ = conn.close().await;
    dropped
}

/// Runs the probe. `Err` when it could not connect at all or the arguments are wrong;
/// failed operations are counted in the report, not returned.
pub async fn run(args: &ProbeArgs) -> Result<Report, ProbeError> {
    let s = settings(args)?;
    let mut conn = PgConnection::connect(&args.database_url)
        .await
        .map_err(|e| ProbeError::Connect(StoreError::from(e).to_string()))?;
    let owned = args.schema.is_none();
    let schema = match &args.schema {
        Some(name) => {
            let checked = check_foreign_schema(&mut conn, name).await;
            let _ = conn.close().await;
            checked?;
            name.clone()
        }
        None => {
            let _ = conn.close().await;
            own_schema_name()?
        }
    };
    let result = probe(args, &s, &schema, owned).await;
    let dropped = owned && drop_schema(&args.database_url, &schema).await;
    let mut report = result?;
    report.schema.dropped = dropped;
    Ok(report)
}

async fn probe(
    args: &ProbeArgs,
    s: &Settings,
    schema: &str,
    owned: bool,
) -> Result<Report, ProbeError> {
    let recording = Arc::new(AtomicBool::new(false));
    let waits = Arc::new(Mutex::new(histogram()?));
    let observer = {
        let (recording, waits) = (recording.clone(), waits.clone());
        Arc::new(move |d: Duration| {
            let _ = LAST_WAIT.try_with(|c| c.set(Some(d)));
            if recording.load(Ordering::Relaxed) {
                if let Ok(mut h) = waits.lock() {
                    h.saturating_record(micros(d));
                }
            }
        })
    };
    let mut config = PgConfig::new(args.database_url.clone());
    config.max_connections = s.pool_size;
    config.acquire_timeout = s.acquire_timeout;
    config.statement_timeout = STATEMENT_TIMEOUT;
    config.schema = Some(schema.to_string());
    config.on_acquire = Some(observer);
    let store = PostgresStore::open(config).await?;

    let writes = s.hold.is_none() && matches!(args.op, ProbeOp::Write | ProbeOp::Mixed);
    let reads = s.hold.is_none() && matches!(args.op, ProbeOp::Read | ProbeOp::Mixed);
    let (read_ids, presigned) = if owned {
        let to_sign = if !writes {
            0
        } else if let Some(n) = args.operations {
            // Every operation a write at most: enough that none repeats.
            usize::try_from(n.saturating_mul(u64::from(args.write_batch)))
                .unwrap_or(PRESIGN_CAP)
                .min(PRESIGN_CAP)
        } else {
            usize::try_from(args.duration_s)
                .unwrap_or(usize::MAX)
                .saturating_mul(PRESIGN_PER_S)
                .min(PRESIGN_CAP)
        };
        let signed = tokio::task::spawn_blocking(move || presign(SEED + to_sign))
            .await
            .map_err(|e| ProbeError::Task(e.to_string()))??;
        let (seed, rest) = signed.split_at(SEED.min(signed.len()));
        for chunk in seed.chunks(128) {
            store.insert_attestations(chunk).await?;
        }
        (seed.iter().map(|a| a.digest).collect(), rest.to_vec())
    } else if reads {
        let page = store.list_attestations(None, None, MAX_PAGE_LIMIT).await?;
        (page.items.iter().map(|r| r.digest).collect(), Vec::new())
    } else {
        (Vec::new(), Vec::new())
    };
    let read_id_count = read_ids.len();
    let presigned_count = presigned.len();

    let started = Instant::now();
    let plan = Arc::new(Plan {
        store: store.clone(),
        op: args.op,
        hold: s.hold,
        acquire_timeout: s.acquire_timeout,
        deadline: args
            .operations
            .is_none()
            .then(|| started + Duration::from_secs(args.duration_s)),
        operations: args.operations,
        next: AtomicU64::new(0),
        read_ids,
        presigned,
        write_batch: s.write_batch,
        write_cursor: AtomicUsize::new(0),
    });
    let stop = Arc::new(AtomicBool::new(false));
    let sampler = tokio::spawn(sample_pool(store.clone(), s.sample_every, stop.clone()));
    recording.store(true, Ordering::Relaxed);
    let workers: Vec<_> = (0..s.concurrency)
        .map(|_| tokio::spawn(LAST_WAIT.scope(Cell::new(None), worker(plan.clone()))))
        .collect();
    let mut latency = histogram()?;
    let mut ops = Operations::default();
    let mut errors = Errors::default();
    let mut read_tally = Reads::default();
    let mut write_tally = Writes::default();
    let mut first_failure = None;
    for w in workers {
        match w.await {
            Ok(Ok(t)) => {
                latency.add(&t.latency).map_err(HistogramError::from)?;
                ops.attempted += t.ops.attempted;
                ops.completed += t.ops.completed;
                ops.failed += t.ops.failed;
                let (a, b) = (&mut ops.by_call, t.ops.by_call);
                a.ping += b.ping;
                a.get_attestation += b.get_attestation;
                a.count_attestations += b.count_attestations;
                a.insert_attestations += b.insert_attestations;
                a.hold += b.hold;
                errors.merge(t.errors);
                read_tally.hits += t.reads.hits;
                read_tally.misses += t.reads.misses;
                write_tally.batches += t.writes.batches;
                write_tally.inserted += t.writes.inserted;
                write_tally.already_stored += t.writes.already_stored;
                write_tally.duplicate_nonce += t.writes.duplicate_nonce;
            }
            Ok(Err(e)) => first_failure = first_failure.or(Some(e)),
            Err(e) => first_failure = first_failure.or(Some(ProbeError::Task(e.to_string()))),
        }
    }
    let elapsed = started.elapsed();
    recording.store(false, Ordering::Relaxed);
    stop.store(true, Ordering::Relaxed);
    let pool = sampler.await.map_err(|e| ProbeError::Task(e.to_string()))?;
    store.close().await;
    if let Some(e) = first_failure {
        return Err(e);
    }
    let acquire_wait = match waits.lock() {
        Ok(h) => Percentiles::of(&h),
        Err(_) => {
            return Err(ProbeError::Task(
                "the acquire histogram was poisoned".into(),
            ))
        }
    };
    read_tally.ids = read_id_count;
    write_tally.presigned = presigned_count;

    let op_name = match (s.hold, args.op) {
        (Some(_), _) => "hold",
        (None, ProbeOp::Ping) => "ping",
        (None, ProbeOp::Read) => "read",
        (None, ProbeOp::Write) => "write",
        (None, ProbeOp::Mixed) => "mixed",
    };
    Ok(Report {
        probe: "db-pool-probe",
        config: ProbeConfig {
            pool_size: s.pool_size,
            concurrency: s.concurrency,
            op: op_name.into(),
            hold_ms: args.hold_ms,
            write_batch: writes.then_some(args.write_batch),
            duration_s: args.operations.is_none().then_some(args.duration_s),
            operations: args.operations,
            acquire_timeout_ms: args.acquire_timeout_ms,
            statement_timeout_ms: STATEMENT_TIMEOUT.as_millis() as u64,
            sample_ms: args.sample_ms,
        },
        driven: driven(args.op, s.hold, args.write_batch),
        schema: SchemaInfo {
            name: schema.to_string(),
            owned,
            dropped: false,
        },
        elapsed_s: round3(elapsed.as_secs_f64()),
        throughput_ops_s: round3(ops.completed as f64 / elapsed.as_secs_f64().max(1e-9)),
        operations: ops,
        errors,
        acquire_wait_ms: acquire_wait,
        op_latency_ms: Percentiles::of(&latency),
        pool,
        reads: reads.then_some(read_tally),
        writes: writes.then_some(write_tally),
    })
}

/// What the operations were, in words, for the report.
pub fn driven(op: ProbeOp, hold: Option<Duration>, write_batch: u32) -> String {
    if let Some(h) = hold {
        return format!(
            "PostgresStore::hold_connection: a pooled connection held {} ms in a read-only \
             transaction (SELECT pg_sleep), through the store's own pool and acquire timing",
            h.as_millis()
        );
    }
    match op {
        ProbeOp::Ping => "Store::ping (SELECT 1 on a pooled connection)".into(),
        ProbeOp::Read => "Store::get_attestation of stored attestations (primary-key read)".into(),
        ProbeOp::Write => format!(
            "Store::insert_attestations of {write_batch} pre-signed attestations per operation \
             (one transaction each)"
        ),
        ProbeOp::Mixed => format!(
            "of every 10 operations: 6 Store::get_attestation, 1 Store::count_attestations, \
             1 Store::ping, 2 Store::insert_attestations of {write_batch} pre-signed attestations"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_are_classified_by_kind() {
        let t = Duration::from_millis(100);
        let unavailable = StoreError::Unavailable("pool timed out".into());
        assert_eq!(
            classify(&unavailable, Some(Duration::from_millis(101)), t),
            ErrorKind::AcquireTimeout
        );
        assert_eq!(
            classify(&unavailable, Some(Duration::from_millis(3)), t),
            ErrorKind::Unavailable
        );
        assert_eq!(classify(&unavailable, None, t), ErrorKind::Unavailable);
        let cancelled =
            StoreError::Unavailable("canceling statement due to statement timeout".into());
        assert_eq!(
            classify(&cancelled, Some(Duration::ZERO), t),
            ErrorKind::StatementTimeout
        );
        let conflict = StoreError::Conflict("x".into());
        assert_eq!(classify(&conflict, Some(t * 2), t), ErrorKind::Other);

        let mut e = Errors::default();
        for _ in 0..7 {
            e.add(ErrorKind::AcquireTimeout, &unavailable);
        }
        e.add(ErrorKind::StatementTimeout, &cancelled);
        e.add(ErrorKind::Other, &conflict);
        assert_eq!(
            (e.timeout, e.acquire_timeout, e.statement_timeout),
            (8, 7, 1)
        );
        assert_eq!((e.unavailable, e.other, e.total()), (0, 1, 9));
        assert_eq!(e.samples.len(), 3, "distinct messages once each");
    }

    #[test]
    fn mixed_runs_six_reads_a_count_a_ping_and_two_writes_in_ten() {
        let calls: Vec<Call> = (0..10)
            .map(|i| Call::nth(ProbeOp::Mixed, None, i))
            .collect();
        let n = |c: Call| calls.iter().filter(|&&x| x == c).count();
        assert_eq!(
            (n(Call::Get), n(Call::Count), n(Call::Ping), n(Call::Insert)),
            (6, 1, 1, 2)
        );
        let h = Duration::from_millis(5);
        assert_eq!(Call::nth(ProbeOp::Write, Some(h), 3), Call::Hold(h));
    }

    #[test]
    fn the_report_has_the_documented_shape() {
        let report = Report {
            probe: "db-pool-probe",
            config: ProbeConfig {
                pool_size: 2,
                concurrency: 8,
                op: "read".into(),
                hold_ms: None,
                write_batch: None,
                duration_s: Some(2),
                operations: None,
                acquire_timeout_ms: 30_000,
                statement_timeout_ms: 7500,
                sample_ms: 2,
            },
            driven: driven(ProbeOp::Read, None, 8),
            schema: SchemaInfo {
                name: "node0_probe_1_ab".into(),
                owned: true,
                dropped: true,
            },
            elapsed_s: 2.0,
            operations: Operations {
                attempted: 10,
                completed: 10,
                ..Operations::default()
            },
            errors: Errors::default(),
            acquire_wait_ms: Percentiles {
                count: 3,
                max: 3.0,
                ..Percentiles::default()
            },
            op_latency_ms: Percentiles::default(),
            pool: PoolReport {
                max_size: 2,
                peak_in_use: 2,
                ..PoolReport::default()
            },
            throughput_ops_s: 5.0,
            reads: Some(Reads::default()),
            writes: None,
        };
        let v = serde_json::to_value(&report).expect("json");
        for key in [
            "probe",
            "config",
            "driven",
            "schema",
            "elapsed_s",
            "operations",
            "errors",
            "acquire_wait_ms",
            "op_latency_ms",
            "pool",
            "throughput_ops_s",
        ] {
            assert!(v.get(key).is_some(), "missing {key}");
        }
        for key in ["count", "min", "mean", "p50", "p95", "p99", "p999", "max"] {
            assert!(
                v["acquire_wait_ms"][key].is_number(),
                "acquire_wait_ms.{key}"
            );
        }
        assert_eq!(v["acquire_wait_ms"]["count"], 3);
        assert_eq!(v["acquire_wait_ms"]["max"], 3.0);
        for key in [
            "timeout",
            "acquire_timeout",
            "statement_timeout",
            "unavailable",
            "other",
        ] {
            assert_eq!(v["errors"][key], 0, "errors.{key}");
        }
        assert_eq!(v["pool"]["peak_in_use"], 2);
        assert_eq!(v["config"]["op"], "read");
        assert_eq!(v["operations"]["completed"], 10);
        assert!(v["writes"].is_null());
    }

    #[derive(clap::Parser)]
    struct Cli {
        #[command(flatten)]
        args: ProbeArgs,
    }

    #[test]
    fn every_option_has_a_help_with_the_ranges_settings_checks() {
        use clap::CommandFactory;
        let mut cmd = Cli::command();
        for arg in cmd.get_arguments() {
            assert!(arg.get_help().is_some(), "--{} has no help", arg.get_id());
        }
        let help = cmd.render_long_help().to_string();
        for range in [
            format!("1 to {MAX_POOL_SIZE}"),
            format!("1 to {MAX_PAGE_LIMIT}"),
            format!("1 to {}", STATEMENT_TIMEOUT.as_millis() - 1),
        ] {
            assert!(help.contains(&range), "the help lacks {range:?}:\n{help}");
        }
    }

    #[test]
    fn arguments_are_checked_before_connecting() {
        let base = ProbeArgs {
            database_url: "postgres://nobody@127.0.0.1:1/x".into(),
            schema: None,
            pool_size: Some(2),
            concurrency: None,
            duration_s: 1,
            operations: None,
            acquire_timeout_ms: 1000,
            op: ProbeOp::Read,
            hold_ms: None,
            write_batch: 8,
            sample_ms: 2,
        };
        let s = settings(&base).expect("valid");
        assert_eq!((s.pool_size, s.concurrency), (2, 8));
        let bad = [
            ProbeArgs {
                pool_size: Some(0),
                ..base.clone()
            },
            ProbeArgs {
                pool_size: Some(MAX_POOL_SIZE + 1),
                ..base.clone()
            },
            ProbeArgs {
                hold_ms: Some(7500),
                ..base.clone()
            },
            ProbeArgs {
                schema: Some("node0".into()),
                op: ProbeOp::Mixed,
                ..base.clone()
            },
            ProbeArgs {
                schema: Some("Bad-Name".into()),
                ..base.clone()
            },
        ];
        for a in bad {
            assert!(matches!(settings(&a), Err(ProbeError::Args(_))), "{a:?}");
        }
    }
}
