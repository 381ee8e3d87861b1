//! The run page and the sweep page parse as HTML (html5ever, the HTML standard's parser: no
//! parse error), hold every plot and table, and refer to nothing outside themselves.

use std::path::Path;

use advsoup_records::adapter_sweep::{
    BudgetResults, BudgetRow, BudgetSpec, StandardResult, SweepConfig, SweepResults,
};
use advsoup_records::claims::claims;
use advsoup_records::testing::row;
use scraper::{Html, Selector};

/// Parses `html`, requires no parse error, no element that loads something (script, link,
/// img, iframe, object, embed, source, use with an outside href) and no attribute or CSS that
/// points outside the page; returns the document.
fn self_contained(html: &str) -> Html {
    let doc = Html::parse_document(html);
    assert!(doc.errors.is_empty(), "HTML parse errors: {:?}", doc.errors);
    for tag in [
        "script", "link", "img", "iframe", "object", "embed", "source", "base",
    ] {
        let sel = Selector::parse(tag).expect("selector");
        assert_eq!(doc.select(&sel).count(), 0, "a <{tag}> element");
    }
    let all = Selector::parse("*").expect("selector");
    for el in doc.select(&all) {
        for (name, value) in el.value().attrs() {
            let refers = matches!(
                name,
                "src" | "href" | "xlink:href" | "action" | "data" | "srcset" | "poster"
            );
            assert!(
                !refers || value.starts_with('#'),
                "<{} {name}=\"{value}\"> points outside the page",
                el.value().name()
            );
        }
    }
    for (i, _) in html.match_indices("url(") {
        assert!(
            html[i..].starts_with("url(#"),
            "a CSS url() outside the page"
        );
    }
    doc
}

fn ids(doc: &Html, selector: &str) -> Vec<String> {
    let sel = Selector::parse(selector).expect("selector");
    doc.select(&sel)
        .filter_map(|e| e.value().attr("id").map(String::from))
        .collect()
}

fn write(dir: &Path, name: &str, text: &str) {
    std::fs::write(dir.join(name), text).expect("write");
}

#[test]
fn run_page_is_self_contained_with_its_plot_and_tables() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("cls_token");
    std::fs::create_dir_all(&dir).expect("dir");
    write(
        &dir,
        "run.json",
        r#"{"accumulation": 1, "backend": "Autodiff<Flex>", "burn": "0.21.0",
        "devices": 1, "git_revision": "abc <def>", "global_batch": 128, "nodes": 1, "seed": 0}"#,
    );
    write(
        &dir,
        "config.toml",
        "name = \"cls_token\"\nseed = 0\n# <b>not markup</b>\n",
    );
    write(
        &dir,
        "final.json",
        r#"{"n_clean": 20, "n_robust": 8, "attack": "pgd-20", "eps": 0.1,
        "clean_mode_clean_acc": 0.9, "robust_mode_clean_acc": 0.8,
        "clean_mode_robust_acc": 0.0, "robust_mode_robust_acc": 0.375,
        "train_seconds": 12.0, "seed": 0}"#,
    );
    let epoch = |e: usize| {
        format!(
            r#"{{"epoch": {e}, "step": {}, "loss": {}, "clean_acc": 0.{e}, "robust_acc": 0.0{e}, "lr": 0.001, "images_per_s": 100.0}}"#,
            10 * e,
            2.0 / e as f64
        )
    };
    write(
        &dir,
        "metrics.jsonl",
        &format!("{}\n{}\n{}\n", epoch(1), epoch(2), epoch(3)),
    );
    write(
        &dir,
        "params.json",
        r#"{"model": "m", "adapter": "cls_token",
        "total_params_no_adapter": 90, "total_params": 100, "params_per_domain": 5}"#,
    );
    write(
        &dir,
        "eval-standard-robust.json",
        r#"{"seed": 0, "eps": 0.1, "n": 4,
        "clean_accuracy": 0.75, "robust_accuracy": 0.5, "per_attack": [{"name": "apgd-ce"}],
        "sanity": {"outputs_look_like_probabilities": false, "nondeterministic_forward": false,
          "max_forward_difference": 0.0, "zero_gradient_samples": [1],
          "black_box_only_breaks": 0, "black_box_beats_white_box": false, "out_of_ball": 0,
          "non_monotone_in_eps": null}}"#,
    );
    let html = advsoup_report::run_page(&dir).expect("page");
    let doc = self_contained(&html);
    assert_eq!(ids(&doc, "figure"), ["training-curves"]);
    let svg = Selector::parse("figure#training-curves svg").expect("selector");
    assert_eq!(doc.select(&svg).count(), 1, "the curves are inline SVG");
    assert_eq!(
        ids(&doc, "table"),
        ["final-table", "epochs", "eval-reports", "run-meta"]
    );
    assert!(
        html.contains("1 samples with a zero input gradient"),
        "sanity flags shown"
    );
    assert!(
        html.contains("&lt;b&gt;not markup&lt;/b&gt;"),
        "config escaped"
    );
    assert!(html.contains("advsoup report --run"), "commands to rerun");
    // a missing required record names its file
    std::fs::remove_file(dir.join("run.json")).expect("rm");
    let e = advsoup_report::run_page(&dir)
        .expect_err("no run.json")
        .to_string();
    assert!(e.contains("run.json"), "{e}");
}

