//! The fetch tests: generated files served on 127.0.0.1, archives built in memory.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;

use super::sources::apt_hint;
use super::*;
use crate::idx::encode_idx;
use crate::idx::tests::gz;

/// Serve `routes` (path -> body) on 127.0.0.1; anything else is a 404. Returns the base URL.
fn serve(routes: HashMap<String, Vec<u8>>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1");
    let addr = listener.local_addr().expect("addr");
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().expect("clone stream"));
            let mut request = String::new();
            if reader.read_line(&mut request).is_err() {
                continue;
            }
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).map(|n| n == 0).unwrap_or(true) || line == "\r\n" {
                    break;
                }
            }
            let path = request.split_whitespace().nth(1).unwrap_or("/").to_string();
            let (status, body) = match routes.get(&path) {
                Some(b) => ("200 OK", b.clone()),
                None => ("404 Not Found", b"not found".to_vec()),
            };
            let head = format!(
                "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            let _ = stream
                .write_all(head.as_bytes())
                .and_then(|()| stream.write_all(&body));
        }
    });
    format!("http://{addr}/")
}

/// Tiny Fashion-MNIST-shaped IDX files: (name, raw bytes).
fn idx_files() -> Vec<(String, Vec<u8>)> {
    let (ntr, nte) = (20, 10);
    let img = |n: usize, k: usize| {
        encode_idx(
            &[n, 4, 4],
            &(0..n * 16)
                .map(|i| ((i * k) % 256) as u8)
                .collect::<Vec<_>>(),
        )
    };
    let lab = |n: usize| encode_idx(&[n], &(0..n).map(|i| (i % 10) as u8).collect::<Vec<_>>());
    vec![
        (IDX_FILES[0].into(), img(ntr, 3)),
        (IDX_FILES[1].into(), lab(ntr)),
        (IDX_FILES[2].into(), img(nte, 5)),
        (IDX_FILES[3].into(), lab(nte)),
    ]
}

fn spec_for(files: &[(String, Vec<u8>)], kind: DatasetKind, sources: Vec<Source>) -> DatasetSpec {
    DatasetSpec {
        kind,
        files: files
            .iter()
            .map(|(n, b)| FileSpec {
                name: n.clone(),
                sha256: Some(advsoup_io::sha256_hex(b)),
            })
            .collect(),
        sources,
        expected_counts: None,
    }
}

fn no_leftovers(data_dir: &Path) -> bool {
    std::fs::read_dir(data_dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .all(|e| !e.file_name().to_string_lossy().starts_with(".fetch-"))
        })
        .unwrap_or(true)
}

fn opts() -> FetchOptions {
    FetchOptions {
        allow_packages: false,
        read_timeout: Duration::from_secs(5),
        ..FetchOptions::default()
    }
}

#[test]
fn http_success_404_fallback_and_checksum_error() {
    let files = idx_files();
    let mut routes = HashMap::new();
    for (n, b) in &files {
        routes.insert(format!("/good/{n}.gz"), gz(b));
        let mut bad = b.clone();
        let last = bad.len() - 1;
        bad[last] ^= 0x01; // still a valid IDX file, different checksum
        routes.insert(format!("/bad/{n}.gz"), gz(&bad));
    }
    let base = serve(routes);
    let http = |p: &str| Source::Http {
        base_url: format!("{base}{p}/"),
        suffix: ".gz".into(),
    };

    // 404 on the first source -> the second one is used.
    let dir = tempfile::tempdir().expect("tempdir");
    let spec = spec_for(
        &files,
        DatasetKind::FashionMnist,
        vec![http("missing"), http("good")],
    );
    let report = fetch_with(&spec, dir.path(), &opts()).expect("fetch");
    assert!(report.source.contains("/good/"), "{report:?}");
    assert_eq!(report.failed.len(), 1);
    assert!(report.failed[0].contains("404"), "{:?}", report.failed);
    assert_eq!(report.info.splits[0].count, 20);
    assert_eq!(report.info.splits[1].per_class, vec![1; 10]);
    assert!(report.info.files.iter().all(|f| f.pinned));
    assert!(no_leftovers(dir.path()));
    // Decompressed, byte-identical files in the cache; a second fetch is served by the cache.
    let cached =
        std::fs::read(dir.path().join("fashion-mnist").join(IDX_FILES[0])).expect("cached");
    assert_eq!(cached, files[0].1);
    assert_eq!(
        fetch_with(&spec, dir.path(), &opts())
            .expect("again")
            .source,
        "cache"
    );
    assert_eq!(
        info_with(&spec, dir.path()).expect("info").splits[0].per_class,
        vec![2; 10]
    );

    // Corrupted payload -> checksum error, nothing placed.
    let dir = tempfile::tempdir().expect("tempdir");
    let spec = spec_for(&files, DatasetKind::FashionMnist, vec![http("bad")]);
    let e = fetch_with(&spec, dir.path(), &opts())
        .expect_err("checksum")
        .to_string();
    assert!(
        e.contains("sha-256 mismatch")
            && e.contains("train-images-idx3-ubyte")
            && e.contains("/bad/"),
        "{e}"
    );
    assert!(!dir.path().join("fashion-mnist").exists());
    assert!(no_leftovers(dir.path()));

    // Everything fails -> every attempt is listed.
    let spec = spec_for(
        &files,
        DatasetKind::FashionMnist,
        vec![http("missing"), http("bad")],
    );
    let e = fetch_with(&spec, dir.path(), &opts())
        .expect_err("all fail")
        .to_string();
    assert!(
        e.contains("fetching fashion-mnist failed") && e.contains("404") && e.contains("sha-256"),
        "{e}"
    );

    // A tampered cache file is detected by info.
    let dir = tempfile::tempdir().expect("tempdir");
    let spec = spec_for(&files, DatasetKind::FashionMnist, vec![http("good")]);
    fetch_with(&spec, dir.path(), &opts()).expect("fetch");
    let p = dir.path().join("fashion-mnist").join(IDX_FILES[3]);
    let mut b = std::fs::read(&p).expect("read");
    b[9] = (b[9] + 1) % 10;
    std::fs::write(&p, b).expect("write");
    let e = info_with(&spec, dir.path())
        .expect_err("tampered")
        .to_string();
    assert!(
        e.contains("t10k-labels-idx1-ubyte") && e.contains("sha-256 mismatch"),
        "{e}"
    );
    // ... and a fetch replaces it.
    fetch_with(&spec, dir.path(), &opts()).expect("refetch");
    info_with(&spec, dir.path()).expect("repaired");
}

