//! An in-memory [`Storage`] that can lose power.
//!
//! Every file keeps two images: what a reader sees now, and what is on the "platter" (the state
//! as of its last successful `sync_data`), plus the writes made since. Directory entries are
//! likewise only durable after `sync_dir` of their parent. [`SimStorage::power_cut`] throws the
//! volatile state away: each file keeps its durable image plus a random prefix of the writes
//! made since its last sync, the last of which may be torn (cut short), as a real disk may do.
//! (Bit rot is a different failure; the recovery tests flip bits on purpose.) Handles opened before the cut fail from then on, so a
//! writer thread still running cannot touch the "rebooted" disk.
//!
//! Randomness comes from a seed, so a failing run can be replayed.

use std::collections::{BTreeMap, HashMap};
use std::io::{self, IoSlice};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use super::storage::{Storage, StorageFile};

/// In-memory storage with power cuts. Cheap to clone; clones share the same disk.
#[derive(Debug, Clone)]
pub struct SimStorage {
    shared: Arc<Mutex<Disk>>,
    /// The power-cut generation this handle lives in; older handles are dead processes.
    generation: u64,
    syncs: Arc<std::sync::atomic::AtomicU64>,
    sync_latency: Arc<Mutex<std::time::Duration>>,
    /// Mutating operations so far, and the one at which the power goes (0: none armed).
    mutations: Arc<std::sync::atomic::AtomicU64>,
    cut_at: Arc<std::sync::atomic::AtomicU64>,
}

#[derive(Debug)]
struct Disk {
    /// Bumped by every power cut; handles from an older generation are dead.
    generation: u64,
    /// The namespace as processes see it.
    names: BTreeMap<PathBuf, Arc<Mutex<FileData>>>,
    /// The namespace as it would be found after a power cut.
    durable_names: BTreeMap<PathBuf, Arc<Mutex<FileData>>>,
    dirs: std::collections::BTreeSet<PathBuf>,
    rng: u64,
}

#[derive(Debug, Default)]
struct FileData {
    current: Vec<u8>,
    durable: Vec<u8>,
    /// Changes since the last sync, oldest first.
    pending: Vec<Op>,
}

#[derive(Debug, Clone)]
enum Op {
    Write { position: u64, bytes: Vec<u8> },
    SetLen(u64),
}

impl Op {
    fn apply(&self, image: &mut Vec<u8>) {
        match self {
            Op::Write { position, bytes } => {
                let start = *position as usize;
                let end = start + bytes.len();
                if image.len() < end {
                    image.resize(end, 0);
                }
                image[start..end].copy_from_slice(bytes);
            }
            Op::SetLen(len) => image.resize(*len as usize, 0),
        }
    }
}

impl SimStorage {
    /// An empty disk whose power cuts draw from `seed`.
    pub fn new(seed: u64) -> SimStorage {
        SimStorage {
            shared: Arc::new(Mutex::new(Disk {
                generation: 0,
                names: BTreeMap::new(),
                durable_names: BTreeMap::new(),
                dirs: Default::default(),
                rng: seed | 1,
            })),
            syncs: Arc::default(),
            sync_latency: Arc::default(),
            mutations: Arc::default(),
            cut_at: Arc::default(),
            generation: 0,
        }
    }

    /// A handle for the process that starts after the last power cut. Handles from before the
    /// cut (and the files they opened) fail every operation, like the process that died.
    pub fn after_reboot(&self) -> SimStorage {
        let generation = self.disk().generation;
        SimStorage {
            generation,
            ..self.clone()
        }
    }

    /// Makes every `sync_data` take `latency`, as a disk's flush does, so that concurrent
    /// appends pile up behind it.
    pub fn set_sync_latency(&self, latency: std::time::Duration) {
        *self.sync_latency.lock().unwrap_or_else(|p| p.into_inner()) = latency;
    }

    /// Mutating operations (creations, writes, length changes, syncs, renames, removals) so
    /// far.
    pub fn mutations(&self) -> u64 {
        self.mutations.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Cuts the power instead of doing the `n`th mutating operation from now (1: the next), as
    /// a kill -9 and a power loss at that point of a sequence of writes would; 0 disarms.
    pub fn cut_power_at_mutation(&self, n: u64) {
        let at = if n == 0 { 0 } else { self.mutations() + n };
        self.cut_at.store(at, std::sync::atomic::Ordering::SeqCst);
    }

    /// Counts one mutating operation, cutting the power if it is the armed one.
    fn mutation(&self) -> io::Result<()> {
        use std::sync::atomic::Ordering::SeqCst;
        let n = self.mutations.fetch_add(1, SeqCst) + 1;
        let at = self.cut_at.load(SeqCst);
        if at != 0 && n >= at && self.cut_at.compare_exchange(at, 0, SeqCst, SeqCst).is_ok() {
            self.power_cut();
            return Err(io::Error::other("power cut at an armed operation"));
        }
        Ok(())
    }

    /// Number of successful `sync_data` calls so far.
    pub fn syncs(&self) -> u64 {
        self.syncs.load(std::sync::atomic::Ordering::Relaxed)
    }

    fn disk(&self) -> MutexGuard<'_, Disk> {
        self.shared
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The disk, if this handle's process is still alive.
    fn live_disk(&self) -> io::Result<MutexGuard<'_, Disk>> {
        let disk = self.disk();
        if disk.generation != self.generation {
            return Err(io::Error::other("power was cut; this process is gone"));
        }
        Ok(disk)
    }

