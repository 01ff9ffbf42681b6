//! The `wharf` binary: parse the command line, hand it to the library.

fn main() -> std::process::ExitCode {
    wharf::cli::main()
}
