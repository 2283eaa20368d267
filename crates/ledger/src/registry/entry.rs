//! Registry ledger entries (register, exit, slash), their signed bytes and signatures.

use serde::{Deserialize, Serialize};

use super::error::RegistryError;
use super::evidence::Evidence;
use crate::canonical::to_canonical_bytes;
use crate::crypto::{self, Keypair, PublicKey, SignatureBytes};
use crate::hash::Hash32;

/// Domain tag of registration signatures.
pub const REGISTER_TAG: &[u8] = b"bizra/register/v1";
/// Domain tag of exit signatures.
pub const EXIT_TAG: &[u8] = b"bizra/exit/v1";

/// Longest accepted `network_address`, in bytes: entries live in blocks forever.
pub const MAX_NETWORK_ADDRESS_LEN: usize = 256;

/// A key asks to join the validator set. Signed by that key over
/// `b"bizra/register/v1"` ‖ BLAKE3(JCS of every field but `signature`).
///
/// `chain_id` and `epoch` are signed so that the entry cannot be replayed on another
/// chain or in a later epoch (after the key has exited or served a quarantine, say): the
/// registry accepts it only in the epoch it names.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Registration {
    pub chain_id: String,
    pub epoch: u64,
    pub pubkey_ed25519: PublicKey,
    pub network_address: String,
    /// Bond added to the validator's `stake_bond`.
    pub stake_bond: u64,
    pub signature: SignatureBytes,
}

/// The signed part of a [`Registration`].
#[derive(Serialize)]
struct RegistrationBody<'a> {
    chain_id: &'a str,
    epoch: u64,
    pubkey_ed25519: &'a PublicKey,
    network_address: &'a str,
    stake_bond: u64,
}

impl Registration {
    pub fn sign(
        chain_id: &str,
        epoch: u64,
        key: &Keypair,
        network_address: &str,
        stake_bond: u64,
    ) -> Result<Registration, RegistryError> {
        let pubkey_ed25519 = key.public();
        let digest = Self::body_digest(
            chain_id,
            epoch,
            &pubkey_ed25519,
            network_address,
            stake_bond,
        )?;
        Ok(Registration {
            chain_id: chain_id.to_string(),
            epoch,
            pubkey_ed25519,
            network_address: network_address.to_string(),
            stake_bond,
            signature: key.sign_tagged(REGISTER_TAG, &digest),
        })
    }

    fn body_digest(
        chain_id: &str,
        epoch: u64,
        pubkey_ed25519: &PublicKey,
        network_address: &str,
        stake_bond: u64,
    ) -> Result<Hash32, RegistryError> {
        let body = RegistrationBody {
            chain_id,
            epoch,
            pubkey_ed25519,
            network_address,
            stake_bond,
        };
        Ok(Hash32::digest(&to_canonical_bytes(&body)?))
    }

    /// BLAKE3 of the JCS bytes of the unsigned fields: what the signature covers.
    pub fn digest(&self) -> Result<Hash32, RegistryError> {
        Self::body_digest(
            &self.chain_id,
            self.epoch,
            &self.pubkey_ed25519,
            &self.network_address,
            self.stake_bond,
        )
    }

    pub fn validator_id(&self) -> Hash32 {
        self.pubkey_ed25519.validator_id()
    }

    /// The signature by `pubkey_ed25519`, a usable key (not small-order), a bond every
    /// JCS implementation writes alike, and an address of sane length.
    pub fn verify(&self) -> Result<(), RegistryError> {
        if self.network_address.is_empty() || self.network_address.len() > MAX_NETWORK_ADDRESS_LEN {
            return Err(RegistryError::BadAddress);
        }
        if self.stake_bond > crate::attestation::schema::MAX_SAFE_INTEGER {
            return Err(RegistryError::BadSignature);
        }
        self.pubkey_ed25519
            .check_point()
            .map_err(|_| RegistryError::BadSignature)?;
        crypto::verify_tagged(
            &self.pubkey_ed25519,
            &self.signature,
            REGISTER_TAG,
            &self.digest()?,
        )
        .map_err(|_| RegistryError::BadSignature)
    }
}

/// An active validator asks to leave. Signed by its registered key over
/// `b"bizra/exit/v1"` ‖ BLAKE3(JCS of every field but `signature`); `chain_id` and `epoch`
/// bind it to one chain and one epoch, as for [`Registration`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExitRequest {
    pub chain_id: String,
    pub epoch: u64,
    pub validator_id: Hash32,
    pub signature: SignatureBytes,
}

#[derive(Serialize)]
struct ExitBody<'a> {
    chain_id: &'a str,
    epoch: u64,
    validator_id: &'a Hash32,
}

impl ExitRequest {
    pub fn sign(chain_id: &str, epoch: u64, key: &Keypair) -> Result<ExitRequest, RegistryError> {
        let validator_id = key.public().validator_id();
        let digest = Self::body_digest(chain_id, epoch, &validator_id)?;
        Ok(ExitRequest {
            chain_id: chain_id.to_string(),
            epoch,
            validator_id,
            signature: key.sign_tagged(EXIT_TAG, &digest),
        })
    }

    fn body_digest(
        chain_id: &str,
        epoch: u64,
        validator_id: &Hash32,
    ) -> Result<Hash32, RegistryError> {
        let body = ExitBody {
            chain_id,
            epoch,
            validator_id,
        };
        Ok(Hash32::digest(&to_canonical_bytes(&body)?))
    }

    pub fn digest(&self) -> Result<Hash32, RegistryError> {
        Self::body_digest(&self.chain_id, self.epoch, &self.validator_id)
    }

