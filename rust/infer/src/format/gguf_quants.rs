//! ggml block types Nano has no kernels for, dequantized to f32 exactly as ggml's reference
//! `dequantize_row_*` does (the same f32 products in the same order): Q5_0, and the K-quants Q4_K,
//! Q5_K and Q6_K that Q4_K_M / Q5_K_M / Q6_K files are made of (Q5_0 is what llama-quantize puts
//! where a row is not whole 256-value blocks). The loader then requantizes them to Nano's q8_0,
//! which changes the model slightly (measured in docs/interop.md).
use crate::kernels::f16_to_f32;

/// Values per K-quant super-block.
pub const QK_K: usize = 256;

fn f16(b: &[u8], at: usize) -> f32 {
    f16_to_f32(u16::from_le_bytes([b[at], b[at + 1]]))
}

/// Bytes per block and values per block of a type this module dequantizes.
pub fn layout(ggml_type: u32) -> Option<(usize, usize)> {
    match ggml_type {
        6 => Some((22, 32)),     // Q5_0
        12 => Some((144, QK_K)), // Q4_K
        13 => Some((176, QK_K)), // Q5_K
        14 => Some((210, QK_K)), // Q6_K
        _ => None,
    }
}

/// Appends the values of `blocks` (whole blocks of `ggml_type`) to `out`; false for a type this
/// module does not handle.
pub fn dequantize(ggml_type: u32, blocks: &[u8], out: &mut Vec<f32>) -> bool {
    let Some((size, _)) = layout(ggml_type) else {
        return false;
    };
    for b in blocks.chunks_exact(size) {
        match ggml_type {
            6 => q5_0(b, out),
            12 => q4_k(b, out),
            13 => q5_k(b, out),
            _ => q6_k(b, out),
        }
    }
    true
}

/// block_q5_0: f16 d, u32 high bits, 16 bytes of low nibbles; x = (q - 16) * d.
fn q5_0(b: &[u8], out: &mut Vec<f32>) {
    let d = f16(b, 0);
    let qh = u32::from_le_bytes([b[2], b[3], b[4], b[5]]);
    let qs = &b[6..22];
    let mut y = [0f32; 32];
    for j in 0..16 {
        let xh0 = (((qh >> j) << 4) & 0x10) as u8;
        let xh1 = ((qh >> (j + 12)) & 0x10) as u8;
        let x0 = ((qs[j] & 0x0f) | xh0) as i32 - 16;
        let x1 = ((qs[j] >> 4) | xh1) as i32 - 16;
        y[j] = x0 as f32 * d;
        y[j + 16] = x1 as f32 * d;
    }
    out.extend_from_slice(&y);
}

/// The 6-bit scale and min of sub-block `j` of a Q4_K / Q5_K block's 12 scale bytes.
fn scale_min_k4(j: usize, q: &[u8]) -> (u8, u8) {
    if j < 4 {
        (q[j] & 63, q[j + 4] & 63)
    } else {
        (
            (q[j + 4] & 0x0f) | ((q[j - 4] >> 6) << 4),
            (q[j + 4] >> 4) | ((q[j] >> 6) << 4),
        )
    }
}

/// block_q4_K: f16 d, f16 dmin, 12 scale bytes, 128 bytes of nibbles; 8 sub-blocks of 32.
fn q4_k(b: &[u8], out: &mut Vec<f32>) {
    let (d, min) = (f16(b, 0), f16(b, 2));
    let scales = &b[4..16];
    let mut q = &b[16..144];
    let mut is = 0;
    for _ in (0..QK_K).step_by(64) {
        let (sc, m) = scale_min_k4(is, scales);
        let (d1, m1) = (d * sc as f32, min * m as f32);
        let (sc, m) = scale_min_k4(is + 1, scales);
        let (d2, m2) = (d * sc as f32, min * m as f32);
        out.extend(q[..32].iter().map(|&x| d1 * (x & 0x0f) as f32 - m1));
        out.extend(q[..32].iter().map(|&x| d2 * (x >> 4) as f32 - m2));
        q = &q[32..];
        is += 2;
    }
}

/// block_q5_K: f16 d, f16 dmin, 12 scale bytes, 32 bytes of high bits, 128 bytes of nibbles.
fn q5_k(b: &[u8], out: &mut Vec<f32>) {
    let (d, min) = (f16(b, 0), f16(b, 2));
    let scales = &b[4..16];
    let qh = &b[16..48];
    let mut ql = &b[48..176];
    let (mut is, mut u1, mut u2) = (0, 1u8, 2u8);
    for _ in (0..QK_K).step_by(64) {
        let (sc, m) = scale_min_k4(is, scales);
        let (d1, m1) = (d * sc as f32, min * m as f32);
        let (sc, m) = scale_min_k4(is + 1, scales);
        let (d2, m2) = (d * sc as f32, min * m as f32);
        for l in 0..32 {
            let hi = if qh[l] & u1 != 0 { 16 } else { 0 };
            out.push(d1 * ((ql[l] & 0x0f) + hi) as f32 - m1);
        }
        for l in 0..32 {
            let hi = if qh[l] & u2 != 0 { 16 } else { 0 };
            out.push(d2 * ((ql[l] >> 4) + hi) as f32 - m2);
        }
        ql = &ql[32..];
        is += 2;
        u1 <<= 2;
        u2 <<= 2;
    }
}

/// block_q6_K: 128 bytes of low nibbles, 64 bytes of high bit pairs, 16 i8 scales, f16 d.
fn q6_k(b: &[u8], out: &mut Vec<f32>) {
    let d = f16(b, 208);
    let mut y = [0f32; QK_K];
    for half in 0..2 {
        let ql = &b[half * 64..half * 64 + 64];
        let qh = &b[128 + half * 32..128 + half * 32 + 32];
        let sc = &b[192 + half * 8..192 + half * 8 + 8];
        let y = &mut y[half * 128..half * 128 + 128];
        for l in 0..32 {
            let is = l / 16;
            let q1 = ((ql[l] & 0x0f) | ((qh[l] & 3) << 4)) as i32 - 32;
            let q2 = ((ql[l + 32] & 0x0f) | (((qh[l] >> 2) & 3) << 4)) as i32 - 32;
            let q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) as i32 - 32;
            let q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) as i32 - 32;
            let s = |k: usize| d * sc[is + k] as i8 as f32;
            y[l] = s(0) * q1 as f32;
            y[l + 32] = s(2) * q2 as f32;
            y[l + 64] = s(4) * q3 as f32;
            y[l + 96] = s(6) * q4 as f32;
        }
    }
    out.extend_from_slice(&y);
}
