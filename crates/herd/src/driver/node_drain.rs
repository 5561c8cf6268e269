//! The drain preload of Node workers (`node_drain.js`, embedded in the binary): written to
//! herd's private runtime folder (the notify socket's) and given to each worker by adding
//! `--require <file>` to its `NODE_OPTIONS`, after any options the app set, the way PM2
//! injects its own code. What it does is in the file's header; the plan decides whether
//! it is used (`node_drain`, only for Node cluster workers). This module writes no other
//! file and changes no other variable.

use std::io;
use std::path::{Path, PathBuf};

/// The preload's source.
const SOURCE: &str = include_str!("node_drain.js");

/// The preload's file name in herd's runtime folder.
const FILE_NAME: &str = "node-drain.js";

/// Writes the preload into `dir` (herd's own private folder, removed at exit); returns its
/// path.
pub fn write(dir: &Path) -> io::Result<PathBuf> {
    let path = dir.join(FILE_NAME);
    std::fs::write(&path, SOURCE)?;
    Ok(path)
}

/// `NODE_OPTIONS` for a worker: the app's own value (`user`), then `--require` of `preload`.
/// The path is quoted as Node's parser of `NODE_OPTIONS` reads it (`"…"`, `\` escapes), so
/// a folder with spaces works.
pub fn node_options(user: Option<&str>, preload: &Path) -> String {
    let path = preload.display().to_string();
    let quoted = path.replace('\\', "\\\\").replace('"', "\\\"");
    let require = format!("--require \"{quoted}\"");
    match user.map(str::trim) {
        Some(u) if !u.is_empty() => format!("{u} {require}"),
        _ => require,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_apps_options_come_first_and_the_path_is_quoted() {
        let p = Path::new("/tmp/herd 1/node-drain.js");
        assert_eq!(
            node_options(None, p),
            "--require \"/tmp/herd 1/node-drain.js\""
        );
        assert_eq!(
            node_options(Some("--max-old-space-size=512"), p),
            "--max-old-space-size=512 --require \"/tmp/herd 1/node-drain.js\""
        );
        assert_eq!(
            node_options(Some("  "), Path::new("/a\"b")),
            "--require \"/a\\\"b\""
        );
    }
}
