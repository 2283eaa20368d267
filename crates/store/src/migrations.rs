//! The bookkeeping of schema migrations, the same for every backend: an ordered,
//! append-only list compiled into the binary, a `schema_version` row per applied
//! migration, and which of the list a database still needs. Each backend keeps its own
//! SQL and how it wraps the run in transactions and locks.

use crate::error::StoreError;

/// One migration. Append only: a released migration never changes, so a version number
/// names the same SQL in every build.
pub(crate) struct Migration {
    pub version: i64,
    pub name: &'static str,
    pub sql: &'static str,
}

/// Whether `list` is non-empty with strictly increasing versions from 1 up: what
/// [`pending`] relies on. Each backend asserts it of its list at compile time.
pub(crate) const fn is_well_formed(list: &[Migration]) -> bool {
    if list.is_empty() || list[0].version < 1 {
        return false;
    }
    let mut i = 1;
    while i < list.len() {
        if list[i].version <= list[i - 1].version {
            return false;
        }
        i += 1;
    }
    true
}

/// The version a database has once every migration of `list` is applied (0 for an empty
/// list, which [`is_well_formed`] refuses).
pub(crate) const fn latest(list: &[Migration]) -> i64 {
    match list.last() {
        Some(m) => m.version,
        None => 0,
    }
}

/// The migrations a database at version `found` still needs, oldest first. A database
/// newer than the list was written by a newer build, whose rows this one might misread:
/// refused.
pub(crate) fn pending(list: &[Migration], found: i64) -> Result<&[Migration], StoreError> {
    let newest = latest(list);
    if found > newest {
        return Err(StoreError::Corrupt(format!(
            "database schema version {found} is newer than this build's {newest}"
        )));
    }
    // The list is ordered, so what is left to apply is a suffix.
    Ok(&list[list.partition_point(|m| m.version <= found)..])
}

#[cfg(test)]
mod tests {
    use super::*;

    const fn m(version: i64) -> Migration {
        Migration {
            version,
            name: "m",
            sql: "",
        }
    }

    const LIST: &[Migration] = &[m(1), m(2), m(3)];

    fn versions(list: &[Migration]) -> Vec<i64> {
        list.iter().map(|m| m.version).collect()
    }

    #[test]
    fn a_database_gets_what_it_has_not_applied_in_order() {
        assert_eq!(pending(LIST, 0).map(versions), Ok(vec![1, 2, 3]));
        assert_eq!(pending(LIST, 1).map(versions), Ok(vec![2, 3]));
        assert_eq!(pending(LIST, 3).map(versions), Ok(vec![]));
        assert_eq!(latest(LIST), 3);
    }

    #[test]
    fn a_newer_database_is_refused() {
        let Err(StoreError::Corrupt(why)) = pending(LIST, 4) else {
            panic!("version 4 is beyond the list");
        };
        assert_eq!(
            why,
            "database schema version 4 is newer than this build's 3"
        );
    }

    #[test]
    fn lists_must_start_at_one_and_increase() {
        assert!(is_well_formed(LIST));
        assert!(is_well_formed(&[m(1)]));
        assert!(!is_well_formed(&[]));
        assert!(!is_well_formed(&[m(0), m(1)]));
        assert!(!is_well_formed(&[m(1), m(3), m(2)]));
        assert!(!is_well_formed(&[m(1), m(1)]));
    }
}
