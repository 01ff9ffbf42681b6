//! What a plugin said during one call: its `log` calls and its standard output and error.
//!
//! Every line goes to `tracing` at once, tagged with the plugin's name, and is also kept in
//! the call's [`Journal`] so a caller (such as `wharf plugin run`) can show it. The journal is
//! bounded, so a chatty plugin cannot grow the host's memory; lines past the bound still reach
//! `tracing` and are counted as dropped. A line is cut to [`MAX_LINE_BYTES`] before it goes
//! anywhere, and each plugin has a [`LogGate`]: past its rate, lines are dropped (counted, and
//! said once the rate allows again), so a plugin that logs in a loop cannot flood the host's
//! log or hold a core formatting lines.

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use std::num::NonZeroU32;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};

/// Lines kept per call; the rest are counted.
const MAX_LINES: usize = 1_000;
/// A line longer than this is cut before it is logged or kept.
pub(crate) const MAX_LINE_BYTES: usize = 8 * 1024;
/// Lines a plugin may log per second, all its instances together, and the burst it may
/// use at once. Lines past the rate are dropped and counted.
const LINES_PER_SECOND: u32 = 200;
const LINE_BURST: u32 = 1_000;

/// One plugin's log rate, shared by all its instances.
pub(crate) struct LogGate {
    limiter: DefaultDirectRateLimiter,
    /// Lines dropped since the last one that passed, said with the next one that passes.
    dropped: AtomicU64,
}

impl std::fmt::Debug for LogGate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogGate")
            .field("dropped", &self.dropped.load(Ordering::Relaxed))
            .finish()
    }
}

impl LogGate {
    pub(crate) fn new() -> Arc<LogGate> {
        let per_second = NonZeroU32::new(LINES_PER_SECOND).expect("non-zero");
        let burst = NonZeroU32::new(LINE_BURST).expect("non-zero");
        Arc::new(LogGate {
            limiter: RateLimiter::direct(Quota::per_second(per_second).allow_burst(burst)),
            dropped: AtomicU64::new(0),
        })
    }

    /// Whether a line may pass now; `Some(n)` also says how many were dropped before it.
    fn admit(&self) -> Option<u64> {
        if self.limiter.check().is_ok() {
            Some(self.dropped.swap(0, Ordering::Relaxed))
        } else {
            self.dropped.fetch_add(1, Ordering::Relaxed);
            None
        }
    }
}

/// `text` cut to at most [`MAX_LINE_BYTES`] on a character boundary, marked with `…`.
pub(crate) fn cut_line(text: &mut String) {
    if text.len() > MAX_LINE_BYTES {
        let mut cut = MAX_LINE_BYTES;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
        text.push('…');
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    Trace,
    Debug,
    Info,
    Warn,
    Error,
}

/// Where a line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    Log,
    Stdout,
    Stderr,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct LogLine {
    pub level: Level,
    pub source: Source,
    pub text: String,
}

/// The lines of one call.
#[derive(Debug, Default)]
pub struct Journal {
    plugin: Arc<str>,
    gate: Option<Arc<LogGate>>,
    lines: Vec<LogLine>,
    dropped: usize,
    partial_stdout: Vec<u8>,
    partial_stderr: Vec<u8>,
}

/// The journal shared between a call's state and its stdout/stderr streams.
pub(crate) type SharedJournal = Arc<Mutex<Journal>>;

impl Journal {
    pub(crate) fn shared(plugin: Arc<str>, gate: Arc<LogGate>) -> SharedJournal {
        Arc::new(Mutex::new(Journal {
            plugin,
            gate: Some(gate),
            ..Journal::default()
        }))
    }

    pub(crate) fn record(&mut self, level: Level, source: Source, mut text: String) {
        cut_line(&mut text);
        let plugin = &*self.plugin;
        if let Some(gate) = &self.gate {
            match gate.admit() {
                None => {
                    self.dropped += 1;
                    return;
                }
                Some(0) => {}
                Some(dropped) => {
                    tracing::warn!(target: "wharf::plugin", plugin, dropped, "the plugin logged faster than {LINES_PER_SECOND} lines a second; lines were dropped");
                }
            }
        }
        let stream = match source {
            Source::Log => "log",
            Source::Stdout => "stdout",
            Source::Stderr => "stderr",
        };
        match level {
            Level::Trace => tracing::trace!(target: "wharf::plugin", plugin, stream, "{text}"),
            Level::Debug => tracing::debug!(target: "wharf::plugin", plugin, stream, "{text}"),
            Level::Info => tracing::info!(target: "wharf::plugin", plugin, stream, "{text}"),
            Level::Warn => tracing::warn!(target: "wharf::plugin", plugin, stream, "{text}"),
            Level::Error => tracing::error!(target: "wharf::plugin", plugin, stream, "{text}"),
        }
        if self.lines.len() >= MAX_LINES {
            self.dropped += 1;
            return;
        }
        self.lines.push(LogLine {
            level,
            source,
            text,
        });
    }

    fn write(&mut self, source: Source, bytes: &[u8]) {
        let partial = match source {
            Source::Stderr => &mut self.partial_stderr,
            _ => &mut self.partial_stdout,
        };
        partial.extend_from_slice(bytes);
        let mut complete = Vec::new();
        while let Some(newline) = partial.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = partial.drain(..=newline).collect();
            complete.push(String::from_utf8_lossy(&line[..line.len() - 1]).into_owned());
        }
        // A guest that never writes a newline must not grow the buffer without bound.
        if partial.len() > MAX_LINE_BYTES {
            complete.push(String::from_utf8_lossy(partial).into_owned());
            partial.clear();
        }
        let level = match source {
            Source::Stderr => Level::Warn,
            _ => Level::Info,
        };
        for line in complete {
            self.record(level, source, line);
        }
    }

    /// Ends the call: flushes unterminated output and hands back what was said.
    pub(crate) fn take(&mut self) -> (Vec<LogLine>, usize) {
        for source in [Source::Stdout, Source::Stderr] {
            let partial = match source {
                Source::Stderr => std::mem::take(&mut self.partial_stderr),
                _ => std::mem::take(&mut self.partial_stdout),
            };
            if !partial.is_empty() {
                self.write(source, &partial);
                self.write(source, b"\n");
            }
        }
        (
            std::mem::take(&mut self.lines),
            std::mem::take(&mut self.dropped),
        )
    }
}

