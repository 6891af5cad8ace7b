//! The in-memory object store: `quick_cache` weighted by bytes, bounded by `cache.max_size`,
//! with `Vary` handled by one index entry per key and one entry per variant.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use http::header::{HeaderName, CONTENT_LENGTH, ETAG, TRANSFER_ENCODING, VARY};
use http::{HeaderMap, HeaderValue, StatusCode};

use super::key::CacheKey;
use super::stored_headers::StoredHeaders;

/// Weight charged for an entry on top of its body and headers: key, map and `Arc` overheads, so
/// that a flood of tiny objects still counts against `max_size`.
const ENTRY_OVERHEAD: u64 = 256;
/// Paths invalidated by unsafe requests that are remembered before one sweep of the store
/// removes their objects: a sweep walks every entry, so it is paid once per this many
/// invalidations, and the list a lookup consults stays small.
const MAX_INVALIDATED_PATHS: usize = 1024;

/// A stored response, complete and immutable; hits share it by `Arc`.
#[derive(Debug)]
pub struct CachedObject {
    /// The origin's status.
    pub status: StatusCode,
    /// Headers as they go to viewers, without `Age` and `X-Cache`, which depend on the hit.
    pub headers: StoredHeaders,
    /// The whole body.
    pub body: Bytes,
    /// When it was stored (or last revalidated).
    pub stored_at: Instant,
    /// Freshness remaining at `stored_at`.
    pub ttl: Duration,
    /// The origin's `Age` at `stored_at`, in seconds.
    pub initial_age: u64,
    /// The parsed `Last-Modified`, for `If-Modified-Since` and revalidation.
    pub last_modified: Option<SystemTime>,
}

impl CachedObject {
    /// Builds an object from a complete response, reading its validators once. Its
    /// `Content-Length` is rebuilt from the body: whatever framing the response arrived with,
    /// every hit must announce exactly the bytes it sends.
    pub fn new(
        status: StatusCode,
        mut headers: HeaderMap,
        body: Bytes,
        ttl: Duration,
        initial_age: u64,
    ) -> Self {
        headers.remove(TRANSFER_ENCODING);
        if status == StatusCode::NO_CONTENT {
            headers.remove(CONTENT_LENGTH);
        } else {
            headers.insert(CONTENT_LENGTH, HeaderValue::from(body.len()));
        }
        let last_modified = crate::conditional::last_modified(&headers);
        CachedObject {
            status,
            // Values parsed by hyper are slices of the connection's read buffer: kept as they
            // are, each stored header would keep that whole buffer (8 KiB or more) alive.
            headers: StoredHeaders::new(&headers),
            body,
            stored_at: Instant::now(),
            ttl,
            initial_age,
            last_modified,
        }
    }

    /// The `ETag`, for `If-None-Match` and revalidation.
    pub fn etag(&self) -> Option<HeaderValue> {
        self.headers.get(&ETAG)
    }

    /// Whether it may be served without asking the origin.
    pub fn is_fresh(&self, now: Instant) -> bool {
        now.saturating_duration_since(self.stored_at) < self.ttl
    }

    /// The `Age` to send, in seconds (RFC 9111 §4.2.3).
    pub fn age(&self, now: Instant) -> u64 {
        self.initial_age + now.saturating_duration_since(self.stored_at).as_secs()
    }

    fn weight(&self) -> u64 {
        (self.body.len() + self.headers.weight()) as u64 + ENTRY_OVERHEAD
    }
}

/// The result of looking a key up.
#[derive(Debug)]
pub enum Lookup {
    /// Fresh: serve it.
    Fresh(Arc<CachedObject>),
    /// Present but stale: revalidate with the origin before serving it.
    Stale(Arc<CachedObject>),
    /// Absent.
    Miss,
}

#[derive(Clone)]
enum Entry {
    Object(Arc<CachedObject>),
    /// The object under this key varies on these request headers; variants live under
    /// `key.variant(..)`.
    Vary(Arc<[HeaderName]>),
}

#[derive(Clone)]
struct ByteWeighter;

