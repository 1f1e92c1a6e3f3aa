//! The resource monitor against real processes: busy loops, process trees, a sleeper.

use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant};

use mlops_core::profile::ResourceSummary;
use mlops_profile::monitor::{
    GpuMonitor, GpuSample, MonitorConfig, Sampler, host_info, open_gpu, procfs::ProcessTree,
};

/// The tests that burn CPU run one at a time: on a two-core machine two busy loops at once
/// would each read well under a core.
static CPU: Mutex<()> = Mutex::new(());

fn cpu_lock() -> MutexGuard<'static, ()> {
    CPU.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A shell command in its own process group; dropping it kills the whole group (its
/// children too) and reaps the shell.
struct Spawned {
    child: Child,
    spawned_at: Instant,
    /// Reaped already (by `wait4`).
    reaped: bool,
}

impl Spawned {
    fn sh(script: &str) -> Spawned {
        let child = Command::new("sh")
            .args(["-c", script])
            .stdin(Stdio::null())
            .process_group(0)
            .spawn()
            .expect("sh starts");
        Spawned {
            child,
            spawned_at: Instant::now(),
            reaped: false,
        }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The shell's pid as the C library types it (pids are below 2^22 on Linux).
    fn raw_pid(&self) -> libc::pid_t {
        libc::pid_t::try_from(self.pid()).expect("a pid fits a pid_t")
    }

    fn kill_group(&self) {
        // SAFETY: kill only sends a signal; the group is the one this test started.
        unsafe { libc::kill(-self.raw_pid(), libc::SIGKILL) };
    }

    /// Kills the group and returns the shell's CPU time over its life, in cores, from the
    /// kernel's own accounting of the reaped child (`wait4`): a figure independent of
    /// `/proc` sampling to check the sampler against.
    fn kill_and_measure(mut self) -> f64 {
        self.kill_group();
        let lifetime = self.spawned_at.elapsed().as_secs_f64();
        let pid = self.raw_pid();
        let mut status = 0;
        // SAFETY: rusage is plain data, written by wait4; the pid is our unreaped child.
        let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
        let reaped = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
        assert_eq!(reaped, pid);
        self.reaped = true;
        let seconds = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
        (seconds(usage.ru_utime) + seconds(usage.ru_stime)) / lifetime
    }
}

impl Drop for Spawned {
    fn drop(&mut self) {
        self.kill_group();
        if !self.reaped {
            let _ = self.child.wait();
        }
    }
}

/// CPUs the host's figure counts (`cpuN` lines of `/proc/stat`).
fn host_cpus() -> f64 {
    let stat = std::fs::read_to_string("/proc/stat").expect("/proc/stat");
    let cpus = stat
        .lines()
        .filter(|l| l.starts_with("cpu") && !l.starts_with("cpu "))
        .count();
    f64::from(u32::try_from(cpus).expect("a few CPUs"))
}

/// Asserts that a busy loop read about one core: between 0.5 and `max` cores. The CPUs
/// here are shared with other builds. While any CPU was left idle the loop could have run
/// on it, so at least half a core is asserted; on a saturated host (a quarter of a CPU
/// idle or less) the loop may get much less than a core, and only a share above zero is
/// asserted, with a note printed.
fn assert_about_one_core(summary: &ResourceSummary, max: f64) {
    let cores = summary.server_cpu_cores_mean;
    assert!(cores <= max, "{summary:?}");
    let idle = host_cpus() - summary.host_cpu_cores_mean;
    if idle > 0.25 {
        assert!(cores >= 0.5, "{summary:?}");
    } else {
        eprintln!("host saturated ({idle:.2} CPUs idle): the loop read {cores:.2} cores");
        assert!(cores > 0.05, "{summary:?}");
    }
}

/// Starts a sampler at 50 ms, watches `pid`, lets it sample for `for_`, and summarises.
fn watch_for(pid: Option<u32>, label: &str, for_: Duration) -> (Sampler, ResourceSummary) {
    let sampler = Sampler::start(MonitorConfig::default().with_interval(Duration::from_millis(50)));
    sampler.watch(pid, label);
    let since = Instant::now();
    thread::sleep(for_);
    let summary = sampler.summary_since(since);
    (sampler, summary)
}

#[test]
fn a_busy_loop_reads_about_one_core() {
    let _cpu = cpu_lock();
    let busy = Spawned::sh("while :; do :; done");
    let (sampler, summary) = watch_for(Some(busy.pid()), "busy", Duration::from_millis(1000));
    // Taken while the loop still runs: the sampler goes on after the kill.
    let samples = sampler.samples();
    let truth = busy.kill_and_measure();

    assert!(summary.samples >= 10, "{summary:?}");
    assert_about_one_core(&summary, 1.3);
    assert!(
        (summary.server_cpu_cores_mean - truth).abs() < 0.25,
        "sampler {} cores, kernel accounting {truth} cores",
        summary.server_cpu_cores_mean
    );
    assert!(summary.server_cpu_cores_max >= summary.server_cpu_cores_mean);
    assert!(summary.server_rss_bytes_max > 0, "{summary:?}");
    // The host is at least as busy as the loop (give or take a tick of each).
    assert!(
        summary.host_cpu_cores_mean >= summary.server_cpu_cores_mean - 0.2,
        "{summary:?}"
    );
    assert_eq!(summary.gpu_utilization_mean, None);
    assert_eq!(summary.gpu_unavailable, None, "no GPU was asked for");

    let last = samples.last().unwrap();
    assert_eq!(last.config, "busy");
    assert!(last.server_rss_bytes > 0);
    assert!(samples.windows(2).all(|w| w[0].t_s < w[1].t_s));
}

#[test]
fn a_grandchild_counts_in_the_tree() {
    let _cpu = cpu_lock();
    let tree = Spawned::sh(r#"sh -c "while :; do :; done" & wait"#);
    let (_sampler, summary) = watch_for(Some(tree.pid()), "tree", Duration::from_millis(800));

    assert!(summary.samples >= 8, "{summary:?}");
    assert_about_one_core(&summary, 1.3);
    assert!(summary.server_rss_bytes_max > 0);
}

#[test]
fn a_child_started_after_watch_counts() {
    let _cpu = cpu_lock();
    // The busy loop starts 300 ms after the tree is first read.
    let tree = Spawned::sh(r#"sleep 0.3; sh -c "while :; do :; done" & wait"#);
    let sampler = Sampler::start(MonitorConfig::default().with_interval(Duration::from_millis(50)));
    sampler.watch(Some(tree.pid()), "late");
    let before = Instant::now();
    thread::sleep(Duration::from_millis(200));
    let quiet = sampler.summary_since(before);
    thread::sleep(Duration::from_millis(300));
    let busy_since = Instant::now();
    thread::sleep(Duration::from_millis(600));
    let busy = sampler.summary_since(busy_since);

    assert!(quiet.server_cpu_cores_mean < 0.2, "{quiet:?}");
    assert_about_one_core(&busy, 1.3);
}

#[test]
fn a_sleeping_child_reads_near_zero() {
    let sleeper = Spawned::sh("sleep 5");
    let (_sampler, summary) = watch_for(Some(sleeper.pid()), "sleep", Duration::from_millis(500));

    assert!(summary.samples >= 4, "{summary:?}");
    assert!(summary.server_cpu_cores_mean < 0.2, "{summary:?}");
    assert!(summary.server_cpu_cores_max < 0.5, "{summary:?}");
    assert!(summary.server_rss_bytes_max > 0, "{summary:?}");
}

#[test]
fn in_process_figures_are_the_current_process() {
    let _cpu = cpu_lock();
    let sampler = Sampler::start(MonitorConfig::default().with_interval(Duration::from_millis(50)));
    sampler.watch(None, "in-process");
    let since = Instant::now();
    // Spin this process for 600 ms.
    let spin = thread::spawn(|| {
        let end = Instant::now() + Duration::from_millis(600);
        let mut n = 0u64;
        while Instant::now() < end {
            n = std::hint::black_box(n.wrapping_add(1));
        }
    });
    spin.join().unwrap();
    let summary = sampler.summary_since(since);

    assert_about_one_core(&summary, 1.5);
    assert!(summary.server_rss_bytes_max > 0);
    assert!(sampler.samples().iter().all(|s| s.config == "in-process"));
}

#[test]
fn an_exited_root_reads_as_an_empty_tree() {
    let mut gone = Command::new("true").spawn().unwrap();
    let pid = gone.id();
    gone.wait().unwrap();
    let mut tree = ProcessTree::new(pid);
    let sample = tree.sample().unwrap();
    assert_eq!(sample.processes, 0);
    assert_eq!(sample.rss_bytes, 0);
    assert_eq!(sample.cpu_cores, Some(0.0));
}

#[test]
fn a_window_without_samples_is_empty() {
    let sampler = Sampler::start(MonitorConfig::default());
    let summary = sampler.summary_since(Instant::now());
    assert_eq!(summary.samples, 0);
    assert_eq!(summary.server_cpu_cores_mean, 0.0);
    assert_eq!(summary.server_rss_bytes_max, 0);
    assert_eq!(summary.gpu_unavailable, None);

    // A window that starts in the future holds nothing either.
    let summary = sampler.summary_since(Instant::now() + Duration::from_secs(60));
    assert_eq!(summary.samples, 0);
}

#[cfg(not(feature = "nvml"))]
#[test]
fn without_nvml_a_gpu_is_unavailable_and_says_why() {
    let error = open_gpu(0).err().unwrap();
    assert!(error.contains("nvml"), "{error}");

    let sampler = Sampler::start(
        MonitorConfig::default()
            .with_interval(Duration::from_millis(20))
            .with_gpu(0),
    );
    let since = Instant::now();
    thread::sleep(Duration::from_millis(150));
    let summary = sampler.summary_since(since);
    assert!(summary.samples > 0);
    assert_eq!(summary.gpu_utilization_mean, None);
    assert_eq!(summary.gpu_memory_bytes_max, None);
    let reason = summary.gpu_unavailable.unwrap();
    assert!(reason.contains("nvml"), "{reason}");
    assert_eq!(sampler.gpu_unavailable(), Some(reason));
}

/// A GPU backend that replays fixed readings, to check how the sampler aggregates them
/// on a machine without a GPU.
struct Replay {
    readings: Vec<Result<GpuSample, String>>,
    next: usize,
}

impl GpuMonitor for Replay {
    fn sample(&mut self) -> Result<GpuSample, String> {
        let reading = self.readings[self.next % self.readings.len()].clone();
        self.next += 1;
        reading
    }

    fn name(&self) -> String {
        "replay".to_owned()
    }
}

#[test]
fn gpu_readings_are_averaged_and_peaked() {
    let reading = |utilization_percent, used_gib: u64, power_watts| {
        Ok(GpuSample {
            utilization_percent,
            memory_used_bytes: used_gib << 30,
            memory_total_bytes: 80 << 30,
            power_watts,
        })
    };
    let gpu = Replay {
        // Power is NaN where a board does not report it: left out of the mean.
        readings: vec![reading(20.0, 2, 100.0), reading(60.0, 6, f64::NAN)],
        next: 0,
    };
    let since = Instant::now();
    let sampler = Sampler::start_with_gpu(
        MonitorConfig::default().with_interval(Duration::from_millis(10)),
        Box::new(gpu),
    );
    thread::sleep(Duration::from_millis(200));
    let samples = sampler.samples();
    let summary = sampler.summary_since(since);

    assert!(samples.len() >= 4, "{samples:?}");
    let utilizations: Vec<f64> = samples.iter().filter_map(|s| s.gpu_utilization).collect();
    let expected = utilizations.iter().sum::<f64>() / utilizations.len() as f64;
    assert_eq!(summary.gpu_utilization_mean, Some(expected));
    assert_eq!(summary.gpu_memory_bytes_max, Some(6 << 30));
    assert_eq!(summary.gpu_power_watts_mean, Some(100.0));
    assert_eq!(summary.gpu_unavailable, None);
    assert!(samples.iter().any(|s| s.gpu_power_watts.is_none()));
}

#[test]
fn a_failing_gpu_reading_is_reported() {
    let gpu = Replay {
        readings: vec![Err("GPU is lost".to_owned())],
        next: 0,
    };
    let sampler = Sampler::start_with_gpu(
        MonitorConfig::default().with_interval(Duration::from_millis(10)),
        Box::new(gpu),
    );
    let since = Instant::now();
    thread::sleep(Duration::from_millis(100));
    let summary = sampler.summary_since(since);
    assert!(summary.samples > 0);
    assert_eq!(summary.gpu_utilization_mean, None);
    assert_eq!(summary.gpu_unavailable.as_deref(), Some("GPU is lost"));
    assert_eq!(sampler.gpu_unavailable().as_deref(), Some("GPU is lost"));
}

#[test]
fn host_info_describes_this_machine() {
    let host = host_info();
    assert!(host.cpu_cores >= 1, "{host:?}");
    assert!(host.memory_bytes > 0, "{host:?}");
    assert!(!host.hostname.is_empty());
    assert_ne!(host.cpu_model, "");
    if host.gpus.is_empty() {
        let reason = host.gpu_unavailable.unwrap();
        #[cfg(not(feature = "nvml"))]
        assert!(reason.contains("nvml"), "{reason}");
        assert!(!reason.is_empty());
    } else {
        assert_eq!(host.gpu_unavailable, None);
    }
}

#[cfg(feature = "nvml")]
#[test]
fn nvml_reads_a_gpu_when_there_is_one() {
    match open_gpu(0) {
        Ok(mut gpu) => {
            let reading = gpu.sample().unwrap();
            assert!(reading.memory_total_bytes > 0);
            assert!(reading.memory_used_bytes <= reading.memory_total_bytes);
            assert!((0.0..=100.0).contains(&reading.utilization_percent));
            assert!(!gpu.name().is_empty());
        }
        // No GPU or driver here: NVML's own words, not the stub's.
        Err(reason) => assert!(!reason.contains("not compiled"), "{reason}"),
    }
}
