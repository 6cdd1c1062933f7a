//! Giving freed heap memory back to the system after a large burst of allocations.
//!
//! A job of 1,000,000 tasks is parsed into a tree of small allocations (about 350 bytes
//! a task), typed into specs, and the tree freed; a snapshot restore leaves similar
//! debris. glibc's allocator returns freed memory to the system only from the top of
//! its heaps, so those freed chunks, interleaved with the specs that stay, kept the
//! server's RSS ~600 MiB above its live heap for good. `malloc_trim` releases every
//! free page wherever it lies (it does not move live memory). It walks the heap, so it
//! runs on a blocking thread, after applying a large submission, after building a large
//! snapshot and after a restore.
//!
//! The only `unsafe` of this crate: one call with no pointers, behind a safe function.
#![allow(unsafe_code)]

/// An applied submission at least this large (tasks) is followed by a trim.
pub const AFTER_TASKS: u64 = 50_000;

/// A snapshot at least this large (bytes written) is followed by a trim.
pub const AFTER_SNAPSHOT_BYTES: u64 = 16 << 20;

/// Returns the heap's free pages to the system; a no-op where the C library is not
/// glibc. Blocking (tens of milliseconds on a heap of a few GiB).
pub fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: `malloc_trim` takes a byte count and touches only the allocator's own
    // free lists under its locks; it is safe to call from any thread at any time.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// How long after the burst the trim runs: the apply that asks for it still holds the
/// entry it applies, and the API still holds the body it parsed, for a moment after.
/// Trimmed at once, 1 run in 2 of a 1,000,000-task job kept ~200 MiB that a later trim
/// gave back.
const SETTLE: std::time::Duration = std::time::Duration::from_secs(2);

/// [`release_free_memory`] on a blocking thread once the burst has settled, not awaited.
pub fn release_in_background() {
    tokio::spawn(async {
        tokio::time::sleep(SETTLE).await;
        let _ = tokio::task::spawn_blocking(release_free_memory).await;
    });
}
