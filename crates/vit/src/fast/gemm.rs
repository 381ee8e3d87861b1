//! A bounds-checked, safe face for the `gemm` crate (the matmul burn-flex itself uses).
//!
//! burn-flex's matmul allocates its output as zeroed bytes and then copies them into an
//! aligned buffer (`Bytes::from_bytes_vec`): two passes over memory before gemm writes a
//! value. Calling gemm directly writes the output once.
//!
//! The `unsafe` here (one of the crate's three audited modules, ARCHITECTURE.md): the
//! raw-pointer gemm call (every index it can touch is checked against the slices first) and
//! `set_len` after gemm has written every element of a fresh buffer.
#![allow(unsafe_code)]

use gemm::Parallelism;

/// Products of at least this many multiply-adds use gemm's own rayon threads.
const PARALLEL_FLOPS: usize = 1 << 18;

/// A strided `rows x cols` view of an `f32` slice: element `(i, j)` is `data[i * rs + j * cs]`.
#[derive(Debug, Clone, Copy)]
pub struct View<'a> {
    data: &'a [f32],
    rows: usize,
    cols: usize,
    rs: usize,
    cs: usize,
}

impl<'a> View<'a> {
    /// A row-major `rows x cols` matrix whose rows are `rs` apart.
    ///
    /// # Panics
    /// If the view reaches past the end of `data`.
    pub fn rows(data: &'a [f32], rows: usize, cols: usize, rs: usize) -> Self {
        View::new(data, rows, cols, rs, 1)
    }

    /// The general strided view.
    ///
    /// # Panics
    /// If the view reaches past the end of `data`.
    pub fn new(data: &'a [f32], rows: usize, cols: usize, rs: usize, cs: usize) -> Self {
        if rows > 0 && cols > 0 {
            let last = (rows - 1) * rs + (cols - 1) * cs;
            assert!(
                last < data.len(),
                "gemm view {rows}x{cols} (strides {rs}, {cs}) reaches element {last} of {}",
                data.len()
            );
        }
        View {
            data,
            rows,
            cols,
            rs,
            cs,
        }
    }

    /// The transpose (no copy).
    pub fn t(self) -> Self {
        View {
            rows: self.cols,
            cols: self.rows,
            rs: self.cs,
            cs: self.rs,
            ..self
        }
    }
}

fn parallelism(m: usize, n: usize, k: usize, parallel: bool) -> Parallelism {
    if parallel && m.saturating_mul(n).saturating_mul(k) >= PARALLEL_FLOPS {
        Parallelism::Rayon(0)
    } else {
        Parallelism::None
    }
}

/// `dst (+)= lhs · rhs`, `dst` an `m x n` block with rows `dst_rs` apart.
///
/// # Safety
/// `dst` must be valid for writes (and reads, when `read_dst`) of that block and must not
/// overlap `lhs` or `rhs`; the views are in bounds by construction ([`View::new`]).
unsafe fn gemm_raw(
    dst: *mut f32,
    dst_rs: usize,
    read_dst: bool,
    lhs: View<'_>,
    rhs: View<'_>,
    parallel: bool,
) {
    let (m, k, n) = (lhs.rows, lhs.cols, rhs.cols);
    // SAFETY: the caller's contract for `dst`; `lhs` and `rhs` stay inside their slices.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst,
            1,
            dst_rs as isize,
            read_dst,
            lhs.data.as_ptr(),
            lhs.cs as isize,
            lhs.rs as isize,
            rhs.data.as_ptr(),
            rhs.cs as isize,
            rhs.rs as isize,
            1.0,
            1.0,
            false,
            false,
            false,
            parallelism(m, n, k, parallel),
        )
    }
}

