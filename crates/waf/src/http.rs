//! A small HTTP/1.x request parser for raw request bytes, strict in the way
//! Apache httpd is (it answers 400 to what it rejects), so the go-ftw
//! runner and the standalone proxy can feed requests to a transaction the
//! way a web server would. It never panics on hostile input.

/// A parsed request.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RawRequest {
    pub method: Vec<u8>,
    pub uri: Vec<u8>,
    pub version: Vec<u8>,
    pub headers: Vec<(Vec<u8>, Vec<u8>)>,
    pub body: Vec<u8>,
}

impl RawRequest {
    /// First value of a header, by case-insensitive name.
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name.as_bytes()))
            .map(|(_, v)| v.as_slice())
    }

    /// Feeds the request into a transaction and runs phases 1 and 2.
    pub fn feed(&self, tx: &mut crate::Transaction<'_>) -> Option<crate::Interruption> {
        tx.process_uri(&self.method, &self.uri, &self.version);
        for (k, v) in &self.headers {
            tx.add_request_header(k, v);
        }
        if let Some(i) = tx.process_request_headers() {
            return Some(i);
        }
        tx.append_request_body(&self.body);
        tx.process_request_body()
    }
}

/// Why a server would reject the request with 400.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("bad request: {0}")]
pub struct BadRequest(pub &'static str);

fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// Splits off one line ending in LF (CR before it removed).
fn take_line(input: &[u8]) -> Option<(&[u8], &[u8])> {
    let p = input.iter().position(|&b| b == b'\n')?;
    let line = &input[..p];
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    Some((line, &input[p + 1..]))
}

/// Parses a complete raw request.
pub fn parse_request(raw: &[u8]) -> Result<RawRequest, BadRequest> {
    let mut rest = raw;
    // Servers skip empty lines before the request line (RFC 9112 2.2).
    let line = loop {
        let (line, r) = take_line(rest).ok_or(BadRequest("incomplete request line"))?;
        rest = r;
        if !line.is_empty() {
            break line;
        }
    };
    let parts: Vec<&[u8]> = line.split(|&b| b == b' ').collect();
    if parts.len() != 3 {
        return Err(BadRequest("malformed request line"));
    }
    let (method, uri, version) = (parts[0], parts[1], parts[2]);
    if method.is_empty() || !method.iter().all(|&b| is_tchar(b)) {
        return Err(BadRequest("invalid method"));
    }
    if uri.is_empty() || uri.iter().any(|&b| b <= 0x20 || b == 0x7f) {
        return Err(BadRequest("invalid request target"));
    }
    let valid_version = version.len() == 8
        && version.starts_with(b"HTTP/")
        && version[5].is_ascii_digit()
        && version[6] == b'.'
        && version[7].is_ascii_digit();
    if !valid_version || version[5] == b'0' {
        return Err(BadRequest("invalid protocol version"));
    }
    check_target(method, uri)?;
    let mut req = RawRequest {
        method: method.to_vec(),
        uri: uri.to_vec(),
        version: version.to_vec(),
        ..RawRequest::default()
    };
    loop {
        let (line, r) = take_line(rest).ok_or(BadRequest("incomplete headers"))?;
        rest = r;
        if line.is_empty() {
            break;
        }
        if line.contains(&b'\r') {
            return Err(BadRequest("bare CR in header"));
        }
        if line[0] == b' ' || line[0] == b'\t' {
            // Obsolete line folding: join to the previous header.
            let last = req
                .headers
                .last_mut()
                .ok_or(BadRequest("folded first header"))?;
            last.1.push(b' ');
            last.1.extend_from_slice(trim(line));
            continue;
        }
        let colon = line
            .iter()
            .position(|&b| b == b':')
            .ok_or(BadRequest("header without colon"))?;
        let name = &line[..colon];
        if name.is_empty() || !name.iter().all(|&b| is_tchar(b)) {
            return Err(BadRequest("invalid header name"));
        }
        req.headers
            .push((name.to_vec(), trim(&line[colon + 1..]).to_vec()));
    }
    if let Some(host) = req.header("host") {
        let valid = host
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || b".-_:[]".contains(&b));
        if !valid || (host.is_empty() && req.version == b"HTTP/1.1") {
            return Err(BadRequest("invalid Host header"));
        }
    }
    // RFC 9112 6.3: with Transfer-Encoding present, Content-Length must be
    // ignored; dropping it keeps rules from seeing a smuggling-prone pair
    // the server would not act on (Apache httpd removes it too).
    if req.header("transfer-encoding").is_some() {
        req.headers
            .retain(|(k, _)| !k.eq_ignore_ascii_case(b"content-length"));
    }
    let chunked = req
        .header("transfer-encoding")
        .is_some_and(|v| v.to_ascii_lowercase().ends_with(b"chunked"));
    if chunked {
        req.body = dechunk(rest)?;
    } else if let Some(cl) = req.header("content-length") {
        let n: usize = std::str::from_utf8(cl)
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .ok_or(BadRequest("invalid content-length"))?;
        req.body = rest[..n.min(rest.len())].to_vec();
    }
    Ok(req)
}

