//! Charts as inline SVG drawn on the server (decision 0052, amended): a pure function from a
//! series to markup, with axes, tick labels, a legend and a `<title>` per bar or point for the
//! exact value. No script draws anything and nothing uses `style=`: the Content-Security-Policy
//! forbids inline styles, so colours and sizes are SVG presentation attributes. maud escapes
//! every text and attribute value, so a series or label name cannot become markup.

use maud::{Markup, html};

/// The drawing's size in SVG user units (it scales to the page's width).
const WIDTH: f64 = 720.0;
const HEIGHT: f64 = 260.0;
const LEFT: f64 = 70.0;
const RIGHT: f64 = 16.0;
const TOP: f64 = 30.0;
const BOTTOM: f64 = 40.0;
/// Most labels on the time axis.
const X_LABELS: usize = 6;
/// Ticks on the value axis (0 included).
const Y_TICKS: usize = 6;

/// What the values are, for the axis and the titles.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Unit {
    Count,
    /// 0 to 1, shown as a percentage; the axis is always 0 to 100%.
    Ratio,
    Seconds,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    /// One bar per bucket, the series stacked.
    StackedBars,
    /// One line per series through the buckets with a value (a gap where one has none).
    Lines,
}

/// One series: a value per bucket (`None`: nothing to show there).
#[derive(Debug, Clone)]
pub(super) struct Series {
    pub(super) name: String,
    pub(super) colour: &'static str,
    pub(super) values: Vec<Option<f64>>,
}

/// A chart over a time series: bucket `i` starts at `starts[i]`.
#[derive(Debug, Clone)]
pub(super) struct Chart<'a> {
    pub(super) id: &'a str,
    pub(super) title: &'a str,
    pub(super) kind: Kind,
    pub(super) unit: Unit,
    /// Whether the buckets are hours (labels show the time) or days.
    pub(super) hourly: bool,
    pub(super) starts: &'a [i64],
    pub(super) series: Vec<Series>,
}

/// A value as people read it in `unit`.
pub(super) fn format_value(unit: Unit, value: f64) -> String {
    match unit {
        Unit::Count => format_count(value),
        Unit::Ratio => format!("{:.1}%", value * 100.0),
        Unit::Seconds => duration(value.round() as i64),
    }
}

fn format_count(value: f64) -> String {
    if value.fract() == 0.0 {
        format!("{value:.0}")
    } else {
        format!("{value:.1}")
    }
}

/// Seconds as `45 s`, `12 min`, `3.5 h` or `2.1 d`.
pub(super) fn duration(secs: i64) -> String {
    let s = secs as f64;
    if secs < 120 {
        format!("{secs} s")
    } else if secs < 2 * 3_600 {
        format!("{:.0} min", s / 60.0)
    } else if secs < 2 * 86_400 {
        format!("{:.1} h", s / 3_600.0)
    } else {
        format!("{:.1} d", s / 86_400.0)
    }
}

