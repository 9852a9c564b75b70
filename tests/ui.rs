//! The workstation: snapshots of each view on ratatui's TestBackend, and
//! keys driven through the app with the labels checked in the store. The
//! model is the real one, on a small slice of the demo data.

mod common;
use common::*;
use labelrest::learn::Strategy;
use labelrest::store::Session;
use labelrest::ui::app::{Action, App, Overlay, View};
use labelrest::ui::render::{self, Theme};
use labelrest::worker::{self, Job, Update};
use ratatui::backend::TestBackend;
use ratatui::Terminal;
use std::sync::Arc;

/// A session of the first `n` demo rows, with the demo test set when `test`.
fn session(dir: &std::path::Path, n: usize, test: bool) -> Session {
    session_with(dir, n, test, &[])
}

/// The same, with more flags for `new`.
fn session_with(dir: &std::path::Path, n: usize, test: bool, more: &[&str]) -> Session {
    let f = write(dir, "data.csv", demo_head(n).as_bytes());
    let t = std::fs::read_to_string(demo("test.csv")).unwrap();
    let tf = write(dir, "test.csv", (t.lines().take(81).collect::<Vec<_>>().join("\n") + "\n").as_bytes());
    let lf = demo_labels(dir);
    let mut args = vec![
        "new",
        "s",
        "--data",
        f.to_str().unwrap(),
        "--label-col",
        "label",
        "--label-col-is",
        "gold",
        "--labels-file",
        lf.to_str().unwrap(),
    ];
    if test {
        args.extend(["--test", tf.to_str().unwrap()]);
    }
    args.extend(more);
    let o = labelrest(dir, &args);
    assert!(o.status.success(), "{}", stderr(&o));
    Session::open(dir, "s").unwrap()
}

/// Timings vary from run to run; fix them so snapshots are stable.
fn steady(u: Update) -> Arc<Update> {
    let mut u = u;
    u.record.total_ms = 42.0;
    u.record.train_ms = 30.0;
    Arc::new(u)
}

fn app_with_model(dir: &std::path::Path, n: usize, test: bool) -> App {
    app_with_model_in(session(dir, n, test))
}

fn app_with_model_in(s: Session) -> App {
    let u = worker::retrain_headless(&s, &mut |_, _, _| {}).unwrap();
    let mut app = App::load(s).unwrap();
    for h in &mut app.history {
        h.total_ms = 42.0;
        h.train_ms = 30.0;
    }
    app.apply_update(steady(u));
    app.worker = labelrest::ui::app::WorkerState::Idle;
    app
}

fn screen(app: &mut App, w: u16, h: u16) -> String {
    let mut t = Terminal::new(TestBackend::new(w, h)).unwrap();
    app.set_geometry(render::geometry(ratatui::layout::Rect::new(0, 0, w, h)));
    t.draw(|f| render::draw(f, app, Theme { color: false })).unwrap();
    let buf = t.backend().buffer().clone();
    let mut s = String::new();
    for y in 0..h {
        for x in 0..w {
            s.push_str(buf[(x, y)].symbol());
        }
        s.push('\n');
    }
    s
}

/// Gives row `i` another text, in the store (what the reader shows) and on screen.
fn set_text(app: &mut App, i: usize, text: &str) {
    rusqlite::Connection::open(app.session.db_path())
        .unwrap()
        .execute("UPDATE rows SET text = ?1 WHERE id = ?2", rusqlite::params![text, app.row_ids[i]])
        .unwrap();
    app.texts[i] = text.to_string();
}

/// Accepts the model's label on the ten rows of the batch in hand (the top
/// of the queue); returns them.
fn accept_a_batch(app: &mut App) -> Vec<u32> {
    let batch: Vec<u32> = app.queue[..10].to_vec();
    for _ in 0..10 {
        app.handle(Action::Accept);
    }
    batch
}

/// Runs one retrain as the worker would and gives the update to the app.
fn retrain(app: &mut App) {
    let jobs: Vec<Job> = app.outbox.drain(..).collect();
    assert!(!jobs.is_empty(), "a retrain was asked for");
    let s = app.session.reopen_shared().unwrap();
    let u = worker::retrain_headless(&s, &mut |_, _, _| {}).unwrap();
    app.apply_update(steady(u));
}

#[test]
fn queue_view_80x24_with_batch_marker() {
    let d = tempfile::tempdir().unwrap();
    let mut app = app_with_model(d.path(), 120, true);
    insta::assert_snapshot!("queue_80x24", screen(&mut app, 80, 24));
}

#[test]
fn picker_help_and_tiny_terminals() {
    let d = tempfile::tempdir().unwrap();
    let mut app = app_with_model(d.path(), 120, true);
    app.handle(Action::OpenPicker);
    for c in "card".chars() {
        app.handle(Action::Input(c));
    }
    insta::assert_snapshot!("picker_card", screen(&mut app, 80, 24));
    app.handle(Action::Cancel);
    app.handle(Action::ToggleHelp);
    insta::assert_snapshot!("help", screen(&mut app, 80, 24));
    app.handle(Action::Cancel);
    // The disputes' key is the adjudicator's: listed for them only (not in the snapshot above).
    app.adjudicator = true;
    app.handle(Action::ToggleHelp);
    let s = screen(&mut app, 80, 24);
    assert!(s.lines().any(|l| l.contains("│ D ") && l.contains("annotators' disagreements, to adjudicate")), "{s}");
    app.handle(Action::Cancel);
    // A small terminal: the keys that do not fit scroll into sight, and the border says so.
    app.handle(Action::ToggleHelp);
    let n = app.keys.help(true).len();
    let s = screen(&mut app, 60, 16);
    assert!(s.contains(&format!(" 1-14 of {n} · j k scroll")), "{s}");
    assert!(!s.contains("in the picker"), "the last line is out of sight: {s}");
    for _ in 0..n {
        app.handle(Action::Down);
    }
    let s = screen(&mut app, 60, 16);
    assert!(s.contains(&format!(" {}-{n} of {n} ", n - 13)), "as far as the last line, no further: {s}");
    assert!(s.contains("in the picker"), "{s}");
    app.handle(Action::Up);
    let s = screen(&mut app, 60, 16);
    assert!(s.contains(&format!(" {}-{} of {n} ", n - 14, n - 1)), "one up is one line up: {s}");
    app.handle(Action::Cancel);
    assert_eq!(app.overlay, Overlay::None);
    app.adjudicator = false;
    insta::assert_snapshot!("tiny_30x8", screen(&mut app, 30, 8));
    // No size panics.
    for w in [1u16, 2, 5, 10, 23, 24, 40, 60, 71, 72, 100, 140] {
        for h in [1u16, 2, 3, 5, 6, 8, 12, 14, 20, 24, 40] {
            screen(&mut app, w, h);
        }
    }
}

#[test]
fn panel_without_held_out_set_shows_kept_rate() {
    let d = tempfile::tempdir().unwrap();
    let mut app = app_with_model(d.path(), 120, false);
    // One batch: accept the first five predictions, correct five with suggestion 2.
    for i in 0..10 {
        app.handle(if i < 5 { Action::Accept } else { Action::Pick(2) });
    }
    retrain(&mut app);
    for h in &mut app.history {
        h.total_ms = 42.0;
    }
    let last = app.history.last().unwrap();
    assert_eq!((last.kept, last.decided), (Some(5), Some(10)));
    insta::assert_snapshot!("panel_no_test_100x30", screen(&mut app, 100, 30));
}

#[test]
fn a_batch_of_ten_is_stored_and_retrains() {
    let d = tempfile::tempdir().unwrap();
    let mut app = app_with_model(d.path(), 150, true);
    let first_batch: Vec<usize> = app.queue[..10].iter().map(|&i| i as usize).collect();
    let preds: Vec<u32> = first_batch.iter().map(|&i| app.prediction(i).unwrap().0).collect();
    for n in 0..10 {
        assert_eq!(app.selected(), Some(first_batch[n]), "the cursor walks down the batch");
        app.handle(Action::Accept);
        // Durable before the screen moves on: the store has it now.
        assert_eq!(app.session.labels().unwrap().len(), n + 1);
        if n < 9 {
            assert!(app.outbox.is_empty());
        }
    }
    assert_eq!(app.outbox, vec![Job::Retrain { strategy: Strategy::Margin }]);
    let stored = app.session.labels().unwrap();
    for (l, (&row, &p)) in stored.iter().zip(first_batch.iter().zip(&preds)) {
        assert_eq!(l.row_id, app.row_ids[row]);
        assert_eq!(l.label, p);
        assert_eq!(l.predicted, Some(p));
        assert_eq!(l.source, labelrest::store::Source::Person);
    }
    assert_eq!(app.queue.len(), 140, "labelled rows leave the queue");
    let it_before = app.iteration;
    retrain(&mut app);
    assert!(app.iteration > it_before);
    assert_eq!(app.history.last().unwrap().labels, 10);
    assert!(app.history.last().unwrap().accuracy.is_some());
    // The new ranking never offers a labelled row.
    assert!(app.queue.iter().all(|&i| app.labels[i as usize].is_none()));
}

/// The store holds labels on these pool rows and no others.
fn assert_labelled_exactly(app: &App, rows: &[u32]) {
    let labelled: std::collections::HashSet<i64> = app.session.labels().unwrap().iter().map(|l| l.row_id).collect();
    let want: std::collections::HashSet<i64> = rows.iter().map(|&i| app.row_ids[i as usize]).collect();
    assert_eq!(labelled, want);
}

#[test]
fn undo_puts_the_row_back_in_its_place_in_the_batch() {
    let d = tempfile::tempdir().unwrap();
    let mut app = app_with_model(d.path(), 150, false);
    let batch: Vec<u32> = app.queue[..10].to_vec();
    for _ in 0..3 {
        app.handle(Action::Accept);
    }
    assert_eq!(app.queue[..7], batch[3..]);
    // Two undos: the rows come back where they were, the cursor on each.
    app.handle(Action::Undo);
    assert_eq!(app.selected(), Some(batch[2] as usize));
    assert_eq!(app.queue[..8], batch[2..]);
    app.handle(Action::Undo);
    assert_eq!(app.selected(), Some(batch[1] as usize));
    assert_eq!(app.queue[..9], batch[1..]);
    assert_eq!(app.batch_remaining(), 9);
    // The keys that follow work down the batch and end it: no row below it
    // is labelled.
    for n in 1..10 {
        assert_eq!(app.selected(), Some(batch[n] as usize), "the cursor walks down the batch");
        app.handle(Action::Accept);
    }
    assert_eq!(app.outbox, vec![Job::Retrain { strategy: Strategy::Margin }]);
    assert_labelled_exactly(&app, &batch);
}

/// `u` right after a batch's last label, once the next batch has begun:
/// the row comes first in the new batch (whose last row goes back to the
/// queue), the cursor on it; it is not left wherever the new ranking put
/// it, at the bottom among the model's surest, with the cursor there.
#[test]
fn undo_across_a_batch_end_puts_the_row_first_in_the_new_batch() {
    let d = tempfile::tempdir().unwrap();
    let mut app = app_with_model(d.path(), 150, false);
    let first = accept_a_batch(&mut app);
    retrain(&mut app);
    assert_eq!(app.batch_done, 0);
    let second: Vec<u32> = app.queue[..10].to_vec();
    assert!(second.iter().all(|r| !first.contains(r)));
    // (The person read the new batch's top row first: `u` too waits that moment.)
    app.changed_at = None;
    app.handle(Action::Undo);
    let back = first[9];
    assert_eq!(app.selected(), Some(back as usize), "the cursor is on the row that came back");
    assert_eq!(app.queue[0], back);
    assert_eq!(app.queue[1..10], second[..9], "the batch holds it and the first nine of the new batch");
    assert_eq!((app.batch_done, app.batch_remaining()), (0, 10));
    // Deciding it counts in this batch, and the keys go on down the batch.
    app.changed_at = None;
    app.handle(Action::Accept);
    assert_eq!(app.selected(), Some(second[0] as usize));
    assert_eq!(app.batch_done, 1);
    // A reopening finds the same batch.
    app.remember_position();
    drop(app);
    let app = App::load(Session::open(d.path(), "s").unwrap()).unwrap();
    assert_eq!(app.queue[..9], second[..9]);
    assert_eq!((app.batch_done, app.batch_remaining()), (1, 9));
}

