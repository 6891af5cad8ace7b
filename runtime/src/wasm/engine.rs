//! The wasmtime engine of a node, and loading modules into it: compile once (or take the
//! compiled code from the on-disk cache), validate against ABI v1, pre-link.
//!
//! Setup follows `wasmtime serve`: the pooling allocator, tuned to keep recently used pages
//! resident (PERF-NOTES.md: 2.2 µs instead of 6.9 µs per instance), and epoch interruption
//! driven by a ticker thread for the CPU limit.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use edge_sdk::abi::{Event, ValType as AbiType, HOST_CALLS, IMPORT_MODULE};
use sha2::{Digest, Sha256};
use wasmtime::{
    Engine, ExternType, InstanceAllocationStrategy, Linker, Module, PoolingAllocationConfig,
    ValType,
};

use super::registry::Function;
use super::state::HostState;
use super::Error;
use crate::config::FunctionConfig;

/// How often the epoch advances; the CPU limit is enforced to within one tick.
pub const EPOCH_TICK: Duration = Duration::from_millis(1);
/// Instances the pool keeps slots for. Functions run synchronously on the runtime's worker
/// threads, so concurrent instances are bounded by threads, far below this.
const POOL_INSTANCES: u32 = 256;
/// Wasm stack per invocation: deep recursion traps (503) well before the host thread's stack.
const MAX_WASM_STACK: usize = 512 * 1024;

/// One engine per node, with the linker holding every host call.
pub struct FunctionEngine {
    engine: Engine,
    linker: Linker<HostState>,
    compile_cache: Option<PathBuf>,
    ticker_stop: Arc<AtomicBool>,
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

        let ticker_stop = Arc::new(AtomicBool::new(false));
        let (weak, stop) = (engine.weak(), Arc::clone(&ticker_stop));
        std::thread::Builder::new()
            .name("edge-epoch".into())
            .spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    std::thread::sleep(EPOCH_TICK);
                    match weak.upgrade() {
                        Some(engine) => engine.increment_epoch(),
                        None => break,
                    }
                }
            })
            .map_err(|e| Error::Engine(format!("cannot start the epoch ticker: {e}")))?;
        if let Some(dir) = &compile_cache {
            if let Err(error) = std::fs::create_dir_all(dir) {
                tracing::warn!(dir = %dir.display(), %error, "compile cache unavailable; modules compile at every start");
            }
        }
        Ok(FunctionEngine {
            engine,
            linker,
            compile_cache,
            ticker_stop,
        })
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
        let wasm = wat::parse_bytes(bytes).map_err(|e| Error::Compile {
            function: function.clone(),
            reason: e.to_string(),
        })?;
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
        self.ticker_stop.store(true, Ordering::Relaxed);
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
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
