//! Small server-rendered line charts as inline SVG: no JavaScript, and accessible — the SVG
//! has a title and a description (`role="img"`, `aria-labelledby`), labelled axes, and every
//! chart comes with its numbers as a table for screen readers and for copying.

use std::fmt::Write;

/// One line of a chart.
#[derive(Debug, Clone)]
pub struct Series {
    pub name: String,
    /// A CSS colour, e.g. `#1d4ed8`.
    pub color: &'static str,
    /// One value per x position.
    pub values: Vec<f64>,
}

/// A line chart over labelled x positions.
#[derive(Debug, Clone, Default)]
pub struct Chart {
    /// Unique within the page; used for the ARIA ids.
    pub id: String,
    pub title: String,
    /// One sentence saying what the chart shows (read by screen readers).
    pub description: String,
    pub x_label: String,
    pub y_label: String,
    /// One label per x position (times).
    pub x_labels: Vec<String>,
    pub series: Vec<Series>,
    /// A horizontal reference line (e.g. the baseline), with its name.
    pub reference: Option<(String, f64)>,
}

const WIDTH: f64 = 640.0;
const HEIGHT: f64 = 240.0;
const LEFT: f64 = 60.0;
const RIGHT: f64 = 16.0;
const TOP: f64 = 28.0;
const BOTTOM: f64 = 44.0;

/// Escapes text for SVG/HTML content and attributes.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            other => out.push(other),
        }
    }
    out
}

/// A round upper bound for the y axis (1, 2 or 5 times a power of ten).
fn nice_max(max: f64) -> f64 {
    if max <= 0.0 || !max.is_finite() {
        return 1.0;
    }
    let magnitude = 10f64.powf(max.log10().floor());
    for step in [1.0, 2.0, 5.0, 10.0] {
        if step * magnitude >= max {
            return step * magnitude;
        }
    }
    10.0 * magnitude
}

/// A number as people read it on an axis or in a table.
pub fn number(value: f64) -> String {
    if value.fract().abs() < 1e-9 {
        format!("{value:.0}")
    } else if value.abs() < 1.0 {
        format!("{value:.3}")
    } else {
        format!("{value:.1}")
    }
}

impl Chart {
    fn points(&self) -> usize {
        self.series
            .iter()
            .map(|s| s.values.len())
            .max()
            .unwrap_or(0)
            .max(self.x_labels.len())
    }

