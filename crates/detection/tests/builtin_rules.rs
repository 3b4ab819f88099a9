//! Every built-in rule against a realistic sequence of the events Rampart writes (it
//! fires), and a sequence just under its threshold or otherwise benign (it does not).
//! Events have the security log's shape: `event`, `severity`, `request_id`, `source_ip`,
//! `tenant_id`, `user_id`, `api_key_id`, `detail`, `time`.

use std::collections::BTreeSet;

use rampart_detection::{Alert, Detector, Level};
use serde_json::{json, Value};

const T0: i64 = 1_764_000_000_000;
const SEC: i64 = 1_000;
const MIN: i64 = 60 * SEC;

fn run(events: &[(i64, Value)]) -> Vec<Alert> {
    let mut d = Detector::load(true, None).unwrap_or_else(|e| panic!("{e}"));
    events
        .iter()
        .flat_map(|(at, e)| d.observe(e, *at))
        .collect()
}

fn of<'a>(alerts: &'a [Alert], rule: &str) -> Vec<&'a Alert> {
    alerts.iter().filter(|a| a.rule_id == rule).collect()
}

/// Exactly one alert of `rule`; returns it.
fn fires_once(events: &[(i64, Value)], rule: &str) -> Alert {
    let alerts = run(events);
    let hits = of(&alerts, rule);
    assert_eq!(hits.len(), 1, "{rule}: {alerts:#?}");
    hits[0].clone()
}

fn silent(events: &[(i64, Value)], rule: &str) {
    let alerts = run(events);
    assert!(of(&alerts, rule).is_empty(), "{rule}: {alerts:#?}");
}

fn event(name: &str, severity: &str, n: usize) -> Value {
    json!({"event": name, "severity": severity, "request_id": format!("req-{n}"),
           "time": "2026-11-24T16:00:00Z"})
}

fn with(mut e: Value, fields: Value) -> Value {
    if let (Value::Object(map), Value::Object(extra)) = (&mut e, fields) {
        map.extend(extra);
    }
    e
}

/// `login_failure` as login.rs writes it: no tenant, the user only when the e-mail
/// named a real account.
fn login_failure(ip: &str, user: Option<&str>, n: usize) -> Value {
    let mut e = with(
        event("login_failure", "warning", n),
        json!({"source_ip": ip}),
    );
    if let Some(u) = user {
        e["user_id"] = json!(u);
    }
    e
}

fn series(n: usize, start: i64, step: i64, make: impl Fn(usize) -> Value) -> Vec<(i64, Value)> {
    (0..n).map(|i| (start + i as i64 * step, make(i))).collect()
}

#[test]
fn every_builtin_rule_loads_with_level_and_attack_ids() {
    let d = Detector::load(true, None).unwrap();
    let rules: Vec<_> = d.rules().collect();
    assert!(rules.len() >= 30, "{}", rules.len());
    let ids: BTreeSet<&str> = rules.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(ids.len(), rules.len(), "duplicate ids");
    for r in &rules {
        assert!(r.file.starts_with("builtin:"), "{}", r.file);
        assert!(r.id.starts_with("rampart-"), "{}", r.id);
        if r.level > Level::Informational {
            assert!(!r.techniques.is_empty(), "{} has no ATT&CK technique", r.id);
        }
    }
    assert_eq!(d.groups(), 0);
}

#[test]
fn a_quiet_day_raises_nothing() {
    let mut events = Vec::new();
    let mut at = T0;
    for i in 0..200 {
        at += 7 * SEC;
        let user = format!("u{}", i % 40);
        let ip = format!("203.0.113.{}", i % 40);
        events.push((
            at,
            with(
                event("login_success", "info", i),
                json!({"source_ip": ip, "tenant_id": "t1", "user_id": user, "detail": {"mfa": true}}),
            ),
        ));
        if i % 10 == 0 {
            events.push((at + 1, login_failure(&ip, Some(&user), i)));
        }
        if i % 25 == 0 {
            events.push((
                at + 2,
                with(
                    event("permission_denied", "warning", i),
                    json!({"tenant_id": "t1", "user_id": user, "detail": {"permission": "users:write"}}),
                ),
            ));
            events.push((
                at + 3,
                with(
                    event("waf_blocked", "warning", i),
                    json!({"source_ip": ip, "detail": {"method": "GET", "rules": [{"id": 920350, "msg": "Host header is a numeric IP address"}], "status": 403}}),
                ),
            ));
        }
        events.push((
            at + 4,
            with(
                event("api_key_used", "info", i),
                json!({"tenant_id": "t1", "api_key_id": "k1", "source_ip": "198.51.100.7"}),
            ),
        ));
    }
    events.push((
        at + MIN,
        with(
            event("mfa_enabled", "info", 0),
            json!({"tenant_id": "t1", "user_id": "u1"}),
        ),
    ));
    events.push((
        at + MIN,
        with(
            event("backup_created", "info", 0),
            json!({"detail": {"backup_id": "b1", "size_bytes": 1024}}),
        ),
    ));
    events.push((
        at + MIN,
        with(
            event("backup_drill", "info", 0),
            json!({"detail": {"ok": true}}),
        ),
    ));
    events.push((
        at + MIN,
        with(
            event("role_changed", "warning", 0),
            json!({"tenant_id": "t1", "user_id": "admin1", "detail": {"target_user_id": "u3", "role": {"from": "member", "to": "auditor"}, "status": {"from": "active", "to": "active"}}}),
        ),
    ));
    let alerts = run(&events);
    assert!(alerts.is_empty(), "{alerts:#?}");
}

