//! The β sweep: every soup φ(β) of an adapted model evaluated as a model in its own right —
//! clean accuracy, robust accuracy under each attack preset attacking the soup directly, and
//! accuracy under generated corruptions — with one report card per β, resumable per β.
//!
//! Every number here is on the test split: a sweep reports, it never chooses (see
//! [`crate::select()`] for choosing β on held-out data).

use std::path::{Path, PathBuf};
use std::time::Instant;

use advsoup_adapters::{AdaptedVit, Mode, Route};
use advsoup_data::ImageDataset;
use advsoup_data::corrupt::{Corruption, corrupt_dataset};
use advsoup_eval::Resumable;
use advsoup_eval::report::{CardSubject, ModelHashes, ReportCard};
use advsoup_eval::{EvalJob, accuracy};
use burn::prelude::Backend;
use burn::tensor::backend::AutodiffBackend;

use crate::SoupError;
use crate::records::{NamedAcc, Recipe, SoupRow, SoupSweep, SweepAttack, ThreatModel, write_sweep};

/// What a sweep evaluates.
#[derive(Debug, Clone)]
pub struct SweepOptions {
    /// Soup weights.
    pub betas: Vec<f32>,
    /// Test images for clean accuracy.
    pub n_clean: usize,
    /// Test images attacked.
    pub n_robust: usize,
    /// Test images per corruption.
    pub n_shift: usize,
    /// The attacks, each run separately.
    pub attacks: Vec<SweepAttack>,
    /// Corruptions generated from the test subset.
    pub corruptions: Vec<Corruption>,
    /// Their severity.
    pub severity: u8,
    /// Seed of the corruptions (the attacks carry their own).
    pub seed: u64,
    /// Evaluation batch size.
    pub batch_size: usize,
    /// Threads for generating corruptions.
    pub threads: usize,
}

/// The model a sweep evaluates and the names its records give it.
pub struct Subject<'a, B: Backend> {
    /// The model whose two adapters are mixed.
    pub model: &'a AdaptedVit<B>,
    /// Its name in the records (the run name).
    pub name: &'a str,
    /// Dataset and split the numbers are on (`mnist/test`).
    pub dataset: &'a str,
}

// By hand: a derive would ask `B: Copy` of the backend.
impl<B: Backend> Clone for Subject<'_, B> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<B: Backend> Copy for Subject<'_, B> {}

/// The first `n` samples of `data` (all of them when it has fewer).
pub(crate) fn first_n(data: &ImageDataset, n: usize) -> ImageDataset {
    data.subset(&(0..n.min(data.num_samples())).collect::<Vec<_>>())
}

/// Everything a sweep evaluates each β on, prepared once.
struct Prepared<'a, B: Backend> {
    subject: Subject<'a, B>,
    hashes: ModelHashes,
    test: &'a ImageDataset,
    clean_set: ImageDataset,
    shifted: Vec<(Corruption, ImageDataset)>,
    opts: &'a SweepOptions,
}

/// The row and report card of the soup at `beta`.
fn evaluate<AD: AutodiffBackend>(
    p: &Prepared<'_, AD::InnerBackend>,
    beta: f32,
    device: &AD::Device,
) -> Result<(SoupRow, ReportCard), SoupError> {
    let (model, opts) = (p.subject.model, p.opts);
    let mode = Mode::Soup(beta);
    let route = Route::mode(mode);
    let clean_acc = accuracy(model, &p.clean_set, &route, opts.batch_size, device)?;
    let mut reports = Vec::new();
    for a in &opts.attacks {
        let r = EvalJob::new(a.evaluator.clone(), mode)
            .batch_size(opts.batch_size)
            .first(opts.n_robust)
            .run::<AD>(model, p.test, device)?
            .ok_or(SoupError::Empty("no test images to attack"))?;
        reports.push((a.name.clone(), r));
    }
    let recipe = Recipe {
        adapter_sha256: p.hashes.adapter_sha256.clone(),
        model_sha256: p.hashes.model_sha256.clone(),
        beta,
    };
    let card = ReportCard::new(
        CardSubject {
            model: p.subject.name.to_string(),
            mode: format!("soup:{beta}"),
            dataset: p.subject.dataset.to_string(),
            hashes: p.hashes.clone(),
            recipe: Some(recipe.clone()),
        },
        p.clean_set.num_samples(),
        clean_acc,
        &reports,
    )
    .ok_or(SoupError::Empty("no attack reports"))?;
    let shifts = p
        .shifted
        .iter()
        .map(|(c, d)| {
            Ok(NamedAcc {
                name: c.name().to_string(),
                acc: accuracy(model, d, &route, opts.batch_size, device)?,
            })
        })
        .collect::<Result<_, SoupError>>()?;
    let row = SoupRow {
        beta,
        clean_acc,
        robust_acc: card.robust_acc,
        attacks: card
            .attacks
            .iter()
            .map(|a| NamedAcc {
                name: a.name.clone(),
                acc: a.robust_acc,
            })
            .collect(),
        shifts,
        forward_passes: card.forward_passes,
        recipe,
    };
    Ok((row, card))
}

