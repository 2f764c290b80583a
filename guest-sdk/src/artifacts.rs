//! Files a job produces (reports, backups) and reads back, streamed so
//! they may be far larger than guest memory.
//!
//! Writing needs the `artifacts` capability (system permission
//! `artifacts.write`); reading needs `artifacts-read` (`artifacts.read`).
//!
//! ```no_run
//! use std::io::Write;
//! use objectos_guest::artifacts::ArtifactWriter;
//!
//! # fn main() -> Result<(), objectos_guest::Error> {
//! let mut csv = ArtifactWriter::create("report.csv", "text/csv")?;
//! writeln!(csv, "name,amount")?;
//! writeln!(csv, "Ada,42")?;
//! let info = csv.finish()?;
//! objectos_guest::info!("wrote {} bytes, sha256 {}", info.size, info.sha256);
//! # Ok(()) }
//! ```

use std::io;

use crate::HostError;
use crate::bindings::objectos::jobs::{artifact_types, artifacts as write, artifacts_read as read};

/// Bytes are handed to the engine in chunks of this size.
const CHUNK: usize = 64 * 1024;

/// A stored artifact.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArtifactInfo {
    /// Its identifier.
    pub id: String,
    /// Its name, for example `report.csv`.
    pub name: String,
    /// Its media type.
    pub content_type: String,
    /// Its length in bytes.
    pub size: u64,
    /// The lowercase hex sha256 of its bytes.
    pub sha256: String,
}

impl From<artifact_types::ArtifactInfo> for ArtifactInfo {
    fn from(info: artifact_types::ArtifactInfo) -> Self {
        Self {
            id: info.id,
            name: info.name,
            content_type: info.content_type,
            size: info.size,
            sha256: info.sha256,
        }
    }
}

fn io_error(error: HostError) -> io::Error {
    io::Error::other(error)
}

/// Writes a new artifact through [`std::io::Write`], buffering 64 KiB at a
/// time. Call [`finish`](Self::finish) to keep it; dropping the writer
/// discards what was written.
pub struct ArtifactWriter {
    writer: write::Writer,
    buffer: Vec<u8>,
}

impl ArtifactWriter {
    /// Starts an artifact named `name` with media type `content_type`.
    pub fn create(name: &str, content_type: &str) -> Result<Self, HostError> {
        Ok(Self { writer: write::create(name, content_type)?, buffer: Vec::with_capacity(CHUNK) })
    }

    fn send(&mut self) -> Result<(), HostError> {
        if !self.buffer.is_empty() {
            self.writer.write(&self.buffer)?;
            self.buffer.clear();
        }
        Ok(())
    }

    /// Writes what is buffered, seals the artifact and describes it.
    pub fn finish(mut self) -> Result<ArtifactInfo, HostError> {
        self.send()?;
        Ok(self.writer.finish()?.into())
    }
}

impl io::Write for ArtifactWriter {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        if self.buffer.len() + bytes.len() > CHUNK {
            self.send().map_err(io_error)?;
        }
        if bytes.len() >= CHUNK {
            self.writer.write(bytes).map_err(|e| io_error(e.into()))?;
        } else {
            self.buffer.extend_from_slice(bytes);
        }
        Ok(bytes.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.send().map_err(io_error)
    }
}

/// Reads an artifact through [`std::io::Read`].
pub struct ArtifactReader {
    reader: read::Reader,
}

impl ArtifactReader {
    /// Opens the artifact `id` at its first byte.
    pub fn open(id: &str) -> Result<Self, HostError> {
        Ok(Self { reader: read::open(id)? })
    }

    /// Describes the artifact `id`.
    pub fn info(id: &str) -> Result<ArtifactInfo, HostError> {
        Ok(read::info(id)?.into())
    }
}

impl io::Read for ArtifactReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let want = buf.len().min(CHUNK * 16) as u32;
        let chunk = self.reader.read(want).map_err(|e| io_error(e.into()))?;
        buf[..chunk.len()].copy_from_slice(&chunk);
        Ok(chunk.len())
    }
}