#[test]
fn password_guessing_against_one_account() {
    let rule = "rampart-password-guessing-account";
    // Ten failures on u1 from ten addresses, 30 s apart.
    let attack = series(10, T0, 30 * SEC, |i| {
        login_failure(&format!("198.51.100.{i}"), Some("u1"), i)
    });
    let a = fires_once(&attack, rule);
    assert_eq!(a.level, Level::High);
    assert_eq!(a.techniques, ["T1110.001"]);
    assert_eq!(a.group["user_id"], "u1");
    assert_eq!(a.count, 10);
    // Nine: under the threshold. Ten over an hour: never ten in ten minutes.
    silent(&attack[..9], rule);
    silent(
        &series(10, T0, 6 * MIN, |i| {
            login_failure("198.51.100.1", Some("u1"), i)
        }),
        rule,
    );
}

#[test]
fn password_guessing_from_one_address() {
    let rule = "rampart-password-guessing-ip";
    let attack = series(8, T0, SEC, |i| login_failure("198.51.100.9", None, i));
    let a = fires_once(&attack, rule);
    assert_eq!(a.group["source_ip"], "198.51.100.9");
    assert_eq!(a.techniques, ["T1110.001"]);
    silent(&attack[..7], rule);
    // Eight over 210 s: never eight within two minutes.
    silent(
        &series(8, T0, 30 * SEC, |i| login_failure("198.51.100.9", None, i)),
        rule,
    );
}

#[test]
fn password_spraying() {
    let rule = "rampart-password-spraying";
    let spray = series(5, T0, MIN, |i| {
        login_failure("192.0.2.50", Some(&format!("u{i}")), i)
    });
    let a = fires_once(&spray, rule);
    assert_eq!(a.count, 5);
    assert_eq!(a.techniques, ["T1110.003"]);
    assert_eq!(a.group["source_ip"], "192.0.2.50");
    silent(&spray[..4], rule);
    // Five accounts, but from five addresses: not a spray from one.
    silent(
        &series(5, T0, MIN, |i| {
            login_failure(&format!("192.0.2.{i}"), Some(&format!("u{i}")), i)
        }),
        rule,
    );
}

#[test]
fn credential_stuffing() {
    let rule = "rampart-credential-stuffing";
    let stuffing = series(20, T0, 25 * SEC, |i| login_failure("192.0.2.77", None, i));
    let a = fires_once(&stuffing, rule);
    assert_eq!(a.techniques, ["T1110.004"]);
    assert_eq!(a.count, 20);
    silent(&stuffing[..19], rule);
    // Failures on a real account are guessing, not stuffing.
    silent(
        &series(20, T0, 25 * SEC, |i| {
            login_failure("192.0.2.77", Some("u1"), i)
        }),
        rule,
    );
}

fn mfa_failure(user: &str, n: usize) -> Value {
    with(
        event("mfa_failure", "warning", n),
        json!({"source_ip": "203.0.113.5", "tenant_id": "t1", "user_id": user}),
    )
}

#[test]
fn repeated_mfa_failures() {
    let rule = "rampart-mfa-failures";
    let fatigue = series(5, T0, 20 * SEC, |i| mfa_failure("u1", i));
    let a = fires_once(&fatigue, rule);
    assert_eq!(a.techniques, ["T1621"]);
    assert_eq!(a.group["tenant_id"], "t1");
    assert_eq!(a.group["user_id"], "u1");
    silent(&fatigue[..4], rule);
    silent(
        &series(5, T0, 20 * SEC, |i| mfa_failure(&format!("u{i}"), i)),
        rule,
    );
    silent(&series(5, T0, 15 * MIN, |i| mfa_failure("u1", i)), rule);
}

