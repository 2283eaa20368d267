//! Property tests of the formats: canonical bytes do not depend on how the JSON was
//! written, signatures round-trip, and no single-bit change to a signed attestation or a
//! signature survives validation.

use std::collections::BTreeMap;

use bizra_ledger::attestation::builder::Draft;
use bizra_ledger::attestation::{validate, Attestation};
use bizra_ledger::crypto::{verify, Keypair, SignatureBytes};
use bizra_ledger::params::NetworkAnchor;
use bizra_ledger::Hash32;
use proptest::prelude::*;
use serde_json::Value;
use time::macros::datetime;

fn now() -> time::OffsetDateTime {
    datetime!(2026-11-28 12:00 UTC)
}

/// Dimension names, unicode included (UTF-16 and UTF-8 orders differ for some).
fn name() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z_]{1,12}",
        Just("é".to_string()),
        Just("\u{fb01}".to_string()),
        Just("\u{1f600}x".to_string()),
        Just("Z".to_string()),
    ]
}

prop_compose! {
    fn signed_attestation()(
        seed in any::<[u8; 32]>(),
        dims in prop::collection::btree_map(name(), 0.0f64..=1.0, 1..8),
        id in "[a-zA-Z0-9 \u{e9}\u{4e2d}-]{1,40}",
        nonce in "[0-9a-f]{32,64}",
    ) -> (Attestation, Keypair) {
        let key = Keypair::from_seed(seed);
        let w = 1.0 / dims.len() as f64;
        let weights: BTreeMap<String, f64> = dims.keys().map(|k| (k.clone(), w)).collect();
        let draft = Draft {
            network: NetworkAnchor::default(),
            attester_id: id,
            pack_sha256: Hash32::digest(nonce.as_bytes()),
            dimensions: dims,
            weights,
            time_window: ["2026-11-27T00:00:00Z".into(), "2026-11-28T00:00:00Z".into()],
            nonce,
            resources: None,
            benchmarks: None,
            methodology_ref: None,
        };
        let (att, _) = draft.sign(&key).expect("canonicalizes");
        (att, key)
    }
}

/// Writes `v` as JSON with object keys in an order drawn from `order` and whitespace
/// drawn from `ws`.
fn render(v: &Value, order: &mut impl Iterator<Item = u32>, ws: &[&str], out: &mut String) {
    let pad = |out: &mut String, order: &mut dyn Iterator<Item = u32>| {
        out.push_str(ws[order.next().unwrap_or(0) as usize % ws.len()]);
    };
    match v {
        Value::Object(map) => {
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            // A permutation from the drawn numbers.
            let mut keys: Vec<(u32, usize)> = (0..entries.len())
                .map(|i| (order.next().unwrap_or(i as u32), i))
                .collect();
            keys.sort();
            let permuted: Vec<_> = keys.iter().map(|(_, i)| entries[*i]).collect();
            entries = permuted;
            out.push('{');
            for (i, (k, val)) in entries.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                pad(out, order);
                out.push_str(&serde_json::to_string(k).unwrap());
                pad(out, order);
                out.push(':');
                pad(out, order);
                render(val, order, ws, out);
            }
            pad(out, order);
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                pad(out, order);
                render(item, order, ws, out);
            }
            out.push(']');
        }
        other => out.push_str(&serde_json::to_string(other).unwrap()),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn canonical_bytes_ignore_key_order_and_whitespace(
        (att, _) in signed_attestation(),
        order in prop::collection::vec(any::<u32>(), 400),
    ) {
        let value = serde_json::to_value(&att).unwrap();
        let mut text = String::new();
        render(&value, &mut order.into_iter(), &["", " ", "\n", "\t ", "\r\n  "], &mut text);
        let reparsed = Attestation::from_json(text.as_bytes()).unwrap();
        prop_assert_eq!(reparsed.canonical_bytes().unwrap(), att.canonical_bytes().unwrap());
        prop_assert_eq!(reparsed.digest().unwrap(), att.digest().unwrap());
        prop_assert!(validate(&reparsed, &NetworkAnchor::default(), now(), |_, _| None).is_ok());
    }

    #[test]
    fn sign_then_verify_and_every_bit_matters(
        seed in any::<[u8; 32]>(),
        msg in prop::collection::vec(any::<u8>(), 0..200),
        bit in 0usize..512,
    ) {
        let key = Keypair::from_seed(seed);
        let sig = key.sign(&msg);
        prop_assert!(verify(&key.public(), &sig, &msg).is_ok());
        let mut bad = sig.0;
        bad[bit / 8] ^= 1 << (bit % 8);
        prop_assert!(verify(&key.public(), &SignatureBytes(bad), &msg).is_err());
        if !msg.is_empty() {
            let mut other = msg.clone();
            let i = bit % (other.len() * 8);
            other[i / 8] ^= 1 << (i % 8);
            prop_assert!(verify(&key.public(), &sig, &other).is_err());
        }
    }

    /// Flip any one bit of a signed attestation's canonical JSON: it no longer parses,
    /// breaks a rule, or its signature fails, unless it is still the same attestation. (A
    /// 17th significant digit can change without changing the number it parses to: the
    /// text differs, the attestation and its canonical bytes do not.)
    #[test]
    fn a_single_bit_flip_never_validates(
        (att, _) in signed_attestation(),
        pick in any::<prop::sample::Index>(),
        bit in 0u8..8,
    ) {
        let mut bytes = att.to_canonical_json().unwrap();
        let i = pick.index(bytes.len());
        bytes[i] ^= 1 << bit;
        if let Ok(changed) = Attestation::from_json(&bytes) {
            prop_assert!(
                validate(&changed, &NetworkAnchor::default(), now(), |_, _| None).is_err()
                    || changed.to_canonical_json().unwrap() == att.to_canonical_json().unwrap(),
                "byte {} bit {} still validates: {}", i, bit, String::from_utf8_lossy(&bytes)
            );
        }
    }
}
