//! How many operations a recording of L may hold: no more than the memory
//! the process can have would carry through the recording, its backward
//! sweep and its compiled replay. A forward pass quadratic by definition
//! records quadratically many operations (a cumulative sum at N = 30000,
//! 4.5·10⁸: about 30 GB at the peak), and a recording past the memory
//! there is would have the process killed, every file's report lost. A
//! recording refused here is a gradient derived by forward mode instead,
//! and the report says why (see `crate::verify::derivation`).

use std::sync::OnceLock;

/// Bytes one recorded operation takes at the peak of checking a gradient
/// claim: the tape's entry and value (20 bytes, up to twice that while
/// their vectors grow), the backward sweep's adjoints, the compiled
/// replay's step and its schedule. Measured at the peak of a cumulative
/// sum, release build: 69 bytes per operation at N = 8000 (3.2·10⁷
/// operations, 2.2 GB), 59 at N = 20000 (2.0·10⁸, 11.8 GB); the rest is
/// margin.
pub const BYTES_PER_OPERATION: u64 = 80;

/// Bytes of address space one recorded operation takes at the peak, for
/// a limit on the address space (`ulimit -v`): the vectors' reserved
/// capacity counts there before it is touched. Measured (`VmPeak`): 111
/// bytes per operation at N = 6000 (1.8·10⁷ operations, 2.0 GB, where
/// the resident peak was 1.25 GB); the rest is margin.
pub const ADDRESS_BYTES_PER_OPERATION: u64 = 128;

/// Address space the process reserves beside the recording, which an
/// address-space limit counts: its threads' stacks and the allocator's
/// per-thread arenas (64 MiB each).
pub const ADDRESS_RESERVE: u64 = 256 << 20;

/// Operations a recording may hold on this machine, now: the memory
/// available to the process over [`BYTES_PER_OPERATION`], read once; at
/// most `cap` (what a recording's indices can name). Where no reading is
/// to be had, `cap`.
pub fn operation_limit(cap: usize) -> usize {
    static AVAILABLE: OnceLock<Option<u64>> = OnceLock::new();
    let available = *AVAILABLE.get_or_init(available_bytes);
    limit_for(available, cap)
}

/// [`operation_limit`] for `available` bytes.
pub fn limit_for(available: Option<u64>, cap: usize) -> usize {
    available.map_or(cap, |bytes| {
        usize::try_from(bytes / BYTES_PER_OPERATION).map_or(cap, |n| n.min(cap))
    })
}

/// The memory this process may still take: the least of what the kernel
/// reports available (`MemAvailable`), what its control group's limit
/// leaves (v2 or v1), and what its address-space limit (`ulimit -v`)
/// leaves, where they can be read.
fn available_bytes() -> Option<u64> {
    let read = |path: &str| std::fs::read_to_string(path).ok();
    let system = read("/proc/meminfo").and_then(|m| mem_available(&m));
    // In resident bytes' terms: what the operations the address space
    // holds take resident.
    let address_space = read("/proc/self/limits").and_then(|limits| {
        let status = read("/proc/self/status")?;
        let left = address_space_left(&limits, &status)?.saturating_sub(ADDRESS_RESERVE);
        Some(left / ADDRESS_BYTES_PER_OPERATION * BYTES_PER_OPERATION)
    });
    let group = read("/proc/self/cgroup").and_then(|groups| {
        cgroup_dirs(&groups).into_iter().find_map(|(dir, version)| {
            let (max, used) = match version {
                CgroupVersion::V2 => ("memory.max", "memory.current"),
                CgroupVersion::V1 => ("memory.limit_in_bytes", "memory.usage_in_bytes"),
            };
            headroom(
                &read(&format!("{dir}/{max}"))?,
                &read(&format!("{dir}/{used}"))?,
            )
        })
    });
    [system, group, address_space].into_iter().flatten().min()
}

