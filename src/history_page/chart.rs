//! The SVG charts of the history page: nodes per placement of one fleet
//! (stacked step areas, shortage bands, move markers) and cost per hour, on
//! one time axis in UTC.

use super::{Band, Marker, Runs, escape};
use chrono::{DateTime, Utc};
use std::fmt::Write;

/// Width of every chart, in SVG units (the page scales it to fit).
const WIDTH: f64 = 1000.0;
const LEFT: f64 = 64.0;
const RIGHT: f64 = 24.0;
/// Height of the plot area itself.
const PLOT: f64 = 220.0;
const COST_PLOT: f64 = 120.0;
/// Room under the plot for tick labels, dates and the axis title.
const BELOW: f64 = 58.0;
/// One row of move labels, one lane of shortage labels.
const MARKER_ROW: f64 = 16.0;
const MARKER_ROWS: usize = 2;
const LANE: f64 = 18.0;

/// Series colors: distinct, readable on white, and none of them the red of shortages.
pub(super) const PALETTE: [&str; 10] =
    ["#4e79a7", "#f28e2b", "#59a14f", "#76b7b2", "#b07aa1", "#edc948", "#9c755f", "#ff9da7", "#86bcb6", "#79706e"];

/// Time in milliseconds since the epoch → x, over the runs' span (with room
/// after the last run so that its step shows).
#[derive(Clone, Copy)]
pub(super) struct TimeAxis {
    start: i64,
    end: i64,
}

impl TimeAxis {
    pub(super) fn new(first: i64, last: i64) -> TimeAxis {
        let span = last.saturating_sub(first).max(0);
        TimeAxis { start: first, end: last.saturating_add((span / 20).max(60_000)) }
    }

    pub(super) fn end(&self) -> i64 {
        self.end
    }

    fn x(&self, ms: i64) -> f64 {
        let span = self.end.saturating_sub(self.start).max(1) as f64;
        let at = ms.clamp(self.start, self.end);
        LEFT + (at - self.start) as f64 / span * (WIDTH - LEFT - RIGHT)
    }

    /// Round times at a step that gives a handful of ticks, and the step.
    fn ticks(&self) -> (Vec<i64>, i64) {
        const MINUTE: i64 = 60_000;
        const DAY: i64 = 24 * 60 * MINUTE;
        let steps =
            [10_000, 30_000, MINUTE, 2 * MINUTE, 5 * MINUTE, 10 * MINUTE, 15 * MINUTE, 30 * MINUTE, 60 * MINUTE];
        let hours = [2, 3, 6, 12].map(|h| h * 60 * MINUTE);
        let span = self.end.saturating_sub(self.start);
        let step = steps
            .into_iter()
            .chain(hours)
            .chain([DAY, 2 * DAY, 7 * DAY])
            .find(|step| span / step <= 8)
            .unwrap_or_else(|| (span / 6).div_euclid(DAY).saturating_add(1).saturating_mul(DAY));
        let round = self.start.div_euclid(step).saturating_mul(step);
        let first = if round < self.start { round.saturating_add(step) } else { round };
        let ticks = (0..12).map(|k| first.saturating_add(k * step)).take_while(|t| *t <= self.end).collect();
        (ticks, step)
    }
}

/// A time for people, in UTC.
pub(super) fn utc(ms: i64, format: &str) -> String {
    DateTime::<Utc>::from_timestamp_millis(ms).map(|t| t.format(format).to_string()).unwrap_or_default()
}

/// A round step for about `ticks` ticks up to `max` (1, 2 or 5 times a power of ten).
fn nice_step(max: f64, ticks: f64) -> f64 {
    let raw = max / ticks;
    if !raw.is_finite() || raw <= 0.0 {
        return 1.0;
    }
    let magnitude = 10f64.powf(raw.log10().floor());
    [1.0, 2.0, 5.0, 10.0].into_iter().map(|m| m * magnitude).find(|s| *s >= raw).unwrap_or(10.0 * magnitude)
}

/// A value scale from 0 up to a round top above `max`.
struct ValueAxis {
    step: f64,
    top: f64,
    /// Pixel y of 0 and of `top`.
    bottom_y: f64,
    top_y: f64,
}

