//! `herd monit`: a live full-screen view of the daemon's apps, refreshed every second, with
//! the selected worker's output, and keys to reload, restart, stop and scale the selected
//! app (each asks for `y` first).
//!
//! Theory of operation: one loop on the CLI's thread: every second it asks the daemon for
//! `ls` (the same snapshot `herd ls` prints) and tails the selected worker's log file; in
//! between it waits for a key for at most 100 ms. An action runs on a thread of its own (a
//! reload waits for the new workers), so the screen keeps moving; its answer comes back
//! on a channel. The terminal is put back on every way out: `q`, Ctrl-C, SIGTERM and
//! SIGHUP (a flag the loop reads), a panic (a hook restores it first), and the daemon
//! going away is shown and retried, never an exit.

mod model;
mod view;

use std::io::Stdout;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crossterm::event::{
    self, Event, KeyCode, KeyEvent, KeyEventKind, KeyModifiers, MouseEventKind,
};
use crossterm::terminal::{self, EnterAlternateScreen, LeaveAlternateScreen};
use crossterm::ExecutableCommand;
use ratatui::backend::CrosstermBackend;
use ratatui::Terminal;

pub use model::{Action, Mode, Model};

use super::client::Client;
use super::protocol::{Request, Response, Scale};

/// How often the apps are asked for.
const REFRESH: Duration = Duration::from_secs(1);
/// The longest wait for a key before the screen is checked again.
const TICK: Duration = Duration::from_millis(100);
/// Output lines kept for the log pane.
const LOG_LINES: usize = 20;

/// Set by SIGTERM and SIGHUP: the loop restores the terminal and ends.
static SIGNALLED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    SIGNALLED.store(true, Ordering::SeqCst);
}

/// Puts the terminal back: raw mode off, the main screen, the cursor.
fn restore() {
    let _ = terminal::disable_raw_mode();
    let mut out = std::io::stdout();
    let _ = out.execute(crossterm::event::DisableMouseCapture);
    let _ = out.execute(LeaveAlternateScreen);
    let _ = out.execute(crossterm::cursor::Show);
}

/// Restores the terminal when dropped, whatever the way out of the loop.
struct Screen(Terminal<CrosstermBackend<Stdout>>);

impl Drop for Screen {
    fn drop(&mut self) {
        restore();
    }
}

/// Where the apps come from.
enum Source<'a> {
    /// The daemon (actions possible).
    Daemon(&'a Client),
    /// A `herd run`'s admin listener (`/status`; read-only).
    Admin(crate::listen::ListenAddr),
}

/// Runs `herd monit` until `q`.
pub fn run(client: &Client, admin: Option<crate::listen::ListenAddr>) -> ExitCode {
    use std::io::IsTerminal;
    if !std::io::stdout().is_terminal() || !std::io::stdin().is_terminal() {
        return super::verbs::fail(
            "herd monit needs a terminal; without one, `herd ls -w` redraws the table every second and `herd metrics` prints the numbers",
        );
    }
    let source = match admin {
        Some(addr) => Source::Admin(addr),
        None => Source::Daemon(client),
    };
    let color = std::env::var_os("NO_COLOR").is_none()
        && std::env::var("TERM").map_or(true, |t| t != "dumb");
    for sig in [libc::SIGTERM, libc::SIGHUP] {
        let action = nix::sys::signal::SigAction::new(
            nix::sys::signal::SigHandler::Handler(on_signal),
            nix::sys::signal::SaFlags::empty(),
            nix::sys::signal::SigSet::empty(),
        );
        if let Ok(sig) = nix::sys::signal::Signal::try_from(sig) {
            // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
            let _ = unsafe { nix::sys::signal::sigaction(sig, &action) };
        }
    }
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        restore();
        previous(info);
    }));
    let mut screen = match open() {
        Ok(s) => s,
        Err(e) => {
            restore();
            return super::verbs::fail(&format!("herd monit needs a terminal: {e}"));
        }
    };
    let mut model = Model::new();
    let (done_tx, done_rx) = mpsc::channel::<String>();
    let mut last = Instant::now() - REFRESH;
    loop {
        if SIGNALLED.load(Ordering::SeqCst) {
            break;
        }
        while let Ok(message) = done_rx.try_recv() {
            model.message = message;
            last = Instant::now() - REFRESH;
        }
        if last.elapsed() >= REFRESH {
            refresh(&source, &mut model);
            last = Instant::now();
        }
        if screen.0.draw(|f| view::draw(f, &model, color)).is_err() {
            break;
        }
        match input(TICK) {
            Input::Ready => {}
            Input::None => continue,
            Input::Gone => break,
        }
        match event::read() {
            Ok(Event::Key(key)) if key.kind != KeyEventKind::Release => {
                match (on_key(&mut model, key), &source) {
                    (Step::Quit, _) => break,
                    (Step::Do(action, app), Source::Daemon(client)) => {
                        act(client, action, app, done_tx.clone())
                    }
                    (Step::Do(action, app), Source::Admin(_)) => {
                        model.message = format!(
                            "{} {app}: not from an admin listener; send herd run a signal (SIGHUP reloads, SIGTERM stops, SIGTTIN/SIGTTOU scale)",
                            action.verb()
                        )
                    }
                    (Step::Stay, _) => {}
                }
                // The selection may have moved: its output at once.
                tail(&mut model);
            }
            Ok(Event::Mouse(m)) => match m.kind {
                MouseEventKind::ScrollDown => model.move_by(1),
                MouseEventKind::ScrollUp => model.move_by(-1),
                _ => {}
            },
            _ => {}
        }
    }
    drop(screen);
    ExitCode::SUCCESS
}

