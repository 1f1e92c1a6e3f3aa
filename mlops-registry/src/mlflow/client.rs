//! The HTTP side of the MLflow backend: one client for the tracking server's REST API and
//! its artifact proxy, with authentication as MLflow's own client reads it from the
//! environment and MLflow's error codes mapped onto [`Error`].

use std::time::Duration;

use reqwest::{Method, StatusCode, Url};
use serde_json::Value;

use crate::error::{Error, Result};

/// How long one metadata call may take before it is reported as temporary.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a connection attempt may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How many metadata calls one client has in flight at once, as a connection pool would
/// bound them: a tracking server on SQLite serializes writes, and a burst of hundreds
/// only queues them past their timeouts.
pub(crate) const IN_FLIGHT: usize = 8;
/// How long an idle connection is kept for reuse: under the 5 s after which MLflow's
/// server (uvicorn) closes one, so that a request rarely meets a connection closing.
const IDLE_CONNECTION: Duration = Duration::from_secs(3);
/// How long an artifact transfer may go without a byte.
const READ_TIMEOUT: Duration = Duration::from_secs(60);
/// The most a metadata answer may hold, so that a server gone wrong cannot fill the
/// memory: a search page (200 versions) with our three JSON tags each at MLflow's limit
/// of 100,000 characters is 60 MB, and a typical one a few hundred KiB.
pub(crate) const MAX_ANSWER: usize = 64 << 20;
/// How much of an error answer is read: enough for any message worth showing.
const ERROR_BODY: usize = 64 << 10;

/// Credentials, as MLflow's client takes them from its environment.
#[derive(Clone)]
pub(crate) enum Auth {
    None,
    Bearer(String),
    Basic(String, String),
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Auth::None => "none",
            Auth::Bearer(_) => "bearer token",
            Auth::Basic(..) => "basic",
        })
    }
}

impl Auth {
    /// `MLFLOW_TRACKING_USERNAME` and `MLFLOW_TRACKING_PASSWORD`, else
    /// `MLFLOW_TRACKING_TOKEN`, else none: MLflow's client prefers basic auth too.
    pub(crate) fn from_env() -> Auth {
        let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        if let (Some(user), Some(password)) = (
            var("MLFLOW_TRACKING_USERNAME"),
            var("MLFLOW_TRACKING_PASSWORD"),
        ) {
            return Auth::Basic(user, password);
        }
        match var("MLFLOW_TRACKING_TOKEN") {
            Some(token) => Auth::Bearer(token),
            None => Auth::None,
        }
    }
}

/// A tracking server's address and the means to call it. Cheap to clone.
#[derive(Clone, Debug)]
pub(crate) struct Client {
    http: reqwest::Client,
    base: Url,
    auth: Auth,
    timeout: Duration,
    in_flight: std::sync::Arc<tokio::sync::Semaphore>,
}

impl Client {
    /// `base`: `http://host:5000` or `https://...`, optionally with a path prefix.
    pub(crate) fn new(base: &str, auth: Auth) -> Result<Self> {
        let mut base = Url::parse(base)
            .map_err(|e| Error::invalid(format!("MLflow tracking URI '{base}': {e}")))?;
        if !matches!(base.scheme(), "http" | "https") {
            return Err(Error::invalid(format!(
                "MLflow tracking URI '{base}': the scheme must be http or https"
            )));
        }
        if !base.path().ends_with('/') {
            let path = format!("{}/", base.path());
            base.set_path(&path);
        }
        if rustls::crypto::CryptoProvider::get_default().is_none() {
            let _ = rustls::crypto::ring::default_provider().install_default();
        }
        let http = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .read_timeout(READ_TIMEOUT)
            .pool_idle_timeout(IDLE_CONNECTION)
            .build()
            .map_err(|e| unavailable(&base, &e))?;
        Ok(Client {
            http,
            base,
            auth,
            timeout: CALL_TIMEOUT,
            in_flight: std::sync::Arc::new(tokio::sync::Semaphore::new(IN_FLIGHT)),
        })
    }

    pub(crate) fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The server's address, as given.
    pub(crate) fn base(&self) -> &Url {
        &self.base
    }

    /// `base` + `path` (relative, `/`-separated segments percent-encoded one by one).
    pub(crate) fn url(&self, prefix: &str, path: &str) -> Url {
        let mut url = self.base.clone();
        if let Ok(mut segments) = url.path_segments_mut() {
            segments.pop_if_empty();
            segments.extend(prefix.split('/'));
            segments.extend(path.split('/').filter(|s| !s.is_empty()));
        }
        url
    }

    pub(crate) fn request(&self, method: Method, url: Url) -> reqwest::RequestBuilder {
        let builder = self.http.request(method, url);
        match &self.auth {
            Auth::None => builder,
            Auth::Bearer(token) => builder.bearer_auth(token),
            Auth::Basic(user, password) => builder.basic_auth(user, Some(password)),
        }
    }

