//! The validation checks one by one, with small models written here: a linear classifier
//! and variants of it that drift, slow down, fail or drop an output.
#![allow(clippy::unwrap_used)]

use std::ops::Range;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use mlops_core::{BoxError, Infer, InferFuture, Tensor};
use mlops_registry::validation::validate;
use mlops_registry::{Error, ValidationCase, ValidationPolicy};

/// y = x · W over 4 features and 3 classes; `drift` is added to class 0's weights.
struct Linear {
    drift: f32,
    delay: Duration,
    fail: bool,
    output: &'static str,
    /// Calls (counted from 0) that stall for 5 ms, as on a machine busy for a moment.
    stalls: Range<usize>,
    calls: AtomicUsize,
}

impl Linear {
    fn new() -> Self {
        Linear {
            drift: 0.0,
            delay: Duration::ZERO,
            fail: false,
            output: "scores",
            stalls: 0..0,
            calls: AtomicUsize::new(0),
        }
    }
}

const W: [[f32; 3]; 4] = [
    [1.0, 0.0, -1.0],
    [0.5, 1.0, 0.0],
    [-0.5, 0.2, 1.0],
    [0.0, -1.0, 0.3],
];

impl Infer for Linear {
    fn infer(&self, inputs: Vec<Tensor>) -> InferFuture<'_> {
        Box::pin(async move {
            if self.fail {
                return Err(
                    Box::<dyn std::error::Error + Send + Sync>::from("instance crashed")
                        as BoxError,
                );
            }
            if !self.delay.is_zero() {
                tokio::time::sleep(self.delay).await;
            }
            if self
                .stalls
                .contains(&self.calls.fetch_add(1, Ordering::Relaxed))
            {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            let x = inputs[0].to_vec::<f32>()?;
            let rows = x.len() / 4;
            let mut y = vec![0f32; rows * 3];
            for r in 0..rows {
                for c in 0..3 {
                    let drift = if c == 0 { self.drift } else { 0.0 };
                    y[r * 3 + c] = (0..4).map(|k| x[r * 4 + k] * (W[k][c] + drift)).sum();
                }
            }
            Ok(vec![Tensor::from_vec(self.output, vec![rows, 3], y)?])
        })
    }
}

fn cases() -> Vec<ValidationCase> {
    let rows: Vec<[f32; 4]> = vec![
        [1.0, 0.0, 0.0, 0.0],
        [0.0, 1.0, 0.0, 0.0],
        [0.0, 0.0, 1.0, 0.0],
        [0.2, 0.1, 0.9, 0.1],
        [0.9, 0.1, 0.1, 0.1],
        [0.1, 0.9, 0.1, 0.0],
    ];
    rows.chunks(2)
        .map(|pair| {
            let flat: Vec<f32> = pair.iter().flatten().copied().collect();
            let labels = pair
                .iter()
                .map(|r| {
                    let scores: Vec<f32> = (0..3)
                        .map(|c| (0..4).map(|k| r[k] * W[k][c]).sum())
                        .collect();
                    scores
                        .iter()
                        .enumerate()
                        .max_by(|a, b| a.1.total_cmp(b.1))
                        .unwrap()
                        .0 as i64
                })
                .collect();
            ValidationCase::new(vec![Tensor::from_vec("x", vec![2, 4], flat).unwrap()])
                .with_labels(labels)
        })
        .collect()
}

#[tokio::test]
async fn identical_models_pass_every_check() {
    let policy = ValidationPolicy::default()
        .with_top1_agreement("scores", 1.0)
        .with_min_accuracy(1.0);
    let policy = ValidationPolicy {
        max_accuracy_drop: Some(0.0),
        ..policy
    };
    let (a, b) = (Linear::new(), Linear::new());
    let report = validate(("m/2", &a), Some(("m/1", &b)), &cases(), &policy)
        .await
        .unwrap();
    assert!(report.passed, "{}", report.summary());
    let got: Vec<_> = report
        .checks
        .iter()
        .map(|c| (c.name.as_str(), c.observed))
        .collect();
    assert_eq!(
        got,
        [
            ("output_agreement", 0.0),
            ("top1_agreement", 1.0),
            ("accuracy", 1.0),
            ("accuracy_drop", 0.0)
        ]
    );
    assert_eq!(report.cases, 3);
    assert_eq!(
        report.summary(),
        "m/2 against m/1: passed 4 checks on 3 cases"
    );
}

