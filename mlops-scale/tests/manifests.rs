//! The manifests generated from a profile: their targets, the `k8s-openapi` types they
//! round-trip through, and the official Kubernetes schemas (PyPI's `kubernetes-validate`,
//! in the Python that `MLOPS_TEST_PYTHON` names) they pass.

// A skipped check says why on stdout.
#![allow(clippy::print_stdout)]

use std::path::Path;
use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::core::v1::{Container, Service};
use mlops_core::ProfileReport;
use mlops_core::profile::ComputeDevice;
use mlops_core::testkit::testdata;
use mlops_scale::Error;
use mlops_scale::manifests::{ManifestConfig, Manifests, generate, to_yaml};
use serde::de::DeserializeOwned;
use serde_json::Value;

fn vision_profile() -> ProfileReport {
    let text = std::fs::read_to_string(testdata("profiles/vision.json")).expect("the profile");
    serde_json::from_str(&text).expect("a profile report")
}

/// The same profile as if it had run on half a GPU under MPS with 4 GiB pinned.
fn gpu_profile() -> ProfileReport {
    let mut report = vision_profile();
    let recommendation = report.recommendation.as_mut().expect("a recommendation");
    recommendation.config.device = ComputeDevice::Gpu { index: 3 };
    recommendation.config.gpu_fraction = Some(0.5);
    recommendation.config.gpu_memory_bytes = Some(4 << 30);
    report
}

/// Deserialises into the typed object and back: nothing may be dropped or changed.
fn round_trip<T: DeserializeOwned + serde::Serialize>(value: &Value) {
    let typed: T = serde_json::from_value(value.clone()).expect("the k8s-openapi type");
    let back = serde_json::to_value(&typed).expect("json");
    assert_eq!(&back, value, "{}", std::any::type_name::<T>());
}

fn built_ins(m: &Manifests) {
    round_trip::<Deployment>(&m.deployment);
    round_trip::<Service>(&m.service);
    round_trip::<Service>(&m.pods_service);
    round_trip::<HorizontalPodAutoscaler>(&m.hpa);
    // Knative's revision template holds Kubernetes containers.
    round_trip::<Vec<Container>>(&m.knative_service["spec"]["template"]["spec"]["containers"]);
}

/// `kubernetes-validate --strict` on the files written for the built-in kinds.
fn validate(dir: &Path) {
    let Some(python) = std::env::var_os("MLOPS_TEST_PYTHON") else {
        assert!(
            std::env::var_os("CI").is_none(),
            "MLOPS_TEST_PYTHON must be set in CI (scripts/test.sh sets it)"
        );
        println!("schema check skipped: MLOPS_TEST_PYTHON is not set (scripts/test.sh sets it)");
        return;
    };
    let files: Vec<_> = [
        "deployment.yaml",
        "service.yaml",
        "pods-service.yaml",
        "hpa.yaml",
    ]
    .iter()
    .map(|f| dir.join(f))
    .collect();
    let out = std::process::Command::new(python)
        .args(["-m", "kubernetes_validate", "--strict", "-k", "1.33.0"])
        .args(&files)
        .output()
        .expect("kubernetes-validate runs");
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{text}");
    for f in &files {
        assert!(
            text.contains(&format!("INFO {} passed", f.display())),
            "{text}"
        );
    }
}

fn arg<'a>(args: &'a [Value], flag: &str) -> &'a str {
    let at = args
        .iter()
        .position(|a| a == flag)
        .unwrap_or_else(|| panic!("{flag} in {args:?}"));
    args[at + 1].as_str().expect("a string")
}

