//! The configuration search: the space and its neighbourhoods, the objective, brute force,
//! the hill climb's contract, and the hill climb's quality on the synthetic benchmark.

use std::collections::BTreeSet;
use std::sync::OnceLock;

use mlops_core::profile::{ComputeDevice, CostModel, ServingConfig};
use mlops_profile::search::{
    self, Axes, BruteForce, HillClimb, Scores, SearchSpace, Strategy, objective, synthetic,
};
use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;

const GPU: ComputeDevice = ComputeDevice::Gpu { index: 0 };

fn ids(space: &SearchSpace, indices: &[usize]) -> Vec<String> {
    indices.iter().map(|&i| space.config(i).id()).collect()
}

fn index(space: &SearchSpace, id: &str) -> usize {
    space
        .configs()
        .iter()
        .position(|c| c.id() == id)
        .unwrap_or_else(|| panic!("{id} is not in the space"))
}

fn cpu(cores: u32, batch: usize, instances: usize) -> ServingConfig {
    ServingConfig {
        cpu_cores: cores,
        max_batch_size: batch,
        instances,
        ..ServingConfig::default()
    }
}

// ---- the space ------------------------------------------------------------------------

#[test]
fn default_axes_make_six_cpu_configurations_in_order() {
    let space = SearchSpace::grid(&Axes::default());
    assert_eq!(space.len(), 6);
    assert!(!space.is_empty());
    assert_eq!(
        ids(&space, &(0..6).collect::<Vec<_>>()),
        [
            "cpu1-b1-d0-i1-t1",
            "cpu1-b1-d0-i2-t1",
            "cpu1-b8-d0-i1-t1",
            "cpu1-b8-d0-i2-t1",
            "cpu1-b32-d0-i1-t1",
            "cpu1-b32-d0-i2-t1",
        ]
    );
    assert_eq!(space.devices(), [ComputeDevice::Cpu]);
    assert!(space.configs().iter().all(|c| c.gpu_fraction.is_none()));
}

#[test]
fn grid_is_the_product_per_device_with_fractions_on_gpus_only() {
    let axes = Axes::default()
        .with_devices([ComputeDevice::Cpu, GPU])
        .with_cpu_cores([2, 1])
        .with_gpu_fractions([1.0, 0.5])
        .with_max_batch_sizes([1, 8])
        .with_queue_delays_us([0, 100])
        .with_instances([1])
        .with_intra_op_threads([1, 2]);
    let space = SearchSpace::grid(&axes);
    // CPU: 2 cores × 2 batches × 2 delays × 2 threads; GPU: the same × 2 fractions.
    assert_eq!(space.len(), 16 + 32);
    assert_eq!(
        space.on_device(ComputeDevice::Cpu),
        (0..16).collect::<Vec<_>>()
    );
    assert_eq!(space.on_device(GPU), (16..48).collect::<Vec<_>>());
    // Values keep the order given; the last axis varies fastest.
    assert_eq!(
        ids(&space, &[0, 1, 2, 4, 8, 16, 17, 24, 47]),
        [
            "cpu2-b1-d0-i1-t1",
            "cpu2-b1-d0-i1-t2",
            "cpu2-b1-d100-i1-t1",
            "cpu2-b8-d0-i1-t1",
            "cpu1-b1-d0-i1-t1",
            "gpu0x1.00-c2-b1-d0-i1-t1",
            "gpu0x1.00-c2-b1-d0-i1-t2",
            "gpu0x0.50-c2-b1-d0-i1-t1",
            "gpu0x0.50-c1-b8-d100-i1-t2",
        ]
    );
    assert_eq!(space.config(16).gpu_fraction, Some(1.0));
    assert_eq!(space.index_of(space.config(24)), Some(24));
}

