//! Output buffers that the parallel tasks writing them also zero.
//!
//! The unsafe here: viewing a chunk of a `Vec`'s spare capacity as `&mut [f32]` right after
//! zeroing it, and `set_len` once every chunk has been zeroed (counted, and checked).
#![allow(unsafe_code)]

use std::mem::MaybeUninit;
use std::sync::atomic::{AtomicUsize, Ordering};

use rayon::prelude::*;

/// A fresh `f32` buffer handed out once, as zeroed chunks, to the parallel tasks that write it.
///
/// `vec![0.0; len]` zeroes on the caller's thread: for buffers the allocator has had before
/// (every step's activations) there are no fresh zero pages, so it is a serial `memset` while
/// the pool waits (2.3% of a tiny32 train step's CPU time, all of it on the critical path).
/// Here each task zeroes its own chunk just before writing it, in parallel and into that core's
/// cache.
pub(super) struct Fresh {
    data: Vec<f32>,
    len: usize,
    handed_out: bool,
    zeroed: AtomicUsize,
}

impl Fresh {
    /// An unwritten buffer of `len` elements.
    pub(super) fn new(len: usize) -> Self {
        Fresh {
            data: Vec::with_capacity(len),
            len,
            handed_out: false,
            zeroed: AtomicUsize::new(0),
        }
    }

    /// The buffer as consecutive `chunk`-element pieces (the last may be shorter), each zeroed
    /// on the thread that takes it.
    ///
    /// # Panics
    /// On a second call: the buffer is handed out once.
    pub(super) fn par_chunks_mut(
        &mut self,
        chunk: usize,
    ) -> impl IndexedParallelIterator<Item = &mut [f32]> + '_ {
        assert!(!self.handed_out, "a Fresh buffer is handed out once");
        self.handed_out = true;
        let zeroed = &self.zeroed;
        let len = self.len;
        self.data.spare_capacity_mut()[..len]
            .par_chunks_mut(chunk.max(1))
            .map(move |c| {
                c.fill(MaybeUninit::new(0.0));
                zeroed.fetch_add(c.len(), Ordering::Relaxed);
                // SAFETY: every element of `c` was initialized on the line above, and
                // `MaybeUninit<f32>` has the layout of `f32`.
                unsafe { &mut *(std::ptr::from_mut(c) as *mut [f32]) }
            })
    }

    /// The written buffer.
    ///
    /// # Panics
    /// Unless [`Fresh::par_chunks_mut`] handed out every chunk (its iterator ran to the end).
    pub(super) fn into_vec(self) -> Vec<f32> {
        let Fresh {
            mut data,
            len,
            zeroed,
            ..
        } = self;
        // One hand-out gives each chunk to one task, so `len` zeroed elements are all of them.
        assert_eq!(
            zeroed.into_inner(),
            len,
            "a Fresh buffer was not written to the end"
        );
        // SAFETY: all `len` elements were initialized (checked above); capacity is `len`.
        unsafe { data.set_len(len) };
        data
    }
}

/// `len` elements written by `fill(chunk index, zeroed chunk)` in parallel, chunks of `chunk`.
pub(super) fn par_filled(
    len: usize,
    chunk: usize,
    fill: impl Fn(usize, &mut [f32]) + Sync + Send,
) -> Vec<f32> {
    let mut out = Fresh::new(len);
    out.par_chunks_mut(chunk)
        .enumerate()
        .for_each(|(i, c)| fill(i, c));
    out.into_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_chunk_is_zeroed_then_written_once() {
        // Dirty the allocator's free lists so that a fresh buffer would not start out zeroed.
        drop(std::hint::black_box(vec![7.0f32; 10_000]));
        let v = par_filled(10_000, 64, |i, c| {
            assert!(c.iter().all(|&x| x == 0.0), "chunk {i} was not zeroed");
            c[0] = i as f32;
        });
        assert_eq!(v.len(), 10_000);
        for (i, c) in v.chunks(64).enumerate() {
            assert_eq!(c[0], i as f32);
            assert!(c[1..].iter().all(|&x| x == 0.0));
        }
        assert!(par_filled(0, 8, |_, _| unreachable!()).is_empty());
    }

    #[test]
    #[should_panic(expected = "not written to the end")]
    fn a_partly_handed_out_buffer_is_refused() {
        let mut f = Fresh::new(100);
        f.par_chunks_mut(10).take(5).for_each(|c| c[0] = 1.0);
        let _ = f.into_vec();
    }

    #[test]
    #[should_panic(expected = "handed out once")]
    fn a_second_hand_out_is_refused() {
        let mut f = Fresh::new(100);
        f.par_chunks_mut(10).for_each(|c| c[0] = 1.0);
        f.par_chunks_mut(10).for_each(|c| c[0] = 1.0);
    }
}
