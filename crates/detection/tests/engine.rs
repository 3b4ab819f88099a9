//! The engine through its public API: correlation windows, group-by, suppression,
//! bounded state, and load errors with file and line.

use rampart_detection::{Alert, Detector, Level, Limits};
use serde_json::{json, Value};

const BASE: &str = r#"
title: Failed login
id: base-failure
name: failure
level: low
logsource: {product: rampart}
detection:
  selection:
    event: login_failure
  condition: selection
---
title: Login
id: base-success
name: success
level: low
detection:
  selection:
    event: login_success
  condition: selection
"#;

fn detector(extra: &str) -> Detector {
    detector_with(extra, Limits::default())
}

fn detector_with(extra: &str, limits: Limits) -> Detector {
    Detector::from_sources(&[("base.yml", BASE), ("extra.yml", extra)], limits)
        .unwrap_or_else(|e| panic!("{e}"))
}

fn failure(ip: &str, user: &str, n: usize) -> Value {
    json!({"event": "login_failure", "severity": "warning", "source_ip": ip,
           "user_id": user, "tenant_id": "t1", "request_id": format!("req-{n}")})
}

const SEC: i64 = 1_000;
const T0: i64 = 1_764_000_000_000;

fn feed(d: &mut Detector, events: &[(i64, Value)]) -> Vec<Alert> {
    events
        .iter()
        .flat_map(|(at, e)| d.observe(e, *at))
        .collect()
}

const BRUTE: &str = r#"
title: Brute force
id: brute
level: high
tags: [attack.t1110.001]
correlation:
  type: event_count
  rules: [failure]
  group-by: [tenant_id, source_ip]
  timespan: 120s
  condition: {gte: 8}
"#;

#[test]
fn eight_failures_in_eight_seconds_raise_one_alert() {
    let mut d = detector(BRUTE);
    let events: Vec<(i64, Value)> = (0..8)
        .map(|i| (T0 + i * SEC, failure("1.2.3.4", "u1", i as usize)))
        .collect();
    let alerts = feed(&mut d, &events);
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    let a = &alerts[0];
    assert_eq!(a.rule_id, "brute");
    assert_eq!(a.level, Level::High);
    assert_eq!(a.techniques, ["T1110.001"]);
    assert_eq!(a.count, 8);
    assert_eq!(a.first_seen_ms, T0);
    assert_eq!(a.last_seen_ms, T0 + 7 * SEC);
    assert_eq!(a.group["tenant_id"], "t1");
    assert_eq!(a.group["source_ip"], "1.2.3.4");
    assert_eq!(a.event_ids.len(), 8);
    assert_eq!(a.event_ids[0], "req-0");
    // The base rule is only referenced (generate: false), so it raised nothing itself.
}

#[test]
fn seven_failures_do_not_fire() {
    let mut d = detector(BRUTE);
    let events: Vec<(i64, Value)> = (0..7)
        .map(|i| (T0 + i * SEC, failure("1.2.3.4", "u1", 0)))
        .collect();
    assert!(feed(&mut d, &events).is_empty());
}

#[test]
fn a_ninth_inside_the_window_is_suppressed_and_the_next_window_alerts_again() {
    let mut d = detector(BRUTE);
    let events: Vec<(i64, Value)> = (0..9)
        .map(|i| (T0 + i * SEC, failure("1.2.3.4", "u1", 0)))
        .collect();
    assert_eq!(feed(&mut d, &events).len(), 1);
    // Still attacking 30 s later: inside the 120 s after the alert, nothing new.
    assert!(d
        .observe(&failure("1.2.3.4", "u1", 0), T0 + 37 * SEC)
        .is_empty());
    // A steady attack: one failure every 10 s. The window after the alert's opens at
    // +127 s; the first failure there with 8 in the last 120 s alerts once more.
    let mut later = Vec::new();
    for i in 0..30 {
        later.extend(d.observe(&failure("1.2.3.4", "u1", 0), T0 + (40 + i * 10) * SEC));
    }
    assert_eq!(later.len(), 2, "{later:?}");
    assert_eq!(later[0].last_seen_ms, T0 + 130 * SEC);
    assert_eq!(later[1].last_seen_ms, T0 + 250 * SEC);
}

