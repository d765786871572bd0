//! Memory for secrets that must never be swapped, dumped or left behind:
//! its own anonymous mapping, `mlock`ed, excluded from core dumps, and
//! zeroized before it is unmapped.

use std::ffi::c_void;
use std::fmt;
use std::num::NonZeroUsize;
use std::ptr::NonNull;

use anyhow::{Context, bail};
use nix::sys::mman::{
    MapFlags, MmapAdvise, ProtFlags, madvise, mlock, mmap_anonymous, munlock, munmap,
};
use zeroize::Zeroize;

/// A fixed-capacity byte buffer in locked memory. It never reallocates, so
/// no stray copy of its content is left in freed heap memory.
pub(crate) struct LockedBuf {
    ptr: NonNull<u8>,
    cap: usize,
    len: usize,
}

// SAFETY: the mapping is owned exclusively by this value; there is no shared
// interior mutability.
unsafe impl Send for LockedBuf {}

impl LockedBuf {
    /// Maps at least `capacity` bytes (rounded up to whole pages) and locks them.
    pub(crate) fn with_capacity(capacity: usize) -> anyhow::Result<Self> {
        let page = nix::unistd::sysconf(nix::unistd::SysconfVar::PAGE_SIZE)
            .ok()
            .flatten()
            .map_or(4096, |p| p as usize);
        let cap = capacity.max(1).div_ceil(page) * page;
        let len_nz = NonZeroUsize::new(cap).expect("capacity is at least one page");
        // SAFETY: a fresh private anonymous mapping aliases nothing.
        let addr = unsafe {
            mmap_anonymous(
                None,
                len_nz,
                ProtFlags::PROT_READ | ProtFlags::PROT_WRITE,
                MapFlags::MAP_PRIVATE,
            )
        }
        .context("mapping memory for secret material")?;
        let buf = LockedBuf {
            ptr: addr.cast(),
            cap,
            len: 0,
        };
        // SAFETY: addr/cap describe the mapping created above.
        unsafe { madvise(addr, cap, MmapAdvise::MADV_DONTDUMP) }
            .context("excluding secret memory from core dumps (madvise MADV_DONTDUMP)")?;
        // SAFETY: as above.
        unsafe { mlock(addr, cap) }.with_context(|| {
            format!(
                "locking {cap} bytes of memory for secret material; raise RLIMIT_MEMLOCK \
                 (LimitMEMLOCK= in the unit) if it is lower than that"
            )
        })?;
        Ok(buf)
    }

    /// Appends `n` bytes written in place by `fill`, which gets exactly `n` bytes.
    pub(crate) fn append_with(
        &mut self,
        n: usize,
        fill: impl FnOnce(&mut [u8]) -> anyhow::Result<()>,
    ) -> anyhow::Result<()> {
        if self.cap - self.len < n {
            bail!(
                "locked buffer of {} bytes is too small for {} more",
                self.cap,
                n
            );
        }
        // SAFETY: len + n <= cap, inside the mapping we own.
        let dst = unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr().add(self.len), n) };
        fill(dst)?;
        self.len += n;
        Ok(())
    }

    pub(crate) fn append(&mut self, bytes: &[u8]) -> anyhow::Result<()> {
        self.append_with(bytes.len(), |dst| {
            dst.copy_from_slice(bytes);
            Ok(())
        })
    }

    pub(crate) fn as_bytes(&self) -> &[u8] {
        // SAFETY: the first len bytes of the mapping are initialised.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }
}

impl AsRef<[u8]> for LockedBuf {
    fn as_ref(&self) -> &[u8] {
        self.as_bytes()
    }
}

impl Drop for LockedBuf {
    fn drop(&mut self) {
        // SAFETY: the whole mapping is ours until munmap below.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.cap) }.zeroize();
        let addr: NonNull<c_void> = self.ptr.cast();
        // SAFETY: addr/cap describe our mapping; nothing refers to it after this.
        unsafe {
            let _ = munlock(addr, self.cap);
            let _ = munmap(addr, self.cap);
        }
    }
}

impl fmt::Debug for LockedBuf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "LockedBuf(<{} bytes redacted>)", self.len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn appends_within_capacity_and_refuses_overflow() {
        let mut buf = LockedBuf::with_capacity(8).unwrap();
        buf.append(b"abc").unwrap();
        buf.append_with(2, |d| {
            d.copy_from_slice(b"de");
            Ok(())
        })
        .unwrap();
        assert_eq!(buf.as_bytes(), b"abcde");
        // Capacity is rounded up to a page, so overflow needs more than a page.
        let page = buf.cap;
        assert!(buf.append(&vec![0u8; page]).is_err());
        assert_eq!(buf.as_bytes(), b"abcde", "a refused append changes nothing");
    }

    #[test]
    fn debug_redacts_content() {
        let mut buf = LockedBuf::with_capacity(16).unwrap();
        buf.append(b"hunter2").unwrap();
        let shown = format!("{buf:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("7 bytes redacted"), "{shown}");
    }

    #[test]
    fn memory_is_locked_while_alive() {
        fn vm_lck_kib() -> u64 {
            let status = std::fs::read_to_string("/proc/self/status").unwrap();
            let line = status.lines().find(|l| l.starts_with("VmLck:")).unwrap();
            line.split_whitespace().nth(1).unwrap().parse().unwrap()
        }
        // Other tests lock and unlock concurrently, so only a lower bound holds.
        let buf = LockedBuf::with_capacity(1).unwrap();
        assert!(
            vm_lck_kib() * 1024 >= buf.cap as u64,
            "our page is not counted in VmLck"
        );
        drop(buf);
    }
}
