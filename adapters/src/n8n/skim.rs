//! Executions read straight from a page's text: the few fields the catalog keeps, everything
//! else (an execution's `data` is most of its size) skipped without building it. Lenient in
//! the way reading a `serde_json::Value` was: a field of an unexpected type counts as absent.

use std::fmt;
use std::marker::PhantomData;

use chrono::{DateTime, Utc};
use serde::de::value::MapAccessDeserializer;
use serde::de::{self, Deserialize, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::Number;

use crate::provider::{Execution, ProviderError, ProviderResult};

/// A member where a scalar is expected; objects and arrays are skipped unread.
#[derive(Debug, Default)]
pub(super) enum Scalar {
    String(String),
    Number(Number),
    Bool(bool),
    #[default]
    Other,
}

impl Scalar {
    /// A string as itself, a number in decimal (how n8n's ids come).
    fn text(self) -> Option<String> {
        match self {
            Scalar::String(s) => Some(s),
            Scalar::Number(n) => Some(n.to_string()),
            _ => None,
        }
    }

    fn into_string(self) -> Option<String> {
        match self {
            Scalar::String(s) => Some(s),
            _ => None,
        }
    }

    fn time(self) -> Option<DateTime<Utc>> {
        self.into_string()
            .and_then(|s| DateTime::parse_from_rfc3339(&s).ok())
            .map(|t| t.with_timezone(&Utc))
    }
}

impl<'de> Deserialize<'de> for Scalar {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Scalar;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_unit<E>(self) -> Result<Scalar, E> {
                Ok(Scalar::Other)
            }
            fn visit_none<E>(self) -> Result<Scalar, E> {
                Ok(Scalar::Other)
            }
            fn visit_bool<E>(self, b: bool) -> Result<Scalar, E> {
                Ok(Scalar::Bool(b))
            }
            fn visit_i64<E>(self, n: i64) -> Result<Scalar, E> {
                Ok(Scalar::Number(n.into()))
            }
            fn visit_u64<E>(self, n: u64) -> Result<Scalar, E> {
                Ok(Scalar::Number(n.into()))
            }
            fn visit_f64<E>(self, n: f64) -> Result<Scalar, E> {
                Ok(Number::from_f64(n).map_or(Scalar::Other, Scalar::Number))
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Scalar, E> {
                Ok(Scalar::String(s.to_owned()))
            }
            fn visit_string<E: de::Error>(self, s: String) -> Result<Scalar, E> {
                Ok(Scalar::String(s))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Scalar, A::Error> {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(Scalar::Other)
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Scalar, A::Error> {
                while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(Scalar::Other)
            }
        }
        d.deserialize_any(V)
    }
}

/// `T` read from an object; anything else is skipped and counts as absent.
#[derive(Debug)]
pub(super) struct Lenient<T>(Option<T>);

impl<T> Default for Lenient<T> {
    fn default() -> Self {
        Self(None)
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Lenient<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<T>(PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for V<T> {
            type Value = Lenient<T>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
                T::deserialize(MapAccessDeserializer::new(map)).map(|t| Lenient(Some(t)))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(Lenient(None))
            }
            fn visit_unit<E>(self) -> Result<Self::Value, E> {
                Ok(Lenient(None))
            }
            fn visit_none<E>(self) -> Result<Self::Value, E> {
                Ok(Lenient(None))
            }
            fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
                Ok(Lenient(None))
            }
            fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
                Ok(Lenient(None))
            }
            fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
                Ok(Lenient(None))
            }
            fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
                Ok(Lenient(None))
            }
            fn visit_str<E: de::Error>(self, _: &str) -> Result<Self::Value, E> {
                Ok(Lenient(None))
            }
        }
        d.deserialize_any(V(PhantomData))
    }
}

/// An execution as n8n lists it, reduced to what [`Execution`] keeps.
#[derive(Debug, serde::Deserialize)]
pub(super) struct ExecutionShape {
    #[serde(default)]
    id: Scalar,
    #[serde(rename = "workflowId", default)]
    workflow_id: Scalar,
    #[serde(default)]
    status: Scalar,
    #[serde(default)]
    mode: Scalar,
    #[serde(default)]
    finished: Scalar,
    #[serde(rename = "startedAt", default)]
    started_at: Scalar,
    #[serde(rename = "stoppedAt", default)]
    stopped_at: Scalar,
    #[serde(default)]
    data: Lenient<Data>,
}

#[derive(Debug, serde::Deserialize)]
struct Data {
    #[serde(rename = "resultData", default)]
    result_data: Lenient<ResultData>,
}

#[derive(Debug, serde::Deserialize)]
struct ResultData {
    #[serde(default)]
    error: Lenient<ErrorShape>,
}

#[derive(Debug, serde::Deserialize)]
struct ErrorShape {
    #[serde(default)]
    message: Scalar,
}

pub(super) fn execution(e: ExecutionShape) -> ProviderResult<Execution> {
    let error_message = e
        .data
        .0
        .and_then(|d| d.result_data.0)
        .and_then(|r| r.error.0)
        .and_then(|e| e.message.into_string());
    Ok(Execution {
        id: e
            .id
            .text()
            .ok_or_else(|| ProviderError::InvalidResponse("an execution without `id`".into()))?,
        workflow_id: e.workflow_id.text(),
        status: e.status.text().unwrap_or_else(|| "unknown".into()),
        mode: e.mode.text(),
        finished: matches!(e.finished, Scalar::Bool(true)),
        started_at: e.started_at.time(),
        stopped_at: e.stopped_at.time(),
        error_message,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(text: &str) -> ProviderResult<Execution> {
        execution(serde_json::from_str(text).unwrap_or_else(|e| panic!("{e}: {text}")))
    }

    #[test]
    fn an_execution_keeps_its_fields_and_error_message() {
        let e = read(
            r#"{"id":"41","finished":false,"mode":"trigger","startedAt":"2026-11-01T10:00:00.000Z",
                "stoppedAt":"2026-11-01T10:00:02.500Z","workflowId":"wf1","status":"error","retryOf":null,
                "data":{"startData":{},"resultData":{"runData":{"Code":[{"data":[1,2,{"x":"y"}]}]},
                        "error":{"message":"Cannot read \"x\"","stack":"..."}}}}"#,
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(e.id, "41");
        assert_eq!(e.workflow_id.as_deref(), Some("wf1"));
        assert_eq!(
            (e.status.as_str(), e.mode.as_deref(), e.finished),
            ("error", Some("trigger"), false)
        );
        assert_eq!(e.error_message.as_deref(), Some("Cannot read \"x\""));
        assert_eq!(
            e.stopped_at
                .zip(e.started_at)
                .map(|(b, a)| (b - a).num_milliseconds()),
            Some(2500)
        );
    }

    #[test]
    fn fields_of_unexpected_types_count_as_absent() {
        let e = read(
            r#"{"id":7,"workflowId":{"x":1},"status":[1],"finished":"yes","startedAt":5,
                "data":[{"resultData":{}}]}"#,
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(e.id, "7");
        assert_eq!(
            (e.workflow_id, e.status.as_str(), e.finished),
            (None, "unknown", false)
        );
        assert_eq!((e.started_at, e.error_message), (None, None));
        let e = read(r#"{"id":"8","data":{"resultData":{"error":"boom"}}}"#)
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(e.error_message, None);
        assert!(matches!(
            read(r#"{"id":null,"status":"success"}"#),
            Err(ProviderError::InvalidResponse(m)) if m.contains("`id`")
        ));
    }
}
