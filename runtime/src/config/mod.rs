//! Validated configuration: built once from `edge.toml` ([`raw`]), immutable, shared by `Arc`.
//!
//! Every check that can fail happens here, at load time, so the request path never meets a bad
//! value. Errors name the file, line and key ([`Error`]).

mod error;
mod origin;
pub mod raw;
mod tier;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use http::header::HeaderName;
use http::Method;
use toml::Spanned;

use edge_sdk::abi::Event;
pub use error::Error;
pub use origin::{OriginConfig, OriginKind, OriginTls, S3Config, S3Credentials, Secret, Target};
use raw::{RawBehavior, RawCacheKey, RawCachePolicy, RawConfig, RawFunction, RawKv};
pub use tier::{OnParentFailure, TierConfig};

/// Where a node listens when `[server] listen` is absent: loopback, so that a bare config never
/// exposes a development node to the network.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
/// Memory for cached objects when `[cache] max_size` is absent.
pub const DEFAULT_CACHE_MAX_SIZE: u64 = 256 * 1024 * 1024;
/// Largest object stored when `[cache] max_object_size` is absent; larger ones stream through.
pub const DEFAULT_MAX_OBJECT_SIZE: u64 = 16 * 1024 * 1024;
/// Connect timeout per target attempt; CloudFront's default is 10 s, but a target on a LAN or
/// loopback that has not answered in 2 s is down, and failing over sooner serves viewers better.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// Time from sending a request to receiving response headers; CloudFront's default.
pub const DEFAULT_RESPONSE_TIMEOUT: Duration = Duration::from_secs(30);
/// Linear memory a function may use: enough for a Rust function with headers and a body of
/// `DEFAULT_BODY_LIMIT`, small enough that a thousand instances fit in RAM.
pub const DEFAULT_FUNCTION_MEMORY: u64 = 16 * 1024 * 1024;
/// Time a function may run per invocation; a router takes microseconds, so 5 ms only stops
/// runaway code (CloudFront Functions allow about 1 ms of compute).
pub const DEFAULT_FUNCTION_CPU: Duration = Duration::from_millis(5);
/// Largest module accepted.
pub const DEFAULT_MAX_MODULE_SIZE: u64 = 8 * 1024 * 1024;
/// Largest response body a function may read or write.
pub const DEFAULT_BODY_LIMIT: u64 = 1024 * 1024;
/// Memory a function's decision trees may hold (`replay_memory`): a path of a router costs a
/// few hundred bytes, so this keeps thousands of distinct requests, small beside the cache.
pub const DEFAULT_REPLAY_MEMORY: u64 = 4 * 1024 * 1024;

/// Request line plus headers a viewer may send: nginx's `large_client_header_buffers` (4 × 8k),
/// room for big cookies and tokens, yet a connection cannot make the node buffer much.
pub const DEFAULT_MAX_REQUEST_HEADER_SIZE: u64 = 32 * 1024;
/// Header lines per request: hyper's and Apache's default (`LimitRequestFields`).
pub const DEFAULT_MAX_REQUEST_HEADERS: u64 = 100;
/// Bounds of `max_request_header_size`: below 1 KiB ordinary browsers fail, and above 256 KiB
/// the limit would pass hyper's own read buffer (about 400 KB), which then decides instead.
const REQUEST_HEADER_SIZE_RANGE: std::ops::RangeInclusive<u64> = 1024..=256 * 1024;
/// Bounds of `max_request_headers`.
const REQUEST_HEADERS_RANGE: std::ops::RangeInclusive<u64> = 8..=1000;
/// How long an HTTP/1.1 viewer connection may wait for a request head (idle, or sending one
/// slowly): hyper's default, below nginx's 60 s `client_header_timeout`.
pub const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// TTL bounds when a behavior has no `cache` table (CloudFront's `CachingOptimized` bounds,
/// with a 0 s minimum so that an origin's `max-age=0` is honoured).
pub const DEFAULT_MIN_TTL: Duration = Duration::ZERO;
/// See [`DEFAULT_MIN_TTL`].
pub const DEFAULT_DEFAULT_TTL: Duration = Duration::from_secs(24 * 3600);
/// See [`DEFAULT_MIN_TTL`].
pub const DEFAULT_MAX_TTL: Duration = Duration::from_secs(365 * 24 * 3600);
/// How long past its freshness a stale object may stand in for a failing origin when the
/// behavior does not say (`cache.stale_if_error`): a day rides out an outage without serving
/// very old content.
pub const DEFAULT_STALE_IF_ERROR: Duration = Duration::from_secs(24 * 3600);
/// The targeted field a behavior obeys when `cache.targeted_cache_control` is absent: the
/// one RFC 9213 defines for every CDN.
pub const DEFAULT_TARGETED_CACHE_CONTROL: &str = "cdn-cache-control";

/// The whole validated configuration of a node.
#[derive(Debug, Clone)]
pub struct Config {
    /// `[server]`
    pub server: ServerConfig,
    /// `[cache]`
    pub cache: CacheConfig,
    /// `[origins.*]`, sorted by name; behaviors refer to them by index.
    pub origins: Vec<OriginConfig>,
    /// `[[behaviors]]` in file order.
    pub behaviors: Vec<BehaviorConfig>,
    /// `[functions.*]`, sorted by name; behaviors refer to them by index.
    pub functions: Vec<FunctionConfig>,
    /// `[admin]`, if the admin API is enabled.
    pub admin: Option<AdminConfig>,
    /// `[kv.*]`, sorted by name.
    pub kv: Vec<KvConfig>,
    /// `[tier]`: parents and the tier token.
    pub tier: TierConfig,
}

/// One `[kv.NAME]` entry: a key-value store functions read with `kv_get` (see `crate::kv`).
#[derive(Clone)]
pub struct KvConfig {
    /// The table name, which functions and the admin API use.
    pub name: String,
    /// The JSON file the pairs came from.
    pub file: PathBuf,
    /// The file's pairs, read and checked when the config was loaded.
    pub entries: Arc<crate::kv::entries::Entries>,
}

impl std::fmt::Debug for KvConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The pairs may be many; their count is what a config dump needs.
        f.debug_struct("KvConfig")
            .field("name", &self.name)
            .field("file", &self.file)
            .field("keys", &self.entries.len())
            .finish()
    }
}

/// Where the admin API listens when `[admin] listen` is absent: loopback only.
pub const DEFAULT_ADMIN_LISTEN: &str = "127.0.0.1:9901";
/// Largest module upload when `[admin] max_upload_size` is absent.
pub const DEFAULT_MAX_UPLOAD_SIZE: u64 = 8 * 1024 * 1024;

/// `[admin]`
#[derive(Debug, Clone)]
pub struct AdminConfig {
    /// Admin listener address.
    pub listen: SocketAddr,
    /// Bearer token; required unless `listen` is loopback.
    pub token: Option<String>,
    /// Where uploads and stages persist; `None` keeps them in memory only.
    pub data_dir: Option<PathBuf>,
    /// Largest upload accepted.
    pub max_upload_size: usize,
}

/// One `[functions.NAME]` entry.
#[derive(Debug, Clone)]
pub struct FunctionConfig {
    /// The table name.
    pub name: String,
    /// The module file (`.wasm` or `.wat`).
    pub module: PathBuf,
    /// Resource limits per invocation.
    pub limits: FunctionLimits,
}

/// A function's resource limits, and its decision replay settings (`wasm::replay`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FunctionLimits {
    /// Linear memory, bytes.
    pub memory: usize,
    /// Time per invocation (wall clock, checked every millisecond).
    pub cpu: Duration,
    /// Largest module file, bytes.
    pub max_module_size: usize,
    /// Largest body read or written, bytes.
    pub body_limit: usize,
    /// Whether invocations are recorded and replayed (`replay`, on by default).
    pub replay: bool,
    /// Memory the function's decision trees may hold, bytes (`replay_memory`).
    pub replay_memory: usize,
}

