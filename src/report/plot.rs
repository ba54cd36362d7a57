//! `--plot DIR`: one SVG per plot a claim carries (remainder against ε for
//! a Taylor claim, and whatever series other kinds of claim attach), drawn
//! with plotters' SVG backend. Text is written as SVG `<text>` elements, so
//! no font is needed on the machine that draws or the one that shows it.
//! The same outcome gives byte-identical files.

use std::path::{Path, PathBuf};

use plotters::coord::ranged1d::ValueFormatter;
use plotters::prelude::*;

use crate::verify::outcome::{FileOutcome, Plot, SeriesKind};

/// Width and height of every figure, in SVG pixels.
const SIZE: (u32, u32) = (900, 600);
/// Colours of the measured series, in order; references are grey.
const PALETTE: [RGBColor; 6] = [
    RGBColor(31, 119, 180),
    RGBColor(214, 39, 40),
    RGBColor(44, 160, 44),
    RGBColor(148, 103, 189),
    RGBColor(255, 127, 14),
    RGBColor(140, 86, 75),
];

#[derive(Debug, thiserror::Error)]
pub enum PlotError {
    #[error("cannot write plots to {path}: {reason}")]
    Io { path: String, reason: String },
    #[error("cannot draw `{name}`: {reason}")]
    Draw { name: String, reason: String },
}

/// Writes every plot of every file into `dir` (created if missing), as
/// `<spec stem>_<plot name>.svg`; returns the paths written, in order.
pub fn write_plots(dir: &Path, files: &[FileOutcome]) -> Result<Vec<PathBuf>, PlotError> {
    let io = |path: &Path, e: std::io::Error| PlotError::Io {
        path: path.display().to_string(),
        reason: e.to_string(),
    };
    let mut written = vec![];
    for file in files {
        let stem = Path::new(&file.path)
            .file_stem()
            .map_or_else(|| "spec".to_string(), |s| s.to_string_lossy().into_owned());
        for plot in file.claims.iter().flat_map(|c| &c.plots) {
            if written.is_empty() {
                std::fs::create_dir_all(dir).map_err(|e| io(dir, e))?;
            }
            let path = dir.join(format!("{stem}_{}.svg", plot.name));
            let mut plot = plot.clone();
            if let Some(exercise) = &file.exercise {
                plot.title = format!("{exercise}: {}", plot.title);
            }
            std::fs::write(&path, render_svg(&plot)?).map_err(|e| io(&path, e))?;
            written.push(path);
        }
    }
    Ok(written)
}

/// One figure as an SVG document.
pub fn render_svg(plot: &Plot) -> Result<String, PlotError> {
    let mut svg = String::new();
    draw(plot, &mut svg).map_err(|reason| PlotError::Draw {
        name: plot.name.clone(),
        reason,
    })?;
    Ok(svg)
}

/// The data's extent on one axis, padded; `None` with nothing to show.
fn extent(values: impl Iterator<Item = f64>, log: bool) -> Option<(f64, f64)> {
    let usable: Vec<f64> = values
        .filter(|v| v.is_finite() && (!log || *v > 0.0))
        .collect();
    let lo = usable.iter().copied().min_by(f64::total_cmp)?;
    let hi = usable.iter().copied().max_by(f64::total_cmp)?;
    Some(if log {
        let (lo, hi) = if hi > lo {
            (lo, hi)
        } else {
            (lo / 10.0, hi * 10.0)
        };
        (lo / 3.0, hi * 3.0)
    } else {
        let pad = if hi > lo { 0.05 * (hi - lo) } else { 1.0 };
        (lo - pad, hi + pad)
    })
}

/// A reference line clipped to the y-range, straight in the axes' own scale.
fn clip(points: &[(f64, f64)], (lo, hi): (f64, f64), log: bool) -> Vec<(f64, f64)> {
    let t = |v: f64| if log { v.ln() } else { v };
    let back = |v: f64| if log { v.exp() } else { v };
    let mut out = vec![];
    for pair in points.windows(2) {
        let [(x0, y0), (x1, y1)] = [pair[0], pair[1]];
        let (ax, ay, bx, by) = (t(x0), t(y0), t(x1), t(y1));
        let (ylo, yhi) = (t(lo), t(hi));
        let at = |y: f64| if by == ay { 0.0 } else { (y - ay) / (by - ay) };
        let (mut s0, mut s1) = (0.0f64, 1.0f64);
        if by != ay {
            let (a, b) = (at(ylo), at(yhi));
            s0 = s0.max(a.min(b));
            s1 = s1.min(a.max(b));
        } else if !(ylo..=yhi).contains(&ay) {
            continue;
        }
        if s0 <= s1 {
            for s in [s0, s1] {
                out.push((back(ax + s * (bx - ax)), back(ay + s * (by - ay))));
            }
        }
    }
    out
}