/// Evaluates every soup of `opts.betas` on `test`: clean accuracy (first `n_clean`), robust
/// accuracy under each attack and per sample worst case (first `n_robust`, the soup's own
/// forward is the attacked closure), and accuracy on each corruption of the first `n_shift`
/// (generated once, deterministic by seed). Returns the sweep and one report card per β;
/// `progress` sees each row when it is done. With `resume`, rows finished by an earlier
/// (killed) call with the same inputs are taken from there and new ones are recorded there.
///
/// # Errors
/// No attack, an empty test split, a corruption that cannot be generated, or a resumable piece
/// that cannot be read or written.
pub fn sweep<AD: AutodiffBackend>(
    subject: Subject<'_, AD::InnerBackend>,
    test: &ImageDataset,
    opts: &SweepOptions,
    device: &AD::Device,
    resume: Option<&Resumable>,
    progress: &mut dyn FnMut(&SoupRow),
) -> Result<(SoupSweep, Vec<ReportCard>), SoupError> {
    let start = Instant::now();
    let Some(first_attack) = opts.attacks.first() else {
        return Err(SoupError::Empty("a sweep needs at least one attack"));
    };
    if test.num_samples() == 0 {
        return Err(SoupError::Empty("the test split is empty"));
    }
    let hashes = ModelHashes::of(subject.model);
    let clean_set = first_n(test, opts.n_clean);
    let shift_base = first_n(test, opts.n_shift);
    let shifted: Vec<(Corruption, ImageDataset)> = opts
        .corruptions
        .iter()
        .map(|&c| {
            corrupt_dataset(&shift_base, c, opts.severity, opts.seed, opts.threads)
                .map(|d| (c, d))
                .map_err(|source| SoupError::Corrupt {
                    context: format!("corrupting the test subset with {c}"),
                    source,
                })
        })
        .collect::<Result<_, _>>()?;
    let eps = first_attack
        .evaluator
        .attacks
        .first()
        .map(|a| a.eps())
        .unwrap_or(0.0);
    let prepared = Prepared {
        subject,
        hashes,
        test,
        clean_set,
        shifted,
        opts,
    };
    let mut rows = Vec::new();
    let mut cards = Vec::new();
    for (i, &beta) in opts.betas.iter().enumerate() {
        let done = match resume {
            Some(r) => r.get::<(SoupRow, ReportCard)>(i)?,
            None => None,
        };
        let (row, card) = match done {
            Some(done) => done,
            None => {
                let (row, card) = evaluate::<AD>(&prepared, beta, device)?;
                if let Some(r) = resume {
                    r.put(i, &(&row, &card))?;
                }
                (row, card)
            }
        };
        progress(&row);
        rows.push(row);
        cards.push(card);
    }
    let Prepared {
        hashes, clean_set, ..
    } = prepared;
    let sweep = SoupSweep {
        model: subject.name.to_string(),
        dataset: subject.dataset.to_string(),
        model_sha256: hashes.model_sha256,
        adapter_sha256: hashes.adapter_sha256,
        threat_model: ThreatModel::Linf,
        eps,
        seed: first_attack.evaluator.seed,
        n_clean: clean_set.num_samples(),
        n_robust: opts.n_robust.min(test.num_samples()),
        n_shift: shift_base.num_samples(),
        severity: opts.severity,
        attacks: opts.attacks.clone(),
        rows,
        wall_seconds: start.elapsed().as_secs_f64(),
    };
    Ok((sweep, cards))
}

