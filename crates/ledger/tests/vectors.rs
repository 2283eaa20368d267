//! The test vectors of docs/protocol.md §9 (`tests/vectors/*.json` at the workspace root),
//! checked field by field against the library, plus the single-versus-batch verdict check
//! of docs/protocol.md §2.2 over the adversarial signatures.
//!
//! Regenerate the files with
//! `cargo run -p bizra-ledger --example gen_vectors -- tests/vectors`;
//! `vectors_on_disk_are_what_the_generator_writes` fails when they drift.

#[path = "../examples/gen_vectors.rs"]
#[allow(dead_code)]
mod gen_vectors;

use std::path::PathBuf;

use bizra_ledger::attestation::{self, Attestation};
use bizra_ledger::block::{Block, BlockContent, BlockHeader, BLOCK_VERSION};
use bizra_ledger::canonical::to_canonical_bytes;
use bizra_ledger::crypto::{
    self, tagged_message, verify_batch, BatchItem, CryptoError, Keypair, PublicKey, SignatureBytes,
    BLOCK_TAG, POI_TAG, VOTE_TAG,
};
use bizra_ledger::genesis::Genesis;
use bizra_ledger::hash::Hash32;
use bizra_ledger::merkle::{self, InclusionProof};
use bizra_ledger::params::{NetworkAnchor, FINALITY_THRESHOLD_BPS, SLOT_MS};
use bizra_ledger::registry::{epoch_of_time, Registry, RegistryEntry};
use bizra_ledger::vote::{meets_threshold, Vote};
use bizra_ledger::weight;
use serde_json::Value;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/vectors")
}

fn load(name: &str) -> Value {
    let path = dir().join(name);
    let text =
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("parse {}: {e}", path.display()))
}

fn s<'a>(v: &'a Value, key: &str) -> &'a str {
    v[key]
        .as_str()
        .unwrap_or_else(|| panic!("`{key}` is a string in {v}"))
}

fn hash(v: &Value, key: &str) -> Hash32 {
    s(v, key).parse().expect("64 lowercase hex digits")
}

fn seed(v: &Value, key: &str) -> [u8; 32] {
    let mut out = [0u8; 32];
    hex::decode_to_slice(s(v, key), &mut out).expect("32-byte hex seed");
    out
}

fn cases<'a>(v: &'a Value, key: &str) -> &'a Vec<Value> {
    v[key].as_array().expect("an array of cases")
}

#[test]
fn vectors_on_disk_are_what_the_generator_writes() {
    let generated = gen_vectors::generate();
    assert_eq!(generated.len(), gen_vectors::FILES.len());
    for (name, text) in generated {
        let path = dir().join(name);
        let on_disk = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            on_disk == text,
            "{} differs from the generator's output; regenerate with \
             `cargo run -p bizra-ledger --example gen_vectors -- tests/vectors`",
            path.display()
        );
    }
}

// ---------------------------------------------------------------------------------------
// Attestations
// ---------------------------------------------------------------------------------------