impl quick_cache::Weighter<CacheKey, Entry> for ByteWeighter {
    fn weight(&self, key: &CacheKey, entry: &Entry) -> u64 {
        let value = match entry {
            Entry::Object(o) => o.weight(),
            Entry::Vary(names) => ENTRY_OVERHEAD + names.len() as u64 * 16,
        };
        key.as_str().len() as u64 + value
    }
}

/// The cache of one node.
pub struct Store {
    entries: quick_cache::sync::Cache<CacheKey, Entry, ByteWeighter>,
    /// Host and path invalidated by an unsafe request, and when: objects stored under them
    /// before that instant are gone (every query and `Vary` variant; see [`Store::invalidate`]).
    invalidated: Mutex<HashMap<String, Instant>>,
    /// Whether `invalidated` has entries, so lookups skip its lock when it has none.
    any_invalidated: AtomicBool,
}

impl Store {
    /// A store holding at most `max_size` bytes, able to hold objects of `max_object_size`.
    pub fn new(max_size: u64, max_object_size: u64) -> Self {
        // quick_cache refuses items heavier than one shard's share, so the shard count is chosen
        // to keep a shard at least twice the largest object.
        let shards = (max_size / max_object_size.saturating_mul(2).max(1)).clamp(1, 64) as usize;
        let shards = if shards.is_power_of_two() {
            shards
        } else {
            shards.next_power_of_two() / 2
        };
        let estimated_items = (max_size / (16 * 1024)).clamp(64, 1 << 24) as usize;
        let options = quick_cache::OptionsBuilder::new()
            .shards(shards)
            .estimated_items_capacity(estimated_items)
            .weight_capacity(max_size)
            .build()
            .expect("shards, items and weight are all set");
        let entries = quick_cache::sync::Cache::with_options(
            options,
            ByteWeighter,
            quick_cache::DefaultHashBuilder::default(),
            quick_cache::sync::DefaultLifecycle::default(),
        );
        Store {
            entries,
            invalidated: Mutex::default(),
            any_invalidated: AtomicBool::new(false),
        }
    }

    /// [`lookup`](Self::lookup), except that an object an unsafe request has invalidated since
    /// it was stored is a miss.
    pub fn lookup_current(&self, key: &CacheKey, request: &HeaderMap, now: Instant) -> Lookup {
        let found = self.lookup(key, request, now);
        if !self.any_invalidated.load(Ordering::Acquire) {
            return found;
        }
        let object = match &found {
            Lookup::Fresh(o) | Lookup::Stale(o) => o,
            Lookup::Miss => return found,
        };
        let invalidated = self.invalidated.lock().unwrap_or_else(|p| p.into_inner());
        match invalidated.get(key.host_path()) {
            Some(at) if object.stored_at <= *at => Lookup::Miss,
            _ => found,
        }
    }

    /// Invalidates every object stored so far under `host_path` (lowercase host, then path):
    /// all its query strings, request-header and cookie key parts, and `Vary` variants
    /// (RFC 9111 §4.4). Objects under a key a function set outright are not reached.
    ///
    /// The path is remembered rather than searched for, since finding every key under it means
    /// walking the whole store; once [`MAX_INVALIDATED_PATHS`] are remembered, one walk removes
    /// their objects and the list starts over.
    pub fn invalidate(&self, host_path: &str) {
        let now = Instant::now();
        let mut invalidated = self.invalidated.lock().unwrap_or_else(|p| p.into_inner());
        invalidated.insert(host_path.to_owned(), now);
        self.any_invalidated.store(true, Ordering::Release);
        if invalidated.len() < MAX_INVALIDATED_PATHS {
            return;
        }
        let swept = std::mem::take(&mut *invalidated);
        self.entries
            .retain(|key, entry| match swept.get(key.host_path()) {
                None => true,
                Some(at) => match entry {
                    Entry::Object(object) => object.stored_at > *at,
                    // The index goes too; a later store of the path writes it again.
                    Entry::Vary(_) => false,
                },
            });
        self.any_invalidated.store(false, Ordering::Release);
    }

