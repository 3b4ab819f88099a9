//! An in-process go-ftw: reads CRS regression tests (ftw-tests-schema v2
//! YAML), builds each stage's raw request the way go-ftw sends it, parses it
//! the way a strict web server would, runs it through a transaction with a
//! simulated `/reflect` echo backend for the response phases, and checks the
//! expected rule ids, log regexes and status. No network is involved.

use base64::Engine as _;
use serde_yaml::Value;
use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};

use crate::http::{parse_request, RawRequest};
use crate::{RuleSet, RuleSetBuilder, Transaction};

/// The setup go-ftw's CRS test configuration adds after `crs-setup.conf`.
pub const TEST_MODE_SETUP: &str = r#"SecAction "id:900005,phase:1,nolog,pass,ctl:ruleEngine=DetectionOnly,\
  ctl:ruleRemoveById=910000,setvar:tx.blocking_paranoia_level=4,\
  setvar:tx.crs_validate_utf8_encoding=1,setvar:tx.arg_name_length=100,\
  setvar:tx.arg_length=400,setvar:tx.total_arg_length=64000,\
  setvar:tx.max_num_args=255,setvar:tx.max_file_size=64100,\
  setvar:tx.combined_file_sizes=65535"
"#;

/// Why the runner could not run at all (individual test problems are
/// reported as failures instead).
#[derive(Debug, thiserror::Error)]
pub enum FtwError {
    #[error(transparent)]
    Load(#[from] crate::LoadError),
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Test ids (`<rule>-<test>`) to skip, each with the reason.
pub type Exclusions = HashMap<String, String>;

/// Parses an exclusions file: one `<rule>-<test> reason` per line; `#`
/// starts a comment line.
pub fn parse_exclusions(text: &str) -> Exclusions {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| match l.split_once(char::is_whitespace) {
            Some((id, reason)) => (id.to_string(), reason.trim().to_string()),
            None => (l.to_string(), String::new()),
        })
        .collect()
}

/// Outcome of a run.
#[derive(Debug, Default, Clone)]
pub struct Report {
    pub passed: usize,
    /// Requests evaluated (a test has one or more stages).
    pub stages: usize,
    /// (test id, reason)
    pub failed: Vec<(String, String)>,
    /// (test id, exclusion reason)
    pub skipped: Vec<(String, String)>,
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (id, why) in &self.failed {
            writeln!(f, "FAIL {id}: {why}")?;
        }
        writeln!(
            f,
            "{} passed, {} failed, {} skipped",
            self.passed,
            self.failed.len(),
            self.skipped.len()
        )
    }
}

/// Loads CRS from `crs_dir` (its `crs-setup.conf.example` or
/// `crs-setup.conf`, the test-mode setup, then `rules/`) and runs every test
/// under `tests_dir`.
pub fn run(crs_dir: &Path, tests_dir: &Path, exclusions: &Exclusions) -> Result<Report, FtwError> {
    let rules = load_crs_for_tests(crs_dir)?;
    run_with_rules(&rules, tests_dir, exclusions)
}

/// Builds the rule set the CRS suite expects.
pub fn load_crs_for_tests(crs_dir: &Path) -> Result<RuleSet, FtwError> {
    Ok(crs_builder_for_tests(crs_dir)?.build()?)
}

/// The loader [`load_crs_for_tests`] builds from, for callers that change engine
/// options (literal prefilters) before building.
pub fn crs_builder_for_tests(crs_dir: &Path) -> Result<RuleSetBuilder, FtwError> {
    let mut b = RuleSetBuilder::new();
    let setup = ["crs-setup.conf", "crs-setup.conf.example"]
        .iter()
        .map(|n| crs_dir.join(n))
        .find(|p| p.is_file())
        .unwrap_or_else(|| crs_dir.join("crs-setup.conf.example"));
    b.add_file(&setup)?;
    b.add_text(TEST_MODE_SETUP, Path::new("<test-mode>"), crs_dir)?;
    b.add_dir(&crs_dir.join("rules"))?;
    Ok(b)
}

