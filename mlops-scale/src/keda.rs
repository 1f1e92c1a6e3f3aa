//! KEDA's external scaler (feature `keda`): the gRPC service `externalscaler.ExternalScaler`
//! that KEDA calls for a ScaledObject whose trigger is `type: external`.
//!
//! For each model it scales, the service runs a policy (the capacity policy, built from
//! the model's profile) on live metrics of its servers, at the policy's period whether or
//! not KEDA asks, and answers:
//!
//! - `GetMetricSpec`: one metric, [`METRIC`] (`replicas`), with a target of 1 per pod;
//! - `GetMetrics`: the replicas the policy wants, so the HPA that KEDA creates (desired =
//!   ceil(value / target)) sets exactly that count. The policy's own windows and hold on
//!   stale metrics apply; the ScaledObject should turn the HPA's stabilisation off (the
//!   generated one does, see [`manifests`](crate::manifests));
//! - `IsActive` / `StreamIsActive`: true, unless the trigger's metadata asks for scale to
//!   zero with `idleAfterSeconds`: then false once no request has arrived or waited for
//!   that long (a failed scrape counts as activity: it shows nothing either way).
//!
//! The trigger's metadata key `model` names the model (default: the service's default
//! model). An unknown model or metric is a `NOT_FOUND` naming it; malformed metadata an
//! `INVALID_ARGUMENT`.
//!
//! Scale from zero: with no pod, no server exposes metrics, so the demand that should wake
//! the model is not seen here. Scale to zero is therefore only safe with a queue in front
//! that holds requests while no pod runs (KEDA's HTTP add-on interceptor, or Knative's
//! activator through the generated Knative Service); without one, leave
//! `idleAfterSeconds` out and `minReplicaCount` at 1, as the generated ScaledObject does.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use tonic::{Request, Response, Status};

use crate::error::{Error, Result};
use crate::policy::{Decision, Policy, PolicyConfig};
use crate::scaler::{Controller, ControllerConfig, MetricsSource, ReplicaState, Scaler};

/// The code tonic generated from `proto/externalscaler.proto`: messages, the server trait
/// and a client.
#[allow(missing_docs, unreachable_pub, clippy::all, clippy::pedantic)]
pub mod proto {
    tonic::include_proto!("externalscaler");
}

use proto::external_scaler_server::{ExternalScaler, ExternalScalerServer};
use proto::{
    GetMetricSpecResponse, GetMetricsRequest, GetMetricsResponse, IsActiveResponse, MetricSpec,
    MetricValue, ScaledObjectRef,
};

/// The one metric the service offers: the replicas the policy wants, targeted at 1 per pod.
pub const METRIC: &str = "replicas";

/// The trigger metadata key that names the model.
pub const MODEL_KEY: &str = "model";

/// The trigger metadata key that asks for scale to zero after this many idle seconds.
pub const IDLE_KEY: &str = "idleAfterSeconds";

/// What the HPA is told: the count the service last answered, and the servers it saw.
struct Reported {
    source: Arc<dyn MetricsSource>,
    state: Mutex<u32>,
}

#[async_trait]
impl Scaler for Reported {
    fn name(&self) -> String {
        "keda".to_string()
    }

    async fn state(&self) -> Result<ReplicaState> {
        let desired = *crate::scaler::lock(&self.state);
        // The pods the HPA runs are the servers scraped; before the first scrape (or with
        // a source that does not count them) assume it follows the answer.
        let ready = self.source.replicas_seen().unwrap_or(desired);
        Ok(ReplicaState {
            desired,
            ready,
            starting: desired.saturating_sub(ready),
        })
    }

    async fn set_replicas(&self, replicas: u32) -> Result<()> {
        *crate::scaler::lock(&self.state) = replicas;
        Ok(())
    }
}

type ModelController = Controller<Box<dyn Policy>, Arc<dyn MetricsSource>, Arc<Reported>>;

