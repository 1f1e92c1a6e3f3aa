//! The controller loop over the in-memory scaler and metrics: exact step timelines, bounds,
//! failed sets and their backoff, dry runs, lost metrics and an unreadable deployment.

use std::time::Duration;

use async_trait::async_trait;
use mlops_scale::policy::{Bounds, CapacityConfig, Metrics, PolicyConfig};
use mlops_scale::scaler::{
    Applied, Controller, ControllerConfig, MemoryScaler, MemorySource, ReplicaState, Scaler,
};
use mlops_scale::testkit::{self, Fixed};
use mlops_scale::{Error, Result};

fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s)
}

fn load(rate: f64) -> Metrics {
    Metrics {
        at: Duration::ZERO,
        window: secs(1.0),
        request_rate_rps: Some(rate),
        in_flight: Some(rate * 0.02),
        queue_depth: Some(0.0),
        latency_ms: Some(20.0),
        utilization: Vec::new(),
    }
}

fn capacity() -> Box<dyn mlops_scale::Policy> {
    // 50 req/s per replica at the default 85% ratio.
    PolicyConfig::Capacity(CapacityConfig::new(50.0 / 0.85, 100.0))
        .build()
        .expect("valid settings")
}

#[test]
fn the_memory_scaler_passes_the_scaler_checks() {
    testkit::scaler_conformance(&MemoryScaler::new(2));
}

#[tokio::test]
async fn the_capacity_policy_drives_the_scaler_step_by_step() {
    let source = MemorySource::new();
    let scaler = MemoryScaler::new(2);
    let mut controller = Controller::new(capacity(), &source, &scaler);
    assert_eq!(controller.period(), secs(2.0));

    source.set(load(420.0));
    let step = controller.step(secs(2.0)).await;
    assert_eq!(step.applied, Applied::Set { from: 2, to: 9 });
    assert_eq!(
        step.state,
        Some(ReplicaState {
            desired: 2,
            ready: 2,
            starting: 0
        })
    );
    // The seven new ones are starting; the policy counts them and asks for nothing more.
    let step = controller.step(secs(4.0)).await;
    assert_eq!(step.applied, Applied::Unchanged);
    assert_eq!(
        step.state,
        Some(ReplicaState {
            desired: 9,
            ready: 2,
            starting: 7
        })
    );
    scaler.settle();
    // The load falls to 100 req/s. The 5-s mean rate walks down (313, 207, then 100 req/s:
    // 7, 5, then 2 replicas wanted at 6, 8 and 10 s), and each is held for the 30-s
    // scale-down window after the last ask above it.
    source.set(load(100.0));
    let mut sets = Vec::new();
    for t in (6..=60).step_by(2) {
        let step = controller.step(secs(t as f64)).await;
        if let Applied::Set { from, to } = step.applied {
            sets.push((t, from, to));
        }
    }
    assert_eq!(sets, vec![(36, 9, 7), (38, 7, 5), (40, 5, 2)]);
    assert_eq!(scaler.history(), vec![9, 7, 5, 2]);
}

#[tokio::test]
async fn a_failed_set_is_retried_with_a_doubling_backoff() {
    let source = MemorySource::new();
    source.set(load(0.0));
    let scaler = MemoryScaler::new(1);
    scaler.fail_next(2);
    let mut controller = Controller::new(Fixed(4), &source, &scaler);
    let mut timeline = Vec::new();
    for t in [1.0, 1.5, 2.0, 3.0, 3.9, 4.0, 5.0] {
        let step = controller.step(secs(t)).await;
        timeline.push((t, step.applied));
    }
    let retry = |s: f64| secs(s);
    assert!(
        matches!(timeline[0].1, Applied::Failed { to: 4, retry_in, .. } if retry_in == retry(1.0))
    );
    assert!(
        matches!(timeline[1].1, Applied::Waiting { to: 4, retry_in } if retry_in == retry(0.5))
    );
    assert!(
        matches!(timeline[2].1, Applied::Failed { to: 4, retry_in, .. } if retry_in == retry(2.0))
    );
    assert!(
        matches!(timeline[3].1, Applied::Waiting { .. }),
        "{timeline:?}"
    );
    assert!(
        matches!(timeline[4].1, Applied::Waiting { .. }),
        "{timeline:?}"
    );
    assert_eq!(timeline[5].1, Applied::Set { from: 1, to: 4 });
    assert_eq!(timeline[6].1, Applied::Unchanged);
    assert_eq!(scaler.history(), vec![4]);
    if let Applied::Failed { error, .. } = &timeline[0].1 {
        assert!(error.contains("injected failure"), "{error}");
    }
}

