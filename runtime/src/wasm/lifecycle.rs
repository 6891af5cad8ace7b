//! Function versions and their stages, the CloudFront Functions model: a module is uploaded to
//! DEVELOPMENT (validated at once), tested there, published to LIVE, and survives restarts in
//! the data directory. Every version that was LIVE before the current one is kept (the last
//! [`HISTORY_LEN`], with when each was LIVE), so a rollback always returns to the version that
//! was LIVE before; the config file's module is a version like any other in that history.
//!
//! On disk (`<data_dir>/functions/<name>/`): each uploaded module as `<sha256>.module`, and
//! `stages.json` naming the module of each stage and the LIVE history, with RFC 3339 times.
//! Every file is written to a temp file, synced and renamed into place, so a crash mid-upload
//! leaves the last good state.
//!
//! A LIVE change is two steps, so that a change the node refuses changes nothing:
//! [`Lifecycle::prepare`] computes it without touching any state, the node checks it can serve
//! the result, and only then [`Lifecycle::commit`] persists and applies it.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use super::engine::FunctionEngine;
use super::Error;
use super::Function;
use crate::config::{Config, FunctionConfig, FunctionLimits};
use crate::durable::write_durably;

/// How many versions that were LIVE before the current one a function keeps for rollback: a
/// bad afternoon of publishes, while each one costs a loaded module in memory.
pub const HISTORY_LEN: usize = 10;

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

impl Version {
    /// The same module from the same source: publishing it over itself changes nothing.
    fn same_as(&self, other: &Version) -> bool {
        self.function.hash == other.function.hash
            && matches!(
                (&self.origin, &other.origin),
                (VersionSource::Config(_), VersionSource::Config(_))
                    | (VersionSource::Upload, VersionSource::Upload)
            )
    }
}

/// Where a version came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VersionSource {
    /// The `module` file of the function's config entry.
    Config(PathBuf),
    /// Uploaded through the admin API.
    Upload,
}

/// A version that was LIVE, and when.
#[derive(Clone)]
pub struct PastLive {
    /// The version.
    pub version: Version,
    /// When it became LIVE.
    pub from: SystemTime,
    /// When another version replaced it.
    pub until: SystemTime,
}

/// The stages of one function.
#[derive(Clone, Default)]
pub struct Stages {
    /// DEVELOPMENT: the last upload.
    pub development: Option<Version>,
    /// LIVE: the version serving requests.
    pub live: Option<Version>,
    /// When the LIVE version became LIVE.
    pub live_since: Option<SystemTime>,
    /// The versions LIVE before the current one, newest first, at most [`HISTORY_LEN`]: a
    /// rollback makes the first one LIVE again.
    pub history: Vec<PastLive>,
    /// What the config file's module holds now, when the config has this function. An upload
    /// that is LIVE shadows it: see [`Stages::shadowed`].
    pub config: Option<Version>,
}

impl Stages {
    /// Whether the config names a module for this function but an upload is LIVE instead, so
    /// changes to the module file do not serve.
    pub fn shadowed(&self) -> bool {
        self.config.is_some()
            && self
                .live
                .as_ref()
                .is_some_and(|v| v.origin == VersionSource::Upload)
    }
}

/// A change of a function's LIVE version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LiveChange {
    /// DEVELOPMENT becomes LIVE.
    Publish,
    /// The config file's module becomes LIVE (the way back after an upload shadowed it).
    PublishConfig,
    /// The version LIVE before the current one becomes LIVE again.
    Rollback,
}

/// A LIVE change computed by [`Lifecycle::prepare`], applied by [`Lifecycle::commit`].
pub struct Transition {
    name: String,
    live: Version,
    live_since: SystemTime,
    history: Vec<PastLive>,
    /// Whether anything changes (publishing the LIVE version again does not).
    changed: bool,
    /// Every function's LIVE version as it would be after the change.
    pub all_live: BTreeMap<String, Arc<Function>>,
}

/// `stages.json`.
#[derive(Serialize, Deserialize, Default)]
struct StagesFile {
    #[serde(default)]
    development: Option<StoredVersion>,
    #[serde(default)]
    live: Option<StoredVersion>,
    #[serde(default)]
    history: Vec<StoredVersion>,
    /// The single earlier LIVE version that nodes wrote before the history existed.
    #[serde(default, skip_serializing)]
    previous: Option<StoredVersion>,
}

#[derive(Serialize, Deserialize, Clone)]
struct StoredVersion {
    hash: String,
    created: Timestamp,
    #[serde(default)]
    source: StoredSource,
    /// When it became LIVE (LIVE and history entries).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    live_from: Option<Timestamp>,
    /// When it stopped being LIVE (history entries).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    live_until: Option<Timestamp>,
}

