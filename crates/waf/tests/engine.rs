//! SecLang semantics the CRS depends on, checked on small rule sets.

use rampart_waf::{EngineMode, RuleSet};

fn ids(rules: &str, uri: &str, headers: &[(&str, &str)], body: &[u8]) -> (Vec<u64>, Option<u64>) {
    let rs = RuleSet::from_text(rules).expect("rules compile");
    let mut tx = rs.transaction();
    tx.process_connection("192.0.2.1", 1234, "192.0.2.2", 80);
    tx.process_uri(b"POST", uri.as_bytes(), b"HTTP/1.1");
    for (k, v) in headers {
        tx.add_request_header(k.as_bytes(), v.as_bytes());
    }
    let mut stop = tx.process_request_headers();
    if stop.is_none() {
        tx.append_request_body(body);
        stop = tx.process_request_body();
    }
    (
        tx.matched_rules().iter().map(|m| m.id).collect(),
        stop.map(|i| i.rule_id),
    )
}

const FORM: (&str, &str) = ("Content-Type", "application/x-www-form-urlencoded");

#[test]
fn chains_match_only_when_every_link_matches() {
    let rules = r#"
SecRule ARGS:a "@streq 1" "id:1,phase:2,pass,chain"
    SecRule ARGS:b "@streq 2" "t:none"
SecRule ARGS:a "@streq 1" "id:2,phase:2,pass,chain"
    SecRule ARGS:b "@streq 3"
"#;
    let (m, _) = ids(rules, "/?a=1&b=2", &[], b"");
    assert_eq!(m, vec![1]);
}

#[test]
fn skip_after_jumps_to_the_marker() {
    let rules = r#"
SecAction "id:1,phase:1,pass,nolog,skipAfter:END"
SecAction "id:2,phase:1,pass"
SecMarker END
SecAction "id:3,phase:1,pass"
SecAction "id:4,phase:1,pass,skip:1"
SecAction "id:5,phase:1,pass"
SecAction "id:6,phase:1,pass"
"#;
    let (m, _) = ids(rules, "/", &[], b"");
    assert_eq!(m, vec![1, 3, 4, 6]);
}

#[test]
fn setvar_arithmetic_macros_and_counts() {
    let rules = r#"
SecAction "id:1,phase:1,pass,setvar:tx.score=2,setvar:tx.score=+3,setvar:tx.score=-1,setvar:tx.name=%{REQUEST_METHOD}"
SecRule TX:score "@eq 4" "id:2,phase:1,pass"
SecRule TX:name "@streq POST" "id:3,phase:1,pass,setvar:!tx.name"
SecRule &TX:name "@eq 0" "id:4,phase:1,pass"
SecRule &ARGS "@eq 2" "id:5,phase:1,pass"
"#;
    let (m, _) = ids(rules, "/?x=1&y=2", &[], b"");
    assert_eq!(m, vec![1, 2, 3, 4, 5]);
}

#[test]
fn captures_exclusions_and_regex_keys() {
    let rules = r#"
SecRule ARGS "@rx ^(ab)(c)" "id:1,phase:2,pass,capture,setvar:tx.cap=%{TX.2}%{TX.1}"
SecRule TX:cap "@streq cab" "id:2,phase:2,pass"
SecRule ARGS|!ARGS:skipme "@contains evil" "id:3,phase:2,pass"
SecRule ARGS:/^re_/ "@contains bad" "id:4,phase:2,pass"
SecRule ARGS_NAMES "@rx ^re_x$" "id:5,phase:2,pass"
"#;
    let (m, _) = ids(rules, "/?q=abc&skipme=evil&re_x=bad", &[FORM], b"");
    assert_eq!(m, vec![1, 2, 4, 5]);
}

