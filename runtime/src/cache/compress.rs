//! Automatic compression (a behavior's `compress = true`), as CloudFront does it: which
//! encoding a viewer gets, which stored objects may be compressed, and the compressed variant
//! of a stored object, built once and cached beside it.
//!
//! The identity object is stored under the request's cache key as always; a compressed variant
//! lives under the same key with the normalized encoding added ([`variant_key`]), never the
//! viewer's raw `Accept-Encoding`, so `br, gzip`, `gzip, br` and `br;q=0.9, gzip` share one
//! entry. A variant copies its identity object's freshness, so it never outlives it, and shares
//! its host and path, so every invalidation reaches it. The flow (`cache_lookup`,
//! `cache_store`) decides when to build one; [`derive`] builds and stores it off the async
//! workers.

use std::io::Write;
use std::sync::Arc;

use bytes::Bytes;
use http::header::{CONTENT_ENCODING, CONTENT_TYPE, ETAG, VARY};
use http::{HeaderMap, HeaderValue, StatusCode};

use super::coalesce::{self, Coalescer, FlightOutcome, Join};
use super::key::CacheKey;
use super::store::{CachedObject, Lookup, Store};

/// Smallest body compressed, in bytes: below this the encoding's framing eats most of the
/// gain (CloudFront's lower bound).
pub const MIN_SIZE: u64 = 1_000;
/// Largest body compressed, in bytes: CloudFront's upper bound, and what keeps one
/// compression under a fraction of a second.
pub const MAX_SIZE: u64 = 10_000_000;
/// Brotli quality: 4-5 compresses text nearly as well as 11 at a small share of the CPU, so a
/// 1 MB object takes milliseconds, not seconds.
const BROTLI_QUALITY: u32 = 5;
/// Brotli window, log2 bytes (the format's default).
const BROTLI_WINDOW: u32 = 22;
/// gzip level 6: zlib's default balance of ratio and speed.
const GZIP_LEVEL: u32 = 6;

/// A content coding the node produces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// Brotli (RFC 7932), preferred when the viewer accepts it.
    Br,
    /// gzip (RFC 1952).
    Gzip,
}

impl Encoding {
    /// The token in `Accept-Encoding` and `Content-Encoding`.
    pub fn as_str(self) -> &'static str {
        match self {
            Encoding::Br => "br",
            Encoding::Gzip => "gzip",
        }
    }

    /// The token as a header value.
    pub fn header_value(self) -> HeaderValue {
        HeaderValue::from_static(self.as_str())
    }

    /// The coding a `Content-Encoding` value names, when it is one of ours.
    pub fn from_content_encoding(value: &HeaderValue) -> Option<Self> {
        let value = value.to_str().ok()?.trim();
        if value.eq_ignore_ascii_case("br") {
            Some(Encoding::Br)
        } else if value.eq_ignore_ascii_case("gzip") || value.eq_ignore_ascii_case("x-gzip") {
            Some(Encoding::Gzip)
        } else {
            None
        }
    }

    /// Compresses `body`.
    pub fn compress(self, body: &[u8]) -> std::io::Result<Vec<u8>> {
        // Compressed text is usually a fifth of the original or less.
        let mut out = Vec::with_capacity(body.len() / 4 + 64);
        match self {
            Encoding::Br => {
                let mut writer =
                    brotli::CompressorWriter::new(&mut out, 4096, BROTLI_QUALITY, BROTLI_WINDOW);
                writer.write_all(body)?;
                writer.flush()?;
            }
            Encoding::Gzip => {
                let mut encoder =
                    flate2::write::GzEncoder::new(&mut out, flate2::Compression::new(GZIP_LEVEL));
                encoder.write_all(body)?;
                encoder.finish()?;
            }
        }
        Ok(out)
    }
}

/// The encoding a viewer gets from its `Accept-Encoding`: `br` when acceptable, else `gzip`,
/// else none. A coding is acceptable with a q-value above 0 (RFC 9110 §12.5.3): `br;q=0` is a
/// refusal, and `*` stands for every coding not listed.
pub fn negotiate(headers: &HeaderMap) -> Option<Encoding> {
    let mut br = None;
    let mut gzip = None;
    let mut any = None;
    for value in headers.get_all(http::header::ACCEPT_ENCODING) {
        let Ok(value) = value.to_str() else {
            continue;
        };
        for item in value.split(',') {
            let mut params = item.split(';');
            let coding = params.next().unwrap_or("").trim();
            let accepted = params
                .filter_map(|p| p.split_once('='))
                .find(|(name, _)| name.trim().eq_ignore_ascii_case("q"))
                .is_none_or(|(_, q)| q.trim().parse::<f32>().is_ok_and(|q| q > 0.0));
            if coding.eq_ignore_ascii_case("br") {
                br = Some(accepted);
            } else if coding.eq_ignore_ascii_case("gzip") || coding.eq_ignore_ascii_case("x-gzip") {
                gzip = Some(gzip.unwrap_or(false) || accepted);
            } else if coding == "*" {
                any = Some(accepted);
            }
        }
    }
    let any = any.unwrap_or(false);
    if br.unwrap_or(any) {
        Some(Encoding::Br)
    } else if gzip.unwrap_or(any) {
        Some(Encoding::Gzip)
    } else {
        None
    }
}

