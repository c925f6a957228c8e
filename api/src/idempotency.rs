//! `Idempotency-Key` for POSTs: a client that retries a POST with the same key gets the first
//! response replayed instead of creating a second thing.
//!
//! Keys are scoped to the caller (tenant + user or API key). The first request records the key
//! before running; a concurrent duplicate gets 409 `idempotency_in_progress`; a completed one is
//! replayed with `Idempotent-Replayed: true`; the same key with a different request gets 422.
//! Responses may carry secrets (a new API key), so stored bodies are sealed with the master key.
//! 5xx responses are not recorded, so a retry runs again. Records are kept for 24 hours.

use axum::body::{Body, to_bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use domain::crypto::Sealed;
use secrecy::ExposeSecret;
use sha2::{Digest, Sha256};
use sqlx::FromRow;

use crate::app::AppState;
use crate::auth::{Authenticated, Subject};
use crate::error::ApiError;

pub const HEADER: &str = "idempotency-key";
pub const REPLAYED_HEADER: &str = "idempotent-replayed";
/// A request still marked in progress after this long is taken to have died with its process.
const STALE_AFTER_SECS: f64 = 300.0;
/// Responses larger than this are not recorded (the request still succeeds).
const MAX_STORED_RESPONSE: usize = 1024 * 1024;

#[derive(FromRow)]
struct Record {
    request_hash: Vec<u8>,
    status_code: Option<i32>,
    content_type: Option<String>,
    key_id: Option<String>,
    response_body: Option<Vec<u8>>,
    stale: bool,
}

pub async fn middleware(State(state): State<AppState>, req: Request, next: Next) -> Response {
    if req.method() != Method::POST {
        return next.run(req).await;
    }
    let Some(key) = req.headers().get(HEADER).cloned() else {
        return next.run(req).await;
    };
    let key = match key.to_str() {
        Ok(k) if (1..=255).contains(&k.len()) && k.bytes().all(|b| b.is_ascii_graphic()) => {
            k.to_owned()
        }
        _ => {
            return ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_idempotency_key",
                "Idempotency-Key must be 1-255 visible ASCII characters",
            )
            .into_response();
        }
    };
    let (mut parts, body) = req.into_parts();
    // Idempotency is per caller; unauthenticated requests are passed through (and refused later
    // by their handler if they needed authentication).
    let Ok(caller) =
        <Authenticated as axum::extract::FromRequestParts<()>>::from_request_parts(&mut parts, &())
            .await
    else {
        return next.run(Request::from_parts(parts, body)).await;
    };
    // A replay skips the handler and its permission checks: the scope holds everything those
    // checks depend on, so a demoted user, or an admin impersonating the user, never gets the
    // answer the handler gave the caller as they were.
    let principal = &caller.principal;
    let scope = match &principal.subject {
        Subject::User { user_id, .. } => {
            let (tenant, role) = principal
                .tenant
                .as_ref()
                .map(|t| (t.id.to_string(), t.role.as_str()))
                .unwrap_or_default();
            let platform = if principal.platform_admin {
                ":platform"
            } else {
                ""
            };
            let acting = principal
                .impersonator
                .as_ref()
                .map(|i| format!(":as:{}", i.user_id))
                .unwrap_or_default();
            format!("{tenant}:user:{user_id}:{role}{platform}{acting}")
        }
        // A key's role never changes; revoked or expired, it does not get this far.
        Subject::ApiKey { key_id, .. } => format!("key:{key_id}"),
    };
    let Ok(bytes) = to_bytes(body, state.config.max_body_bytes).await else {
        return ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            "the request body is larger than this server accepts",
        )
        .into_response();
    };
    let mut hasher = Sha256::new();
    hasher.update(parts.method.as_str());
    hasher.update(b" ");
    hasher.update(parts.uri.path_and_query().map_or("", |p| p.as_str()));
    hasher.update(b"\n");
    hasher.update(&bytes);
    let request_hash = hasher.finalize().to_vec();

    match begin(&state, &scope, &key, &request_hash).await {
        Ok(Begin::Run) => {}
        Ok(Begin::Replay(response)) => return response,
        Err(e) => return e.into_response(),
    }
    let response = next
        .run(Request::from_parts(parts, Body::from(bytes)))
        .await;
    finish(&state, &scope, &key, response).await
}

enum Begin {
    Run,
    Replay(Response),
}

