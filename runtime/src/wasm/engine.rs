//! The wasmtime engine of a node, and loading modules into it: compile once (or take the
//! compiled code from the on-disk cache), validate against ABI v1, pre-link.
//!
//! Setup follows `wasmtime serve`: the pooling allocator, tuned to keep recently used pages
//! resident (PERF-NOTES.md: 2.2 µs instead of 6.9 µs per instance), and epoch interruption
//! driven by a ticker thread for the CPU limit.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use edge_sdk::abi::{Event, ValType as AbiType, HOST_CALLS, IMPORT_MODULE};
use sha2::{Digest, Sha256};
use wasmtime::{
    Engine, ExternType, InstanceAllocationStrategy, Linker, Module, PoolingAllocationConfig,
    ValType,
};

use super::function::Function;
use super::slow_lane::SlowLane;
use super::state::HostState;
use super::Error;
use crate::config::FunctionConfig;

/// How often the epoch advances; the CPU limit is enforced to within one tick.
pub const EPOCH_TICK: Duration = Duration::from_millis(1);
/// Instances the pool keeps slots for. Functions run synchronously on the runtime's worker
/// threads and the slow lane's, so concurrent instances are bounded by threads, far below this.
const POOL_INSTANCES: u32 = 256;
/// Invocations the slow lane takes per thread (one running, the rest waiting) before it
/// refuses with 503: a queue of three 5 ms functions adds at most 15 ms of CPU to a wait.
const SLOW_LANE_PER_THREAD: usize = 4;
/// Bytes in a WebAssembly page.
const WASM_PAGE: u64 = 64 * 1024;
/// Wasm stack per invocation: deep recursion traps (503) well before the host thread's stack.
const MAX_WASM_STACK: usize = 512 * 1024;

/// The largest memory an instance of `config`'s functions may have, which sizes the pool:
/// the largest `memory_limit`, and at least the default so that uploads with it fit.
pub fn pool_memory(config: &crate::config::Config) -> usize {
    config
        .functions
        .iter()
        .map(|f| f.limits.memory)
        .max()
        .unwrap_or(0)
        .max(crate::config::DEFAULT_FUNCTION_MEMORY as usize)
}

/// One engine per node, with the linker holding every host call.
pub struct FunctionEngine {
    engine: Engine,
    linker: Linker<HostState>,
    compile_cache: Option<PathBuf>,
    ticker: Arc<Ticker>,
    /// The ticker's thread, to wake it.
    ticker_thread: std::thread::Thread,
    /// Started at the first invocation that needs it: most nodes never do, and commands that
    /// only load modules (`edge check`) should not start threads.
    slow_lane: OnceLock<std::io::Result<SlowLane>>,
}

impl FunctionEngine {
    /// An engine whose instances may have memories of up to `max_memory` bytes, caching
    /// compiled code in `compile_cache` if given.
    pub fn new(max_memory: usize, compile_cache: Option<PathBuf>) -> Result<Self, Error> {
        let mut config = wasmtime::Config::new();
        config.epoch_interruption(true);
        config.max_wasm_stack(MAX_WASM_STACK);
        // Copy data segments at instantiation instead of mapping them copy-on-write: edge
        // functions carry kilobytes of data, and the mapping's system calls cost more (0.2 µs of
        // 4.3 µs per router call, measured with runtime/examples/bench_function.rs).
        config.memory_init_cow(false);
        let mut pool = PoolingAllocationConfig::default();
        pool.total_core_instances(POOL_INSTANCES)
            .total_memories(POOL_INSTANCES)
            .total_tables(POOL_INSTANCES)
            .max_memory_size(max_memory)
            .linear_memory_keep_resident(1024 * 1024)
            .table_keep_resident(64 * 1024)
            .pagemap_scan(wasmtime::Enabled::Auto);
        config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        let engine = match Engine::new(&config) {
            Ok(engine) => engine,
            Err(error) => {
                // Small hosts cannot reserve the pool's address space; slower, but serving.
                tracing::warn!(%error, "pooling allocator unavailable; instantiating on demand");
                config.allocation_strategy(InstanceAllocationStrategy::OnDemand);
                Engine::new(&config).map_err(|e| Error::Engine(e.to_string()))?
            }
        };
        let mut linker = Linker::new(&engine);
        super::abi::add_to_linker(&mut linker).map_err(|e| Error::Engine(e.to_string()))?;

        let ticker = Arc::new(Ticker::default());
        let (weak, shared) = (engine.weak(), Arc::clone(&ticker));
        let ticker_thread = std::thread::Builder::new()
            .name("edge-epoch".into())
            .spawn(move || shared.run(&weak))
            .map_err(|e| Error::Engine(format!("cannot start the epoch ticker: {e}")))?
            .thread()
            .clone();
        if let Some(dir) = &compile_cache {
            if let Err(error) = std::fs::create_dir_all(dir) {
                tracing::warn!(dir = %dir.display(), %error, "compile cache unavailable; modules compile at every start");
            }
        }
        Ok(FunctionEngine {
            engine,
            linker,
            compile_cache,
            ticker,
            ticker_thread,
            slow_lane: OnceLock::new(),
        })
    }

