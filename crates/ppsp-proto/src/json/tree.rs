//! A parsed JSON document that borrows its strings from the body.
//!
//! `serde_json::Value` copies every key and string into its own allocation and keeps objects
//! in a `BTreeMap`. PPSP messages are small objects with a handful of members, so a vector of
//! borrowed pairs searched linearly is both smaller and faster; strings are copied only when
//! they contain escapes. Parsing itself is serde_json's.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, Deserialize, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};

/// One JSON value.
#[derive(Debug)]
pub(crate) enum Node<'a> {
    Null,
    Bool,
    /// A non-negative integer.
    Uint(u64),
    /// A negative integer.
    Int(i64),
    /// Any number written with a fraction or exponent, or too large for `u64`.
    Float,
    Str(Cow<'a, str>),
    Array(Vec<Self>),
    Object(Object<'a>),
}

/// A JSON object: members in document order.
#[derive(Debug, Default)]
pub(crate) struct Object<'a>(Vec<(Cow<'a, str>, Node<'a>)>);

impl<'a> Object<'a> {
    /// The value of `key`; when a key repeats, the last one counts (as in serde_json).
    pub(crate) fn get(&self, key: &str) -> Option<&Node<'a>> {
        self.0.iter().rev().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    pub(crate) fn contains_key(&self, key: &str) -> bool {
        self.0.iter().any(|(k, _)| k == key)
    }

    /// Takes the value of `key` out of the object.
    pub(crate) fn remove(&mut self, key: &str) -> Option<Node<'a>> {
        let at = self.0.iter().rposition(|(k, _)| k == key)?;
        Some(self.0.swap_remove(at).1)
    }

    pub(crate) fn first_key(&self) -> Option<&str> {
        self.0.first().map(|(k, _)| k.as_ref())
    }
}

impl<'a> Node<'a> {
    pub(crate) fn as_str(&self) -> Option<&str> {
        match self {
            Self::Str(s) => Some(s),
            _ => None,
        }
    }

    pub(crate) fn as_u64(&self) -> Option<u64> {
        match self {
            Self::Uint(n) => Some(*n),
            _ => None,
        }
    }

    pub(crate) fn as_object(&self) -> Option<&Object<'a>> {
        match self {
            Self::Object(o) => Some(o),
            _ => None,
        }
    }

    pub(crate) fn is_null(&self) -> bool {
        matches!(self, Self::Null)
    }
}

/// Parses one JSON document (trailing white space allowed, anything else after it refused).
pub(crate) fn parse(bytes: &[u8]) -> Result<Node<'_>, serde_json::Error> {
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let node = Node::deserialize(&mut deserializer)?;
    deserializer.end()?;
    Ok(node)
}

impl<'de> Deserialize<'de> for Node<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(NodeVisitor)
    }
}

struct NodeVisitor;

/// Preallocation cap for arrays and objects: the size hint comes from the input.
const MAX_PREALLOCATED: usize = 16;

impl<'de> Visitor<'de> for NodeVisitor {
    type Value = Node<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(Node::Null)
    }

    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(Node::Null)
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
        Ok(Node::Bool)
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
        Ok(Node::Uint(v))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
        Ok(u64::try_from(v).map_or(Node::Int(v), Node::Uint))
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
        Ok(Node::Float)
    }

    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Node::Str(Cow::Borrowed(v)))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Node::Str(Cow::Owned(v.to_owned())))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
        Ok(Node::Str(Cow::Owned(v)))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(MAX_PREALLOCATED));
        while let Some(item) = seq.next_element()? {
            items.push(item);
        }
        Ok(Node::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut members = Vec::with_capacity(map.size_hint().unwrap_or(0).min(MAX_PREALLOCATED));
        while let Some(key) = map.next_key_seed(KeySeed)? {
            members.push((key, map.next_value()?));
        }
        Ok(Node::Object(Object(members)))
    }
}

/// Reads an object key, borrowing it from the body when it has no escapes.
struct KeySeed;

impl<'de> DeserializeSeed<'de> for KeySeed {
    type Value = Cow<'de, str>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for KeySeed {
    type Value = Cow<'de, str>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object key")
    }

    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Cow::Borrowed(v))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Cow::Owned(v.to_owned()))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
        Ok(Cow::Owned(v))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_borrows() {
        let body = br#" {"a": [1, -2, 3.5, "x", "y\n", null, true], "a": {"k": "v"}} "#;
        let Ok(Node::Object(root)) = parse(body) else {
            panic!("object expected");
        };
        // The later duplicate wins.
        let inner = root.get("a").and_then(Node::as_object).expect("object");
        assert!(matches!(
            inner.get("k"),
            Some(Node::Str(Cow::Borrowed("v")))
        ));
        assert!(parse(b"{} x").is_err());
        assert!(parse(b"[1,]").is_err());
        assert!(matches!(parse(b"18446744073709551616"), Ok(Node::Float)));
        assert!(matches!(parse(b"-1"), Ok(Node::Int(-1))));
    }

    proptest::proptest! {
        /// The tree accepts exactly the documents serde_json's own value type accepts.
        #[test]
        fn agrees_with_serde_json(tokens in proptest::collection::vec(
            proptest::sample::select(vec![
                "{", "}", "[", "]", ":", ",", "\"k\"", "\"\\u00e9\"", "\"\\ud800\"", "1", "-0",
                "1.5e3", "1e400", "99999999999999999999", "null", "true", "false", " ", "\"",
            ]),
            0..24,
        )) {
            let body = tokens.concat();
            let ours = parse(body.as_bytes()).is_ok();
            let theirs = serde_json::from_slice::<serde_json::Value>(body.as_bytes()).is_ok();
            proptest::prop_assert_eq!(ours, theirs, "{}", body);
        }
    }
}
