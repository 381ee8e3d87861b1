//! Hand-made records for tests, here once for every suite that needs them (feature
//! `test-support`): an adapter-sweep row and a three-beta soup sweep.

use std::path::PathBuf;

use crate::adapter_sweep::{FrontPoint, RowResult, ShiftSoupResult};
use crate::soup::{NamedAcc, Recipe, SoupRow, SoupSweep, ThreatModel};

/// An adapter-sweep row named `name` (its regime and adapter follow from the name) with the
/// given clean, PGD-20 and APGD-CE accuracies and domain-specific parameter count, seed 0; its
/// soup front runs from (clean − 0.1, apgd) at β = 0 to (clean, apgd − 0.3) at β = 1.
pub fn row(name: &str, clean: f64, robust: f64, apgd: f64, params: usize) -> RowResult {
    RowResult {
        name: name.into(),
        seed: 0,
        label: name.into(),
        regime: if ["nominal", "adversarial"].contains(&name) {
            name.into()
        } else {
            "co_training".into()
        },
        adapter: name.into(),
        has_adapter: !["nominal", "adversarial", "none"].contains(&name),
        params_per_domain: params,
        total_params: 1000,
        clean_acc: clean,
        n_clean: 10_000,
        robust_acc_pgd20: robust,
        n_robust_pgd20: 1000,
        final_attack: "pgd-20".into(),
        robust_acc_apgd_ce: apgd,
        n_robust_apgd: 500,
        mean_corruption_acc: 0.6,
        mean_soup_acc: 0.65,
        soup_beats_both: 1,
        shifts: vec![ShiftSoupResult {
            shift: "contrast:3".into(),
            chosen_beta: 0.5,
            soup_acc: 0.65,
            clean_mode_acc: 0.6,
            robust_mode_acc: 0.5,
            n_test: 1000,
        }],
        front: vec![
            FrontPoint {
                beta: 0.0,
                clean_acc: clean - 0.1,
                robust_acc: apgd,
            },
            FrontPoint {
                beta: 1.0,
                clean_acc: clean,
                robust_acc: apgd - 0.3,
            },
        ],
        standard: None,
        train_seconds: 10.0,
        sweep_seconds: 1.0,
        run_dir: PathBuf::from("r"),
        soup_json: PathBuf::from("r/soup/soup.json"),
    }
}

/// A three-row soup sweep (beta 0, 0.5, 1) with no attack configs and no model.
pub fn soup_sweep<E>() -> SoupSweep<E> {
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
