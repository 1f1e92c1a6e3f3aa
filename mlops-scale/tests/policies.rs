//! Each policy's rule, asserted on exact replica timelines; the conformance checks for
//! all four; configurations as data.

use std::time::Duration;

use mlops_core::ProfileReport;
use mlops_scale::policy::{
    Action, Bounds, Capacity, CapacityConfig, Concurrency, ConcurrencyConfig, Metrics, Observation,
    OngoingRequests, OngoingRequestsConfig, Policy, PolicyConfig, Utilization, UtilizationConfig,
};
use mlops_scale::{Error, testkit};

fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s)
}

fn with_utilization(t: f64, ready: u32, starting: u32, desired: u32, u: &[f64]) -> Observation {
    Observation {
        ready,
        starting,
        desired,
        metrics: Some(Metrics {
            at: secs(t),
            window: secs(15.0),
            utilization: u.to_vec(),
            ..Metrics::default()
        }),
    }
}

fn with_load(t: f64, ready: u32, desired: u32, rate: f64, in_flight: f64) -> Observation {
    Observation {
        ready,
        starting: 0,
        desired,
        metrics: Some(Metrics {
            at: secs(t),
            window: secs(1.0),
            request_rate_rps: Some(rate),
            in_flight: Some(in_flight),
            queue_depth: Some(0.0),
            latency_ms: Some(10.0),
            utilization: Vec::new(),
        }),
    }
}

fn vision_profile() -> ProfileReport {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../testdata/profiles/vision.json"
    );
    let text = std::fs::read_to_string(path).expect("the bundled profile");
    ProfileReport::from_json(&text).expect("a valid profile")
}

#[test]
fn every_policy_passes_the_conformance_checks() {
    let report = vision_profile();
    for config in [
        PolicyConfig::Utilization(UtilizationConfig::default()),
        PolicyConfig::Concurrency(ConcurrencyConfig::default().with_target(2.0)),
        PolicyConfig::OngoingRequests(OngoingRequestsConfig::default()),
        PolicyConfig::Capacity(CapacityConfig::from_profile(&report).unwrap()),
    ] {
        testkit::policy_conformance(&config);
    }
}

// ---------------------------------------------------------------- HPA

#[test]
fn hpa_scales_by_the_ratio_of_utilisation_to_target() {
    let mut hpa = Utilization::new(UtilizationConfig::default().with_target(0.6)).unwrap();
    // 4 replicas at 90% against 60%: ceil(4 × 1.5) = 6.
    let d = hpa.decide(secs(15.0), &with_utilization(15.0, 4, 0, 4, &[0.9; 4]));
    assert_eq!((d.replicas, d.action), (6, Action::Up), "{}", d.reason);
    // 65% against 60% is within the 0.1 tolerance: hold.
    let d = hpa.decide(secs(30.0), &with_utilization(30.0, 6, 0, 6, &[0.65; 6]));
    assert_eq!((d.replicas, d.action), (6, Action::Hold), "{}", d.reason);
    assert!(d.reason.contains("within tolerance"), "{}", d.reason);
}

#[test]
fn hpa_scale_down_waits_for_its_300_second_window() {
    let mut hpa = Utilization::new(UtilizationConfig::default().with_target(0.5)).unwrap();
    // Wanted 8 at t=0, then the load halves: each later recommendation is 4.
    let d = hpa.decide(secs(0.0), &with_utilization(0.0, 8, 0, 8, &[0.5; 8]));
    assert_eq!(d.replicas, 8);
    let mut timeline = Vec::new();
    for step in 1..=22 {
        let t = step as f64 * 15.0;
        let d = hpa.decide(secs(t), &with_utilization(t, 8, 0, 8, &[0.25; 8]));
        timeline.push((t as u32, d.replicas));
    }
    // Held at 8 while the t=0 recommendation is within 300 s, then down to 4 at once.
    for &(t, n) in &timeline {
        let expected = if t <= 300 { 8 } else { 4 };
        assert_eq!(n, expected, "at t={t}: {timeline:?}");
    }
}

