//! The workstation's state and what each action does to it. Drawing reads
//! this state and never changes it; the event loop (`tui.rs`) turns keys into
//! `Action`s and forwards the jobs in `outbox` to the worker.

use anyhow::Result;
use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::data::display_safe;
use crate::learn::{Scores, Strategy};
use crate::store::{RowSource, Session, Source, Split};
use crate::worker::{Event, IterationRecord, Job, Update};

use super::layout::{self, Geometry};

/// After the row under the cursor changed by itself (a refresh landed), keys
/// that label it are refused for this long: the person must have seen the
/// row's text before a key can put a label on it.
pub const SETTLE: Duration = Duration::from_millis(1200);

/// What a key the settle guard refused says (at most 79 columns: the
/// status line of an 80-column terminal).
const REFUSED: &str = "the row under the cursor just came or changed: read it, then press again";

/// Keys closer together than this are one burst of typing: one refused
/// by the settle guard takes the rest of its burst with it.
pub const BURST: Duration = Duration::from_millis(400);

/// The most characters of one paste typed into a text field.
pub const PASTE_MAX: usize = 1000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum View {
    /// Unlabelled rows, ranked by the strategy.
    Queue,
    /// Rows with a person's (or seed) label, newest first.
    Labelled,
    /// Every row with the person's label or the model's prediction.
    All,
}

impl View {
    pub fn next(self) -> View {
        match self {
            View::Queue => View::Labelled,
            View::Labelled => View::All,
            View::All => View::Queue,
        }
    }
    fn index(self) -> usize {
        match self {
            View::Queue => 0,
            View::Labelled => 1,
            View::All => 2,
        }
    }
    pub fn title(self) -> &'static str {
        match self {
            View::Queue => "Queue",
            View::Labelled => "Labelled",
            View::All => "All rows",
        }
    }
}

pub use super::picker::{Picked, Picker, PickerPurpose};

#[derive(Debug, Clone, PartialEq)]
pub enum Overlay {
    None,
    /// The keys, scrolled by `scroll` lines where they do not all fit.
    /// (`Help` opens it at the top.)
    Help {
        scroll: usize,
    },
    /// The label picker (see `picker`).
    Picker(Picker),
    /// Editing a label's description (from the picker, with Tab); Enter
    /// or Esc goes back to the picker it came from (`back`), as it was.
    Describe {
        label: u32,
        text: String,
        back: Option<Box<Picker>>,
    },
    /// A row's whole text, scrolled by `scroll` lines.
    Reader {
        row: usize,
        scroll: usize,
    },
    /// Typing a search over the texts (all-rows view).
    Search {
        query: String,
    },
}

pub use super::action::Action;
use super::keys::{KeyMap, Mode as KeyMode};

/// The worker's state as the status line shows it.
#[derive(Debug, Clone, PartialEq)]
pub enum WorkerState {
    Starting,
    Busy { stage: String, done: usize, total: usize },
    Idle,
}

/// The order of the all-rows view (`s` cycles it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AllSort {
    /// The rows as imported.
    Pool,
    /// The model's least sure labels first (your labels last).
    LeastSure,
    /// The surest first (your labels first).
    Surest,
}

impl AllSort {
    pub fn next(self) -> AllSort {
        match self {
            AllSort::Pool => AllSort::LeastSure,
            AllSort::LeastSure => AllSort::Surest,
            AllSort::Surest => AllSort::Pool,
        }
    }
    /// How the view's title says it ("" for the pool order).
    pub fn title(self) -> &'static str {
        match self {
            AllSort::Pool => "",
            AllSort::LeastSure => " least sure first",
            AllSort::Surest => " surest first",
        }
    }
}

/// The side panel's agreement lines (`App::panel_team`).
#[derive(Debug, Clone, Default)]
pub struct PanelTeam {
    pub agreement: Vec<crate::learn::agreement::PairAgreement>,
    pub disputes: usize,
    pub waiting: usize,
}

/// A skip `u` can take back: the row, and the batch, its order and the
/// skipped rows as they were before it.
struct Skip {
    row: u32,
    held: Vec<u32>,
    order: Vec<u32>,
    skipped: Vec<u32>,
}

pub struct App {
    pub name: String,
    pub session: Session,
    /// Display-safe text of each pool row.
    pub texts: Vec<String>,
    pub row_ids: Vec<i64>,
    pub label_names: Vec<String>,
    pub label_descriptions: Vec<Option<String>>,
    /// The current label of each pool row.
    pub labels: Vec<Option<(u32, Source)>>,
    pub n_labelled: usize,
    /// Labels per class (person and seed), kept with `labels`.
    pub class_counts: Vec<usize>,
    /// The latest model view (scores and ranking).
    pub update: Option<Arc<Update>>,
    /// Predictions stored by the last session, shown until the worker is ready.
    pub stored: Vec<Option<(u32, f32, f32)>>,
    pub ranking: Vec<u32>,
    pub queue: Vec<u32>,
    pub labelled_list: Vec<u32>,
    pub all_list: Vec<u32>,
    pub view: View,
    pub cursor: [usize; 3],
    pub offset: [usize; 3],
    /// Rows of the table area, set by the event loop from the terminal size.
    pub page: usize,
    /// What the terminal shows (page, suggestion lines), set by the event loop.
    pub geometry: Geometry,
    /// When the row under the cursor last changed by itself (a refresh, not
    /// a key): decisions on it wait until `SETTLE` has passed.
    pub changed_at: Option<Instant>,
    /// When the open overlay (which covers the table) was opened.
    overlay_opened: Option<Instant>,
    /// When the event loop last put a frame on the terminal.
    drawn_at: Option<Instant>,
    /// Keys were left out (`ignored_keys`): said in the status line over
    /// the worker's messages and errors, for `SETTLE` at least, until a key
    /// that has something to say of its own (`handle`).
    pub ignored: Option<String>,
    /// The last thing done was a skip (`u` takes it back).
    last_skip: Option<Skip>,
    /// Rows an undo put back at the head of a batch that began after their
    /// labels (`back_into_batch`), first first: a new ranking that answers
    /// the finished batch keeps them at its head, and a batch made only of
    /// them grows rather than let one go.
    reheaded: Vec<u32>,
    /// When the settle guard last refused a key: keys that follow it closer
    /// than `BURST` are the same typing (`/hum`), refused with it.
    pub refused_at: Option<Instant>,
    /// How many keys `ignored` counts, and when it was said.
    ignored_n: usize,
    ignored_at: Option<Instant>,
    /// The person finished a batch and has not moved since: the refresh that
    /// answers it puts the cursor at the top of the new batch.
    pub jump_to_batch: bool,
    /// A new strategy was asked for: its ranking starts at its top.
    reranking: bool,
    /// Per pool row, when its current label was given (a sequence number,
    /// 0 for none): the labelled view lists the newest first.
    label_seq: Vec<u64>,
    seq: u64,
    pub skipped: Vec<u32>,
    pub batch_size: usize,
    /// Rows this batch holds beyond `batch_size`: rows undos brought back
    /// from the batch before, first in a batch that was full
    /// (`head_batch`); 0 again when the batch ends (`batch_total`).
    grown: usize,
    /// Decisions made since the last retrain request.
    pub batch_done: usize,
    pub iteration: i64,
    pub history: Vec<IterationRecord>,
    pub worker: WorkerState,
    pub error: Option<String>,
    /// `error` came from a key (it clears at the next one).
    key_error: bool,
    /// The row last opened in the reader (`v`): where the window is too
    /// small for the row pane, the one row a decision may be made on.
    read_row: Option<usize>,
    pub message: Option<String>,
    pub overlay: Overlay,
    pub strategy: Strategy,
    pub has_test: bool,
    pub all_filter: Option<u32>,
    /// All-rows view: only rows whose text holds every word of this search.
    pub all_search: Option<String>,
    /// The all-rows view's order.
    pub all_sort: AllSort,
    /// The labelled view lists only the labels the model disputes (review).
    pub review: bool,
    /// (row id, label) pairs the person kept after review (in the session).
    pub kept_reviews: HashSet<(i64, u32)>,
    pub quit: bool,
    /// Jobs for the worker, taken by the event loop.
    pub outbox: Vec<Job>,
    /// Where `e` writes the export.
    pub export_path: std::path::PathBuf,
    pub mode: crate::model::finetune::Mode,
    /// The keys in force (hints and help are drawn from them).
    pub keys: KeyMap,
    /// The encoder fine-tune: whether one runs, and its last word.
    pub finetune_running: bool,
    /// While a big pile is embedded: where each pool row is in the last
    /// update's scores (`u32::MAX`: not embedded yet).
    scored_at: Option<Vec<u32>>,
    pub finetune_status: Option<String>,
    /// The device the model runs on and the encoder in use, as the worker says.
    pub device: String,
    pub encoder: String,
    /// Pool rows other annotators hold in their current batches: not in
    /// this queue.
    pub others_reserved: HashSet<u32>,
    /// The pool rows this annotator holds for the current batch (reserved
    /// in the session, so nobody else is shown them), first in the queue.
    pub reserved: Vec<u32>,
    /// The rows of the batch in hand in their order, the ones labelled since
    /// too: where an undone row goes back, and what a restart holds again.
    batch_order: Vec<u32>,
    /// Pool rows two other annotators disagree on: not in this queue.
    pub closed: HashSet<u32>,
    /// Rows two annotators disagree on, not adjudicated yet.
    pub disputes: Vec<crate::store::Dispute>,
    /// Overlap rows with one annotator's label, waiting for a second.
    pub waiting: usize,
    /// Those that wait for this annotator: first in the queue after the batch.
    pub waiting_rows: Vec<u32>,
    /// Disputes this annotator is part of (another adjudicator settles them).
    pub own_disputes: usize,
    /// Agreement per pair of annotators on the overlap rows.
    pub agreement: Vec<crate::learn::agreement::PairAgreement>,
    /// What the side panel shows of the team: as of the last model for an
    /// annotator (live figures would tell them, label by label, whether
    /// they agreed with the other, whose label they must not see), live
    /// for the adjudicator.
    pub panel_team: PanelTeam,
    /// This person may adjudicate (`--adjudicator`).
    pub adjudicator: bool,
    /// The labelled view lists the disputes (the adjudicator settles them).
    pub adjudicating: bool,
}

