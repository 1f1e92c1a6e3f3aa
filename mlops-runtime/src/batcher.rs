//! The dynamic batcher: requests wait in one bounded queue; each model instance, on its own
//! OS thread, takes what is queued, stacks it into one batch, runs it, and hands every
//! caller its rows back.
//!
//! The semantics are Triton's: `max_batch_size`, `max_queue_delay` (0 by default: take what
//! is already queued, never wait for more), preferred batch sizes, a bounded queue whose
//! overflow is refused at once, and per-request deadlines after which a queued request is
//! answered with [`Error::Timeout`] instead of a late result.

use std::collections::VecDeque;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use mlops_core::{Signature, Tensor};
use tokio::sync::oneshot;

use crate::error::{Error, Result};
use crate::session::{Device, ModelSession};
use crate::stats::{ModelStats, StatsSnapshot};

/// How requests are queued and batched for one model.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BatcherConfig {
    /// The most rows one execution takes. `1` disables batching.
    pub max_batch_size: usize,
    /// How long the oldest queued request may wait for more to batch with it. Zero (the
    /// default) runs whatever is queued as soon as an instance is free.
    pub max_queue_delay: Duration,
    /// Batch sizes to stop waiting at, even below `max_batch_size`.
    pub preferred_batch_sizes: Vec<usize>,
    /// The most requests waiting at once; one more is refused with
    /// [`Error::Overloaded`].
    pub max_queue_size: usize,
    /// The deadline of a request that sets none, measured from its arrival.
    pub default_timeout: Option<Duration>,
    /// How long an instance that runs out of work keeps polling the queue before it goes
    /// to sleep. Waking a sleeping thread costs tens of microseconds on virtual machines;
    /// a short spin after each batch keeps the next request's latency low for the price of
    /// at most this much CPU per batch. At most one instance of a model spins at a time.
    /// Zero sleeps at once.
    pub idle_spin: Duration,
}

impl Default for BatcherConfig {
    fn default() -> Self {
        BatcherConfig {
            max_batch_size: 32,
            max_queue_delay: Duration::ZERO,
            preferred_batch_sizes: Vec::new(),
            max_queue_size: 1024,
            default_timeout: None,
            idle_spin: Duration::from_micros(50),
        }
    }
}

impl BatcherConfig {
    /// Sets `max_batch_size`.
    pub fn with_max_batch_size(mut self, rows: usize) -> Self {
        self.max_batch_size = rows;
        self
    }

    /// Sets `max_queue_delay`.
    pub fn with_max_queue_delay(mut self, delay: Duration) -> Self {
        self.max_queue_delay = delay;
        self
    }

    /// Sets the preferred batch sizes.
    pub fn with_preferred_batch_sizes(mut self, sizes: impl Into<Vec<usize>>) -> Self {
        self.preferred_batch_sizes = sizes.into();
        self
    }

    /// Sets `max_queue_size`.
    pub fn with_max_queue_size(mut self, requests: usize) -> Self {
        self.max_queue_size = requests;
        self
    }

    /// Sets how long an idle instance polls before sleeping.
    pub fn with_idle_spin(mut self, spin: Duration) -> Self {
        self.idle_spin = spin;
        self
    }

    /// Sets the default deadline.
    pub fn with_default_timeout(mut self, timeout: Duration) -> Self {
        self.default_timeout = Some(timeout);
        self
    }
}

/// Where an instance sends a request's outputs (or why there are none).
type Answer = oneshot::Receiver<Result<Vec<Tensor>>>;

const QUEUED: u8 = 0;
const RUNNING: u8 = 1;
const CANCELLED: u8 = 2;

/// One request waiting for an instance.
struct Pending {
    /// In signature order.
    inputs: Vec<Tensor>,
    rows: usize,
    arrived: Instant,
    deadline: Option<Instant>,
    /// QUEUED until an instance takes it (RUNNING) or its caller gives up (CANCELLED).
    state: Arc<AtomicU8>,
    reply: oneshot::Sender<Result<Vec<Tensor>>>,
}

