//! The only code that calls the object store: opening it from a URL, the request kinds silt
//! uses, and counters of what they cost.
//!
//! Transient failures (5xx, 503 SlowDown, 429, timeouts, dropped connections) are retried by
//! `object_store` itself with exponential backoff and jitter, within [`RETRY_TIMEOUT`]; what
//! still fails comes back as [`ArchiveError::Unavailable`] and the caller tries again later.

use std::ops::Range;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use object_store::path::Path;
use object_store::{
    BackoffConfig, ClientConfigKey, ObjectMeta, ObjectStore, ObjectStoreExt, PutMode, PutOptions,
    PutPayload, RetryConfig, WriteMultipart,
};

use crate::error::ArchiveError;

/// How long object_store keeps retrying one request.
pub const RETRY_TIMEOUT: Duration = Duration::from_secs(30);
/// Timeout of one HTTP request.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
/// Objects at least this big go up as multipart uploads; smaller ones in one PUT.
pub const MULTIPART_BYTES_MIN: usize = 64 << 20;
/// Smallest part of a multipart upload.
pub const PART_BYTES_MIN: usize = 16 << 20;
/// Parts a large object is cut into, at most (larger parts past this): each part is a request
/// the store bills, so a 1 GiB segment goes up in 16 parts, not 64.
pub const PARTS_PER_OBJECT: u64 = 16;
/// Bytes of one upload's parts held in memory at once.
pub const UPLOAD_BYTES_IN_FLIGHT: usize = 128 << 20;
/// Parts of one upload in flight at once, at most.
pub const PARTS_IN_FLIGHT_MAX: usize = 4;

/// The part size of a multipart upload of `object_bytes`: [`PART_BYTES_MIN`], or larger (in
/// whole MiB) so the object takes at most [`PARTS_PER_OBJECT`] parts.
pub fn part_bytes(object_bytes: u64) -> usize {
    const MIB: u64 = 1 << 20;
    let even = object_bytes.div_ceil(PARTS_PER_OBJECT).div_ceil(MIB) * MIB;
    // S3 takes parts of up to 5 GiB.
    even.clamp(PART_BYTES_MIN as u64, 5 << 30) as usize
}

/// Counters of object-store requests (for `/metrics` and the benchmarks).
#[derive(Debug, Default)]
pub struct RemoteMetrics {
    /// GET requests (whole or ranged).
    pub gets: AtomicU64,
    /// PUT requests, counting each part of a multipart upload.
    pub puts: AtomicU64,
    /// DELETE requests.
    pub deletes: AtomicU64,
    /// LIST requests.
    pub lists: AtomicU64,
    /// HEAD requests.
    pub heads: AtomicU64,
    /// Bytes downloaded.
    pub bytes_read: AtomicU64,
    /// Bytes uploaded.
    pub bytes_written: AtomicU64,
    /// Requests that failed after retries.
    pub failures: AtomicU64,
}

impl RemoteMetrics {
    fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    /// A counter's value.
    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }
}

/// An upload in parts of [`part_bytes`]: at most [`UPLOAD_BYTES_IN_FLIGHT`] of them (and at
/// most [`PARTS_IN_FLIGHT_MAX`] parts) in memory.
pub struct Multipart {
    remote: Remote,
    key: Path,
    writer: WriteMultipart,
    written: u64,
    part_bytes: usize,
}

impl std::fmt::Debug for Multipart {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Multipart({}, {} bytes)", self.key, self.written)
    }
}

impl Multipart {
    /// Adds bytes; waits while too many parts are in flight.
    ///
    /// # Errors
    ///
    /// [`ArchiveError::Unavailable`]; call [`Multipart::abort`] then.
    pub async fn write(&mut self, bytes: Bytes) -> Result<(), ArchiveError> {
        let parts = (UPLOAD_BYTES_IN_FLIGHT / self.part_bytes).clamp(1, PARTS_IN_FLIGHT_MAX);
        if let Err(e) = self.writer.wait_for_capacity(parts).await {
            return Err(self.remote.failed("upload part", &self.key, e));
        }
        self.written += bytes.len() as u64;
        self.writer.put(bytes);
        Ok(())
    }

    /// The size of each part (but the last): callers write in pieces of it.
    pub fn part_bytes(&self) -> usize {
        self.part_bytes
    }

    /// Completes the upload.
    ///
    /// # Errors
    ///
    /// [`ArchiveError::Unavailable`].
    pub async fn finish(self) -> Result<(), ArchiveError> {
        let Multipart {
            remote,
            key,
            writer,
            written,
            part_bytes,
        } = self;
        match writer.finish().await {
            Ok(_) => {
                RemoteMetrics::add(
                    &remote.metrics.puts,
                    written.div_ceil(part_bytes as u64) + 2,
                );
                RemoteMetrics::add(&remote.metrics.bytes_written, written);
                Ok(())
            }
            Err(e) => Err(remote.failed("complete multipart upload", &key, e)),
        }
    }

