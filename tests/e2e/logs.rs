//! The node's function log (target `edge::function`: function logs, stdout and stderr lines,
//! failures), captured in this process so that tests can assert what an operator reads.
//!
//! Tests run in parallel and share the capture: each looks only for lines carrying text of its
//! own (a unique path or message).

use std::io::Write;
use std::sync::{Mutex, Once};

use tracing_subscriber::filter::Targets;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::Layer;

static LINES: Mutex<Vec<String>> = Mutex::new(Vec::new());

/// One event's formatted text, stored when the formatter is done with it.
#[derive(Default)]
struct Capture(Vec<u8>);

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        let text = String::from_utf8_lossy(&self.0);
        if let Ok(mut lines) = LINES.lock() {
            lines.extend(text.lines().map(str::to_owned));
        }
    }
}

/// Starts capturing (once per test binary).
pub fn capture() {
    static START: Once = Once::new();
    START.call_once(|| {
        let layer = tracing_subscriber::fmt::layer()
            .with_ansi(false)
            .with_writer(Capture::default)
            .with_filter(Targets::new().with_target("edge::function", tracing::Level::TRACE));
        // Another subscriber would only mean another test binary set one: nothing to capture.
        let _ = tracing_subscriber::registry().with(layer).try_init();
    });
}

/// The captured lines that contain `text`.
pub fn lines_with(text: &str) -> Vec<String> {
    LINES
        .lock()
        .map(|lines| lines.iter().filter(|l| l.contains(text)).cloned().collect())
        .unwrap_or_default()
}
