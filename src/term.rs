//! How the subcommands talk to the terminal: whether to colour (`NO_COLOR`,
//! `CLICOLOR_FORCE`, `CLICOLOR`, and whether the stream is a terminal; the
//! order clap's own messages follow), how much to say (`--quiet`,
//! `--verbose`), and the exit codes (0 ok, 1 error, 2 usage).

use std::ffi::OsStr;
use std::io::IsTerminal;
use std::sync::atomic::{AtomicU8, Ordering};

/// The exit status of a command that failed.
pub const EXIT_ERROR: i32 = 1;
/// The exit status of a command line that cannot be run as given (clap's
/// own parse errors exit with it too).
pub const EXIT_USAGE: i32 = 2;

/// A command line that cannot be run as given, found after clap parsed it
/// (a value out of range, an output whose format cannot be told, ...):
/// `main` exits with `EXIT_USAGE` on it.
#[derive(Debug)]
pub struct UsageError(pub String);

impl std::fmt::Display for UsageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UsageError {}

/// A usage error as an `anyhow::Error`.
pub fn usage(msg: impl Into<String>) -> anyhow::Error {
    UsageError(msg.into()).into()
}

/// The exit status for an error: `EXIT_USAGE` for a `UsageError` anywhere
/// in its chain, else `EXIT_ERROR`.
pub fn exit_code(e: &anyhow::Error) -> i32 {
    if e.chain().any(|c| c.downcast_ref::<UsageError>().is_some()) {
        EXIT_USAGE
    } else {
        EXIT_ERROR
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

fn set(v: Option<&OsStr>) -> bool {
    v.map(|v| !v.is_empty()).unwrap_or(false)
}

/// Whether to colour, from the environment's values and whether the stream
/// is a terminal: `NO_COLOR` (set, not empty) never; else `CLICOLOR_FORCE`
/// (set, not `0`) always; else `CLICOLOR=0` never; else on a terminal.
pub fn color_from(no_color: Option<&OsStr>, clicolor_force: Option<&OsStr>, clicolor: Option<&OsStr>, terminal: bool) -> bool {
    if set(no_color) {
        return false;
    }
    if set(clicolor_force) && clicolor_force != Some(OsStr::new("0")) {
        return true;
    }
    if clicolor == Some(OsStr::new("0")) {
        return false;
    }
    terminal
}

/// Whether to colour what goes to `stream`, read from this process's
/// environment.
pub fn color(stream: Stream) -> bool {
    let terminal = match stream {
        Stream::Stdout => std::io::stdout().is_terminal(),
        Stream::Stderr => std::io::stderr().is_terminal(),
    };
    color_with_terminal(terminal)
}

/// As `color`, for a stream known to be (or not to be) a terminal (the
/// workstation draws only on one).
pub fn color_with_terminal(terminal: bool) -> bool {
    color_from(
        std::env::var_os("NO_COLOR").as_deref(),
        std::env::var_os("CLICOLOR_FORCE").as_deref(),
        std::env::var_os("CLICOLOR").as_deref(),
        terminal,
    )
}

/// Styles for the few coloured words outside the workstation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Paint {
    /// `error:` (bold red, as clap's).
    Error,
    /// `warning:` (bold yellow).
    Warning,
    /// Table headers (bold).
    Header,
    /// Something that went wrong inside a listing (red).
    Bad,
}

/// `s` with the style's escape sequences when `stream` takes colour.
pub fn paint(stream: Stream, p: Paint, s: &str) -> String {
    paint_if(color(stream), p, s)
}

/// `s` with the style's escape sequences when `on`.
pub fn paint_if(on: bool, p: Paint, s: &str) -> String {
    if !on {
        return s.to_string();
    }
    let code = match p {
        Paint::Error => "1;31",
        Paint::Warning => "1;33",
        Paint::Header => "1",
        Paint::Bad => "31",
    };
    format!("\x1b[{code}m{s}\x1b[0m")
}

/// Columns a string takes in a terminal (a CJK character takes two).
pub fn columns(s: &str) -> usize {
    unicode_width::UnicodeWidthStr::width(s)
}

/// `s` padded with spaces to `width` terminal columns (as `{:<width$}`
/// does for characters), so tables line up with wide characters too.
pub fn pad(s: &str, width: usize) -> String {
    let w = columns(s);
    if w >= width {
        s.to_string()
    } else {
        format!("{s}{}", " ".repeat(width - w))
    }
}

/// `s` cut to at most `width` terminal columns, ending in "…" when cut.
pub fn cut(s: &str, width: usize) -> String {
    if columns(s) <= width {
        return s.to_string();
    }
    let mut out = String::new();
    let mut used = 0;
    for c in s.chars() {
        let w = unicode_width::UnicodeWidthChar::width(c).unwrap_or(0);
        if used + w + 1 > width {
            break;
        }
        out.push(c);
        used += w;
    }
    out.push('…');
    out
}

/// How much the subcommands say, from `--quiet` and `--verbose`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Verbosity {
    /// Only what a command exists to print (a listing, a table, a script,
    /// `annotate`'s `ok ID`) and errors: no progress, no summaries.
    Quiet = 0,
    Normal = 1,
    /// Also the log's lines (labelrest's at debug level) on standard error,
    /// outside the full-screen workstation.
    Verbose = 2,
}

