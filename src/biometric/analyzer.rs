//! Bounded, isolated execution of [`analyze`] for the async server.
//!
//! Admission is two-level: `workers + queue` admission permits are taken without waiting (so
//! overload turns into an immediate [`AnalyzeError::Busy`] and a 503, never an unbounded
//! backlog), then one of `workers` run permits is awaited.
//!
//! With [`Isolation::Thread`] the analysis runs on tokio's blocking pool. A timed-out analysis
//! cannot be interrupted there, so it keeps both of its permits until it really finishes; the
//! server sheds load instead of piling up runaway work. With [`Isolation::Process`] each
//! analysis runs in a long-lived worker process; a worker that crashes, misbehaves or times
//! out is killed and replaced, and only that request fails. Each worker confines itself and
//! reports how far that went; the pool keeps the latest report for the dashboard and logs a
//! warning when a kernel sandbox is missing.

use super::protocol::{self, RequestHeader, ResponseError};
use super::{
    Analysis, DetectorSettings, ImageFormat, IsolationStatus, Limits, Rejection, StoragePolicy,
    analyze_for_storage, precheck,
};
use anyhow::{Context, bail};
use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
use tokio::io::BufReader;
use tokio::process::{Child, ChildStdin, ChildStdout, Command};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinHandle;

/// How long to wait for a killed worker to be reaped, for its exit status.
const REAP_WAIT: Duration = Duration::from_secs(2);

/// How long a worker that closed its output gets to finish exiting on its own, so the log shows
/// its real exit status (say, an abort on memory exhaustion) rather than our kill.
const EXIT_GRACE: Duration = Duration::from_millis(500);

/// How analysis runs.
#[derive(Clone, Debug)]
pub enum Isolation {
    /// On tokio's blocking thread pool, in the server process. Cheapest, but a crash in the
    /// decoders or the detector (which contains `unsafe` code) takes the server down.
    Thread,
    /// In worker processes started as `exe args…`, which must end up calling
    /// [`worker_main`](super::worker_main). They run with an empty environment, so secrets in
    /// the server's environment are not exposed to image-parsing code, and confine themselves
    /// before reading any image.
    Process { exe: PathBuf, args: Vec<String> },
}

/// How image analysis is kept apart from the server, as the dashboard shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum IsolationReport {
    /// [`Isolation::Thread`]: analysis runs inside the server process.
    InProcess,
    /// Worker processes are configured but none has reported its confinement yet.
    Pending,
    /// What the most recently started worker reported.
    Workers(IsolationStatus),
}

/// Why an analysis produced no result.
#[derive(Debug, thiserror::Error)]
pub enum AnalyzeError {
    /// The image was refused; the caller's fault (4xx).
    #[error(transparent)]
    Rejected(#[from] Rejection),
    /// Queue full: the caller should answer 503 and the client retry later.
    #[error("face analysis is at capacity; try again later")]
    Busy,
    /// The analysis took longer than the configured timeout.
    #[error("face analysis timed out")]
    Timeout,
    /// The analysis crashed or its worker misbehaved; details are for logs, not for clients.
    #[error("face analysis failed: {0}")]
    WorkerFailed(String),
}

/// Bounded analyser: at most `workers` analyses run at once and at most `queue` wait; beyond
/// that `Busy` immediately (no waiting).
pub struct Analyzer {
    admission: Arc<Semaphore>,
    /// `workers + queue`: the admission places there are.
    places: usize,
    running: Arc<Semaphore>,
    limits: Limits,
    settings: DetectorSettings,
    timeout: Duration,
    pool: Option<Arc<ProcessPool>>,
}

impl Analyzer {
    /// Builds the analyser. With [`Isolation::Process`] this starts `workers` processes and must
    /// be called inside a tokio runtime; a worker executable that cannot be started is an error
    /// here rather than on the first request.
    pub fn new(
        isolation: Isolation,
        workers: usize,
        queue: usize,
        limits: Limits,
        settings: DetectorSettings,
        timeout: std::time::Duration,
    ) -> anyhow::Result<Self> {
        if workers == 0 {
            bail!("the face analyser needs at least one worker");
        }
        let admitted = workers
            .checked_add(queue)
            .filter(|&n| n <= Semaphore::MAX_PERMITS)
            .context("face analyser queue is too large")?;

        let pool = match isolation {
            Isolation::Thread => {
                super::detect::check_model().map_err(anyhow::Error::msg)?;
                None
            }
            Isolation::Process { exe, args } => {
                tokio::runtime::Handle::try_current()
                    .context("process isolation must be set up inside a tokio runtime")?;
                let pool = ProcessPool {
                    exe,
                    args,
                    idle: Mutex::new(Vec::with_capacity(workers)),
                    isolation: Arc::new(Mutex::new(None)),
                };
                for _ in 0..workers {
                    let worker = pool.spawn().with_context(|| {
                        format!("starting face analysis worker {}", pool.exe.display())
                    })?;
                    pool.put(worker);
                }
                Some(Arc::new(pool))
            }
        };

        Ok(Self {
            admission: Arc::new(Semaphore::new(admitted)),
            places: admitted,
            running: Arc::new(Semaphore::new(workers)),
            limits,
            settings,
            timeout,
            pool,
        })
    }