/// The same when the `u` comes before the new ranking does (a quick undo
/// of a slip, a retrain behind a fine-tune): the ranking that lands keeps
/// the row at the head of its batch. Two undos bring back two rows, in
/// their order; a batch of one grows rather than let a row brought back go.
#[test]
fn undo_across_a_batch_end_holds_under_the_ranking_that_lands_after_it() {
    let d = tempfile::tempdir().unwrap();
    let mut app = app_with_model(d.path(), 150, false);
    let first = accept_a_batch(&mut app);
    app.changed_at = None;
    app.handle(Action::Undo);
    app.handle(Action::Undo);
    assert_eq!(app.queue[..2], [first[8], first[9]]);
    retrain(&mut app);
    assert_eq!(app.queue[..2], [first[8], first[9]], "the ranking that landed kept them first");
    assert_eq!(app.selected(), Some(first[8] as usize));
    assert_eq!((app.batch_done, app.batch_remaining()), (0, 10));
    assert!(app.queue[2..10].iter().all(|r| !first.contains(r)));

    // A batch of one: two undos across its end bring back both rows.
    let e = tempfile::tempdir().unwrap();
    let mut app = app_with_model_in(session_with(e.path(), 60, false, &["--batch", "1"]));
    assert_eq!(app.batch_size, 1);
    let a = app.selected().unwrap() as u32;
    app.handle(Action::Accept);
    retrain(&mut app);
    app.changed_at = None;
    let b = app.selected().unwrap() as u32;
    app.handle(Action::Accept);
    retrain(&mut app);
    app.changed_at = None;
    app.handle(Action::Undo);
    app.handle(Action::Undo);
    assert!(app.labels[a as usize].is_none() && app.labels[b as usize].is_none());
    assert_eq!(app.queue[..2], [a, b], "both held, in their order");
    assert_eq!(app.reserved, [a, b], "the batch grew to hold both");
    assert_eq!(app.selected(), Some(a as usize));
    // The batch counts both: marked on screen, and it ends after both.
    assert_eq!((app.batch_done, app.batch_remaining(), app.batch_total()), (0, 2, 2));
    assert!(screen(&mut app, 80, 24).contains("batch 0/2"));
    // A reopening finds the grown batch whole.
    app.remember_position();
    drop(app);
    let mut app = App::load(Session::open(e.path(), "s").unwrap()).unwrap();
    assert_eq!(app.reserved, [a, b], "both still held after reopening");
    assert_eq!(app.queue[..2], [a, b]);
    assert_eq!(app.selected(), Some(a as usize));
    assert_eq!((app.batch_done, app.batch_remaining()), (0, 2));
    app.changed_at = None;
    app.handle(Action::Accept);
    assert!(app.outbox.is_empty(), "the batch is not over after one of its two rows");
    assert_eq!(app.selected(), Some(b as usize));
    assert_eq!(app.reserved, [b]);
    app.changed_at = None;
    app.handle(Action::Accept);
    assert!(!app.outbox.is_empty(), "over after both: a retrain is asked for");
    assert_eq!((app.batch_done, app.batch_total()), (0, 1));
}

/// Typed ahead right after a batch's last label (`/hum`, to pick HUM for a
/// row not read yet): the `/` waits its moment, and so do the letters that
/// follow it, which would otherwise undo the label just given (`u`) and
/// change the session's mode for everyone (`m`). Moving still works.
#[test]
fn keys_typed_ahead_of_a_new_batch_do_nothing_but_move() {
    let d = tempfile::tempdir().unwrap();
    let mut app = app_with_model(d.path(), 150, false);
    for _ in 0..10 {
        app.handle(Action::Accept);
    }
    assert!(app.settling(), "the next batch's top row came by itself");
    let mode = app.mode;
    for a in [Action::OpenPicker, Action::Undo, Action::CycleMode, Action::CycleStrategy, Action::Skip, Action::Export] {
        app.handle(a.clone());
        assert_eq!(app.message.as_deref(), Some("the row under the cursor just came or changed: read it, then press again"), "{a:?}");
    }
    assert_eq!(app.session.labels().unwrap().len(), 10, "no label undone");
    assert_eq!(app.mode, mode);
    assert_eq!(app.overlay, labelrest::ui::app::Overlay::None);
    assert!(!d.path().join("s").join("s-labels.csv").exists());
    let at = app.cursor[0];
    app.handle(Action::Down);
    assert_eq!(app.cursor[0], at + 1, "moving works meanwhile");
    // The moment over, a key that comes in the same burst of typing as a
    // refused one is refused too (`/card`'s `a` would accept); once the
    // typing paused, keys act.
    app.changed_at = std::time::Instant::now().checked_sub(labelrest::ui::app::SETTLE * 2);
    app.refused_at = Some(std::time::Instant::now());
    app.handle(Action::Accept);
    assert_eq!(app.session.labels().unwrap().len(), 10, "the burst's key did nothing");
    app.refused_at = std::time::Instant::now().checked_sub(labelrest::ui::app::BURST * 2);
    app.handle(Action::Accept);
    assert_eq!(app.session.labels().unwrap().len(), 11);
    // Under the label picker, the row pane shows the row the picker labels,
    // also when a new ranking moved the cursor behind it.
    let row = app.selected().unwrap();
    app.changed_at = None;
    app.handle(Action::OpenPicker);
    assert!(matches!(app.overlay, labelrest::ui::app::Overlay::Picker(_)));
    app.cursor[0] += 1;
    assert_ne!(app.selected(), Some(row));
    let s = screen(&mut app, 80, 24);
    assert!(s.contains(&format!("Row {} ", app.row_ids[row])), "{s}");
}

/// `u` in the labelled view, for a label given in the queue: the row,
/// unlabelled again, is shown in the queue with the cursor on it, not left
/// out of sight.
#[test]
fn undo_from_the_labelled_view_shows_the_row_in_the_queue() {
    let d = tempfile::tempdir().unwrap();
    let mut app = app_with_model(d.path(), 60, false);
    let row = app.selected().unwrap();
    app.handle(Action::Accept);
    app.handle(Action::NextView);
    assert_eq!(app.view, View::Labelled);
    app.handle(Action::Undo);
    assert_eq!(app.view, View::Queue);
    assert_eq!(app.selected(), Some(row));
    assert!(app.labels[row].is_none());
}

/// Reopened, the workstation holds the batch the person left, what is left
/// of it, even where a new ranking was stored since (a fine-tune swapped in
/// after the last batch, a retrain elsewhere).
#[test]
fn reopening_holds_the_batch_left_even_under_a_new_ranking() {
    let d = tempfile::tempdir().unwrap();
    let mut app = app_with_model(d.path(), 150, false);
    let batch: Vec<u32> = app.queue[..10].to_vec();
    for _ in 0..3 {
        app.handle(Action::Accept);
    }
    app.handle(Action::Down);
    let left_on = app.selected().unwrap();
    app.remember_position();
    drop(app);
    // A new ranking meanwhile, whose top is not what is left of the batch.
    let s = Session::open(d.path(), "s").unwrap();
    let u = worker::retrain_headless(&s, &mut |_, _, _| {}).unwrap();
    let top: Vec<u32> = u.ranking.iter().copied().filter(|i| !batch[..3].contains(i)).take(7).collect();
    assert_ne!(top, batch[3..], "the new ranking puts other rows first");
    let mut app = App::load(s).unwrap();
    assert_eq!(app.queue[..7], batch[3..]);
    assert_eq!((app.batch_done, app.batch_remaining()), (3, 7));
    assert_eq!(app.selected(), Some(left_on), "back on the row left");
    // An undo after the restart puts the row back in its place in the batch.
    app.handle(Action::Undo);
    assert_eq!(app.queue[..8], batch[2..]);
    assert_eq!(app.selected(), Some(batch[2] as usize));
}

/// A row of the batch skipped: the next row of the queue takes its place in
/// the batch, and a reopening finds the same batch (not the skipped row
/// back in it) with the skipped row still at the end of the queue.
#[test]
fn a_skip_keeps_its_place_across_a_reopening() {
    let d = tempfile::tempdir().unwrap();
    let mut app = app_with_model(d.path(), 150, false);
    app.handle(Action::Accept);
    app.handle(Action::Down);
    let skipped = app.selected().unwrap();
    app.handle(Action::Skip);
    assert_eq!(*app.queue.last().unwrap() as usize, skipped);
    let batch: Vec<u32> = app.queue[..app.batch_remaining()].to_vec();
    assert_eq!(batch.len(), 9);
    assert!(!batch.contains(&(skipped as u32)));
    app.handle(Action::Down);
    let left_on = app.selected().unwrap();
    app.remember_position();
    drop(app);
    let mut app = App::load(Session::open(d.path(), "s").unwrap()).unwrap();
    assert_eq!((app.batch_done, app.batch_remaining()), (1, 9));
    assert_eq!(app.queue[..9], batch[..], "the batch as it was left, the row that took the skipped one's place in it");
    assert_eq!(*app.queue.last().unwrap() as usize, skipped, "still skipped");
    assert_eq!(app.selected(), Some(left_on));
    // Deciding the skipped row (from the list of all rows) ends its skip.
    app.handle(Action::NextView);
    app.handle(Action::NextView);
    let pos = app.all_list.iter().position(|&r| r as usize == skipped).unwrap();
    for _ in 0..pos {
        app.handle(Action::Down);
    }
    assert_eq!(app.selected(), Some(skipped));
    app.handle(Action::Accept);
    drop(app);
    let app = App::load(Session::open(d.path(), "s").unwrap()).unwrap();
    assert!(!app.queue.contains(&(skipped as u32)) && app.skipped.is_empty());
}

/// The batch's last row decided while rows of it wait above: the cursor
/// goes back to them, and the keys that follow never label a row below the
/// batch.
#[test]
fn deciding_the_last_row_of_the_batch_goes_back_to_its_first() {
    let d = tempfile::tempdir().unwrap();
    let mut app = app_with_model(d.path(), 150, false);
    let batch: Vec<u32> = app.queue[..10].to_vec();
    for _ in 0..9 {
        app.handle(Action::Down);
    }
    assert_eq!(app.selected(), Some(batch[9] as usize));
    app.handle(Action::Accept);
    assert_eq!(app.selected(), Some(batch[0] as usize));
    for _ in 0..9 {
        app.handle(Action::Accept);
    }
    assert_labelled_exactly(&app, &batch);
    assert_eq!(app.outbox, vec![Job::Retrain { strategy: Strategy::Margin }]);
}

#[test]
fn pick_skip_undo_relabel_describe_export() {
    let d = tempfile::tempdir().unwrap();
    let mut app = app_with_model(d.path(), 100, true);
    // Skip sends the row to the end of the queue.
    let first = app.selected().unwrap();
    app.handle(Action::Skip);
    assert_eq!(*app.queue.last().unwrap() as usize, first);
    assert_ne!(app.selected(), Some(first));
    // Pick the third suggestion.
    let row = app.selected().unwrap();
    let third = app.suggestions(row)[2].0;
    app.handle(Action::Pick(3));
    assert_eq!(app.session.labels().unwrap()[0].label, third);
    // The picker: type, move, Enter.
    let row2 = app.selected().unwrap();
    app.handle(Action::OpenPicker);
    assert!(matches!(app.overlay, Overlay::Picker(_)));
    for c in "lost or stolen".chars() {
        app.handle(Action::Input(c));
    }
    app.handle(Action::Confirm);
    let lost = app.label_names.iter().position(|n| n == "lost_or_stolen_card").unwrap() as u32;
    let labels = app.session.labels().unwrap();
    assert_eq!(labels.last().unwrap().label, lost);
    assert_eq!(labels.last().unwrap().row_id, app.row_ids[row2]);
    // Undo twice: both rows come back to the queue, the store is empty.
    app.handle(Action::Undo);
    assert_eq!(app.selected(), Some(row2));
    app.handle(Action::Undo);
    assert!(app.session.labels().unwrap().is_empty());
    assert_eq!(app.n_labelled, 0);
    assert!(app.queue.contains(&(row as u32)) && app.queue.contains(&(row2 as u32)));
    app.handle(Action::Undo);
    assert_eq!(app.message.as_deref(), Some("nothing to undo"));
    // Label, then relabel from the labelled view.
    app.handle(Action::Accept);
    app.handle(Action::NextView);
    assert_eq!(app.view, View::Labelled);
    let r = app.selected().unwrap();
    let before = app.labels[r].unwrap().0;
    app.handle(Action::Pick(2));
    let after = app.session.labels().unwrap()[0].label;
    assert_ne!(before, after);
    assert_eq!(app.session.labels().unwrap().len(), 1);
    // All-rows view: filter by a label and sort by confidence.
    app.handle(Action::NextView);
    assert_eq!(app.view, View::All);
    assert_eq!(app.all_list.len(), 100);
    app.handle(Action::SortConfidence);
    let c: Vec<f32> =
        app.all_list.iter().filter(|&&i| app.labels[i as usize].is_none()).map(|&i| app.prediction(i as usize).unwrap().1).collect();
    assert!(c.windows(2).all(|w| w[0] <= w[1]), "least sure first");
    app.handle(Action::Filter);
    app.handle(Action::Confirm); // the first label
    assert!(app.all_list.iter().all(|&i| app.shown_label(i as usize).unwrap().0 == 0));
    app.handle(Action::Filter);
    assert_eq!(app.all_filter, None);
    // Describe a label from the picker: saved, and a retrain is asked for.
    app.handle(Action::OpenPicker);
    app.handle(Action::EditDescription);
    assert!(matches!(app.overlay, Overlay::Describe { .. }));
    for c in " money".chars() {
        app.handle(Action::Input(c));
    }
    app.handle(Action::Confirm);
    assert!(app.outbox.contains(&Job::Retrain { strategy: Strategy::Margin }));
    assert!(app.session.label_set().unwrap().iter().any(|l| l.description.as_deref().map(|d| d.ends_with("money")).unwrap_or(false)));
    // Saved, the picker it was asked from is back: the label is still to pick.
    assert!(matches!(app.overlay, Overlay::Picker(_)), "{:?}", app.overlay);
    // Esc in a description leaves it as it was and goes back to the picker, its filter kept.
    app.handle(Action::Input('c'));
    let filtered = app.overlay.clone();
    app.handle(Action::EditDescription);
    app.handle(Action::Input('x'));
    app.handle(Action::Cancel);
    assert_eq!(app.overlay, filtered, "the picker as it was");
    assert!(!app.session.label_set().unwrap().iter().any(|l| l.description.as_deref().is_some_and(|d| d.ends_with('x'))));
    app.handle(Action::Cancel);
    assert_eq!(app.overlay, Overlay::None);
    // Export.
    app.export_path = d.path().join("out.csv");
    app.handle(Action::Export);
    let out = std::fs::read_to_string(d.path().join("out.csv")).unwrap();
    assert_eq!(out.lines().count(), 101);
    assert!(out.contains(",person,"));
    // Strategy cycles and is saved.
    app.handle(Action::CycleStrategy);
    assert_eq!(app.session.settings().unwrap().strategy, labelrest::learn::Strategy::Entropy);
    app.handle(Action::Quit);
    assert!(app.quit);
}

