//! `examples/kubernetes`, kept honest: every manifest validates against the Kubernetes API
//! schemas, the numbers that must agree do (probe ports, grace period, user), and the herd
//! command lines of the Deployment and of the Dockerfile's `CMD` run as written with the real
//! binary and the real `app.py` (the Deployment's in a cgroup with its `limits`). No image
//! is built: base images need the network.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use nix::sys::signal::Signal;
use serde::Deserialize;
use serde_json::Value;

use crate::common::*;

fn dir() -> PathBuf {
    example("kubernetes")
}

/// The repository's root: the Dockerfile's build context.
fn repo() -> PathBuf {
    example("..")
}

/// Every manifest of the folder.
fn manifests() -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir(dir())
        .expect("examples/kubernetes")
        .map(|e| e.expect("a dir entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml" || e == "yml"))
        .collect();
    found.sort();
    found
}

/// The documents of a YAML file, as JSON values.
fn documents(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).unwrap();
    serde_norway::Deserializer::from_str(&text)
        .map(|doc| Value::deserialize(doc).unwrap_or_else(|e| panic!("{}: {e}", path.display())))
        .collect()
}

/// The one document of `kind` among the manifests.
fn resource(kind: &str) -> Value {
    let mut found: Vec<Value> = manifests()
        .iter()
        .flat_map(|p| documents(p))
        .filter(|d| d["kind"] == kind)
        .collect();
    assert_eq!(found.len(), 1, "one {kind} in examples/kubernetes");
    found.remove(0)
}

fn at<'a>(v: &'a Value, pointer: &str) -> &'a Value {
    v.pointer(pointer)
        .unwrap_or_else(|| panic!("no {pointer} in {v}"))
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap_or_else(|| panic!("not a list: {v}"))
        .iter()
        .map(|s| {
            s.as_str()
                .unwrap_or_else(|| panic!("not a string: {s}"))
                .to_string()
        })
        .collect()
}

/// The value after `flag` in a herd command line.
fn flag<'a>(args: &'a [String], flag: &str) -> Option<&'a str> {
    let end = args.iter().position(|a| a == "--").unwrap_or(args.len());
    args[..end]
        .iter()
        .position(|a| a == flag)
        .and_then(|i| args.get(i + 1))
        .map(String::as_str)
}

fn duration(text: &str) -> Duration {
    humantime::parse_duration(text).unwrap_or_else(|e| panic!("{text}: {e}"))
}

/// A Kubernetes quantity of memory in bytes: "512Mi", "1Gi", "1000".
fn bytes(quantity: &str) -> u64 {
    let units = [("Ki", 1u64 << 10), ("Mi", 1 << 20), ("Gi", 1 << 30)];
    for (suffix, unit) in units {
        if let Some(n) = quantity.strip_suffix(suffix) {
            return n.parse::<u64>().unwrap() * unit;
        }
    }
    quantity
        .parse()
        .unwrap_or_else(|_| panic!("memory {quantity}"))
}

/// A Kubernetes quantity of CPU as a quota of µs per 100 ms: "2" → 200000, "500m" → 50000.
fn quota_us(quantity: &str) -> u64 {
    match quantity.strip_suffix('m') {
        Some(milli) => milli.parse::<u64>().unwrap() * 100,
        None => quantity.parse::<u64>().unwrap() * 100_000,
    }
}

/// The Dockerfile's instructions: (KEYWORD, arguments), continuation lines joined, comments
/// and blank lines dropped.
fn dockerfile() -> Vec<(String, String)> {
    let text = std::fs::read_to_string(dir().join("Dockerfile")).unwrap();
    let mut out: Vec<(String, String)> = Vec::new();
    let mut pending = String::new();
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with('#') || (line.is_empty() && pending.is_empty()) {
            continue;
        }
        match line.strip_suffix('\\') {
            Some(part) => pending.push_str(part),
            None => {
                pending.push_str(line);
                let (keyword, rest) = pending.split_once(' ').unwrap_or((&pending, ""));
                out.push((keyword.to_ascii_uppercase(), rest.trim().to_string()));
                pending.clear();
            }
        }
    }
    out
}

/// The arguments of the one `keyword` instruction, in exec (JSON) form.
fn exec_form(instructions: &[(String, String)], keyword: &str) -> Vec<String> {
    let found: Vec<&String> = instructions
        .iter()
        .filter(|(k, _)| k == keyword)
        .map(|(_, rest)| rest)
        .collect();
    assert_eq!(found.len(), 1, "one {keyword} in the Dockerfile");
    let value: Value = serde_json::from_str(found[0])
        .unwrap_or_else(|e| panic!("{keyword} {} is not in exec form: {e}", found[0]));
    strings(&value)
}

