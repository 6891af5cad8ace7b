//! `response_*` host calls. In request events they build the generated response.

use bytes::Bytes;
use edge_sdk::abi::{status, IMPORT_MODULE};
use http::{HeaderMap, StatusCode};
use wasmtime::{Caller, Linker};

use super::fields::{self, Change};
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
    linker.func_wrap(
        IMPORT_MODULE,
        "response_get_header",
        |mut c: C<'_>, name: i32, name_len: i32, buf: i32, len: i32, out: i32| {
            call(&mut c, "response_get_header", |m, s| {
                status_of((|| {
                    let headers = s
                        .response
                        .as_ref()
                        .map(|r| &r.headers)
                        .ok_or(status::NOT_FOUND)?;
                    match fields::get(headers, bytes(m, name, name_len)?)? {
                        Some(value) => Ok(write_out(m, buf, len, out, &value)),
                        None => Ok(status::NOT_FOUND),
                    }
                })())
            })
        },
    )?;
    linker.func_wrap(
        IMPORT_MODULE,
        "response_get_headers",
        |mut c: C<'_>, buf: i32, len: i32, out: i32| {
            call(&mut c, "response_get_headers", |m, s| {
                let list = s
                    .response
                    .as_ref()
                    .map(|r| fields::list(&r.headers))
                    .unwrap_or_default();
                write_out(m, buf, len, out, &list)
            })
        },
    )?;
    for (call_name, how) in [
        ("response_set_header", Change::Set),
        ("response_append_header", Change::Append),
    ] {
        linker.func_wrap(
            IMPORT_MODULE,
            call_name,
            move |mut c: C<'_>, name: i32, name_len: i32, value: i32, value_len: i32| {
                call(&mut c, call_name, |m, s| {
                    status_of((|| {
                        Ok(fields::change(
                            &mut response(s).headers,
                            bytes(m, name, name_len)?,
                            Some(bytes(m, value, value_len)?),
                            how,
                        ))
                    })())
                })
            },
        )?;
    }
    linker.func_wrap(
        IMPORT_MODULE,
        "response_remove_header",
        |mut c: C<'_>, name: i32, name_len: i32| {
            call(&mut c, "response_remove_header", |m, s| {
                status_of((|| {
                    Ok(fields::change(
                        &mut response(s).headers,
                        bytes(m, name, name_len)?,
                        None,
                        Change::Remove,
                    ))
                })())
            })
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
