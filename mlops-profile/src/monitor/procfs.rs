//! CPU and memory figures from Linux's `/proc`: a process tree's ([`ProcessTree`]) and the
//! whole host's ([`HostCpu`]).
//!
//! Always compiled. The workspace's style prefers the `procfs` crate for this; this crate
//! depends on `libc` only, and the four files read here (`/proc/<pid>/stat`,
//! `/proc/<pid>/statm`, `/proc/stat` and the `/proc` listing) are simple enough to parse by
//! hand. Nothing here panics on a missing or odd entry: a process that vanished or whose
//! files do not parse is skipped.

use std::collections::{HashMap, HashSet};
use std::fs;
use std::io;
use std::time::{Duration, Instant};

/// Clock ticks per second, the unit of the CPU times in `/proc/<pid>/stat` and `/proc/stat`.
pub fn clock_ticks_per_second() -> u64 {
    // SAFETY: sysconf only reads a system constant.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    // Linux has reported 100 (USER_HZ) on every architecture for decades.
    u64::try_from(ticks).ok().filter(|&t| t > 0).unwrap_or(100)
}

/// The size of a memory page in bytes, the unit of `/proc/<pid>/statm`.
pub fn page_size() -> u64 {
    // SAFETY: sysconf only reads a system constant.
    let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    u64::try_from(size).ok().filter(|&s| s > 0).unwrap_or(4096)
}

/// What one [`ProcessTree::sample`] saw.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct ProcSample {
    /// CPU cores the tree used since the previous reading (1.0 = one core busy the whole
    /// time); `None` when there was no previous reading to compare with.
    pub cpu_cores: Option<f64>,
    /// Resident memory of every process in the tree, summed, in bytes. Pages shared
    /// between processes (the executable, shared libraries) count once per process.
    pub rss_bytes: u64,
    /// Processes in the tree when it was read (0 when the root has exited).
    pub processes: usize,
}

/// One process's line of `/proc/<pid>/stat`, the fields used here.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Stat {
    ppid: u32,
    /// User plus system CPU time, in clock ticks.
    cpu_ticks: u64,
    /// When it started, in clock ticks since boot: with the pid, names a process even
    /// after its pid is reused.
    start: u64,
}

/// Parses `/proc/<pid>/stat`. The command name (field 2) is in parentheses and may hold
/// spaces and parentheses itself, so fields are counted from the last `)`.
fn parse_stat(text: &str) -> Option<Stat> {
    let rest = &text[text.rfind(')')? + 1..];
    let mut fields = rest.split_ascii_whitespace();
    // Fields 3 (state) onwards: ppid is field 4, utime 14, stime 15, starttime 22.
    let ppid = fields.nth(1)?.parse().ok()?;
    let utime: u64 = fields.nth(9)?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    let start = fields.nth(6)?.parse().ok()?;
    Some(Stat {
        ppid,
        cpu_ticks: utime.saturating_add(stime),
        start,
    })
}

fn read_stat(pid: u32) -> Option<Stat> {
    parse_stat(&fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

/// Resident pages from `/proc/<pid>/statm` (its second field).
fn read_resident_pages(pid: u32) -> Option<u64> {
    let text = fs::read_to_string(format!("/proc/{pid}/statm")).ok()?;
    text.split_ascii_whitespace().nth(1)?.parse().ok()
}

/// Every process's stat, by pid, from one pass over `/proc`.
fn scan_all() -> io::Result<HashMap<u32, Stat>> {
    let mut all = HashMap::new();
    for entry in fs::read_dir("/proc")? {
        // An entry that vanished while listing is skipped like one that vanished after.
        let Ok(entry) = entry else { continue };
        let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse().ok()) else {
            continue;
        };
        if let Some(stat) = read_stat(pid) {
            all.insert(pid, stat);
        }
    }
    Ok(all)
}

/// The pids of `root` and all its descendants, through the ppid links of `all`.
fn descendants(root: u32, all: &HashMap<u32, Stat>) -> Vec<u32> {
    if !all.contains_key(&root) {
        return Vec::new();
    }
    let mut children: HashMap<u32, Vec<u32>> = HashMap::new();
    for (&pid, stat) in all {
        // pid 0's "children" (init, kthreadd) would loop back to the root otherwise.
        if pid != stat.ppid {
            children.entry(stat.ppid).or_default().push(pid);
        }
    }
    // `/proc` is not read atomically: with pids reused mid-scan the links could form a
    // cycle, so each pid is taken once.
    let mut seen = HashSet::from([root]);
    let mut tree = vec![root];
    let mut next = 0;
    while let Some(&pid) = tree.get(next) {
        if let Some(kids) = children.get(&pid) {
            for &kid in kids {
                if seen.insert(kid) {
                    tree.push(kid);
                }
            }
        }
        next += 1;
    }
    tree
}

/// CPU and memory use of a process and, optionally, all its descendants.
///
/// The tree is found again at every [`sample`](Self::sample) by scanning `/proc` for ppid
/// links, so children started later count from their first tick. CPU use is the growth of
/// each process's user plus system time (`/proc/<pid>/stat`) divided by the wall time
/// between readings. A process that exits between two readings takes its last
/// interval's CPU time with it (its parent's `cutime` is not counted, to count nothing
/// twice), so a tree of short-lived processes reads a little low.
///
/// ```
/// use mlops_profile::monitor::procfs::ProcessTree;
///
/// let mut me = ProcessTree::single(std::process::id());
/// let sample = me.sample()?;
/// assert_eq!(sample.processes, 1);
/// assert!(sample.rss_bytes > 0);
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Debug)]
pub struct ProcessTree {
    root: u32,
    with_descendants: bool,
    /// CPU ticks by pid at the previous reading, with each process's start time. With
    /// descendants, every process on the host is kept, so a process that joins the tree
    /// (reparented to a subreaper in it) counts only from then.
    previous: HashMap<u32, (u64, u64)>,
    previous_at: Option<Instant>,
    ticks_per_second: f64,
    page_size: u64,
}

