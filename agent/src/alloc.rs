//! The global allocator: the system allocator, but every block is wiped
//! before it is freed. Buffers the agent does not own (hyper's read buffer,
//! rustls's plaintext queue, serde's scratch space) see the seed on its way
//! back from the API server, which echoes the created Secret; wiping on free
//! means no copy survives the buffer that held it. What is still allocated
//! is kept short-lived instead (see `cluster`: no idle connections).

use std::alloc::{GlobalAlloc, Layout, System};

use zeroize::Zeroize;

pub struct WipingAllocator;

// SAFETY: every call is forwarded to `System` with the same arguments;
// `dealloc` only writes to the block it is about to free, which the caller
// owns and no longer uses. `realloc` keeps the default (alloc, copy,
// dealloc), so a block that moves is wiped too.
unsafe impl GlobalAlloc for WipingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded unchanged.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded unchanged.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` is a live block of `layout.size()` bytes that the
        // caller gives up; zeroize's volatile writes cannot be optimised away
        // as stores to memory about to be freed.
        unsafe {
            std::slice::from_raw_parts_mut(ptr, layout.size()).zeroize();
            System.dealloc(ptr, layout);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn freed_blocks_are_wiped() {
        let layout = Layout::from_size_align(64, 8).unwrap();
        let a = WipingAllocator;
        // SAFETY: a fresh block of `layout`, written, then freed once; the
        // read after free is of memory glibc keeps mapped (a tcache chunk),
        // whose first 16 bytes hold its free-list links.
        unsafe {
            let p = a.alloc(layout);
            p.write_bytes(0xAB, 64);
            a.dealloc(p, layout);
            let tail = std::slice::from_raw_parts(p.add(16), 48);
            assert!(tail.iter().all(|b| *b == 0), "{tail:?}");
        }
    }
}
