//! The `ghostcache` binary: everything lives in the library.

fn main() -> std::process::ExitCode {
    ghostcache::cli::main()
}
