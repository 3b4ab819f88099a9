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
