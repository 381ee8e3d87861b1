//! Per-shift β selection: choose the soup weight by accuracy on the corrupted held-out split,
//! then report corrupted-test accuracy at the chosen β and at both ends (β = 0, the robust
//! mode; β = 1, the clean mode).
//!
//! The test split plays no part in the choice: it is evaluated only after β is fixed, and its
//! accuracies at the other candidates are recorded for information only.

use advsoup_adapters::{AdaptedVit, Mode, Route};
use advsoup_data::ImageDataset;
use advsoup_data::corrupt::{Corruption, corrupt_dataset};
use advsoup_eval::accuracy;
use advsoup_eval::report::ModelHashes;
use burn::prelude::Backend;

use crate::SoupError;
pub use crate::records::argmax_first;
use crate::records::{Recipe, SelectReport};
use crate::sweep::first_n;

/// Options of a β selection.
#[derive(Debug, Clone)]
pub struct SelectOptions {
    /// Candidate weights.
    pub betas: Vec<f32>,
    /// The shift.
    pub corruption: Corruption,
    /// Its severity.
    pub severity: u8,
    /// Held-out images to choose on.
    pub n_held_out: usize,
    /// Test images to report on.
    pub n_test: usize,
    /// Corruption seed.
    pub seed: u64,
    /// Evaluation batch size.
    pub batch_size: usize,
    /// Threads for generating corruptions.
    pub threads: usize,
}

/// Chooses β by accuracy on the corrupted held-out split (first best on ties, see
/// [`argmax_first`]) and reports corrupted-test accuracy at that β and at β = 0 and β = 1.
/// The test split plays no part in the choice.
///
/// # Errors
/// No candidate, an empty split, a corruption that cannot be generated, or no finite held-out
/// accuracy.
pub fn select<B: Backend>(
    model: &AdaptedVit<B>,
    name: &str,
    held_out: &ImageDataset,
    test: &ImageDataset,
    opts: &SelectOptions,
    device: &B::Device,
) -> Result<SelectReport, SoupError> {
    if opts.betas.is_empty() {
        return Err(SoupError::Empty("no candidate β"));
    }
    let held = first_n(held_out, opts.n_held_out);
    let test = first_n(test, opts.n_test);
    if held.num_samples() == 0 || test.num_samples() == 0 {
        return Err(SoupError::Empty(
            "the held-out and test splits must not be empty",
        ));
    }
    let corrupt = |d: &ImageDataset| {
        corrupt_dataset(d, opts.corruption, opts.severity, opts.seed, opts.threads).map_err(
            |source| SoupError::Corrupt {
                context: format!("corrupting with {}", opts.corruption),
                source,
            },
        )
    };
    let held = corrupt(&held)?;
    let test = corrupt(&test)?;
    let acc = |d: &ImageDataset, beta: f32| {
        accuracy(
            model,
            d,
            &Route::mode(Mode::Soup(beta)),
            opts.batch_size,
            device,
        )
    };
    let held_out_acc: Vec<f64> = opts
        .betas
        .iter()
        .map(|&b| acc(&held, b))
        .collect::<Result<_, _>>()?;
    let best =
        argmax_first(&held_out_acc).ok_or(SoupError::Empty("no finite held-out accuracy"))?;
    let chosen_beta = opts.betas[best];
    let test_acc_all: Vec<f64> = opts
        .betas
        .iter()
        .map(|&b| acc(&test, b))
        .collect::<Result<_, _>>()?;
    let at = |beta: f32| match opts.betas.iter().position(|b| *b == beta) {
        Some(i) => Ok(test_acc_all[i]),
        None => acc(&test, beta),
    };
    let (chosen, robust_mode, clean_mode) = (at(chosen_beta)?, at(0.0)?, at(1.0)?);
    let hashes = ModelHashes::of(model);
    Ok(SelectReport {
        model: name.to_string(),
        shift: format!("{}:{}", opts.corruption.name(), opts.severity),
        seed: opts.seed,
        n_held_out: held.num_samples(),
        n_test: test.num_samples(),
        betas: opts.betas.clone(),
        held_out_acc,
        chosen_beta,
        test_acc_chosen: chosen,
        test_acc_robust_mode: robust_mode,
        test_acc_clean_mode: clean_mode,
        beats_both_endpoints: chosen > robust_mode && chosen > clean_mode,
        test_acc_all,
        recipe: Recipe {
            adapter_sha256: hashes.adapter_sha256,
            model_sha256: hashes.model_sha256,
            beta: chosen_beta,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{tiny_data, tiny_model};
    use burn::backend::Flex;

    #[test]
    fn argmax_takes_the_first_best() {
        assert_eq!(argmax_first(&[0.1, 0.3, 0.3, 0.2]), Some(1));
        assert_eq!(argmax_first(&[f64::NAN, 0.1]), Some(1));
        assert_eq!(argmax_first(&[]), None);
    }

    #[test]
    fn select_chooses_on_held_out_and_reports_endpoints() {
        let device = Default::default();
        let model = tiny_model(&device);
        let held = tiny_data(10, 2);
        let test = tiny_data(10, 3);
        let opts = SelectOptions {
            betas: vec![0.0, 0.5, 1.0],
            corruption: Corruption::Contrast,
            severity: 3,
            n_held_out: usize::MAX,
            n_test: 8,
            seed: 0,
            batch_size: 4,
            threads: 1,
        };
        let r = select::<Flex>(&model, "tiny", &held, &test, &opts, &device).expect("select");
        assert_eq!((r.n_held_out, r.n_test), (10, 8));
        assert_eq!(r.held_out_acc.len(), 3);
        let best = r.held_out_acc.iter().cloned().fold(f64::MIN, f64::max);
        let i = r
            .betas
            .iter()
            .position(|b| *b == r.chosen_beta)
            .expect("chosen");
        assert_eq!(r.held_out_acc[i], best);
        assert_eq!(r.test_acc_robust_mode, r.test_acc_all[0]);
        assert_eq!(r.test_acc_clean_mode, r.test_acc_all[2]);
        let shifted =
            corrupt_dataset(&first_n(&test, 8), Corruption::Contrast, 3, 0, 1).expect("c");
        let direct =
            accuracy(&model, &shifted, &Route::mode(Mode::Clean), 4, &device).expect("acc");
        assert_eq!(r.test_acc_clean_mode, direct);
        assert_eq!(
            r.beats_both_endpoints,
            r.test_acc_chosen > r.test_acc_robust_mode && r.test_acc_chosen > r.test_acc_clean_mode
        );
    }

    #[test]
    fn the_choice_ignores_the_test_split() {
        // Same held-out data, two different test sets: the same β is chosen.
        let device = Default::default();
        let model = tiny_model(&device);
        let held = tiny_data(10, 2);
        let opts = SelectOptions {
            betas: vec![0.0, 0.25, 0.5, 0.75, 1.0],
            corruption: Corruption::GaussianNoise,
            severity: 2,
            n_held_out: usize::MAX,
            n_test: usize::MAX,
            seed: 1,
            batch_size: 4,
            threads: 1,
        };
        let a = select::<Flex>(&model, "tiny", &held, &tiny_data(6, 5), &opts, &device)
            .expect("select");
        let b = select::<Flex>(&model, "tiny", &held, &tiny_data(9, 6), &opts, &device)
            .expect("select");
        assert_eq!(a.chosen_beta, b.chosen_beta);
        assert_eq!(a.held_out_acc, b.held_out_acc);
        assert!(select::<Flex>(&model, "tiny", &held, &tiny_data(0, 5), &opts, &device).is_err());
    }
}