impl Default for FunctionLimits {
    fn default() -> Self {
        FunctionLimits {
            memory: DEFAULT_FUNCTION_MEMORY as usize,
            cpu: DEFAULT_FUNCTION_CPU,
            max_module_size: DEFAULT_MAX_MODULE_SIZE as usize,
            body_limit: DEFAULT_BODY_LIMIT as usize,
            replay: true,
            replay_memory: DEFAULT_REPLAY_MEMORY as usize,
        }
    }
}

/// `[server]`
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Address of the viewer listener (port 0 picks a free port).
    pub listen: SocketAddr,
    /// Where compiled functions are cached; `None` compiles at every start.
    pub compile_cache: Option<PathBuf>,
    /// Requests carrying this header get the debug headers (`flow::debug`).
    pub debug_header: Option<HeaderName>,
    /// Largest request line plus headers, in bytes; larger requests get 431.
    pub max_request_header_size: usize,
    /// Most header lines in a request; more get 431.
    pub max_request_headers: usize,
    /// How long an HTTP/1.1 connection may wait for a request head before it is closed.
    pub header_read_timeout: Duration,
    /// The HTTPS listener, when `tls_listen` is set.
    pub tls: Option<TlsConfig>,
}

/// `[server] tls_listen`, `tls_cert`, `tls_key`: the HTTPS listener and what it presents.
#[derive(Debug, Clone)]
pub struct TlsConfig {
    /// Address of the HTTPS listener (port 0 picks a free port).
    pub listen: SocketAddr,
    /// The certificate chain file, resolved against the config file's directory.
    pub cert: PathBuf,
    /// The private key file, resolved likewise.
    pub key: PathBuf,
    /// The pair as loaded when the config was validated; a reload loads the files again.
    pub certified: Arc<rustls::sign::CertifiedKey>,
}

/// `[cache]`
#[derive(Debug, Clone)]
pub struct CacheConfig {
    /// Bytes of all cached objects together.
    pub max_size: u64,
    /// Largest single object stored; larger responses are passed through.
    pub max_object_size: u64,
}

/// One `[[behaviors]]` entry.
#[derive(Debug, Clone)]
pub struct BehaviorConfig {
    /// The pattern as written, for logs.
    pub path: String,
    /// Compiled path pattern.
    pub pattern: wildmatch::WildMatch,
    /// Index into [`Config::origins`].
    pub origin: usize,
    /// Methods viewers may use; others get 405.
    pub methods: Vec<Method>,
    /// TTL bounds.
    pub cache: CachePolicyConfig,
    /// What goes into the cache key.
    pub cache_key: CacheKeyConfig,
    /// Functions attached: event and index into [`Config::functions`].
    pub functions: Vec<(Event, usize)>,
    /// `compress`: serve gzip / br variants of compressible objects (see `cache::compress`).
    pub compress: bool,
    /// Whether plain-HTTP viewers are served, redirected or refused.
    pub viewer_protocol: ViewerProtocol,
}

/// `viewer_protocol` of a behavior: what a viewer on plain HTTP gets (CloudFront's viewer
/// protocol policy). Requests over HTTPS are always served.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ViewerProtocol {
    /// `"allow-all"`: served over HTTP and HTTPS alike.
    #[default]
    AllowAll,
    /// `"redirect-to-https"`: 301 (GET, HEAD) or 307 (other methods, so the body is resent) to
    /// the same path and query on the HTTPS listener.
    RedirectToHttps,
    /// `"https-only"`: 403 over plain HTTP.
    HttpsOnly,
}

/// TTL bounds of a behavior, applied to what the origin says (see `cache::policy`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CachePolicyConfig {
    /// Lower bound on an origin-given lifetime.
    pub min_ttl: Duration,
    /// Lifetime when the origin gives none.
    pub default_ttl: Duration,
    /// Upper bound on any lifetime.
    pub max_ttl: Duration,
    /// How long past its freshness a stale object may stand in for a failing origin when the
    /// response gives no `stale-if-error` of its own; zero turns the node's default off.
    pub stale_if_error: Duration,
    /// `heuristic_ttl`: percent of the time since `Last-Modified` used as the lifetime when the
    /// origin gives none; `None` uses `default_ttl`.
    pub heuristic_ttl: Option<u32>,
    /// `targeted_cache_control`: fields that replace `Cache-Control` for this node, first
    /// present wins (RFC 9213).
    pub targeted_cache_control: Vec<HeaderName>,
    /// `strip_set_cookie`: store responses carrying `Set-Cookie`, without it.
    pub strip_set_cookie: bool,
    /// `viewer_cache_control`: which request `Cache-Control` directives the cache obeys.
    pub viewer_cache_control: ViewerCacheControl,
}

/// `cache.viewer_cache_control` of a behavior: what a viewer's request `Cache-Control` may do.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ViewerCacheControl {
    /// Only `only-if-cached` is obeyed (it can only spare the origin); `no-cache`, `no-store`,
    /// `max-age` and `min-fresh` are ignored, so viewers cannot push traffic to the origin.
    #[default]
    Ignore,
    /// `no-cache`, `max-age`, `min-fresh` (revalidate), `no-store` (bypass) and
    /// `only-if-cached` (504 unless a fresh copy is stored) are obeyed (RFC 9111 §5.2.1).
    Honor,
}

/// Which parts of a request make up its cache key, beyond host and path.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CacheKeyConfig {
    /// Query parameters in the key.
    pub query: QueryKey,
    /// Request headers in the key, lowercase.
    pub headers: Vec<HeaderName>,
    /// Cookie names in the key.
    pub cookies: Vec<String>,
}

/// `cache_key.query`
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum QueryKey {
    /// The query string is ignored (and still forwarded to the origin).
    #[default]
    None,
    /// Every parameter, sorted by name.
    All,
    /// Only these parameters, sorted by name.
    Allow(Vec<String>),
}

impl Config {
    /// Reads and validates a config file; relative paths in it are relative to its directory.
    pub fn load(path: &Path) -> Result<Self, Error> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::Read {
            path: path.to_owned(),
            source,
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        Self::parse(&text, &path.display().to_string(), base)
    }

    /// Validates config text; `file` names it in errors, `base` anchors relative paths.
    pub fn parse(text: &str, file: &str, base: &Path) -> Result<Self, Error> {
        let raw: RawConfig = toml::from_str(text).map_err(|e| Error::Parse {
            file: file.to_owned(),
            message: e.to_string().trim_end().to_owned(),
        })?;
        Validator { text, file, base }.config(raw)
    }
}

impl FromStr for Config {
    type Err = Error;

    /// Parses inline TOML (tests); relative paths resolve against the working directory.
    fn from_str(text: &str) -> Result<Self, Error> {
        Self::parse(text, "<inline>", Path::new("."))
    }
}

/// Carries what every error needs: the text (to turn spans into lines) and the file name.
struct Validator<'a> {
    text: &'a str,
    file: &'a str,
    base: &'a Path,
}

