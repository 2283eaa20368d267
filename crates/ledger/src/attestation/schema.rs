//! Strict parsing: unknown fields, wrong types, `null` for an optional field, duplicate
//! keys, over-long maps and names are all errors that name the field path.

use std::collections::BTreeMap;
use std::fmt;

use serde::de::{Deserializer, MapAccess, Visitor};
use serde::Deserialize;

use super::types::{Attestation, NumberMap};

/// Largest number of entries in a dimensions, weights or benchmark map.
pub const MAX_MAP_ENTRIES: usize = 64;
/// Longest map key, in characters.
pub const MAX_NAME_CHARS: usize = 64;
/// Longest attester id, in characters.
pub const MAX_ATTESTER_ID_CHARS: usize = 128;
/// Largest integer accepted in an integer field: 2^53 − 1, so that every implementation
/// of RFC 8785 (which formats numbers as IEEE doubles) writes it the same way.
pub const MAX_SAFE_INTEGER: u64 = (1 << 53) - 1;

/// Why a body is not a well-formed `poi-1.0` attestation.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{kind}: {message} (at `{field}`)")]
pub struct SchemaError {
    pub kind: SchemaErrorKind,
    /// Dotted path of the offending field (`measurement.weights`, `time_window[1]`), or `.`
    /// for the document itself.
    pub field: String,
    pub message: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SchemaErrorKind {
    /// Not JSON at all: syntax error, truncated, invalid UTF-8.
    InvalidJson,
    /// JSON, but not an attestation: wrong type, unknown or missing field, limits.
    Schema,
}

impl SchemaErrorKind {
    pub fn code(self) -> &'static str {
        match self {
            SchemaErrorKind::InvalidJson => "invalid_json",
            SchemaErrorKind::Schema => "schema",
        }
    }
}

impl fmt::Display for SchemaErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

impl Attestation {
    /// Parses a JSON body strictly (see the module docs).
    pub fn from_json(bytes: &[u8]) -> Result<Attestation, SchemaError> {
        // Tracking the field path costs on every token; a body that parses does not need
        // it, so it is tracked only to explain a failure, by parsing again.
        let mut de = serde_json::Deserializer::from_slice(bytes);
        if let Ok(att) = Attestation::deserialize(&mut de).and_then(|att| de.end().map(|()| att)) {
            att.check_limits()?;
            return Ok(att);
        }
        let mut de = serde_json::Deserializer::from_slice(bytes);
        let att: Attestation =
            serde_path_to_error::deserialize(&mut de).map_err(|e| from_path_error(&e, bytes))?;
        de.end().map_err(|e| SchemaError {
            kind: SchemaErrorKind::InvalidJson,
            field: ".".into(),
            message: e.to_string(),
        })?;
        att.check_limits()?;
        Ok(att)
    }

    /// Parses one attestation out of an already-parsed JSON value (batch bodies).
    pub fn from_value(value: serde_json::Value) -> Result<Attestation, SchemaError> {
        let att: Attestation =
            serde_path_to_error::deserialize(value).map_err(|e| from_value_error(&e))?;
        att.check_limits()?;
        Ok(att)
    }

    fn check_limits(&self) -> Result<(), SchemaError> {
        let n = self.attester.id.chars().count();
        if n == 0 || n > MAX_ATTESTER_ID_CHARS {
            return Err(SchemaError {
                kind: SchemaErrorKind::Schema,
                field: "attester.id".into(),
                message: format!("must be 1 to {MAX_ATTESTER_ID_CHARS} characters"),
            });
        }
        Ok(())
    }
}

fn field_path<E>(e: &serde_path_to_error::Error<E>) -> String {
    let p = e.path().to_string();
    // `?` is serde_path_to_error's name for a map key it never read (`{bad`): at the
    // top, that is the document itself.
    if p.is_empty() || p == "?" {
        ".".into()
    } else {
        p
    }
}

fn is_json(body: &[u8]) -> bool {
    serde_json::from_slice::<serde::de::IgnoredAny>(body).is_ok()
}

fn from_path_error(e: &serde_path_to_error::Error<serde_json::Error>, body: &[u8]) -> SchemaError {
    use serde_json::error::Category;
    let inner = e.inner();
    let kind = match inner.classify() {
        Category::Data => SchemaErrorKind::Schema,
        Category::Syntax | Category::Eof | Category::Io => SchemaErrorKind::InvalidJson,
    };
    // A type error can surface before the parser reaches a syntax error further on
    // (`[1,2` fails on the `1`): a body that is not JSON at all is reported as such.
    if kind == SchemaErrorKind::Schema && !is_json(body) {
        return SchemaError {
            kind: SchemaErrorKind::InvalidJson,
            field: ".".into(),
            message: match serde_json::from_slice::<serde::de::IgnoredAny>(body) {
                Err(e) => e.to_string(),
                Ok(_) => String::new(),
            },
        };
    }
    // A syntax error's position is the most a client can be told; a data error's field
    // path says more than its position.
    let message = match kind {
        SchemaErrorKind::InvalidJson => inner.to_string(),
        SchemaErrorKind::Schema => strip_position(&inner.to_string()),
    };
    SchemaError {
        kind,
        field: field_path(e),
        message,
    }
}

