//! `response_*` host calls. In request events they build the generated response.

use bytes::Bytes;
use edge_sdk::abi::{status, IMPORT_MODULE};
use http::{HeaderMap, StatusCode};
use wasmtime::{Caller, Linker};

use super::fields::{self, HeaderCalls};
use super::memory::{bytes, call, status_of, write_out, write_u32};
use crate::wasm::state::{BodyView, HostState, ResponseView};

type C<'a> = Caller<'a, HostState>;

/// The response to change: the event's, or in request events the generated one (created as
/// `200`, no headers, empty body on first use).
fn response(s: &mut HostState) -> &mut ResponseView {
    s.response.get_or_insert_with(|| ResponseView {
        status: StatusCode::OK,
        headers: HeaderMap::new(),
        body: BodyView::Replaced(Bytes::new()),
    })
}

/// Adds the `response_*` calls.
pub fn add_to_linker(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    linker.func_wrap(
        IMPORT_MODULE,
        "response_get_status",
        |mut c: C<'_>, out: i32| {
            call(&mut c, "response_get_status", |m, s| {
                let code = s.response.as_ref().map_or(200, |r| r.status.as_u16());
                status_of(write_u32(m, out, u32::from(code)).map(|()| status::OK))
            })
        },
    )?;
    linker.func_wrap(
        IMPORT_MODULE,
        "response_set_status",
        |mut c: C<'_>, code: i32| {
            call(&mut c, "response_set_status", |_, s| {
                match u16::try_from(code)
                    .ok()
                    .filter(|c| *c >= 100)
                    .and_then(|c| StatusCode::from_u16(c).ok())
                {
                    Some(code) => {
                        response(s).status = code;
                        status::OK
                    }
                    None => status::INVALID_ARGUMENT,
                }
            })
        },
    )?;
    fields::add_to_linker(
        linker,
        HeaderCalls {
            names: [
                "response_get_header",
                "response_get_headers",
                "response_set_header",
                "response_append_header",
                "response_remove_header",
            ],
            read: |s| s.response.as_ref().map(|r| &r.headers),
            write: |s| &mut response(s).headers,
        },
    )?;
    linker.func_wrap(
        IMPORT_MODULE,
        "response_get_body",
        |mut c: C<'_>, buf: i32, len: i32, out: i32| {
            call(&mut c, "response_get_body", |m, s| {
                match s.response.as_ref().map(|r| &r.body) {
                    Some(BodyView::Buffered(b) | BodyView::Replaced(b)) => {
                        write_out(m, buf, len, out, b)
                    }
                    _ => status::UNAVAILABLE,
                }
            })
        },
    )?;
    linker.func_wrap(
        IMPORT_MODULE,
        "response_set_body",
        |mut c: C<'_>, ptr: i32, len: i32| {
            call(&mut c, "response_set_body", |m, s| {
                status_of((|| {
                    let body = bytes(m, ptr, len)?;
                    if body.len() > s.body_limit {
                        return Err(status::LIMIT_EXCEEDED);
                    }
                    response(s).body = BodyView::Replaced(Bytes::copy_from_slice(body));
                    Ok(status::OK)
                })())
            })
        },
    )?;
    Ok(())
}