    /// Cuts the power: every file falls back to its durable image plus a random prefix of its
    /// unsynced writes (the last one possibly torn); unsynced directory changes are lost; every
    /// open handle dies.
    pub fn power_cut(&self) {
        let mut disk = self.disk();
        disk.generation += 1;
        let durable_names = disk.durable_names.clone();
        let mut survivors = BTreeMap::new();
        for (path, file) in durable_names {
            let mut data = file.lock().unwrap_or_else(|p| p.into_inner());
            let mut image = data.durable.clone();
            let pending = std::mem::take(&mut data.pending);
            let kept = (disk.next_random() % (pending.len() as u64 + 1)) as usize;
            for op in &pending[..kept] {
                op.apply(&mut image);
            }
            if let Some(Op::Write { position, bytes }) = pending.get(kept) {
                // The next write reached the disk in part: a prefix of it. (What lies past the
                // prefix keeps its old bytes, which for an appended log are preallocated zeros.)
                let cut = (disk.next_random() % (bytes.len() as u64 + 1)) as usize;
                Op::Write {
                    position: *position,
                    bytes: bytes[..cut].to_vec(),
                }
                .apply(&mut image);
            }
            // A fresh FileData: the old Arc stays with the dead handles.
            survivors.insert(
                path,
                Arc::new(Mutex::new(FileData {
                    current: image.clone(),
                    durable: image,
                    pending: Vec::new(),
                })),
            );
        }
        disk.names = survivors.clone();
        disk.durable_names = survivors;
    }

    /// The current bytes of `path`, if it exists (for assertions).
    pub fn contents(&self, path: &Path) -> Option<Vec<u8>> {
        let disk = self.disk();
        let file = disk.names.get(path)?;
        let data = file.lock().unwrap_or_else(|p| p.into_inner());
        Some(data.current.clone())
    }
}

impl Disk {
    fn next_random(&mut self) -> u64 {
        // xorshift64: deterministic, good enough to pick cut points.
        let mut x = self.rng;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.rng = x;
        x
    }
}

fn not_found(path: &Path) -> io::Error {
    io::Error::new(
        io::ErrorKind::NotFound,
        format!("{}: no such file", path.display()),
    )
}

impl Storage for SimStorage {
    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        let mut disk = self.live_disk()?;
        for ancestor in path.ancestors() {
            disk.dirs.insert(ancestor.to_path_buf());
        }
        Ok(())
    }

    fn list_dir(&self, path: &Path) -> io::Result<Vec<String>> {
        let disk = self.live_disk()?;
        if !disk.dirs.contains(path) {
            return Err(not_found(path));
        }
        let files = disk.names.keys().filter(|p| p.parent() == Some(path));
        let dirs = disk.dirs.iter().filter(|p| p.parent() == Some(path));
        Ok(files
            .chain(dirs)
            .filter_map(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
            .collect())
    }

    fn exists(&self, path: &Path) -> bool {
        let disk = self.disk();
        disk.names.contains_key(path) || disk.dirs.contains(path)
    }

    fn open(&self, path: &Path, create: bool) -> io::Result<Arc<dyn StorageFile>> {
        if create {
            self.mutation()?;
        }
        let mut disk = self.live_disk()?;
        let parent = path.parent().unwrap_or(Path::new(""));
        if !disk.dirs.contains(parent) {
            return Err(not_found(parent));
        }
        let data = match disk.names.get(path) {
            Some(data) => data.clone(),
            None if create => {
                let data = Arc::new(Mutex::new(FileData::default()));
                disk.names.insert(path.to_path_buf(), data.clone());
                data
            }
            None => return Err(not_found(path)),
        };
        Ok(Arc::new(SimFile {
            storage: self.clone(),
            generation: disk.generation,
            data,
        }))
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        self.mutation()?;
        self.live_disk()?
            .names
            .remove(path)
            .map(|_| ())
            .ok_or_else(|| not_found(path))
    }

    fn remove_dir_all(&self, path: &Path) -> io::Result<()> {
        let mut disk = self.live_disk()?;
        disk.names.retain(|p, _| !p.starts_with(path));
        disk.dirs.retain(|p| !p.starts_with(path));
        // Directory removal is modelled as durable at once: the log only removes directories
        // it has already renamed out of the way.
        disk.durable_names.retain(|p, _| !p.starts_with(path));
        Ok(())
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        self.mutation()?;
        let mut disk = self.live_disk()?;
        if let Some(file) = disk.names.remove(from) {
            disk.names.insert(to.to_path_buf(), file);
            return Ok(());
        }
        if disk.dirs.contains(from) {
            // Directory rename (topic deletion): move everything below, durably.
            let moved: Vec<PathBuf> = disk
                .dirs
                .iter()
                .filter(|p| p.starts_with(from))
                .cloned()
                .collect();
            for dir in moved {
                disk.dirs.remove(&dir);
                disk.dirs
                    .insert(to.join(dir.strip_prefix(from).expect("below from")));
            }
            let disk = &mut *disk;
            for names in [&mut disk.names, &mut disk.durable_names] {
                let files: Vec<PathBuf> = names
                    .keys()
                    .filter(|p| p.starts_with(from))
                    .cloned()
                    .collect();
                for path in files {
                    let file = names.remove(&path).expect("listed");
                    names.insert(to.join(path.strip_prefix(from).expect("below from")), file);
                }
            }
            return Ok(());
        }
        Err(not_found(from))
    }

    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        self.mutation()?;
        let mut disk = self.live_disk()?;
        let current: HashMap<PathBuf, Arc<Mutex<FileData>>> = disk
            .names
            .iter()
            .filter(|(p, _)| p.parent() == Some(path))
            .map(|(p, f)| (p.clone(), f.clone()))
            .collect();
        disk.durable_names.retain(|p, _| p.parent() != Some(path));
        disk.durable_names.extend(current);
        Ok(())
    }
}

