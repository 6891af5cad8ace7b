//! Invalidation across the tier: an invalidation accepted at a node is sent on to each of its
//! parents at [`INVALIDATION_PATH`](super::INVALIDATION_PATH) on their viewer listener,
//! authenticated with the tier token; a parent applies it and sends it on to its own parents.
//! The viewer listener is used because it is the address edges already know (`parents`), and
//! the token (not a network boundary) is what guards it.

use bytes::Bytes;
use http::header::{CONTENT_LENGTH, CONTENT_TYPE};
use http::{HeaderValue, Method, Request, Response, StatusCode, Uri};
use http_body_util::{BodyExt, Limited};
use serde::{Deserialize, Serialize};

use super::{Tier, INVALIDATION_PATH, TIER_TOKEN};
use crate::admin::invalidation::{check_paths, remove_paths};
use crate::body::EdgeBody;
use crate::Node;

/// Largest invalidation body a parent reads, as the admin API allows.
const MAX_BODY: usize = 1024 * 1024;
/// How long a parent has to apply an invalidation (a cache sweep, then its own parents).
const PARENT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// What one parent said to an invalidation, as the admin response reports it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ParentReport {
    /// The parent, as `http://host:port`.
    pub parent: String,
    /// `Completed`, or why not.
    pub result: String,
    /// Objects the parent removed (its own parents' not counted).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub objects_removed: Option<usize>,
    /// What the parent's parents said, if it has any.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub parents: Vec<ParentReport>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Submit {
    paths: Vec<String>,
}

#[derive(Serialize, Deserialize)]
struct Applied {
    objects_removed: usize,
    #[serde(default)]
    parents: Vec<ParentReport>,
}

impl Tier {
    /// Sends `paths` to every parent, one after another (a handful, each bounded by
    /// a timeout), and reports each one's result; empty without parents. A parent that fails is
    /// reported, not retried: the operator sees which.
    pub async fn invalidate_parents(&self, paths: &[String]) -> Vec<ParentReport> {
        let Some(token) = &self.token else {
            return Vec::new();
        };
        let body = Bytes::from(
            serde_json::to_vec(&serde_json::json!({ "paths": paths }))
                .expect("a list of strings serializes"),
        );
        let mut reports = Vec::with_capacity(self.parents.len());
        for parent in &self.parents {
            let body = body.clone();
            let report = async {
                let uri: Result<Uri, _> = format!("{}{INVALIDATION_PATH}", parent.name).parse();
                let report = |result: String| ParentReport {
                    parent: parent.name.clone(),
                    result,
                    objects_removed: None,
                    parents: Vec::new(),
                };
                let Ok(uri) = uri else {
                    return report("not a URL".to_owned());
                };
                let mut request = Request::new(EdgeBody::full(body));
                *request.method_mut() = Method::POST;
                *request.uri_mut() = uri;
                request
                    .headers_mut()
                    .insert(TIER_TOKEN.clone(), token.clone());
                request
                    .headers_mut()
                    .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
                let sent = tokio::time::timeout(PARENT_TIMEOUT, async {
                    let response = self
                        .client
                        .request(request)
                        .await
                        .map_err(|e| e.to_string())?;
                    let status = response.status();
                    let bytes = response
                        .into_body()
                        .collect()
                        .await
                        .map_err(|e| e.to_string())?
                        .to_bytes();
                    Ok::<_, String>((status, bytes))
                })
                .await;
                match sent {
                    Err(_) => report(format!("no answer within {PARENT_TIMEOUT:?}")),
                    Ok(Err(e)) => report(format!("request failed: {e}")),
                    Ok(Ok((status, bytes))) if status == StatusCode::CREATED => {
                        match serde_json::from_slice::<Applied>(&bytes) {
                            Ok(applied) => ParentReport {
                                parent: parent.name.clone(),
                                result: "Completed".to_owned(),
                                objects_removed: Some(applied.objects_removed),
                                parents: applied.parents,
                            },
                            Err(_) => report("answered 201 with an unreadable body".to_owned()),
                        }
                    }
                    Ok(Ok((status, _))) => report(format!("answered {}", status.as_u16())),
                }
            };
            reports.push(report.await);
        }
        reports
    }
}

/// Serves `POST` [`INVALIDATION_PATH`](super::INVALIDATION_PATH) from an edge: checks the
/// token, removes the objects, sends the invalidation on to this node's parents, and answers
/// 201 with what was removed.
pub async fn serve(node: &Node, request: Request<EdgeBody>) -> Response<EdgeBody> {
    if !node.tier.authenticates(request.headers()) {
        tracing::warn!("tier invalidation refused: missing or wrong tier token");
        return answer(
            StatusCode::FORBIDDEN,
            "{\"error\":\"missing or wrong tier token\"}".into(),
            "refused",
        );
    }
    if request.method() != Method::POST {
        return answer(
            StatusCode::METHOD_NOT_ALLOWED,
            "{\"error\":\"POST only\"}".into(),
            "viewer",
        );
    }
    let body = match Limited::new(request.into_body(), MAX_BODY).collect().await {
        Ok(body) => body.to_bytes(),
        Err(_) => {
            return answer(
                StatusCode::BAD_REQUEST,
                "{\"error\":\"unreadable body\"}".into(),
                "viewer",
            )
        }
    };
    let paths = match serde_json::from_slice::<Submit>(&body) {
        Ok(submit) => submit.paths,
        Err(_) => {
            return answer(
                StatusCode::BAD_REQUEST,
                "{\"error\":\"expected {\\\"paths\\\": [..]}\"}".into(),
                "viewer",
            )
        }
    };
    if let Err(message) = check_paths(&paths) {
        let body = serde_json::json!({ "error": message }).to_string();
        return answer(StatusCode::BAD_REQUEST, body, "viewer");
    }
    let objects_removed = remove_paths(&node.store, &paths);
    tracing::info!(?paths, objects_removed, "invalidation from an edge applied");
    let parents = node.tier.invalidate_parents(&paths).await;
    let applied = Applied {
        objects_removed,
        parents,
    };
    let mut response = Response::new(EdgeBody::full(
        serde_json::to_vec(&applied).expect("plain data serializes"),
    ));
    *response.status_mut() = StatusCode::CREATED;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

fn answer(status: StatusCode, body: String, side: &'static str) -> Response<EdgeBody> {
    let length = body.len();
    let mut response = Response::new(EdgeBody::full(body));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    headers.insert(CONTENT_LENGTH, HeaderValue::from(length));
    headers.insert(super::TIER_ERROR.clone(), HeaderValue::from_static(side));
    response
}
