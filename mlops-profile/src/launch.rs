//! Starting an inference server as a child process under a resource budget, and always
//! tearing it down.
//!
//! The budget:
//! - **CPU cores** by affinity (`sched_setaffinity` before `exec`), so the server and its
//!   thread pools see only those cores;
//! - **intra-op threads**, handed to the server's command line;
//! - **memory**: a cgroup v2 `memory.max` where `/sys/fs/cgroup` is writable, else
//!   `RLIMIT_AS` (which counts address space, not resident memory: give it room);
//! - **a GPU** (`CUDA_VISIBLE_DEVICES`) and **a share of it** under MPS
//!   (`CUDA_MPS_ACTIVE_THREAD_PERCENTAGE`, `CUDA_MPS_PINNED_DEVICE_MEM_LIMIT`).
//!
//! No server outlives the profiler: the child gets its own process group and
//! `PR_SET_PDEATHSIG(SIGKILL)`, so it dies with the profiler even on `kill -9`; dropping a
//! [`ServerProcess`] (on success, error or panic) sends `SIGTERM` to the group, then
//! `SIGKILL` after a grace period, and removes its cgroup.

use std::ffi::CString;
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use http_body_util::Empty;
use hyper_util::client::legacy::Client as HyperClient;
use hyper_util::rt::TokioExecutor;
use mlops_core::profile::{ComputeDevice, ServingConfig};

use crate::error::{Error, Result};

/// The hardware a launched server may use.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Budget {
    /// CPU ids the server is pinned to; all when `None`.
    pub cpus: Option<Vec<usize>>,
    /// Threads one inference may use.
    pub intra_op_threads: Option<usize>,
    /// A memory limit in bytes.
    pub memory_limit_bytes: Option<u64>,
    /// The GPU it may see.
    pub gpu: Option<u32>,
    /// Its share of the GPU's threads under MPS, 0 to 1.
    pub gpu_fraction: Option<f64>,
    /// GPU memory it may pin under MPS, in bytes.
    pub gpu_memory_bytes: Option<u64>,
}

impl Budget {
    /// The budget a configuration asks for: its first `cpu_cores` of the CPUs this process
    /// may use, its threads, its GPU and share.
    pub fn for_config(config: &ServingConfig) -> Result<Budget> {
        let available = allowed_cpus();
        let want = config.cpu_cores as usize;
        if want == 0 {
            return Err(Error::Config(
                "a configuration needs at least one CPU core".into(),
            ));
        }
        if want > available.len() {
            return Err(Error::Config(format!(
                "{want} CPU cores asked for, {} available to this process",
                available.len()
            )));
        }
        let gpu = match config.device {
            ComputeDevice::Gpu { index } => Some(index),
            ComputeDevice::Cpu => None,
        };
        Ok(Budget {
            cpus: Some(available[..want].to_vec()),
            intra_op_threads: Some(config.intra_op_threads),
            memory_limit_bytes: None,
            gpu,
            gpu_fraction: gpu.and(config.gpu_fraction),
            gpu_memory_bytes: gpu.and(config.gpu_memory_bytes),
        })
    }

    /// Sets a memory limit.
    pub fn with_memory_limit(mut self, bytes: u64) -> Self {
        self.memory_limit_bytes = Some(bytes);
        self
    }

