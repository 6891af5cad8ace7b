//! The flow's side of edge functions: moves the request or response into an invocation's
//! input, runs the behavior's function for the event, and puts the changes back. Phases call
//! this only when the behavior has a function for their event; otherwise no Wasm code is
//! touched.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Instant;

use bytes::BytesMut;
use edge_sdk::abi::Event;
use http::header::CONTENT_LENGTH;
use http::request::Parts;
use http::{Request, Response};
use http_body_util::BodyExt;

use super::{CachePhase, RequestCtx};
use crate::body::EdgeBody;
use crate::error::Error;
use crate::flow::cache_store::DEFAULT_BODY_IDLE_TIMEOUT;
use crate::wasm::invoke::{self, Decision, Input, Invoked};
use crate::wasm::{BodyView, Function, RequestView, ResponseView};
use crate::Node;

/// What a request-event function decided.
#[derive(Debug)]
pub enum HookOutcome {
    /// Go on with this (possibly changed) request.
    Continue(Request<EdgeBody>),
    /// Answer the viewer with `response`; the cache and origin are skipped. `request` is the
    /// request as the function left it, for the viewer-response event.
    Respond {
        /// The request.
        request: Request<EdgeBody>,
        /// The generated response.
        response: Response<EdgeBody>,
    },
}

/// The function attached to the request's behavior for `event`, if any.
pub fn attached(node: &Node, ctx: &RequestCtx, event: Event) -> Option<Arc<Function>> {
    let registry = node.functions.as_ref()?;
    // A tier request's viewer-facing functions ran at the edge that sent it.
    if ctx.tier.is_some() && matches!(event, Event::ViewerRequest | Event::ViewerResponse) {
        return None;
    }
    registry.behavior(ctx.behavior?).get(event).cloned()
}

/// An invocation begun: replayed to its end, or a fresh run to await. A phase awaits only
/// the second, as
///
/// ```ignore
/// let run = match functions::start_request_event(node, ctx, event, &function, request) {
///     Started::Replayed(outcome) => return outcome,
///     Started::Fresh(run) => run,
/// };
/// run.await
/// ```
///
/// Everything up to the run is a plain function and the run's future is boxed, so that a
/// phase's future holds its arguments and the box, nothing more. Held in it, the invocation's
/// input, view and result made each phase's future 1.7-2.5 KB, and so every future awaiting
/// one, on every request, function or not. A replay stays synchronous and allocates nothing
/// for this.
pub enum Started<'a, T> {
    /// Replayed; the outcome is applied.
    Replayed(Result<T, Error>),
    /// Run fresh; the outcome is applied when the run ends.
    Fresh(Pin<Box<dyn Future<Output = Result<T, Error>> + Send + 'a>>),
}

/// The event and function of an invocation.
type Invocation<'a> = (Event, &'a Arc<Function>);

/// Begins a request event (viewer-request, origin-request) on `request`.
pub fn start_request_event<'a>(
    node: &'a Node,
    ctx: &'a mut RequestCtx,
    event: Event,
    function: &'a Arc<Function>,
    mut request: Request<EdgeBody>,
) -> Started<'a, HookOutcome> {
    // Taken out of the request and put back, rather than splitting it into its parts and
    // rebuilding it: each is a move of 200-odd bytes on every invocation.
    let view = RequestView {
        method: request.method().clone(),
        uri: std::mem::take(request.uri_mut()),
        headers: std::mem::take(request.headers_mut()),
    };
    let before = ctx
        .debug
        .is_some()
        .then(|| (view.method.clone(), view.uri.clone(), view.headers.clone()));
    let invocation = (event, function);
    begin(
        node,
        ctx,
        invocation,
        view,
        None,
        move |node, ctx, started, invoked| {
            request_outcome(node, ctx, invocation, started, request, before, invoked)
        },
    )
}