static VERBOSITY: AtomicU8 = AtomicU8::new(Verbosity::Normal as u8);

pub fn set_verbosity(v: Verbosity) {
    VERBOSITY.store(v as u8, Ordering::Relaxed);
}

pub fn verbosity() -> Verbosity {
    match VERBOSITY.load(Ordering::Relaxed) {
        0 => Verbosity::Quiet,
        2 => Verbosity::Verbose,
        _ => Verbosity::Normal,
    }
}

pub fn quiet() -> bool {
    verbosity() == Verbosity::Quiet
}

/// Summaries go to standard error instead (`say_on_stderr`).
static SAY_ON_STDERR: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// From now on `say!` writes to standard error: standard output carries
/// what the command writes (`export --out /dev/stdout`).
pub fn say_on_stderr() {
    SAY_ON_STDERR.store(true, Ordering::Relaxed);
}

pub fn says_on_stderr() -> bool {
    SAY_ON_STDERR.load(Ordering::Relaxed)
}

/// `println!` unless `--quiet`: summaries and messages, never the output a
/// command exists for (on standard error where that output goes to
/// standard output).
#[macro_export]
macro_rules! say {
    ($($arg:tt)*) => {
        if !$crate::term::quiet() {
            if $crate::term::says_on_stderr() {
                eprintln!($($arg)*);
            } else {
                println!($($arg)*);
            }
        }
    };
}

/// `eprintln!` unless `--quiet`: progress on standard error.
#[macro_export]
macro_rules! progress {
    ($($arg:tt)*) => {
        if !$crate::term::quiet() {
            eprintln!($($arg)*);
        }
    };
}

/// A progress bar, hidden under `--quiet` (indicatif hides it by itself
/// when standard error is not a terminal).
pub fn progress_bar(len: u64) -> indicatif::ProgressBar {
    if quiet() {
        indicatif::ProgressBar::hidden()
    } else {
        indicatif::ProgressBar::new(len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &str) -> Option<&OsStr> {
        Some(OsStr::new(v))
    }

    #[test]
    fn pad_counts_terminal_columns() {
        assert_eq!(pad("ab", 4), "ab  ");
        assert_eq!(pad("日本", 6), "日本  ", "a CJK character takes two columns");
        assert_eq!(pad("toolong", 3), "toolong");
        assert_eq!(columns("日本語"), 6);
        assert_eq!(cut("abcdef", 4), "abc…");
        assert_eq!(cut("日本語です", 6), "日本…", "five columns of CJK and the ellipsis");
        assert_eq!(cut("abc", 3), "abc");
    }

    #[test]
    fn colour_follows_no_color_then_clicolor_force_then_the_terminal() {
        assert!(color_from(None, None, None, true));
        assert!(!color_from(None, None, None, false));
        assert!(!color_from(s("1"), None, None, true), "NO_COLOR turns colour off");
        assert!(color_from(s(""), None, None, true), "an empty NO_COLOR is not set");
        assert!(color_from(None, s("1"), None, false), "CLICOLOR_FORCE colours a pipe");
        assert!(!color_from(None, s("0"), None, false), "CLICOLOR_FORCE=0 forces nothing");
        assert!(!color_from(s("1"), s("1"), None, true), "NO_COLOR wins over CLICOLOR_FORCE");
        assert!(!color_from(None, None, s("0"), true), "CLICOLOR=0 turns colour off");
        assert!(color_from(None, s("1"), s("0"), false), "CLICOLOR_FORCE wins over CLICOLOR=0");
    }

    #[test]
    fn paint_only_when_on() {
        assert_eq!(paint_if(false, Paint::Error, "error:"), "error:");
        assert_eq!(paint_if(true, Paint::Error, "error:"), "\x1b[1;31merror:\x1b[0m");
    }

    #[test]
    fn usage_errors_exit_2_others_1() {
        assert_eq!(exit_code(&usage("bad")), EXIT_USAGE);
        assert_eq!(exit_code(&usage("bad").context("export")), EXIT_USAGE);
        assert_eq!(exit_code(&anyhow::anyhow!("no such session")), EXIT_ERROR);
    }
}