#[test]
fn each_group_has_its_own_window() {
    let mut d = detector(BRUTE);
    let mut events = Vec::new();
    for i in 0..8 {
        events.push((T0 + i * SEC, failure("1.2.3.4", "u1", 0)));
        events.push((T0 + i * SEC, failure("5.6.7.8", "u1", 0)));
    }
    let alerts = feed(&mut d, &events);
    assert_eq!(alerts.len(), 2);
    assert_eq!(alerts[1].group["source_ip"], "5.6.7.8");
    // Another tenant, same address: its own group.
    let mut other = failure("1.2.3.4", "u1", 0);
    other["tenant_id"] = json!("t2");
    let events: Vec<(i64, Value)> = (0..8).map(|i| (T0 + i * SEC, other.clone())).collect();
    let alerts = feed(&mut d, &events);
    assert_eq!(alerts.len(), 1);
    assert_eq!(alerts[0].group["tenant_id"], "t2");
}

#[test]
fn the_window_slides() {
    let mut d = detector(BRUTE);
    // Eight failures spread over 210 s: never eight within 120 s.
    let events: Vec<(i64, Value)> = (0..8)
        .map(|i| (T0 + i * 30 * SEC, failure("1.2.3.4", "u1", 0)))
        .collect();
    assert!(feed(&mut d, &events).is_empty());
    // Four more at 5 s steps: at +230 s the last eight are within 120 s.
    let events: Vec<(i64, Value)> = (0..4)
        .map(|i| (T0 + 215 * SEC + i * 5 * SEC, failure("1.2.3.4", "u1", 0)))
        .collect();
    let alerts = feed(&mut d, &events);
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    assert_eq!(alerts[0].count, 8);
    assert_eq!(alerts[0].first_seen_ms, T0 + 120 * SEC);
    assert_eq!(alerts[0].last_seen_ms, T0 + 230 * SEC);
}

#[test]
fn events_older_than_the_window_are_not_counted() {
    let mut d = detector(BRUTE);
    assert!(d
        .observe(&failure("1.2.3.4", "u1", 0), T0 + 500 * SEC)
        .is_empty());
    for i in 0..7 {
        assert!(d
            .observe(&failure("1.2.3.4", "u1", 0), T0 + i * SEC)
            .is_empty());
    }
    // Late but inside the window: counted, in time order.
    let alerts = feed(
        &mut d,
        &(0..7)
            .map(|i| (T0 + 450 * SEC + i * SEC, failure("1.2.3.4", "u1", 0)))
            .collect::<Vec<_>>(),
    );
    assert_eq!(alerts.len(), 1);
    assert_eq!(alerts[0].first_seen_ms, T0 + 450 * SEC);
    assert_eq!(alerts[0].last_seen_ms, T0 + 500 * SEC);
}

const SPRAY: &str = r#"
title: Spray
id: spray
level: high
tags: [attack.t1110.003]
correlation:
  type: value_count
  rules: [failure]
  group-by: [source_ip]
  timespan: 10m
  condition:
    field: user_id
    gte: 5
"#;

#[test]
fn value_count_counts_distinct_values() {
    let mut d = detector(SPRAY);
    // Many failures on four accounts: no spray.
    let mut events = Vec::new();
    for i in 0..20 {
        events.push((T0 + i * SEC, failure("9.9.9.9", &format!("u{}", i % 4), 0)));
    }
    assert!(feed(&mut d, &events).is_empty());
    // A fifth account: spray, counting five users.
    let alerts = d.observe(&failure("9.9.9.9", "u4", 0), T0 + 30 * SEC);
    assert_eq!(alerts.len(), 1);
    assert_eq!(alerts[0].count, 5);
    assert_eq!(alerts[0].group["source_ip"], "9.9.9.9");
}

#[test]
fn value_count_forgets_values_that_left_the_window() {
    let mut d = detector(SPRAY);
    for i in 0..4 {
        assert!(d
            .observe(&failure("9.9.9.9", &format!("u{i}"), 0), T0 + i * SEC)
            .is_empty());
    }
    // Eleven minutes later the first four have left the window.
    assert!(d
        .observe(&failure("9.9.9.9", "u9", 0), T0 + 660 * SEC)
        .is_empty());
    // u3 again, still only two distinct values in the window.
    assert!(d
        .observe(&failure("9.9.9.9", "u3", 0), T0 + 661 * SEC)
        .is_empty());
    // An event without the field is not counted.
    let mut no_user = failure("9.9.9.9", "", 0);
    no_user["user_id"] = Value::Null;
    for i in 0..10 {
        assert!(d.observe(&no_user, T0 + 662 * SEC + i).is_empty());
    }
}

const TEMPORAL: &str = r#"
title: Failure and success
id: fail-and-success
level: medium
correlation:
  type: temporal
  rules: [failure, success]
  group-by: [user_id]
  timespan: 5m
"#;

fn success(user: &str) -> Value {
    json!({"event": "login_success", "user_id": user, "tenant_id": "t1"})
}

