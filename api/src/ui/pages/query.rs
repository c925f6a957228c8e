//! Query strings of the pages. A form's "all" option sends an empty field (`environment_id=`):
//! that is no filter, not a value to parse. A value a page cannot read (`?pipeline_id=x`, from a
//! hand-edited or stale link) answers with a page in the layout saying so, not axum's plain text.

use std::fmt::Display;
use std::str::FromStr;

use askama::Template;
use axum::extract::{FromRequestParts, Query};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde::de::{self, DeserializeOwned, Deserializer};

use crate::ui::{Nav, Viewer, render};

/// For `#[serde(default, deserialize_with = "empty_as_none")]`: an absent or blank field is
/// `None`, anything else must parse as `T`.
pub fn empty_as_none<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: FromStr,
    T::Err: Display,
{
    match Option::<String>::deserialize(d)?.as_deref().map(str::trim) {
        None | Some("") => Ok(None),
        Some(s) => s.parse().map(Some).map_err(de::Error::custom),
    }
}

/// A page's query string; see the module's comment for what a bad one gets.
pub struct PageQuery<T>(pub T);

impl<T, S> FromRequestParts<S> for PageQuery<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let detail = match Query::<T>::try_from_uri(&parts.uri) {
            Ok(Query(q)) => return Ok(Self(q)),
            Err(rejection) => rejection.body_text(),
        };
        // Signed out: the sign-in page, as for any page.
        let viewer = Viewer::from_request_parts(parts, state).await?;
        Err(bad_query(viewer.nav(""), parts.uri.path(), &detail))
    }
}

#[derive(Template)]
#[template(path = "bad_request.html")]
struct BadRequest<'a> {
    nav: Nav,
    /// The parameter that could not be read (empty when the query string itself is broken).
    field: &'a str,
    /// The page without its query string.
    path: &'a str,
}

/// The 400 page for a query string `detail` (axum's rejection text) the page cannot read.
fn bad_query(nav: Nav, path: &str, detail: &str) -> Response {
    tracing::debug!(%path, %detail, "a page's query string was refused");
    let detail = detail
        .strip_prefix("Failed to deserialize query string: ")
        .unwrap_or(detail);
    let field = detail
        .split_once(": ")
        .map(|(f, _)| f)
        .filter(|f| !f.is_empty() && f.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'))
        .unwrap_or_default();
    (
        StatusCode::BAD_REQUEST,
        render(&BadRequest { nav, field, path }),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Deserialize)]
    struct Q {
        #[serde(default, deserialize_with = "empty_as_none")]
        id: Option<uuid::Uuid>,
        #[serde(default, deserialize_with = "empty_as_none")]
        n: Option<u32>,
    }

    fn parse(query: &str) -> Result<Q, String> {
        let uri: axum::http::Uri = format!("/x?{query}").parse().map_err(|e| format!("{e}"))?;
        Query::<Q>::try_from_uri(&uri)
            .map(|Query(q)| q)
            .map_err(|e| e.body_text())
    }

    #[test]
    fn blank_fields_are_absent_and_bad_ones_name_the_field() {
        let q = parse("id=&n=%20").unwrap_or_else(|e| panic!("{e}"));
        assert!(q.id.is_none() && q.n.is_none());
        let q = parse("n=7").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(q.n, Some(7));
        assert!(q.id.is_none());
        let e = parse("id=x").err().unwrap_or_default();
        assert!(e.contains("id: "), "{e}");
    }
}
