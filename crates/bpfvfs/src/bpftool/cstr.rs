//! The C library behaviour bpftool's argument handling and messages depend on: strtoul,
//! glibc's dirname (which edits its argument), strerror, and bpftool's own is_prefix and
//! fprint_hex.

/// strtoul(s, &end, base): the value (wrapped to 64 bits as glibc's unsigned long does,
/// saturating at ULONG_MAX on overflow) and whether anything is left after the number
/// (`*endptr != '\0'`). Base 0 detects `0x` (hex) and a leading `0` (octal); base 16 allows
/// a `0x` prefix. When no digits are found, `endptr` is `s` itself.
pub fn strtoul(s: &str, base: u32) -> (u64, bool) {
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() && matches!(b[i], b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c) {
        i += 1;
    }
    let mut neg = false;
    if i < b.len() && (b[i] == b'+' || b[i] == b'-') {
        neg = b[i] == b'-';
        i += 1;
    }
    let mut base = base;
    let hex_prefix = i + 1 < b.len()
        && b[i] == b'0'
        && (b[i + 1] == b'x' || b[i + 1] == b'X')
        && b.get(i + 2).is_some_and(|c| c.is_ascii_hexdigit());
    if (base == 0 || base == 16) && hex_prefix {
        i += 2;
        base = 16;
    } else if base == 0 {
        base = if i < b.len() && b[i] == b'0' { 8 } else { 10 };
    }
    let start = i;
    let mut v: u64 = 0;
    let mut overflow = false;
    while i < b.len() {
        let d = match (b[i] as char).to_digit(36) {
            Some(d) if d < base => d as u64,
            _ => break,
        };
        match v.checked_mul(base as u64).and_then(|x| x.checked_add(d)) {
            Some(x) => v = x,
            None => overflow = true,
        }
        i += 1;
    }
    if i == start {
        // No digits: the whole string is "left over" (unless it is empty).
        return (0, !s.is_empty());
    }
    let v = if overflow {
        u64::MAX
    } else if neg {
        v.wrapping_neg()
    } else {
        v
    };
    (v, i < b.len())
}

/// bpftool's is_prefix(pfx, str): `pfx` is a prefix of `str` (so "" matches everything).
pub fn is_prefix(pfx: &str, s: &str) -> bool {
    s.as_bytes().starts_with(pfx.as_bytes())
}

/// glibc's dirname(path): returns (what `path` reads as afterwards, the result). dirname
/// writes a NUL into its argument when the path has a slash, so bpftool messages that print
/// the argument after calling it show the directory.
pub fn dirname(path: &str) -> (String, String) {
    let b = path.as_bytes();
    let mut last = b.iter().rposition(|&c| c == b'/');
    if let Some(ls) = last {
        if ls != 0 && ls + 1 == b.len() {
            // Trailing slashes: look further back.
            let mut runp = ls;
            while runp != 0 && b[runp - 1] == b'/' {
                runp -= 1;
            }
            if runp != 0 {
                last = b[..runp].iter().rposition(|&c| c == b'/');
            }
        }
    }
    match last {
        Some(ls) => {
            let mut runp = ls;
            while runp != 0 && b[runp - 1] == b'/' {
                runp -= 1;
            }
            let cut = if runp == 0 {
                if ls == 1 {
                    2
                } else {
                    1
                }
            } else {
                runp
            };
            let d = String::from_utf8_lossy(&b[..cut]).into_owned();
            (d.clone(), d)
        }
        None => (path.to_string(), ".".to_string()),
    }
}

/// glibc's strerror text for an errno value.
pub fn strerror(errno: i32) -> String {
    // SAFETY: strerror returns a valid NUL-terminated string (static or thread-local); it is
    // copied out at once. This program does not call it from several threads.
    unsafe {
        let p = libc::strerror(errno);
        if p.is_null() {
            return format!("Unknown error {errno}");
        }
        std::ffi::CStr::from_ptr(p).to_string_lossy().into_owned()
    }
}

/// bpftool's fprint_hex: bytes as `%02hhx`, `sep` between bytes, two spaces after every 8th
/// and a newline after every 16th.
pub fn fprint_hex(data: &[u8], sep: &str) -> String {
    let mut s = String::with_capacity(data.len() * 3);
    for (i, b) in data.iter().enumerate() {
        if i != 0 {
            if i % 16 == 0 {
                s.push('\n');
            } else if i % 8 == 0 {
                s.push_str("  ");
            } else {
                s.push_str(sep);
            }
        }
        s.push_str(&format!("{b:02x}"));
    }
    s
}

/// The kernel's round_up for the per-CPU value stride.
pub fn round_up8(n: usize) -> usize {
    n.div_ceil(8) * 8
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strtoul_like_glibc() {
        assert_eq!(strtoul("12", 0), (12, false));
        assert_eq!(strtoul("0x1ff", 0), (0x1ff, false));
        assert_eq!(strtoul("010", 0), (8, false));
        assert_eq!(strtoul("09", 0), (0, true));
        assert_eq!(strtoul("ff", 16), (255, false));
        assert_eq!(strtoul("0x02", 16), (2, false));
        assert_eq!(strtoul("zz", 16), (0, true));
        assert_eq!(strtoul("", 0), (0, false));
        assert_eq!(strtoul("4x", 0), (4, true));
        assert_eq!(strtoul("0x", 0), (0, true));
        assert_eq!(strtoul(" 7", 0), (7, false));
        assert_eq!(strtoul("-1", 0), (u64::MAX, false));
        assert_eq!(strtoul("99999999999999999999999", 0), (u64::MAX, false));
        assert_eq!(strtoul("4294967296", 0).0 as u32, 0);
    }

    #[test]
    fn dirname_like_glibc() {
        assert_eq!(dirname("/tmp/bt/sub").1, "/tmp/bt");
        assert_eq!(dirname("/tmp/bt/sub/").1, "/tmp/bt");
        assert_eq!(dirname("/tmp"), ("/".into(), "/".into()));
        assert_eq!(dirname("bt"), ("bt".into(), ".".into()));
        assert_eq!(dirname("a/b"), ("a".into(), "a".into()));
        assert_eq!(dirname("/"), ("/".into(), "/".into()));
        assert_eq!(dirname("//x"), ("//".into(), "//".into()));
        assert_eq!(dirname(""), ("".into(), ".".into()));
        assert_eq!(dirname("a//b//"), ("a".into(), "a".into()));
    }

    #[test]
    fn hex_like_bpftool() {
        assert_eq!(fprint_hex(&[1, 0, 0, 0], " "), "01 00 00 00");
        let v: Vec<u8> = (0..18).collect();
        assert_eq!(
            fprint_hex(&v, " "),
            "00 01 02 03 04 05 06 07  08 09 0a 0b 0c 0d 0e 0f\n10 11"
        );
        assert_eq!(fprint_hex(&[0xab; 8], ""), "abababababababab");
        assert_eq!(strerror(libc::ENOENT), "No such file or directory");
        assert!(is_prefix("", "key") && is_prefix("k", "key") && !is_prefix("keys", "key"));
    }
}
