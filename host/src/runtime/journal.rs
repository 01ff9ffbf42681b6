//! What a plugin said during one call: its `log` calls and its standard output and error.
//!
//! Every line goes to `tracing` at once, tagged with the plugin's name, and is also kept in
//! the call's [`Journal`] so a caller (such as `wharf plugin run`) can show it. The journal is
//! bounded, so a chatty plugin cannot grow the host's memory; lines past the bound still reach
//! `tracing` and are counted as dropped.

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};

/// Lines kept per call; the rest are counted.
const MAX_LINES: usize = 1_000;
/// A line longer than this is cut (the rest is counted as dropped bytes).
const MAX_LINE_BYTES: usize = 8 * 1024;

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
    lines: Vec<LogLine>,
    dropped: usize,
    partial_stdout: Vec<u8>,
    partial_stderr: Vec<u8>,
}

/// The journal shared between a call's state and its stdout/stderr streams.
pub(crate) type SharedJournal = Arc<Mutex<Journal>>;

impl Journal {
    pub(crate) fn shared(plugin: Arc<str>) -> SharedJournal {
        Arc::new(Mutex::new(Journal {
            plugin,
            ..Journal::default()
        }))
    }

    pub(crate) fn record(&mut self, level: Level, source: Source, mut text: String) {
        let plugin = &*self.plugin;
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
        if text.len() > MAX_LINE_BYTES {
            let mut cut = MAX_LINE_BYTES;
            while !text.is_char_boundary(cut) {
                cut -= 1;
            }
            text.truncate(cut);
            text.push('…');
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
        let journal = Journal::shared("p".into());
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
        let journal = Journal::shared("p".into());
        let mut j = journal.lock().unwrap();
        for i in 0..(MAX_LINES + 5) {
            j.record(Level::Info, Source::Log, format!("line {i}"));
        }
        j.record(Level::Info, Source::Log, "x".repeat(MAX_LINE_BYTES * 2));
        let (lines, dropped) = j.take();
        assert_eq!(lines.len(), MAX_LINES);
        assert_eq!(dropped, 6);
    }
}
