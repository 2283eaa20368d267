//! Keys, genesis files, signed entries and evidence for the registry's tests.

use super::entry::{ExitRequest, Registration, RegistryEntry};
use super::evidence::Evidence;
use super::state::Registry;
use crate::block::{BlockHeader, BLOCK_VERSION};
use crate::crypto::Keypair;
use crate::genesis::{Genesis, GenesisValidator};
use crate::hash::Hash32;
use crate::params::DEFAULT_CHAIN_ID;
use crate::vote::Vote;

/// The key number `i`; distinct for every `i`.
pub(crate) fn key(i: u16) -> Keypair {
    let mut seed = [0x5a; 32];
    seed[..2].copy_from_slice(&i.to_be_bytes());
    Keypair::from_seed(seed)
}

pub(crate) fn id(i: u16) -> Hash32 {
    key(i).public().validator_id()
}

/// A genesis with keys `0..n`, each with bond 10_000.
pub(crate) fn genesis(n: u16) -> Genesis {
    let mut g = Genesis::single(key(0).public(), "http://v0", "2026-01-01T00:00:00Z");
    g.validators = (0..n)
        .map(|i| GenesisValidator {
            pubkey_ed25519: key(i).public(),
            stake_bond: 10_000,
            network_address: format!("http://v{i}"),
        })
        .collect();
    g
}

pub(crate) fn registry(n: u16) -> Registry {
    Registry::from_genesis(&genesis(n)).unwrap()
}

/// A registration by key `i` for the registry's current epoch.
pub(crate) fn register(reg: &Registry, i: u16, bond: u64) -> RegistryEntry {
    RegistryEntry::Register(
        Registration::sign(
            reg.chain_id(),
            reg.epoch(),
            &key(i),
            &format!("http://v{i}"),
            bond,
        )
        .unwrap(),
    )
}

/// An exit request by key `i` for the registry's current epoch.
pub(crate) fn exit(reg: &Registry, i: u16) -> RegistryEntry {
    RegistryEntry::Exit(ExitRequest::sign(reg.chain_id(), reg.epoch(), &key(i)).unwrap())
}

pub(crate) fn header(height: u64, ts: u64) -> BlockHeader {
    BlockHeader {
        version: BLOCK_VERSION,
        chain_id: DEFAULT_CHAIN_ID.into(),
        epoch: 0,
        height,
        parents: vec![Hash32::digest(b"parent")],
        att_root: Hash32::digest(b""),
        att_count: 0,
        entries_root: Hash32::digest(b""),
        entries_count: 0,
        proposer: id(0),
        timestamp_ms: ts,
    }
}

/// Key `i` voting for two different blocks at `height`.
pub(crate) fn double_vote(i: u16, height: u64) -> Evidence {
    let (h1, h2) = (header(height, 1), header(height, 2));
    Evidence::double_vote(
        Vote::sign(h1.hash().unwrap(), &key(i)),
        h1,
        Vote::sign(h2.hash().unwrap(), &key(i)),
        h2,
    )
}

/// A slash entry for key `i` voting twice at `height`.
pub(crate) fn slash(i: u16, height: u64) -> RegistryEntry {
    RegistryEntry::Slash {
        evidence: Box::new(double_vote(i, height)),
    }
}
