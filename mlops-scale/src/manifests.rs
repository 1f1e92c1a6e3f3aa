//! What a Kubernetes cluster runs by itself, with its targets taken from a profile: a
//! Deployment of our server in the profiled configuration, Services, an `autoscaling/v2`
//! HorizontalPodAutoscaler on the request rate per pod, a KEDA `ScaledObject` pointing at
//! our external scaler, and a Knative Service.
//!
//! Every target comes from the [`ProfileReport`]'s recommended configuration: the server's
//! flags (batch size, queue delay, instances, threads, device), its CPU request (the cores
//! it was profiled on), its memory (the peak resident memory measured, with headroom), the
//! GPU and its MPS share, and the per-pod request rate the autoscalers aim at (`ratio ×`
//! the profiled capacity). The objects are plain JSON values (no Kubernetes client
//! needed), written as YAML; the tests check each built-in one against the official
//! schemas and the `k8s-openapi` types.

use std::path::{Path, PathBuf};
use std::time::Duration;

use mlops_core::ProfileReport;
use mlops_core::profile::{ComputeDevice, ServingConfig};
use serde_json::{Value, json};

use crate::error::{Error, Result};
use crate::policy::Bounds;

/// The port of the server's HTTP front end (the Open Inference Protocol and `/metrics`).
pub const HTTP_PORT: u16 = 8000;
/// The port of the server's gRPC front end.
pub const GRPC_PORT: u16 = 8001;

/// How to run the profiled model in a cluster.
#[derive(Clone, Debug, PartialEq)]
pub struct ManifestConfig {
    /// The objects' name (lowercase letters, digits and `-`); the model's name when `None`.
    pub name: Option<String>,
    /// The namespace they go in.
    pub namespace: String,
    /// The image that runs `mlops-profile-server` (its entrypoint) with the model at
    /// `model_path`.
    pub image: String,
    /// Where the model file is in the image (or a mounted volume); `/models/<model>.onnx`
    /// when `None`.
    pub model_path: Option<String>,
    /// The share of the profiled capacity each pod is driven to (0.85).
    pub target_ratio: f64,
    /// The replica range (1..10).
    pub bounds: Bounds,
    /// Let KEDA and Knative scale to zero after this long without requests (`None`: never).
    /// Knative's activator holds requests while no pod runs; for KEDA a queue in front
    /// must (see [`keda`](crate::keda)).
    pub scale_to_zero_after: Option<Duration>,
    /// Where KEDA reaches our external scaler (`host:port`).
    pub keda_scaler_address: String,
    /// The per-pod metric the HPA reads from the custom metrics API: the rate of answered
    /// requests, as a Prometheus adapter rule derives it from `nv_inference_request_success`.
    pub hpa_metric: String,
    /// How long the HPA keeps the highest recommendation before scaling down (30 s, as the
    /// capacity policy does).
    pub scale_down_window: Duration,
}

impl Default for ManifestConfig {
    fn default() -> Self {
        ManifestConfig {
            name: None,
            namespace: "default".to_string(),
            image: "mlops-server:0.1.0".to_string(),
            model_path: None,
            target_ratio: 0.85,
            bounds: Bounds {
                min_replicas: 1,
                max_replicas: 10,
            },
            scale_to_zero_after: None,
            keda_scaler_address: "mlops-keda-scaler.keda.svc.cluster.local:9090".to_string(),
            hpa_metric: "mlops_inference_requests_per_second".to_string(),
            scale_down_window: Duration::from_secs(30),
        }
    }
}

/// The generated objects.
#[derive(Clone, Debug, PartialEq)]
pub struct Manifests {
    /// `apps/v1` Deployment of the server.
    pub deployment: Value,
    /// `v1` Service in front of the pods (HTTP and gRPC).
    pub service: Value,
    /// `v1` headless Service listing every ready pod, for the KEDA scaler's `dns+` scrape.
    pub pods_service: Value,
    /// `autoscaling/v2` HorizontalPodAutoscaler on the request rate per pod.
    pub hpa: Value,
    /// KEDA `ScaledObject` (`keda.sh/v1alpha1`) with our external scaler as its trigger.
    pub scaled_object: Value,
    /// Knative `Service` (`serving.knative.dev/v1`) on requests per second per pod.
    pub knative_service: Value,
    /// The per-pod request rate the autoscalers aim at.
    pub target_rps: f64,
}

impl Manifests {
    /// Each object with the file it is written to, in the order to apply them. The HPA,
    /// the ScaledObject and the Knative Service are alternatives: apply one.
    pub fn files(&self) -> Vec<(&'static str, &Value)> {
        vec![
            ("deployment.yaml", &self.deployment),
            ("service.yaml", &self.service),
            ("pods-service.yaml", &self.pods_service),
            ("hpa.yaml", &self.hpa),
            ("scaledobject.yaml", &self.scaled_object),
            ("knative-service.yaml", &self.knative_service),
        ]
    }

