//! Handing connections to workers in the modes where the primary accepts (`round-robin`):
//! accept loops that feed the driver ([`accept`]) and the choice of a worker ([`RoundRobin`]).
//! The choice is pure; sending the connection is the driver's job (over the worker channel).

pub mod accept;

/// Picks the next worker in turn.
#[derive(Debug, Default, Clone)]
pub struct RoundRobin {
    next: usize,
}

impl RoundRobin {
    /// The next of `candidates` (in a stable order, e.g. by slot), or `None` if empty.
    pub fn pick<T: Copy>(&mut self, candidates: &[T]) -> Option<T> {
        if candidates.is_empty() {
            return None;
        }
        let i = self.next % candidates.len();
        self.next = self.next.wrapping_add(1);
        Some(candidates[i])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn takes_turns_and_survives_changing_candidates() {
        let mut rr = RoundRobin::default();
        let picks: Vec<u32> = (0..6).filter_map(|_| rr.pick(&[10, 11, 12])).collect();
        assert_eq!(picks, vec![10, 11, 12, 10, 11, 12]);
        assert_eq!(rr.pick::<u32>(&[]), None);
        // A worker gone: the others still alternate.
        let picks: Vec<u32> = (0..4).filter_map(|_| rr.pick(&[10, 12])).collect();
        assert!(picks.contains(&10) && picks.contains(&12));
    }
}
