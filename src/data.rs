//! Reading datasets: CSV, TSV, JSONL and Prodigy's JSONL, streamed record
//! by record, with errors that name the file, the line and (where known)
//! the column.

use std::fmt;
use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

/// A problem with an input file, printed as one line:
/// `FILE:LINE:COL: message` (line and column where known).
#[derive(Debug, Clone, PartialEq)]
pub struct DataError {
    pub file: PathBuf,
    pub line: Option<u64>,
    pub column: Option<u64>,
    pub message: String,
    /// The file could not be read (an I/O error), rather than read and
    /// found wrong: trying again may work.
    pub io: bool,
}

impl DataError {
    pub fn new(file: &Path, line: Option<u64>, column: Option<u64>, message: impl Into<String>) -> Self {
        DataError { file: file.to_path_buf(), line, column, message: message.into(), io: false }
    }

    /// An error reading the file (not in what it holds).
    pub fn io(file: &Path, line: Option<u64>, message: impl Into<String>) -> Self {
        DataError { io: true, ..DataError::new(file, line, None, message) }
    }
}

impl fmt::Display for DataError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(l) = self.line {
            write!(f, ":{l}")?;
            if let Some(c) = self.column {
                write!(f, ":{c}")?;
            }
        }
        write!(f, ": {}", self.message)
    }
}

impl std::error::Error for DataError {}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Csv,
    Tsv,
    /// One JSON object a line; the text and the label are fields.
    Jsonl,
    /// Prodigy's annotations (JSONL): `text`, the label in `accept` (a
    /// list: its first) or `label`, and `answer`: only `accept` rows carry
    /// their label, `reject` and `ignore` rows (and rows not answered yet)
    /// come in unlabelled; `meta` and the rest are ignored.
    Prodigy,
}

impl Format {
    /// The format of a file when none is given: from the extension, and a
    /// JSONL file whose first record looks like Prodigy's (see
    /// `looks_like_prodigy`) is read as Prodigy's.
    pub fn detect(path: &Path) -> Result<Format, DataError> {
        let f = Format::from_path(path)?;
        if f == Format::Jsonl && looks_like_prodigy(path) {
            tracing::debug!("{}: Prodigy annotations (an answer and a label in its first record)", path.display());
            return Ok(Format::Prodigy);
        }
        Ok(f)
    }

    /// The format named by the file's extension.
    pub fn from_path(path: &Path) -> Result<Format, DataError> {
        let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("").to_ascii_lowercase();
        match ext.as_str() {
            "csv" => Ok(Format::Csv),
            "tsv" | "tab" => Ok(Format::Tsv),
            "jsonl" | "ndjson" => Ok(Format::Jsonl),
            _ => Err(DataError::new(
                path,
                None,
                None,
                if ext.is_empty() {
                    "cannot tell the format: the name has no extension; use --format csv|tsv|jsonl|prodigy".to_string()
                } else {
                    format!("cannot tell the format from the extension '.{ext}'; use --format csv|tsv|jsonl|prodigy")
                },
            )),
        }
    }
}

/// Whether the first record of a JSONL file is a Prodigy annotation: an
/// object with an `answer` of `accept`, `reject` or `ignore`, and a `label`
/// or an `accept` field; or a line of labelrest's own Prodigy export, whose
/// tasks (the model's labels) have no answer: a `meta` with the row's `id`
/// and a labelrest `source`. A file that cannot be read or parsed is not
/// (the JSONL reader then names the problem).
pub fn looks_like_prodigy(path: &Path) -> bool {
    let Ok(f) = File::open(path) else { return false };
    let Some(o) = first_json_object(f) else { return false };
    let answered = matches!(o.get("answer").and_then(|a| a.as_str()), Some("accept" | "reject" | "ignore"));
    let ours = o.get("meta").and_then(|m| m.as_object()).is_some_and(|m| {
        m.get("id").is_some_and(|v| v.is_i64())
            && matches!(m.get("source").and_then(|s| s.as_str()), Some("person" | "seed" | "adjudicated" | "model" | "disputed" | "none"))
    });
    (answered && (o.contains_key("label") || o.contains_key("accept"))) || (ours && o.contains_key("text"))
}

/// The first non-blank line of a JSONL file (within its first 16 MiB), when
/// it is a JSON object.
fn first_json_object(f: File) -> Option<serde_json::Map<String, serde_json::Value>> {
    let mut r = BufReader::new(f).take(1 << 24);
    let mut line = String::new();
    loop {
        line.clear();
        match r.read_line(&mut line) {
            Ok(0) | Err(_) => return None,
            Ok(_) => {}
        }
        let l = line.trim_start_matches('\u{feff}').trim();
        if l.is_empty() {
            continue;
        }
        return match serde_json::from_str::<serde_json::Value>(l) {
            Ok(serde_json::Value::Object(o)) => Some(o),
            _ => None,
        };
    }
}

