//! Trace files and generators.

use std::path::Path;

use mlops_scale::{Error, Trace, TraceSpec};

fn parse(text: &str) -> Result<Trace, Error> {
    Trace::parse("t", Path::new("arrivals.txt"), text)
}

#[test]
fn a_file_of_arrivals_with_or_without_a_header() {
    let t = parse("arrival_s\n0.5\n1.25\n\n# a comment\n1.25\n3\n").unwrap();
    assert_eq!(t.arrivals(), &[0.5, 1.25, 1.25, 3.0]);
    assert_eq!(t.duration_s(), 4.0);
    let t = parse("0\n0.1,extra,columns\n").unwrap();
    assert_eq!(t.arrivals(), &[0.0, 0.1]);
}

#[test]
fn bad_lines_are_errors_naming_the_line() {
    let cases = [
        ("arrival_s\n1\n0.5\n", 3, "must be sorted"),
        ("1\n-2\n", 2, "not a time >= 0"),
        ("timestamp\n1\nabc\n", 3, "'abc' is not a number"),
        ("1\nNaN\n", 2, "not a time >= 0"),
        ("1\ninf\n", 2, "not a time >= 0"),
        // Not a header: it starts like a number.
        ("1.5s\n2\n", 1, "'1.5s' is not a number"),
    ];
    for (text, line, what) in cases {
        match parse(text) {
            Err(Error::TraceLine {
                line: l,
                reason,
                path,
            }) => {
                assert_eq!(l, line, "{text:?}: {reason}");
                assert!(reason.contains(what), "{text:?}: {reason}");
                assert_eq!(path, Path::new("arrivals.txt"));
            }
            other => panic!("{text:?}: {other:?}"),
        }
    }
    assert!(matches!(parse("header only\n"), Err(Error::Trace(_))));
    // A file whose one arrival is absurdly late.
    assert!(matches!(parse("1e300\n"), Err(Error::Trace(_))));
    assert!(matches!(parse(""), Err(Error::Trace(_))));
    let missing = Trace::from_file(Path::new("no/such/trace.txt")).unwrap_err();
    assert!(matches!(missing, Error::Io { .. }), "{missing}");
}

#[test]
fn the_shipped_bursty_trace_loads() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../testdata/traces/bursty.txt");
    let t = Trace::from_file(Path::new(path)).unwrap();
    assert_eq!(t.name(), "bursty");
    assert_eq!(t.len(), 89_363);
    assert_eq!(t.duration_s(), 600.0);
    // Bursts: the busiest 10 s carry well over the mean.
    assert!(
        t.peak_rps(10.0) > 1.6 * t.mean_rps(),
        "{} vs {}",
        t.peak_rps(10.0),
        t.mean_rps()
    );
}

#[test]
fn generated_traces_follow_their_curves_and_repeat_by_seed() {
    let steady = Trace::generate(
        &TraceSpec::Steady {
            rate_rps: 10.0,
            duration_s: 2.0,
        },
        0,
    )
    .unwrap();
    assert_eq!(steady.len(), 20);
    assert!((steady.arrivals()[1] - 0.1).abs() < 1e-12);

    let spec = TraceSpec::Poisson {
        rate_rps: 200.0,
        duration_s: 100.0,
    };
    let a = Trace::generate(&spec, 3).unwrap();
    assert_eq!(a, Trace::generate(&spec, 3).unwrap());
    assert_ne!(a, Trace::generate(&spec, 4).unwrap());
    // 20,000 expected; Poisson sd is about 141.
    assert!((a.len() as f64 - 20_000.0).abs() < 600.0, "{}", a.len());

    let step = Trace::generate(
        &TraceSpec::Step {
            from_rps: 50.0,
            to_rps: 200.0,
            at_s: 100.0,
            duration_s: 200.0,
        },
        1,
    )
    .unwrap();
    let rates = step.rates(100.0);
    assert!(
        (rates[0] - 50.0).abs() < 5.0 && (rates[1] - 200.0).abs() < 10.0,
        "{rates:?}"
    );

    let diurnal = Trace::generate(
        &TraceSpec::Diurnal {
            mean_rps: 100.0,
            amplitude: 0.8,
            period_s: 600.0,
            duration_s: 600.0,
        },
        2,
    )
    .unwrap();
    let rates = diurnal.rates(60.0);
    // From the trough (about 20 req/s) up to the peak (about 180) at mid-period.
    assert!(
        rates[0] < 45.0 && rates[4] > 150.0 && rates[5] > 150.0,
        "{rates:?}"
    );
    assert!((diurnal.mean_rps() - 100.0).abs() < 4.0);

    let spikes = Trace::generate(
        &TraceSpec::Spikes {
            base_rps: 10.0,
            spike_rps: 100.0,
            every_s: 60.0,
            spike_s: 10.0,
            first_s: 30.0,
            duration_s: 120.0,
        },
        5,
    )
    .unwrap();
    let rates = spikes.rates(10.0);
    assert!(
        rates[3] > 80.0 && rates[9] > 80.0 && rates[5] < 20.0,
        "{rates:?}"
    );
}

#[test]
fn bad_generator_settings_are_refused() {
    for spec in [
        TraceSpec::Poisson {
            rate_rps: 0.0,
            duration_s: 10.0,
        },
        TraceSpec::Poisson {
            rate_rps: 10.0,
            duration_s: -1.0,
        },
        TraceSpec::Diurnal {
            mean_rps: 10.0,
            amplitude: 1.5,
            period_s: 60.0,
            duration_s: 60.0,
        },
        TraceSpec::Spikes {
            base_rps: 1.0,
            spike_rps: 10.0,
            every_s: 5.0,
            spike_s: 10.0,
            first_s: 0.0,
            duration_s: 60.0,
        },
        // Far more arrivals than memory holds, or longer than a trace may last.
        TraceSpec::Poisson {
            rate_rps: 1e300,
            duration_s: 10.0,
        },
        TraceSpec::Steady {
            rate_rps: 1.0,
            duration_s: 1e9,
        },
    ] {
        assert!(
            matches!(Trace::generate(&spec, 0), Err(Error::Trace(_))),
            "{spec:?}"
        );
    }
}

#[test]
fn a_trace_written_out_reads_back() {
    let t = Trace::generate(
        &TraceSpec::Poisson {
            rate_rps: 50.0,
            duration_s: 10.0,
        },
        9,
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("poisson.txt");
    std::fs::write(&path, t.to_text()).unwrap();
    let back = Trace::from_file(&path).unwrap();
    assert_eq!(back.len(), t.len());
    for (a, b) in back.arrivals().iter().zip(t.arrivals()) {
        assert!((a - b).abs() < 1e-6);
    }
}

#[test]
fn rates_with_a_bin_that_makes_no_sense_are_empty() {
    let t = parse("0\n1\n2\n").unwrap();
    assert_eq!(t.rates(1.0), vec![1.0, 1.0, 1.0]);
    assert!(t.rates(0.0).is_empty());
    assert!(t.rates(-1.0).is_empty());
    assert!(t.rates(f64::NAN).is_empty());
    assert!(t.rates(1e-9).is_empty());
}

#[test]
fn arrivals_out_of_order_are_refused_by_the_constructor() {
    assert!(matches!(
        Trace::new("x", vec![1.0, 0.5], 2.0),
        Err(Error::Trace(_))
    ));
    assert!(matches!(
        Trace::new("x", vec![1.0], 0.5),
        Err(Error::Trace(_))
    ));
}
