//! A `redis-server` of the tests' own on a free loopback port, keeping nothing on disk.

use std::ffi::OsString;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use crate::watchdog::{Launch, Supervised};
use crate::{free_port, TestkitError};

/// The server tests use instead of a private one, when set (`redis://host:port`).
pub const REDIS_URL_VAR: &str = "NODE0_TEST_REDIS_URL";

const START_PATIENCE: Duration = Duration::from_secs(20);

/// Where a Redis server listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedisAddr {
    pub host: String,
    pub port: u16,
}

impl RedisAddr {
    pub fn url(&self) -> String {
        format!("redis://{}:{}", self.host, self.port)
    }

    /// Sends one command in RESP and returns the first line of the reply (`+PONG`,
    /// `:1`, `$5`, ...): enough for the checks tests make, without a client library.
    pub fn command(&self, args: &[&str]) -> std::io::Result<String> {
        let mut s = TcpStream::connect((self.host.as_str(), self.port))?;
        s.set_read_timeout(Some(Duration::from_secs(2)))?;
        let mut req = format!("*{}\r\n", args.len());
        for a in args {
            req.push_str(&format!("${}\r\n{a}\r\n", a.len()));
        }
        s.write_all(req.as_bytes())?;
        let mut buf = Vec::new();
        let mut chunk = [0u8; 512];
        while !buf.windows(2).any(|w| w == b"\r\n") {
            let n = s.read(&mut chunk)?;
            if n == 0 {
                break;
            }
            buf.extend_from_slice(&chunk[..n]);
        }
        let text = String::from_utf8_lossy(&buf);
        Ok(text.lines().next().unwrap_or("").to_string())
    }

    fn answers(&self) -> bool {
        self.command(&["PING"]).is_ok_and(|r| r == "+PONG")
    }
}

/// The Redis server the tests of this process share: `NODE0_TEST_REDIS_URL` when set,
/// else a private server started on first use and stopped when the process ends.
///
/// # Panics
/// With one line naming what to install, when no server can be started; or when the
/// variable is not a `redis://host:port` URL.
pub fn shared_redis() -> RedisAddr {
    if let Ok(url) = std::env::var(REDIS_URL_VAR) {
        return parse_url(&url).unwrap_or_else(|| {
            panic!("{REDIS_URL_VAR}={url:?} is not of the form redis://host:port")
        });
    }
    shared_private().addr()
}

fn shared_private() -> &'static PrivateRedis {
    static SHARED: OnceLock<Result<PrivateRedis, String>> = OnceLock::new();
    match SHARED.get_or_init(|| PrivateRedis::launch(true).map_err(|e| e.to_string())) {
        Ok(r) => r,
        Err(e) => panic!("{e}"),
    }
}

fn parse_url(url: &str) -> Option<RedisAddr> {
    let rest = url.strip_prefix("redis://")?.trim_end_matches('/');
    let (host, port) = rest.rsplit_once(':')?;
    Some(RedisAddr {
        host: host.to_string(),
        port: port.parse().ok()?,
    })
}

/// A server of this process's own. Dropping it stops the server.
pub struct PrivateRedis {
    /// First, so that it drops (stopping the server) before the directory.
    server: Option<Supervised>,
    /// `None` for the server shared by the process: its watchdog removes the directory.
    _dir: Option<tempfile::TempDir>,
    root: PathBuf,
    remove_on_exit: bool,
    bin: PathBuf,
    port: u16,
}

impl PrivateRedis {
    /// On a free port.
    pub fn start() -> Result<PrivateRedis, TestkitError> {
        PrivateRedis::launch(false)
    }

    fn launch(for_process: bool) -> Result<PrivateRedis, TestkitError> {
        let bin = redis_server()?;
        let dir = tempfile::Builder::new()
            .prefix("node0-test-redis-")
            .tempdir()
            .map_err(TestkitError::io("temporary directory"))?;
        let root = dir.path().to_path_buf();
        // The shared server outlives every value of this process; its watchdog removes
        // the directory.
        let dir = if for_process {
            let _ = dir.keep();
            None
        } else {
            Some(dir)
        };
        let mut r = PrivateRedis {
            server: None,
            _dir: dir,
            root,
            remove_on_exit: for_process,
            bin,
            port: 0,
        };
        let mut last = None;
        for _attempt in 0..5 {
            r.port = free_port().map_err(TestkitError::io("free port"))?;
            match r.restart() {
                Ok(()) => return Ok(r),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| TestkitError::Failed("redis-server did not start".into())))
    }

