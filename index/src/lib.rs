//! silt's formats, pure and sans-io.
//!
//! Everything here works on byte slices and plain values: no files, sockets, clocks or tokio.
//! The broker and the archiver own the I/O and call into this crate to decide what bytes mean
//! and what to write.
//!
//! - [`batch`]: a read-only view of Kafka v2 record-batch headers, CRC checks, the in-place
//!   patches of an append (base offset, leader epoch, LogAppendTime) and [`batch::scan`] for
//!   recovery.
//! - [`record`]: decompression and decoding of the records inside a batch (for timestamp
//!   lookups, tools and tests; never needed to store or serve a batch), and an encoder.
//! - [`offset_index`] and [`time_index`]: a segment's sparse indexes, their file format and
//!   lookups.
//! - [`segment`]: segment file names, the indexing rule, and [`SegmentMeta`].
//! - [`compact`]: which records of a batch a compacted topic keeps (key map, cleaning).
//! - [`sidecar`]: the index sidecar archived next to each segment.
//! - [`keys`]: key indexes of archived segments and the per-partition filters over them.
//! - [`manifest`]: the nodes of a partition manifest (a B+-tree of immutable objects) and the
//!   search inside a node.
//!
//! ```
//! use silt_index::batch::{BatchHeader, Codec};
//! use silt_index::record::{encode_batch, NewRecord};
//!
//! let record = NewRecord { value: Some("hello".into()), timestamp: 1_700_000_000_000, ..Default::default() };
//! let bytes = encode_batch(42, &[record], Codec::Lz4, None);
//! let header = BatchHeader::parse(&bytes, u32::MAX).unwrap().expect("whole header");
//! assert_eq!((header.base_offset, header.record_count, header.codec()), (42, 1, Codec::Lz4));
//! silt_index::batch::verify_crc(&bytes).unwrap();
//! ```
#![warn(missing_docs)]

pub mod batch;
pub mod compact;
pub mod keys;
pub mod manifest;
pub mod offset_index;
pub mod record;
pub mod segment;
pub mod sidecar;
pub mod time_index;

#[cfg(test)]
mod testing;

pub use batch::{BatchError, BatchHeader, Codec};
pub use offset_index::{FilePosition, OffsetEntry, OffsetIndex, RelativeOffset};
pub use segment::{SegmentIndexer, SegmentMeta, SegmentStats};
pub use time_index::{TimeEntry, TimeIndex};

/// An index file that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum IndexError {
    /// The bytes at `position` break the format; the index must be rebuilt from its log.
    #[error("corrupt index at byte {position}: {reason}")]
    Corrupt {
        /// Byte position of the first bad entry.
        position: u64,
        /// What is wrong.
        reason: &'static str,
    },
}
