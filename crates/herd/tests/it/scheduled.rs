//! Scheduled reloads (`--cron-reload`, herd.toml's `cron_restart`) on the real clock: a
//! schedule a few seconds ahead (its seconds field) reloads at that time in the local time
//! zone herd runs in, and the new generation answers; a bad schedule is refused naming the
//! flag or the key before any worker starts; `herd describe` shows the next reload.

use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::common::daemon::*;
use crate::common::*;

/// The zone herd runs in for these tests: UTC+5:30 as a POSIX TZ string (no tz database
/// needed), so a schedule read in UTC would name other minutes than it does.
const TZ: &str = "IST-5:30";
const OFFSET: u64 = 5 * 3600 + 30 * 60;

/// The wall-clock second `ahead` from now, and its minute and second in the test zone.
fn ahead(ahead: Duration) -> (SystemTime, u64, u64) {
    let secs = (SystemTime::now() + ahead)
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let local = secs + OFFSET;
    (
        UNIX_EPOCH + Duration::from_secs(secs),
        (local / 60) % 60,
        local % 60,
    )
}

/// The generation (`HERD_GENERATION`) of the worker answering a fresh connection.
fn generation(herd: &Herd) -> Option<u64> {
    herd.get("/var?name=HERD_GENERATION").1.trim().parse().ok()
}

#[test]
fn a_schedule_reloads_at_its_time_in_local_time() {
    // Three seconds: herd is up and has read the clock long before.
    let (due, minute, second) = ahead(Duration::from_secs(3));
    let schedule = format!("{second} {minute} * * * *");
    let mut cmd = Command::new(herd_bin());
    cmd.env("TZ", TZ).args([
        "run",
        "-i",
        "2",
        "--listen",
        "127.0.0.1:0",
        "--cron-reload",
        &schedule,
        "--",
        worker_bin(),
    ]);
    let herd = Herd::spawn(cmd, false, true);
    herd.wait_ready(2);
    let old = herd.worker_pids();
    let first = generation(&herd).unwrap_or_else(|| herd.fail("no HERD_GENERATION"));

    let (at, e) = herd.wait_event_from(0, "reload.scheduled", |_| true);
    assert_eq!(e.str("schedule"), schedule);
    let fired = humantime::parse_rfc3339(e.str("timestamp")).unwrap();
    if fired < due || fired > due + Duration::from_secs(5) {
        herd.fail(&format!(
            "the reload fired at {}, not at {} (the schedule's time)",
            humantime::format_rfc3339_millis(fired),
            humantime::format_rfc3339(due)
        ));
    }
    // The next one: the same minute and second an hour later, in the zone's offset.
    let next = humantime::format_rfc3339_seconds(due + Duration::from_secs(3600 + OFFSET))
        .to_string()
        .replace('Z', "+05:30");
    assert_eq!(e.str("next"), next, "{e:?}");

    herd.wait_event_from(at, "reload.started", |_| true);
    let done = herd.wait_event_from(at, "reload.done", |_| true).1;
    herd.wait_gone(&old, T);
    let gens: Vec<Option<u64>> = (0..20).map(|_| generation(&herd)).collect();
    let reloaded = done.u64("generation");
    assert!(reloaded > first, "{done:?}");
    assert!(
        gens.iter().all(|g| *g == Some(reloaded)),
        "only generation {reloaded} answers after the scheduled reload: {gens:?}"
    );
    assert_eq!(herd.events("reload.scheduled").len(), 1);
}

#[test]
fn a_bad_schedule_is_refused_naming_the_flag_or_the_key() {
    let mut herd = Herd::start(&[
        "run",
        "--cron-reload",
        "0 25 * * *",
        "--listen",
        "127.0.0.1:0",
        "--",
        worker_bin(),
    ]);
    assert_eq!(herd.wait_exit(T), 2, "a usage error\n{}", herd.dump());
    let err = herd.lines(Out::Stderr).join("\n");
    assert!(
        err.contains("--cron-reload") && err.contains("`0 25 * * *` is not a schedule"),
        "{err}"
    );
    herd.assert_no_spawn();

    let toml = testworker_app("nightly", 1, "cron_restart = \"0 3 * *\"");
    let r = Daemon::new().refuses_file(&toml, 5, "apps.nightly.cron_restart");
    assert!(r.stderr.contains("`0 3 * *` is not a schedule"), "{r}");
}

#[test]
fn describe_shows_the_next_scheduled_reload() {
    let d = Daemon::new();
    let file = d.file(
        "herd.toml",
        &testworker_app("nightly", 1, "cron_restart = \"0 3 * * *\""),
    );
    d.ok(&["start", file.to_str().unwrap()]);
    let text = d.ok(&["describe", "nightly"]).stdout;
    let line = text
        .lines()
        .find(|l| l.starts_with("next reload"))
        .unwrap_or_else(|| d.fail(&format!("no next reload in describe:\n{text}")));
    // The daemon and this CLI run in the machine's zone: 03:00 there.
    assert!(
        line.contains(" 03:00:00 ") && line.contains("(in "),
        "{line}"
    );

    let next = d.app("nightly")["status"]["next_reload_ms"]
        .as_u64()
        .unwrap_or_else(|| d.fail("no next_reload_ms in ls --json"));
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    assert!(
        next > now && next <= now + 25 * 3600 * 1000,
        "next {next}, now {now}"
    );
    // An app without a schedule shows none.
    let plain = d.file("plain.toml", &testworker_app("plain", 1, ""));
    d.ok(&["start", plain.to_str().unwrap()]);
    let text = d.ok(&["describe", "plain"]).stdout;
    assert!(!text.contains("next reload"), "{text}");
}
