//! Writing a backup: records in, chunks and a manifest out.

use std::collections::BTreeSet;
use std::fmt;
use std::io::{self, Write};

use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, Visitor};
use sha2::{Digest, Sha256};

use crate::tar::TarWriter;
use crate::{CHUNK_BYTES, CHUNK_RECORDS, MANIFEST, Manifest, ObjectSummary, chunk_path, hex, object_dir};

/// The object being written.
struct Open {
    summary: ObjectSummary,
    sha256: Sha256,
    fields: BTreeSet<String>,
}

/// Writes objects' records as chunks into a tar stream, then the manifest.
/// Memory holds one chunk.
pub struct ArchiveWriter<W: Write> {
    tar: TarWriter<W>,
    done: Vec<ObjectSummary>,
    open: Option<Open>,
    chunk: Vec<u8>,
    chunk_records: usize,
}

impl<W: Write> ArchiveWriter<W> {
    /// A writer into `out` (a tar stream, compressed or not, is the
    /// caller's choice), its entries dated `mtime`.
    pub fn new(out: W, mtime: u64) -> Self {
        Self {
            tar: TarWriter::new(out, mtime),
            done: Vec::new(),
            open: None,
            chunk: Vec::with_capacity(1 << 20),
            chunk_records: 0,
        }
    }

    /// Starts the object `name`; its records follow.
    pub fn begin_object(&mut self, name: &str) -> io::Result<()> {
        self.end_object()?;
        let summary = ObjectSummary {
            name: name.to_string(),
            path: object_dir(name),
            records: 0,
            chunks: 0,
            bytes: 0,
            sha256: String::new(),
            fields: Vec::new(),
        };
        self.open = Some(Open { summary, sha256: Sha256::new(), fields: BTreeSet::new() });
        Ok(())
    }

    /// Adds one record of the current object: `json` is a JSON object on
    /// one line, as the engine returns records.
    pub fn record(&mut self, json: &str) -> io::Result<()> {
        let open = self.open.as_mut().ok_or_else(|| io::Error::other("a record before its object"))?;
        if json.contains('\n') {
            return Err(io::Error::other("a record's JSON spans lines"));
        }
        let mut keys = serde_json::Deserializer::from_str(json);
        FieldNames(&mut open.fields)
            .deserialize(&mut keys)
            .map_err(|e| io::Error::other(format!("a record is not a JSON object: {e}")))?;
        self.chunk.extend_from_slice(json.as_bytes());
        self.chunk.push(b'\n');
        self.chunk_records += 1;
        if self.chunk_records == CHUNK_RECORDS || self.chunk.len() >= CHUNK_BYTES {
            self.flush_chunk()?;
        }
        Ok(())
    }

    fn flush_chunk(&mut self) -> io::Result<()> {
        let Some(open) = self.open.as_mut() else { return Ok(()) };
        if self.chunk.is_empty() {
            return Ok(());
        }
        let summary = &mut open.summary;
        summary.chunks += 1;
        summary.records += self.chunk_records as u64;
        summary.bytes += self.chunk.len() as u64;
        open.sha256.update(&self.chunk);
        self.tar.append(&chunk_path(&summary.path, summary.chunks), &self.chunk)?;
        self.chunk.clear();
        self.chunk_records = 0;
        Ok(())
    }

    fn end_object(&mut self) -> io::Result<()> {
        self.flush_chunk()?;
        if let Some(open) = self.open.take() {
            let mut summary = open.summary;
            summary.sha256 = hex(&open.sha256.finalize());
            summary.fields = open.fields.into_iter().collect();
            self.done.push(summary);
        }
        Ok(())
    }

    /// The records written so far, in all.
    pub fn records(&self) -> u64 {
        let open = self.open.as_ref().map_or(0, |o| o.summary.records);
        self.done.iter().map(|o| o.records).sum::<u64>() + open + self.chunk_records as u64
    }

    /// Closes the last object, completes `manifest` with the objects and
    /// their total, writes it as the last entry and ends the archive.
    /// Returns the output and the manifest written.
    pub fn finish(mut self, mut manifest: Manifest) -> io::Result<(W, Manifest)> {
        self.end_object()?;
        manifest.records = self.done.iter().map(|o| o.records).sum();
        manifest.objects = self.done;
        let json = serde_json::to_vec_pretty(&manifest).map_err(io::Error::other)?;
        self.tar.append(MANIFEST, &json)?;
        Ok((self.tar.finish()?, manifest))
    }
}

/// Collects a JSON object's top-level keys without building its values,
/// allocating only for a key not seen before.
struct FieldNames<'a>(&'a mut BTreeSet<String>);

impl<'de> DeserializeSeed<'de> for FieldNames<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for FieldNames<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while map.next_key_seed(FieldName(self.0))?.is_some() {
            map.next_value::<IgnoredAny>()?;
        }
        Ok(())
    }
}

struct FieldName<'a>(&'a mut BTreeSet<String>);

impl<'de> DeserializeSeed<'de> for FieldName<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for FieldName<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a field name")
    }

    fn visit_str<E>(self, key: &str) -> Result<(), E> {
        if !self.0.contains(key) {
            self.0.insert(key.to_string());
        }
        Ok(())
    }
}
