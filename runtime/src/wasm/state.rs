//! `HostState`: everything one function invocation may touch, owned by its wasmtime `Store`.
//! Host calls read and change it; the flow moves the request or response in before the call
//! and takes the changes back after it.

use std::net::IpAddr;
use std::sync::Arc;

use bytes::Bytes;
use edge_sdk::abi::Event;
use http::{HeaderMap, Method, StatusCode, Uri};
use wasmtime::{Memory, ResourceLimiter};
use wasmtime_wasi::p1::WasiP1Ctx;

use super::wasi::Output;
use crate::config::Config;
use crate::kv::{Entries, KvStores};

/// The request as a function sees it.
#[derive(Debug, Clone)]
pub struct RequestView {
    /// Method.
    pub method: Method,
    /// Path and query.
    pub uri: Uri,
    /// Headers.
    pub headers: HeaderMap,
}

/// A response body as far as a function is concerned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BodyView {
    /// The whole body, read before the call (origin-response with a body within the limit).
    Buffered(Bytes),
    /// Not available to the function: over the body limit, or not an origin-response.
    Unavailable,
    /// Replaced by the function.
    Replaced(Bytes),
}

/// The response as a function sees it (response events) or builds it (request events).
#[derive(Debug, Clone)]
pub struct ResponseView {
    /// Status.
    pub status: StatusCode,
    /// Headers.
    pub headers: HeaderMap,
    /// Body.
    pub body: BodyView,
}

/// A value that keeps a copy of itself as it was before its first change (the first mutable
/// access), so that an invocation moved to the slow lane (`wasm::slow_lane`) can start over
/// from its original input without copying every request up front: most functions change
/// nothing, or only after reading.
#[derive(Debug)]
pub struct Tracked<T: Clone> {
    value: T,
    original: Option<T>,
}

impl<T: Clone> Tracked<T> {
    /// Wraps `value`, unchanged so far.
    pub fn new(value: T) -> Self {
        Tracked {
            value,
            original: None,
        }
    }

    /// The value as it is now.
    pub fn into_inner(self) -> T {
        self.value
    }

    /// The value as it was before its first change.
    pub fn into_original(self) -> T {
        self.original.unwrap_or(self.value)
    }
}

impl<T: Clone> std::ops::Deref for Tracked<T> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.value
    }
}

impl<T: Clone> std::ops::DerefMut for Tracked<T> {
    fn deref_mut(&mut self) -> &mut T {
        if self.original.is_none() {
            self.original = Some(self.value.clone());
        }
        &mut self.value
    }
}

/// Per-invocation memory limit; remembers whether the guest ran into it, so a trap that
/// follows is reported as a limit (503) rather than a crash (502).
pub struct MemoryLimiter {
    /// Largest linear memory allowed, in bytes.
    pub limit: usize,
    /// Set when a growth beyond `limit` was refused.
    pub hit: bool,
    /// Largest memory size granted, in bytes.
    pub peak: usize,
}

impl ResourceLimiter for MemoryLimiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let allowed = desired <= self.limit && maximum.is_none_or(|m| desired <= m);
        if allowed {
            self.peak = self.peak.max(desired);
        } else {
            self.hit = true;
        }
        Ok(allowed)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= MAX_TABLE_ELEMENTS && maximum.is_none_or(|m| desired <= m))
    }
}

/// Table elements a function may grow to; Rust guests use one small function table.
pub const MAX_TABLE_ELEMENTS: usize = 10_000;

