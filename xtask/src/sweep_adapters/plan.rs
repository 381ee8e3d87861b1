//! The plan of an adapter sweep: the sweep file read and checked ([`load_config`], its
//! `--quick` variant [`quick`]) and the rows it trains ([`rows`], narrowed by
//! [`select_rows`]).

use std::path::Path;

use advsoup_records::adapter_sweep::SweepConfig;
use anyhow::{Context, Result, bail};

/// Reads and checks a sweep file.
pub fn load_config(path: &Path) -> Result<SweepConfig> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let config: SweepConfig = toml::from_str(&text)
        .map_err(|e| anyhow::anyhow!("{}: {}", path.display(), e.message()))?;
    check(&config).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    Ok(config)
}

fn check(config: &SweepConfig) -> Result<()> {
    if config.name.is_empty()
        || !config
            .name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_".contains(c))
    {
        bail!(
            "name: expected letters, digits, '-' or '_', got `{}`",
            config.name
        );
    }
    if config.prompt_tokens == 0 || config.lora_rank == 0 {
        bail!("prompt_tokens and lora_rank: expected positive numbers");
    }
    if !(1..=5).contains(&config.soup.severity) {
        bail!(
            "soup.severity: expected 1..=5, got {}",
            config.soup.severity
        );
    }
    for (field, v) in [
        ("eval.n_robust", config.eval.n_robust),
        ("eval.apgd_iter", config.eval.apgd_iter),
        ("soup.n_clean", config.soup.n_clean),
        ("soup.n_held_out", config.soup.n_held_out),
        ("soup.n_test", config.soup.n_test),
    ] {
        if v == 0 {
            bail!("{field}: expected a positive number");
        }
    }
    let names: Vec<String> = rows(config).into_iter().map(|r| r.name).collect();
    if let Some(bad) = config
        .eval
        .standard_rows
        .iter()
        .find(|r| !names.contains(r))
    {
        bail!(
            "eval.standard_rows: unknown row `{bad}`, expected some of {}",
            names.join(", ")
        );
    }
    if let Some(b) = &config.budget
        && b.set.is_empty()
    {
        bail!("budget.set: expected the overrides of the longer budget (e.g. optim.epochs=12)");
    }
    if config.corruption_list().is_empty() {
        bail!("soup.corruptions: expected at least one corruption (per-shift soups need one)");
    }
    Ok(())
}

/// The config with its `[quick]` changes applied.
pub fn quick(mut config: SweepConfig) -> Result<SweepConfig> {
    let Some(q) = config.quick.take() else {
        bail!("--quick: the sweep file has no [quick] section");
    };
    config.set.extend(q.set);
    let e = &mut config.eval;
    e.n_robust = q.n_robust.unwrap_or(e.n_robust);
    e.apgd_iter = q.apgd_iter.unwrap_or(e.apgd_iter);
    let s = &mut config.soup;
    s.betas = q.betas.unwrap_or_else(|| s.betas.clone());
    s.n_clean = q.n_clean.unwrap_or(s.n_clean);
    s.n_shift = q.n_shift.unwrap_or(s.n_shift);
    s.corruptions = q.corruptions.unwrap_or_else(|| s.corruptions.clone());
    s.n_held_out = q.n_held_out.unwrap_or(s.n_held_out);
    s.n_test = q.n_test.unwrap_or(s.n_test);
    config.eval.n_standard = q.n_standard.unwrap_or(config.eval.n_standard);
    // the quick variant's own budget axis, or none (CI time)
    config.budget = q.budget;
    check(&config)?;
    Ok(config)
}

/// One row: a regime and an adapter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowSpec {
    /// Short name (`--only`, run directory).
    pub name: String,
    /// nominal, adversarial or co_training.
    pub regime: String,
    /// The `model.adapter` value as TOML.
    pub adapter: String,
    /// Human label.
    pub label: String,
}

impl RowSpec {
    /// Whether the two modes differ (only then is a soup more than one model).
    pub fn has_adapter(&self) -> bool {
        self.adapter != "\"none\""
    }
}

