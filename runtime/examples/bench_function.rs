//! Micro-benchmark: what a viewer-request edge function adds to one request.
//!
//! Loads the `router` example function (`functions/router`) the way the node does
//! (`FunctionEngine::new` + `load`) and times, per iteration and single-threaded, exactly what
//! the node's flow does per request for a viewer-request function
//! (`flow::functions::run_request_event`):
//!
//! 1. build the request the function sees (`RequestView`: a browser-like `GET /css/site.css`
//!    with a dozen typical headers),
//! 2. `wasm::invoke::run` with the `Input` the flow builds, on the calling thread: `HostState`
//!    from the input, a fresh `Store`, instantiate
//!    from the pre-linked module, `_initialize` if exported, the `viewer-request` export with the
//!    inline deadline, drop. (The router never runs long enough to leave the thread.)
//! 3. read the changed request and the chosen origin back.
//!
//! A baseline loop does step 1 and drops the request; the difference of the two at p50 is what
//! the function adds per request (the bar: 15 µs). In the node the request already exists
//! (hyper parsed it), so step 1 is not a cost of the function; it is in both loops only so that
//! they differ by exactly the function's work.
//!
//! A breakdown then times the parts separately on the same engine (`HostState::new` alone,
//! `Store::new` alone, `Store::new` + instantiate, + `_initialize`, + the entry point), with the
//! same pre-linked module built from the engine's own linker setup, to show where the time goes.
//!
//! Usage: `bench_function [ROUTER.wasm] [--iterations N] [--warmup N]`; the module defaults to
//! `target/wasm32-wasip1/wasm/router.wasm` (build it with
//! `cargo build --profile wasm --target wasm32-wasip1 -p router`). Run it pinned
//! (`taskset -c 0`) and with `RUST_BACKTRACE` unset; `bench/run.sh` runs it both with and
//! without `RUST_BACKTRACE=1`.

use std::future::Future;
use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{anyhow, bail, ensure, Context, Result};
use clap::Parser;
use edge_runtime::wasm::invoke::{self, Decision, Input};
use edge_runtime::wasm::slow_lane::INLINE_TICKS;
use edge_runtime::wasm::state::{HostState, RequestView, Tracked};
use edge_runtime::wasm::FunctionEngine;
use edge_runtime::Config;
use edge_sdk::abi::Event;
use http::header::{HeaderMap, HeaderName, HeaderValue};
use http::{Method, Uri};
use wasmtime::{InstancePre, Linker, Module, Store};

/// Command-line arguments.
#[derive(Parser, Debug)]
#[command(about = "Per-request cost of the router viewer-request function, in process")]
struct Args {
    /// The router module.
    #[arg(default_value = "target/wasm32-wasip1/wasm/router.wasm")]
    module: PathBuf,
    /// Timed iterations per loop.
    #[arg(long, default_value_t = 20_000)]
    iterations: usize,
    /// Untimed iterations before each loop (fills the instance pool, warms caches).
    #[arg(long, default_value_t = 2_000)]
    warmup: usize,
}

/// The request path: a static asset, which the router sends to `bucket` unchanged.
const PATH: &str = "/css/site.css";

/// What a current desktop browser sends for a stylesheet (no `session` cookie, so the router
/// takes its static branch and reads the whole `Cookie` header to find that out).
const HEADERS: &[(&str, &str)] = &[
    ("host", "www.example.com"),
    ("user-agent", "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36"),
    ("accept", "text/css,*/*;q=0.1"),
    ("accept-language", "en-US,en;q=0.9,de;q=0.8"),
    ("accept-encoding", "gzip, deflate, br, zstd"),
    ("referer", "https://www.example.com/products/shoes?color=blue"),
    ("sec-ch-ua", "\"Not/A)Brand\";v=\"8\", \"Chromium\";v=\"126\", \"Google Chrome\";v=\"126\""),
    ("sec-ch-ua-mobile", "?0"),
    ("sec-ch-ua-platform", "\"Linux\""),
    ("sec-fetch-dest", "style"),
    ("sec-fetch-mode", "no-cors"),
    ("sec-fetch-site", "same-origin"),
    ("cookie", "_ga=GA1.1.1234567890.1718000000; _gid=GA1.1.987654321.1718000000; theme=dark; consent=analytics%3Dtrue"),
    ("if-none-match", "\"5f3c-1a2b3c4d\""),
];

