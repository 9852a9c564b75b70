//! The background worker: one thread that embeds, trains, predicts and
//! ranks on requests from the UI, and sends back progress and results;
//! beside it, the encoder fine-tune (`tuning`) on a thread of its own.
//!
//! Requests coalesce as in gitui's `AsyncSingleJob`: one job runs, at most
//! one waits, and a newer request replaces the waiting one.

pub mod pipeline;
pub mod team;
pub mod tuning;

pub use pipeline::{create_session, encoder_dir, iterate, model_and_labels, prepare, retrain_headless, IterationRecord, Prepared, Update};

use anyhow::Result;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, Sender};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Instant;

use crate::learn::Strategy;
use crate::model::Head;
use crate::store::Session;
use pipeline::{eligible, resume_update};
use tuning::{Candidate, Tuner, Verdict};

/// What the worker reports.
#[derive(Debug, Clone)]
pub enum Event {
    /// Work in progress: stage ("embedding", "training", ...), done, total.
    Progress { stage: String, done: usize, total: usize },
    /// A new model's view of the pool.
    Update(Arc<Update>),
    /// The worker has nothing to do.
    Idle,
    /// A job failed; the last good model stays in use.
    Error(String),
    /// The encoder fine-tune behind the head refreshes: whether one runs,
    /// and its progress or outcome.
    FineTune { running: bool, text: String },
    /// Something the person should know (shown in the status line).
    Notice(String),
    /// The model in use: the device and the encoder (base, or fine-tuned on
    /// so many labels).
    Model { device: String, encoder: String },
    /// Other annotators on the session: the rows they hold in their current
    /// batches, and whether labels changed since the last look (anyone's).
    Team { others_reserved: Arc<std::collections::HashSet<i64>>, labels_changed: bool },
}

/// A job for the worker.
#[derive(Debug, Clone, PartialEq)]
pub enum Job {
    /// Train on the stored labels, predict, rank with this strategy.
    Retrain { strategy: Strategy },
    /// Fine-tune the encoder now (beside the head refreshes).
    FineTune,
    /// Cancel the running fine-tune.
    CancelFineTune,
}

#[derive(Default)]
pub(crate) struct Slot {
    pending: Option<Job>,
    shutdown: bool,
    /// A fine-tune was asked for.
    finetune: bool,
    /// Cancelling the fine-tune was asked for.
    cancel_finetune: bool,
    /// A finished fine-tune, to be checked and maybe swapped in.
    pub(crate) candidate: Option<Candidate>,
    /// Held (`Worker::hold`): jobs wait and coalesce.
    held: bool,
}

/// How many times the worker starts again after an error before it gives up.
const RESTARTS: usize = 20;

/// The UI's handle on the worker thread.
pub struct Worker {
    slot: Arc<(Mutex<Slot>, Condvar)>,
    cancel: Arc<AtomicBool>,
    handle: Option<std::thread::JoinHandle<()>>,
}

