//! Impact score and effective validator weight (docs/protocol.md §2.4).

use crate::attestation::types::NumberMap;

/// Σ dimᵢ·weightᵢ over the dimensions; a dimension with no weight counts 0. Summed in
/// name order so that every node gets the same bits.
pub fn impact_score(dimensions: &NumberMap, weights: &NumberMap) -> f64 {
    dimensions
        .iter()
        .map(|(name, d)| d * weights.get(name).copied().unwrap_or(0.0))
        .sum()
}

/// ⌊100 + 10·impact + 0.05·rep_score + 0.02·√stake_bond⌋, saturating at `u64::MAX`.
pub fn effective_weight(impact: f64, rep_score: u64, stake_bond: u64) -> u64 {
    let w = 100.0 + 10.0 * impact + 0.05 * rep_score as f64 + 0.02 * (stake_bond as f64).sqrt();
    if w.is_finite() && w > 0.0 {
        // `as` saturates for values past u64::MAX.
        w.floor() as u64
    } else {
        0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_reference_values() {
        assert_eq!(effective_weight(0.0, 0, 0), 100);
        assert_eq!(effective_weight(50.0, 10_000, 10_000), 1102);
        assert_eq!(effective_weight(0.876, 10_000, 10_000), 610);
    }

    #[test]
    fn impact_ignores_unweighted_dimensions() {
        let dims: NumberMap = [("a".into(), 0.5), ("b".into(), 1.0)].into();
        let weights: NumberMap = [("a".into(), 1.0)].into();
        assert_eq!(impact_score(&dims, &weights), 0.5);
    }
}
