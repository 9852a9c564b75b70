use clap::Parser;

fn main() {
    let cli = labelrest::cli::Cli::parse();
    let _guard = labelrest::ui::init_logging();
    if let Err(e) = labelrest::cli::run(cli) {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}
