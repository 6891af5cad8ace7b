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
