//! GPU packing: known optima, cases the greedy baseline gets wrong, an exhaustive
//! cross-check on small instances, MPS settings, and variants read from a profile.

use mlops_core::ProfileReport;
use mlops_core::profile::{ComputeDevice, ConfigStatus};
use mlops_scale::Error;
use mlops_scale::packing::{GpuSpec, ModelDemand, Placement, Variant, first_fit, pack};
use proptest::prelude::*;

const GB: u64 = 1 << 30;

fn check(models: &[ModelDemand], gpu: &GpuSpec, placement: &Placement) {
    // Every demand served, every GPU within its share and memory.
    for m in models {
        assert!(
            placement.capacity_of(&m.name) >= m.demand_rps - 1e-9,
            "{} under-served: {placement:?}",
            m.name
        );
    }
    for g in 0..placement.gpus {
        let on: Vec<_> = placement.replicas.iter().filter(|r| r.gpu == g).collect();
        let share: f64 = on.iter().map(|r| r.fraction).sum();
        let memory: u64 = on.iter().map(|r| r.memory_bytes).sum();
        assert!(share <= 1.0 + 1e-9, "GPU {g} over 100%: {placement:?}");
        assert!(
            memory <= gpu.memory_bytes,
            "GPU {g} over memory: {placement:?}"
        );
        assert!(!on.is_empty(), "GPU {g} empty: {placement:?}");
    }
}

/// A half-GPU replica serves 90 req/s (180 per GPU, the most per share), a quarter 40, a
/// whole GPU 150; the detector needs 120 req/s, the tagger one quarter.
fn detector_and_tagger() -> Vec<ModelDemand> {
    vec![
        ModelDemand::new(
            "detector",
            120.0,
            vec![
                Variant::new(1.0, 150.0, 8 * GB),
                Variant::new(0.5, 90.0, 6 * GB),
                Variant::new(0.25, 40.0, 5 * GB),
            ],
        ),
        ModelDemand::new("tagger", 30.0, vec![Variant::new(0.25, 30.0, 4 * GB)]),
    ]
}

#[test]
fn the_mix_matters_when_the_most_efficient_share_rounds_badly() {
    // A half serves 90 req/s (180 per GPU, the most per share), a quarter 40, a whole
    // GPU 150. 120 req/s: two halves (100% of a GPU) by efficiency; a half and a quarter
    // (130 req/s, 75%) at best. With a second model that needs one quarter, the greedy
    // answer takes 2 GPUs and the best 1.
    let gpu = GpuSpec::new(80 * GB);
    let models = detector_and_tagger();
    let greedy = first_fit(&models, &gpu).unwrap();
    check(&models, &gpu, &greedy);
    assert_eq!(greedy.gpus, 2);
    let best = pack(&models, &gpu).unwrap();
    check(&models, &gpu, &best);
    assert_eq!(best.gpus, 1);
    assert!(best.optimal);
    assert_eq!(
        best.summary(),
        "1 GPU, the fewest possible\nGPU 0: detector at 50%, detector at 25%, tagger at 25% (100% of compute, 15.0 GiB)\n"
    );
    let mut shares: Vec<(String, f64)> = best
        .replicas
        .iter()
        .map(|r| (r.model.clone(), r.fraction))
        .collect();
    shares.sort_by(|a, b| a.partial_cmp(b).unwrap());
    assert_eq!(
        shares,
        vec![
            ("detector".to_string(), 0.25),
            ("detector".to_string(), 0.5),
            ("tagger".to_string(), 0.25)
        ]
    );
}

#[test]
fn the_gpu_limit_applies_to_the_best_placement_not_the_greedy_one() {
    // The greedy answer needs 2 GPUs, the best 1: with one GPU available it still packs.
    let gpu = GpuSpec::new(80 * GB).with_max_gpus(1);
    let models = detector_and_tagger();
    assert!(matches!(
        first_fit(&models, &gpu),
        Err(Error::TooManyGpus {
            needed: 2,
            available: 1
        })
    ));
    let best = pack(&models, &gpu).unwrap();
    assert_eq!(best.gpus, 1);
}

#[test]
fn memory_that_does_not_shrink_with_the_share_defeats_the_greedy_choice() {
    // A quarter serves 35 req/s, a whole GPU 120, and each needs 60 GB of an 80 GB GPU:
    // four quarters (the most per share) need four GPUs by memory; two replicas suffice.
    let gpu = GpuSpec::new(80 * GB);
    let models = vec![ModelDemand::new(
        "llm",
        130.0,
        vec![
            Variant::new(1.0, 120.0, 60 * GB),
            Variant::new(0.25, 35.0, 60 * GB),
        ],
    )];
    let greedy = first_fit(&models, &gpu).unwrap();
    check(&models, &gpu, &greedy);
    assert_eq!(greedy.gpus, 4);
    let best = pack(&models, &gpu).unwrap();
    check(&models, &gpu, &best);
    assert_eq!(best.gpus, 2);
    // The cheaper of the two-GPU answers: a whole GPU and a quarter (125%), not two
    // whole ones (200%).
    let share: f64 = best.shares().iter().sum();
    assert!((share - 1.25).abs() < 1e-9, "{best:?}");
}

