//! Header reads and changes shared by the `request_*` and `response_*` calls, with the ABI's
//! validation: valid names and values (no CR/LF: a function cannot split a message), framing
//! headers off limits, size limits.

use edge_sdk::abi::{limits, status, IMPORT_MODULE};
use http::header::{HeaderName, CONNECTION, CONTENT_LENGTH, SET_COOKIE, TRANSFER_ENCODING};
use http::{HeaderMap, HeaderValue};
use wasmtime::{Caller, Linker};

use super::memory::{bytes, call, status_of, write_out};
use crate::wasm::state::HostState;

/// One message's header calls: `{prefix}_get_header`, `_get_headers`, `_set_header`,
/// `_append_header`, `_remove_header`.
pub struct HeaderCalls {
    /// Import names, in that order.
    pub names: [&'static str; 5],
    /// The headers to read; `None` when there is no such message (yet).
    pub read: fn(&HostState) -> Option<&HeaderMap>,
    /// The headers to change, creating the message if needed.
    pub write: fn(&mut HostState) -> &mut HeaderMap,
}

/// Adds one message's header calls.
pub fn add_to_linker(linker: &mut Linker<HostState>, calls: HeaderCalls) -> wasmtime::Result<()> {
    let HeaderCalls {
        names: [get_one, get_all, set, append, remove],
        read,
        write,
    } = calls;
    linker.func_wrap(
        IMPORT_MODULE,
        get_one,
        move |mut c: Caller<'_, HostState>,
              name: i32,
              name_len: i32,
              buf: i32,
              len: i32,
              out: i32| {
            call(&mut c, get_one, |m, s| {
                status_of((|| {
                    let headers = read(s).ok_or(status::NOT_FOUND)?;
                    match get(headers, bytes(m, name, name_len)?)? {
                        Some(value) => Ok(write_out(m, buf, len, out, &value)),
                        None => Ok(status::NOT_FOUND),
                    }
                })())
            })
        },
    )?;
    linker.func_wrap(
        IMPORT_MODULE,
        get_all,
        move |mut c: Caller<'_, HostState>, buf: i32, len: i32, out: i32| {
            call(&mut c, get_all, |m, s| {
                write_out(m, buf, len, out, &read(s).map(list).unwrap_or_default())
            })
        },
    )?;
    for (call_name, how) in [(set, Change::Set), (append, Change::Append)] {
        linker.func_wrap(
            IMPORT_MODULE,
            call_name,
            move |mut c: Caller<'_, HostState>,
                  name: i32,
                  name_len: i32,
                  value: i32,
                  value_len: i32| {
                call(&mut c, call_name, |m, s| {
                    status_of((|| {
                        Ok(change(
                            write(s),
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
        remove,
        move |mut c: Caller<'_, HostState>, name: i32, name_len: i32| {
            call(&mut c, remove, |m, s| {
                status_of((|| {
                    Ok(change(
                        write(s),
                        bytes(m, name, name_len)?,
                        None,
                        Change::Remove,
                    ))
                })())
            })
        },
    )?;
    Ok(())
}

/// A header's value, lines joined with `, ` (`\n` for `set-cookie`); `None` if absent.
pub fn get(headers: &HeaderMap, name: &[u8]) -> Result<Option<Vec<u8>>, i32> {
    let name = HeaderName::from_bytes(name).map_err(|_| status::INVALID_ARGUMENT)?;
    let separator: &[u8] = if name == SET_COOKIE { b"\n" } else { b", " };
    let mut out: Option<Vec<u8>> = None;
    for value in headers.get_all(&name) {
        match &mut out {
            None => out = Some(value.as_bytes().to_vec()),
            Some(v) => {
                v.extend_from_slice(separator);
                v.extend_from_slice(value.as_bytes());
            }
        }
    }
    Ok(out)
}

/// Every header as `name: value\n` lines.
pub fn list(headers: &HeaderMap) -> Vec<u8> {
    let mut out = Vec::new();
    for (name, value) in headers {
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.push(b'\n');
    }
    out
}

/// How a change applies.
#[derive(Clone, Copy)]
pub enum Change {
    /// Replace every line.
    Set,
    /// Add a line.
    Append,
    /// Remove every line.
    Remove,
}

/// Applies a change, or returns the status that refuses it.
pub fn change(headers: &mut HeaderMap, name: &[u8], value: Option<&[u8]>, how: Change) -> i32 {
    let Ok(name) = HeaderName::from_bytes(name) else {
        return status::INVALID_ARGUMENT;
    };
    if name == CONTENT_LENGTH || name == TRANSFER_ENCODING || name == CONNECTION {
        return status::INVALID_ARGUMENT;
    }
    match how {
        Change::Remove => {
            if headers.remove(&name).is_none() {
                return status::NOT_FOUND;
            }
            // Removing every line also drops any further ones `remove` left.
            while headers.remove(&name).is_some() {}
            status::OK
        }
        Change::Set | Change::Append => {
            let Some(value) = value else {
                return status::INVALID_ARGUMENT;
            };
            if value.len() > limits::MAX_HEADER_VALUE {
                return status::LIMIT_EXCEEDED;
            }
            let Ok(value) = HeaderValue::from_bytes(value) else {
                return status::INVALID_ARGUMENT;
            };
            let existing = if matches!(how, Change::Set) {
                headers
                    .get_all(&name)
                    .iter()
                    .map(|v| name.as_str().len() + v.len())
                    .sum()
            } else {
                0
            };
            let bytes: usize = headers
                .iter()
                .map(|(n, v)| n.as_str().len() + v.len())
                .sum::<usize>()
                - existing
                + name.as_str().len()
                + value.len();
            let count = headers.len()
                - if matches!(how, Change::Set) {
                    headers.get_all(&name).iter().count()
                } else {
                    0
                }
                + 1;
            if bytes > limits::MAX_HEADER_BYTES || count > limits::MAX_HEADER_COUNT {
                return status::LIMIT_EXCEEDED;
            }
            if matches!(how, Change::Set) {
                headers.insert(name, value);
            } else {
                headers.append(name, value);
            }
            status::OK
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_splitting_and_framing() {
        let mut h = HeaderMap::new();
        assert_eq!(
            change(&mut h, b"x-a", Some(b"ok\r\nx-evil: 1"), Change::Set),
            status::INVALID_ARGUMENT
        );
        assert_eq!(
            change(&mut h, b"x a", Some(b"v"), Change::Set),
            status::INVALID_ARGUMENT
        );
        assert_eq!(
            change(&mut h, b"content-length", Some(b"5"), Change::Set),
            status::INVALID_ARGUMENT
        );
        assert_eq!(
            change(
                &mut h,
                b"x-big",
                Some(&vec![b'a'; limits::MAX_HEADER_VALUE + 1]),
                Change::Set
            ),
            status::LIMIT_EXCEEDED
        );
        assert!(h.is_empty());
    }

    #[test]
    fn set_append_remove() {
        let mut h = HeaderMap::new();
        assert_eq!(
            change(&mut h, b"X-A", Some(b"1"), Change::Append),
            status::OK
        );
        assert_eq!(
            change(&mut h, b"x-a", Some(b"2"), Change::Append),
            status::OK
        );
        assert_eq!(get(&h, b"x-a"), Ok(Some(b"1, 2".to_vec())));
        assert_eq!(change(&mut h, b"x-a", Some(b"3"), Change::Set), status::OK);
        assert_eq!(list(&h), b"x-a: 3\n");
        assert_eq!(change(&mut h, b"x-a", None, Change::Remove), status::OK);
        assert_eq!(
            change(&mut h, b"x-a", None, Change::Remove),
            status::NOT_FOUND
        );
    }

    #[test]
    fn count_limit() {
        let mut h = HeaderMap::new();
        for i in 0..limits::MAX_HEADER_COUNT {
            assert_eq!(
                change(
                    &mut h,
                    format!("x-{i}").as_bytes(),
                    Some(b"v"),
                    Change::Append
                ),
                status::OK
            );
        }
        assert_eq!(
            change(&mut h, b"x-more", Some(b"v"), Change::Append),
            status::LIMIT_EXCEEDED
        );
        assert_eq!(
            change(&mut h, b"x-0", Some(b"w"), Change::Set),
            status::OK,
            "replacing does not add a field"
        );
    }
}