/// Replays the invocation of `function` at `event` on these views, or begins its fresh run;
/// `outcome` applies what it did.
fn begin<'a, T>(
    node: &'a Node,
    ctx: &'a mut RequestCtx,
    (event, function): Invocation<'a>,
    request: RequestView,
    response: Option<ResponseView>,
    outcome: impl FnOnce(&Node, &mut RequestCtx, Instant, Invoked) -> Result<T, Error> + Send + 'a,
) -> Started<'a, T> {
    let registry = node
        .functions
        .as_ref()
        .expect("a function is attached, so the registry exists");
    let input = Input {
        config: Arc::clone(&node.config),
        request,
        client_ip: ctx.viewer.ip(),
        response,
        kv: Some(Arc::clone(&node.kv)),
    };
    let started = Instant::now();
    match invoke::replay(function, event, ctx.id, input) {
        Ok(invoked) => Started::Replayed(outcome(node, ctx, started, invoked)),
        Err(fresh) => Started::Fresh(Box::pin(async move {
            let invoked = invoke::run_fresh(&registry.engine, function, event, ctx.id, fresh).await;
            outcome(node, ctx, started, invoked)
        })),
    }
}

/// What a request event's invocation decided, applied to `request` and `ctx`.
fn request_outcome(
    node: &Node,
    ctx: &mut RequestCtx,
    (event, function): Invocation<'_>,
    started: Instant,
    mut request: Request<EdgeBody>,
    before: Option<(http::Method, http::Uri, http::HeaderMap)>,
    invoked: Invoked,
) -> Result<HookOutcome, Error> {
    count(node, ctx, function, event, started, &invoked);
    let decision = invoked.result?;
    if let (Some(debug), Some(before)) = (&mut ctx.debug, before) {
        let mut changes = super::debug::request_changes(
            &before,
            (
                &invoked.request.method,
                &invoked.request.uri,
                &invoked.request.headers,
            ),
        );
        if let Some(origin) = invoked.origin {
            changes.push(format!("origin {}", node.config.origins[origin].name));
        }
        if let Some(key) = &invoked.cache_key {
            changes.push(format!("cache key set to {key}"));
        }
        changes.extend(
            invoked
                .cache_key_parts
                .iter()
                .map(|p| format!("cache key +{p}")),
        );
        if let Decision::Respond(r) = &decision {
            changes.push(format!("responded {}", r.status.as_u16()));
        }
        debug.function_changed(event, &function.name, invoked.replay, &changes);
    }
    *request.method_mut() = invoked.request.method;
    *request.uri_mut() = invoked.request.uri;
    *request.headers_mut() = invoked.request.headers;
    if invoked.origin.is_some() {
        ctx.origin_override = invoked.origin;
    }
    if event == Event::ViewerRequest {
        ctx.cache_key_override = invoked.cache_key;
        ctx.cache_key_parts = invoked.cache_key_parts;
    }
    match decision {
        Decision::Continue => Ok(HookOutcome::Continue(request)),
        Decision::Respond(generated) => {
            ctx.cache = CachePhase::Generated;
            Ok(HookOutcome::Respond {
                request,
                response: into_response(generated, None),
            })
        }
    }
}

/// Begins a response event (origin-response, viewer-response) on `response`, with the viewer's
/// request readable. origin-response first reads the body, up to the function's body limit:
/// it is always a run to await, since the read is.
pub fn start_response_event<'a>(
    node: &'a Node,
    ctx: &'a mut RequestCtx,
    event: Event,
    function: &'a Arc<Function>,
    request: &'a Parts,
    response: Response<EdgeBody>,
) -> Started<'a, Response<EdgeBody>> {
    let (head, body) = response.into_parts();
    let view = move |body_view| ResponseView {
        status: head.status,
        headers: head.headers,
        body: body_view,
    };
    if event != Event::OriginResponse {
        return response_event(
            node,
            ctx,
            (event, function),
            request,
            view(BodyView::Unavailable),
            Some(body),
        );
    }
    Started::Fresh(Box::pin(async move {
        let (body_view, rest) = read_body(body, function.limits.body_limit).await;
        let run = match response_event(node, ctx, (event, function), request, view(body_view), rest)
        {
            Started::Replayed(outcome) => return outcome,
            Started::Fresh(run) => run,
        };
        run.await
    }))
}

