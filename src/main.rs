//! The `channelgate` binary: everything lives in the library (`cli::main`).

fn main() -> std::process::ExitCode {
    channelgate::cli::main()
}
