//! Serde mirror of `edge.toml`: every field as written, with its span so that validation
//! errors in [`super`] can name the line. Nothing here is checked beyond TOML syntax and types.

use std::collections::BTreeMap;

use serde::Deserialize;
use toml::Spanned;

/// The whole file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    /// `[server]`
    #[serde(default)]
    pub server: RawServer,
    /// `[cache]`
    #[serde(default)]
    pub cache: RawCache,
    /// `[origins.NAME]`, one table per origin.
    #[serde(default)]
    pub origins: BTreeMap<Spanned<String>, RawOrigin>,
    /// `[[behaviors]]`, in file order; the first match wins.
    #[serde(default)]
    pub behaviors: Vec<RawBehavior>,
    /// `[functions.NAME]`, one table per edge function.
    #[serde(default)]
    pub functions: BTreeMap<Spanned<String>, RawFunction>,
    /// `[admin]`: the admin API; absent means no admin listener.
    pub admin: Option<Spanned<RawAdmin>>,
    /// `[kv.NAME]`, one table per key-value store functions can read.
    #[serde(default)]
    pub kv: BTreeMap<Spanned<String>, RawKv>,
    /// `[tier]`: the regional tier; absent means no parents and no tier requests accepted.
    pub tier: Option<Spanned<RawTier>>,
}

/// `[tier]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTier {
    /// `parents = ["http://rec-0.rec:8080"]`: regional nodes this node fetches misses from
    pub parents: Option<Spanned<Vec<Spanned<String>>>>,
    /// `token_file = "secrets/tier-token"`: the shared secret, sent to parents and required from edges
    pub token_file: Option<Spanned<String>>,
    /// `on_parent_failure = "origin" | "error"`
    pub on_parent_failure: Option<Spanned<String>>,
}

/// `[kv.NAME]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawKv {
    /// `file = "redirects.json"`: a JSON object of string keys to string values
    pub file: Spanned<String>,
}

/// `[admin]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAdmin {
    /// `listen = "127.0.0.1:9901"`
    pub listen: Option<Spanned<String>>,
    /// `token = "..."`: the bearer token every admin call must carry
    pub token: Option<Spanned<String>>,
    /// `token_env = "EDGE_ADMIN_TOKEN"`: read the token from this environment variable
    pub token_env: Option<Spanned<String>>,
    /// `data_dir = "./edge-data"`: where uploaded functions and their stages persist
    pub data_dir: Option<Spanned<String>>,
    /// `max_upload_size = "8 MiB"`
    pub max_upload_size: Option<Spanned<String>>,
}

/// `[functions.NAME]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawFunction {
    /// `module = "router.wasm"` (`.wasm` or `.wat`)
    pub module: Spanned<String>,
    /// `memory_limit = "16 MiB"`
    pub memory_limit: Option<Spanned<String>>,
    /// `cpu_limit = "5ms"`
    pub cpu_limit: Option<Spanned<String>>,
    /// `max_module_size = "8 MiB"`
    pub max_module_size: Option<Spanned<String>>,
    /// `body_limit = "1 MiB"`
    pub body_limit: Option<Spanned<String>>,
    /// `replay = false`: always run the guest, never replay a recorded decision
    pub replay: Option<Spanned<bool>>,
    /// `replay_memory = "4 MiB"`: memory for the function's recorded decisions
    pub replay_memory: Option<Spanned<String>>,
}

/// `[server]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawServer {
    /// `listen = "127.0.0.1:8080"`
    pub listen: Option<Spanned<String>>,
    /// `compile_cache = "/var/cache/edge"`: where compiled functions are kept across restarts
    pub compile_cache: Option<Spanned<String>>,
    /// `debug_header = "x-edge-debug"`: requests carrying it get debug headers back
    pub debug_header: Option<Spanned<String>>,
    /// `max_request_header_size = "32 KiB"`: request line and headers together; 431 above
    pub max_request_header_size: Option<Spanned<String>>,
    /// `max_request_headers = 100`: header lines per request; 431 above
    pub max_request_headers: Option<Spanned<u64>>,
    /// `header_read_timeout = "30s"`: an HTTP/1.1 connection waiting longer for a head is closed
    pub header_read_timeout: Option<Spanned<String>>,
    /// `tls_listen = "127.0.0.1:8443"`: the HTTPS listener (HTTP/2 and HTTP/1.1 by ALPN)
    pub tls_listen: Option<Spanned<String>>,
    /// `tls_cert = "certs/edge.pem"`: PEM certificate chain, leaf first
    pub tls_cert: Option<Spanned<String>>,
    /// `tls_key = "certs/edge-key.pem"`: PEM private key of the leaf certificate
    pub tls_key: Option<Spanned<String>>,
}

