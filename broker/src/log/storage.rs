//! The file-system seam under the log.
//!
//! The log reaches the disk only through [`Storage`] and [`StorageFile`], so tests can swap in
//! [`SimStorage`](super::sim::SimStorage), which forgets whatever was not fsynced when it
//! simulates a power cut. [`DiskStorage`] is the real thing.
//!
//! Contracts every implementation keeps (the log's crash safety rests on them):
//!
//! - `write_all_at` puts bytes in the file's volatile state; they survive a crash only after a
//!   later `sync_data` of the same file returns `Ok`.
//! - `set_len` and `allocate` change the length; durable after `sync_data`, like writes.
//! - Creating, renaming or removing a file is durable only after `sync_dir` of its parent.
//! - Files may be read while another thread writes further on: `read_at` of bytes written
//!   before it started sees them.

use std::fs::{File, OpenOptions};
use std::io::{self, IoSlice};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// A directory tree of files.
pub trait Storage: Send + Sync + std::fmt::Debug + 'static {
    /// Creates `path` and its missing parents. Idempotent.
    fn create_dir_all(&self, path: &Path) -> io::Result<()>;
    /// Names of the entries of directory `path`, unordered.
    fn list_dir(&self, path: &Path) -> io::Result<Vec<String>>;
    /// True when `path` exists.
    fn exists(&self, path: &Path) -> bool;
    /// Opens a file for reading and writing, creating it (empty) when `create` and it is absent.
    fn open(&self, path: &Path, create: bool) -> io::Result<Arc<dyn StorageFile>>;
    /// Removes a file.
    fn remove_file(&self, path: &Path) -> io::Result<()>;
    /// Removes a directory and everything in it.
    fn remove_dir_all(&self, path: &Path) -> io::Result<()>;
    /// Renames `from` to `to`, replacing `to` if it exists (atomic on POSIX).
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    /// Makes the entries of directory `path` (creations, renames, removals) durable.
    fn sync_dir(&self, path: &Path) -> io::Result<()>;
}

/// One open file.
#[allow(clippy::len_without_is_empty)] // a file's length is a number, not a collection's
pub trait StorageFile: Send + Sync + std::fmt::Debug {
    /// Reads up to `buf.len()` bytes at `position`; returns how many (0 at end of file).
    fn read_at(&self, buf: &mut [u8], position: u64) -> io::Result<usize>;
    /// Writes all of `bufs`, back to back, starting at `position`.
    fn write_all_at(&self, bufs: &[IoSlice<'_>], position: u64) -> io::Result<()>;
    /// Makes the file's data and length durable (fdatasync).
    fn sync_data(&self) -> io::Result<()>;
    /// The file's length.
    fn len(&self) -> io::Result<u64>;
    /// Truncates or extends (with zeros) to `len`.
    fn set_len(&self, len: u64) -> io::Result<()>;
    /// Reserves blocks so the file is at least `len` bytes long, reading as zeros past its old
    /// end (fallocate). Never shrinks.
    fn allocate(&self, len: u64) -> io::Result<()>;
}

/// Reads exactly `buf.len()` bytes at `position`.
///
/// # Errors
///
/// `UnexpectedEof` if the file ends first, or the read's own error.
pub fn read_exact_at(file: &dyn StorageFile, buf: &mut [u8], position: u64) -> io::Result<()> {
    let mut done = 0;
    while done < buf.len() {
        let n = file.read_at(&mut buf[done..], position + done as u64)?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("file ends before byte {}", position + buf.len() as u64),
            ));
        }
        done += n;
    }
    Ok(())
}

/// Reads a whole file.
///
/// # Errors
///
/// The underlying read's error.
pub fn read_all(file: &dyn StorageFile) -> io::Result<Vec<u8>> {
    let len = file.len()?;
    let mut buf = vec![0u8; usize::try_from(len).map_err(io::Error::other)?];
    read_exact_at(file, &mut buf, 0)?;
    Ok(buf)
}

/// Writes `bytes` to `path` so that after a crash the file holds either its old contents or
/// all of `bytes`: write a temporary file, fsync it, rename it over `path`, fsync the directory.
///
/// # Errors
///
/// Any step's I/O error; `path` is then unchanged.
pub fn write_atomic(storage: &dyn Storage, path: &Path, bytes: &[u8]) -> io::Result<()> {
    let dir = path
        .parent()
        .ok_or_else(|| io::Error::other("path has no parent directory"))?;
    let mut tmp_name = path.file_name().unwrap_or_default().to_os_string();
    tmp_name.push(".tmp");
    let tmp = dir.join(tmp_name);
    if storage.exists(&tmp) {
        storage.remove_file(&tmp)?;
    }
    let file = storage.open(&tmp, true)?;
    file.write_all_at(&[IoSlice::new(bytes)], 0)?;
    file.sync_data()?;
    drop(file);
    storage.rename(&tmp, path)?;
    storage.sync_dir(dir)
}