#[test]
fn refresh_token_reuse() {
    let rule = "rampart-refresh-token-reuse";
    let reuse = with(
        event("refresh_token_reuse", "critical", 1),
        json!({"source_ip": "203.0.113.9", "user_id": "u1",
               "detail": {"session_id": "s1", "action": "session revoked"}}),
    );
    let a = fires_once(&[(T0, reuse)], rule);
    assert_eq!(a.level, Level::Critical);
    assert!(a.techniques.contains(&"T1550.001".to_string()));
    assert_eq!(a.group["user_id"], "u1");
    assert_eq!(a.event_ids, ["req-1"]);
    silent(
        &[(
            T0,
            with(event("login_success", "info", 1), json!({"user_id": "u1"})),
        )],
        rule,
    );
}

fn api_key_rejected(key: &str, reason: &str, n: usize) -> Value {
    with(
        event("api_key_rejected", "warning", n),
        json!({"source_ip": "198.51.100.20", "tenant_id": "t1", "api_key_id": key,
               "detail": {"reason": reason}}),
    )
}

#[test]
fn revoked_api_key_still_in_use() {
    let rule = "rampart-api-key-revoked-in-use";
    // A script keeps calling with a revoked key: one alert for the hour, not one per call.
    let calls = series(50, T0, 30 * SEC, |i| api_key_rejected("k1", "revoked", i));
    let a = fires_once(&calls, rule);
    assert_eq!(a.level, Level::High);
    assert_eq!(a.techniques, ["T1078.004"]);
    assert_eq!(a.group["api_key_id"], "k1");
    // Still calling after the hour: a second alert.
    let longer = series(130, T0, 30 * SEC, |i| api_key_rejected("k1", "disabled", i));
    assert_eq!(of(&run(&longer), rule).len(), 2);
    // A key that never existed is not a revoked key in use.
    silent(
        &series(50, T0, SEC, |i| api_key_rejected("k9", "unknown", i)),
        rule,
    );
}

#[test]
fn api_key_used_after_its_revocation() {
    let rule = "rampart-api-key-used-after-revocation";
    let used = |key: &str, n| {
        with(
            event("api_key_used", "info", n),
            json!({"tenant_id": "t1", "api_key_id": key, "source_ip": "198.51.100.7"}),
        )
    };
    let revoked = with(
        event("api_key_revoked", "info", 2),
        json!({"tenant_id": "t1", "user_id": "admin1", "detail": {"revoked_key_id": "k1"}}),
    );
    let a = fires_once(
        &[
            (T0, used("k1", 1)),
            (T0 + MIN, revoked.clone()),
            (T0 + 2 * MIN, used("k1", 3)),
        ],
        rule,
    );
    assert_eq!(a.level, Level::Critical);
    assert_eq!(a.group["key"], "k1");
    // Every event of the window is evidence, the use before the revocation too.
    assert_eq!(a.event_ids, ["req-1", "req-2", "req-3"]);
    silent(
        &[
            (T0, used("k1", 1)),
            (T0 + MIN, revoked),
            (T0 + 2 * MIN, used("k2", 3)),
        ],
        rule,
    );
}

fn denied(user: &str, permission: &str, n: usize) -> Value {
    with(
        event("permission_denied", "warning", n),
        json!({"source_ip": "203.0.113.5", "tenant_id": "t1", "user_id": user,
               "detail": {"permission": permission}}),
    )
}

#[test]
fn permission_denied_burst() {
    let rule = "rampart-permission-denied-burst";
    let burst = series(20, T0, 5 * SEC, |i| denied("u1", "users:write", i));
    let a = fires_once(&burst, rule);
    assert_eq!(a.level, Level::Medium);
    assert!(a.techniques.contains(&"T1087".to_string()));
    assert_eq!(a.group["user_id"], "u1");
    assert_eq!(a.group["api_key_id"], "");
    silent(&burst[..19], rule);
    silent(
        &series(20, T0, 5 * SEC, |i| {
            denied(&format!("u{i}"), "users:write", i)
        }),
        rule,
    );
}

