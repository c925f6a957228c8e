//! Path parameters of the pages. An id that does not parse (`/runs/xyz`, from a mistyped or cut
//! link) names nothing there is: the not-found page in the layout, as for an id that parses but
//! is not the tenant's, not axum's plain-text 400.

use axum::extract::{FromRequestParts, Path};
use axum::http::request::Parts;
use axum::response::Response;
use serde::de::DeserializeOwned;

use crate::ui::Viewer;

/// A page's path parameters; see the module's comment for what a bad one gets.
pub struct PagePath<T>(pub T);

impl<T, S> FromRequestParts<S> for PagePath<T>
where
    T: DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match Path::<T>::from_request_parts(parts, state).await {
            Ok(Path(v)) => Ok(Self(v)),
            Err(rejection) => {
                tracing::debug!(path = %parts.uri.path(), detail = %rejection.body_text(), "a page's path was refused");
                // Signed out: the sign-in page, as for any page.
                let viewer = Viewer::from_request_parts(parts, state).await?;
                let (current, what) = named_by(parts.uri.path());
                Err(super::not_found(viewer.nav(current), what))
            }
        }
    }
}

/// The nav entry and the thing a page's path names, from its leading segments.
fn named_by(path: &str) -> (&'static str, &'static str) {
    let mut segments = path.trim_start_matches('/').split('/');
    match (segments.next(), segments.next()) {
        (Some("runs"), _) => ("runs", "run"),
        (Some("promotions"), _) => ("promotions", "promotion"),
        (Some("incidents"), _) => ("incidents", "incident"),
        (Some("support"), _) => ("support", "ticket"),
        (Some("environments"), _) => {
            if segments.next() == Some("workflows") {
                ("workflows", "workflow")
            } else {
                ("environments", "environment")
            }
        }
        (Some("platform"), Some("tenants")) => ("platform", "tenant"),
        (Some("platform"), Some("support")) => ("platform", "ticket"),
        _ => ("", "page"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bad_link_is_named_by_its_page() {
        assert_eq!(named_by("/runs/xyz"), ("runs", "run"));
        assert_eq!(named_by("/environments/x"), ("environments", "environment"));
        assert_eq!(
            named_by("/environments/x/workflows/1"),
            ("workflows", "workflow")
        );
        assert_eq!(named_by("/platform/tenants/x"), ("platform", "tenant"));
        assert_eq!(named_by("/elsewhere"), ("", "page"));
    }
}
