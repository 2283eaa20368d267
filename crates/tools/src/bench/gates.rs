//! Quality gates: named sets of limits read from a TOML file (`bench/gates.toml`), each
//! gate scoped to scenarios and a mode. The `floor` set applies to every run; another set
//! (`--gates strict`) is checked on top of it.
//!
//! ```toml
//! [[strict]]
//! scenarios = ["health"]
//! mode = "open"          # open | closed | any (default)
//! rate = 20000.0         # open loop: the offered rate the limits are defined at
//! p99_ms = 1.0
//! max_error_rate = 0.0
//! ```

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use super::scenario::Scenario;

/// The set applied to every run.
pub const FLOOR: &str = "floor";

#[derive(Debug, thiserror::Error)]
pub enum GatesError {
    #[error("{path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("gates file: {0}")]
    Parse(String),
    #[error("gates file: set {set:?}, gate {index}: {why}")]
    Invalid {
        set: String,
        index: usize,
        why: String,
    },
    #[error("gates file has no set {0:?} (it has: {1})")]
    NoSet(String, String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum GateMode {
    #[default]
    Any,
    Open,
    Closed,
}

/// One gate: where it applies and its limits (each optional).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Gate {
    /// Scenario names, or `"*"` for all.
    pub scenarios: Vec<String>,
    #[serde(default)]
    pub mode: GateMode,
    /// Open loop: the run must offer at least this rate (req/s) for the latency limits to
    /// mean what they say; checked as a gate of its own.
    pub rate: Option<f64>,
    pub p50_ms: Option<f64>,
    pub p95_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    pub p999_ms: Option<f64>,
    /// Successful answers per second.
    pub min_rps: Option<f64>,
    /// Errors / completed requests, 0–1.
    pub max_error_rate: Option<f64>,
    /// Every acknowledged submit must read back (needs `--verify-durable`).
    #[serde(default)]
    pub require_durable: bool,
}

impl Gate {
    fn applies(&self, scenario: &str, open: bool) -> bool {
        let mode = match self.mode {
            GateMode::Any => true,
            GateMode::Open => open,
            GateMode::Closed => !open,
        };
        mode && self.scenarios.iter().any(|s| s == "*" || s == scenario)
    }

    fn has_limit(&self) -> bool {
        self.rate.is_some()
            || self.p50_ms.is_some()
            || self.p95_ms.is_some()
            || self.p99_ms.is_some()
            || self.p999_ms.is_some()
            || self.min_rps.is_some()
            || self.max_error_rate.is_some()
            || self.require_durable
    }
}

/// A parsed gates file: set name → gates.
#[derive(Debug, Clone, Default)]
pub struct GatesFile {
    pub sets: BTreeMap<String, Vec<Gate>>,
}

impl GatesFile {
    pub fn parse(text: &str) -> Result<GatesFile, GatesError> {
        let sets: BTreeMap<String, Vec<Gate>> =
            toml::from_str(text).map_err(|e| GatesError::Parse(e.to_string()))?;
        for (set, gates) in &sets {
            for (index, g) in gates.iter().enumerate() {
                let invalid = |why: String| GatesError::Invalid {
                    set: set.clone(),
                    index,
                    why,
                };
                if g.scenarios.is_empty() {
                    return Err(invalid("scenarios is empty".into()));
                }
                if let Some(s) = g
                    .scenarios
                    .iter()
                    .find(|s| *s != "*" && !Scenario::named(s))
                {
                    return Err(invalid(format!("unknown scenario {s:?}")));
                }
                if !g.has_limit() {
                    return Err(invalid("no limit".into()));
                }
                if g.rate.is_some() && g.mode != GateMode::Open {
                    return Err(invalid("rate applies to mode = \"open\" only".into()));
                }
            }
        }
        Ok(GatesFile { sets })
    }

    pub fn read(path: &std::path::Path) -> Result<GatesFile, GatesError> {
        let text = std::fs::read_to_string(path).map_err(|source| GatesError::Read {
            path: path.display().to_string(),
            source,
        })?;
        GatesFile::parse(&text)
    }

