//! The data directory: the node key, the genesis file and the embedded store. `init`
//! creates what is missing; an existing directory is reopened as it is.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use bizra_ledger::crypto::Keypair;
use bizra_ledger::genesis::Genesis;
use bizra_ledger::hash::decode_lower_hex;

use crate::config::Config;

pub const KEY_FILE: &str = "node.key";
pub const GENESIS_FILE: &str = "genesis.json";
pub const STORE_FILE: &str = "ledger.sqlite";

#[derive(Debug, thiserror::Error)]
pub enum DataDirError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: the node key must be 64 lowercase hex digits (a 32-byte Ed25519 seed)")]
    BadKey { path: PathBuf },
    #[error("{path}: {message}")]
    BadGenesis { path: PathBuf, message: String },
    #[error(
        "data directory {dir} belongs to genesis {existing}, but the configured genesis file {given_path} is genesis {given}; \
         use an empty data directory for another network"
    )]
    GenesisMismatch {
        dir: PathBuf,
        existing: String,
        given_path: PathBuf,
        given: String,
    },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> DataDirError + '_ {
    move |source| DataDirError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// What `init` found or made.
#[derive(Debug)]
pub struct Prepared {
    pub key: Keypair,
    pub genesis: Genesis,
    pub created_key: bool,
    pub created_genesis: bool,
}

/// Creates the data directory, the key and the genesis file if missing, and checks that
/// a configured genesis file matches an existing one.
pub fn prepare(config: &Config) -> Result<Prepared, DataDirError> {
    let dir = &config.data_dir;
    fs::create_dir_all(dir).map_err(io(dir))?;
    let key_path = dir.join(KEY_FILE);
    let (key, created_key) = if key_path.exists() {
        (read_key(&key_path)?, false)
    } else {
        let key = Keypair::generate();
        write_key(&key_path, &key)?;
        (key, true)
    };

    let genesis_path = dir.join(GENESIS_FILE);
    let given = match &config.genesis {
        Some(p) => Some((p.clone(), read_genesis(p)?)),
        None => None,
    };
    let (genesis, created_genesis) = if genesis_path.exists() {
        let existing = read_genesis(&genesis_path)?;
        if let Some((given_path, given)) = given {
            if digest_hex(&given) != digest_hex(&existing) {
                return Err(DataDirError::GenesisMismatch {
                    dir: dir.clone(),
                    existing: block_hash_hex(&existing),
                    given_path,
                    given: block_hash_hex(&given),
                });
            }
        }
        (existing, false)
    } else {
        let genesis = match given {
            Some((_, g)) => g,
            None => Genesis::single(
                key.public(),
                &format!("http://{}", config.listen),
                &crate::clock::rfc3339_ms(crate::clock::now_ms() / 1000 * 1000),
            ),
        };
        let text = serde_json::to_vec_pretty(&genesis).map_err(|e| DataDirError::BadGenesis {
            path: genesis_path.clone(),
            message: e.to_string(),
        })?;
        write_atomic(&genesis_path, &text, false)?;
        (genesis, true)
    };
    Ok(Prepared {
        key,
        genesis,
        created_key,
        created_genesis,
    })
}

fn digest_hex(g: &Genesis) -> String {
    g.digest().map(|d| d.to_hex()).unwrap_or_default()
}

fn block_hash_hex(g: &Genesis) -> String {
    g.block().map(|b| b.hash.to_hex()).unwrap_or_default()
}

pub fn read_genesis(path: &Path) -> Result<Genesis, DataDirError> {
    let bytes = fs::read(path).map_err(io(path))?;
    Genesis::from_json(&bytes).map_err(|e| DataDirError::BadGenesis {
        path: path.to_path_buf(),
        message: e.to_string(),
    })
}

pub fn read_key(path: &Path) -> Result<Keypair, DataDirError> {
    let text = fs::read_to_string(path).map_err(io(path))?;
    let seed = decode_lower_hex::<32>(text.trim()).map_err(|_| DataDirError::BadKey {
        path: path.to_path_buf(),
    })?;
    Ok(Keypair::from_seed(seed))
}

/// Writes the seed as hex, readable by the owner only.
pub fn write_key(path: &Path, key: &Keypair) -> Result<(), DataDirError> {
    write_atomic(
        path,
        format!("{}\n", hex::encode(key.seed())).as_bytes(),
        true,
    )
}

/// Write to a temporary file, fsync, rename: a crash leaves the old file or the new one.
fn write_atomic(path: &Path, bytes: &[u8], secret: bool) -> Result<(), DataDirError> {
    let tmp = path.with_extension("tmp");
    {
        let mut opts = fs::OpenOptions::new();
        opts.write(true).create(true).truncate(true);
        #[cfg(unix)]
        if secret {
            use std::os::unix::fs::OpenOptionsExt;
            opts.mode(0o600);
        }
        #[cfg(not(unix))]
        let _ = secret;
        let mut f = opts.open(&tmp).map_err(io(&tmp))?;
        f.write_all(bytes).map_err(io(&tmp))?;
        f.sync_all().map_err(io(&tmp))?;
    }
    fs::rename(&tmp, path).map_err(io(path))?;
    if let Some(parent) = path.parent() {
        if let Ok(d) = fs::File::open(parent) {
            let _ = d.sync_all();
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ConfigArgs;

    fn config(dir: &Path) -> Config {
        ConfigArgs {
            data_dir: Some(dir.into()),
            ..Default::default()
        }
        .resolve()
        .unwrap()
    }

    #[test]
    fn init_creates_then_reopens() {
        let dir = tempfile::tempdir().unwrap();
        let c = config(dir.path());
        let first = prepare(&c).unwrap();
        assert!(first.created_key && first.created_genesis);
        let again = prepare(&c).unwrap();
        assert!(!again.created_key && !again.created_genesis);
        assert_eq!(first.key.public(), again.key.public());
        assert_eq!(first.genesis, again.genesis);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(dir.path().join(KEY_FILE))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }

    #[test]
    fn a_different_genesis_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = config(dir.path());
        prepare(&c).unwrap();
        let other = Genesis::single(
            Keypair::from_seed([1; 32]).public(),
            "http://127.0.0.1:1",
            "2026-01-01T00:00:00Z",
        );
        let other_path = dir.path().join("other.json");
        fs::write(&other_path, serde_json::to_vec(&other).unwrap()).unwrap();
        c.genesis = Some(other_path);
        let err = prepare(&c).unwrap_err();
        assert!(matches!(err, DataDirError::GenesisMismatch { .. }), "{err}");
    }
}