#[test]
fn hpa_scale_up_is_limited_to_double_or_four_pods_per_period() {
    let mut hpa = Utilization::new(UtilizationConfig::default().with_target(0.1)).unwrap();
    // 1 replica at 100% against 10% wants 10; the limit is max(2 × 1, 1 + 4) = 5.
    let d = hpa.decide(secs(15.0), &with_utilization(15.0, 1, 0, 1, &[1.0]));
    assert_eq!(d.replicas, 5, "{}", d.reason);
    assert!(d.reason.contains("limited to 5"), "{}", d.reason);
    // A second ask within the same 15 s period gets nothing more.
    let d = hpa.decide(secs(20.0), &with_utilization(20.0, 1, 4, 5, &[1.0]));
    assert_eq!(d.replicas, 5, "{}", d.reason);
    // The next period: from 5, at most 10.
    let d = hpa.decide(
        secs(31.0),
        &with_utilization(31.0, 5, 0, 5, &[1.0, 1.0, 1.0, 1.0, 1.0]),
    );
    assert_eq!(d.replicas, 10, "{}", d.reason);
}

#[test]
fn hpa_counts_missing_and_unready_pods_as_kubernetes_does() {
    let mut hpa = Utilization::new(UtilizationConfig::default().with_target(0.5)).unwrap();
    // Scaling up: 2 reporting at 100%, 2 ready without metrics, 2 starting: the missing
    // and unready count as 0%: ratio (2 × 1.0) / (0.5 × 6) = 0.67 < 1, a flip: hold.
    let d = hpa.decide(secs(15.0), &with_utilization(15.0, 4, 2, 6, &[1.0, 1.0]));
    assert_eq!((d.replicas, d.action), (6, Action::Hold), "{}", d.reason);

    // Scaling down: 2 reporting at 10% and 2 missing counted at the 50% target:
    // (0.2 + 1.0) / (0.5 × 4) = 0.6 → ceil(0.6 × 4) = 3.
    let mut hpa = Utilization::new(UtilizationConfig {
        scale_down_stabilization: Duration::ZERO,
        ..UtilizationConfig::default().with_target(0.5)
    })
    .unwrap();
    let d = hpa.decide(secs(15.0), &with_utilization(15.0, 4, 0, 4, &[0.1, 0.1]));
    assert_eq!((d.replicas, d.action), (3, Action::Down), "{}", d.reason);
}

#[test]
fn hpa_holds_at_its_target_whatever_the_unready_pods() {
    // Exactly at target with 2 replicas starting: Kubernetes rebalances unready pods only
    // when scaling up, so this holds rather than counting them as idle and scaling down.
    let mut hpa = Utilization::new(UtilizationConfig::default().with_target(0.5)).unwrap();
    let d = hpa.decide(secs(15.0), &with_utilization(15.0, 4, 2, 6, &[0.5; 4]));
    assert_eq!((d.replicas, d.action), (6, Action::Hold), "{}", d.reason);
}

#[test]
fn hpa_never_fires_on_a_metric_that_cannot_reach_its_target() {
    // The classic failure: a server that saturates at 60% utilisation under a 70% target.
    let mut hpa = Utilization::new(UtilizationConfig::default()).unwrap();
    for step in 1..=40 {
        let t = step as f64 * 15.0;
        let d = hpa.decide(secs(t), &with_utilization(t, 2, 0, 2, &[0.6, 0.6]));
        assert_eq!(d.replicas, 2, "step {step}: {}", d.reason);
    }
}

// ---------------------------------------------------------------- KPA

#[test]
fn kpa_sizes_on_the_stable_window_and_panics_on_a_burst() {
    // Target 10 × 70% = 7 in flight per replica.
    let config = ConcurrencyConfig::default().with_target(10.0);
    let mut kpa = Concurrency::new(config).unwrap();
    let mut replicas = 3;
    // 60 s at 21 in flight: 3 replicas, steady.
    for step in 1..=30 {
        let t = step as f64 * 2.0;
        let d = kpa.decide(secs(t), &with_load(t, replicas, replicas, 0.0, 21.0));
        replicas = d.replicas;
        assert_eq!(replicas, 3, "t={t}: {}", d.reason);
    }
    // A burst to 120 in flight: the 6-s panic window (samples at 56..62 s) holds
    // (3 × 21 + 120) / 4 = 45.75, which wants ceil(6.5) = 7 ≥ 2 × 3 replicas: panic, 7.
    let d = kpa.decide(secs(62.0), &with_load(62.0, 3, 3, 0.0, 120.0));
    assert_eq!(d.replicas, 7, "{}", d.reason);
    assert!(d.reason.contains("panicking"), "{}", d.reason);
    // The burst ends at once; while panicking (60 s from the last tick over the
    // threshold) it never scales down.
    for step in 1..=30 {
        let t = 62.0 + step as f64 * 2.0;
        let d = kpa.decide(secs(t), &with_load(t, 7, 7, 0.0, 7.0));
        assert_eq!(d.replicas, 7, "t={t}: {}", d.reason);
    }
    // Then it sizes on the stable window again (7 in flight wants 1), at most halving
    // per tick: floor(7 / 2) = 3.
    let d = kpa.decide(secs(124.0), &with_load(124.0, 7, 7, 0.0, 7.0));
    assert!(!d.reason.contains("panicking"), "{}", d.reason);
    assert_eq!(d.replicas, 3, "{}", d.reason);
}

