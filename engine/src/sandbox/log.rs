//! The job log: lines from the `log` interface and from the guest's stdout
//! and stderr, kept up to a byte cap.
//!
//! Past the cap, lines are counted and dropped and one truncation marker is
//! kept: a chatty guest fills its log, never the host's memory, and is never
//! stopped for it. The last bytes of stderr are kept apart from the cap, so a
//! trap can always be explained by what the guest printed last.

use std::collections::VecDeque;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use tokio::io::AsyncWrite;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamResult};

/// How many trailing bytes of stderr are kept to explain a trap.
const STDERR_TAIL_BYTES: usize = 2048;
/// A single line longer than this is split, so one huge write cannot defeat the cap.
const MAX_LINE_BYTES: usize = 16 * 1024;

/// Severity of a log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    /// Very detailed tracing.
    Trace,
    /// Debugging detail.
    Debug,
    /// Normal progress; also everything printed to stdout.
    Info,
    /// Something unexpected that the handler coped with.
    Warn,
    /// A failure; also everything printed to stderr.
    Error,
}

/// Where a log line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    /// The `log` interface.
    Log,
    /// The guest's standard output.
    Stdout,
    /// The guest's standard error.
    Stderr,
    /// The engine itself (the truncation marker).
    Engine,
}

/// One line of a job's log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogLine {
    /// Milliseconds since the run started.
    pub at_ms: u64,
    /// Severity.
    pub level: Level,
    /// Origin.
    pub source: Source,
    /// The text, without a trailing newline.
    pub message: String,
}

/// What a run logged.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogRecord {
    /// The lines kept, in order.
    pub lines: Vec<LogLine>,
    /// Bytes dropped past the cap (0 when nothing was lost).
    pub dropped_bytes: u64,
}

/// A job's log, shared between the host functions and the stdio streams.
#[derive(Clone)]
pub struct JobLog {
    inner: Arc<Mutex<LogState>>,
}

struct LogState {
    started: Instant,
    cap: usize,
    used: usize,
    record: LogRecord,
    partial_stdout: Vec<u8>,
    partial_stderr: Vec<u8>,
    stderr_tail: VecDeque<u8>,
}

impl JobLog {
    /// A log that keeps at most `cap` bytes of messages.
    pub fn new(cap: usize) -> Self {
        Self {
            inner: Arc::new(Mutex::new(LogState {
                started: Instant::now(),
                cap,
                used: 0,
                record: LogRecord::default(),
                partial_stdout: Vec::new(),
                partial_stderr: Vec::new(),
                stderr_tail: VecDeque::new(),
            })),
        }
    }

    fn lock(&self) -> MutexGuard<'_, LogState> {
        // A panic while holding the lock leaves plain data behind; keep going.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Appends a line from the `log` interface.
    pub fn line(&self, level: Level, message: &str) {
        self.lock().push(level, Source::Log, message);
    }

    /// Appends raw bytes the guest wrote to stdout or stderr.
    fn write_stream(&self, source: Source, bytes: &[u8]) {
        let mut state = self.lock();
        if source == Source::Stderr {
            state.remember_stderr(bytes);
        }
        state.append_stream(source, bytes);
    }

    /// The last bytes the guest wrote to stderr, trimmed, if any.
    pub fn stderr_tail(&self) -> Option<String> {
        let state = self.lock();
        let (a, b) = state.stderr_tail.as_slices();
        let tail = String::from_utf8_lossy(&[a, b].concat()).trim().to_string();
        (!tail.is_empty()).then_some(tail)
    }

    /// Flushes partial lines and returns everything logged.
    pub fn finish(&self) -> LogRecord {
        let mut state = self.lock();
        for source in [Source::Stdout, Source::Stderr] {
            let partial = std::mem::take(state.partial(source));
            if !partial.is_empty() {
                state.push(source_level(source), source, &String::from_utf8_lossy(&partial));
            }
        }
        std::mem::take(&mut state.record)
    }

    /// A WASI stdout or stderr stream feeding this log.
    pub fn stream(&self, source: Source) -> LogStream {
        LogStream { log: self.clone(), source }
    }
}

fn source_level(source: Source) -> Level {
    if source == Source::Stderr { Level::Error } else { Level::Info }
}

