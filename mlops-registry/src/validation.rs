//! Validation before promotion: run a candidate version and the version it would replace
//! on the same inputs, and decide, with no human in the loop, whether the candidate may
//! take over.
//!
//! The checks a [`ValidationPolicy`] can ask for:
//! - **output agreement**: every output element within `atol + rtol × |baseline|`;
//! - **top-1 agreement** of a classifier's arg-max;
//! - **accuracy** against labels, absolute and relative to the baseline;
//! - **expected outputs**, where the validation set carries them;
//! - **latency regression** of the candidate's p95 against the baseline's.
//!
//! The result is a [`ValidationReport`], which [`crate::Registry::promote_if_valid`]
//! stores on the candidate version and attaches to the alias move in the audit log.

use std::time::Instant;

use chrono::{DateTime, Utc};
use mlops_core::{Infer, Tensor};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::time::now;

/// One input of a validation set, with what is known about its answer.
#[derive(Clone, Debug, PartialEq)]
pub struct ValidationCase {
    /// The request's input tensors.
    pub inputs: Vec<Tensor>,
    /// The outputs a correct model returns, when known.
    pub expected: Option<Vec<Tensor>>,
    /// Class labels, one per row of the batch, when known.
    pub labels: Option<Vec<i64>>,
}

impl ValidationCase {
    /// A case with inputs only: compared between candidate and baseline.
    pub fn new(inputs: Vec<Tensor>) -> Self {
        ValidationCase {
            inputs,
            expected: None,
            labels: None,
        }
    }

    /// Adds the expected outputs.
    pub fn with_expected(mut self, outputs: Vec<Tensor>) -> Self {
        self.expected = Some(outputs);
        self
    }

    /// Adds class labels, one per batch row.
    pub fn with_labels(mut self, labels: Vec<i64>) -> Self {
        self.labels = Some(labels);
        self
    }
}

/// What a candidate must satisfy. The defaults compare outputs tightly and check nothing
/// else; turn on the checks that fit the model.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ValidationPolicy {
    /// Compare each output element with the baseline's (and with expected outputs).
    pub compare_outputs: bool,
    /// Absolute tolerance of that comparison.
    pub atol: f64,
    /// Relative tolerance of that comparison.
    pub rtol: f64,
    /// The share of cases allowed to disagree (0 = none).
    pub max_disagreement: f64,
    /// The output holding class scores (arg-max over its last dimension): enables top-1
    /// agreement and accuracy.
    pub class_output: Option<String>,
    /// The least share of rows whose top-1 class matches the baseline's.
    pub min_top1_agreement: Option<f64>,
    /// The least accuracy against labels.
    pub min_accuracy: Option<f64>,
    /// The most accuracy may fall below the baseline's (0.01 = one point).
    pub max_accuracy_drop: Option<f64>,
    /// The most the candidate's p95 latency may exceed the baseline's, as a fraction
    /// (0.2 = 20 % slower). Measured after one warm-up call each, over at least
    /// [`latency_samples`](Self::latency_samples) calls of each model, in adjacent pairs
    /// whose order alternates. A regression seen once is measured again, and the check
    /// fails only when the second measurement shows it too: one stall of a busy machine
    /// moves a p95 of a few dozen calls, a slower model moves both.
    pub max_latency_regression: Option<f64>,
    /// The least number of timed calls of each model behind the latency check: the
    /// validation set is run round by round (timing only after the first round) until
    /// each model has this many. Default 64; more makes the p95 steadier and the
    /// validation longer.
    #[serde(default = "default_latency_samples")]
    pub latency_samples: usize,
}

fn default_latency_samples() -> usize {
    64
}

impl Default for ValidationPolicy {
    fn default() -> Self {
        ValidationPolicy {
            compare_outputs: true,
            atol: 1e-5,
            rtol: 1e-4,
            max_disagreement: 0.0,
            class_output: None,
            min_top1_agreement: None,
            min_accuracy: None,
            max_accuracy_drop: None,
            max_latency_regression: None,
            latency_samples: default_latency_samples(),
        }
    }
}

impl ValidationPolicy {
    /// Sets the tolerances of the output comparison.
    pub fn with_tolerance(mut self, atol: f64, rtol: f64) -> Self {
        self.atol = atol;
        self.rtol = rtol;
        self
    }

    /// Names the class-score output and asks for at least `min_agreement` top-1
    /// agreement with the baseline.
    pub fn with_top1_agreement(
        mut self,
        class_output: impl Into<String>,
        min_agreement: f64,
    ) -> Self {
        self.class_output = Some(class_output.into());
        self.min_top1_agreement = Some(min_agreement);
        self
    }