#[tokio::test]
async fn a_dry_run_changes_nothing_and_says_what_it_would_do() {
    let source = MemorySource::new();
    source.set(load(420.0));
    let scaler = MemoryScaler::new(2);
    let mut controller =
        Controller::new(capacity(), &source, &scaler).with_config(ControllerConfig {
            dry_run: true,
            ..ControllerConfig::default()
        });
    let step = controller.step(secs(2.0)).await;
    assert_eq!(step.applied, Applied::DryRun { from: 2, to: 9 });
    // The policy sees its own answer as asked for, so it does not repeat it.
    let step = controller.step(secs(4.0)).await;
    assert_eq!(step.applied, Applied::Unchanged);
    assert!(scaler.history().is_empty());
    assert_eq!(scaler.state().await.unwrap().desired, 2);
}

#[tokio::test]
async fn lost_metrics_age_into_a_hold_and_never_a_scale_to_zero() {
    let source = MemorySource::new();
    source.set(load(420.0));
    let scaler = MemoryScaler::new(9);
    let mut controller =
        Controller::new(capacity(), &source, &scaler).with_config(ControllerConfig {
            bounds: Bounds::new(0, 20).unwrap(),
            ..ControllerConfig::default()
        });
    assert_eq!(controller.step(secs(2.0)).await.applied, Applied::Unchanged);
    // The endpoint goes down: the last metrics (420 req/s) keep it at 9, then age past the
    // policy's 10 s and it holds, saying why.
    source.clear();
    for t in (4..=120).step_by(2) {
        let step = controller.step(secs(t as f64)).await;
        assert_eq!(step.applied, Applied::Unchanged, "t={t}: {step:?}");
        let decision = step.decision.unwrap();
        if t > 12 {
            assert!(
                decision.reason.contains("old"),
                "t={t}: {}",
                decision.reason
            );
        }
    }
    assert_eq!(scaler.state().await.unwrap().desired, 9);
}

struct Unreadable;

#[async_trait]
impl Scaler for Unreadable {
    fn name(&self) -> String {
        "unreadable".to_string()
    }
    async fn state(&self) -> Result<ReplicaState> {
        Err(Error::Scaler {
            scaler: "unreadable".to_string(),
            reason: "403 Forbidden".to_string(),
            temporary: false,
        })
    }
    async fn set_replicas(&self, _replicas: u32) -> Result<()> {
        unreachable!("never asked: the state could not be read")
    }
}

#[tokio::test]
async fn an_unreadable_deployment_is_held_and_reported() {
    let source = MemorySource::new();
    source.set(load(420.0));
    let mut controller = Controller::new(capacity(), &source, Unreadable);
    let step = controller.step(secs(2.0)).await;
    match step.applied {
        Applied::NoState { error } => assert!(error.contains("403 Forbidden"), "{error}"),
        other => panic!("{other:?}"),
    }
    assert!(step.decision.is_none());
    let err = Unreadable.state().await.unwrap_err();
    assert!(!err.is_temporary());
}

#[tokio::test(start_paused = true)]
async fn the_loop_steps_at_the_policy_period_until_shutdown() {
    let source = MemorySource::new();
    source.set(load(420.0));
    let scaler = MemoryScaler::new(2);
    let mut controller = Controller::new(capacity(), &source, &scaler);
    // Virtual time: 10 s of 2-s ticks pass at once.
    let steps = controller.run(tokio::time::sleep(secs(10.0))).await;
    assert_eq!(steps.len(), 1, "{steps:?}");
    assert_eq!(steps[0].applied, Applied::Set { from: 2, to: 9 });
    assert_eq!(steps[0].at, Duration::ZERO);
    assert_eq!(scaler.history(), vec![9]);
}
