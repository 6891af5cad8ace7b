//! The cache key: which parts of a request decide that two requests get the same object.
//!
//! Host and path always; then the query, request headers and cookies that the behavior's
//! `cache_key` lists, and nothing else. A key that ignores a part the origin varies on serves
//! one viewer's object to another (cache poisoning), so origins that vary must say so with
//! `Vary` (honoured by `store`) or be listed here.

use edge_sdk::host::cache_key::{self, Query, Rules};
use http::request::Parts;

use crate::config::{CacheKeyConfig, QueryKey};

pub use cache_key::{cookie, push_header_values};

/// A built cache key; cheap to hash and compare.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CacheKey(String);

impl CacheKey {
    /// Builds the key for a request under a behavior's key config, with the code the SDK's
    /// test host runs too (`edge_sdk::host::cache_key`), so tests see the node's keys.
    pub fn build(config: &CacheKeyConfig, req: &Parts) -> Self {
        let query = match &config.query {
            QueryKey::None => Query::None,
            QueryKey::All => Query::All,
            QueryKey::Allow(names) => Query::Allow(names),
        };
        let rules = Rules {
            query,
            headers: &config.headers,
            cookies: &config.cookies,
        };
        CacheKey(cache_key::build(&rules, &req.uri, &req.headers))
    }

    /// A key an edge function set outright, kept apart from every key
    /// [`build`](Self::build) makes.
    pub fn custom(key: &str) -> Self {
        CacheKey(cache_key::custom(key))
    }

    /// The key with a suffix, for the variants of a `Vary` response.
    pub fn variant(&self, suffix: &str) -> Self {
        let mut key = String::with_capacity(self.0.len() + suffix.len() + 1);
        key.push_str(&self.0);
        cache_key::push_part(&mut key, suffix);
        CacheKey(key)
    }

    /// The key as text, for logs and debugging.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The host and path the key starts with (what invalidation matches against).
    pub fn host_path(&self) -> &str {
        self.0.split([cache_key::SEP, '?']).next().unwrap_or("")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::header::HeaderName;

    fn key(config: &CacheKeyConfig, uri: &str, headers: &[(&str, &str)]) -> String {
        let mut b = http::Request::get(uri).header("host", "Example.COM");
        for (n, v) in headers {
            b = b.header(*n, *v);
        }
        let (parts, ()) = b.body(()).expect("valid request").into_parts();
        CacheKey::build(config, &parts).0
    }

    #[test]
    fn query_none_ignores_query() {
        let c = CacheKeyConfig::default();
        assert_eq!(key(&c, "/a?x=1", &[]), key(&c, "/a?y=2", &[]));
        assert_eq!(key(&c, "/a?x=1", &[]), "example.com/a");
    }

    #[test]
    fn query_all_is_order_independent() {
        let c = CacheKeyConfig {
            query: QueryKey::All,
            ..Default::default()
        };
        assert_eq!(key(&c, "/a?b=2&a=1", &[]), key(&c, "/a?a=1&b=2", &[]));
        assert_ne!(key(&c, "/a?a=1", &[]), key(&c, "/a?a=2", &[]));
        // Repeated names keep their relative order: that order can be meaningful.
        assert_ne!(key(&c, "/a?a=1&a=2", &[]), key(&c, "/a?a=2&a=1", &[]));
    }

    #[test]
    fn query_allow_list_keeps_only_listed() {
        let c = CacheKeyConfig {
            query: QueryKey::Allow(vec!["page".into()]),
            ..Default::default()
        };
        assert_eq!(
            key(&c, "/a?page=2&utm=x", &[]),
            key(&c, "/a?utm=y&page=2", &[])
        );
        assert_ne!(key(&c, "/a?page=2", &[]), key(&c, "/a?page=3", &[]));
        // `pages` is not `page`.
        assert_eq!(key(&c, "/a?pages=1", &[]), key(&c, "/a", &[]));
    }

    #[test]
    fn only_listed_headers_and_cookies_count() {
        let c = CacheKeyConfig {
            headers: vec![HeaderName::from_static("accept-language")],
            cookies: vec!["session".into()],
            ..Default::default()
        };
        let en = key(
            &c,
            "/a",
            &[("accept-language", "en"), ("cookie", "session=1; other=2")],
        );
        assert_eq!(
            en,
            key(
                &c,
                "/a",
                &[
                    ("accept-language", "en"),
                    ("cookie", "other=3;session=1"),
                    ("user-agent", "x")
                ]
            )
        );
        assert_ne!(
            en,
            key(
                &c,
                "/a",
                &[("accept-language", "fr"), ("cookie", "session=1")]
            )
        );
        assert_ne!(
            en,
            key(
                &c,
                "/a",
                &[("accept-language", "en"), ("cookie", "session=2")]
            )
        );
    }

    #[test]
    fn host_is_case_insensitive_and_part_of_key() {
        let c = CacheKeyConfig::default();
        let (a, ()) = http::Request::get("/x")
            .header("host", "a.test")
            .body(())
            .expect("valid")
            .into_parts();
        let (b, ()) = http::Request::get("/x")
            .header("host", "b.test")
            .body(())
            .expect("valid")
            .into_parts();
        assert_ne!(CacheKey::build(&c, &a), CacheKey::build(&c, &b));
        assert_eq!(CacheKey::build(&c, &a).host_path(), "a.test/x");
    }
}