impl App {
    /// Loads a session's rows, labels, stored predictions and history.
    pub fn load(session: Session) -> Result<App> {
        let rows = session.rows()?;
        let label_set = session.label_set()?;
        let settings = session.settings()?;
        let mut texts = Vec::new();
        let mut row_ids = Vec::new();
        let mut has_test = false;
        for r in &rows {
            match r.split {
                Split::Pool => {
                    texts.push(display_safe(&r.text));
                    row_ids.push(r.id);
                }
                Split::Test => has_test = true,
            }
        }
        let id_to_pool: std::collections::HashMap<i64, usize> = row_ids.iter().enumerate().map(|(i, &id)| (id, i)).collect();
        let preds = session.predictions()?;
        let mut stored = vec![None; row_ids.len()];
        let mut ranked: Vec<(i64, u32)> = Vec::new();
        for (id, p) in &preds {
            if let Some(&i) = id_to_pool.get(id) {
                stored[i] = Some((p.label, p.prob, p.entropy));
                if let Some(r) = p.rank {
                    ranked.push((r, i as u32));
                }
            }
        }
        ranked.sort();
        let history: Vec<IterationRecord> = session
            .iterations::<IterationRecord>()?
            .into_iter()
            .map(|it| {
                let mut r = it.metrics.unwrap_or_else(|e| {
                    tracing::warn!("{e}; shown as empty");
                    IterationRecord::default()
                });
                r.iteration = it.id;
                r
            })
            .collect();
        let iteration = history.last().map(|h| h.iteration).unwrap_or(0);
        // Next to the session (never into whatever folder labelrest was started from).
        let export_path = session.dir.join(format!("{}-labels.csv", session.name));
        let kept = session.kept_reviews()?;
        let mut app = App {
            name: session.name.clone(),
            texts,
            row_ids,
            // Names and descriptions come from files: drawn inert.
            label_names: label_set.iter().map(|l| display_safe(&l.name)).collect(),
            label_descriptions: label_set.iter().map(|l| l.description.as_deref().map(display_safe)).collect(),
            labels: Vec::new(),
            n_labelled: 0,
            class_counts: Vec::new(),
            update: None,
            stored,
            ranking: ranked.into_iter().map(|(_, i)| i).collect(),
            queue: Vec::new(),
            labelled_list: Vec::new(),
            all_list: Vec::new(),
            view: View::Queue,
            cursor: [0; 3],
            offset: [0; 3],
            page: 10,
            geometry: Geometry::default(),
            changed_at: None,
            overlay_opened: None,
            drawn_at: None,
            ignored: None,
            ignored_n: 0,
            ignored_at: None,
            last_skip: None,
            reheaded: Vec::new(),
            refused_at: None,
            jump_to_batch: false,
            skipped: Vec::new(),
            batch_size: settings.batch.max(1),
            grown: 0,
            batch_done: 0,
            iteration,
            history,
            worker: WorkerState::Starting,
            error: None,
            key_error: false,
            read_row: None,
            message: None,
            overlay: Overlay::None,
            strategy: settings.strategy,
            has_test,
            all_filter: None,
            all_search: None,
            all_sort: AllSort::Pool,
            review: false,
            kept_reviews: kept,
            label_seq: Vec::new(),
            seq: 0,
            reranking: false,
            quit: false,
            outbox: Vec::new(),
            export_path,
            mode: settings.mode,
            keys: KeyMap::default(),
            finetune_running: false,
            scored_at: None,
            finetune_status: None,
            device: String::new(),
            encoder: String::new(),
            others_reserved: HashSet::new(),
            reserved: Vec::new(),
            batch_order: Vec::new(),
            closed: HashSet::new(),
            disputes: Vec::new(),
            waiting: 0,
            waiting_rows: Vec::new(),
            own_disputes: 0,
            agreement: Vec::new(),
            panel_team: PanelTeam::default(),
            adjudicator: false,
            adjudicating: false,
            session,
        };
        app.reload_labels()?;
        app.refresh_panel_team();
        // Decisions already made on the current model count towards the batch.
        app.batch_done = match app.session.decisions_since(app.iteration.max(1)) {
            Ok(n) => n as usize % app.batch_size,
            Err(e) => {
                tracing::warn!("cannot count the decisions of this batch ({e:#}); the batch counter starts at 0");
                app.message = Some("could not count this batch's decisions: the counter starts at 0 (see the log)".into());
                0
            }
        };
        // A big pile reopened part-way: rows with no stored prediction are not
        // embedded yet; they wait for the ranking that has them.
        let predicted = app.stored.iter().filter(|p| p.is_some()).count();
        if predicted > 0 && predicted < app.row_ids.len() {
            app.scored_at = Some(app.stored.iter().map(|p| if p.is_some() { 0 } else { u32::MAX }).collect());
        }
        if app.ranking.is_empty() {
            app.ranking = (0..app.row_ids.len() as u32).collect();
            // No model yet: the first ranking puts the cursor at its top
            // (unless the person moved first).
            app.jump_to_batch = true;
        }
        // Rows other annotators hold now are not this annotator's to see.
        match app.session.reserved_by_others() {
            Ok(others) => app.apply_team(&others, false),
            Err(e) => tracing::warn!("cannot read the reservations: {e:#}"),
        }
        // Rows skipped in an earlier sitting stay at the end of the queue.
        app.skipped = app.kept_skipped();
        let left = app.restore_batch();
        app.reserve_batch(true);
        if !left.is_empty() {
            // The batch's order as it was, its rows labelled already too.
            let mut order: Vec<u32> = left.into_iter().filter(|&r| app.labels[r as usize].is_some() || app.reserved.contains(&r)).collect();
            for &r in &app.reserved {
                if !order.contains(&r) {
                    order.push(r);
                }
            }
            app.batch_order = order;
            app.keep_batch();
        }
        // Opening is not a change under the person's eyes.
        app.changed_at = None;
        // Back on the row the person left the queue on, when it is in the
        // batch they are working on; else at the batch's top (a row left
        // elsewhere, or before a batch that came since: after a crash, or
        // labels given with `annotate`, it may sit deep in a new ranking).
        // (Sessions from before annotators worked side by side kept one.)
        let kept = app.session.meta(&app.cursor_key()).ok().flatten().or_else(|| app.session.meta("cursor_row").ok().flatten());
        if let Some(id) = kept.and_then(|v| v.parse::<i64>().ok()) {
            let in_batch = |i: &u32| app.reserved.contains(i);
            if let Some(p) = app.queue.iter().position(|i| app.row_ids[*i as usize] == id && in_batch(i)) {
                app.cursor[0] = p;
                app.jump_to_batch = false;
            }
        }
        Ok(app)
    }

    /// Each pool row's index by its id.
    fn row_index(&self) -> std::collections::HashMap<i64, u32> {
        self.row_ids.iter().enumerate().map(|(i, &id)| (id, i as u32)).collect()
    }

    /// Where the rows of the batch in hand are kept: one per annotator.
    fn batch_key(&self) -> String {
        format!("batch_rows:{}", self.session.annotator())
    }

    /// Remembers the rows of the batch in hand (at every change of it: a
    /// crash or a dropped connection keeps it too).
    fn keep_batch(&self) {
        self.keep_rows(&self.batch_key(), &self.batch_order, "the batch");
    }

    /// Writes rows, by id, to meta entry `key` (`what` names them in the log).
    fn keep_rows(&self, key: &str, rows: &[u32], what: &str) {
        let ids: Vec<String> = rows.iter().map(|&r| self.row_ids[r as usize].to_string()).collect();
        if let Err(e) = self.session.set_meta(key, &ids.join(",")) {
            tracing::warn!("cannot remember {what}: {e:#}");
        }
    }

    /// The rows `keep_rows` wrote to `key` that are still in the pool, in order.
    fn kept_rows(&self, key: &str) -> Vec<u32> {
        let Some(v) = self.session.meta(key).ok().flatten() else { return Vec::new() };
        let idx = self.row_index();
        v.split(',').filter_map(|s| s.parse::<i64>().ok()).filter_map(|id| idx.get(&id).copied()).collect()
    }

    /// The batch the person was working on when the workstation last ended
    /// (quit, hang-up or crash), what is left of it: its rows still
    /// unlabelled that no other annotator holds now, in their order. A new
    /// ranking stored since (a fine-tune swapped in, a retrain elsewhere)
    /// does not change it, as it does not while the workstation runs.
    /// Returns the batch's rows in their order (those labelled too), or
    /// nothing where no row of it is left.
    fn restore_batch(&mut self) -> Vec<u32> {
        let order = self.kept_rows(&self.batch_key());
        let rows: Vec<u32> = order
            .iter()
            .copied()
            .filter(|&i| {
                self.labels[i as usize].is_none()
                    && !self.others_reserved.contains(&i)
                    && !self.closed.contains(&i)
                    && !self.skipped.contains(&i)
            })
            .collect();
        if rows.is_empty() {
            return Vec::new();
        }
        // (A batch that grew to hold rows undos brought back keeps them all.)
        self.grown = rows.len().saturating_sub(self.batch_size);
        self.batch_done = self.batch_total() - rows.len();
        self.reserved = rows;
        self.rebuild_lists();
        order
    }

    /// Where the rows this annotator skipped are kept, in the order skipped.
    fn skipped_key(&self) -> String {
        format!("skipped_rows:{}", self.session.annotator())
    }

    /// Remembers the skipped rows (at every change: they stay at the end
    /// of the queue after a quit or a crash too).
    fn keep_skipped(&self) {
        self.keep_rows(&self.skipped_key(), &self.skipped, "the skipped rows");
    }

    /// The rows skipped in an earlier sitting that are still unlabelled.
    fn kept_skipped(&self) -> Vec<u32> {
        self.kept_rows(&self.skipped_key()).into_iter().filter(|&i| self.labels[i as usize].is_none()).collect()
    }

    /// Where the row under the cursor is kept: one per annotator.
    fn cursor_key(&self) -> String {
        format!("cursor_row:{}", self.session.annotator())
    }

    /// Remembers the queue row under the cursor for the next start (on
    /// every exit: quit, hang-up, signals).
    pub fn remember_position(&self) {
        if let Some(id) = self.position() {
            if let Err(e) = self.session.set_meta(&self.cursor_key(), &id.to_string()) {
                tracing::warn!("cannot remember the cursor: {e:#}");
            }
        }
    }

    /// Where `remember_position` keeps the queue row under the cursor, and
    /// its id, for a writer off the UI thread.
    pub fn position_entry(&self) -> Option<(String, String)> {
        self.position().map(|id| (self.cursor_key(), id.to_string()))
    }

    /// The queue row under the cursor (by id): what `remember_position` keeps.
    pub fn position(&self) -> Option<i64> {
        self.queue.get(self.cursor[0]).map(|&i| self.row_ids[i as usize])
    }

    pub fn scores(&self) -> Option<&Scores> {
        self.update.as_ref().map(|u| &u.scores)
    }

    /// What the person is told when a row has no prediction to accept.
    fn no_prediction(&self, i: usize) -> String {
        let picker = self.key(&Action::OpenPicker);
        if self.not_embedded(i) {
            format!("not embedded yet (the rest of the pile embeds behind the ranking): pick a label with {picker}")
        } else {
            format!("no prediction yet: pick a label with {picker}")
        }
    }

    /// While a big pile is still being embedded behind the ranking.
    pub fn embedding_behind(&self) -> bool {
        self.scored_at.is_some()
    }

    /// Whether pool row `i` waits to be embedded (a big pile, part-way).
    pub fn not_embedded(&self, i: usize) -> bool {
        self.scored_at.as_ref().is_some_and(|at| at.get(i) == Some(&u32::MAX))
    }