#[test]
fn grid_drops_repeats_and_values_that_cannot_run() {
    let axes = Axes::default()
        .with_devices([ComputeDevice::Cpu, GPU, ComputeDevice::Cpu])
        .with_cpu_cores([0, 1, 1])
        .with_gpu_fractions([1.5, 0.5, 0.0, f64::NAN, 0.5])
        .with_max_batch_sizes([0, 4])
        .with_instances([1, 0]);
    let space = SearchSpace::grid(&axes);
    assert_eq!(
        ids(&space, &(0..space.len()).collect::<Vec<_>>()),
        ["cpu1-b4-d0-i1-t1", "gpu0x0.50-c1-b4-d0-i1-t1"]
    );
    let empty = SearchSpace::grid(&Axes::default().with_instances([]));
    assert!(empty.is_empty());
    assert_eq!(empty.len(), 0);
}

#[test]
fn axes_read_from_a_file_take_defaults_for_missing_fields() {
    let axes: Axes = serde_json::from_str(
        r#"{"devices": [{"kind": "cpu"}, {"kind": "gpu", "index": 1}], "cpu_cores": [1, 2]}"#,
    )
    .expect("axes");
    assert_eq!(
        axes.devices,
        [ComputeDevice::Cpu, ComputeDevice::Gpu { index: 1 }]
    );
    assert_eq!(axes.cpu_cores, [1, 2]);
    assert_eq!(axes.max_batch_sizes, Axes::default().max_batch_sizes);
    let back: Axes =
        serde_json::from_str(&serde_json::to_string(&axes).expect("json")).expect("axes");
    assert_eq!(back, axes);
    // 2 cores × 3 batches × 2 instances on the CPU, and × 3 fractions on the GPU.
    assert_eq!(SearchSpace::grid(&axes).len(), 12 + 36);
}

#[test]
fn from_configs_orders_axes_by_value_not_by_arrival() {
    // Given out of order, with a repeat: batch 32 comes first, batch 1 last.
    let space = SearchSpace::from_configs(vec![
        cpu(1, 32, 1),
        cpu(1, 8, 1),
        cpu(1, 32, 1),
        cpu(1, 128, 1),
        cpu(1, 1, 1),
    ]);
    assert_eq!(space.len(), 4);
    assert_eq!(
        ids(&space, &[0, 1, 2, 3]),
        [
            "cpu1-b32-d0-i1-t1",
            "cpu1-b8-d0-i1-t1",
            "cpu1-b128-d0-i1-t1",
            "cpu1-b1-d0-i1-t1"
        ]
    );
    // Along the batch axis 1 < 8 < 32 < 128: batch 8's neighbours are 1 and 32.
    assert_eq!(
        ids(&space, &space.neighbours(1, 1)),
        ["cpu1-b32-d0-i1-t1", "cpu1-b1-d0-i1-t1"]
    );
    assert_eq!(space.neighbours(3, 1), [1]);
    assert_eq!(space.neighbours(3, 2), [0, 1]);
    assert_eq!(space.neighbours(3, 3), [0, 1, 2]);
}

#[test]
fn neighbours_step_along_one_axis_on_the_same_device() {
    let axes = Axes::default()
        .with_devices([ComputeDevice::Cpu, GPU])
        .with_cpu_cores([1, 2, 4])
        .with_gpu_fractions([0.5])
        .with_max_batch_sizes([1, 8, 32, 128])
        .with_instances([1, 2]);
    let space = SearchSpace::grid(&axes);
    assert_eq!(space.len(), 24 + 24);
    let at = index(&space, "cpu2-b8-d0-i1-t1");
    let mut expected: Vec<usize> = [
        "cpu1-b8-d0-i1-t1",
        "cpu4-b8-d0-i1-t1",
        "cpu2-b1-d0-i1-t1",
        "cpu2-b32-d0-i1-t1",
        "cpu2-b8-d0-i2-t1",
    ]
    .iter()
    .map(|id| index(&space, id))
    .collect();
    expected.sort_unstable();
    assert_eq!(space.neighbours(at, 1), expected);
    // Radius 2 adds batch 128 (two steps up); cores and instances have no second step.
    let wide = space.neighbours(at, 2);
    assert_eq!(wide.len(), 6);
    assert!(wide.contains(&index(&space, "cpu2-b128-d0-i1-t1")));
    assert_eq!(space.neighbours(at, 0), Vec::<usize>::new());
    // Sorted ascending, never itself, never on another device.
    assert!(wide.windows(2).all(|w| w[0] < w[1]));
    assert!(!wide.contains(&at));
    assert!(
        wide.iter()
            .all(|&j| space.config(j).device == ComputeDevice::Cpu)
    );
    // A corner has one neighbour per axis.
    let corner = index(&space, "gpu0x0.50-c1-b1-d0-i1-t1");
    assert_eq!(
        ids(&space, &space.neighbours(corner, 1)),
        [
            "gpu0x0.50-c1-b1-d0-i2-t1",
            "gpu0x0.50-c1-b8-d0-i1-t1",
            "gpu0x0.50-c2-b1-d0-i1-t1"
        ]
    );
    // Two-axis steps: one step on each of two axes.
    let diagonal = ids(&space, &space.diagonal_neighbours(corner));
    assert_eq!(
        diagonal,
        [
            "gpu0x0.50-c1-b8-d0-i2-t1",
            "gpu0x0.50-c2-b1-d0-i2-t1",
            "gpu0x0.50-c2-b8-d0-i1-t1"
        ]
    );
    // Cores × batch (2 × 2), cores × instances (2 × 1), batch × instances (2 × 1).
    assert_eq!(space.diagonal_neighbours(at).len(), 4 + 2 + 2);
    assert!(space.neighbours(space.len(), 1).is_empty());
    assert!(space.diagonal_neighbours(space.len()).is_empty());
}