    /// Admitted analyses right now: running, waiting for a worker, or still receiving their
    /// upload.
    pub fn in_flight(&self) -> usize {
        self.places
            .saturating_sub(self.admission.available_permits())
    }

    /// Process ids of the idle worker processes (none with thread isolation), for diagnostics
    /// and for tests that need to interfere with a worker.
    pub fn worker_pids(&self) -> Vec<u32> {
        self.pool.as_ref().map_or_else(Vec::new, |pool| {
            pool.idle().iter().filter_map(|w| w.child.id()).collect()
        })
    }

    /// How analysis is isolated: for worker processes, the confinement the most recently
    /// started worker reported.
    pub fn isolation_report(&self) -> IsolationReport {
        match &self.pool {
            None => IsolationReport::InProcess,
            Some(pool) => pool
                .isolation
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .clone()
                .map_or(IsolationReport::Pending, IsolationReport::Workers),
        }
    }

    /// Analyses one image with the default [`StoragePolicy`]; see
    /// [`Analyzer::analyze_for_storage`].
    pub async fn analyze(
        &self,
        bytes: Vec<u8>,
        declared: Option<ImageFormat>,
    ) -> Result<Analysis, AnalyzeError> {
        self.analyze_for_storage(bytes, declared, StoragePolicy::default())
            .await
    }

    /// Analyses one image, its sanitised copy shaped and bounded by `storage`: [`Analyzer::admit`]
    /// then [`Admission::analyze_for_storage`].
    pub async fn analyze_for_storage(
        &self,
        bytes: Vec<u8>,
        declared: Option<ImageFormat>,
        storage: StoragePolicy,
    ) -> Result<Analysis, AnalyzeError> {
        precheck(&bytes, declared, &self.limits)?;
        self.admit()?
            .analyze_for_storage(bytes, declared, storage)
            .await
    }

    /// Takes a place among the `workers + queue` admitted analyses, or fails at once with
    /// [`AnalyzeError::Busy`]. Callers take it *before* reading an upload, so at most that many
    /// request bodies are held in memory at once and a refused client sends nothing for nothing.
    pub fn admit(&self) -> Result<Admission<'_>, AnalyzeError> {
        let permit = Arc::clone(&self.admission)
            .try_acquire_owned()
            .map_err(|_| AnalyzeError::Busy)?;
        Ok(Admission {
            analyzer: self,
            permit,
        })
    }
}

/// A place in the analyser's bounded admission, held from before the upload is read until its
/// analysis ends. Dropping it gives the place back.
pub struct Admission<'a> {
    analyzer: &'a Analyzer,
    permit: OwnedSemaphorePermit,
}

