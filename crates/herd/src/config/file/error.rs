//! What can be wrong with a herd.toml, and where: every error carries the file, the line and
//! column (from the byte span that toml reports) and the key path, so a user can go straight
//! to the mistake.

use std::fmt;
use std::io;
use std::ops::Range;
use std::path::PathBuf;

use toml::de::DeTable;

/// Where in a file something is: `herd.toml:3:1`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    /// The file name as the user gave it.
    pub file: String,
    /// 1-based line and column (in characters); `None` when toml gave no span.
    pub line_column: Option<(usize, usize)>,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line_column {
            Some((line, column)) => write!(f, "{}:{line}:{column}", self.file),
            None => f.write_str(&self.file),
        }
    }
}

/// A herd.toml that cannot be used, and why.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    /// The file could not be read.
    #[error("{}: cannot read: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// What the OS said.
        #[source]
        source: io::Error,
    },
    /// Not valid TOML.
    #[error("{at}: {message}")]
    Syntax {
        /// Where the parser stopped.
        at: Location,
        /// toml's description of the problem.
        message: String,
    },
    /// A key herd does not know, maybe with the known key it most resembles.
    #[error("{at}: unknown key `{key}`{}", did_you_mean(suggestion))]
    UnknownKey {
        /// Where the key is.
        at: Location,
        /// The full key path, e.g. `apps.api.instance`.
        key: String,
        /// The closest known key, e.g. `instances`.
        suggestion: Option<String>,
    },
    /// A value of the wrong type or form.
    #[error("{at}: `{key} = {value}`: {message}")]
    Invalid {
        /// Where the value is.
        at: Location,
        /// The full key path, e.g. `apps.api.kill_timeout`.
        key: String,
        /// The value as written in the file (first line, shortened).
        value: String,
        /// What is wrong and the expected form.
        message: String,
    },
    /// A key that must be present is not.
    #[error("{at}: `{key}` is missing: {message}")]
    Missing {
        /// The table that lacks the key.
        at: Location,
        /// The full key path, e.g. `apps.api.command`.
        key: String,
        /// What to write.
        message: String,
    },
    /// The file defines no app: nothing to run is always a mistake.
    #[error("{file}: no apps: add an `[apps.<name>]` table with `command = \"...\"`")]
    NoApps {
        /// The file name.
        file: String,
    },
    /// `--env <profile>` named a profile that no app defines.
    #[error(
        "{file}: unknown profile `{profile}`: no app has an `env_{profile}` table{}",
        known_profiles(known)
    )]
    UnknownProfile {
        /// The file name.
        file: String,
        /// The profile asked for.
        profile: String,
        /// The profiles the file defines.
        known: Vec<String>,
    },
}

fn did_you_mean(suggestion: &Option<String>) -> String {
    match suggestion {
        Some(s) => format!(" — did you mean `{s}`?"),
        None => String::new(),
    }
}

fn known_profiles(known: &[String]) -> String {
    if known.is_empty() {
        " (the file defines no profile)".to_string()
    } else {
        format!(" (defined: {})", known.join(", "))
    }
}

/// The text being parsed and its name: turns byte spans into [`Location`]s and errors.
pub(super) struct Source<'a> {
    pub text: &'a str,
    pub file: &'a str,
}

/// How much of a value an error message quotes before cutting it short.
const SNIPPET_CHARS: usize = 40;

