//! `edge`: the command line. Loads a config and runs a node (`serve`, `dev`), checks a config
//! (`check`), runs the self-contained demo (`demo`), drives a running node through its admin API
//! (`upload`, `test`, `publish`, `rollback`, `list`, `describe`, `delete`, `kv`, `invalidate`),
//! or runs a module with no node (`test-function`). The commands live in [`cli`]; this file
//! parses and dispatches.

mod cli;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use edge_runtime::config::{Config, OriginKind, Target};
use edge_runtime::wasm::{FunctionEngine, Registry};

use cli::node::ConfigSource;

/// mimalloc rather than the system allocator: a request allocates and frees dozens of small
/// blocks, and a cache holds many objects; both were cheaper with it (bench/README.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// A caching CDN edge node that runs WebAssembly edge functions.
#[derive(Parser)]
#[command(name = "edge", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a node with a config file (SIGHUP reloads the config).
    Serve {
        /// The config file (TOML).
        #[arg(long, short, default_value = "edge.toml")]
        config: PathBuf,
    },
    /// Validate a config file and exit.
    Check {
        /// The config file (TOML).
        #[arg(long, short, default_value = "edge.toml")]
        config: PathBuf,
    },
    /// Run a node and hot-swap its functions when their files (or crates) change.
    Dev(cli::dev::Dev),
    /// Run the demo: the repo's demo/edge.toml, with its dynamic origin `app` served in-process.
    Demo {
        /// The demo config.
        #[arg(long, short, default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/../demo/edge.toml"))]
        config: PathBuf,
        /// Listen here instead of the config's `server.listen`.
        #[arg(long)]
        listen: Option<std::net::SocketAddr>,
    },
    #[command(flatten)]
    Admin(cli::admin::AdminCommand),
    /// Run a module against a sample event with no node, and print what it did.
    TestFunction(cli::test_function::TestFunction),
    /// Create a function crate: SDK dependency, build settings, a handler and its test.
    New(cli::new_crate::New),
}

fn main() -> ExitCode {
    let mut filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // rustls warns for every viewer that sends an IP address as SNI (wrk, h2load, curl to an
    // IP): a line per connection about the viewer's input, not the node. Unless asked for.
    if !std::env::var("RUST_LOG").is_ok_and(|v| v.contains("rustls")) {
        filter = filter.add_directive("rustls=error".parse().expect("a valid directive"));
    }
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let cli = Cli::parse();
    // With one CPU to run on (a pinned process, a one-core container) a multi-thread runtime
    // has one worker anyway, and the current-thread scheduler does the same work for less.
    let one_cpu = std::thread::available_parallelism().is_ok_and(|n| n.get() == 1);
    let mut builder = if one_cpu {
        tokio::runtime::Builder::new_current_thread()
    } else {
        tokio::runtime::Builder::new_multi_thread()
    };
    let runtime = match builder.enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli.command)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Loads every function of `config` as `edge serve` does (read, size limit, compile,
/// validation against ABI v1, memory limit, attachment to behaviors), without the compile cache
/// or the admin API's stored uploads; returns how many there are.
fn check_functions(config: &Config) -> anyhow::Result<usize> {
    if config.functions.is_empty() {
        return Ok(0);
    }
    let engine = std::sync::Arc::new(FunctionEngine::new(
        edge_runtime::wasm::engine::pool_memory(config),
        None,
    )?);
    let mut live = std::collections::BTreeMap::new();
    for function in &config.functions {
        let loaded = engine.load_file(function)?;
        live.insert(function.name.clone(), std::sync::Arc::new(loaded));
    }
    Registry::build(config, engine, &live)?;
    Ok(live.len())
}

async fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Serve { config } => {
            let source = ConfigSource::file(config);
            let config = source.load()?;
            cli::node::serve(source, config).await
        }
        Command::Check { config } => {
            let parsed = Config::load(&config)?;
            let functions = check_functions(&parsed)?;
            println!(
                "{}: ok ({} origins, {} behaviors, {functions} functions)",
                config.display(),
                parsed.origins.len(),
                parsed.behaviors.len()
            );
            Ok(())
        }
        Command::Dev(dev) => dev.run().await,
        Command::Demo { config, listen } => {
            cli::function_crate::build_demo_functions()?;
            let mut apps = Vec::new();
            for name in ["app-1", "app-2"] {
                let addr = edge_runtime::demo::start_demo_app(name)
                    .await
                    .context("starting the demo app")?;
                apps.push(Target {
                    scheme: http::uri::Scheme::HTTP,
                    authority: addr.to_string().parse()?,
                });
            }
            // Made once: a reload keeps presenting the same certificate.
            let tls = edge_runtime::demo::self_signed_tls(
                listen.unwrap_or(Config::load(&config)?.server.listen),
            )
            .context("making the demo's self-signed certificate")?;
            // Applied at every load, so a reload (SIGHUP) keeps serving the in-process apps.
            let source = ConfigSource::adjusted(config, move |config| {
                if let Some(listen) = listen {
                    config.server.listen = listen;
                }
                if config.server.tls.is_none() {
                    config.server.tls = Some(tls.clone());
                }
                if let Some(app) = config.origins.iter_mut().find(|o| o.name == "app") {
                    if let OriginKind::Http { targets, .. } = &mut app.kind {
                        targets.clone_from(&apps);
                    }
                }
            });
            let config = source.load()?;
            anyhow::ensure!(
                config.origins.iter().any(|o| o.name == "app"),
                "the demo config has no origin named \"app\" to serve in-process"
            );
            cli::node::serve(source, config).await
        }
        Command::Admin(command) => command.run().await,
        // Off the async workers: WASI output (a print, a panic message) blocks on the runtime.
        Command::TestFunction(test) => tokio::task::spawn_blocking(move || test.run()).await?,
        Command::New(new) => new.run(),
    }
}