#[derive(Debug)]
struct SimFile {
    storage: SimStorage,
    generation: u64,
    data: Arc<Mutex<FileData>>,
}

impl SimFile {
    /// Runs `f` on the file's data unless the power was cut since it was opened.
    fn with<R>(&self, f: impl FnOnce(&mut FileData) -> R) -> io::Result<R> {
        let disk = self.storage.disk();
        if disk.generation != self.generation {
            return Err(io::Error::other("power was cut; this handle is dead"));
        }
        let mut data = self.data.lock().unwrap_or_else(|p| p.into_inner());
        Ok(f(&mut data))
    }
}

impl StorageFile for SimFile {
    fn read_at(&self, buf: &mut [u8], position: u64) -> io::Result<usize> {
        self.with(|data| {
            let start = (position as usize).min(data.current.len());
            let n = buf.len().min(data.current.len() - start);
            buf[..n].copy_from_slice(&data.current[start..start + n]);
            n
        })
    }

    fn write_all_at(&self, bufs: &[IoSlice<'_>], position: u64) -> io::Result<()> {
        self.storage.mutation()?;
        self.with(|data| {
            let bytes: Vec<u8> = bufs.iter().flat_map(|b| b.iter().copied()).collect();
            let op = Op::Write { position, bytes };
            op.apply(&mut data.current);
            data.pending.push(op);
        })
    }

    fn sync_data(&self) -> io::Result<()> {
        let latency = *self
            .storage
            .sync_latency
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if !latency.is_zero() {
            std::thread::sleep(latency);
        }
        self.storage.mutation()?;
        self.with(|data| {
            let pending = std::mem::take(&mut data.pending);
            for op in &pending {
                op.apply(&mut data.durable);
            }
        })?;
        self.storage
            .syncs
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Ok(())
    }

    fn len(&self) -> io::Result<u64> {
        self.with(|data| data.current.len() as u64)
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        self.storage.mutation()?;
        self.with(|data| {
            let op = Op::SetLen(len);
            op.apply(&mut data.current);
            data.pending.push(op);
        })
    }

    fn allocate(&self, len: u64) -> io::Result<()> {
        self.storage.mutation()?;
        self.with(|data| {
            if len > data.current.len() as u64 {
                let op = Op::SetLen(len);
                op.apply(&mut data.current);
                data.pending.push(op);
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn synced_data_survives_and_unsynced_names_vanish() {
        let sim = SimStorage::new(7);
        let dir = Path::new("/d");
        sim.create_dir_all(dir).unwrap();
        let kept = sim.open(&dir.join("kept"), true).unwrap();
        kept.write_all_at(&[IoSlice::new(b"durable")], 0).unwrap();
        kept.sync_data().unwrap();
        sim.sync_dir(dir).unwrap();
        kept.write_all_at(&[IoSlice::new(b"-volatile-tail")], 7)
            .unwrap();
        let lost = sim.open(&dir.join("lost"), true).unwrap();
        lost.write_all_at(&[IoSlice::new(b"x")], 0).unwrap();
        lost.sync_data().unwrap();
        sim.power_cut();
        assert!(
            sim.open(&dir.join("kept"), false).is_err(),
            "the old process is gone"
        );
        let sim = sim.after_reboot();
        let after = sim.contents(&dir.join("kept")).unwrap();
        assert!(after.starts_with(b"durable"), "{after:?}");
        assert!(
            sim.contents(&dir.join("lost")).is_none(),
            "created but dir never synced"
        );
        assert!(
            kept.read_at(&mut [0u8; 1], 0).is_err(),
            "old handles are dead"
        );
    }
}
