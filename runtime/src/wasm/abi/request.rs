//! `request_*` host calls.

use edge_sdk::abi::{status, IMPORT_MODULE};
use http::uri::PathAndQuery;
use wasmtime::{Caller, Linker};

use super::fields::{self, HeaderCalls};
use super::memory::{bytes, call, status_of, write_out};
use crate::wasm::state::HostState;

type C<'a> = Caller<'a, HostState>;

/// Adds the `request_*` calls.
pub fn add_to_linker(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    linker.func_wrap(
        IMPORT_MODULE,
        "request_get_method",
        |mut c: C<'_>, buf: i32, len: i32, out: i32| {
            call(&mut c, "request_get_method", |m, s| {
                write_out(m, buf, len, out, s.request.method.as_str().as_bytes())
            })
        },
    )?;
    linker.func_wrap(
        IMPORT_MODULE,
        "request_get_uri",
        |mut c: C<'_>, buf: i32, len: i32, out: i32| {
            call(&mut c, "request_get_uri", |m, s| {
                let uri = s.request.uri.path_and_query().map_or("/", |pq| pq.as_str());
                write_out(m, buf, len, out, uri.as_bytes())
            })
        },
    )?;
    linker.func_wrap(
        IMPORT_MODULE,
        "request_set_uri",
        |mut c: C<'_>, ptr: i32, len: i32| {
            call(&mut c, "request_set_uri", |m, s| {
                status_of((|| {
                    let raw = bytes(m, ptr, len)?;
                    if raw.first() != Some(&b'/') {
                        return Err(status::INVALID_ARGUMENT);
                    }
                    let pq = PathAndQuery::try_from(raw).map_err(|_| status::INVALID_ARGUMENT)?;
                    s.request.uri = pq.as_str().parse().map_err(|_| status::INVALID_ARGUMENT)?;
                    Ok(status::OK)
                })())
            })
        },
    )?;
    fields::add_to_linker(
        linker,
        HeaderCalls {
            names: [
                "request_get_header",
                "request_get_headers",
                "request_set_header",
                "request_append_header",
                "request_remove_header",
            ],
            read: |s| Some(&s.request.headers),
            write: |s| &mut s.request.headers,
        },
    )?;
    linker.func_wrap(
        IMPORT_MODULE,
        "request_get_client_ip",
        |mut c: C<'_>, buf: i32, len: i32, out: i32| {
            call(&mut c, "request_get_client_ip", |m, s| {
                write_out(m, buf, len, out, s.client_ip.to_string().as_bytes())
            })
        },
    )?;
    Ok(())
}
