//! The validation gate end to end: real ONNX models registered in the embedded registry,
//! downloaded and verified, served by mlops-runtime's batcher, and compared before the
//! `production` alias may move.
#![cfg(all(feature = "registry", feature = "runtime"))]
#![allow(clippy::unwrap_used)]

use std::path::Path;

use mlops::core::Tensor;
use mlops::core::testkit::{Golden, testdata};
use mlops::registry::{
    AuditAction, AuditQuery, Change, Error, Expect, ModelRegistryExt, NewVersion, Promotion,
    Registry, ValidationCase, ValidationPolicy,
};
use mlops::runtime::{Batcher, BatcherConfig, OrtOptions, OrtRuntime};

/// Serves one registered version the way a deployment would: download (verified), open.
async fn serve(registry: &Registry, reference: &str, scratch: &Path) -> (u64, Batcher) {
    let got = registry
        .download(reference, &scratch.join(reference.replace(['/', '@'], "_")))
        .await
        .unwrap();
    let session = OrtRuntime::new(OrtOptions::default())
        .unwrap()
        .open(&got.entry)
        .unwrap();
    let batcher =
        Batcher::start(reference, vec![Box::new(session)], BatcherConfig::default()).unwrap();
    (got.version.version, batcher)
}

/// The golden rows, then 64 more deterministic rows in batches of 8.
fn validation_set() -> Vec<ValidationCase> {
    let golden = Golden::load("mlp").unwrap();
    let mut cases =
        vec![ValidationCase::new(golden.inputs.clone()).with_expected(golden.outputs.clone())];
    let mut state = 0x2545_f491_4f6c_dd1du64;
    for _ in 0..8 {
        let values: Vec<f32> = (0..8 * 64)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                (state % 2000) as f32 / 1000.0 - 1.0
            })
            .collect();
        cases.push(ValidationCase::new(vec![
            Tensor::from_vec("x", vec![8, 64], values).unwrap(),
        ]));
    }
    cases
}

fn policy() -> ValidationPolicy {
    ValidationPolicy::default()
        .with_tolerance(1e-5, 1e-4)
        .with_top1_agreement("y", 0.99)
}

