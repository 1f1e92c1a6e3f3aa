//! NVIDIA's perf_analyzer, the load tester Triton's users point at a server, against
//! `examples/serve.rs` on the MLP and the CNN: over HTTP with JSON tensors (random bit
//! patterns, NaN and Infinity among them), over HTTP with binary tensors, and over gRPC.
//! Every run must finish and every request be answered: the server's statistics count no
//! failure. `scripts/test.sh` installs perf_analyzer (`scripts/perf-analyzer.sh`) and names
//! it in `MLOPS_TEST_PERF_ANALYZER`.

#![cfg(all(
    feature = "registry",
    feature = "profile",
    feature = "http",
    feature = "grpc"
))]
#![allow(clippy::unwrap_used)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// An example's binary, beside this test's (`target/<profile>/examples/NAME`).
fn example(name: &str) -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    let path = exe.parent()?.parent()?.join("examples").join(name);
    path.is_file().then_some(path)
}

/// A port free at the time of asking.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A GET on a fresh connection: the status and the body.
fn get(addr: SocketAddr, path: &str) -> Option<(u16, String)> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(1)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut reply = String::new();
    stream.read_to_string(&mut reply).ok()?;
    let status = reply.split(' ').nth(1)?.parse().ok()?;
    let body = reply.split_once("\r\n\r\n")?.1.to_owned();
    Some((status, body))
}

/// The server, stopped when dropped.
struct Serve(Child);

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn perf_analyzer_load_tests_both_models_over_every_protocol_without_an_error() {
    let (Some(serve), Some(perf_analyzer)) = (
        example("serve"),
        std::env::var_os("MLOPS_TEST_PERF_ANALYZER").map(PathBuf::from),
    ) else {
        // `scripts/test.sh` builds the examples and installs perf_analyzer; a bare `cargo
        // test` without them cannot check this.
        assert!(
            std::env::var_os("CI").is_none(),
            "the serve example or perf_analyzer (MLOPS_TEST_PERF_ANALYZER) is missing"
        );
        return;
    };
    let models = tempfile::tempdir().unwrap();
    for file in ["mlp.onnx", "cnn.onnx"] {
        std::fs::copy(
            mlops::core::testkit::testdata(file),
            models.path().join(file),
        )
        .unwrap();
    }
    let http: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let grpc: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let metrics: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let _server = Serve(
        Command::new(serve)
            .arg(models.path())
            .args(["--http", &http.to_string()])
            .args(["--grpc", &grpc.to_string()])
            .args(["--metrics", &metrics.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let started = Instant::now();
    while get(http, "/v2/health/ready").map(|r| r.0) != Some(200) {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the server did not become ready"
        );
        std::thread::sleep(Duration::from_millis(100));
    }

    let runs: [(&str, &[&str]); 3] = [
        (
            "HTTP, JSON tensors",
            &[
                "-i",
                "http",
                "--input-tensor-format",
                "json",
                "--output-tensor-format",
                "json",
            ],
        ),
        ("HTTP, binary tensors", &["-i", "http"]),
        ("gRPC", &["-i", "grpc"]),
    ];
    for model in ["mlp", "cnn"] {
        for (what, flags) in runs {
            let url = if flags.contains(&"grpc") { grpc } else { http };
            let run = Command::new(&perf_analyzer)
                .args(["-m", model, "-u", &url.to_string()])
                .args(flags)
                .args(["--concurrency-range", "4"])
                .args(["--measurement-interval", "500"])
                .args(["--stability-percentage", "100", "--max-trials", "3"])
                .output()
                .unwrap();
            let stdout = String::from_utf8_lossy(&run.stdout);
            let stderr = String::from_utf8_lossy(&run.stderr);
            assert!(
                run.status.success(),
                "{model} over {what}: {}\n{stdout}\n{stderr}",
                run.status
            );
            assert!(
                stdout.contains("Throughput:") && !stdout.contains("Failed"),
                "{model} over {what}:\n{stdout}\n{stderr}"
            );
        }
        // Every request answered: no failure in the model's statistics.
        let (status, body) = get(http, &format!("/v2/models/{model}/stats")).unwrap();
        assert_eq!(status, 200, "{body}");
        let stats: serde_json::Value = serde_json::from_str(&body).unwrap();
        let inference = &stats["model_stats"][0]["inference_stats"];
        assert_eq!(inference["fail"]["count"], 0, "{model}: {body}");
        assert!(
            inference["success"]["count"].as_u64().unwrap() > 100,
            "{model}: {body}"
        );
    }
}