fn yaml_files(dir: &Path, out: &mut Vec<PathBuf>) -> Result<(), FtwError> {
    let io = |source| FtwError::Io {
        path: dir.to_path_buf(),
        source,
    };
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(io)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            yaml_files(&p, out)?;
        } else if p.extension().is_some_and(|x| x == "yaml" || x == "yml") {
            out.push(p);
        }
    }
    Ok(())
}

/// Runs every test file under `tests_dir` against `rules`.
pub fn run_with_rules(
    rules: &RuleSet,
    tests_dir: &Path,
    exclusions: &Exclusions,
) -> Result<Report, FtwError> {
    let mut files = Vec::new();
    yaml_files(tests_dir, &mut files)?;
    let mut report = Report::default();
    for file in files {
        let text = std::fs::read_to_string(&file).map_err(|source| FtwError::Io {
            path: file.clone(),
            source,
        })?;
        let doc: Value = match serde_yaml::from_str(&text) {
            Ok(v) => v,
            Err(e) => {
                report
                    .failed
                    .push((file.display().to_string(), format!("invalid YAML: {e}")));
                continue;
            }
        };
        let rule_id = match &doc["rule_id"] {
            Value::Number(n) => n.to_string(),
            Value::String(s) => s.clone(),
            _ => file
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default(),
        };
        let Some(tests) = doc["tests"].as_sequence() else {
            continue;
        };
        for (n, test) in tests.iter().enumerate() {
            let tid = match &test["test_id"] {
                Value::Number(x) => x.to_string(),
                Value::String(s) => s.clone(),
                _ => (n + 1).to_string(),
            };
            let id = format!("{rule_id}-{tid}");
            if let Some(reason) = exclusions.get(&id) {
                report.skipped.push((id, reason.clone()));
                continue;
            }
            match run_test(rules, test, &mut report.stages) {
                Ok(()) => report.passed += 1,
                Err(why) => report.failed.push((id, why)),
            }
        }
    }
    Ok(report)
}

/// Runs one test (`<rule>-<test>`) and describes every stage: the raw
/// request and all matched rules, logged or not. For debugging the engine.
pub fn explain(rules: &RuleSet, tests_dir: &Path, id: &str) -> Result<String, FtwError> {
    let Some((rule_id, tid)) = id.split_once('-') else {
        return Ok(format!("bad test id {id}"));
    };
    let mut files = Vec::new();
    yaml_files(tests_dir, &mut files)?;
    let mut out = String::new();
    for file in files {
        if file.file_stem().and_then(|s| s.to_str()) != Some(rule_id) {
            continue;
        }
        let text = std::fs::read_to_string(&file).map_err(|source| FtwError::Io {
            path: file.clone(),
            source,
        })?;
        let doc: Value = serde_yaml::from_str(&text).unwrap_or(Value::Null);
        for (n, test) in doc["tests"].as_sequence().into_iter().flatten().enumerate() {
            let t = match &test["test_id"] {
                Value::Number(x) => x.to_string(),
                _ => (n + 1).to_string(),
            };
            if t != tid {
                continue;
            }
            for stage in test["stages"].as_sequence().into_iter().flatten() {
                let raw = build_request(&stage["input"]).unwrap_or_default();
                out.push_str(&format!(
                    "--- request\n{}\n--- matched\n",
                    String::from_utf8_lossy(&raw)
                ));
                if let Ok(req) = parse_request(&raw) {
                    let mut tx = rules.transaction();
                    tx.process_connection("127.0.0.1", 40000, "127.0.0.1", 80);
                    req.feed(&mut tx);
                    let (st, headers, body) = backend(&req);
                    for (k, v) in &headers {
                        tx.add_response_header(k, v);
                    }
                    tx.process_response_headers(st, b"HTTP/1.1");
                    tx.append_response_body(&body);
                    tx.process_response_body();
                    for m in tx
                        .matched_rules()
                        .iter()
                        .filter(|m| m.logged || std::env::var_os("RAMPART_FTW_ALL").is_some())
                    {
                        out.push_str(&format!(
                            "{} {} {}\n",
                            if m.logged { "LOG" } else { "nolog" },
                            m.matched_var_name,
                            m.log_line()
                        ));
                    }
                } else {
                    out.push_str("(rejected with 400)\n");
                }
                out.push_str(&format!("--- expected\n{:?}\n", stage["output"]));
            }
        }
    }
    Ok(out)
}

