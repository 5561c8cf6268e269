//! The direction of the crate's imports, checked: every module may use only the modules of
//! the layers below its own (see the table in the crate's documentation). A `use crate::…`
//! or a `crate::…` path that points sideways or up fails this test, naming the file, the
//! line and the two modules, so the layering cannot drift back into a cycle unnoticed.

use std::path::{Path, PathBuf};

/// The layers, lowest first. A module listed here may import the modules of earlier lines
/// only; two modules of one line may not import each other.
const LAYERS: &[&[&str]] = &[
    &["units"],
    &["supervisor", "balance"],
    &["listen", "proxy", "output"],
    &["channel", "observe", "admin"],
    &["config"],
    &["driver"],
    &["control", "bench"],
    &["cluster", "cli", "fuzzing"],
];

fn layer_of(module: &str) -> Option<usize> {
    LAYERS.iter().position(|layer| layer.contains(&module))
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read src") {
        let path = entry.expect("dir entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The top-level modules a line of code names with `crate::`, outside comments.
fn crate_paths(line: &str) -> Vec<&str> {
    let code = line.split("//").next().unwrap_or("");
    let mut found = Vec::new();
    let mut rest = code;
    while let Some(at) = rest.find("crate::") {
        let after = &rest[at + "crate::".len()..];
        let end = after
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(after.len());
        if end > 0 {
            found.push(&after[..end]);
        } else if after.starts_with('{') {
            // `use crate::{a, b::c}`: every name up to the matching brace.
            let group = &after[1..after.find('}').unwrap_or(after.len())];
            found.extend(
                group
                    .split(',')
                    .filter_map(|p| p.trim().split("::").next())
                    .filter(|p| !p.is_empty()),
            );
        }
        rest = &after[end..];
    }
    found
}

#[test]
fn imports_point_down_the_layers() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut wrong = Vec::new();
    let mut unplaced = Vec::new();
    for file in &files {
        let rel = file.strip_prefix(&src).expect("under src");
        let first = rel.components().next().expect("a path");
        let module = first.as_os_str().to_string_lossy();
        let module = module.trim_end_matches(".rs");
        if matches!(module, "lib" | "main" | "bin" | "layers") {
            continue;
        }
        let Some(own) = layer_of(module) else {
            unplaced.push(module.to_string());
            continue;
        };
        let text = std::fs::read_to_string(file).expect("read a source file");
        for (n, line) in text.lines().enumerate() {
            for target in crate_paths(line) {
                if target == module {
                    continue;
                }
                match layer_of(target) {
                    Some(layer) if layer < own => {}
                    _ => wrong.push(format!(
                        "{}:{}: `{module}` (layer {own}) uses `{target}` ({})",
                        rel.display(),
                        n + 1,
                        layer_of(target)
                            .map_or("in no layer".to_string(), |l| format!("layer {l}"))
                    )),
                }
            }
        }
    }
    unplaced.sort();
    unplaced.dedup();
    assert!(
        unplaced.is_empty(),
        "modules in no layer of src/layers.rs: {unplaced:?}"
    );
    assert!(
        wrong.is_empty(),
        "imports against the layers (lower layers must not use higher ones):\n{}",
        wrong.join("\n")
    );
}

#[test]
fn reads_grouped_and_nested_paths() {
    assert_eq!(crate_paths("use crate::units::parse_size;"), ["units"]);
    assert_eq!(
        crate_paths("use crate::{config::RunPlan, driver};"),
        ["config", "driver"]
    );
    assert_eq!(
        crate_paths("x(crate::a::b, crate::c) // crate::d"),
        ["a", "c"]
    );
}
