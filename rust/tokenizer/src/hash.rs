//! The vocabulary fingerprint shared by data, checkpoints and .bin files.

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

/// FNV-1a-64 over the id-ordered token list: each token's UTF-8 bytes, then 0x01 if it is
/// special else 0x00 (the flag byte also separates tokens, so ["ab","c"] ≠ ["a","bc"]).
pub fn vocabulary_hash<'a>(tokens: impl IntoIterator<Item = (&'a str, bool)>) -> u64 {
    let mut h = FNV_OFFSET;
    let mut eat = |b: u8| {
        h ^= u64::from(b);
        h = h.wrapping_mul(FNV_PRIME);
    };
    for (token, special) in tokens {
        token.bytes().for_each(&mut eat);
        eat(u8::from(special));
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_list_is_the_offset_basis() {
        assert_eq!(vocabulary_hash([]), FNV_OFFSET);
    }

    #[test]
    fn matches_a_hand_computed_fnv1a() {
        // FNV-1a-64 of the bytes "a\x00" computed step by step.
        let mut h = FNV_OFFSET;
        for b in [b'a', 0u8] {
            h = (h ^ u64::from(b)).wrapping_mul(FNV_PRIME);
        }
        assert_eq!(vocabulary_hash([("a", false)]), h);
        // Published FNV-1a-64 test vector: "a" -> 0xaf63dc4c8601ec8c.
        assert_eq!(
            (FNV_OFFSET ^ u64::from(b'a')).wrapping_mul(FNV_PRIME),
            0xaf63_dc4c_8601_ec8c
        );
    }

    #[test]
    fn special_flag_and_boundaries_change_the_hash() {
        let plain = vocabulary_hash([("ab", false), ("c", false)]);
        assert_ne!(plain, vocabulary_hash([("a", false), ("bc", false)]));
        assert_ne!(plain, vocabulary_hash([("ab", true), ("c", false)]));
    }
}
