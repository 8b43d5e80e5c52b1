//! GPT-2's reversible byte ↔ character mapping: byte-level vocabularies spell every byte as one
//! printable character, so tokens are strings. Printable Latin-1 bytes (`!`..`~`, `¡`..`¬`,
//! `®`..`ÿ`) stand for themselves; the other 68 bytes take U+0100, U+0101, ... in byte order.

/// Whether byte `b` is spelled by the character of the same number.
const fn is_self(b: u8) -> bool {
    matches!(b, b'!'..=b'~' | 0xA1..=0xAC | 0xAE..=0xFF)
}

/// The character that spells each byte.
pub(crate) const BYTE_TO_CHAR: [char; 256] = {
    let mut table = ['\0'; 256];
    let mut next = 0x100u32;
    let mut b = 0usize;
    while b < 256 {
        let code = if is_self(b as u8) {
            b as u32
        } else {
            next += 1;
            next - 1
        };
        table[b] = match char::from_u32(code) {
            Some(c) => c,
            None => panic!("byte-level table holds only scalar values"),
        };
        b += 1;
    }
    table
};

/// Code points of the mapping's characters all lie below this.
const CHAR_LIMIT: usize = 0x100 + 68;

/// Byte of each character below [`CHAR_LIMIT`], -1 for characters outside the mapping.
const CHAR_TO_BYTE: [i16; CHAR_LIMIT] = {
    let mut table = [-1i16; CHAR_LIMIT];
    let mut b = 0usize;
    while b < 256 {
        table[BYTE_TO_CHAR[b] as usize] = b as i16;
        b += 1;
    }
    table
};

/// The byte a byte-level character spells, `None` for characters outside the mapping.
pub(crate) fn char_to_byte(c: char) -> Option<u8> {
    let b = *CHAR_TO_BYTE.get(c as usize)?;
    u8::try_from(b).ok()
}

/// The bytes a byte-level token string spells, `None` if a character is outside the mapping.
pub(crate) fn decode_token(token: &str) -> Option<Vec<u8>> {
    token.chars().map(char_to_byte).collect()
}

/// The byte-level spelling of raw bytes.
#[cfg(test)]
pub(crate) fn encode_bytes(bytes: &[u8]) -> String {
    bytes.iter().map(|&b| BYTE_TO_CHAR[b as usize]).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mapping_is_a_bijection_onto_printable_characters() {
        let mut seen = std::collections::HashSet::new();
        for b in 0..=255u8 {
            let c = BYTE_TO_CHAR[b as usize];
            assert!(!c.is_whitespace() && !c.is_control(), "byte {b} -> {c:?}");
            assert!(seen.insert(c));
            assert_eq!(char_to_byte(c), Some(b));
        }
        // The values GPT-2's table is known by: space, newline and the last remapped byte.
        assert_eq!(BYTE_TO_CHAR[b' ' as usize], 'Ġ');
        assert_eq!(BYTE_TO_CHAR[b'\n' as usize], 'Ċ');
        assert_eq!(BYTE_TO_CHAR[0xAD], 'Ń');
        assert_eq!(char_to_byte('ń'), None);
        assert_eq!(char_to_byte('中'), None);
    }

    #[test]
    fn round_trip() {
        let bytes: Vec<u8> = (0..=255).collect();
        assert_eq!(decode_token(&encode_bytes(&bytes)), Some(bytes));
    }
}