    /// The environment the budget sets for the child.
    pub fn environment(&self) -> Vec<(String, String)> {
        let mut env = Vec::new();
        if let Some(t) = self.intra_op_threads {
            env.push(("OMP_NUM_THREADS".to_owned(), t.to_string()));
        }
        // NVML counts GPUs in PCI bus order; CUDA's default order may differ.
        env.push(("CUDA_DEVICE_ORDER".to_owned(), "PCI_BUS_ID".to_owned()));
        match self.gpu {
            Some(index) => env.push(("CUDA_VISIBLE_DEVICES".to_owned(), index.to_string())),
            None => env.push(("CUDA_VISIBLE_DEVICES".to_owned(), String::new())),
        }
        if let Some(f) = self.gpu_fraction {
            let percent = (f * 100.0).round().clamp(1.0, 100.0) as u32;
            env.push((
                "CUDA_MPS_ACTIVE_THREAD_PERCENTAGE".to_owned(),
                percent.to_string(),
            ));
        }
        if let Some(bytes) = self.gpu_memory_bytes {
            // The visible GPU is device 0 inside the child.
            env.push((
                "CUDA_MPS_PINNED_DEVICE_MEM_LIMIT".to_owned(),
                format!("0={}M", bytes.div_ceil(1 << 20)),
            ));
        }
        env
    }
}

/// The CPU ids this process may run on.
pub fn allowed_cpus() -> Vec<usize> {
    // SAFETY: a zeroed cpu_set_t is a valid empty set; sched_getaffinity fills it.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: pid 0 is this thread; the size matches the set.
    let rc =
        unsafe { libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) };
    if rc != 0 {
        let n = std::thread::available_parallelism().map_or(1, usize::from);
        return (0..n).collect();
    }
    // SAFETY: CPU_ISSET reads the set we own.
    (0..libc::CPU_SETSIZE as usize)
        .filter(|&cpu| unsafe { libc::CPU_ISSET(cpu, &set) })
        .collect()
}

/// How to start a server: a program, arguments and a readiness URL, with placeholders
/// filled for each configuration:
///
/// `{http_port}`, `{grpc_port}`, `{model}` (path), `{name}`, `{threads}`, `{instances}`,
/// `{max_batch}`, `{queue_delay_us}`, `{device}` (`cpu`, `cuda:0`), `{cores}`.
///
/// [`ServerCommand::ours`] starts this crate's own server; any other (Triton's
/// `tritonserver`, say) is described with [`ServerCommand::new`].
#[derive(Clone, Debug, PartialEq)]
pub struct ServerCommand {
    /// The program.
    pub program: PathBuf,
    /// Its arguments, with placeholders.
    pub args: Vec<String>,
    /// Extra environment.
    pub env: Vec<(String, String)>,
    /// The URL that answers 200 once the server is ready, with placeholders.
    pub ready_url: String,
    /// How long it may take to get ready.
    pub ready_timeout: Duration,
    /// How long it has to exit after `SIGTERM` before `SIGKILL`.
    pub grace: Duration,
}

/// The first argument that makes a program run [`crate::server::child_main`]'s server.
pub const SERVE_FLAG: &str = "--mlops-profile-serve";

impl ServerCommand {
    /// Any server: `program args…`, ready when `ready_url` answers 200.
    pub fn new(
        program: impl Into<PathBuf>,
        args: Vec<String>,
        ready_url: impl Into<String>,
    ) -> Self {
        ServerCommand {
            program: program.into(),
            args,
            env: Vec::new(),
            ready_url: ready_url.into(),
            ready_timeout: Duration::from_secs(60),
            grace: Duration::from_secs(3),
        }
    }

    /// This crate's server in `program`, a binary that calls
    /// [`crate::server::child_main`] first thing in `main` (the `profile` example does, as
    /// does the `mlops-profile-server` binary).
    pub fn ours(program: impl Into<PathBuf>) -> Self {
        let args = [
            SERVE_FLAG,
            "--model",
            "{model}",
            "--name",
            "{name}",
            "--http",
            "127.0.0.1:{http_port}",
            "--grpc",
            "127.0.0.1:{grpc_port}",
            "--threads",
            "{threads}",
            "--instances",
            "{instances}",
            "--max-batch",
            "{max_batch}",
            "--queue-delay-us",
            "{queue_delay_us}",
            "--device",
            "{device}",
            "--cores",
            "{cores}",
        ]
        .map(str::to_owned)
        .to_vec();
        ServerCommand::new(
            program,
            args,
            "http://127.0.0.1:{http_port}/v2/health/ready",
        )
    }

