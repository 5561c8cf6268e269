//! A changed herd.toml reaching running apps: `herd reload FILE` under load (new
//! environment and worker count, no failed request), a reload refused when the sockets or
//! the log files would change (nothing touched), `herd restart FILE` applying any change
//! and starting the file's other apps, and `herd start` telling that a running app is
//! defined differently.

use std::time::Instant;

use crate::common::daemon::*;
use crate::common::*;

/// The file the tests change, named as a user would in its folder (the commands run there).
const FILE: &str = "herd.toml";

/// A daemon that started the apps of `text`, written as the test folder's herd.toml.
fn running(text: &str) -> Daemon {
    let d = Daemon::new();
    d.file(FILE, text);
    d.ok(&["start", FILE]);
    d
}

/// `GET /var?name=GREETING` on fresh connections, `n` times: the values seen.
fn greetings(port: u16, n: usize) -> std::collections::BTreeSet<String> {
    (0..n)
        .map(
            |_| match http_get(&format!("http://127.0.0.1:{port}/var?name=GREETING")) {
                Ok((200, body)) => body.trim().to_string(),
                other => format!("failed: {other:?}"),
            },
        )
        .collect()
}

fn web(instances: usize, greeting: &str, extra: &str) -> String {
    web_args(&[], instances, greeting, extra)
}

/// The definition of `web` the daemon holds, its env values shown (`ls --json --show-env`).
fn definition(d: &Daemon) -> String {
    let r = d.ok(&["ls", "--json", "--show-env"]);
    let apps: Vec<serde_json::Value> = serde_json::from_str(&r.stdout).unwrap();
    let web = apps
        .iter()
        .find(|a| a["name"] == "web")
        .expect("web is listed");
    web["toml"].as_str().unwrap().to_string()
}

/// [`web`] with arguments for the test worker.
fn web_args(args: &[&str], instances: usize, greeting: &str, extra: &str) -> String {
    testworker_args_app(
        "web",
        args,
        instances,
        &format!("env = {{ GREETING = {greeting:?} }}\n{extra}"),
    )
}

#[test]
fn reload_of_a_file_applies_its_definition_under_load_without_a_failed_request() {
    let d = running(&web(2, "one", ""));
    let old = d.wait_online("web", 2);
    let port = d.port("web");
    d.wait_answers_from(port, &old);
    assert_eq!(greetings(port, 4), ["one".to_string()].into());

    d.file(FILE, &web(3, "two", ""));
    let load = Load::start(port, 2);
    d.wait_until("100 answers before the reload", T, || load.ok() >= 100);
    let t0 = Instant::now();
    let r = d.ok(&["reload", FILE]);
    assert!(
        r.stdout
            .contains("web: reloaded with the definition of herd.toml, every worker replaced"),
        "{r}"
    );
    let new = d.wait_online("web", 3);
    assert!(
        new.iter().all(|p| !old.contains(p)),
        "old {old:?}, new {new:?}"
    );
    let ok = load.ok();
    d.wait_until("50 more answers after the reload", T, || {
        load.ok() >= ok + 50
    });
    if let Err(e) = load.finish_clean(t0) {
        d.fail(&format!("across the reload (begun at {t0:?}): {e}"));
    }
    d.wait_until(&format!("the old workers {old:?} are gone"), T, || {
        old.iter().all(|p| proc_state(*p).is_none())
    });
    d.wait_answers_from(port, &new);
    assert_eq!(greetings(port, 6), ["two".to_string()].into());
    // The daemon holds the new definition: `ls` shows it and `save` keeps it.
    assert!(definition(&d).contains("two"), "{}", definition(&d));
    let r = d.ok(&["start", FILE]);
    assert!(r.stdout.contains("web: already running ("), "{r}");
    let r = d.ok(&["start", &format!("./{FILE}")]);
    assert!(r.stdout.contains("web: already running ("), "{r}");
}

#[test]
fn a_reload_that_would_change_the_sockets_or_log_files_is_refused_and_changes_nothing() {
    let d = running(&web(2, "one", ""));
    let pids = d.wait_online("web", 2);
    let port = d.port("web");
    let moved = free_port();

    let text = web(2, "two", "").replace("127.0.0.1:0", &format!("127.0.0.1:{moved}"));
    d.file(FILE, &text);
    let r = d.refused(&["reload", FILE]);
    assert!(
        r.stderr.contains(&format!(
            "web: not reloaded: a reload keeps the app's sockets, and the new definition changes listen (127.0.0.1:0 → 127.0.0.1:{moved}); `herd restart herd.toml` applies it"
        )),
        "{r}"
    );
    d.file(FILE, &web(2, "two", "out_file = \"web.log\"\n"));
    let r = d.refused(&["reload", FILE]);
    assert!(
        r.stderr.contains(
            "a reload keeps the app's log files, and the new definition changes out_file;"
        ),
        "{r}"
    );

    assert_eq!(d.online_pids("web"), pids, "no worker was replaced");
    assert_eq!(greetings(port, 4), ["one".to_string()].into());
    assert!(definition(&d).contains("one"));
    let r = d.ok(&["start", FILE]);
    assert!(
        r.stdout.contains(
            "web: already running, with a definition other than herd.toml's: `herd reload herd.toml` (with this command's --env and --only) applies it"
        ),
        "{r}"
    );
}

