//! A small hand-written SVG chart: panels of horizontal bars, one row per system, up to three
//! series per row, on a linear or log axis. Enough for BENCHMARKS.md, no plotting dependency.

use std::fmt::Write as _;

/// How a panel's axis maps values.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Scale {
    /// `0 .. max`.
    Linear { max: f64 },
    /// `min .. max`, log10.
    Log { min: f64, max: f64 },
}

/// One series of a panel (a colour and a legend entry).
#[derive(Debug, Clone)]
pub struct Series {
    pub name: String,
    pub colour: String,
}

/// One panel: a title, its series, its rows (label and one value per series; `None`: no bar),
/// and optional vertical reference lines (value, label).
#[derive(Debug, Clone)]
pub struct Panel {
    pub title: String,
    pub scale: Scale,
    pub series: Vec<Series>,
    pub rows: Vec<(String, Vec<Option<f64>>)>,
    pub references: Vec<(f64, String)>,
    /// Formats a value for the label at the end of its bar.
    pub unit: String,
}

const WIDTH: f64 = 1040.0;
const LABEL_WIDTH: f64 = 370.0;
const PLOT_WIDTH: f64 = 580.0;
const ROW_HEIGHT: f64 = 30.0;
const TITLE_HEIGHT: f64 = 46.0;
const PANEL_GAP: f64 = 26.0;

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

fn position(scale: Scale, value: f64) -> f64 {
    let fraction = match scale {
        Scale::Linear { max } => value / max,
        Scale::Log { min, max } => {
            (value.max(min).log10() - min.log10()) / (max.log10() - min.log10())
        }
    };
    LABEL_WIDTH + fraction.clamp(0.0, 1.0) * PLOT_WIDTH
}

fn format_value(value: f64, unit: &str) -> String {
    let number = if value == 0.0 {
        "0".to_string()
    } else if value < 0.01 {
        format!("{value:.3}")
    } else if value >= 100.0 || (value >= 1.0 && value.fract() == 0.0) {
        format!("{value:.0}")
    } else if value >= 10.0 {
        format!("{value:.1}")
    } else {
        format!("{value:.2}")
    };
    format!("{number}{unit}")
}

