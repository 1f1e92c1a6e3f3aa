//! The registry as applications use it, on the embedded backend with real files:
//! registering testdata models, downloading them verified, refusing corrupt artifacts,
//! surviving a registering process killed mid-upload, and finding endpoints.
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::time::Duration;

use mlops_core::testkit::testdata;
use mlops_core::{FileEntry, ModelManifest};
use mlops_registry::{
    Change, Endpoint, Error, Expect, NewVersion, Protocol, Registry, VersionStatus,
};

fn who() -> Change {
    Change::by("test")
}

fn sha256_file(path: &Path) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(Sha256::digest(std::fs::read(path).unwrap()))
}

#[tokio::test]
async fn registers_a_file_and_downloads_it_verified() {
    let dir = tempfile::tempdir().unwrap();
    let registry = Registry::open(dir.path()).await.unwrap();
    let new = NewVersion::new()
        .with_metric("accuracy", 0.93)
        .with_param("hidden", "128");
    let v = registry
        .register("mlp", &testdata("mlp.onnx"), new, &who())
        .await
        .unwrap();
    assert_eq!((v.version, v.status), (1, VersionStatus::Ready));
    let manifest = v.manifest.clone().unwrap();
    assert_eq!(manifest.name, "mlp");
    assert_eq!(
        manifest.files,
        vec![FileEntry {
            path: "mlp.onnx".into(),
            size: std::fs::metadata(testdata("mlp.onnx")).unwrap().len(),
            sha256: sha256_file(&testdata("mlp.onnx")),
        }]
    );
    assert_eq!(v.metrics.get("accuracy"), Some(&0.93));
    assert_eq!(
        v.source.as_deref(),
        Some(testdata("mlp.onnx").to_str().unwrap())
    );

    let out = tempfile::tempdir().unwrap();
    let got = registry.download("mlp/1", out.path()).await.unwrap();
    assert_eq!(got.entry, out.path().join("mlp.onnx"));
    assert_eq!(
        std::fs::read(&got.entry).unwrap(),
        std::fs::read(testdata("mlp.onnx")).unwrap()
    );
    // What was downloaded is the same model: same manifest learned from it.
    let relearned = ModelManifest::from_path(&got.entry).unwrap();
    assert_eq!(relearned.files, manifest.files);
    assert_eq!(relearned.signature, manifest.signature);
}

#[tokio::test]
async fn registers_directories_and_companion_files() {
    let dir = tempfile::tempdir().unwrap();
    let registry = Registry::open(dir.path()).await.unwrap();
    // An MLflow model directory, and an ONNX file with external weights.
    for (name, path, files) in [
        ("iris", testdata("mlflow_onnx"), None),
        (
            "mlp-ext",
            testdata("mlp_external/model.onnx"),
            Some(vec!["model.onnx", "weights.bin"]),
        ),
    ] {
        let v = registry
            .register(name, &path, NewVersion::new(), &who())
            .await
            .unwrap();
        let manifest = v.manifest.clone().unwrap();
        if let Some(files) = files {
            let mut got: Vec<_> = manifest.files.iter().map(|f| f.path.as_str()).collect();
            got.sort_unstable();
            assert_eq!(got, files);
        }
        let out = tempfile::tempdir().unwrap();
        let got = registry
            .download(&format!("{name}/1"), out.path())
            .await
            .unwrap();
        let root = mlops_core::format::package_root(&path).unwrap();
        for f in &manifest.files {
            assert_eq!(
                std::fs::read(out.path().join(&f.path)).unwrap(),
                std::fs::read(root.join(&f.path)).unwrap(),
                "{name}: {}",
                f.path
            );
        }
        assert!(got.entry.exists(), "{}", got.entry.display());
    }
}