impl ValueAxis {
    fn new(max: f64, whole: bool, top_y: f64, height: f64) -> ValueAxis {
        let mut step = nice_step(max, 5.0);
        if whole {
            step = step.max(1.0);
        }
        let top = if max.is_finite() && max > 0.0 { (max / step).ceil() * step } else { step };
        ValueAxis { step, top, bottom_y: top_y + height, top_y }
    }

    fn y(&self, value: f64) -> f64 {
        let share = if value.is_finite() { (value / self.top).clamp(0.0, 1.0) } else { 0.0 };
        self.bottom_y - share * (self.bottom_y - self.top_y)
    }
}

/// Grid, ticks and titles of one chart; `label` formats a value tick.
fn axes(out: &mut String, time: &TimeAxis, values: &ValueAxis, y_title: &str, label: impl Fn(f64) -> String) {
    let right = WIDTH - RIGHT;
    let _ = write!(out, r#"<g class="axis y-axis">"#);
    let count = (values.top / values.step).round().clamp(1.0, 20.0) as usize;
    for k in 0..=count {
        let value = values.step * k as f64;
        let y = values.y(value);
        let _ = write!(
            out,
            r#"<line class="grid" x1="{LEFT}" x2="{right}" y1="{y:.1}" y2="{y:.1}"/><text class="tick" x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"#,
            LEFT - 8.0,
            y + 4.0,
            escape(&label(value))
        );
    }
    let middle = (values.top_y + values.bottom_y) / 2.0;
    let _ = write!(
        out,
        r#"<text class="axis-title" transform="translate(16 {middle:.1}) rotate(-90)" text-anchor="middle">{y_title}</text></g>"#
    );
    let bottom = values.bottom_y;
    let _ = write!(
        out,
        r#"<g class="axis x-axis"><line class="baseline" x1="{LEFT}" x2="{right}" y1="{bottom:.1}" y2="{bottom:.1}"/>"#
    );
    let (ticks, step) = time.ticks();
    let format = if step < 60_000 { "%H:%M:%S" } else { "%H:%M" };
    let mut last_day = String::new();
    for tick in ticks {
        let x = time.x(tick);
        let _ = write!(
            out,
            r#"<line class="tick-mark" x1="{x:.1}" x2="{x:.1}" y1="{bottom:.1}" y2="{:.1}"/><text class="tick" x="{x:.1}" y="{:.1}" text-anchor="middle">{}</text>"#,
            bottom + 5.0,
            bottom + 18.0,
            utc(tick, format)
        );
        // The date under the first tick and wherever the day changes.
        let day = utc(tick, "%Y-%m-%d");
        if day != last_day {
            let _ = write!(
                out,
                r#"<text class="tick date" x="{x:.1}" y="{:.1}" text-anchor="middle">{day}</text>"#,
                bottom + 32.0
            );
            last_day = day;
        }
    }
    let _ = write!(
        out,
        r#"<text class="axis-title" x="{:.1}" y="{:.1}" text-anchor="middle">time (UTC)</text></g>"#,
        (LEFT + right) / 2.0,
        bottom + 52.0
    );
}

fn svg_open(out: &mut String, class: &str, height: f64, label: &str) {
    let _ = write!(
        out,
        r#"<svg class="{class}" viewBox="0 0 {WIDTH} {height:.0}" role="img" aria-label="{}" preserveAspectRatio="xMidYMin meet">"#,
        escape(label)
    );
}

/// One fleet: a stacked step area per placement (bottom to top in
/// `placements` order, colored by `color`), shortage bands with one labeled
/// lane each, and a marker at each run that moved nodes.
pub(super) fn fleet_chart(
    runs: &Runs,
    index: usize,
    fleet: &str,
    placements: &[(&str, &str)],
    bands: &[Band],
    markers: &[Marker],
) -> String {
    let lanes = bands.iter().map(|b| b.lane + 1).max().unwrap_or(0);
    let marker_space = if markers.is_empty() { 0.0 } else { MARKER_ROW * MARKER_ROWS as f64 + 6.0 };
    let lanes_top = 10.0 + marker_space;
    let plot_top = lanes_top + LANE * lanes as f64 + if lanes > 0 { 6.0 } else { 0.0 };
    let height = plot_top + PLOT + BELOW;
    let time = runs.time;
    let totals: Vec<f64> = runs.entries.iter().map(|e| Runs::nodes(e, fleet).map(|(_, n)| n as f64).sum()).collect();
    let values = ValueAxis::new(totals.iter().copied().fold(0.0, f64::max), true, plot_top, PLOT);
    let right = WIDTH - RIGHT;

    let mut out = String::new();
    svg_open(&mut out, "chart nodes", height, &format!("nodes per placement of fleet {fleet} over time"));
    let _ = write!(
        out,
        r#"<defs><clipPath id="plot-{index}"><rect x="{LEFT}" y="0" width="{:.1}" height="{height:.0}"/></clipPath><pattern id="hatch-{index}" width="7" height="7" patternUnits="userSpaceOnUse" patternTransform="rotate(45)"><line class="hatch" x1="0" y1="0" x2="0" y2="7"/></pattern></defs>"#,
        right - LEFT
    );
    axes(&mut out, &time, &values, "nodes", |v| format!("{v:.0}"));

    // Shortages first, so that the fleet is drawn over them.
    let _ = write!(out, r#"<g class="shortages" clip-path="url(#plot-{index})">"#);
    for band in bands {
        let (x1, x2) = (time.x(band.from), time.x(band.until));
        let lane_y = lanes_top + LANE * band.lane as f64;
        let width = (x2 - x1).max(2.0);
        let text = escape(&band.label);
        let (text_x, anchor) =
            if x1 < LEFT + (right - LEFT) * 0.6 { (x1 + 5.0, "start") } else { (x1 + width - 5.0, "end") };
        let _ = write!(
            out,
            r#"<g class="shortage" data-shortage="{text}" data-from="{}" data-until="{}"><title>shortage in force: {text} ({} – {} UTC)</title><rect class="band" x="{x1:.1}" y="{lane_y:.1}" width="{width:.1}" height="{:.1}"/><rect class="lane" x="{x1:.1}" y="{lane_y:.1}" width="{width:.1}" height="{:.1}"/><text class="lane-label" x="{text_x:.1}" y="{:.1}" text-anchor="{anchor}">{text}</text></g>"#,
            utc(band.from, "%Y-%m-%dT%H:%M:%SZ"),
            utc(band.until, "%Y-%m-%dT%H:%M:%SZ"),
            utc(band.from, "%H:%M:%S"),
            utc(band.until, "%H:%M:%S"),
            plot_top - lane_y,
            LANE - 3.0,
            lane_y + 12.5
        );
    }
    out.push_str("</g>");

    // Stacked step areas: each run's counts hold until the next run.
    let spans: Vec<(f64, f64)> = (0..runs.entries.len())
        .map(|i| {
            let until = runs.entries.get(i + 1).map_or(time.end(), |next| next.at.timestamp_millis());
            (time.x(runs.entries[i].at.timestamp_millis()), time.x(until))
        })
        .collect();
    let mut below = vec![0.0; runs.entries.len()];
    out.push_str(r#"<g class="series-group">"#);
    for (placement, color) in placements {
        let above: Vec<f64> =
            runs.entries.iter().zip(&below).map(|(e, base)| base + Runs::count(e, fleet, placement) as f64).collect();
        let mut d = String::new();
        for (i, ((x1, x2), top)) in spans.iter().zip(&above).enumerate() {
            let verb = if i == 0 { 'M' } else { 'L' };
            let _ = write!(d, "{verb}{x1:.1},{:.1}H{x2:.1}", values.y(*top));
        }
        for ((x1, x2), base) in spans.iter().zip(&below).rev() {
            let _ = write!(d, "L{x2:.1},{:.1}H{x1:.1}", values.y(*base));
        }
        d.push('Z');
        let text = escape(placement);
        let _ = write!(
            out,
            r#"<path class="series" data-fleet="{}" data-placement="{text}" d="{d}" style="fill:{color}"><title>{text}</title></path>"#,
            escape(fleet)
        );
        below = above;
    }
    out.push_str("</g>");

    // Over the fleet, hatching where any shortage was in force.
    let _ = write!(out, r#"<g class="shortage-shading" clip-path="url(#plot-{index})">"#);
    for (from, until) in merged(bands) {
        let (x1, x2) = (time.x(from), time.x(until));
        let _ = write!(
            out,
            r#"<rect x="{x1:.1}" y="{plot_top:.1}" width="{:.1}" height="{PLOT:.1}" fill="url(#hatch-{index})"/>"#,
            (x2 - x1).max(2.0)
        );
    }
    out.push_str("</g>");

    // Moves: a dashed line at the run, its label in one of two rows above the plot.
    out.push_str(r#"<g class="moves">"#);
    for (k, marker) in markers.iter().enumerate() {
        let x = time.x(marker.at);
        let row_y = 10.0 + MARKER_ROW * (k % MARKER_ROWS) as f64;
        let (text_x, anchor) = if x < LEFT + (right - LEFT) * 0.75 { (x + 4.0, "start") } else { (x - 4.0, "end") };
        let _ = write!(
            out,
            r#"<g class="move-marker{}" data-at="{}"><title>{}</title><line x1="{x:.1}" x2="{x:.1}" y1="{row_y:.1}" y2="{:.1}"/><text x="{text_x:.1}" y="{:.1}" text-anchor="{anchor}">{}</text></g>"#,
            if marker.failed { " failed" } else { "" },
            utc(marker.at, "%Y-%m-%dT%H:%M:%SZ"),
            escape(&marker.details.join("\n")),
            values.bottom_y,
            row_y + 12.0,
            escape(&marker.label)
        );
    }
    out.push_str("</g></svg>");
    out
}

/// The time ranges covered by at least one band, each once.
fn merged(bands: &[Band]) -> Vec<(i64, i64)> {
    let mut ranges: Vec<(i64, i64)> = bands.iter().map(|b| (b.from, b.until)).collect();
    ranges.sort_unstable();
    let mut merged: Vec<(i64, i64)> = Vec::new();
    for (from, until) in ranges {
        match merged.last_mut() {
            Some(last) if from <= last.1 => last.1 = last.1.max(until),
            _ => merged.push((from, until)),
        }
    }
    merged
}

/// Cost per hour after each run, as a step line.
pub(super) fn cost_chart(runs: &Runs) -> String {
    let top_y = 12.0;
    let height = top_y + COST_PLOT + BELOW;
    let costs: Vec<f64> =
        runs.entries.iter().map(|e| if e.cost_per_hour.is_finite() { e.cost_per_hour } else { 0.0 }).collect();
    let values = ValueAxis::new(costs.iter().copied().fold(0.0, f64::max), false, top_y, COST_PLOT);
    let time = runs.time;
    let mut out = String::new();
    svg_open(&mut out, "chart cost", height, "cost per hour over time");
    axes(&mut out, &time, &values, "$ / hour", |v| format!("${v:.0}"));
    let mut d = String::new();
    for (i, (entry, cost)) in runs.entries.iter().zip(&costs).enumerate() {
        let x1 = time.x(entry.at.timestamp_millis());
        let x2 = time.x(runs.entries.get(i + 1).map_or(time.end(), |next| next.at.timestamp_millis()));
        let verb = if i == 0 { 'M' } else { 'L' };
        let _ = write!(d, "{verb}{x1:.1},{:.1}H{x2:.1}", values.y(*cost));
    }
    let _ = write!(out, r#"<path class="cost-line" d="{d}"></path></svg>"#);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_fall_on_round_times_inside_the_span() {
        let start = 1_767_225_600_000; // 2026-01-01T00:00:00Z
        let (ticks, step) = TimeAxis::new(start, start + 40 * 60_000).ticks();
        assert_eq!(step, 5 * 60_000);
        assert!(ticks.len() <= 9 && !ticks.is_empty());
        assert!(ticks.iter().all(|t| t % step == 0));
        assert_eq!(utc(ticks[0], "%H:%M"), "00:00");
    }

    #[test]
    fn spans_of_centuries_still_give_a_few_ticks() {
        let (ticks, _) = TimeAxis::new(-8_000_000_000_000_000, 8_000_000_000_000_000).ticks();
        assert!(!ticks.is_empty() && ticks.len() <= 12);
    }

    #[test]
    fn value_steps_are_round() {
        assert_eq!(nice_step(4.0, 5.0), 1.0);
        assert_eq!(nice_step(37.0, 5.0), 10.0);
        assert_eq!(nice_step(0.0, 5.0), 1.0);
        assert_eq!(nice_step(f64::NAN, 5.0), 1.0);
        let axis = ValueAxis::new(4.0, true, 0.0, 100.0);
        assert_eq!((axis.step, axis.top), (1.0, 4.0));
    }
}