    /// The gates of `name` with the floor first: `none` selects nothing, `floor` the floor
    /// alone, any other name the floor and that set.
    pub fn select(&self, name: &str) -> Result<Vec<(String, Gate)>, GatesError> {
        if name == "none" {
            return Ok(Vec::new());
        }
        let mut names = vec![FLOOR];
        if name != FLOOR {
            names.push(name);
        }
        let mut out = Vec::new();
        for n in names {
            match self.sets.get(n) {
                Some(gates) => out.extend(gates.iter().map(|g| (n.to_string(), g.clone()))),
                // A file without a floor is allowed; a named set must exist.
                None if n == FLOOR => {}
                None => {
                    let have: Vec<&str> = self.sets.keys().map(String::as_str).collect();
                    return Err(GatesError::NoSet(n.to_string(), have.join(", ")));
                }
            }
        }
        Ok(out)
    }
}

/// What a run measured, in the gates' units.
#[derive(Debug, Clone, Default)]
pub struct Measured {
    pub scenario: String,
    pub open: bool,
    /// Offered rate (open loop).
    pub rate: Option<f64>,
    pub p50_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub ok_rps: f64,
    pub error_rate: f64,
    /// (acknowledged, readable) when the durability check ran.
    pub durable: Option<(u64, u64)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Op {
    #[serde(rename = "<=")]
    AtMost,
    #[serde(rename = ">=")]
    AtLeast,
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Op::AtMost => "<=",
            Op::AtLeast => ">=",
        })
    }
}

/// One checked limit.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GateResult {
    pub set: String,
    pub scope: String,
    pub metric: String,
    pub op: Op,
    pub limit: f64,
    /// `None` when the run did not measure it (a failure).
    pub measured: Option<f64>,
    pub pass: bool,
}

impl fmt::Display for GateResult {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let measured = match self.measured {
            Some(v) => format!("measured {}", number(v)),
            None => "not measured".to_string(),
        };
        write!(
            f,
            "{}  {:<7} {:<24} {:<15} {} {:<12} {measured}",
            if self.pass { "PASS" } else { "FAIL" },
            self.set,
            self.scope,
            self.metric,
            self.op,
            number(self.limit),
        )
    }
}

fn number(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{v:.0}")
    } else {
        format!("{v:.3}")
    }
}

