//! Making a session: importing a data file into a new database built
//! beside the sessions and moved into place at the end (or swapped in for
//! the old one with `--force`), and cleaning up after runs that crashed.

use super::*;

/// Exchanges two paths atomically (Linux `renameat2(RENAME_EXCHANGE)`).
/// Returns false where the system or the file system cannot.
fn exchange(a: &Path, b: &Path) -> Result<bool> {
    // For the crash tests of the fallback (two renames) path.
    if std::env::var_os("LABELREST_NO_EXCHANGE").is_some() {
        return Ok(false);
    }
    #[cfg(target_os = "linux")]
    {
        use std::os::unix::ffi::OsStrExt;
        let ca = std::ffi::CString::new(a.as_os_str().as_bytes())?;
        let cb = std::ffi::CString::new(b.as_os_str().as_bytes())?;
        // SAFETY: two valid NUL-terminated paths, relative to the current folder.
        let r = unsafe { libc::renameat2(libc::AT_FDCWD, ca.as_ptr(), libc::AT_FDCWD, cb.as_ptr(), libc::RENAME_EXCHANGE) };
        if r == 0 {
            return Ok(true);
        }
        let e = std::io::Error::last_os_error();
        match e.raw_os_error() {
            Some(libc::EINVAL) | Some(libc::ENOSYS) | Some(libc::ENOTSUP) => Ok(false),
            _ => Err(e).with_context(|| format!("cannot put {} in place of {}", a.display(), b.display())),
        }
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = (a, b);
        Ok(false)
    }
}

/// For crash tests: `LABELREST_CRASH_AT=STEP` makes the process abort at
/// that step of replacing a session, as a `kill -9` there would.
/// `LABELREST_PAUSE_AT=STEP` waits there 5 s instead (`crate::pause_at`).
fn crash_point(step: &str) {
    if std::env::var("LABELREST_CRASH_AT").map(|s| s == step).unwrap_or(false) {
        std::process::abort();
    }
    crate::pause_at(step);
}

/// Removes what crashed runs of `new` left in a sessions folder: folders
/// `.NAME.new-PID` and `.NAME.old-PID` whose lock no process holds. An old
/// session set aside by a replace that did not finish is put back first.
pub fn clean_stale(sessions: &Path) {
    let Ok(rd) = std::fs::read_dir(sessions) else { return };
    for entry in rd.flatten() {
        let fname = entry.file_name().to_string_lossy().to_string();
        let Some(rest) = fname.strip_prefix('.') else { continue };
        let (name, kind, pid) = match (rest.rsplit_once(".new-"), rest.rsplit_once(".old-")) {
            (Some((n, pid)), _) if pid.parse::<i32>().is_ok() => (n.to_string(), "new", pid.parse::<i32>().unwrap_or(0)),
            (_, Some((n, pid))) if pid.parse::<i32>().is_ok() => (n.to_string(), "old", pid.parse::<i32>().unwrap_or(0)),
            _ => continue,
        };
        let path = entry.path();
        if Lock::holder(&path).is_some() || pid_alive(pid) {
            continue; // a run of `new` is still building or replacing it
        }
        if kind == "old" && matches!(exists(sessions, &name), Ok(false)) && path.join(DB_FILE).exists() {
            // The replace stopped between setting the old one aside and putting the new one in.
            match std::fs::rename(&path, session_dir(sessions, &name)) {
                Ok(()) => {
                    tracing::warn!("put session {name} back from {}", path.display());
                    continue;
                }
                Err(e) => tracing::warn!("cannot put {} back: {e}", path.display()),
            }
        }
        match std::fs::remove_dir_all(&path) {
            Ok(()) => tracing::info!("removed {}, left by a run of `new` that did not finish", path.display()),
            Err(e) => tracing::warn!("cannot remove {}: {e}", path.display()),
        }
    }
}

