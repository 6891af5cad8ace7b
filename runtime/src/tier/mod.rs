//! The regional tier: edges in front of regional nodes (DESIGN.md, "parent tier").
//!
//! A node with `[tier] parents` is an edge for them: a cacheable miss (and the revalidation of
//! a stale copy) is fetched from one parent, picked by rendezvous hashing of the cache key
//! ([`rendezvous`]), so each object lives on one parent. The tier request carries what the edge
//! decided, in headers no viewer may set: the cache key ([`TIER_KEY`]), the origin
//! ([`TIER_ORIGIN`]) and the shared token ([`TIER_TOKEN`]). Any node whose `[tier]` has a token
//! accepts such requests ([`accept`]): it uses the key and origin given, skips the
//! viewer-facing functions, and runs the origin-facing ones when it fetches from the origin.
//! Its own error responses carry [`TIER_ERROR`], so the edge tells a failing parent from an
//! origin's 5xx passed through.
//!
//! A parent that fails (refused, timeout, token refused, its own 5xx) is marked down for
//! [`DEFAULT_DOWN_TIME`] and the next parent in hash order is tried; when none answers, the
//! edge follows `on_parent_failure`.

pub mod invalidation;
pub mod rendezvous;

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use http::header::{HeaderName, CONNECTION, CONTENT_LENGTH, HOST};
use http::{HeaderMap, HeaderValue, Request, Response, Uri};
use http_body_util::BodyExt;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use percent_encoding::{percent_decode_str, utf8_percent_encode, AsciiSet, CONTROLS};

use crate::body::EdgeBody;
use crate::cache::CacheKey;
use crate::config::{Config, OnParentFailure, Target};
use crate::metrics::Metrics;

/// Request header: the cache key the edge computed (percent-encoded).
pub static TIER_KEY: HeaderName = HeaderName::from_static("x-edge-tier-key");
/// Request header: the name of the origin the edge chose.
pub static TIER_ORIGIN: HeaderName = HeaderName::from_static("x-edge-tier-origin");
/// Request header: the shared tier token.
pub static TIER_TOKEN: HeaderName = HeaderName::from_static("x-edge-tier-token");
/// Response header on an error a node generated for a tier request: `refused` (token),
/// `internal`, `origin`, `function` or `viewer`, the error's side.
pub static TIER_ERROR: HeaderName = HeaderName::from_static("x-edge-tier-error");
/// Debug response header at the edge: the parent that served the fill.
pub static TIER_PARENT: HeaderName = HeaderName::from_static("x-edge-tier-parent");
/// Debug response header at the edge: the parent's `X-Cache` for the fill.
pub static TIER_PARENT_CACHE: HeaderName = HeaderName::from_static("x-edge-tier-parent-cache");

/// Every request header of the tier protocol, removed from viewer requests.
const REQUEST_HEADERS: [&HeaderName; 3] = [&TIER_KEY, &TIER_ORIGIN, &TIER_TOKEN];

/// The path, on the viewer listener, where a node takes an invalidation from its edges
/// (`POST`, with the tier token and `{"paths": [..]}`).
pub const INVALIDATION_PATH: &str = "/.edge-tier/invalidations";

/// How long a failed parent is skipped: as for origin targets, long enough not to pay a failed
/// connect per miss, short enough that a restarted parent takes its keys back quickly.
pub const DEFAULT_DOWN_TIME: Duration = Duration::from_secs(10);
/// Connect timeout to a parent: parents are in the same region, so a parent that has not
/// accepted in a second is down, and the next one should be asked.
pub const DEFAULT_PARENT_CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// Added to the origin's `response_timeout` for a parent's answer: the parent may itself wait
/// that long for the origin, and its answer (even a 504) is worth more than the edge's guess.
const PARENT_RESPONSE_SLACK: Duration = Duration::from_secs(2);
/// Responses up to this length are read whole from the parent before the viewer gets them, so
/// a parent that fails mid-body can still be failed over; the head of a CDN's popularity curve
/// is mostly objects this small, and holding 64 KiB per fill costs little.
const WHOLE_BODY_LIMIT: u64 = 64 * 1024;

/// Bytes encoded in [`TIER_KEY`]: controls (keys separate parts with `\n`), `%` and space.
const KEY_ENCODE: &AsciiSet = &CONTROLS.add(b'%').add(b' ');

/// A tier request that a parent accepted: what the edge decided.
#[derive(Debug, Clone)]
pub struct TierRequest {
    /// The cache key to look up and store under.
    pub key: CacheKey,
    /// Index into the config's origins.
    pub origin: usize,
}

