//! Metrics from our servers' Prometheus endpoints (Triton's `nv_inference_*` names).

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::{MetricsSource, lock};
use crate::error::{Error, Result};
use crate::policy::Metrics;

/// The largest metrics page read (a server with many models writes a few hundred KiB).
const MAX_PAGE_BYTES: usize = 8 << 20;

/// One model's counters summed over the endpoints (and its versions), at one scrape.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Totals {
    /// Requests answered, successes and failures (`nv_inference_request_success` +
    /// `nv_inference_request_failure`).
    pub requests: f64,
    /// Cumulative time requests spent in the server, in microseconds
    /// (`nv_inference_request_duration_us`).
    pub request_duration_us: f64,
    /// Requests waiting now (`nv_inference_pending_request_count`).
    pub pending: f64,
    /// The servers that answered.
    pub endpoints: u32,
    /// CPU seconds the server process has used (`process_cpu_seconds`), where it says.
    pub cpu_seconds: Option<f64>,
    /// The mean utilisation of the server's GPUs, 0 to 1 (Triton's `nv_gpu_utilization`),
    /// where it says.
    pub gpu_utilization: Option<f64>,
}

impl Totals {
    /// The metrics between an earlier scrape and this one, `elapsed` apart: the request
    /// rate, and the mean requests in the server (their time in it per second, by
    /// Little's law). A counter that went down (a reloaded model starts from zero) counts
    /// from zero, as Prometheus' `rate()` does. The counters give no percentile, so
    /// `latency_ms` is left out.
    pub fn since(&self, earlier: &Totals, elapsed: Duration) -> Metrics {
        let dt = elapsed.as_secs_f64().max(1e-9);
        let delta = |now: f64, then: f64| if now >= then { now - then } else { now };
        Metrics {
            at: Duration::ZERO,
            window: elapsed,
            request_rate_rps: Some(delta(self.requests, earlier.requests) / dt),
            in_flight: Some(
                delta(self.request_duration_us, earlier.request_duration_us) / 1e6 / dt,
            ),
            queue_depth: Some(self.pending),
            latency_ms: None,
            utilization: Vec::new(),
        }
    }
}

/// Reads one model's figures from the `/metrics` pages of the servers that serve it, and
/// turns two scrapes into rates. Every endpoint must answer: a scrape with one down fails
/// (the controller then holds on the last metrics) rather than under-count the demand.
///
/// A URL written `dns+http://name:port/metrics` is resolved at every scrape and each
/// address it names is read: a Kubernetes headless Service lists every ready pod that
/// way, so the sum follows the pods as they come and go.
#[derive(Debug)]
pub struct PrometheusSource {
    urls: Vec<Endpoint>,
    model: String,
    timeout: Duration,
    previous: Mutex<Option<(Instant, BTreeMap<String, Totals>)>>,
    endpoints: std::sync::atomic::AtomicU32,
    cpu_cores: Option<f64>,
}

#[derive(Clone, Debug)]
struct Endpoint {
    url: String,
    host: String,
    port: u16,
    path: String,
    /// Read every address the host resolves to.
    resolve: bool,
}

fn parse_url(url: &str) -> Result<Endpoint> {
    let bad = |reason: &str| Error::InvalidConfig {
        what: "metrics url",
        reason: format!("'{url}': {reason}"),
    };
    let (resolve, rest) = match url.strip_prefix("dns+") {
        Some(rest) => (true, rest),
        None => (false, url),
    };
    let rest = rest
        .strip_prefix("http://")
        .ok_or_else(|| bad("only http:// (or dns+http://) is read"))?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/metrics"),
    };
    let (host, port) = match authority.rsplit_once(':') {
        Some((h, p)) => (
            h,
            p.parse::<u16>()
                .map_err(|_| bad("the port is not a number"))?,
        ),
        None => (authority, 80),
    };
    if host.is_empty() {
        return Err(bad("no host"));
    }
    Ok(Endpoint {
        url: url.to_string(),
        host: host.to_string(),
        port,
        path: path.to_string(),
        resolve,
    })
}