#[test]
fn attestation_vectors() {
    let file = load("attestations.json");
    let now = OffsetDateTime::parse(s(&file, "now"), &Rfc3339).expect("now is RFC 3339");
    let net = NetworkAnchor {
        chain_id: s(&file["network"], "chain_id").to_string(),
        genesis_merkle_root: hash(&file["network"], "genesis_merkle_root"),
    };
    assert_eq!(net, NetworkAnchor::default());
    for key in ["test_key", "other_key"] {
        let k = &file[key];
        assert_eq!(
            Keypair::from_seed(seed(k, "seed")).public().to_string(),
            s(k, "pubkey")
        );
    }
    assert_eq!(s(&file, "signing_tag").as_bytes(), POI_TAG);

    let all = cases(&file, "cases");
    assert!(all.len() >= 10);
    let mut codes_seen = std::collections::BTreeSet::new();
    for c in all {
        let name = s(c, "name");
        let expected = s(c, "expected");
        codes_seen.insert(expected.to_string());
        if let Some(body) = c.get("body") {
            let body = body.as_str().expect("body is a string");
            let e = Attestation::from_json(body.as_bytes())
                .expect_err(&format!("{name} must not parse"));
            assert_eq!(e.kind.code(), expected, "{name}: {e}");
            assert_eq!(e.field, s(c, "field"), "{name}: {e}");
            continue;
        }
        let body = serde_json::to_vec(&c["attestation"]).expect("serialize");
        let att = Attestation::from_json(&body).unwrap_or_else(|e| panic!("{name}: {e}"));
        let canonical = att.canonical_bytes().expect("canonical bytes");
        assert_eq!(hex::encode(&canonical), s(c, "canonical_hex"), "{name}");
        assert_eq!(
            std::str::from_utf8(&canonical).expect("UTF-8"),
            s(c, "canonical"),
            "{name}"
        );
        let digest = att.digest().expect("digest");
        assert_eq!(digest.to_hex(), s(c, "digest"), "{name}");
        let msg = Attestation::signing_message(&digest);
        assert_eq!(hex::encode(&msg), s(c, "signing_message_hex"), "{name}");
        assert_eq!(att.signature.sig_base16, s(c, "signature"), "{name}");
        assert_eq!(att.attester.pubkey_ed25519, s(c, "pubkey"), "{name}");

        let verdict = match (
            PublicKey::parse(s(c, "pubkey")),
            SignatureBytes::parse(s(c, "signature")),
        ) {
            (Ok(k), Ok(sig)) => Value::Bool(crypto::verify(&k, &sig, &msg).is_ok()),
            _ => Value::Null,
        };
        assert_eq!(verdict, c["signature_valid"], "{name}");

        let prior = c.get("prior").map(|p| {
            let a = Attestation::from_json(&serde_json::to_vec(&p["attestation"]).expect("ser"))
                .expect("prior parses");
            let d = a.digest().expect("digest");
            assert_eq!(d.to_hex(), s(p, "digest"), "{name}: prior digest");
            // The stored attestation was itself valid.
            attestation::validate(&a, &net, now, |_, _| None)
                .unwrap_or_else(|e| panic!("{name}: prior is invalid: {e}"));
            (a, d)
        });
        let got = attestation::validate(&att, &net, now, |k, n| {
            let (a, d) = prior.as_ref()?;
            let pk = PublicKey::parse(&a.attester.pubkey_ed25519).ok()?;
            (pk == *k && a.nonce == n).then_some(*d)
        });
        let got = match got {
            Ok(checked) => {
                assert_eq!(checked.digest, digest);
                "valid"
            }
            Err(r) => r.code.as_str(),
        };
        assert_eq!(got, expected, "{name}");

        // The stored form round-trips to the same attestation.
        let stored = att.to_canonical_json().expect("canonical json");
        assert_eq!(Attestation::from_json(&stored).expect("round trip"), att);
    }
    // Every rule code of docs/protocol.md §2.3 has a vector, and so do both parse failures.
    for code in attestation::RuleCode::ALL {
        assert!(codes_seen.contains(code.as_str()), "no vector for {code}");
    }
    for kind in ["valid", "schema", "invalid_json"] {
        assert!(codes_seen.contains(kind), "no vector for {kind}");
    }
}

// ---------------------------------------------------------------------------------------
// Merkle trees
// ---------------------------------------------------------------------------------------

