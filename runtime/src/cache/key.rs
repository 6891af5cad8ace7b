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

    /// A key exactly as another node computed it (a tier request's `X-Edge-Tier-Key`).
    pub fn from_text(key: String) -> Self {
        CacheKey(key)
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

#[cfg(test)]
mod proptests {
    use super::*;
    use cache_key::SEP;
    use http::header::{HeaderName, HOST};
    use proptest::prelude::*;

    fn parts(host: &str, path_and_query: &str, headers: &[(String, String)]) -> Option<Parts> {
        let mut b = http::Request::get(path_and_query);
        b = b.header(HOST, http::HeaderValue::from_str(host).ok()?);
        for (n, v) in headers {
            b = b.header(
                HeaderName::from_bytes(n.as_bytes()).ok()?,
                http::HeaderValue::from_str(v).ok()?,
            );
        }
        Some(b.body(()).ok()?.into_parts().0)
    }

    fn config() -> impl Strategy<Value = CacheKeyConfig> {
        (
            prop_oneof![
                Just(QueryKey::None),
                Just(QueryKey::All),
                prop::collection::btree_set("[a-c]{1,2}", 0..3)
                    .prop_map(|names| QueryKey::Allow(names.into_iter().collect())),
            ],
            prop::collection::vec(prop_oneof![Just("accept-language"), Just("x-device")], 0..2),
            prop::collection::vec("[a-c]{1,3}", 0..2),
        )
            .prop_map(|(query, headers, cookies)| CacheKeyConfig {
                query,
                headers: headers.into_iter().map(HeaderName::from_static).collect(),
                cookies,
            })
    }

    /// `name=value` pairs with distinct names.
    fn params() -> impl Strategy<Value = Vec<String>> {
        prop::collection::btree_map("[a-c]{1,2}", "[a-z0-9%]{0,3}", 0..5)
            .prop_map(|m| m.into_iter().map(|(n, v)| format!("{n}={v}")).collect())
    }

    proptest! {
        /// Arbitrary hosts, targets, headers and cookies never panic the key builder.
        #[test]
        fn arbitrary_requests_never_panic(
            config in config(),
            host in "[ -~]{0,20}",
            target in "/[!-~]{0,30}",
            headers in prop::collection::vec(("accept-language|x-device|cookie", "[ -~]{0,20}"), 0..4),
        ) {
            if let Some(parts) = parts(&host, &target, &headers) {
                let key = CacheKey::build(&config, &parts);
                prop_assert!(!key.as_str().starts_with(SEP));
            }
        }

        /// The order of distinct query parameters never splits the cache, and the host's case
        /// does not either.
        #[test]
        fn parameter_order_and_host_case_do_not_matter(
            config in config(),
            host in "[a-zA-Z]{1,8}\\.test",
            path in "/[a-z/]{0,10}",
            params in params(),
            seed in any::<u64>(),
        ) {
            let mut shuffled = params.clone();
            // A deterministic shuffle from the seed.
            let n = shuffled.len();
            for i in (1..n).rev() {
                shuffled.swap(i, (seed.wrapping_mul(i as u64 + 7) % (i as u64 + 1)) as usize);
            }
            let a = parts(&host, &format!("{path}?{}", params.join("&")), &[]).expect("valid");
            let b = parts(&host.to_ascii_uppercase(), &format!("{path}?{}", shuffled.join("&")), &[]).expect("valid");
            prop_assert_eq!(CacheKey::build(&config, &a), CacheKey::build(&config, &b));
        }

        /// Host and path are always in the key: they are what invalidation matches, and two
        /// different paths never share an object.
        #[test]
        fn host_and_path_start_the_key(config in config(), host in "[a-z]{1,8}\\.test", p1 in "/[a-z0-9/._-]{0,12}", p2 in "/[a-z0-9/._-]{0,12}", q in "[a-c=&]{0,8}") {
            let a = parts(&host, &format!("{p1}?{q}"), &[]).expect("valid");
            let key = CacheKey::build(&config, &a);
            prop_assert_eq!(key.host_path(), format!("{host}{p1}"));
            let b = parts(&host, &format!("{p2}?{q}"), &[]).expect("valid");
            prop_assert_eq!(key == CacheKey::build(&config, &b), p1 == p2);
        }

        /// A key a function sets never equals a key the node builds, nor a variant of one.
        #[test]
        fn custom_keys_stay_apart(config in config(), custom in "[ -~\\n]{0,30}", host in "[a-z]{0,8}", target in "/[!-~]{0,20}") {
            if let Some(p) = parts(&host, &target, &[]) {
                let built = CacheKey::build(&config, &p);
                prop_assert_ne!(&CacheKey::custom(&custom), &built);
                prop_assert_ne!(CacheKey::custom(&custom), built.variant("origin=app"));
            }
        }
    }
}