impl ProcessTree {
    /// Watches `root` and all its descendants, taking the first reading now.
    pub fn new(root: u32) -> Self {
        Self::build(root, true)
    }

    /// Watches the process `pid` alone (all its threads), not its children.
    pub fn single(pid: u32) -> Self {
        Self::build(pid, false)
    }

    fn build(root: u32, with_descendants: bool) -> Self {
        let mut tree = ProcessTree {
            root,
            with_descendants,
            previous: HashMap::new(),
            previous_at: None,
            // Tick rates are small integers: the conversion is exact.
            ticks_per_second: clock_ticks_per_second() as f64,
            page_size: page_size(),
        };
        // A failed first reading leaves nothing to compare with: the next sample reports
        // no CPU figure and becomes the first reading.
        if let Err(error) = tree.sample() {
            tracing::warn!(pid = root, %error, "cannot read /proc for the process tree");
        }
        tree
    }

    /// The root process's pid.
    pub fn root(&self) -> u32 {
        self.root
    }

    /// Reads the tree: CPU cores used since the previous reading and resident memory now.
    ///
    /// A root that has exited reads as an empty tree, not an error; the error is for
    /// `/proc` itself being unreadable.
    pub fn sample(&mut self) -> io::Result<ProcSample> {
        let (stats, now) = if self.with_descendants {
            let all = scan_all()?;
            let now = Instant::now();
            (all, now)
        } else {
            let mut one = HashMap::new();
            if let Some(stat) = read_stat(self.root) {
                one.insert(self.root, stat);
            } else if !fs::exists("/proc/self/stat")? {
                return Err(io::Error::new(
                    io::ErrorKind::NotFound,
                    "/proc is not mounted",
                ));
            }
            (one, Instant::now())
        };
        let members = if self.with_descendants {
            descendants(self.root, &stats)
        } else {
            stats.keys().copied().collect()
        };

        let mut ticks = 0u64;
        let mut pages = 0u64;
        for &pid in &members {
            let Some(stat) = stats.get(&pid) else {
                continue;
            };
            // A process not seen before (or a new process under a reused pid) started
            // after the previous reading: all its ticks are new.
            let before = match self.previous.get(&pid) {
                Some(&(start, before)) if start == stat.start => before,
                _ => 0,
            };
            ticks = ticks.saturating_add(stat.cpu_ticks.saturating_sub(before));
            pages = pages.saturating_add(read_resident_pages(pid).unwrap_or(0));
        }

        let cpu_cores = self.previous_at.map(|at| {
            let elapsed = now.duration_since(at).max(Duration::from_micros(1));
            // Tick counts stay far below 2^52: the conversion is exact.
            ticks as f64 / self.ticks_per_second / elapsed.as_secs_f64()
        });
        self.previous = stats
            .into_iter()
            .map(|(pid, stat)| (pid, (stat.start, stat.cpu_ticks)))
            .collect();
        self.previous_at = Some(now);
        Ok(ProcSample {
            cpu_cores,
            rss_bytes: pages.saturating_mul(self.page_size),
            processes: members.len(),
        })
    }
}

/// The host's CPU times from the first line of `/proc/stat`, in clock ticks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct CpuTimes {
    busy: u64,
    total: u64,
    /// Online CPUs (`cpuN` lines).
    cpus: usize,
}