#[test]
fn kpa_reads_each_scrape_once() {
    // Asked twice per scrape, the windows must not count a sample twice: the answers
    // match a policy asked once.
    let mut once = Concurrency::new(ConcurrencyConfig::default().with_target(10.0)).unwrap();
    let mut twice = Concurrency::new(ConcurrencyConfig::default().with_target(10.0)).unwrap();
    for step in 0..60 {
        let t = step as f64 * 2.0;
        let load = if step < 30 { 14.0 } else { 35.0 };
        let o = with_load(t, 2, 2, 0.0, load);
        let a = once.decide(secs(t), &o);
        twice.decide(secs(t), &o);
        let b = twice.decide(secs(t), &o);
        assert_eq!(a.replicas, b.replicas, "step {step}");
    }
}

// ---------------------------------------------------------------- Ray Serve

#[test]
fn ray_serve_waits_out_its_upscale_and_downscale_delays() {
    let mut ray = OngoingRequests::new(OngoingRequestsConfig::default()).unwrap();
    let mut replicas = 2;
    let mut first_up = None;
    // 12 ongoing requests against 2 per replica wants 6, from t = 0.1 s on.
    for step in 1..=400 {
        let t = step as f64 * 0.1;
        let d = ray.decide(
            secs(t),
            &with_load(t.floor(), replicas, replicas, 0.0, 12.0),
        );
        if d.replicas != replicas && first_up.is_none() {
            first_up = Some((t, d.replicas));
        }
        replicas = d.replicas;
    }
    let (t, n) = first_up.unwrap();
    assert_eq!(n, 6);
    assert!(
        (30.0..30.3).contains(&t),
        "scaled up at {t} s, not after the 30 s delay"
    );

    // Down to 2 ongoing: wants 1, applied only after 600 s; the 30 s look-back first has
    // to forget the old samples.
    let mut first_down = None;
    for step in 1..=7000 {
        let t = 40.0 + step as f64 * 0.1;
        let d = ray.decide(secs(t), &with_load(t.floor(), replicas, replicas, 0.0, 2.0));
        if d.replicas < replicas && first_down.is_none() {
            first_down = Some((t, d.replicas));
        }
        replicas = d.replicas;
    }
    let (t, n) = first_down.unwrap();
    assert_eq!(n, 1);
    assert!((640.0..675.0).contains(&t), "scaled down at {t} s");
}

// ---------------------------------------------------------------- capacity

#[test]
fn capacity_comes_straight_from_a_profile() {
    let report = vision_profile();
    let config = CapacityConfig::from_profile(&report).unwrap();
    let recommended = report.recommendation.as_ref().unwrap();
    assert_eq!(config.capacity_rps, recommended.capacity_rps);
    assert_eq!(config.latency_target_ms, report.latency_target_ms);
    let at = report
        .config(&recommended.config_id)
        .unwrap()
        .at_capacity()
        .unwrap();
    let little = at.throughput_rps * at.latency.mean_ms / 1000.0;
    assert!((config.concurrency_at_capacity.unwrap() - little).abs() < 1e-12);
    assert_eq!(config.target_ratio, 0.85);
}

#[test]
fn a_profile_without_a_configuration_that_meets_the_target_is_refused() {
    let mut report = vision_profile();
    if let Some(r) = report.recommendation.as_mut() {
        r.meets_target = false;
        r.reason = "every configuration missed 100 ms".to_string();
    }
    let err = CapacityConfig::from_profile(&report).unwrap_err();
    assert!(matches!(err, Error::Profile(_)), "{err}");
    assert!(
        err.to_string()
            .contains("no configuration meets the target"),
        "{err}"
    );

    report.recommendation = None;
    let err = CapacityConfig::from_profile(&report).unwrap_err();
    assert!(
        err.to_string().contains("recommends no configuration"),
        "{err}"
    );

    let err = CapacityConfig::from_profile_config(&vision_profile(), "gpu9-none").unwrap_err();
    assert!(
        err.to_string().contains("no configuration 'gpu9-none'"),
        "{err}"
    );
}

