//! A cache prefetch hint for bytes of a pool, so that callers with many independent
//! lookups (a batch of index probes) can have their cache misses overlap.

/// Asks the CPU to start loading the cache line that holds `bytes[0]` into every cache
/// level. A hint only: it returns at once, changes no memory and cannot fault; an empty
/// slice, or a CPU without the instruction, makes it a no-op.
#[inline]
pub fn prefetch(bytes: &[u8]) {
    if !bytes.is_empty() {
        prefetch_ptr(bytes.as_ptr());
    }
}

/// [`prefetch`] for the cache line at `address`, which need not be valid.
#[inline]
pub(crate) fn prefetch_ptr(address: *const u8) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: `_mm_prefetch` needs SSE, which every x86_64 CPU has (it is part of the
    // x86_64 baseline the compiler targets). The instruction only hints the cache: it
    // neither reads into a register nor writes, and does not fault even on an invalid
    // address.
    unsafe {
        core::arch::x86_64::_mm_prefetch::<{ core::arch::x86_64::_MM_HINT_T0 }>(address.cast());
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = address;
}

#[cfg(test)]
mod tests {
    #[test]
    fn prefetch_is_a_harmless_hint() {
        let bytes = vec![7u8; 4096];
        for offset in (0..bytes.len()).step_by(64) {
            super::prefetch(&bytes[offset..]);
        }
        super::prefetch(&[]);
        assert!(bytes.iter().all(|&byte| byte == 7));
    }
}