    /// Asks for at least `min` accuracy against the labels (needs a class output).
    pub fn with_min_accuracy(mut self, min: f64) -> Self {
        self.min_accuracy = Some(min);
        self
    }

    /// Allows the candidate's p95 latency to exceed the baseline's by at most `fraction`.
    pub fn with_max_latency_regression(mut self, fraction: f64) -> Self {
        self.max_latency_regression = Some(fraction);
        self
    }

    /// Times at least `samples` calls of each model for the latency check (default 64).
    pub fn with_latency_samples(mut self, samples: usize) -> Self {
        self.latency_samples = samples;
        self
    }

    /// Compares classes only (no element-wise comparison): for a retrained model whose
    /// scores are expected to move.
    pub fn without_output_comparison(mut self) -> Self {
        self.compare_outputs = false;
        self
    }

    fn check(&self) -> Result<()> {
        let fractions = [
            Some(self.max_disagreement),
            self.min_top1_agreement,
            self.min_accuracy,
            self.max_accuracy_drop,
        ];
        if fractions.iter().flatten().any(|f| !(0.0..=1.0).contains(f))
            || !(self.atol >= 0.0 && self.rtol >= 0.0)
            || self
                .max_latency_regression
                .is_some_and(|f| f.is_nan() || f < 0.0)
            || self.latency_samples == 0
        {
            return Err(Error::invalid(
                "validation policy: shares are in [0, 1], tolerances and regression ≥ 0, \
                 latency samples ≥ 1",
            ));
        }
        if (self.min_top1_agreement.is_some()
            || self.min_accuracy.is_some()
            || self.max_accuracy_drop.is_some())
            && self.class_output.is_none()
        {
            return Err(Error::invalid(
                "validation policy: top-1 and accuracy checks need class_output",
            ));
        }
        Ok(())
    }
}

/// One check's outcome.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CheckResult {
    /// `output_agreement`, `expected_outputs`, `top1_agreement`, `accuracy`,
    /// `accuracy_drop`, `latency_regression`.
    pub name: String,
    /// Whether it passed.
    pub passed: bool,
    /// The measured value (a share, a drop, a ratio).
    pub observed: f64,
    /// The bound it was held to.
    pub threshold: f64,
    /// A sentence for people: what differed, where.
    pub detail: String,
}

/// One model's latency over its timed calls (the validation set's round, and the latency
/// check's rounds when it runs), in microseconds.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct LatencySummary {
    /// Median.
    pub p50_us: f64,
    /// 95th percentile.
    pub p95_us: f64,
    /// Mean.
    pub mean_us: f64,
}

impl LatencySummary {
    fn of(mut samples: Vec<f64>) -> Self {
        if samples.is_empty() {
            return Self::default();
        }
        samples.sort_by(f64::total_cmp);
        let at = |q: f64| samples[((samples.len() - 1) as f64 * q).round() as usize];
        LatencySummary {
            p50_us: at(0.5),
            p95_us: at(0.95),
            mean_us: samples.iter().sum::<f64>() / samples.len() as f64,
        }
    }
}

/// The outcome of a validation: stored on the candidate version and in the audit log.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ValidationReport {
    /// The candidate's reference (`name/version`).
    pub candidate: String,
    /// The baseline's reference, when there was one.
    pub baseline: Option<String>,
    /// Whether every check passed.
    pub passed: bool,
    /// Each check.
    pub checks: Vec<CheckResult>,
    /// How many cases were run.
    pub cases: usize,
    /// The candidate's latency.
    pub candidate_latency: LatencySummary,
    /// The baseline's latency.
    pub baseline_latency: Option<LatencySummary>,
    /// When the run started.
    pub started_at: DateTime<Utc>,
    /// When it finished.
    pub finished_at: DateTime<Utc>,
}

impl ValidationReport {
    /// One line: passed or not, and the failed checks' details.
    pub fn summary(&self) -> String {
        let failed: Vec<_> = self
            .checks
            .iter()
            .filter(|c| !c.passed)
            .map(|c| format!("{}: {}", c.name, c.detail))
            .collect();
        let against = self
            .baseline
            .as_deref()
            .map(|b| format!(" against {b}"))
            .unwrap_or_default();
        if failed.is_empty() {
            format!(
                "{}{against}: passed {} checks on {} cases",
                self.candidate,
                self.checks.len(),
                self.cases
            )
        } else {
            format!("{}{against}: FAILED {}", self.candidate, failed.join("; "))
        }
    }
}

