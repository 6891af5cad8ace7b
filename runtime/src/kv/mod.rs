//! Key-value stores for functions, the CloudFront KeyValueStore / Fastly config store model:
//! named maps of string keys to string values (a redirect table, feature flags) that every
//! event reads with the `kv_get` host call (`sdk/ABI.md`), and that operators replace or patch
//! through the admin API (`admin::kv`) while the node runs.
//!
//! Each store is one `ArcSwap` of an immutable map. A reader loads the current map without a
//! lock; a replace or patch builds the next map aside and swaps it in whole, so a reader sees
//! the old map or the new one, never a mix. Writers are serialized by one lock. With a data
//! directory, each new map is written to `<data_dir>/kv/<name>.json` (temp file, fsync, rename)
//! before it is swapped in, so a change the admin API acknowledged survives a restart.
//!
//! At start a store holds the pairs of its config file, unless the data directory has a copy:
//! that copy is the latest admin state and wins. A `PUT` of the file's content resets a store.
//! Stores are fixed at start: a config reload that adds or removes `[kv.NAME]` tables needs a
//! restart.

pub mod entries;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use bytes::Bytes;

use crate::config::Config;
use crate::durable::write_durably;
pub use entries::{parse_entries, to_json, Entries};

/// A change to one store, applied atomically by [`KvStores::patch`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Patch {
    /// Keys to set, with their new values.
    pub set: BTreeMap<String, String>,
    /// Keys to remove; a key that is not there is no error.
    pub delete: Vec<String>,
}