#[tokio::test]
async fn small_drift_passes_within_tolerance_and_fails_outside_it() {
    let drifted = Linear {
        drift: 1e-4,
        ..Linear::new()
    };
    let base = Linear::new();
    let loose = ValidationPolicy::default().with_tolerance(1e-3, 0.0);
    let report = validate(("m/2", &drifted), Some(("m/1", &base)), &cases(), &loose)
        .await
        .unwrap();
    assert!(report.passed, "{}", report.summary());

    let tight = ValidationPolicy::default().with_tolerance(1e-6, 0.0);
    let report = validate(("m/2", &drifted), Some(("m/1", &base)), &cases(), &tight)
        .await
        .unwrap();
    assert!(!report.passed);
    let check = &report.checks[0];
    assert_eq!(
        (check.name.as_str(), check.observed),
        ("output_agreement", 1.0)
    );
    assert!(
        check
            .detail
            .starts_with("case 0: output 'scores' element 0"),
        "{}",
        check.detail
    );

    // Allowing a share of disagreeing cases.
    let tolerant = ValidationPolicy {
        max_disagreement: 1.0,
        ..tight
    };
    assert!(
        validate(("m/2", &drifted), Some(("m/1", &base)), &cases(), &tolerant)
            .await
            .unwrap()
            .passed
    );
}

#[tokio::test]
async fn a_classifier_that_changes_its_answers_fails_top1_and_accuracy() {
    let broken = Linear {
        drift: 5.0,
        ..Linear::new()
    };
    let base = Linear::new();
    let policy = ValidationPolicy {
        max_accuracy_drop: Some(0.05),
        ..ValidationPolicy::default()
            .without_output_comparison()
            .with_top1_agreement("scores", 0.9)
            .with_min_accuracy(0.8)
    };
    let report = validate(("m/2", &broken), Some(("m/1", &base)), &cases(), &policy)
        .await
        .unwrap();
    assert!(!report.passed);
    let by_name = |n: &str| report.checks.iter().find(|c| c.name == n).unwrap().clone();
    assert!(!by_name("top1_agreement").passed);
    assert!(by_name("top1_agreement").observed < 0.9);
    assert!(!by_name("accuracy").passed);
    assert!(by_name("accuracy_drop").observed > 0.05);
    assert!(report.checks.iter().all(|c| c.name != "output_agreement"));
}

#[tokio::test]
async fn a_slower_candidate_fails_the_latency_check() {
    let slow = Linear {
        delay: Duration::from_millis(20),
        ..Linear::new()
    };
    let base = Linear::new();
    let policy = ValidationPolicy::default()
        .with_max_latency_regression(0.5)
        .with_latency_samples(12);
    let report = validate(("m/2", &slow), Some(("m/1", &base)), &cases(), &policy)
        .await
        .unwrap();
    let check = report
        .checks
        .iter()
        .find(|c| c.name == "latency_regression")
        .unwrap();
    assert!(!check.passed, "{check:?}");
    // Refused only after a second measurement showed it too.
    assert!(check.detail.contains(", and again p95 "), "{check:?}");
    assert!(check.detail.contains("over 12 calls each"), "{check:?}");
    assert!(check.observed > 0.5, "{check:?}");
    assert!(
        report.candidate_latency.p50_us >= 20_000.0,
        "{:?}",
        report.candidate_latency
    );
    // The warm-up, the first measurement and the second: 1 + 12 + 12 calls.
    assert_eq!(slow.calls.load(Ordering::Relaxed), 25);
    // The other way round, the faster one passes, on one measurement.
    let report = validate(("m/1", &base), Some(("m/2", &slow)), &cases(), &policy)
        .await
        .unwrap();
    assert!(report.passed, "{}", report.summary());
    let check = report
        .checks
        .iter()
        .find(|c| c.name == "latency_regression")
        .unwrap();
    assert!(!check.detail.contains("first measurement"), "{check:?}");
}