/// Which columns to read, and how.
#[derive(Debug, Clone)]
pub struct Columns {
    pub text: String,
    pub label: Option<String>,
    /// CSV: quoted fields may span lines freely. Without it, a quoted field
    /// that spans lines holding what look like records (or more than
    /// `MULTILINE_MAX` lines) is refused as a stray quote.
    pub allow_multiline: bool,
}

impl Columns {
    pub fn new(text: &str, label: Option<&str>) -> Columns {
        Columns { text: text.to_string(), label: label.map(|l| l.to_string()), allow_multiline: false }
    }
}

impl Default for Columns {
    fn default() -> Self {
        Columns::new("text", None)
    }
}

/// Lines a quoted CSV field may span before it is taken for a stray quote
/// (unless `--allow-multiline`).
pub const MULTILINE_MAX: usize = 50;

/// A quoted field that spans lines and looks like a stray quote swallowing
/// records: the first continuation line that has the delimiters of a whole
/// record (n, the line's text), or the line count when it runs too long.
fn swallowed_record(field: &[u8], ncols: usize, delim: u8) -> Option<String> {
    let lines: Vec<&[u8]> = field.split(|&b| b == b'\n').collect();
    if lines.len() > MULTILINE_MAX {
        return Some(format!("it runs over {} lines", lines.len()));
    }
    if ncols < 2 {
        return None;
    }
    for (k, l) in lines.iter().enumerate().skip(1) {
        let l = l.strip_suffix(b"\r").unwrap_or(l);
        if l.iter().filter(|&&b| b == delim).count() >= ncols - 1 {
            let shown: String = display_safe(&String::from_utf8_lossy(l)).chars().take(40).collect();
            return Some(format!("its line {} looks like a record of its own (\"{shown}\")", k + 1));
        }
    }
    None
}

/// One record of input: the text as given, its label if a label column was
/// asked for, and the line it starts on (1-based, the header being line 1
/// for CSV and TSV).
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    pub line: u64,
    pub text: String,
    pub label: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct ReadStats {
    pub records: u64,
    /// Records whose text was empty or only whitespace: skipped, not an error.
    pub skipped_empty: u64,
    /// First few lines of skipped records, to report.
    pub skipped_lines: Vec<u64>,
    /// Prodigy: accepted records with more than one label in `accept`
    /// (the first is taken).
    pub multi_label: u64,
    /// Prodigy: records labelrest exported with the model's label
    /// (`meta.source` "model"): read unlabelled, as guesses, not answers.
    pub model_labels: u64,
}

/// An input file named on the command line, refused in the words every
/// command uses when it is not there: `FILE: no such file`.
pub fn require_file(path: &Path) -> Result<(), DataError> {
    if path.exists() {
        Ok(())
    } else {
        Err(DataError::new(path, None, None, "no such file"))
    }
}

fn open(path: &Path) -> Result<File, DataError> {
    File::open(path).map_err(|e| {
        let what = if e.kind() == std::io::ErrorKind::NotFound { "no such file".to_string() } else { e.to_string() };
        DataError::io(path, None, what)
    })
}

/// Streams the records of `path` to `sink`, in file order. Empty texts are
/// skipped and counted. Stops at the first error (from the file or from the
/// sink) and returns it.
pub fn read_records<F>(path: &Path, format: Format, cols: &Columns, mut sink: F) -> Result<ReadStats, DataError>
where
    F: FnMut(Record) -> Result<(), DataError>,
{
    let mut file = open(path)?;
    refuse_utf16(path, &mut file)?;
    let mut stats = ReadStats::default();
    let mut emit = |rec: Record, stats: &mut ReadStats| -> Result<(), DataError> {
        if rec.text.trim().is_empty() {
            stats.skipped_empty += 1;
            if stats.skipped_lines.len() < 5 {
                stats.skipped_lines.push(rec.line);
            }
            return Ok(());
        }
        stats.records += 1;
        sink(rec)
    };
    match format {
        Format::Csv | Format::Tsv => read_delimited(path, file, format, cols, &mut stats, &mut emit)?,
        Format::Jsonl => read_jsonl(path, file, cols, false, &mut stats, &mut emit)?,
        Format::Prodigy => read_jsonl(path, file, cols, true, &mut stats, &mut emit)?,
    }
    Ok(stats)
}