fn from_value_error(e: &serde_path_to_error::Error<serde_json::Error>) -> SchemaError {
    SchemaError {
        kind: SchemaErrorKind::Schema,
        field: field_path(e),
        message: strip_position(&e.inner().to_string()),
    }
}

/// serde_json appends " at line L column C"; for data errors the field path says more.
fn strip_position(msg: &str) -> String {
    match msg.rfind(" at line ") {
        Some(i) => msg[..i].to_string(),
        None => msg.to_string(),
    }
}

/// For `Option<T>` fields: absent is `None`, `null` is an error (docs/protocol.md §2.1: an
/// optional member is absent or of its type, never `null`), anything else must be a `T`.
pub(crate) fn non_null<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    T::deserialize(d).map(Some)
}

/// An optional integer no larger than [`MAX_SAFE_INTEGER`].
pub(crate) fn safe_u64<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    let v = u64::deserialize(d)?;
    if v > MAX_SAFE_INTEGER {
        return Err(serde::de::Error::custom(format!(
            "integer {v} is larger than 2^53 - 1"
        )));
    }
    Ok(Some(v))
}

/// A JSON number as f64. Integer literals beyond ±(2^53 − 1) are refused: they would be
/// rounded, and RFC 8785 implementations disagree on them (some refuse, some round), so
/// the attestation's id would depend on the implementation.
pub(crate) struct SafeF64(pub f64);

impl<'de> Deserialize<'de> for SafeF64 {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_f64(SafeF64Visitor).map(SafeF64)
    }
}

struct SafeF64Visitor;

impl Visitor<'_> for SafeF64Visitor {
    type Value = f64;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a number (integers within ±(2^53 - 1))")
    }

    fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<f64, E> {
        Ok(v)
    }

    fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<f64, E> {
        if v > MAX_SAFE_INTEGER {
            return Err(E::custom(format!("integer {v} is larger than 2^53 - 1")));
        }
        Ok(v as f64)
    }

    fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<f64, E> {
        if v.unsigned_abs() > MAX_SAFE_INTEGER {
            return Err(E::custom(format!("integer {v} is beyond ±(2^53 - 1)")));
        }
        Ok(v as f64)
    }
}

pub(crate) fn safe_f64<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    SafeF64::deserialize(d).map(|v| v.0)
}

pub(crate) fn safe_f64_opt<'de, D: Deserializer<'de>>(d: D) -> Result<Option<f64>, D::Error> {
    SafeF64::deserialize(d).map(|v| Some(v.0))
}

pub(crate) fn strict_map<'de, D: Deserializer<'de>>(d: D) -> Result<NumberMap, D::Error> {
    d.deserialize_map(StrictMapVisitor)
}

pub(crate) fn strict_map_opt<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<Option<NumberMap>, D::Error> {
    strict_map(d).map(Some)
}

struct StrictMapVisitor;