/// A key-value store operation that failed; the store is unchanged.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// No `[kv.NAME]` table with this name.
    #[error("no key-value store {0:?}")]
    UnknownStore(String),
    /// A replacement or patch that is not acceptable.
    #[error("{0}")]
    Invalid(String),
    /// Writing the new content to the data directory failed.
    #[error("cannot write key-value store {store:?} to {}", path.display())]
    Storage {
        /// The store.
        store: String,
        /// The file being written.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A copy in the data directory cannot be read. The node refuses to start rather than
    /// serve older data from the config file: fix or delete the copy.
    #[error("cannot load key-value store {store:?} from {}: {reason}", path.display())]
    Stored {
        /// The store.
        store: String,
        /// The copy.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
}

/// Every store of the node, shared by all versions of it.
#[derive(Default)]
pub struct KvStores {
    /// The current pairs of each store, by name.
    stores: HashMap<String, ArcSwap<Entries>>,
    /// Where changes persist (`<data_dir>/kv/`); `None` keeps them in memory only.
    dir: Option<PathBuf>,
    /// Held by a replace or patch from reading the current map to swapping in the next, so
    /// two patches cannot lose each other's changes, and the file matches memory.
    writes: Mutex<()>,
}

impl KvStores {
    /// The config's stores, each from its data directory copy if there is one, else from the
    /// pairs its file held when the config was loaded.
    pub fn load(config: &Config) -> Result<Self, Error> {
        let dir = config
            .admin
            .as_ref()
            .and_then(|a| a.data_dir.as_ref())
            .map(|d| d.join("kv"));
        let mut stores = HashMap::with_capacity(config.kv.len());
        for store in &config.kv {
            let stored = dir.as_ref().map(|d| store_file(d, &store.name));
            let entries = match stored.as_deref().filter(|p| p.exists()) {
                Some(path) => {
                    let stored = |reason: String| Error::Stored {
                        store: store.name.clone(),
                        path: path.to_owned(),
                        reason,
                    };
                    let json = std::fs::read(path).map_err(|e| stored(e.to_string()))?;
                    let entries = Arc::new(parse_entries(&json).map_err(stored)?);
                    tracing::info!(store = %store.name, keys = entries.len(), file = %path.display(), "key-value store restored from the data directory");
                    entries
                }
                None => {
                    tracing::info!(store = %store.name, keys = store.entries.len(), file = %store.file.display(), "key-value store loaded");
                    Arc::clone(&store.entries)
                }
            };
            stores.insert(store.name.clone(), ArcSwap::new(entries));
        }
        Ok(KvStores {
            stores,
            dir,
            writes: Mutex::new(()),
        })
    }

    /// Whether there is no store at all.
    pub fn is_empty(&self) -> bool {
        self.stores.is_empty()
    }

    /// The store names, sorted.
    pub fn names(&self) -> Vec<&str> {
        let mut names: Vec<&str> = self.stores.keys().map(String::as_str).collect();
        names.sort_unstable();
        names
    }

    /// The current pairs of `store`, fixed: a later change does not alter them.
    pub fn snapshot(&self, store: &str) -> Option<Arc<Entries>> {
        self.stores.get(store).map(ArcSwap::load_full)
    }

    /// The current value of `key` in `store`.
    pub fn get(&self, store: &str, key: &str) -> Option<Bytes> {
        self.stores.get(store)?.load().get(key).cloned()
    }

    /// Replaces every pair of `store` with `entries`; returns the new content.
    pub fn replace(&self, store: &str, entries: Entries) -> Result<Arc<Entries>, Error> {
        self.write(store, |_| Ok(entries))
    }

    /// Sets and deletes keys of `store` in one step; returns the new content. A key both set
    /// and deleted is refused.
    pub fn patch(&self, store: &str, patch: Patch) -> Result<Arc<Entries>, Error> {
        if let Some(key) = patch.delete.iter().find(|k| patch.set.contains_key(*k)) {
            return Err(Error::Invalid(format!(
                "key {key:?} is both set and deleted"
            )));
        }
        self.write(store, |current| {
            let mut next = current.clone();
            for key in &patch.delete {
                next.remove(key);
            }
            for (key, value) in patch.set {
                next.insert(key, Bytes::from(value));
            }
            Ok(next)
        })
    }

    /// Builds the next content from the current one, persists it, then swaps it in.
    fn write(
        &self,
        store: &str,
        next: impl FnOnce(&Entries) -> Result<Entries, Error>,
    ) -> Result<Arc<Entries>, Error> {
        let slot = self
            .stores
            .get(store)
            .ok_or_else(|| Error::UnknownStore(store.to_owned()))?;
        let _writes = self.writes.lock().unwrap_or_else(|p| p.into_inner());
        let next = Arc::new(next(&slot.load())?);
        if let Some(dir) = &self.dir {
            let path = store_file(dir, store);
            let storage = |source| Error::Storage {
                store: store.to_owned(),
                path: path.clone(),
                source,
            };
            std::fs::create_dir_all(dir).map_err(storage)?;
            write_durably(&path, &to_json(&next)).map_err(storage)?;
        }
        slot.store(Arc::clone(&next));
        Ok(next)
    }
}

/// `<dir>/<name>.json`; config validation keeps store names to letters, digits, `-` and `_`.
fn store_file(dir: &Path, name: &str) -> PathBuf {
    dir.join(format!("{name}.json"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stores(data_dir: Option<&Path>) -> KvStores {
        let mut stores = HashMap::new();
        let entries = parse_entries(br#"{"a": "1", "b": "2"}"#).expect("valid");
        stores.insert("flags".to_owned(), ArcSwap::from_pointee(entries));
        KvStores {
            stores,
            dir: data_dir.map(|d| d.join("kv")),
            writes: Mutex::new(()),
        }
    }

    #[test]
    fn a_snapshot_outlives_a_patch() {
        let kv = stores(None);
        let before = kv.snapshot("flags").expect("store");
        let patch = Patch {
            set: [("a".to_owned(), "10".to_owned())].into(),
            delete: vec!["b".into(), "absent".into()],
        };
        let after = kv.patch("flags", patch).expect("patch");
        assert_eq!(before.get("a").map(|v| &v[..]), Some(&b"1"[..]));
        assert_eq!(before.len(), 2);
        assert_eq!(after.len(), 1);
        assert_eq!(kv.get("flags", "a"), Some(Bytes::from("10")));
        assert_eq!(kv.get("flags", "b"), None);
        assert_eq!(kv.get("nope", "a"), None);
    }

    #[test]
    fn refused_changes_leave_the_store_alone() {
        let kv = stores(None);
        let patch = Patch {
            set: [("a".to_owned(), "x".to_owned())].into(),
            delete: vec!["a".into()],
        };
        assert!(matches!(kv.patch("flags", patch), Err(Error::Invalid(_))));
        assert!(matches!(
            kv.replace("nope", Entries::new()),
            Err(Error::UnknownStore(_))
        ));
        assert_eq!(kv.get("flags", "a"), Some(Bytes::from("1")));
    }

    #[test]
    fn changes_are_written_to_the_data_dir() {
        let dir = tempfile::tempdir().expect("temp dir");
        let kv = stores(Some(dir.path()));
        kv.replace("flags", parse_entries(br#"{"z": "26"}"#).expect("valid"))
            .expect("replace");
        let written = std::fs::read(dir.path().join("kv").join("flags.json")).expect("written");
        let back = parse_entries(&written).expect("readable");
        assert_eq!(back.get("z"), Some(&Bytes::from("26")));
        assert_eq!(back.len(), 1);
    }
}