/// A file saved as UTF-16 (Excel's and Notepad's "Unicode") is named as
/// such, not read as UTF-8 with garbled column names. Only a regular file
/// is looked at: a pipe cannot be read twice.
fn refuse_utf16(path: &Path, file: &mut File) -> Result<(), DataError> {
    use std::io::{Seek, SeekFrom};
    if !file.metadata().is_ok_and(|m| m.is_file()) {
        return Ok(());
    }
    let mut bom = [0u8; 2];
    let n = file.read(&mut bom).unwrap_or(0);
    if n == 2 && (bom == [0xff, 0xfe] || bom == [0xfe, 0xff]) {
        return Err(DataError::new(path, Some(1), None, "the file is UTF-16 (it starts with a UTF-16 byte-order mark); save it as UTF-8"));
    }
    file.seek(SeekFrom::Start(0)).map_err(|e| DataError::io(path, None, format!("cannot read: {e}")))?;
    Ok(())
}

/// Whether the file has a column `name`: in the header of a CSV or TSV
/// file, a field of the first record of a JSONL file (Prodigy's label is
/// always read: never). A file that cannot be read has none.
pub fn has_column(path: &Path, format: Format, name: &str) -> bool {
    let Ok(file) = open(path) else { return false };
    match format {
        Format::Csv | Format::Tsv => header_names(&mut delimited_reader(file, format, true, tsv_quoted(path, format, false)))
            .is_ok_and(|h| h.iter().any(|h| h == name)),
        Format::Jsonl => first_json_object(file).is_some_and(|o| o.contains_key(name)),
        Format::Prodigy => false,
    }
}

fn column_index(path: &Path, headers: &[String], name: &str, what: &str) -> Result<usize, DataError> {
    headers.iter().position(|h| h == name).ok_or_else(|| {
        let shown: Vec<String> = headers.iter().map(|h| display_safe(&h.replace('\t', "\\t"))).collect();
        DataError::new(
            path,
            Some(1),
            None,
            format!("no {what} column '{}' (choose it with --{what}-col); the columns are: {}", display_safe(name), shown.join(", ")),
        )
    })
}

fn utf8_field(path: &Path, bytes: &[u8], line: u64, record_byte: u64, record: &csv::ByteRecord, field: usize) -> Result<String, DataError> {
    match std::str::from_utf8(bytes) {
        Ok(s) => Ok(s.to_string()),
        Err(e) => {
            // Byte offset in the file: the record start plus the fields before
            // this one (each followed by a delimiter) plus the valid prefix.
            // Quotes make this approximate by at most the quote characters.
            let before: usize = (0..field).map(|i| record.get(i).map_or(0, |f| f.len() + 1)).sum();
            let offset = record_byte + before as u64 + e.valid_up_to() as u64;
            Err(DataError::new(
                path,
                Some(line),
                Some(field as u64 + 1),
                format!("invalid UTF-8 at byte offset {offset} (field {}, byte {} of the field)", field + 1, e.valid_up_to()),
            ))
        }
    }
}

/// A CSV or TSV reader over `file` (headers on; `flexible`: rows of any length).
/// A TSV file is read as written, quotes and all, unless `quoted` (see `tsv_quoted`).
fn delimited_reader(file: File, format: Format, flexible: bool, quoted: bool) -> csv::Reader<BufReader<File>> {
    let mut builder = csv::ReaderBuilder::new();
    builder.has_headers(true).flexible(flexible);
    if format == Format::Tsv {
        builder.delimiter(b'\t').quoting(quoted);
    }
    builder.from_reader(BufReader::with_capacity(1 << 20, file))
}

/// Whether a TSV file quotes its fields as CSV does (the TSV of pandas and
/// of Python's csv module: a field holding a quote, a tab or a line break
/// is put in quotes, a quote in it doubled): some field starts with a
/// quote, and every field that does is such a quoted field, closed right
/// before a tab or a line end. Otherwise (`"Hi" she said`, a lone quote)
/// the file is plain TSV, read as written, quotes and all; so is a pipe,
/// which cannot be read twice.
pub fn tsv_quoted(path: &Path, format: Format, multiline: bool) -> bool {
    if format != Format::Tsv || !std::fs::metadata(path).is_ok_and(|m| m.is_file()) {
        return false;
    }
    let Ok(f) = File::open(path) else { return false };
    let mut bytes = BufReader::with_capacity(1 << 20, f).bytes().map_while(|b| b.ok()).peekable();
    let (mut start, mut any) = (true, false);
    while let Some(b) = bytes.next() {
        if start && b == b'"' {
            any = true;
            // To the closing quote: a quote not doubled. A tab on a line the
            // field ran on to is another record's: a stray quote, not this.
            let mut crossed = false;
            loop {
                match bytes.next() {
                    None => return false,
                    Some(b'"') if bytes.peek() == Some(&b'"') => {
                        bytes.next();
                    }
                    Some(b'"') => break,
                    Some(b'\n') => crossed = true,
                    // (Unless texts may span lines: an indented line of code.)
                    Some(b'\t') if crossed && !multiline => return false,
                    Some(_) => {}
                }
            }
            match bytes.peek() {
                None | Some(b'\t' | b'\n' | b'\r') => {}
                Some(_) => return false,
            }
            start = false;
            continue;
        }
        start = matches!(b, b'\t' | b'\n');
    }
    any
}