impl<'de> Visitor<'de> for StrictMapVisitor {
    type Value = NumberMap;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(
            f,
            "an object of at most {MAX_MAP_ENTRIES} numbers with unique names of 1 to {MAX_NAME_CHARS} characters"
        )
    }

    fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<NumberMap, A::Error> {
        use serde::de::Error;
        let mut map = BTreeMap::new();
        while let Some(name) = access.next_key::<String>()? {
            let n = name.chars().count();
            if n == 0 || n > MAX_NAME_CHARS {
                return Err(A::Error::custom(format!(
                    "name {name:?} must be 1 to {MAX_NAME_CHARS} characters"
                )));
            }
            if map.len() == MAX_MAP_ENTRIES {
                return Err(A::Error::custom(format!(
                    "more than {MAX_MAP_ENTRIES} entries"
                )));
            }
            let SafeF64(value) = access.next_value()?;
            if map.insert(name.clone(), value).is_some() {
                return Err(A::Error::custom(format!("duplicate name {name:?}")));
            }
        }
        Ok(map)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::attestation::sample::signed_sample;

    fn sample_value() -> serde_json::Value {
        serde_json::to_value(signed_sample(1).0).unwrap()
    }

    fn parse(v: &serde_json::Value) -> Result<Attestation, SchemaError> {
        Attestation::from_json(v.to_string().as_bytes())
    }

    #[test]
    fn round_trips_a_valid_attestation() {
        let (att, _) = signed_sample(1);
        let bytes = att.to_canonical_json().unwrap();
        assert_eq!(Attestation::from_json(&bytes).unwrap(), att);
    }

    #[test]
    fn unknown_field_names_its_path() {
        let mut v = sample_value();
        v["evidence"]["extra"] = 1.into();
        let e = parse(&v).unwrap_err();
        assert_eq!(e.kind, SchemaErrorKind::Schema);
        assert_eq!(e.field, "evidence.extra");
    }

    #[test]
    fn wrong_type_names_its_path() {
        let mut v = sample_value();
        v["measurement"]["impact_score"] = "high".into();
        let e = parse(&v).unwrap_err();
        assert_eq!(e.field, "measurement.impact_score");
        let mut v = sample_value();
        v["time_window"][1] = 5.into();
        assert_eq!(parse(&v).unwrap_err().field, "time_window[1]");
    }

    #[test]
    fn null_for_optional_is_refused() {
        let mut v = sample_value();
        v["resources"] = serde_json::Value::Null;
        assert_eq!(parse(&v).unwrap_err().field, "resources");
    }

    #[test]
    fn map_limits() {
        let mut v = sample_value();
        let many: serde_json::Map<_, _> = (0..65).map(|i| (format!("d{i}"), 0.5.into())).collect();
        v["measurement"]["dimensions"] = many.into();
        assert_eq!(parse(&v).unwrap_err().field, "measurement.dimensions");
        let mut v = sample_value();
        v["measurement"]["weights"] = serde_json::json!({ "x".repeat(65): 1.0 });
        assert_eq!(parse(&v).unwrap_err().field, "measurement.weights");
        let mut v = sample_value();
        v["measurement"]["weights"] = serde_json::json!({ "": 1.0 });
        assert_eq!(parse(&v).unwrap_err().field, "measurement.weights");
    }

    #[test]
    fn duplicate_map_key_is_refused() {
        let (att, _) = signed_sample(1);
        let text = String::from_utf8(att.to_canonical_json().unwrap()).unwrap();
        let dup = text.replacen("\"weights\":{", "\"weights\":{\"quality\":0.5,", 1);
        let e = Attestation::from_json(dup.as_bytes()).unwrap_err();
        assert_eq!(e.field, "measurement.weights");
        assert!(e.message.contains("duplicate"), "{}", e.message);
    }

    #[test]
    fn syntax_errors_are_invalid_json() {
        for body in [&b"{"[..], b"", b"[1,2", b"{\"version\": NaN}", b"\xff\xfe"] {
            let e = Attestation::from_json(body).unwrap_err();
            assert_eq!(e.kind, SchemaErrorKind::InvalidJson, "{body:?}: {e}");
        }
        let (att, _) = signed_sample(1);
        let mut bytes = att.to_canonical_json().unwrap();
        bytes.extend_from_slice(b" {}");
        assert_eq!(
            Attestation::from_json(&bytes).unwrap_err().kind,
            SchemaErrorKind::InvalidJson
        );
    }

    #[test]
    fn a_syntax_error_says_where_it_is() {
        let e = Attestation::from_json(b"{bad").unwrap_err();
        assert_eq!(e.kind, SchemaErrorKind::InvalidJson);
        assert_eq!(e.field, ".");
        assert!(e.message.ends_with("at line 1 column 2"), "{}", e.message);
        let e = Attestation::from_json(b"{\"version\": NaN}").unwrap_err();
        assert_eq!(e.field, "version");
        assert!(e.message.ends_with("at line 1 column 13"), "{}", e.message);
    }

    #[test]
    fn integers_beyond_2_pow_53_are_refused() {
        let mut v = sample_value();
        v["evidence"]["pack_bytes"] = (MAX_SAFE_INTEGER + 1).into();
        assert_eq!(parse(&v).unwrap_err().field, "evidence.pack_bytes");
        v["evidence"]["pack_bytes"] = MAX_SAFE_INTEGER.into();
        assert!(parse(&v).is_ok());
    }

    #[test]
    fn unsafe_integer_literals_in_number_fields_are_refused() {
        let (att, _) = signed_sample(1);
        let text = String::from_utf8(att.to_canonical_json().unwrap()).unwrap();
        let big = text.replacen("\"quality\":0.9", "\"quality\":9007199254740993", 1);
        let e = Attestation::from_json(big.as_bytes()).unwrap_err();
        assert_eq!(e.field, "measurement.dimensions.quality");
        let ok = text.replacen("\"quality\":0.9", "\"quality\":1", 1);
        assert!(Attestation::from_json(ok.as_bytes()).is_ok());
        let big = text.replacen("\"delta\":0.25", "\"delta\":-9007199254740993", 1);
        assert_eq!(
            Attestation::from_json(big.as_bytes()).unwrap_err().field,
            "benchmarks.delta"
        );
    }

    #[test]
    fn huge_numbers_are_schema_errors() {
        let (att, _) = signed_sample(1);
        let text = String::from_utf8(att.to_canonical_json().unwrap()).unwrap();
        let big = text.replacen("\"impact_score\":", "\"impact_score\":1e999,\"x\":", 1);
        assert!(Attestation::from_json(big.as_bytes()).is_err());
    }

    #[test]
    fn attester_id_length() {
        let mut v = sample_value();
        v["attester"]["id"] = "".into();
        assert_eq!(parse(&v).unwrap_err().field, "attester.id");
        v["attester"]["id"] = "é".repeat(128).into();
        assert!(parse(&v).is_ok());
        v["attester"]["id"] = "é".repeat(129).into();
        assert_eq!(parse(&v).unwrap_err().field, "attester.id");
    }
}
