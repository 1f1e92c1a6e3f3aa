//! Launching real servers under a budget, and the profiler end to end over them.

use std::path::Path;
use std::time::Duration;

use mlops_core::ModelManifest;
use mlops_core::profile::{ComputeDevice, ConfigStatus, ServingConfig};
use mlops_core::testkit::testdata;
use mlops_profile::input::{self, InputOptions};
use mlops_profile::search::{Axes, BruteForce, SearchSpace};
use mlops_profile::{
    Budget, LoadConfig, Profiler, ProfilerConfig, Protocol, ServerCommand, ServerProcess,
};

fn ours() -> ServerCommand {
    ServerCommand::ours(env!("CARGO_BIN_EXE_mlops-profile-server"))
}

fn alive(pid: u32) -> bool {
    // A zombie still answers kill(0): look at its state instead.
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| {
            !s.rsplit(')')
                .next()
                .unwrap_or("")
                .trim_start()
                .starts_with('Z')
        })
        .unwrap_or(false)
}

fn status_field(pid: u32, field: &str) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| {
            l.strip_prefix(&format!("{field}:"))
                .map(|v| v.trim().to_owned())
        })
        .unwrap_or_default()
}

fn environ(pid: u32) -> Vec<String> {
    std::fs::read(format!("/proc/{pid}/environ"))
        .unwrap_or_default()
        .split(|b| *b == 0)
        .map(|v| String::from_utf8_lossy(v).into_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn our_server_starts_under_its_budget_and_is_gone_after_drop() {
    let config = ServingConfig {
        cpu_cores: 1,
        max_batch_size: 8,
        ..ServingConfig::default()
    };
    let budget = Budget::for_config(&config).expect("budget");
    let cpu = budget.cpus.as_ref().expect("pinned")[0];
    let server = ServerProcess::launch(&ours(), &budget, &config, &testdata("mlp.onnx"), "mlp")
        .await
        .expect("ready");
    let pid = server.pid();
    assert!(alive(pid));
    assert_eq!(status_field(pid, "Cpus_allowed_list"), cpu.to_string());
    let env = environ(pid);
    assert!(env.contains(&"OMP_NUM_THREADS=1".to_owned()), "{env:?}");
    assert!(
        env.contains(&"CUDA_VISIBLE_DEVICES=".to_owned()),
        "a CPU budget hides GPUs"
    );
    // Its own process group, so the whole tree is signalled together.
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("stat");
    let fields: Vec<&str> = stat
        .rsplit(')')
        .next()
        .expect("fields")
        .split_whitespace()
        .collect();
    assert_eq!(fields[2], pid.to_string(), "pgrp is the child's own pid");
    // It serves the model.
    let ready = reqwest_like_get(&format!("{}/v2/models/mlp", server.http_url())).await;
    assert!(ready.contains("\"name\":\"mlp\""), "{ready}");
    drop(server);
    assert!(!alive(pid), "no orphan survives");
}

/// A GET with hyper, returning the body.
async fn reqwest_like_get(url: &str) -> String {
    use http_body_util::BodyExt;
    let client: hyper_util::client::legacy::Client<_, http_body_util::Empty<bytes::Bytes>> =
        hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
            .build_http();
    let response = client.get(url.parse().expect("url")).await.expect("get");
    let body = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    String::from_utf8_lossy(&body).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gpu_budget_sets_the_mps_environment() {
    let config = ServingConfig {
        device: ComputeDevice::Gpu { index: 0 },
        gpu_fraction: Some(0.25),
        gpu_memory_bytes: Some(4 << 30),
        ..ServingConfig::default()
    };
    let env = Budget::for_config(&config).expect("budget").environment();
    let get = |k: &str| env.iter().find(|(key, _)| key == k).map(|(_, v)| v.clone());
    assert_eq!(get("CUDA_VISIBLE_DEVICES").as_deref(), Some("0"));
    assert_eq!(
        get("CUDA_MPS_ACTIVE_THREAD_PERCENTAGE").as_deref(),
        Some("25")
    );
    assert_eq!(
        get("CUDA_MPS_PINNED_DEVICE_MEM_LIMIT").as_deref(),
        Some("0=4096M")
    );
    let too_many = ServingConfig {
        cpu_cores: 4096,
        ..ServingConfig::default()
    };
    let err = Budget::for_config(&too_many).expect_err("more cores than the host");
    assert!(err.to_string().contains("4096 CPU cores"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_never_gets_ready_is_stopped_with_the_reason() {
    let config = ServingConfig::default();
    let budget = Budget::for_config(&config).expect("budget");
    let sleeper = ServerCommand::new(
        "sh",
        vec!["-c".into(), "echo starting; exec sleep 30".into()],
        "http://127.0.0.1:{http_port}/ready",
    )
    .with_ready_timeout(Duration::from_millis(600));
    let started = std::time::Instant::now();
    let err = ServerProcess::launch(&sleeper, &budget, &config, Path::new("unused"), "m")
        .await
        .expect_err("never ready");
    let text = err.to_string();
    assert!(
        text.contains("not ready") && text.contains("starting"),
        "{text}"
    );
    assert!(started.elapsed() < Duration::from_secs(10));
    // No sleep process of ours is left.
    let left = std::fs::read_dir("/proc")
        .expect("proc")
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| alive(pid))
        .filter(|&pid| {
            let ppid = status_field(pid, "PPid");
            ppid == std::process::id().to_string()
                && std::fs::read_to_string(format!("/proc/{pid}/cmdline"))
                    .unwrap_or_default()
                    .contains("sleep")
        })
        .count();
    assert_eq!(left, 0);

    let crasher = ServerCommand::new(
        "sh",
        vec!["-c".into(), "echo no model here >&2; exit 3".into()],
        "http://127.0.0.1:{http_port}/ready",
    );
    let err = ServerProcess::launch(&crasher, &budget, &config, Path::new("unused"), "m")
        .await
        .expect_err("exits");
    let text = err.to_string();
    assert!(
        text.contains("exited") && text.contains("no model here"),
        "{text}"
    );

    let err = ServerProcess::launch(
        &ours(),
        &budget,
        &config,
        &testdata("bad/not_a_model.txt"),
        "m",
    )
    .await
    .expect_err("not a model");
    assert!(err.to_string().contains("exited"), "{err}");
}

fn quick_profiler(latency_ms: f64) -> Profiler {
    let path = testdata("mlp.onnx");
    let manifest = ModelManifest::from_path(&path).expect("manifest");
    let requests = input::for_model(&manifest, &path, &InputOptions::default()).expect("inputs");
    let load = LoadConfig::default()
        .with_warmup(Duration::from_millis(100))
        .with_window(Duration::from_millis(200))
        .with_max_trials(4)
        .with_check_outputs(true);
    let config = ProfilerConfig::default()
        .with_latency_target_ms(latency_ms)
        .with_load(load)
        .with_protocol(Protocol::HttpBinary)
        .with_max_concurrency(4);
    Profiler::new(&path, &manifest, ours(), requests, config).expect("profiler")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_profiler_measures_recommends_and_confirms() {
    let axes = Axes {
        devices: vec![ComputeDevice::Cpu, ComputeDevice::Gpu { index: 0 }],
        cpu_cores: vec![1],
        gpu_fractions: vec![0.5],
        max_batch_sizes: vec![1, 8],
        queue_delays_us: vec![0],
        instances: vec![1],
        intra_op_threads: vec![1],
    };
    let report = quick_profiler(50.0)
        .run(SearchSpace::grid(&axes), &mut BruteForce)
        .await
        .expect("report");
    let measured: Vec<_> = report.measured().collect();
    assert_eq!(
        measured.len(),
        2,
        "both CPU configurations: {:#?}",
        report.configs
    );
    for (profile, capacity) in &measured {
        assert!(*capacity > 50.0, "{}: {capacity}", profile.id);
        let at = profile.at_capacity().expect("capacity point");
        assert!(at.latency.p99_ms <= 50.0);
        assert_eq!(
            at.error_count(),
            0,
            "answers checked against the golden outputs"
        );
        let resources = at.resources.as_ref().expect("resources sampled");
        assert!(
            resources.samples > 0 && resources.server_rss_bytes_max > 0,
            "{resources:?}"
        );
    }
    // The GPU configuration is listed, with why it did not run (no GPU here, or no CUDA).
    let gpu = report
        .configs
        .iter()
        .find(|c| c.config.device.is_gpu())
        .expect("listed");
    match &gpu.status {
        ConfigStatus::Unavailable { reason } => assert!(!reason.is_empty()),
        other => panic!("GPU configuration: {other:?}"),
    }
    let r = report.recommendation.as_ref().expect("recommendation");
    assert!(r.meets_target);
    assert_eq!(r.replicas, 1);
    let best = measured.iter().map(|(_, c)| *c).fold(0.0, f64::max);
    assert_eq!(
        r.capacity_rps, best,
        "same cost, so the higher capacity wins"
    );
    let confirmation = report.confirmation.as_ref().expect("confirmed");
    assert_eq!(confirmation.config_id, r.config_id);
    assert!(confirmation.measurement.requests > 0);
    assert_eq!(report.search.measured, 2);
    assert_eq!(
        report.search.space_size, 4,
        "two CPU and two GPU configurations"
    );
    assert!(!report.samples.is_empty());
    // The JSON is what mlops-scale reads back.
    let back = mlops_core::ProfileReport::from_json(&report.to_json()).expect("round trip");
    assert_eq!(back, report);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_impossible_target_names_the_closest_configuration() {
    let axes = Axes {
        devices: vec![ComputeDevice::Cpu],
        cpu_cores: vec![1],
        gpu_fractions: vec![],
        max_batch_sizes: vec![8],
        queue_delays_us: vec![0],
        instances: vec![1],
        intra_op_threads: vec![1],
    };
    let report = quick_profiler(0.001)
        .run(SearchSpace::grid(&axes), &mut BruteForce)
        .await
        .expect("report");
    let r = report.recommendation.as_ref().expect("the closest one");
    assert!(!r.meets_target);
    assert!(r.reason.contains("no configuration meets"), "{}", r.reason);
    assert_eq!(report.configs[0].capacity_rps, Some(0.0));
    assert!(report.confirmation.is_none());
}

fn one_cpu_config(batch: usize) -> Axes {
    Axes {
        devices: vec![ComputeDevice::Cpu],
        cpu_cores: vec![1],
        gpu_fractions: vec![],
        max_batch_sizes: vec![batch],
        queue_delays_us: vec![0],
        instances: vec![1],
        intra_op_threads: vec![1],
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_dies_mid_run_is_a_failed_configuration_and_the_search_goes_on() {
    // Our server, killed by `timeout` two seconds after it starts: during the sweep.
    let mut args = vec![
        "2".to_owned(),
        env!("CARGO_BIN_EXE_mlops-profile-server").to_owned(),
    ];
    args.extend(ours().args);
    let dying = ServerCommand::new("timeout", args, ours().ready_url);
    let path = testdata("mlp.onnx");
    let manifest = ModelManifest::from_path(&path).expect("manifest");
    let requests = input::for_model(&manifest, &path, &InputOptions::default()).expect("inputs");
    let load = LoadConfig::default()
        .with_warmup(Duration::from_millis(100))
        .with_window(Duration::from_millis(300))
        .with_max_trials(4);
    let config = ProfilerConfig::default()
        .with_load(load)
        .with_latency_target_ms(50.0);
    let profiler = Profiler::new(&path, &manifest, dying, requests, config).expect("profiler");
    let mut axes = one_cpu_config(1);
    axes.max_batch_sizes = vec![1, 8];
    let report = profiler
        .run(SearchSpace::grid(&axes), &mut BruteForce)
        .await
        .expect("a report, not an error");
    assert_eq!(
        report.search.measured, 2,
        "the search went on after the first failure"
    );
    for c in &report.configs {
        match &c.status {
            ConfigStatus::Failed { reason } => assert!(reason.contains("exited"), "{reason}"),
            other => panic!("{}: {other:?}", c.id),
        }
    }
    assert_eq!(
        report.recommendation, None,
        "a failed configuration is never recommended"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_answers_only_errors_is_a_failed_configuration() {
    // Requests for another model: every one is refused with 400.
    let path = testdata("mlp.onnx");
    let manifest = ModelManifest::from_path(&path).expect("manifest");
    let tagger = testdata("torch_tagger.onnx");
    let wrong = input::for_model(
        &ModelManifest::from_path(&tagger).expect("manifest"),
        &tagger,
        &InputOptions::default(),
    )
    .expect("inputs");
    let load = LoadConfig::default()
        .with_warmup(Duration::from_millis(100))
        .with_window(Duration::from_millis(200))
        .with_max_trials(3);
    let config = ProfilerConfig::default().with_load(load);
    let profiler = Profiler::new(&path, &manifest, ours(), wrong, config).expect("profiler");
    let report = profiler
        .run(SearchSpace::grid(&one_cpu_config(8)), &mut BruteForce)
        .await
        .expect("report");
    match &report.configs[0].status {
        ConfigStatus::Failed { reason } => {
            assert!(
                reason.contains("no request was answered") && reason.contains("http_400"),
                "{reason}"
            )
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(report.configs[0].curve.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupted_run_keeps_what_was_measured() {
    let profiler = quick_profiler(50.0);
    let flag = profiler.interrupt_flag();
    let mut axes = one_cpu_config(1);
    axes.max_batch_sizes = vec![1, 4, 8];
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(3)).await;
        flag.store(true, std::sync::atomic::Ordering::Release);
    });
    let report = profiler
        .run(SearchSpace::grid(&axes), &mut BruteForce)
        .await
        .expect("report");
    assert!(report.interrupted);
    assert!(
        report.search.measured >= 1 && report.search.measured < 3,
        "{}",
        report.search.measured
    );
    let first = &report.configs[0];
    assert!(
        !first.curve.is_empty(),
        "the points measured before the interrupt are kept"
    );
    assert!(
        report
            .configs
            .iter()
            .any(|c| c.status == ConfigStatus::Skipped)
    );
    assert!(
        report.confirmation.is_none(),
        "no confirmation after an interrupt"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_memory_limit_holds_the_server() {
    let config = ServingConfig::default();
    let limit = 8u64 << 30;
    let budget = Budget::for_config(&config)
        .expect("budget")
        .with_memory_limit(limit);
    let server = ServerProcess::launch(&ours(), &budget, &config, &testdata("mlp.onnx"), "mlp")
        .await
        .expect("ready under 8 GiB");
    let how = server.memory_limit().to_owned();
    if how.starts_with("RLIMIT_AS") {
        let limits =
            std::fs::read_to_string(format!("/proc/{}/limits", server.pid())).expect("limits");
        let line = limits
            .lines()
            .find(|l| l.starts_with("Max address space"))
            .expect("address space line");
        assert!(line.contains(&limit.to_string()), "{line}");
    } else {
        assert!(how.starts_with("cgroup memory.max"), "{how}");
        let cgroup =
            std::fs::read_to_string(format!("/proc/{}/cgroup", server.pid())).expect("cgroup");
        assert!(cgroup.contains("mlops-profile-"), "{cgroup}");
    }
    drop(server);

    // Far too little: the server cannot even start, and says so.
    let starved = Budget::for_config(&config)
        .expect("budget")
        .with_memory_limit(16 << 20);
    let err = ServerProcess::launch(&ours(), &starved, &config, &testdata("mlp.onnx"), "mlp")
        .await
        .expect_err("16 MiB is not enough");
    assert!(err.to_string().contains("exited"), "{err}");
}
