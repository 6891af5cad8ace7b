//! The response headers of a stored object, packed for memory: a cache holds hundreds of
//! thousands of small objects for days, and a `HeaderMap` per object (about 100 bytes per header
//! plus its index) cost more than a 1 KiB body's worth of overhead.
//!
//! Most objects of an origin carry the same header names in the same order, and many of the
//! same values (`Content-Type`, `Cache-Control`, `Via`). Objects with one list of names share
//! one [`Shape`]: the names, and a map of them holding the values of the first object stored
//! with them. An object keeps only a table saying, for each header, whether its value is the
//! shape's, and the bytes of the values that are not. A hit clones the shape's map (what cloning
//! a stored `HeaderMap` cost before) and puts the object's own values in, each a slice of the
//! object's buffer, with no copy.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use bytes::{BufMut, Bytes, BytesMut};
use http::header::HeaderName;
use http::{HeaderMap, HeaderValue};

/// Distinct name lists kept for sharing. Past this, an object gets a shape of its own, so an
/// origin that sends ever-new header names cannot grow the table without bound.
const MAX_SHAPES: usize = 4096;
/// Room left in a shape's map for the headers every response adds (`X-Cache`, `Age`): a map at
/// its load limit would grow its index on each hit.
const ROOM: usize = 2;
/// In a table entry: the value is the shape's; no bytes are stored for it.
const SAME: u32 = 1 << 31;
/// In a table entry: the value is sensitive (never indexed by HTTP/2's HPACK).
const SENSITIVE: u32 = 1 << 30;
/// In a table entry: the end of the value's bytes.
const END: u32 = SENSITIVE - 1;
/// Bytes of one table entry.
const ENTRY: usize = size_of::<u32>();

/// Response headers as a cached object keeps them.
#[derive(Debug)]
pub struct StoredHeaders(Repr);

#[derive(Debug)]
enum Repr {
    /// The shape, and for each header a table entry (`u32`, native byte order) followed by the
    /// bytes of the values that differ from the shape's, back to back.
    Packed { shape: Arc<Shape>, packed: Bytes },
    /// Values too large for 30-bit offsets (a gigabyte of headers: never from an origin).
    Map(Box<HeaderMap>),
}

/// Header names in order (a name once per value) and the values first stored with them.
#[derive(Debug)]
struct Shape {
    /// In the shared table; otherwise (the table was full) the one object's own.
    shared: bool,
    names: Box<[HeaderName]>,
    /// The names with the first object's values, with room for [`ROOM`] more headers.
    template: HeaderMap,
    /// The template's values in order, to compare new objects' values with.
    values: Box<[HeaderValue]>,
}

impl Shape {
    fn new(names: Box<[HeaderName]>, headers: &HeaderMap, shared: bool) -> Self {
        // The values are copied into one buffer of their own: parsed by hyper, each was a slice
        // of the connection's read buffer, which the shape would otherwise keep alive.
        let total = headers.values().map(HeaderValue::len).sum();
        let mut buffer = BytesMut::with_capacity(total);
        for value in headers.values() {
            buffer.extend_from_slice(value.as_bytes());
        }
        let buffer = buffer.freeze();
        let mut template = HeaderMap::with_capacity(headers.len() + ROOM);
        let mut start = 0;
        for (name, value) in headers {
            let end = start + value.len();
            let copy = value_of(buffer.slice(start..end), value.is_sensitive());
            template.append(name.clone(), copy.unwrap_or_else(|| value.clone()));
            start = end;
        }
        let values = template.values().cloned().collect();
        Shape {
            shared,
            names,
            template,
            values,
        }
    }
}

impl StoredHeaders {
    /// Packs `headers`, in their order.
    pub fn new(headers: &HeaderMap) -> Self {
        let total: usize = headers.values().map(HeaderValue::len).sum();
        if total > END as usize {
            return StoredHeaders(Repr::Map(Box::new(headers.clone())));
        }
        let shape = shape_of(headers);
        let own = || {
            headers
                .values()
                .zip(shape.values.iter())
                .filter(|(value, template)| !same(value, template))
                .map(|(value, _)| value)
        };
        let mut packed = BytesMut::with_capacity(
            headers.len() * ENTRY + own().map(HeaderValue::len).sum::<usize>(),
        );
        let mut end = 0u32;
        for (value, template) in headers.values().zip(shape.values.iter()) {
            if same(value, template) {
                packed.put_u32_ne(SAME);
                continue;
            }
            // Fits: the total was checked above.
            end += value.len() as u32;
            let flag = if value.is_sensitive() { SENSITIVE } else { 0 };
            packed.put_u32_ne(end | flag);
        }
        for value in own() {
            packed.extend_from_slice(value.as_bytes());
        }
        StoredHeaders(Repr::Packed {
            shape,
            packed: packed.freeze(),
        })
    }

