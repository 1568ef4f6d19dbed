//! Build script: locates the SeetaFace frontal model shipped inside the `rustface` crate
//! package and copies it into `OUT_DIR`, so the face detector can embed it with
//! `include_bytes!` and the service never reads a model file at run time.
//!
//! Nothing is downloaded: the model comes from `TRUSTPLANE_FACE_MODEL` if set, otherwise
//! from a `vendor/` directory or the cargo registry sources that already hold `rustface-0.1.7`.

use std::env;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

const MODEL_FILE: &str = "seeta_fd_frontal_v1.0.bin";
const RUSTFACE_DIR: &str = "rustface-0.1.7";
const OVERRIDE_VAR: &str = "TRUSTPLANE_FACE_MODEL";

fn main() -> ExitCode {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed={OVERRIDE_VAR}");
    println!("cargo:rerun-if-env-changed=CARGO_HOME");
    println!("cargo:rerun-if-env-changed=HOME");

    let Some(out_dir) = env::var_os("OUT_DIR").map(PathBuf::from) else {
        eprintln!("error: OUT_DIR is not set; this script must run under cargo");
        return ExitCode::FAILURE;
    };

    let source = match find_model() {
        Ok(path) => path,
        Err(searched) => {
            eprintln!(
                "error: face-detection model `{MODEL_FILE}` not found.\n\
                 Set {OVERRIDE_VAR}=/path/to/{MODEL_FILE}, or make sure the crate \
                 `{RUSTFACE_DIR}` is in the cargo registry (e.g. `cargo fetch`).\n\
                 Searched:\n  {}",
                searched
                    .iter()
                    .map(|p| p.display().to_string())
                    .collect::<Vec<_>>()
                    .join("\n  ")
            );
            return ExitCode::FAILURE;
        }
    };
    println!("cargo:rerun-if-changed={}", source.display());

    let target = out_dir.join(MODEL_FILE);
    if let Err(err) = fs::copy(&source, &target) {
        eprintln!(
            "error: copying face model {} to {}: {err}",
            source.display(),
            target.display()
        );
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}

/// Returns the model path, or every location that was tried.
fn find_model() -> Result<PathBuf, Vec<PathBuf>> {
    let mut searched = Vec::new();

    if let Some(path) = env::var_os(OVERRIDE_VAR).filter(|v| !v.is_empty()) {
        let path = PathBuf::from(path);
        if path.is_file() {
            return Ok(path);
        }
        // An explicit override that does not exist is a configuration error: do not
        // silently fall back to some other model.
        searched.push(path);
        return Err(searched);
    }

    // `cargo vendor` layouts keep the package next to the manifest.
    if let Some(manifest_dir) = env::var_os("CARGO_MANIFEST_DIR") {
        for dir in [RUSTFACE_DIR, "rustface"] {
            let candidate = Path::new(&manifest_dir)
                .join("vendor")
                .join(dir)
                .join("model")
                .join(MODEL_FILE);
            if candidate.is_file() {
                return Ok(candidate);
            }
            searched.push(candidate);
        }
    }

    let mut homes = Vec::new();
    if let Some(cargo_home) = env::var_os("CARGO_HOME") {
        homes.push(PathBuf::from(cargo_home));
    }
    if let Some(home) = env::var_os("HOME") {
        homes.push(Path::new(&home).join(".cargo"));
    }

    for home in homes {
        let registry_src = home.join("registry").join("src");
        let Ok(entries) = fs::read_dir(&registry_src) else {
            searched.push(registry_src.join("*").join(RUSTFACE_DIR));
            continue;
        };
        let mut indexes: Vec<PathBuf> = entries.flatten().map(|e| e.path()).collect();
        // Deterministic choice when several registry mirrors hold the crate.
        indexes.sort();
        for index in indexes {
            let candidate = index.join(RUSTFACE_DIR).join("model").join(MODEL_FILE);
            if candidate.is_file() {
                return Ok(candidate);
            }
            searched.push(candidate);
        }
    }
    Err(searched)
}
