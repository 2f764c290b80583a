//! A streamed Office Open XML workbook: sheet XML deflated straight into a
//! zip written front to back (sizes and checksums follow each entry in a
//! data descriptor), so nothing but the compressor's window is held.
//!
//! Cells are inline strings, numbers and booleans; the header row is bold
//! and frozen. A sheet holds at most 1,048,576 rows (Excel's limit), the
//! header included: past that, rows continue on a further sheet (`Report 2`,
//! …) under the header again. The zip has no Zip64 records, so a workbook
//! whose compressed size passes 4 GiB fails with an error saying to use CSV.

use std::borrow::Cow;
use std::fmt::Write as _;
use std::io::{self, Write};

use flate2::Compression;
use flate2::write::DeflateEncoder;
use objectos_guest::Value;
use objectos_guest::artifacts::ArtifactWriter;

use crate::format::{Sink, escape_markup, text};

/// Rows per sheet, the header included.
const SHEET_ROWS: u32 = 1_048_576;
/// Excel's limit on a cell's text.
const CELL_CHARS: usize = 32_767;
/// A sheet part is closed before its XML could pass the zip's 4 GiB limit.
const SHEET_BYTES: u64 = 3 << 30;

const MAIN_NS: &str = "http://schemas.openxmlformats.org/spreadsheetml/2006/main";
const REL_NS: &str = "http://schemas.openxmlformats.org/officeDocument/2006/relationships";
const XML_HEAD: &str = "<?xml version=\"1.0\" encoding=\"UTF-8\" standalone=\"yes\"?>\n";

const STYLES: &str = "<styleSheet xmlns=\"http://schemas.openxmlformats.org/spreadsheetml/2006/main\">\
<fonts count=\"2\"><font><sz val=\"11\"/><name val=\"Calibri\"/></font>\
<font><b/><sz val=\"11\"/><name val=\"Calibri\"/></font></fonts>\
<fills count=\"2\"><fill><patternFill patternType=\"none\"/></fill><fill><patternFill patternType=\"gray125\"/></fill></fills>\
<borders count=\"1\"><border><left/><right/><top/><bottom/><diagonal/></border></borders>\
<cellStyleXfs count=\"1\"><xf numFmtId=\"0\" fontId=\"0\" fillId=\"0\" borderId=\"0\"/></cellStyleXfs>\
<cellXfs count=\"2\"><xf numFmtId=\"0\" fontId=\"0\" fillId=\"0\" borderId=\"0\" xfId=\"0\"/>\
<xf numFmtId=\"0\" fontId=\"1\" fillId=\"0\" borderId=\"0\" xfId=\"0\" applyFont=\"1\"/></cellXfs>\
<cellStyles count=\"1\"><cellStyle name=\"Normal\" xfId=\"0\" builtinId=\"0\"/></cellStyles></styleSheet>";

/// The report as a workbook of one or more sheets.
pub struct Workbook {
    zip: Zip<ArtifactWriter>,
    columns: Vec<String>,
    /// Column letters, `A`, `B`, … `AA`, …
    letters: Vec<String>,
    sheets: u32,
    /// Rows written to the open sheet, the header included; 0 when none is open.
    sheet_rows: u32,
    line: String,
}

impl Workbook {
    pub fn new(out: ArtifactWriter) -> Self {
        Self {
            zip: Zip::new(out),
            columns: Vec::new(),
            letters: Vec::new(),
            sheets: 0,
            sheet_rows: 0,
            line: String::new(),
        }
    }

    fn open_sheet(&mut self) -> io::Result<()> {
        self.sheets += 1;
        self.zip.start(&format!("xl/worksheets/sheet{}.xml", self.sheets))?;
        writeln!(
            self.zip,
            "{XML_HEAD}<worksheet xmlns=\"{MAIN_NS}\"><sheetViews><sheetView workbookViewId=\"0\">\
             <pane ySplit=\"1\" topLeftCell=\"A2\" activePane=\"bottomLeft\" state=\"frozen\"/>\
             </sheetView></sheetViews><sheetData>"
        )?;
        self.sheet_rows = 0;
        let header: Vec<Value> = self.columns.iter().map(|c| Value::String(c.clone())).collect();
        self.write_row(&header.iter().collect::<Vec<_>>(), true)
    }

