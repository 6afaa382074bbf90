//! Large zeroed buffers for the data the kernels stream from memory: the KV
//! caches and the packed weights.
//!
//! Decoding reads every byte of every in-flight sequence's cache once per
//! token (hundreds of megabytes per step), and the weights once per step.
//! With 4 KB pages that stream misses the TLB every 4 KB, and the hardware
//! prefetchers stop at each page boundary; on Linux the buffers here are
//! anonymous mappings advised as transparent huge pages (2 MB); the gain is
//! measured in docs/NUMERICS.md section 8 (`model::Weights` puts all
//! matrices in shared buffers). Where the system gives no huge pages
//! the mapping is an ordinary one: only the speed differs, never a value.

use std::ops::{Deref, DerefMut};

/// Below this size a buffer is an ordinary `Vec` (a huge page needs a whole
/// aligned 2 MB inside the mapping).
const MAP_MIN_BYTES: usize = 2 << 20;

/// Element types for which every bit pattern, all zeros included, is a
/// valid value, so a zero-filled mapping can be viewed as a slice of them;
/// they have no padding, so a slice of them can be viewed as bytes.
pub trait Plain: Copy + Default + Send + Sync + private::Sealed + 'static {}

/// The bytes of `s` (e.g. to prefetch them).
pub fn bytes<T: Plain>(s: &[T]) -> &[u8] {
    // SAFETY: `Plain` types have no padding, so every byte of the slice is
    // initialised; u8 has alignment 1 and the view covers exactly `s`'s
    // memory for `s`'s lifetime.
    unsafe { std::slice::from_raw_parts(s.as_ptr().cast::<u8>(), std::mem::size_of_val(s)) }
}

mod private {
    pub trait Sealed {}
}

macro_rules! plain {
    ($($t:ty)*) => {$(
        impl private::Sealed for $t {}
        impl Plain for $t {}
    )*};
}
plain!(i8 u8 i32 u32 f32);

/// A fixed-length, zero-initialised buffer of `T` (see the module docs).
pub struct LargeBuf<T: Plain> {
    storage: Storage<T>,
    len: usize,
}

enum Storage<T> {
    Heap(Vec<T>),
    Map(memmap2::MmapMut),
}

impl<T: Plain> LargeBuf<T> {
    /// `len` zeros. Pages of a mapping are only backed by memory once
    /// written.
    pub fn zeroed(len: usize) -> LargeBuf<T> {
        LargeBuf::zeroed_mapped_from(len, MAP_MIN_BYTES)
    }

    /// [`LargeBuf::zeroed`], mapped from one page up: a buffer that is
    /// freed soon (e.g. a matrix packed at load time, then moved into a
    /// shared buffer) then returns its memory to the system at once, instead
    /// of leaving it in the allocator's free lists.
    pub fn zeroed_paged(len: usize) -> LargeBuf<T> {
        LargeBuf::zeroed_mapped_from(len, 4096)
    }

    fn zeroed_mapped_from(len: usize, map_min: usize) -> LargeBuf<T> {
        let bytes = len.checked_mul(std::mem::size_of::<T>());
        let storage = match bytes {
            Some(b) if b >= map_min => match memmap2::MmapMut::map_anon(b) {
                Ok(map) => {
                    #[cfg(target_os = "linux")]
                    {
                        // A hint: refused (e.g. huge pages disabled), the
                        // mapping works the same with small pages.
                        let _ = map.advise(memmap2::Advice::HugePage);
                    }
                    Storage::Map(map)
                }
                Err(_) => Storage::Heap(vec![T::default(); len]),
            },
            _ => Storage::Heap(vec![T::default(); len]),
        };
        LargeBuf { storage, len }
    }

    /// An empty buffer (allocates nothing).
    pub fn new() -> LargeBuf<T> {
        LargeBuf {
            storage: Storage::Heap(Vec::new()),
            len: 0,
        }
    }

    /// A buffer holding a copy of `v`.
    pub fn from_slice(v: &[T]) -> LargeBuf<T> {
        let mut b = LargeBuf::zeroed(v.len());
        b.copy_from_slice(v);
        b
    }

    /// Bytes held.
    pub fn heap_bytes(&self) -> usize {
        self.len * std::mem::size_of::<T>()
    }
}

impl<T: Plain> Default for LargeBuf<T> {
    fn default() -> Self {
        LargeBuf::new()
    }
}

impl<T: Plain> Deref for LargeBuf<T> {
    type Target = [T];
    fn deref(&self) -> &[T] {
        match &self.storage {
            Storage::Heap(v) => v,
            // SAFETY: the mapping holds `len * size_of::<T>()` bytes, is
            // page-aligned (so aligned for `T`), lives as long as `self`, and
            // every bit pattern is a valid `T` (`Plain`).
            Storage::Map(m) => unsafe { std::slice::from_raw_parts(m.as_ptr().cast(), self.len) },
        }
    }
}

impl<T: Plain> DerefMut for LargeBuf<T> {
    fn deref_mut(&mut self) -> &mut [T] {
        match &mut self.storage {
            Storage::Heap(v) => v,
            // SAFETY: as in `deref`, and `&mut self` makes the access unique.
            Storage::Map(m) => unsafe {
                std::slice::from_raw_parts_mut(m.as_mut_ptr().cast(), self.len)
            },
        }
    }
}

impl<T: Plain> Clone for LargeBuf<T> {
    fn clone(&self) -> Self {
        LargeBuf::from_slice(self)
    }
}

impl<T: Plain> std::fmt::Debug for LargeBuf<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LargeBuf")
            .field("len", &self.len)
            .field("mapped", &matches!(self.storage, Storage::Map(_)))
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_and_mapped_buffers_start_zeroed_and_keep_writes() {
        for len in [0, 1, 1000, MAP_MIN_BYTES / 4 + 3] {
            let mut b = LargeBuf::<f32>::zeroed(len);
            assert_eq!(b.len(), len);
            assert!(b.iter().all(|x| x.to_bits() == 0));
            for (i, x) in b.iter_mut().enumerate() {
                *x = i as f32;
            }
            let c = b.clone();
            assert_eq!(c.len(), len);
            assert!(c.iter().enumerate().all(|(i, x)| *x == i as f32));
            assert_eq!(c.heap_bytes(), 4 * len);
        }
        let big = LargeBuf::<i8>::zeroed(MAP_MIN_BYTES);
        assert!(matches!(big.storage, Storage::Map(_)) || cfg!(miri));
        assert!(big.iter().all(|&x| x == 0));
    }
}