impl Admission<'_> {
    /// Analyses one image, its sanitised copy shaped and bounded by `storage`. Size and type
    /// are checked before waiting for a worker. A copy over [`StoragePolicy::bound`] is refused
    /// as a worker failure: a worker process is not trusted to have kept to it, and in a
    /// process the oversized answer is refused before it is read.
    ///
    /// Cancel-safe: dropping the future releases its slot (and kills its worker process if it
    /// had one, since that worker's state is unknown).
    pub async fn analyze_for_storage(
        self,
        bytes: Vec<u8>,
        declared: Option<ImageFormat>,
        storage: StoragePolicy,
    ) -> Result<Analysis, AnalyzeError> {
        let Admission {
            analyzer,
            permit: admitted,
        } = self;
        precheck(&bytes, declared, &analyzer.limits)?;
        let bound = storage.bound(bytes.len());
        let running = Arc::clone(&analyzer.running)
            .acquire_owned()
            .await
            .map_err(|_| AnalyzeError::WorkerFailed("analyser is shut down".to_owned()))?;

        match &analyzer.pool {
            None => {
                let (limits, settings) = (analyzer.limits, analyzer.settings);
                let task = tokio::task::spawn_blocking(move || {
                    // Held until the work really ends, even if the caller timed out.
                    let _permits = (admitted, running);
                    analyze_for_storage(&bytes, declared, &limits, &settings, &storage)
                });
                match tokio::time::timeout(analyzer.timeout, task).await {
                    Err(_) => Err(AnalyzeError::Timeout),
                    Ok(Err(join)) if join.is_panic() => {
                        tracing::error!("face analysis panicked");
                        Err(AnalyzeError::WorkerFailed("analysis panicked".to_owned()))
                    }
                    Ok(Err(join)) => Err(AnalyzeError::WorkerFailed(join.to_string())),
                    Ok(Ok(Ok(analysis))) if analysis.sanitized.len() > bound => {
                        Err(AnalyzeError::WorkerFailed(format!(
                            "sanitized image of {} bytes exceeds {bound}",
                            analysis.sanitized.len()
                        )))
                    }
                    Ok(Ok(result)) => result.map_err(AnalyzeError::Rejected),
                }
            }
            Some(pool) => {
                let header = RequestHeader {
                    declared,
                    limits: analyzer.limits,
                    settings: analyzer.settings,
                    storage,
                };
                let result = pool.run(&header, &bytes, bound, analyzer.timeout).await;
                drop((running, admitted));
                result
            }
        }
    }
}

/// glibc malloc settings of the worker processes. By default each image's buffers (decoded
/// pixels, luma plane, re-encoded copy: several MiB) are handed back to the kernel when freed
/// and faulted in again, zeroed, for the next image: about 1 000 page faults and 3 ms of CPU
/// per 512×512 image. A worker does one image at a time, so keeping freed memory for the next
/// one costs nothing beyond the largest image's peak, which the limits already bound.
const WORKER_MALLOC_TUNABLES: &str =
    "glibc.malloc.mmap_threshold=33554432:glibc.malloc.trim_threshold=1073741824";

/// Size asked for the pipe that carries uploads to a worker.
#[cfg(target_os = "linux")]
const WORKER_PIPE_BYTES: usize = 1024 * 1024;

/// Long-lived worker processes; a worker is either idle here or owned by exactly one request.
struct ProcessPool {
    exe: PathBuf,
    args: Vec<String>,
    idle: Mutex<Vec<WorkerProcess>>,
    /// The confinement the most recently started worker reported.
    isolation: Arc<Mutex<Option<IsolationStatus>>>,
}

struct WorkerProcess {
    child: Child,
    stdin: ChildStdin,
    stdout: WorkerOutput,
}

/// A worker's stdout. Its hello is read in the background as soon as the worker starts, so the
/// report is there before the first request; the first request then waits for that read.
enum WorkerOutput {
    Starting(JoinHandle<Result<BufReader<ChildStdout>, ResponseError>>),
    Ready(BufReader<ChildStdout>),
}

