//! Append throughput with durability, beside the raw disk measured in the same run.
//!
//! Back of the envelope first: one append of size S costs a write of S bytes plus one
//! fdatasync. Sequential appends can at best match plain `write + fdatasync` of S, so the bar
//! for 1 MiB is 85% of it (the rest is a channel hop, a header copy and a blocking-pool hop).
//! Concurrent appenders share fsyncs: 64 appenders of 16 KiB should write ~1 MiB per fsync,
//! so they should run near the 1 MiB raw rate, far above one fsync per 16 KiB append.
//!
//! Run: `cargo bench -p silt-broker --bench append` (SILT_BENCH_DIR picks the disk, default
//! target/bench-tmp; SILT_BENCH_SECONDS the length of a round, default 0.4).

#![allow(clippy::unwrap_used)] // a benchmark: any failure should stop it loudly

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use silt_broker::log::{DiskStorage, Durability, LogConfig, PartitionLog, SystemClock};
use silt_index::batch::Codec;
use silt_index::record::{NewRecord, encode_batch};

const KIB: usize = 1024;
const MIB: usize = 1024 * 1024;

fn bench_dir() -> PathBuf {
    std::env::var_os("SILT_BENCH_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/bench-tmp"))
}

/// Rounds per case: raw and silt alternate, so both see the same (noisy, shared) disk.
const ROUNDS: usize = 7;

fn round_time() -> Duration {
    Duration::from_secs_f64(
        std::env::var("SILT_BENCH_SECONDS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(0.4),
    )
}

/// Plain `write` + `fdatasync` of `size` bytes at a time for one round, into space
/// preallocated with fallocate (the disk's best; appending to a growing file was slower here,
/// since every fdatasync must also log the new length).
fn raw_round(dir: &Path, size: usize) -> f64 {
    const STEP: u64 = 32 << 20;
    let path = dir.join(format!("raw-{size}"));
    let file = std::fs::File::create(&path).unwrap();
    let buf = vec![0x5au8; size];
    let start = Instant::now();
    let mut written = 0u64;
    let mut allocated = 0u64;
    while start.elapsed() < round_time() {
        if written + size as u64 > allocated {
            rustix::fs::fallocate(&file, rustix::fs::FallocateFlags::empty(), allocated, STEP)
                .unwrap();
            allocated += STEP;
        }
        std::os::unix::fs::FileExt::write_all_at(&file, &buf, written).unwrap();
        file.sync_data().unwrap();
        written += size as u64;
    }
    let rate = written as f64 / start.elapsed().as_secs_f64();
    drop(file);
    std::fs::remove_file(&path).unwrap();
    rate
}

/// A batch whose whole size is `size` bytes (one record).
fn batch_of(size: usize) -> Bytes {
    let overhead = encode_batch(
        0,
        &[NewRecord {
            value: Some(Bytes::new()),
            timestamp: 1,
            ..Default::default()
        }],
        Codec::None,
        None,
    )
    .len();
    // Varint length fields grow with the value; trim until the batch is exactly `size`.
    let mut value_len = size - overhead;
    loop {
        let record = NewRecord {
            value: Some(Bytes::from(vec![0x5a; value_len])),
            timestamp: 1_700_000_000_000,
            ..Default::default()
        };
        let bytes = encode_batch(0, &[record], Codec::None, None);
        if bytes.len() <= size {
            return Bytes::from(bytes);
        }
        value_len -= bytes.len() - size;
    }
}

fn open_log(dir: &Path, runtime: &tokio::runtime::Runtime) -> Arc<PartitionLog> {
    let _ = std::fs::remove_dir_all(dir);
    let config = LogConfig {
        segment_bytes: 1 << 30,
        max_message_bytes: 2 * MIB as u32,
        ..LogConfig::default()
    };
    Arc::new(
        PartitionLog::open(
            Arc::new(DiskStorage),
            dir,
            config,
            Arc::new(SystemClock),
            runtime.handle(),
        )
        .unwrap(),
    )
}

/// `appenders` tasks appending `size`-byte batches durably for one round; bytes/s.
fn silt_round(
    log: &Arc<PartitionLog>,
    runtime: &tokio::runtime::Runtime,
    size: usize,
    appenders: usize,
) -> f64 {
    let batch = batch_of(size);
    runtime.block_on(async {
        let start = Instant::now();
        let tasks: Vec<_> = (0..appenders)
            .map(|_| {
                let log = log.clone();
                let batch = batch.clone();
                tokio::spawn(async move {
                    let mut written = 0u64;
                    while start.elapsed() < round_time() {
                        log.append(batch.clone(), Durability::Durable)
                            .await
                            .unwrap();
                        written += batch.len() as u64;
                    }
                    written
                })
            })
            .collect();
        let mut written = 0;
        for task in tasks {
            written += task.await.unwrap();
        }
        written as f64 / start.elapsed().as_secs_f64()
    })
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(|a, b| a.total_cmp(b));
    values[values.len() / 2]
}

/// Medians of silt, of raw, and of the per-round ratio silt/raw, over alternating rounds.
/// The paired ratio is what to read: this disk's speed drifts by 3x within a minute (a shared
/// VM), and a raw round and the silt round after it see about the same disk.
fn case(
    dir: &Path,
    runtime: &tokio::runtime::Runtime,
    size: usize,
    appenders: usize,
    raw_size: usize,
) -> (f64, f64, f64) {
    let log = open_log(&dir.join("log"), runtime);
    let (mut silt, mut raw, mut ratio) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..ROUNDS {
        let r = raw_round(dir, raw_size);
        let s = silt_round(&log, runtime, size, appenders);
        if std::env::var_os("SILT_BENCH_VERBOSE").is_some() {
            eprintln!("  round: raw {} silt {}", mb(r), mb(s));
        }
        raw.push(r);
        silt.push(s);
        ratio.push(s / r);
    }
    runtime.block_on(log.close()).unwrap();
    (median(silt), median(raw), median(ratio))
}

fn mb(rate: f64) -> String {
    format!("{:8.1} MB/s", rate / 1e6)
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let dir = bench_dir();
    std::fs::create_dir_all(&dir).unwrap();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    println!(
        "append benchmark in {}: {ROUNDS} alternating rounds of {:?}, medians",
        dir.display(),
        round_time()
    );
    println!(
        "{:<32} {:>14} {:>14} {:>8}",
        "case (durable: acks=-1)", "silt", "raw disk", "ratio"
    );
    for size in [16 * KIB, 256 * KIB, MIB] {
        let (silt, raw, ratio) = case(&dir, &runtime, size, 1, size);
        println!(
            "{:<32} {} {} {:>7.0}%",
            format!("1 appender, {} KiB appends", size / KIB),
            mb(silt),
            mb(raw),
            100.0 * ratio
        );
    }
    let (silt, raw, ratio) = case(&dir, &runtime, 16 * KIB, 64, 16 * KIB);
    println!(
        "{:<32} {} {} {:>7.1}x  (raw: one fdatasync per 16 KiB write)",
        "64 appenders, 16 KiB appends",
        mb(silt),
        mb(raw),
        ratio
    );
    let _ = std::fs::remove_dir_all(dir.join("log"));
}
