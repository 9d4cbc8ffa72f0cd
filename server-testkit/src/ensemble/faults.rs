//! The network faults an ensemble is under, by member index: which links are cut, and the
//! delay and loss on each direction of a link. Each member's peer is told its own view of it
//! (the servers it is cut off from, its outgoing link faults) whenever it changes, and again
//! when the member restarts.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use crate::quorum::shell::LinkFault;
use crate::quorum::Sid;

/// The faults of an ensemble of `n` members.
#[derive(Debug, Default)]
pub(super) struct Faults {
    /// Cut links, as (smaller index, larger index).
    cut: BTreeSet<(usize, usize)>,
    /// Faults of the link from the first index to the second.
    links: BTreeMap<(usize, usize), LinkFault>,
}

fn pair(a: usize, b: usize) -> (usize, usize) {
    (a.min(b), a.max(b))
}

/// A member's server id from its index (voters are 1..=n, then observers).
pub(super) fn sid_of(index: usize) -> Sid {
    index as Sid + 1
}

impl Faults {
    /// Cuts every link between members of different groups; a member in no group is cut
    /// off from every other. Replaces earlier cuts (delays and losses stay).
    pub fn partition(&mut self, n: usize, groups: &[&[usize]]) {
        let group_of = |i: usize| groups.iter().position(|g| g.contains(&i));
        self.cut.clear();
        for a in 0..n {
            for b in a + 1..n {
                let same = matches!((group_of(a), group_of(b)), (Some(x), Some(y)) if x == y);
                if !same {
                    self.cut.insert((a, b));
                }
            }
        }
    }

    /// Cuts `i` off from every other member (on top of earlier cuts).
    pub fn isolate(&mut self, n: usize, i: usize) {
        for j in (0..n).filter(|&j| j != i) {
            self.cut.insert(pair(i, j));
        }
    }

    /// Cuts the link between `a` and `b`.
    pub fn cut(&mut self, a: usize, b: usize) {
        if a != b {
            self.cut.insert(pair(a, b));
        }
    }

    /// Sets the delay of both directions of a link.
    pub fn delay(&mut self, a: usize, b: usize, d: Duration) {
        for k in [(a, b), (b, a)] {
            self.links.entry(k).or_default().delay = d;
        }
        self.tidy();
    }

    /// Sets the loss rate of both directions of a link.
    pub fn loss(&mut self, a: usize, b: usize, p: f64) {
        let p = if p.is_nan() { 0.0 } else { p.clamp(0.0, 1.0) };
        for k in [(a, b), (b, a)] {
            self.links.entry(k).or_default().loss = p;
        }
        self.tidy();
    }

    /// Lifts every fault.
    pub fn heal(&mut self) {
        self.cut.clear();
        self.links.clear();
    }

    fn tidy(&mut self) {
        self.links.retain(|_, f| !f.is_none());
    }

    /// Whether the link between `a` and `b` is cut.
    pub fn is_cut(&self, a: usize, b: usize) -> bool {
        self.cut.contains(&pair(a, b))
    }

    /// The servers `i` is cut off from.
    pub fn cut_of(&self, i: usize) -> BTreeSet<Sid> {
        self.cut
            .iter()
            .filter_map(|&(a, b)| match (a == i, b == i) {
                (true, _) => Some(sid_of(b)),
                (_, true) => Some(sid_of(a)),
                _ => None,
            })
            .collect()
    }

    /// The faults of the links from `i`, by destination server.
    pub fn links_of(&self, i: usize) -> BTreeMap<Sid, LinkFault> {
        self.links
            .iter()
            .filter(|((from, _), _)| *from == i)
            .map(|((_, to), f)| (sid_of(*to), *f))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_partition_cuts_across_groups_and_isolates_the_unlisted() {
        let mut f = Faults::default();
        f.partition(4, &[&[0, 1], &[2]]);
        assert!(!f.is_cut(0, 1));
        assert!(f.is_cut(1, 2) && f.is_cut(2, 0));
        assert_eq!(f.cut_of(3), [1, 2, 3].into());
        assert_eq!(f.cut_of(0), [3, 4].into());
        f.partition(4, &[&[0, 1, 2, 3]]);
        assert!(f.cut_of(3).is_empty());
        f.isolate(4, 1);
        assert_eq!(f.cut_of(1), [1, 3, 4].into());
        assert_eq!(f.cut_of(0), [2].into());
    }

    #[test]
    fn link_faults_apply_to_both_directions_and_heal_clears_them() {
        let mut f = Faults::default();
        f.delay(0, 2, Duration::from_millis(5));
        f.loss(0, 2, 2.0);
        assert_eq!(
            f.links_of(2)[&1],
            LinkFault {
                delay: Duration::from_millis(5),
                loss: 1.0
            }
        );
        assert_eq!(f.links_of(0).keys().copied().collect::<Vec<_>>(), [3]);
        f.delay(0, 2, Duration::ZERO);
        f.loss(0, 2, 0.0);
        assert!(f.links_of(0).is_empty());
        f.cut(1, 2);
        f.heal();
        assert!(f.cut_of(1).is_empty());
    }
}