/// The header's names, a UTF-8 byte order mark stripped from the first.
fn header_names(rdr: &mut csv::Reader<BufReader<File>>) -> Result<Vec<String>, csv::Error> {
    Ok(rdr
        .byte_headers()?
        .iter()
        .enumerate()
        .map(|(i, h)| {
            let s = String::from_utf8_lossy(h).to_string();
            if i == 0 {
                s.trim_start_matches('\u{feff}').to_string()
            } else {
                s
            }
        })
        .collect())
}

/// Where a record starts, as the csv crate reports it, put right: the crate
/// counts a line end's `\n` only when it reads on, so the record after a
/// `\r\n` is reported at the line before and at the byte of that `\n`
/// (rust-csv issue 395), and one after blank lines at the first of them.
/// The line ends at the reported byte are skipped and their `\n`s counted.
/// Only in files whose first 64 KiB hold a `\r` or a blank line: a plain
/// LF file (the common case) costs no read a record.
struct Starts {
    /// The file, read at the reported bytes (a regular file only: a pipe
    /// cannot be read twice, nor a FIFO opened again without a hang).
    file: Option<File>,
}

impl Starts {
    fn of(path: &Path) -> Starts {
        let regular = std::fs::metadata(path).is_ok_and(|m| m.is_file());
        let file = if regular { File::open(path).ok() } else { None };
        let file = file.filter(|f| {
            let mut head = vec![0u8; 1 << 16];
            let n = std::os::unix::fs::FileExt::read_at(f, &mut head, 0).unwrap_or(0);
            head[..n].contains(&b'\r') || head[..n].windows(2).any(|w| w == b"\n\n")
        });
        Starts { file }
    }

    /// The line and byte offset where a record reported at `pos` starts.
    fn at(&self, pos: &csv::Position) -> (u64, u64) {
        let (mut line, mut byte) = (pos.line(), pos.byte());
        let Some(f) = &self.file else { return (line, byte) };
        // A record almost always starts where reported: a few bytes tell.
        let mut buf = [0u8; 64];
        loop {
            let n = std::os::unix::fs::FileExt::read_at(f, &mut buf, byte).unwrap_or(0);
            let ends = buf[..n].iter().take_while(|&&b| b == b'\n' || b == b'\r').count();
            line += buf[..ends].iter().filter(|&&b| b == b'\n').count() as u64;
            byte += ends as u64;
            if ends < n || n == 0 {
                return (line, byte);
            }
        }
    }
}