    /// The headers as a map to send, with room for the two every response adds.
    pub fn to_map(&self) -> HeaderMap {
        match &self.0 {
            Repr::Packed { shape, packed } => {
                let mut map = shape.template.clone();
                let mut own = Own::new(packed, shape.names.len());
                // `values_mut` walks the values in the order `HeaderMap::iter` gave them to
                // `new`, which is the order of the table.
                for value in map.values_mut() {
                    if let Some(mine) = own.next_value() {
                        *value = mine;
                    }
                }
                map
            }
            Repr::Map(map) => {
                let mut copy = HeaderMap::with_capacity(map.len() + ROOM);
                copy.extend(map.iter().map(|(n, v)| (n.clone(), v.clone())));
                copy
            }
        }
    }

    /// Every header in order, a name once per value.
    pub fn iter(&self) -> Box<dyn Iterator<Item = (&HeaderName, HeaderValue)> + '_> {
        match &self.0 {
            Repr::Packed { shape, packed } => {
                let mut own = Own::new(packed, shape.names.len());
                Box::new(shape.names.iter().zip(shape.values.iter()).map(
                    move |(name, template)| {
                        (name, own.next_value().unwrap_or_else(|| template.clone()))
                    },
                ))
            }
            Repr::Map(map) => Box::new(map.iter().map(|(n, v)| (n, v.clone()))),
        }
    }

    /// The first value of `name`.
    pub fn get(&self, name: &HeaderName) -> Option<HeaderValue> {
        self.get_all(name).next()
    }

    /// Every value of `name`, in order.
    pub fn get_all<'a>(&'a self, name: &'a HeaderName) -> impl Iterator<Item = HeaderValue> + 'a {
        self.iter().filter(move |(n, _)| *n == name).map(|(_, v)| v)
    }

    /// Whether `name` is present.
    pub fn contains_key(&self, name: &HeaderName) -> bool {
        match &self.0 {
            Repr::Packed { shape, .. } => shape.names.contains(name),
            Repr::Map(map) => map.contains_key(name),
        }
    }

    /// Number of values (a name counts once per value).
    pub fn len(&self) -> usize {
        match &self.0 {
            Repr::Packed { shape, .. } => shape.names.len(),
            Repr::Map(map) => map.len(),
        }
    }

    /// Whether there is no header at all.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes this keeps apart from a shared shape, for the store's weight.
    pub fn weight(&self) -> usize {
        match &self.0 {
            Repr::Packed { shape, packed } => {
                // A shape of its own (the shared table was full) is the object's to pay for. Fixed
                // at creation: the store weighs an entry again when it leaves, and must get the
                // same figure.
                let own_shape = if !shape.shared {
                    shape.values.iter().map(|v| v.len() + 64).sum()
                } else {
                    0
                };
                packed.len() + own_shape
            }
            Repr::Map(map) => map
                .iter()
                .map(|(n, v)| n.as_str().len() + v.len() + 32)
                .sum(),
        }
    }
}

/// Reads a packed table in order: for each header, `None` when its value is the shape's.
struct Own<'a> {
    packed: &'a Bytes,
    /// Where the values start (after the table).
    table: usize,
    next: usize,
    start: usize,
}

impl<'a> Own<'a> {
    fn new(packed: &'a Bytes, len: usize) -> Self {
        Own {
            packed,
            table: len * ENTRY,
            next: 0,
            start: 0,
        }
    }

    fn next_value(&mut self) -> Option<HeaderValue> {
        let at = self.next * ENTRY;
        self.next += 1;
        let mut bytes = [0; ENTRY];
        bytes.copy_from_slice(self.packed.get(at..at + ENTRY)?);
        let entry = u32::from_ne_bytes(bytes);
        if entry & SAME != 0 {
            return None;
        }
        let end = (entry & END) as usize;
        let value = self.packed.slice(self.table + self.start..self.table + end);
        self.start = end;
        value_of(value, entry & SENSITIVE != 0)
    }
}

fn same(value: &HeaderValue, template: &HeaderValue) -> bool {
    value == template && value.is_sensitive() == template.is_sensitive()
}

