//! Transformation functions (`t:` actions): each one maps bytes to bytes the
//! way ModSecurity v2 does, so that CRS regexes written against ModSecurity see
//! the same normalised input. This module owns no state.

use base64::Engine as _;
use sha1::Digest as _;

/// One transformation named by a `t:` action.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Transform {
    Lowercase,
    Uppercase,
    UrlDecode,
    UrlDecodeUni,
    UrlEncode,
    HtmlEntityDecode,
    JsDecode,
    CssDecode,
    CmdLine,
    CompressWhitespace,
    RemoveWhitespace,
    RemoveNulls,
    ReplaceNulls,
    RemoveComments,
    RemoveCommentsChar,
    ReplaceComments,
    NormalizePath,
    NormalizePathWin,
    Base64Decode,
    Base64DecodeExt,
    Base64Encode,
    HexDecode,
    HexEncode,
    Utf8ToUnicode,
    Length,
    Sha1,
    Trim,
    TrimLeft,
    TrimRight,
    EscapeSeqDecode,
    SqlHexDecode,
    /// Rampart's own (not in ModSecurity): every Unicode decimal digit (`Nd`: fullwidth
    /// `４`, Arabic-Indic `٤`, Devanagari `४`, …) becomes its ASCII digit, and the
    /// ideographic space and fullwidth hyphen become `' '` and `'-'`, so a card-number
    /// rule sees a number typed in another script as the number it is.
    AsciiDigits,
}

/// A `t:` name this engine does not know.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown transformation {0}")]
pub struct UnknownTransform(pub String);

impl Transform {
    /// Parses a `t:` name. `Ok(None)` is returned for `none`, which is not
    /// a transformation but a reset of the list; callers handle it.
    pub fn from_name(name: &str) -> Result<Option<Transform>, UnknownTransform> {
        let t = match name.to_ascii_lowercase().as_str() {
            "none" => return Ok(None),
            "lowercase" => Transform::Lowercase,
            "uppercase" => Transform::Uppercase,
            "urldecode" => Transform::UrlDecode,
            "urldecodeuni" => Transform::UrlDecodeUni,
            "urlencode" => Transform::UrlEncode,
            "htmlentitydecode" => Transform::HtmlEntityDecode,
            "jsdecode" => Transform::JsDecode,
            "cssdecode" => Transform::CssDecode,
            "cmdline" => Transform::CmdLine,
            "compresswhitespace" => Transform::CompressWhitespace,
            "removewhitespace" => Transform::RemoveWhitespace,
            "removenulls" => Transform::RemoveNulls,
            "replacenulls" => Transform::ReplaceNulls,
            "removecomments" => Transform::RemoveComments,
            "removecommentschar" => Transform::RemoveCommentsChar,
            "replacecomments" => Transform::ReplaceComments,
            "normalizepath" | "normalisepath" => Transform::NormalizePath,
            "normalizepathwin" | "normalisepathwin" => Transform::NormalizePathWin,
            "base64decode" => Transform::Base64Decode,
            "base64decodeext" => Transform::Base64DecodeExt,
            "base64encode" => Transform::Base64Encode,
            "hexdecode" => Transform::HexDecode,
            "hexencode" => Transform::HexEncode,
            "utf8tounicode" => Transform::Utf8ToUnicode,
            "length" => Transform::Length,
            "sha1" => Transform::Sha1,
            "trim" => Transform::Trim,
            "trimleft" => Transform::TrimLeft,
            "trimright" => Transform::TrimRight,
            "escapeseqdecode" => Transform::EscapeSeqDecode,
            "sqlhexdecode" => Transform::SqlHexDecode,
            "asciidigits" => Transform::AsciiDigits,
            _ => return Err(UnknownTransform(name.to_string())),
        };
        Ok(Some(t))
    }

