//! The report: figures from the merged tally, the JSON file and the human summary.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use serde::Serialize;

use super::durable::Durable;
use super::finality::Finality;
use super::gates::{GateResult, Measured};
use super::record::{Failures, Tally};
use super::{BenchError, Mode};
use crate::latency::Percentiles;

#[derive(Debug, Clone, Serialize)]
pub struct Counts {
    /// Requests started.
    pub sent: u64,
    /// Requests with an outcome (a status or a failure).
    pub completed: u64,
    pub ok: u64,
    pub errors: u64,
    /// Requests that got no status, by cause.
    pub failures: Failures,
    /// Status code → count.
    pub statuses: BTreeMap<String, u64>,
}

/// What `--json FILE` writes.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// What was run; its fields stand at the top level of the JSON.
    #[serde(flatten)]
    pub run: RunInfo,
    /// From the start to the last answer.
    pub elapsed_s: f64,
    pub counts: Counts,
    /// Every finished request, answered or failed (see [`crate::latency`] for the names).
    pub latency_ms: Percentiles,
    /// Completed requests per second.
    pub throughput_rps: f64,
    /// Successful requests per second (what `min_rps` gates).
    pub ok_rps: f64,
    /// errors / completed.
    pub error_rate: f64,
    /// Connections opened during the run, beyond those opened before the start.
    pub connections_opened: u64,
    /// The pre-signed attestations ran out before the duration ended.
    pub presigned_exhausted: bool,
    pub durable: Option<Durable>,
    /// Submit-to-finalized latency (`--finality`).
    pub finality: Option<Finality>,
    pub gates: Vec<GateResult>,
    pub gates_passed: bool,
}

/// The run's description: what was asked, as the report gives it back.
#[derive(Debug, Clone, Serialize)]
pub struct RunInfo {
    pub scenario: String,
    /// `open` or `closed`.
    pub mode: Mode,
    pub target: String,
    /// Offered rate, req/s (open loop).
    pub rate: Option<f64>,
    pub connections: usize,
    /// In-flight cap (open loop).
    pub max_inflight: Option<usize>,
    /// Generator threads used.
    pub threads: usize,
    /// Configured duration.
    pub duration_s: f64,
    /// RFC 3339, UTC.
    pub started_at: String,
}

impl Report {
    pub fn new(info: RunInfo, tally: &Tally, elapsed_s: f64) -> Report {
        let per_s = |n: u64| {
            if elapsed_s > 0.0 {
                n as f64 / elapsed_s
            } else {
                0.0
            }
        };
        Report {
            run: info,
            elapsed_s,
            counts: Counts {
                sent: tally.sent,
                completed: tally.completed,
                ok: tally.ok,
                errors: tally.errors,
                failures: tally.failures,
                statuses: tally
                    .statuses
                    .iter()
                    .map(|(s, n)| (s.to_string(), *n))
                    .collect(),
            },
            latency_ms: Percentiles::of(&tally.latency),
            throughput_rps: per_s(tally.completed),
            ok_rps: per_s(tally.ok),
            error_rate: if tally.completed > 0 {
                tally.errors as f64 / tally.completed as f64
            } else {
                0.0
            },
            connections_opened: tally.connects,
            presigned_exhausted: tally.exhausted,
            durable: None,
            finality: None,
            gates: Vec::new(),
            gates_passed: true,
        }
    }

    /// The figures the gates check.
    pub fn measured(&self) -> Measured {
        let l = &self.latency_ms;
        Measured {
            scenario: self.run.scenario.clone(),
            open: self.run.mode == Mode::Open,
            rate: self.run.rate,
            p50_ms: l.p50,
            p95_ms: l.p95,
            p99_ms: l.p99,
            p999_ms: l.p999,
            ok_rps: self.ok_rps,
            error_rate: self.error_rate,
            durable: self.durable.as_ref().map(|d| (d.acknowledged, d.readable)),
        }
    }

    pub fn set_gates(&mut self, gates: Vec<GateResult>) {
        self.gates_passed = gates.iter().all(|g| g.pass);
        self.gates = gates;
    }

