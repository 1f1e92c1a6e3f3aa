//! Conformance suites: the behaviour every backend must show, as `pub async fn`s that each
//! backend's tests call (feature `testkit`). A new backend is done when it passes them.
//!
//! Each suite panics with a message naming the broken rule. Model names carry a per-run
//! tag, so a suite can run against a database shared with other runs.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use mlops_core::{Lineage, ModelManifest, ModelRef};
use tokio::io::AsyncRead;

use crate::artifact::ArtifactStore;
use crate::endpoint::{Endpoint, EndpointDirectory, Protocol};
use crate::error::Error;
use crate::model::{
    AuditAction, AuditQuery, Change, Compare, Expect, ModelQuery, NewVersion, VersionQuery,
    VersionStatus,
};
use crate::registry::{ModelRegistry, ModelRegistryExt, VersionUpdate};
use crate::validation::{CheckResult, LatencySummary, ValidationReport};

/// A name unique to this run: `<base>-<time>-<counter>`.
pub fn unique_name(base: &str) -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    format!(
        "{base}-{:x}-{}",
        Utc::now().timestamp_micros(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

fn who() -> Change {
    Change::by("conformance").because("testing")
}

fn assert_not_found<T: std::fmt::Debug>(r: crate::Result<T>, what: &str) {
    match r {
        Err(Error::NotFound { what: w }) => {
            assert!(w.contains(what), "NotFound names {w:?}, expected {what:?}")
        }
        other => panic!("expected NotFound({what}), got {other:?}"),
    }
}

fn assert_invalid<T: std::fmt::Debug>(r: crate::Result<T>, needle: &str) {
    match r {
        Err(Error::InvalidArgument(m)) => assert!(m.contains(needle), "{m:?} lacks {needle:?}"),
        other => panic!("expected InvalidArgument({needle}), got {other:?}"),
    }
}

/// A small validation report, for storage round trips.
pub fn sample_report(candidate: &str, passed: bool) -> ValidationReport {
    ValidationReport {
        candidate: candidate.to_owned(),
        baseline: Some("baseline/1".into()),
        passed,
        checks: vec![CheckResult {
            name: "output_agreement".into(),
            passed,
            observed: if passed { 0.0 } else { 0.5 },
            threshold: 0.0,
            detail: "sample".into(),
        }],
        cases: 4,
        candidate_latency: LatencySummary {
            p50_us: 10.0,
            p95_us: 12.5,
            mean_us: 11.0,
        },
        baseline_latency: None,
        started_at: crate::time::from_micros(1_700_000_000_000_000),
        finished_at: crate::time::from_micros(1_700_000_000_500_000),
    }
}

/// What a backend can do, for the checks that need it. A backend over another system
/// (MLflow) lacks some; each check it cannot pass is skipped by name, and the backend
/// documents the gap.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Capabilities {
    /// An audit log of alias moves, status changes and deletions (with `alias_at` and
    /// `alias_history` answered from it).
    pub audit_log: bool,
    /// A model deleted and created again continues its version numbers.
    pub numbers_survive_model_deletion: bool,
    /// An artifact write that fails half-way leaves nothing behind.
    pub atomic_artifact_writes: bool,
}

impl Capabilities {
    /// Everything: the backends of this crate.
    pub const ALL: Capabilities = Capabilities {
        audit_log: true,
        numbers_survive_model_deletion: true,
        atomic_artifact_writes: true,
    };
    /// An MLflow tracking server: no audit log; a re-created model starts again at 1; its
    /// artifact proxy writes files as they arrive.
    pub const MLFLOW: Capabilities = Capabilities {
        audit_log: false,
        numbers_survive_model_deletion: false,
        atomic_artifact_writes: false,
    };
}

/// Every [`ModelRegistry`] rule, on an empty or shared registry.
pub async fn model_registry(r: &dyn ModelRegistry) {
    model_registry_with(r, Capabilities::ALL).await;
}

/// Every [`ModelRegistry`] rule the backend's `caps` allow; what is skipped is printed.
pub async fn model_registry_with(r: &dyn ModelRegistry, caps: Capabilities) {
    models_with(r, caps).await;
    versions(r).await;
    aliases(r).await;
    search(r).await;
    if caps.audit_log {
        audit(r).await;
    } else {
        eprintln!("conformance: audit suite skipped: the backend keeps no audit log");
    }
}

/// Registered models: create, read, update, search, delete, and bad input.
pub async fn models(r: &dyn ModelRegistry) {
    models_with(r, Capabilities::ALL).await;
}

/// [`models`], skipping what `caps` says the backend cannot do.
pub async fn models_with(r: &dyn ModelRegistry, caps: Capabilities) {
    let name = unique_name("models");
    let tags = BTreeMap::from([("team".to_owned(), "risk".to_owned())]);
    let m = r
        .create_model(&name, Some("fraud scores"), &tags)
        .await
        .expect("create");
    assert_eq!(
        (m.name.as_str(), m.description.as_deref()),
        (name.as_str(), Some("fraud scores"))
    );
    assert_eq!(m.tags, tags);
    assert_eq!(m.latest_version, 0);
    assert!(matches!(
        r.create_model(&name, None, &BTreeMap::new()).await,
        Err(Error::AlreadyExists { .. })
    ));
    assert_eq!(r.get_model(&name).await.expect("get"), m);

    let update = BTreeMap::from([
        ("team".to_owned(), None),
        ("owner".to_owned(), Some("ana".to_owned())),
    ]);
    let m2 = r
        .update_model(&name, Some("v2"), &update)
        .await
        .expect("update");
    assert_eq!(m2.description.as_deref(), Some("v2"));
    assert_eq!(
        m2.tags,
        BTreeMap::from([("owner".to_owned(), "ana".to_owned())])
    );
    assert!(m2.updated_at >= m.updated_at);

    let found = r
        .search_models(&ModelQuery {
            name_prefix: Some(name.clone()),
            tags: vec![("owner".into(), "ana".into())],
            limit: None,
        })
        .await
        .expect("search");
    assert_eq!(
        found.iter().map(|m| m.name.as_str()).collect::<Vec<_>>(),
        [name.as_str()]
    );
    let none = r
        .search_models(&ModelQuery {
            name_prefix: Some(name.clone()),
            tags: vec![("owner".into(), "bob".into())],
            limit: None,
        })
        .await
        .expect("search");
    assert!(none.is_empty());

    for bad in ["", "a/b", "a@b", "../x", "x y", "é"] {
        assert_invalid(r.create_model(bad, None, &BTreeMap::new()).await, "");
    }
    assert_not_found(
        r.get_model("no-such-model-anywhere").await,
        "no-such-model-anywhere",
    );
    r.delete_model(&name, &who()).await.expect("delete");
    assert_not_found(r.get_model(&name).await, &name);
    assert_not_found(r.delete_model(&name, &who()).await, &name);

    let fresh = r
        .create_model(&unique_name("fresh"), None, &BTreeMap::new())
        .await
        .expect("fresh");
    assert_eq!(fresh.latest_version, 0);
    if !(caps.audit_log && caps.numbers_survive_model_deletion) {
        eprintln!(
            "conformance: numbers and history across a model's deletion skipped: the backend \
             keeps neither"
        );
        return;
    }

    // Deleting a model keeps its numbers and its history: a re-created model continues
    // from the last number, and the log says its aliases went with it.
    let again = unique_name("recreated");
    for _ in 0..2 {
        r.create_version(&again, NewVersion::new().ready(), &who())
            .await
            .expect("version");
    }
    r.set_alias(&again, "production", 2, Expect::Absent, &who(), None)
        .await
        .expect("alias");
    r.delete_model(&again, &who()).await.expect("delete");
    assert_eq!(
        r.alias_at(&again, "production", Utc::now())
            .await
            .expect("at"),
        None
    );
    let v = r
        .create_version(&again, NewVersion::new(), &who())
        .await
        .expect("re-created");
    assert_eq!(v.version, 3, "numbers are not reused after a delete");
    let log = r.audit_log(&AuditQuery::model(&again)).await.expect("log");
    let tail: Vec<_> = log
        .iter()
        .skip(log.len() - 3)
        .map(|e| e.action.clone())
        .collect();
    assert_eq!(
        tail,
        [
            AuditAction::AliasDeleted {
                alias: "production".into(),
                from: 2
            },
            AuditAction::ModelDeleted,
            AuditAction::VersionCreated { version: 3 },
        ]
    );
}

fn manifest_for(name: &str) -> ModelManifest {
    let path = mlops_core::testkit::testdata("mlp.onnx");
    ModelManifest::from_path(&path)
        .expect("testdata/mlp.onnx")
        .with_name(name)
}

/// Versions: numbering, facts, status rules, resolution, updates, deletion.
pub async fn versions(r: &dyn ModelRegistry) {
    let name = unique_name("versions");
    let lineage = Lineage {
        run_id: Some("run-42".into()),
        dataset: Some("s3://data/train.parquet".into()),
        parent_version: None,
        source: None,
    };
    let new = NewVersion::new()
        .with_description("first")
        .with_manifest(manifest_for(&name))
        .with_metric("accuracy", 0.91)
        // Needs all 17 significant digits to round-trip.
        .with_metric("latency_ms", 47.089999999999996)
        .with_param("lr", "0.01")
        .with_tag("stage", "dev")
        .with_lineage(lineage.clone());
    let v1 = r.create_version(&name, new, &who()).await.expect("v1");
    assert_eq!((v1.version, v1.status), (1, VersionStatus::Pending));
    assert_eq!(
        v1.metrics,
        BTreeMap::from([
            ("accuracy".to_owned(), 0.91),
            ("latency_ms".to_owned(), 47.089999999999996)
        ])
    );
    assert_eq!(
        v1.params,
        BTreeMap::from([("lr".to_owned(), "0.01".to_owned())])
    );
    assert_eq!(
        v1.tags,
        BTreeMap::from([("stage".to_owned(), "dev".to_owned())])
    );
    assert_eq!(v1.lineage, lineage);
    assert_eq!(
        v1.manifest,
        Some(manifest_for(&name)),
        "the manifest round-trips"
    );
    assert_eq!(r.get_version(&name, 1).await.expect("get v1"), v1);
    assert_eq!(r.get_model(&name).await.expect("model").latest_version, 1);

    // PENDING is not `latest`.
    assert_not_found(r.resolve(&ModelRef::latest(&name)).await, "READY version");
    let v2 = r
        .create_version(&name, NewVersion::new().ready(), &who())
        .await
        .expect("v2");
    assert_eq!((v2.version, v2.status), (2, VersionStatus::Ready));
    assert_eq!(
        r.resolve(&ModelRef::latest(&name))
            .await
            .expect("latest")
            .version,
        2
    );

    // Status rules.
    let ready = r
        .set_version_status(&name, 1, VersionStatus::Ready, None, &who())
        .await
        .expect("ready");
    assert_eq!(ready.status, VersionStatus::Ready);
    assert!(matches!(
        r.set_version_status(&name, 1, VersionStatus::Pending, None, &who())
            .await,
        Err(Error::FailedPrecondition(_))
    ));
    assert_eq!(
        r.resolve(&ModelRef::latest(&name))
            .await
            .expect("latest")
            .version,
        2
    );
    let archived = r
        .set_version_status(
            &name,
            2,
            VersionStatus::Archived,
            Some("superseded"),
            &who(),
        )
        .await
        .expect("archive");
    assert_eq!(archived.status_message.as_deref(), Some("superseded"));
    assert_eq!(
        r.resolve(&ModelRef::latest(&name))
            .await
            .expect("latest")
            .version,
        1
    );

    // Updates; the manifest is frozen once READY.
    let update = VersionUpdate {
        description: Some("retrained".into()),
        tags: BTreeMap::from([
            ("stage".to_owned(), None),
            ("owner".to_owned(), Some("ana".to_owned())),
        ]),
        metrics: BTreeMap::from([("f1".to_owned(), 0.8)]),
        manifest: None,
    };
    let u = r.update_version(&name, 1, &update).await.expect("update");
    assert_eq!(u.description.as_deref(), Some("retrained"));
    assert_eq!(
        u.tags,
        BTreeMap::from([("owner".to_owned(), "ana".to_owned())])
    );
    assert_eq!(u.metrics.get("f1"), Some(&0.8));
    assert_eq!(u.metrics.get("accuracy"), Some(&0.91));
    let frozen = VersionUpdate {
        manifest: Some(manifest_for("other")),
        ..VersionUpdate::default()
    };
    assert!(matches!(
        r.update_version(&name, 1, &frozen).await,
        Err(Error::FailedPrecondition(_))
    ));
    let nan = VersionUpdate {
        metrics: BTreeMap::from([("loss".to_owned(), f64::NAN)]),
        ..VersionUpdate::default()
    };
    assert_invalid(r.update_version(&name, 1, &nan).await, "finite");

    // Validation reports are kept whole.
    let report = sample_report(&format!("{name}/1"), true);
    r.set_validation(&name, 1, &report)
        .await
        .expect("validation");
    assert_eq!(
        r.get_version(&name, 1).await.expect("v1").validation,
        Some(report)
    );

    // Missing things are named.
    assert_not_found(r.get_version(&name, 99).await, "version 99");
    assert_not_found(r.get_version("missing-model-x", 1).await, "missing-model-x");
    assert_not_found(r.resolve(&ModelRef::version(&name, 7)).await, "version 7");
    assert_not_found(r.resolve(&ModelRef::alias(&name, "nope")).await, "nope");
    assert_invalid(
        r.create_version("bad/name", NewVersion::new(), &who())
            .await,
        "bad/name",
    );
    assert_invalid(
        r.create_version(&name, NewVersion::new().with_tag("", "x"), &who())
            .await,
        "key",
    );

    // Deleting keeps numbers monotonic.
    r.delete_version(&name, 2, &who()).await.expect("delete v2");
    assert_not_found(r.get_version(&name, 2).await, "version 2");
    let v3 = r
        .create_version(&name, NewVersion::new(), &who())
        .await
        .expect("v3");
    assert_eq!(v3.version, 3, "numbers are never reused");
}

/// Aliases: compare-and-set, readiness, protection of aliased versions, resolution.
pub async fn aliases(r: &dyn ModelRegistry) {
    let name = unique_name("aliases");
    for _ in 0..3 {
        r.create_version(&name, NewVersion::new().ready(), &who())
            .await
            .expect("version");
    }
    let pending = r
        .create_version(&name, NewVersion::new(), &who())
        .await
        .expect("v4");
    let by = Change::by("ana").because("first rollout");

    assert_eq!(
        r.set_alias(&name, "production", 1, Expect::Absent, &by, None)
            .await
            .expect("set"),
        None
    );
    assert!(matches!(
        r.set_alias(&name, "production", 2, Expect::Absent, &by, None)
            .await,
        Err(Error::Conflict(_))
    ));
    assert!(matches!(
        r.set_alias(&name, "production", 2, Expect::Version(3), &by, None)
            .await,
        Err(Error::Conflict(_))
    ));
    assert_eq!(
        r.resolve(&ModelRef::alias(&name, "production"))
            .await
            .expect("alias")
            .version,
        1,
        "a lost CAS changes nothing"
    );
    assert_eq!(
        r.set_alias(&name, "production", 2, Expect::Version(1), &by, None)
            .await
            .expect("move"),
        Some(1)
    );
    assert_eq!(
        r.set_alias(&name, "staging", 3, Expect::Any, &by, None)
            .await
            .expect("staging"),
        None
    );
    assert!(
        matches!(
            r.set_alias(&name, "canary", pending.version, Expect::Any, &by, None)
                .await,
            Err(Error::FailedPrecondition(_))
        ),
        "a PENDING version cannot be aliased"
    );
    assert_invalid(
        r.set_alias(&name, "latest", 1, Expect::Any, &by, None)
            .await,
        "reserved",
    );
    assert_invalid(
        r.set_alias(&name, "9x", 1, Expect::Any, &by, None).await,
        "letter",
    );
    assert_not_found(
        r.set_alias(&name, "x", 77, Expect::Any, &by, None).await,
        "version 77",
    );

    let m = r.get_model(&name).await.expect("model");
    assert_eq!(
        m.aliases,
        BTreeMap::from([("production".to_owned(), 2), ("staging".to_owned(), 3)])
    );
    let prod = r
        .resolve(&ModelRef::alias(&name, "production"))
        .await
        .expect("resolve");
    assert_eq!(
        (prod.version, prod.aliases.clone()),
        (2, vec!["production".to_owned()])
    );
    assert_eq!(
        r.resolve_str(&format!("models:/{name}@staging"))
            .await
            .expect("uri")
            .version,
        3
    );

    // An aliased version is protected.
    assert!(matches!(
        r.delete_version(&name, 2, &by).await,
        Err(Error::FailedPrecondition(_))
    ));
    assert!(matches!(
        r.set_version_status(&name, 2, VersionStatus::Archived, None, &by)
            .await,
        Err(Error::FailedPrecondition(_))
    ));

    assert!(matches!(
        r.delete_alias(&name, "staging", Expect::Version(1), &by)
            .await,
        Err(Error::Conflict(_))
    ));
    assert_eq!(
        r.delete_alias(&name, "staging", Expect::Version(3), &by)
            .await
            .expect("delete"),
        3
    );
    assert_not_found(
        r.delete_alias(&name, "staging", Expect::Any, &by).await,
        "staging",
    );
    assert_not_found(
        r.resolve(&ModelRef::alias(&name, "staging")).await,
        "staging",
    );
    r.delete_version(&name, 3, &by)
        .await
        .expect("unaliased versions can go");
}

/// Searching versions by model, tag, metric and status, with ordering and limits.
pub async fn search(r: &dyn ModelRegistry) {
    let name = unique_name("search");
    for (acc, stage) in [(0.7, "dev"), (0.9, "prod"), (0.8, "prod")] {
        let new = NewVersion::new()
            .with_metric("accuracy", acc)
            .with_tag("stage", stage)
            .ready();
        r.create_version(&name, new, &who()).await.expect("version");
    }
    let q = VersionQuery::model(&name)
        .with_tag("stage", "prod")
        .order_by("accuracy");
    let got: Vec<u64> = r
        .search_versions(&q)
        .await
        .expect("search")
        .iter()
        .map(|v| v.version)
        .collect();
    assert_eq!(got, [2, 3]);
    let q = VersionQuery::model(&name).with_metric("accuracy", Compare::Ge, 0.8);
    let got: Vec<u64> = r
        .search_versions(&q)
        .await
        .expect("search")
        .iter()
        .map(|v| v.version)
        .collect();
    assert_eq!(got, [3, 2], "newest first without an order");
    let q = VersionQuery {
        limit: Some(1),
        ..VersionQuery::model(&name).order_by("accuracy")
    };
    let got: Vec<u64> = r
        .search_versions(&q)
        .await
        .expect("search")
        .iter()
        .map(|v| v.version)
        .collect();
    assert_eq!(got, [2]);
    let q = VersionQuery::model(&name).with_status(VersionStatus::Pending);
    assert!(r.search_versions(&q).await.expect("search").is_empty());
    let q = VersionQuery {
        name_prefix: Some(name.clone()),
        ..VersionQuery::default()
    };
    assert_eq!(r.search_versions(&q).await.expect("search").len(), 3);
}

/// The audit log: who moved which alias when, and which version served at any moment.
pub async fn audit(r: &dyn ModelRegistry) {
    let name = unique_name("audit");
    for _ in 0..2 {
        r.create_version(&name, NewVersion::new().ready(), &who())
            .await
            .expect("version");
    }
    let before = Utc::now();
    tokio::time::sleep(Duration::from_millis(2)).await;
    let report = sample_report(&format!("{name}/2"), true);
    r.set_alias(
        &name,
        "production",
        1,
        Expect::Absent,
        &Change::by("ana").because("launch"),
        None,
    )
    .await
    .expect("set");
    tokio::time::sleep(Duration::from_millis(2)).await;
    let between = Utc::now();
    tokio::time::sleep(Duration::from_millis(2)).await;
    r.set_alias(
        &name,
        "production",
        2,
        Expect::Version(1),
        &Change::by("ci"),
        Some(&report),
    )
    .await
    .expect("move");
    r.set_version_status(
        &name,
        1,
        VersionStatus::Archived,
        Some("old"),
        &Change::by("ci"),
    )
    .await
    .expect("archive");

    let moves = r
        .audit_log(&AuditQuery::model(&name).with_alias("production"))
        .await
        .expect("log");
    assert_eq!(moves.len(), 2);
    assert_eq!(
        moves[0].action,
        AuditAction::AliasSet {
            alias: "production".into(),
            from: None,
            to: 1
        }
    );
    assert_eq!(
        (
            moves[0].change.actor.as_str(),
            moves[0].change.reason.as_deref()
        ),
        ("ana", Some("launch"))
    );
    assert_eq!(moves[0].report, None);
    assert_eq!(
        moves[1].action,
        AuditAction::AliasSet {
            alias: "production".into(),
            from: Some(1),
            to: 2
        }
    );
    assert_eq!(moves[1].report.as_ref(), Some(&report));
    assert!(moves[0].id < moves[1].id && moves[0].at <= moves[1].at);

    let all = r.audit_log(&AuditQuery::model(&name)).await.expect("log");
    let kinds: Vec<_> = all
        .iter()
        .map(|e| match &e.action {
            AuditAction::VersionCreated { version } => format!("created {version}"),
            AuditAction::AliasSet { to, .. } => format!("alias {to}"),
            AuditAction::StatusChanged { version, from, to } => format!("{version} {from}->{to}"),
            other => format!("{other:?}"),
        })
        .collect();
    assert_eq!(
        kinds,
        [
            "created 1",
            "created 2",
            "alias 1",
            "alias 2",
            "1 READY->ARCHIVED"
        ]
    );

    assert_eq!(
        r.alias_at(&name, "production", before).await.expect("at"),
        None
    );
    assert_eq!(
        r.alias_at(&name, "production", between).await.expect("at"),
        Some(1)
    );
    assert_eq!(
        r.alias_at(&name, "production", Utc::now())
            .await
            .expect("at"),
        Some(2)
    );
    let history = r.alias_history(&name, "production").await.expect("history");
    assert_eq!(
        history.iter().map(|(_, v)| *v).collect::<Vec<_>>(),
        [Some(1), Some(2)]
    );
    let limited = r
        .audit_log(&AuditQuery {
            limit: Some(2),
            ..AuditQuery::model(&name)
        })
        .await
        .expect("log");
    assert_eq!(
        limited.iter().map(|e| e.id).collect::<Vec<_>>(),
        [all[0].id, all[1].id]
    );
}

/// `n` concurrent registrations of one model get the numbers 1..=n, each once.
pub async fn concurrent_versions(r: Arc<dyn ModelRegistry>, n: usize) {
    let name = unique_name("concurrent");
    let tasks: Vec<_> = (0..n)
        .map(|i| {
            let r = r.clone();
            let name = name.clone();
            tokio::spawn(async move {
                let new = NewVersion::new().with_param("i", i.to_string());
                r.create_version(&name, new, &Change::by("load"))
                    .await
                    .expect("concurrent create")
            })
        })
        .collect();
    let mut numbers = Vec::with_capacity(n);
    for t in tasks {
        numbers.push(t.await.expect("task").version);
    }
    numbers.sort_unstable();
    assert_eq!(
        numbers,
        (1..=n as u64).collect::<Vec<_>>(),
        "distinct, consecutive numbers"
    );
    let all = r
        .search_versions(&VersionQuery::model(&name))
        .await
        .expect("search");
    assert_eq!(all.len(), n, "nothing lost");
    assert_eq!(
        r.get_model(&name).await.expect("model").latest_version,
        n as u64
    );
}

/// Concurrent alias moves from the same expected version: exactly one wins per round, the
/// others get `Conflict`, and the log records only the winners.
pub async fn concurrent_alias_moves(r: Arc<dyn ModelRegistry>, rounds: usize) {
    concurrent_alias_moves_with(r, rounds, Capabilities::ALL).await;
}

/// [`concurrent_alias_moves`]; the count of logged moves only where `caps` has a log.
pub async fn concurrent_alias_moves_with(
    r: Arc<dyn ModelRegistry>,
    rounds: usize,
    caps: Capabilities,
) {
    let name = unique_name("race");
    for _ in 0..3 {
        r.create_version(&name, NewVersion::new().ready(), &who())
            .await
            .expect("version");
    }
    r.set_alias(&name, "production", 1, Expect::Absent, &who(), None)
        .await
        .expect("set");
    let mut current = 1;
    for _ in 0..rounds {
        let contenders: Vec<u64> = [1, 2, 3].into_iter().filter(|v| *v != current).collect();
        let tasks: Vec<_> = contenders
            .iter()
            .map(|&to| {
                let r = r.clone();
                let name = name.clone();
                tokio::spawn(async move {
                    r.set_alias(
                        &name,
                        "production",
                        to,
                        Expect::Version(current),
                        &Change::by("racer"),
                        None,
                    )
                    .await
                    .map(|_| to)
                })
            })
            .collect();
        let mut winners = Vec::new();
        for t in tasks {
            match t.await.expect("task") {
                Ok(to) => winners.push(to),
                Err(Error::Conflict(_)) => {}
                Err(e) => panic!("a losing move must be a Conflict, got {e}"),
            }
        }
        assert_eq!(winners.len(), 1, "exactly one move wins: {winners:?}");
        current = winners[0];
        assert_eq!(
            r.resolve(&ModelRef::alias(&name, "production"))
                .await
                .expect("resolve")
                .version,
            current
        );
    }
    if !caps.audit_log {
        return;
    }
    let moves = r
        .audit_log(&AuditQuery::model(&name).with_alias("production"))
        .await
        .expect("log");
    assert_eq!(moves.len(), rounds + 1, "one event per winning move");
}

/// Every [`EndpointDirectory`] rule.
pub async fn endpoint_directory(d: &dyn EndpointDirectory) {
    let model = unique_name("served");
    let long = Duration::from_secs(60);
    let a = Endpoint::new(&model, Some(1), "10.0.0.1:8000", Protocol::OipHttp)
        .with_capacity(850.0)
        .with_label("zone", "a");
    let b = Endpoint::new(&model, Some(2), "10.0.0.2:8001", Protocol::OipGrpc);
    let la = d.register_endpoint(&a, long).await.expect("register a");
    let lb = d.register_endpoint(&b, long).await.expect("register b");
    assert_ne!(la.id, lb.id);
    let mut all = d.endpoints(&model, None).await.expect("list");
    all.sort_by(|x, y| x.endpoint.address.cmp(&y.endpoint.address));
    assert_eq!(
        all.iter().map(|e| &e.endpoint).collect::<Vec<_>>(),
        [&a, &b]
    );
    assert_eq!(all[0].lease, la);
    let v2 = d.endpoints(&model, Some(2)).await.expect("list v2");
    assert_eq!(
        v2.iter()
            .map(|e| e.endpoint.address.as_str())
            .collect::<Vec<_>>(),
        ["10.0.0.2:8001"]
    );
    assert!(
        d.endpoints(&model, Some(3))
            .await
            .expect("list v3")
            .is_empty()
    );
    assert!(
        d.endpoints("other-model", None)
            .await
            .expect("list")
            .is_empty()
    );

    let renewed = d
        .renew(&la.id, Duration::from_secs(120))
        .await
        .expect("renew");
    assert!(renewed.expires_at > la.expires_at);

    // A short lease lapses; renewing it afterwards is NotFound.
    let short = d
        .register_endpoint(&b, Duration::from_millis(20))
        .await
        .expect("short");
    tokio::time::sleep(Duration::from_millis(120)).await;
    let live = d.endpoints(&model, Some(2)).await.expect("list");
    assert_eq!(
        live.iter().map(|e| e.lease.id.as_str()).collect::<Vec<_>>(),
        [lb.id.as_str()]
    );
    assert_not_found(d.renew(&short.id, long).await, &short.id);

    d.deregister(&lb.id).await.expect("deregister");
    assert_not_found(d.deregister(&lb.id).await, &lb.id);
    assert_eq!(d.endpoints(&model, None).await.expect("list").len(), 1);

    assert_invalid(
        d.register_endpoint(&Endpoint::new("a/b", None, "x", Protocol::OipHttp), long)
            .await,
        "",
    );
    assert_invalid(
        d.register_endpoint(&Endpoint::new(&model, None, "", Protocol::OipHttp), long)
            .await,
        "address",
    );
    assert_invalid(
        d.register_endpoint(&a.clone().with_capacity(f64::NAN), long)
            .await,
        "capacity",
    );
    assert_invalid(d.register_endpoint(&a, Duration::ZERO).await, "lease");
    d.deregister(&la.id).await.expect("cleanup");
}

struct Failing {
    left: usize,
}

impl AsyncRead for Failing {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        if self.left == 0 {
            return std::task::Poll::Ready(Err(std::io::Error::other("source failed")));
        }
        let n = self.left.min(buf.remaining()).min(1 << 20);
        buf.put_slice(&vec![7u8; n]);
        self.left -= n;
        std::task::Poll::Ready(Ok(()))
    }
}