fn read_delimited<E>(path: &Path, file: File, format: Format, cols: &Columns, stats: &mut ReadStats, emit: &mut E) -> Result<(), DataError>
where
    E: FnMut(Record, &mut ReadStats) -> Result<(), DataError>,
{
    let starts = Starts::of(path);
    let quoted = tsv_quoted(path, format, cols.allow_multiline);
    if quoted {
        tracing::info!("{}: TSV with quoted fields (as pandas and Python's csv module write it)", path.display());
    }
    let mut rdr = delimited_reader(file, format, false, quoted);
    // A header that is not UTF-8 is named as such, not read as column names
    // that match nothing.
    let raw = rdr.byte_headers().map_err(|e| csv_error(path, format, e))?.clone();
    for (i, f) in raw.iter().enumerate() {
        let f = if i == 0 { f.strip_prefix(b"\xef\xbb\xbf").unwrap_or(f) } else { f };
        if let Err(e) = std::str::from_utf8(f) {
            let before: usize = (0..i).map(|j| raw.get(j).map_or(0, |f| f.len() + 1)).sum();
            return Err(DataError::new(
                path,
                Some(1),
                Some(i as u64 + 1),
                format!("invalid UTF-8 in the header at byte offset {} (field {})", before + e.valid_up_to(), i + 1),
            ));
        }
    }
    let headers = header_names(&mut rdr).map_err(|e| csv_error(path, format, e))?;
    if headers.is_empty() || (headers.len() == 1 && headers[0].is_empty()) {
        return Err(DataError::new(path, Some(1), None, "the file is empty: expected a header line"));
    }
    if format == Format::Csv && headers.len() == 1 && headers[0].contains('\t') {
        return Err(DataError::new(path, Some(1), None, "the header has tabs and no commas: a TSV file? give --format tsv"));
    }
    // A name given twice would make one of the columns unreachable.
    for (i, h) in headers.iter().enumerate() {
        if headers[..i].contains(h) {
            return Err(DataError::new(
                path,
                Some(1),
                Some(i as u64 + 1),
                format!("the column name '{}' is given twice in the header", display_safe(h)),
            ));
        }
    }
    let ti = column_index(path, &headers, &cols.text, "text")?;
    let li = match &cols.label {
        Some(l) => Some(column_index(path, &headers, l, "label")?),
        None => None,
    };
    let mut rec = csv::ByteRecord::new();
    let mut last_start_line = 1u64;
    let mut last_multiline = false;
    loop {
        match rdr.read_byte_record(&mut rec) {
            Ok(true) => {}
            Ok(false) => break,
            Err(e) => return Err(csv_error(path, format, e)),
        }
        let (line, byte) = starts.at(&rec.position().cloned().unwrap_or_else(csv::Position::new));
        last_start_line = line;
        last_multiline = rec.iter().any(|f| f.contains(&b'\n') || f.contains(&b'\r'));
        if last_multiline && (format == Format::Csv || quoted) && !cols.allow_multiline {
            let delim = if format == Format::Csv { b',' } else { b'\t' };
            for (fi, f) in rec.iter().enumerate() {
                if let Some(why) = swallowed_record(f, headers.len(), delim) {
                    return Err(DataError::new(
                        path,
                        Some(line),
                        Some(fi as u64 + 1),
                        format!(
                            "malformed CSV: the quoted field that opens on this line spans several lines and {why}: a stray quote? \
                             (if texts really span lines, give --allow-multiline)"
                        ),
                    ));
                }
            }
        }
        let text = utf8_field(path, rec.get(ti).unwrap_or(b""), line, byte, &rec, ti)?;
        let label = match li {
            Some(i) => Some(utf8_field(path, rec.get(i).unwrap_or(b""), line, byte, &rec, i)?.trim().to_string()),
            None => None,
        };
        emit(Record { line, text, label }, stats)?;
    }
    // The csv crate reads an unclosed quote to the end of the file without an
    // error. A last record that spans lines and runs to the end of a file whose
    // last byte is not a closing quote is such a case.
    if format == Format::Csv && last_multiline {
        let mut f = open(path)?;
        let len = f.metadata().map(|m| m.len()).unwrap_or(0);
        let mut tail = Vec::new();
        use std::io::Seek;
        let _ = f.seek(std::io::SeekFrom::Start(len.saturating_sub(4096)));
        let _ = f.read_to_end(&mut tail);
        let trimmed: &[u8] = {
            let mut t = &tail[..];
            while let Some((&b, rest)) = t.split_last() {
                if b == b'\n' || b == b'\r' {
                    t = rest
                } else {
                    break;
                }
            }
            t
        };
        if !trimmed.ends_with(b"\"") && count_quotes_odd(path, last_start_line)? {
            return Err(DataError::new(
                path,
                Some(last_start_line),
                None,
                "malformed CSV: a quoted field opened here is never closed (unbalanced quote)",
            ));
        }
    }
    Ok(())
}

/// True when the part of the file from `line` on holds an odd number of
/// double quotes: the sign of a quote that was never closed.
fn count_quotes_odd(path: &Path, line: u64) -> Result<bool, DataError> {
    let f = open(path)?;
    let mut n = 0u64;
    for (i, l) in BufReader::new(f).split(b'\n').enumerate() {
        let l = l.map_err(|e| DataError::io(path, None, e.to_string()))?;
        if (i as u64) + 1 >= line {
            n += l.iter().filter(|&&b| b == b'"').count() as u64;
        }
    }
    Ok(n % 2 == 1)
}

fn csv_error(path: &Path, format: Format, e: csv::Error) -> DataError {
    let kind = if format == Format::Tsv { "TSV" } else { "CSV" };
    let starts = Starts::of(path);
    let line_of = |p: &csv::Position| starts.at(p).0;
    let (line, msg) = match e.kind() {
        csv::ErrorKind::UnequalLengths { pos, expected_len, len } => {
            let line = pos.as_ref().map(line_of);
            // A quote opened in this record and never closed swallowed the
            // rest of the file into one field: say so, at the line it opened.
            let unclosed = *len < *expected_len && line.is_some_and(|l| count_quotes_odd(path, l).unwrap_or(false));
            let fields = if *len == 1 { "1 field".to_string() } else { format!("{len} fields") };
            let msg = if unclosed {
                format!("malformed {kind}: a quoted field opened here is never closed (unbalanced quote)")
            } else {
                format!("malformed {kind}: this record has {fields} where the header has {expected_len} (an unbalanced quote or a stray delimiter?)")
            };
            (line, msg)
        }
        csv::ErrorKind::Utf8 { pos, err } => (pos.as_ref().map(line_of), format!("invalid UTF-8 in field {}", err.field() + 1)),
        csv::ErrorKind::Io(err) => return DataError::io(path, None, err.to_string()),
        _ => (e.position().map(line_of), e.to_string()),
    };
    DataError::new(path, line, None, msg)
}

