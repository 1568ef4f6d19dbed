//! The worker process: runs [`analyze`](super::analyze) on requests from its parent, inside
//! resource limits.
//!
//! A worker handles one request at a time over stdin/stdout (see the protocol module). It
//! confines itself before reading any input: bounded address space, no file writes, few file
//! descriptors, no core dumps. A decoder or detector bug then costs one worker process, which
//! the parent replaces, rather than the server.
//!
//! Because `RLIMIT_FSIZE` is 0, writing to a stderr that is redirected to a regular file would
//! kill the worker with `SIGXFSZ`; the worker therefore only writes to stderr right before it
//! exits, and reports everything else through its exit code.

use super::protocol::{self, Incoming};
use super::{Rejection, analyze_for_storage, detect};
use std::io::{self, BufWriter, Read, Write};
use std::process::ExitCode;

/// Address-space ceiling: twice the default decoder budget, with room for the binary itself.
const ADDRESS_SPACE_BYTES: u64 = 1024 * 1024 * 1024;

/// Enough for stdin, stdout and stderr; the worker opens nothing else.
const MAX_OPEN_FILES: u64 = 8;

/// Exit code when the parent sends something that is not a valid request.
const EXIT_PROTOCOL: u8 = 2;
/// Exit code when the worker cannot confine itself; it refuses to run unconfined.
const EXIT_LIMITS: u8 = 3;
/// Exit code when the embedded face model cannot be loaded.
const EXIT_MODEL: u8 = 4;

/// Entry point of a worker process (`trustplane worker`): applies rlimits to itself (address
/// space 1 GiB via `RLIMIT_AS`, `RLIMIT_FSIZE` 0 so it cannot write files, `RLIMIT_NOFILE`
/// small, `RLIMIT_CORE` 0), then loops reading length-prefixed requests from stdin and writing
/// length-prefixed responses to stdout until EOF. Returns the process exit code.
///
/// Nothing else may write to stdout in this process: it carries the protocol.
pub fn worker_main() -> ExitCode {
    if let Err(err) = confine() {
        eprintln!("trustplane worker: cannot apply resource limits: {err}");
        return ExitCode::from(EXIT_LIMITS);
    }
    if let Err(err) = detect::warm_up() {
        eprintln!("trustplane worker: {err}");
        return ExitCode::from(EXIT_MODEL);
    }
    let stdin = io::stdin().lock();
    let stdout = io::stdout().lock();
    match serve(stdin, stdout) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("trustplane worker: {err}");
            ExitCode::from(EXIT_PROTOCOL)
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

/// Applies the worker's resource limits to the current process, lowering hard limits too so
/// that compromised code cannot raise them again.
#[cfg(unix)]
fn confine() -> io::Result<()> {
    use rlimit::Resource;

    let limits = [
        (Resource::AS, ADDRESS_SPACE_BYTES),
        (Resource::FSIZE, 0),
        (Resource::NOFILE, MAX_OPEN_FILES),
        (Resource::CORE, 0),
    ];
    for (resource, wanted) in limits {
        if !resource.is_supported() {
            continue;
        }
        let (soft, hard) = resource.get()?;
        let hard = hard.min(wanted);
        let soft = soft.min(hard);
        resource
            .set(soft, hard)
            .map_err(|err| io::Error::new(err.kind(), format!("{}: {err}", resource.as_name())))?;
    }
    Ok(())
}

/// Resource limits are a Unix facility; elsewhere the worker runs unconfined.
#[cfg(not(unix))]
fn confine() -> io::Result<()> {
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