    /// Writes one YAML file per object into `dir` (created if missing); returns the paths.
    pub fn write(&self, dir: &Path) -> Result<Vec<PathBuf>> {
        let io = |path: &Path, e: std::io::Error| Error::InvalidConfig {
            what: "manifest directory",
            reason: format!("cannot write {}: {e}", path.display()),
        };
        std::fs::create_dir_all(dir).map_err(|e| io(dir, e))?;
        let mut written = Vec::new();
        for (file, value) in self.files() {
            let path = dir.join(file);
            std::fs::write(&path, to_yaml(value)?).map_err(|e| io(&path, e))?;
            written.push(path);
        }
        Ok(written)
    }
}

/// One object as YAML.
pub fn to_yaml(value: &Value) -> Result<String> {
    yaml_serde::to_string(value).map_err(|e| Error::InvalidConfig {
        what: "manifest",
        reason: format!("cannot write YAML: {e}"),
    })
}

/// A Kubernetes object name: lowercase alphanumerics and `-`, starting with a letter
/// (`m-` is put before a leading digit) and ending with an alphanumeric.
fn object_name(raw: &str) -> Result<String> {
    let name: String = raw
        .to_ascii_lowercase()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    let name = name.trim_matches('-').to_string();
    // Service names must start with a letter (RFC 1035).
    let name = if name.starts_with(|c: char| c.is_ascii_digit()) {
        format!("m-{name}")
    } else {
        name
    };
    if name.is_empty() || name.len() > 55 {
        // The headless Service adds `-pods`: keep room for it.
        return Err(Error::InvalidConfig {
            what: "manifest name",
            reason: format!(
                "'{raw}' does not make a Kubernetes name of 1 to 55 lowercase letters, digits and '-'"
            ),
        });
    }
    Ok(name)
}

/// CPU as a quantity: whole cores, else millicores.
fn cpu_quantity(cores: f64) -> String {
    let milli = (cores * 1000.0).ceil() as u64;
    if milli.is_multiple_of(1000) {
        (milli / 1000).to_string()
    } else {
        format!("{milli}m")
    }
}

/// A decimal value as a quantity in thousandths (`36.2` is `36200m`).
fn milli_quantity(value: f64) -> String {
    format!("{}m", (value * 1000.0).round() as u64)
}

/// The memory to request: the peak resident memory profiled for the configuration, with
/// half again as headroom, in MiB (at least 64 MiB).
fn memory_mib(report: &ProfileReport, config_id: &str) -> u64 {
    let peak = report
        .config(config_id)
        .map(|c| {
            c.curve
                .iter()
                .filter_map(|m| m.resources.as_ref().map(|r| r.server_rss_bytes_max))
                .max()
                .unwrap_or(0)
        })
        .unwrap_or(0);
    ((peak as f64 * 1.5 / (1024.0 * 1024.0)).ceil() as u64).max(64)
}