/// Checks every gate that applies to the run.
pub fn evaluate(gates: &[(String, Gate)], m: &Measured) -> Vec<GateResult> {
    let mut out = Vec::new();
    for (set, g) in gates {
        if !g.applies(&m.scenario, m.open) {
            continue;
        }
        let scope = format!(
            "{}/{}",
            m.scenario,
            match g.mode {
                GateMode::Any => "any",
                GateMode::Open => "open",
                GateMode::Closed => "closed",
            }
        );
        let mut check = |metric: &str, op: Op, limit: Option<f64>, measured: Option<f64>| {
            if let Some(limit) = limit {
                let pass = match (op, measured) {
                    (Op::AtMost, Some(v)) => v <= limit,
                    (Op::AtLeast, Some(v)) => v >= limit,
                    (_, None) => false,
                };
                out.push(GateResult {
                    set: set.clone(),
                    scope: scope.clone(),
                    metric: metric.to_string(),
                    op,
                    limit,
                    measured,
                    pass,
                });
            }
        };
        check("rate", Op::AtLeast, g.rate, m.rate);
        check("p50_ms", Op::AtMost, g.p50_ms, Some(m.p50_ms));
        check("p95_ms", Op::AtMost, g.p95_ms, Some(m.p95_ms));
        check("p99_ms", Op::AtMost, g.p99_ms, Some(m.p99_ms));
        check("p999_ms", Op::AtMost, g.p999_ms, Some(m.p999_ms));
        check("min_rps", Op::AtLeast, g.min_rps, Some(m.ok_rps));
        check(
            "max_error_rate",
            Op::AtMost,
            g.max_error_rate,
            Some(m.error_rate),
        );
        if g.require_durable {
            // The share of acknowledged submits that read back; 1 when all do.
            let share = m.durable.map(|(acked, readable)| {
                if acked == 0 {
                    1.0
                } else {
                    readable as f64 / acked as f64
                }
            });
            check("durable_share", Op::AtLeast, Some(1.0), share);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = r#"
        [[floor]]
        scenarios = ["*"]
        min_rps = 100.0
        max_error_rate = 0.01

        [[floor]]
        scenarios = ["health"]
        p95_ms = 80.0
        p99_ms = 150.0

        [[strict]]
        scenarios = ["health"]
        mode = "open"
        rate = 20000.0
        p99_ms = 1.0
        p999_ms = 5.0
        max_error_rate = 0.0

        [[strict]]
        scenarios = ["attestation-submit"]
        mode = "open"
        rate = 5000.0
        p99_ms = 25.0
        require_durable = true
    "#;

    fn health_open(p99_ms: f64, rate: f64) -> Measured {
        Measured {
            scenario: "health".into(),
            open: true,
            rate: Some(rate),
            p50_ms: 0.2,
            p95_ms: 0.5,
            p99_ms,
            p999_ms: 2.0,
            ok_rps: rate,
            error_rate: 0.0,
            durable: None,
        }
    }

    #[test]
    fn parses_sets_and_selects_floor_first() {
        let f = GatesFile::parse(FILE).unwrap();
        assert_eq!(f.sets["floor"].len(), 2);
        assert_eq!(f.sets["strict"][0].rate, Some(20000.0));
        assert_eq!(f.select("floor").unwrap().len(), 2);
        let strict = f.select("strict").unwrap();
        assert_eq!(strict.len(), 4);
        assert_eq!(strict[0].0, "floor");
        assert!(f.select("none").unwrap().is_empty());
        assert!(matches!(f.select("nope"), Err(GatesError::NoSet(..))));
    }

    #[test]
    fn refuses_bad_gates() {
        let bad = |t: &str| GatesFile::parse(t).is_err();
        assert!(bad("[[floor]]\nscenarios = [\"healthz\"]\np99_ms = 1.0\n"));
        assert!(bad("[[floor]]\nscenarios = [\"health\"]\n"));
        assert!(bad("[[floor]]\nscenarios = []\np99_ms = 1.0\n"));
        assert!(bad("[[floor]]\nscenarios = [\"health\"]\np99 = 1.0\n"));
        assert!(bad(
            "[[floor]]\nscenarios = [\"health\"]\nmode = \"closed\"\nrate = 5.0\n"
        ));
        assert!(bad(
            "[[floor]]\nscenarios = [\"health\"]\nmode = \"sideways\"\np99_ms = 1.0\n"
        ));
    }

    #[test]
    fn passing_run_passes() {
        let f = GatesFile::parse(FILE).unwrap();
        let r = evaluate(&f.select("strict").unwrap(), &health_open(0.8, 20000.0));
        // floor: min_rps, max_error_rate, p95, p99; strict: rate, p99, p999, errors.
        assert_eq!(r.len(), 8);
        assert!(r.iter().all(|g| g.pass), "{r:?}");
    }

    #[test]
    fn a_failing_gate_fails() {
        let f = GatesFile::parse(FILE).unwrap();
        let r = evaluate(&f.select("strict").unwrap(), &health_open(1.5, 20000.0));
        let failed: Vec<_> = r.iter().filter(|g| !g.pass).collect();
        assert_eq!(failed.len(), 1);
        assert_eq!(failed[0].metric, "p99_ms");
        assert_eq!(failed[0].measured, Some(1.5));
        assert!(failed[0].to_string().starts_with("FAIL  strict"));
    }

    #[test]
    fn a_lower_offered_rate_fails_the_rate_gate() {
        let f = GatesFile::parse(FILE).unwrap();
        let r = evaluate(&f.select("strict").unwrap(), &health_open(0.1, 1000.0));
        let failed: Vec<_> = r.iter().filter(|g| !g.pass).map(|g| &g.metric).collect();
        assert_eq!(failed, ["rate"]);
    }

    #[test]
    fn gates_of_other_modes_and_scenarios_do_not_apply() {
        let f = GatesFile::parse(FILE).unwrap();
        let mut m = health_open(50.0, 20000.0);
        m.open = false;
        m.rate = None;
        let r = evaluate(&f.select("strict").unwrap(), &m);
        assert_eq!(r.len(), 4, "floor only: {r:?}");
        m.scenario = "tipset".into();
        assert_eq!(evaluate(&f.select("strict").unwrap(), &m).len(), 2);
    }

    #[test]
    fn durability_needs_the_check_and_every_read() {
        let f = GatesFile::parse(FILE).unwrap();
        let gates = f.select("strict").unwrap();
        let mut m = health_open(5.0, 5000.0);
        m.scenario = "attestation-submit".into();
        let durable = |m: &Measured| {
            evaluate(&gates, m)
                .into_iter()
                .find(|g| g.metric == "durable_share")
                .unwrap()
        };
        assert!(!durable(&m).pass);
        assert_eq!(durable(&m).measured, None);
        m.durable = Some((100, 99));
        assert!(!durable(&m).pass);
        m.durable = Some((100, 100));
        assert!(durable(&m).pass);
    }
}
