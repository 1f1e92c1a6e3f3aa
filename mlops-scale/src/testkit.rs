//! Conformance checks that every policy passes, whatever its rule: bounds always hold,
//! missing or stale metrics hold the current size (never a scale to zero), and the same
//! observations give the same decisions.
//!
//! Each check panics with a message naming the policy and the step that failed, so a test
//! calls them directly:
//!
//! ```
//! use mlops_scale::policy::{PolicyConfig, UtilizationConfig};
//! use mlops_scale::testkit;
//!
//! testkit::policy_conformance(&PolicyConfig::Utilization(UtilizationConfig::default()));
//! ```

#![allow(clippy::unwrap_used, clippy::panic)]

use std::time::Duration;

use crate::policy::{Action, Bounds, Metrics, Observation, PolicyConfig};

/// Every check below.
pub fn policy_conformance(config: &PolicyConfig) {
    bounds_hold(config);
    holds_without_metrics(config);
    holds_on_stale_metrics(config);
    holds_on_broken_metrics(config);
    deterministic(config);
}

fn metrics(at: Duration, load: f64, ready: u32) -> Metrics {
    Metrics {
        at,
        window: Duration::from_secs(1),
        request_rate_rps: Some(load * 100.0),
        in_flight: Some(load * 10.0),
        queue_depth: Some(0.0),
        latency_ms: Some(10.0),
        utilization: vec![(load / ready.max(1) as f64).min(1.0); ready as usize],
    }
}

/// A load that rises far past any bound, then falls to nothing: the answer stays within
/// `[min, max]` throughout.
pub fn bounds_hold(config: &PolicyConfig) {
    let bounds = Bounds::new(2, 5).unwrap();
    let config = config.clone().with_bounds(bounds);
    let mut policy = config.build().unwrap();
    let period = policy.period();
    let mut replicas = 2;
    let loads = [0.0, 50.0, 500.0, 5000.0, 5000.0, 1.0, 0.0, 0.0];
    let mut t = Duration::ZERO;
    for (step, &load) in loads.iter().cycle().take(4000).enumerate() {
        t += period.max(Duration::from_millis(100));
        let observation = Observation {
            ready: replicas,
            starting: 0,
            desired: replicas,
            metrics: Some(metrics(t, load, replicas)),
        };
        let decision = policy.decide(t, &observation);
        assert!(
            (2..=5).contains(&decision.replicas),
            "{}: step {step} asked for {} outside [2, 5] ({})",
            policy.name(),
            decision.replicas,
            decision.reason
        );
        replicas = decision.replicas;
    }
}

/// No metrics at all: hold the current size and say why.
pub fn holds_without_metrics(config: &PolicyConfig) {
    let mut policy = config.build().unwrap();
    for desired in [1, 3, 7] {
        let observation = Observation {
            ready: desired,
            starting: 0,
            desired,
            metrics: None,
        };
        let decision = policy.decide(Duration::from_secs(100), &observation);
        assert_eq!(
            (decision.replicas, decision.action),
            (desired, Action::Stale),
            "{}: without metrics it must hold at {desired} ({})",
            policy.name(),
            decision.reason
        );
        assert!(!decision.reason.is_empty());
    }
}

/// Metrics an hour old, even ones that say the load is gone: hold.
pub fn holds_on_stale_metrics(config: &PolicyConfig) {
    let mut policy = config.build().unwrap();
    let observation = Observation {
        ready: 4,
        starting: 0,
        desired: 4,
        metrics: Some(metrics(Duration::from_secs(10), 0.0, 4)),
    };
    let decision = policy.decide(Duration::from_secs(3610), &observation);
    assert_eq!(
        (decision.replicas, decision.action),
        (4, Action::Stale),
        "{}: hour-old metrics must hold the size ({})",
        policy.name(),
        decision.reason
    );
}

