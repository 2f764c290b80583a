//! Compiles guest crates (handlers, examples, test fixtures) to
//! `wasm32-wasip2` components from a host crate's `build.rs`.
//!
//! Guests live in their own cargo workspaces, outside the host workspace, so
//! they are never built for the host target. This crate runs one nested
//! `cargo build` per guest workspace with a scrubbed environment (the outer
//! build's flags, profile and target settings must not leak into the guest
//! build) and a target directory of its own. It never writes into the source
//! tree.

use std::env;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The target every guest is compiled for.
pub const GUEST_TARGET: &str = "wasm32-wasip2";

/// A compiled guest component.
#[derive(Debug, Clone)]
pub struct BuiltGuest {
    /// The crate's package name, for example `data-cleanup`.
    pub package: String,
    /// Where the component was written.
    pub wasm: PathBuf,
}

/// Builds every member of the guest workspace at `workspace` (a directory
/// holding a `Cargo.toml` with a `[workspace]`) in release mode and returns
/// the components, one per member with a `cdylib` target (other members are
/// libraries the components share).
///
/// Also prints the `cargo:rerun-if-changed` lines for the workspace and for
/// the guest SDK, so the calling build script reruns when guest code changes.
///
/// # Panics
///
/// Panics with the nested cargo's output when the build fails: a build
/// script has no better way to report an error.
pub fn build_workspace(workspace: &Path) -> Vec<BuiltGuest> {
    let workspace =
        workspace.canonicalize().unwrap_or_else(|e| panic!("guest workspace {}: {e}", workspace.display()));
    let sdk = Path::new(env!("CARGO_MANIFEST_DIR")).join("../guest-sdk");
    for watched in [&workspace, &sdk.join("src"), &sdk.join("wit"), &sdk.join("Cargo.toml")] {
        println!("cargo:rerun-if-changed={}", watched.display());
    }

    let target_dir = guest_target_dir();
    let cargo = env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut command = Command::new(cargo);
    command
        .args(["build", "--release", "--workspace", "--target", GUEST_TARGET])
        .arg("--manifest-path")
        .arg(workspace.join("Cargo.toml"))
        .arg("--target-dir")
        .arg(&target_dir)
        .current_dir(&workspace);
    scrub_environment(&mut command);

    let output = command.output().unwrap_or_else(|e| panic!("cannot start cargo to build guests: {e}"));
    if !output.status.success() {
        panic!(
            "building guests in {} failed (is the {GUEST_TARGET} target installed? \
             `rustup target add {GUEST_TARGET}`)\n{}",
            workspace.display(),
            String::from_utf8_lossy(&output.stderr)
        );
    }

    let release = target_dir.join(GUEST_TARGET).join("release");
    workspace_members(&workspace)
        .into_iter()
        .filter(|package| is_component(&workspace.join(package)))
        .map(|package| {
            let wasm = release.join(format!("{}.wasm", package.replace('-', "_")));
            assert!(wasm.exists(), "guest {package} produced no {}", wasm.display());
            BuiltGuest { package, wasm }
        })
        .collect()
}

/// Writes `$OUT_DIR/<file>` with one `pub const NAME: &[u8]` per guest
/// (the package name in SCREAMING_SNAKE_CASE) holding the component bytes,
/// and returns its path for `include!`.
pub fn write_bytes_module(guests: &[BuiltGuest], file: &str) -> PathBuf {
    let mut source = String::new();
    for guest in guests {
        let konst = guest.package.replace('-', "_").to_uppercase();
        writeln!(
            source,
            "/// The `{}` component, compiled from source by the build script.\n\
             pub const {konst}: &[u8] = include_bytes!({:?});",
            guest.package, guest.wasm
        )
        .unwrap();
    }
    let path = PathBuf::from(env::var_os("OUT_DIR").expect("OUT_DIR is set for build scripts")).join(file);
    std::fs::write(&path, source).expect("write generated guest module");
    path
}

/// A target directory shared by every guest build of this host build, so the
/// guest SDK and its dependencies compile once. It sits beside the host
/// profile's own outputs (`target/<profile>/guests`), never in the source tree.
fn guest_target_dir() -> PathBuf {
    let out_dir = PathBuf::from(env::var_os("OUT_DIR").expect("OUT_DIR is set for build scripts"));
    // OUT_DIR is `<target>/<profile>/build/<package>-<hash>/out`.
    out_dir.ancestors().nth(3).expect("OUT_DIR has the usual depth").join("guests")
}

/// Removes what the outer cargo sets for the host build, which would
/// otherwise redirect or reconfigure the nested guest build.
fn scrub_environment(command: &mut Command) {
    for (key, _) in env::vars_os() {
        let Some(key) = key.to_str() else { continue };
        let inherited_build_setting = (key.starts_with("CARGO_") && key != "CARGO_HOME")
            || key.starts_with("RUSTC")
            || key.starts_with("RUSTDOC")
            || key == "RUSTFLAGS"
            || key == "TARGET"
            || key == "HOST"
            || key == "OUT_DIR"
            || key == "PROFILE"
            || key == "OPT_LEVEL"
            || key == "DEBUG"
            || key == "NUM_JOBS";
        if inherited_build_setting {
            command.env_remove(key);
        }
    }
}

/// Whether the member crate in `dir` builds a component (a `cdylib`).
fn is_component(dir: &Path) -> bool {
    let manifest = dir.join("Cargo.toml");
    std::fs::read_to_string(&manifest)
        .unwrap_or_else(|e| panic!("read {}: {e}", manifest.display()))
        .contains("\"cdylib\"")
}

/// The package names listed under `members` in the workspace manifest.
/// Members are plain directory names whose package name is the directory name.
fn workspace_members(workspace: &Path) -> Vec<String> {
    let manifest = std::fs::read_to_string(workspace.join("Cargo.toml"))
        .unwrap_or_else(|e| panic!("read {}: {e}", workspace.display()));
    let members = manifest
        .split_once("members")
        .and_then(|(_, rest)| rest.split_once('['))
        .and_then(|(_, rest)| rest.split_once(']'))
        .map(|(list, _)| list)
        .unwrap_or_else(|| panic!("{} has no members list", workspace.display()));
    members
        .split(',')
        .map(|m| m.trim().trim_matches('"'))
        .filter(|m| !m.is_empty())
        .map(|m| m.rsplit('/').next().unwrap_or(m).to_string())
        .collect()
}
