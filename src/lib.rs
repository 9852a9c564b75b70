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
