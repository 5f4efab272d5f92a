//! Charts drawn by the center as SVG: no chart script, and each has a title and a description
//! for screen readers (its numbers are also in a table on the page).

use std::fmt::Write;

/// Escape text for XML (element content and attribute values).
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// One bar of a bar chart.
#[derive(Debug, Clone, PartialEq)]
pub struct Bar {
    /// Under the bar (every few bars are labelled).
    pub label: String,
    pub value: u64,
}

const W: u32 = 640;
const H: u32 = 180;
const LEFT: u32 = 40;
const BOTTOM: u32 = 24;
const TOP: u32 = 10;

/// Width of a tick label's character, in the chart's units (11 px text), with room to spare.
const TICK_CHAR_W: u32 = 7;

/// The start of a chart: the SVG element, its title (`title: summary`, for assistive
/// technology), the axes, and the values at the top and the bottom of the scale.
fn frame(title: &str, summary: &str, top: &str, bottom: &str) -> String {
    let mut s = String::new();
    let _ = write!(
        s,
        r#"<svg class="chart" viewBox="0 0 {W} {H}" role="img" aria-labelledby="chart-title-{id}"><title id="chart-title-{id}">{t}: {summary}</title>"#,
        id = slug(title),
        t = esc(title),
    );
    let _ = write!(
        s,
        r#"<line x1="{LEFT}" y1="{TOP}" x2="{LEFT}" y2="{y}" class="axis"/><line x1="{LEFT}" y1="{y}" x2="{x}" y2="{y}" class="axis"/><text x="{tx}" y="{ty}" class="tick" text-anchor="end">{top}</text><text x="{tx}" y="{y}" class="tick" text-anchor="end">{bottom}</text>"#,
        y = H - BOTTOM,
        x = W - 8,
        tx = LEFT - 4,
        ty = TOP + 10,
    );
    s
}