/// A metric that is not a number, infinite or negative (a broken exporter) holds the
/// size: it must not read as an idle service.
pub fn holds_on_broken_metrics(config: &PolicyConfig) {
    let broken: [fn(&mut Metrics); 6] = [
        |m| m.request_rate_rps = Some(f64::NAN),
        |m| m.request_rate_rps = Some(-5.0),
        |m| m.in_flight = Some(f64::INFINITY),
        |m| m.queue_depth = Some(f64::NAN),
        |m| m.latency_ms = Some(-1.0),
        |m| m.utilization[0] = f64::NAN,
    ];
    for (i, breaks) in broken.iter().enumerate() {
        let mut policy = config.build().unwrap();
        let mut m = metrics(Duration::from_secs(10), 0.0, 4);
        breaks(&mut m);
        let observation = Observation {
            ready: 4,
            starting: 0,
            desired: 4,
            metrics: Some(m),
        };
        let decision = policy.decide(Duration::from_secs(10), &observation);
        assert_eq!(
            (decision.replicas, decision.action),
            (4, Action::Stale),
            "{}: broken metric {i} must hold the size ({})",
            policy.name(),
            decision.reason
        );
    }
}

/// Two policies built from the same configuration answer the same sequence alike.
pub fn deterministic(config: &PolicyConfig) {
    let mut a = config.build().unwrap();
    let mut b = config.build().unwrap();
    let period = a.period().max(Duration::from_millis(100));
    let mut replicas = 1;
    let mut t = Duration::ZERO;
    for step in 0..600u32 {
        t += period;
        let load = 1.0 + (step % 97) as f64 * 0.3;
        let observation = Observation {
            ready: replicas,
            starting: 0,
            desired: replicas,
            metrics: Some(metrics(t, load, replicas)),
        };
        let (x, y) = (a.decide(t, &observation), b.decide(t, &observation));
        assert_eq!(x, y, "{}: step {step} differs", a.name());
        replicas = x.replicas;
    }
}

/// Asks for a fixed count: the policy the scaler checks drive.
#[derive(Debug)]
pub struct Fixed(pub u32);

impl crate::policy::Policy for Fixed {
    fn name(&self) -> String {
        format!("fixed {}", self.0)
    }
    fn period(&self) -> Duration {
        Duration::from_secs(1)
    }
    fn decide(&mut self, _now: Duration, observation: &Observation) -> crate::policy::Decision {
        crate::policy::Decision {
            replicas: self.0,
            action: if self.0 == observation.desired {
                Action::Hold
            } else if self.0 > observation.desired {
                Action::Up
            } else {
                Action::Down
            },
            reason: format!("fixed at {}", self.0),
        }
    }
}

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap()
        .block_on(f)
}

/// The checks every scaler passes, driven through a [`Controller`](crate::scaler::Controller):
/// a set count reads back; the controller's bounds hold whatever the policy asks; nothing
/// scales to zero unless the bounds allow it. `scaler` must start with at least one
/// replica. Failed sets and their backoff are checked on [`MemoryScaler`], whose failures
/// can be injected (`crate::scaler::MemoryScaler::fail_next`).
pub fn scaler_conformance<S: crate::scaler::Scaler + ?Sized>(scaler: &S) {
    use crate::scaler::{Applied, Controller, ControllerConfig, MemorySource};

    block_on(async {
        for n in [3, 1, 5] {
            scaler.set_replicas(n).await.unwrap();
            let state = scaler.state().await.unwrap();
            assert_eq!(
                state.desired,
                n,
                "{}: set {n}, read {state:?}",
                scaler.name()
            );
        }
        let source = MemorySource::new();
        source.set(metrics(Duration::ZERO, 1.0, 1));
        let config = ControllerConfig {
            bounds: Bounds::new(2, 8).unwrap(),
            ..ControllerConfig::default()
        };
        for (asked, expected) in [(1000, 8), (0, 2), (6, 6)] {
            let mut controller =
                Controller::new(Fixed(asked), &source, scaler).with_config(config.clone());
            let step = controller.step(Duration::from_secs(1)).await;
            let state = scaler.state().await.unwrap();
            assert_eq!(
                state.desired,
                expected,
                "{}: asked {asked}: {step:?}",
                scaler.name()
            );
            assert!(
                matches!(step.applied, Applied::Set { .. } | Applied::Unchanged),
                "{}: {step:?}",
                scaler.name()
            );
        }
        // Default bounds: a policy asking for zero gets one.
        let mut controller = Controller::new(Fixed(0), &source, scaler);
        controller.step(Duration::from_secs(1)).await;
        assert_eq!(
            scaler.state().await.unwrap().desired,
            1,
            "{}",
            scaler.name()
        );
    });
}
