//! Ed25519 keys, domain-separated messages, and signature checks.
//!
//! Verification follows ZIP-215 (ed25519-zebra): non-canonical point encodings and
//! small-order points are accepted, S must be canonical, and the cofactored equation is
//! used. The same rules hold for a single check and for a batch, so a signature's
//! verdict never depends on which path checked it.

mod known_points;

use std::fmt;
use std::str::FromStr;

use ed25519_zebra::{batch, Signature, SigningKey, VerificationKey, VerificationKeyBytes};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::hash::{decode_lower_hex, Hash32};

/// Domain tag of attestation signatures.
pub const POI_TAG: &[u8] = b"bizra/poi/v1";
/// Domain tag of block signatures.
pub const BLOCK_TAG: &[u8] = b"bizra/block/v2";
/// Domain tag of vote signatures.
pub const VOTE_TAG: &[u8] = b"bizra/vote/v2";

/// The message that is signed: a domain tag followed by the 32 raw hash bytes.
pub fn tagged_message(tag: &[u8], hash: &Hash32) -> Vec<u8> {
    let mut m = Vec::with_capacity(tag.len() + 32);
    m.extend_from_slice(tag);
    m.extend_from_slice(hash.as_bytes());
    m
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CryptoError {
    #[error("public key must be \"ed25519:\" followed by 64 lowercase hex digits")]
    PubkeyFormat,
    #[error("public key is not an Ed25519 curve point")]
    PubkeyNotOnCurve,
    #[error("public key is a small-order point: anyone can sign for it")]
    PubkeySmallOrder,
    #[error("signature must be 128 lowercase hex digits")]
    SignatureFormat,
    #[error("signature does not verify")]
    BadSignature,
}

/// An Ed25519 public key as sent on the wire (`ed25519:` + 64 lowercase hex). Holding one
/// says nothing about whether it decodes to a curve point: see [`PublicKey::check_point`].
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PublicKey(pub [u8; 32]);

impl PublicKey {
    pub const PREFIX: &'static str = "ed25519:";

    /// Parses the wire form; the bytes are not yet checked to be a point.
    pub fn parse(s: &str) -> Result<Self, CryptoError> {
        let hex = s
            .strip_prefix(Self::PREFIX)
            .ok_or(CryptoError::PubkeyFormat)?;
        decode_lower_hex::<32>(hex)
            .map(PublicKey)
            .map_err(|_| CryptoError::PubkeyFormat)
    }

    /// Ok when the bytes decode to a point (non-canonical encodings allowed, ZIP-215)
    /// that is not of small order. ZIP-215 verification accepts small-order keys, and for
    /// those R = identity, S = 0 verifies for every message: such a key proves nothing,
    /// so it may not attest, propose or vote. Signature checks themselves stay ZIP-215.
    ///
    /// Keys that pass are remembered (see `known_points`): attesters sign many
    /// attestations with one key, and decompressing it stood out in profiles of `/verify`.
    pub fn check_point(&self) -> Result<(), CryptoError> {
        if known_points::contains(&self.0) {
            return Ok(());
        }
        let point = curve25519_dalek::edwards::CompressedEdwardsY(self.0)
            .decompress()
            .ok_or(CryptoError::PubkeyNotOnCurve)?;
        if point.is_small_order() {
            return Err(CryptoError::PubkeySmallOrder);
        }
        known_points::insert(&self.0);
        Ok(())
    }

    /// The validator id of this key: BLAKE3 of the 32 key bytes.
    pub fn validator_id(&self) -> Hash32 {
        Hash32::digest(&self.0)
    }
}

impl fmt::Display for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}", Self::PREFIX, hex::encode(self.0))
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({self})")
    }
}

impl FromStr for PublicKey {
    type Err = CryptoError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl Serialize for PublicKey {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for PublicKey {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// A 64-byte Ed25519 signature (R ‖ S), 128 lowercase hex digits on the wire.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct SignatureBytes(pub [u8; 64]);

impl SignatureBytes {
    pub fn parse(s: &str) -> Result<Self, CryptoError> {
        decode_lower_hex::<64>(s)
            .map(SignatureBytes)
            .map_err(|_| CryptoError::SignatureFormat)
    }

    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
}

impl fmt::Debug for SignatureBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SignatureBytes({})", self.to_hex())
    }
}

impl Serialize for SignatureBytes {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_hex())
    }
}

impl<'de> Deserialize<'de> for SignatureBytes {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        SignatureBytes::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// A signing key made from a 32-byte seed (RFC 8032 secret key).
#[derive(Clone)]
pub struct Keypair {
    signing: SigningKey,
    public: PublicKey,
}

impl Keypair {
    pub fn from_seed(seed: [u8; 32]) -> Self {
        let signing = SigningKey::from(seed);
        let public = PublicKey(VerificationKeyBytes::from(&signing).into());
        Keypair { signing, public }
    }

    /// A fresh key from the operating system's random source.
    pub fn generate() -> Self {
        let mut seed = [0u8; 32];
        rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut seed);
        Self::from_seed(seed)
    }

    pub fn seed(&self) -> [u8; 32] {
        self.signing.into()
    }

    pub fn public(&self) -> PublicKey {
        self.public
    }

