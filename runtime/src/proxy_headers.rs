//! Headers a proxy removes and adds on both legs (RFC 9110 §7.6): hop-by-hop fields belong to
//! one connection and must not be forwarded; `Via` and `X-Forwarded-For` record the hop.

use std::net::IpAddr;

use bytes::Bytes;
use http::header::{
    Entry, HeaderName, CONNECTION, PROXY_AUTHENTICATE, PROXY_AUTHORIZATION, TE, TRAILER,
    TRANSFER_ENCODING, UPGRADE, VIA,
};
use http::{HeaderMap, HeaderValue};

/// The `Via` entry this node adds (RFC 9110 §7.6.3: protocol version and a pseudonym).
pub const VIA_VALUE: &str = "1.1 edge";

/// `X-Forwarded-For`, the de-facto list of viewer addresses.
pub static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
/// `X-Forwarded-Host`: the host the viewer asked for, since `Host` is set to the origin's.
pub static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
/// `X-Forwarded-Proto`.
pub static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");

/// Hop-by-hop headers that are not named in `Connection` but are hop-by-hop anyway.
static HOP_BY_HOP: [HeaderName; 8] = [
    CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    PROXY_AUTHENTICATE,
    PROXY_AUTHORIZATION,
    TE,
    TRAILER,
    TRANSFER_ENCODING,
];

/// Removes hop-by-hop headers, including those `Connection` lists. `Upgrade` goes too: this node
/// does not tunnel protocol upgrades.
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    // Most messages carry none: one pass over their names costs less than a lookup per
    // hop-by-hop name, on both legs of every forwarded request.
    let hop_by_hop = |name: &HeaderName| name == UPGRADE || HOP_BY_HOP.contains(name);
    if !headers.keys().any(hop_by_hop) {
        return;
    }
    let listed: Vec<HeaderName> = headers
        .get_all(CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
        .collect();
    for name in listed.iter().chain(HOP_BY_HOP.iter()) {
        headers.remove(name);
    }
    headers.remove(UPGRADE);
}

/// Appends this hop to `Via`.
pub fn add_via(headers: &mut HeaderMap) {
    headers.append(VIA, HeaderValue::from_static(VIA_VALUE));
}

/// Appends the viewer's address to `X-Forwarded-For`, keeping earlier hops' entries: every line
/// of them, joined into one list (RFC 9110 §5.3), since each proxy before may have added its own.
pub fn add_forwarded_for(headers: &mut HeaderMap, viewer: IpAddr) {
    let mut list = Vec::new();
    let entry = headers.entry(X_FORWARDED_FOR.clone());
    if let Entry::Occupied(prior) = &entry {
        for line in prior.iter() {
            list.extend_from_slice(line.as_bytes());
            list.extend_from_slice(b", ");
        }
    }
    list.extend_from_slice(ip_text(viewer).as_bytes());
    // The bytes become the value without another copy. Valid lines joined by ", " and an
    // address are valid header bytes, so the check cannot fail.
    if let Ok(value) = HeaderValue::from_maybe_shared(Bytes::from(list)) {
        match entry {
            Entry::Occupied(mut prior) => {
                prior.insert(value);
            }
            Entry::Vacant(slot) => {
                slot.insert(value);
            }
        }
    }
}

/// An address as `Display` writes it, without the formatting machinery for IPv4 (every
/// forwarded request writes one).
fn ip_text(ip: IpAddr) -> String {
    let IpAddr::V4(v4) = ip else {
        return ip.to_string();
    };
    let mut text = String::with_capacity(15);
    for (i, octet) in v4.octets().into_iter().enumerate() {
        if i > 0 {
            text.push('.');
        }
        if octet >= 100 {
            text.push(char::from(b'0' + octet / 100));
        }
        if octet >= 10 {
            text.push(char::from(b'0' + octet / 10 % 10));
        }
        text.push(char::from(b'0' + octet % 10));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strips_listed_and_standard_hop_by_hop() {
        let mut h = HeaderMap::new();
        h.insert(CONNECTION, HeaderValue::from_static("keep-alive, x-secret"));
        h.insert("x-secret", HeaderValue::from_static("1"));
        h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        h.insert(TRANSFER_ENCODING, HeaderValue::from_static("chunked"));
        h.insert("x-kept", HeaderValue::from_static("1"));
        strip_hop_by_hop(&mut h);
        assert_eq!(h.len(), 1);
        assert!(h.contains_key("x-kept"));
    }

    #[test]
    fn forwarded_for_appends() {
        let mut h = HeaderMap::new();
        add_forwarded_for(&mut h, "10.0.0.1".parse().expect("ip"));
        add_forwarded_for(&mut h, "127.0.0.1".parse().expect("ip"));
        assert_eq!(h[&X_FORWARDED_FOR], "10.0.0.1, 127.0.0.1");
    }

    #[test]
    fn addresses_are_written_as_display_writes_them() {
        for ip in [
            "0.0.0.0",
            "9.10.99.100",
            "255.255.255.255",
            "::1",
            "fe80::1:2",
        ] {
            let ip: IpAddr = ip.parse().expect("ip");
            assert_eq!(ip_text(ip), ip.to_string());
        }
    }

    #[test]
    fn a_message_without_hop_by_hop_fields_is_left_as_it_is() {
        let mut h = HeaderMap::new();
        h.insert("x-kept", HeaderValue::from_static("1"));
        h.insert(VIA, HeaderValue::from_static("1.1 a"));
        let before = h.clone();
        strip_hop_by_hop(&mut h);
        assert_eq!(h, before);
        h.insert(UPGRADE, HeaderValue::from_static("websocket"));
        strip_hop_by_hop(&mut h);
        assert_eq!(h, before);
    }
}