    /// Where pool row `i` is in the scores, and the scores (None: the last
    /// update does not cover it: a big pile's row not embedded yet).
    fn scored(&self, i: usize) -> Option<(&Scores, usize)> {
        let s = self.scores()?;
        let j = match &self.scored_at {
            Some(at) => *at.get(i)? as usize,
            None => i,
        };
        (j < s.len()).then_some((s, j))
    }

    /// The model's (label, probability, entropy) for a pool row.
    pub fn prediction(&self, i: usize) -> Option<(u32, f32, f32)> {
        match self.scored(i) {
            Some((s, j)) => Some((s.pred[j], s.prob[j], s.entropy[j])),
            None => self.stored.get(i).copied().flatten(),
        }
    }

    /// The model's probability of label `l` for pool row `i`, when known.
    pub fn prob_of(&self, i: usize, l: u32) -> Option<f32> {
        match self.scored(i) {
            Some((s, j)) => s.probs.get(j * s.k + l as usize).copied(),
            None => self.prediction(i).filter(|p| p.0 == l).map(|p| p.1),
        }
    }

    /// A row's whole text for reading: as stored, line breaks kept, made
    /// safe for the terminal.
    pub fn full_text(&self, i: usize) -> String {
        match self.session.text_of(self.row_ids[i]) {
            Ok(t) => t.split('\n').map(display_safe).collect::<Vec<_>>().join("\n"),
            Err(_) => self.texts[i].clone(),
        }
    }

    /// The top suggestions for a row (up to 9), best first.
    pub fn suggestions(&self, i: usize) -> Vec<(u32, f32)> {
        match self.scored(i) {
            Some((s, j)) => s.top(j, 9),
            None => self.prediction(i).map(|(l, p, _)| vec![(l, p)]).unwrap_or_default(),
        }
    }

    /// The suggestions of a row as the detail pane lays them out.
    pub fn suggestion_layout(&self, i: usize) -> Vec<Vec<layout::Shown>> {
        let items: Vec<(String, f32)> = self.suggestions(i).into_iter().map(|(l, p)| (self.label_names[l as usize].clone(), p)).collect();
        layout::suggestions(&items, self.geometry.suggestion_width, self.geometry.suggestion_lines)
    }

    /// How many suggestions of a row are on screen (the digits that work).
    pub fn shown_suggestions(&self, i: usize) -> usize {
        layout::count(&self.suggestion_layout(i))
    }

    /// What the person sees of the row under the cursor: the row, and the
    /// labels of its suggestions on screen (the first is its prediction).
    fn in_view(&self) -> Option<(usize, Vec<u32>)> {
        let i = self.selected()?;
        let n = self.shown_suggestions(i).max(1);
        Some((i, self.suggestions(i).into_iter().take(n).map(|s| s.0).collect()))
    }

    /// Whether a key that was meant for `seen` (`in_view` before) would now
    /// give another label: the same row, a suggestion at the same place
    /// that differs. (Suggestions that come where there were none change
    /// nothing a key did: those keys did nothing.)
    fn suggestions_changed(&self, seen: Option<(usize, Vec<u32>)>) -> bool {
        match (seen, self.in_view()) {
            (Some((r0, s0)), Some((r1, s1))) => r0 == r1 && s0.iter().zip(&s1).any(|(a, b)| a != b),
            _ => false,
        }
    }

    /// The event loop drew a frame at `at`. A change under the cursor made
    /// after the frame before it was not on screen until now: its moment to
    /// be read starts now, however long the work before this frame took (a
    /// screen that stalls must not spend the moment while it shows nothing).
    pub fn shown(&mut self, at: Instant) {
        if let Some(changed) = self.changed_at {
            if self.drawn_at.is_none_or(|d| changed > d) && changed < at {
                self.changed_at = Some(at);
            }
        }
        self.drawn_at = Some(at);
    }

    /// The event loop drew the first frame: the row it shows under the
    /// cursor was never read (a key typed ahead of the screen would label
    /// it), so decision keys wait their moment, as for a row that came by
    /// itself.
    pub fn first_shown(&mut self, at: Instant) {
        if self.selected().is_some() {
            self.changed_at = Some(at);
        }
        self.drawn_at = Some(at);
    }

    /// The event loop left out `n` keys pressed while the screen did not
    /// answer: before its first frame (`busy` None), or during `busy` of
    /// work. They were pressed at a screen that is no longer there.
    pub fn ignored_keys(&mut self, n: usize, busy: Option<Duration>) {
        // Keys left out by an earlier look that no key has cleared yet: counted in.
        let n = n + std::mem::take(&mut self.ignored_n);
        self.ignored_n = n;
        self.ignored_at = Some(Instant::now());
        let keys = if n == 1 { "1 key".to_string() } else { format!("{n} keys") };
        self.ignored = Some(match busy {
            None => format!("{keys} pressed before the screen showed: not applied, press again"),
            Some(d) => format!("screen stalled {:.1} s: {keys} pressed meanwhile not applied, press again", d.as_secs_f32()),
        });
    }

    /// Text pasted into the terminal (bracketed paste, which the
    /// workstation asks the terminal for): typed into the search, the
    /// picker's filter or a description, its line breaks and tabs as
    /// spaces. Anywhere else it is not applied: each of its characters
    /// would be a key, and an `a`, a digit or a line break in it would
    /// label rows the person never read.
    pub fn paste(&mut self, text: &str) {
        if self.key_mode().takes_text() {
            for c in text.chars().take(PASTE_MAX) {
                self.handle(Action::Input(if c.is_control() { ' ' } else { c }));
            }
            return;
        }
        self.handle(Action::None);
        let n = text.chars().count();
        self.message = Some(format!("pasted text not applied: keys act one at a time ({n} character{})", if n == 1 { "" } else { "s" }));
        self.clear_ignored();
    }

    fn clear_ignored(&mut self) {
        self.ignored = None;
        self.ignored_n = 0;
    }

    /// True while the row under the cursor has just changed by itself.
    pub fn settling(&self) -> bool {
        self.changed_at.map(|t| t.elapsed() < SETTLE).unwrap_or(false)
    }

    /// Which key table is in force: the open overlay's, else the views'.
    pub fn key_mode(&self) -> KeyMode {
        match self.overlay {
            Overlay::None => KeyMode::Views,
            Overlay::Help { .. } => KeyMode::Help,
            Overlay::Picker { .. } => KeyMode::Picker,
            Overlay::Describe { .. } => KeyMode::Describe,
            Overlay::Reader { .. } => KeyMode::Reader,
            Overlay::Search { .. } => KeyMode::Search,
        }
    }

    /// The first key of an action in the views (for messages and hints).
    pub fn key(&self, a: &Action) -> String {
        self.keys.key(KeyMode::Views, a)
    }

    pub fn list(&self, v: View) -> &[u32] {
        match v {
            View::Queue => &self.queue,
            View::Labelled => &self.labelled_list,
            View::All => &self.all_list,
        }
    }

    pub fn current_list(&self) -> &[u32] {
        self.list(self.view)
    }

    pub fn cursor(&self) -> usize {
        self.cursor[self.view.index()]
    }

    pub fn offset(&self) -> usize {
        self.offset[self.view.index()]
    }

    /// The selected pool row.
    pub fn selected(&self) -> Option<usize> {
        self.current_list().get(self.cursor()).map(|&i| i as usize)
    }

    /// Rows of the queue that make the current batch.
    pub fn batch_remaining(&self) -> usize {
        self.batch_total().saturating_sub(self.batch_done)
    }

    /// Decisions that make this batch: the batch size, and the rows it grew by.
    pub fn batch_total(&self) -> usize {
        self.batch_size + self.grown
    }

    fn rebuild_lists(&mut self) {
        let selected: Vec<Option<u32>> =
            [View::Queue, View::Labelled, View::All].iter().map(|&v| self.list(v).get(self.cursor[v.index()]).copied()).collect();
        let skipped: HashSet<u32> = self.skipped.iter().copied().collect();
        let mut seen = vec![false; self.row_ids.len()];
        let mut queue: Vec<u32> = Vec::with_capacity(self.ranking.len());
        // This annotator's batch first; rows other annotators hold, nowhere.
        self.reserved.retain(|&i| self.labels[i as usize].is_none());
        for &i in &self.reserved {
            if !seen[i as usize] && !skipped.contains(&i) {
                seen[i as usize] = true;
                queue.push(i);
            }
        }
        for &i in self.others_reserved.iter().chain(&self.closed) {
            if let Some(s) = seen.get_mut(i as usize) {
                *s = true;
            }
        }
        // Rows sent to two annotators that wait for this one's label come
        // next: agreement builds up as the others label.
        for &i in &self.waiting_rows {
            let iu = i as usize;
            if iu < seen.len() && !seen[iu] && self.labels[iu].is_none() && !skipped.contains(&i) {
                seen[iu] = true;
                queue.push(i);
            }
        }
        for &i in &self.ranking {
            let iu = i as usize;
            if iu < seen.len() && !seen[iu] {
                seen[iu] = true;
                if self.labels[iu].is_none() && !skipped.contains(&i) {
                    queue.push(i);
                }
            }
        }
        // Rows the ranking did not cover (labelled at the time, then undone);
        // not those of a big pile that are not embedded yet (they come with the ranking that has them).
        for (i, s) in seen.iter().enumerate() {
            let pending = self.scored_at.as_ref().is_some_and(|at| at[i] == u32::MAX);
            if !s && !pending && self.labels[i].is_none() && !skipped.contains(&(i as u32)) {
                queue.push(i as u32);
            }
        }
        queue.extend(
            self.skipped
                .iter()
                .copied()
                .filter(|&i| self.labels[i as usize].is_none() && !self.others_reserved.contains(&i) && !self.closed.contains(&i)),
        );
        self.queue = queue;
        self.class_counts = vec![0; self.label_names.len()];
        for (l, _) in self.labels.iter().flatten() {
            self.class_counts[*l as usize] += 1;
        }
        self.labelled_list = self.labelled_order();
        let words: Vec<String> =
            self.all_search.as_deref().map(|q| q.split_whitespace().map(|w| w.to_lowercase()).collect()).unwrap_or_default();
        let mut all: Vec<u32> = (0..self.row_ids.len() as u32)
            .filter(|&i| match self.all_filter {
                None => true,
                Some(f) => self.shown_label(i as usize).map(|(l, _)| l) == Some(f),
            })
            .filter(|&i| {
                if words.is_empty() {
                    return true;
                }
                let t = self.texts[i as usize].to_lowercase();
                words.iter().all(|w| t.contains(w.as_str()))
            })
            .collect();
        if self.all_sort != AllSort::Pool {
            let conf = |i: u32| -> f32 {
                match self.labels[i as usize] {
                    Some(_) => 2.0,
                    None => self.prediction(i as usize).map(|p| p.1).unwrap_or(0.0),
                }
            };
            all.sort_by(|&a, &b| {
                let o = conf(a).partial_cmp(&conf(b)).unwrap_or(std::cmp::Ordering::Equal);
                if self.all_sort == AllSort::LeastSure {
                    o.then(a.cmp(&b))
                } else {
                    o.reverse().then(a.cmp(&b))
                }
            });
        }
        self.all_list = all;
        // Keep each view's cursor on the row it was on where that row is still listed.
        for (k, &v) in [View::Queue, View::Labelled, View::All].iter().enumerate() {
            let list = self.list(v);
            let len = list.len();
            let idx = v.index();
            if let Some(row) = selected[k] {
                if v != View::Queue || self.labels[row as usize].is_none() {
                    if let Some(p) = list.iter().position(|&r| r == row) {
                        self.cursor[idx] = p;
                    }
                }
            }
            if self.cursor[idx] >= len {
                self.cursor[idx] = len.saturating_sub(1);
            }
        }
        self.scroll_into_view();
    }

