//! The screen of `herd monit`, drawn from the [`Model`]: a header, the table of every
//! worker (a reload shows the old and the new generation side by side, each with its
//! `GEN`), the selected worker's output, and a status line. Columns are dropped, least
//! useful first, when the terminal is narrower than the table; with `color` off (NO_COLOR,
//! a dumb terminal) nothing is coloured, and the selection is shown in reverse video.

use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Cell, Paragraph, Row as TableRow, Table, TableState};
use ratatui::Frame;

use super::model::{sparkline, Mode, Model, Row};
use crate::control::table::{bytes, duration};

/// A column: its title, its width, and how it is filled.
struct Column {
    title: &'static str,
    width: u16,
    /// Kept when the terminal is narrow: the lower, the longer it stays.
    rank: u8,
    cell: fn(&Model, &Row) -> String,
}

const COLUMNS: [Column; 12] = [
    Column {
        title: "APP",
        width: 10,
        rank: 0,
        cell: |_, r| r.app.name.clone(),
    },
    Column {
        title: "SLOT",
        width: 4,
        rank: 1,
        cell: |_, r| r.worker.map_or("-".into(), |w| w.slot.to_string()),
    },
    Column {
        title: "PID",
        width: 7,
        rank: 3,
        cell: |_, r| {
            r.worker
                .and_then(|w| w.pid)
                .map_or("-".into(), |p| p.to_string())
        },
    },
    Column {
        title: "GEN",
        width: 3,
        rank: 8,
        cell: |_, r| r.worker.map_or("-".into(), |w| w.generation.to_string()),
    },
    Column {
        title: "STATUS",
        width: 15,
        rank: 2,
        cell: |_, r| {
            r.worker
                .map_or_else(|| r.app.state.clone(), |w| w.state.clone())
        },
    },
    Column {
        title: "UPTIME",
        width: 6,
        rank: 5,
        // For an empty slot: how long it has been waiting.
        cell: |_, r| r.worker.map_or("-".into(), |w| duration(w.uptime_ms)),
    },
    Column {
        title: "HEALTH",
        width: 10,
        rank: 6,
        cell: |_, r| {
            r.worker
                .and_then(|w| w.health.as_ref())
                .map_or("-".into(), |h| h.short())
        },
    },
    Column {
        title: "CPU",
        width: 4,
        rank: 4,
        cell: |_, r| {
            r.worker
                .filter(|w| w.pid.is_some())
                .map_or("-".into(), |w| format!("{:.0}%", w.cpu_percent))
        },
    },
    Column {
        title: "MEM",
        width: 6,
        rank: 4,
        cell: |_, r| {
            r.worker
                .filter(|w| w.pid.is_some())
                .map_or("-".into(), |w| bytes(w.memory))
        },
    },
    Column {
        title: "MEM 2 MIN",
        width: 12,
        rank: 9,
        cell: memory_history,
    },
    Column {
        title: "CONN/S",
        width: 6,
        rank: 7,
        cell: conn_rate,
    },
    Column {
        title: "RESTARTS",
        width: 10,
        rank: 5,
        cell: restarts,
    },
];

fn memory_history(m: &Model, r: &Row) -> String {
    let Some((w, pid)) = r.worker.and_then(|w| Some((w, w.pid?))) else {
        return String::new();
    };
    m.history
        .get(&(r.app.name.clone(), w.slot, pid))
        .map(|h| sparkline(h.iter().map(|(_, mem)| *mem as f64), 12))
        .unwrap_or_default()
}

/// Connections handed over per second since the last refresh; `-` where herd does not
/// see them (reuseport and shared: the kernel hands them over).
fn conn_rate(m: &Model, r: &Row) -> String {
    let Some((w, pid)) = r.worker.and_then(|w| Some((w, w.pid?))) else {
        return "-".into();
    };
    let handoff = r
        .app
        .status
        .as_ref()
        .is_some_and(|s| matches!(s.balance.as_str(), "round-robin" | "least-conn" | "sticky"));
    match m.conns.get(&(r.app.name.clone(), w.slot, pid)) {
        Some((_, _, Some(rate))) if handoff => format!("{rate:.0}"),
        _ => "-".into(),
    }
}

fn restarts(_: &Model, r: &Row) -> String {
    let Some(w) = r.worker else {
        return "-".into();
    };
    match &w.last_exit {
        Some(exit) => format!("{} {exit}", w.restarts),
        None => w.restarts.to_string(),
    }
}

/// The columns that fit in `width`, in their order.
fn fitting(width: u16) -> Vec<&'static Column> {
    let mut ranks: Vec<u8> = COLUMNS.iter().map(|c| c.rank).collect();
    ranks.sort_unstable();
    ranks.dedup();
    for &max in ranks.iter().rev() {
        let cols: Vec<&Column> = COLUMNS.iter().filter(|c| c.rank <= max).collect();
        // Widths plus ratatui's one-cell spacing between columns.
        let needed: u16 = cols.iter().map(|c| c.width).sum::<u16>() + cols.len() as u16 - 1;
        if needed <= width {
            return cols;
        }
    }
    COLUMNS.iter().filter(|c| c.rank == 0).collect()
}

fn state_color(state: &str) -> Option<Color> {
    match state {
        "online" | "running" => Some(Color::Green),
        "starting" | "spawning" | "reloading" | "waiting-restart" => Some(Color::Yellow),
        "errored" | "hung" => Some(Color::Red),
        "stopping" | "stopped" => Some(Color::DarkGray),
        _ => None,
    }
}