/// The samples of an exposition page: `name{labels} value`, comments skipped.
pub(crate) fn parse_page(text: &str) -> Vec<(String, BTreeMap<String, String>, f64)> {
    let mut out = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (series, value) = match line.find('}') {
            Some(end) => (&line[..=end], line[end + 1..].trim()),
            None => match line.split_once(char::is_whitespace) {
                Some((s, v)) => (s, v.trim()),
                None => continue,
            },
        };
        let Some(value) = value
            .split_whitespace()
            .next()
            .and_then(|v| v.parse::<f64>().ok())
        else {
            continue;
        };
        let (name, labels) = match series.split_once('{') {
            Some((name, labels)) => {
                let labels = labels.trim_end_matches('}');
                let map = labels
                    .split(',')
                    .filter_map(|kv| {
                        let (k, v) = kv.split_once('=')?;
                        Some((k.trim().to_string(), v.trim().trim_matches('"').to_string()))
                    })
                    .collect();
                (name, map)
            }
            None => (series, BTreeMap::new()),
        };
        out.push((name.to_string(), labels, value));
    }
    out
}

impl PrometheusSource {
    /// A source for `model` over these metrics URLs (`http://host:port/metrics`; a URL
    /// without a path reads `/metrics`).
    pub fn new<I, U>(urls: I, model: impl Into<String>) -> Result<Self>
    where
        I: IntoIterator<Item = U>,
        U: AsRef<str>,
    {
        let urls: Vec<Endpoint> = urls
            .into_iter()
            .map(|u| parse_url(u.as_ref()))
            .collect::<Result<_>>()?;
        if urls.is_empty() {
            return Err(Error::InvalidConfig {
                what: "metrics url",
                reason: "at least one is needed".to_string(),
            });
        }
        Ok(PrometheusSource {
            urls,
            model: model.into(),
            timeout: Duration::from_secs(2),
            previous: Mutex::new(None),
            endpoints: std::sync::atomic::AtomicU32::new(u32::MAX),
            cpu_cores: None,
        })
    }

    /// The cores each server is given (a profile's `cpu_cores`): a server without GPU
    /// figures then reports its CPU use over them as its utilisation, for the policies
    /// that scale on it.
    pub fn with_cpu_cores(mut self, cores: f64) -> Self {
        self.cpu_cores = Some(cores).filter(|c| c.is_finite() && *c > 0.0);
        self
    }

    /// The same with another timeout per endpoint (default 2 s).
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The addresses to read for an endpoint: every one its name resolves to, or the name
    /// itself.
    async fn addresses(&self, endpoint: &Endpoint) -> Result<Vec<String>> {
        let plain = format!("{}:{}", endpoint.host, endpoint.port);
        if !endpoint.resolve {
            return Ok(vec![plain]);
        }
        let lookup = tokio::net::lookup_host(plain.as_str());
        let found = tokio::time::timeout(self.timeout, lookup)
            .await
            .map_err(|_| Error::Metrics {
                source_name: endpoint.url.clone(),
                reason: format!(
                    "{} did not resolve within {:?}",
                    endpoint.host, self.timeout
                ),
            })?;
        // A name that does not resolve fails the scrape (the size holds) rather than
        // read as no server and no demand: a DNS hiccup must not scale anything down.
        let mut addresses: Vec<String> = found
            .map_err(|e| Error::Metrics {
                source_name: endpoint.url.clone(),
                reason: format!("cannot resolve {}: {e}", endpoint.host),
            })?
            .map(|a| a.to_string())
            .collect();
        addresses.sort();
        addresses.dedup();
        Ok(addresses)
    }