    /// Reserves the next batch for this annotator: the first rows of the
    /// queue that nobody else holds (the session decides, atomically). A
    /// store that cannot reserve leaves the queue as it is, with a message.
    fn reserve_batch(&mut self, to_top: bool) {
        // Another batch: a skip before it is not taken back into it.
        self.last_skip = None;
        let before = self.selected();
        // What is left of this batch (all of it at a batch's start), never
        // fewer rows than it holds (a batch grown by undos, reopened).
        self.hold_from_queue(self.batch_remaining().max(self.reserved.len()).max(1), "could not reserve this batch for you (see the log)");
        self.batch_order = self.reserved.clone();
        self.keep_batch();
        // A new batch starts at its top (on opening; a refresh moves the
        // cursor only where the person has not moved, `apply_update`).
        if to_top && self.view == View::Queue {
            self.cursor[0] = 0;
            self.scroll_into_view();
        }
        self.note_if_moved(before);
    }

    /// The row under the cursor changed by itself: keys that would label
    /// it wait a moment (`SETTLE`).
    fn note_if_moved(&mut self, before: Option<usize>) {
        // (Also where the list was empty: a row that appears there came by itself.)
        if self.selected().is_some() && self.selected() != before {
            self.changed_at = Some(Instant::now());
        }
    }

    /// Others' work, as the worker saw it: the rows they hold leave this
    /// queue; their labels come in.
    pub fn apply_team(&mut self, others: &HashSet<i64>, labels_changed: bool) {
        // The strategy and the mode are the session's: another annotator may have changed them.
        match self.session.settings() {
            Ok(st) => {
                self.strategy = st.strategy;
                self.mode = st.mode;
            }
            Err(e) => tracing::warn!("cannot read the settings: {e:#}"),
        }
        let idx = self.row_index();
        self.others_reserved = others.iter().filter_map(|id| idx.get(id).copied()).collect();
        if labels_changed {
            if let Err(e) = self.reload_labels() {
                tracing::warn!("cannot read the labels again: {e:#}");
            }
        }
        // A row of this batch that someone else took (a race, or their
        // all-rows view) leaves the batch.
        self.reserved.retain(|i| !self.others_reserved.contains(i));
        let before = self.selected();
        self.rebuild_lists();
        self.note_if_moved(before);
    }

    /// Reads every row's label from the session (on opening; again when
    /// other annotators' labels came in).
    fn reload_labels(&mut self) -> Result<()> {
        let id_to_pool: std::collections::HashMap<i64, usize> = self.row_ids.iter().enumerate().map(|(i, &id)| (id, i)).collect();
        let mut labels = vec![None; self.row_ids.len()];
        let mut label_seq = vec![0u64; self.row_ids.len()];
        let (mut n, mut seq) = (0, 0u64);
        // What this annotator sees: their own label on a row sent to two.
        let resolved = self.session.resolved()?;
        let (seen, closed) = resolved.seen_by(self.session.annotator());
        for l in seen {
            if let Some(&i) = id_to_pool.get(&l.row_id) {
                labels[i] = Some((l.label, l.source));
                n += 1;
                seq += 1;
                label_seq[i] = seq;
            }
        }
        self.closed = closed.iter().filter_map(|id| id_to_pool.get(id).map(|&i| i as u32)).collect();
        self.agreement = crate::learn::agreement::agreement(&resolved.overlap_labels, self.label_names.len());
        self.waiting = resolved.waiting.len();
        let me = self.session.annotator().to_string();
        self.waiting_rows = resolved.waiting_for(&me).iter().filter_map(|id| id_to_pool.get(id).map(|&i| i as u32)).collect();
        let mine: Vec<i64> =
            resolved.disputes.iter().filter(|d| d.labels.iter().any(|l| l.annotator.as_deref() == Some(&me))).map(|d| d.row_id).collect();
        self.own_disputes = mine.len();
        self.disputes = resolved.disputes;
        if self.adjudicator {
            self.refresh_panel_team();
        }
        self.labels = labels;
        self.label_seq = label_seq;
        self.seq = seq;
        self.n_labelled = n;
        Ok(())
    }

    /// The panel's team figures from the labels as last read.
    pub fn refresh_panel_team(&mut self) {
        self.panel_team = PanelTeam { agreement: self.agreement.clone(), disputes: self.disputes.len(), waiting: self.waiting };
    }

    /// The disputes as pool rows, in the order they arose.
    pub fn dispute_list(&self) -> Vec<u32> {
        let index = self.row_index();
        let me = self.session.annotator();
        let mut v: Vec<(i64, u32)> = self
            .disputes
            .iter()
            .filter(|d| !d.labels.iter().any(|l| l.annotator.as_deref() == Some(me)))
            .filter_map(|d| Some((d.labels.last()?.seq, *index.get(&d.row_id)?)))
            .collect();
        v.sort_unstable();
        v.into_iter().map(|x| x.1).collect()
    }

    /// Each annotator's label on pool row `i` when annotators disagree on it.
    pub fn disputed_labels(&self, i: usize) -> Option<&[crate::store::Label]> {
        let id = self.row_ids[i];
        self.disputes.iter().find(|d| d.row_id == id).map(|d| d.labels.as_slice())
    }

    /// How a dispute reads: `alice: A · bob: B`.
    pub fn dispute_text(&self, i: usize) -> Option<String> {
        let ls = self.disputed_labels(i)?;
        Some(
            ls.iter()
                .map(|l| format!("{}: {}", display_safe(l.annotator.as_deref().unwrap_or("?")), self.label_names[l.label as usize]))
                .collect::<Vec<_>>()
                .join(" · "),
        )
    }

    fn labelled_order(&self) -> Vec<u32> {
        if self.adjudicating {
            return self.dispute_list();
        }
        if self.review {
            return self.review_list();
        }
        let mut v: Vec<u32> = (0..self.row_ids.len() as u32).filter(|&i| self.labels[i as usize].is_some()).collect();
        // Newest first.
        v.sort_by_key(|&i| std::cmp::Reverse((self.label_seq[i as usize], i)));
        v
    }

    /// The review's list: the labels of the last iteration's review still
    /// standing (the row still has the label reviewed, and it was not
    /// kept), least likely first under a model trained without them.
    pub fn review_list(&self) -> Vec<u32> {
        let Some(h) = self.history.last() else { return Vec::new() };
        if h.suspects.is_empty() {
            return Vec::new();
        }
        let index = self.row_index();
        h.suspects
            .iter()
            .filter(|&&(id, given, ..)| !self.kept_reviews.contains(&(id, given)))
            .filter_map(|&(id, given, ..)| index.get(&id).copied().filter(|&i| self.labels[i as usize].map(|l| l.0) == Some(given)))
            .collect()
    }

    /// What the last iteration's review says of row `i`: the label a model
    /// trained without it puts first and its probability, when that is not
    /// the label the row has.
    pub fn dispute(&self, i: usize) -> Option<(u32, f32)> {
        let id = self.row_ids[i];
        self.history.last()?.suspects.iter().find(|s| s.0 == id && s.2 != s.1).map(|s| (s.2, s.3))
    }

    /// The probability a model trained without row `i` gives the row's
    /// label (what the review ranks by), when the last review has the row.
    pub fn review_prob(&self, i: usize) -> Option<f32> {
        let id = self.row_ids[i];
        self.history.last()?.suspects.iter().find(|s| s.0 == id).map(|s| s.4)
    }

    /// The label the all-rows view shows: the person's, else the model's.
    pub fn shown_label(&self, i: usize) -> Option<(u32, RowSource)> {
        match self.labels[i] {
            Some((l, s)) => Some((l, RowSource::from(s))),
            None => self.prediction(i).map(|p| (p.0, RowSource::Model)),
        }
    }

    pub fn scroll_into_view(&mut self) {
        let idx = self.view.index();
        let page = self.page.max(1);
        let c = self.cursor[idx];
        if c < self.offset[idx] {
            self.offset[idx] = c;
        } else if c >= self.offset[idx] + page {
            self.offset[idx] = c + 1 - page;
        }
        let len = self.current_list().len();
        if self.offset[idx] + page > len {
            self.offset[idx] = len.saturating_sub(page);
        }
    }

    pub fn set_page(&mut self, rows: usize) {
        // A window grown (a resize) shows the list from its top again when
        // the cursor fits there: the queue's first rows come back in sight.
        if rows > self.page {
            for v in 0..3 {
                if self.cursor[v] < rows {
                    self.offset[v] = 0;
                }
            }
        }
        self.page = rows.max(1);
        self.geometry.page = self.page;
        self.scroll_into_view();
    }

    /// Takes what the terminal shows now (from `render::geometry`).
    pub fn set_geometry(&mut self, g: Geometry) {
        self.geometry = g;
        self.set_page(g.page);
    }

    fn move_cursor(&mut self, delta: isize) {
        let len = self.current_list().len();
        if len == 0 {
            return;
        }
        let idx = self.view.index();
        let c = self.cursor[idx] as isize + delta;
        self.cursor[idx] = c.clamp(0, len as isize - 1) as usize;
        self.jump_to_batch = false;
        self.scroll_into_view();
    }

    /// Takes a worker event.
    pub fn on_event(&mut self, ev: Event) {
        match ev {
            Event::Progress { stage, done, total } => self.worker = WorkerState::Busy { stage, done, total },
            Event::Idle => self.worker = WorkerState::Idle,
            Event::Error(e) => {
                self.error = Some(e);
                self.worker = WorkerState::Idle;
            }
            Event::Update(u) => self.apply_update(u),
            Event::Notice(m) => self.message = Some(m),
            Event::Model { device, encoder } => {
                self.device = device;
                self.encoder = encoder;
            }
            Event::Team { others_reserved, labels_changed } => self.apply_team(&others_reserved, labels_changed),
            Event::FineTune { running, text } => {
                self.finetune_running = running;
                if !running {
                    // The outcome (swapped in, kept, cancelled, failed) shows in the status line.
                    self.message = Some(text.clone());
                }
                self.finetune_status = Some(text);
            }
        }
    }

