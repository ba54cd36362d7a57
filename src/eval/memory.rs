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
/// least [`ALWAYS_ALLOWED`] and at most `cap` (what a recording's indices
/// can name). Where no reading is to be had, `cap`.
pub fn operation_limit(cap: usize) -> usize {
    static AVAILABLE: OnceLock<Option<u64>> = OnceLock::new();
    let available = *AVAILABLE.get_or_init(available_bytes);
    limit_for(available, cap)
}

/// Operations a recording may always hold, whatever the readings say:
/// about 170 MB at the peak, which every bundled spec at its sizes and A2
/// at n = m = 512 (1.3·10⁶ operations) stay under. A reading that is
/// wrong low must not send every layer to forward mode, which has no
/// replays and takes a pass per eight elements. The price: a process
/// with less than this to spare can still be killed (the README says so).
pub const ALWAYS_ALLOWED: usize = 1 << 21;

/// [`operation_limit`] for `available` bytes.
pub fn limit_for(available: Option<u64>, cap: usize) -> usize {
    let carried = available.map_or(cap, |bytes| {
        usize::try_from(bytes / BYTES_PER_OPERATION).unwrap_or(cap)
    });
    carried.max(ALWAYS_ALLOWED).min(cap)
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
    let group = read("/proc/self/cgroup").and_then(|groups| group_headroom(&groups, read));
    [system, group, address_space].into_iter().flatten().min()
}

