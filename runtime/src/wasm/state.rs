//! `HostState`: everything one function invocation may touch, owned by its wasmtime `Store`.
//! Host calls read and change it (`wasm::op`); `invoke` builds it from the flow's `Input` and
//! takes the changes back out. Private to `wasm`: the views of the request and response are
//! what the rest of the node sees.

use std::net::IpAddr;
use std::sync::Arc;

use bytes::Bytes;
use edge_sdk::abi::Event;
use http::{HeaderMap, Method, StatusCode, Uri};
use wasmtime::{Memory, ResourceLimiter};
use wasmtime_wasi::p1::WasiP1Ctx;

use edge_sdk::abi::status;
use edge_sdk::host::{self, Refusal};

use super::op::{Op, Outcome, Value};
use super::wasi::Output;
use crate::config::{Config, FunctionLimits};
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
pub(super) struct Tracked<T: Clone> {
    value: T,
    /// Boxed: the copy is rare, and the value moves with every invocation and replay.
    original: Option<Box<T>>,
}

impl<T: Clone> Tracked<T> {
    /// Wraps `value`, unchanged so far.
    pub(super) fn new(value: T) -> Self {
        Tracked {
            value,
            original: None,
        }
    }

    /// The value as it is now.
    pub(super) fn into_inner(self) -> T {
        self.value
    }

    /// The value as it was before its first change.
    pub(super) fn into_original(self) -> T {
        self.original.map_or(self.value, |original| *original)
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
            self.original = Some(Box::new(self.value.clone()));
        }
        &mut self.value
    }
}

/// Per-invocation memory limit; remembers whether the guest ran into it, so a trap that
/// follows is reported as a limit (503) rather than a crash (502).
pub(super) struct MemoryLimiter {
    /// Largest linear memory allowed, in bytes.
    pub(super) limit: usize,
    /// Set when a growth beyond `limit` was refused.
    pub(super) hit: bool,
    /// Largest memory size granted, in bytes.
    pub(super) peak: usize,
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

/// Longest value a recorded host call may carry (a header read, a generated body): past it the
/// invocation is not recorded, so one large body cannot fill a function's replay memory.
pub(super) const MAX_RECORDED_VALUE: usize = 64 * 1024;

/// The data of one invocation's `Store`, and of one replay (`wasm::replay`), which applies the
/// recorded host calls to it without a `Store`. Built by `invoke` from its `Input`; host calls
/// read and change it (`wasm::op`); `invoke` takes the changes back out into `Invoked`.
pub(super) struct HostState {
    /// The event running; decides which host calls are allowed.
    pub(super) event: Event,
    /// The function's name, for logs.
    pub(super) function: Arc<str>,
    /// The request: changed in place by request events, a read-only copy in response events.
    pub(super) request: Tracked<RequestView>,
    /// The viewer's address.
    pub(super) client_ip: IpAddr,
    /// The response in response events; in request events the generated response, created by
    /// the first `response_set_*` call.
    pub(super) response: Tracked<Option<ResponseView>>,
    /// The config, to resolve `origin_set` names.
    pub(super) config: Arc<Config>,
    /// Origin chosen with `origin_set` (index into `config.origins`).
    pub(super) origin: Option<usize>,
    /// Cache key set outright with `cache_key_set`.
    pub(super) cache_key: Option<String>,
    /// Parts added with `cache_key_add`.
    pub(super) cache_key_parts: Vec<String>,
    /// Caching lifetime set with `cache_set_ttl`, in seconds.
    pub(super) ttl: Option<u64>,
    /// Log lines (level, text), emitted by `invoke` after the call.
    pub(super) logs: Vec<(i32, String)>,
    /// Largest body the function may read or write, from the function's limits.
    pub(super) body_limit: usize,
    /// The guest's exported memory, looked up once per instance by `invoke`.
    pub(super) memory: Option<Memory>,
    /// The memory limit.
    pub(super) limiter: MemoryLimiter,
    /// WASI preview 1 with nothing preopened, for the WASI calls `wasm::wasi` leaves to
    /// wasmtime-wasi; built on the first such call, since most invocations make none and
    /// building it costs about half a microsecond. Boxed: it would be a third of this
    /// state's size, which every invocation and replay builds and moves.
    wasi: Option<Box<WasiP1Ctx>>,
    /// What the guest wrote to stdout and stderr (`fd_write`, in `wasm::wasi`).
    pub(super) output: Output,
    /// The node's key-value stores, for `kv_get`; `None` reads like a node without stores.
    pub(super) kv: Option<Arc<KvStores>>,
    /// The version of each store this invocation has read, taken at its first `kv_get`, so
    /// that every lookup of one invocation sees the same version of a store.
    kv_snapshots: Vec<(Box<str>, Arc<Entries>)>,
    /// Why this invocation could not be replayed, whatever its result: the first host call
    /// whose result is not a function of the request (the clock, randomness), or a call given
    /// memory outside the guest's. Set by the host calls.
    pub(super) unreplayable: Option<&'static str>,
    /// The host calls made so far with their outcomes, in order, when this invocation is
    /// being recorded for replay (`wasm::replay`); `None` otherwise.
    pub(super) steps: Option<Vec<(Op, Outcome)>>,
}

impl HostState {
    /// A state for one invocation of `function` at `event`.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn new(
        event: Event,
        function: Arc<str>,
        limits: &FunctionLimits,
        config: Arc<Config>,
        request: RequestView,
        client_ip: IpAddr,
        response: Option<ResponseView>,
        kv: Option<Arc<KvStores>>,
    ) -> Self {
        HostState {
            event,
            function,
            request: Tracked::new(request),
            client_ip,
            response: Tracked::new(response),
            config,
            origin: None,
            cache_key: None,
            cache_key_parts: Vec::new(),
            ttl: None,
            logs: Vec::new(),
            body_limit: limits.body_limit,
            memory: None,
            limiter: MemoryLimiter {
                limit: limits.memory,
                hit: false,
                peak: 0,
            },
            wasi: None,
            output: Output::default(),
            kv,
            kv_snapshots: Vec::new(),
            unreplayable: None,
            steps: None,
        }
    }

