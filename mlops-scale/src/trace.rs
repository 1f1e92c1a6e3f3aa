//! Request traces: arrival timestamps, read from a file or generated.

use std::path::Path;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, Exp};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// The longest trace: 30 days.
pub const MAX_DURATION_S: f64 = 30.0 * 86_400.0;
/// The most arrivals a generated trace may hold at its peak rate.
pub const MAX_ARRIVALS: u64 = 200_000_000;

/// Arrival times in seconds from the trace's start, sorted.
#[derive(Clone, Debug, PartialEq)]
pub struct Trace {
    name: String,
    arrivals: Vec<f64>,
    duration_s: f64,
}

impl Trace {
    /// A trace from arrival times, which must be finite, not negative and sorted.
    /// `duration_s` is how long it runs (at least the last arrival).
    pub fn new(name: impl Into<String>, arrivals: Vec<f64>, duration_s: f64) -> Result<Self> {
        let mut previous = 0.0;
        for (i, &t) in arrivals.iter().enumerate() {
            if !t.is_finite() || t < 0.0 {
                return Err(Error::Trace(format!("arrival {i} is {t}: must be >= 0")));
            }
            if t < previous {
                return Err(Error::Trace(format!(
                    "arrival {i} at {t} s comes before the one before it ({previous} s)"
                )));
            }
            previous = t;
        }
        let last = arrivals.last().copied().unwrap_or(0.0);
        if duration_s > MAX_DURATION_S {
            return Err(Error::Trace(format!(
                "{duration_s} s is longer than the {MAX_DURATION_S} s (30 days) a trace may last"
            )));
        }
        if !(duration_s.is_finite() && duration_s >= last) {
            return Err(Error::Trace(format!(
                "duration {duration_s} s ends before the last arrival at {last} s"
            )));
        }
        Ok(Trace {
            name: name.into(),
            arrivals,
            duration_s,
        })
    }

    /// Parses one arrival time in seconds per line. A first line that is not a number is a
    /// header and skipped; blank lines and lines starting with `#` are skipped. A
    /// negative, non-numeric or out-of-order line is an error naming it. The trace lasts
    /// until the next whole second after its last arrival.
    pub fn parse(name: impl Into<String>, path: &Path, text: &str) -> Result<Self> {
        let mut arrivals = Vec::new();
        let mut first = true;
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let err = |reason: String| Error::TraceLine {
                path: path.to_path_buf(),
                line: i + 1,
                reason,
            };
            // The first field, so `timestamp,other,columns` works too.
            let field = line.split([',', '\t', ' ']).next().unwrap_or(line);
            // A header is a first line that does not start like a number; `1.5s` is a
            // bad arrival, not a header.
            let numeric = field
                .chars()
                .next()
                .is_some_and(|c| c.is_ascii_digit() || matches!(c, '-' | '+' | '.'));
            let t = match field.parse::<f64>() {
                Ok(t) => t,
                Err(_) if first && !numeric => {
                    first = false;
                    continue;
                }
                Err(_) => return Err(err(format!("'{field}' is not a number of seconds"))),
            };
            first = false;
            if !t.is_finite() || t < 0.0 {
                return Err(err(format!("{field} is not a time >= 0")));
            }
            if let Some(&previous) = arrivals.last()
                && t < previous
            {
                return Err(err(format!(
                    "{field} comes before the previous arrival ({previous}): the trace must be sorted"
                )));
            }
            arrivals.push(t);
        }
        if arrivals.is_empty() {
            return Err(Error::Trace(format!("{}: no arrivals", path.display())));
        }
        let duration = arrivals.last().copied().unwrap_or(0.0).floor() + 1.0;
        Trace::new(name, arrivals, duration)
    }

    /// Reads a file of arrival times (see [`Trace::parse`]); the trace is named after the
    /// file.
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let name = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "trace".to_string());
        Trace::parse(name, path, &text)
    }

    /// Generates a trace (seeded: the same spec and seed give the same arrivals).
    pub fn generate(spec: &TraceSpec, seed: u64) -> Result<Self> {
        spec.validate()?;
        let duration = spec.duration_s();
        let arrivals = match spec {
            TraceSpec::Steady { rate_rps, .. } => {
                let gap = 1.0 / rate_rps;
                (0u64..)
                    .map(|i| i as f64 * gap)
                    .take_while(|t| *t < duration)
                    .collect()
            }
            _ => poisson(|t| spec.rate_at(t), spec.peak_rps(), duration, seed),
        };
        Trace::new(spec.name(), arrivals, duration)
    }

    /// The same arrivals under another name.
    pub fn with_name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// Its name (the file stem, or the generator's).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Arrival times in seconds, sorted.
    pub fn arrivals(&self) -> &[f64] {
        &self.arrivals
    }

    /// Requests in the trace.
    pub fn len(&self) -> usize {
        self.arrivals.len()
    }

    /// Whether it has no requests.
    pub fn is_empty(&self) -> bool {
        self.arrivals.is_empty()
    }

    /// How long it runs, in seconds.
    pub fn duration_s(&self) -> f64 {
        self.duration_s
    }

    /// The mean rate, requests per second.
    pub fn mean_rps(&self) -> f64 {
        self.arrivals.len() as f64 / self.duration_s.max(f64::MIN_POSITIVE)
    }

    /// Arrivals per second in consecutive bins of `bin_s` seconds (none for a bin that
    /// is not positive, or that would make more than a million bins).
    pub fn rates(&self, bin_s: f64) -> Vec<f64> {
        let bins = (self.duration_s / bin_s).ceil().max(1.0);
        if !(bin_s > 0.0 && bins <= 1e6) {
            return Vec::new();
        }
        let bins = bins as usize;
        let mut counts = vec![0.0; bins];
        for &t in &self.arrivals {
            let i = ((t / bin_s) as usize).min(bins - 1);
            counts[i] += 1.0;
        }
        counts.iter().map(|c| c / bin_s).collect()
    }

    /// The highest rate over any bin of `bin_s` seconds.
    pub fn peak_rps(&self, bin_s: f64) -> f64 {
        self.rates(bin_s).into_iter().fold(0.0, f64::max)
    }

    /// Writes it as a file [`Trace::from_file`] reads back: a header, then one arrival per
    /// line with microsecond precision.
    pub fn to_text(&self) -> String {
        let mut out = String::with_capacity(self.arrivals.len() * 12 + 16);
        out.push_str("arrival_s\n");
        for t in &self.arrivals {
            out.push_str(&format!("{t:.6}\n"));
        }
        out
    }
}

