"""Helpers of the chaos and soak scripts (imported, not run): the processes they start,
/proc, HTTP probes, `herd bench`, `herd run` and the daemon.

Every process started here is in a session of its own and carries HERD_CHAOS_RUN=<tag>
in its environment (herd passes it to its workers, they to their children), so that
after a scenario any process left over is found in /proc/*/environ whoever its parent
is, and killed. `cleanup()` runs at exit, on Ctrl-C and on SIGTERM.
"""
import json
import os
import random
import resource
import selectors
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
TARGET = os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target"))
MARK = "HERD_CHAOS_RUN"
CLK = os.sysconf("SC_CLK_TCK")
MIB = 1024 * 1024
NODE_APP = os.path.join(ROOT, "examples", "node", "basic.mjs")
SESSION = f"{os.getpid()}x{int(time.time())}"
WORK = tempfile.mkdtemp(prefix="herd-chaos.")
DEVNULL = subprocess.DEVNULL

HERD = None
TW = None


def set_binaries(herd):
    """The herd binary, and herd-testworker beside it (HERD_TESTWORKER overrides)."""
    global HERD, TW
    HERD = os.path.abspath(herd)
    TW = os.environ.get("HERD_TESTWORKER", os.path.join(os.path.dirname(HERD), "herd-testworker"))
    for path in (HERD, TW):
        if not os.access(path, os.X_OK):
            sys.exit(f"{path} is missing: build it with `cargo build --release -p herd "
                     f"--features testworker` (or set HERD=path/to/herd)")


def log(*a):
    print(*a, file=sys.stderr, flush=True)


def raise_nofile(n=65536):
    """Our own open-file limit (thousands of client sockets): n if we may raise the hard
    limit (CAP_SYS_RESOURCE), else the hard limit. Returns it."""
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (n, n))
    except (ValueError, OSError):
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[1]


def nofile():
    """The open-file limit processes started from here can have."""
    return resource.getrlimit(resource.RLIMIT_NOFILE)[1]


# ---------------------------------------------------------------- processes we start

_STARTED = []


def spawn(cmd, tag=None, env=None, stdout=DEVNULL, stderr=DEVNULL):
    """Starts cmd in a session of its own; with a tag, marked for the leftover scan."""
    e = dict(os.environ)
    if tag is not None:
        e[MARK] = f"{SESSION}:{tag}"
    e.update(env or {})
    p = subprocess.Popen(cmd, env=e, stdin=DEVNULL, stdout=stdout, stderr=stderr,
                         start_new_session=True)
    _STARTED.append(p)
    return p


