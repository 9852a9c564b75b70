//! What a session holds, read and written: settings and meta entries, the
//! label set, rows, labels (with who gave them), iterations and
//! predictions. Every write that must survive a crash is one transaction.

use super::*;

/// The label a new one replaced: its index and its annotator (None for a
/// seed label, or one given before annotators were recorded).
pub type Replaced = Option<(u32, Option<String>)>;

impl Session {
    /// Names the session and its file in an error from the database.
    pub(super) fn ctx<T, E: Into<anyhow::Error>>(&self, r: std::result::Result<T, E>) -> Result<T> {
        r.map_err(Into::into).with_context(|| format!("session '{}' ({})", self.name, self.location()))
    }

    /// The number of labels in the label set (labels stored must be below it).
    pub(super) fn n_labels(&self) -> Result<u32> {
        self.ctx(self.db.one::<i64>("SELECT count(*) FROM label_set", p![]).map(|n| n as u32))
    }

    pub(super) fn check_label(&self, what: &str, row_id: i64, label: i64, k: u32) -> Result<u32> {
        if label < 0 || label as u64 >= k as u64 {
            bail!(
                "session '{}' ({}): {what} of row {row_id} is label {label}, but the label set has {k} labels: the database is damaged",
                self.name,
                self.location()
            );
        }
        Ok(label as u32)
    }

    pub fn summary(&self) -> Result<Summary> {
        let rows: i64 = self.db.one("SELECT count(*) FROM rows WHERE split='pool'", p![])?;
        let test_rows: i64 = self.db.one("SELECT count(*) FROM rows WHERE split='test'", p![])?;
        let labelled: i64 = self.db.one("SELECT count(DISTINCT row_id) FROM annotations WHERE active=1", p![])?;
        let iterations: i64 = self.db.one("SELECT count(*) FROM iterations", p![])?;
        let last_opened: Option<String> =
            self.db.opt::<String>("SELECT value FROM meta WHERE key='last_opened'", p![])?.filter(|t| !t.is_empty());
        // Where it is: its folder, or its place in the store (as `sessions` lists it).
        let path = match &self.pg {
            Some(url) => PathBuf::from(format!("{}#{}", display_url(url), data::display_safe(&self.name))),
            None => self.dir.clone(),
        };
        Ok(Summary { name: self.name.clone(), rows, test_rows, labelled, iterations, last_opened, path })
    }

    pub fn settings(&self) -> Result<Settings> {
        let s: String = self.ctx(self.db.one("SELECT value FROM meta WHERE key='settings'", p![]))?;
        serde_json::from_str(&s).with_context(|| format!("session '{}' ({}): the settings are damaged", self.name, self.location()))
    }

    pub fn save_settings(&self, s: &Settings) -> Result<()> {
        self.db.exec(
            "INSERT INTO meta(key, value) VALUES ('settings', ?1) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            p![serde_json::to_string(s)?],
        )?;
        Ok(())
    }

    pub fn meta(&self, key: &str) -> Result<Option<String>> {
        self.db.opt("SELECT value FROM meta WHERE key=?1", p![key])
    }

    /// The (row id, label) pairs the person kept after the review disputed
    /// them: not listed again while the row keeps that label.
    pub fn kept_reviews(&self) -> Result<std::collections::HashSet<(i64, u32)>> {
        Ok(match self.meta(KEPT_REVIEWS)? {
            Some(v) => self.ctx(serde_json::from_str(&v).context("the labels kept after review are damaged"))?,
            None => Default::default(),
        })
    }

    /// Records that the person kept `label` on `row_id` after review.
    pub fn keep_review(&self, row_id: i64, label: u32) -> Result<()> {
        let mut kept = self.kept_reviews()?;
        kept.insert((row_id, label));
        self.set_meta(KEPT_REVIEWS, &serde_json::to_string(&kept)?)
    }

    /// Sets a value of the session's meta table (a process that lost its
    /// hold on the session may not: another holds the annotator now).
    pub fn set_meta(&self, key: &str, value: &str) -> Result<()> {
        self.check_held()?;
        self.db
            .exec("INSERT INTO meta(key, value) VALUES (?1, ?2) ON CONFLICT(key) DO UPDATE SET value = excluded.value", p![key, value])?;
        Ok(())
    }

