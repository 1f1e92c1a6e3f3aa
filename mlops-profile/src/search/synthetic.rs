//! Synthetic configuration spaces with known capacities: a test and benchmark aid for
//! searches, not a model of any real server.
//!
//! [`space`] builds a space of 960 to 1,280 configurations, CPU and GPU, and the capacity
//! of each from a [`PerformanceModel`] drawn from the seed. The model is meant to be
//! plausible enough that the best configuration is not at a corner of the grid, and that
//! greedy moves from a corner go wrong:
//!
//! - a batch of `x` takes `overhead + per_item · x` milliseconds, and each item costs more
//!   past a cache knee;
//! - on a CPU, `instances × intra-op threads` threads share the cores left after the
//!   server's own work and the front end's per-request cost; intra-op threads speed an
//!   inference up by Amdahl's law; more threads than cores time-slice, and busy cores
//!   slow each other (memory bandwidth);
//! - on a GPU, a fraction `f` of the GPU runs `f^α` as fast (`α < 1`, sub-linear),
//!   instances overlap but interfere, each needs a CPU core to drive it, and the
//!   instances' models and batches must fit in the fraction's memory;
//! - a batch forms from the requests that arrive during the queue delay and the previous
//!   batch's run; the 99th percentile is the wait for the batch plus its service time
//!   inflated by queueing (`1 + κ ρ / (1 − ρ)`); the capacity is the highest request rate
//!   that keeps it within the latency target, so that large batches and long delays break
//!   the target and the capacity falls to 0;
//! - every capacity carries about 1% of seeded noise.

use mlops_core::profile::{ComputeDevice, ServingConfig};
use rand::rngs::StdRng;
use rand::seq::IndexedRandom;
use rand::{Rng, SeedableRng};
use rand_distr::StandardNormal;

use super::{Axes, SearchSpace};

/// A space of 960 to 1,280 configurations drawn from `seed`, and each one's capacity in
/// requests per second under [`PerformanceModel::from_seed`]`(seed)`, in the space's order.
///
/// Batch sizes 1 to 128 (powers of two), queue delays 0, 100, 500 and 2,000 µs and 1 to 5
/// instances everywhere; the CPU core counts, the intra-op threads, the GPU fractions and
/// the GPU's cores vary with the seed.
pub fn space(seed: u64) -> (SearchSpace, Vec<f64>) {
    let model = PerformanceModel::from_seed(seed);
    let mut rng = StdRng::seed_from_u64(seed ^ 0x05EA_4C45_BACE);
    let cpu: [(&[u32], &[usize]); 4] = [
        (&[2, 4, 8], &[1]),
        (&[1, 4, 16], &[1]),
        (&[2, 8], &[1, 2]),
        (&[1, 2, 4, 8], &[1]),
    ];
    let gpu: [(&[u32], &[f64]); 3] = [
        (&[1], &[0.25, 0.5, 1.0]),
        (&[2], &[0.25, 0.5, 1.0]),
        (&[1, 4], &[0.25, 0.5]),
    ];
    let common = Axes::default()
        .with_max_batch_sizes([1, 2, 4, 8, 16, 32, 64, 128])
        .with_queue_delays_us([0, 100, 500, 2000])
        .with_instances(1..=5);
    let (cpu_cores, threads) = cpu.choose(&mut rng).copied().unwrap_or(cpu[0]);
    let (gpu_cores, fractions) = gpu.choose(&mut rng).copied().unwrap_or(gpu[0]);
    let cpu_axes = common
        .clone()
        .with_devices([ComputeDevice::Cpu])
        .with_cpu_cores(cpu_cores.iter().copied())
        .with_intra_op_threads(threads.iter().copied());
    let gpu_axes = common
        .with_devices([ComputeDevice::Gpu { index: 0 }])
        .with_cpu_cores(gpu_cores.iter().copied())
        .with_gpu_fractions(fractions.iter().copied())
        .with_intra_op_threads([1]);
    let mut configs = SearchSpace::grid(&cpu_axes).configs().to_vec();
    configs.extend_from_slice(SearchSpace::grid(&gpu_axes).configs());
    let space = SearchSpace::from_configs(configs);
    let capacities = space.configs().iter().map(|c| model.capacity(c)).collect();
    (space, capacities)
}