impl Pending {
    /// Whether `other` can be stacked with this request: every input has the same
    /// dimensions after the first.
    fn stacks_with(&self, other: &Pending) -> bool {
        self.inputs
            .iter()
            .zip(&other.inputs)
            .all(|(a, b)| a.shape().get(1..) == b.shape().get(1..))
    }
}

struct Queue {
    items: VecDeque<Pending>,
    closed: bool,
    /// Instances waiting on `ready`: a notification (a futex syscall) is only sent when
    /// one is there to receive it.
    idle: usize,
    /// Instances asked to leave: the next ones to look for work exit instead.
    retiring: usize,
    /// Instances serving, less those retiring.
    instances: usize,
}

struct Shared {
    model: String,
    signature: Signature,
    device: Device,
    config: BatcherConfig,
    /// The batch limit after the sessions' own: 0 when requests cannot be stacked.
    max_rows: usize,
    queue: Mutex<Queue>,
    /// `queue.items.len()`, readable without the lock by spinning instances.
    queued: AtomicUsize,
    /// Whether an instance is spinning: one is enough to pick up the next request, and more
    /// would take cores from the instances that compute.
    spinning: AtomicBool,
    ready: Condvar,
    stats: ModelStats,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Queue> {
        // A panic while holding the lock cannot leave the queue half-updated: every
        // update is a single push or remove.
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// One model's instances behind one queue: submit requests with [`infer`](Self::infer).
///
/// Dropping the batcher closes its queue; instances finish what is queued and exit.
/// [`shutdown`](Self::shutdown) does the same and waits for them.
pub struct Batcher {
    shared: Arc<Shared>,
    threads: Mutex<Vec<JoinHandle<()>>>,
    /// Instances started so far, to number their threads.
    spawned: AtomicUsize,
}

impl Batcher {
    /// Starts one OS thread per session. All sessions must be instances of the same model:
    /// the first one's signature is the model's.
    pub fn start(
        model: impl Into<String>,
        sessions: Vec<Box<dyn ModelSession>>,
        config: BatcherConfig,
    ) -> Result<Batcher> {
        let model = model.into();
        let Some(first) = sessions.first() else {
            return Err(Error::Load {
                model,
                reason: "a model needs at least one instance".into(),
                source: None,
            });
        };
        if config.max_batch_size == 0 || config.max_queue_size == 0 {
            return Err(Error::Load {
                model,
                reason: "max_batch_size and max_queue_size must be at least 1".into(),
                source: None,
            });
        }
        let signature = first.signature().clone();
        let device = first.device();
        let session_limit = sessions
            .iter()
            .map(|s| s.max_batch_size())
            .min()
            .unwrap_or(0);
        let max_rows = if session_limit == 0 {
            0
        } else {
            config.max_batch_size.min(session_limit)
        };
        let shared = Arc::new(Shared {
            model: model.clone(),
            signature,
            device,
            config,
            max_rows,
            queue: Mutex::new(Queue {
                items: VecDeque::new(),
                closed: false,
                idle: 0,
                retiring: 0,
                instances: 0,
            }),
            queued: AtomicUsize::new(0),
            spinning: AtomicBool::new(false),
            ready: Condvar::new(),
            stats: ModelStats::default(),
        });
        let batcher = Batcher {
            shared,
            threads: Mutex::new(Vec::new()),
            spawned: AtomicUsize::new(0),
        };
        if let Err(e) = batcher.spawn(sessions) {
            // Stop the instances already started rather than leak them.
            batcher.shutdown();
            return Err(e);
        }
        Ok(batcher)
    }

    /// Starts one thread per session; each counts as an instance once started. All or
    /// none: if a thread cannot start, those started by this call are retired again. A
    /// closed batcher starts none (checked under the queue's lock, so a racing shutdown
    /// either refuses the add or joins the threads it started).
    fn spawn(&self, sessions: Vec<Box<dyn ModelSession>>) -> Result<()> {
        let mut threads = self.threads.lock().unwrap_or_else(|p| p.into_inner());
        // Threads of retired instances have exited or are finishing a batch: forget those
        // that are done so the list does not grow with every resize.
        threads.retain(|t| !t.is_finished());
        let mut started = 0;
        for session in sessions {
            let index = self.spawned.fetch_add(1, Ordering::Relaxed);
            let for_thread = Arc::clone(&self.shared);
            {
                let mut queue = self.shared.lock();
                if queue.closed {
                    drop(queue);
                    self.retire_started(started);
                    return Err(Error::ShuttingDown {
                        model: self.shared.model.clone(),
                    });
                }
                // Counted before the thread runs, so a retirement cannot reach 0.
                queue.instances += 1;
            }
            let spawned = std::thread::Builder::new()
                .name(format!("{}#{index}", self.shared.model))
                .spawn(move || instance_loop(&for_thread, session));
            match spawned {
                Ok(thread) => {
                    threads.push(thread);
                    started += 1;
                }
                Err(e) => {
                    self.shared.lock().instances -= 1;
                    self.retire_started(started);
                    return Err(Error::Load {
                        model: self.shared.model.clone(),
                        reason: format!("cannot start instance thread: {e}"),
                        source: None,
                    });
                }
            }
        }
        Ok(())
    }

    /// Takes back `count` instances just started by a spawn that failed.
    fn retire_started(&self, count: usize) {
        if count == 0 {
            return;
        }
        let mut queue = self.shared.lock();
        queue.instances -= count;
        queue.retiring += count;
        drop(queue);
        self.shared.ready.notify_all();
    }

    /// Adds instances that serve the same queue, at once: nothing queued or running is
    /// disturbed. The sessions must be instances of this model (the same signature and
    /// device, and batches at least as large as the batcher forms). Returns the instances
    /// now serving.
    pub fn add_instances(&self, sessions: Vec<Box<dyn ModelSession>>) -> Result<usize> {
        let shared = &self.shared;
        for session in &sessions {
            let limit = session.max_batch_size();
            let reason = if session.signature() != &shared.signature {
                Some("its signature differs from the model's".to_owned())
            } else if session.device() != shared.device {
                Some(format!(
                    "it runs on {:?}, the model's instances on {:?}",
                    session.device(),
                    shared.device
                ))
            } else if shared.max_rows > 0 && limit < shared.max_rows {
                Some(format!(
                    "it takes batches of {limit}, the batcher forms {}",
                    shared.max_rows
                ))
            } else {
                None
            };
            if let Some(reason) = reason {
                return Err(Error::Resize {
                    model: shared.model.clone(),
                    reason: format!("cannot add the instance: {reason}"),
                });
            }
        }
        self.spawn(sessions)?;
        Ok(self.instances())
    }

    /// Retires `count` instances: each finishes the batch it is running and exits, and the
    /// others go on taking the queue, so no request is dropped. At least one instance must
    /// stay. Returns the instances now serving.
    pub fn remove_instances(&self, count: usize) -> Result<usize> {
        let mut queue = self.shared.lock();
        if count >= queue.instances {
            return Err(Error::Resize {
                model: self.shared.model.clone(),
                reason: format!(
                    "cannot remove {count} of its {} instances: at least one must stay",
                    queue.instances
                ),
            });
        }
        queue.instances -= count;
        queue.retiring += count;
        let now = queue.instances;
        drop(queue);
        // Sleeping instances must look at the count to leave.
        self.shared.ready.notify_all();
        Ok(now)
    }

    /// How requests are queued and batched.
    pub fn config(&self) -> &BatcherConfig {
        &self.shared.config
    }

    /// How many instances (sessions, each on its own thread) serve the queue.
    pub fn instances(&self) -> usize {
        self.shared.lock().instances
    }

    /// The model's name.
    pub fn model(&self) -> &str {
        &self.shared.model
    }

    /// What the model takes and returns.
    pub fn signature(&self) -> &Signature {
        &self.shared.signature
    }

    /// Where the model's instances compute.
    pub fn device(&self) -> Device {
        self.shared.device
    }

    /// The most rows one request or batch may hold, or 0 when the model does not batch.
    pub fn max_batch_size(&self) -> usize {
        self.shared.max_rows
    }

    /// The model's statistics so far.
    pub fn stats(&self) -> StatsSnapshot {
        self.shared.stats.snapshot()
    }

    /// Requests waiting in the queue now (not counting those running).
    pub fn queued(&self) -> usize {
        self.shared.lock().items.len()
    }

    /// Whether the batcher takes requests.
    pub fn is_ready(&self) -> bool {
        !self.shared.lock().closed
    }

    /// Runs one request with the default deadline.
    pub async fn infer(&self, inputs: Vec<Tensor>) -> Result<Vec<Tensor>> {
        self.infer_with_timeout(inputs, self.shared.config.default_timeout)
            .await
    }

    /// Runs one request that must start within `timeout` of now, or be answered with
    /// [`Error::Timeout`].
    pub async fn infer_with_timeout(
        &self,
        inputs: Vec<Tensor>,
        timeout: Option<Duration>,
    ) -> Result<Vec<Tensor>> {
        let arrived = Instant::now();
        let deadline = timeout.map(|t| arrived + t);
        let (state, receiver) = self.submit(inputs, arrived, deadline)?;
        // A caller that goes away (its future dropped) withdraws a request still queued,
        // so no instance spends time on an answer nobody reads.
        let mut guard = WithdrawOnDrop {
            state: Some(Arc::clone(&state)),
            shared: &self.shared,
            arrived,
        };
        let answer = match deadline {
            None => receiver.await,
            Some(deadline) => {
                let mut receiver = receiver;
                match tokio::time::timeout_at(deadline.into(), &mut receiver).await {
                    Ok(answer) => answer,
                    Err(_) => {
                        // Still queued: withdraw it. Already running: it will finish.
                        if state
                            .compare_exchange(
                                QUEUED,
                                CANCELLED,
                                Ordering::AcqRel,
                                Ordering::Acquire,
                            )
                            .is_ok()
                        {
                            self.shared.stats.answered(false, arrived.elapsed());
                            return Err(Error::Timeout {
                                model: self.shared.model.clone(),
                                waited: arrived.elapsed(),
                            });
                        }
                        receiver.await
                    }
                }
            }
        };
        guard.state = None;
        answer.unwrap_or_else(|_| {
            Err(Error::ShuttingDown {
                model: self.shared.model.clone(),
            })
        })
    }

    /// Checks and queues a request; the receiver gets its answer.
    fn submit(
        &self,
        inputs: Vec<Tensor>,
        arrived: Instant,
        deadline: Option<Instant>,
    ) -> Result<(Arc<AtomicU8>, Answer)> {
        let shared = &self.shared;
        let prepared = prepare(shared, inputs);
        let (inputs, rows) = match prepared {
            Ok(ok) => ok,
            Err(e) => {
                shared.stats.refused();
                return Err(e);
            }
        };
        let state = Arc::new(AtomicU8::new(QUEUED));
        let (reply, receiver) = oneshot::channel();
        let wake = {
            let mut queue = shared.lock();
            if queue.closed {
                drop(queue);
                shared.stats.refused();
                return Err(Error::ShuttingDown {
                    model: shared.model.clone(),
                });
            }
            if queue.items.len() >= shared.config.max_queue_size {
                // Requests whose callers gave up still hold slots until an instance reaches
                // them: drop those before refusing a live one.
                queue
                    .items
                    .retain(|p| p.state.load(Ordering::Acquire) != CANCELLED);
                shared.queued.store(queue.items.len(), Ordering::Release);
            }
            if queue.items.len() >= shared.config.max_queue_size {
                drop(queue);
                shared.stats.refused();
                return Err(Error::Overloaded {
                    model: shared.model.clone(),
                    capacity: shared.config.max_queue_size,
                });
            }
            queue.items.push_back(Pending {
                inputs,
                rows,
                arrived,
                deadline,
                state: Arc::clone(&state),
                reply,
            });
            shared.queued.store(queue.items.len(), Ordering::Release);
            // Counted under the lock, so an instance cannot count it done first.
            shared.stats.enqueued();
            queue.idle > 0
        };
        if wake {
            shared.ready.notify_one();
        }
        Ok((state, receiver))
    }

    /// Stops taking requests, lets the instances finish everything already queued, and
    /// waits for their threads to exit.
    pub fn shutdown(&self) {
        self.close();
        let threads = std::mem::take(&mut *self.threads.lock().unwrap_or_else(|p| p.into_inner()));
        for thread in threads {
            // An instance thread only ends by returning; a panic was caught per batch.
            let _ = thread.join();
        }
    }

    /// Stops taking requests (they get [`Error::ShuttingDown`]); what is queued still runs.
    pub(crate) fn close(&self) {
        self.shared.lock().closed = true;
        self.shared.ready.notify_all();
    }
}

impl Drop for Batcher {
    fn drop(&mut self) {
        // Not joined here: dropping must not block an async executor.
        self.close();
    }
}

/// Withdraws a still-queued request when dropped armed (the caller's future was dropped).
struct WithdrawOnDrop<'a> {
    state: Option<Arc<AtomicU8>>,
    shared: &'a Shared,
    arrived: Instant,
}

impl Drop for WithdrawOnDrop<'_> {
    fn drop(&mut self) {
        if let Some(state) = &self.state
            && state
                .compare_exchange(QUEUED, CANCELLED, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
        {
            self.shared.stats.answered(false, self.arrived.elapsed());
        }
    }
}

/// Validates a request and puts its inputs in signature order; returns them with the
/// request's batch size (rows), or 0 for a model that does not batch.
fn prepare(shared: &Shared, mut inputs: Vec<Tensor>) -> Result<(Vec<Tensor>, usize)> {
    shared.signature.validate_inputs(&inputs)?;
    let mut ordered = Vec::with_capacity(inputs.len());
    for spec in &shared.signature.inputs {
        // validate_inputs guarantees exactly one tensor per input.
        if let Some(at) = inputs.iter().position(|t| t.name() == spec.name) {
            ordered.push(inputs.swap_remove(at));
        }
    }
    if shared.max_rows == 0 {
        return Ok((ordered, 0));
    }
    let rows = ordered
        .first()
        .and_then(|t| t.shape().first().copied())
        .unwrap_or(0);
    if let Some(odd) = ordered.iter().find(|t| t.shape().first() != Some(&rows)) {
        return Err(mlops_core::Error::SignatureMismatch {
            tensor: odd.name().to_owned(),
            reason: format!(
                "batch dimension {:?} differs from the request's batch of {rows}",
                odd.shape().first()
            ),
        }
        .into());
    }
    if rows > shared.max_rows {
        return Err(mlops_core::Error::SignatureMismatch {
            tensor: ordered[0].name().to_owned(),
            reason: format!(
                "batch of {rows} exceeds the model's max_batch_size of {}",
                shared.max_rows
            ),
        }
        .into());
    }
    Ok((ordered, rows))
}

fn instance_loop(shared: &Shared, mut session: Box<dyn ModelSession>) {
    while let Some(batch) = next_batch(shared) {
        if !batch.is_empty() {
            execute(shared, session.as_mut(), batch);
        }
    }
}

/// Waits for work and takes a batch of it; `None` once the queue is closed and empty.
fn next_batch(shared: &Shared) -> Option<Vec<Pending>> {
    spin_for_work(shared);
    let mut queue = shared.lock();
    let first = loop {
        if queue.retiring > 0 {
            queue.retiring -= 1;
            return None;
        }
        match take_first(shared, &mut queue) {
            Some(first) => break first,
            None if queue.closed => return None,
            None => {
                shared.queued.store(0, Ordering::Release);
                queue.idle += 1;
                queue = shared.ready.wait(queue).unwrap_or_else(|p| p.into_inner());
                queue.idle -= 1;
            }
        }
    };
    let mut batch = vec![first];
    if shared.max_rows <= 1 {
        wake_another(shared, queue);
        return Some(batch);
    }
    let mut rows = batch[0].rows;
    let delay_ends = batch[0].arrived + shared.config.max_queue_delay;
    loop {
        gather(shared, &mut queue, &mut batch, &mut rows);
        let full = rows >= shared.max_rows || shared.config.preferred_batch_sizes.contains(&rows);
        // Stop waiting at the first deadline in the batch, too: a gathered request must not
        // wait past it for company.
        let wait_until = batch
            .iter()
            .filter_map(|p| p.deadline)
            .fold(delay_ends, Instant::min);
        let now = Instant::now();
        if full || queue.closed || now >= wait_until {
            break;
        }
        queue.idle += 1;
        queue = shared
            .ready
            .wait_timeout(queue, wait_until - now)
            .unwrap_or_else(|p| p.into_inner())
            .0;
        queue.idle -= 1;
    }
    wake_another(shared, queue);
    // Waiting for the batch to fill may have outlived some deadlines: answer those now.
    if !shared.config.max_queue_delay.is_zero() {
        let now = Instant::now();
        let (live, expired): (Vec<_>, Vec<_>) = batch
            .into_iter()
            .partition(|item| item.deadline.is_none_or(|d| now < d));
        for item in expired {
            let waited = item.arrived.elapsed();
            shared.stats.answered(false, waited);
            let _ = item.reply.send(Err(Error::Timeout {
                model: shared.model.clone(),
                waited,
            }));
        }
        batch = live;
    }
    Some(batch)
}

/// Polls the queue's length for up to `idle_spin` before the caller takes the lock.
fn spin_for_work(shared: &Shared) {
    if shared.config.idle_spin.is_zero()
        || shared.queued.load(Ordering::Acquire) > 0
        || shared.spinning.swap(true, Ordering::AcqRel)
    {
        return;
    }
    let until = Instant::now() + shared.config.idle_spin;
    'spin: loop {
        for _ in 0..64 {
            if shared.queued.load(Ordering::Acquire) > 0 {
                break 'spin;
            }
            std::hint::spin_loop();
        }
        if Instant::now() >= until {
            break;
        }
    }
    shared.spinning.store(false, Ordering::Release);
}