    pub fn apply_update(&mut self, u: Arc<Update>) {
        let before = self.selected();
        let seen = self.in_view();
        // No model had ranked the rows before this one.
        let first = self.update.is_none() && self.stored.iter().all(|s| s.is_none());
        // Iterations another process made since the last one shown: the panel reads them all.
        if u.iteration > self.history.last().map(|h| h.iteration).unwrap_or(0) + 1 {
            match self.session.iterations::<IterationRecord>() {
                Ok(its) => {
                    self.history = its
                        .into_iter()
                        .filter(|it| it.id < u.iteration)
                        .map(|it| {
                            let mut r = it.metrics.unwrap_or_default();
                            r.iteration = it.id;
                            r
                        })
                        .collect()
                }
                Err(e) => tracing::warn!("cannot read the iterations: {e:#}"),
            }
        }
        // A new iteration joins the panel; a resumed one is there already.
        match self.history.iter_mut().find(|h| h.iteration == u.iteration) {
            None if u.iteration > 0 => self.history.push(u.record.clone()),
            // The same iteration over more rows (a big pile embedding): its estimate of the rest is new.
            Some(h) if u.iteration > 0 && !u.trained => h.estimate = u.record.estimate.clone(),
            _ => {}
        }
        let newer = u.iteration != self.iteration;
        if newer {
            // A new model: the panel's team figures as of now.
            self.refresh_panel_team();
        }
        if !u.trained && self.message.as_deref() == Some("retraining") {
            self.message = Some("nothing new to learn from: the model is up to date".into());
        }
        self.iteration = u.iteration;
        // A big pile still being embedded: the update covers the rows embedded so far.
        match &u.pool_index {
            Some(at) => {
                let mut scored_at = vec![u32::MAX; self.row_ids.len()];
                for (j, &i) in at.iter().enumerate() {
                    if let Some(x) = scored_at.get_mut(i as usize) {
                        *x = j as u32;
                    }
                }
                self.ranking = u.ranking.iter().map(|&j| at[j as usize]).collect();
                self.scored_at = Some(scored_at);
            }
            None => {
                self.ranking = u.ranking.clone();
                self.scored_at = None;
            }
        }
        self.update = Some(u);
        self.error = None;
        // Skipped rows stay at the end of the queue until the person comes
        // back to them (they leave `skipped` when decided).
        // The cursor stays on the row it was on, wherever the new ranking puts it.
        self.rebuild_lists();
        // Only the refresh that answers a finished batch moves it: to the top
        // of the new batch, and only if the person has not moved since.
        // The first ranking always starts at its top: nothing the person
        // moved to before it was ranked by anything.
        let reranked = std::mem::take(&mut self.reranking);
        // A new ranking that answers this annotator's finished batch (or the
        // first one): the next batch is its top. One that another
        // annotator's batch brought leaves this annotator's batch as it is.
        if (newer || reranked || first) && self.batch_done == 0 && (self.jump_to_batch || first || reranked || self.reserved.is_empty()) {
            // Rows an undo put back at the head of this batch stay there.
            let heads: Vec<u32> =
                self.reheaded.iter().copied().filter(|&x| self.labels[x as usize].is_none() && !self.skipped.contains(&x)).collect();
            self.reserved.clear();
            self.rebuild_lists();
            self.reserve_batch(false);
            if !heads.is_empty() {
                self.head_batch(&heads);
                self.rebuild_lists();
            }
        }
        if (newer || reranked) && (self.jump_to_batch || first) && self.view == View::Queue {
            self.jump_to_batch = false;
            self.cursor[0] = 0;
            self.scroll_into_view();
        }
        if self.selected().is_some() && self.selected() != before {
            // The row under the cursor changed by itself (or came into an
            // empty list): no key may label it until the person had a
            // moment to see it.
            self.changed_at = Some(Instant::now());
            self.message = Some(if first {
                "the model's first ranking: the rows it is least sure of come first".into()
            } else {
                "new ranking: the row under the cursor changed".into()
            });
        } else if self.suggestions_changed(seen) {
            // The same row, but what Enter and the digits would give changed
            // (a new model): a key pressed for the old suggestions waits too.
            self.changed_at = Some(Instant::now());
            self.message = Some("new model: the suggestions for the row under the cursor changed".into());
        }
        if reranked {
            self.message = Some(format!("ranked by {}: its first batch is at the top", self.strategy.name()));
        }
    }

    /// Records a decision on the selected row: on disk first, then on screen.
    fn decide(&mut self, label: u32) -> Result<()> {
        let Some(i) = self.selected() else { return Ok(()) };
        self.decide_row(i, label)
    }

    /// Records a decision on pool row `i`; an error says the label was not
    /// saved (a read before the write can fail first: a store that does not answer).
    fn decide_row(&mut self, i: usize, label: u32) -> Result<()> {
        let unlabelled = self.labels[i].is_none();
        self.decide_row_seen(i, label, unlabelled)
    }

    /// `decide_row`, where the person decided on row `i` when it had no
    /// label (`unlabelled`: the picker was opened on it then), whatever
    /// came in since.
    fn decide_row_seen(&mut self, i: usize, label: u32, unlabelled: bool) -> Result<()> {
        let id = self.row_ids[i];
        // A window too small for the row pane shows a few words of the text
        // in the table: no label on a text the person could not read.
        if self.geometry.suggestion_width == 0 && self.read_row != Some(i) {
            self.message = Some(format!(
                "{} reads row {id} first: its text is not in sight here (the window is too small for the row pane)",
                self.key(&Action::Read)
            ));
            return Ok(());
        }
        self.decide_row_inner(i, label, unlabelled).map_err(|e| {
            if format!("{e:#}").contains("not saved") {
                e
            } else {
                e.context(format!("the label of row {id} was not saved"))
            }
        })
    }

    /// Row `i` turned out to be another annotator's (held or labelled by
    /// them since the last look): it leaves this annotator's batch and
    /// queue, their label comes in, and `m` says so.
    fn left_to_others(&mut self, i: usize, m: String) -> Result<()> {
        self.others_reserved.insert(i as u32);
        self.reload_labels()?;
        self.reserved.retain(|&r| r as usize != i);
        let before = self.selected();
        self.rebuild_lists();
        self.note_if_moved(before);
        self.message = Some(m);
        Ok(())
    }

    fn decide_row_inner(&mut self, i: usize, label: u32, unlabelled: bool) -> Result<()> {
        if self.adjudicating && self.view == View::Labelled {
            return self.adjudicate_row(i, label);
        }
        let id = self.row_ids[i];
        // The adjudicator's label is the row's: not changed from the views.
        if let Some((who, l)) = self.session.adjudicated_by(id)? {
            self.message = Some(format!("row {id} was adjudicated by {}: it keeps {}", display_safe(&who), self.label_names[l as usize]));
            return Ok(());
        }
        // A row sent to two that two others labelled is theirs.
        if let Some(who) = self.session.overlap_closed(id)? {
            self.message =
                Some(format!("row {id} was labelled by {} (sent to two annotators): not yours to label", display_safe(&who.to_string())));
            return Ok(());
        }
        let predicted = self.prediction(i).map(|p| p.0);
        // Another annotator took this row since the last look (or since the
        // picker opened on it): theirs.
        if unlabelled {
            let id = self.row_ids[i];
            let other = match self.session.held_by_other(id)? {
                Some(who) => Some(format!("row {id} is in {who}'s batch now: left to them")),
                None => self.session.closed_by_others(id)?.map(|who| format!("row {id} was just labelled by {}", display_safe(&who))),
            };
            if let Some(m) = other {
                return self.left_to_others(i, m);
            }
            // The same, decided in the label's write transaction: another
            // workstation may label this free row at the same moment (the
            // first label stands; this one is refused, and said so).
            match self.session.add_label_unlabelled(id, label, self.iteration, predicted) {
                Ok(_) => {}
                Err(e) => match e.downcast_ref::<crate::store::Refused>() {
                    Some(r) => return self.left_to_others(i, display_safe(&r.to_string())),
                    None => return Err(e),
                },
            }
        } else {
            self.session.add_label(self.row_ids[i], label, self.iteration, predicted)?;
        }
        // A decision since the skip: `u` undoes it, not the skip.
        self.last_skip = None;
        let before = self.labels[i];
        self.labels[i] = Some((label, Source::Person));
        self.seq += 1;
        self.label_seq[i] = self.seq;
        if before.is_none() {
            self.n_labelled += 1;
        }
        if self.skipped.contains(&(i as u32)) {
            self.skipped.retain(|&r| r as usize != i);
            self.keep_skipped();
        }
        self.message = match before {
            Some((old, _)) if old != label => Some(format!(
                "relabelled row {}: {} -> {}",
                self.row_ids[i], self.label_names[old as usize], self.label_names[label as usize]
            )),
            Some(_) => Some(format!("row {} keeps {}", self.row_ids[i], self.label_names[label as usize])),
            None => None,
        };
        self.batch_done += 1;
        // Deciding is not moving: a decision made while the retrain is on its
        // way keeps the jump to the new batch (else the cursor would follow
        // its row deep into the new ranking, away from the rows it asks for).
        let batch_end = self.batch_done >= self.batch_total();
        if batch_end {
            self.batch_done = 0;
            self.grown = 0;
            self.jump_to_batch = true;
            self.reheaded.clear();
            self.outbox.push(Job::Retrain { strategy: self.strategy });
        }
        let held = self.reserved.contains(&(i as u32));
        let at = self.labelled_list.iter().position(|&r| r as usize == i);
        self.rebuild_lists();
        if batch_end || self.reserved.is_empty() {
            // The next batch is held at once: the person goes on while the model retrains.
            self.reserve_batch(false);
        } else if !held && self.reserved.len() > self.batch_remaining() {
            // A row outside the batch counted towards it: the batch holds
            // what is left of it, its last row goes back to the others.
            let keep: Vec<i64> = self.reserved.iter().map(|&r| self.row_ids[r as usize]).collect();
            match self.session.reserve(&keep, self.batch_remaining()) {
                Ok(ids) => {
                    let ids: HashSet<i64> = ids.into_iter().collect();
                    self.reserved.retain(|&r| ids.contains(&self.row_ids[r as usize]));
                }
                Err(e) => tracing::warn!("{e:#}"),
            }
            self.rebuild_lists();
            // The row labelled counts in the batch; the row let go leaves it.
            self.batch_order.push(i as u32);
            let (labels, reserved) = (&self.labels, &self.reserved);
            self.batch_order.retain(|&r| labels[r as usize].is_some() || reserved.contains(&r));
            self.keep_batch();
        }
        // The batch is done: the next one (held from this ranking until the
        // retrained one lands) starts at its top, a row the person has not
        // read: decision keys wait a moment (a key pressed with the last
        // one's rhythm would label it).
        if batch_end && self.view == View::Queue {
            self.cursor[0] = 0;
            self.scroll_into_view();
            if self.selected().is_some() {
                self.changed_at = Some(Instant::now());
                if self.message.is_none() {
                    self.message = Some("batch done: retraining; the next batch is at the top".into());
                }
            }
        }
        // The batch's last row decided while rows of it wait above: the
        // cursor goes back to the first of them, not on to the rows below
        // the batch.
        if held && !batch_end && self.view == View::Queue && !self.reserved.is_empty() && self.cursor[0] >= self.reserved.len() {
            self.cursor[0] = 0;
            self.scroll_into_view();
        }
        // The labelled view lists the newest first: a label given in the
        // queue puts its cursor on the top row; a relabel there moves the
        // row to the top, and the cursor on to the row that followed it.
        if !self.review {
            let len = self.labelled_list.len();
            self.cursor[1] = match (self.view, at) {
                (View::Labelled, Some(p)) => (p + 1).min(len.saturating_sub(1)),
                _ => 0,
            };
            if self.view == View::Labelled {
                self.scroll_into_view();
            }
        }
        Ok(())
    }