/// Runs every case through `candidate` (and `baseline`, when given, interleaved so that
/// both see the same machine conditions) and applies `policy`.
///
/// An error from either model is an [`Error::Validation`]: a candidate that cannot answer
/// is not promoted, and the caller learns why.
pub async fn validate(
    candidate: (&str, &dyn Infer),
    baseline: Option<(&str, &dyn Infer)>,
    cases: &[ValidationCase],
    policy: &ValidationPolicy,
) -> Result<ValidationReport> {
    policy.check()?;
    if cases.is_empty() {
        return Err(Error::invalid("the validation set is empty"));
    }
    let started_at = now();
    // Warm-up: first calls pay for lazy initialisation, which is not a regression.
    run(candidate.0, candidate.1, cases[0].inputs.clone()).await?;
    if let Some((name, model)) = baseline {
        run(name, model, cases[0].inputs.clone()).await?;
    }

    let mut tally = Tally::default();
    let mut cand_lat = Vec::with_capacity(cases.len());
    let mut base_lat = Vec::with_capacity(cases.len());
    for (i, case) in cases.iter().enumerate() {
        // Alternate who goes first, so neither model always runs on a machine the other
        // just warmed (or left busy).
        let mut base_out = None;
        if i % 2 == 1
            && let Some((name, model)) = baseline
        {
            let (out, lat) = run(name, model, case.inputs.clone()).await?;
            base_lat.push(lat);
            base_out = Some(out);
        }
        let (cand_out, lat) = run(candidate.0, candidate.1, case.inputs.clone()).await?;
        cand_lat.push(lat);
        if i % 2 == 0
            && let Some((name, model)) = baseline
        {
            let (out, lat) = run(name, model, case.inputs.clone()).await?;
            base_lat.push(lat);
            base_out = Some(out);
        }
        tally.case(i, case, &cand_out, base_out.as_deref(), policy);
    }

    let mut checks = Vec::new();
    let n = cases.len() as f64;
    if policy.compare_outputs && baseline.is_some() {
        let share = tally.disagreeing as f64 / n;
        checks.push(CheckResult {
            name: "output_agreement".into(),
            passed: share <= policy.max_disagreement,
            observed: share,
            threshold: policy.max_disagreement,
            detail: tally.first_difference.clone().unwrap_or_else(|| {
                format!(
                    "all {} cases within atol {} rtol {}",
                    cases.len(),
                    policy.atol,
                    policy.rtol
                )
            }),
        });
    }
    if policy.compare_outputs && tally.expected_cases > 0 {
        let share = tally.expected_misses as f64 / tally.expected_cases as f64;
        checks.push(CheckResult {
            name: "expected_outputs".into(),
            passed: share <= policy.max_disagreement,
            observed: share,
            threshold: policy.max_disagreement,
            detail: tally.first_expected_miss.clone().unwrap_or_else(|| {
                format!(
                    "{} cases match their expected outputs",
                    tally.expected_cases
                )
            }),
        });
    }
    if let Some(min) = policy.min_top1_agreement {
        let share = ratio(tally.top1_same, tally.top1_rows);
        checks.push(CheckResult {
            name: "top1_agreement".into(),
            passed: baseline.is_some() && tally.top1_rows > 0 && share >= min,
            observed: share,
            threshold: min,
            detail: format!(
                "{} of {} rows pick the baseline's class",
                tally.top1_same, tally.top1_rows
            ),
        });
    }
    let cand_acc = ratio(tally.cand_correct, tally.labelled_rows);
    if let Some(min) = policy.min_accuracy {
        checks.push(CheckResult {
            name: "accuracy".into(),
            passed: tally.labelled_rows > 0 && cand_acc >= min,
            observed: cand_acc,
            threshold: min,
            detail: format!(
                "{} of {} labelled rows right",
                tally.cand_correct, tally.labelled_rows
            ),
        });
    }
    if let Some(max_drop) = policy.max_accuracy_drop {
        let base_acc = ratio(tally.base_correct, tally.labelled_rows);
        let drop = base_acc - cand_acc;
        checks.push(CheckResult {
            name: "accuracy_drop".into(),
            passed: baseline.is_some() && tally.labelled_rows > 0 && drop <= max_drop,
            observed: drop,
            threshold: max_drop,
            detail: format!("candidate {cand_acc:.4}, baseline {base_acc:.4}"),
        });
    }
    let (candidate_latency, baseline_latency) = match (policy.max_latency_regression, baseline) {
        (Some(max), Some(base)) => {
            let n = policy.latency_samples;
            let mut next = cases.len();
            let first =
                time_pairs(candidate, base, cases, &mut next, n, cand_lat, base_lat).await?;
            let (used, detail) = if first.regression() <= max {
                let detail = first.describe();
                (first, detail)
            } else {
                // Measured again from scratch: a stall of the machine is rarely there twice.
                let second =
                    time_pairs(candidate, base, cases, &mut next, n, Vec::new(), Vec::new())
                        .await?;
                if second.regression() <= max {
                    let detail = format!(
                        "{}; the regression of a first measurement ({}) did not show again",
                        second.describe(),
                        first.describe()
                    );
                    (second, detail)
                } else {
                    let detail = format!("{}, and again {}", first.describe(), second.describe());
                    // The smaller of the two regressions is the one the report stands by.
                    let used = if second.regression() < first.regression() {
                        second
                    } else {
                        first
                    };
                    (used, detail)
                }
            };
            checks.push(CheckResult {
                name: "latency_regression".into(),
                passed: used.regression() <= max,
                observed: used.regression(),
                threshold: max,
                detail,
            });
            (used.candidate, Some(used.baseline))
        }
        _ => (
            LatencySummary::of(cand_lat),
            baseline.map(|_| LatencySummary::of(base_lat)),
        ),
    };
    if checks.is_empty() {
        return Err(Error::invalid(
            "the policy checks nothing for this set: give a baseline, expected outputs, or labels",
        ));
    }
    Ok(ValidationReport {
        candidate: candidate.0.to_owned(),
        baseline: baseline.map(|(name, _)| name.to_owned()),
        passed: checks.iter().all(|c| c.passed),
        checks,
        cases: cases.len(),
        candidate_latency,
        baseline_latency,
        started_at,
        finished_at: now(),
    })
}