    pub fn write_json(&self, path: &Path) -> Result<(), BenchError> {
        let text = serde_json::to_string_pretty(self).map_err(|e| BenchError::Io {
            path: path.display().to_string(),
            source: std::io::Error::other(e),
        })?;
        std::fs::write(path, text + "\n").map_err(|source| BenchError::Io {
            path: path.display().to_string(),
            source,
        })
    }

    /// The human summary printed on stdout.
    pub fn summary(&self) -> String {
        let mut s = String::new();
        let run = &self.run;
        let load = match (run.mode, run.rate) {
            (Mode::Open, Some(r)) => format!(
                "open loop at {} req/s, {} connections pre-opened, in-flight cap {}",
                fmt_rate(r),
                run.connections,
                run.max_inflight.unwrap_or(0)
            ),
            _ => format!("closed loop, {} connections", run.connections),
        };
        let threads = if run.threads == 1 {
            "1 thread".to_string()
        } else {
            format!("{} threads", run.threads)
        };
        let _ = writeln!(s, "scenario    {} ({load}, {threads})", run.scenario);
        let _ = writeln!(s, "target      {}", run.target);
        let _ = writeln!(
            s,
            "duration    {:.3} s (configured {:.3} s)",
            self.elapsed_s, run.duration_s
        );
        let c = &self.counts;
        let _ = writeln!(
            s,
            "requests    {} sent, {} completed, {} ok, {} errors ({:.3} %)",
            c.sent,
            c.completed,
            c.ok,
            c.errors,
            self.error_rate * 100.0
        );
        let _ = writeln!(
            s,
            "throughput  {:.1} req/s ({:.1} ok/s)",
            self.throughput_rps, self.ok_rps
        );
        let l = &self.latency_ms;
        let _ = writeln!(
            s,
            "latency ms  p50 {:.3}  p95 {:.3}  p99 {:.3}  p99.9 {:.3}  max {:.3}",
            l.p50, l.p95, l.p99, l.p999, l.max
        );
        let statuses: Vec<String> = c
            .statuses
            .iter()
            .map(|(code, n)| format!("{code}: {n}"))
            .collect();
        let _ = writeln!(
            s,
            "statuses    {}",
            if statuses.is_empty() {
                "-".to_string()
            } else {
                statuses.join(", ")
            }
        );
        let f = &c.failures;
        if f.total() > 0 {
            let _ = writeln!(
                s,
                "failures    connect {}, io {}, timeout {}, unsent {}",
                f.connect, f.io, f.timeout, f.unsent
            );
        }
        if self.connections_opened > 0 {
            let _ = writeln!(
                s,
                "connections {} opened during the run",
                self.connections_opened
            );
        }
        if self.presigned_exhausted {
            let _ = writeln!(
                s,
                "note        the pre-signed attestations ran out early (raise --presign)"
            );
        }
        if let Some(f) = &self.finality {
            // Whole milliseconds: the node's finalized_at_ms has no finer resolution.
            let l = &f.latency_ms;
            let _ = writeln!(
                s,
                "finality    {} of {} acknowledged attestations finalized; submit to final p50 {:.0} ms, p95 {:.0} ms, p99 {:.0} ms, max {:.0} ms",
                f.finalized, f.acknowledged, l.p50, l.p95, l.p99, l.max
            );
        }
        if let Some(d) = &self.durable {
            let _ = writeln!(
                s,
                "durable     {} of {} acknowledged attestations read back{}",
                d.readable,
                d.acknowledged,
                if d.missing.is_empty() {
                    String::new()
                } else {
                    format!("; missing e.g. {}", d.missing.join(", "))
                }
            );
        }
        for g in &self.gates {
            let _ = writeln!(s, "{g}");
        }
        s
    }
}

