//! Where model files live: the [`ArtifactStore`] trait and its Apache OpenDAL
//! implementation, [`OpendalStore`] (local disk, memory; S3 and HDFS by feature).

use std::fmt::Debug;
use std::path::Path;

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use futures::stream::BoxStream;
use opendal::Operator;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncRead, AsyncReadExt};

use crate::error::{Error, Result};

/// Size of the pieces files are read, hashed and written in: memory per transfer stays
/// near two of these whatever the file's size.
pub const CHUNK_SIZE: usize = 8 << 20;

/// A temporary file not written to for this long belongs to a writer that died.
const STALE_TEMP: std::time::Duration = std::time::Duration::from_secs(3600);

/// What a store holds at one path once a write is complete.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredFile {
    /// The path in the store.
    pub path: String,
    /// Bytes written.
    pub size: u64,
    /// SHA-256 of the bytes, lowercase hex.
    pub sha256: String,
}

/// A stream of a stored file's bytes.
pub type ByteStream = BoxStream<'static, Result<Bytes>>;

/// Model files, by `/`-separated path.
///
/// A write is visible only once complete: a reader never sees half a file, and a writer
/// that fails or is killed leaves nothing at the path. Implementations stream: memory
/// does not grow with the file.
#[async_trait]
pub trait ArtifactStore: Send + Sync + Debug {
    /// Streams `reader` to `path`, hashing it on the way, and returns its size and digest.
    async fn put(
        &self,
        path: &str,
        reader: &mut (dyn AsyncRead + Send + Unpin),
    ) -> Result<StoredFile>;

    /// Streams the bytes at `path`. [`Error::NotFound`] if there are none.
    async fn get(&self, path: &str) -> Result<ByteStream>;

    /// The size of the file at `path`, or `None`.
    async fn size(&self, path: &str) -> Result<Option<u64>>;

    /// Every file path under `prefix` (a directory, ending in `/`).
    async fn list(&self, prefix: &str) -> Result<Vec<String>>;

    /// Deletes every file under `prefix` (a directory, ending in `/`); nothing there is not
    /// an error.
    async fn delete_all(&self, prefix: &str) -> Result<()>;

    /// Where this store is, as a URI (for a version's `source`).
    fn uri(&self) -> String;

    /// The folder (ending in `/`) of this store that a version's `source` URI names, if it
    /// names one of this store's: there [`crate::Registry`] keeps and finds the version's
    /// files instead of [`version_prefix`]. MLflow's artifact proxy answers for its
    /// `mlflow-artifacts:` URIs; other stores for none.
    fn locate(&self, source: &str) -> Option<String> {
        let _ = source;
        None
    }
}

/// An [`ArtifactStore`] over an OpenDAL [`Operator`]: any storage OpenDAL reaches.
#[derive(Clone, Debug)]
pub struct OpendalStore {
    op: Operator,
    uri: String,
    /// Write to a temporary name and rename: for services whose writes become visible
    /// before they complete (HDFS).
    rename_after_write: bool,
}

impl OpendalStore {
    /// Wraps an operator the application built (with its own layers: retry, timeout,
    /// metrics). Its writes must be atomic (as S3's and [`OpendalStore::local`]'s are).
    pub fn new(op: Operator, uri: impl Into<String>) -> Self {
        OpendalStore {
            op,
            uri: uri.into(),
            rename_after_write: false,
        }
    }

    /// Files under a local directory (created if missing). Each file is written under a
    /// temporary name in `<dir>/.tmp`, synced, then renamed into place.
    pub fn local(dir: impl AsRef<Path>) -> Result<Self> {
        let dir = dir.as_ref();
        let tmp = dir.join(".tmp");
        std::fs::create_dir_all(&tmp).map_err(|e| Error::io(tmp.display(), e))?;
        let dir = std::fs::canonicalize(dir).map_err(|e| Error::io(dir.display(), e))?;
        let tmp = dir.join(".tmp");
        // Leftovers of writers killed mid-file are never visible; clear those nobody has
        // written to for an hour (another process may be writing the others right now).
        if let Ok(entries) = std::fs::read_dir(&tmp) {
            for entry in entries.flatten() {
                let stale = entry
                    .metadata()
                    .and_then(|m| m.modified())
                    .ok()
                    .and_then(|t| t.elapsed().ok())
                    .is_some_and(|age| age > STALE_TEMP);
                if stale {
                    let _ = std::fs::remove_file(entry.path());
                }
            }
        }
        let builder = opendal::services::Fs::default()
            .root(&dir.to_string_lossy())
            .atomic_write_dir(&tmp.to_string_lossy());
        let op = Operator::new(builder)?;
        Ok(OpendalStore {
            op,
            uri: format!("file://{}", dir.display()),
            rename_after_write: false,
        })
    }

    /// Files in this process's memory.
    pub fn memory() -> Result<Self> {
        let op = Operator::new(opendal::services::Memory::default())?;
        Ok(OpendalStore {
            op,
            uri: "memory://".into(),
            rename_after_write: false,
        })
    }

