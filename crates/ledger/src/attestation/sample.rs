//! Fixed sample attestations for unit tests.

use time::macros::datetime;
use time::OffsetDateTime;

use super::builder::{sign, Draft};
use super::types::{Attestation, Benchmarks, Resources};
use crate::crypto::Keypair;
use crate::hash::Hash32;
use crate::params::NetworkAnchor;

/// The clock the samples are valid at.
pub(crate) fn now() -> OffsetDateTime {
    datetime!(2026-11-28 12:00 UTC)
}

/// A valid attestation signed by the key with seed `[seed; 32]`.
pub(crate) fn signed_sample(seed: u8) -> (Attestation, Keypair) {
    let kp = Keypair::from_seed([seed; 32]);
    let draft = Draft {
        network: NetworkAnchor::default(),
        attester_id: format!("attester-{seed}"),
        pack_sha256: Hash32::digest(&[seed]),
        dimensions: [("quality".into(), 0.9), ("reach".into(), 0.3)].into(),
        weights: [("quality".into(), 0.7), ("reach".into(), 0.3)].into(),
        time_window: ["2026-11-27T00:00:00Z".into(), "2026-11-28T00:00:00Z".into()],
        nonce: format!("{:02x}", seed).repeat(16),
        resources: Some(Resources {
            cpu_cores: Some(8),
            ..Default::default()
        }),
        benchmarks: Some(Benchmarks {
            pre: Some([("performance".into(), 0.5)].into()),
            post: Some([("performance".into(), 0.75)].into()),
            delta: Some(0.25),
        }),
        methodology_ref: None,
    };
    let (att, _) = draft.sign(&kp).expect("sample canonicalizes");
    (att, kp)
}

/// Re-signs after an edit, so a test reaches the rule it means to break.
pub(crate) fn resign(att: &mut Attestation, kp: &Keypair) {
    let alg = att.signature.alg.clone();
    let pubkey = att.attester.pubkey_ed25519.clone();
    sign(att, kp).expect("sample canonicalizes");
    // Keep deliberate edits to these two fields.
    att.signature.alg = alg;
    att.attester.pubkey_ed25519 = pubkey;
}
