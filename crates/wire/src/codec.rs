//! The content codings cached responses are stored in.
//!
//! The node stores a cached body of at least [`MIN_COMPRESS`] bytes compressed once and
//! serves it as stored to a client whose `Accept-Encoding` takes that coding; other
//! clients get the identity body. `node0 verify-compression` measures the codecs on a
//! realistic payload and picks the cheapest one whose reduction is within one point of
//! the best; on a page of signed attestations that is zstd level 1, with a better
//! reduction than Brotli q5 and much faster (BENCHMARKS.md, "cache codec" row). It is the
//! default.

use std::io::{Read, Write};

use http::HeaderMap;

/// Smallest body stored compressed: below it the saving does not pay for the work.
pub const MIN_COMPRESS: usize = 1024;

/// Largest body this cache decompresses (its own entries are far smaller).
const MAX_DECOMPRESSED: usize = 64 * 1024 * 1024;

thread_local! {
    static ZSTD_DECODER: std::cell::RefCell<Option<zstd::bulk::Decompressor<'static>>> =
        std::cell::RefCell::new(zstd::bulk::Decompressor::new().ok());
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Codec {
    Zstd { level: i32 },
    Brotli { quality: u32 },
    Gzip { level: u32 },
}

impl Default for Codec {
    fn default() -> Self {
        Codec::Zstd { level: 1 }
    }
}

/// A body that would not compress or decompress.
#[derive(Debug, thiserror::Error)]
#[error("{codec} failed: {source}")]
pub struct CodecError {
    codec: &'static str,
    source: std::io::Error,
}

impl Codec {
    /// The `Content-Encoding` token.
    pub fn token(self) -> &'static str {
        match self {
            Codec::Zstd { .. } => "zstd",
            Codec::Brotli { .. } => "br",
            Codec::Gzip { .. } => "gzip",
        }
    }

    pub fn name(self) -> String {
        match self {
            Codec::Zstd { level } => format!("zstd-{level}"),
            Codec::Brotli { quality } => format!("brotli-q{quality}"),
            Codec::Gzip { level } => format!("gzip-{level}"),
        }
    }

    pub fn compress(self, data: &[u8]) -> Result<Vec<u8>, CodecError> {
        let err = |source| CodecError {
            codec: self.token(),
            source,
        };
        match self {
            Codec::Zstd { level } => zstd::bulk::compress(data, level).map_err(err),
            Codec::Brotli { quality } => {
                let mut out = Vec::with_capacity(data.len() / 4);
                {
                    let mut w = brotli::CompressorWriter::new(&mut out, 4096, quality, 22);
                    w.write_all(data).map_err(err)?;
                }
                Ok(out)
            }
            Codec::Gzip { level } => {
                let mut w = flate2::write::GzEncoder::new(
                    Vec::with_capacity(data.len() / 4),
                    flate2::Compression::new(level),
                );
                w.write_all(data).map_err(err)?;
                w.finish().map_err(err)
            }
        }
    }

    pub fn decompress(self, data: &[u8]) -> Result<Vec<u8>, CodecError> {
        let err = |source| CodecError {
            codec: self.token(),
            source,
        };
        let mut out = Vec::with_capacity(data.len() * 4);
        match self {
            Codec::Zstd { .. } => {
                // The frame header records the size, and a decompression context per
                // thread is reused: creating one per request cost more than decoding.
                let size = zstd::zstd_safe::get_frame_content_size(data)
                    .ok()
                    .flatten()
                    .and_then(|n| usize::try_from(n).ok())
                    .filter(|n| *n <= MAX_DECOMPRESSED)
                    .ok_or_else(|| {
                        err(std::io::Error::new(
                            std::io::ErrorKind::InvalidData,
                            "zstd frame without a usable content size",
                        ))
                    })?;
                return ZSTD_DECODER.with(|d| match d.borrow_mut().as_mut() {
                    Some(d) => d.decompress(data, size).map_err(err),
                    None => Err(err(std::io::Error::other("no zstd context"))),
                });
            }
            Codec::Brotli { .. } => {
                brotli::Decompressor::new(data, 4096)
                    .read_to_end(&mut out)
                    .map_err(err)?;
            }
            Codec::Gzip { .. } => {
                flate2::read::GzDecoder::new(data)
                    .read_to_end(&mut out)
                    .map_err(err)?;
            }
        }
        Ok(out)
    }

    /// Whether the request's `Accept-Encoding` takes this codec (any q > 0).
    pub fn accepted_by(self, headers: &HeaderMap) -> bool {
        let token = self.token();
        headers
            .get_all(http::header::ACCEPT_ENCODING)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|item| {
                let mut parts = item.split(';');
                let name = parts.next().unwrap_or("").trim();
                let q_zero = parts.any(|p| {
                    let p = p.trim();
                    p.strip_prefix("q=")
                        .and_then(|q| q.trim().parse::<f32>().ok())
                        .is_some_and(|q| q <= 0.0)
                });
                (name.eq_ignore_ascii_case(token) || name == "*") && !q_zero
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    #[test]
    fn round_trips() {
        let data = br#"{"items":[{"a":1},{"a":2},{"a":3}]}"#.repeat(100);
        for c in [
            Codec::Zstd { level: 3 },
            Codec::Brotli { quality: 5 },
            Codec::Gzip { level: 6 },
        ] {
            let z = c.compress(&data).unwrap();
            assert!(z.len() < data.len() / 5, "{} {}", c.name(), z.len());
            assert_eq!(c.decompress(&z).unwrap(), data);
        }
    }

    #[test]
    fn accept_encoding() {
        let mut h = HeaderMap::new();
        let zstd = Codec::default();
        assert!(!zstd.accepted_by(&h));
        h.insert("accept-encoding", HeaderValue::from_static("gzip, br"));
        assert!(!zstd.accepted_by(&h));
        assert!(Codec::Gzip { level: 6 }.accepted_by(&h));
        h.insert(
            "accept-encoding",
            HeaderValue::from_static("gzip, zstd;q=0.5"),
        );
        assert!(zstd.accepted_by(&h));
        h.insert("accept-encoding", HeaderValue::from_static("zstd;q=0"));
        assert!(!zstd.accepted_by(&h));
        h.insert("accept-encoding", HeaderValue::from_static("*"));
        assert!(zstd.accepted_by(&h));
    }
}