#[test]
fn restart_of_a_file_applies_any_change_and_starts_its_other_apps() {
    let d = running(&web(1, "one", ""));
    let old = d.wait_online("web", 1);
    let moved = free_port();
    let text = web(2, "two", "").replace("127.0.0.1:0", &format!("127.0.0.1:{moved}"))
        + &testworker_app("api", 1, "");
    d.file(FILE, &text);

    let r = d.ok(&["restart", FILE]);
    assert!(r.stdout.contains("web: stopped"), "{r}");
    assert!(
        r.stdout
            .contains("web: started with the definition of herd.toml, every worker ready"),
        "{r}"
    );
    assert!(r.stdout.contains("api: started with the definition"), "{r}");
    let new = d.wait_online("web", 2);
    assert!(new.iter().all(|p| !old.contains(p)));
    assert_eq!(d.port("web"), moved);
    assert_eq!(greetings(moved, 4), ["two".to_string()].into());
    d.wait_online("api", 1);
}

#[test]
fn names_and_files_do_not_mix_and_profiles_go_with_files() {
    let d = running(&web(1, "one", "[apps.web.env_prod]\nGREETING = \"prod\"\n"));
    d.wait_online("web", 1);
    let port = d.port("web");
    for args in [
        &["reload", "web", FILE][..],
        &["restart", FILE, "web"],
        &["reload", "web", "--env", "prod"],
        &["restart", "web", "--only", "web"],
    ] {
        let r = d.run(args);
        assert_eq!(r.code, 2, "{r}");
    }
    let r = d.run(&["reload", "missing.toml"]);
    assert_eq!(r.code, 1, "{r}");
    assert!(r.stderr.contains("missing.toml"), "{r}");
    d.ok(&["reload", FILE, "--env", "prod"]);
    assert_eq!(greetings(port, 3), ["prod".to_string()].into());
}

#[test]
fn a_reload_stops_the_old_workers_the_way_their_own_definition_says() {
    // Old workers stop on SIGUSR1 only; new ones on SIGTERM. A kill timeout longer than
    // the test waits: an old worker sent the new definition's SIGTERM would outlive it.
    let old_app = testworker_args_app(
        "web",
        &["--ignore-term"],
        2,
        "stop_signal = \"SIGUSR1\"\nkill_timeout = \"60s\"",
    );
    let d = running(&old_app);
    let old = d.wait_online("web", 2);
    d.file(FILE, &web(2, "two", "kill_timeout = \"60s\"\n"));
    d.ok(&["reload", FILE]);
    d.wait_until(
        &format!("the old workers {old:?} stopped by SIGUSR1"),
        T,
        || old.iter().all(|p| proc_state(*p).is_none()),
    );
    let port = d.port("web");
    assert_eq!(greetings(port, 4), ["two".to_string()].into());
}

#[test]
fn a_failed_reload_leaves_the_previous_definition_in_force() {
    let d = running(&web(1, "one", ""));
    let old = d.wait_online("web", 1);
    let port = d.port("web");
    // New workers that exit at once: the reload stops at its first slot.
    let broken = web_args(&["--exit-now", "3"], 2, "two", "");
    d.file(FILE, &broken);
    let r = d.refused(&["reload", FILE]);
    assert!(
        r.stderr
            .contains("the old workers keep serving; it keeps its previous definition"),
        "{r}"
    );
    assert_eq!(d.online_pids("web"), old);
    assert!(definition(&d).contains("one"));
    // A worker started now runs the previous definition, not the broken one.
    d.ok(&["scale", "web", "2"]);
    let pids = d.wait_online("web", 2);
    d.wait_answers_from(port, &pids);
    assert_eq!(greetings(port, 6), ["one".to_string()].into());
}

#[test]
fn a_restart_to_a_definition_that_cannot_start_leaves_the_app_running() {
    let d = running(&web(1, "one", ""));
    let old = d.wait_online("web", 1);
    d.file(
        "herd.toml",
        &web(1, "two", "").replace(worker_bin(), "/nonexistent/herd-worker"),
    );
    let r = d.refused(&["restart", FILE]);
    assert!(r.stderr.contains("web: not restarted: "), "{r}");
    assert!(r.stderr.contains("/nonexistent/herd-worker"), "{r}");
    assert_eq!(d.online_pids("web"), old);
}

#[test]
fn a_namespace_with_a_dot_is_a_name_unless_such_a_file_exists() {
    let d = running(&web(1, "one", "namespace = \"api.v2\""));
    let old = d.wait_online("web", 1);
    let r = d.ok(&["reload", "api.v2"]);
    assert!(
        r.stdout.contains("web: reloaded, every worker replaced"),
        "{r}"
    );
    let new = d.wait_online("web", 1);
    assert_ne!(new, old);
}
