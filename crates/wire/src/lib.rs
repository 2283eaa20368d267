//! What the node and its clients exchange, as types both sides compile against: the JSON
//! answers about attestations and blocks ([`attestation`], [`block`]) and the content
//! codings of stored response bodies ([`codec`]). No I/O.

pub mod attestation;
pub mod block;
pub mod codec;

pub use codec::{Codec, CodecError};
