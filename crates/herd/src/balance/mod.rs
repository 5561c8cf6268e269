//! Handing connections to workers in the modes where the primary accepts (`round-robin`,
//! `least-conn`, `sticky`): accept loops that feed the driver ([`accept`]) and the choice of
//! a worker ([`RoundRobin`], [`load`], [`sticky`]). The choice is pure; sending the
//! connection is the driver's job (over the worker channel, or relayed with `--proxy`).

pub mod accept;
pub mod dispatch;
pub mod load;
pub mod sticky;

/// Picks the next worker in turn.
#[derive(Debug, Default, Clone)]
pub struct RoundRobin {
    next: usize,
}

impl RoundRobin {
    /// The next of `candidates` (in a stable order, e.g. by slot), or `None` if empty.
    #[cfg(test)]
    pub fn pick<T: Copy>(&mut self, candidates: &[T]) -> Option<T> {
        if candidates.is_empty() {
            return None;
        }
        let i = self.next % candidates.len();
        self.next = self.next.wrapping_add(1);
        Some(candidates[i])
    }

    /// Like [`RoundRobin::pick`], but skips to the next candidate with the fewest
    /// connections still in flight (`load`): a worker slow to take its last connection does
    /// not hold up the next one while another worker is free.
    pub fn pick_least<T: Copy>(&mut self, candidates: &[T], load: impl Fn(T) -> u64) -> Option<T> {
        let n = candidates.len();
        if n == 0 {
            return None;
        }
        let start = self.next % n;
        let best = (0..n)
            .map(|k| (start + k) % n)
            .min_by_key(|i| load(candidates[*i]))
            .unwrap_or(start);
        self.next = best.wrapping_add(1);
        Some(candidates[best])
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

    #[test]
    fn least_loaded_first_then_in_turn() {
        let mut rr = RoundRobin::default();
        // 11 is busy: 10 and 12 alternate.
        let load = |w: u32| u64::from(w == 11);
        let picks: Vec<u32> = (0..4)
            .filter_map(|_| rr.pick_least(&[10, 11, 12], load))
            .collect();
        assert_eq!(picks, vec![10, 12, 10, 12]);
        // All equal: plain turns.
        let picks: Vec<u32> = (0..3)
            .filter_map(|_| rr.pick_least(&[10, 11, 12], |_| 0))
            .collect();
        assert_eq!(picks.len(), 3);
        assert_eq!(
            picks.iter().collect::<std::collections::HashSet<_>>().len(),
            3
        );
    }
}
