//! The command line: clap subcommands for the interactive and the headless work.

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand};
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};

use crate::data::{self, Columns, Format};
use crate::export::{self, ExportFormat, ExportOptions};
use crate::learn::{SelfTraining, Strategy};
use crate::say;
use crate::store::{self, ImportSpec, LabelColIs, Session, Settings, Source};
use crate::term::{self, usage, Paint, Stream, Verbosity};
use crate::worker;

/// Exit codes: `labelrest --help` ends with them, and the man page has
/// them as its EXIT STATUS section.
const EXIT_STATUS: &[(&str, &str)] = &[
    ("0", "done"),
    ("1", "an error (bad input, a session that cannot be opened, a failed write, ...)"),
    ("2", "a command line that cannot be run as given (unknown flag, bad value, an output whose format cannot be told)"),
];

/// The environment: the end of `labelrest --help`, and the man page's
/// ENVIRONMENT section.
const ENVIRONMENT: &[(&str, &str)] = &[
    ("LABELREST_SESSIONS", "the sessions folder when --sessions is not given"),
    ("LABELREST_STORE", "the PostgreSQL store when --store is not given"),
    ("LABELREST_LOG", "the log file (default: labelrest.log in the platform cache folder)"),
    ("LABELREST_KEYS", "the key file of the workstation (default: keys.toml in the platform config folder)"),
    ("NO_COLOR", "set and not empty: no colour anywhere"),
    ("CLICOLOR_FORCE", "set and not 0: colour even when the output is not a terminal (NO_COLOR wins)"),
    ("RUST_LOG", "the log's level and filter (default info)"),
];

/// The end of `labelrest --help`: exit codes and the environment.
fn after_help() -> String {
    let table = |rows: &[(&str, &str)]| {
        let w = rows.iter().map(|r| r.0.len()).max().unwrap_or(0);
        rows.iter().map(|(k, v)| format!("  {k:<w$}  {v}")).collect::<Vec<_>>().join("\n")
    };
    format!("Exit status:\n{}\n\nEnvironment:\n{}", table(EXIT_STATUS), table(ENVIRONMENT))
}

#[derive(Parser, Debug)]
#[command(
    name = "labelrest",
    version,
    about = "Label a few, the model labels the rest: text classification with a person in the loop, in the terminal",
    after_long_help = after_help()
)]
pub struct Cli {
    /// Folder of the sessions (default: $LABELREST_SESSIONS, else ./sessions when it exists, else the platform data folder).
    #[arg(long, global = true, value_name = "DIR")]
    pub sessions: Option<PathBuf>,
    /// Keep sessions in a PostgreSQL database instead of SQLite files, shared by annotators on several machines: postgres://USER@HOST/DB (or key=value settings). The sessions folder then holds only this machine's caches.
    #[arg(long, global = true, value_name = "URL", env = "LABELREST_STORE", hide_env_values = true)]
    pub store: Option<String>,
    /// Print only what the command is for (a listing, a table, a script) and errors: no progress, no summaries.
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    pub quiet: bool,
    /// Also print the log's lines (labelrest's from debug on) on standard error; the workstation keeps them in the log file.
    #[arg(short, long, global = true)]
    pub verbose: bool,
    #[command(subcommand)]
    pub command: Command,
}

impl Cli {
    pub fn verbosity(&self) -> Verbosity {
        if self.quiet {
            Verbosity::Quiet
        } else if self.verbose {
            Verbosity::Verbose
        } else {
            Verbosity::Normal
        }
    }
}

impl Command {
    /// The full-screen workstation (which never logs to the screen).
    pub fn is_workstation(&self) -> bool {
        matches!(self, Command::Label { .. } | Command::Demo { .. })
    }
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Make a session from a CSV, TSV, JSONL or Prodigy JSONL file.
    New(NewArgs),
    /// List the sessions, or remove one (`sessions rm NAME`).
    #[command(args_conflicts_with_subcommands = true)]
    Sessions {
        /// The listing as one JSON array (name, path, rows, test_rows, labelled, iterations, last_opened (null if never opened to work on), open_by_pid, open_by (pid and annotator of every process at work), error).
        #[arg(long)]
        json: bool,
        #[command(subcommand)]
        action: Option<SessionsAction>,
    },
    /// Open a session in the labeling workstation (full-screen terminal UI).
    Label {
        /// Session name.
        name: String,
        #[command(flatten)]
        role: RoleArgs,
    },
    /// Open a ready session on the bundled demo data (banking questions) with the bundled model.
    Demo {
        /// Start the demo session afresh.
        #[arg(long)]
        reset: bool,
        /// Who is labelling (recorded with every label; default the login name).
        #[arg(long)]
        annotator: Option<String>,
    },
    /// Write every row with a label: the person's where there is one, the model's elsewhere.
    Export(ExportArgs),
    /// Train on the session's labels, predict every row and store the ranking (headless).
    Retrain {
        /// The session to train.
        name: String,
    },
    /// Label a new file with the session's model (streaming, resumable after an interruption), with probability and entropy columns.
    Predict(PredictArgs),
    /// The person's labels, least likely first under a model trained without them (from the last retrain).
    Review {
        /// The session whose labels are reviewed.
        name: String,
        /// How many to list.
        #[arg(long, default_value_t = 20)]
        top: usize,
    },
    /// Give labels headlessly: reads `ROW_ID<TAB>LABEL` lines on standard input, prints `ok ROW_ID` once each is on disk (`ok ROW_ID<TAB>replaced<TAB>OLD_LABEL<TAB>ITS_ANNOTATOR` when it replaced a different label the row had, the annotator empty for a seed label; `held ROW_ID ANNOTATOR`, not labelled, for a row in another annotator's batch); `next [N]` holds the next batch for this annotator and prints it (`row<TAB>ID<TAB>PREDICTION<TAB>TEXT` lines, then `end`); with --adjudicator, `disputes` prints the rows annotators disagree on that you may settle (`dispute<TAB>ID<TAB>ANNOTATOR<TAB>LABEL<TAB>ANNOTATOR<TAB>LABEL...<TAB>TEXT` lines, then `end`) and `adjudicate ROW_ID<TAB>LABEL` settles one (`ok ROW_ID`; `settled ROW_ID` when it was adjudicated already, `not-disputed ROW_ID` when it has no disagreement, `yours ROW_ID` when you gave one of its labels: another adjudicator settles it); a label for an adjudicated row answers `adjudicated ROW_ID ADJUDICATOR`, for a row sent to two that two others labelled `labelled ROW_ID ANNOTATOR,ANNOTATOR`. A line it cannot take (an unknown row id or label, a malformed line) ends it with exit status 1 and one line naming it (`<stdin>:N: ...`); every label answered `ok` before it is on disk.
    Annotate {
        /// The session to label.
        name: String,
        #[command(flatten)]
        role: RoleArgs,
    },
    /// Labels per annotator and source, agreement between annotators on the rows sent to two (--overlap), labelled rows per label (not the model's), and each label's held-out scores under the last model when the session has a test set.
    Stats {
        /// The session.
        name: String,
        /// One JSON object instead of the table.
        #[arg(long)]
        json: bool,
    },
    /// Replay the paper's experiment: gold labels stand in for the person.
    Simulate(SimulateArgs),
    /// Measure import, embedding and refresh speed.
    Bench(crate::bench::BenchArgs),
    /// Print a shell completion script: `labelrest completions bash > ~/.local/share/bash-completion/completions/labelrest`.
    Completions {
        /// The shell.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff) on standard output, or write one page per subcommand into --out DIR.
    Man {
        /// Folder to write labelrest.1 and labelrest-SUBCOMMAND.1 into.
        #[arg(long, value_name = "DIR")]
        out: Option<PathBuf>,
    },
}

#[derive(Subcommand, Debug)]
pub enum SessionsAction {
    /// Delete a session (asks first).
    Rm {
        /// The session to delete.
        name: String,
        /// Do not ask.
        #[arg(long)]
        yes: bool,
    },
}

/// Who labels in `label` and `annotate`, and as what.
#[derive(Args, Debug)]
pub struct RoleArgs {
    /// Who is labelling (recorded with every label; default the login name).
    #[arg(long)]
    annotator: Option<String>,
    /// This person settles the rows two annotators labelled differently (the disputes view, `D`).
    #[arg(long)]
    adjudicator: bool,
    /// Send this share of the rows (0 to 1) to two annotators from now on (the session's setting; see `new --overlap`).
    #[arg(long, value_name = "F", value_parser = parse_share)]
    overlap: Option<f64>,
}

impl RoleArgs {
    fn role(&self) -> crate::ui::Role<'_> {
        crate::ui::Role { annotator: self.annotator.as_deref(), adjudicator: self.adjudicator, overlap: self.overlap }
    }
}

