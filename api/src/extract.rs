//! Request extractors that turn every kind of bad input into a clear problem response:
//! malformed JSON (400), wrong content type (415), oversized bodies (413), wrong types, missing or
//! unknown fields and failed validation (422, with the field's path), bad ids (404).

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Path, Query, Request};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use serde::de::DeserializeOwned;

use crate::error::ApiError;

mod strict;

/// Checks a request body's content beyond its shape. Returns every bad field at once.
pub trait Validate {
    fn validate(&self) -> Result<(), domain::Error> {
        Ok(())
    }
}

/// A JSON body, deserialized and validated.
#[derive(Debug)]
pub struct ApiJson<T>(pub T);

impl<T, S> FromRequest<S> for ApiJson<T>
where
    T: DeserializeOwned + Validate,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let is_json = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .is_some_and(|mime| {
                let mime = mime.trim().to_ascii_lowercase();
                mime == "application/json"
                    || (mime.starts_with("application/") && mime.ends_with("+json"))
            });
        if !is_json {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "the request body must be JSON, sent with `Content-Type: application/json`",
            ));
        }
        let bytes = Bytes::from_request(req, state).await.map_err(|rejection| {
            if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "payload_too_large",
                    "the request body is larger than this server accepts",
                )
            } else {
                ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "unreadable_body",
                    "the request body could not be read",
                )
            }
        })?;
        if has_nul_escape(&bytes) {
            return Err(nul_refused(""));
        }
        let value = parse_json::<T>(&bytes)?;
        value.validate().map_err(ApiError::from)?;
        Ok(Self(value))
    }
}

/// Deserializes a JSON object, telling syntax errors (400) from shape errors (422, with the
/// path). Every request body of this API is an object, and so is every value read into a
/// struct inside it: serde would otherwise fill a struct's fields from an array by position.
/// The body itself is checked before serde sees it; nested values as they are read
/// ([`strict::Strict`]).
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let malformed = |e: &serde_json::Error| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "malformed_json",
            format!("the request body is not valid JSON: {e}"),
        )
    };
    if bytes.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        // Valid JSON of another kind is a shape error; anything else a syntax error.
        return Err(
            match serde_json::from_slice::<serde::de::IgnoredAny>(bytes) {
                Ok(_) => ApiError::validation(vec![domain::FieldError {
                    field: String::new(),
                    message: "the request body must be a JSON object".into(),
                }]),
                Err(e) => malformed(&e),
            },
        );
    }
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value: T = serde_path_to_error::deserialize(strict::Strict(&mut de)).map_err(|err| {
        let path = err.path().to_string();
        let inner = err.into_inner();
        match inner.classify() {
            serde_json::error::Category::Data => ApiError::validation(vec![domain::FieldError {
                field: if path == "." { String::new() } else { path },
                message: strip_position(&inner.to_string()),
            }]),
            _ => malformed(&inner),
        }
    })?;
    de.end().map_err(|e| malformed(&e))?;
    Ok(value)
}

/// PostgreSQL stores no NUL character in `text` or `jsonb`: a string carrying one is refused at
/// the door (422), not by the database (which would make it a 500).
fn nul_refused(field: &str) -> ApiError {
    ApiError::validation(vec![domain::FieldError {
        field: field.to_owned(),
        message: "must not contain the NUL character (U+0000)".into(),
    }])
}

/// Whether JSON text holds the escape `\u0000` (a NUL in a string; JSON allows no raw one): a
/// backslash that is not itself escaped, then `u0000`.
fn has_nul_escape(json: &[u8]) -> bool {
    let mut i = 0;
    while i < json.len() {
        if json[i] == b'\\' {
            if json[i + 1..].starts_with(b"u0000") {
                return true;
            }
            i += 2;
        } else {
            i += 1;
        }
    }
    false
}

/// serde's messages end in "at line 1 column 12": noise once the field path is given. They
/// also name our Rust types ("expected struct StageRequest"): a client knows them as objects.
fn strip_position(message: &str) -> String {
    let message = match message.rfind(" at line ") {
        Some(i) => &message[..i],
        None => message,
    };
    match message.find("expected struct ") {
        Some(i) => {
            let rest = &message[i + "expected struct ".len()..];
            let name_end = rest
                .find(|c: char| !c.is_alphanumeric() && c != '_')
                .unwrap_or(rest.len());
            format!("{}expected an object{}", &message[..i], &rest[name_end..])
        }
        None => message.to_owned(),
    }
}

/// Query-string parameters; a bad value is a 422 naming the parameter.
#[derive(Debug)]
pub struct ApiQuery<T>(pub T);

impl<T, S> FromRequestParts<S> for ApiQuery<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        if let Some(query) = parts.uri.query() {
            for (key, value) in form_urlencoded::parse(query.as_bytes()) {
                if key.contains('\0') || value.contains('\0') {
                    return Err(nul_refused(&key.replace('\0', "\u{fffd}")));
                }
            }
        }
        Query::<T>::from_request_parts(parts, state)
            .await
            .map(|Query(v)| Self(v))
            .map_err(|rejection| {
                let text = rejection.body_text();
                let detail = text
                    .strip_prefix("Failed to deserialize query string: ")
                    .unwrap_or(&text);
                let (field, message) = detail.split_once(": ").unwrap_or(("query", detail));
                ApiError::validation(vec![domain::FieldError {
                    field: field.to_owned(),
                    message: message.to_owned(),
                }])
            })
    }
}

