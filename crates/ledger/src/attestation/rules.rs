//! The validation rules of docs/protocol.md §2.3, in order; the first failure is reported.
//!
//! Rules 1–11 and the signature's format need nothing but the attestation, the network
//! and the clock ([`check_rules`]). Rule 12, the signature itself, is separate so a node
//! can verify many at once ([`Checked::signature_item`] with
//! [`crate::crypto::verify_batch`]); rule 13 needs the store ([`check_nonce`]).
//! [`validate`] runs all thirteen for one attestation.

use std::fmt;

use time::format_description::well_known::Rfc3339;
use time::{Duration, OffsetDateTime};

use super::types::{Attestation, VERSION};
use crate::crypto::{self, BatchItem, PublicKey, SignatureBytes};
use crate::hash::{is_lower_hex, Hash32};
use crate::params::NetworkAnchor;
use crate::weight::impact_score;

/// Tolerance of every arithmetic rule.
pub const EPSILON: f64 = 1e-6;
/// How far in the future a time window may end.
pub const MAX_CLOCK_SKEW: Duration = Duration::minutes(5);
/// Longest time window.
pub const MAX_WINDOW: Duration = Duration::days(366);

/// Stable rule codes, the `code` of an API error.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RuleCode {
    InvalidVersion,
    ChainMismatch,
    GenesisMismatch,
    InvalidEvidenceHash,
    InvalidNonce,
    InvalidTimeWindow,
    DimensionOutOfRange,
    WeightsSum,
    ImpactMismatch,
    BenchmarkDeltaMismatch,
    UnsupportedSignatureAlg,
    InvalidPubkey,
    BadSignature,
    DuplicateNonce,
}

impl RuleCode {
    pub const ALL: [RuleCode; 14] = [
        RuleCode::InvalidVersion,
        RuleCode::ChainMismatch,
        RuleCode::GenesisMismatch,
        RuleCode::InvalidEvidenceHash,
        RuleCode::InvalidNonce,
        RuleCode::InvalidTimeWindow,
        RuleCode::DimensionOutOfRange,
        RuleCode::WeightsSum,
        RuleCode::ImpactMismatch,
        RuleCode::BenchmarkDeltaMismatch,
        RuleCode::UnsupportedSignatureAlg,
        RuleCode::InvalidPubkey,
        RuleCode::BadSignature,
        RuleCode::DuplicateNonce,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            RuleCode::InvalidVersion => "invalid_version",
            RuleCode::ChainMismatch => "chain_mismatch",
            RuleCode::GenesisMismatch => "genesis_mismatch",
            RuleCode::InvalidEvidenceHash => "invalid_evidence_hash",
            RuleCode::InvalidNonce => "invalid_nonce",
            RuleCode::InvalidTimeWindow => "invalid_time_window",
            RuleCode::DimensionOutOfRange => "dimension_out_of_range",
            RuleCode::WeightsSum => "weights_sum",
            RuleCode::ImpactMismatch => "impact_mismatch",
            RuleCode::BenchmarkDeltaMismatch => "benchmark_delta_mismatch",
            RuleCode::UnsupportedSignatureAlg => "unsupported_signature_alg",
            RuleCode::InvalidPubkey => "invalid_pubkey",
            RuleCode::BadSignature => "bad_signature",
            RuleCode::DuplicateNonce => "duplicate_nonce",
        }
    }

    pub fn from_code(s: &str) -> Option<RuleCode> {
        RuleCode::ALL.into_iter().find(|c| c.as_str() == s)
    }
}

impl fmt::Display for RuleCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A failed rule and a sentence for the client.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {detail}")]
pub struct Rejection {
    pub code: RuleCode,
    pub detail: String,
}

fn reject<T>(code: RuleCode, detail: impl Into<String>) -> Result<T, Rejection> {
    Err(Rejection {
        code,
        detail: detail.into(),
    })
}