#[derive(Args, Debug)]
pub struct NewArgs {
    /// Session name (a plain name, no path separators).
    pub name: String,
    /// The rows to label: CSV, TSV, JSONL or Prodigy's JSONL.
    #[arg(long)]
    pub data: PathBuf,
    /// Format of --data (default: from the extension; a .jsonl file of Prodigy's annotations is told by its content); also of --test where its extension names none.
    #[arg(long, value_enum)]
    pub format: Option<Format>,
    /// Column (or JSON field) with the text.
    #[arg(long, default_value = "text")]
    pub text_col: String,
    /// Column with labels (seed or gold, see --label-col-is).
    #[arg(long)]
    pub label_col: Option<String>,
    /// What the label column holds: seed labels the model learns from, or gold labels used only to measure it.
    #[arg(long, value_enum, default_value = "seed")]
    pub label_col_is: LabelColIs,
    /// The label set, comma-separated.
    #[arg(long, conflicts_with = "labels_file")]
    pub labels: Option<String>,
    /// The label set, one label a line, optionally `label<TAB>description` (`# ...` lines are comments).
    #[arg(long)]
    pub labels_file: Option<PathBuf>,
    /// A held-out file with gold labels, used only for metrics.
    #[arg(long)]
    pub test: Option<PathBuf>,
    /// Label column of the test file (default: --label-col, else `label`).
    #[arg(long)]
    pub test_label_col: Option<String>,
    /// Encoder: a folder (Hugging Face BERT layout) or a name (`owner/name`) in the local Hugging Face cache; default the bundled all-MiniLM-L6-v2.
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// Query strategy.
    #[arg(long, value_enum, default_value = "margin")]
    pub strategy: Strategy,
    /// Decisions per batch before a retrain.
    #[arg(long, default_value_t = 10, value_parser = crate::settings::parse_count)]
    pub batch: usize,
    /// Self-training on the unlabelled pool.
    #[arg(long, value_enum, default_value = "auto")]
    pub self_training: SelfTraining,
    /// Device: auto (CUDA when built with `--features cuda` and device 0 opens, else the CPU), cpu or cuda.
    #[arg(long, value_enum, default_value = "auto")]
    pub device: crate::settings::DeviceSetting,
    /// How the model learns: auto (the encoder is fine-tuned behind the head on the device's schedule), head (only the head), finetune or contrastive (a fine-tune method).
    #[arg(long, value_enum, default_value = "auto")]
    pub mode: crate::model::finetune::Mode,
    #[command(flatten)]
    pub finetune: crate::store::FinetuneOverrides,
    /// The share of rows (0 to 1) sent to two annotators, for agreement (see `stats`); their disagreements wait for an adjudicator.
    #[arg(long, value_name = "F", default_value_t = 0.0, value_parser = parse_share)]
    pub overlap: f64,
    /// CSV: texts may span lines (quoted fields with line breaks). Without
    /// it, a quoted field that takes in lines that look like records is
    /// refused as a stray quote.
    #[arg(long)]
    pub allow_multiline: bool,
    /// Replace a session of the same name.
    #[arg(long)]
    pub force: bool,
}

#[derive(Args, Debug)]
pub struct ExportArgs {
    /// The session to export.
    pub name: String,
    /// Output: a file (.csv, .jsonl, .json for Label Studio), or a folder for --format hf.
    #[arg(long)]
    pub out: PathBuf,
    /// Format (default: from the extension of --out: .csv, .jsonl/.ndjson, .json = label-studio).
    #[arg(long, value_enum)]
    pub format: Option<ExportFormat>,
    /// Only rows labelled by a person (or seeded).
    #[arg(long)]
    pub only_labelled: bool,
    /// Leave the label empty (source `none`) where the model's calibrated probability is below P.
    #[arg(long, value_name = "P")]
    pub min_confidence: Option<f32>,
    /// With --min-confidence: leave those rows out instead.
    #[arg(long, requires = "min_confidence")]
    pub drop_below: bool,
    /// CSV: put a quote before cells that start with =, +, -, @, a tab or a carriage return, so that a spreadsheet shows them as text instead of running them (texts and labels then differ from the input). CSV only.
    #[arg(long)]
    pub spreadsheet_safe: bool,
}

#[derive(Args, Debug)]
pub struct PredictArgs {
    /// The session whose model labels the file.
    pub name: String,
    /// Rows to label (CSV, TSV, JSONL or Prodigy's JSONL).
    #[arg(long)]
    pub input: PathBuf,
    /// Output CSV or JSONL (from the extension): line (the record's line in the input), text, label, probability, entropy.
    #[arg(long)]
    pub out: PathBuf,
    /// The input's text column (CSV/TSV header or JSONL key).
    #[arg(long, default_value = "text")]
    pub text_col: String,
    /// The input's format (default: from the extension).
    #[arg(long, value_enum)]
    pub format: Option<Format>,
}

#[derive(Args, Debug)]
pub struct SimulateArgs {
    /// The pool: a CSV, TSV or JSONL file with a gold label on every row (the simulated person's answers).
    #[arg(long)]
    pub train: PathBuf,
    /// The held-out set the curves are measured on: a CSV, TSV or JSONL file with a gold label on every row.
    #[arg(long)]
    pub test: PathBuf,
    /// Strategies, comma-separated: margin (breaking-ties), entropy, least-confidence, random, diverse.
    #[arg(long, default_value = "margin")]
    pub strategy: String,
    /// Labels per batch: the model retrains after each.
    #[arg(long, default_value_t = 10, value_parser = crate::settings::parse_count)]
    pub batch: usize,
    /// Labels the simulated person gives before the run stops.
    #[arg(long, default_value_t = 150, value_parser = crate::settings::parse_count)]
    pub max_labels: usize,
    /// Runs per strategy, each with its own random seed (the table gives mean ± sd over them).
    #[arg(long, default_value_t = 3, value_parser = crate::settings::parse_count)]
    pub seeds: usize,
    /// Start from label-name predictions (on) or a random first batch (off).
    #[arg(long, default_value = "on", value_parser = ["on", "off"])]
    pub zero_shot: String,
    /// Self-training on the unlabelled pool (auto: from 20 classes, or 3 when the encoder is fine-tuned).
    #[arg(long, value_enum, default_value = "auto")]
    pub self_training: SelfTraining,
    /// Weight of one label-prompt pseudo-example per class, fading as the class gets labels (0: none).
    #[arg(long, default_value_t = crate::learn::EngineConfig::default().prior_weight)]
    pub prior_weight: f32,
    /// Pool rows per class the zero-shot head is surest of that share the label prompt's prior weight (0: the prompt alone, as the workstation).
    #[arg(long, default_value_t = crate::learn::EngineConfig::default().prior_rows)]
    pub prior_rows: usize,
    /// Self-training: pseudo-labels per predicted class.
    #[arg(long, default_value_t = crate::learn::EngineConfig::default().pseudo_per_class)]
    pub pseudo_per_class: usize,
    /// Self-training: weight of a pseudo-label (a person's label weighs 1).
    #[arg(long, default_value_t = crate::learn::EngineConfig::default().pseudo_weight)]
    pub pseudo_weight: f32,
    /// Label set with descriptions (`label<TAB>description`).
    #[arg(long)]
    pub labels_file: Option<PathBuf>,
    /// Column (or JSON field) with the text, in both files.
    #[arg(long, default_value = "text")]
    pub text_col: String,
    /// Column (or JSON field) with the gold label, in both files.
    #[arg(long, default_value = "label")]
    pub label_col: String,
    /// Head training: full-batch epochs.
    #[arg(long, default_value_t = labelrest_default_head().epochs)]
    pub head_epochs: usize,
    /// The zero-shot head's prior log-odds against the head trained on the labels: the model mixes the two by the zero-shot head's posterior weight, from these odds and the labels' cross-validated evidence (0: the trained head alone).
    #[arg(long, default_value_t = crate::learn::EngineConfig::default().zero_shot_odds, value_parser = crate::settings::parse_non_negative_f32)]
    pub zero_shot_odds: f32,
    /// Head training: AdamW learning rate.
    #[arg(long, default_value_t = labelrest_default_head().lr)]
    pub head_lr: f64,
    /// Head training: AdamW weight decay.
    #[arg(long, default_value_t = labelrest_default_head().weight_decay)]
    pub head_wd: f64,
    /// Head training: L2 pull towards the zero-shot head.
    #[arg(long, default_value_t = labelrest_default_head().anchor, value_parser = crate::settings::parse_non_negative)]
    pub head_anchor: f64,
    /// Head training: the pull towards the zero-shot head fades as a class gets labels, as 1 / (1 + its labels)^F (0: no fading).
    #[arg(long, default_value_t = labelrest_default_head().anchor_fade, value_parser = crate::settings::parse_non_negative)]
    pub head_anchor_fade: f64,
    /// Head training: start from the zero-shot head (prior) or from zero (the default, as in the workstation).
    #[arg(long, default_value = "zero", value_parser = ["prior", "zero"])]
    pub head_init: String,
    /// Dataset name in the outputs (default: the train file's folder).
    #[arg(long)]
    pub name: Option<String>,
    /// Encoder: a folder (Hugging Face BERT layout) or a name (`owner/name`) in the local Hugging Face cache; default the bundled all-MiniLM-L6-v2.
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// Device: auto (CUDA when built with it and device 0 opens, else the CPU), cpu or cuda.
    #[arg(long, value_enum, default_value = "auto")]
    pub device: crate::settings::DeviceSetting,
    /// Output folder: curves.csv, per_class.csv, predictions.csv, curves.svg, curves.png, table.md (and review.csv, review.md with --noise).
    #[arg(long)]
    pub out: PathBuf,
    /// How the model learns: auto (fine-tunes the encoder during the run, on the workstation's schedule), head, finetune, contrastive.
    #[arg(long, value_enum, default_value = "auto")]
    pub mode: crate::model::finetune::Mode,
    /// Seconds the simulated person takes per label: decides at which batch a CPU fine-tune lands.
    #[arg(long, default_value_t = 4.0, value_parser = crate::settings::parse_positive)]
    pub pace: f64,
    /// Threads (default: the machine's cores).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Swap every fine-tuned encoder in, without the workstation's check on the labels it has not seen.
    #[arg(long)]
    pub swap_always: bool,
    /// The share of labels the simulated person gets wrong (a random other label); measures the review (review.csv, review.md).
    #[arg(long, default_value_t = 0.0, value_name = "P")]
    pub noise: f64,
    #[command(flatten)]
    pub finetune: crate::store::FinetuneOverrides,
    /// Embedding cache folder (default OUT/cache); share one between runs on the same data.
    #[arg(long)]
    pub cache: Option<PathBuf>,
}

