//! Reading a backup through once, checking everything the manifest claims.

use std::cell::RefCell;
use std::fmt;
use std::io::{self, BufRead, BufReader, Read};
use std::rc::Rc;

use flate2::bufread::GzDecoder;
use sha2::{Digest, Sha256};

use crate::tar::TarReader;
use crate::{FORMAT, FORMAT_VERSION, MANIFEST, Manifest, hex};

/// Why an archive cannot be read.
#[derive(Debug)]
pub enum ArchiveError {
    /// The bytes are not an intact backup; the message says what is wrong.
    Corrupt(String),
    /// Reading failed for a reason of its own (the artifact store, or a
    /// visitor's host call), which may not last.
    Io(io::Error),
}

impl fmt::Display for ArchiveError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ArchiveError::Corrupt(what) => f.write_str(what),
            ArchiveError::Io(error) => write!(f, "{error}"),
        }
    }
}

impl std::error::Error for ArchiveError {}

fn corrupt(what: impl Into<String>) -> ArchiveError {
    ArchiveError::Corrupt(what.into())
}

/// One chunk of one object's records, as found in the archive.
pub struct Chunk<'a> {
    /// The object's directory ([`crate::object_dir`]); the manifest maps it
    /// to the object's name.
    pub dir: &'a str,
    /// The chunk's path in the archive.
    pub path: &'a str,
    /// Its lines, one record each, every one ending in `\n`.
    pub lines: &'a [u8],
    /// Bytes of the archive read so far, for progress.
    pub consumed: u64,
}

impl<'a> Chunk<'a> {
    /// Each line's text, without its newline, with its number from 1.
    pub fn records(&self) -> impl Iterator<Item = (usize, &'a [u8])> {
        let lines = self.lines.strip_suffix(b"\n").unwrap_or(self.lines);
        lines.split(|&b| b == b'\n').enumerate().map(|(i, line)| (i + 1, line))
    }
}

/// A scan's result.
#[derive(Debug)]
pub struct Scanned {
    /// The manifest, agreeing with the archive.
    pub manifest: Manifest,
    /// The archive's size.
    pub bytes: u64,
    /// The sha256 of the archive's bytes, to compare with what its store recorded.
    pub sha256: String,
}

/// The archive's bytes as they are read: how many, and their digest.
#[derive(Default)]
struct Consumed {
    bytes: u64,
    sha256: Sha256,
}

/// Feeds [`Consumed`] from everything read through it.
struct Counting<R> {
    input: R,
    consumed: Rc<RefCell<Consumed>>,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let read = self.input.read(buf)?;
        let mut consumed = self.consumed.borrow_mut();
        consumed.bytes += read as u64;
        consumed.sha256.update(&buf[..read]);
        Ok(read)
    }
}

/// What the archive held for one object directory.
struct Tally {
    dir: String,
    chunks: u32,
    records: u64,
    bytes: u64,
    sha256: Sha256,
}

/// The tar stream inside `input`, decompressed if it is gzip, and which it was.
enum Decompressed<R: Read> {
    Gzip(GzDecoder<BufReader<R>>),
    Plain(BufReader<R>),
}

impl<R: Read> Read for Decompressed<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Decompressed::Gzip(gzip) => gzip.read(buf),
            Decompressed::Plain(plain) => plain.read(buf),
        }
    }
}

fn decompressed<R: Read>(input: R) -> Result<(Decompressed<R>, &'static str), ArchiveError> {
    let mut input = BufReader::with_capacity(256 << 10, input);
    let head = input.fill_buf().map_err(ArchiveError::Io)?;
    if head.is_empty() {
        return Err(corrupt("the archive is empty"));
    }
    if head.starts_with(&[0x1f, 0x8b]) {
        Ok((Decompressed::Gzip(GzDecoder::new(input)), "gzip"))
    } else {
        Ok((Decompressed::Plain(input), "none"))
    }
}

/// `objects/<dir>/<NNNNNN>.jsonl` as its directory and chunk number.
fn chunk_of(path: &str) -> Option<(&str, u32)> {
    let (dir, file) = path.rsplit_once('/')?;
    let name = dir.strip_prefix("objects/")?;
    let number = file.strip_suffix(".jsonl")?;
    let valid = !name.is_empty() && !name.contains('/') && number.len() == 6;
    let number = number.parse().ok().filter(|_| valid)?;
    Some((dir, number))
}

