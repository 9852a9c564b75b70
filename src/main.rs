use clap::Parser;

fn main() {
    let cli = labelrest::cli::Cli::parse();
    let _guard = labelrest::ui::init_logging();
    if let Err(e) = labelrest::cli::run(cli) {
        // Errors can quote the data (labels, header names): made inert for the terminal, on one line.
        eprintln!("error: {}", labelrest::data::display_safe(&format!("{e:#}")));
        std::process::exit(1);
    }
}