/// A share from 0 to 1 (`--overlap`).
fn parse_share(s: &str) -> std::result::Result<f64, String> {
    let v: f64 = s.trim().parse().map_err(|_| format!("'{s}' is not a number"))?;
    if (0.0..=1.0).contains(&v) {
        Ok(v)
    } else {
        Err(format!("{v} is not a share of the rows: give a number from 0 to 1, e.g. 0.1"))
    }
}

fn labelrest_default_head() -> crate::model::HeadConfig {
    crate::model::HeadConfig::default()
}

fn sessions_dir(cli: &Cli) -> Result<store::Store> {
    let local = store::sessions_dir(cli.sessions.as_deref())?;
    // An empty LABELREST_STORE is unset (as an empty LABELREST_SESSIONS is);
    // an empty --store is a mistake.
    let from_env = std::env::var("LABELREST_STORE").ok();
    if let Some(v) = cli.store.as_deref().filter(|v| v.trim().is_empty()) {
        if from_env.as_deref() != Some(v) {
            return Err(usage("--store is empty; give postgres://USER@HOST/DB, or leave it out for sessions in SQLite files"));
        }
    }
    let pg = cli.store.as_deref().map(str::trim).filter(|s| !s.is_empty()).map(str::to_string);
    if let Some(url) = &pg {
        if !(url.starts_with("postgres://") || url.starts_with("postgresql://") || url.contains('=')) {
            return Err(usage(format!(
                "--store '{}' is not a PostgreSQL address; give postgres://USER@HOST/DB",
                crate::data::display_safe(&store::display_url(url))
            )));
        }
    }
    Ok(store::Store { local, pg })
}

pub fn run(cli: Cli) -> Result<()> {
    // The scripts and pages need no sessions folder.
    let sessions = if matches!(cli.command, Command::Completions { .. } | Command::Man { .. }) {
        store::Store { local: PathBuf::new(), pg: None }
    } else {
        let s = sessions_dir(&cli)?;
        match &s.pg {
            None => tracing::debug!("sessions folder {}", s.local.display()),
            Some(_) => tracing::debug!("sessions folder {} (this machine's caches; the sessions in {})", s.local.display(), s.describe()),
        }
        s
    };
    match cli.command {
        Command::Completions { shell } => cmd_completions(shell),
        Command::Man { out } => cmd_man(out.as_deref()),
        Command::New(a) => cmd_new(&sessions, a),
        Command::Sessions { json, action } => match action {
            None => cmd_sessions(&sessions, json),
            Some(SessionsAction::Rm { name, yes }) => cmd_rm(&sessions, &name, yes),
        },
        Command::Label { name, role } => crate::ui::run(&sessions, &name, &role.role()),
        Command::Demo { reset, annotator } => match ensure_demo(&sessions, reset)? {
            Some(name) => {
                crate::ui::run(&sessions, &name, &crate::ui::Role { annotator: annotator.as_deref(), adjudicator: false, overlap: None })
            }
            // The person said no to the reset: nothing more (as `sessions rm`).
            None => Ok(()),
        },
        Command::Export(a) => cmd_export(&sessions, a),
        Command::Retrain { name } => {
            let s = Session::open_shared(&sessions, &name)?;
            let bar = term::progress_bar(1);
            bar.set_style(
                indicatif::ProgressStyle::with_template("{msg} {bar:40} {pos}/{len}")
                    .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
            );
            let u = worker::retrain_headless(&s, &mut |stage, done, total| {
                bar.set_message(stage.to_string());
                bar.set_length(total as u64);
                bar.set_position(done as u64);
            })?;
            bar.finish_and_clear();
            let r = &u.record;
            let mut line = format!("iteration {}: {} labels, mean entropy {:.3}", u.iteration, u.n_labels, r.mean_entropy);
            if let (Some(a), Some(f)) = (r.accuracy, r.macro_f1) {
                line.push_str(&format!(", held-out accuracy {a:.3}, macro-F1 {f:.3}"));
            }
            say!("{line}, {:.0} ms", r.total_ms);
            Ok(())
        }
        Command::Predict(a) => cmd_predict(&sessions, a),
        Command::Review { name, top } => cmd_review(&sessions, &name, top),
        Command::Annotate { name, role } => cmd_annotate(&sessions, &name, &role.role()),
        Command::Stats { name, json } => cmd_stats(&sessions, &name, json),
        Command::Simulate(a) => cmd_simulate(a),
        Command::Bench(a) => crate::bench::run(a, &sessions),
    }
}

/// The format of an input file as `new` and `predict` read it: `--format`,
/// else from the extension (and the content, for Prodigy's JSONL); an
/// extension that names no format is a usage error.
fn check_input_format(path: &Path, given: Option<Format>) -> Result<()> {
    if given.is_none() {
        Format::from_path(path).map_err(|e| usage(e.to_string()))?;
    }
    Ok(())
}

