//! A big pile is ranked before it is all embedded: a first slice spread
//! over the pile, then the rest behind the first ranking, the ranking
//! growing as rows arrive. (Its own test binary: it sets
//! LABELREST_FIRST_SLICE for the worker.)

mod common;
use common::*;
use labelrest::store::{Session, Source};
use labelrest::ui::app::App;
use labelrest::worker::{Event, Job, Update, Worker};
use std::sync::Arc;
use std::time::Duration;

/// The worker's events up to its next update; what else came is noted in `seen`.
fn next_update(rx: &std::sync::mpsc::Receiver<Event>, app: &mut App, seen: &mut Vec<String>) -> Arc<Update> {
    loop {
        match rx.recv_timeout(Duration::from_secs(120)).expect("the worker went quiet") {
            Event::Update(u) => {
                app.apply_update(u.clone());
                return u;
            }
            Event::Error(e) => panic!("worker error: {e}"),
            ev => {
                match &ev {
                    Event::Idle => seen.push("idle".into()),
                    Event::FineTune { running, text } => seen.push(format!("fine-tune {running} {text}")),
                    _ => {}
                }
                app.on_event(ev)
            }
        }
    }
}

#[test]
fn a_big_pile_is_ranked_before_it_is_all_embedded() {
    std::env::set_var("LABELREST_FIRST_SLICE", "100");
    let d = tempfile::tempdir().unwrap();
    small_demo_session(d.path(), "big", 1200);
    let session = Session::open(d.path(), "big").unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let worker = Worker::start(&session, tx).unwrap();
    let mut app = App::load(session).unwrap();
    let n = app.row_ids.len();
    assert!(n > 1000, "{n}");

    // The first ranking: 100 rows spread over the pile, the rest not shown yet.
    let mut seen = Vec::new();
    let first = next_update(&rx, &mut app, &mut seen);
    let at = first.pool_index.clone().expect("a partial first ranking");
    assert_eq!(at.len(), 100);
    assert!(*at.last().unwrap() as usize > n / 2, "spread over the pile, not its first lines: {at:?}");
    let predicted = (0..n).filter(|&i| app.prediction(i).is_some()).count();
    assert_eq!(predicted, 100);
    assert_eq!(app.queue.len(), 100, "only rows with a prediction are queued");
    assert!(app.queue.iter().all(|&i| app.prediction(i as usize).is_some()));
    // The export so far: the model's labels where it has them, none elsewhere.
    let preds = app.session.predictions().unwrap();
    assert_eq!(preds.len(), 100);
    // A workstation opened now (another annotator's) queues those rows only,
    // from the start, not the rows waiting to be embedded.
    let other = App::load(Session::open_as(d.path(), "big", "other").unwrap()).unwrap();
    assert!(other.embedding_behind() && other.not_embedded(app.row_ids.iter().position(|id| !preds.contains_key(id)).unwrap()));
    assert_eq!(other.queue.len() + other.others_reserved.len(), 100, "{}", other.queue.len());
    assert!(other.queue.iter().all(|&i| preds.contains_key(&other.row_ids[i as usize])));
    drop(other);

    // The person labels two rows of the first ranking as it arrives.
    for &i in app.queue[..2].to_vec().iter() {
        let row = app.row_ids[i as usize];
        app.session.add_label(row, 0, first.iteration, app.prediction(i as usize).map(|p| p.0)).unwrap();
    }
    worker.request(Job::Retrain { strategy: labelrest::learn::Strategy::Margin });
    // F while the pile embeds: said so, and remembered for when it is done.
    // (Pressed once the first ranking's top row was read: keys that act wait that moment.)
    app.changed_at = None;
    app.handle(labelrest::ui::app::Action::FineTune);
    assert!(!app.finetune_running && app.message.as_deref().unwrap_or("").contains("once every row is embedded"), "{:?}", app.message);
    for job in app.outbox.drain(..).collect::<Vec<_>>() {
        worker.request(job);
    }
    seen.clear();

    // The ranking grows until it covers every row; the labels are the model's inputs throughout.
    let mut grew = vec![100];
    loop {
        let u = next_update(&rx, &mut app, &mut seen);
        match &u.pool_index {
            Some(at) => grew.push(at.len()),
            None => break,
        }
    }
    assert!(!seen.iter().any(|e| e == "idle"), "never idle while rows wait: {seen:?}");
    // The panel's estimate of the rest is of every unlabelled row now.
    let est = app.history.last().unwrap().estimate.clone().unwrap();
    assert_eq!(est.0, n - 2, "{est:?}");
    // The fine-tune asked for while embedding starts now.
    let start = std::time::Instant::now();
    while !seen.iter().any(|e| e.starts_with("fine-tune true")) {
        assert!(start.elapsed() < Duration::from_secs(60), "no fine-tune started: {seen:?}");
        if let Ok(ev) = rx.recv_timeout(Duration::from_secs(5)) {
            if let Event::FineTune { running, text } = &ev {
                seen.push(format!("fine-tune {running} {text}"));
            }
            app.on_event(ev);
        }
    }
    assert!(grew.windows(2).all(|w| w[0] <= w[1]), "{grew:?}");
    assert!((0..n).all(|i| app.prediction(i).is_some()), "every row predicted at the end");
    assert_eq!(app.session.predictions().unwrap().len(), n);
    let labels = app.session.labels().unwrap();
    assert_eq!(labels.len(), 2);
    assert!(labels.iter().all(|l| l.source == Source::Person));
    // The cache is whole: a reopened session embeds nothing.
    drop(worker);
    drop(app);
    let s = Session::open_read_only(d.path(), "big").unwrap();
    let mut steps = Vec::new();
    let cancel = std::sync::atomic::AtomicBool::new(false);
    let p = labelrest::worker::prepare(&s, &mut |stage, _, _| steps.push(stage.to_string()), &cancel).unwrap();
    assert_eq!(p.pending, 0);
    assert!(!steps.iter().any(|s| s == "embedding"), "{steps:?}");
}
