//! A client that needs only a model id (feature `client`).
//!
//! [`Client::infer`] asks a [`ReplicaSource`] (the registry's endpoint directory) where
//! `name`, `name/7` or `name@production` is served, and sends the request over the Open
//! Inference Protocol's gRPC to one replica:
//!
//! - **balancing**: power of two choices on outstanding requests: two live replicas drawn
//!   at random, the less busy one gets the request;
//! - **retry**: inference is idempotent, so a request that fails for a reason another
//!   replica may not have (unreachable, shutting down, overloaded, model gone) is sent
//!   once more to a different replica; a request at fault (bad input) is not;
//! - **ejection**: a replica that is unreachable, shutting down or no longer serves the
//!   model is left out for [`ClientConfig::eject_for`]; an overloaded one stays in;
//! - **no live replica** is its own error, [`Error::NoReplica`], saying what was tried.
//!
//! Replica lists are cached per model id for [`ClientConfig::refresh`], and refreshed at
//! once when every cached replica is out.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mlops_core::{Replica, ReplicaSource, Tensor};
use tonic::Code;
use tonic::transport::{Channel, Endpoint};

use crate::error::{Error, Result};
use crate::grpc;
use crate::grpc::proto::grpc_inference_service_client::GrpcInferenceServiceClient;

/// How a [`Client`] behaves.
#[derive(Clone, Debug)]
pub struct ClientConfig {
    /// How long a model id's replica list is reused before asking the source again.
    pub refresh: Duration,
    /// How long a failing replica is left out.
    pub eject_for: Duration,
    /// The deadline of one attempt.
    pub timeout: Duration,
    /// How long connecting to a replica may take.
    pub connect_timeout: Duration,
    /// Attempts per request, each on a different replica (2: one retry).
    pub attempts: usize,
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            refresh: Duration::from_secs(5),
            eject_for: Duration::from_secs(10),
            timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(2),
            attempts: 2,
        }
    }
}

impl ClientConfig {
    /// Sets how long a replica list is reused.
    pub fn with_refresh(mut self, refresh: Duration) -> Self {
        self.refresh = refresh;
        self
    }

    /// Sets how long a failing replica is left out.
    pub fn with_eject_for(mut self, eject_for: Duration) -> Self {
        self.eject_for = eject_for;
        self
    }

    /// Sets the deadline of one attempt.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Sets how long connecting to a replica may take.
    pub fn with_connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Sets how many replicas a request may try (at least one).
    pub fn with_attempts(mut self, attempts: usize) -> Self {
        self.attempts = attempts.max(1);
        self
    }
}

/// One replica, with its connection and load.
#[derive(Debug)]
struct Target {
    replica: Replica,
    grpc: GrpcInferenceServiceClient<Channel>,
    outstanding: AtomicUsize,
    ejected_until: Mutex<Option<Instant>>,
}

impl Target {
    fn is_out(&self, now: Instant) -> bool {
        self.ejected_until
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_some_and(|until| now < until)
    }

    fn eject(&self, for_: Duration) {
        tracing::warn!(
            replica = %self.replica.address,
            model = %self.replica.model,
            for_s = for_.as_secs_f64(),
            "replica ejected"
        );
        *self.ejected_until.lock().unwrap_or_else(|p| p.into_inner()) = Some(Instant::now() + for_);
    }

    /// Until when it is left out; `None` (never ejected) sorts first.
    fn ejected_at(&self) -> Option<Instant> {
        *self.ejected_until.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Counts one request in flight on a replica until dropped.
struct Outstanding<'a>(&'a AtomicUsize);

impl<'a> Outstanding<'a> {
    fn new(counter: &'a AtomicUsize) -> Self {
        counter.fetch_add(1, Ordering::Relaxed);
        Outstanding(counter)
    }
}

impl Drop for Outstanding<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// What a failed attempt says about its replica.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Failure {
    /// The request itself is at fault (bad input, a model that fails on it): no other
    /// replica would do better.
    Permanent,
    /// The replica is overloaded: another may take it; this one stays in.
    Busy,
    /// The replica is unreachable, stopping, or no longer serves the model.
    Down,
}

struct Attempt {
    error: Error,
    kind: Failure,
}

/// A replica's identity: address, model name, version.
type TargetKey = (String, String, Option<u64>);

struct Cached {
    at: Instant,
    targets: Vec<Arc<Target>>,
}