    pub fn label_set(&self) -> Result<Vec<LabelDef>> {
        self.ctx((|| -> Result<_> {
            self.db
                .query("SELECT name, description FROM label_set ORDER BY id", p![])?
                .iter()
                .map(|r| anyhow::Ok(LabelDef { name: r.get(0)?, description: r.get(1)? }))
                .collect()
        })())
    }

    pub fn set_label_description(&self, label: u32, description: Option<&str>) -> Result<()> {
        let n = self
            .db
            .exec("UPDATE label_set SET description = ?1 WHERE id = ?2", p![description.filter(|d| !d.trim().is_empty()), label as i64])?;
        if n != 1 {
            bail!("no label {label} in the label set");
        }
        Ok(())
    }

    /// All rows in id order (pool rows first, then test rows).
    pub fn rows(&self) -> Result<Vec<Row>> {
        let k = self.n_labels()?;
        let raw: Vec<(i64, String, String, Option<i64>)> = self.ctx((|| -> Result<_> {
            self.db
                .query("SELECT id, split, text, gold FROM rows ORDER BY id", p![])?
                .iter()
                .map(|r| anyhow::Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
                .collect::<Result<Vec<_>>>()
        })())?;
        raw.into_iter()
            .map(|(id, split, text, gold)| {
                Ok(Row {
                    id,
                    split: if split == "test" { Split::Test } else { Split::Pool },
                    text,
                    gold: gold.map(|g| self.check_label("the gold label", id, g, k)).transpose()?,
                })
            })
            .collect()
    }

    /// The label in use of every row that has one, oldest first: what the
    /// model learns from (`resolved().labels`: an overlap row once two
    /// annotators agree or it was adjudicated).
    pub fn labels(&self) -> Result<Vec<Label>> {
        Ok(self.resolved()?.labels)
    }

    /// The label in use of one row (as `labels` has it), if it has one.
    pub fn label_of(&self, row_id: i64) -> Result<Option<(u32, Source)>> {
        Ok(self.labels()?.into_iter().find(|l| l.row_id == row_id).map(|l| (l.label, l.source)))
    }

    /// One row's text.
    pub fn text_of(&self, row_id: i64) -> Result<String> {
        self.ctx(self.db.one("SELECT text FROM rows WHERE id=?1", p![row_id]))
    }

    /// Where the head trained on the encoder with content hash `model_hash` is saved.
    /// (In PostgreSQL, a newer copy the trainer shared is brought here first.)
    pub fn head_path(&self, model_hash: &str) -> PathBuf {
        let path = self.dir.join(format!("head-{model_hash}.safetensors"));
        if let Err(e) = self.fetch_file(&path) {
            tracing::warn!("cannot bring the shared model {} from the store: {e:#}", path.display());
        }
        path
    }

    pub fn annotator(&self) -> &str {
        &self.annotator
    }

    /// The labels in use per annotator and source, most first: (annotator
    /// (None: not recorded), source, count).
    pub fn labels_per_annotator(&self) -> Result<Vec<(Option<String>, Source, i64)>> {
        let raw: Vec<(Option<String>, String, i64)> = self.ctx((|| -> Result<_> {
            self.db
                .query(
                    "SELECT annotator, source, count(*) FROM annotations WHERE active=1 GROUP BY annotator, source ORDER BY count(*) DESC, annotator",
                    p![],
                )?
                .iter()
                .map(|r| anyhow::Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
                .collect::<Result<Vec<_>>>()
        })())?;
        raw.into_iter().map(|(a, s, n)| Ok((a, self.ctx(Source::parse(&s))?, n))).collect()
    }

    /// Records a person's label for a row; returns when it is on disk.
    /// A row labelled before gets the new label (an overlap row: this
    /// annotator's label is replaced, the others' stay); the old one is
    /// kept in the history and comes back on undo.
    pub fn add_label(&self, row_id: i64, label: u32, iteration: i64, predicted: Option<u32>) -> Result<i64> {
        Ok(self.add_label_replacing(row_id, label, iteration, predicted)?.0)
    }

    /// `add_label`, also returning the label it replaced, if any.
    pub fn add_label_replacing(&self, row_id: i64, label: u32, iteration: i64, predicted: Option<u32>) -> Result<(i64, Replaced)> {
        self.add_label_tx(row_id, label, iteration, predicted, false)
            .with_context(|| format!("the label of row {row_id} was not saved to {}", self.location()))
    }

    /// `add_label` on a row the caller saw without a label: where another
    /// annotator's label came since (two workstations on one free row at
    /// the same moment), it is refused (`Refused::Taken`), decided in the
    /// write transaction, rather than replacing a label its annotator
    /// believes stands. (A row sent to two keeps each annotator's label.)
    pub fn add_label_unlabelled(&self, row_id: i64, label: u32, iteration: i64, predicted: Option<u32>) -> Result<i64> {
        Ok(self
            .add_label_tx(row_id, label, iteration, predicted, true)
            .with_context(|| format!("the label of row {row_id} was not saved to {}", self.location()))?
            .0)
    }

    fn add_label_tx(&self, row_id: i64, label: u32, iteration: i64, predicted: Option<u32>, unlabelled: bool) -> Result<(i64, Replaced)> {
        self.check_held()?;
        let tx = self.write_tx()?;
        // What the checks need, in one round trip.
        let r = tx
            .row(
                "SELECT (SELECT split FROM rows WHERE id=?1), (SELECT count(*) FROM label_set), (SELECT count(*) FROM overlap WHERE row_id=?1)",
                p![row_id],
            )?
            .ok_or_else(|| anyhow!("no answer from the database"))?;
        let (split, nlabels, overlap): (Option<String>, i64, i64) = (r.get(0)?, r.get(1)?, r.get(2)?);
        match split.as_deref() {
            None => bail!("no row {row_id} in session '{}'", self.name),
            Some("test") => bail!("row {row_id} is in the held-out test set and cannot be labelled"),
            _ => {}
        }
        if label as i64 >= nlabels {
            bail!("label {label} is not in the label set of session '{}'", self.name);
        }
        // Decided here, in the write transaction: another process may have
        // adjudicated the row or taken it into its batch since a look.
        if let Some(r) = tx.row("SELECT annotator FROM annotations WHERE row_id=?1 AND active=1 AND source='adjudicated'", p![row_id])? {
            let who: Option<String> = r.get(0)?;
            return Err(Refused::Adjudicated { row: row_id, by: who.unwrap_or_default() }.into());
        }
        if let Some(r) =
            tx.row("SELECT annotator, pid, host, until FROM reservations WHERE row_id=?1 AND annotator<>?2", p![row_id, &self.annotator])?
        {
            let (who, pid, host, until): (String, i64, String, String) = (r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?);
            if super::team::held(pid, &host, &until, &super::team::host_name(), &now()) {
                return Err(Refused::Held { row: row_id, by: who }.into());
            }
        }
        // An overlap row keeps each annotator's label; any other row has one.
        let prev: Option<i64> = if overlap > 0 {
            let mine: Option<i64> = tx.opt(
                "SELECT id FROM annotations WHERE row_id=?1 AND active=1 AND source<>'adjudicated' AND annotator=?2",
                p![row_id, &self.annotator],
            )?;
            // Two annotators' labels (or an adjudication) close it to a third.
            if mine.is_none() {
                if let Some(who) = super::overlap::full(&super::overlap::given_labels(&tx, row_id)?) {
                    return Err(Refused::Closed { row: row_id, by: who }.into());
                }
            }
            mine
        } else {
            tx.opt("SELECT id FROM annotations WHERE row_id=?1 AND active=1", p![row_id])?
        };
        let mut replaced = None;
        if let Some(prev) = prev {
            let r = tx
                .row("SELECT label, annotator FROM annotations WHERE id=?1", p![prev])?
                .ok_or_else(|| anyhow!("no answer from the database"))?;
            let (old, who): (i64, Option<String>) = (r.get(0)?, r.get(1)?);
            // (A label with no annotator is from before annotators were
            // recorded: the one person's, as `undo_last` takes it.)
            if let (true, Some(by)) = (unlabelled, who.as_deref().filter(|w| *w != self.annotator)) {
                return Err(Refused::Taken { row: row_id, by: by.to_string() }.into());
            }
            replaced = Some((old as u32, who));
            tx.exec("UPDATE annotations SET active=0 WHERE id=?1", p![prev])?;
        }
        let id: i64 = tx.one(
            "INSERT INTO annotations(row_id, label, source, iteration, at, predicted, replaces, annotator) VALUES (?1, ?2, 'person', ?3, ?4, ?5, ?6, ?7) RETURNING id",
            p![row_id, label as i64, iteration, now(), predicted.map(|p| p as i64), prev, &self.annotator],
        )?;
        // A labelled row need not be held: a row sent to two goes on to the next annotator now.
        tx.exec("DELETE FROM reservations WHERE row_id=?1 AND annotator=?2", p![row_id, &self.annotator])?;
        tx.commit()?;
        Ok((id, replaced))
    }

    /// Undoes this annotator's most recent decision that is not undone yet
    /// (another annotator's labels are theirs to undo; a label the
    /// adjudicator ruled on since stays: it is part of the disagreement
    /// they settled, and of the agreement figures).
    /// Returns the row it was about, or None when there is nothing to undo.
    pub fn undo_last(&self) -> Result<Option<i64>> {
        // A process that lost its hold may not undo what the one holding
        // the annotator now decided.
        self.check_held()?;
        let tx = self.write_tx()?;
        let last = tx.row(
            "SELECT id, row_id, replaces FROM annotations a WHERE source IN ('person','adjudicated') AND undone=0 AND active=1 AND (annotator = ?1 OR annotator IS NULL)
               AND NOT EXISTS (SELECT 1 FROM annotations b WHERE b.row_id = a.row_id AND b.active=1 AND b.source='adjudicated' AND b.id > a.id)
             ORDER BY id DESC LIMIT 1",
            p![&self.annotator],
        )?;
        let Some(last) = last else { return Ok(None) };
        let (id, row_id, replaces): (i64, i64, Option<i64>) = (last.get(0)?, last.get(1)?, last.get(2)?);
        tx.exec("UPDATE annotations SET active=0, undone=1 WHERE id=?1", p![id])?;
        if let Some(prev) = replaces {
            tx.exec("UPDATE annotations SET active=1 WHERE id=?1", p![prev])?;
        }
        tx.commit()?;
        Ok(Some(row_id))
    }

    /// Number of this annotator's decisions (labels and adjudications, not
    /// undone) made from a given iteration on.
    pub fn decisions_since(&self, iteration: i64) -> Result<i64> {
        self.db.one(
            "SELECT count(*) FROM annotations WHERE source IN ('person','adjudicated') AND active=1 AND iteration >= ?1 AND (annotator = ?2 OR annotator IS NULL)",
            p![iteration, &self.annotator],
        )
    }

    /// The fine-tuned encoder the session uses, when one was swapped in:
    /// its folder in the session (which may have gone missing) and how many
    /// labels it learnt from (None from sessions that did not record it).
    pub fn tuned_encoder(&self) -> Result<Option<(PathBuf, Option<usize>)>> {
        let Some(name) = self.meta(TUNED_ENCODER)? else { return Ok(None) };
        let labels = self.meta(TUNED_ENCODER_LABELS)?.and_then(|v| v.parse().ok());
        let dir = self.dir.join(&name);
        if self.pg.is_some() && !dir.exists() {
            // Fine-tuned on another machine: brought from the store, whole or not at all.
            let part = self.dir.join(format!(".{name}.part-{}", std::process::id()));
            let r = (|| -> Result<()> {
                for f in self.ctx(pg::files_under(&self.db, &format!("{name}/")))? {
                    let rel = &f[name.len() + 1..];
                    self.ctx(pg::get_file(&self.db, &f, &part.join(rel)))?;
                }
                std::fs::rename(&part, &dir).with_context(|| format!("cannot put {} in place", dir.display()))
            })();
            if let Err(e) = r {
                let _ = std::fs::remove_dir_all(&part);
                tracing::warn!("cannot bring the fine-tuned encoder {name} from the store: {e:#}");
            }
        }
        Ok(Some((dir, labels)))
    }

    /// Makes `dir` (a folder of this session) the encoder in use, learnt
    /// from the labels of the rows `rows`. Returns the folder it replaces,
    /// if another.
    pub fn use_tuned_encoder(&self, dir: &Path, rows: &[i64]) -> Result<Option<PathBuf>> {
        let name =
            dir.file_name().map(|n| n.to_string_lossy().to_string()).ok_or_else(|| anyhow!("{} is not a folder name", dir.display()))?;
        let old = self.meta(TUNED_ENCODER)?;
        // In the store, its files go first, so that other machines find them.
        let mut files = Vec::new();
        if self.pg.is_some() {
            for e in std::fs::read_dir(dir).with_context(|| format!("cannot read {}", dir.display()))? {
                let path = e?.path();
                if path.is_file() {
                    files.push((format!("{name}/{}", path.file_name().unwrap_or_default().to_string_lossy()), std::fs::read(&path)?));
                }
            }
        }
        // All three or none: another process reads them together.
        let tx = self.trainer_tx()?;
        for (f, data) in files {
            pg::store_file(&tx, &f, data)?;
        }
        if let Some(o) = old.as_ref().filter(|o| **o != name && self.pg.is_some()) {
            tx.exec("DELETE FROM files WHERE starts_with(name, ?1)", p![format!("{o}/")])?;
        }
        for (k, v) in [
            (TUNED_ENCODER, name.clone()),
            (TUNED_ENCODER_LABELS, rows.len().to_string()),
            (TUNED_ENCODER_ROWS, serde_json::to_string(rows)?),
        ] {
            tx.exec("INSERT INTO meta(key, value) VALUES (?1, ?2) ON CONFLICT(key) DO UPDATE SET value = excluded.value", p![k, v])?;
        }
        tx.commit()?;
        Ok(old.filter(|o| *o != name).map(|o| self.dir.join(o)))
    }

    /// The rows whose labels the fine-tuned encoder in use learnt from (None:
    /// the base encoder, or a session from before they were recorded).
    pub fn tuned_encoder_rows(&self) -> Result<Option<std::collections::HashSet<i64>>> {
        if self.meta(TUNED_ENCODER)?.is_none() {
            return Ok(None);
        }
        let Some(v) = self.meta(TUNED_ENCODER_ROWS)? else { return Ok(None) };
        let rows: Vec<i64> = self.ctx(serde_json::from_str(&v))?;
        Ok(Some(rows.into_iter().collect()))
    }

    /// Each labelled row's honest probabilities (`learn::Honesty`), as the
    /// last iteration left them.
    pub fn honest_probs(&self) -> Result<HashMap<i64, Vec<f32>>> {
        let v: Vec<(i64, Vec<u8>)> = self.ctx((|| -> Result<_> {
            self.db
                .query("SELECT row_id, probs FROM honest", p![])?
                .iter()
                .map(|r| anyhow::Ok((r.get(0)?, r.get(1)?)))
                .collect::<Result<Vec<_>>>()
        })())?;
        Ok(v.into_iter().map(|(id, b)| (id, b.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect())).collect())
    }

    /// A write transaction for what only the trainer writes (iterations,
    /// predictions, honest probabilities, the encoder in use): in
    /// PostgreSQL, refused while another live process holds the session's
    /// trainer lock, decided in the transaction (a process that lost the
    /// lock when the server restarted must not write its model over the new
    /// trainer's).
    fn trainer_tx(&self) -> Result<db::Tx<'_>> {
        let tx = self.write_tx()?;
        let other = match &self.pg {
            Some(_) => {
                let r =
                    tx.row("SELECT pid, host FROM holders WHERE key = 'trainer' AND backend IN (SELECT pid FROM pg_stat_activity)", p![])?;
                let holder = r.map(|r| -> Result<(i64, String)> { Ok((r.get(0)?, r.get(1)?)) }).transpose()?;
                holder
                    .filter(|(pid, host)| !(*pid == std::process::id() as i64 && *host == super::team::host_name()))
                    .map(|(pid, host)| format!("pid {pid} on {}", data::display_safe(&host)))
            }
            // A lock file is never lost: only its holder trains.
            None => None,
        };
        if let Some(who) = other {
            bail!("another process ({who}) trains session '{}' now: this model was not stored", self.name);
        }
        Ok(tx)
    }

    /// Stores rows' honest probabilities (replacing what they had).
    pub fn set_honest_probs(&self, probs: &[(i64, &[f32])]) -> Result<()> {
        let r = (|| -> Result<()> {
            let tx = self.trainer_tx()?;
            for (id, probs) in probs {
                let b: Vec<u8> = probs.iter().flat_map(|x| x.to_le_bytes()).collect();
                tx.exec(
                    "INSERT INTO honest(row_id, probs) VALUES (?1, ?2) ON CONFLICT(row_id) DO UPDATE SET probs = excluded.probs",
                    p![*id, b],
                )?;
            }
            tx.commit()?;
            Ok(())
        })();
        self.ctx(r)
    }

    /// Every iteration in order, its metrics read as `M`. Metrics that do
    /// not read (a damaged database) are an error of that iteration alone,
    /// naming it, for the caller to decide on: the others still read.
    pub fn iterations<M: serde::de::DeserializeOwned>(&self) -> Result<Vec<Iteration<M>>> {
        let v: Vec<(i64, i64, String)> = self.ctx((|| -> Result<_> {
            self.db
                .query("SELECT id, n_labels, metrics FROM iterations ORDER BY id", p![])?
                .iter()
                .map(|r| anyhow::Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
                .collect::<Result<Vec<_>>>()
        })())?;
        let db = self.location();
        Ok(v.into_iter()
            .map(|(id, n_labels, m)| Iteration {
                id,
                n_labels,
                metrics: serde_json::from_str(&m)
                    .map_err(|e| format!("session '{}' ({}): the metrics of iteration {id} are damaged ({e})", self.name, db)),
            })
            .collect())
    }

    /// Replaces the stored metrics of iteration `id`.
    pub fn set_iteration_metrics<M: serde::Serialize>(&self, id: i64, metrics: &M) -> Result<()> {
        let n = self.ctx(self.db.exec("UPDATE iterations SET metrics = ?1 WHERE id = ?2", p![serde_json::to_string(metrics)?, id]))?;
        if n != 1 {
            bail!("no iteration {id} in session '{}'", self.name);
        }
        Ok(())
    }

    /// The id of the last iteration (0 before the first).
    pub fn last_iteration(&self) -> Result<i64> {
        self.ctx(self.db.one("SELECT COALESCE(MAX(id), 0) FROM iterations", p![]))
    }

    /// Records an iteration and replaces the stored predictions with its
    /// own, in one transaction. `metrics` gets the new iteration's id.
    pub fn record_iteration<E>(
        &self,
        n_labels: i64,
        metrics: impl FnOnce(i64) -> Result<serde_json::Value, E>,
        preds: &[Prediction],
    ) -> Result<i64>
    where
        E: std::error::Error + Send + Sync + 'static,
    {
        let tx = self.trainer_tx()?;
        let id: i64 = tx.one("INSERT INTO iterations(n_labels, at, metrics) VALUES (?1, ?2, '{}') RETURNING id", p![n_labels, now()])?;
        let m = metrics(id)?;
        tx.exec("UPDATE iterations SET metrics = ?1 WHERE id = ?2", p![serde_json::to_string(&m)?, id])?;
        insert_predictions(&tx, id, preds)?;
        tx.commit()?;
        Ok(id)
    }

    /// Replaces the stored predictions of the current iteration (a new ranking, no new model).
    pub fn replace_predictions(&self, iteration: i64, preds: &[Prediction]) -> Result<()> {
        let tx = self.trainer_tx()?;
        insert_predictions(&tx, iteration, preds)?;
        tx.commit()?;
        Ok(())
    }

    pub fn predictions(&self) -> Result<HashMap<i64, Prediction>> {
        let k = self.n_labels()?;
        type Raw = (i64, i64, f64, f64, f64, Option<i64>);
        let v: Vec<Raw> = self.ctx((|| -> Result<_> {
            self.db
                .query("SELECT row_id, label, prob, entropy, margin, rank FROM predictions", p![])?
                .iter()
                .map(|r| anyhow::Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?)))
                .collect::<Result<Vec<_>>>()
        })())?;
        v.into_iter()
            .map(|(row_id, label, prob, entropy, margin, rank)| {
                let label = self.check_label("the stored prediction", row_id, label, k)?;
                Ok((row_id, Prediction { row_id, label, prob: prob as f32, entropy: entropy as f32, margin: margin as f32, rank }))
            })
            .collect()
    }

