//! Serving with a profile's recommendation: the settings come from the report, and a report
//! for another model, version or device is refused, saying which.

use std::sync::Arc;

use mlops_core::testkit::testdata;
use mlops_core::{ComputeDevice, ModelFormat, ModelManifest, ProfileReport};
use mlops_profile::Error;
use mlops_profile::tuned::TunedServing;
use mlops_runtime::{ModelServer, OrtRuntime};

fn vision_profile() -> ProfileReport {
    let text = std::fs::read_to_string(testdata("profiles/vision.json")).expect("the profile");
    ProfileReport::from_json(&text).expect("a profile report")
}

fn manifest(file: &str) -> ModelManifest {
    ModelManifest::from_path(&testdata(file)).expect("a bundled model")
}

#[test]
fn the_recommendation_sets_the_batcher_instances_threads_and_device() {
    let report = vision_profile();
    let tuned = TunedServing::from_report(&report, &manifest("vision.onnx"), None).unwrap();
    assert_eq!(tuned.config_id, "cpu1-b4-d0-i1-t1");
    let spec = tuned.spec();
    assert_eq!(spec.instances, 1);
    assert_eq!(spec.batcher.max_batch_size, 4);
    assert_eq!(spec.batcher.max_queue_delay, std::time::Duration::ZERO);
    // As the profiled server ran: no idle spin.
    assert_eq!(spec.batcher.idle_spin, std::time::Duration::ZERO);
    assert_eq!(tuned.ort_options().intra_threads, 1);
    assert_eq!(
        tuned.capacity_rps,
        report.recommendation.as_ref().unwrap().capacity_rps
    );
    tuned.check_device(ComputeDevice::Cpu).unwrap();
    assert!(
        tuned
            .summary()
            .starts_with("cpu1-b4-d0-i1-t1 on cpu: 1 instance(s), batches of up to 4")
    );

    // A real server built from it runs with exactly those settings.
    let ort = OrtRuntime::new(tuned.ort_options()).unwrap();
    let server = ModelServer::new().with_runtime(ModelFormat::Onnx, Arc::new(ort));
    server
        .load_path(&testdata("vision.onnx"), tuned.spec())
        .unwrap();
    let batcher = server.get("vision", None).unwrap();
    assert_eq!((batcher.instances(), batcher.max_batch_size()), (1, 4));
}

#[test]
fn a_report_for_another_model_version_or_device_is_refused_saying_which() {
    let report = vision_profile();
    let err = TunedServing::from_report(&report, &manifest("mlp.onnx"), None).unwrap_err();
    assert!(matches!(err, Error::Mismatch(_)), "{err}");
    let text = err.to_string();
    assert!(
        text.contains("measured on model 'vision'") && text.contains("not on 'mlp'"),
        "{text}"
    );

    // Without a hash, the names decide.
    let mut unhashed = report.clone();
    unhashed.model.sha256 = None;
    let err = TunedServing::from_report(&unhashed, &manifest("mlp.onnx"), None).unwrap_err();
    assert!(err.to_string().contains("not 'mlp'"), "{err}");

    let mut versioned = report.clone();
    versioned.model.version = Some(2);
    let err = TunedServing::from_report(&versioned, &manifest("vision.onnx"), Some(3)).unwrap_err();
    assert!(
        err.to_string().contains("version 2, not version 3"),
        "{err}"
    );
    TunedServing::from_report(&versioned, &manifest("vision.onnx"), Some(2)).unwrap();

    let tuned = TunedServing::from_report(&report, &manifest("vision.onnx"), None).unwrap();
    let err = tuned
        .check_device(ComputeDevice::Gpu { index: 0 })
        .unwrap_err();
    assert!(
        err.to_string().contains("runs on cpu, this server on gpu0"),
        "{err}"
    );

    let mut missed = report.clone();
    missed.recommendation.as_mut().unwrap().meets_target = false;
    let err = TunedServing::from_report(&missed, &manifest("vision.onnx"), None).unwrap_err();
    assert!(err.to_string().contains("no configuration meets"), "{err}");
}