/// Why a parent refused a tier request (403).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Refusal {
    /// The token is missing or is not this node's.
    #[error("tier request with a missing or wrong tier token")]
    Token,
    /// The key or origin header is missing or unusable.
    #[error("tier request with a missing or malformed {0} header")]
    Malformed(&'static str),
}

/// One parent and its health.
struct Parent {
    target: Target,
    /// `http://host:port`, for logs, metrics and reports.
    name: String,
    /// Milliseconds since [`Tier::epoch`] until which the parent is skipped.
    down_until_ms: AtomicU64,
}

/// The tier side of a node: its parents (when it is an edge) and its token.
pub struct Tier {
    parents: Vec<Parent>,
    token: Option<HeaderValue>,
    on_parent_failure: OnParentFailure,
    client: Client<HttpConnector, EdgeBody>,
    epoch: Instant,
}

/// What asking the parents for a fill gave.
pub enum ParentFetch {
    /// A parent answered (maybe with an origin's error it passed on).
    Answered {
        /// The parent's response, tier and hop-by-hop headers removed.
        response: Box<Response<EdgeBody>>,
        /// The parent, as `http://host:port`.
        parent: String,
        /// The parent's `X-Cache`.
        parent_cache: Option<HeaderValue>,
    },
    /// No parent answered; `on_parent_failure` decides.
    Failed(OnParentFailure),
}