    fn close_sheet(&mut self) -> io::Result<()> {
        self.zip.write_all(b"</sheetData></worksheet>")?;
        self.zip.finish_entry()
    }

    fn write_row(&mut self, cells: &[&Value], header: bool) -> io::Result<()> {
        self.sheet_rows += 1;
        let row = self.sheet_rows;
        let style = if header { " s=\"1\"" } else { "" };
        // Rows are built in one reused buffer: no allocation per cell.
        let line = &mut self.line;
        line.clear();
        let _ = write!(line, "<row r=\"{row}\">");
        for (letter, cell) in self.letters.iter().zip(cells) {
            let _ = match cell {
                Value::Null => Ok(()),
                Value::Bool(b) => {
                    write!(line, "<c r=\"{letter}{row}\"{style} t=\"b\"><v>{}</v></c>", u8::from(*b))
                }
                Value::Number(n) => write!(line, "<c r=\"{letter}{row}\"{style}><v>{n}</v></c>"),
                other => {
                    let text = text(other);
                    let text = cell_text(&text);
                    let space = if text.starts_with(' ') || text.ends_with(' ') {
                        " xml:space=\"preserve\""
                    } else {
                        ""
                    };
                    write!(
                        line,
                        "<c r=\"{letter}{row}\"{style} t=\"inlineStr\"><is><t{space}>{}</t></is></c>",
                        escape_markup(&text)
                    )
                }
            };
        }
        line.push_str("</row>\n");
        self.zip.write_all(self.line.as_bytes())
    }

    /// The parts that describe the sheets, written once they are known.
    fn write_package(&mut self) -> io::Result<()> {
        let sheets = 1..=self.sheets;
        let mut workbook = format!("{XML_HEAD}<workbook xmlns=\"{MAIN_NS}\" xmlns:r=\"{REL_NS}\"><sheets>");
        let mut rels = format!(
            "{XML_HEAD}<Relationships xmlns=\"http://schemas.openxmlformats.org/package/2006/relationships\">"
        );
        let mut types = format!(
            "{XML_HEAD}<Types xmlns=\"http://schemas.openxmlformats.org/package/2006/content-types\">\
             <Default Extension=\"rels\" ContentType=\"application/vnd.openxmlformats-package.relationships+xml\"/>\
             <Default Extension=\"xml\" ContentType=\"application/xml\"/>\
             <Override PartName=\"/xl/workbook.xml\" \
             ContentType=\"application/vnd.openxmlformats-officedocument.spreadsheetml.sheet.main+xml\"/>\
             <Override PartName=\"/xl/styles.xml\" \
             ContentType=\"application/vnd.openxmlformats-officedocument.spreadsheetml.styles+xml\"/>"
        );
        for n in sheets {
            let name = if n == 1 { "Report".to_string() } else { format!("Report {n}") };
            workbook.push_str(&format!("<sheet name=\"{name}\" sheetId=\"{n}\" r:id=\"rId{n}\"/>"));
            rels.push_str(&format!(
                "<Relationship Id=\"rId{n}\" Type=\"{REL_NS}/worksheet\" Target=\"worksheets/sheet{n}.xml\"/>"
            ));
            types.push_str(&format!(
                "<Override PartName=\"/xl/worksheets/sheet{n}.xml\" \
                 ContentType=\"application/vnd.openxmlformats-officedocument.spreadsheetml.worksheet+xml\"/>"
            ));
        }
        workbook.push_str("</sheets></workbook>");
        rels.push_str(&format!(
            "<Relationship Id=\"rId{}\" Type=\"{REL_NS}/styles\" Target=\"styles.xml\"/></Relationships>",
            self.sheets + 1
        ));
        types.push_str("</Types>");
        let root_rels = format!(
            "{XML_HEAD}<Relationships xmlns=\"http://schemas.openxmlformats.org/package/2006/relationships\">\
             <Relationship Id=\"rId1\" Type=\"{REL_NS}/officeDocument\" Target=\"xl/workbook.xml\"/></Relationships>"
        );
        let styles = format!("{XML_HEAD}{STYLES}");
        for (name, part) in [
            ("xl/workbook.xml", &workbook),
            ("xl/_rels/workbook.xml.rels", &rels),
            ("xl/styles.xml", &styles),
            ("_rels/.rels", &root_rels),
            ("[Content_Types].xml", &types),
        ] {
            self.zip.start(name)?;
            self.zip.write_all(part.as_bytes())?;
            self.zip.finish_entry()?;
        }
        Ok(())
    }
}