/// An attestation that passed rules 1–11, with what rules 12 and 13 need.
#[derive(Debug, Clone)]
pub struct Checked {
    pub digest: Hash32,
    pub pubkey: PublicKey,
    pub signature: SignatureBytes,
    /// Σ dimᵢ·weightᵢ as this node computed it.
    pub impact_score: f64,
    /// post − pre of `performance`, when both are present.
    pub benchmark_delta: Option<f64>,
}

impl Checked {
    /// Rule 12 for this attestation alone.
    pub fn verify_signature(&self) -> Result<(), Rejection> {
        crypto::verify(
            &self.pubkey,
            &self.signature,
            &Attestation::signing_message(&self.digest),
        )
        .or_else(|_| reject(RuleCode::BadSignature, "signature does not verify"))
    }

    /// Rule 12's input for a batch check.
    pub fn signature_item(&self) -> BatchItem {
        BatchItem {
            key: self.pubkey,
            sig: self.signature,
            msg: Attestation::signing_message(&self.digest),
        }
    }
}

/// Values this node computes from an attestation whatever its rules say (the `verify`
/// endpoint reports them next to the reasons).
#[derive(Debug, Clone, PartialEq)]
pub struct Computed {
    pub digest: Option<Hash32>,
    pub impact_score: f64,
    pub delta: Option<f64>,
}

fn benchmark_delta(att: &Attestation) -> Option<f64> {
    let b = att.benchmarks.as_ref()?;
    let pre = b.pre.as_ref()?.get("performance")?;
    let post = b.post.as_ref()?.get("performance")?;
    Some(post - pre)
}

/// Rules 1–11, then the signature's format (part of rule 12).
pub fn check_rules(
    att: &Attestation,
    network: &NetworkAnchor,
    now: OffsetDateTime,
) -> Result<Checked, Rejection> {
    check_version(att)?;
    check_anchor(att, network)?;
    check_evidence_hash(att)?;
    check_nonce_format(att)?;
    check_time_window(&att.time_window, now)?;
    check_dimensions(att)?;
    check_weights(att)?;
    let impact = check_impact(att)?;
    let delta = check_benchmark_delta(att)?;
    check_alg(att)?;
    let pubkey = check_pubkey(att)?;
    let (signature, digest) = check_signature_format(att)?;
    Ok(Checked {
        digest,
        pubkey,
        signature,
        impact_score: impact,
        benchmark_delta: delta,
    })
}

/// Every rule that fails, in rule order (the `verify` endpoint): unlike
/// [`check_rules`], a failure does not stop the later checks. `nonce_owner` is the
/// digest stored under the attestation's (key, nonce), if any.
pub fn validate_reasons(
    att: &Attestation,
    network: &NetworkAnchor,
    now: OffsetDateTime,
    nonce_owner: Option<Hash32>,
) -> Vec<Rejection> {
    Derived::of(att).reasons(att, network, now, nonce_owner, None)
}

/// The costly parts of rules 12 and 13, derived once: the digest (canonicalizing the
/// whole attestation) and the parsed key (decompressing a curve point) and signature.
/// The `verify` endpoint needs each of them three times: for its computed values, for
/// the batched signature check and for its list of reasons.
#[derive(Debug, Clone)]
pub struct Derived {
    pubkey: Result<PublicKey, Rejection>,
    /// The signature's format and the digest it is checked against.
    signature: Result<(SignatureBytes, Hash32), Rejection>,
}

impl Derived {
    pub fn of(att: &Attestation) -> Derived {
        Derived {
            pubkey: check_pubkey(att),
            signature: check_signature_format(att),
        }
    }

    /// Rule 12's input when the key and signature parse, for a caller that verifies
    /// signatures in batches and passes the verdict to [`Derived::reasons`].
    pub fn signature_item(&self) -> Option<BatchItem> {
        match (&self.pubkey, &self.signature) {
            (Ok(key), Ok((sig, digest))) => Some(BatchItem {
                key: *key,
                sig: *sig,
                msg: Attestation::signing_message(digest),
            }),
            _ => None,
        }
    }

