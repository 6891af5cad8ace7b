//! `/invalidations`: paths whose cached objects must no longer be served, exact or with a
//! trailing `*`. Objects are removed at once, so an invalidation is complete when the call
//! returns; its id and record stay readable.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use http::StatusCode;
use serde::{Deserialize, Serialize};

use super::{error, json, Admin, AdminResponse};

/// Invalidations kept for status queries; older ones are forgotten past this count.
const KEPT: usize = 1000;

/// Submitted invalidations.
#[derive(Default)]
pub struct Invalidations {
    next: AtomicU64,
    records: Mutex<BTreeMap<u64, Record>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Submit {
    paths: Vec<String>,
}

#[derive(Serialize, Clone)]
struct Record {
    id: String,
    status: &'static str,
    paths: Vec<String>,
    created: u64,
    objects_removed: usize,
    /// What each `[tier]` parent said when the invalidation was sent on to it.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    parents: Vec<crate::tier::invalidation::ParentReport>,
}

/// Checks invalidation paths: at least one, each starting with `/`, `*` only at the end.
pub fn check_paths(paths: &[String]) -> Result<(), String> {
    if paths.is_empty() {
        return Err("`paths` is empty".to_owned());
    }
    if let Some(bad) = paths
        .iter()
        .find(|p| !p.starts_with('/') || p[..p.len() - 1].contains('*'))
    {
        return Err(format!(
            "invalid path {bad:?}: paths start with `/` and may end with one `*`"
        ));
    }
    Ok(())
}

/// Removes every cached object whose path matches one of `paths`; returns how many entries went.
pub fn remove_paths(store: &crate::cache::Store, paths: &[String]) -> usize {
    let before = store.len();
    // Keys are `host` + path (+ query and other parts); match on the path of any host.
    store.remove_matching(|host_path| {
        let path = host_path.find('/').map_or("", |i| &host_path[i..]);
        paths.iter().any(|p| matches(p, path))
    });
    before.saturating_sub(store.len())
}

/// Whether a cached object's path matches an invalidation path (`/a/b` or `/a/*`).
pub fn matches(pattern: &str, path: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => path.starts_with(prefix),
        None => path == pattern,
    }
}

/// `POST /invalidations` with `{"paths": ["/index.html", "/img/*"]}`.
pub fn create(admin: &Admin, body: &[u8]) -> AdminResponse {
    let submit: Submit = match serde_json::from_slice(body) {
        Ok(s) => s,
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                &format!("expected {{\"paths\": [..]}}: {e}"),
            )
        }
    };
    if let Err(message) = check_paths(&submit.paths) {
        return error(StatusCode::BAD_REQUEST, &message);
    }
    let node = admin.edge.current();
    let objects_removed = remove_paths(node.cache(), &submit.paths);
    // The parents hold the same objects for this node's viewers; they go too. This runs on a
    // blocking thread (the admin API's), which may wait on the runtime.
    let parents = if node.tier.has_parents() {
        tokio::runtime::Handle::current().block_on(node.tier.invalidate_parents(&submit.paths))
    } else {
        Vec::new()
    };
    let id = admin.invalidations.next.fetch_add(1, Ordering::Relaxed) + 1;
    let record = Record {
        id: format!("I{id}"),
        status: "Completed",
        paths: submit.paths,
        created: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0),
        objects_removed,
        parents,
    };
    let mut records = admin
        .invalidations
        .records
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    records.insert(id, record.clone());
    while records.len() > KEPT {
        records.pop_first();
    }
    json(StatusCode::CREATED, &record)
}

/// `GET /invalidations/{id}`
pub fn status(admin: &Admin, id: &str) -> AdminResponse {
    let found = id
        .strip_prefix('I')
        .and_then(|n| n.parse::<u64>().ok())
        .and_then(|n| {
            admin
                .invalidations
                .records
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .get(&n)
                .cloned()
        });
    match found {
        Some(record) => json(StatusCode::OK, &record),
        None => error(StatusCode::NOT_FOUND, &format!("no invalidation {id:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::matches;

    #[test]
    fn exact_and_wildcard() {
        assert!(matches("/a.css", "/a.css"));
        assert!(!matches("/a.css", "/a.css2"));
        assert!(matches("/img/*", "/img/x/y.png"));
        assert!(!matches("/img/*", "/images/x"));
        assert!(matches("/*", "/anything"));
    }
}