/// Text a cell may hold: no control characters XML forbids, at most
/// Excel's 32,767 characters.
fn cell_text(text: &str) -> Cow<'_, str> {
    let allowed = |c: char| c >= ' ' || matches!(c, '\t' | '\n' | '\r');
    // Fewer bytes than the limit means fewer characters, too.
    if text.len() <= CELL_CHARS && text.chars().all(allowed) {
        return Cow::Borrowed(text);
    }
    Cow::Owned(text.chars().filter(|&c| allowed(c)).take(CELL_CHARS).collect())
}

/// `A` for 0, `Z` for 25, `AA` for 26, …
fn column_letters(mut index: usize) -> String {
    let mut letters = Vec::new();
    loop {
        letters.push(b'A' + (index % 26) as u8);
        if index < 26 {
            break;
        }
        index = index / 26 - 1;
    }
    letters.reverse();
    String::from_utf8(letters).unwrap_or_default()
}

impl Sink for Workbook {
    fn begin(&mut self, columns: &[String]) -> io::Result<()> {
        self.columns = columns.to_vec();
        self.letters = (0..columns.len()).map(column_letters).collect();
        self.open_sheet()
    }

    fn row(&mut self, cells: &[&Value]) -> io::Result<()> {
        if self.sheet_rows == SHEET_ROWS || self.zip.entry_size() > SHEET_BYTES {
            self.close_sheet()?;
            self.open_sheet()?;
        }
        self.write_row(cells, false)
    }

    fn end(mut self: Box<Self>) -> io::Result<ArtifactWriter> {
        self.close_sheet()?;
        self.write_package()?;
        self.zip.finish()
    }
}

/// Counts the bytes passing through, for zip offsets.
struct Counting<W> {
    inner: W,
    written: u64,
}

impl<W: Write> Write for Counting<W> {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(bytes)?;
        self.written += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// The entry being written.
struct Entry<W: Write> {
    encoder: DeflateEncoder<Counting<W>>,
    crc: crc32fast::Hasher,
    size: u64,
    header_offset: u64,
    data_offset: u64,
    name: String,
}

/// What the central directory says of a finished entry.
struct Finished {
    name: String,
    crc: u32,
    compressed: u32,
    size: u32,
    header_offset: u32,
}

/// A zip written front to back: every entry deflated, its crc and sizes in
/// a data descriptor after its data (general-purpose flag bit 3).
struct Zip<W: Write> {
    out: Option<Counting<W>>,
    entry: Option<Entry<W>>,
    finished: Vec<Finished>,
}

/// Flags: bit 3, sizes follow in a data descriptor; bit 11, UTF-8 names.
const FLAGS: u16 = 0x0808;
const DEFLATE: u16 = 8;
const VERSION: u16 = 20;
/// 1980-01-01 00:00:00 in MS-DOS format; the date carries no meaning here.
const DOS_TIME: u16 = 0;
const DOS_DATE: u16 = (1 << 5) | 1;

fn too_large() -> io::Error {
    io::Error::other("the workbook passes the 4 GiB a zip without Zip64 can hold; ask for csv instead")
}

fn narrow(value: u64) -> io::Result<u32> {
    u32::try_from(value).map_err(|_| too_large())
}

impl<W: Write> Zip<W> {
    fn new(out: W) -> Self {
        Self { out: Some(Counting { inner: out, written: 0 }), entry: None, finished: Vec::new() }
    }