#[test]
fn one_principal_probing_many_permissions() {
    let rule = "rampart-permission-probing";
    let perms = [
        "users:read",
        "users:write",
        "tokens:detokenize",
        "audit:read",
        "keys:write",
    ];
    let probe = series(5, T0, 10 * SEC, |i| denied("u1", perms[i], i));
    let a = fires_once(&probe, rule);
    assert_eq!(a.count, 5);
    silent(
        &series(12, T0, 10 * SEC, |i| denied("u1", perms[i % 4], i)),
        rule,
    );
}

fn waf_blocked(ip: &str, rules: Value, n: usize) -> Value {
    with(
        event("waf_blocked", "warning", n),
        json!({"source_ip": ip, "detail": {"method": "POST", "phase": "request", "blocking_rule": 949110,
               "status": 403, "rules": rules, "inbound_anomaly_score": 10, "outbound_anomaly_score": 0}}),
    )
}

fn protocol_rules() -> Value {
    json!([{"id": 920350, "msg": "Host header is a numeric IP address"},
           {"id": 949110, "msg": "Inbound Anomaly Score Exceeded (Total Score: 10)"}])
}

#[test]
fn waf_block_rate_spike_per_client() {
    let rule = "rampart-waf-block-spike-client";
    let spike = series(30, T0, SEC, |i| {
        waf_blocked("192.0.2.9", protocol_rules(), i)
    });
    let a = fires_once(&spike, rule);
    assert_eq!(a.group["source_ip"], "192.0.2.9");
    assert_eq!(a.techniques, ["T1595.002"]);
    silent(&spike[..29], rule);
    // Today's WAF events have no tenant: the per-tenant rule stays quiet.
    silent(&spike, "rampart-waf-block-spike-tenant");
}

#[test]
fn waf_block_rate_spike_per_tenant() {
    let rule = "rampart-waf-block-spike-tenant";
    let make = |i: usize| {
        let mut e = waf_blocked(&format!("192.0.2.{}", i % 50), protocol_rules(), i);
        e["tenant_id"] = json!("t1");
        e
    };
    let spike = series(200, T0, SEC, make);
    let a = fires_once(&spike, rule);
    assert_eq!(a.group["tenant_id"], "t1");
    silent(&spike[..199], rule);
}

#[test]
fn sqli_wave_from_one_client() {
    let rule = "rampart-sqli-wave";
    let sqli = || {
        json!([{"id": 942100, "msg": "SQL Injection Attack Detected via libinjection"},
               {"id": 949110, "msg": "Inbound Anomaly Score Exceeded (Total Score: 5)"}])
    };
    let wave = series(8, T0, 5 * SEC, |i| waf_blocked("198.51.100.66", sqli(), i));
    let a = fires_once(&wave, rule);
    assert_eq!(a.level, Level::High);
    assert_eq!(a.techniques, ["T1190"]);
    silent(&wave[..7], rule);
    silent(
        &series(8, T0, 5 * SEC, |i| {
            waf_blocked("198.51.100.66", protocol_rules(), i)
        }),
        rule,
    );
    silent(&wave, "rampart-xss-wave");
}

#[test]
fn xss_wave_from_one_client() {
    let rule = "rampart-xss-wave";
    let xss = || json!([{"id": 941100, "msg": "XSS Attack Detected via libinjection"}]);
    let wave = series(10, T0, 5 * SEC, |i| {
        let mut e = waf_blocked("198.51.100.67", xss(), i);
        if i % 2 == 0 {
            // Detection-only mode writes waf_detected; it counts as well.
            e["event"] = json!("waf_detected");
        }
        e
    });
    let a = fires_once(&wave, rule);
    assert_eq!(a.techniques, ["T1190"]);
    silent(&wave[..9], rule);
}

fn declined(ip: &str, amount: u64, n: usize) -> Value {
    with(
        event("payment_declined", "warning", n),
        json!({"source_ip": ip, "tenant_id": "m1",
               "detail": {"amount_minor": amount, "currency": "IDR", "decline_code": "card_declined"}}),
    )
}

#[test]
fn card_testing() {
    let rule = "rampart-card-testing";
    let testing = series(10, T0, 20 * SEC, |i| {
        declined("203.0.113.200", 100 + i as u64, i)
    });
    let a = fires_once(&testing, rule);
    assert_eq!(a.level, Level::High);
    assert_eq!(a.group["source_ip"], "203.0.113.200");
    assert_eq!(a.group["tenant_id"], "m1");
    silent(&testing[..9], rule);
    // Large declined payments are not card testing.
    silent(
        &series(10, T0, 20 * SEC, |i| declined("203.0.113.200", 250_000, i)),
        rule,
    );
}

