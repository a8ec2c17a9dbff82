//! A least-recently-used map bounded by the total weight of its values (bytes, usually).
//! Every operation is O(log n): recency is a tick per entry, ordered in a `BTreeMap`.

use std::collections::{BTreeMap, HashMap};
use std::hash::Hash;

/// The map. Not synchronized: callers wrap it in a mutex.
#[derive(Debug)]
pub(crate) struct WeightedLru<K, V> {
    capacity: u64,
    entries: HashMap<K, Slot<V>>,
    order: BTreeMap<u64, K>,
    weight: u64,
    tick: u64,
}

#[derive(Debug)]
struct Slot<V> {
    value: V,
    weight: u64,
    tick: u64,
}

impl<K: Hash + Eq + Clone, V: Clone> WeightedLru<K, V> {
    /// A map holding at most `capacity` of weight (one entry heavier than that is still kept,
    /// alone, so a too-small bound degrades to "the last entry" rather than "nothing").
    pub(crate) fn new(capacity: u64) -> WeightedLru<K, V> {
        WeightedLru {
            capacity,
            entries: HashMap::new(),
            order: BTreeMap::new(),
            weight: 0,
            tick: 0,
        }
    }

    fn next_tick(&mut self) -> u64 {
        self.tick += 1;
        self.tick
    }

    /// The value under `key`, now the most recently used.
    pub(crate) fn get(&mut self, key: &K) -> Option<V> {
        let tick = self.next_tick();
        let slot = self.entries.get_mut(key)?;
        self.order.remove(&slot.tick);
        slot.tick = tick;
        self.order.insert(tick, key.clone());
        Some(slot.value.clone())
    }

    /// True when `key` is present (recency unchanged).
    pub(crate) fn contains(&self, key: &K) -> bool {
        self.entries.contains_key(key)
    }

    /// Inserts (or replaces) `key`; returns what was evicted to stay within the bound, oldest
    /// first (a replaced value is not reported).
    pub(crate) fn insert(&mut self, key: K, value: V, weight: u64) -> Vec<(K, V)> {
        let tick = self.next_tick();
        if let Some(old) = self.entries.remove(&key) {
            self.order.remove(&old.tick);
            self.weight -= old.weight;
        }
        self.entries.insert(
            key.clone(),
            Slot {
                value,
                weight,
                tick,
            },
        );
        self.order.insert(tick, key);
        self.weight += weight;
        let mut evicted = Vec::new();
        while self.weight > self.capacity && self.entries.len() > 1 {
            let Some((_, oldest)) = self.order.pop_first() else {
                break;
            };
            if let Some(slot) = self.entries.remove(&oldest) {
                self.weight -= slot.weight;
                evicted.push((oldest, slot.value));
            }
        }
        evicted
    }

    /// Removes `key`.
    pub(crate) fn remove(&mut self, key: &K) -> Option<V> {
        let slot = self.entries.remove(key)?;
        self.order.remove(&slot.tick);
        self.weight -= slot.weight;
        Some(slot.value)
    }

    /// Total weight held.
    pub(crate) fn weight(&self) -> u64 {
        self.weight
    }

    /// Entries held.
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn evicts_least_recently_used_first() {
        let mut lru = WeightedLru::new(30);
        assert!(lru.insert("a", 1, 10).is_empty());
        assert!(lru.insert("b", 2, 10).is_empty());
        assert!(lru.insert("c", 3, 10).is_empty());
        assert_eq!(lru.get(&"a"), Some(1));
        assert_eq!(lru.insert("d", 4, 10), vec![("b", 2)]);
        assert_eq!(lru.insert("e", 5, 15), vec![("c", 3), ("a", 1)]);
        assert_eq!(lru.weight(), 25);
        assert_eq!(lru.len(), 2);
    }

    #[test]
    fn an_oversized_entry_stays_alone() {
        let mut lru = WeightedLru::new(5);
        lru.insert(1, (), 3);
        assert_eq!(lru.insert(2, (), 50), vec![(1, ())]);
        assert!(lru.contains(&2));
        assert_eq!(lru.weight(), 50);
    }

    proptest! {
        /// Against a naive model: a vector in recency order.
        #[test]
        fn matches_a_naive_model(ops in proptest::collection::vec((0u8..3, 0u8..8, 1u64..20), 1..200)) {
            let capacity = 40;
            let mut lru = WeightedLru::new(capacity);
            let mut model: Vec<(u8, u64)> = Vec::new();
            for (op, key, weight) in ops {
                match op {
                    0 => {
                        let got = lru.get(&key);
                        let at = model.iter().position(|(k, _)| *k == key);
                        prop_assert_eq!(got.is_some(), at.is_some());
                        if let Some(at) = at {
                            let e = model.remove(at);
                            model.push(e);
                        }
                    }
                    1 => {
                        let evicted = lru.insert(key, key, weight);
                        model.retain(|(k, _)| *k != key);
                        model.push((key, weight));
                        let mut expected = Vec::new();
                        while model.iter().map(|e| e.1).sum::<u64>() > capacity && model.len() > 1 {
                            expected.push(model.remove(0).0);
                        }
                        prop_assert_eq!(evicted.iter().map(|e| e.0).collect::<Vec<_>>(), expected);
                    }
                    _ => {
                        let got = lru.remove(&key);
                        let at = model.iter().position(|(k, _)| *k == key);
                        prop_assert_eq!(got.is_some(), at.is_some());
                        if let Some(at) = at { model.remove(at); }
                    }
                }
                prop_assert_eq!(lru.weight(), model.iter().map(|e| e.1).sum::<u64>());
                prop_assert_eq!(lru.len(), model.len());
            }
        }
    }
}
