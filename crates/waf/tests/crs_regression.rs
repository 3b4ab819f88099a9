//! Runs the whole OWASP CRS v4.28.0 regression suite in-process and fails
//! if fewer tests pass than `crs-ratchet.txt` records. The ratchet only goes
//! up: raise it when the engine gets better.

use std::path::PathBuf;

fn crs_dir() -> PathBuf {
    if let Ok(dir) = std::env::var("RAMPART_TEST_CRS_DIR") {
        return PathBuf::from(dir);
    }
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/crs/v4.28.0")
}

#[test]
fn crs_regression_suite() {
    let dir = crs_dir();
    if !dir.join("rules").is_dir() {
        // CI sets the variable, so there a missing suite fails instead of skipping.
        assert!(
            std::env::var("RAMPART_TEST_CRS_DIR").is_err(),
            "RAMPART_TEST_CRS_DIR={} has no rules/",
            dir.display()
        );
        println!(
            "skipped: CRS not found at {} (set RAMPART_TEST_CRS_DIR)",
            dir.display()
        );
        return;
    }
    let here = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests");
    let exclusions_text =
        std::fs::read_to_string(here.join("crs-exclusions.txt")).expect("read exclusions");
    let exclusions = rampart_waf::ftw::parse_exclusions(&exclusions_text);
    for (id, reason) in &exclusions {
        assert!(!reason.is_empty(), "exclusion {id} needs a reason");
    }
    let ratchet: usize = std::fs::read_to_string(here.join("crs-ratchet.txt"))
        .expect("read ratchet")
        .trim()
        .parse()
        .expect("ratchet is a number");

    if let Ok(id) = std::env::var("RAMPART_FTW_EXPLAIN") {
        let rules = rampart_waf::ftw::load_crs_for_tests(&dir).expect("load CRS");
        let tests = dir.join("tests/regression/tests");
        for one in id.split(',') {
            println!(
                "{}",
                rampart_waf::ftw::explain(&rules, &tests, one).expect("explain")
            );
        }
        return;
    }
    let started = std::time::Instant::now();
    let rules = rampart_waf::ftw::load_crs_for_tests(&dir).expect("CRS loads");
    let loaded = started.elapsed();
    let report =
        rampart_waf::ftw::run_with_rules(&rules, &dir.join("tests/regression/tests"), &exclusions)
            .expect("suite runs");
    println!("{report}");
    let took = started.elapsed() - loaded;
    println!(
        "loaded CRS in {:.1}s; ran {} requests in {:.1}s ({:.0} µs each, YAML parsing included)",
        loaded.as_secs_f64(),
        report.stages,
        took.as_secs_f64(),
        took.as_micros() as f64 / report.stages.max(1) as f64
    );
    assert!(
        report.passed >= ratchet,
        "{} tests passed, fewer than the ratchet of {ratchet}",
        report.passed
    );
}