fn capacity(per_replica: f64) -> Capacity {
    // capacity × ratio = per_replica.
    Capacity::new(CapacityConfig::new(per_replica / 0.85, 100.0)).expect("valid settings")
}

#[test]
fn capacity_sizes_for_the_demand() {
    let mut policy = capacity(50.0);
    // 420 req/s at 50 per replica: 9.
    let d = policy.decide(secs(2.0), &with_load(2.0, 2, 2, 420.0, 0.0));
    assert_eq!((d.replicas, d.action), (9, Action::Up), "{}", d.reason);
    // A queue of 3,500 is drained over the 30 s start-up and the 5 s drain time:
    // +100 req/s on the 5-s mean rate of 420: 11.
    let mut o = with_load(4.0, 9, 9, 420.0, 0.0);
    o.metrics.as_mut().unwrap().queue_depth = Some(3500.0);
    let d = policy.decide(secs(4.0), &o);
    assert_eq!(d.replicas, 11, "{}", d.reason);
}

#[test]
fn capacity_scales_down_only_to_the_most_wanted_over_its_window() {
    // The rate as scraped, not averaged, so each decision sees the latest one.
    let mut policy = Capacity::new(CapacityConfig {
        rate_window: Duration::from_millis(1),
        ..CapacityConfig::new(50.0 / 0.85, 100.0)
    })
    .unwrap();
    let d = policy.decide(secs(0.0), &with_load(0.0, 10, 10, 500.0, 0.0));
    assert_eq!(d.replicas, 10);
    let mut timeline = Vec::new();
    for step in 1..=20 {
        let t = step as f64 * 2.0;
        let d = policy.decide(secs(t), &with_load(t, 10, 10, 100.0, 0.0));
        timeline.push((t as u32, d.replicas));
    }
    for &(t, n) in &timeline {
        let expected = if t <= 30 { 10 } else { 2 };
        assert_eq!(n, expected, "at t={t}: {timeline:?}");
    }
}

#[test]
fn capacity_guard_adds_replicas_near_the_latency_target_unless_some_are_starting() {
    let mut policy = capacity(50.0);
    // The rate says 4 are enough, but p99 is 96 ms against 100 with requests queued:
    // add 25% (at least one).
    let mut o = with_load(2.0, 4, 4, 150.0, 0.0);
    let m = o.metrics.as_mut().unwrap();
    m.latency_ms = Some(96.0);
    m.queue_depth = Some(3.0);
    let d = policy.decide(secs(2.0), &o);
    assert_eq!(d.replicas, 5, "{}", d.reason);
    assert!(d.reason.contains("near the 100 ms target"), "{}", d.reason);

    // The same latency with nothing queued is a backlog already drained: no guard, and
    // the rate's 3 replicas.
    let mut policy = capacity(50.0);
    let mut o = with_load(2.0, 4, 4, 150.0, 0.0);
    o.metrics.as_mut().unwrap().latency_ms = Some(96.0);
    let d = policy.decide(secs(2.0), &o);
    assert_eq!(d.replicas, 3, "{}", d.reason);
    assert!(!d.reason.contains("near"), "{}", d.reason);

    // With replicas already starting it counts them as coming and asks for no more: 6
    // were asked for at 300 req/s; the rate falls to 150 and latency nears the target
    // while 2 start; it holds 6 (the scale-down window) and adds none.
    let mut policy = capacity(50.0);
    policy.decide(secs(0.0), &with_load(0.0, 4, 4, 300.0, 0.0));
    let mut o = with_load(2.0, 4, 6, 150.0, 0.0);
    o.starting = 2;
    let m = o.metrics.as_mut().unwrap();
    m.latency_ms = Some(96.0);
    m.queue_depth = Some(3.0);
    let d = policy.decide(secs(2.0), &o);
    assert_eq!(d.replicas, 6, "{}", d.reason);
    assert!(d.reason.contains("already starting"), "{}", d.reason);
}