/// Accepts the four request-target forms of RFC 9112 section 3.2; a raw
/// fragment or anything else is rejected, as Apache httpd does.
fn check_target(method: &[u8], uri: &[u8]) -> Result<(), BadRequest> {
    if uri.contains(&b'#') {
        return Err(BadRequest("fragment in request target"));
    }
    if method == b"CONNECT" {
        let port_ok = uri
            .iter()
            .rposition(|&b| b == b':')
            .is_some_and(|p| p + 1 < uri.len() && uri[p + 1..].iter().all(u8::is_ascii_digit));
        return if port_ok {
            Ok(())
        } else {
            Err(BadRequest("CONNECT needs host:port"))
        };
    }
    let absolute = crate::transform::find(uri, b"://").is_some_and(|p| {
        p > 0
            && uri[..p]
                .iter()
                .all(|b| b.is_ascii_alphanumeric() || b"+-.".contains(b))
    });
    if uri[0] == b'/' || uri == b"*" || absolute {
        Ok(())
    } else {
        Err(BadRequest("invalid request target"))
    }
}

fn trim(b: &[u8]) -> &[u8] {
    let s = b
        .iter()
        .position(|&c| c != b' ' && c != b'\t')
        .unwrap_or(b.len());
    let e = b
        .iter()
        .rposition(|&c| c != b' ' && c != b'\t')
        .map_or(s, |p| p + 1);
    &b[s..e.max(s)]
}

fn dechunk(mut rest: &[u8]) -> Result<Vec<u8>, BadRequest> {
    let mut out = Vec::new();
    loop {
        let Some((line, r)) = take_line(rest) else {
            return Ok(out);
        };
        let size_txt = line.split(|&b| b == b';').next().unwrap_or(b"");
        let size_str = std::str::from_utf8(trim(size_txt)).map_err(|_| BadRequest("bad chunk"))?;
        let size = usize::from_str_radix(size_str, 16).map_err(|_| BadRequest("bad chunk size"))?;
        if size == 0 {
            return Ok(out);
        }
        let take = size.min(r.len());
        out.extend_from_slice(&r[..take]);
        rest = &r[take..];
        if let Some(after) = rest.strip_prefix(b"\r\n") {
            rest = after;
        } else if let Some(after) = rest.strip_prefix(b"\n") {
            rest = after;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_request_with_body() {
        let r =
            parse_request(b"POST /a?b=1 HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabcdef")
                .unwrap();
        assert_eq!(r.method, b"POST");
        assert_eq!(r.uri, b"/a?b=1");
        assert_eq!(r.header("host"), Some(&b"x"[..]));
        assert_eq!(r.body, b"abc");
    }

    #[test]
    fn chunked_body() {
        let r = parse_request(b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n").unwrap();
        assert_eq!(r.body, b"abcde");
    }

    #[test]
    fn rejects_what_apache_rejects() {
        assert!(parse_request(b"     GET / HTTP/1.1\r\n\r\n").is_err());
        assert!(parse_request(b"GET /\r\n\r\n").is_err());
        assert!(parse_request(b"GET / HTTP/1.1\r\nBad Header: x\r\n\r\n").is_err());
        assert!(parse_request(b"GET / HTTP/1.1\r\nNoColon\r\n\r\n").is_err());
        assert!(parse_request(b"GET /#x HTTP/1.1\r\n\r\n").is_err());
        assert!(parse_request(b"GET \\ HTTP/1.1\r\n\r\n").is_err());
        assert!(parse_request(b"GET / HTTP/0.9\r\n\r\n").is_err());
        assert!(parse_request(b"CONNECT example.org HTTP/1.1\r\n\r\n").is_err());
        assert!(parse_request(b"CONNECT example.org:443 HTTP/1.1\r\n\r\n").is_ok());
        assert!(parse_request(b"GET / HTTP/1.1\r\nHost: a%00\r\n\r\n").is_err());
        assert!(parse_request(b"GET / HTTP/1.1\r\nHost:\r\n\r\n").is_err());
        assert!(parse_request(b"GET / HTTP/1.0\r\nHost:\r\n\r\n").is_ok());
    }
}