def kill_session(p):
    try:
        os.killpg(p.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    try:
        p.wait(5)
    except subprocess.TimeoutExpired:
        pass


def cleanup():
    for p in _STARTED:
        if p.poll() is None:
            kill_session(p)
    for pid in marked(""):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    for m in list(_MOUNTS):
        subprocess.run(["umount", "-l", m], stderr=DEVNULL)
    subprocess.run(["rm", "-rf", WORK], stderr=DEVNULL)


_MOUNTS = []


# ---------------------------------------------------------------- /proc

def pids():
    return [int(d) for d in os.listdir("/proc") if d.isdigit()]


def stat(pid):
    """state, ppid, pgrp, cpu seconds (user + system) of a process, or None."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            s = f.read()
    except OSError:
        return None
    r = s.rfind(")")
    f = s[r + 2:].split()
    return {"state": f[0], "ppid": int(f[1]), "pgrp": int(f[2]),
            "cpu": (int(f[11]) + int(f[12])) / CLK, "comm": s[s.find("(") + 1:r]}


def alive(pid):
    s = stat(pid)
    return s is not None and s["state"] != "Z"


def children(pid):
    out = []
    for p in pids():
        s = stat(p)
        if s and s["ppid"] == pid and s["state"] != "Z":
            out.append(p)
    return out


def workers_of(pid):
    """herd's worker processes: its children but its guardian (`herd-guardian`, which
    kills the workers' groups if herd dies)."""
    return [p for p in children(pid) if (stat(p) or {}).get("comm") != "herd-guardian"]


def zombies_under(pid):
    """Zombies among pid's descendants."""
    table = {}
    for p in pids():
        s = stat(p)
        if s:
            table[p] = s
    found = []
    for p, s in table.items():
        if s["state"] != "Z":
            continue
        q = s["ppid"]
        while q > 1 and q in table:
            if q == pid:
                found.append(p)
                break
            q = table[q]["ppid"]
    return found


def rss_kib(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def fd_count(pid):
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return None


def cmdline(pid):
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return "?"


def marked(tag):
    """Processes whose environment has HERD_CHAOS_RUN=<session>:<tag>… (prefix)."""
    want = f"{MARK}={SESSION}:{tag}".encode()
    me = os.getpid()
    out = []
    for p in pids():
        if p == me:
            continue
        try:
            with open(f"/proc/{p}/environ", "rb") as f:
                env = f.read()
        except OSError:
            continue
        for entry in env.split(b"\0"):
            if entry.startswith(want):
                out.append(p)
                break
    return out


def established_inodes():
    """Inodes of the established TCP sockets of this network namespace."""
    s = set()
    for path in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(path) as f:
                next(f)
                for line in f:
                    parts = line.split()
                    if parts[3] == "01":
                        s.add(parts[9])
        except OSError:
            pass
    return s


def tcp_connections(pid, established=None):
    """Established TCP connections a process holds: distinct sockets among its fds (a
    connection whose fd is duplicated, as herd-testworker's are, counts once)."""
    est = established if established is not None else established_inodes()
    held = set()
    try:
        for fd in os.listdir(f"/proc/{pid}/fd"):
            try:
                link = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            if link.startswith("socket:[") and link[8:-1] in est:
                held.add(link[8:-1])
    except OSError:
        pass
    return len(held)


def wait_for(pred, timeout, step=0.05):
    """Polls pred until it is true or timeout passes; returns its last value."""
    end = time.monotonic() + timeout
    while True:
        v = pred()
        if v or time.monotonic() >= end:
            return v
        time.sleep(step)


class CpuMeter:
    """A process's CPU use (cores) between two readings."""

    def __init__(self, pid):
        self.pid = pid
        s = stat(pid)
        self.cpu0 = s["cpu"] if s else 0.0
        self.t0 = time.monotonic()

    def cores(self):
        s = stat(self.pid)
        if not s:
            return None
        return (s["cpu"] - self.cpu0) / max(1e-3, time.monotonic() - self.t0)


# ---------------------------------------------------------------- network

def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def http_get(port, path="/", timeout=2.0):
    """Status code of GET path on a new connection, or None."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
            s.settimeout(timeout)
            s.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
            data = b""
            while b"\r\n" not in data:
                chunk = s.recv(4096)
                if not chunk:
                    break
                data += chunk
            parts = data.split(b" ", 2)
            return int(parts[1]) if len(parts) > 1 and parts[0].startswith(b"HTTP/") else None
    except (OSError, ValueError):
        return None


class Clients:
    """Many client connections from one thread (selectors): open `n` of them, each
    sends one request and reads the answer (keep-alive, or with Connection: close), and
    then, kept open, stays idle. Counts answered (2xx), failed and pending."""

    REQ_KA = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"
    REQ_CLOSE = b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"

    def __init__(self, port, n, close=False, batch=256, timeout=20.0):
        self.port, self.n, self.close, self.batch, self.timeout = port, n, close, batch, timeout
        self.ok = self.failed = 0
        self.socks = []

    def run(self):
        """Opens them in batches of `batch` in flight; returns when each has its answer,
        failed, or `timeout` passed (the rest count as failed)."""
        sel = selectors.DefaultSelector()
        req = self.REQ_CLOSE if self.close else self.REQ_KA
        started = 0
        inflight = 0
        end = time.monotonic() + self.timeout
        while (started < self.n or inflight) and time.monotonic() < end:
            while started < self.n and inflight < self.batch:
                s = socket.socket()
                s.setblocking(False)
                try:
                    s.connect_ex(("127.0.0.1", self.port))
                except OSError:
                    self.failed += 1
                    s.close()
                    started += 1
                    continue
                sel.register(s, selectors.EVENT_WRITE, [b""])
                started += 1
                inflight += 1
            for key, ev in sel.select(0.2):
                s, buf = key.fileobj, key.data
                if ev & selectors.EVENT_WRITE:
                    try:
                        s.send(req)
                        sel.modify(s, selectors.EVENT_READ, buf)
                    except OSError:
                        sel.unregister(s)
                        s.close()
                        self.failed += 1
                        inflight -= 1
                    continue
                try:
                    chunk = s.recv(4096)
                except BlockingIOError:
                    continue
                except OSError:
                    chunk = b""
                buf[0] += chunk
                done = b"\r\n\r\n" in buf[0]
                if done or not chunk:
                    sel.unregister(s)
                    inflight -= 1
                    if buf[0].startswith(b"HTTP/1.1 2") or buf[0].startswith(b"HTTP/1.0 2"):
                        self.ok += 1
                        if self.close:
                            s.close()
                        else:
                            self.socks.append(s)
                    else:
                        self.failed += 1
                        s.close()
        for key in list(sel.get_map().values()):
            key.fileobj.close()
            self.failed += 1
        sel.close()
        self.failed += self.n - started
        return self

    def close_all(self):
        for s in self.socks:
            s.close()
        self.socks = []


class Slowloris:
    """`n` connections that send a request line and then one header byte every
    `every` seconds, never finishing the head; from a thread of their own."""

    def __init__(self, port, n, every=2.0):
        self.port, self.n, self.every = port, n, every
        self.stop = threading.Event()
        self.open = 0
        self.thread = threading.Thread(target=self._run, daemon=True)

    def start(self):
        self.thread.start()
        return self

    def _run(self):
        socks = []
        for _ in range(self.n):
            try:
                s = socket.create_connection(("127.0.0.1", self.port), timeout=2)
                s.setblocking(False)
                s.send(b"GET / HTTP/1.1\r\nHost: x\r\nX-a: ")
                socks.append(s)
            except OSError:
                pass
        while not self.stop.wait(self.every):
            keep = []
            for s in socks:
                try:
                    s.send(b"a")
                    keep.append(s)
                except OSError:
                    s.close()
            socks = keep
            self.open = len(socks)
        for s in socks:
            s.close()

    def finish(self):
        self.stop.set()
        self.thread.join()


# ---------------------------------------------------------------- herd bench

class Bench:
    """`herd bench` at a fixed rate; result() is its herd-bench/1 JSON, summarised."""

    def __init__(self, port, rate, conns, secs, timeout="2s", path="/", cpu=None):
        self.secs = secs
        pin = ["taskset", "-c", str(cpu)] if cpu is not None else []
        self.p = spawn([*pin, HERD, "bench", "-R", str(rate), "-c", str(conns), "-t", "1",
                        "-d", f"{secs:g}s", "--timeout", timeout, "--json",
                        f"http://127.0.0.1:{port}{path}"],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE)

    def result(self):
        try:
            out, err = self.p.communicate(timeout=self.secs + 60)
        except subprocess.TimeoutExpired:
            kill_session(self.p)
            raise RuntimeError("herd bench did not finish")
        try:
            j = json.loads(out)
        except ValueError:
            raise RuntimeError(f"herd bench failed (exit {self.p.returncode}): "
                               f"{err.decode(errors='replace').strip()[-300:]}")
        r = j["requests"]
        errors = {k: v for k, v in j.get("errors", {}).items() if v}
        if r.get("non_2xx"):
            errors["non2xx"] = r["non_2xx"]
        return {"sent": r["sent"], "ok": r["ok"], "failed": sum(errors.values()),
                "errors": errors, "missed": r.get("missed", 0),
                "p99_ms": j["latency_us"]["p99"] / 1000.0 if j["latency_us"]["count"] else None}


# ---------------------------------------------------------------- herd run

class HerdRun:
    """`herd run` on 127.0.0.1, with an admin listener for /readyz (`--min-ready all`)."""

    def __init__(self, tag, name, args, worker, instances, env=None, prefix=(), out=None):
        self.port = free_port()
        self.admin = free_port()
        self.tag = tag
        self.instances = instances
        self.logpath = os.path.join(WORK, f"{tag.replace(':', '-')}.log")
        self.logf = open(self.logpath, "wb")
        cmd = [*prefix, HERD, "run", "--name", name, "-i", str(instances),
               "--listen", f"127.0.0.1:{self.port}", "--admin", f"127.0.0.1:{self.admin}",
               "--min-ready", "all", *args, "--", *worker]
        e = dict(env or {})
        e.setdefault("APP_PORT", str(self.port))
        self.p = spawn(cmd, tag=tag, env=e, stdout=out if out is not None else self.logf,
                       stderr=self.logf)
        self.pid = self.p.pid

    def ready(self, timeout=30):
        ok = wait_for(lambda: self.p.poll() is not None or http_get(self.admin, "/readyz", 1) == 200,
                      timeout)
        if self.p.poll() is not None:
            raise RuntimeError(f"herd exited ({self.p.returncode}): {self.tail()}")
        if not ok:
            raise RuntimeError(f"herd not ready within {timeout}s: {self.tail()}")
        return self

    def workers(self):
        return workers_of(self.pid)

    def tail(self, n=600):
        try:
            with open(self.logpath, "rb") as f:
                return f.read()[-n:].decode(errors="replace")
        except OSError:
            return ""

    def text(self):
        with open(self.logpath, "rb") as f:
            return f.read().decode(errors="replace")

    def stop(self, timeout=20):
        """SIGTERM, and the seconds it took to exit (None: it had to be killed)."""
        if self.p.poll() is not None:
            return 0.0
        t = time.monotonic()
        self.p.send_signal(signal.SIGTERM)
        try:
            self.p.wait(timeout)
            return time.monotonic() - t
        except subprocess.TimeoutExpired:
            kill_session(self.p)
            return None
        finally:
            self.logf.close()


# ---------------------------------------------------------------- the daemon

class Daemon:
    """A herd daemon in a HERD_HOME of its own, driven by the CLI."""

    def __init__(self, tag):
        self.tag = tag
        self.home = tempfile.mkdtemp(prefix="home.", dir=WORK)
        self.env = {"HERD_HOME": self.home}

    def cli(self, *args, timeout=30):
        """(exit code, output, seconds); code None when it did not finish in time."""
        t = time.monotonic()
        p = spawn([HERD, *args], tag=self.tag, env=self.env,
                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        try:
            out, _ = p.communicate(timeout=timeout)
            return p.returncode, out.decode(errors="replace"), time.monotonic() - t
        except subprocess.TimeoutExpired:
            kill_session(p)
            return None, "timed out", time.monotonic() - t

    def pid(self):
        for p in marked(self.tag):
            try:
                with open(f"/proc/{p}/cmdline", "rb") as f:
                    argv = f.read().split(b"\0")
            except OSError:
                continue
            s = stat(p)
            # `herd daemon` forks a guardian (comm herd-guardian); the daemon is the other.
            if len(argv) > 1 and argv[1] == b"daemon" and s and s["state"] != "Z" \
                    and s["comm"] == "herd":
                return p
        return None

    def log_text(self):
        try:
            with open(os.path.join(self.home, "daemon.log"), "rb") as f:
                return f.read().decode(errors="replace")
        except OSError:
            return ""

    def write_toml(self, apps):
        path = os.path.join(self.home, "herd.toml")
        with open(path, "w") as f:
            f.write(apps)
        return path

    def kill(self):
        """`herd kill`, then SIGKILL of whatever of the daemon is left."""
        self.cli("kill", timeout=20)
        for p in marked(self.tag):
            try:
                os.kill(p, signal.SIGKILL)
            except ProcessLookupError:
                pass


def toml_list(items):
    return "[" + ", ".join(json.dumps(i) for i in items) + "]"


def mount_tmpfs(path, size):
    os.makedirs(path, exist_ok=True)
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", path],
                       capture_output=True, text=True)
    if r.returncode != 0:
        return r.stderr.strip() or f"mount exited {r.returncode}"
    _MOUNTS.append(path)
    return None


def umount(path):
    subprocess.run(["umount", "-l", path], stderr=DEVNULL)
    if path in _MOUNTS:
        _MOUNTS.remove(path)


def fill_disk(path):
    """Writes a file until the file system is full; returns its path."""
    fill = os.path.join(path, "fill")
    with open(fill, "wb", buffering=0) as f:
        block = b"\0" * 65536
        try:
            while True:
                f.write(block)
        except OSError:
            pass
        for size in (4096, 512, 1):
            try:
                while True:
                    f.write(b"\0" * size)
            except OSError:
                pass
    return fill


def rand():
    return random.Random(int(os.environ.get("CHAOS_SEED", "1")))
