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
/// Objects at least this big go up as multipart uploads.
pub const MULTIPART_BYTES_MIN: usize = 16 << 20;
/// Size of one part of a multipart upload.
pub const PART_BYTES: usize = 16 << 20;
/// Parts of one upload in flight at once.
pub const PARTS_IN_FLIGHT_MAX: usize = 4;

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

/// An upload in parts: at most [`PARTS_IN_FLIGHT_MAX`] parts of [`PART_BYTES`] in memory.
pub struct Multipart {
    remote: Remote,
    key: Path,
    writer: WriteMultipart,
    written: u64,
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
        if let Err(e) = self.writer.wait_for_capacity(PARTS_IN_FLIGHT_MAX).await {
            return Err(self.remote.failed("upload part", &self.key, e));
        }
        self.written += bytes.len() as u64;
        self.writer.put(bytes);
        Ok(())
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
        } = self;
        match writer.finish().await {
            Ok(_) => {
                RemoteMetrics::add(
                    &remote.metrics.puts,
                    written.div_ceil(PART_BYTES as u64) + 2,
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

    /// Starts a multipart upload, for objects written as they are read.
    ///
    /// # Errors
    ///
    /// [`ArchiveError::Unavailable`].
    pub async fn multipart(&self, key: &Path) -> Result<Multipart, ArchiveError> {
        let upload = self
            .store
            .put_multipart(key)
            .await
            .map_err(|e| self.failed("start multipart upload", key, e))?;
        Ok(Multipart {
            remote: self.clone(),
            key: key.clone(),
            writer: WriteMultipart::new_with_chunk_size(upload, PART_BYTES),
            written: 0,
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
