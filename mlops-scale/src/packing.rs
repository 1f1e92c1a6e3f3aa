//! GPU packing: how many replicas of each model, at which GPU share, on which GPU, so
//! that every model's demand is served on the fewest GPUs.
//!
//! Each model comes with variants: its capacity (and memory) when a replica gets a whole
//! GPU, half of one or a quarter under NVIDIA MPS (as profiled by `mlops-profile`). A GPU
//! holds replicas whose compute shares sum to at most 100% and whose memory fits. The
//! search chooses each model's replica mix and the placement together, by branch and
//! bound, and returns the fewest GPUs (then the least share used, then the fewest
//! replicas). It is exact within its limits (64 replicas per variant, only the cheapest
//! mixes of each model when there are many models, a budget of search nodes);
//! [`Placement::optimal`] says whether it stayed within them. [`first_fit`] is the greedy
//! baseline it is measured against.
//!
//! ```
//! use mlops_scale::packing::{GpuSpec, ModelDemand, Variant, pack};
//!
//! const GB: u64 = 1 << 30;
//! let gpu = GpuSpec::new(80 * GB);
//! let models = vec![
//!     ModelDemand::new("ranker", 130.0, vec![
//!         Variant::new(1.0, 100.0, 10 * GB),
//!         Variant::new(0.5, 60.0, 8 * GB),
//!         Variant::new(0.25, 35.0, 6 * GB),
//!     ]),
//! ];
//! let placement = pack(&models, &gpu).unwrap();
//! assert_eq!(placement.gpus, 1); // a half and two quarters: 130 req/s on one GPU
//! ```

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use mlops_core::profile::{ComputeDevice, ConfigStatus, ProfileReport};

/// Compute share in hundredths of a GPU.
const WHOLE: u32 = 100;
/// The most replicas of one model a search considers.
const MAX_REPLICAS_PER_MODEL: u32 = 64;
/// The most replica mixes kept per model.
const MAX_MIXES: usize = 64;
/// The most combinations of mixes tried across models.
const MAX_COMBINATIONS: usize = 20_000;
/// Search nodes, over all combinations, before the search settles for the best found so
/// far.
const NODE_LIMIT: u64 = 20_000_000;
/// Nodes for listing one model's mixes.
const MIX_NODE_LIMIT: u64 = 1_000_000;

/// The GPUs replicas are placed on.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GpuSpec {
    /// Device memory per GPU, in bytes.
    pub memory_bytes: u64,
    /// The most GPUs there are, if limited.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_gpus: Option<u32>,
}

impl GpuSpec {
    /// GPUs of `memory_bytes` each, as many as needed.
    pub fn new(memory_bytes: u64) -> Self {
        GpuSpec {
            memory_bytes,
            max_gpus: None,
        }
    }

    /// The same with at most `n` GPUs.
    pub fn with_max_gpus(mut self, n: u32) -> Self {
        self.max_gpus = Some(n);
        self
    }
}

/// One way to run a replica: a share of a GPU, what it serves there, and its memory.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Variant {
    /// The share of one GPU's compute (`1.0`, `0.5`, `0.25`; MPS's active thread
    /// percentage over 100).
    pub fraction: f64,
    /// Requests per second one replica serves within the latency target at that share.
    pub capacity_rps: f64,
    /// Device memory one replica needs, in bytes.
    pub memory_bytes: u64,
}

impl Variant {
    /// A variant.
    pub fn new(fraction: f64, capacity_rps: f64, memory_bytes: u64) -> Self {
        Variant {
            fraction,
            capacity_rps,
            memory_bytes,
        }
    }

    fn share(&self) -> u32 {
        (self.fraction * WHOLE as f64).round() as u32
    }
}

/// A model to place: its demand and the variants it can run as.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ModelDemand {
    /// The model's name.
    pub name: String,
    /// Requests per second to serve.
    pub demand_rps: f64,
    /// How a replica can run.
    pub variants: Vec<Variant>,
}