fn as_bytes(v: &Value) -> Option<Vec<u8>> {
    match v {
        Value::String(s) => Some(s.as_bytes().to_vec()),
        Value::Number(n) => Some(n.to_string().into_bytes()),
        Value::Bool(b) => Some(b.to_string().into_bytes()),
        _ => None,
    }
}

/// Builds the bytes go-ftw would send for a stage input.
pub fn build_request(input: &Value) -> Result<Vec<u8>, String> {
    if let Some(enc) = input["encoded_request"].as_str() {
        return base64::engine::general_purpose::STANDARD
            .decode(enc.split_ascii_whitespace().collect::<String>())
            .map_err(|e| format!("bad encoded_request: {e}"));
    }
    let method = as_bytes(&input["method"]).unwrap_or_else(|| b"GET".to_vec());
    let uri = as_bytes(&input["uri"]).unwrap_or_else(|| b"/".to_vec());
    let version = as_bytes(&input["version"]).unwrap_or_else(|| b"HTTP/1.1".to_vec());
    let data = as_bytes(&input["data"]).unwrap_or_default();
    let autocomplete = input["autocomplete_headers"].as_bool().unwrap_or(true);
    let mut headers: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
    if let Some(map) = input["headers"].as_mapping() {
        for (k, v) in map {
            let (Some(k), Some(v)) = (as_bytes(k), as_bytes(v)) else {
                continue;
            };
            headers.push((k, v));
        }
    }
    let has = |hs: &[(Vec<u8>, Vec<u8>)], n: &str| {
        hs.iter().any(|(k, _)| k.eq_ignore_ascii_case(n.as_bytes()))
    };
    if autocomplete {
        if !data.is_empty() && !has(&headers, "content-type") {
            headers.push((
                b"Content-Type".to_vec(),
                b"application/x-www-form-urlencoded".to_vec(),
            ));
        }
        // go-ftw always sends a length, even zero, unless told not to.
        if !has(&headers, "content-length") && !has(&headers, "transfer-encoding") {
            headers.push((
                b"Content-Length".to_vec(),
                data.len().to_string().into_bytes(),
            ));
        }
        if !has(&headers, "connection") {
            headers.push((b"Connection".to_vec(), b"close".to_vec()));
        }
    }
    let mut raw = Vec::with_capacity(256 + data.len());
    raw.extend_from_slice(&method);
    raw.push(b' ');
    raw.extend_from_slice(&uri);
    raw.push(b' ');
    raw.extend_from_slice(&version);
    raw.extend_from_slice(b"\r\n");
    for (k, v) in &headers {
        raw.extend_from_slice(k);
        raw.extend_from_slice(b": ");
        raw.extend_from_slice(v);
        raw.extend_from_slice(b"\r\n");
    }
    raw.extend_from_slice(b"\r\n");
    raw.extend_from_slice(&data);
    Ok(raw)
}