/// The node's config as far as the function can see it: `origin_set` resolves `app` and
/// `bucket` against it.
fn node_config(module: &Path) -> Result<Config> {
    let module = module
        .to_str()
        .context("the module path is not UTF-8")?
        .replace('\\', "\\\\")
        .replace('"', "\\\"");
    let text = format!(
        r#"
[origins.bucket]
type = "static"
root = "."

[origins.app]
type = "http"
targets = ["http://127.0.0.1:3000"]

[[behaviors]]
path = "*"
origin = "bucket"
functions = {{ viewer_request = "router" }}

[functions.router]
module = "{module}"
"#
    );
    text.parse()
        .context("the benchmark's node config is invalid")
}

/// Builds the request the function sees. In the node hyper has already parsed it; here it is
/// part of both loops (see the module docs).
fn request(headers: &[(HeaderName, HeaderValue)]) -> RequestView {
    let mut map = HeaderMap::with_capacity(headers.len());
    for (name, value) in headers {
        map.append(name.clone(), value.clone());
    }
    RequestView {
        method: Method::GET,
        uri: Uri::from_static(PATH),
        headers: map,
    }
}

/// Nanosecond samples of one loop.
struct Samples {
    name: &'static str,
    ns: Vec<u64>,
}

impl Samples {
    /// Runs `warmup` untimed and `iterations` timed calls of `f`, one sample per call.
    fn measure(name: &'static str, warmup: usize, iterations: usize, mut f: impl FnMut()) -> Self {
        for _ in 0..warmup {
            f();
        }
        let mut ns = Vec::with_capacity(iterations);
        for _ in 0..iterations {
            let start = Instant::now();
            f();
            ns.push(start.elapsed().as_nanos() as u64);
        }
        ns.sort_unstable();
        Samples { name, ns }
    }

    /// The `p`-th percentile in µs (nearest rank).
    fn percentile(&self, p: f64) -> f64 {
        let rank = ((p / 100.0) * self.ns.len() as f64).ceil() as usize;
        self.ns[rank.clamp(1, self.ns.len()) - 1] as f64 / 1000.0
    }

    fn mean(&self) -> f64 {
        self.ns.iter().sum::<u64>() as f64 / self.ns.len() as f64 / 1000.0
    }

    fn print(&self) {
        println!(
            "  {:<44} p50 {:>7.2} µs   p90 {:>7.2} µs   p99 {:>7.2} µs   mean {:>7.2} µs",
            self.name,
            self.percentile(50.0),
            self.percentile(90.0),
            self.percentile(99.0),
            self.mean()
        );
    }
}

