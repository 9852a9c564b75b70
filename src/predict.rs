//! `labelrest predict`: the session's model put to work on a new file,
//! streamed in chunks (memory flat whatever the file's size), with
//! probability and entropy columns, resumable after an interruption.

use anyhow::{bail, Context, Result};
use candle_core::{Device, Tensor};
use std::io::{Seek, Write};
use std::path::{Path, PathBuf};

use crate::say;

use crate::data::{self, Columns, Format};
use crate::learn::Scores;
use crate::model::{self, Encoder, Head};
use crate::store::Session;

#[derive(serde::Serialize)]
struct Out<'a> {
    line: u64,
    text: &'a str,
    label: &'a str,
    probability: f32,
    entropy: f32,
}

/// Whether `predict` writes JSONL (`.jsonl`, `.ndjson`) or CSV (`.csv`) to
/// `out`; another extension is a usage error.
pub fn output_is_jsonl(out: &Path) -> Result<bool> {
    // (Said first: no extension would make such a target right.)
    refuse_written_through(out)?;
    let ext = out.extension().and_then(|e| e.to_str()).unwrap_or("").to_ascii_lowercase();
    match ext.as_str() {
        "csv" => Ok(false),
        "jsonl" | "ndjson" => Ok(true),
        "" => Err(crate::term::usage(format!(
            "{}: cannot tell the output format from a name with no extension; use .csv or .jsonl",
            out.display()
        ))),
        other => Err(crate::term::usage(format!("{}: cannot tell the output format from '.{other}'; use .csv or .jsonl", out.display()))),
    }
}

/// Written beside as OUT.partial and renamed over it (to resume after an
/// interruption), a device, pipe or descriptor would become a file: refused.
fn refuse_written_through(out: &Path) -> Result<()> {
    if crate::output::written_through(out) {
        return Err(crate::term::usage(format!(
            "--out {}: not a file (a device, a pipe or a descriptor such as /dev/stdout): predict writes a file it can resume after an interruption; give a file path (.csv or .jsonl)",
            out.display()
        )));
    }
    Ok(())
}

/// Rows embedded and written at a time; a resumed run starts after the
/// last chunk on disk (`LABELREST_PREDICT_CHUNK` sets it, for tests).
const CHUNK: usize = 1024;

/// What a run has written so far, kept beside the output as
/// `OUT.partial.json` after every chunk: a run on the same input with the
/// same model picks up from it.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
struct Progress {
    input: String,
    input_len: u64,
    input_modified_ns: u128,
    model: String,
    head: String,
    jsonl: bool,
    /// The text column and the input's format (absent in progress notes
    /// written before they were recorded: such a run is not resumed).
    #[serde(default)]
    text_col: String,
    #[serde(default)]
    format: String,
    /// Records written (in input order) and the bytes they take.
    rows: usize,
    bytes: u64,
}

impl Progress {
    fn same_run(&self, other: &Progress) -> bool {
        (&self.input, self.input_len, self.input_modified_ns, &self.model, &self.head, self.jsonl, &self.text_col, &self.format)
            == (
                &other.input,
                other.input_len,
                other.input_modified_ns,
                &other.model,
                &other.head,
                other.jsonl,
                &other.text_col,
                &other.format,
            )
    }
}

fn sibling(out: &Path, suffix: &str) -> PathBuf {
    let name = out.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_else(|| "out".into());
    out.with_file_name(format!("{name}{suffix}"))
}

/// `OUT.lock`, held (`flock`) while a run writes OUT: a second run on the
/// same output is refused, rather than taking over the first one's
/// `OUT.partial` as if resuming it. Removed when the run ends; one left by
/// a killed run is taken again (the lock went with the process).
struct OutLock {
    path: PathBuf,
    _file: std::fs::File,
}

