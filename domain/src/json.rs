//! A JSON document read in place: strings and keys borrowed from the text where it has no
//! escapes, objects as vectors. A sync reads every workflow of every page once to summarise
//! and hash it; a `serde_json::Value` for that allocated every key and string and kept each
//! object in a sorted map, and cost as much as receiving the page. The hashes do not depend
//! on which tree they are read from ([`Doc`], tested in `workflow`).

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Number, Value};

/// A parsed JSON value borrowing from its text.
#[derive(Debug, Clone, PartialEq)]
pub enum Json<'a> {
    Null,
    Bool(bool),
    Number(Number),
    String(Cow<'a, str>),
    Array(Vec<Json<'a>>),
    /// Members in document order, each key once (a repeated key keeps its last value, as
    /// `serde_json::Value` does).
    Object(Vec<(Cow<'a, str>, Json<'a>)>),
}

impl<'a> Json<'a> {
    pub fn parse(text: &'a str) -> serde_json::Result<Self> {
        serde_json::from_str(text)
    }
}

/// What reading a workflow needs of a JSON tree, for [`Value`] and [`Json`] alike.
pub trait Doc: Sized {
    fn get(&self, key: &str) -> Option<&Self>;
    fn is_null(&self) -> bool;
    fn as_str(&self) -> Option<&str>;
    fn as_bool(&self) -> Option<bool>;
    fn as_array(&self) -> Option<&[Self]>;
    /// An object's members (each key once), in no particular order.
    fn members(&self) -> Option<impl Iterator<Item = (&str, &Self)>>;
    /// A string as itself, a number in decimal: how providers' ids come.
    fn as_id(&self) -> Option<String>;
    /// A string, number, bool or null exactly as serde_json writes it (nothing for others).
    fn write_scalar(&self, out: &mut Vec<u8>);
}

fn write<T: serde::Serialize + ?Sized>(out: &mut Vec<u8>, v: &T) {
    // Writing a scalar to a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, v);
}

impl Doc for Value {
    fn get(&self, key: &str) -> Option<&Self> {
        Value::get(self, key)
    }
    fn is_null(&self) -> bool {
        Value::is_null(self)
    }
    fn as_str(&self) -> Option<&str> {
        Value::as_str(self)
    }
    fn as_bool(&self) -> Option<bool> {
        Value::as_bool(self)
    }
    fn as_array(&self) -> Option<&[Self]> {
        Value::as_array(self).map(Vec::as_slice)
    }
    fn members(&self) -> Option<impl Iterator<Item = (&str, &Self)>> {
        Value::as_object(self).map(|o| o.iter().map(|(k, v)| (k.as_str(), v)))
    }
    fn as_id(&self) -> Option<String> {
        match self {
            Value::String(s) => Some(s.clone()),
            Value::Number(n) => Some(n.to_string()),
            _ => None,
        }
    }
    fn write_scalar(&self, out: &mut Vec<u8>) {
        match self {
            Value::Array(_) | Value::Object(_) => {}
            scalar => write(out, scalar),
        }
    }
}

impl Doc for Json<'_> {
    fn get(&self, key: &str) -> Option<&Self> {
        match self {
            Json::Object(members) => members.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }
    fn is_null(&self) -> bool {
        matches!(self, Json::Null)
    }
    fn as_str(&self) -> Option<&str> {
        match self {
            Json::String(s) => Some(s),
            _ => None,
        }
    }
    fn as_bool(&self) -> Option<bool> {
        match self {
            Json::Bool(b) => Some(*b),
            _ => None,
        }
    }
    fn as_array(&self) -> Option<&[Self]> {
        match self {
            Json::Array(a) => Some(a),
            _ => None,
        }
    }
    fn members(&self) -> Option<impl Iterator<Item = (&str, &Self)>> {
        match self {
            Json::Object(members) => Some(members.iter().map(|(k, v)| (k.as_ref(), v))),
            _ => None,
        }
    }
    fn as_id(&self) -> Option<String> {
        match self {
            Json::String(s) => Some(s.as_ref().to_owned()),
            Json::Number(n) => Some(n.to_string()),
            _ => None,
        }
    }
    fn write_scalar(&self, out: &mut Vec<u8>) {
        match self {
            Json::Null => out.extend_from_slice(b"null"),
            Json::Bool(true) => out.extend_from_slice(b"true"),
            Json::Bool(false) => out.extend_from_slice(b"false"),
            Json::Number(n) => write(out, n),
            Json::String(s) => write(out, s.as_ref()),
            Json::Array(_) | Json::Object(_) => {}
        }
    }
}

/// A key or string, borrowed when the text has it verbatim.
struct Text<'a>(Cow<'a, str>);

impl<'de> Deserialize<'de> for Text<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Text<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E: de::Error>(self, s: &'de str) -> Result<Self::Value, E> {
                Ok(Text(Cow::Borrowed(s)))
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Self::Value, E> {
                Ok(Text(Cow::Owned(s.to_owned())))
            }
            fn visit_string<E: de::Error>(self, s: String) -> Result<Self::Value, E> {
                Ok(Text(Cow::Owned(s)))
            }
        }
        d.deserialize_str(V)
    }
}

