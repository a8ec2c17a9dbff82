use object_store::path::Path;

/// What can go wrong on the archive side, sorted by what the caller does next.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ArchiveError {
    /// The object store could not be reached or refused the request after retries (5xx,
    /// throttling, timeouts): retry later; local data stays where it is.
    #[error("object store unavailable ({op} {key}): {source}")]
    Unavailable {
        /// What was being done.
        op: &'static str,
        /// The object key.
        key: String,
        /// The store's error.
        #[source]
        source: object_store::Error,
    },
    /// An object the manifest names is not there (or not there yet, on a replica).
    #[error("object {0} not found")]
    NotFound(Path),
    /// Another writer advanced this partition's manifest: this node must stop writing it.
    #[error(
        "manifest of {partition} is owned by another writer (found version {found}, expected {expected})"
    )]
    Fenced {
        /// Which partition.
        partition: String,
        /// Version found.
        found: u64,
        /// Version this writer expected to write.
        expected: u64,
    },
    /// A writer of this cluster with an older (or the same) leader term advanced the
    /// manifest first: this writer reloads the bucket's latest root and carries on from it.
    #[error(
        "manifest of {partition} was advanced by {writer} (term {term}, version {found}); reloading it"
    )]
    Superseded {
        /// Which partition.
        partition: String,
        /// The other writer.
        writer: String,
        /// Its term.
        term: u64,
        /// The version it wrote.
        found: u64,
    },
    /// An archived object does not match what the manifest says (size, CRC, format).
    #[error("corrupt archive object {key}: {reason}")]
    Corrupt {
        /// The object key.
        key: String,
        /// What is wrong.
        reason: String,
    },
    /// A local segment file could not be read, or is not what the log said.
    #[error("local segment {path}: {reason}")]
    Local {
        /// The file.
        path: std::path::PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// The object store did not answer within the read's time limit.
    #[error("object store did not answer ({op} {key}) within {after_ms} ms")]
    TimedOut {
        /// What was being done.
        op: &'static str,
        /// The object key.
        key: String,
        /// The limit.
        after_ms: u64,
    },
    /// A read shared by several readers failed (the first reader logged the cause).
    #[error("{0}")]
    Shared(std::sync::Arc<ArchiveError>),
    /// The archive URL or options are not usable.
    #[error("archive configuration: {0}")]
    Config(String),
    /// A Parquet file of archived records could not be written.
    #[error("Parquet export: {0}")]
    Export(String),
}

impl ArchiveError {
    pub(crate) fn store(op: &'static str, key: &Path, source: object_store::Error) -> ArchiveError {
        match source {
            object_store::Error::NotFound { .. } => ArchiveError::NotFound(key.clone()),
            source => ArchiveError::Unavailable {
                op,
                key: key.to_string(),
                source,
            },
        }
    }

    /// True when retrying later may succeed.
    pub fn is_transient(&self) -> bool {
        match self {
            ArchiveError::Unavailable { .. }
            | ArchiveError::NotFound(_)
            | ArchiveError::TimedOut { .. }
            | ArchiveError::Superseded { .. } => true,
            ArchiveError::Shared(inner) => inner.is_transient(),
            _ => false,
        }
    }

    /// True when an archived object failed its checks (never served; reported).
    pub fn is_corrupt(&self) -> bool {
        match self {
            ArchiveError::Corrupt { .. } => true,
            ArchiveError::Shared(inner) => inner.is_corrupt(),
            _ => false,
        }
    }

    /// True when an object the manifest named is gone (retention raced the read).
    pub fn is_not_found(&self) -> bool {
        match self {
            ArchiveError::NotFound(_) => true,
            ArchiveError::Shared(inner) => inner.is_not_found(),
            _ => false,
        }
    }
}
