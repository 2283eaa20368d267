//! Multi-row statements. On the reader pool each statement is one round trip to sqlx's
//! SQLite worker thread, and on the writer thread each is one more statement run; so
//! batches go in chunks of a few fixed sizes rather than a statement per row, and each
//! statement's text is built once per size.

use std::sync::OnceLock;

/// The chunk sizes, largest first. A fixed set keeps the prepared-statement caches small
/// (one statement per size).
pub(super) const CHUNKS: [usize; 5] = [256, 64, 16, 4, 1];

/// The largest chunk that fits in `remaining` rows.
pub(super) fn chunk_len(remaining: usize) -> usize {
    CHUNKS.into_iter().find(|c| *c <= remaining).unwrap_or(1)
}

/// A statement's text for each chunk size, built by `build` on first use.
pub(super) struct PerChunk {
    texts: OnceLock<Vec<String>>,
    build: fn(usize) -> String,
}

impl PerChunk {
    pub(super) const fn new(build: fn(usize) -> String) -> Self {
        PerChunk {
            texts: OnceLock::new(),
            build,
        }
    }

    /// The text for `n` rows; `n` is one of [`CHUNKS`] (from [`chunk_len`]).
    pub(super) fn sql(&'static self, n: usize) -> &'static str {
        let texts = self
            .texts
            .get_or_init(|| CHUNKS.into_iter().map(self.build).collect());
        CHUNKS
            .iter()
            .position(|c| *c == n)
            .map_or("", |i| texts[i].as_str())
    }
}

/// `n` copies of `row`, comma-separated: the `VALUES` list of a multi-row statement.
pub(super) fn rows(row: &str, n: usize) -> String {
    vec![row; n].join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    static LIST: PerChunk = PerChunk::new(|n| rows("?", n));

    #[test]
    fn chunks_cover_any_count_and_each_size_has_its_text() {
        for total in 0..600 {
            let (mut left, mut parts) = (total, 0);
            while left > 0 {
                let n = chunk_len(left);
                assert!(CHUNKS.contains(&n) && n <= left);
                assert_eq!(LIST.sql(n).matches('?').count(), n);
                left -= n;
                parts += 1;
            }
            assert!(parts <= total.div_ceil(256) + 4 * 3);
        }
    }
}
