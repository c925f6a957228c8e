//! Impersonating from the web UI (PLAT-005, PLAT-006, PLAT-013). A platform admin starts an
//! impersonation with a form on a tenant's console page; the browser then carries the
//! impersonation's token in `wfo_session` and keeps the admin's own token, untouched, in
//! `wfo_admin_session`. Ending restores the admin's cookie, so it works even when the
//! impersonation ran out or was ended elsewhere (the sign-in page offers it then).
//!
//! Starting calls the API's own handler, so the checks (reason, duration, who may be
//! impersonated) and the `platform.impersonation_started` entry are the API's; ending goes
//! through the same function as the API's `…/end` and sign-out.

use std::sync::Arc;

use axum::extract::{Form, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::{Extension, Json};
use chrono::Utc;
use domain::audit::Actor;
use domain::{sessions, tokens};
use serde::Deserialize;
use uuid::Uuid;

use super::platform::{self, PLATFORM_ONLY};
use super::{SESSION_COOKIE, Viewer, clear_cookie, read_cookie, set_cookie};
use crate::app::AppState;
use crate::auth::{ClientMeta, Invalidation, PlatformAdmin, csrf_token, publish, session_cookie};
use crate::error::ApiError;
use crate::extract::{ApiJson, Validate};
use crate::routes::impersonation::{self as api, StartImpersonationRequest};

/// The cookie that keeps the admin's own session while `wfo_session` holds an impersonation.
pub const ADMIN_SESSION_COOKIE: &str = "wfo_admin_session";

#[derive(Debug, Deserialize)]
pub struct StartForm {
    csrf: String,
    tenant_id: Uuid,
    user_id: Uuid,
    reason: String,
    /// Empty: the API's default.
    #[serde(default)]
    minutes: String,
}

/// `POST /platform/impersonate`: starts impersonating a tenant's user and switches this browser
/// to the impersonation, keeping the admin's session aside.
pub async fn start(
    State(state): State<AppState>,
    Extension(meta): Extension<ClientMeta>,
    headers: HeaderMap,
    v: Viewer,
    Form(form): Form<StartForm>,
) -> Response {
    let nav = v.nav("platform");
    if form.csrf != nav.csrf {
        return platform::denied(nav, "This form has expired: reload the page and try again.");
    }
    let (Some(user_id), true) = (v.principal.user_id(), v.principal.platform_admin) else {
        return platform::denied(nav, PLATFORM_ONLY);
    };
    let Some(own_token) = session_cookie(&headers) else {
        return Redirect::to("/login").into_response();
    };
    let minutes = match form.minutes.trim() {
        "" => None,
        m => match m.parse::<u32>() {
            Ok(m) => Some(m),
            Err(_) => {
                let e = domain::Error::invalid("minutes", "must be a whole number of minutes");
                return refused(&state, &v, form.tenant_id, &ApiError::from(e)).await;
            }
        },
    };
    let req = StartImpersonationRequest {
        tenant_id: form.tenant_id,
        user_id: form.user_id,
        reason: form.reason,
        minutes,
    };
    if let Err(e) = req.validate() {
        return refused(&state, &v, form.tenant_id, &ApiError::from(e)).await;
    }
    let admin = PlatformAdmin {
        user_id,
        principal: Arc::clone(&v.principal),
        meta,
    };
    match api::start_impersonation(State(state.clone()), admin, ApiJson(req)).await {
        Ok((_, Json(started))) => {
            let mut resp = Redirect::to("/").into_response();
            set_cookie(&mut resp, &state, ADMIN_SESSION_COOKIE, &own_token);
            set_cookie(&mut resp, &state, SESSION_COOKIE, &started.token);
            resp
        }
        Err(e) if e.status.is_server_error() => {
            tracing::error!(error = ?e, "starting an impersonation from the UI failed");
            super::difficulties()
        }
        Err(e) => refused(&state, &v, form.tenant_id, &e).await,
    }
}

/// The tenant's console page again, with why the impersonation did not start, under the
/// API's status.
async fn refused(state: &AppState, v: &Viewer, tenant_id: Uuid, e: &ApiError) -> Response {
    let mut resp = platform::tenant_page(
        state,
        v,
        tenant_id,
        &platform::TenantQuery::default(),
        Some(e.message.clone()),
    )
    .await;
    if resp.status() == StatusCode::OK {
        *resp.status_mut() = e.status;
    }
    resp
}

#[derive(Debug, Deserialize)]
pub struct EndForm {
    csrf: String,
}

/// `POST /platform/impersonation/end`: ends this browser's impersonation (if it still runs) and
/// returns to the admin's own session, or to the sign-in page when that is gone too.
pub async fn end(
    State(state): State<AppState>,
    Extension(meta): Extension<ClientMeta>,
    headers: HeaderMap,
    viewer: Option<Viewer>,
    Form(form): Form<EndForm>,
) -> Response {
    let current = session_cookie(&headers);
    let admin_token = read_cookie(&headers, ADMIN_SESSION_COOKIE);
    // The page's token derives from either cookie: the banner's from the impersonation, the
    // sign-in page's (once the impersonation is dead) from the admin's.
    let csrf_ok = [&current, &admin_token]
        .into_iter()
        .flatten()
        .any(|t| csrf_token(t) == form.csrf);
    if !csrf_ok {
        return match viewer {
            Some(v) => platform::denied(
                v.nav("platform"),
                "This form has expired: reload the page and try again.",
            ),
            None => Redirect::to("/login").into_response(),
        };
    }
    // Resolved directly, not through the request's principal: an impersonation that ran out or
    // was ended elsewhere is still recorded as ended by its admin.
    let session = match resolve(&state, current.as_deref()).await {
        Ok(s) => s,
        Err(e) => return super::pages::failed(&e),
    };
    let mut own_session = false;
    let mut impersonator = None;
    if let Some(s) = session {
        match s.impersonator_user_id {
            Some(admin_id) => {
                impersonator = Some(admin_id);
                let by = s.impersonator_email.unwrap_or_default();
                let actor = Actor {
                    user_id: Some(admin_id),
                    label: by.clone(),
                    ip: meta.ip,
                    request_id: meta.request_id,
                    ..Actor::default()
                };
                if let Err(e) = end_of_session(&state, s.session_id, &by, &actor).await {
                    tracing::error!(error = ?e, "ending an impersonation from the UI failed");
                    return super::difficulties();
                }
            }
            // A stale page: the browser is already back in a session of its own.
            None => own_session = live(&s),
        }
    }
    let admin = match resolve(&state, admin_token.as_deref()).await {
        Ok(s) => s,
        Err(e) => return super::pages::failed(&e),
    };
    // Only the session of the platform admin who started this impersonation comes back: a kept
    // cookie someone else planted (or that belongs to another admin) is dropped, and a browser
    // already in a live session of its own keeps it.
    let usable = admin.is_some_and(|a| {
        a.impersonator_user_id.is_none()
            && a.platform_admin
            && live(&a)
            && impersonator.is_none_or(|id| id == a.user_id)
    });
    let mut resp = Redirect::to("/platform").into_response();
    match admin_token {
        _ if own_session => {}
        Some(token) if usable => set_cookie(&mut resp, &state, SESSION_COOKIE, &token),
        _ => {
            resp = Redirect::to("/login").into_response();
            clear_cookie(&mut resp, SESSION_COOKIE);
        }
    }
    clear_cookie(&mut resp, ADMIN_SESSION_COOKIE);
    resp
}

/// The session behind a cookie's token, if any (revoked and expired ones too).
async fn resolve(
    state: &AppState,
    token: Option<&str>,
) -> Result<Option<sessions::SessionAuth>, domain::Error> {
    match token {
        Some(t) => sessions::resolve(&state.db, &tokens::hash(t)).await,
        None => Ok(None),
    }
}

/// Whether a session still signs its user in.
fn live(s: &sessions::SessionAuth) -> bool {
    s.revoked_at.is_none() && s.expires_at > Utc::now() && !s.user_disabled
}

/// Ends the impersonation that session `session_id` belongs to, if any (a no-op for one that
/// has ended), through the API's path: audited, and its token dead on every server.
pub(super) async fn end_of_session(
    state: &AppState,
    session_id: Uuid,
    ended_by: &str,
    actor: &Actor,
) -> Result<(), ApiError> {
    if let Some(id) = domain::impersonation::of_session(&state.db, session_id).await? {
        api::end(state, id, ended_by, actor).await?;
    }
    Ok(())
}

/// Signs out the session behind `token` (the admin's kept session, at sign-out).
pub(super) async fn revoke_token(state: &AppState, token: &str) {
    match sessions::resolve(&state.db, &tokens::hash(token)).await {
        Ok(Some(s)) => {
            if let Err(e) = sessions::revoke(&state.db, s.session_id).await {
                tracing::warn!(error = %e, "revoking the admin's session at sign-out failed");
            }
            // Other servers drop it from their caches too.
            if let Err(e) = publish(&state.db, Invalidation::Session(s.session_id)).await {
                tracing::warn!(error = %e, "publishing the admin's sign-out failed");
            }
            state.auth_cache.evict(Invalidation::Session(s.session_id));
        }
        Ok(None) => {}
        Err(e) => tracing::warn!(error = %e, "reading the admin's session at sign-out failed"),
    }
}