/// A guest's stdout or stderr, writing into the call's journal.
pub(crate) struct GuestOutput {
    pub journal: SharedJournal,
    pub source: Source,
}

impl IsTerminal for GuestOutput {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for GuestOutput {
    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(GuestWriter {
            journal: self.journal.clone(),
            source: self.source,
        })
    }
}

struct GuestWriter {
    journal: SharedJournal,
    source: Source,
}

impl tokio::io::AsyncWrite for GuestWriter {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let mut journal = self.journal.lock().unwrap_or_else(|p| p.into_inner());
        journal.write(self.source, buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_is_split_into_lines_and_flushed_at_the_end() {
        let journal = Journal::shared("p".into(), LogGate::new());
        let mut j = journal.lock().unwrap();
        j.write(Source::Stdout, b"one\ntw");
        j.write(Source::Stdout, b"o\nthree");
        j.write(Source::Stderr, b"oops\n");
        let (lines, dropped) = j.take();
        let texts: Vec<_> = lines.iter().map(|l| l.text.as_str()).collect();
        assert_eq!(texts, ["one", "two", "oops", "three"]);
        assert_eq!(lines[2].source, Source::Stderr);
        assert_eq!(dropped, 0);
    }

    #[test]
    fn the_journal_is_bounded() {
        let journal = Journal::shared("p".into(), LogGate::new());
        let mut j = journal.lock().unwrap();
        for i in 0..(MAX_LINES + 5) {
            j.record(Level::Info, Source::Log, format!("line {i}"));
        }
        j.record(Level::Info, Source::Log, "x".repeat(MAX_LINE_BYTES * 2));
        let (lines, dropped) = j.take();
        assert_eq!(lines.len(), MAX_LINES);
        assert_eq!(dropped, 6);
    }

    #[test]
    fn a_long_line_is_cut_before_it_is_kept() {
        let journal = Journal::shared("p".into(), LogGate::new());
        let mut j = journal.lock().unwrap();
        j.record(Level::Info, Source::Log, "é".repeat(MAX_LINE_BYTES));
        let (lines, _) = j.take();
        assert!(lines[0].text.len() <= MAX_LINE_BYTES + '…'.len_utf8());
        assert!(lines[0].text.ends_with('…'));
    }

    #[test]
    fn a_plugin_past_its_log_rate_has_its_lines_dropped_and_counted() {
        let gate = LogGate::new();
        let journal = Journal::shared("p".into(), gate.clone());
        let mut j = journal.lock().unwrap();
        // The burst passes at once; lines past it in the same instant are dropped.
        for i in 0..(LINE_BURST as usize + 50) {
            j.record(Level::Info, Source::Log, format!("line {i}"));
            if j.lines.len() >= MAX_LINES {
                j.take();
            }
        }
        let (_, dropped) = j.take();
        assert!(dropped >= 40, "dropped {dropped}");
        assert!(gate.dropped.load(Ordering::Relaxed) >= 40);
        // Another journal of the same plugin (another instance) shares the rate.
        let other = Journal::shared("p".into(), gate);
        let mut o = other.lock().unwrap();
        o.record(Level::Info, Source::Log, "one more".into());
        let (lines, dropped) = o.take();
        assert!(lines.is_empty() && dropped == 1, "{lines:?} {dropped}");
    }
}
