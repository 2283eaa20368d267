//! Fault injection for the crash and randomized tests. Without the variables below
//! nothing happens; each is read once.
//!
//! - `NODE0_FAULTS=point,...`: the process aborts, as a `kill -9` would stop it, when it
//!   reaches one of the named points. The crash tests use them to stop a node between two
//!   steps that no signal can be timed to fall between (a vote recorded but not yet sent).
//! - `NODE0_NET_FAULTS=seed=S,delay_ms=D,drop_pct=P`: every call to a peer waits a random
//!   time up to D ms before it is sent, and loses its request or its answer with
//!   probability P % each (a lost answer: the peer acted, this node sees a timeout). The
//!   draws come from a generator seeded with S, so that a failing schedule can be run
//!   again with its seed.

use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// After a vote's slot is recorded in the store, before the vote is signed and sent.
pub(crate) const AFTER_VOTE_RECORD: &str = "after-vote-record";

fn armed() -> &'static [String] {
    static ARMED: OnceLock<Vec<String>> = OnceLock::new();
    ARMED.get_or_init(|| {
        std::env::var("NODE0_FAULTS")
            .map(|v| v.split(',').map(|s| s.trim().to_string()).collect())
            .unwrap_or_default()
    })
}

/// Aborts the process if `point` is armed.
pub(crate) fn hit(point: &str) {
    if armed().iter().any(|p| p == point) {
        eprintln!("fault point {point} reached: aborting");
        std::process::abort();
    }
}

/// What the network faults decided for one peer call.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Fate {
    pub(crate) delay: Duration,
    pub(crate) lose_request: bool,
    pub(crate) lose_answer: bool,
}

#[derive(Debug)]
struct NetFaults {
    rng: Mutex<StdRng>,
    max_delay_ms: u64,
    drop_pct: u32,
}

impl NetFaults {
    /// Parses `seed=S,delay_ms=D,drop_pct=P` (each optional; unknown keys refused).
    fn parse(spec: &str) -> Result<NetFaults, String> {
        let (mut seed, mut delay, mut drop) = (0u64, 0u64, 0u32);
        for part in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (k, v) = part
                .split_once('=')
                .ok_or_else(|| format!("{part}: expected key=value"))?;
            let bad = |e: std::num::ParseIntError| format!("{part}: {e}");
            match k {
                "seed" => seed = v.parse().map_err(bad)?,
                "delay_ms" => delay = v.parse().map_err(bad)?,
                "drop_pct" => drop = v.parse().map_err(bad)?,
                _ => return Err(format!("{k}: unknown (seed, delay_ms, drop_pct)")),
            }
        }
        if drop > 100 {
            return Err(format!("drop_pct={drop}: at most 100"));
        }
        Ok(NetFaults {
            rng: Mutex::new(StdRng::seed_from_u64(seed)),
            max_delay_ms: delay,
            drop_pct: drop,
        })
    }

    fn draw(&self) -> Fate {
        let mut rng = self.rng.lock().unwrap_or_else(|p| p.into_inner());
        Fate {
            delay: Duration::from_millis(rng.gen_range(0..=self.max_delay_ms)),
            lose_request: rng.gen_range(0..100) < self.drop_pct,
            lose_answer: rng.gen_range(0..100) < self.drop_pct,
        }
    }
}

fn net() -> Option<&'static NetFaults> {
    static NET: OnceLock<Option<NetFaults>> = OnceLock::new();
    NET.get_or_init(|| {
        let spec = std::env::var("NODE0_NET_FAULTS").ok()?;
        match NetFaults::parse(&spec) {
            Ok(f) => {
                eprintln!("network faults armed: {spec}");
                Some(f)
            }
            // A test that asked for faults and got none would pass for the wrong reason.
            Err(e) => {
                eprintln!("NODE0_NET_FAULTS={spec}: {e}");
                std::process::abort();
            }
        }
    })
    .as_ref()
}

/// Reads the fault variables now, so that a bad `NODE0_NET_FAULTS` stops the process at
/// start rather than at its first peer call.
pub(crate) fn arm() {
    let _ = armed();
    let _ = net();
}

/// The fate of the next peer call: no delay and nothing lost unless network faults are
/// armed.
pub(crate) fn next_call() -> Fate {
    net().map(NetFaults::draw).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_seed_draws_one_schedule() {
        let a = NetFaults::parse("seed=7,delay_ms=40,drop_pct=10").expect("spec");
        let b = NetFaults::parse("seed=7,delay_ms=40,drop_pct=10").expect("spec");
        let draws: Vec<Fate> = (0..200).map(|_| a.draw()).collect();
        assert_eq!(draws, (0..200).map(|_| b.draw()).collect::<Vec<_>>());
        assert!(draws.iter().all(|f| f.delay <= Duration::from_millis(40)));
        let lost = draws.iter().filter(|f| f.lose_request).count();
        assert!((5..=40).contains(&lost), "{lost} of 200 lost at 10 %");
        let c = NetFaults::parse("seed=8,delay_ms=40,drop_pct=10").expect("spec");
        assert_ne!(draws, (0..200).map(|_| c.draw()).collect::<Vec<_>>());
    }

    #[test]
    fn a_bad_spec_is_refused() {
        for spec in ["seed", "seed=x", "drop_pct=101", "jitter=5"] {
            assert!(NetFaults::parse(spec).is_err(), "{spec}");
        }
        let none = NetFaults::parse("").expect("empty");
        assert_eq!(none.draw(), Fate::default());
    }
}