/// What the terminal has for the loop.
enum Input {
    /// An event to read.
    Ready,
    /// Nothing within the tick.
    None,
    /// The terminal hung up (its window closed, tmux killed the session).
    Gone,
}

/// Waits up to `tick` for an event. The terminal's own descriptor is polled here, not
/// by crossterm's `poll`: a hung-up terminal reads end-of-file at once, forever, and
/// crossterm's `poll` spins on it without returning (seen: monits left at 34 % of a core
/// for hours, deaf to SIGTERM); `poll(2)` says POLLHUP instead.
fn input(tick: Duration) -> Input {
    use nix::poll::{PollFd, PollFlags, PollTimeout};
    use std::os::fd::AsFd;
    // Events crossterm already read and holds.
    if event::poll(Duration::ZERO).unwrap_or(false) {
        return Input::Ready;
    }
    let stdin = std::io::stdin();
    let mut fds = [PollFd::new(stdin.as_fd(), PollFlags::POLLIN)];
    let ms = PollTimeout::try_from(tick).unwrap_or(PollTimeout::MAX);
    match nix::poll::poll(&mut fds, ms) {
        Ok(0) | Err(nix::errno::Errno::EINTR) => Input::None,
        Ok(_) => {
            let gone = PollFlags::POLLHUP | PollFlags::POLLERR | PollFlags::POLLNVAL;
            if fds[0].revents().is_some_and(|r| r.intersects(gone)) {
                Input::Gone
            } else if event::poll(Duration::ZERO).unwrap_or(false) {
                Input::Ready
            } else {
                Input::None
            }
        }
        Err(_) => Input::Gone,
    }
}

fn open() -> std::io::Result<Screen> {
    terminal::enable_raw_mode()?;
    let mut out = std::io::stdout();
    out.execute(EnterAlternateScreen)?;
    out.execute(crossterm::event::EnableMouseCapture)?;
    let terminal = Terminal::new(CrosstermBackend::new(out))?;
    Ok(Screen(terminal))
}

/// The apps from the daemon (or the admin listener), then the selected worker's output.
fn refresh(source: &Source, model: &mut Model) {
    match source {
        Source::Daemon(client) => match client.request(Request::List) {
            Ok(Response::Done { apps, .. }) => model.refresh(apps),
            Ok(other) => model.unreachable = Some(format!("unexpected answer {other:?}")),
            Err(e) => model.unreachable = Some(e.to_string()),
        },
        Source::Admin(addr) => match super::metrics::get(addr, "/status") {
            Ok(json) => match from_status(&json) {
                Some(apps) => model.refresh(apps),
                None => model.unreachable = Some(format!("{addr}/status is not herd's")),
            },
            Err(e) => model.unreachable = Some(format!("{addr}: {e}")),
        },
    }
    tail(model);
}

/// The apps of a `/status` answer: a daemon's list, or one `herd run` app.
fn from_status(json: &str) -> Option<Vec<super::protocol::AppInfo>> {
    let v: serde_json::Value = serde_json::from_str(json).ok()?;
    if v.is_array() {
        return serde_json::from_value(v).ok();
    }
    let status: crate::driver::status::AppStatus =
        serde_json::from_value(v.get("status")?.clone()).ok()?;
    Some(vec![super::protocol::AppInfo {
        name: v.get("name")?.as_str()?.to_string(),
        namespace: None,
        state: status.state.clone(),
        reason: None,
        command: Vec::new(),
        cwd: None,
        origin: "herd run".into(),
        toml: String::new(),
        started_ms: 0,
        logs: Vec::new(),
        status: Some(status),
    }])
}

