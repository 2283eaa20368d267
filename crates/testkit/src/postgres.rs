//! A PostgreSQL cluster of the tests' own: `initdb` into a temporary directory, the server
//! on a free loopback port with its socket in that directory.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use crate::watchdog::{Launch, Supervised};
use crate::{free_port, TestkitError};

/// The server tests use instead of a private one, when set.
pub const DATABASE_URL_VAR: &str = "NODE0_TEST_DATABASE_URL";

/// How long a starting server may take to accept connections.
const START_PATIENCE: Duration = Duration::from_secs(30);

/// The URL of the PostgreSQL server the tests of this process share:
/// `NODE0_TEST_DATABASE_URL` when set, else a private cluster started on first use and
/// stopped when the process ends.
///
/// # Panics
/// With one line naming what to install, when no server can be started.
pub fn shared_postgres_url() -> String {
    if let Ok(url) = std::env::var(DATABASE_URL_VAR) {
        return url;
    }
    static SHARED: OnceLock<Result<PrivatePostgres, String>> = OnceLock::new();
    match SHARED.get_or_init(|| PrivatePostgres::start_for_process().map_err(|e| e.to_string())) {
        Ok(pg) => pg.url(),
        Err(e) => panic!("{e}"),
    }
}

/// A cluster of this process's own. Dropping it stops the server and removes the
/// directory.
pub struct PrivatePostgres {
    /// First, so that it drops (stopping the server) before the directory.
    server: Option<Supervised>,
    /// `None` for the cluster shared by the process: its watchdog removes the directory.
    _dir: Option<tempfile::TempDir>,
    root: PathBuf,
    bin: PathBuf,
    port: u16,
    run_as: Option<(u32, u32)>,
    remove_on_exit: bool,
}

impl PrivatePostgres {
    /// `initdb` and start, for a test that stops and restarts its server.
    pub fn init() -> Result<PrivatePostgres, TestkitError> {
        let mut pg = PrivatePostgres::create(false)?;
        pg.start()?;
        Ok(pg)
    }

    fn start_for_process() -> Result<PrivatePostgres, TestkitError> {
        let mut pg = PrivatePostgres::create(true)?;
        pg.start()?;
        Ok(pg)
    }

    fn create(for_process: bool) -> Result<PrivatePostgres, TestkitError> {
        let bin = server_binaries()?;
        let run_as = if is_root() {
            Some(postgres_user()?)
        } else {
            None
        };
        let dir = tempfile::Builder::new()
            .prefix("node0-test-pg-")
            .tempdir()
            .map_err(TestkitError::io("temporary directory"))?;
        let root = dir.path().to_path_buf();
        if let Some((uid, gid)) = run_as {
            std::os::unix::fs::chown(&root, Some(uid), Some(gid))
                .map_err(TestkitError::io("chown of the cluster directory"))?;
        }
        // The shared cluster outlives every value of this process; its watchdog removes
        // the directory.
        let (dir, remove_on_exit) = if for_process {
            let _ = dir.keep();
            (None, true)
        } else {
            (Some(dir), false)
        };
        let pg = PrivatePostgres {
            server: None,
            _dir: dir,
            root,
            bin,
            port: 0,
            run_as,
            remove_on_exit,
        };
        pg.initdb()?;
        Ok(pg)
    }

    fn data(&self) -> PathBuf {
        self.root.join("data")
    }

    fn log(&self) -> PathBuf {
        self.root.join("server.log")
    }

