//! Where things live in the bucket.
//!
//! ```text
//! <prefix>/_silt/topics/<topic>_<topic-id>.json                  topic catalog (name, id, partitions, configs)
//! <prefix>/<hash>/<topic>_<topic-id>/<partition>/roots/<version:020>.json    manifest root pointers
//! <prefix>/<hash>/<topic>_<topic-id>/<partition>/nodes/<id:020>               manifest nodes (immutable)
//! <prefix>/<hash>/<topic>_<topic-id>/<partition>/segments/<base:020>-<last:020>-<object-id:016x>.log
//! <prefix>/<hash>/<topic>_<topic-id>/<partition>/segments/<base:020>-<last:020>-<object-id:016x>.sidecar
//! <prefix>/<hash>/<topic>_<topic-id>/<partition>/keys/<base:020>-<last:020>-<object-id:016x>.keys
//! <prefix>/<hash>/<topic>_<topic-id>/<partition>/keys/filter-<first:020>-<last:020>-<object-id:016x>.kf
//! <prefix>/parquet/topic=<topic>/partition=<p>/date=<YYYY-MM-DD>/<base:020>-<last:020>-<object-id:016x>.parquet
//! ```
//!
//! `<hash>` is 8 hex digits of a CRC of the topic id and partition: object stores partition
//! their key space by prefix, and a common prefix for a busy topic would put all its load on one
//! partition of the store. The topic id (KIP-516's UUID) is in every key, so a topic deleted and
//! created again under the same name never reads or overwrites its predecessor's objects. Numbers
//! are zero-padded so keys sort as the numbers do, which lets a listing start at an offset.

use object_store::path::Path;
use uuid::Uuid;

/// One partition of one topic incarnation.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PartitionId {
    /// Topic name.
    pub topic: String,
    /// Topic id.
    pub topic_id: Uuid,
    /// Partition index.
    pub partition: i32,
}

impl std::fmt::Display for PartitionId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.topic, self.partition)
    }
}

/// The key layout under one prefix.
#[derive(Debug, Clone)]
pub struct Layout {
    prefix: Path,
}

impl Layout {
    /// A layout under `prefix` (may be empty).
    pub fn new(prefix: Path) -> Layout {
        Layout { prefix }
    }

    fn join(&self, parts: &[&str]) -> Path {
        let mut path = self.prefix.clone();
        for part in parts {
            path = path.join(*part);
        }
        path
    }

    /// The directory of topic catalog objects.
    pub fn catalog_dir(&self) -> Path {
        self.join(&["_silt", "topics"])
    }

    /// Scratch objects of one run of `silt archive bench`.
    pub fn bench_dir(&self, run: &str) -> Path {
        self.join(&["_silt", "bench", run])
    }

    /// Where consumer groups' committed offsets are kept, one object per cluster.
    pub fn groups_dir(&self) -> Path {
        self.join(&["_silt", "groups"])
    }

    /// A cluster's groups snapshot.
    pub fn groups(&self, cluster_id: &str) -> Path {
        self.join(&["_silt", "groups", &format!("{cluster_id}.json")])
    }

    /// The groups snapshot of one of a cluster's group-log partitions.
    pub fn groups_partition(&self, cluster_id: &str, partition: u32) -> Path {
        self.join(&[
            "_silt",
            "groups",
            &format!("{cluster_id}-p{partition}.json"),
        ])
    }

    /// Where the archiver writes Parquet files of topics with `archive.parquet=true`, in the
    /// layout of [`crate::parquet::file_key`].
    pub fn parquet_dir(&self) -> Path {
        self.join(&[crate::parquet::ARCHIVE_DIR])
    }

    /// A topic's catalog object.
    pub fn catalog(&self, topic: &str, topic_id: Uuid) -> Path {
        self.join(&["_silt", "topics", &format!("{topic}_{topic_id}.json")])
    }

    /// The directory holding everything of a partition.
    pub fn partition_dir(&self, id: &PartitionId) -> Path {
        let mut bytes = id.topic_id.as_bytes().to_vec();
        bytes.extend_from_slice(&id.partition.to_be_bytes());
        let hash = format!("{:08x}", crc32c::crc32c(&bytes));
        self.join(&[
            &hash,
            &format!("{}_{}", id.topic, id.topic_id),
            &id.partition.to_string(),
        ])
    }

    /// The directory of root pointers.
    pub fn roots_dir(&self, id: &PartitionId) -> Path {
        self.partition_dir(id).join("roots")
    }

    /// Root pointer of `version`.
    pub fn root(&self, id: &PartitionId, version: u64) -> Path {
        self.roots_dir(id).join(format!("{version:020}.json"))
    }

    /// The directory of manifest nodes.
    pub fn nodes_dir(&self, id: &PartitionId) -> Path {
        self.partition_dir(id).join("nodes")
    }