    /// Applies the transformation.
    pub fn apply(self, input: &[u8]) -> Vec<u8> {
        match self {
            Transform::Lowercase => input.to_ascii_lowercase(),
            Transform::Uppercase => input.to_ascii_uppercase(),
            Transform::UrlDecode => url_decode(input, false),
            Transform::UrlDecodeUni => url_decode(input, true),
            Transform::UrlEncode => url_encode(input),
            Transform::HtmlEntityDecode => html_entity_decode(input),
            Transform::JsDecode => js_decode(input),
            Transform::CssDecode => css_decode(input),
            Transform::CmdLine => cmd_line(input),
            Transform::CompressWhitespace => compress_whitespace(input),
            Transform::RemoveWhitespace => input
                .iter()
                .copied()
                .filter(|&b| !is_space(b) && b != 0xa0)
                .collect(),
            Transform::RemoveNulls => input.iter().copied().filter(|&b| b != 0).collect(),
            Transform::ReplaceNulls => input
                .iter()
                .map(|&b| if b == 0 { b' ' } else { b })
                .collect(),
            Transform::RemoveComments => remove_comments(input),
            Transform::RemoveCommentsChar => remove_comments_char(input),
            Transform::ReplaceComments => replace_comments(input),
            Transform::NormalizePath => normalize_path(input, false),
            Transform::NormalizePathWin => normalize_path(input, true),
            Transform::Base64Decode => base64_decode(input, false),
            Transform::Base64DecodeExt => base64_decode(input, true),
            Transform::Base64Encode => base64::engine::general_purpose::STANDARD
                .encode(input)
                .into_bytes(),
            Transform::HexDecode => hex_decode(input),
            Transform::HexEncode => hex_encode(input),
            Transform::Utf8ToUnicode => utf8_to_unicode(input),
            Transform::Length => input.len().to_string().into_bytes(),
            Transform::Sha1 => sha1::Sha1::digest(input).to_vec(),
            Transform::Trim => trim_right(trim_left(input)).to_vec(),
            Transform::TrimLeft => trim_left(input).to_vec(),
            Transform::TrimRight => trim_right(input).to_vec(),
            Transform::EscapeSeqDecode => escape_seq_decode(input),
            Transform::SqlHexDecode => sql_hex_decode(input),
            Transform::AsciiDigits => ascii_digits(input),
        }
    }
}

impl Transform {
    /// True when [`Transform::apply`] would return `input` as it is. A quick scan for the
    /// bytes the transformation acts on, so that the common case (an ordinary value with
    /// nothing to decode) costs no copy; `false` only means "may change".
    pub fn leaves_unchanged(self, input: &[u8]) -> bool {
        let none = |f: fn(u8) -> bool| !input.iter().any(|&b| f(b));
        match self {
            Transform::Lowercase => none(|b| b.is_ascii_uppercase()),
            Transform::Uppercase => none(|b| b.is_ascii_lowercase()),
            Transform::UrlDecode | Transform::UrlDecodeUni => none(|b| b == b'%' || b == b'+'),
            Transform::HtmlEntityDecode => none(|b| b == b'&'),
            Transform::JsDecode | Transform::CssDecode | Transform::EscapeSeqDecode => {
                none(|b| b == b'\\')
            }
            Transform::RemoveNulls | Transform::ReplaceNulls => none(|b| b == 0),
            Transform::RemoveWhitespace => none(|b| is_space(b) || b == 0xa0),
            Transform::CompressWhitespace => {
                none(|b| (is_space(b) && b != b' ') || b == 0xa0) && find(input, b"  ").is_none()
            }
            Transform::ReplaceComments => find(input, b"/*").is_none(),
            Transform::RemoveCommentsChar => {
                none(|b| b == b'#')
                    && find(input, b"/*").is_none()
                    && find(input, b"*/").is_none()
                    && find(input, b"--").is_none()
            }
            Transform::Utf8ToUnicode | Transform::AsciiDigits => input.is_ascii(),
            Transform::CmdLine => {
                none(|b| {
                    b.is_ascii_uppercase()
                        || matches!(b, b'"' | b'\'' | b'\\' | b'^' | b',' | b';')
                        || (is_space(b) && b != b' ')
                }) && find(input, b"  ").is_none()
                    && find(input, b" /").is_none()
                    && find(input, b" (").is_none()
            }
            Transform::Trim | Transform::TrimLeft | Transform::TrimRight => {
                !input.first().is_some_and(|&b| is_space(b))
                    && !input.last().is_some_and(|&b| is_space(b))
            }
            Transform::SqlHexDecode => !input
                .windows(2)
                .any(|w| w[0] == b'0' && (w[1] == b'x' || w[1] == b'X')),
            _ => false,
        }
    }
}