/// The 8 rows of the comparison, in report order.
pub fn rows(config: &SweepConfig) -> Vec<RowSpec> {
    let co = |name: &str, adapter: String, label: String| RowSpec {
        name: name.into(),
        regime: "co_training".into(),
        adapter,
        label,
    };
    vec![
        RowSpec {
            name: "nominal".into(),
            regime: "nominal".into(),
            adapter: "\"none\"".into(),
            label: "nominal training".into(),
        },
        RowSpec {
            name: "adversarial".into(),
            regime: "adversarial".into(),
            adapter: "\"none\"".into(),
            label: "adversarial training (Madry)".into(),
        },
        co("none", "\"none\"".into(), "co-training, no adapter".into()),
        co(
            "cls_token",
            "\"cls_token\"".into(),
            "co-training + cls token".into(),
        ),
        co(
            "dual_layer_norm",
            "\"dual_layer_norm\"".into(),
            "co-training + dual LayerNorm".into(),
        ),
        co("bias", "\"bias\"".into(), "co-training + biases".into()),
        co(
            "prompt",
            format!("{{ prompt = {{ tokens = {} }} }}", config.prompt_tokens),
            format!("co-training + prompt ({} tokens)", config.prompt_tokens),
        ),
        co(
            "lora",
            format!("{{ lora = {{ rank = {} }} }}", config.lora_rank),
            format!("co-training + LoRA (rank {})", config.lora_rank),
        ),
    ]
}

/// Parses `--only` against the known rows.
pub fn select_rows(all: Vec<RowSpec>, only: Option<&str>) -> Result<Vec<RowSpec>> {
    let Some(only) = only else { return Ok(all) };
    let names: Vec<&str> = only
        .split(',')
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .collect();
    if let Some(bad) = names.iter().find(|n| !all.iter().any(|r| r.name == **n)) {
        bail!(
            "--only: unknown row `{bad}`, expected some of {}",
            all.iter()
                .map(|r| r.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    Ok(all
        .into_iter()
        .filter(|r| names.contains(&r.name.as_str()))
        .collect())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn config() -> SweepConfig {
        let path = crate::workspace_root().join("configs/sweep-fmnist.toml");
        load_config(&path).expect("the shipped sweep file loads")
    }

    #[test]
    fn shipped_sweep_file_has_eight_rows_and_a_quick_variant() {
        let c = config();
        let rows = rows(&c);
        assert_eq!(rows.len(), 8);
        let names: Vec<_> = rows.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "nominal",
                "adversarial",
                "none",
                "cls_token",
                "dual_layer_norm",
                "bias",
                "prompt",
                "lora"
            ]
        );
        assert_eq!(rows.iter().filter(|r| r.has_adapter()).count(), 5);
        assert!(rows[6].adapter.contains("tokens = 4"), "{:?}", rows[6]);
        let q = quick(c.clone()).expect("quick");
        assert!(q.set.len() > c.set.len());
        assert!(q.eval.n_robust <= c.eval.n_robust);
        assert!(
            c.eval.n_standard >= 1000,
            "the claims' rows get >= 1000 images"
        );
        assert!(q.eval.n_standard < c.eval.n_standard);
        for r in [
            "cls_token",
            "nominal",
            "adversarial",
            "none",
            "dual_layer_norm",
        ] {
            assert!(c.eval.standard_rows.iter().any(|s| s == r), "{r}");
        }
        assert!(c.budget.is_some() && q.budget.is_some());
    }

    #[test]
    fn only_selects_known_rows_and_names_the_unknown_one() {
        let rows = rows(&config());
        let picked = select_rows(rows.clone(), Some("lora, nominal")).expect("known");
        assert_eq!(
            picked.iter().map(|r| r.name.as_str()).collect::<Vec<_>>(),
            ["nominal", "lora"]
        );
        let e = select_rows(rows, Some("cls"))
            .expect_err("unknown")
            .to_string();
        assert!(e.contains("`cls`") && e.contains("cls_token"), "{e}");
    }

    #[test]
    fn bad_sweep_files_name_the_field() {
        let dir = std::env::temp_dir().join(format!("xtask-sweep-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let good =
            std::fs::read_to_string(crate::workspace_root().join("configs/sweep-fmnist.toml"))
                .expect("read");
        for (edit, want) in [
            (
                good.replace("severity = 3", "severity = 9"),
                "soup.severity",
            ),
            (good.replace("lora_rank = 4", "lora_rank = 0"), "lora_rank"),
            (
                good.replace(
                    "standard_rows = [\"nominal\"",
                    "standard_rows = [\"nominl\"",
                ),
                "eval.standard_rows",
            ),
            (format!("{good}\nbogus = 1\n"), "bogus"),
        ] {
            let p = dir.join("s.toml");
            std::fs::write(&p, edit).expect("write");
            let e = format!("{:#}", load_config(&p).expect_err("invalid"));
            assert!(e.contains("s.toml") && e.contains(want), "{e}");
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}