#[tokio::test]
async fn a_corrupt_artifact_is_refused_and_leaves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let registry = Registry::open(dir.path()).await.unwrap();
    registry
        .register("mlp", &testdata("mlp.onnx"), NewVersion::new(), &who())
        .await
        .unwrap();
    let stored = dir.path().join("artifacts/models/mlp/1/mlp.onnx");
    let mut bytes = std::fs::read(&stored).unwrap();

    // One flipped byte: same size, other digest.
    bytes[100] ^= 0xff;
    std::fs::write(&stored, &bytes).unwrap();
    let out = tempfile::tempdir().unwrap();
    let err = registry.download("mlp", out.path()).await.unwrap_err();
    assert!(
        matches!(&err, Error::Integrity { path, .. } if path == "models/mlp/1/mlp.onnx"),
        "{err}"
    );
    assert!(err.to_string().contains("sha256"), "{err}");
    assert_eq!(
        std::fs::read_dir(out.path()).unwrap().count(),
        0,
        "no file, no partial file"
    );

    // Truncated.
    std::fs::write(&stored, &bytes[..bytes.len() / 2]).unwrap();
    let err = registry.download("mlp", out.path()).await.unwrap_err();
    assert!(matches!(err, Error::Integrity { .. }), "{err}");

    // Missing.
    std::fs::remove_file(&stored).unwrap();
    let err = registry.download("mlp", out.path()).await.unwrap_err();
    assert!(matches!(err, Error::NotFound { .. }), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_downloads_into_one_directory_each_arrive_whole() {
    // Two servers loading the same version at once share a download directory: each
    // transfer writes a file of its own and renames it into place.
    let dir = tempfile::tempdir().unwrap();
    let registry = Registry::open(dir.path().join("registry")).await.unwrap();
    let model = dir.path().join("w.safetensors");
    big_safetensors(&model, 8 << 20);
    registry
        .register("big", &model, NewVersion::new(), &who())
        .await
        .unwrap();
    let out = dir.path().join("out");
    let downloads = (0..6).map(|_| {
        let (registry, out) = (registry.clone(), out.clone());
        tokio::spawn(async move { registry.download("big/1", &out).await })
    });
    for got in futures::future::join_all(downloads).await {
        let got = got.unwrap().unwrap();
        assert_eq!(got.entry, out.join("w.safetensors"));
    }
    assert_eq!(sha256_file(&out.join("w.safetensors")), sha256_file(&model));
    // Nothing else is left beside it.
    let names: Vec<_> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(names, vec!["w.safetensors".to_owned()]);
}

#[tokio::test]
async fn failed_registrations_are_recorded_and_leave_no_files() {
    let dir = tempfile::tempdir().unwrap();
    let registry = Registry::open(dir.path()).await.unwrap();

    // Not a model: nothing is created.
    let err = registry
        .register(
            "junk",
            &testdata("bad/random.bin"),
            NewVersion::new(),
            &who(),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Model(_)), "{err}");
    assert!(matches!(
        registry.models().get_model("junk").await,
        Err(Error::NotFound { .. })
    ));

    // A manifest naming a file that is not there: the version is FAILED with the reason.
    let mut manifest = ModelManifest::from_path(&testdata("mlp.onnx")).unwrap();
    manifest.files.push(FileEntry {
        path: "missing.bin".into(),
        size: 10,
        sha256: String::new(),
    });
    let root = testdata("");
    let err = registry
        .register_files("mlp", &root, manifest.clone(), NewVersion::new(), &who())
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Io { .. }), "{err}");
    let v = registry.models().get_version("mlp", 1).await.unwrap();
    assert_eq!(v.status, VersionStatus::Failed);
    assert!(v.status_message.unwrap().contains("missing.bin"));
    let left = registry.artifacts().list("models/mlp/1/").await.unwrap();
    assert!(left.is_empty(), "{left:?}");
    assert!(matches!(
        registry.download("mlp/1", dir.path()).await,
        Err(Error::FailedPrecondition(_))
    ));

    // A digest that does not match the file.
    let mut wrong = ModelManifest::from_path(&testdata("mlp.onnx")).unwrap();
    wrong.files[0].sha256 = "00".repeat(32);
    let err = registry
        .register_files("mlp", &root, wrong, NewVersion::new(), &who())
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Integrity { .. }), "{err}");
    assert_eq!(
        registry
            .models()
            .get_version("mlp", 2)
            .await
            .unwrap()
            .status,
        VersionStatus::Failed
    );

    // Paths that escape the package are refused before anything is created.
    for bad in ["../secret", "/etc/passwd", "a/../../b", "a\0b"] {
        let mut escaping = manifest.clone();
        escaping.files = vec![FileEntry {
            path: bad.into(),
            size: 1,
            sha256: String::new(),
        }];
        let err = registry
            .register_files("mlp", &root, escaping, NewVersion::new(), &who())
            .await
            .unwrap_err();
        assert!(matches!(err, Error::InvalidArgument(_)), "{bad}: {err}");
    }
    assert_eq!(
        registry
            .models()
            .get_model("mlp")
            .await
            .unwrap()
            .latest_version,
        2
    );
}

/// Writes a valid safetensors file of about `bytes` bytes.
fn big_safetensors(path: &Path, bytes: usize) {
    use std::io::Write;
    let n = bytes / 4;
    let header = format!(
        r#"{{"w":{{"dtype":"F32","shape":[{n}],"data_offsets":[0,{}]}}}}"#,
        n * 4
    );
    let mut f = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    f.write_all(&(header.len() as u64).to_le_bytes()).unwrap();
    f.write_all(header.as_bytes()).unwrap();
    let block: Vec<u8> = (0..1 << 20).map(|i| (i * 7 % 256) as u8).collect();
    let mut left = n * 4;
    while left > 0 {
        let k = left.min(block.len());
        f.write_all(&block[..k]).unwrap();
        left -= k;
    }
    f.flush().unwrap();
}

