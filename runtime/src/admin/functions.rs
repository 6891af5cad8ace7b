//! `/functions`: upload to DEVELOPMENT, describe, list, test a stage against a sample event,
//! publish DEVELOPMENT to LIVE, roll back, delete.

use http::StatusCode;
use serde::Serialize;

use super::{error, json, Admin, AdminResponse};
use crate::wasm::lifecycle::{rfc3339, LiveChange, PastLive, Stages, Version, VersionSource};
use crate::wasm::test_event::{self, TestEvent};
use crate::wasm::LifecycleError;

#[derive(Serialize)]
struct VersionInfo {
    hash: String,
    size: usize,
    /// RFC 3339.
    created: String,
    source: String,
    events: Vec<&'static str>,
    /// When it became LIVE (the LIVE version and the history).
    #[serde(skip_serializing_if = "Option::is_none")]
    live_from: Option<String>,
    /// When another version replaced it (the history).
    #[serde(skip_serializing_if = "Option::is_none")]
    live_until: Option<String>,
}

#[derive(Serialize)]
struct FunctionInfo {
    name: String,
    development: Option<VersionInfo>,
    live: Option<VersionInfo>,
    /// The version a rollback makes LIVE: the first of `history`.
    previous: Option<VersionInfo>,
    /// The versions LIVE before, newest first.
    history: Vec<VersionInfo>,
    /// The config's module file for this function, if it has one.
    config_module: Option<String>,
    /// An upload is LIVE, so the config's module (and changes to it) do not serve.
    shadowed: bool,
    used_by: Vec<String>,
}

fn version(v: &Version) -> VersionInfo {
    VersionInfo {
        hash: v.function.hash.clone(),
        size: v.function.size,
        created: rfc3339(v.created),
        source: match &v.origin {
            VersionSource::Config(path) => format!("config: {}", path.display()),
            VersionSource::Upload => "upload".into(),
        },
        events: v.function.events.iter().map(|e| e.export_name()).collect(),
        live_from: None,
        live_until: None,
    }
}

fn past(p: &PastLive) -> VersionInfo {
    VersionInfo {
        live_from: Some(rfc3339(p.from)),
        live_until: Some(rfc3339(p.until)),
        ..version(&p.version)
    }
}

fn info(admin: &Admin, name: &str, stages: &Stages) -> FunctionInfo {
    let node = admin.edge.current();
    let config = node.config();
    let used_by = config
        .behaviors
        .iter()
        .filter(|b| {
            b.functions
                .iter()
                .any(|(_, i)| config.functions[*i].name == name)
        })
        .map(|b| b.path.clone())
        .collect();
    FunctionInfo {
        name: name.to_owned(),
        development: stages.development.as_ref().map(version),
        live: stages.live.as_ref().map(|v| VersionInfo {
            live_from: stages.live_since.map(rfc3339),
            ..version(v)
        }),
        previous: stages.history.first().map(past),
        history: stages.history.iter().map(past).collect(),
        config_module: stages.config.as_ref().and_then(|v| match &v.origin {
            VersionSource::Config(path) => Some(path.display().to_string()),
            VersionSource::Upload => None,
        }),
        shadowed: stages.shadowed(),
        used_by,
    }
}

fn lifecycle_error(e: LifecycleError) -> AdminResponse {
    let status = match &e {
        LifecycleError::Invalid(_) | LifecycleError::InvalidName(_) => StatusCode::BAD_REQUEST,
        LifecycleError::NotFound(_) => StatusCode::NOT_FOUND,
        LifecycleError::Conflict(_) | LifecycleError::Unusable(_) => StatusCode::CONFLICT,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    let message = match &e {
        LifecycleError::Storage(io) => format!("{e}: {io}"),
        LifecycleError::Unusable(reason) => format!("{e}: {reason}"),
        _ => e.to_string(),
    };
    error(status, &message)
}

/// `GET /functions`
pub fn list(admin: &Admin) -> AdminResponse {
    let Some(lifecycle) = admin.edge.lifecycle() else {
        return json(StatusCode::OK, &Vec::<FunctionInfo>::new());
    };
    let all: Vec<FunctionInfo> = lifecycle
        .list()
        .iter()
        .map(|(n, s)| info(admin, n, s))
        .collect();
    json(StatusCode::OK, &all)
}

/// `GET /functions/{name}`
pub fn describe(admin: &Admin, name: &str) -> AdminResponse {
    match admin.edge.lifecycle().and_then(|l| l.get(name)) {
        Some(stages) => json(StatusCode::OK, &info(admin, name, &stages)),
        None => error(StatusCode::NOT_FOUND, &format!("no function {name:?}")),
    }
}

/// `PUT /functions/{name}`: the body is a `.wasm` or `.wat` module.
pub fn upload(admin: &Admin, name: &str, module: &[u8]) -> AdminResponse {
    let Some(lifecycle) = admin.edge.lifecycle() else {
        return error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "functions are not enabled",
        );
    };
    match lifecycle.upload(name, module) {
        Ok(_) => {
            let stages = lifecycle.get(name).unwrap_or_default();
            json(StatusCode::CREATED, &info(admin, name, &stages))
        }
        Err(e) => lifecycle_error(e),
    }
}

