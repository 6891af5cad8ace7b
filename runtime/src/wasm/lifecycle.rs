//! Function versions and their stages, the CloudFront Functions model: a module is uploaded to
//! DEVELOPMENT (validated at once), tested there, published to LIVE (the previous LIVE is kept
//! for rollback), and survives restarts in the data directory.
//!
//! On disk (`<data_dir>/functions/<name>/`): each uploaded module as `<sha256>.module`, and
//! `stages.json` naming the module of each stage. Every file is written to a temp file, synced
//! and renamed into place, so a crash mid-upload leaves the last good state.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use super::engine::FunctionEngine;
use super::registry::Function;
use super::Error;
use crate::config::{Config, FunctionConfig, FunctionLimits};

/// A stage of a function.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Stage {
    /// Uploaded, testable, not serving.
    Development,
    /// Serving requests.
    Live,
}

/// One loaded version of a function.
#[derive(Clone)]
pub struct Version {
    /// The loaded module.
    pub function: Arc<Function>,
    /// When it was uploaded (or loaded from the config).
    pub created: SystemTime,
    /// Where it came from: the config's module file, or an upload.
    pub origin: VersionSource,
}

/// Where a version came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VersionSource {
    /// The `module` file of the function's config entry.
    Config(PathBuf),
    /// Uploaded through the admin API.
    Upload,
}

/// The stages of one function.
#[derive(Clone, Default)]
pub struct Stages {
    /// DEVELOPMENT.
    pub development: Option<Version>,
    /// LIVE.
    pub live: Option<Version>,
    /// The LIVE before the last publish, for rollback.
    pub previous: Option<Version>,
}

#[derive(Serialize, Deserialize, Default)]
struct StagesFile {
    development: Option<StoredVersion>,
    live: Option<StoredVersion>,
    previous: Option<StoredVersion>,
}

#[derive(Serialize, Deserialize, Clone)]
struct StoredVersion {
    hash: String,
    created: u64,
}

/// Every function's stages, and where they persist.
pub struct Lifecycle {
    engine: Arc<FunctionEngine>,
    data_dir: Option<PathBuf>,
    functions: Mutex<BTreeMap<String, Stages>>,
    limits: Mutex<BTreeMap<String, FunctionLimits>>,
}