/// A bar chart, `title` naming it for assistive technology; a sentence instead when there is
/// nothing to draw (every value 0).
pub fn bars(title: &str, bars: &[Bar]) -> String {
    if bars.iter().all(|b| b.value == 0) {
        return format!(r#"<p class="muted chart-empty">{}: none.</p>"#, esc(title));
    }
    let max = bars.iter().map(|b| b.value).max().unwrap_or(0).max(1);
    let n = u32::try_from(bars.len()).unwrap_or(u32::MAX).max(1);
    let plot_w = W - LEFT - 8;
    let plot_h = H - BOTTOM - TOP;
    let step = plot_w / n;
    let bar_w = step.saturating_sub(2).max(1);
    let total: u64 = bars.iter().map(|b| b.value).sum();
    let mut s = frame(
        title,
        &format!("{total} in all, at most {max} in one interval"),
        &max.to_string(),
        "0",
    );
    // Every k-th bar is labelled, k such that labels never overlap.
    let widest = bars
        .iter()
        .map(|b| u32::try_from(b.label.chars().count()).unwrap_or(u32::MAX))
        .max()
        .unwrap_or(1);
    let label_every = (widest * TICK_CHAR_W + 8).div_ceil(step.max(1)).max(1);
    for (i, b) in bars.iter().enumerate() {
        let i = u32::try_from(i).unwrap_or(u32::MAX);
        let h = u32::try_from(b.value * u64::from(plot_h) / max).unwrap_or(plot_h);
        let x = LEFT + 1 + i * step;
        let y = TOP + plot_h - h;
        let _ = write!(
            s,
            r#"<rect x="{x}" y="{y}" width="{bar_w}" height="{h}" class="bar"><title>{}: {}</title></rect>"#,
            esc(&b.label),
            b.value
        );
        if i % label_every == 0 {
            let _ = write!(
                s,
                r#"<text x="{x}" y="{ly}" class="tick">{}</text>"#,
                esc(&b.label),
                ly = H - 6
            );
        }
    }
    s.push_str("</svg>");
    s
}

/// One row of a stacked bar chart: parts in the order of [`Stacked::parts`].
#[derive(Debug, Clone, PartialEq)]
pub struct StackRow {
    pub label: String,
    pub values: Vec<u64>,
}

/// Rows of stacked horizontal bars, each part a class (`part-<name>`) and a legend entry.
pub fn stacked(title: &str, parts: &[&str], rows: &[StackRow]) -> String {
    let row_h = 26u32;
    let n = u32::try_from(rows.len()).unwrap_or(u32::MAX);
    let height = TOP + n * row_h + 30;
    let left = 80u32;
    let plot_w = W - left - 8;
    let mut s = String::new();
    let _ = write!(
        s,
        r#"<svg class="chart" viewBox="0 0 {W} {height}" role="img" aria-labelledby="chart-title-{id}"><title id="chart-title-{id}">{t}</title>"#,
        id = slug(title),
        t = esc(title),
    );
    for (r, row) in rows.iter().enumerate() {
        let r = u32::try_from(r).unwrap_or(u32::MAX);
        let total: u64 = row.values.iter().sum::<u64>().max(1);
        let y = TOP + r * row_h;
        let _ = write!(
            s,
            r#"<text x="{x}" y="{ty}" class="tick" text-anchor="end">{}</text>"#,
            esc(&row.label),
            x = left - 6,
            ty = y + 15,
        );
        let mut x = left;
        for (p, v) in parts.iter().zip(&row.values) {
            let w = u32::try_from(v * u64::from(plot_w) / total).unwrap_or(plot_w);
            if w > 0 {
                let _ = write!(
                    s,
                    r#"<rect x="{x}" y="{y}" width="{w}" height="20" class="part-{p}"><title>{} {p}: {v}</title></rect>"#,
                    esc(&row.label)
                );
            }
            x += w;
        }
    }
    // The legend.
    let mut x = left;
    let ly = TOP + n * row_h + 12;
    for p in parts {
        let _ = write!(
            s,
            r#"<rect x="{x}" y="{ly}" width="12" height="12" class="part-{p}"/><text x="{tx}" y="{ty}" class="tick">{p}</text>"#,
            tx = x + 16,
            ty = ly + 11,
        );
        x += 16 + 9 * u32::try_from(p.len()).unwrap_or(10) + 14;
    }
    s.push_str("</svg>");
    s
}

/// A line chart of one series (a meter's readings over time, `(label, value)` oldest first),
/// scaled between its lowest and highest value; `title` names it for assistive technology. A
/// sentence instead when there is nothing to draw.
pub fn line(title: &str, points: &[(String, f64)]) -> String {
    if points.is_empty() {
        return format!(
            r#"<p class="muted chart-empty">{}: no readings.</p>"#,
            esc(title)
        );
    }
    let lo = points.iter().map(|p| p.1).fold(f64::INFINITY, f64::min);
    let hi = points.iter().map(|p| p.1).fold(f64::NEG_INFINITY, f64::max);
    let span = if hi > lo { hi - lo } else { 1.0 };
    let (plot_w, plot_h) = (f64::from(W - LEFT - 8), f64::from(H - BOTTOM - TOP));
    let n = points.len().max(2) - 1;
    let xy = |i: usize, v: f64| {
        (
            f64::from(LEFT) + plot_w * i as f64 / n as f64,
            f64::from(TOP) + plot_h * (1.0 - (v - lo) / span),
        )
    };
    let last = points.last().map_or(0.0, |p| p.1);
    let mut s = frame(
        title,
        &format!("from {lo} to {hi}, {last} at the end"),
        &hi.to_string(),
        &lo.to_string(),
    );
    let path: Vec<String> = points
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let (x, y) = xy(i, p.1);
            format!("{x:.1},{y:.1}")
        })
        .collect();
    let _ = write!(
        s,
        r#"<polyline points="{}" class="series" fill="none"/>"#,
        path.join(" ")
    );
    for (i, p) in points.iter().enumerate() {
        let (x, y) = xy(i, p.1);
        let _ = write!(
            s,
            r#"<circle cx="{x:.1}" cy="{y:.1}" r="2" class="dot"><title>{}: {}</title></circle>"#,
            esc(&p.0),
            p.1
        );
    }
    let _ = write!(
        s,
        r#"<text x="{LEFT}" y="{ly}" class="tick">{}</text><text x="{rx}" y="{ly}" class="tick" text-anchor="end">{}</text>"#,
        esc(&points[0].0),
        esc(&points[points.len() - 1].0),
        ly = H - 6,
        rx = W - 8,
    );
    s.push_str("</svg>");
    s
}

