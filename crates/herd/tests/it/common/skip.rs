//! Skips that are legitimate (the machine cannot do what the test needs: not root, no
//! user namespaces, no privileged port to refuse, …). Each is printed and appended to
//! `<target dir>/herd-test-skips.txt` (one line: test name, reason), which `.ci/run`
//! empties before the tests and prints after them, so a run says what it did not test.
//! A missing program is never a skip: see [`super::tools`].

use std::io::Write;
use std::path::PathBuf;

/// The file the skips are appended to: `herd-test-skips.txt` in the target directory
/// (the test executable is `<target>/<profile>/deps/<name>-<hash>`).
pub fn skips_file() -> PathBuf {
    let exe = std::env::current_exe().expect("the test executable's path");
    let target = exe
        .ancestors()
        .nth(3)
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from))
        .expect("the target directory");
    target.join("herd-test-skips.txt")
}

/// Records that the running test skips (the rest of) what it tests, and why. The caller
/// returns right after.
pub fn skip(reason: &str) {
    let test = std::thread::current()
        .name()
        .unwrap_or("<unnamed test thread>")
        .to_string();
    eprintln!("SKIPPED {test}: {reason}");
    let line = format!("{test}: {reason}\n");
    let file = skips_file();
    let written = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&file)
        // One write of one short line to an O_APPEND file: lines of parallel tests do not mix.
        .and_then(|mut f| f.write_all(line.as_bytes()));
    if let Err(e) = written {
        panic!("cannot record the skip in {}: {e}", file.display());
    }
}

/// True (after recording a skip) unless this process runs as root.
pub fn skip_unless_root(what: &str) -> bool {
    if nix::unistd::Uid::effective().is_root() {
        return false;
    }
    skip(&format!("not root: {what}"));
    true
}