#[test]
fn replicas_of_several_models_share_gpus_to_the_known_optimum() {
    // Shares 50+50, 25×4, 50+25+25, 100: four GPUs exactly full.
    let gpu = GpuSpec::new(80 * GB);
    let models = vec![
        ModelDemand::new("a", 100.0, vec![Variant::new(0.5, 50.0, 10 * GB)]),
        ModelDemand::new("b", 160.0, vec![Variant::new(0.25, 40.0, 10 * GB)]),
        ModelDemand::new("c", 60.0, vec![Variant::new(0.5, 60.0, 10 * GB)]),
        ModelDemand::new("d", 50.0, vec![Variant::new(0.25, 25.0, 10 * GB)]),
        ModelDemand::new("e", 200.0, vec![Variant::new(1.0, 200.0, 30 * GB)]),
    ];
    let best = pack(&models, &gpu).unwrap();
    check(&models, &gpu, &best);
    assert_eq!(best.gpus, 4);
    assert!(
        best.shares().iter().all(|s| (s - 1.0).abs() < 1e-9),
        "{best:?}"
    );
}

#[test]
fn mps_settings_follow_each_replica() {
    let gpu = GpuSpec::new(80 * GB);
    let models = vec![ModelDemand::new(
        "m",
        70.0,
        vec![
            Variant::new(0.5, 50.0, 3 * GB),
            Variant::new(0.25, 30.0, GB + 1),
        ],
    )];
    let best = pack(&models, &gpu).unwrap();
    let mut settings: Vec<(u32, String, String)> = best
        .replicas
        .iter()
        .map(|r| {
            (
                r.mps.active_thread_percentage,
                r.mps.pinned_device_mem_limit.clone(),
                r.mps.visible_devices.clone(),
            )
        })
        .collect();
    settings.sort();
    // 50 + 30 = 80 req/s in 75%.
    assert_eq!(
        settings,
        vec![
            (25, "0=1025M".to_string(), "0".to_string()),
            (50, "0=3072M".to_string(), "0".to_string())
        ]
    );
    let env = best.replicas[0].mps.env();
    assert_eq!(env[1].0, "CUDA_MPS_ACTIVE_THREAD_PERCENTAGE");
}

#[test]
fn impossible_demands_are_clear_errors() {
    let gpu = GpuSpec::new(16 * GB);
    let too_big = vec![ModelDemand::new(
        "huge",
        10.0,
        vec![Variant::new(1.0, 100.0, 40 * GB)],
    )];
    let err = pack(&too_big, &gpu).unwrap_err();
    assert!(
        matches!(err, Error::Packing(_)) && err.to_string().contains("fits"),
        "{err}"
    );

    let limited = GpuSpec::new(80 * GB).with_max_gpus(1);
    let two = vec![ModelDemand::new(
        "m",
        180.0,
        vec![Variant::new(1.0, 100.0, GB)],
    )];
    let err = pack(&two, &limited).unwrap_err();
    assert!(
        matches!(
            err,
            Error::TooManyGpus {
                needed: 2,
                available: 1
            }
        ),
        "{err}"
    );

    for (bad, why) in [
        (
            ModelDemand::new("neg", -1.0, vec![Variant::new(1.0, 10.0, GB)]),
            "demand must be >= 0",
        ),
        (ModelDemand::new("none", 1.0, vec![]), "no variant"),
        (
            ModelDemand::new("share", 1.0, vec![Variant::new(1.5, 10.0, GB)]),
            "share must be in (0, 1]",
        ),
        (
            ModelDemand::new("cap", 1.0, vec![Variant::new(0.5, 0.0, GB)]),
            "capacity must be positive",
        ),
    ] {
        match pack(std::slice::from_ref(&bad), &gpu) {
            Err(Error::Packing(reason)) => assert!(reason.contains(why), "{reason}"),
            other => panic!("{bad:?}: {other:?}"),
        }
    }
    // No demand: no GPU.
    let idle = vec![ModelDemand::new(
        "idle",
        0.0,
        vec![Variant::new(1.0, 10.0, GB)],
    )];
    assert_eq!(pack(&idle, &gpu).unwrap().gpus, 0);
}