fn cmd_export(sessions: &store::Store, a: ExportArgs) -> Result<()> {
    // Usage first: nothing is opened for a command line that cannot run.
    let format = ExportFormat::resolve(&a.out, a.format).map_err(usage)?;
    if let Some(p) = a.min_confidence {
        if !(0.0..=1.0).contains(&p) {
            return Err(usage(format!("--min-confidence must be between 0 and 1, not {p}")));
        }
    }
    if a.spreadsheet_safe && format != ExportFormat::Csv {
        return Err(usage(format!("--spreadsheet-safe is for CSV (a spreadsheet opens it); this export is {}", format.name())));
    }
    // The export on standard output: the summary and notes go to standard error.
    if crate::output::own_descriptor(&a.out) == Some(1) {
        crate::term::say_on_stderr();
    }
    let s = Session::open_read_only(sessions, &a.name)?;
    tracing::debug!("session {} at {}", a.name, s.dir.display());
    let opts = ExportOptions {
        format: Some(format),
        only_labelled: a.only_labelled,
        min_confidence: a.min_confidence,
        drop_below: a.drop_below,
        spreadsheet_safe: a.spreadsheet_safe,
    };
    let r = export::export(&s, &a.out, &opts)?;
    let what = match format {
        ExportFormat::Hf => format!("{} (data.jsonl, dataset_info.json, README.md)", a.out.display()),
        _ => a.out.display().to_string(),
    };
    let team = if r.adjudicated + r.disputed > 0 {
        format!(", {} adjudicated, {} disputed (no label until adjudicated)", r.adjudicated, r.disputed)
    } else {
        String::new()
    };
    say!(
        "wrote {} rows to {what} as {} ({} person, {} seed{team}, {} model, {} unlabelled)",
        r.rows,
        format.name(),
        r.person,
        r.seed,
        r.model,
        r.none
    );
    if !r.other_data_files.is_empty() {
        say!(
            "note: {} holds other data files ({}): `load_dataset` reads every data file of a folder; give the export a folder of its own",
            a.out.display(),
            r.other_data_files.iter().take(3).map(|n| data::display_safe(n)).collect::<Vec<_>>().join(", ")
        );
    }
    if format == ExportFormat::Prodigy && r.model > 0 {
        say!(
            "Prodigy: the model's {} labels are tasks to review, with no answer; `prodigy db-in` would store them as accepted (--only-labelled writes yours alone)",
            r.model
        );
    }
    if format == ExportFormat::LabelStudio {
        say!(
            "Label Studio: the labels are for <Choices name=\"{}\" toName=\"{}\"> on <Text name=\"{}\" value=\"$text\"/> (README.md, \"Formats\")",
            export::LABEL_STUDIO_FROM,
            export::LABEL_STUDIO_TO,
            export::LABEL_STUDIO_TO
        );
    }
    // The model whose labels were written: the last retrain's, and the
    // labels it learnt from (labels given since have not reached it).
    let last = s.iterations::<serde::de::IgnoredAny>().unwrap_or_else(|e| {
        tracing::warn!("cannot read the iterations: {e:#}");
        Vec::new()
    });
    let last = last.last();
    if last.is_none() && r.none > 0 && r.model == 0 {
        say!(
            "note: no model has labelled the rows yet: `labelrest retrain {}` (or the workstation) trains one",
            data::display_safe(&s.name)
        );
    }
    if let Some(e) = r.model_expected {
        let above = a.min_confidence.map(|p| format!(" (probability at least {p})")).unwrap_or_default();
        // (No temperature is fitted below `MIN_LABELS` labels: the model's own.)
        let learnt = last.map_or(r.learnt_from, |it| it.n_labels.max(0) as usize);
        let how = if learnt >= crate::learn::calibration::MIN_LABELS {
            "calibrated on your labels".to_string()
        } else {
            format!("the model's own probabilities: calibrated from {} labels on", crate::learn::calibration::MIN_LABELS)
        };
        say!("the model's {} labels{above}: about {:.0}% expected right ({how})", r.model, e * 100.0);
        // The calibration sees only mistakes among the labels given: the
        // rows of a label nobody gave are out of its sight.
        if learnt >= crate::learn::calibration::MIN_LABELS && r.labels_used < r.label_set {
            let unused = r.label_set - r.labels_used;
            say!(
                "note: your labels use {} of the {} labels; the model's mistakes on rows of the other {unused} cannot be seen, so the estimate may be high",
                r.labels_used,
                r.label_set
            );
        }
    }
    if let Some(p) = a.min_confidence {
        if a.drop_below {
            say!("{} rows below {p} left out", r.below);
        } else {
            say!("{} rows below {p} left without a label (source none; --drop-below leaves them out)", r.below);
        }
    }
    if r.formula_cells > 0 && !a.spreadsheet_safe {
        let n = crate::data::thousands(r.formula_cells);
        let (cells, start) = if r.formula_cells == 1 { ("cell", "starts") } else { ("cells", "start") };
        say!(
            "note: {n} {cells} {start} with =, +, -, @, a tab or a carriage return; a spreadsheet may run them as formulas (--spreadsheet-safe neutralises them)"
        );
    } else if r.formula_cells > 0 {
        let (cells, start, were) = if r.formula_cells == 1 { ("cell", "starts", "was") } else { ("cells", "start", "were") };
        say!("{} {cells} that {start} like a formula {were} neutralised with a leading quote", crate::data::thousands(r.formula_cells));
    }
    if r.model > 0 {
        note_if_model_behind(&s);
    }
    Ok(())
}

fn cmd_completions(shell: clap_complete::Shell) -> Result<()> {
    let mut cmd = <Cli as clap::CommandFactory>::command();
    let mut out = std::io::stdout().lock();
    clap_complete::generate(shell, &mut cmd, "labelrest", &mut out);
    out.flush()?;
    Ok(())
}

/// The man page on standard output, or one page per command and
/// subcommand (`labelrest.1`, `labelrest-export.1`, `labelrest-sessions-rm.1`,
/// ...) written into `out`.
fn cmd_man(out: Option<&Path>) -> Result<()> {
    let mut cmd = <Cli as clap::CommandFactory>::command().disable_help_subcommand(true);
    cmd.build();
    let Some(dir) = out else {
        let mut buf = Vec::new();
        man_page(&cmd, &mut buf)?;
        let mut o = std::io::stdout().lock();
        o.write_all(&buf)?;
        o.flush()?;
        return Ok(());
    };
    if dir.exists() && !dir.is_dir() {
        return Err(usage(format!("--out {}: it is {}; man --out takes a folder", dir.display(), crate::output::what_is(dir))));
    }
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    fn pages(cmd: &clap::Command, dir: &Path, written: &mut Vec<PathBuf>) -> Result<()> {
        for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
            pages(sub, dir, written)?;
        }
        let path = dir.join(clap_mangen::Man::new(cmd.clone()).get_filename());
        let mut w = crate::output::AtomicWriter::create(&path)?;
        man_page(cmd, &mut w).with_context(|| format!("cannot write {}", path.display()))?;
        w.commit()?;
        written.push(path);
        Ok(())
    }
    let mut written = Vec::new();
    pages(&cmd, dir, &mut written)?;
    say!("wrote {} man pages to {}", written.len(), dir.display());
    Ok(())
}

/// One man page: clap_mangen's sections, with the exit codes and the
/// environment as EXIT STATUS and ENVIRONMENT (the top page; every page
/// names them as the top page does) in place of clap_mangen's EXTRA, a
/// tagged list each rather than lines run together.
fn man_page(cmd: &clap::Command, w: &mut dyn Write) -> std::io::Result<()> {
    let man = clap_mangen::Man::new(cmd.clone());
    man.render_title(w)?;
    man.render_name_section(w)?;
    man.render_synopsis_section(w)?;
    man.render_description_section(w)?;
    if cmd.get_arguments().any(|a| !a.is_hide_set()) {
        man.render_options_section(w)?;
    }
    if cmd.get_subcommands().any(|s| !s.is_hide_set()) {
        man.render_subcommands_section(w)?;
    }
    let mut roff = roff::Roff::new();
    for (title, rows) in [("EXIT STATUS", EXIT_STATUS), ("ENVIRONMENT", ENVIRONMENT)] {
        roff.control("SH", [title]);
        for (k, v) in rows {
            roff.control("TP", []);
            roff.text([roff::bold(*k)]);
            roff.text([roff::roman(*v)]);
        }
    }
    roff.to_writer(w)?;
    if cmd.get_version().is_some() {
        man.render_version_section(w)?;
    }
    Ok(())
}

