//! Node configuration: flags, then `NODE0_*` environment variables, then an optional TOML
//! file, then defaults (README, Configuration). One type, [`ConfigArgs`], is both the
//! flags (clap) and the file (serde), so a setting is declared once; each default is a
//! constant that [`ConfigArgs::resolve`] applies, and the README's table is held to them
//! by a test.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Args;
use serde::{Deserialize, Serialize};

use crate::limit::{
    Quota, RateLimitConfig, DEFAULT_ADMIN_QUOTA, DEFAULT_READ_QUOTA, DEFAULT_SUBMIT_QUOTA,
};

pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
pub const DEFAULT_DATA_DIR: &str = "./node0-data";
/// Name of the config file looked for in the data directory when none is given.
pub const CONFIG_FILE_NAME: &str = "node0.toml";
const DEFAULT_SLOT_MS: u64 = 2000;
/// Least time between two of a validator's blocks (docs/protocol.md §3.3).
const DEFAULT_MIN_HEIGHT_MS: u64 = 50;
const SLOT_MS_RANGE: std::ops::RangeInclusive<u64> = 10..=600_000;
const MAX_BLOCK_ATTESTATIONS_RANGE: std::ops::RangeInclusive<usize> = 1..=65_536;
const DEFAULT_REQUEST_TIMEOUT_MS: u64 = 10_000;
/// Past it, requests are answered 503 at once (`GET /health` is answered all the same).
const DEFAULT_MAX_CONCURRENT_REQUESTS: usize = 10_000;
/// How long a peer's breaker stays open (`docs/protocol.md` §3.4).
const DEFAULT_PEER_BREAKER_OPEN_MS: u64 = 30_000;
const DEFAULT_LOG: &str = "info";
/// Default wait for one Redis command: a loopback or same-rack round trip is well under
/// a millisecond, so anything this slow is an outage to route around.
const DEFAULT_REDIS_TIMEOUT_MS: u64 = 50;
const REDIS_TIMEOUT_MS_RANGE: std::ops::RangeInclusive<u64> = 1..=10_000;

