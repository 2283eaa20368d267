//! Which block header version a store holds (docs/protocol.md §3.1). Blocks of another
//! version hash and sign differently and no migration converts them, so a store that
//! holds them is refused when it is opened, before any schema migration changes it: the
//! build that wrote it can still open it. The verdict is the same on every backend; each
//! reads the values in its own transaction.

use bizra_ledger::block::BLOCK_VERSION;

use crate::error::StoreError;

/// `meta` key of the block header version of the store's blocks, written with the
/// chain identity when a store is bound. Stores bound by version-1 builds lack it.
pub const META_HEADER_VERSION: &str = "block_header_version";

/// The value of [`META_HEADER_VERSION`] this build writes.
pub(crate) fn this_version() -> String {
    BLOCK_VERSION.to_string()
}

/// The verdict on a store that holds a schema already. `recorded` is its
/// [`META_HEADER_VERSION`] row, `first_header` the header JSON of its lowest block (a
/// node's genesis block), `bound` whether it has a chain id row. `place` names the store
/// for the operator ("data directory", "database schema").
pub(crate) fn judge(
    recorded: Option<&str>,
    first_header: Option<&str>,
    bound: bool,
    place: &'static str,
) -> Result<(), StoreError> {
    let recorded = recorded
        .map(|v| {
            v.parse::<u64>().map_err(|_| {
                StoreError::corrupt(format!(
                    "meta {META_HEADER_VERSION} is {v:?}, not a header version"
                ))
            })
        })
        .transpose()?;
    let first = first_header.map(version_of).transpose()?;
    // Every build since version 2 records the version in the transaction that binds the
    // store, so a bound store without the row, and without blocks to ask, was bound by
    // a version-1 build.
    let implied = (bound && recorded.is_none() && first.is_none()).then_some(1);
    match [recorded, first, implied]
        .into_iter()
        .flatten()
        .find(|v| *v != u64::from(BLOCK_VERSION))
    {
        Some(found) => Err(StoreError::HeaderVersion {
            place,
            found,
            expected: BLOCK_VERSION,
        }),
        None => Ok(()),
    }
}

/// The `version` of a stored header. Read from the JSON value rather than as a
/// `BlockHeader`: a header of another version need not have this version's fields.
fn version_of(header: &str) -> Result<u64, StoreError> {
    serde_json::from_str::<serde_json::Value>(header)
        .ok()
        .and_then(|v| v.get("version").and_then(serde_json::Value::as_u64))
        .ok_or_else(|| StoreError::corrupt("the first stored block header has no version"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const V1: &str = r#"{"version":1,"chain_id":"c","height":0,"parents":[]}"#;
    const V2: &str = r#"{"version":2,"chain_id":"c","epoch":0,"height":0,"parents":[]}"#;

    #[test]
    fn an_empty_or_version_2_store_opens() {
        assert_eq!(judge(None, None, false, "data directory"), Ok(()));
        assert_eq!(judge(Some("2"), None, true, "data directory"), Ok(()));
        assert_eq!(judge(Some("2"), Some(V2), true, "data directory"), Ok(()));
        // Blocks stored without binding (tests, tools) answer for themselves.
        assert_eq!(judge(None, Some(V2), false, "data directory"), Ok(()));
    }

    #[test]
    fn a_version_1_store_is_refused_naming_both_versions() {
        let refused = |r: Result<(), StoreError>| match r {
            Err(StoreError::HeaderVersion {
                found, expected, ..
            }) => (found, expected),
            other => panic!("not refused: {other:?}"),
        };
        // Its genesis header, with or without the identity rows.
        assert_eq!(
            refused(judge(None, Some(V1), true, "data directory")),
            (1, 2)
        );
        assert_eq!(
            refused(judge(None, Some(V1), false, "data directory")),
            (1, 2)
        );
        // Bound, but no block was stored yet.
        assert_eq!(refused(judge(None, None, true, "data directory")), (1, 2));
        // A recorded version that is not this build's, older or newer.
        assert_eq!(
            refused(judge(Some("3"), None, true, "data directory")),
            (3, 2)
        );
        let Err(e) = judge(None, Some(V1), true, "data directory") else {
            unreachable!()
        };
        assert_eq!(
            e.to_string(),
            "this data directory holds block headers of version 1; this node reads and \
             writes version 2; start it with a new data directory (no migration from \
             version 1)"
        );
    }

    #[test]
    fn unreadable_versions_are_corrupt() {
        for (recorded, header) in [
            (Some("two"), None),
            (None, Some("not json")),
            (None, Some(r#"{"height":0}"#)),
        ] {
            assert!(matches!(
                judge(recorded, header, true, "data directory"),
                Err(StoreError::Corrupt(_))
            ));
        }
    }
}
