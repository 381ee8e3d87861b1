//! Test fixtures shared by the advsoup test suites (feature `test-support`): the tiny experiment
//! config, kept once as the committed TOML `crates/train/fixtures/tiny.toml`, with the parts a
//! suite varies filled in, and the matching ViT config.
//!
//! Pair it with `advsoup_data::testing::write_idx`, which writes the data it trains on. Not for
//! production code: these functions panic when they cannot write (test support).
//!
//! ```
//! use advsoup_train::testing::TinyConfig;
//!
//! let dir = tempfile::tempdir().unwrap();
//! let path = TinyConfig::new(&dir.path().join("data"), 2).set("seed", 11).write(dir.path());
//! assert!(std::fs::read_to_string(path).unwrap().contains("seed = 11"));
//! ```

use std::path::{Path, PathBuf};

use advsoup_vit::VitConfig;

/// The committed tiny experiment.
const TINY_TOML: &str = include_str!("../fixtures/tiny.toml");

/// The tiny experiment as a TOML table, edited before it is written (see the module docs).
#[derive(Clone, Debug, PartialEq)]
pub struct TinyConfig {
    table: toml::Table,
}

impl TinyConfig {
    /// The tiny experiment reading the cache under `data`, trained for `epochs` epochs.
    pub fn new(data: &Path, epochs: usize) -> Self {
        let table = toml::from_str(TINY_TOML).expect("fixtures/tiny.toml is valid TOML");
        Self { table }
            .set("data.data_dir", data.to_string_lossy().into_owned())
            .set("optim.epochs", epochs as i64)
    }

    /// The smallest run of the tiny experiment, for tests that only need a command to get going
    /// or fail (the hostile-input table): seed 1, 4 held-out samples, one PGD step in training
    /// and evaluation, one epoch in batches of 8, the optimizer's defaults, no crop padding.
    pub fn smallest(data: &Path) -> Self {
        Self::new(data, 1)
            .set("seed", 1)
            .set("data.held_out", 4)
            .remove("data.crop_padding")
            .set("attack.train.num_steps", 1)
            .set("attack.train.step_size", 0.1)
            .set("attack.eval.num_steps", 1)
            .set("attack.eval.step_size", 0.1)
            .set("optim.batch_size", 8)
            .remove("optim.warmup_epochs")
            .remove("optim.weight_decay")
            .remove("optim.grad_clip")
            .set("eval.held_out_robust", 4)
            .set("eval.test_robust", 4)
            .set("eval.test_attack", "pgd-1")
            .set("eval.batch_size", 8)
    }

    /// Sets `key` (dotted, e.g. `data.mixup_alpha`), creating the tables on its path.
    pub fn set(mut self, key: &str, value: impl Into<toml::Value>) -> Self {
        let (table, last) = Self::table_of(&mut self.table, key);
        table.insert(last.to_string(), value.into());
        self
    }

    /// Removes `key` (dotted), so that the config's default applies.
    pub fn remove(mut self, key: &str) -> Self {
        let (table, last) = Self::table_of(&mut self.table, key);
        table.remove(last);
        self
    }

    fn table_of<'a, 'k>(root: &'a mut toml::Table, key: &'k str) -> (&'a mut toml::Table, &'k str) {
        let mut parts: Vec<&str> = key.split('.').collect();
        let last = parts.pop().expect("split yields at least one part");
        let mut table = root;
        for p in parts {
            table = table
                .entry(p)
                .or_insert_with(|| toml::Value::Table(toml::Table::new()))
                .as_table_mut()
                .unwrap_or_else(|| panic!("tiny config: `{p}` in `{key}` is not a table"));
        }
        (table, last)
    }

    /// The config as TOML text.
    pub fn text(&self) -> String {
        toml::to_string(&self.table).expect("a TOML table serializes")
    }

    /// The value at `key` (dotted), if any.
    pub fn get(&self, key: &str) -> Option<&toml::Value> {
        let mut parts = key.split('.');
        let mut v = self.table.get(parts.next()?)?;
        for p in parts {
            v = v.as_table()?.get(p)?;
        }
        Some(v)
    }

    /// Writes `<dir>/tiny.toml` and returns its path.
    ///
    /// # Panics
    /// When the file cannot be written (test support).
    pub fn write(&self, dir: &Path) -> PathBuf {
        std::fs::create_dir_all(dir).expect("mkdir");
        let path = dir.join("tiny.toml");
        std::fs::write(&path, self.text()).expect("write config");
        path
    }

    /// The model of this config as a [`VitConfig`] (the preset with the `[model]` fields).
    pub fn vit(&self) -> VitConfig {
        let int = |k: &str| {
            self.get(&format!("model.{k}"))
                .and_then(toml::Value::as_integer)
                .unwrap_or_else(|| panic!("tiny config: model.{k} is an integer"))
                as usize
        };
        let mut v = VitConfig::vit_mini_patch4_28();
        v.patch_size = int("patch_size");
        v.embed_dim = int("embed_dim");
        v.depth = int("depth");
        v.num_heads = int("num_heads");
        v.mlp_ratio = self
            .get("model.mlp_ratio")
            .and_then(toml::Value::as_float)
            .expect("tiny config: model.mlp_ratio is a float");
        v
    }
}

/// Writes `<dir>/tiny.toml`: the tiny experiment reading the cache under `data`, trained for
/// `epochs` epochs (batch 16).
///
/// # Panics
/// When the file cannot be written (test support).
pub fn tiny_config(dir: &Path, data: &Path, epochs: usize) -> PathBuf {
    TinyConfig::new(data, epochs).write(dir)
}

/// The tiny experiment's model with `depth` and `embed_dim` changed (a model of another
/// architecture than the config's, for weight-file tests).
pub fn tiny_vit(depth: usize, embed_dim: usize) -> VitConfig {
    let mut v = TinyConfig::new(Path::new("unused"), 1).vit();
    v.depth = depth;
    v.embed_dim = embed_dim;
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::TrainConfig;

    fn load(path: &Path) -> TrainConfig {
        TrainConfig::load(path, &[]).expect("the fixture loads")
    }

    /// The written file is a valid experiment with the fields filled in, and the smallest
    /// variant differs only where it says.
    #[test]
    fn fixtures_load_as_train_configs() {
        let dir = tempfile::tempdir().expect("tempdir");
        let data = dir.path().join("some data");
        let full = load(&tiny_config(&dir.path().join("a"), &data, 3));
        let text = TinyConfig::new(&data, 3).text();
        assert!(text.contains("epochs = 3"), "{text}");
        assert!(text.contains("some data"), "{text}");
        let small = load(&TinyConfig::smallest(&data).write(&dir.path().join("b")));
        assert_ne!(full, small);
        assert_eq!(TinyConfig::smallest(&data).get("seed"), Some(&1.into()));
        assert_eq!(TinyConfig::smallest(&data).get("data.crop_padding"), None);
        assert_eq!(
            TinyConfig::new(&data, 1)
                .set("data.mixup_alpha", 0.8)
                .get("data.mixup_alpha"),
            Some(&0.8.into())
        );
    }

    #[test]
    fn tiny_vit_is_the_configs_model_with_two_fields_changed() {
        let v = tiny_vit(2, 32);
        assert_eq!(
            (v.depth, v.embed_dim, v.patch_size, v.num_heads),
            (2, 32, 7, 2)
        );
        assert_eq!(v.mlp_ratio, 2.0);
        let same = tiny_vit(1, 16);
        assert_eq!(same, TinyConfig::new(Path::new("d"), 1).vit());
    }
}
