//! A set of strings that iterates in the order a `java.util.HashSet<String>` would.
//!
//! ZooKeeper keeps a node's children and a session's ephemerals in `HashSet`s, so getChildren,
//! getEphemerals and the order in which a closing session's ephemerals are deleted (hence the
//! order of its NodeDeleted events) follow Java's hash order. This reproduces it: the bucket is
//! `(h ^ h >>> 16) & (capacity - 1)` with `h = String.hashCode()`, entries of one bucket keep
//! insertion order, the table doubles when its size exceeds 3/4 of its capacity and never
//! shrinks. (Tree bins, used only after 8 collisions in one bucket of a 64+ table, are not
//! modelled.)

use std::collections::HashMap;

/// `String.hashCode()`: over UTF-16 code units, wrapping.
pub fn java_string_hash(s: &str) -> i32 {
    s.encode_utf16()
        .fold(0i32, |h, u| h.wrapping_mul(31).wrapping_add(u as i32))
}

fn spread(s: &str) -> u32 {
    let h = java_string_hash(s) as u32;
    h ^ (h >> 16)
}

/// `HashMap.tableSizeFor`: the next power of two ≥ `c` (at least 1).
fn table_size_for(c: usize) -> usize {
    c.max(1).next_power_of_two()
}

/// A string set with Java `HashSet` iteration order.
///
/// Two sets are equal when they hold the same elements in the same iteration order (how they
/// got there does not matter).
///
/// Every znode has one (its children), and most have no children: an empty set that never held
/// anything is 16 bytes with nothing on the heap.
#[derive(Debug, Clone)]
pub struct JavaHashSet {
    /// Allocated on the first insertion.
    table: Option<Box<Table>>,
    /// Capacity the first insertion allocates.
    initial: u32,
}

#[derive(Debug, Clone)]
struct Table {
    /// Element -> insertion sequence number.
    items: HashMap<Box<str>, u64>,
    /// Table capacity (doubles, never shrinks).
    cap: usize,
    seq: u64,
}

impl JavaHashSet {
    /// `new HashSet<>(initial)`; `new HashSet<>()` is 16.
    pub fn with_capacity(initial: usize) -> JavaHashSet {
        JavaHashSet {
            table: None,
            initial: table_size_for(initial).min(1 << 30) as u32,
        }
    }

    /// Table capacity once allocated (0 = not allocated yet).
    #[cfg(test)]
    fn cap(&self) -> usize {
        self.table.as_ref().map_or(0, |t| t.cap)
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        self.table.as_ref().map_or(0, |t| t.items.len())
    }

    /// Whether it is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether `s` is in the set.
    pub fn contains(&self, s: &str) -> bool {
        self.table.as_ref().is_some_and(|t| t.items.contains_key(s))
    }

    /// Adds `s`; false if it was there.
    pub fn insert(&mut self, s: String) -> bool {
        let initial = self.initial as usize;
        let t = self.table.get_or_insert_with(|| {
            Box::new(Table {
                items: HashMap::new(),
                cap: initial,
                seq: 0,
            })
        });
        if t.items.contains_key(s.as_str()) {
            return false;
        }
        t.seq += 1;
        t.items.insert(s.into_boxed_str(), t.seq);
        if t.items.len() * 4 > t.cap * 3 {
            t.cap *= 2;
        }
        true
    }

    /// Removes `s`; false if it was not there.
    pub fn remove(&mut self, s: &str) -> bool {
        self.table
            .as_mut()
            .is_some_and(|t| t.items.remove(s).is_some())
    }

    /// Elements in Java iteration order.
    pub fn iter_order(&self) -> Vec<String> {
        let Some(t) = &self.table else {
            return Vec::new();
        };
        let mask = t.cap.max(1) as u32 - 1;
        let mut v: Vec<(u32, u64, &str)> = t
            .items
            .iter()
            .map(|(k, seq)| (spread(k) & mask, *seq, &**k))
            .collect();
        v.sort();
        v.into_iter().map(|(_, _, k)| k.to_owned()).collect()
    }

    /// Elements in the iteration order of `set.clone()` (ZooKeeper hands out clones): the clone
    /// is sized for the current size, entries inserted in this set's order.
    pub fn clone_order(&self) -> Vec<String> {
        let src = self.iter_order();
        if src.is_empty() {
            return src;
        }
        // JDK 17 HashMap.putMapEntries: tableSizeFor((int) (size / 0.75f + 1.0f)).
        let t = (src.len() as f32 / 0.75f32 + 1.0f32) as usize;
        let mask = table_size_for(t) as u32 - 1;
        let mut v: Vec<(u32, usize, String)> = src
            .into_iter()
            .enumerate()
            .map(|(i, k)| (spread(&k) & mask, i, k))
            .collect();
        v.sort();
        v.into_iter().map(|(_, _, k)| k).collect()
    }
}

