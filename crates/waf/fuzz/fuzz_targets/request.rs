//! Any raw request goes through the HTTP parser and, when it parses, every
//! phase and body processor without panicking.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;

const RULES: &str = r#"
SecRule ARGS|ARGS_NAMES|REQUEST_COOKIES|REQUEST_HEADERS|XML:/*|FILES|MULTIPART_PART_HEADERS "@rx (?i)a.*b" "id:1,phase:2,pass,capture,t:none,t:urlDecodeUni,t:htmlEntityDecode,t:jsDecode,t:cssDecode,t:cmdLine"
SecRule ARGS "@detectSQLi" "id:2,phase:2,pass"
SecRule ARGS "@detectXSS" "id:3,phase:2,pass"
"#;

fuzz_target!(|data: &[u8]| {
    static RS: OnceLock<rampart_waf::RuleSet> = OnceLock::new();
    let rs = RS.get_or_init(|| rampart_waf::RuleSet::from_text(RULES).expect("rules"));
    if let Ok(req) = rampart_waf::http::parse_request(data) {
        let mut tx = rs.transaction();
        req.feed(&mut tx);
        tx.add_response_header(b"Content-Type", b"text/html");
        tx.process_response_headers(200, b"HTTP/1.1");
        tx.append_response_body(&req.body);
        tx.process_response_body();
    }
});
