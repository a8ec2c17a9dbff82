//! The compactor: one thread, below the request threads in CPU priority
//! (`compaction_thread_nice`) and paced by `compaction_bytes_per_sec`, that runs compaction
//! passes ([`crate::log::PartitionLog::compact_once`]) over the partitions of compacted topics
//! every `compaction_check_interval_ms`. Every replica compacts its own log, as Kafka's do.
//!
//! On a topic with an archive, a segment is rewritten only once the archive holds it (the
//! archiver uploads segments as they were sealed); the archive's copies are compacted by
//! tiering's own pass.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::watch;

use crate::log::compactor::CompactOptions;
use crate::node::Node;

/// Passes one partition gets in a row before the compactor moves on (a partition with more
/// keys than the map holds needs several).
const PASSES_PER_VISIT_MAX: usize = 8;

/// A pause that can be cut short.
#[derive(Debug, Default)]
struct Stop {
    stopped: Mutex<bool>,
    wake: Condvar,
    flag: AtomicBool,
}

impl Stop {
    fn wait(&self, duration: Duration) -> bool {
        let guard = self.stopped.lock().unwrap_or_else(|p| p.into_inner());
        let (guard, _) = self
            .wake
            .wait_timeout_while(guard, duration, |stopped| !*stopped)
            .unwrap_or_else(|p| p.into_inner());
        *guard
    }

    fn stop(&self) {
        *self.stopped.lock().unwrap_or_else(|p| p.into_inner()) = true;
        self.flag.store(true, Ordering::Release);
        self.wake.notify_all();
    }

    fn is_stopped(&self) -> bool {
        self.flag.load(Ordering::Acquire)
    }
}

/// Runs the compactor until `stop`.
pub(crate) async fn run(node: Arc<Node>, mut stop: watch::Receiver<bool>) {
    let signal = Arc::new(Stop::default());
    let thread = {
        let node = node.clone();
        let signal = signal.clone();
        std::thread::Builder::new()
            .name("silt-compactor".into())
            .spawn(move || {
                let nice = node.config.compaction_thread_nice;
                // Linux keeps a niceness per thread: this lowers only the compactor.
                if nice > 0
                    && let Err(e) = rustix::process::setpriority_process(None, nice as i32)
                {
                    tracing::warn!(error = %e, "cannot lower the compactor's priority");
                }
                let interval = Duration::from_millis(node.config.compaction_check_interval_ms);
                while !signal.wait(interval) {
                    visit_all(&node, &signal);
                }
            })
    };
    let thread = match thread {
        Ok(thread) => thread,
        Err(e) => {
            tracing::error!(error = %e, "cannot start the compactor thread; compacted topics are not compacted");
            return;
        }
    };
    let _ = stop.wait_for(|stopped| *stopped).await;
    signal.stop();
    let _ = tokio::task::spawn_blocking(move || thread.join()).await;
}

/// A byte-rate limit: sleeps the caller while it is ahead of `bytes_per_sec`.
struct Pace<'a> {
    bytes_per_sec: u64,
    started: Instant,
    bytes: u64,
    stop: &'a Stop,
}

impl Pace<'_> {
    fn take(&mut self, bytes: u64) {
        if self.bytes_per_sec == 0 {
            return;
        }
        self.bytes += bytes;
        let due = Duration::from_secs_f64(self.bytes as f64 / self.bytes_per_sec as f64);
        let elapsed = self.started.elapsed();
        if due > elapsed && !self.stop.is_stopped() {
            self.stop.wait(due - elapsed);
        }
    }
}

fn visit_all(node: &Node, stop: &Stop) {
    let mut pace = Pace {
        bytes_per_sec: node.config.compaction_bytes_per_sec,
        started: Instant::now(),
        bytes: 0,
        stop,
    };
    for topic in node.topics.all() {
        let config = topic.config();
        if !config.cleanup_policy.compacts() {
            continue;
        }
        for partition in topic.partitions() {
            if stop.is_stopped() {
                return;
            }
            let Some(log) = partition.log() else { continue };
            if log.is_closed() {
                continue;
            }
            let rewrite_below = match node.tiering.as_ref() {
                Some(tiering) if config.remote_storage_enable => tiering
                    .archived_next(topic.id, partition.index)
                    .unwrap_or(i64::MIN),
                _ => i64::MAX,
            };
            for pass in 0..PASSES_PER_VISIT_MAX {
                let mut throttle = |bytes| pace.take(bytes);
                let mut options = CompactOptions {
                    key_map_bytes: node.config.compaction_key_map_bytes,
                    rewrite_below,
                    // A pass after the first finishes what a full key map left.
                    force: pass > 0,
                    throttle: &mut throttle,
                };
                match log.compact_once(&mut options) {
                    Ok(Some(report)) if report.segments_in == 0 => break,
                    Ok(Some(report)) => {
                        node.metrics.add_compaction(&report);
                        tracing::info!(
                            topic = %topic.name,
                            partition = partition.index,
                            segments_in = report.segments_in,
                            segments_out = report.segments_out,
                            bytes_before = report.bytes_before,
                            bytes_after = report.bytes_after,
                            keys = report.keys,
                            cleaned_to = report.cleaned_to,
                            "compacted"
                        );
                    }
                    Ok(None) => break,
                    Err(e) => {
                        tracing::warn!(topic = %topic.name, partition = partition.index, error = %e, "compaction failed; retried next round");
                        break;
                    }
                }
            }
        }
    }
}