    async fn page(&self, endpoint: &Endpoint, address: &str) -> Result<String> {
        let failed = |reason: String| Error::Metrics {
            source_name: if endpoint.resolve {
                format!("{} ({address})", endpoint.url)
            } else {
                endpoint.url.clone()
            },
            reason,
        };
        let fetch = async {
            let mut stream = tokio::net::TcpStream::connect(address)
                .await
                .map_err(|e| failed(format!("connect: {e}")))?;
            let request = format!(
                "GET {} HTTP/1.1\r\nHost: {}:{}\r\nAccept: text/plain\r\nConnection: close\r\n\r\n",
                endpoint.path, endpoint.host, endpoint.port
            );
            stream
                .write_all(request.as_bytes())
                .await
                .map_err(|e| failed(format!("write: {e}")))?;
            let mut body = Vec::new();
            let mut chunk = [0u8; 16 * 1024];
            loop {
                let n = stream
                    .read(&mut chunk)
                    .await
                    .map_err(|e| failed(format!("read: {e}")))?;
                if n == 0 {
                    break;
                }
                body.extend_from_slice(&chunk[..n]);
                if body.len() > MAX_PAGE_BYTES {
                    return Err(failed(format!("the page is over {MAX_PAGE_BYTES} bytes")));
                }
            }
            Ok::<Vec<u8>, Error>(body)
        };
        let raw = tokio::time::timeout(self.timeout, fetch)
            .await
            .map_err(|_| failed(format!("no answer within {:?}", self.timeout)))??;
        let Some(split) = raw.windows(4).position(|w| w == b"\r\n\r\n") else {
            return Err(failed("not an HTTP response".to_string()));
        };
        let head = String::from_utf8_lossy(&raw[..split]);
        let body = &raw[split + 4..];
        let status = head.lines().next().unwrap_or_default();
        if !status.contains(" 200") {
            return Err(failed(format!("answered '{status}'")));
        }
        let chunked = head
            .to_ascii_lowercase()
            .contains("transfer-encoding: chunked");
        // Joined as bytes, then read as text: a chunk may end inside a character.
        let body = if chunked {
            dechunk(body)
        } else {
            body.to_vec()
        };
        Ok(String::from_utf8_lossy(&body).into_owned())
    }

    /// The model's counters now, summed over every endpoint and version; the CPU seconds
    /// summed where every server gives them, the GPU utilisation the mean of those that do.
    pub async fn totals(&self) -> Result<Totals> {
        let by_server = self.totals_by_server().await?;
        let mut sum = Totals {
            endpoints: u32::try_from(by_server.len()).unwrap_or(u32::MAX),
            cpu_seconds: Some(0.0),
            ..Totals::default()
        };
        let mut gpus = Vec::new();
        for t in by_server.values() {
            sum.requests += t.requests;
            sum.request_duration_us += t.request_duration_us;
            sum.pending += t.pending;
            sum.cpu_seconds = sum.cpu_seconds.zip(t.cpu_seconds).map(|(a, b)| a + b);
            gpus.extend(t.gpu_utilization);
        }
        if by_server.is_empty() {
            sum.cpu_seconds = None;
        }
        if !gpus.is_empty() {
            sum.gpu_utilization = Some(gpus.iter().sum::<f64>() / gpus.len() as f64);
        }
        Ok(sum)
    }

    /// The model's counters at each server that answered, by address.
    async fn totals_by_server(&self) -> Result<BTreeMap<String, Totals>> {
        let mut pages = Vec::new();
        for endpoint in &self.urls {
            for address in self.addresses(endpoint).await? {
                let page = self.page(endpoint, &address).await?;
                // By URL and address: two URLs naming one server stay two entries, as
                // they are two reads.
                pages.push((format!("{} {address}", endpoint.url), page));
            }
        }
        self.endpoints.store(
            u32::try_from(pages.len()).unwrap_or(u32::MAX),
            std::sync::atomic::Ordering::Relaxed,
        );
        let mut out = BTreeMap::new();
        let mut seen = false;
        for (address, page) in &pages {
            let mut totals = Totals {
                endpoints: 1,
                ..Totals::default()
            };
            let (mut gpus, mut cpu, mut cpu_total) = (Vec::new(), None, None);
            for (name, labels, value) in parse_page(page) {
                // Process and GPU figures belong to the server, not to a model.
                match name.as_str() {
                    // Our servers write the exact figure as a gauge beside the counter.
                    "process_cpu_seconds" => cpu = Some(value),
                    "process_cpu_seconds_total" => cpu_total = Some(value),
                    "nv_gpu_utilization" => gpus.push(value),
                    _ => {}
                }
                if labels.get("model").map(String::as_str) != Some(self.model.as_str()) {
                    continue;
                }
                seen = true;
                match name.as_str() {
                    "nv_inference_request_success" | "nv_inference_request_failure" => {
                        totals.requests += value
                    }
                    "nv_inference_request_duration_us" => totals.request_duration_us += value,
                    "nv_inference_pending_request_count" => totals.pending += value,
                    _ => {}
                }
            }
            totals.cpu_seconds = cpu.or(cpu_total);
            if !gpus.is_empty() {
                totals.gpu_utilization = Some(gpus.iter().sum::<f64>() / gpus.len() as f64);
            }
            out.insert(address.clone(), totals);
        }
        if !seen {
            return Err(Error::Metrics {
                source_name: self.name(),
                reason: format!("no series for model '{}'", self.model),
            });
        }
        Ok(out)
    }
}

