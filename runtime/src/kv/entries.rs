//! The content of a key-value store as data: string keys to values, read from and written as a
//! JSON object (a `[kv.NAME]` file, a data directory copy, a `PUT` body). It imports nothing
//! from the crate, so `config` can parse store files without depending on the stores.

use std::collections::{BTreeMap, HashMap};

use bytes::Bytes;
use serde_json::Value;

/// The pairs of one store. Values are bytes for the host call, but always UTF-8: they come
/// from JSON strings.
pub type Entries = HashMap<String, Bytes>;

/// The pairs as a JSON object, keys sorted, in the format [`parse_entries`] reads.
pub fn to_json(entries: &Entries) -> Vec<u8> {
    let sorted: BTreeMap<&str, std::borrow::Cow<'_, str>> = entries
        .iter()
        .map(|(k, v)| (k.as_str(), String::from_utf8_lossy(v)))
        .collect();
    serde_json::to_vec_pretty(&sorted).expect("a map of strings always encodes")
}

/// Reads a JSON object of string keys to string values (a `[kv.NAME]` file, a data directory
/// copy, a `PUT` body). The error says what is wrong and where: the line and column of a
/// syntax error, or the key whose value is not a string.
pub fn parse_entries(json: &[u8]) -> Result<Entries, String> {
    let object: serde_json::Map<String, Value> = serde_json::from_slice(json)
        .map_err(|e| format!("expected a JSON object of string keys to string values: {e}"))?;
    object
        .into_iter()
        .map(|(key, value)| match value {
            Value::String(v) => Ok((key, Bytes::from(v))),
            other => {
                let kind = match other {
                    Value::Null => "null",
                    Value::Bool(_) => "a boolean",
                    Value::Number(_) => "a number",
                    Value::Array(_) => "an array",
                    _ => "an object",
                };
                Err(format!("the value of key {key:?} is {kind}, not a string"))
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_names_the_problem() {
        let e = parse_entries(b"{\"a\": \"1\",\n \"b\" 2}").expect_err("syntax");
        assert!(e.contains("line 2"), "{e}");
        let e = parse_entries(br#"{"a": "1", "b": 2}"#).expect_err("number");
        assert!(e.contains("\"b\" is a number"), "{e}");
        let e = parse_entries(br#"["a"]"#).expect_err("not an object");
        assert!(e.contains("expected a JSON object"), "{e}");
        assert!(parse_entries(b"{}").expect("empty is fine").is_empty());
    }
}
