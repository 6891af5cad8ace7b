//! One invocation: a fresh instance from the function's `InstancePre` in a new `Store`, with
//! its memory limit and CPU deadline, the entry point called once, everything dropped after.
//! Nothing a guest does can panic the host; every failure is an [`Error`].
//!
//! [`run`] is what the node's flow calls: the recorded decision is replayed when the function's
//! decision tree has the path ([`replay`](super::replay)); otherwise the invocation runs inline
//! on the async worker (recorded) and moves to the [`slow_lane`](super::slow_lane) if it runs
//! past its first milliseconds. [`invoke`] runs one to completion on the calling thread (the
//! admin `test` call, `edge test-function`), never replayed.

use std::net::IpAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use edge_sdk::abi::{log_level, outcome, Event};
use wasmtime::{Store, Trap, UpdateDeadline, WasmBacktrace};

use super::engine::FunctionEngine;
use super::function::Function;
use super::replay::{End, Recorded, Replay, Walk};
use super::slow_lane::{SlowRequests, INLINE_CPU, INLINE_TICKS};
use super::state::{HostState, RequestView, ResponseView};
use super::wasi::Output;
use super::Error;
use crate::config::Config;
use crate::kv::KvStores;

/// What the entry point decided.
#[derive(Debug, Clone)]
pub enum Decision {
    /// Go on (result 0).
    Continue,
    /// Answer with this generated response (result 1, request events).
    Respond(ResponseView),
}

/// What an invocation starts from. An inline attempt that runs too long, or a replay that
/// meets a result its tree has not seen, gives it back as it was
/// ([`Tracked`](super::state::Tracked)), to start over.
pub struct Input {
    /// The config, to resolve `origin_set` names.
    pub config: Arc<Config>,
    /// The request (changed in place by request events; a copy in response events).
    pub request: RequestView,
    /// The viewer's address.
    pub client_ip: IpAddr,
    /// The response, in response events.
    pub response: Option<ResponseView>,
    /// The node's key-value stores, if any.
    pub kv: Option<Arc<KvStores>>,
}

impl Input {
    /// The state of one invocation of `function` at `event`, recording its host calls if
    /// `record`.
    fn into_state(self, function: &Function, event: Event, record: bool) -> HostState {
        let mut state = HostState::new(
            event,
            Arc::clone(&function.name),
            &function.limits,
            self.config,
            self.request,
            self.client_ip,
            self.response,
            self.kv,
        );
        if record {
            state.steps = Some(Vec::new());
        }
        state
    }

    /// The input `state` was built from, whatever the function changed since.
    fn from_state(state: HostState) -> Self {
        Input {
            config: state.config,
            request: state.request.into_original(),
            client_ip: state.client_ip,
            response: state.response.into_original(),
            kv: state.kv,
        }
    }
}

/// What an invocation did: its decision, and everything it changed, for the caller to take
/// what belongs to its event. Its log lines and output are already in the node's log.
pub struct Invoked {
    /// What the function decided (with the generated response), or why it failed.
    pub result: Result<Decision, Error>,
    /// The request as the function left it.
    pub request: RequestView,
    /// The response as the function left it, in response events. In request events, a
    /// response built without returning 1 (a generated response that is sent is in
    /// [`Decision::Respond`] instead).
    pub response: Option<ResponseView>,
    /// Origin chosen with `origin_set` (an index into the config's origins).
    pub origin: Option<usize>,
    /// Cache key set outright with `cache_key_set`.
    pub cache_key: Option<String>,
    /// Parts added with `cache_key_add`.
    pub cache_key_parts: Vec<String>,
    /// Caching lifetime set with `cache_set_ttl`, in seconds.
    pub ttl: Option<u64>,
    /// `log` lines (level, text).
    pub logs: Vec<(i32, String)>,
    /// What it wrote to stdout and stderr (capped; a panic's message is in `result` instead).
    pub output: Output,
    /// Largest linear memory size granted, in bytes (0 when replayed: no instance).
    pub peak_memory: usize,
    /// Whether it was replayed or ran.
    pub replay: Replay,
    /// What recording its run did to the function's decision tree.
    pub recorded: Recorded,
    /// Why a run like this one cannot be replayed, if it cannot: `None` for one that can.
    pub not_replayable: Option<String>,
}

