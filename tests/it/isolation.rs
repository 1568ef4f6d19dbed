//! Process isolation: analyses run in real worker processes of the trustplane binary, which
//! confine themselves (no files, sockets or programs) before reading an image, and a worker
//! that crashes, hangs, is killed or talks nonsense costs one request, never the pool.
#![allow(dead_code)]

use std::time::{Duration, Instant};
use trustplane::biometric::{
    AnalyzeError, ImageFormat, IsolationReport, IsolationStatus, LandlockState, Limits, Rejection,
    SeccompState, StoragePolicy,
};
use trustplane::staff::model::Role;

use crate::helpers::{Backend, spawn_app};

#[cfg(target_os = "linux")]
#[test]
fn a_confined_worker_cannot_read_the_keyring_open_a_socket_or_start_a_program() {
    let dir = tempfile::tempdir().unwrap();
    let keyring = dir.path().join("keyring.json");
    trustplane::crypto::Keyring::load_or_create(&keyring).unwrap();
    assert!(
        std::fs::read(&keyring).is_ok(),
        "the server's user can read it"
    );

    let report = self_test_confinement(&keyring);

    let isolation = &report.isolation;
    assert!(isolation.no_new_privs, "{isolation:?}");
    assert_ne!(
        isolation.landlock,
        LandlockState::Unavailable,
        "this test needs a kernel with Landlock (Linux 5.13+): {isolation:?}"
    );
    assert_eq!(isolation.seccomp, SeccompState::Enforced, "{isolation:?}");
    // Landlock refuses the open; seccomp refuses the socket and the new process.
    assert_eq!(report.read_file.errno, Some(libc::EACCES), "{report:?}");
    assert_eq!(report.socket.errno, Some(libc::EPERM), "{report:?}");
    assert_eq!(report.spawn_process.errno, Some(libc::EPERM), "{report:?}");
    // Threads, which decoders may use, still work.
    assert!(report.spawn_thread.allowed, "{report:?}");
}

#[tokio::test]
async fn a_confined_worker_still_detects_faces_and_the_pool_keeps_its_report() {
    let analyzer = process_analyzer(1, Limits::default(), Duration::from_secs(60));

    let analysis = analyzer
        .analyze(fixture("astronaut.png"), None)
        .await
        .unwrap();
    assert_eq!(analysis.faces.len(), 1, "{:?}", analysis.faces);

    let IsolationReport::Workers(status) = analyzer.isolation_report() else {
        panic!(
            "no report after a request: {:?}",
            analyzer.isolation_report()
        );
    };
    assert!(status.is_confined(), "{status:?}");
    assert!(status.rlimits.contains("no file writes"), "{status:?}");
}

