//! Columns of the writer's rows (rusqlite), for the reads a write transaction makes.

use rusqlite::Row;

use crate::error::StoreError;

pub(super) fn blob<'r>(row: &'r Row<'_>, column: &str) -> Result<&'r [u8], StoreError> {
    row.get_ref(column)?
        .as_blob()
        .map_err(|e| StoreError::corrupt(format!("column {column}: {e}")))
}

pub(super) fn opt_blob<'r>(row: &'r Row<'_>, column: &str) -> Result<Option<&'r [u8]>, StoreError> {
    row.get_ref(column)?
        .as_blob_or_null()
        .map_err(|e| StoreError::corrupt(format!("column {column}: {e}")))
}

pub(super) fn text<'r>(row: &'r Row<'_>, column: &str) -> Result<&'r str, StoreError> {
    row.get_ref(column)?
        .as_str()
        .map_err(|e| StoreError::corrupt(format!("column {column}: {e}")))
}

pub(super) fn opt_text<'r>(row: &'r Row<'_>, column: &str) -> Result<Option<&'r str>, StoreError> {
    row.get_ref(column)?
        .as_str_or_null()
        .map_err(|e| StoreError::corrupt(format!("column {column}: {e}")))
}