    /// Marks a guest as running until the guard is dropped: the epoch ticks (and so CPU
    /// limits hold) meanwhile. Every `Store` that runs guest code holds one.
    pub(super) fn running(&self) -> Running<'_> {
        self.ticker.running.fetch_add(1, Ordering::SeqCst);
        // Paired with the ticker's store of `parked` then load of `running` (both SeqCst):
        // either it sees this guest and stays awake, or this sees it parked and wakes it.
        if self.ticker.parked.swap(false, Ordering::SeqCst) {
            self.ticker_thread.unpark();
        }
        Running(&self.ticker)
    }

    /// Whether the epoch ticker is parked (no guest ran for a while).
    #[cfg(test)]
    pub(super) fn ticker_parked(&self) -> bool {
        self.ticker.parked.load(Ordering::SeqCst)
    }

    /// The slow lane (`wasm::slow_lane`), started on first use with one thread per CPU and
    /// [`SLOW_LANE_PER_THREAD`] places per thread.
    pub fn slow_lane(&self) -> Result<&SlowLane, &std::io::Error> {
        self.slow_lane
            .get_or_init(|| {
                let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
                SlowLane::start(threads, threads * SLOW_LANE_PER_THREAD)
            })
            .as_ref()
    }

    /// The wasmtime engine.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// Loads the function a config entry names.
    pub fn load_file(&self, config: &FunctionConfig) -> Result<Function, Error> {
        let bytes = std::fs::read(&config.module).map_err(|source| Error::Read {
            function: config.name.clone(),
            path: config.module.clone(),
            source,
        })?;
        self.load(config, &bytes)
    }

    /// Loads a function from `.wasm` or `.wat` bytes: size check, compile (or cache), validate.
    pub fn load(&self, config: &FunctionConfig, bytes: &[u8]) -> Result<Function, Error> {
        let function = config.name.clone();
        if bytes.len() > config.limits.max_module_size {
            return Err(Error::TooLarge {
                function,
                size: bytes.len(),
                limit: config.limits.max_module_size,
            });
        }
        // The WAT parser's complaint about such bytes ("input bytes aren't valid utf-8") reads
        // as if the module were meant to be text.
        if !bytes.starts_with(b"\0asm") && std::str::from_utf8(bytes).is_err() {
            return Err(Error::Compile {
                function,
                reason: "neither a WebAssembly binary nor WAT text (not UTF-8)".into(),
            });
        }
        let wasm = wat::parse_bytes(bytes).map_err(|e| Error::Compile {
            function: function.clone(),
            reason: e.to_string(),
        })?;
        // Checked before compiling: the pooling allocator refuses to compile a module whose
        // memory exceeds the pool's (the node-wide) maximum, naming its own settings, and one
        // under that but over this function's limit would fail at every request.
        if let Some(declared) = declared_memory(&wasm) {
            if declared > config.limits.memory as u64 {
                return Err(Error::Invalid {
                    function,
                    reason: format!(
                        "the module declares {declared} bytes of initial memory, over its memory_limit of {} bytes",
                        config.limits.memory
                    ),
                });
            }
        }
        let hash = hex(&Sha256::digest(&wasm));
        let module = self.compile(&function, &wasm, &hash)?;
        let events = validate(&function, &module)?;
        let pre = self
            .linker
            .instantiate_pre(&module)
            .map_err(|e| Error::Invalid {
                function: function.clone(),
                reason: format!("{e:#}"),
            })?;
        Ok(Function::new(
            config,
            pre,
            events,
            &module,
            hash,
            bytes.len(),
        ))
    }

    fn compile(&self, function: &str, wasm: &[u8], hash: &str) -> Result<Module, Error> {
        let compile = || {
            Module::new(&self.engine, wasm).map_err(|e| Error::Compile {
                function: function.to_owned(),
                reason: format!("{e:#}"),
            })
        };
        let Some(dir) = &self.compile_cache else {
            return compile();
        };
        // The engine's settings are part of the key: code compiled by another configuration or
        // version must never be loaded.
        let engine_hash = {
            use std::hash::{Hash, Hasher};
            let mut h = std::collections::hash_map::DefaultHasher::new();
            self.engine.precompile_compatibility_hash().hash(&mut h);
            h.finish()
        };
        let path = dir.join(format!("{hash}-{engine_hash:016x}.cwasm"));
        if path.is_file() {
            #[allow(unsafe_code)]
            // Read into memory rather than `deserialize_file`: a mapped file that someone
            // truncates later would crash the node with SIGBUS.
            let cached = std::fs::read(&path)
                .map_err(wasmtime::Error::from)
                .and_then(|code| {
                    // SAFETY: the file was written by `Module::serialize` of an engine with the same
                    // compatibility hash (it is in the name), into a cache directory the node owns,
                    // renamed into place only when complete; wasmtime still checks its header.
                    unsafe { Module::deserialize(&self.engine, &code) }
                });
            match cached {
                Ok(module) => return Ok(module),
                Err(error) => {
                    tracing::warn!(path = %path.display(), %error, "ignoring unusable compiled module")
                }
            }
        }
        let module = compile()?;
        if let Err(error) = module
            .serialize()
            .map_err(std::io::Error::other)
            .and_then(|code| crate::durable::write_durably(&path, &code))
        {
            tracing::warn!(path = %path.display(), %error, "cannot cache compiled module");
        }
        Ok(module)
    }
}