/// A lifecycle operation that failed; the previous state is unchanged.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LifecycleError {
    /// The module was refused (compile, imports, exports, size).
    #[error(transparent)]
    Invalid(#[from] Error),
    /// No such function, or no version in the stage the operation needs.
    #[error("{0}")]
    NotFound(String),
    /// The operation conflicts with the node's state (e.g. deleting a function in use).
    #[error("{0}")]
    Conflict(String),
    /// Persisting to the data directory failed.
    #[error("cannot write to the data directory")]
    Storage(#[source] std::io::Error),
}

impl Lifecycle {
    /// Loads the config's functions as their LIVE versions, then the stages persisted in
    /// `data_dir` over them. A persisted module that no longer loads is logged and skipped.
    pub fn load(
        config: &Config,
        engine: Arc<FunctionEngine>,
        data_dir: Option<PathBuf>,
    ) -> Result<Self, Error> {
        let mut functions = BTreeMap::new();
        let mut limits = BTreeMap::new();
        for f in &config.functions {
            let loaded = engine.load_file(f)?;
            tracing::info!(function = %f.name, module = %f.module.display(), size = loaded.size, "function loaded");
            let version = Version {
                function: Arc::new(loaded),
                created: SystemTime::now(),
                origin: VersionSource::Config(f.module.clone()),
            };
            functions.insert(
                f.name.clone(),
                Stages {
                    live: Some(version),
                    ..Default::default()
                },
            );
            limits.insert(f.name.clone(), f.limits.clone());
        }
        let lifecycle = Lifecycle {
            engine,
            data_dir,
            functions: Mutex::new(functions),
            limits: Mutex::new(limits),
        };
        lifecycle.restore();
        Ok(lifecycle)
    }

    /// The engine functions are loaded into.
    pub fn engine(&self) -> &Arc<FunctionEngine> {
        &self.engine
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Stages>> {
        self.functions
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// A snapshot of every function's stages.
    pub fn list(&self) -> BTreeMap<String, Stages> {
        self.lock().clone()
    }

    /// One function's stages.
    pub fn get(&self, name: &str) -> Option<Stages> {
        self.lock().get(name).cloned()
    }

    /// The LIVE version of every function.
    pub fn live(&self) -> BTreeMap<String, Arc<Function>> {
        self.lock()
            .iter()
            .filter_map(|(n, s)| {
                s.live
                    .as_ref()
                    .map(|v| (n.clone(), Arc::clone(&v.function)))
            })
            .collect()
    }

    fn limits(&self, name: &str) -> FunctionLimits {
        self.limits
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(name)
            .cloned()
            .unwrap_or_default()
    }

    /// Validates `module` and makes it the DEVELOPMENT version of `name`.
    pub fn upload(&self, name: &str, module: &[u8]) -> Result<Version, LifecycleError> {
        if name.is_empty()
            || !name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err(LifecycleError::Conflict(format!(
                "invalid function name {name:?}: use letters, digits, `-` and `_`"
            )));
        }
        let config = FunctionConfig {
            name: name.to_owned(),
            module: PathBuf::from("<upload>"),
            limits: self.limits(name),
        };
        let function = Arc::new(self.engine.load(&config, module)?);
        let version = Version {
            function,
            created: SystemTime::now(),
            origin: VersionSource::Upload,
        };
        let mut functions = self.lock();
        let mut stages = functions.get(name).cloned().unwrap_or_default();
        stages.development = Some(version.clone());
        self.persist_module(name, &version.function.hash, module)?;
        self.persist_stages(name, &stages)?;
        functions.insert(name.to_owned(), stages);
        Ok(version)
    }

    /// DEVELOPMENT becomes LIVE; the old LIVE is kept for rollback.
    pub fn publish(&self, name: &str) -> Result<Version, LifecycleError> {
        self.change(name, |stages| {
            let development = stages.development.clone().ok_or_else(|| {
                LifecycleError::NotFound(format!(
                    "function {name:?} has no DEVELOPMENT version to publish"
                ))
            })?;
            stages.previous = stages.live.take();
            stages.live = Some(development.clone());
            Ok(development)
        })
    }

    /// The previous LIVE becomes LIVE again (the current LIVE becomes the previous one).
    pub fn rollback(&self, name: &str) -> Result<Version, LifecycleError> {
        self.change(name, |stages| {
            let previous = stages.previous.take().ok_or_else(|| {
                LifecycleError::NotFound(format!("function {name:?} has no previous LIVE version"))
            })?;
            stages.previous = stages.live.take();
            stages.live = Some(previous.clone());
            Ok(previous)
        })
    }

    /// Removes a function that no behavior uses.
    pub fn delete(&self, name: &str, config: &Config) -> Result<(), LifecycleError> {
        let users: Vec<String> = config
            .behaviors
            .iter()
            .enumerate()
            .filter(|(_, b)| {
                b.functions
                    .iter()
                    .any(|(_, i)| config.functions[*i].name == name)
            })
            .map(|(i, b)| format!("behaviors[{i}] ({})", b.path))
            .collect();
        if !users.is_empty() {
            return Err(LifecycleError::Conflict(format!(
                "function {name:?} is used by {}",
                users.join(", ")
            )));
        }
        let mut functions = self.lock();
        if functions.remove(name).is_none() {
            return Err(LifecycleError::NotFound(format!("no function {name:?}")));
        }
        if let Some(dir) = self.function_dir(name) {
            if let Err(error) = std::fs::remove_dir_all(&dir) {
                if error.kind() != std::io::ErrorKind::NotFound {
                    return Err(LifecycleError::Storage(error));
                }
            }
        }
        Ok(())
    }

    fn change(
        &self,
        name: &str,
        f: impl FnOnce(&mut Stages) -> Result<Version, LifecycleError>,
    ) -> Result<Version, LifecycleError> {
        let mut functions = self.lock();
        let current = functions
            .get(name)
            .ok_or_else(|| LifecycleError::NotFound(format!("no function {name:?}")))?;
        let mut next = current.clone();
        let version = f(&mut next)?;
        self.persist_stages(name, &next)?;
        functions.insert(name.to_owned(), next);
        Ok(version)
    }

    fn function_dir(&self, name: &str) -> Option<PathBuf> {
        self.data_dir
            .as_ref()
            .map(|d| d.join("functions").join(name))
    }

    fn persist_module(&self, name: &str, hash: &str, module: &[u8]) -> Result<(), LifecycleError> {
        let Some(dir) = self.function_dir(name) else {
            return Ok(());
        };
        std::fs::create_dir_all(&dir).map_err(LifecycleError::Storage)?;
        write_durably(&dir.join(format!("{hash}.module")), module).map_err(LifecycleError::Storage)
    }

    fn persist_stages(&self, name: &str, stages: &Stages) -> Result<(), LifecycleError> {
        let Some(dir) = self.function_dir(name) else {
            return Ok(());
        };
        std::fs::create_dir_all(&dir).map_err(LifecycleError::Storage)?;
        // Versions from the config are not stored: the config file is their source.
        let stored = |v: &Option<Version>| {
            v.as_ref()
                .filter(|v| v.origin == VersionSource::Upload)
                .map(|v| StoredVersion {
                    hash: v.function.hash.clone(),
                    created: v
                        .created
                        .duration_since(UNIX_EPOCH)
                        .map(|d| d.as_secs())
                        .unwrap_or(0),
                })
        };
        let file = StagesFile {
            development: stored(&stages.development),
            live: stored(&stages.live),
            previous: stored(&stages.previous),
        };
        let json =
            serde_json::to_vec_pretty(&file).map_err(|e| LifecycleError::Storage(e.into()))?;
        write_durably(&dir.join("stages.json"), &json).map_err(LifecycleError::Storage)
    }

    /// Loads persisted stages over the config's versions.
    fn restore(&self) {
        let Some(root) = self.data_dir.as_ref().map(|d| d.join("functions")) else {
            return;
        };
        let Ok(entries) = std::fs::read_dir(&root) else {
            return;
        };
        let mut functions = self.lock();
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let dir = entry.path();
            let file: StagesFile = match std::fs::read(dir.join("stages.json"))
                .map_err(|e| e.to_string())
                .and_then(|b| serde_json::from_slice(&b).map_err(|e| e.to_string()))
            {
                Ok(file) => file,
                Err(error) => {
                    tracing::error!(function = %name, %error, "ignoring unreadable stages.json");
                    continue;
                }
            };
            let load = |stored: &Option<StoredVersion>| -> Option<Version> {
                let stored = stored.as_ref()?;
                let path = dir.join(format!("{}.module", stored.hash));
                let config = FunctionConfig {
                    name: name.clone(),
                    module: path.clone(),
                    limits: self.limits(&name),
                };
                match self.engine.load_file(&config) {
                    Ok(f) => Some(Version {
                        function: Arc::new(f),
                        created: UNIX_EPOCH + std::time::Duration::from_secs(stored.created),
                        origin: VersionSource::Upload,
                    }),
                    Err(error) => {
                        tracing::error!(function = %name, module = %path.display(), %error, "ignoring a stored version that does not load");
                        None
                    }
                }
            };
            let stages = functions.entry(name.clone()).or_default();
            if let Some(v) = load(&file.development) {
                stages.development = Some(v);
            }
            if let Some(v) = load(&file.live) {
                stages.live = Some(v);
            }
            if let Some(v) = load(&file.previous) {
                stages.previous = Some(v);
            }
            tracing::info!(function = %name, "restored stages from the data directory");
        }
    }
}

/// Temp file, fsync, rename, fsync the directory: after a crash the file is either the old
/// one or the new one, never half written.
pub fn write_durably(path: &Path, data: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension(format!("tmp-{}", std::process::id()));
    {
        let mut file = std::fs::File::create(&tmp)?;
        file.write_all(data)?;
        file.sync_all()?;
    }
    std::fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent() {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

impl Lifecycle {
    /// Prepares a reloaded config: functions new to it are loaded, and a function whose LIVE
    /// version came from its module file gets the file's current content if it changed.
    /// Uploaded LIVE versions stay. Nothing changes until [`Lifecycle::apply`].
    pub fn plan_reload(&self, config: &Config) -> Result<ReloadPlan, Error> {
        let functions = self.lock();
        let mut versions = Vec::new();
        for f in &config.functions {
            let live = functions.get(&f.name).and_then(|s| s.live.as_ref());
            if live.is_some_and(|v| v.origin == VersionSource::Upload) {
                continue;
            }
            let function = self.engine.load_file(f)?;
            if live
                .is_some_and(|v| v.function.hash == function.hash && v.function.limits == f.limits)
            {
                continue;
            }
            versions.push((
                f.name.clone(),
                Version {
                    function: Arc::new(function),
                    created: SystemTime::now(),
                    origin: VersionSource::Config(f.module.clone()),
                },
            ));
        }
        let mut live: BTreeMap<String, Arc<Function>> = functions
            .iter()
            .filter_map(|(n, s)| {
                s.live
                    .as_ref()
                    .map(|v| (n.clone(), Arc::clone(&v.function)))
            })
            .collect();
        for (name, version) in &versions {
            live.insert(name.clone(), Arc::clone(&version.function));
        }
        let limits = config
            .functions
            .iter()
            .map(|f| (f.name.clone(), f.limits.clone()))
            .collect();
        Ok(ReloadPlan {
            versions,
            live,
            limits,
        })
    }

    /// Commits a plan: its versions become LIVE (the old ones previous), its limits apply to
    /// later uploads.
    pub fn apply(&self, plan: ReloadPlan) {
        self.limits
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend(plan.limits);
        let mut functions = self.lock();
        for (name, version) in plan.versions {
            tracing::info!(function = %name, hash = %version.function.hash, "function module changed; new LIVE version");
            let stages = functions.entry(name).or_default();
            stages.previous = stages.live.take();
            stages.live = Some(version);
        }
    }
}

/// What a config reload would change in the lifecycle, prepared before anything changes.
pub struct ReloadPlan {
    versions: Vec<(String, Version)>,
    /// Every function's LIVE version as it would be after the reload.
    pub live: BTreeMap<String, Arc<Function>>,
    limits: BTreeMap<String, FunctionLimits>,
}