    /// This crate's server in the running program (see [`ours`](Self::ours)).
    pub fn current_exe() -> Result<Self> {
        let exe = std::env::current_exe().map_err(|e| Error::io("finding this program", e))?;
        Ok(ServerCommand::ours(exe))
    }

    /// Adds an environment variable.
    pub fn with_env(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.env.push((key.into(), value.into()));
        self
    }

    /// Sets how long the server may take to become ready.
    pub fn with_ready_timeout(mut self, timeout: Duration) -> Self {
        self.ready_timeout = timeout;
        self
    }

    fn fill(&self, text: &str, v: &Placeholders<'_>) -> String {
        text.replace("{http_port}", &v.http_port.to_string())
            .replace("{grpc_port}", &v.grpc_port.to_string())
            .replace("{model}", &v.model.display().to_string())
            .replace("{name}", v.name)
            .replace("{threads}", &v.config.intra_op_threads.to_string())
            .replace("{instances}", &v.config.instances.to_string())
            .replace("{max_batch}", &v.config.max_batch_size.to_string())
            .replace("{queue_delay_us}", &v.config.max_queue_delay_us.to_string())
            .replace("{cores}", &v.config.cpu_cores.to_string())
            .replace(
                "{device}",
                &match v.config.device {
                    // Inside the child the one visible GPU is ordinal 0.
                    ComputeDevice::Gpu { .. } => "cuda:0".to_owned(),
                    ComputeDevice::Cpu => "cpu".to_owned(),
                },
            )
    }
}

struct Placeholders<'a> {
    http_port: u16,
    grpc_port: u16,
    model: &'a Path,
    name: &'a str,
    config: &'a ServingConfig,
}

/// Two free TCP ports on 127.0.0.1: both bound at once (so they differ), then released for
/// the child to take.
fn free_ports() -> Result<(u16, u16)> {
    let bind = || {
        std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| Error::io("finding a free port", e))
    };
    let (a, b) = (bind()?, bind()?);
    let port = |l: &std::net::TcpListener| {
        l.local_addr()
            .map(|a| a.port())
            .map_err(|e| Error::io("finding a free port", e))
    };
    Ok((port(&a)?, port(&b)?))
}

static LAUNCHES: AtomicU64 = AtomicU64::new(0);

