//! How a worker process is launched beyond the worker contract: the program found as
//! execvp would find it, the directory, the environment and the user it runs as. Nothing
//! here starts a process; the driver's spawner does, from these values.

use std::ffi::OsString;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use super::plan::PlanError;

/// Where and as whom a worker runs, and the environment it starts with (an app of a
/// herd.toml; `herd run` leaves all of it to the process herd runs in).
#[derive(Debug, Clone, Default)]
pub struct Launch {
    /// Working directory (herd's own when `None`).
    pub cwd: Option<PathBuf>,
    /// The environment workers start from instead of herd's own: the daemon's apps get
    /// the environment of the `herd start` that added them, as PM2 does.
    pub base_env: Option<std::sync::Arc<Vec<(OsString, OsString)>>>,
    /// The app's `env`, set over the base environment.
    pub env: Vec<(String, String)>,
    /// A variable that carries the slot number besides HERD_WORKER_ID and
    /// NODE_APP_INSTANCE (PM2's `instance_var`).
    pub instance_var: Option<String>,
    /// A variable of `env` (or the base environment) whose number is increased by the slot
    /// number in each worker (PM2's `increment_var`, e.g. a per-worker debug port).
    pub increment_var: Option<String>,
    /// The user, group and supplementary groups to run workers as.
    pub credentials: Option<Credentials>,
}

/// Who a worker runs as (herd is root and switches in the child, before exec).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    /// User id.
    pub uid: u32,
    /// Primary group id.
    pub gid: u32,
    /// Supplementary groups: the user's own (as login, systemd and PM2 set them), so a
    /// worker run as `www-data` keeps e.g. `ssl-cert`.
    pub groups: Vec<u32>,
}

impl Launch {
    /// The variables a worker of `slot` gets over its base environment, later ones
    /// winning: the app's env, the incremented variable, the contract, then `extra`.
    pub fn worker_env(
        &self,
        slot: usize,
        contract: Vec<(String, String)>,
        extra: &[(String, String)],
    ) -> Vec<(String, String)> {
        let mut env = self.env.clone();
        if let Some(var) = &self.increment_var {
            let base = env
                .iter()
                .rev()
                .find(|(k, _)| k == var)
                .map(|(_, v)| v.clone())
                .or_else(|| self.base_value(var));
            if let Some(n) = base.and_then(|v| v.trim().parse::<i64>().ok()) {
                env.push((var.clone(), (n + slot as i64).to_string()));
            }
        }
        env.extend(contract);
        if let Some(var) = &self.instance_var {
            env.push((var.clone(), slot.to_string()));
        }
        env.extend(extra.iter().cloned());
        env
    }

    /// The value of `var` in the environment the workers start from.
    pub fn base_value(&self, var: &str) -> Option<String> {
        match &self.base_env {
            Some(base) => env_value(base, var).map(|v| v.to_string_lossy().into_owned()),
            None => std::env::var(var).ok(),
        }
    }
}

/// `filter_env` (PM2's option): which variables of herd's own environment (of the `herd
/// start` that added the app, under the daemon) the workers do not inherit. The app's `env`
/// and the worker contract are set over what is left, so they are never filtered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FilterEnv {
    /// `true`: none is inherited, PATH and HOME included.
    All,
    /// Those whose name starts with one of these (none empty).
    Prefixes(Vec<String>),
}

impl FilterEnv {
    /// `--filter-env-all` and the `--filter-env PREFIX` flags: `None` when neither is given.
    pub fn from_flags(all: bool, prefixes: Vec<String>) -> Option<FilterEnv> {
        match (all, prefixes.is_empty()) {
            (true, _) => Some(FilterEnv::All),
            (false, false) => Some(FilterEnv::Prefixes(prefixes)),
            (false, true) => None,
        }
    }

    /// Whether a worker inherits the variable `name`.
    pub fn keeps(&self, name: &std::ffi::OsStr) -> bool {
        use std::os::unix::ffi::OsStrExt;
        match self {
            FilterEnv::All => false,
            FilterEnv::Prefixes(p) => !p.iter().any(|p| name.as_bytes().starts_with(p.as_bytes())),
        }
    }

