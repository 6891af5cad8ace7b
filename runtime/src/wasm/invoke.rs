//! One invocation: a fresh instance from the function's `InstancePre` in a new `Store`, with
//! its memory limit and CPU deadline, the entry point called once, everything dropped after.
//! Nothing a guest does can panic the host; every failure is an [`Error`].

use edge_sdk::abi::{log_level, outcome, Event};
use std::time::Duration;

use wasmtime::{Store, Trap, UpdateDeadline};

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
        peak: 0,
    };
    let mut store = Store::new(engine.engine(), state);
    store.limiter(|s| &mut s.limiter);
    // The epoch ticks in wall time, but the limit is CPU time: a thread preempted on a busy
    // machine must not fail a function that has not run long. Reading the thread's CPU clock
    // costs a system call (about half a microsecond here), so it is not read per call: the
    // first deadline is the limit in wall time; only a call that reaches it starts counting its
    // CPU time from there, and is stopped once it has used the limit again. A runaway function
    // is thus stopped after one to two times its limit, and a preempted one never early.
    let limit = function.limits.cpu;
    let limit_ticks = limit.as_micros().div_ceil(EPOCH_TICK.as_micros()) as u64 + 1;
    store.set_epoch_deadline(limit_ticks);
    let mut counting_from: Option<Duration> = None;
    store.epoch_deadline_callback(move |_| {
        let Some(now) = thread_cpu_time() else {
            return Ok(UpdateDeadline::Interrupt);
        };
        match counting_from {
            None => {
                counting_from = Some(now);
                Ok(UpdateDeadline::Continue(limit_ticks))
            }
            Some(start) if now.saturating_sub(start) < limit => Ok(UpdateDeadline::Continue(1)),
            Some(_) => Ok(UpdateDeadline::Interrupt),
        }
    });

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
    if let Some((stdout, stderr)) = &state.output {
        for (stream, pipe) in [("stdout", stdout), ("stderr", stderr)] {
            let contents = pipe.contents();
            for line in String::from_utf8_lossy(&contents).lines() {
                tracing::info!(target: "edge::function", function, event, request, stream, "{line}");
            }
        }
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

    fn state() -> HostState {
        let node: Config = "[origins.o]\ntype = \"http\"\ntargets = [\"http://127.0.0.1:1\"]\n[[behaviors]]\npath = \"*\"\norigin = \"o\"\n"
            .parse()
            .expect("valid config");
        let request = RequestView {
            method: http::Method::GET,
            uri: "/x".parse().expect("uri"),
            headers: http::HeaderMap::new(),
        };
        HostState::new(
            Arc::new(node),
            request,
            "127.0.0.1".parse().expect("ip"),
            None,
        )
    }

    #[test]
    fn logs_are_collected_and_changes_returned() {
        let engine = FunctionEngine::new(16 << 20, None).expect("engine");
        let function = engine
            .load(&config("logger"), LOGGER.as_bytes())
            .expect("loads");
        let (decision, state) = invoke(&engine, &function, Event::ViewerRequest, 1, state());
        assert_eq!(decision.expect("runs"), Decision::Continue);
        assert_eq!(
            state.logs,
            vec![
                (log_level::INFO, "hello from wasm".to_owned()),
                (
                    log_level::WARN,
                    "log: level 9 is not one of 0 (error) to 4 (trace)".to_owned()
                )
            ],
            "level 9 is refused, with a warning that says why"
        );
        assert_eq!(state.request.headers["x-a"], "1");
        assert!(state.output.is_none(), "no WASI call, no WASI context");
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
        let (decision, _) = invoke(&engine, &again, Event::ViewerRequest, 2, state());
        assert_eq!(decision.expect("runs"), Decision::Continue);
        // A corrupt cache file is ignored and replaced, not trusted.
        std::fs::write(&path, b"garbage").expect("write");
        let recompiled = engine
            .load(&config("logger"), LOGGER.as_bytes())
            .expect("recompiles");
        let (decision, _) = invoke(&engine, &recompiled, Event::ViewerRequest, 3, state());
        assert_eq!(decision.expect("runs"), Decision::Continue);
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