    /// What this node computes from `att` (the one this was derived from) whatever its
    /// rules say.
    pub fn computed(&self, att: &Attestation) -> Computed {
        let digest = match &self.signature {
            Ok((_, digest)) => Some(*digest),
            // The digest does not depend on the signature's format.
            Err(_) => att.digest().ok(),
        };
        Computed {
            digest,
            impact_score: impact_score(&att.measurement.dimensions, &att.measurement.weights),
            delta: benchmark_delta(att),
        }
    }

    /// [`validate_reasons`] for `att` (the one this was derived from), with rule 12's
    /// verdict already known (`Some`), or checked here (`None`).
    pub fn reasons(
        &self,
        att: &Attestation,
        network: &NetworkAnchor,
        now: OffsetDateTime,
        nonce_owner: Option<Hash32>,
        signature_ok: Option<bool>,
    ) -> Vec<Rejection> {
        let mut out = Vec::new();
        let mut note = |r: Result<(), Rejection>| {
            if let Err(e) = r {
                out.push(e);
            }
        };
        note(check_version(att));
        note(check_anchor(att, network));
        note(check_evidence_hash(att));
        note(check_nonce_format(att));
        note(check_time_window(&att.time_window, now));
        note(check_dimensions(att));
        note(check_weights(att));
        note(check_impact(att).map(|_| ()));
        note(check_benchmark_delta(att).map(|_| ()));
        note(check_alg(att));
        match (&self.pubkey, &self.signature) {
            (Ok(pk), Ok((sig, digest))) => {
                let ok = signature_ok.unwrap_or_else(|| {
                    crypto::verify(pk, sig, &Attestation::signing_message(digest)).is_ok()
                });
                if !ok {
                    note(reject(RuleCode::BadSignature, "signature does not verify"));
                }
                note(check_nonce(nonce_owner, digest));
            }
            (pubkey, sig) => {
                note(pubkey.clone().map(|_| ()));
                note(sig.clone().map(|_| ()));
            }
        }
        out
    }
}

fn check_version(att: &Attestation) -> Result<(), Rejection> {
    if att.version != VERSION {
        return reject(
            RuleCode::InvalidVersion,
            format!("version must be \"{VERSION}\""),
        );
    }
    Ok(())
}

fn check_anchor(att: &Attestation, network: &NetworkAnchor) -> Result<(), Rejection> {
    if att.anchor.chain_id != network.chain_id {
        return reject(
            RuleCode::ChainMismatch,
            format!("anchor.chain_id must be \"{}\"", network.chain_id),
        );
    }
    if att.anchor.genesis_merkle_root != network.genesis_merkle_root.to_hex() {
        return reject(
            RuleCode::GenesisMismatch,
            format!(
                "anchor.genesis_merkle_root must be \"{}\"",
                network.genesis_merkle_root
            ),
        );
    }
    Ok(())
}

fn check_evidence_hash(att: &Attestation) -> Result<(), Rejection> {
    if !is_lower_hex(&att.evidence.pack_sha256, 64) {
        return reject(
            RuleCode::InvalidEvidenceHash,
            "evidence.pack_sha256 must be 64 lowercase hex digits",
        );
    }
    Ok(())
}

fn check_nonce_format(att: &Attestation) -> Result<(), Rejection> {
    let n = att.nonce.len();
    if !(32..=128).contains(&n) || !is_lower_hex(&att.nonce, n) {
        return reject(
            RuleCode::InvalidNonce,
            "nonce must be 32 to 128 lowercase hex digits",
        );
    }
    Ok(())
}

fn check_dimensions(att: &Attestation) -> Result<(), Rejection> {
    for (name, d) in &att.measurement.dimensions {
        if !d.is_finite() || !(0.0..=1.0).contains(d) {
            return reject(
                RuleCode::DimensionOutOfRange,
                format!("dimension {name:?} = {d} is outside [0, 1]"),
            );
        }
    }
    Ok(())
}

fn check_weights(att: &Attestation) -> Result<(), Rejection> {
    let mut sum = 0.0;
    for (name, w) in &att.measurement.weights {
        if !w.is_finite() || *w < 0.0 {
            return reject(
                RuleCode::WeightsSum,
                format!("weight {name:?} = {w} must be ≥ 0"),
            );
        }
        sum += w;
    }
    if (sum - 1.0).abs() > EPSILON {
        return reject(RuleCode::WeightsSum, format!("weights sum to {sum}, not 1"));
    }
    Ok(())
}

