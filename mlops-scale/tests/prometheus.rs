//! Metrics read from a real model server's Prometheus endpoint on 127.0.0.1, and what the
//! source does when an endpoint is down, answers an error, or lists another model.

mod common;

use std::sync::Arc;
use std::time::Duration;

use mlops_core::testkit::Golden;
use mlops_runtime::ModelServer;
use mlops_scale::Error;
use mlops_scale::scaler::{MetricsSource, PrometheusSource, Totals};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn serve() -> (Arc<ModelServer>, String) {
    common::serve_echo_mlp(Duration::ZERO).await
}

async fn infer(server: &ModelServer, n: usize) {
    let golden = Golden::load("mlp").expect("golden");
    let row = golden.inputs[0]
        .split_batch(&[1, 3])
        .expect("a row")
        .remove(0);
    for _ in 0..n {
        server
            .infer("mlp", None, vec![row.clone()])
            .await
            .expect("an answer");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_servers_counters_become_rates() {
    let (server, url) = serve().await;
    let source = PrometheusSource::new([&url], "mlp").unwrap();
    infer(&server, 25).await;
    let totals = source.totals().await.unwrap();
    assert_eq!(totals.requests, 25.0);
    assert_eq!(totals.pending, 0.0);
    assert!(totals.request_duration_us > 0.0);

    // The first scrape has only the queue; the second the rates since.
    let first = source.scrape().await.unwrap();
    assert_eq!(first.request_rate_rps, None);
    assert_eq!(first.queue_depth, Some(0.0));
    infer(&server, 15).await;
    let second = source.scrape().await.unwrap();
    let rate = second.request_rate_rps.unwrap();
    let answered = rate * second.window.as_secs_f64();
    assert!((answered - 15.0).abs() < 1e-6, "{second:?}");
    assert!(second.in_flight.unwrap() >= 0.0);
    assert_eq!(second.latency_ms, None);
    assert!(source.name().contains(&url));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_endpoint_is_summed_and_one_down_fails_the_scrape() {
    let (a, url_a) = serve().await;
    let (b, url_b) = serve().await;
    infer(&a, 3).await;
    infer(&b, 4).await;
    let both = PrometheusSource::new([&url_a, &url_b], "mlp").unwrap();
    assert_eq!(both.totals().await.unwrap().requests, 7.0);

    // A port with nothing behind it.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let down = PrometheusSource::new([url_a.clone(), format!("http://{closed}/metrics")], "mlp")
        .unwrap()
        .with_timeout(Duration::from_millis(500));
    match down.scrape().await {
        Err(Error::Metrics {
            source_name,
            reason,
        }) => {
            assert!(source_name.contains(&closed.to_string()), "{source_name}");
            assert!(reason.contains("connect"), "{reason}");
        }
        other => panic!("{other:?}"),
    }
    let unknown = PrometheusSource::new([&url_a], "bert").unwrap();
    match unknown.totals().await {
        Err(Error::Metrics { reason, .. }) => assert!(reason.contains("'bert'"), "{reason}"),
        other => panic!("{other:?}"),
    }
}

/// Answers every connection with `response`, as a misbehaving exporter might.
async fn fixed_server(response: String) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a port");
    let addr = listener.local_addr().expect("its address");
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let mut buf = [0u8; 1024];
            let _ = stream.read(&mut buf).await;
            let _ = stream.write_all(response.as_bytes()).await;
        }
    });
    format!("http://{addr}/metrics")
}