#[test]
fn retain_drops_configurations_and_recounts_the_axes() {
    let axes = Axes::default()
        .with_devices([ComputeDevice::Cpu, GPU])
        .with_cpu_cores([1, 2, 4]);
    let mut space = SearchSpace::grid(&axes);
    assert_eq!(space.len(), 18 + 54);
    let removed = space.retain(|c| !c.device.is_gpu());
    assert_eq!(removed.len(), 54);
    assert!(removed.iter().all(|c| c.device == GPU));
    assert_eq!(space.len(), 18);
    assert_eq!(space.devices(), [ComputeDevice::Cpu]);
    // Without 2 cores, 1 and 4 are one step apart.
    let removed = space.retain(|c| c.cpu_cores != 2);
    assert_eq!(removed.len(), 6);
    let at = index(&space, "cpu1-b8-d0-i1-t1");
    assert!(
        space
            .neighbours(at, 1)
            .contains(&index(&space, "cpu4-b8-d0-i1-t1"))
    );
}

// ---- the objective --------------------------------------------------------------------

#[test]
fn objective_is_capacity_per_hourly_cost() {
    let cost = CostModel::default();
    // Two cores: 0.08 per hour; 100 req/s → 1,250 req/s per unit per hour.
    let two = cpu(2, 8, 1);
    assert!((objective(&cost, &two, 100.0, None) - 1250.0).abs() < 1e-9);
    // Half a GPU and two cores: 1.25 + 0.08 = 1.33 per hour.
    let half = ServingConfig {
        device: GPU,
        gpu_fraction: Some(0.5),
        ..cpu(2, 32, 1)
    };
    assert!((objective(&cost, &half, 1330.0, None) - 1000.0).abs() < 1e-9);
}

#[test]
fn objective_with_a_demand_is_the_inverse_of_the_fleet_cost() {
    let cost = CostModel::default();
    let two = cpu(2, 8, 1);
    // 250 req/s at 100 each: 3 replicas at 0.08 → 250 / 0.24.
    assert!((objective(&cost, &two, 100.0, Some(250.0)) - 250.0 / 0.24).abs() < 1e-9);
    // Exactly 2.5 replicas' worth still needs 3; exactly 2 needs 2.
    assert!((objective(&cost, &two, 125.0, Some(250.0)) - 250.0 / 0.16).abs() < 1e-9);
    // A demand below one replica's capacity pays for one replica.
    assert!((objective(&cost, &two, 1000.0, Some(250.0)) - 250.0 / 0.08).abs() < 1e-9);
    // Half a GPU at 1,000 req/s for 2,500 req/s: 3 × 1.33.
    let half = ServingConfig {
        device: GPU,
        gpu_fraction: Some(0.5),
        ..cpu(2, 32, 1)
    };
    assert!((objective(&cost, &half, 1000.0, Some(2500.0)) - 2500.0 / 3.99).abs() < 1e-9);
    // A demand that is not a positive number counts as none.
    assert_eq!(
        objective(&cost, &two, 100.0, Some(0.0)),
        objective(&cost, &two, 100.0, None)
    );
    assert_eq!(
        objective(&cost, &two, 100.0, Some(f64::NAN)),
        objective(&cost, &two, 100.0, None)
    );
}

