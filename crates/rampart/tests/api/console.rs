//! The web console over HTTP, as a browser without JavaScript meets it: sign-in, the
//! session cookie, CSRF, the page headers, escaping, and the cross-tenant sweep of every
//! console page. (The browser tests in `tests/browser/` drive the same pages in Chromium.)

use reqwest::header::{HeaderMap, LOCATION, SET_COOKIE};
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::{spawn_app, spawn_app_with, TestApp, STRONG_PASSWORD};
use crate::payments::{card_payment, created, pay};
use crate::vault::{key, merchant};

/// A browser: cookies kept by hand (name → value), no redirects followed.
struct Browser<'a> {
    app: &'a TestApp,
    client: reqwest::Client,
    cookies: std::collections::BTreeMap<String, String>,
}

struct Page {
    status: StatusCode,
    headers: HeaderMap,
    body: String,
}

impl Page {
    /// The value of the first `_csrf` hidden field.
    fn csrf(&self) -> String {
        let at = self
            .body
            .find("name=\"_csrf\" value=\"")
            .expect("a CSRF field");
        let rest = &self.body[at + "name=\"_csrf\" value=\"".len()..];
        rest[..rest.find('"').unwrap()].to_string()
    }

    fn location(&self) -> &str {
        self.headers
            .get(LOCATION)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }
}

