//! Attestations that arrive in a block, the part that does not depend on the driver. A
//! block from another validator may carry an attestation whose (attester key, nonce) this
//! store holds under another digest (two bodies submitted to two validators at once): the
//! ledger order decides which one is finalized, so the store keeps both, the second in
//! `contested_attestations`. Each backend inserts what it can into `attestations`, looks
//! up the rest, and [`judge`] says what each item is, in order.

use std::collections::{HashMap, HashSet};

use bizra_ledger::Hash32;

use crate::error::StoreError;
use crate::rows::NonceOwners;
use crate::types::{BlockAttestation, NewAttestation};

/// The verdict on a call's items: one outcome per item, in order, and which items go into
/// `contested_attestations` (indexes into the items, in order).
#[derive(Debug, PartialEq)]
pub(crate) struct Judged {
    pub outcomes: Vec<BlockAttestation>,
    pub contested: Vec<usize>,
    /// How many went into `attestations` (for the counters).
    pub stored: i64,
}

/// Judges `items` in order. `inserted` holds the digests the backend inserted into
/// `attestations` in this call; `known`, the digests of the other items that were stored
/// already (in either table, rows of this call included, which is what makes a second
/// copy in one call `Known`); `owners`, for the remaining items, the digest in
/// `attestations` that holds their key and nonce.
pub(crate) fn judge(
    items: &[NewAttestation],
    inserted: &HashMap<Hash32, i64>,
    known: &HashSet<Hash32>,
    owners: &NonceOwners,
) -> Result<Judged, StoreError> {
    let mut first = HashSet::with_capacity(items.len());
    let mut judged = Judged {
        outcomes: Vec::with_capacity(items.len()),
        contested: Vec::new(),
        stored: 0,
    };
    for (i, item) in items.iter().enumerate() {
        // Only the first copy of a digest in the call is new; later ones are known.
        let is_first = first.insert(item.digest);
        let outcome = if is_first && inserted.contains_key(&item.digest) {
            judged.stored += 1;
            BlockAttestation::Stored
        } else if !is_first || known.contains(&item.digest) {
            BlockAttestation::Known
        } else {
            let key = (item.attester_pubkey, item.nonce.clone());
            match owners.get(&key) {
                Some(owner) => {
                    judged.contested.push(i);
                    BlockAttestation::Contested { owner: *owner }
                }
                None => {
                    return Err(StoreError::Conflict(format!(
                        "attestation {} was refused by a constraint this store does not know",
                        item.digest
                    )))
                }
            }
        };
        judged.outcomes.push(outcome);
    }
    Ok(judged)
}

/// The items that did not go into `attestations`: the ones to look up.
pub(crate) fn not_inserted<'i>(
    items: &'i [NewAttestation],
    inserted: &HashMap<Hash32, i64>,
) -> Vec<&'i NewAttestation> {
    let mut seen = HashSet::with_capacity(items.len());
    items
        .iter()
        .filter(|i| seen.insert(i.digest) && !inserted.contains_key(&i.digest))
        .collect()
}

#[cfg(test)]
mod tests {
    use bizra_ledger::crypto::PublicKey;

    use super::*;

    fn item(key: u8, nonce: &str, body: &str) -> NewAttestation {
        NewAttestation {
            digest: Hash32::digest(format!("{key}/{nonce}/{body}").as_bytes()),
            attester_pubkey: PublicKey([key; 32]),
            attester_id: "a".into(),
            nonce: nonce.into(),
            body: Vec::new(),
            impact_score: 0.5,
            received_at_ms: 1,
        }
    }

    #[test]
    fn each_item_in_order() {
        let new = item(1, "n1", "x");
        let stored_before = item(1, "n2", "x");
        let rival = item(1, "n2", "y");
        let rival_of_new = item(1, "n1", "z");
        let items = vec![
            new.clone(),
            new.clone(),
            stored_before.clone(),
            rival.clone(),
            rival.clone(),
            rival_of_new.clone(),
        ];
        let inserted: HashMap<Hash32, i64> = [(new.digest, 7)].into();
        let rest: Vec<Hash32> = not_inserted(&items, &inserted)
            .iter()
            .map(|i| i.digest)
            .collect();
        // Each digest is looked up once; a second copy of an inserted one not at all.
        assert_eq!(
            rest,
            [stored_before.digest, rival.digest, rival_of_new.digest]
        );
        let known: HashSet<Hash32> = [stored_before.digest].into();
        let mut owners = NonceOwners::new();
        owners.insert((rival.attester_pubkey, "n2".into()), stored_before.digest);
        owners.insert((rival.attester_pubkey, "n1".into()), new.digest);

        let judged = judge(&items, &inserted, &known, &owners).unwrap();
        assert_eq!(
            judged.outcomes,
            [
                BlockAttestation::Stored,
                BlockAttestation::Known,
                BlockAttestation::Known,
                BlockAttestation::Contested {
                    owner: stored_before.digest
                },
                BlockAttestation::Known,
                BlockAttestation::Contested { owner: new.digest },
            ]
        );
        assert_eq!(judged.contested, [3, 5]);
        assert_eq!(judged.stored, 1);
    }

    #[test]
    fn an_item_nothing_explains_is_a_conflict() {
        let a = item(1, "n", "x");
        let err = judge(
            std::slice::from_ref(&a),
            &HashMap::new(),
            &HashSet::new(),
            &NonceOwners::new(),
        )
        .unwrap_err();
        assert!(matches!(err, StoreError::Conflict(_)), "{err:?}");
    }
}
