//! The dynamic batcher with real threads: batching correctness, overflow, deadlines,
//! panics, shutdown.

// Test helpers may panic: a panic is a failed test.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use mlops_core::{DataType, Dim, Signature, Tensor, TensorSpec};
use mlops_runtime::{Batcher, BatcherConfig, EchoSession, Error, ModelSession};

fn echo_signature(width: Dim) -> Signature {
    Signature::new(
        vec![TensorSpec::new(
            "x",
            DataType::Int32,
            vec![Dim::Dynamic, width],
        )],
        vec![TensorSpec::new(
            "y",
            DataType::Int32,
            vec![Dim::Dynamic, width],
        )],
    )
}

fn echo(delay_ms: u64) -> Box<dyn ModelSession> {
    Box::new(
        EchoSession::new(echo_signature(Dim::Fixed(2)))
            .unwrap()
            .with_delay(Duration::from_millis(delay_ms)),
    )
}

/// Waits (at most five seconds) until the batcher holds `pending` requests of which
/// `queued` wait in the queue and the rest run.
async fn settle(batcher: &Batcher, pending: u64, queued: usize) {
    for _ in 0..5000 {
        if batcher.stats().pending == pending && batcher.queued() == queued {
            return;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    panic!(
        "expected {pending} pending with {queued} queued, have {} and {}",
        batcher.stats().pending,
        batcher.queued()
    );
}

fn request(rows: usize, first: i32) -> Vec<Tensor> {
    let values: Vec<i32> = (0..rows as i32 * 2).map(|i| first + i).collect();
    vec![Tensor::from_vec("x", vec![rows, 2], values).unwrap()]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_caller_gets_its_own_rows_back_from_mixed_batches() {
    // One slow instance: while it runs, the others queue up and are batched together.
    let batcher = Arc::new(
        Batcher::start(
            "echo",
            vec![echo(20)],
            BatcherConfig::default().with_max_batch_size(16),
        )
        .unwrap(),
    );
    let mut tasks = Vec::new();
    for i in 0..24usize {
        let batcher = Arc::clone(&batcher);
        let rows = 1 + i % 4;
        let first = i as i32 * 1000;
        tasks.push(tokio::spawn(async move {
            let out = batcher.infer(request(rows, first)).await.unwrap();
            (rows, first, out)
        }));
    }
    for task in tasks {
        let (rows, first, out) = task.await.unwrap();
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].name(), "y");
        assert_eq!(out[0].shape(), &[rows, 2]);
        let expected: Vec<i32> = (0..rows as i32 * 2).map(|i| first + i).collect();
        assert_eq!(out[0].to_vec::<i32>().unwrap(), expected);
    }
    let stats = batcher.stats();
    assert_eq!(stats.request_success, 24);
    assert_eq!(stats.request_failure, 0);
    assert_eq!(
        stats.inference_count,
        (0..24).map(|i| 1 + i % 4).sum::<u64>()
    );
    assert!(
        stats.execution_count < 24,
        "requests were batched: {} executions",
        stats.execution_count
    );
    assert!(stats.batch_sizes.iter().all(|&(size, _)| size <= 16));
    assert_eq!(
        stats.batch_sizes.iter().map(|&(_, n)| n).sum::<u64>(),
        stats.execution_count
    );
    assert_eq!(stats.pending, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_queue_refuses_at_once() {
    let batcher = Arc::new(
        Batcher::start(
            "echo",
            vec![echo(300)],
            BatcherConfig::default()
                .with_max_batch_size(1)
                .with_max_queue_size(2),
        )
        .unwrap(),
    );
    // One running, two queued.
    let mut held = Vec::new();
    for i in 0..3 {
        let b = Arc::clone(&batcher);
        held.push(tokio::spawn(async move { b.infer(request(1, i)).await }));
        settle(&batcher, i as u64 + 1, i as usize).await;
    }
    let err = batcher.infer(request(1, 99)).await.unwrap_err();
    assert!(
        matches!(err, Error::Overloaded { capacity: 2, .. }),
        "{err}"
    );
    assert_eq!(
        err.to_string(),
        "model 'echo' is overloaded: its queue of 2 requests is full"
    );
    assert!(err.is_temporary());
    for task in held {
        assert_eq!(task.await.unwrap().unwrap()[0].shape(), &[1, 2]);
    }
    let stats = batcher.stats();
    assert_eq!((stats.request_success, stats.request_failure), (3, 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_whose_deadline_passes_in_the_queue_gets_a_timeout() {
    let batcher = Arc::new(
        Batcher::start(
            "echo",
            vec![echo(300)],
            BatcherConfig::default().with_max_batch_size(1),
        )
        .unwrap(),
    );
    let b = Arc::clone(&batcher);
    let running = tokio::spawn(async move { b.infer(request(1, 0)).await });
    settle(&batcher, 1, 0).await;

    let late = batcher
        .infer_with_timeout(request(1, 1), Some(Duration::from_millis(20)))
        .await;
    // The answer came while the first request still ran: a timeout, not a late answer.
    assert!(!running.is_finished());
    let err = late.unwrap_err();
    assert!(matches!(err, Error::Timeout { .. }), "{err}");
    assert!(
        err.to_string()
            .starts_with("model 'echo': the request waited")
    );

    assert!(running.await.unwrap().is_ok());
    // The withdrawn request never ran.
    let stats = batcher.stats();
    assert_eq!(stats.inference_count, 1);
    assert_eq!((stats.request_success, stats.request_failure), (1, 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_request_is_not_timed_out() {
    let batcher = Batcher::start("echo", vec![echo(100)], BatcherConfig::default()).unwrap();
    let out = batcher
        .infer_with_timeout(request(2, 5), Some(Duration::from_millis(30)))
        .await
        .unwrap();
    assert_eq!(out[0].to_vec::<i32>().unwrap(), vec![5, 6, 7, 8]);
}

/// Panics on any negative input, like a backend hitting a bug on odd data.
struct Fragile {
    signature: Signature,
}

impl ModelSession for Fragile {
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn device(&self) -> mlops_runtime::Device {
        mlops_runtime::Device::Cpu
    }
    fn run(&mut self, inputs: &[Tensor]) -> mlops_runtime::Result<Vec<Tensor>> {
        let values = inputs[0].to_vec::<i32>().unwrap();
        assert!(values.iter().all(|&v| v >= 0), "negative input");
        Ok(vec![inputs[0].clone().with_name("y")])
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_instance_fails_its_batch_and_keeps_serving() {
    let batcher = Batcher::start(
        "fragile",
        vec![Box::new(Fragile {
            signature: echo_signature(Dim::Fixed(2)),
        })],
        BatcherConfig::default(),
    )
    .unwrap();
    let err = batcher.infer(request(1, -10)).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        "model 'fragile' failed to run: the instance panicked: negative input"
    );
    let ok = batcher.infer(request(1, 10)).await.unwrap();
    assert_eq!(ok[0].to_vec::<i32>().unwrap(), vec![10, 11]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_drains_queued_work_then_refuses() {
    let batcher = Arc::new(
        Batcher::start(
            "echo",
            vec![echo(30)],
            BatcherConfig::default().with_max_batch_size(1),
        )
        .unwrap(),
    );
    let mut queued = Vec::new();
    for i in 0..5 {
        let b = Arc::clone(&batcher);
        queued.push(tokio::spawn(async move { b.infer(request(1, i)).await }));
    }
    // One running, four queued: all of them must be answered.
    settle(&batcher, 5, 4).await;
    let b = Arc::clone(&batcher);
    tokio::task::spawn_blocking(move || b.shutdown())
        .await
        .unwrap();
    for (i, task) in queued.into_iter().enumerate() {
        let out = task.await.unwrap().unwrap();
        assert_eq!(
            out[0].to_vec::<i32>().unwrap(),
            vec![i as i32, i as i32 + 1]
        );
    }
    assert!(!batcher.is_ready());
    let err = batcher.infer(request(1, 0)).await.unwrap_err();
    assert_eq!(err.to_string(), "model 'echo' is shutting down");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_are_checked_before_they_queue() {
    let batcher = Batcher::start(
        "echo",
        vec![echo(0)],
        BatcherConfig::default().with_max_batch_size(4),
    )
    .unwrap();
    let wrong = vec![Tensor::from_vec("x", vec![1, 3], vec![1i32, 2, 3]).unwrap()];
    assert_eq!(
        batcher.infer(wrong).await.unwrap_err().to_string(),
        "input 'x': dimension 1 must be 2, got 3 (expected shape [-1, 2], got [1, 3])"
    );
    assert_eq!(
        batcher.infer(request(5, 0)).await.unwrap_err().to_string(),
        "input 'x': batch of 5 exceeds the model's max_batch_size of 4"
    );
    assert_eq!(batcher.stats().request_failure, 2);
    assert_eq!(batcher.stats().execution_count, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_of_different_widths_are_not_stacked_together() {
    // The second dimension is dynamic: requests of width 2 and 3 cannot share a batch.
    let session = EchoSession::new(echo_signature(Dim::Dynamic))
        .unwrap()
        .with_delay(Duration::from_millis(20));
    let batcher = Arc::new(
        Batcher::start("echo", vec![Box::new(session)], BatcherConfig::default()).unwrap(),
    );
    let mut tasks = Vec::new();
    for i in 0..12i32 {
        let b = Arc::clone(&batcher);
        let width = 2 + (i % 2) as usize;
        tasks.push(tokio::spawn(async move {
            let values: Vec<i32> = (0..width as i32).map(|v| i * 10 + v).collect();
            let out = b
                .infer(vec![
                    Tensor::from_vec("x", vec![1, width], values.clone()).unwrap(),
                ])
                .await
                .unwrap();
            assert_eq!(out[0].to_vec::<i32>().unwrap(), values);
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    assert_eq!(batcher.stats().request_success, 12);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_queue_delay_waits_to_fill_a_preferred_batch() {
    let batcher = Arc::new(
        Batcher::start(
            "echo",
            vec![echo(0)],
            BatcherConfig::default()
                .with_max_batch_size(8)
                .with_preferred_batch_sizes([4])
                .with_max_queue_delay(Duration::from_secs(2)),
        )
        .unwrap(),
    );
    let mut tasks = Vec::new();
    for i in 0..4 {
        let b = Arc::clone(&batcher);
        tasks.push(tokio::spawn(async move {
            b.infer(request(1, i)).await.unwrap()
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    // Four requests, one execution of four: the batch was sent as soon as it reached the
    // preferred size, long before the two-second delay.
    let stats = batcher.stats();
    assert_eq!(stats.batch_sizes, vec![(4, 1)]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_model_without_a_batch_dimension_runs_requests_one_by_one() {
    let fixed = Signature::new(
        vec![TensorSpec::new(
            "x",
            DataType::Int32,
            vec![Dim::Fixed(1), Dim::Fixed(2)],
        )],
        vec![TensorSpec::new(
            "y",
            DataType::Int32,
            vec![Dim::Fixed(1), Dim::Fixed(2)],
        )],
    );
    let session = EchoSession::new(fixed)
        .unwrap()
        .with_delay(Duration::from_millis(5));
    let batcher = Arc::new(
        Batcher::start("fixed", vec![Box::new(session)], BatcherConfig::default()).unwrap(),
    );
    assert_eq!(batcher.max_batch_size(), 0);
    let done = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for i in 0..6 {
        let b = Arc::clone(&batcher);
        let done = Arc::clone(&done);
        tasks.push(tokio::spawn(async move {
            let out = b.infer(request(1, i)).await.unwrap();
            assert_eq!(out[0].to_vec::<i32>().unwrap(), vec![i, i + 1]);
            done.fetch_add(1, Ordering::Relaxed);
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    assert_eq!(done.load(Ordering::Relaxed), 6);
    assert_eq!(batcher.stats().execution_count, 6);
}

/// Records which thread ran each batch.
struct Recording {
    inner: EchoSession,
    threads: Arc<std::sync::Mutex<std::collections::HashSet<String>>>,
}

impl ModelSession for Recording {
    fn signature(&self) -> &Signature {
        self.inner.signature()
    }
    fn device(&self) -> mlops_runtime::Device {
        self.inner.device()
    }
    fn run(&mut self, inputs: &[Tensor]) -> mlops_runtime::Result<Vec<Tensor>> {
        let name = std::thread::current().name().unwrap_or("?").to_owned();
        self.threads.lock().unwrap().insert(name);
        self.inner.run(inputs)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_share_the_queue_each_on_its_own_thread() {
    let threads = Arc::new(std::sync::Mutex::new(std::collections::HashSet::new()));
    let instance = || -> Box<dyn ModelSession> {
        Box::new(Recording {
            inner: EchoSession::new(echo_signature(Dim::Fixed(2)))
                .unwrap()
                .with_delay(Duration::from_millis(20)),
            threads: Arc::clone(&threads),
        })
    };
    let batcher = Arc::new(
        Batcher::start(
            "echo",
            vec![instance(), instance()],
            BatcherConfig::default().with_max_batch_size(1),
        )
        .unwrap(),
    );
    let mut tasks = Vec::new();
    for i in 0..8 {
        let b = Arc::clone(&batcher);
        tasks.push(tokio::spawn(async move {
            b.infer(request(1, i)).await.unwrap()
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    assert_eq!(batcher.stats().execution_count, 8);
    let mut names: Vec<String> = threads.lock().unwrap().iter().cloned().collect();
    names.sort();
    assert_eq!(
        names,
        ["echo#0", "echo#1"],
        "inference ran on the instance threads only"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_callers_queued_request_never_runs() {
    let batcher = Arc::new(
        Batcher::start(
            "echo",
            vec![echo(200)],
            BatcherConfig::default().with_max_batch_size(1),
        )
        .unwrap(),
    );
    let b = Arc::clone(&batcher);
    let running = tokio::spawn(async move { b.infer(request(1, 0)).await });
    settle(&batcher, 1, 0).await;
    // The caller gives up by dropping its future (a client that disconnected).
    let abandoned =
        tokio::time::timeout(Duration::from_millis(10), batcher.infer(request(1, 1))).await;
    assert!(
        abandoned.is_err(),
        "the future was dropped before an answer"
    );
    assert!(running.await.unwrap().is_ok());
    settle(&batcher, 0, 0).await;
    let stats = batcher.stats();
    assert_eq!(
        stats.inference_count, 1,
        "the abandoned request did not run"
    );
    assert_eq!((stats.request_success, stats.request_failure), (1, 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_queue_delay_does_not_outlive_a_deadline() {
    let batcher = Batcher::start(
        "echo",
        vec![echo(0)],
        BatcherConfig::default()
            .with_max_batch_size(8)
            .with_preferred_batch_sizes([8])
            .with_max_queue_delay(Duration::from_secs(30)),
    )
    .unwrap();
    // Alone in a batch that waits up to 30 s for company, with a 50 ms deadline.
    let answer = tokio::time::timeout(
        Duration::from_secs(10),
        batcher.infer_with_timeout(request(1, 0), Some(Duration::from_millis(50))),
    )
    .await
    .expect("answered long before the queue delay ends");
    assert!(matches!(answer, Err(Error::Timeout { .. })), "{answer:?}");
    assert_eq!(batcher.stats().inference_count, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instances_added_and_retired_under_load_drop_no_request() {
    let threads = Arc::new(std::sync::Mutex::new(std::collections::HashSet::new()));
    let instance = || -> Box<dyn ModelSession> {
        Box::new(Recording {
            inner: EchoSession::new(echo_signature(Dim::Fixed(2)))
                .unwrap()
                .with_delay(Duration::from_millis(10)),
            threads: Arc::clone(&threads),
        })
    };
    let batcher = Arc::new(
        Batcher::start(
            "echo",
            vec![instance()],
            BatcherConfig::default().with_max_batch_size(1),
        )
        .unwrap(),
    );
    let mut tasks = Vec::new();
    for i in 0..200 {
        let b = Arc::clone(&batcher);
        tasks.push(tokio::spawn(async move {
            let out = b.infer(request(1, i * 2)).await.unwrap();
            (i, out)
        }));
    }
    settle(&batcher, 200, 199).await;
    assert_eq!(
        batcher
            .add_instances(vec![instance(), instance(), instance()])
            .unwrap(),
        4
    );
    // Once every instance has run a batch, retire three while requests still wait: each
    // finishes its batch and leaves.
    for _ in 0..5000 {
        if threads.lock().unwrap().len() == 4 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    assert_eq!(batcher.remove_instances(3).unwrap(), 1);
    assert_eq!(batcher.instances(), 1);
    for task in tasks {
        let (i, out) = task.await.unwrap();
        assert_eq!(out[0].to_vec::<i32>().unwrap(), vec![i * 2, i * 2 + 1]);
    }
    let stats = batcher.stats();
    assert_eq!(
        (
            stats.execution_count,
            stats.request_success,
            stats.request_failure
        ),
        (200, 200, 0)
    );
    let mut names: Vec<String> = threads.lock().unwrap().iter().cloned().collect();
    names.sort();
    assert_eq!(names, ["echo#0", "echo#1", "echo#2", "echo#3"]);
    // It grows again after shrinking, on new threads.
    assert_eq!(batcher.add_instances(vec![instance()]).unwrap(), 2);
    batcher.infer(request(1, 0)).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resize_that_would_leave_no_instance_or_mix_models_is_refused() {
    let batcher = Batcher::start(
        "echo",
        vec![echo(0), echo(0)],
        BatcherConfig::default().with_max_batch_size(4),
    )
    .unwrap();
    let err = batcher.remove_instances(2).unwrap_err();
    assert!(matches!(err, Error::Resize { .. }), "{err}");
    assert!(err.to_string().contains("at least one must stay"), "{err}");
    assert_eq!(batcher.instances(), 2);

    let other = Box::new(EchoSession::new(echo_signature(Dim::Fixed(3))).unwrap());
    let err = batcher.add_instances(vec![other]).unwrap_err();
    assert!(err.to_string().contains("signature differs"), "{err}");
    assert_eq!(batcher.instances(), 2);

    assert_eq!(batcher.remove_instances(1).unwrap(), 1);
    batcher.shutdown();
    let err = batcher.add_instances(vec![echo(0)]).unwrap_err();
    assert!(matches!(err, Error::ShuttingDown { .. }), "{err}");
}