impl Source<'_> {
    /// The location of a byte offset.
    pub fn at(&self, span: Option<Range<usize>>) -> Location {
        let line_column = span.map(|span| {
            let offset = floor_char_boundary(self.text, span.start);
            let before = &self.text[..offset];
            let line = before.matches('\n').count() + 1;
            let line_start = before.rfind('\n').map_or(0, |i| i + 1);
            (line, before[line_start..].chars().count() + 1)
        });
        Location {
            file: self.file.to_string(),
            line_column,
        }
    }

    /// The value at `span` as the user wrote it: its first line, shortened.
    pub fn snippet(&self, span: &Range<usize>) -> String {
        let start = floor_char_boundary(self.text, span.start);
        let end = floor_char_boundary(self.text, span.end.max(start));
        let text = self.text[start..end].trim();
        let first = text.lines().next().unwrap_or("");
        let mut out: String = first.chars().take(SNIPPET_CHARS).collect();
        if out.len() < text.len() {
            out.push_str(" …");
        }
        out
    }

    /// A wrong value at `span` of `key`.
    pub fn invalid(&self, key: String, span: Range<usize>, message: String) -> FileError {
        FileError::Invalid {
            at: self.at(Some(span.clone())),
            key,
            value: self.snippet(&span),
            message,
        }
    }

    /// toml's syntax error.
    pub fn syntax(&self, err: &toml::de::Error) -> FileError {
        FileError::Syntax {
            at: self.at(err.span()),
            message: err.message().trim().to_string(),
        }
    }

    /// A serde error (a value of the wrong type): named by the key whose value holds its span.
    pub fn typed(&self, err: &toml::de::Error, root: &DeTable<'_>) -> FileError {
        let message = err.message().trim().to_string();
        let Some(span) = err.span() else {
            return FileError::Syntax {
                at: self.at(None),
                message,
            };
        };
        let mut path = Vec::new();
        key_path_at(root, span.start, &mut path);
        if path.is_empty() {
            return FileError::Syntax {
                at: self.at(Some(span)),
                message,
            };
        }
        self.invalid(path.join("."), span, message)
    }
}

/// The path of the deepest key whose key or value span contains `offset`. Every table is
/// searched, not only those whose span contains it: a table opened by a `[header]` has the
/// header's span, not that of the keys below it.
fn key_path_at(table: &DeTable<'_>, offset: usize, path: &mut Vec<String>) -> bool {
    for (key, value) in table {
        path.push(key.get_ref().to_string());
        if let Some(inner) = value.get_ref().as_table() {
            if key_path_at(inner, offset, path) {
                return true;
            }
        }
        if key.span().contains(&offset) || value.span().contains(&offset) {
            return true;
        }
        path.pop();
    }
    false
}

/// `offset`, moved back to a char boundary so slicing cannot panic on a span toml computed.
fn floor_char_boundary(text: &str, offset: usize) -> usize {
    let mut offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    offset
}

/// The known key closest to `key` by edit distance, if it is close enough to be a typo
/// (at most a third of the key's length, and at least one edit allowed).
pub(crate) fn suggest<'k>(key: &str, known: &[&'k str]) -> Option<&'k str> {
    let allowed = (key.chars().count() / 3).max(1);
    known
        .iter()
        .map(|k| (edit_distance(key, k), *k))
        .filter(|(d, _)| *d <= allowed)
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k)
}

/// Levenshtein distance over characters.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let substitute = diagonal + usize::from(ca != *cb);
            diagonal = row[j + 1];
            row[j + 1] = substitute.min(row[j] + 1).min(diagonal + 1);
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distances() {
        assert_eq!(edit_distance("instance", "instances"), 1);
        assert_eq!(edit_distance("kill_timout", "kill_timeout"), 1);
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(edit_distance("same", "same"), 0);
    }

    #[test]
    fn suggestions() {
        let known = ["instances", "kill_timeout", "cwd", "apps"];
        assert_eq!(suggest("instance", &known), Some("instances"));
        assert_eq!(suggest("app", &known), Some("apps"));
        assert_eq!(suggest("timeout", &known), None);
        assert_eq!(suggest("zzz", &known), None);
    }

    #[test]
    fn locations_count_lines_and_characters() {
        let src = Source {
            text: "a = 1\nbé = 2\n",
            file: "herd.toml",
        };
        assert_eq!(src.at(Some(0..1)).to_string(), "herd.toml:1:1");
        assert_eq!(src.at(Some(6..7)).to_string(), "herd.toml:2:1");
        // "bé" is 3 bytes: the `=` is at byte 10, character 4.
        assert_eq!(src.at(Some(10..11)).to_string(), "herd.toml:2:4");
        assert_eq!(src.at(None).to_string(), "herd.toml");
    }
}