/// Renders `panels` under `title` (and a subtitle line) as one SVG document.
pub fn render(title: &str, subtitle: &str, panels: &[Panel]) -> String {
    let bar_height = (ROW_HEIGHT / 1.6 - 4.0).max(6.0);
    let row_height = |p: &Panel| bar_height * p.series.len() as f64 + 8.0;
    let panel_height = |p: &Panel| {
        TITLE_HEIGHT + p.rows.len() as f64 * row_height(p) + 34.0 + 12.0 * p.references.len() as f64
    };
    let height = 70.0
        + panels
            .iter()
            .map(|p| panel_height(p) + PANEL_GAP)
            .sum::<f64>();
    let mut svg = String::new();
    let _ = writeln!(
        svg,
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height:.0}" viewBox="0 0 {WIDTH} {height:.0}" font-family="Helvetica, Arial, sans-serif" font-size="12">"##
    );
    let _ = writeln!(
        svg,
        r##"<rect width="100%" height="100%" fill="#ffffff"/><text x="16" y="26" font-size="17" font-weight="bold">{}</text><text x="16" y="46" fill="#555">{}</text>"##,
        escape(title),
        escape(subtitle)
    );
    let mut y = 70.0;
    for panel in panels {
        let row_height = row_height(panel);
        let _ = writeln!(
            svg,
            r##"<text x="16" y="{:.1}" font-size="14" font-weight="bold">{}</text>"##,
            y + 16.0,
            escape(&panel.title)
        );
        // Legend.
        let mut legend_x = LABEL_WIDTH;
        for series in &panel.series {
            let _ = writeln!(
                svg,
                r##"<rect x="{legend_x:.1}" y="{:.1}" width="12" height="12" fill="{}"/><text x="{:.1}" y="{:.1}">{}</text>"##,
                y + 24.0,
                series.colour,
                legend_x + 16.0,
                y + 34.0,
                escape(&series.name)
            );
            legend_x += 22.0 + 7.0 * series.name.len() as f64;
        }
        let top = y + TITLE_HEIGHT;
        let bottom = top + row_height * panel.rows.len() as f64;
        // Axis ticks.
        let ticks: Vec<f64> = match panel.scale {
            Scale::Linear { max } => (0..=5).map(|i| max * i as f64 / 5.0).collect(),
            Scale::Log { min, max } => {
                let mut t = 10f64.powf(min.log10().ceil());
                let mut ticks = Vec::new();
                while t <= max * 1.0001 {
                    ticks.push(t);
                    t *= 10.0;
                }
                ticks
            }
        };
        for tick in ticks {
            let x = position(panel.scale, tick);
            let _ = writeln!(
                svg,
                r##"<line x1="{x:.1}" y1="{top:.1}" x2="{x:.1}" y2="{bottom:.1}" stroke="#ddd"/><text x="{x:.1}" y="{:.1}" text-anchor="middle" fill="#555">{}</text>"##,
                bottom + 14.0,
                escape(&format_value(tick, &panel.unit))
            );
        }
        for (r, (value, label)) in panel.references.iter().enumerate() {
            let x = position(panel.scale, *value);
            let _ = writeln!(
                svg,
                r##"<line x1="{x:.1}" y1="{:.1}" x2="{x:.1}" y2="{bottom:.1}" stroke="#c00" stroke-dasharray="4,3"/><text x="{x:.1}" y="{:.1}" text-anchor="middle" fill="#c00" font-size="11">{}</text>"##,
                top - 4.0,
                bottom + 28.0 + 12.0 * r as f64,
                escape(label)
            );
        }
        for (i, (label, values)) in panel.rows.iter().enumerate() {
            let row_top = top + i as f64 * row_height + 4.0;
            let _ = writeln!(
                svg,
                r##"<text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"##,
                LABEL_WIDTH - 8.0,
                row_top + row_height / 2.0,
                escape(label)
            );
            for (s, value) in values.iter().enumerate() {
                let bar_top = row_top + s as f64 * bar_height;
                let Some(series) = panel.series.get(s) else {
                    continue;
                };
                match value {
                    Some(v) if v.is_finite() => {
                        let x = position(panel.scale, *v);
                        let _ = writeln!(
                            svg,
                            r##"<rect x="{LABEL_WIDTH}" y="{bar_top:.1}" width="{:.1}" height="{:.1}" fill="{}"/><text x="{:.1}" y="{:.1}" font-size="11">{}</text>"##,
                            (x - LABEL_WIDTH).max(1.0),
                            bar_height - 1.0,
                            series.colour,
                            x + 4.0,
                            bar_top + bar_height - 3.0,
                            escape(&format_value(*v, &panel.unit))
                        );
                    }
                    _ => {
                        let _ = writeln!(
                            svg,
                            r##"<text x="{:.1}" y="{:.1}" font-size="11" fill="#888">n/a</text>"##,
                            LABEL_WIDTH + 4.0,
                            bar_top + bar_height - 3.0
                        );
                    }
                }
            }
        }
        y = bottom + 34.0 + 12.0 * panel.references.len() as f64 + PANEL_GAP;
    }
    svg.push_str("</svg>\n");
    svg
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_every_row_and_escapes_labels() {
        let svg = render(
            "t",
            "s",
            &[Panel {
                title: "time <x>".into(),
                scale: Scale::Log {
                    min: 0.1,
                    max: 100.0,
                },
                series: vec![Series {
                    name: "a".into(),
                    colour: "#123456".into(),
                }],
                rows: vec![("one".into(), vec![Some(2.0)]), ("two".into(), vec![None])],
                references: vec![(1.0, "floor".into())],
                unit: "×".into(),
            }],
        );
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
        assert!(svg.contains("time &lt;x&gt;") && svg.contains("n/a") && svg.contains(">one<"));
    }
}