/// Where a stored version's module is: `<hash>.module` for an upload, the config's module
/// file for a config version (restored only while the file still holds that module).
#[derive(Serialize, Deserialize, Clone, Copy, Default, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
enum StoredSource {
    #[default]
    Upload,
    Config,
}

/// A time stored as RFC 3339 (`2026-12-01T20:56:07Z`); whole seconds since the epoch, as
/// older nodes wrote, are read too.
#[derive(Clone, Copy)]
struct Timestamp(SystemTime);

impl Serialize for Timestamp {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&rfc3339(self.0))
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Seconds(u64),
            Text(String),
        }
        match Raw::deserialize(d)? {
            Raw::Seconds(s) => Ok(Timestamp(UNIX_EPOCH + Duration::from_secs(s))),
            Raw::Text(t) => humantime::parse_rfc3339(&t)
                .map(Timestamp)
                .map_err(serde::de::Error::custom),
        }
    }
}

/// `time` as RFC 3339 in UTC, to the second.
pub fn rfc3339(time: SystemTime) -> String {
    humantime::format_rfc3339_seconds(time).to_string()
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
    /// A function name the node cannot take.
    #[error("invalid function name {0:?}: use letters, digits, `-` and `_`")]
    InvalidName(String),
    /// No such function, or no version in the stage the operation needs.
    #[error("{0}")]
    NotFound(String),
    /// The operation conflicts with the node's state (e.g. deleting a function in use).
    #[error("{0}")]
    Conflict(String),
    /// The node cannot serve the version the change would make LIVE (e.g. it lacks an entry
    /// point a behavior needs).
    #[error("the node cannot use this version: {0}")]
    Unusable(#[source] Error),
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
        let now = SystemTime::now();
        for f in &config.functions {
            let loaded = engine.load_file(f)?;
            tracing::info!(function = %f.name, module = %f.module.display(), size = loaded.size, "function loaded");
            let version = Version {
                function: Arc::new(loaded),
                created: now,
                origin: VersionSource::Config(f.module.clone()),
            };
            functions.insert(
                f.name.clone(),
                Stages {
                    live: Some(version.clone()),
                    live_since: Some(now),
                    config: Some(version),
                    ..Default::default()
                },
            );
            limits.insert(f.name.clone(), f.limits.clone());
        }
        if let Some(dir) = &data_dir {
            crate::durable::remove_temp_files(dir);
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
        live_map(&self.lock())
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
            return Err(LifecycleError::InvalidName(name.to_owned()));
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

    /// Computes `change` for `name` without applying it: what would be LIVE, and the history.
    /// Publishing the version that is already LIVE is no change (it would otherwise push LIVE
    /// onto its own history and bury the version before it).
    pub fn prepare(&self, name: &str, change: LiveChange) -> Result<Transition, LifecycleError> {
        let functions = self.lock();
        let stages = functions
            .get(name)
            .ok_or_else(|| LifecycleError::NotFound(format!("no function {name:?}")))?;
        let now = SystemTime::now();
        let mut history = stages.history.clone();
        let target = match change {
            LiveChange::Publish => stages.development.clone().ok_or_else(|| {
                LifecycleError::NotFound(format!(
                    "function {name:?} has no DEVELOPMENT version to publish"
                ))
            })?,
            LiveChange::PublishConfig => stages.config.clone().ok_or_else(|| {
                LifecycleError::NotFound(format!(
                    "function {name:?} has no module in the config file"
                ))
            })?,
            LiveChange::Rollback => {
                if history.is_empty() {
                    return Err(LifecycleError::NotFound(format!(
                        "function {name:?} has no earlier LIVE version"
                    )));
                }
                history.remove(0).version
            }
        };
        let changed = change == LiveChange::Rollback
            || !stages.live.as_ref().is_some_and(|l| l.same_as(&target));
        if changed && change != LiveChange::Rollback {
            if let Some(live) = &stages.live {
                history.insert(
                    0,
                    PastLive {
                        version: live.clone(),
                        from: stages.live_since.unwrap_or(now),
                        until: now,
                    },
                );
                history.truncate(HISTORY_LEN);
            }
        }
        let (live, live_since, history) = if changed {
            (target, now, history)
        } else {
            (
                target,
                stages.live_since.unwrap_or(now),
                stages.history.clone(),
            )
        };
        let mut all_live = live_map(&functions);
        all_live.insert(name.to_owned(), Arc::clone(&live.function));
        Ok(Transition {
            name: name.to_owned(),
            live,
            live_since,
            history,
            changed,
            all_live,
        })
    }

    /// Persists and applies a prepared change. Callers serialize LIVE changes (the node's swap
    /// lock), so nothing but an upload can have happened since [`Lifecycle::prepare`]; an
    /// upload's DEVELOPMENT version is kept.
    pub fn commit(&self, transition: Transition) -> Result<Version, LifecycleError> {
        let mut functions = self.lock();
        let name = &transition.name;
        let current = functions
            .get(name)
            .ok_or_else(|| LifecycleError::NotFound(format!("no function {name:?}")))?;
        if !transition.changed {
            return Ok(transition.live);
        }
        let mut next = current.clone();
        next.live = Some(transition.live.clone());
        next.live_since = Some(transition.live_since);
        next.history = transition.history;
        self.persist_stages(name, &next)?;
        tracing::info!(function = %name, hash = %transition.live.function.hash, "new LIVE version");
        functions.insert(name.clone(), next);
        Ok(transition.live)
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
        let stored = |v: &Version, from: Option<SystemTime>, until: Option<SystemTime>| {
            StoredVersion {
                hash: v.function.hash.clone(),
                created: Timestamp(v.created),
                // A config version is not copied: the config file is its source.
                source: match v.origin {
                    VersionSource::Config(_) => StoredSource::Config,
                    VersionSource::Upload => StoredSource::Upload,
                },
                live_from: from.map(Timestamp),
                live_until: until.map(Timestamp),
            }
        };
        let file = StagesFile {
            development: stages
                .development
                .as_ref()
                .filter(|v| v.origin == VersionSource::Upload)
                .map(|v| stored(v, None, None)),
            live: stages
                .live
                .as_ref()
                .map(|v| stored(v, stages.live_since, None)),
            history: stages
                .history
                .iter()
                .map(|p| stored(&p.version, Some(p.from), Some(p.until)))
                .collect(),
            previous: None,
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
            let config_version = functions.get(&name).and_then(|s| s.config.clone());
            let load = |stored: &StoredVersion| -> Option<Version> {
                if stored.source == StoredSource::Config {
                    let Some(version) = config_version.clone() else {
                        tracing::warn!(function = %name, "ignoring a stored config version: the config has no module for this function any more");
                        return None;
                    };
                    if version.function.hash != stored.hash {
                        // The module file holds something else now: that version is gone, and
                        // rolling back to today's file would not be rolling back.
                        tracing::info!(function = %name, stored = %stored.hash, now = %version.function.hash, "dropping a config version from the history: the module file changed since");
                        return None;
                    }
                    return Some(version);
                }
                let path = dir.join(format!("{}.module", stored.hash));
                let config = FunctionConfig {
                    name: name.clone(),
                    module: path.clone(),
                    limits: self.limits(&name),
                };
                match self.engine.load_file(&config) {
                    Ok(f) => Some(Version {
                        function: Arc::new(f),
                        created: stored.created.0,
                        origin: VersionSource::Upload,
                    }),
                    Err(error) => {
                        tracing::error!(function = %name, module = %path.display(), %error, "ignoring a stored version that does not load");
                        None
                    }
                }
            };
            let stages = functions.entry(name.clone()).or_default();
            if let Some(v) = file.development.as_ref().and_then(&load) {
                stages.development = Some(v);
            }
            if let Some(stored) = &file.live {
                if let Some(v) = load(stored) {
                    stages.live = Some(v);
                    stages.live_since = stored.live_from.map(|t| t.0).or(stages.live_since);
                }
            }
            stages.history = file
                .history
                .iter()
                .chain(&file.previous)
                .filter_map(|stored| {
                    let version = load(stored)?;
                    let from = stored.live_from.map_or(version.created, |t| t.0);
                    Some(PastLive {
                        until: stored.live_until.map_or(from, |t| t.0),
                        from,
                        version,
                    })
                })
                .take(HISTORY_LEN)
                .collect();
            tracing::info!(function = %name, history = stages.history.len(), "restored stages from the data directory");
        }
    }
}

/// The LIVE version of every function in `functions`.
fn live_map(functions: &BTreeMap<String, Stages>) -> BTreeMap<String, Arc<Function>> {
    functions
        .iter()
        .filter_map(|(n, s)| {
            s.live
                .as_ref()
                .map(|v| (n.clone(), Arc::clone(&v.function)))
        })
        .collect()
}

impl Lifecycle {
    /// Prepares a reloaded config: functions new to it are loaded, and a function whose LIVE
    /// version came from its module file gets the file's current content if it changed.
    /// Uploaded LIVE versions stay, with a warning when the file holds something else: the
    /// upload shadows it until `POST /functions/NAME/publish?source=config`. Nothing changes
    /// until [`Lifecycle::apply`].
    pub fn plan_reload(&self, config: &Config) -> Result<ReloadPlan, Error> {
        let functions = self.lock();
        let mut versions = Vec::new();
        let mut config_versions = Vec::new();
        for f in &config.functions {
            let stages = functions.get(&f.name);
            let live = stages.and_then(|s| s.live.as_ref());
            if live.is_some_and(|v| v.origin == VersionSource::Upload) {
                // Not serving, so a module that does not load is no reason to refuse the reload.
                match self.engine.load_file(f) {
                    Ok(function) => {
                        let live_hash = live.map(|v| v.function.hash.as_str()).unwrap_or("");
                        if function.hash != live_hash {
                            tracing::warn!(
                                function = %f.name,
                                module = %f.module.display(),
                                "an upload through the admin API is LIVE and keeps serving, not the config's module; `edge publish {} --from-config` serves the module",
                                f.name
                            );
                        }
                        if stages
                            .and_then(|s| s.config.as_ref())
                            .is_none_or(|c| c.function.hash != function.hash)
                        {
                            config_versions.push((f.name.clone(), config_version(f, function)));
                        }
                    }
                    Err(error) => {
                        tracing::warn!(function = %f.name, %error, "the config's module does not load; an upload through the admin API is LIVE and keeps serving");
                    }
                }
                continue;
            }
            let function = self.engine.load_file(f)?;
            if live
                .is_some_and(|v| v.function.hash == function.hash && v.function.limits == f.limits)
            {
                continue;
            }
            let version = config_version(f, function);
            config_versions.push((f.name.clone(), version.clone()));
            versions.push((f.name.clone(), version));
        }
        let mut live = live_map(&functions);
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
            config_versions,
            config_names: config.functions.iter().map(|f| f.name.clone()).collect(),
            live,
            limits,
        })
    }

    /// Commits a plan: its versions become LIVE (the old ones go to the history), its limits
    /// apply to later uploads.
    pub fn apply(&self, plan: ReloadPlan) {
        self.limits
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend(plan.limits);
        let mut functions = self.lock();
        let now = SystemTime::now();
        for (name, stages) in functions.iter_mut() {
            if !plan.config_names.contains(name) {
                stages.config = None;
            }
        }
        for (name, version) in plan.config_versions {
            functions.entry(name).or_default().config = Some(version);
        }
        for (name, version) in plan.versions {
            tracing::info!(function = %name, hash = %version.function.hash, "function module changed; new LIVE version");
            let stages = functions.entry(name.clone()).or_default();
            if let Some(live) = stages.live.take() {
                stages.history.insert(
                    0,
                    PastLive {
                        version: live,
                        from: stages.live_since.unwrap_or(now),
                        until: now,
                    },
                );
                stages.history.truncate(HISTORY_LEN);
            }
            stages.live = Some(version);
            stages.live_since = Some(now);
            if let Err(LifecycleError::Storage(error)) = self.persist_stages(&name, stages) {
                tracing::error!(function = %name, %error, "cannot write the new LIVE version to the data directory; it serves until restart");
            }
        }
    }
}

