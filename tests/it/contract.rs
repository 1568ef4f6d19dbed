//! The processing API's OpenAPI contract, checked from outside by schemathesis against a live
//! server: every check, every phase (examples, coverage, fuzzing, stateful), no failures.
//! Configuration and the one narrowing it needs: tests/contract/ (see the README).

use crate::helpers::*;

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs schemathesis (installed by .ci/run)"]
async fn schemathesis_finds_no_failure_in_the_processing_api() {
    // The demo's per-network limit would answer most generated requests 429 and hide the
    // endpoint's own logic; the limit itself is tested elsewhere.
    let app = spawn_app_with(Backend::Sqlite, |c| c.demo_requests_per_minute = 1_000_000).await;
    let customer = app.create_customer("Contract", "live", 30).await;
    let (_, key) = app
        .issue_key(&customer, "faces:detect,images:read,images:delete")
        .await;
    let contract = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/contract");
    let schema = app.url("/openapi.json");
    let out = tokio::process::Command::new("st")
        .arg("--config-file")
        .arg(contract.join("schemathesis.toml"))
        .args(["run", &schema, "--checks", "all", "--max-examples", "40"])
        .args(["--seed", "20270115"])
        .arg("-H")
        .arg(format!("X-API-Key: {key}"))
        .env("PYTHONPATH", &contract)
        .env("SCHEMATHESIS_HOOKS", "hooks")
        .env("NO_COLOR", "1")
        .output()
        .await
        .expect("schemathesis (`st`) is on PATH; .ci/run installs it");
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{report}");
    for phase in ["Examples", "Coverage", "Fuzzing", "Stateful"] {
        assert!(
            report.contains(&format!("✅  {phase}")),
            "{phase} ran and passed:\n{report}"
        );
    }
    assert!(
        !report.contains("Missing test data"),
        "the links reached the image routes:\n{report}"
    );
}