/// Applies a transformation list, copying only when a step changes the value.
pub fn apply_all<'a>(transforms: &[Transform], input: &'a [u8]) -> std::borrow::Cow<'a, [u8]> {
    let mut cur = std::borrow::Cow::Borrowed(input);
    for t in transforms {
        if !t.leaves_unchanged(&cur) {
            cur = std::borrow::Cow::Owned(t.apply(&cur));
        }
    }
    cur
}

/// C `isspace` in the "C" locale, which ModSecurity uses throughout.
pub(crate) fn is_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c)
}

fn hex_val(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

fn hex2(a: u8, b: u8) -> Option<u8> {
    Some(hex_val(a)? << 4 | hex_val(b)?)
}

/// Reduces a UTF-16 code unit to one byte the way ModSecurity does without a
/// unicode map: full-width ASCII folds to ASCII, anything else keeps its low
/// byte.
fn unicode_to_byte(code: u32) -> u8 {
    if (0xff01..=0xff5e).contains(&code) {
        (code - 0xfee0) as u8
    } else {
        (code & 0xff) as u8
    }
}

/// `urlDecode` / `urlDecodeUni`: invalid escapes are kept as they are, which
/// is the non-strict decoding ModSecurity applies everywhere.
/// The first code point of each run of ten Unicode decimal digits (general category `Nd`,
/// Unicode 14: 66 runs, 660 digits; every `Nd` digit lies in such a run, 0 to 9 in order).
const DECIMAL_ZEROS: [u32; 66] = [
    0x30, 0x660, 0x6F0, 0x7C0, 0x966, 0x9E6, 0xA66, 0xAE6, 0xB66, 0xBE6, 0xC66, 0xCE6, 0xD66,
    0xDE6, 0xE50, 0xED0, 0xF20, 0x1040, 0x1090, 0x17E0, 0x1810, 0x1946, 0x19D0, 0x1A80, 0x1A90,
    0x1B50, 0x1BB0, 0x1C40, 0x1C50, 0xA620, 0xA8D0, 0xA900, 0xA9D0, 0xA9F0, 0xAA50, 0xABF0, 0xFF10,
    0x104A0, 0x10D30, 0x11066, 0x110F0, 0x11136, 0x111D0, 0x112F0, 0x11450, 0x114D0, 0x11650,
    0x116C0, 0x11730, 0x118E0, 0x11950, 0x11C50, 0x11D50, 0x11DA0, 0x16A60, 0x16AC0, 0x16B50,
    0x1D7CE, 0x1D7D8, 0x1D7E2, 0x1D7EC, 0x1D7F6, 0x1E140, 0x1E2F0, 0x1E950, 0x1FBF0,
];

/// The value of `c` if it is a decimal digit of any script (Unicode `Nd`).
pub fn decimal_digit(c: char) -> Option<u8> {
    let code = u32::from(c);
    let run = DECIMAL_ZEROS
        .partition_point(|&zero| zero <= code)
        .checked_sub(1)?;
    u8::try_from(code - DECIMAL_ZEROS[run])
        .ok()
        .filter(|d| *d < 10)
}

fn ascii_digits(input: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(input.len());
    for chunk in input.utf8_chunks() {
        for c in chunk.valid().chars() {
            match (decimal_digit(c), c) {
                (Some(d), _) => out.push(b'0' + d),
                (None, '\u{3000}') => out.push(b' '),
                (None, '\u{FF0D}') => out.push(b'-'),
                (None, c) => {
                    let mut buf = [0; 4];
                    out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
                }
            }
        }
        out.extend_from_slice(chunk.invalid());
    }
    out
}

pub(crate) fn url_decode(input: &[u8], uni: bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(input.len());
    let mut i = 0;
    while i < input.len() {
        let b = input[i];
        if b == b'%' {
            if uni
                && i + 5 < input.len()
                && (input[i + 1] == b'u' || input[i + 1] == b'U')
                && input[i + 2..i + 6].iter().all(|c| c.is_ascii_hexdigit())
            {
                let code = input[i + 2..i + 6].iter().fold(0u32, |acc, &c| {
                    acc << 4 | u32::from(hex_val(c).unwrap_or(0))
                });
                out.push(unicode_to_byte(code));
                i += 6;
                continue;
            }
            if i + 2 < input.len() {
                if let Some(v) = hex2(input[i + 1], input[i + 2]) {
                    out.push(v);
                    i += 3;
                    continue;
                }
            }
            out.push(b'%');
            i += 1;
        } else if b == b'+' {
            out.push(b' ');
            i += 1;
        } else {
            out.push(b);
            i += 1;
        }
    }
    out
}

fn url_encode(input: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(input.len());
    for &b in input {
        if b == b' ' {
            out.push(b'+');
        } else if b.is_ascii_alphanumeric() || b"-_.*".contains(&b) {
            out.push(b);
        } else {
            out.extend_from_slice(format!("%{b:02x}").as_bytes());
        }
    }
    out
}

fn html_entity_decode(input: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(input.len());
    let mut i = 0;
    while i < input.len() {
        if input[i] != b'&' {
            out.push(input[i]);
            i += 1;
            continue;
        }
        let rest = &input[i + 1..];
        if rest.first() == Some(&b'#') {
            let (hex, start) = match rest.get(1) {
                Some(b'x') | Some(b'X') => (true, 2),
                _ => (false, 1),
            };
            let mut j = start;
            while j < rest.len()
                && (if hex {
                    rest[j].is_ascii_hexdigit()
                } else {
                    rest[j].is_ascii_digit()
                })
            {
                j += 1;
            }
            if j > start {
                let digits = &rest[start..j];
                let mut v: u32 = 0;
                for &d in digits {
                    v = v
                        .wrapping_mul(if hex { 16 } else { 10 })
                        .wrapping_add(u32::from(hex_val(d).unwrap_or(0)));
                }
                out.push(v as u8);
                if rest.get(j) == Some(&b';') {
                    j += 1;
                }
                i += 1 + j;
                continue;
            }
        } else {
            let mut j = 0;
            while j < rest.len() && rest[j].is_ascii_alphanumeric() {
                j += 1;
            }
            let name = rest[..j].to_ascii_lowercase();
            let decoded = match name.as_slice() {
                b"quot" => Some(b'"'),
                b"amp" => Some(b'&'),
                b"lt" => Some(b'<'),
                b"gt" => Some(b'>'),
                b"nbsp" => Some(0xa0),
                _ => None,
            };
            if let Some(d) = decoded {
                out.push(d);
                if rest.get(j) == Some(&b';') {
                    j += 1;
                }
                i += 1 + j;
                continue;
            }
        }
        out.push(b'&');
        i += 1;
    }
    out
}

fn js_decode(input: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(input.len());
    let mut i = 0;
    while i < input.len() {
        if input[i] != b'\\' || i + 1 >= input.len() {
            out.push(input[i]);
            i += 1;
            continue;
        }
        let c = input[i + 1];
        if (c == b'u' || c == b'U')
            && i + 5 < input.len()
            && input[i + 2..i + 6].iter().all(|c| c.is_ascii_hexdigit())
        {
            let code = input[i + 2..i + 6].iter().fold(0u32, |acc, &c| {
                acc << 4 | u32::from(hex_val(c).unwrap_or(0))
            });
            out.push(unicode_to_byte(code));
            i += 6;
        } else if (c == b'x' || c == b'X') && i + 3 < input.len() {
            if let Some(v) = hex2(input[i + 2], input[i + 3]) {
                out.push(v);
                i += 4;
            } else {
                out.push(c);
                i += 2;
            }
        } else if (b'0'..=b'7').contains(&c) {
            let mut j = i + 1;
            let mut v: u32 = 0;
            while j < input.len() && j < i + 4 && (b'0'..=b'7').contains(&input[j]) {
                let nv = v * 8 + u32::from(input[j] - b'0');
                if nv > 0o377 {
                    break;
                }
                v = nv;
                j += 1;
            }
            out.push(v as u8);
            i = j;
        } else {
            out.push(match c {
                b'a' => 7,
                b'b' => 8,
                b'f' => 0x0c,
                b'n' => b'\n',
                b'r' => b'\r',
                b't' => b'\t',
                b'v' => 0x0b,
                other => other,
            });
            i += 2;
        }
    }
    out
}

fn css_decode(input: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(input.len());
    let mut i = 0;
    while i < input.len() {
        if input[i] != b'\\' {
            out.push(input[i]);
            i += 1;
            continue;
        }
        if i + 1 >= input.len() {
            // A lone trailing backslash is dropped.
            i += 1;
            continue;
        }
        let mut j = i + 1;
        while j < input.len() && j < i + 7 && input[j].is_ascii_hexdigit() {
            j += 1;
        }
        if j > i + 1 {
            let code = input[i + 1..j].iter().fold(0u32, |acc, &c| {
                acc << 4 | u32::from(hex_val(c).unwrap_or(0))
            });
            let n = j - i - 1;
            // Full-width folding applies to the 4+ digit forms only.
            let byte = if n >= 4 {
                unicode_to_byte(code & 0xffff)
            } else {
                (code & 0xff) as u8
            };
            out.push(byte);
            if j < input.len() && is_space(input[j]) {
                j += 1;
            }
            i = j;
        } else if input[i + 1] == b'\n' {
            i += 2;
        } else {
            out.push(input[i + 1]);
            i += 2;
        }
    }
    out
}

fn cmd_line(input: &[u8]) -> Vec<u8> {
    let mut out: Vec<u8> = Vec::with_capacity(input.len());
    let mut space = false;
    for &b in input {
        match b {
            b'"' | b'\'' | b'\\' | b'^' => {}
            b' ' | b'\t' | b'\r' | b'\n' | 0x0b | 0x0c | b',' | b';' => {
                if !space {
                    out.push(b' ');
                    space = true;
                }
            }
            b'/' | b'(' => {
                if space {
                    out.pop();
                }
                space = false;
                out.push(b);
            }
            _ => {
                out.push(b.to_ascii_lowercase());
                space = false;
            }
        }
    }
    out
}

fn compress_whitespace(input: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(input.len());
    let mut in_space = false;
    for &b in input {
        if is_space(b) || b == 0xa0 {
            if !in_space {
                out.push(b' ');
                in_space = true;
            }
        } else {
            out.push(b);
            in_space = false;
        }
    }
    out
}

fn remove_comments(input: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(input.len());
    let mut i = 0;
    while i < input.len() {
        if input[i..].starts_with(b"/*") {
            match find(&input[i + 2..], b"*/") {
                Some(p) => i = i + 2 + p + 2,
                None => break,
            }
        } else if input[i..].starts_with(b"<!--") {
            match find(&input[i + 4..], b"-->") {
                Some(p) => i = i + 4 + p + 3,
                None => break,
            }
        } else if input[i..].starts_with(b"--") || input[i] == b'#' {
            break;
        } else {
            out.push(input[i]);
            i += 1;
        }
    }
    out
}

fn remove_comments_char(input: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(input.len());
    let mut i = 0;
    while i < input.len() {
        let rest = &input[i..];
        if rest.starts_with(b"/*") || rest.starts_with(b"*/") || rest.starts_with(b"--") {
            i += 2;
        } else if rest.starts_with(b"<!--") {
            i += 4;
        } else if rest.starts_with(b"-->") {
            i += 3;
        } else if rest[0] == b'#' {
            i += 1;
        } else {
            out.push(rest[0]);
            i += 1;
        }
    }
    out
}

fn replace_comments(input: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(input.len());
    let mut i = 0;
    while i < input.len() {
        if input[i..].starts_with(b"/*") {
            out.push(b' ');
            match find(&input[i + 2..], b"*/") {
                Some(p) => i = i + 2 + p + 2,
                None => break,
            }
        } else {
            out.push(input[i]);
            i += 1;
        }
    }
    out
}

/// Substring search; linear time, so hostile input cannot make it quadratic.
pub(crate) fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    memchr::memmem::find(hay, needle)
}