#[tokio::test]
async fn a_stall_in_one_measurement_does_not_fail_the_latency_check() {
    // Calls 1 to 10 of the candidate stall: a p95 over its first 64 calls is 5 ms.
    let stalling = Linear {
        stalls: 1..11,
        ..Linear::new()
    };
    let base = Linear::new();
    let policy = ValidationPolicy::default().with_max_latency_regression(0.5);
    let report = validate(("m/2", &stalling), Some(("m/1", &base)), &cases(), &policy)
        .await
        .unwrap();
    let check = report
        .checks
        .iter()
        .find(|c| c.name == "latency_regression")
        .unwrap();
    assert!(check.passed, "{check:?}");
    assert!(check.observed <= 0.5, "{check:?}");
    assert!(
        check
            .detail
            .contains("the regression of a first measurement (p95 "),
        "{check:?}"
    );
    // The report's latency is the measurement the check stands by, not the stalled one.
    assert!(
        report.candidate_latency.p95_us < 5_000.0,
        "{:?}",
        report.candidate_latency
    );
    assert_eq!(stalling.calls.load(Ordering::Relaxed), 1 + 64 + 64);
}

#[tokio::test]
async fn expected_outputs_alone_can_gate_a_first_version() {
    let model = Linear::new();
    let mut set = cases();
    let expected = model.infer(set[0].inputs.clone()).await.unwrap();
    set[0] = set[0].clone().with_expected(expected);
    let report = validate(("m/1", &model), None, &set, &ValidationPolicy::default())
        .await
        .unwrap();
    assert!(report.passed);
    assert_eq!(report.checks.len(), 1);
    assert_eq!(report.checks[0].name, "expected_outputs");
    assert_eq!(report.baseline, None);

    let wrong = Linear {
        drift: 0.1,
        ..Linear::new()
    };
    let report = validate(("m/1", &wrong), None, &set, &ValidationPolicy::default())
        .await
        .unwrap();
    assert!(!report.passed);
}

#[tokio::test]
async fn missing_outputs_and_failing_models_are_reported() {
    let renamed = Linear {
        output: "logits",
        ..Linear::new()
    };
    let base = Linear::new();
    let report = validate(
        ("m/2", &renamed),
        Some(("m/1", &base)),
        &cases(),
        &ValidationPolicy::default().with_top1_agreement("scores", 0.5),
    )
    .await
    .unwrap();
    assert!(!report.passed);
    assert!(
        report.checks[0]
            .detail
            .contains("output 'scores' is missing"),
        "{}",
        report.checks[0].detail
    );
    assert_eq!(
        report.checks[1].observed, 0.0,
        "no row agrees when the class output is missing"
    );

    let failing = Linear {
        fail: true,
        ..Linear::new()
    };
    let err = validate(
        ("m/2", &failing),
        Some(("m/1", &base)),
        &cases(),
        &ValidationPolicy::default(),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(&err, Error::Validation { model, reason } if model == "m/2" && reason == "instance crashed"),
        "{err}"
    );
}

#[tokio::test]
async fn bad_policies_and_sets_are_refused() {
    let m = Linear::new();
    let err = validate(
        ("m/2", &m),
        Some(("m/1", &m)),
        &[],
        &ValidationPolicy::default(),
    )
    .await
    .unwrap_err();
    assert!(err.to_string().contains("empty"), "{err}");
    let needs_output = ValidationPolicy::default().with_min_accuracy(0.9);
    let err = validate(("m/2", &m), None, &cases(), &needs_output)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("class_output"), "{err}");
    let out_of_range = ValidationPolicy::default().with_top1_agreement("scores", 1.5);
    assert!(
        validate(("m/2", &m), None, &cases(), &out_of_range)
            .await
            .is_err()
    );
    let no_samples = ValidationPolicy::default()
        .with_max_latency_regression(0.2)
        .with_latency_samples(0);
    let err = validate(("m/2", &m), Some(("m/1", &m)), &cases(), &no_samples)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("latency samples"), "{err}");
    // Nothing to compare against: refused rather than passed.
    let err = validate(
        ("m/2", &m),
        None,
        &[ValidationCase::new(cases()[0].inputs.clone())],
        &ValidationPolicy::default(),
    )
    .await
    .unwrap_err();
    assert!(err.to_string().contains("checks nothing"), "{err}");
}
