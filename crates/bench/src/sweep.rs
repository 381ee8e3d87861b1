//! Results of an adversarial-soup sweep over β and of a β selection under a distribution shift:
//! the records, their CSV/JSON/markdown forms and the SVG plots (plotters).
//!
//! Nothing here evaluates a model: the cli runs the evaluations and fills these records.

use std::path::{Path, PathBuf};

use advsoup_attacks::{Evaluator, ThreatModel};
use plotters::prelude::*;
use serde::{Deserialize, Serialize};

use crate::report::Recipe;

/// Errors writing sweep artefacts.
#[derive(Debug, thiserror::Error)]
pub enum SweepError {
    /// A file could not be written.
    #[error("cannot write {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A plot could not be drawn.
    #[error("cannot draw {path}: {message}")]
    Plot {
        /// The SVG file.
        path: PathBuf,
        /// plotters' message.
        message: String,
    },
}

/// Parses a list of soup weights: `a:b:step` (inclusive of `b` when it falls on the grid, e.g.
/// `0:1:0.1` is 11 values) or a comma list `0,0.5,1`. Every β must lie in [0, 1]; values are
/// rounded to 6 decimals so that grid points are exact (`0.3`, not `0.30000001`).
///
/// # Errors
/// A lowercase message naming what was expected.
pub fn parse_betas(s: &str) -> Result<Vec<f32>, String> {
    let bad = |why: &str| format!("betas `{s}`: {why}");
    let num = |t: &str| -> Result<f64, String> {
        t.trim()
            .parse::<f64>()
            .ok()
            .filter(|v| v.is_finite())
            .ok_or_else(|| bad(&format!("`{}` is not a number", t.trim())))
    };
    let round = |v: f64| ((v * 1e6).round() / 1e6) as f32;
    let values: Vec<f32> = if s.contains(':') {
        let parts: Vec<&str> = s.split(':').collect();
        if parts.len() != 3 {
            return Err(bad("expected start:end:step, e.g. 0:1:0.1"));
        }
        let (a, b, step) = (num(parts[0])?, num(parts[1])?, num(parts[2])?);
        if step <= 0.0 {
            return Err(bad("step must be positive"));
        }
        if b < a {
            return Err(bad("end must not be below start"));
        }
        let n = ((b - a) / step + 1e-6).floor() as usize;
        if n > 10_000 {
            return Err(bad("more than 10000 values"));
        }
        (0..=n).map(|i| round(a + i as f64 * step)).collect()
    } else {
        s.split(',')
            .filter(|t| !t.trim().is_empty())
            .map(|t| num(t).map(round))
            .collect::<Result<_, _>>()?
    };
    if values.is_empty() {
        return Err(bad("no values"));
    }
    if let Some(v) = values.iter().find(|v| !(0.0..=1.0).contains(*v)) {
        return Err(bad(&format!("{v} is outside [0, 1]")));
    }
    Ok(values)
}

/// An accuracy under a name (an attack or a shift).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NamedAcc {
    /// The attack or shift.
    pub name: String,
    /// Top-1 accuracy in [0, 1].
    pub acc: f64,
}

/// One soup evaluated as a model in its own right.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SoupRow {
    /// Weight of φ_clean.
    pub beta: f32,
    /// Clean accuracy on the first `n_clean` test images.
    pub clean_acc: f64,
    /// Robust accuracy, per sample worst case over all attacks, on the first `n_robust`.
    pub robust_acc: f64,
    /// Robust accuracy under each attack alone.
    pub attacks: Vec<NamedAcc>,
    /// Accuracy on each generated shift (corruption at the sweep's severity).
    pub shifts: Vec<NamedAcc>,
    /// Per-sample forward passes spent on the robust evaluation.
    pub forward_passes: u64,
    /// How to regenerate this soup.
    pub recipe: Recipe,
}

/// One attack preset of a sweep with its exact configuration.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SweepAttack {
    /// The preset name (`pgd-10`, `apgd-ce`).
    pub name: String,
    /// The evaluator run under that name.
    pub evaluator: Evaluator,
}

/// A whole sweep: what was evaluated, how, and one row per β.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SoupSweep {
    /// The model (run name).
    pub model: String,
    /// Dataset and split the numbers are on.
    pub dataset: String,
    /// SHA-256 of the model's parameters.
    pub model_sha256: String,
    /// SHA-256 of the adapter parameters (both domains): the soup's ingredients.
    pub adapter_sha256: String,
    /// Threat model.
    pub threat_model: ThreatModel,
    /// Radius.
    pub eps: f64,
    /// Seed of the attacks and of the corruptions.
    pub seed: u64,
    /// Test images for clean accuracy.
    pub n_clean: usize,
    /// Test images attacked.
    pub n_robust: usize,
    /// Test images per shift.
    pub n_shift: usize,
    /// Corruption severity (1..=5).
    pub severity: u8,
    /// The attacks, each run separately on the same images.
    pub attacks: Vec<SweepAttack>,
    /// One row per β, in the order asked.
    pub rows: Vec<SoupRow>,
    /// Wall-clock seconds of the whole sweep.
    pub wall_seconds: f64,
}

