//! Calls to peer validators: a circuit breaker per peer, the retry policy, and the peer
//! set that puts them together with the pooled client and the metrics.

pub(crate) mod breaker;
pub(crate) mod retry;
pub(crate) mod set;
