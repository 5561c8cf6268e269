//! What `watch` leaves out: the `ignore_watch` globs as people write them ([`IgnoreGlob`]),
//! and the whole rule of one app ([`Ignore`]): its globs, the defaults every app gets, and
//! the paths herd itself writes. A directory that is ignored is never read nor watched, so
//! a `node_modules` of 100 000 files costs nothing.
//!
//! The rules are `.gitignore`'s, which people know: a glob without `/` (`node_modules`,
//! `*.log`) matches a file or directory of that name anywhere below a watched path; one with
//! `/` matches the path relative to the app's directory (`src/generated`, `build/**`,
//! `tmp/*.json`), or the absolute path when it starts with `/`. `dir/**` also ignores
//! `dir` itself, and a trailing `/` is dropped (`dist/` is `dist`).

use std::ffi::OsStr;
use std::path::{Path, PathBuf};

use glob::{MatchOptions, Pattern};

/// Ignored in every app, whatever `ignore_watch` says: dependencies (npm writes thousands
/// of files there on an install, which is not a change of the app's own code) and git's
/// own files (a `git checkout` changes the work tree too, and that is what reloads).
pub const ALWAYS_IGNORED: [&str; 2] = ["node_modules", ".git"];

/// `*` and `?` stay within one path component; a leading `.` needs no literal `.`
/// (`*.log` ignores `.hidden.log` too, as `.gitignore` does).
const OPTIONS: MatchOptions = MatchOptions {
    case_sensitive: true,
    require_literal_separator: true,
    require_literal_leading_dot: false,
};

/// How a glob is matched against a path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Anchor {
    /// No `/`: the name of any file or directory below a watched path.
    Name,
    /// The path relative to the app's directory.
    Relative,
    /// The absolute path.
    Absolute,
}

/// One `ignore_watch` glob, checked when it is read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IgnoreGlob {
    /// As written.
    text: String,
    anchor: Anchor,
    pattern: Pattern,
    /// `dir/**` also matches `dir` itself: the directory is then not even read.
    dir: Option<Pattern>,
}

impl std::str::FromStr for IgnoreGlob {
    type Err = String;

    fn from_str(s: &str) -> Result<IgnoreGlob, String> {
        let bad = |why: String| format!("`{s}` is not a glob: {why}");
        let mut body = s.trim();
        while let Some(rest) = body.strip_prefix("./") {
            body = rest;
        }
        let body = match body.trim_end_matches('/') {
            "" if body.starts_with('/') => return Err(bad("it would ignore everything".into())),
            b => b,
        };
        if body.is_empty() || body == "." {
            return Err(bad(
                "expected a name or a path, e.g. \"*.log\", \"dist\", \"tmp/**\"".into(),
            ));
        }
        let anchor = if body.starts_with('/') {
            Anchor::Absolute
        } else if body.contains('/') {
            Anchor::Relative
        } else {
            Anchor::Name
        };
        let compile = |p: &str| Pattern::new(p).map_err(|e| bad(e.msg.to_string()));
        let pattern = compile(body)?;
        let dir = match body.strip_suffix("/**") {
            Some(d) if !d.is_empty() => Some(compile(d)?),
            _ => None,
        };
        Ok(IgnoreGlob {
            text: s.to_string(),
            anchor,
            pattern,
            dir,
        })
    }
}

impl std::fmt::Display for IgnoreGlob {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

impl IgnoreGlob {
    /// A glob that matches `path` exactly (special characters escaped).
    pub fn literal(path: &Path) -> IgnoreGlob {
        let text = Pattern::escape(&path.to_string_lossy());
        text.parse().unwrap_or_else(|_| IgnoreGlob {
            // Unreachable: an escaped path is a valid glob. Kept total rather than panicking.
            text: text.clone(),
            anchor: Anchor::Absolute,
            pattern: Pattern::default(),
            dir: None,
        })
    }

    fn matches(&self, name: &OsStr, relative: Option<&Path>, absolute: &Path) -> bool {
        let path = match self.anchor {
            Anchor::Name => return self.pattern.matches_with(&name.to_string_lossy(), OPTIONS),
            Anchor::Relative => match relative {
                Some(r) => r,
                None => return false,
            },
            Anchor::Absolute => absolute,
        };
        self.pattern.matches_path_with(path, OPTIONS)
            || self
                .dir
                .as_ref()
                .is_some_and(|d| d.matches_path_with(path, OPTIONS))
    }
}

/// Everything one app's watch leaves out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ignore {
    /// The app's directory: globs with a `/` are relative to it.
    base: PathBuf,
    /// [`ALWAYS_IGNORED`], then the app's `ignore_watch`, then the files herd writes.
    globs: Vec<IgnoreGlob>,
    /// Directories ignored with all they hold (herd's home, where the daemon writes).
    trees: Vec<PathBuf>,
}