async fn registry_with_production() -> (tempfile::TempDir, Registry) {
    let dir = tempfile::tempdir().unwrap();
    let registry = Registry::open(dir.path().join("registry")).await.unwrap();
    let by = Change::by("ana");
    let v1 = registry
        .register(
            "mlp",
            &testdata("mlp.onnx"),
            NewVersion::new().with_metric("accuracy", 0.91),
            &by,
        )
        .await
        .unwrap();
    registry
        .models()
        .set_alias("mlp", "production", v1.version, Expect::Absent, &by, None)
        .await
        .unwrap();
    (dir, registry)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agreeing_candidate_is_promoted_with_its_report() {
    let (dir, registry) = registry_with_production().await;
    // The same weights packaged as an MLflow model: a different artifact, the same answers.
    let v2 = registry
        .register(
            "mlp",
            &testdata("mlflow_onnx"),
            NewVersion::new(),
            &Change::by("ci"),
        )
        .await
        .unwrap();
    let (base_v, baseline) = serve(&registry, "mlp@production", dir.path()).await;
    let (cand_v, candidate) = serve(&registry, &format!("mlp/{}", v2.version), dir.path()).await;
    assert_eq!((base_v, cand_v), (1, 2));

    let cases = validation_set();
    let policy = policy();
    let outcome = registry
        .promote_if_valid(
            Promotion {
                model: "mlp",
                alias: "production",
                candidate: (cand_v, &candidate),
                baseline: Some((base_v, &baseline)),
                cases: &cases,
                policy: &policy,
            },
            &Change::by("ci").because("nightly retrain"),
        )
        .await
        .unwrap();
    assert!(outcome.promoted, "{}", outcome.report.summary());
    let names: Vec<_> = outcome
        .report
        .checks
        .iter()
        .map(|c| (c.name.as_str(), c.passed))
        .collect();
    assert_eq!(
        names,
        [
            ("output_agreement", true),
            ("expected_outputs", true),
            ("top1_agreement", true)
        ]
    );
    assert_eq!(outcome.report.checks[2].observed, 1.0);
    assert_eq!(outcome.report.cases, 9);

    assert_eq!(registry.resolve("mlp@production").await.unwrap().version, 2);
    assert_eq!(
        registry
            .models()
            .get_version("mlp", 2)
            .await
            .unwrap()
            .validation,
        Some(outcome.report.clone())
    );
    let moves = registry
        .models()
        .audit_log(&AuditQuery::model("mlp").with_alias("production"))
        .await
        .unwrap();
    let last = moves.last().unwrap();
    assert_eq!(
        last.action,
        AuditAction::AliasSet {
            alias: "production".into(),
            from: Some(1),
            to: 2
        }
    );
    assert_eq!(last.report.as_ref(), Some(&outcome.report));
    assert!(
        last.change
            .reason
            .as_deref()
            .unwrap()
            .starts_with("nightly retrain; mlp/2 against mlp/1: passed")
    );
    candidate.shutdown();
    baseline.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disagreeing_candidate_is_refused_and_production_stays() {
    let (dir, registry) = registry_with_production().await;
    let v2 = registry
        .register(
            "mlp",
            &testdata("mlp_retrained.onnx"),
            NewVersion::new(),
            &Change::by("ci"),
        )
        .await
        .unwrap();
    let (base_v, baseline) = serve(&registry, "mlp@production", dir.path()).await;
    let (cand_v, candidate) = serve(&registry, &format!("mlp/{}", v2.version), dir.path()).await;

    // Its own golden outputs prove the candidate runs correctly; it just answers differently.
    let own = Golden::load("mlp_retrained").unwrap();
    let out = mlops::core::Infer::infer(&candidate, own.inputs.clone())
        .await
        .unwrap();
    mlops::core::testkit::assert_close(&out[0], &own.outputs[0], 1e-5, 1e-4).unwrap();

    let cases = validation_set();
    let policy = policy();
    let outcome = registry
        .promote_if_valid(
            Promotion {
                model: "mlp",
                alias: "production",
                candidate: (cand_v, &candidate),
                baseline: Some((base_v, &baseline)),
                cases: &cases,
                policy: &policy,
            },
            &Change::by("ci"),
        )
        .await
        .unwrap();
    assert!(!outcome.promoted);
    let report = &outcome.report;
    assert!(!report.passed);
    let agreement = report
        .checks
        .iter()
        .find(|c| c.name == "output_agreement")
        .unwrap();
    assert!(
        !agreement.passed && agreement.observed == 1.0,
        "every case differs: {agreement:?}"
    );
    assert!(
        agreement.detail.contains("output 'y'"),
        "{}",
        agreement.detail
    );
    let top1 = report
        .checks
        .iter()
        .find(|c| c.name == "top1_agreement")
        .unwrap();
    assert!(!top1.passed && top1.observed < 0.5, "{top1:?}");

    // Production did not move; the refusal is on record with the candidate.
    assert_eq!(registry.resolve("mlp@production").await.unwrap().version, 1);
    assert_eq!(
        registry
            .models()
            .alias_history("mlp", "production")
            .await
            .unwrap()
            .len(),
        1
    );
    let stored = registry
        .models()
        .get_version("mlp", 2)
        .await
        .unwrap()
        .validation
        .unwrap();
    assert_eq!(&stored, report);

    // A promotion prepared against a baseline that has since moved is a conflict.
    registry
        .models()
        .set_alias(
            "mlp",
            "production",
            2,
            Expect::Version(1),
            &Change::by("ops"),
            None,
        )
        .await
        .unwrap();
    let err = registry
        .promote_if_valid(
            Promotion {
                model: "mlp",
                alias: "production",
                candidate: (cand_v, &candidate),
                baseline: Some((base_v, &baseline)),
                cases: &cases,
                policy: &policy,
            },
            &Change::by("ci"),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Conflict(_)), "{err}");
    candidate.shutdown();
    baseline.shutdown();
}

/// Moves `production` to another version the first time it is called, as a colleague's
/// promotion landing while validation runs.
struct MovesAliasOnFirstCall<'a> {
    inner: &'a Batcher,
    registry: Registry,
    moved: std::sync::atomic::AtomicBool,
}

impl mlops::core::Infer for MovesAliasOnFirstCall<'_> {
    fn infer(&self, inputs: Vec<Tensor>) -> mlops::core::InferFuture<'_> {
        Box::pin(async move {
            if !self.moved.swap(true, std::sync::atomic::Ordering::SeqCst) {
                self.registry
                    .models()
                    .set_alias(
                        "mlp",
                        "production",
                        3,
                        Expect::Version(1),
                        &Change::by("colleague"),
                        None,
                    )
                    .await?;
            }
            mlops::core::Infer::infer(self.inner, inputs).await
        })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_alias_moved_during_validation_makes_the_promotion_a_conflict() {
    let (dir, registry) = registry_with_production().await;
    for path in ["mlflow_onnx", "mlp.onnx"] {
        registry
            .register("mlp", &testdata(path), NewVersion::new(), &Change::by("ci"))
            .await
            .unwrap();
    }
    let (base_v, baseline) = serve(&registry, "mlp@production", dir.path()).await;
    let (cand_v, candidate) = serve(&registry, "mlp/2", dir.path()).await;
    let racing = MovesAliasOnFirstCall {
        inner: &candidate,
        registry: registry.clone(),
        moved: false.into(),
    };
    let cases = validation_set();
    let policy = policy();
    let err = registry
        .promote_if_valid(
            Promotion {
                model: "mlp",
                alias: "production",
                candidate: (cand_v, &racing),
                baseline: Some((base_v, &baseline)),
                cases: &cases,
                policy: &policy,
            },
            &Change::by("ci"),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Conflict(_)), "{err}");
    // The colleague's move stands; the candidate's report is still on record.
    assert_eq!(registry.resolve("mlp@production").await.unwrap().version, 3);
    assert!(
        registry
            .models()
            .get_version("mlp", 2)
            .await
            .unwrap()
            .validation
            .unwrap()
            .passed
    );
    candidate.shutdown();
    baseline.shutdown();
}
