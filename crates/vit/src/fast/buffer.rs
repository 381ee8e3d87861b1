//! Output buffers written by parallel tasks, on those tasks' threads: a buffer this size is
//! memory the allocator has had before, so `vec![0.0; len]` would be a serial `memset` on the
//! caller's thread while the pool waits (2.32% of a tiny32 train step's CPU samples, crates/bench/README.md).
//!
//! The unsafe here: `set_len` once every element is known to be written, either by the
//! element kernels of `math` that write their whole output (`*_into`; GELU, its derivative,
//! products, bias rows: no zeroing at all), or, for kernels that take `&mut [f32]`, after each
//! task has zeroed its chunk (viewed as `&mut [f32]` only then; chunks counted and checked).
#![allow(unsafe_code)]

use std::mem::MaybeUninit;
use std::sync::atomic::{AtomicUsize, Ordering};

use rayon::prelude::*;

use super::math;

/// A fresh `f32` buffer handed out once, as zeroed chunks, to the parallel tasks that write it:
/// each task zeroes its own chunk just before writing it, in parallel and into that core's
/// cache (for kernels that take `&mut [f32]`; the `par_*` functions below skip the zeroing).
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

/// `len` elements written in parallel, `chunk` at a time, by `write(chunk index, chunk)`,
/// without zeroing them first.
///
/// # Safety
/// `write` must write every element of the chunk it is given.
unsafe fn par_write(
    len: usize,
    chunk: usize,
    write: impl Fn(usize, &mut [MaybeUninit<f32>]) + Sync + Send,
) -> Vec<f32> {
    if len == 0 {
        return Vec::new();
    }
    assert!(chunk > 0, "par_write: chunks of 0 elements");
    let mut out: Vec<f32> = Vec::with_capacity(len);
    // The chunks cover `..len` of the spare capacity; each goes to one `write`.
    out.spare_capacity_mut()[..len]
        .par_chunks_mut(chunk)
        .enumerate()
        .for_each(|(i, c)| write(i, c));
    // SAFETY: every chunk of `..len` was written whole (the caller's contract).
    unsafe { out.set_len(len) };
    out
}

/// The exact GELU of `xs`, in parallel by `chunk`, written once (not zeroed first).
pub(super) fn par_gelu(xs: &[f32], chunk: usize) -> Vec<f32> {
    // SAFETY: `gelu_into` writes every element of its output, of the input chunk's length.
    unsafe {
        par_write(xs.len(), chunk, |i, o| {
            let at = i * chunk;
            math::gelu_into(&xs[at..at + o.len()], o);
        })
    }
}

/// `a ⊙ b`, in parallel by `chunk`, written once.
///
/// # Panics
/// If the lengths differ.
pub(super) fn par_mul(a: &[f32], b: &[f32], chunk: usize) -> Vec<f32> {
    assert_eq!(a.len(), b.len(), "par_mul: operand lengths");
    // SAFETY: `mul_into` writes every element of its output, of the operand chunks' length.
    unsafe {
        par_write(a.len(), chunk, |i, o| {
            let at = i * chunk..i * chunk + o.len();
            math::mul_into(&a[at.clone()], &b[at], o);
        })
    }
}

/// `rows` copies of `row`, one after the other, in parallel by `rows_per_task`.
pub(super) fn par_rows(row: &[f32], rows: usize, rows_per_task: usize) -> Vec<f32> {
    let width = row.len();
    // SAFETY: a chunk is whole rows (its length a multiple of `width`, the last one too since
    // `len` is), and every element of every row is written.
    unsafe {
        par_write(rows * width, rows_per_task * width, |_, c| {
            for r in c.chunks_exact_mut(width.max(1)) {
                for (o, &v) in r.iter_mut().zip(row) {
                    o.write(v);
                }
            }
        })
    }
}

/// `(gelu(xs), gelu'(xs))`, in parallel by `chunk`, each written once.
pub(super) fn par_gelu_with_grad(xs: &[f32], chunk: usize) -> (Vec<f32>, Vec<f32>) {
    assert!(chunk > 0, "par_gelu_with_grad: chunks of 0 elements");
    let len = xs.len();
    let (mut out, mut grad): (Vec<f32>, Vec<f32>) =
        (Vec::with_capacity(len), Vec::with_capacity(len));
    out.spare_capacity_mut()[..len]
        .par_chunks_mut(chunk)
        .zip(grad.spare_capacity_mut()[..len].par_chunks_mut(chunk))
        .zip(xs.par_chunks(chunk))
        .for_each(|((o, g), x)| math::gelu_with_grad_into(x, o, g));
    // SAFETY: the three chunk sequences have one length and count (same `len`, same chunk), so
    // the zip hands out every chunk, and `gelu_with_grad_into` writes every element of both
    // outputs.
    unsafe {
        out.set_len(len);
        grad.set_len(len);
    }
    (out, grad)
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
    fn the_write_once_kernels_equal_the_slice_kernels() {
        let n = 10_007; // not a multiple of the chunk
        let xs: Vec<f32> = (0..n)
            .map(|i| ((i * 37 % 101) as f32 - 50.0) / 9.0)
            .collect();
        let ys: Vec<f32> = xs.iter().map(|v| v * 0.5 - 1.0).collect();
        drop(std::hint::black_box(vec![7.0f32; 2 * n]));
        let (mut out, mut grad) = (vec![0.0; n], vec![0.0; n]);
        math::gelu_slice(&xs, &mut out);
        assert_eq!(par_gelu(&xs, 64), out);
        math::gelu_with_grad_slice(&xs, &mut out, &mut grad);
        assert_eq!(par_gelu_with_grad(&xs, 64), (out.clone(), grad));
        math::mul_slice(&xs, &ys, &mut out);
        assert_eq!(par_mul(&xs, &ys, 64), out);
        assert_eq!(
            par_rows(&[1.0, -2.0, 3.5], 5, 2),
            [1.0, -2.0, 3.5].repeat(5)
        );
        assert!(par_rows(&[], 5, 2).is_empty());
        assert!(par_gelu(&[], 64).is_empty());
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
