//! The node and its versions. A [`Node`] is one immutable version: config, origins and the
//! functions attached to behaviors. [`Edge`] holds the current version and swaps in a new one
//! when the config is reloaded or a function is published; each request runs on the version
//! it started with, so a swap drops nothing. The cache and request collapsing outlive versions.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;

use crate::cache::{Coalescer, Store};
use crate::config::Config;
use crate::error::StartError;
use crate::kv::KvStores;
use crate::metrics::Metrics;
use crate::origin::Origin;
use crate::tier::Tier;
use crate::tls::CertResolver;
use crate::wasm::lifecycle::{self, LiveChange};
use crate::wasm::{self, Function, FunctionEngine, Lifecycle, LifecycleError, Registry};

/// One version of the node: what a request needs, fixed for its duration. Cloning shares every
/// part (a background task keeps the version it started with).
#[derive(Clone)]
pub struct Node {
    /// The validated configuration.
    pub(crate) config: Arc<Config>,
    /// One origin per `config.origins` entry, same order.
    pub(crate) origins: Arc<[Origin]>,
    /// The object cache (shared by every version).
    pub(crate) store: Arc<Store>,
    /// Misses in flight, for request collapsing (shared by every version).
    pub(crate) coalescer: Arc<Coalescer>,
    /// Functions attached to behaviors; `None` when no behavior has any.
    pub(crate) functions: Option<Arc<Registry>>,
    /// The key-value stores functions read (shared by every version).
    pub(crate) kv: Arc<KvStores>,
    /// Counters and histograms (shared by every version).
    pub(crate) metrics: Arc<Metrics>,
    /// Parents and the tier token (`[tier]`); rebuilt when the config changes.
    pub(crate) tier: Arc<Tier>,
    next_request_id: Arc<AtomicU64>,
}

impl Node {
    /// The configuration this version runs with.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The object cache.
    pub fn cache(&self) -> &Store {
        &self.store
    }

    /// The functions attached to behaviors, if any.
    pub fn functions(&self) -> Option<&Registry> {
        self.functions.as_deref()
    }

    /// The node's metrics.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    pub(crate) fn next_request_id(&self) -> u64 {
        self.next_request_id.fetch_add(1, Ordering::Relaxed)
    }
}

/// A running node: the current version, and what persists across versions.
pub struct Edge {
    current: ArcSwap<Node>,
    /// Function stages; `None` when neither the config nor the admin API uses functions.
    lifecycle: Option<Lifecycle>,
    /// Serializes swaps so two publishes cannot interleave their reads and writes.
    swap: Mutex<()>,
    /// The key-value stores, loaded at start; every version shares them.
    kv: Arc<KvStores>,
    /// The certificate the HTTPS listener presents, when `tls_listen` is set; a reload swaps it.
    certificates: Option<Arc<CertResolver>>,
}

impl Edge {
    /// Builds the first version from `config`: origins, an empty cache, the functions (from
    /// their module files and the data directory).
    pub fn new(config: Config) -> Result<Self, StartError> {
        let lifecycle = if config.functions.is_empty() && config.admin.is_none() {
            None
        } else {
            let max_memory = config
                .functions
                .iter()
                .map(|f| f.limits.memory)
                .max()
                .unwrap_or(0)
                .max(crate::config::DEFAULT_FUNCTION_MEMORY as usize);
            let engine = Arc::new(FunctionEngine::new(
                max_memory,
                config.server.compile_cache.clone(),
            )?);
            let data_dir = config.admin.as_ref().and_then(|a| a.data_dir.clone());
            Some(Lifecycle::load(&config, engine, data_dir)?)
        };
        let store = Arc::new(Store::new(
            config.cache.max_size,
            config.cache.max_object_size,
        ));
        let origins: Arc<[Origin]> = config.origins.iter().map(Origin::new).collect();
        let kv = Arc::new(KvStores::load(&config)?);
        let certificates = config
            .server
            .tls
            .as_ref()
            .map(|tls| Arc::new(CertResolver::new(Arc::clone(&tls.certified))));
        let node = Node {
            tier: Arc::new(Tier::new(&config)),
            functions: registry(
                &config,
                lifecycle.as_ref(),
                &lifecycle.as_ref().map(Lifecycle::live).unwrap_or_default(),
            )?,
            config: Arc::new(config),
            origins,
            store,
            coalescer: Arc::default(),
            kv: Arc::clone(&kv),
            metrics: Arc::default(),
            next_request_id: Arc::new(AtomicU64::new(1)),
        };
        Ok(Edge {
            current: ArcSwap::from_pointee(node),
            lifecycle,
            swap: Mutex::new(()),
            kv,
            certificates,
        })
    }