    /// Settles the dispute on pool row `i` with `label` (the adjudicator):
    /// on disk first; the row then teaches the model like any label.
    fn adjudicate_row(&mut self, i: usize, label: u32) -> Result<()> {
        let id = self.row_ids[i];
        let Some(said) = self.dispute_text(i) else {
            self.message = Some(format!("row {id} has no disagreement to adjudicate"));
            return Ok(());
        };
        use crate::store::Adjudication;
        let outcome = self.session.adjudicate(id, label, self.iteration, self.prediction(i).map(|p| p.0))?;
        // The row the person expects next: the one after this on screen
        // (else the one before). Others' changes read in with this one may
        // have moved the list under the cursor.
        let (old, pos) = (self.current_list().to_vec(), self.cursor());
        let expected = old.get(pos + 1).or_else(|| pos.checked_sub(1).and_then(|p| old.get(p))).copied();
        self.reload_labels()?;
        self.rebuild_lists();
        // On the row that followed, else the next one still listed (rows it
        // passes over stay listed above), else the one before.
        let now: HashSet<u32> = self.current_list().iter().copied().collect();
        let land =
            old.iter().skip(pos + 1).find(|r| now.contains(r)).or_else(|| old[..pos.min(old.len())].iter().rev().find(|r| now.contains(r)));
        if let Some(p) = land.and_then(|e| self.current_list().iter().position(|r| r == e)) {
            self.cursor[self.view.index()] = p;
        }
        self.scroll_into_view();
        self.message = Some(match &outcome {
            Adjudication::Done => format!("row {id}: {} (adjudicated; {said})", self.label_names[label as usize]),
            Adjudication::Settled(who) => format!("row {id} was adjudicated by {} a moment ago: it keeps theirs", display_safe(who)),
            Adjudication::NotDisputed => format!("row {id} is no longer disputed: nothing to adjudicate"),
            Adjudication::Yours => format!("row {id}: you gave one of its labels; another adjudicator settles it"),
        });
        // Any row under the cursor now but the one expected next after a
        // settle (a dispute that came back, one further down that others'
        // changes moved up, the next one after a refusal) takes no key
        // until the person had a moment to read it.
        let as_expected = outcome == Adjudication::Done && self.selected().map(|s| s as u32) == expected;
        if self.selected().is_some() && !as_expected {
            self.changed_at = Some(Instant::now());
            if outcome == Adjudication::Done {
                self.message = Some(format!(
                    "{}; the disputes changed meanwhile: read the row under the cursor first",
                    self.message.take().unwrap_or_default()
                ));
            }
        }
        if outcome != Adjudication::Done {
            return Ok(());
        }
        self.last_skip = None;
        // An adjudication is a decision: it counts towards the batch that retrains.
        self.batch_done += 1;
        if self.batch_done >= self.batch_total() {
            self.batch_done = 0;
            self.grown = 0;
            self.outbox.push(Job::Retrain { strategy: self.strategy });
        }
        Ok(())
    }

    fn undo(&mut self) -> Result<()> {
        // A skip was the last thing done: `u` takes it back (not the label before it).
        if let Some(skip) = self.last_skip.take() {
            return self.unskip(skip);
        }
        match self.session.undo_last()? {
            None => self.message = Some("nothing to undo".into()),
            Some(row_id) => {
                let Some(i) = self.row_ids.iter().position(|&r| r == row_id) else { return Ok(()) };
                // Read back what the row's label is now (an earlier one, or
                // none); the label that came back keeps the place it had.
                self.reload_labels()?;
                // An adjudication taken back: the row is a dispute again, and
                // the model must unlearn it before anyone is shown its guess.
                if self.disputes.iter().any(|d| d.row_id == row_id) {
                    self.outbox.push(Job::Retrain { strategy: self.strategy });
                }
                self.batch_done = self.batch_done.saturating_sub(1);
                self.back_into_batch(i);
                // A relabel undone (the row keeps a label) gave back a
                // decision but no row: the batch holds one more from the
                // queue again (the one it let go of, where still free), so
                // that what it holds and what was decided make a batch, also
                // as a reopening counts them.
                if self.labels[i].is_some() && self.reserved.len() < self.batch_remaining() {
                    self.rebuild_lists();
                    self.refill_batch();
                }
                self.rebuild_lists();
                // Put the cursor on the row that came back; a view that no
                // longer lists it (the labelled view, for a row unlabelled
                // again) gives way to the queue, where it is.
                if !self.current_list().iter().any(|&r| r as usize == i) && self.queue.iter().any(|&r| r as usize == i) {
                    self.view = View::Queue;
                }
                if let Some(p) = self.current_list().iter().position(|&r| r as usize == i) {
                    self.cursor[self.view.index()] = p;
                    self.scroll_into_view();
                }
                self.message = Some(format!("undone: row {row_id}"));
            }
        }
        Ok(())
    }

    /// Takes back the skip of row `r`: the skipped rows are what they were
    /// and, when the batch held it, the batch is what it was before (its
    /// place included; the row that came in its place goes back to the
    /// queue), unless another annotator took it meanwhile.
    fn unskip(&mut self, skip: Skip) -> Result<()> {
        let Skip { row: r, held, order, skipped } = skip;
        self.skipped = skipped;
        self.keep_skipped();
        let id = self.row_ids[r as usize];
        let mut taken = false;
        if held.contains(&r) {
            // The batch before the skip first, then what holds now (which
            // stays held should the row not come back).
            let mut want = held.clone();
            want.extend(self.reserved.iter().copied().filter(|x| !held.contains(x)));
            let ids: Vec<i64> = want.iter().map(|&x| self.row_ids[x as usize]).collect();
            match self.session.reserve(&ids, self.batch_remaining()) {
                Ok(got) => {
                    let got: HashSet<i64> = got.into_iter().collect();
                    self.reserved = want.into_iter().filter(|&x| got.contains(&self.row_ids[x as usize])).collect();
                    taken = !got.contains(&id);
                }
                Err(e) => {
                    tracing::warn!("{e:#}");
                    taken = true;
                }
            }
            let (labels, reserved) = (&self.labels, &self.reserved);
            self.batch_order = order.into_iter().filter(|&x| labels[x as usize].is_some() || reserved.contains(&x)).collect();
            for &x in &self.reserved {
                if !self.batch_order.contains(&x) {
                    self.batch_order.push(x);
                }
            }
            self.keep_batch();
        }
        self.rebuild_lists();
        if let Some(p) = self.current_list().iter().position(|&x| x == r) {
            self.cursor[self.view.index()] = p;
            self.scroll_into_view();
        }
        self.message = Some(if taken {
            format!("skip undone, but row {id} could not come back into your batch (another annotator took it, or see the log)")
        } else {
            format!("skip undone: row {id} is back in its place")
        });
        Ok(())
    }

    /// Row `i`, unlabelled again by an undo, goes back into this batch
    /// where the batch has room for it (the label it had counted towards
    /// the batch), at its place in the batch's order (first, when it was
    /// not in this batch): the keys that follow keep working down the
    /// batch, never on the rows below it.
    ///
    /// A batch that is full already began after the row's label: the label
    /// was its batch's last (or the batch before's). The row then comes
    /// first in this batch, whose last row goes back to the queue, so that
    /// the person decides it again before going on, rather than finding it
    /// wherever the new ranking put it (as the model's surest, at the bottom).
    fn back_into_batch(&mut self, i: usize) {
        let r = i as u32;
        if self.labels[i].is_some() || self.reserved.contains(&r) {
            return;
        }
        // Nothing of this batch decided yet: the row is the batch before's.
        let before = self.batch_done == 0;
        if self.reserved.len() >= self.batch_remaining() {
            if self.reserved.is_empty() || !before {
                return;
            }
            // Full: it heads the batch, before the rows undos brought back earlier.
            let mut heads = vec![r];
            heads.extend(self.reserved.iter().copied().filter(|x| self.reheaded.contains(x)));
            self.head_batch(&heads);
        } else {
            // Its place in the batch's order; a row that was not in the
            // batch (labelled from another view, or in an earlier batch
            // when the undo passed over labels it may not take back: an
            // adjudicated one) comes first: the cursor goes to it, and the
            // keys that follow its decision go on down the batch, not on
            // the rows below it.
            let at = match self.batch_order.iter().position(|&y| y == r) {
                Some(p) => {
                    let place = |x: u32| self.batch_order.iter().position(|&y| y == x).unwrap_or(usize::MAX);
                    self.reserved.iter().position(|&x| place(x) > p)
                }
                None => Some(0),
            }
            .unwrap_or(self.reserved.len());
            let mut batch = self.reserved.clone();
            batch.insert(at, r);
            let ids: Vec<i64> = batch.iter().map(|&x| self.row_ids[x as usize]).collect();
            match self.session.reserve(&ids, self.batch_remaining()) {
                Ok(got) => {
                    let got: HashSet<i64> = got.into_iter().collect();
                    self.reserved = batch.into_iter().filter(|&x| got.contains(&self.row_ids[x as usize])).collect();
                    self.keep_batch();
                }
                Err(e) => tracing::warn!("{e:#}"),
            }
        }
        // A ranking that answers the batch before keeps the row first.
        if before && self.reserved.contains(&r) {
            self.reheaded.retain(|&x| x != r);
            self.reheaded.insert(0, r);
        }
    }

    /// Puts `heads` first in the batch just reserved (rows an undo brought
    /// back from the batch before), the batch's last rows going back to the
    /// queue to keep its size (it grows where it holds only such rows).
    fn head_batch(&mut self, heads: &[u32]) {
        let mut want: Vec<u32> = heads.to_vec();
        want.extend(self.reserved.iter().copied().filter(|x| !heads.contains(x)));
        let ids: Vec<i64> = want.iter().map(|&x| self.row_ids[x as usize]).collect();
        match self.session.reserve(&ids, self.batch_remaining().max(heads.len())) {
            Ok(got) => {
                let got: HashSet<i64> = got.into_iter().collect();
                self.reserved = want.into_iter().filter(|&x| got.contains(&self.row_ids[x as usize])).collect();
                // Grown to hold them all: the batch counts them, and ends after them.
                self.grown += self.reserved.len().saturating_sub(self.batch_remaining());
                self.batch_order = self.reserved.clone();
                self.keep_batch();
            }
            Err(e) => tracing::warn!("{e:#}"),
        }
    }

