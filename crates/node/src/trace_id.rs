//! The trace id of the request being handled: the client's own (`X-Trace-Id`) when it is
//! short and plain, else a new one; held in a task-local while the request runs, so that
//! problem bodies and log lines carry it without passing it around.

use std::future::Future;

use axum::http::HeaderMap;
use tokio::task::futures::TaskLocalFuture;

pub(crate) const TRACE_HEADER: &str = "x-trace-id";

tokio::task_local! {
    static TRACE_ID: String;
}

/// The trace id of the request being handled on this task.
pub(crate) fn current() -> Option<String> {
    TRACE_ID.try_with(|t| t.clone()).ok()
}

/// Runs `f` with `id` as the current trace id.
pub(crate) fn scope<F: Future>(id: String, f: F) -> TaskLocalFuture<String, F> {
    TRACE_ID.scope(id, f)
}

/// Runs `f` with `id` as the current trace id, synchronously.
pub(crate) fn sync_scope<R>(id: String, f: impl FnOnce() -> R) -> R {
    TRACE_ID.sync_scope(id, f)
}

/// A client's own trace id is kept when it is short and plain; otherwise a new one.
pub(crate) fn of_request(headers: &HeaderMap) -> String {
    headers
        .get(TRACE_HEADER)
        .and_then(|v| v.to_str().ok())
        .filter(|s| {
            !s.is_empty()
                && s.len() <= 128
                && s.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        })
        .map(str::to_owned)
        .unwrap_or_else(new_id)
}

/// A process-unique id without a syscall per request: a random 64-bit prefix drawn once,
/// then a counter. Unique within the process, unpredictable across processes.
fn new_id() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::OnceLock;
    static PREFIX: OnceLock<u64> = OnceLock::new();
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let prefix = *PREFIX.get_or_init(|| {
        let mut b = [0u8; 8];
        if getrandom::fill(&mut b).is_err() {
            // Never seen; the time still separates processes well enough for logs.
            let t = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or_default();
            b = t.to_le_bytes();
        }
        u64::from_le_bytes(b)
    });
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    // Hex by table rather than `format!`: this runs on every request that brings no id.
    hex::encode(((u128::from(prefix) << 64) | u128::from(n)).to_be_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_trace_ids_are_a_fixed_prefix_and_a_counter_in_hex() {
        let a = new_id();
        let b = new_id();
        for id in [&a, &b] {
            assert_eq!(id.len(), 32, "{id}");
            assert!(
                id.bytes().all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f')),
                "{id}"
            );
        }
        assert_eq!(a[..16], b[..16], "one prefix per process");
        let n = |id: &str| u64::from_str_radix(&id[16..], 16).unwrap();
        assert!(n(&b) > n(&a), "{a} {b}");
    }
}