/// The real file system.
#[derive(Debug, Default, Clone, Copy)]
pub struct DiskStorage;

impl Storage for DiskStorage {
    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        std::fs::create_dir_all(path)
    }

    fn list_dir(&self, path: &Path) -> io::Result<Vec<String>> {
        let mut names = Vec::new();
        for entry in std::fs::read_dir(path)? {
            names.push(entry?.file_name().to_string_lossy().into_owned());
        }
        Ok(names)
    }

    fn exists(&self, path: &Path) -> bool {
        path.exists()
    }

    fn open(&self, path: &Path, create: bool) -> io::Result<Arc<dyn StorageFile>> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(create)
            .open(path)?;
        Ok(Arc::new(DiskFile {
            file,
            path: path.to_path_buf(),
        }))
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        std::fs::remove_file(path)
    }

    fn remove_dir_all(&self, path: &Path) -> io::Result<()> {
        std::fs::remove_dir_all(path)
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        std::fs::rename(from, to)
    }

    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        File::open(path)?.sync_all()
    }
}

#[derive(Debug)]
struct DiskFile {
    file: File,
    path: PathBuf,
}

impl StorageFile for DiskFile {
    fn read_at(&self, buf: &mut [u8], position: u64) -> io::Result<usize> {
        self.file.read_at(buf, position)
    }

    fn write_all_at(&self, bufs: &[IoSlice<'_>], position: u64) -> io::Result<()> {
        // pwritev may write less than asked; continue from where it stopped. IOV_MAX is 1024 on
        // Linux, so long lists go in slices of that size.
        const IOV_MAX: usize = 1024;
        let mut position = position;
        for chunk in bufs.chunks(IOV_MAX) {
            // Empty slices write nothing, and pwritev of nothing returns 0: leave them out.
            let mut slices: Vec<IoSlice<'_>> =
                chunk.iter().filter(|s| !s.is_empty()).copied().collect();
            let mut rest: &mut [IoSlice<'_>] = &mut slices;
            while !rest.is_empty() {
                let n = rustix::io::pwritev(&self.file, rest, position)?;
                if n == 0 {
                    return Err(io::Error::new(
                        io::ErrorKind::WriteZero,
                        "pwritev wrote nothing",
                    ));
                }
                position += n as u64;
                IoSlice::advance_slices(&mut rest, n);
            }
        }
        Ok(())
    }

    fn sync_data(&self) -> io::Result<()> {
        self.file.sync_data()
    }

    fn len(&self) -> io::Result<u64> {
        Ok(self.file.metadata()?.len())
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        self.file.set_len(len)
    }

    fn allocate(&self, len: u64) -> io::Result<()> {
        let current = self.len()?;
        if len <= current {
            return Ok(());
        }
        match rustix::fs::fallocate(
            &self.file,
            rustix::fs::FallocateFlags::empty(),
            current,
            len - current,
        ) {
            Ok(()) => Ok(()),
            // File systems without fallocate (tmpfs on old kernels, some FUSE): extend instead,
            // which costs the preallocation but keeps the semantics.
            Err(e) if e == rustix::io::Errno::OPNOTSUPP => self.file.set_len(len),
            Err(e) => Err(io::Error::from(e)),
        }
        .map_err(|e| io::Error::new(e.kind(), format!("fallocate {}: {e}", self.path.display())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn disk_file_writes_vectors_and_preallocates() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let file = DiskStorage.open(&path, true).unwrap();
        file.allocate(4096).unwrap();
        assert_eq!(file.len().unwrap(), 4096);
        file.write_all_at(&[IoSlice::new(b"hello "), IoSlice::new(b"world")], 10)
            .unwrap();
        let mut buf = [0u8; 11];
        read_exact_at(file.as_ref(), &mut buf, 10).unwrap();
        assert_eq!(&buf, b"hello world");
        assert_eq!(
            file.len().unwrap(),
            4096,
            "writes inside the allocation keep the length"
        );
        file.allocate(100).unwrap();
        assert_eq!(file.len().unwrap(), 4096, "allocate never shrinks");
        write_atomic(&DiskStorage, &dir.path().join("meta"), b"v1").unwrap();
        write_atomic(&DiskStorage, &dir.path().join("meta"), b"v2").unwrap();
        write_atomic(&DiskStorage, &dir.path().join("empty"), b"").unwrap();
        assert_eq!(std::fs::read(dir.path().join("empty")).unwrap(), b"");
        assert_eq!(std::fs::read(dir.path().join("meta")).unwrap(), b"v2");
    }
}
