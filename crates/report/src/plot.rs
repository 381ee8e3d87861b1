//! SVG plots as strings (plotters' SVG backend, drawn in memory): a run's training curves
//! ([`training_curves`]) and soup fronts with 95% interval bars across seeds ([`soup_fronts`]).

use advsoup_records::run::EpochMetrics;
use advsoup_records::stats::Interval;
use plotters::prelude::*;

use crate::ReportError;

fn plot_err(what: &str) -> impl Fn(String) -> ReportError + '_ {
    move |message| ReportError::Plot {
        what: what.to_string(),
        message,
    }
}

/// `lo..hi` padded by 5% (and at least `min_span`), for finite values; `0..1` when none.
fn range(values: impl Iterator<Item = f64>, min_span: f64) -> std::ops::Range<f64> {
    let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
    for v in values.filter(|v| v.is_finite()) {
        lo = lo.min(v);
        hi = hi.max(v);
    }
    if !lo.is_finite() {
        return 0.0..1.0;
    }
    let pad = ((hi - lo) * 0.05).max(min_span / 2.0);
    (lo - pad)..(hi + pad)
}

/// One panel of the training curves: `series` (name, colour, per-epoch values) over epochs.
fn panel(
    area: &DrawingArea<SVGBackend<'_>, plotters::coord::Shift>,
    title: &str,
    y_desc: &str,
    epochs: &[f64],
    series: &[(&str, RGBColor, Vec<f64>)],
) -> Result<(), String> {
    let x = range(epochs.iter().copied(), 1.0);
    let y = range(series.iter().flat_map(|s| s.2.iter().copied()), 1e-6);
    let mut chart = ChartBuilder::on(area)
        .caption(title, ("sans-serif", 15))
        .margin(8)
        .x_label_area_size(32)
        .y_label_area_size(56)
        .build_cartesian_2d(x, y)
        .map_err(|e| e.to_string())?;
    chart
        .configure_mesh()
        .x_desc("epoch")
        .y_desc(y_desc)
        .draw()
        .map_err(|e| e.to_string())?;
    for (name, colour, values) in series {
        let pts: Vec<(f64, f64)> = epochs.iter().copied().zip(values.iter().copied()).collect();
        let c = *colour;
        chart
            .draw_series(LineSeries::new(pts.clone(), c))
            .map_err(|e| e.to_string())?
            .label(*name)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], c));
        chart
            .draw_series(pts.iter().map(|p| Circle::new(*p, 3, c.filled())))
            .map_err(|e| e.to_string())?;
    }
    if series.len() > 1 {
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .draw()
            .map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// A run's training curves (one panel each: training loss; held-out clean accuracy in clean
/// mode and robust accuracy in robust mode, %; learning rate) per epoch, as an SVG document.
///
/// # Errors
/// [`ReportError::Plot`] when plotters cannot draw (e.g. no epochs).
pub fn training_curves(metrics: &[EpochMetrics], title: &str) -> Result<String, ReportError> {
    let err = plot_err("training curves");
    if metrics.is_empty() {
        return Err(err("metrics.jsonl has no epochs".into()));
    }
    let epochs: Vec<f64> = metrics.iter().map(|m| m.epoch as f64).collect();
    let col = |f: fn(&EpochMetrics) -> f64| metrics.iter().map(f).collect::<Vec<f64>>();
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (960, 300)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| err(e.to_string()))?;
        let root = root
            .titled(title, ("sans-serif", 17))
            .map_err(|e| err(e.to_string()))?;
        let areas = root.split_evenly((1, 3));
        panel(
            &areas[0],
            "training loss",
            "loss",
            &epochs,
            &[("loss", BLUE, col(|m| m.loss))],
        )
        .map_err(&err)?;
        panel(
            &areas[1],
            "held-out accuracy %",
            "accuracy %",
            &epochs,
            &[
                ("clean (clean mode)", BLUE, col(|m| 100.0 * m.clean_acc)),
                ("robust (robust mode)", RED, col(|m| 100.0 * m.robust_acc)),
            ],
        )
        .map_err(&err)?;
        panel(
            &areas[2],
            "learning rate (end of epoch)",
            "lr",
            &epochs,
            &[("lr", BLACK, col(|m| m.lr))],
        )
        .map_err(&err)?;
        root.present().map_err(|e| err(e.to_string()))?;
    }
    Ok(svg)
}

