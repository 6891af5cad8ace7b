//! `request_*` host calls.

use edge_sdk::abi::{status, IMPORT_MODULE};
use http::uri::PathAndQuery;
use wasmtime::{Caller, Linker};

use super::fields::{self, Change};
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
    linker.func_wrap(
        IMPORT_MODULE,
        "request_get_header",
        |mut c: C<'_>, name: i32, name_len: i32, buf: i32, len: i32, out: i32| {
            call(&mut c, "request_get_header", |m, s| {
                status_of(
                    (|| match fields::get(&s.request.headers, bytes(m, name, name_len)?)? {
                        Some(value) => Ok(write_out(m, buf, len, out, &value)),
                        None => Ok(status::NOT_FOUND),
                    })(),
                )
            })
        },
    )?;
    linker.func_wrap(
        IMPORT_MODULE,
        "request_get_headers",
        |mut c: C<'_>, buf: i32, len: i32, out: i32| {
            call(&mut c, "request_get_headers", |m, s| {
                write_out(m, buf, len, out, &fields::list(&s.request.headers))
            })
        },
    )?;
    for (call_name, how) in [
        ("request_set_header", Change::Set),
        ("request_append_header", Change::Append),
    ] {
        linker.func_wrap(
            IMPORT_MODULE,
            call_name,
            move |mut c: C<'_>, name: i32, name_len: i32, value: i32, value_len: i32| {
                call(&mut c, call_name, |m, s| {
                    status_of((|| {
                        Ok(fields::change(
                            &mut s.request.headers,
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
        "request_remove_header",
        |mut c: C<'_>, name: i32, name_len: i32| {
            call(&mut c, "request_remove_header", |m, s| {
                status_of((|| {
                    Ok(fields::change(
                        &mut s.request.headers,
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
        "request_get_client_ip",
        |mut c: C<'_>, buf: i32, len: i32, out: i32| {
            call(&mut c, "request_get_client_ip", |m, s| {
                write_out(m, buf, len, out, s.client_ip.to_string().as_bytes())
            })
        },
    )?;
    Ok(())
}
