//! `edge`: the command line. Loads a config and runs a node (`serve`), checks a config
//! (`check`), or runs the self-contained demo (`demo`).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use edge_runtime::config::{Config, OriginKind, Target};

/// A caching CDN edge node that runs WebAssembly edge functions.
#[derive(Parser)]
#[command(name = "edge", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a node with a config file.
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
    /// Run the demo: the repo's demo/edge.toml, with its dynamic origin `app` served in-process.
    Demo {
        /// The demo config.
        #[arg(long, short, default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/../demo/edge.toml"))]
        config: PathBuf,
        /// Listen here instead of the config's `server.listen`.
        #[arg(long)]
        listen: Option<std::net::SocketAddr>,
    },
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
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

async fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Serve { config } => serve(Config::load(&config)?).await,
        Command::Check { config } => {
            let parsed = Config::load(&config)?;
            println!(
                "{}: ok ({} origins, {} behaviors)",
                config.display(),
                parsed.origins.len(),
                parsed.behaviors.len()
            );
            Ok(())
        }
        Command::Demo { config, listen } => {
            build_demo_functions()?;
            let mut config = Config::load(&config)?;
            if let Some(listen) = listen {
                config.server.listen = listen;
            }
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
            let app = config
                .origins
                .iter_mut()
                .find(|o| o.name == "app")
                .context("the demo config has no origin named \"app\" to serve in-process")?;
            if let OriginKind::Http { targets, .. } = &mut app.kind {
                *targets = apps;
            }
            serve(config).await
        }
    }
}

async fn serve(config: Config) -> anyhow::Result<()> {
    let node = edge_runtime::start(config, shutdown_signal()).await?;
    tracing::info!(addr = %node.addr(), "edge node listening");
    node.shutdown_when_done().await;
    Ok(())
}

/// Builds the demo's edge functions (`functions/router`, `functions/headers`) for wasm32-wasip1
/// with the workspace's `wasm` profile, installing the target if rustup lacks it.
fn build_demo_functions() -> anyhow::Result<()> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let installed = std::process::Command::new("rustup")
        .args(["target", "list", "--installed"])
        .output();
    if installed.is_ok_and(|o| !String::from_utf8_lossy(&o.stdout).contains("wasm32-wasip1")) {
        tracing::info!("installing the wasm32-wasip1 target");
        let status = std::process::Command::new("rustup")
            .args(["target", "add", "wasm32-wasip1"])
            .status()?;
        anyhow::ensure!(status.success(), "`rustup target add wasm32-wasip1` failed");
    }
    tracing::info!("building the demo functions (router, headers)");
    let status = std::process::Command::new(cargo)
        .current_dir(&root)
        .args([
            "build",
            "--profile",
            "wasm",
            "--target",
            "wasm32-wasip1",
            "-p",
            "router",
            "-p",
            "headers",
        ])
        .status()
        .context("cannot run cargo to build the demo functions")?;
    anyhow::ensure!(
        status.success(),
        "building the demo functions failed (see above)"
    );
    Ok(())
}

/// Resolves on Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = term => {}
    }
}