/// A non-homogeneous Poisson process by thinning: candidates at the peak rate, each kept
/// with probability `rate(t) / peak`.
fn poisson(rate: impl Fn(f64) -> f64, peak: f64, duration: f64, seed: u64) -> Vec<f64> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut arrivals = Vec::with_capacity((peak * duration * 0.6) as usize);
    let Ok(gap) = Exp::new(peak) else {
        return arrivals;
    };
    let mut t = 0.0;
    loop {
        t += gap.sample(&mut rng);
        if t >= duration {
            break;
        }
        if rng.random::<f64>() * peak < rate(t) {
            arrivals.push(t);
        }
    }
    arrivals
}

/// A generated trace's shape. Every kind but `steady` draws Poisson arrivals around its
/// rate curve.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum TraceSpec {
    /// Evenly spaced arrivals at one rate.
    Steady {
        /// Requests per second.
        rate_rps: f64,
        /// Seconds.
        duration_s: f64,
    },
    /// Poisson arrivals at one rate.
    Poisson {
        /// Requests per second.
        rate_rps: f64,
        /// Seconds.
        duration_s: f64,
    },
    /// A day's rise and fall, compressed into `period_s`: a cosine from its trough.
    Diurnal {
        /// The mean rate.
        mean_rps: f64,
        /// The swing as a share of the mean (0 to 1): the rate runs from `mean × (1 −
        /// amplitude)` to `mean × (1 + amplitude)`.
        amplitude: f64,
        /// One cycle, in seconds.
        period_s: f64,
        /// Seconds.
        duration_s: f64,
    },
    /// A base rate with spikes of `spike_rps` for `spike_s` every `every_s`, the first at
    /// `first_s`.
    Spikes {
        /// The rate between spikes.
        base_rps: f64,
        /// The rate during a spike.
        spike_rps: f64,
        /// Seconds from one spike's start to the next.
        every_s: f64,
        /// How long each spike lasts.
        spike_s: f64,
        /// When the first starts.
        first_s: f64,
        /// Seconds.
        duration_s: f64,
    },
    /// One rate, then another from `at_s` on.
    Step {
        /// The rate before the step.
        from_rps: f64,
        /// The rate after it.
        to_rps: f64,
        /// When it steps.
        at_s: f64,
        /// Seconds.
        duration_s: f64,
    },
}

impl TraceSpec {
    /// How long it runs.
    pub fn duration_s(&self) -> f64 {
        match *self {
            TraceSpec::Steady { duration_s, .. }
            | TraceSpec::Poisson { duration_s, .. }
            | TraceSpec::Diurnal { duration_s, .. }
            | TraceSpec::Spikes { duration_s, .. }
            | TraceSpec::Step { duration_s, .. } => duration_s,
        }
    }