    /// Starts the server again on the port it had (after [`PrivateRedis::stop`]).
    pub fn restart(&mut self) -> Result<(), TestkitError> {
        let args: Vec<OsString> = [
            "--port",
            &self.port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            // For DEBUG SLEEP: tests make a Redis that stalls.
            "--enable-debug-command",
            "local",
        ]
        .iter()
        .map(OsString::from)
        .collect();
        let log = self.root.join("redis.log");
        let server = Supervised::spawn(Launch {
            program: &self.bin,
            args,
            stop_signal: "TERM",
            log: &log,
            remove_on_exit: self.remove_on_exit.then(|| self.root.clone()),
            run_as: None,
            cwd: &self.root,
        })
        .map_err(TestkitError::io("start redis-server"))?;
        self.server = Some(server);
        let deadline = Instant::now() + START_PATIENCE;
        while !self.addr().answers() {
            let exited = self.server.as_mut().and_then(Supervised::exited);
            if exited.is_some() || Instant::now() > deadline {
                self.server = None;
                let log = std::fs::read_to_string(&log).unwrap_or_default();
                return Err(TestkitError::Failed(format!(
                    "redis-server did not start on port {}: {}",
                    self.port,
                    log.lines().last().unwrap_or("")
                )));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(())
    }

    /// Stops the server; the port stays this value's, for [`PrivateRedis::restart`].
    pub fn stop(&mut self) {
        if let Some(mut server) = self.server.take() {
            let _ = server.stop();
        }
    }

    pub fn addr(&self) -> RedisAddr {
        RedisAddr {
            host: "127.0.0.1".into(),
            port: self.port,
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn url(&self) -> String {
        self.addr().url()
    }
}

fn redis_server() -> Result<PathBuf, TestkitError> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/bin".into(), "/usr/sbin".into(), "/usr/local/bin".into()])
        .map(|dir| dir.join("redis-server"))
        .find(|p| p.is_file())
        .ok_or_else(|| {
            TestkitError::Missing(format!(
                "redis-server not found on PATH: install Redis 6 or later (Debian: apt-get install redis-server), or set {REDIS_URL_VAR} to a server the tests may use"
            ))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_parse_to_host_and_port() {
        assert_eq!(
            parse_url("redis://127.0.0.1:6380/"),
            Some(RedisAddr {
                host: "127.0.0.1".into(),
                port: 6380
            })
        );
        assert_eq!(parse_url("redis://localhost"), None);
        assert_eq!(parse_url("http://a:1"), None);
    }

    /// Run as a child of the test below: starts the shared server, prints its port and
    /// directory, and exits without any cleanup of its own.
    #[test]
    fn shared_server_child() {
        if std::env::var_os("NODE0_TESTKIT_CHILD").is_none() {
            return;
        }
        let r = shared_private();
        println!("{} {}", r.port(), r.root.display());
    }

    #[test]
    fn the_shared_server_ends_with_its_process_and_leaves_no_directory() {
        let exe = std::env::current_exe().expect("test binary");
        let out = std::process::Command::new(exe)
            .args([
                "--exact",
                "redis::tests::shared_server_child",
                "--nocapture",
            ])
            .env("NODE0_TESTKIT_CHILD", "1")
            .env_remove(REDIS_URL_VAR)
            .output()
            .expect("run the child");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8_lossy(&out.stdout);
        let line = text
            .lines()
            .find_map(|l| {
                let (port, dir) = l.split_once(' ')?;
                Some((port.parse::<u16>().ok()?, PathBuf::from(dir)))
            })
            .unwrap_or_else(|| panic!("no port and directory in {text}"));
        let (port, dir) = line;
        let addr = RedisAddr {
            host: "127.0.0.1".into(),
            port,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while addr.answers() || dir.exists() {
            assert!(
                Instant::now() < deadline,
                "the shared server outlived its process (answers: {}, {} exists: {})",
                addr.answers(),
                dir.display(),
                dir.exists()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    #[test]
    fn a_private_server_answers_and_stops() {
        let mut r = PrivateRedis::start().expect("redis-server starts");
        let addr = r.addr();
        assert_eq!(addr.command(&["PING"]).expect("ping"), "+PONG");
        r.stop();
        assert!(!addr.answers(), "still answering after stop");
        r.restart().expect("restart on the same port");
        assert!(addr.answers());
    }
}
