//! Running a node from a config file, for `serve`, `demo` and `dev`: start it, announce its
//! addresses, stop on Ctrl-C or SIGTERM, and reload the config on SIGHUP.
//!
//! A reload reads and validates the file first and loads any changed function modules; only
//! then does the node swap to the new version ([`Edge::reload`]: same cache, same listeners).
//! A config that fails is logged, naming the file, line and key, and the running one stays.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context as _;
use edge_runtime::config::{self, Config};
use edge_runtime::{Edge, RunningNode};
use tokio::signal::unix::{signal, Signal, SignalKind};

/// Where a node's config comes from, and what the command changes in it after each load
/// (the demo serves its `app` origin in-process).
#[derive(Clone)]
pub struct ConfigSource {
    /// The config file.
    pub path: PathBuf,
    adjust: Option<Adjust>,
}

/// A change a command makes to every config it loads.
type Adjust = Arc<dyn Fn(&mut Config) + Send + Sync>;

impl ConfigSource {
    /// The file as it is.
    pub fn file(path: PathBuf) -> Self {
        ConfigSource { path, adjust: None }
    }

    /// The file, changed by `adjust` after every load.
    pub fn adjusted(path: PathBuf, adjust: impl Fn(&mut Config) + Send + Sync + 'static) -> Self {
        ConfigSource {
            path,
            adjust: Some(Arc::new(adjust)),
        }
    }

    /// Reads and validates the file.
    pub fn load(&self) -> Result<Config, config::Error> {
        let mut config = Config::load(&self.path)?;
        if let Some(adjust) = &self.adjust {
            adjust(&mut config);
        }
        Ok(config)
    }
}

/// Runs a node on `config` (loaded from `source`) until Ctrl-C or SIGTERM.
pub async fn serve(source: ConfigSource, config: Config) -> anyhow::Result<()> {
    start(&source, config).await?.shutdown_when_done().await;
    Ok(())
}

/// Starts a node on `config` (loaded from `source`), logs its addresses (`edge node listening
/// addr=.. admin=.. https=..`) and reloads `source` on SIGHUP. It stops on Ctrl-C or SIGTERM.
pub async fn start(source: &ConfigSource, config: Config) -> anyhow::Result<RunningNode> {
    // Registered before the node announces itself: whoever waits for the announcement and then
    // sends SIGHUP gets a reload, never SIGHUP's default action, which ends the process.
    let hangup = signal(SignalKind::hangup()).context("cannot handle SIGHUP")?;
    let node = edge_runtime::start(config, shutdown_signal()).await?;
    // Absent fields (no admin API, no HTTPS listener) are left out of the line.
    tracing::info!(
        addr = %node.addr(),
        admin = node.admin_addr().map(tracing::field::display),
        https = node.tls_addr().map(tracing::field::display),
        "edge node listening"
    );
    tokio::spawn(reload_on_hangup(
        hangup,
        source.clone(),
        Arc::clone(node.edge()),
    ));
    Ok(node)
}

async fn reload_on_hangup(mut hangup: Signal, source: ConfigSource, edge: Arc<Edge>) {
    while hangup.recv().await.is_some() {
        tracing::info!(config = %source.path.display(), "SIGHUP: reloading the config");
        let (source, edge) = (source.clone(), Arc::clone(&edge));
        // Loading compiles changed modules: keep that off the runtime's worker threads.
        if let Err(error) = tokio::task::spawn_blocking(move || reload(&source, &edge)).await {
            tracing::error!(%error, "config reload did not finish");
        }
    }
}

/// Reloads the config from `source` into `edge`, logging the outcome; `false` when the
/// config or one of its modules was refused and the node kept its current version.
pub fn reload(source: &ConfigSource, edge: &Edge) -> bool {
    let outcome = source
        .load()
        .map_err(anyhow::Error::from)
        .and_then(|config| {
            let restart = restart_only_changes(edge.current().config(), &config);
            edge.reload(config)?;
            Ok(restart)
        });
    match outcome {
        Ok(restart) => {
            tracing::info!(config = %source.path.display(), "config reloaded");
            if !restart.is_empty() {
                tracing::warn!(
                    settings = restart.join(", "),
                    "changed settings take effect only at restart"
                );
            }
            true
        }
        Err(error) => {
            tracing::error!(
                config = %source.path.display(),
                error = format!("{error:#}"),
                "config not reloaded; the node keeps its current config"
            );
            false
        }
    }
}

/// Settings a reload cannot apply, because they belong to the listeners and the cache, which
/// outlive versions.
fn restart_only_changes(old: &Config, new: &Config) -> Vec<&'static str> {
    let mut changed = Vec::new();
    if old.server.listen != new.server.listen {
        changed.push("server.listen");
    }
    if old.server.tls.as_ref().map(|t| t.listen) != new.server.tls.as_ref().map(|t| t.listen) {
        changed.push("server.tls_listen");
    }
    if old.server.compile_cache != new.server.compile_cache {
        changed.push("server.compile_cache");
    }
    if old.cache.max_size != new.cache.max_size
        || old.cache.max_object_size != new.cache.max_object_size
    {
        changed.push("cache");
    }
    let admin = |c: &Config| {
        c.admin.as_ref().map(|a| {
            (
                a.listen,
                a.token.clone(),
                a.data_dir.clone(),
                a.max_upload_size,
            )
        })
    };
    if admin(old) != admin(new) {
        changed.push("admin");
    }
    changed
}

/// Resolves on Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    let term = async {
        match signal(SignalKind::terminate()) {
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
