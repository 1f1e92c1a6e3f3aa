//! Prometheus metrics, rendered by `metrics-exporter-prometheus` from the model server's
//! statistics at scrape time: the request path pays nothing for them.
//!
//! Names follow Triton's (`nv_inference_*`, labels `model` and `version`), so dashboards
//! built for Triton read them unchanged; process CPU and memory follow the Prometheus
//! client conventions.

use metrics_exporter_prometheus::PrometheusBuilder;

use crate::server::ModelServer;

/// Renders the exposition text for one server.
pub(crate) fn render(server: &ModelServer) -> String {
    // A fresh recorder of our own for each scrape: not the process-wide one (an
    // application may install its own, and several servers may share a process), and
    // not a long-lived one, whose counters could only grow (a reloaded model restarts
    // from zero) and would keep unloaded models' series forever.
    let recorder = PrometheusBuilder::new().build_recorder();
    metrics::with_local_recorder(&recorder, || {
        for (name, versions) in server.models() {
            for version in versions {
                let Ok(s) = server.stats(&name, Some(version)) else {
                    continue;
                };
                let labels = [("model", name.clone()), ("version", version.to_string())];
                let us = |d: std::time::Duration| u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
                metrics::counter!("nv_inference_request_success", &labels)
                    .absolute(s.request_success);
                metrics::counter!("nv_inference_request_failure", &labels)
                    .absolute(s.request_failure);
                metrics::counter!("nv_inference_count", &labels).absolute(s.inference_count);
                metrics::counter!("nv_inference_exec_count", &labels).absolute(s.execution_count);
                metrics::counter!("nv_inference_request_duration_us", &labels)
                    .absolute(us(s.request_duration));
                metrics::counter!("nv_inference_queue_duration_us", &labels)
                    .absolute(us(s.queue_duration));
                metrics::counter!("nv_inference_compute_input_duration_us", &labels)
                    .absolute(us(s.compute_input_duration));
                metrics::counter!("nv_inference_compute_infer_duration_us", &labels)
                    .absolute(us(s.compute_infer_duration));
                metrics::counter!("nv_inference_compute_output_duration_us", &labels)
                    .absolute(us(s.compute_output_duration));
                metrics::gauge!("nv_inference_pending_request_count", &labels)
                    .set(s.pending as f64);
                for (size, count) in &s.batch_sizes {
                    let labels = [
                        ("model", name.clone()),
                        ("version", version.to_string()),
                        ("batch_size", size.to_string()),
                    ];
                    metrics::counter!("mlops_inference_batch_executions", &labels).absolute(*count);
                }
            }
        }
        if let Some((cpu, rss)) = process_usage() {
            metrics::counter!("process_cpu_seconds_total").absolute(cpu as u64);
            metrics::gauge!("process_cpu_seconds").set(cpu);
            metrics::gauge!("process_resident_memory_bytes").set(rss as f64);
        }
    });
    recorder.handle().render()
}

/// CPU seconds used and resident bytes of this process, from `/proc` (Linux).
fn process_usage() -> Option<(f64, u64)> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the parenthesised command name; utime and stime are the 12th and 13th.
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let rss_kib: u64 = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()?;
    // Linux reports in clock ticks of 1/100 s (USER_HZ) on every mainstream architecture.
    Some((ticks / 100.0, rss_kib * 1024))
}