#[test]
fn the_profiled_configuration_and_capacity_set_every_object() {
    let report = vision_profile();
    let m = generate(&report, &ManifestConfig::default()).unwrap();
    let recommendation = report.recommendation.as_ref().unwrap();
    assert_eq!(recommendation.config_id, "cpu1-b4-d0-i1-t1");
    let target = 0.85 * recommendation.capacity_rps;
    assert_eq!(m.target_rps, target);

    let d = &m.deployment;
    assert_eq!(d["metadata"]["name"], "vision");
    let container = &d["spec"]["template"]["spec"]["containers"][0];
    let args = container["args"].as_array().unwrap();
    assert_eq!(arg(args, "--model"), "/models/vision.onnx");
    assert_eq!(arg(args, "--name"), "vision");
    assert_eq!(arg(args, "--max-batch"), "4");
    assert_eq!(arg(args, "--instances"), "1");
    assert_eq!(arg(args, "--threads"), "1");
    assert_eq!(arg(args, "--cores"), "1");
    assert_eq!(arg(args, "--device"), "cpu");
    assert_eq!(container["resources"]["requests"]["cpu"], "1");
    // The peak resident memory profiled, with half again as headroom.
    let peak = report
        .config("cpu1-b4-d0-i1-t1")
        .unwrap()
        .curve
        .iter()
        .filter_map(|m| m.resources.as_ref().map(|r| r.server_rss_bytes_max))
        .max()
        .unwrap();
    let mib = (peak as f64 * 1.5 / 1048576.0).ceil() as u64;
    assert_eq!(
        container["resources"]["requests"]["memory"],
        format!("{}Mi", mib.max(64))
    );
    assert!(
        container["resources"]["limits"]
            .get("nvidia.com/gpu")
            .is_none()
    );
    assert_eq!(
        container["readinessProbe"]["httpGet"]["path"],
        "/v2/health/ready"
    );

    let hpa = &m.hpa["spec"];
    assert_eq!(hpa["minReplicas"], 1);
    assert_eq!(hpa["maxReplicas"], 10);
    let metric = &hpa["metrics"][0]["pods"];
    assert_eq!(
        metric["metric"]["name"],
        "mlops_inference_requests_per_second"
    );
    assert_eq!(
        metric["target"]["averageValue"],
        format!("{}m", (target * 1000.0).round() as u64)
    );
    assert_eq!(
        hpa["behavior"]["scaleDown"]["stabilizationWindowSeconds"],
        30
    );

    let so = &m.scaled_object["spec"];
    assert_eq!(so["minReplicaCount"], 1);
    assert_eq!(so["triggers"][0]["type"], "external");
    assert_eq!(so["triggers"][0]["metadata"]["model"], "vision");
    assert!(
        so["triggers"][0]["metadata"]
            .get("idleAfterSeconds")
            .is_none()
    );
    assert_eq!(
        so["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]["scaleDown"]["stabilizationWindowSeconds"],
        0
    );

    let kn = &m.knative_service["spec"]["template"]["metadata"]["annotations"];
    assert_eq!(kn["autoscaling.knative.dev/metric"], "rps");
    assert_eq!(kn["autoscaling.knative.dev/target"], format!("{target:.2}"));
    assert_eq!(kn["autoscaling.knative.dev/min-scale"], "1");
    assert_eq!(m.pods_service["spec"]["clusterIP"], "None");

    built_ins(&m);
    let dir = tempfile::tempdir().unwrap();
    let written = m.write(dir.path()).unwrap();
    assert_eq!(written.len(), 6);
    // Each file is the object, in YAML.
    for (path, (_, value)) in written.iter().zip(m.files()) {
        let text = std::fs::read_to_string(path).unwrap();
        let back: Value = yaml_serde::from_str(&text).unwrap();
        assert_eq!(&back, value, "{}", path.display());
    }
    validate(dir.path());
}

#[test]
fn a_gpu_configuration_asks_for_the_gpu_and_its_mps_share() {
    let m = generate(&gpu_profile(), &ManifestConfig::default()).unwrap();
    let container = &m.deployment["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(container["resources"]["limits"]["nvidia.com/gpu"], "1");
    assert_eq!(container["resources"]["requests"]["nvidia.com/gpu"], "1");
    let env: Vec<(String, String)> = container["env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["name"].as_str().unwrap().to_string(),
                e["value"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert!(
        env.contains(&("CUDA_MPS_ACTIVE_THREAD_PERCENTAGE".into(), "50".into())),
        "{env:?}"
    );
    assert!(
        env.contains(&("CUDA_MPS_PINNED_DEVICE_MEM_LIMIT".into(), "0=4096M".into())),
        "{env:?}"
    );
    // The pod sees its one GPU as device 0, whatever index the profile ran on.
    let args = container["args"].as_array().unwrap();
    assert_eq!(arg(args, "--device"), "cuda:0");
    built_ins(&m);
    let dir = tempfile::tempdir().unwrap();
    m.write(dir.path()).unwrap();
    validate(dir.path());
}

#[test]
fn scale_to_zero_is_only_written_when_asked() {
    let config = ManifestConfig {
        name: Some("Vision_Prod".to_string()),
        namespace: "ml".to_string(),
        scale_to_zero_after: Some(Duration::from_secs(600)),
        ..ManifestConfig::default()
    };
    let m = generate(&vision_profile(), &config).unwrap();
    assert_eq!(m.deployment["metadata"]["name"], "vision-prod");
    assert_eq!(m.deployment["metadata"]["namespace"], "ml");
    assert_eq!(m.pods_service["metadata"]["name"], "vision-prod-pods");
    let so = &m.scaled_object["spec"];
    assert_eq!(so["minReplicaCount"], 0);
    assert_eq!(so["cooldownPeriod"], 600);
    assert_eq!(so["triggers"][0]["metadata"]["idleAfterSeconds"], "600");
    let kn = &m.knative_service["spec"]["template"]["metadata"]["annotations"];
    assert_eq!(kn["autoscaling.knative.dev/min-scale"], "0");
    // The Deployment and the HPA never go below one.
    assert_eq!(m.hpa["spec"]["minReplicas"], 1);
    assert!(m.deployment["spec"]["replicas"].as_u64().unwrap() >= 1);
    built_ins(&m);
    assert!(
        to_yaml(&m.scaled_object)
            .unwrap()
            .contains("kind: ScaledObject")
    );
}

#[test]
fn a_profile_without_a_usable_recommendation_or_a_bad_setting_is_refused() {
    let mut report = vision_profile();
    report.recommendation.as_mut().unwrap().meets_target = false;
    let err = generate(&report, &ManifestConfig::default()).unwrap_err();
    assert!(matches!(err, Error::Profile(_)), "{err}");
    assert!(err.to_string().contains("meets the target"), "{err}");
    report.recommendation = None;
    let err = generate(&report, &ManifestConfig::default()).unwrap_err();
    assert!(
        err.to_string().contains("recommends no configuration"),
        "{err}"
    );

    let bad_name = ManifestConfig {
        name: Some("---".to_string()),
        ..ManifestConfig::default()
    };
    let err = generate(&vision_profile(), &bad_name).unwrap_err();
    assert!(err.to_string().contains("Kubernetes name"), "{err}");
    let bad_ratio = ManifestConfig {
        target_ratio: 1.5,
        ..ManifestConfig::default()
    };
    let err = generate(&vision_profile(), &bad_ratio).unwrap_err();
    assert!(err.to_string().contains("target_ratio"), "{err}");
    let mut no_capacity = vision_profile();
    no_capacity.recommendation.as_mut().unwrap().capacity_rps = 0.0;
    let err = generate(&no_capacity, &ManifestConfig::default()).unwrap_err();
    assert!(err.to_string().contains("has no capacity"), "{err}");
    // A leading digit is not a Service name: it gets a letter in front.
    let digits = ManifestConfig {
        name: Some("3d-unet".to_string()),
        ..ManifestConfig::default()
    };
    let m = generate(&vision_profile(), &digits).unwrap();
    assert_eq!(m.service["metadata"]["name"], "m-3d-unet");
}
