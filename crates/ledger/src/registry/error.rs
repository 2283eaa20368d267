//! The errors registry operations report; a failed operation changes nothing.

use super::evidence::EvidenceError;
use crate::canonical::CanonicalError;
use crate::hash::Hash32;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RegistryError {
    #[error("validator {0} is not in the registry")]
    UnknownValidator(Hash32),
    #[error("validator {0} is already registered")]
    AlreadyRegistered(Hash32),
    #[error("validator {0} is not active")]
    NotActive(Hash32),
    #[error("validator {0} is already slashed")]
    AlreadySlashed(Hash32),
    #[error("validator {validator_id} is quarantined until epoch {until}")]
    Quarantined { validator_id: Hash32, until: u64 },
    #[error("validator {validator_id} was already punished for height {height}")]
    AlreadyPunished { validator_id: Hash32, height: u64 },
    #[error("signature does not verify")]
    BadSignature,
    #[error("network address must be 1 to 256 bytes")]
    BadAddress,
    #[error("bad evidence: {0}")]
    BadEvidence(#[from] EvidenceError),
    #[error("entry is for chain {entry:?}, registry is for {registry:?}")]
    WrongChain { entry: String, registry: String },
    #[error("entry is for epoch {entry}, the current epoch is {current}")]
    WrongEpoch { entry: u64, current: u64 },
    #[error("caller is at epoch {given}, the registry at {registry}")]
    EpochMismatch { given: u64, registry: u64 },
    #[error("epoch boundary {got} out of order: expected {expected}")]
    EpochOrder { expected: u64, got: u64 },
    #[error("genesis lists {0} validators, more than the active set holds")]
    TooManyGenesisValidators(usize),
    #[error(transparent)]
    Canonical(#[from] CanonicalError),
}