fn response_event<'a>(
    node: &'a Node,
    ctx: &'a mut RequestCtx,
    (event, function): Invocation<'a>,
    request: &Parts,
    response: ResponseView,
    rest: Option<EdgeBody>,
) -> Started<'a, Response<EdgeBody>> {
    let view = RequestView {
        method: request.method.clone(),
        uri: request.uri.clone(),
        headers: request.headers.clone(),
    };
    let before = ctx
        .debug
        .is_some()
        .then(|| (response.status, response.headers.clone()));
    let invocation = (event, function);
    begin(
        node,
        ctx,
        invocation,
        view,
        Some(response),
        move |node, ctx, started, invoked| {
            response_outcome(node, ctx, invocation, started, before, rest, invoked)
        },
    )
}

/// What a response event's invocation decided, as the response to go on with.
fn response_outcome(
    node: &Node,
    ctx: &mut RequestCtx,
    (event, function): Invocation<'_>,
    started: Instant,
    before: Option<(http::StatusCode, http::HeaderMap)>,
    rest: Option<EdgeBody>,
    invoked: Invoked,
) -> Result<Response<EdgeBody>, Error> {
    count(node, ctx, function, event, started, &invoked);
    invoked.result?;
    if event == Event::OriginResponse {
        ctx.ttl_override = invoked.ttl;
    }
    let changed = invoked
        .response
        .expect("a response event keeps its response");
    if let (Some(debug), Some((status, headers))) = (&mut ctx.debug, before) {
        let mut changes = super::debug::header_changes(&headers, &changed.headers);
        if status != changed.status {
            changes.insert(
                0,
                format!("status {} -> {}", status.as_u16(), changed.status.as_u16()),
            );
        }
        if matches!(changed.body, BodyView::Replaced(_)) {
            changes.push("body replaced".into());
        }
        if let Some(ttl) = invoked.ttl {
            changes.push(format!("ttl {ttl}s"));
        }
        debug.function_changed(event, &function.name, invoked.replay, &changes);
    }
    Ok(into_response(changed, rest))
}

/// Counts a finished invocation in the metrics and closes its `Server-Timing` stage.
fn count(
    node: &Node,
    ctx: &mut RequestCtx,
    function: &Function,
    event: Event,
    started: Instant,
    invoked: &Invoked,
) {
    node.metrics.function_invocation(
        &function.name,
        event.export_name(),
        started.elapsed(),
        invoked.result.is_err(),
        invoked.replay,
        invoked.recorded,
    );
    ctx.mark(event.export_name());
}

/// Reads the whole body if it fits in `limit`; otherwise gives back what was read chained to
/// the rest, so the viewer still gets every byte.
async fn read_body(mut body: EdgeBody, limit: usize) -> (BodyView, Option<EdgeBody>) {
    let mut buffer = BytesMut::new();
    loop {
        match tokio::time::timeout(DEFAULT_BODY_IDLE_TIMEOUT, body.frame()).await {
            Ok(Some(Ok(frame))) => {
                if let Ok(data) = frame.into_data() {
                    buffer.extend_from_slice(&data);
                    if buffer.len() > limit {
                        return (
                            BodyView::Unavailable,
                            Some(EdgeBody::Chain(Some(buffer.freeze()), Box::new(body))),
                        );
                    }
                }
            }
            Ok(None) => return (BodyView::Buffered(buffer.freeze()), None),
            // A broken or stalled body: the function cannot have it; the viewer gets what there
            // is and then the error.
            Ok(Some(Err(_))) | Err(_) => {
                return (
                    BodyView::Unavailable,
                    Some(EdgeBody::Chain(Some(buffer.freeze()), Box::new(body))),
                )
            }
        }
    }
}

/// Builds the response a function left: its status and headers, and its body (replaced,
/// buffered, or the untouched rest of the stream).
fn into_response(view: ResponseView, rest: Option<EdgeBody>) -> Response<EdgeBody> {
    let mut response = Response::new(EdgeBody::Empty);
    *response.status_mut() = view.status;
    *response.headers_mut() = view.headers;
    let body = match view.body {
        BodyView::Replaced(bytes) => Some(bytes),
        BodyView::Buffered(bytes) => Some(bytes),
        BodyView::Unavailable => None,
    };
    match body {
        Some(bytes) => {
            response
                .headers_mut()
                .insert(CONTENT_LENGTH, http::HeaderValue::from(bytes.len()));
            *response.body_mut() = EdgeBody::full(bytes);
        }
        None => *response.body_mut() = rest.unwrap_or_default(),
    }
    response
}