/// Sniffs a content type the way Go's `http.DetectContentType` does for
/// the cases the echo backend meets.
fn sniff_content_type(body: &[u8]) -> &'static str {
    let start = body
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(body.len());
    let lower = body[start..body.len().min(start + 16)].to_ascii_lowercase();
    const HTML: &[&[u8]] = &[
        b"<!doctype html",
        b"<html",
        b"<head",
        b"<script",
        b"<iframe",
        b"<h1",
        b"<div",
        b"<font",
        b"<table",
        b"<a",
        b"<style",
        b"<title",
        b"<b",
        b"<body",
        b"<br",
        b"<p",
        b"<!--",
    ];
    for tag in HTML {
        if lower.starts_with(tag) {
            let next = lower.get(tag.len()).copied();
            if matches!(next, Some(b' ') | Some(b'>')) || (*tag == b"<!--" && next.is_some()) {
                return "text/html; charset=utf-8";
            }
        }
    }
    if lower.starts_with(b"<?xml") {
        return "text/xml; charset=utf-8";
    }
    if body
        .iter()
        .any(|&b| b < 0x09 || (0x0e..0x20).contains(&b) && b != 0x1b)
    {
        return "application/octet-stream";
    }
    "text/plain; charset=utf-8"
}

/// The simulated backend: `/reflect` echoes the JSON-described response
/// (status, headers, body or encodedBody) like CRS's albedo backend.
type Headers = Vec<(Vec<u8>, Vec<u8>)>;

fn backend(req: &crate::http::RawRequest) -> (u16, Headers, Vec<u8>) {
    let path = req.uri.split(|&b| b == b'?').next().unwrap_or(b"");
    if path.starts_with(b"/reflect") {
        if let Ok(spec) = serde_json::from_slice::<serde_json::Value>(&req.body) {
            let status = spec["status"].as_u64().map_or(200, |s| s as u16);
            let mut body = spec["body"].as_str().unwrap_or("").as_bytes().to_vec();
            if let Some(enc) = spec["encodedBody"].as_str() {
                if let Ok(b) = base64::engine::general_purpose::STANDARD.decode(enc) {
                    body = b;
                }
            }
            let mut headers: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
            if let Some(h) = spec["headers"].as_object() {
                for (k, v) in h {
                    let v = v
                        .as_str()
                        .map(str::to_string)
                        .unwrap_or_else(|| v.to_string());
                    headers.push((k.as_bytes().to_vec(), v.into_bytes()));
                }
            }
            if !headers
                .iter()
                .any(|(k, _)| k.eq_ignore_ascii_case(b"content-type"))
            {
                headers.push((
                    b"Content-Type".to_vec(),
                    sniff_content_type(&body).as_bytes().to_vec(),
                ));
            }
            return (status, headers, body);
        }
    }
    (
        200,
        vec![(
            b"Content-Type".to_vec(),
            b"text/plain; charset=utf-8".to_vec(),
        )],
        Vec::new(),
    )
}

struct StageResult {
    status: u16,
    log: String,
    ids: Vec<u64>,
    error: bool,
}

/// One exchange as go-ftw drives it against CRS's test backend: the request phases,
/// then (unless they interrupted) the echo backend's response through phases 3 and 4,
/// then logging. Returns the final status and the finished transaction.
fn exchange<'r>(rules: &'r RuleSet, req: &RawRequest) -> (u16, Transaction<'r>) {
    let mut tx = rules.transaction();
    tx.process_connection("127.0.0.1", 40000, "127.0.0.1", 80);
    let mut status = 0;
    if let Some(i) = req.feed(&mut tx) {
        status = i.status;
    }
    if status == 0 {
        let (st, headers, body) = backend(req);
        for (k, v) in &headers {
            tx.add_response_header(k, v);
        }
        status = st;
        if let Some(i) = tx.process_response_headers(st, b"HTTP/1.1") {
            status = i.status;
        } else {
            tx.append_response_body(&body);
            if let Some(i) = tx.process_response_body() {
                status = i.status;
            }
        }
    }
    tx.process_logging();
    (status, tx)
}

/// What a rule set made of one request: the final status and every rule that matched
/// (logged or not), with the variable it matched last, in evaluation order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    pub status: u16,
    pub matched: Vec<(u64, String)>,
}

