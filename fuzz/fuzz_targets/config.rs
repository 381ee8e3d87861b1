//! The experiment config loader: TOML parsing, `--set` overrides, deserializing with unknown keys
//! rejected, and `validate()`. The input is UTF-8 text; lines after a line `--` are overrides.
//!
//! Oracle: no panic; an accepted config resolves to a model config, its parameter counts are
//! computable, and it survives the round trip the run directory makes (written with
//! `toml::to_string_pretty`, read back by `eval`/`soup` with `TrainConfig::load`).
#![no_main]

use std::path::Path;

use advsoup_adapters::AdaptedVitConfig;
use advsoup_train::TrainConfig;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (text, overrides) = match text.split_once("\n--\n") {
        Some((t, o)) => (t, o.lines().map(str::to_string).collect::<Vec<_>>()),
        None => (text, Vec::new()),
    };
    let path = Path::new("fuzz.toml");
    let Ok(config) = TrainConfig::parse(text, path, &overrides) else {
        return;
    };
    let vit = config.vit().expect("validate() accepted the model section");
    let adapted = AdaptedVitConfig {
        vit: vit.clone(),
        adapter: config.model.adapter,
    };
    // Overflow checks are on (cargo fuzz -a): these panic if the sizes overflow.
    let _ = vit.num_params();
    let _ = adapted.num_params();
    let _ = config.model.adapter.params_per_domain(&vit);
    let resolved = toml::to_string_pretty(&config).expect("an accepted config serializes");
    let again = TrainConfig::parse(&resolved, path, &[])
        .unwrap_or_else(|e| panic!("the resolved config does not load again: {e}\n{resolved}"));
    assert_eq!(again, config, "round trip changed the config");
});
