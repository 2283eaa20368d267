//! Slot and epoch arithmetic from the genesis time (docs/protocol.md §3.5): 32 slots per
//! epoch; the slot length is the caller's (the node's `slot_ms`, default 2000 ms).

use crate::params::EPOCH_SLOTS;

/// The epoch a slot belongs to.
pub fn epoch_of_slot(slot: u64) -> u64 {
    slot / EPOCH_SLOTS
}

/// The first slot of an epoch, saturating at `u64::MAX`.
pub fn first_slot_of_epoch(epoch: u64) -> u64 {
    epoch.saturating_mul(EPOCH_SLOTS)
}

/// The slot at `now_ms`: whole slots since genesis. Before genesis, or with a zero slot
/// length, it is slot 0.
pub fn slot_of_time(genesis_ms: u64, now_ms: u64, slot_ms: u64) -> u64 {
    now_ms
        .saturating_sub(genesis_ms)
        .checked_div(slot_ms)
        .unwrap_or(0)
}

/// The epoch at `now_ms`.
pub fn epoch_of_time(genesis_ms: u64, now_ms: u64, slot_ms: u64) -> u64 {
    epoch_of_slot(slot_of_time(genesis_ms, now_ms, slot_ms))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::params::SLOT_MS;

    #[test]
    fn slots_and_epochs() {
        let g = 1_767_225_600_000;
        assert_eq!(slot_of_time(g, g, SLOT_MS), 0);
        assert_eq!(slot_of_time(g, g + 1999, SLOT_MS), 0);
        assert_eq!(slot_of_time(g, g + 2000, SLOT_MS), 1);
        assert_eq!(slot_of_time(g, g - 1, SLOT_MS), 0);
        assert_eq!(slot_of_time(g, g + 5000, 0), 0);
        assert_eq!(epoch_of_slot(31), 0);
        assert_eq!(epoch_of_slot(32), 1);
        assert_eq!(epoch_of_slot(64), 2);
        // One epoch is 64 s.
        assert_eq!(epoch_of_time(g, g + 63_999, SLOT_MS), 0);
        assert_eq!(epoch_of_time(g, g + 64_000, SLOT_MS), 1);
        assert_eq!(first_slot_of_epoch(3), 96);
        assert_eq!(epoch_of_slot(first_slot_of_epoch(7)), 7);
        assert_eq!(first_slot_of_epoch(u64::MAX), u64::MAX);
    }
}