#[test]
fn objective_of_no_capacity_is_zero() {
    let cost = CostModel::default();
    let one = cpu(1, 1, 1);
    for capacity in [0.0, -5.0, f64::NAN, f64::INFINITY] {
        assert_eq!(objective(&cost, &one, capacity, None), 0.0);
        assert_eq!(objective(&cost, &one, capacity, Some(100.0)), 0.0);
    }
    // Free hardware ranks by capacity.
    let free = CostModel {
        cpu_core_hour: 0.0,
        gpu_hour: 0.0,
        currency: "USD".to_owned(),
    };
    assert_eq!(objective(&free, &one, 40.0, None), 40.0);
}

// ---- brute force and the driver -------------------------------------------------------

#[test]
fn brute_force_measures_everything_in_order() {
    let space = SearchSpace::grid(&Axes::default().with_cpu_cores([1, 2]));
    let mut brute = BruteForce;
    assert_eq!(brute.name(), "brute_force");
    // Failures count as measured.
    let path = search::run(&mut brute, &space, |i| (i % 3 != 0).then_some(i as f64));
    assert_eq!(path, (0..12).collect::<Vec<_>>());
    let mut scores = Scores::new();
    scores.insert(0, Some(1.0));
    scores.insert(2, None);
    assert_eq!(brute.next(&space, &scores), Some(1));
    let all: Scores = (0..12).map(|i| (i, Some(1.0))).collect();
    assert_eq!(brute.next(&space, &all), None);
}

/// Breaks the contract: asks for the same configuration again and again.
struct Stuck;

impl Strategy for Stuck {
    fn name(&self) -> &'static str {
        "stuck"
    }

    fn next(&mut self, _: &SearchSpace, _: &Scores) -> Option<usize> {
        Some(0)
    }
}

#[test]
fn run_stops_a_strategy_that_repeats_itself() {
    let space = SearchSpace::grid(&Axes::default());
    let mut measured = 0;
    let path = search::run(&mut Stuck, &space, |_| {
        measured += 1;
        Some(1.0)
    });
    assert_eq!(path, [0]);
    assert_eq!(measured, 1);
}

// ---- the hill climb's contract --------------------------------------------------------

fn climb(seed: u64, space: &SearchSpace, values: &[f64]) -> Vec<usize> {
    search::run(&mut HillClimb::new(seed), space, |i| Some(values[i]))
}

fn synthetic_objective(seed: u64, demand: Option<f64>) -> (SearchSpace, Vec<f64>) {
    let (space, capacities) = synthetic::space(seed);
    let cost = CostModel::default();
    let values = (0..space.len())
        .map(|i| objective(&cost, space.config(i), capacities[i], demand))
        .collect();
    (space, values)
}

#[test]
fn hill_climb_is_deterministic_per_seed() {
    let (space, values) = synthetic_objective(3, None);
    let first = climb(11, &space, &values);
    assert_eq!(climb(11, &space, &values), first);
    assert_ne!(climb(12, &space, &values), first);
    // The same strategy reused on the same space starts over.
    let mut strategy = HillClimb::new(11);
    assert_eq!(strategy.name(), "hill_climb");
    assert_eq!(strategy.seed(), 11);
    assert_eq!(
        search::run(&mut strategy, &space, |i| Some(values[i])),
        first
    );
    assert_eq!(
        search::run(&mut strategy, &space, |i| Some(values[i])),
        first
    );
}

