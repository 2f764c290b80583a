//! Reloading the permission sets when their files change: the directory is
//! polled (names, sizes and modification times of its set files), which
//! works on every platform and filesystem and costs one `read_dir` a tick.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use super::PermissionsDir;

/// The set files of a directory: names, sizes and modification times.
pub(super) type Signature = Vec<(PathBuf, u64, Option<SystemTime>)>;

/// What the set files in `dir` look like now (empty if it is missing).
pub(super) fn signature(dir: &Path) -> Signature {
    let Ok(entries) = std::fs::read_dir(dir) else { return Vec::new() };
    let mut files: Signature = entries
        .filter_map(Result::ok)
        .filter(|e| super::sets::is_set_file(&e.path()))
        .filter_map(|e| {
            let meta = e.metadata().ok()?;
            Some((e.path(), meta.len(), meta.modified().ok()))
        })
        .collect();
    files.sort();
    files
}

impl PermissionsDir {
    /// Reloads and logs the result: the new count, or why the previous
    /// sets stay in force.
    pub fn reload_logged(&self, why: &str) {
        match self.reload() {
            Ok(count) => tracing::info!(sets = count, why, "permission sets reloaded"),
            Err(error) => {
                tracing::error!(%error, why, "permission sets not reloaded; the previous ones stay in force")
            }
        }
    }

    /// Checks the directory every `every` and reloads when a set file
    /// appears, changes or goes since the last load (or failed load: a
    /// broken file is reported once, not every tick). Stops when the task
    /// is aborted.
    pub fn watch(self: &Arc<Self>, every: Duration) -> Option<tokio::task::JoinHandle<()>> {
        let dir = self.dir()?.to_path_buf();
        let permissions = self.clone();
        Some(tokio::spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                // Files are read on a blocking thread: the API's requests
                // never wait behind a slow disk or a strange file.
                let permissions = permissions.clone();
                let dir = dir.clone();
                let _ = tokio::task::spawn_blocking(move || {
                    let changed =
                        *permissions.seen.lock().unwrap_or_else(|e| e.into_inner()) != signature(&dir);
                    if changed {
                        permissions.reload_logged("files changed");
                    }
                })
                .await;
            }
        }))
    }
}
