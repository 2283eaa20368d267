//! What can go wrong in a store, in the terms the node answers with: `Unavailable` is a
//! 503 (retry later, nothing was written), `Conflict` and `NotFound` are the caller's
//! problem, `Corrupt` means a row does not decode and needs an operator.

/// A store failure. Every variant carries a human-readable detail; none carries secrets.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// The database could not be reached or did not answer in time (connection, pool,
    /// I/O, busy, disk full). The operation did not happen; it may succeed later.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// The write contradicts what is stored (an attestation already in another block, a
    /// block hash with different content, a different genesis).
    #[error("conflict: {0}")]
    Conflict(String),
    /// Something the operation refers to is not stored.
    #[error("not found: {0}")]
    NotFound(String),
    /// A stored row or the schema is not what this build can read.
    #[error("corrupt store: {0}")]
    Corrupt(String),
    /// The caller passed a value the store cannot represent (a u64 beyond i64, a NaN).
    #[error("invalid input: {0}")]
    Invalid(String),
    /// The store holds blocks of a header version this build does not read
    /// (docs/protocol.md §3.1); no migration converts them. Refused at open, before any
    /// schema migration, so the store stays as its own build left it.
    #[error(
        "this {place} holds block headers of version {found}; this node reads and writes \
         version {expected}; start it with a new {place} (no migration from version {found})"
    )]
    HeaderVersion {
        /// What the store is to the operator: "data directory", "database schema".
        place: &'static str,
        found: u64,
        expected: u32,
    },
}

impl StoreError {
    /// True for failures a client should retry (HTTP 503).
    pub fn is_unavailable(&self) -> bool {
        matches!(self, StoreError::Unavailable(_))
    }

    pub(crate) fn corrupt(what: impl std::fmt::Display) -> StoreError {
        StoreError::Corrupt(what.to_string())
    }
}

/// SQLite primary result codes that mean the file itself is damaged
/// (SQLITE_CORRUPT, SQLITE_NOTADB), as opposed to being busy or unreachable.
const SQLITE_CORRUPT: i64 = 11;
const SQLITE_NOTADB: i64 = 26;

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> StoreError {
        use sqlx::error::ErrorKind;
        match &e {
            sqlx::Error::Database(db) => match db.kind() {
                ErrorKind::UniqueViolation
                | ErrorKind::ForeignKeyViolation
                | ErrorKind::CheckViolation => StoreError::Conflict(db.message().to_string()),
                ErrorKind::NotNullViolation => StoreError::Invalid(db.message().to_string()),
                _ => {
                    // SQLite reports extended codes; the low byte is the primary code.
                    let primary = db
                        .code()
                        .and_then(|c| c.parse::<i64>().ok())
                        .map(|c| c & 0xff);
                    if matches!(primary, Some(SQLITE_CORRUPT | SQLITE_NOTADB)) {
                        StoreError::Corrupt(db.message().to_string())
                    } else {
                        StoreError::Unavailable(db.message().to_string())
                    }
                }
            },
            sqlx::Error::RowNotFound => StoreError::NotFound("row".into()),
            sqlx::Error::ColumnDecode { .. }
            | sqlx::Error::Decode(_)
            | sqlx::Error::ColumnNotFound(_)
            | sqlx::Error::ColumnIndexOutOfBounds { .. }
            | sqlx::Error::TypeNotFound { .. } => StoreError::Corrupt(e.to_string()),
            // Pool timeouts, closed pools, I/O, worker crashes, configuration: the
            // database is not usable right now.
            _ => StoreError::Unavailable(e.to_string()),
        }
    }
}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> StoreError {
        use rusqlite::ffi::ErrorCode;
        match &e {
            rusqlite::Error::SqliteFailure(failure, message) => {
                let message = message.clone().unwrap_or_else(|| failure.to_string());
                match failure.code {
                    ErrorCode::ConstraintViolation
                        if failure.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_NOTNULL =>
                    {
                        StoreError::Invalid(message)
                    }
                    ErrorCode::ConstraintViolation => StoreError::Conflict(message),
                    ErrorCode::DatabaseCorrupt | ErrorCode::NotADatabase => {
                        StoreError::Corrupt(message)
                    }
                    // Busy, locked, I/O, disk full, cannot open: not usable right now.
                    _ => StoreError::Unavailable(message),
                }
            }
            rusqlite::Error::QueryReturnedNoRows => StoreError::NotFound("row".into()),
            rusqlite::Error::FromSqlConversionFailure(..)
            | rusqlite::Error::IntegralValueOutOfRange(..)
            | rusqlite::Error::InvalidColumnIndex(_)
            | rusqlite::Error::InvalidColumnName(_)
            | rusqlite::Error::InvalidColumnType(..)
            | rusqlite::Error::Utf8Error(_) => StoreError::Corrupt(e.to_string()),
            _ => StoreError::Unavailable(e.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlite_failures_map_by_their_code() {
        let db = rusqlite::Connection::open_in_memory().unwrap();
        db.execute_batch("CREATE TABLE t (k INTEGER PRIMARY KEY, v TEXT NOT NULL)")
            .unwrap();
        db.execute("INSERT INTO t VALUES (1, 'a')", []).unwrap();
        let twice = db.execute("INSERT INTO t VALUES (1, 'b')", []).unwrap_err();
        assert!(matches!(StoreError::from(twice), StoreError::Conflict(_)));
        let null = db
            .execute("INSERT INTO t VALUES (2, NULL)", [])
            .unwrap_err();
        assert!(matches!(StoreError::from(null), StoreError::Invalid(_)));
        let wrong_type = db
            .query_row("SELECT v FROM t", [], |r| r.get::<_, i64>(0))
            .unwrap_err();
        assert!(matches!(
            StoreError::from(wrong_type),
            StoreError::Corrupt(_)
        ));
        let missing = db
            .query_row("SELECT v FROM t WHERE k = 9", [], |r| r.get::<_, String>(0))
            .unwrap_err();
        assert!(matches!(StoreError::from(missing), StoreError::NotFound(_)));
        let no_table = db
            .execute("INSERT INTO nowhere VALUES (1)", [])
            .unwrap_err();
        assert!(StoreError::from(no_table).is_unavailable());
    }

    #[test]
    fn pool_and_io_failures_are_unavailable() {
        assert!(StoreError::from(sqlx::Error::PoolTimedOut).is_unavailable());
        assert!(StoreError::from(sqlx::Error::PoolClosed).is_unavailable());
        let io = std::io::Error::other("disk gone");
        assert!(StoreError::from(sqlx::Error::Io(io)).is_unavailable());
        assert!(matches!(
            StoreError::from(sqlx::Error::ColumnNotFound("x".into())),
            StoreError::Corrupt(_)
        ));
        assert!(matches!(
            StoreError::from(sqlx::Error::RowNotFound),
            StoreError::NotFound(_)
        ));
    }
}
