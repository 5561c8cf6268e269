//! Measures how fast worker output reaches log files (`observe::logfiles::FileSink`),
//! as a ratio against baselines in the same run. Not a CI benchmark: run it by hand,
//! release build, on an otherwise idle machine (scripts/bench/logfiles.sh does).
//!
//! ```text
//! cargo run --release --example logfiles_bench -- [LINES] [DIR]
//! ```
//!
//! 1. The writer thread's capacity: LINES lines of ~80 bytes from 8 slots handed
//!    straight to a sink: a sink that discards (the loop's own cost), a FileSink whose
//!    files are /dev/null (formatting and write calls, no disk: the baseline), and a
//!    FileSink writing real files in DIR (default: a temp dir) with the default
//!    rotation, text then JSON, as ratios of the baseline.
//! 2. The whole path: 4 threads print LINES/4 lines each into pipes as fast as they can,
//!    through `Output::start_to` to a sink that discards (the baseline), then to real
//!    files; lines/s printed and written, and the share dropped because the writer fell
//!    behind (the daemon's choice over slowing the workers).

use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use herd::observe::logfiles::LogPlan;
use herd::output::{LineRef, Output, Sink, Stream};

/// Discards lines: the baseline.
struct Null;
impl Sink for Null {
    fn line(&mut self, line: &LineRef<'_>) {
        std::hint::black_box(line);
    }
    fn dropped(&mut self, _: u64) {}
    fn flush(&mut self) {}
}

/// Counts what reaches the sink behind it.
struct Counting<S> {
    inner: S,
    lines: Arc<AtomicU64>,
    dropped: Arc<AtomicU64>,
}
impl<S: Sink + ?Sized> Sink for Counting<Box<S>> {
    fn line(&mut self, line: &LineRef<'_>) {
        self.lines.fetch_add(1, Ordering::Relaxed);
        self.inner.line(line);
    }
    fn dropped(&mut self, n: u64) {
        self.dropped.fetch_add(n, Ordering::Relaxed);
        self.inner.dropped(n);
    }
    fn flush(&mut self) {
        self.inner.flush();
    }
}

const TEXT: &str = "GET /api/v1/items/12345 200 1.234 ms - 5321 bytes, user agent curl/8.0";

fn direct(sink: &mut dyn Sink, lines: u64) -> f64 {
    let start = Instant::now();
    let time = SystemTime::now();
    for i in 0..lines {
        sink.line(&LineRef {
            slot: (i % 8) as usize,
            pid: 1000 + (i % 8) as u32,
            stream: if i % 10 == 0 {
                Stream::Stderr
            } else {
                Stream::Stdout
            },
            text: TEXT.as_bytes(),
            time,
        });
        if i % 4096 == 4095 {
            // The writer thread flushes whenever its queue runs empty; under load that
            // is now and then, not per line.
            sink.flush();
        }
    }
    sink.flush();
    lines as f64 / start.elapsed().as_secs_f64()
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let lines: u64 = match args.first() {
        Some(v) => v.parse().unwrap_or_else(|_| {
            eprintln!("usage: logfiles_bench [LINES] [DIR]");
            std::process::exit(2)
        }),
        None => 2_000_000,
    };
    let dir = args.get(1).map(PathBuf::from).unwrap_or_else(|| {
        std::env::temp_dir().join(format!("herd-logfiles-bench-{}", std::process::id()))
    });
    let _ = std::fs::remove_dir_all(&dir);

    println!(
        "1. writer thread capacity, {lines} lines of {} bytes, 8 slots",
        TEXT.len()
    );
    let null = direct(&mut Null, lines);
    println!("   discard (loop cost only)  {:>12.0} lines/s", null);
    let mut devnull = LogPlan::new(&dir, "bench");
    devnull.merge = true;
    devnull.out_file = Some("/dev/null".into());
    devnull.error_file = Some("/dev/null".into());
    devnull.max_size = u64::MAX; // never rename /dev/null
    let dn = direct(&mut devnull.sink().expect("sink"), lines);
    println!(
        "   FileSink to /dev/null     {:>12.0} lines/s  (the baseline below)",
        dn
    );
    for json in [false, true] {
        let mut plan = LogPlan::new(dir.join(if json { "json" } else { "text" }), "bench");
        plan.json = json;
        let files = direct(&mut plan.sink().expect("sink"), lines);
        println!(
            "   FileSink to files ({})  {:>12.0} lines/s  {:.2}x of /dev/null",
            if json { "json" } else { "text" },
            files,
            files / dn
        );
    }

    println!("2. whole path: 4 workers' pipes → Output::start_to → sink");
    let per_worker = lines / 4;
    let (n, d, secs) = pipeline(Box::new(Null), per_worker);
    println!(
        "   discard (baseline)  {:>10.0} lines/s printed, {:>10.0} written, {:>5.1}% dropped",
        (per_worker * 4) as f64 / secs,
        n as f64 / secs,
        100.0 * d as f64 / (per_worker * 4) as f64
    );
    let plan = LogPlan::new(dir.join("pipes"), "bench");
    let (n, d, secs) = pipeline(Box::new(plan.sink().expect("sink")), per_worker);
    println!(
        "   FileSink to files   {:>10.0} lines/s printed, {:>10.0} written, {:>5.1}% dropped",
        (per_worker * 4) as f64 / secs,
        n as f64 / secs,
        100.0 * d as f64 / (per_worker * 4) as f64
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// 4 threads print `per_worker` lines each into pipes, as fast as they can; returns lines
/// written, lines dropped, seconds until the last was written.
fn pipeline(sink: Box<dyn Sink>, per_worker: u64) -> (u64, u64, f64) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let written = Arc::new(AtomicU64::new(0));
    let dropped = Arc::new(AtomicU64::new(0));
    let sink = Counting {
        inner: sink,
        lines: written.clone(),
        dropped: dropped.clone(),
    };
    let secs = rt.block_on(async {
        let (output, thread) = Output::start_to(Box::new(sink)).expect("output");
        let mut readers = Vec::new();
        let mut workers = Vec::new();
        for slot in 0..4 {
            let (r, w) = nix::unistd::pipe().expect("pipe");
            readers.push(output.follow(r, slot, slot as u32, Stream::Stdout));
            workers.push(std::thread::spawn(move || {
                let mut w = std::io::BufWriter::new(std::fs::File::from(w));
                for _ in 0..per_worker {
                    let _ = writeln!(w, "{TEXT}");
                }
            }));
        }
        let start = Instant::now();
        // The readers end at EOF, once the workers are done; joining the workers first
        // would block the runtime the readers run on.
        for r in readers {
            let _ = r.await;
        }
        for w in workers {
            let _ = w.join();
        }
        output.flush().await;
        let secs = start.elapsed().as_secs_f64();
        output.close().await;
        let _ = thread.join();
        secs
    });
    (
        written.load(Ordering::Relaxed),
        dropped.load(Ordering::Relaxed),
        secs,
    )
}