/// Rule 8; returns the impact this node computes.
fn check_impact(att: &Attestation) -> Result<f64, Rejection> {
    let impact = impact_score(&att.measurement.dimensions, &att.measurement.weights);
    let claimed = att.measurement.impact_score;
    if !claimed.is_finite() || (claimed - impact).abs() > EPSILON {
        return reject(
            RuleCode::ImpactMismatch,
            format!("impact_score {claimed} does not equal Σ dimension·weight = {impact}"),
        );
    }
    Ok(impact)
}

/// Rule 9; returns post − pre of `performance` when both are there.
fn check_benchmark_delta(att: &Attestation) -> Result<Option<f64>, Rejection> {
    let delta = benchmark_delta(att);
    if let Some(expected) = delta {
        match att.benchmarks.as_ref().and_then(|b| b.delta) {
            Some(d) if (d - expected).abs() <= EPSILON => {}
            Some(d) => {
                return reject(
                    RuleCode::BenchmarkDeltaMismatch,
                    format!("benchmarks.delta {d} does not equal post − pre = {expected}"),
                )
            }
            None => {
                return reject(
                    RuleCode::BenchmarkDeltaMismatch,
                    format!("benchmarks.delta is missing; post − pre = {expected}"),
                )
            }
        }
    }
    Ok(delta)
}

fn check_alg(att: &Attestation) -> Result<(), Rejection> {
    if att.signature.alg != "ed25519" {
        return reject(
            RuleCode::UnsupportedSignatureAlg,
            "signature.alg must be \"ed25519\"",
        );
    }
    Ok(())
}

fn check_pubkey(att: &Attestation) -> Result<PublicKey, Rejection> {
    let pubkey = PublicKey::parse(&att.attester.pubkey_ed25519).or_else(|_| {
        reject(
            RuleCode::InvalidPubkey,
            "attester.pubkey_ed25519 must be \"ed25519:\" and 64 lowercase hex digits",
        )
    })?;
    if let Err(e) = pubkey.check_point() {
        return reject(
            RuleCode::InvalidPubkey,
            format!("attester.pubkey_ed25519: {e}"),
        );
    }
    Ok(pubkey)
}

/// The format half of rule 12, and the digest the signature is checked against.
fn check_signature_format(att: &Attestation) -> Result<(SignatureBytes, Hash32), Rejection> {
    let signature = SignatureBytes::parse(&att.signature.sig_base16).or_else(|_| {
        reject(
            RuleCode::BadSignature,
            "signature.sig_base16 must be 128 lowercase hex digits",
        )
    })?;
    let digest = att
        .digest()
        .or_else(|e| reject(RuleCode::BadSignature, e.to_string()))?;
    Ok((signature, digest))
}

fn check_time_window(window: &[String; 2], now: OffsetDateTime) -> Result<(), Rejection> {
    use RuleCode::InvalidTimeWindow;
    let parse = |i: usize| {
        OffsetDateTime::parse(&window[i], &Rfc3339).or_else(|_| {
            reject(
                InvalidTimeWindow,
                format!("time_window[{i}] is not an RFC 3339 timestamp"),
            )
        })
    };
    let (start, end) = (parse(0)?, parse(1)?);
    if start > end {
        return reject(InvalidTimeWindow, "time_window starts after it ends");
    }
    if end > now + MAX_CLOCK_SKEW {
        return reject(
            InvalidTimeWindow,
            "time_window ends more than 5 minutes in the future",
        );
    }
    if end - start > MAX_WINDOW {
        return reject(InvalidTimeWindow, "time_window is longer than 366 days");
    }
    Ok(())
}

/// Rule 13: `existing` is the digest of the attestation already stored under this
/// (attester key, nonce), if any. The same attestation again is not a replay.
pub fn check_nonce(existing: Option<Hash32>, digest: &Hash32) -> Result<(), Rejection> {
    match existing {
        Some(other) if other != *digest => reject(
            RuleCode::DuplicateNonce,
            format!("nonce already used by attestation {other}"),
        ),
        _ => Ok(()),
    }
}