fn draw(plot: &Plot, svg: &mut String) -> Result<(), String> {
    let xs = plot
        .series
        .iter()
        .flat_map(|s| s.points.iter().map(|p| p.0));
    // Measurements and the bounds they are judged by set the range; guide
    // slopes are clipped to it.
    let ys = plot
        .series
        .iter()
        .filter(|s| s.kind != SeriesKind::Guide)
        .flat_map(|s| s.points.iter().map(|p| p.1));
    let x_range = extent(xs, plot.log_x).unwrap_or((0.1, 1.0));
    let y_range = extent(ys, plot.log_y).unwrap_or((0.1, 1.0));
    let root = SVGBackend::with_string(svg, SIZE).into_drawing_area();
    root.fill(&WHITE).map_err(|e| e.to_string())?;
    let mut builder = ChartBuilder::on(&root);
    builder
        .caption(&plot.title, ("sans-serif", 20))
        .margin(16)
        .x_label_area_size(50)
        .y_label_area_size(80);
    match (plot.log_x, plot.log_y) {
        (true, true) => {
            let chart = builder
                .build_cartesian_2d(
                    (x_range.0..x_range.1).log_scale(),
                    (y_range.0..y_range.1).log_scale(),
                )
                .map_err(|e| e.to_string())?;
            finish(chart, plot, y_range)
        }
        (true, false) => {
            let chart = builder
                .build_cartesian_2d((x_range.0..x_range.1).log_scale(), y_range.0..y_range.1)
                .map_err(|e| e.to_string())?;
            finish(chart, plot, y_range)
        }
        (false, true) => {
            let chart = builder
                .build_cartesian_2d(x_range.0..x_range.1, (y_range.0..y_range.1).log_scale())
                .map_err(|e| e.to_string())?;
            finish(chart, plot, y_range)
        }
        (false, false) => {
            let chart = builder
                .build_cartesian_2d(x_range.0..x_range.1, y_range.0..y_range.1)
                .map_err(|e| e.to_string())?;
            finish(chart, plot, y_range)
        }
    }?;
    root.present().map_err(|e| e.to_string())
}

/// Powers of ten on log axes (`1e-8`), plain numbers on linear ones (`40`).
fn axis_label(v: f64, log: bool) -> String {
    if log || v.abs() >= 1e5 || (v != 0.0 && v.abs() < 1e-2) {
        format!("{v:.0e}")
    } else {
        crate::eval::format_value(v)
    }
}

/// Mesh, series and legend on a chart of any scale.
fn finish<'a, X, Y>(
    mut chart: ChartContext<'a, SVGBackend<'a>, Cartesian2d<X, Y>>,
    plot: &Plot,
    y_range: (f64, f64),
) -> Result<(), String>
where
    X: Ranged<ValueType = f64> + ValueFormatter<f64>,
    Y: Ranged<ValueType = f64> + ValueFormatter<f64>,
{
    chart
        .configure_mesh()
        .x_desc(plot.x_label.as_str())
        .y_desc(plot.y_label.as_str())
        .x_label_formatter(&|v| axis_label(*v, plot.log_x))
        .y_label_formatter(&|v| axis_label(*v, plot.log_y))
        .draw()
        .map_err(|e| e.to_string())?;
    let mut colour = 0;
    for series in &plot.series {
        if series.kind != SeriesKind::Measured {
            let grey = if series.kind == SeriesKind::Bound {
                BLACK
            } else {
                RGBColor(128, 128, 128)
            };
            let style = grey.stroke_width(1);
            let points = clip(&series.points, y_range, plot.log_y);
            chart
                .draw_series(DashedLineSeries::new(points, 6, 4, style))
                .map_err(|e| e.to_string())?
                .label(series.label.as_str())
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], style));
        } else {
            let c = PALETTE[colour % PALETTE.len()];
            colour += 1;
            let style = c.stroke_width(2);
            chart
                .draw_series(LineSeries::new(series.points.iter().copied(), style))
                .map_err(|e| e.to_string())?
                .label(series.label.as_str())
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], style));
            chart
                .draw_series(series.points.iter().map(|&p| Circle::new(p, 2, c.filled())))
                .map_err(|e| e.to_string())?;
        }
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK)
        .draw()
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    #[test]
    fn a_slope_is_clipped_to_the_y_range_in_log_scale() {
        // y = x² from 1 down to 1e-8, seen between 1e-6 and 1e-2.
        let clipped = clip(&[(1.0, 1.0), (1e-8, 1e-16)], (1e-6, 1e-2), true);
        assert_eq!(clipped.len(), 2);
        assert!((clipped[0].0 / 1e-1 - 1.0).abs() < 1e-9, "{clipped:?}");
        assert!((clipped[1].0 / 1e-3 - 1.0).abs() < 1e-9, "{clipped:?}");
    }

    #[test]
    fn a_flat_line_outside_the_range_is_dropped() {
        assert!(clip(&[(1.0, 5.0), (2.0, 5.0)], (0.0, 1.0), false).is_empty());
    }
}