/// A cgroup v2 directory for one child, when this host lets us make one.
fn make_cgroup(limit: u64) -> Option<PathBuf> {
    let root = Path::new("/sys/fs/cgroup");
    if !root.join("cgroup.controllers").is_file() {
        return None;
    }
    let controllers = std::fs::read_to_string(root.join("cgroup.subtree_control")).ok()?;
    if !controllers.split_whitespace().any(|c| c == "memory") {
        return None;
    }
    let dir = root.join(format!(
        "mlops-profile-{}-{}",
        std::process::id(),
        LAUNCHES.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir(&dir).ok()?;
    if std::fs::write(dir.join("memory.max"), limit.to_string()).is_err() {
        let _ = std::fs::remove_dir(&dir);
        return None;
    }
    Some(dir)
}

#[derive(Default)]
struct ChildState {
    exited: Option<String>,
}

/// A running server under a budget. Dropping it stops the server's whole process group.
pub struct ServerProcess {
    pid: u32,
    http_port: u16,
    grpc_port: u16,
    command_line: String,
    state: Arc<Mutex<ChildState>>,
    waiter: Option<std::thread::JoinHandle<()>>,
    cgroup: Option<PathBuf>,
    log: PathBuf,
    grace: Duration,
    memory_limit: String,
}

impl ServerProcess {
    /// Starts `command` for `config` serving the model at `model` as `name`, under
    /// `budget`, and waits until it is ready. A server that exits or never gets ready is
    /// stopped, and the error carries the end of its output.
    pub async fn launch(
        command: &ServerCommand,
        budget: &Budget,
        config: &ServingConfig,
        model: &Path,
        name: &str,
    ) -> Result<ServerProcess> {
        let (http_port, grpc_port) = free_ports()?;
        let values = Placeholders {
            http_port,
            grpc_port,
            model,
            name,
            config,
        };
        let args: Vec<String> = command
            .args
            .iter()
            .map(|a| command.fill(a, &values))
            .collect();
        let ready_url = command.fill(&command.ready_url, &values);
        let command_line = format!("{} {}", command.program.display(), args.join(" "));
        // A new file only, never one (or a link) that was there before: a name left by an
        // earlier process with the same pid is skipped.
        let (log, log_file) = {
            let mut attempt = 0;
            loop {
                let n = LAUNCHES.fetch_add(1, Ordering::Relaxed);
                let log = std::env::temp_dir()
                    .join(format!("mlops-profile-{}-{n}.log", std::process::id()));
                match std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .open(&log)
                {
                    Ok(f) => break (log, f),
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && attempt < 16 => {
                        attempt += 1;
                    }
                    Err(e) => return Err(Error::io(format!("creating {}", log.display()), e)),
                }
            }
        };
        let log_err = log_file
            .try_clone()
            .map_err(|e| Error::io("duplicating the log file", e))?;

        let cgroup = budget.memory_limit_bytes.and_then(make_cgroup);
        let memory_limit = match (budget.memory_limit_bytes, &cgroup) {
            (None, _) => "none".to_owned(),
            (Some(b), Some(_)) => format!("cgroup memory.max {b}"),
            (Some(b), None) => format!("RLIMIT_AS {b}"),
        };
        let mut cmd = Command::new(&command.program);
        cmd.args(&args)
            .stdin(Stdio::null())
            .stdout(Stdio::from(log_file))
            .stderr(Stdio::from(log_err));
        for (k, v) in budget
            .environment()
            .into_iter()
            .chain(command.env.iter().cloned())
        {
            cmd.env(k, v);
        }
        let cpus = budget.cpus.clone();
        // Checked before the fork: CPU_SET must not be handed an id beyond the set.
        if let Some(bad) = cpus
            .iter()
            .flatten()
            .find(|&&c| c >= libc::CPU_SETSIZE as usize)
        {
            return Err(Error::Config(format!(
                "CPU {bad} is beyond what an affinity mask holds"
            )));
        }
        let rlimit = if cgroup.is_none() {
            budget.memory_limit_bytes
        } else {
            None
        };
        let procs = cgroup
            .as_ref()
            .and_then(|d| CString::new(d.join("cgroup.procs").as_os_str().as_encoded_bytes()).ok());
        // SAFETY: the closure runs between fork and exec; it only makes system calls
        // (setpgid, prctl, sched_setaffinity, setrlimit, open/write/close) on values
        // prepared before the fork, and allocates nothing.
        unsafe {
            cmd.pre_exec(move || {
                if libc::setpgid(0, 0) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                if let Some(cpus) = &cpus {
                    let mut set: libc::cpu_set_t = std::mem::zeroed();
                    for &c in cpus {
                        libc::CPU_SET(c, &mut set);
                    }
                    if libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) != 0
                    {
                        return Err(std::io::Error::last_os_error());
                    }
                }
                if let Some(bytes) = rlimit {
                    let limit = libc::rlimit {
                        rlim_cur: bytes as libc::rlim_t,
                        rlim_max: bytes as libc::rlim_t,
                    };
                    if libc::setrlimit(libc::RLIMIT_AS, &limit) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                }
                if let Some(path) = &procs {
                    // Writing 0 moves the writer, this child, into the cgroup.
                    let fd = libc::open(path.as_ptr(), libc::O_WRONLY);
                    if fd < 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    let wrote = libc::write(fd, b"0".as_ptr().cast(), 1);
                    libc::close(fd);
                    if wrote != 1 {
                        return Err(std::io::Error::last_os_error());
                    }
                }
                Ok(())
            });
        }

        // PR_SET_PDEATHSIG fires when the *thread* that forked exits, so the child is
        // started from a thread that lives exactly as long as it does.
        let state = Arc::new(Mutex::new(ChildState::default()));
        let (tx, rx) = std::sync::mpsc::channel();
        let st = state.clone();
        let waiter = std::thread::Builder::new()
            .name("mlops-profile-child".into())
            .spawn(move || match cmd.spawn() {
                Ok(mut child) => {
                    let _ = tx.send(Ok(child.id()));
                    let status = child.wait();
                    st.lock().unwrap_or_else(|p| p.into_inner()).exited = Some(match status {
                        Ok(s) => s.to_string(),
                        Err(e) => format!("wait failed: {e}"),
                    });
                }
                Err(e) => {
                    let _ = tx.send(Err(e));
                }
            })
            .map_err(|e| Error::io("starting the launcher thread", e))?;
        let pid = match rx.recv() {
            Ok(Ok(pid)) => pid,
            Ok(Err(e)) => {
                let _ = waiter.join();
                if let Some(d) = &cgroup {
                    let _ = std::fs::remove_dir(d);
                }
                return Err(Error::Launch {
                    command: command_line,
                    reason: e.to_string(),
                });
            }
            Err(_) => {
                return Err(Error::Launch {
                    command: command_line,
                    reason: "the launcher thread died".into(),
                });
            }
        };
        let process = ServerProcess {
            pid,
            http_port: values.http_port,
            grpc_port: values.grpc_port,
            command_line,
            state,
            waiter: Some(waiter),
            cgroup,
            log,
            grace: command.grace,
            memory_limit,
        };
        process
            .wait_ready(&ready_url, command.ready_timeout)
            .await?;
        Ok(process)
    }

    async fn wait_ready(&self, url: &str, timeout: Duration) -> Result<()> {
        let uri: hyper::Uri = url.parse().map_err(|e| Error::Launch {
            command: self.command_line.clone(),
            reason: format!("readiness URL {url}: {e}"),
        })?;
        let client: HyperClient<_, Empty<bytes::Bytes>> =
            HyperClient::builder(TokioExecutor::new()).build_http();
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.exit_status() {
                return Err(Error::Launch {
                    command: self.command_line.clone(),
                    reason: format!(
                        "exited ({status}) before it was ready; its output ends:\n{}",
                        self.log_tail(2000)
                    ),
                });
            }
            let probe = tokio::time::timeout(Duration::from_secs(1), client.get(uri.clone())).await;
            if let Ok(Ok(r)) = probe
                && r.status().is_success()
            {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(Error::Launch {
                    command: self.command_line.clone(),
                    reason: format!(
                        "not ready at {url} after {:.0} s; its output ends:\n{}",
                        timeout.as_secs_f64(),
                        self.log_tail(2000)
                    ),
                });
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The server's process id (its process group's too).
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Its HTTP base URL (`http://127.0.0.1:PORT`).
    pub fn http_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.http_port)
    }

    /// Its gRPC address (`http://127.0.0.1:PORT`).
    pub fn grpc_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.grpc_port)
    }

    /// The HTTP port.
    pub fn http_port(&self) -> u16 {
        self.http_port
    }

    /// The command line it was started with.
    pub fn command_line(&self) -> &str {
        &self.command_line
    }

    /// How its memory is limited: `none`, `cgroup memory.max N` or `RLIMIT_AS N`.
    pub fn memory_limit(&self) -> &str {
        &self.memory_limit
    }

    /// How it exited, if it has.
    pub fn exit_status(&self) -> Option<String> {
        self.state
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .exited
            .clone()
    }

    /// The last `bytes` of its output.
    pub fn log_tail(&self, bytes: u64) -> String {
        let Ok(mut f) = std::fs::File::open(&self.log) else {
            return String::new();
        };
        let len = f.metadata().map(|m| m.len()).unwrap_or(0);
        let _ = f.seek(SeekFrom::Start(len.saturating_sub(bytes)));
        let mut out = Vec::new();
        let _ = f.read_to_end(&mut out);
        String::from_utf8_lossy(&out).into_owned()
    }

    /// Stops the server: `SIGTERM` to its process group, `SIGKILL` after the grace period,
    /// and waits for it.
    pub fn stop(mut self) -> Option<String> {
        self.terminate();
        self.exit_status()
    }

    fn terminate(&mut self) {
        let Ok(pgid) = i32::try_from(self.pid) else {
            return;
        };
        if self.exit_status().is_none() {
            // SAFETY: signalling our own child's process group.
            unsafe { libc::kill(-pgid, libc::SIGTERM) };
            let deadline = Instant::now() + self.grace;
            while self.exit_status().is_none() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        // Whatever is left of the group (the leader, or children it started).
        // SAFETY: as above.
        unsafe { libc::kill(-pgid, libc::SIGKILL) };
        if let Some(w) = self.waiter.take() {
            let _ = w.join();
        }
        if let Some(dir) = self.cgroup.take() {
            let _ = std::fs::remove_dir(&dir);
        }
        let _ = std::fs::remove_file(&self.log);
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        if self.waiter.is_some() {
            self.terminate();
        }
    }
}

