//! The README, executed: every ```` ```sh ```` block runs in order in one
//! shell against a fresh `objectos serve`, exactly as a newcomer would type
//! it. Blocks marked `no-run` install the binary, start a server (which
//! this test does itself), or run benchmarks.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::{objectos, repo};

/// The README's runnable shell blocks, in order.
fn runnable_blocks(readme: &str) -> Vec<String> {
    let mut blocks = Vec::new();
    let mut lines = readme.lines();
    while let Some(line) = lines.next() {
        if line.trim_end() == "```sh" {
            let block: Vec<&str> = lines.by_ref().take_while(|l| !l.starts_with("```")).collect();
            blocks.push(block.join("\n"));
        }
    }
    blocks
}

#[test]
fn the_readme_tour_runs_as_written() {
    let readme = std::fs::read_to_string(repo().join("README.md")).unwrap();
    let blocks = runnable_blocks(&readme);
    assert!(blocks.len() >= 8, "the tour's blocks are found: {}", blocks.len());

    // A fresh checkout: the repository's files linked into a new directory,
    // where the server creates its data and permissions.
    let dir = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(repo()).unwrap() {
        let name = entry.unwrap().file_name();
        if !["target", ".git", "objectos-data", "permissions"].contains(&name.to_str().unwrap_or("")) {
            std::os::unix::fs::symlink(repo().join(&name), dir.path().join(&name)).unwrap();
        }
    }
    let log = dir.path().join("serve.log");
    let mut server = objectos()
        .arg("serve")
        .current_dir(dir.path())
        .env_remove("OBJECTOS_DATA_DIR")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let (address, token) = started(&log);

    // `cargo run -p objectos -- ARGS` is the binary under test, already built.
    let mut script = String::from(
        "set -euo pipefail\n\
         cargo() { if [ \"${1:-} ${2:-} ${3:-} ${4:-}\" = 'run -p objectos --' ]; then shift 4; objectos \"$@\"; \
         else command cargo \"$@\"; fi; }\n",
    );
    for (index, block) in blocks.iter().enumerate() {
        script.push_str(&format!("echo '::block {index}' >&2\n{block}\n"));
    }
    let binary = std::path::Path::new(env!("CARGO_BIN_EXE_objectos")).parent().unwrap().to_path_buf();
    let path = format!("{}:{}", binary.display(), std::env::var("PATH").unwrap_or_default());
    let out = Command::new("bash")
        .arg("-c")
        .arg(&script)
        .current_dir(dir.path())
        .env("PATH", path)
        .env("OBJECTOS_SERVER", format!("http://{address}"))
        .env("OBJECTOS_TOKEN", &token)
        .env("OBJECTOS_CLIENT_CONFIG", dir.path().join("no-client-config.yaml"))
        .env("NO_COLOR", "1")
        .env_remove("OBJECTOS_DATA_DIR")
        .output()
        .unwrap();
    let _ = server.kill();
    let _ = server.wait();
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    if !out.status.success() {
        let failed: usize = stderr
            .lines()
            .rev()
            .find_map(|l| l.strip_prefix("::block "))
            .and_then(|n| n.parse().ok())
            .unwrap_or(0);
        panic!(
            "README block {failed} failed ({:?}):\n{}\n--- stdout\n{stdout}\n--- stderr\n{stderr}",
            out.status, blocks[failed]
        );
    }
    for shown in [
        "hello, Ada!",
        "hello, Grace!",
        "succeededOnAttempt",
        "exit code 4: the job timed out",
        "sha256 verified",
        "| name |",
        "inserted",
        "2 contacts.jsonl",
        "nightly-backup",
        "valid: ",
        "\"code\":\"unauthorized\"",
        "objectos_jobs{status=\"completed\"}",
    ] {
        assert!(stdout.contains(shown), "`{shown}` missing from the tour's output:\n{stdout}\n{stderr}");
    }
}

/// The listen address and the admin token from a first start's log.
fn started(log: &std::path::Path) -> (String, String) {
    let begun = Instant::now();
    loop {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        if let Some(at) = text.find("listen=") {
            let address = text[at + 7..].split_whitespace().next().unwrap().to_string();
            let token = text.split_whitespace().find(|w| w.starts_with("oos_")).expect("a token is printed");
            return (address, token.to_string());
        }
        assert!(begun.elapsed() < Duration::from_secs(180), "serve never listened:\n{text}");
        std::thread::sleep(Duration::from_millis(20));
    }
}
