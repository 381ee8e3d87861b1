//! What a sweep or a selection is asked to do, parsed from the soup commands' option values:
//! soup weights (`--betas`), attack presets (`--attacks`), corruptions (`--corruptions`) and a
//! shift (`--shift`). Messages name the option they are about.

use advsoup_attacks::{AttackSpec, Evaluator, ThreatModel};
use advsoup_data::corrupt::Corruption;

use crate::SoupError;
use crate::records::SweepAttack;

/// Parses a list of soup weights: `a:b:step` (inclusive of `b` when it falls on the grid, e.g.
/// `0:1:0.1` is 11 values) or a comma list `0,0.5,1`. Every β must lie in [0, 1]; values are
/// rounded to 6 decimals so that grid points are exact (`0.3`, not `0.30000001`).
///
/// # Errors
/// A lowercase message naming what was expected.
pub fn parse_betas(s: &str) -> Result<Vec<f32>, String> {
    let bad = |why: &str| format!("betas `{s}`: {why}");
    let num = |t: &str| -> Result<f64, String> {
        t.trim()
            .parse::<f64>()
            .ok()
            .filter(|v| v.is_finite())
            .ok_or_else(|| bad(&format!("`{}` is not a number", t.trim())))
    };
    let round = |v: f64| ((v * 1e6).round() / 1e6) as f32;
    let values: Vec<f32> = if s.contains(':') {
        let parts: Vec<&str> = s.split(':').collect();
        if parts.len() != 3 {
            return Err(bad("expected start:end:step, e.g. 0:1:0.1"));
        }
        let (a, b, step) = (num(parts[0])?, num(parts[1])?, num(parts[2])?);
        if step <= 0.0 {
            return Err(bad("step must be positive"));
        }
        if b < a {
            return Err(bad("end must not be below start"));
        }
        let n = ((b - a) / step + 1e-6).floor() as usize;
        if n > 10_000 {
            return Err(bad("more than 10000 values"));
        }
        (0..=n).map(|i| round(a + i as f64 * step)).collect()
    } else {
        s.split(',')
            .filter(|t| !t.trim().is_empty())
            .map(|t| num(t).map(round))
            .collect::<Result<_, _>>()?
    };
    if values.is_empty() {
        return Err(bad("no values"));
    }
    if let Some(v) = values.iter().find(|v| !(0.0..=1.0).contains(*v)) {
        return Err(bad(&format!("{v} is outside [0, 1]")));
    }
    Ok(values)
}

/// Builds the named attack presets (a comma list) at `eps`, APGD with `apgd_iter` iterations;
/// every preset's random starts are seeded with `seed`.
///
/// # Errors
/// An unknown preset, an invalid radius, or an empty list.
pub fn build_attacks(
    names: &str,
    eps: f64,
    seed: u64,
    apgd_iter: usize,
) -> Result<Vec<SweepAttack>, SoupError> {
    let mut out = Vec::new();
    for name in names.split(',').map(str::trim).filter(|n| !n.is_empty()) {
        let mut evaluator =
            Evaluator::preset(name, ThreatModel::Linf, eps, seed).map_err(|source| {
                SoupError::Preset {
                    name: name.to_string(),
                    source,
                }
            })?;
        for a in &mut evaluator.attacks {
            if let AttackSpec::Apgd(c) = a {
                c.n_iter = apgd_iter;
            }
        }
        let evaluator =
            Evaluator::new(evaluator.attacks, seed).map_err(|source| SoupError::ApgdIter {
                name: name.to_string(),
                apgd_iter,
                source,
            })?;
        out.push(SweepAttack {
            name: name.to_string(),
            evaluator,
        });
    }
    if out.is_empty() {
        return Err(SoupError::NoAttack);
    }
    Ok(out)
}

/// Parses `all`, `none` or a comma list of corruption names.
///
/// # Errors
/// An unknown corruption name.
pub fn parse_corruptions(s: &str) -> Result<Vec<Corruption>, SoupError> {
    match s.trim() {
        "all" => Ok(Corruption::ALL.to_vec()),
        "none" | "" => Ok(Vec::new()),
        list => list
            .split(',')
            .map(|c| {
                c.trim()
                    .parse::<Corruption>()
                    .map_err(SoupError::Corruptions)
            })
            .collect(),
    }
}