impl OutLock {
    fn take(out: &Path) -> Result<OutLock> {
        use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
        use std::os::unix::io::AsRawFd;
        let path = sibling(out, ".lock");
        loop {
            let f = std::fs::OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .custom_flags(libc::O_NOFOLLOW)
                .open(&path)
                .with_context(|| format!("cannot write {}", path.display()))?;
            // SAFETY: flock on a descriptor this function owns.
            if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
                bail!("{}: another `labelrest predict` is writing it now; wait for it to end, or give another --out", out.display());
            }
            // The run before may have removed the file between our open and
            // our lock: only the file at the path counts.
            let ino = f.metadata().with_context(|| format!("cannot read {}", path.display()))?.ino();
            if std::fs::symlink_metadata(&path).is_ok_and(|m| m.ino() == ino) {
                return Ok(OutLock { path, _file: f });
            }
        }
    }
}

impl Drop for OutLock {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// For crash tests: `LABELREST_CRASH_AT=predict-chunk-N` aborts right after
/// the N-th chunk is on disk, as a `kill -9` there would.
fn crash_after_chunk(n: usize) {
    if std::env::var("LABELREST_CRASH_AT").map(|s| s == format!("predict-chunk-{n}")).unwrap_or(false) {
        std::process::abort();
    }
}

/// A new, empty file at `path`: whatever was there (a file of an earlier
/// run, or a link) is removed first, and the file is created exclusively,
/// so a link planted at the name is never written through.
fn create_fresh(path: &Path) -> Result<std::fs::File> {
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("cannot write {}", path.display())),
    }
    std::fs::OpenOptions::new().write(true).create_new(true).open(path).with_context(|| format!("cannot write {}", path.display()))
}

enum Sink {
    Csv(Box<csv::Writer<std::io::BufWriter<std::fs::File>>>),
    Json(std::io::BufWriter<std::fs::File>),
}

impl Sink {
    fn write(&mut self, o: &Out) -> Result<()> {
        match self {
            Sink::Csv(w) => w.serialize(o)?,
            Sink::Json(w) => {
                serde_json::to_writer(&mut *w, o)?;
                w.write_all(b"\n")?;
            }
        }
        Ok(())
    }
    /// Everything written so far reaches the disk; returns the file's length.
    fn sync(&mut self) -> Result<u64> {
        let f = match self {
            Sink::Csv(w) => {
                w.flush()?;
                w.get_ref().get_ref()
            }
            Sink::Json(w) => {
                w.flush()?;
                w.get_ref()
            }
        };
        f.sync_data()?;
        Ok(f.metadata()?.len())
    }
}

/// What `predict_file` wrote: the rows labelled, and the records left out
/// because their text is empty (their count and their first lines).
pub struct Predicted {
    pub rows: usize,
    pub skipped_empty: u64,
    pub skipped_lines: Vec<u64>,
}

