//! Operators (`@rx`, `@pm`, `@eq`, ...): compiled once at load time, then
//! evaluated against one transformed value. Operators whose argument holds a
//! macro (`%{tx.allowed_methods}`) receive the expanded argument from the
//! evaluator; this module never reads transaction state itself.

use aho_corasick::{AhoCorasick, AhoCorasickBuilder, MatchKind};
use regex::bytes::{Regex, RegexBuilder};
use std::net::IpAddr;

use crate::macros::Macro;

/// A compiled operator.
#[derive(Debug)]
pub(crate) enum Op {
    /// The regex, and whether it was compiled in Unicode mode (the prefilter must read
    /// the pattern the same way).
    Rx(Regex, bool),
    /// `@rx` whose pattern holds a macro; compiled per evaluation.
    RxMacro(Macro),
    Pm(AhoCorasick),
    StrEq(Macro),
    Contains(Macro),
    ContainsWord(Macro),
    BeginsWith(Macro),
    EndsWith(Macro),
    Within(Macro),
    Eq(Macro),
    Ge(Macro),
    Gt(Macro),
    Le(Macro),
    Lt(Macro),
    DetectSqli,
    DetectXss,
    ValidateByteRange(Box<[bool; 256]>),
    ValidateUrlEncoding,
    ValidateUtf8,
    IpMatch(Vec<(IpAddr, u8)>),
    /// `@verifyCC`: a regex match whose digits pass the Luhn check.
    VerifyCc(Regex),
    Unconditional,
    NoMatch,
}

/// What a successful match yields for `capture` and `%{TX.0}`.
pub(crate) type Captures = Vec<Vec<u8>>;

/// Builds a byte regex with ModSecurity's PCRE flags: `.` matches newline
/// (DOTALL), and matching is on bytes with ASCII classes, not Unicode.
pub(crate) fn build_regex(pattern: &str) -> Result<Regex, String> {
    build_regex_mode(pattern).map(|(re, _)| re)
}

/// [`build_regex`], also saying whether the pattern needed Unicode mode.
pub(crate) fn build_regex_mode(pattern: &str) -> Result<(Regex, bool), String> {
    let rewritten = braced_hex_to_plain(pattern);
    let pattern = rewritten.as_str();
    let build = |unicode: bool| {
        RegexBuilder::new(pattern)
            .dot_matches_new_line(true)
            .unicode(unicode)
            .size_limit(64 << 20)
            .dfa_size_limit(16 << 20)
            .build()
    };
    build(false)
        .map(|re| (re, false))
        // Literal non-ASCII characters in a class need Unicode mode.
        .or_else(|_| build(true).map(|re| (re, true)))
        .map_err(|e| format!("invalid regex: {e}"))
}

/// Rewrites `\x{HH}` as `\xHH`: regex-syntax rejects the braced form
/// inside a class when Unicode is off, though both mean the same byte.
fn braced_hex_to_plain(p: &str) -> String {
    let b = p.as_bytes();
    let mut out = String::with_capacity(p.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 1 < b.len() {
            if b[i + 1] == b'x' && b.get(i + 2) == Some(&b'{') {
                if let Some(close) = p[i + 3..].find('}') {
                    let hex = &p[i + 3..i + 3 + close];
                    if (1..=2).contains(&hex.len()) && hex.bytes().all(|c| c.is_ascii_hexdigit()) {
                        out.push_str(&format!("\\x{hex:0>2}"));
                        i += 3 + close + 1;
                        continue;
                    }
                }
            }
            out.push_str(&p[i..i + 2]);
            i += 2;
            continue;
        }
        let ch_len = p[i..].chars().next().map_or(1, char::len_utf8);
        out.push_str(&p[i..i + ch_len]);
        i += ch_len;
    }
    out
}

pub(crate) fn build_pm(words: &[String]) -> Result<AhoCorasick, String> {
    AhoCorasickBuilder::new()
        .ascii_case_insensitive(true)
        .match_kind(MatchKind::LeftmostFirst)
        .build(words.iter().filter(|w| !w.is_empty()))
        .map_err(|e| format!("cannot build phrase matcher: {e}"))
}

