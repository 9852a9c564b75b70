//! Several annotators on one session: which process trains, and what the
//! others pick up.
//!
//! Every workstation's worker polls the session once a second while it
//! waits (`POLL`): it renews its annotator's reservations, tells the UI
//! which rows other annotators hold and when labels changed elsewhere, and
//! takes the session's trainer lock when nobody holds it (the first
//! process to open the session, or the next one after the trainer ended or
//! crashed). The trainer retrains when a batch of labels arrived from
//! anyone and fine-tunes on the schedule; every other process picks up
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
    /// (Trainer) labels in use when it last trained (None: not yet known).
    trained_on: Option<i64>,
}

/// What a look found to do.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Look {
    /// This process took the trainer lock just now.
    pub became_trainer: bool,
    /// (Trainer) labels arrived since the last iteration: a batch or more.
    pub retrain: bool,
    /// (Follower) the trainer stored an iteration this process has not shown.
    pub pick_up: bool,
}

impl Team {
    /// Takes the trainer lock if it is free.
    pub fn try_train(&mut self, session: &Session) -> Result<bool> {
        if self.trainer.is_none() {
            self.trainer = Lock::trainer(&session.dir)?;
            if self.trainer.is_some() {
                tracing::info!("this process trains session {}", session.name);
            }
        }
        Ok(self.trainer.is_some())
    }

    pub fn is_trainer(&self) -> bool {
        self.trainer.is_some()
    }

    /// Who trains, for the person (a follower's message).
    pub fn trainer_text(session: &Session) -> String {
        match Lock::trainer_holder(&session.dir) {
            Some((pid, _)) if pid > 0 => format!("another process (pid {pid}) trains this session's model: its iterations show here"),
            _ => "another process trains this session's model: its iterations show here".into(),
        }
    }

    /// One look at the session: renews this annotator's reservations,
    /// sends the UI what others changed, and says what to do. `shown` is
    /// the iteration this process shows; `batch` the session's batch size.
    pub fn look(&mut self, session: &Session, shown: i64, batch: usize, events: &Sender<Event>) -> Result<Look> {
        let mut look = Look::default();
        if let Err(e) = session.renew_reservations() {
            tracing::warn!("cannot renew the reservations: {e:#}");
        }
        let marks = session.marks()?;
        let labels_changed = marks.last_annotation != self.marks.last_annotation || marks.labels != self.marks.labels;
        let others = Arc::new(session.reserved_by_others()?);
        if labels_changed || self.others.as_deref() != Some(&*others) {
            let _ = events.send(Event::Team { others_reserved: others.clone(), labels_changed });
            self.others = Some(others);
        }
        self.marks = marks;
        if self.trainer.is_none() && self.try_train(session)? {
            look.became_trainer = true;
        }
        if self.is_trainer() {
            let base = *self.trained_on.get_or_insert(marks.iteration_labels);
            look.retrain = (marks.labels - base).unsigned_abs() as usize >= batch.max(1);
        } else {
            look.pick_up = marks.iteration > shown;
        }
        Ok(look)
    }

    /// (Trainer) it trained on the labels in use now.
    pub fn trained(&mut self, session: &Session) {
        match session.marks() {
            Ok(m) => self.trained_on = Some(m.labels),
            Err(e) => tracing::warn!("cannot look at the session: {e:#}"),
        }
    }

    /// Tells the person once that another process trains.
    pub fn tell_follower(&mut self, session: &Session, events: &Sender<Event>) {
        if !self.told {
            self.told = true;
            let _ = events.send(Event::Notice(Team::trainer_text(session)));
        }
    }
}