    /// The current version.
    pub fn current(&self) -> Arc<Node> {
        self.current.load_full()
    }

    /// The certificate the HTTPS listener presents, when it is configured.
    pub fn certificates(&self) -> Option<&Arc<CertResolver>> {
        self.certificates.as_ref()
    }

    /// The key-value stores, for the admin API.
    pub fn kv(&self) -> &Arc<KvStores> {
        &self.kv
    }

    /// Function stages, when functions are in use.
    pub fn lifecycle(&self) -> Option<&Lifecycle> {
        self.lifecycle.as_ref()
    }

    /// Changes the LIVE version of function `name` and swaps the node to it, all or nothing:
    /// a change the node cannot serve (a behavior needs an entry point the version lacks)
    /// leaves the stages, the data directory and the serving version as they were.
    pub fn change_live(
        &self,
        name: &str,
        change: LiveChange,
    ) -> Result<lifecycle::Version, LifecycleError> {
        let _swap = self.swap.lock().unwrap_or_else(|p| p.into_inner());
        let lifecycle = self
            .lifecycle
            .as_ref()
            .ok_or_else(|| LifecycleError::NotFound(format!("no function {name:?}")))?;
        let transition = lifecycle.prepare(name, change)?;
        let current = self.current.load_full();
        let functions = registry(&current.config, Some(lifecycle), &transition.all_live)
            .map_err(LifecycleError::Unusable)?;
        let version = lifecycle.commit(transition)?;
        self.current.store(Arc::new(current.with(
            Arc::clone(&current.config),
            Arc::clone(&current.origins),
            functions,
        )));
        Ok(version)
    }

    /// Swaps in a new config (validated by the caller): new origins and attachments, the same
    /// cache, function modules whose files changed. All or nothing: if any module fails to load
    /// or a behavior needs an entry point a module lacks, the node keeps what it has.
    /// The viewer certificate is swapped too. `server.listen`, `server.tls_listen`, `[cache]`
    /// sizes, `[admin]` and the set of `[kv.*]` stores apply at restart.
    pub fn reload(&self, config: Config) -> Result<(), StartError> {
        let _swap = self.swap.lock().unwrap_or_else(|p| p.into_inner());
        let current = self.current.load_full();
        let plan = match &self.lifecycle {
            Some(lifecycle) => Some(lifecycle.plan_reload(&config)?),
            None if config.functions.is_empty() => None,
            None => {
                return Err(StartError::Function(wasm::Error::Engine(
                    "functions were added to a node started without any; restart it".into(),
                )))
            }
        };
        let live = plan.as_ref().map(|p| p.live.clone()).unwrap_or_default();
        let functions = registry(&config, self.lifecycle.as_ref(), &live)?;
        if let (Some(lifecycle), Some(plan)) = (&self.lifecycle, plan) {
            lifecycle.apply(plan);
        }
        let stores: Vec<&str> = config.kv.iter().map(|s| s.name.as_str()).collect();
        if stores != self.kv.names() {
            tracing::warn!(
                config = ?stores,
                running = ?self.kv.names(),
                "key-value stores were added to or removed from the config: restart the node to apply"
            );
        }
        // The files were loaded again with the config: new handshakes get the pair from now on,
        // open connections keep the session they have.
        if let (Some(certificates), Some(tls)) = (&self.certificates, &config.server.tls) {
            certificates.rotate(Arc::clone(&tls.certified));
            tracing::info!(cert = %tls.cert.display(), "viewer certificate loaded");
        }
        let origins = config.origins.iter().map(Origin::new).collect();
        self.current
            .store(Arc::new(current.with(Arc::new(config), origins, functions)));
        Ok(())
    }
}

