//! Attestations signed before a timed run starts, on every core: an Ed25519 signature per
//! request would otherwise come out of the run's own CPU. `node0 bench` submits them,
//! `node0 db-pool-probe` inserts them into the store.

use bizra_ledger::attestation::Attestation;
use bizra_ledger::crypto::Keypair;
use bizra_ledger::params::NetworkAnchor;
use bizra_ledger::Hash32;

use crate::attest::{AttestError, AttestSpec};
use crate::bench::engine::split;

#[derive(Debug, thiserror::Error)]
pub enum PresignError {
    #[error("signing: {0}")]
    Sign(#[from] AttestError),
    #[error("a signing thread panicked")]
    Panicked,
}

/// Signs `count` attestations of [`AttestSpec::sample`] for `network`, each with a fresh
/// nonce, one attester key per thread, and turns each into a `T` with `finish` on the
/// signing thread (so that encoding them is spread over the cores as well). The first
/// error stops the work of its thread and is returned.
pub fn presign<T, E, F>(
    network: &NetworkAnchor,
    attester_id: &str,
    count: usize,
    finish: F,
) -> Result<Vec<T>, E>
where
    T: Send,
    E: From<PresignError> + Send,
    F: Fn(Attestation, Hash32) -> Result<T, E> + Sync,
{
    if count == 0 {
        return Ok(Vec::new());
    }
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(count);
    let spec = AttestSpec::sample(attester_id);
    let parts: Vec<Result<Vec<T>, E>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|k| {
                let (spec, finish) = (&spec, &finish);
                s.spawn(move || {
                    let key = Keypair::generate();
                    (0..split(count, threads, k))
                        .map(|_| {
                            let (att, digest) =
                                spec.sign(network, &key).map_err(PresignError::from)?;
                            finish(att, digest)
                        })
                        .collect()
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(PresignError::Panicked.into()))
            })
            .collect()
    });
    let mut all = Vec::with_capacity(count);
    for p in parts {
        all.extend(p?);
    }
    Ok(all)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use time::OffsetDateTime;

    use super::*;

    #[test]
    fn presigned_attestations_are_valid_unique_and_complete() {
        let network = NetworkAnchor::default();
        // More than one per core, and not a multiple of the core count.
        let count = 2 * std::thread::available_parallelism().map_or(1, |n| n.get()) + 1;
        let signed = presign(&network, "node0-test", count, |att, digest| {
            Ok::<_, PresignError>((att, digest))
        })
        .unwrap();
        assert_eq!(signed.len(), count);
        let mut nonces = BTreeSet::new();
        for (att, digest) in &signed {
            assert_eq!(&att.digest().unwrap(), digest);
            assert_eq!(att.attester.id, "node0-test");
            let reasons = bizra_ledger::attestation::rules::validate_reasons(
                att,
                &network,
                OffsetDateTime::now_utc(),
                None,
            );
            assert!(reasons.is_empty(), "{reasons:?}");
            nonces.insert(att.nonce.clone());
        }
        assert_eq!(nonces.len(), count);
    }

    #[derive(Debug, thiserror::Error)]
    enum TestError {
        #[error(transparent)]
        Presign(#[from] PresignError),
        #[error("refused")]
        Refused,
    }

    #[test]
    fn an_error_of_finish_is_returned_and_zero_signs_nothing() {
        let network = NetworkAnchor::default();
        let r = presign(&network, "node0-test", 3, |_, _| {
            Err::<(), _>(TestError::Refused)
        });
        assert!(matches!(r, Err(TestError::Refused)));
        let none = presign(&network, "node0-test", 0, |_, _| -> Result<(), TestError> {
            panic!("nothing to sign")
        });
        assert!(none.unwrap().is_empty());
    }
}
