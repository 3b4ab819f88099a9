//! The security event log: login failures, lockouts, MFA failures, refresh-token reuse,
//! permission denials, API key use and revocation, role changes.
//!
//! JSON lines in `<data_dir>/logs/security.log`; at the first event of a new UTC day the
//! file is renamed `security.log.YYYY-MM-DD` and a new one begun; files older than the
//! retention (90 days by default) are deleted. One writer thread owns the file, so request
//! handlers never wait on the disk. Every field is JSON-encoded, so a user-controlled
//! string (an e-mail, a user agent) cannot forge a line. Callers never put a password,
//! token, key or card number in an event.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Duration;

use serde::Serialize;
use serde_json::Value;
use time::{Date, OffsetDateTime};

const CURRENT: &str = "security.log";

#[derive(Debug, Clone, Serialize, Default)]
pub struct SecurityEvent {
    /// `login_failure`, `login_locked`, `permission_denied`, ...
    pub event: String,
    /// `info`, `warning` or `critical`.
    pub severity: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source_ip: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tenant_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub api_key_id: Option<String>,
    /// Anything else worth knowing; never a secret.
    #[serde(skip_serializing_if = "Value::is_null")]
    pub detail: Value,
}

impl SecurityEvent {
    pub fn new(event: &str, severity: &'static str) -> SecurityEvent {
        SecurityEvent {
            event: event.to_string(),
            severity,
            ..SecurityEvent::default()
        }
    }
}

enum Message {
    Line(String),
    /// Answered once every line sent before it is on disk.
    Sync(mpsc::Sender<()>),
}

/// Where else an event goes as it is recorded (the database, for the cluster): called on
/// the recording thread with the event and its time in ms, so it must not block; true
/// when it took the event (its consumer then calls [`SecurityLog::sink_done`]).
pub type Sink = std::sync::Arc<dyn Fn(&SecurityEvent, i64) -> bool + Send + Sync>;

/// A handle to the writer thread; cheap to clone.
#[derive(Clone)]
pub struct SecurityLog {
    dir: PathBuf,
    tx: mpsc::Sender<Message>,
    /// Shared by every clone, so a sink attached after the log was handed out still
    /// sees every event from then on.
    sink: std::sync::Arc<std::sync::OnceLock<Sink>>,
    /// Events the sink took, and those its consumer has finished with.
    sunk: std::sync::Arc<std::sync::atomic::AtomicU64>,
    stored: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

impl SecurityLog {
    /// Starts the writer for `dir` (created if missing).
    pub fn open(dir: &Path, retention_days: u32) -> std::io::Result<SecurityLog> {
        std::fs::create_dir_all(dir)?;
        let (tx, rx) = mpsc::channel::<Message>();
        let writer_dir = dir.to_path_buf();
        std::thread::Builder::new()
            .name("security-log".into())
            .spawn(move || write_loop(&writer_dir, retention_days, rx))?;
        Ok(SecurityLog {
            dir: dir.to_path_buf(),
            tx,
            sink: Default::default(),
            sunk: Default::default(),
            stored: Default::default(),
        })
    }

    /// The sink's consumer has finished with `n` more events (stored them, or failed).
    pub fn sink_done(&self, n: u64) {
        self.stored
            .fetch_add(n, std::sync::atomic::Ordering::Release);
    }

