//! A server process that cannot outlive the test process that started it.
//!
//! The server runs under a small `sh` watchdog whose standard input is a pipe from this
//! process. When the pipe closes (on [`Supervised::stop`], or because this process ended,
//! even by SIGKILL, since the kernel closes its descriptors), the watchdog signals the
//! server, waits for it, removes its directory if asked to, and exits. Nothing has to
//! run at exit in the test process, which libtest gives no hook for.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};

/// `$@` is the server's command line; `$SIG`, `$LOG` and `$REMOVE` come from the
/// environment. The server reads nothing (stdin /dev/null); the watcher reads the pipe on
/// descriptor 3 and, at its end, signals the server. The watcher is killed once the
/// server has exited, so that it never signals a reused pid.
const SCRIPT: &str = r#"exec 3<&0 0</dev/null
"$@" >>"$LOG" 2>&1 &
pid=$!
{ read _ <&3; kill -s "$SIG" "$pid" 2>/dev/null; } &
watcher=$!
wait "$pid"
rc=$?
kill "$watcher" 2>/dev/null
if [ -n "$REMOVE" ]; then rm -rf -- "$REMOVE"; fi
exit "$rc"
"#;

/// How to run one server.
pub(crate) struct Launch<'a> {
    pub program: &'a Path,
    pub args: Vec<OsString>,
    /// The signal that stops it cleanly: `INT` for PostgreSQL's fast shutdown, `TERM`
    /// for Redis.
    pub stop_signal: &'static str,
    /// Where the server's output goes (appended).
    pub log: &'a Path,
    /// Removed by the watchdog after the server has exited.
    pub remove_on_exit: Option<PathBuf>,
    /// `(uid, gid)` to run as (PostgreSQL refuses to run as root).
    pub run_as: Option<(u32, u32)>,
    pub cwd: &'a Path,
}

/// A running server under its watchdog.
pub(crate) struct Supervised {
    watchdog: Child,
    pipe: Option<ChildStdin>,
}

impl Supervised {
    pub(crate) fn spawn(launch: Launch<'_>) -> std::io::Result<Supervised> {
        let mut cmd = Command::new("sh");
        cmd.arg("-c")
            .arg(SCRIPT)
            .arg("node0-testkit-watchdog")
            .arg(launch.program)
            .args(&launch.args)
            .env("SIG", launch.stop_signal)
            .env("LOG", launch.log)
            .env(
                "REMOVE",
                launch
                    .remove_on_exit
                    .as_deref()
                    .map(Path::as_os_str)
                    .unwrap_or_default(),
            )
            .current_dir(launch.cwd)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if let Some((uid, gid)) = launch.run_as {
            use std::os::unix::process::CommandExt;
            cmd.uid(uid).gid(gid);
        }
        let mut watchdog = cmd.spawn()?;
        let pipe = watchdog.stdin.take();
        Ok(Supervised { watchdog, pipe })
    }

    /// The exit status, once the server (and with it the watchdog) has exited.
    pub(crate) fn exited(&mut self) -> Option<ExitStatus> {
        self.watchdog.try_wait().ok().flatten()
    }

    /// Stops the server cleanly and waits until it and the watchdog have exited.
    pub(crate) fn stop(&mut self) -> std::io::Result<ExitStatus> {
        drop(self.pipe.take());
        self.watchdog.wait()
    }
}

impl Drop for Supervised {
    fn drop(&mut self) {
        if self.pipe.is_some() {
            let _ = self.stop();
        }
    }
}