fn config_version(f: &FunctionConfig, function: Function) -> Version {
    Version {
        function: Arc::new(function),
        created: SystemTime::now(),
        origin: VersionSource::Config(f.module.clone()),
    }
}

/// What a config reload would change in the lifecycle, prepared before anything changes.
pub struct ReloadPlan {
    versions: Vec<(String, Version)>,
    config_versions: Vec<(String, Version)>,
    config_names: BTreeSet<String>,
    /// Every function's LIVE version as it would be after the reload.
    pub live: BTreeMap<String, Arc<Function>>,
    limits: BTreeMap<String, FunctionLimits>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stages_files_of_older_nodes_still_read() {
        // Seconds since the epoch and one `previous`, as nodes wrote before the history.
        let old = br#"{"development": null, "live": {"hash": "b", "created": 1764619200},
                       "previous": {"hash": "a", "created": 1764615600}}"#;
        let file: StagesFile = serde_json::from_slice(old).expect("readable");
        let live = file.live.expect("live");
        assert_eq!(rfc3339(live.created.0), "2025-12-01T20:00:00Z");
        assert!(live.source == StoredSource::Upload);
        assert_eq!(file.previous.map(|p| p.hash).as_deref(), Some("a"));
    }

    #[test]
    fn times_are_written_as_rfc3339_and_read_back() {
        let stored = StoredVersion {
            hash: "h".into(),
            created: Timestamp(UNIX_EPOCH + Duration::from_secs(1_764_619_200)),
            source: StoredSource::Config,
            live_from: Some(Timestamp(UNIX_EPOCH + Duration::from_secs(1_764_619_201))),
            live_until: None,
        };
        let json = serde_json::to_value(&stored).expect("encodes");
        assert_eq!(
            json,
            serde_json::json!({"hash": "h", "created": "2025-12-01T20:00:00Z",
                               "source": "config", "live_from": "2025-12-01T20:00:01Z"})
        );
        let back: StoredVersion = serde_json::from_value(json).expect("decodes");
        assert_eq!(back.live_from.map(|t| t.0), stored.live_from.map(|t| t.0));
    }
}
