//! What the fuzz targets share: an allocator that refuses one allocation over
//! [`MAX_ALLOCATION`].
//!
//! libFuzzer's `-malloc_limit_mb` needs a sanitizer's malloc hooks (nightly Rust). Without
//! it, a parser that allocates what an input declares only shows as a high RSS, and only
//! when libFuzzer's once-a-second RSS check happens to see it. With this allocator, such an
//! allocation aborts at once, and libFuzzer keeps the input as a crash.

use std::alloc::{GlobalAlloc, Layout, System};
use std::io::Write;

/// The largest single allocation a target may make. The largest legitimate ones are a
/// picture's pixels (4,000,000 pixels of 16 bytes at most, 64 MB) and its copies.
pub const MAX_ALLOCATION: usize = 256 << 20;

/// The system allocator, but for allocations over [`MAX_ALLOCATION`], which abort.
pub struct CappedAllocator;

fn check(size: usize) {
    if size > MAX_ALLOCATION {
        // Nothing that allocates: a fixed message, then abort (libFuzzer: deadly signal).
        let _ = std::io::stderr().write_all(b"fuzz: one allocation over MAX_ALLOCATION\n");
        std::process::abort();
    }
}

// SAFETY: every call is passed on to the system allocator unchanged.
unsafe impl GlobalAlloc for CappedAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        check(layout.size());
        // SAFETY: the caller's guarantees on `layout` hold for `System` too.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        check(layout.size());
        // SAFETY: as in `alloc`.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        check(new_size);
        // SAFETY: `ptr` was allocated by `System` with `layout` (all allocations are).
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: as in `realloc`.
        unsafe { System.dealloc(ptr, layout) }
    }
}