impl Invoked {
    fn new(
        function: &Function,
        result: Result<End, Error>,
        mut state: HostState,
        replay: Replay,
        recorded: Recorded,
    ) -> Self {
        let not_replayable = match (&result, state.unreplayable) {
            _ if function.trees.is_none() => {
                Some("replay is off for this function (replay = false)".to_owned())
            }
            (Err(error), _) if error.is_limit() => Some(format!("it hit a limit: {error}")),
            (Err(error), _) => Some(format!("it failed: {error}")),
            (Ok(_), Some(reason)) => Some(reason.to_owned()),
            (Ok(_), None) => None,
        };
        let result = result.and_then(|end| match end {
            End::Continue => Ok(Decision::Continue),
            // A fresh run is checked to have built one (`attempt`); a replay follows its path.
            End::Respond => {
                state
                    .response
                    .take()
                    .map(Decision::Respond)
                    .ok_or_else(|| Error::Failed {
                        function: function.name.to_string(),
                        event: state.event.export_name(),
                        reason: "returned 1 (respond) without building a response".into(),
                    })
            }
        });
        Invoked {
            result,
            request: state.request.into_inner(),
            response: state.response.into_inner(),
            origin: state.origin,
            cache_key: state.cache_key,
            cache_key_parts: state.cache_key_parts,
            ttl: state.ttl,
            logs: state.logs,
            output: state.output,
            peak_memory: state.limiter.peak,
            replay,
            recorded,
            not_replayable,
        }
    }
}

/// How long one attempt may run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Budget {
    /// [`INLINE_TICKS`] of wall time, on an async worker; past that the attempt is abandoned.
    Inline,
    /// The function's CPU limit, counted in the calling thread's CPU time.
    CpuTime,
}

/// How one attempt ended.
// Returned once per invocation and unpacked at once; boxing the state would add an allocation
// to every invocation.
#[allow(clippy::large_enum_variant)]
enum Attempt {
    /// It ran to an end (success or failure); logs and output already emitted.
    Done(Result<End, Error>, HostState),
    /// It ran past the inline budget; everything it did is dropped, and what it started from
    /// is given back.
    TooLongForInline(Input),
}

/// Runs `function` for `event` as the node does: replayed from its decision tree
/// (`wasm::replay`) when the tree has the path, else the guest runs (and is recorded): inline
/// on the calling async worker, or, if it runs past [`INLINE_TICKS`] (or did recently), from
/// scratch on the engine's slow lane. A failure is logged here, once, with the function,
/// event, request id, reason and backtrace.
pub async fn run(
    engine: &Arc<FunctionEngine>,
    function: &Arc<Function>,
    event: Event,
    request_id: u64,
    input: Input,
) -> Invoked {
    match replay(function, event, request_id, input) {
        Ok(invoked) => invoked,
        Err(fresh) => run_fresh(engine, function, event, request_id, fresh).await,
    }
}

/// An invocation [`replay`] could not replay: the input as it came, and whether the run is to
/// be recorded into the function's decision tree.
pub struct Fresh {
    input: Input,
    record: bool,
}

/// The replay half of [`run`], synchronous: the invocation replayed from the function's
/// decision tree, or what [`run_fresh`] needs to run it. Kept apart so that a caller on the
/// hot path builds the (large) future of a fresh run only when it needs one.
pub fn replay(
    function: &Function,
    event: Event,
    request_id: u64,
    input: Input,
) -> Result<Invoked, Box<Fresh>> {
    let Some(trees) = function.trees.as_ref().filter(|t| t.begin(event)) else {
        return Err(Box::new(Fresh {
            input,
            record: false,
        }));
    };
    let mut state = input.into_state(function, event, false);
    match trees.walk(event, &mut state) {
        Walk::End(end) => {
            let recorded = Recorded {
                added: false,
                dropped: trees.judge(event),
            };
            emit_logs(&mut state, event.export_name(), request_id);
            Ok(Invoked::new(
                function,
                Ok(end),
                state,
                Replay::Replayed,
                recorded,
            ))
        }
        // Nothing of the walk is kept: the input as it came.
        Walk::Miss => Err(Box::new(Fresh {
            input: Input::from_state(state),
            record: true,
        })),
    }
}

