//! SVG plots of sweeps (plotters): the clean-vs-robust front of one sweep (`front.svg`),
//! accuracy along β per shift (`shifts.svg`), and the fronts of several sweeps in one figure.
//!
//! Plots only draw records; they never evaluate a model.

use std::path::Path;

use plotters::prelude::*;

use crate::SoupError;
use crate::records::{SoupSweep, create_dir, write};

/// The clean-vs-robust front: one point per β, labelled with β.
///
/// # Errors
/// When the SVG cannot be drawn or written.
pub fn plot_front(sweep: &SoupSweep, path: &Path) -> Result<(), SoupError> {
    let err = |e: String| SoupError::Plot {
        path: path.to_owned(),
        message: e,
    };
    let pts: Vec<(f64, f64, f32)> = sweep
        .rows
        .iter()
        .map(|r| (100.0 * r.robust_acc, 100.0 * r.clean_acc, r.beta))
        .collect();
    let (x0, x1) = padded_range(pts.iter().map(|p| p.0));
    let (y0, y1) = padded_range(pts.iter().map(|p| p.1));
    let root = SVGBackend::new(path, (720, 540)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(e.to_string()))?;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            format!(
                "{}: adversarial soups, clean vs robust (eps {})",
                sweep.model, sweep.eps
            ),
            ("sans-serif", 18),
        )
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(50)
        .build_cartesian_2d(x0..x1, y0..y1)
        .map_err(|e| err(e.to_string()))?;
    chart
        .configure_mesh()
        .x_desc(format!("robust accuracy % (n={})", sweep.n_robust))
        .y_desc(format!("clean accuracy % (n={})", sweep.n_clean))
        .draw()
        .map_err(|e| err(e.to_string()))?;
    chart
        .draw_series(LineSeries::new(pts.iter().map(|p| (p.0, p.1)), &BLUE))
        .map_err(|e| err(e.to_string()))?;
    chart
        .draw_series(pts.iter().map(|&(x, y, b)| {
            EmptyElement::at((x, y))
                + Circle::new((0, 0), 4, BLUE.filled())
                + Text::new(format!("β={b}"), (6, -14), ("sans-serif", 12))
        }))
        .map_err(|e| err(e.to_string()))?;
    root.present().map_err(|e| err(e.to_string()))
}

/// Accuracy vs β: clean, robust and one line per shift.
///
/// # Errors
/// When the SVG cannot be drawn or written.
pub fn plot_shifts(sweep: &SoupSweep, path: &Path) -> Result<(), SoupError> {
    let err = |e: String| SoupError::Plot {
        path: path.to_owned(),
        message: e,
    };
    let mut series: Vec<(String, Vec<(f64, f64)>)> = vec![
        (
            "clean".into(),
            sweep
                .rows
                .iter()
                .map(|r| (r.beta as f64, 100.0 * r.clean_acc))
                .collect(),
        ),
        (
            "robust".into(),
            sweep
                .rows
                .iter()
                .map(|r| (r.beta as f64, 100.0 * r.robust_acc))
                .collect(),
        ),
    ];
    if let Some(first) = sweep.rows.first() {
        for (k, s) in first.shifts.iter().enumerate() {
            series.push((
                s.name.clone(),
                sweep
                    .rows
                    .iter()
                    .filter_map(|r| r.shifts.get(k).map(|a| (r.beta as f64, 100.0 * a.acc)))
                    .collect(),
            ));
        }
    }
    let (x0, x1) = padded_range(sweep.rows.iter().map(|r| r.beta as f64));
    let (y0, y1) = padded_range(series.iter().flat_map(|s| s.1.iter().map(|p| p.1)));
    let root = SVGBackend::new(path, (860, 560)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(e.to_string()))?;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            format!(
                "{}: accuracy vs soup weight β (shifts at severity {})",
                sweep.model, sweep.severity
            ),
            ("sans-serif", 18),
        )
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(50)
        .build_cartesian_2d(x0..x1, y0..y1)
        .map_err(|e| err(e.to_string()))?;
    chart
        .configure_mesh()
        .x_desc("β (weight of the clean adapter)")
        .y_desc("accuracy %")
        .draw()
        .map_err(|e| err(e.to_string()))?;
    for (i, (name, pts)) in series.iter().enumerate() {
        let color = Palette99::pick(i).to_rgba();
        let width = if i < 2 { 3 } else { 1 };
        chart
            .draw_series(LineSeries::new(
                pts.iter().copied(),
                color.stroke_width(width),
            ))
            .map_err(|e| err(e.to_string()))?
            .label(name.clone())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], color));
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .position(SeriesLabelPosition::UpperRight)
        .draw()
        .map_err(|e| err(e.to_string()))?;
    root.present().map_err(|e| err(e.to_string()))
}

