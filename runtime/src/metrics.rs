//! Node metrics in the OpenMetrics text format (`GET /metrics` on the admin API, served as
//! [`CONTENT_TYPE`]): requests by status class and `X-Cache`, hit ratio, bytes served, origin
//! fetch latency by origin, fills per regional-tier parent (requests, failures, marked down),
//! function invocations, errors and duration by function and event,
//! cache objects and bytes.
//!
//! The request counters are resolved once at start into a small table, so counting a request
//! is an index and an atomic add; label sets are only hashed on misses and function calls.

use std::collections::HashMap;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

use crate::cache::Store;
use crate::flow::CachePhase;

/// The media type of [`Metrics::render`]'s output. prometheus-client writes OpenMetrics 1.0
/// text (counter families without `_total`, a final `# EOF`); under Prometheus's
/// `text/plain; version=0.0.4` a parser would mistake those families for untyped samples.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The media type of [`to_prometheus_text`]'s output, for scrapers that do not accept
/// [`CONTENT_TYPE`].
pub const PROMETHEUS_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Whether a request's `Accept` value takes Prometheus text but not OpenMetrics: an old
/// scraper. No `Accept`, `*/*` and Prometheus's own header all get OpenMetrics.
pub fn wants_prometheus_text(accept: &str) -> bool {
    let accept = accept.to_ascii_lowercase();
    accept.contains("text/plain") && !accept.contains("application/openmetrics-text")
}

/// OpenMetrics text (as [`Metrics::render`] writes it) as Prometheus text 0.0.4: counter
/// families take their samples' `_total` name, and `# UNIT` and `# EOF` go.
pub fn to_prometheus_text(openmetrics: &str) -> String {
    let mut counters = std::collections::HashSet::new();
    for line in openmetrics.lines() {
        if let Some(name) = line
            .strip_prefix("# TYPE ")
            .and_then(|rest| rest.strip_suffix(" counter"))
        {
            counters.insert(name.to_owned());
        }
    }
    let mut out = String::with_capacity(openmetrics.len());
    for line in openmetrics.lines() {
        if line.starts_with("# UNIT ") || line == "# EOF" {
            continue;
        }
        let described = ["# HELP ", "# TYPE "].into_iter().find_map(|prefix| {
            let rest = line.strip_prefix(prefix)?;
            let (name, tail) = rest.split_once(' ').unwrap_or((rest, ""));
            counters
                .contains(name)
                .then(|| format!("{prefix}{name}_total {tail}"))
        });
        match described {
            Some(line) => out.push_str(line.trim_end()),
            None => out.push_str(line),
        }
        out.push('\n');
    }
    out
}