/// Parses `corruption[:severity]` (severity 3 if left out).
///
/// # Errors
/// An unknown corruption or a severity outside 1..=5.
pub fn parse_shift(s: &str) -> Result<(Corruption, u8), SoupError> {
    let (name, sev) = match s.split_once(':') {
        Some((n, v)) => (
            n,
            v.parse::<u8>()
                .ok()
                .filter(|v| (1..=5).contains(v))
                .ok_or_else(|| SoupError::Severity {
                    shift: s.to_string(),
                })?,
        ),
        None => (s, 3),
    };
    let c = name
        .parse::<Corruption>()
        .map_err(|source| SoupError::Shift {
            shift: s.to_string(),
            source,
        })?;
    Ok((c, sev))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn betas_from_a_range_are_inclusive_and_exact() {
        let b = parse_betas("0:1:0.1").expect("range");
        assert_eq!(b.len(), 11);
        assert_eq!(b[0], 0.0);
        assert_eq!(b[3], 0.3);
        assert_eq!(b[10], 1.0);
        assert_eq!(
            parse_betas("0.2:0.5:0.15").expect("range"),
            vec![0.2, 0.35, 0.5]
        );
        assert_eq!(
            parse_betas("0:1:0.3").expect("range"),
            vec![0.0, 0.3, 0.6, 0.9]
        );
        assert_eq!(parse_betas("1,0.5, 0").expect("list"), vec![1.0, 0.5, 0.0]);
        assert_eq!(parse_betas("0.7").expect("one"), vec![0.7]);
    }

    #[test]
    fn bad_betas_are_rejected() {
        for s in [
            "", "0:1", "0:1:0", "0:1:-0.1", "1:0:0.1", "0:2:0.5", "a,b", "-0.1", "0:1:x",
        ] {
            assert!(parse_betas(s).is_err(), "{s:?} accepted");
        }
        let e = parse_betas("0,1.5").expect_err("out of range");
        assert!(e.contains("1.5 is outside [0, 1]"), "{e}");
    }

    #[test]
    fn option_parsers_reject_typos() {
        assert_eq!(parse_corruptions("all").expect("all").len(), 14);
        assert!(parse_corruptions("none").expect("none").is_empty());
        assert!(parse_corruptions("gaussian_noise,contrastt").is_err());
        assert_eq!(
            parse_shift("contrast:5").expect("shift"),
            (Corruption::Contrast, 5)
        );
        assert_eq!(parse_shift("fog").expect("shift"), (Corruption::Fog, 3));
        assert!(parse_shift("fog:6").is_err());
        assert!(parse_shift("smog").is_err());
        let a = build_attacks("pgd-10, apgd-ce", 0.1, 4, 25).expect("attacks");
        assert_eq!(a.len(), 2);
        match &a[1].evaluator.attacks[0] {
            AttackSpec::Apgd(c) => assert_eq!(c.n_iter, 25),
            other => panic!("expected apgd, got {other:?}"),
        }
        assert_eq!(a[0].evaluator.seed, 4);
        assert!(build_attacks("pgd-x", 0.1, 0, 25).is_err());
        assert!(build_attacks("", 0.1, 0, 25).is_err());
    }

    #[test]
    fn option_errors_read_as_before() {
        // The cli prints these chains with `{:#}`; the text is part of its interface.
        let chain = |e: &dyn std::error::Error| {
            let mut s = e.to_string();
            let mut cur = e.source();
            while let Some(c) = cur {
                s.push_str(&format!(": {c}"));
                cur = c.source();
            }
            s
        };
        let e = build_attacks("pgd-x", 0.1, 0, 25).expect_err("unknown preset");
        assert!(
            chain(&e).starts_with("--attacks: preset `pgd-x`: "),
            "{}",
            chain(&e)
        );
        let e = build_attacks(" , ", 0.1, 0, 25).expect_err("empty");
        assert_eq!(chain(&e), "--attacks: no attack given");
        let e = parse_shift("fog:6").expect_err("severity");
        assert_eq!(chain(&e), "--shift `fog:6`: severity must be 1..=5");
        let e = parse_shift("smog").expect_err("name");
        assert!(chain(&e).starts_with("--shift `smog`: "), "{}", chain(&e));
        let e = parse_corruptions("contrastt").expect_err("name");
        assert!(chain(&e).starts_with("--corruptions: "), "{}", chain(&e));
    }
}