fn main() -> Result<()> {
    let args = Args::parse();
    ensure!(args.iterations > 0, "--iterations must be at least 1");

    let config = Arc::new(node_config(&args.module)?);
    let function_config = config
        .functions
        .iter()
        .find(|f| f.name == "router")
        .expect("the config declares [functions.router]");
    let bytes = std::fs::read(&args.module).with_context(|| {
        format!(
            "cannot read {} (build it with `cargo build --profile wasm --target wasm32-wasip1 -p router`)",
            args.module.display()
        )
    })?;
    // No compile cache: the benchmark compiles once at start and never touches ~/.cache.
    let engine = Arc::new(
        FunctionEngine::new(function_config.limits.memory, None)
            .context("cannot create the function engine")?,
    );
    let function = Arc::new(
        engine
            .load(function_config, &bytes)
            .context("cannot load the router module")?,
    );
    ensure!(
        function.handles(Event::ViewerRequest),
        "{} has no viewer-request entry point",
        args.module.display()
    );
    let bucket = config
        .origins
        .iter()
        .position(|o| o.name == "bucket")
        .expect("the config declares origins.bucket");
    let headers: Vec<(HeaderName, HeaderValue)> = HEADERS
        .iter()
        .map(|(n, v)| (HeaderName::from_static(n), HeaderValue::from_static(v)))
        .collect();
    let client_ip = IpAddr::V4(Ipv4Addr::new(203, 0, 113, 7));

    // One request the way the node runs it; also the correctness check of the setup.
    let input = |request| Input {
        config: Arc::clone(&config),
        request,
        client_ip,
        response: None,
        kv: None,
    };
    let run_once = |id: u64| -> Result<RequestView> {
        let (invoked, _) = finish(invoke::run(
            &engine,
            &function,
            Event::ViewerRequest,
            id,
            input(request(&headers)),
        ));
        match invoked.result {
            Ok(Decision::Continue) => {}
            Ok(other) => bail!("the router decided {other:?}, expected Continue"),
            Err(error) => bail!("the router failed: {error}"),
        }
        ensure!(
            invoked.origin == Some(bucket),
            "the router chose origin {:?}, expected bucket ({bucket}); logs: {:?}",
            invoked.origin,
            invoked.logs
        );
        Ok(invoked.request)
    };
    let changed = run_once(0)?;
    ensure!(
        changed.uri == PATH,
        "the router rewrote {PATH} to {}",
        changed.uri
    );

    println!(
        "router ({} bytes, {}) for GET {PATH} with {} headers; {} iterations after {} warm-up, single thread; RUST_BACKTRACE={}",
        function.size,
        args.module.display(),
        HEADERS.len(),
        args.iterations,
        args.warmup,
        std::env::var("RUST_BACKTRACE").unwrap_or_else(|_| "(unset)".into()),
    );

    let baseline = Samples::measure(
        "baseline: build RequestView, drop",
        args.warmup,
        args.iterations,
        || drop(black_box(request(&headers))),
    );
    let mut id = 0u64;
    let mut moved = 0usize;
    let with_router = Samples::measure(
        "request through the router (as the node)",
        args.warmup,
        args.iterations,
        || {
            id += 1;
            // What `run_request_event` does: move the request in, invoke, take it back out.
            let view = request(&headers);
            let (invoked, went_slow) = finish(invoke::run(
                &engine,
                &function,
                Event::ViewerRequest,
                id,
                input(view),
            ));
            moved += usize::from(went_slow);
            let decision = black_box(invoked.result).expect("checked by the first run");
            let request = invoked.request;
            black_box((
                decision,
                request.method,
                request.uri,
                request.headers,
                invoked.origin,
            ));
        },
    );
    baseline.print();
    with_router.print();
    if moved > 0 {
        println!(
            "  ({moved} of the router's runs went past the inline deadline to the slow lane: the CPU was taken by another process)"
        );
    }
    let added = with_router.percentile(50.0) - baseline.percentile(50.0);
    println!(
        "router adds {added:.2} µs at p50 (mean {:.2} µs); bar ≤ 15 µs: {}",
        with_router.mean() - baseline.mean(),
        if added <= 15.0 { "MET" } else { "NOT MET" }
    );

    breakdown(
        &args,
        &engine,
        &bytes,
        &config,
        &headers,
        client_ip,
        function_config,
    )
}

/// Runs `future` to its end on this thread: its output, and whether it was not ready at the
/// first poll (the invocation ran past the inline deadline, e.g. because another process took
/// the CPU, and went to the slow lane; there is no async runtime here, so wait for it).
fn finish<F: Future>(future: F) -> (F::Output, bool) {
    let mut future = std::pin::pin!(future);
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    let mut moved = false;
    loop {
        match future.as_mut().poll(&mut cx) {
            std::task::Poll::Ready(output) => return (output, moved),
            std::task::Poll::Pending => {
                moved = true;
                // The slow lane runs at a lower priority on the same (pinned) CPU: let it run.
                std::thread::sleep(std::time::Duration::from_micros(100));
            }
        }
    }
}

