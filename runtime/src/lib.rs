//! # edge-runtime: a caching CDN edge node
//!
//! A caching HTTP proxy in front of static and dynamic origins, with fixed points where edge
//! functions run. The request flow, each box linked to the module that owns it:
//!
//! ```text
//! viewer ──▶ listener ──▶ [viewer-request] ──▶ cache lookup ──hit──▶ [viewer-response] ──▶ viewer
//!                               │                    │ miss
//!                               │ generated          ▼
//!                               ▼             [origin-request] ──▶ origin (static | dynamic)
//!                        [viewer-response]                              │
//!                                             [origin-response] ◀───────┘
//!                                                    │
//!                                             cache store ──▶ [viewer-response] ──▶ viewer
//! ```
//!
//! - listener: [`listener`] (accept, HTTP/1.1, graceful shutdown), access log in [`access_log`]
//! - the flow driver, phase by phase: [`flow::handle`]
//!   - routing by behavior: [`flow::origin_select`]
//!   - viewer-request: [`flow::viewer_request`]
//!   - cache lookup and request collapsing: [`flow::cache_lookup`], [`cache::coalesce`]
//!   - origin-request (proxy headers, revalidation): [`flow::origin_request`]
//!   - origin fetch: [`flow::origin_fetch`], [`origin::static_bucket`], [`origin::dynamic_pool`]
//!   - origin-response: [`flow::origin_response`]
//!   - cache store (policy, streaming tee): [`flow::cache_store`], [`cache::policy`]
//!   - viewer-response and the final headers: [`flow::viewer_response`], [`flow::respond`]
//! - configuration: [`config`]; errors and their statuses: [`error`]

pub mod access_log;
pub mod body;
pub mod cache;
pub mod conditional;
pub mod config;
pub mod demo;
pub mod error;
pub mod flow;
pub mod listener;
pub mod origin;
pub mod proxy_headers;
pub mod wasm;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

pub use config::Config;
pub use listener::{start, RunningNode};

use cache::{Coalescer, Store};
use origin::Origin;

/// Everything a running node shares between requests.
pub struct Node {
    /// The validated configuration.
    pub(crate) config: Arc<Config>,
    /// One origin per `config.origins` entry, same order.
    pub(crate) origins: Vec<Origin>,
    /// The object cache.
    pub(crate) store: Arc<Store>,
    /// Misses in flight, for request collapsing.
    pub(crate) coalescer: Arc<Coalescer>,
    /// Loaded edge functions; `None` when the config declares none.
    pub(crate) functions: Option<wasm::Registry>,
    next_request_id: AtomicU64,
}

impl Node {
    /// Builds a node (origins, empty cache, loaded functions) from a validated config.
    pub fn new(config: Config) -> Result<Self, wasm::Error> {
        let origins = config.origins.iter().map(Origin::new).collect();
        let store = Arc::new(Store::new(
            config.cache.max_size,
            config.cache.max_object_size,
        ));
        let functions = wasm::Registry::load(&config)?;
        Ok(Node {
            config: Arc::new(config),
            origins,
            store,
            coalescer: Arc::default(),
            functions,
            next_request_id: AtomicU64::new(1),
        })
    }

    /// The loaded functions, if the config declares any.
    pub fn functions(&self) -> Option<&wasm::Registry> {
        self.functions.as_ref()
    }

    /// The configuration the node runs with.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The object cache.
    pub fn cache(&self) -> &Store {
        &self.store
    }

    fn next_request_id(&self) -> u64 {
        self.next_request_id.fetch_add(1, Ordering::Relaxed)
    }
}