/// Leaves the queue, waking another idle instance if work remains for it.
fn wake_another(shared: &Shared, queue: MutexGuard<'_, Queue>) {
    shared.queued.store(queue.items.len(), Ordering::Release);
    let more = !queue.items.is_empty() && queue.idle > 0;
    drop(queue);
    if more {
        shared.ready.notify_one();
    }
}

/// Takes the oldest live request, answering expired ones with a timeout.
fn take_first(shared: &Shared, queue: &mut Queue) -> Option<Pending> {
    while let Some(item) = queue.items.pop_front() {
        if let Some(item) = claim(shared, item) {
            return Some(item);
        }
    }
    None
}

/// Moves queued requests that stack with the batch's first into the batch, oldest first,
/// while they fit.
fn gather(shared: &Shared, queue: &mut Queue, batch: &mut Vec<Pending>, rows: &mut usize) {
    let mut at = 0;
    while at < queue.items.len() && *rows < shared.max_rows {
        let item = &queue.items[at];
        if *rows + item.rows <= shared.max_rows && batch[0].stacks_with(item) {
            if let Some(item) = queue.items.remove(at).and_then(|item| claim(shared, item)) {
                *rows += item.rows;
                batch.push(item);
            }
        } else {
            at += 1;
        }
    }
}

/// Marks a dequeued request as running, unless its caller gave up or its deadline passed.
fn claim(shared: &Shared, item: Pending) -> Option<Pending> {
    if item
        .state
        .compare_exchange(QUEUED, RUNNING, Ordering::AcqRel, Ordering::Acquire)
        .is_err()
    {
        // Cancelled: the caller already has its answer and counted it.
        return None;
    }
    if item.deadline.is_some_and(|d| Instant::now() >= d) {
        let waited = item.arrived.elapsed();
        shared.stats.answered(false, waited);
        let _ = item.reply.send(Err(Error::Timeout {
            model: shared.model.clone(),
            waited,
        }));
        return None;
    }
    Some(item)
}