    /// A short name: the kind.
    pub fn name(&self) -> &'static str {
        match self {
            TraceSpec::Steady { .. } => "steady",
            TraceSpec::Poisson { .. } => "poisson",
            TraceSpec::Diurnal { .. } => "diurnal",
            TraceSpec::Spikes { .. } => "spikes",
            TraceSpec::Step { .. } => "step",
        }
    }

    /// The rate curve at `t` seconds.
    pub fn rate_at(&self, t: f64) -> f64 {
        match *self {
            TraceSpec::Steady { rate_rps, .. } | TraceSpec::Poisson { rate_rps, .. } => rate_rps,
            TraceSpec::Diurnal {
                mean_rps,
                amplitude,
                period_s,
                ..
            } => mean_rps * (1.0 - amplitude * (std::f64::consts::TAU * t / period_s).cos()),
            TraceSpec::Spikes {
                base_rps,
                spike_rps,
                every_s,
                spike_s,
                first_s,
                ..
            } => {
                if t >= first_s && (t - first_s) % every_s < spike_s {
                    spike_rps
                } else {
                    base_rps
                }
            }
            TraceSpec::Step {
                from_rps,
                to_rps,
                at_s,
                ..
            } => {
                if t < at_s {
                    from_rps
                } else {
                    to_rps
                }
            }
        }
    }

    /// The highest rate of the curve.
    pub fn peak_rps(&self) -> f64 {
        match *self {
            TraceSpec::Steady { rate_rps, .. } | TraceSpec::Poisson { rate_rps, .. } => rate_rps,
            TraceSpec::Diurnal {
                mean_rps,
                amplitude,
                ..
            } => mean_rps * (1.0 + amplitude),
            TraceSpec::Spikes {
                base_rps,
                spike_rps,
                ..
            } => base_rps.max(spike_rps),
            TraceSpec::Step {
                from_rps, to_rps, ..
            } => from_rps.max(to_rps),
        }
    }

    fn validate(&self) -> Result<()> {
        let bad =
            |what: &str, v: f64| Err(Error::Trace(format!("{what} must be positive, not {v}")));
        let d = self.duration_s();
        if !(d.is_finite() && d > 0.0) {
            return bad("duration_s", d);
        }
        if d > MAX_DURATION_S {
            return Err(Error::Trace(format!(
                "{d} s is longer than the {MAX_DURATION_S} s (30 days) a trace may last"
            )));
        }
        let rates: Vec<(&str, f64)> = match *self {
            TraceSpec::Steady { rate_rps, .. } | TraceSpec::Poisson { rate_rps, .. } => {
                vec![("rate_rps", rate_rps)]
            }
            TraceSpec::Diurnal {
                mean_rps,
                amplitude,
                period_s,
                ..
            } => {
                if !(0.0..=1.0).contains(&amplitude) {
                    return Err(Error::Trace(format!(
                        "amplitude must be in [0, 1], not {amplitude}"
                    )));
                }
                vec![("mean_rps", mean_rps), ("period_s", period_s)]
            }
            TraceSpec::Spikes {
                base_rps,
                spike_rps,
                every_s,
                spike_s,
                first_s,
                ..
            } => {
                if !(first_s.is_finite() && first_s >= 0.0 && spike_s > 0.0 && spike_s <= every_s) {
                    return Err(Error::Trace(
                        "spikes need first_s >= 0 and 0 < spike_s <= every_s".to_string(),
                    ));
                }
                if !(base_rps.is_finite() && base_rps >= 0.0) {
                    return bad("base_rps", base_rps);
                }
                vec![("spike_rps", spike_rps), ("every_s", every_s)]
            }
            TraceSpec::Step {
                from_rps,
                to_rps,
                at_s,
                ..
            } => {
                if !(from_rps.is_finite() && from_rps >= 0.0) {
                    return bad("from_rps", from_rps);
                }
                if !(at_s.is_finite() && at_s >= 0.0) {
                    return bad("at_s", at_s);
                }
                vec![("to_rps", to_rps)]
            }
        };
        for (what, v) in rates {
            if !(v.is_finite() && v > 0.0) {
                return bad(what, v);
            }
        }
        let expected = self.peak_rps() * d;
        if expected.is_nan() || expected > MAX_ARRIVALS as f64 {
            return Err(Error::Trace(format!(
                "{expected:.3e} requests at the peak rate is more than the {MAX_ARRIVALS} a generated trace may hold"
            )));
        }
        Ok(())
    }
}
