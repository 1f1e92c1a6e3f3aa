//! The simulator: exact results on fixed fleets, cold starts, bounds, determinism, the
//! 60%/70% failure, and replicas modelled on a real profile.

use std::time::Duration;

use mlops_core::ProfileReport;
use mlops_scale::chart::timeline_chart;
use mlops_scale::compare::{CompareConfig, Role, compare};
use mlops_scale::policy::{
    Action, Bounds, CapacityConfig, Decision, Observation, Policy, PolicyConfig, UtilizationConfig,
};
use mlops_scale::sim::{SCHEMA_VERSION, SimReport};
use mlops_scale::{ReplicaModel, Simulator, Trace, TraceSpec};

/// Asks for a fixed count from a given time on, and records what it saw.
struct Fixed {
    replicas: u32,
    from_s: f64,
    seen: Vec<Observation>,
}

impl Policy for Fixed {
    fn name(&self) -> String {
        format!("fixed {}", self.replicas)
    }
    fn period(&self) -> Duration {
        Duration::from_secs(1)
    }
    fn decide(&mut self, now: Duration, observation: &Observation) -> Decision {
        self.seen.push(observation.clone());
        let replicas = if now.as_secs_f64() >= self.from_s {
            self.replicas
        } else {
            observation.desired
        };
        Decision {
            replicas,
            action: Action::Hold,
            reason: "fixed".to_string(),
        }
    }
}

fn fixed(replicas: u32, from_s: f64) -> Fixed {
    Fixed {
        replicas,
        from_s,
        seen: Vec::new(),
    }
}