#[test]
fn temporal_needs_every_rule_within_the_timespan() {
    let mut d = detector(TEMPORAL);
    assert!(d.observe(&success("u1"), T0).is_empty());
    // Six minutes later: the success left the window.
    assert!(d
        .observe(&failure("1.1.1.1", "u1", 0), T0 + 360 * SEC)
        .is_empty());
    // Another user's success does not count for u1.
    assert!(d.observe(&success("u2"), T0 + 361 * SEC).is_empty());
    let alerts = d.observe(&success("u1"), T0 + 362 * SEC);
    assert_eq!(alerts.len(), 1);
    assert_eq!(alerts[0].count, 2);
    assert_eq!(alerts[0].group["user_id"], "u1");
    assert_eq!(alerts[0].first_seen_ms, T0 + 360 * SEC);
}

const ORDERED: &str = r#"
title: Failure then success
id: fail-then-success
level: medium
correlation:
  type: temporal_ordered
  rules: [failure, success]
  group-by: [user_id]
  timespan: 5m
"#;

#[test]
fn temporal_ordered_needs_the_order() {
    let mut d = detector(ORDERED);
    assert!(d.observe(&success("u1"), T0).is_empty());
    assert!(d.observe(&failure("1.1.1.1", "u1", 0), T0 + SEC).is_empty());
    let alerts = d.observe(&success("u1"), T0 + 2 * SEC);
    assert_eq!(alerts.len(), 1);
    assert_eq!(alerts[0].rule_id, "fail-then-success");
}

const ALIASED: &str = r#"
title: Revoked
id: revoked
name: revoked
level: low
detection:
  s: {event: api_key_revoked}
  condition: s
---
title: Used
id: used
name: used
level: low
detection:
  s: {event: api_key_used}
  condition: s
---
title: Used after revocation
id: used-after-revocation
level: critical
correlation:
  type: temporal_ordered
  rules: [revoked, used]
  group-by: [key]
  aliases:
    key:
      revoked: detail.revoked_key_id
      used: api_key_id
  timespan: 1d
"#;

#[test]
fn aliases_give_each_rule_its_group_field() {
    let mut d = detector(ALIASED);
    let revoked = json!({"event": "api_key_revoked", "detail": {"revoked_key_id": "k1"}});
    let used = |k: &str| json!({"event": "api_key_used", "api_key_id": k});
    assert!(d.observe(&used("k1"), T0).is_empty());
    assert!(d.observe(&revoked, T0 + SEC).is_empty());
    assert!(d.observe(&used("k2"), T0 + 2 * SEC).is_empty());
    let alerts = d.observe(&used("k1"), T0 + 3 * SEC);
    assert_eq!(alerts.len(), 1);
    assert_eq!(alerts[0].group["key"], "k1");
    assert_eq!(alerts[0].level, Level::Critical);
}

const CHAINED: &str = r#"
title: Brute force
id: brute
name: brute
level: high
tags: [attack.t1110]
generate: true
correlation:
  type: event_count
  rules: [failure]
  group-by: [user_id]
  timespan: 2m
  condition: {gte: 3}
---
title: Brute force then success
id: brute-then-success
level: critical
correlation:
  type: temporal_ordered
  rules: [brute, success]
  group-by: [user_id]
  timespan: 10m
  generate: true
"#;

#[test]
fn correlations_can_reference_correlations() {
    let mut d = detector(CHAINED);
    let mut alerts = feed(
        &mut d,
        &(0..3)
            .map(|i| (T0 + i * SEC, failure("1.1.1.1", "u1", 0)))
            .collect::<Vec<_>>(),
    );
    // `generate: true` on `brute`: the failures it counts alert on their own too.
    let ids: Vec<&str> = alerts.iter().map(|a| a.rule_id.as_str()).collect();
    assert_eq!(
        ids,
        ["base-failure", "base-failure", "base-failure", "brute"]
    );
    // generate: true on the chain: the success rule alerts on its own as well.
    alerts = d.observe(&success("u1"), T0 + 60 * SEC);
    let ids: Vec<&str> = alerts.iter().map(|a| a.rule_id.as_str()).collect();
    assert_eq!(ids, ["base-success", "brute-then-success"]);
    assert_eq!(alerts[1].techniques, ["T1110"]);
}