#[test]
fn size_cap_and_expected_counts_are_enforced() {
    let files = idx_files();
    let routes = files
        .iter()
        .map(|(n, b)| (format!("/d/{n}.gz"), gz(b)))
        .collect();
    let base = serve(routes);
    let src = vec![Source::Http {
        base_url: format!("{base}d/"),
        suffix: ".gz".into(),
    }];
    let dir = tempfile::tempdir().expect("tempdir");
    let spec = spec_for(&files, DatasetKind::Mnist, src.clone());
    let e = fetch_with(
        &spec,
        dir.path(),
        &FetchOptions {
            max_download_bytes: 10,
            ..opts()
        },
    )
    .expect_err("cap")
    .to_string();
    assert!(e.contains("size cap"), "{e}");
    let spec = DatasetSpec {
        expected_counts: Some((60_000, 10_000)),
        ..spec_for(&files, DatasetKind::Mnist, src)
    };
    let e = fetch_with(&spec, dir.path(), &opts())
        .expect_err("counts")
        .to_string();
    assert!(
        e.contains("expected 60000") && e.contains("found 20"),
        "{e}"
    );
    assert!(!dir.path().join("mnist").exists());
}

fn tar_gz(entries: &[(&str, &[u8])]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (name, data) in entries {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_entry_type(tar::EntryType::Regular);
        // Write the name raw so that unsafe names can be tested too.
        let raw = &mut h.as_old_mut().name;
        raw[..name.len()].copy_from_slice(name.as_bytes());
        h.set_cksum();
        b.append(&h, *data).expect("append");
    }
    gz(&b.into_inner().expect("tar"))
}

#[test]
fn cifar_archive_over_http_and_unsafe_tar_paths() {
    use crate::cifar::tests::records;
    let batches: Vec<(String, Vec<u8>)> = CIFAR10_FILES
        .iter()
        .map(|n| (n.to_string(), records(2, CifarFormat::Cifar10)))
        .collect();
    let entries: Vec<(String, &[u8])> = batches
        .iter()
        .map(|(n, b)| (format!("cifar-10-batches-bin/{n}"), b.as_slice()))
        .collect();
    let entries: Vec<(&str, &[u8])> = entries.iter().map(|(n, b)| (n.as_str(), *b)).collect();
    let mut evil = entries.clone();
    evil.insert(0, ("../evil.bin", b"x"));
    let routes = HashMap::from([
        ("/cifar-10-binary.tar.gz".to_string(), tar_gz(&entries)),
        ("/evil/cifar-10-binary.tar.gz".to_string(), tar_gz(&evil)),
    ]);
    let base = serve(routes);
    let dir = tempfile::tempdir().expect("tempdir");
    let spec = spec_for(
        &batches,
        DatasetKind::Cifar10,
        vec![Source::HttpTarGz {
            url: format!("{base}evil/cifar-10-binary.tar.gz"),
            member_dir: "cifar-10-batches-bin/".into(),
        }],
    )
    .with_mirror(&base);
    let report = fetch_with(&spec, dir.path(), &opts()).expect("fetch via mirror");
    assert!(
        report
            .source
            .contains(&format!("{base}cifar-10-binary.tar.gz")),
        "{report:?}"
    );
    assert_eq!(report.info.splits[0].count, 10);
    assert_eq!(report.info.splits[1].count, 2);
    assert_eq!(report.info.shape, [3, 32, 32]);

    let dir = tempfile::tempdir().expect("tempdir");
    let spec = DatasetSpec {
        sources: vec![spec.sources[1].clone()],
        ..spec
    };
    let e = fetch_with(&spec, dir.path(), &opts())
        .expect_err("evil")
        .to_string();
    assert!(e.contains("unsafe path") && e.contains("entry 0"), "{e}");
    assert!(
        !dir.path().join("evil.bin").exists()
            && !dir
                .path()
                .parent()
                .map(|p| p.join("evil.bin").exists())
                .unwrap_or(false)
    );
}

