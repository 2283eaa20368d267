//! An attestation's RFC 8785 bytes written field by field.
//!
//! The generic canonicalizer (`crate::canonical`) serializes through serde, buffers every
//! key and value, re-parses each key to sort it by UTF-16 code units and formats every
//! integer through a float: a large share of every submission's and `/verify`'s CPU
//! (BENCHMARKS.md). The attestation's shape is fixed, so its keys can be written in their
//! canonical order directly; only the user-named keys of the number maps need sorting. A
//! property test (`tests/properties.rs`) checks that the output equals the generic
//! canonicalizer's for arbitrary attestations.

use std::cmp::Ordering;

use super::types::{
    Anchor, Attestation, Attester, Benchmarks, Evidence, Measurement, NumberMap, Resources,
    SignatureField,
};
use crate::canonical::CanonicalError;

/// Which `sig_base16` to write: the attestation's own, or `""` (the form that is signed).
#[derive(Clone, Copy)]
pub(super) enum Signature {
    Included,
    Blank,
}

pub(super) fn write(att: &Attestation, signature: Signature) -> Result<Vec<u8>, CanonicalError> {
    // Destructured in full so that a field added to the type fails to compile here.
    let Attestation {
        version,
        anchor,
        attester,
        resources,
        evidence,
        measurement,
        benchmarks,
        time_window,
        nonce,
        signature: signature_field,
    } = att;
    let mut w = Writer(Vec::with_capacity(1024));
    // Keys in UTF-16 order (all ASCII here, so byte order).
    w.open();
    w.key("anchor", true);
    w.anchor(anchor);
    w.key("attester", false);
    w.attester(attester);
    if let Some(b) = benchmarks {
        w.key("benchmarks", false);
        w.benchmarks(b)?;
    }
    w.key("evidence", false);
    w.evidence(evidence);
    w.key("measurement", false);
    w.measurement(measurement)?;
    w.key("nonce", false);
    w.string(nonce);
    if let Some(r) = resources {
        w.key("resources", false);
        w.resources(r);
    }
    w.key("signature", false);
    w.signature(signature_field, signature);
    w.key("time_window", false);
    w.0.push(b'[');
    w.string(&time_window[0]);
    w.0.push(b',');
    w.string(&time_window[1]);
    w.0.push(b']');
    w.key("version", false);
    w.string(version);
    w.close();
    Ok(w.0)
}

struct Writer(Vec<u8>);

impl Writer {
    fn open(&mut self) {
        self.0.push(b'{');
    }

    fn close(&mut self) {
        self.0.push(b'}');
    }

    /// A fixed ASCII key (needs no escaping), preceded by a comma unless it is the first.
    fn key(&mut self, key: &str, first: bool) {
        if !first {
            self.0.push(b',');
        }
        self.0.push(b'"');
        self.0.extend_from_slice(key.as_bytes());
        self.0.extend_from_slice(b"\":");
    }

    /// A key in an object whose members are optional: preceded by a comma when a member
    /// came before it.
    fn member(&mut self, key: &str, any_before: &mut bool) {
        self.key(key, !*any_before);
        *any_before = true;
    }

    /// A JSON string with RFC 8785's escapes: `"`, `\` and the C0 controls (as `\b \t \n
    /// \f \r` or `\u00xx` in lower-case hex), everything else as its UTF-8.
    fn string(&mut self, s: &str) {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let out = &mut self.0;
        out.push(b'"');
        let bytes = s.as_bytes();
        let mut start = 0;
        for (i, &b) in bytes.iter().enumerate() {
            let escape: &[u8] = match b {
                b'"' => b"\\\"",
                b'\\' => b"\\\\",
                0x08 => b"\\b",
                b'\t' => b"\\t",
                b'\n' => b"\\n",
                0x0c => b"\\f",
                b'\r' => b"\\r",
                0x00..=0x1f => {
                    out.extend_from_slice(&bytes[start..i]);
                    out.extend_from_slice(b"\\u00");
                    out.push(HEX[usize::from(b >> 4)]);
                    out.push(HEX[usize::from(b & 0xf)]);
                    start = i + 1;
                    continue;
                }
                _ => continue,
            };
            out.extend_from_slice(&bytes[start..i]);
            out.extend_from_slice(escape);
            start = i + 1;
        }
        out.extend_from_slice(&bytes[start..]);
        out.push(b'"');
    }