fn read_jsonl<E>(path: &Path, file: File, cols: &Columns, prodigy: bool, stats: &mut ReadStats, emit: &mut E) -> Result<(), DataError>
where
    E: FnMut(Record, &mut ReadStats) -> Result<(), DataError>,
{
    let mut reader = BufReader::with_capacity(1 << 20, file);
    let mut buf = Vec::new();
    let mut line = 0u64;
    let mut offset = 0u64;
    loop {
        buf.clear();
        let n = reader.read_until(b'\n', &mut buf).map_err(|e| DataError::io(path, Some(line + 1), e.to_string()))?;
        if n == 0 {
            break;
        }
        line += 1;
        let start = offset;
        offset += n as u64;
        let s = match std::str::from_utf8(&buf) {
            Ok(s) => s,
            Err(e) => {
                return Err(DataError::new(
                    path,
                    Some(line),
                    Some(e.valid_up_to() as u64 + 1),
                    format!("invalid UTF-8 at byte offset {}", start + e.valid_up_to() as u64),
                ))
            }
        };
        // A byte-order mark at the start is read as CSV's is: skipped.
        let s = if line == 1 { s.trim_start_matches('\u{feff}') } else { s };
        let s = s.trim();
        if s.is_empty() {
            continue;
        }
        let v: serde_json::Value = serde_json::from_str(s).map_err(|e| {
            // serde's message ends "at line 1 column N": the line is ours, the column is in the place.
            let msg = e.to_string();
            let msg = msg.rsplit_once(" at line ").map(|(m, _)| m.to_string()).unwrap_or(msg);
            DataError::new(path, Some(line), Some(e.column() as u64), format!("malformed JSON: {msg}"))
        })?;
        let obj = v.as_object().ok_or_else(|| DataError::new(path, Some(line), None, "expected a JSON object on each line"))?;
        let text = match obj.get(&cols.text) {
            Some(serde_json::Value::String(t)) => t.clone(),
            Some(serde_json::Value::Null) => String::new(),
            Some(other) => return Err(DataError::new(path, Some(line), None, format!("field '{}' is not a string: {other}", cols.text))),
            None => return Err(missing_field(path, line, obj, "text", &cols.text)),
        };
        let label = match &cols.label {
            None => None,
            Some(l) if prodigy => Some(prodigy_label(path, line, obj, l, stats)?),
            Some(l) => match obj.get(l) {
                Some(serde_json::Value::String(t)) => Some(t.trim().to_string()),
                Some(serde_json::Value::Null) => Some(String::new()),
                Some(serde_json::Value::Number(n)) => Some(n.to_string()),
                Some(serde_json::Value::Bool(b)) => Some(b.to_string()),
                Some(other) => return Err(DataError::new(path, Some(line), None, format!("field '{l}' is not a label: {other}"))),
                None => return Err(missing_field(path, line, obj, "label", l)),
            },
        };
        emit(Record { line, text, label }, stats)?;
    }
    Ok(())
}

/// The label of a Prodigy record: the first of `accept` (a list), else the
/// `field` (`label`), when `answer` is `accept`; empty (unlabelled) for
/// `reject`, `ignore` and records not answered yet.
fn prodigy_label(
    path: &Path,
    line: u64,
    obj: &serde_json::Map<String, serde_json::Value>,
    field: &str,
    stats: &mut ReadStats,
) -> Result<String, DataError> {
    use serde_json::Value;
    let err = |m: String| DataError::new(path, Some(line), None, m);
    let label_of = |v: &Value, what: &str| -> Result<String, DataError> {
        match v {
            Value::String(t) => Ok(t.trim().to_string()),
            Value::Number(n) => Ok(n.to_string()),
            Value::Null => Ok(String::new()),
            other => Err(err(format!("{what} is not a label: {}", display_safe(&other.to_string())))),
        }
    };
    match obj.get("answer") {
        None | Some(Value::Null) => return Ok(String::new()),
        // labelrest's own export of a model's label (an older one, answered
        // `accept`): a guess, not an answer. Once a person answered it in
        // Prodigy's app, it has the annotator's fields (`_annotator_id`,
        // `_session_id`; `db-in` adds only hashes, and the `accept`).
        Some(Value::String(a))
            if a == "accept"
                && obj.get("meta").and_then(|m| m.get("source")).is_some_and(|s| s == "model")
                && !obj.contains_key("_annotator_id")
                && !obj.contains_key("_session_id") =>
        {
            stats.model_labels += 1;
            return Ok(String::new());
        }
        Some(Value::String(a)) if a == "accept" => {}
        Some(Value::String(a)) if a == "reject" || a == "ignore" => return Ok(String::new()),
        Some(other) => return Err(err(format!("answer {} is not \"accept\", \"reject\" or \"ignore\"", display_safe(&other.to_string())))),
    }
    match obj.get("accept") {
        Some(Value::Array(items)) if !items.is_empty() => {
            if items.len() > 1 {
                stats.multi_label += 1;
            }
            return label_of(&items[0], "the first of 'accept'");
        }
        None | Some(Value::Null) | Some(Value::Array(_)) => {}
        Some(other) => return Err(err(format!("field 'accept' is not a list of labels: {}", display_safe(&other.to_string())))),
    }
    match obj.get(field) {
        Some(v) => label_of(v, &format!("field '{field}'")),
        None => Ok(String::new()),
    }
}