    /// Abandons the upload (the store drops its parts).
    pub async fn abort(self) {
        let _ = self.writer.abort().await;
    }
}

/// What a create-only PUT did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Created {
    /// The object did not exist and now does.
    Yes,
    /// It existed already; nothing was written.
    AlreadyExists,
    /// The store cannot do conditional writes; the caller must fence another way.
    Unsupported,
}

/// An object store and the prefix silt's objects live under.
#[derive(Debug, Clone)]
pub struct Remote {
    store: Arc<dyn ObjectStore>,
    prefix: Path,
    description: String,
    metrics: Arc<RemoteMetrics>,
}

impl Remote {
    /// Opens an archive target: a directory path, `file:///dir`, `s3://bucket/prefix` (with the
    /// usual `AWS_*` variables: `AWS_ENDPOINT`, `AWS_ALLOW_HTTP`, `AWS_ACCESS_KEY_ID`, ...),
    /// `gs://bucket/prefix` (`GOOGLE_*`), `az://container/prefix` (`AZURE_*`), or `memory://`.
    ///
    /// # Errors
    ///
    /// [`ArchiveError::Config`] for a URL or directory that cannot be used.
    pub fn open(target: &str) -> Result<Remote, ArchiveError> {
        let shown = silt_config::redact_url(target);
        let mut described = shown.clone();
        let config = |e: &dyn std::fmt::Display| ArchiveError::Config(format!("{shown}: {e}"));
        if !target.contains("://") {
            return Remote::local(std::path::Path::new(target));
        }
        let url = url::Url::parse(target).map_err(|e| config(&e))?;
        let prefix = Path::from(url.path().trim_matches('/'));
        let retry = RetryConfig {
            backoff: BackoffConfig {
                init_backoff: Duration::from_millis(100),
                max_backoff: Duration::from_secs(5),
                base: 2.0,
            },
            max_retries: 10,
            retry_timeout: RETRY_TIMEOUT,
        };
        // Timeouts go in as configuration keys: `with_client_options` would replace what
        // `from_env` read (AWS_ALLOW_HTTP among it).
        let timeout = format!("{}s", REQUEST_TIMEOUT.as_secs());
        let connect_timeout = "5s";
        let store: Arc<dyn ObjectStore> = match url.scheme() {
            "file" => return Remote::local(std::path::Path::new(url.path())),
            "memory" => Arc::new(object_store::memory::InMemory::new()),
            "s3" | "s3a" => {
                let builder = object_store::aws::AmazonS3Builder::from_env()
                    .with_url(target)
                    .with_retry(retry)
                    .with_config(
                        object_store::aws::AmazonS3ConfigKey::Client(ClientConfigKey::Timeout),
                        &timeout,
                    )
                    .with_config(
                        object_store::aws::AmazonS3ConfigKey::Client(
                            ClientConfigKey::ConnectTimeout,
                        ),
                        connect_timeout,
                    );
                // Named in messages: a wrong endpoint is the first thing to rule out.
                let endpoint = builder
                    .get_config_value(&object_store::aws::AmazonS3ConfigKey::Endpoint)
                    .map(|e| silt_config::redact_url(&e))
                    .unwrap_or_else(|| "AWS's default endpoint".to_string());
                described = format!("{shown} at {endpoint}");
                Arc::new(builder.build().map_err(|e| config(&e))?)
            }
            "gs" => Arc::new(
                object_store::gcp::GoogleCloudStorageBuilder::from_env()
                    .with_url(target)
                    .with_retry(retry)
                    .with_config(
                        object_store::gcp::GoogleConfigKey::Client(ClientConfigKey::Timeout),
                        &timeout,
                    )
                    .with_config(
                        object_store::gcp::GoogleConfigKey::Client(ClientConfigKey::ConnectTimeout),
                        connect_timeout,
                    )
                    .build()
                    .map_err(|e| config(&e))?,
            ),
            "az" | "azure" | "abfs" => Arc::new(
                object_store::azure::MicrosoftAzureBuilder::from_env()
                    .with_url(target)
                    .with_retry(retry)
                    .with_config(
                        object_store::azure::AzureConfigKey::Client(ClientConfigKey::Timeout),
                        &timeout,
                    )
                    .with_config(
                        object_store::azure::AzureConfigKey::Client(
                            ClientConfigKey::ConnectTimeout,
                        ),
                        connect_timeout,
                    )
                    .build()
                    .map_err(|e| config(&e))?,
            ),
            other => {
                return Err(ArchiveError::Config(format!(
                    "{shown}: unknown scheme {other}"
                )));
            }
        };
        Ok(Remote::with_store(store, prefix, described))
    }