struct Tracked {
    model: String,
    period: Duration,
    controller: tokio::sync::Mutex<ModelController>,
    reported: Arc<Reported>,
    latest: Mutex<Latest>,
    /// When it was last stepped, on `update`'s clock.
    last_step: Mutex<Option<Duration>>,
}

#[derive(Default)]
struct Latest {
    decision: Option<Decision>,
    /// When a request last arrived or waited.
    last_demand: Option<Instant>,
}

/// The external scaler's state: the models it scales and their latest answers. Cheap to
/// clone (one shared state).
#[derive(Clone)]
pub struct KedaScaler {
    models: Arc<BTreeMap<String, Arc<Tracked>>>,
    default_model: Option<String>,
    started: Instant,
}

impl std::fmt::Debug for KedaScaler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KedaScaler")
            .field("models", &self.models.keys().collect::<Vec<_>>())
            .field("default_model", &self.default_model)
            .finish()
    }
}

impl Default for KedaScaler {
    fn default() -> Self {
        KedaScaler::new()
    }
}

impl KedaScaler {
    /// A service that scales nothing yet.
    pub fn new() -> Self {
        KedaScaler {
            models: Arc::new(BTreeMap::new()),
            default_model: None,
            started: Instant::now(),
        }
    }

    /// Scales `model` with `policy` (its bounds included) on metrics from `source`. The
    /// first model added is the default for triggers that name none.
    pub fn with_model(
        mut self,
        model: impl Into<String>,
        source: impl MetricsSource + 'static,
        policy: &PolicyConfig,
    ) -> Result<Self> {
        let model = model.into();
        let bounds = policy.bounds();
        let built = policy.build()?;
        let source: Arc<dyn MetricsSource> = Arc::new(source);
        let reported = Arc::new(Reported {
            source: Arc::clone(&source),
            state: Mutex::new(bounds.min_replicas.max(1)),
        });
        let period = built.period();
        let controller =
            Controller::new(built, source, Arc::clone(&reported)).with_config(ControllerConfig {
                bounds,
                ..ControllerConfig::default()
            });
        let tracked = Arc::new(Tracked {
            model: model.clone(),
            period,
            controller: tokio::sync::Mutex::new(controller),
            reported,
            latest: Mutex::new(Latest::default()),
            last_step: Mutex::new(None),
        });
        if self.default_model.is_none() {
            self.default_model = Some(model.clone());
        }
        let mut models = (*self.models).clone();
        if models.insert(model.clone(), tracked).is_some() {
            return Err(Error::InvalidConfig {
                what: "keda model",
                reason: format!("'{model}' is added twice"),
            });
        }
        self.models = Arc::new(models);
        Ok(self)
    }

    /// Triggers that name no model get this one.
    pub fn with_default_model(mut self, model: impl Into<String>) -> Result<Self> {
        let model = model.into();
        if !self.models.contains_key(&model) {
            return Err(Error::InvalidConfig {
                what: "keda default model",
                reason: format!("'{model}' is not one of the models added"),
            });
        }
        self.default_model = Some(model);
        Ok(self)
    }

    /// The policy's latest answer for `model`, with its reason.
    pub fn decision(&self, model: &str) -> Option<Decision> {
        let tracked = self.models.get(model)?;
        crate::scaler::lock(&tracked.latest).decision.clone()
    }

    /// The models it scales.
    pub fn models(&self) -> Vec<String> {
        self.models.keys().cloned().collect()
    }

