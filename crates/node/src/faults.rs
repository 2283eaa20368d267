//! Fault points for the crash tests: with `NODE0_FAULTS=point,...` in its environment the
//! process aborts, as a `kill -9` would stop it, when it reaches one of the named points.
//! The crash tests use them to stop a node between two steps that no signal can be timed
//! to fall between (a vote recorded but not yet sent). Without the variable nothing
//! happens; the list is read once.

use std::sync::OnceLock;

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
