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

    #[test]
    fn sqli_cases() {
        for attack in [
            "1' OR '1'='1",
            "1 UNION SELECT password FROM users",
            "' or 1=1--",
            "1;DROP TABLE users",
            "admin'--",
            "-1' union select 1,2,3 #",
            "1) or sleep(5)#",
        ] {
            assert!(detect_sqli(attack.as_bytes()).is_some(), "{attack}");
        }
        for benign in [
            "hello world",
            "John O'Reilly",
            "select a product",
            "1234",
            "foo@bar.com",
        ] {
            assert!(detect_sqli(benign.as_bytes()).is_none(), "{benign}");
        }
        assert_eq!(detect_sqli(b"1' OR '1'='1").as_deref(), Some(&b"s&sos"[..]));
    }

    #[test]
    fn xss_cases() {
        for attack in [
            "<script>alert(1)</script>",
            "<img src=x onerror=alert(1)>",
            "<svg/onload=alert(1)>",
            "\"><iframe src=//evil>",
        ] {
            assert!(detect_xss(attack.as_bytes()), "{attack}");
        }
        for benign in [
            "hello <b>world</b>",
            "a < b and c > d",
            "plain text",
            "<p>para</p>",
        ] {
            assert!(!detect_xss(benign.as_bytes()), "{benign}");
        }
    }
}
