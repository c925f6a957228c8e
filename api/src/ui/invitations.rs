//! Joining a tenant from an invitation (TEAM-001): the page at `/invitations/accept#<token>`,
//! the link an admin hands over or the invitation email carries. The token stays in the URL's
//! fragment, which browsers never send, so it reaches no server or proxy log: the page's script
//! (`team.js`) posts it in a form body. That first post opens the invitation — which tenant, for
//! which email, with what role, and whether the email has an account — and the page asks for a
//! name and a new password, or for the account's current password. The second post accepts it
//! through the API's own acceptance ([`crate::routes::auth::accept`]) and signs the browser in
//! as the sign-in form does, in the tenant joined.

use askama::Template;
use axum::Extension;
use axum::extract::{Form, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Redirect, Response};
use chrono::{DateTime, Utc};
use domain::{Role, invitations, tenancy};
use serde::Deserialize;

use super::{ADMIN_SESSION_COOKIE, clear_cookie, refuse_cross_site, render, set_cookie};
use crate::app::AppState;
use crate::auth::{ClientMeta, SESSION_COOKIE};
use crate::error::ApiError;
use crate::extract::Validate;
use crate::routes::auth::{AcceptInvitationRequest, accept as accept_invitation};

/// What an invitation offers, shown before anything is asked for.
struct Invited {
    tenant: String,
    email: String,
    role: Role,
    expires_at: DateTime<Utc>,
    /// The email has an account: accepting asks for its password instead of creating one.
    has_account: bool,
}

#[derive(Template)]
#[template(path = "invitation_accept.html")]
struct AcceptPage {
    /// The token, once posted (kept in the form for the next step).
    token: String,
    /// `None` before the token is posted, or when it cannot be used (`error` says why).
    invitation: Option<Invited>,
    /// The name typed, kept when the page is shown again.
    name: String,
    error: Option<String>,
    /// Per-field problems of a refused acceptance (`name`, `password`).
    field_errors: Vec<(String, String)>,
}

impl AcceptPage {
    fn field_error(&self, field: &str) -> Option<&str> {
        self.field_errors
            .iter()
            .find(|(f, _)| f == field)
            .map(|(_, m)| m.as_str())
    }

    fn empty() -> Self {
        Self {
            token: String::new(),
            invitation: None,
            name: String::new(),
            error: None,
            field_errors: Vec::new(),
        }
    }
}

/// The page as first loaded: its script posts the token from the fragment.
pub async fn page() -> Response {
    render(&AcceptPage::empty())
}

#[derive(Debug, Deserialize)]
pub struct AcceptForm {
    #[serde(default)]
    token: String,
    name: Option<String>,
    /// Absent when the form only opens the invitation.
    password: Option<String>,
}

/// Both posts are refused when another site sent them (see [`refuse_cross_site`]): accepting
/// signs the browser in, so a page elsewhere could otherwise sign a visitor in to an account
/// of its choosing.
pub async fn accept(
    State(state): State<AppState>,
    Extension(meta): Extension<ClientMeta>,
    headers: HeaderMap,
    uri: Uri,
    Form(form): Form<AcceptForm>,
) -> Response {
    if let Err(e) = refuse_cross_site(&headers, &uri, &state.config.public_url) {
        return closed(e.status, &sentence(&e.message));
    }
    let token = form.token.trim().to_owned();
    if token.is_empty() {
        return closed(
            StatusCode::BAD_REQUEST,
            "This link has no invitation in it: open the whole link from the invitation (it ends with #wfo_i_…).",
        );
    }
    let invited = match open(&state, &token).await {
        Ok(invited) => invited,
        Err(e) => return refused(&e),
    };
    let name = form
        .name
        .map(|n| n.trim().to_owned())
        .filter(|n| !n.is_empty());
    let mut page = AcceptPage {
        token: token.clone(),
        name: name.clone().unwrap_or_default(),
        invitation: Some(invited),
        ..AcceptPage::empty()
    };
    let Some(password) = form.password else {
        return render(&page);
    };
    let req = AcceptInvitationRequest {
        token,
        name,
        password,
    };
    let accepted = match req.validate() {
        Ok(()) => accept_invitation(&state, &meta, req).await,
        Err(e) => Err(e.into()),
    };
    match accepted {
        Ok(session) => {
            let mut resp = Redirect::to("/").into_response();
            set_cookie(&mut resp, &state, SESSION_COOKIE, &session.token);
            // As a fresh sign-in: no earlier impersonation to return from.
            clear_cookie(&mut resp, ADMIN_SESSION_COOKIE);
            resp
        }
        // Used, revoked or expired meanwhile.
        Err(e) if matches!(e.status, StatusCode::GONE | StatusCode::NOT_FOUND) => refused(&e),
        Err(e) => {
            log_if_ours(&e);
            page.field_errors = e
                .errors
                .iter()
                .map(|f| (f.field.clone(), f.message.clone()))
                .collect();
            page.error = Some(if page.field_errors.is_empty() {
                sentence(&e.message)
            } else {
                "Check the fields below.".to_owned()
            });
            (e.status, render(&page)).into_response()
        }
    }
}

/// What the token's invitation offers, if it can still be accepted (else 404 or 410).
async fn open(state: &AppState, token: &str) -> Result<Invited, ApiError> {
    if token.len() > 200 {
        return Err(domain::Error::not_found("invitation").into());
    }
    // The same checks acceptance makes, without a lock: this only shows what the link offers.
    let invitation = invitations::pending(&state.db, token).await?;
    let tenant = tenancy::tenant(&state.db, invitation.tenant_id).await?;
    let has_account = tenancy::user_with_password(&state.db, &invitation.email)
        .await?
        .is_some();
    Ok(Invited {
        tenant: tenant.name,
        email: invitation.email,
        role: invitation.role,
        expires_at: invitation.expires_at,
        has_account,
    })
}

/// The page for an invitation that cannot be used: unknown, used, revoked or expired.
fn refused(e: &ApiError) -> Response {
    log_if_ours(e);
    let message = if e.status == StatusCode::NOT_FOUND {
        "No invitation has this link: check that you opened all of it, or ask an admin of the team for a new invitation.".to_owned()
    } else {
        sentence(&e.message)
    };
    closed(e.status, &message)
}

fn closed(status: StatusCode, message: &str) -> Response {
    (
        status,
        render(&AcceptPage {
            error: Some(message.to_owned()),
            ..AcceptPage::empty()
        }),
    )
        .into_response()
}

/// A failure that is the server's, not the visitor's, goes to the log (its message on the page
/// says nothing of it).
fn log_if_ours(e: &ApiError) {
    if e.status.is_server_error() {
        tracing::error!(error = ?e, "accepting an invitation failed");
    }
}

/// The API's message as a sentence for the page: capitalised, with a full stop.
fn sentence(message: &str) -> String {
    let mut chars = message.chars();
    let mut out: String = chars
        .next()
        .map(|c| c.to_uppercase().chain(chars).collect())
        .unwrap_or_default();
    if !out.is_empty() && !out.ends_with(['.', '!', '?']) {
        out.push('.');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::sentence;

    #[test]
    fn api_messages_read_as_sentences() {
        assert_eq!(
            sentence("this invitation has expired; ask an admin for a new one"),
            "This invitation has expired; ask an admin for a new one."
        );
        assert_eq!(sentence("Done."), "Done.");
        assert_eq!(sentence(""), "");
    }
}
