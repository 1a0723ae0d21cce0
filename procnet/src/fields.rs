//! Lines, whitespace-separated tokens and numbers of `/proc` text, without allocating.
//!
//! Every function here takes untrusted bytes and returns `None` instead of panicking.

/// The non-empty lines of `text` (without the `\n`), including a final line with no newline.
pub fn lines(text: &[u8]) -> impl Iterator<Item = &[u8]> {
    text.split(|b| *b == b'\n').filter(|l| !l.is_empty())
}

/// The tokens of a line separated by runs of spaces or tabs.
pub fn tokens(line: &[u8]) -> impl Iterator<Item = &[u8]> + Clone {
    line.split(|b| *b == b' ' || *b == b'\t')
        .filter(|t| !t.is_empty())
}

/// An unsigned decimal number that fits in a `u64`.
pub fn dec_u64(s: &[u8]) -> Option<u64> {
    if s.is_empty() {
        return None;
    }
    let mut v: u64 = 0;
    for &c in s {
        let d = c.wrapping_sub(b'0');
        if d > 9 {
            return None;
        }
        v = v.checked_mul(10)?.checked_add(u64::from(d))?;
    }
    Some(v)
}

/// An unsigned decimal number that fits in a `u32`.
pub fn dec_u32(s: &[u8]) -> Option<u32> {
    dec_u64(s).and_then(|v| u32::try_from(v).ok())
}

/// A hexadecimal number of 1 to `max_digits` digits (upper or lower case), at most 16 digits.
pub fn hex(s: &[u8], max_digits: usize) -> Option<u64> {
    if s.is_empty() || s.len() > max_digits.min(16) {
        return None;
    }
    let mut v: u64 = 0;
    for &c in s {
        let d = match c {
            b'0'..=b'9' => c - b'0',
            b'a'..=b'f' => c - b'a' + 10,
            b'A'..=b'F' => c - b'A' + 10,
            _ => return None,
        };
        v = (v << 4) | u64::from(d);
    }
    Some(v)
}

/// Splits `s` at its only `sep`; `None` if `sep` is missing or appears more than once.
pub fn split_once_exact(s: &[u8], sep: u8) -> Option<(&[u8], &[u8])> {
    let i = s.iter().position(|b| *b == sep)?;
    let (a, rest) = (&s[..i], &s[i + 1..]);
    if rest.contains(&sep) {
        return None;
    }
    Some((a, rest))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers() {
        assert_eq!(dec_u64(b"0"), Some(0));
        assert_eq!(dec_u64(b"18446744073709551615"), Some(u64::MAX));
        assert_eq!(dec_u64(b"18446744073709551616"), None);
        assert_eq!(dec_u64(b"-1"), None);
        assert_eq!(dec_u64(b""), None);
        assert_eq!(dec_u32(b"4294967296"), None);
        assert_eq!(hex(b"0100007F", 8), Some(0x0100_007F));
        assert_eq!(hex(b"e50d", 4), Some(0xE50D));
        assert_eq!(hex(b"12345", 4), None);
        assert_eq!(hex(b"0x1", 4), None);
        assert_eq!(hex(b"", 4), None);
    }

    #[test]
    fn splitting() {
        let l: Vec<&[u8]> = lines(b"a\nb\n\nc").collect();
        assert_eq!(l, [&b"a"[..], b"b", b"c"]);
        let t: Vec<&[u8]> = tokens(b"  a \t b  c ").collect();
        assert_eq!(t, [&b"a"[..], b"b", b"c"]);
        assert_eq!(split_once_exact(b"a:b", b':'), Some((&b"a"[..], &b"b"[..])));
        assert_eq!(split_once_exact(b"a:b:c", b':'), None);
        assert_eq!(split_once_exact(b"ab", b':'), None);
    }
}
