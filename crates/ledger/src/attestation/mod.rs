//! `poi-1.0` attestations: the wire type, strict parsing, canonical bytes and digest, and
//! the validation rules.

pub mod builder;
mod canonical;
pub mod rules;
pub mod schema;
pub mod types;

#[cfg(test)]
pub(crate) mod sample;

pub use rules::{check_nonce, check_rules, validate, Checked, Rejection, RuleCode};
pub use schema::{SchemaError, SchemaErrorKind};
pub use types::{Attestation, NumberMap, VERSION};