/// What the soft limit on the address space leaves above the process's
/// size now, from `/proc/self/limits` and `/proc/self/status`; `None` for
/// no limit.
pub fn address_space_left(limits: &str, status: &str) -> Option<u64> {
    let line = limits
        .lines()
        .find_map(|l| l.strip_prefix("Max address space"))?;
    let limit: u64 = line.split_whitespace().next()?.parse().ok()?;
    let size = status.lines().find_map(|l| l.strip_prefix("VmSize:"))?;
    let kib: u64 = size.trim().strip_suffix("kB")?.trim().parse().ok()?;
    Some(limit.saturating_sub(kib.saturating_mul(1024)))
}

/// `MemAvailable` of `/proc/meminfo`, in bytes.
pub fn mem_available(meminfo: &str) -> Option<u64> {
    let line = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemAvailable:"))?;
    let kib: u64 = line.trim().strip_suffix("kB")?.trim().parse().ok()?;
    kib.checked_mul(1024)
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum CgroupVersion {
    V1,
    V2,
}

/// The directories holding this process's memory limits, from the lines
/// of `/proc/self/cgroup`: v2's `0::/path`, v1's `N:memory:/path`.
pub fn cgroup_dirs(groups: &str) -> Vec<(String, CgroupVersion)> {
    groups
        .lines()
        .filter_map(|line| {
            let mut fields = line.splitn(3, ':');
            let (_, controllers, path) = (fields.next()?, fields.next()?, fields.next()?);
            let path = path.trim_end_matches('/');
            if controllers.is_empty() {
                Some((format!("/sys/fs/cgroup{path}"), CgroupVersion::V2))
            } else if controllers.split(',').any(|c| c == "memory") {
                Some((format!("/sys/fs/cgroup/memory{path}"), CgroupVersion::V1))
            } else {
                None
            }
        })
        .collect()
}

/// What a limit leaves above what is used, in bytes; `None` for no limit
/// (`max`, or v1's near-2⁶³ "unlimited").
pub fn headroom(limit: &str, used: &str) -> Option<u64> {
    let limit: u64 = limit.trim().parse().ok()?;
    if limit >= 1 << 62 {
        return None;
    }
    let used: u64 = used.trim().parse().ok()?;
    Some(limit.saturating_sub(used))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_limit_is_the_memory_over_what_an_operation_takes() {
        assert_eq!(limit_for(Some(80 * 1000), usize::MAX), 1000);
        assert_eq!(limit_for(Some(80 * 1000 + 79), usize::MAX), 1000);
        // Capped by what the recording's indices can name.
        assert_eq!(limit_for(Some(80 * 1000), 999), 999);
        assert_eq!(limit_for(None, 999), 999);
    }

    #[test]
    fn available_memory_is_read_from_the_kernels_words() {
        let meminfo =
            "MemTotal:       24634636 kB\nMemFree:  1000 kB\nMemAvailable:   24251580 kB\n";
        assert_eq!(mem_available(meminfo), Some(24_251_580 * 1024));
        assert_eq!(mem_available("MemTotal: 5 kB\n"), None);
        assert_eq!(mem_available("MemAvailable: lots kB\n"), None);

        assert_eq!(headroom("1073741824\n", "73741824\n"), Some(1_000_000_000));
        assert_eq!(headroom("100", "200"), Some(0));
        assert_eq!(headroom("max\n", "5"), None);
        assert_eq!(headroom("9223372036854771712", "5"), None);

        let groups = "4:memory:/jobs/a\n1:cpu:/\n0::/user.slice/x/\n";
        assert_eq!(
            cgroup_dirs(groups),
            vec![
                (
                    "/sys/fs/cgroup/memory/jobs/a".to_string(),
                    CgroupVersion::V1
                ),
                ("/sys/fs/cgroup/user.slice/x".to_string(), CgroupVersion::V2),
            ]
        );
        let limits = "Max open files            1024                 1048576              files\nMax address space         4000000000           unlimited            bytes\n";
        let status = "Name:\tdlverify\nVmSize:\t  100000 kB\n";
        assert_eq!(
            address_space_left(limits, status),
            Some(4_000_000_000 - 102_400_000)
        );
        let unlimited =
            "Max address space         unlimited            unlimited            bytes\n";
        assert_eq!(address_space_left(unlimited, status), None);

        assert_eq!(
            cgroup_dirs("0::/\n"),
            vec![("/sys/fs/cgroup".to_string(), CgroupVersion::V2)]
        );
    }
}