fn value_of(bytes: Bytes, sensitive: bool) -> Option<HeaderValue> {
    // The bytes were copied from a `HeaderValue`: valid, so this never fails (the check is a
    // pass over a few bytes; this workspace does not use `unsafe`).
    let mut value = HeaderValue::from_maybe_shared(bytes).ok()?;
    value.set_sensitive(sensitive);
    Some(value)
}

/// The shared shapes, by their names.
type Shapes = HashMap<Box<[HeaderName]>, Arc<Shape>>;

/// The shape for the names of `headers`: the shared one, or a new one (shared from now on
/// while the table has room).
fn shape_of(headers: &HeaderMap) -> Arc<Shape> {
    static SHAPES: OnceLock<Mutex<Shapes>> = OnceLock::new();
    let names: Box<[HeaderName]> = headers.iter().map(|(n, _)| n.clone()).collect();
    let shapes = SHAPES.get_or_init(Mutex::default);
    let mut shapes = shapes.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(shape) = shapes.get(&names) {
        return Arc::clone(shape);
    }
    if shapes.len() >= MAX_SHAPES {
        return Arc::new(Shape::new(names, headers, false));
    }
    let shape = Arc::new(Shape::new(names.clone(), headers, true));
    shapes.insert(names, Arc::clone(&shape));
    shape
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::header::{CACHE_CONTROL, CONTENT_TYPE, ETAG, SET_COOKIE};

    fn headers(pairs: &[(&HeaderName, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append((*name).clone(), HeaderValue::from_static(value));
        }
        map
    }

    fn shape(s: &StoredHeaders) -> Arc<Shape> {
        match &s.0 {
            Repr::Packed { shape, .. } => Arc::clone(shape),
            Repr::Map(_) => panic!("small headers are packed"),
        }
    }

    #[test]
    fn round_trips_order_repeats_and_empty_values() {
        let map = headers(&[
            (&CONTENT_TYPE, "text/plain"),
            (&SET_COOKIE, "a=1"),
            (&CACHE_CONTROL, ""),
            (&SET_COOKIE, "b=2"),
        ]);
        let stored = StoredHeaders::new(&map);
        assert_eq!(stored.len(), 4);
        assert_eq!(stored.to_map(), map);
        assert_eq!(
            stored.get(&CACHE_CONTROL),
            Some(HeaderValue::from_static(""))
        );
        assert_eq!(
            stored.get_all(&SET_COOKIE).collect::<Vec<_>>(),
            ["a=1", "b=2"]
        );
        assert!(!stored.contains_key(&ETAG));
        assert!(StoredHeaders::new(&HeaderMap::new()).is_empty());
    }

    #[test]
    fn objects_with_the_same_names_share_a_shape_and_keep_their_own_values() {
        let x_first = HeaderName::from_static("x-shape-test");
        let first = StoredHeaders::new(&headers(&[(&x_first, "a"), (&ETAG, "\"1\"")]));
        let second = StoredHeaders::new(&headers(&[(&x_first, "a"), (&ETAG, "\"2\"")]));
        let swapped = StoredHeaders::new(&headers(&[(&ETAG, "\"2\""), (&x_first, "a")]));
        assert!(Arc::ptr_eq(&shape(&first), &shape(&second)));
        assert!(
            !Arc::ptr_eq(&shape(&first), &shape(&swapped)),
            "order is part of the shape"
        );
        // Only the value that differs from the shape's is kept with the second object.
        let Repr::Packed { packed, .. } = &second.0 else {
            panic!("packed")
        };
        assert_eq!(packed.len(), 2 * ENTRY + "\"2\"".len());
        assert_eq!(second.get(&ETAG), Some(HeaderValue::from_static("\"2\"")));
        assert_eq!(second.get(&x_first), Some(HeaderValue::from_static("a")));
        assert_eq!(first.get(&ETAG), Some(HeaderValue::from_static("\"1\"")));
        assert_eq!(
            second.to_map(),
            headers(&[(&x_first, "a"), (&ETAG, "\"2\"")])
        );
    }

    #[test]
    fn sensitivity_is_kept_and_tells_values_apart() {
        let name = HeaderName::from_static("x-sensitive-test");
        let plain = headers(&[(&name, "s")]);
        let mut secret = plain.clone();
        if let Some(value) = secret.get_mut(&name) {
            value.set_sensitive(true);
        }
        let _ = StoredHeaders::new(&plain);
        let stored = StoredHeaders::new(&secret);
        assert!(stored.to_map()[&name].is_sensitive());
        assert!(!StoredHeaders::new(&plain).to_map()[&name].is_sensitive());
    }
}