impl Drop for FunctionEngine {
    fn drop(&mut self) {
        self.ticker.stop.store(true, Ordering::SeqCst);
        self.ticker_thread.unpark();
    }
}

/// Idle ticks after which the ticker parks until a guest runs again.
const IDLE_TICKS: u32 = 100;

/// The epoch ticker: advances the engine's epoch every [`EPOCH_TICK`] while guests run, and
/// parks after [`IDLE_TICKS`] without one. With decision replay most invocations run no guest,
/// and a ticker that woke every millisecond regardless took about 2.5 % of a pinned node's CPU
/// serving replayed router hits, plus the worker's own context switches (perf, 2026-12-02).
#[derive(Default)]
struct Ticker {
    /// Guests running now.
    running: AtomicUsize,
    /// Set by the ticker just before it parks.
    parked: AtomicBool,
    /// Set when the engine is dropped.
    stop: AtomicBool,
}

impl Ticker {
    fn run(&self, engine: &wasmtime::EngineWeak) {
        let mut idle = 0;
        while !self.stop.load(Ordering::SeqCst) {
            std::thread::sleep(EPOCH_TICK);
            match engine.upgrade() {
                Some(engine) => engine.increment_epoch(),
                None => break,
            }
            if self.running.load(Ordering::SeqCst) > 0 {
                idle = 0;
                continue;
            }
            idle += 1;
            if idle < IDLE_TICKS {
                continue;
            }
            self.parked.store(true, Ordering::SeqCst);
            if self.running.load(Ordering::SeqCst) == 0 && !self.stop.load(Ordering::SeqCst) {
                // A wake-up may be spurious; the loop checks again a tick later.
                std::thread::park();
            }
            self.parked.store(false, Ordering::SeqCst);
            idle = 0;
        }
    }
}

/// A running guest, for the epoch ticker (see [`FunctionEngine::running`]).
pub(super) struct Running<'a>(&'a Ticker);