fn fmt_rate(r: f64) -> String {
    if r.fract() == 0.0 {
        format!("{r:.0}")
    } else {
        format!("{r}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::gates::{GateResult, Op};
    use crate::bench::record::Tally;

    fn tally() -> Tally {
        let mut t = Tally::new().unwrap();
        // 1000 answers: 980 at 100 µs, 19 at 2 ms, 1 at 50 ms.
        t.latency.record_n(100, 980).unwrap();
        t.latency.record_n(2000, 19).unwrap();
        t.latency.record(50_000).unwrap();
        t.sent = 1000;
        t.completed = 1000;
        t.ok = 990;
        t.errors = 10;
        t.statuses = [(200, 990), (503, 10)].into();
        t
    }

    fn info() -> RunInfo {
        RunInfo {
            scenario: "health".into(),
            mode: Mode::Open,
            target: "http://127.0.0.1:1/health".into(),
            rate: Some(500.0),
            connections: 8,
            max_inflight: Some(4096),
            threads: 1,
            duration_s: 2.0,
            started_at: "2025-01-01T00:00:00Z".into(),
        }
    }

    #[test]
    fn latency_is_the_merged_histogram_in_milliseconds() {
        let r = Report::new(info(), &tally(), 2.0);
        assert_eq!(r.latency_ms, Percentiles::of(&tally().latency));
        assert_eq!((r.latency_ms.count, r.latency_ms.p99), (1000, 2.0));
        let empty = Report::new(info(), &Tally::new().unwrap(), 2.0);
        assert_eq!(empty.latency_ms, Percentiles::default());
    }

    #[test]
    fn rates_and_error_rate() {
        let r = Report::new(info(), &tally(), 2.0);
        assert_eq!(r.throughput_rps, 500.0);
        assert_eq!(r.ok_rps, 495.0);
        assert!((r.error_rate - 0.01).abs() < 1e-12);
        let m = r.measured();
        assert_eq!(m.p99_ms, 2.0);
        assert!(m.open);
    }

    #[test]
    fn summary_has_milliseconds_with_three_decimals() {
        let mut r = Report::new(info(), &tally(), 2.0);
        r.set_gates(vec![GateResult {
            set: "floor".into(),
            scope: "health/any".into(),
            metric: "p99_ms".into(),
            op: Op::AtMost,
            limit: 150.0,
            measured: Some(2.0),
            pass: true,
        }]);
        let s = r.summary();
        assert!(
            s.contains("latency ms  p50 0.100  p95 0.100  p99 2.000  p99.9 2.000  max 50."),
            "{s}"
        );
        assert!(s.contains("throughput  500.0 req/s (495.0 ok/s)"), "{s}");
        assert!(s.contains("statuses    200: 990, 503: 10"), "{s}");
        assert!(s.contains("(1.000 %)"), "{s}");
        assert!(s.contains("open loop at 500 req/s"), "{s}");
        assert!(s.contains("PASS  floor"), "{s}");
        assert!(r.gates_passed);
    }

    #[test]
    fn finality_reports_the_shared_percentiles() {
        let mut r = Report::new(info(), &tally(), 2.0);
        let mut h = crate::latency::histogram().unwrap();
        // Submit to final: 300 ms and 500 ms, recorded in µs.
        h.record(300_000).unwrap();
        h.record(500_000).unwrap();
        r.finality = Some(Finality {
            acknowledged: 3,
            finalized: 2,
            latency_ms: Percentiles::of(&h),
        });
        let s = r.summary();
        // .ci/run greps this line.
        assert!(
            s.contains("finality    2 of 3 acknowledged attestations finalized; submit to final p50 300 ms"),
            "{s}"
        );
        let v = serde_json::to_value(&r).unwrap();
        assert_eq!(v["finality"]["latency_ms"]["count"], 2);
        assert!(v["finality"]["latency_ms"]["max"].as_f64().unwrap() >= 500.0);
    }

    #[test]
    fn json_report_has_the_documented_fields() {
        let r = Report::new(info(), &tally(), 2.0);
        let v = serde_json::to_value(&r).unwrap();
        for k in [
            "scenario",
            "mode",
            "rate",
            "connections",
            "duration_s",
            "counts",
            "latency_ms",
            "throughput_rps",
            "error_rate",
            "gates",
            "gates_passed",
        ] {
            assert!(v.get(k).is_some(), "missing {k}");
        }
        assert_eq!(v["latency_ms"]["p99"], 2.0);
        assert_eq!(v["latency_ms"]["p999"], 2.0);
        assert_eq!(v["latency_ms"]["min"], 0.1);
        assert_eq!(v["counts"]["statuses"]["503"], 10);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.json");
        r.write_json(&path).unwrap();
        let back: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        assert_eq!(back["mode"], "open");
        assert_eq!(back["started_at"], "2025-01-01T00:00:00Z");
        assert!(back.get("run").is_none(), "the run's fields are top-level");
    }
}