fn missing_field(path: &Path, line: u64, obj: &serde_json::Map<String, serde_json::Value>, what: &str, name: &str) -> DataError {
    let keys: Vec<&str> = obj.keys().map(|k| k.as_str()).collect();
    DataError::new(path, Some(line), None, format!("no {what} field '{name}'; the fields are: {}", keys.join(", ")))
}

/// A label and its optional description, as given by `--labels-file`.
#[derive(Debug, Clone, PartialEq)]
pub struct LabelDef {
    pub name: String,
    pub description: Option<String>,
}

/// The label set in a message: its first eight names, comma-separated
/// (`a, b, c`; with more, `..., N in all`).
pub fn preview_labels(labels: &[LabelDef]) -> String {
    let names: Vec<&str> = labels.iter().take(8).map(|l| l.name.as_str()).collect();
    if labels.len() > 8 {
        format!("{}, ... {} in all", names.join(", "), labels.len())
    } else {
        names.join(", ")
    }
}

/// Invisible format characters: the zero-width space, bidirectional
/// controls, the word joiner and its kin, and the byte-order mark. A name
/// holding one looks like another name, or reorders the line it is drawn
/// on. (The zero-width joiner and non-joiner are not among them: Persian
/// and Indic words and emoji need them.)
pub fn is_invisible(c: char) -> bool {
    matches!(c, '\u{200b}' | '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2060}'..='\u{2064}' | '\u{2066}'..='\u{2069}' | '\u{feff}')
}

/// Why a label name cannot be used, if it cannot: empty, or holding
/// control characters (which would reach the terminal) or invisible ones
/// (a label that could never be typed: `\u{feff}a` is drawn as `a`).
/// Labels are case-sensitive: `Billing` and `billing` are two labels.
pub fn label_name_problem(name: &str) -> Option<String> {
    if name.trim().is_empty() {
        return Some("an empty label name".into());
    }
    if name.chars().any(|c| c.is_control() || ('\u{80}'..'\u{a0}').contains(&c)) {
        return Some(format!("label '{}' holds control characters", display_safe(name)));
    }
    if name.chars().any(is_invisible) {
        return Some(format!("label '{}' holds invisible characters (zero-width, bidirectional or a byte-order mark)", display_safe(name)));
    }
    None
}

/// Parses `--labels a,b,c`: names are trimmed; an empty name, a name with
/// control characters or a name given twice is refused.
pub fn parse_label_list(s: &str) -> Result<Vec<LabelDef>, String> {
    let mut out: Vec<LabelDef> = Vec::new();
    for x in s.split(',').map(|x| x.trim()) {
        if let Some(p) = label_name_problem(x) {
            return Err(format!("--labels: {p}{}", if x.is_empty() { " (two commas in a row, or one at an end?)" } else { "" }));
        }
        if out.iter().any(|l| l.name == x) {
            return Err(format!("--labels: label '{}' is given twice", display_safe(x)));
        }
        out.push(LabelDef { name: x.to_string(), description: None });
    }
    Ok(out)
}