#[test]
fn merkle_vectors() {
    let file = load("merkle.json");
    let leaves: Vec<Hash32> = file["leaves"]
        .as_array()
        .expect("leaves")
        .iter()
        .map(|l| l.as_str().expect("hex").parse().expect("hash"))
        .collect();
    for (i, l) in leaves.iter().enumerate() {
        assert_eq!(*l, Hash32::digest(&(i as u32).to_be_bytes()), "leaf {i}");
    }
    assert_eq!(hash(&file, "empty_root"), merkle::root(&[]));
    assert_eq!(hash(&file, "empty_root"), Hash32::digest(b""));
    let trees = cases(&file, "trees");
    assert_eq!(trees.len(), 17);
    for t in trees {
        let n = t["size"].as_u64().expect("size") as usize;
        let d = &leaves[..n];
        let root = hash(t, "root");
        assert_eq!(merkle::root(d), root, "root of {n}");
        let proofs = cases(t, "proofs");
        assert_eq!(proofs.len(), n);
        for (i, p) in proofs.iter().enumerate() {
            let p: InclusionProof = serde_json::from_value(p.clone()).expect("proof");
            assert_eq!(
                merkle::prove(d, i).as_ref(),
                Some(&p),
                "proof of {i} in {n}"
            );
            assert!(p.verify(&d[i], &root), "proof of {i} in {n} verifies");
            // A proof of another leaf, or against another root, does not.
            assert!(!p.verify(&d[(i + 1) % n], &root) || n == 1);
            assert!(!p.verify(&d[i], &Hash32::digest(b"not the root")));
        }
    }
}

// ---------------------------------------------------------------------------------------
// Genesis and blocks
// ---------------------------------------------------------------------------------------