/// Parses `@validateByteRange` ranges like `1-255` or `9,10,13,32-126`.
pub(crate) fn parse_byte_range(arg: &str) -> Result<Box<[bool; 256]>, String> {
    let mut allowed = Box::new([false; 256]);
    for part in arg
        .split([',', ' '])
        .map(str::trim)
        .filter(|p| !p.is_empty())
    {
        let (lo, hi) = match part.split_once('-') {
            Some((a, b)) => (a.trim(), b.trim()),
            None => (part, part),
        };
        let lo: usize = lo.parse().map_err(|_| format!("bad byte range {part}"))?;
        let hi: usize = hi.parse().map_err(|_| format!("bad byte range {part}"))?;
        if lo > 255 || hi > 255 || lo > hi {
            return Err(format!("bad byte range {part}"));
        }
        for slot in allowed.iter_mut().take(hi + 1).skip(lo) {
            *slot = true;
        }
    }
    Ok(allowed)
}

pub(crate) fn parse_ip_list(arg: &str) -> Result<Vec<(IpAddr, u8)>, String> {
    let mut out = Vec::new();
    for part in arg
        .split([',', ' '])
        .map(str::trim)
        .filter(|p| !p.is_empty())
    {
        let (addr, bits) = match part.split_once('/') {
            Some((a, b)) => (a, Some(b)),
            None => (part, None),
        };
        let ip: IpAddr = addr.parse().map_err(|_| format!("bad IP address {part}"))?;
        let max = if ip.is_ipv4() { 32 } else { 128 };
        let bits = match bits {
            Some(b) => b.parse::<u8>().map_err(|_| format!("bad prefix {part}"))?,
            None => max,
        };
        if bits > max {
            return Err(format!("bad prefix {part}"));
        }
        out.push((ip, bits));
    }
    Ok(out)
}

fn ip_in(ip: IpAddr, net: IpAddr, bits: u8) -> bool {
    match (ip, net) {
        (IpAddr::V4(a), IpAddr::V4(b)) => {
            let mask = if bits == 0 {
                0
            } else {
                u32::MAX << (32 - u32::from(bits))
            };
            u32::from(a) & mask == u32::from(b) & mask
        }
        (IpAddr::V6(a), IpAddr::V6(b)) => {
            let mask = if bits == 0 {
                0
            } else {
                u128::MAX << (128 - u32::from(bits))
            };
            u128::from(a) & mask == u128::from(b) & mask
        }
        _ => false,
    }
}

/// `atoi`-like parsing used by the numeric operators: leading whitespace and
/// sign, then digits; anything unparsable is 0.
pub(crate) fn atoi(v: &[u8]) -> i64 {
    // Numbers are ASCII, and so are almost all values compared as numbers: those need no
    // UTF-8 validation and only ASCII whitespace trimmed. Anything else keeps the general
    // rule (invalid UTF-8 is 0; Unicode whitespace is trimmed).
    let s: &[u8] = if v.is_ascii() {
        let start = v
            .iter()
            .position(|&b| !matches!(b, 9..=13 | b' '))
            .unwrap_or(v.len());
        &v[start..]
    } else {
        std::str::from_utf8(v).unwrap_or("").trim_start().as_bytes()
    };
    let (neg, digits) = match s.first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    let mut n: i64 = 0;
    for &b in digits {
        if !b.is_ascii_digit() {
            break;
        }
        n = n.saturating_mul(10).saturating_add(i64::from(b - b'0'));
    }
    if neg {
        -n
    } else {
        n
    }
}

fn contains_word(hay: &[u8], word: &[u8]) -> bool {
    if word.is_empty() {
        return true;
    }
    let is_word = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    let mut start = 0;
    while let Some(p) = crate::transform::find(&hay[start..], word) {
        let at = start + p;
        let end = at + word.len();
        let left_ok = at == 0 || !is_word(hay[at - 1]);
        let right_ok = end == hay.len() || !is_word(hay[end]);
        if left_ok && right_ok {
            return true;
        }
        start = at + 1;
    }
    false
}

/// The Luhn check over ASCII digits (false for anything else).
pub fn luhn(digits: &[u8]) -> bool {
    let mut sum = 0u32;
    for (i, &b) in digits.iter().rev().enumerate() {
        if !b.is_ascii_digit() {
            return false;
        }
        let mut d = u32::from(b - b'0');
        if i % 2 == 1 {
            d *= 2;
            if d > 9 {
                d -= 9;
            }
        }
        sum += d;
    }
    !digits.is_empty() && sum % 10 == 0
}