/// The smallest of 1, 2, 5 times a power of ten at or above `max` (1 for nothing).
fn nice_ceiling(max: f64) -> f64 {
    if max.is_nan() || max <= 0.0 {
        return 1.0;
    }
    let mut step = 1.0;
    while step * 10.0 <= max {
        step *= 10.0;
    }
    while step > max {
        step /= 10.0;
    }
    [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .map(|m| m * step)
        .find(|v| *v >= max)
        .unwrap_or(max)
}

fn bucket_label(start: i64, hourly: bool) -> String {
    let format = if hourly { "%m-%d %H:00" } else { "%Y-%m-%d" };
    jiff::Timestamp::from_second(start)
        .map(|t| t.strftime(format).to_string())
        .unwrap_or_else(|_| start.to_string())
}

/// The chart as an `<svg>` element.
pub(super) fn svg(chart: &Chart<'_>) -> Markup {
    let n = chart.starts.len().max(1);
    let plot_w = WIDTH - LEFT - RIGHT;
    let plot_h = HEIGHT - TOP - BOTTOM;
    let band = plot_w / n as f64;
    let value = |s: &Series, i: usize| s.values.get(i).copied().flatten().filter(|v| v.is_finite());
    let top = match (chart.unit, chart.kind) {
        (Unit::Ratio, _) => 1.0,
        (_, Kind::StackedBars) => nice_ceiling(
            (0..n)
                .map(|i| chart.series.iter().filter_map(|s| value(s, i)).sum::<f64>())
                .fold(0.0, f64::max),
        ),
        (_, Kind::Lines) => nice_ceiling(
            chart
                .series
                .iter()
                .flat_map(|s| (0..n).filter_map(|i| value(s, i)))
                .fold(0.0, f64::max),
        ),
    };
    // A floor per unit, so small or empty charts get whole-number ticks (counts 0 to 5,
    // seconds 0 to 100) rather than fractions.
    let top = match chart.unit {
        Unit::Count => top.max(5.0),
        Unit::Seconds => top.max(100.0),
        Unit::Ratio => top,
    };
    let y = |v: f64| TOP + plot_h - (v / top).clamp(0.0, 1.0) * plot_h;
    let centre = |i: usize| LEFT + band * (i as f64 + 0.5);
    let empty = chart.series.iter().all(|s| {
        (0..n).all(|i| value(s, i).is_none_or(|v| v == 0.0 && chart.kind == Kind::StackedBars))
    });
    let x_labels: Vec<usize> = if chart.starts.len() <= X_LABELS {
        (0..chart.starts.len()).collect()
    } else {
        let last = chart.starts.len() - 1;
        (0..X_LABELS).map(|k| k * last / (X_LABELS - 1)).collect()
    };
    let f = |v: f64| format!("{v:.1}");
    html! {
        svg.chart id=(chart.id) viewBox={ "0 0 " (WIDTH) " " (HEIGHT) } width="100%"
            role="img" aria-label=(chart.title) font-size="11" font-family="sans-serif" {
            title { (chart.title) }
            // Legend.
            @for (k, s) in chart.series.iter().enumerate() {
                rect x=(f(LEFT + 150.0 * k as f64)) y="8" width="12" height="12" fill=(s.colour) {}
                text x=(f(LEFT + 150.0 * k as f64 + 16.0)) y="18" fill="#333" { (s.name) }
            }
            // Value axis: grid lines and labels.
            @for t in 0..Y_TICKS {
                @let v = top * t as f64 / (Y_TICKS - 1) as f64;
                line x1=(f(LEFT)) x2=(f(WIDTH - RIGHT)) y1=(f(y(v))) y2=(f(y(v)))
                    stroke="#ddd" stroke-width="1" {}
                text x=(f(LEFT - 6.0)) y=(f(y(v) + 4.0)) text-anchor="end" fill="#555" {
                    (format_value(chart.unit, v))
                }
            }
            // Time axis.
            line x1=(f(LEFT)) x2=(f(WIDTH - RIGHT)) y1=(f(TOP + plot_h)) y2=(f(TOP + plot_h))
                stroke="#555" stroke-width="1" {}
            @for &i in &x_labels {
                // The last label ends at its bucket: centred, it would run past the drawing.
                @let anchor = if x_labels.len() > 1 && Some(&i) == x_labels.last() { "end" } else { "middle" };
                text x=(f(centre(i))) y=(f(HEIGHT - BOTTOM + 16.0)) text-anchor=(anchor) fill="#555" {
                    (bucket_label(chart.starts[i], chart.hourly))
                }
            }
            @if empty {
                text.empty x=(f(LEFT + plot_w / 2.0)) y=(f(TOP + plot_h / 2.0)) text-anchor="middle" fill="#777" {
                    "No data in this window"
                }
            } @else {
                @match chart.kind {
                    Kind::StackedBars => {
                        @for (i, s, base, v) in stacked(chart, value) {
                            rect x=(f(LEFT + band * i as f64 + band * 0.1)) y=(f(y(base + v)))
                                width=(f((band * 0.8).max(0.5))) height=(f(y(base) - y(base + v)))
                                fill=(s.colour) {
                                title { (bucket_label(chart.starts[i], chart.hourly)) ": " (format_value(chart.unit, v)) " " (s.name) }
                            }
                        }
                    }
                    Kind::Lines => {
                        @for s in &chart.series {
                            @for run in runs(&(0..chart.starts.len()).map(|i| value(s, i)).collect::<Vec<_>>()) {
                                @if run.len() > 1 {
                                    polyline fill="none" stroke=(s.colour) stroke-width="2"
                                        points=(run.iter().map(|&(i, v)| format!("{},{}", f(centre(i)), f(y(v)))).collect::<Vec<_>>().join(" ")) {}
                                }
                                @for &(i, v) in &run {
                                    circle cx=(f(centre(i))) cy=(f(y(v))) r="2.5" fill=(s.colour) {
                                        title { (bucket_label(chart.starts[i], chart.hourly)) ": " (format_value(chart.unit, v)) " " (s.name) }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// The bars of a stacked chart: (bucket, series, the value below it, its value), zeros left out.
fn stacked<'c>(
    chart: &'c Chart<'_>,
    value: impl Fn(&Series, usize) -> Option<f64>,
) -> Vec<(usize, &'c Series, f64, f64)> {
    let mut bars = Vec::new();
    for i in 0..chart.starts.len() {
        let mut base = 0.0;
        for s in &chart.series {
            if let Some(v) = value(s, i).filter(|v| *v > 0.0) {
                bars.push((i, s, base, v));
                base += v;
            }
        }
    }
    bars
}

/// The stretches of consecutive buckets with a value, each as (bucket, value) pairs.
fn runs(values: &[Option<f64>]) -> Vec<Vec<(usize, f64)>> {
    let mut out: Vec<Vec<(usize, f64)>> = Vec::new();
    let mut current = Vec::new();
    for (i, v) in values.iter().enumerate() {
        match v {
            Some(v) => current.push((i, *v)),
            None if !current.is_empty() => out.push(std::mem::take(&mut current)),
            None => {}
        }
    }
    if !current.is_empty() {
        out.push(current);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: i64 = 1_700_006_400; // 2023-11-15 00:00 UTC

    fn chart(kind: Kind, unit: Unit, series: Vec<Series>) -> String {
        let starts = [T0, T0 + 3_600, T0 + 7_200];
        svg(&Chart {
            id: "c",
            title: "Results <per hour>",
            kind,
            unit,
            hourly: true,
            starts: &starts,
            series,
        })
        .into_string()
    }

    #[test]
    fn bars_stack_with_axes_labels_and_exact_titles() {
        let out = chart(
            Kind::StackedBars,
            Unit::Count,
            vec![
                Series {
                    name: "succeeded".into(),
                    colour: "#2e7d32",
                    values: vec![Some(8.0), None, Some(3.0)],
                },
                Series {
                    name: "failed".into(),
                    colour: "#c62828",
                    values: vec![Some(2.0), None, Some(0.0)],
                },
            ],
        );
        // The tallest bar is 10: the axis goes 0 to 10 in fifths.
        for tick in [">0<", ">2<", ">4<", ">6<", ">8<", ">10<"] {
            assert!(out.contains(tick), "{tick} in {out}");
        }
        // Bucket 0: 8 succeeded from the axis (y 220) up 8/10 of the 190-unit plot, then 2 failed.
        assert!(
            out.contains(r##"y="68.0" width="169.1" height="152.0" fill="#2e7d32""##),
            "{out}"
        );
        assert!(
            out.contains(r##"y="30.0" width="169.1" height="38.0" fill="#c62828""##),
            "{out}"
        );
        assert!(
            out.contains("<title>11-15 00:00: 8 succeeded</title>"),
            "{out}"
        );
        // A zero draws no bar; an empty bucket none either (3 bars in all).
        assert_eq!(out.matches("<rect").count() - 2, 3, "{out}");
        assert!(out.contains(">11-15 00:00<") && out.contains(">11-15 02:00<"));
        // The first time label is centred on its bucket, the last ends there (inside the
        // drawing's right edge).
        assert!(
            out.contains(r##"text-anchor="middle" fill="#555">11-15 00:00<"##),
            "{out}"
        );
        assert!(
            out.contains(r##"text-anchor="end" fill="#555">11-15 02:00<"##),
            "{out}"
        );
        assert!(
            out.contains("<title>Results &lt;per hour&gt;</title>"),
            "{out}"
        );
        assert!(!out.contains("style="));
    }

    #[test]
    fn lines_break_where_a_bucket_has_no_value_and_ratios_are_percentages() {
        let out = chart(
            Kind::Lines,
            Unit::Ratio,
            vec![Series {
                name: "success <b>".into(),
                colour: "#1565c0",
                values: vec![Some(0.8), None, Some(0.75)],
            }],
        );
        // Two lone points, no line between them across the gap.
        assert_eq!(out.matches("<polyline").count(), 0, "{out}");
        assert_eq!(out.matches("<circle").count(), 2, "{out}");
        assert!(out.contains(">100.0%<") && out.contains(">40.0%<"), "{out}");
        assert!(
            out.contains("<title>11-15 00:00: 80.0% success &lt;b&gt;</title>"),
            "{out}"
        );
        assert!(!out.contains("<b>"), "{out}");
        let joined = chart(
            Kind::Lines,
            Unit::Seconds,
            vec![Series {
                name: "median".into(),
                colour: "#1565c0",
                values: vec![Some(30.0), Some(7_200.0), None],
            }],
        );
        assert_eq!(joined.matches("<polyline").count(), 1, "{joined}");
        // 7,200 s tops an axis of 10,000 s.
        assert!(
            joined.contains(">2.8 h<") && joined.contains(">100 min<"),
            "{joined}"
        );
    }

    #[test]
    fn an_empty_chart_says_so() {
        let out = chart(
            Kind::StackedBars,
            Unit::Count,
            vec![Series {
                name: "succeeded".into(),
                colour: "#2e7d32",
                values: vec![None, Some(0.0), None],
            }],
        );
        assert!(out.contains("No data in this window"), "{out}");
        assert_eq!(out.matches("<rect").count(), 1, "only the legend: {out}");
    }

    #[test]
    fn durations_and_axis_ceilings_read_well() {
        assert_eq!(duration(45), "45 s");
        assert_eq!(duration(600), "10 min");
        assert_eq!(duration(3 * 3_600), "3.0 h");
        assert_eq!(duration(3 * 86_400), "3.0 d");
        assert_eq!(nice_ceiling(0.0), 1.0);
        assert_eq!(nice_ceiling(10.0), 10.0);
        assert_eq!(nice_ceiling(11.0), 20.0);
        assert_eq!(nice_ceiling(7_200.0), 10_000.0);
        assert_eq!(nice_ceiling(0.3), 0.5);
    }
}