fn normalize_path(input: &[u8], win: bool) -> Vec<u8> {
    let src: Vec<u8> = if win {
        input
            .iter()
            .map(|&b| if b == b'\\' { b'/' } else { b })
            .collect()
    } else {
        input.to_vec()
    };
    if src.is_empty() {
        return src;
    }
    let absolute = src[0] == b'/';
    let trailing = src.ends_with(b"/");
    let mut parts: Vec<&[u8]> = Vec::new();
    for seg in src.split(|&b| b == b'/') {
        match seg {
            b"" | b"." => {}
            b".." => {
                // Above the root of a relative path the `..` is kept, as
                // ModSecurity does; an absolute path cannot climb higher.
                if parts.last().is_some_and(|p| *p != b"..") {
                    parts.pop();
                } else if !absolute {
                    parts.push(seg);
                }
            }
            _ => parts.push(seg),
        }
    }
    let mut out = Vec::with_capacity(src.len());
    if absolute {
        out.push(b'/');
    }
    out.extend_from_slice(&parts.join(&b'/'));
    let last_dot = src.ends_with(b"/.") || src.ends_with(b"/..") || src == b"." || src == b"..";
    if (trailing || last_dot) && !out.ends_with(b"/") && !parts.is_empty() {
        out.push(b'/');
    }
    out
}

