//! Process memory as the kernel reports it (`/proc/self/status`): the resident set now
//! (`VmRSS`) and its high-water mark (`VmHWM`, the peak since the process started).
//!
//! A peak is only comparable between runs that start from the same state, so a benchmark that
//! compares, say, PGD with K = 1 and K = 20 measures each in a fresh child process and records
//! one [`MemoryRecord`] per child. On systems without `/proc` the readers return `None`.

pub use advsoup_records::bench::{MemoryRecord, memory_table};

const MIB: f64 = 1024.0 * 1024.0;

/// Reads a `kB` field (e.g. `VmHWM`) of a `/proc/<pid>/status` text, in bytes.
pub fn status_field_bytes(status: &str, field: &str) -> Option<u64> {
    status.lines().find_map(|line| {
        let rest = line.strip_prefix(field)?.strip_prefix(':')?;
        let kb = rest.trim().strip_suffix("kB")?.trim().parse::<u64>().ok()?;
        Some(kb * 1024)
    })
}

fn self_status(field: &str) -> Option<u64> {
    let text = std::fs::read_to_string("/proc/self/status").ok()?;
    status_field_bytes(&text, field)
}

/// The process's peak resident set (`VmHWM`) in bytes.
pub fn peak_rss_bytes() -> Option<u64> {
    self_status("VmHWM")
}

/// The process's current resident set (`VmRSS`) in bytes.
pub fn rss_bytes() -> Option<u64> {
    self_status("VmRSS")
}

/// Bytes to MiB.
pub fn mib(bytes: u64) -> f64 {
    bytes as f64 / MIB
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_kb_fields() {
        let text = "Name:\tx\nVmPeak:\t  2048 kB\nVmHWM:\t    1536 kB\nVmRSS:\t 1024 kB\n";
        assert_eq!(status_field_bytes(text, "VmHWM"), Some(1536 * 1024));
        assert_eq!(status_field_bytes(text, "VmRSS"), Some(1024 * 1024));
        assert_eq!(status_field_bytes(text, "VmSwap"), None);
        assert_eq!(status_field_bytes("VmHWM:\tlots kB\n", "VmHWM"), None);
    }

    #[test]
    fn own_process_has_a_peak_at_least_its_rss() {
        // RSS first: the peak read afterwards covers it (two reads of the file, RSS may grow).
        if let (Some(now), Some(peak)) = (rss_bytes(), peak_rss_bytes()) {
            assert!(peak > 0 && peak >= now, "peak {peak} now {now}");
        }
        let r = MemoryRecord {
            name: "pgd".into(),
            steps: 20,
            rss_before_mib: 10.0,
            peak_rss_mib: 12.5,
        };
        assert_eq!(r.delta_mib(), 2.5);
        assert!(memory_table(&[r]).contains("| pgd | 20 | 10.0 | 12.5 | 2.5 |"));
    }
}
