//! Opaque pagination cursors for newest-first lists.
//!
//! A cursor names the last `seq` a client has seen; the next page holds rows with a
//! strictly smaller `seq`. Because `seq` only grows and rows are never deleted, rows
//! inserted while a client pages all land above the cursor: a walk never skips or repeats,
//! and it ends on the set that existed when it started.

use std::fmt;
use std::str::FromStr;

/// The position after which the next page starts (exclusive, going down).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Cursor {
    before_seq: u64,
}

/// A cursor string this store did not issue.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed cursor")]
pub struct CursorError;

/// Versioned so that a later encoding can tell old cursors apart.
const PREFIX: &str = "c1_";

impl Cursor {
    /// The page below `seq` (the `seq` of the last item a client received).
    pub fn before(seq: u64) -> Cursor {
        Cursor { before_seq: seq }
    }

    pub fn before_seq(&self) -> u64 {
        self.before_seq
    }

    /// The text form handed to clients.
    pub fn encode(&self) -> String {
        format!("{PREFIX}{:x}", self.before_seq)
    }

    /// Parses what [`Cursor::encode`] produced; anything else is refused so that a
    /// tampered cursor is a 400, never a silently different page.
    pub fn parse(s: &str) -> Result<Cursor, CursorError> {
        let hex = s.strip_prefix(PREFIX).ok_or(CursorError)?;
        let canonical = !hex.is_empty()
            && hex.len() <= 16
            && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
            && (hex == "0" || !hex.starts_with('0'));
        if !canonical {
            return Err(CursorError);
        }
        u64::from_str_radix(hex, 16)
            .map(Cursor::before)
            .map_err(|_| CursorError)
    }
}

impl fmt::Display for Cursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.encode())
    }
}

impl FromStr for Cursor {
    type Err = CursorError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Cursor::parse(s)
    }
}

/// One page of a newest-first list; `next_cursor` is `None` on the last page.
#[derive(Debug, Clone, PartialEq)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next_cursor: Option<Cursor>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        for seq in [0, 1, 40, 0xdead_beef, u64::MAX] {
            let c = Cursor::before(seq);
            assert_eq!(Cursor::parse(&c.encode()), Ok(c));
            assert_eq!(c.to_string().parse::<Cursor>(), Ok(c));
        }
    }

    #[test]
    fn foreign_strings_are_refused() {
        for bad in [
            "",
            "c1_",
            "c1_G",
            "c1_FF",
            "c1_0ff",
            "c1_-1",
            "c1_+1",
            "c1_10000000000000000",
            "c2_ff",
            "ff",
            " c1_ff",
            "c1_ff ",
        ] {
            assert_eq!(Cursor::parse(bad), Err(CursorError), "{bad:?}");
        }
    }
}