    /// Waits (up to `timeout`, blocking the thread) until the sink's consumer has finished
    /// with every event recorded so far: a reader of the database then sees them.
    pub fn wait_sink(&self, timeout: Duration) {
        use std::sync::atomic::Ordering;
        let target = self.sunk.load(Ordering::Acquire);
        let deadline = std::time::Instant::now() + timeout;
        while self.stored.load(Ordering::Acquire) < target && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    /// Sends every event recorded from now on to `sink` too; false when one is attached
    /// already.
    pub fn attach(&self, sink: Sink) -> bool {
        self.sink.set(sink).is_ok()
    }

    /// Queues an event; also emits it as a tracing event for the process log.
    pub fn record(&self, event: SecurityEvent) {
        let now = OffsetDateTime::now_utc();
        if let Some(sink) = self.sink.get() {
            if sink(&event, (now.unix_timestamp_nanos() / 1_000_000) as i64) {
                self.sunk.fetch_add(1, std::sync::atomic::Ordering::AcqRel);
            }
        }
        let time = now
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default();
        let mut value = serde_json::to_value(&event).unwrap_or(Value::Null);
        if let Value::Object(map) = &mut value {
            map.insert("time".into(), Value::String(time));
        }
        let line = value.to_string();
        // The process log mirrors the event at its severity, so an attack's flood of
        // `info` detections does not fill a warn-level log.
        match event.severity {
            "info" => {
                tracing::info!(target: "rampart::security", event = %event.event, severity = event.severity, "security event")
            }
            "critical" => {
                tracing::error!(target: "rampart::security", event = %event.event, severity = event.severity, "security event")
            }
            _ => {
                tracing::warn!(target: "rampart::security", event = %event.event, severity = event.severity, "security event")
            }
        }
        // The writer thread lives as long as the process; a send error means it died,
        // and the tracing line above still carries the event.
        let _ = self.tx.send(Message::Line(line));
    }

    /// Waits (up to a second) until every event recorded so far is on disk.
    pub fn sync(&self) {
        let (done, wait) = mpsc::channel();
        if self.tx.send(Message::Sync(done)).is_ok() {
            let _ = wait.recv_timeout(Duration::from_secs(1));
        }
    }

    /// Events of one UTC day (today by default), newest last, optionally of one type;
    /// at most `limit`, the latest ones.
    pub fn read(
        &self,
        day: Option<Date>,
        event: Option<&str>,
        limit: usize,
    ) -> std::io::Result<Vec<Value>> {
        self.sync();
        let today = OffsetDateTime::now_utc().date();
        let path = match day {
            None => self.dir.join(CURRENT),
            Some(d) if d == today => self.dir.join(CURRENT),
            Some(d) => self.dir.join(format!("{CURRENT}.{}", iso_date(d))),
        };
        let file = match File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        let mut out: Vec<Value> = Vec::new();
        for line in BufReader::new(file).lines() {
            let Ok(value) = serde_json::from_str::<Value>(&line?) else {
                continue;
            };
            if event.is_none_or(|e| value["event"] == e) {
                out.push(value);
            }
        }
        let skip = out.len().saturating_sub(limit);
        Ok(out.split_off(skip))
    }
}

fn iso_date(d: Date) -> String {
    format!("{:04}-{:02}-{:02}", d.year(), d.month() as u8, d.day())
}

fn write_loop(dir: &Path, retention_days: u32, rx: mpsc::Receiver<Message>) {
    let current = dir.join(CURRENT);
    let mut file: Option<(Date, File)> = None;
    for message in rx {
        match message {
            Message::Sync(done) => {
                if let Some((_, f)) = &mut file {
                    let _ = f.flush();
                }
                let _ = done.send(());
            }
            Message::Line(line) => {
                let today = OffsetDateTime::now_utc().date();
                if file.as_ref().is_none_or(|(day, _)| *day != today) {
                    file = open_for(dir, &current, today, retention_days);
                }
                if let Some((_, f)) = &mut file {
                    if writeln!(f, "{line}").is_err() {
                        tracing::error!("cannot write the security log");
                    }
                }
            }
        }
    }
}

/// Opens today's file, first rotating a file left from an earlier day and removing files
/// past retention.
fn open_for(dir: &Path, current: &Path, today: Date, retention_days: u32) -> Option<(Date, File)> {
    if let Ok(meta) = std::fs::metadata(current) {
        let written: OffsetDateTime = meta
            .modified()
            .map(OffsetDateTime::from)
            .unwrap_or_else(|_| OffsetDateTime::now_utc());
        if written.date() != today {
            let rotated = dir.join(format!("{CURRENT}.{}", iso_date(written.date())));
            let _ = std::fs::rename(current, rotated);
        }
    }
    remove_expired(dir, today, retention_days);
    match OpenOptions::new().create(true).append(true).open(current) {
        Ok(f) => Some((today, f)),
        Err(e) => {
            tracing::error!(error = %e, "cannot open the security log");
            None
        }
    }
}

fn remove_expired(dir: &Path, today: Date, retention_days: u32) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let cutoff = today - time::Duration::days(i64::from(retention_days));
    let format = time::macros::format_description!("[year]-[month]-[day]");
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(date) = name
            .to_str()
            .and_then(|n| n.strip_prefix("security.log."))
            .and_then(|d| Date::parse(d, &format).ok())
        else {
            continue;
        };
        if date < cutoff {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_json_and_cannot_be_forged() {
        let dir = tempfile::tempdir().unwrap();
        let log = SecurityLog::open(dir.path(), 90).unwrap();
        let mut e = SecurityEvent::new("login_failure", "warning");
        e.detail = serde_json::json!({"user_agent": "evil\n{\"event\":\"forged\"}"});
        log.record(e);
        let events = log.read(None, None, 100).unwrap();
        assert_eq!(events.len(), 1);
        assert_eq!(events[0]["event"], "login_failure");
        let text = std::fs::read_to_string(dir.path().join(CURRENT)).unwrap();
        assert_eq!(text.lines().count(), 1, "{text}");
        assert!(log.read(None, Some("forged"), 100).unwrap().is_empty());
    }

    #[test]
    fn old_files_are_removed_and_other_days_are_read() {
        let dir = tempfile::tempdir().unwrap();
        let today = OffsetDateTime::now_utc().date();
        let old = today - time::Duration::days(91);
        let recent = today - time::Duration::days(3);
        std::fs::write(
            dir.path().join(format!("security.log.{}", iso_date(old))),
            "{}\n",
        )
        .unwrap();
        std::fs::write(
            dir.path()
                .join(format!("security.log.{}", iso_date(recent))),
            "{\"event\":\"login_locked\"}\n",
        )
        .unwrap();
        let log = SecurityLog::open(dir.path(), 90).unwrap();
        log.record(SecurityEvent::new("login_success", "info"));
        log.sync();
        assert!(!dir
            .path()
            .join(format!("security.log.{}", iso_date(old)))
            .exists());
        let events = log.read(Some(recent), None, 10).unwrap();
        assert_eq!(events[0]["event"], "login_locked");
    }
}