/// The selected worker's last lines, from its out log (and err log), as `herd logs` reads
/// them.
fn tail(model: &mut Model) {
    let Some((app, slot, _)) = model.selected_worker() else {
        model.log.clear();
        return;
    };
    let files: Vec<String> = model
        .apps
        .iter()
        .filter(|a| a.name == app)
        .flat_map(|a| &a.logs)
        .filter(|l| l.slot == Some(slot) || l.slot.is_none())
        .map(|l| l.path.clone())
        .collect();
    let mut lines = Vec::new();
    for f in files {
        if let Ok(mut l) = crate::observe::logfiles::tail(std::path::Path::new(&f), LOG_LINES) {
            lines.append(&mut l);
        }
    }
    // Each file's lines start with their time: merged, they read in order.
    lines.sort();
    let keep = lines.len().saturating_sub(LOG_LINES);
    model.log = lines.split_off(keep);
}

/// What a key leads to.
#[derive(Debug, PartialEq, Eq)]
pub enum Step {
    /// Nothing more than the model's change.
    Stay,
    /// `action` on `app` (confirmed).
    Do(Action, String),
    /// End the monitor.
    Quit,
}

/// Applies a key to the model.
pub fn on_key(model: &mut Model, key: KeyEvent) -> Step {
    let ctrl_c = key.modifiers.contains(KeyModifiers::CONTROL) && key.code == KeyCode::Char('c');
    if ctrl_c {
        return Step::Quit;
    }
    match model.mode.clone() {
        Mode::Help => model.mode = Mode::Normal,
        Mode::Confirm(action, app) => {
            model.mode = Mode::Normal;
            if key.code == KeyCode::Char('y') || key.code == KeyCode::Char('Y') {
                model.message = format!("{} {app}…", action.verb());
                return Step::Do(action, app);
            }
            model.message = format!("{} {app}: cancelled", action.verb());
        }
        Mode::Filter => match key.code {
            KeyCode::Enter => model.mode = Mode::Normal,
            KeyCode::Esc => {
                model.filter.clear();
                model.mode = Mode::Normal;
            }
            KeyCode::Backspace => {
                model.filter.pop();
            }
            KeyCode::Char(c) => {
                model.filter.push(c);
                model.selected = 0;
            }
            _ => {}
        },
        Mode::Normal => match key.code {
            KeyCode::Char('q') => return Step::Quit,
            KeyCode::Down | KeyCode::Char('j') => model.move_by(1),
            KeyCode::Up | KeyCode::Char('k') => model.move_by(-1),
            KeyCode::PageDown => model.move_by(10),
            KeyCode::PageUp => model.move_by(-10),
            KeyCode::Home => model.selected = 0,
            KeyCode::End => model.move_by(isize::MAX / 2),
            KeyCode::Char('r') => model.ask(Action::Reload),
            KeyCode::Char('R') => model.ask(Action::Restart),
            KeyCode::Char('s') => model.ask(Action::Stop),
            KeyCode::Char('+') => model.ask(Action::ScaleUp),
            KeyCode::Char('-') => model.ask(Action::ScaleDown),
            KeyCode::Char('/') => model.mode = Mode::Filter,
            KeyCode::Char('?') => model.mode = Mode::Help,
            _ => {}
        },
    }
    Step::Stay
}

/// Runs `action` on `app` on a thread; its outcome, in a few words, comes on `done`.
fn act(client: &Client, action: Action, app: String, done: mpsc::Sender<String>) {
    let client = client.clone();
    std::thread::spawn(move || {
        let select = vec![app.clone()];
        let request = match action {
            Action::Reload => Request::Reload { select },
            Action::Restart => Request::Restart { select },
            Action::Stop => Request::Stop { select },
            Action::ScaleUp => Request::Scale {
                name: app.clone(),
                to: Scale::By(1),
            },
            Action::ScaleDown => Request::Scale {
                name: app.clone(),
                to: Scale::By(-1),
            },
        };
        let outcome = match client.request(request) {
            Ok(Response::Done { lines, .. }) => lines.join("; "),
            Ok(Response::Error { message, .. }) => message,
            Ok(_) => format!("{} {app}: unexpected answer", action.verb()),
            Err(e) => format!("{} {app}: {e}", action.verb()),
        };
        let _ = done.send(outcome);
    });
}

#[cfg(test)]
mod tests;
