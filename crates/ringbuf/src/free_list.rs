//! Size-class free lists: freed entries of the mutable region, waiting to be reused in place.
//!
//! With reuse on, every entry's size is rounded up to a class size, so an entry on a class's
//! list fits every allocation of that class exactly. Classes: every multiple of 8 up to 128
//! bytes, then four classes per doubling (at most 25% rounding waste).

use crate::sync::{AtomicUsize, Mutex, Ordering};

/// Classes up to 128 bytes are exact multiples of 8.
const SMALL_MAX: usize = 128;
const SMALL_CLASSES: usize = SMALL_MAX / 8 + 1;

/// The class of an entry of `size` bytes (a multiple of 8, at least 16).
pub(crate) fn class_of(size: usize) -> usize {
    if size <= SMALL_MAX {
        return size / 8;
    }
    let doubling = usize::BITS - 1 - (size - 1).leading_zeros(); // size in (2^d, 2^(d+1)]
    let step = 1usize << (doubling - 2);
    let quarter = (size - (1 << doubling)).div_ceil(step); // 1..=4
    SMALL_CLASSES + (doubling as usize - 7) * 4 + quarter - 1
}

/// The size of class `class`: the largest entry size in it.
pub(crate) fn class_size(class: usize) -> usize {
    if class < SMALL_CLASSES {
        return class * 8;
    }
    let doubling = (class - SMALL_CLASSES) / 4 + 7;
    let quarter = (class - SMALL_CLASSES) % 4 + 1;
    (1 << doubling) + quarter * (1 << (doubling - 2))
}

/// A freed entry: its address and the free epoch at which it was freed.
#[derive(Clone, Copy, Debug)]
pub(crate) struct FreeEntry {
    pub(crate) address: u64,
    pub(crate) freed_at_epoch: u64,
}

#[derive(Debug)]
pub(crate) struct FreeLists {
    classes: Box<[Mutex<Vec<FreeEntry>>]>,
    /// Entries on all lists; lets allocation skip the lists when they are empty.
    n_listed: AtomicUsize,
}

impl FreeLists {
    pub(crate) fn new(max_entry_size: usize) -> Self {
        let n_classes = class_of(max_entry_size) + 1;
        FreeLists { classes: (0..n_classes).map(|_| Mutex::new(Vec::new())).collect(), n_listed: AtomicUsize::new(0) }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.n_listed.load(Ordering::Relaxed) == 0
    }

    pub(crate) fn push(&self, class: usize, entry: FreeEntry) {
        lock(&self.classes[class]).push(entry);
        self.n_listed.fetch_add(1, Ordering::Relaxed);
    }

    /// Takes the most recently freed entry of `class` that `usable` accepts; entries it
    /// rejects for good (`Some(false)`) are dropped, and the search stops at the first it
    /// asks to keep for later (`None`).
    pub(crate) fn pop(&self, class: usize, mut usable: impl FnMut(FreeEntry) -> Option<bool>) -> Option<FreeEntry> {
        let mut list = lock(&self.classes[class]);
        while let Some(&entry) = list.last() {
            match usable(entry) {
                Some(true) => {
                    list.pop();
                    self.n_listed.fetch_sub(1, Ordering::Relaxed);
                    return Some(entry);
                }
                Some(false) => {
                    list.pop();
                    self.n_listed.fetch_sub(1, Ordering::Relaxed);
                }
                None => return None,
            }
        }
        None
    }

    pub(crate) fn len(&self) -> usize {
        self.n_listed.load(Ordering::Relaxed)
    }
}

fn lock<T>(mutex: &Mutex<T>) -> impl std::ops::DerefMut<Target = T> + '_ {
    // A panic while holding a list lock cannot leave the Vec inconsistent.
    mutex.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes_cover_every_size_exactly_once() {
        let mut last_class = class_of(16);
        for size in (16..=1 << 20).step_by(8) {
            let class = class_of(size);
            assert!(class_size(class) >= size, "size {size} class {class}");
            assert!(class == last_class || class == last_class + 1);
            if class > 2 {
                assert!(class_size(class - 1) < size, "size {size} fits a smaller class");
            }
            assert_eq!(class_of(class_size(class)), class);
            last_class = class;
        }
        assert_eq!(class_size(class_of(1 << 28)), 1 << 28);
    }
}