/// Times `candidate` and `baseline` in adjacent pairs over the cases, from case `*next`
/// round and round, until each side holds at least `target` samples (counting those
/// given). Who goes first alternates, so that neither always runs on a machine the other
/// just warmed or left busy.
async fn time_pairs(
    candidate: (&str, &dyn Infer),
    baseline: (&str, &dyn Infer),
    cases: &[ValidationCase],
    next: &mut usize,
    target: usize,
    mut cand_lat: Vec<f64>,
    mut base_lat: Vec<f64>,
) -> Result<LatencyComparison> {
    while cand_lat.len() < target || base_lat.len() < target {
        let i = *next;
        *next += 1;
        let inputs = &cases[i % cases.len()].inputs;
        let baseline_first = i % 2 == 1;
        if baseline_first {
            base_lat.push(run(baseline.0, baseline.1, inputs.clone()).await?.1);
        }
        cand_lat.push(run(candidate.0, candidate.1, inputs.clone()).await?.1);
        if !baseline_first {
            base_lat.push(run(baseline.0, baseline.1, inputs.clone()).await?.1);
        }
    }
    Ok(LatencyComparison::of(cand_lat, base_lat))
}

/// One measurement of both models' latency.
struct LatencyComparison {
    candidate: LatencySummary,
    baseline: LatencySummary,
    samples: usize,
}

impl LatencyComparison {
    fn of(cand: Vec<f64>, base: Vec<f64>) -> Self {
        LatencyComparison {
            samples: cand.len().min(base.len()),
            candidate: LatencySummary::of(cand),
            baseline: LatencySummary::of(base),
        }
    }

    fn regression(&self) -> f64 {
        self.candidate.p95_us / self.baseline.p95_us.max(f64::MIN_POSITIVE) - 1.0
    }

    fn describe(&self) -> String {
        format!(
            "p95 {:.1} us against {:.1} us over {} calls each",
            self.candidate.p95_us, self.baseline.p95_us, self.samples
        )
    }
}

fn ratio(a: usize, b: usize) -> f64 {
    if b == 0 { 0.0 } else { a as f64 / b as f64 }
}

#[derive(Default)]
struct Tally {
    disagreeing: usize,
    first_difference: Option<String>,
    expected_cases: usize,
    expected_misses: usize,
    first_expected_miss: Option<String>,
    top1_rows: usize,
    top1_same: usize,
    labelled_rows: usize,
    cand_correct: usize,
    base_correct: usize,
}

