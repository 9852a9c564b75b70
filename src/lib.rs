//! labelrest: label a few, the model labels the rest.
//!
//! Layers, from the bottom: `data` (reading files), `settings` (a
//! session's settings as enums), `store` (the SQLite session), `model` (encoder, embedding cache, head), `learn` (scores,
//! strategies, metrics, one iteration), `worker` (the background thread),
//! `ui` (the terminal workstation), `cli` (the subcommands); `term` (colour,
//! verbosity and exit codes) beside them.

pub mod bench;
pub mod cli;
pub mod data;
pub mod export;
pub mod learn;
pub mod model;
pub mod output;
pub mod plot;
pub mod predict;
pub mod settings;
pub mod simulate;
pub mod store;
pub mod term;
pub mod ui;
pub mod worker;

/// For tests of what happens while a process waits at a step:
/// `LABELREST_PAUSE_AT=STEP` makes it wait 5 s there (logged). Steps:
/// `built` (`new`, before its session is put in place), `retrain-locked`
/// (`retrain`, holding the trainer lock), `ui-first-frame`, `ui-retrain`,
/// `ui-first-model` (the workstation's loop, `ui::tui`).
pub fn pause_at(step: &str) {
    if std::env::var("LABELREST_PAUSE_AT").is_ok_and(|s| s == step) {
        tracing::info!("pausing at {step} (LABELREST_PAUSE_AT)");
        std::thread::sleep(std::time::Duration::from_secs(5));
    }
}

/// For tests of what a bug does: `LABELREST_PANIC_AT=STEP` panics once, the
/// first time this process reaches that step: `iterate` (the worker's
/// retrain, `worker::pipeline::iterate`) or `finetune` (the fine-tune's
/// thread).
pub fn panic_at(step: &str) {
    static DONE: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
    if std::env::var("LABELREST_PANIC_AT").is_ok_and(|s| s == step) && !DONE.swap(true, std::sync::atomic::Ordering::SeqCst) {
        panic!("LABELREST_PANIC_AT={step}");
    }
}