impl ModelDemand {
    /// A model with its demand and variants.
    pub fn new(name: impl Into<String>, demand_rps: f64, variants: Vec<Variant>) -> Self {
        ModelDemand {
            name: name.into(),
            demand_rps,
            variants,
        }
    }

    /// The variants a profile measured on GPU: one per GPU fraction (the one with the
    /// highest capacity where several share a fraction), its memory from the
    /// configuration's limit or, without one, the peak the profile saw.
    pub fn from_profile(report: &ProfileReport, demand_rps: f64) -> Result<Self> {
        let mut variants: Vec<Variant> = Vec::new();
        for c in &report.configs {
            if c.status != ConfigStatus::Measured
                || !matches!(c.config.device, ComputeDevice::Gpu { .. })
            {
                continue;
            }
            let Some(capacity) = c.capacity_rps.filter(|v| *v > 0.0) else {
                continue;
            };
            let memory = c.config.gpu_memory_bytes.or_else(|| {
                c.curve
                    .iter()
                    .filter_map(|m| m.resources.as_ref()?.gpu_memory_bytes_max)
                    .max()
            });
            let memory = memory.unwrap_or_else(|| {
                tracing::warn!(
                    config = %c.id,
                    "no GPU memory limit or reading in the profile: placed as needing none"
                );
                0
            });
            let v = Variant::new(c.config.gpu_fraction.unwrap_or(1.0), capacity, memory);
            match variants.iter_mut().find(|x| x.share() == v.share()) {
                Some(x) if x.capacity_rps < v.capacity_rps => *x = v,
                Some(_) => {}
                None => variants.push(v),
            }
        }
        if variants.is_empty() {
            return Err(Error::Profile(format!(
                "the profile of {} has no GPU configuration that met the target",
                report.model.name
            )));
        }
        Ok(ModelDemand::new(
            report.model.name.clone(),
            demand_rps,
            variants,
        ))
    }
}

/// NVIDIA MPS settings for one replica's process.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MpsSettings {
    /// `CUDA_MPS_ACTIVE_THREAD_PERCENTAGE`.
    pub active_thread_percentage: u32,
    /// `CUDA_MPS_PINNED_DEVICE_MEM_LIMIT`, as `0=<MiB>M` for the one device the replica sees.
    pub pinned_device_mem_limit: String,
    /// `CUDA_VISIBLE_DEVICES`: the GPU's index.
    pub visible_devices: String,
}

impl MpsSettings {
    /// The settings as environment variables.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("CUDA_VISIBLE_DEVICES", self.visible_devices.clone()),
            (
                "CUDA_MPS_ACTIVE_THREAD_PERCENTAGE",
                self.active_thread_percentage.to_string(),
            ),
            (
                "CUDA_MPS_PINNED_DEVICE_MEM_LIMIT",
                self.pinned_device_mem_limit.clone(),
            ),
        ]
    }
}

/// One replica's place.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ReplicaPlacement {
    /// The model.
    pub model: String,
    /// The GPU's index, from 0.
    pub gpu: u32,
    /// Its share of that GPU.
    pub fraction: f64,
    /// What it serves.
    pub capacity_rps: f64,
    /// Its memory.
    pub memory_bytes: u64,
    /// How to start it.
    pub mps: MpsSettings,
}

/// A packing: every replica and the GPUs used.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Placement {
    /// GPUs used.
    pub gpus: u32,
    /// Every replica, by GPU.
    pub replicas: Vec<ReplicaPlacement>,
    /// Whether the search was exhaustive over the mixes it kept (false when it stopped at
    /// its node limit, when it kept only the cheapest mixes of many models, and for
    /// [`first_fit`]).
    pub optimal: bool,
}

