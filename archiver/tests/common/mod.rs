//! An in-memory object store with test hooks in front of it: a test says what a PUT or a GET
//! does before it reaches the store (fail it, count it, hold it back), and nothing else.

use std::ops::Deref;

use futures::stream::BoxStream;
use object_store::memory::InMemory;
use object_store::path::Path;
use object_store::{
    GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    PutMultipartOptions, PutOptions, PutPayload, PutResult,
};

/// What happens before a request reaches the store.
#[async_trait::async_trait]
pub(crate) trait Hooks: Send + Sync + std::fmt::Debug + 'static {
    /// Before a (single-part) PUT: an error fails it, saying why.
    fn put(&self, _location: &Path) -> Result<(), &'static str> {
        Ok(())
    }

    /// Before a GET: it may wait.
    async fn get(&self, _location: &Path) {}
}

/// `InMemory` behind `H`; derefs to `H`, so a test reaches its hooks' fields directly.
#[derive(Debug)]
pub(crate) struct Hooked<H> {
    /// The store itself, for a test to reach past the hooks.
    pub(crate) inner: InMemory,
    hooks: H,
}

impl<H> Hooked<H> {
    pub(crate) fn new(hooks: H) -> Hooked<H> {
        Hooked {
            inner: InMemory::new(),
            hooks,
        }
    }
}

impl<H> Deref for Hooked<H> {
    type Target = H;

    fn deref(&self) -> &H {
        &self.hooks
    }
}

impl<H> std::fmt::Display for Hooked<H> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Hooked")
    }
}

#[async_trait::async_trait]
impl<H: Hooks> ObjectStore for Hooked<H> {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> object_store::Result<PutResult> {
        self.hooks
            .put(location)
            .map_err(|why| object_store::Error::Generic {
                store: "hooked",
                source: why.into(),
            })?;
        self.inner.put_opts(location, payload, opts).await
    }
    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> object_store::Result<Box<dyn MultipartUpload>> {
        self.inner.put_multipart_opts(location, opts).await
    }
    async fn get_opts(
        &self,
        location: &Path,
        options: GetOptions,
    ) -> object_store::Result<GetResult> {
        self.hooks.get(location).await;
        self.inner.get_opts(location, options).await
    }
    fn delete_stream(
        &self,
        locations: BoxStream<'static, object_store::Result<Path>>,
    ) -> BoxStream<'static, object_store::Result<Path>> {
        self.inner.delete_stream(locations)
    }
    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        self.inner.list(prefix)
    }
    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> object_store::Result<ListResult> {
        self.inner.list_with_delimiter(prefix).await
    }
    async fn copy_opts(
        &self,
        from: &Path,
        to: &Path,
        options: object_store::CopyOptions,
    ) -> object_store::Result<()> {
        self.inner.copy_opts(from, to, options).await
    }
}
