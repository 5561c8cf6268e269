//! The programs the tests run besides herd. Every machine that runs the suite has them
//! (`.ci/run` installs them): a missing one fails the test with how to install it, it
//! never passes silently.

use std::path::PathBuf;

/// A path to `name` in PATH, if any.
pub fn which(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// The path of `name`; fails the test, saying how to install it, if it is not on PATH.
pub fn require(name: &str, install: &str) -> String {
    match which(name) {
        Some(p) => p.display().to_string(),
        None => panic!(
            "this test needs `{name}`, which is not on PATH: install it ({install}; `.ci/run` does)"
        ),
    }
}

/// The path of `node` (Node.js 20).
pub fn node() -> String {
    require(
        "node",
        "Node.js 20: `apt-get install nodejs npm` on Debian, or nodejs.org",
    )
}

/// The path of `npm`.
pub fn npm() -> String {
    require(
        "npm",
        "`apt-get install npm`, or Node.js 20 from nodejs.org",
    )
}

/// The path of Debian's `chromium`, for the dashboard's browser test (playwright-core
/// drives it; no browser download).
pub fn chromium() -> String {
    require("chromium", "`apt-get install chromium` on Debian")
}

/// The path of `python3`.
pub fn python() -> String {
    require("python3", "`apt-get install python3`")
}

/// The path of a program of util-linux (`setpriv`, `taskset`, `unshare`).
pub fn util_linux(name: &str) -> String {
    require(name, "`apt-get install util-linux`")
}

/// `kubernetes-validate` (PyPI), which ships the Kubernetes API's JSON schemas and so
/// validates manifests offline: from PATH, or from the virtualenv `.ci/run` installs it into
/// (`<target dir>/tools/kubernetes-validate`).
pub fn kubernetes_validate() -> String {
    if let Some(p) = which("kubernetes-validate") {
        return p.display().to_string();
    }
    let target = super::skip::skips_file();
    let venv = target
        .parent()
        .expect("the target directory")
        .join("tools/kubernetes-validate/bin/kubernetes-validate");
    if venv.is_file() {
        return venv.display().to_string();
    }
    require(
        "kubernetes-validate",
        &format!(
            "`pip install kubernetes-validate==1.37.0`, or `python3 -m venv {0} && {0}/bin/pip install kubernetes-validate==1.37.0`",
            venv.parent().and_then(|b| b.parent()).expect("the venv").display()
        ),
    )
}

/// The path of `systemd-socket-activate`, a real socket-activation launcher (no running
/// systemd needed).
pub fn systemd_socket_activate() -> String {
    require(
        "systemd-socket-activate",
        "`apt-get install systemd` on Debian",
    )
}

/// The path of `systemd-analyze`, which checks unit files (`verify`) without a running
/// systemd.
pub fn systemd_analyze() -> String {
    require("systemd-analyze", "`apt-get install systemd` on Debian")
}

/// A file of the repository's `examples` folder.
pub fn example(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../examples")
        .join(rel)
}

/// Express, prom-client and the session modules for the Node examples: `npm ci` in
/// examples/node, once per test process, unless node_modules has them already (`.ci/run`
/// installs them up front).
pub fn npm_installed() {
    static DONE: std::sync::Once = std::sync::Once::new();
    DONE.call_once(|| {
        npm_ci(
            &example("node"),
            &[
                "express",
                "prom-client",
                "express-session",
                "connect-redis",
                "redis",
            ],
        )
    });
}

/// `npm ci` in `dir`, unless its node_modules has every one of `modules` already.
pub fn npm_ci(dir: &std::path::Path, modules: &[&str]) {
    let has = |m: &str| {
        dir.join("node_modules")
            .join(m)
            .join("package.json")
            .exists()
    };
    if modules.iter().all(|m| has(m)) {
        return;
    }
    let out = std::process::Command::new(npm())
        .args(["ci", "--no-audit", "--no-fund"])
        .current_dir(dir)
        .output()
        .expect("cannot run npm");
    assert!(
        out.status.success(),
        "`npm ci` in {} failed: {}",
        dir.display(),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// playwright-core for the dashboard's browser test: `npm ci` in tests/browser, once per
/// test process, unless `.ci/run` installed it up front. Answers that folder.
pub fn playwright_installed() -> PathBuf {
    static DONE: std::sync::Once = std::sync::Once::new();
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/browser");
    DONE.call_once(|| npm_ci(&dir, &["playwright-core"]));
    dir
}

/// The path of `promtool` (Debian's `prometheus` package), which lints an exposition.
pub fn promtool() -> String {
    require("promtool", "`apt-get install prometheus` on Debian")
}

/// The path of `prometheus` (Debian's `prometheus` package), a real server to scrape herd.
pub fn prometheus() -> String {
    require("prometheus", "`apt-get install prometheus` on Debian")
}

/// A python3 with `prometheus_client` (PyPI): the one on PATH if it has it, else the
/// virtualenv `.ci/run` installs it into (`<target dir>/tools/prometheus-client`).
pub fn python_with_prometheus_client() -> String {
    let has = |py: &str| {
        std::process::Command::new(py)
            .args(["-c", "import prometheus_client"])
            .output()
            .is_ok_and(|o| o.status.success())
    };
    let venv = super::skip::skips_file()
        .parent()
        .expect("the target directory")
        .join("tools/prometheus-client");
    let in_venv = venv.join("bin/python");
    if in_venv.is_file() && has(&in_venv.display().to_string()) {
        return in_venv.display().to_string();
    }
    let py = python();
    if has(&py) {
        return py;
    }
    panic!(
        "this test needs Python's prometheus_client: `pip install prometheus-client==0.21.1`, or `python3 -m venv {0} && {0}/bin/pip install prometheus-client==0.21.1` (`.ci/run` does)",
        venv.display()
    )
}

/// The path of `tmux` (Debian's `tmux`), a real terminal for `herd monit`'s test.
pub fn tmux() -> String {
    require("tmux", "`apt-get install tmux` on Debian")
}

/// The path of `redis-server` (Debian's `redis-server`), a real Redis for the sessions
/// example.
pub fn redis_server() -> String {
    require("redis-server", "`apt-get install redis-server` on Debian")
}