/// The fresh half of [`run`]: the guest runs, and the run is recorded if [`replay`] said so.
pub async fn run_fresh(
    engine: &Arc<FunctionEngine>,
    function: &Arc<Function>,
    event: Event,
    request_id: u64,
    fresh: Box<Fresh>,
) -> Invoked {
    let Fresh { input, record } = *fresh;
    let (result, mut state) =
        run_unlogged(engine, function, event, request_id, input, record).await;
    if let Err(error) = &result {
        log_failure(error, request_id);
    }
    let mut recorded = Recorded::default();
    if let Some(trees) = function.trees.as_ref().filter(|_| record) {
        if let (Ok(end), Some(steps)) = (&result, state.steps.take()) {
            recorded = trees.record(event, &function.name, steps, *end);
        }
        recorded.dropped |= trees.judge(event);
    }
    Invoked::new(function, result, state, Replay::Ran, recorded)
}

async fn run_unlogged(
    engine: &Arc<FunctionEngine>,
    function: &Arc<Function>,
    event: Event,
    request_id: u64,
    input: Input,
    record: bool,
) -> (Result<End, Error>, HostState) {
    // The common case: no handoff, and no copy of the input (cloning a browser's request up
    // front, to be able to start over, cost 0.5 µs of the router's 7; `Tracked` copies only
    // what a function changes, and only when it changes it).
    //
    // Once some requests of this function ran long, each request is looked up: those go
    // straight to the lane; the others are tried inline first, so that a flood of its slow
    // requests does not take its fast ones down with them. Once the last few untried requests
    // all ran long (a slow request that never repeats, as with a random query), untried ones
    // are tried one at a time on the node (`SlowLane::try_inline`), so such a flood costs the
    // workers one attempt at a time.
    let mut key = None;
    let mut _try = None;
    if function.slow.load(Ordering::Relaxed) {
        let known = SlowRequests::key(&input.request.method, &input.request.uri);
        if function.slow_requests.contains(known) {
            return in_slow_lane(engine, function, event, request_id, input, record, known).await;
        }
        if function.slow_requests.mostly_slow() {
            _try = engine.slow_lane().ok().and_then(|lane| lane.try_inline());
            if _try.is_none() {
                return in_slow_lane(engine, function, event, request_id, input, record, known)
                    .await;
            }
        }
        key = Some(known);
    }
    let state = input.into_state(function, event, record);
    match attempt(engine, function, event, request_id, state, Budget::Inline) {
        Attempt::Done(result, state) => {
            if key.is_some() {
                function.slow_requests.ran_inline();
            }
            (result, state)
        }
        Attempt::TooLongForInline(input) => {
            let key =
                key.unwrap_or_else(|| SlowRequests::key(&input.request.method, &input.request.uri));
            function.slow_requests.ran_long(key);
            function.slow.store(true, Ordering::Relaxed);
            in_slow_lane(engine, function, event, request_id, input, record, key).await
        }
    }
}

/// Runs the invocation from scratch in the slow lane, or fails it with [`Error::Busy`] when
/// the lane (or this function's share of it) is full.
async fn in_slow_lane(
    engine: &Arc<FunctionEngine>,
    function: &Arc<Function>,
    event: Event,
    request_id: u64,
    input: Input,
    record: bool,
    key: u64,
) -> (Result<End, Error>, HostState) {
    let busy = |slots| Error::Busy {
        function: function.name.to_string(),
        event: event.export_name(),
        slots,
    };
    let lane = match engine.slow_lane() {
        Ok(lane) => lane,
        Err(error) => {
            tracing::error!(%error, "cannot start the slow lane");
            return (Err(busy(0)), input.into_state(function, event, false));
        }
    };
    let Some(slot) = lane.reserve(&function.lane_seats) else {
        return (
            Err(busy(lane.share())),
            input.into_state(function, event, false),
        );
    };
    let (engine2, function2) = (Arc::clone(engine), Arc::clone(function));
    let (config, client_ip) = (Arc::clone(&input.config), input.client_ip);
    let ran = slot
        .run(move || {
            let started = thread_cpu_time();
            let attempt = attempt(
                &engine2,
                &function2,
                event,
                request_id,
                input.into_state(&function2, event, record),
                Budget::CpuTime,
            );
            // Fast this time (only some runs of it take long): tried inline next time.
            if let (Some(start), Some(end)) = (started, thread_cpu_time()) {
                if end.saturating_sub(start) < super::engine::EPOCH_TICK {
                    function2.slow_requests.ran_fast(key);
                }
            }
            attempt
        })
        .await;
    match ran {
        Some(Attempt::Done(result, state)) => (result, state),
        // Neither happens (the slow lane's budget is CPU time, and its jobs do not panic),
        // but a worker must not panic if it did.
        Some(Attempt::TooLongForInline(_)) | None => {
            let input = Input {
                config,
                request: RequestView {
                    method: http::Method::GET,
                    uri: http::Uri::from_static("/"),
                    headers: http::HeaderMap::new(),
                },
                client_ip,
                response: None,
                kv: None,
            };
            (
                Err(busy(lane.capacity())),
                input.into_state(function, event, false),
            )
        }
    }
}