impl Worker {
    /// Starts the worker on a session: it opens its own connection, loads
    /// the encoder, embeds what the cache lacks, then sends the model's view
    /// (the saved head's, or zero-shot) and waits for jobs.
    pub fn start(session: &Session, events: Sender<Event>) -> Result<Worker> {
        let conn = session.reopen_shared()?;
        let slot = Arc::new((Mutex::new(Slot::default()), Condvar::new()));
        let cancel = Arc::new(AtomicBool::new(false));
        let (s2, c2) = (slot.clone(), cancel.clone());
        let handle = std::thread::Builder::new().name("labelrest-worker".into()).spawn(move || {
            // After an error (a store that did not answer for a while, a busy
            // database) it starts again on a new connection: the person's
            // workstation keeps a model that learns.
            let reopen = conn.reopener();
            let mut session = Some(conn);
            for attempt in 1..=RESTARTS {
                if session.is_none() {
                    session = match reopen() {
                        Ok(s) => {
                            tracing::info!("worker: starting again (attempt {attempt})");
                            Some(s)
                        }
                        Err(e) => {
                            tracing::error!("worker: cannot start again yet: {e:#}");
                            None
                        }
                    };
                }
                if let Some(s) = session.take() {
                    // A panic (a bug) is an error like another: the person is
                    // told, and training starts again.
                    let ran = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run(s, s2.clone(), c2.clone(), &events)))
                        .unwrap_or_else(|p| Err(anyhow::anyhow!("internal error: {} (the log has the details)", panic_text(&p))));
                    match ran {
                        Ok(()) => return,
                        Err(e) => {
                            tracing::error!("worker: {e:#}");
                            let _ = events.send(Event::Error(format!("{e:#}")));
                        }
                    }
                }
                if attempt == RESTARTS {
                    let _ = events.send(Event::Error(
                        "training stopped after repeated errors (the log has them); quit and open the session again".into(),
                    ));
                    return;
                }
                // Again after a pause, unless the workstation is closing.
                let deadline = Instant::now() + std::time::Duration::from_secs(5 * attempt as u64).min(std::time::Duration::from_secs(60));
                while Instant::now() < deadline {
                    if s2.0.lock().map(|g| g.shutdown).unwrap_or(true) {
                        return;
                    }
                    std::thread::sleep(std::time::Duration::from_millis(200));
                }
            }
        })?;
        Ok(Worker { slot, cancel, handle: Some(handle) })
    }

    /// Asks for a job; a retrain replaces any retrain still waiting.
    pub fn request(&self, job: Job) {
        let (m, cv) = &*self.slot;
        let mut s = m.lock().unwrap_or_else(|e| e.into_inner());
        match job {
            Job::FineTune => s.finetune = true,
            Job::CancelFineTune => s.cancel_finetune = true,
            Job::Retrain { .. } => s.pending = Some(job),
        }
        cv.notify_one();
    }

    /// Holds the worker: until the guard is dropped, it takes no job, and
    /// requests coalesce as they would behind a long job (for tests and
    /// benchmarks that need to know what ran).
    pub fn hold(&self) -> Hold<'_> {
        let (m, _) = &*self.slot;
        m.lock().unwrap_or_else(|e| e.into_inner()).held = true;
        Hold(self)
    }

    /// Stops the worker and waits for it at most `limit`; after that the
    /// process may end without it (quitting never waits on a long training
    /// step). Nothing is lost: every label is on disk before it is shown,
    /// caches are written so that an interruption loses at most a batch, and
    /// a database transaction not committed is rolled back.
    pub fn shutdown_within(&mut self, limit: std::time::Duration) {
        self.signal_shutdown();
        let t = Instant::now();
        while let Some(h) = &self.handle {
            if h.is_finished() {
                let _ = self.handle.take().map(|h| h.join());
                return;
            }
            if t.elapsed() >= limit {
                tracing::info!("the worker is still busy after {limit:?}; leaving without it");
                self.handle = None;
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
    }

    fn signal_shutdown(&self) {
        self.cancel.store(true, Ordering::SeqCst);
        let (m, cv) = &*self.slot;
        let mut s = m.lock().unwrap_or_else(|e| e.into_inner());
        s.shutdown = true;
        cv.notify_one();
    }

    /// Stops the worker (cancelling long work) and waits for it.
    pub fn shutdown(&mut self) {
        self.cancel.store(true, Ordering::SeqCst);
        {
            let (m, cv) = &*self.slot;
            let mut s = m.lock().unwrap_or_else(|e| e.into_inner());
            s.shutdown = true;
            cv.notify_one();
        }
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

/// See `Worker::hold`.
pub struct Hold<'a>(&'a Worker);

impl Drop for Hold<'_> {
    fn drop(&mut self) {
        let (m, cv) = &*self.0.slot;
        m.lock().unwrap_or_else(|e| e.into_inner()).held = false;
        cv.notify_one();
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        if std::thread::panicking() {
            // Unwinding from a bug: leave within a second, as quitting does.
            self.shutdown_within(std::time::Duration::from_millis(800));
        } else {
            self.shutdown();
        }
    }
}

/// How the screen names the encoder in use.
fn encoder_text(session: &Session) -> String {
    match session.tuned_encoder().ok().flatten() {
        // Short: the panel is 23 columns at 80.
        Some((_, Some(n))) => format!("tuned on {n}"),
        Some((_, None)) => "fine-tuned".into(),
        None => "base".into(),
    }
}

/// Rows embedded between two rankings while a big pile fills in behind
/// the first (about 10-20 s on two cores).
const GROW_ROWS: usize = 4096;

/// The threads that catch their own panics (and report them as errors):
/// the panic hook only logs theirs.
pub fn catches_panics(thread: Option<&str>) -> bool {
    matches!(thread, Some("labelrest-worker" | "labelrest-finetune"))
}

/// What a caught panic said.
pub(crate) fn panic_text(p: &Box<dyn std::any::Any + Send>) -> String {
    p.downcast_ref::<&str>().map(|s| s.to_string()).or_else(|| p.downcast_ref::<String>().cloned()).unwrap_or_else(|| "a panic".into())
}

/// Whether the person gave at least a batch of labels since the last
/// stored iteration (none: since the zero-shot start).
fn behind_by_a_batch(session: &Session, p: &Prepared) -> Result<bool> {
    let last = session.iterations::<serde::de::IgnoredAny>()?.pop().map(|it| it.n_labels.max(0) as usize).unwrap_or(0);
    let now = eligible(session, p)?.0.len();
    Ok(now >= last + session.settings()?.batch.max(1))
}

fn run(session: Session, slot: Arc<(Mutex<Slot>, Condvar)>, cancel: Arc<AtomicBool>, events: &Sender<Event>) -> Result<()> {
    let t = Instant::now();
    let mut progress = |stage: &str, done: usize, total: usize| {
        let _ = events.send(Event::Progress { stage: stage.to_string(), done, total });
    };
    let settings = session.settings()?;
    let (device, why) = crate::model::choose_device(settings.device)?;
    if let Some(w) = why {
        let _ = events.send(Event::Notice(w));
    }
    // A big pile: a first slice now, the rest behind the first ranking.
    let mut prepared = match pipeline::prepare_first(&session, pipeline::first_slice(), &mut progress, &cancel) {
        Ok(p) => p,
        Err(e) if cancel.load(Ordering::SeqCst) => {
            tracing::info!("worker cancelled while preparing: {e}");
            return Ok(());
        }
        Err(e) => return Err(e),
    };
    tracing::info!("worker ready in {:?}", t.elapsed());
    let device_name = crate::model::device_name(&device).to_string();
    let _ = events.send(Event::Model { device: device_name.clone(), encoder: encoder_text(&session) });
    if prepared.repaired > 0 {
        let _ = events.send(Event::Notice(format!("the embedding cache had {} damaged rows: embedded them again", prepared.repaired)));
    }
    // The first view: the saved head's when there is one, else a fresh
    // iteration (by the process that trains; another shows the zero-shot
    // model until the trainer stores one).
    let strategy = settings.strategy;
    let head_path = |p: &Prepared| session.head_path(&p.model_hash);
    let mut team = team::Team::default();
    if !team.try_train(&session)? {
        team.tell_follower(&session, events);
    }
    let mut encoder_at = pipeline::encoder_dir(&session)?;
    let first = match Head::load(&head_path(&prepared)) {
        Ok(h) if h.k == prepared.engine.k && h.dim == prepared.engine.dim => {
            // A whole batch labelled after the saved model (the process ended
            // before its retrain, as in a crash or a dropped connection):
            // the trainer learns from it now, not after the next batch.
            if team.is_trainer() && behind_by_a_batch(&session, &prepared)? {
                tracing::info!("a batch was labelled after the saved model: training again on opening");
                let _ = events.send(Event::Notice("labels given after the saved model: learning from them now".into()));
                let (m, _) = &*slot;
                let mut s = m.lock().unwrap_or_else(|e| e.into_inner());
                if s.pending.is_none() {
                    s.pending = Some(Job::Retrain { strategy });
                }
            }
            resume_update(&session, &prepared, &h, strategy)
        }
        _ if !team.is_trainer() => {
            team.tell_follower(&session, events);
            resume_update(&session, &prepared, &prepared.engine.zero_shot_head(), strategy)
        }
        other => {
            // No saved model yet, or one that cannot serve: train again (the labels are all in the store).
            match other {
                Ok(h) => tracing::warn!(
                    "the saved model has {} labels of {} dimensions, the session {} of {}: training again",
                    h.k,
                    h.dim,
                    prepared.engine.k,
                    prepared.engine.dim
                ),
                Err(e) if head_path(&prepared).exists() => tracing::warn!("the saved model cannot be read ({e:#}): training again"),
                Err(_) => {}
            }
            iterate(&session, &prepared, strategy, &head_path(&prepared), &mut progress)
        }
    };
    // The iteration this process shows (a follower picks up newer ones).
    let mut shown = 0i64;
    match first {
        Ok(u) => {
            shown = u.iteration;
            let _ = events.send(Event::Update(Arc::new(u)));
        }
        Err(e) => {
            let _ = events.send(Event::Error(format!("{e:#}")));
        }
    }
    if prepared.pending == 0 {
        let _ = events.send(Event::Idle);
    }
    let mut tuner = Tuner::default();
    // A fine-tune of this worker's run before an error that finished since:
    // its thread is over (`Tuner`'s drop), its encoder is not judged here.
    let stale = slot.0.lock().unwrap_or_else(|e| e.into_inner()).candidate.take();
    if let Some(c) = stale {
        tuning::discard(&session.dir, &c.dir, &c.encoder.hash);
    }
    // A fine-tuned encoder that waited for its check when the session was
    // closed waits again (it was noted in its folder); what other
    // fine-tunes that ended without a verdict left behind (a crash, an
    // older candidate) goes: about 90 MB a folder.
    let adopted = if team.is_trainer() { tuning::adopt(&session, &prepared) } else { None };
    if team.is_trainer() {
        if let Err(e) = tuning::sweep(&session, adopted.as_ref().map(|c| c.dir.as_path())) {
            tracing::warn!("cannot look for fine-tuned encoders left behind: {e:#}");
        }
    }
    // The encoder in use (or the one waiting) learnt from this many labels:
    // the schedule goes on from there.
    tuner.last_start = session.tuned_encoder()?.and_then(|(_, n)| n).unwrap_or(0);
    if let Some(c) = adopted {
        tuner.last_start = tuner.last_start.max(c.seen.len());
        tuner.waiting = Some(c);
    }
    let mut first_pass = true;
    // F was pressed while a big pile was still embedding.
    let mut finetune_when_embedded = false;
    // A retrain another process asked for while this one embedded a big pile.
    let mut due_retrain = false;
    loop {
        if first_pass && team.is_trainer() {
            // On opening: a fine-tune is due already when the labels are there.
            first_pass = false;
            schedule(&session, &prepared, &mut tuner, false, &slot, events)?;
        }
        let (job, want_finetune, cancel_finetune, candidate, poll) = {
            let (m, cv) = &*slot;
            let mut s = m.lock().unwrap_or_else(|e| e.into_inner());
            // With rows still to embed, nothing to wait for: look, then embed
            // more. Waiting, it looks at the session every `POLL`.
            let mut poll = false;
            while (s.held || (s.pending.is_none() && !s.finetune && !s.cancel_finetune && s.candidate.is_none()))
                && !s.shutdown
                && (prepared.pending == 0 || s.held)
            {
                let (g, t) = cv.wait_timeout(s, team::POLL).unwrap_or_else(|e| e.into_inner());
                s = g;
                if t.timed_out() && !s.held {
                    poll = true;
                    break;
                }
            }
            if s.shutdown {
                drop(s);
                tuner.cancel();
                tuner.join();
                // One waiting for its check stays for the next opening
                // (noted in its folder; one that could not be noted goes).
                if let Some(c) = tuner.waiting.take() {
                    if !c.dir.join(tuning::WAITING).exists() {
                        tuning::discard(&session.dir, &c.dir, &c.encoder.hash);
                    }
                }
                return Ok(());
            }
            (s.pending.take(), std::mem::take(&mut s.finetune), std::mem::take(&mut s.cancel_finetune), s.candidate.take(), poll)
        };
        let mut job = job;
        if std::mem::take(&mut due_retrain) && job.is_none() {
            job = Some(Job::Retrain { strategy: session.settings()?.strategy });
        }
        let mut worked = false;
        if poll {
            // Another annotator's batch: the trainer learns from it, the others
            // show what the trainer made of it.
            match team.look(&session, shown, events) {
                Ok(look) => {
                    if look.became_trainer {
                        let _ = events.send(Event::Notice("this process now trains the session's model".into()));
                        tuner.last_start = session.tuned_encoder()?.and_then(|(_, n)| n).unwrap_or(0);
                        // It trains with the encoder the last trainer swapped in.
                        if pipeline::encoder_dir(&session)? != encoder_at {
                            prepared = pipeline::prepare(&session, &mut progress, &cancel)?;
                            encoder_at = pipeline::encoder_dir(&session)?;
                            worked = true;
                        }
                        if team.labels_changed_since_training(&session) {
                            job = Some(Job::Retrain { strategy: session.settings()?.strategy });
                        }
                    }
                    if look.retrain && job.is_none() {
                        job = Some(Job::Retrain { strategy: session.settings()?.strategy });
                    }
                    if look.pick_up {
                        match pick_up(&session, &mut prepared, &mut encoder_at, &head_path, &mut progress, &cancel) {
                            Ok(Some(u)) => {
                                worked = true;
                                shown = u.iteration;
                                let _ = events.send(Event::Model { device: device_name.clone(), encoder: encoder_text(&session) });
                                let _ = events.send(Event::Update(Arc::new(u)));
                            }
                            Ok(None) => {}
                            Err(e) => tracing::warn!("cannot pick up the trainer's iteration yet: {e:#}"),
                        }
                    }
                }
                Err(e) => tracing::warn!("cannot look at the session: {e:#}"),
            }
        }
        if job.is_some() && !team.is_trainer() && !team.try_train(&session)? {
            // Another process trains: it is asked to learn from this batch, and
            // its iteration comes here; meanwhile this one ranks again with the
            // model it has (a new strategy shows at once).
            job = None;
            if let Err(e) = session.ask_retrain() {
                tracing::warn!("cannot ask the trainer for a retrain: {e:#}");
            }
            team.tell_follower(&session, events);
            // (Not while the trainer's newer encoder waits to be picked up.)
            if pipeline::encoder_dir(&session)? == encoder_at {
                let head = Head::load(&head_path(&prepared)).unwrap_or_else(|_| prepared.engine.zero_shot_head());
                match resume_update(&session, &prepared, &head, session.settings()?.strategy) {
                    Ok(u) => {
                        worked = true;
                        let _ = events.send(Event::Update(Arc::new(u)));
                    }
                    Err(e) => tracing::warn!("cannot rank again: {e:#}"),
                }
            }
        }
        let had_job = job.is_some();
        if cancel_finetune {
            tuner.cancel();
            if let Some(c) = tuner.waiting.take() {
                tuning::discard(&session.dir, &c.dir, &c.encoder.hash);
                let _ = events.send(Event::FineTune { running: false, text: "fine-tune cancelled; the current model stays".into() });
            }
        }
        if let Some(c) = candidate {
            tuner.join();
            if cancel_finetune {
                // Finished as the person cancelled it: cancelled all the same.
                tuning::discard(&session.dir, &c.dir, &c.encoder.hash);
                let _ = events.send(Event::FineTune { running: false, text: "fine-tune cancelled; the current model stays".into() });
            } else {
                tuning::remember(&session, &prepared, &c);
                tuner.waiting = Some(c);
            }
        }
        if let Some(Job::Retrain { strategy }) = job {
            // (What it trains on now; a failure is not retried at every look.)
            team.trained(&session);
            match prepared
                .refresh_prompts(&session)
                .and_then(|_| iterate(&session, &prepared, strategy, &head_path(&prepared), &mut progress))
            {
                Ok(u) => {
                    shown = u.iteration;
                    let _ = events.send(Event::Update(Arc::new(u)));
                }
                Err(e) => {
                    tracing::error!("retrain failed: {e:#}");
                    let _ = events.send(Event::Error(format!("retrain failed: {e:#}")));
                }
            }
        }
        // A finished fine-tune is judged on the labels it has not seen.
        if let Some(c) = tuner.waiting.take() {
            let seen = c.seen.len();
            let first_look = !c.told;
            // (The check may say "checking" in the header: idle again after it.)
            worked = true;
            match check_candidate(&session, &mut prepared, c, &head_path, &mut progress) {
                Ok((Verdict::Wait { have }, _, back)) => {
                    if first_look {
                        let _ = events.send(Event::FineTune {
                            running: false,
                            text: format!(
                                "tuned on {seen} labels: in use if not worse on your next {} labels",
                                tuning::CHECK_LABELS.saturating_sub(have)
                            ),
                        });
                    }
                    tuner.waiting = back.map(|mut c| {
                        c.told = true;
                        c
                    });
                }
                Ok((Verdict::Doubt { new, old, on }, _, back)) => {
                    // Said once, then judged again on every new label until `CHECK_MORE`.
                    if back.as_ref().is_some_and(|c| !c.doubted) {
                        let text = format!(
                            "encoder tuned on {seen}: {:.0}% vs {:.0}% on {on} new labels, checked again at {}",
                            new * 100.0,
                            old * 100.0,
                            tuning::CHECK_MORE
                        );
                        tracing::info!("fine-tune check: Doubt {{ new: {new}, old: {old}, on: {on} }} ({seen} labels learnt from)");
                        let _ = events.send(Event::FineTune { running: false, text });
                    }
                    tuner.waiting = back.map(|mut c| {
                        c.told = true;
                        if !c.doubted {
                            c.doubted = true;
                            tuning::remember(&session, &prepared, &c);
                        }
                        c
                    });
                }
                Ok((v, update, _)) => {
                    let text = match v {
                        // Short enough for an 80-column footer; the log has it all.
                        Verdict::Swap { new, old, on } => format!(
                            "encoder tuned on {seen} in use: {:.0}% vs {:.0}% on {on} new labels{}",
                            new * 100.0,
                            old * 100.0,
                            if new < old { ", not clearly worse" } else { "" }
                        ),
                        Verdict::Keep { new, old, on } => {
                            format!("encoder tuned on {seen} dropped: {:.0}% vs {:.0}% on {on} new labels", new * 100.0, old * 100.0)
                        }
                        Verdict::Wait { .. } | Verdict::Doubt { .. } => unreachable!(),
                    };
                    tracing::info!("fine-tune check: {v:?} ({seen} labels learnt from)");
                    let _ = events.send(Event::FineTune { running: false, text });
                    if let Some(u) = update {
                        shown = u.iteration;
                        encoder_at = pipeline::encoder_dir(&session)?;
                        let _ = events.send(Event::Model { device: device_name.clone(), encoder: encoder_text(&session) });
                        let _ = events.send(Event::Update(Arc::new(u)));
                    }
                }
                Err(e) => {
                    tracing::error!("fine-tune check failed: {e:#}");
                    let _ = events.send(Event::FineTune { running: false, text: format!("fine-tune check failed: {e:#}") });
                }
            }
        }
        // The schedule (or the person's F) starts the next one; an F while
        // a big pile embeds waits for the last row.
        if want_finetune && prepared.pending > 0 {
            finetune_when_embedded = true;
        }
        if team.is_trainer() {
            schedule(&session, &prepared, &mut tuner, want_finetune, &slot, events)?;
        } else if want_finetune {
            let _ = events.send(Event::FineTune { running: false, text: "the process that trains this session fine-tunes it".into() });
        }
        // A big pile: embed the next rows and rank them with the rest (the
        // model trains again only if labelled rows became usable).
        if prepared.pending > 0 && !had_job {
            // Between steps, the others' work shows here too (their batches,
            // their labels, a retrain they ask for, training taken over).
            match team.look(&session, shown, events) {
                Ok(look) => due_retrain |= look.retrain || (look.became_trainer && team.labels_changed_since_training(&session)),
                Err(e) => tracing::warn!("cannot look at the session: {e:#}"),
            }
            match pipeline::grow(&session, &mut prepared, GROW_ROWS, &mut progress, &cancel) {
                Ok(()) => {}
                Err(_) if cancel.load(Ordering::SeqCst) => return Ok(()),
                Err(e) => return Err(e),
            }
            let strategy = session.settings()?.strategy;
            let u = if team.is_trainer() {
                iterate(&session, &prepared, strategy, &head_path(&prepared), &mut progress)
            } else {
                let head = Head::load(&head_path(&prepared)).unwrap_or_else(|_| prepared.engine.zero_shot_head());
                resume_update(&session, &prepared, &head, strategy)
            };
            match u {
                Ok(u) => {
                    shown = shown.max(u.iteration);
                    let _ = events.send(Event::Update(Arc::new(u)));
                }
                Err(e) => {
                    tracing::error!("ranking the rows embedded since failed: {e:#}");
                    let _ = events.send(Event::Error(format!("ranking the rows embedded since failed: {e:#}")));
                }
            }
            if prepared.pending == 0 && team.is_trainer() {
                tracing::info!("every row embedded in {:?}", t.elapsed());
                // A fine-tune due (or asked for) while the pile embedded starts now.
                schedule(&session, &prepared, &mut tuner, std::mem::take(&mut finetune_when_embedded), &slot, events)?;
            }
        }
        // Between two steps of a big pile's embedding the worker is not idle
        // (and a look that found nothing changes nothing).
        if prepared.pending == 0 && (!poll || had_job || worked) {
            let _ = events.send(Event::Idle);
        }
    }
}

/// Starts a fine-tune when the schedule says one is due (in a mode that
/// fine-tunes), or when the person asked for one (`F`) and none runs.
fn schedule(
    session: &Session,
    prepared: &Prepared,
    tuner: &mut Tuner,
    asked: bool,
    slot: &Arc<(Mutex<Slot>, Condvar)>,
    events: &Sender<Event>,
) -> Result<()> {
    if prepared.pending > 0 {
        // The fine-tune re-embeds every row: it waits for them all.
        if asked {
            let text = format!("the fine-tune waits until every row is embedded ({} to go)", crate::data::thousands(prepared.pending));
            let _ = events.send(Event::FineTune { running: false, text });
        }
        return Ok(());
    }
    let settings = session.settings()?;
    let scheduled = settings.mode.method().is_some();
    let n = eligible(session, prepared).map(|e| e.0.len()).unwrap_or(0);
    if asked && tuner.running() {
        let _ = events.send(Event::FineTune { running: true, text: "a fine-tune is already running".into() });
    } else if asked {
        if let Some(c) = &tuner.waiting {
            // Not running: the last one waits for labels it has not seen to be judged on.
            let have = eligible(session, prepared).map(|e| e.0.iter().filter(|s| !c.seen.iter().any(|t| t.0 == s.0)).count()).unwrap_or(0);
            let text = if c.doubted && have < tuning::CHECK_MORE {
                format!(
                    "tuned on {} labels: worse on your first new labels, checked again after {} more",
                    c.seen.len(),
                    tuning::CHECK_MORE - have
                )
            } else if have >= tuning::CHECK_LABELS {
                format!("tuned on {} labels: checked on the labels since at the next retrain", c.seen.len())
            } else {
                format!(
                    "tuned on {} labels, waiting: in use if not worse on your next {} labels",
                    c.seen.len(),
                    tuning::CHECK_LABELS - have
                )
            };
            let _ = events.send(Event::FineTune { running: false, text });
        }
    }
    if (scheduled && tuner.due(n, settings.batch, tuning::first_at(prepared.engine.k, &settings.finetune))) || (asked && !tuner.busy()) {
        match tuner.start(session, prepared, slot.clone(), events.clone()) {
            Ok(n) => {
                let _ = events.send(Event::FineTune { running: true, text: format!("fine-tune on {n} labels starting") });
            }
            Err(e) => {
                let _ = events.send(Event::FineTune { running: false, text: format!("no fine-tune: {e:#}") });
            }
        }
    }
    Ok(())
}

/// Judges a waiting candidate; on a swap, the session uses its encoder from
/// now on (saved in `meta`), the old fine-tuned encoder goes, and a new
/// iteration runs with it. A candidate that must wait comes back; one that
/// failed its check is deleted.
fn check_candidate(
    session: &Session,
    p: &mut Prepared,
    mut c: Candidate,
    head_path: &dyn Fn(&Prepared) -> std::path::PathBuf,
    progress: &mut dyn FnMut(&str, usize, usize),
) -> Result<(Verdict, Option<Update>, Option<Candidate>)> {
    let (now, _, _) = eligible(session, p)?;
    let seen_rows: std::collections::HashSet<usize> = c.seen.iter().map(|s| s.0).collect();
    let unseen = now.iter().filter(|s| !seen_rows.contains(&s.0)).count();
    if unseen < tuning::CHECK_LABELS || (c.doubted && unseen < tuning::CHECK_MORE) {
        return Ok((Verdict::Wait { have: unseen }, None, Some(c)));
    }
    progress("checking the fine-tuned encoder", 0, 1);
    let judged = tuning::candidate_engine(session, p, &mut c).and_then(|(engine, prompts)| {
        let v = tuning::judge(&p.engine, &engine, &c.seen, &now)?;
        Ok((v, engine, prompts))
    });
    let (v, engine, prompts) = match judged {
        Ok(x) => x,
        Err(e) => {
            tuning::discard(&session.dir, &c.dir, &c.encoder.hash);
            return Err(e);
        }
    };
    match v {
        Verdict::Swap { .. } => {
            // In use from now on: no longer waiting.
            let _ = std::fs::remove_file(c.dir.join(tuning::WAITING));
            if let Some(old_dir) = session.use_tuned_encoder(&c.dir, &c.seen.iter().map(|s| p.pool_ids[s.0]).collect::<Vec<i64>>())? {
                // The old fine-tuned encoder, its cache and its head go (the base model's stay).
                if let Ok(h) = crate::model::model_hash(&old_dir) {
                    let _ = std::fs::remove_file(session.head_path(&h));
                    tuning::discard(&session.dir, &old_dir, &h);
                } else {
                    let _ = std::fs::remove_dir_all(&old_dir);
                }
            }
            p.engine = engine;
            p.model_hash = c.encoder.hash.clone();
            p.encoder = c.encoder;
            p.prompts = prompts;
            let strategy = session.settings()?.strategy;
            let u = iterate(session, p, strategy, &head_path(p), progress)?;
            Ok((v, Some(u), None))
        }
        Verdict::Keep { .. } => {
            tuning::discard(&session.dir, &c.dir, &c.encoder.hash);
            Ok((v, None, None))
        }
        Verdict::Wait { .. } => Ok((v, None, Some(c))),
        // Judged again on more labels: the engine built for it is kept.
        Verdict::Doubt { .. } => {
            c.built = Some((engine, prompts));
            Ok((v, None, Some(c)))
        }
    }
}

/// A follower's view of the iteration the trainer stored last: the encoder
/// it uses (prepared again when the trainer swapped in a fine-tuned one;
/// its embeddings are in the shared cache), its saved head over this
/// process's embeddings, ranked as the trainer ranks. None while the head
/// of that encoder is not on disk yet.
fn pick_up(
    session: &Session,
    p: &mut Prepared,
    encoder_at: &mut std::path::PathBuf,
    head_path: &dyn Fn(&Prepared) -> std::path::PathBuf,
    progress: &mut dyn FnMut(&str, usize, usize),
    cancel: &AtomicBool,
) -> Result<Option<Update>> {
    let dir = pipeline::encoder_dir(session)?;
    if dir != *encoder_at {
        tracing::info!("the trainer uses {} now: preparing it", dir.display());
        *p = pipeline::prepare(session, progress, cancel)?;
        *encoder_at = dir;
    }
    p.refresh_prompts(session)?;
    let Ok(head) = Head::load(&head_path(p)) else { return Ok(None) };
    if head.k != p.engine.k || head.dim != p.engine.dim {
        return Ok(None);
    }
    let strategy = session.settings()?.strategy;
    resume_update(session, p, &head, strategy).map(Some)
}

/// Drains pending events without waiting.
pub fn drain(rx: &Receiver<Event>) -> Vec<Event> {
    let mut v = Vec::new();
    while let Ok(e) = rx.try_recv() {
        v.push(e);
    }
    v
}