/// Labels every record of `input` and writes CSV or JSONL to `out`, in
/// input order, a chunk at a time (memory does not grow with the input);
/// records with empty text are left out and counted. The rows go to `OUT.partial` and what is on disk
/// to `OUT.partial.json` after every chunk; the output takes its name only
/// when complete. Run again after an interruption (a crash, `kill -9`, a
/// full disk), it picks up after the last chunk on disk, as long as the
/// input and the model are the same.
pub fn predict_file(session: &Session, input: &Path, format: Option<Format>, text_col: &str, out: &Path) -> Result<Predicted> {
    crate::output::check_not_input(out, &[input, &session.db_path()])?;
    if out.is_dir() {
        bail!("cannot write {}: it is a folder", out.display());
    }
    if let Some(dir) = out.parent().filter(|d| !d.as_os_str().is_empty() && !d.is_dir()) {
        bail!("cannot write {}: the folder {} does not exist", out.display(), dir.display());
    }
    refuse_written_through(out)?;
    let settings = session.settings()?;
    let names: Vec<String> = session.label_set()?.into_iter().map(|l| l.name).collect();
    let dir = crate::worker::encoder_dir(session)?;
    if let Some((tuned, _)) = session.tuned_encoder()? {
        if tuned != dir {
            say!(
                "note: the fine-tuned encoder {} is missing: the base encoder's model labels the file (it may have learnt from fewer labels; `labelrest retrain {}` trains it on them all)",
                tuned.display(),
                crate::data::display_safe(&session.name)
            );
        }
    }
    let encoder = Encoder::load(&dir, &model::device(settings.device)?)?;
    let head_path = session.head_path(&encoder.hash);
    if !head_path.exists() {
        bail!("session '{}' has no trained model yet; label some rows or run `labelrest retrain {}` first", session.name, session.name);
    }
    // Loaded from the bytes that are hashed: a head saved in between cannot
    // label rows under another's name.
    let head_bytes = std::fs::read(&head_path).with_context(|| format!("cannot read {}", head_path.display()))?;
    let head = Head::from_bytes(&head_bytes, &head_path)?;
    if head.k != names.len() {
        bail!("the saved model has {} labels but the session has {}", head.k, names.len());
    }
    let format = match format {
        Some(f) => f,
        None => Format::detect(input).map_err(|e| crate::term::usage(e.to_string()))?,
    };
    let jsonl = output_is_jsonl(out)?;
    let chunk_size = std::env::var("LABELREST_PREDICT_CHUNK").ok().and_then(|v| v.parse().ok()).filter(|&n: &usize| n > 0).unwrap_or(CHUNK);

    // What this run is: the input as it is now, the model that labels it.
    let meta = std::fs::metadata(input).with_context(|| format!("cannot read {}", input.display()))?;
    let modified = meta.modified().ok().and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok()).map(|d| d.as_nanos()).unwrap_or(0);
    let head_hash = {
        use sha2::{Digest, Sha256};
        Sha256::digest(&head_bytes).iter().take(8).map(|b| format!("{b:02x}")).collect::<String>()
    };
    let mut progress = Progress {
        input: input.canonicalize().unwrap_or_else(|_| input.to_path_buf()).display().to_string(),
        input_len: meta.len(),
        input_modified_ns: modified,
        model: encoder.hash.clone(),
        head: head_hash,
        jsonl,
        text_col: text_col.to_string(),
        format: format!("{format:?}"),
        rows: 0,
        bytes: 0,
    };
    let _lock = OutLock::take(out)?;
    let partial = sibling(out, ".partial");
    let state = sibling(out, ".partial.json");
    let earlier: Option<Progress> = std::fs::read(&state).ok().and_then(|b| serde_json::from_slice(&b).ok());
    let resume = match earlier {
        Some(e) if e.same_run(&progress) && std::fs::metadata(&partial).map(|m| m.len() >= e.bytes).unwrap_or(false) => Some(e),
        Some(_) => {
            say!("{} is from another run (the input, its text column or format, or the model changed): starting again", state.display());
            None
        }
        None => None,
    };
    // Neither file is opened through a link planted at its (predictable)
    // name: a resumed one is opened without following links, a new one is
    // created afresh, never through what was there.
    use std::os::unix::fs::OpenOptionsExt;
    let file = match &resume {
        Some(e) => {
            let f = std::fs::OpenOptions::new()
                .write(true)
                .custom_flags(libc::O_NOFOLLOW)
                .open(&partial)
                .with_context(|| format!("cannot write {}", partial.display()))?;
            // Whatever a crash left after the last chunk on disk goes.
            f.set_len(e.bytes).with_context(|| format!("cannot write {}", partial.display()))?;
            say!("resuming: {} rows were already labelled into {}", e.rows, partial.display());
            progress.rows = e.rows;
            progress.bytes = e.bytes;
            f
        }
        None => {
            let f = create_fresh(&partial)?;
            // The note of an earlier run goes with its rows: a run stopped
            // before its first chunk leaves no note of another run behind.
            let _ = std::fs::remove_file(&state);
            f
        }
    };
    let mut file = file;
    file.seek(std::io::SeekFrom::End(0)).with_context(|| format!("cannot write {}", partial.display()))?;
    let buf = std::io::BufWriter::with_capacity(1 << 16, file);
    let mut sink =
        if jsonl { Sink::Json(buf) } else { Sink::Csv(Box::new(csv::WriterBuilder::new().has_headers(resume.is_none()).from_writer(buf))) };
    let skip = progress.rows;
    let bar = if crate::term::quiet() { indicatif::ProgressBar::hidden() } else { indicatif::ProgressBar::new_spinner() };
    // Counts this run's rows (a resumed run's earlier ones are in the prefix).
    bar.set_style(
        indicatif::ProgressStyle::with_template("{spinner} {prefix}labelled {pos} rows in {elapsed} (interrupted, run it again to resume)")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner()),
    );
    if skip > 0 {
        bar.set_prefix(format!("{skip} earlier + "));
    }
    let mut chunk: Vec<(u64, String)> = Vec::new();
    let mut chunks = 0usize;
    let mut flush = |chunk: &mut Vec<(u64, String)>, sink: &mut Sink, progress: &mut Progress| -> Result<()> {
        if chunk.is_empty() {
            return Ok(());
        }
        let texts: Vec<&str> = chunk.iter().map(|c| c.1.as_str()).collect();
        let emb = encoder.embed(&texts, |_, _| {})?;
        let x = Tensor::from_vec(emb, (texts.len(), encoder.dim), &Device::Cpu)?;
        let s = Scores::from_probs(head.predict_calibrated(&x)?, head.k);
        for (i, (line, text)) in chunk.iter().enumerate() {
            sink.write(&Out { line: *line, text, label: &names[s.pred[i] as usize], probability: s.prob[i], entropy: s.entropy[i] })
                .with_context(|| format!("cannot write {}", partial.display()))?;
        }
        // The rows first, then the note of how far they go.
        progress.bytes = sink.sync().with_context(|| format!("cannot write {}", partial.display()))?;
        progress.rows += chunk.len();
        let tmp = sibling(&state, ".tmp");
        create_fresh(&tmp)?.write_all(&serde_json::to_vec(&*progress)?).with_context(|| format!("cannot write {}", tmp.display()))?;
        std::fs::rename(&tmp, &state).with_context(|| format!("cannot write {}", state.display()))?;
        bar.set_position((progress.rows - skip) as u64);
        chunk.clear();
        chunks += 1;
        crash_after_chunk(chunks);
        Ok(())
    };
    let mut err: Option<anyhow::Error> = None;
    let mut seen = 0usize;
    let stats = data::read_records(input, format, &Columns::new(text_col, None), |r| {
        seen += 1;
        if seen <= skip {
            return Ok(());
        }
        chunk.push((r.line, r.text));
        if chunk.len() >= chunk_size {
            if let Err(e) = flush(&mut chunk, &mut sink, &mut progress) {
                err = Some(e);
                return Err(data::DataError::new(input, Some(r.line), None, "prediction failed"));
            }
        }
        Ok(())
    })
    .map_err(|e| match err.take() {
        Some(inner) => inner,
        None => {
            // The input itself is wrong: it must change before a run can
            // finish, and a changed input is not resumed from. (One that
            // could not be read is kept: run again, it resumes.)
            if !e.io {
                let _ = std::fs::remove_file(&partial);
                let _ = std::fs::remove_file(&state);
            }
            e.into()
        }
    })?;
    flush(&mut chunk, &mut sink, &mut progress)?;
    if progress.rows == 0 {
        // The csv crate writes the header with the first row: an input with
        // none still gets one (an empty file is no CSV to most readers).
        if let Sink::Csv(w) = &mut sink {
            w.write_record(["line", "text", "label", "probability", "entropy"])
                .with_context(|| format!("cannot write {}", partial.display()))?;
        }
        sink.sync().with_context(|| format!("cannot write {}", partial.display()))?;
    }
    bar.finish_and_clear();
    if seen < skip {
        bail!("{} has {seen} records but {} says {skip} were labelled: remove both and run again", input.display(), state.display());
    }
    drop(sink);
    std::fs::rename(&partial, out).with_context(|| format!("cannot write {}", out.display()))?;
    let _ = std::fs::remove_file(&state);
    Ok(Predicted { rows: progress.rows, skipped_empty: stats.skipped_empty, skipped_lines: stats.skipped_lines })
}