impl Placement {
    /// The share of each GPU used, by index.
    pub fn shares(&self) -> Vec<f64> {
        let mut shares = vec![0.0; self.gpus as usize];
        for r in &self.replicas {
            shares[r.gpu as usize] += r.fraction;
        }
        shares
    }

    /// One line per GPU: its replicas, share and memory used.
    pub fn summary(&self) -> String {
        let mut out = format!(
            "{} GPU{}{}\n",
            self.gpus,
            if self.gpus == 1 { "" } else { "s" },
            if self.optimal {
                ", the fewest possible"
            } else {
                ""
            }
        );
        for g in 0..self.gpus {
            let on: Vec<&ReplicaPlacement> = self.replicas.iter().filter(|r| r.gpu == g).collect();
            let share: f64 = on.iter().map(|r| r.fraction).sum();
            let memory: u64 = on.iter().map(|r| r.memory_bytes).sum();
            let names: Vec<String> = on
                .iter()
                .map(|r| format!("{} at {:.0}%", r.model, r.fraction * 100.0))
                .collect();
            out.push_str(&format!(
                "GPU {g}: {} ({:.0}% of compute, {:.1} GiB)\n",
                names.join(", "),
                share * 100.0,
                memory as f64 / (1u64 << 30) as f64
            ));
        }
        out
    }

    /// The capacity placed for `model`.
    pub fn capacity_of(&self, model: &str) -> f64 {
        self.replicas
            .iter()
            .filter(|r| r.model == model)
            .map(|r| r.capacity_rps)
            .sum()
    }
}

/// A replica to place: (model index, variant index).
type Item = (usize, usize);

fn validate(models: &[ModelDemand], gpu: &GpuSpec) -> Result<()> {
    if gpu.memory_bytes == 0 {
        return Err(Error::Packing("a GPU needs memory".to_string()));
    }
    for m in models {
        if !(m.demand_rps.is_finite() && m.demand_rps >= 0.0) {
            return Err(Error::Packing(format!(
                "{}: demand must be >= 0, not {}",
                m.name, m.demand_rps
            )));
        }
        if m.variants.is_empty() {
            return Err(Error::Packing(format!("{}: no variant to run", m.name)));
        }
        for v in &m.variants {
            if !(v.fraction > 0.0 && v.fraction <= 1.0) || v.share() == 0 {
                return Err(Error::Packing(format!(
                    "{}: a GPU share must be in (0, 1], not {}",
                    m.name, v.fraction
                )));
            }
            if !(v.capacity_rps.is_finite() && v.capacity_rps > 0.0) {
                return Err(Error::Packing(format!(
                    "{}: capacity must be positive, not {}",
                    m.name, v.capacity_rps
                )));
            }
        }
        if m.demand_rps > 0.0 && m.variants.iter().all(|v| v.memory_bytes > gpu.memory_bytes) {
            return Err(Error::Packing(format!(
                "{}: no variant fits in a GPU's {} bytes",
                m.name, gpu.memory_bytes
            )));
        }
    }
    Ok(())
}

