//! Hostile inputs through the real `advsoup` binary, one table row each: truncated, oversized
//! and garbage data files, a huge declared size, a PNG bomb, config errors (unknown key,
//! ε = NaN, negative batch size, absurd sizes), weight files of another architecture, a pickle
//! in place of weights, and a data dir that cannot be written; a full disk during the
//! checkpoint write is its own (ignored for now) test.
//!
//! Every row must end with exit code 2 and exactly one stderr line, starting with `error:` and
//! naming the file or field; each row runs in its own directory, which must hold no partial or
//! temporary file afterwards.
//!
//! Run alone: `cargo test -p advsoup-cli --test hostile` (well under a second per row).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use advsoup_adapters::{AdaptedVitConfig, AdapterKind};
use advsoup_data::testing::write_idx;
use advsoup_train::testing::{TinyConfig, tiny_vit};
use advsoup_vit::VitConfig;
use burn::backend::Flex;

const BIN: &str = env!("CARGO_BIN_EXE_advsoup");

/// CIFAR-10 records: `n` of `<label><3072 pixels>`.
fn cifar_records(n: usize) -> Vec<u8> {
    let mut v = Vec::new();
    for i in 0..n {
        v.push((i % 10) as u8);
        v.extend((0..3072).map(|p| ((p + i) % 253) as u8));
    }
    v
}

fn write(path: &Path, bytes: &[u8]) {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).expect("mkdir");
    }
    std::fs::write(path, bytes).expect("write fixture");
}

/// A valid tiny Fashion-MNIST cache under `<dir>/fashion-mnist` (24 train, 8 test images).
fn fmnist(dir: &Path) {
    write_idx(dir, 24, 8);
}

/// A valid tiny CIFAR-10 cache under `<dir>/cifar10`.
fn cifar10(dir: &Path) {
    let d = dir.join("cifar10");
    for i in 1..=5 {
        write(&d.join(format!("data_batch_{i}.bin")), &cifar_records(4));
    }
    write(&d.join("test_batch.bin"), &cifar_records(4));
}

/// The smallest tiny experiment (one block, 16 wide) reading `data`, written as
/// `<dir>/tiny.toml`.
fn tiny_config(dir: &Path, data: &Path) -> PathBuf {
    TinyConfig::smallest(data).write(dir)
}

/// Writes an advsoup model file of another architecture (or adapter) than the tiny config's.
fn foreign_model(path: &Path, vit: VitConfig, adapter: AdapterKind) {
    let model = AdaptedVitConfig { vit, adapter }
        .try_init::<Flex>(&Default::default())
        .expect("model");
    std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
    advsoup_adapters::io::save_model(&model, path).expect("save model");
}

/// The `vit_mini_patch4_28` preset's weights in timm's layout, as timm writes them: no
/// safetensors metadata (so no normalization).
fn timm_file_without_metadata() -> Vec<u8> {
    let vit = VitConfig::vit_mini_patch4_28().init::<Flex>(&Default::default());
    let bytes = advsoup_vit::io::timm_bytes(&vit, Path::new("m")).expect("timm bytes");
    let st = safetensors::SafeTensors::deserialize(&bytes).expect("valid safetensors");
    safetensors::serialize(st.tensors(), None).expect("serialize")
}

/// One table row: a command that must fail cleanly.
struct Row {
    name: &'static str,
    /// The row's own directory (scanned for leftovers afterwards).
    dir: PathBuf,
    cmd: Command,
    /// Substrings the error line must contain (the file or field, and what was wrong).
    needles: Vec<String>,
    /// Paths that must not exist afterwards (outputs that a failed command must not leave).
    absent: Vec<PathBuf>,
    /// Directories whose files must be byte-identical before and after the command (a run
    /// that a refused command must leave as it was); the lock file is not compared.
    unchanged: Vec<PathBuf>,
}

/// A row's own directory under `root` and an `advsoup` command running in it with a clean
/// environment.
fn row_setup(root: &Path, name: &str) -> (PathBuf, Command) {
    let dir = root.join(name);
    std::fs::create_dir_all(&dir).expect("mkdir row");
    let mut cmd = Command::new(BIN);
    cmd.current_dir(&dir)
        .env_remove("ADVSOUP_LOG")
        .env_remove("ADVSOUP_MIRROR")
        .env_remove("ADVSOUP_DATA")
        .env("RUST_BACKTRACE", "0");
    (dir, cmd)
}

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

