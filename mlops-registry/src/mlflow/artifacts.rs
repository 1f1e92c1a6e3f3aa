//! [`MlflowArtifacts`]: files in an MLflow tracking server's artifact proxy
//! (`/api/2.0/mlflow-artifacts/artifacts/...`, the `mlflow-artifacts:` URIs).

use async_trait::async_trait;
use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use reqwest::{Method, StatusCode};
use serde_json::Value;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncRead, AsyncReadExt};

use super::client::{Client, error_answer, read_answer, unavailable};
use crate::artifact::{ArtifactStore, ByteStream, CHUNK_SIZE, StoredFile, check_store_path};
use crate::error::{Error, Result};

const PROXY: &str = "api/2.0/mlflow-artifacts/artifacts";

/// An [`ArtifactStore`] in an MLflow server's artifact proxy: what MLflow's own clients
/// download from. Paths are relative to the proxy's root (`mlflow-artifacts:/<path>`).
///
/// The proxy writes a file as it arrives: a reader can see a file that is still being
/// written, and a writer that dies leaves part of one. The registry does not depend on
/// either: a version is READY only once every file is stored and its digest recorded, and
/// every download is checked against the record.
#[derive(Clone, Debug)]
pub struct MlflowArtifacts {
    client: Client,
}

impl MlflowArtifacts {
    pub(crate) fn new(client: Client) -> Self {
        MlflowArtifacts { client }
    }

    /// The store of the server at `uri`, with credentials from the environment as for
    /// [`super::MlflowRegistry::new`].
    pub fn connect(uri: &str) -> Result<Self> {
        Ok(MlflowArtifacts::new(Client::new(
            uri,
            super::client::Auth::from_env(),
        )?))
    }

    /// A request without a body; a transport failure is [`Error::Unavailable`].
    async fn send(&self, method: Method, url: &reqwest::Url) -> Result<reqwest::Response> {
        self.client
            .request(method, url.clone())
            .send()
            .await
            .map_err(|e| unavailable(url, &e))
    }

    /// One directory's entries: `(name, is_dir, size)`.
    async fn entries(&self, dir: &str) -> Result<Vec<(String, bool, u64)>> {
        let mut url = self.client.url(PROXY, "");
        url.query_pairs_mut()
            .append_pair("path", dir.trim_end_matches('/'));
        let response = self.send(Method::GET, &url).await?;
        if !response.status().is_success() {
            return Err(error_answer("mlflow-artifacts list", response).await);
        }
        let body = read_answer("mlflow-artifacts list", &url, response).await?;
        let listing: Value = serde_json::from_str(&body)
            .map_err(|e| Error::Corrupt(format!("MLflow's artifact listing is not JSON ({e})")))?;
        Ok(listing["files"]
            .as_array()
            .map(|files| {
                files
                    .iter()
                    .filter_map(|f| {
                        let path = f["path"].as_str()?.trim_end_matches('/');
                        // Entries are relative to `dir` (or, on some stores, carry it).
                        let name = path.rsplit('/').next().unwrap_or(path).to_owned();
                        // An empty, `.` or `..` name would list a folder again, forever.
                        if matches!(name.as_str(), "" | "." | "..") {
                            return None;
                        }
                        Some((
                            name,
                            f["is_dir"].as_bool().unwrap_or(false),
                            f["file_size"].as_u64().unwrap_or(0),
                        ))
                    })
                    .collect()
            })
            .unwrap_or_default())
    }
}

#[async_trait]
impl ArtifactStore for MlflowArtifacts {
    async fn put(
        &self,
        path: &str,
        reader: &mut (dyn AsyncRead + Send + Unpin),
    ) -> Result<StoredFile> {
        check_store_path(path)?;
        let url = self.client.url(PROXY, path);
        let (mut tx, rx) = futures::channel::mpsc::channel::<std::io::Result<Bytes>>(2);
        let request = self
            .client
            .request(Method::PUT, url.clone())
            .body(reqwest::Body::wrap_stream(rx))
            .send();
        let feed = async move {
            let mut hasher = Sha256::new();
            let mut size = 0u64;
            loop {
                let mut buf = vec![0u8; CHUNK_SIZE];
                let mut filled = 0;
                while filled < buf.len() {
                    let n = match reader.read(&mut buf[filled..]).await {
                        Ok(n) => n,
                        Err(e) => {
                            // Abort the upload rather than end it: the server must not
                            // take a cut-short body for the whole file.
                            let _ = tx
                                .send(Err(std::io::Error::new(e.kind(), e.to_string())))
                                .await;
                            return Err(Error::io(path, e));
                        }
                    };
                    if n == 0 {
                        break;
                    }
                    filled += n;
                }
                if filled == 0 {
                    break;
                }
                buf.truncate(filled);
                size += filled as u64;
                let (h, chunk) = tokio::task::spawn_blocking(move || {
                    hasher.update(&buf);
                    (hasher, buf)
                })
                .await
                .map_err(|e| Error::io("sha256", std::io::Error::other(e)))?;
                hasher = h;
                if tx.send(Ok(Bytes::from(chunk))).await.is_err() {
                    // The request ended early; its own error says why.
                    break;
                }
            }
            drop(tx);
            Ok::<_, Error>((size, hex::encode(hasher.finalize())))
        };
        let (response, fed) = tokio::join!(request, feed);
        let (size, sha256) = fed?;
        let response = response.map_err(|e| unavailable(&url, &e))?;
        let status = response.status();
        if !status.is_success() {
            return Err(error_answer("mlflow-artifacts upload", response).await);
        }
        Ok(StoredFile {
            path: path.to_owned(),
            size,
            sha256,
        })
    }