#[test]
fn variants_come_from_a_profiles_gpu_configurations() {
    // The bundled profile is CPU only; turn two of its configurations into GPU ones at
    // a whole GPU and at half of one.
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../testdata/profiles/vision.json"
    );
    let mut report = ProfileReport::from_json(&std::fs::read_to_string(path).unwrap()).unwrap();
    let err = ModelDemand::from_profile(&report, 100.0).unwrap_err();
    assert!(err.to_string().contains("no GPU configuration"), "{err}");
    let measured: Vec<usize> = report
        .configs
        .iter()
        .enumerate()
        .filter(|(_, c)| c.status == ConfigStatus::Measured)
        .map(|(i, _)| i)
        .take(2)
        .collect();
    for (&i, fraction) in measured.iter().zip([1.0, 0.5]) {
        let c = &mut report.configs[i];
        c.config.device = ComputeDevice::Gpu { index: 0 };
        c.config.gpu_fraction = Some(fraction);
        c.config.gpu_memory_bytes = Some(2 * GB);
    }
    let model = ModelDemand::from_profile(&report, 100.0).unwrap();
    assert_eq!(model.name, "vision");
    assert_eq!(model.variants.len(), 2);
    let whole = model.variants.iter().find(|v| v.fraction == 1.0).unwrap();
    assert_eq!(
        whole.capacity_rps,
        report.configs[measured[0]].capacity_rps.unwrap()
    );
    assert_eq!(whole.memory_bytes, 2 * GB);
}

/// The fewest GPUs by trying every minimal mix and every assignment.
fn brute_force(models: &[ModelDemand], gpu: &GpuSpec) -> u32 {
    fn mixes(m: &ModelDemand) -> Vec<Vec<usize>> {
        let mut out = Vec::new();
        let limits: Vec<usize> = m
            .variants
            .iter()
            .map(|v| (m.demand_rps / v.capacity_rps).ceil() as usize)
            .collect();
        let mut counts = vec![0usize; m.variants.len()];
        loop {
            let served: f64 = counts
                .iter()
                .zip(&m.variants)
                .map(|(n, v)| *n as f64 * v.capacity_rps)
                .sum();
            if served >= m.demand_rps {
                let items: Vec<usize> = counts
                    .iter()
                    .enumerate()
                    .flat_map(|(v, &n)| std::iter::repeat_n(v, n))
                    .collect();
                out.push(items);
            }
            let mut k = 0;
            loop {
                if k == counts.len() {
                    return out;
                }
                counts[k] += 1;
                if counts[k] <= limits[k] {
                    break;
                }
                counts[k] = 0;
                k += 1;
            }
        }
    }
    fn assign(items: &[(u32, u64)], bins: &mut Vec<(u32, u64)>, cap: u64, best: &mut u32) {
        let Some((&(s, m), rest)) = items.split_first() else {
            *best = (*best).min(bins.len() as u32);
            return;
        };
        if bins.len() as u32 >= *best {
            return;
        }
        for b in 0..bins.len() {
            if bins[b].0 + s <= 100 && bins[b].1 + m <= cap {
                bins[b].0 += s;
                bins[b].1 += m;
                assign(rest, bins, cap, best);
                bins[b].0 -= s;
                bins[b].1 -= m;
            }
        }
        bins.push((s, m));
        assign(rest, bins, cap, best);
        bins.pop();
    }
    let per_model: Vec<Vec<Vec<usize>>> = models.iter().map(mixes).collect();
    let mut best = u32::MAX;
    let mut choice = vec![0usize; models.len()];
    loop {
        let items: Vec<(u32, u64)> = choice
            .iter()
            .enumerate()
            .flat_map(|(m, &c)| {
                per_model[m][c].iter().map(move |&v| {
                    let variant = &models[m].variants[v];
                    (
                        (variant.fraction * 100.0).round() as u32,
                        variant.memory_bytes,
                    )
                })
            })
            .collect();
        if items.iter().all(|&(_, mem)| mem <= gpu.memory_bytes) {
            assign(&items, &mut Vec::new(), gpu.memory_bytes, &mut best);
        }
        let mut k = 0;
        loop {
            if k == models.len() {
                return best;
            }
            choice[k] += 1;
            if choice[k] < per_model[k].len() {
                break;
            }
            choice[k] = 0;
            k += 1;
        }
    }
}

fn small_model() -> impl Strategy<Value = ModelDemand> {
    let variant = (
        prop::sample::select(vec![1.0, 0.5, 0.25]),
        20.0..100.0f64,
        1u64..=5,
    )
        .prop_map(|(f, c, g)| Variant::new(f, c.round(), g * 10 * GB));
    (prop::collection::vec(variant, 1..=3), 10.0..150.0f64).prop_map(|(mut variants, demand)| {
        variants.dedup_by(|a, b| a.fraction == b.fraction);
        ModelDemand::new("m", demand.round(), variants)
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn pack_matches_an_exhaustive_search(models in prop::collection::vec(small_model(), 1..=2)) {
        let models: Vec<ModelDemand> = models
            .into_iter()
            .enumerate()
            .map(|(i, mut m)| { m.name = format!("m{i}"); m })
            .collect();
        let gpu = GpuSpec::new(60 * GB);
        let best = pack(&models, &gpu).unwrap();
        check(&models, &gpu, &best);
        prop_assert_eq!(best.gpus, brute_force(&models, &gpu));
        prop_assert!(best.gpus <= first_fit(&models, &gpu).unwrap().gpus);
    }
}