/// Every [`ArtifactStore`] rule: streaming round trips with digests, listing, deletion,
/// atomic writes and path rules.
pub async fn artifact_store(s: &dyn ArtifactStore) {
    artifact_store_with(s, Capabilities::ALL).await;
}

/// [`artifact_store`]; a write that fails half-way must leave nothing only where `caps`
/// says writes are atomic (it must fail either way).
pub async fn artifact_store_with(s: &dyn ArtifactStore, caps: Capabilities) {
    use futures::TryStreamExt;
    use sha2::{Digest, Sha256};
    let prefix = format!("conformance/{}/", unique_name("store"));
    // Bigger than one chunk, not a multiple of it.
    let big: Vec<u8> = (0..crate::artifact::CHUNK_SIZE + 4099)
        .map(|i| (i % 251) as u8)
        .collect();
    let small = b"hello".to_vec();
    for (path, data) in [("a/big.bin", &big), ("small.txt", &small)] {
        let stored = s
            .put(&format!("{prefix}{path}"), &mut data.as_slice())
            .await
            .expect("put");
        assert_eq!(stored.size, data.len() as u64);
        assert_eq!(stored.sha256, hex::encode(Sha256::digest(data)));
        let chunks: Vec<bytes::Bytes> = s
            .get(&format!("{prefix}{path}"))
            .await
            .expect("get")
            .try_collect()
            .await
            .expect("read");
        assert_eq!(chunks.concat(), *data, "{path} round-trips");
        assert_eq!(
            s.size(&format!("{prefix}{path}")).await.expect("size"),
            Some(data.len() as u64)
        );
    }
    let empty = s
        .put(&format!("{prefix}empty"), &mut &b""[..])
        .await
        .expect("empty");
    assert_eq!(empty.sha256, hex::encode(Sha256::digest(b"")));
    assert_eq!(
        s.list(&prefix).await.expect("list"),
        [
            format!("{prefix}a/big.bin"),
            format!("{prefix}empty"),
            format!("{prefix}small.txt")
        ]
    );

    // A source that fails after more than a chunk has been written leaves nothing: no new
    // file, and an earlier file at the same path untouched.
    let broken = format!("{prefix}broken.bin");
    let failing = || Failing {
        left: crate::artifact::CHUNK_SIZE + (3 << 20),
    };
    assert!(
        s.put(&broken, &mut failing()).await.is_err(),
        "a failing source fails the put"
    );
    if caps.atomic_artifact_writes {
        assert_eq!(s.size(&broken).await.expect("size"), None);
        s.put(&broken, &mut small.as_slice()).await.expect("put");
        assert!(s.put(&broken, &mut failing()).await.is_err());
        let kept: Vec<bytes::Bytes> = s
            .get(&broken)
            .await
            .expect("get")
            .try_collect()
            .await
            .expect("read");
        assert_eq!(kept.concat(), small, "the earlier file is untouched");
    } else {
        eprintln!("conformance: atomic writes skipped: the store writes files as they arrive");
    }

    assert_not_found(s.get(&format!("{prefix}missing")).await.map(|_| ()), "");
    assert_eq!(
        s.size(&format!("{prefix}missing")).await.expect("size"),
        None
    );
    for bad in ["", "/abs", "a/../b", "a//b", "./a", "a\0b", "a\\b"] {
        assert_invalid(s.put(bad, &mut &b"x"[..]).await, "artifact path");
    }
    s.delete_all(&prefix).await.expect("delete");
    assert!(s.list(&prefix).await.expect("list").is_empty());
    assert_eq!(s.size(&broken).await.expect("size"), None);
    s.delete_all(&prefix)
        .await
        .expect("deleting nothing is fine");
}