    /// `PRAGMA integrity_check` and foreign-key check (SQLite; PostgreSQL
    /// enforces both), and one label in use per row and annotator; Ok when
    /// consistent.
    pub fn check_integrity(&self) -> Result<()> {
        if !self.db.is_pg() {
            let r: String = self.db.one("PRAGMA integrity_check", p![])?;
            if r != "ok" {
                bail!("integrity check failed: {r}");
            }
            let bad: i64 = self.db.one("SELECT count(*) FROM pragma_foreign_key_check", p![])?;
            if bad > 0 {
                bail!("{bad} foreign key violations");
            }
        }
        // One label in use per row; on an overlap row one per annotator, and one adjudication.
        let dup: i64 = self.db.one(
            "SELECT count(*) FROM (SELECT row_id FROM annotations a WHERE active=1 GROUP BY row_id,
               CASE WHEN NOT EXISTS (SELECT 1 FROM overlap o WHERE o.row_id = a.row_id) THEN ''
                    WHEN source = 'adjudicated' THEN 'adjudicated' ELSE source || ':' || coalesce(annotator, '') END
               HAVING count(*) > 1) AS d",
            p![],
        )?;
        if dup > 0 {
            bail!("{dup} rows have more than one active label");
        }
        Ok(())
    }

    /// The database file (of a SQLite session).
    pub fn db_path(&self) -> PathBuf {
        self.dir.join(DB_FILE)
    }
}

