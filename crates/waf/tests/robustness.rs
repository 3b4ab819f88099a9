//! No input may panic the engine: random and hostile bytes go through the
//! SecLang loader, the HTTP parser, every body processor and every
//! transformation. A small xorshift generator keeps the test deterministic
//! without a dependency.

use rampart_waf::transform::Transform;
use rampart_waf::RuleSet;

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn bytes(&mut self, max: usize, alphabet: &[u8]) -> Vec<u8> {
        let n = (self.next() as usize) % max;
        (0..n)
            .map(|_| {
                let r = self.next() as usize;
                if alphabet.is_empty() || r % 4 == 0 {
                    (r >> 8) as u8
                } else {
                    alphabet[(r >> 8) % alphabet.len()]
                }
            })
            .collect()
    }
}

const SPICY: &[u8] = b"%u+&=;:\\\"'<>/{}[]()!@#-*\r\n\t 0aAfFxX.,|$";

const RULES: &str = r#"
SecRule ARGS|ARGS_NAMES|REQUEST_COOKIES|REQUEST_HEADERS|XML:/*|XML://@*|FILES|MULTIPART_PART_HEADERS|REQUEST_BODY "@rx (?i)a.*b" "id:1,phase:2,pass,capture,t:none,t:urlDecodeUni,t:htmlEntityDecode,t:jsDecode,t:cssDecode,t:cmdLine,t:normalizePathWin,t:base64DecodeExt,t:utf8toUnicode,t:removeComments,logdata:'%{TX.0} %{MATCHED_VAR}'"
SecRule ARGS "@detectSQLi" "id:2,phase:2,pass,multiMatch,t:replaceComments,t:escapeSeqDecode"
SecRule ARGS "@detectXSS" "id:3,phase:2,pass,t:hexDecode,t:sqlHexDecode"
SecRule REQUEST_URI "@validateUrlEncoding" "id:4,phase:1,pass"
SecRule ARGS "@validateUtf8Encoding" "id:5,phase:2,pass"
SecRule MULTIPART_STRICT_ERROR|REQBODY_ERROR "!@eq 0" "id:6,phase:2,pass"
"#;

#[test]
fn transformations_never_panic() {
    let all = [
        "lowercase",
        "uppercase",
        "urlDecode",
        "urlDecodeUni",
        "urlEncode",
        "htmlEntityDecode",
        "jsDecode",
        "cssDecode",
        "cmdLine",
        "compressWhitespace",
        "removeWhitespace",
        "removeNulls",
        "replaceNulls",
        "removeComments",
        "removeCommentsChar",
        "replaceComments",
        "normalizePath",
        "normalizePathWin",
        "base64Decode",
        "base64DecodeExt",
        "base64Encode",
        "hexDecode",
        "hexEncode",
        "utf8toUnicode",
        "length",
        "sha1",
        "trim",
        "trimLeft",
        "trimRight",
        "escapeSeqDecode",
        "sqlHexDecode",
    ];
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    for _ in 0..3000 {
        let input = rng.bytes(64, SPICY);
        for name in all {
            let t = Transform::from_name(name)
                .expect("known")
                .expect("not none");
            let _ = t.apply(&input);
        }
    }
}

#[test]
fn seclang_loader_never_panics() {
    let alphabet =
        b"SecRule ARGS \"@rx \\ ' , : | ! & / % { } id: phase: chain t: setvar: ctl: #\n";
    let mut rng = Rng(42);
    for _ in 0..3000 {
        let text = rng.bytes(200, alphabet);
        let _ = RuleSet::from_text(&String::from_utf8_lossy(&text));
    }
    // Mutations of a valid file exercise deeper paths.
    let base = RULES.as_bytes();
    for _ in 0..2000 {
        let mut t = base.to_vec();
        for _ in 0..3 {
            let i = (rng.next() as usize) % t.len();
            t[i] = alphabet[(rng.next() as usize) % alphabet.len()];
        }
        let _ = RuleSet::from_text(&String::from_utf8_lossy(&t));
    }
}

#[test]
fn requests_and_bodies_never_panic() {
    let rs = RuleSet::from_text(RULES).expect("rules");
    let mut rng = Rng(7);
    let types = [
        "application/x-www-form-urlencoded",
        "application/json",
        "text/xml",
        "multipart/form-data; boundary=B",
        "multipart/form-data; boundary=\"B\"",
        "multipart/form-data",
        "text/plain",
    ];
    let multipart_alphabet =
        b"--B\r\nContent-Disposition: form-data; name=\"a\"; filename=\"x\"\r\n\r\n;=\"";
    let json_alphabet = b"{}[]\":,0123456789truefalsenull\\u";
    let xml_alphabet = b"<>/?!-[]CDATA&;#x\"'= abc";
    for i in 0..2500 {
        let ct = types[i % types.len()];
        let body = match i % types.len() {
            1 => rng.bytes(120, json_alphabet),
            2 => rng.bytes(120, xml_alphabet),
            3..=5 => rng.bytes(200, multipart_alphabet),
            _ => rng.bytes(120, SPICY),
        };
        let uri = rng.bytes(60, SPICY);
        let cookie = rng.bytes(40, SPICY);
        let mut tx = rs.transaction();
        tx.process_uri(b"POST", &uri, b"HTTP/1.1");
        tx.add_request_header(b"Content-Type", ct.as_bytes());
        tx.add_request_header(b"Cookie", &cookie);
        tx.process_request_headers();
        tx.append_request_body(&body);
        tx.process_request_body();
        tx.add_response_header(b"Content-Type", b"text/html");
        tx.process_response_headers(200, b"HTTP/1.1");
        tx.append_response_body(&body);
        tx.process_response_body();
        tx.process_logging();

        let raw = rng.bytes(300, b"GET POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n0123456789abcdef:;");
        if let Ok(req) = rampart_waf::http::parse_request(&raw) {
            let mut tx = rs.transaction();
            req.feed(&mut tx);
        }
    }
}

/// The real CRS with hostile requests: every phase, every body processor.
#[test]
fn crs_survives_hostile_requests() {
    let dir = std::env::var("RAMPART_TEST_CRS_DIR").map_or_else(
        |_| {
            std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/crs/v4.28.0")
        },
        std::path::PathBuf::from,
    );
    if !dir.join("rules").is_dir() {
        println!("skipped: CRS not found at {}", dir.display());
        return;
    }
    let rs = RuleSet::load(&[dir.join("crs-setup.conf.example")], &dir.join("rules"))
        .expect("CRS loads");
    let mut rng = Rng(0xdead_beef);
    let types = [
        "application/x-www-form-urlencoded",
        "application/json",
        "text/xml",
        "multipart/form-data; boundary=B",
        "text/plain",
    ];
    for i in 0..300 {
        let mut tx = rs.transaction();
        tx.process_connection("198.51.100.4", 1, "198.51.100.5", 2);
        let uri = rng.bytes(80, SPICY);
        tx.process_uri(b"POST", &uri, b"HTTP/1.1");
        for _ in 0..(rng.next() % 6) {
            let name = rng.bytes(12, b"abcXYZ-_");
            let value = rng.bytes(40, SPICY);
            tx.add_request_header(&name, &value);
        }
        tx.add_request_header(b"Content-Type", types[i % types.len()].as_bytes());
        tx.process_request_headers();
        tx.append_request_body(&rng.bytes(300, SPICY));
        tx.process_request_body();
        tx.add_response_header(b"Content-Type", b"text/html");
        tx.process_response_headers(500, b"HTTP/1.1");
        tx.append_response_body(&rng.bytes(300, SPICY));
        tx.process_response_body();
        tx.process_logging();
    }
}
