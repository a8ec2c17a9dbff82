//! Verifying the archive from a running broker (`POST /v1/archive/verify`): one run at a time,
//! on the archive's threads, reading every manifest, segment and sidecar as
//! `silt archive verify` does. Its progress and findings stay for `/v1/archive/verify`, the
//! console's archive page, `/v1/status` and `/metrics` until the next run.

use std::sync::{Arc, Mutex};

use serde::Serialize;
use silt_archiver::Archive;
use silt_archiver::verify::{self, Counts, Progress};

/// Faults kept for the API (the count is always whole).
const FAULTS_KEPT: usize = 1000;

/// The latest verification, running or done.
#[derive(Debug, Clone, Default, Serialize)]
pub struct VerifyRun {
    /// A run is going on.
    pub running: bool,
    /// Runs finished since the broker started.
    pub runs: u64,
    /// The topic checked; `None` for the whole archive.
    pub topic: Option<String>,
    /// When the run started (ms since the epoch; 0 before the first).
    pub started_ms: i64,
    /// When it finished.
    pub finished_ms: Option<i64>,
    /// How much it checked, of how much.
    #[serde(flatten)]
    pub counts: Counts,
    /// The segment being checked.
    pub at: String,
    /// Faults found (the first thousand).
    pub faults: Vec<String>,
    /// How many faults were found.
    pub faults_total: u64,
    /// Why the run could not check anything (the catalog unreadable, no such topic).
    pub error: Option<String>,
}

impl VerifyRun {
    fn record(&mut self, progress: &Progress) {
        self.counts = progress.counts;
        self.at.clone_from(&progress.at);
        if progress.faults.len() as u64 != self.faults_total {
            self.faults_total = progress.faults.len() as u64;
            self.faults = progress.faults.iter().take(FAULTS_KEPT).cloned().collect();
        }
    }
}

/// The broker's verifications.
#[derive(Debug, Default)]
pub struct Verifier {
    run: Arc<Mutex<VerifyRun>>,
}

fn now_ms() -> i64 {
    use crate::log::Clock;
    crate::log::SystemClock.now_ms()
}

impl Verifier {
    /// The latest run.
    pub fn snapshot(&self) -> VerifyRun {
        self.run.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Starts verifying `archive` (one topic, or all of it) on `runtime`.
    ///
    /// # Errors
    ///
    /// A run is already going on.
    pub fn start(
        &self,
        archive: Archive,
        runtime: &tokio::runtime::Handle,
        topic: Option<String>,
    ) -> Result<VerifyRun, String> {
        let runs = {
            let mut run = self.run.lock().unwrap_or_else(|p| p.into_inner());
            if run.running {
                return Err(format!(
                    "a verification is already running ({} of {} segments checked)",
                    run.counts.segments, run.counts.segments_total
                ));
            }
            *run = VerifyRun {
                running: true,
                runs: run.runs,
                topic: topic.clone(),
                started_ms: now_ms(),
                ..VerifyRun::default()
            };
            run.clone()
        };
        let state = self.run.clone();
        runtime.spawn(async move {
            let what = topic.as_deref().unwrap_or("the whole archive").to_string();
            tracing::info!(target: "silt::archive", "verifying {what} in {}", archive.remote().description());
            let error = match archive.topics().await {
                Err(e) => Some(format!("reading the topic catalog: {e}")),
                Ok(mut topics) => {
                    topics.retain(|t| topic.as_ref().is_none_or(|name| &t.name == name));
                    if let Some(name) = &topic
                        && topics.is_empty()
                    {
                        Some(format!("topic '{name}' is not in the archive"))
                    } else {
                        let done = verify::verify(&archive, &topics, &mut |p| {
                            state.lock().unwrap_or_else(|p| p.into_inner()).record(p);
                        })
                        .await;
                        state
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .record(&done);
                        None
                    }
                }
            };
            let mut run = state.lock().unwrap_or_else(|p| p.into_inner());
            run.running = false;
            run.runs += 1;
            run.finished_ms = Some(now_ms());
            run.error = error;
            match (&run.error, run.faults_total) {
                (Some(why), _) => tracing::warn!(target: "silt::archive", "verifying {what}: {why}"),
                (None, 0) => tracing::info!(
                    target: "silt::archive",
                    "verified {what}: {} partitions, {} segments, {} bytes: all good",
                    run.counts.partitions, run.counts.segments, run.counts.bytes
                ),
                (None, faults) => tracing::warn!(
                    target: "silt::archive",
                    "verified {what}: {faults} fault(s) in {} segments; the first: {}",
                    run.counts.segments,
                    run.faults.first().map_or("", String::as_str)
                ),
            }
        });
        Ok(runs)
    }
}
