//! Several annotators on one session: which process trains, and what the
//! others pick up.
//!
//! Every workstation's worker polls the session once a second while it
//! waits (`POLL`): it tells the UI
//! which rows other annotators hold and when labels changed elsewhere, and
//! takes the session's trainer lock when nobody holds it (the first
//! process to open the session, or the next one after the trainer ended or
//! crashed). The trainer retrains when its own person finishes a batch or
//! another process asks (`Session::ask_retrain`: a follower's finished
//! batch, a headless `next`), and fine-tunes on the schedule; every other
//! process picks up
//! each iteration the trainer stores (the saved head over its own copy of
//! the embeddings, or the fine-tuned encoder the trainer swapped in).

use std::collections::HashSet;
use std::sync::mpsc::Sender;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;

use super::Event;
use crate::store::{Lock, Marks, Session};

/// How often a waiting worker looks at the session.
pub const POLL: Duration = Duration::from_millis(1000);

/// What one process knows about the others on its session.
#[derive(Default)]
pub struct Team {
    /// Held while this process trains for the session.
    pub trainer: Option<Lock>,
    /// What the last look saw.
    pub marks: Marks,
    /// Rows other annotators hold, as last told to the UI.
    others: Option<Arc<HashSet<i64>>>,
    /// The follower was told who trains.
    told: bool,
    /// (Trainer) the last annotation it trained on, and the undos by then.
    trained_on: (i64, i64, i64),
    /// (Trainer) the retrain requests it has answered.
    answered: Option<i64>,
}

/// What a look found to do.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Look {
    /// This process took the trainer lock just now.
    pub became_trainer: bool,
    /// (Trainer) another annotator finished a batch (or asked for a
    /// batch headlessly) and labels changed since it last trained.
    pub retrain: bool,
    /// (Follower) the trainer stored an iteration this process has not shown.
    pub pick_up: bool,
}

impl Team {
    /// Takes the trainer lock if it is free.
    pub fn try_train(&mut self, session: &Session) -> Result<bool> {
        if self.trainer.as_ref().is_some_and(|l| l.lost()) {
            // The store restarted and another process trains now.
            tracing::warn!("lost the trainer lock of session {}: another process trains it now", session.name);
            self.trainer = None;
        }
        if self.trainer.is_none() {
            self.trainer = session.trainer_lock()?;
            if self.trainer.is_some() {
                tracing::info!("this process trains session {}", session.name);
            }
        }
        Ok(self.trainer.is_some())
    }

    pub fn is_trainer(&self) -> bool {
        self.trainer.as_ref().is_some_and(|l| !l.lost())
    }

    /// Who trains, for the person (a follower's message; short enough for
    /// an 80-column footer).
    pub fn trainer_text(session: &Session) -> String {
        match session.trainer_holder() {
            Some((pid, _)) if pid > 0 => format!("pid {pid} trains this session; its iterations show here"),
            _ => "another process trains this session; its iterations show here".into(),
        }
    }

    /// One look at the session (reads only): sends the UI what others changed, and says what to do. `shown` is
    /// the iteration this process shows.
    pub fn look(&mut self, session: &Session, shown: i64, events: &Sender<Event>) -> Result<Look> {
        let mut look = Look::default();
        let marks = session.marks()?;
        let labels_changed = marks.labels_mark() != self.marks.labels_mark() || marks.labels != self.marks.labels;
        let others = Arc::new(session.reserved_by_others()?);
        // (A change of the settings, e.g. another annotator's mode, reaches the UI the same way.)
        if labels_changed || self.others.as_deref() != Some(&*others) || marks.settings != self.marks.settings {
            let _ = events.send(Event::Team { others_reserved: others.clone(), labels_changed });
            self.others = Some(others);
        }
        self.marks = marks;
        if self.trainer.is_none() && self.try_train(session)? {
            look.became_trainer = true;
        }
        if self.is_trainer() {
            let answered = *self.answered.get_or_insert(marks.retrain_asked);
            look.retrain = marks.retrain_asked != answered && marks.labels_mark() != self.trained_on;
            self.answered = Some(marks.retrain_asked);
        } else {
            look.pick_up = marks.iteration > shown;
        }
        Ok(look)
    }

    /// (Trainer) it trains on the labels in the session now.
    pub fn trained(&mut self, session: &Session) {
        match session.marks() {
            Ok(m) => self.trained_on = m.labels_mark(),
            Err(e) => tracing::warn!("cannot look at the session: {e:#}"),
        }
    }

    /// (Trainer) whether any label changed since it last trained.
    pub fn labels_changed_since_training(&self, session: &Session) -> bool {
        session.marks().map(|m| m.labels_mark() != self.trained_on).unwrap_or(true)
    }

    /// Tells the person once that another process trains.
    pub fn tell_follower(&mut self, session: &Session, events: &Sender<Event>) {
        if !self.told {
            self.told = true;
            let _ = events.send(Event::Notice(Team::trainer_text(session)));
        }
    }
}