fn steady(rate: f64, duration: f64) -> Trace {
    Trace::generate(
        &TraceSpec::Steady {
            rate_rps: rate,
            duration_s: duration,
        },
        0,
    )
    .expect("a steady trace")
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
fn a_fixed_fleet_under_its_capacity_answers_everything_at_the_service_time() {
    // 2 replicas of 1 slot at 10 ms: 200 req/s at most; offered 100 evenly spaced.
    let sim = Simulator::builder(ReplicaModel::new(1, 10.0))
        .latency_target_ms(50.0)
        .initial_replicas(2)
        .build()
        .unwrap();
    let report = sim.run(&steady(100.0, 60.0), &mut fixed(2, 0.0));
    assert_eq!(report.requests, 6000);
    assert_eq!((report.answered, report.dropped), (6000, 0));
    assert_eq!(report.slo_attainment, 1.0);
    // Evenly spaced, never overlapping on a replica: every answer takes exactly 10 ms
    // (histogram resolution: two significant figures).
    assert!(
        (report.latency_p50_ms - 10.0).abs() < 0.1,
        "{}",
        report.latency_p50_ms
    );
    assert!((report.latency_max_ms - 10.0).abs() < 0.1);
    assert_eq!(report.replica_seconds, 120.0);
    assert_eq!((report.scale_events, report.queue_peak), (0, 0));
}

#[test]
fn a_queue_bound_of_zero_serves_what_fits_in_the_slots() {
    // Two slots, no waiting: at 150 req/s of 10-ms requests, evenly spaced, a slot is
    // always free, so nothing is dropped; at 400 req/s (twice what two slots serve) about
    // half are.
    let sim = Simulator::builder(ReplicaModel::new(2, 10.0).with_max_queue(0))
        .latency_target_ms(50.0)
        .build()
        .unwrap();
    let report = sim.run(&steady(150.0, 10.0), &mut fixed(1, 0.0));
    assert_eq!((report.answered, report.dropped), (1500, 0));
    let report = sim.run(&steady(400.0, 10.0), &mut fixed(1, 0.0));
    assert_eq!(report.queue_peak, 0);
    assert!(
        (report.dropped as f64 / 4000.0 - 0.5).abs() < 0.01,
        "{}",
        report.dropped
    );
    assert_eq!(report.slo_attainment, report.answered as f64 / 4000.0);
}

#[test]
fn removed_replicas_drain_and_are_paid_for_until_their_last_answer() {
    // 4 replicas, then 1 from t = 20 s: the 3 removed take no new request and finish the
    // ones they hold (at most 10 ms), so they are paid for 20 s (plus at most 10 ms).
    let sim = Simulator::builder(ReplicaModel::new(1, 10.0))
        .latency_target_ms(100.0)
        .initial_replicas(4)
        .build()
        .unwrap();
    let report = sim.run(&steady(40.0, 60.0), &mut fixed(1, 20.0));
    assert_eq!(report.scale_events, 1);
    assert_eq!((report.events[0].from, report.events[0].to), (4, 1));
    let expected = 60.0 + 3.0 * 20.0;
    assert!(
        report.replica_seconds >= expected && report.replica_seconds <= expected + 0.03,
        "{}",
        report.replica_seconds
    );
    assert_eq!((report.dropped, report.slo_attainment), (0, 1.0));
    let provisioned: Vec<f64> = report.series.iter().map(|p| p.replicas).collect();
    assert_eq!(&provisioned[..2], &[4.0, 4.0], "{provisioned:?}");
    assert_eq!(&provisioned[3..], &[1.0, 1.0, 1.0], "{provisioned:?}");
}

#[test]
fn policies_see_rate_in_flight_and_utilisation() {
    // 97 req/s of 10 ms on 2 replicas, evenly spaced (off the 100-ms sample grid).
    let sim = Simulator::builder(ReplicaModel::new(1, 10.0).with_utilization_at_saturation(0.6))
        .latency_target_ms(50.0)
        .initial_replicas(2)
        .build()
        .unwrap();
    let mut policy = fixed(2, 0.0);
    sim.run(&steady(97.0, 30.0), &mut policy);
    let late = policy.seen.last().unwrap().metrics.clone().unwrap();
    assert!(
        (late.request_rate_rps.unwrap() - 97.0).abs() <= 1.0,
        "{late:?}"
    );
    // Little's law: 97 req/s × 10 ms = 0.97 in flight over both replicas.
    assert!((late.in_flight.unwrap() - 0.97).abs() < 0.1, "{late:?}");
    assert_eq!(late.utilization.len(), 2);
    // Busy 0.97 slot-seconds a second over both, reported against a 60% ceiling, split
    // by the balancer's draws.
    let total: f64 = late.utilization.iter().sum();
    assert!((total - 0.97 * 0.6).abs() < 0.01, "{late:?}");
    assert!(
        late.utilization.iter().all(|u| (0.15..0.45).contains(u)),
        "{late:?}"
    );
    assert!((late.latency_ms.unwrap() - 10.0).abs() < 0.1);
}

#[test]
fn an_overloaded_replica_queues_then_drops() {
    // 1 replica at 10 ms (100 req/s) offered 200 req/s, queue bound 50.
    let sim = Simulator::builder(ReplicaModel::new(1, 10.0).with_max_queue(50))
        .latency_target_ms(100.0)
        .build()
        .unwrap();
    let report = sim.run(&steady(200.0, 10.0), &mut fixed(1, 0.0));
    assert_eq!(report.requests, 2000);
    // It serves 100 a second and holds 50 waiting; the rest are dropped.
    assert!(
        (report.answered as i64 - 1050).abs() <= 3,
        "{}",
        report.answered
    );
    assert_eq!(report.answered + report.dropped, 2000);
    assert!(report.slo_attainment < 0.1, "{}", report.slo_attainment);
    assert_eq!(report.queue_peak, 50);
}

#[test]
fn new_replicas_serve_after_the_cold_start_and_are_paid_for_from_the_ask() {
    let sim = Simulator::builder(ReplicaModel::new(1, 10.0))
        .latency_target_ms(100.0)
        .cold_start(Duration::from_secs(20))
        .report_interval(Duration::from_secs(10))
        .build()
        .unwrap();
    // Asks for 3 at t = 30 s; they are ready at 50 s.
    let report = sim.run(&steady(50.0, 100.0), &mut fixed(3, 30.0));
    assert_eq!(report.scale_events, 1);
    let event = &report.events[0];
    assert_eq!((event.t_s, event.from, event.to), (30.0, 1, 3));
    assert_eq!(event.action, Action::Up);
    let ready: Vec<f64> = report.series.iter().map(|p| p.ready).collect();
    let provisioned: Vec<f64> = report.series.iter().map(|p| p.replicas).collect();
    assert_eq!(&ready[..4], &[1.0, 1.0, 1.0, 1.0], "{ready:?}");
    // The interval's last sample, at 50.0 s itself, sees them ready.
    assert!((ready[4] - 1.02).abs() < 1e-9, "{ready:?}");
    assert_eq!(&ready[5..], &[3.0; 5], "{ready:?}");
    assert_eq!(&provisioned[3..], &[3.0; 7], "{provisioned:?}");
    // 1 × 100 s + 2 × 70 s.
    assert!(
        (report.replica_seconds - 240.0).abs() < 1e-9,
        "{}",
        report.replica_seconds
    );
}

#[test]
fn the_same_seed_gives_the_same_report() {
    let trace = Trace::generate(
        &TraceSpec::Diurnal {
            mean_rps: 300.0,
            amplitude: 0.6,
            period_s: 300.0,
            duration_s: 300.0,
        },
        1,
    )
    .unwrap();
    let sim = |seed| {
        Simulator::builder(ReplicaModel::new(2, 20.0).with_sigma(0.5))
            .latency_target_ms(100.0)
            .cold_start(Duration::from_secs(10))
            .seed(seed)
            .build()
            .unwrap()
    };
    let run = |seed| {
        let mut policy = PolicyConfig::Capacity(CapacityConfig::new(90.0, 100.0))
            .build()
            .unwrap();
        let mut r = sim(seed).run(&trace, &mut policy);
        r.wall_s = 0.0;
        r
    };
    let (a, b, c) = (run(7), run(7), run(8));
    assert_eq!(a, b);
    assert_ne!(a.latency_ms, 0.0);
    assert_ne!(a.series, c.series, "another seed draws other service times");
}

#[test]
fn bounds_hold_whatever_the_policy_asks() {
    let sim = Simulator::builder(ReplicaModel::new(1, 10.0))
        .latency_target_ms(100.0)
        .bounds(Bounds::new(2, 3).unwrap())
        .initial_replicas(2)
        .build()
        .unwrap();
    let report = sim.run(&steady(1000.0, 20.0), &mut fixed(50, 0.0));
    assert_eq!(report.peak_replicas, 3);
    assert!(report.series.iter().all(|p| p.replicas <= 3.0));
    let report = sim.run(&steady(1.0, 20.0), &mut fixed(0, 0.0));
    assert!(report.series.iter().all(|p| p.replicas >= 2.0));
}

#[test]
fn a_utilisation_target_above_the_ceiling_never_scales_and_capacity_does() {
    // A server whose utilisation tops out at 60%, under the HPA's 70% default; demand
    // needs 4 replicas of 100 req/s from the start, and 1 is running.
    let replica = ReplicaModel::new(1, 10.0).with_utilization_at_saturation(0.6);
    let sim = Simulator::builder(replica)
        .latency_target_ms(100.0)
        .cold_start(Duration::from_secs(10))
        .build()
        .unwrap();
    let trace = Trace::generate(
        &TraceSpec::Poisson {
            rate_rps: 300.0,
            duration_s: 600.0,
        },
        4,
    )
    .unwrap();
    let mut hpa = PolicyConfig::Utilization(UtilizationConfig::default())
        .build()
        .unwrap();
    let stuck = sim.run(&trace, &mut hpa);
    assert_eq!(stuck.scale_events, 0, "{:?}", stuck.events);
    assert_eq!(stuck.peak_replicas, 1);
    assert!(stuck.slo_attainment < 0.4, "{}", stuck.summary());

    let mut capacity = PolicyConfig::Capacity(
        CapacityConfig::new(95.0, 100.0).with_startup_time(Duration::from_secs(10)),
    )
    .build()
    .unwrap();
    let scaled = sim.run(&trace, &mut capacity);
    assert!(scaled.peak_replicas >= 4, "{}", scaled.summary());
    assert!(scaled.slo_attainment >= 0.95, "{}", scaled.summary());
    // After the first cold start, everything meets the target.
    let late: Vec<f64> = scaled.series[6..]
        .iter()
        .map(|p| p.slo_attainment)
        .collect();
    assert!(late.iter().all(|a| *a >= 0.99), "{late:?}");
}

#[test]
fn a_replica_modelled_on_the_profile_holds_the_profiled_capacity() {
    let report = vision_profile();
    let replica = ReplicaModel::from_profile(&report).unwrap();
    assert_eq!(replica.slots, 1);
    assert_eq!(replica.config_id.as_deref(), Some("cpu1-b4-d0-i1-t1"));
    assert_eq!(replica.device.as_deref(), Some("cpu"));
    // Saturation capped by the rate the confirmation missed the target at.
    let missed = report.confirmation.as_ref().unwrap().missed_rates_rps[0];
    assert!((replica.saturation_rps() - missed).abs() < 1e-9);
    assert!((0.05..0.5).contains(&replica.service_sigma));
    assert!(replica.utilization_at_saturation > 0.9);
    assert_eq!(replica.cost_per_hour, 0.04);

    let capacity = report.recommendation.as_ref().unwrap().capacity_rps;
    let sim = Simulator::builder(replica)
        .latency_target_ms(report.latency_target_ms)
        .build()
        .unwrap();
    // At the profiled capacity, evenly spaced as the profiler sends: within the target.
    let held = sim.run(&steady(capacity, 120.0), &mut fixed(1, 0.0));
    assert!(held.slo_attainment >= 0.99, "{}", held.summary());
    // Past saturation: it falls behind.
    let broken = sim.run(&steady(capacity * 1.25, 120.0), &mut fixed(1, 0.0));
    assert!(broken.slo_attainment < 0.5, "{}", broken.summary());
}

#[test]
fn stale_metrics_hold_and_are_counted() {
    // Metrics every 30 s; the capacity policy refuses them past 10 s old.
    let sim = Simulator::builder(ReplicaModel::new(1, 10.0))
        .latency_target_ms(100.0)
        .scrape_interval(Duration::from_secs(30))
        .initial_replicas(2)
        .build()
        .unwrap();
    let mut policy = PolicyConfig::Capacity(CapacityConfig::new(100.0, 100.0))
        .build()
        .unwrap();
    let report = sim.run(&steady(10.0, 120.0), &mut policy);
    assert!(report.stale_decisions > 20, "{}", report.stale_decisions);
    // The light load wants 1 replica; it may change only while metrics are fresh (within
    // 10 s of a scrape), and it did.
    assert_eq!(report.scale_events, 1, "{:?}", report.events);
    let t = report.events[0].t_s;
    assert!(t % 30.0 <= 10.0, "scaled at {t} s on stale metrics");
    assert!(report.series.iter().all(|p| p.replicas >= 1.0));
}

#[test]
fn reports_are_versioned_json_with_a_summary() {
    let sim = Simulator::builder(ReplicaModel::new(1, 10.0))
        .latency_target_ms(50.0)
        .build()
        .unwrap();
    let report = sim.run(&steady(20.0, 20.0), &mut fixed(1, 0.0));
    let back = SimReport::from_json(&report.to_json()).unwrap();
    assert_eq!(back, report);
    assert_eq!(back.schema_version, SCHEMA_VERSION);
    let newer = report.to_json().replace(
        &format!("\"schema_version\": {SCHEMA_VERSION}"),
        "\"schema_version\": 99",
    );
    assert!(SimReport::from_json(&newer).is_err());
    let summary = report.summary();
    assert!(
        summary.contains("fixed 1 on steady: 100.00% of 400 requests within 50 ms"),
        "{summary}"
    );
}

#[test]
fn bad_settings_are_refused_with_the_setting_named() {
    let refused = |builder: mlops_scale::sim::SimulatorBuilder| match builder.build() {
        Err(mlops_scale::Error::InvalidConfig { what, .. }) => what,
        other => panic!("accepted or wrong error: {other:?}"),
    };
    assert_eq!(
        refused(Simulator::builder(ReplicaModel::new(0, 10.0))),
        "slots"
    );
    assert_eq!(
        refused(Simulator::builder(ReplicaModel::new(1, -1.0))),
        "service_mean_ms"
    );
    assert_eq!(
        refused(Simulator::builder(
            ReplicaModel::new(1, 10.0).with_utilization_at_saturation(1.5)
        )),
        "utilization_at_saturation"
    );
    assert_eq!(
        refused(Simulator::builder(ReplicaModel::new(1, 10.0)).latency_target_ms(0.0)),
        "latency_target_ms"
    );
    assert_eq!(
        refused(
            Simulator::builder(ReplicaModel::new(1, 10.0))
                .bounds(Bounds::new(2, 4).unwrap())
                .initial_replicas(9)
        ),
        "initial_replicas"
    );
}

#[test]
fn the_comparison_picks_the_cheapest_sweep_point_that_meets_the_goal() {
    let trace = Trace::generate(
        &TraceSpec::Step {
            from_rps: 100.0,
            to_rps: 150.0,
            at_s: 60.0,
            duration_s: 180.0,
        },
        2,
    )
    .unwrap();
    let sim = Simulator::builder(ReplicaModel::new(1, 20.0).with_sigma(0.2))
        .latency_target_ms(100.0)
        .cold_start(Duration::from_secs(5))
        .initial_replicas(3)
        .build()
        .unwrap();
    let capacity = CapacityConfig::new(45.0, 100.0).with_startup_time(Duration::from_secs(5));
    let comparison = compare(&sim, &trace, &capacity, &CompareConfig::default()).unwrap();
    // Capacity, 9 HPA targets, the KPA default and 16 targets, Ray, and the hand-tuned.
    let sweeps = comparison
        .runs
        .iter()
        .filter(|r| r.role == Role::Sweep)
        .count();
    assert_eq!(sweeps, 9 + 16);
    for kind in ["utilization", "concurrency"] {
        let tuned = comparison.hand_tuned(kind).unwrap_or_else(|| {
            panic!("no {kind} target reached the goal:\n{}", comparison.table())
        });
        assert!(tuned.report.slo_attainment >= 0.99);
        let cheaper_meeting = comparison.runs.iter().any(|r| {
            r.role == Role::Sweep
                && r.report.policy.starts_with(kind)
                && r.report.slo_attainment >= 0.99
                && r.report.replica_seconds < tuned.report.replica_seconds
        });
        assert!(!cheaper_meeting, "{kind}");
    }
    let table = comparison.table();
    assert!(
        table.contains("| capacity 85% | from the profile |"),
        "{table}"
    );

    let headline: Vec<&SimReport> = comparison.headline().map(|r| &r.report).collect();
    let svg = timeline_chart("step", &headline).unwrap();
    assert!(
        svg.starts_with("<svg") || svg.contains("<svg"),
        "not an SVG"
    );
    assert!(svg.contains("capacity 85%") && svg.contains("utilization 70%"));
}