/// `dst (+)= lhs · rhs` into a row-major `[lhs.rows, rhs.cols]` block of `dst` whose rows are
/// `dst_rs` apart; adds to `dst` when `accumulate`, else overwrites it. `parallel: false` keeps
/// the product on the calling thread (for callers that parallelize over many small products).
///
/// # Panics
/// If the shapes disagree or the output reaches past `dst`.
pub fn matmul_into(
    dst: &mut [f32],
    dst_rs: usize,
    lhs: View<'_>,
    rhs: View<'_>,
    accumulate: bool,
    parallel: bool,
) {
    let (m, k, n) = (lhs.rows, lhs.cols, rhs.cols);
    assert_eq!(rhs.rows, k, "gemm: lhs is {m}x{k}, rhs is {}x{n}", rhs.rows);
    if m == 0 || n == 0 {
        return;
    }
    assert!(
        n <= dst_rs,
        "gemm: output rows of {n} overlap at stride {dst_rs}"
    );
    let last = (m - 1) * dst_rs + (n - 1);
    assert!(
        last < dst.len(),
        "gemm output {m}x{n} (row stride {dst_rs}) reaches element {last} of {}",
        dst.len()
    );
    // SAFETY: the block is inside `dst` (checked above), rows do not overlap (`n <= dst_rs`),
    // and `dst` is a unique borrow, so it overlaps neither input.
    unsafe { gemm_raw(dst.as_mut_ptr(), dst_rs, accumulate, lhs, rhs, parallel) }
}

/// `lhs · rhs` as a fresh row-major `Vec` (written once, never zero-filled first).
pub fn matmul(lhs: View<'_>, rhs: View<'_>, parallel: bool) -> Vec<f32> {
    let (m, k, n) = (lhs.rows, lhs.cols, rhs.cols);
    assert_eq!(rhs.rows, k, "gemm: lhs is {m}x{k}, rhs is {}x{n}", rhs.rows);
    let len = m * n;
    if len == 0 || k == 0 {
        return vec![0.0; len];
    }
    let mut out: Vec<f32> = Vec::with_capacity(len);
    // SAFETY: `out` has capacity for the contiguous `m x n` block and is a fresh allocation.
    // With `read_dst == false` gemm writes every element of it without reading (gemm-common
    // zeroes alpha and stores `beta · lhs · rhs`), so all `len` elements are initialized when
    // `set_len` runs.
    unsafe {
        gemm_raw(out.as_mut_ptr(), n, false, lhs, rhs, parallel);
        out.set_len(len);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive(a: &[f32], b: &[f32], m: usize, k: usize, n: usize) -> Vec<f32> {
        let mut c = vec![0.0; m * n];
        for i in 0..m {
            for j in 0..n {
                c[i * n + j] = (0..k).map(|l| a[i * k + l] * b[l * n + j]).sum();
            }
        }
        c
    }

    #[test]
    fn products_and_transposed_views_match_the_naive_product() {
        let (m, k, n) = (37, 29, 41);
        let a: Vec<f32> = (0..m * k).map(|i| ((i * 7) % 13) as f32 - 6.0).collect();
        let b: Vec<f32> = (0..k * n).map(|i| ((i * 5) % 11) as f32 - 5.0).collect();
        let want = naive(&a, &b, m, k, n);
        for parallel in [false, true] {
            let got = matmul(View::rows(&a, m, k, k), View::rows(&b, k, n, n), parallel);
            assert_eq!(got, want);
        }
        // aᵀ stored column-major is the same matrix: read it through a transposed view.
        let at: Vec<f32> = (0..k * m).map(|i| a[(i % m) * k + i / m]).collect();
        let got = matmul(View::rows(&at, k, m, m).t(), View::rows(&b, k, n, n), true);
        assert_eq!(got, want);
        // Accumulating into a wider buffer at a column offset.
        let mut dst = vec![1.0; m * (n + 3)];
        matmul_into(
            &mut dst[2..],
            n + 3,
            View::rows(&a, m, k, k),
            View::rows(&b, k, n, n),
            true,
            false,
        );
        for i in 0..m {
            for j in 0..n {
                assert_eq!(dst[2 + i * (n + 3) + j], want[i * n + j] + 1.0);
            }
        }
    }

    #[test]
    #[should_panic(expected = "reaches element")]
    fn a_view_past_the_slice_panics() {
        let a = vec![0.0; 10];
        let _ = View::rows(&a, 3, 4, 4);
    }
}