/// The body of a chunked transfer, joined; a malformed one is cut where it breaks.
fn dechunk(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut rest = body;
    while let Some(line_end) = rest.windows(2).position(|w| w == b"\r\n") {
        let size = String::from_utf8_lossy(&rest[..line_end]);
        // A size may carry extensions after a ';'.
        let size = size.split(';').next().unwrap_or_default().trim();
        let Ok(n) = usize::from_str_radix(size, 16) else {
            break;
        };
        let after = &rest[line_end + 2..];
        if n == 0 || after.len() < n {
            break;
        }
        out.extend_from_slice(&after[..n]);
        rest = &after[n..];
        if rest.starts_with(b"\r\n") {
            rest = &rest[2..];
        }
    }
    out
}

#[async_trait]
impl MetricsSource for PrometheusSource {
    fn name(&self) -> String {
        let urls: Vec<&str> = self.urls.iter().map(|e| e.url.as_str()).collect();
        format!("prometheus {} ({})", self.model, urls.join(", "))
    }

    /// The rates since the previous scrape; the first scrape has only the queue. `at` is
    /// left at zero: the [`Controller`](super::Controller) stamps it with its own clock.
    ///
    /// Rates are taken per server and summed, as Prometheus' `sum(rate(…))`: a server that
    /// left takes its counters with it without looking like a reset of the others, and
    /// one that joined counts from its second scrape.
    async fn scrape(&self) -> Result<Metrics> {
        let now_totals = self.totals_by_server().await?;
        let now = Instant::now();
        let previous = lock(&self.previous).replace((now, now_totals.clone()));
        let pending: f64 = now_totals.values().map(|t| t.pending).sum();
        let Some((then, earlier)) = previous else {
            return Ok(Metrics {
                queue_depth: Some(pending),
                ..Metrics::default()
            });
        };
        let elapsed = now.duration_since(then);
        let mut metrics = Metrics {
            window: elapsed,
            request_rate_rps: Some(0.0),
            in_flight: Some(0.0),
            queue_depth: Some(pending),
            ..Metrics::default()
        };
        for (address, totals) in &now_totals {
            // A server not read last time counts from this scrape on (a rate needs two
            // samples): its whole history must not land in one window.
            let Some(base) = earlier.get(address).copied() else {
                metrics.utilization.extend(totals.gpu_utilization);
                continue;
            };
            let part = totals.since(&base, elapsed);
            let add = |a: &mut Option<f64>, b: Option<f64>| {
                *a = Some(a.unwrap_or(0.0) + b.unwrap_or(0.0))
            };
            add(&mut metrics.request_rate_rps, part.request_rate_rps);
            add(&mut metrics.in_flight, part.in_flight);
            // Utilisation per server: its GPUs where it reports them, else its CPU use
            // over the cores it was given.
            let cpu = match (totals.cpu_seconds, base.cpu_seconds, self.cpu_cores) {
                (Some(now), Some(then), Some(cores)) if now >= then && elapsed > Duration::ZERO => {
                    Some((now - then) / elapsed.as_secs_f64() / cores)
                }
                _ => None,
            };
            if let Some(u) = totals.gpu_utilization.or(cpu) {
                metrics.utilization.push(u);
            }
        }
        Ok(metrics)
    }

    fn replicas_seen(&self) -> Option<u32> {
        // None until a scrape has read the servers.
        Some(self.endpoints.load(std::sync::atomic::Ordering::Relaxed)).filter(|n| *n != u32::MAX)
    }
}