fn execute(shared: &Shared, session: &mut dyn ModelSession, batch: Vec<Pending>) {
    let started = Instant::now();
    for item in &batch {
        shared.stats.queued_for(started - item.arrived);
    }
    let rows: Vec<usize> = batch.iter().map(|p| p.rows).collect();
    let total: usize = rows.iter().sum();
    let _span = tracing::debug_span!(
        "batch",
        model = %shared.model,
        requests = batch.len(),
        rows = total
    )
    .entered();

    let stacked = stack(&batch);
    let input_done = Instant::now();
    let outputs = stacked.and_then(|inputs| {
        catch_unwind(AssertUnwindSafe(|| session.run(&inputs))).unwrap_or_else(|panic| {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "a non-string panic".to_owned());
            tracing::warn!(model = %shared.model, panic = %what, "an instance panicked: its batch fails, the instance goes on");
            Err(Error::Inference {
                model: shared.model.clone(),
                reason: format!("the instance panicked: {what}"),
                source: None,
            })
        })
    });
    let infer_done = Instant::now();
    let answers = outputs.and_then(|outputs| unstack(shared, outputs, &rows, total));
    let output_done = Instant::now();
    shared.stats.executed(
        total.max(1),
        input_done - started,
        infer_done - input_done,
        output_done - infer_done,
    );

    match answers {
        Ok(answers) => {
            for (item, answer) in batch.into_iter().zip(answers) {
                shared.stats.answered(true, item.arrived.elapsed());
                let _ = item.reply.send(Ok(answer));
            }
        }
        Err(e) => {
            // Errors are not `Clone`: the first caller gets the error itself, the others
            // its message.
            let message = e.to_string();
            let mut first = Some(e);
            for item in batch {
                shared.stats.answered(false, item.arrived.elapsed());
                let error = first.take().unwrap_or_else(|| Error::Inference {
                    model: shared.model.clone(),
                    reason: message.clone(),
                    source: None,
                });
                let _ = item.reply.send(Err(error));
            }
        }
    }
}