/// Reads the archive in `input` (gzip-compressed or plain tar) to its end,
/// handing each chunk to `visit` as it comes, and returns the manifest once
/// the whole archive is known to agree with it: every entry where it
/// belongs, each object's chunks together and numbered without gaps, its
/// record count, byte count and sha256 as the manifest says, nothing
/// unlisted, the compression as stated, and, for gzip, the stream's own
/// checksum. A visitor's error stops the scan.
pub fn scan<R: Read>(
    input: R,
    mut visit: impl FnMut(&Chunk<'_>) -> Result<(), ArchiveError>,
) -> Result<Scanned, ArchiveError> {
    let consumed = Rc::new(RefCell::new(Consumed::default()));
    let (stream, compression) = decompressed(Counting { input, consumed: consumed.clone() })?;
    let mut tar = TarReader::new(stream);
    let mut tallies: Vec<Tally> = Vec::new();
    let mut manifest = None;
    let mut body = Vec::new();
    while let Some(path) = tar.next(&mut body)? {
        if manifest.is_some() {
            return Err(corrupt(format!("`{path}` follows {MANIFEST}, which must be the last entry")));
        }
        if path == MANIFEST {
            let parsed = serde_json::from_slice::<Manifest>(&body)
                .map_err(|e| corrupt(format!("{MANIFEST} is not a valid manifest: {e}")))?;
            manifest = Some(parsed);
            continue;
        }
        let (dir, number) = chunk_of(&path).ok_or_else(|| corrupt(format!("unexpected entry `{path}`")))?;
        if tallies.last().is_none_or(|t| t.dir != dir) {
            if tallies.iter().any(|t| t.dir == dir) {
                return Err(corrupt(format!("`{path}` is apart from the other chunks of `{dir}`")));
            }
            tallies.push(Tally {
                dir: dir.to_string(),
                chunks: 0,
                records: 0,
                bytes: 0,
                sha256: Sha256::new(),
            });
        }
        let tally = tallies.last_mut().expect("pushed above");
        if number != tally.chunks + 1 {
            return Err(corrupt(format!(
                "`{path}` follows chunk {} of `{dir}`: a chunk is missing or out of order",
                tally.chunks
            )));
        }
        if body.last() != Some(&b'\n') {
            return Err(corrupt(format!("`{path}` does not end with a complete line")));
        }
        tally.chunks = number;
        tally.records += body.iter().filter(|&&b| b == b'\n').count() as u64;
        tally.bytes += body.len() as u64;
        tally.sha256.update(&body);
        visit(&Chunk { dir, path: &path, lines: &body, consumed: consumed.borrow().bytes })?;
    }
    tar.finish()?;
    let manifest = manifest
        .ok_or_else(|| corrupt(format!("the archive has no {MANIFEST}: it is truncated or not a backup")))?;
    agree(&manifest, tallies, compression)?;
    let Consumed { bytes, sha256 } = Rc::into_inner(consumed).expect("the reader is gone").into_inner();
    Ok(Scanned { manifest, bytes, sha256: hex(&sha256.finalize()) })
}

/// Checks the manifest against what the archive held.
fn agree(manifest: &Manifest, mut tallies: Vec<Tally>, compression: &str) -> Result<(), ArchiveError> {
    if manifest.format != FORMAT {
        return Err(corrupt(format!("{MANIFEST}: format is `{}`, not `{FORMAT}`", manifest.format)));
    }
    if manifest.format_version > FORMAT_VERSION {
        return Err(corrupt(format!(
            "{MANIFEST}: format version {} was written by a newer engine; this one reads up to {FORMAT_VERSION}",
            manifest.format_version
        )));
    }
    if manifest.compression != compression {
        return Err(corrupt(format!(
            "{MANIFEST} says compression `{}`, but the archive's is `{compression}`",
            manifest.compression
        )));
    }
    let mut total = 0;
    for (index, object) in manifest.objects.iter().enumerate() {
        if manifest.objects[..index].iter().any(|o| o.name == object.name || o.path == object.path) {
            return Err(corrupt(format!("{MANIFEST} lists `{}` twice", object.name)));
        }
        let (chunks, records, bytes, sha256) = match tallies.iter().position(|t| t.dir == object.path) {
            Some(at) => {
                let t = tallies.swap_remove(at);
                (t.chunks, t.records, t.bytes, hex(&t.sha256.finalize()))
            }
            None => (0, 0, 0, hex(&Sha256::digest(b""))),
        };
        let name = &object.name;
        let differs = |what: &str, found: String, listed: String| {
            corrupt(format!("`{name}`: the archive holds {found} {what}, the manifest says {listed}"))
        };
        if records != object.records {
            return Err(differs("records", records.to_string(), object.records.to_string()));
        }
        if chunks != object.chunks {
            return Err(differs("chunks", chunks.to_string(), object.chunks.to_string()));
        }
        if bytes != object.bytes {
            return Err(differs("bytes", bytes.to_string(), object.bytes.to_string()));
        }
        if sha256 != object.sha256 {
            return Err(corrupt(format!(
                "`{name}`: its records' sha256 is {sha256}, the manifest says {}",
                object.sha256
            )));
        }
        total += records;
    }
    if let Some(extra) = tallies.first() {
        return Err(corrupt(format!("`{}` holds records the manifest does not list", extra.dir)));
    }
    if total != manifest.records {
        return Err(corrupt(format!(
            "{MANIFEST}: records is {}, its objects add up to {total}",
            manifest.records
        )));
    }
    Ok(())
}