#[test]
fn worker_coalesces_and_reports() {
    let d = tempfile::tempdir().unwrap();
    let s = session(d.path(), 80, true);
    let (tx, rx) = std::sync::mpsc::channel();
    let mut w = labelrest::worker::Worker::start(&s, tx).unwrap();
    // Wait for the first view (zero-shot).
    let mut saw_progress = false;
    loop {
        match rx.recv_timeout(std::time::Duration::from_secs(120)).unwrap() {
            worker::Event::Progress { stage, .. } => saw_progress |= stage == "embedding",
            worker::Event::Update(u) => {
                assert_eq!(u.n_labels, 0);
                break;
            }
            worker::Event::Error(e) => panic!("{e}"),
            _ => {}
        }
    }
    assert!(saw_progress);
    let before = s.iterations::<serde_json::Value>().unwrap().len();
    // Held, as behind a long job: six requests, a new label among them.
    {
        let _hold = w.hold();
        for (n, st) in
            [Strategy::Entropy, Strategy::Random, Strategy::Margin, Strategy::Entropy, Strategy::Random, Strategy::LeastConfidence]
                .into_iter()
                .enumerate()
        {
            if n == 2 {
                let first = s.rows().unwrap()[0].id;
                s.add_label(first, 0, 1, None).unwrap();
            }
            w.request(Job::Retrain { strategy: st });
        }
    }
    // One job runs: the newest request.
    let u = loop {
        match rx.recv_timeout(std::time::Duration::from_secs(120)).unwrap() {
            worker::Event::Update(u) => break u,
            worker::Event::Error(e) => panic!("{e}"),
            _ => {}
        }
    };
    assert_eq!(u.record.strategy, "least-confidence", "the newest request replaced the others");
    assert!(u.trained);
    // Ask once more with nothing new: ranked again, nothing recorded.
    w.request(Job::Retrain { strategy: Strategy::Margin });
    let again = loop {
        if let worker::Event::Update(u) = rx.recv_timeout(std::time::Duration::from_secs(120)).unwrap() {
            break u;
        }
    };
    assert!(!again.trained);
    w.shutdown();
    assert_eq!(s.iterations::<serde_json::Value>().unwrap().len(), before + 1, "one iteration for six requests");
}

/// The process ended after a whole batch was labelled and before its
/// retrain (a crash, a dropped SSH connection): opening the session again
/// learns from that batch at once, not after the next one. Fewer labels
/// than a batch do not retrain (the person is in the middle of one).
#[test]
fn a_batch_labelled_before_a_crash_is_learnt_on_opening() {
    let d = tempfile::tempdir().unwrap();
    let s = session(d.path(), 80, true);
    worker::retrain_headless(&s, &mut |_, _, _| {}).unwrap();
    let iterations = |s: &Session| s.iterations::<serde_json::Value>().unwrap().len();
    let start = iterations(&s);
    let rows = s.rows().unwrap();
    let gold: Vec<u32> = (0..10).map(|i| (i % 3) as u32).collect();
    // Part of a batch: the saved model is shown as it is.
    for (r, &g) in rows.iter().zip(&gold).take(4) {
        s.add_label(r.id, g, 1, None).unwrap();
    }
    let first_update = |s: &Session| {
        let (tx, rx) = std::sync::mpsc::channel();
        let w = labelrest::worker::Worker::start(s, tx).unwrap();
        let mut notices = Vec::new();
        let u = loop {
            match rx.recv_timeout(std::time::Duration::from_secs(120)).unwrap() {
                worker::Event::Update(u) => break u,
                worker::Event::Error(e) => panic!("{e}"),
                worker::Event::Notice(n) => notices.push(n),
                _ => {}
            }
        };
        (w, rx, u, notices)
    };
    let said = |notices: &[String]| notices.iter().any(|n| n.contains("learning from them now"));
    let (mut w, _rx, u, notices) = first_update(&s);
    assert!(!u.trained);
    assert_eq!(u.n_labels, 4);
    assert!(!said(&notices), "{notices:?}");
    w.shutdown();
    assert_eq!(iterations(&s), start, "no retrain in the middle of a batch");
    // The rest of the batch, then the process ends before its retrain.
    for (r, &g) in rows.iter().zip(&gold).skip(4) {
        s.add_label(r.id, g, 1, None).unwrap();
    }
    let (mut w, rx, u, notices) = first_update(&s);
    assert!(!u.trained, "the saved model shows first");
    assert!(said(&notices), "the person is told: {notices:?}");
    let u = loop {
        match rx.recv_timeout(std::time::Duration::from_secs(120)).unwrap() {
            worker::Event::Update(u) => break u,
            worker::Event::Error(e) => panic!("{e}"),
            _ => {}
        }
    };
    assert!(u.trained, "then the model learnt from the batch, with no key pressed");
    assert_eq!(u.n_labels, 10);
    w.shutdown();
    assert_eq!(iterations(&s), start + 1);
}

#[test]
fn worker_picks_up_a_new_label_description() {
    let d = tempfile::tempdir().unwrap();
    let s = session(d.path(), 60, false);
    let (tx, rx) = std::sync::mpsc::channel();
    let mut w = labelrest::worker::Worker::start(&s, tx).unwrap();
    let next_update = || loop {
        match rx.recv_timeout(std::time::Duration::from_secs(120)).unwrap() {
            worker::Event::Update(u) => return u,
            worker::Event::Error(e) => panic!("{e}"),
            _ => {}
        }
    };
    let before = next_update();
    // Describe one label with the words of row 0: its score for row 0 must rise.
    let text = s.rows().unwrap()[0].text.clone();
    let names: Vec<String> = s.label_set().unwrap().into_iter().map(|l| l.name).collect();
    let target = names.iter().position(|n| n == "cash_withdrawal_charge").unwrap() as u32;
    let k = names.len();
    s.set_label_description(target, Some(&text)).unwrap();
    w.request(Job::Retrain { strategy: Strategy::Margin });
    let after = next_update();
    let p0 = before.scores.probs[target as usize];
    let p1 = after.scores.probs[target as usize];
    assert!(p1 > p0 + 0.05, "description used: {p0} -> {p1} (k={k})");
    w.shutdown();
}

#[test]
fn labelled_and_all_views() {
    let d = tempfile::tempdir().unwrap();
    let mut app = app_with_model(d.path(), 120, true);
    for _ in 0..3 {
        app.handle(Action::Accept);
    }
    app.handle(Action::Pick(2));
    app.handle(Action::NextView);
    insta::assert_snapshot!("labelled_80x24", screen(&mut app, 80, 24));
    app.handle(Action::NextView);
    app.handle(Action::SortConfidence);
    insta::assert_snapshot!("all_rows_sorted_80x24", screen(&mut app, 80, 24));
}

/// A retrain that fails (here: the model cannot be saved, as on a full
/// disk) shows as an error, keeps every label, records no iteration, and the
/// last good model stays in use.
#[test]
fn a_failed_retrain_keeps_labels_and_the_last_model() {
    let d = tempfile::tempdir().unwrap();
    let s = session(d.path(), 60, true);
    worker::retrain_headless(&s, &mut |_, _, _| {}).unwrap();
    let first = s.rows().unwrap()[0].id;
    let (tx, rx) = std::sync::mpsc::channel();
    let mut w = labelrest::worker::Worker::start(&s, tx).unwrap();
    let mut app = App::load(s.reopen_shared().unwrap()).unwrap();
    loop {
        let ev = rx.recv_timeout(std::time::Duration::from_secs(120)).unwrap();
        let is_update = matches!(ev, worker::Event::Update(_));
        app.on_event(ev);
        if is_update {
            break;
        }
    }
    let before = app.update.clone().unwrap();
    let iterations = s.iterations::<serde_json::Value>().unwrap().len();
    // The saved head's place becomes a folder: saving the next one fails.
    let head = std::fs::read_dir(d.path().join("s"))
        .unwrap()
        .filter_map(|e| e.ok())
        .find(|e| e.file_name().to_string_lossy().starts_with("head-"))
        .unwrap()
        .path();
    std::fs::remove_file(&head).unwrap();
    std::fs::create_dir_all(head.join("in-the-way")).unwrap();
    s.add_label(first, 0, app.iteration, None).unwrap();
    s.add_label(first + 1, 1, app.iteration, None).unwrap();
    w.request(Job::Retrain { strategy: Strategy::Margin });
    let err = loop {
        match rx.recv_timeout(std::time::Duration::from_secs(120)).unwrap() {
            worker::Event::Error(e) => break e,
            worker::Event::Update(_) => panic!("a model that could not be saved must not be used"),
            _ => {}
        }
    };
    assert!(err.contains("retrain failed") && err.contains("cannot save the model"), "{err}");
    assert_eq!(s.iterations::<serde_json::Value>().unwrap().len(), iterations, "no half-recorded iteration");
    app.on_event(worker::Event::Error(err));
    assert!(Arc::ptr_eq(app.update.as_ref().unwrap(), &before), "the last good model stays");
    assert!(screen(&mut app, 100, 30).contains("error: retrain failed"));
    assert_eq!(s.labels().unwrap().len(), 2);
    w.shutdown();
}

/// A digit takes only a suggestion that is on screen: at 80x24 the detail
/// pane shows a few of the nine, and a digit past them labels nothing.
#[test]
fn digits_take_only_suggestions_on_screen() {
    let d = tempfile::tempdir().unwrap();
    let mut app = app_with_model(d.path(), 120, true);
    let text = screen(&mut app, 80, 24);
    let row = app.selected().unwrap();
    let shown = app.shown_suggestions(row);
    assert!((1..9).contains(&shown), "80 columns show some but not all nine: {shown}");
    // Every suggestion counted as shown is on the screen, with its digit.
    for s in app.suggestion_layout(row).iter().flatten() {
        assert!(text.contains(&format!("{} {} {}", s.digit, s.name, s.prob)), "suggestion {} not drawn:\n{text}", s.digit);
    }
    // The next digit has nothing on screen behind it: no label, a message.
    app.handle(Action::Pick(shown + 1));
    assert!(app.session.labels().unwrap().is_empty(), "a suggestion that was not shown was taken");
    let m = app.message.clone().unwrap();
    assert!(m.contains(&format!("no suggestion {}", shown + 1)) && m.contains("on screen"), "{m}");
    assert_eq!(app.selected(), Some(row), "the cursor stays");
    // The last digit on screen works.
    let want = app.suggestions(row)[shown - 1].0;
    app.handle(Action::Pick(shown));
    let labels = app.session.labels().unwrap();
    assert_eq!((labels.len(), labels[0].label, labels[0].row_id), (1, want, app.row_ids[row]));
    // A terminal too small for the detail pane shows no suggestion: digits refuse.
    screen(&mut app, 80, 12);
    let r2 = app.selected().unwrap();
    assert_eq!(app.shown_suggestions(r2), 0);
    app.handle(Action::Pick(1));
    assert_eq!(app.session.labels().unwrap().len(), 1);
    // Wide and tall: more of them.
    screen(&mut app, 200, 50);
    assert!(app.shown_suggestions(r2) > shown);
}