    /// A store from a URI:
    ///
    /// - `file:///var/lib/models` or a plain path: [`local`](Self::local);
    /// - `memory://`: [`memory`](Self::memory);
    /// - `s3://bucket/prefix?region=us-east-1&endpoint=http://127.0.0.1:9000`
    ///   (feature `s3`): credentials from `access_key_id`/`secret_access_key` query
    ///   parameters or the usual `AWS_*` environment variables;
    /// - `hdfs://namenode:8020/prefix` (feature `hdfs`).
    pub fn from_uri(uri: &str) -> Result<Self> {
        let (scheme, rest) = uri.split_once("://").unwrap_or(("file", uri));
        match scheme {
            "file" => Self::local(rest),
            "memory" => Self::memory(),
            "s3" => s3_from_uri(uri, rest),
            "hdfs" => hdfs_from_uri(uri, rest),
            other => Err(Error::invalid(format!(
                "artifact store URI '{uri}': unknown scheme '{other}' (file, memory, s3, hdfs)"
            ))),
        }
    }

    /// The operator underneath.
    pub fn operator(&self) -> &Operator {
        &self.op
    }
}

/// Splits `host/path?k=v&...` into host, path and query pairs.
#[allow(dead_code)]
fn split_uri(rest: &str) -> (String, String, Vec<(String, String)>) {
    let (main, query) = rest.split_once('?').unwrap_or((rest, ""));
    let (host, path) = main.split_once('/').unwrap_or((main, ""));
    let pairs = query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (k.to_owned(), v.to_owned())
        })
        .collect();
    (host.to_owned(), format!("/{path}"), pairs)
}

#[cfg(feature = "s3")]
fn s3_from_uri(uri: &str, rest: &str) -> Result<OpendalStore> {
    let (bucket, root, pairs) = split_uri(rest);
    if bucket.is_empty() {
        return Err(Error::invalid(format!(
            "artifact store URI '{uri}' names no bucket"
        )));
    }
    let mut builder = opendal::services::S3::default().bucket(&bucket).root(&root);
    for (k, v) in &pairs {
        builder = match k.as_str() {
            "region" => builder.region(v),
            "endpoint" => builder.endpoint(v),
            "access_key_id" => builder.access_key_id(v),
            "secret_access_key" => builder.secret_access_key(v),
            "virtual_host_style" if v == "true" => builder.enable_virtual_host_style(),
            other => {
                return Err(Error::invalid(format!(
                    "artifact store URI '{uri}': unknown S3 parameter '{other}'"
                )));
            }
        };
    }
    // TLS uses ring, installed as the process default if nothing else was: one crypto
    // provider for the whole process (see docs/architecture.md).
    if rustls::crypto::CryptoProvider::get_default().is_none() {
        let _ = rustls::crypto::ring::default_provider().install_default();
    }
    let transport =
        opendal::HttpTransporter::new(opendal_http_transport_reqwest::ReqwestTransport::default());
    let op = Operator::new(builder)?
        .with_context(opendal::OperationContext::new().with_http_transport(transport));
    let display = uri.split('?').next().unwrap_or(uri).to_owned();
    Ok(OpendalStore::new(op, display))
}

#[cfg(not(feature = "s3"))]
fn s3_from_uri(_uri: &str, _rest: &str) -> Result<OpendalStore> {
    Err(Error::NotCompiled("S3 artifact store (feature `s3`)"))
}

#[cfg(feature = "hdfs")]
fn hdfs_from_uri(uri: &str, rest: &str) -> Result<OpendalStore> {
    let (host, root, _) = split_uri(rest);
    let builder = opendal::services::HdfsNative::default()
        .name_node(&format!("hdfs://{host}"))
        .root(&root);
    let op = Operator::new(builder)?;
    // HDFS shows a file while it is written: write under a temporary name, then rename.
    Ok(OpendalStore {
        rename_after_write: true,
        ..OpendalStore::new(op, uri)
    })
}

#[cfg(not(feature = "hdfs"))]
fn hdfs_from_uri(_uri: &str, _rest: &str) -> Result<OpendalStore> {
    Err(Error::NotCompiled("HDFS artifact store (feature `hdfs`)"))
}

#[async_trait]
impl ArtifactStore for OpendalStore {
    async fn put(
        &self,
        path: &str,
        reader: &mut (dyn AsyncRead + Send + Unpin),
    ) -> Result<StoredFile> {
        check_store_path(path)?;
        let target = if self.rename_after_write {
            format!("{path}.part-{}", crate::endpoint::new_lease_id())
        } else {
            path.to_owned()
        };
        let mut writer = self
            .op
            .writer_with(&target)
            .chunk(CHUNK_SIZE)
            .concurrent(2)
            .await?;
        let copied = match copy_hashing(reader, &mut writer).await {
            Ok(done) => writer.close().await.map(|_| done).map_err(Error::from),
            Err(e) => Err(e),
        };
        let renamed = match copied {
            Ok(done) if self.rename_after_write => self
                .op
                .rename(&target, path)
                .await
                .map(|()| done)
                .map_err(Error::from),
            other => other,
        };
        match renamed {
            Ok((size, sha256)) => Ok(StoredFile {
                path: path.to_owned(),
                size,
                sha256,
            }),
            Err(e) => {
                // Nothing half-written becomes visible.
                let _ = writer.abort().await;
                if self.rename_after_write {
                    let _ = self.op.delete(&target).await;
                }
                Err(e)
            }
        }
    }