/// The Dockerfile's `COPY src dest` from the build context, as (dest in the image, source in
/// the repository); also checks each source exists.
fn copied_files(instructions: &[(String, String)]) -> Vec<(String, PathBuf)> {
    instructions
        .iter()
        .filter(|(k, rest)| k == "COPY" && !rest.starts_with("--from"))
        .flat_map(|(_, rest)| {
            let words: Vec<&str> = rest.split_whitespace().collect();
            let (dest, sources) = words.split_last().expect("COPY src dest");
            sources
                .iter()
                .map(|src| {
                    let path = repo().join(src);
                    assert!(
                        path.exists(),
                        "COPY {src}: no {} in the repository",
                        path.display()
                    );
                    let to = match dest.strip_suffix('/') {
                        Some(d) => format!("{d}/{src}"),
                        None => dest.to_string(),
                    };
                    (to, path)
                })
                .collect::<Vec<_>>()
        })
        .collect()
}

#[test]
fn the_manifests_validate_against_the_kubernetes_api_schemas() {
    let validator = kubernetes_validate();
    let files = manifests();
    assert!(!files.is_empty(), "no manifest in examples/kubernetes");
    for file in files {
        let out = Command::new(&validator)
            .arg("--strict")
            .arg(&file)
            .output()
            .unwrap_or_else(|e| panic!("cannot run {validator}: {e}"));
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            out.status.success() && !text.contains("ERROR") && text.contains("passed"),
            "{} does not validate ({}):\n{text}",
            file.display(),
            out.status
        );
    }
}

/// The numbers of deployment.yaml that must agree with each other and with the Dockerfile.
#[test]
fn the_deployment_agrees_with_itself_and_the_image() {
    let deployment = resource("Deployment");
    let pod = at(&deployment, "/spec/template/spec");
    let container = &at(pod, "/containers")[0];
    let args = strings(at(container, "/args"));
    let port_of = |name: &str| {
        at(container, "/ports")
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == name)
            .and_then(|p| p["containerPort"].as_u64())
            .unwrap_or_else(|| panic!("no container port named {name}"))
    };
    // The app's port and the admin listener's are the container's named ports.
    assert_eq!(flag(&args, "-p").map(str::parse), Some(Ok(port_of("http"))));
    let admin = flag(&args, "--admin").expect("--admin");
    assert!(
        admin.starts_with("0.0.0.0:"),
        "the kubelet probes the pod's IP: {admin}"
    );
    assert_eq!(admin[8..].parse(), Ok(port_of("admin")));
    // Each probe asks herd's admin listener the right question.
    for (probe, path) in [
        ("livenessProbe", "/livez"),
        ("readinessProbe", "/readyz"),
        ("startupProbe", "/readyz"),
    ] {
        let get = at(container, &format!("/{probe}/httpGet"));
        assert_eq!(get["path"], path, "{probe}");
        assert_eq!(get["port"], "admin", "{probe}");
    }
    // The grace period outlasts the delay and the kill timeout.
    let grace = Duration::from_secs(at(pod, "/terminationGracePeriodSeconds").as_u64().unwrap());
    let needed = duration(flag(&args, "--shutdown-delay").expect("--shutdown-delay"))
        + duration(flag(&args, "--kill-timeout").expect("--kill-timeout"));
    assert!(
        grace > needed,
        "terminationGracePeriodSeconds {grace:?} must exceed --shutdown-delay + --kill-timeout = {needed:?}"
    );
    // The Service sends to the app's port of these pods.
    let service = resource("Service");
    assert_eq!(
        at(&service, "/spec/selector"),
        at(&deployment, "/spec/selector/matchLabels")
    );
    assert_eq!(at(&service, "/spec/ports/0/targetPort"), "http");
    // The image's user is the one the pod runs as, and the image runs herd.
    let image = dockerfile();
    let user = image
        .iter()
        .find(|(k, _)| k == "USER")
        .map(|(_, u)| u.split(':').next().unwrap().to_string())
        .expect("a USER in the Dockerfile");
    assert_eq!(user, at(pod, "/securityContext/runAsUser").to_string());
    let entrypoint = exec_form(&image, "ENTRYPOINT");
    let herd_copy = image
        .iter()
        .find(|(k, rest)| k == "COPY" && rest.starts_with("--from=build "))
        .map(|(_, rest)| rest.split_whitespace().collect::<Vec<_>>())
        .expect("herd copied from the build stage");
    assert_eq!(
        entrypoint,
        [herd_copy[2]],
        "the entrypoint is the herd it copies"
    );
    assert_eq!(herd_copy[1], "/src/target/release/herd");
    assert!(image.iter().any(|(k, rest)| k == "RUN"
        && rest.contains("cargo build --release")
        && rest.contains("--bin herd")));
}

