//! Property tests of the formats: canonical bytes do not depend on how the JSON was
//! written, the attestation's own canonical writer agrees with the generic one, signatures
//! round-trip, and no single-bit change to a signed attestation or a signature survives
//! validation.

use std::collections::BTreeMap;

use bizra_ledger::attestation::builder::Draft;
use bizra_ledger::attestation::types::{
    Anchor, Attester, Benchmarks, Evidence, Measurement, Resources, SignatureField,
};
use bizra_ledger::attestation::{validate, Attestation, NumberMap};
use bizra_ledger::canonical::to_canonical_bytes;
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

/// Any string: ASCII, controls, quotes and backslashes, and characters whose UTF-8 and
/// UTF-16 orders differ.
fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z0-9_]{0,16}",
        "[\u{0}-\u{1f}\"\\\\/a\u{7f}\u{2028}\u{e9}]{0,12}",
        any::<String>(),
    ]
}

fn number_map() -> impl Strategy<Value = NumberMap> {
    let key = prop_oneof![
        text(),
        Just("\u{fb01}".to_string()),
        Just("\u{1f600}".to_string()),
    ];
    prop::collection::btree_map(key, finite(), 0..6)
}

/// Finite doubles of every kind: integers, tiny and huge exponents, negative zero.
fn finite() -> impl Strategy<Value = f64> {
    prop_oneof![
        any::<f64>().prop_filter("finite", |v| v.is_finite()),
        (-1e6f64..1e6).prop_map(f64::trunc),
        Just(-0.0),
        Just(1e21),
        Just(1e-7),
        Just(5e-324),
    ]
}

/// At most 2^53, as parsing guarantees.
fn safe_integer() -> impl Strategy<Value = u64> {
    prop_oneof![0u64..1000, 0u64..=(1 << 53)]
}

prop_compose! {
    /// Any attestation the type can hold, valid or not, with every optional part drawn.
    fn any_attestation()(
        strings in prop::collection::vec(text(), 12),
        maps in prop::collection::vec(number_map(), 4),
        numbers in prop::collection::vec(finite(), 2),
        integers in prop::collection::vec(safe_integer(), 4),
        small in prop::collection::vec(any::<u32>(), 3),
        present in prop::collection::vec(any::<bool>(), 14),
    ) -> Attestation {
        let opt = |i: usize| present[i];
        Attestation {
            version: strings[0].clone(),
            anchor: Anchor {
                chain_id: strings[1].clone(),
                genesis_merkle_root: strings[2].clone(),
                block_ref: opt(0).then(|| strings[3].clone()),
            },
            attester: Attester { id: strings[4].clone(), pubkey_ed25519: strings[5].clone() },
            resources: opt(1).then(|| Resources {
                cpu_cores: opt(2).then_some(small[0]),
                ram_gb: opt(3).then_some(small[1]),
                gpu_vram_gb: opt(4).then_some(small[2]),
                wallclock_sec: opt(5).then_some(integers[0]),
            }),
            evidence: Evidence {
                pack_sha256: strings[6].clone(),
                pack_bytes: opt(6).then_some(integers[1]),
                files_processed: opt(7).then_some(integers[2]),
                redactions_count: opt(8).then_some(integers[3]),
                methodology_ref: opt(9).then(|| strings[7].clone()),
            },
            measurement: Measurement {
                dimensions: maps[0].clone(),
                weights: maps[1].clone(),
                impact_score: numbers[0],
            },
            benchmarks: opt(10).then(|| Benchmarks {
                pre: opt(11).then(|| maps[2].clone()),
                post: opt(12).then(|| maps[3].clone()),
                delta: opt(13).then_some(numbers[1]),
            }),
            time_window: [strings[8].clone(), strings[9].clone()],
            nonce: strings[10].clone(),
            signature: SignatureField { alg: strings[11].clone(), sig_base16: strings[0].clone() },
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// The attestation's own canonical writer and the generic RFC 8785 canonicalizer agree,
    /// with the signature and with it blanked.
    #[test]
    fn attestation_writer_equals_the_generic_canonicalizer(att in any_attestation()) {
        prop_assert_eq!(att.to_canonical_json().unwrap(), to_canonical_bytes(&att).unwrap());
        let mut blank = att.clone();
        blank.signature.sig_base16.clear();
        prop_assert_eq!(att.canonical_bytes().unwrap(), to_canonical_bytes(&blank).unwrap());
    }
}
