//! Snapshot comparison, shared by the end-to-end tests and the CLI's own
//! unit tests (which include this file by path).

use std::path::Path;

/// Compares `actual` with the file at `path`; `UPDATE_SNAPSHOTS=1` writes it instead.
pub fn assert_snapshot(path: &Path, actual: &str) {
    if std::env::var_os("UPDATE_SNAPSHOTS").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(path).unwrap_or_default();
    if expected != actual {
        let line = expected.lines().zip(actual.lines()).position(|(a, b)| a != b).unwrap_or(0);
        panic!(
            "{} differs from the output at line {}:\n  expected: {:?}\n  actual:   {:?}\n\
             (run with UPDATE_SNAPSHOTS=1 to accept the new output)",
            path.display(),
            line + 1,
            expected.lines().nth(line),
            actual.lines().nth(line)
        );
    }
}