    async fn get(&self, path: &str) -> Result<ByteStream> {
        check_store_path(path)?;
        let url = self.client.url(PROXY, path);
        let response = self.send(Method::GET, &url).await?;
        let status = response.status();
        if status == StatusCode::NOT_FOUND {
            return Err(Error::not_found(format!("artifact '{path}'")));
        }
        if !status.is_success() {
            return Err(error_answer("mlflow-artifacts download", response).await);
        }
        let stream = response
            .bytes_stream()
            .map(move |chunk| chunk.map_err(|e| unavailable(&url, &e)));
        Ok(stream.boxed())
    }

    async fn size(&self, path: &str) -> Result<Option<u64>> {
        check_store_path(path)?;
        let (dir, name) = path.rsplit_once('/').unwrap_or(("", path));
        let entries = match self.entries(dir).await {
            Ok(e) => e,
            Err(Error::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(e),
        };
        Ok(entries
            .into_iter()
            .find(|(n, is_dir, _)| n == name && !is_dir)
            .map(|(_, _, size)| size))
    }

    async fn list(&self, prefix: &str) -> Result<Vec<String>> {
        let mut out = Vec::new();
        let mut pending = vec![prefix.trim_end_matches('/').to_owned()];
        while let Some(dir) = pending.pop() {
            let entries = match self.entries(&dir).await {
                Ok(e) => e,
                Err(Error::NotFound { .. }) => continue,
                Err(e) => return Err(e),
            };
            for (name, is_dir, _) in entries {
                let path = if dir.is_empty() {
                    name
                } else {
                    format!("{dir}/{name}")
                };
                if is_dir {
                    pending.push(path);
                } else {
                    out.push(path);
                }
            }
        }
        out.sort();
        Ok(out)
    }

    async fn delete_all(&self, prefix: &str) -> Result<()> {
        if prefix.trim_end_matches('/').is_empty() {
            return Err(Error::invalid(
                "refusing to delete the whole MLflow artifact root",
            ));
        }
        // File by file: some of MLflow's stores delete a folder by key prefix, which would
        // take `model_v2/` with `model`.
        for path in self.list(prefix).await? {
            let url = self.client.url(PROXY, &path);
            let response = self.send(Method::DELETE, &url).await?;
            let status = response.status();
            if !(status.is_success() || status == StatusCode::NOT_FOUND) {
                return Err(error_answer("mlflow-artifacts delete", response).await);
            }
        }
        Ok(())
    }

    fn uri(&self) -> String {
        "mlflow-artifacts:/".to_owned()
    }

    fn locate(&self, source: &str) -> Option<String> {
        let path = source.strip_prefix("mlflow-artifacts:")?;
        // `mlflow-artifacts:/path`, or `mlflow-artifacts://host:port/path`: the proxy of
        // the server at that address, which is this store only if it is this server.
        let path = match path.strip_prefix("//") {
            Some(rest) => {
                let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
                if !authority.is_empty() && !same_authority(self.client.base(), authority) {
                    return None;
                }
                path
            }
            None => path.trim_start_matches('/'),
        };
        let path = path.trim_end_matches('/');
        (!path.is_empty() && check_store_path(path).is_ok()).then(|| format!("{path}/"))
    }
}

/// Whether `authority` (`host` or `host:port`) names the server at `base`; a missing port is
/// the scheme's default.
fn same_authority(base: &reqwest::Url, authority: &str) -> bool {
    let Ok(other) = reqwest::Url::parse(&format!("{}://{authority}/", base.scheme())) else {
        return false;
    };
    other.host_str().map(str::to_ascii_lowercase) == base.host_str().map(str::to_ascii_lowercase)
        && other.port_or_known_default() == base.port_or_known_default()
}