const CHILD: &str = "MLOPS_REGISTRY_CRASH_CHILD";

/// Run as a child process by `a_registration_killed_at_any_point_leaves_no_ready_version`:
/// registers the model named in the environment, then waits to be killed.
#[tokio::test]
async fn crash_child() {
    let Ok(spec) = std::env::var(CHILD) else {
        return;
    };
    let (dir, model) = spec.split_once('|').unwrap();
    let registry = Registry::open(dir).await.unwrap();
    registry
        .register("big", Path::new(model), NewVersion::new(), &who())
        .await
        .unwrap();
    // Tells the parent the registration is complete (for its last kill point).
    std::fs::write(format!("{dir}/registered"), b"").unwrap();
    std::thread::sleep(Duration::from_secs(60));
}

#[tokio::test]
async fn a_registration_killed_at_any_point_leaves_no_ready_version() {
    let work = tempfile::tempdir().unwrap();
    let model = work.path().join("big.safetensors");
    big_safetensors(&model, 40 << 20);
    let dir = work.path().join("registry");
    let exe = std::env::current_exe().unwrap();
    // Kill points from "before it opened the database" to "after it finished".
    let mut outcomes = Vec::new();
    // Kill points in milliseconds after start; `None`: once the child says it finished.
    let points = [0u64, 30, 80, 150, 250, 400, 700, 1200].map(Some);
    for delay_ms in points.into_iter().chain([None]) {
        let _ = std::fs::remove_file(dir.join("registered"));
        let mut child = std::process::Command::new(&exe)
            .args(["--exact", "crash_child", "--nocapture", "--test-threads=1"])
            .env(CHILD, format!("{}|{}", dir.display(), model.display()))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        match delay_ms {
            Some(ms) => std::thread::sleep(Duration::from_millis(ms)),
            None => {
                let done = dir.join("registered");
                for _ in 0..6000 {
                    if done.exists() {
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(10));
                }
                assert!(done.exists(), "the child finished registering within 60 s");
            }
        }
        child.kill().unwrap(); // SIGKILL: no destructor, no cleanup.
        child.wait().unwrap();

        // The registry opens cleanly, and every READY version is complete and verifies.
        let registry = Registry::open(&dir).await.unwrap();
        let versions = match registry.models().get_model("big").await {
            Ok(m) => m.latest_version,
            Err(Error::NotFound { .. }) => 0,
            Err(e) => panic!("after a kill at {delay_ms:?} ms: {e}"),
        };
        for n in 1..=versions {
            let v = registry.models().get_version("big", n).await.unwrap();
            if v.status == VersionStatus::Ready {
                let out = tempfile::tempdir().unwrap();
                let got = registry
                    .download(&format!("big/{n}"), out.path())
                    .await
                    .unwrap();
                assert_eq!(sha256_file(&got.entry), sha256_file(&model));
            } else {
                assert_eq!(v.status, VersionStatus::Pending, "killed, not failed");
                assert!(matches!(
                    registry.download(&format!("big/{n}"), work.path()).await,
                    Err(Error::FailedPrecondition(_))
                ));
            }
            outcomes.push(v.status);
        }
        // A killed writer's partial file is never visible: every listed file is whole
        // (a PENDING version may already hold files that completed before the kill).
        let whole = std::fs::metadata(&model).unwrap().len();
        for path in registry.artifacts().list("models/").await.unwrap() {
            let size = registry.artifacts().size(&path).await.unwrap();
            assert_eq!(size, Some(whole), "{path} is complete");
        }
        drop(registry);
    }
    // The kill points covered both outcomes: mid-upload and complete.
    assert!(outcomes.contains(&VersionStatus::Pending), "{outcomes:?}");
    assert!(outcomes.contains(&VersionStatus::Ready), "{outcomes:?}");
}

