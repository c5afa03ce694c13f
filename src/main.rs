//! The `channelgate` binary: everything lives in the library (`cli::main`).

/// mimalloc: a request allocates and frees small objects on one thread;
/// glibc's malloc spent about a quarter of the request path's CPU time in
/// `malloc`/`free`/`malloc_consolidate` (see BENCHMARKS.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    channelgate::cli::main()
}