    /// Asks the store for one object under the prefix: what a wrong bucket, wrong
    /// credentials or an endpoint that does not answer fail at once (a prefix with nothing
    /// in it yet is fine). `within` bounds the wait, retries included.
    ///
    /// # Errors
    ///
    /// [`ArchiveError::Config`] with a sentence naming the target and what the store answered.
    pub async fn check(&self, within: Duration) -> Result<(), ArchiveError> {
        let target = &self.description;
        match tokio::time::timeout(within, self.list_some(&self.prefix, 1)).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(ArchiveError::Config(format!(
                "the archive {target} cannot be used: {e}"
            ))),
            Err(_) => Err(ArchiveError::Config(format!(
                "the archive {target} did not answer within {} s (is the endpoint right and up?)",
                within.as_secs()
            ))),
        }
    }

    fn local(dir: &std::path::Path) -> Result<Remote, ArchiveError> {
        std::fs::create_dir_all(dir).map_err(|e| {
            ArchiveError::Config(format!(
                "cannot create archive directory {}: {e}",
                dir.display()
            ))
        })?;
        let store = object_store::local::LocalFileSystem::new_with_prefix(dir).map_err(|e| {
            ArchiveError::Config(format!("archive directory {}: {e}", dir.display()))
        })?;
        Ok(Remote::with_store(
            Arc::new(store),
            Path::default(),
            dir.display().to_string(),
        ))
    }

    /// Wraps a store (tests use `InMemory` and faulty stores).
    pub fn with_store(store: Arc<dyn ObjectStore>, prefix: Path, description: String) -> Remote {
        Remote {
            store,
            prefix,
            description,
            metrics: Arc::default(),
        }
    }

    /// Where the archive is, for logs.
    pub fn description(&self) -> &str {
        &self.description
    }

    /// The prefix all keys live under.
    pub fn prefix(&self) -> &Path {
        &self.prefix
    }

    /// Request counters.
    pub fn metrics(&self) -> &Arc<RemoteMetrics> {
        &self.metrics
    }

    /// Counts this store's requests in `metrics` (shared with another store of the node).
    pub fn counting_in(mut self, metrics: Arc<RemoteMetrics>) -> Remote {
        self.metrics = metrics;
        self
    }

    fn failed(&self, op: &'static str, key: &Path, e: object_store::Error) -> ArchiveError {
        if !matches!(e, object_store::Error::NotFound { .. }) {
            RemoteMetrics::add(&self.metrics.failures, 1);
        }
        ArchiveError::store(op, key, e)
    }

    /// GETs a whole object.
    ///
    /// # Errors
    ///
    /// [`ArchiveError::NotFound`] or [`ArchiveError::Unavailable`].
    pub async fn get(&self, key: &Path) -> Result<Bytes, ArchiveError> {
        RemoteMetrics::add(&self.metrics.gets, 1);
        let bytes = async { self.store.get(key).await?.bytes().await }
            .await
            .map_err(|e| self.failed("get", key, e))?;
        RemoteMetrics::add(&self.metrics.bytes_read, bytes.len() as u64);
        Ok(bytes)
    }

    /// GETs a byte range of an object.
    ///
    /// # Errors
    ///
    /// As [`Remote::get`].
    pub async fn get_range(&self, key: &Path, range: Range<u64>) -> Result<Bytes, ArchiveError> {
        RemoteMetrics::add(&self.metrics.gets, 1);
        let bytes = self
            .store
            .get_range(key, range)
            .await
            .map_err(|e| self.failed("get range", key, e))?;
        RemoteMetrics::add(&self.metrics.bytes_read, bytes.len() as u64);
        Ok(bytes)
    }

    /// HEADs an object.
    ///
    /// # Errors
    ///
    /// As [`Remote::get`].
    pub async fn head(&self, key: &Path) -> Result<ObjectMeta, ArchiveError> {
        RemoteMetrics::add(&self.metrics.heads, 1);
        self.store
            .head(key)
            .await
            .map_err(|e| self.failed("head", key, e))
    }

    /// PUTs an object, replacing whatever is there.
    ///
    /// # Errors
    ///
    /// [`ArchiveError::Unavailable`].
    pub async fn put(&self, key: &Path, bytes: Bytes) -> Result<(), ArchiveError> {
        RemoteMetrics::add(&self.metrics.puts, 1);
        let len = bytes.len() as u64;
        self.store
            .put(key, PutPayload::from(bytes))
            .await
            .map_err(|e| self.failed("put", key, e))?;
        RemoteMetrics::add(&self.metrics.bytes_written, len);
        Ok(())
    }

    /// PUTs an object only if none exists under `key` (If-None-Match: *).
    ///
    /// # Errors
    ///
    /// [`ArchiveError::Unavailable`].
    pub async fn put_if_absent(&self, key: &Path, bytes: Bytes) -> Result<Created, ArchiveError> {
        RemoteMetrics::add(&self.metrics.puts, 1);
        let len = bytes.len() as u64;
        let options = PutOptions {
            mode: PutMode::Create,
            ..PutOptions::default()
        };
        match self
            .store
            .put_opts(key, PutPayload::from(bytes), options)
            .await
        {
            Ok(_) => {
                RemoteMetrics::add(&self.metrics.bytes_written, len);
                Ok(Created::Yes)
            }
            Err(object_store::Error::AlreadyExists { .. })
            | Err(object_store::Error::Precondition { .. }) => Ok(Created::AlreadyExists),
            Err(object_store::Error::NotImplemented { .. }) => Ok(Created::Unsupported),
            Err(e) => Err(self.failed("conditional put", key, e)),
        }
    }

    /// Starts a multipart upload of an object of `object_bytes`, written as it is read, in
    /// parts of [`part_bytes`]`(object_bytes)`.
    ///
    /// # Errors
    ///
    /// [`ArchiveError::Unavailable`].
    pub async fn multipart(
        &self,
        key: &Path,
        object_bytes: u64,
    ) -> Result<Multipart, ArchiveError> {
        let part_bytes = part_bytes(object_bytes);
        let upload = self
            .store
            .put_multipart(key)
            .await
            .map_err(|e| self.failed("start multipart upload", key, e))?;
        Ok(Multipart {
            remote: self.clone(),
            key: key.clone(),
            writer: WriteMultipart::new_with_chunk_size(upload, part_bytes),
            written: 0,
            part_bytes,
        })
    }

    /// DELETEs an object; a missing one is not an error.
    ///
    /// # Errors
    ///
    /// [`ArchiveError::Unavailable`].
    pub async fn delete(&self, key: &Path) -> Result<(), ArchiveError> {
        RemoteMetrics::add(&self.metrics.deletes, 1);
        match self.store.delete(key).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(self.failed("delete", key, e)),
        }
    }

    /// Up to `limit` objects under `dir` (recursively), in no promised order.
    ///
    /// # Errors
    ///
    /// [`ArchiveError::Unavailable`].
    pub async fn list_some(
        &self,
        dir: &Path,
        limit: usize,
    ) -> Result<Vec<ObjectMeta>, ArchiveError> {
        RemoteMetrics::add(&self.metrics.lists, 1);
        self.store
            .list(Some(dir))
            .take(limit)
            .try_collect()
            .await
            .map_err(|e| self.failed("list", dir, e))
    }

    /// Lists the objects under `dir` (recursively), optionally only those after `offset`.
    ///
    /// # Errors
    ///
    /// [`ArchiveError::Unavailable`].
    pub async fn list(
        &self,
        dir: &Path,
        offset: Option<&Path>,
    ) -> Result<Vec<ObjectMeta>, ArchiveError> {
        RemoteMetrics::add(&self.metrics.lists, 1);
        let stream = match offset {
            Some(offset) => self.store.list_with_offset(Some(dir), offset),
            None => self.store.list(Some(dir)),
        };
        let mut found: Vec<ObjectMeta> = stream
            .try_collect()
            .await
            .map_err(|e| self.failed("list", dir, e))?;
        found.sort_by(|a, b| a.location.cmp(&b.location));
        Ok(found)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_large_object_goes_up_in_at_most_sixteen_parts() {
        const MIB: u64 = 1 << 20;
        assert_eq!(part_bytes(100 * MIB), PART_BYTES_MIN);
        assert_eq!(part_bytes(1 << 30), 64 << 20);
        for size in [65 * MIB, 256 * MIB + 1, (1 << 30) + 7, 10 << 30] {
            let part = part_bytes(size) as u64;
            assert!(
                size.div_ceil(part) <= PARTS_PER_OBJECT,
                "{size} in parts of {part}"
            );
            assert_eq!(part % MIB, 0);
        }
        // In flight: the memory bound holds whatever the part size.
        for size in [100 * MIB, 1 << 30, 10 << 30] {
            let part = part_bytes(size);
            let parts = (UPLOAD_BYTES_IN_FLIGHT / part).clamp(1, PARTS_IN_FLIGHT_MAX);
            assert!(parts * part <= UPLOAD_BYTES_IN_FLIGHT.max(part));
        }
    }
}