#[test]
fn hill_climb_never_repeats_and_spends_its_budget() {
    let (space, values) = synthetic_objective(4, None);
    let strategy = HillClimb::new(0);
    let budget = strategy.budget(&space);
    assert_eq!(budget, space.len() / 10);
    let path = search::run(&mut strategy.clone(), &space, |i| Some(values[i]));
    assert_eq!(path.len(), budget);
    assert_eq!(path.iter().collect::<BTreeSet<_>>().len(), path.len());
    // An absolute budget overrides the fraction.
    let capped = search::run(&mut HillClimb::new(0).with_budget(7), &space, |i| {
        Some(values[i])
    });
    assert_eq!(capped.len(), 7);
    let half = HillClimb::new(0).with_budget_fraction(0.5);
    assert_eq!(half.budget(&space), space.len() / 2);
    // 0.1 × 30 is 3.0000000000000004 in floating point; the budget is still 3.
    let thirty = SearchSpace::grid(&Axes::default().with_cpu_cores([1, 2, 3, 4, 5]));
    assert_eq!(thirty.len(), 30);
    assert_eq!(HillClimb::new(0).budget(&thirty), 3);
}

#[test]
fn hill_climb_asks_again_until_answered() {
    let (space, values) = synthetic_objective(5, None);
    let mut strategy = HillClimb::new(2);
    let mut scores = Scores::new();
    for _ in 0..20 {
        let next = strategy.next(&space, &scores).expect("a configuration");
        assert_eq!(strategy.next(&space, &scores), Some(next));
        assert!(!scores.contains_key(&next));
        scores.insert(next, Some(values[next]));
    }
}

#[test]
fn hill_climb_survives_every_measurement_failing() {
    let (space, _) = synthetic_objective(6, None);
    let path = search::run(&mut HillClimb::new(1), &space, |_| None);
    assert_eq!(path.len(), space.len() / 10);
    assert_eq!(path.iter().collect::<BTreeSet<_>>().len(), path.len());
    // Every device was tried.
    let devices: BTreeSet<_> = path.iter().map(|&i| space.config(i).device).collect();
    assert_eq!(devices.len(), 2);
}

#[test]
fn hill_climb_sees_every_device_even_on_a_tiny_budget() {
    let axes =
        Axes::default().with_devices([ComputeDevice::Cpu, GPU, ComputeDevice::Gpu { index: 1 }]);
    let space = SearchSpace::grid(&axes);
    assert_eq!(space.len(), 6 + 18 + 18);
    let strategy = HillClimb::new(0).with_budget_fraction(0.01);
    assert_eq!(strategy.budget(&space), 3);
    let path = search::run(&mut strategy.clone(), &space, |i| Some(i as f64));
    let devices: BTreeSet<_> = path.iter().map(|&i| space.config(i).device).collect();
    assert_eq!(devices.len(), 3);
}

#[test]
fn hill_climb_with_the_whole_space_as_budget_measures_everything() {
    let space = SearchSpace::grid(
        &Axes::default()
            .with_cpu_cores([1, 2])
            .with_devices([ComputeDevice::Cpu, GPU]),
    );
    for fraction in [1.0, 2.0] {
        let path = search::run(
            &mut HillClimb::new(3).with_budget_fraction(fraction),
            &space,
            |i| (i % 5 != 0).then_some((i * 7 % 11) as f64),
        );
        assert_eq!(
            path.iter().copied().collect::<BTreeSet<_>>(),
            (0..space.len()).collect()
        );
        assert_eq!(path.len(), space.len());
    }
}

/// A unimodal score on the 12-configuration space of a 2-core host, peaking at `peak`:
/// it falls with the (weighted) squared distance in grid steps.
fn unimodal(space: &SearchSpace, peak: usize) -> Vec<f64> {
    let step = |c: &ServingConfig| {
        let batch = [1, 8, 32]
            .iter()
            .position(|&b| b == c.max_batch_size)
            .unwrap_or(0);
        [f64::from(c.cpu_cores), batch as f64, c.instances as f64]
    };
    let top = step(space.config(peak));
    (0..space.len())
        .map(|i| {
            let at = step(space.config(i));
            let d = 1.3 * (at[0] - top[0]).powi(2)
                + (at[1] - top[1]).powi(2)
                + 0.7 * (at[2] - top[2]).powi(2);
            100.0 / (1.0 + d)
        })
        .collect()
}

