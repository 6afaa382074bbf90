//! GPT-2's reversible byte <-> character mapping.
//!
//! Byte-level BPE vocabularies (GPT-2, SmolLM2, ...) store every token as a
//! string in which each byte of the token is replaced by one printable
//! character: the 188 bytes that are printable Latin-1 (`!`..=`~`,
//! `¡`..=`¬`, `®`..=`ÿ`) stand for themselves, and the other 68 bytes, in
//! increasing order, become U+0100, U+0101, ... U+0143. So a space (0x20) is
//! written `Ġ` (U+0120) and a newline (0x0A) `Ċ` (U+010A).

/// Whether byte `b` is one of the 188 bytes that GPT-2 maps to itself.
const fn is_self_mapped(b: u8) -> bool {
    matches!(b, b'!'..=b'~' | 0xA1..=0xAC | 0xAE..=0xFF)
}

/// `CHAR_TO_BYTE[c]` for every code point `c < 0x144`: the byte that the
/// character stands for, or -1 if `c` is not part of the mapping.
const CHAR_TO_BYTE: [i16; 0x144] = {
    let mut table = [-1i16; 0x144];
    let mut next_extra = 0x100usize;
    let mut b = 0usize;
    while b < 256 {
        if is_self_mapped(b as u8) {
            table[b] = b as i16;
        } else {
            table[next_extra] = b as i16;
            next_extra += 1;
        }
        b += 1;
    }
    table
};

/// The byte that character `c` of a byte-level token string stands for, or
/// `None` if `c` is not one of the 256 characters of the mapping.
pub(crate) fn char_to_byte(c: char) -> Option<u8> {
    let i = c as usize;
    match CHAR_TO_BYTE.get(i) {
        Some(&b) if b >= 0 => Some(b as u8),
        _ => None,
    }
}

/// Decodes a byte-level token string to its bytes; on failure returns the
/// first character that is not in the mapping.
pub(crate) fn decode_token_text(s: &str) -> Result<Vec<u8>, char> {
    s.chars().map(|c| char_to_byte(c).ok_or(c)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The forward mapping written out independently of the table above:
    /// the GPT-2 construction, step by step.
    fn byte_to_char_reference() -> Vec<char> {
        let mut printable: Vec<u32> = (u32::from('!')..=u32::from('~')).collect();
        printable.extend(u32::from('¡')..=u32::from('¬'));
        printable.extend(u32::from('®')..=u32::from('ÿ'));
        let mut map = vec!['\0'; 256];
        let mut n = 0;
        for b in 0..256u32 {
            if printable.contains(&b) {
                map[b as usize] = char::from_u32(b).unwrap();
            } else {
                map[b as usize] = char::from_u32(256 + n).unwrap();
                n += 1;
            }
        }
        map
    }

    #[test]
    fn mapping_is_gpt2_and_bijective() {
        let fwd = byte_to_char_reference();
        for (b, &c) in fwd.iter().enumerate() {
            assert_eq!(char_to_byte(c), Some(b as u8), "char {c:?}");
        }
        let mapped = (0..0x200u32)
            .filter_map(char::from_u32)
            .filter(|&c| char_to_byte(c).is_some())
            .count();
        assert_eq!(mapped, 256);
        assert_eq!(char_to_byte('Ġ'), Some(b' '));
        assert_eq!(char_to_byte('Ċ'), Some(b'\n'));
        assert_eq!(char_to_byte(' '), None);
        assert_eq!(char_to_byte('中'), None);
        assert_eq!(decode_token_text("ĠheĊ"), Ok(b" he\n".to_vec()));
        assert_eq!(decode_token_text("a b"), Err(' '));
    }
}