/// `POST /functions/{name}/test?stage=development|live`: runs a stage against a JSON event.
pub fn test(admin: &Admin, name: &str, query: &str, body: &[u8]) -> AdminResponse {
    let live = query
        .split('&')
        .any(|p| p.eq_ignore_ascii_case("stage=live"));
    let Some(lifecycle) = admin.edge.lifecycle() else {
        return error(StatusCode::NOT_FOUND, &format!("no function {name:?}"));
    };
    let Some(stages) = lifecycle.get(name) else {
        return error(StatusCode::NOT_FOUND, &format!("no function {name:?}"));
    };
    let Some(version) = (if live {
        stages.live
    } else {
        stages.development
    }) else {
        return error(
            StatusCode::NOT_FOUND,
            &format!(
                "function {name:?} has no {} version",
                if live { "LIVE" } else { "DEVELOPMENT" }
            ),
        );
    };
    let event: TestEvent = match serde_json::from_slice(body) {
        Ok(event) => event,
        Err(e) => return error(StatusCode::BAD_REQUEST, &format!("invalid test event: {e}")),
    };
    let node = admin.edge.current();
    match test_event::run(
        lifecycle.engine(),
        &version.function,
        std::sync::Arc::clone(&node.config),
        std::sync::Arc::clone(admin.edge.kv()),
        &event,
    ) {
        Ok(result) => json(StatusCode::OK, &result),
        Err(e) => error(StatusCode::BAD_REQUEST, &format!("invalid test event: {e}")),
    }
}

/// Changes the LIVE version; a change the node cannot serve gets 409 and changes nothing.
fn change_live(admin: &Admin, name: &str, change: LiveChange) -> AdminResponse {
    if let Err(e) = admin.edge.change_live(name, change) {
        return lifecycle_error(e);
    }
    let stages = admin
        .edge
        .lifecycle()
        .and_then(|l| l.get(name))
        .unwrap_or_default();
    json(StatusCode::OK, &info(admin, name, &stages))
}

/// `POST /functions/{name}/publish[?source=config]`: DEVELOPMENT becomes LIVE, or with
/// `source=config` the config file's module does (the way back after an upload shadowed it).
pub fn publish(admin: &Admin, name: &str, query: &str) -> AdminResponse {
    let change = match query_value(query, "source") {
        None | Some("development") => LiveChange::Publish,
        Some("config") => LiveChange::PublishConfig,
        Some(other) => {
            return error(
                StatusCode::BAD_REQUEST,
                &format!("unknown source {other:?}: expected `development` or `config`"),
            )
        }
    };
    change_live(admin, name, change)
}

/// `POST /functions/{name}/rollback`: the version LIVE before the current one is LIVE again.
pub fn rollback(admin: &Admin, name: &str) -> AdminResponse {
    change_live(admin, name, LiveChange::Rollback)
}

/// The value of `key` in a query string, if given.
fn query_value<'q>(query: &'q str, key: &str) -> Option<&'q str> {
    query
        .split('&')
        .find_map(|pair| pair.strip_prefix(key)?.strip_prefix('='))
}

/// `DELETE /functions/{name}`
pub fn delete(admin: &Admin, name: &str) -> AdminResponse {
    let Some(lifecycle) = admin.edge.lifecycle() else {
        return error(StatusCode::NOT_FOUND, &format!("no function {name:?}"));
    };
    let node = admin.edge.current();
    match lifecycle.delete(name, node.config()) {
        Ok(()) => json(StatusCode::OK, &serde_json::json!({ "deleted": name })),
        Err(e) => lifecycle_error(e),
    }
}