/// Times the parts of one invocation separately. The runtime keeps the function's
/// `InstancePre` private, so this builds an equivalent one: the same engine, a linker with the
/// same host calls (`abi::add_to_linker`), the same module. The limits and epoch deadline are
/// set as an inline invocation sets them.
fn breakdown(
    args: &Args,
    engine: &FunctionEngine,
    bytes: &[u8],
    config: &Arc<Config>,
    headers: &[(HeaderName, HeaderValue)],
    client_ip: IpAddr,
    function_config: &edge_runtime::config::FunctionConfig,
) -> Result<()> {
    let mut linker = Linker::new(engine.engine());
    edge_runtime::wasm::abi::add_to_linker(&mut linker)
        .map_err(|e| anyhow!("cannot link the host calls: {e:#}"))?;
    let wasm = wat::parse_bytes(bytes).context("the module is not WebAssembly")?;
    let module = Module::new(engine.engine(), &wasm)
        .map_err(|e| anyhow!("the module does not compile: {e:#}"))?;
    let pre: InstancePre<HostState> = linker
        .instantiate_pre(&module)
        .map_err(|e| anyhow!("the module does not link: {e:#}"))?;
    let has_initialize = module.get_export("_initialize").is_some();
    let limits = &function_config.limits;
    let new_state = || {
        let mut state = HostState::new(Arc::clone(config), request(headers), client_ip, None);
        state.event = Event::ViewerRequest;
        state.limiter.limit = limits.memory;
        state
    };
    let deadline = INLINE_TICKS;
    let new_store = |state: HostState| {
        let mut store = Store::new(engine.engine(), state);
        store.limiter(|s| &mut s.limiter);
        store.set_epoch_deadline(deadline);
        store
    };
    // Stages of one invocation; each includes the ones before it.
    #[derive(Clone, Copy, PartialEq, PartialOrd)]
    enum Upto {
        Instantiate,
        Initialize,
        Call,
    }
    let run = |upto: Upto| {
        let mut store = new_store(new_state());
        let instance = pre.instantiate(&mut store).expect("instantiates");
        store.data_mut().memory = instance.get_memory(&mut store, "memory");
        if upto >= Upto::Initialize && has_initialize {
            instance
                .get_typed_func::<(), ()>(&mut store, "_initialize")
                .expect("checked at load")
                .call(&mut store, ())
                .expect("_initialize runs");
        }
        if upto >= Upto::Call {
            let result = instance
                .get_typed_func::<(), i32>(&mut store, "viewer-request")
                .expect("checked at load")
                .call(&mut store, ())
                .expect("viewer-request runs");
            black_box(result);
        }
        black_box(store.into_data());
    };
    // A single instance reused for every call: not the node's model (state would leak between
    // requests), only to separate the guest's own run time from instance setup.
    let mut reused = new_store(new_state());
    let instance = pre
        .instantiate(&mut reused)
        .map_err(|e| anyhow!("cannot instantiate: {e:#}"))?;
    reused.data_mut().memory = instance.get_memory(&mut reused, "memory");
    if has_initialize {
        instance
            .get_typed_func::<(), ()>(&mut reused, "_initialize")
            .and_then(|f| f.call(&mut reused, ()))
            .map_err(|e| anyhow!("_initialize failed: {e:#}"))?;
    }
    let entry = instance
        .get_typed_func::<(), i32>(&mut reused, "viewer-request")
        .map_err(|e| anyhow!("no viewer-request export: {e:#}"))?;

    let (w, n) = (args.warmup, args.iterations);
    let stages = [
        Samples::measure("HostState::new (incl. RequestView), drop", w, n, || {
            black_box(new_state());
        }),
        Samples::measure("  + Store::new, drop", w, n, || {
            black_box(new_store(new_state()).into_data());
        }),
        Samples::measure("  + instantiate (InstancePre, pooling)", w, n, || {
            run(Upto::Instantiate)
        }),
        Samples::measure(
            if has_initialize {
                "  + _initialize"
            } else {
                "  + _initialize (module has none)"
            },
            w,
            n,
            || run(Upto::Initialize),
        ),
        Samples::measure("  + viewer-request call (= invoke)", w, n, || {
            run(Upto::Call)
        }),
        Samples::measure("viewer-request on one reused instance", w, n, || {
            reused.data_mut().request = Tracked::new(request(headers));
            // The deadline counts from when it is set; a long-lived store needs it per call.
            reused.set_epoch_deadline(deadline);
            black_box(entry.call(&mut reused, ()).expect("viewer-request runs"));
        }),
    ];
    println!(
        "breakdown (each stage includes the ones above it; same engine, an equivalent InstancePre; module exports _initialize: {has_initialize}):"
    );
    for stage in &stages {
        stage.print();
    }
    Ok(())
}