    /// A REST call under `api/2.0/mlflow/`: GET with `query`, or another method with a
    /// JSON body. Returns the JSON answer.
    pub(crate) async fn call(
        &self,
        method: Method,
        endpoint: &str,
        query: &[(&str, &str)],
        body: Option<&Value>,
    ) -> Result<Value> {
        let mut url = self.url("api/2.0/mlflow", endpoint);
        if !query.is_empty() {
            url.query_pairs_mut().extend_pairs(query);
        }
        let build = || {
            let mut req = self
                .request(method.clone(), url.clone())
                .timeout(self.timeout);
            if let Some(body) = body {
                req = req
                    .header(reqwest::header::CONTENT_TYPE, "application/json")
                    .body(body.to_string());
            }
            req
        };
        let permit = self.in_flight.acquire().await;
        let response = match build().send().await {
            // A kept-alive connection the server closed as it was reused: a read is sent
            // again once on a fresh one. A write is not, since it may have arrived.
            Err(e) if method == Method::GET && !e.is_timeout() && !e.is_connect() => {
                build().send().await
            }
            other => other,
        }
        .map_err(|e| unavailable(&url, &e))?;
        if !response.status().is_success() {
            return Err(error_answer(endpoint, response).await);
        }
        let text = read_answer(endpoint, &url, response).await?;
        drop(permit);
        if text.trim().is_empty() {
            return Ok(Value::Object(Default::default()));
        }
        serde_json::from_str(&text).map_err(|e| {
            Error::Corrupt(format!(
                "MLflow answered {endpoint} with something that is not JSON ({e})"
            ))
        })
    }
}

/// A successful answer's body as text, refused past [`MAX_ANSWER`] bytes, whether the
/// server says so up front or keeps sending.
pub(crate) async fn read_answer(
    endpoint: &str,
    url: &Url,
    mut response: reqwest::Response,
) -> Result<String> {
    let status = response.status().as_u16();
    let too_large = || Error::Service {
        service: "MLflow".into(),
        status,
        message: format!(
            "{endpoint}: the answer is larger than {} MiB, more than this client reads; \
             a retry will not help",
            MAX_ANSWER >> 20
        ),
    };
    if response
        .content_length()
        .is_some_and(|n| n > MAX_ANSWER as u64)
    {
        return Err(too_large());
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(|e| unavailable(url, &e))? {
        if body.len() + chunk.len() > MAX_ANSWER {
            return Err(too_large());
        }
        body.extend_from_slice(&chunk);
    }
    String::from_utf8(body).map_err(|_| {
        Error::Corrupt(format!(
            "MLflow answered {endpoint} with text that is not UTF-8"
        ))
    })
}

/// A failed answer as our error. Its first [`ERROR_BODY`] bytes are read, as text
/// whatever their encoding (a proxy's error page, say), and a body that breaks off keeps
/// what came: the status decides the error's kind either way.
pub(crate) async fn error_answer(endpoint: &str, mut response: reqwest::Response) -> Error {
    let status = response.status();
    let mut body = Vec::new();
    while body.len() < ERROR_BODY {
        match response.chunk().await {
            Ok(Some(chunk)) => body.extend_from_slice(&chunk),
            Ok(None) | Err(_) => break,
        }
    }
    body.truncate(ERROR_BODY);
    error_from(endpoint, status, &String::from_utf8_lossy(&body))
}

/// A transport failure: the server is down, slow or unreachable; a retry may help.
pub(crate) fn unavailable(url: &Url, e: &reqwest::Error) -> Error {
    let what = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "cannot connect"
    } else {
        "transfer failed"
    };
    let mut reason = format!("{what}: {e}");
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        reason.push_str(&format!(": {s}"));
        source = s.source();
    }
    Error::Unavailable {
        service: format!("MLflow at {}", url.origin().ascii_serialization()),
        reason,
    }
}

/// MLflow's error answer (`{"error_code": ..., "message": ...}`) as our error.
pub(crate) fn error_from(endpoint: &str, status: StatusCode, body: &str) -> Error {
    let parsed: Option<Value> = serde_json::from_str(body).ok();
    let code = parsed
        .as_ref()
        .and_then(|v| v.get("error_code"))
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_owned();
    let message = parsed
        .as_ref()
        .and_then(|v| v.get("message"))
        .and_then(Value::as_str)
        .map(str::to_owned)
        .unwrap_or_else(|| body.chars().take(500).collect());
    match code.as_str() {
        "RESOURCE_DOES_NOT_EXIST" => Error::NotFound { what: message },
        "RESOURCE_ALREADY_EXISTS" => Error::AlreadyExists { what: message },
        "INVALID_PARAMETER_VALUE" | "INVALID_STATE" if status.is_client_error() => {
            Error::InvalidArgument(format!("MLflow: {message}"))
        }
        // A 404 without MLflow's error code is a path the server does not have (a wrong
        // URI prefix, an older server), not a missing model.
        _ if status.is_server_error()
            || status == StatusCode::TOO_MANY_REQUESTS
            || status == StatusCode::REQUEST_TIMEOUT =>
        {
            Error::Unavailable {
                service: "MLflow".into(),
                reason: format!("{endpoint} answered {status}: {message}"),
            }
        }
        _ => Error::Service {
            service: "MLflow".into(),
            status: status.as_u16(),
            message: format!("{endpoint}: {code} {message}"),
        },
    }
}
