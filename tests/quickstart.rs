//! The README's main command end to end: the quickstart example, built by `cargo test`
//! with the other examples, run as a user runs it, into a temporary report directory.

#![cfg(all(
    feature = "registry",
    feature = "profile",
    feature = "scale",
    feature = "client",
    feature = "http"
))]

use std::path::PathBuf;
use std::process::Command;

/// The example's binary, beside this test's (`target/<profile>/examples/quickstart`).
fn quickstart() -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    let profile_dir = exe.parent()?.parent()?;
    let path = profile_dir.join("examples").join("quickstart");
    path.is_file().then_some(path)
}

#[test]
fn the_quickstart_runs_the_whole_lifecycle_and_writes_its_report() {
    let Some(exe) = quickstart() else {
        // `cargo test` builds the examples; a test run without them cannot check this.
        assert!(
            std::env::var_os("CI").is_none(),
            "the quickstart example was not built"
        );
        return;
    };
    let out = tempfile::tempdir().unwrap();
    // `cargo test` builds the example without optimisations, whose HTTP path is several
    // times slower than the release build the README runs with the default 5 ms target;
    // a target of 25 ms keeps a busy test machine within it.
    let run = Command::new(&exe)
        .args(["--out".as_ref(), out.path().as_os_str()])
        .args(["--latency-ms", "25"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&run.stdout);
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success(), "{stdout}\n{stderr}");
    for step in 1..=7 {
        assert!(
            stdout.contains(&format!("[{step}/7]")),
            "step {step}:\n{stdout}"
        );
    }
    // Version 2 is promoted, version 3 refused with the reason.
    assert!(
        stdout.contains("mlp@staging (version 2) against version 1: PROMOTED"),
        "{stdout}"
    );
    assert!(
        stdout.contains("mlp/3 (version 3) against version 2: REFUSED"),
        "{stdout}"
    );
    assert!(stdout.contains("FAILED output_agreement"), "{stdout}");
    assert!(stdout.contains("production is now mlp/2"), "{stdout}");
    // The server runs with the profile's settings and answers by model id.
    assert!(stdout.contains("recommended: cpu"), "{stdout}");
    assert!(
        stdout.contains("every answer matches the golden outputs"),
        "{stdout}"
    );
    for file in [
        "manifest.json",
        "validation/mlp-2.json",
        "validation/mlp-3.json",
        "profile/report.json",
        "profile/report.md",
        "scaling/comparison.md",
        "scaling/daily.svg",
        "scaling/spikes.svg",
        "k8s/deployment.yaml",
        "k8s/scaledobject.yaml",
    ] {
        assert!(out.path().join(file).is_file(), "{file} missing:\n{stdout}");
    }
    // The report's recommendation is the one the server was started with.
    let report = std::fs::read_to_string(out.path().join("profile/report.json")).unwrap();
    let report = mlops::core::ProfileReport::from_json(&report).unwrap();
    let id = report.recommendation.unwrap().config_id;
    assert!(
        stdout.contains(&format!("  {id} on cpu:")),
        "{id}:\n{stdout}"
    );
}