/// The replica mixes (a count per variant) that serve a model's demand with no replica
/// to spare, the cheapest in share (then memory) first, at most `keep`.
fn mixes(model: &ModelDemand, gpu: &GpuSpec, keep: usize) -> (Vec<Vec<u32>>, bool) {
    let variants: Vec<&Variant> = model.variants.iter().collect();
    if model.demand_rps <= 0.0 {
        return (vec![vec![0; variants.len()]], false);
    }
    let mut capped = false;
    let limit: Vec<u32> = variants
        .iter()
        .map(|v| {
            if v.memory_bytes > gpu.memory_bytes {
                0
            } else {
                let n = (model.demand_rps / v.capacity_rps).ceil();
                capped |= n > MAX_REPLICAS_PER_MODEL as f64;
                n.min(MAX_REPLICAS_PER_MODEL as f64) as u32
            }
        })
        .collect();
    let mut found: Vec<(u32, u64, Vec<u32>)> = Vec::new();
    let mut counts = vec![0u32; variants.len()];
    fn walk(
        i: usize,
        counts: &mut Vec<u32>,
        limit: &[u32],
        variants: &[&Variant],
        demand: f64,
        found: &mut Vec<(u32, u64, Vec<u32>)>,
        nodes: &mut u64,
    ) {
        *nodes += 1;
        if *nodes > MIX_NODE_LIMIT {
            return;
        }
        let served: f64 = counts
            .iter()
            .zip(variants)
            .map(|(n, v)| *n as f64 * v.capacity_rps)
            .sum();
        if served >= demand {
            // Minimal: dropping any one replica falls short.
            let minimal = counts
                .iter()
                .zip(variants)
                .all(|(n, v)| *n == 0 || served - v.capacity_rps < demand);
            if minimal {
                let share = counts
                    .iter()
                    .zip(variants)
                    .map(|(n, v)| n * v.share())
                    .sum();
                let memory = counts
                    .iter()
                    .zip(variants)
                    .map(|(n, v)| *n as u64 * v.memory_bytes)
                    .sum();
                found.push((share, memory, counts.clone()));
            }
            return;
        }
        if i == variants.len() {
            return;
        }
        for n in 0..=limit[i] {
            counts[i] = n;
            walk(i + 1, counts, limit, variants, demand, found, nodes);
        }
        counts[i] = 0;
    }
    let mut nodes = 0;
    walk(
        0,
        &mut counts,
        &limit,
        &variants,
        model.demand_rps,
        &mut found,
        &mut nodes,
    );
    capped |= nodes > MIX_NODE_LIMIT;
    found.sort_by(|a, b| a.0.cmp(&b.0).then(a.1.cmp(&b.1)).then(a.2.cmp(&b.2)));
    let truncated = capped || found.len() > keep;
    found.truncate(keep);
    (found.into_iter().map(|k| k.2).collect(), truncated)
}

/// Exact bin packing of items (largest first) into GPUs by depth-first branch and bound;
/// `best` is the count to beat, and `best_assignment` each item's GPU in the best found.
struct Packer {
    shares: Vec<u32>,
    memory: Vec<u64>,
    capacity: u64,
    best: u32,
    best_assignment: Option<Vec<u32>>,
    nodes: u64,
    /// The nodes it may visit: what the whole search has left.
    limit: u64,
    exhausted: bool,
}

impl Packer {
    fn search(&mut self, i: usize, bins: &mut Vec<(u32, u64)>, assignment: &mut Vec<u32>) {
        self.nodes += 1;
        if self.nodes > self.limit {
            self.exhausted = true;
            return;
        }
        if i == self.shares.len() {
            if (bins.len() as u32) < self.best {
                self.best = bins.len() as u32;
                self.best_assignment = Some(assignment.clone());
            }
            return;
        }
        // Lower bound: the GPUs open plus what the rest needs beyond their free room.
        let rest_share: u32 = self.shares[i..].iter().sum();
        let rest_mem: u64 = self.memory[i..].iter().sum();
        let free_share: u32 = bins.iter().map(|b| WHOLE - b.0).sum();
        let free_mem: u64 = bins.iter().map(|b| self.capacity - b.1).sum();
        let more_share = rest_share.saturating_sub(free_share).div_ceil(WHOLE);
        let more_mem = rest_mem.saturating_sub(free_mem).div_ceil(self.capacity) as u32;
        if bins.len() as u32 + more_share.max(more_mem) >= self.best {
            return;
        }
        let (s, m) = (self.shares[i], self.memory[i]);
        let mut tried: Vec<(u32, u64)> = Vec::new();
        for b in 0..bins.len() {
            let (bs, bm) = bins[b];
            if bs + s > WHOLE || bm + m > self.capacity || tried.contains(&(bs, bm)) {
                continue;
            }
            // GPUs in the same state are interchangeable: try one of them.
            tried.push((bs, bm));
            bins[b] = (bs + s, bm + m);
            assignment.push(b as u32);
            self.search(i + 1, bins, assignment);
            assignment.pop();
            bins[b] = (bs, bm);
        }
        if (bins.len() as u32 + 1) < self.best {
            bins.push((s, m));
            assignment.push((bins.len() - 1) as u32);
            self.search(i + 1, bins, assignment);
            assignment.pop();
            bins.pop();
        }
    }
}