impl SoupSweep {
    /// Column names of [`SoupSweep::to_csv`].
    pub fn csv_header(&self) -> Vec<String> {
        let mut h = vec![
            "beta".to_string(),
            "clean_acc".to_string(),
            "robust_acc".to_string(),
        ];
        if let Some(r) = self.rows.first() {
            h.extend(r.attacks.iter().map(|a| format!("robust_{}", a.name)));
            h.extend(r.shifts.iter().map(|s| format!("shift_{}", s.name)));
        }
        h.push("forward_passes".to_string());
        h
    }

    /// One line per β: `beta,clean_acc,robust_acc,robust_<attack>...,shift_<name>...,forward_passes`.
    pub fn to_csv(&self) -> String {
        let mut s = self.csv_header().join(",");
        s.push('\n');
        for r in &self.rows {
            let mut cells = vec![
                format!("{}", r.beta),
                format!("{:.6}", r.clean_acc),
                format!("{:.6}", r.robust_acc),
            ];
            cells.extend(r.attacks.iter().map(|a| format!("{:.6}", a.acc)));
            cells.extend(r.shifts.iter().map(|a| format!("{:.6}", a.acc)));
            cells.push(r.forward_passes.to_string());
            s.push_str(&cells.join(","));
            s.push('\n');
        }
        s
    }

    /// A markdown table (percentages), one row per β; shifts are averaged into `shift mean`
    /// when there are more than four of them.
    pub fn table(&self) -> String {
        let Some(first) = self.rows.first() else {
            return String::from("(no rows)\n");
        };
        let many = first.shifts.len() > 4;
        let mut head = vec!["β", "clean", "robust"]
            .into_iter()
            .map(String::from)
            .collect::<Vec<_>>();
        head.extend(first.attacks.iter().map(|a| a.name.clone()));
        if many {
            head.push(format!("shift mean ({})", first.shifts.len()));
        } else {
            head.extend(first.shifts.iter().map(|a| a.name.clone()));
        }
        let mut s = format!("| {} |\n|{}\n", head.join(" | "), "---|".repeat(head.len()));
        for r in &self.rows {
            let mut cells = vec![
                format!("{:.2}", r.beta),
                pct(r.clean_acc),
                pct(r.robust_acc),
            ];
            cells.extend(r.attacks.iter().map(|a| pct(a.acc)));
            if many {
                let mean = r.shifts.iter().map(|a| a.acc).sum::<f64>() / r.shifts.len() as f64;
                cells.push(pct(mean));
            } else {
                cells.extend(r.shifts.iter().map(|a| pct(a.acc)));
            }
            s.push_str(&format!("| {} |\n", cells.join(" | ")));
        }
        s
    }

    /// Writes `soup.csv`, `soup.json`, `front.svg` and `shifts.svg` into `dir` (created).
    ///
    /// # Errors
    /// When a file cannot be written or a plot cannot be drawn.
    pub fn write(&self, dir: &Path) -> Result<Vec<PathBuf>, SweepError> {
        create_dir(dir)?;
        let csv = dir.join("soup.csv");
        write(&csv, self.to_csv().as_bytes())?;
        let json = dir.join("soup.json");
        write(
            &json,
            serde_json::to_string_pretty(self)
                .expect("a sweep always serializes")
                .as_bytes(),
        )?;
        let front = dir.join("front.svg");
        self.plot_front(&front)?;
        let shifts = dir.join("shifts.svg");
        self.plot_shifts(&shifts)?;
        Ok(vec![csv, json, front, shifts])
    }