/// A refresh keeps the cursor on the row it was on; when the row under the
/// cursor changes by itself (the answer to a finished batch), a key pressed
/// a moment later labels nothing; the picker labels the row it was opened on.
#[test]
fn refreshes_never_put_a_label_on_an_unseen_row() {
    let d = tempfile::tempdir().unwrap();
    let mut app = app_with_model(d.path(), 150, true);
    screen(&mut app, 80, 24);
    for _ in 0..4 {
        app.handle(Action::Down);
    }
    let row = app.selected().unwrap();
    let on_screen = |app: &App| app.suggestions(row).into_iter().take(app.shown_suggestions(row).max(1)).map(|s| s.0).collect::<Vec<_>>();
    let seen = on_screen(&app);
    // A description edit retrains: the cursor stays on the same row.
    app.handle(Action::OpenPicker);
    app.handle(Action::EditDescription);
    for c in " the money".chars() {
        app.handle(Action::Input(c));
    }
    app.handle(Action::Confirm);
    // (Saved, the picker is back: the person closes it.)
    app.handle(Action::Cancel);
    retrain(&mut app);
    assert_eq!(app.selected(), Some(row), "the cursor followed its row");
    // It waits only if what the row suggests changed.
    assert_eq!(app.settling(), on_screen(&app) != seen);
    // A refresh from elsewhere (a fine-tune swap-in) also keeps it.
    app.outbox.push(Job::Retrain { strategy: Strategy::Entropy });
    retrain(&mut app);
    assert_eq!(app.selected(), Some(row));
    // Finish a batch: the refresh that answers it moves to the new batch's top.
    // (The person waited out any change to the row's suggestions.)
    app.changed_at = None;
    app.handle(Action::Top);
    for _ in 0..10 {
        app.handle(Action::Accept);
    }
    app.changed_at = None;
    let before = app.selected().unwrap();
    // The person opens the picker on this row; the refresh lands meanwhile.
    app.handle(Action::OpenPicker);
    retrain(&mut app);
    let after = app.selected().unwrap();
    if after != before {
        assert!(app.settling(), "a row that changed by itself must settle first");
    }
    // The picker labels the row it was opened on.
    app.handle(Action::Input('c'));
    app.handle(Action::Confirm);
    let last = app.session.labels().unwrap().last().cloned().unwrap();
    assert_eq!(last.row_id, app.row_ids[before]);
    // Now force the case: the row under the cursor changes by itself.
    let n = app.session.labels().unwrap().len();
    app.handle(Action::Top);
    let top = app.selected().unwrap();
    app.changed_at = Some(std::time::Instant::now());
    app.handle(Action::Accept);
    app.handle(Action::Pick(1));
    assert_eq!(app.session.labels().unwrap().len(), n, "no label while the row settles");
    assert!(app.message.as_deref().unwrap().contains("read it, then press again"));
    // After the moment has passed, the same key works on the row on screen.
    app.changed_at = std::time::Instant::now().checked_sub(labelrest::ui::app::SETTLE * 2);
    app.refused_at = None;
    app.handle(Action::Accept);
    let last = app.session.labels().unwrap().last().cloned().unwrap();
    assert_eq!(last.row_id, app.row_ids[top]);
}

/// The batch answer moves the cursor to the top only when it changes the row;
/// then the settle guard is on.
#[test]
fn the_new_batch_settles_before_a_key_acts() {
    let d = tempfile::tempdir().unwrap();
    let mut app = app_with_model(d.path(), 150, true);
    screen(&mut app, 80, 24);
    for _ in 0..10 {
        app.handle(Action::Accept);
    }
    // Read a row further down: the batch answer must not move the cursor.
    app.handle(Action::Down);
    app.handle(Action::Down);
    let row = app.selected().unwrap();
    retrain(&mut app);
    assert_eq!(app.selected(), Some(row), "the person moved: the cursor stays");
    // Another batch, this time without moving: the cursor goes to the top.
    app.handle(Action::Top);
    app.changed_at = None;
    for _ in 0..10 {
        app.handle(Action::Accept);
    }
    let before = app.selected().unwrap();
    retrain(&mut app);
    assert_eq!(app.cursor(), 0);
    if app.selected() != Some(before) {
        let n = app.session.labels().unwrap().len();
        app.handle(Action::Accept);
        assert_eq!(app.session.labels().unwrap().len(), n);
    }
}

/// The whole text: a key opens it (scrollable), and the detail pane grows
/// with the terminal.
#[test]
fn the_whole_text_is_readable() {
    let d = tempfile::tempdir().unwrap();
    let mut app = app_with_model(d.path(), 120, true);
    // Make the selected row's text long (the store is what the reader shows).
    let i = app.selected().unwrap();
    let long: String = (0..120).map(|n| format!("word{n}")).collect::<Vec<_>>().join(" ");
    set_text(&mut app, i, &long);
    let small = screen(&mut app, 80, 24);
    assert!(!small.contains("word119"), "the detail pane cuts it");
    app.handle(Action::Read);
    assert!(matches!(app.overlay, Overlay::Reader { .. }));
    let s = screen(&mut app, 80, 24);
    assert!(s.contains("word0 ") && s.contains("word60"), "{s}");
    // Scroll to the end.
    for _ in 0..20 {
        app.handle(Action::PageDown);
    }
    let s = screen(&mut app, 80, 24);
    assert!(s.contains("word119"), "{s}");
    app.handle(Action::Cancel);
    assert_eq!(app.overlay, Overlay::None);
    // A tall terminal gives the detail pane more lines of text.
    let lines = |s: &str| s.lines().filter(|l| l.contains("word")).count();
    assert!(lines(&screen(&mut app, 80, 50)) > lines(&screen(&mut app, 80, 24)));
}

/// Search over the texts in the all-rows view: the matches are counted and
/// each can be labelled with the usual keys.
#[test]
fn search_the_texts_and_label_a_match() {
    let d = tempfile::tempdir().unwrap();
    let mut app = app_with_model(d.path(), 150, true);
    screen(&mut app, 80, 24);
    app.handle(Action::Search);
    for c in "REFUND".chars() {
        app.handle(Action::Input(c));
    }
    app.handle(Action::Confirm);
    assert_eq!(app.view, View::All);
    let want = app.texts.iter().filter(|t| t.to_lowercase().contains("refund")).count();
    assert!(want > 0);
    assert_eq!(app.all_list.len(), want);
    assert!(app.message.as_deref().unwrap().starts_with(&format!("{want} rows hold 'REFUND'")), "{:?}", app.message);
    let s = screen(&mut app, 80, 24);
    assert!(s.contains("search 'REFUND'"), "{s}");
    // Label the first match.
    let row = app.selected().unwrap();
    app.handle(Action::Pick(1));
    assert_eq!(app.session.labels().unwrap().last().unwrap().row_id, app.row_ids[row]);
    // Again: cleared.
    app.handle(Action::Search);
    assert_eq!(app.all_list.len(), 150);
}

/// A paste is one event (bracketed paste): in the search it is typed, its
/// line break a space; at the table it is not applied at all, though an
/// `a`, a digit or a line break in it would each have labelled a row.
#[test]
fn a_paste_is_typed_into_a_field_and_never_labels() {
    let d = tempfile::tempdir().unwrap();
    let mut app = app_with_model(d.path(), 150, true);
    screen(&mut app, 80, 24);
    let before = app.session.labels().unwrap().len();
    let at = app.selected();
    app.paste("a1\naaaa 2\r\n");
    assert_eq!(app.session.labels().unwrap().len(), before, "a paste labelled a row");
    assert_eq!(app.selected(), at);
    assert_eq!(app.message.as_deref(), Some("pasted text not applied: keys act one at a time (11 characters)"));
    let s = screen(&mut app, 80, 24);
    assert!(s.contains("pasted text not applied"), "{s}");
    // Typed into the search.
    app.handle(Action::Search);
    app.paste("refund\nmy");
    app.handle(Action::Confirm);
    assert_eq!(app.view, View::All);
    assert!(app.message.as_deref().unwrap().contains("hold 'refund my'"), "{:?}", app.message);
    assert_eq!(app.session.labels().unwrap().len(), before);
}