    /// Finds the object for `key` and the request's headers (which pick a `Vary` variant).
    pub fn lookup(&self, key: &CacheKey, request: &HeaderMap, now: Instant) -> Lookup {
        let object = match self.entries.get(key) {
            None => return Lookup::Miss,
            Some(Entry::Object(o)) => o,
            Some(Entry::Vary(names)) => match self
                .entries
                .get(&key.variant(&variant_suffix(&names, request)))
            {
                Some(Entry::Object(o)) => o,
                _ => return Lookup::Miss,
            },
        };
        if object.is_fresh(now) {
            Lookup::Fresh(object)
        } else {
            Lookup::Stale(object)
        }
    }

    /// Stores `object` as the response for `key` and the request headers that produced it.
    pub fn insert(&self, key: &CacheKey, request: &HeaderMap, object: Arc<CachedObject>) {
        let names = vary_names(&object.headers);
        if names.is_empty() {
            self.entries.insert(key.clone(), Entry::Object(object));
        } else {
            let variant = key.variant(&variant_suffix(&names, request));
            self.entries.insert(key.clone(), Entry::Vary(names.into()));
            self.entries.insert(variant, Entry::Object(object));
        }
    }

    /// Removes the entry under `key` (an object, or a `Vary` index and with it every variant
    /// reached through it).
    pub fn remove(&self, key: &CacheKey) {
        self.entries.remove(key);
    }

    /// Removes every entry whose key satisfies `matches` (given the key's host and path).
    pub fn remove_matching(&self, matches: impl Fn(&str) -> bool) {
        self.entries.retain(|key, _| !matches(key.host_path()));
    }

    /// Number of entries (objects and `Vary` index entries).
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the store is empty.
    pub fn is_empty(&self) -> bool {
        self.entries.len() == 0
    }

    /// Bytes charged against `max_size`.
    pub fn weight(&self) -> u64 {
        self.entries.weight()
    }
}

/// The request header names a response varies on, lowercase, in order.
fn vary_names(headers: &StoredHeaders) -> Vec<HeaderName> {
    let mut names = Vec::new();
    for value in headers.get_all(&VARY) {
        let Ok(value) = value.to_str() else { continue };
        let parsed = value
            .split(',')
            .map(|n| HeaderName::from_bytes(n.trim().as_bytes()));
        names.extend(parsed.filter_map(Result::ok));
    }
    names
}

