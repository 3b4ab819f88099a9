//! Progress of the long backup commands on a terminal: a spinner while the snapshot is
//! taken, and a byte bar while an archive is written (compressed, encrypted) or read
//! (decrypted, decompressed) by `create`, `verify`, `restore` and `drill`.
//!
//! Bars are drawn only when stderr is a terminal and `--json` was not given. Otherwise
//! nothing is drawn and the stage lines (`backup: snapshot: …`) are printed exactly as
//! before: scripts read them, and scheduled jobs run the same code with no one watching.
//!
//! The CLI makes a [`Reporter`] and runs the command inside [`Reporter::scope`]; the
//! backup code asks for a [`spinner`] or a [`Meter`] where it spends time, and outside a
//! scope that draws (scheduled jobs, `--json`, a pipe) it gets hidden ones. The scope is
//! a task-local rather than a parameter so that `verify`, `restore` and `drill` keep the
//! signatures the job queue and the CLI call; the byte counts themselves are passed to
//! `format.rs` explicitly.
//!
//! This module draws and counts; it decides nothing about backups.

use std::future::Future;
use std::io::{self, BufRead, IsTerminal, Read};
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressFinish, ProgressStyle};

/// What a backup command shows on stderr while it works.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Display {
    /// Stage lines, with a spinner and byte bars below them (an interactive terminal).
    Bars,
    /// Stage lines only (stderr is a file, a pipe or a journal).
    Lines,
    /// Nothing (`--json`: the document on stdout is the output).
    Quiet,
}

impl Display {
    pub fn choose(json: bool, stderr_is_terminal: bool) -> Display {
        match (json, stderr_is_terminal) {
            (true, _) => Display::Quiet,
            (false, true) => Display::Bars,
            (false, false) => Display::Lines,
        }
    }
}

tokio::task_local! {
    /// The bars of the command running in this task, if it draws any.
    static BARS: Option<MultiProgress>;
}

type LineSink = Box<dyn Fn(&str) + Send + Sync>;

/// Where one backup command's progress goes.
pub struct Reporter {
    display: Display,
    bars: Option<MultiProgress>,
    lines: LineSink,
}

impl Reporter {
    /// For a command run from the CLI: bars when stderr is a terminal and not `json`.
    pub fn for_cli(json: bool) -> Reporter {
        Reporter::new(
            Display::choose(json, io::stderr().is_terminal()),
            Box::new(|line| eprintln!("{line}")),
        )
    }

    fn new(display: Display, lines: LineSink) -> Reporter {
        let bars = (display == Display::Bars)
            .then(|| MultiProgress::with_draw_target(ProgressDrawTarget::stderr()));
        Reporter {
            display,
            bars,
            lines,
        }
    }

    /// One stage line, `backup: <line>`, as the commands have always printed it; above the
    /// bars when they are drawn.
    pub fn stage(&self, line: &str) {
        let text = format!("backup: {line}");
        match (self.display, &self.bars) {
            (Display::Quiet, _) => {}
            (_, Some(bars)) => bars.suspend(|| (self.lines)(&text)),
            (_, None) => (self.lines)(&text),
        }
    }

    /// Runs `work` with this reporter's bars (if any) available to [`spinner`] and
    /// [`meter`].
    pub async fn scope<F: Future>(&self, work: F) -> F::Output {
        BARS.scope(self.bars.clone(), work).await
    }
}

/// A bar added to the current scope's bars, or a hidden one. Cleared when dropped, so
/// the stage line that follows takes its place.
fn attach(bar: ProgressBar) -> ProgressBar {
    match BARS.try_with(Clone::clone) {
        Ok(Some(bars)) => bars.add(bar.with_finish(ProgressFinish::AndClear)),
        _ => ProgressBar::hidden(),
    }
}

/// A spinner saying what is being done, until it is dropped.
pub struct Spinner(ProgressBar);

pub fn spinner(what: &str) -> Spinner {
    let bar = attach(ProgressBar::new_spinner());
    bar.set_style(
        ProgressStyle::with_template("{spinner} {msg} ({elapsed})")
            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
    );
    bar.set_message(what.to_string());
    // A ticker is a thread: only for a spinner someone sees.
    if !bar.is_hidden() {
        bar.enable_steady_tick(Duration::from_millis(120));
    }
    Spinner(bar)
}

impl Spinner {
    pub fn set_message(&self, what: &str) {
        self.0.set_message(what.to_string());
    }

    pub fn is_hidden(&self) -> bool {
        self.0.is_hidden()
    }
}

