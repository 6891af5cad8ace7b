//! The debug view of a request: when it carries the configured `[server] debug_header`, the
//! response tells how the node handled it: `X-Edge-Behavior`, `X-Edge-Origin`,
//! `X-Edge-Cache-Key`, `X-Edge-Tier-Parent` and `X-Edge-Tier-Parent-Cache` (the parent that served
//! a fill and its `X-Cache`), `X-Edge-Functions` (what each function changed, and whether it ran or
//! was replayed), `X-Edge-Error` (the
//! full error behind an error response) and `Server-Timing` per stage. Nothing is recorded for other requests.
//!
//! It exposes routing internals to whoever sends the header: enable it for development and
//! staging, or pick a header name only your team knows.

use std::time::{Duration, Instant};

use http::header::HeaderName;
use http::{HeaderMap, HeaderValue};

/// What a debugged request records as it goes.
#[derive(Debug)]
pub struct DebugInfo {
    last: Instant,
    timings: Vec<(&'static str, Duration)>,
    /// One entry per function run: `event=function: changes`.
    pub functions: Vec<String>,
    /// The cache key used, if the cache was looked up.
    pub cache_key: Option<String>,
    /// Why the node answered with an error, with every source: what the viewer's short error
    /// body leaves out.
    pub error: Option<String>,
    /// The regional-tier parent that served the fill, and its `X-Cache`.
    pub parent: Option<(String, String)>,
}

impl DebugInfo {
    /// Starts recording at `started`.
    pub fn new(started: Instant) -> Self {
        DebugInfo {
            last: started,
            timings: Vec::new(),
            functions: Vec::new(),
            cache_key: None,
            error: None,
            parent: None,
        }
    }

    /// Closes the stage that just ended.
    pub fn mark(&mut self, stage: &'static str) {
        let now = Instant::now();
        self.timings.push((stage, now - self.last));
        self.last = now;
    }

    /// Records what a function changed (`changes` empty: nothing), and whether its guest ran
    /// or its recorded decision was replayed (`wasm::replay`).
    pub fn function_changed(
        &mut self,
        event: edge_sdk::abi::Event,
        function: &str,
        replay: crate::wasm::replay::Replay,
        changes: &[String],
    ) {
        let summary = if changes.is_empty() {
            "no change".to_owned()
        } else {
            changes.join(", ")
        };
        let how = match replay {
            crate::wasm::replay::Replay::Ran => "ran",
            crate::wasm::replay::Replay::Replayed => "replayed",
        };
        self.functions.push(format!(
            "{}={function}: {summary} ({how})",
            event.export_name()
        ));
    }

    /// Writes the debug headers.
    pub fn write(
        &self,
        headers: &mut HeaderMap,
        behavior: Option<&str>,
        origin: Option<&str>,
        total: Duration,
    ) {
        let mut set = |name: &'static str, value: String| {
            if let Ok(v) = HeaderValue::from_str(&value) {
                headers.insert(HeaderName::from_static(name), v);
            }
        };
        set("x-edge-behavior", behavior.unwrap_or("-").to_owned());
        set("x-edge-origin", origin.unwrap_or("-").to_owned());
        if let Some(key) = &self.cache_key {
            // Key parts are separated by newlines internally; show them readably.
            set(
                "x-edge-cache-key",
                key.trim_start_matches('\n').replace('\n', " | "),
            );
        }
        if let Some((parent, cache)) = &self.parent {
            set("x-edge-tier-parent", parent.clone());
            set("x-edge-tier-parent-cache", cache.clone());
        }
        if !self.functions.is_empty() {
            set("x-edge-functions", self.functions.join("; "));
        }
        if let Some(error) = &self.error {
            // Traps carry multi-line backtraces; a header value is one line.
            let line: String = error
                .chars()
                .map(|c| if c.is_control() { ' ' } else { c })
                .collect();
            set("x-edge-error", line);
        }
        let mut timing: Vec<String> = self
            .timings
            .iter()
            .map(|(stage, d)| format!("{stage};dur={:.3}", d.as_secs_f64() * 1000.0))
            .collect();
        timing.push(format!("total;dur={:.3}", total.as_secs_f64() * 1000.0));
        set("server-timing", timing.join(", "));
    }
}

/// A one-line summary of what a function changed in a request's method, URI and headers.
pub fn request_changes(
    before: &(http::Method, http::Uri, HeaderMap),
    after: (&http::Method, &http::Uri, &HeaderMap),
) -> Vec<String> {
    let mut changes = Vec::new();
    if before.0 != after.0 {
        changes.push(format!("method {} -> {}", before.0, after.0));
    }
    if &before.1 != after.1 {
        changes.push(format!("uri {} -> {}", before.1, after.1));
    }
    changes.extend(header_changes(&before.2, after.2));
    changes
}

/// Header names added, changed or removed.
pub fn header_changes(before: &HeaderMap, after: &HeaderMap) -> Vec<String> {
    let mut changes = Vec::new();
    for name in after.keys() {
        match before.get_all(name).iter().eq(after.get_all(name).iter()) {
            true => {}
            false if before.contains_key(name) => changes.push(format!("changed {name}")),
            false => changes.push(format!("set {name}")),
        }
    }
    for name in before.keys().filter(|n| !after.contains_key(*n)) {
        changes.push(format!("removed {name}"));
    }
    changes
}