/// Path parameters. An id that cannot even be parsed names nothing that exists: 404.
#[derive(Debug)]
pub struct ApiPath<T>(pub T);

impl<T, S> FromRequestParts<S> for ApiPath<T>
where
    T: DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        Path::<T>::from_request_parts(parts, state)
            .await
            .map(|Path(v)| Self(v))
            .map_err(|_| {
                ApiError::not_found(
                    "no such resource: the id in the path is not one this API issued",
                )
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Body {
        name: String,
        count: u32,
    }

    #[test]
    fn syntax_errors_are_400_and_shape_errors_are_422_with_the_path() {
        let e = parse_json::<Body>(b"{\"name\": ").err();
        assert_eq!(e.map(|e| e.code), Some("malformed_json".into()));
        let e = parse_json::<Body>(br#"{"name": "x", "count": "three"}"#).err();
        let e = e.as_ref();
        assert_eq!(e.map(|e| e.status), Some(StatusCode::UNPROCESSABLE_ENTITY));
        assert_eq!(e.map(|e| e.errors[0].field.as_str()), Some("count"));
        let e = parse_json::<Body>(br#"{"name": "x", "count": 1, "admin": true}"#).err();
        assert_eq!(e.map(|e| e.status), Some(StatusCode::UNPROCESSABLE_ENTITY));
        let e = parse_json::<Body>(b"{\"name\": \"\xff\xfe\", \"count\": 1}").err();
        assert_eq!(e.map(|e| e.code), Some("malformed_json".into()));
        assert!(parse_json::<Body>(br#"{"name": "x", "count": 1} trailing"#).is_err());
    }

    #[derive(Debug, PartialEq, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Stage {
        source: String,
        target: String,
    }

    #[derive(Debug, PartialEq, serde::Deserialize)]
    #[serde(rename_all = "snake_case")]
    enum Gate {
        Manual { approvers: u32 },
        Tests(Vec<String>),
    }

    #[derive(Debug, PartialEq, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Pipeline {
        stages: Vec<Stage>,
        first: Option<Stage>,
        by_name: Option<std::collections::HashMap<String, Stage>>,
        gate: Option<Gate>,
        tags: Option<Vec<String>>,
        pair: Option<(u32, u32)>,
        definition: Option<serde_json::Value>,
    }

    /// The field and message of a 422.
    fn refused(body: &str) -> Option<(String, String)> {
        let e = parse_json::<Pipeline>(body.as_bytes()).err()?;
        assert_eq!(e.status, StatusCode::UNPROCESSABLE_ENTITY, "{body}: {e:?}");
        Some((e.errors[0].field.clone(), e.errors[0].message.clone()))
    }

    #[test]
    fn an_array_is_refused_wherever_an_object_is_expected_with_the_fields_path() {
        let expected = "invalid type: sequence, expected an object".to_owned();
        for (body, field) in [
            (r#"{"stages": [["a", "b"]]}"#, "stages[0]"),
            (
                r#"{"stages": [{"source": "a", "target": "b"}, ["a", "b"]]}"#,
                "stages[1]",
            ),
            (r#"{"stages": [], "first": ["a", "b"]}"#, "first"),
            (
                r#"{"stages": [], "by_name": {"x": ["a", "b"]}}"#,
                "by_name.x",
            ),
            (r#"{"stages": [], "gate": {"manual": [2]}}"#, "gate.manual"),
        ] {
            assert_eq!(
                refused(body),
                Some((field.to_owned(), expected.clone())),
                "{body}"
            );
        }
        // Arrays are still arrays where a list, a tuple, a tuple variant or any JSON is wanted.
        let ok = parse_json::<Pipeline>(
            br#"{"stages": [{"source": "a", "target": "b"}], "gate": {"tests": ["smoke"]},
                 "tags": ["x"], "pair": [1, 2], "definition": {"nodes": [[1, 2], {"a": [3]}]}}"#,
        );
        let ok = ok.unwrap_or_else(|e| panic!("{e:?}"));
        assert_eq!(ok.gate, Some(Gate::Tests(vec!["smoke".into()])));
        assert_eq!(ok.pair, Some((1, 2)));
        assert_eq!(
            ok.definition,
            Some(serde_json::json!({"nodes": [[1, 2], {"a": [3]}]}))
        );
        // Other shape errors still name the field, and no Rust type.
        assert_eq!(
            refused(r#"{"stages": ["ab"]}"#),
            Some((
                "stages[0]".into(),
                "invalid type: string \"ab\", expected an object".into()
            ))
        );
    }

    #[test]
    fn a_nul_escape_is_found_and_an_escaped_backslash_is_not_one() {
        assert!(has_nul_escape(br#"{"name": "a\u0000"}"#));
        assert!(has_nul_escape(br#"{"a\u0000": 1}"#));
        assert!(has_nul_escape(br#"["\\\u0000"]"#));
        assert!(!has_nul_escape(br#"{"name": "a\\u0000"}"#));
        assert!(has_nul_escape(br#"{"name": "\u00001"}"#));
        assert!(!has_nul_escape(br#"{"name": "u0000 \u0001"}"#));
        assert!(!has_nul_escape(b"\\"));
    }
}
