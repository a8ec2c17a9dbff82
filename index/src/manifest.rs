//! The nodes of a partition manifest: the catalog of archived segments, as a B+-tree of
//! immutable objects.
//!
//! A manifest must stay fast with infinite retention, where a partition may have millions of
//! segments. So it is not one object: segments sit in leaf nodes of at most [`FANOUT`]
//! entries, leaves under internal nodes of at most [`FANOUT`] children, and so on up to a
//! root. Every node is immutable (the archiver writes new nodes and a new root pointer, copying
//! the path it changed), so readers can cache nodes forever, and a lookup by offset or by time
//! reads one node per level: `log_FANOUT(n)` small objects (two below a million segments).
//! This module is the nodes' format and the search inside one node; the tree walk and the
//! writes live in the archiver.
//!
//! # Leaf layout (big-endian)
//!
//! ```text
//! magic "SILTLEAF" (8) | version u16 | count u32 | count x SegmentEntry (72 bytes) | CRC-32C u32
//! SegmentEntry: base i64, last i64, first ts i64, max ts i64, records u64, bytes u64,
//!               leader epoch i32, segment CRC-32C u32, uploaded at (ms) i64, object id u64
//! ```
//!
//! # Internal node layout (big-endian)
//!
//! ```text
//! magic "SILTNODE" (8) | version u16 | level u16 | count u32 | count x Child (48 bytes) | CRC u32
//! Child: first base i64, last offset i64, max ts i64, segments u64, bytes u64, node id u64
//! ```
//!
//! Entries and children are ordered by offset and contiguous; a child's `max_ts` is the largest
//! timestamp in its subtree, so "the first segment holding a timestamp >= T" is found by taking,
//! at each level, the first child whose `max_ts >= T`.

use crate::IndexError;
use crate::segment::SegmentMeta;

/// Most entries in one node.
pub const FANOUT: usize = 1024;
const LEAF_MAGIC: &[u8; 8] = b"SILTLEAF";
const NODE_MAGIC: &[u8; 8] = b"SILTNODE";
const VERSION: u16 = 1;
/// Bytes of one leaf entry.
pub const ENTRY_BYTES: usize = 72;
/// Bytes of one internal child.
pub const CHILD_BYTES: usize = 48;
const _: () = assert!(ENTRY_BYTES == 8 * 8 + 4 * 2);
const _: () = assert!(CHILD_BYTES == 8 * 6);

/// An archived segment, as a leaf lists it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmentEntry {
    /// The segment's metadata.
    pub meta: SegmentMeta,
    /// When its upload was confirmed.
    pub uploaded_ms: i64,
    /// Random id in the names of its objects: a retried upload never overwrites an object a
    /// manifest names, and leftovers of failed uploads are told apart.
    pub object_id: u64,
}

/// A child of an internal node: the summary of its subtree.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Child {
    /// First offset in the subtree.
    pub first_base: i64,
    /// Last offset in the subtree.
    pub last_offset: i64,
    /// Largest timestamp in the subtree.
    pub max_timestamp: i64,
    /// Segments in the subtree.
    pub segments: u64,
    /// Bytes of segments in the subtree.
    pub bytes: u64,
    /// The child node's id.
    pub node: u64,
}

/// A manifest node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Node {
    /// Segments.
    Leaf(Vec<SegmentEntry>),
    /// Children, at a level above the leaves (leaves' parents are level 1).
    Internal {
        /// Height above the leaves.
        level: u16,
        /// Children in offset order.
        children: Vec<Child>,
    },
}