    pub fn sign(&self, msg: &[u8]) -> SignatureBytes {
        SignatureBytes(self.signing.sign(msg).to_bytes())
    }

    /// Signs `tag ‖ hash`.
    pub fn sign_tagged(&self, tag: &[u8], hash: &Hash32) -> SignatureBytes {
        self.sign(&tagged_message(tag, hash))
    }
}

impl fmt::Debug for Keypair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print the seed.
        write!(f, "Keypair({})", self.public)
    }
}

/// Checks one signature.
pub fn verify(key: &PublicKey, sig: &SignatureBytes, msg: &[u8]) -> Result<(), CryptoError> {
    let vk = VerificationKey::try_from(key.0).map_err(|_| CryptoError::PubkeyNotOnCurve)?;
    vk.verify(&Signature::from_bytes(&sig.0), msg)
        .map_err(|_| CryptoError::BadSignature)
}

/// Checks `tag ‖ hash` signed by `key`.
pub fn verify_tagged(
    key: &PublicKey,
    sig: &SignatureBytes,
    tag: &[u8],
    hash: &Hash32,
) -> Result<(), CryptoError> {
    verify(key, sig, &tagged_message(tag, hash))
}

/// One (key, signature, message) triple for [`verify_batch`].
#[derive(Clone, Debug)]
pub struct BatchItem {
    pub key: PublicKey,
    pub sig: SignatureBytes,
    pub msg: Vec<u8>,
}

/// Checks many signatures at once and returns one verdict per item, in order.
///
/// The whole set goes through one batch equation; only when that fails is each item
/// checked alone, so a single bad signature costs one batch plus n single checks, and
/// the verdicts are exactly those of [`verify`].
pub fn verify_batch(items: &[BatchItem]) -> Vec<bool> {
    match items.len() {
        0 => return Vec::new(),
        1 => return vec![verify(&items[0].key, &items[0].sig, &items[0].msg).is_ok()],
        _ => {}
    }
    let mut verifier = batch::Verifier::new();
    for it in items {
        verifier.queue((
            VerificationKeyBytes::from(it.key.0),
            Signature::from_bytes(&it.sig.0),
            &it.msg,
        ));
    }
    if verifier.verify(rand_core::OsRng).is_ok() {
        return vec![true; items.len()];
    }
    items
        .iter()
        .map(|it| verify(&it.key, &it.sig, &it.msg).is_ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(kp: &Keypair, msg: &[u8]) -> BatchItem {
        BatchItem {
            key: kp.public(),
            sig: kp.sign(msg),
            msg: msg.to_vec(),
        }
    }

    #[test]
    fn rfc8032_test_1() {
        // RFC 8032 §7.1, TEST 1 (empty message).
        let seed = decode_lower_hex::<32>(
            "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60",
        )
        .unwrap();
        let kp = Keypair::from_seed(seed);
        assert_eq!(
            hex::encode(kp.public().0),
            "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a"
        );
        assert_eq!(
            kp.sign(b"").to_hex(),
            "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b"
        );
        assert!(verify(&kp.public(), &kp.sign(b""), b"").is_ok());
    }

    #[test]
    fn batch_reports_the_bad_item() {
        let keys: Vec<_> = (0..8u8).map(|i| Keypair::from_seed([i; 32])).collect();
        let mut items: Vec<_> = keys.iter().map(|k| item(k, b"hello")).collect();
        assert_eq!(verify_batch(&items), vec![true; 8]);
        items[3].msg = b"hellp".to_vec();
        let v = verify_batch(&items);
        assert_eq!(v.iter().filter(|ok| !**ok).count(), 1);
        assert!(!v[3]);
    }

    #[test]
    fn small_order_keys_are_refused() {
        // The identity (01 00…00) and the order-2 point (ec ff…7f).
        let mut identity = [0u8; 32];
        identity[0] = 1;
        assert_eq!(
            PublicKey(identity).check_point(),
            Err(CryptoError::PubkeySmallOrder)
        );
        let mut order2 = [0xffu8; 32];
        order2[0] = 0xec;
        order2[31] = 0x7f;
        assert_eq!(
            PublicKey(order2).check_point(),
            Err(CryptoError::PubkeySmallOrder)
        );
        assert!(Keypair::from_seed([3; 32]).public().check_point().is_ok());
    }

    #[test]
    fn only_keys_that_pass_are_remembered() {
        let mut identity = [0u8; 32];
        identity[0] = 1;
        for _ in 0..2 {
            assert_eq!(
                PublicKey(identity).check_point(),
                Err(CryptoError::PubkeySmallOrder)
            );
        }
        assert!(!known_points::contains(&identity));
        let good = Keypair::from_seed([9; 32]).public();
        assert!(good.check_point().is_ok());
        assert!(known_points::contains(&good.0));
        assert!(good.check_point().is_ok());
    }

    #[test]
    fn pubkey_wire_form() {
        let kp = Keypair::from_seed([7; 32]);
        let s = kp.public().to_string();
        assert_eq!(PublicKey::parse(&s), Ok(kp.public()));
        assert_eq!(
            PublicKey::parse(&s.to_uppercase()),
            Err(CryptoError::PubkeyFormat)
        );
        assert_eq!(
            PublicKey::parse(&s["ed25519:".len()..]),
            Err(CryptoError::PubkeyFormat)
        );
    }
}