/// Reads a labels file: one label a line, optionally `label<TAB>description`.
/// Blank lines and comments (`#` alone or followed by a space: `# ...`) are
/// ignored; `#general` is a label (a channel's name, a hashtag).
pub fn read_labels_file(path: &Path) -> Result<Vec<LabelDef>, DataError> {
    let mut bytes = Vec::new();
    open(path)?.read_to_end(&mut bytes).map_err(|e| DataError::io(path, None, format!("cannot read: {e}")))?;
    let s = match String::from_utf8(bytes) {
        Ok(s) => s,
        Err(e) => {
            let at = e.utf8_error().valid_up_to();
            let line = e.as_bytes()[..at].iter().filter(|&&b| b == b'\n').count() as u64 + 1;
            return Err(DataError::new(path, Some(line), None, format!("invalid UTF-8 at byte offset {at}")));
        }
    };
    // A byte-order mark (Notepad's UTF-8) is not part of the first label.
    let s = s.strip_prefix('\u{feff}').unwrap_or(&s);
    let mut out: Vec<LabelDef> = Vec::new();
    for (i, line) in s.lines().enumerate() {
        let line = line.trim_end_matches('\r');
        if line.trim().is_empty() || line.trim_end() == "#" || line.starts_with("# ") || line.starts_with("#\t") {
            continue;
        }
        let (name, desc) = match line.split_once('\t') {
            Some((n, d)) => (n.trim(), Some(d.trim().to_string()).filter(|d| !d.is_empty())),
            None => (line.trim(), None),
        };
        if let Some(p) = label_name_problem(name) {
            return Err(DataError::new(path, Some(i as u64 + 1), None, p));
        }
        if out.iter().any(|l| l.name == name) {
            return Err(DataError::new(path, Some(i as u64 + 1), None, format!("label '{}' is given twice", display_safe(name))));
        }
        out.push(LabelDef { name: name.to_string(), description: desc });
    }
    if out.is_empty() {
        return Err(DataError::new(path, None, None, "no labels: every line is blank or a comment ('# ...'); give one label a line"));
    }
    Ok(out)
}

/// Collects the distinct labels of a file's label column, in order of first
/// appearance (used when no label set is given).
pub fn labels_from_column(path: &Path, format: Format, cols: &Columns) -> Result<Vec<LabelDef>, DataError> {
    let mut seen: Vec<String> = Vec::new();
    let mut set = std::collections::HashSet::new();
    read_records(path, format, cols, |r| {
        if let Some(l) = r.label {
            if !l.is_empty() && set.insert(l.clone()) {
                if let Some(p) = label_name_problem(&l) {
                    return Err(DataError::new(path, Some(r.line), None, p));
                }
                seen.push(l);
            }
        }
        Ok(())
    })?;
    Ok(seen.into_iter().map(|name| LabelDef { name, description: None }).collect())
}

/// Makes text safe to draw in a terminal: control characters (C0 and C1,
/// including the C1 quotes of mis-decoded cp1252) become visible stand-ins,
/// and tabs and line breaks become spaces. The stored text is never changed.
pub fn display_safe(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\t' | '\n' | '\r' => out.push(' '),
            '\u{91}' | '\u{92}' => out.push('\''),
            '\u{93}' | '\u{94}' => out.push('"'),
            '\u{96}' | '\u{97}' => out.push('-'),
            c if (c as u32) < 0x20 || c == '\u{7f}' => out.push('\u{fffd}'),
            c if (0x80..0xa0).contains(&(c as u32)) => out.push('\u{fffd}'),
            // Bidirectional overrides and other invisible format characters
            // (the joiners too: terminals disagree on the cells they take).
            c if is_invisible(c) || matches!(c, '\u{ad}' | '\u{200c}' | '\u{200d}') => {}
            c => out.push(c),
        }
    }
    out
}

/// A count as the screen and messages write it: 67,349.
pub fn thousands(n: usize) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_safe_replaces_controls() {
        assert_eq!(display_safe("I\u{92}m\tok\u{1b}[31m"), "I'm ok\u{fffd}[31m");
        assert_eq!(display_safe("a\u{202e}b"), "ab");
    }

    /// `# ...` is a comment; `#general` (a channel, a hashtag) is a label.
    #[test]
    fn labels_file_comments_and_hash_labels() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("labels.txt");
        std::fs::write(&f, "# the channels\n#general\tgeneral channel\n\n#\nbug\n#news\n").unwrap();
        let l = read_labels_file(&f).unwrap();
        assert_eq!(l.iter().map(|x| x.name.as_str()).collect::<Vec<_>>(), ["#general", "bug", "#news"]);
        assert_eq!(l[0].description.as_deref(), Some("general channel"));
        std::fs::write(&f, "# nothing but comments\n\n").unwrap();
        let e = read_labels_file(&f).unwrap_err().to_string();
        assert!(e.contains("labels.txt") && e.contains("no labels"), "{e}");
    }

    #[test]
    fn label_list() {
        let l = parse_label_list(" a, b ,c").unwrap();
        assert_eq!(l.iter().map(|x| x.name.as_str()).collect::<Vec<_>>(), vec!["a", "b", "c"]);
        assert!(parse_label_list("a,,c").unwrap_err().contains("empty label name"));
        assert!(parse_label_list("a,b,").unwrap_err().contains("empty label name"));
        assert!(parse_label_list("billing,bug,billing").unwrap_err().contains("'billing' is given twice"));
        assert_eq!(parse_label_list("Billing,billing").unwrap().len(), 2, "labels are case-sensitive");
        assert!(parse_label_list("a,\u{1b}]0;PWN\u{7}").unwrap_err().contains("control characters"));
    }
}
