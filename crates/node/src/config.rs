//! Node configuration: flags, then `NODE0_*` environment variables, then an optional TOML
//! file, then defaults (SPEC §6.1).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Args;
use serde::Deserialize;

pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
pub const DEFAULT_DATA_DIR: &str = "./node0-data";
/// Name of the config file looked for in the data directory when none is given.
pub const CONFIG_FILE_NAME: &str = "node0.toml";

/// Settings of `node0 serve` and `node0 init`, as flags and environment variables. Every
/// field is optional so that the TOML file can fill what these leave out.
#[derive(Debug, Clone, Default, Args)]
pub struct ConfigArgs {
    /// Address to listen on.
    #[arg(long, env = "NODE0_LISTEN")]
    pub listen: Option<SocketAddr>,
    /// Data directory: key, genesis, embedded store.
    #[arg(long, env = "NODE0_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// TOML config file (default: node0.toml in the data directory, if present).
    #[arg(long, env = "NODE0_CONFIG")]
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
    /// Genesis file to start a new data directory with.
    #[arg(long, env = "NODE0_GENESIS")]
    pub genesis: Option<PathBuf>,
    /// Slot length in milliseconds.
    #[arg(long, env = "NODE0_SLOT_MS")]
    pub slot_ms: Option<u64>,
    /// Largest number of attestations in one block.
    #[arg(long, env = "NODE0_MAX_BLOCK_ATTESTATIONS")]
    pub max_block_attestations: Option<usize>,
    /// Per-request timeout in milliseconds.
    #[arg(long, env = "NODE0_REQUEST_TIMEOUT_MS")]
    pub request_timeout_ms: Option<u64>,
    /// Requests handled at once; past it, 503 at once.
    #[arg(long, env = "NODE0_MAX_CONCURRENT_REQUESTS")]
    pub max_concurrent_requests: Option<usize>,
    /// Log filter (`info`, `node0=debug,warn`, ...).
    #[arg(long, env = "NODE0_LOG")]
    pub log: Option<String>,
    /// Log format: `pretty` or `json`.
    #[arg(long, env = "NODE0_LOG_FORMAT")]
    pub log_format: Option<LogFormat>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Pretty,
    Json,
}

/// The TOML file: the same settings, snake_case.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub listen: Option<SocketAddr>,
    pub data_dir: Option<PathBuf>,
    pub database_url: Option<String>,
    pub database_schema: Option<String>,
    pub db_pool_size: Option<u32>,
    pub db_acquire_timeout_ms: Option<u64>,
    pub db_statement_timeout_ms: Option<u64>,
    pub db_pgbouncer: Option<bool>,
    pub redis_url: Option<String>,
    pub peers: Option<Vec<String>>,
    pub genesis: Option<PathBuf>,
    pub slot_ms: Option<u64>,
    pub max_block_attestations: Option<usize>,
    pub request_timeout_ms: Option<u64>,
    pub max_concurrent_requests: Option<usize>,
    pub log: Option<String>,
    pub log_format: Option<LogFormat>,
}

/// The settings in force.
#[derive(Debug, Clone)]
pub struct Config {
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    /// The PostgreSQL store, when configured; the embedded store otherwise.
    pub database: Option<bizra_store::PgConfig>,
    pub redis_url: Option<String>,
    pub peers: Vec<String>,
    pub genesis: Option<PathBuf>,
    pub slot: Duration,
    pub max_block_attestations: usize,
    pub request_timeout: Duration,
    pub max_concurrent_requests: usize,
    pub log: String,
    pub log_format: LogFormat,
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
    /// Merges flags/environment with the TOML file and the defaults.
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
                    FileConfig::default()
                }
            }
        };
        let listen = match self.listen.or(file.listen) {
            Some(a) => a,
            None => DEFAULT_LISTEN
                .parse()
                .map_err(|_| ConfigError::Invalid("bad default listen address".into()))?,
        };
        let slot_ms = self.slot_ms.or(file.slot_ms).unwrap_or(2000);
        if !(10..=600_000).contains(&slot_ms) {
            return Err(ConfigError::Invalid(format!(
                "slot_ms {slot_ms} must be between 10 and 600000"
            )));
        }
        let max_block_attestations = self
            .max_block_attestations
            .or(file.max_block_attestations)
            .unwrap_or(bizra_ledger::params::MAX_BLOCK_ATTESTATIONS);
        if !(1..=65_536).contains(&max_block_attestations) {
            return Err(ConfigError::Invalid(format!(
                "max_block_attestations {max_block_attestations} must be between 1 and 65536"
            )));
        }
        let request_timeout_ms = self
            .request_timeout_ms
            .or(file.request_timeout_ms)
            .unwrap_or(10_000);
        let peers: Vec<String> = self
            .peers
            .clone()
            .or(file.peers)
            .unwrap_or_default()
            .into_iter()
            .map(|p| p.trim().trim_end_matches('/').to_string())
            .filter(|p| !p.is_empty())
            .collect();
        let database = match self.database_url.clone().or(file.database_url) {
            None => None,
            Some(url) => {
                let mut pg = bizra_store::PgConfig::new(url);
                pg.schema = self.database_schema.clone().or(file.database_schema);
                if let Some(size) = self.db_pool_size.or(file.db_pool_size) {
                    if !(1..=bizra_store::postgres::MAX_POOL_SIZE).contains(&size) {
                        return Err(ConfigError::Invalid(format!(
                            "db_pool_size {size} must be between 1 and {}",
                            bizra_store::postgres::MAX_POOL_SIZE
                        )));
                    }
                    pg.max_connections = size;
                }
                if let Some(ms) = self.db_acquire_timeout_ms.or(file.db_acquire_timeout_ms) {
                    pg.acquire_timeout = Duration::from_millis(ms.max(1));
                }
                if let Some(ms) = self
                    .db_statement_timeout_ms
                    .or(file.db_statement_timeout_ms)
                {
                    pg.statement_timeout = Duration::from_millis(ms.max(1));
                }
                pg.pgbouncer = self.db_pgbouncer.or(file.db_pgbouncer).unwrap_or(false);
                Some(pg)
            }
        };
        Ok(Config {
            listen,
            data_dir: self
                .data_dir
                .clone()
                .or(file.data_dir)
                .unwrap_or(data_dir_hint),
            database,
            redis_url: self.redis_url.clone().or(file.redis_url),
            peers,
            genesis: self.genesis.clone().or(file.genesis),
            slot: Duration::from_millis(slot_ms),
            max_block_attestations,
            request_timeout: Duration::from_millis(request_timeout_ms.max(1)),
            max_concurrent_requests: self
                .max_concurrent_requests
                .or(file.max_concurrent_requests)
                .unwrap_or(10_000)
                .max(1),
            log: self
                .log
                .clone()
                .or(file.log)
                .unwrap_or_else(|| "info".into()),
            log_format: self
                .log_format
                .or(file.log_format)
                .unwrap_or(LogFormat::Pretty),
        })
    }
}

fn read_file_config(path: &Path) -> Result<FileConfig, ConfigError> {
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
}
