//! `/kv`: read, replace and patch the key-value stores functions read with `kv_get`. A replace
//! or patch is atomic for functions and, with a data directory, on disk before it answers; a
//! refused one changes nothing.

use std::collections::BTreeMap;

use http::StatusCode;
use percent_encoding::percent_decode_str;
use serde::Deserialize;

use super::{error, json, Admin, AdminResponse};
use crate::kv::{self, Entries, Patch};

/// What a `PATCH` body must look like, for its 400 message.
const PATCH_SHAPE: &str = "expected {\"set\": {..}, \"delete\": [..]} with string keys and values";

/// The body of `PATCH /kv/{store}`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PatchBody {
    #[serde(default)]
    set: BTreeMap<String, String>,
    #[serde(default)]
    delete: Vec<String>,
}

fn kv_error(e: kv::Error) -> AdminResponse {
    let status = match &e {
        kv::Error::UnknownStore(_) => StatusCode::NOT_FOUND,
        kv::Error::Invalid(_) => StatusCode::BAD_REQUEST,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    let message = match &e {
        kv::Error::Storage { source, .. } => format!("{e}: {source}"),
        _ => e.to_string(),
    };
    error(status, &message)
}

/// What a replace or patch answers: the store and how many keys it now has.
fn changed(store: &str, entries: &Entries) -> AdminResponse {
    json(
        StatusCode::OK,
        &serde_json::json!({ "store": store, "keys": entries.len() }),
    )
}

/// `GET /kv/{store}`: every pair, as a JSON object with sorted keys.
pub fn list(admin: &Admin, store: &str) -> AdminResponse {
    match admin.edge.kv().snapshot(store) {
        Some(entries) => {
            let sorted: BTreeMap<&str, String> = entries
                .iter()
                .map(|(k, v)| (k.as_str(), String::from_utf8_lossy(v).into_owned()))
                .collect();
            json(StatusCode::OK, &sorted)
        }
        None => kv_error(kv::Error::UnknownStore(store.to_owned())),
    }
}

/// `GET /kv/{store}/{key}`: `{"key": .., "value": ..}`. The key is the rest of the path,
/// percent-decoded, so a key with `/` (a path in a redirect table) can be written with `%2F`
/// or as is: `/kv/redirects/%2Fold` and `/kv/redirects//old` both name `/old`.
pub fn get(admin: &Admin, store: &str, path: &str) -> AdminResponse {
    let Some(raw) = path
        .trim_start_matches('/')
        .strip_prefix("kv/")
        .and_then(|p| p.strip_prefix(store))
        .and_then(|p| p.strip_prefix('/'))
    else {
        return error(StatusCode::NOT_FOUND, &format!("no admin route GET {path}"));
    };
    let Ok(key) = percent_decode_str(raw).decode_utf8() else {
        return error(
            StatusCode::BAD_REQUEST,
            &format!("key {raw:?} is not UTF-8 once percent-decoded"),
        );
    };
    let Some(entries) = admin.edge.kv().snapshot(store) else {
        return kv_error(kv::Error::UnknownStore(store.to_owned()));
    };
    match entries.get(key.as_ref()) {
        Some(value) => json(
            StatusCode::OK,
            &serde_json::json!({ "key": key, "value": String::from_utf8_lossy(value) }),
        ),
        None => error(
            StatusCode::NOT_FOUND,
            &format!("no key {key:?} in key-value store {store:?}"),
        ),
    }
}

/// `PUT /kv/{store}`: the body, a JSON object of string keys to string values, becomes the
/// store's whole content.
pub fn replace(admin: &Admin, store: &str, body: &[u8]) -> AdminResponse {
    let entries = match kv::parse_entries(body) {
        Ok(entries) => entries,
        Err(reason) => {
            // An unknown store is 404 whatever the body holds.
            if admin.edge.kv().snapshot(store).is_none() {
                return kv_error(kv::Error::UnknownStore(store.to_owned()));
            }
            return error(StatusCode::BAD_REQUEST, &reason);
        }
    };
    match admin.edge.kv().replace(store, entries) {
        Ok(entries) => changed(store, &entries),
        Err(e) => kv_error(e),
    }
}

/// `PATCH /kv/{store}` with `{"set": {"key": "value", ..}, "delete": ["key", ..]}` (either may
/// be left out): applied together, atomically.
pub fn patch(admin: &Admin, store: &str, body: &[u8]) -> AdminResponse {
    if admin.edge.kv().snapshot(store).is_none() {
        return kv_error(kv::Error::UnknownStore(store.to_owned()));
    }
    let body: PatchBody = match serde_json::from_slice(body) {
        Ok(body) => body,
        Err(e) => return error(StatusCode::BAD_REQUEST, &format!("{PATCH_SHAPE}: {e}")),
    };
    let patch = Patch {
        set: body.set,
        delete: body.delete,
    };
    match admin.edge.kv().patch(store, patch) {
        Ok(entries) => changed(store, &entries),
        Err(e) => kv_error(e),
    }
}

/// `GET /kv`: every store, with how many keys it holds.
pub fn stores(admin: &Admin) -> AdminResponse {
    let kv = admin.edge.kv();
    let stores: BTreeMap<&str, usize> = kv
        .names()
        .into_iter()
        .map(|name| (name, kv.snapshot(name).map_or(0, |e| e.len())))
        .collect();
    json(StatusCode::OK, &stores)
}