/// Settings of `node0 serve` and `node0 init`: the flags and environment variables, and
/// the TOML file's keys (the same names in snake_case). Every field is optional so that
/// each source can leave out what another gives; [`ConfigArgs::resolve`] merges them and
/// applies the defaults.
#[derive(Debug, Clone, Default, PartialEq, Args, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ConfigArgs {
    /// Address to listen on.
    #[arg(long, env = "NODE0_LISTEN")]
    pub listen: Option<SocketAddr>,
    /// Data directory: key, genesis, embedded store.
    #[arg(long, env = "NODE0_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// TOML config file (default: node0.toml in the data directory, if present).
    #[arg(long, env = "NODE0_CONFIG")]
    #[serde(skip)]
    pub config: Option<PathBuf>,
    /// PostgreSQL URL; the embedded SQLite store is used when unset.
    #[arg(long, env = "NODE0_DATABASE_URL")]
    pub database_url: Option<String>,
    /// PostgreSQL schema for the tables (created if missing); default: the server's
    /// search path.
    #[arg(long, env = "NODE0_DATABASE_SCHEMA")]
    pub database_schema: Option<String>,
    /// PostgreSQL pool size (default 2 x cores + 4, at most 256).
    #[arg(long, env = "NODE0_DB_POOL_SIZE")]
    pub db_pool_size: Option<u32>,
    /// How long a request waits for a PostgreSQL connection, in milliseconds.
    #[arg(long, env = "NODE0_DB_ACQUIRE_TIMEOUT_MS")]
    pub db_acquire_timeout_ms: Option<u64>,
    /// Server-side limit on each PostgreSQL statement, in milliseconds.
    #[arg(long, env = "NODE0_DB_STATEMENT_TIMEOUT_MS")]
    pub db_statement_timeout_ms: Option<u64>,
    /// `true` behind PgBouncer in transaction pooling mode: no named prepared statements.
    #[arg(long, env = "NODE0_DB_PGBOUNCER")]
    pub db_pgbouncer: Option<bool>,
    /// Redis URL for the shared cache and rate limiter.
    #[arg(long, env = "NODE0_REDIS_URL")]
    pub redis_url: Option<String>,
    /// Comma-separated base URLs of peer nodes.
    #[arg(long, env = "NODE0_PEERS", value_delimiter = ',')]
    pub peers: Option<Vec<String>>,
    /// Per-call timeout of requests to peer validators, in milliseconds.
    #[arg(long, env = "NODE0_PEER_TIMEOUT_MS")]
    pub peer_timeout_ms: Option<u64>,
    /// How long a peer's circuit breaker stays open before it probes again, in
    /// milliseconds.
    #[arg(long, env = "NODE0_PEER_BREAKER_OPEN_MS")]
    pub peer_breaker_open_ms: Option<u64>,
    /// Genesis file to start a new data directory with.
    #[arg(long, env = "NODE0_GENESIS")]
    pub genesis: Option<PathBuf>,
    /// Slot length in milliseconds.
    #[arg(long, env = "NODE0_SLOT_MS")]
    pub slot_ms: Option<u64>,
    /// Longest wait for a leader's block before proposing above its height, in
    /// milliseconds (default: two slots).
    #[arg(long, env = "NODE0_LEADER_TIMEOUT_MS")]
    pub leader_timeout_ms: Option<u64>,
    /// Least time between two of this validator's blocks, in milliseconds.
    #[arg(long, env = "NODE0_MIN_HEIGHT_MS")]
    pub min_height_ms: Option<u64>,
    /// Largest number of attestations in one block.
    #[arg(long, env = "NODE0_MAX_BLOCK_ATTESTATIONS")]
    pub max_block_attestations: Option<usize>,
    /// Per-request timeout in milliseconds.
    #[arg(long, env = "NODE0_REQUEST_TIMEOUT_MS")]
    pub request_timeout_ms: Option<u64>,
    /// Requests handled at once; past it, 503 at once.
    #[arg(long, env = "NODE0_MAX_CONCURRENT_REQUESTS")]
    pub max_concurrent_requests: Option<usize>,
    /// Memory budget of the L1 response cache for finalized attestations and blocks, in
    /// stored (compressed) bytes.
    #[arg(long, env = "NODE0_CACHE_L1_BYTES")]
    pub cache_l1_bytes: Option<u64>,
    /// Log filter (`info`, `node0=debug,warn`, ...).
    #[arg(long, env = "NODE0_LOG")]
    pub log: Option<String>,
    /// Log format: `pretty` or `json`.
    #[arg(long, env = "NODE0_LOG_FORMAT")]
    pub log_format: Option<LogFormat>,
    /// Key prefix of everything this node keeps in Redis (default `node0:{chain_id}:`).
    #[arg(long, env = "NODE0_REDIS_PREFIX")]
    pub redis_prefix: Option<String>,
    /// Longest wait for one Redis command, in milliseconds; past it the node answers
    /// without Redis (L1 cache only, local rate limiter).
    #[arg(long, env = "NODE0_REDIS_TIMEOUT_MS")]
    pub redis_timeout_ms: Option<u64>,
    /// Rate limiting per client address: `on` or `off`.
    #[arg(long, env = "NODE0_RATE_LIMIT")]
    pub rate_limit: Option<Switch>,
    /// Sustained requests per second per client on read routes.
    #[arg(long, env = "NODE0_RATE_READ_PER_S")]
    pub rate_read_per_s: Option<f64>,
    /// Requests a client may send at once on read routes.
    #[arg(long, env = "NODE0_RATE_READ_BURST")]
    pub rate_read_burst: Option<u32>,
    /// Sustained requests per second per client on submit routes.
    #[arg(long, env = "NODE0_RATE_SUBMIT_PER_S")]
    pub rate_submit_per_s: Option<f64>,
    /// Requests a client may send at once on submit routes.
    #[arg(long, env = "NODE0_RATE_SUBMIT_BURST")]
    pub rate_submit_burst: Option<u32>,
    /// Sustained requests per second per client on admin routes (validator registry).
    #[arg(long, env = "NODE0_RATE_ADMIN_PER_S")]
    pub rate_admin_per_s: Option<f64>,
    /// Requests a client may send at once on admin routes.
    #[arg(long, env = "NODE0_RATE_ADMIN_BURST")]
    pub rate_admin_burst: Option<u32>,
    /// Comma-separated IPs or CIDRs of reverse proxies whose `X-Forwarded-For` is believed.
    #[arg(long, env = "NODE0_TRUSTED_PROXIES", value_delimiter = ',')]
    pub trusted_proxies: Option<Vec<String>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Switch {
    On,
    Off,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Pretty,
    Json,
}