    /// A number in ECMAScript's shortest round-trip form (RFC 8785 §3.2.2.3).
    fn number(&mut self, value: f64) -> Result<(), CanonicalError> {
        if !value.is_finite() {
            return Err(CanonicalError::new("non-finite number"));
        }
        let mut buffer = ryu_js::Buffer::new();
        self.0
            .extend_from_slice(buffer.format_finite(value).as_bytes());
        Ok(())
    }

    /// Integers are written as the double they denote, as the generic canonicalizer does
    /// (parsing guarantees they are at most 2^53, so the value is exact).
    fn integer(&mut self, value: u64) {
        let mut buffer = ryu_js::Buffer::new();
        #[allow(clippy::cast_precision_loss)]
        let as_double = value as f64;
        self.0
            .extend_from_slice(buffer.format_finite(as_double).as_bytes());
    }

    fn number_map(&mut self, map: &NumberMap) -> Result<(), CanonicalError> {
        self.open();
        // BTreeMap iterates in UTF-8 byte order, which equals UTF-16 order unless a key
        // holds a character at or above U+E000 (UTF-8 lead byte 0xEE or more).
        if map.keys().all(|k| k.bytes().all(|b| b < 0xee)) {
            for (i, (k, v)) in map.iter().enumerate() {
                self.entry(i, k, *v)?;
            }
        } else {
            let mut entries: Vec<(&String, &f64)> = map.iter().collect();
            entries.sort_by(|a, b| utf16_order(a.0, b.0));
            for (i, (k, v)) in entries.into_iter().enumerate() {
                self.entry(i, k, *v)?;
            }
        }
        self.close();
        Ok(())
    }

    fn entry(&mut self, index: usize, key: &str, value: f64) -> Result<(), CanonicalError> {
        if index > 0 {
            self.0.push(b',');
        }
        self.string(key);
        self.0.push(b':');
        self.number(value)
    }

    fn anchor(&mut self, anchor: &Anchor) {
        let Anchor {
            chain_id,
            genesis_merkle_root,
            block_ref,
        } = anchor;
        self.open();
        let mut any = false;
        if let Some(r) = block_ref {
            self.member("block_ref", &mut any);
            self.string(r);
        }
        self.member("chain_id", &mut any);
        self.string(chain_id);
        self.member("genesis_merkle_root", &mut any);
        self.string(genesis_merkle_root);
        self.close();
    }

    fn attester(&mut self, attester: &Attester) {
        let Attester { id, pubkey_ed25519 } = attester;
        self.open();
        self.key("id", true);
        self.string(id);
        self.key("pubkey_ed25519", false);
        self.string(pubkey_ed25519);
        self.close();
    }

    fn benchmarks(&mut self, benchmarks: &Benchmarks) -> Result<(), CanonicalError> {
        let Benchmarks { pre, post, delta } = benchmarks;
        self.open();
        let mut any = false;
        if let Some(d) = delta {
            self.member("delta", &mut any);
            self.number(*d)?;
        }
        if let Some(m) = post {
            self.member("post", &mut any);
            self.number_map(m)?;
        }
        if let Some(m) = pre {
            self.member("pre", &mut any);
            self.number_map(m)?;
        }
        self.close();
        Ok(())
    }

