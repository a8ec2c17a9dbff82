//! The on-disk cache of archive chunks: fixed-size, aligned byte ranges of segment objects,
//! kept under a size bound with least-recently-used eviction, and found again after a restart.
//!
//! # File format
//!
//! One file per chunk, `<fnv64(key)>-<index>.chunk`, written to a temporary name and renamed
//! into place (no fsync: a cache may lose files in a crash, and a torn one is caught below):
//!
//! ```text
//! 8 bytes   magic "SILTCHK1"
//! 2 bytes   key length K (big-endian)
//! K bytes   the object key
//! 8 bytes   chunk index
//! 8 bytes   data length N
//! N bytes   the chunk's bytes, as the store returned them
//! ```
//!
//! The header names the object, so a file is trusted only for the chunk it says it holds; the
//! data itself is covered by the record batches' own CRC-32C, which the reader checks before
//! anything is served (a batch that fails from the cache drops the file and is fetched again).
//! The cache's methods do blocking file I/O: call them from a blocking context.

use std::fs::File;
use std::io::{Read, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use bytes::Bytes;

use crate::lru::WeightedLru;

const MAGIC: &[u8; 8] = b"SILTCHK1";
const SUFFIX: &str = ".chunk";
const TEMP_MARK: &str = ".tmp-";

/// Which chunk: an object key and the chunk's index (its offset / chunk size).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ChunkId {
    /// The segment object's key.
    pub key: Arc<str>,
    /// Index of the chunk within the object.
    pub index: u64,
}

impl ChunkId {
    fn file_name(&self) -> String {
        format!("{:016x}-{}{SUFFIX}", fnv64(self.key.as_bytes()), self.index)
    }
}

