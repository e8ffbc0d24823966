//! The replay's chart: six panels, ours beside upstream's emulation, so the leak and the stall
//! show without reading a number. SVG through plotters (no font files needed). Every line is
//! drawn through the samples only: each side is sampled from its start to its end, so no line
//! crosses a stretch nobody measured.

use super::replay::ha_probes::HaProbesReport;
use super::replay::stale_groups::{Sample, Side, StaleGroupsReport};
use plotters::prelude::*;
use std::path::Path;

type Series = (String, RGBColor, Vec<(f64, f64)>);

const OURS: RGBColor = RGBColor(0, 114, 178);
const UPSTREAM: RGBColor = RGBColor(213, 94, 0);

pub(crate) fn draw(
    path: &Path,
    ha: Option<&HaProbesReport>,
    groups: Option<&StaleGroupsReport>,
) -> Result<(), String> {
    let root = SVGBackend::new(path, (1400, 1350)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| e.to_string())?;
    let panels = root.split_evenly((3, 2));
    if let Some(r) = ha {
        let secs = |t: u64| t as f64 / 1000.0;
        // A side that never ran draws no line.
        let upstream = r.upstream.as_ref().map_or(&[][..], |u| &u.samples[..]);
        panel(
            &panels[0],
            "HA port probes: connections in the table",
            "seconds",
            &[
                (
                    "rmq-lifecycle: table rows".into(),
                    OURS,
                    r.ours
                        .samples
                        .iter()
                        .map(|s| (secs(s.t_ms), s.ha_connections as f64))
                        .collect(),
                ),
                (
                    "upstream 5.1.4: connectionList".into(),
                    UPSTREAM,
                    upstream
                        .iter()
                        .map(|s| (secs(s.t_ms), s.snapshot.list_len as f64))
                        .collect(),
                ),
            ],
        )?;
        let base = r.ours.baseline.rss_bytes as f64;
        panel(
            &panels[1],
            "HA port probes: memory held (MiB)",
            "seconds",
            &[
                (
                    "rmq-lifecycle: resident growth".into(),
                    OURS,
                    r.ours
                        .samples
                        .iter()
                        .map(|s| (secs(s.t_ms), (s.rss_bytes as f64 - base) / 1_048_576.0))
                        .collect(),
                ),
                (
                    "upstream 5.1.4: read buffers retained".into(),
                    UPSTREAM,
                    upstream
                        .iter()
                        .map(|s| (secs(s.t_ms), (s.snapshot.retained_bytes >> 20) as f64))
                        .collect(),
                ),
            ],
        )?;
    }
    if let Some(r) = groups {
        // Each panel: one figure of every sample, ours beside upstream's.
        let line = |side: Option<&Side>, f: &dyn Fn(&Sample) -> f64| {
            side.map_or(&[][..], |side| &side.samples[..])
                .iter()
                .map(|s| (s.t_ms as f64 / 1000.0, f(s)))
                .collect::<Vec<_>>()
        };
        let both = |f: &dyn Fn(&Sample) -> f64| -> [Series; 2] {
            [
                ("rmq-lifecycle".into(), OURS, line(Some(&r.ours), f)),
                (
                    "upstream 4.x".into(),
                    UPSTREAM,
                    line(r.upstream.as_ref(), f),
                ),
            ]
        };
        panel(
            &panels[2],
            "Stale producer groups: groups in the tables",
            "seconds",
            &both(&|s| s.groups as f64),
        )?;
        panel(
            &panels[3],
            "Stale producer groups: slowest consumer heartbeat answered (ms)",
            "seconds",
            &both(&|s| s.heartbeat_max_us as f64 / 1000.0),
        )?;
        let deadline = r.config.as_ref().map_or(3_000, |c| c.deadline_ms);
        panel(
            &panels[4],
            &format!(
                "Stale producer groups: heartbeats that missed the {:.0} s deadline",
                deadline as f64 / 1000.0
            ),
            "seconds",
            &both(&|s| s.missed as f64),
        )?;
        panel(
            &panels[5],
            "Stale producer groups: channel closes processed",
            "seconds",
            &both(&|s| s.closes as f64),
        )?;
    }
    root.present().map_err(|e| e.to_string())
}

fn panel(
    area: &DrawingArea<SVGBackend<'_>, plotters::coord::Shift>,
    title: &str,
    x_label: &str,
    series: &[Series],
) -> Result<(), String> {
    let points = series.iter().flat_map(|(_, _, p)| p.iter());
    let (mut x_max, mut y_max) = (1.0f64, 1.0f64);
    let mut y_min = 0.0f64;
    for (x, y) in points {
        x_max = x_max.max(*x);
        y_max = y_max.max(*y);
        y_min = y_min.min(*y);
    }
    let mut chart = ChartBuilder::on(area)
        .caption(title, ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(64)
        .build_cartesian_2d(0.0..x_max * 1.02, y_min..y_max * 1.1)
        .map_err(|e| e.to_string())?;
    chart
        .configure_mesh()
        .x_desc(x_label)
        .draw()
        .map_err(|e| e.to_string())?;
    for (name, color, points) in series {
        let color = *color;
        chart
            .draw_series(LineSeries::new(
                points.iter().copied(),
                color.stroke_width(2),
            ))
            .map_err(|e| e.to_string())?
            .label(name.as_str())
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
            });
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(|e| e.to_string())
}