    /// The chart as an inline `<svg>` element. Every text is escaped.
    pub fn svg(&self) -> String {
        let n = self.points();
        let data_max = self
            .series
            .iter()
            .flat_map(|s| s.values.iter().copied())
            .chain(self.reference.as_ref().map(|r| r.1))
            .fold(0.0_f64, f64::max);
        let y_max = nice_max(data_max);
        let plot_w = WIDTH - LEFT - RIGHT;
        let plot_h = HEIGHT - TOP - BOTTOM;
        let x_at = |i: usize| {
            if n <= 1 {
                LEFT + plot_w / 2.0
            } else {
                LEFT + plot_w * i as f64 / (n - 1) as f64
            }
        };
        let y_at = |v: f64| TOP + plot_h - plot_h * (v.max(0.0) / y_max);
        let id = escape(&self.id);
        let mut s = String::new();
        let _ = write!(
            s,
            "<svg class=\"chart\" viewBox=\"0 0 {WIDTH} {HEIGHT}\" width=\"{WIDTH}\" height=\"{HEIGHT}\" \
             role=\"img\" aria-labelledby=\"{id}-title {id}-desc\" xmlns=\"http://www.w3.org/2000/svg\">\
             <title id=\"{id}-title\">{}</title><desc id=\"{id}-desc\">{}</desc>",
            escape(&self.title),
            escape(&self.description)
        );
        // Axes and y grid.
        let _ = write!(
            s,
            "<line x1=\"{LEFT}\" y1=\"{TOP}\" x2=\"{LEFT}\" y2=\"{}\" stroke=\"#444\"/>\
             <line x1=\"{LEFT}\" y1=\"{0}\" x2=\"{1}\" y2=\"{0}\" stroke=\"#444\"/>",
            TOP + plot_h,
            WIDTH - RIGHT
        );
        for fraction in [0.0, 0.5, 1.0] {
            let v = y_max * fraction;
            let y = y_at(v);
            let _ = write!(
                s,
                "<line x1=\"{LEFT}\" y1=\"{y:.1}\" x2=\"{:.1}\" y2=\"{y:.1}\" stroke=\"#e5e7eb\"/>\
                 <text x=\"{:.1}\" y=\"{:.1}\" font-size=\"10\" text-anchor=\"end\" fill=\"#333\">{}</text>",
                WIDTH - RIGHT,
                LEFT - 4.0,
                y + 3.0,
                escape(&number(v))
            );
        }
        // X tick labels: about six.
        if n > 0 {
            let every = (n / 6).max(1);
            for i in (0..n).step_by(every) {
                if let Some(label) = self.x_labels.get(i) {
                    let _ = write!(
                        s,
                        "<text x=\"{:.1}\" y=\"{:.1}\" font-size=\"10\" text-anchor=\"middle\" fill=\"#333\">{}</text>",
                        x_at(i),
                        TOP + plot_h + 14.0,
                        escape(label)
                    );
                }
            }
        }
        // Axis labels.
        let _ = write!(
            s,
            "<text x=\"{:.1}\" y=\"{:.1}\" font-size=\"11\" text-anchor=\"middle\" fill=\"#111\">{}</text>\
             <text x=\"12\" y=\"{:.1}\" font-size=\"11\" text-anchor=\"middle\" fill=\"#111\" \
             transform=\"rotate(-90 12 {:.1})\">{}</text>",
            LEFT + plot_w / 2.0,
            HEIGHT - 6.0,
            escape(&self.x_label),
            TOP + plot_h / 2.0,
            TOP + plot_h / 2.0,
            escape(&self.y_label)
        );
        if let Some((name, value)) = &self.reference {
            let y = y_at(*value);
            let _ = write!(
                s,
                "<line x1=\"{LEFT}\" y1=\"{y:.1}\" x2=\"{:.1}\" y2=\"{y:.1}\" stroke=\"#6b7280\" stroke-dasharray=\"4 3\"><title>{}</title></line>",
                WIDTH - RIGHT,
                escape(&format!("{name}: {}", number(*value)))
            );
        }
        for (index, series) in self.series.iter().enumerate() {
            let points: Vec<String> = series
                .values
                .iter()
                .enumerate()
                .map(|(i, v)| format!("{:.1},{:.1}", x_at(i), y_at(*v)))
                .collect();
            let _ = write!(
                s,
                "<polyline fill=\"none\" stroke=\"{}\" stroke-width=\"2\" points=\"{}\"/>",
                escape(series.color),
                points.join(" ")
            );
            // Legend.
            let lx = LEFT + 8.0 + index as f64 * 120.0;
            let _ = write!(
                s,
                "<rect x=\"{lx:.1}\" y=\"8\" width=\"10\" height=\"10\" fill=\"{}\"/>\
                 <text x=\"{:.1}\" y=\"17\" font-size=\"11\" fill=\"#111\">{}</text>",
                escape(series.color),
                lx + 14.0,
                escape(&series.name)
            );
        }
        s.push_str("</svg>");
        s
    }

    /// Column headings of the data table: the x axis, then each series.
    pub fn table_headers(&self) -> Vec<String> {
        std::iter::once(self.x_label.clone())
            .chain(self.series.iter().map(|s| s.name.clone()))
            .collect()
    }

    /// The data table's rows: x label, then each series' value.
    pub fn table_rows(&self) -> Vec<Vec<String>> {
        (0..self.points())
            .map(|i| {
                std::iter::once(self.x_labels.get(i).cloned().unwrap_or_default())
                    .chain(
                        self.series
                            .iter()
                            .map(|s| s.values.get(i).map(|v| number(*v)).unwrap_or_default()),
                    )
                    .collect()
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn charts_are_labelled_escaped_and_come_with_their_numbers() {
        let chart = Chart {
            id: "c1".into(),
            title: "Requests <per> minute".into(),
            description: "Evidence".into(),
            x_label: "Minute (UTC)".into(),
            y_label: "Requests".into(),
            x_labels: vec!["08:00".into(), "08:01".into()],
            series: vec![Series {
                name: "401".into(),
                color: "#b91c1c",
                values: vec![0.0, 1200.0],
            }],
            reference: Some(("baseline".into(), 3.5)),
        };
        let svg = chart.svg();
        assert!(svg.contains("role=\"img\""));
        assert!(svg.contains("<title id=\"c1-title\">Requests &lt;per&gt; minute</title>"));
        assert!(svg.contains("Minute (UTC)") && svg.contains(">Requests<"));
        assert!(svg.contains("2000"), "y axis rounds up to a nice maximum");
        assert_eq!(chart.table_headers(), vec!["Minute (UTC)", "401"]);
        assert_eq!(chart.table_rows()[1], vec!["08:01", "1200"]);
    }

    #[test]
    fn nice_maxima_are_one_two_or_five_times_a_power_of_ten() {
        assert_eq!(nice_max(0.0), 1.0);
        assert_eq!(nice_max(7.0), 10.0);
        assert_eq!(nice_max(130.0), 200.0);
        assert_eq!(nice_max(0.42), 0.5);
    }
}