impl LogState {
    fn partial(&mut self, source: Source) -> &mut Vec<u8> {
        if source == Source::Stderr { &mut self.partial_stderr } else { &mut self.partial_stdout }
    }

    fn remember_stderr(&mut self, bytes: &[u8]) {
        let keep = &bytes[bytes.len().saturating_sub(STDERR_TAIL_BYTES)..];
        self.stderr_tail.extend(keep);
        while self.stderr_tail.len() > STDERR_TAIL_BYTES {
            self.stderr_tail.pop_front();
        }
    }

    fn append_stream(&mut self, source: Source, mut bytes: &[u8]) {
        // Once full, only count: no buffering, no line splitting.
        if self.used >= self.cap {
            self.record.dropped_bytes += bytes.len() as u64;
            return;
        }
        while let Some(newline) = bytes.iter().position(|b| *b == b'\n') {
            let mut line = std::mem::take(self.partial(source));
            line.extend_from_slice(&bytes[..newline]);
            self.push(source_level(source), source, &String::from_utf8_lossy(&line));
            bytes = &bytes[newline + 1..];
        }
        let partial = self.partial(source);
        partial.extend_from_slice(bytes);
        if partial.len() >= MAX_LINE_BYTES {
            let line = std::mem::take(partial);
            self.push(source_level(source), source, &String::from_utf8_lossy(&line));
        }
    }

    fn push(&mut self, level: Level, source: Source, message: &str) {
        if self.used >= self.cap {
            self.record.dropped_bytes += message.len() as u64;
            return;
        }
        let at_ms = self.started.elapsed().as_millis() as u64;
        if self.used + message.len() > self.cap {
            self.used = self.cap;
            self.record.dropped_bytes += message.len() as u64;
            self.record.lines.push(LogLine {
                at_ms,
                level: Level::Warn,
                source: Source::Engine,
                message: format!("log truncated: reached its cap of {} bytes", self.cap),
            });
            return;
        }
        self.used += message.len();
        self.record.lines.push(LogLine { at_ms, level, source, message: message.to_string() });
    }
}

/// A WASI output stream (stdout or stderr) that appends to a [`JobLog`].
/// It accepts every write, so printing never traps or blocks the guest.
#[derive(Clone)]
pub struct LogStream {
    log: JobLog,
    source: Source,
}

/// The most bytes the guest may hand over in one write.
const WRITE_PERMIT: usize = 64 * 1024;

impl IsTerminal for LogStream {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for LogStream {
    fn async_stream(&self) -> Box<dyn AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }

    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }
}

#[async_trait::async_trait]
impl Pollable for LogStream {
    async fn ready(&mut self) {}
}

impl OutputStream for LogStream {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        self.log.write_stream(self.source, &bytes);
        Ok(())
    }

    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        Ok(WRITE_PERMIT)
    }
}

impl AsyncWrite for LogStream {
    fn poll_write(self: Pin<&mut Self>, _: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        self.log.write_stream(self.source, buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_bytes_become_lines() {
        let log = JobLog::new(1024);
        log.write_stream(Source::Stdout, b"hello\nwor");
        log.write_stream(Source::Stdout, b"ld\npartial");
        let record = log.finish();
        let messages: Vec<_> = record.lines.iter().map(|l| l.message.as_str()).collect();
        assert_eq!(messages, ["hello", "world", "partial"]);
    }

    #[test]
    fn cap_truncates_with_one_marker() {
        let log = JobLog::new(10);
        for _ in 0..100 {
            log.line(Level::Info, "0123456");
        }
        let record = log.finish();
        assert_eq!(record.lines.len(), 2);
        assert_eq!(record.lines[1].source, Source::Engine);
        assert!(record.lines[1].message.contains("truncated"));
        assert_eq!(record.dropped_bytes, 99 * 7);
    }

    #[test]
    fn stderr_tail_survives_truncation() {
        let log = JobLog::new(4);
        log.write_stream(Source::Stderr, b"a long line that is dropped\npanicked at lib.rs: boom\n");
        assert!(log.stderr_tail().unwrap().ends_with("panicked at lib.rs: boom"));
    }
}