#[test]
fn a_severe_miss_soon_after_a_scale_down_lengthens_the_window() {
    let config = CapacityConfig {
        rate_window: Duration::from_millis(1),
        startup_time: secs(10.0),
        ..CapacityConfig::new(50.0 / 0.85, 100.0)
    };
    let mut policy = Capacity::new(config).unwrap();
    let mut replicas = 2;
    let mut run = |policy: &mut Capacity, t: f64, rate: f64, latency: f64, queue: f64| {
        let mut o = with_load(t, replicas, replicas, rate, 0.0);
        let m = o.metrics.as_mut().unwrap();
        m.latency_ms = Some(latency);
        m.queue_depth = Some(queue);
        let d = policy.decide(secs(t), &o);
        replicas = d.replicas;
        d
    };
    let mut last = 0;
    // A spike wants 8 at t = 0..10; it is gone by 12; 30 s later the window lets go.
    for t in (0..=10).step_by(2) {
        last = run(&mut policy, t as f64, 400.0, 20.0, 0.0).replicas;
    }
    assert_eq!(last, 8);
    let mut down_at = None;
    for t in (12..=60).step_by(2) {
        let d = run(&mut policy, t as f64, 100.0, 20.0, 0.0);
        if d.replicas == 2 && down_at.is_none() {
            down_at = Some(t);
        }
    }
    assert_eq!(
        down_at,
        Some(42),
        "held for the 30 s window after the last ask at 10 s"
    );
    // It comes back at 90 s: a severe miss (250 ms against 100, 400 queued). The
    // replicas removed at 42 s were last wanted at 10 s: the window becomes 80 s plus the
    // 10 s start-up and the 2 s period.
    let d = run(&mut policy, 90.0, 400.0, 250.0, 400.0);
    assert!(
        d.reason.contains("holding replicas for 92 s"),
        "{}",
        d.reason
    );
    for t in (92..=100).step_by(2) {
        run(&mut policy, t as f64, 400.0, 20.0, 0.0);
    }
    // The next quiet spell keeps the replicas for 92 s after the last ask (100 s).
    let mut down_at = None;
    for t in (102..=200).step_by(2) {
        let d = run(&mut policy, t as f64, 100.0, 20.0, 0.0);
        if d.replicas < 8 && down_at.is_none() {
            down_at = Some(t);
        }
    }
    assert_eq!(down_at, Some(194));
}

#[test]
fn capacity_projects_a_significant_rise_over_the_start_up_time() {
    let config = CapacityConfig {
        startup_time: secs(10.0),
        ..CapacityConfig::new(100.0 / 0.85, 100.0)
    };
    let mut rising = Capacity::new(config.clone()).unwrap();
    let mut flat = Capacity::new(config).unwrap();
    let (mut a, mut b) = (0, 0);
    for step in 0..=20 {
        let t = step as f64;
        // One rises 10 req/s every second from 200; the other holds at 400.
        a = rising
            .decide(secs(t), &with_load(t, 2, 2, 200.0 + 10.0 * t, 0.0))
            .replicas;
        b = flat
            .decide(secs(t), &with_load(t, 4, 4, 400.0, 0.0))
            .replicas;
    }
    // At t = 20 both see about 400 req/s, but the rising one projects 12 s ahead
    // (start-up 10 s + period 2 s): 400 + 120 less the window's lag, above 5 replicas.
    assert_eq!(b, 4);
    assert!(a >= 5, "rising demand asked for only {a}");
}

#[test]
fn capacity_without_a_rate_reads_in_flight_by_littles_law() {
    let mut config = CapacityConfig::new(100.0, 100.0);
    config.concurrency_at_capacity = Some(2.0);
    let mut policy = Capacity::new(config).unwrap();
    let mut o = with_load(2.0, 1, 1, 0.0, 17.0);
    o.metrics.as_mut().unwrap().request_rate_rps = None;
    // 17 in flight against 0.85 × 2 = 1.7 per replica: 10.
    let d = policy.decide(secs(2.0), &o);
    assert_eq!(d.replicas, 10, "{}", d.reason);
}

#[test]
fn bounds_clamp_and_say_so() {
    let mut policy =
        Capacity::new(CapacityConfig::new(10.0, 100.0).with_bounds(Bounds::new(2, 6).unwrap()))
            .unwrap();
    let d = policy.decide(secs(2.0), &with_load(2.0, 2, 2, 1000.0, 0.0));
    assert_eq!(d.replicas, 6);
    assert!(d.reason.contains("clamped to [2, 6]"), "{}", d.reason);
    let d = policy.decide(secs(100.0), &with_load(100.0, 6, 6, 0.0, 0.0));
    assert_eq!(d.replicas, 2, "{}", d.reason);
}

// ---------------------------------------------------------------- configuration