/// `advsoup train` on the tiny config with `data` prepared by `prepare`, then `overrides`.
fn train_row(
    root: &Path,
    name: &'static str,
    prepare: impl FnOnce(&Path),
    overrides: &[&str],
    needles: &[&str],
) -> Row {
    let (dir, mut cmd) = row_setup(root, name);
    let data = dir.join("data");
    fmnist(&data);
    cifar10(&data);
    prepare(&data);
    let config = tiny_config(&dir, &data);
    cmd.args(["train", "--quiet", "--runs-dir", "runs", "--config"])
        .arg(&config);
    for o in overrides {
        cmd.args(["--set", o]);
    }
    Row {
        name,
        absent: vec![dir.join("runs")],
        unchanged: vec![],
        dir,
        cmd,
        needles: strings(needles),
    }
}

/// Files whose names mark an unfinished write: ours (`.name.tmp-PID`, `checkpoint.tmp`,
/// `.fetch-*` staging dirs) and tempfile's (`.tmp*`).
fn leftovers(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.filter_map(|e| e.ok()) {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.contains(".tmp") || name.starts_with(".fetch-") {
                found.push(e.path());
            }
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                stack.push(e.path());
            }
        }
    }
    found
}

/// What is wrong with a row's outcome, if anything.
fn judge(row: &Row, out: &Output) -> Option<String> {
    let stderr = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    let mut problems = Vec::new();
    if out.status.code() != Some(2) {
        problems.push(format!("exit status {:?}, expected 2", out.status.code()));
    }
    if lines.len() != 1 || !lines[0].starts_with("error: ") {
        problems.push(format!(
            "expected exactly one stderr line starting with `error: `, got {}",
            lines.len()
        ));
    }
    for n in &row.needles {
        if !stderr.contains(n.as_str()) {
            problems.push(format!("error does not mention {n:?}"));
        }
    }
    for p in &row.absent {
        if p.exists() {
            problems.push(format!("{} exists after the failure", p.display()));
        }
    }
    for p in leftovers(&row.dir) {
        problems.push(format!("partial/temporary file left: {}", p.display()));
    }
    (!problems.is_empty()).then(|| {
        format!(
            "{}: {}\n    stderr: {stderr}",
            row.name,
            problems.join("; ")
        )
    })
}

/// Whether this process runs as root (a file it creates is owned by uid 0).
fn running_as_root(dir: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    let probe = dir.join("uid-probe");
    write(&probe, b"");
    let root = std::fs::metadata(&probe).expect("stat").uid() == 0;
    std::fs::remove_file(&probe).expect("rm probe");
    root
}

/// `setpriv` runs the binary as `nobody` (root ignores permission bits, so the read-only data
/// dir row drops privileges when the tests run as root, as CI does).
fn setpriv_works() -> bool {
    Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            BIN,
            "--version",
        ])
        .output()
        .is_ok_and(|o| o.status.success())
}

fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
}