impl Validator<'_> {
    fn error(&self, span: std::ops::Range<usize>, key: &str, message: impl Into<String>) -> Error {
        let upto = span.start.min(self.text.len());
        let line = self.text.as_bytes()[..upto]
            .iter()
            .filter(|&&b| b == b'\n')
            .count()
            + 1;
        Error::Invalid {
            file: self.file.to_owned(),
            line,
            key: key.to_owned(),
            message: message.into(),
        }
    }

    fn invalid(&self, value: &Spanned<String>, key: &str, message: impl Into<String>) -> Error {
        self.error(value.span(), key, message)
    }

    fn config(&self, raw: RawConfig) -> Result<Config, Error> {
        let listen = match &raw.server.listen {
            Some(v) => v.get_ref().parse().map_err(|_| {
                self.invalid(
                    v,
                    "server.listen",
                    format!(
                        "{:?} is not an address like \"127.0.0.1:8080\"",
                        v.get_ref()
                    ),
                )
            })?,
            None => DEFAULT_LISTEN
                .parse()
                .expect("DEFAULT_LISTEN is a valid address"),
        };
        let max_size = self.size(
            raw.cache.max_size.as_ref(),
            "cache.max_size",
            DEFAULT_CACHE_MAX_SIZE,
        )?;
        let max_object_size = self.size(
            raw.cache.max_object_size.as_ref(),
            "cache.max_object_size",
            DEFAULT_MAX_OBJECT_SIZE,
        )?;
        if max_object_size > max_size {
            let at = raw
                .cache
                .max_object_size
                .as_ref()
                .map(|v| v.span())
                .unwrap_or(0..0);
            return Err(self.error(
                at,
                "cache.max_object_size",
                "must not exceed cache.max_size",
            ));
        }

        let mut origins = Vec::with_capacity(raw.origins.len());
        for (name, origin) in &raw.origins {
            origins.push(self.origin(name, origin)?);
        }

        let mut functions = Vec::with_capacity(raw.functions.len());
        for (name, function) in &raw.functions {
            functions.push(self.function(name, function)?);
        }

        if raw.behaviors.is_empty() {
            return Err(Error::Invalid {
                file: self.file.to_owned(),
                line: self.text.lines().count().max(1),
                key: "behaviors".to_owned(),
                message:
                    "at least one [[behaviors]] entry is needed (path = \"*\" for the default)"
                        .to_owned(),
            });
        }
        let behaviors = raw
            .behaviors
            .iter()
            .enumerate()
            .map(|(i, b)| self.behavior(i, b, &origins, &functions))
            .collect::<Result<Vec<_>, _>>()?;
        let tls = self.tls(&raw.server)?;
        if tls.is_none() {
            let needs_tls = raw.behaviors.iter().enumerate().find_map(|(i, raw)| {
                let policy = raw.viewer_protocol.as_ref()?;
                (behaviors[i].viewer_protocol != ViewerProtocol::AllowAll).then_some((i, policy))
            });
            if let Some((i, policy)) = needs_tls {
                return Err(self.invalid(
                    policy,
                    &format!("behaviors[{i}].viewer_protocol"),
                    format!(
                        "{:?} needs an HTTPS listener: set [server] tls_listen, tls_cert and tls_key",
                        policy.get_ref()
                    ),
                ));
            }
        }

        let debug_header = match &raw.server.debug_header {
            Some(h) => Some(HeaderName::from_bytes(h.get_ref().as_bytes()).map_err(|_| {
                self.invalid(
                    h,
                    "server.debug_header",
                    format!("{:?} is not a valid header name", h.get_ref()),
                )
            })?),
            None => None,
        };
        let max_request_header_size = self.size(
            raw.server.max_request_header_size.as_ref(),
            "server.max_request_header_size",
            DEFAULT_MAX_REQUEST_HEADER_SIZE,
        )?;
        if let Some(v) = raw
            .server
            .max_request_header_size
            .as_ref()
            .filter(|_| !REQUEST_HEADER_SIZE_RANGE.contains(&max_request_header_size))
        {
            return Err(self.invalid(
                v,
                "server.max_request_header_size",
                "must be between 1 KiB and 256 KiB",
            ));
        }
        let max_request_headers = match &raw.server.max_request_headers {
            None => DEFAULT_MAX_REQUEST_HEADERS,
            Some(v) if REQUEST_HEADERS_RANGE.contains(v.get_ref()) => *v.get_ref(),
            Some(v) => {
                return Err(self.error(
                    v.span(),
                    "server.max_request_headers",
                    format!(
                        "must be between {} and {}",
                        REQUEST_HEADERS_RANGE.start(),
                        REQUEST_HEADERS_RANGE.end()
                    ),
                ))
            }
        };
        let header_read_timeout = self.duration(
            raw.server.header_read_timeout.as_ref(),
            "server.header_read_timeout",
            DEFAULT_HEADER_READ_TIMEOUT,
        )?;
        if let Some(v) = raw
            .server
            .header_read_timeout
            .as_ref()
            .filter(|_| header_read_timeout.is_zero())
        {
            return Err(self.invalid(v, "server.header_read_timeout", "must be more than 0"));
        }
        let compile_cache = match &raw.server.compile_cache {
            Some(dir) => Some(self.path(dir.get_ref())),
            None => default_compile_cache(),
        };
        let admin = match &raw.admin {
            Some(a) => Some(self.admin(a)?),
            None => None,
        };
        let mut kv = Vec::with_capacity(raw.kv.len());
        for (name, store) in &raw.kv {
            kv.push(self.kv(name, store)?);
        }
        let tier = self.tier(raw.tier.as_ref())?;
        Ok(Config {
            admin,
            kv,
            tier,
            server: ServerConfig {
                listen,
                compile_cache,
                debug_header,
                max_request_header_size: max_request_header_size as usize,
                max_request_headers: max_request_headers as usize,
                header_read_timeout,
                tls,
            },
            cache: CacheConfig {
                max_size,
                max_object_size,
            },
            origins,
            behaviors,
            functions,
        })
    }

    fn admin(&self, raw: &Spanned<raw::RawAdmin>) -> Result<AdminConfig, Error> {
        let span = raw.span();
        let raw = raw.get_ref();
        let listen: SocketAddr = match &raw.listen {
            Some(v) => v.get_ref().parse().map_err(|_| {
                self.invalid(
                    v,
                    "admin.listen",
                    format!(
                        "{:?} is not an address like \"127.0.0.1:9901\"",
                        v.get_ref()
                    ),
                )
            })?,
            None => DEFAULT_ADMIN_LISTEN
                .parse()
                .expect("DEFAULT_ADMIN_LISTEN is a valid address"),
        };
        let token = match (&raw.token, &raw.token_env) {
            (Some(t), None) if t.get_ref().len() >= 16 => Some(t.get_ref().clone()),
            (Some(t), None) => {
                return Err(self.invalid(t, "admin.token", "must be at least 16 characters"))
            }
            (None, Some(var)) => match std::env::var(var.get_ref()) {
                Ok(t) if t.len() >= 16 => Some(t),
                Ok(_) => {
                    return Err(self.invalid(
                        var,
                        "admin.token_env",
                        format!("${} must hold at least 16 characters", var.get_ref()),
                    ))
                }
                Err(_) => {
                    return Err(self.invalid(
                        var,
                        "admin.token_env",
                        format!("${} is not set", var.get_ref()),
                    ))
                }
            },
            (Some(t), Some(_)) => {
                return Err(self.invalid(t, "admin.token", "set `token` or `token_env`, not both"))
            }
            (None, None) => None,
        };
        if token.is_none() && !listen.ip().is_loopback() {
            return Err(self.error(
                span,
                "admin.listen",
                format!(
                    "{listen} is not loopback: set `token` or `token_env` to expose the admin API"
                ),
            ));
        }
        let max_upload_size = self.size(
            raw.max_upload_size.as_ref(),
            "admin.max_upload_size",
            DEFAULT_MAX_UPLOAD_SIZE,
        )?;
        Ok(AdminConfig {
            listen,
            token,
            data_dir: raw.data_dir.as_ref().map(|d| self.path(d.get_ref())),
            max_upload_size: usize::try_from(max_upload_size).unwrap_or(usize::MAX),
        })
    }

    /// `tls_listen`, `tls_cert` and `tls_key` come together; the pair is loaded here, so a
    /// file that does not load is refused at start and on reload, naming the key and the file.
    fn tls(&self, raw: &raw::RawServer) -> Result<Option<TlsConfig>, Error> {
        let (listen, cert, key) = match (&raw.tls_listen, &raw.tls_cert, &raw.tls_key) {
            (None, None, None) => return Ok(None),
            (Some(listen), Some(cert), Some(key)) => (listen, cert, key),
            (listen, cert, key) => {
                let (given, missing) = [
                    ("server.tls_listen", listen),
                    ("server.tls_cert", cert),
                    ("server.tls_key", key),
                ]
                .into_iter()
                .partition::<Vec<_>, _>(|(_, v)| v.is_some());
                let (name, value) = given[0];
                let missing: Vec<&str> = missing.iter().map(|(name, _)| *name).collect();
                return Err(self.invalid(
                    value.as_ref().expect("partitioned on is_some"),
                    name,
                    format!(
                        "tls_listen, tls_cert and tls_key go together; missing: {}",
                        missing.join(", ")
                    ),
                ));
            }
        };
        let address: SocketAddr = listen.get_ref().parse().map_err(|_| {
            self.invalid(
                listen,
                "server.tls_listen",
                format!(
                    "{:?} is not an address like \"127.0.0.1:8443\"",
                    listen.get_ref()
                ),
            )
        })?;
        let (cert_path, key_path) = (self.path(cert.get_ref()), self.path(key.get_ref()));
        let certified =
            crate::tls::load_certified_key(&cert_path, &key_path).map_err(|e| match e {
                crate::tls::CertError::Key { .. } => {
                    self.invalid(key, "server.tls_key", e.to_string())
                }
                _ => self.invalid(cert, "server.tls_cert", e.to_string()),
            })?;
        Ok(Some(TlsConfig {
            listen: address,
            cert: cert_path,
            key: key_path,
            certified: Arc::new(certified),
        }))
    }

    fn path(&self, relative: &str) -> PathBuf {
        if self.base == Path::new(".") {
            PathBuf::from(relative)
        } else {
            self.base.join(relative)
        }
    }

    fn kv(&self, name: &Spanned<String>, raw: &RawKv) -> Result<KvConfig, Error> {
        let key = format!("kv.{}", name.get_ref());
        if name.get_ref().is_empty()
            || !name
                .get_ref()
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err(self.invalid(
                name,
                &key,
                format!(
                    "invalid store name {:?}: use letters, digits, `-` and `_`",
                    name.get_ref()
                ),
            ));
        }
        let file = self.path(raw.file.get_ref());
        let key = format!("{key}.file");
        let json = std::fs::read(&file).map_err(|e| {
            self.invalid(
                &raw.file,
                &key,
                format!("cannot read {} ({e})", file.display()),
            )
        })?;
        let entries = crate::kv::entries::parse_entries(&json)
            .map_err(|e| self.invalid(&raw.file, &key, format!("{}: {e}", file.display())))?;
        Ok(KvConfig {
            name: name.get_ref().clone(),
            file,
            entries: Arc::new(entries),
        })
    }

    fn function(&self, name: &Spanned<String>, raw: &RawFunction) -> Result<FunctionConfig, Error> {
        let key = |field: &str| format!("functions.{}.{field}", name.get_ref());
        let module = self.path(raw.module.get_ref());
        if !module.is_file() {
            return Err(self.invalid(
                &raw.module,
                &key("module"),
                format!("{} is not a file", module.display()),
            ));
        }
        let defaults = FunctionLimits::default();
        let size =
            |v: &Option<Spanned<String>>, field: &str, default: usize| -> Result<usize, Error> {
                let bytes = self.size(v.as_ref(), &key(field), default as u64)?;
                Ok(usize::try_from(bytes).unwrap_or(usize::MAX))
            };
        let limits = FunctionLimits {
            memory: size(&raw.memory_limit, "memory_limit", defaults.memory)?,
            cpu: self.duration(raw.cpu_limit.as_ref(), &key("cpu_limit"), defaults.cpu)?,
            max_module_size: size(
                &raw.max_module_size,
                "max_module_size",
                defaults.max_module_size,
            )?,
            body_limit: size(&raw.body_limit, "body_limit", defaults.body_limit)?,
            replay: raw
                .replay
                .as_ref()
                .map_or(defaults.replay, |r| *r.get_ref()),
            replay_memory: size(&raw.replay_memory, "replay_memory", defaults.replay_memory)?,
        };
        if limits.cpu.is_zero() {
            let at = raw
                .cpu_limit
                .as_ref()
                .map_or(raw.module.span(), |v| v.span());
            return Err(self.error(at, &key("cpu_limit"), "must be more than zero"));
        }
        Ok(FunctionConfig {
            name: name.get_ref().clone(),
            module,
            limits,
        })
    }

    fn attachments(
        &self,
        raw: Option<&std::collections::BTreeMap<Spanned<String>, Spanned<String>>>,
        key: &str,
        functions: &[FunctionConfig],
    ) -> Result<Vec<(Event, usize)>, Error> {
        let mut attached = Vec::new();
        for (event_name, function) in raw.into_iter().flatten() {
            let event = Event::ALL.into_iter().find(|e| e.config_name() == event_name.get_ref()).ok_or_else(|| {
                self.invalid(
                    event_name,
                    key,
                    format!(
                        "unknown event {:?}; expected viewer_request, origin_request, origin_response or viewer_response",
                        event_name.get_ref()
                    ),
                )
            })?;
            let index = functions
                .iter()
                .position(|f| &f.name == function.get_ref())
                .ok_or_else(|| {
                    let known: Vec<&str> = functions.iter().map(|f| f.name.as_str()).collect();
                    self.invalid(
                        function,
                        &format!("{key}.{}", event_name.get_ref()),
                        format!(
                            "unknown function {:?}; known: {}",
                            function.get_ref(),
                            known.join(", ")
                        ),
                    )
                })?;
            attached.push((event, index));
        }
        Ok(attached)
    }

    fn behavior(
        &self,
        i: usize,
        raw: &RawBehavior,
        origins: &[OriginConfig],
        functions: &[FunctionConfig],
    ) -> Result<BehaviorConfig, Error> {
        let key = |field: &str| format!("behaviors[{i}].{field}");
        let path = raw.path.get_ref();
        if !(path.starts_with('/') || path.starts_with('*')) {
            return Err(self.invalid(
                &raw.path,
                &key("path"),
                format!("{path:?} must start with `/` or `*`"),
            ));
        }
        let origin = origins
            .iter()
            .position(|o| &o.name == raw.origin.get_ref())
            .ok_or_else(|| {
                let known: Vec<&str> = origins.iter().map(|o| o.name.as_str()).collect();
                self.invalid(
                    &raw.origin,
                    &key("origin"),
                    format!(
                        "unknown origin {:?}; known: {}",
                        raw.origin.get_ref(),
                        known.join(", ")
                    ),
                )
            })?;
        let methods = match &raw.methods {
            None => vec![Method::GET, Method::HEAD],
            Some(list) => {
                let mut methods = Vec::new();
                for m in list.get_ref() {
                    let method = method(m.get_ref())
                        .map_err(|reason| self.invalid(m, &key("methods"), reason))?;
                    methods.push(method);
                }
                if methods.is_empty() {
                    return Err(self.error(
                        list.span(),
                        &key("methods"),
                        "needs at least one method",
                    ));
                }
                methods
            }
        };
        Ok(BehaviorConfig {
            path: path.clone(),
            pattern: wildmatch::WildMatch::new(path),
            origin,
            methods,
            cache: self.cache_policy(raw.cache.as_ref(), &key("cache"))?,
            cache_key: self.cache_key(raw.cache_key.as_ref(), &key("cache_key"))?,
            functions: self.attachments(raw.functions.as_ref(), &key("functions"), functions)?,
            compress: raw.compress.unwrap_or(false),
            viewer_protocol: match &raw.viewer_protocol {
                None => ViewerProtocol::AllowAll,
                Some(v) => match v.get_ref().as_str() {
                    "allow-all" => ViewerProtocol::AllowAll,
                    "redirect-to-https" => ViewerProtocol::RedirectToHttps,
                    "https-only" => ViewerProtocol::HttpsOnly,
                    other => {
                        return Err(self.invalid(
                            v,
                            &key("viewer_protocol"),
                            format!("{other:?} is not one of \"allow-all\", \"redirect-to-https\", \"https-only\""),
                        ))
                    }
                },
            },
        })
    }

    fn cache_policy(
        &self,
        raw: Option<&Spanned<RawCachePolicy>>,
        key: &str,
    ) -> Result<CachePolicyConfig, Error> {
        let Some(raw) = raw else {
            return Ok(CachePolicyConfig {
                min_ttl: DEFAULT_MIN_TTL,
                default_ttl: DEFAULT_DEFAULT_TTL,
                max_ttl: DEFAULT_MAX_TTL,
                stale_if_error: DEFAULT_STALE_IF_ERROR,
                heuristic_ttl: None,
                targeted_cache_control: vec![HeaderName::from_static(
                    DEFAULT_TARGETED_CACHE_CONTROL,
                )],
                strip_set_cookie: false,
                viewer_cache_control: ViewerCacheControl::default(),
            });
        };
        let span = raw.span();
        let raw = raw.get_ref();
        let min_ttl = self.duration(
            raw.min_ttl.as_ref(),
            &format!("{key}.min_ttl"),
            DEFAULT_MIN_TTL,
        )?;
        let max_ttl = self.duration(
            raw.max_ttl.as_ref(),
            &format!("{key}.max_ttl"),
            DEFAULT_MAX_TTL,
        )?;
        // An absent default_ttl follows the bounds so that `{ max_ttl = "60s" }` alone is valid.
        let default_ttl = self
            .duration(
                raw.default_ttl.as_ref(),
                &format!("{key}.default_ttl"),
                DEFAULT_DEFAULT_TTL,
            )?
            .clamp(min_ttl.min(max_ttl), max_ttl);
        if min_ttl > max_ttl {
            return Err(self.error(span, key, "min_ttl must not exceed max_ttl"));
        }
        if let Some(d) = &raw.default_ttl {
            let given = self.duration(Some(d), key, DEFAULT_DEFAULT_TTL)?;
            if given < min_ttl || given > max_ttl {
                return Err(self.invalid(
                    d,
                    &format!("{key}.default_ttl"),
                    "must lie between min_ttl and max_ttl",
                ));
            }
        }
        let stale_if_error = self.duration(
            raw.stale_if_error.as_ref(),
            &format!("{key}.stale_if_error"),
            DEFAULT_STALE_IF_ERROR,
        )?;
        let heuristic_ttl = match &raw.heuristic_ttl {
            None => None,
            Some(v) => Some(
                v.get_ref()
                    .trim()
                    .strip_suffix('%')
                    .and_then(|p| p.trim_end().parse::<u32>().ok())
                    .filter(|p| (1..=100).contains(p))
                    .ok_or_else(|| {
                        self.invalid(
                            v,
                            &format!("{key}.heuristic_ttl"),
                            format!("{:?} is not a share like \"10%\" (1% to 100%)", v.get_ref()),
                        )
                    })?,
            ),
        };
        let targeted_cache_control = match &raw.targeted_cache_control {
            None => vec![HeaderName::from_static(DEFAULT_TARGETED_CACHE_CONTROL)],
            Some(v) => self.header_names(v, &format!("{key}.targeted_cache_control"))?,
        };
        let viewer_cache_control = match &raw.viewer_cache_control {
            None => ViewerCacheControl::default(),
            Some(v) => match v.get_ref().as_str() {
                "ignore" => ViewerCacheControl::Ignore,
                "honor" => ViewerCacheControl::Honor,
                other => {
                    return Err(self.invalid(
                        v,
                        &format!("{key}.viewer_cache_control"),
                        format!("{other:?}: expected \"ignore\" or \"honor\""),
                    ))
                }
            },
        };
        Ok(CachePolicyConfig {
            min_ttl,
            default_ttl,
            max_ttl,
            stale_if_error,
            heuristic_ttl,
            targeted_cache_control,
            strip_set_cookie: raw.strip_set_cookie.as_ref().is_some_and(|b| *b.get_ref()),
            viewer_cache_control,
        })
    }

    /// A header name or a list of them (`"X"` or `["X", "Y"]`); an empty list means none.
    fn header_names(
        &self,
        raw: &Spanned<toml::Value>,
        key: &str,
    ) -> Result<Vec<HeaderName>, Error> {
        let bad = |message: String| self.error(raw.span(), key, message);
        let names: Vec<&str> = match raw.get_ref() {
            toml::Value::String(s) => vec![s.as_str()],
            toml::Value::Array(items) => items
                .iter()
                .map(|i| {
                    i.as_str()
                        .ok_or_else(|| bad("expected a header name or a list of them".into()))
                })
                .collect::<Result<_, _>>()?,
            _ => return Err(bad("expected a header name or a list of them".into())),
        };
        names
            .into_iter()
            .map(|n| {
                HeaderName::from_bytes(n.as_bytes())
                    .map_err(|_| bad(format!("{n:?} is not a valid header name")))
            })
            .collect()
    }

    fn cache_key(&self, raw: Option<&RawCacheKey>, key: &str) -> Result<CacheKeyConfig, Error> {
        let Some(raw) = raw else {
            return Ok(CacheKeyConfig::default());
        };
        let query = match &raw.query {
            None => QueryKey::None,
            Some(v) => {
                let bad = || {
                    self.error(
                        v.span(),
                        &format!("{key}.query"),
                        "expected \"none\", \"all\" or a list of parameter names",
                    )
                };
                match v.get_ref() {
                    toml::Value::String(s) if s == "none" => QueryKey::None,
                    toml::Value::String(s) if s == "all" => QueryKey::All,
                    toml::Value::Array(items) => {
                        let mut names = items
                            .iter()
                            .map(|i| i.as_str().map(str::to_owned).ok_or_else(bad))
                            .collect::<Result<Vec<_>, _>>()?;
                        names.sort();
                        names.dedup();
                        QueryKey::Allow(names)
                    }
                    _ => return Err(bad()),
                }
            }
        };
        let mut headers = Vec::new();
        for h in raw.headers.iter().flatten() {
            headers.push(HeaderName::from_bytes(h.get_ref().as_bytes()).map_err(|_| {
                self.invalid(
                    h,
                    &format!("{key}.headers"),
                    format!("{:?} is not a valid header name", h.get_ref()),
                )
            })?);
        }
        let mut cookies = Vec::new();
        for c in raw.cookies.iter().flatten() {
            let name = c.get_ref();
            if name.is_empty()
                || name
                    .bytes()
                    .any(|b| b <= b' ' || b"=;,\"".contains(&b) || b >= 0x7f)
            {
                return Err(self.invalid(
                    c,
                    &format!("{key}.cookies"),
                    format!("{name:?} is not a valid cookie name"),
                ));
            }
            cookies.push(name.clone());
        }
        Ok(CacheKeyConfig {
            query,
            headers,
            cookies,
        })
    }

    fn duration(
        &self,
        raw: Option<&Spanned<String>>,
        key: &str,
        default: Duration,
    ) -> Result<Duration, Error> {
        match raw {
            None => Ok(default),
            Some(v) => humantime::parse_duration(v.get_ref().trim()).map_err(|e| {
                self.invalid(
                    v,
                    key,
                    format!(
                        "{:?} is not a duration like \"30s\", \"5m\" or \"1d\" ({e})",
                        v.get_ref()
                    ),
                )
            }),
        }
    }

    fn size(&self, raw: Option<&Spanned<String>>, key: &str, default: u64) -> Result<u64, Error> {
        match raw {
            None => Ok(default),
            Some(v) => v
                .get_ref()
                .trim()
                .parse::<bytesize::ByteSize>()
                .map(|b| b.as_u64())
                .map_err(|e| {
                    self.invalid(
                        v,
                        key,
                        format!("{:?} is not a size like \"256 MiB\" ({e})", v.get_ref()),
                    )
                }),
        }
    }
}