impl Tier {
    /// The tier for `config` (no parents and no token when it has no `[tier]`).
    pub fn new(config: &Config) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(DEFAULT_PARENT_CONNECT_TIMEOUT));
        Tier {
            parents: config
                .tier
                .parents
                .iter()
                .map(|target| Parent {
                    name: format!("{}://{}", target.scheme, target.authority),
                    target: target.clone(),
                    down_until_ms: AtomicU64::new(0),
                })
                .collect(),
            token: config.tier.token.clone(),
            on_parent_failure: config.tier.on_parent_failure,
            client: Client::builder(TokioExecutor::new())
                .pool_idle_timeout(Duration::from_secs(60))
                .pool_timer(TokioTimer::new())
                .build(connector),
            epoch: Instant::now(),
        }
    }

    /// Whether this node fetches its cacheable misses from parents.
    pub fn has_parents(&self) -> bool {
        !self.parents.is_empty()
    }

    /// The parents, as `http://host:port`.
    pub fn parent_names(&self) -> impl Iterator<Item = &str> {
        self.parents.iter().map(|p| p.name.as_str())
    }

    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    /// The parents that are up, in the key's rendezvous order.
    fn order(&self, key: &CacheKey) -> Vec<usize> {
        let now = self.now_ms();
        let names: Vec<&str> = self.parents.iter().map(|p| p.name.as_str()).collect();
        rendezvous::order(key.as_str(), &names)
            .into_iter()
            .filter(|&i| self.parents[i].down_until_ms.load(Ordering::Relaxed) <= now)
            .collect()
    }

    fn mark_down(&self, index: usize, metrics: &Metrics) {
        let until = self.now_ms() + DEFAULT_DOWN_TIME.as_millis() as u64;
        self.parents[index]
            .down_until_ms
            .store(until, Ordering::Relaxed);
        metrics.parent_marked_down(&self.parents[index].name);
    }

    /// Fetches a fill from the parents, in the key's hash order. `request` is the request as
    /// the origin would get it (proxy headers, the stale copy's validators); `origin` is the
    /// chosen origin's name and `response_timeout` its time to headers.
    pub async fn fetch(
        &self,
        metrics: &Metrics,
        key: &CacheKey,
        origin: &str,
        request: &Request<EdgeBody>,
        response_timeout: Duration,
        debug_header: Option<&HeaderName>,
    ) -> ParentFetch {
        let token = self
            .token
            .as_ref()
            .expect("config validation requires a token when there are parents");
        let encoded_key =
            HeaderValue::from_str(&utf8_percent_encode(key.as_str(), KEY_ENCODE).to_string())
                .expect("a percent-encoded key is visible ASCII");
        let origin_value = HeaderValue::from_str(origin).ok();
        for index in self.order(key) {
            let parent = &self.parents[index];
            metrics.parent_request(&parent.name);
            let mut headers = request.headers().clone();
            if let Some(name) = debug_header {
                // The parent's debug headers would be stored with the object at the edge.
                headers.remove(name);
            }
            headers.insert(TIER_KEY.clone(), encoded_key.clone());
            if let Some(origin) = &origin_value {
                headers.insert(TIER_ORIGIN.clone(), origin.clone());
            }
            headers.insert(TIER_TOKEN.clone(), token.clone());
            let mut uri = http::uri::Parts::default();
            uri.scheme = Some(parent.target.scheme.clone());
            uri.authority = Some(parent.target.authority.clone());
            uri.path_and_query = request.uri().path_and_query().cloned();
            let Ok(uri) = Uri::from_parts(uri) else {
                return ParentFetch::Failed(self.on_parent_failure);
            };
            let mut outgoing = Request::new(EdgeBody::Empty);
            *outgoing.method_mut() = request.method().clone();
            *outgoing.uri_mut() = uri;
            *outgoing.headers_mut() = headers;
            // The viewer's Host travels on, so the parent forwards the same X-Forwarded-Host.
            if !outgoing.headers().contains_key(HOST) {
                if let Ok(host) = HeaderValue::from_str(parent.target.authority.as_str()) {
                    outgoing.headers_mut().insert(HOST, host);
                }
            }
            let timeout = response_timeout + PARENT_RESPONSE_SLACK;
            // A parent closes a keep-alive connection idle past its header read timeout; a fill
            // crossing that close is sent again rather than marking a healthy parent down.
            // Fills are GETs and HEADs without a body.
            let replayable = outgoing.method().is_idempotent();
            let send =
                crate::origin::resend::on_legacy_client(&self.client, outgoing, replayable, None);
            let failure = match tokio::time::timeout(timeout, send).await {
                Ok(Ok(response)) => match parent_failure(response.headers()) {
                    None => {
                        let (mut parts, body) = response.into_parts();
                        // A small object is read whole before it is passed on: a parent that
                        // dies mid-body is then failed over like one that refused, rather than
                        // cutting the viewer's response short. Larger ones stream.
                        let small = parts
                            .headers
                            .get(CONTENT_LENGTH)
                            .and_then(|v| v.to_str().ok()?.parse::<u64>().ok())
                            .is_some_and(|length| length <= WHOLE_BODY_LIMIT);
                        let body = if small {
                            match tokio::time::timeout(timeout, body.collect()).await {
                                Ok(Ok(collected)) => EdgeBody::full(collected.to_bytes()),
                                Ok(Err(e)) => {
                                    self.failed(index, metrics, &format!("body failed: {e}"));
                                    continue;
                                }
                                Err(_) => {
                                    self.failed(index, metrics, "body not read in time");
                                    continue;
                                }
                            }
                        } else {
                            EdgeBody::Incoming(body)
                        };
                        let parent_cache =
                            parts.headers.remove(crate::flow::respond::X_CACHE.clone());
                        parts.headers.remove(&TIER_ERROR);
                        parts.headers.remove(CONNECTION);
                        return ParentFetch::Answered {
                            response: Box::new(Response::from_parts(parts, body)),
                            parent: parent.name.clone(),
                            parent_cache,
                        };
                    }
                    Some(why) => format!("answered {why}"),
                },
                Ok(Err(e)) => format!("request failed: {e}"),
                Err(_) => format!("sent no response within {timeout:?}"),
            };
            self.failed(index, metrics, &failure);
        }
        ParentFetch::Failed(self.on_parent_failure)
    }

    /// Records a failed fill from parent `index` and marks it down.
    fn failed(&self, index: usize, metrics: &Metrics, why: &str) {
        let parent = &self.parents[index];
        tracing::warn!(parent = %parent.name, error = why, "parent marked down");
        metrics.parent_failure(&parent.name);
        self.mark_down(index, metrics);
    }

    /// Checks a request's tier headers: `Ok(None)` when it has none (a viewer request),
    /// `Ok(Some(..))` for a tier request with this node's token, whose tier headers are then
    /// removed; a refusal otherwise. `origins` are the config's origin names.
    pub fn accept(
        &self,
        headers: &mut HeaderMap,
        origin_index: impl Fn(&str) -> Option<usize>,
    ) -> Result<Option<TierRequest>, Refusal> {
        if !has_tier_headers(headers) {
            return Ok(None);
        }
        if !self.authenticates(headers) {
            return Err(Refusal::Token);
        }
        let key = headers
            .get(&TIER_KEY)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| percent_decode_str(v).decode_utf8().ok())
            .filter(|k| !k.is_empty())
            .map(|k| CacheKey::from_text(k.into_owned()))
            .ok_or(Refusal::Malformed("x-edge-tier-key"))?;
        let origin = headers
            .get(&TIER_ORIGIN)
            .and_then(|v| v.to_str().ok())
            .and_then(&origin_index)
            .ok_or(Refusal::Malformed("x-edge-tier-origin"))?;
        strip(headers);
        Ok(Some(TierRequest { key, origin }))
    }

    /// Whether `headers` carry this node's tier token (for the invalidation endpoint).
    pub fn authenticates(&self, headers: &HeaderMap) -> bool {
        match (&self.token, headers.get(&TIER_TOKEN)) {
            (Some(token), Some(given)) => constant_time_eq(token.as_bytes(), given.as_bytes()),
            _ => false,
        }
    }
}

