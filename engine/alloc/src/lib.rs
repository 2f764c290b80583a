//! The memory allocator of every program built on the engine (the binary
//! and each benchmark link this crate): mimalloc,
//! told not to hand freed memory back to the system.
//!
//! Measured with the queue benchmark (in-memory store, auditing on, this
//! 2-core machine): under glibc's malloc about a quarter of the CPU went
//! to the allocator's own bookkeeping (consolidating and unlinking free
//! chunks); under mimalloc with its default purge delay (1 s) freed
//! memory went back to the system and was faulted in again as zeroed huge
//! pages, a third of the CPU. Never purging cut the page faults of a run
//! from about 120,000 to 1,500 and raised the drain rate by about a fifth.
//! The price is that a process keeps the heap of its busiest moment; set
//! `MIMALLOC_PURGE_DELAY` (milliseconds, `-1` never) to choose otherwise.

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// `mi_option_purge_delay`, the sixteenth member of mimalloc 3's option
/// enumeration (the binding names no constant for it; a test checks it).
const PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// Keeps freed memory for reuse rather than returning it to the system,
/// unless `MIMALLOC_PURGE_DELAY` says otherwise. Call it first in `main`.
pub fn keep_freed_memory() {
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
        // SAFETY: setting an option is a plain store mimalloc allows at any time.
        unsafe { libmimalloc_sys::mi_option_set(PURGE_DELAY, -1) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_option_set_is_the_purge_delay() {
        // The purge delay defaults to 1000 ms, its neighbours in the
        // enumeration to 1 and 0: this fails if the enumeration moves.
        // SAFETY: reading an option is always allowed.
        let delay = unsafe { libmimalloc_sys::mi_option_get(PURGE_DELAY) };
        if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
            assert_eq!(delay, 1000);
        }
        keep_freed_memory();
        let delay = unsafe { libmimalloc_sys::mi_option_get(PURGE_DELAY) };
        if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
            assert_eq!(delay, -1);
        }
    }
}