#[tokio::test]
async fn endpoints_by_model_id_with_heartbeats() {
    let registry = Registry::in_memory().unwrap();
    for _ in 0..2 {
        registry
            .models()
            .create_version("mlp", NewVersion::new().ready(), &who())
            .await
            .unwrap();
    }
    registry
        .models()
        .set_alias("mlp", "production", 2, Expect::Absent, &who(), None)
        .await
        .unwrap();
    let ttl = Duration::from_millis(600);
    let a = registry
        .announce(
            Endpoint::new("mlp", Some(1), "127.0.0.1:8000", Protocol::OipHttp),
            ttl,
        )
        .await
        .unwrap();
    let b = registry
        .announce(
            Endpoint::new("mlp", Some(2), "127.0.0.1:8001", Protocol::OipGrpc),
            ttl,
        )
        .await
        .unwrap();
    // Several lease times later both are still listed: the heartbeats renewed them.
    tokio::time::sleep(ttl * 3).await;
    let addresses = |list: Vec<mlops_registry::LiveEndpoint>| {
        let mut found: Vec<_> = list.into_iter().map(|e| e.endpoint.address).collect();
        found.sort();
        found
    };
    assert_eq!(
        addresses(registry.endpoints_for("mlp").await.unwrap()),
        ["127.0.0.1:8000", "127.0.0.1:8001"]
    );
    assert_eq!(
        addresses(registry.endpoints_for("mlp@production").await.unwrap()),
        ["127.0.0.1:8001"]
    );
    assert_eq!(
        addresses(registry.endpoints_for("models:/mlp/1").await.unwrap()),
        ["127.0.0.1:8000"]
    );
    assert!(matches!(
        registry.endpoints_for("mlp@canary").await,
        Err(Error::NotFound { .. })
    ));
    assert!(matches!(
        registry.endpoints_for("mlp/0").await,
        Err(Error::InvalidArgument(_))
    ));
    assert!(b.lease().expires_at > chrono::Utc::now());

    // A stopped heartbeat deregisters at once.
    a.stop().await;
    assert_eq!(
        addresses(registry.endpoints_for("mlp").await.unwrap()),
        ["127.0.0.1:8001"]
    );
    drop(b);
}

#[tokio::test]
async fn stale_pending_versions_are_failed_and_their_files_removed() {
    let dir = tempfile::tempdir().unwrap();
    let registry = Registry::open(dir.path()).await.unwrap();
    let ready = registry
        .register("mlp", &testdata("mlp.onnx"), NewVersion::new(), &who())
        .await
        .unwrap();
    // A registration that died after storing a file.
    let pending = registry
        .models()
        .create_version("mlp", NewVersion::new(), &who())
        .await
        .unwrap();
    let orphan = format!("models/mlp/{}/model.onnx", pending.version);
    registry
        .artifacts()
        .put(&orphan, &mut &b"partial upload"[..])
        .await
        .unwrap();

    // Not stale yet under a long limit.
    let none = registry
        .fail_stale_pending(Duration::from_secs(3600), &who())
        .await
        .unwrap();
    assert!(none.is_empty());

    let failed = registry
        .fail_stale_pending(Duration::ZERO, &who())
        .await
        .unwrap();
    assert_eq!(failed, vec![("mlp".to_owned(), pending.version)]);
    let v = registry
        .models()
        .get_version("mlp", pending.version)
        .await
        .unwrap();
    assert_eq!(v.status, VersionStatus::Failed);
    assert!(
        v.status_message
            .unwrap()
            .starts_with("registration did not finish")
    );
    assert_eq!(registry.artifacts().size(&orphan).await.unwrap(), None);
    // The READY version and its files are untouched.
    let out = tempfile::tempdir().unwrap();
    assert_eq!(
        registry
            .download(&format!("mlp/{}", ready.version), out.path())
            .await
            .unwrap()
            .version
            .version,
        1
    );
}

#[cfg(unix)]
#[tokio::test]
async fn a_package_linking_outside_itself_is_refused_and_leaves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let registry = Registry::open(dir.path().join("registry")).await.unwrap();
    let package = dir.path().join("model");
    std::fs::create_dir_all(&package).unwrap();
    std::fs::copy(testdata("mlp.onnx"), package.join("mlp.onnx")).unwrap();
    let outside = dir.path().join("hostname");
    std::fs::write(&outside, "a file of this machine").unwrap();
    std::os::unix::fs::symlink(&outside, package.join("notes.txt")).unwrap();

    let err = registry
        .register("mlp", &package, NewVersion::new(), &who())
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("outside the model directory"),
        "{err}"
    );
    assert!(err.to_string().contains("notes.txt"), "{err}");
    assert!(registry.resolve("mlp").await.is_err(), "no version exists");

    // With the link pointing inside, the same package registers and downloads whole.
    std::fs::remove_file(package.join("notes.txt")).unwrap();
    std::fs::write(package.join("README.txt"), "how it was trained").unwrap();
    std::os::unix::fs::symlink("README.txt", package.join("notes.txt")).unwrap();
    let v = registry
        .register("mlp", &package, NewVersion::new(), &who())
        .await
        .unwrap();
    assert_eq!(v.status, VersionStatus::Ready);
    let out = tempfile::tempdir().unwrap();
    let got = registry.download("mlp/1", out.path()).await.unwrap();
    assert_eq!(
        std::fs::read_to_string(got.root.join("notes.txt")).unwrap(),
        "how it was trained"
    );
}