#[test]
fn hill_climb_on_a_tiny_space_finds_the_peak() {
    let space = SearchSpace::grid(&Axes::default().with_cpu_cores([1, 2]));
    assert_eq!(space.len(), 12);
    // 30% of 12, rounded down: never more than the share asked for.
    assert_eq!(
        HillClimb::new(0).with_budget_fraction(0.3).budget(&space),
        3
    );
    assert_eq!(
        HillClimb::new(0).with_budget_fraction(0.34).budget(&space),
        4
    );
    // A score that peaks at both cores, batch 8 and two instances, two steps from where
    // the climb starts: found from any seed with 4 measurements of 12.
    let peak = index(&space, "cpu2-b8-d0-i2-t1");
    let values = unimodal(&space, peak);
    for seed in 0..5 {
        let path = search::run(&mut HillClimb::new(seed).with_budget(4), &space, |i| {
            Some(values[i])
        });
        assert_eq!(path.len(), 4);
        assert!(
            path.contains(&peak),
            "seed {seed}: {:?}",
            ids(&space, &path)
        );
    }
    // Over every possible peak: 4 measurements cannot settle three axes (that takes 5
    // even for a separable score), yet the climb finds most; 6 find them all.
    let (mut found, mut runs) = (0, 0);
    for peak in 0..space.len() {
        let values = unimodal(&space, peak);
        for seed in 0..5 {
            let tight = search::run(&mut HillClimb::new(seed).with_budget(4), &space, |i| {
                Some(values[i])
            });
            found += usize::from(tight.contains(&peak));
            runs += 1;
            let roomy = search::run(
                &mut HillClimb::new(seed).with_budget_fraction(0.5),
                &space,
                |i| Some(values[i]),
            );
            assert_eq!(roomy.len(), 6);
            assert!(
                roomy.contains(&peak),
                "peak {}, seed {seed}: {:?}",
                space.config(peak).id(),
                ids(&space, &roomy)
            );
        }
    }
    eprintln!("tiny space, 4 of 12 measured: peak found in {found} of {runs} runs");
    assert!(found * 10 >= runs * 6, "{found} of {runs}");
}

// ---- the synthetic benchmark ----------------------------------------------------------

const SPACES: u64 = 10;
const SEEDS: u64 = 5;

fn spaces() -> &'static [(SearchSpace, Vec<f64>)] {
    static SPACES_: OnceLock<Vec<(SearchSpace, Vec<f64>)>> = OnceLock::new();
    SPACES_.get_or_init(|| (0..SPACES).map(synthetic::space).collect())
}

#[test]
fn synthetic_spaces_are_large_varied_and_not_trivial() {
    let cost = CostModel::default();
    let mut optima = BTreeSet::new();
    for (seed, (space, capacities)) in spaces().iter().enumerate() {
        assert!(space.len() >= 500, "space {seed}: {}", space.len());
        assert_eq!(space.len() % 40, 0);
        assert_eq!(capacities.len(), space.len());
        assert!(capacities.iter().all(|c| c.is_finite() && *c >= 0.0));
        assert_eq!(space.devices(), [ComputeDevice::Cpu, GPU]);
        // Some configurations break the latency target or do not fit.
        let zero = capacities.iter().filter(|&&c| c == 0.0).count();
        assert!(
            zero > 0 && zero < space.len() / 2,
            "space {seed}: {zero} at zero"
        );
        let values: Vec<f64> = (0..space.len())
            .map(|i| objective(&cost, space.config(i), capacities[i], None))
            .collect();
        let best = (0..space.len())
            .max_by(|&a, &b| values[a].total_cmp(&values[b]))
            .expect("a best");
        let c = space.config(best);
        // The best is inside the grid along the batch size or the instances, at least.
        let on_device: Vec<&ServingConfig> = space
            .configs()
            .iter()
            .filter(|o| o.device == c.device)
            .collect();
        let inside = |value: fn(&ServingConfig) -> usize| {
            let (lo, hi) = on_device.iter().fold((usize::MAX, 0), |(lo, hi), o| {
                (lo.min(value(o)), hi.max(value(o)))
            });
            lo < value(c) && value(c) < hi
        };
        assert!(
            inside(|o| o.max_batch_size) || inside(|o| o.instances),
            "space {seed}: {}",
            c.id()
        );
        optima.insert(c.id());
        // Only a few configurations come within 2% of the best.
        let near = values.iter().filter(|&&v| v >= 0.98 * values[best]).count();
        assert!(near <= 20, "space {seed}: {near} near the best");
    }
    assert!(optima.len() >= 8, "{optima:?}");
    // Deterministic per seed, different across seeds.
    let (again, capacities) = synthetic::space(0);
    assert_eq!(again, spaces()[0].0);
    assert_eq!(capacities, spaces()[0].1);
    assert_ne!(spaces()[0].1, spaces()[1].1);
}