/// Items largest first (share, then memory), for both searches.
fn order(models: &[ModelDemand], items: &mut [Item]) {
    items.sort_by(|a, b| {
        let (va, vb) = (&models[a.0].variants[a.1], &models[b.0].variants[b.1]);
        vb.share()
            .cmp(&va.share())
            .then(vb.memory_bytes.cmp(&va.memory_bytes))
            .then(a.cmp(b))
    });
}

fn place(models: &[ModelDemand], items: &[Item], assignment: &[u32], optimal: bool) -> Placement {
    let mut replicas: Vec<ReplicaPlacement> = items
        .iter()
        .zip(assignment)
        .map(|(&(m, v), &gpu)| {
            let variant = &models[m].variants[v];
            ReplicaPlacement {
                model: models[m].name.clone(),
                gpu,
                fraction: variant.fraction,
                capacity_rps: variant.capacity_rps,
                memory_bytes: variant.memory_bytes,
                mps: MpsSettings {
                    active_thread_percentage: variant.share(),
                    pinned_device_mem_limit: format!(
                        "0={}M",
                        variant.memory_bytes.div_ceil(1024 * 1024)
                    ),
                    visible_devices: gpu.to_string(),
                },
            }
        })
        .collect();
    replicas.sort_by(|a, b| a.gpu.cmp(&b.gpu).then(a.model.cmp(&b.model)));
    let gpus = assignment.iter().map(|g| g + 1).max().unwrap_or(0);
    Placement {
        gpus,
        replicas,
        optimal,
    }
}

/// The fewest GPUs that serve every model's demand, and where each replica goes.
///
/// # Errors
///
/// [`Error::Packing`] for a model without a usable variant or with a negative demand;
/// [`Error::TooManyGpus`] when the best placement needs more than [`GpuSpec::max_gpus`].
pub fn pack(models: &[ModelDemand], gpu: &GpuSpec) -> Result<Placement> {
    validate(models, gpu)?;
    // Every combination of mixes is tried, so fewer are kept per model as models grow.
    let keep = ((MAX_COMBINATIONS as f64).powf(1.0 / models.len().max(1) as f64) as usize)
        .clamp(1, MAX_MIXES);
    let (per_model, truncated): (Vec<Vec<Vec<u32>>>, Vec<bool>) =
        models.iter().map(|m| mixes(m, gpu, keep)).unzip();
    for (m, mixes) in models.iter().zip(&per_model) {
        if mixes.is_empty() {
            return Err(Error::Packing(format!(
                "{}: {} req/s needs more than {MAX_REPLICAS_PER_MODEL} replicas of any variant",
                m.name, m.demand_rps
            )));
        }
    }
    // The greedy answer bounds the search.
    let greedy = greedy(models, gpu)?;
    let greedy_share: u32 = greedy
        .replicas
        .iter()
        .map(|r| (r.fraction * WHOLE as f64).round() as u32)
        .sum();
    let mut best_key = (greedy.gpus, greedy_share, greedy.replicas.len());
    let mut best = greedy;
    let mut exhausted = false;
    let mut budget = NODE_LIMIT;
    let mut choice = vec![0usize; models.len()];
    'combinations: loop {
        let mut items: Vec<Item> = Vec::new();
        for (m, &c) in choice.iter().enumerate() {
            for (v, &n) in per_model[m][c].iter().enumerate() {
                items.extend(std::iter::repeat_n((m, v), n as usize));
            }
        }
        order(models, &mut items);
        let shares: Vec<u32> = items
            .iter()
            .map(|&(m, v)| models[m].variants[v].share())
            .collect();
        let memory: Vec<u64> = items
            .iter()
            .map(|&(m, v)| models[m].variants[v].memory_bytes)
            .collect();
        let share: u32 = shares.iter().sum();
        let lower = share
            .div_ceil(WHOLE)
            .max(memory.iter().sum::<u64>().div_ceil(gpu.memory_bytes) as u32);
        if (lower, share, items.len()) < best_key {
            let mut packer = Packer {
                shares,
                memory,
                capacity: gpu.memory_bytes,
                // Any packing into no more GPUs than the best so far.
                best: best_key.0 + 1,
                best_assignment: None,
                nodes: 0,
                limit: budget,
                exhausted: false,
            };
            packer.search(0, &mut Vec::new(), &mut Vec::new());
            budget = budget.saturating_sub(packer.nodes);
            exhausted |= packer.exhausted;
            if let Some(assignment) = packer.best_assignment {
                let key = (packer.best, share, items.len());
                if key < best_key {
                    best_key = key;
                    best = place(models, &items, &assignment, false);
                }
            }
        }
        // The next combination of mixes.
        for k in 0..models.len() {
            choice[k] += 1;
            if choice[k] < per_model[k].len() {
                continue 'combinations;
            }
            choice[k] = 0;
        }
        break;
    }
    best.optimal = !exhausted && !truncated.contains(&true);
    check_limit(best, gpu)
}

