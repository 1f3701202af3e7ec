//! How bytes are shown and read back: escaped text for people, hex for round trips, and
//! the export line format (`<hex key>\t<hex value>\n`).

use std::fmt::Write as _;

/// Text for people: valid UTF-8 is kept, `\` tab, newline and carriage return are escaped
/// as `\\` `\t` `\n` `\r`, other control characters and invalid bytes as `\xNN`. A line of
/// escaped fields separated by tabs is therefore unambiguous.
pub(crate) fn escape(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            match c {
                '\\' => out.push_str("\\\\"),
                '\t' => out.push_str("\\t"),
                '\n' => out.push_str("\\n"),
                '\r' => out.push_str("\\r"),
                c if c.is_control() => {
                    let mut utf8 = [0u8; 4];
                    for byte in c.encode_utf8(&mut utf8).bytes() {
                        let _ = write!(out, "\\x{byte:02x}");
                    }
                }
                c => out.push(c),
            }
        }
        for byte in chunk.invalid() {
            let _ = write!(out, "\\x{byte:02x}");
        }
    }
    out
}

/// Lowercase hex.
pub(crate) fn to_hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for &byte in bytes {
        out.push(DIGITS[(byte >> 4) as usize] as char);
        out.push(DIGITS[(byte & 15) as usize] as char);
    }
    out
}

/// Why hex did not decode.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum HexError {
    OddLength(usize),
    NotHex { at: usize },
}

impl std::fmt::Display for HexError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HexError::OddLength(len) => write!(f, "odd number of hex digits ({len})"),
            HexError::NotHex { at } => write!(f, "not a hex digit at character {}", at + 1),
        }
    }
}

impl std::error::Error for HexError {}

/// Decodes hex (either case).
pub(crate) fn from_hex(hex: &[u8]) -> Result<Vec<u8>, HexError> {
    if !hex.len().is_multiple_of(2) {
        return Err(HexError::OddLength(hex.len()));
    }
    let digit = |at: usize| match hex[at] {
        b @ b'0'..=b'9' => Ok(b - b'0'),
        b @ b'a'..=b'f' => Ok(b - b'a' + 10),
        b @ b'A'..=b'F' => Ok(b - b'A' + 10),
        _ => Err(HexError::NotHex { at }),
    };
    (0..hex.len() / 2).map(|idx| Ok(digit(2 * idx)? << 4 | digit(2 * idx + 1)?)).collect()
}

/// One line of the export format, without its newline (a trailing `\r` is allowed):
/// `<hex key>\t<hex value>`.
pub(crate) fn parse_pair_line(line: &[u8]) -> Result<(Vec<u8>, Vec<u8>), String> {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let Some(tab) = line.iter().position(|&byte| byte == b'\t') else {
        return Err("expected `<hex key><TAB><hex value>`, found no tab".to_owned());
    };
    let (key, value) = (&line[..tab], &line[tab + 1..]);
    let key = from_hex(key).map_err(|error| format!("key: {error}"))?;
    let value = from_hex(value).map_err(|error| format!("value: {error} (after the tab)"))?;
    Ok((key, value))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escape_keeps_text_and_escapes_the_rest() {
        assert_eq!(escape(b"plain text"), "plain text");
        assert_eq!(escape("café ☕".as_bytes()), "café ☕");
        assert_eq!(escape(b"a\tb\nc\rd\\e"), "a\\tb\\nc\\rd\\\\e");
        assert_eq!(escape(b"\x00\x1b\x7f"), "\\x00\\x1b\\x7f");
        assert_eq!(escape(b"\xff\xfe ok"), "\\xff\\xfe ok");
        assert_eq!(escape("\u{85}".as_bytes()), "\\xc2\\x85");
        assert_eq!(escape(b""), "");
    }

    #[test]
    fn hex_round_trips_and_reports_errors() {
        let bytes: Vec<u8> = (0..=255).collect();
        assert_eq!(from_hex(to_hex(&bytes).as_bytes()), Ok(bytes));
        assert_eq!(from_hex(b"ABcd"), Ok(vec![0xab, 0xcd]));
        assert_eq!(from_hex(b""), Ok(vec![]));
        assert_eq!(from_hex(b"abc"), Err(HexError::OddLength(3)));
        assert_eq!(from_hex(b"0g"), Err(HexError::NotHex { at: 1 }));
    }

    #[test]
    fn pair_lines_parse() {
        assert_eq!(parse_pair_line(b"6b\t76"), Ok((b"k".to_vec(), b"v".to_vec())));
        assert_eq!(parse_pair_line(b"\t\r"), Ok((vec![], vec![])));
        assert!(parse_pair_line(b"6b76").is_err());
        assert!(parse_pair_line(b"6b\t7").is_err());
        assert!(parse_pair_line(b"6b\t76\t00").is_err());
    }
}