/// ModSecurity's `@verifyCC`: each match of `re` (its first group when it has one, so a
/// pattern can demand boundaries around the number) whose digits, separators dropped,
/// number 13 to 19 and pass the Luhn check. Returns the matched text. Matches are tried
/// one after another, each search starting where the last candidate ended, so a failed
/// candidate does not hide a valid one right after it.
fn verify_cc(re: &Regex, value: &[u8]) -> Option<Vec<u8>> {
    let mut start = 0;
    while start <= value.len() {
        let caps = re.captures_at(value, start)?;
        let whole = caps.get(0)?;
        let number = caps.get(1).unwrap_or(whole);
        let digits: Vec<u8> = number
            .as_bytes()
            .iter()
            .copied()
            .filter(u8::is_ascii_digit)
            .collect();
        if (13..=19).contains(&digits.len()) && luhn(&digits) {
            return Some(number.as_bytes().to_vec());
        }
        start = number.end().max(whole.start() + 1);
    }
    None
}

/// Returns true when the URL encoding in `v` is malformed.
fn invalid_url_encoding(v: &[u8]) -> bool {
    let mut i = 0;
    while i < v.len() {
        if v[i] == b'%' {
            if i + 2 >= v.len() {
                return true;
            }
            if !(v[i + 1].is_ascii_hexdigit() && v[i + 2].is_ascii_hexdigit()) {
                return true;
            }
            i += 3;
        } else {
            i += 1;
        }
    }
    false
}

impl Op {
    /// Evaluates the operator. `arg` is the expanded macro argument for the
    /// operators that take one. Returns the captures on a match.
    pub(crate) fn matches(
        &self,
        value: &[u8],
        arg: Option<&[u8]>,
        want_captures: bool,
    ) -> Option<Captures> {
        let arg = arg.unwrap_or(b"");
        match self {
            Op::Rx(re, _) => rx_match(re, value, want_captures),
            Op::RxMacro(_) => {
                let re = build_regex(&String::from_utf8_lossy(arg)).ok()?;
                rx_match(&re, value, want_captures)
            }
            Op::Pm(ac) => ac
                .find(value)
                .map(|m| vec![value[m.start()..m.end()].to_vec()]),
            Op::StrEq(_) => (value == arg).then(|| vec![value.to_vec()]),
            Op::Contains(_) => crate::transform::find(value, arg).map(|_| vec![arg.to_vec()]),
            Op::ContainsWord(_) => contains_word(value, arg).then(|| vec![arg.to_vec()]),
            Op::BeginsWith(_) => value.starts_with(arg).then(|| vec![arg.to_vec()]),
            Op::EndsWith(_) => value.ends_with(arg).then(|| vec![arg.to_vec()]),
            Op::Within(_) => {
                // ModSecurity treats an empty input as "not within".
                (!value.is_empty() && crate::transform::find(arg, value).is_some())
                    .then(|| vec![value.to_vec()])
            }
            Op::Eq(_) => (atoi(value) == atoi(arg)).then(Vec::new),
            Op::Ge(_) => (atoi(value) >= atoi(arg)).then(Vec::new),
            Op::Gt(_) => (atoi(value) > atoi(arg)).then(Vec::new),
            Op::Le(_) => (atoi(value) <= atoi(arg)).then(Vec::new),
            Op::Lt(_) => (atoi(value) < atoi(arg)).then(Vec::new),
            Op::DetectSqli => crate::injection::detect_sqli(value).map(|fp| vec![fp]),
            Op::DetectXss => crate::injection::detect_xss(value).then(Vec::new),
            Op::ValidateByteRange(allowed) => value
                .iter()
                .any(|&b| !allowed[usize::from(b)])
                .then(Vec::new),
            Op::ValidateUrlEncoding => invalid_url_encoding(value).then(Vec::new),
            Op::ValidateUtf8 => std::str::from_utf8(value).is_err().then(Vec::new),
            Op::IpMatch(nets) => {
                let ip: IpAddr = std::str::from_utf8(value).ok()?.trim().parse().ok()?;
                nets.iter()
                    .any(|&(net, bits)| ip_in(ip, net, bits))
                    .then(Vec::new)
            }
            Op::VerifyCc(re) => verify_cc(re, value).map(|m| vec![m]),
            Op::Unconditional => Some(Vec::new()),
            Op::NoMatch => None,
        }
    }

    /// The macro argument to expand before `matches`, if any.
    pub(crate) fn macro_arg(&self) -> Option<&Macro> {
        match self {
            Op::RxMacro(m)
            | Op::StrEq(m)
            | Op::Contains(m)
            | Op::ContainsWord(m)
            | Op::BeginsWith(m)
            | Op::EndsWith(m)
            | Op::Within(m)
            | Op::Eq(m)
            | Op::Ge(m)
            | Op::Gt(m)
            | Op::Le(m)
            | Op::Lt(m) => Some(m),
            _ => None,
        }
    }
}

