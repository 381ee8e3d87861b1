//! Issue 16, the data/attacks/eval side: streamed images that are not images or whose pixels
//! are damaged, attack counts above their maximum, weights holding NaN, and a damaged streamed
//! test image in `eval`.

use std::path::{Path, PathBuf};

use super::*;

/// A run directory `<dir>/run` as training leaves it: `tiny` as its `config.toml` and a model
/// of that architecture (with `classes` classes) whose parameter `nan` (a name, or a name
/// prefix) holds NaN in its first element.
fn fake_run(dir: &Path, tiny: &TinyConfig, classes: usize, nan: Option<&str>) -> PathBuf {
    let run = dir.join("run");
    std::fs::rename(tiny.write(&run), run.join("config.toml")).expect("mv config");
    let mut vit = tiny.vit();
    vit.num_classes = classes;
    let model = run.join("model.safetensors");
    foreign_model(&model, vit, AdapterKind::ClsToken);
    if let Some(nan) = nan {
        let mut bytes = std::fs::read(&model).expect("read model");
        let (header, meta) = safetensors::SafeTensors::read_metadata(&bytes).expect("header");
        let mut names: Vec<String> = meta.tensors().into_keys().collect();
        names.sort();
        let name = names
            .iter()
            .find(|n| n.starts_with(nan))
            .expect("parameter");
        let at = 8 + header + meta.info(name).expect("info").data_offsets.0;
        bytes[at..at + 4].copy_from_slice(&f32::NAN.to_le_bytes());
        write(&model, &bytes);
    }
    run
}

/// The smallest tiny config reading a streamed ImageFolder of two classes under `<dir>/data`
/// (`train/` with 8 images a class, `val/` with 2), written there.
fn streamed_folder(dir: &Path) -> TinyConfig {
    let data = dir.join("data");
    advsoup_data::testing::write_png_folder(&data.join("train"), 2, 8);
    advsoup_data::testing::write_png_folder(&data.join("val"), 2, 2);
    let path = |p: &str| data.join(p).display().to_string();
    TinyConfig::smallest(&data)
        .set("data.dataset", "image-folder")
        .set("data.train_dir", path("train"))
        .set("data.val_dir", path("val"))
        .set("data.stream", true)
        .set("model.num_classes", 2)
}

/// `advsoup train` on a streamed folder whose `file` is not an image (refused when the folder
/// is opened), or (`body_only`) has a valid header over damaged pixels (one line when read).
fn streamed_train_row(root: &Path, name: &'static str, file: &str, body_only: bool) -> Row {
    let (dir, mut cmd) = row_setup(root, name);
    let config = streamed_folder(&dir).write(&dir);
    let file = dir.join("data").join(file);
    if body_only {
        advsoup_data::testing::damage_png_body(&file);
    } else {
        write(&file, b"not an image at all");
    }
    // Training's own log lines are not what this row checks.
    cmd.env("ADVSOUP_LOG", "error")
        .args(["train", "--quiet", "--runs-dir", "runs", "--config"])
        .arg(&config);
    Row {
        name,
        absent: vec![dir.join("runs/tiny/final.json")],
        unchanged: vec![],
        needles: vec![file.display().to_string(), "failed to decode".into()],
        dir,
        cmd,
    }
}

/// A streamed training image with damaged pixels is one line too: train's shard workers read
/// samples fallibly (issue 16, the train side).
#[test]
fn streamed_train_image_with_damaged_pixels_is_one_line() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let row = streamed_train_row(
        tmp.path(),
        "stream-train-image-damaged-body",
        "train/c1/3.png",
        true,
    );
    run_table(vec![row]);
}

/// Issue 16, data/attacks/eval side: a streamed image that is not an image (refused before
/// training) or whose pixels are damaged (one line, no final table); attack counts above their
/// maximum; weights holding NaN for eval, attack, soup (in the adapter) and export; a damaged
/// streamed test image in `eval`, which must leave the run as it was.
pub(super) fn rows(root: &Path) -> Vec<Row> {
    let mut rows = Vec::new();
    for (name, file, body_only) in [
        ("stream-train-image-bad-header", "train/c1/3.png", false),
        ("stream-test-image-bad-header", "val/c0/0.png", false),
        ("stream-test-image-damaged-body", "val/c0/0.png", true),
    ] {
        rows.push(streamed_train_row(root, name, file, body_only));
    }

    let fmnist_run = |name: &'static str, nan: Option<&str>| {
        let (dir, cmd) = row_setup(root, name);
        fmnist(&dir.join("data"));
        let run = fake_run(&dir, &TinyConfig::smallest(&dir.join("data")), 10, nan);
        (dir, cmd, run)
    };
    let (dir, mut cmd, run) = fmnist_run("eval-pgd-steps-too-many", None);
    cmd.args([
        "eval",
        "--attack",
        "pgd-99999999999",
        "--eps",
        "0.1",
        "--run",
    ])
    .arg(&run);
    rows.push(Row {
        name: "eval-pgd-steps-too-many",
        absent: vec![],
        unchanged: vec![run],
        dir,
        cmd,
        needles: strings(&["--attack", "steps 99999999999 is too large: at most 10000"]),
    });
    let (dir, mut cmd, run) = fmnist_run("soup-apgd-iter-too-many", None);
    cmd.args(["soup", "sweep", "--apgd-iter", "20000", "--run"])
        .arg(&run);
    rows.push(Row {
        name: "soup-apgd-iter-too-many",
        absent: vec![run.join("soup")],
        unchanged: vec![run],
        dir,
        cmd,
        needles: strings(&[
            "--apgd-iter 20000",
            "n_iter 20000 is too large: at most 10000",
        ]),
    });
    let nan_rows: [(&'static str, &str, &[&str]); 4] = [
        (
            "eval-nan-weights",
            "vit.head.weight",
            &["eval", "--eps", "0.1", "--attack", "pgd-1"],
        ),
        (
            "attack-nan-weights",
            "vit.head.weight",
            &["attack", "--eps", "0.1", "--out", "adv"],
        ),
        (
            "soup-nan-adapter",
            "adapter.",
            &["soup", "sweep", "--corruptions", "none"],
        ),
        (
            "export-nan-weights",
            "vit.blocks.0",
            &["export-timm", "--out", "timm.safetensors"],
        ),
    ];
    for (name, nan, args) in nan_rows {
        let (dir, mut cmd, run) = fmnist_run(name, Some(nan));
        cmd.args(args).arg("--run").arg(&run);
        rows.push(Row {
            name,
            absent: vec![
                dir.join("adv.safetensors"),
                dir.join("timm.safetensors"),
                run.join("soup"),
            ],
            unchanged: vec![run.clone()],
            needles: vec![
                run.join("model.safetensors").display().to_string(),
                format!("parameter `{nan}"),
                "non-finite value (NaN)".into(),
            ],
            dir,
            cmd,
        });
    }
    // `advsoup eval` of a run whose streamed test set holds a damaged image.
    let (dir, mut cmd) = row_setup(root, "eval-stream-test-image-damaged-body");
    let run = fake_run(&dir, &streamed_folder(&dir), 2, None);
    let bad = dir.join("data/val/c0/0.png");
    advsoup_data::testing::damage_png_body(&bad);
    cmd.args(["eval", "--attack", "pgd-1", "--eps", "0.1", "--run"])
        .arg(&run);
    rows.push(Row {
        name: "eval-stream-test-image-damaged-body",
        absent: vec![],
        unchanged: vec![run],
        dir,
        cmd,
        needles: vec![bad.display().to_string(), "failed to decode".into()],
    });
    rows
}