impl Node {
    /// The node's bytes.
    ///
    /// # Panics
    ///
    /// If the node holds more than [`FANOUT`] entries: the tree code splits before that.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        match self {
            Node::Leaf(entries) => {
                assert!(entries.len() <= FANOUT, "leaf of {} entries", entries.len());
                out.extend_from_slice(LEAF_MAGIC);
                out.extend_from_slice(&VERSION.to_be_bytes());
                out.extend_from_slice(&(entries.len() as u32).to_be_bytes());
                for e in entries {
                    let m = &e.meta;
                    for v in [
                        m.base_offset,
                        m.last_offset,
                        m.first_timestamp,
                        m.max_timestamp,
                    ] {
                        out.extend_from_slice(&v.to_be_bytes());
                    }
                    out.extend_from_slice(&m.record_count.to_be_bytes());
                    out.extend_from_slice(&m.size_bytes.to_be_bytes());
                    out.extend_from_slice(&m.leader_epoch.to_be_bytes());
                    out.extend_from_slice(&m.crc32c.to_be_bytes());
                    out.extend_from_slice(&e.uploaded_ms.to_be_bytes());
                    out.extend_from_slice(&e.object_id.to_be_bytes());
                }
            }
            Node::Internal { level, children } => {
                assert!(
                    children.len() <= FANOUT,
                    "node of {} children",
                    children.len()
                );
                out.extend_from_slice(NODE_MAGIC);
                out.extend_from_slice(&VERSION.to_be_bytes());
                out.extend_from_slice(&level.to_be_bytes());
                out.extend_from_slice(&(children.len() as u32).to_be_bytes());
                for c in children {
                    for v in [c.first_base, c.last_offset, c.max_timestamp] {
                        out.extend_from_slice(&v.to_be_bytes());
                    }
                    for v in [c.segments, c.bytes, c.node] {
                        out.extend_from_slice(&v.to_be_bytes());
                    }
                }
            }
        }
        let crc = crc32c::crc32c(&out);
        out.extend_from_slice(&crc.to_be_bytes());
        out
    }

    /// Parses and checks a node.
    ///
    /// # Errors
    ///
    /// [`IndexError::Corrupt`] for a bad magic, version, length, CRC or ordering.
    pub fn decode(bytes: &[u8]) -> Result<Node, IndexError> {
        let corrupt = |position: usize, reason| IndexError::Corrupt {
            position: position as u64,
            reason,
        };
        if bytes.len() < 18 {
            return Err(corrupt(bytes.len(), "shorter than a manifest node"));
        }
        let (body, stored) = bytes.split_at(bytes.len() - 4);
        if crc32c::crc32c(body) != u32::from_be_bytes(stored.try_into().expect("4 bytes")) {
            return Err(corrupt(body.len(), "manifest node CRC mismatch"));
        }
        if u16::from_be_bytes([body[8], body[9]]) != VERSION {
            return Err(corrupt(8, "unknown manifest node version"));
        }
        let i64_at = |at: usize| i64::from_be_bytes(body[at..at + 8].try_into().expect("8 bytes"));
        let u64_at = |at: usize| u64::from_be_bytes(body[at..at + 8].try_into().expect("8 bytes"));
        let u32_at = |at: usize| u32::from_be_bytes(body[at..at + 4].try_into().expect("4 bytes"));
        let node = if &body[..8] == LEAF_MAGIC {
            let count = u32_at(10) as usize;
            if count > FANOUT || body.len() != 14 + count * ENTRY_BYTES {
                return Err(corrupt(10, "leaf entry count does not match its size"));
            }
            let entries = (0..count)
                .map(|i| {
                    let at = 14 + i * ENTRY_BYTES;
                    SegmentEntry {
                        meta: SegmentMeta {
                            base_offset: i64_at(at),
                            last_offset: i64_at(at + 8),
                            first_timestamp: i64_at(at + 16),
                            max_timestamp: i64_at(at + 24),
                            record_count: u64_at(at + 32),
                            size_bytes: u64_at(at + 40),
                            leader_epoch: u32_at(at + 48) as i32,
                            crc32c: u32_at(at + 52),
                        },
                        uploaded_ms: i64_at(at + 56),
                        object_id: u64_at(at + 64),
                    }
                })
                .collect();
            Node::Leaf(entries)
        } else if &body[..8] == NODE_MAGIC {
            let level = u16::from_be_bytes([body[10], body[11]]);
            let count = u32_at(12) as usize;
            if level == 0 || count > FANOUT || body.len() != 16 + count * CHILD_BYTES {
                return Err(corrupt(
                    10,
                    "internal node level or count does not match its size",
                ));
            }
            let children = (0..count)
                .map(|i| {
                    let at = 16 + i * CHILD_BYTES;
                    Child {
                        first_base: i64_at(at),
                        last_offset: i64_at(at + 8),
                        max_timestamp: i64_at(at + 16),
                        segments: u64_at(at + 24),
                        bytes: u64_at(at + 32),
                        node: u64_at(at + 40),
                    }
                })
                .collect();
            Node::Internal { level, children }
        } else {
            return Err(corrupt(0, "not a manifest node (bad magic)"));
        };
        node.check_order().map_err(|reason| corrupt(0, reason))?;
        Ok(node)
    }

    /// Entries must be contiguous and in order; checked after decode and before encode.
    pub fn check_order(&self) -> Result<(), &'static str> {
        match self {
            Node::Leaf(entries) => {
                for pair in entries.windows(2) {
                    if pair[1].meta.base_offset != pair[0].meta.last_offset + 1 {
                        return Err("leaf entries are not contiguous");
                    }
                }
                if entries
                    .iter()
                    .any(|e| e.meta.last_offset < e.meta.base_offset)
                {
                    return Err("leaf entry ends before it starts");
                }
            }
            Node::Internal { children, .. } => {
                for pair in children.windows(2) {
                    if pair[1].first_base != pair[0].last_offset + 1 {
                        return Err("children are not contiguous");
                    }
                }
            }
        }
        Ok(())
    }

    /// The summary of this node as its parent's child entry.
    pub fn summary(&self, node: u64) -> Option<Child> {
        match self {
            Node::Leaf(entries) => Some(Child {
                first_base: entries.first()?.meta.base_offset,
                last_offset: entries.last()?.meta.last_offset,
                max_timestamp: entries.iter().map(|e| e.meta.max_timestamp).max()?,
                segments: entries.len() as u64,
                bytes: entries.iter().map(|e| e.meta.size_bytes).sum(),
                node,
            }),
            Node::Internal { children, .. } => Some(Child {
                first_base: children.first()?.first_base,
                last_offset: children.last()?.last_offset,
                max_timestamp: children.iter().map(|c| c.max_timestamp).max()?,
                segments: children.iter().map(|c| c.segments).sum(),
                bytes: children.iter().map(|c| c.bytes).sum(),
                node,
            }),
        }
    }
}