/// Runs `function` for `event` on `input` to the end on the calling thread, its CPU limit
/// counted in this thread's CPU time (the admin `test` call, `edge test-function`). The guest
/// always runs (nothing is replayed or recorded); [`Invoked::not_replayable`] says whether the
/// node could replay such an invocation. Not for async workers: use [`run`].
pub fn invoke(
    engine: &FunctionEngine,
    function: &Function,
    event: Event,
    request_id: u64,
    input: Input,
) -> Invoked {
    let state = input.into_state(function, event, false);
    let Attempt::Done(result, state) =
        attempt(engine, function, event, request_id, state, Budget::CpuTime)
    else {
        unreachable!("only an inline budget is abandoned")
    };
    Invoked::new(function, result, state, Replay::Ran, Recorded::default())
}

fn attempt(
    engine: &FunctionEngine,
    function: &Function,
    event: Event,
    request_id: u64,
    state: HostState,
    budget: Budget,
) -> Attempt {
    // Before the store and its deadline: the epoch must be ticking when the guest starts.
    let _running = engine.running();
    let mut store = Store::new(engine.engine(), state);
    store.limiter(|s| &mut s.limiter);
    let limit = function.limits.cpu;
    match budget {
        // The deadline is wall time, so on a loaded node an invocation that was merely
        // preempted reaches it too; moving such one to the slow lane marks its function slow,
        // and under load (measured: bench/run.sh, 32 connections on one core) the lane then
        // fills and ordinary requests got 503s. So reaching the deadline only starts counting
        // this thread's CPU time; the attempt is abandoned (`Trap::Interrupt`, here "too long
        // for inline") once it has really run for INLINE_CPU. The clock is read only by
        // invocations that get that far, never by the common case.
        Budget::Inline => {
            store.set_epoch_deadline(INLINE_TICKS);
            let mut counting_from: Option<Duration> = None;
            store.epoch_deadline_callback(move |_| {
                let Some(now) = thread_cpu_time() else {
                    return Ok(UpdateDeadline::Interrupt);
                };
                match counting_from {
                    None => {
                        counting_from = Some(now);
                        Ok(UpdateDeadline::Continue(1))
                    }
                    Some(start) if now.saturating_sub(start) < INLINE_CPU => {
                        Ok(UpdateDeadline::Continue(1))
                    }
                    Some(_) => Ok(UpdateDeadline::Interrupt),
                }
            });
        }
        // The epoch ticks in wall time, but the limit is CPU time: a thread preempted on a busy
        // machine (or, in the slow lane, of low priority) must not fail a function that has not
        // run long. The thread's CPU clock is read at every tick (a system call, about half a
        // microsecond) and the call is stopped once it has used the limit.
        Budget::CpuTime => {
            let start = thread_cpu_time();
            store.set_epoch_deadline(1);
            store.epoch_deadline_callback(move |_| match (start, thread_cpu_time()) {
                (Some(start), Some(now)) if now.saturating_sub(start) < limit => {
                    Ok(UpdateDeadline::Continue(1))
                }
                _ => Ok(UpdateDeadline::Interrupt),
            });
        }
    }

    let result = (|| {
        let instance = function.pre.instantiate(&mut store)?;
        let memory = function
            .memory
            .as_ref()
            .and_then(|m| instance.get_module_export(&mut store, m))
            .and_then(|e| e.into_memory());
        store.data_mut().memory = memory;
        if let Some(init) = function
            .initialize
            .as_ref()
            .and_then(|i| instance.get_module_export(&mut store, i))
            .and_then(|e| e.into_func())
        {
            init.typed::<(), ()>(&store)?.call(&mut store, ())?;
        }
        // Validation at load guarantees the export exists with this type.
        let entry = function.entries[event as usize]
            .as_ref()
            .and_then(|e| instance.get_module_export(&mut store, e))
            .and_then(|e| e.into_func())
            .ok_or_else(|| {
                wasmtime::Error::msg(format!(
                    "module has no `{}` entry point",
                    event.export_name()
                ))
            })?;
        entry.typed::<(), i32>(&store)?.call(&mut store, ())
    })();
    if budget == Budget::Inline
        && matches!(&result, Err(e) if e.downcast_ref::<Trap>() == Some(&Trap::Interrupt))
    {
        return Attempt::TooLongForInline(Input::from_state(store.into_data()));
    }
    let mut state = store.into_data();
    let name = || function.name.to_string();
    let event_name = event.export_name();
    let decision = match result {
        Ok(outcome::CONTINUE) => Ok(End::Continue),
        Ok(outcome::RESPOND) if !event.is_request() => Err(Error::Failed {
            function: name(),
            event: event_name,
            reason: "returned 1 (respond), which only request events may".into(),
        }),
        Ok(outcome::RESPOND) if state.response.is_none() => Err(Error::Failed {
            function: name(),
            event: event_name,
            reason: "returned 1 (respond) without building a response".into(),
        }),
        Ok(outcome::RESPOND) => Ok(End::Respond),
        // The function's first warning or error is usually the cause (a host call the node
        // refused, naming the call, its argument and the rule): put it beside the bare result,
        // so `edge test-function`, the admin test and the log line say why, not only "2".
        Ok(other) => Err(Error::Failed {
            function: name(),
            event: event_name,
            reason: match state
                .logs
                .iter()
                .find(|(level, _)| *level <= log_level::WARN)
            {
                Some((_, line)) => format!("returned {other} ({line})"),
                None => format!("returned {other}"),
            },
        }),
        Err(error) => Err(match error.downcast_ref::<Trap>() {
            Some(Trap::Interrupt) => Error::CpuLimit {
                function: name(),
                event: event_name,
                limit: function.limits.cpu,
            },
            Some(Trap::StackOverflow) => Error::StackOverflow {
                function: name(),
                event: event_name,
            },
            _ if state.limiter.hit => Error::MemoryLimit {
                function: name(),
                event: event_name,
                limit: function.limits.memory,
            },
            trap => {
                let backtrace = error
                    .downcast_ref::<WasmBacktrace>()
                    .map(|b| b.to_string())
                    .filter(|b| !b.is_empty());
                match state.output.take_panic() {
                    Some(message) => Error::Panic {
                        function: name(),
                        event: event_name,
                        message,
                        backtrace,
                    },
                    None => Error::Trap {
                        function: name(),
                        event: event_name,
                        // The trap itself, or the root of a host error; the backtrace is
                        // kept apart so that the reason stays one line.
                        reason: match trap {
                            Some(trap) => trap.to_string(),
                            None => error.root_cause().to_string(),
                        },
                        backtrace,
                    },
                }
            }
        }),
    };
    emit_logs(&mut state, event_name, request_id);
    Attempt::Done(decision, state)
}