fn results() -> SweepResults {
    let config: SweepConfig = serde_json::from_str(
        r#"{"name": "t", "base": "configs/fmnist-cls.toml", "seed": 0, "set": [],
        "prompt_tokens": 4, "lora_rank": 4, "eval": {"n_robust": 10, "apgd_iter": 5},
        "soup": {"betas": "0,1", "n_clean": 10, "n_shift": 10, "corruptions": "contrast",
        "severity": 3, "n_held_out": 10, "n_test": 10}}"#,
    )
    .expect("config");
    let mut rows = Vec::new();
    for seed in [0, 1] {
        for (name, clean, params) in [
            ("nominal", 0.80, 0),
            ("cls_token", 0.81, 64),
            ("bias", 0.80, 100),
        ] {
            let mut r = row(name, clean + 0.01 * seed as f64, 0.5, 0.45, params);
            r.seed = seed;
            if name == "cls_token" {
                r.standard = Some(StandardResult {
                    n: 20,
                    clean_acc: 0.8,
                    robust_acc: 0.4,
                    attacks: vec!["apgd-ce".into(), "apgd-t".into()],
                    sanity_flags: vec!["2 samples with a zero input gradient".into()],
                    report: "r".into(),
                });
            }
            rows.push(r);
        }
    }
    let budget = BudgetResults {
        spec: BudgetSpec {
            label: "4x epochs".into(),
            set: vec!["optim.epochs=8".into()],
        },
        rows: [("nominal", 0.85), ("cls_token", 0.86)]
            .iter()
            .flat_map(|(n, acc)| {
                [0u64, 1].map(|seed| BudgetRow {
                    name: (*n).into(),
                    seed,
                    clean_acc: acc + 0.001 * seed as f64,
                    n_clean: 100,
                    robust_acc: 0.5,
                    n_robust: 10,
                    train_seconds: 1.0,
                    run_dir: "r".into(),
                })
            })
            .collect(),
    };
    let claims = claims(&rows, Some(&budget));
    let mut r = SweepResults {
        config,
        quick: true,
        eps: 0.1,
        seeds: vec![0, 1],
        rows,
        summary: vec![],
        budget: Some(budget),
        claims,
        machines: vec![],
        runs_without_cpu: 0,
    };
    r.summary = ["nominal", "cls_token", "bias"]
        .iter()
        .map(|n| {
            let rs: Vec<_> = r.rows.iter().filter(|x| x.name == *n).collect();
            let i = |f: fn(&advsoup_records::adapter_sweep::RowResult) -> f64| {
                advsoup_records::stats::interval(&rs.iter().map(|x| f(x)).collect::<Vec<_>>())
            };
            advsoup_records::adapter_sweep::RowSummary {
                name: (*n).into(),
                label: (*n).into(),
                has_adapter: rs[0].has_adapter,
                params_per_domain: rs[0].params_per_domain,
                seeds: vec![0, 1],
                clean_acc: i(|x| x.clean_acc),
                robust_acc_pgd20: i(|x| x.robust_acc_pgd20),
                robust_acc_apgd_ce: i(|x| x.robust_acc_apgd_ce),
                robust_acc_standard: None,
                mean_corruption_acc: i(|x| x.mean_corruption_acc),
                mean_soup_acc: i(|x| x.mean_soup_acc),
            }
        })
        .collect();
    r
}