fn slug(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_spans_lowest_to_highest_and_escapes_labels() {
        let svg = line(
            "pages <total>",
            &[
                ("d&1".into(), 10.0),
                ("d2".into(), 30.0),
                ("d3".into(), 20.0),
            ],
        );
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>"));
        assert!(svg.contains("pages &lt;total&gt;: from 10 to 30, 20 at the end"));
        assert!(svg.contains("<title>d&amp;1: 10</title>") && !svg.contains("d&1"));
        // The lowest reading sits on the axis, the highest at the top.
        let bottom = f64::from(H - BOTTOM);
        assert!(svg.contains(&format!(r#"cy="{bottom:.1}""#)), "{svg}");
        assert!(
            svg.contains(&format!(r#"cy="{:.1}""#, f64::from(TOP))),
            "{svg}"
        );
        assert!(line("x", &[]).contains("no readings"));
    }

    #[test]
    fn bars_scale_to_the_largest_and_escape_labels() {
        let svg = bars(
            "Errors <per hour>",
            &[
                Bar {
                    label: "a&b".into(),
                    value: 2,
                },
                Bar {
                    label: "c".into(),
                    value: 4,
                },
            ],
        );
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>"));
        assert!(svg.contains("Errors &lt;per hour&gt;: 6 in all, at most 4"));
        assert!(svg.contains("<title>a&amp;b: 2</title>"));
        // The largest bar fills the plot's height, the other half of it.
        let plot_h = H - BOTTOM - TOP;
        assert!(svg.contains(&format!(r#"height="{plot_h}" class="bar""#)));
        assert!(svg.contains(&format!(r#"height="{}" class="bar""#, plot_h / 2)));
        assert!(!svg.contains("a&b"));
    }

    #[test]
    fn labels_never_overlap_and_nothing_to_draw_is_said() {
        let many: Vec<Bar> = (0..28)
            .map(|i| Bar {
                label: format!("12-{:02} {:02}:00", 1 + i / 4, (i % 4) * 6),
                value: i,
            })
            .collect();
        let svg = bars("Errors", &many);
        let xs: Vec<u32> = svg
            .split(r#"<text x=""#)
            .skip(1)
            .filter(|t| t.contains(r#"class="tick">12-"#))
            .filter_map(|t| t.split('"').next()?.parse().ok())
            .collect();
        assert!(xs.len() >= 3, "{svg}");
        let room = 11 * TICK_CHAR_W;
        assert!(xs.windows(2).all(|w| w[1] - w[0] >= room), "{xs:?}");
        let none = bars(
            "Errors",
            &[Bar {
                label: "a".into(),
                value: 0,
            }],
        );
        assert_eq!(none, r#"<p class="muted chart-empty">Errors: none.</p>"#);
    }

    #[test]
    fn stacked_rows_split_their_width_by_part() {
        let svg = stacked(
            "Waves",
            &["succeeded", "failed"],
            &[StackRow {
                label: "wave 1".into(),
                values: vec![3, 1],
            }],
        );
        let plot_w = W - 80 - 8;
        assert!(svg.contains(&format!(
            r#"width="{}" height="20" class="part-succeeded""#,
            plot_w * 3 / 4
        )));
        assert!(svg.contains(&format!(
            r#"width="{}" height="20" class="part-failed""#,
            plot_w / 4
        )));
        assert!(svg.contains("<title>wave 1 failed: 1</title>"));
    }
}