/// What identifies a sweep's finished rows on disk: the model's content hash and every option
/// that changes a number. A resumed sweep reuses rows only under the same key.
pub fn resume_key(model_sha256: &str, opts: &SweepOptions) -> serde_json::Value {
    serde_json::json!({
        "model": model_sha256,
        "betas": opts.betas,
        "n": [opts.n_clean, opts.n_robust, opts.n_shift],
        "attacks": opts.attacks,
        "corruptions": opts.corruptions.iter().map(|c| c.name()).collect::<Vec<_>>(),
        "severity": opts.severity,
        "seed": opts.seed,
        "batch_size": opts.batch_size,
    })
}

/// A finished sweep and the files it was written to.
#[derive(Debug)]
pub struct SweepOutput {
    /// The records.
    pub sweep: SoupSweep,
    /// One report card per β.
    pub cards: Vec<ReportCard>,
    /// Every file written (see [`write_sweep`]).
    pub files: Vec<PathBuf>,
}

impl SweepOutput {
    /// What `advsoup soup sweep` prints when done: the table, the wall time and where the
    /// files went (`out`, the directory).
    pub fn summary(&self, out: &Path) -> String {
        format!(
            "{}wall time {:.1}s\nwrote {} files under {} (soup.csv, soup.json, front.svg, shifts.svg, cards/)\n",
            self.sweep.table(),
            self.sweep.wall_seconds,
            self.files.len(),
            out.display()
        )
    }
}

