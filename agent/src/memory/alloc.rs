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
        // SAFETY: the caller's contract for `dealloc`, passed on unchanged.
        unsafe { wipe_then_free(&System, ptr, layout) }
    }
}

/// Wipes the block, then hands it back to `inner`.
///
/// # Safety
/// `ptr` must be a live block of `layout` allocated by `inner`, which the
/// caller gives up.
unsafe fn wipe_then_free<A: GlobalAlloc>(inner: &A, ptr: *mut u8, layout: Layout) {
    // SAFETY: `ptr` is a live block of `layout.size()` bytes that the caller
    // gives up; zeroize's volatile writes cannot be optimised away as stores
    // to memory about to be freed.
    unsafe {
        std::slice::from_raw_parts_mut(ptr, layout.size()).zeroize();
        inner.dealloc(ptr, layout);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;

    /// The system allocator, remembering what each block held when it was
    /// handed back (read before it is freed, never after).
    #[derive(Default)]
    struct Recording(Mutex<Vec<Vec<u8>>>);

    // SAFETY: allocation is forwarded to `System` unchanged; `dealloc` only
    // reads the live block before freeing it.
    unsafe impl GlobalAlloc for Recording {
        unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
            // SAFETY: forwarded unchanged.
            unsafe { System.alloc(layout) }
        }

        unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
            // SAFETY: `ptr` is still a live block of `layout.size()` bytes.
            let held = unsafe { std::slice::from_raw_parts(ptr, layout.size()) }.to_vec();
            self.0.lock().unwrap().push(held);
            // SAFETY: forwarded unchanged.
            unsafe { System.dealloc(ptr, layout) }
        }
    }

    #[test]
    fn freed_blocks_are_wiped() {
        let layout = Layout::from_size_align(64, 8).unwrap();
        let inner = Recording::default();
        // SAFETY: a fresh block of `layout` from `inner`, written, then
        // handed back once; nothing reads it afterwards.
        unsafe {
            let p = inner.alloc(layout);
            assert!(!p.is_null());
            p.write_bytes(0xAB, 64);
            wipe_then_free(&inner, p, layout);
        }
        let handed_back = inner.0.into_inner().unwrap();
        assert_eq!(handed_back, vec![vec![0u8; 64]]);
    }
}
