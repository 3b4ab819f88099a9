//! Runs the whole OWASP CRS v4.28.0 regression suite in-process and fails
//! if fewer tests pass than `crs-ratchet.txt` records. The ratchet only goes
//! up: raise it when the engine gets better.

use std::path::PathBuf;

fn crs_dir() -> PathBuf {
    if let Ok(dir) = std::env::var("RAMPART_CRS_DIR") {
        return PathBuf::from(dir);
    }
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/crs/v4.28.0")
}

#[test]
fn crs_regression_suite() {
    let dir = crs_dir();
    if !dir.join("rules").is_dir() {
        println!(
            "skipped: CRS not found at {} (set RAMPART_CRS_DIR)",
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

/// What an integrator gets with CRS as shipped (engine On, no test mode):
/// an attack is blocked by the anomaly-scoring rule, a benign request is not.
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
    let run = |uri: &[u8]| {
        let mut tx = rules.transaction();
        tx.process_connection("203.0.113.7", 50000, "10.0.0.1", 443);
        tx.process_uri(b"GET", uri, b"HTTP/1.1");
        for (k, v) in [
            ("Host", "example.com"),
            ("User-Agent", "Mozilla/5.0"),
            ("Accept", "text/html"),
        ] {
            tx.add_request_header(k.as_bytes(), v.as_bytes());
        }
        let stop = tx
            .process_request_headers()
            .or_else(|| tx.process_request_body());
        tx.process_logging();
        (stop, tx.inbound_anomaly_score())
    };
    let (stop, score) = run(b"/search?q=1%27%20OR%20%271%27%3D%271");
    let stop = stop.expect("SQL injection is blocked");
    assert_eq!((stop.rule_id, stop.status), (949110, 403));
    assert!(score >= 5, "score {score}");
    let (stop, score) = run(b"/search?q=blue+shoes");
    assert_eq!((stop, score), (None, 0));
}