#[test]
fn hostile_inputs_fail_with_one_error_line_exit_2_and_no_partial_files() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let root = tmp.path();
    let mut rows = Vec::new();

    // --- data files (read by `train` through the data crate's readers)
    rows.push(train_row(
        root,
        "idx-truncated",
        |d| {
            let p = d.join("fashion-mnist/train-images-idx3-ubyte");
            let b = std::fs::read(&p).expect("read");
            write(&p, &b[..b.len() - 100]);
        },
        &[],
        &["train-images-idx3-ubyte", "truncated at byte offset 18732"],
    ));
    rows.push(train_row(
        root,
        "idx-oversized",
        |d| {
            let p = d.join("fashion-mnist/train-labels-idx1-ubyte");
            let mut b = std::fs::read(&p).expect("read");
            b.extend_from_slice(&[0; 7]);
            write(&p, &b);
        },
        &[],
        &["train-labels-idx1-ubyte", "7 unexpected trailing bytes"],
    ));
    rows.push(train_row(
        root,
        "idx-garbage",
        |d| {
            let garbage: Vec<u8> = (0..5000u32)
                .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
                .collect();
            write(&d.join("fashion-mnist/t10k-images-idx3-ubyte"), &garbage);
        },
        &[],
        &["t10k-images-idx3-ubyte", "wrong magic number"],
    ));
    rows.push(train_row(
        root,
        "idx-huge-declared-size",
        |d| {
            // 4294967295 images of 28x28 declared, 3 bytes present: no allocation, an error.
            let mut b = vec![0u8, 0, 8, 3];
            for x in [u32::MAX, 28, 28] {
                b.extend_from_slice(&x.to_be_bytes());
            }
            b.extend_from_slice(&[1, 2, 3]);
            write(&d.join("fashion-mnist/train-images-idx3-ubyte"), &b);
        },
        &[],
        &["train-images-idx3-ubyte", "expected 3367254359296 bytes"],
    ));
    rows.push(train_row(
        root,
        "idx-corrupt-gzip",
        |d| {
            let mut b = vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3];
            b.extend_from_slice(&[0xff; 40]);
            write(&d.join("fashion-mnist/train-labels-idx1-ubyte"), &b);
        },
        &[],
        &["train-labels-idx1-ubyte", "gzip stream is corrupt"],
    ));
    rows.push(train_row(
        root,
        "cifar-truncated",
        |d| {
            let p = d.join("cifar10/data_batch_3.bin");
            let b = std::fs::read(&p).expect("read");
            write(&p, &b[..b.len() - 1]);
        },
        &[
            "data.dataset=cifar10",
            "model.preset=vit_tiny_patch4_32",
            "model.patch_size=8",
        ],
        &["data_batch_3.bin", "truncated at byte offset 9219"],
    ));
    rows.push(train_row(
        root,
        "cifar-bad-label",
        |d| {
            let p = d.join("cifar10/test_batch.bin");
            let mut b = std::fs::read(&p).expect("read");
            b[3073] = 200;
            write(&p, &b);
        },
        &[
            "data.dataset=cifar10",
            "model.preset=vit_tiny_patch4_32",
            "model.patch_size=8",
        ],
        &["test_batch.bin", "entry 1", "label 200 out of range"],
    ));

    rows.push(train_row(
        root,
        "png-bomb",
        |d| {
            // 65535 x 65535 RGB (12 GiB decoded) declared in a 100-byte file, in every class
            // folder of an ImageFolder tree.
            let bomb = png_header_only(65_535, 65_535);
            for f in [
                "train/a/0.png",
                "train/b/1.png",
                "val/a/2.png",
                "val/b/3.png",
            ] {
                write(&d.join(f), &bomb);
            }
        },
        &[
            "data.dataset=image-folder",
            "data.train_dir=data/train",
            "data.val_dir=data/val",
            "model.num_classes=2",
            "data.held_out=1",
            "eval.held_out_robust=1",
        ],
        &["0.png", "image failed to decode", "Memory limit exceeded"],
    ));

    // --- configs
    rows.push(train_row(
        root,
        "config-unknown-key",
        |_| {},
        &["optim.batchsize=8"],
        &["tiny.toml", "unknown field `batchsize`"],
    ));
    rows.push(train_row(
        root,
        "config-eps-nan",
        |_| {},
        &["attack.train.eps=nan"],
        &["tiny.toml", "attack.train.eps", "NaN"],
    ));
    rows.push(train_row(
        root,
        "config-negative-batch-size",
        |_| {},
        &["optim.batch_size=-8"],
        &["tiny.toml", "optim.batch_size", "-8"],
    ));

    rows.push(train_row(
        root,
        "config-absurd-model-size",
        |_| {},
        &["model.embed_dim=1048576"],
        &["tiny.toml", "model.embed_dim"],
    ));
    rows.push(train_row(
        root,
        "config-mixup-nan",
        |_| {},
        &["data.mixup_alpha=nan"],
        &["tiny.toml", "mixup"],
    ));
    rows.push(train_row(
        root,
        "config-lora-rank-0",
        |_| {},
        &["model.adapter={ lora = { rank = 0 } }"],
        &["tiny.toml", "model.adapter", "rank"],
    ));
    rows.push(train_row(
        root,
        "config-unknown-test-attack",
        |_| {},
        &["eval.test_attack=pgd-0"],
        &["tiny.toml", "eval.test_attack"],
    ));

    // --- weight files
    for (name, vit, adapter, needles) in [
        (
            "model-deeper-architecture",
            tiny_vit(2, 16),
            AdapterKind::ClsToken,
            vec!["model.safetensors", "unexpected parameter `vit.blocks.1."],
        ),
        (
            "model-wider-architecture",
            tiny_vit(1, 32),
            AdapterKind::ClsToken,
            vec![
                "model.safetensors",
                "vit.patch_embed.proj.weight",
                "shape mismatch",
            ],
        ),
        (
            "model-other-adapter",
            tiny_vit(1, 16),
            AdapterKind::DualLayerNorm,
            vec!["model.safetensors", "adapter `dual_layer_norm`"],
        ),
    ] {
        let (dir, mut cmd) = row_setup(root, name);
        let run = dir.join("run");
        tiny_config(&run, &dir.join("data"));
        std::fs::rename(run.join("tiny.toml"), run.join("config.toml")).expect("mv");
        foreign_model(&run.join("model.safetensors"), vit, adapter);
        cmd.args(["export-timm", "--out", "timm.safetensors", "--run"])
            .arg(&run);
        rows.push(Row {
            name,
            absent: vec![dir.join("timm.safetensors")],
            unchanged: vec![],
            dir,
            cmd,
            needles: strings(&needles),
        });
    }
    {
        // A pickle (what `torch.load` would execute) in place of weights: it is never run, only
        // rejected as not-safetensors; the command it carries would create `pwned`.
        let (dir, mut cmd) = row_setup(root, "pickle-instead-of-weights");
        let marker = dir.join("pwned");
        let pickle = format!("cposix\nsystem\n(S'touch {}'\ntR.", marker.display());
        write(&dir.join("vit.pt"), pickle.as_bytes());
        cmd.args([
            "import-timm",
            "vit.pt",
            "--preset",
            "vit_mini_patch4_28",
            "--out",
            "model.safetensors",
        ]);
        rows.push(Row {
            name: "pickle-instead-of-weights",
            absent: vec![marker, dir.join("model.safetensors")],
            unchanged: vec![],
            dir,
            cmd,
            needles: strings(&["vit.pt", "not a valid safetensors file"]),
        });
    }
    {
        // timm weights carry no input normalization: importing them without --mean/--std must
        // be refused (before, the preset's 0.5 was used silently).
        let (dir, mut cmd) = row_setup(root, "timm-file-without-normalization");
        write(&dir.join("timm.safetensors"), &timm_file_without_metadata());
        cmd.args([
            "import-timm",
            "timm.safetensors",
            "--preset",
            "vit_mini_patch4_28",
            "--out",
            "model.safetensors",
        ]);
        rows.push(Row {
            name: "timm-file-without-normalization",
            absent: vec![dir.join("model.safetensors")],
            unchanged: vec![],
            dir,
            cmd,
            needles: strings(&[
                "timm.safetensors",
                "does not record its input normalization",
            ]),
        });
    }
    {
        let (dir, mut cmd) = row_setup(root, "timm-mean-without-std");
        write(&dir.join("timm.safetensors"), &timm_file_without_metadata());
        cmd.args([
            "import-timm",
            "timm.safetensors",
            "--preset",
            "vit_mini_patch4_28",
            "--mean",
            "0.5",
            "--out",
            "model.safetensors",
        ]);
        rows.push(Row {
            name: "timm-mean-without-std",
            absent: vec![dir.join("model.safetensors")],
            unchanged: vec![],
            dir,
            cmd,
            needles: strings(&["--mean and --std go together"]),
        });
    }

    // --- a data dir that cannot be written
    {
        // Its "parent" is a regular file: fails for root too (ENOTDIR).
        let (dir, mut cmd) = row_setup(root, "data-dir-under-a-file");
        write(&dir.join("file"), b"not a directory");
        cmd.args(["data", "fetch", "mnist", "--no-packages", "--data-dir"])
            .arg(dir.join("file/cache"));
        rows.push(Row {
            name: "data-dir-under-a-file",
            absent: vec![],
            unchanged: vec![],
            dir,
            cmd,
            needles: strings(&["file/cache", "Not a directory"]),
        });
    }
    let root_user = running_as_root(root);
    let read_only_row = !root_user || setpriv_works();
    if read_only_row {
        // A read-only data dir (mode 0555). Root ignores permission bits, so as root the binary
        // runs as `nobody` through setpriv (util-linux) and meets a real EACCES.
        let (dir, cmd) = row_setup(root, "data-dir-read-only");
        let ro = dir.join("ro");
        std::fs::create_dir_all(&ro).expect("mkdir");
        set_mode(&ro, 0o555);
        let mut cmd = if root_user {
            for p in [root, dir.as_path()] {
                set_mode(p, 0o755);
            }
            let mut c = Command::new("setpriv");
            c.args(["--reuid=65534", "--regid=65534", "--clear-groups", BIN]);
            c.current_dir(&dir)
                .env_remove("ADVSOUP_MIRROR")
                .env_remove("ADVSOUP_LOG");
            c
        } else {
            cmd
        };
        cmd.args(["data", "fetch", "mnist", "--no-packages", "--data-dir"])
            .arg(&ro);
        rows.push(Row {
            name: "data-dir-read-only",
            absent: vec![ro.join("mnist")],
            unchanged: vec![],
            needles: vec![ro.display().to_string(), "Permission denied".into()],
            dir,
            cmd,
        });
    } else {
        eprintln!(
            "data-dir-read-only: skipped (root without a working setpriv); \
             data-dir-under-a-file covers the unwritable data dir"
        );
    }

    rows.extend(rows_repro17(root));
    rows.extend(rows_train16(root));
    rows.extend(rows_eval16(root));
    rows.extend(rows_cli16(root));
    run_table(rows);
}