#[test]
fn absolute_paths_and_links_in_archives_write_nothing_outside_staging() {
    use crate::cifar::tests::records;
    let batches: Vec<(String, Vec<u8>)> = CIFAR10_FILES
        .iter()
        .map(|n| (n.to_string(), records(1, CifarFormat::Cifar10)))
        .collect();
    let outside = tempfile::tempdir().expect("tempdir");
    let target = outside.path().join("abs-evil.bin");
    let abs = target.to_string_lossy().into_owned();
    // An absolute entry name first.
    let mut entries: Vec<(String, Vec<u8>)> = vec![(abs.clone(), b"x".to_vec())];
    entries.extend(
        batches
            .iter()
            .map(|(n, b)| (format!("cifar-10-batches-bin/{n}"), b.clone())),
    );
    let refs: Vec<(&str, &[u8])> = entries
        .iter()
        .map(|(n, b)| (n.as_str(), b.as_slice()))
        .collect();
    // A symlink and a hard link named like dataset files, pointing at a file outside.
    let mut links = tar::Builder::new(Vec::new());
    for (kind, name) in [
        (tar::EntryType::Symlink, "data_batch_1.bin"),
        (tar::EntryType::Link, "data_batch_2.bin"),
    ] {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_size(0);
        links
            .append_link(
                &mut h,
                format!("cifar-10-batches-bin/{name}"),
                "/etc/passwd",
            )
            .expect("link");
    }
    let links = gz(&links.into_inner().expect("tar"));
    let routes = HashMap::from([
        ("/abs.tar.gz".to_string(), tar_gz(&refs)),
        ("/links.tar.gz".to_string(), links),
    ]);
    let base = serve(routes);
    for (file, needle) in [
        ("abs.tar.gz", "unsafe path"),
        (
            "links.tar.gz",
            "no entry cifar-10-batches-bin/data_batch_1.bin",
        ),
    ] {
        let dir = tempfile::tempdir().expect("tempdir");
        let spec = spec_for(
            &batches,
            DatasetKind::Cifar10,
            vec![Source::HttpTarGz {
                url: format!("{base}{file}"),
                member_dir: "cifar-10-batches-bin/".into(),
            }],
        );
        let e = fetch_with(&spec, dir.path(), &opts())
            .expect_err(file)
            .to_string();
        assert!(e.contains(needle), "{file}: {e}");
        assert!(!target.exists(), "{file}: wrote outside the cache");
        assert!(!dir.path().join("cifar10").exists(), "{file}: placed files");
        assert!(no_leftovers(dir.path()), "{file}: staging left behind");
    }
}

#[test]
fn apt_hint_names_apt_get_update_and_names_parse() {
    let h = apt_hint("E: Unable to locate package dataset-fashion-mnist").expect("hint");
    assert!(h.contains("run apt-get update"));
    assert!(apt_hint("E: some network error").is_none());
    for k in DatasetKind::ALL {
        assert_eq!(k.name().parse::<DatasetKind>().expect("parse"), k);
        assert_eq!(DatasetSpec::builtin(k).files.len(), k.file_names().len());
    }
    assert!("imagenet".parse::<DatasetKind>().is_err());
    assert_eq!(
        resolve_data_dir(Some(Path::new("/x"))).expect("dir"),
        PathBuf::from("/x")
    );
    let e = load_train_test(DatasetKind::Mnist, Path::new("/nonexistent-advsoup"))
        .expect_err("missing")
        .to_string();
    assert!(e.contains("advsoup data fetch mnist"), "{e}");
}

/// Needs the real data and network or registry access. Run with
/// `cargo test -p advsoup-data --release -- --ignored real_fashion_mnist --nocapture`.
#[test]
#[ignore]
fn real_fashion_mnist() {
    let dir = resolve_data_dir(None).expect("data dir");
    let r = fetch(DatasetKind::FashionMnist, &dir).expect("fetch");
    let train = &r.info.splits[0];
    let test = &r.info.splits[1];
    assert_eq!((train.count, test.count), (60_000, 10_000));
    assert_eq!(train.per_class, vec![6_000; 10]);
    assert_eq!(test.per_class, vec![1_000; 10]);
    assert!(r.info.files.iter().all(|f| f.pinned));
}