/// What an integrator gets with CRS as shipped (engine On, paranoia level
/// 1, no test mode): attacks are blocked by the anomaly-scoring rule, and
/// ordinary browser and API traffic is not.
#[test]
fn crs_blocks_attacks_when_engine_is_on() {
    let dir = crs_dir();
    if !dir.join("rules").is_dir() {
        println!("skipped: CRS not found at {}", dir.display());
        return;
    }
    let rules =
        rampart_waf::RuleSet::load(&[dir.join("crs-setup.conf.example")], &dir.join("rules"))
            .expect("CRS loads");
    let run = |method: &str, uri: &str, content_type: Option<&str>, body: &[u8]| {
        let mut tx = rules.transaction();
        tx.process_connection("203.0.113.7", 50000, "10.0.0.1", 443);
        tx.process_uri(method.as_bytes(), uri.as_bytes(), b"HTTP/1.1");
        let len = body.len().to_string();
        let mut headers = vec![
            ("Host", "example.com"),
            (
                "User-Agent",
                "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0",
            ),
            (
                "Accept",
                "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
            ),
            ("Accept-Language", "en-US,en;q=0.5"),
            ("Accept-Encoding", "gzip, deflate, br"),
            ("Cookie", "session=6f1c2a9e0b; theme=dark"),
        ];
        if let Some(ct) = content_type {
            headers.push(("Content-Type", ct));
            headers.push(("Content-Length", &len));
        }
        for (k, v) in headers {
            tx.add_request_header(k.as_bytes(), v.as_bytes());
        }
        let stop = tx.process_request_headers().or_else(|| {
            tx.append_request_body(body);
            tx.process_request_body()
        });
        tx.process_logging();
        let ids: Vec<u64> = tx
            .matched_rules()
            .iter()
            .filter(|m| m.logged)
            .map(|m| m.id)
            .collect();
        (stop.map(|s| (s.rule_id, s.status)), ids)
    };
    let form = Some("application/x-www-form-urlencoded");
    let json = Some("application/json");
    let blocked = [
        run("GET", "/search?q=1%27%20OR%20%271%27%3D%271", None, b""),
        run("GET", "/download?file=../../../../etc/passwd", None, b""),
        run(
            "POST",
            "/comment",
            form,
            b"text=%3Cscript%3Ealert(document.cookie)%3C%2Fscript%3E",
        ),
        run(
            "POST",
            "/api/items",
            json,
            br#"{"name":"x; cat /etc/passwd"}"#,
        ),
        run(
            "POST",
            "/api/items",
            json,
            br#"{"q":"1 UNION SELECT password FROM users--"}"#,
        ),
    ];
    for (i, (stop, ids)) in blocked.iter().enumerate() {
        assert_eq!(
            *stop,
            Some((949110, 403)),
            "attack {i} not blocked; matched {ids:?}"
        );
    }
    let allowed = [
        run("GET", "/search?q=blue+running+shoes&page=2", None, b""),
        run("GET", "/static/app.js?v=1.2.3", None, b""),
        run(
            "POST",
            "/login",
            form,
            b"username=alice&password=correct%20horse%20battery&remember=on",
        ),
        run(
            "POST",
            "/api/orders",
            json,
            br#"{"items":[{"sku":"A-100","qty":2}],"note":"Leave at the door, thanks!"}"#,
        ),
        run(
            "POST",
            "/api/profile",
            json,
            r#"{"name":"Zoë O'Neil","bio":"I like SQL and C++."}"#.as_bytes(),
        ),
    ];
    for (i, (stop, ids)) in allowed.iter().enumerate() {
        assert_eq!(*stop, None, "benign request {i} blocked; matched {ids:?}");
        assert!(ids.is_empty(), "benign request {i} matched {ids:?}");
    }
}

/// Cost of one benign request through CRS at paranoia level 1 (engine On).
/// Run with `cargo test --release -p rampart-waf --test crs_regression --
/// --ignored --nocapture crs_request_cost`.
#[test]
#[ignore]
fn crs_request_cost() {
    let dir = crs_dir();
    if !dir.join("rules").is_dir() {
        println!("skipped: CRS not found at {}", dir.display());
        return;
    }
    let rules =
        rampart_waf::RuleSet::load(&[dir.join("crs-setup.conf.example")], &dir.join("rules"))
            .expect("CRS loads");
    let body = br#"{"items":[{"sku":"A-100","qty":2}],"note":"Leave at the door, thanks!"}"#;
    let n = 2000;
    let started = std::time::Instant::now();
    for _ in 0..n {
        let mut tx = rules.transaction();
        tx.process_connection("203.0.113.7", 50000, "10.0.0.1", 443);
        tx.process_uri(
            b"POST",
            b"/api/orders?ref=mail&campaign=spring",
            b"HTTP/1.1",
        );
        for (k, v) in [
            ("Host", "example.com"),
            (
                "User-Agent",
                "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0",
            ),
            ("Accept", "application/json"),
            ("Content-Type", "application/json"),
            ("Content-Length", "74"),
            ("Cookie", "session=6f1c2a9e0b; theme=dark"),
        ] {
            tx.add_request_header(k.as_bytes(), v.as_bytes());
        }
        assert!(tx.process_request_headers().is_none());
        tx.append_request_body(body);
        assert!(tx.process_request_body().is_none());
        tx.add_response_header(b"Content-Type", b"application/json");
        tx.process_response_headers(200, b"HTTP/1.1");
        tx.process_response_body();
        tx.process_logging();
    }
    let each = started.elapsed().as_micros() as f64 / f64::from(n);
    println!("{each:.0} µs per request (CRS, paranoia level 1, engine On)");
}