/// The tightest headroom of the control groups `groups` (the text of
/// `/proc/self/cgroup`) names, each group's files read by `read`; `None`
/// where no group has a limit that can be read.
pub fn group_headroom(groups: &str, read: impl Fn(&str) -> Option<String>) -> Option<u64> {
    cgroup_dirs(groups)
        .into_iter()
        .filter_map(|(dir, version)| {
            let (max, used, cache) = match version {
                CgroupVersion::V2 => (
                    "memory.max",
                    "memory.current",
                    ["inactive_file", "active_file"],
                ),
                CgroupVersion::V1 => (
                    "memory.limit_in_bytes",
                    "memory.usage_in_bytes",
                    ["total_inactive_file", "total_active_file"],
                ),
            };
            // The group's file cache (not shared memory, which is not on
            // these lists), which the kernel reclaims before it kills.
            let reclaimable = read(&format!("{dir}/memory.stat")).map_or(0, |stat| {
                cache.iter().filter_map(|key| stat_value(&stat, key)).sum()
            });
            headroom(
                &read(&format!("{dir}/{max}"))?,
                &read(&format!("{dir}/{used}"))?,
                reclaimable,
            )
        })
        .min()
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

/// The directories that may hold a limit on this process's memory, from
/// the lines of `/proc/self/cgroup` (v2's `0::/path`, v1's
/// `N:memory:/path`): its group's and every parent's, up to the mount's
/// root, where a container sees its own group mounted (its path there
/// names the host's hierarchy). The tightest of those that can be read
/// holds.
pub fn cgroup_dirs(groups: &str) -> Vec<(String, CgroupVersion)> {
    let mut dirs = vec![];
    for line in groups.lines() {
        let mut fields = line.splitn(3, ':');
        let (Some(_), Some(controllers), Some(path)) =
            (fields.next(), fields.next(), fields.next())
        else {
            continue;
        };
        let (root, version) = if controllers.is_empty() {
            ("/sys/fs/cgroup", CgroupVersion::V2)
        } else if controllers.split(',').any(|c| c == "memory") {
            ("/sys/fs/cgroup/memory", CgroupVersion::V1)
        } else {
            continue;
        };
        let mut path = path.trim_end_matches('/');
        loop {
            dirs.push((format!("{root}{path}"), version));
            match path.rfind('/') {
                Some(parent) if !path.is_empty() => path = &path[..parent],
                _ => break,
            }
        }
    }
    dirs
}

/// What a limit leaves above what is used, in bytes, counting as free
/// the `reclaimable` file cache (a group that has just built the project
/// holds much of it); `None` for no limit
/// (`max`, or v1's near-2⁶³ "unlimited").
pub fn headroom(limit: &str, used: &str, reclaimable: u64) -> Option<u64> {
    let limit: u64 = limit.trim().parse().ok()?;
    if limit >= 1 << 62 {
        return None;
    }
    let used: u64 = used.trim().parse().ok()?;
    Some(limit.saturating_sub(used.saturating_sub(reclaimable)))
}

/// The value of `key` in a control group's `memory.stat`.
pub fn stat_value(stat: &str, key: &str) -> Option<u64> {
    stat.lines().find_map(|line| {
        let (k, v) = line.split_once(' ')?;
        if k == key {
            v.trim().parse().ok()
        } else {
            None
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_limit_is_the_memory_over_what_an_operation_takes() {
        let n = ALWAYS_ALLOWED as u64 + 1000;
        assert_eq!(limit_for(Some(80 * n), usize::MAX), ALWAYS_ALLOWED + 1000);
        assert_eq!(
            limit_for(Some(80 * n + 79), usize::MAX),
            ALWAYS_ALLOWED + 1000
        );
        // Never below what is always allowed, however little is read.
        assert_eq!(limit_for(Some(80), usize::MAX), ALWAYS_ALLOWED);
        assert_eq!(limit_for(Some(0), usize::MAX), ALWAYS_ALLOWED);
        // Capped by what the recording's indices can name.
        assert_eq!(limit_for(Some(80 * n), 999), 999);
        assert_eq!(limit_for(None, 999), 999);
    }

    #[test]
    fn available_memory_is_read_from_the_kernels_words() {
        let meminfo =
            "MemTotal:       24634636 kB\nMemFree:  1000 kB\nMemAvailable:   24251580 kB\n";
        assert_eq!(mem_available(meminfo), Some(24_251_580 * 1024));
        assert_eq!(mem_available("MemTotal: 5 kB\n"), None);
        assert_eq!(mem_available("MemAvailable: lots kB\n"), None);

        assert_eq!(
            headroom("1073741824\n", "73741824\n", 0),
            Some(1_000_000_000)
        );
        assert_eq!(headroom("100", "200", 0), Some(0));
        // File cache the kernel would drop counts as free.
        assert_eq!(headroom("1000", "900", 600), Some(700));
        assert_eq!(headroom("1000", "900", 5000), Some(1000));
        let stat = "anon 100\nfile 5000\ninactive_file 4096\ntotal_inactive_file 8192\n";
        assert_eq!(stat_value(stat, "inactive_file"), Some(4096));
        assert_eq!(stat_value(stat, "total_inactive_file"), Some(8192));
        assert_eq!(stat_value(stat, "active_file"), None);
        assert_eq!(headroom("max\n", "5", 0), None);
        assert_eq!(headroom("9223372036854771712", "5", 0), None);

        let groups = "4:memory:/jobs/a\n1:cpu:/\n0::/user.slice/x/\n";
        assert_eq!(
            cgroup_dirs(groups),
            vec![
                (
                    "/sys/fs/cgroup/memory/jobs/a".to_string(),
                    CgroupVersion::V1
                ),
                ("/sys/fs/cgroup/memory/jobs".to_string(), CgroupVersion::V1),
                ("/sys/fs/cgroup/memory".to_string(), CgroupVersion::V1),
                ("/sys/fs/cgroup/user.slice/x".to_string(), CgroupVersion::V2),
                ("/sys/fs/cgroup/user.slice".to_string(), CgroupVersion::V2),
                ("/sys/fs/cgroup".to_string(), CgroupVersion::V2),
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

        // The tightest of the group and its parents that can be read: the
        // group itself has no limit, its parent the tightest, the root a
        // loose one; a missing directory is passed over.
        let files = [
            ("/sys/fs/cgroup/a/b/memory.max", "max"),
            ("/sys/fs/cgroup/a/b/memory.current", "100"),
            ("/sys/fs/cgroup/a/memory.max", "1000"),
            ("/sys/fs/cgroup/a/memory.current", "900"),
            (
                "/sys/fs/cgroup/a/memory.stat",
                "anon 300\ninactive_file 200\nactive_file 100\n",
            ),
            ("/sys/fs/cgroup/memory.max", "5000"),
            ("/sys/fs/cgroup/memory.current", "1000"),
        ];
        let read = |path: &str| {
            files
                .iter()
                .find(|(p, _)| *p == path)
                .map(|(_, text)| text.to_string())
        };
        assert_eq!(group_headroom("0::/a/b\n", read), Some(400));
        assert_eq!(group_headroom("0::/\n", read), Some(4000));
        assert_eq!(group_headroom("0::/c\n", read), Some(4000));
        assert_eq!(group_headroom("1:cpu:/\n", read), None);
        assert_eq!(group_headroom("0::/a/b\n", |_| None), None);

        assert_eq!(
            cgroup_dirs("0::/\n"),
            vec![("/sys/fs/cgroup".to_string(), CgroupVersion::V2)]
        );
    }
}