/// Every file under `dir` (but the lock file) with its bytes.
fn snapshot(dir: &Path) -> std::collections::BTreeMap<PathBuf, Vec<u8>> {
    let mut files = std::collections::BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.filter_map(|e| e.ok()) {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                stack.push(e.path());
            } else if e.file_name() != ".advsoup.lock" {
                files.insert(e.path(), std::fs::read(e.path()).unwrap_or_default());
            }
        }
    }
    files
}

/// Runs every row, then fails once listing every row that misbehaved.
fn run_table(rows: Vec<Row>) {
    let mut failures = Vec::new();
    for mut row in rows {
        let before: Vec<_> = row.unchanged.iter().map(|d| snapshot(d)).collect();
        let out = row.cmd.output().expect("run advsoup");
        if let Some(f) = judge(&row, &out) {
            failures.push(f);
        }
        for (dir, before) in row.unchanged.iter().zip(before) {
            if before.is_empty() {
                failures.push(format!(
                    "{}: {} holds no file to compare",
                    row.name,
                    dir.display()
                ));
            } else if snapshot(dir) != before {
                failures.push(format!("{}: {} changed", row.name, dir.display()));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} row(s) failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// A full disk while the checkpoint is written: RLIMIT_FSIZE with SIGXFSZ ignored makes the
/// kernel fail a write past 8 KiB with EFBIG in the middle of a file, the way a full disk fails
/// it with ENOSPC. config.toml and run.json fit; the checkpoint's records do not. The run must
/// fail naming the file and the operating system's error, and leave neither `checkpoint/` nor a
/// partial `checkpoint.tmp/`.
#[test]
fn disk_full_during_checkpoint_write_leaves_no_partial_checkpoint() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (dir, _) = row_setup(tmp.path(), "disk-full-during-checkpoint");
    let data = dir.join("data");
    fmnist(&data);
    let config = tiny_config(&dir, &data);
    let mut cmd = Command::new("sh");
    cmd.current_dir(&dir)
        .env_remove("ADVSOUP_MIRROR")
        .env_remove("ADVSOUP_LOG")
        .args([
            "-c",
            r#"trap "" XFSZ; ulimit -f 16; exec "$0" "$@""#,
            BIN,
            "train",
            "--quiet",
            "--runs-dir",
            "runs",
            "--max-steps",
            "1",
            "--config",
        ])
        .arg(&config);
    let run = dir.join("runs/tiny");
    run_table(vec![Row {
        name: "disk-full-during-checkpoint",
        absent: vec![run.join("checkpoint"), run.join("checkpoint.tmp")],
        unchanged: vec![],
        dir,
        cmd,
        needles: strings(&["checkpoint", "File too large"]),
    }]);
}

/// A PNG whose IHDR declares `w x h` RGB8 and whose only IDAT is a few zero rows.
fn png_header_only(w: u32, h: u32) -> Vec<u8> {
    fn chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
        out.extend_from_slice(&(data.len() as u32).to_be_bytes());
        let start = out.len();
        out.extend_from_slice(kind);
        out.extend_from_slice(data);
        let crc = crc32(&out[start..]);
        out.extend_from_slice(&crc.to_be_bytes());
    }
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut ihdr = Vec::new();
    ihdr.extend_from_slice(&w.to_be_bytes());
    ihdr.extend_from_slice(&h.to_be_bytes());
    ihdr.extend_from_slice(&[8, 2, 0, 0, 0]);
    chunk(&mut png, b"IHDR", &ihdr);
    // A stored (uncompressed) zlib block of 16 zero bytes.
    let mut idat = vec![0x78, 0x01, 0x01, 16, 0, !16, 0xff];
    idat.extend_from_slice(&[0; 16]);
    idat.extend_from_slice(&adler32(&[0; 16]).to_be_bytes());
    chunk(&mut png, b"IDAT", &idat);
    chunk(&mut png, b"IEND", &[]);
    png
}

fn crc32(bytes: &[u8]) -> u32 {
    let mut c = 0xffff_ffffu32;
    for &b in bytes {
        c ^= u32::from(b);
        for _ in 0..8 {
            c = if c & 1 == 1 {
                0xedb8_8320 ^ (c >> 1)
            } else {
                c >> 1
            };
        }
    }
    !c
}

fn adler32(bytes: &[u8]) -> u32 {
    let (mut a, mut b) = (1u32, 0u32);
    for &x in bytes {
        a = (a + u32::from(x)) % 65_521;
        b = (b + a) % 65_521;
    }
    (b << 16) | a
}

/// `advsoup report --run` (issue 17): a run without run.json, and a run whose metrics.jsonl is
/// not records, are refused naming the file, write no report.html and leave the run as it was.
fn rows_repro17(root: &Path) -> Vec<Row> {
    let mut rows = Vec::new();
    let (dir, mut cmd) = row_setup(root, "report-no-run-json");
    let run = dir.join("run");
    std::fs::create_dir_all(&run).expect("mkdir run");
    std::fs::write(run.join("config.toml"), "name = \"run\"\n").expect("config");
    cmd.args(["report", "--run"]).arg(&run);
    rows.push(Row {
        name: "report-no-run-json",
        absent: vec![run.join("report.html")],
        unchanged: vec![run.clone()],
        needles: vec![run.join("run.json").display().to_string()],
        dir,
        cmd,
    });
    let (dir, mut cmd) = row_setup(root, "report-bad-metrics");
    let run = dir.join("run");
    std::fs::create_dir_all(&run).expect("mkdir run");
    std::fs::write(
        run.join("run.json"),
        r#"{"accumulation": 1, "backend": "b", "burn": "0.21.0", "devices": 1,
            "git_revision": null, "global_batch": 8, "nodes": 1, "seed": 0}"#,
    )
    .expect("run.json");
    std::fs::write(run.join("config.toml"), "name = \"run\"\n").expect("config");
    std::fs::write(run.join("metrics.jsonl"), "{\"epoch\": 1}\n").expect("metrics");
    cmd.args(["report", "--run"]).arg(&run);
    rows.push(Row {
        name: "report-bad-metrics",
        absent: vec![run.join("report.html")],
        unchanged: vec![run.clone()],
        needles: vec![
            run.join("metrics.jsonl").display().to_string(),
            "missing field `step`".into(),
        ],
        dir,
        cmd,
    });
    rows
}

// Issue 16's rows, one file per side (train, data/attacks/eval, cli), to keep this file short.
#[path = "hostile/train16.rs"]
mod train16;

#[path = "hostile/eval16.rs"]
mod eval16;

#[path = "hostile/cli16.rs"]
mod cli16;

fn rows_train16(root: &Path) -> Vec<Row> {
    train16::rows(root)
}

fn rows_eval16(root: &Path) -> Vec<Row> {
    eval16::rows(root)
}

/// Issue 16, the cli side (rows in hostile/cli16.rs, to keep this file short): not a run
/// directory, an unfinished run, `--eps` outside (0, 1], a second writer while the run's or the
/// data cache's lock is held.
fn rows_cli16(root: &Path) -> Vec<Row> {
    cli16::rows(root)
}