#[test]
fn block_vectors() {
    let file = load("blocks.json");
    let g = &file["genesis"];
    let genesis_text = serde_json::to_vec(&g["file"]).expect("ser");
    let genesis = Genesis::from_json(&genesis_text).expect("genesis file");
    assert_eq!(
        std::str::from_utf8(&to_canonical_bytes(&genesis).expect("jcs")).expect("utf8"),
        s(g, "file_canonical")
    );
    assert_eq!(genesis.digest().expect("digest"), hash(g, "file_digest"));
    let ids: Vec<String> = genesis
        .validators
        .iter()
        .map(|v| v.validator_id().to_hex())
        .collect();
    assert_eq!(serde_json::to_value(&ids).expect("ser"), g["validator_ids"]);
    let gblock = genesis.block().expect("genesis block");
    let gheader: BlockHeader = serde_json::from_value(g["header"].clone()).expect("header");
    assert_eq!(gblock.header, gheader);
    assert_eq!(
        std::str::from_utf8(&to_canonical_bytes(&gheader).expect("jcs")).expect("utf8"),
        s(g, "header_canonical")
    );
    assert_eq!(gblock.hash, hash(g, "hash"));
    assert_eq!(gheader.hash().expect("hash"), hash(g, "hash"));
    gblock.check_integrity().expect("genesis integrity");

    let keys: Vec<Keypair> = cases(g, "validator_key_seeds")
        .iter()
        .map(|v| {
            let mut out = [0u8; 32];
            hex::decode_to_slice(v.as_str().expect("seed"), &mut out).expect("32-byte seed");
            Keypair::from_seed(out)
        })
        .collect();
    let registry = Registry::from_genesis(&genesis).expect("registry");
    for (k, w) in keys.iter().zip(cases(g, "validator_weights")) {
        let record = registry
            .get(&k.public().validator_id())
            .expect("a genesis validator's seed");
        assert_eq!(Some(record.effective_weight()), w.as_u64());
    }
    let total = registry.total_active_weight();
    let weight_of = |id: &Hash32| registry.get(id).map_or(0, |r| r.effective_weight());

    let mut known: Vec<Block> = vec![gblock.clone()];
    let blocks = cases(&file, "blocks");
    assert!(blocks.iter().any(|b| !cases(b, "entries").is_empty()));
    for b in blocks {
        let name = s(b, "name");
        let header: BlockHeader = serde_json::from_value(b["header"].clone()).expect("header");
        assert_eq!(header.version, BLOCK_VERSION, "{name}");
        let h = header.hash().expect("hash");
        assert_eq!(h, hash(b, "hash"), "{name}");
        assert_eq!(
            std::str::from_utf8(&to_canonical_bytes(&header).expect("jcs")).expect("utf8"),
            s(b, "header_canonical"),
            "{name}"
        );
        let kp = Keypair::from_seed(seed(b, "proposer_key_seed"));
        assert_eq!(kp.public().to_string(), s(b, "proposer_pubkey"), "{name}");
        let sig = SignatureBytes::parse(s(b, "signature")).expect("signature");
        let ids: Vec<Hash32> = serde_json::from_value(b["attestation_ids"].clone()).expect("ids");
        let entry_ids: Vec<Hash32> =
            serde_json::from_value(b["entry_ids"].clone()).expect("entry ids");
        let block = Block {
            hash: h,
            header: header.clone(),
            signature: Some(sig),
            attestation_ids: ids.clone(),
            entry_ids: entry_ids.clone(),
        };
        block.check_integrity().expect("integrity");
        block.verify_signature(&kp.public()).expect("signature");
        assert!(crypto::verify_tagged(&kp.public(), &sig, BLOCK_TAG, &h).is_ok());
        assert_eq!(
            header.epoch,
            epoch_of_time(gblock.header.timestamp_ms, header.timestamp_ms, SLOT_MS),
            "{name}"
        );
        // The entries are the ones the ids name, in block order, each valid in its epoch.
        let entries = cases(b, "entries");
        assert_eq!(entries.len(), entry_ids.len(), "{name}");
        let mut applied = registry.clone();
        for (e, id) in entries.iter().zip(&entry_ids) {
            let entry: RegistryEntry = serde_json::from_value(e["entry"].clone()).expect("entry");
            let canonical = to_canonical_bytes(&entry).expect("jcs");
            assert_eq!(
                std::str::from_utf8(&canonical).expect("utf8"),
                s(e, "canonical")
            );
            assert_eq!(entry.digest().expect("digest"), *id, "{name}");
            assert_eq!(hash(e, "id"), *id, "{name}");
            applied
                .apply_entry(&entry, header.epoch)
                .unwrap_or_else(|err| panic!("{name}: entry does not apply: {err}"));
        }
        // Every genesis validator's vote, over the v2 tag.
        let votes: Vec<Vote> = serde_json::from_value(b["votes"].clone()).expect("votes");
        assert_eq!(votes.len(), keys.len(), "{name}");
        for (v, k) in votes.iter().zip(&keys) {
            assert_eq!(v.block_hash, h, "{name}");
            v.verify(&k.public()).expect("vote");
            assert!(crypto::verify_tagged(&k.public(), &v.signature, VOTE_TAG, &h).is_ok());
        }
        // The DAG rule of docs/protocol.md §3.1: genesis alone under height 1; else
        // parents of height h−1 by distinct proposers with 2/3 of the weight.
        let parents: Vec<&Block> = header
            .parents
            .iter()
            .map(|p| {
                known
                    .iter()
                    .find(|k| k.hash == *p)
                    .unwrap_or_else(|| panic!("{name}: unknown parent {p}"))
            })
            .collect();
        if header.height == 1 {
            assert_eq!(header.parents, vec![gblock.hash], "{name}");
        } else {
            assert!(header.height >= 2, "{name}");
            let mut by: Vec<Hash32> = parents.iter().map(|p| p.header.proposer).collect();
            assert!(parents
                .iter()
                .all(|p| p.header.height == header.height - 1 && p.header.epoch == header.epoch));
            by.sort();
            by.dedup();
            assert_eq!(by.len(), parents.len(), "{name}: distinct proposers");
            let weight: u64 = by.iter().map(weight_of).sum();
            assert!(
                meets_threshold(weight, total, FINALITY_THRESHOLD_BPS),
                "{name}: parents of 2/3 of the weight"
            );
        }
        // Proposing the same content again gives the same block, byte for byte.
        let again = Block::propose(
            BlockContent {
                chain_id: header.chain_id.clone(),
                epoch: header.epoch,
                height: header.height,
                parents: header.parents.iter().rev().copied().collect(),
                attestation_ids: ids.clone(),
                entry_ids: entry_ids.clone(),
                timestamp_ms: header.timestamp_ms,
            },
            &kp,
        )
        .expect("propose");
        assert_eq!(again, block, "{name}");
        for (i, id) in ids.iter().enumerate() {
            let p = block.proof(i).expect("proof");
            assert!(p.verify(id, &header.att_root));
        }
        known.push(block);
    }
}