/// A key for a row where the view has none says so, and does nothing.
#[test]
fn keys_on_an_empty_view_say_so() {
    let d = tempfile::tempdir().unwrap();
    let mut app = app_with_model(d.path(), 60, false);
    app.handle(Action::Search);
    for c in "zzqqxx".chars() {
        app.handle(Action::Input(c));
    }
    app.handle(Action::Confirm);
    assert_eq!((app.view, app.all_list.len()), (View::All, 0));
    for a in [Action::Accept, Action::Pick(1), Action::OpenPicker, Action::Read] {
        app.handle(a.clone());
        assert_eq!(app.message.as_deref(), Some("no row here: this view is empty"), "{a:?}");
    }
    // Every row labelled (seed labels): the queue is empty, and says so.
    let e = tempfile::tempdir().unwrap();
    let f = write(e.path(), "data.csv", demo_head(12).as_bytes());
    let o = labelrest(
        e.path(),
        &["new", "s", "--data", f.to_str().unwrap(), "--label-col", "label", "--labels-file", demo_labels(e.path()).to_str().unwrap()],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let mut app = App::load(Session::open(e.path(), "s").unwrap()).unwrap();
    assert!(app.queue.is_empty());
    for a in [Action::Accept, Action::Skip] {
        app.handle(a);
        assert_eq!(app.message.as_deref(), Some("the queue is empty: no row waits for a label from you (Tab: the other views)"));
    }
    assert_eq!(app.session.labels().unwrap().len(), 12);
}

/// An iteration is recorded only when what the model learns from changed:
/// a strategy change or a retrain with nothing new ranks again.
#[test]
fn no_duplicate_iterations() {
    let d = tempfile::tempdir().unwrap();
    let mut app = app_with_model(d.path(), 100, true);
    let n = |app: &App| app.session.iterations::<serde_json::Value>().unwrap().len();
    let before = n(&app);
    app.handle(Action::Retrain);
    retrain(&mut app);
    assert_eq!(n(&app), before, "nothing new: no iteration");
    assert_eq!(app.message.as_deref(), Some("nothing new to learn from: the model is up to date"));
    app.handle(Action::CycleStrategy);
    retrain(&mut app);
    assert_eq!(n(&app), before, "a new strategy ranks again");
    assert_eq!(app.history.len(), before);
    assert_eq!(app.cursor[0], 0, "the new strategy's ranking starts at its top");
    assert_eq!(app.message.as_deref(), Some("ranked by entropy: its first batch is at the top"));
    // (the row under the cursor changed: a moment before a key acts)
    app.changed_at = None;
    app.handle(Action::Accept);
    app.handle(Action::Retrain);
    retrain(&mut app);
    assert_eq!(n(&app), before + 1);
    assert_eq!(app.history.last().unwrap().reason, "labels");
    // (the new model may have changed the row's suggestions: a moment before a key acts)
    app.changed_at = None;
    // A description changes the prior: recorded, with its reason.
    app.handle(Action::OpenPicker);
    app.handle(Action::EditDescription);
    app.handle(Action::Input('x'));
    app.handle(Action::Confirm);
    retrain(&mut app);
    assert_eq!(n(&app), before + 2);
    assert_eq!(app.history.last().unwrap().reason, "descriptions");
}

/// 80 columns: the footer keeps help and quit in every view; the header
/// keeps the session name and says a fine-tune runs (never "idle" then).
#[test]
fn eighty_columns_keep_what_matters() {
    let d = tempfile::tempdir().unwrap();
    let mut app = app_with_model(d.path(), 100, true);
    for _ in 0..3 {
        let s = screen(&mut app, 80, 24);
        let footer = s.lines().last().unwrap().to_string();
        assert!(footer.contains("? help") && footer.contains("q quit"), "{:?}: {footer}", app.view);
        app.handle(Action::NextView);
    }
    app.finetune_running = true;
    app.finetune_status = Some("fine-tune 40/94 ~12s · loss 0.412, then re-embedding".into());
    let s = screen(&mut app, 80, 24);
    let header = s.lines().next().unwrap().to_string();
    assert!(header.contains(" s ") || header.contains(" s·") || header.contains("· s ·"), "the session name: {header}");
    // How far it is and how long is left, not only that it runs.
    assert!(header.contains("fine-tune 40/94 ~12s") && !header.contains("idle"), "{header}");
}

/// Hints show the keys in force: remapped accept shows in the footer and
/// the help; the messages name the keys in force too.
#[test]
fn hints_follow_a_remap() {
    let d = tempfile::tempdir().unwrap();
    let mut app = app_with_model(d.path(), 100, true);
    let p = d.path().join("keys.toml");
    std::fs::write(&p, "[keys]\naccept = [\"y\"]\npicker = [\"p\"]\nhelp = [\"h\"]\n").unwrap();
    app.keys = labelrest::ui::keys::KeyMap::load(Some(&p)).unwrap();
    let s = screen(&mut app, 100, 30);
    let footer = s.lines().last().unwrap().to_string();
    assert!(footer.contains("y accept") && !footer.contains("Enter accept"), "{footer}");
    assert!(footer.contains("p label") && footer.contains("h help"), "{footer}");
    app.handle(Action::ToggleHelp);
    let s = screen(&mut app, 100, 30);
    assert!(s.lines().any(|l| l.contains(" y ") && l.contains("accept the prediction")), "{s}");
    app.handle(Action::Cancel);
    app.handle(Action::Pick(9));
    assert!(app.message.as_deref().unwrap().contains("p picks a label"), "{:?}", app.message);
    insta::assert_snapshot!("remapped_footer_100x30", s);
}

/// The small wrongs: filter and sort say where they work; the empty
/// labelled view names the right key; a relabel is confirmed; the labelled
/// view shows the model's probability of the label given; a skip lasts
/// through a refresh; export goes next to the session, with its full path.
#[test]
fn small_wrongs() {
    let d = tempfile::tempdir().unwrap();
    let mut app = app_with_model(d.path(), 120, true);
    app.handle(Action::Filter);
    assert!(app.message.as_deref().unwrap().contains("all-rows view"), "{:?}", app.message);
    app.handle(Action::SortConfidence);
    assert!(app.message.as_deref().unwrap().contains("all-rows view"));
    app.handle(Action::NextView);
    let s = screen(&mut app, 80, 24);
    assert!(s.contains("no labels yet: the queue is Tab twice away"), "{s}");
    app.handle(Action::NextView);
    app.handle(Action::NextView);
    // Skip a row; a refresh keeps it at the end.
    let skipped = app.selected().unwrap();
    app.handle(Action::Skip);
    app.handle(Action::Accept);
    app.handle(Action::Retrain);
    retrain(&mut app);
    assert_eq!(*app.queue.last().unwrap() as usize, skipped, "still skipped after a refresh");
    // Relabel from the labelled view: confirmed; the probability is the label's.
    app.handle(Action::NextView);
    let r = app.selected().unwrap();
    let before = app.labels[r].unwrap().0;
    app.handle(Action::Pick(2));
    let m = app.message.clone().unwrap();
    if app.labels[r].unwrap().0 != before {
        assert!(m.starts_with(&format!("relabelled row {}", app.row_ids[r])), "{m}");
    }
    let l = app.labels[r].unwrap().0;
    let p = app.prob_of(r, l).unwrap();
    let s = screen(&mut app, 100, 30);
    assert!(s.contains(&format!("{p:>4.2}")), "the label's probability {p:.2} shown:\n{s}");
    // Export: beside the session, said with its absolute path.
    app.changed_at = None;
    app.handle(Action::Export);
    let m = app.message.clone().unwrap();
    let path = d.path().join("s").join("s-labels.csv");
    assert!(path.exists());
    assert!(m.contains(&std::fs::canonicalize(&path).unwrap().display().to_string()), "{m}");
}

/// Quitting never waits for long work: the worker checks its cancel flag
/// between batches, so a shutdown during the first embedding stops it
/// part-way (nothing is waited for to the end), and the session opens
/// again at once with its labels.
#[test]
fn quitting_stops_long_work_between_batches() {
    let d = tempfile::tempdir().unwrap();
    let s = session(d.path(), 2000, false);
    let first = s.rows().unwrap()[0].id;
    s.add_label(first, 0, 1, None).unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let mut w = labelrest::worker::Worker::start(&s, tx).unwrap();
    let total = loop {
        match rx.recv_timeout(std::time::Duration::from_secs(120)).unwrap() {
            worker::Event::Progress { stage, done, total } if stage == "embedding" && done > 0 => break total,
            worker::Event::Update(_) => panic!("the embedding finished before the test could quit"),
            worker::Event::Error(e) => panic!("{e}"),
            _ => {}
        }
    };
    w.shutdown();
    let mut last = 0;
    for ev in rx.try_iter() {
        match ev {
            worker::Event::Progress { stage, done, .. } if stage == "embedding" => last = last.max(done),
            worker::Event::Update(_) => panic!("cancelled work must not produce a model"),
            _ => {}
        }
    }
    assert!(last < total, "stopped part-way: {last} of {total}");
    drop(w);
    drop(s);
    let s = Session::open(d.path(), "s").unwrap();
    assert_eq!(s.labels().unwrap().len(), 1);
}

/// The review: a label planted wrong among correct ones is what a model
/// trained without it disputes first; the workstation lists it first in
/// review order, keeping it takes it off the list, and `labelrest review`
/// prints it.
#[test]
fn review_finds_a_planted_wrong_label() {
    let d = tempfile::tempdir().unwrap();
    let s = session(d.path(), 400, false);
    let rows = s.rows().unwrap();
    let mut by_class: std::collections::BTreeMap<u32, Vec<i64>> = Default::default();
    for r in &rows {
        by_class.entry(r.gold.unwrap()).or_default().push(r.id);
    }
    let mut classes: Vec<(u32, Vec<i64>)> = by_class.into_iter().collect();
    classes.sort_by_key(|c| std::cmp::Reverse(c.1.len()));
    let (a, b) = (classes[0].0, classes[1].0);
    let mut planted = None;
    for (c, ids) in classes.iter().take(4) {
        for &id in ids.iter().take(8) {
            // One row of the first class labelled as the second.
            let l = if *c == a && planted.is_none() {
                planted = Some(id);
                b
            } else {
                *c
            };
            s.add_label(id, l, 0, None).unwrap();
        }
    }
    let planted = planted.unwrap();
    worker::retrain_headless(&s, &mut |_, _, _| {}).unwrap();
    drop(s);
    let review = |d: &std::path::Path| {
        let o = labelrest(d, &["review", "s", "--top", "3"]);
        assert!(o.status.success(), "{}", stderr(&o));
        stdout(&o)
    };
    let out = review(d.path());
    let first = out.lines().nth(2).unwrap_or_default();
    assert!(first.trim_start().starts_with(&planted.to_string()), "{out}");
    let mut app = App::load(Session::open(d.path(), "s").unwrap()).unwrap();
    let suspects = &app.history.last().unwrap().suspects;
    assert!(!suspects.is_empty());
    assert_eq!(suspects[0].0, planted, "{suspects:?}");
    assert_eq!(suspects[0].2, a, "the model says the class it is");
    app.handle(Action::Review);
    assert_eq!(app.view, View::Labelled);
    let i = app.selected().unwrap();
    assert_eq!(app.row_ids[i], planted);
    let n = app.labelled_list.len();
    assert_eq!(n, 32, "every label is ranked, least likely first");
    // Only the labels the model puts another label above are marked disputed.
    let disputed = app.labelled_list.iter().filter(|&&i| app.dispute(i as usize).is_some()).count();
    assert!(disputed >= 1 && disputed < n, "{disputed} of {n}");
    let shown = screen(&mut app, 100, 30);
    assert!(shown.contains("Review (") && shown.contains("≠") && shown.contains("without it: "), "{shown}");
    assert!(shown.contains("keep"), "the footer says what Enter does here: {shown}");
    // A disputed row's probability is the held-out model's; the current
    // model's entropy beside it would mix two models, so none is shown.
    let row = shown.lines().find(|l| l.contains("≠ ") && !l.contains("without it")).expect("a disputed row");
    let words: Vec<&str> = row.split_whitespace().collect();
    let from = words.iter().position(|w| *w == "≠").expect("≠ then the label");
    let prob = from + words[from..].iter().position(|w| w.parse::<f32>().is_ok()).expect("the probability");
    assert_eq!(words.get(prob + 1), Some(&"-"), "{row}");
    // Keep it: off the list, the label unchanged.
    app.handle(Action::Accept);
    assert_eq!(app.labelled_list.len(), n - 1);
    assert_eq!(app.session.label_of(planted).unwrap().map(|l| l.0), Some(b));
    // Again: every label.
    app.handle(Action::Review);
    assert_eq!(app.labelled_list.len(), 32);
    drop(app);
    // Kept stays kept: not listed again, in the workstation or headless.
    let mut app = App::load(Session::open(d.path(), "s").unwrap()).unwrap();
    app.handle(Action::Review);
    assert!(app.labelled_list.iter().all(|&i| app.row_ids[i as usize] != planted));
    assert_eq!(app.labelled_list.len(), n - 1);
    drop(app);
    assert!(!review(d.path()).lines().skip(2).any(|l| l.trim_start().starts_with(&format!("{planted} "))));
}

#[test]
fn the_stopping_signal_measures_and_fires() {
    let d = tempfile::tempdir().unwrap();
    let mut app = app_with_model(d.path(), 150, true);
    // The zero-shot start has nothing to compare with.
    assert_eq!(app.history.last().unwrap().agreement, None);
    let before: std::collections::HashMap<i64, u32> = app.session.predictions().unwrap().into_iter().map(|(id, p)| (id, p.label)).collect();
    for _ in 0..10 {
        app.handle(Action::Accept);
    }
    retrain(&mut app);
    let rec = app.history.last().unwrap().clone();
    assert_eq!(rec.labels, 10);
    // The recorded agreement is Cohen's kappa between the two models' labels on the pool.
    let after = app.session.predictions().unwrap();
    let (a, b): (Vec<u32>, Vec<u32>) = app.row_ids.iter().filter_map(|id| Some((*before.get(id)?, after.get(id)?.label))).unzip();
    assert_eq!(a.len(), app.row_ids.len());
    let k = app.label_names.len();
    let want = labelrest::learn::stopping::kappa(&a, &b, k);
    assert!((rec.agreement.unwrap() - want).abs() < 1e-9, "{:?} vs {want}", rec.agreement);
    assert!(want < 1.0, "ten labels changed some of the zero-shot labels");
    let s = screen(&mut app, 80, 24);
    assert!(s.contains(&format!("κ {:.3}", want)), "{s}");
    assert!(!s.contains("may stop"), "{s}");
    // Three stable iterations from 30 labels on: the panel says so.
    for (i, labels) in [30, 40, 50].into_iter().enumerate() {
        let mut r = rec.clone();
        r.iteration = rec.iteration + 1 + i as i64;
        r.labels = labels;
        r.agreement = Some(0.995);
        app.history.push(r);
    }
    let s = screen(&mut app, 80, 24);
    assert!(s.contains("stable: may stop here"), "{s}");
    // One unstable iteration after: the signal goes away.
    let mut r = app.history.last().unwrap().clone();
    r.labels = 60;
    r.agreement = Some(0.9);
    app.history.push(r);
    assert!(!screen(&mut app, 80, 24).contains("may stop"));
}

#[test]
fn the_first_ranking_starts_at_its_top_and_labels_list_newest_first() {
    let d = tempfile::tempdir().unwrap();
    let s = session(d.path(), 120, false);
    let mut app = App::load(s).unwrap();
    // No model yet: file order.
    assert_eq!(app.selected(), Some(0));
    let u = worker::retrain_headless(&app.session.reopen_shared().unwrap(), &mut |_, _, _| {}).unwrap();
    app.apply_update(steady(u));
    assert_eq!(app.cursor[0], 0, "the cursor is at the top of the first ranking");
    assert_eq!(app.selected(), Some(app.ranking[0] as usize));
    assert!(app.message.as_deref().unwrap_or_default().contains("first ranking"), "{:?}", app.message);
    // Keys wait for the person to see the new row.
    app.handle(Action::Accept);
    assert_eq!(app.session.labels().unwrap().len(), 0);
    app.changed_at = None;
    let rows: Vec<usize> = app.queue[..3].iter().map(|&i| i as usize).collect();
    for _ in 0..3 {
        app.handle(Action::Accept);
    }
    app.handle(Action::NextView);
    assert_eq!(app.view, View::Labelled);
    let listed: Vec<usize> = app.labelled_list.iter().map(|&i| i as usize).collect();
    assert_eq!(listed, vec![rows[2], rows[1], rows[0]], "newest first");
    assert_eq!(app.selected(), Some(rows[2]), "the cursor on the newest");
    // Relabelling the oldest makes it the newest.
    app.cursor[1] = 2;
    app.handle(Action::Pick(1));
    assert_eq!(app.labelled_list[0] as usize, rows[0]);
    // Undo puts it back where its earlier label was.
    app.handle(Action::Undo);
    let listed: Vec<usize> = app.labelled_list.iter().map(|&i| i as usize).collect();
    assert_eq!(listed, vec![rows[2], rows[1], rows[0]]);
}

/// Labels given while the retrain for the finished batch is on its way do
/// not keep the cursor on its row when that row ranks deep in the new
/// ranking: the new batch starts at the top (and keys wait a moment). A
/// restart puts the cursor back on the queue row it was left on.
#[test]
fn the_new_batch_starts_at_the_top_and_a_restart_keeps_the_place() {
    let d = tempfile::tempdir().unwrap();
    let mut app = app_with_model(d.path(), 150, true);
    for _ in 0..10 {
        app.handle(Action::Accept);
    }
    // The next batch's first row came by itself: a key at once is refused.
    app.handle(Action::Accept);
    assert_eq!(app.session.labels().unwrap().len(), 10, "the next batch's first row waits its moment");
    assert_eq!(app.cursor[0], 0, "the next batch starts at its top");
    app.changed_at = None;
    app.handle(Action::Accept);
    assert_eq!(app.session.labels().unwrap().len(), 11, "the eleventh decision counts towards the next batch");
    retrain(&mut app);
    assert_eq!(app.cursor[0], 0, "the new batch starts at its top");
    assert_eq!(app.selected(), Some(app.queue[0] as usize));
    // Leave and come back: the batch is made again from the stored ranking
    // (this one was held from the ranking before the retrain: the eleventh
    // decision had started it), and the cursor is in it.
    app.changed_at = None;
    app.handle(Action::Down);
    app.handle(Action::Down);
    app.remember_position();
    drop(app);
    let mut app = App::load(Session::open(d.path(), "s").unwrap()).unwrap();
    assert!(app.reserved.contains(&(app.selected().unwrap() as u32)), "on a row of the batch");
    // Keep a place in the batch, leave, come back: the same place.
    app.changed_at = None;
    app.handle(Action::Down);
    app.handle(Action::Down);
    let row = app.selected().unwrap();
    app.remember_position();
    drop(app);
    let mut app = App::load(Session::open(d.path(), "s").unwrap()).unwrap();
    assert_eq!(app.selected(), Some(row));
    // A place outside the batch (browsing on, or a row a new ranking moved
    // away while the process was gone): back at the top of the batch.
    app.changed_at = None;
    for _ in 0..15 {
        app.handle(Action::Down);
    }
    let far = app.selected().unwrap();
    assert!(!app.reserved.contains(&(far as u32)), "below the batch");
    app.remember_position();
    drop(app);
    let app = App::load(Session::open(d.path(), "s").unwrap()).unwrap();
    assert_eq!(app.cursor[0], 0, "the batch's top");
    assert!(app.reserved.contains(&(app.selected().unwrap() as u32)));
}

/// A window made smaller scrolls the queue to keep the cursor in sight;
/// made larger again, it shows the queue from its first row.
#[test]
fn a_window_grown_again_shows_the_queue_from_its_top() {
    let d = tempfile::tempdir().unwrap();
    let mut app = app_with_model(d.path(), 30, false);
    let first = app.queue[0];
    for _ in 0..6 {
        app.handle(Action::Down);
    }
    let small = screen(&mut app, 80, 14);
    assert!(app.offset() > 0, "the cursor at row 6 scrolls a small window:\n{small}");
    let big = screen(&mut app, 80, 24);
    assert_eq!(app.offset(), 0, "{big}");
    let t: String = app.texts[first as usize].chars().take(20).collect();
    assert!(big.contains(&t), "the first row of the queue is in sight again:\n{big}");
}

/// Pop-ups over double-width text (Korean): no border cell is the hidden
/// second half of a character drawn just left of it (the terminal would
/// print the character over the border).
#[test]
fn popups_keep_their_border_over_wide_text() {
    let d = tempfile::tempdir().unwrap();
    let mut app = app_with_model(d.path(), 30, false);
    // Every column parity: some texts start one cell later.
    for (i, t) in app.texts.iter_mut().enumerate() {
        *t = format!("{}카드를 잃어버렸어요 송금이 아직 안 됐어요 비밀번호를 잊어버렸어요", if i % 2 == 0 { "" } else { "a" });
    }
    let check = |app: &mut App, what: &str| {
        let (w, h) = (80u16, 24u16);
        let mut t = Terminal::new(TestBackend::new(w, h)).unwrap();
        app.set_geometry(render::geometry(ratatui::layout::Rect::new(0, 0, w, h)));
        t.draw(|f| render::draw(f, app, Theme { color: false })).unwrap();
        // What the terminal shows (the backend's cells, after the diff).
        let buf = t.backend().buffer().clone();
        // No box's left side is hidden under a double-width character.
        let mut boxes = 0;
        for y in 0..h {
            for x in 0..w {
                if buf[(x, y)].symbol() != "┌" {
                    continue;
                }
                let Some(bottom) = (y + 1..h).find(|&yy| buf[(x, yy)].symbol() == "└") else { continue };
                boxes += 1;
                for yy in y + 1..bottom {
                    let s = buf[(x, yy)].symbol();
                    // (Another pop-up may cross it; what must not is a character from the left.)
                    let left = if x > 0 { unicode_width::UnicodeWidthStr::width(buf[(x - 1, yy)].symbol()) } else { 0 };
                    assert!(s == "│" || s == "├" || left < 2, "{what}: the box at ({x}, {y}) has {s:?} at ({x}, {yy}) for its left border");
                }
            }
        }
        assert!(boxes >= 3, "{what}: no pop-up drawn");
    };
    app.handle(Action::OpenPicker);
    check(&mut app, "picker");
    app.handle(Action::Cancel);
    app.handle(Action::ToggleHelp);
    check(&mut app, "help");
    app.handle(Action::Cancel);
    app.handle(Action::Search);
    check(&mut app, "search");
    app.handle(Action::Cancel);
}

/// The reader says where in a long text it is, and its footer the keys
/// that scroll.
#[test]
fn the_reader_shows_its_place() {
    let d = tempfile::tempdir().unwrap();
    let mut app = app_with_model(d.path(), 30, false);
    let i = app.selected().unwrap();
    let long: String = (0..600).map(|n| format!("word{n}")).collect::<Vec<_>>().join(" ");
    set_text(&mut app, i, &long);
    app.handle(Action::Read);
    let s = screen(&mut app, 80, 24);
    let place =
        |s: &str| s.lines().find_map(|l| l.find(" lines ").map(|p| l[p..].split(" of ").next().unwrap().to_string())).unwrap_or_default();
    assert!(place(&s).starts_with(" lines 1-"), "{s}");
    assert!(s.lines().last().unwrap().contains("scroll") && s.lines().last().unwrap().contains("page"), "{s}");
    for _ in 0..40 {
        app.handle(Action::PageDown);
    }
    let s = screen(&mut app, 80, 24);
    let total: usize = s.lines().find_map(|l| l.split(" of ").nth(1)).and_then(|t| t.split_whitespace().next()).unwrap().parse().unwrap();
    assert!(place(&s).ends_with(&format!("-{total}")), "at the end: {s}");
    assert!(s.contains("word599"), "{s}");
}

/// The panel's line for the rows at 0.9 or more reads right for none and one.
#[test]
fn the_confident_rows_line_reads_for_none_and_one() {
    let d = tempfile::tempdir().unwrap();
    let mut app = app_with_model(d.path(), 30, false);
    let mut with = |n: usize| {
        let last = app.history.last_mut().unwrap();
        last.labels = last.labels.max(1);
        last.estimate = Some((20, 0.5, vec![(0.9, n, 0.93)]));
        screen(&mut app, 100, 30)
    };
    assert!(with(0).contains("≥0.9: no row yet"));
    assert!(with(1).contains("≥0.9: 1 row ~93%"));
    assert!(with(1200).contains("≥0.9: 1,200 rows ~93%"));
}

/// A label given outside the batch counts towards it: the batch then holds
/// what is left of it, and the rows marked are the rows held.
#[test]
fn a_label_outside_the_batch_shrinks_what_it_holds() {
    let d = tempfile::tempdir().unwrap();
    let mut app = app_with_model(d.path(), 60, false);
    let held = |app: &App| -> Vec<i64> {
        let c = rusqlite::Connection::open(d.path().join("s/session.db")).unwrap();
        let mut st = c.prepare("SELECT row_id FROM reservations ORDER BY row_id").unwrap();
        let v = st.query_map([], |r| r.get(0)).unwrap().collect::<rusqlite::Result<Vec<i64>>>().unwrap();
        let mut mine: Vec<i64> = app.reserved.iter().map(|&i| app.row_ids[i as usize]).collect();
        mine.sort();
        assert_eq!(v, mine, "the rows marked are the rows held");
        v
    };
    assert_eq!(held(&app).len(), 10);
    std::thread::sleep(labelrest::ui::app::SETTLE + std::time::Duration::from_millis(100));
    for _ in 0..12 {
        app.handle(Action::Down);
    }
    let outside = app.queue[app.cursor[0]];
    assert!(!app.reserved.contains(&outside));
    app.handle(Action::Accept);
    assert!(app.labels[outside as usize].is_some(), "{:?}", app.message);
    assert_eq!(app.batch_remaining(), 9);
    assert_eq!(held(&app).len(), 9, "one fewer held, as one fewer is left to do");
}

/// Rows sent to two annotators (`--overlap`): a row one annotator labelled
/// is still in the other's queue, a disagreement is in nobody else's; the
/// adjudicator's disputes view (`D`) lists it with each annotator's label,
/// the picker offers those first, and the label picked is the row's.
#[test]
fn the_adjudicator_settles_a_disagreement_from_the_disputes_view() {
    let d = tempfile::tempdir().unwrap();
    drop(session(d.path(), 40, false));
    let alice = Session::open_as(d.path(), "s", "alice").unwrap();
    assert_eq!(alice.set_overlap(1.0).unwrap(), 40);
    let bob = Session::open_as(d.path(), "s", "bob").unwrap();
    // Row 1: alice only. Row 2: both agree. Row 3: they disagree.
    alice.add_label(1, 0, 0, None).unwrap();
    alice.add_label(2, 0, 0, None).unwrap();
    alice.add_label(3, 5, 0, None).unwrap();
    bob.add_label(2, 0, 0, None).unwrap();
    bob.add_label(3, 7, 0, None).unwrap();
    // Every change of a label moves the mark other processes watch, an
    // undo of a relabel too.
    let m = alice.marks().unwrap().labels_mark();
    alice.add_label(1, 2, 0, None).unwrap();
    alice.undo_last().unwrap();
    assert_ne!(alice.marks().unwrap().labels_mark(), m);
    let idx = |app: &App, id: i64| app.row_ids.iter().position(|&r| r == id).unwrap() as u32;
    // Bob's queue asks for row 1 first (alice's label waits for a second one).
    let b = App::load(bob).unwrap();
    assert_eq!(b.queue[0], idx(&b, 1));
    assert!(b.labels[idx(&b, 1) as usize].is_none());
    assert_eq!(b.labels[idx(&b, 3) as usize].map(|l| l.0), Some(7), "bob sees his own label");
    drop(b);
    // Carol's has neither row 2 (agreed) nor row 3 (disputed).
    let mut app = App::load(Session::open_as(d.path(), "s", "carol").unwrap()).unwrap();
    let (r1, r2, r3) = (idx(&app, 1), idx(&app, 2), idx(&app, 3));
    assert!(app.queue.contains(&r1) && !app.queue.contains(&r2) && !app.queue.contains(&r3));
    assert_eq!(app.labels[r2 as usize].map(|l| l.0), Some(0));
    assert!(app.closed.contains(&r3));
    let panel = screen(&mut app, 100, 30);
    assert!(panel.contains("agree alice/bob") && panel.contains("50% of 2 · κ 0.33") && panel.contains("disputes 1 · wait 1"), "{panel}");
    // Not the adjudicator: told who settles it.
    app.handle(Action::Disputes);
    assert!(app.message.as_deref().unwrap().contains("--adjudicator"), "{:?}", app.message);
    assert_eq!(app.view, View::Queue);
    app.adjudicator = true;
    app.handle(Action::Disputes);
    assert_eq!((app.view, app.current_list()), (View::Labelled, &[r3][..]));
    let shown = screen(&mut app, 80, 24);
    let (five, seven) = (app.label_names[5].clone(), app.label_names[7].clone());
    assert!(shown.contains("Disputes (1 to adjudicate)") && shown.contains(&format!("alice: {}", &five[..10])), "{shown}");
    // The picker offers the annotators' labels first; Enter takes bob's.
    app.handle(Action::OpenPicker);
    app.handle(Action::Down);
    app.handle(Action::Confirm);
    assert_eq!(app.session.label_of(3).unwrap(), Some((7, labelrest::store::Source::Adjudicated)));
    assert!(app.message.as_deref().unwrap().contains(&format!("{seven} (adjudicated; alice: {five} · bob: {seven})")), "{:?}", app.message);
    assert!(app.current_list().is_empty() && app.disputes.is_empty());
    assert_eq!(app.labels[r3 as usize].map(|l| l.0), Some(7));
    // Undo brings the dispute back.
    app.handle(Action::Undo);
    assert_eq!(app.current_list(), &[r3][..]);
    assert_eq!(app.session.label_of(3).unwrap(), None);
    app.session.check_integrity().unwrap();
    // Another dispute arises behind the adjudicator's back: once row 3 is
    // settled it comes under the cursor, and no key settles it before the
    // adjudicator had a moment to read it. (The adjudicator's batch is let
    // go: a row in it is not another annotator's to label.)
    app.session.release_reservations().unwrap();
    alice.add_label(4, 1, 0, None).unwrap();
    let bob = Session::open_as(d.path(), "s", "bob").unwrap();
    bob.add_label(4, 2, 0, None).unwrap();
    app.handle(Action::OpenPicker);
    app.handle(Action::Confirm);
    assert_eq!(app.current_list(), &[idx(&app, 4)][..]);
    assert!(app.settling(), "{:?}", app.message);
    assert!(app.message.as_deref().unwrap().contains("the disputes changed meanwhile"), "{:?}", app.message);
    // Two disputes on screen; the first ends under the adjudicator's key
    // (bob came round to alice's label): not settled, the adjudicator is
    // told, and the next one, now under the cursor, takes no key for a
    // moment.
    alice.add_label(6, 1, 0, None).unwrap();
    bob.add_label(6, 2, 0, None).unwrap();
    app.apply_team(&Default::default(), true);
    assert_eq!(app.current_list(), &[idx(&app, 4), idx(&app, 6)][..]);
    bob.add_label(4, 1, 0, None).unwrap();
    app.changed_at = None;
    app.handle(Action::OpenPicker);
    app.handle(Action::Confirm);
    assert!(app.message.as_deref().unwrap_or("").contains("no longer disputed"), "{:?}", app.message);
    assert_eq!(app.session.label_of(4).unwrap().map(|l| l.1), Some(labelrest::store::Source::Person));
    assert_eq!(app.current_list(), &[idx(&app, 6)][..]);
    assert!(app.settling());
    // An empty list that a dispute comes into: the same.
    app.changed_at = None;
    app.handle(Action::OpenPicker);
    app.handle(Action::Confirm);
    assert!(app.current_list().is_empty());
    alice.add_label(7, 1, 0, None).unwrap();
    bob.add_label(7, 2, 0, None).unwrap();
    app.apply_team(&Default::default(), true);
    assert_eq!(app.current_list(), &[idx(&app, 7)][..]);
    assert!(app.settling());
    // Alice's undo passes over her label on row 6, which the adjudicator
    // ruled on (it stays, with the agreement figures): her label on row 7
    // goes, then the one on row 4.
    drop(alice);
    let mut a = App::load(Session::open_as(d.path(), "s", "alice").unwrap()).unwrap();
    a.handle(Action::Undo);
    assert_eq!(a.message.as_deref(), Some("undone: row 7"));
    a.handle(Action::Undo);
    assert_eq!(a.message.as_deref(), Some("undone: row 4"));
    assert_eq!(a.labels[idx(&a, 6) as usize].map(|l| l.0), Some(1), "alice's label on row 6 stays");
    assert_eq!(a.session.label_of(6).unwrap().map(|l| l.1), Some(labelrest::store::Source::Adjudicated));
    // An error a key caused goes with the next key.
    a.export_path = d.path().join("no such folder").join("x.csv");
    a.handle(Action::Export);
    assert!(a.error.is_some());
    a.handle(Action::Down);
    assert_eq!(a.error, None);
    drop(a);
    let alice = Session::open_as(d.path(), "s", "alice").unwrap();
    // The adjudicated label stays: an annotator's relabel is refused.
    let mut b = App::load(bob).unwrap();
    b.view = View::All;
    b.all_search = None;
    let before = b.session.label_of(3).unwrap();
    let r = idx(&b, 3);
    b.cursor[2] = b.all_list.iter().position(|&x| x == r).unwrap();
    b.handle(Action::OpenPicker);
    b.handle(Action::Confirm);
    assert_eq!(b.session.label_of(3).unwrap(), before);
    assert!(b.message.as_deref().unwrap_or("").contains("adjudicated by carol"), "{:?}", b.message);
    // Enter on it says it keeps its label, without offering a relabel it would refuse.
    b.handle(Action::Accept);
    let m = b.message.clone().unwrap_or_default();
    assert!(m.contains("was adjudicated: it keeps") && !m.contains("relabels"), "{m}");
    drop(b);
    // An adjudicator does not settle a dispute they are part of.
    drop(app);
    alice.add_label(5, 1, 0, None).unwrap();
    Session::open_as(d.path(), "s", "bob").unwrap().add_label(5, 2, 0, None).unwrap();
    drop(alice);
    let mut a = App::load(Session::open_as(d.path(), "s", "alice").unwrap()).unwrap();
    a.adjudicator = true;
    a.handle(Action::Disputes);
    assert!(a.current_list().is_empty());
    assert!(a.message.as_deref().unwrap().contains("1 of yours"), "{:?}", a.message);
}

/// Others' changes read in with an adjudication must not move the cursor
/// onto a dispute the adjudicator has not seen: after a settle it goes to
/// the row that followed on screen, and where that one is gone too, the
/// row it lands on takes no key for a moment.
#[test]
fn after_a_settle_the_cursor_goes_to_the_row_that_followed() {
    let d = tempfile::tempdir().unwrap();
    drop(session(d.path(), 40, false));
    let alice = Session::open_as(d.path(), "s", "alice").unwrap();
    alice.set_overlap(1.0).unwrap();
    let bob = Session::open_as(d.path(), "s", "bob").unwrap();
    for r in 1..=8 {
        alice.add_label(r, 0, 0, None).unwrap();
        bob.add_label(r, 1, 0, None).unwrap();
    }
    let mut app = App::load(Session::open_as(d.path(), "s", "carol").unwrap()).unwrap();
    app.adjudicator = true;
    app.handle(Action::Disputes);
    let idx = |app: &App, id: i64| app.row_ids.iter().position(|&r| r == id).unwrap() as u32;
    let ids = |app: &App| app.current_list().iter().map(|&i| app.row_ids[i as usize]).collect::<Vec<i64>>();
    assert_eq!(ids(&app), (1..=8).collect::<Vec<i64>>());
    // The cursor on row 4; bob comes round on rows 1 and 2 (above it).
    app.cursor[1] = 3;
    bob.add_label(1, 0, 0, None).unwrap();
    bob.add_label(2, 0, 0, None).unwrap();
    app.handle(Action::OpenPicker);
    app.handle(Action::Confirm);
    assert_eq!(app.session.label_of(4).unwrap().map(|l| l.1), Some(labelrest::store::Source::Adjudicated));
    assert_eq!(ids(&app), vec![3, 5, 6, 7, 8]);
    assert_eq!(app.selected(), Some(idx(&app, 5) as usize), "the row that followed row 4");
    assert!(!app.settling());
    // Now row 3 (above) and row 6 (next after 5) go while carol settles 5:
    // she lands on 7, the next one still listed (not on 8, where the
    // cursor's index would put her), which she has not had under the
    // cursor, and it waits.
    bob.add_label(3, 0, 0, None).unwrap();
    bob.add_label(6, 0, 0, None).unwrap();
    app.handle(Action::OpenPicker);
    app.handle(Action::Confirm);
    assert_eq!(ids(&app), vec![7, 8]);
    assert_eq!(app.selected(), Some(idx(&app, 7) as usize), "the next row still listed");
    assert!(app.settling(), "{:?}", app.message);
    app.handle(Action::Accept);
    app.handle(Action::OpenPicker);
    assert!(matches!(app.overlay, Overlay::None), "no picker on a row that came by itself");
    assert_eq!(app.session.label_of(7).unwrap(), None);
}

/// In the disputes view `Enter` gives the row the model's label (as in the
/// queue), once the row has been under the cursor a moment.
#[test]
fn enter_in_the_disputes_view_takes_the_models_label() {
    let d = tempfile::tempdir().unwrap();
    let mut app = app_with_model(d.path(), 60, false);
    let alice = Session::open_as(d.path(), "s", "alice").unwrap();
    alice.set_overlap(1.0).unwrap();
    let bob = Session::open_as(d.path(), "s", "bob").unwrap();
    alice.add_label(1, 0, 0, None).unwrap();
    bob.add_label(1, 1, 0, None).unwrap();
    app.apply_team(&Default::default(), true);
    app.adjudicator = true;
    app.handle(Action::Disputes);
    let i = app.selected().unwrap();
    assert_eq!(app.row_ids[i], 1);
    let model = app.prediction(i).unwrap().0;
    app.changed_at = None;
    app.handle(Action::Accept);
    assert_eq!(app.session.label_of(1).unwrap(), Some((model, labelrest::store::Source::Adjudicated)), "{:?}", app.message);
}

/// The update a new model would send where row `i`'s prediction is
/// `label` (every other row as in the last update; the same ranking).
fn update_predicting(app: &App, i: usize, label: u32) -> Arc<Update> {
    let u = app.update.clone().expect("an update");
    let k = u.scores.k;
    let mut probs = u.scores.probs.clone();
    for j in 0..k {
        probs[i * k + j] = if j as u32 == label { 0.9 } else { 0.1 / (k - 1) as f32 };
    }
    Arc::new(Update {
        iteration: u.iteration,
        n_labels: u.n_labels,
        scores: labelrest::learn::Scores::from_probs(probs, k),
        ranking: u.ranking.clone(),
        record: u.record.clone(),
        trained: false,
        pool_index: u.pool_index.clone(),
    })
}

/// A new model that changes what the row under the cursor suggests (the
/// row stays): a key pressed for the old suggestions waits, as for a new
/// row; then it takes what is on screen.
#[test]
fn changed_suggestions_settle_before_a_key_acts() {
    let d = tempfile::tempdir().unwrap();
    let mut app = app_with_model(d.path(), 150, true);
    screen(&mut app, 80, 24);
    app.handle(Action::Down);
    let i = app.selected().unwrap();
    let old = app.suggestions(i)[0].0;
    let new = (old + 1) % app.label_names.len() as u32;
    // The same model again: nothing to wait for.
    let again = app.update.clone().unwrap();
    app.apply_update(again);
    assert!(!app.settling());
    app.apply_update(update_predicting(&app, i, new));
    assert_eq!(app.selected(), Some(i), "the cursor stays on its row");
    assert_eq!(app.suggestions(i)[0].0, new);
    assert!(app.settling(), "the row's suggestions changed by themselves");
    assert!(app.message.as_deref().unwrap().contains("suggestions for the row under the cursor changed"), "{:?}", app.message);
    let n = app.session.labels().unwrap().len();
    app.handle(Action::Accept);
    app.handle(Action::Pick(1));
    assert_eq!(app.session.labels().unwrap().len(), n, "no label while the row settles");
    app.changed_at = std::time::Instant::now().checked_sub(labelrest::ui::app::SETTLE * 2);
    app.refused_at = None;
    app.handle(Action::Accept);
    let last = app.session.labels().unwrap().last().cloned().unwrap();
    assert_eq!((last.row_id, last.label), (app.row_ids[i], new), "the label on screen");
}

/// A change behind an overlay (the reader covers the table) that outlasts
/// the settle moment: the moment starts again when the table shows.
#[test]
fn a_change_behind_the_reader_settles_when_it_closes() {
    let d = tempfile::tempdir().unwrap();
    let mut app = app_with_model(d.path(), 150, true);
    screen(&mut app, 80, 24);
    let i = app.selected().unwrap();
    let new = (app.suggestions(i)[0].0 + 1) % app.label_names.len() as u32;
    app.handle(Action::Read);
    assert!(matches!(app.overlay, Overlay::Reader { .. }));
    app.apply_update(update_predicting(&app, i, new));
    assert!(app.settling());
    // The person reads on for longer than the moment.
    std::thread::sleep(labelrest::ui::app::SETTLE + std::time::Duration::from_millis(100));
    assert!(!app.settling());
    app.handle(Action::Read);
    assert_eq!(app.overlay, Overlay::None);
    assert!(app.settling(), "the change is seen only now");
    let n = app.session.labels().unwrap().len();
    app.handle(Action::Accept);
    assert_eq!(app.session.labels().unwrap().len(), n, "no label for what the reader hid");
    // Nothing changed behind it: closing it asks for no wait.
    app.changed_at = None;
    app.handle(Action::Read);
    app.handle(Action::Read);
    assert!(!app.settling());
}

/// In the all-rows view, Enter on a row with a label keeps it (as in the
/// labelled view): the model's guess does not replace the person's.
#[test]
fn enter_keeps_a_label_in_the_all_rows_view() {
    let d = tempfile::tempdir().unwrap();
    let mut app = app_with_model(d.path(), 150, true);
    screen(&mut app, 80, 24);
    let i = app.selected().unwrap();
    let other = (app.suggestions(i)[0].0 + 1) % app.label_names.len() as u32;
    // The person gives row i a label that is not the model's top one.
    let shown = app.shown_suggestions(i);
    let at = app.suggestions(i).iter().position(|s| s.0 == other).filter(|&p| p < shown);
    match at {
        Some(p) => app.handle(Action::Pick(p + 1)),
        None => {
            app.handle(Action::OpenPicker);
            for c in app.label_names[other as usize].clone().chars() {
                app.handle(Action::Input(c));
            }
            app.handle(Action::Confirm);
        }
    }
    assert_eq!(app.labels[i].map(|l| l.0), Some(other));
    let n = app.session.labels().unwrap().len();
    app.handle(Action::NextView);
    app.handle(Action::NextView);
    assert_eq!(app.view, View::All);
    app.handle(Action::Top);
    let pos = app.all_list.iter().position(|&r| r as usize == i).unwrap();
    for _ in 0..pos {
        app.handle(Action::Down);
    }
    assert_eq!(app.selected(), Some(i));
    app.handle(Action::Accept);
    app.handle(Action::Confirm);
    assert_eq!(app.session.labels().unwrap().len(), n, "no new label");
    assert_eq!(app.labels[i].map(|l| l.0), Some(other));
    assert!(app.message.as_deref().unwrap().contains("keeps"), "{:?}", app.message);
}

/// A fine-tune that finishes as the person cancels it (`F` again, pressed
/// while the worker was busy and the encoder already waiting for it) is
/// cancelled: its encoder is not swapped in, its folder goes.
#[test]
fn a_fine_tune_cancelled_as_it_finishes_is_not_swapped_in() {
    let d = tempfile::tempdir().unwrap();
    let s = session(d.path(), 80, true);
    let rows = s.rows().unwrap();
    for (i, r) in rows.iter().take(12).enumerate() {
        s.add_label(r.id, (i % 3) as u32, 1, None).unwrap();
    }
    worker::retrain_headless(&s, &mut |_, _, _| {}).unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let mut w = labelrest::worker::Worker::start(&s, tx).unwrap();
    let next = |rx: &std::sync::mpsc::Receiver<worker::Event>| rx.recv_timeout(std::time::Duration::from_secs(300)).unwrap();
    while !matches!(next(&rx), worker::Event::Update(_)) {}
    w.request(Job::FineTune);
    // Held from the fine-tune's start: its encoder waits in the slot.
    let hold = loop {
        match next(&rx) {
            worker::Event::FineTune { running: true, .. } => break w.hold(),
            worker::Event::Error(e) => panic!("{e}"),
            _ => {}
        }
    };
    let folder = || {
        std::fs::read_dir(&s.dir)
            .unwrap()
            .filter_map(|e| e.ok())
            .map(|e| e.path())
            .find(|p| p.file_name().unwrap().to_string_lossy().starts_with("encoder-") && p.join("model.safetensors").exists())
    };
    let t = std::time::Instant::now();
    let tuned = loop {
        if let Some(f) = folder() {
            break f;
        }
        assert!(t.elapsed() < std::time::Duration::from_secs(300), "the fine-tune did not finish");
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    // (Its cache is written and it is handed over right after the folder.)
    std::thread::sleep(std::time::Duration::from_secs(3));
    w.request(Job::CancelFineTune);
    drop(hold);
    let text = loop {
        match next(&rx) {
            worker::Event::FineTune { running: false, text } => break text,
            worker::Event::Error(e) => panic!("{e}"),
            _ => {}
        }
    };
    assert!(text.contains("cancelled"), "{text}");
    w.shutdown();
    assert!(s.tuned_encoder().unwrap().is_none(), "the base encoder stays in use");
    assert!(!tuned.exists(), "the cancelled encoder's folder is removed");
}

/// The moment a changed row is given to be read starts when it is drawn:
/// a screen that stalls between the change and its frame does not spend it.
#[test]
fn the_moment_to_read_starts_when_the_row_is_drawn() {
    let d = tempfile::tempdir().unwrap();
    let mut app = app_with_model(d.path(), 150, true);
    app.changed_at = None;
    app.shown(std::time::Instant::now());
    let before = app.selected();
    for _ in 0..10 {
        app.handle(Action::Accept);
    }
    retrain(&mut app);
    assert_ne!(app.selected(), before, "the new batch put another row under the cursor");
    assert!(app.changed_at.is_some());
    // Nothing drawn for longer than the moment (a stall), then the frame.
    std::thread::sleep(labelrest::ui::app::SETTLE + std::time::Duration::from_millis(100));
    assert!(!app.settling());
    app.shown(std::time::Instant::now());
    assert!(app.settling(), "the row was not on screen until now");
    let n = app.session.labels().unwrap().len();
    app.handle(Action::Accept);
    assert_eq!(app.session.labels().unwrap().len(), n, "refused while the row settles");
    // Later frames of the same row do not start it again.
    std::thread::sleep(labelrest::ui::app::SETTLE + std::time::Duration::from_millis(100));
    app.shown(std::time::Instant::now());
    assert!(!app.settling());
    app.handle(Action::Accept);
    assert_eq!(app.session.labels().unwrap().len(), n + 1);
}

/// `u` after `x` takes the skip back (the row back in its place in the
/// batch, the row that came in its place out of it), not the label before it.
#[test]
fn undo_after_a_skip_takes_the_skip_back() {
    let d = tempfile::tempdir().unwrap();
    let mut app = app_with_model(d.path(), 150, true);
    app.changed_at = None;
    app.handle(Action::Accept);
    let labelled = app.session.labels().unwrap().len();
    let batch = app.reserved.clone();
    let row = app.selected().unwrap();
    app.handle(Action::Skip);
    assert!(app.skipped.contains(&(row as u32)) && !app.reserved.contains(&(row as u32)));
    app.handle(Action::Undo);
    assert_eq!(app.session.labels().unwrap().len(), labelled, "the label before the skip stays");
    assert!(!app.skipped.contains(&(row as u32)));
    assert_eq!(app.reserved, batch, "the batch as it was, the row in its place");
    assert_eq!(app.selected(), Some(row), "the cursor on it");
    assert!(app.message.as_deref().unwrap().contains("skip undone"), "{:?}", app.message);
    // Again: now the label is undone.
    app.handle(Action::Undo);
    assert_eq!(app.session.labels().unwrap().len(), labelled - 1);
    // A row skipped twice: undoing the second skip leaves it skipped, as
    // the first left it.
    let row = app.selected().unwrap();
    app.handle(Action::Skip);
    app.handle(Action::Bottom);
    assert_eq!(app.selected(), Some(row), "a skipped row waits at the end of the queue");
    app.handle(Action::Skip);
    app.handle(Action::Undo);
    assert!(app.skipped.contains(&(row as u32)), "still skipped once");
    // A refused decision is not a decision: `u` still takes the skip back.
    app.handle(Action::Top);
    let next = app.selected().unwrap();
    app.handle(Action::Skip);
    app.changed_at = Some(std::time::Instant::now());
    app.handle(Action::Accept);
    // (`u` too waits the moment out.)
    app.handle(Action::Undo);
    assert!(app.skipped.contains(&(next as u32)), "{:?}", app.message);
    app.changed_at = None;
    app.handle(Action::Undo);
    assert!(!app.skipped.contains(&(next as u32)), "{:?}", app.message);
    assert_eq!(app.session.labels().unwrap().len(), labelled - 1);
}

/// A text longer than the row pane's lines says so on its last line: a
/// person never labels a text believing they read all of it.
#[test]
fn a_cut_text_says_there_is_more() {
    let d = tempfile::tempdir().unwrap();
    let mut app = app_with_model(d.path(), 30, false);
    let i = app.selected().unwrap();
    set_text(&mut app, i, &"a long account of what happened at the bank counter today ".repeat(12));
    let s = screen(&mut app, 80, 24);
    assert!(s.contains("… (v: all)"), "{s}");
    set_text(&mut app, i, "short text");
    let s = screen(&mut app, 80, 24);
    assert!(!s.contains("(v: all)"), "{s}");
}

/// A relabel counts towards the batch (the batch lets a row go); its undo
/// gives the decision back and the batch its row: live and after a
/// reopening, what the batch holds and what was decided make one batch.
#[test]
fn undoing_a_relabel_keeps_the_batch_whole_across_a_reopening() {
    let d = tempfile::tempdir().unwrap();
    let mut app = app_with_model(d.path(), 150, true);
    app.changed_at = None;
    app.handle(Action::Accept);
    app.handle(Action::Accept);
    assert_eq!((app.batch_done, app.reserved.len()), (2, 8));
    // Relabel the first row in the labelled view, then undo it.
    app.handle(Action::NextView);
    app.handle(Action::Bottom);
    let row = app.selected().unwrap();
    let (old, _) = app.labels[row].unwrap();
    let other = app.suggestions(row).into_iter().map(|s| s.0).find(|&l| l != old).unwrap();
    let digit = app.suggestions(row).iter().position(|s| s.0 == other).unwrap() + 1;
    app.handle(Action::Pick(digit));
    assert_eq!(app.labels[row].unwrap().0, other, "{:?}", app.message);
    assert_eq!((app.batch_done, app.reserved.len()), (3, 7), "the relabel counts; the batch let a row go");
    app.handle(Action::Undo);
    assert_eq!(app.labels[row].unwrap().0, old);
    assert_eq!((app.batch_done, app.reserved.len()), (2, 8), "the decision and the row are back");
    app.remember_position();
    drop(app);
    let app = App::load(Session::open(d.path(), "s").unwrap()).unwrap();
    assert_eq!((app.batch_done, app.reserved.len()), (2, 8), "as a reopening counts them");
}

/// A window too small for the row pane shows a few words of each text in
/// the table: no key labels a row there until the person read it (`v`).
#[test]
fn a_window_too_small_for_the_row_pane_labels_only_a_row_read() {
    let d = tempfile::tempdir().unwrap();
    let mut app = app_with_model(d.path(), 60, false);
    let s = screen(&mut app, 60, 12);
    assert!(!s.contains("┌ Row"), "no row pane at 60x12: {s}");
    app.changed_at = None;
    let row = app.selected().unwrap();
    app.handle(Action::Accept);
    assert!(app.labels[row].is_none(), "not labelled unread");
    assert!(app.message.as_deref().unwrap_or("").starts_with("v reads row"), "{:?}", app.message);
    assert!(app.session.labels().unwrap().is_empty());
    // Read, then decided.
    app.handle(Action::Read);
    app.handle(Action::Cancel);
    app.changed_at = None;
    app.handle(Action::Accept);
    assert!(app.labels[row].is_some(), "{:?}", app.message);
    assert_eq!(app.session.labels().unwrap().len(), 1);
    // A larger window shows the pane: decisions as usual.
    screen(&mut app, 80, 24);
    app.changed_at = None;
    let next = app.selected().unwrap();
    app.handle(Action::Accept);
    assert!(app.labels[next].is_some());
}

/// An undo that passes over a label it may not take back (one the
/// adjudicator ruled on) reaches a label of the batch before, once this
/// batch has begun: that row comes first in this batch, the cursor on it,
/// not at the batch's end where the keys after its decision would go on
/// below the batch.
#[test]
fn a_row_undone_from_an_earlier_batch_comes_first_in_this_one() {
    let d = tempfile::tempdir().unwrap();
    let mut app = app_with_model(d.path(), 150, false);
    let first = accept_a_batch(&mut app);
    retrain(&mut app);
    app.changed_at = None;
    let second: Vec<u32> = app.queue[..10].to_vec();
    app.handle(Action::Accept);
    assert_eq!(app.batch_done, 1);
    // That label is out of the undo's reach (as an adjudicated one is).
    rusqlite::Connection::open(app.session.db_path())
        .unwrap()
        .execute("UPDATE annotations SET undone=1 WHERE row_id=?1", [app.row_ids[second[0] as usize]])
        .unwrap();
    app.changed_at = None;
    app.handle(Action::Undo);
    let back = first[9];
    assert!(app.labels[back as usize].is_none());
    assert_eq!(app.queue[0], back, "first in the batch");
    assert_eq!(app.selected(), Some(back as usize));
    assert!(app.reserved.contains(&back));
    // Its decision moves the cursor down the batch.
    app.changed_at = None;
    app.handle(Action::Accept);
    assert_eq!(app.selected(), Some(second[1] as usize));
}

/// The picker was opened on a free row; another annotator labels it while
/// the picker is open (the label comes in with the team's next look): the
/// label picked then is refused, the other annotator's stands.
#[test]
fn a_label_picked_for_a_row_someone_labelled_meanwhile_is_refused() {
    let d = tempfile::tempdir().unwrap();
    drop(session(d.path(), 40, false));
    let alice = Session::open_as(d.path(), "s", "alice").unwrap();
    let mut bob = App::load(Session::open_as(d.path(), "s", "bob").unwrap()).unwrap();
    bob.changed_at = None;
    // A free row: in nobody's batch.
    let row = *bob.all_list.iter().find(|&&r| !bob.reserved.contains(&r)).unwrap() as usize;
    bob.view = View::All;
    bob.cursor[2] = bob.all_list.iter().position(|&r| r as usize == row).unwrap();
    bob.handle(Action::OpenPicker);
    assert!(matches!(bob.overlay, Overlay::Picker(_)));
    let id = bob.row_ids[row];
    alice.add_label_unlabelled(id, 0, 0, None).unwrap();
    bob.apply_team(&std::collections::HashSet::new(), true);
    assert!(bob.labels[row].is_some(), "alice's label came in");
    bob.handle(Action::Confirm);
    assert_eq!(bob.overlay, Overlay::None, "a label was picked");
    let m = bob.message.clone().unwrap_or_default();
    assert!(m.contains("just labelled by alice"), "{m} / {:?}", bob.error);
    assert_eq!(active_labels(d.path(), "s", id), [(0, "alice".to_string())]);
}

/// Ctrl-C (the Quit action in every key table) quits from inside any
/// overlay too, as the README says; Esc there only closes the overlay.
#[test]
fn ctrl_c_quits_from_inside_an_overlay() {
    let d = tempfile::tempdir().unwrap();
    let mut app = app_with_model(d.path(), 60, false);
    let ctrl_c = crossterm::event::KeyEvent::new(crossterm::event::KeyCode::Char('c'), crossterm::event::KeyModifiers::CONTROL);
    let esc = crossterm::event::KeyEvent::new(crossterm::event::KeyCode::Esc, crossterm::event::KeyModifiers::NONE);
    for open in [Action::OpenPicker, Action::ToggleHelp, Action::Read] {
        app.quit = false;
        app.changed_at = None;
        app.handle(open.clone());
        assert_ne!(app.overlay, Overlay::None, "{open:?}");
        app.handle(labelrest::ui::tui::keymap(esc, &app));
        assert_eq!(app.overlay, Overlay::None, "Esc closes {open:?}");
        assert!(!app.quit);
        app.handle(open.clone());
        app.handle(labelrest::ui::tui::keymap(ctrl_c, &app));
        assert!(app.quit, "Ctrl-C in {open:?}");
        app.overlay = Overlay::None;
    }
}