impl Ignore {
    /// The defaults and `globs`, relative to `base` (absolute).
    pub fn new(base: PathBuf, globs: &[IgnoreGlob]) -> Ignore {
        let mut all: Vec<IgnoreGlob> = ALWAYS_IGNORED
            .iter()
            .filter_map(|g| g.parse().ok())
            .collect();
        all.extend(globs.iter().cloned());
        Ignore {
            base,
            globs: all,
            trees: Vec::new(),
        }
    }

    /// Also ignores what `glob` matches (files herd writes, e.g. an app's log files).
    pub fn add_glob(&mut self, glob: IgnoreGlob) {
        if !self.globs.contains(&glob) {
            self.globs.push(glob);
        }
    }

    /// Also ignores the directory `dir` and everything in it.
    pub fn add_tree(&mut self, dir: PathBuf) {
        if !self.trees.contains(&dir) {
            self.trees.push(dir);
        }
    }

    /// The app's directory.
    pub fn base(&self) -> &Path {
        &self.base
    }

    /// Whether a change of `path` (absolute, below a watched path) is left out. Only its
    /// last component is checked against name globs: its directories were checked when
    /// they were added, and a watched path named explicitly is never ignored.
    pub fn ignores(&self, path: &Path) -> bool {
        if self.trees.iter().any(|t| path.starts_with(t)) {
            return true;
        }
        let Some(name) = path.file_name() else {
            return false;
        };
        let relative = path.strip_prefix(&self.base).ok();
        self.globs.iter().any(|g| g.matches(name, relative, path))
    }

    /// How the log shows the rule: the globs as written.
    pub fn describe(&self) -> String {
        let mut parts: Vec<String> = self.globs.iter().map(|g| g.to_string()).collect();
        parts.extend(self.trees.iter().map(|t| format!("{}/", t.display())));
        parts.join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(globs: &[&str]) -> Ignore {
        let globs: Vec<IgnoreGlob> = globs.iter().map(|g| g.parse().unwrap()).collect();
        Ignore::new("/srv/app".into(), &globs)
    }

    #[test]
    fn names_match_anywhere_paths_from_the_apps_directory() {
        let r = rule(&[
            "*.log",
            "dist/",
            "src/generated",
            "build/**",
            "/var/tmp/*.sock",
        ]);
        for ignored in [
            "/srv/app/node_modules",
            "/srv/app/lib/node_modules",
            "/srv/app/.git",
            "/srv/app/api.log",
            "/srv/app/logs/.hidden.log",
            "/srv/app/dist",
            "/srv/app/web/dist",
            "/srv/app/src/generated",
            "/srv/app/build",
            "/srv/app/build/x/y.js",
            "/var/tmp/a.sock",
        ] {
            assert!(r.ignores(Path::new(ignored)), "{ignored} should be ignored");
        }
        for kept in [
            "/srv/app/server.js",
            "/srv/app/api.log.js",
            "/srv/app/lib/src/generated",
            "/srv/app/src/generated.js",
            "/srv/app/builds",
            "/srv/app/src",
            "/var/tmp/x/a.sock",
            "/srv/app",
        ] {
            assert!(!r.ignores(Path::new(kept)), "{kept} should be watched");
        }
    }

    #[test]
    fn herds_own_files_and_trees() {
        let mut r = rule(&[]);
        r.add_glob(IgnoreGlob::literal(Path::new("/srv/app/logs/api [1].log")));
        r.add_tree("/srv/app/.herd".into());
        assert!(r.ignores(Path::new("/srv/app/logs/api [1].log")));
        assert!(!r.ignores(Path::new("/srv/app/logs/api 1.log")));
        assert!(r.ignores(Path::new("/srv/app/.herd/logs/api-0.out.log")));
        assert!(
            r.describe().contains("node_modules, .git"),
            "{}",
            r.describe()
        );
    }

    #[test]
    fn bad_globs_are_named() {
        for bad in ["", "  ", ".", "./", "/", "a**", "***", "[abc", "x/**b"] {
            let e = bad.parse::<IgnoreGlob>().unwrap_err();
            assert!(e.contains(&format!("`{bad}`")), "{bad:?}: {e}");
        }
        let g: IgnoreGlob = "./tmp/".parse().unwrap();
        assert_eq!(g.to_string(), "./tmp/", "written back as given");
    }
}