/// A seeded model of a served model's capacity under a [`ServingConfig`]; see the
/// [module docs](self) for its shape.
#[derive(Clone, Debug, PartialEq)]
pub struct PerformanceModel {
    /// The 99th-percentile latency target, in milliseconds.
    pub latency_target_ms: f64,
    /// How sharply queueing inflates latency as utilisation nears 1.
    pub queueing: f64,
    /// The relative standard deviation of the noise on each capacity.
    pub noise: f64,
    seed: u64,
    cpu: CpuModel,
    gpu: GpuModel,
}

#[derive(Clone, Debug, PartialEq)]
struct CpuModel {
    /// Fixed cost of one batch, ms.
    overhead_ms: f64,
    /// Cost of one item on one thread, ms.
    item_ms: f64,
    /// Amdahl's parallel share of an inference.
    parallel: f64,
    /// Past this batch each item costs more (cache).
    knee: f64,
    /// How much more per doubling past the knee.
    knee_penalty: f64,
    /// Cores the server's own threads take.
    background_cores: f64,
    /// CPU time the front end spends per request, ms.
    frontend_ms: f64,
    /// Slow-down per extra busy core (shared memory bandwidth).
    contention: f64,
}

#[derive(Clone, Debug, PartialEq)]
struct GpuModel {
    /// Fixed cost of one batch (launches, copies), ms.
    overhead_ms: f64,
    /// Cost of one item on the whole GPU, ms.
    item_ms: f64,
    /// A fraction f runs f^exponent as fast.
    fraction_exponent: f64,
    /// Slow-down per extra instance sharing the GPU.
    interference: f64,
    /// CPU time per request (pre- and post-processing), ms.
    frontend_ms: f64,
    /// Cores the server's own threads take.
    background_cores: f64,
    /// One instance's weights and workspace, GB.
    model_gb: f64,
    /// One item's activations, GB.
    item_gb: f64,
    /// The whole GPU's memory, GB.
    memory_gb: f64,
}

impl PerformanceModel {
    /// The model drawn from `seed`.
    pub fn from_seed(seed: u64) -> PerformanceModel {
        let mut rng = StdRng::seed_from_u64(seed);
        let log_uniform =
            |rng: &mut StdRng, lo: f64, hi: f64| (rng.random_range(lo.ln()..hi.ln())).exp();
        let cpu = CpuModel {
            overhead_ms: rng.random_range(0.2..2.0),
            item_ms: log_uniform(&mut rng, 0.15, 3.0),
            parallel: rng.random_range(0.5..0.95),
            knee: [8.0, 16.0, 32.0, 64.0]
                .choose(&mut rng)
                .copied()
                .unwrap_or(16.0),
            knee_penalty: rng.random_range(0.1..0.5),
            background_cores: rng.random_range(0.15..0.6),
            frontend_ms: rng.random_range(0.02..0.12),
            contention: rng.random_range(0.01..0.06),
        };
        let gpu = GpuModel {
            overhead_ms: rng.random_range(0.4..2.5),
            item_ms: log_uniform(&mut rng, 0.005, 0.05),
            fraction_exponent: rng.random_range(0.4..0.8),
            interference: rng.random_range(0.2..0.7),
            frontend_ms: rng.random_range(0.02..0.1),
            background_cores: rng.random_range(0.2..0.6),
            model_gb: rng.random_range(0.5..4.0),
            item_gb: rng.random_range(0.01..0.08),
            memory_gb: 16.0,
        };
        PerformanceModel {
            latency_target_ms: rng.random_range(10.0..50.0),
            queueing: rng.random_range(0.5..1.5),
            noise: 0.01,
            seed,
            cpu,
            gpu,
        }
    }