fn base64_decode(input: &[u8], ext: bool) -> Vec<u8> {
    let is_b64 = |b: u8| b.is_ascii_alphanumeric() || b == b'+' || b == b'/';
    let mut clean = Vec::with_capacity(input.len());
    for &b in input {
        if is_b64(b) {
            clean.push(b);
        } else if b == b'=' || !ext {
            // Plain base64Decode stops at the first character outside the
            // alphabet; the Ext variant skips such characters instead.
            if !ext || b == b'=' {
                break;
            }
        }
    }
    let mut out = Vec::with_capacity(clean.len() * 3 / 4 + 3);
    let mut acc: u32 = 0;
    let mut bits = 0;
    for b in clean {
        let v = match b {
            b'A'..=b'Z' => b - b'A',
            b'a'..=b'z' => b - b'a' + 26,
            b'0'..=b'9' => b - b'0' + 52,
            b'+' => 62,
            _ => 63,
        };
        acc = acc << 6 | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    out
}

fn hex_decode(input: &[u8]) -> Vec<u8> {
    input
        .chunks(2)
        .filter_map(|c| if c.len() == 2 { hex2(c[0], c[1]) } else { None })
        .collect()
}

pub(crate) fn hex_encode(input: &[u8]) -> Vec<u8> {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut out = Vec::with_capacity(input.len() * 2);
    for &b in input {
        out.push(HEX[usize::from(b >> 4)]);
        out.push(HEX[usize::from(b & 15)]);
    }
    out
}

fn utf8_to_unicode(input: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(input.len());
    let mut i = 0;
    while i < input.len() {
        let b = input[i];
        let len = match b {
            0x00..=0x7f => 1,
            0xc2..=0xdf => 2,
            0xe0..=0xef => 3,
            0xf0..=0xf4 => 4,
            _ => 0,
        };
        if len > 1 && i + len <= input.len() {
            if let Ok(s) = std::str::from_utf8(&input[i..i + len]) {
                if let Some(c) = s.chars().next() {
                    out.extend_from_slice(format!("%u{:04x}", u32::from(c)).as_bytes());
                    i += len;
                    continue;
                }
            }
        }
        out.push(b);
        i += 1;
    }
    out
}

fn trim_left(input: &[u8]) -> &[u8] {
    let start = input
        .iter()
        .position(|&b| !is_space(b))
        .unwrap_or(input.len());
    &input[start..]
}

fn trim_right(input: &[u8]) -> &[u8] {
    let end = input
        .iter()
        .rposition(|&b| !is_space(b))
        .map_or(0, |p| p + 1);
    &input[..end]
}

fn escape_seq_decode(input: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(input.len());
    let mut i = 0;
    while i < input.len() {
        if input[i] != b'\\' || i + 1 >= input.len() {
            out.push(input[i]);
            i += 1;
            continue;
        }
        let c = input[i + 1];
        let simple = match c {
            b'a' => Some(7),
            b'b' => Some(8),
            b'f' => Some(0x0c),
            b'n' => Some(b'\n'),
            b'r' => Some(b'\r'),
            b't' => Some(b'\t'),
            b'v' => Some(0x0b),
            b'\\' | b'?' | b'\'' | b'"' => Some(c),
            _ => None,
        };
        if let Some(v) = simple {
            out.push(v);
            i += 2;
        } else if (c == b'x' || c == b'X')
            && i + 3 < input.len()
            && hex2(input[i + 2], input[i + 3]).is_some()
        {
            out.push(hex2(input[i + 2], input[i + 3]).unwrap_or(0));
            i += 4;
        } else if (b'0'..=b'7').contains(&c) {
            let mut j = i + 1;
            let mut v: u32 = 0;
            while j < input.len() && j < i + 4 && (b'0'..=b'7').contains(&input[j]) {
                v = v * 8 + u32::from(input[j] - b'0');
                j += 1;
            }
            out.push(v as u8);
            i = j;
        } else {
            out.push(b'\\');
            out.push(c);
            i += 2;
        }
    }
    out
}

fn sql_hex_decode(input: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(input.len());
    let mut i = 0;
    while i < input.len() {
        if input[i] == b'0'
            && i + 1 < input.len()
            && (input[i + 1] == b'x' || input[i + 1] == b'X')
            && i + 3 < input.len()
            && hex2(input[i + 2], input[i + 3]).is_some()
        {
            let mut j = i + 2;
            while j + 1 < input.len() {
                match hex2(input[j], input[j + 1]) {
                    Some(v) => out.push(v),
                    None => break,
                }
                j += 2;
            }
            i = j;
        } else {
            out.push(input[i]);
            i += 1;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `leaves_unchanged` may only say so when `apply` really returns its input: checked
    /// on random strings over the bytes the transformations act on.
    #[test]
    fn leaves_unchanged_never_lies() {
        const ALPHABET: &[u8] = b"aZ0x%+&#\\/*-<>!;,'\"^ \t\n\x0b\x00\xa0\xc3\xa9(u2";
        let all = [
            "lowercase",
            "uppercase",
            "urlDecode",
            "urlDecodeUni",
            "htmlEntityDecode",
            "jsDecode",
            "cssDecode",
            "escapeSeqDecode",
            "removeNulls",
            "replaceNulls",
            "removeWhitespace",
            "compressWhitespace",
            "replaceComments",
            "removeCommentsChar",
            "utf8toUnicode",
            "cmdLine",
            "trim",
            "trimLeft",
            "trimRight",
            "sqlHexDecode",
            "normalizePath",
            "base64Decode",
            "length",
        ];
        let mut state = 0x2545_f491_4f6c_dd1du64;
        for _ in 0..20_000 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let len = (state % 7) as usize;
            let input: Vec<u8> = (0..len)
                .map(|i| ALPHABET[((state >> (8 + 5 * i)) as usize) % ALPHABET.len()])
                .collect();
            for name in all {
                let tr = Transform::from_name(name).unwrap().unwrap();
                if tr.leaves_unchanged(&input) {
                    assert_eq!(tr.apply(&input), input, "{name} changed {input:?}");
                }
            }
        }
    }

    fn t(tr: Transform, input: &str) -> String {
        String::from_utf8_lossy(&tr.apply(input.as_bytes())).into_owned()
    }

    #[test]
    fn url_decoding_keeps_invalid_escapes() {
        assert_eq!(t(Transform::UrlDecodeUni, "a%20b+c%zz%2"), "a b c%zz%2");
        assert_eq!(t(Transform::UrlDecodeUni, "%u0041%uff0e"), "A.");
        assert_eq!(
            t(Transform::AsciiDigits, "４１１１\u{3000}١٢٣\u{FF0D}४𝟗 x7"),
            "4111 123-49 x7"
        );
        assert_eq!(t(Transform::UrlDecode, "%u0041"), "%u0041");
    }

    #[test]
    fn html_entities_decode_with_and_without_semicolon() {
        assert_eq!(
            t(Transform::HtmlEntityDecode, "&lt;a&#x41;&#66&quot;&foo;"),
            "<aAB\"&foo;"
        );
    }

    #[test]
    fn js_and_css_escapes() {
        assert_eq!(t(Transform::JsDecode, r"\x41\u0042\n\101\q"), "AB\nAq");
        assert_eq!(t(Transform::CssDecode, r"\61 lert\(\0000"), "alert(\0");
    }

    #[test]
    fn cmdline_normalises_shell_obfuscation() {
        assert_eq!(
            t(Transform::CmdLine, "C^at  /ETC/p'a's\"s\"wd"),
            "cat/etc/passwd"
        );
        assert_eq!(t(Transform::CmdLine, "a,b;;c (d"), "a b c(d");
    }

    #[test]
    fn path_normalisation() {
        assert_eq!(t(Transform::NormalizePath, "/a/./b/../../c//d"), "/c/d");
        assert_eq!(
            t(Transform::NormalizePath, "../../etc/passwd"),
            "../../etc/passwd"
        );
        assert_eq!(t(Transform::NormalizePathWin, "a\\b\\..\\c\\"), "a/c/");
    }

    #[test]
    fn comments_and_whitespace() {
        assert_eq!(t(Transform::ReplaceComments, "a/*x*/b/*c"), "a b ");
        assert_eq!(t(Transform::RemoveComments, "a/*x*/b--c"), "ab");
        assert_eq!(t(Transform::CompressWhitespace, "a \t\n b"), "a b");
        assert_eq!(t(Transform::RemoveWhitespace, " a b "), "ab");
        assert_eq!(t(Transform::Trim, "  a b \n"), "a b");
    }

    #[test]
    fn encodings() {
        assert_eq!(t(Transform::Base64Decode, "Zm9vYmFy"), "foobar");
        assert_eq!(t(Transform::Base64DecodeExt, "Zm9v.YmFy"), "foobar");
        assert_eq!(t(Transform::HexEncode, "AB"), "4142");
        assert_eq!(t(Transform::HexDecode, "4142"), "AB");
        assert_eq!(t(Transform::Utf8ToUnicode, "aé"), "a%u00e9");
        assert_eq!(t(Transform::Length, "abcd"), "4");
        assert_eq!(t(Transform::EscapeSeqDecode, r"\x41\t\101"), "A\tA");
    }
}
