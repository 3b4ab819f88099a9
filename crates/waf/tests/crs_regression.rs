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
    let report = rampart_waf::ftw::run(&dir, &dir.join("tests/regression/tests"), &exclusions)
        .expect("suite runs");
    println!("{report}");
    let took = started.elapsed();
    println!(
        "took {:.1}s for {} requests ({:.0} µs each, load included)",
        took.as_secs_f64(),
        report.stages,
        took.as_micros() as f64 / report.stages.max(1) as f64
    );
    assert!(
        report.passed >= ratchet,
        "{} tests passed, fewer than the ratchet of {ratchet}",
        report.passed
    );
}