/// CPU time the calling thread has used, if the platform says.
fn thread_cpu_time() -> Option<Duration> {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    #[allow(unsafe_code)]
    // SAFETY: `now` is a valid, writable timespec for the duration of the call, and
    // CLOCK_THREAD_CPUTIME_ID is a clock every Linux provides.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut now) };
    (rc == 0).then(|| Duration::new(now.tv_sec as u64, now.tv_nsec as u32))
}

/// Logs a failed invocation on one line: function, event, request id, the reason, and the
/// Wasm backtrace (escaped, as a field) if there is one.
fn log_failure(error: &Error, request: u64) {
    let (function, event) = error.function_and_event();
    let backtrace = error.backtrace();
    if error.is_limit() {
        tracing::warn!(target: "edge::function", function, event, request, reason = %error, backtrace, "function hit a limit");
    } else {
        tracing::warn!(target: "edge::function", function, event, request, reason = %error, backtrace, "function failed");
    }
}

/// Writes the function's log lines and its stdout/stderr lines to the node's log.
fn emit_logs(state: &mut HostState, event: &str, request: u64) {
    let function = &*state.function;
    for (level, line) in &state.logs {
        match *level {
            log_level::ERROR => {
                tracing::error!(target: "edge::function", function, event, request, "{line}")
            }
            log_level::WARN => {
                tracing::warn!(target: "edge::function", function, event, request, "{line}")
            }
            log_level::INFO => {
                tracing::info!(target: "edge::function", function, event, request, "{line}")
            }
            log_level::DEBUG => {
                tracing::debug!(target: "edge::function", function, event, request, "{line}")
            }
            _ => tracing::trace!(target: "edge::function", function, event, request, "{line}"),
        }
    }
    state.output.flush();
    for (stream, line) in state.output.lines() {
        let stream = stream.as_str();
        tracing::info!(target: "edge::function", function, event, request, stream, "{line}");
    }
    if state.output.truncated() {
        tracing::warn!(target: "edge::function", function, event, request,
            "output truncated: over {} lines or {} bytes of stdout and stderr",
            super::wasi::MAX_OUTPUT_LINES, super::wasi::MAX_OUTPUT_BYTES);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::config::{Config, FunctionConfig, FunctionLimits};
    use crate::wasm::state::RequestView;

    const LOGGER: &str = r#"(module
      (import "edge_v1" "log" (func $log (param i32 i32 i32) (result i32)))
      (import "edge_v1" "request_set_header" (func $set (param i32 i32 i32 i32) (result i32)))
      (memory (export "memory") 1)
      (data (i32.const 0) "hello from wasm") (data (i32.const 32) "x-a") (data (i32.const 48) "1")
      (func (export "viewer-request") (result i32)
        (drop (call $log (i32.const 2) (i32.const 0) (i32.const 15)))
        (drop (call $log (i32.const 9) (i32.const 0) (i32.const 15)))
        (drop (call $set (i32.const 32) (i32.const 3) (i32.const 48) (i32.const 1)))
        (i32.const 0)))"#;

    fn config(name: &str) -> FunctionConfig {
        FunctionConfig {
            name: name.into(),
            module: "inline.wat".into(),
            limits: FunctionLimits::default(),
        }
    }

    fn input() -> Input {
        let node: Config = "[origins.o]\ntype = \"http\"\ntargets = [\"http://127.0.0.1:1\"]\n[[behaviors]]\npath = \"*\"\norigin = \"o\"\n"
            .parse()
            .expect("valid config");
        let request = RequestView {
            method: http::Method::GET,
            uri: "/x".parse().expect("uri"),
            headers: http::HeaderMap::new(),
        };
        Input {
            config: Arc::new(node),
            request,
            client_ip: "127.0.0.1".parse().expect("ip"),
            response: None,
            kv: None,
        }
    }

    #[test]
    fn logs_are_collected_and_changes_returned() {
        let engine = FunctionEngine::new(16 << 20, None).expect("engine");
        let function = engine
            .load(&config("logger"), LOGGER.as_bytes())
            .expect("loads");
        let invoked = invoke(&engine, &function, Event::ViewerRequest, 1, input());
        assert!(matches!(invoked.result.expect("runs"), Decision::Continue));
        assert_eq!(
            invoked.logs,
            vec![
                (log_level::INFO, "hello from wasm".to_owned()),
                (
                    log_level::WARN,
                    "log: level 9 is not one of 0 (error) to 4 (trace)".to_owned()
                )
            ],
            "level 9 is refused, with a warning that says why"
        );
        assert_eq!(invoked.request.headers["x-a"], "1");
        assert!(invoked.output.lines().is_empty(), "no WASI call, no output");
    }

    #[test]
    fn a_runaway_guest_is_stopped_after_the_epoch_ticker_has_parked() {
        let engine = FunctionEngine::new(16 << 20, None).expect("engine");
        let mut looping = config("loop");
        looping.limits.cpu = Duration::from_millis(20);
        let function = engine
            .load(
                &looping,
                br#"(module (memory (export "memory") 1)
                  (func (export "viewer-request") (result i32) (loop (br 0)) (i32.const 0)))"#,
            )
            .expect("loads");
        // No guest has run: the ticker parks after its idle ticks (bounded wait).
        let parked = (0..500).any(|_| {
            std::thread::sleep(Duration::from_millis(10));
            engine.ticker_parked()
        });
        assert!(parked, "the ticker parks while no guest runs");
        // On another thread, so that a guest nothing stops fails the test instead of hanging it.
        let (done, result) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let invoked = invoke(&engine, &function, Event::ViewerRequest, 1, input());
            let _ = done.send(invoked.result);
        });
        let result = result
            .recv_timeout(Duration::from_secs(10))
            .expect("the guest is stopped within seconds, not left spinning");
        assert!(
            matches!(result, Err(Error::CpuLimit { .. })),
            "the guest woke the ticker and was stopped at its limit: {:?}",
            result.err()
        );
    }

    #[test]
    fn compiled_code_is_cached_on_disk() {
        let dir = tempfile::tempdir().expect("temp dir");
        let engine = FunctionEngine::new(16 << 20, Some(dir.path().to_owned())).expect("engine");
        let first = engine
            .load(&config("logger"), LOGGER.as_bytes())
            .expect("loads");
        let files: Vec<_> = std::fs::read_dir(dir.path())
            .expect("cache dir")
            .filter_map(|e| e.ok())
            .collect();
        assert_eq!(files.len(), 1, "one compiled module");
        let name = files[0].file_name().to_string_lossy().into_owned();
        assert!(
            name.starts_with(&first.hash) && name.ends_with(".cwasm"),
            "{name}"
        );
        // A compile writes a new file and renames it into place (a new inode); a load from the
        // cache leaves the file alone. The inode tells the two apart.
        use std::os::unix::fs::MetadataExt as _;
        let inode = |path: &std::path::Path| std::fs::metadata(path).expect("cached file").ino();
        let path = files[0].path();
        let written = inode(&path);
        // A second engine (a restart) loads from the cache, without compiling, and runs the same.
        let engine = FunctionEngine::new(16 << 20, Some(dir.path().to_owned())).expect("engine");
        let again = engine
            .load(&config("logger"), LOGGER.as_bytes())
            .expect("loads from cache");
        assert_eq!(
            inode(&path),
            written,
            "loaded from the cache, not recompiled"
        );
        let invoked = invoke(&engine, &again, Event::ViewerRequest, 2, input());
        assert!(matches!(invoked.result.expect("runs"), Decision::Continue));
        // A corrupt cache file is ignored and replaced, not trusted.
        std::fs::write(&path, b"garbage").expect("write");
        let recompiled = engine
            .load(&config("logger"), LOGGER.as_bytes())
            .expect("recompiles");
        let invoked = invoke(&engine, &recompiled, Event::ViewerRequest, 3, input());
        assert!(matches!(invoked.result.expect("runs"), Decision::Continue));
        let replaced = std::fs::read(&path).expect("cached file");
        assert!(
            replaced != b"garbage" && replaced.len() > 100,
            "the corrupt file was replaced by compiled code"
        );
        let replaced_inode = inode(&path);
        FunctionEngine::new(16 << 20, Some(dir.path().to_owned()))
            .expect("engine")
            .load(&config("logger"), LOGGER.as_bytes())
            .expect("loads the replacement");
        assert_eq!(
            inode(&path),
            replaced_inode,
            "the replacement is loaded from the cache"
        );
    }

    #[test]
    fn memory_declared_over_the_limit_is_refused_at_load() {
        let engine = FunctionEngine::new(16 << 20, None).expect("engine");
        let mut small = config("big-memory");
        small.limits.memory = 2 << 20;
        // 64 pages of 64 KiB: 4 MiB.
        let wat = r#"(module (memory (export "memory") 64)
          (func (export "viewer-request") (result i32) (i32.const 0)))"#;
        let error = engine.load(&small, wat.as_bytes()).err().expect("refused");
        let message = error.to_string();
        assert!(
            message.contains("memory_limit") && message.contains("4194304"),
            "{message}"
        );
        small.limits.memory = 4 << 20;
        engine.load(&small, wat.as_bytes()).expect("fits exactly");
    }

    #[test]
    fn bytes_that_are_neither_wasm_nor_text_are_named_so() {
        let engine = FunctionEngine::new(16 << 20, None).expect("engine");
        let error = engine
            .load(&config("junk"), &[0xff, 0xfe, 0x00, 0x01, 0x80])
            .err()
            .expect("refused");
        assert!(
            error
                .to_string()
                .contains("neither a WebAssembly binary nor WAT text"),
            "{error}"
        );
    }

    #[test]
    fn module_size_limit_is_enforced() {
        let engine = FunctionEngine::new(16 << 20, None).expect("engine");
        let mut small = config("big");
        small.limits.max_module_size = 100;
        let error = engine
            .load(&small, LOGGER.as_bytes())
            .err()
            .expect("refused");
        assert!(
            error.to_string().contains("over the limit of 100"),
            "{error}"
        );
    }
}
