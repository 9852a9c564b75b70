use clap::Parser;
use std::io::Write;

use labelrest::term::{self, Paint, Stream};

fn main() {
    // Die quietly on a closed pipe (`labelrest sessions | head`), as other
    // command-line tools do, instead of panicking on the next print.
    // SAFETY: setting a signal's disposition to the default is async-signal-safe.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    // `CLICOLOR_FORCE=0` forces nothing (as `term` decides); clap's own
    // colour reads any value as "force": it is set aside before clap looks.
    // (First thing in main: no other thread reads the environment yet.)
    if std::env::var_os("CLICOLOR_FORCE").is_some_and(|v| v == "0") {
        std::env::remove_var("CLICOLOR_FORCE");
    }
    // Usage errors clap finds itself exit with 2 (term::EXIT_USAGE), --help and --version with 0.
    let cli = labelrest::cli::Cli::parse();
    term::set_verbosity(cli.verbosity());
    let guard = labelrest::ui::init_logging(cli.verbosity() == term::Verbosity::Verbose && !cli.command.is_workstation());
    // Before anything else: a panic anywhere restores the terminal, goes to
    // the log with its backtrace, and prints one line (if a terminal is left).
    // (The worker's and the fine-tune's threads catch their panics and tell
    // the workstation, which goes on: the log only.)
    std::panic::set_hook(Box::new(|info| {
        let bt = std::backtrace::Backtrace::force_capture();
        tracing::error!("panic: {info}\n{bt}");
        if labelrest::worker::catches_panics(std::thread::current().name()) {
            return;
        }
        labelrest::ui::tui::restore();
        let _ = writeln!(
            std::io::stderr(),
            "labelrest: internal error: {} (the log has the details)",
            labelrest::data::display_safe(&info.to_string())
        );
    }));
    if let Err(e) = labelrest::cli::run(cli) {
        tracing::debug!("exit on error: {e:#}");
        // Errors can quote the data (labels, header names): made inert for the terminal, on one line.
        // A terminal that is gone (a killed SSH session) cannot take it: say nothing then.
        // Exit 2 for a usage error found after parsing, else 1; one line either way.
        let code = term::exit_code(&e);
        let _ = writeln!(
            std::io::stderr(),
            "{} {}",
            term::paint(Stream::Stderr, Paint::Error, "error:"),
            labelrest::data::display_safe(&format!("{e:#}"))
        );
        // exit() runs no destructors: flush the log first.
        drop(guard);
        std::process::exit(code);
    }
}