const STATUS_CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];
const PHASES: [CachePhase; 6] = [
    CachePhase::Hit,
    CachePhase::Miss,
    CachePhase::RefreshHit,
    CachePhase::Generated,
    CachePhase::Error,
    CachePhase::Redirect,
];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    status_class: &'static str,
    x_cache: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OriginLabels {
    origin: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ParentLabels {
    parent: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FunctionLabels {
    function: String,
    event: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReplayLabels {
    function: String,
    event: &'static str,
    /// `replayed` or `ran`.
    result: &'static str,
}

/// One function version and event's invocation series (handles share the families' values).
struct FunctionSeries {
    /// The name the key's pointer belonged to: a freed name's address can be reused.
    name: Arc<str>,
    invocations: Counter,
    duration: Histogram,
    replayed: Counter,
    ran: Counter,
}

fn latency_histogram() -> Histogram {
    // 50 µs to ~26 s: function calls at the low end, slow origins at the high end.
    Histogram::new(exponential_buckets(0.00005, 2.0, 20))
}

/// Every metric of a node; shared by all its versions.
pub struct Metrics {
    registry: Registry,
    requests: [[Counter; 6]; 5],
    bytes: Counter,
    tls_handshake_failures: Counter,
    origin_fetch: Family<OriginLabels, Histogram>,
    /// The histograms of `origin_fetch` by origin name, found by comparing names: every miss
    /// records one, and the family's lookup would build and hash an owned label first.
    origin_fetch_by_name: RwLock<Vec<(String, Histogram)>>,
    invocations: Family<FunctionLabels, Counter>,
    parent_requests: Family<ParentLabels, Counter>,
    parent_failures: Family<ParentLabels, Counter>,
    parent_marked_down: Family<ParentLabels, Counter>,
    errors: Family<FunctionLabels, Counter>,
    function_duration: Family<FunctionLabels, Histogram>,
    replays: Family<ReplayLabels, Counter>,
    recorded: Family<FunctionLabels, Counter>,
    trees_dropped: Family<FunctionLabels, Counter>,
    /// The series of each function version and event, resolved once: hashing the labels and
    /// allocating the name for every invocation cost about 0.3 µs, a third of a replayed
    /// router's whole cost.
    // Looked up on every invocation: ahash (quick_cache's hasher) rather than SipHash, which
    // keys from inside the process do not need.
    series: RwLock<HashMap<(usize, &'static str), FunctionSeries, quick_cache::DefaultHashBuilder>>,
    hit_ratio: Gauge<f64, AtomicU64>,
    cache_objects: Gauge,
    cache_bytes: Gauge,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Registers every metric.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("edge");
        let family = Family::<RequestLabels, Counter>::default();
        let requests = STATUS_CLASSES.map(|status_class| {
            PHASES.map(|phase| {
                family
                    .get_or_create(&RequestLabels {
                        status_class,
                        x_cache: phase.as_str(),
                    })
                    .clone()
            })
        });
        registry.register(
            "requests",
            "Requests answered, by status class and X-Cache",
            family,
        );
        let bytes = Counter::default();
        registry.register(
            "served_bytes",
            "Response body bytes sent to viewers",
            bytes.clone(),
        );
        let tls_handshake_failures = Counter::default();
        registry.register(
            "tls_handshake_failures",
            "Viewer TLS handshakes that failed or timed out",
            tls_handshake_failures.clone(),
        );
        let origin_fetch = Family::<OriginLabels, Histogram>::new_with_constructor(
            latency_histogram as fn() -> Histogram,
        );
        registry.register(
            "origin_fetch_seconds",
            "Time from sending a request to an origin to its response headers",
            origin_fetch.clone(),
        );
        let parent_requests = Family::<ParentLabels, Counter>::default();
        registry.register(
            "tier_parent_requests",
            "Fills sent to a parent of the regional tier",
            parent_requests.clone(),
        );
        let parent_failures = Family::<ParentLabels, Counter>::default();
        registry.register(
            "tier_parent_failures",
            "Fills a parent failed (refused, timed out, token refused, its own error)",
            parent_failures.clone(),
        );
        let parent_marked_down = Family::<ParentLabels, Counter>::default();
        registry.register(
            "tier_parent_marked_down",
            "Times a parent was marked down and skipped for a while",
            parent_marked_down.clone(),
        );
        let invocations = Family::<FunctionLabels, Counter>::default();
        registry.register(
            "function_invocations",
            "Edge function invocations",
            invocations.clone(),
        );
        let errors = Family::<FunctionLabels, Counter>::default();
        registry.register(
            "function_errors",
            "Edge function invocations that failed or hit a limit",
            errors.clone(),
        );
        let function_duration = Family::<FunctionLabels, Histogram>::new_with_constructor(
            latency_histogram as fn() -> Histogram,
        );
        registry.register(
            "function_duration_seconds",
            "Edge function invocation time, instantiation included",
            function_duration.clone(),
        );
        let replays = Family::<ReplayLabels, Counter>::default();
        registry.register(
            "function_replays",
            "Edge function invocations by whether the recorded decision was replayed or the guest ran",
            replays.clone(),
        );
        let recorded = Family::<FunctionLabels, Counter>::default();
        registry.register(
            "function_recorded",
            "Fresh runs whose path was added to the function's decision tree",
            recorded.clone(),
        );
        let trees_dropped = Family::<FunctionLabels, Counter>::default();
        registry.register(
            "function_trees_dropped",
            "Decision trees dropped because they kept missing or outgrew replay_memory",
            trees_dropped.clone(),
        );
        let hit_ratio = Gauge::<f64, AtomicU64>::default();
        registry.register(
            "cache_hit_ratio",
            "Hits and refresh hits over cacheable lookups (hits + misses) since start",
            hit_ratio.clone(),
        );
        let cache_objects = Gauge::default();
        registry.register(
            "cache_objects",
            "Entries in the cache",
            cache_objects.clone(),
        );
        let cache_bytes = Gauge::default();
        registry.register(
            "cache_bytes",
            "Bytes charged against cache.max_size",
            cache_bytes.clone(),
        );
        Metrics {
            registry,
            requests,
            bytes,
            tls_handshake_failures,
            origin_fetch,
            origin_fetch_by_name: RwLock::default(),
            invocations,
            parent_requests,
            parent_failures,
            parent_marked_down,
            errors,
            function_duration,
            replays,
            recorded,
            trees_dropped,
            series: RwLock::default(),
            hit_ratio,
            cache_objects,
            cache_bytes,
        }
    }

    /// Counts a response.
    pub fn request(&self, status: u16, phase: CachePhase) {
        let class = usize::from(status / 100).clamp(1, 5) - 1;
        let phase = PHASES.iter().position(|p| *p == phase).unwrap_or(1);
        self.requests[class][phase].inc();
    }

    /// Counts body bytes sent.
    pub fn served(&self, bytes: u64) {
        self.bytes.inc_by(bytes);
    }

    /// Counts a viewer TLS handshake that failed or timed out.
    pub fn tls_handshake_failed(&self) {
        self.tls_handshake_failures.inc();
    }

    /// Counts a fill sent to `parent`.
    pub fn parent_request(&self, parent: &str) {
        self.parent_requests
            .get_or_create(&ParentLabels {
                parent: parent.to_owned(),
            })
            .inc();
    }

    /// Counts a fill `parent` failed.
    pub fn parent_failure(&self, parent: &str) {
        self.parent_failures
            .get_or_create(&ParentLabels {
                parent: parent.to_owned(),
            })
            .inc();
    }

    /// Counts `parent` being marked down.
    pub fn parent_marked_down(&self, parent: &str) {
        self.parent_marked_down
            .get_or_create(&ParentLabels {
                parent: parent.to_owned(),
            })
            .inc();
    }

    /// Records an origin fetch's time to headers.
    pub fn origin_fetch(&self, origin: &str, elapsed: Duration) {
        let seconds = elapsed.as_secs_f64();
        if let Some((_, histogram)) = self
            .origin_fetch_by_name
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .find(|(name, _)| name == origin)
        {
            histogram.observe(seconds);
            return;
        }
        let histogram = self
            .origin_fetch
            .get_or_create(&OriginLabels {
                origin: origin.to_owned(),
            })
            .clone();
        histogram.observe(seconds);
        let mut by_name = self
            .origin_fetch_by_name
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        if !by_name.iter().any(|(name, _)| name == origin) {
            by_name.push((origin.to_owned(), histogram));
        }
    }

    /// Records a function invocation.
    pub fn function(&self, function: &str, event: &'static str, elapsed: Duration, failed: bool) {
        let labels = FunctionLabels {
            function: function.to_owned(),
            event,
        };
        self.invocations.get_or_create(&labels).inc();
        if failed {
            self.errors.get_or_create(&labels).inc();
        }
        self.function_duration
            .get_or_create(&labels)
            .observe(elapsed.as_secs_f64());
    }

    /// Records a function invocation, as [`Metrics::function`] does, and what decision replay
    /// did with it (`wasm::replay`), with the series looked up by the address of the function
    /// version's name instead of by hashing its labels.
    pub fn function_invocation(
        &self,
        function: &Arc<str>,
        event: &'static str,
        elapsed: Duration,
        failed: bool,
        replay: crate::wasm::replay::Replay,
        recorded: crate::wasm::replay::Recorded,
    ) {
        let key = (Arc::as_ptr(function) as *const u8 as usize, event);
        let record = |series: &FunctionSeries| {
            series.invocations.inc();
            series.duration.observe(elapsed.as_secs_f64());
            match replay {
                crate::wasm::replay::Replay::Replayed => series.replayed.inc(),
                crate::wasm::replay::Replay::Ran => series.ran.inc(),
            };
        };
        let cached = match self.series.read() {
            Ok(series) => match series.get(&key) {
                Some(s) if Arc::ptr_eq(&s.name, function) => {
                    record(s);
                    true
                }
                _ => false,
            },
            Err(_) => false,
        };
        if !cached {
            let labels = FunctionLabels {
                function: function.to_string(),
                event,
            };
            let replays = |result| {
                self.replays
                    .get_or_create(&ReplayLabels {
                        function: function.to_string(),
                        event,
                        result,
                    })
                    .clone()
            };
            let series = FunctionSeries {
                name: Arc::clone(function),
                invocations: self.invocations.get_or_create(&labels).clone(),
                duration: self.function_duration.get_or_create(&labels).clone(),
                replayed: replays("replayed"),
                ran: replays("ran"),
            };
            record(&series);
            if let Ok(mut all) = self.series.write() {
                all.insert(key, series);
            }
        }
        if failed || recorded.added || recorded.dropped {
            let labels = FunctionLabels {
                function: function.to_string(),
                event,
            };
            if failed {
                self.errors.get_or_create(&labels).inc();
            }
            if recorded.added {
                self.recorded.get_or_create(&labels).inc();
            }
            if recorded.dropped {
                self.trees_dropped.get_or_create(&labels).inc();
            }
        }
    }

    /// The text exposition, with cache gauges read from `store` now.
    pub fn render(&self, store: &Store) -> String {
        let count = |phase: CachePhase| -> u64 {
            let column = PHASES.iter().position(|p| *p == phase).unwrap_or(0);
            self.requests.iter().map(|row| row[column].get()).sum()
        };
        let hits = count(CachePhase::Hit) + count(CachePhase::RefreshHit);
        let lookups = hits + count(CachePhase::Miss);
        self.hit_ratio.set(if lookups == 0 {
            0.0
        } else {
            hits as f64 / lookups as f64
        });
        self.cache_objects
            .set(i64::try_from(store.len()).unwrap_or(i64::MAX));
        self.cache_bytes
            .set(i64::try_from(store.weight()).unwrap_or(i64::MAX));
        let mut out = String::new();
        if let Err(e) = prometheus_client::encoding::text::encode(&mut out, &self.registry) {
            out = format!("# cannot encode metrics: {e}\n");
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prometheus_text_for_old_scrapers() {
        let m = Metrics::new();
        m.request(200, CachePhase::Hit);
        m.origin_fetch("app", Duration::from_millis(3));
        let open = m.render(&Store::new(1 << 20, 1 << 16));
        assert!(open.ends_with("# EOF\n"), "{open}");
        let text = to_prometheus_text(&open);
        assert!(
            !text.contains("# EOF") && !text.contains("# UNIT"),
            "{text}"
        );
        assert!(
            text.contains("# TYPE edge_requests_total counter\n"),
            "{text}"
        );
        assert!(text.contains("# HELP edge_requests_total "), "{text}");
        assert!(
            text.contains("# TYPE edge_origin_fetch_seconds histogram\n"),
            "{text}"
        );
        assert!(wants_prometheus_text("text/plain;version=0.0.4"));
        assert!(!wants_prometheus_text(
            "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5"
        ));
        assert!(!wants_prometheus_text("*/*"));
    }

    #[test]
    fn renders_counters_and_ratio() {
        let m = Metrics::new();
        m.request(200, CachePhase::Hit);
        m.request(200, CachePhase::Hit);
        m.request(200, CachePhase::Miss);
        m.request(502, CachePhase::Error);
        m.served(1234);
        m.origin_fetch("app", Duration::from_millis(3));
        m.origin_fetch("app", Duration::from_millis(4));
        m.origin_fetch("bucket", Duration::from_millis(1));
        m.function("router", "viewer-request", Duration::from_micros(20), false);
        m.function("router", "viewer-request", Duration::from_micros(20), true);
        let text = m.render(&Store::new(1 << 20, 1 << 16));
        assert!(
            text.contains(r#"edge_requests_total{status_class="2xx",x_cache="Hit"} 2"#),
            "{text}"
        );
        assert!(
            text.contains(r#"edge_requests_total{status_class="5xx",x_cache="Error"} 1"#),
            "{text}"
        );
        assert!(text.contains("edge_served_bytes_total 1234"), "{text}");
        assert!(text.contains("edge_cache_hit_ratio 0.666"), "{text}");
        assert!(
            text.contains(r#"edge_origin_fetch_seconds_count{origin="app"} 2"#),
            "{text}"
        );
        assert!(
            text.contains(r#"edge_origin_fetch_seconds_count{origin="bucket"} 1"#),
            "{text}"
        );
        assert!(
            text.contains(
                r#"edge_function_errors_total{function="router",event="viewer-request"} 1"#
            ),
            "{text}"
        );
        assert!(text.contains("edge_cache_objects 0"), "{text}");
    }

    #[test]
    fn invocations_are_counted_per_function_version_with_replays() {
        use crate::wasm::replay::{Recorded, Replay};
        let m = Metrics::new();
        let router: Arc<str> = Arc::from("router");
        let event = "viewer-request";
        let us = Duration::from_micros(1);
        let added = Recorded {
            added: true,
            dropped: false,
        };
        m.function_invocation(&router, event, us, false, Replay::Ran, added);
        m.function_invocation(
            &router,
            event,
            us,
            false,
            Replay::Replayed,
            Recorded::default(),
        );
        m.function_invocation(
            &router,
            event,
            us,
            false,
            Replay::Replayed,
            Recorded::default(),
        );
        // Another version of the function: its own name, the same series.
        let next: Arc<str> = Arc::from("router");
        let dropped = Recorded {
            added: false,
            dropped: true,
        };
        m.function_invocation(&next, event, us, true, Replay::Ran, dropped);
        let text = m.render(&Store::new(1 << 20, 1 << 16));
        for line in [
            r#"edge_function_invocations_total{function="router",event="viewer-request"} 4"#,
            r#"edge_function_errors_total{function="router",event="viewer-request"} 1"#,
            r#"edge_function_duration_seconds_count{function="router",event="viewer-request"} 4"#,
            r#"edge_function_replays_total{function="router",event="viewer-request",result="replayed"} 2"#,
            r#"edge_function_replays_total{function="router",event="viewer-request",result="ran"} 2"#,
            r#"edge_function_recorded_total{function="router",event="viewer-request"} 1"#,
            r#"edge_function_trees_dropped_total{function="router",event="viewer-request"} 1"#,
        ] {
            assert!(text.contains(line), "{line} in\n{text}");
        }
    }
}