    /// The clean-vs-robust front: one point per β, labelled with β.
    ///
    /// # Errors
    /// When the SVG cannot be drawn or written.
    pub fn plot_front(&self, path: &Path) -> Result<(), SweepError> {
        let err = |e: String| SweepError::Plot {
            path: path.to_owned(),
            message: e,
        };
        let pts: Vec<(f64, f64, f32)> = self
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
                    self.model, self.eps
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
            .x_desc(format!("robust accuracy % (n={})", self.n_robust))
            .y_desc(format!("clean accuracy % (n={})", self.n_clean))
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
    pub fn plot_shifts(&self, path: &Path) -> Result<(), SweepError> {
        let err = |e: String| SweepError::Plot {
            path: path.to_owned(),
            message: e,
        };
        let mut series: Vec<(String, Vec<(f64, f64)>)> = vec![
            (
                "clean".into(),
                self.rows
                    .iter()
                    .map(|r| (r.beta as f64, 100.0 * r.clean_acc))
                    .collect(),
            ),
            (
                "robust".into(),
                self.rows
                    .iter()
                    .map(|r| (r.beta as f64, 100.0 * r.robust_acc))
                    .collect(),
            ),
        ];
        if let Some(first) = self.rows.first() {
            for (k, s) in first.shifts.iter().enumerate() {
                series.push((
                    s.name.clone(),
                    self.rows
                        .iter()
                        .filter_map(|r| r.shifts.get(k).map(|a| (r.beta as f64, 100.0 * a.acc)))
                        .collect(),
                ));
            }
        }
        let (x0, x1) = padded_range(self.rows.iter().map(|r| r.beta as f64));
        let (y0, y1) = padded_range(series.iter().flat_map(|s| s.1.iter().map(|p| p.1)));
        let root = SVGBackend::new(path, (860, 560)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| err(e.to_string()))?;
        let mut chart = ChartBuilder::on(&root)
            .caption(
                format!(
                    "{}: accuracy vs soup weight β (shifts at severity {})",
                    self.model, self.severity
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
) -> Result<(), SweepError> {
    let err = |e: String| SweepError::Plot {
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

/// β chosen on the held-out split of a shifted set, and test accuracy there and at the
/// endpoints.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SelectReport {
    /// The model (run name).
    pub model: String,
    /// The shift (`contrast:3`).
    pub shift: String,
    /// Seed of the corruption draws.
    pub seed: u64,
    /// Held-out images used for choosing (corrupted).
    pub n_held_out: usize,
    /// Test images reported on (corrupted).
    pub n_test: usize,
    /// The candidate weights.
    pub betas: Vec<f32>,
    /// Held-out accuracy at each candidate (what β is chosen by).
    pub held_out_acc: Vec<f64>,
    /// The chosen β (best held-out accuracy; the first on ties).
    pub chosen_beta: f32,
    /// Test accuracy at the chosen β.
    pub test_acc_chosen: f64,
    /// Test accuracy at β = 0 (robust mode).
    pub test_acc_robust_mode: f64,
    /// Test accuracy at β = 1 (clean mode).
    pub test_acc_clean_mode: f64,
    /// Whether the chosen β is strictly better on test than both endpoints.
    pub beats_both_endpoints: bool,
    /// Test accuracy at every candidate: for information only, never used for choosing.
    pub test_acc_all: Vec<f64>,
    /// How to regenerate the chosen soup.
    pub recipe: Recipe,
}

impl SelectReport {
    /// One line of text.
    pub fn line(&self) -> String {
        format!(
            "{}: chosen β={} (held-out {:.2}%)  test: chosen {:.2}%  β=0 {:.2}%  β=1 {:.2}%  beats both: {}",
            self.shift,
            self.chosen_beta,
            100.0
                * self
                    .betas
                    .iter()
                    .position(|b| *b == self.chosen_beta)
                    .map(|i| self.held_out_acc[i])
                    .unwrap_or(f64::NAN),
            100.0 * self.test_acc_chosen,
            100.0 * self.test_acc_robust_mode,
            100.0 * self.test_acc_clean_mode,
            if self.beats_both_endpoints {
                "yes"
            } else {
                "no"
            },
        )
    }
}

/// Index of the best score, the first one on ties; `None` when empty or all NaN.
pub fn argmax_first(scores: &[f64]) -> Option<usize> {
    let mut best: Option<usize> = None;
    for (i, s) in scores.iter().enumerate() {
        if s.is_nan() {
            continue;
        }
        if best.is_none_or(|b| *s > scores[b]) {
            best = Some(i);
        }
    }
    best
}

fn pct(v: f64) -> String {
    format!("{:.2}", 100.0 * v)
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

fn create_dir(dir: &Path) -> Result<(), SweepError> {
    std::fs::create_dir_all(dir).map_err(|source| SweepError::Io {
        path: dir.to_owned(),
        source,
    })
}

/// Writes `bytes` to `path` (temporary file then rename, so readers never see half a file).
///
/// # Errors
/// When the file cannot be written.
pub fn write(path: &Path, bytes: &[u8]) -> Result<(), SweepError> {
    let io = |source| SweepError::Io {
        path: path.to_owned(),
        source,
    };
    let tmp = path.with_extension("tmp~");
    std::fs::write(&tmp, bytes).map_err(io)?;
    std::fs::rename(&tmp, path).map_err(io)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn betas_from_a_range_are_inclusive_and_exact() {
        let b = parse_betas("0:1:0.1").expect("range");
        assert_eq!(b.len(), 11);
        assert_eq!(b[0], 0.0);
        assert_eq!(b[3], 0.3);
        assert_eq!(b[10], 1.0);
        assert_eq!(
            parse_betas("0.2:0.5:0.15").expect("range"),
            vec![0.2, 0.35, 0.5]
        );
        assert_eq!(
            parse_betas("0:1:0.3").expect("range"),
            vec![0.0, 0.3, 0.6, 0.9]
        );
        assert_eq!(parse_betas("1,0.5, 0").expect("list"), vec![1.0, 0.5, 0.0]);
        assert_eq!(parse_betas("0.7").expect("one"), vec![0.7]);
    }

    #[test]
    fn bad_betas_are_rejected() {
        for s in [
            "", "0:1", "0:1:0", "0:1:-0.1", "1:0:0.1", "0:2:0.5", "a,b", "-0.1", "0:1:x",
        ] {
            assert!(parse_betas(s).is_err(), "{s:?} accepted");
        }
        let e = parse_betas("0,1.5").expect_err("out of range");
        assert!(e.contains("1.5 is outside [0, 1]"), "{e}");
    }

    fn sweep() -> SoupSweep {
        let recipe = |beta| Recipe {
            adapter_sha256: "ab".into(),
            model_sha256: "cd".into(),
            beta,
        };
        let row = |beta: f32, c: f64, r: f64| SoupRow {
            beta,
            clean_acc: c,
            robust_acc: r,
            attacks: vec![
                NamedAcc {
                    name: "pgd-10".into(),
                    acc: r + 0.01,
                },
                NamedAcc {
                    name: "apgd-ce".into(),
                    acc: r,
                },
            ],
            shifts: vec![NamedAcc {
                name: "contrast".into(),
                acc: 0.5 * c,
            }],
            forward_passes: 1234,
            recipe: recipe(beta),
        };
        SoupSweep {
            model: "m".into(),
            dataset: "d/test".into(),
            model_sha256: "cd".into(),
            adapter_sha256: "ab".into(),
            threat_model: ThreatModel::Linf,
            eps: 0.1,
            seed: 0,
            n_clean: 10,
            n_robust: 5,
            n_shift: 10,
            severity: 3,
            attacks: vec![],
            rows: vec![row(0.0, 0.8, 0.6), row(0.5, 0.85, 0.5), row(1.0, 0.9, 0.1)],
            wall_seconds: 1.0,
        }
    }

    #[test]
    fn csv_has_a_header_and_one_line_per_beta() {
        let s = sweep();
        let csv = s.to_csv();
        let lines: Vec<&str> = csv.lines().collect();
        assert_eq!(
            lines[0],
            "beta,clean_acc,robust_acc,robust_pgd-10,robust_apgd-ce,shift_contrast,forward_passes"
        );
        assert_eq!(lines.len(), 4);
        assert_eq!(
            lines[2],
            "0.5,0.850000,0.500000,0.510000,0.500000,0.425000,1234"
        );
        for l in &lines {
            assert_eq!(l.split(',').count(), 7, "{l}");
        }
        let t = s.table();
        assert!(
            t.contains("| 1.00 | 90.00 | 10.00 | 11.00 | 10.00 | 45.00 |"),
            "{t}"
        );
    }

    #[test]
    fn write_produces_parsable_files_and_svgs() {
        let dir = tempfile::tempdir().expect("tempdir");
        let s = sweep();
        let files = s.write(&dir.path().join("soup")).expect("write");
        assert_eq!(files.len(), 4);
        let back: SoupSweep = serde_json::from_str(
            &std::fs::read_to_string(dir.path().join("soup/soup.json")).expect("json"),
        )
        .expect("parse");
        assert_eq!(back, s);
        let svg = std::fs::read_to_string(dir.path().join("soup/front.svg")).expect("svg");
        assert!(svg.starts_with("<svg"), "{}", &svg[..svg.len().min(80)]);
        assert!(svg.contains("β=0.5"), "front lacks β labels");
        let svg = std::fs::read_to_string(dir.path().join("soup/shifts.svg")).expect("svg");
        assert!(svg.contains("contrast"));
    }

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

    #[test]
    fn argmax_takes_the_first_best() {
        assert_eq!(argmax_first(&[0.1, 0.3, 0.3, 0.2]), Some(1));
        assert_eq!(argmax_first(&[f64::NAN, 0.1]), Some(1));
        assert_eq!(argmax_first(&[]), None);
    }
}