/// The server's flags for a configuration.
fn server_args(model: &str, model_path: &str, c: &ServingConfig) -> Vec<String> {
    let device = match c.device {
        ComputeDevice::Cpu => "cpu".to_string(),
        // A pod sees the GPUs it was given from index 0.
        ComputeDevice::Gpu { .. } => "cuda:0".to_string(),
    };
    [
        "--mlops-profile-serve",
        "--model",
        model_path,
        "--name",
        model,
        "--http",
        &format!("0.0.0.0:{HTTP_PORT}"),
        "--grpc",
        &format!("0.0.0.0:{GRPC_PORT}"),
        "--threads",
        &c.intra_op_threads.to_string(),
        "--instances",
        &c.instances.to_string(),
        "--max-batch",
        &c.max_batch_size.to_string(),
        "--queue-delay-us",
        &c.max_queue_delay_us.to_string(),
        "--device",
        &device,
        "--cores",
        &c.cpu_cores.to_string(),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

/// Every object for the profile's recommended configuration. A report without a
/// recommendation that meets its target is refused, as the capacity policy refuses it.
pub fn generate(report: &ProfileReport, config: &ManifestConfig) -> Result<Manifests> {
    config.bounds.validate()?;
    if !(config.target_ratio > 0.0 && config.target_ratio <= 1.0) {
        return Err(Error::InvalidConfig {
            what: "target_ratio",
            reason: format!("must be in (0, 1], not {}", config.target_ratio),
        });
    }
    let recommendation = crate::policy::capacity::usable_recommendation(report)?;
    let model = &report.model.name;
    let name = object_name(config.name.as_deref().unwrap_or(model))?;
    let ns = &config.namespace;
    let serving = &recommendation.config;
    let capacity = recommendation.capacity_rps;
    if !(capacity.is_finite() && capacity > 0.0) {
        return Err(Error::Profile(format!(
            "the recommended configuration '{}' has no capacity ({capacity} req/s)",
            recommendation.config_id
        )));
    }
    let target_rps = config.target_ratio * capacity;
    let model_path = config
        .model_path
        .clone()
        .unwrap_or_else(|| format!("/models/{model}.onnx"));
    let min = config.bounds.min_replicas.max(1);
    let max = config.bounds.max_replicas;
    let replicas = recommendation.replicas.clamp(min, max);

    let labels = json!({
        "app.kubernetes.io/name": name,
        "app.kubernetes.io/part-of": "mlops",
    });
    let annotations = json!({
        "mlops.dev/model": model,
        "mlops.dev/profile-config": recommendation.config_id,
        "mlops.dev/capacity-rps": format!("{capacity:.2}"),
        "mlops.dev/latency-target": format!("p{} <= {} ms", report.percentile, report.latency_target_ms),
    });

    let memory = memory_mib(report, &recommendation.config_id);
    let cpu = cpu_quantity(f64::from(serving.cpu_cores));
    let mut requests = json!({ "cpu": cpu, "memory": format!("{memory}Mi") });
    let mut limits = json!({ "memory": format!("{}Mi", memory * 2) });
    let mut env = vec![json!({ "name": "RUST_LOG", "value": "info" })];
    if serving.device.is_gpu() {
        requests["nvidia.com/gpu"] = json!("1");
        limits["nvidia.com/gpu"] = json!("1");
        if let Some(fraction) = serving.gpu_fraction.filter(|f| *f < 1.0) {
            // The share of the GPU's threads the profile gave this replica under MPS.
            env.push(json!({
                "name": "CUDA_MPS_ACTIVE_THREAD_PERCENTAGE",
                "value": format!("{}", (fraction * 100.0).round() as u32),
            }));
        }
        if let Some(bytes) = serving.gpu_memory_bytes {
            env.push(json!({
                "name": "CUDA_MPS_PINNED_DEVICE_MEM_LIMIT",
                "value": format!("0={}M", bytes.div_ceil(1024 * 1024)),
            }));
        }
    }
    let probe = |path: &str, period: u32| {
        json!({
            "httpGet": { "path": path, "port": "http" },
            "periodSeconds": period,
            "failureThreshold": 3,
        })
    };
    let container = json!({
        "name": "server",
        "image": config.image,
        "args": server_args(model, &model_path, serving),
        "ports": [
            { "name": "http", "containerPort": HTTP_PORT, "protocol": "TCP" },
            { "name": "grpc", "containerPort": GRPC_PORT, "protocol": "TCP" },
        ],
        "env": env,
        "resources": { "requests": requests, "limits": limits },
        "readinessProbe": probe("/v2/health/ready", 2),
        "livenessProbe": probe("/v2/health/live", 10),
        "startupProbe": {
            "httpGet": { "path": "/v2/health/ready", "port": "http" },
            "periodSeconds": 1,
            "failureThreshold": 300,
        },
    });
    let deployment = json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": { "name": name, "namespace": ns, "labels": labels, "annotations": annotations },
        "spec": {
            "replicas": replicas,
            "selector": { "matchLabels": { "app.kubernetes.io/name": name } },
            "strategy": {
                "type": "RollingUpdate",
                "rollingUpdate": { "maxSurge": 1, "maxUnavailable": 0 },
            },
            "template": {
                "metadata": {
                    "labels": labels,
                    "annotations": {
                        "prometheus.io/scrape": "true",
                        "prometheus.io/port": HTTP_PORT.to_string(),
                        "prometheus.io/path": "/metrics",
                    },
                },
                "spec": {
                    // The server stops taking connections and finishes what it has.
                    "terminationGracePeriodSeconds": 30,
                    "containers": [container],
                },
            },
        },
    });
    let service = json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": { "name": name, "namespace": ns, "labels": labels },
        "spec": {
            "selector": { "app.kubernetes.io/name": name },
            "ports": [
                { "name": "http", "port": HTTP_PORT, "targetPort": "http", "protocol": "TCP" },
                { "name": "grpc", "port": GRPC_PORT, "targetPort": "grpc", "protocol": "TCP" },
            ],
        },
    });
    let pods_service = json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": { "name": format!("{name}-pods"), "namespace": ns, "labels": labels },
        "spec": {
            "clusterIP": "None",
            "selector": { "app.kubernetes.io/name": name },
            "ports": [
                { "name": "http", "port": HTTP_PORT, "targetPort": "http", "protocol": "TCP" },
            ],
        },
    });
    let target = json!({ "kind": "Deployment", "name": name, "apiVersion": "apps/v1" });
    let hpa = json!({
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": { "name": name, "namespace": ns, "labels": labels, "annotations": annotations },
        "spec": {
            "scaleTargetRef": target,
            "minReplicas": min,
            "maxReplicas": max,
            "metrics": [{
                "type": "Pods",
                "pods": {
                    "metric": { "name": config.hpa_metric },
                    "target": { "type": "AverageValue", "averageValue": milli_quantity(target_rps) },
                },
            }],
            "behavior": {
                "scaleUp": {
                    "stabilizationWindowSeconds": 0,
                    "selectPolicy": "Max",
                    "policies": [
                        { "type": "Percent", "value": 100, "periodSeconds": 15 },
                        { "type": "Pods", "value": 4, "periodSeconds": 15 },
                    ],
                },
                "scaleDown": {
                    "stabilizationWindowSeconds": config.scale_down_window.as_secs(),
                    "policies": [{ "type": "Percent", "value": 100, "periodSeconds": 15 }],
                },
            },
        },
    });
    let mut trigger_metadata = json!({
        "scalerAddress": config.keda_scaler_address,
        "model": model,
    });
    if let Some(idle) = config.scale_to_zero_after {
        trigger_metadata["idleAfterSeconds"] = json!(idle.as_secs().max(1).to_string());
    }
    let scaled_object = json!({
        "apiVersion": "keda.sh/v1alpha1",
        "kind": "ScaledObject",
        "metadata": { "name": name, "namespace": ns, "labels": labels, "annotations": annotations },
        "spec": {
            "scaleTargetRef": target,
            "pollingInterval": 5,
            "cooldownPeriod": config.scale_to_zero_after.map_or(300, |d| d.as_secs().max(1)),
            "minReplicaCount": if config.scale_to_zero_after.is_some() { 0 } else { min },
            "maxReplicaCount": max,
            "advanced": {
                // The scaler's answer is already the count wanted, stabilised by the
                // capacity policy: the HPA applies it as it comes.
                "horizontalPodAutoscalerConfig": {
                    "behavior": {
                        "scaleUp": {
                            "stabilizationWindowSeconds": 0,
                            "policies": [{ "type": "Percent", "value": 1000, "periodSeconds": 15 }],
                        },
                        "scaleDown": {
                            "stabilizationWindowSeconds": 0,
                            "policies": [{ "type": "Percent", "value": 100, "periodSeconds": 15 }],
                        },
                    },
                },
            },
            "triggers": [{
                "type": "external",
                "metricType": "AverageValue",
                "metadata": trigger_metadata,
            }],
        },
    });
    let knative_min = if config.scale_to_zero_after.is_some() {
        0
    } else {
        min
    };
    let mut knative_annotations = json!({
        "autoscaling.knative.dev/class": "kpa.autoscaling.knative.dev",
        "autoscaling.knative.dev/metric": "rps",
        "autoscaling.knative.dev/target": format!("{target_rps:.2}"),
        // The ratio is already in the target.
        "autoscaling.knative.dev/target-utilization-percentage": "100",
        "autoscaling.knative.dev/min-scale": knative_min.to_string(),
        "autoscaling.knative.dev/max-scale": max.to_string(),
        "autoscaling.knative.dev/initial-scale": replicas.to_string(),
    });
    if let Some(idle) = config.scale_to_zero_after {
        knative_annotations["autoscaling.knative.dev/scale-to-zero-pod-retention-period"] =
            json!(format!("{}s", idle.as_secs().max(1)));
    }
    let mut knative_container = container.clone();
    // Knative routes one port; probes may only name that one, by number.
    knative_container["ports"] = json!([{ "name": "http1", "containerPort": HTTP_PORT }]);
    for probe in ["readinessProbe", "livenessProbe"] {
        knative_container[probe]["httpGet"]["port"] = json!(HTTP_PORT);
    }
    if let Some(o) = knative_container.as_object_mut() {
        o.remove("startupProbe");
    }
    let knative_service = json!({
        "apiVersion": "serving.knative.dev/v1",
        "kind": "Service",
        "metadata": { "name": name, "namespace": ns, "labels": labels, "annotations": annotations },
        "spec": {
            "template": {
                "metadata": { "labels": labels, "annotations": knative_annotations },
                "spec": {
                    "timeoutSeconds": 300,
                    "containers": [knative_container],
                },
            },
        },
    });
    Ok(Manifests {
        deployment,
        service,
        pods_service,
        hpa,
        scaled_object,
        knative_service,
        target_rps,
    })
}