    /// A manifest node.
    pub fn node(&self, id: &PartitionId, node: u64) -> Path {
        self.nodes_dir(id).join(format!("{node:020}"))
    }

    /// The directory of segments and sidecars.
    pub fn segments_dir(&self, id: &PartitionId) -> Path {
        self.partition_dir(id).join("segments")
    }

    /// A segment object.
    pub fn segment(&self, id: &PartitionId, base: i64, last: i64, object_id: u64) -> Path {
        self.segments_dir(id)
            .join(format!("{base:020}-{last:020}-{object_id:016x}.log"))
    }

    /// A segment's sidecar.
    pub fn sidecar(&self, id: &PartitionId, base: i64, last: i64, object_id: u64) -> Path {
        self.segments_dir(id)
            .join(format!("{base:020}-{last:020}-{object_id:016x}.sidecar"))
    }

    /// The directory of key indexes and key filters.
    pub fn keys_dir(&self, id: &PartitionId) -> Path {
        self.partition_dir(id).join("keys")
    }

    /// A segment's key index.
    pub fn key_index(&self, id: &PartitionId, base: i64, last: i64, object_id: u64) -> Path {
        self.keys_dir(id)
            .join(format!("{base:020}-{last:020}-{object_id:016x}.keys"))
    }

    /// A key filter over segments from `first` to `last` (their base offsets).
    pub fn key_filter(&self, id: &PartitionId, first: i64, last: i64, object_id: u64) -> Path {
        self.keys_dir(id)
            .join(format!("filter-{first:020}-{last:020}-{object_id:016x}.kf"))
    }
}

/// What an object in a partition's `keys/` directory is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyObject {
    /// The key index of segment (base, last, object id).
    Index(i64, i64, u64),
    /// A filter over the segments based from `first` to `last`.
    Filter {
        /// Base offset of its first segment.
        first: i64,
        /// Base offset of its last segment.
        last: i64,
    },
}

/// Parses a key index's or key filter's file name.
pub fn parse_key_object(path: &Path) -> Option<KeyObject> {
    let name = path.filename()?;
    if let Some(stem) = name.strip_prefix("filter-") {
        let mut parts = stem.strip_suffix(".kf")?.split('-');
        let first = parts.next()?.parse().ok()?;
        let last = parts.next()?.parse().ok()?;
        return Some(KeyObject::Filter { first, last });
    }
    let mut parts = name.strip_suffix(".keys")?.split('-');
    let base = parts.next()?.parse().ok()?;
    let last = parts.next()?.parse().ok()?;
    let object = u64::from_str_radix(parts.next()?, 16).ok()?;
    Some(KeyObject::Index(base, last, object))
}

/// Parses a version from a root key's file name.
pub fn parse_root_version(path: &Path) -> Option<u64> {
    path.filename()?.strip_suffix(".json")?.parse().ok()
}

/// Parses a node id from a node key's file name.
pub fn parse_node_id(path: &Path) -> Option<u64> {
    path.filename()?.parse().ok()
}

/// Parses (base, last, object id) from a segment or sidecar key's file name.
pub fn parse_segment_name(path: &Path) -> Option<(i64, i64, u64)> {
    let name = path.filename()?;
    let stem = name
        .strip_suffix(".log")
        .or_else(|| name.strip_suffix(".sidecar"))?;
    let mut parts = stem.split('-');
    let base = parts.next()?.parse().ok()?;
    let last = parts.next()?.parse().ok()?;
    let object = u64::from_str_radix(parts.next()?, 16).ok()?;
    Some((base, last, object))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_carry_the_topic_id_and_sort_by_number() {
        let layout = Layout::new(Path::from("archive"));
        let id = PartitionId {
            topic: "orders".into(),
            topic_id: Uuid::nil(),
            partition: 3,
        };
        let segment = layout.segment(&id, 100, 199, 0xabc);
        assert!(segment.as_ref().starts_with("archive/"));
        assert!(
            segment
                .as_ref()
                .contains("/orders_00000000-0000-0000-0000-000000000000/3/segments/")
        );
        assert_eq!(parse_segment_name(&segment), Some((100, 199, 0xabc)));
        assert_eq!(
            parse_segment_name(&layout.sidecar(&id, 100, 199, 0xabc)),
            Some((100, 199, 0xabc))
        );
        assert_eq!(parse_root_version(&layout.root(&id, 42)), Some(42));
        assert_eq!(parse_node_id(&layout.node(&id, 7)), Some(7));
        assert!(layout.root(&id, 9).as_ref() < layout.root(&id, 10).as_ref());
        let other = PartitionId {
            topic_id: Uuid::new_v4(),
            ..id.clone()
        };
        assert_ne!(
            layout.partition_dir(&id),
            layout.partition_dir(&other),
            "a new incarnation never mixes"
        );
    }
}