#[test]
fn a_detection_rule_alerts_per_event_with_the_event_identity() {
    let mut d = detector("");
    let alerts = d.observe(&failure("1.1.1.1", "u1", 7), T0);
    assert_eq!(alerts.len(), 1);
    let a = &alerts[0];
    assert_eq!(a.rule_id, "base-failure");
    assert_eq!(a.count, 1);
    assert_eq!(a.group["source_ip"], "1.1.1.1");
    assert_eq!(a.group["user_id"], "u1");
    assert_eq!(a.group["tenant_id"], "t1");
    assert_eq!(a.event_ids, ["req-7"]);
    assert!(d.observe(&json!({"event": "other"}), T0).is_empty());
    assert!(d.observe(&json!("not an object"), T0).is_empty());
}

#[test]
fn groups_are_capped_and_the_oldest_evicted() {
    let limits = Limits {
        max_groups: 100,
        max_entries_per_group: 5,
    };
    let mut d = detector_with(BRUTE, limits);
    for i in 0..1_000 {
        d.observe(
            &failure(&format!("10.0.{}.{}", i / 256, i % 256), "u", 0),
            T0 + i,
        );
    }
    assert!(d.groups() <= 100, "{}", d.groups());
    // Entries per group are capped too: the count saturates, no alert at 8.
    let events: Vec<(i64, Value)> = (0..20)
        .map(|i| (T0 + 2_000 + i, failure("7.7.7.7", "u", 0)))
        .collect();
    assert!(feed(&mut d, &events).is_empty());
}

#[test]
fn evicted_groups_start_over() {
    let limits = Limits {
        max_groups: 10,
        max_entries_per_group: 100,
    };
    let mut d = detector_with(BRUTE, limits);
    for i in 0..7 {
        d.observe(&failure("1.1.1.1", "u", 0), T0 + i);
    }
    // Twenty other addresses push 1.1.1.1 (the least recently seen) out.
    for i in 0..20 {
        d.observe(&failure(&format!("2.2.2.{i}"), "u", 0), T0 + 100 + i);
    }
    assert!(d.observe(&failure("1.1.1.1", "u", 0), T0 + 200).is_empty());
}

fn load_error(files: &[(&str, &str)]) -> rampart_detection::RuleError {
    Detector::from_sources(files, Limits::default()).unwrap_err()
}

#[test]
fn load_errors_name_file_line_and_reason() {
    let e = load_error(&[(
        "bad.yml",
        "title: t\nid: x\nlevel: low\ndetection:\n  sel: {event: [a, b}\n",
    )]);
    assert_eq!(e.file, "bad.yml");
    assert_eq!(e.line, Some(5), "{e}");
    let e = load_error(&[(
        "r.yml",
        "title: t\nid: x\nlevel: low\ndetection:\n  sel:\n    event|wildcard: a\n  condition: sel\n",
    )]);
    assert_eq!(
        e.to_string(),
        "r.yml:6: `event|wildcard`: unknown modifier `wildcard`"
    );
    let e = load_error(&[
        ("base.yml", BASE),
        (
            "c.yml",
            "title: c\nid: c\nlevel: low\ncorrelation:\n  type: event_count\n  rules:\n    - failure\n    - missing\n  timespan: 1m\n  condition: {gte: 1}\n",
        ),
    ]);
    assert_eq!(e.file, "c.yml");
    assert_eq!(e.line, Some(8));
    assert!(e.reason.contains("`missing`"));
    let e = load_error(&[("base.yml", BASE), ("dup.yml", BASE)]);
    assert_eq!(e.file, "dup.yml");
    assert!(e.reason.contains("already"), "{e}");
    let cycle = "title: a\nid: a\nlevel: low\ncorrelation:\n  type: event_count\n  rules: [b]\n  timespan: 1m\n  condition: {gte: 1}\n---\ntitle: b\nid: b\nlevel: low\ncorrelation:\n  type: event_count\n  rules: [a]\n  timespan: 1m\n  condition: {gte: 1}\n";
    let e = load_error(&[("cycle.yml", cycle)]);
    assert!(e.reason.contains("cycle"), "{e}");
    let e = load_error(&[(
        "f.yml",
        "title: f\nid: f\nlevel: low\nfilter:\n  rules: [x]\n",
    )]);
    assert!(e.reason.contains("filter"));
}

