//! The worker process: runs [`analyze_for_storage`](super::analyze_for_storage) on requests from its parent, inside a sandbox.
//!
//! A worker handles one request at a time over stdin/stdout (see the protocol module). After
//! loading the face model it confines itself (see the sandbox module) and tells its parent how
//! far that went in a hello frame, all before reading any input. A decoder or detector bug then
//! costs one worker process, which the parent replaces, and an image that takes the worker over
//! finds no file, socket, program or other process within reach.
//!
//! Because `RLIMIT_FSIZE` is 0, writing to a stderr that is redirected to a regular file would
//! kill the worker with `SIGXFSZ`; the worker therefore only writes to stderr right before it
//! exits, and reports everything else through its hello frame or its exit code.

use super::protocol::{self, Incoming};
use super::{IsolationStatus, Rejection, analyze_for_storage, detect, sandbox};
use serde::Serialize;
use std::io::{self, BufWriter, Read, Write};
use std::path::Path;
use std::process::ExitCode;

/// Exit code when the parent sends something that is not a valid request.
const EXIT_PROTOCOL: u8 = 2;
/// Exit code when the worker cannot set its resource limits; it refuses to run without them.
const EXIT_LIMITS: u8 = 3;
/// Exit code when the embedded face model cannot be loaded.
const EXIT_MODEL: u8 = 4;

/// Entry point of a worker process (`trustplane worker`): loads the face model, confines
/// itself, sends its hello, then loops reading length-prefixed requests from stdin and writing
/// length-prefixed responses to stdout until EOF. Returns the process exit code.
///
/// Nothing else may write to stdout in this process: it carries the protocol.
pub fn worker_main() -> ExitCode {
    let isolation = match start() {
        Ok(isolation) => isolation,
        Err(code) => return code,
    };
    let stdin = io::stdin().lock();
    let mut stdout = io::stdout().lock();
    let served = protocol::write_hello(&mut stdout, &isolation)
        .and_then(|()| stdout.flush())
        .and_then(|()| serve(stdin, stdout));
    match served {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("trustplane worker: {err}");
            ExitCode::from(EXIT_PROTOCOL)
        }
    }
}

/// `trustplane worker --self-test-confinement PATH`: starts exactly as a worker does, then
/// tries what a hijacked worker would (read `path`, open a socket, start a program) and what a
/// decoder may need (start a thread), and prints the outcomes as one JSON object on stdout.
///
/// Tests run it to prove the confinement of real workers; operators can run it to see what
/// their kernel enforces (stdout must not be a regular file: the worker may not write files).
pub fn confinement_self_test(path: &Path) -> ExitCode {
    // Found before confinement, which leaves no file to look at.
    let exe = std::env::current_exe();
    let isolation = match start() {
        Ok(isolation) => isolation,
        Err(code) => return code,
    };
    let report = SelfTestReport {
        read_file: Attempt::of(std::fs::read(path)),
        socket: Attempt::of(std::net::UdpSocket::bind(("127.0.0.1", 0))),
        // No /dev/null, which Landlock would refuse before any process starts, and one pipe
        // only, for the descriptor limit; stdout is captured so it cannot corrupt the report.
        spawn_process: Attempt::of(exe.and_then(|exe| {
            std::process::Command::new(exe)
                .arg("--version")
                .stdin(std::process::Stdio::inherit())
                .stderr(std::process::Stdio::inherit())
                .output()
        })),
        spawn_thread: Attempt::of(std::thread::Builder::new().spawn(|| ()).and_then(|thread| {
            thread
                .join()
                .map_err(|_| io::Error::other("thread panicked"))
        })),
        isolation,
    };
    match serde_json::to_string(&report) {
        Ok(json) => {
            println!("{json}");
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("trustplane worker: {err}");
            ExitCode::FAILURE
        }
    }
}

/// Start-up shared by the worker and its self-test, so that the test proves what production
/// does. Everything before [`sandbox::confine`] is trusted set-up (the embedded face model);
/// nothing after it runs unconfined, and no input is read before it.
fn start() -> Result<IsolationStatus, ExitCode> {
    if let Err(err) = detect::warm_up() {
        eprintln!("trustplane worker: {err}");
        return Err(ExitCode::from(EXIT_MODEL));
    }
    sandbox::confine().map_err(|err| {
        eprintln!("trustplane worker: cannot apply resource limits: {err}");
        ExitCode::from(EXIT_LIMITS)
    })
}

/// What the self-test found.
#[derive(Serialize)]
struct SelfTestReport {
    isolation: IsolationStatus,
    read_file: Attempt,
    socket: Attempt,
    spawn_process: Attempt,
    spawn_thread: Attempt,
}

/// Whether an operation succeeded, and if not, with which error.
#[derive(Serialize)]
struct Attempt {
    allowed: bool,
    errno: Option<i32>,
    error: Option<String>,
}

impl Attempt {
    fn of<T>(result: io::Result<T>) -> Self {
        match result {
            Ok(_) => Self {
                allowed: true,
                errno: None,
                error: None,
            },
            Err(err) => Self {
                allowed: false,
                errno: err.raw_os_error(),
                error: Some(err.to_string()),
            },
        }
    }
}

/// Answers requests until the input ends cleanly; any I/O or framing error ends the loop.
fn serve<R: Read, W: Write>(mut input: R, output: W) -> io::Result<()> {
    let mut output = BufWriter::new(output);
    while let Some(incoming) = protocol::read_request(&mut input)? {
        let result = match incoming {
            Incoming::Request(header, image) => analyze_for_storage(
                &image,
                header.declared,
                &header.limits,
                &header.settings,
                &header.storage,
            ),
            Incoming::Oversized(header) => Err(Rejection::TooLarge {
                max_bytes: header.limits.max_bytes,
            }),
        };
        protocol::write_response(&mut output, &result)?;
        output.flush()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::protocol::{RequestHeader, read_response};
    use super::super::{DetectorSettings, ImageFormat, Limits, StoragePolicy};
    use super::*;

    #[tokio::test]
    async fn serve_answers_each_request_in_order() {
        let astronaut = std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/faces/astronaut.png"
        ))
        .unwrap();
        let header = |declared| RequestHeader {
            declared,
            limits: Limits::default(),
            settings: DetectorSettings::default(),
            storage: StoragePolicy::default(),
        };
        let mut input = Vec::new();
        protocol::write_request(&mut input, &header(Some(ImageFormat::Png)), &astronaut)
            .await
            .unwrap();
        protocol::write_request(&mut input, &header(Some(ImageFormat::Jpeg)), &astronaut)
            .await
            .unwrap();

        let mut output = Vec::new();
        serve(input.as_slice(), &mut output).unwrap();

        let mut reader = output.as_slice();
        let first = read_response(&mut reader, u64::MAX).await.unwrap().unwrap();
        assert_eq!(first.faces.len(), 1);
        assert_eq!(first.sanitized_format, ImageFormat::Png);
        assert!(!first.sanitized.is_empty());
        let second = read_response(&mut reader, u64::MAX).await.unwrap();
        assert_eq!(second.unwrap_err(), Rejection::UnsupportedType);
        assert!(reader.is_empty());
    }

    #[test]
    fn serve_fails_on_garbage() {
        let mut output = Vec::new();
        assert!(serve(&b"definitely not a request"[..], &mut output).is_err());
        assert!(output.is_empty());
    }
}