impl<'de> Deserialize<'de> for Json<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(JsonVisitor)
    }
}

struct JsonVisitor;

impl<'de> Visitor<'de> for JsonVisitor {
    type Value = Json<'de>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(Json::Null)
    }
    fn visit_none<E>(self) -> Result<Self::Value, E> {
        Ok(Json::Null)
    }
    fn visit_bool<E>(self, b: bool) -> Result<Self::Value, E> {
        Ok(Json::Bool(b))
    }
    fn visit_i64<E>(self, n: i64) -> Result<Self::Value, E> {
        Ok(Json::Number(n.into()))
    }
    fn visit_u64<E>(self, n: u64) -> Result<Self::Value, E> {
        Ok(Json::Number(n.into()))
    }
    fn visit_f64<E>(self, n: f64) -> Result<Self::Value, E> {
        // As serde_json's Value: a float it cannot represent becomes null.
        Ok(Number::from_f64(n).map_or(Json::Null, Json::Number))
    }
    fn visit_borrowed_str<E: de::Error>(self, s: &'de str) -> Result<Self::Value, E> {
        Ok(Json::String(Cow::Borrowed(s)))
    }
    fn visit_str<E: de::Error>(self, s: &str) -> Result<Self::Value, E> {
        Ok(Json::String(Cow::Owned(s.to_owned())))
    }
    fn visit_string<E: de::Error>(self, s: String) -> Result<Self::Value, E> {
        Ok(Json::String(Cow::Owned(s)))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0));
        while let Some(item) = seq.next_element()? {
            items.push(item);
        }
        Ok(Json::Array(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut members: Vec<(Cow<'de, str>, Json<'de>)> = Vec::new();
        while let Some(Text(key)) = map.next_key()? {
            let value = map.next_value()?;
            members.push((key, value));
        }
        last_of_each_key(&mut members);
        Ok(Json::Object(members))
    }
}

/// Drops members whose key comes again later (rare: JSON text that repeats a key).
fn last_of_each_key<T>(members: &mut Vec<(Cow<'_, str>, T)>) {
    let n = members.len();
    let repeated = if n <= 16 {
        (0..n).any(|i| (i + 1..n).any(|j| members[i].0 == members[j].0))
    } else {
        let mut keys: Vec<&str> = members.iter().map(|(k, _)| k.as_ref()).collect();
        keys.sort_unstable();
        keys.windows(2).any(|w| w[0] == w[1])
    };
    if !repeated {
        return;
    }
    let mut seen = std::collections::HashSet::new();
    let mut keep: Vec<bool> = members
        .iter()
        .rev()
        .map(|(k, _)| seen.insert(k.clone()))
        .collect();
    keep.reverse();
    let mut keep = keep.into_iter();
    members.retain(|_| keep.next().unwrap_or(true));
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn strings_without_escapes_are_borrowed_and_with_escapes_decoded() {
        let text = r#"{"plain":"abc","escaped":"a\"b\u00e9"}"#;
        let doc = Json::parse(text).unwrap_or_else(|e| panic!("{e}"));
        assert!(matches!(
            doc.get("plain"),
            Some(Json::String(Cow::Borrowed("abc")))
        ));
        assert_eq!(
            Doc::as_str(doc.get("escaped").unwrap_or(&Json::Null)),
            Some("a\"bé")
        );
    }

    #[test]
    fn a_repeated_key_keeps_its_last_value_as_serde_json_does() {
        for n in [3, 40] {
            let mut text = String::from("{");
            for i in 0..n {
                text.push_str(&format!("\"k{i}\":{i},"));
            }
            text.push_str("\"k1\":\"last\"}");
            let doc = Json::parse(&text).unwrap_or_else(|e| panic!("{e}"));
            let value: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(doc.members().map(Iterator::count), Some(n));
            assert_eq!(
                Doc::as_str(doc.get("k1").unwrap_or(&Json::Null)),
                Some("last")
            );
            assert_eq!(value["k1"], json!("last"));
        }
    }

    #[test]
    fn scalars_are_written_as_serde_json_writes_them() {
        let text =
            r#"[null,true,false,0,-7,18446744073709551615,1.5,1e300,-0.0,2.50,"x\n\u0001ü😀"]"#;
        let doc = Json::parse(text).unwrap_or_else(|e| panic!("{e}"));
        let value: Value = serde_json::from_str(text).unwrap_or_else(|e| panic!("{e}"));
        let (Some(ours), Some(theirs)) = (Doc::as_array(&doc), Doc::as_array(&value)) else {
            panic!("arrays expected");
        };
        for (a, b) in ours.iter().zip(theirs) {
            let (mut x, mut y) = (Vec::new(), Vec::new());
            a.write_scalar(&mut x);
            b.write_scalar(&mut y);
            assert_eq!(x, y);
        }
    }

    #[test]
    fn invalid_text_is_an_error() {
        assert!(Json::parse(r#"{"a":}"#).is_err());
        assert!(Json::parse(r#"{"a":1} x"#).is_err());
    }
}