#[test]
fn load_reads_a_rules_directory() {
    let dir = std::env::temp_dir().join(format!("rampart-detection-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("base.yaml"), BASE).unwrap();
    std::fs::write(dir.join("brute.yml"), BRUTE).unwrap();
    std::fs::write(dir.join("notes.txt"), "not a rule").unwrap();
    let d = Detector::load(false, Some(&dir)).unwrap();
    let ids: Vec<&str> = d.rules().map(|r| r.id.as_str()).collect();
    assert_eq!(ids, ["base-failure", "base-success", "brute"]);
    // With the built-ins as well; a directory rule may reference a built-in one.
    std::fs::remove_file(dir.join("base.yaml")).unwrap();
    std::fs::write(
        dir.join("brute.yml"),
        BRUTE.replace("[failure]", "[login_failure]"),
    )
    .unwrap();
    let d = Detector::load(true, Some(&dir)).unwrap();
    assert!(d.rules().any(|r| r.id == "brute"));
    std::fs::write(dir.join("broken.yml"), "title: [").unwrap();
    let e = Detector::load(true, Some(&dir)).unwrap_err();
    assert!(e.file.ends_with("broken.yml"), "{e}");
    assert!(e.line.is_some(), "{e}");
    std::fs::remove_dir_all(&dir).unwrap();
    let e = Detector::load(false, Some(&dir)).unwrap_err();
    assert!(e.reason.contains("cannot read the rules directory"));
}

/// The shape of the correlation spec's closing example (v2.0.2, "failed logins followed by
/// a successful login"): several documents in one file, references by `name` (one made
/// before its target is defined), a correlation chained on a correlation, and base rules
/// with no id or level of their own. Events use Windows field names, as there.
const SPEC_CHAIN: &str = r#"
title: Correlation - many failed logins, then a success
id: 6f1f4a1e-0000-4000-8000-000000000001
status: experimental
correlation:
    type: temporal_ordered
    rules:
        - many_failed_logins
        - logged_in
    group-by:
        - User
    timespan: 10m
level: high
---
title: Many failed logins
id: 6f1f4a1e-0000-4000-8000-000000000002
name: many_failed_logins
correlation:
    type: event_count
    rules:
        - failed_logon
    group-by:
        - User
    timespan: 10m
    condition:
        gte: 10
---
title: One failed login
name: failed_logon
logsource:
    product: windows
    service: security
detection:
    selection:
        EventID:
            - 529
            - 4625
    condition: selection
---
title: One successful login
name: logged_in
logsource:
    product: windows
    service: security
detection:
    selection:
        EventID:
            - 528
            - 4624
    condition: selection
"#;

#[test]
fn the_spec_example_of_a_chained_correlation_loads_and_fires() {
    let mut d = Detector::from_sources(&[("spec.yml", SPEC_CHAIN)], Limits::default())
        .unwrap_or_else(|e| panic!("{e}"));
    let failed = |user: &str| json!({"EventID": 4625, "User": user});
    let ok = |user: &str| json!({"EventID": 4624, "User": user});
    // A success first does not count: the order matters.
    assert!(d.observe(&ok("alice"), T0).is_empty());
    let mut alerts = Vec::new();
    for i in 0..12 {
        alerts.extend(d.observe(&failed("alice"), T0 + i * SEC));
        // Bob fails only nine times.
        if i < 9 {
            alerts.extend(d.observe(&failed("bob"), T0 + i * SEC));
        }
    }
    // Neither the base rules nor the inner correlation alert (generate: false).
    assert!(alerts.is_empty(), "{alerts:?}");
    assert!(d.observe(&ok("bob"), T0 + 30 * SEC).is_empty());
    let alerts = d.observe(&ok("alice"), T0 + 30 * SEC);
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    assert_eq!(alerts[0].rule_id, "6f1f4a1e-0000-4000-8000-000000000001");
    assert_eq!(alerts[0].group["User"], "alice");
    assert_eq!(alerts[0].level, Level::High);
}

#[test]
fn a_rule_that_alerts_needs_a_level() {
    let e = load_error(&[(
        "r.yml",
        "title: t\nname: n\ndetection:\n  sel: {event: x}\n  condition: sel\n",
    )]);
    // The line where the rule begins.
    assert_eq!(e.line, Some(1));
    assert!(e.reason.contains("`level` is missing"), "{e}");
}

#[test]
fn zero_limits_still_keep_one_group_and_one_entry() {
    let limits = Limits {
        max_groups: 0,
        max_entries_per_group: 0,
    };
    let once = "title: once\nid: once\nlevel: low\ncorrelation:\n  type: event_count\n  rules: [failure]\n  group-by: [source_ip]\n  timespan: 1m\n  condition: {gte: 1}\n";
    let mut d = detector_with(once, limits);
    assert_eq!(d.observe(&failure("1.1.1.1", "u", 0), T0).len(), 1);
    assert_eq!(d.observe(&failure("2.2.2.2", "u", 0), T0 + 1).len(), 1);
    assert_eq!(d.groups(), 1);
}

#[test]
fn a_detector_can_move_to_another_thread_and_be_shared() {
    fn send_sync<T: Send + Sync>() {}
    send_sync::<Detector>();
    send_sync::<Alert>();
}
