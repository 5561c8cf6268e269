//! `ecosystem.config.js` is a program, not data: the only faithful reader is node itself.
//! This runs the machine's `node` with a short inline script that loads the file the way
//! PM2 does (`require()`, or `import()` for ES modules) and prints the exported
//! configuration as JSON after a marker line, so whatever the file itself prints on stdout
//! cannot be mistaken for it. Nothing else here runs JavaScript.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::EcosystemError;

/// Why 10 s: loading a config file takes milliseconds; one that has not finished after
/// this long waits for something (a server, a prompt) and never will.
const NODE_TIMEOUT: Duration = Duration::from_secs(10);

/// How often the wait for node looks at the child: short against the timeout, long
/// enough not to spin.
const POLL: Duration = Duration::from_millis(10);

/// Precedes the JSON on node's stdout.
const MARKER: &str = "\n--herd-ecosystem-json--\n";

/// The loader. `process.argv[1]` is the file's absolute path. `require()` first, as PM2
/// does; `.mjs`, and `.js` in an ESM package (ERR_REQUIRE_ESM), go through `import()`. A
/// module namespace or a transpiled module gives its default export. The process exits
/// once the JSON is written (pipes are synchronous on Linux) so that timers or sockets
/// the file opened do not keep it running.
const LOADER: &str = r#"
const file = process.argv[1];
const emit = (v) => {
  if (v && typeof v === 'object' && (v[Symbol.toStringTag] === 'Module' || v.__esModule) && v.default !== undefined) v = v.default;
  process.stdout.write(MARKER + JSON.stringify(v === undefined ? null : v) + '\n');
  process.exit(0);
};
const fail = (e) => { process.stderr.write(String((e && e.stack) || e) + '\n'); process.exit(1); };
const viaImport = () => import(require('url').pathToFileURL(file).href).then(emit, fail);
if (/\.mjs$/i.test(file)) {
  viaImport();
} else {
  let v;
  let esm = false;
  try { v = require(file); } catch (e) {
    if (e && (e.code === 'ERR_REQUIRE_ESM' || e.code === 'ERR_REQUIRE_ASYNC_MODULE')) esm = true; else fail(e);
  }
  if (esm) viaImport(); else emit(v);
}
"#;

/// The configuration `path` exports, evaluated by node; `file` is what errors call it.
pub(super) fn evaluate(path: &Path, file: &str) -> Result<Value, EcosystemError> {
    evaluate_within(path, file, NODE_TIMEOUT)
}

/// [`evaluate`] with another timeout (the tests do not wait 10 s).
pub(super) fn evaluate_within(
    path: &Path,
    file: &str,
    timeout: Duration,
) -> Result<Value, EcosystemError> {
    let fail = |message: String| EcosystemError::Node {
        file: file.to_string(),
        message,
    };
    let node = find_in_path("node").ok_or_else(|| {
        fail(format!(
            "evaluating a JavaScript ecosystem file needs node in PATH: convert it once \
             where node is installed with `herd import {file} > herd.toml`, or write the \
             apps as JSON (ecosystem.json)"
        ))
    })?;
    let absolute = std::fs::canonicalize(path).map_err(|source| EcosystemError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let script = LOADER.replace("MARKER", &format!("{MARKER:?}"));
    let mut child = Command::new(&node)
        .arg("-e")
        .arg(script)
        .arg(&absolute)
        .current_dir(absolute.parent().unwrap_or(Path::new("/")))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| fail(format!("cannot run {}: {e}", node.display())))?;
    // Both pipes are drained while node runs: a large config or a chatty file must not
    // block node on a full pipe.
    let drain = |pipe: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            if let Some(mut pipe) = pipe {
                let _ = pipe.read_to_end(&mut bytes);
            }
            String::from_utf8_lossy(&bytes).into_owned()
        })
    };
    let stdout = drain(child.stdout.take().map(|p| Box::new(p) as _));
    let stderr = drain(child.stderr.take().map(|p| Box::new(p) as _));
    let deadline = Instant::now() + timeout;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(POLL),
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(fail(format!(
                    "node did not finish evaluating it within {}: does it wait for \
                     something (a connection, input)?",
                    crate::units::format_duration(timeout)
                )));
            }
            Err(e) => return Err(fail(format!("waiting for node: {e}"))),
        }
    };
    let stdout = stdout.join().unwrap_or_default();
    let stderr = stderr.join().unwrap_or_default();
    if !status.success() {
        return Err(fail(format!(
            "node could not evaluate it ({status}):\n{}",
            last_lines(&stderr)
        )));
    }
    let Some((_, json)) = stdout.rsplit_once(MARKER) else {
        return Err(fail(format!(
            "node printed no configuration:\n{}",
            last_lines(&stderr)
        )));
    };
    serde_json::from_str(json).map_err(|e| fail(format!("node printed bad JSON: {e}")))
}

/// The end of node's stderr, where the error is: a stack trace can be long.
fn last_lines(text: &str) -> String {
    const KEEP: usize = 20;
    let lines: Vec<&str> = text.trim_end().lines().collect();
    lines[lines.len().saturating_sub(KEEP)..].join("\n")
}

/// The first executable file called `name` in a directory of PATH.
pub(super) fn find_in_path(name: &str) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| {
            std::fs::metadata(candidate)
                .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
                .unwrap_or(false)
        })
}