    /// The value of `key` in `store`, from the version of the store this invocation saw first.
    pub(super) fn kv_get(&mut self, store: &str, key: &str) -> Option<Bytes> {
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
    pub(super) fn wasi(&mut self) -> &mut WasiP1Ctx {
        // No args, env, preopens or sockets: a function's only world is the host calls. Its
        // stdio is never used: `wasm::wasi` answers every call that reads or writes a file.
        self.wasi
            .get_or_insert_with(|| Box::new(wasmtime_wasi::WasiCtxBuilder::new().build_p1()))
    }

    /// Marks the invocation as one that cannot be replayed, for `reason` (the first one
    /// given is kept), and stops recording it.
    pub(super) fn not_replayable(&mut self, reason: &'static str) {
        self.unreplayable.get_or_insert(reason);
        self.steps = None;
    }

    /// Applies a host call that gives the guest no value; its status.
    pub(super) fn perform(&mut self, op: Op) -> i32 {
        self.perform_and_deliver(op, |_| Ok(()))
    }

    /// Applies a host call, hands its value to `deliver` (which writes it into guest memory),
    /// and records both when the invocation is recorded; the call's status.
    pub(super) fn perform_and_deliver(
        &mut self,
        op: Op,
        deliver: impl FnOnce(&Value) -> Result<(), Refusal>,
    ) -> i32 {
        let outcome = self.apply(&op);
        let status = if outcome.status == status::OK {
            match deliver(&outcome.value) {
                Ok(()) => status::OK,
                // BUFFER_TOO_SMALL: an expected answer, decided by the value and the guest's
                // buffer, so the recorded outcome still says what the guest saw.
                Err(refusal) if refusal.message.is_none() => refusal.status,
                Err(refusal) => return self.guest_fault(refusal),
            }
        } else {
            outcome.status
        };
        if let Some(steps) = &mut self.steps {
            if op.weight() + outcome.weight() > MAX_RECORDED_VALUE {
                self.not_replayable("a host call carried a value over 64 KiB");
            } else {
                steps.push((op, outcome));
            }
        }
        status
    }

    /// A host call given memory outside the guest's: the refusal is logged and returned. Such
    /// an invocation is not replayed (its calls cannot be recorded as values).
    pub(super) fn guest_fault(&mut self, refusal: Refusal) -> i32 {
        host::record_refusal(&mut self.logs, &refusal);
        self.not_replayable("a host call was given memory outside the guest's");
        refusal.status
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