    fn initdb(&self) -> Result<(), TestkitError> {
        let mut cmd = Command::new(self.bin.join("initdb"));
        cmd.arg("-D")
            .arg(self.data())
            .args(["-A", "trust", "-U", "postgres", "--no-sync", "-E", "UTF8"])
            .current_dir(&self.root);
        if let Some((uid, gid)) = self.run_as {
            use std::os::unix::process::CommandExt;
            cmd.uid(uid).gid(gid);
        }
        let out = cmd.output().map_err(TestkitError::io("run initdb"))?;
        if !out.status.success() {
            return Err(TestkitError::Failed(format!(
                "initdb failed: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            )));
        }
        Ok(())
    }

    /// Starts the server (again) and waits until it accepts connections. The first
    /// start picks a free port; a restart keeps it, so URLs stay valid.
    pub fn start(&mut self) -> Result<(), TestkitError> {
        let mut last = None;
        for _attempt in 0..5 {
            if self.port == 0 || last.is_some() {
                self.port = free_port().map_err(TestkitError::io("free port"))?;
            }
            match self.try_start() {
                Ok(()) => return Ok(()),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| TestkitError::Failed("PostgreSQL did not start".into())))
    }

    fn try_start(&mut self) -> Result<(), TestkitError> {
        let args: Vec<OsString> = [
            "-D".into(),
            self.data().into_os_string(),
            "-p".into(),
            self.port.to_string().into(),
            "-k".into(),
            self.root.clone().into_os_string(),
            "-c".into(),
            "listen_addresses=127.0.0.1".into(),
            // Node tests run several nodes at once, each with its own pool.
            "-c".into(),
            "max_connections=300".into(),
            // A test cluster: nothing here must survive a crash of the machine, and
            // fsync would make every test wait for the disk.
            "-c".into(),
            "fsync=off".into(),
        ]
        .into();
        let postgres = self.bin.join("postgres");
        let log = self.log();
        let server = Supervised::spawn(Launch {
            program: &postgres,
            args,
            stop_signal: "INT",
            log: &log,
            remove_on_exit: self.remove_on_exit.then(|| self.root.clone()),
            run_as: self.run_as,
            cwd: &self.root,
        })
        .map_err(TestkitError::io("start postgres"))?;
        self.server = Some(server);
        let deadline = Instant::now() + START_PATIENCE;
        loop {
            if self.accepts_connections() {
                return Ok(());
            }
            let exited = self.server.as_mut().and_then(Supervised::exited);
            if exited.is_some() || Instant::now() > deadline {
                self.server = None;
                let log = std::fs::read_to_string(self.log()).unwrap_or_default();
                let tail: Vec<&str> = log.lines().rev().take(5).collect();
                return Err(TestkitError::Failed(format!(
                    "PostgreSQL did not start on port {}: {}",
                    self.port,
                    tail.into_iter().rev().collect::<Vec<_>>().join(" / ")
                )));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn accepts_connections(&self) -> bool {
        Command::new(self.bin.join("pg_isready"))
            .args(["-q", "-h", "127.0.0.1", "-p", &self.port.to_string()])
            .status()
            .is_ok_and(|s| s.success())
    }

    /// A fast shutdown: sessions are disconnected, open transactions roll back.
    pub fn stop(&mut self) -> Result<(), TestkitError> {
        if let Some(mut server) = self.server.take() {
            server.stop().map_err(TestkitError::io("stop postgres"))?;
        }
        Ok(())
    }

    /// `postgres://postgres@127.0.0.1:PORT/postgres`.
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }
}

/// The directory holding `initdb`, `postgres` and `pg_isready`: `pg_config --bindir`, or
/// the newest server under `/usr/lib/postgresql` (Debian's `pg_config` may name the
/// client's directory, which has no server).
fn server_binaries() -> Result<PathBuf, TestkitError> {
    let has_server = |p: &Path| {
        ["initdb", "postgres", "pg_isready"]
            .iter()
            .all(|t| p.join(t).exists())
    };
    let from_pg_config = Command::new("pg_config")
        .arg("--bindir")
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()))
        .filter(|p| has_server(p));
    let debian = || {
        let versions = std::fs::read_dir("/usr/lib/postgresql").ok()?;
        versions
            .filter_map(|e| e.ok())
            .filter_map(|e| {
                let version: u32 = e.file_name().to_str()?.split('.').next()?.parse().ok()?;
                Some((version, e.path().join("bin")))
            })
            .filter(|(_, bin)| has_server(bin))
            .max_by_key(|(v, _)| *v)
            .map(|(_, bin)| bin)
    };
    from_pg_config.or_else(debian).ok_or_else(|| {
        TestkitError::Missing(format!(
            "PostgreSQL server binaries (initdb, postgres, pg_isready) not found through pg_config or in /usr/lib/postgresql/*/bin: install PostgreSQL 15 or later (Debian: apt-get install postgresql), or set {DATABASE_URL_VAR} to a server the tests may use"
        ))
    })
}

fn is_root() -> bool {
    id(&["-u"]).is_some_and(|uid| uid == 0)
}

/// PostgreSQL will not run as root; as root, the server runs as the `postgres` user.
fn postgres_user() -> Result<(u32, u32), TestkitError> {
    match (id(&["-u", "postgres"]), id(&["-g", "postgres"])) {
        (Some(uid), Some(gid)) => Ok((uid, gid)),
        _ => Err(TestkitError::Missing(
            "running the tests as root needs a `postgres` user to run PostgreSQL as (Debian's postgresql package creates it)".into(),
        )),
    }
}

fn id(args: &[&str]) -> Option<u32> {
    let out = Command::new("id").args(args).output().ok()?;
    if !out.status.success() {
        return None;
    }
    String::from_utf8_lossy(&out.stdout).trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_private_cluster_starts_stops_and_restarts_on_its_port() {
        let mut pg = PrivatePostgres::init().expect("a private cluster");
        assert!(pg.accepts_connections());
        let (port, root) = (pg.port(), pg.root.clone());
        pg.stop().expect("stop");
        assert!(!pg.accepts_connections(), "still answering after stop");
        pg.start().expect("start again");
        assert_eq!(pg.port(), port, "a restart keeps the URL");
        assert!(pg.accepts_connections());
        drop(pg);
        assert!(!root.exists(), "the cluster's directory outlived it");
    }
}