fn cmd_new(sessions: &store::Store, a: NewArgs) -> Result<()> {
    check_input_format(&a.data, a.format)?;
    if let Some(t) = &a.test {
        // The held-out file's extension names its format; --format (which
        // is --data's first) only where it names none.
        if a.format.is_none() && Format::from_path(t).is_err() {
            return Err(usage(format!(
                "{}: cannot tell the held-out file's format from its name; name it .csv, .tsv or .jsonl (or give --format, which then applies to --data too)",
                t.display()
            )));
        }
    }
    let labels = match (&a.labels, &a.labels_file) {
        (Some(l), _) => Some(data::parse_label_list(l).map_err(usage)?),
        (None, Some(f)) => Some(data::read_labels_file(f)?),
        (None, None) => None,
    };
    let model = match &a.model {
        Some(m) => crate::model::assets::resolve_model(m)?.display().to_string(),
        None => "bundled".to_string(),
    };
    let spec = ImportSpec {
        data: a.data.clone(),
        format: a.format,
        columns: Columns { text: a.text_col.clone(), label: a.label_col.clone(), allow_multiline: a.allow_multiline },
        label_col_is: a.label_col_is,
        labels,
        test: a.test.clone(),
        test_label_col: a.test_label_col.clone(),
        settings: Settings {
            model,
            strategy: a.strategy,
            batch: a.batch,
            self_training: a.self_training,
            device: a.device,
            mode: a.mode,
            seed: 0,
            finetune: a.finetune.clone(),
            overlap: a.overlap,
        },
    };
    let t = std::time::Instant::now();
    let (r, truncated) = crate::worker::create_session(sessions, &a.name, &spec, a.force)?;
    say!(
        "session '{}': {} rows, {} labels{}{}{}{}{}{}{} in {:.1}s -> {}",
        a.name,
        r.pool_rows,
        r.labels,
        if r.seed_labels > 0 { format!(", {} seed labels", r.seed_labels) } else { String::new() },
        if r.gold_labels > 0 { format!(", {} gold labels (never shown to the model)", r.gold_labels) } else { String::new() },
        if r.test_rows > 0 { format!(", {} held-out test rows", r.test_rows) } else { String::new() },
        match (r.skipped_empty, r.skipped_lines.as_slice()) {
            (0, _) => String::new(),
            (n, []) => format!(", {n} empty texts skipped"),
            (n, lines) => format!(
                ", {n} empty text{} skipped (line{} {}{})",
                if n == 1 { "" } else { "s" },
                if lines.len() == 1 { "" } else { "s" },
                lines.iter().map(|l| l.to_string()).collect::<Vec<_>>().join(", "),
                if n as usize > lines.len() { ", ..." } else { "" }
            ),
        },
        match r.multi_label {
            0 => String::new(),
            1 => ", 1 row with several accepted labels (the first taken)".to_string(),
            n => format!(", {n} rows with several accepted labels (the first taken)"),
        },
        if r.model_labels > 0 {
            format!(", {} rows with labelrest's model's label read unlabelled (guesses, not answers)", r.model_labels)
        } else {
            String::new()
        },
        match truncated {
            Some((n, limit)) if n > 0 => {
                format!(", {n} text{} longer than the model's {limit} tokens (read up to there)", if n == 1 { "" } else { "s" })
            }
            _ => String::new(),
        },
        t.elapsed().as_secs_f64(),
        match &sessions.pg {
            Some(_) => sessions.describe(),
            None => store::session_dir(&sessions.local, &a.name).display().to_string(),
        }
    );
    if r.seed_conflicts > 0 {
        say!(
            "note: {} seed label{} on a text that came earlier with another label (the first at {}:{}): the model learns both; `labelrest review {}` lists the labels it doubts",
            r.seed_conflicts,
            if r.seed_conflicts == 1 { " is" } else { "s are" },
            data::display_safe(&a.data.display().to_string()),
            r.seed_conflict_line.unwrap_or(0),
            data::display_safe(&a.name)
        );
    }
    if r.test_in_pool > 0 {
        say!(
            "note: {} of the {} test rows have the same text as a pool row (the first at {}:{}): held-out scores count them as unseen, though the model may learn them",
            r.test_in_pool,
            r.test_rows,
            data::display_safe(&a.test.as_ref().map(|t| t.display().to_string()).unwrap_or_default()),
            r.test_in_pool_line.unwrap_or(0)
        );
    }
    // A `label` column is read only when asked for: say so, since its
    // labels would otherwise be lost without a word.
    if a.label_col.is_none() && a.text_col != "label" {
        let format = a.format.map(Ok).unwrap_or_else(|| Format::detect(&a.data));
        if format.is_ok_and(|f| data::has_column(&a.data, f, "label")) {
            say!(
                "note: {} has a column named 'label', not read; --label-col label reads it as seed labels",
                data::display_safe(&a.data.display().to_string())
            );
        }
    }
    Ok(())
}

/// One session of `sessions --json`: the facts of the table (an
/// unreadable session has `error` and nulls for what could not be read).
#[derive(serde::Serialize)]
struct ListedJson<'a> {
    name: &'a str,
    path: String,
    rows: Option<i64>,
    test_rows: Option<i64>,
    labelled: Option<i64>,
    iterations: Option<i64>,
    last_opened: Option<&'a str>,
    open_by_pid: Option<i32>,
    /// Every process at work on it: pid and annotator.
    open_by: Vec<serde_json::Value>,
    error: Option<&'a str>,
}

fn cmd_sessions(sessions: &store::Store, json: bool) -> Result<()> {
    let list = store::list(sessions)?;
    if json {
        let items: Vec<ListedJson> = list
            .iter()
            .map(|l| {
                let s = l.summary.as_ref().ok();
                ListedJson {
                    name: &l.name,
                    path: l.path.display().to_string(),
                    rows: s.map(|s| s.rows),
                    test_rows: s.map(|s| s.test_rows),
                    labelled: s.map(|s| s.labelled),
                    iterations: s.map(|s| s.iterations),
                    last_opened: s.and_then(|s| s.last_opened.as_deref()),
                    open_by_pid: l.open_by.as_ref().map(|(pid, _)| *pid),
                    open_by: l.at_work.iter().map(|(pid, _, who)| serde_json::json!({"pid": pid, "annotator": who})).collect(),
                    error: l.summary.as_ref().err().map(|e| e.as_str()),
                }
            })
            .collect();
        let mut out = std::io::stdout().lock();
        serde_json::to_writer_pretty(&mut out, &items)?;
        writeln!(out)?;
        return Ok(());
    }
    if list.is_empty() {
        say!("no sessions in {}", sessions.describe());
        return Ok(());
    }
    // The name column as wide as the widest name, in terminal columns.
    let nw = list.iter().map(|l| term::columns(&l.name)).max().unwrap_or(0).max(20);
    let header = format!("{} {:>9} {:>9} {:>10}  {:<24} path", term::pad("name", nw), "rows", "labelled", "iterations", "last opened");
    println!("{}", term::paint(Stream::Stdout, Paint::Header, &header));
    for l in list {
        let open = if l.at_work.is_empty() {
            String::new()
        } else {
            let who: Vec<String> =
                l.at_work.iter().map(|(pid, _, a)| if a.is_empty() { format!("pid {pid}") } else { format!("pid {pid} as {a}") }).collect();
            format!("  (open in {})", who.join(", "))
        };
        match &l.summary {
            Ok(s) => println!(
                "{} {:>9} {:>9} {:>10}  {:<24} {}{open}",
                term::pad(&s.name, nw),
                s.rows,
                s.labelled,
                s.iterations,
                s.last_opened.as_deref().unwrap_or("never"),
                s.path.display()
            ),
            Err(why) => println!(
                "{} {}  {}{open}",
                term::pad(&l.name, nw),
                term::paint(Stream::Stdout, Paint::Bad, &format!("cannot be read: {why}")),
                l.path.display()
            ),
        }
    }
    Ok(())
}

/// Asks a yes/no question on standard error; only `y` or `yes` is yes.
/// No answer at all (standard input at its end: a script, `</dev/null`) is
/// an error that says how to answer without asking.
fn confirm(question: &str, unasked: &str) -> Result<bool> {
    eprint!("{question} [y/N] ");
    std::io::stderr().flush()?;
    let mut line = String::new();
    if std::io::stdin().lock().read_line(&mut line)? == 0 {
        eprintln!();
        bail!("no answer (standard input ended): {unasked}");
    }
    Ok(matches!(line.trim(), "y" | "Y" | "yes"))
}

fn cmd_rm(sessions: &store::Store, name: &str, yes: bool) -> Result<()> {
    store::validate_name(name)?;
    if !store::exists(sessions, name)? {
        bail!("no session '{name}' in {}", sessions.describe());
    }
    if !yes
        && !confirm(&format!("delete session '{name}' and all its labels?"), &format!("kept '{name}'; --yes removes it without asking"))?
    {
        say!("kept '{name}'");
        return Ok(());
    }
    store::remove(sessions, name)?;
    say!("removed session '{name}'");
    Ok(())
}