    /// What a worker inherits of `env`.
    pub fn apply(
        &self,
        env: impl IntoIterator<Item = (OsString, OsString)>,
    ) -> Vec<(OsString, OsString)> {
        env.into_iter().filter(|(k, _)| self.keeps(k)).collect()
    }
}

/// One `filter_env` prefix: an empty one would drop every variable, which `filter_env =
/// true` (`--filter-env-all`) says plainly.
pub fn parse_prefix(s: &str) -> Result<String, String> {
    if s.is_empty() || s.contains(['=', '\0']) {
        Err("expected the start of variable names, e.g. SECRET_ (an empty prefix would drop every variable: use filter_env = true)".to_string())
    } else {
        Ok(s.to_string())
    }
}

/// The value of `key` in an environment given as pairs.
pub fn env_value<'a>(env: &'a [(OsString, OsString)], key: &str) -> Option<&'a OsString> {
    env.iter().find(|(k, _)| k == key).map(|(_, v)| v)
}

/// `node -e …`, `node -p …`, `node -` or a bare `node`: Node runs no script file, and a
/// Node started with NODE_UNIQUE_ID but no script file is a half-set-up cluster worker
/// whose `listen()` never completes (checked with Node 20).
pub(super) fn node_without_script(program: &str, args: &[String]) -> bool {
    let name = Path::new(program)
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    if !name.starts_with("node") {
        return false;
    }
    for a in args {
        match a.as_str() {
            "-e" | "--eval" | "-p" | "--print" | "-" | "-i" | "--interactive" => return true,
            a if a.starts_with("--eval=") || a.starts_with("--print=") => return true,
            a if a.starts_with('-') => continue,
            _ => return false,
        }
    }
    true
}

/// Finds `program` the way execvp would, so a typo is reported before any worker starts.
pub fn resolve_program(
    program: &str,
    path_var: Option<&std::ffi::OsStr>,
) -> Result<PathBuf, PlanError> {
    if program.contains('/') {
        let p = PathBuf::from(program);
        check_executable(&p)?;
        return Ok(p);
    }
    let mut last_err = None;
    for dir in std::env::split_paths(path_var.unwrap_or_default()) {
        let candidate = dir.join(program);
        if candidate.exists() {
            match check_executable(&candidate) {
                Ok(()) => return Ok(candidate),
                Err(e) => last_err = Some(e),
            }
        }
    }
    Err(last_err.unwrap_or_else(|| PlanError::CommandNotFound(program.to_string())))
}

fn check_executable(p: &Path) -> Result<(), PlanError> {
    let bad = |why: &str| PlanError::NotExecutable {
        path: p.display().to_string(),
        why: why.into(),
    };
    let meta = std::fs::metadata(p).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => bad("no such file"),
        _ => bad(&e.to_string()),
    })?;
    if meta.is_dir() {
        return Err(bad("it is a directory"));
    }
    if meta.permissions().mode() & 0o111 == 0 {
        return Err(bad(
            "it is not executable (chmod +x, or name its interpreter first)",
        ));
    }
    Ok(())
}

