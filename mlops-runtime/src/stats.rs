//! Per-model statistics: the figures Triton exports, kept with atomics on the hot path.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Counters and cumulative durations for one model version.
#[derive(Debug, Default)]
pub(crate) struct ModelStats {
    request_success: AtomicU64,
    request_failure: AtomicU64,
    inference_count: AtomicU64,
    execution_count: AtomicU64,
    request_ns: AtomicU64,
    queue_ns: AtomicU64,
    compute_input_ns: AtomicU64,
    compute_infer_ns: AtomicU64,
    compute_output_ns: AtomicU64,
    pending: AtomicU64,
    /// Executions by batch size; only instance threads write it, once per batch.
    batch_sizes: Mutex<Vec<u64>>,
}

/// A consistent-enough copy of a model's statistics (each counter is read atomically;
/// the set is not one snapshot).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StatsSnapshot {
    /// Requests answered with outputs.
    pub request_success: u64,
    /// Requests answered with an error (including queue timeouts and overload).
    pub request_failure: u64,
    /// Inferences run: the sum of batch sizes (rows), as Triton counts them.
    pub inference_count: u64,
    /// Model executions (batches). `inference_count / execution_count` is the mean
    /// batch size.
    pub execution_count: u64,
    /// Cumulative time from enqueue to answer, successful requests only.
    pub request_duration: Duration,
    /// Cumulative time requests waited in the queue.
    pub queue_duration: Duration,
    /// Cumulative time spent stacking inputs into batches.
    pub compute_input_duration: Duration,
    /// Cumulative time spent in the backend.
    pub compute_infer_duration: Duration,
    /// Cumulative time spent splitting outputs back to requests.
    pub compute_output_duration: Duration,
    /// Requests queued or running now.
    pub pending: u64,
    /// `(batch size, executions)` for every size that ran, ascending.
    pub batch_sizes: Vec<(usize, u64)>,
}

impl StatsSnapshot {
    /// The mean batch size, or 0 before any execution.
    pub fn mean_batch_size(&self) -> f64 {
        if self.execution_count == 0 {
            0.0
        } else {
            self.inference_count as f64 / self.execution_count as f64
        }
    }
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

impl ModelStats {
    pub(crate) fn enqueued(&self) {
        self.pending.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn answered(&self, ok: bool, total: Duration) {
        self.pending.fetch_sub(1, Ordering::Relaxed);
        if ok {
            self.request_success.fetch_add(1, Ordering::Relaxed);
            self.request_ns.fetch_add(nanos(total), Ordering::Relaxed);
        } else {
            self.request_failure.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// A request refused before it was queued.
    pub(crate) fn refused(&self) {
        self.request_failure.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn queued_for(&self, waited: Duration) {
        self.queue_ns.fetch_add(nanos(waited), Ordering::Relaxed);
    }

    pub(crate) fn executed(&self, rows: usize, input: Duration, infer: Duration, output: Duration) {
        self.execution_count.fetch_add(1, Ordering::Relaxed);
        self.inference_count
            .fetch_add(rows as u64, Ordering::Relaxed);
        self.compute_input_ns
            .fetch_add(nanos(input), Ordering::Relaxed);
        self.compute_infer_ns
            .fetch_add(nanos(infer), Ordering::Relaxed);
        self.compute_output_ns
            .fetch_add(nanos(output), Ordering::Relaxed);
        let mut sizes = self.batch_sizes.lock().unwrap_or_else(|p| p.into_inner());
        if sizes.len() <= rows {
            sizes.resize(rows + 1, 0);
        }
        sizes[rows] += 1;
    }

    pub(crate) fn snapshot(&self) -> StatsSnapshot {
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let duration = |a: &AtomicU64| Duration::from_nanos(a.load(Ordering::Relaxed));
        let sizes = self.batch_sizes.lock().unwrap_or_else(|p| p.into_inner());
        StatsSnapshot {
            request_success: get(&self.request_success),
            request_failure: get(&self.request_failure),
            inference_count: get(&self.inference_count),
            execution_count: get(&self.execution_count),
            request_duration: duration(&self.request_ns),
            queue_duration: duration(&self.queue_ns),
            compute_input_duration: duration(&self.compute_input_ns),
            compute_infer_duration: duration(&self.compute_infer_ns),
            compute_output_duration: duration(&self.compute_output_ns),
            pending: get(&self.pending),
            batch_sizes: sizes
                .iter()
                .enumerate()
                .filter(|(_, n)| **n > 0)
                .map(|(size, &n)| (size, n))
                .collect(),
        }
    }
}