/// The leaf entry holding `offset`.
pub fn entry_for_offset(entries: &[SegmentEntry], offset: i64) -> Option<&SegmentEntry> {
    let i = entries.partition_point(|e| e.meta.last_offset < offset);
    entries.get(i).filter(|e| e.meta.base_offset <= offset)
}

/// The child whose subtree holds `offset`.
pub fn child_for_offset(children: &[Child], offset: i64) -> Option<&Child> {
    let i = children.partition_point(|c| c.last_offset < offset);
    children.get(i).filter(|c| c.first_base <= offset)
}

/// The first leaf entry holding a timestamp `>= timestamp` (and at or after `min_offset`).
pub fn entry_for_timestamp(
    entries: &[SegmentEntry],
    timestamp: i64,
    min_offset: i64,
) -> Option<&SegmentEntry> {
    entries
        .iter()
        .find(|e| e.meta.last_offset >= min_offset && e.meta.max_timestamp >= timestamp)
}

/// The first child holding a timestamp `>= timestamp` (and an offset at or after `min_offset`).
pub fn child_for_timestamp(children: &[Child], timestamp: i64, min_offset: i64) -> Option<&Child> {
    children
        .iter()
        .find(|c| c.last_offset >= min_offset && c.max_timestamp >= timestamp)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn entries(n: usize) -> Vec<SegmentEntry> {
        (0..n as i64)
            .map(|i| SegmentEntry {
                meta: SegmentMeta {
                    base_offset: i * 100,
                    last_offset: i * 100 + 99,
                    first_timestamp: i * 10,
                    max_timestamp: i * 10 + 9,
                    record_count: 100,
                    size_bytes: 4096,
                    leader_epoch: 0,
                    crc32c: i as u32,
                },
                uploaded_ms: 1,
                object_id: i as u64 * 7,
            })
            .collect()
    }

    #[test]
    fn nodes_round_trip_and_summarise() {
        let leaf = Node::Leaf(entries(FANOUT));
        assert_eq!(Node::decode(&leaf.encode()).unwrap(), leaf);
        let summary = leaf.summary(7).unwrap();
        assert_eq!(
            (summary.first_base, summary.last_offset, summary.segments),
            (0, FANOUT as i64 * 100 - 1, FANOUT as u64)
        );
        let internal = Node::Internal {
            level: 1,
            children: vec![
                summary,
                Child {
                    first_base: summary.last_offset + 1,
                    last_offset: summary.last_offset + 5,
                    node: 8,
                    ..summary
                },
            ],
        };
        assert_eq!(Node::decode(&internal.encode()).unwrap(), internal);
        assert_eq!(leaf.encode().len(), 14 + FANOUT * ENTRY_BYTES + 4);
    }

    #[test]
    fn corruption_and_disorder_are_refused() {
        let mut bytes = Node::Leaf(entries(3)).encode();
        bytes[20] ^= 1;
        assert!(Node::decode(&bytes).is_err());
        let mut gap = entries(3);
        gap[2].meta.base_offset += 1;
        assert!(Node::Leaf(gap).check_order().is_err());
    }

    proptest! {
        #[test]
        fn lookups_agree_with_a_scan(n in 1usize..50, offset in -10i64..6000, ts in -5i64..600, min in 0i64..6000) {
            let es = entries(n);
            let model = es.iter().find(|e| e.meta.base_offset <= offset && offset <= e.meta.last_offset);
            prop_assert_eq!(entry_for_offset(&es, offset), model);
            let model = es.iter().find(|e| e.meta.last_offset >= min && e.meta.max_timestamp >= ts);
            prop_assert_eq!(entry_for_timestamp(&es, ts, min), model);
            let children: Vec<Child> = es.chunks(3).enumerate().map(|(i, c)| Node::Leaf(c.to_vec()).summary(i as u64).unwrap()).collect();
            let model = children.iter().find(|c| c.first_base <= offset && offset <= c.last_offset);
            prop_assert_eq!(child_for_offset(&children, offset), model);
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = Node::decode(&bytes);
        }
    }
}