/// Who `user` and `group` (names or numeric ids) are: the group defaults to the user's
/// primary group, the supplementary groups are the user's. Switching needs root; as
/// another user, naming oneself is allowed and changes nothing (`None`).
pub(super) fn credentials(
    user: Option<&str>,
    group: Option<&str>,
) -> Result<Option<Credentials>, PlanError> {
    use nix::unistd::{Gid, Group, Uid, User};
    if user.is_none() && group.is_none() {
        return Ok(None);
    }
    let bad = PlanError::Credentials;
    let me = User::from_uid(Uid::effective()).ok().flatten();
    let user = match user {
        None => me.clone(),
        Some(u) => {
            let found = match u.parse::<u32>() {
                Ok(id) => User::from_uid(Uid::from_raw(id)),
                Err(_) => User::from_name(u),
            };
            match found {
                Ok(Some(found)) => Some(found),
                Ok(None) => return Err(bad(format!("user `{u}` does not exist"))),
                Err(e) => return Err(bad(format!("cannot look up user `{u}`: {e}"))),
            }
        }
    };
    let uid = user.as_ref().map_or(Uid::effective(), |u| u.uid);
    let gid = match group {
        None => user.as_ref().map_or(Gid::effective(), |u| u.gid),
        Some(g) => {
            let found = match g.parse::<u32>() {
                Ok(id) => Group::from_gid(Gid::from_raw(id)),
                Err(_) => Group::from_name(g),
            };
            match found {
                Ok(Some(found)) => found.gid,
                Ok(None) => return Err(bad(format!("group `{g}` does not exist"))),
                Err(e) => return Err(bad(format!("cannot look up group `{g}`: {e}"))),
            }
        }
    };
    if !Uid::effective().is_root() && (uid != Uid::effective() || gid != Gid::effective()) {
        return Err(bad(format!(
            "running workers as uid {uid} / gid {gid} needs herd to run as root (it runs as uid {})",
            Uid::effective()
        )));
    }
    if !Uid::effective().is_root() {
        return Ok(None);
    }
    let groups = match &user {
        Some(u) => {
            let name = std::ffi::CString::new(u.name.clone())
                .map_err(|_| bad(format!("user name `{}` has a NUL byte", u.name)))?;
            nix::unistd::getgrouplist(&name, gid)
                .map_err(|e| bad(format!("cannot list the groups of `{}`: {e}", u.name)))?
                .into_iter()
                .map(Gid::as_raw)
                .collect()
        }
        None => vec![gid.as_raw()],
    };
    Ok(Some(Credentials {
        uid: uid.as_raw(),
        gid: gid.as_raw(),
        groups,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filter_env_drops_by_prefix_or_everything() {
        let env: Vec<(OsString, OsString)> =
            ["PATH", "SECRET_KEY", "SECRETARY", "AWS_TOKEN", "HOME"]
                .iter()
                .map(|k| (OsString::from(k), OsString::from("x")))
                .collect();
        let names = |f: &FilterEnv| -> Vec<String> {
            f.apply(env.clone())
                .into_iter()
                .map(|(k, _)| k.to_string_lossy().into_owned())
                .collect()
        };
        let prefixes = FilterEnv::Prefixes(vec!["SECRET_".into(), "AWS_".into()]);
        assert_eq!(names(&prefixes), ["PATH", "SECRETARY", "HOME"]);
        assert!(names(&FilterEnv::All).is_empty());
        assert_eq!(FilterEnv::from_flags(false, Vec::new()), None);
        assert_eq!(
            FilterEnv::from_flags(true, Vec::new()),
            Some(FilterEnv::All)
        );
        assert_eq!(
            FilterEnv::from_flags(false, vec!["A_".into()]),
            Some(FilterEnv::Prefixes(vec!["A_".into()]))
        );
        assert!(parse_prefix("").is_err());
        assert!(parse_prefix("A=B").is_err());
        assert_eq!(parse_prefix("npm_"), Ok("npm_".into()));
    }

    #[test]
    fn node_eval_is_not_a_cluster_worker() {
        let v = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert!(node_without_script("node", &v(&["-e", "1"])));
        assert!(node_without_script(
            "/usr/bin/node",
            &v(&["--max-old-space-size=100", "-p", "1"])
        ));
        assert!(node_without_script("node", &v(&[])));
        assert!(!node_without_script(
            "node",
            &v(&["--inspect", "server.js", "-e"])
        ));
        assert!(!node_without_script("python3", &v(&["-e"])));
    }

    #[test]
    fn resolves_programs_in_path() {
        let p = resolve_program("sh", Some("/nonexistent:/bin:/usr/bin".as_ref())).unwrap();
        assert!(p.ends_with("sh"));
        assert_eq!(
            resolve_program("no-such-program-herd", Some("/bin".as_ref())),
            Err(PlanError::CommandNotFound("no-such-program-herd".into()))
        );
    }

    #[test]
    fn rejects_paths_that_cannot_run() {
        let dir = std::env::temp_dir();
        let err = resolve_program(dir.to_str().unwrap(), None).unwrap_err();
        assert!(err.to_string().contains("directory"), "{err}");
        let f = dir.join(format!("herd-plan-test-{}", std::process::id()));
        std::fs::write(&f, "#!/bin/sh\n").unwrap();
        let err = resolve_program(f.to_str().unwrap(), None).unwrap_err();
        assert!(err.to_string().contains("not executable"), "{err}");
        std::fs::remove_file(&f).unwrap();
        assert!(resolve_program("./definitely/missing", None)
            .unwrap_err()
            .to_string()
            .contains("no such file"));
    }
}