/// What a session is made from.
#[derive(Debug, Clone)]
pub struct ImportSpec {
    pub data: PathBuf,
    pub format: Option<Format>,
    pub columns: Columns,
    /// What the label column means, when there is one.
    pub label_col_is: LabelColIs,
    pub labels: Option<Vec<LabelDef>>,
    pub test: Option<PathBuf>,
    /// Label column of the test file (default: the same as the data's, else `label`).
    pub test_label_col: Option<String>,
    pub settings: Settings,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LabelColIs {
    Seed,
    Gold,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct ImportReport {
    pub pool_rows: u64,
    pub test_rows: u64,
    pub seed_labels: u64,
    pub gold_labels: u64,
    pub skipped_empty: u64,
    pub labels: usize,
    /// Prodigy: accepted rows with several labels in `accept` (the first taken).
    pub multi_label: u64,
    /// Prodigy: rows labelrest exported with its model's label, read unlabelled.
    pub model_labels: u64,
    /// The first few lines of the data file whose empty texts were skipped
    /// (empty when some were the test file's).
    pub skipped_lines: Vec<u64>,
    /// Seed labels on a text that came earlier with another seed label (the
    /// same text after trimming), and the first such line.
    pub seed_conflicts: u64,
    pub seed_conflict_line: Option<u64>,
    /// Test rows whose text is also a pool row's (the same after trimming):
    /// held-out scores count them as unseen, and the model may learn them.
    pub test_in_pool: u64,
    /// The first such test row's line.
    pub test_in_pool_line: Option<u64>,
}

impl Session {
    /// Creates a session from a data file. Nothing is left behind on error:
    /// the session is built in a temporary folder and moved into place at the end.
    pub fn create(sessions: &(impl Sessions + ?Sized), name: &str, spec: &ImportSpec, force: bool) -> Result<ImportReport> {
        validate_new_name(name)?;
        let store = sessions.store();
        if let Some(url) = &store.pg {
            return pg::create(url, name, force, |db| Self::build(db, spec));
        }
        let sessions = store.local.as_path();
        let final_dir = session_dir(sessions, name);
        if final_dir.join(DB_FILE).exists() && !force {
            bail!("session '{name}' exists already in {}; use --force to replace it, or another name", sessions.display());
        }
        std::fs::create_dir_all(sessions).with_context(|| format!("cannot create sessions folder {}", sessions.display()))?;
        clean_stale(sessions);
        let tmp = sessions.join(format!(".{name}.new-{}", std::process::id()));
        if tmp.exists() {
            std::fs::remove_dir_all(&tmp).with_context(|| format!("cannot remove {}", tmp.display()))?;
        }
        std::fs::create_dir_all(&tmp).with_context(|| format!("cannot create {}", tmp.display()))?;
        // The new session is locked while it is built: `clean_stale` leaves it alone.
        let new_lock = match Lock::acquire(&tmp, name) {
            Ok(l) => l,
            Err(e) => {
                let _ = std::fs::remove_dir_all(&tmp);
                return Err(e);
            }
        };
        let res = Self::build_file(&tmp, spec).and_then(|report| {
            crash_point("built");
            Self::put_in_place(&tmp, &final_dir, name, force).map(|_| report)
        });
        drop(new_lock);
        if res.is_err() {
            let _ = std::fs::remove_dir_all(&tmp);
        }
        res
    }

    /// Puts the session built in `tmp` at `final_dir`, replacing the one
    /// there (under its lock: refused while someone works in it). At every
    /// moment exactly one complete session is under the name, or, where the
    /// file system cannot exchange two folders atomically, the old one is
    /// set aside and put back by `clean_stale` if the process dies between
    /// the two renames.
    fn put_in_place(tmp: &Path, final_dir: &Path, name: &str, force: bool) -> Result<()> {
        if !final_dir.exists() {
            // (A folder that appears meanwhile and is not empty fails the rename.)
            std::fs::rename(tmp, final_dir).with_context(|| format!("cannot create {}", final_dir.display()))?;
            return Ok(());
        }
        // Without --force, a session made while this one was built (another
        // `new` of the same name) is not replaced.
        if !force && final_dir.join(DB_FILE).exists() {
            bail!(
                "session '{name}' exists already in {} (made while this one was built); use --force to replace it, or another name",
                final_dir.parent().unwrap_or(Path::new(".")).display()
            );
        }
        // --force: the old session's lock is held until it is gone.
        let old_lock = Lock::acquire(final_dir, name)?;
        crash_point("locked");
        if exchange(tmp, final_dir)? {
            // `tmp` now holds the old session.
            crash_point("exchanged");
            drop(old_lock);
            std::fs::remove_dir_all(tmp).with_context(|| format!("cannot remove the old session, now at {}", tmp.display()))?;
            crash_point("removed");
            return Ok(());
        }
        let parent = final_dir.parent().unwrap_or(Path::new("."));
        let aside = parent.join(format!(".{name}.old-{}", std::process::id()));
        std::fs::rename(final_dir, &aside).with_context(|| format!("cannot move {} aside", final_dir.display()))?;
        crash_point("aside");
        if let Err(e) = std::fs::rename(tmp, final_dir) {
            let _ = std::fs::rename(&aside, final_dir);
            return Err(e).with_context(|| format!("cannot create {}", final_dir.display()));
        }
        crash_point("exchanged");
        drop(old_lock);
        std::fs::remove_dir_all(&aside).with_context(|| format!("cannot remove the old session, now at {}", aside.display()))?;
        crash_point("removed");
        Ok(())
    }

    /// Builds a SQLite session in `dir`.
    fn build_file(dir: &Path, spec: &ImportSpec) -> Result<ImportReport> {
        let conn = Connection::open(dir.join(DB_FILE))?;
        configure(&conn)?;
        // The import itself is one transaction: durable once, fast.
        conn.pragma_update(None, "synchronous", "OFF")?;
        let db = Db::Sqlite(conn);
        let report = Self::build(&db, spec)?;
        let Db::Sqlite(conn) = db else { unreachable!() };
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE);")?;
        Ok(report)
    }

    /// Imports `spec` into the empty database `db`.
    fn build(db: &Db, spec: &ImportSpec) -> Result<ImportReport> {
        let data_format = match spec.format {
            Some(f) => f,
            None => Format::detect(&spec.data)?,
        };
        // Prodigy's records carry their labels (accepted answers): read
        // them without being asked for a label column.
        let mut spec = std::borrow::Cow::Borrowed(spec);
        if data_format == Format::Prodigy && spec.columns.label.is_none() {
            spec.to_mut().columns.label = Some("label".into());
        }
        let spec = spec.as_ref();
        if spec.columns.label.as_deref() == Some(spec.columns.text.as_str()) {
            return Err(crate::term::usage(format!(
                "--label-col and --text-col name the same column '{}': the labels would be the texts",
                data::display_safe(&spec.columns.text)
            )));
        }
        data::require_file(&spec.data)?;
        if let Some(t) = &spec.test {
            data::require_file(t)?;
        }
        let labels: Vec<LabelDef> = match &spec.labels {
            Some(l) => l.clone(),
            None => match &spec.columns.label {
                // The label set comes from a first pass over the file: a
                // pipe (`<(...)`, /dev/stdin) would be empty the second time.
                Some(_) if !spec.data.is_file() => bail!(
                    "{}: not a regular file (a pipe?), and the labels would come from a first pass over it; give --labels a,b,c or --labels-file, or save the data to a file first",
                    spec.data.display()
                ),
                Some(_) => data::labels_from_column(&spec.data, data_format, &spec.columns)?,
                None => bail!("no label set: give --labels a,b,c, --labels-file FILE, or a --label-col to take them from"),
            },
        };
        if labels.len() < 2 {
            // Taken from a column: say which, of which file.
            let from = match (&spec.labels, &spec.columns.label) {
                (None, Some(c)) => format!(" (from column '{}' of {})", data::display_safe(c), spec.data.display()),
                _ => String::new(),
            };
            bail!(
                "the label set has {} label{}{from}; a classifier needs at least two",
                labels.len(),
                if labels.len() == 1 { "" } else { "s" }
            );
        }
        let index: HashMap<&str, u32> = labels.iter().enumerate().map(|(i, l)| (l.name.as_str(), i as u32)).collect();

        db.batch(&if db.is_pg() { pg::schema_pg() } else { SCHEMA.to_string() })?;
        let tx = db.write_tx()?;
        for (i, l) in labels.iter().enumerate() {
            tx.exec("INSERT INTO label_set(id, name, description) VALUES (?1, ?2, ?3)", p![i as i64, &l.name, l.description.clone()])?;
        }
        let mut report = ImportReport { labels: labels.len(), ..Default::default() };
        let t = now();
        {
            let ins_row = |split: &str, text: &str, gold: Option<u32>, line: i64| -> Result<i64> {
                tx.one(
                    "INSERT INTO rows(split, text, gold, source_line) VALUES (?1, ?2, ?3, ?4) RETURNING id",
                    p![split, text, gold.map(|g| g as i64), line],
                )
            };
            let ins_ann = |id: i64, l: u32| {
                tx.exec(
                    "INSERT INTO annotations(row_id, label, source, iteration, at) VALUES (?1, ?2, 'seed', 0, ?3)",
                    p![id, l as i64, &t],
                )
            };
            let file = spec.data.clone();
            // The pool's texts (hashed: a test set's rows are checked against them).
            let mut pool_texts: std::collections::HashSet<u64> = Default::default();
            // Each text's first seed label (by the text's hash).
            let mut seeded: HashMap<u64, u32> = HashMap::new();
            let text_hash = |t: &str| {
                use std::hash::{Hash, Hasher};
                let mut h = std::collections::hash_map::DefaultHasher::new();
                t.trim().hash(&mut h);
                h.finish()
            };
            let stats = data::read_records(&spec.data, data_format, &spec.columns, |r| {
                if spec.test.is_some() {
                    pool_texts.insert(text_hash(&r.text));
                }
                let label = match r.label.as_deref() {
                    None | Some("") => None,
                    Some(l) => Some(*index.get(l).ok_or_else(|| {
                        DataError::new(
                            &file,
                            Some(r.line),
                            None,
                            format!("label '{}' is not in the label set ({})", data::display_safe(l), data::preview_labels(&labels)),
                        )
                    })?),
                };
                let gold = if spec.label_col_is == LabelColIs::Gold { label } else { None };
                let id = ins_row("pool", &r.text, gold, r.line as i64)
                    .map_err(|e| DataError::new(&file, Some(r.line), None, format!("cannot store: {e:#}")))?;
                if spec.label_col_is == LabelColIs::Seed {
                    if let Some(l) = label {
                        if *seeded.entry(text_hash(&r.text)).or_insert(l) != l {
                            report.seed_conflicts += 1;
                            report.seed_conflict_line.get_or_insert(r.line);
                        }
                        ins_ann(id, l).map_err(|e| DataError::new(&file, Some(r.line), None, format!("cannot store: {e:#}")))?;
                        report.seed_labels += 1;
                    }
                } else if label.is_some() {
                    report.gold_labels += 1;
                }
                report.pool_rows += 1;
                Ok(())
            })?;
            report.skipped_empty += stats.skipped_empty;
            report.skipped_lines = stats.skipped_lines.clone();
            report.multi_label += stats.multi_label;
            report.model_labels += stats.model_labels;
            if report.pool_rows == 0 {
                return Err(DataError::new(&spec.data, None, None, "no rows with text").into());
            }
            if let Some(test) = &spec.test {
                // Its own extension first: `--format` is the data's.
                let tf = match (Format::detect(test), spec.format) {
                    (Ok(f), _) => f,
                    (Err(_), Some(f)) => f,
                    (Err(e), None) => return Err(e.into()),
                };
                let tcols = Columns {
                    text: spec.columns.text.clone(),
                    label: Some(spec.test_label_col.clone().or_else(|| spec.columns.label.clone()).unwrap_or_else(|| "label".into())),
                    allow_multiline: spec.columns.allow_multiline,
                };
                let stats = data::read_records(test, tf, &tcols, |r| {
                    let l = r.label.unwrap_or_default();
                    if l.is_empty() {
                        return Err(DataError::new(test, Some(r.line), None, "a test row needs a gold label"));
                    }
                    let gold = *index.get(l.as_str()).ok_or_else(|| {
                        DataError::new(
                            test,
                            Some(r.line),
                            None,
                            format!("label '{}' is not in the label set ({})", data::display_safe(&l), data::preview_labels(&labels)),
                        )
                    })?;
                    ins_row("test", &r.text, Some(gold), r.line as i64)
                        .map_err(|e| DataError::new(test, Some(r.line), None, format!("cannot store: {e:#}")))?;
                    report.test_rows += 1;
                    if pool_texts.contains(&text_hash(&r.text)) {
                        report.test_in_pool += 1;
                        report.test_in_pool_line.get_or_insert(r.line);
                    }
                    Ok(())
                })
                // The test file's label column has a flag of its own.
                .map_err(|mut e| {
                    e.message = e.message.replace("(choose it with --label-col)", "(choose it with --test-label-col)");
                    e
                })?;
                if stats.skipped_empty > 0 {
                    // Lines of two files: not named.
                    report.skipped_lines.clear();
                }
                report.skipped_empty += stats.skipped_empty;
            }
        }
        let mut settings = spec.settings.clone();
        if settings.batch == 0 {
            settings.batch = 10;
        }
        // The share of rows sent to two annotators: of the rows with no seed label.
        if settings.overlap > 0.0 {
            let free: Vec<i64> = tx
                .col("SELECT id FROM rows r WHERE split='pool' AND NOT EXISTS (SELECT 1 FROM annotations a WHERE a.row_id = r.id)", p![])?;
            for id in free.into_iter().filter(|&id| super::in_overlap_share(id, settings.overlap)) {
                tx.exec("INSERT INTO overlap(row_id) VALUES (?1)", p![id])?;
            }
        }
        tx.exec("INSERT INTO meta(key, value) VALUES ('schema_version', ?1)", p![SCHEMA_VERSION.to_string()])?;
        tx.exec("INSERT INTO meta(key, value) VALUES ('created', ?1)", p![now()])?;
        // Empty until someone opens it to work (`sessions` says "never").
        tx.exec("INSERT INTO meta(key, value) VALUES ('last_opened', '')", p![])?;
        tx.exec("INSERT INTO meta(key, value) VALUES ('settings', ?1)", p![serde_json::to_string(&settings)?])?;
        tx.exec("INSERT INTO meta(key, value) VALUES ('source', ?1)", p![spec.data.display().to_string()])?;
        tx.commit()?;
        Ok(report)
    }
}