/// [`sweep`] into the directory `out`, resumable: finished rows are kept in
/// `out/soup.json.partial/` (keyed by [`resume_key`]) until every file is written, so a killed
/// sweep restarted with the same inputs continues where it stopped and writes the same files.
///
/// # Errors
/// As [`sweep`] and [`write_sweep`].
pub fn sweep_into<AD: AutodiffBackend>(
    subject: Subject<'_, AD::InnerBackend>,
    test: &ImageDataset,
    opts: &SweepOptions,
    device: &AD::Device,
    out: &Path,
    progress: &mut dyn FnMut(&SoupRow),
) -> Result<SweepOutput, SoupError> {
    let key = resume_key(&ModelHashes::of(subject.model).model_sha256, opts);
    crate::records::create_dir(out)?;
    let partial = Resumable::open(&out.join("soup.json"), &key)?;
    let (sweep, cards) = sweep::<AD>(subject, test, opts, device, Some(&partial), progress)?;
    let files = write_sweep(out, &sweep, &cards)?;
    partial.finish()?;
    Ok(SweepOutput {
        sweep,
        cards,
        files,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::options::{build_attacks, parse_betas, parse_corruptions};
    use crate::testing::{labelled_by, tiny_data, tiny_model};
    use burn::backend::{Autodiff, Flex};

    type AD = Autodiff<Flex>;

    fn options() -> SweepOptions {
        SweepOptions {
            betas: parse_betas("0,0.5,1").expect("betas"),
            n_clean: 12,
            n_robust: 4,
            n_shift: 6,
            attacks: build_attacks("pgd-2,apgd-ce", 0.1, 0, 3).expect("attacks"),
            corruptions: parse_corruptions("gaussian_noise,contrast").expect("corruptions"),
            severity: 3,
            seed: 0,
            batch_size: 5,
            threads: 2,
        }
    }

    #[test]
    fn sweep_endpoints_are_the_two_modes_and_files_parse() {
        let device = Default::default();
        let model = tiny_model(&device);
        let test = labelled_by(&model, Mode::Clean, &tiny_data(12, 1), &device);
        let opts = options();
        let subject = Subject {
            model: &model,
            name: "tiny",
            dataset: "toy/test",
        };
        let mut seen = Vec::new();
        let (sweep, cards) = sweep::<AD>(subject, &test, &opts, &device, None, &mut |r| {
            seen.push(r.beta)
        })
        .expect("sweep");
        assert_eq!(seen, vec![0.0, 0.5, 1.0]);
        assert_eq!(sweep.rows.len(), 3);
        assert_eq!(cards.len(), 3);
        assert_eq!((sweep.n_clean, sweep.n_robust, sweep.n_shift), (12, 4, 6));
        let acc = |mode| accuracy(&model, &test, &Route::mode(mode), 5, &device).expect("acc");
        let (clean_mode, robust_mode) = (acc(Mode::Clean), acc(Mode::Adversarial));
        assert_eq!(sweep.rows[2].clean_acc, clean_mode);
        assert_eq!(sweep.rows[0].clean_acc, robust_mode);
        // The data are labelled by the clean mode, so the endpoints can be told apart.
        assert_eq!(clean_mode, 1.0);
        assert!(robust_mode < 1.0, "the two modes agree on every image");
        // The attacked soup at β=0 is the robust mode attacked directly.
        let direct = EvalJob::new(opts.attacks[0].evaluator.clone(), Mode::Adversarial)
            .batch_size(5)
            .first(4)
            .run::<AD>(&model, &test, &device)
            .expect("run")
            .expect("report");
        assert_eq!(sweep.rows[0].attacks[0].acc, direct.robust_accuracy);
        for (row, card) in sweep.rows.iter().zip(&cards) {
            assert_eq!(row.attacks.len(), 2);
            assert_eq!(row.shifts.len(), 2);
            assert_eq!(row.shifts[1].name, "contrast");
            assert!(row.robust_acc <= row.attacks[0].acc && row.robust_acc <= row.attacks[1].acc);
            assert!(row.robust_acc <= 1.0 && row.clean_acc <= 1.0);
            assert!(row.forward_passes > 0);
            assert_eq!(card.recipe.as_ref().map(|r| r.beta), Some(row.beta));
            assert_eq!(card.adapter_sha256.len(), 64);
        }
        assert_ne!(sweep.adapter_sha256, sweep.model_sha256);

        let dir = tempfile::tempdir().expect("tempdir");
        let files = write_sweep(&dir.path().join("soup"), &sweep, &cards).expect("write");
        for f in &files {
            assert!(f.exists(), "{} missing", f.display());
        }
        let csv = std::fs::read_to_string(dir.path().join("soup/soup.csv")).expect("csv");
        assert_eq!(csv.lines().count(), 4, "{csv}");
        assert!(csv.starts_with("beta,clean_acc,robust_acc,robust_pgd-2,robust_apgd-ce,shift_gaussian_noise,shift_contrast,"));
        let json: SoupSweep = serde_json::from_str(
            &std::fs::read_to_string(dir.path().join("soup/soup.json")).expect("json"),
        )
        .expect("parse soup.json");
        assert_eq!(json, sweep);
        assert_eq!(json.attacks[1].evaluator.attacks.len(), 1);
        let card = ReportCard::from_json(
            &std::fs::read_to_string(dir.path().join("soup/cards/beta-0.500.json")).expect("card"),
        )
        .expect("parse card");
        assert_eq!(card, cards[1]);
        assert!(
            std::fs::read_to_string(dir.path().join("soup/front.svg"))
                .expect("svg")
                .contains("β=0.5")
        );
    }

    #[test]
    fn a_resumed_sweep_reuses_finished_rows_and_cleans_up() {
        let device = Default::default();
        let model = tiny_model(&device);
        let test = tiny_data(8, 4);
        let mut opts = options();
        opts.betas = vec![0.0, 1.0];
        opts.corruptions = Vec::new();
        opts.attacks.truncate(1);
        let subject = Subject {
            model: &model,
            name: "tiny",
            dataset: "toy/test",
        };
        let dir = tempfile::tempdir().expect("tempdir");
        let out = dir.path().join("soup");
        // A first (killed) sweep got as far as β=0 and recorded it.
        let key = resume_key(&ModelHashes::of(&model).model_sha256, &opts);
        let partial = Resumable::open(&out.join("soup.json"), &key).expect("open");
        let (first, cards) =
            sweep::<AD>(subject, &test, &opts, &device, None, &mut |_| {}).expect("sweep");
        let mut planted = first.rows[0].clone();
        planted.clean_acc = 0.123;
        partial.put(0, &(&planted, &cards[0])).expect("put");
        let done = sweep_into::<AD>(subject, &test, &opts, &device, &out, &mut |_| {})
            .expect("resumed sweep");
        assert_eq!(
            done.sweep.rows[0].clean_acc, 0.123,
            "β=0 was taken from disk"
        );
        assert_eq!(done.sweep.rows[1], first.rows[1]);
        assert!(out.join("soup.json").exists());
        let text = done.summary(&out);
        assert!(text.starts_with(&done.sweep.table()), "{text}");
        assert!(
            text.ends_with(
                " files under {} (soup.csv, soup.json, front.svg, shifts.svg, cards/)\n"
                    .replace("{}", &out.display().to_string())
                    .as_str()
            ),
            "{text}"
        );
        assert!(!out.join("soup.json.partial").exists());
    }
}
