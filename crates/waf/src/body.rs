//! Request body processors: URL-encoded forms, JSON, XML and multipart.
//! Each turns raw body bytes into the variables ModSecurity exposes (ARGS_POST,
//! FILES, XML, MULTIPART_* flags) and reports parse errors as data, never as
//! panics: a hostile body must only ever produce REQBODY_ERROR.

use crate::transform::url_decode;

/// Name/value pairs in arrival order.
pub(crate) type Pairs = Vec<(String, Vec<u8>)>;

fn lossy(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Parses `a=1&b=2` (query strings and form bodies), decoding `%xx` and `+`
/// leniently. Returns the pairs and whether any escape was malformed.
pub(crate) fn parse_urlencoded(input: &[u8], limit: usize) -> (Pairs, bool) {
    let mut out = Vec::new();
    let mut invalid = false;
    for seg in input.split(|&b| b == b'&') {
        if seg.is_empty() {
            continue;
        }
        if out.len() >= limit {
            break;
        }
        let (name, value) = match seg.iter().position(|&b| b == b'=') {
            Some(p) => (&seg[..p], &seg[p + 1..]),
            None => (seg, &b""[..]),
        };
        invalid |= bad_escape(name) || bad_escape(value);
        out.push((lossy(&url_decode(name, false)), url_decode(value, false)));
    }
    (out, invalid)
}

fn bad_escape(v: &[u8]) -> bool {
    v.iter().enumerate().any(|(i, &b)| {
        b == b'%'
            && !(i + 2 < v.len() && v[i + 1].is_ascii_hexdigit() && v[i + 2].is_ascii_hexdigit())
    })
}

/// The deepest nesting of arrays and objects in a JSON text, ignoring brackets inside
/// strings. One linear scan with no recursion, so it is safe to run before parsing.
pub fn json_nesting_depth(json: &[u8]) -> usize {
    let (mut depth, mut max, mut in_string, mut escaped) = (0usize, 0usize, false, false);
    for &b in json {
        if in_string {
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                max = max.max(depth);
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    max
}

/// Flattens a JSON document into `json.a.b` style argument names. A document nested
/// deeper than `max_depth` is an error (ModSecurity v3's `SecRequestBodyJsonDepthLimit`),
/// checked before parsing.
pub(crate) fn parse_json(input: &[u8], limit: usize, max_depth: usize) -> Result<Pairs, String> {
    let depth = json_nesting_depth(input);
    if depth > max_depth {
        return Err(format!(
            "JSON depth limit exceeded: nesting depth {depth} is over {max_depth}"
        ));
    }
    let value: serde_json::Value =
        serde_json::from_slice(input).map_err(|e| format!("JSON parsing error: {e}"))?;
    let mut out = Vec::new();
    flatten_json(&value, "json".to_string(), &mut out, limit);
    Ok(out)
}

fn flatten_json(v: &serde_json::Value, prefix: String, out: &mut Pairs, limit: usize) {
    use serde_json::Value;
    if out.len() >= limit {
        return;
    }
    match v {
        Value::Object(map) => {
            for (k, v) in map {
                flatten_json(v, format!("{prefix}.{k}"), out, limit);
            }
        }
        Value::Array(items) => {
            // ModSecurity v2 names array elements after the array itself,
            // so `{"a":[1,2]}` gives two `json.a` arguments.
            for v in items {
                flatten_json(v, prefix.clone(), out, limit);
            }
        }
        Value::String(s) => out.push((prefix, s.clone().into_bytes())),
        Value::Number(n) => out.push((prefix, n.to_string().into_bytes())),
        Value::Bool(b) => out.push((prefix, b.to_string().into_bytes())),
        Value::Null => out.push((prefix, Vec::new())),
    }
}

/// What the XML processor extracts: the text content of the document (what
/// `XML:/*` yields in ModSecurity) and every attribute value (`XML://@*`).
#[derive(Debug, Default, Clone)]
pub(crate) struct XmlDoc {
    pub text: Vec<u8>,
    pub attrs: Vec<Vec<u8>>,
}

pub(crate) fn parse_xml(input: &[u8]) -> Result<XmlDoc, String> {
    use quick_xml::events::Event;
    let mut reader = quick_xml::Reader::from_reader(input);
    reader.config_mut().check_end_names = true;
    let mut doc = XmlDoc::default();
    let mut depth: usize = 0;
    let mut seen_root = false;
    let mut buf = Vec::new();
    loop {
        let ev = reader
            .read_event_into(&mut buf)
            .map_err(|e| format!("XML parsing error: {e}"))?;
        match ev {
            Event::Start(ref e) | Event::Empty(ref e) => {
                for a in e.attributes().flatten() {
                    let v = a
                        .unescape_value()
                        .map(|c| c.into_owned().into_bytes())
                        .unwrap_or_else(|_| a.value.to_vec());
                    doc.attrs.push(v);
                }
                seen_root = true;
                if matches!(ev, Event::Start(_)) {
                    depth += 1;
                }
            }
            Event::End(_) => depth = depth.saturating_sub(1),
            Event::Text(t) if depth > 0 => {
                // Undecodable entities are kept raw rather than dropped.
                let text = t.unescape().map(|s| s.into_owned().into_bytes());
                doc.text
                    .extend_from_slice(&text.unwrap_or_else(|_| t.to_vec()));
            }
            Event::CData(c) => doc.text.extend_from_slice(&c),
            Event::Eof => break,
            _ => {}
        }
        buf.clear();
    }
    if !seen_root {
        return Err("XML parsing error: no root element".into());
    }
    Ok(doc)
}

/// Result of multipart parsing: arguments, files and the strictness flags
/// CRS and the recommended configuration check.
#[derive(Debug, Default, Clone)]
pub(crate) struct Multipart {
    pub args: Pairs,
    /// (field name, file name, size)
    pub files: Vec<(String, String, usize)>,
    /// (field name, full header line)
    pub part_headers: Pairs,
    pub error: Option<String>,
    pub boundary_quoted: bool,
    pub boundary_whitespace: bool,
    pub data_before: bool,
    pub data_after: bool,
    pub header_folding: bool,
    pub lf_line: bool,
    pub crlf_line: bool,
    pub missing_semicolon: bool,
    pub invalid_quoting: bool,
    pub invalid_part: bool,
    pub invalid_header_folding: bool,
    pub unmatched_boundary: bool,
    pub file_limit_exceeded: bool,
}

impl Multipart {
    pub(crate) fn strict_error(&self) -> bool {
        self.error.is_some()
            || self.boundary_quoted
            || self.boundary_whitespace
            || self.data_before
            || self.data_after
            || self.header_folding
            || (self.lf_line && self.crlf_line)
            || self.missing_semicolon
            || self.invalid_quoting
            || self.invalid_part
            || self.invalid_header_folding
            || self.unmatched_boundary
            || self.file_limit_exceeded
    }
}

/// Extracts the boundary from a `multipart/form-data` content type.
fn boundary_of(content_type: &str, mp: &mut Multipart) -> Option<Vec<u8>> {
    let lower = content_type.to_ascii_lowercase();
    let pos = lower.find("boundary")?;
    let mut rest = &content_type[pos + "boundary".len()..];
    let ws_before = rest.starts_with(char::is_whitespace);
    rest = rest.trim_start();
    rest = rest.strip_prefix('=')?;
    if ws_before || rest.starts_with(char::is_whitespace) {
        mp.boundary_whitespace = true;
    }
    rest = rest.trim_start();
    let b = if let Some(q) = rest.strip_prefix('"') {
        mp.boundary_quoted = true;
        q.split('"').next().unwrap_or("")
    } else {
        rest.split([';', ',']).next().unwrap_or("").trim_end()
    };
    if b.is_empty() || b.contains(char::is_whitespace) && !mp.boundary_quoted {
        mp.boundary_whitespace |= b.contains(char::is_whitespace);
        if b.is_empty() {
            return None;
        }
    }
    Some(b.as_bytes().to_vec())
}

/// Splits `form-data; name="a"; filename="b"` into parameters.
fn disposition_params(value: &str, mp: &mut Multipart) -> Option<(String, Option<String>)> {
    let mut parts = value.splitn(2, ';');
    let kind = parts.next()?.trim();
    if !kind.eq_ignore_ascii_case("form-data") {
        mp.invalid_part = true;
        return None;
    }
    let rest = parts.next().unwrap_or("");
    if rest.is_empty() {
        mp.missing_semicolon = true;
    }
    let mut name = None;
    let mut filename = None;
    let chars: Vec<char> = rest.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        while i < chars.len() && (chars[i].is_whitespace() || chars[i] == ';') {
            i += 1;
        }
        let mut key = String::new();
        while i < chars.len() && chars[i] != '=' && chars[i] != ';' {
            key.push(chars[i]);
            i += 1;
        }
        if i >= chars.len() || chars[i] != '=' {
            if !key.trim().is_empty() {
                mp.invalid_part = true;
            }
            continue;
        }
        i += 1;
        while i < chars.len() && chars[i] == ' ' {
            i += 1;
        }
        let mut val = String::new();
        if i < chars.len() && chars[i] == '"' {
            i += 1;
            let mut closed = false;
            while i < chars.len() {
                if chars[i] == '\\' && i + 1 < chars.len() && matches!(chars[i + 1], '"' | '\\') {
                    val.push(chars[i + 1]);
                    i += 2;
                    continue;
                }
                if chars[i] == '"' {
                    closed = true;
                    i += 1;
                    break;
                }
                val.push(chars[i]);
                i += 1;
            }
            if !closed {
                mp.invalid_quoting = true;
            }
            // Text after the closing quote before the next `;` is malformed.
            let mut extra = false;
            while i < chars.len() && chars[i] != ';' {
                if !chars[i].is_whitespace() {
                    extra = true;
                }
                i += 1;
            }
            if extra {
                mp.invalid_quoting = true;
            }
        } else {
            while i < chars.len() && chars[i] != ';' {
                val.push(chars[i]);
                i += 1;
            }
            let v = val.trim_end().to_string();
            if v.contains(['\'', '"']) {
                mp.invalid_quoting = true;
            }
            val = v;
        }
        match key.trim().to_ascii_lowercase().as_str() {
            "name" => name = Some(val),
            "filename" | "filename*" => filename = Some(val),
            _ => mp.invalid_part = true,
        }
    }
    Some((name?, filename))
}

pub(crate) fn parse_multipart(content_type: &str, body: &[u8], limit: usize) -> Multipart {
    let mut mp = Multipart::default();
    let Some(boundary) = boundary_of(content_type, &mut mp) else {
        mp.error = Some("Multipart: Boundary not found in C-T".into());
        return mp;
    };
    let mut delim = b"--".to_vec();
    delim.extend_from_slice(&boundary);

    // Split into lines, remembering the terminator of each.
    let mut lines: Vec<(&[u8], &[u8])> = Vec::new();
    let mut start = 0;
    let mut i = 0;
    while i < body.len() {
        if body[i] == b'\n' {
            let (content, term) = if i > start && body[i - 1] == b'\r' {
                (&body[start..i - 1], &body[i - 1..=i])
            } else {
                (&body[start..i], &body[i..=i])
            };
            lines.push((content, term));
            start = i + 1;
        }
        i += 1;
    }
    if start < body.len() {
        lines.push((&body[start..], b""));
    }

    enum State {
        Preamble,
        Headers,
        Content,
        Done,
    }
    let mut state = State::Preamble;
    let mut cur_headers: Vec<Vec<u8>> = Vec::new();
    let mut content: Vec<u8> = Vec::new();
    let mut pending_term: &[u8] = b"";
    let mut part_open = false;
    let mut saw_final = false;

    let finish_part = |headers: &[Vec<u8>], content: &[u8], mp: &mut Multipart| {
        let mut name = None;
        let mut filename = None;
        for h in headers {
            let line = String::from_utf8_lossy(h);
            if let Some((k, v)) = line.split_once(':') {
                if k.trim().eq_ignore_ascii_case("content-disposition") {
                    if let Some((n, f)) = disposition_params(v.trim(), mp) {
                        name = Some(n);
                        filename = f;
                    }
                }
            } else {
                mp.invalid_part = true;
            }
        }
        let Some(name) = name else {
            mp.invalid_part = true;
            return;
        };
        for h in headers {
            mp.part_headers.push((name.clone(), h.clone()));
        }
        match filename {
            Some(f) => mp.files.push((name, f, content.len())),
            None => {
                if mp.args.len() < limit {
                    mp.args.push((name, content.to_vec()));
                }
            }
        }
    };

    for (line, term) in lines {
        // Line endings are judged on boundary and header lines only: part
        // content (an uploaded text file) may use any line ending.
        let note_ending = |mp: &mut Multipart| match term {
            b"\r\n" => mp.crlf_line = true,
            b"\n" => mp.lf_line = true,
            _ => {}
        };
        let is_delim = line.starts_with(&delim);
        let is_final = is_delim && line[delim.len()..].starts_with(b"--");
        let delim_ok = is_delim && {
            let tail = if is_final {
                &line[delim.len() + 2..]
            } else {
                &line[delim.len()..]
            };
            tail.iter().all(|&b| b == b' ' || b == b'\t')
        };
        if matches!(state, State::Done) {
            if !line.iter().all(|b| b.is_ascii_whitespace()) {
                mp.data_after = true;
            }
            continue;
        }
        if delim_ok {
            note_ending(&mut mp);
            if part_open {
                finish_part(&cur_headers, &content, &mut mp);
            }
            cur_headers.clear();
            content.clear();
            pending_term = b"";
            if is_final {
                state = State::Done;
                saw_final = true;
                part_open = false;
            } else {
                state = State::Headers;
                part_open = true;
            }
            continue;
        }
        if line.starts_with(b"--") && !is_delim && line.len() > 2 {
            // Looks like a boundary but is not ours.
            if matches!(state, State::Content) && line.len() >= delim.len().min(line.len()) {
                let n = line.len().min(delim.len());
                if n > 2 && line[..n] == delim[..n] {
                    mp.unmatched_boundary = true;
                }
            }
        }
        match state {
            State::Preamble => {
                if !line.is_empty() {
                    mp.data_before = true;
                }
            }
            State::Headers => {
                note_ending(&mut mp);
                if line.is_empty() {
                    state = State::Content;
                } else if line[0] == b' ' || line[0] == b'\t' {
                    mp.header_folding = true;
                    match cur_headers.last_mut() {
                        Some(last) => {
                            last.push(b' ');
                            last.extend_from_slice(trim_bytes(line));
                        }
                        None => mp.invalid_header_folding = true,
                    }
                } else {
                    cur_headers.push(line.to_vec());
                }
            }
            State::Content => {
                content.extend_from_slice(pending_term);
                content.extend_from_slice(line);
                pending_term = term;
            }
            State::Done => {}
        }
    }
    if !saw_final {
        if part_open {
            finish_part(&cur_headers, &content, &mut mp);
        }
        mp.error = Some("Multipart: Final boundary missing".into());
    }
    mp
}

fn trim_bytes(b: &[u8]) -> &[u8] {
    let s = b
        .iter()
        .position(|c| !c.is_ascii_whitespace())
        .unwrap_or(b.len());
    let e = b
        .iter()
        .rposition(|c| !c.is_ascii_whitespace())
        .map_or(s, |p| p + 1);
    &b[s..e.max(s)]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urlencoded() {
        let (p, bad) = parse_urlencoded(b"a=1&b=x+y%21&&c&d=%zz", 100);
        assert_eq!(p.len(), 4);
        assert_eq!(p[1], ("b".to_string(), b"x y!".to_vec()));
        assert_eq!(p[2], ("c".to_string(), Vec::new()));
        assert!(bad);
    }

    #[test]
    fn json_flattening() {
        let p = parse_json(br#"{"a":{"b":[1,"x"]},"c":true,"d":null}"#, 100, 10).unwrap();
        let names: Vec<&str> = p.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["json.a.b", "json.a.b", "json.c", "json.d"]);
        assert!(parse_json(b"{bad", 100, 10).is_err());
        let e = parse_json(br#"{"a":[[{"b":"]]]]"}]]}"#, 100, 3).unwrap_err();
        assert!(e.contains("depth limit"), "{e}");
        assert!(parse_json(br#"{"a":[[{"b":"]]]]"}]]}"#, 100, 4).is_ok());
        assert_eq!(json_nesting_depth(br#"{"s":"{{{[[[\\"}"#), 1);
    }

    #[test]
    fn xml_text_and_attributes() {
        let d = parse_xml(br#"<?xml version="1.0"?><a x="1&amp;2"><b>hi</b><![CDATA[<c>]]></a>"#)
            .unwrap();
        assert_eq!(d.text, b"hi<c>");
        assert_eq!(d.attrs, vec![b"1&2".to_vec()]);
        assert!(parse_xml(b"<a><b></a>").is_err());
        assert!(parse_xml(b"not xml").is_err());
    }

    #[test]
    fn multipart_parts_files_and_flags() {
        let body = b"--XX\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\nhello\r\nworld\r\n--XX\r\nContent-Disposition: form-data; name=\"f\"; filename=\"x.php\"\r\nContent-Type: text/plain\r\n\r\n<?php\r\n--XX--\r\n";
        let mp = parse_multipart("multipart/form-data; boundary=XX", body, 100);
        assert_eq!(mp.args, vec![("a".to_string(), b"hello\r\nworld".to_vec())]);
        assert_eq!(mp.files, vec![("f".to_string(), "x.php".to_string(), 5)]);
        assert_eq!(mp.part_headers.len(), 3);
        assert!(!mp.strict_error(), "{mp:?}");

        let mp = parse_multipart(
            "multipart/form-data; boundary=\"XX\"",
            b"junk\r\n--XX\r\nContent-Disposition: form-data; name=a\r\n\r\n1\r\n",
            100,
        );
        assert!(mp.boundary_quoted && mp.data_before && mp.error.is_some());
        assert!(mp.strict_error());
        let mp = parse_multipart("multipart/form-data", b"", 100);
        assert!(mp.error.is_some());

        // LF-only lines inside an uploaded file are not a framing problem.
        let body = b"--XX\r\nContent-Disposition: form-data; name=\"f\"; filename=\"a.txt\"\r\n\r\nline1\nline2\n\r\n--XX--\r\n";
        let mp = parse_multipart("multipart/form-data; boundary=XX", body, 100);
        assert!(!mp.strict_error(), "{mp:?}");
        let body = b"--XX\nContent-Disposition: form-data; name=\"a\"\r\n\r\n1\r\n--XX--\r\n";
        let mp = parse_multipart("multipart/form-data; boundary=XX", body, 100);
        assert!(mp.lf_line && mp.crlf_line && mp.strict_error());
    }
}