    fn evidence(&mut self, evidence: &Evidence) {
        let Evidence {
            pack_sha256,
            pack_bytes,
            files_processed,
            redactions_count,
            methodology_ref,
        } = evidence;
        self.open();
        let mut any = false;
        if let Some(n) = files_processed {
            self.member("files_processed", &mut any);
            self.integer(*n);
        }
        if let Some(m) = methodology_ref {
            self.member("methodology_ref", &mut any);
            self.string(m);
        }
        if let Some(n) = pack_bytes {
            self.member("pack_bytes", &mut any);
            self.integer(*n);
        }
        self.member("pack_sha256", &mut any);
        self.string(pack_sha256);
        if let Some(n) = redactions_count {
            self.member("redactions_count", &mut any);
            self.integer(*n);
        }
        self.close();
    }

    fn measurement(&mut self, measurement: &Measurement) -> Result<(), CanonicalError> {
        let Measurement {
            dimensions,
            weights,
            impact_score,
        } = measurement;
        self.open();
        self.key("dimensions", true);
        self.number_map(dimensions)?;
        self.key("impact_score", false);
        self.number(*impact_score)?;
        self.key("weights", false);
        self.number_map(weights)?;
        self.close();
        Ok(())
    }

    fn resources(&mut self, resources: &Resources) {
        let Resources {
            cpu_cores,
            ram_gb,
            gpu_vram_gb,
            wallclock_sec,
        } = resources;
        self.open();
        let mut any = false;
        if let Some(n) = cpu_cores {
            self.member("cpu_cores", &mut any);
            self.integer(u64::from(*n));
        }
        if let Some(n) = gpu_vram_gb {
            self.member("gpu_vram_gb", &mut any);
            self.integer(u64::from(*n));
        }
        if let Some(n) = ram_gb {
            self.member("ram_gb", &mut any);
            self.integer(u64::from(*n));
        }
        if let Some(n) = wallclock_sec {
            self.member("wallclock_sec", &mut any);
            self.integer(*n);
        }
        self.close();
    }

    fn signature(&mut self, field: &SignatureField, which: Signature) {
        let SignatureField { alg, sig_base16 } = field;
        self.open();
        self.key("alg", true);
        self.string(alg);
        self.key("sig_base16", false);
        match which {
            Signature::Included => self.string(sig_base16),
            Signature::Blank => self.string(""),
        }
        self.close();
    }
}

/// RFC 8785 §3.2.3: object keys compare by their UTF-16 code units.
fn utf16_order(a: &str, b: &str) -> Ordering {
    a.encode_utf16().cmp(b.encode_utf16())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::attestation::sample::signed_sample;
    use crate::canonical::to_canonical_bytes;

    #[test]
    fn equals_the_generic_canonicalizer_on_a_sample() {
        let (att, _) = signed_sample(3);
        assert_eq!(
            write(&att, Signature::Included).unwrap(),
            to_canonical_bytes(&att).unwrap()
        );
    }

    #[test]
    fn escapes_like_rfc_8785() {
        let mut w = Writer(Vec::new());
        w.string("a\"b\\c\u{8}\t\n\u{c}\r\u{1}\u{1f}\u{7f}/\u{2028}é");
        assert_eq!(
            String::from_utf8(w.0).unwrap(),
            "\"a\\\"b\\\\c\\b\\t\\n\\f\\r\\u0001\\u001f\u{7f}/\u{2028}é\""
        );
    }

    #[test]
    fn sorts_map_keys_by_utf16_when_utf8_order_differs() {
        let map: NumberMap = [
            ("\u{fb01}".to_string(), 1.0),
            ("\u{1f600}".to_string(), 2.0),
        ]
        .into_iter()
        .collect();
        let mut w = Writer(Vec::new());
        w.number_map(&map).unwrap();
        assert_eq!(
            String::from_utf8(w.0).unwrap(),
            "{\"\u{1f600}\":2,\"\u{fb01}\":1}"
        );
    }

    #[test]
    fn refuses_non_finite_numbers() {
        let mut w = Writer(Vec::new());
        assert!(w.number(f64::NAN).is_err());
        assert!(w.number(f64::INFINITY).is_err());
    }
}