impl Drop for Running<'_> {
    fn drop(&mut self) {
        self.0.running.fetch_sub(1, Ordering::SeqCst);
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The largest initial size, in bytes, of the memories a binary module defines (its memory
/// section, binary format §5.5.8); `None` if the module is malformed, which compiling reports.
fn declared_memory(wasm: &[u8]) -> Option<u64> {
    // The magic number and version come first, then sections: id, LEB128 size, contents.
    let mut rest = wasm.get(8..)?;
    while let Some((&id, tail)) = rest.split_first() {
        let (size, tail) = leb128(tail)?;
        let size = usize::try_from(size).ok()?;
        let mut section = tail.get(..size)?;
        rest = &tail[size..];
        if id != 5 {
            continue;
        }
        let (count, tail) = leb128(section)?;
        section = tail;
        let mut largest: u64 = 0;
        for _ in 0..count {
            // Limits: flags (bit 0: a maximum follows; bit 3: a custom page size follows),
            // the minimum in pages, then the optional fields.
            let (&flags, tail) = section.split_first()?;
            let (pages, mut tail) = leb128(tail)?;
            for bit in [0x01, 0x08] {
                if flags & bit != 0 {
                    tail = leb128(tail)?.1;
                }
            }
            section = tail;
            largest = largest.max(pages.saturating_mul(WASM_PAGE));
        }
        return Some(largest);
    }
    Some(0)
}

/// An unsigned LEB128 number and the bytes after it.
fn leb128(bytes: &[u8]) -> Option<(u64, &[u8])> {
    let mut value: u64 = 0;
    for (i, &byte) in bytes.iter().enumerate().take(10) {
        value |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            return Some((value, &bytes[i + 1..]));
        }
    }
    None
}

/// Checks exports and imports against ABI v1; returns the events the module handles.
fn validate(function: &str, module: &Module) -> Result<Vec<Event>, Error> {
    let invalid = |reason: String| Error::Invalid {
        function: function.to_owned(),
        reason,
    };
    if !matches!(module.get_export("memory"), Some(ExternType::Memory(_))) {
        return Err(invalid(
            "module does not export its memory as `memory`".into(),
        ));
    }
    let mut events = Vec::new();
    for event in Event::ALL {
        match module.get_export(event.export_name()) {
            None => {}
            Some(ExternType::Func(ty))
                if ty.params().len() == 0
                    && ty.results().map(|r| r.is_i32()).collect::<Vec<_>>() == [true] =>
            {
                events.push(event)
            }
            Some(_) => {
                return Err(invalid(format!(
                    "export `{}` must be a function of type () -> i32",
                    event.export_name()
                )))
            }
        }
    }
    if events.is_empty() {
        return Err(invalid("module exports no entry point: expected one of `viewer-request`, `origin-request`, `origin-response`, `viewer-response`".into()));
    }
    if let Some(export) = module.get_export("_initialize") {
        if !matches!(export, ExternType::Func(ref ty) if ty.params().len() == 0 && ty.results().len() == 0)
        {
            return Err(invalid(
                "export `_initialize` must be a function of type () -> ()".into(),
            ));
        }
    }
    for import in module.imports() {
        match import.module() {
            IMPORT_MODULE => {
                let Some(call) = HOST_CALLS.iter().find(|c| c.name == import.name()) else {
                    return Err(invalid(format!("unknown import `{IMPORT_MODULE}::{}`: not a host call of ABI v1", import.name())));
                };
                let ExternType::Func(ty) = import.ty() else {
                    return Err(invalid(format!("import `{IMPORT_MODULE}::{}` must be a function", import.name())));
                };
                let same = |got: Vec<ValType>, want: &[AbiType]| {
                    got.len() == want.len()
                        && got.iter().zip(want).all(|(g, w)| matches!((g, w), (ValType::I32, AbiType::I32) | (ValType::I64, AbiType::I64)))
                };
                if !same(ty.params().collect(), call.params) || !same(ty.results().collect(), call.results) {
                    return Err(invalid(format!(
                        "import `{IMPORT_MODULE}::{}` has type {ty}, but ABI v1 defines it as {:?} -> {:?}",
                        import.name(),
                        call.params,
                        call.results
                    )));
                }
            }
            "wasi_snapshot_preview1" => {}
            other => return Err(invalid(format!("unknown import `{other}::{}`: only `{IMPORT_MODULE}` and `wasi_snapshot_preview1` are provided", import.name()))),
        }
    }
    Ok(events)
}