impl Node {
    /// A new version sharing this one's cache, collapsing, KV stores, metrics and request ids.
    fn with(
        &self,
        config: Arc<Config>,
        origins: Arc<[Origin]>,
        functions: Option<Arc<Registry>>,
    ) -> Node {
        // Parent health survives a function publish; a new config gets a new tier.
        let tier = if Arc::ptr_eq(&config, &self.config) {
            Arc::clone(&self.tier)
        } else {
            Arc::new(Tier::new(&config))
        };
        Node {
            config,
            origins,
            functions,
            tier,
            store: Arc::clone(&self.store),
            coalescer: Arc::clone(&self.coalescer),
            kv: Arc::clone(&self.kv),
            metrics: Arc::clone(&self.metrics),
            next_request_id: Arc::clone(&self.next_request_id),
        }
    }
}

/// The attachments for `config`, or `None` when no behavior has a function.
fn registry(
    config: &Config,
    lifecycle: Option<&Lifecycle>,
    live: &BTreeMap<String, Arc<Function>>,
) -> Result<Option<Arc<Registry>>, wasm::Error> {
    if config.behaviors.iter().all(|b| b.functions.is_empty()) {
        return Ok(None);
    }
    let lifecycle = lifecycle.expect("a config with functions has a lifecycle");
    Ok(Some(Arc::new(Registry::build(
        config,
        Arc::clone(lifecycle.engine()),
        live,
    )?)))
}

/// The file in the data directory where a running node says where it listens.
pub const ADDRESS_FILE: &str = "addresses.json";

/// Where a running node listens, as written to [`ADDRESS_FILE`] in its data directory: the
/// CLI on the same machine reads it to find the admin API of a node whose config says port 0.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct NodeAddresses {
    /// The node's process id.
    pub pid: u32,
    /// The viewer listener.
    pub listen: std::net::SocketAddr,
    /// The admin API, if enabled.
    pub admin: Option<std::net::SocketAddr>,
}

impl NodeAddresses {
    /// Reads `<data_dir>/addresses.json`.
    pub fn read(data_dir: &std::path::Path) -> std::io::Result<Self> {
        let bytes = std::fs::read(data_dir.join(ADDRESS_FILE))?;
        serde_json::from_slice(&bytes).map_err(std::io::Error::other)
    }
}

/// [`NodeAddresses`] written durably once the listeners are bound, removed when the node
/// stops cleanly (on drop). A node killed with kill -9 leaves it; the next start replaces it.
pub(crate) struct AddressFile {
    path: std::path::PathBuf,
    written: Vec<u8>,
}

impl AddressFile {
    /// Writes the file; a failure is logged, not fatal: the log line has the addresses too.
    pub(crate) fn write(data_dir: &std::path::Path, addresses: &NodeAddresses) -> Option<Self> {
        let path = data_dir.join(ADDRESS_FILE);
        let written = serde_json::to_vec_pretty(addresses).ok()?;
        let outcome = std::fs::create_dir_all(data_dir)
            .and_then(|()| crate::durable::write_durably(&path, &written));
        match outcome {
            Ok(()) => Some(AddressFile { path, written }),
            Err(error) => {
                tracing::warn!(file = %path.display(), %error, "cannot write the node's addresses");
                None
            }
        }
    }
}

impl Drop for AddressFile {
    fn drop(&mut self) {
        // Only our own: another node may have started on this data directory since.
        if std::fs::read(&self.path).is_ok_and(|b| b == self.written) {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}
