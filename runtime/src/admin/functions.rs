//! `/functions`: upload to DEVELOPMENT, describe, list, test a stage against a sample event,
//! publish DEVELOPMENT to LIVE, roll back, delete.

use std::time::UNIX_EPOCH;

use http::StatusCode;
use serde::Serialize;

use super::{error, json, Admin, AdminResponse};
use crate::wasm::lifecycle::{Stages, Version, VersionSource};
use crate::wasm::test_event::{self, TestEvent};
use crate::wasm::LifecycleError;

#[derive(Serialize)]
struct VersionInfo {
    hash: String,
    size: usize,
    created: u64,
    source: String,
    events: Vec<&'static str>,
}

#[derive(Serialize)]
struct FunctionInfo {
    name: String,
    development: Option<VersionInfo>,
    live: Option<VersionInfo>,
    previous: Option<VersionInfo>,
    used_by: Vec<String>,
}

fn version(v: &Option<Version>) -> Option<VersionInfo> {
    v.as_ref().map(|v| VersionInfo {
        hash: v.function.hash.clone(),
        size: v.function.size,
        created: v
            .created
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0),
        source: match &v.origin {
            VersionSource::Config(path) => format!("config: {}", path.display()),
            VersionSource::Upload => "upload".into(),
        },
        events: v.function.events.iter().map(|e| e.export_name()).collect(),
    })
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
        development: version(&stages.development),
        live: version(&stages.live),
        previous: version(&stages.previous),
        used_by,
    }
}

fn lifecycle_error(e: LifecycleError) -> AdminResponse {
    let status = match &e {
        LifecycleError::Invalid(_) => StatusCode::BAD_REQUEST,
        LifecycleError::NotFound(_) => StatusCode::NOT_FOUND,
        LifecycleError::Conflict(_) => StatusCode::CONFLICT,
        LifecycleError::Storage(_) => StatusCode::INTERNAL_SERVER_ERROR,
    };
    let message = match &e {
        LifecycleError::Storage(io) => format!("{e}: {io}"),
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

/// Applies a stage change, then swaps the node's functions; undoes the change if the node
/// cannot use the new LIVE version (e.g. it lacks an entry point a behavior needs).
fn change_live(
    admin: &Admin,
    name: &str,
    change: impl Fn(&crate::wasm::Lifecycle, &str) -> Result<Version, LifecycleError>,
    undo: impl Fn(&crate::wasm::Lifecycle, &str) -> Result<Version, LifecycleError>,
) -> AdminResponse {
    let Some(lifecycle) = admin.edge.lifecycle() else {
        return error(StatusCode::NOT_FOUND, &format!("no function {name:?}"));
    };
    if let Err(e) = change(lifecycle, name) {
        return lifecycle_error(e);
    }
    if let Err(e) = admin.edge.refresh_functions() {
        let _ = undo(lifecycle, name);
        return error(
            StatusCode::CONFLICT,
            &format!("the node cannot use this version: {e}"),
        );
    }
    let stages = lifecycle.get(name).unwrap_or_default();
    json(StatusCode::OK, &info(admin, name, &stages))
}

/// `POST /functions/{name}/publish`
pub fn publish(admin: &Admin, name: &str) -> AdminResponse {
    change_live(admin, name, |l, n| l.publish(n), |l, n| l.rollback(n))
}

/// `POST /functions/{name}/rollback`
pub fn rollback(admin: &Admin, name: &str) -> AdminResponse {
    change_live(admin, name, |l, n| l.rollback(n), |l, n| l.rollback(n))
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