fn cmd_annotate(sessions: &store::Store, name: &str, role: &crate::ui::Role) -> Result<()> {
    let s = role.open(sessions, name)?;
    let labels = s.label_set()?;
    let index: std::collections::HashMap<&str, u32> = labels.iter().enumerate().map(|(i, l)| (l.name.as_str(), i as u32)).collect();
    let mut iteration = s.last_iteration()?;
    let mut preds = s.predictions()?;
    let batch = s.settings()?.batch.max(1);
    let mut labelled_since_next = false;
    let stdin = std::io::stdin();
    let mut out = std::io::stdout().lock();
    for (n, line) in stdin.lock().lines().enumerate() {
        let line = line.map_err(|e| {
            let what = if e.kind() == std::io::ErrorKind::InvalidData { "not UTF-8".to_string() } else { e.to_string() };
            anyhow::anyhow!("<stdin>:{}: {what}", n + 1)
        })?;
        // (A byte-order mark that an editor or PowerShell put first is not input.)
        let line = match line.strip_prefix('\u{feff}') {
            Some(rest) if n == 0 => rest.to_string(),
            _ => line,
        };
        let t = line.trim();
        if t.is_empty() {
            continue;
        }
        // `next [N]`: hold the next batch (the model's ranking, rows nobody
        // else holds or labelled) and print it.
        if t == "next" || t.starts_with("next ") {
            let want: usize = match t["next".len()..].trim() {
                "" => batch,
                v => v
                    .parse()
                    .map_err(|_| anyhow::anyhow!("<stdin>:{}: `next` takes a number of rows, not '{}'", n + 1, data::display_safe(v)))?,
            };
            // The batch before is done: the trainer learns from it.
            if labelled_since_next {
                s.ask_retrain()?;
                labelled_since_next = false;
            }
            iteration = s.last_iteration()?;
            preds = s.predictions()?;
            let mut ranked: Vec<(i64, i64)> = preds.values().filter_map(|p| p.rank.map(|r| (r, p.row_id))).collect();
            ranked.sort_unstable();
            // Rows sent to two annotators that wait for this one come first.
            let mut candidates: Vec<i64> = s.resolved()?.waiting_for(s.annotator());
            let first: std::collections::HashSet<i64> = candidates.iter().copied().collect();
            candidates.extend(ranked.into_iter().map(|(_, id)| id).filter(|id| !first.contains(id)));
            let listed: std::collections::HashSet<i64> = candidates.iter().copied().collect();
            // Rows no model ranked yet follow, in file order.
            candidates
                .extend(s.rows()?.into_iter().filter(|r| r.split == crate::store::Split::Pool && !listed.contains(&r.id)).map(|r| r.id));
            for id in s.reserve(&candidates, want)? {
                let predicted = preds.get(&id).map(|p| labels[p.label as usize].name.as_str()).unwrap_or("");
                writeln!(out, "row\t{id}\t{}\t{}", data::display_safe(predicted), one_line(&s.text_of(id)?))?;
            }
            writeln!(out, "end")?;
            out.flush()?;
            continue;
        }
        if t == "disputes" {
            if !role.adjudicator {
                bail!("<stdin>:{}: `disputes` is for the adjudicator (annotate --adjudicator)", n + 1);
            }
            for d in s.resolved()?.disputes_for(s.annotator()) {
                // Names and labels hold no tabs (no control characters).
                let said: Vec<String> = d
                    .labels
                    .iter()
                    .map(|l| {
                        format!(
                            "{}\t{}",
                            data::display_safe(l.annotator.as_deref().unwrap_or("")),
                            data::display_safe(&labels[l.label as usize].name)
                        )
                    })
                    .collect();
                writeln!(out, "dispute\t{}\t{}\t{}", d.row_id, said.join("\t"), one_line(&s.text_of(d.row_id)?))?;
            }
            writeln!(out, "end")?;
            out.flush()?;
            continue;
        }
        let (adjudicate, line) = match line.trim_start().strip_prefix("adjudicate ") {
            Some(rest) if role.adjudicator => (true, rest),
            Some(_) => bail!("<stdin>:{}: `adjudicate` is for the adjudicator (annotate --adjudicator)", n + 1),
            None => (false, line.as_str()),
        };
        let (id, label) = line.split_once('\t').ok_or_else(|| {
            if adjudicate {
                anyhow::anyhow!("<stdin>:{}: expected `adjudicate ROW_ID<TAB>LABEL`", n + 1)
            } else {
                anyhow::anyhow!(
                    "<stdin>:{}: expected ROW_ID<TAB>LABEL, `next` or (--adjudicator) `disputes`, `adjudicate ROW_ID<TAB>LABEL`",
                    n + 1
                )
            }
        })?;
        let id: i64 =
            id.trim().parse().map_err(|_| anyhow::anyhow!("<stdin>:{}: row id '{}' is not a number", n + 1, data::display_safe(id)))?;
        let label = label.trim();
        if label.is_empty() {
            bail!("<stdin>:{}: the label is empty", n + 1);
        }
        let l = *index.get(label).ok_or_else(|| {
            anyhow::anyhow!(
                "<stdin>:{}: label '{}' is not in the label set ({})",
                n + 1,
                data::display_safe(label),
                data::preview_labels(&labels)
            )
        })?;
        if adjudicate {
            use crate::store::Adjudication;
            let answer =
                match s.adjudicate(id, l, iteration, preds.get(&id).map(|p| p.label)).with_context(|| format!("<stdin>:{}", n + 1))? {
                    Adjudication::Done => {
                        labelled_since_next = true;
                        "ok"
                    }
                    Adjudication::Settled(_) => "settled",
                    Adjudication::NotDisputed => "not-disputed",
                    Adjudication::Yours => "yours",
                };
            writeln!(out, "{answer} {id}")?;
            out.flush()?;
            continue;
        }
        // An adjudicated row keeps the adjudicator's label; a row sent to
        // two that two others labelled is theirs.
        if let Some((who, _)) = s.adjudicated_by(id)? {
            writeln!(out, "adjudicated {id} {}", data::display_safe(&who))?;
            out.flush()?;
            continue;
        }
        if let Some(who) = s.overlap_closed(id)? {
            writeln!(out, "labelled {id} {}", data::display_safe(&who.names()))?;
            out.flush()?;
            continue;
        }
        // A row in another annotator's batch is theirs to label.
        if let Some(who) = s.held_by_other(id)? {
            writeln!(out, "held {id} {}", data::display_safe(&who))?;
            out.flush()?;
            continue;
        }
        // (The same checks again in the label's write transaction: another
        // process may have got there since the looks above.)
        let (_, replaced) = match s.add_label_replacing(id, l, iteration, preds.get(&id).map(|p| p.label)) {
            Ok(r) => r,
            Err(e) => {
                let answer = match e.downcast_ref::<store::Refused>() {
                    Some(store::Refused::Adjudicated { by, .. }) => format!("adjudicated {id} {}", data::display_safe(by)),
                    Some(store::Refused::Closed { by, .. }) => format!("labelled {id} {}", data::display_safe(&by.names())),
                    Some(store::Refused::Held { by, .. }) => format!("held {id} {}", data::display_safe(by)),
                    Some(store::Refused::Taken { by, .. }) => format!("labelled {id} {}", data::display_safe(by)),
                    None => return Err(e.context(format!("<stdin>:{}", n + 1))),
                };
                writeln!(out, "{answer}")?;
                out.flush()?;
                continue;
            }
        };
        labelled_since_next = true;
        match replaced {
            // The row had a label (this annotator's, or on a row not sent to
            // two, anyone's): say whose and which, so a client that relabels
            // by mistake sees it (the old one is kept in the history). The
            // same label again (a client resending after a crash, or
            // confirming another's) leaves the row's label as it was (now
            // given by this annotator): plain `ok`.
            Some((old, who)) if old != l => writeln!(
                out,
                "ok {id}\treplaced\t{}\t{}",
                data::display_safe(&labels[old as usize].name),
                data::display_safe(who.as_deref().unwrap_or(""))
            )?,
            _ => writeln!(out, "ok {id}")?,
        }
        out.flush()?;
    }
    Ok(())
}

