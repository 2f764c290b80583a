//! The backup archive, written by the `backup` built-in and read by
//! `restore`.
//!
//! A backup is a POSIX (ustar) tar archive, gzip-compressed unless asked
//! otherwise, so `tar -xzf` opens it:
//!
//! ```text
//! objects/contacts/000001.jsonl   records as JSON Lines, in id order,
//! objects/contacts/000002.jsonl   at most 1,000 records or 8 MiB a chunk
//! objects/tickets/000001.jsonl
//! manifest.json                   last: counts and checksums are known only at the end
//! ```
//!
//! Chunks let the writer stream: a tar entry's size comes before its bytes,
//! so each chunk is buffered, never a whole object. The manifest
//! ([`Manifest`]) lists each object with its directory, record and chunk
//! counts, byte count and the sha256 of its records' lines taken together,
//! in order. [`scan`] reads an archive through once, checking all of that,
//! and hands each chunk to a visitor.

mod manifest;
mod scan;
pub mod tar;
mod write;

pub use manifest::{FORMAT, FORMAT_VERSION, Manifest, Metadata, ObjectSummary, Scope};
pub use scan::{ArchiveError, Chunk, Scanned, scan};
pub use write::ArchiveWriter;

/// The manifest's path in the archive.
pub const MANIFEST: &str = "manifest.json";

/// Records in one chunk, at most.
pub const CHUNK_RECORDS: usize = 1000;

/// Bytes in one chunk, past which it is closed early (a chunk always holds
/// at least one record, however large).
pub const CHUNK_BYTES: usize = 8 << 20;

/// The directory of `object`'s chunks: `objects/<name>`, with every byte
/// other than ASCII letters, digits, `_` and `-` percent-encoded, so no
/// object name can make a path that climbs out or collides.
pub fn object_dir(object: &str) -> String {
    let mut dir = String::from("objects/");
    for byte in object.bytes() {
        if byte.is_ascii_alphanumeric() || byte == b'_' || byte == b'-' {
            dir.push(byte as char);
        } else {
            dir.push_str(&format!("%{byte:02X}"));
        }
    }
    dir
}

/// The path of chunk `number` (from 1) of the object in `dir`.
pub fn chunk_path(dir: &str, number: u32) -> String {
    format!("{dir}/{number:06}.jsonl")
}

