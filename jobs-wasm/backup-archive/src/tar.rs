//! Just enough POSIX ustar for backups: regular files written front to
//! back, and read back with every header checked.

use std::io::{self, Read, Write};

use crate::ArchiveError;

/// Tar's unit: headers and bodies are padded to whole blocks.
pub const BLOCK: usize = 512;

/// The largest entry a reader accepts. A writer's chunks stay far below it
/// (one chunk holds at most 8 MiB and one record more), so a larger size
/// can only come from a corrupt header, and memory stays bounded.
pub const MAX_ENTRY: u64 = 256 << 20;

const ZEROS: [u8; BLOCK] = [0; BLOCK];

/// Writes entries to `out`, then the end-of-archive marker.
pub struct TarWriter<W: Write> {
    out: W,
    mtime: u64,
}

impl<W: Write> TarWriter<W> {
    /// A writer whose entries are all dated `mtime` (seconds since the epoch).
    pub fn new(out: W, mtime: u64) -> Self {
        Self { out, mtime }
    }

    /// Appends a regular file at `path` holding `body`.
    pub fn append(&mut self, path: &str, body: &[u8]) -> io::Result<()> {
        let header = header(path, body.len() as u64, self.mtime).map_err(io::Error::other)?;
        self.out.write_all(&header)?;
        self.out.write_all(body)?;
        self.out.write_all(&ZEROS[..padding(body.len() as u64)])
    }

    /// Writes the end-of-archive marker (two zero blocks) and returns the output.
    pub fn finish(mut self) -> io::Result<W> {
        self.out.write_all(&ZEROS)?;
        self.out.write_all(&ZEROS)?;
        Ok(self.out)
    }
}

fn padding(size: u64) -> usize {
    (BLOCK - (size % BLOCK as u64) as usize) % BLOCK
}

/// A ustar header for a regular file. A path longer than the 100-byte name
/// field is split at a `/` into the 155-byte prefix field and the name.
fn header(path: &str, size: u64, mtime: u64) -> Result<[u8; BLOCK], String> {
    let (prefix, name) =
        split_path(path).ok_or_else(|| format!("path `{path}` is too long for a tar header"))?;
    let mut h = [0u8; BLOCK];
    h[..name.len()].copy_from_slice(name.as_bytes());
    octal(&mut h[100..108], 0o644);
    octal(&mut h[108..116], 0);
    octal(&mut h[116..124], 0);
    octal(&mut h[124..136], size);
    octal(&mut h[136..148], mtime);
    h[156] = b'0';
    h[257..263].copy_from_slice(b"ustar\0");
    h[263..265].copy_from_slice(b"00");
    h[345..345 + prefix.len()].copy_from_slice(prefix.as_bytes());
    let field = checksum_field(checksum(&h));
    h[148..156].copy_from_slice(&field);
    Ok(h)
}

/// The checksum field as most writers fill it: six octal digits, NUL, space.
fn checksum_field(sum: u64) -> [u8; 8] {
    let mut field = [0u8; 8];
    octal(&mut field[..7], sum);
    field[7] = b' ';
    field
}

fn split_path(path: &str) -> Option<(&str, &str)> {
    if path.len() <= 100 {
        return Some(("", path));
    }
    path.match_indices('/')
        .map(|(at, _)| (&path[..at], &path[at + 1..]))
        .find(|(prefix, name)| prefix.len() <= 155 && !name.is_empty() && name.len() <= 100)
}

/// Fills `field` with zero-padded octal digits and a final NUL.
fn octal(field: &mut [u8], value: u64) {
    let digits = format!("{value:0width$o}", width = field.len() - 1);
    field[..digits.len()].copy_from_slice(digits.as_bytes());
    field[field.len() - 1] = 0;
}

/// The sum of the header's bytes with the checksum field read as spaces.
fn checksum(header: &[u8; BLOCK]) -> u64 {
    header.iter().enumerate().map(|(i, &b)| if (148..156).contains(&i) { 32 } else { u64::from(b) }).sum()
}

fn parse_octal(field: &[u8]) -> Option<u64> {
    let text = std::str::from_utf8(field).ok()?;
    let digits = text.trim_matches(|c| c == '\0' || c == ' ');
    if digits.is_empty() {
        return None;
    }
    u64::from_str_radix(digits, 8).ok()
}

fn text(field: &[u8]) -> Result<&str, ()> {
    let end = field.iter().position(|&b| b == 0).unwrap_or(field.len());
    std::str::from_utf8(&field[..end]).map_err(drop)
}

/// Reads regular files from a tar stream, checking each header.
pub struct TarReader<R: Read> {
    input: R,
    /// The path of the last entry read, to say where a problem is.
    last: Option<String>,
}

impl<R: Read> TarReader<R> {
    /// A reader over `input`.
    pub fn new(input: R) -> Self {
        Self { input, last: None }
    }

    fn corrupt(&self, what: impl std::fmt::Display) -> ArchiveError {
        let place = match &self.last {
            Some(path) => format!("after `{path}`"),
            None => "at the start".to_string(),
        };
        ArchiveError::Corrupt(format!("{what} ({place})"))
    }

    fn fill(&mut self, buf: &mut [u8]) -> Result<(), ArchiveError> {
        self.input.read_exact(buf).map_err(|e| self.io_error(e))
    }

    /// An input error as a corrupt archive where the input says so (a
    /// compressed stream's own checks), otherwise as the input's failure.
    fn io_error(&self, e: io::Error) -> ArchiveError {
        match e.kind() {
            io::ErrorKind::UnexpectedEof => self.corrupt("the archive ends early: it is truncated"),
            io::ErrorKind::InvalidInput | io::ErrorKind::InvalidData => {
                self.corrupt(format!("the compressed stream is corrupt: {e}"))
            }
            _ => ArchiveError::Io(e),
        }
    }