async fn begin(
    state: &AppState,
    scope: &str,
    key: &str,
    request_hash: &[u8],
) -> Result<Begin, ApiError> {
    let inserted = sqlx::query(
        "insert into idempotency_keys (scope, key, request_hash) values ($1, $2, $3) on conflict do nothing",
    )
    .bind(scope)
    .bind(key)
    .bind(request_hash)
    .execute(&state.db)
    .await?;
    if inserted.rows_affected() == 1 {
        return Ok(Begin::Run);
    }
    let record: Record = sqlx::query_as(
        "select request_hash, status_code, content_type, \
                response_key_id as key_id, \
                response_body, created_at < now() - make_interval(secs => $3) as stale \
         from idempotency_keys where scope = $1 and key = $2",
    )
    .bind(scope)
    .bind(key)
    .bind(STALE_AFTER_SECS)
    .fetch_one(&state.db)
    .await?;
    if record.request_hash != request_hash {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "idempotency_key_reused",
            "this Idempotency-Key was already used for a different request; use a new key",
        ));
    }
    match (record.status_code, record.response_body) {
        (Some(status), Some(body)) => Ok(Begin::Replay(replay(
            state,
            scope,
            key,
            status,
            record.content_type,
            record.key_id,
            &body,
        )?)),
        (Some(status), None) => Ok(Begin::Replay(replay_empty(status))),
        _ if record.stale => {
            sqlx::query(
                "update idempotency_keys set created_at = now() where scope = $1 and key = $2",
            )
            .bind(scope)
            .bind(key)
            .execute(&state.db)
            .await?;
            Ok(Begin::Run)
        }
        _ => Err(ApiError::new(
            StatusCode::CONFLICT,
            "idempotency_in_progress",
            "a request with this Idempotency-Key is still being processed; retry in a moment",
        )),
    }
}

fn aad(scope: &str, key: &str) -> Vec<u8> {
    format!("idempotency:{scope}:{key}").into_bytes()
}

fn replay(
    state: &AppState,
    scope: &str,
    key: &str,
    status: i32,
    content_type: Option<String>,
    key_id: Option<String>,
    stored: &[u8],
) -> Result<Response, ApiError> {
    let sealed = Sealed {
        bytes: stored.to_vec(),
        key_id: key_id.unwrap_or_default(),
    };
    let body = state.keyring.open(&aad(scope, key), &sealed)?;
    let mut response = Response::new(Body::from(body.expose_secret().clone()));
    *response.status_mut() =
        StatusCode::from_u16(u16::try_from(status).unwrap_or(500)).unwrap_or(StatusCode::OK);
    if let Some(ct) = content_type.and_then(|ct| HeaderValue::from_str(&ct).ok()) {
        response.headers_mut().insert(header::CONTENT_TYPE, ct);
    }
    response
        .headers_mut()
        .insert(REPLAYED_HEADER, HeaderValue::from_static("true"));
    Ok(response)
}

fn replay_empty(status: i32) -> Response {
    let mut response = Response::new(Body::empty());
    *response.status_mut() =
        StatusCode::from_u16(u16::try_from(status).unwrap_or(500)).unwrap_or(StatusCode::OK);
    response
        .headers_mut()
        .insert(REPLAYED_HEADER, HeaderValue::from_static("true"));
    response
}

async fn finish(state: &AppState, scope: &str, key: &str, response: Response) -> Response {
    let status = response.status();
    if status.is_server_error() {
        // Let a retry run again.
        if let Err(e) = sqlx::query("delete from idempotency_keys where scope = $1 and key = $2")
            .bind(scope)
            .bind(key)
            .execute(&state.db)
            .await
        {
            tracing::warn!(error = %e, "releasing an idempotency key failed");
        }
        return response;
    }
    let (mut parts, body) = response.into_parts();
    let Ok(bytes) = to_bytes(body, MAX_STORED_RESPONSE).await else {
        tracing::warn!("response too large to record for idempotency");
        return ApiError::internal("response too large to record for idempotency").into_response();
    };
    let content_type = parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let stored = if bytes.is_empty() {
        Ok(None)
    } else {
        state.keyring.seal(&aad(scope, key), &bytes).map(Some)
    };
    let saved = match stored {
        Ok(stored) => sqlx::query(
            "update idempotency_keys set status_code = $3, content_type = $4, response_key_id = $5, \
             response_body = $6, completed_at = now() where scope = $1 and key = $2",
        )
        .bind(scope)
        .bind(key)
        .bind(i32::from(status.as_u16()))
        .bind(content_type)
        .bind(stored.as_ref().map(|s| s.key_id.as_str()))
        .bind(stored.as_ref().map(|s| s.bytes.as_slice()))
        .execute(&state.db)
        .await
        .map(|_| ())
        .map_err(|e| e.to_string()),
        Err(e) => Err(e.to_string()),
    };
    if let Err(e) = saved {
        tracing::warn!(error = %e, "recording an idempotent response failed");
    }
    parts
        .headers
        .insert(REPLAYED_HEADER, HeaderValue::from_static("false"));
    Response::from_parts(parts, Body::from(bytes))
}

/// Deletes records older than a day.
pub async fn purge(db: &sqlx::PgPool) -> Result<u64, sqlx::Error> {
    Ok(
        sqlx::query("delete from idempotency_keys where created_at < now() - interval '24 hours'")
            .execute(db)
            .await?
            .rows_affected(),
    )
}
