//! The `herd` command; see [`herd::cli`].

fn main() -> std::process::ExitCode {
    herd::cli::main()
}
