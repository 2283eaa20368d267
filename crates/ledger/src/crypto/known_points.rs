//! Public keys already found to be curve points not of small order, remembered so that an
//! attester's key is decompressed once rather than for every attestation it signs.
//!
//! A fixed table: the key's first byte picks a shard, the next two a slot. Only keys that
//! passed are stored and a hit compares all 32 bytes, so a hit means exactly "this key
//! passed before". Keys are uniformly distributed; one crafted to collide only evicts
//! another, which is then checked again. Bounded at 4,096 keys (about 140 KiB).

use std::sync::{Mutex, MutexGuard};

const SHARDS: usize = 16;
const SLOTS: usize = 256;

type Shard = [Option<[u8; 32]>; SLOTS];

static TABLE: [Mutex<Shard>; SHARDS] = [const { Mutex::new([None; SLOTS]) }; SHARDS];

fn place(key: &[u8; 32]) -> (MutexGuard<'static, Shard>, usize) {
    let shard = &TABLE[usize::from(key[0]) % SHARDS];
    // Nothing panics while a shard is held, but a poisoned lock still holds valid keys.
    let guard = shard
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    (
        guard,
        usize::from(u16::from_le_bytes([key[1], key[2]])) % SLOTS,
    )
}

pub(super) fn contains(key: &[u8; 32]) -> bool {
    let (shard, slot) = place(key);
    shard[slot].as_ref() == Some(key)
}

pub(super) fn insert(key: &[u8; 32]) {
    let (mut shard, slot) = place(key);
    shard[slot] = Some(*key);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remembers_a_key_until_one_with_the_same_slot_replaces_it() {
        let mut a = [7u8; 32];
        a[0] = 0xa1;
        let mut b = a;
        b[31] = 0; // same shard and slot, different key
        insert(&a);
        assert!(contains(&a));
        assert!(!contains(&b));
        insert(&b);
        assert!(contains(&b));
        assert!(!contains(&a));
    }
}