#[test]
fn ctl_removes_rules_and_targets_at_runtime() {
    let rules = r#"
SecAction "id:1,phase:1,pass,nolog,ctl:ruleRemoveById=3,ctl:ruleRemoveTargetById=4;ARGS:a,ctl:ruleRemoveByTag=gone"
SecRule ARGS "@contains x" "id:3,phase:2,pass"
SecRule ARGS "@contains x" "id:4,phase:2,pass"
SecRule ARGS "@contains x" "id:5,phase:2,pass,tag:'gone'"
"#;
    let (m, _) = ids(rules, "/?a=x", &[], b"");
    assert_eq!(m, vec![1]);
    let (m, _) = ids(rules, "/?b=x", &[], b"");
    assert_eq!(m, vec![1, 4]);
}

#[test]
fn transformations_and_multi_match() {
    let rules = r#"
SecRule ARGS "@streq <script>" "id:1,phase:2,pass,t:none,t:urlDecodeUni,t:lowercase"
SecRule ARGS "@streq %3CSCRIPT%3E" "id:2,phase:2,pass,multiMatch,t:urlDecodeUni,t:lowercase"
"#;
    let (m, _) = ids(rules, "/?a=%253CSCRIPT%253E", &[], b"");
    assert_eq!(m, vec![1, 2]);
}

#[test]
fn engine_modes_decide_interruption() {
    let rules = |mode: &str| {
        format!(
            "SecRuleEngine {mode}\nSecRule ARGS \"@detectSQLi\" \"id:10,phase:2,deny,status:406,log\"\n"
        )
    };
    let (m, stop) = ids(&rules("On"), "/?id=1'%20or%20'1'='1", &[], b"");
    assert_eq!((m, stop), (vec![10], Some(10)));
    let (m, stop) = ids(&rules("DetectionOnly"), "/?id=1'%20or%20'1'='1", &[], b"");
    assert_eq!((m, stop), (vec![10], None));
    let (m, stop) = ids(&rules("Off"), "/?id=1'%20or%20'1'='1", &[], b"");
    assert_eq!((m, stop), (vec![], None));

    let rs = RuleSet::from_text(&rules("On")).unwrap();
    let mut tx = rs.transaction();
    tx.process_uri(b"GET", b"/?id=1'%20or%20'1'='1", b"HTTP/1.1");
    tx.process_request_headers();
    let stop = tx.process_request_body().expect("interrupted");
    assert_eq!(stop.status, 406);
    assert_eq!(tx.mode(), EngineMode::On);
}

#[test]
fn default_actions_and_nolog() {
    let rules = r#"
SecDefaultAction "phase:2,log,deny,status:403"
SecRule ARGS "@contains x" "id:1,phase:2,block,nolog"
"#;
    let rs = RuleSet::from_text(rules).unwrap();
    let mut tx = rs.transaction();
    tx.process_uri(b"GET", b"/?a=x", b"HTTP/1.1");
    tx.process_request_headers();
    let stop = tx.process_request_body().expect("block inherits deny");
    assert_eq!(stop.status, 403);
    assert!(!tx.matched_rules()[0].logged);
}

