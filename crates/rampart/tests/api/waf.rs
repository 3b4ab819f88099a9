//! The WAF in front of Rampart's own routes, with the OWASP Core Rule Set loaded: what is
//! blocked, what passes, what the security log and `/metrics` say, and the operator
//! commands (`waf test`, `waf check`).

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::{crs_dir, error_code, security_events, spawn_app_with};

/// `waf.crs_dir` empty: look for CRS in the standard places (the harness pins `none`).
const FIND_CRS: &[(&str, &str)] = &[("RAMPART_WAF_CRS_DIR", "")];

const SQLI: &str = "/health?id=1%27%20OR%20%271%27%3D%271";

#[tokio::test]
async fn crs_blocks_an_sql_injection_and_lets_ordinary_api_traffic_through() {
    let Some(crs) = crs_dir() else { return };
    let app = spawn_app_with(|c| c.waf.crs_dir = crs.display().to_string()).await;

    let res = app.get(SQLI, None).await;
    let request_id = res.headers()["x-request-id"].to_str().unwrap().to_string();
    assert_eq!(
        error_code(res, StatusCode::FORBIDDEN).await,
        "request_blocked"
    );
    // Ordinary traffic: a query, a JSON login, a bearer token.
    assert_eq!(
        app.get("/health?page=2&sort=name", None).await.status(),
        StatusCode::OK
    );
    let res = app
        .post(
            "/api/v1/auth/login",
            None,
            &json!({"email": "siti@example.id", "password": "correct horse battery"}),
        )
        .await;
    assert_eq!(
        res.status(),
        StatusCode::UNAUTHORIZED,
        "a login reaches its handler"
    );
    let res = app.get("/api/v1/users/me", Some("not-a-token")).await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);

    let events = security_events(app.dir.path(), "waf_blocked").await;
    let e = events
        .iter()
        .find(|e| e["request_id"] == request_id.as_str())
        .expect("the block is in the security log under its request id");
    assert_eq!(e["detail"]["blocking_rule"], 949110);
    assert!(e["detail"]["inbound_anomaly_score"].as_i64().unwrap() >= 5);
    let ids: Vec<u64> = e["detail"]["rules"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_u64().unwrap())
        .collect();
    assert!(
        ids.iter().any(|id| (942000..943000).contains(id)),
        "{ids:?}"
    );
    assert_eq!(e["source_ip"], "127.0.0.1");
    let log = std::fs::read_to_string(app.dir.path().join("logs/security.log")).unwrap();
    assert!(
        !log.contains("OR '1'='1"),
        "matched data stays out of the log"
    );

    let metrics = app.get("/metrics", None).await.text().await.unwrap();
    assert!(
        metrics.contains(r#"waf_rule_matches_total{rule_id="949110"} 1"#),
        "{metrics}"
    );
    assert!(metrics.contains(r#"waf_requests_total{verdict="blocked"}"#));
}

#[tokio::test]
async fn detection_mode_logs_the_attack_and_serves_it() {
    let Some(crs) = crs_dir() else { return };
    let app = spawn_app_with(|c| {
        c.waf.crs_dir = crs.display().to_string();
        c.waf.mode = rampart_config::WafModeSetting::Detection;
    })
    .await;
    assert_eq!(app.get(SQLI, None).await.status(), StatusCode::OK);
    let events = security_events(app.dir.path(), "waf_detected").await;
    assert!(
        events[0]["detail"]["inbound_anomaly_score"]
            .as_i64()
            .unwrap()
            >= 5
    );
    assert_eq!(events[0]["detail"]["blocking_rule"], Value::Null);
}

#[tokio::test]
async fn the_paranoia_level_is_configurable() {
    let Some(crs) = crs_dir() else { return };
    // A numeric Host (920350, 3 points) counts at every level; no User-Agent (920320,
    // 2 points; reqwest sends none) only from paranoia level 2, where the two reach
    // the default threshold of 5.
    let at = |pl: u8| {
        let crs = crs.display().to_string();
        move |c: &mut rampart_config::Config| {
            c.waf.crs_dir = crs;
            c.waf.paranoia_level = pl;
        }
    };
    for (pl, expected) in [(1, StatusCode::OK), (2, StatusCode::FORBIDDEN)] {
        let app = spawn_app_with(at(pl)).await;
        let res = app.get("/health", None).await;
        let status = res.status();
        let body = res.text().await.unwrap();
        assert_eq!(status, expected, "paranoia level {pl}: {body}");
    }
    let app = spawn_app_with(at(2)).await;
    app.get("/health", None).await;
    let events = security_events(app.dir.path(), "waf_blocked").await;
    assert!(
        events[0]["detail"]["rules"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r["id"] == 920320 || r["id"] == 920350)
            .count()
            == 2,
        "{events:?}"
    );
}

#[tokio::test]
async fn waf_test_runs_a_go_ftw_suite_and_waf_check_names_a_broken_rule_file() {
    let Some(crs) = crs_dir() else { return };
    let app = spawn_app_with(|_| {}).await;
    let tests = crs.join("tests/regression/tests/REQUEST-911-METHOD-ENFORCEMENT");
    let (ok, out, err) = app
        .cli(&[
            "waf",
            "test",
            "--rules",
            crs.to_str().unwrap(),
            "--tests",
            tests.to_str().unwrap(),
        ])
        .await;
    assert!(ok, "{out}{err}");
    let last = out.lines().last().unwrap();
    assert!(
        last.ends_with("passed, 0 failed, 0 skipped") && !last.starts_with("0 "),
        "{out}"
    );

    let broken = app.dir.path().join("site.conf");
    std::fs::write(
        &broken,
        "# site rules\nSecRule ARGS \"@rx a\" \"id:20001,phase:2,deny\"\nSecRule ARGS \"@nosuchop x\" \"id:20002,phase:2,deny\"\n",
    )
    .unwrap();
    let extra = broken.to_str().unwrap();
    let (ok, out, err) = app
        .cli_env(&["waf", "check"], &[("RAMPART_WAF_EXTRA_RULES", extra)])
        .await;
    assert!(!ok, "{out}");
    assert!(
        err.contains("site.conf:3") && err.contains("nosuchop"),
        "{err}"
    );
    let (ok, out, err) = app
        .cli_env(
            &["waf", "check"],
            &[("RAMPART_WAF_CRS_DIR", crs.to_str().unwrap())],
        )
        .await;
    assert!(ok, "{err}");
    let mut lines = out.lines();
    assert!(
        lines.next().is_some_and(|l| l.ends_with("rules loaded")),
        "{out}"
    );
    assert!(
        lines
            .next()
            .is_some_and(|l| l.starts_with("OWASP CRS 4.28.0 from ")),
        "{out}"
    );
}

/// With `waf.crs_dir` unset, a release in the data directory's `crs/` is loaded and
/// named; with none there (and none installed system-wide, as on the test machines) only
/// Rampart's own rules run, and `waf check` says so.
#[tokio::test]
async fn waf_check_finds_crs_in_the_data_dir_and_says_when_there_is_none() {
    let Some(crs) = crs_dir() else { return };
    let app = spawn_app_with(|_| {}).await;
    let system_wide = ["/etc/rampart/crs", "/usr/share/modsecurity-crs"];
    if system_wide
        .iter()
        .all(|d| !std::path::Path::new(d).exists())
    {
        let (ok, out, err) = app.cli_env(&["waf", "check"], FIND_CRS).await;
        assert!(ok, "{err}");
        assert!(
            out.contains("no OWASP CRS: only Rampart's own rules run"),
            "{out}"
        );
    }
    std::os::unix::fs::symlink(&crs, app.dir.path().join("crs")).unwrap();
    let (ok, out, err) = app.cli_env(&["waf", "check"], FIND_CRS).await;
    assert!(ok, "{err}");
    let expected = format!(
        "OWASP CRS 4.28.0 from {}",
        app.dir.path().join("crs").display()
    );
    assert!(out.contains(&expected), "{out}");
    let (ok, out, err) = app
        .cli_env(&["waf", "check"], &[("RAMPART_WAF_CRS_DIR", "none")])
        .await;
    assert!(ok, "{err}");
    assert!(out.contains("only Rampart's own rules run"), "{out}");
}

/// CRS allows only GET HEAD POST OPTIONS by default (911100). In front of Rampart's own API
/// the methods its routes use are declared, so an operator can revoke a leaked key and
/// change fraud rules with CRS loaded; the standalone proxy keeps CRS's own default.
#[tokio::test]
async fn with_crs_the_api_takes_put_patch_and_delete_and_the_proxy_keeps_crs_defaults() {
    let Some(crs) = crs_dir() else { return };
    let app = spawn_app_with(|c| c.waf.crs_dir = crs.display().to_string()).await;
    app.create_platform_admin("root@example.id").await;
    let (root, _) = app.tokens("root@example.id").await;
    let (_, admin) = crate::vault::merchant(&app, &root, "crsshop").await;
    let res = app
        .post(
            "/api/v1/api-keys",
            Some(&admin),
            &json!({"name": "leaked", "scopes": ["payments:read"]}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::CREATED);
    let key: Value = res.json().await.unwrap();
    let res = app
        .client
        .delete(app.url(&format!("/api/v1/api-keys/{}", key["id"].as_str().unwrap())))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap();
    assert!(res.status().is_success(), "revoked: {}", res.status());
    let res = app
        .client
        .put(app.url("/api/v1/fraud/rules"))
        .bearer_auth(&admin)
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK, "fraud rules changed");

    // The same CRS release behind `rampart edge`: DELETE is CRS's to refuse.
    let proxy = crate::proxy::spawn_proxy(&app.base, |c| {
        c.waf.crs_dir = crs.display().to_string();
        c.waf.inspect_responses = false;
    })
    .await;
    let res = app
        .client
        .delete(format!("{}/api/v1/api-keys/anything", proxy.base))
        .send()
        .await
        .unwrap();
    assert_eq!(
        error_code(res, StatusCode::FORBIDDEN).await,
        "request_blocked"
    );
}