#[test]
fn policies_are_data_with_a_kind_tag_and_the_anchors_defaults() {
    let config: PolicyConfig = serde_json::from_str(r#"{"kind": "utilization"}"#).unwrap();
    assert_eq!(
        config,
        PolicyConfig::Utilization(UtilizationConfig::default())
    );
    let PolicyConfig::Utilization(hpa) = &config else {
        unreachable!()
    };
    assert_eq!(hpa.target, 0.7);
    assert_eq!(hpa.scale_down_stabilization, secs(300.0));
    assert_eq!(hpa.sync_period, secs(15.0));

    let config: PolicyConfig =
        serde_json::from_str(r#"{"kind": "concurrency", "target": 4, "max_replicas": 9}"#).unwrap();
    let PolicyConfig::Concurrency(kpa) = &config else {
        unreachable!()
    };
    assert_eq!((kpa.target, kpa.target_utilization), (4.0, 0.7));
    assert_eq!(kpa.stable_window, secs(60.0));
    assert_eq!(
        kpa.bounds,
        Bounds {
            min_replicas: 1,
            max_replicas: 9
        }
    );

    let config: PolicyConfig = serde_json::from_str(r#"{"kind": "ongoing_requests"}"#).unwrap();
    let PolicyConfig::OngoingRequests(ray) = &config else {
        unreachable!()
    };
    assert_eq!(ray.target_ongoing_requests, 2.0);
    assert_eq!(
        (ray.upscale_delay, ray.downscale_delay),
        (secs(30.0), secs(600.0))
    );

    // Round trip.
    for config in [
        PolicyConfig::Capacity(CapacityConfig::new(42.0, 100.0)),
        PolicyConfig::Concurrency(ConcurrencyConfig::default()),
    ] {
        let text = serde_json::to_string(&config).unwrap();
        assert_eq!(serde_json::from_str::<PolicyConfig>(&text).unwrap(), config);
    }
}

#[test]
fn bad_settings_are_refused_with_the_setting_named() {
    let cases: Vec<(PolicyConfig, &str)> = vec![
        (
            PolicyConfig::Utilization(UtilizationConfig::default().with_target(1.5)),
            "target",
        ),
        (
            PolicyConfig::Utilization(UtilizationConfig::default().with_target(0.0)),
            "target",
        ),
        (
            PolicyConfig::Concurrency(ConcurrencyConfig::default().with_target(-1.0)),
            "target",
        ),
        (
            PolicyConfig::Capacity(CapacityConfig::new(0.0, 100.0)),
            "capacity_rps",
        ),
        (
            PolicyConfig::Capacity(CapacityConfig::new(10.0, 100.0).with_target_ratio(1.2)),
            "target_ratio",
        ),
        (
            PolicyConfig::Capacity(CapacityConfig::new(10.0, 100.0)).with_bounds(Bounds {
                min_replicas: 5,
                max_replicas: 2,
            }),
            "min_replicas",
        ),
        (
            PolicyConfig::OngoingRequests(OngoingRequestsConfig::default()).with_bounds(Bounds {
                min_replicas: 0,
                max_replicas: 0,
            }),
            "max_replicas",
        ),
    ];
    for (config, what) in cases {
        match config.build() {
            Err(Error::InvalidConfig { what: w, .. }) => assert_eq!(w, what),
            Err(e) => panic!("{what}: wrong error {e}"),
            Ok(p) => panic!("{what}: {} was accepted", p.name()),
        }
    }
}

#[test]
fn min_replicas_zero_is_allowed_only_when_asked_for() {
    // Default bounds: an idle service keeps one replica.
    let mut policy = capacity(50.0);
    let d = policy.decide(secs(100.0), &with_load(100.0, 1, 1, 0.0, 0.0));
    assert_eq!(d.replicas, 1, "{}", d.reason);
    // Asked for: zero.
    let mut policy =
        Capacity::new(CapacityConfig::new(50.0, 100.0).with_bounds(Bounds::new(0, 10).unwrap()))
            .unwrap();
    let d = policy.decide(secs(100.0), &with_load(100.0, 1, 1, 0.0, 0.0));
    assert_eq!(d.replicas, 0, "{}", d.reason);
}

#[test]
fn a_profile_of_another_model_is_refused_by_name() {
    let report = vision_profile();
    let err = CapacityConfig::from_profile_of(&report, "resnet").unwrap_err();
    assert!(matches!(err, Error::Profile(_)), "{err}");
    assert!(
        err.to_string()
            .contains("the profile is of model 'vision', not 'resnet'"),
        "{err}"
    );
    let config = CapacityConfig::from_profile_of(&report, "vision").unwrap();
    assert_eq!(config, CapacityConfig::from_profile(&report).unwrap());
}