/// The settings in force. The server reads them; the binary sees where the node keeps
/// its data, where it listens and how it logs.
#[derive(Debug, Clone)]
pub struct Config {
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    /// The PostgreSQL store, when configured; the embedded store otherwise.
    pub(crate) database: Option<bizra_store::PgConfig>,
    pub(crate) redis_url: Option<String>,
    pub(crate) peers: Vec<String>,
    /// Per-call timeout of peer requests (each of up to 3 attempts).
    pub(crate) peer_call_timeout: Duration,
    /// How long a peer's breaker stays open.
    pub(crate) peer_breaker_open: Duration,
    pub(crate) genesis: Option<PathBuf>,
    pub(crate) slot: Duration,
    pub(crate) leader_timeout: Duration,
    pub(crate) min_height: Duration,
    pub(crate) max_block_attestations: usize,
    pub(crate) request_timeout: Duration,
    pub(crate) max_concurrent_requests: usize,
    pub(crate) cache_l1_bytes: u64,
    pub log: String,
    pub log_format: LogFormat,
    /// `None`: the default, `node0:{chain_id}:`, chosen when the chain id is known.
    pub(crate) redis_prefix: Option<String>,
    pub(crate) redis_timeout: Duration,
    /// `None` when rate limiting is off.
    pub(crate) rate_limit: Option<RateLimitConfig>,
    pub(crate) trusted_proxies: Vec<ipnet::IpNet>,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path} is not valid: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("{0}")]
    Invalid(String),
}

