//! The built client the proxy serves to the browser, built by the tests themselves.
//!
//! Once per test process, `trunk build --release` (the README's run command: the same
//! Trunk.toml, hook, assets, pinned tools and wasm-opt, so the tests run the bundle that is
//! deployed) builds the client into `target/e2e-client/dist`.
//! It uses its own `CARGO_TARGET_DIR` (`target/e2e-client/cargo`): `cargo test` holds the lock
//! of the main target dir while tests run, so a cargo inside a test must use another one. A
//! file lock keeps two test processes from building at once. trunk and cargo are incremental,
//! so a rebuild with nothing changed takes seconds.
//!
//! `E2E_CLIENT_DIST=DIR` skips the build and serves a bundle built beforehand.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use super::{artifacts_dir, workspace_root};

/// Returns the directory of the built client, building it on first use.
pub(crate) fn client_dist() -> PathBuf {
    static DIST: OnceLock<PathBuf> = OnceLock::new();
    DIST.get_or_init(|| match std::env::var_os("E2E_CLIENT_DIST") {
        Some(dist) => PathBuf::from(dist),
        None => build(),
    })
    .clone()
}

fn build() -> PathBuf {
    let root = workspace_root();
    let work = root.join("target").join("e2e-client");
    std::fs::create_dir_all(&work).expect("create target/e2e-client");
    let dist = work.join("dist");
    let lock = File::create(work.join("build.lock")).expect("create the build lock file");
    lock.lock().expect("take the build lock");

    let started = std::time::Instant::now();
    let output = Command::new("trunk")
        .current_dir(root)
        .env("CARGO_TARGET_DIR", work.join("cargo"))
        .env("PATH", path_with_local_tools(root))
        // trunk reads NO_COLOR as its own `--no-color` flag, which takes only true or false.
        .env("NO_COLOR", "true")
        .arg("build")
        .arg("--release=true")
        .arg("--dist")
        .arg(&dist)
        .output()
        .expect("trunk runs (scripts/install-tools.sh installs it)");
    let log = artifacts_dir().join("trunk-build.log");
    let _ = std::fs::write(
        &log,
        [output.stdout.as_slice(), output.stderr.as_slice()].concat(),
    );
    assert!(
        output.status.success(),
        "trunk build failed ({}); its output is in {}:\n{}",
        output.status,
        log.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    for asset in ["index.html", "audio.wasm", "worklets.js"] {
        assert!(
            dist.join(asset).is_file(),
            "trunk build produced no {asset} in {}",
            dist.display()
        );
    }
    eprintln!(
        "built the client into {} in {:.1?}",
        dist.display(),
        started.elapsed()
    );
    dist
}

/// `PATH` with the repo's npm tools (`node_modules/.bin`: binaryen's wasm-opt) first.
fn path_with_local_tools(root: &Path) -> std::ffi::OsString {
    let local = root.join("node_modules").join(".bin");
    let mut paths = vec![local];
    if let Some(path) = std::env::var_os("PATH") {
        paths.extend(std::env::split_paths(&path));
    }
    std::env::join_paths(paths).expect("PATH entries hold no separator")
}
