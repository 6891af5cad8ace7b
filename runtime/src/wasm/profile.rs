//! One invocation taken apart into its stages, for `runtime/examples/bench_function.rs`: where
//! the time of a fresh run goes. Not used by the node; the host state stays private to `wasm`.

use edge_sdk::abi::Event;
use wasmtime::{Store, TypedFunc};

use super::function::Function;
use super::invoke::Input;
use super::slow_lane::INLINE_TICKS;
use super::state::{HostState, RequestView, Tracked};
use super::FunctionEngine;

/// How far [`run_until`] takes an invocation; each stage includes the ones before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Stage {
    /// Build the host state from the input.
    State,
    /// Create the `Store` with the memory limit and the inline deadline.
    Store,
    /// Instantiate from the pre-linked module.
    Instantiate,
    /// Call `_initialize`, if the module exports it.
    Initialize,
    /// Call the event's entry point.
    Call,
}

/// A deadline far enough for a benchmark on a busy machine; setting it costs the same as
/// the node's [`INLINE_TICKS`].
const DEADLINE_TICKS: u64 = 1000 * INLINE_TICKS;

fn store(engine: &FunctionEngine, state: HostState) -> Store<HostState> {
    let mut store = Store::new(engine.engine(), state);
    store.limiter(|s| &mut s.limiter);
    store.set_epoch_deadline(DEADLINE_TICKS);
    store
}

fn state(function: &Function, event: Event, input: Input) -> HostState {
    HostState::new(
        event,
        std::sync::Arc::clone(&function.name),
        &function.limits,
        input.config,
        input.request,
        input.client_ip,
        input.response,
        input.kv,
    )
}

/// Runs one invocation of `function` for `event` up to `stage` and drops it; the entry
/// point's return value at [`Stage::Call`].
pub fn run_until(
    engine: &FunctionEngine,
    function: &Function,
    event: Event,
    input: Input,
    stage: Stage,
) -> wasmtime::Result<Option<i32>> {
    let state = state(function, event, input);
    if stage == Stage::State {
        drop(std::hint::black_box(state));
        return Ok(None);
    }
    let _running = engine.running();
    let mut store = store(engine, state);
    if stage == Stage::Store {
        return Ok(None);
    }
    let instance = function.pre.instantiate(&mut store)?;
    store.data_mut().memory = instance.get_memory(&mut store, "memory");
    if stage >= Stage::Initialize {
        if let Some(init) = instance.get_func(&mut store, "_initialize") {
            init.typed::<(), ()>(&store)?.call(&mut store, ())?;
        }
    }
    if stage < Stage::Call {
        return Ok(None);
    }
    let entry = instance.get_typed_func::<(), i32>(&mut store, event.export_name())?;
    Ok(Some(entry.call(&mut store, ())?))
}

/// One instance reused for every call: not the node's model (state would leak between
/// requests), only to separate the guest's own run time from instance setup.
pub struct Reused {
    store: Store<HostState>,
    entry: TypedFunc<(), i32>,
}

impl Reused {
    /// Instantiates `function` once, for `event`, on `input`.
    pub fn new(
        engine: &FunctionEngine,
        function: &Function,
        event: Event,
        input: Input,
    ) -> wasmtime::Result<Self> {
        let mut store = store(engine, state(function, event, input));
        let instance = function.pre.instantiate(&mut store)?;
        store.data_mut().memory = instance.get_memory(&mut store, "memory");
        if let Some(init) = instance.get_func(&mut store, "_initialize") {
            init.typed::<(), ()>(&store)?.call(&mut store, ())?;
        }
        let entry = instance.get_typed_func::<(), i32>(&mut store, event.export_name())?;
        Ok(Reused { store, entry })
    }

    /// Calls the entry point again, on `request`.
    pub fn call(&mut self, engine: &FunctionEngine, request: RequestView) -> wasmtime::Result<i32> {
        let _running = engine.running();
        self.store.data_mut().request = Tracked::new(request);
        // The deadline counts from when it is set; a long-lived store needs it per call.
        self.store.set_epoch_deadline(DEADLINE_TICKS);
        self.entry.call(&mut self.store, ())
    }
}