/// Runs `req` through `rules` the way a test stage does (see [`run_with_rules`]).
pub fn evaluate(rules: &RuleSet, req: &RawRequest) -> Verdict {
    let (status, tx) = exchange(rules, req);
    Verdict {
        status,
        matched: tx
            .matched_rules()
            .iter()
            .map(|m| (m.id, m.matched_var_name.clone()))
            .collect(),
    }
}

/// Every stage's request under `tests_dir`, as a strict server parses it, in file order;
/// stages such a server refuses with 400 are left out. For differential tests.
pub fn corpus(tests_dir: &Path) -> Result<Vec<RawRequest>, FtwError> {
    let mut files = Vec::new();
    yaml_files(tests_dir, &mut files)?;
    let mut out = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file).map_err(|source| FtwError::Io {
            path: file.clone(),
            source,
        })?;
        let Ok(doc) = serde_yaml::from_str::<Value>(&text) else {
            continue;
        };
        for test in doc["tests"].as_sequence().into_iter().flatten() {
            for stage in test["stages"].as_sequence().into_iter().flatten() {
                let stage = if stage["stage"].is_mapping() {
                    &stage["stage"]
                } else {
                    stage
                };
                if let Some(req) = build_request(&stage["input"])
                    .ok()
                    .and_then(|raw| parse_request(&raw).ok())
                {
                    out.push(req);
                }
            }
        }
    }
    Ok(out)
}

fn run_stage(rules: &RuleSet, input: &Value) -> Result<StageResult, String> {
    let raw = build_request(input)?;
    let req = match parse_request(&raw) {
        Ok(r) => r,
        Err(_) => {
            return Ok(StageResult {
                status: 400,
                log: String::new(),
                ids: Vec::new(),
                error: true,
            })
        }
    };
    let (status, tx) = exchange(rules, &req);
    let logged: Vec<&crate::MatchedRule> = tx.matched_rules().iter().filter(|m| m.logged).collect();
    let log = logged
        .iter()
        .map(|m| m.log_line())
        .collect::<Vec<_>>()
        .join("\n");
    Ok(StageResult {
        status,
        log,
        ids: logged.iter().map(|m| m.id).collect(),
        error: false,
    })
}

fn ids_of(v: &Value) -> Vec<u64> {
    v.as_sequence()
        .map(|s| s.iter().filter_map(Value::as_u64).collect())
        .unwrap_or_default()
}

fn check_stage(output: &Value, r: &StageResult) -> Result<(), String> {
    if output["expect_error"].as_bool() == Some(true) {
        return if r.error {
            Ok(())
        } else {
            Err("expected an error, request was accepted".into())
        };
    }
    let status_ok = match &output["status"] {
        Value::Number(n) => n.as_u64().map(|s| s as u16 == r.status),
        Value::Sequence(s) => Some(
            s.iter()
                .filter_map(Value::as_u64)
                .any(|x| x as u16 == r.status),
        ),
        _ => None,
    };
    if status_ok == Some(false) {
        return Err(format!(
            "status {} not as expected {:?}",
            r.status, output["status"]
        ));
    }
    let log = &output["log"];
    for id in ids_of(&log["expect_ids"]) {
        if !r.ids.contains(&id) {
            return Err(format!("expected rule {id} to match; matched {:?}", r.ids));
        }
    }
    for id in ids_of(&log["no_expect_ids"]) {
        if r.ids.contains(&id) {
            return Err(format!("rule {id} matched but must not"));
        }
    }
    if let Some(re) = log["match_regex"].as_str() {
        let re = regex::Regex::new(re).map_err(|e| format!("bad match_regex: {e}"))?;
        if !re.is_match(&r.log) {
            return Err(format!("log does not match /{re}/; matched {:?}", r.ids));
        }
    }
    if let Some(re) = log["no_match_regex"].as_str() {
        let re = regex::Regex::new(re).map_err(|e| format!("bad no_match_regex: {e}"))?;
        if re.is_match(&r.log) {
            return Err(format!("log matches /{re}/; matched {:?}", r.ids));
        }
    }
    Ok(())
}