    /// One policy step for every model due (a model is stepped once per its policy's
    /// period): scrape, decide, keep the answer. `now` is any clock, the same at every
    /// call. [`run`](Self::run) calls it at the shortest period.
    pub async fn update(&self, now: Duration) {
        for tracked in self.models.values() {
            // Each model at its own policy's period.
            {
                let mut last = crate::scaler::lock(&tracked.last_step);
                // Half a period of slack: ticks at the period itself land a hair early.
                if last.is_some_and(|at| now + tracked.period / 2 < at + tracked.period) {
                    continue;
                }
                *last = Some(now);
            }
            let mut controller = tracked.controller.lock().await;
            let step = controller.step(now).await;
            // Fresh metrics (stamped with this step's clock) that show requests arriving
            // or waiting keep the model active; so does a failed scrape, which shows
            // nothing either way: an outage of the metrics must not put a model to sleep.
            let demand = controller.metrics().is_none_or(|m| {
                m.at != now
                    || m.request_rate_rps.unwrap_or(0.0) > 0.0
                    || m.queue_depth.unwrap_or(0.0) > 0.0
            });
            drop(controller);
            let mut latest = crate::scaler::lock(&tracked.latest);
            if demand {
                latest.last_demand = Some(Instant::now());
            }
            if let Some(decision) = step.decision {
                latest.decision = Some(decision);
            }
        }
    }

