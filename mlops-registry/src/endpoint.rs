//! The endpoint directory: where each model is being served, kept fresh by leases.
//!
//! An inference server registers each model it serves with a lease and renews it by
//! heartbeat; when the server dies, its leases expire and callers stop seeing it. A client
//! asks for the live endpoints of a model id (see [`crate::Registry::endpoints_for`]).

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};
use crate::model::check_name;

/// The wire protocol an endpoint speaks.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Protocol {
    /// Open Inference Protocol (KServe V2) over HTTP/REST.
    OipHttp,
    /// Open Inference Protocol (KServe V2) over gRPC.
    OipGrpc,
    /// Anything else, by name.
    Other(String),
}

impl Protocol {
    /// The stored name: `oip_http`, `oip_grpc`, or the other protocol's name.
    pub fn as_str(&self) -> &str {
        match self {
            Protocol::OipHttp => "oip_http",
            Protocol::OipGrpc => "oip_grpc",
            Protocol::Other(name) => name,
        }
    }

    /// Parses [`as_str`](Self::as_str)'s names.
    pub fn parse(s: &str) -> Self {
        match s {
            "oip_http" => Protocol::OipHttp,
            "oip_grpc" => Protocol::OipGrpc,
            other => Protocol::Other(other.to_owned()),
        }
    }
}

/// One model served at one address.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Endpoint {
    /// The registered model's name.
    pub model: String,
    /// The version served; `None` for a server that follows an alias and does not say.
    pub version: Option<u64>,
    /// Where: `host:port` or a URL.
    pub address: String,
    /// How to talk to it.
    pub protocol: Protocol,
    /// How many requests per second it can take at its latency target (from a profile),
    /// for balancing and autoscaling; `None` if unknown.
    pub capacity: Option<f64>,
    /// Free labels: zone, accelerator, replica name.
    pub labels: BTreeMap<String, String>,
}

impl Endpoint {
    /// `model` version `version` served at `address` over `protocol`.
    pub fn new(
        model: impl Into<String>,
        version: Option<u64>,
        address: impl Into<String>,
        protocol: Protocol,
    ) -> Self {
        Endpoint {
            model: model.into(),
            version,
            address: address.into(),
            protocol,
            capacity: None,
            labels: BTreeMap::new(),
        }
    }

    /// Sets the capacity in requests per second.
    pub fn with_capacity(mut self, requests_per_second: f64) -> Self {
        self.capacity = Some(requests_per_second);
        self
    }

    /// Adds a label.
    pub fn with_label(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.labels.insert(key.into(), value.into());
        self
    }

    pub(crate) fn validate(&self) -> Result<()> {
        check_name(&self.model)?;
        if self.address.is_empty() || self.address.len() > 2048 {
            return Err(Error::invalid("an endpoint address has 1 to 2048 bytes"));
        }
        if self.version == Some(0) {
            return Err(Error::invalid("versions start at 1"));
        }
        if let Some(c) = self.capacity
            && !(c.is_finite() && c >= 0.0)
        {
            return Err(Error::invalid(format!(
                "capacity {c} is not a finite, non-negative rate"
            )));
        }
        for k in self.labels.keys() {
            crate::model::check_key(k)?;
        }
        Ok(())
    }

    /// Whether this endpoint serves `model` (any version when `version` is `None`).
    pub fn serves(&self, model: &str, version: Option<u64>) -> bool {
        self.model == model && version.is_none_or(|v| self.version == Some(v))
    }
}

/// A registration's handle: renew it before `expires_at` or the endpoint drops out.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    /// Opaque and unique.
    pub id: String,
    /// When the endpoint stops being listed unless renewed.
    pub expires_at: DateTime<Utc>,
}

/// A registered endpoint whose lease has not expired.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LiveEndpoint {
    /// Its lease.
    pub lease: Lease,
    /// What and where.
    pub endpoint: Endpoint,
    /// When it was registered.
    pub registered_at: DateTime<Utc>,
}

/// Where models are served. Every backend passes the same conformance suite.
///
/// Expiry uses the clock of the process that calls: machines sharing a PostgreSQL
/// directory should keep their clocks in sync (NTP) to well under the lease time.
#[async_trait]
pub trait EndpointDirectory: Send + Sync + Debug {
    /// Lists `endpoint` for `ttl`.
    async fn register_endpoint(&self, endpoint: &Endpoint, ttl: Duration) -> Result<Lease>;

    /// Extends a live lease to `ttl` from now. [`Error::NotFound`] once it has expired or
    /// been deregistered: register again.
    async fn renew(&self, lease_id: &str, ttl: Duration) -> Result<Lease>;

    /// Removes an endpoint now (a graceful shutdown).
    async fn deregister(&self, lease_id: &str) -> Result<()>;

    /// The live endpoints of `model` (of one version, when given), oldest registration
    /// first.
    async fn endpoints(&self, model: &str, version: Option<u64>) -> Result<Vec<LiveEndpoint>>;
}

pub(crate) fn lease_not_found(id: &str) -> Error {
    Error::not_found(format!("lease '{id}' (expired or deregistered)"))
}

pub(crate) fn sort_endpoints(list: &mut [LiveEndpoint]) {
    list.sort_by(|a, b| {
        a.registered_at
            .cmp(&b.registered_at)
            .then_with(|| a.lease.id.cmp(&b.lease.id))
    });
}

/// 32 hex digits, unique across processes and machines: a digest of the time, the process,
/// a counter and a stack address.
pub(crate) fn new_lease_id() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut h = Sha256::new();
    let local = 0u8;
    h.update(
        Utc::now()
            .timestamp_nanos_opt()
            .unwrap_or_default()
            .to_le_bytes(),
    );
    h.update(std::process::id().to_le_bytes());
    h.update(COUNTER.fetch_add(1, Ordering::Relaxed).to_le_bytes());
    h.update((&local as *const u8 as usize).to_le_bytes());
    static MACHINE: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    h.update(
        MACHINE
            .get_or_init(|| std::fs::read_to_string("/etc/machine-id").unwrap_or_default())
            .as_bytes(),
    );
    hex::encode(&h.finalize()[..16])
}