/// One point of a soup front over seeds: β and the clean and robust accuracy's mean and 95%
/// interval.
#[derive(Debug, Clone, PartialEq)]
pub struct FrontBar {
    /// Weight of the clean adapter.
    pub beta: f64,
    /// Clean accuracy over seeds.
    pub clean: Interval,
    /// Robust accuracy over seeds.
    pub robust: Interval,
}

/// The soup front of one row: its points, β ascending.
#[derive(Debug, Clone, PartialEq)]
pub struct FrontSeries {
    /// The row.
    pub name: String,
    /// Its points.
    pub points: Vec<FrontBar>,
}

const PALETTE: [RGBColor; 6] = [
    RGBColor(31, 119, 180),
    RGBColor(214, 39, 40),
    RGBColor(44, 160, 44),
    RGBColor(148, 103, 189),
    RGBColor(255, 127, 14),
    RGBColor(23, 190, 207),
];

/// Soup fronts, clean vs robust accuracy (%): one line of means per row, each point with its
/// 95% interval across seeds as a cross of bars (none with one seed), as an SVG document.
///
/// # Errors
/// [`ReportError::Plot`] when plotters cannot draw (e.g. no points).
pub fn soup_fronts(fronts: &[FrontSeries], title: &str) -> Result<String, ReportError> {
    let err = plot_err("soup fronts");
    let all: Vec<&FrontBar> = fronts.iter().flat_map(|f| &f.points).collect();
    if all.is_empty() {
        return Err(err("no front has points".into()));
    }
    let ends = |i: &Interval| {
        let (lo, hi) = i.bounds().unwrap_or((i.mean, i.mean));
        [100.0 * lo, 100.0 * hi]
    };
    let x = range(all.iter().flat_map(|p| ends(&p.robust)), 1.0);
    let y = range(all.iter().flat_map(|p| ends(&p.clean)), 1.0);
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (760, 520)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| err(e.to_string()))?;
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 16))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(56)
            .build_cartesian_2d(x, y)
            .map_err(|e| err(e.to_string()))?;
        chart
            .configure_mesh()
            .x_desc("robust accuracy % (each line: soups from β = 0, robust mode, to β = 1, clean mode)")
            .y_desc("clean accuracy %")
            .draw()
            .map_err(|e| err(e.to_string()))?;
        for (k, f) in fronts.iter().enumerate() {
            let c = PALETTE[k % PALETTE.len()];
            let mean = |p: &FrontBar| (100.0 * p.robust.mean, 100.0 * p.clean.mean);
            chart
                .draw_series(LineSeries::new(f.points.iter().map(mean), c))
                .map_err(|e| err(e.to_string()))?
                .label(f.name.as_str())
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], c));
            for p in &f.points {
                let (mx, my) = mean(p);
                let mut bars = vec![];
                if let Some((lo, hi)) = p.robust.bounds() {
                    bars.push(PathElement::new(
                        vec![(100.0 * lo, my), (100.0 * hi, my)],
                        c,
                    ));
                }
                if let Some((lo, hi)) = p.clean.bounds() {
                    bars.push(PathElement::new(
                        vec![(mx, 100.0 * lo), (mx, 100.0 * hi)],
                        c,
                    ));
                }
                chart.draw_series(bars).map_err(|e| err(e.to_string()))?;
                chart
                    .draw_series([Circle::new((mx, my), 3, c.filled())])
                    .map_err(|e| err(e.to_string()))?;
            }
        }
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .draw()
            .map_err(|e| err(e.to_string()))?;
        root.present().map_err(|e| err(e.to_string()))?;
    }
    Ok(svg)
}