    /// Updates the models until `shutdown` completes: each at its policy's period (the
    /// loop ticks at the shortest).
    pub async fn run(&self, shutdown: impl std::future::Future<Output = ()>) {
        let period = self
            .models
            .values()
            .map(|t| t.period)
            .min()
            .unwrap_or(Duration::from_secs(2));
        let start = tokio::time::Instant::now();
        let mut ticks = tokio::time::interval(period);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                _ = &mut shutdown => return,
                _ = ticks.tick() => self.update(start.elapsed()).await,
            }
        }
    }

    /// The gRPC service, for tonic's `Server` (next to other services if wanted).
    pub fn service(&self) -> ExternalScalerServer<KedaScaler> {
        ExternalScalerServer::new(self.clone())
    }

    /// Serves the service on `addr` and updates the models until `shutdown` completes.
    pub async fn serve(
        self,
        addr: SocketAddr,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> Result<()> {
        let listener =
            tokio::net::TcpListener::bind(addr)
                .await
                .map_err(|e| Error::InvalidConfig {
                    what: "keda listen address",
                    reason: format!("cannot listen on {addr}: {e}"),
                })?;
        self.serve_on(listener, shutdown).await
    }

    /// The same on a listener already bound.
    pub async fn serve_on(
        self,
        listener: tokio::net::TcpListener,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> Result<()> {
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let updater = {
            let me = self.clone();
            let mut stopped = stopped.clone();
            tokio::spawn(async move {
                me.run(async move {
                    let _ = stopped.wait_for(|s| *s).await;
                })
                .await
            })
        };
        let incoming = tonic::transport::server::TcpIncoming::from(listener);
        let served = tonic::transport::Server::builder()
            .add_service(self.service())
            .serve_with_incoming_shutdown(incoming, shutdown)
            .await;
        let _ = stop.send(true);
        if let Err(e) = updater.await {
            tracing::warn!(error = %e, "the KEDA scaler's update loop failed");
        }
        served.map_err(|e| Error::Scaler {
            scaler: "keda".to_string(),
            reason: format!("the gRPC server failed: {e}"),
            temporary: false,
        })
    }

    fn tracked(&self, object: &ScaledObjectRef) -> Result<&Arc<Tracked>, Status> {
        let named = object.scaler_metadata.get(MODEL_KEY);
        let model = match (named, &self.default_model) {
            (Some(m), _) => m,
            (None, Some(m)) => m,
            (None, None) => {
                return Err(Status::invalid_argument(format!(
                    "ScaledObject {}/{}: its trigger's metadata has no '{MODEL_KEY}' and this scaler has no default model",
                    object.namespace, object.name
                )));
            }
        };
        self.models.get(model).ok_or_else(|| {
            Status::not_found(format!(
                "ScaledObject {}/{} asks for model '{model}', which this scaler does not scale (it scales: {})",
                object.namespace,
                object.name,
                self.models().join(", ")
            ))
        })
    }

    fn active(&self, object: &ScaledObjectRef) -> Result<bool, Status> {
        let tracked = self.tracked(object)?;
        let Some(idle) = object.scaler_metadata.get(IDLE_KEY) else {
            return Ok(true);
        };
        let idle = idle
            .trim()
            .parse::<f64>()
            .ok()
            .filter(|s| *s > 0.0)
            .and_then(|s| Duration::try_from_secs_f64(s).ok())
            .ok_or_else(|| {
                Status::invalid_argument(format!(
                    "ScaledObject {}/{}: '{IDLE_KEY}' must be a positive number of seconds, not '{idle}'",
                    object.namespace, object.name
                ))
            })?;
        let latest = crate::scaler::lock(&tracked.latest);
        // Before any demand, count from the service's start: a model is not put to sleep
        // the moment the scaler starts.
        let since = latest.last_demand.unwrap_or(self.started);
        Ok(since.elapsed() < idle)
    }

    fn replicas(&self, tracked: &Tracked) -> f64 {
        f64::from(*crate::scaler::lock(&tracked.reported.state))
    }
}

/// `s0-replicas` (KEDA's per-trigger prefix) or `replicas`.
fn is_our_metric(name: &str) -> bool {
    if name == METRIC {
        return true;
    }
    match name.split_once('-') {
        Some((prefix, rest)) => {
            rest == METRIC
                && prefix.len() > 1
                && prefix.starts_with('s')
                && prefix[1..].bytes().all(|b| b.is_ascii_digit())
        }
        None => false,
    }
}

type ActiveStream =
    Pin<Box<dyn futures::Stream<Item = std::result::Result<IsActiveResponse, Status>> + Send>>;

#[tonic::async_trait]
impl ExternalScaler for KedaScaler {
    async fn is_active(
        &self,
        request: Request<ScaledObjectRef>,
    ) -> std::result::Result<Response<IsActiveResponse>, Status> {
        let result = self.active(request.get_ref())?;
        Ok(Response::new(IsActiveResponse { result }))
    }

    type StreamIsActiveStream = ActiveStream;

    async fn stream_is_active(
        &self,
        request: Request<ScaledObjectRef>,
    ) -> std::result::Result<Response<Self::StreamIsActiveStream>, Status> {
        let object = request.into_inner();
        let first = self.active(&object)?;
        let period = self.tracked(&object)?.period;
        let me = self.clone();
        // The current answer at once, then each change, checked every policy period.
        let stream = futures::stream::unfold(
            (me, object, None::<bool>, first),
            move |(me, object, sent, mut next)| async move {
                while sent == Some(next) {
                    tokio::time::sleep(period).await;
                    match me.active(&object) {
                        Ok(now) => next = now,
                        Err(status) => return Some((Err(status), (me, object, sent, next))),
                    }
                }
                Some((
                    Ok(IsActiveResponse { result: next }),
                    (me, object, Some(next), next),
                ))
            },
        );
        Ok(Response::new(Box::pin(stream)))
    }

    async fn get_metric_spec(
        &self,
        request: Request<ScaledObjectRef>,
    ) -> std::result::Result<Response<GetMetricSpecResponse>, Status> {
        self.tracked(request.get_ref())?;
        Ok(Response::new(GetMetricSpecResponse {
            metric_specs: vec![MetricSpec {
                metric_name: METRIC.to_string(),
                target_size: 1,
                target_size_float: 1.0,
            }],
        }))
    }

    async fn get_metrics(
        &self,
        request: Request<GetMetricsRequest>,
    ) -> std::result::Result<Response<GetMetricsResponse>, Status> {
        let request = request.into_inner();
        let object = request.scaled_object_ref.unwrap_or_default();
        let tracked = self.tracked(&object)?;
        if !is_our_metric(&request.metric_name) {
            return Err(Status::not_found(format!(
                "ScaledObject {}/{} asks for metric '{}'; this scaler offers '{METRIC}' only",
                object.namespace, object.name, request.metric_name
            )));
        }
        let replicas = self.replicas(tracked);
        tracing::debug!(model = %tracked.model, replicas, "answering KEDA");
        Ok(Response::new(GetMetricsResponse {
            metric_values: vec![MetricValue {
                metric_name: request.metric_name,
                metric_value: replicas as i64,
                metric_value_float: replicas,
            }],
        }))
    }
}