fn check_limit(placement: Placement, gpu: &GpuSpec) -> Result<Placement> {
    match gpu.max_gpus {
        Some(available) if placement.gpus > available => Err(Error::TooManyGpus {
            needed: placement.gpus,
            available,
        }),
        _ => Ok(placement),
    }
}

/// The greedy baseline: each model's replicas all of its most efficient variant (the
/// most requests per unit of share), as many as the demand needs, then each replica onto
/// the first GPU it fits, in the models' order.
pub fn first_fit(models: &[ModelDemand], gpu: &GpuSpec) -> Result<Placement> {
    validate(models, gpu)?;
    check_limit(greedy(models, gpu)?, gpu)
}

/// [`first_fit`] without the GPU limit: the bound the exact search starts from.
fn greedy(models: &[ModelDemand], gpu: &GpuSpec) -> Result<Placement> {
    let mut items: Vec<Item> = Vec::new();
    for (m, model) in models.iter().enumerate() {
        if model.demand_rps <= 0.0 {
            continue;
        }
        let (v, variant) = model
            .variants
            .iter()
            .enumerate()
            .filter(|(_, v)| v.memory_bytes <= gpu.memory_bytes)
            .max_by(|a, b| {
                (a.1.capacity_rps / a.1.fraction).total_cmp(&(b.1.capacity_rps / b.1.fraction))
            })
            .ok_or_else(|| Error::Packing(format!("{}: no variant fits", model.name)))?;
        let n = (model.demand_rps / variant.capacity_rps).ceil() as usize;
        items.extend(std::iter::repeat_n((m, v), n));
    }
    let mut bins: Vec<(u32, u64)> = Vec::new();
    let mut assignment = Vec::with_capacity(items.len());
    for &(m, v) in &items {
        let variant = &models[m].variants[v];
        let (s, mem) = (variant.share(), variant.memory_bytes);
        let slot = bins
            .iter()
            .position(|&(bs, bm)| bs + s <= WHOLE && bm + mem <= gpu.memory_bytes);
        let b = match slot {
            Some(b) => b,
            None => {
                bins.push((0, 0));
                bins.len() - 1
            }
        };
        bins[b].0 += s;
        bins[b].1 += mem;
        assignment.push(b as u32);
    }
    Ok(place(models, &items, &assignment, false))
}
