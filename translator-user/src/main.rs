use clap::Parser as _;

fn main() -> std::process::ExitCode {
    let cli = translator::cli::Cli::parse();
    match translator::cli::main(cli) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