impl Drop for Spinner {
    fn drop(&mut self) {
        self.0.finish_and_clear();
    }
}

/// Bytes done of a long read or write, drawn as a bar with rate and ETA when the scope
/// draws. Cheap to clone into the blocking thread that does the I/O.
#[derive(Clone)]
pub struct Meter(ProgressBar);

pub fn meter(what: &str) -> Meter {
    let bar = attach(ProgressBar::no_length());
    bar.set_style(
        ProgressStyle::with_template(
            "{msg} [{wide_bar}] {binary_bytes}/{binary_total_bytes} \
             {binary_bytes_per_sec}, {eta} left",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> "),
    );
    bar.set_message(what.to_string());
    Meter(bar)
}

impl Meter {
    /// Counts for no one (tests, and callers outside any scope).
    pub fn hidden() -> Meter {
        Meter(ProgressBar::hidden())
    }

    pub fn set_total(&self, bytes: u64) {
        self.0.set_length(bytes);
    }

    pub fn add(&self, bytes: u64) {
        self.0.inc(bytes);
    }

    pub fn counted(&self) -> u64 {
        self.0.position()
    }

    pub fn is_hidden(&self) -> bool {
        self.0.is_hidden()
    }

    /// `inner`, counting every byte read from it.
    pub fn reader<R>(&self, inner: R) -> Metered<R> {
        Metered {
            inner,
            meter: self.clone(),
        }
    }
}

/// A reader that adds what passes through it to a [`Meter`].
pub struct Metered<R> {
    inner: R,
    meter: Meter,
}

impl<R: Read> Read for Metered<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.meter.add(n as u64);
        Ok(n)
    }
}

impl<R: BufRead> BufRead for Metered<R> {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        self.inner.fill_buf()
    }

    fn consume(&mut self, amt: usize) {
        self.inner.consume(amt);
        self.meter.add(amt as u64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    #[test]
    fn bars_only_on_a_terminal_and_never_with_json() {
        assert_eq!(Display::choose(false, true), Display::Bars);
        assert_eq!(Display::choose(false, false), Display::Lines);
        assert_eq!(Display::choose(true, true), Display::Quiet);
        assert_eq!(Display::choose(true, false), Display::Quiet);
    }

    fn capture(display: Display) -> (Reporter, Arc<Mutex<Vec<String>>>) {
        let got = Arc::new(Mutex::new(Vec::new()));
        let sink = got.clone();
        let reporter = Reporter::new(
            display,
            Box::new(move |line| sink.lock().unwrap().push(line.to_string())),
        );
        (reporter, got)
    }

    #[tokio::test]
    async fn without_a_terminal_the_stage_lines_are_all_there_is() {
        let (reporter, got) = capture(Display::Lines);
        reporter
            .scope(async {
                let spinner = spinner("taking a snapshot");
                assert!(spinner.is_hidden());
                reporter.stage("snapshot: 4096 bytes, 12 tables, 3 ms");
                let meter = meter("writing");
                assert!(meter.is_hidden());
                meter.set_total(10);
                let mut read = Vec::new();
                meter
                    .reader(&b"0123456789"[..])
                    .read_to_end(&mut read)
                    .unwrap();
                assert_eq!(meter.counted(), 10, "still counts, draws nothing");
                reporter.stage("written: 900 bytes (compressed, encrypted), 5 ms");
            })
            .await;
        assert_eq!(
            *got.lock().unwrap(),
            [
                "backup: snapshot: 4096 bytes, 12 tables, 3 ms",
                "backup: written: 900 bytes (compressed, encrypted), 5 ms",
            ]
        );
    }

    #[tokio::test]
    async fn with_json_nothing_is_printed_or_drawn() {
        let (reporter, got) = capture(Display::Quiet);
        reporter
            .scope(async {
                assert!(meter("reading").is_hidden());
                reporter.stage("snapshot: 4096 bytes, 12 tables, 3 ms");
            })
            .await;
        assert!(got.lock().unwrap().is_empty());
    }

    #[test]
    fn outside_a_scope_meters_are_hidden() {
        // Scheduled backups run with no reporter at all.
        assert!(meter("writing").is_hidden());
        assert!(spinner("taking a snapshot").is_hidden());
    }

    #[test]
    fn a_metered_buffered_reader_counts_what_is_consumed() {
        let meter = Meter::hidden();
        let mut reader = meter.reader(io::BufReader::new(&b"abcdef"[..]));
        let buf = reader.fill_buf().unwrap().len();
        assert_eq!(buf, 6);
        reader.consume(4);
        assert_eq!(meter.counted(), 4);
    }
}
