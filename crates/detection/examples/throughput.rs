//! Events per second through the full built-in rule set, on a mix like an attack day's:
//! WAF blocks from many clients, login failures, permission denials, ordinary logins.
//!
//! `cargo run --release -p rampart-detection --example throughput [events]`

use std::time::Instant;

use rampart_detection::Detector;
use serde_json::json;

fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(1_000_000);
    let mut detector = match Detector::load(true, None) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(1);
        }
    };
    let events: Vec<serde_json::Value> = (0..1_000)
        .map(|i| match i % 5 {
            0 | 1 => json!({"event": "waf_blocked", "severity": "warning", "request_id": format!("r{i}"),
                "source_ip": format!("192.0.2.{}", i % 200),
                "detail": {"method": "GET", "blocking_rule": 949110, "status": 403,
                    "rules": [{"id": 942100, "msg": "SQL Injection Attack Detected via libinjection"},
                              {"id": 949110, "msg": "Inbound Anomaly Score Exceeded"}]}}),
            2 => json!({"event": "login_failure", "severity": "warning", "request_id": format!("r{i}"),
                "source_ip": format!("198.51.100.{}", i % 100), "user_id": format!("u{}", i % 300)}),
            3 => json!({"event": "permission_denied", "severity": "warning", "request_id": format!("r{i}"),
                "tenant_id": "t1", "user_id": format!("u{}", i % 50), "detail": {"permission": "users:write"}}),
            _ => json!({"event": "login_success", "severity": "info", "request_id": format!("r{i}"),
                "tenant_id": "t1", "user_id": format!("u{}", i % 300), "detail": {"mfa": true}}),
        })
        .collect();
    let started = Instant::now();
    let mut alerts = 0usize;
    for i in 0..n {
        // One event per millisecond of event time.
        alerts += detector
            .observe(&events[i % events.len()], 1_764_000_000_000 + i as i64)
            .len();
    }
    let secs = started.elapsed().as_secs_f64();
    println!(
        "{n} events in {secs:.3} s: {:.0} events/s, {alerts} alerts, {} groups held",
        n as f64 / secs,
        detector.groups()
    );
}