/// Draws the clean/robust fronts of several sweeps in one SVG (one colour per sweep, β
/// labelled at both ends and in the middle) and writes it atomically to `path`. `label` names
/// each sweep in the legend (e.g. the adapter).
///
/// # Errors
/// When there is nothing to draw or the SVG cannot be drawn or written.
pub fn plot_fronts(
    sweeps: &[(String, SoupSweep)],
    title: &str,
    path: &Path,
) -> Result<(), SoupError> {
    let err = |e: String| SoupError::Plot {
        path: path.to_owned(),
        message: e,
    };
    if sweeps.iter().all(|(_, s)| s.rows.is_empty()) {
        return Err(err("no sweep rows to draw".into()));
    }
    let all = || sweeps.iter().flat_map(|(_, s)| s.rows.iter());
    let (x0, x1) = padded_range(all().map(|r| 100.0 * r.robust_acc));
    let (y0, y1) = padded_range(all().map(|r| 100.0 * r.clean_acc));
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (860, 600)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| err(e.to_string()))?;
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 18))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(50)
            .build_cartesian_2d(x0..x1, y0..y1)
            .map_err(|e| err(e.to_string()))?;
        chart
            .configure_mesh()
            .x_desc("robust accuracy %")
            .y_desc("clean accuracy %")
            .draw()
            .map_err(|e| err(e.to_string()))?;
        for (i, (label, sweep)) in sweeps.iter().enumerate() {
            let color = Palette99::pick(i).to_rgba();
            let pts: Vec<(f64, f64, f32)> = sweep
                .rows
                .iter()
                .map(|r| (100.0 * r.robust_acc, 100.0 * r.clean_acc, r.beta))
                .collect();
            chart
                .draw_series(LineSeries::new(
                    pts.iter().map(|p| (p.0, p.1)),
                    color.stroke_width(2),
                ))
                .map_err(|e| err(e.to_string()))?
                .label(label.clone())
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], color));
            let last = pts.len().saturating_sub(1);
            chart
                .draw_series(pts.iter().enumerate().map(|(k, &(x, y, b))| {
                    let text = if k == 0 || k == last || k == last / 2 {
                        format!("β={b}")
                    } else {
                        String::new()
                    };
                    EmptyElement::at((x, y))
                        + Circle::new((0, 0), 3, color.filled())
                        + Text::new(text, (5, -12), ("sans-serif", 11))
                }))
                .map_err(|e| err(e.to_string()))?;
        }
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .position(SeriesLabelPosition::LowerLeft)
            .draw()
            .map_err(|e| err(e.to_string()))?;
        root.present().map_err(|e| err(e.to_string()))?;
    }
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        create_dir(dir)?;
    }
    write(path, svg.as_bytes())
}

fn padded_range(values: impl Iterator<Item = f64>) -> (f64, f64) {
    let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
    for v in values.filter(|v| v.is_finite()) {
        lo = lo.min(v);
        hi = hi.max(v);
    }
    if !lo.is_finite() {
        return (0.0, 1.0);
    }
    let pad = ((hi - lo) * 0.08).max(0.5 * (hi.abs().max(1.0)) * 0.01);
    (lo - pad, hi + pad)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::records::tests::sweep;

    #[test]
    fn fronts_of_several_sweeps_share_one_svg() {
        let dir = tempfile::tempdir().expect("tempdir");
        let a = sweep();
        let mut b = sweep();
        for r in &mut b.rows {
            r.clean_acc *= 0.9;
        }
        let path = dir.path().join("fronts.svg");
        plot_fronts(
            &[("cls_token".into(), a), ("bias".into(), b)],
            "fronts",
            &path,
        )
        .expect("plot");
        let svg = std::fs::read_to_string(&path).expect("svg");
        assert!(svg.starts_with("<svg"));
        assert!(svg.contains("cls_token") && svg.contains("bias"), "legend");
        assert!(svg.contains("β=0.5"), "β labels");
        assert!(plot_fronts(&[], "empty", &dir.path().join("e.svg")).is_err());
        assert!(!dir.path().join("e.svg").exists());
    }
}