/// Why a single exchange with a worker failed.
enum CallError {
    /// The request could not be delivered: the worker was already gone.
    Send(std::io::Error),
    /// The worker took the request but gave no usable answer.
    Receive(ResponseError),
}

impl ProcessPool {
    /// Starts one worker process.
    fn spawn(&self) -> std::io::Result<WorkerProcess> {
        let mut child = Command::new(&self.exe)
            .args(&self.args)
            .env_clear()
            .env("GLIBC_TUNABLES", WORKER_MALLOC_TUNABLES)
            .current_dir("/")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()?;
        let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
            return Err(std::io::Error::other("worker pipes were not created"));
        };
        // An upload crosses the default 64 KiB pipe in many rounds, each waking both
        // processes; a larger pipe takes a typical image in one. Best effort: the kernel caps
        // it at /proc/sys/fs/pipe-max-size for unprivileged processes.
        #[cfg(target_os = "linux")]
        if let Err(err) = rustix::pipe::fcntl_setpipe_size(&stdin, WORKER_PIPE_BYTES) {
            tracing::debug!(error = %err, "worker pipe keeps its default size");
        }
        let isolation = Arc::clone(&self.isolation);
        let hello = tokio::spawn(async move {
            let mut stdout = BufReader::new(stdout);
            let status = protocol::read_hello(&mut stdout).await?;
            record_isolation(&isolation, status);
            Ok(stdout)
        });
        Ok(WorkerProcess {
            child,
            stdin,
            stdout: WorkerOutput::Starting(hello),
        })
    }

    fn idle(&self) -> std::sync::MutexGuard<'_, Vec<WorkerProcess>> {
        // The lock only guards push/pop, which cannot leave the vector inconsistent.
        self.idle
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn put(&self, worker: WorkerProcess) {
        self.idle().push(worker);
    }

    /// An idle live worker, or a new one when none is left (after crashes or cancellations).
    fn take(&self) -> std::io::Result<WorkerProcess> {
        loop {
            let Some(mut worker) = self.idle().pop() else {
                return self.spawn();
            };
            match worker.child.try_wait() {
                Ok(None) => return Ok(worker),
                Ok(Some(status)) => {
                    tracing::warn!(%status, "idle face analysis worker had exited; replacing it");
                }
                Err(err) => {
                    tracing::warn!(error = %err, "cannot check face analysis worker; replacing it");
                }
            }
        }
    }

    /// Starts a replacement for a worker that was discarded, so the next request does not pay
    /// the start-up cost.
    fn replenish(&self) {
        match self.spawn() {
            Ok(worker) => self.put(worker),
            Err(err) => {
                tracing::error!(error = %err, exe = %self.exe.display(), "cannot start face analysis worker");
            }
        }
    }

    /// Runs one request on some worker, within `timeout`; an answer whose sanitised copy is
    /// over `max_sanitized` bytes is refused before it is read.
    async fn run(
        &self,
        header: &RequestHeader,
        image: &[u8],
        max_sanitized: usize,
        timeout: Duration,
    ) -> Result<Analysis, AnalyzeError> {
        let max_sanitized = u64::try_from(max_sanitized).unwrap_or(u64::MAX);
        let attempt = async {
            // A worker that died while idle (for example killed by an operator) can only be
            // noticed when writing to it; that request was never seen, so retry it once.
            let mut retried = false;
            loop {
                let mut worker = self.take().map_err(|err| {
                    AnalyzeError::WorkerFailed(format!("cannot start worker: {err}"))
                })?;
                match worker.call(header, image, max_sanitized).await {
                    Ok(result) => {
                        self.put(worker);
                        return result.map_err(AnalyzeError::Rejected);
                    }
                    Err(CallError::Send(err)) if !retried => {
                        retried = true;
                        let status = worker.terminate(Duration::ZERO).await;
                        tracing::warn!(error = %err, status = %describe(status), "face analysis worker was gone; retrying on a new one");
                    }
                    Err(CallError::Send(err)) => {
                        return Err(self.fail(worker, err.to_string(), Duration::ZERO).await);
                    }
                    Err(CallError::Receive(err)) => {
                        let grace = match err {
                            ResponseError::Closed => EXIT_GRACE,
                            _ => Duration::ZERO,
                        };
                        return Err(self.fail(worker, err.to_string(), grace).await);
                    }
                }
            }
        };
        match tokio::time::timeout(timeout, attempt).await {
            Ok(result) => result,
            Err(_) => {
                // The worker was owned by the dropped future and has been killed with it.
                tracing::warn!(
                    timeout_ms = timeout.as_millis(),
                    "face analysis timed out; worker killed"
                );
                self.replenish();
                Err(AnalyzeError::Timeout)
            }
        }
    }

    /// Kills and reaps a worker that failed a request, replaces it, and builds the error.
    async fn fail(&self, worker: WorkerProcess, reason: String, grace: Duration) -> AnalyzeError {
        let status = worker.terminate(grace).await;
        let message = format!("{reason} (worker {})", describe(status));
        tracing::error!(error = %message, "face analysis worker failed; replacing it");
        self.replenish();
        AnalyzeError::WorkerFailed(message)
    }
}