    /// Reads the next entry's body into `body` and returns its path, or
    /// `None` at the end-of-archive marker. Anything but a regular file, a
    /// bad checksum or an oversized entry is `Corrupt`.
    pub fn next(&mut self, body: &mut Vec<u8>) -> Result<Option<String>, ArchiveError> {
        let mut h = [0u8; BLOCK];
        let first = self.last.is_none();
        match self.fill(&mut h) {
            Err(ArchiveError::Corrupt(_)) if first => {
                return Err(
                    self.corrupt("the archive ends before its first entry: it is truncated or not a backup")
                );
            }
            other => other?,
        }
        if first && &h[257..262] != b"ustar" {
            return Err(ArchiveError::Corrupt(
                "it is not a tar archive (a backup is one, gzip-compressed or not)".into(),
            ));
        }
        if h == ZEROS {
            self.fill(&mut h)?;
            if h != ZEROS {
                return Err(self.corrupt("a lone zero block inside the archive"));
            }
            return Ok(None);
        }
        if &h[257..262] != b"ustar" {
            return Err(self.corrupt("an entry header is not a ustar header"));
        }
        // Writers end the digits differently (NUL, space or both); any is read.
        if parse_octal(&h[148..156]) != Some(checksum(&h)) {
            return Err(self.corrupt("an entry header fails its checksum"));
        }
        if !matches!(h[156], b'0' | 0) {
            return Err(self.corrupt(format!("an entry is not a regular file (type `{}`)", h[156] as char)));
        }
        let (Ok(name), Ok(prefix)) = (text(&h[..100]), text(&h[345..500])) else {
            return Err(self.corrupt("an entry's path is not UTF-8"));
        };
        let path = if prefix.is_empty() { name.to_string() } else { format!("{prefix}/{name}") };
        let size = parse_octal(&h[124..136]).ok_or_else(|| self.corrupt("an entry's size is unreadable"))?;
        if size > MAX_ENTRY {
            return Err(
                self.corrupt(format!("entry `{path}` claims {size} bytes, more than any backup writes"))
            );
        }
        self.last = Some(path.clone());
        body.clear();
        body.resize(size as usize, 0);
        self.fill(body)?;
        let mut pad = [0u8; BLOCK];
        let pad = &mut pad[..padding(size)];
        self.fill(pad)?;
        if pad.iter().any(|&b| b != 0) {
            return Err(self.corrupt(format!("the padding after `{path}` is not zeros")));
        }
        Ok(Some(path))
    }

    /// Reads what follows the end-of-archive marker to the end of the
    /// input, which must be zeros (tar pads archives to whole records). The
    /// end of a compressed stream is where its checksum is checked.
    pub fn finish(mut self) -> Result<(), ArchiveError> {
        let mut buf = [0u8; 8 * BLOCK];
        loop {
            let read = match self.input.read(&mut buf) {
                Ok(read) => read,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(self.io_error(e)),
            };
            if read == 0 {
                return Ok(());
            }
            if buf[..read].iter().any(|&b| b != 0) {
                return Err(self.corrupt("data follows the end-of-archive marker"));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn archive(entries: &[(&str, &[u8])]) -> Vec<u8> {
        let mut tar = TarWriter::new(Vec::new(), 1_700_000_000);
        for (path, body) in entries {
            tar.append(path, body).unwrap();
        }
        tar.finish().unwrap()
    }

    fn read_all(bytes: &[u8]) -> Result<Vec<(String, Vec<u8>)>, ArchiveError> {
        let mut reader = TarReader::new(bytes);
        let mut entries = Vec::new();
        let mut body = Vec::new();
        while let Some(path) = reader.next(&mut body)? {
            entries.push((path, body.clone()));
        }
        reader.finish()?;
        Ok(entries)
    }

    #[test]
    fn entries_read_back_as_written() {
        let long = format!("objects/{}/000001.jsonl", "x".repeat(120));
        let bytes = archive(&[("a.jsonl", b"{}\n"), ("empty", b""), (&long, &[7u8; 1025])]);
        assert_eq!(bytes.len() % BLOCK, 0);
        let entries = read_all(&bytes).unwrap();
        assert_eq!(entries.len(), 3);
        assert_eq!(entries[0], ("a.jsonl".to_string(), b"{}\n".to_vec()));
        assert_eq!(entries[1].1, b"");
        assert_eq!(entries[2], (long, vec![7u8; 1025]));
    }

    #[test]
    fn a_changed_header_byte_or_a_cut_is_corrupt() {
        let bytes = archive(&[("a.jsonl", b"{\"id\":\"1\"}\n")]);
        // Bytes 154 and 155 end the checksum's digits: NUL or space mean the same.
        for at in (0..BLOCK).filter(|at| !(154..156).contains(at)) {
            let mut bad = bytes.clone();
            bad[at] ^= 0x20;
            assert!(matches!(read_all(&bad), Err(ArchiveError::Corrupt(_))), "byte {at}");
        }
        for cut in [0, 100, BLOCK, BLOCK + 3, bytes.len() - 1] {
            match read_all(&bytes[..cut]) {
                Err(ArchiveError::Corrupt(message)) => assert!(message.contains("truncated"), "{message}"),
                other => panic!("cut at {cut}: {other:?}"),
            }
        }
    }

    #[test]
    fn a_path_too_long_for_the_header_is_refused() {
        let mut tar = TarWriter::new(Vec::new(), 0);
        assert!(tar.append(&"y".repeat(300), b"").is_err());
    }
}