fn principal_event(name: &str, user: &str, n: usize) -> Value {
    with(
        event(name, "info", n),
        json!({"source_ip": "203.0.113.5", "tenant_id": "t1", "user_id": user}),
    )
}

#[test]
fn mass_detokenization() {
    let rule = "rampart-mass-detokenization";
    let mass = series(100, T0, 3 * SEC, |i| {
        principal_event("token_detokenized", "u1", i)
    });
    let a = fires_once(&mass, rule);
    assert_eq!(a.techniques, ["T1530"]);
    assert_eq!(a.count, 100);
    assert_eq!(a.event_ids.len(), 10);
    assert_eq!(a.event_ids[9], "req-99");
    silent(&mass[..99], rule);
}

#[test]
fn mass_export() {
    let rule = "rampart-mass-export";
    let exports = series(5, T0, 5 * MIN, |i| {
        principal_event("data_exported", "u1", i)
    });
    let a = fires_once(&exports, rule);
    assert_eq!(a.techniques, ["T1567"]);
    silent(&exports[..4], rule);
    silent(
        &series(5, T0, 20 * MIN, |i| {
            principal_event("data_exported", "u1", i)
        }),
        rule,
    );
}

fn role_changed(from: &str, to: &str) -> Value {
    with(
        event("role_changed", "warning", 1),
        json!({"source_ip": "203.0.113.5", "tenant_id": "t1", "user_id": "admin1",
               "detail": {"target_user_id": "u2", "role": {"from": from, "to": to},
                          "status": {"from": "active", "to": "active"}}}),
    )
}

#[test]
fn admin_role_granted() {
    let rule = "rampart-admin-role-granted";
    let a = fires_once(&[(T0, role_changed("member", "tenant_admin"))], rule);
    assert_eq!(a.level, Level::High);
    assert_eq!(a.techniques, ["T1098"]);
    fires_once(
        &[(T0, role_changed("tenant_admin", "platform_admin"))],
        rule,
    );
    silent(&[(T0, role_changed("member", "auditor"))], rule);
    silent(&[(T0, role_changed("tenant_admin", "tenant_admin"))], rule);
    silent(
        &[(T0, role_changed("platform_admin", "tenant_admin"))],
        rule,
    );
}

#[test]
fn mfa_removed_from_an_admin() {
    let rule = "rampart-admin-mfa-removed";
    let removed = |role: Option<&str>| {
        let mut e = principal_event("mfa_disabled", "u1", 1);
        if let Some(r) = role {
            e["detail"] = json!({"role": r});
        }
        e
    };
    let a = fires_once(&[(T0, removed(Some("platform_admin")))], rule);
    assert!(a.techniques.contains(&"T1098".to_string()));
    fires_once(&[(T0, removed(Some("tenant_admin")))], rule);
    silent(&[(T0, removed(Some("member")))], rule);
    // Today's event, without the role.
    silent(&[(T0, removed(None))], rule);
}

#[test]
fn audit_chain_verification_failure() {
    let rule = "rampart-audit-chain-broken";
    let broken = with(
        event("audit_chain_verify_failed", "critical", 1),
        json!({"tenant_id": "t1", "detail": {"chain": "t1", "error": "audit chain broken: event 42"}}),
    );
    let a = fires_once(&[(T0, broken)], rule);
    assert_eq!(a.level, Level::Critical);
    assert!(a.techniques.contains(&"T1565.001".to_string()));
    silent(&[(T0, event("audit_checkpoint_signed", "info", 1))], rule);
}

#[test]
fn backup_failure() {
    let rule = "rampart-backup-failed";
    let failed = with(
        event("backup_failed", "critical", 1),
        json!({"detail": {"backup_id": "b1", "error": "no space left on device"}}),
    );
    let a = fires_once(&[(T0, failed)], rule);
    assert_eq!(a.level, Level::High);
    assert_eq!(a.techniques, ["T1490"]);
    fires_once(&[(T0, event("backup_restore_failed", "critical", 2))], rule);
    silent(
        &[(
            T0,
            with(
                event("backup_created", "info", 1),
                json!({"detail": {"backup_id": "b1"}}),
            ),
        )],
        rule,
    );
}

#[test]
fn backup_drill_failure() {
    let rule = "rampart-backup-drill-failed";
    let failed = with(
        event("backup_drill_failed", "critical", 1),
        json!({"detail": {"ok": false, "problems": ["chain head differs for tenant t1"]}}),
    );
    let a = fires_once(&[(T0, failed)], rule);
    assert_eq!(a.techniques, ["T1490"]);
    silent(&[(T0, event("backup_drill", "info", 1))], rule);
}