impl WorkerProcess {
    /// One request/response exchange.
    async fn call(
        &mut self,
        header: &RequestHeader,
        image: &[u8],
        max_sanitized: u64,
    ) -> Result<Result<Analysis, Rejection>, CallError> {
        protocol::write_request(&mut self.stdin, header, image)
            .await
            .map_err(CallError::Send)?;
        let stdout = self.stdout.ready().await.map_err(CallError::Receive)?;
        protocol::read_response(stdout, max_sanitized)
            .await
            .map_err(CallError::Receive)
    }

    /// Gives the process `grace` to exit by itself, then kills it; returns its exit status when
    /// available.
    async fn terminate(mut self, grace: Duration) -> Option<ExitStatus> {
        drop(self.stdin);
        if let Ok(Ok(status)) = tokio::time::timeout(grace, self.child.wait()).await {
            return Some(status);
        }
        // Fails only if the process is already gone, which is what we want anyway.
        let _ = self.child.start_kill();
        tokio::time::timeout(REAP_WAIT, self.child.wait())
            .await
            .ok()
            .and_then(Result::ok)
    }
}

impl WorkerOutput {
    /// The stream positioned after the hello, once the hello has been read.
    async fn ready(&mut self) -> Result<&mut BufReader<ChildStdout>, ResponseError> {
        if let WorkerOutput::Starting(hello) = self {
            let stdout = hello.await.map_err(|err| {
                ResponseError::Malformed(format!("reading the worker's hello failed: {err}"))
            })??;
            *self = WorkerOutput::Ready(stdout);
        }
        match self {
            WorkerOutput::Ready(stdout) => Ok(stdout),
            // Replaced just above.
            WorkerOutput::Starting(_) => Err(ResponseError::Closed),
        }
    }
}

/// Keeps a worker's report and logs it when it differs from the previous one (all workers of a
/// server normally report the same, so this logs once at start-up).
fn record_isolation(slot: &Mutex<Option<IsolationStatus>>, status: IsolationStatus) {
    let mut last = slot.lock().unwrap_or_else(PoisonError::into_inner);
    if last.as_ref() != Some(&status) {
        if status.is_confined() {
            tracing::info!(
                landlock = ?status.landlock,
                landlock_abi = ?status.landlock_abi,
                seccomp = ?status.seccomp,
                notes = %status.notes.join("; "),
                "face analysis workers are confined"
            );
        } else {
            tracing::warn!(
                landlock = ?status.landlock,
                seccomp = ?status.seccomp,
                no_new_privs = status.no_new_privs,
                notes = %status.notes.join("; "),
                "face analysis workers run without part of their sandbox: a compromised worker \
                 could reach files, sockets or other processes"
            );
        }
    }
    *last = Some(status);
}

/// Human-readable exit status for logs and error messages.
fn describe(status: Option<ExitStatus>) -> String {
    status.map_or_else(|| "exit status unknown".to_owned(), |s| s.to_string())
}