#[test]
fn body_processors_feed_args() {
    let rules = r#"
SecRule ARGS_POST:json.user.name "@streq bob" "id:1,phase:2,pass"
SecRule XML:/* "@contains hello" "id:2,phase:2,pass"
SecRule FILES "@endsWith .php" "id:3,phase:2,pass"
SecRule REQBODY_ERROR "@eq 1" "id:4,phase:2,pass"
"#;
    let (m, _) = ids(
        rules,
        "/",
        &[("Content-Type", "application/json")],
        br#"{"user":{"name":"bob"}}"#,
    );
    assert_eq!(m, vec![1]);
    let (m, _) = ids(
        rules,
        "/",
        &[("Content-Type", "text/xml")],
        b"<a><b>hello</b></a>",
    );
    assert_eq!(m, vec![2]);
    let (m, _) = ids(
        rules,
        "/",
        &[("Content-Type", "application/json")],
        b"{broken",
    );
    assert_eq!(m, vec![4]);
    let body = b"--B\r\nContent-Disposition: form-data; name=\"f\"; filename=\"x.php\"\r\n\r\n<?php\r\n--B--\r\n";
    let (m, _) = ids(
        rules,
        "/",
        &[("Content-Type", "multipart/form-data; boundary=B")],
        body,
    );
    assert_eq!(m, vec![3]);
}

#[test]
fn update_target_and_remove_by_id_at_load() {
    let rules = r#"
SecRule ARGS "@contains x" "id:1,phase:2,pass"
SecRule ARGS "@contains x" "id:2,phase:2,pass"
SecRuleUpdateTargetById 1 "!ARGS:a"
SecRuleRemoveById 2
"#;
    let (m, _) = ids(rules, "/?a=x", &[], b"");
    assert!(m.is_empty());
}

#[test]
fn load_errors_name_file_line_and_reason() {
    let err = RuleSet::from_text(
        "SecAction \"id:1,phase:1,pass\"\n\nSecRule ARGS \"@nope x\" \"id:2\"\n",
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains(":3:") && err.contains("unsupported operator"),
        "{err}"
    );
    let err = RuleSet::from_text("SecRule ARGS \"@rx (\" \"id:2\"")
        .unwrap_err()
        .to_string();
    assert!(err.contains("invalid regex"), "{err}");
    let err = RuleSet::from_text("SecRule ARGS \"@rx a\" \"phase:2\"")
        .unwrap_err()
        .to_string();
    assert!(err.contains("no id"), "{err}");
}

#[test]
fn setenv_and_full_request() {
    let rules = r#"
SecAction "id:1,phase:1,pass,setenv:origin=%{REMOTE_ADDR}"
SecRule ENV:origin "@ipMatch 192.0.2.0/24" "id:2,phase:1,pass"
SecRule FULL_REQUEST "@rx ^POST /x HTTP/1\.1\r\nHost: h\r\n\r\nbody$" "id:3,phase:2,pass"
"#;
    let (m, _) = ids(rules, "/x", &[("Host", "h")], b"body");
    assert_eq!(m, vec![1, 2, 3]);
}

#[test]
fn debug_output_leaves_out_request_data() {
    let rs = RuleSet::from_text("SecAction \"id:1,phase:1,pass\"").unwrap();
    let mut tx = rs.transaction();
    tx.process_uri(b"GET", b"/?password=hunter2", b"HTTP/1.1");
    tx.add_request_header(b"Authorization", b"Bearer secret-token");
    tx.process_request_headers();
    let dbg = format!("{tx:?}");
    assert!(
        !dbg.contains("hunter2") && !dbg.contains("secret-token"),
        "{dbg}"
    );
    assert!(dbg.contains("matched_ids: [1]"), "{dbg}");
}

#[test]
fn transformed_values_are_reused_only_for_the_same_list_and_value() {
    let rules = r#"
SecRule ARGS "@streq abc" "id:1,phase:2,pass,t:lowercase"
SecRule ARGS "@streq ABC" "id:2,phase:2,pass,t:none"
SecRule ARGS "@streq abc" "id:3,phase:2,pass,t:lowercase"
SecRule ARGS "@streq 3" "id:4,phase:2,pass,t:length"
SecRule ARGS_NAMES "@streq qq" "id:5,phase:2,pass,t:lowercase"
SecRule ARGS:QQ "@streq x" "id:6,phase:2,pass,t:lowercase"
"#;
    let (m, _) = ids(rules, "/?QQ=ABC", &[FORM], b"QQ=X");
    assert_eq!(m, vec![1, 2, 3, 4, 5, 6]);
}

#[test]
fn oversized_bodies_are_cut_and_flagged() {
    let rules = r#"
SecRequestBodyLimit 8
SecRule INBOUND_DATA_ERROR "@eq 1" "id:1,phase:2,pass"
SecRule ARGS:a "@streq 123456" "id:2,phase:2,pass"
"#;
    let (m, _) = ids(rules, "/", &[FORM], b"a=123456789");
    assert_eq!(m, vec![1, 2]);
}