/// FNV-1a: stable across builds, unlike `DefaultHasher`; collisions only cost a miss, since
/// every file's header names its chunk.
fn fnv64(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

#[derive(Debug, Clone)]
struct CachedFile {
    path: PathBuf,
    header_len: u64,
    data_len: u64,
}

/// The cache.
#[derive(Debug)]
pub struct ChunkCache {
    dir: PathBuf,
    index: Mutex<WeightedLru<ChunkId, CachedFile>>,
}

impl ChunkCache {
    /// Opens (creating) the cache in `dir`, bounded to `capacity_bytes`: files left by a previous
    /// run are indexed (oldest first, by modification time), half-written ones are deleted, and
    /// the bound is enforced.
    ///
    /// # Errors
    ///
    /// A directory that cannot be created or listed.
    pub fn open(dir: &Path, capacity_bytes: u64) -> std::io::Result<ChunkCache> {
        std::fs::create_dir_all(dir)?;
        let mut found = Vec::new();
        for item in std::fs::read_dir(dir)? {
            let item = item?;
            let path = item.path();
            let name = item.file_name().to_string_lossy().into_owned();
            if name.contains(TEMP_MARK) {
                let _ = std::fs::remove_file(&path);
                continue;
            }
            if !name.ends_with(SUFFIX) {
                continue;
            }
            match read_header(&path) {
                Ok((id, file)) if path.file_name().is_some_and(|n| *n == *id.file_name()) => {
                    let modified = item
                        .metadata()
                        .and_then(|m| m.modified())
                        .unwrap_or(std::time::SystemTime::UNIX_EPOCH);
                    found.push((modified, id, file));
                }
                _ => {
                    tracing::debug!(path = %path.display(), "dropping an unreadable cache file");
                    let _ = std::fs::remove_file(&path);
                }
            }
        }
        found.sort_by_key(|(modified, _, _)| *modified);
        let mut index = WeightedLru::new(capacity_bytes);
        let count = found.len();
        for (_, id, file) in found {
            let weight = file.header_len + file.data_len;
            for (_, evicted) in index.insert(id, file, weight) {
                let _ = std::fs::remove_file(&evicted.path);
            }
        }
        if count > 0 {
            tracing::info!(dir = %dir.display(), chunks = index.len(), bytes = index.weight(), "archive cache reopened");
        }
        Ok(ChunkCache {
            dir: dir.to_path_buf(),
            index: Mutex::new(index),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, WeightedLru<ChunkId, CachedFile>> {
        self.index.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// True when the chunk is cached.
    pub fn contains(&self, id: &ChunkId) -> bool {
        self.lock().contains(id)
    }

    /// Bytes `range` of a cached chunk (clamped to its length), or `None` if it is not cached
    /// (or its file is gone or no longer holds it, in which case it is forgotten).
    pub fn read(&self, id: &ChunkId, range: std::ops::Range<u64>) -> Option<Bytes> {
        let file = self.lock().get(id)?;
        match read_range(&file, id, range) {
            Ok(bytes) => Some(bytes),
            Err(e) => {
                tracing::debug!(path = %file.path.display(), error = %e, "cache file unusable");
                self.remove(id);
                None
            }
        }
    }

    /// Stores a chunk (replacing any previous copy) and evicts the least recently used chunks
    /// beyond the bound.
    ///
    /// # Errors
    ///
    /// Write failures (a full disk): the chunk is then simply not cached.
    pub fn insert(&self, id: &ChunkId, data: &[u8]) -> std::io::Result<()> {
        let path = self.dir.join(id.file_name());
        let temp = self.dir.join(format!(
            "{}{TEMP_MARK}{}",
            id.file_name(),
            uuid::Uuid::new_v4().simple()
        ));
        let mut header = Vec::with_capacity(26 + id.key.len());
        header.extend_from_slice(MAGIC);
        let key_len = u16::try_from(id.key.len()).map_err(|_| {
            std::io::Error::new(std::io::ErrorKind::InvalidInput, "object key too long")
        })?;
        header.extend_from_slice(&key_len.to_be_bytes());
        header.extend_from_slice(id.key.as_bytes());
        header.extend_from_slice(&id.index.to_be_bytes());
        header.extend_from_slice(&(data.len() as u64).to_be_bytes());
        let written = (|| {
            let mut file = File::create(&temp)?;
            file.write_all(&header)?;
            file.write_all(data)?;
            std::fs::rename(&temp, &path)
        })();
        if let Err(e) = written {
            let _ = std::fs::remove_file(&temp);
            return Err(e);
        }
        let file = CachedFile {
            path,
            header_len: header.len() as u64,
            data_len: data.len() as u64,
        };
        let weight = file.header_len + file.data_len;
        let evicted = self.lock().insert(id.clone(), file, weight);
        for (_, old) in evicted {
            let _ = std::fs::remove_file(&old.path);
        }
        Ok(())
    }

    /// Forgets a chunk and deletes its file.
    pub fn remove(&self, id: &ChunkId) {
        if let Some(file) = self.lock().remove(id) {
            let _ = std::fs::remove_file(&file.path);
        }
    }

    /// Bytes held (headers included).
    pub fn bytes(&self) -> u64 {
        self.lock().weight()
    }

    /// Chunks held.
    pub fn chunks(&self) -> usize {
        self.lock().len()
    }
}

fn invalid(reason: &str) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, reason.to_string())
}

fn read_header(path: &Path) -> std::io::Result<(ChunkId, CachedFile)> {
    let mut file = File::open(path)?;
    let mut fixed = [0u8; 10];
    file.read_exact(&mut fixed)?;
    if &fixed[..8] != MAGIC {
        return Err(invalid("not a cache file"));
    }
    let key_len = u16::from_be_bytes([fixed[8], fixed[9]]) as usize;
    let mut rest = vec![0u8; key_len + 16];
    file.read_exact(&mut rest)?;
    let key = std::str::from_utf8(&rest[..key_len]).map_err(|_| invalid("key not UTF-8"))?;
    let index = u64::from_be_bytes(rest[key_len..key_len + 8].try_into().expect("8 bytes"));
    let data_len = u64::from_be_bytes(rest[key_len + 8..].try_into().expect("8 bytes"));
    let header_len = (10 + key_len + 16) as u64;
    if file.metadata()?.len() != header_len + data_len {
        return Err(invalid("cache file truncated"));
    }
    Ok((
        ChunkId {
            key: key.into(),
            index,
        },
        CachedFile {
            path: path.to_path_buf(),
            header_len,
            data_len,
        },
    ))
}

fn read_range(
    file: &CachedFile,
    id: &ChunkId,
    range: std::ops::Range<u64>,
) -> std::io::Result<Bytes> {
    // The header is re-read each time: the file may have been replaced since it was indexed.
    let (found, current) = read_header(&file.path)?;
    if found != *id {
        return Err(invalid("cache file holds another chunk"));
    }
    let end = range.end.min(current.data_len);
    let start = range.start.min(end);
    let mut buf = vec![0u8; (end - start) as usize];
    File::open(&file.path)?.read_exact_at(&mut buf, current.header_len + start)?;
    Ok(Bytes::from(buf))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(key: &str, index: u64) -> ChunkId {
        ChunkId {
            key: key.into(),
            index,
        }
    }

    #[test]
    fn stores_reads_evicts_and_survives_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let cache = ChunkCache::open(dir.path(), 3000).unwrap();
        let data: Vec<u8> = (0..1000u32).map(|i| i as u8).collect();
        cache.insert(&id("a/seg", 0), &data).unwrap();
        cache.insert(&id("a/seg", 1), &data).unwrap();
        assert_eq!(
            cache.read(&id("a/seg", 1), 990..5000).unwrap(),
            &data[990..]
        );
        assert_eq!(cache.read(&id("a/seg", 0), 10..20).unwrap(), &data[10..20]);
        // A third chunk goes over 3000 bytes with headers: chunk 1 (least recently used) goes.
        cache.insert(&id("b/seg", 0), &data).unwrap();
        assert!(cache.read(&id("a/seg", 1), 0..1).is_none());
        assert!(cache.contains(&id("a/seg", 0)));
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 2);
        drop(cache);

        // A stray temporary and a foreign file: both dropped on reopen.
        std::fs::write(dir.path().join("x.chunk.tmp-1"), b"half").unwrap();
        std::fs::write(dir.path().join("0000000000000000-0.chunk"), b"garbage").unwrap();
        let cache = ChunkCache::open(dir.path(), 3000).unwrap();
        assert_eq!(cache.chunks(), 2);
        assert_eq!(cache.read(&id("b/seg", 0), 0..3).unwrap(), &data[..3]);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 2);
    }

    #[test]
    fn a_truncated_file_is_a_miss_not_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let cache = ChunkCache::open(dir.path(), 1 << 20).unwrap();
        cache.insert(&id("k", 7), &[1u8; 100]).unwrap();
        let path = dir.path().join(id("k", 7).file_name());
        let bytes = std::fs::read(&path).unwrap();
        std::fs::write(&path, &bytes[..bytes.len() - 10]).unwrap();
        assert!(cache.read(&id("k", 7), 0..100).is_none());
        assert!(!cache.contains(&id("k", 7)));
        assert!(!path.exists());
    }
}