/// A text on one line of `annotate`'s output: safe, tabs and line breaks as spaces.
fn one_line(text: &str) -> String {
    data::display_safe(text).chars().map(|c| if c == '\t' || c == '\n' || c == '\r' { ' ' } else { c }).collect()
}

fn cmd_predict(sessions: &store::Store, a: PredictArgs) -> Result<()> {
    check_input_format(&a.input, a.format)?;
    crate::predict::output_is_jsonl(&a.out)?;
    data::require_file(&a.input)?;
    let s = Session::open_read_only(sessions, &a.name)?;
    let p = crate::predict::predict_file(&s, &a.input, a.format, &a.text_col, &a.out)?;
    say!("labelled {} rows into {}", p.rows, a.out.display());
    if p.skipped_empty > 0 {
        let lines: Vec<String> = p.skipped_lines.iter().map(|l| l.to_string()).collect();
        let more = if p.skipped_empty > p.skipped_lines.len() as u64 { ", ..." } else { "" };
        say!(
            "{} record{} with empty text left out ({} {}{more}): no label without a text",
            p.skipped_empty,
            if p.skipped_empty == 1 { "" } else { "s" },
            if lines.len() == 1 { "line" } else { "lines" },
            lines.join(", ")
        );
    }
    if p.rows > 0 {
        note_if_model_behind(&s);
    }
    // The output's `label` is the model's: an input column of that name is
    // not carried over, so say so rather than let it vanish.
    if a.text_col != "label" {
        let format = a.format.map(Ok).unwrap_or_else(|| Format::detect(&a.input)).ok();
        if format.is_some_and(|f| data::has_column(&a.input, f, "label")) {
            say!(
                "note: {} has a {} named 'label'; the output's label is the model's, the input's is not copied (join on `line`, the line of the input where the record starts)",
                data::display_safe(&a.input.display().to_string()),
                if format == Some(Format::Jsonl) { "field" } else { "column" }
            );
        }
    }
    Ok(())
}

/// Says so when the model in use did not learn from the labels as they
/// are now (what it labels is from then).
fn note_if_model_behind(s: &Session) {
    match crate::worker::model_and_labels(s) {
        Ok(Some((it, then, now, true))) => say!(
            "note: the labels changed since the model last learnt (iteration {it}: {then} labels; now {now}), so its labels are from then: `labelrest retrain {}` brings them up to date",
            data::display_safe(&s.name)
        ),
        Ok(_) => {}
        Err(e) => tracing::warn!("cannot compare the model's labels with the session's: {e:#}"),
    }
}

fn cmd_simulate(a: SimulateArgs) -> Result<()> {
    let out = a.out.clone();
    let opts = sim_options(a)?;
    let points = crate::simulate::run(&opts)?;
    print!("{}", crate::simulate::markdown_table(&points, &[0, 10, 50, 100, 150]));
    say!("wrote {}/curves.csv, per_class.csv, predictions.csv, curves.svg, curves.png, table.md", out.display());
    Ok(())
}

/// `simulate`'s flags as the options of a run.
fn sim_options(a: SimulateArgs) -> Result<crate::simulate::SimOptions> {
    let strategies = a
        .strategy
        .split(',')
        .map(|s| Strategy::parse(s.trim()))
        .collect::<Result<Vec<_>>>()
        .map_err(|e| usage(format!("--strategy: {e:#}")))?;
    if !(0.0..1.0).contains(&a.noise) {
        return Err(usage(format!("--noise must be at least 0 and below 1, not {}", a.noise)));
    }
    let opts = crate::simulate::SimOptions {
        train: a.train,
        test: a.test,
        name: a.name,
        strategies,
        batch: a.batch,
        max_labels: a.max_labels,
        seeds: a.seeds.max(1),
        zero_shot: a.zero_shot == "on",
        cache: a.cache.clone().unwrap_or_else(|| a.out.join("cache")),
        mode: a.mode,
        finetune: a.finetune.clone(),
        pace: a.pace,
        swap_always: a.swap_always,
        noise: a.noise,
        threads: a.threads.unwrap_or_else(crate::model::threads),
        out: a.out.clone(),
        model: match &a.model {
            Some(m) => crate::model::assets::resolve_model(m)?,
            None => crate::model::assets::model_dir("bundled"),
        },
        device: a.device,
        labels_file: a.labels_file,
        text_col: a.text_col,
        label_col: a.label_col,
        self_training: a.self_training,
        prior_weight: a.prior_weight,
        prior_rows: a.prior_rows,
        zero_shot_odds: a.zero_shot_odds,
        pseudo_per_class: a.pseudo_per_class,
        pseudo_weight: a.pseudo_weight,
        head: crate::model::HeadConfig {
            epochs: a.head_epochs,
            lr: a.head_lr,
            weight_decay: a.head_wd,
            anchor: a.head_anchor,
            anchor_fade: a.head_anchor_fade,
            prior_init: a.head_init == "prior",
            ..Default::default()
        },
        quiet: term::quiet(),
    };
    Ok(opts)
}

/// Makes the demo session from the bundled data when it is missing (with
/// `reset`, afresh, once the person confirms on the terminal). `None`: the
/// person declined the reset, and the demo is not to be opened.
pub fn ensure_demo(sessions: &store::Store, reset: bool) -> Result<Option<String>> {
    ensure_demo_asking(sessions, reset, |n| {
        use std::io::IsTerminal;
        if !std::io::stdin().is_terminal() {
            bail!("demo --reset would delete the demo session's {n} labels; run it in a terminal to confirm (or `labelrest sessions rm demo --yes` first)");
        }
        confirm(&format!("start the demo afresh and delete its {n} labels?"), "the demo session is kept")
    })
}

/// `ensure_demo` with the question put by `ask` (given the number of
/// labels a reset would delete; asked only when there are some).
pub fn ensure_demo_asking(sessions: &store::Store, reset: bool, ask: impl FnOnce(usize) -> Result<bool>) -> Result<Option<String>> {
    let name = "demo";
    if store::exists(sessions, name)? && !reset {
        return Ok(Some(name.into()));
    }
    // Starting afresh throws the demo's labels away: only when the person says so.
    if reset && store::exists(sessions, name)? {
        let n = Session::open_read_only(sessions, name).and_then(|s| s.labels()).map(|l| l.len()).unwrap_or(0);
        if n > 0 && !ask(n)? {
            say!("kept the demo session and its {n} labels");
            return Ok(None);
        }
    }
    let demo = crate::model::assets::assets_dir().join("demo");
    let spec = ImportSpec {
        data: demo.join("train.csv"),
        format: None,
        columns: Columns::new("text", Some("label")),
        label_col_is: LabelColIs::Gold,
        labels: None,
        test: Some(demo.join("test.csv")),
        test_label_col: None,
        settings: Settings { model: "bundled".into(), ..Default::default() },
    };
    Session::create(sessions, name, &spec, reset)?;
    Ok(Some(name.into()))
}

/// Prints the last iteration's review: the person's labels least likely
/// first under a model trained without them (row id, the label given, the
/// label that model puts first and its probability, the given label's
/// probability, and the text).
fn cmd_review(sessions: &store::Store, name: &str, top: usize) -> Result<()> {
    let s = Session::open_read_only(sessions, name)?;
    let names: Vec<String> = s.label_set()?.into_iter().map(|l| crate::data::display_safe(&l.name)).collect();
    let Some(last) = s.iterations::<crate::worker::IterationRecord>()?.pop() else {
        say!("no model yet: label a few rows (or `labelrest retrain {}`) first", crate::data::display_safe(name));
        return Ok(());
    };
    let rec =
        last.metrics.map_err(|e| anyhow::anyhow!("{e}; `labelrest retrain {}` records a new one", crate::data::display_safe(name)))?;
    let current: std::collections::HashMap<i64, u32> = s.labels()?.into_iter().map(|l| (l.row_id, l.label)).collect();
    let texts: std::collections::HashMap<i64, String> = s.rows()?.into_iter().map(|r| (r.id, r.text)).collect();
    let kept = s.kept_reviews()?;
    let standing: Vec<_> = rec.suspects.iter().filter(|x| current.get(&x.0) == Some(&x.1) && !kept.contains(&(x.0, x.1))).collect();
    if rec.labels < crate::learn::calibration::MIN_LABELS {
        say!("the review needs at least {} labels (the last iteration had {})", crate::learn::calibration::MIN_LABELS, rec.labels);
        return Ok(());
    }
    let disputed = standing.iter().filter(|x| x.2 != x.1).count();
    println!(
        "your labels, least likely first under a model trained without them (iteration {}, {} labels; {disputed} disputed: it puts another label first):",
        rec.iteration, rec.labels
    );
    if standing.is_empty() {
        return Ok(());
    }
    println!("{:>8}  {:<24} {:<24} {:>5} {:>5}  text", "row", "given", "model says", "p", "p(g)");
    for x in standing.iter().take(top) {
        let text = texts.get(&x.0).map(|t| crate::data::display_safe(t)).unwrap_or_default();
        let short = term::cut(&text, 60);
        println!(
            "{:>8}  {} {} {:>5.2} {:>5.2}  {short}",
            x.0,
            term::pad(&term::cut(&names[x.1 as usize], 24), 24),
            term::pad(&if x.2 == x.1 { "(agrees)".to_string() } else { term::cut(&names[x.2 as usize], 24) }, 24),
            x.3,
            x.4
        );
    }
    if standing.len() > top {
        say!("... {} more (--top N)", standing.len() - top);
    }
    Ok(())
}

