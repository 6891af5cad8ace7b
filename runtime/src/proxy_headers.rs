//! Headers a proxy removes and adds on both legs (RFC 9110 §7.6): hop-by-hop fields belong to
//! one connection and must not be forwarded; `Via` and `X-Forwarded-For` record the hop.

use std::io::Write;
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
    let mut text = [0; IP_TEXT_MAX];
    let address = ip_text(viewer, &mut text);
    // Address bytes, and valid lines joined by ", " with an address, are valid header bytes:
    // the checks below cannot fail.
    match headers.entry(X_FORWARDED_FOR.clone()) {
        // Most requests: one allocation, of the address's size, which the value keeps.
        Entry::Vacant(slot) => {
            if let Ok(value) = HeaderValue::from_bytes(address) {
                slot.insert(value);
            }
        }
        Entry::Occupied(mut prior) => {
            let mut list = Vec::new();
            for line in prior.iter() {
                list.extend_from_slice(line.as_bytes());
                list.extend_from_slice(b", ");
            }
            list.extend_from_slice(address);
            if let Ok(value) = HeaderValue::from_maybe_shared(Bytes::from(list)) {
                prior.insert(value);
            }
        }
    }
}

/// The longest address text: an IPv6 address with an embedded IPv4 one.
const IP_TEXT_MAX: usize = 45;

/// An address as `Display` writes it, into `buf`, without the formatting machinery for IPv4
/// (every forwarded request writes one).
fn ip_text(ip: IpAddr, buf: &mut [u8; IP_TEXT_MAX]) -> &[u8] {
    let v4 = match ip {
        IpAddr::V4(v4) => v4,
        IpAddr::V6(v6) => {
            let mut cursor = std::io::Cursor::new(&mut buf[..]);
            // The buffer holds the longest address, so the write cannot fail.
            let _ = write!(cursor, "{v6}");
            let len = usize::try_from(cursor.position()).unwrap_or(0);
            return &buf[..len];
        }
    };
    let mut len = 0;
    let mut push = |byte: u8| {
        buf[len] = byte;
        len += 1;
    };
    for (i, octet) in v4.octets().into_iter().enumerate() {
        if i > 0 {
            push(b'.');
        }
        if octet >= 100 {
            push(b'0' + octet / 100);
        }
        if octet >= 10 {
            push(b'0' + octet / 10 % 10);
        }
        push(b'0' + octet % 10);
    }
    &buf[..len]
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
            "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
            "::ffff:255.255.255.255",
        ] {
            let ip: IpAddr = ip.parse().expect("ip");
            assert_eq!(
                ip_text(ip, &mut [0; IP_TEXT_MAX]),
                ip.to_string().as_bytes()
            );
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