// ---------------------------------------------------------------------------------------
// Weights
// ---------------------------------------------------------------------------------------

#[test]
fn weight_vectors() {
    let file = load("weights.json");
    for c in cases(&file, "effective_weight") {
        let name = s(c, "name");
        let impact = c["impact"].as_f64().expect("impact");
        let rep = c["rep_score"].as_u64().expect("rep_score");
        let stake = c["stake_bond"].as_u64().expect("stake_bond");
        let expected = c["expected"].as_u64().expect("expected");
        assert_eq!(
            weight::effective_weight(impact, rep, stake),
            expected,
            "{name}"
        );
        let raw = c["raw"].as_f64().expect("raw");
        let mine = 100.0 + 10.0 * impact + 0.05 * rep as f64 + 0.02 * (stake as f64).sqrt();
        assert_eq!(raw.to_bits(), mine.to_bits(), "{name}: raw");
        if raw > 0.0 && raw < u64::MAX as f64 {
            assert_eq!(raw.floor() as u64, expected, "{name}: floor of raw");
        }
    }
    for (name, want) in [
        ("spec_reference_zero", 100),
        ("spec_reference_high_impact", 1102),
        ("spec_reference_typical", 610),
    ] {
        let c = cases(&file, "effective_weight")
            .iter()
            .find(|c| c["name"] == name)
            .expect("docs/protocol.md §2.4 reference value present");
        assert_eq!(c["expected"], want);
    }
    for c in cases(&file, "impact_score") {
        let d: attestation::NumberMap =
            serde_json::from_value(c["dimensions"].clone()).expect("dimensions");
        let w: attestation::NumberMap =
            serde_json::from_value(c["weights"].clone()).expect("weights");
        let impact = c["impact"].as_f64().expect("impact");
        assert_eq!(
            weight::impact_score(&d, &w).to_bits(),
            impact.to_bits(),
            "{}",
            s(c, "name")
        );
    }
}

// ---------------------------------------------------------------------------------------
// Adversarial signatures: single and batch verdicts agree (docs/protocol.md §2.2)
// ---------------------------------------------------------------------------------------

struct SigCase {
    name: String,
    item: BatchItem,
    expected: String,
}

fn signature_cases() -> Vec<SigCase> {
    let file = load("signatures.json");
    cases(&file, "cases")
        .iter()
        .map(|c| {
            let mut key = [0u8; 32];
            hex::decode_to_slice(s(c, "pubkey"), &mut key).expect("32-byte key");
            SigCase {
                name: s(c, "name").to_string(),
                item: BatchItem {
                    key: PublicKey(key),
                    sig: SignatureBytes::parse(s(c, "signature")).expect("64-byte signature"),
                    msg: hex::decode(s(c, "message_hex")).expect("hex message"),
                },
                expected: s(c, "expected").to_string(),
            }
        })
        .collect()
}

fn verdict(it: &BatchItem) -> &'static str {
    match crypto::verify(&it.key, &it.sig, &it.msg) {
        Ok(()) => "valid",
        Err(CryptoError::PubkeyNotOnCurve) => "pubkey_not_on_curve",
        Err(_) => "bad_signature",
    }
}

/// 16 ordinary signatures by 16 distinct keys over 16 distinct messages.
fn valid_batch() -> Vec<BatchItem> {
    (0..16u8)
        .map(|i| {
            let kp = Keypair::from_seed([0x40 + i; 32]);
            let msg = tagged_message(POI_TAG, &Hash32::digest(&[i]));
            BatchItem {
                key: kp.public(),
                sig: kp.sign(&msg),
                msg,
            }
        })
        .collect()
}

