//! Runs one fixed request through CRS many times, for `bench/profile.sh waf` to count
//! instructions under callgrind. Not a benchmark with a verdict of its own: it prints what
//! it ran and fails only if the request is blocked or CRS does not load.
//!
//! Usage: `profile <crs-dir> <get|post|json> <iterations>`
//!
//! The rule set mirrors what `rampart edge` builds in `bench/waf.sh` (engine On, paranoia
//! level 1, request and response bodies inspected); Rampart's own rules live in the edge
//! crate and are left out, so the figures are the CRS engine's alone. Only
//! `run_requests` is meant to be measured (callgrind's `--toggle-collect`), so loading the
//! rules does not count.

use std::path::Path;

use rampart_waf::{RuleSet, RuleSetBuilder};

const PRELUDE: &str = "SecRuleEngine On\n\
SecRequestBodyAccess On\n\
SecResponseBodyAccess On\n\
SecAction \"id:10001,phase:1,pass,nolog,t:none,setvar:tx.blocking_paranoia_level=1\"\n";

/// The same headers as `bench/waf.sh` sends.
const HEADERS: &[(&str, &str)] = &[
    ("Host", "www.example.com"),
    (
        "User-Agent",
        "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0",
    ),
    (
        "Accept",
        "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
    ),
];

/// `bench/waf.sh`'s 1005-byte checkout form.
const FORM_BODY: &str = concat!(
    "csrf_token=6f1c2a9e4b7d4e0f8a3c5b2d9e1f7a6c&first_name=Ada&last_name=Lovelace",
    "&email=ada.lovelace%40example.com&phone=%2B44+20+7946+0958&company=Analytical+Engines+Ltd",
    "&vat_number=GB123456789&street=12+St+James+Square&city=London&postcode=SW1Y+4JH&country=GB",
    "&delivery=standard&gift_wrap=no&newsletter=yes&quantity=3&sku=AE-1843-NOTES&coupon=WINTER25",
    "&notes=Please+leave+the+parcel+with+the+concierge+at+the+front+desk+if+nobody+answers+the+door.",
    "+The+building+has+a+blue+door+and+a+brass+knocker.+Deliveries+are+accepted+on+weekdays",
    "+between+nine+in+the+morning+and+six+in+the+evening.+If+the+concierge+is+away%2C+call+the",
    "+phone+number+above+and+we+will+come+down+to+collect+it.+Thank+you+for+the+quick+service",
    "+last+time%2C+the+notebooks+arrived+in+perfect+condition+and+the+packaging+was+recyclable.",
    "&billing_same_as_shipping=yes&payment_method=invoice&terms_accepted=yes&referrer=friend",
    "&preferred_contact=email&order_reference=WEB-2024-000187&locale=en-GB",
    "&timezone=Europe%2FLondon&currency=GBP&remember_me=yes",
);

/// The body `bench/payments.sh` posts (one of its random cards and addresses).
const PAYMENT_BODY: &str = concat!(
    r#"{"amount":125000,"currency":"IDR","card":{"number":"4539148803436467","exp_month":12,"#,
    r#""exp_year":2030,"cvc":"123"},"description":"Kursus las dasar","customer":"#,
    r#"{"email":"buyer52817@example.id","ip":"10.23.41.7","country":"US"}}"#,
);

struct Workload {
    method: &'static str,
    uri: &'static str,
    content_type: Option<&'static str>,
    body: &'static str,
}

fn workload(name: &str) -> Option<Workload> {
    Some(match name {
        "get" => Workload {
            method: "GET",
            uri: "/index.html?page=2&sort=name",
            content_type: None,
            body: "",
        },
        "post" => Workload {
            method: "POST",
            uri: "/checkout",
            content_type: Some("application/x-www-form-urlencoded"),
            body: FORM_BODY,
        },
        "json" => Workload {
            method: "POST",
            uri: "/api/v1/payments",
            content_type: Some("application/json"),
            body: PAYMENT_BODY,
        },
        _ => return None,
    })
}

/// One exchange, the way `rampart edge` feeds it: request phases, then a `200 ok`
/// text/plain response through phases 3 and 4, then logging. Returns the blocking rule
/// and the transformation cache's (hits, misses).
fn one_request(rules: &RuleSet, w: &Workload) -> (Option<u64>, (u32, u32)) {
    let mut tx = rules.transaction();
    let stop = exchange(&mut tx, w);
    (stop, tx.transform_cache_stats())
}

fn exchange(tx: &mut rampart_waf::Transaction<'_>, w: &Workload) -> Option<u64> {
    tx.process_connection("127.0.0.1", 50000, "0.0.0.0", 0);
    tx.process_uri(w.method.as_bytes(), w.uri.as_bytes(), b"HTTP/1.1");
    for (k, v) in HEADERS {
        tx.add_request_header(k.as_bytes(), v.as_bytes());
    }
    let len = w.body.len().to_string();
    if let Some(ct) = w.content_type {
        tx.add_request_header(b"Content-Type", ct.as_bytes());
        tx.add_request_header(b"Content-Length", len.as_bytes());
    }
    if let Some(stop) = tx.process_request_headers() {
        return Some(stop.rule_id);
    }
    tx.append_request_body(w.body.as_bytes());
    if let Some(stop) = tx.process_request_body() {
        return Some(stop.rule_id);
    }
    tx.add_response_header(b"Content-Type", b"text/plain");
    tx.add_response_header(b"Content-Length", b"3");
    if let Some(stop) = tx.process_response_headers(200, b"HTTP/1.1") {
        return Some(stop.rule_id);
    }
    tx.append_response_body(b"ok\n");
    let stop = tx.process_response_body();
    tx.process_logging();
    stop.map(|s| s.rule_id)
}

/// The measured part: kept out of line so callgrind can collect inside it only.
#[inline(never)]
fn run_requests(rules: &RuleSet, w: &Workload, n: u32) -> Option<u64> {
    let mut blocked = None;
    for _ in 0..n {
        blocked = blocked.or(one_request(rules, w).0);
    }
    blocked
}

fn main() -> Result<(), String> {
    let args: Vec<String> = std::env::args().collect();
    let [_, dir, name, n] = args.as_slice() else {
        return Err("usage: profile <crs-dir> <get|post|json> <iterations>".into());
    };
    let w = workload(name).ok_or_else(|| format!("unknown workload {name}"))?;
    let n: u32 = n.parse().map_err(|_| format!("bad iteration count {n}"))?;
    let dir = Path::new(dir);
    let mut b = RuleSetBuilder::new();
    let here = Path::new(".");
    b.add_text(PRELUDE, Path::new("<profile prelude>"), here)
        .map_err(|e| e.to_string())?;
    b.add_file(&dir.join("crs-setup.conf.example"))
        .map_err(|e| e.to_string())?;
    b.add_dir(&dir.join("rules")).map_err(|e| e.to_string())?;
    let rules = b.build().map_err(|e| e.to_string())?;
    // One unmeasured run first, so one-time lazy work does not count.
    let (stop, (hits, misses)) = one_request(&rules, &w);
    if let Some(id) = stop {
        return Err(format!("{name}: blocked by rule {id}"));
    }
    if let Some(id) = run_requests(&rules, &w, n) {
        return Err(format!("{name}: blocked by rule {id}"));
    }
    println!(
        "{name}: {n} requests, {} rules, none blocked; transformation cache: {hits} hits, \
         {misses} misses per request ({:.0} % hits)",
        rules.rule_count(),
        100.0 * f64::from(hits) / f64::from((hits + misses).max(1))
    );
    Ok(())
}