    fn start(&mut self, name: &str) -> io::Result<()> {
        let mut out = self.out.take().ok_or_else(|| io::Error::other("zip entry already open"))?;
        let header_offset = out.written;
        let mut header = Vec::with_capacity(30 + name.len());
        header.extend_from_slice(&0x0403_4b50u32.to_le_bytes());
        for field in [VERSION, FLAGS, DEFLATE, DOS_TIME, DOS_DATE] {
            header.extend_from_slice(&field.to_le_bytes());
        }
        header.extend_from_slice(&[0; 12]); // crc and sizes: in the data descriptor
        header.extend_from_slice(&(name.len() as u16).to_le_bytes());
        header.extend_from_slice(&0u16.to_le_bytes());
        header.extend_from_slice(name.as_bytes());
        out.write_all(&header)?;
        let data_offset = out.written;
        self.entry = Some(Entry {
            encoder: DeflateEncoder::new(out, Compression::fast()),
            crc: crc32fast::Hasher::new(),
            size: 0,
            header_offset,
            data_offset,
            name: name.to_string(),
        });
        Ok(())
    }

    /// Uncompressed bytes written to the open entry.
    fn entry_size(&self) -> u64 {
        self.entry.as_ref().map_or(0, |e| e.size)
    }

    fn finish_entry(&mut self) -> io::Result<()> {
        let entry = self.entry.take().ok_or_else(|| io::Error::other("no zip entry open"))?;
        let mut out = entry.encoder.finish()?;
        let finished = Finished {
            crc: entry.crc.finalize(),
            compressed: narrow(out.written - entry.data_offset)?,
            size: narrow(entry.size)?,
            header_offset: narrow(entry.header_offset)?,
            name: entry.name,
        };
        let mut descriptor = Vec::with_capacity(16);
        for field in [0x0807_4b50, finished.crc, finished.compressed, finished.size] {
            descriptor.extend_from_slice(&field.to_le_bytes());
        }
        out.write_all(&descriptor)?;
        self.finished.push(finished);
        self.out = Some(out);
        Ok(())
    }

    /// Writes the central directory and hands back the underlying writer.
    fn finish(mut self) -> io::Result<W> {
        let mut out = self.out.take().ok_or_else(|| io::Error::other("zip entry still open"))?;
        let directory_offset = narrow(out.written)?;
        let mut directory = Vec::new();
        for entry in &self.finished {
            directory.extend_from_slice(&0x0201_4b50u32.to_le_bytes());
            for field in [VERSION, VERSION, FLAGS, DEFLATE, DOS_TIME, DOS_DATE] {
                directory.extend_from_slice(&field.to_le_bytes());
            }
            for field in [entry.crc, entry.compressed, entry.size] {
                directory.extend_from_slice(&field.to_le_bytes());
            }
            // name length, extra, comment, disk, internal attributes
            for field in [entry.name.len() as u16, 0, 0, 0, 0] {
                directory.extend_from_slice(&field.to_le_bytes());
            }
            directory.extend_from_slice(&0u32.to_le_bytes()); // external attributes
            directory.extend_from_slice(&entry.header_offset.to_le_bytes());
            directory.extend_from_slice(entry.name.as_bytes());
        }
        out.write_all(&directory)?;
        let entries = self.finished.len() as u16;
        let mut end = Vec::with_capacity(22);
        end.extend_from_slice(&0x0605_4b50u32.to_le_bytes());
        for field in [0, 0, entries, entries] {
            end.extend_from_slice(&field.to_le_bytes());
        }
        end.extend_from_slice(&narrow(directory.len() as u64)?.to_le_bytes());
        end.extend_from_slice(&directory_offset.to_le_bytes());
        end.extend_from_slice(&0u16.to_le_bytes());
        out.write_all(&end)?;
        Ok(out.inner)
    }
}

impl<W: Write> Write for Zip<W> {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        let entry = self.entry.as_mut().ok_or_else(|| io::Error::other("no zip entry open"))?;
        entry.encoder.write_all(bytes)?;
        entry.crc.update(bytes);
        entry.size += bytes.len() as u64;
        Ok(bytes.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}