/// `$XDG_CACHE_HOME/edge/compiled`, else `$HOME/.cache/edge/compiled`.
fn default_compile_cache() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))?;
    Some(base.join("edge").join("compiled"))
}

/// A method name from `methods`: any RFC 9110 token (§9.1: `M-SEARCH`, `PROPFIND`, ...), so
/// extension methods reach the origin. Method names are case-sensitive, so a lowercase spelling
/// of a standard method (`"patch"`) would never match a real request: it is refused as a typo.
fn method(name: &str) -> Result<Method, String> {
    // `Method::from_bytes` accepts exactly the token characters (RFC 9110 §5.6.2).
    let method = Method::from_bytes(name.as_bytes())
        .map_err(|_| format!("{name:?} is not an HTTP method name (an RFC 9110 token)"))?;
    let standard = [
        Method::GET,
        Method::HEAD,
        Method::POST,
        Method::PUT,
        Method::DELETE,
        Method::CONNECT,
        Method::OPTIONS,
        Method::TRACE,
        Method::PATCH,
    ];
    if let Some(meant) = standard
        .iter()
        .find(|s| s.as_str() != name && s.as_str().eq_ignore_ascii_case(name))
    {
        return Err(format!(
            "{name:?} is not {:?}: method names are case-sensitive",
            meant.as_str()
        ));
    }
    Ok(method)
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = r#"
[server]
listen = "127.0.0.1:8080"

[cache]
max_size = "256 MiB"
max_object_size = "16 MiB"

[origins.bucket]
type = "static"
root = "."

[origins.app]
type = "http"
targets = ["http://127.0.0.1:3000", "http://127.0.0.1:3001"]
connect_timeout = "2s"
response_timeout = "30s"

[[behaviors]]
path = "/api/*"
origin = "app"
methods = ["GET", "HEAD", "OPTIONS", "PUT", "POST", "PATCH", "DELETE"]
cache = { default_ttl = "0s", max_ttl = "60s" }
cache_key = { query = "all", headers = ["Accept-Language"], cookies = ["session"] }

[[behaviors]]
path = "*"
origin = "bucket"
cache = { min_ttl = "0s", default_ttl = "1d", max_ttl = "365d" }
cache_key = { query = "none" }
"#;

    fn err(text: &str) -> String {
        match text.parse::<Config>() {
            Ok(_) => panic!("config should have been refused"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn example_config_loads() {
        let c: Config = EXAMPLE.parse().expect("example is valid");
        assert_eq!(c.cache.max_size, 256 * 1024 * 1024);
        assert_eq!(c.origins.len(), 2);
        let api = &c.behaviors[0];
        assert_eq!(c.origins[api.origin].name, "app");
        assert_eq!(api.cache.max_ttl, Duration::from_secs(60));
        assert_eq!(api.cache.default_ttl, Duration::ZERO);
        assert_eq!(api.cache_key.query, QueryKey::All);
        assert_eq!(
            api.cache_key.headers,
            vec![HeaderName::from_static("accept-language")]
        );
        assert_eq!(
            c.behaviors[1].cache.max_ttl,
            Duration::from_secs(365 * 86400)
        );
        assert_eq!(c.behaviors[1].methods, vec![Method::GET, Method::HEAD]);
    }

    #[test]
    fn unknown_origin_names_line_and_key() {
        let text = EXAMPLE.replace("origin = \"app\"", "origin = \"ap\"");
        let e = err(&text);
        assert!(
            e.starts_with("<inline>:21: `behaviors[0].origin`: unknown origin \"ap\""),
            "{e}"
        );
    }

    #[test]
    fn unknown_field_names_line() {
        let e = err(&EXAMPLE.replace("max_object_size", "max_objet_size"));
        assert!(e.contains("line 7") && e.contains("max_objet_size"), "{e}");
    }

    #[test]
    fn request_header_limits_have_defaults_and_bounds() {
        let c: Config = EXAMPLE.parse().expect("example is valid");
        assert_eq!(
            (
                c.server.max_request_header_size,
                c.server.max_request_headers
            ),
            (32 * 1024, 100)
        );
        let with = |lines: &str| EXAMPLE.replacen("[server]\n", &format!("[server]\n{lines}\n"), 1);
        let c: Config = with("max_request_header_size = \"8 KiB\"\nmax_request_headers = 20")
            .parse()
            .expect("valid limits");
        assert_eq!(
            (
                c.server.max_request_header_size,
                c.server.max_request_headers
            ),
            (8 * 1024, 20)
        );
        let e = err(&with("max_request_header_size = \"100 B\""));
        assert!(e.contains("`server.max_request_header_size`"), "{e}");
        let e = err(&with("max_request_headers = 0"));
        assert!(e.contains("`server.max_request_headers`"), "{e}");
    }

    #[test]
    fn header_read_timeout_has_a_default_and_refuses_zero() {
        let c: Config = EXAMPLE.parse().expect("example is valid");
        assert_eq!(c.server.header_read_timeout, Duration::from_secs(30));
        let with = |lines: &str| EXAMPLE.replacen("[server]\n", &format!("[server]\n{lines}\n"), 1);
        let c: Config = with("header_read_timeout = \"5s\"").parse().expect("valid");
        assert_eq!(c.server.header_read_timeout, Duration::from_secs(5));
        let e = err(&with("header_read_timeout = \"0s\""));
        assert!(
            e.contains("`server.header_read_timeout`: must be more than 0"),
            "{e}"
        );
        let e = err(&with("header_read_timeout = \"soon\""));
        assert!(e.contains("`server.header_read_timeout`"), "{e}");
    }

    #[test]
    fn bad_duration_and_size_are_refused() {
        let e = err(&EXAMPLE.replace("\"2s\"", "\"2 fortnights\""));
        assert!(e.contains(":16: `origins.app.connect_timeout`"), "{e}");
        let e = err(&EXAMPLE.replace("\"256 MiB\"", "\"lots\""));
        assert!(e.contains(":6: `cache.max_size`"), "{e}");
    }

    #[test]
    fn ttl_bounds_are_checked() {
        let e = err(&EXAMPLE.replace("default_ttl = \"1d\"", "default_ttl = \"400d\""));
        assert!(e.contains("default_ttl`: must lie between"), "{e}");
        let e = err(&EXAMPLE.replace("min_ttl = \"0s\"", "min_ttl = \"500d\""));
        assert!(e.contains("min_ttl must not exceed max_ttl"), "{e}");
    }

    #[test]
    fn freshness_settings_parse_with_defaults_and_checks() {
        let c: Config = EXAMPLE.parse().expect("example is valid");
        let api = &c.behaviors[0].cache;
        assert_eq!(api.heuristic_ttl, None);
        assert_eq!(
            api.targeted_cache_control,
            vec![HeaderName::from_static("cdn-cache-control")]
        );
        assert!(!api.strip_set_cookie);
        assert_eq!(api.viewer_cache_control, ViewerCacheControl::Ignore);

        let set = |extra: &str| {
            EXAMPLE.replace(
                r#"cache = { default_ttl = "0s", max_ttl = "60s" }"#,
                &format!(r#"cache = {{ default_ttl = "0s", max_ttl = "60s", {extra} }}"#),
            )
        };
        let c: Config = set(r#"heuristic_ttl = "10%", targeted_cache_control = ["Edge-Cache-Control", "CDN-Cache-Control"], strip_set_cookie = true, viewer_cache_control = "honor""#)
            .parse()
            .expect("all set");
        let api = &c.behaviors[0].cache;
        assert_eq!(api.heuristic_ttl, Some(10));
        assert_eq!(
            api.targeted_cache_control,
            vec![
                HeaderName::from_static("edge-cache-control"),
                HeaderName::from_static("cdn-cache-control")
            ]
        );
        assert!(api.strip_set_cookie);
        assert_eq!(api.viewer_cache_control, ViewerCacheControl::Honor);
        let c: Config = set(r#"targeted_cache_control = "Edge-Cache-Control""#)
            .parse()
            .expect("one name");
        assert_eq!(c.behaviors[0].cache.targeted_cache_control.len(), 1);
        let c: Config = set("targeted_cache_control = []").parse().expect("none");
        assert!(c.behaviors[0].cache.targeted_cache_control.is_empty());

        for (extra, message) in [
            (
                r#"heuristic_ttl = "10""#,
                "behaviors[0].cache.heuristic_ttl`",
            ),
            (r#"heuristic_ttl = "0%""#, "1% to 100%"),
            (r#"heuristic_ttl = "101%""#, "1% to 100%"),
            (
                r#"targeted_cache_control = "bad name""#,
                "not a valid header name",
            ),
            ("targeted_cache_control = 5", "a header name or a list"),
            (
                r#"viewer_cache_control = "honour""#,
                "expected \"ignore\" or \"honor\"",
            ),
        ] {
            let e = err(&set(extra));
            assert!(e.contains(message), "{extra}: {e}");
        }
    }

    #[test]
    fn targets_are_http_or_https_host_and_port() {
        let c: Config = EXAMPLE
            .replace("http://127.0.0.1:3001", "https://127.0.0.1:3001")
            .parse()
            .expect("https targets load");
        let OriginKind::Http { targets, .. } = &c.origins[0].kind else {
            panic!("app is an http origin");
        };
        assert_eq!(targets[1].scheme, http::uri::Scheme::HTTPS);
        let e = err(&EXAMPLE.replace("http://127.0.0.1:3001", "ftp://127.0.0.1:3001"));
        assert!(
            e.contains("`origins.app.targets`") && e.contains("https://"),
            "{e}"
        );
        let e = err(&EXAMPLE.replace("http://127.0.0.1:3001", "http://127.0.0.1:3001/x"));
        assert!(e.contains("has a path"), "{e}");
    }

    #[test]
    fn static_root_must_exist() {
        let e = err(&EXAMPLE.replace("root = \".\"", "root = \"./no-such-dir\""));
        assert!(
            e.contains(":11: `origins.bucket.root`") && e.contains("not a directory"),
            "{e}"
        );
    }

    #[test]
    fn bad_method_and_query_are_refused() {
        let e = err(&EXAMPLE.replace("\"PATCH\"", "\"patch\""));
        assert!(e.contains("`behaviors[0].methods`"), "{e}");
        let e = err(&EXAMPLE.replace("query = \"all\"", "query = \"some\""));
        assert!(e.contains("`behaviors[0].cache_key.query`"), "{e}");
    }

    #[test]
    fn extension_methods_are_any_token() {
        let c: Config = EXAMPLE
            .replace("\"PATCH\"", "\"M-SEARCH\", \"PROPFIND\", \"x.custom_1\"")
            .parse()
            .expect("tokens are method names");
        let names: Vec<&str> = c.behaviors[0].methods.iter().map(|m| m.as_str()).collect();
        assert!(
            ["M-SEARCH", "PROPFIND", "x.custom_1"]
                .iter()
                .all(|m| names.contains(m)),
            "{names:?}"
        );
        for bad in ["GE T", "GET/1", "", "Get"] {
            let e = err(&EXAMPLE.replace("\"PATCH\"", &format!("{bad:?}")));
            assert!(e.contains("`behaviors[0].methods`"), "{bad:?}: {e}");
        }
    }

    #[test]
    fn stale_if_error_is_a_behavior_setting() {
        let c: Config = EXAMPLE
            .replace(
                "max_ttl = \"60s\" }",
                "max_ttl = \"60s\", stale_if_error = \"0s\" }",
            )
            .parse()
            .expect("valid");
        assert_eq!(c.behaviors[0].cache.stale_if_error, Duration::ZERO);
        assert_eq!(c.behaviors[1].cache.stale_if_error, DEFAULT_STALE_IF_ERROR);
        let e = err(&EXAMPLE.replace(
            "max_ttl = \"60s\" }",
            "max_ttl = \"60s\", stale_if_error = \"soon\" }",
        ));
        assert!(e.contains("`behaviors[0].cache.stale_if_error`"), "{e}");
    }

    #[test]
    fn allow_list_query_is_sorted() {
        let c: Config = EXAMPLE
            .replace("query = \"all\"", "query = [\"b\", \"a\"]")
            .parse()
            .expect("valid");
        assert_eq!(
            c.behaviors[0].cache_key.query,
            QueryKey::Allow(vec!["a".into(), "b".into()])
        );
    }

    #[test]
    fn kv_files_are_read_and_checked() {
        let dir = tempfile::tempdir().expect("temp dir");
        let write = |name: &str, json: &str| {
            std::fs::write(dir.path().join(name), json).expect("write");
        };
        write(
            "redirects.json",
            r#"{"/old": "301 /new", "/sale": "302 /deals"}"#,
        );
        write("broken.json", "{\"a\": \"1\",\n  \"b\" \"2\"}");
        write("numbers.json", r#"{"a": "1", "b": 2}"#);
        let with = |kv: &str| format!("{EXAMPLE}\n[kv.redirects]\n{kv}\n");
        let parse = |text: &str| Config::parse(text, "edge.toml", dir.path());

        // Relative to the config file's directory.
        let c = parse(&with("file = \"redirects.json\"")).expect("valid");
        assert_eq!(c.kv.len(), 1);
        assert_eq!(c.kv[0].name, "redirects");
        assert_eq!(
            c.kv[0].entries.get("/sale").map(|v| &v[..]),
            Some(&b"302 /deals"[..])
        );

        let line = EXAMPLE.lines().count() + 3;
        let e = parse(&with("file = \"missing.json\""))
            .expect_err("missing file")
            .to_string();
        assert!(
            e.starts_with(&format!(
                "edge.toml:{line}: `kv.redirects.file`: cannot read"
            )),
            "{e}"
        );
        let e = parse(&with("file = \"broken.json\""))
            .expect_err("bad JSON")
            .to_string();
        assert!(
            e.contains("`kv.redirects.file`") && e.contains("broken.json") && e.contains("line 2"),
            "{e}"
        );
        let e = parse(&with("file = \"numbers.json\""))
            .expect_err("not a string")
            .to_string();
        assert!(e.contains("key \"b\" is a number"), "{e}");
        let e = parse(&with("file = \"redirects.json\"\nttl = \"1s\""))
            .expect_err("unknown field")
            .to_string();
        assert!(e.contains("ttl"), "{e}");
        let e = parse(&format!(
            "{EXAMPLE}\n[kv.\"../up\"]\nfile = \"redirects.json\"\n"
        ))
        .expect_err("bad name")
        .to_string();
        assert!(e.contains("invalid store name"), "{e}");
    }

    #[test]
    fn tls_keys_come_together_and_viewer_protocol_needs_them() {
        let with_server =
            |lines: &str| EXAMPLE.replace("[server]\n", &format!("[server]\n{lines}"));
        let e = err(&with_server("tls_listen = \"127.0.0.1:8443\"\n"));
        assert!(
            e.contains("`server.tls_listen`")
                && e.contains("missing: server.tls_cert, server.tls_key"),
            "{e}"
        );
        let e = err(&with_server("tls_key = \"k.pem\"\n"));
        assert!(
            e.contains("`server.tls_key`") && e.contains("server.tls_listen"),
            "{e}"
        );

        let redirect = EXAMPLE.replace(
            "origin = \"bucket\"\n",
            "origin = \"bucket\"\nviewer_protocol = \"redirect-to-https\"\n",
        );
        let e = err(&redirect);
        assert!(
            e.contains("`behaviors[1].viewer_protocol`") && e.contains("tls_listen"),
            "{e}"
        );
        let e = err(&redirect.replace("redirect-to-https", "https-always"));
        assert!(e.contains("\"https-always\" is not one of"), "{e}");
        let allow = redirect.replace("redirect-to-https", "allow-all");
        let config: Config = allow.parse().expect("allow-all needs no HTTPS listener");
        assert_eq!(
            config.behaviors[1].viewer_protocol,
            ViewerProtocol::AllowAll
        );
        assert!(config.server.tls.is_none());
    }

    #[test]
    fn no_behaviors_is_refused() {
        let e = err("[origins.a]\ntype = \"static\"\nroot = \".\"\n");
        assert!(e.contains("`behaviors`"), "{e}");
    }

    #[test]
    fn admin_needs_a_token_off_loopback() {
        let e = err(&format!("{EXAMPLE}\n[admin]\nlisten = \"0.0.0.0:9901\"\n"));
        assert!(
            e.contains("`admin.listen`") && e.contains("not loopback"),
            "{e}"
        );
        let c: Config = format!(
            "{EXAMPLE}\n[admin]\nlisten = \"0.0.0.0:9901\"\ntoken = \"0123456789abcdef\"\n"
        )
        .parse()
        .expect("valid");
        assert_eq!(
            c.admin.and_then(|a| a.token).as_deref(),
            Some("0123456789abcdef")
        );
        let e = err(&format!("{EXAMPLE}\n[admin]\ntoken = \"short\"\n"));
        assert!(e.contains("at least 16 characters"), "{e}");
        let e = err(&format!(
            "{EXAMPLE}\n[admin]\ntoken_env = \"EDGE_TEST_SURELY_UNSET_VAR\"\n"
        ));
        assert!(e.contains("is not set"), "{e}");
        let c: Config = format!("{EXAMPLE}\n[admin]\n")
            .parse()
            .expect("loopback without a token is allowed");
        assert_eq!(
            c.admin.map(|a| a.listen.to_string()).as_deref(),
            Some(DEFAULT_ADMIN_LISTEN)
        );
    }

    #[test]
    fn functions_are_validated() {
        let e = err(&EXAMPLE.replace(
            "cache_key = { query = \"none\" }",
            "cache_key = { query = \"none\" }\nfunctions = { viewer_request = \"nope\" }",
        ));
        assert!(
            e.contains("`behaviors[1].functions.viewer_request`: unknown function \"nope\""),
            "{e}"
        );
        let e = err(&EXAMPLE.replace(
            "cache_key = { query = \"none\" }",
            "cache_key = { query = \"none\" }\nfunctions = { on_request = \"x\" }",
        ));
        assert!(e.contains("unknown event \"on_request\""), "{e}");
        let e = err(&format!(
            "{EXAMPLE}\n[functions.f]\nmodule = \"missing.wasm\"\n"
        ));
        assert!(
            e.contains("`functions.f.module`") && e.contains("is not a file"),
            "{e}"
        );
        let e = err(&format!(
            "{EXAMPLE}\n[functions.f]\nmodule = \"Cargo.toml\"\ncpu_limit = \"0s\"\n"
        ));
        assert!(
            e.contains("`functions.f.cpu_limit`: must be more than zero"),
            "{e}"
        );
    }

    #[test]
    fn replay_is_on_by_default_and_set_per_function() {
        let limits = |extra: &str| -> FunctionLimits {
            let config: Config =
                format!("{EXAMPLE}\n[functions.f]\nmodule = \"Cargo.toml\"\n{extra}")
                    .parse()
                    .expect("valid config");
            let f = config.functions.iter().find(|f| f.name == "f").expect("f");
            f.limits.clone()
        };
        let default = limits("");
        assert!(default.replay);
        assert_eq!(default.replay_memory, DEFAULT_REPLAY_MEMORY as usize);
        let set = limits("replay = false\nreplay_memory = \"64 KiB\"\n");
        assert!(!set.replay);
        assert_eq!(set.replay_memory, 64 * 1024);
        let e = err(&format!(
            "{EXAMPLE}\n[functions.f]\nmodule = \"Cargo.toml\"\nreplay_memory = \"lots\"\n"
        ));
        assert!(e.contains("`functions.f.replay_memory`"), "{e}");
    }
}

#[cfg(test)]
mod proptests {
    use super::*;
    use proptest::prelude::*;

    /// A valid config that needs nothing on disk.
    const BASE: &str = r#"[server]
listen = "127.0.0.1:0"
debug_header = "x-edge-debug"

[cache]
max_size = "1 MiB"
max_object_size = "64 KiB"

[origins.app]
type = "http"
targets = ["http://127.0.0.1:9", "http://127.0.0.1:10"]
connect_timeout = "1s"
response_timeout = "30s"

[[behaviors]]
path = "/api/*"
origin = "app"
methods = ["GET", "HEAD", "POST"]
cache = { min_ttl = "0s", default_ttl = "0s", max_ttl = "60s" }
cache_key = { query = "all", headers = ["Accept-Language"], cookies = ["session"] }

[[behaviors]]
path = "*"
origin = "app"
"#;

    /// Values that are wrong in interesting ways.
    fn value() -> impl Strategy<Value = String> {
        prop_oneof![
            Just(r#""""#.to_owned()),
            Just(r#""-1s""#.to_owned()),
            Just(r#""1 XiB""#.to_owned()),
            Just(r#""18446744073709551616 B""#.to_owned()),
            Just(r#""999999999999999d""#.to_owned()),
            Just(r#""http://""#.to_owned()),
            Just(r#""ftp://x""#.to_owned()),
            Just(r#""nope""#.to_owned()),
            Just(r#""*""#.to_owned()),
            Just("[]".to_owned()),
            Just("{}".to_owned()),
            Just("1e999".to_owned()),
            Just("-1".to_owned()),
            Just("true".to_owned()),
            Just(r#"["GET", "BREW"]"#.to_owned()),
            Just(r#"{ query = "some" }"#.to_owned()),
            "\"[ -~]{0,12}\"",
            "[ -~]{0,12}",
        ]
    }

    #[derive(Debug, Clone)]
    enum Mutation {
        SetValue(usize, String),
        ReplaceLine(usize, String),
        DeleteLine(usize),
        DuplicateLine(usize),
    }

    fn mutation() -> impl Strategy<Value = Mutation> {
        prop_oneof![
            (any::<usize>(), value()).prop_map(|(i, v)| Mutation::SetValue(i, v)),
            (any::<usize>(), "[ -~]{0,30}").prop_map(|(i, l)| Mutation::ReplaceLine(i, l)),
            any::<usize>().prop_map(Mutation::DeleteLine),
            any::<usize>().prop_map(Mutation::DuplicateLine),
        ]
    }

    fn apply(text: &str, mutations: &[Mutation]) -> String {
        let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
        for m in mutations {
            let n = lines.len().max(1);
            match m {
                Mutation::SetValue(i, v) => {
                    if let Some(line) = lines.get_mut(i % n) {
                        if let Some((key, _)) = line.split_once(" = ") {
                            *line = format!("{key} = {v}");
                        }
                    }
                }
                Mutation::ReplaceLine(i, l) => {
                    if let Some(line) = lines.get_mut(i % n) {
                        *line = l.clone();
                    }
                }
                Mutation::DeleteLine(i) => {
                    if i % n < lines.len() {
                        lines.remove(i % n);
                    }
                }
                Mutation::DuplicateLine(i) => {
                    if let Some(line) = lines.get(i % n).cloned() {
                        lines.insert(i % n, line);
                    }
                }
            }
        }
        lines.join("\n")
    }

    #[test]
    fn the_undamaged_config_is_valid() {
        BASE.parse::<Config>().expect("BASE is valid");
    }

    proptest! {
        /// A damaged config never panics the loader, and every error says where: a line.
        #[test]
        fn damaged_configs_fail_with_a_line(mutations in prop::collection::vec(mutation(), 1..4)) {
            let text = apply(BASE, &mutations);
            if let Err(error) = text.parse::<Config>() {
                let message = error.to_string();
                let names_line = message.contains("line ")
                    || message
                        .strip_prefix("<inline>:")
                        .and_then(|rest| rest.split(':').next())
                        .is_some_and(|n| n.parse::<usize>().is_ok());
                prop_assert!(names_line, "no line in {message:?} for:\n{text}");
            }
        }

        /// Arbitrary text never panics the loader.
        #[test]
        fn arbitrary_text_never_panics(text in "[ -~\\n\\[\\]=\"]{0,200}") {
            let _ = text.parse::<Config>();
        }
    }
}