/// Lowercase hex, as the engine names digests.
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    bytes
        .iter()
        .flat_map(|b| [DIGITS[usize::from(b >> 4)] as char, DIGITS[usize::from(b & 15)] as char])
        .collect()
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use flate2::Compression;
    use flate2::write::GzEncoder;

    use super::*;

    fn manifest(compression: &str) -> Manifest {
        Manifest {
            format: FORMAT.into(),
            format_version: FORMAT_VERSION,
            engine: "objectos-jobs test".into(),
            created_at: "2026-11-29T10:00:00.000Z".into(),
            compression: compression.into(),
            scope: Scope { user_id: "ops".into(), profiles: vec!["admin".into()], note: String::new() },
            objects: Vec::new(),
            records: 0,
            metadata: None,
        }
    }

    /// `contacts` contacts (a chunk per 1,000), no tickets, three records of `a/b`.
    fn fill<W: Write>(out: W, compression: &str, contacts: usize) -> (W, Manifest) {
        let mut archive = ArchiveWriter::new(out, 1_700_000_000);
        archive.begin_object("contacts").unwrap();
        for i in 0..contacts {
            archive.record(&format!(r#"{{"id":"c{i:05}","name":"N\n{i}","n":{i}}}"#)).unwrap();
        }
        archive.begin_object("tickets").unwrap();
        archive.begin_object("a/b").unwrap();
        for _ in 0..3 {
            archive.record(r#"{"id":"x","k":[1],"z":null}"#).unwrap();
        }
        archive.finish(manifest(compression)).unwrap()
    }

    fn plain() -> (Vec<u8>, Manifest) {
        fill(Vec::new(), "none", 2500)
    }

    fn gzip() -> (Vec<u8>, Manifest) {
        gzip_of(2500)
    }

    fn gzip_of(contacts: usize) -> (Vec<u8>, Manifest) {
        let (encoder, manifest) = fill(GzEncoder::new(Vec::new(), Compression::fast()), "gzip", contacts);
        (encoder.finish().unwrap(), manifest)
    }

    fn scan_all(bytes: &[u8]) -> Result<(Manifest, Vec<String>), ArchiveError> {
        let mut paths = Vec::new();
        let scanned = scan(bytes, |chunk| {
            paths.push(chunk.path.to_string());
            Ok(())
        })?;
        assert_eq!(scanned.bytes, bytes.len() as u64);
        Ok((scanned.manifest, paths))
    }

    #[test]
    fn an_archive_scans_back_to_its_manifest() {
        for (bytes, written) in [plain(), gzip()] {
            let (read, paths) = scan_all(&bytes).unwrap();
            assert_eq!(read, written);
            assert_eq!(read.records, 2503);
            let contacts = read.object("contacts").unwrap();
            assert_eq!((contacts.records, contacts.chunks), (2500, 3));
            assert_eq!(contacts.fields, ["id", "n", "name"]);
            assert_eq!(read.object("tickets").unwrap().records, 0);
            assert_eq!(read.object("a/b").unwrap().fields, ["id", "k", "z"]);
            assert_eq!(paths.len(), 4);
            assert_eq!(paths[3], "objects/a%2Fb/000001.jsonl");
        }
    }

    #[test]
    fn every_changed_byte_of_a_gzip_backup_is_refused_or_changes_nothing() {
        let (bytes, written) = gzip_of(1001);
        for at in 0..bytes.len() {
            let mut bad = bytes.clone();
            bad[at] ^= 0x20;
            // Some bytes cannot change what the archive holds: bytes 4 to 9
            // of a gzip header (time, compressor flags, operating system),
            // or a back-reference moved to an identical earlier string.
            // Every other change must be refused.
            match scan_all(&bad) {
                Err(ArchiveError::Corrupt(_)) => {}
                Ok((read, _)) => assert_eq!(read, written, "byte {at} changed the records unnoticed"),
                Err(other) => panic!("byte {at}: {other}"),
            }
        }
    }

    /// Where the manifest's header starts.
    fn manifest_offset(bytes: &[u8]) -> usize {
        (0..bytes.len()).step_by(tar::BLOCK).find(|&at| bytes[at..].starts_with(b"manifest.json\0")).unwrap()
    }

    #[test]
    fn every_changed_byte_before_the_manifest_of_a_plain_backup_is_refused() {
        let (bytes, _) = fill(Vec::new(), "none", 1001);
        // Bytes 154 and 155 of a header end its checksum's digits: NUL or
        // space mean the same.
        let checksum_ends = |at: usize| (154..156).contains(&(at % tar::BLOCK));
        for at in (0..manifest_offset(&bytes)).filter(|&at| !checksum_ends(at)) {
            let mut bad = bytes.clone();
            bad[at] ^= 0x20;
            let result = scan_all(&bad);
            assert!(matches!(result, Err(ArchiveError::Corrupt(_))), "byte {at}: {:?}", result.map(|r| r.1));
        }
    }

    /// The plain archive with its manifest replaced by `edit`'s version.
    fn with_manifest(edit: impl FnOnce(&mut Manifest)) -> Vec<u8> {
        let (bytes, mut manifest) = plain();
        edit(&mut manifest);
        let mut rest = bytes[..manifest_offset(&bytes)].to_vec();
        let mut tar = tar::TarWriter::new(Vec::new(), 0);
        tar.append(MANIFEST, &serde_json::to_vec(&manifest).unwrap()).unwrap();
        rest.extend(tar.finish().unwrap());
        rest
    }

    fn corruption(bytes: &[u8]) -> String {
        match scan_all(bytes) {
            Err(ArchiveError::Corrupt(message)) => message,
            other => panic!("not refused: {:?}", other.map(|r| r.1)),
        }
    }

    #[test]
    fn a_manifest_that_disagrees_is_named() {
        assert!(scan_all(&with_manifest(|_| ())).is_ok());
        let message = corruption(&with_manifest(|m| m.objects[0].records = 2499));
        assert_eq!(message, "`contacts`: the archive holds 2500 records, the manifest says 2499");
        let message = corruption(&with_manifest(|m| m.records += 1));
        assert!(message.contains("records is 2504, its objects add up to 2503"), "{message}");
        let message = corruption(&with_manifest(|m| m.objects[0].sha256 = "00".repeat(32)));
        assert!(message.starts_with("`contacts`: its records' sha256 is"), "{message}");
        let message = corruption(&with_manifest(|m| drop(m.objects.remove(2))));
        assert_eq!(message, "`objects/a%2Fb` holds records the manifest does not list");
        let message = corruption(&with_manifest(|m| m.format_version = 2));
        assert!(message.contains("newer engine"), "{message}");
        let message = corruption(&with_manifest(|m| m.compression = "gzip".into()));
        assert!(message.contains("compression"), "{message}");
    }

    #[test]
    fn truncation_is_named() {
        assert!(corruption(b"name,amount\nAda,1\n").contains("ends before its first entry"));
        assert!(corruption(&[b'x'; 1024]).contains("not a tar archive"));
        let (bytes, _) = gzip();
        for cut in [1, 10, bytes.len() / 2, bytes.len() - 4] {
            let message = corruption(&bytes[..cut]);
            assert!(message.contains("truncated") || message.contains("corrupt"), "cut at {cut}: {message}");
        }
        let (bytes, _) = plain();
        let message = corruption(&bytes[..manifest_offset(&bytes)]);
        assert!(message.contains("truncated"), "{message}");
        assert!(corruption(&[]).contains("empty"));
    }

    #[test]
    fn object_directories_cannot_climb_or_collide() {
        assert_eq!(object_dir("contacts"), "objects/contacts");
        assert_eq!(object_dir("../etc"), "objects/%2E%2E%2Fetc");
        assert_eq!(object_dir("a/b"), "objects/a%2Fb");
        assert_ne!(object_dir("a%2Fb"), object_dir("a/b"));
        assert_eq!(chunk_path("objects/x", 12), "objects/x/000012.jsonl");
    }
}