/// Whether a request carries any tier request header.
pub fn has_tier_headers(headers: &HeaderMap) -> bool {
    // One pass over the request's names (a few, mostly of other lengths) costs less than
    // hashing the three tier names for lookups, on every viewer request.
    headers.keys().any(|name| REQUEST_HEADERS.contains(&name))
}

/// Removes the tier request headers.
pub fn strip(headers: &mut HeaderMap) {
    for name in REQUEST_HEADERS {
        headers.remove(name);
    }
}

/// Why a parent's response means the parent failed rather than answered: its token refusal or
/// its own internal error. An origin's error it passed on, or one the viewer's request caused,
/// is an answer (the edge would get the same from the origin).
fn parent_failure(headers: &HeaderMap) -> Option<String> {
    let side = headers.get(&TIER_ERROR)?.to_str().unwrap_or("internal");
    matches!(side, "refused" | "internal").then(|| format!("with its own error ({side})"))
}

/// Compares without stopping at the first difference, so response times do not reveal how
/// much of a guessed token was right.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tier(token: &str) -> Tier {
        let dir = tempfile::tempdir().expect("temp dir");
        let file = dir.path().join("token");
        std::fs::write(&file, token).expect("write");
        let config: Config = format!(
            "[origins.app]\ntype = \"http\"\ntargets = [\"http://127.0.0.1:1\"]\n[[behaviors]]\npath = \"*\"\norigin = \"app\"\n[tier]\ntoken_file = {:?}",
            file.display().to_string()
        )
        .parse()
        .expect("config");
        Tier::new(&config)
    }

    #[test]
    fn accept_checks_token_and_decodes_key() {
        let tier = tier("right-token");
        let origin = |name: &str| (name == "app").then_some(0);
        let mut viewer = HeaderMap::new();
        viewer.insert("accept", HeaderValue::from_static("*/*"));
        assert!(tier
            .accept(&mut viewer, origin)
            .expect("no tier headers")
            .is_none());

        let mut wrong = HeaderMap::new();
        wrong.insert(TIER_KEY.clone(), HeaderValue::from_static("h/x"));
        wrong.insert(TIER_TOKEN.clone(), HeaderValue::from_static("wrong-token"));
        assert!(matches!(
            tier.accept(&mut wrong, origin),
            Err(Refusal::Token)
        ));
        let mut missing = HeaderMap::new();
        missing.insert(TIER_ORIGIN.clone(), HeaderValue::from_static("app"));
        assert!(matches!(
            tier.accept(&mut missing, origin),
            Err(Refusal::Token)
        ));

        let key = "h/a b?x=1\ncookie:s=%";
        let mut good = HeaderMap::new();
        let encoded = utf8_percent_encode(key, KEY_ENCODE).to_string();
        good.insert(
            TIER_KEY.clone(),
            HeaderValue::from_str(&encoded).expect("ascii"),
        );
        good.insert(TIER_ORIGIN.clone(), HeaderValue::from_static("app"));
        good.insert(TIER_TOKEN.clone(), HeaderValue::from_static("right-token"));
        let accepted = tier
            .accept(&mut good, origin)
            .expect("valid")
            .expect("tier");
        assert_eq!(accepted.key.as_str(), key);
        assert_eq!(accepted.origin, 0);
        assert!(
            !has_tier_headers(&good),
            "tier headers are removed once read"
        );
    }

    #[test]
    fn only_refusals_and_internal_errors_fail_a_parent() {
        let mut headers = HeaderMap::new();
        assert!(parent_failure(&headers).is_none());
        headers.insert(TIER_ERROR.clone(), HeaderValue::from_static("origin"));
        assert!(parent_failure(&headers).is_none());
        headers.insert(TIER_ERROR.clone(), HeaderValue::from_static("refused"));
        assert!(parent_failure(&headers).is_some());
        headers.insert(TIER_ERROR.clone(), HeaderValue::from_static("internal"));
        assert!(parent_failure(&headers).is_some());
    }
}
