//! RFC 8785 (JCS) canonical JSON, the byte form every digest and signature is taken over.

use serde::Serialize;

/// A value that serde could not turn into canonical JSON (a non-finite float, say).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot canonicalize: {0}")]
pub struct CanonicalError(String);

impl CanonicalError {
    pub(crate) fn new(reason: impl Into<String>) -> Self {
        CanonicalError(reason.into())
    }
}

/// The RFC 8785 bytes of `value`: sorted keys (UTF-16 order), no whitespace, ECMAScript
/// number formatting.
pub fn to_canonical_bytes<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, CanonicalError> {
    serde_jcs::to_vec(value).map_err(|e| CanonicalError(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn sorts_keys_and_formats_numbers_like_ecmascript() {
        let v = json!({"b": 1.0, "a": [1e-7, 0.1, 1e21, -0.0, 100], "é": "\u{20ac}"});
        let s = String::from_utf8(to_canonical_bytes(&v).unwrap()).unwrap();
        assert_eq!(s, r#"{"a":[1e-7,0.1,1e+21,0,100],"b":1,"é":"€"}"#);
    }

    #[test]
    fn keys_sort_by_utf16_code_units() {
        // U+1F600 (surrogates D83D DE00) sorts before U+FB01 in UTF-16, after it in UTF-8.
        let v = json!({"\u{fb01}": 1, "\u{1f600}": 2});
        let s = String::from_utf8(to_canonical_bytes(&v).unwrap()).unwrap();
        assert_eq!(s, "{\"\u{1f600}\":2,\"\u{fb01}\":1}");
    }
}
