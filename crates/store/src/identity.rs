//! Binding a store to one chain: what the identity rows in `meta` say, the same on every
//! backend. The backends read and write the rows, in one transaction (and on PostgreSQL
//! under an advisory lock, so two replicas cannot both find the store empty).

use crate::error::StoreError;
use crate::types::IdentityCheck;

/// The verdict on binding to `chain_id` and `genesis_hex` given the stored chain id and
/// genesis hash: `Fresh` when neither is stored (the caller then writes both and
/// commits), `Matches` when both name this chain. Another chain is a `Conflict` (refuse
/// to start); only one of the two rows is a damaged store.
pub(crate) fn judge(
    stored_chain: Option<String>,
    stored_genesis: Option<String>,
    chain_id: &str,
    genesis_hex: &str,
) -> Result<IdentityCheck, StoreError> {
    match (stored_chain, stored_genesis) {
        (None, None) => Ok(IdentityCheck::Fresh),
        (Some(c), Some(g)) if c == chain_id && g == genesis_hex => Ok(IdentityCheck::Matches),
        (Some(c), Some(g)) => Err(StoreError::Conflict(format!(
            "this store belongs to chain {c} with genesis {g}, not chain {chain_id} with genesis {genesis_hex}"
        ))),
        _ => Err(StoreError::corrupt(
            "store has only one of chain_id and genesis_hash",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn some(s: &str) -> Option<String> {
        Some(s.to_string())
    }

    #[test]
    fn verdicts() {
        assert_eq!(judge(None, None, "c", "g"), Ok(IdentityCheck::Fresh));
        assert_eq!(
            judge(some("c"), some("g"), "c", "g"),
            Ok(IdentityCheck::Matches)
        );
        assert_eq!(
            judge(some("c"), some("g"), "c", "h"),
            Err(StoreError::Conflict(
                "this store belongs to chain c with genesis g, not chain c with genesis h".into()
            ))
        );
        assert!(matches!(
            judge(some("d"), some("g"), "c", "g"),
            Err(StoreError::Conflict(_))
        ));
        for half in [
            judge(some("c"), None, "c", "g"),
            judge(None, some("g"), "c", "g"),
        ] {
            assert!(matches!(half, Err(StoreError::Corrupt(_))));
        }
    }
}