#[test]
fn signature_vectors_single_verdicts() {
    let all = signature_cases();
    assert!(all.iter().any(|c| c.expected == "valid"));
    assert!(all.iter().any(|c| c.expected == "bad_signature"));
    assert!(all.iter().any(|c| c.expected == "pubkey_not_on_curve"));
    for c in &all {
        assert_eq!(verdict(&c.item), c.expected, "{}", c.name);
    }
}

#[test]
fn batch_verdict_equals_single_verdict_for_every_adversarial_case() {
    let base = valid_batch();
    assert_eq!(verify_batch(&base), vec![true; base.len()]);
    for c in signature_cases() {
        let alone = crypto::verify(&c.item.key, &c.item.sig, &c.item.msg).is_ok();
        assert_eq!(alone, c.expected == "valid", "{}", c.name);
        for pos in [0, 1, 7, 15, 16] {
            let mut items = base.clone();
            items.insert(pos, c.item.clone());
            let got = verify_batch(&items);
            assert_eq!(got.len(), items.len());
            assert_eq!(got[pos], alone, "{} at position {pos}", c.name);
            for (i, ok) in got.iter().enumerate() {
                assert!(
                    i == pos || *ok,
                    "{} at {pos}: item {i} reported bad",
                    c.name
                );
            }
        }
        // A batch of two copies and a batch of one give the same verdict too.
        let pair = verify_batch(&[c.item.clone(), c.item.clone()]);
        assert_eq!(pair, vec![alone; 2], "{} twice", c.name);
        assert_eq!(verify_batch(std::slice::from_ref(&c.item)), vec![alone]);
    }
}

/// Not only the verdicts `verify_batch` reports, but the batch equation itself: the
/// ZIP-215-valid edge cases pass inside a batch without falling back to single checks,
/// and the invalid ones make the batch fail.
#[test]
fn the_batch_equation_itself_agrees_with_single_verification() {
    use ed25519_zebra::{batch, Signature, VerificationKeyBytes};
    let base = valid_batch();
    for c in signature_cases() {
        let alone = c.expected == "valid";
        for pos in [0, 8, 16] {
            let mut items = base.clone();
            items.insert(pos, c.item.clone());
            let mut v = batch::Verifier::new();
            for it in &items {
                v.queue((
                    VerificationKeyBytes::from(it.key.0),
                    Signature::from_bytes(&it.sig.0),
                    &it.msg,
                ));
            }
            assert_eq!(
                v.verify(rand_core::OsRng).is_ok(),
                alone,
                "{} at position {pos}",
                c.name
            );
        }
    }
    // All the valid edge cases together, in one batch with the ordinary ones.
    let mut v = batch::Verifier::new();
    let mut items = base.clone();
    items.extend(
        signature_cases()
            .into_iter()
            .filter(|c| c.expected == "valid")
            .map(|c| c.item),
    );
    for it in &items {
        v.queue((
            VerificationKeyBytes::from(it.key.0),
            Signature::from_bytes(&it.sig.0),
            &it.msg,
        ));
    }
    assert!(v.verify(rand_core::OsRng).is_ok());
    assert_eq!(verify_batch(&items), vec![true; items.len()]);
}

#[test]
fn a_batch_with_one_bad_signature_reports_exactly_that_one() {
    let base = valid_batch();
    for bad_at in 0..base.len() {
        let mut items = base.clone();
        items[bad_at].msg[20] ^= 0x01;
        let got = verify_batch(&items);
        for (i, ok) in got.iter().enumerate() {
            assert_eq!(*ok, i != bad_at, "bad at {bad_at}, item {i}");
        }
    }
    // And with the bad one taken from the vectors: every non-valid case in turn.
    for c in signature_cases()
        .into_iter()
        .filter(|c| c.expected != "valid")
    {
        let mut items = base.clone();
        items[5] = c.item;
        let got = verify_batch(&items);
        assert_eq!(got.iter().filter(|ok| !**ok).count(), 1, "{}", c.name);
        assert!(!got[5], "{}", c.name);
    }
}