struct Figures {
    min: f64,
    median: f64,
    mean: f64,
    fraction: f64,
    random_min: f64,
    random_median: f64,
    random_mean: f64,
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    if n.is_multiple_of(2) {
        0.5 * (values[n / 2 - 1] + values[n / 2])
    } else {
        values[n / 2]
    }
}

/// Every synthetic space × every seed: the best objective the hill climb finds over
/// brute force's best, the share of the space it measured, and, to compare, the same
/// for as many configurations drawn at random.
fn benchmark(demand: Option<f64>) -> Figures {
    let cost = CostModel::default();
    let mut ratios = Vec::new();
    let mut random = Vec::new();
    let mut fractions = Vec::new();
    for (s, (space, capacities)) in spaces().iter().enumerate() {
        let values: Vec<f64> = (0..space.len())
            .map(|i| objective(&cost, space.config(i), capacities[i], demand))
            .collect();
        let brute = search::run(&mut BruteForce, space, |i| Some(values[i]));
        assert_eq!(brute.len(), space.len());
        let best = brute.iter().map(|&i| values[i]).fold(0.0, f64::max);
        assert!(best > 0.0);
        for seed in 0..SEEDS {
            let path = climb(seed, space, &values);
            let found = path.iter().map(|&i| values[i]).fold(0.0, f64::max);
            let fraction = path.len() as f64 / space.len() as f64;
            assert!(
                fraction <= 0.10,
                "space {s} seed {seed}: measured {fraction}"
            );
            ratios.push(found / best);
            fractions.push(fraction);
            let mut order: Vec<usize> = (0..space.len()).collect();
            order.shuffle(&mut StdRng::seed_from_u64(seed));
            let drawn = order[..path.len()]
                .iter()
                .map(|&i| values[i])
                .fold(0.0, f64::max);
            random.push(drawn / best);
        }
    }
    let n = ratios.len() as f64;
    Figures {
        min: ratios.iter().copied().fold(f64::INFINITY, f64::min),
        mean: ratios.iter().sum::<f64>() / n,
        fraction: fractions.iter().sum::<f64>() / n,
        median: median(&mut ratios),
        random_min: random.iter().copied().fold(f64::INFINITY, f64::min),
        random_mean: random.iter().sum::<f64>() / n,
        random_median: median(&mut random),
    }
}

fn report(label: &str, f: &Figures) {
    eprintln!(
        "{label}: best found / brute-force best over {SPACES} spaces × {SEEDS} seeds: \
         min {:.3}, median {:.3}, mean {:.3}; measured {:.3} of each space on average \
         (random sampling of as many: min {:.3}, median {:.3}, mean {:.3})",
        f.min, f.median, f.mean, f.fraction, f.random_min, f.random_median, f.random_mean
    );
}

#[test]
fn hill_climb_meets_the_target_on_the_synthetic_benchmark() {
    let f = benchmark(None);
    report("no demand", &f);
    assert!(f.median >= 0.98, "median {}", f.median);
    assert!(f.fraction <= 0.10);
    // Random sampling of the same budget misses the target: the benchmark has teeth.
    assert!(f.random_median < 0.98, "random median {}", f.random_median);
    assert!(f.mean > f.random_median);
}

#[test]
fn hill_climb_meets_the_target_with_a_demand() {
    for demand in [2000.0, 20000.0] {
        let f = benchmark(Some(demand));
        report(&format!("demand {demand} req/s"), &f);
        assert!(f.median >= 0.98, "demand {demand}: median {}", f.median);
        assert!(f.fraction <= 0.10);
    }
}