/// Whether a media type is worth compressing: text and the structured text formats, the way
/// CloudFront's list has it. Images, video, archives and fonts already compressed are not;
/// `text/event-stream` is not either, since compressing would hold events back.
pub fn is_compressible_type(headers: &HeaderMap) -> bool {
    let Some(value) = headers.get(CONTENT_TYPE).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let essence = value.split(';').next().unwrap_or("").trim();
    let essence = essence.to_ascii_lowercase();
    let (top, sub) = essence.split_once('/').unwrap_or((&essence, ""));
    match top {
        "text" => sub != "event-stream",
        "application" => {
            sub.ends_with("+json")
                || sub.ends_with("+xml")
                || matches!(
                    sub,
                    "json"
                        | "javascript"
                        | "x-javascript"
                        | "ecmascript"
                        | "xml"
                        | "xhtml+xml"
                        | "x-font-ttf"
                        | "x-font-opentype"
                        | "x-font-truetype"
                        | "vnd.ms-fontobject"
                        | "x-mpegurl"
                        | "vnd.apple.mpegurl"
                        | "dash+xml"
                        | "x-web-app-manifest+json"
                        | "wasm"
                )
        }
        "image" => matches!(sub, "svg+xml" | "x-icon" | "vnd.microsoft.icon" | "bmp"),
        "font" => matches!(sub, "ttf" | "otf" | "eot"),
        _ => false,
    }
}

/// Whether the response already carries a content coding (anything but `identity`): such a
/// body goes through untouched.
pub fn is_encoded(headers: &HeaderMap) -> bool {
    headers
        .get_all(CONTENT_ENCODING)
        .iter()
        .any(|v| !v.as_bytes().eq_ignore_ascii_case(b"identity") && !v.is_empty())
}

/// Whether a response with these headers, `length` bytes long when known, is one whose
/// responses vary by encoding: compressible, unencoded, not forbidden to transform
/// (`no-transform`, RFC 9111 §5.2.2.6), and within the size bounds when the size is known.
pub fn is_candidate(status: StatusCode, headers: &HeaderMap, length: Option<u64>) -> bool {
    status == StatusCode::OK
        && !is_encoded(headers)
        && is_compressible_type(headers)
        && !has_no_transform(headers)
        && length.is_none_or(|l| (MIN_SIZE..=MAX_SIZE).contains(&l))
}

fn has_no_transform(headers: &HeaderMap) -> bool {
    super::policy::cache_control_directives(headers)
        .any(|(name, _)| name.eq_ignore_ascii_case("no-transform"))
}

/// Adds `Accept-Encoding` to `Vary` unless it is listed already (or `Vary: *`), so caches
/// behind the node keep the encodings apart (RFC 9110 §12.5.5).
pub fn add_vary(headers: &mut HeaderMap) {
    let listed = headers
        .get_all(VARY)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|n| {
            let n = n.trim();
            n == "*" || n.eq_ignore_ascii_case("accept-encoding")
        });
    if !listed {
        headers.append(VARY, HeaderValue::from_static("Accept-Encoding"));
    }
}

/// The key a compressed variant of the object under `key` is stored under.
pub fn variant_key(key: &CacheKey, encoding: Encoding) -> CacheKey {
    key.variant(match encoding {
        Encoding::Br => "encoding=br",
        Encoding::Gzip => "encoding=gzip",
    })
}

/// Drops the compressed variants of `key`'s object, for when a new identity object replaces
/// it: a variant built from the old one would outlive its content.
pub fn remove_variants(store: &Store, key: &CacheKey) {
    for encoding in [Encoding::Br, Encoding::Gzip] {
        store.remove(&variant_key(key, encoding));
    }
}