fn rx_match(re: &Regex, value: &[u8], want_captures: bool) -> Option<Captures> {
    // Most values do not match: the DFA-only check is far cheaper than a
    // capturing search, so captures are computed only for real matches.
    if !re.is_match(value) {
        return None;
    }
    if !want_captures {
        return Some(Vec::new());
    }
    let caps = re.captures(value)?;
    Some(
        caps.iter()
            .take(10)
            .map(|m| m.map(|m| m.as_bytes().to_vec()).unwrap_or_default())
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lit(s: &str) -> Macro {
        Macro::literal(s)
    }

    #[test]
    fn regex_is_bytewise_and_dotall() {
        let re = build_regex("a.b").unwrap();
        assert!(rx_match(&re, b"a\nb", false).is_some());
        assert!(rx_match(&re, b"a\xffb", false).is_some());
        let re = build_regex(r"(\w+)=(\d+)").unwrap();
        let caps = rx_match(&re, b"x foo=12", true).unwrap();
        assert_eq!(caps[0], b"foo=12");
        assert_eq!(caps[2], b"12");
    }

    #[test]
    fn braced_hex_bytes_in_classes() {
        let re = build_regex(r"\x{e2}\x91[\xa0-\x{bf}]").unwrap();
        assert!(re.is_match("①".as_bytes()));
        assert_eq!(braced_hex_to_plain(r"a\\x{e2}\x{5}"), r"a\\x{e2}\x05");
    }

    #[test]
    fn phrase_match_is_case_insensitive() {
        let ac = build_pm(&["passwd".into(), "shadow".into()]).unwrap();
        let op = Op::Pm(ac);
        assert_eq!(
            op.matches(b"/etc/PASSWD", None, true).unwrap()[0],
            b"PASSWD"
        );
        assert!(op.matches(b"hello", None, false).is_none());
    }

    #[test]
    fn atoi_reads_numbers_like_c() {
        assert_eq!(atoi(b"  42abc"), 42);
        assert_eq!(atoi(b"\t-7"), -7);
        assert_eq!(atoi(b"+3"), 3);
        assert_eq!(atoi(b""), 0);
        assert_eq!(atoi(b"x1"), 0);
        assert_eq!(atoi(b"12\xff"), 0, "invalid UTF-8 is not a number");
        assert_eq!(
            atoi("\u{a0}5".as_bytes()),
            5,
            "Unicode whitespace is trimmed"
        );
    }

    #[test]
    fn numeric_and_string_operators() {
        assert!(Op::Eq(lit("0")).matches(b"", Some(b"0"), false).is_some());
        assert!(Op::Lt(lit("")).matches(b"3", Some(b"10"), false).is_some());
        assert!(Op::Within(lit(""))
            .matches(b"GET", Some(b"GET HEAD"), false)
            .is_some());
        assert!(Op::Within(lit(""))
            .matches(b"", Some(b"GET"), false)
            .is_none());
        assert!(Op::ContainsWord(lit(""))
            .matches(b"a select b", Some(b"select"), false)
            .is_some());
        assert!(Op::ContainsWord(lit(""))
            .matches(b"selection", Some(b"select"), false)
            .is_none());
    }

    #[test]
    fn validators() {
        let op = Op::ValidateByteRange(parse_byte_range("32-126").unwrap());
        assert!(op.matches(b"abc", None, false).is_none());
        assert!(op.matches(b"ab\x01", None, false).is_some());
        assert!(Op::ValidateUrlEncoding
            .matches(b"%4g", None, false)
            .is_some());
        assert!(Op::ValidateUrlEncoding
            .matches(b"%41%", None, false)
            .is_some());
        assert!(Op::ValidateUrlEncoding
            .matches(b"%41", None, false)
            .is_none());
        assert!(Op::ValidateUtf8.matches(b"\xc0\xaf", None, false).is_some());
        assert!(Op::ValidateUtf8
            .matches("é".as_bytes(), None, false)
            .is_none());
        let op = Op::IpMatch(parse_ip_list("10.0.0.0/8,::1").unwrap());
        assert!(op.matches(b"10.2.3.4", None, false).is_some());
        assert!(op.matches(b"::1", None, false).is_some());
        assert!(op.matches(b"11.0.0.1", None, false).is_none());
    }
}
