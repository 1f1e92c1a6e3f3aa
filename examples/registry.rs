//! The registry workflow in one run: a researcher registers two versions of a model with
//! their metrics and params; the first goes to production; the second is validated against
//! it on real inference and promoted only because it agrees; a third, whose retraining
//! went wrong, is refused. Prints the audit log at the end.
//!
//! ```text
//! cargo run --example registry                 # in a temporary directory
//! cargo run --example registry -- ./registry   # or in a directory that stays
//! cargo run --example registry -- mlflow+http://127.0.0.1:5000   # or in an MLflow server
//! ```
//!
//! Against MLflow, every step is visible in MLflow's own UI and client: the versions, their
//! runs with the metrics and params, the validation reports as tags, and the `production`
//! alias moving. MLflow keeps no audit log, so the last step says so instead.

// An example's output is its point.
#![allow(clippy::print_stdout)]

mod common;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use mlops::core::Lineage;
use mlops::registry::{
    AuditAction, AuditQuery, Change, Error, Expect, ModelRegistryExt, NewVersion, Promotion,
    Registry, ValidationPolicy,
};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

#[tokio::main]
async fn main() -> ExitCode {
    match run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("registry: {e}");
            ExitCode::FAILURE
        }
    }
}

fn testdata(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("testdata")
        .join(name)
}

async fn run() -> Result<(), BoxError> {
    let temp = tempfile::tempdir()?;
    let dir = std::env::args_os()
        .nth(1)
        .map_or_else(|| temp.path().join("registry"), PathBuf::from);
    let registry = match dir.to_string_lossy().strip_prefix("mlflow+") {
        Some(uri) => Registry::mlflow(uri)?,
        None => Registry::open(&dir).await?,
    };
    if registry.models().get_model("mlp").await.is_ok() {
        return Err(format!(
            "{} already holds model 'mlp': give a new directory (or a server without it)",
            dir.display()
        )
        .into());
    }
    let researcher = Change::by("ana").because("trained on the March data");
    let name = "mlp";

    // 1. The researcher registers two versions, with what she knows about them.
    let lineage = Lineage {
        run_id: Some("run-0412".into()),
        dataset: Some("s3://datasets/clicks/2026-03".into()),
        ..Lineage::default()
    };
    let v1 = registry
        .register(
            name,
            &testdata("mlp.onnx"),
            NewVersion::new()
                .with_metric("accuracy", 0.912)
                .with_param("hidden", "128")
                .with_param("lr", "0.01")
                .with_lineage(lineage.clone()),
            &researcher,
        )
        .await?;
    let v2 = registry
        .register(
            name,
            &testdata("mlflow_onnx"),
            NewVersion::new()
                .with_metric("accuracy", 0.914)
                .with_param("hidden", "128")
                .with_param("lr", "0.005")
                .with_lineage(Lineage {
                    parent_version: Some(v1.version),
                    ..lineage.clone()
                }),
            &researcher,
        )
        .await?;
    let v3 = registry
        .register(
            name,
            &testdata("mlp_retrained.onnx"),
            NewVersion::new()
                .with_metric("accuracy", 0.95)
                .with_param("lr", "0.5"),
            &researcher,
        )
        .await?;
    for v in [&v1, &v2, &v3] {
        let m = v
            .manifest
            .as_ref()
            .ok_or("a registered version has a manifest")?;
        println!(
            "registered {}/{}: {} file(s), {} bytes, {:?}, metrics {:?}",
            v.name,
            v.version,
            m.files.len(),
            m.size_bytes(),
            m.entry.format,
            v.metrics
        );
    }

    // 2. The first version goes to production; the second is staged.
    let ops = Change::by("ops").because("initial rollout");
    registry
        .models()
        .set_alias(name, "production", v1.version, Expect::Absent, &ops, None)
        .await?;
    registry
        .models()
        .set_alias(
            name,
            "staging",
            v2.version,
            Expect::Absent,
            &Change::by("ci"),
            None,
        )
        .await?;

    // 3. CI validates staging against production on real inference and promotes it.
    let scratch = temp.path().join("serving");
    let cases = common::validation_set()?;
    let policy = ValidationPolicy::default()
        .with_tolerance(1e-5, 1e-4)
        .with_top1_agreement("y", 0.99)
        .with_max_latency_regression(1.0);
    for candidate_ref in [format!("{name}@staging"), format!("{name}/{}", v3.version)] {
        // Each candidate is compared with whatever production is at that moment.
        let (base_v, baseline) =
            common::open_version(&registry, &format!("{name}@production"), &scratch).await?;
        let (cand_v, candidate) = common::open_version(&registry, &candidate_ref, &scratch).await?;
        let outcome = registry
            .promote_if_valid(
                Promotion {
                    model: name,
                    alias: "production",
                    candidate: (cand_v, &candidate),
                    baseline: Some((base_v, &baseline)),
                    cases: &cases,
                    policy: &policy,
                },
                &Change::by("ci").because("nightly validation"),
            )
            .await?;
        println!(
            "{candidate_ref}: {} -> {}",
            outcome.report.summary(),
            if outcome.promoted {
                "promoted"
            } else {
                "refused"
            }
        );
        candidate.shutdown();
        baseline.shutdown();
    }
    let production = registry.resolve(&format!("{name}@production")).await?;
    println!("{name}@production is now version {}", production.version);

    // 4. A refused candidate stays on record with its report.
    let refused = registry.models().get_version(name, v3.version).await?;
    if let Some(report) = &refused.validation {
        println!(
            "{name}/{} last validation: {}",
            v3.version,
            report.summary()
        );
    }

    // 5. The audit log answers who moved what, when, and why.
    let log = match registry.models().audit_log(&AuditQuery::model(name)).await {
        Ok(log) => log,
        Err(Error::Unsupported(why)) => {
            println!("no audit log: {why}");
            return Ok(());
        }
        Err(e) => return Err(e.into()),
    };
    println!("audit log:");
    for e in log {
        let what = match &e.action {
            AuditAction::AliasSet { alias, from, to } => format!("alias {alias}: {from:?} -> {to}"),
            AuditAction::AliasDeleted { alias, from } => {
                format!("alias {alias} deleted (was {from})")
            }
            AuditAction::StatusChanged { version, from, to } => {
                format!("version {version}: {from} -> {to}")
            }
            AuditAction::VersionCreated { version } => format!("version {version} created"),
            AuditAction::VersionDeleted { version } => format!("version {version} deleted"),
            AuditAction::ModelDeleted => "model deleted".into(),
            other => format!("{other:?}"),
        };
        println!(
            "  #{:<3} {}  {:<5} {what}{}",
            e.id,
            e.at.format("%H:%M:%S%.3f"),
            e.change.actor,
            e.change
                .reason
                .as_deref()
                .map(|r| format!("  ({r})"))
                .unwrap_or_default()
        );
    }
    let history = registry.models().alias_history(name, "production").await?;
    println!(
        "production history: {:?}",
        history.iter().map(|(_, v)| *v).collect::<Vec<_>>()
    );
    Ok(())
}