    /// The highest request rate, in requests per second, that `config` serves within the
    /// latency target (0 when even a trickle misses it or the batch does not fit), with
    /// the seeded noise.
    pub fn capacity(&self, config: &ServingConfig) -> f64 {
        if config.device.is_gpu() && !self.fits(config) {
            return 0.0;
        }
        let latency = |rate_rps: f64| self.latency_ms(config, rate_rps / 1000.0);
        let meets = |rate_rps: f64| latency(rate_rps).is_some_and(|l| l <= self.latency_target_ms);
        // The response is not monotone in the rate (a higher rate fills batches), so scan
        // a geometric grid and refine past the last rate that meets the target.
        let mut best: Option<f64> = None;
        let mut rate = 10.0;
        while rate < 2e6 {
            if meets(rate) {
                best = Some(rate);
            }
            rate *= 1.05;
        }
        let Some(mut lo) = best else {
            return 0.0;
        };
        let mut hi = lo * 1.05;
        for _ in 0..12 {
            let mid = 0.5 * (lo + hi);
            if meets(mid) {
                lo = mid;
            } else {
                hi = mid;
            }
        }
        lo * self.noise_factor(config)
    }

    /// Whether the instances' models and batches fit in the GPU fraction's memory.
    fn fits(&self, config: &ServingConfig) -> bool {
        let g = &self.gpu;
        let per_instance = g.model_gb + config.max_batch_size as f64 * g.item_gb;
        config.instances as f64 * per_instance <= g.memory_gb * config.gpu_share()
    }

    /// The 99th-percentile latency at `rate` requests per millisecond, or `None` when the
    /// configuration cannot keep up.
    fn latency_ms(&self, config: &ServingConfig, rate: f64) -> Option<f64> {
        let cores = f64::from(config.cpu_cores);
        let max_batch = config.max_batch_size.max(1) as f64;
        let delay = config.max_queue_delay_us as f64 / 1000.0;
        let instances = config.instances.max(1) as f64;
        let threads = config.intra_op_threads.max(1) as f64;
        let service: Box<dyn Fn(f64) -> f64> = match config.device {
            ComputeDevice::Cpu => {
                let m = &self.cpu;
                let free = cores - m.background_cores - rate * m.frontend_ms;
                if free <= 0.05 {
                    return None;
                }
                let wanted = instances * threads;
                let share = (free / wanted).min(1.0);
                let switching = if wanted > free {
                    1.0 + 0.15 * (wanted / free - 1.0)
                } else {
                    1.0
                };
                let busy = wanted.min(free);
                let contention = 1.0 + m.contention * (busy - 1.0).max(0.0);
                let amdahl = 1.0 / ((1.0 - m.parallel) + m.parallel / threads);
                let speed = amdahl * share / (switching * contention);
                let m = m.clone();
                Box::new(move |x: f64| {
                    let knee = 1.0 + m.knee_penalty * (x / m.knee).log2().max(0.0);
                    (m.overhead_ms + m.item_ms * x * knee) / speed
                })
            }
            ComputeDevice::Gpu { .. } => {
                let m = &self.gpu;
                let free = cores - m.background_cores - rate * m.frontend_ms;
                if free <= 0.05 {
                    return None;
                }
                let speed = config.gpu_share().powf(m.fraction_exponent);
                let interference = 1.0 + m.interference * (instances - 1.0);
                // Each instance's stream wants a core to launch from.
                let driving = (instances * threads / free).max(1.0);
                let m = m.clone();
                Box::new(move |x: f64| {
                    (m.overhead_ms + m.item_ms * x / speed) * interference * driving
                })
            }
        };
        let per_instance = rate / instances;
        // The batch: what arrives during the delay and the previous batch's run.
        let mut batch = 1.0;
        for _ in 0..6 {
            batch = (per_instance * (delay + service(batch))).clamp(1.0, max_batch);
        }
        let run = service(batch);
        let utilisation = per_instance * run / batch;
        if utilisation >= 1.0 {
            return None;
        }
        // The first request of a batch waits for it to fill, or for the delay.
        let wait = delay.min((max_batch - 1.0) / per_instance);
        Some(wait + run * (1.0 + self.queueing * utilisation / (1.0 - utilisation)))
    }

    /// About 1 + N(0, noise), fixed per configuration and seed.
    fn noise_factor(&self, config: &ServingConfig) -> f64 {
        let mut hash: u64 = 0xCBF2_9CE4_8422_2325;
        for byte in config.id().bytes() {
            hash = (hash ^ u64::from(byte)).wrapping_mul(0x0000_0100_0000_01B3);
        }
        let mut rng = StdRng::seed_from_u64(hash ^ self.seed);
        let z: f64 = rng.sample(StandardNormal);
        (1.0 + self.noise * z.clamp(-3.0, 3.0)).max(0.0)
    }
}