/// Runs `args` (herd's, after the entrypoint) as written, with the image's files mapped to
/// the repository's and the two ports moved to free ones; checks the probes, the app and the
/// shutdown with its delay. Returns herd, exited, with its log.
fn run_as_written(args: &[String], cgroup: Option<&Cgroup>) -> Herd {
    let copied = copied_files(&dockerfile());
    let (app_port, admin_port) = (free_port(), free_port());
    let mut args: Vec<String> = args.to_vec();
    for i in 0..args.len() {
        if let Some((_, source)) = copied.iter().find(|(dest, _)| *dest == args[i]) {
            args[i] = source.display().to_string();
        }
        if i > 0 && matches!(args[i - 1].as_str(), "-p" | "--port") {
            args[i] = app_port.to_string();
        }
        if i > 0 && args[i - 1] == "--admin" {
            let host = args[i].rsplit_once(':').expect("host:port").0.to_string();
            args[i] = format!("{host}:{admin_port}");
        }
    }
    let python = python();
    for a in args.iter_mut() {
        if a == "python3" {
            a.clone_from(&python);
        }
    }
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    let cmd = match cgroup {
        Some(c) => c.command(herd_bin(), &argv),
        None => {
            let mut c = Command::new(herd_bin());
            c.args(&argv);
            c
        }
    };
    let mut herd = Herd::spawn(cmd, false, true);
    let starting = herd.wait_event("herd.starting");
    herd.wait_ready(starting.u64("instances") as usize);
    let admin = format!("http://127.0.0.1:{admin_port}");
    let app = format!("http://127.0.0.1:{app_port}/");
    let get = |url: &str| http_get(url).unwrap_or_else(|e| herd.fail(&format!("GET {url}: {e}")));
    assert_eq!(get(&format!("{admin}/livez")), (200, "ok\n".into()));
    assert_eq!(get(&format!("{admin}/readyz")), (200, "ok\n".into()));
    let (status, body) = get(&app);
    assert!(
        status == 200 && body.starts_with("hello from pid"),
        "{status} {body}"
    );
    // SIGTERM: not ready at once, still serving for the delay; a second one ends the wait.
    herd.signal(Signal::SIGTERM);
    if let Some(delay) = flag(&args, "--shutdown-delay") {
        let delayed = herd.wait_event("shutdown.delayed");
        assert_eq!(
            Duration::from_millis(delayed.u64("delay_ms")),
            duration(delay)
        );
        assert_eq!(get(&format!("{admin}/readyz")).0, 503);
        assert_eq!(get(&format!("{admin}/livez")).0, 200);
        assert_eq!(get(&app).0, 200);
        herd.signal_again(Signal::SIGTERM, "shutdown.started");
    }
    herd.wait_event("shutdown.started");
    let code = herd.wait_exit(T);
    if code != 0 {
        herd.fail(&format!("herd exited with {code}"));
    }
    herd
}

/// The Deployment's herd command, in a cgroup with the container's `limits`: `-i max` is its
/// CPU limit, the memory share is of its memory limit, and nothing is overcommitted.
#[test]
fn the_deployments_command_runs_within_its_limits() {
    let deployment = resource("Deployment");
    let container = &at(&deployment, "/spec/template/spec/containers")[0];
    let args = strings(at(container, "/args"));
    let cpu = at(container, "/resources/limits/cpu")
        .as_str()
        .unwrap()
        .to_string();
    let memory = bytes(at(container, "/resources/limits/memory").as_str().unwrap());
    let quota = CpuQuota {
        quota_us: quota_us(&cpu),
        period_us: 100_000,
    };
    let pod = match Cgroup::create(memory, quota) {
        Ok(c) => c,
        Err(why) => {
            skip(&format!(
                "cannot make a cgroup with the Deployment's limits: {why}"
            ));
            return;
        }
    };
    let herd = run_as_written(&args, Some(&pod));
    let starting = herd.wait_event("herd.starting");
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get()) as u64;
    let expected = quota.quota_us.div_ceil(quota.period_us).min(cpus);
    assert_eq!(starting.u64("instances"), expected, "{starting:?}");
    let percent: f64 = flag(&args, "--max-memory-restart")
        .and_then(|s| s.strip_suffix('%'))
        .expect("--max-memory-restart as a share of the memory limit")
        .parse()
        .unwrap();
    let hundredths = (percent * 100.0).round() as u64;
    let limit = herd.wait_event("herd.memory_limit");
    assert_eq!(
        limit.u64("limit"),
        memory * hundredths / 10_000,
        "{limit:?}"
    );
    assert!(
        herd.events("herd.memory_overcommitted").is_empty(),
        "the Deployment's workers do not fit its memory limit:\n{}",
        herd.dump()
    );
}

/// The Dockerfile's `CMD`: what `docker run herd-example` does.
#[test]
fn the_images_default_command_runs() {
    let cmd = exec_form(&dockerfile(), "CMD");
    assert_eq!(cmd.first().map(String::as_str), Some("run"));
    run_as_written(&cmd, None);
}
