//! Loading a config's data: the builtin datasets (fetched on request) or ImageFolder trees, the
//! class index, and the training-set size a plan needs without reading data.

use std::path::Path;

use crate::TrainError;
use crate::config::{self, TrainConfig};

/// Loads the config's dataset as train / held-out / test, fetching it first when `fetch` is
/// set and it is not cached; `data.train_limit` keeps the first N training samples. An ImageFolder config reads `data.train_dir` (decoded at
/// `data.load_size`, default the model's input size) and `data.val_dir` as the test split
/// (shorter side resized to 8/7 of the input size, center crop, as timm evaluates at 224).
pub fn load_data(config: &TrainConfig, fetch: bool) -> Result<advsoup_data::Splits, TrainError> {
    let mut splits = load_splits(config, fetch).map_err(|e| match e {
        // The split names no field; the config's field is what to change.
        TrainError::Data(advsoup_data::DataError::Invalid(m)) if m.starts_with("held-out size") => {
            TrainError::Invalid {
                field: "data.held_out".into(),
                message: m,
            }
        }
        other => other,
    })?;
    if let Some(n) = config.data.train_limit
        && n < splits.train.num_samples()
    {
        splits.train = splits.train.subset(&(0..n).collect::<Vec<_>>());
    }
    Ok(splits)
}

fn load_splits(config: &TrainConfig, fetch: bool) -> Result<advsoup_data::Splits, TrainError> {
    let kind = match config.data.dataset.kind() {
        config::DataKind::Builtin(kind) => kind,
        config::DataKind::ImageFolder => return load_folders(config),
    };
    let dir = advsoup_data::resolve_data_dir(config.data.data_dir.as_deref())?;
    match advsoup_data::load_splits(kind, &dir, config.data.held_out, config.seed) {
        Err(advsoup_data::DataError::NotCached { .. }) if fetch => {
            advsoup_data::fetch(kind, &dir)?;
            Ok(advsoup_data::load_splits(
                kind,
                &dir,
                config.data.held_out,
                config.seed,
            )?)
        }
        other => Ok(other?),
    }
}

fn missing(field: &str) -> TrainError {
    TrainError::Invalid {
        field: field.into(),
        message: "required when data.dataset = \"image-folder\"".into(),
    }
}

/// The class index of an ImageFolder config: `data.class_index`, else the sorted class folders
/// of `data.train_dir`.
pub fn class_index(config: &TrainConfig) -> Result<advsoup_data::folder::ClassIndex, TrainError> {
    let d = &config.data;
    class_index_from(d.class_index.as_deref(), d.train_dir.as_deref())
}

/// [`class_index`] from its two sources: the index file, else the sorted class folders of the
/// training tree.
pub(crate) fn class_index_from(
    class_index: Option<&Path>,
    train_dir: Option<&Path>,
) -> Result<advsoup_data::folder::ClassIndex, TrainError> {
    use advsoup_data::folder::ClassIndex;
    Ok(match class_index {
        Some(p) => ClassIndex::read(p)?,
        None => ClassIndex::from_dir(train_dir.ok_or_else(|| missing("data.train_dir"))?)?,
    })
}

fn load_folders(config: &TrainConfig) -> Result<advsoup_data::Splits, TrainError> {
    use advsoup_data::folder::{FolderOptions, load_image_folder, stream_image_folder};
    let d = &config.data;
    let read = if d.stream {
        stream_image_folder
    } else {
        load_image_folder
    };
    let train_dir = d
        .train_dir
        .as_deref()
        .ok_or_else(|| missing("data.train_dir"))?;
    let val_dir = d
        .val_dir
        .as_deref()
        .ok_or_else(|| missing("data.val_dir"))?;
    let index = class_index(config)?;
    let vit = config.vit()?;
    let img = vit.img_size as u32;
    let load = d.load_size.map_or(img, |s| s as u32);
    let train = read(
        train_dir,
        &index,
        &FolderOptions {
            channels: vit.in_chans,
            resize_shorter: Some(load),
            center_crop: Some(load),
        },
    )?;
    let val = read(
        val_dir,
        &index,
        &FolderOptions {
            channels: vit.in_chans,
            resize_shorter: Some((img * 8).div_ceil(7)),
            center_crop: Some(img),
        },
    )?;
    Ok(advsoup_data::Splits::from_train_test(
        train,
        val,
        d.held_out,
        config.seed,
    )?)
}

/// Training samples after the held-out slice, known without reading data: the official size of
/// a builtin dataset, or `data.train_samples` of an ImageFolder config.
pub fn planned_train_samples(config: &TrainConfig) -> Result<usize, TrainError> {
    let total = config
        .data
        .train_samples
        .or(config.data.dataset.train_size())
        .ok_or_else(|| TrainError::Invalid {
            field: "data.train_samples".into(),
            message: "needed to plan an ImageFolder run without reading the data".into(),
        })?;
    total
        .checked_sub(config.data.held_out)
        .ok_or_else(|| TrainError::Invalid {
            field: "data.held_out".into(),
            message: format!(
                "{} exceeds the {total} training samples",
                config.data.held_out
            ),
        })
}
