//! The registry's speed on the embedded backend (SQLite in WAL mode, artifacts on local
//! disk): resolving `name@alias`, registering version metadata, and registering a 1 GiB
//! artifact (streamed, hashed, written, synced).
//!
//! ```text
//! cargo bench --bench registry
//! ```
//!
//! Besides criterion's timings, the resolve bench prints p50/p99 over 20,000 calls, and
//! the artifact bench prints the peak resident memory growth while registering.

use std::hint::black_box;
use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use mlops::core::ModelRef;
use mlops::registry::{Change, Expect, ModelRegistry, NewVersion, Registry, SqliteRegistry};
use tokio::runtime::Runtime;

const DEVICE: &str = "cpu";

fn rt() -> Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime")
}

fn percentile(sorted: &[Duration], q: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * q).round() as usize]
}

fn resolve(c: &mut Criterion) {
    let rt = rt();
    let dir = tempfile::tempdir().expect("temp dir");
    let db = rt.block_on(async {
        let db = SqliteRegistry::open(dir.path().join("registry.db"))
            .await
            .expect("open");
        let change = Change::by("bench");
        // A realistic model: 50 versions with metrics, params and tags; one alias.
        for i in 0..50 {
            let new = NewVersion::new()
                .with_metric("accuracy", 0.9 + f64::from(i) / 1000.0)
                .with_param("lr", "0.01")
                .with_tag("team", "risk")
                .ready();
            db.create_version("fraud", new, &change)
                .await
                .expect("version");
        }
        db.set_alias("fraud", "production", 42, Expect::Absent, &change, None)
            .await
            .expect("alias");
        db
    });
    let reference = ModelRef::alias("fraud", "production");

    let mut group = c.benchmark_group(format!("{DEVICE}/registry/sqlite"));
    group.bench_function("resolve_alias", |b| {
        b.to_async(&rt)
            .iter(|| async { black_box(db.resolve(&reference).await.expect("resolve")) })
    });
    group.bench_function("resolve_version", |b| {
        let r = ModelRef::version("fraud", 7);
        b.to_async(&rt)
            .iter(|| async { black_box(db.resolve(&r).await.expect("resolve")) })
    });
    group.finish();

    let mut samples: Vec<Duration> = rt.block_on(async {
        let mut out = Vec::with_capacity(20_000);
        for _ in 0..20_000 {
            let t = Instant::now();
            black_box(db.resolve(&reference).await.expect("resolve"));
            out.push(t.elapsed());
        }
        out
    });
    samples.sort_unstable();
    eprintln!(
        "{DEVICE}/registry/sqlite/resolve_alias over {} calls: p50 {:?}, p99 {:?}, max {:?}",
        samples.len(),
        percentile(&samples, 0.5),
        percentile(&samples, 0.99),
        samples[samples.len() - 1]
    );
}

fn register_metadata(c: &mut Criterion) {
    let rt = rt();
    let dir = tempfile::tempdir().expect("temp dir");
    let db = Arc::new(rt.block_on(async {
        SqliteRegistry::open(dir.path().join("registry.db"))
            .await
            .expect("open")
    }));
    let change = Change::by("bench");
    let new = NewVersion::new()
        .with_metric("accuracy", 0.93)
        .with_metric("auc", 0.97)
        .with_param("lr", "0.01")
        .with_param("epochs", "20")
        .with_tag("team", "risk");

    let mut group = c.benchmark_group(format!("{DEVICE}/registry/sqlite"));
    group.throughput(Throughput::Elements(1));
    group.bench_function("create_version", |b| {
        b.to_async(&rt).iter(|| async {
            black_box(
                db.create_version("fraud", new.clone(), &change)
                    .await
                    .expect("create"),
            )
        })
    });
    // 16 writers at once: the rate a fleet of training jobs sees.
    group.throughput(Throughput::Elements(16));
    group.bench_function("create_version_16_concurrent", |b| {
        b.to_async(&rt).iter(|| async {
            let tasks: Vec<_> = (0..16)
                .map(|_| {
                    let (db, new, change) = (db.clone(), new.clone(), change.clone());
                    tokio::spawn(async move { db.create_version("fleet", new, &change).await })
                })
                .collect();
            for t in tasks {
                t.await.expect("task").expect("create");
            }
        })
    });
    group.finish();
}

/// A valid safetensors file of `bytes` bytes of weights.
fn big_safetensors(path: &Path, bytes: usize) {
    let n = bytes / 4;
    let header = format!(
        r#"{{"w":{{"dtype":"F32","shape":[{n}],"data_offsets":[0,{}]}}}}"#,
        n * 4
    );
    let mut f = std::io::BufWriter::new(std::fs::File::create(path).expect("create"));
    f.write_all(&(header.len() as u64).to_le_bytes())
        .expect("write");
    f.write_all(header.as_bytes()).expect("write");
    let block: Vec<u8> = (0..1 << 20).map(|i| (i * 31 % 251) as u8).collect();
    for _ in 0..bytes / block.len() {
        f.write_all(&block).expect("write");
    }
    f.flush().expect("flush");
}

fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        })
        .unwrap_or(0)
}

fn register_artifact(c: &mut Criterion) {
    const SIZE: usize = 1 << 30;
    let rt = rt();
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("temp dir");
    let model = dir.path().join("big.safetensors");
    big_safetensors(&model, SIZE);
    let registry = rt
        .block_on(Registry::open(dir.path().join("registry")))
        .expect("open");
    let change = Change::by("bench");

    let mut group = c.benchmark_group(format!("{DEVICE}/registry/local"));
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(40));
    group.throughput(Throughput::Bytes(SIZE as u64));
    // Resetting the peak (Linux's clear_refs) lets the bench report this phase alone.
    let _ = std::fs::write("/proc/self/clear_refs", "5");
    let before = peak_rss_kib();
    group.bench_function("register_1gib", |b| {
        b.to_async(&rt).iter(|| async {
            let v = registry
                .register("big", &model, NewVersion::new(), &change)
                .await
                .expect("register");
            // Keep the disk from filling: the next sample writes a fresh version.
            registry
                .delete_version("big", v.version, &change)
                .await
                .expect("delete");
        })
    });
    group.finish();
    eprintln!(
        "{DEVICE}/registry/local/register_1gib: peak RSS grew by {} MiB while registering",
        peak_rss_kib().saturating_sub(before) / 1024
    );
}

criterion_group!(benches, resolve, register_metadata, register_artifact);
criterion_main!(benches);