fn run_test(rules: &RuleSet, test: &Value, stages_run: &mut usize) -> Result<(), String> {
    let Some(stages) = test["stages"].as_sequence() else {
        return Err("test has no stages".into());
    };
    for (i, stage) in stages.iter().enumerate() {
        // Schema v1 wrapped each stage in a `stage:` key.
        let stage = if stage["stage"].is_mapping() {
            &stage["stage"]
        } else {
            stage
        };
        *stages_run += 1;
        let r = run_stage(rules, &stage["input"]).map_err(|e| format!("stage {}: {e}", i + 1))?;
        check_stage(&stage["output"], &r).map_err(|e| format!("stage {}: {e}", i + 1))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn yaml(s: &str) -> Value {
        serde_yaml::from_str(s).unwrap()
    }

    #[test]
    fn autocomplete_adds_type_length_and_connection() {
        let raw = build_request(&yaml(
            "method: POST\nuri: /p\nheaders:\n  Host: h\ndata: a=1\n",
        ))
        .unwrap();
        let text = String::from_utf8(raw).unwrap();
        assert_eq!(
            text,
            "POST /p HTTP/1.1\r\nHost: h\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 3\r\nConnection: close\r\n\r\na=1"
        );
        let raw =
            build_request(&yaml("autocomplete_headers: false\nheaders:\n  Host: h\n")).unwrap();
        assert_eq!(raw, b"GET / HTTP/1.1\r\nHost: h\r\n\r\n");
    }

    #[test]
    fn encoded_request_is_sent_verbatim() {
        let raw =
            build_request(&yaml("encoded_request: \"R0VUIC8g\nSFRUUC8xLjENCg0K\"\n")).unwrap();
        assert_eq!(raw, b"GET / HTTP/1.1\r\n\r\n");
    }

    #[test]
    fn reflect_backend_echoes_the_described_response() {
        let req = crate::http::RawRequest {
            method: b"POST".to_vec(),
            uri: b"/reflect".to_vec(),
            body: br#"{"status": 500, "body": "<html>x</html>", "headers": {"X-A": "1"}}"#.to_vec(),
            ..Default::default()
        };
        let (status, headers, body) = backend(&req);
        assert_eq!(status, 500);
        assert_eq!(body, b"<html>x</html>");
        assert!(headers.contains(&(
            b"Content-Type".to_vec(),
            b"text/html; charset=utf-8".to_vec()
        )));
        assert!(headers.contains(&(b"X-A".to_vec(), b"1".to_vec())));
    }

    #[test]
    fn expectations_are_checked() {
        let r = StageResult {
            status: 200,
            log: "[id \"1\"] [msg \"m\"] [data \"d\"]".into(),
            ids: vec![1],
            error: false,
        };
        assert!(check_stage(&yaml("log:\n  expect_ids: [1]\n"), &r).is_ok());
        assert!(check_stage(&yaml("log:\n  expect_ids: [2]\n"), &r).is_err());
        assert!(check_stage(&yaml("log:\n  no_expect_ids: [1]\n"), &r).is_err());
        assert!(check_stage(&yaml("status: [200, 403]\n"), &r).is_ok());
        assert!(check_stage(&yaml("status: 403\n"), &r).is_err());
        assert!(check_stage(&yaml("log:\n  match_regex: 'msg \"m\"'\n"), &r).is_ok());
        assert!(check_stage(&yaml("log:\n  no_match_regex: 'id \"\\d+\"'\n"), &r).is_err());
    }

    #[test]
    fn exclusions_file_format() {
        let e = parse_exclusions("# comment\n\n920100-2  needs httpd\n930100-1\n");
        assert_eq!(e.get("920100-2").map(String::as_str), Some("needs httpd"));
        assert_eq!(e.get("930100-1").map(String::as_str), Some(""));
        assert_eq!(e.len(), 2);
    }
}
