//! `@detectSQLi` / `@detectXSS`: thin wrappers over `libinjectionrs`, a Rust
//! port of libinjection (the library ModSecurity links). Its behaviour is
//! checked against libinjection's documented cases in the tests below.

/// Returns the SQLi fingerprint when `input` looks like SQL injection.
pub(crate) fn detect_sqli(input: &[u8]) -> Option<Vec<u8>> {
    let r = libinjectionrs::detect_sqli(input);
    if !r.is_injection() {
        return None;
    }
    Some(
        r.fingerprint
            .map(|f| f.to_string().into_bytes())
            .unwrap_or_default(),
    )
}

pub(crate) fn detect_xss(input: &[u8]) -> bool {
    libinjectionrs::detect_xss(input).is_injection()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (input, libinjection's verdict, its fingerprint when it flags SQLi)
    const SQLI: &[(&str, bool, &str)] = &[
        ("1' OR '1'='1", true, "s&sos"),
        ("' union select 1,2,3--", true, "sUE1c"),
        ("1 or 1=1", true, "1&1"),
        ("1' waitfor delay '0:0:5'--", true, "sEsc"),
        ("-1 UNION SELECT 1,2,3", true, "1UE1"),
        ("1' AND 1=1#", true, "s&1c"),
        ("x' AND sleep(5)--", true, "s&f(1"),
        ("\" or \"\"=\"", true, "s&sos"),
        ("1) union all select null--", true, "1)UEv"),
        ("1; exec xp_cmdshell('dir')", true, "1;Tn("),
        ("admin' #", false, ""),
        ("Hello, it's me", false, ""),
        ("O'Brien", false, ""),
        ("1234 Main St.", false, ""),
        ("where to buy", false, ""),
        ("2019-01-01", false, ""),
    ];

    const XSS: &[(&str, bool)] = &[
        ("<script>alert(1)</script>", true),
        ("<a href=\"javascript:alert(1)\">x</a>", true),
        ("<IMG SRC=JaVaScRiPt:alert('XSS')>", true),
        ("<body onload=alert(1)>", true),
        ("\" onmouseover=\"alert(1)", true),
        ("<div style=\"color:red\">", true),
        ("<svg/onload=alert(1)>", true),
        ("<iframe>", true),
        ("<b>bold</b>", false),
        ("1 < 2 > 0", false),
        ("<!-- comment -->", false),
        ("a=b&c=d", false),
        ("plain text", false),
    ];

    #[test]
    fn sqli_matches_libinjection() {
        for &(input, flagged, fp) in SQLI {
            let got = detect_sqli(input.as_bytes());
            assert_eq!(got.is_some(), flagged, "{input}");
            if flagged {
                assert_eq!(got.as_deref(), Some(fp.as_bytes()), "{input}");
            }
        }
    }

    #[test]
    fn xss_matches_libinjection() {
        for &(input, flagged) in XSS {
            assert_eq!(detect_xss(input.as_bytes()), flagged, "{input}");
        }
    }
}