/// Infers by model id across the replicas a [`ReplicaSource`] lists. Cheap to share
/// (`Arc`); safe to call concurrently.
pub struct Client {
    source: Arc<dyn ReplicaSource>,
    config: ClientConfig,
    cache: Mutex<HashMap<String, Cached>>,
    // One connection per replica (address, model, version), shared by the model ids that
    // resolve to it.
    targets: Mutex<HashMap<TargetKey, Arc<Target>>>,
    seed: AtomicU64,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl Client {
    /// A client over `source` (a `mlops_registry::Registry`, say).
    pub fn new(source: Arc<dyn ReplicaSource>, config: ClientConfig) -> Self {
        Client {
            source,
            config,
            cache: Mutex::new(HashMap::new()),
            targets: Mutex::new(HashMap::new()),
            // Different per client, so that a fleet of clients does not draw alike.
            seed: AtomicU64::new(
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_nanos() as u64),
            ),
        }
    }

    /// One model id through this client, as an [`mlops_core::Infer`]: what a registry's
    /// validation or a profiler drives, so they can run against remote replicas.
    pub fn model(self: &Arc<Self>, model_id: impl Into<String>) -> RemoteModel {
        RemoteModel {
            client: Arc::clone(self),
            model_id: model_id.into(),
        }
    }

    /// Runs `inputs` on a replica of `model_id` and returns its outputs.
    pub async fn infer(&self, model_id: &str, inputs: Vec<Tensor>) -> Result<Vec<Tensor>> {
        let mut tried: Vec<String> = Vec::new();
        let mut failures: Vec<String> = Vec::new();
        let mut listed = 0;
        for attempt in 0..self.config.attempts.max(1) {
            let targets = self.targets_for(model_id, attempt > 0).await?;
            listed = targets.len();
            let now = Instant::now();
            let untried: Vec<&Arc<Target>> = targets
                .iter()
                .filter(|t| !tried.contains(&t.replica.address))
                .collect();
            let live: Vec<&Arc<Target>> =
                untried.iter().copied().filter(|t| !t.is_out(now)).collect();
            // Every replica left out: rather than refuse for the whole ejection time, try the
            // one that has been out longest (it may be back).
            let target = match self.pick(&live) {
                Some(t) => t,
                None => match untried.iter().min_by_key(|t| t.ejected_at()) {
                    Some(t) => *t,
                    None => break,
                },
            };
            tried.push(target.replica.address.clone());
            let answer = {
                // Counted down however the attempt ends, a dropped caller included.
                let _outstanding = Outstanding::new(&target.outstanding);
                self.call(target, model_id, &inputs).await
            };
            match answer {
                Ok(outputs) => return Ok(outputs),
                Err(failure) => {
                    let error = failure.error;
                    match failure.kind {
                        Failure::Permanent => return Err(error),
                        // The replica is fine, only busy: try another, keep this one.
                        Failure::Busy => {}
                        // The replica is gone or broken: leave it out for a while.
                        Failure::Down => target.eject(self.config.eject_for),
                    }
                    failures.push(error.to_string());
                }
            }
        }
        let reason = if !failures.is_empty() {
            failures.join("; ")
        } else if listed == 0 {
            "the directory lists no gRPC replica".to_owned()
        } else {
            format!(
                "all {listed} listed replicas failed within the last {:?}",
                self.config.eject_for
            )
        };
        Err(Error::NoReplica {
            model: model_id.to_owned(),
            reason,
        })
    }

