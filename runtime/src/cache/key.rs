//! The cache key: which parts of a request decide that two requests get the same object.
//!
//! Host and path always; then the query, request headers and cookies that the behavior's
//! `cache_key` lists, and nothing else. A key that ignores a part the origin varies on serves
//! one viewer's object to another (cache poisoning), so origins that vary must say so with
//! `Vary` (honoured by `store`) or be listed here.

use http::header::{COOKIE, HOST};
use http::request::Parts;

use crate::config::{CacheKeyConfig, QueryKey};

/// Separates key parts. No part can contain it: hyper refuses control bytes in URIs and
/// header values.
const SEP: char = '\n';

/// A built cache key; cheap to hash and compare.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CacheKey(String);

impl CacheKey {
    /// Builds the key for a request under a behavior's key config.
    pub fn build(config: &CacheKeyConfig, req: &Parts) -> Self {
        let host = req
            .headers
            .get(HOST)
            .and_then(|h| h.to_str().ok())
            .or_else(|| req.uri.authority().map(|a| a.as_str()))
            .unwrap_or("");
        let path = req.uri.path();
        let mut key = String::with_capacity(host.len() + path.len() + 16);
        key.extend(host.chars().map(|c| c.to_ascii_lowercase()));
        key.push_str(path);
        push_query(&mut key, &config.query, req.uri.query().unwrap_or(""));
        for name in &config.headers {
            key.push(SEP);
            key.push_str(name.as_str());
            key.push(':');
            push_header_values(&mut key, &req.headers, name);
        }
        for name in &config.cookies {
            key.push(SEP);
            key.push_str("cookie:");
            key.push_str(name);
            key.push('=');
            if let Some(value) = cookie(&req.headers, name) {
                key.push_str(value);
            }
        }
        CacheKey(key)
    }

    /// A key an edge function set outright. The prefix keeps it apart from every key
    /// [`build`](Self::build) makes, which start with a host and never with a separator.
    pub fn custom(key: &str) -> Self {
        CacheKey(format!("{SEP}fn{SEP}{key}"))
    }

    /// The key with a suffix, for the variants of a `Vary` response.
    pub fn variant(&self, suffix: &str) -> Self {
        let mut key = String::with_capacity(self.0.len() + suffix.len() + 1);
        key.push_str(&self.0);
        key.push(SEP);
        key.push_str(suffix);
        CacheKey(key)
    }

    /// The key as text, for logs and debugging.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The host and path the key starts with (what invalidation matches against).
    pub fn host_path(&self) -> &str {
        self.0.split([SEP, '?']).next().unwrap_or("")
    }
}

/// Appends the query part: parameters sorted by name (stable, so repeated names keep their
/// order) so that `?b=2&a=1` and `?a=1&b=2` share one object.
fn push_query(key: &mut String, mode: &QueryKey, query: &str) {
    if matches!(mode, QueryKey::None) || query.is_empty() {
        return;
    }
    let mut params: Vec<&str> = query
        .split('&')
        .filter(|p| !p.is_empty())
        .filter(|p| match mode {
            QueryKey::Allow(names) => {
                let name = p.split('=').next().unwrap_or("");
                names.binary_search_by(|n| n.as_str().cmp(name)).is_ok()
            }
            _ => true,
        })
        .collect();
    if params.is_empty() {
        return;
    }
    params.sort_by(|a, b| a.split('=').next().cmp(&b.split('=').next()));
    key.push('?');
    for (i, p) in params.iter().enumerate() {
        if i > 0 {
            key.push('&');
        }
        key.push_str(p);
    }
}

/// Appends every line of header `name`, joined with ", " as RFC 9110 §5.3 allows.
pub fn push_header_values(
    out: &mut String,
    headers: &http::HeaderMap,
    name: &http::header::HeaderName,
) {
    for (i, v) in headers.get_all(name).iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        out.push_str(&String::from_utf8_lossy(v.as_bytes()));
    }
}

/// The value of cookie `name` in the request's `Cookie` headers, if present.
pub fn cookie<'h>(headers: &'h http::HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(n, _)| *n == name)
        .map(|(_, v)| v)
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
    use http::header::HeaderName;
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
