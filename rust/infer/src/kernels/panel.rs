//! The 16-row panel layout of q8_0 / q4_0 matrices, for paths with a broadcast integer dot product
//! (AVX-512 VNNI). In the row layout every 32-value group needs a horizontal sum of 8 lanes before
//! its scale is applied; in a panel one vector lane belongs to one row, so a 512-bit `dpbusd` with
//! 4 activation bytes broadcast to every lane advances 16 rows at once and a group's exact integer
//! sums come out one per lane, with no shuffles. The arithmetic is unchanged (exact i32 group dots,
//! `(s as f32) * (sw * sx)` into lane `g % 8`, then [`super::reduce8`]), so results stay
//! bit-identical with the row layout. Weights are rearranged once, at model load, in place.
//!
//! Layout of a matrix with `rows % 16 == 0`, `G = cols / 32` groups, panel `p` = rows 16p..16p+16,
//! row `i` of a panel, group `g`, step `s` = 4 columns 32g+4s..32g+4s+4:
//! * q8_0 values: panel p's block of `16 * cols` bytes holds, at `g*512 + s*64 + i*4 + k`, the value
//!   of row 16p+i, column 32g+4s+k.
//! * q4_0 values (stored q+8): panel p's block of `8 * cols` bytes holds, at `g*256 + (s/2)*64 + i*4 + k`,
//!   column 32g+4s+k of row 16p+i in the low nibble for even s and in the high nibble for odd s.
//! * scales: panel p's block of `16 * G` floats holds row 16p+i's group g scale at `g*16 + i`.

use super::{QRow, QK};

/// Rows per panel.
pub const ROWS: usize = 16;

/// Index of (row, col) in the q8_0 panel value layout.
#[inline]
fn q8_index(cols: usize, row: usize, col: usize) -> usize {
    let (p, i) = (row / ROWS, row % ROWS);
    let (g, s, k) = (col / QK, (col % QK) / 4, col % 4);
    p * ROWS * cols + g * ROWS * QK + s * ROWS * 4 + i * 4 + k
}

/// (byte index, high nibble?) of (row, col) in the q4_0 panel value layout.
#[inline]
fn q4_index(cols: usize, row: usize, col: usize) -> (usize, bool) {
    let (p, i) = (row / ROWS, row % ROWS);
    let (g, s, k) = (col / QK, (col % QK) / 4, col % 4);
    let byte = p * ROWS * cols / 2 + g * ROWS * QK / 2 + (s / 2) * ROWS * 4 + i * 4 + k;
    (byte, s % 2 == 1)
}

/// Index of row `row`'s group `g` scale in the panel scale layout.
#[inline]
pub fn scale_index(groups: usize, row: usize, g: usize) -> usize {
    (row / ROWS) * ROWS * groups + g * ROWS + row % ROWS
}

/// Rearranges row-layout q8_0 values (`rows * cols` bytes) into panels, in place. Values move in runs
/// of 4 (one step of one row), which the layout keeps together.
pub fn pack_q8_values(qs: &mut [u8], rows: usize, cols: usize) {
    let src = qs.to_vec();
    for (r, row) in src.chunks_exact(cols).enumerate().take(rows) {
        for (q, quad) in row.chunks_exact(4).enumerate() {
            let at = q8_index(cols, r, 4 * q);
            qs[at..at + 4].copy_from_slice(quad);
        }
    }
}

/// Rearranges row-layout q4_0 bytes (`rows * cols / 2`; byte j of a group = element j | element j+16
/// << 4) into panels, in place.
pub fn pack_q4_values(packed: &mut [u8], rows: usize, cols: usize) {
    let src = packed.to_vec();
    let half = QK / 2;
    for (r, row) in src.chunks_exact(cols / 2).enumerate().take(rows) {
        for (g, bytes) in row.chunks_exact(half).enumerate() {
            // The group's 32 values in element order, then written as 4 pairs of steps.
            let mut v = [0u8; QK];
            for j in 0..half {
                v[j] = bytes[j] & 0x0f;
                v[j + half] = bytes[j] >> 4;
            }
            for pair in 0..4 {
                let (at, _) = q4_index(cols, r, g * QK + pair * 8);
                for k in 0..4 {
                    packed[at + k] = v[pair * 8 + k] | (v[pair * 8 + 4 + k] << 4);
                }
            }
        }
    }
}

/// Rearranges row-layout scales (`rows * G` values of any 4-byte type) into panels, in place.
pub fn pack_scales<T: Copy>(scales: &mut [T], rows: usize, groups: usize) {
    let src = scales.to_vec();
    for r in 0..rows {
        for g in 0..groups {
            scales[scale_index(groups, r, g)] = src[r * groups + g];
        }
    }
}

/// Value (row, col) of panel-layout q8_0 values.
#[inline]
pub fn q8_value(qs: &[i8], cols: usize, row: usize, col: usize) -> i8 {
    qs[q8_index(cols, row, col)]
}

/// Value (row, col) of panel-layout q4_0 values, without the +8 offset.
#[inline]
pub fn q4_value(packed: &[u8], cols: usize, row: usize, col: usize) -> i32 {
    let (at, high) = q4_index(cols, row, col);
    let b = packed[at];
    (if high { b >> 4 } else { b & 0x0f }) as i32 - 8
}

/// The scalar reference for one panel (`sw`: its 16·G scales) times each input: the row definition
/// of [`super::scalar::dot_q8`], row by row; `value(i, c)` is row i's column c (offset removed).
fn dot_scalar(sw: &[f32], xs: &[QRow], out: &mut [f32], value: impl Fn(usize, usize) -> i32) {
    for (x, out) in xs.iter().zip(out.chunks_exact_mut(ROWS)) {
        let groups = x.qs.len() / QK;
        for (i, o) in out.iter_mut().enumerate() {
            let scales: Vec<f32> = (0..groups).map(|g| sw[g * ROWS + i]).collect();
            *o = super::scalar::finish_lanes([0f32; 8], 0, &scales, x.d, |g| {
                (g * QK..(g + 1) * QK)
                    .map(|c| value(i, c) * x.qs[c] as i32)
                    .sum()
            });
        }
    }
}

/// [`dot_scalar`] of one q8_0 panel (`qs`: the panel's 16·cols values).
pub(super) fn dot_q8_scalar(qs: &[i8], sw: &[f32], xs: &[QRow], out: &mut [f32]) {
    let cols = qs.len() / ROWS;
    dot_scalar(sw, xs, out, |i, c| q8_value(qs, cols, i, c) as i32)
}

/// [`dot_scalar`] of one q4_0 panel (`packed`: the panel's 8·cols bytes).
pub(super) fn dot_q4_scalar(packed: &[u8], sw: &[f32], xs: &[QRow], out: &mut [f32]) {
    let cols = packed.len() * 2 / ROWS;
    dot_scalar(sw, xs, out, |i, c| q4_value(packed, cols, i, c))
}