#[tokio::test]
async fn the_pool_reports_what_a_worker_says_before_any_request() {
    let weak = IsolationStatus {
        rlimits: "none".to_owned(),
        no_new_privs: false,
        landlock: LandlockState::Unavailable,
        landlock_abi: None,
        seccomp: SeccompState::Unavailable,
        notes: vec!["the kernel has no Landlock".to_owned()],
    };
    let json = serde_json::to_vec(&weak).unwrap();
    let mut hello = b"TPH1".to_vec();
    hello.extend_from_slice(&(json.len() as u32).to_le_bytes());
    hello.extend_from_slice(&json);
    let dir = tempfile::tempdir().unwrap();
    let hello_path = dir.path().join("hello");
    std::fs::write(&hello_path, hello).unwrap();

    let analyzer = fake_analyzer(&format!(
        "cat '{}'; exec cat >/dev/null",
        hello_path.display()
    ));
    let report = wait_for_report(&analyzer).await;
    assert_eq!(report, IsolationReport::Workers(weak));
    assert!(!matches!(report, IsolationReport::Workers(ref s) if s.is_confined()));

    let threads = trustplane::biometric::Analyzer::new(
        Isolation::Thread,
        1,
        0,
        Limits::default(),
        DetectorSettings::default(),
        Duration::from_secs(10),
    )
    .unwrap();
    assert_eq!(threads.isolation_report(), IsolationReport::InProcess);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_isolation_control_shows_on_the_dashboard() {
    let app = spawn_app(Backend::Sqlite).await;
    let (admin, _) = app.logged_in_as(Role::Admin).await;
    wait_for_report(&app.state.analyzer).await;

    let page = app.get(&admin, "/").await.text().await.unwrap();
    assert!(
        page.contains("card control ok\" data-control=\"ISO\""),
        "{page}"
    );
    assert!(page.contains("seccomp: <strong>enforced"), "{page}");
    assert!(page.contains("no_new_privs: <strong>set"), "{page}");
    assert!(page.contains("Landlock: <strong>"), "{page}");
}

#[tokio::test]
async fn detects_faces_in_a_worker_process() {
    let analyzer = process_analyzer(1, Limits::default(), Duration::from_secs(60));

    let analysis = analyzer
        .analyze(fixture("astronaut.png"), Some(ImageFormat::Png))
        .await
        .unwrap();
    assert_eq!(analysis.faces.len(), 1, "{:?}", analysis.faces);
    let face = &analysis.faces[0];
    assert!(
        (face.x - 173).abs() <= 20 && (face.y - 68).abs() <= 20,
        "{face:?}"
    );
    assert_eq!(analysis.sanitized_format, ImageFormat::Png);
    let sanitized = image::load_from_memory(&analysis.sanitized).unwrap();
    assert_eq!((sanitized.width(), sanitized.height()), (512, 512));

    let coffee = analyzer.analyze(fixture("coffee.png"), None).await.unwrap();
    assert!(coffee.faces.is_empty());

    // Pixels that will not be kept come back as results only, the same results.
    let results_only = analyzer
        .analyze_for_storage(fixture("astronaut.png"), None, StoragePolicy::discard())
        .await
        .unwrap();
    assert!(results_only.sanitized.is_empty());
    assert_eq!(results_only.faces, analysis.faces);

    // Rejections from inside the worker come back as rejections, and the worker stays up.
    let png = fixture("astronaut.png");
    let err = analyzer
        .analyze(png[..png.len() / 3].to_vec(), None)
        .await
        .unwrap_err();
    assert!(
        matches!(err, AnalyzeError::Rejected(Rejection::Undecodable(_))),
        "{err:?}"
    );
    let err = analyzer
        .analyze(png_claiming(30_000, 30_000), None)
        .await
        .unwrap_err();
    assert!(
        matches!(err, AnalyzeError::Rejected(Rejection::TooManyPixels { .. })),
        "{err:?}"
    );
    assert!(analyzer.analyze(tiny_png(), None).await.is_ok());
}

#[tokio::test]
async fn worker_exhausting_its_memory_fails_only_that_request() {
    // Limits loose enough to let a 20000x20000 RGBA image (1.6 GB) through to the decoder,
    // whose allocation then hits the worker's address-space limit and kills it.
    let loose = Limits {
        max_width: 100_000,
        max_height: 100_000,
        max_pixels: u64::MAX,
        max_alloc_bytes: 1 << 40,
        ..Limits::default()
    };
    let analyzer = process_analyzer(1, loose, Duration::from_secs(60));
    let err = analyzer
        .analyze(png_claiming(20_000, 20_000), None)
        .await
        .unwrap_err();
    assert!(matches!(err, AnalyzeError::WorkerFailed(_)), "{err:?}");

    let analysis = analyzer
        .analyze(fixture("astronaut.png"), None)
        .await
        .unwrap();
    assert_eq!(analysis.faces.len(), 1);
}

#[tokio::test]
async fn timed_out_worker_is_replaced() {
    // A 16-megapixel photo takes seconds to analyse; a tiny image takes milliseconds.
    let analyzer = process_analyzer(1, Limits::default(), Duration::from_secs(1));
    let image = big_jpeg(4000);
    let start = Instant::now();
    let err = analyzer.analyze(image, None).await.unwrap_err();
    assert!(matches!(err, AnalyzeError::Timeout), "{err:?}");
    assert!(start.elapsed() < Duration::from_secs(5));

    let analysis = analyzer.analyze(tiny_png(), None).await.unwrap();
    assert_eq!((analysis.width, analysis.height), (64, 64));
}

#[tokio::test]
async fn garbage_from_a_worker_is_a_worker_failure() {
    for script in [
        "printf 'this is not the protocol'; exec cat >/dev/null",
        "printf 'TPR1\\377\\377\\377\\377'; exec cat >/dev/null",
        "printf 'TPR1\\005\\000\\000\\000{nope'; exec cat >/dev/null",
        "exit 7",
        "head -c 10 >/dev/null",
    ] {
        let analyzer = fake_analyzer(script);
        let err = analyzer.analyze(tiny_png(), None).await.unwrap_err();
        assert!(
            matches!(err, AnalyzeError::WorkerFailed(_)),
            "{script}: {err:?}"
        );
        // The pool is still usable (the fake fails again, but cleanly).
        let err = analyzer.analyze(tiny_png(), None).await.unwrap_err();
        assert!(
            matches!(err, AnalyzeError::WorkerFailed(_)),
            "{script}: {err:?}"
        );
    }
}

#[tokio::test]
async fn silent_worker_times_out() {
    let analyzer = trustplane::biometric::Analyzer::new(
        trustplane::biometric::Isolation::Process {
            exe: "/bin/sh".into(),
            args: vec!["-c".to_owned(), "exec sleep 60".to_owned()],
        },
        1,
        0,
        Limits::default(),
        Default::default(),
        Duration::from_millis(300),
    )
    .unwrap();
    let err = analyzer.analyze(tiny_png(), None).await.unwrap_err();
    // Depending on pipe buffering the write may also fail outright; either way no hang.
    assert!(
        matches!(err, AnalyzeError::Timeout | AnalyzeError::WorkerFailed(_)),
        "{err:?}"
    );
}

#[tokio::test]
async fn missing_worker_executable_is_a_startup_error() {
    let result = trustplane::biometric::Analyzer::new(
        trustplane::biometric::Isolation::Process {
            exe: "/nonexistent/trustplane".into(),
            args: Vec::new(),
        },
        1,
        0,
        Limits::default(),
        Default::default(),
        Duration::from_secs(1),
    );
    assert!(result.is_err());
}

#[tokio::test]
async fn busy_when_all_workers_are_taken() {
    let analyzer = process_analyzer(1, Limits::default(), Duration::from_secs(60));
    let (first, second) = tokio::join!(
        analyzer.analyze(fixture("astronaut.png"), None),
        analyzer.analyze(fixture("astronaut.png"), None)
    );
    assert!(first.is_ok());
    assert!(matches!(second, Err(AnalyzeError::Busy)), "{second:?}");
}

#[tokio::test]
async fn killed_worker_fails_its_request_and_is_replaced() {
    let analyzer = process_analyzer(1, Limits::default(), Duration::from_secs(120));
    let pids = analyzer.worker_pids();
    assert_eq!(pids.len(), 1, "{pids:?}");
    let victim = pids[0];

    let image = big_jpeg(4000);
    let (result, ()) = tokio::join!(analyzer.analyze(image, None), async {
        // The request takes seconds; kill its worker while it is busy with it.
        tokio::time::sleep(Duration::from_millis(300)).await;
        let status = std::process::Command::new("kill")
            .args(["-KILL", &victim.to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    });
    let err = result.unwrap_err();
    assert!(matches!(err, AnalyzeError::WorkerFailed(_)), "{err:?}");

    let analysis = analyzer
        .analyze(fixture("astronaut.png"), None)
        .await
        .unwrap();
    assert_eq!(analysis.faces.len(), 1);
    let pids = analyzer.worker_pids();
    assert_eq!(pids.len(), 1);
    assert_ne!(pids[0], victim);
}

// Helpers.

/// What `trustplane worker --self-test-confinement` prints.
#[derive(serde::Deserialize, Debug)]
pub struct SelfTestReport {
    pub isolation: IsolationStatus,
    pub read_file: Attempt,
    pub socket: Attempt,
    pub spawn_process: Attempt,
    pub spawn_thread: Attempt,
}

#[derive(serde::Deserialize, Debug)]
pub struct Attempt {
    pub allowed: bool,
    pub errno: Option<i32>,
    pub error: Option<String>,
}

/// Runs the worker binary's confinement self-test against `path`.
pub fn self_test_confinement(path: &std::path::Path) -> SelfTestReport {
    let output = std::process::Command::new(WORKER_EXE)
        .arg("worker")
        .arg("--self-test-confinement")
        .arg(path)
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}: {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|err| panic!("{err}: {}", String::from_utf8_lossy(&output.stdout)))
}

/// The pool's isolation report once a worker has sent its hello (which it does at start-up).
pub async fn wait_for_report(analyzer: &Analyzer) -> IsolationReport {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let report = analyzer.isolation_report();
        if report != IsolationReport::Pending || Instant::now() > deadline {
            return report;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

use image::codecs::jpeg::JpegEncoder;
use image::imageops::FilterType;
use trustplane::biometric::{Analyzer, DetectorSettings, Isolation};

/// The executable and arguments that start a worker process.
pub const WORKER_EXE: &str = env!("CARGO_BIN_EXE_trustplane");
pub const WORKER_ARGS: &[&str] = &["worker"];

pub fn fixture(name: &str) -> Vec<u8> {
    let path = format!("{}/tests/fixtures/faces/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|err| panic!("reading {path}: {err}"))
}

pub fn process_analyzer(workers: usize, limits: Limits, timeout: Duration) -> Analyzer {
    Analyzer::new(
        Isolation::Process {
            exe: WORKER_EXE.into(),
            args: WORKER_ARGS.iter().map(|a| (*a).to_owned()).collect(),
        },
        workers,
        0,
        limits,
        DetectorSettings::default(),
        timeout,
    )
    .expect("starting worker pool")
}

/// A pool of fake workers running a shell `script` instead of the real worker.
pub fn fake_analyzer(script: &str) -> Analyzer {
    Analyzer::new(
        Isolation::Process {
            exe: "/bin/sh".into(),
            args: vec!["-c".to_owned(), script.to_owned()],
        },
        1,
        0,
        Limits::default(),
        DetectorSettings::default(),
        Duration::from_secs(10),
    )
    .expect("starting fake worker pool")
}

/// The astronaut upscaled to `side` x `side` as JPEG: slow enough to analyse that a test can
/// interfere with the worker while it runs.
pub fn big_jpeg(side: u32) -> Vec<u8> {
    let astronaut = image::load_from_memory(&fixture("astronaut.png")).unwrap();
    let big = astronaut
        .resize_exact(side, side, FilterType::Triangle)
        .to_rgb8();
    let mut out = Vec::new();
    big.write_with_encoder(JpegEncoder::new_with_quality(&mut out, 80))
        .unwrap();
    out
}

/// A tiny PNG, analysed in a few milliseconds.
pub fn tiny_png() -> Vec<u8> {
    let image = image::RgbImage::from_pixel(64, 64, image::Rgb([90, 120, 150]));
    let mut out = Vec::new();
    image
        .write_to(&mut std::io::Cursor::new(&mut out), image::ImageFormat::Png)
        .unwrap();
    out
}

fn crc32(bytes: &[u8]) -> u32 {
    crc32fast::hash(bytes)
}

/// A PNG whose header claims an RGBA image of `width` x `height`, with almost no data.
pub fn png_claiming(width: u32, height: u32) -> Vec<u8> {
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut chunk = |kind: &[u8; 4], data: &[u8]| {
        png.extend_from_slice(&(data.len() as u32).to_be_bytes());
        png.extend_from_slice(kind);
        png.extend_from_slice(data);
        let mut crc_input = kind.to_vec();
        crc_input.extend_from_slice(data);
        png.extend_from_slice(&crc32(&crc_input).to_be_bytes());
    };
    let mut ihdr = Vec::new();
    ihdr.extend_from_slice(&width.to_be_bytes());
    ihdr.extend_from_slice(&height.to_be_bytes());
    ihdr.extend_from_slice(&[8, 6, 0, 0, 0]);
    chunk(b"IHDR", &ihdr);
    chunk(
        b"IDAT",
        &[0x78, 0x9c, 0x63, 0x60, 0x00, 0x00, 0x00, 0x02, 0x00, 0x01],
    );
    chunk(b"IEND", &[]);
    png
}