/// Stacks the batch's inputs, one tensor per model input.
fn stack(batch: &[Pending]) -> Result<Vec<Tensor>> {
    if let [only] = batch {
        return Ok(only.inputs.clone());
    }
    let inputs = batch[0].inputs.len();
    (0..inputs)
        .map(|i| {
            let parts: Vec<Tensor> = batch.iter().map(|p| p.inputs[i].clone()).collect();
            Tensor::concat_batch(&parts).map_err(Error::from)
        })
        .collect()
}

/// Splits the batch's outputs back into one answer per request.
fn unstack(
    shared: &Shared,
    outputs: Vec<Tensor>,
    rows: &[usize],
    total: usize,
) -> Result<Vec<Vec<Tensor>>> {
    if let [_] = rows {
        return Ok(vec![outputs]);
    }
    let mut answers: Vec<Vec<Tensor>> = rows
        .iter()
        .map(|_| Vec::with_capacity(outputs.len()))
        .collect();
    for output in outputs {
        if output.shape().first() != Some(&total) {
            return Err(Error::Inference {
                model: shared.model.clone(),
                reason: format!(
                    "output '{}' has shape {:?}; a batch of {total} rows needs it as its first dimension",
                    output.name(),
                    output.shape()
                ),
                source: None,
            });
        }
        for (answer, part) in answers.iter_mut().zip(output.split_batch(rows)?) {
            answer.push(part);
        }
    }
    Ok(answers)
}

/// The shared inference interface: a registry validating a candidate, or a profiler
/// driving load, runs requests through the batcher as any other caller does.
impl mlops_core::Infer for Batcher {
    fn infer(&self, inputs: Vec<Tensor>) -> mlops_core::InferFuture<'_> {
        Box::pin(async move {
            Batcher::infer(self, inputs)
                .await
                .map_err(|e| Box::new(e) as mlops_core::BoxError)
        })
    }
}
