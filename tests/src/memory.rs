//! Reading another process's memory, to count copies of a secret in it.
//! The agent is non-dumpable, so this needs root (CAP_SYS_PTRACE).

use std::fs::File;
use std::os::unix::fs::FileExt;

/// One mapping of `/proc/<pid>/maps` and whether any of it is mlocked.
#[derive(Debug)]
pub struct Region {
    pub start: u64,
    pub end: u64,
    pub name: String,
    pub locked: bool,
}

/// The readable mappings, with `Locked:` from `/proc/<pid>/smaps`.
pub fn regions(pid: i32) -> Vec<Region> {
    let smaps = std::fs::read_to_string(format!("/proc/{pid}/smaps")).expect("reading smaps");
    let mut regions: Vec<Region> = Vec::new();
    for line in smaps.lines() {
        let mut fields = line.split_whitespace();
        let first = fields.next().unwrap_or_default();
        let range = first.split_once('-').and_then(|(start, end)| {
            Some((
                u64::from_str_radix(start, 16).ok()?,
                u64::from_str_radix(end, 16).ok()?,
            ))
        });
        if let Some((start, end)) = range {
            let perms = fields.next().unwrap_or_default();
            let name = fields.nth(3).unwrap_or_default().to_string();
            let special = ["[vvar]", "[vsyscall]", "[vvar_vclock]"].contains(&name.as_str());
            if perms.starts_with('r') && !special {
                regions.push(Region {
                    start,
                    end,
                    name,
                    locked: false,
                });
            }
        } else if first == "Locked:" {
            let kib: u64 = fields.next().and_then(|v| v.parse().ok()).unwrap_or(0);
            if let Some(last) = regions.last_mut() {
                last.locked |= kib > 0;
            }
        }
    }
    regions
}

/// Where `needle` occurs in the process's readable memory.
#[derive(Debug)]
pub struct Hit {
    pub address: u64,
    pub region: String,
    pub locked: bool,
}

pub fn find(pid: i32, needle: &[u8]) -> Vec<Hit> {
    let mem = File::open(format!("/proc/{pid}/mem")).expect("opening /proc/<pid>/mem (needs root)");
    let mut hits = Vec::new();
    for region in regions(pid) {
        let mut buf = vec![0u8; (region.end - region.start) as usize];
        if mem.read_exact_at(&mut buf, region.start).is_err() {
            continue;
        }
        let mut at = 0;
        while let Some(i) = buf[at..].windows(needle.len()).position(|w| w == needle) {
            hits.push(Hit {
                address: region.start + (at + i) as u64,
                region: region.name.clone(),
                locked: region.locked,
            });
            at += i + 1;
        }
    }
    hits
}

/// A `/proc/<pid>/status` field's first value, such as `VmLck` in KiB.
pub fn status_field(pid: i32, field: &str) -> String {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .map(|v| v.split_whitespace().next().unwrap_or_default().to_string())
        .unwrap_or_default()
}