impl<'a> Browser<'a> {
    fn new(app: &'a TestApp) -> Browser<'a> {
        Browser {
            app,
            client: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
            cookies: Default::default(),
        }
    }

    fn cookie_header(&self) -> String {
        self.cookies
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    async fn keep(&mut self, res: reqwest::Response) -> Page {
        for c in res.headers().get_all(SET_COOKIE) {
            let c = c.to_str().unwrap();
            let pair = c.split(';').next().unwrap();
            let (k, v) = pair.split_once('=').unwrap();
            if c.contains("Max-Age=0") {
                self.cookies.remove(k);
            } else {
                self.cookies.insert(k.to_string(), v.to_string());
            }
        }
        Page {
            status: res.status(),
            headers: res.headers().clone(),
            body: res.text().await.unwrap(),
        }
    }

    async fn get(&mut self, path: &str) -> Page {
        let res = self
            .client
            .get(self.app.url(path))
            .header("cookie", self.cookie_header())
            .send()
            .await
            .unwrap();
        self.keep(res).await
    }

    async fn post(&mut self, path: &str, form: &[(&str, &str)]) -> Page {
        let res = self
            .client
            .post(self.app.url(path))
            .header("cookie", self.cookie_header())
            .form(form)
            .send()
            .await
            .unwrap();
        self.keep(res).await
    }

    /// Signs in with the test password (no MFA enrolled).
    async fn sign_in(&mut self, email: &str) {
        let login = self.get("/console/login").await;
        assert_eq!(login.status, StatusCode::OK);
        let csrf = login.csrf();
        let done = self
            .post(
                "/console/login",
                &[
                    ("_csrf", &csrf),
                    ("email", email),
                    ("password", STRONG_PASSWORD),
                ],
            )
            .await;
        assert_eq!(done.status, StatusCode::SEE_OTHER, "{}", done.body);
        assert_eq!(done.location(), "/console/");
    }
}

#[tokio::test]
async fn sign_in_sets_a_strict_cookie_and_every_form_needs_its_csrf_token() {
    let app = spawn_app().await;
    app.create_platform_admin("root@example.id").await;
    let mut b = Browser::new(&app);

    // Not signed in: to the sign-in page.
    let home = b.get("/console/").await;
    assert_eq!(home.status, StatusCode::SEE_OTHER);
    assert_eq!(home.location(), "/console/login");

    let login = b.get("/console/login").await;
    let csp = login.headers["content-security-policy"].to_str().unwrap();
    assert_eq!(
        csp,
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
         connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    );
    assert_eq!(login.headers["cache-control"], "no-store");
    assert_eq!(login.headers["x-content-type-options"], "nosniff");
    assert!(!csp.contains("unsafe"));
    let pre = login.headers[SET_COOKIE].to_str().unwrap();
    assert!(
        pre.starts_with("rampart_pre=")
            && pre.contains("HttpOnly")
            && pre.contains("SameSite=Strict"),
        "{pre}"
    );

    // A sign-in without the token, or with another browser's, is refused before the
    // password is looked at.
    let no_token = b
        .post(
            "/console/login",
            &[("email", "root@example.id"), ("password", STRONG_PASSWORD)],
        )
        .await;
    assert_eq!(no_token.status, StatusCode::FORBIDDEN);
    let wrong = b
        .post(
            "/console/login",
            &[
                ("_csrf", &"0".repeat(64)),
                ("email", "root@example.id"),
                ("password", STRONG_PASSWORD),
            ],
        )
        .await;
    assert_eq!(wrong.status, StatusCode::FORBIDDEN);

    // A wrong password shows the API's message on the form.
    let csrf = login.csrf();
    let bad = b
        .post(
            "/console/login",
            &[
                ("_csrf", &csrf),
                ("email", "root@example.id"),
                ("password", "not the password at all"),
            ],
        )
        .await;
    assert_eq!(bad.status, StatusCode::UNAUTHORIZED);
    assert!(bad.body.contains("e-mail or password is incorrect"));

    b.sign_in("root@example.id").await;
    let session = b
        .cookies
        .get("rampart_console")
        .cloned()
        .expect("a session cookie");
    assert_eq!(session.len(), 43, "a 256-bit secret");
    let home = b.get("/console/").await;
    assert_eq!(home.status, StatusCode::OK);
    assert!(home.body.contains("root@example.id"));
    // The token is nowhere in the page or a URL; only its CSRF derivative is.
    assert!(!home.body.contains(&session));

    // A cross-site form post is refused even with the right token (Origin check)...
    let csrf = home.csrf();
    let res = b
        .client
        .post(app.url("/console/tenants"))
        .header("cookie", b.cookie_header())
        .header("origin", "https://evil.example")
        .form(&[("_csrf", csrf.as_str()), ("name", "x"), ("kind", "lpk")])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    // ...and so is one without the token: nothing is created.
    let res = b
        .post("/console/tenants", &[("name", "Sneaky"), ("kind", "lpk")])
        .await;
    assert_eq!(res.status, StatusCode::FORBIDDEN);
    let tenants = b.get("/console/tenants").await;
    assert!(!tenants.body.contains("Sneaky"));
    // With it, the tenant is created, and a refused field is named next to it.
    let made = b
        .post(
            "/console/tenants",
            &[("_csrf", &csrf), ("name", "LPK Maju"), ("kind", "lpk")],
        )
        .await;
    assert_eq!(made.status, StatusCode::OK, "{}", made.body);
    assert!(made.body.contains("LPK Maju"));
    let refused = b
        .post(
            "/console/tenants",
            &[("_csrf", &csrf), ("name", "X"), ("kind", "castle")],
        )
        .await;
    assert_eq!(refused.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        refused.body.contains("class=\"field-error\""),
        "{}",
        refused.body
    );

    // Logout ends the identity session too: the old cookie no longer works.
    let out = b.post("/console/logout", &[("_csrf", &csrf)]).await;
    assert_eq!(out.status, StatusCode::SEE_OTHER);
    b.cookies.insert("rampart_console".into(), session);
    let after = b.get("/console/").await;
    assert_eq!(after.status, StatusCode::SEE_OTHER);
    assert!(after.location().starts_with("/console/login"));
}

#[tokio::test]
async fn a_role_change_or_a_disabled_user_ends_the_browser_session_at_once() {
    let app = spawn_app().await;
    app.create_platform_admin("root@example.id").await;
    let root = app.tokens("root@example.id").await.0;
    let (tenant, admin) = merchant(&app, &root, "toko").await;
    let res = app
        .post(
            &format!("/api/v1/tenants/{tenant}/users"),
            Some(&root),
            &json!({"email": "kasir@toko.example", "password": STRONG_PASSWORD, "role": "auditor"}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::CREATED);
    let user_id = res.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let mut b = Browser::new(&app);
    b.sign_in("kasir@toko.example").await;
    assert_eq!(b.get("/console/audit").await.status, StatusCode::OK);

    let res = app
        .client
        .patch(app.url(&format!("/api/v1/tenants/{tenant}/users/{user_id}")))
        .bearer_auth(&admin)
        .json(&json!({"role": "member"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let after = b.get("/console/audit").await;
    assert_eq!(after.status, StatusCode::SEE_OTHER);
    assert_eq!(after.location(), "/console/login?ended=1");

    // Signed in again as a member: the audit log is not theirs to read.
    b.sign_in("kasir@toko.example").await;
    assert_eq!(b.get("/console/audit").await.status, StatusCode::FORBIDDEN);
    let res = app
        .client
        .patch(app.url(&format!("/api/v1/tenants/{tenant}/users/{user_id}")))
        .bearer_auth(&admin)
        .json(&json!({"status": "disabled"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(b.get("/console/").await.status, StatusCode::SEE_OTHER);
}

#[tokio::test]
async fn an_idle_session_ends_after_its_timeout() {
    let app = spawn_app().await;
    app.create_platform_admin("root@example.id").await;
    let mut b = Browser::new(&app);
    b.sign_in("root@example.id").await;
    assert_eq!(b.get("/console/").await.status, StatusCode::OK);
    // Thirty-one minutes of silence, as the row records it.
    let pushed = app
        .execute_sql(
            "UPDATE console_sessions SET last_seen_at = last_seen_at - 1860000, \
             created_at = created_at - 1860000",
        )
        .await;
    assert_eq!(pushed, 1);
    let after = b.get("/console/").await;
    assert_eq!(after.status, StatusCode::SEE_OTHER);
    assert_eq!(after.location(), "/console/login?ended=1");

    // Past the absolute expiry, the nightly purge (`jobs.purge`) deletes the rows.
    let mut c = Browser::new(&app);
    c.sign_in("root@example.id").await;
    app.execute_sql("UPDATE console_sessions SET expires_at = 0")
        .await;
    assert!(app.store.purge_console_sessions().await.unwrap() >= 1);
    let left: Vec<(i64,)> = app
        .query_rows("SELECT COUNT(*) FROM console_sessions")
        .await;
    assert_eq!(left[0].0, 0);
    assert_eq!(c.get("/console/").await.status, StatusCode::SEE_OTHER);
}

#[tokio::test]
async fn stored_markup_is_shown_as_text_on_every_page_that_lists_it() {
    // Without the CRS even in the run that puts it in front of every app: it would stop
    // these payloads at the door, and this test is about what the pages do with markup
    // that got in.
    let app = spawn_app_with(|c| c.waf.crs_dir = "none".into()).await;
    app.create_platform_admin("root@example.id").await;
    let root = app.tokens("root@example.id").await.0;
    let xss = "<img src=x onerror=alert(1)>\"'<script>alert(2)</script>";
    let (tenant, admin) = merchant(&app, &root, "xss").await;
    let res = app
        .post(
            "/api/v1/tenants",
            Some(&root),
            &json!({"name": xss, "kind": "lpk"}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::CREATED);
    let res = app
        .post(
            &format!("/api/v1/tenants/{tenant}/users"),
            Some(&root),
            &json!({"email": "kasir@xss.example", "name": xss, "password": STRONG_PASSWORD, "role": "member"}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::CREATED);
    let api_key = key(&app, &admin, &["payments:write", "payments:read"]).await;
    let mut body = card_payment("4242424242424242", 5000, "198.51.100.7");
    body["description"] = json!(xss);
    let payment = created(pay(&app, &api_key, None, &body).await).await;

    let mut b = Browser::new(&app);
    b.sign_in("root@example.id").await;
    let tenants = b.get("/console/tenants").await;
    let mut a = Browser::new(&app);
    a.sign_in("admin@xss.example").await;
    let users = a.get(&format!("/console/users?tenant={tenant}")).await;
    let list = a.get("/console/payments").await;
    let detail = a
        .get(&format!(
            "/console/payments/{}",
            payment["id"].as_str().unwrap()
        ))
        .await;
    // A webhook URL carrying markup: the API keeps it only percent-encoded (or refuses
    // it); either way the page shows no markup.
    let res = app
        .post(
            "/api/v1/webhooks/endpoints",
            Some(&admin),
            &json!({"url": format!("https://hooks.example/in?q={xss}"), "events": ["payment.captured"]}),
        )
        .await;
    let kept = res.status() == StatusCode::CREATED;
    assert!(
        kept || res.status() == StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        res.status()
    );
    let hooks = a.get("/console/webhooks").await;
    assert_eq!(hooks.status, StatusCode::OK);
    if kept {
        assert!(hooks.body.contains("hooks.example/in?q="), "{}", hooks.body);
    }
    for page in [&tenants, &users, &list, &detail, &hooks] {
        assert!(!page.body.contains("<img src=x"), "{}", page.body);
        assert!(!page.body.contains("<script>alert"), "{}", page.body);
    }
    for page in [&tenants, &users, &list, &detail] {
        assert_eq!(page.status, StatusCode::OK, "{}", page.body);
        assert!(!page.body.contains("<img src=x"), "{}", page.body);
        assert!(!page.body.contains("<script>alert"), "{}", page.body);
        assert!(
            page.body.contains("&lt;img src=x onerror=alert(1)&gt;"),
            "{}",
            page.body
        );
    }
}

/// Every object id of a tenant that a console page could show.
async fn ids_of(app: &TestApp, admin: &str, api_key: &str) -> Vec<String> {
    let mut ids = Vec::new();
    for (path, field) in [
        ("/api/v1/payments", "/data"),
        ("/api/v1/api-keys", ""),
        ("/api/v1/audit-events", "/items"),
    ] {
        let token = if path == "/api/v1/payments" {
            api_key
        } else {
            admin
        };
        let v: Value = app.get(path, Some(token)).await.json().await.unwrap();
        let list = if field.is_empty() {
            &v
        } else {
            v.pointer(field).unwrap()
        };
        for item in list.as_array().unwrap() {
            ids.push(item["id"].as_str().unwrap().to_string());
        }
    }
    ids
}

#[tokio::test]
async fn a_tenant_sees_none_of_another_tenants_objects_on_any_console_page() {
    let app = spawn_app().await;
    app.create_platform_admin("root@example.id").await;
    let root = app.tokens("root@example.id").await.0;
    let mut tenants = Vec::new();
    for name in ["alpha", "beta"] {
        let (tenant, admin) = merchant(&app, &root, name).await;
        let api_key = key(
            &app,
            &admin,
            &["payments:write", "payments:read", "payments:refund"],
        )
        .await;
        let p = created(
            pay(
                &app,
                &api_key,
                None,
                &card_payment("4242424242424242", 7000, "198.51.100.9"),
            )
            .await,
        )
        .await;
        tenants.push((
            tenant,
            admin,
            api_key,
            p["id"].as_str().unwrap().to_string(),
        ));
    }
    let (alpha, beta) = (&tenants[0], &tenants[1]);
    let beta_ids = ids_of(&app, &beta.1, &beta.2).await;
    assert!(beta_ids.len() >= 3);

    app.create_user(
        &alpha.0,
        "member@alpha.example",
        rampart_store::Role::Member,
    )
    .await;
    let mut paths: Vec<String> = rampart_console::page_paths()
        .into_iter()
        .chain(rampart_payments::console::PAGE_PATHS.iter().copied())
        .map(String::from)
        .collect();
    // Each `{id}` page with alpha's own object, and with beta's (which must be 404).
    let own: Vec<String> = paths
        .iter()
        .filter(|p| p.contains("{id}"))
        .map(|p| p.replace("{id}", &alpha.3))
        .collect();
    let foreign: Vec<String> = paths
        .iter()
        .filter(|p| p.contains("{id}"))
        .map(|p| p.replace("{id}", &beta.3))
        .collect();
    paths.retain(|p| !p.contains("{id}"));
    paths.extend(own);
    // Query strings that name the other tenant.
    paths.push(format!("/console/users?tenant={}", beta.0));
    paths.push(format!("/console/audit?target_id={}", beta.3));
    // The tenant's admin and a member each walk every page; to both, beta's objects do not
    // exist (404), whether or not they may read alpha's of the kind.
    for (email, least) in [("admin@alpha.example", 8), ("member@alpha.example", 2)] {
        let mut b = Browser::new(&app);
        b.sign_in(email).await;
        let walked = Walk {
            paths: &paths,
            foreign: &foreign,
            beta_ids: &beta_ids,
            beta_tenant: &beta.0,
            least,
        };
        walked.run(&mut b).await;
    }
}

/// One signed-in user's walk of the console for the cross-tenant sweep.
struct Walk<'a> {
    /// Pages to get: 200, 403 or 404, never showing another tenant's object.
    paths: &'a [String],
    /// The other tenant's objects' pages: 404.
    foreign: &'a [String],
    beta_ids: &'a [String],
    beta_tenant: &'a str,
    /// At least this many pages render (200).
    least: usize,
}

impl Walk<'_> {
    async fn run(&self, b: &mut Browser<'_>) {
        let Walk {
            paths,
            foreign,
            beta_ids,
            beta_tenant,
            least,
        } = *self;
        let mut seen = 0;
        for path in paths {
            let page = b.get(path).await;
            assert!(
                matches!(
                    page.status,
                    StatusCode::OK | StatusCode::FORBIDDEN | StatusCode::NOT_FOUND
                ),
                "{path}: {}",
                page.status
            );
            seen += usize::from(page.status == StatusCode::OK);
            // An id the URL itself names comes back in the filter field; nothing else may.
            for id in beta_ids.iter().filter(|id| !path.contains(id.as_str())) {
                assert!(!page.body.contains(id.as_str()), "{path} shows beta's {id}");
            }
            if !path.contains(beta_tenant) {
                assert!(
                    !page.body.contains(beta_tenant),
                    "{path} names beta's tenant"
                );
            }
        }
        assert!(seen >= least, "pages that render ({seen})");
        for path in foreign {
            let page = b.get(path).await;
            assert_eq!(page.status, StatusCode::NOT_FOUND, "{path}");
            for id in beta_ids {
                assert!(!page.body.contains(id.as_str()), "{path} shows beta's {id}");
            }
        }
    }
}

#[tokio::test]
async fn a_refund_through_the_console_is_the_apis_refund() {
    let app = spawn_app().await;
    app.create_platform_admin("root@example.id").await;
    let root = app.tokens("root@example.id").await.0;
    let (_, admin) = merchant(&app, &root, "kedai").await;
    let api_key = key(&app, &admin, &["payments:write", "payments:read"]).await;
    let mut body = card_payment("4242424242424242", 9000, "198.51.100.10");
    body["capture"] = json!(true);
    let p = created(pay(&app, &api_key, None, &body).await).await;
    let id = p["id"].as_str().unwrap();

    let mut b = Browser::new(&app);
    b.sign_in("admin@kedai.example").await;
    let detail = b.get(&format!("/console/payments/{id}")).await;
    assert_eq!(detail.status, StatusCode::OK);
    let csrf = detail.csrf();
    let status = p["status"].as_str().unwrap();
    if status != "captured" {
        let cap = b
            .post(
                &format!("/console/payments/{id}/capture"),
                &[("_csrf", &csrf)],
            )
            .await;
        assert_eq!(cap.status, StatusCode::SEE_OTHER, "{}", cap.body);
    }
    // Too much: the API's reason, next to the field.
    let over = b
        .post(
            &format!("/console/payments/{id}/refund"),
            &[("_csrf", &csrf), ("amount", "9001")],
        )
        .await;
    assert!(over.status.is_client_error(), "{}", over.status);
    let done = b
        .post(
            &format!("/console/payments/{id}/refund"),
            &[("_csrf", &csrf), ("amount", "4000")],
        )
        .await;
    assert_eq!(done.status, StatusCode::SEE_OTHER, "{}", done.body);
    let v: Value = app
        .get(&format!("/api/v1/payments/{id}"), Some(&api_key))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(v["refunded_amount"], 4000);
    assert_eq!(v["status"], "partially_refunded");
    // The detail page shows the history from the audit log, with the refund in it.
    let detail = b.get(&format!("/console/payments/{id}")).await;
    assert!(detail.body.contains("payment.refund"), "{}", detail.body);
}

#[tokio::test]
async fn a_password_change_needs_the_old_one_and_ends_the_other_sessions() {
    let app = spawn_app().await;
    app.create_platform_admin("root@example.id").await;
    let (other, _) = app.tokens("root@example.id").await;
    let mut b = Browser::new(&app);
    b.sign_in("root@example.id").await;
    let account = b.get("/console/account").await;
    let csrf = account.csrf();
    let new = "quiet harbour lantern meadow";

    let wrong = b
        .post(
            "/console/account/password",
            &[
                ("_csrf", &csrf),
                ("current_password", "not it at all, no"),
                ("new_password", new),
            ],
        )
        .await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    assert!(wrong.body.contains("e-mail or password is incorrect"));
    let weak = b
        .post(
            "/console/account/password",
            &[
                ("_csrf", &csrf),
                ("current_password", STRONG_PASSWORD),
                ("new_password", "password"),
            ],
        )
        .await;
    assert_eq!(weak.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(weak.body.contains("class=\"field-error\""), "{}", weak.body);

    let done = b
        .post(
            "/console/account/password",
            &[
                ("_csrf", &csrf),
                ("current_password", STRONG_PASSWORD),
                ("new_password", new),
            ],
        )
        .await;
    assert_eq!(done.status, StatusCode::SEE_OTHER, "{}", done.body);
    // This browser stays signed in; the other session (an API token) has ended.
    assert_eq!(b.get("/console/account").await.status, StatusCode::OK);
    let res = app.get("/api/v1/users/me", Some(&other)).await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        app.login("root@example.id", new).await.status(),
        StatusCode::OK
    );
    assert_eq!(
        app.login("root@example.id", STRONG_PASSWORD).await.status(),
        StatusCode::UNAUTHORIZED
    );
    let notice = app.mail_file_to("root@example.id", "").await;
    assert!(!notice.contains(new), "the new password is never mailed");
}

#[tokio::test]
async fn operations_pages_show_keys_backups_and_dead_jobs_and_retry_one() {
    let app = spawn_app().await;
    app.create_platform_admin("root@example.id").await;
    let root = app.tokens("root@example.id").await.0;
    let (_, _admin) = merchant(&app, &root, "ops").await;
    let (ok, backup, err) = app.cli(&["backup", "create"]).await;
    assert!(ok, "{err}");
    let (ok, _, err) = app.cli(&["backup", "drill"]).await;
    assert!(ok, "{err}");
    let now = rampart_store::now_ms();
    app.execute_sql(&format!(
        "INSERT INTO jobs (id, queue, kind, payload, priority, run_at, attempts, \
         max_attempts, state, last_error, created_at, updated_at) VALUES \
         ('job_console_dead', 'ops-test', 'partner.sync', '{{}}', 0, {now}, 5, 5, 'dead', \
         'partner answered <b>503</b>', {now}, {now})"
    ))
    .await;

    let mut b = Browser::new(&app);
    b.sign_in("root@example.id").await;
    let home = b.get("/console/").await;
    assert!(
        home.body.contains("href=\"/console/ops/keys\""),
        "nav links operations"
    );
    let keys = b.get("/console/ops/keys").await;
    assert_eq!(keys.status, StatusCode::OK);
    assert!(keys.body.contains("access-token"), "{}", keys.body);
    let backups = b.get("/console/ops/backups").await;
    assert_eq!(backups.status, StatusCode::OK);
    assert!(backups.body.contains(backup.trim()), "{}", backups.body);
    assert!(
        backups.body.contains("id=\"drill-rto\""),
        "{}",
        backups.body
    );

    let jobs = b.get("/console/ops/jobs").await;
    assert_eq!(jobs.status, StatusCode::OK);
    assert!(
        jobs.body.contains("job_console_dead"),
        "dead letters by default"
    );
    assert!(
        jobs.body
            .contains("partner answered &lt;b&gt;503&lt;/b&gt;"),
        "the error is text: {}",
        jobs.body
    );
    let csrf = jobs.csrf();
    let done = b
        .post(
            "/console/ops/jobs/job_console_dead/retry",
            &[("_csrf", csrf.as_str())],
        )
        .await;
    assert_eq!(done.status, StatusCode::SEE_OTHER, "{}", done.body);
    let after = b.get(done.location()).await;
    assert!(!after.body.contains("job_console_dead"), "no longer dead");
    let queued = b.get("/console/ops/jobs?state=queued&queue=ops-test").await;
    assert!(queued.body.contains("job_console_dead"), "{}", queued.body);
    // Retrying it again: the API's 404, shown on the page.
    let again = b
        .post(
            "/console/ops/jobs/job_console_dead/retry",
            &[("_csrf", csrf.as_str())],
        )
        .await;
    assert_eq!(again.status, StatusCode::NOT_FOUND);
    assert!(again.body.contains("no dead job"), "{}", again.body);

    // A tenant admin has no operations: no link, and the pages refuse.
    let mut t = Browser::new(&app);
    t.sign_in("admin@ops.example").await;
    let home = t.get("/console/").await;
    assert!(!home.body.contains("/console/ops/"), "{}", home.body);
    for path in [
        "/console/ops/keys",
        "/console/ops/backups",
        "/console/ops/jobs",
    ] {
        assert_eq!(t.get(path).await.status, StatusCode::FORBIDDEN, "{path}");
    }
}

#[tokio::test]
async fn the_alerts_page_lists_the_tenants_alerts_and_acknowledges_one() {
    let app = spawn_app().await;
    app.create_platform_admin("root@example.id").await;
    let root = app.tokens("root@example.id").await.0;
    let (tenant, _admin) = merchant(&app, &root, "alerted").await;
    let (other, _) = merchant(&app, &root, "quiet").await;
    for (t, rule) in [
        (&tenant, "rampart-password-spraying"),
        (&other, "rampart-other"),
    ] {
        app.stage_alert(t, rule, "Password <b>spraying</b> from one address")
            .await;
    }
    let mut b = Browser::new(&app);
    b.sign_in("admin@alerted.example").await;
    let page = b.get("/console/alerts").await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    assert!(
        page.body.contains("rampart-password-spraying"),
        "{}",
        page.body
    );
    assert!(page.body.contains("203.0.113.9"));
    assert!(page.body.contains("&lt;b&gt;spraying"), "the title is text");
    assert!(
        !page.body.contains("rampart-other"),
        "another tenant's alert"
    );
    let at = page.body.find("/acknowledge").expect("an acknowledge form");
    let action_start = page.body[..at].rfind("action=\"").unwrap() + "action=\"".len();
    let action = page.body[action_start..at + "/acknowledge".len()].to_string();
    let done = b.post(&action, &[("_csrf", page.csrf().as_str())]).await;
    assert_eq!(done.status, StatusCode::SEE_OTHER, "{}", done.body);
    let open = b.get("/console/alerts").await;
    assert!(
        !open.body.contains("rampart-password-spraying"),
        "no longer open"
    );
    let acked = b.get("/console/alerts?status=acknowledged").await;
    assert!(acked.body.contains("rampart-password-spraying"));

    // Snooze it for an hour: it shows under snoozed.
    let snooze = action.replace("/acknowledge", "/snooze");
    let done = b
        .post(&snooze, &[("_csrf", acked.csrf().as_str()), ("hours", "1")])
        .await;
    assert_eq!(done.status, StatusCode::SEE_OTHER, "{}", done.body);
    let snoozed = b.get("/console/alerts?status=snoozed").await;
    assert!(snoozed.body.contains("rampart-password-spraying"));
    // Suppress its rule and group with a reason: listed with a lift button.
    let suppress = action.replace("/acknowledge", "/suppress");
    let refused = b
        .post(
            &suppress,
            &[
                ("_csrf", snoozed.csrf().as_str()),
                ("days", "7"),
                ("reason", ""),
            ],
        )
        .await;
    assert_eq!(
        refused.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        refused.body
    );
    assert!(
        refused.body.contains("must be 1 to 500 characters"),
        "{}",
        refused.body
    );
    let done = b
        .post(
            &suppress,
            &[
                ("_csrf", snoozed.csrf().as_str()),
                ("days", "7"),
                ("reason", "a <b>known</b> scanner"),
            ],
        )
        .await;
    assert_eq!(done.status, StatusCode::SEE_OTHER, "{}", done.body);
    let page = b.get("/console/alerts?status=all").await;
    assert!(
        page.body.contains("a &lt;b&gt;known&lt;/b&gt; scanner"),
        "{}",
        page.body
    );
    let at = page.body.find("/lift").expect("a lift form");
    let start = page.body[..at].rfind("action=\"").unwrap() + "action=\"".len();
    let lift = page.body[start..at + "/lift".len()].to_string();
    let done = b.post(&lift, &[("_csrf", page.csrf().as_str())]).await;
    assert_eq!(done.status, StatusCode::SEE_OTHER, "{}", done.body);
    let page = b.get("/console/alerts?status=all").await;
    assert!(!page.body.contains("/lift"), "lifted: no longer in force");
}