    /// The signature by `key`, which must be the key of `validator_id`.
    pub fn verify(&self, key: &PublicKey) -> Result<(), RegistryError> {
        if key.validator_id() != self.validator_id {
            return Err(RegistryError::BadSignature);
        }
        crypto::verify_tagged(key, &self.signature, EXIT_TAG, &self.digest()?)
            .map_err(|_| RegistryError::BadSignature)
    }
}

/// A change to the registry, included in a block. On the wire:
/// `{"type": "register"|"exit"|"slash", ...fields}`.
///
/// A slash entry carries only equivocation evidence: it is the one offense with a
/// self-contained proof, and it needs no signature because the evidence checks on its own.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase", deny_unknown_fields)]
pub enum RegistryEntry {
    Register(Registration),
    Exit(ExitRequest),
    Slash { evidence: Box<Evidence> },
}

impl RegistryEntry {
    /// BLAKE3 of the entry's JCS bytes, signature included: an id to deduplicate entries.
    pub fn digest(&self) -> Result<Hash32, RegistryError> {
        Ok(Hash32::digest(&to_canonical_bytes(self)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CHAIN: &str = "bizra-testnet-001";

    fn kp(seed: u8) -> Keypair {
        Keypair::from_seed([seed; 32])
    }

    #[test]
    fn registration_round_trip_and_tamper() {
        let r = Registration::sign(CHAIN, 3, &kp(1), "http://10.0.0.1:8080", 500).unwrap();
        r.verify().unwrap();
        let text = serde_json::to_string(&RegistryEntry::Register(r.clone())).unwrap();
        let back: RegistryEntry = serde_json::from_str(&text).unwrap();
        assert_eq!(back, RegistryEntry::Register(r.clone()));
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["type"], "register");
        assert_eq!(v["stake_bond"], 500);

        let tampered: [fn(&mut Registration); 5] = [
            |r| r.stake_bond += 1,
            |r| r.epoch += 1,
            |r| r.chain_id.push('x'),
            |r| r.network_address.push('x'),
            |r| r.signature.0[0] ^= 1,
        ];
        for t in tampered {
            let mut bad = r.clone();
            t(&mut bad);
            assert_eq!(bad.verify(), Err(RegistryError::BadSignature));
        }
        // Another key's registration signature does not carry over.
        let mut stolen = r.clone();
        stolen.pubkey_ed25519 = kp(2).public();
        assert_eq!(stolen.verify(), Err(RegistryError::BadSignature));
    }

    #[test]
    fn registration_address_limits() {
        let r = Registration::sign(CHAIN, 0, &kp(1), "", 0).unwrap();
        assert_eq!(r.verify(), Err(RegistryError::BadAddress));
        let long = "a".repeat(MAX_NETWORK_ADDRESS_LEN + 1);
        let r = Registration::sign(CHAIN, 0, &kp(1), &long, 0).unwrap();
        assert_eq!(r.verify(), Err(RegistryError::BadAddress));
    }

    #[test]
    fn exit_round_trip_and_tamper() {
        let e = ExitRequest::sign(CHAIN, 4, &kp(1)).unwrap();
        e.verify(&kp(1).public()).unwrap();
        assert_eq!(e.verify(&kp(2).public()), Err(RegistryError::BadSignature));
        let text = serde_json::to_string(&RegistryEntry::Exit(e.clone())).unwrap();
        assert!(text.contains("\"type\":\"exit\""));
        assert_eq!(
            serde_json::from_str::<RegistryEntry>(&text).unwrap(),
            RegistryEntry::Exit(e.clone())
        );
        let mut bad = e.clone();
        bad.epoch = 5;
        assert_eq!(
            bad.verify(&kp(1).public()),
            Err(RegistryError::BadSignature)
        );
        let mut bad = e.clone();
        bad.chain_id = "other".into();
        assert_eq!(
            bad.verify(&kp(1).public()),
            Err(RegistryError::BadSignature)
        );
        // An exit signed by key 2 but naming validator 1.
        let mut bad = ExitRequest::sign(CHAIN, 4, &kp(2)).unwrap();
        bad.validator_id = kp(1).public().validator_id();
        assert_eq!(
            bad.verify(&kp(1).public()),
            Err(RegistryError::BadSignature)
        );
    }

    #[test]
    fn signed_bytes_are_domain_separated() {
        // The same key signing the same digest for an exit and for a registration gives
        // different signatures, so one cannot stand in for the other.
        let d = Hash32::digest(b"x");
        assert_ne!(
            kp(1).sign_tagged(REGISTER_TAG, &d),
            kp(1).sign_tagged(EXIT_TAG, &d)
        );
    }

    #[test]
    fn unknown_fields_and_types_are_refused() {
        let e = ExitRequest::sign(CHAIN, 4, &kp(1)).unwrap();
        let mut v = serde_json::to_value(RegistryEntry::Exit(e)).unwrap();
        v["extra"] = 1.into();
        assert!(serde_json::from_value::<RegistryEntry>(v.clone()).is_err());
        v.as_object_mut().unwrap().remove("extra");
        v["type"] = "retire".into();
        assert!(serde_json::from_value::<RegistryEntry>(v).is_err());
    }

    #[test]
    fn entry_digest_changes_with_the_signature() {
        let a = RegistryEntry::Exit(ExitRequest::sign(CHAIN, 4, &kp(1)).unwrap());
        let mut b = a.clone();
        if let RegistryEntry::Exit(e) = &mut b {
            e.signature.0[5] ^= 1;
        }
        assert_ne!(a.digest().unwrap(), b.digest().unwrap());
    }
}