impl PartialEq for JavaHashSet {
    fn eq(&self, other: &Self) -> bool {
        self.len() == other.len() && self.iter_order() == other.iter_order()
    }
}

impl Eq for JavaHashSet {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn java_hash_codes() {
        assert_eq!(java_string_hash(""), 0);
        assert_eq!(java_string_hash("a"), 97);
        assert_eq!(java_string_hash("hello"), 99162322);
        assert_eq!(java_string_hash("zookeeper"), 1_600_681_804);
    }

    #[test]
    fn zookeeper_children_order_like_a_real_server() {
        // A real 3.8 server lists /zookeeper as [config, quota].
        let mut s = JavaHashSet::with_capacity(8);
        s.insert("quota".into());
        s.insert("config".into());
        assert_eq!(s.iter_order(), vec!["config", "quota"]);
    }

    #[test]
    fn grows_and_keeps_bucket_order() {
        let mut s = JavaHashSet::with_capacity(8);
        for i in 0..20 {
            s.insert(format!("n{i}"));
        }
        assert_eq!(s.cap(), 32);
        assert_eq!(s.iter_order().len(), 20);
        for i in 0..20 {
            s.remove(&format!("n{i}"));
        }
        assert!(s.is_empty());
        assert_eq!(s.cap(), 32, "never shrinks");
    }
}

/// The iteration order of a `java.util.concurrent.ConcurrentHashMap` (default capacity 16) into
/// which keys with these `hashCode()`s were inserted in this order, as indexes into `hashes`.
///
/// ZooKeeper keeps a connection's authenticated ids in a set backed by one, so the ids an `auth`
/// ACL entry expands to come in this order. The bucket is `(h ^ h >>> 16) & (n - 1)`, a bucket
/// keeps insertion order, and the table doubles once the size reaches 3/4 of it; doubling splits
/// each bucket into its low and high halves the way `ConcurrentHashMap.transfer` does: the
/// longest tail whose entries all go the same way stays in order, the entries before it are
/// prepended one by one (so they come out reversed). Tree bins are not modelled.
pub fn concurrent_map_order(hashes: &[i32]) -> Vec<usize> {
    let spread = |h: i32| {
        let h = h as u32;
        (h ^ (h >> 16)) & 0x7fff_ffff
    };
    let mut table: Vec<Vec<usize>> = vec![Vec::new(); 16];
    for (i, &h) in hashes.iter().enumerate() {
        let n = table.len();
        table[spread(h) as usize & (n - 1)].push(i);
        if i + 1 >= n - (n >> 2) {
            let mut next: Vec<Vec<usize>> = vec![Vec::new(); 2 * n];
            for (b, bin) in table.iter().enumerate() {
                let Some(&first) = bin.first() else { continue };
                let high = |k: usize| spread(hashes[k]) as usize & n != 0;
                let mut last_run = 0;
                let mut run_bit = high(first);
                for (j, &k) in bin.iter().enumerate().skip(1) {
                    if high(k) != run_bit {
                        run_bit = high(k);
                        last_run = j;
                    }
                }
                let (mut lo, mut hi): (Vec<usize>, Vec<usize>) = if run_bit {
                    (Vec::new(), bin[last_run..].to_vec())
                } else {
                    (bin[last_run..].to_vec(), Vec::new())
                };
                for &k in &bin[..last_run] {
                    if high(k) {
                        hi.insert(0, k);
                    } else {
                        lo.insert(0, k);
                    }
                }
                next[b] = lo;
                next[b + n] = hi;
            }
            table = next;
        }
    }
    table.into_iter().flatten().collect()
}

#[cfg(test)]
mod concurrent_order_tests {
    use super::concurrent_map_order;

    #[test]
    fn buckets_in_index_order_insertion_order_within() {
        // 1 and 17 share bucket 1; 0 is bucket 0.
        assert_eq!(concurrent_map_order(&[17, 1, 0]), vec![2, 0, 1]);
    }

    #[test]
    fn a_resize_reverses_the_entries_before_the_last_run() {
        // Twelve keys fill the table to its threshold: bucket 0 holds 0, 16, 32, 48 then the
        // split sends 16 and 48 high. The last run is [48]; 0, 16, 32 are prepended in turn.
        let mut hashes = vec![0, 16, 32, 48];
        hashes.extend(1..=8);
        let order = concurrent_map_order(&hashes);
        assert_eq!(order[..2], [2, 0]);
        let pos = |k: usize| order.iter().position(|&x| x == k).unwrap();
        assert!(pos(1) < pos(3), "{order:?}");
    }
}