/// The data of one invocation's `Store`.
pub struct HostState {
    /// The event running; decides which host calls are allowed. Set by `invoke`.
    pub event: Event,
    /// The function's name, for logs. Set by `invoke`.
    pub function: Arc<str>,
    /// The request: changed in place by request events, a read-only copy in response events.
    /// Filled by the flow phase that runs the event.
    pub request: Tracked<RequestView>,
    /// The viewer's address. Filled by the flow.
    pub client_ip: IpAddr,
    /// The response in response events (filled by the flow); in request events the generated
    /// response, created by the first `response_set_*` call.
    pub response: Tracked<Option<ResponseView>>,
    /// The config, to resolve `origin_set` names. Filled by the flow.
    pub config: Arc<Config>,
    /// Origin chosen with `origin_set` (index into `config.origins`).
    pub origin: Option<usize>,
    /// Cache key set outright with `cache_key_set`.
    pub cache_key: Option<String>,
    /// Parts added with `cache_key_add`.
    pub cache_key_parts: Vec<String>,
    /// Caching lifetime set with `cache_set_ttl`, in seconds.
    pub ttl: Option<u64>,
    /// Log lines (level, text), emitted by `invoke` after the call.
    pub logs: Vec<(i32, String)>,
    /// Largest body the function may read or write. Set by `invoke` from the function's limits.
    pub body_limit: usize,
    /// The guest's exported memory, looked up once per instance by `invoke`.
    pub memory: Option<Memory>,
    /// The memory limit. Set by `invoke`.
    pub limiter: MemoryLimiter,
    /// WASI preview 1 with nothing preopened, for the WASI calls `wasm::wasi` leaves to
    /// wasmtime-wasi; built on the first such call, since most invocations make none and
    /// building it costs about half a microsecond.
    wasi: Option<WasiP1Ctx>,
    /// What the guest wrote to stdout and stderr (`fd_write`, in `wasm::wasi`).
    pub output: Output,
    /// The node's key-value stores, for `kv_get`. Filled by the flow ([`HostState::with_kv`]);
    /// `None` reads like a node without stores.
    pub kv: Option<Arc<KvStores>>,
    /// The version of each store this invocation has read, taken at its first `kv_get`, so
    /// that every lookup of one invocation sees the same version of a store.
    kv_snapshots: Vec<(Box<str>, Arc<Entries>)>,
}

impl HostState {
    /// A state for one invocation, before `invoke` fills the function's settings.
    pub fn new(
        config: Arc<Config>,
        request: RequestView,
        client_ip: IpAddr,
        response: Option<ResponseView>,
    ) -> Self {
        HostState {
            event: Event::ViewerRequest,
            function: Arc::from(""),
            request: Tracked::new(request),
            client_ip,
            response: Tracked::new(response),
            config,
            origin: None,
            cache_key: None,
            cache_key_parts: Vec::new(),
            ttl: None,
            logs: Vec::new(),
            body_limit: 0,
            memory: None,
            limiter: MemoryLimiter {
                limit: 0,
                hit: false,
                peak: 0,
            },
            wasi: None,
            output: Output::default(),
            kv: None,
            kv_snapshots: Vec::new(),
        }
    }

    /// Gives the invocation the node's key-value stores.
    pub fn with_kv(mut self, kv: Arc<KvStores>) -> Self {
        self.kv = Some(kv);
        self
    }

    /// The value of `key` in `store`, from the version of the store this invocation saw first.
    pub fn kv_get(&mut self, store: &str, key: &str) -> Option<Bytes> {
        let index = match self.kv_snapshots.iter().position(|(s, _)| &**s == store) {
            Some(index) => index,
            None => {
                let snapshot = self.kv.as_ref()?.snapshot(store)?;
                self.kv_snapshots.push((store.into(), snapshot));
                self.kv_snapshots.len() - 1
            }
        };
        self.kv_snapshots[index].1.get(key).cloned()
    }

    /// The WASI context, built on first use (the linker's projection for WASI calls).
    pub fn wasi(&mut self) -> &mut WasiP1Ctx {
        // No args, env, preopens or sockets: a function's only world is the host calls. Its
        // stdio is never used: `wasm::wasi` answers every call that reads or writes a file.
        self.wasi
            .get_or_insert_with(|| wasmtime_wasi::WasiCtxBuilder::new().build_p1())
    }
}

#[cfg(test)]
mod tests {
    use super::Tracked;

    #[test]
    fn tracked_keeps_the_value_from_before_the_first_change() {
        let unchanged = Tracked::new(vec![1]);
        assert_eq!(unchanged.len(), 1, "reads do not copy");
        assert_eq!(unchanged.into_original(), [1]);

        let mut changed = Tracked::new(vec![1]);
        changed.push(2);
        changed.push(3);
        assert_eq!(*changed, [1, 2, 3]);
        assert_eq!(changed.into_original(), [1]);
    }
}