    /// Holds the first `n` rows of the queue (skipped rows aside) that
    /// nobody else holds for this annotator (the session decides,
    /// atomically), and lists them first; rows others took since the last
    /// look leave the queue. A store that cannot hold them leaves what is
    /// held as it is, with `failed` as the message.
    fn hold_from_queue(&mut self, n: usize, failed: &str) {
        let candidates: Vec<i64> =
            self.queue.iter().filter(|i| !self.skipped.contains(i)).take(self.batch_size * 4).map(|&i| self.row_ids[i as usize]).collect();
        match self.session.reserve_seeing(&candidates, n) {
            Ok((ids, taken)) => {
                let ids: HashSet<i64> = ids.into_iter().collect();
                self.reserved = self.queue.iter().copied().filter(|&i| ids.contains(&self.row_ids[i as usize])).collect();
                let taken: HashSet<i64> = taken.into_iter().collect();
                let gone: Vec<u32> = self.queue.iter().copied().filter(|&i| taken.contains(&self.row_ids[i as usize])).collect();
                self.others_reserved.extend(gone);
            }
            Err(e) => {
                tracing::warn!("{e:#}");
                self.message = Some(failed.into());
            }
        }
        self.rebuild_lists();
    }

    /// A row of the batch was skipped: the batch holds what is left of it
    /// and the next row of the queue in its place (held for this
    /// annotator, and kept as the batch, so a reopening finds the same rows).
    fn refill_batch(&mut self) {
        self.hold_from_queue(self.batch_remaining(), "could not hold another row for you in its place (see the log)");
        let (labels, reserved) = (&self.labels, &self.reserved);
        self.batch_order.retain(|&r| labels[r as usize].is_some() || reserved.contains(&r));
        for &r in &self.reserved {
            if !self.batch_order.contains(&r) {
                self.batch_order.push(r);
            }
        }
        self.keep_batch();
    }

    /// The labelled view (in the order review or disputes asked for), from its top.
    fn labelled_from_top(&mut self) {
        self.view = View::Labelled;
        self.rebuild_lists();
        self.cursor[View::Labelled.index()] = 0;
        self.offset[View::Labelled.index()] = 0;
    }