/// The part of a variant key taken from the request: each varied header's value.
fn variant_suffix(names: &[HeaderName], request: &HeaderMap) -> String {
    let mut suffix = String::from("vary");
    for name in names {
        suffix.push('|');
        suffix.push_str(name.as_str());
        suffix.push('=');
        super::key::push_header_values(&mut suffix, request, name);
    }
    suffix
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(path: &str) -> CacheKey {
        let (parts, ()) = http::Request::get(path)
            .header("host", "h")
            .body(())
            .expect("valid")
            .into_parts();
        CacheKey::build(&Default::default(), &parts)
    }

    fn object(body: &'static str, headers: &[(&str, &str)], ttl: u64) -> Arc<CachedObject> {
        let mut map = HeaderMap::new();
        for (n, v) in headers {
            map.append(
                HeaderName::from_bytes(n.as_bytes()).expect("name"),
                v.parse().expect("value"),
            );
        }
        Arc::new(CachedObject::new(
            StatusCode::OK,
            map,
            Bytes::from_static(body.as_bytes()),
            Duration::from_secs(ttl),
            0,
        ))
    }

    fn request(headers: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (n, v) in headers {
            map.append(
                HeaderName::from_bytes(n.as_bytes()).expect("name"),
                v.parse().expect("value"),
            );
        }
        map
    }

    fn body(l: Lookup) -> Option<(bool, Bytes)> {
        match l {
            Lookup::Fresh(o) => Some((true, o.body.clone())),
            Lookup::Stale(o) => Some((false, o.body.clone())),
            Lookup::Miss => None,
        }
    }

    #[test]
    fn fresh_then_stale() {
        let store = Store::new(1 << 20, 1 << 16);
        store.insert(&key("/a"), &HeaderMap::new(), object("a", &[], 10));
        let now = Instant::now();
        assert_eq!(
            body(store.lookup(&key("/a"), &HeaderMap::new(), now)),
            Some((true, Bytes::from("a")))
        );
        let later = now + Duration::from_secs(11);
        assert_eq!(
            body(store.lookup(&key("/a"), &HeaderMap::new(), later)),
            Some((false, Bytes::from("a")))
        );
        assert!(body(store.lookup(&key("/b"), &HeaderMap::new(), now)).is_none());
    }

    #[test]
    fn vary_keeps_variants_apart() {
        let store = Store::new(1 << 20, 1 << 16);
        let now = Instant::now();
        let en = request(&[("accept-language", "en")]);
        let fr = request(&[("accept-language", "fr")]);
        store.insert(
            &key("/a"),
            &en,
            object("hello", &[("vary", "Accept-Language")], 10),
        );
        assert_eq!(
            body(store.lookup(&key("/a"), &en, now)),
            Some((true, Bytes::from("hello")))
        );
        assert!(body(store.lookup(&key("/a"), &fr, now)).is_none());
        store.insert(
            &key("/a"),
            &fr,
            object("bonjour", &[("vary", "Accept-Language")], 10),
        );
        assert_eq!(
            body(store.lookup(&key("/a"), &fr, now)),
            Some((true, Bytes::from("bonjour")))
        );
        assert_eq!(
            body(store.lookup(&key("/a"), &en, now)),
            Some((true, Bytes::from("hello")))
        );
    }

    #[test]
    fn content_length_is_rebuilt_from_the_body() {
        let stored = object(
            "hello world",
            &[("content-length", "5"), ("transfer-encoding", "chunked")],
            10,
        );
        assert_eq!(stored.headers.get_all(&CONTENT_LENGTH).count(), 1);
        assert_eq!(
            stored.headers.get(&CONTENT_LENGTH),
            Some(HeaderValue::from(11))
        );
        assert!(!stored.headers.contains_key(&TRANSFER_ENCODING));
    }

    #[test]
    fn stored_headers_do_not_keep_the_read_buffer_and_leave_room_for_two() {
        // As hyper parses them: values are slices of one big read buffer.
        let read_buffer = Bytes::from(
            b"text/html; charset=utf-8|\"v1\"|a=1|b=2|"
                .iter()
                .copied()
                .chain(std::iter::repeat_n(b' ', 8192))
                .collect::<Vec<u8>>(),
        );
        let value = |range: std::ops::Range<usize>| {
            HeaderValue::from_maybe_shared(read_buffer.slice(range)).expect("valid value")
        };
        let mut parsed = HeaderMap::with_capacity(32);
        parsed.append("content-type", value(0..24));
        parsed.append(ETAG, value(25..29));
        parsed.append("set-cookie2", value(30..33));
        parsed.append("set-cookie2", value(34..37));
        let mut secret = value(30..33);
        secret.set_sensitive(true);
        parsed.append("x-secret", secret);
        let object = CachedObject::new(
            StatusCode::OK,
            parsed,
            Bytes::from_static(b"body"),
            Duration::from_secs(10),
            0,
        );
        assert!(
            read_buffer.is_unique(),
            "a stored value still points into the read buffer"
        );
        let map = object.headers.to_map();
        let pairs: Vec<(&str, &[u8])> = map
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_bytes()))
            .collect();
        assert_eq!(
            pairs,
            [
                ("content-type", &b"text/html; charset=utf-8"[..]),
                ("etag", b"\"v1\""),
                ("set-cookie2", b"a=1"),
                ("set-cookie2", b"b=2"),
                ("x-secret", b"a=1"),
                ("content-length", b"4"),
            ]
        );
        assert!(map["x-secret"].is_sensitive() && !map["etag"].is_sensitive());
        assert_eq!(object.etag(), Some(HeaderValue::from_static("\"v1\"")));
        let cookies: Vec<_> = object
            .headers
            .get_all(&HeaderName::from_static("set-cookie2"))
            .collect();
        assert_eq!(cookies, ["a=1", "b=2"]);
        // Room for the two headers every hit adds, so adding them does not grow the map.
        assert!(map.capacity() >= map.len() + 2);
    }

    #[test]
    fn weight_is_bounded_by_max_size() {
        let store = Store::new(64 * 1024, 8 * 1024);
        let big: &'static str = Box::leak("x".repeat(4000).into_boxed_str());
        for i in 0..100 {
            store.insert(
                &key(&format!("/{i}")),
                &HeaderMap::new(),
                object(big, &[], 10),
            );
        }
        assert!(store.weight() <= 64 * 1024, "weight {}", store.weight());
        assert!(!store.is_empty());
    }

    #[test]
    fn remove_matching_by_path() {
        let store = Store::new(1 << 20, 1 << 16);
        store.insert(&key("/img/a"), &HeaderMap::new(), object("a", &[], 10));
        store.insert(&key("/css/b"), &HeaderMap::new(), object("b", &[], 10));
        store.remove_matching(|hp| hp.starts_with("h/img/"));
        assert!(body(store.lookup(&key("/img/a"), &HeaderMap::new(), Instant::now())).is_none());
        assert!(body(store.lookup(&key("/css/b"), &HeaderMap::new(), Instant::now())).is_some());
    }

    fn keyed(path: &str, query_all: bool) -> CacheKey {
        let (parts, ()) = http::Request::get(path)
            .header("host", "h")
            .body(())
            .expect("valid")
            .into_parts();
        let config = crate::config::CacheKeyConfig {
            query: if query_all {
                crate::config::QueryKey::All
            } else {
                crate::config::QueryKey::None
            },
            ..Default::default()
        };
        CacheKey::build(&config, &parts)
    }

    #[test]
    fn invalidation_reaches_every_variant_of_the_path_and_nothing_stored_later() {
        let store = Store::new(1 << 20, 1 << 16);
        let en = request(&[("accept-language", "en")]);
        let vary = [("vary", "Accept-Language")];
        store.insert(&keyed("/a?x=1", true), &en, object("a1", &vary, 60));
        store.insert(&keyed("/a?x=2", true), &en, object("a2", &vary, 60));
        store.insert(&keyed("/a", false), &HeaderMap::new(), object("a", &[], 60));
        store.insert(
            &keyed("/ab", false),
            &HeaderMap::new(),
            object("ab", &[], 60),
        );
        let found = |k: &CacheKey, r: &HeaderMap| body(store.lookup_current(k, r, Instant::now()));

        store.invalidate("h/a");
        assert!(found(&keyed("/a?x=1", true), &en).is_none());
        assert!(found(&keyed("/a?x=2", true), &en).is_none());
        assert!(found(&keyed("/a", false), &HeaderMap::new()).is_none());
        assert_eq!(
            found(&keyed("/ab", false), &HeaderMap::new()),
            Some((true, Bytes::from("ab"))),
            "another path"
        );

        store.insert(
            &keyed("/a", false),
            &HeaderMap::new(),
            object("new", &[], 60),
        );
        assert_eq!(
            found(&keyed("/a", false), &HeaderMap::new()),
            Some((true, Bytes::from("new"))),
            "stored after the invalidation"
        );
    }

    #[test]
    fn remembered_invalidations_are_swept_from_the_store() {
        let store = Store::new(1 << 20, 1 << 16);
        store.insert(&keyed("/a", false), &HeaderMap::new(), object("a", &[], 60));
        store.insert(&keyed("/b", false), &HeaderMap::new(), object("b", &[], 60));
        store.invalidate("h/a");
        assert_eq!(store.len(), 2, "remembered, not yet swept");
        for i in 1..MAX_INVALIDATED_PATHS {
            store.invalidate(&format!("h/other/{i}"));
        }
        assert_eq!(store.len(), 1, "the sweep removed /a");
        assert!(store.invalidated.lock().expect("lock").is_empty());
        let found = |k: &CacheKey| body(store.lookup_current(k, &HeaderMap::new(), Instant::now()));
        assert!(found(&keyed("/a", false)).is_none());
        assert!(found(&keyed("/b", false)).is_some());
    }
}