    async fn get(&self, path: &str) -> Result<ByteStream> {
        check_store_path(path)?;
        let reader = self.op.reader_with(path).chunk(CHUNK_SIZE).await?;
        let stream = reader.into_bytes_stream(..).await?;
        let at = path.to_owned();
        // I/O errors keep their kind, so `is_temporary` still tells a reset connection.
        Ok(stream
            .map(move |r| r.map_err(|e| Error::io(&at, e)))
            .boxed())
    }

    async fn size(&self, path: &str) -> Result<Option<u64>> {
        check_store_path(path)?;
        match self.op.stat(path).await {
            Ok(meta) => Ok(Some(meta.content_length())),
            Err(e) if e.kind() == opendal::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::Storage(e)),
        }
    }

    async fn list(&self, prefix: &str) -> Result<Vec<String>> {
        check_store_prefix(prefix)?;
        let entries = match self.op.list_with(prefix).recursive(true).await {
            Ok(entries) => entries,
            Err(e) if e.kind() == opendal::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(Error::Storage(e)),
        };
        let mut out: Vec<String> = entries
            .into_iter()
            .filter(|e| e.metadata().is_file())
            .map(|e| e.path().trim_start_matches('/').to_owned())
            .collect();
        out.sort();
        Ok(out)
    }

    async fn delete_all(&self, prefix: &str) -> Result<()> {
        check_store_prefix(prefix)?;
        match self.op.delete_with(prefix).recursive(true).await {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == opendal::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(Error::Storage(e)),
        }
    }

    fn uri(&self) -> String {
        self.uri.clone()
    }
}

/// Reads `reader` to the end in [`CHUNK_SIZE`] pieces, hashing each on a blocking thread
/// while the previous one is written.
async fn copy_hashing(
    reader: &mut (dyn AsyncRead + Send + Unpin),
    writer: &mut opendal::Writer,
) -> Result<(u64, String)> {
    let mut hasher = Sha256::new();
    let mut size = 0u64;
    loop {
        let chunk = read_chunk(reader).await?;
        if chunk.is_empty() {
            break;
        }
        size += chunk.len() as u64;
        let for_hash = chunk.clone();
        let hashing = tokio::task::spawn_blocking(move || {
            hasher.update(&for_hash);
            hasher
        });
        let (hashed, written) = tokio::join!(hashing, writer.write(chunk));
        written?;
        hasher = hashed.map_err(|e| Error::io("sha256", std::io::Error::other(e)))?;
    }
    Ok((size, hex::encode(hasher.finalize())))
}

async fn read_chunk(reader: &mut (dyn AsyncRead + Send + Unpin)) -> Result<Bytes> {
    let mut buf = Vec::with_capacity(CHUNK_SIZE);
    while buf.len() < CHUNK_SIZE {
        let n = (&mut *reader)
            .take((CHUNK_SIZE - buf.len()) as u64)
            .read_to_end(&mut buf)
            .await
            .map_err(|e| Error::io("artifact source", e))?;
        if n == 0 {
            break;
        }
    }
    Ok(Bytes::from(buf))
}

/// A store path: `/`-separated, relative, no empty, `.` or `..` segment, no backslash or
/// control character. Keeps one model's files from reaching another's.
pub fn check_store_path(path: &str) -> Result<()> {
    let bad = |why: &str| Err(Error::invalid(format!("artifact path {path:?}: {why}")));
    if path.is_empty() || path.len() > 4096 {
        return bad("must have 1 to 4096 bytes");
    }
    if path.starts_with('/') {
        return bad("must be relative");
    }
    if path.chars().any(|c| c.is_control() || c == '\\') {
        return bad("contains a control character or backslash");
    }
    if path
        .split('/')
        .any(|s| s.is_empty() || s == "." || s == "..")
    {
        return bad("has an empty, '.' or '..' segment");
    }
    Ok(())
}

fn check_store_prefix(prefix: &str) -> Result<()> {
    match prefix.strip_suffix('/') {
        Some(dir) => check_store_path(dir),
        None => Err(Error::invalid(format!(
            "artifact prefix {prefix:?} must end with '/'"
        ))),
    }
}

/// Where a version's files live in the store: `models/<name>/<version>/`.
pub fn version_prefix(name: &str, version: u64) -> String {
    format!("models/{name}/{version}/")
}
