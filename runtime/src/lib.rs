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
//! - listener: [`listener`] (accept, HTTP/1.1 and HTTP/2, graceful shutdown), viewer TLS and
//!   certificate rotation in [`tls`], access log in [`access_log`], origins' 1xx interim
//!   responses passed on beneath hyper: [`interim`]
//! - the flow driver, phase by phase: [`flow::handle`]
//!   - routing by behavior: [`flow::origin_select`]
//!   - viewer-request: [`flow::viewer_request`]
//!   - cache lookup and request collapsing: [`flow::cache_lookup`], [`cache::coalesce`]
//!   - origin-request (proxy headers, revalidation): [`flow::origin_request`]
//!   - origin fetch: [`flow::origin_fetch`], [`origin::static_bucket`], [`origin::dynamic_pool`]
//!   - origin-response: [`flow::origin_response`]
//!   - cache store (policy, streaming tee): [`flow::cache_store`], [`cache::policy`]
//!   - viewer-response and the final headers: [`flow::viewer_response`], [`flow::respond`]
//!   - edge functions at each event: [`flow::functions`] calling the host in [`wasm`]
//!   - debug headers and `Server-Timing`: [`flow::debug`]
//! - versions of the node (config reload, function publish) without dropping requests: [`Edge`]
//! - key-value stores functions read (`kv_get`): [`kv`]
//! - the admin API (functions, KV, invalidation, metrics): [`admin`], [`metrics`]
//! - the regional tier (parents by rendezvous hashing, tier requests): [`tier`]
//! - configuration: [`config`]; errors and their statuses: [`error`]

pub mod access_log;
pub mod admin;
pub mod body;
pub mod cache;
pub mod conditional;
pub mod config;
pub mod demo;
pub mod durable;
pub mod error;
pub mod flow;
pub mod interim;
pub mod kv;
pub mod listener;
pub mod metrics;
pub mod origin;
pub mod proxy_headers;
pub mod range;
pub mod tier;
pub mod tls;
pub mod wait_clock;
pub mod wasm;

mod node;

pub use config::Config;
pub use listener::{start, RunningNode};
pub use node::{Edge, Node, NodeAddresses, ADDRESS_FILE};
