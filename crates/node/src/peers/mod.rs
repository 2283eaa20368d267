//! Calls to peer validators: a circuit breaker per peer and the retry policy.
//! [`breaker`] decides from the recent outcomes of calls to one peer whether to call
//! it at all (SPEC §5.3); [`retry`] decides whether and when a failed call is tried
//! again, and builds the pooled HTTP client those calls go through.

pub mod breaker;
pub mod retry;