/// The `encoding` variant of an identity object: its headers with `Content-Encoding`, a
/// weakened `ETag` (the bytes differ, RFC 9110 §8.8.1) and `Vary: Accept-Encoding`, and its
/// freshness, so it is stale exactly when the identity is.
pub fn variant_of(identity: &CachedObject, encoding: Encoding) -> std::io::Result<CachedObject> {
    let body = encoding.compress(&identity.body)?;
    let mut headers = identity.headers.to_map();
    headers.insert(CONTENT_ENCODING, encoding.header_value());
    add_vary(&mut headers);
    if let Some(etag) = headers.get(ETAG) {
        if !etag.as_bytes().starts_with(b"W/") {
            let mut weak = b"W/".to_vec();
            weak.extend_from_slice(etag.as_bytes());
            if let Ok(weak) = HeaderValue::from_bytes(&weak) {
                headers.insert(ETAG, weak);
            }
        }
    }
    let mut variant = CachedObject::new(
        identity.status,
        headers,
        Bytes::from(body),
        identity.ttl,
        identity.initial_age,
    );
    variant.stored_at = identity.stored_at;
    Ok(variant)
}

/// Whether a stored identity object may get a compressed variant.
pub fn is_derivable(identity: &CachedObject) -> bool {
    is_candidate(
        identity.status,
        &identity.headers.to_map(),
        Some(identity.body.len() as u64),
    )
}

/// What the variant's build saved, for metrics: (identity bytes, compressed bytes).
pub type Saved = (u64, u64);

