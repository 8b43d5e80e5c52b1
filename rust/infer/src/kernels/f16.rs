//! IEEE 754 half-precision conversions (round to nearest, ties to even), independent of any ISA.

/// f32 → IEEE half bits, rounding to nearest-even; overflow gives ±inf, NaN stays NaN.
pub fn f32_to_f16(x: f32) -> u16 {
    let b = x.to_bits();
    let sign = ((b >> 16) & 0x8000) as u16;
    let exp = ((b >> 23) & 0xff) as i32;
    let man = b & 0x7f_ffff;
    if exp == 0xff {
        // Keep NaN a (quiet) NaN even when its payload lives only in the low bits.
        let nan = if man != 0 {
            0x200 | (man >> 13) as u16
        } else {
            0
        };
        return sign | 0x7c00 | nan;
    }
    let e = exp - 127 + 15; // biased half exponent
    if e >= 0x1f {
        return sign | 0x7c00;
    }
    if e <= 0 {
        // Half subnormal: value = m * 2^-24 with m = full_mantissa >> (14 - e).
        let shift = (14 - e) as u32;
        if shift > 24 {
            return sign; // below half of the smallest subnormal: rounds to zero
        }
        let full = man | 0x80_0000;
        return sign | round_shift(full, shift) as u16;
    }
    // Normal: a carry out of the mantissa correctly bumps the exponent (up to inf).
    sign | round_shift(((e as u32) << 23) | man, 13) as u16
}

/// `v >> shift` rounded to nearest, ties to even (shift in 1..=24).
fn round_shift(v: u32, shift: u32) -> u32 {
    let r = v >> shift;
    let rem = v & ((1 << shift) - 1);
    let half = 1 << (shift - 1);
    if rem > half || (rem == half && r & 1 == 1) {
        r + 1
    } else {
        r
    }
}

/// IEEE half bits → f32 (exact).
pub fn f16_to_f32(h: u16) -> f32 {
    let sign = ((h as u32) & 0x8000) << 16;
    let exp = ((h >> 10) & 0x1f) as u32;
    let man = (h & 0x3ff) as u32;
    let bits = match exp {
        0 if man == 0 => sign,
        0 => {
            // Subnormal half: man * 2^-24 is exact in f32.
            let v = man as f32 * (1.0 / 16_777_216.0);
            sign | v.to_bits()
        }
        0x1f => sign | 0x7f80_0000 | (man << 13),
        _ => sign | ((exp + 112) << 23) | (man << 13),
    };
    f32::from_bits(bits)
}
