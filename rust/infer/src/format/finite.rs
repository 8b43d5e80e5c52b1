//! Refusing non-finite weights at load: a NaN or infinite weight (or quantization scale) turns every
//! logit it reaches into NaN, and the engine would print garbage instead of failing. One pass over
//! bytes already read; values are tested by their exponent bits (all ones = NaN or infinity).
use super::{DType, Store, Tensor};
use crate::error::{format_err, Result};

const F32_EXP: u32 = 0x7f80_0000;
const F16_EXP: u16 = 0x7c00;
/// Values tested per block before looking for the first bad one (the test over a block has no
/// early exit, so it compiles to vector code).
const BLOCK: usize = 4096;

fn bad_f32(bits: u32) -> bool {
    bits & F32_EXP == F32_EXP
}

fn bad_f16(bits: u16) -> bool {
    bits & F16_EXP == F16_EXP
}

/// Index of the first non-finite little-endian f32 in `bytes`.
fn first_bad_f32_bytes(bytes: &[u8]) -> Option<usize> {
    let (words, _) = bytes.as_chunks::<4>();
    for (b, block) in words.chunks(BLOCK).enumerate() {
        let any = block
            .iter()
            .fold(false, |acc, &c| acc | bad_f32(u32::from_le_bytes(c)));
        if any {
            let i = block.iter().position(|&c| bad_f32(u32::from_le_bytes(c)))?;
            return Some(b * BLOCK + i);
        }
    }
    None
}

/// Index of the first non-finite little-endian f16 in `bytes`.
fn first_bad_f16_bytes(bytes: &[u8]) -> Option<usize> {
    let (halves, _) = bytes.as_chunks::<2>();
    for (b, block) in halves.chunks(BLOCK).enumerate() {
        let any = block
            .iter()
            .fold(false, |acc, &c| acc | bad_f16(u16::from_le_bytes(c)));
        if any {
            let i = block.iter().position(|&c| bad_f16(u16::from_le_bytes(c)))?;
            return Some(b * BLOCK + i);
        }
    }
    None
}

/// Index of the first non-finite value of `values`.
pub(crate) fn first_bad_f32(values: &[f32]) -> Option<usize> {
    for (b, block) in values.chunks(BLOCK).enumerate() {
        if block
            .iter()
            .fold(false, |acc, v| acc | bad_f32(v.to_bits()))
        {
            return Some(b * BLOCK + block.iter().position(|v| !v.is_finite())?);
        }
    }
    None
}

fn first_bad_f16(values: &[u16]) -> Option<usize> {
    values.iter().position(|&h| bad_f16(h))
}

/// Refuses a tensor holding a non-finite value: f32 / f16 elements, q8_0 / q4_0 scales (their
/// codes are integers). `bytes` is the file the `Store::File` offsets point into.
pub(crate) fn check_tensor(t: &Tensor, bytes: &[u8]) -> Result<()> {
    let n = t.numel();
    // (index of the first bad value, whether it is a group scale)
    let bad = match &t.store {
        Store::File { offset, nbytes } => {
            let b = &bytes[*offset..offset + nbytes];
            match t.dtype {
                DType::F32 => first_bad_f32_bytes(b).map(|i| (i, false)),
                DType::F16 => first_bad_f16_bytes(b).map(|i| (i, false)),
                DType::Q8_0 => first_bad_f32_bytes(&b[n..]).map(|i| (i, true)),
                DType::Q4_0 => first_bad_f32_bytes(&b[n / 2..]).map(|i| (i, true)),
            }
        }
        Store::F32(v) => first_bad_f32(v).map(|i| (i, false)),
        Store::F16(v) => first_bad_f16(v).map(|i| (i, false)),
        Store::Q8_0 { scales, .. } | Store::Q4_0 { scales, .. } => {
            first_bad_f32(scales).map(|i| (i, true))
        }
    };
    match bad {
        None => Ok(()),
        Some((i, false)) => format_err(format!(
            "tensor {:?} holds a non-finite value (NaN or infinity) at element {i}",
            t.name
        )),
        Some((g, true)) => format_err(format!(
            "tensor {:?} holds a non-finite {} scale (NaN or infinity) for group {g}",
            t.name,
            t.dtype.name()
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_first_non_finite_value_in_every_representation() {
        for len in [1, 5, BLOCK - 1, BLOCK, BLOCK + 3, 3 * BLOCK + 17] {
            for at in [0, len / 2, len - 1] {
                for bad in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
                    let mut v: Vec<f32> = (0..len).map(|i| i as f32 - 7.5).collect();
                    assert_eq!(first_bad_f32(&v), None);
                    v[at] = bad;
                    assert_eq!(first_bad_f32(&v), Some(at), "len {len} at {at}");
                    let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
                    assert_eq!(first_bad_f32_bytes(&bytes), Some(at));
                    let halves: Vec<u16> =
                        v.iter().map(|&x| crate::kernels::f32_to_f16(x)).collect();
                    assert_eq!(first_bad_f16(&halves), Some(at));
                    let bytes: Vec<u8> = halves.iter().flat_map(|x| x.to_le_bytes()).collect();
                    assert_eq!(first_bad_f16_bytes(&bytes), Some(at));
                }
            }
        }
        // the largest finite values and subnormals are finite
        let edge = [f32::MAX, f32::MIN, f32::MIN_POSITIVE / 2.0, -0.0];
        assert_eq!(first_bad_f32(&edge), None);
        assert_eq!(first_bad_f16(&[0x7bff, 0xfbff, 0x0001, 0x8000]), None);
    }
}