/// The engine's shortcuts must not change a verdict: every request of the CRS suite, and
/// a mutation of each (attack keywords spliced in, bytes flipped, encoded, cut), gets the
/// same status and the same matched rules, in the same order with the same variables,
/// from the engine as loaded by default as from one with literal prefilters and the
/// setup snapshot turned off (every regex on every value, every setup rule evaluated).
#[test]
fn prefilters_change_no_verdict() {
    let dir = crs_dir();
    if !dir.join("rules").is_dir() {
        assert!(
            std::env::var("RAMPART_TEST_CRS_DIR").is_err(),
            "RAMPART_TEST_CRS_DIR={} has no rules/",
            dir.display()
        );
        println!("skipped: CRS not found at {}", dir.display());
        return;
    }
    let with = rampart_waf::ftw::load_crs_for_tests(&dir).expect("CRS loads");
    let without = rampart_waf::ftw::crs_builder_for_tests(&dir)
        .expect("CRS loads")
        .literal_prefilters(false)
        .setup_snapshot(false)
        .build()
        .expect("CRS builds");
    let corpus =
        rampart_waf::ftw::corpus(&dir.join("tests/regression/tests")).expect("corpus reads");
    assert!(corpus.len() > 4000, "only {} requests", corpus.len());
    let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
    let mut checked = 0;
    let mut matched = 0;
    for original in &corpus {
        let mutant = mutate(original, &mut rng);
        for req in [original, &mutant] {
            let a = rampart_waf::ftw::evaluate(&with, req);
            let b = rampart_waf::ftw::evaluate(&without, req);
            assert_eq!(
                a,
                b,
                "prefilters changed the verdict on {} {}",
                String::from_utf8_lossy(&req.method),
                String::from_utf8_lossy(&req.uri)
            );
            checked += 1;
            matched += a.matched.len();
        }
    }
    println!("{checked} requests, {matched} rule matches, identical with and without prefilters");
}

/// A small deterministic generator: the mutations are the same on every run, so a
/// failure reproduces.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// What the rules look for, and the encodings that hide it, to splice into values.
const TOKENS: &[&str] = &[
    "' OR '1'='1",
    " UNION SELECT ",
    "select",
    "<script>",
    "<ScRiPt",
    "javascript:",
    "onerror=",
    "../../etc/passwd",
    "/etc/shadow",
    "..%2f",
    "%27",
    "%00",
    "%u0027",
    "&#x3c;",
    "${jndi:ldap://",
    ";cat /etc/passwd",
    "$(id)",
    "`id`",
    "cmd.exe",
    "<?php",
    "eval(",
    "sleep(5)",
    "waitfor delay",
    "/*!50000",
    "--",
    "0x41",
    "\\x3c",
    "<!--#exec",
    "{{7*7}}",
    "\r\n",
    "é",
    " ",
    "=",
    "&",
];

/// One mutant of `req`: the URI, the body and a header value each get zero to three
/// edits. The parts stay valid for the engine's feeding API, not necessarily for a server.
fn mutate(
    req: &rampart_waf::http::RawRequest,
    rng: &mut XorShift,
) -> rampart_waf::http::RawRequest {
    let mut out = req.clone();
    let n = rng.below(4);
    edit(&mut out.uri, n, rng, 1);
    let n = rng.below(4);
    edit(&mut out.body, n, rng, 0);
    if !out.headers.is_empty() {
        let i = rng.below(out.headers.len());
        let n = rng.below(3);
        edit(&mut out.headers[i].1, n, rng, 0);
    }
    out
}

/// `n` random edits of `v`, leaving its first `keep` bytes alone (the URI's `/`).
fn edit(v: &mut Vec<u8>, n: usize, rng: &mut XorShift, keep: usize) {
    for _ in 0..n {
        let keep = keep.min(v.len());
        let at = keep + rng.below(v.len() - keep + 1);
        match rng.below(6) {
            0 | 1 => {
                let t = TOKENS[rng.below(TOKENS.len())].as_bytes();
                v.splice(at..at, t.iter().copied());
            }
            2 if at < v.len() => v[at] ^= 0x20,
            3 if at < v.len() => {
                let b = v[at];
                let hex = format!("%{b:02x}");
                v.splice(at..at + 1, hex.bytes());
            }
            4 if at < v.len() => {
                let end = (at + 1 + rng.below(8)).min(v.len());
                v.drain(at..end);
            }
            _ => {
                let b = (rng.next() & 0xff) as u8;
                v.insert(at, b);
            }
        }
    }
}