#[tokio::test]
async fn exposition_pages_are_read_as_prometheus_writes_them() {
    // Chunked, with a chunk boundary inside a metric's name.
    let parts = [
        "# TYPE nv_inference_request_success counter\nnv_inference_",
        "request_success{model=\"m\",version=\"1\"} 10\n",
        "nv_inference_request_failure{model=\"m\",version=\"1\"} 2 1700000000000\n\
         nv_inference_request_success{model=\"other\",version=\"1\"} 99\n",
    ];
    let mut page = String::from(
        "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n",
    );
    for part in parts {
        page.push_str(&format!("{:x}\r\n{part}\r\n", part.len()));
    }
    page.push_str("0\r\n\r\n");
    let url = fixed_server(page).await;
    let source = PrometheusSource::new([url], "m").unwrap();
    assert_eq!(source.totals().await.unwrap().requests, 12.0);

    let url =
        fixed_server("HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n".to_string())
            .await;
    match PrometheusSource::new([url], "m").unwrap().totals().await {
        Err(Error::Metrics { reason, .. }) => assert!(reason.contains("503"), "{reason}"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn rates_between_two_scrapes_and_a_counter_reset() {
    let earlier = Totals {
        requests: 100.0,
        request_duration_us: 2_000_000.0,
        pending: 1.0,
        ..Totals::default()
    };
    let later = Totals {
        requests: 300.0,
        request_duration_us: 6_000_000.0,
        pending: 4.0,
        ..Totals::default()
    };
    let m = later.since(&earlier, Duration::from_secs(2));
    assert_eq!(m.request_rate_rps, Some(100.0));
    // 4 s in the server over 2 s: 2 requests in it on average.
    assert_eq!(m.in_flight, Some(2.0));
    assert_eq!(m.queue_depth, Some(4.0));
    // A reloaded model restarts its counters: count from zero.
    let reset = Totals {
        requests: 50.0,
        request_duration_us: 1_000_000.0,
        pending: 0.0,
        ..Totals::default()
    };
    assert_eq!(
        reset.since(&later, Duration::from_secs(1)).request_rate_rps,
        Some(50.0)
    );
}

#[test]
fn only_plain_http_urls_are_taken() {
    for (url, why) in [
        ("https://h:1/metrics", "only http://"),
        ("http://:8002/metrics", "no host"),
        ("http://h:port/metrics", "port"),
    ] {
        match PrometheusSource::new([url], "m") {
            Err(Error::InvalidConfig { reason, .. }) => assert!(reason.contains(why), "{reason}"),
            other => panic!("{url}: {other:?}"),
        }
    }
    assert!(PrometheusSource::new(Vec::<String>::new(), "m").is_err());
    assert!(PrometheusSource::new(["http://127.0.0.1:8002"], "m").is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resolved_name_reads_every_address_and_counts_the_servers() {
    let (a, url_a) = serve().await;
    let (b, url_b) = serve().await;
    infer(&a, 3).await;
    infer(&b, 4).await;
    // `dns+` resolves the host at every scrape (here an address, which names itself).
    let resolved = url_a.replacen("http://", "dns+http://", 1);
    let source = PrometheusSource::new([resolved.as_str(), url_b.as_str()], "mlp").unwrap();
    assert_eq!(source.replicas_seen(), None, "nothing read yet");
    let totals = source.totals().await.unwrap();
    assert_eq!((totals.requests, totals.endpoints), (7.0, 2));
    source.scrape().await.unwrap();
    assert_eq!(source.replicas_seen(), Some(2));
    // Rates are summed per server.
    infer(&a, 5).await;
    infer(&b, 5).await;
    let m = source.scrape().await.unwrap();
    let answered = m.request_rate_rps.unwrap() * m.window.as_secs_f64();
    assert!((answered - 10.0).abs() < 1e-6, "{m:?}");

    // A name that does not resolve fails the scrape: it never reads as no demand.
    let unresolved = PrometheusSource::new(["dns+http://no-such-host.invalid:8000/metrics"], "mlp")
        .unwrap()
        .with_timeout(Duration::from_millis(500));
    match unresolved.scrape().await {
        Err(Error::Metrics { reason, .. }) => assert!(reason.contains("resolve"), "{reason}"),
        other => panic!("{other:?}"),
    }

    let err = PrometheusSource::new(["dns+https://x:1/metrics"], "mlp").unwrap_err();
    assert!(err.to_string().contains("dns+http://"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn process_and_gpu_figures_become_utilisation_per_server() {
    // A real server's page: its process CPU seconds, over the one core it is given.
    let (server, url) = serve().await;
    let source = PrometheusSource::new([&url], "mlp")
        .unwrap()
        .with_cpu_cores(1.0);
    let first = source.totals().await.unwrap();
    assert!(first.cpu_seconds.is_some(), "{first:?}");
    assert_eq!(first.gpu_utilization, None);
    source.scrape().await.unwrap();
    infer(&server, 50).await;
    let m = source.scrape().await.unwrap();
    assert_eq!(m.utilization.len(), 1, "{m:?}");
    // The test process's own CPU (every test in it, counted in 10-ms ticks over a few
    // milliseconds): only its sign and finiteness are certain here.
    assert!(
        m.utilization[0] >= 0.0 && m.utilization[0].is_finite(),
        "{m:?}"
    );

    // A page with GPU figures (as Triton writes them): their mean, instead of the CPU.
    let page = "# TYPE nv_gpu_utilization gauge\n\
        nv_gpu_utilization{gpu_uuid=\"GPU-a\"} 0.5\n\
        nv_gpu_utilization{gpu_uuid=\"GPU-b\"} 0.7\n\
        process_cpu_seconds_total 12\n\
        nv_inference_request_success{model=\"mlp\",version=\"1\"} 10\n";
    let url = fixed_server(format!(
        "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n{page}",
        page.len()
    ))
    .await;
    let gpu = PrometheusSource::new([&url], "mlp")
        .unwrap()
        .with_cpu_cores(2.0);
    let totals = gpu.totals().await.unwrap();
    assert!(
        (totals.gpu_utilization.unwrap() - 0.6).abs() < 1e-12,
        "{totals:?}"
    );
    assert_eq!(totals.cpu_seconds, Some(12.0));
    gpu.scrape().await.unwrap();
    let m = gpu.scrape().await.unwrap();
    assert_eq!(m.utilization.len(), 1);
    assert!((m.utilization[0] - 0.6).abs() < 1e-12, "{m:?}");
}