/// All thirteen rules for one attestation. `nonce_owner` looks up the digest stored
/// under (key, nonce).
pub fn validate(
    att: &Attestation,
    network: &NetworkAnchor,
    now: OffsetDateTime,
    nonce_owner: impl FnOnce(&PublicKey, &str) -> Option<Hash32>,
) -> Result<Checked, Rejection> {
    let checked = check_rules(att, network, now)?;
    checked.verify_signature()?;
    check_nonce(nonce_owner(&checked.pubkey, &att.nonce), &checked.digest)?;
    Ok(checked)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::attestation::sample::{now, resign, signed_sample};

    fn code_of(att: &Attestation) -> Option<RuleCode> {
        validate(att, &NetworkAnchor::default(), now(), |_, _| None)
            .err()
            .map(|r| r.code)
    }

    /// Applies `edit`, re-signs, and returns the rule code reported.
    fn after(edit: impl FnOnce(&mut Attestation)) -> Option<RuleCode> {
        let (mut att, kp) = signed_sample(2);
        edit(&mut att);
        resign(&mut att, &kp);
        code_of(&att)
    }

    #[test]
    fn sample_is_valid() {
        assert_eq!(after(|_| {}), None);
    }

    #[test]
    fn each_rule_reports_its_code() {
        use RuleCode::*;
        assert_eq!(
            after(|a| a.version = "poi-2.0".into()),
            Some(InvalidVersion)
        );
        assert_eq!(
            after(|a| a.anchor.chain_id = "x".into()),
            Some(ChainMismatch)
        );
        assert_eq!(
            after(|a| a.anchor.genesis_merkle_root = "00".repeat(32)),
            Some(GenesisMismatch)
        );
        assert_eq!(
            after(|a| a.evidence.pack_sha256 = "AB".repeat(32)),
            Some(InvalidEvidenceHash)
        );
        assert_eq!(after(|a| a.nonce = "ab".repeat(15)), Some(InvalidNonce));
        assert_eq!(after(|a| a.nonce = "ab".repeat(65)), Some(InvalidNonce));
        assert_eq!(after(|a| a.nonce.push('g')), Some(InvalidNonce));
        assert_eq!(after(|a| a.time_window.swap(0, 1)), Some(InvalidTimeWindow));
        assert_eq!(
            after(|a| a.time_window[1] = "2099-01-01T00:00:00Z".into()),
            Some(InvalidTimeWindow)
        );
        assert_eq!(
            after(|a| a.time_window[0] = "2020-01-01T00:00:00Z".into()),
            Some(InvalidTimeWindow)
        );
        assert_eq!(
            after(|a| a.time_window[0] = "yesterday".into()),
            Some(InvalidTimeWindow)
        );
        assert_eq!(
            after(|a| {
                a.measurement.dimensions.insert("quality".into(), 1.5);
            }),
            Some(DimensionOutOfRange)
        );
        assert_eq!(
            after(|a| {
                a.measurement.weights.insert("extra".into(), 0.1);
            }),
            Some(WeightsSum)
        );
        assert_eq!(
            after(|a| a.measurement.impact_score += 0.01),
            Some(ImpactMismatch)
        );
        assert_eq!(
            after(|a| a.benchmarks.as_mut().unwrap().delta = Some(9.0)),
            Some(BenchmarkDeltaMismatch)
        );
        assert_eq!(
            after(|a| a.signature.alg = "rsa".into()),
            Some(UnsupportedSignatureAlg)
        );
    }

    #[test]
    fn pubkey_and_signature_failures() {
        use RuleCode::*;
        let (mut att, _) = signed_sample(3);
        att.attester.pubkey_ed25519 = "ed25519:xyz".into();
        assert_eq!(code_of(&att), Some(InvalidPubkey));
        // y = 2 is not on the curve.
        let mut y2 = [0u8; 32];
        y2[0] = 2;
        att.attester.pubkey_ed25519 = format!("ed25519:{}", hex::encode(y2));
        assert_eq!(code_of(&att), Some(InvalidPubkey));

        let (mut att, _) = signed_sample(3);
        att.evidence.files_processed = Some(1); // changes the digest, not the signature
        assert_eq!(code_of(&att), Some(BadSignature));
        let (mut att, _) = signed_sample(3);
        att.signature.sig_base16.truncate(10);
        assert_eq!(code_of(&att), Some(BadSignature));
    }

    #[test]
    fn first_failure_wins() {
        // Both the version and the nonce are wrong: rule 1 is reported.
        assert_eq!(
            after(|a| {
                a.version = "x".into();
                a.nonce = "zz".into();
            }),
            Some(RuleCode::InvalidVersion)
        );
    }

    #[test]
    fn duplicate_nonce_is_not_the_same_attestation() {
        let (att, _) = signed_sample(4);
        let d = att.digest().unwrap();
        let other = Hash32::digest(b"other");
        let net = NetworkAnchor::default();
        assert!(validate(&att, &net, now(), |_, _| Some(d)).is_ok());
        assert_eq!(
            validate(&att, &net, now(), |_, _| Some(other))
                .unwrap_err()
                .code,
            RuleCode::DuplicateNonce
        );
    }

    #[test]
    fn derived_once_gives_what_each_rule_computes_alone() {
        let net = NetworkAnchor::default();
        let (good, _) = signed_sample(6);
        let mut bad_sig = good.clone();
        bad_sig.signature.sig_base16 = "zz".into();
        let mut bad_key = good.clone();
        bad_key.attester.pubkey_ed25519 = "ed25519:00".into();
        for att in [&good, &bad_sig, &bad_key] {
            let d = Derived::of(att);
            // The digest does not depend on the signature, whatever its format.
            assert_eq!(d.computed(att).digest, Some(att.digest().unwrap()));
            assert_eq!(
                d.computed(att).impact_score,
                impact_score(&att.measurement.dimensions, &att.measurement.weights)
            );
            assert_eq!(d.signature_item().is_some(), std::ptr::eq(att, &good));
            assert_eq!(
                d.reasons(att, &net, now(), None, None),
                validate_reasons(att, &net, now(), None)
            );
        }
        let codes = |att: &Attestation| -> Vec<RuleCode> {
            Derived::of(att)
                .reasons(att, &net, now(), None, None)
                .into_iter()
                .map(|r| r.code)
                .collect()
        };
        assert_eq!(codes(&good), vec![]);
        assert_eq!(codes(&bad_sig), vec![RuleCode::BadSignature]);
        assert_eq!(codes(&bad_key), vec![RuleCode::InvalidPubkey]);
        // A verdict passed in is used instead of checking the signature here.
        let d = Derived::of(&good);
        let refused: Vec<_> = d
            .reasons(&good, &net, now(), None, Some(false))
            .into_iter()
            .map(|r| r.code)
            .collect();
        assert_eq!(refused, vec![RuleCode::BadSignature]);
    }

    #[test]
    fn reasons_list_every_broken_rule() {
        let (mut att, kp) = signed_sample(5);
        att.version = "x".into();
        att.measurement.impact_score = 0.0;
        resign(&mut att, &kp);
        let net = NetworkAnchor::default();
        let codes: Vec<_> = validate_reasons(&att, &net, now(), None)
            .into_iter()
            .map(|r| r.code)
            .collect();
        assert_eq!(
            codes,
            vec![RuleCode::InvalidVersion, RuleCode::ImpactMismatch]
        );
        let (att, _) = signed_sample(5);
        assert!(validate_reasons(&att, &net, now(), None).is_empty());
        let codes: Vec<_> = validate_reasons(&att, &net, now(), Some(Hash32::digest(b"o")))
            .into_iter()
            .map(|r| r.code)
            .collect();
        assert_eq!(codes, vec![RuleCode::DuplicateNonce]);
    }

    #[test]
    fn codes_round_trip() {
        for c in RuleCode::ALL {
            assert_eq!(RuleCode::from_code(c.as_str()), Some(c));
        }
    }
}
