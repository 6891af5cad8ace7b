//! `edge dev`: a node for developing functions. It runs like `serve` and polls the files it
//! depends on: the config, each `[functions.*] module`, and the sources of function crates
//! (`--crate DIR`, or the crate whose cargo output a module path names, see
//! [`FunctionCrate::for_module`]).
//!
//! Before the node starts, every such crate is built with `cargo build --release --target
//! wasm32-wasip1` (or the profile its module path names), so a crate that was never built
//! serves at once. The module paths are read from the config file before it is validated, since
//! validation needs the modules to exist.
//!
//! When a crate's sources change it is rebuilt; then, when the config or a module changed, the
//! config is reloaded the way SIGHUP does ([`node::reload`]): a module whose content changed
//! becomes the function's new LIVE version, the cache is kept, and nothing restarts. A build
//! error or a module that does not load is printed and the previous version keeps serving.
//!
//! Polling, not inotify: a handful of files checked every [`POLL_INTERVAL`] costs nothing, works
//! the same on every platform and file system, and sees editors that replace files by rename.

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use anyhow::Context as _;
use edge_runtime::Edge;

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
        let mut watch = Watch::new(source.path.clone(), explicit);
        watch.follow(module_paths(&source.path));
        if !watch.crates.is_empty() {
            function_crate::ensure_wasm_target()?;
        }
        for krate in &watch.crates {
            watch.report_build(krate, krate.build());
        }
        let config = source.load()?;
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

/// The `[functions.*] module` paths of the config file at `path`, resolved against its directory
/// as the config does, read without validating anything else; empty if the file does not parse
/// (loading it reports why).
fn module_paths(path: &Path) -> Vec<PathBuf> {
    let Some(table) = std::fs::read_to_string(path)
        .ok()
        .and_then(|text| text.parse::<toml::Table>().ok())
    else {
        return Vec::new();
    };
    let base = path.parent().unwrap_or(Path::new("."));
    table
        .get("functions")
        .and_then(|f| f.as_table())
        .into_iter()
        .flat_map(|functions| functions.values())
        .filter_map(|function| function.get("module")?.as_str())
        .map(|module| {
            if base == Path::new(".") {
                PathBuf::from(module)
            } else {
                base.join(module)
            }
        })
        .collect()
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
    /// The module files the config file names.
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

    /// Watches `modules` and the crates that build them.
    fn follow(&mut self, modules: Vec<PathBuf>) {
        self.modules = modules;
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

    /// Logs a build's outcome. A failed build leaves the module on disk, and so the serving
    /// version, as it was. A module that no `[functions.*]` entry loads is pointed out: editing
    /// that crate would change nothing the node serves.
    fn report_build(&self, krate: &FunctionCrate, outcome: anyhow::Result<PathBuf>) {
        match outcome {
            Ok(built) => {
                let built = std::fs::canonicalize(&built).unwrap_or(built);
                let loaded = self
                    .modules
                    .iter()
                    .any(|m| std::fs::canonicalize(m).is_ok_and(|m| m == built));
                if !loaded {
                    tracing::warn!(
                        package = %krate.package,
                        module = %built.display(),
                        "no [functions.*] module in the config is this crate's output; name this path to serve it"
                    );
                }
            }
            Err(error) => tracing::error!(
                package = %krate.package,
                error = format!("{error:#}"),
                "build failed; the previous version keeps serving"
            ),
        }
    }

    /// One check: when the config changed, follow the modules it now names (building crates it
    /// brings in); rebuild crates whose sources changed; then reload if the config or a module
    /// changed.
    fn poll(&mut self, source: &ConfigSource, edge: &Edge) {
        if self.seen.get(&self.config) != Some(&stamp(&self.config)) {
            self.follow(module_paths(&self.config));
            let new: Vec<FunctionCrate> = self
                .crates
                .iter()
                .filter(|c| !self.seen_sources.contains_key(&c.dir))
                .cloned()
                .collect();
            if !new.is_empty() {
                if let Err(error) = function_crate::ensure_wasm_target() {
                    tracing::error!(error = format!("{error:#}"), "cannot build function crates");
                }
            }
            for krate in new {
                self.seen_sources.insert(krate.dir.clone(), sources(&krate));
                self.report_build(&krate, krate.build());
            }
        }
        for krate in &self.crates {
            let now = sources(krate);
            let before = self.seen_sources.insert(krate.dir.clone(), now.clone());
            if before.is_some_and(|before| before != now) {
                tracing::info!(package = %krate.package, "function crate changed");
                self.report_build(krate, krate.build());
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
        // A refused config is retried when one of its files changes again.
        self.seen = now;
        node::reload(source, edge);
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