impl ConfigArgs {
    /// Merges flags/environment with the TOML file and the defaults, and checks the
    /// result.
    pub fn resolve(&self) -> Result<Config, ConfigError> {
        let data_dir_hint = self
            .data_dir
            .clone()
            .unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR));
        let file = match &self.config {
            Some(path) => read_file_config(path)?,
            None => {
                let path = data_dir_hint.join(CONFIG_FILE_NAME);
                if path.exists() {
                    read_file_config(&path)?
                } else {
                    ConfigArgs::default()
                }
            }
        };
        let merged = self.over(file)?;
        merged.apply_defaults(data_dir_hint)
    }

    /// `self`'s settings where it has them, `file`'s elsewhere.
    fn over(&self, file: ConfigArgs) -> Result<ConfigArgs, ConfigError> {
        let invalid = |e: serde_json::Error| ConfigError::Invalid(format!("merging settings: {e}"));
        let mut merged = serde_json::to_value(file).map_err(invalid)?;
        if let (Some(into), serde_json::Value::Object(ours)) = (
            merged.as_object_mut(),
            serde_json::to_value(self).map_err(invalid)?,
        ) {
            for (key, value) in ours {
                if !value.is_null() {
                    into.insert(key, value);
                }
            }
        }
        serde_json::from_value(merged).map_err(invalid)
    }

    /// The settings in force: each one given, or its default.
    fn apply_defaults(self, data_dir_hint: PathBuf) -> Result<Config, ConfigError> {
        let listen = match self.listen {
            Some(a) => a,
            None => DEFAULT_LISTEN
                .parse()
                .map_err(|_| ConfigError::Invalid("bad default listen address".into()))?,
        };
        let slot_ms = self.slot_ms.unwrap_or(DEFAULT_SLOT_MS);
        if !SLOT_MS_RANGE.contains(&slot_ms) {
            return Err(ConfigError::Invalid(format!(
                "slot_ms {slot_ms} must be between {} and {}",
                SLOT_MS_RANGE.start(),
                SLOT_MS_RANGE.end()
            )));
        }
        let max_block_attestations = self
            .max_block_attestations
            .unwrap_or(bizra_ledger::params::MAX_BLOCK_ATTESTATIONS);
        if !MAX_BLOCK_ATTESTATIONS_RANGE.contains(&max_block_attestations) {
            return Err(ConfigError::Invalid(format!(
                "max_block_attestations {max_block_attestations} must be between {} and {}",
                MAX_BLOCK_ATTESTATIONS_RANGE.start(),
                MAX_BLOCK_ATTESTATIONS_RANGE.end()
            )));
        }
        let request_timeout_ms = self
            .request_timeout_ms
            .unwrap_or(DEFAULT_REQUEST_TIMEOUT_MS);
        let peers: Vec<String> = self
            .peers
            .clone()
            .unwrap_or_default()
            .into_iter()
            .map(|p| p.trim().trim_end_matches('/').to_string())
            .filter(|p| !p.is_empty())
            .collect();
        let database = match self.database_url.clone() {
            None => None,
            Some(url) => {
                let mut pg = bizra_store::PgConfig::new(url);
                pg.schema = self.database_schema.clone();
                if let Some(size) = self.db_pool_size {
                    if !(1..=bizra_store::postgres::MAX_POOL_SIZE).contains(&size) {
                        return Err(ConfigError::Invalid(format!(
                            "db_pool_size {size} must be between 1 and {}",
                            bizra_store::postgres::MAX_POOL_SIZE
                        )));
                    }
                    pg.max_connections = size;
                }
                if let Some(ms) = self.db_acquire_timeout_ms {
                    pg.acquire_timeout = Duration::from_millis(ms.max(1));
                }
                if let Some(ms) = self.db_statement_timeout_ms {
                    pg.statement_timeout = Duration::from_millis(ms.max(1));
                }
                pg.pgbouncer = self.db_pgbouncer.unwrap_or(false);
                Some(pg)
            }
        };
        let quota = |class: &str, rate: Option<f64>, burst: Option<u32>, default: Quota| {
            let q = Quota {
                per_second: rate.unwrap_or(default.per_second),
                burst: burst.unwrap_or(default.burst),
            };
            if !(q.per_second.is_finite() && q.per_second > 0.0 && q.per_second <= 1e6) {
                return Err(ConfigError::Invalid(format!(
                    "rate_{class}_per_s {} must be above 0 and at most 1000000",
                    q.per_second
                )));
            }
            if !(1..=1_000_000).contains(&q.burst) {
                return Err(ConfigError::Invalid(format!(
                    "rate_{class}_burst {} must be between 1 and 1000000",
                    q.burst
                )));
            }
            Ok(q)
        };
        let rate_limit = match self.rate_limit.unwrap_or(Switch::On) {
            Switch::Off => None,
            Switch::On => Some(RateLimitConfig {
                read: quota(
                    "read",
                    self.rate_read_per_s,
                    self.rate_read_burst,
                    DEFAULT_READ_QUOTA,
                )?,
                submit: quota(
                    "submit",
                    self.rate_submit_per_s,
                    self.rate_submit_burst,
                    DEFAULT_SUBMIT_QUOTA,
                )?,
                admin: quota(
                    "admin",
                    self.rate_admin_per_s,
                    self.rate_admin_burst,
                    DEFAULT_ADMIN_QUOTA,
                )?,
            }),
        };
        let trusted_proxies = self
            .trusted_proxies
            .clone()
            .unwrap_or_default()
            .iter()
            .map(|s| s.trim())
            .filter(|s| !s.is_empty())
            .map(parse_net)
            .collect::<Result<Vec<_>, _>>()?;
        let redis_timeout_ms = self.redis_timeout_ms.unwrap_or(DEFAULT_REDIS_TIMEOUT_MS);
        if !REDIS_TIMEOUT_MS_RANGE.contains(&redis_timeout_ms) {
            return Err(ConfigError::Invalid(format!(
                "redis_timeout_ms {redis_timeout_ms} must be between {} and {}",
                REDIS_TIMEOUT_MS_RANGE.start(),
                REDIS_TIMEOUT_MS_RANGE.end()
            )));
        }
        let redis_url = self.redis_url.clone().filter(|u| !u.trim().is_empty());
        if let Some(url) = &redis_url {
            // Checked here so that a typo stops the node at start, not at first use.
            redis::Client::open(url.as_str())
                .map_err(|e| ConfigError::Invalid(format!("redis_url: {e}")))?;
        }
        Ok(Config {
            listen,
            data_dir: self.data_dir.clone().unwrap_or(data_dir_hint),
            database,
            redis_url,
            peers,
            peer_call_timeout: Duration::from_millis(
                self.peer_timeout_ms
                    .unwrap_or(crate::peers::retry::DEFAULT_CALL_TIMEOUT.as_millis() as u64)
                    .max(1),
            ),
            peer_breaker_open: Duration::from_millis(
                self.peer_breaker_open_ms
                    .unwrap_or(DEFAULT_PEER_BREAKER_OPEN_MS)
                    .max(1),
            ),
            genesis: self.genesis.clone(),
            slot: Duration::from_millis(slot_ms),
            leader_timeout: Duration::from_millis(
                self.leader_timeout_ms.unwrap_or(2 * slot_ms).max(1),
            ),
            min_height: Duration::from_millis(
                self.min_height_ms.unwrap_or(DEFAULT_MIN_HEIGHT_MS).max(1),
            ),
            max_block_attestations,
            request_timeout: Duration::from_millis(request_timeout_ms.max(1)),
            cache_l1_bytes: self
                .cache_l1_bytes
                .unwrap_or(crate::cache::DEFAULT_BUDGET_BYTES),
            max_concurrent_requests: self
                .max_concurrent_requests
                .unwrap_or(DEFAULT_MAX_CONCURRENT_REQUESTS)
                .max(1),
            log: self.log.clone().unwrap_or_else(|| DEFAULT_LOG.into()),
            log_format: self.log_format.unwrap_or(LogFormat::Pretty),
            redis_prefix: self.redis_prefix.clone(),
            redis_timeout: Duration::from_millis(redis_timeout_ms),
            rate_limit,
            trusted_proxies,
        })
    }
}