impl Tally {
    fn case(
        &mut self,
        i: usize,
        case: &ValidationCase,
        cand: &[Tensor],
        base: Option<&[Tensor]>,
        policy: &ValidationPolicy,
    ) {
        if policy.compare_outputs {
            if let Some(base) = base
                && let Some(diff) = compare(cand, base, policy)
            {
                self.disagreeing += 1;
                self.first_difference
                    .get_or_insert_with(|| format!("case {i}: {diff} (candidate vs baseline)"));
            }
            if let Some(expected) = &case.expected {
                self.expected_cases += 1;
                if let Some(diff) = compare(cand, expected, policy) {
                    self.expected_misses += 1;
                    self.first_expected_miss
                        .get_or_insert_with(|| format!("case {i}: {diff} (candidate vs expected)"));
                }
            }
        }
        let Some(class_output) = &policy.class_output else {
            return;
        };
        let cand_top = top1(cand, class_output);
        let base_top = base.map(|b| top1(b, class_output));
        if let (Some(c), Some(Some(b))) = (&cand_top, &base_top) {
            self.top1_rows += c.len().min(b.len());
            self.top1_same += c.iter().zip(b).filter(|(x, y)| x == y).count();
            // Rows missing on either side count as disagreement.
            self.top1_rows += c.len().abs_diff(b.len());
        } else if let Some(c) = &cand_top {
            // The baseline did not produce the class output: every row disagrees.
            self.top1_rows += c.len();
        } else if let Some(Some(b)) = &base_top {
            // The candidate did not: every baseline row disagrees.
            self.top1_rows += b.len();
        }
        if let Some(labels) = &case.labels {
            self.labelled_rows += labels.len();
            let correct = |pred: &Option<Vec<usize>>| {
                pred.as_ref().map_or(0, |p| {
                    p.iter()
                        .zip(labels)
                        .filter(|(p, l)| i64::try_from(**p).ok() == Some(**l))
                        .count()
                })
            };
            self.cand_correct += correct(&cand_top);
            self.base_correct += base_top.as_ref().map_or(0, correct);
        }
    }
}

/// The first difference between two output lists, or `None` if they agree.
fn compare(got: &[Tensor], want: &[Tensor], policy: &ValidationPolicy) -> Option<String> {
    for w in want {
        let Some(g) = got.iter().find(|g| g.name() == w.name()) else {
            return Some(format!("output '{}' is missing", w.name()));
        };
        if g.shape() != w.shape() {
            return Some(format!(
                "output '{}' has shape {:?}, not {:?}",
                w.name(),
                g.shape(),
                w.shape()
            ));
        }
        if g.dtype() == mlops_core::DataType::Bytes || w.dtype() == mlops_core::DataType::Bytes {
            if g.data() != w.data() || g.dtype() != w.dtype() {
                return Some(format!("output '{}' differs", w.name()));
            }
            continue;
        }
        let (Ok(gv), Ok(wv)) = (g.to_f64(), w.to_f64()) else {
            return Some(format!("output '{}' cannot be read as numbers", w.name()));
        };
        for (j, (a, b)) in gv.iter().zip(&wv).enumerate() {
            let bound = policy.atol + policy.rtol * b.abs();
            let same_nan = a.is_nan() && b.is_nan();
            let within = (a - b).abs() <= bound; // false for a NaN on one side only
            if !same_nan && !within {
                return Some(format!(
                    "output '{}' element {j}: {a} vs {b} (|diff| {:.3e} > {:.3e})",
                    w.name(),
                    (a - b).abs(),
                    bound
                ));
            }
        }
    }
    None
}

/// The arg-max over the last dimension of `output`, per row; `None` if absent or not
/// numeric.
fn top1(outputs: &[Tensor], output: &str) -> Option<Vec<usize>> {
    let t = outputs.iter().find(|t| t.name() == output)?;
    let classes = *t.shape().last()?;
    if classes == 0 {
        return None;
    }
    let values = t.to_f64().ok()?;
    Some(
        values
            .chunks_exact(classes)
            .map(|row| {
                row.iter()
                    .enumerate()
                    .fold((0, f64::NEG_INFINITY), |best, (k, &v)| {
                        if v > best.1 { (k, v) } else { best }
                    })
                    .0
            })
            .collect(),
    )
}

async fn run(name: &str, model: &dyn Infer, inputs: Vec<Tensor>) -> Result<(Vec<Tensor>, f64)> {
    let t = Instant::now();
    let out = model.infer(inputs).await.map_err(|e| Error::Validation {
        model: name.to_owned(),
        reason: e.to_string(),
    })?;
    Ok((out, t.elapsed().as_secs_f64() * 1e6))
}
