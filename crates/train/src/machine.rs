//! The machine a run computes on, as recorded in `run.json` ([`CpuInfo`]).

use advsoup_records::run::CpuInfo;

/// This machine's CPU: architecture, model name (Linux) and the SIMD extensions that burn's
/// gemm and advsoup's fused kernels dispatch on.
pub fn this_cpu() -> CpuInfo {
    CpuInfo {
        arch: std::env::consts::ARCH.to_string(),
        model: model_name(),
        simd: simd_features(),
    }
}

/// The first `model name` of `/proc/cpuinfo` (x86) or its `Model` / `CPU part` line (Arm
/// boards), if the file exists.
fn model_name() -> Option<String> {
    let text = std::fs::read_to_string("/proc/cpuinfo").ok()?;
    model_from_cpuinfo(&text)
}

fn model_from_cpuinfo(text: &str) -> Option<String> {
    ["model name", "Model", "CPU part"].iter().find_map(|key| {
        text.lines().find_map(|line| {
            let (k, v) = line.split_once(':')?;
            (k.trim() == *key && !v.trim().is_empty()).then(|| v.trim().to_string())
        })
    })
}

/// The features of `$name` that `std::arch::$detect!` finds, in the order given.
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
macro_rules! detected {
    ($detect:ident: $($name:tt),*) => {{
        let mut found = Vec::new();
        $(if std::arch::$detect!($name) { found.push($name.to_string()); })*
        found
    }};
}

/// gemm's x86-v3 (AVX2 + FMA) and x86-v4 (AVX-512 F/BW/CD/DQ/VL) levels, and what
/// `advsoup_vit::fast` checks for itself (AVX2, AVX-512 F).
#[cfg(target_arch = "x86_64")]
fn simd_features() -> Vec<String> {
    detected!(is_x86_feature_detected: "sse4.2", "avx", "avx2", "fma", "avx512f", "avx512bw",
        "avx512cd", "avx512dq", "avx512vl")
}

#[cfg(target_arch = "aarch64")]
fn simd_features() -> Vec<String> {
    detected!(is_aarch64_feature_detected: "neon", "fp16", "sve")
}

#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
fn simd_features() -> Vec<String> {
    Vec::new()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_name_is_read_from_cpuinfo_lines() {
        let x86 = "processor\t: 0\nvendor_id\t: GenuineIntel\nmodel\t\t: 143\nmodel name\t: Intel(R) Xeon(R) Processor\n";
        assert_eq!(
            model_from_cpuinfo(x86).as_deref(),
            Some("Intel(R) Xeon(R) Processor")
        );
        let arm = "processor\t: 0\nBogoMIPS\t: 48.00\nCPU part\t: 0xd0c\n";
        assert_eq!(model_from_cpuinfo(arm).as_deref(), Some("0xd0c"));
        assert_eq!(model_from_cpuinfo("processor\t: 0\n"), None);
    }

    #[test]
    fn this_cpu_names_the_architecture_and_a_stable_feature_order() {
        let cpu = this_cpu();
        assert_eq!(cpu.arch, std::env::consts::ARCH);
        assert_eq!(cpu, this_cpu(), "detection is deterministic");
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx2") {
            assert!(cpu.simd.iter().any(|f| f == "avx2"), "{cpu:?}");
        }
    }
}
