//! The function host: runs edge functions (WebAssembly modules, ABI v1 in `sdk/ABI.md`) at the
//! flow's four events.
//!
//! - [`engine`]: one wasmtime engine per node (pooling allocator, epoch interruption), module
//!   compilation with an on-disk cache, and validation of imports and exports at load time.
//! - [`function`]: one loaded function; [`registry`]: the loaded functions by name, and
//!   which run at which event of a behavior.
//! - [`invoke`]: one call = a fresh instance from a pre-linked `InstancePre`, with memory and
//!   CPU limits; traps become errors, never panics.
//! - [`slow_lane`]: the low-priority threads where invocations that run long go, so that they
//!   never hold up an async worker.
//! - [`replay`]: decision replay, which applies an invocation's recorded host calls instead of
//!   running the guest when a request's reads give results seen before.
//! - `state`: `HostState`, what an invocation can touch (private to this module); `op`: each
//!   host call as data, applied to it; `abi`: the host calls; [`wasi`]: WASI preview 1 as
//!   functions see it (stdout and stderr to the log).
//! - [`profile`]: an invocation taken apart into its stages, for the micro-benchmark.

mod abi;
pub mod engine;
pub mod function;
pub mod invoke;
pub mod lifecycle;
mod op;
pub mod profile;
pub mod registry;
pub mod replay;
pub mod slow_lane;
mod state;
pub mod test_event;
pub mod wasi;

use std::path::PathBuf;
use std::time::Duration;

use edge_sdk::abi::Event;

pub use engine::FunctionEngine;
pub use function::Function;
pub use lifecycle::{Lifecycle, LifecycleError, Stage};
pub use registry::{BehaviorFunctions, Registry};
pub use state::{BodyView, RequestView, ResponseView};

/// A function that could not be loaded or did not run to completion.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The module file could not be read.
    #[error("function {function:?}: cannot read module {}", path.display())]
    Read {
        /// Function name.
        function: String,
        /// Module path.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The module is larger than `max_module_size`.
    #[error("function {function:?}: module is {size} bytes, over the limit of {limit}")]
    TooLarge {
        /// Function name.
        function: String,
        /// Module size.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// Not valid WebAssembly (or WAT), or it failed to compile.
    #[error("function {function:?}: module does not compile: {reason}")]
    Compile {
        /// Function name.
        function: String,
        /// The compiler's message.
        reason: String,
    },
    /// The module does not fit ABI v1: a missing or mistyped export, an unknown import.
    #[error("function {function:?}: {reason}")]
    Invalid {
        /// Function name.
        function: String,
        /// What is wrong, naming the import or export.
        reason: String,
    },
    /// The engine could not be created.
    #[error("cannot start the WebAssembly engine: {0}")]
    Engine(String),
    /// The function trapped or could not be instantiated.
    #[error("function {function:?} ({event}) trapped: {reason}")]
    Trap {
        /// Function name.
        function: String,
        /// Event.
        event: &'static str,
        /// The trap, on one line.
        reason: String,
        /// The Wasm backtrace (several lines), if wasmtime captured one; logged, never shown
        /// to viewers.
        backtrace: Option<String>,
    },
    /// A Rust function panicked: it wrote the panic message to stderr, then trapped.
    #[error("function {function:?} ({event}) {message}")]
    Panic {
        /// Function name.
        function: String,
        /// Event.
        event: &'static str,
        /// The panic message on one line: `panicked at src/lib.rs:12:5: boom`.
        message: String,
        /// The Wasm backtrace, as for [`Error::Trap`].
        backtrace: Option<String>,
    },
    /// The function runs long, and the slow lane was full of other long runs.
    #[error("function {function:?} ({event}) runs long and all {slots} places of the slow lane are taken")]
    Busy {
        /// Function name.
        function: String,
        /// The slow lane's capacity.
        slots: usize,
        /// Event.
        event: &'static str,
    },
    /// The function ran past its CPU time limit.
    #[error("function {function:?} ({event}) exceeded its CPU time limit of {limit:?}")]
    CpuLimit {
        /// Function name.
        function: String,
        /// Event.
        event: &'static str,
        /// The limit.
        limit: Duration,
    },
    /// The function tried to grow its memory past the limit and then failed.
    #[error("function {function:?} ({event}) exceeded its memory limit of {limit} bytes")]
    MemoryLimit {
        /// Function name.
        function: String,
        /// Event.
        event: &'static str,
        /// The limit.
        limit: usize,
    },
    /// The function exhausted its stack (deep recursion).
    #[error("function {function:?} ({event}) exhausted its stack")]
    StackOverflow {
        /// Function name.
        function: String,
        /// Event.
        event: &'static str,
    },
    /// The entry point returned failure or a value that is not a valid result.
    #[error("function {function:?} ({event}) failed: {reason}")]
    Failed {
        /// Function name.
        function: String,
        /// Event.
        event: &'static str,
        /// What it returned, or what was wrong with it.
        reason: String,
    },
}

impl Error {
    /// Whether a resource limit was hit (503) rather than the function failing (502).
    pub fn is_limit(&self) -> bool {
        matches!(
            self,
            Error::CpuLimit { .. }
                | Error::MemoryLimit { .. }
                | Error::StackOverflow { .. }
                | Error::Busy { .. }
        )
    }

    /// The function and event of a failed invocation (empty for load errors).
    pub fn function_and_event(&self) -> (&str, &'static str) {
        match self {
            Error::Trap {
                function, event, ..
            }
            | Error::Panic {
                function, event, ..
            }
            | Error::Busy {
                function, event, ..
            }
            | Error::CpuLimit {
                function, event, ..
            }
            | Error::MemoryLimit {
                function, event, ..
            }
            | Error::StackOverflow { function, event }
            | Error::Failed {
                function, event, ..
            } => (function.as_str(), *event),
            Error::Read { function, .. }
            | Error::TooLarge { function, .. }
            | Error::Compile { function, .. }
            | Error::Invalid { function, .. } => (function.as_str(), ""),
            Error::Engine(_) => ("", ""),
        }
    }

    /// The Wasm backtrace of a trap or panic, if captured.
    pub fn backtrace(&self) -> Option<&str> {
        match self {
            Error::Trap { backtrace, .. } | Error::Panic { backtrace, .. } => backtrace.as_deref(),
            _ => None,
        }
    }
}

/// The name of an event as the config, the ABI spec and logs write it.
pub fn event_name(event: Event) -> &'static str {
    event.export_name()
}