    /// Power of two choices: two distinct live replicas at random, the less busy wins.
    fn pick<'a>(&self, live: &[&'a Arc<Target>]) -> Option<&'a Arc<Target>> {
        match live.len() {
            0 => None,
            1 => Some(live[0]),
            n => {
                let r = self.next_random();
                let a = (r % n as u64) as usize;
                let b = (a + 1 + ((r >> 32) % (n as u64 - 1)) as usize) % n;
                let (x, y) = (live[a], live[b]);
                Some(
                    if y.outstanding.load(Ordering::Relaxed) < x.outstanding.load(Ordering::Relaxed)
                    {
                        y
                    } else {
                        x
                    },
                )
            }
        }
    }

    fn next_random(&self) -> u64 {
        // xorshift64*: enough to spread load, and no dependency.
        let mut x = self
            .seed
            .fetch_add(0x9e37_79b9_7f4a_7c15, Ordering::Relaxed);
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// The model id's replicas speaking gRPC, from the cache unless it is stale, empty,
    /// or `refresh` asks for a fresh list and every cached one is out.
    async fn targets_for(&self, model_id: &str, refresh: bool) -> Result<Vec<Arc<Target>>> {
        let now = Instant::now();
        {
            let cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(c) = cache.get(model_id) {
                let fresh = now.duration_since(c.at) < self.config.refresh;
                let usable = c.targets.iter().any(|t| !t.is_out(now));
                if fresh && !c.targets.is_empty() && (!refresh || usable) {
                    return Ok(c.targets.clone());
                }
            }
        }
        let replicas = match self.source.replicas(model_id).await {
            Ok(r) => r,
            Err(e) => {
                // The directory is unreachable: a stale list beats none.
                let cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
                if let Some(c) = cache.get(model_id).filter(|c| !c.targets.is_empty()) {
                    return Ok(c.targets.clone());
                }
                return Err(Error::NoReplica {
                    model: model_id.to_owned(),
                    reason: format!("cannot list replicas: {e}"),
                });
            }
        };
        let mut targets = Vec::new();
        for r in replicas.into_iter().filter(|r| r.protocol == "oip_grpc") {
            targets.push(self.target(r)?);
        }
        self.cache.lock().unwrap_or_else(|p| p.into_inner()).insert(
            model_id.to_owned(),
            Cached {
                at: now,
                targets: targets.clone(),
            },
        );
        Ok(targets)
    }

    fn target(&self, replica: Replica) -> Result<Arc<Target>> {
        let key = (
            replica.address.clone(),
            replica.model.clone(),
            replica.version,
        );
        let mut targets = self.targets.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(t) = targets.get(&key) {
            return Ok(t.clone());
        }
        let endpoint = Endpoint::from_shared(format!("http://{}", replica.address))
            .map_err(|e| Error::NoReplica {
                model: replica.model.clone(),
                reason: format!("bad address '{}': {e}", replica.address),
            })?
            .connect_timeout(self.config.connect_timeout)
            .timeout(self.config.timeout)
            .tcp_nodelay(true);
        let grpc = GrpcInferenceServiceClient::new(endpoint.connect_lazy())
            .max_decoding_message_size(crate::grpc::DEFAULT_MAX_MESSAGE_BYTES)
            .max_encoding_message_size(crate::grpc::DEFAULT_MAX_MESSAGE_BYTES);
        let t = Arc::new(Target {
            replica,
            grpc,
            outstanding: AtomicUsize::new(0),
            ejected_until: Mutex::new(None),
        });
        targets.insert(key, t.clone());
        Ok(t)
    }

    /// One attempt; on failure, the error and what it says about the replica.
    async fn call(
        &self,
        target: &Target,
        model_id: &str,
        inputs: &[Tensor],
    ) -> std::result::Result<Vec<Tensor>, Attempt> {
        let request = grpc::infer_request(&target.replica.model, target.replica.version, inputs);
        let mut grpc = target.grpc.clone();
        let response = match grpc.model_infer(request).await {
            Ok(r) => r.into_inner(),
            Err(status) => {
                let kind = match status.code() {
                    Code::ResourceExhausted => Failure::Busy,
                    // Transport failures surface as Unavailable or Unknown; NotFound means
                    // the directory's entry is stale.
                    Code::Unavailable | Code::Unknown | Code::Cancelled | Code::NotFound => {
                        Failure::Down
                    }
                    _ => Failure::Permanent,
                };
                let error = Error::Remote {
                    model: model_id.to_owned(),
                    address: target.replica.address.clone(),
                    code: grpc::code_of(status.code()),
                    message: status.message().to_owned(),
                };
                return Err(Attempt { error, kind });
            }
        };
        grpc::response_outputs(response).map_err(|why| Attempt {
            error: Error::Remote {
                model: model_id.to_owned(),
                address: target.replica.address.clone(),
                code: crate::Code::Unknown,
                message: why,
            },
            kind: Failure::Permanent,
        })
    }
}

/// A model id served by remote replicas, through a [`Client`] ([`Client::model`]).
#[derive(Clone, Debug)]
pub struct RemoteModel {
    client: Arc<Client>,
    model_id: String,
}

impl RemoteModel {
    /// The model id it asks for (`mlp@production`).
    pub fn model_id(&self) -> &str {
        &self.model_id
    }
}

impl mlops_core::Infer for RemoteModel {
    fn infer(&self, inputs: Vec<Tensor>) -> mlops_core::InferFuture<'_> {
        Box::pin(async move {
            self.client
                .infer(&self.model_id, inputs)
                .await
                .map_err(|e| Box::new(e) as mlops_core::BoxError)
        })
    }
}
