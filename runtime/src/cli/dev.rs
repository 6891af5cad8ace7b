//! `edge dev`: a node for developing functions. It runs like `serve` and polls the files it
//! depends on: the config, each `[functions.*] module`, and the sources of function crates
//! (`--crate DIR`, or the crate whose cargo output a module path names, see
//! [`FunctionCrate::for_module`]).
//!
//! When a crate's sources change it is rebuilt for `wasm32-wasip1`; then, when the config or a
//! module changed, the config is reloaded the way SIGHUP does ([`node::reload`]): a module whose
//! content changed becomes the function's new LIVE version, the cache is kept, and nothing
//! restarts. A build error or a module that does not load is printed and the previous version
//! keeps serving.
//!
//! Polling, not inotify: a handful of files checked every [`POLL_INTERVAL`] costs nothing, works
//! the same on every platform and file system, and sees editors that replace files by rename.

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use anyhow::Context as _;
use edge_runtime::{Config, Edge};

use super::function_crate::{self, FunctionCrate};
use super::node::{self, ConfigSource};

/// How often watched files are checked: quick enough to feel immediate after saving.
pub const POLL_INTERVAL: Duration = Duration::from_millis(300);

/// Run a node and hot-swap its functions as their files change.
#[derive(clap::Args, Debug)]
pub struct Dev {
    /// The config file (TOML).
    #[arg(long, short, default_value = "edge.toml")]
    pub config: PathBuf,
    /// A function crate to rebuild when its sources change (repeatable); crates whose cargo
    /// output a `[functions.*] module` names are found without it.
    #[arg(long = "crate", value_name = "DIR")]
    pub crates: Vec<PathBuf>,
}

impl Dev {
    /// Builds the crates, starts the node and watches until Ctrl-C or SIGTERM.
    pub async fn run(self) -> anyhow::Result<()> {
        let source = ConfigSource::file(self.config);
        let explicit = self
            .crates
            .iter()
            .map(|dir| FunctionCrate::in_dir(dir))
            .collect::<anyhow::Result<Vec<_>>>()?;
        if !explicit.is_empty() {
            function_crate::ensure_wasm_target()?;
        }
        // Explicit crates first: the config names their output, which may not exist yet.
        for krate in &explicit {
            report_build(krate.build());
        }
        let config = source.load()?;
        let mut watch = Watch::new(source.path.clone(), explicit);
        watch.follow(&config);
        let detected = watch.crates[watch.explicit.len()..].to_vec();
        if !detected.is_empty() {
            function_crate::ensure_wasm_target()?;
        }
        for krate in &detected {
            report_build(krate.build());
        }
        // The config again: the builds above may have changed what its modules hold.
        let config = source.load()?;
        watch.follow(&config);
        watch.settle();
        let node = node::start(&source, config).await?;
        let edge = Arc::clone(node.edge());
        tracing::info!(
            files = watch.files().len(),
            crates = watch.crates.len(),
            "watching for changes"
        );
        std::thread::Builder::new()
            .name("edge-dev-watch".into())
            .spawn(move || loop {
                std::thread::sleep(POLL_INTERVAL);
                watch.poll(&source, &edge);
            })
            .context("cannot start the file watcher")?;
        node.shutdown_when_done().await;
        Ok(())
    }
}

/// Logs a failed build; the module on disk, and so the serving version, stays as it was.
fn report_build(outcome: anyhow::Result<()>) {
    if let Err(error) = outcome {
        tracing::error!(
            error = format!("{error:#}"),
            "build failed; the previous version keeps serving"
        );
    }
}

/// A file's inode, modification time and length; `None` when it is missing. The inode catches
/// a file replaced by rename within the file system's timestamp granularity.
type Stamp = Option<(u64, SystemTime, u64)>;

fn stamp(path: &Path) -> Stamp {
    let meta = std::fs::metadata(path).ok()?;
    Some((meta.ino(), meta.modified().ok()?, meta.len()))
}

/// What `edge dev` watches, and the stamps it last saw.
struct Watch {
    config: PathBuf,
    /// The crates given with `--crate`, watched whatever the config says.
    explicit: Vec<FunctionCrate>,
    /// The module files of the current config.
    modules: Vec<PathBuf>,
    /// Explicit crates, then those found from module paths.
    crates: Vec<FunctionCrate>,
    /// Stamps of the config and the modules.
    seen: BTreeMap<PathBuf, Stamp>,
    /// Stamps of each crate's sources, by crate directory.
    seen_sources: BTreeMap<PathBuf, BTreeMap<PathBuf, Stamp>>,
}

impl Watch {
    fn new(config: PathBuf, explicit: Vec<FunctionCrate>) -> Self {
        Watch {
            config,
            crates: explicit.clone(),
            explicit,
            modules: Vec::new(),
            seen: BTreeMap::new(),
            seen_sources: BTreeMap::new(),
        }
    }

    /// Watches the modules of `config` and the crates that build them.
    fn follow(&mut self, config: &Config) {
        self.modules = config.functions.iter().map(|f| f.module.clone()).collect();
        let mut crates = self.explicit.clone();
        for module in &self.modules {
            if let Some(krate) = crates.iter_mut().find(|c| {
                module
                    .file_stem()
                    .is_some_and(|s| s.to_string_lossy() == c.lib)
            }) {
                krate.output_at(module);
            } else if let Some(krate) = FunctionCrate::for_module(module) {
                if !crates.iter().any(|c| c.dir == krate.dir) {
                    crates.push(krate);
                }
            }
        }
        self.crates = crates;
    }

    /// The config and the module files.
    fn files(&self) -> Vec<PathBuf> {
        std::iter::once(self.config.clone())
            .chain(self.modules.iter().cloned())
            .collect()
    }

    /// Takes the current stamps as seen, without acting on them.
    fn settle(&mut self) {
        self.seen = self.files().iter().map(|f| (f.clone(), stamp(f))).collect();
        self.seen_sources = self
            .crates
            .iter()
            .map(|c| (c.dir.clone(), sources(c)))
            .collect();
    }

    /// One check: rebuild crates whose sources changed, then reload if the config or a module
    /// changed.
    fn poll(&mut self, source: &ConfigSource, edge: &Edge) {
        for krate in &self.crates {
            let now = sources(krate);
            let before = self.seen_sources.insert(krate.dir.clone(), now.clone());
            if before.is_some_and(|before| before != now) {
                tracing::info!(package = %krate.package, "function crate changed");
                report_build(krate.build());
            }
        }
        let now: BTreeMap<PathBuf, Stamp> =
            self.files().iter().map(|f| (f.clone(), stamp(f))).collect();
        let changed: Vec<String> = now
            .iter()
            .filter(|(file, stamp)| self.seen.get(*file) != Some(stamp))
            .map(|(file, _)| file.display().to_string())
            .collect();
        if changed.is_empty() {
            return;
        }
        tracing::info!(changed = changed.join(", "), "reloading");
        self.seen = now;
        if node::reload(source, edge) {
            self.follow(edge.current().config());
            // Files the new config brought in are seen as they are now; later edits count.
            for file in self.files() {
                self.seen
                    .entry(file.clone())
                    .or_insert_with(|| stamp(&file));
            }
            for krate in &self.crates {
                self.seen_sources
                    .entry(krate.dir.clone())
                    .or_insert_with(|| sources(krate));
            }
        }
    }
}

fn sources(krate: &FunctionCrate) -> BTreeMap<PathBuf, Stamp> {
    krate
        .sources()
        .into_iter()
        .map(|f| {
            let s = stamp(&f);
            (f, s)
        })
        .collect()
}