    /// The label set, as the picker searches and shows it.
    pub fn picker_labels(&self) -> super::picker::Labels<'_> {
        super::picker::Labels { names: &self.label_names, descriptions: &self.label_descriptions }
    }

    /// The selected row's best labels, first in a picker opened on it.
    fn suggested(&self) -> Vec<u32> {
        self.selected().map(|i| self.suggested_for(i)).unwrap_or_default()
    }

    /// Row `i`'s best labels, first in a picker opened on it.
    fn suggested_for(&self, i: usize) -> Vec<u32> {
        let mut v: Vec<u32> = Vec::new();
        // Settling a dispute: the annotators' labels first.
        if self.adjudicating && self.view == View::Labelled {
            for l in self.disputed_labels(i).unwrap_or_default() {
                if !v.contains(&l.label) {
                    v.push(l.label);
                }
            }
        }
        for (l, _) in self.suggestions(i) {
            if !v.contains(&l) {
                v.push(l);
            }
        }
        v
    }

    /// Applies an action. Errors from the store show in the status line;
    /// no label is ever lost.
    pub fn handle(&mut self, a: Action) {
        // A message lasts until the next key (which may set its own); the
        // footer's hints come back.
        self.message = None;
        // Keys left out are said for a moment at least: a key that follows
        // at once (a move) does not wipe it, one that has something to say
        // (an error, a refusal, a label changed) does, below.
        if self.ignored_at.is_none_or(|t| t.elapsed() >= SETTLE) {
            self.clear_ignored();
        }
        // An error a key caused lasts until the next key too (the worker's
        // last until its next result).
        if std::mem::take(&mut self.key_error) {
            self.error = None;
        }
        let covered = self.overlay != Overlay::None;
        if let Err(e) = self.try_handle(a) {
            self.error = Some(format!("{e:#}"));
            self.key_error = true;
        }
        if self.key_error || self.message.is_some() {
            self.clear_ignored();
        }
        match (covered, self.overlay != Overlay::None) {
            (false, true) => self.overlay_opened = Some(Instant::now()),
            (true, false) => {
                // The row under the cursor (or its suggestions) changed by
                // itself behind the overlay: its moment to be read starts
                // now that it can be seen.
                if let (Some(changed), Some(opened)) = (self.changed_at, self.overlay_opened.take()) {
                    if changed >= opened {
                        self.changed_at = Some(Instant::now());
                        if self.message.is_none() {
                            self.message = Some("the row under the cursor changed while the table was covered".into());
                        }
                    }
                }
            }
            _ => {}
        }
    }

    fn try_handle(&mut self, a: Action) -> Result<()> {
        // Quit (`q`, `Esc` in the views; Ctrl-C anywhere, an overlay open or
        // not) ends the workstation: everything is saved already.
        if a == Action::Quit {
            self.quit = true;
            return Ok(());
        }
        match &mut self.overlay {
            Overlay::Help { scroll } => {
                let shown = self.geometry.help_lines.max(1);
                let most = self.keys.help(self.adjudicator).len().saturating_sub(shown);
                // (A window made larger since shows more: the scroll starts from what is shown.)
                *scroll = (*scroll).min(most);
                match a {
                    Action::Down => *scroll = (*scroll + 1).min(most),
                    Action::Up => *scroll = scroll.saturating_sub(1),
                    Action::PageDown => *scroll = (*scroll + shown).min(most),
                    Action::PageUp => *scroll = scroll.saturating_sub(shown),
                    Action::Cancel | Action::ToggleHelp | Action::Confirm => self.overlay = Overlay::None,
                    _ => {}
                }
                return Ok(());
            }
            Overlay::Reader { scroll, .. } => {
                let page = self.page.max(1);
                match a {
                    Action::Down => *scroll += 1,
                    Action::Up => *scroll = scroll.saturating_sub(1),
                    Action::PageDown => *scroll += page,
                    Action::PageUp => *scroll = scroll.saturating_sub(page),
                    Action::Cancel | Action::Read => self.overlay = Overlay::None,
                    _ => {}
                }
                return Ok(());
            }
            Overlay::Search { query } => {
                match a {
                    Action::Input(c) => query.push(c),
                    Action::Backspace => {
                        query.pop();
                    }
                    Action::Confirm => {
                        let q = query.trim().to_string();
                        self.overlay = Overlay::None;
                        self.all_search = if q.is_empty() { None } else { Some(q) };
                        self.view = View::All;
                        self.rebuild_lists();
                        self.cursor[View::All.index()] = 0;
                        self.scroll_into_view();
                        self.message = Some(match &self.all_search {
                            Some(q) => format!(
                                "{} hold{} '{q}' ({} unlabelled); {} again clears",
                                match self.all_list.len() {
                                    1 => "1 row".to_string(),
                                    n => format!("{n} rows"),
                                },
                                if self.all_list.len() == 1 { "s" } else { "" },
                                self.all_list.iter().filter(|&&i| self.labels[i as usize].is_none()).count(),
                                self.key(&Action::Search)
                            ),
                            None => "search cleared".into(),
                        });
                    }
                    Action::Cancel => self.overlay = Overlay::None,
                    _ => {}
                }
                return Ok(());
            }
            Overlay::Describe { label, text, back } => {
                // Back to the picker the description was asked from (its
                // row and filter as they were): the label is still to pick.
                let to_picker = |b: &mut Option<Box<Picker>>| b.take().map(|p| Overlay::Picker(*p)).unwrap_or(Overlay::None);
                match a {
                    Action::Input(c) => text.push(c),
                    Action::Backspace => {
                        text.pop();
                    }
                    Action::Confirm => {
                        let (l, t) = (*label, text.trim().to_string());
                        self.session.set_label_description(l, Some(&t))?;
                        self.overlay = to_picker(back);
                        self.label_descriptions[l as usize] = if t.is_empty() { None } else { Some(t) };
                        self.message = Some(format!("description of '{}' saved; retraining", self.label_names[l as usize]));
                        self.outbox.push(Job::Retrain { strategy: self.strategy });
                    }
                    Action::Cancel => {
                        let l = *label as usize;
                        self.overlay = to_picker(back);
                        self.message = Some(format!("description of '{}' left as it was", self.label_names[l]));
                    }
                    _ => {}
                }
                return Ok(());
            }
            Overlay::Picker(p) => {
                let purpose = p.purpose;
                // Labelling: the row's suggestions come first while the query is empty.
                let suggested = match purpose {
                    PickerPurpose::Label { row, .. } => self.suggested_for(row),
                    PickerPurpose::Filter => Vec::new(),
                };
                let labels = super::picker::Labels { names: &self.label_names, descriptions: &self.label_descriptions };
                let Overlay::Picker(p) = &mut self.overlay else { unreachable!("matched above") };
                match p.handle(&a, labels, &suggested) {
                    Picked::Open => {}
                    Picked::Closed => self.overlay = Overlay::None,
                    Picked::Label(l) => {
                        self.overlay = Overlay::None;
                        match purpose {
                            // The row the picker was opened on, whatever is under the cursor now.
                            PickerPurpose::Label { row, unlabelled } => self.decide_row_seen(row, l, unlabelled)?,
                            PickerPurpose::Filter => {
                                self.all_filter = Some(l);
                                self.rebuild_lists();
                                self.cursor[View::All.index()] = 0;
                                self.scroll_into_view();
                            }
                        }
                    }
                    Picked::Describe(l) => {
                        let text = self.label_descriptions[l as usize].clone().unwrap_or_default();
                        let back = Some(Box::new(p.clone()));
                        self.overlay = Overlay::Describe { label: l, text, back };
                    }
                }
                return Ok(());
            }
            Overlay::None => {}
        }
        // While the row under the cursor has just changed by itself, keys
        // that do more than move or show wait their moment too: typed ahead
        // of the screen (`/hum` right after a batch's last label, the `/`
        // refused), `u` would undo a label and `m` or `s` change the
        // session's mode or strategy for everyone.
        // The rest of a burst of typing that began with a refused key goes
        // the same way, also once the moment is over (`/card`'s `a` would accept).
        // (A row that did not change by itself, `changed_at` None, refuses nothing.)
        let burst = self.changed_at.is_some() && self.refused_at.is_some_and(|t| t.elapsed() < BURST);
        if burst {
            self.refused_at = Some(Instant::now());
        }
        if (self.settling() || burst)
            && !matches!(
                a,
                Action::Up
                    | Action::Down
                    | Action::PageUp
                    | Action::PageDown
                    | Action::Top
                    | Action::Bottom
                    | Action::NextView
                    | Action::Read
                    | Action::ToggleHelp
                    | Action::Quit
                    | Action::None
            )
        {
            self.refused_at = Some(Instant::now());
            self.message = Some(REFUSED.into());
            return Ok(());
        }
        // A key for a row where the view has none says so (it did nothing, silently).
        if self.selected().is_none()
            && matches!(a, Action::Accept | Action::Confirm | Action::Pick(_) | Action::OpenPicker | Action::Skip | Action::Read)
        {
            self.message = Some(match self.view {
                View::Queue if self.queue.is_empty() => {
                    format!("the queue is empty: no row waits for a label from you ({}: the other views)", self.key(&Action::NextView))
                }
                _ => "no row here: this view is empty".into(),
            });
            return Ok(());
        }
        match a {
            Action::Up => self.move_cursor(-1),
            Action::Down => self.move_cursor(1),
            Action::PageUp => self.move_cursor(-(self.page as isize)),
            Action::PageDown => self.move_cursor(self.page as isize),
            Action::Top => self.move_cursor(isize::MIN / 2),
            Action::Bottom => self.move_cursor(isize::MAX / 2),
            // (In the disputes view it takes the model's label, as in the
            // queue: `decide_row` adjudicates there.)
            Action::Accept | Action::Confirm if self.view == View::All && self.selected().is_some_and(|i| self.labels[i].is_some()) => {
                // A row with a label keeps it here too: the model's guess
                // does not replace it by the key that accepts it on a new row.
                if let Some((i, Some((l, src)))) = self.selected().map(|i| (i, self.labels[i])) {
                    // (An adjudicated label is the row's: no key relabels it here.)
                    self.message = Some(if src == Source::Adjudicated {
                        format!("row {} was adjudicated: it keeps {}", self.row_ids[i], self.label_names[l as usize])
                    } else {
                        format!(
                            "row {} keeps {}; 1-9 or {} relabels",
                            self.row_ids[i],
                            self.label_names[l as usize],
                            self.key(&Action::OpenPicker)
                        )
                    });
                }
            }
            Action::Accept | Action::Confirm if self.view == View::Labelled && !self.adjudicating => {
                // In the labelled view the label stays; relabel with 1-9 or the picker.
                if let Some(i) = self.selected() {
                    if let Some((l, _)) = self.labels[i] {
                        self.message = Some(format!("row {} keeps {}", self.row_ids[i], self.label_names[l as usize]));
                        if self.review {
                            // Kept after review: off the list, and remembered
                            // in the session (for this label of this row).
                            self.session.keep_review(self.row_ids[i], l)?;
                            self.kept_reviews.insert((self.row_ids[i], l));
                            self.rebuild_lists();
                            self.scroll_into_view();
                        }
                    }
                }
            }
            Action::Disputes => {
                if !self.adjudicator {
                    self.message = Some(match self.disputes.len() {
                        0 => "no disagreements between annotators".into(),
                        1 => {
                            format!("1 disagreement waits for the adjudicator (labelrest label {} --adjudicator)", display_safe(&self.name))
                        }
                        n => format!(
                            "{n} disagreements wait for the adjudicator (labelrest label {} --adjudicator)",
                            display_safe(&self.name)
                        ),
                    });
                    return Ok(());
                }
                self.adjudicating = !self.adjudicating;
                self.review = false;
                self.labelled_from_top();
                self.message = Some(if !self.adjudicating {
                    "disputes off: every label, newest first".into()
                } else if self.labelled_list.is_empty() {
                    match self.own_disputes {
                        0 => "no disagreements to adjudicate".into(),
                        n => format!("no disagreements to adjudicate ({n} of yours: another adjudicator settles them)"),
                    }
                } else {
                    format!(
                        "disputes: {} takes the model's label, 1-9 or {} picks one",
                        self.key(&Action::Accept),
                        self.key(&Action::OpenPicker)
                    )
                });
            }
            Action::Review => {
                self.adjudicating = false;
                self.review = !self.review;
                self.labelled_from_top();
                self.message = Some(if !self.review {
                    "review off: every label, newest first".into()
                } else if self.history.last().map(|h| h.suspects.is_empty()).unwrap_or(true) {
                    format!(
                        "review: nothing to review yet (each retrain checks your labels from {} on)",
                        crate::learn::calibration::MIN_LABELS
                    )
                } else {
                    let disputed = self.labelled_list.iter().filter(|&&i| self.dispute(i as usize).is_some()).count();
                    format!(
                        "review: least likely first ({disputed} disputed); {} keeps, 1-9 or {} relabels",
                        self.key(&Action::Accept),
                        self.key(&Action::OpenPicker)
                    )
                });
            }
            Action::Accept | Action::Confirm => {
                if let Some(i) = self.selected() {
                    match self.prediction(i) {
                        Some((l, _, _)) => self.decide(l)?,
                        None => self.message = Some(self.no_prediction(i)),
                    }
                }
            }
            Action::Pick(n) => {
                if let Some(i) = self.selected() {
                    let s = self.suggestions(i);
                    let shown = self.shown_suggestions(i);
                    let picker = self.key(&Action::OpenPicker);
                    if s.is_empty() {
                        self.message = Some(self.no_prediction(i));
                    } else if n == 0 || n > shown {
                        // A digit only takes a suggestion the person can see.
                        self.message = Some(match shown {
                            0 => format!("no suggestion {n} on screen (the terminal is too small to show them): {picker} picks a label"),
                            1 => format!("no suggestion {n} on screen (only 1 is shown): {picker} picks a label"),
                            k => format!("no suggestion {n} on screen (1-{k} are shown): {picker} picks a label"),
                        });
                    } else {
                        self.decide(s[n - 1].0)?
                    }
                }
            }
            Action::OpenPicker => {
                // The picker labels the row it opens on (the guard above
                // keeps it from one that came under the cursor a moment ago:
                // `/` then Enter is quick).
                if let Some(row) = self.selected() {
                    let suggested = self.suggested();
                    let unlabelled = self.labels[row].is_none();
                    self.overlay =
                        Overlay::Picker(Picker::open(PickerPurpose::Label { row, unlabelled }, self.picker_labels(), &suggested));
                }
            }
            Action::Read => {
                if let Some(row) = self.selected() {
                    self.overlay = Overlay::Reader { row, scroll: 0 };
                    self.read_row = Some(row);
                }
            }
            Action::Search => {
                if self.all_search.is_some() {
                    self.all_search = None;
                    self.rebuild_lists();
                    self.message = Some("search cleared".into());
                } else {
                    self.overlay = Overlay::Search { query: String::new() };
                }
            }
            Action::Filter | Action::SortConfidence if self.view != View::All => {
                self.message = Some(format!(
                    "filter ({}) and sort ({}) work in the all-rows view: {} to get there",
                    self.key(&Action::Filter),
                    self.key(&Action::SortConfidence),
                    self.key(&Action::NextView)
                ));
            }
            Action::Filter => {
                if self.view == View::All {
                    if self.all_filter.is_some() {
                        self.all_filter = None;
                        self.rebuild_lists();
                    } else {
                        self.overlay = Overlay::Picker(Picker::open(PickerPurpose::Filter, self.picker_labels(), &[]));
                    }
                }
            }
            Action::SortConfidence => {
                if self.view == View::All {
                    self.all_sort = self.all_sort.next();
                    self.rebuild_lists();
                    self.cursor[View::All.index()] = 0;
                    self.scroll_into_view();
                }
            }
            Action::Skip => {
                if self.view == View::Queue {
                    if let Some(i) = self.selected() {
                        // A skipped row is no longer one to keep at the batch's head.
                        self.reheaded.retain(|&x| x as usize != i);
                        let at = self.cursor[0];
                        self.last_skip = Some(Skip {
                            row: i as u32,
                            held: self.reserved.clone(),
                            order: self.batch_order.clone(),
                            skipped: self.skipped.clone(),
                        });
                        self.skipped.retain(|&r| r as usize != i);
                        self.skipped.push(i as u32);
                        self.keep_skipped();
                        self.message = Some("skipped for now: back at the end of the queue".into());
                        self.rebuild_lists();
                        if self.reserved.contains(&(i as u32)) {
                            self.refill_batch();
                        }
                        // Stay in place: the next row moves up under the cursor.
                        self.cursor[0] = at.min(self.queue.len().saturating_sub(1));
                        self.scroll_into_view();
                    }
                }
            }
            Action::Undo => self.undo()?,
            Action::Retrain => {
                self.batch_done = 0;
                // (The rows held stay the batch.)
                self.grown = self.reserved.len().saturating_sub(self.batch_size);
                self.outbox.push(Job::Retrain { strategy: self.strategy });
                self.message = Some("retraining".into());
            }
            Action::NextView => {
                self.view = self.view.next();
                self.scroll_into_view();
            }
            Action::CycleStrategy => {
                self.strategy = self.strategy.next();
                let mut s = self.session.settings()?;
                s.strategy = self.strategy;
                self.session.save_settings(&s)?;
                self.outbox.push(Job::Retrain { strategy: self.strategy });
                self.message = Some(format!("strategy: {}; re-ranking", self.strategy.name()));
                // The new order's first batch is what the person asked for.
                self.jump_to_batch = true;
                self.reranking = true;
            }
            Action::Export => {
                let r = crate::export::export(&self.session, &self.export_path, &Default::default())?;
                let path = std::fs::canonicalize(&self.export_path).unwrap_or_else(|_| self.export_path.clone());
                self.message = Some(format!("exported {} rows to {}", crate::data::thousands(r.rows), path.display()));
            }
            Action::FineTune => {
                if self.finetune_running {
                    self.outbox.push(Job::CancelFineTune);
                    self.message = Some("cancelling the fine-tune; the current model stays".into());
                } else if self.embedding_behind() {
                    // The worker remembers the request and starts it once every row is embedded.
                    self.outbox.push(Job::FineTune);
                    self.message = Some("the fine-tune starts once every row is embedded".into());
                } else {
                    self.outbox.push(Job::FineTune);
                    self.finetune_running = true;
                    self.finetune_status = Some("fine-tune starting".into());
                }
            }
            Action::CycleMode => {
                use crate::model::finetune::Mode;
                let next = match self.mode {
                    Mode::Auto => Mode::Head,
                    Mode::Head => Mode::Finetune,
                    Mode::Finetune => Mode::Contrastive,
                    Mode::Contrastive => Mode::Auto,
                };
                let mut s = self.session.settings()?;
                s.mode = next;
                self.session.save_settings(&s)?;
                self.mode = s.mode;
                self.message = Some(match next {
                    Mode::Head => "mode head: only the head learns; the encoder stays".to_string(),
                    Mode::Auto => "mode auto: the encoder is fine-tuned behind the head".to_string(),
                    m => format!("mode {}: the encoder is fine-tuned this way behind the head", m.name()),
                });
            }
            Action::ToggleHelp => self.overlay = Overlay::Help { scroll: 0 },
            Action::Quit => self.quit = true,
            _ => {}
        }
        Ok(())
    }
}