/// Draws the whole screen.
pub fn draw(frame: &mut Frame, model: &Model, color: bool) {
    let [header, body, log, status] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Min(3),
        Constraint::Length(8),
        Constraint::Length(1),
    ])
    .areas(frame.area());
    draw_header(frame, header, model);
    if model.mode == Mode::Help {
        draw_help(frame, body);
    } else {
        draw_table(frame, body, model, color);
    }
    draw_log(frame, log, model);
    draw_status(frame, status, model, color);
}

fn draw_header(frame: &mut Frame, area: Rect, model: &Model) {
    let workers: usize = model
        .apps
        .iter()
        .filter_map(|a| a.status.as_ref())
        .map(|s| s.workers.iter().filter(|w| w.pid.is_some()).count())
        .sum();
    let mut text = format!(
        "herd monit · {} app{} · {workers} worker{}",
        model.apps.len(),
        if model.apps.len() == 1 { "" } else { "s" },
        if workers == 1 { "" } else { "s" }
    );
    let queued: u64 = model
        .apps
        .iter()
        .filter_map(|a| a.status.as_ref())
        .map(|s| s.queued)
        .sum();
    if queued > 0 {
        text.push_str(&format!(" · {queued} in accept queues"));
    }
    if !model.filter.is_empty() {
        text.push_str(&format!(" · filter: {}", model.filter));
    }
    text.push_str(" · ? help · q quit");
    frame.render_widget(
        Paragraph::new(text).style(Style::new().add_modifier(Modifier::BOLD)),
        area,
    );
}

fn draw_table(frame: &mut Frame, area: Rect, model: &Model, color: bool) {
    let cols = fitting(area.width);
    let header = TableRow::new(cols.iter().map(|c| Cell::from(c.title)))
        .style(Style::new().add_modifier(Modifier::BOLD));
    let rows = model.rows();
    let lines: Vec<TableRow> = rows
        .iter()
        .map(|r| {
            let state = r.worker.map_or(r.app.state.as_str(), |w| w.state.as_str());
            let style = match (color, state_color(state)) {
                (true, Some(c)) => Style::new().fg(c),
                _ => Style::new(),
            };
            TableRow::new(cols.iter().map(|c| Cell::from((c.cell)(model, r)))).style(style)
        })
        .collect();
    let widths: Vec<Constraint> = cols.iter().map(|c| Constraint::Length(c.width)).collect();
    let table = Table::new(lines, widths)
        .header(header)
        .row_highlight_style(Style::new().add_modifier(Modifier::REVERSED));
    let mut state = TableState::default().with_selected(if rows.is_empty() {
        None
    } else {
        Some(model.selected)
    });
    frame.render_stateful_widget(table, area, &mut state);
    if rows.is_empty() {
        let text = if model.apps.is_empty() {
            "no app: `herd start` adds some"
        } else {
            "no app matches the filter"
        };
        let inner = Rect {
            y: area.y + 1,
            height: 1,
            ..area
        };
        frame.render_widget(Paragraph::new(text), inner);
    }
}

fn draw_log(frame: &mut Frame, area: Rect, model: &Model) {
    let title = match model.selected_worker() {
        Some((app, slot, Some(pid))) => format!(" output of {app}:{slot} (pid {pid}) "),
        Some((app, slot, None)) => format!(" output of {app}:{slot} "),
        None => " output ".to_string(),
    };
    let height = area.height.saturating_sub(2) as usize;
    let lines: Vec<Line> = model.log[model.log.len().saturating_sub(height)..]
        .iter()
        .map(|l| Line::from(l.as_str()))
        .collect();
    let block = Block::new().borders(Borders::TOP).title(title);
    frame.render_widget(Paragraph::new(lines).block(block), area);
}

fn draw_status(frame: &mut Frame, area: Rect, model: &Model, color: bool) {
    let (text, warn) = match (&model.mode, &model.unreachable) {
        (Mode::Confirm(action, app), _) => (format!("{} {app}? y/n", action.verb()), true),
        (Mode::Filter, _) => (
            format!("filter: {}▏ (Enter keeps it, Esc clears it)", model.filter),
            false,
        ),
        (_, Some(why)) => (
            format!("the daemon does not answer ({why}); trying again every second"),
            true,
        ),
        _ => (model.message.clone(), false),
    };
    let style = if warn && color {
        Style::new().fg(Color::Yellow).add_modifier(Modifier::BOLD)
    } else if warn {
        Style::new().add_modifier(Modifier::BOLD)
    } else {
        Style::new()
    };
    frame.render_widget(Paragraph::new(Span::styled(text, style)), area);
}

fn draw_help(frame: &mut Frame, area: Rect) {
    let help = [
        "↑/↓ k/j   select a worker (PgUp/PgDn, Home/End)",
        "r         reload the selected app (zero downtime)",
        "R         restart it (stop, then start)",
        "s         stop it",
        "+ / -     one worker more / fewer",
        "/         filter apps by name (Esc clears)",
        "?         this help (any key closes it)",
        "q, Ctrl-C quit",
        "",
        "Every action asks for y first. The table refreshes every second; MEM 2 MIN is",
        "each worker's memory over the last two minutes.",
    ];
    let lines: Vec<Line> = help.iter().map(|l| Line::from(*l)).collect();
    frame.render_widget(
        Paragraph::new(lines).block(Block::new().borders(Borders::TOP).title(" keys ")),
        area,
    );
}