/// `labelrest stats NAME`: who labelled how much (the labels in use per
/// annotator and source), how annotators agree on the rows sent to two,
/// and how many rows each label has.
fn cmd_stats(sessions: &store::Store, name: &str, json: bool) -> Result<()> {
    let s = Session::open_read_only(sessions, name)?;
    let per = s.labels_per_annotator()?;
    let names: Vec<String> = s.label_set()?.into_iter().map(|l| crate::data::display_safe(&l.name)).collect();
    let mut per_label = vec![0usize; names.len()];
    let resolved = s.resolved()?;
    for l in &resolved.labels {
        per_label[l.label as usize] += 1;
    }
    let pairs = crate::learn::agreement::agreement(&resolved.overlap_labels, names.len());
    let overlap = s.overlap_rows()?.len();
    // The last model's held-out scores per label, when the session has a
    // test set (a damaged record is left out, not an error here).
    let held_out: Option<(i64, usize, f64, Vec<(u32, f64, f64, f64, usize)>)> = s
        .iterations::<crate::worker::pipeline::IterationRecord>()?
        .into_iter()
        .rev()
        .find_map(|it| it.metrics.ok())
        .and_then(|r| Some((r.iteration, r.labels, r.accuracy?, r.test_per_class)))
        .filter(|h| !h.3.is_empty());
    let scores_of = |c: usize| held_out.as_ref().and_then(|h| h.3.iter().find(|x| x.0 as usize == c));
    let who = |a: &Option<String>, src: Source| match (a, src) {
        (Some(a), _) => crate::data::display_safe(a),
        (None, Source::Seed) => "(seed labels)".to_string(),
        (None, _) => "(not recorded)".to_string(),
    };
    if json {
        let v = serde_json::json!({
            "session": name,
            "labels": per.iter().map(|x| x.2).sum::<i64>(),
            "annotators": per.iter().map(|(a, src, n)| serde_json::json!({"annotator": a, "source": src.as_str(), "labels": n})).collect::<Vec<_>>(),
            "per_label": names.iter().zip(&per_label).enumerate().map(|(c, (l, n))| {
                let mut v = serde_json::json!({"label": l, "rows": n});
                if let Some(&(_, p, r, f, support)) = scores_of(c) {
                    v["held_out"] = serde_json::json!({"precision": p, "recall": r, "f1": f, "rows": support});
                }
                v
            }).collect::<Vec<_>>(),
            "held_out": held_out.as_ref().map(|h| serde_json::json!({"iteration": h.0, "labels": h.1, "accuracy": h.2})),
            "overlap_rows": overlap,
            "waiting": resolved.waiting.len(),
            "disputes": resolved.disputes.len(),
            "agreement": pairs.iter().map(|p| serde_json::json!({"a": p.a, "b": p.b, "rows": p.rows, "raw": p.raw, "kappa": p.kappa})).collect::<Vec<_>>(),
        });
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    let total: i64 = per.iter().map(|x| x.2).sum();
    println!("{} labels in session '{}'", total, crate::data::display_safe(name));
    // Columns as wide as their longest entry (names are 1-64 characters).
    let width = |v: &mut dyn Iterator<Item = usize>| v.max().unwrap_or(0).max(16);
    let wa = width(&mut per.iter().map(|(a, src, _)| term::columns(&who(a, *src))));
    println!("{} {:<11} {:>8}", term::pad("annotator", wa), "source", "labels");
    for (a, src, n) in &per {
        println!("{} {:<11} {:>8}", term::pad(&who(a, *src), wa), src.as_str(), n);
    }
    if overlap > 0 || !pairs.is_empty() {
        println!();
        println!(
            "{overlap} rows sent to two annotators: {} waiting for a second label, {} disputed (kept out of training until adjudicated)",
            resolved.waiting.len(),
            resolved.disputes.len()
        );
        if !pairs.is_empty() {
            let safe = |a: &str| crate::data::display_safe(a);
            let wp = width(&mut pairs.iter().flat_map(|p| [term::columns(&safe(&p.a)), term::columns(&safe(&p.b))]));
            let a = term::pad("annotator", wp);
            println!("{a} {a} {:>6} {:>9} {:>7}", "rows", "agreement", "kappa");
            for p in &pairs {
                let (a, b) = (term::pad(&safe(&p.a), wp), term::pad(&safe(&p.b), wp));
                println!("{a} {b} {:>6} {:>8.1}% {:>7.3}", p.rows, p.raw * 100.0, p.kappa);
            }
        }
    }
    println!();
    let wl = width(&mut names.iter().map(|l| term::columns(l)));
    // Rows that have the label from a person, a seed or an adjudication
    // (the model's labels are export's).
    match &held_out {
        Some((it, n, acc, _)) => {
            println!("held out: the model of iteration {it} ({n} labels), accuracy {acc:.3}");
            println!("{} {:>8} {:>9} {:>7} {:>6} {:>9}", term::pad("label", wl), "labelled", "precision", "recall", "F1", "held-out");
            for (c, (l, n)) in names.iter().zip(&per_label).enumerate() {
                match scores_of(c) {
                    Some(&(_, p, r, f, support)) => {
                        println!("{} {:>8} {:>9.3} {:>7.3} {:>6.3} {:>9}", term::pad(l, wl), n, p, r, f, support)
                    }
                    None => println!("{} {:>8} {:>9} {:>7} {:>6} {:>9}", term::pad(l, wl), n, "-", "-", "-", 0),
                }
            }
        }
        None => {
            println!("{} {:>8}", term::pad("label", wl), "labelled");
            for (l, n) in names.iter().zip(&per_label) {
                println!("{} {:>8}", term::pad(l, wl), n);
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn simulate_options(args: &[&str]) -> crate::simulate::SimOptions {
        let mut argv = vec!["labelrest", "simulate", "--train", "t.csv", "--test", "u.csv", "--out", "o"];
        argv.extend_from_slice(args);
        match Cli::try_parse_from(argv).unwrap().command {
            Command::Simulate(a) => sim_options(a).unwrap(),
            _ => unreachable!("parsed as simulate"),
        }
    }

    /// `simulate` runs what the workstation runs: its engine knows whether
    /// the encoder is fine-tuned, so self-training `auto` follows the mode
    /// (on from 3 classes fine-tuned, from 20 with the head alone).
    #[test]
    fn simulate_self_training_follows_its_mode() {
        let tuned = simulate_options(&[]).engine_config();
        assert!(tuned.tunes && tuned.self_training == SelfTraining::Auto);
        assert!(tuned.self_training.enabled(3, 5000, tuned.tunes), "fine-tuned: on for three classes");
        assert!(!tuned.self_training.enabled(2, 5000, tuned.tunes), "fine-tuned: off for two");
        let head = simulate_options(&["--mode", "head"]).engine_config();
        assert!(!head.tunes, "--mode head fine-tunes nothing");
        assert!(!head.self_training.enabled(6, 5000, head.tunes), "the head alone: off below 20 classes");
        assert!(head.self_training.enabled(20, 5000, head.tunes));
        let off = simulate_options(&["--self-training", "off"]).engine_config();
        assert!(!off.self_training.enabled(77, 100_000, off.tunes));
    }
}