/// Builds the `encoding` variant of `identity` (stored under `key`) on a blocking thread and
/// stores it, unless another request is already building it (then waits for that one). Returns
/// the variant, or `None` when it could not be built or the identity was replaced meanwhile.
pub async fn derive(
    store: &Arc<Store>,
    coalescer: &Arc<Coalescer>,
    key: &CacheKey,
    request: &HeaderMap,
    identity: Arc<CachedObject>,
    encoding: Encoding,
) -> Option<(Arc<CachedObject>, Option<Saved>)> {
    let variant_key = variant_key(key, encoding);
    let leader = match coalescer.join(&variant_key) {
        Join::Leader(leader) => leader,
        Join::Waiter(rx) => {
            // Looked up again rather than taken from the leader: under `Vary` the leader may
            // have built another variant than this request's.
            coalesce::wait(rx).await;
            return match store.lookup_current(&variant_key, request, std::time::Instant::now()) {
                Lookup::Fresh(variant) => Some((variant, None)),
                _ => None,
            };
        }
    };
    let source = Arc::clone(&identity);
    let built = tokio::task::spawn_blocking(move || variant_of(&source, encoding)).await;
    let variant = match built {
        Ok(Ok(variant)) => Arc::new(variant),
        Ok(Err(error)) => {
            tracing::warn!(error = %error, "compression failed; identity served");
            return None;
        }
        Err(error) => {
            tracing::warn!(error = %error, "compression task failed; identity served");
            return None;
        }
    };
    // The identity may have been replaced or invalidated while compressing: a variant of the
    // old one must not be stored next to the new one.
    let current = matches!(
        store.lookup_current(key, request, std::time::Instant::now()),
        Lookup::Fresh(o) | Lookup::Stale(o) if Arc::ptr_eq(&o, &identity)
    );
    if current {
        store.insert(&variant_key, request, Arc::clone(&variant));
        leader.finish(FlightOutcome::Stored(Arc::clone(&variant)));
    }
    let saved = (identity.body.len() as u64, variant.body.len() as u64);
    Some((variant, Some(saved)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::header::CACHE_CONTROL;
    use std::io::Read;
    use std::time::Duration;

    fn accept(value: &str) -> Option<Encoding> {
        let mut headers = HeaderMap::new();
        headers.insert(http::header::ACCEPT_ENCODING, value.parse().expect("value"));
        negotiate(&headers)
    }

    #[test]
    fn br_is_preferred_and_q_zero_refuses() {
        assert_eq!(accept("gzip, deflate, br"), Some(Encoding::Br));
        assert_eq!(accept("gzip;q=1.0, br;q=0.5"), Some(Encoding::Br));
        assert_eq!(accept("br;q=0, gzip"), Some(Encoding::Gzip));
        assert_eq!(accept("br;q=0.0, gzip;q=0"), None);
        assert_eq!(accept("GZIP"), Some(Encoding::Gzip));
        assert_eq!(accept("x-gzip"), Some(Encoding::Gzip));
        assert_eq!(accept("identity"), None);
        assert_eq!(accept("deflate"), None);
        assert_eq!(accept("*"), Some(Encoding::Br));
        assert_eq!(accept("br;q=0, *"), Some(Encoding::Gzip));
        assert_eq!(accept("*;q=0"), None);
        assert_eq!(
            accept("br; q=abc"),
            None,
            "an unreadable q-value is no consent"
        );
        assert_eq!(negotiate(&HeaderMap::new()), None);
    }

    fn typed(content_type: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(CONTENT_TYPE, content_type.parse().expect("value"));
        headers
    }

    #[test]
    fn text_formats_are_compressible_and_media_is_not() {
        for t in [
            "text/html; charset=utf-8",
            "text/css",
            "application/json",
            "application/javascript",
            "application/ld+json",
            "image/svg+xml",
            "application/xml",
        ] {
            assert!(is_compressible_type(&typed(t)), "{t}");
        }
        for t in [
            "image/png",
            "image/jpeg",
            "application/octet-stream",
            "application/zip",
            "video/mp4",
            "text/event-stream",
        ] {
            assert!(!is_compressible_type(&typed(t)), "{t}");
        }
        assert!(!is_compressible_type(&HeaderMap::new()));
    }

    #[test]
    fn candidates_are_unencoded_and_within_bounds() {
        let text = typed("text/plain");
        assert!(is_candidate(StatusCode::OK, &text, Some(1_000)));
        assert!(is_candidate(StatusCode::OK, &text, None));
        assert!(!is_candidate(StatusCode::OK, &text, Some(999)));
        assert!(!is_candidate(StatusCode::OK, &text, Some(10_000_001)));
        assert!(!is_candidate(StatusCode::NOT_FOUND, &text, Some(5_000)));
        let mut encoded = text.clone();
        encoded.insert(CONTENT_ENCODING, HeaderValue::from_static("gzip"));
        assert!(!is_candidate(StatusCode::OK, &encoded, Some(5_000)));
        let mut identity = text.clone();
        identity.insert(CONTENT_ENCODING, HeaderValue::from_static("identity"));
        assert!(is_candidate(StatusCode::OK, &identity, Some(5_000)));
        let mut no_transform = text;
        no_transform.insert(
            CACHE_CONTROL,
            HeaderValue::from_static("max-age=60, no-transform"),
        );
        assert!(!is_candidate(StatusCode::OK, &no_transform, Some(5_000)));
    }

    #[test]
    fn vary_is_merged_once() {
        let mut headers = HeaderMap::new();
        add_vary(&mut headers);
        add_vary(&mut headers);
        assert_eq!(headers.get_all(VARY).iter().count(), 1);
        let mut origin = HeaderMap::new();
        origin.insert(VARY, HeaderValue::from_static("Origin, accept-encoding"));
        add_vary(&mut origin);
        assert_eq!(origin.get_all(VARY).iter().count(), 1);
        let mut other = HeaderMap::new();
        other.insert(VARY, HeaderValue::from_static("Origin"));
        add_vary(&mut other);
        let all: Vec<_> = other.get_all(VARY).iter().collect();
        assert_eq!(all, ["Origin", "Accept-Encoding"]);
    }

    #[test]
    fn variants_decode_to_the_identity_and_weaken_the_etag() {
        let mut headers = typed("text/plain");
        headers.insert(ETAG, HeaderValue::from_static("\"v1\""));
        let text: Vec<u8> = b"all work and no play ".repeat(100);
        let identity = CachedObject::new(
            StatusCode::OK,
            headers,
            Bytes::from(text.clone()),
            Duration::from_secs(60),
            3,
        );
        let br = variant_of(&identity, Encoding::Br).expect("br");
        let mut decoded = Vec::new();
        brotli::Decompressor::new(&br.body[..], 4096)
            .read_to_end(&mut decoded)
            .expect("decode br");
        assert_eq!(decoded, text);
        assert!(br.body.len() < text.len() / 4);
        assert_eq!(br.etag(), Some(HeaderValue::from_static("W/\"v1\"")));
        assert_eq!(br.headers.get(&CONTENT_ENCODING).expect("ce"), "br");
        assert_eq!(
            br.headers.get(&http::header::CONTENT_LENGTH),
            Some(HeaderValue::from(br.body.len()))
        );
        assert_eq!(br.stored_at, identity.stored_at);
        assert_eq!((br.ttl, br.initial_age), (identity.ttl, 3));

        let gzip = variant_of(&identity, Encoding::Gzip).expect("gzip");
        let mut decoded = Vec::new();
        flate2::read::GzDecoder::new(&gzip.body[..])
            .read_to_end(&mut decoded)
            .expect("decode gzip");
        assert_eq!(decoded, text);
    }
}
