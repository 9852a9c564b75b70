use clap::Parser;
use std::io::Write;

fn main() {
    // Die quietly on a closed pipe (`labelrest sessions | head`), as other
    // command-line tools do, instead of panicking on the next print.
    // SAFETY: setting a signal's disposition to the default is async-signal-safe.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    let cli = labelrest::cli::Cli::parse();
    let _guard = labelrest::ui::init_logging();
    // Before anything else: a panic anywhere restores the terminal, goes to
    // the log with its backtrace, and prints one line (if a terminal is left).
    std::panic::set_hook(Box::new(|info| {
        labelrest::ui::tui::restore();
        let bt = std::backtrace::Backtrace::force_capture();
        tracing::error!("panic: {info}\n{bt}");
        let _ = writeln!(
            std::io::stderr(),
            "labelrest: internal error: {} (the log has the details)",
            labelrest::data::display_safe(&info.to_string())
        );
    }));
    if let Err(e) = labelrest::cli::run(cli) {
        // Errors can quote the data (labels, header names): made inert for the terminal, on one line.
        // A terminal that is gone (a killed SSH session) cannot take it: say nothing then.
        let _ = writeln!(std::io::stderr(), "error: {}", labelrest::data::display_safe(&format!("{e:#}")));
        std::process::exit(1);
    }
}