#[test]
fn sweep_page_is_self_contained_with_every_plot_and_table() {
    let r = results();
    let curve = advsoup_report::training_curves(
        &advsoup_report::read_metrics(Path::new("/nonexistent")).unwrap_or_default(),
        "x",
    );
    assert!(curve.is_err(), "no epochs, no plot");
    let html =
        advsoup_report::sweep_page(&r, &[], "cargo xtask sweep-adapters --quick --seeds 0,1")
            .expect("page");
    let doc = self_contained(&html);
    assert_eq!(
        ids(&doc, "table"),
        [
            "claims-table",
            "summary-table",
            "budget-table",
            "budget-runs-table",
            "standard-table",
            "per-seed-table",
            "shifts-table"
        ]
    );
    assert_eq!(ids(&doc, "figure"), ["soup-fronts"]);
    let svg = Selector::parse("figure#soup-fronts svg").expect("selector");
    assert_eq!(doc.select(&svg).count(), 1);
    // every claim is on the page with its verdict and numbers
    for c in &r.claims {
        assert!(
            html.contains(&advsoup_report::escape(&c.evidence)),
            "{}",
            c.id
        );
    }
    assert!(
        html.contains("2 samples with a zero input gradient"),
        "flags beside the numbers"
    );
    assert!(html.contains("+1.12 points"), "the paper's claim quoted");
}

/// The pages a real sweep wrote (the sweep's page and every run's page under it) pass the same
/// checks. Needs a sweep on disk:
/// `cargo xtask sweep-adapters --quick --dev --out target/ci-sweep && cargo test -p
/// advsoup-report --test pages -- --ignored` (ADVSOUP_SWEEP_DIR overrides the directory,
/// relative to the workspace root).
#[test]
#[ignore = "needs a sweep on disk: cargo xtask sweep-adapters --quick --dev --out target/ci-sweep"]
fn generated_pages_are_self_contained() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let dir =
        root.join(std::env::var("ADVSOUP_SWEEP_DIR").unwrap_or_else(|_| "target/ci-sweep".into()));
    let sweep = std::fs::read_to_string(dir.join("report.html")).expect("the sweep's report.html");
    let doc = self_contained(&sweep);
    for id in [
        "claims-table",
        "summary-table",
        "per-seed-table",
        "shifts-table",
    ] {
        assert!(ids(&doc, "table").iter().any(|t| t == id), "{id}");
    }
    assert!(ids(&doc, "figure").iter().any(|f| f == "soup-fronts"));
    let mut pages = 0;
    for seed in std::fs::read_dir(dir.join("runs"))
        .expect("runs")
        .filter_map(|e| e.ok())
    {
        for run in std::fs::read_dir(seed.path())
            .expect("seed dir")
            .filter_map(|e| e.ok())
        {
            let page = run.path().join("report.html");
            if page.is_file() {
                let html = std::fs::read_to_string(&page).expect("page");
                let doc = self_contained(&html);
                assert_eq!(
                    ids(&doc, "figure"),
                    ["training-curves"],
                    "{}",
                    page.display()
                );
                pages += 1;
            }
        }
    }
    assert!(pages > 0, "no run page under {}", dir.display());
    eprintln!("{pages} run pages and the sweep page checked");
}
