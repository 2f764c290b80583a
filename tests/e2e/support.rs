//! Shared helpers: a sandbox, fixture files, and running the binary.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use objectos_engine::principal::Principal;
use objectos_engine::sandbox::{CapabilitySet, JobRun, Outcome, Sandbox, SandboxConfig, Services};
use serde_json::Value;

pub fn sandbox() -> &'static Sandbox {
    static SANDBOX: OnceLock<Sandbox> = OnceLock::new();
    SANDBOX.get_or_init(|| Sandbox::new(SandboxConfig::new().max_concurrent_jobs(8)).expect("sandbox builds"))
}

/// Runs `wasm` once with `input`, every capability granted, on `services`.
pub async fn run_with(wasm: &[u8], input: &Value, services: &Services) -> Outcome {
    let handler = sandbox().compile(wasm).expect("fixture compiles");
    let mut job = JobRun::new("job-e2e", "fixture", Principal::new("ada", &["admin"]), input.to_string());
    job.grants = CapabilitySet::all();
    job.services = services.clone();
    sandbox().run(&handler, job).await
}

/// The result of a completed run as JSON; panics with the outcome otherwise.
pub fn completed(outcome: &Outcome) -> Value {
    match &outcome.kind {
        objectos_engine::sandbox::OutcomeKind::Completed { result } => serde_json::from_str(result).unwrap(),
        other => panic!("expected completion, got {other:?}\nlog: {:#?}", outcome.log.lines),
    }
}

/// Writes `bytes` to `dir/name` and returns the path.
pub fn write_file(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    path
}

/// The `objectos` binary. A server it starts listens on a free port, so
/// tests can run side by side.
pub fn objectos() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_objectos"));
    command.env("OBJECTOS_LISTEN", "127.0.0.1:0");
    command
}

/// The repository root.
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).ancestors().nth(2).unwrap().to_path_buf()
}

/// Writes permission sets into `dir` under which profile `admin` holds
/// every capability: all actions on `contacts` and every system permission.
pub fn write_admin_permissions(dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    write_file(
        dir,
        "contacts.yaml",
        b"name: contacts-admin\nobjectName: contacts\nprofiles:\n  admin: { allowRead: true, allowCreate: true, \
          allowEdit: true, allowDelete: true }\n",
    );
    write_file(
        dir,
        "system.yaml",
        b"name: admins\nsystem:\n  profiles:\n    admin: [records.import, artifacts.write, artifacts.read, \
          jobs.impersonate]\n",
    );
}