/// Replaces every stored prediction with `preds` (inside a transaction).
fn insert_predictions(tx: &Db, iteration: i64, preds: &[Prediction]) -> Result<()> {
    tx.exec("DELETE FROM predictions", p![])?;
    if tx.is_pg() {
        // One statement per thousand rows: a round trip each is slow over a network.
        for chunk in preds.chunks(1000) {
            let mut sql = String::from("INSERT INTO predictions(row_id, label, prob, entropy, margin, rank, iteration) VALUES ");
            let mut params = Vec::with_capacity(chunk.len() * 7);
            for (i, x) in chunk.iter().enumerate() {
                let b = i * 7;
                sql.push_str(&format!(
                    "{}(?{}, ?{}, ?{}, ?{}, ?{}, ?{}, ?{})",
                    if i > 0 { ", " } else { "" },
                    b + 1,
                    b + 2,
                    b + 3,
                    b + 4,
                    b + 5,
                    b + 6,
                    b + 7
                ));
                params.extend_from_slice(p![x.row_id, x.label as i64, x.prob as f64, x.entropy as f64, x.margin as f64, x.rank, iteration]);
            }
            tx.exec(&sql, &params)?;
        }
        return Ok(());
    }
    for x in preds {
        tx.exec(
            "INSERT INTO predictions(row_id, label, prob, entropy, margin, rank, iteration) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            p![x.row_id, x.label as i64, x.prob as f64, x.entropy as f64, x.margin as f64, x.rank, iteration],
        )?;
    }
    Ok(())
}

/// Why `add_label` wrote nothing on a row that is not this annotator's to
/// label, decided in its write transaction (`annotate` answers it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refused {
    /// The adjudicator settled the row.
    Adjudicated { row: i64, by: String },
    /// A row sent to two that two others labelled.
    Closed { row: i64, by: super::overlap::ClosedBy },
    /// In another annotator's batch.
    Held { row: i64, by: String },
    /// Labelled by another annotator since the caller saw it unlabelled.
    Taken { row: i64, by: String },
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refused::Adjudicated { row, by } => write!(f, "row {row} was adjudicated by {by}: it keeps the adjudicator's label"),
            Refused::Closed { row, by } => write!(f, "row {row} was labelled by {by} (it is sent to two annotators): not yours to label"),
            Refused::Held { row, by } => write!(f, "row {row} is in {by}'s batch: left to them"),
            Refused::Taken { row, by } => write!(f, "row {row} was just labelled by {by}: left to them"),
        }
    }
}

impl std::error::Error for Refused {}
