//! The server process's own numbers for `/metrics`: CPU time, resident
//! memory, open descriptors against the limit, and threads, read from
//! `/proc/self` at scrape time (Linux; elsewhere nothing is reported).

/// One reading of the process.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ProcessStats {
    /// User and system CPU time since the process started.
    pub cpu_seconds: f64,
    pub resident_bytes: u64,
    pub threads: u64,
    pub open_fds: u64,
    /// The soft limit on open descriptors; none when unlimited.
    pub max_fds: Option<u64>,
}

/// Reads the process's numbers; none where `/proc` is not there.
pub fn read() -> Option<ProcessStats> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let mut stats = parse_stat(
        &stat,
        rustix::param::clock_ticks_per_second(),
        rustix::param::page_size() as u64,
    )?;
    stats.open_fds = std::fs::read_dir("/proc/self/fd")
        .map(|entries| entries.count() as u64)
        .unwrap_or(0);
    let limit = rustix::process::getrlimit(rustix::process::Resource::Nofile);
    stats.max_fds = limit.current;
    Some(stats)
}

/// CPU time, threads and resident memory from `/proc/self/stat`. The
/// command name (field 2) is in parentheses and may hold spaces or
/// parentheses itself, so fields are counted from its last `)`.
fn parse_stat(stat: &str, ticks_per_second: u64, page_size: u64) -> Option<ProcessStats> {
    let (_, after_name) = stat.rsplit_once(')')?;
    // Field 3 (the state) is the first after the name.
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let field = |number: usize| -> Option<u64> { fields.get(number - 3)?.parse().ok() };
    let ticks = field(14)? + field(15)?;
    #[allow(clippy::cast_precision_loss)]
    let cpu_seconds = ticks as f64 / ticks_per_second.max(1) as f64;
    Some(ProcessStats {
        cpu_seconds,
        threads: field(20)?,
        resident_bytes: field(24)?.saturating_mul(page_size),
        open_fds: 0,
        max_fds: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_are_counted_after_the_last_parenthesis_of_the_name() {
        // pid (comm) state ppid … utime(14) stime(15) … threads(20) … rss(24)
        let stat = "42 (odd) name)) S 1 42 42 0 -1 4194560 100 0 0 0 \
                    250 50 0 0 20 0 7 0 1000 123456789 300 18446744073709551615";
        let stats = parse_stat(stat, 100, 4096).unwrap();
        assert!((stats.cpu_seconds - 3.0).abs() < 1e-9);
        assert_eq!(stats.threads, 7);
        assert_eq!(stats.resident_bytes, 300 * 4096);
    }

    #[test]
    fn a_short_or_garbled_stat_reads_as_nothing() {
        assert_eq!(parse_stat("42 (x) S 1 2", 100, 4096), None);
        assert_eq!(parse_stat("no parenthesis", 100, 4096), None);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn this_process_has_threads_memory_and_descriptors() {
        let stats = read().unwrap();
        assert!(stats.threads >= 1);
        assert!(stats.resident_bytes > 0);
        assert!(stats.open_fds >= 3);
        assert!(stats.max_fds.is_none_or(|max| max >= stats.open_fds));
    }
}