/// `[cache]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCache {
    /// `max_size = "256 MiB"`
    pub max_size: Option<Spanned<String>>,
    /// `max_object_size = "16 MiB"`
    pub max_object_size: Option<Spanned<String>>,
}

/// `[origins.NAME]`: the fields of every origin type; `type` says which apply.
///
/// A flat struct rather than a tagged enum because serde's internally tagged enums lose the
/// spans that error messages need.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawOrigin {
    /// `type = "static" | "http" | "s3"`
    #[serde(rename = "type")]
    pub kind: Spanned<String>,
    /// `root = "./site"` (static)
    pub root: Option<Spanned<String>>,
    /// `targets = ["http://127.0.0.1:3000", "https://app.internal:443"]` (http)
    pub targets: Option<Spanned<Vec<Spanned<String>>>>,
    /// `connect_timeout = "2s"` (http, s3)
    pub connect_timeout: Option<Spanned<String>>,
    /// `response_timeout = "30s"` (http, s3)
    pub response_timeout: Option<Spanned<String>>,
    /// `ca_file = "certs/ca.pem"`: extra trusted roots for https targets (http, s3)
    pub ca_file: Option<Spanned<String>>,
    /// `tls_server_name = "app.internal"`: the name verified and sent as SNI (http, s3)
    pub tls_server_name: Option<Spanned<String>>,
    /// `endpoint = "http://127.0.0.1:9000"` (s3)
    pub endpoint: Option<Spanned<String>>,
    /// `bucket = "assets"` (s3)
    pub bucket: Option<Spanned<String>>,
    /// `region = "us-east-1"` (s3)
    pub region: Option<Spanned<String>>,
    /// `index = "index.html"`: the object for paths ending in `/` (s3)
    pub index: Option<Spanned<String>>,
    /// `access_key_id = "AKIA..."` (s3; default: `AWS_ACCESS_KEY_ID`)
    pub access_key_id: Option<Spanned<String>>,
    /// `secret_access_key_file = "secrets/s3-key"` (s3; default: `AWS_SECRET_ACCESS_KEY`)
    pub secret_access_key_file: Option<Spanned<String>>,
}

/// `[[behaviors]]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawBehavior {
    /// `path = "/api/*"`
    pub path: Spanned<String>,
    /// `origin = "app"`
    pub origin: Spanned<String>,
    /// `methods = ["GET", "HEAD"]`
    pub methods: Option<Spanned<Vec<Spanned<String>>>>,
    /// `cache = { min_ttl = "0s", default_ttl = "1d", max_ttl = "365d", stale_if_error = "1d" }`
    pub cache: Option<Spanned<RawCachePolicy>>,
    /// `cache_key = { query = "all", headers = [..], cookies = [..] }`
    pub cache_key: Option<RawCacheKey>,
    /// `functions = { viewer_request = "router", origin_response = "headers" }`
    pub functions: Option<BTreeMap<Spanned<String>, Spanned<String>>>,
    /// `compress = true`: gzip / br for viewers that accept them (default false)
    pub compress: Option<bool>,
    /// `viewer_protocol = "allow-all" | "redirect-to-https" | "https-only"`
    pub viewer_protocol: Option<Spanned<String>>,
}

/// `cache = { .. }` of a behavior.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCachePolicy {
    /// `min_ttl = "0s"`
    pub min_ttl: Option<Spanned<String>>,
    /// `default_ttl = "1d"`
    pub default_ttl: Option<Spanned<String>>,
    /// `max_ttl = "365d"`
    pub max_ttl: Option<Spanned<String>>,
    /// `stale_if_error = "1d"` (`"0s"`: never stand in for a failing origin unless the
    /// response says `stale-if-error`)
    pub stale_if_error: Option<Spanned<String>>,
    /// `heuristic_ttl = "10%"`: share of the time since `Last-Modified` (RFC 9111 §4.2.2)
    pub heuristic_ttl: Option<Spanned<String>>,
    /// `targeted_cache_control = "CDN-Cache-Control"` or a list, in order of precedence
    pub targeted_cache_control: Option<Spanned<toml::Value>>,
    /// `strip_set_cookie = true`: store responses with `Set-Cookie`, without it
    pub strip_set_cookie: Option<Spanned<bool>>,
    /// `viewer_cache_control = "ignore" | "honor"`: request `Cache-Control` directives
    pub viewer_cache_control: Option<Spanned<String>>,
}

/// `cache_key = { .. }` of a behavior.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCacheKey {
    /// `query = "none" | "all" | ["page", "q"]`
    pub query: Option<Spanned<toml::Value>>,
    /// `headers = ["Accept-Language"]`
    pub headers: Option<Vec<Spanned<String>>>,
    /// `cookies = ["session"]`
    pub cookies: Option<Vec<Spanned<String>>>,
}
