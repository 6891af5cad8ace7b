//! One invocation: a fresh instance from the function's `InstancePre` in a new `Store`, with
//! its memory limit and CPU deadline, the entry point called once, everything dropped after.
//! Nothing a guest does can panic the host; every failure is an [`Error`].

use edge_sdk::abi::{log_level, outcome, Event};
use wasmtime::{Store, Trap};

use super::engine::{FunctionEngine, EPOCH_TICK};
use super::registry::Function;
use super::state::{HostState, MemoryLimiter};
use super::Error;

/// What the entry point decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Go on (result 0).
    Continue,
    /// Answer with the generated response (result 1, request events).
    Respond,
}

/// Runs `function` for `event` on `state`; returns the decision and the state with the
/// function's changes (also on error, for its log lines).
pub fn invoke(
    engine: &FunctionEngine,
    function: &Function,
    event: Event,
    request_id: u64,
    mut state: HostState,
) -> (Result<Decision, Error>, HostState) {
    state.event = event;
    state.function = function.name.clone();
    state.body_limit = function.limits.body_limit;
    state.limiter = MemoryLimiter {
        limit: function.limits.memory,
        hit: false,
    };
    let mut store = Store::new(engine.engine(), state);
    store.limiter(|s| &mut s.limiter);
    // Ticks are counted from now; one extra tick so a call is never cut short of its limit.
    store.set_epoch_deadline(
        function
            .limits
            .cpu
            .as_micros()
            .div_ceil(EPOCH_TICK.as_micros()) as u64
            + 1,
    );

    let result = (|| {
        let instance = function.pre.instantiate(&mut store)?;
        let memory = instance.get_memory(&mut store, "memory");
        store.data_mut().memory = memory;
        if function.has_initialize {
            instance
                .get_typed_func::<(), ()>(&mut store, "_initialize")?
                .call(&mut store, ())?;
        }
        instance
            .get_typed_func::<(), i32>(&mut store, event.export_name())?
            .call(&mut store, ())
    })();
    let state = store.into_data();
    let name = || function.name.to_string();
    let event_name = event.export_name();
    let decision = match result {
        Ok(outcome::CONTINUE) => Ok(Decision::Continue),
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
        Ok(outcome::RESPOND) => Ok(Decision::Respond),
        Ok(other) => Err(Error::Failed {
            function: name(),
            event: event_name,
            reason: format!("returned {other}"),
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
            _ => Error::Trap {
                function: name(),
                event: event_name,
                reason: format!("{error:#}"),
            },
        }),
    };
    emit_logs(&state, event_name, request_id);
    (decision, state)
}

/// Writes the function's log lines and captured stdout/stderr to the node's log.
fn emit_logs(state: &HostState, event: &str, request: u64) {
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
    for (stream, pipe) in [("stdout", &state.stdout), ("stderr", &state.stderr)] {
        let contents = pipe.contents();
        for line in String::from_utf8_lossy(&contents).lines() {
            tracing::info!(target: "edge::function", function, event, request, stream, "{line}");
        }
    }
}