fn parse_proc_stat(text: &str) -> Option<CpuTimes> {
    let mut lines = text.lines();
    let first = lines.next()?;
    let mut fields = first.split_ascii_whitespace();
    if fields.next()? != "cpu" {
        return None;
    }
    // user nice system idle iowait irq softirq steal; guest time is already in user and
    // nice. Idle, I/O wait and time stolen by the hypervisor are not this host's work.
    let values: Vec<u64> = fields.take(8).map_while(|f| f.parse().ok()).collect();
    if values.len() < 4 {
        return None;
    }
    let total = values.iter().fold(0u64, |sum, &v| sum.saturating_add(v));
    let get = |i: usize| values.get(i).copied().unwrap_or(0);
    let not_busy = get(3).saturating_add(get(4)).saturating_add(get(7));
    let cpus = lines
        .filter(|l| {
            l.strip_prefix("cpu")
                .is_some_and(|rest| rest.starts_with(|c: char| c.is_ascii_digit()))
        })
        .count();
    Some(CpuTimes {
        busy: total.saturating_sub(not_busy),
        total,
        cpus: cpus.max(1),
    })
}

fn read_cpu_times() -> io::Result<CpuTimes> {
    let text = fs::read_to_string("/proc/stat")?;
    parse_proc_stat(&text).ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            "/proc/stat has no aggregate `cpu` line",
        )
    })
}

/// The whole host's CPU use, from `/proc/stat`: everything that ran, not only the server.
///
/// In a container `/proc/stat` is usually the host's, not the container's: the figure is
/// the machine's.
///
/// ```
/// use mlops_profile::monitor::procfs::HostCpu;
///
/// let mut host = HostCpu::new();
/// std::thread::sleep(std::time::Duration::from_millis(20));
/// let busy = host.sample()?.unwrap_or(0.0);
/// assert!(busy >= 0.0);
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Debug)]
pub struct HostCpu {
    previous: Option<CpuTimes>,
}

impl HostCpu {
    /// Takes the first reading now.
    pub fn new() -> Self {
        let previous = match read_cpu_times() {
            Ok(times) => Some(times),
            Err(error) => {
                tracing::warn!(%error, "cannot read /proc/stat");
                None
            }
        };
        HostCpu { previous }
    }

    /// CPU cores busy since the previous reading: the busy share of all CPU time times the
    /// number of online CPUs. `None` when there was no previous reading to compare with.
    pub fn sample(&mut self) -> io::Result<Option<f64>> {
        let now = read_cpu_times()?;
        let Some(before) = self.previous else {
            self.previous = Some(now);
            return Ok(None);
        };
        if now.total == before.total {
            // No tick yet in a very short interval: nothing measured (not idle). The older
            // reading stays, to measure a longer interval next time.
            return Ok(None);
        }
        self.previous = Some(now);
        // Counters that went backwards (a snapshot restored) measure nothing either.
        let Some(total) = now.total.checked_sub(before.total) else {
            return Ok(None);
        };
        let busy = now.busy.saturating_sub(before.busy).min(total);
        // Tick counts stay far below 2^52: the conversions are exact.
        Ok(Some(busy as f64 / total as f64 * now.cpus as f64))
    }
}

impl Default for HostCpu {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_are_counted_from_the_last_parenthesis() {
        let line = "4242 (a (weird) name) S 17 4242 17 0 -1 4194560 150 0 0 0 \
                    31 12 0 0 20 0 1 0 987654 10485760 300 18446744073709551615";
        assert_eq!(
            parse_stat(line),
            Some(Stat {
                ppid: 17,
                cpu_ticks: 43,
                start: 987654
            })
        );
        assert_eq!(parse_stat("4242 (truncated) S 17"), None);
        assert_eq!(parse_stat("garbage"), None);
    }

    #[test]
    fn descendants_follow_ppid_links() {
        let stat = |ppid| Stat {
            ppid,
            cpu_ticks: 0,
            start: 0,
        };
        let all: HashMap<u32, Stat> = [
            (1, stat(0)),
            (10, stat(1)),
            (11, stat(10)),
            (12, stat(11)),
            (13, stat(1)),
        ]
        .into_iter()
        .collect();
        let mut tree = descendants(10, &all);
        tree.sort_unstable();
        assert_eq!(tree, vec![10, 11, 12]);
        assert_eq!(descendants(99, &all), Vec::<u32>::new());
    }

    #[test]
    fn proc_stat_busy_excludes_idle_iowait_and_steal() {
        let text = "cpu  100 5 20 800 30 1 2 40 7 0\ncpu0 50 0 10 400 15 0 1 20 0 0\n\
                    cpu1 50 5 10 400 15 1 1 20 7 0\nintr 0\n";
        assert_eq!(
            parse_proc_stat(text),
            Some(CpuTimes {
                busy: 128,
                total: 998,
                cpus: 2
            })
        );
        assert_eq!(parse_proc_stat("intr 0\n"), None);
    }
}
