//! The `--report` chart, hand-written SVG (no font or graphics library): throughput against
//! workers with ideal linear scaling (and the USL curve when fitted), p50/p99 against
//! workers, and the latency percentile spectrum of each worker count. Each series is a `<g>`
//! with an `id` (`series-throughput`, `series-ideal`, `series-usl`, `series-compare`,
//! `series-p50`, `series-p99`, `spectrum-N`), so a test or a script can find it.

use std::fmt::Write as _;

/// One line of a panel.
pub struct Series {
    /// The `<g>`'s id.
    pub id: String,
    /// The legend's text.
    pub name: String,
    /// Stroke colour.
    pub color: &'static str,
    /// Dashed (references: ideal, fitted).
    pub dashed: bool,
    /// (x, y) in data units.
    pub points: Vec<(f64, f64)>,
}

/// A panel: axes, ticks, series and legend.
pub struct Panel {
    /// Above the plot.
    pub title: String,
    /// Under the x axis.
    pub x_label: String,
    /// Beside the y axis.
    pub y_label: String,
    /// x ticks: position and label.
    pub x_ticks: Vec<(f64, String)>,
    /// The lines.
    pub series: Vec<Series>,
}

/// Colours of successive series.
pub const PALETTE: [&str; 8] = [
    "#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf",
];

const PANEL_W: f64 = 420.0;
const PANEL_H: f64 = 340.0;
const MARGIN: f64 = 60.0;

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// A round step for about 5 ticks up to `max`.
fn nice_step(max: f64) -> f64 {
    let raw = (max / 5.0).max(1e-9);
    let mag = 10f64.powf(raw.log10().floor());
    let n = raw / mag;
    mag * if n <= 1.0 {
        1.0
    } else if n <= 2.0 {
        2.0
    } else if n <= 5.0 {
        5.0
    } else {
        10.0
    }
}

fn panel(out: &mut String, p: &Panel, ox: f64, oy: f64) {
    let xs = p.series.iter().flat_map(|s| s.points.iter().map(|q| q.0));
    let ys = p.series.iter().flat_map(|s| s.points.iter().map(|q| q.1));
    let x_min = xs
        .clone()
        .fold(f64::INFINITY, f64::min)
        .min(p.x_ticks.first().map_or(0.0, |t| t.0));
    let x_max = xs
        .fold(f64::NEG_INFINITY, f64::max)
        .max(p.x_ticks.last().map_or(1.0, |t| t.0));
    let y_max = ys.fold(0.0, f64::max).max(1e-9) * 1.1;
    let (x_min, x_max) = if x_max > x_min {
        (x_min, x_max)
    } else {
        (x_min - 1.0, x_min + 1.0)
    };
    let w = PANEL_W - 2.0 * MARGIN;
    let h = PANEL_H - 2.0 * MARGIN;
    let sx = |x: f64| ox + MARGIN + (x - x_min) / (x_max - x_min) * w;
    let sy = |y: f64| oy + MARGIN + h - y / y_max * h;
    let _ = writeln!(
        out,
        r#"<text x="{}" y="{}" font-size="14" text-anchor="middle" font-weight="bold">{}</text>"#,
        ox + PANEL_W / 2.0,
        oy + 25.0,
        esc(&p.title)
    );
    let _ = writeln!(
        out,
        r##"<rect x="{}" y="{}" width="{w}" height="{h}" fill="none" stroke="#444"/>"##,
        ox + MARGIN,
        oy + MARGIN
    );
    let step = nice_step(y_max);
    let mut y = 0.0;
    while y <= y_max {
        let _ = writeln!(
            out,
            r##"<line x1="{0}" x2="{1}" y1="{2}" y2="{2}" stroke="#ddd"/><text x="{3}" y="{4}" font-size="10" text-anchor="end">{5}</text>"##,
            ox + MARGIN,
            ox + MARGIN + w,
            sy(y),
            ox + MARGIN - 4.0,
            sy(y) + 3.0,
            short(y)
        );
        y += step;
    }
    for (x, label) in &p.x_ticks {
        let _ = writeln!(
            out,
            r#"<text x="{}" y="{}" font-size="10" text-anchor="middle">{}</text>"#,
            sx(*x),
            oy + MARGIN + h + 14.0,
            esc(label)
        );
    }
    let _ = writeln!(
        out,
        r#"<text x="{}" y="{}" font-size="11" text-anchor="middle">{}</text>"#,
        ox + MARGIN + w / 2.0,
        oy + PANEL_H - 18.0,
        esc(&p.x_label)
    );
    let _ = writeln!(
        out,
        r#"<text x="{0}" y="{1}" font-size="11" text-anchor="middle" transform="rotate(-90 {0} {1})">{2}</text>"#,
        ox + 14.0,
        oy + MARGIN + h / 2.0,
        esc(&p.y_label)
    );
    for (i, s) in p.series.iter().enumerate() {
        let pts: Vec<String> = s
            .points
            .iter()
            .map(|(x, y)| format!("{:.1},{:.1}", sx(*x), sy(*y)))
            .collect();
        let dash = if s.dashed {
            r#" stroke-dasharray="5,4""#
        } else {
            ""
        };
        let _ = writeln!(
            out,
            r#"<g id="{}"><title>{}</title><polyline points="{}" fill="none" stroke="{}" stroke-width="2"{dash}/>"#,
            esc(&s.id),
            esc(&s.name),
            pts.join(" "),
            s.color
        );
        for (x, y) in &s.points {
            let _ = writeln!(
                out,
                r#"<circle cx="{:.1}" cy="{:.1}" r="3" fill="{}"/>"#,
                sx(*x),
                sy(*y),
                s.color
            );
        }
        let ly = oy + MARGIN + 12.0 + i as f64 * 14.0;
        let _ = writeln!(
            out,
            r#"<line x1="{0}" x2="{1}" y1="{2}" y2="{2}" stroke="{3}" stroke-width="2"{dash}/><text x="{4}" y="{5}" font-size="10">{6}</text></g>"#,
            ox + MARGIN + 8.0,
            ox + MARGIN + 26.0,
            ly,
            s.color,
            ox + MARGIN + 30.0,
            ly + 3.0,
            esc(&s.name)
        );
    }
}

fn short(y: f64) -> String {
    if y >= 1e6 {
        format!("{:.1}M", y / 1e6)
    } else if y >= 1e3 {
        format!("{:.0}k", y / 1e3)
    } else if y >= 10.0 || y == 0.0 {
        format!("{y:.0}")
    } else {
        format!("{y:.1}")
    }
}

/// The panels side by side, with a caption line under them.
pub fn render(panels: &[Panel], caption: &str) -> String {
    let width = PANEL_W * panels.len() as f64;
    let height = PANEL_H + 30.0;
    let mut out = format!(
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}" font-family="sans-serif">
<rect width="100%" height="100%" fill="white"/>
"#
    );
    for (i, p) in panels.iter().enumerate() {
        panel(&mut out, p, i as f64 * PANEL_W, 0.0);
    }
    let _ = writeln!(
        out,
        r#"<text x="10" y="{}" font-size="11">{}</text>"#,
        PANEL_H + 18.0,
        esc(caption)
    );
    out.push_str("</svg>\n");
    out
}

/// The SVG in a page of its own.
pub fn html(svg: &str, title: &str) -> String {
    format!(
        "<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>{}</title></head>\n<body>\n{svg}</body></html>\n",
        esc(title)
    )
}