impl std::fmt::Debug for ServerProcess {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerProcess")
            .field("pid", &self.pid)
            .field("http_port", &self.http_port)
            .field("grpc_port", &self.grpc_port)
            .field("command", &self.command_line)
            .finish()
    }
}

/// Sets the CPU affinity of every thread of this process.
fn pin_process(cpus: &[usize]) -> bool {
    // SAFETY: a zeroed cpu_set_t is a valid empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    for &c in cpus {
        // SAFETY: CPU_SET writes inside the set we own; ids come from sched_getaffinity.
        unsafe { libc::CPU_SET(c, &mut set) };
    }
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return false;
    };
    let mut all = true;
    for task in tasks.flatten() {
        let Some(tid) = task
            .file_name()
            .to_str()
            .and_then(|t| t.parse::<libc::pid_t>().ok())
        else {
            continue;
        };
        // SAFETY: setting the affinity of one of our own threads with a valid set.
        let rc =
            unsafe { libc::sched_setaffinity(tid, std::mem::size_of::<libc::cpu_set_t>(), &set) };
        all &= rc == 0;
    }
    all
}

/// Keeps this process (the load generator) off the CPUs a server was given, while it
/// lives, when other CPUs are left: a client that shares the server's cores takes time from
/// it and shows up in its latency as scheduling stalls. Dropping it restores the CPUs the
/// process had.
pub struct ClientPinning {
    restore: Option<Vec<usize>>,
}

impl ClientPinning {
    /// Moves every thread of this process to the allowed CPUs not in `server_cpus`; does
    /// nothing when that leaves none.
    pub fn away_from(server_cpus: &[usize]) -> ClientPinning {
        let allowed = allowed_cpus();
        let rest: Vec<usize> = allowed
            .iter()
            .copied()
            .filter(|c| !server_cpus.contains(c))
            .collect();
        if rest.is_empty() || rest.len() == allowed.len() {
            return ClientPinning { restore: None };
        }
        if !pin_process(&rest) {
            tracing::warn!("could not move every load-generator thread off the server's CPUs");
        }
        ClientPinning {
            restore: Some(allowed),
        }
    }

    /// Whether the client was moved.
    pub fn is_pinned(&self) -> bool {
        self.restore.is_some()
    }
}

impl Drop for ClientPinning {
    fn drop(&mut self) {
        if let Some(cpus) = self.restore.take() {
            pin_process(&cpus);
        }
    }
}