/// An address (`10.0.0.1`, `::1`) or a network (`10.0.0.0/8`).
fn parse_net(s: &str) -> Result<ipnet::IpNet, ConfigError> {
    s.parse::<ipnet::IpNet>()
        .or_else(|_| s.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
        .map_err(|_| {
            ConfigError::Invalid(format!(
                "trusted_proxies: {s:?} is neither an IP address nor a CIDR network"
            ))
        })
}

fn read_file_config(path: &Path) -> Result<ConfigArgs, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    toml::from_str(&text).map_err(|e| ConfigError::Parse {
        path: path.to_path_buf(),
        message: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults() {
        let dir = tempfile::tempdir().unwrap();
        let c = ConfigArgs {
            data_dir: Some(dir.path().into()),
            ..Default::default()
        }
        .resolve()
        .unwrap();
        assert_eq!(c.listen.to_string(), DEFAULT_LISTEN);
        assert_eq!(c.slot, Duration::from_millis(2000));
        assert!(c.peers.is_empty());
    }

    #[test]
    fn flags_beat_file_beats_default() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join(CONFIG_FILE_NAME),
            "slot_ms = 500\nlisten = \"127.0.0.1:9000\"\npeers = [\"http://a:1/\"]\n",
        )
        .unwrap();
        let args = ConfigArgs {
            data_dir: Some(dir.path().into()),
            slot_ms: Some(250),
            ..Default::default()
        };
        let c = args.resolve().unwrap();
        assert_eq!(c.slot, Duration::from_millis(250));
        assert_eq!(c.listen.to_string(), "127.0.0.1:9000");
        assert_eq!(c.peers, vec!["http://a:1".to_string()]);
    }

    #[test]
    fn unknown_keys_and_bad_values_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(CONFIG_FILE_NAME), "slot = 5\n").unwrap();
        let args = ConfigArgs {
            data_dir: Some(dir.path().into()),
            ..Default::default()
        };
        assert!(matches!(args.resolve(), Err(ConfigError::Parse { .. })));
        let args = ConfigArgs {
            slot_ms: Some(1),
            ..Default::default()
        };
        assert!(matches!(args.resolve(), Err(ConfigError::Invalid(_))));
    }

    #[test]
    fn a_database_url_selects_postgres_with_the_spec_pool() {
        let dir = tempfile::tempdir().unwrap();
        let args = ConfigArgs {
            data_dir: Some(dir.path().into()),
            database_url: Some("postgres://u@h/db".into()),
            db_pgbouncer: Some(true),
            ..Default::default()
        };
        let pg = args.resolve().unwrap().database.unwrap();
        assert!(pg.pgbouncer);
        assert_eq!(pg.statement_timeout, Duration::from_millis(7500));
        assert_eq!(pg.acquire_timeout, Duration::from_secs(30));
        let args = ConfigArgs {
            database_url: Some("postgres://u@h/db".into()),
            db_pool_size: Some(257),
            ..args
        };
        assert!(matches!(args.resolve(), Err(ConfigError::Invalid(_))));
    }

    #[test]
    fn rate_limits_redis_and_proxies() {
        let dir = tempfile::tempdir().unwrap();
        let base = ConfigArgs {
            data_dir: Some(dir.path().into()),
            ..Default::default()
        };
        let c = base.resolve().unwrap();
        let rl = c.rate_limit.expect("on by default");
        assert_eq!(rl.read, DEFAULT_READ_QUOTA);
        assert_eq!(rl.admin, DEFAULT_ADMIN_QUOTA);
        assert_eq!(c.redis_timeout, Duration::from_millis(50));
        assert!(c.trusted_proxies.is_empty() && c.redis_prefix.is_none());

        std::fs::write(
            dir.path().join(CONFIG_FILE_NAME),
            "rate_limit = \"on\"\nrate_read_per_s = 5.0\nrate_read_burst = 7\n\
             trusted_proxies = [\"10.0.0.0/8\", \"::1\"]\nredis_prefix = \"x:\"\n",
        )
        .unwrap();
        let c = ConfigArgs {
            rate_read_burst: Some(9),
            ..base.clone()
        }
        .resolve()
        .unwrap();
        let rl = c.rate_limit.unwrap();
        assert_eq!(rl.read.per_second, 5.0);
        assert_eq!(rl.read.burst, 9, "the flag beats the file");
        assert_eq!(rl.submit, DEFAULT_SUBMIT_QUOTA);
        assert_eq!(c.trusted_proxies.len(), 2);
        assert_eq!(c.trusted_proxies[1].to_string(), "::1/128");
        assert_eq!(c.redis_prefix.as_deref(), Some("x:"));

        let off = ConfigArgs {
            rate_limit: Some(Switch::Off),
            ..base.clone()
        };
        assert!(off.resolve().unwrap().rate_limit.is_none());
        for bad in [
            ConfigArgs {
                rate_submit_per_s: Some(0.0),
                ..base.clone()
            },
            ConfigArgs {
                rate_admin_burst: Some(0),
                ..base.clone()
            },
            ConfigArgs {
                trusted_proxies: Some(vec!["proxy.example".into()]),
                ..base.clone()
            },
            ConfigArgs {
                redis_timeout_ms: Some(0),
                ..base.clone()
            },
        ] {
            assert!(
                matches!(bad.resolve(), Err(ConfigError::Invalid(_))),
                "{bad:?}"
            );
        }
    }

    /// The default of the setting behind `--flag`, as the README's table states it, from
    /// the settings in force when nothing is given; `None` where the node leaves it unset
    /// or computes it.
    fn default_of(flag: &str, c: &Config, pg: &bizra_store::PgConfig) -> Option<String> {
        let rl = c
            .rate_limit
            .as_ref()
            .expect("rate limiting is on by default");
        let ms = |d: Duration| d.as_millis().to_string();
        Some(match flag {
            "listen" => c.listen.to_string(),
            "data-dir" => c.data_dir.display().to_string(),
            "slot-ms" => ms(c.slot),
            "min-height-ms" => ms(c.min_height),
            "max-block-attestations" => c.max_block_attestations.to_string(),
            "request-timeout-ms" => ms(c.request_timeout),
            "max-concurrent-requests" => c.max_concurrent_requests.to_string(),
            "cache-l1-bytes" => c.cache_l1_bytes.to_string(),
            "log" => c.log.clone(),
            "log-format" => format!("{:?}", c.log_format).to_lowercase(),
            "redis-timeout-ms" => ms(c.redis_timeout),
            "rate-limit" => "on".into(),
            "rate-read-per-s" => rl.read.per_second.to_string(),
            "rate-read-burst" => rl.read.burst.to_string(),
            "rate-submit-per-s" => rl.submit.per_second.to_string(),
            "rate-submit-burst" => rl.submit.burst.to_string(),
            "rate-admin-per-s" => rl.admin.per_second.to_string(),
            "rate-admin-burst" => rl.admin.burst.to_string(),
            "db-acquire-timeout-ms" => ms(pg.acquire_timeout),
            "db-statement-timeout-ms" => ms(pg.statement_timeout),
            "db-pgbouncer" => pg.pgbouncer.to_string(),
            "peer-timeout-ms" => ms(c.peer_call_timeout),
            "peer-breaker-open-ms" => ms(c.peer_breaker_open),
            "config" | "genesis" | "leader-timeout-ms" | "redis-url" | "redis-prefix"
            | "trusted-proxies" | "database-url" | "database-schema" | "db-pool-size" | "peers" => {
                return None
            }
            other => panic!("the test does not know --{other}: add it to default_of"),
        })
    }

    #[test]
    fn the_readme_table_is_the_settings_with_their_defaults() {
        use clap::Args as _;
        let readme = include_str!("../../../README.md");
        // `| `--flag` | `NODE0_X` | default |`
        let rows: Vec<(String, String, String)> = readme
            .lines()
            .filter(|l| l.starts_with("| `--"))
            .map(|l| {
                let cells: Vec<&str> = l.trim_matches('|').split('|').map(str::trim).collect();
                assert_eq!(cells.len(), 3, "a row of three cells: {l}");
                let unquote = |c: &str| c.trim_matches('`').to_owned();
                (
                    unquote(cells[0]).trim_start_matches("--").to_owned(),
                    unquote(cells[1]),
                    cells[2].to_owned(),
                )
            })
            .collect();
        assert!(!rows.is_empty(), "the README has no configuration table");

        let defaults = ConfigArgs::default();
        let c = defaults.resolve().unwrap();
        let pg = ConfigArgs {
            database_url: Some("postgres://u@h/db".into()),
            ..defaults
        }
        .resolve()
        .unwrap()
        .database
        .unwrap();

        let cmd = ConfigArgs::augment_args(clap::Command::new("node0"));
        let mut flags = Vec::new();
        for arg in cmd.get_arguments() {
            let Some(long) = arg.get_long() else { continue };
            flags.push(long.to_owned());
            let env = arg
                .get_env()
                .and_then(|e| e.to_str())
                .unwrap_or_else(|| panic!("--{long} has no environment variable"));
            let row = rows
                .iter()
                .find(|(flag, _, _)| flag == long)
                .unwrap_or_else(|| panic!("--{long} is missing from the README's table"));
            assert_eq!(row.1, env, "--{long}: the README names another variable");
            match default_of(long, &c, &pg) {
                Some(want) => assert!(
                    row.2.starts_with(&format!("`{want}`")),
                    "--{long}: the default is `{want}`, the README says {:?}",
                    row.2
                ),
                None => assert!(
                    !row.2.starts_with('`'),
                    "--{long} has no fixed default, the README states one: {:?}",
                    row.2
                ),
            }
        }
        for (flag, _, _) in &rows {
            assert!(
                flags.contains(flag),
                "the README names --{flag}, which does not exist"
            );
        }
    }
}
