//! The provider abstraction: what WorkflowOps asks of any automation platform, the shapes it
//! gets back, and how failures are classified.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::future::BoxFuture;
use secrecy::SecretString;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use serde_json::value::RawValue;

use crate::limiter::Limits;

/// The platforms WorkflowOps manages (PROV-001). Stored as its lowercase name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProviderKind {
    N8n,
    Make,
}

impl ProviderKind {
    pub const ALL: [Self; 2] = [Self::N8n, Self::Make];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::N8n => "n8n",
            Self::Make => "make",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

impl fmt::Display for ProviderKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A failure, classified where it happened. `Display` is a sentence a user can act on.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ProviderError {
    /// The credentials were refused.
    #[error("the provider refused the API key: {0}")]
    Auth(String),
    #[error("not found in the provider: {0}")]
    NotFound(String),
    /// The provider rejected the request's content; its own message.
    #[error("the provider rejected the request: {0}")]
    Validation(String),
    #[error("the provider is rate limiting requests{}", retry_after.map(|d| format!(" (retry after {} s)", d.as_secs())).unwrap_or_default())]
    RateLimited { retry_after: Option<Duration> },
    /// Worth retrying later: network failures, timeouts, 5xx.
    #[error("the provider is unavailable: {0}")]
    Transient(String),
    /// The provider answered something that is not what its API defines.
    #[error("the provider answered something unreadable: {0}")]
    InvalidResponse(String),
    /// The instance cannot do this (an older version, a licence-gated feature).
    #[error("the provider does not support this: {0}")]
    Unsupported(String),
    #[error("{0}")]
    Permanent(String),
    /// The destination may not be called (an address outside `WFO_OUTBOUND_NETWORKS`); the
    /// message names the address, its class and the setting. Never retried.
    #[error("{0}")]
    Refused(String),
    /// The provider answered with a redirect, which is never followed (the API key would go
    /// along, and the new address would escape the destination check).
    #[error("the server redirected to `{0}`; use that URL as the environment's URL")]
    Redirected(String),
}

impl ProviderError {
    /// Whether trying again later may succeed.
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::RateLimited { .. } | Self::Transient(_))
    }

    /// How long the provider asked us to wait, if it did.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::RateLimited { retry_after } => *retry_after,
            _ => None,
        }
    }

    /// A stable machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Auth(_) => "provider_auth_failed",
            Self::NotFound(_) => "provider_not_found",
            Self::Validation(_) => "provider_rejected",
            Self::RateLimited { .. } => "provider_rate_limited",
            Self::Transient(_) => "provider_unavailable",
            Self::InvalidResponse(_) => "provider_invalid_response",
            Self::Unsupported(_) => "provider_unsupported",
            Self::Permanent(_) => "provider_error",
            Self::Refused(_) => "destination_refused",
            Self::Redirected(_) => "provider_redirected",
        }
    }
}

pub type ProviderResult<T> = Result<T, ProviderError>;

/// Where an environment's provider is and how to call it.
#[derive(Debug, Clone)]
pub struct Connection {
    pub kind: ProviderKind,
    /// The instance's base URL (for n8n, without `/api/v1`).
    pub base_url: String,
    pub api_key: SecretString,
    /// The version found at the last connection test, so writes need no probe.
    pub version: Option<String>,
    pub limits: Limits,
}

/// What a connection test learns.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InstanceInfo {
    pub version: Option<String>,
    pub capabilities: Capabilities,
}

/// What this instance's API can do (it varies by version and licence).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Capabilities {
    /// Credentials can be listed (otherwise they are derived from workflows' references).
    pub list_credentials: bool,
    /// Workflows can be archived and unarchived.
    pub archive: bool,
    /// Publishing is a separate verb from saving.
    pub publish: bool,
}

/// One page of a list, and where the next one starts (None: this was the last).
#[derive(Debug, Clone, PartialEq)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next_cursor: Option<String>,
}

/// A workflow as listed: the provider's JSON text (checked to be a workflow, not parsed).
#[derive(Debug)]
pub struct RawWorkflow {
    pub text: Box<RawValue>,
}

impl RawWorkflow {
    /// For providers that only hand out parsed values: the text is written from the value.
    pub fn from_value(value: &Value) -> ProviderResult<Self> {
        let text = serde_json::value::to_raw_value(value)
            .map_err(|e| ProviderError::InvalidResponse(format!("a workflow's JSON: {e}")))?;
        Ok(Self { text })
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Tag {
    pub id: String,
    pub name: String,
}

/// A credential's metadata; secrets are never fetched.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CredentialMeta {
    pub id: String,
    pub name: String,
    #[serde(rename = "type")]
    pub cred_type: String,
    pub created_at: Option<DateTime<Utc>>,
    pub updated_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProviderUser {
    pub id: String,
    pub email: String,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    pub role: Option<String>,
    pub is_pending: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Execution {
    pub id: String,
    pub workflow_id: Option<String>,
    pub status: String,
    pub mode: Option<String>,
    pub finished: bool,
    pub started_at: Option<DateTime<Utc>>,
    pub stopped_at: Option<DateTime<Utc>>,
    pub error_message: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExecutionFilter {
    pub workflow_id: Option<String>,
    pub status: Option<String>,
    /// Fetch each execution's data (needed for error messages).
    pub include_data: bool,
}

/// One provider instance. Lists come a page at a time (bounded memory; the caller keeps the
/// cursor, so a sync can checkpoint per page). Workflows travel as the provider's own JSON.
pub trait Provider: Send + Sync + fmt::Debug {
    fn kind(&self) -> ProviderKind;
    fn test_connection(&self) -> BoxFuture<'_, ProviderResult<InstanceInfo>>;
    fn list_workflows<'a>(
        &'a self,
        cursor: Option<&'a str>,
    ) -> BoxFuture<'a, ProviderResult<Page<Value>>>;
    /// `list_workflows`, each workflow also as the text the provider sent: what a sync stores,
    /// so it need not write the JSON out again. The default writes it from the parsed value.
    fn list_workflows_raw<'a>(
        &'a self,
        cursor: Option<&'a str>,
    ) -> BoxFuture<'a, ProviderResult<Page<RawWorkflow>>> {
        Box::pin(async move {
            let page = self.list_workflows(cursor).await?;
            Ok(Page {
                items: page
                    .items
                    .into_iter()
                    .map(|w| RawWorkflow::from_value(&w))
                    .collect::<ProviderResult<_>>()?,
                next_cursor: page.next_cursor,
            })
        })
    }
    fn get_workflow<'a>(&'a self, id: &'a str) -> BoxFuture<'a, ProviderResult<Value>>;
    /// Creates a workflow from any workflow JSON (fields this instance does not accept are
    /// left out); returns it as created.
    fn create_workflow<'a>(&'a self, workflow: &'a Value) -> BoxFuture<'a, ProviderResult<Value>>;
    fn update_workflow<'a>(
        &'a self,
        id: &'a str,
        workflow: &'a Value,
    ) -> BoxFuture<'a, ProviderResult<Value>>;
    fn delete_workflow<'a>(&'a self, id: &'a str) -> BoxFuture<'a, ProviderResult<()>>;
    fn set_active<'a>(&'a self, id: &'a str, active: bool) -> BoxFuture<'a, ProviderResult<Value>>;
    fn set_archived<'a>(
        &'a self,
        id: &'a str,
        archived: bool,
    ) -> BoxFuture<'a, ProviderResult<Value>>;
    fn list_tags<'a>(&'a self, cursor: Option<&'a str>)
    -> BoxFuture<'a, ProviderResult<Page<Tag>>>;
    fn create_tag<'a>(&'a self, name: &'a str) -> BoxFuture<'a, ProviderResult<Tag>>;
    /// Replaces a workflow's tags; returns them as now set.
    fn set_workflow_tags<'a>(
        &'a self,
        id: &'a str,
        tag_ids: &'a [String],
    ) -> BoxFuture<'a, ProviderResult<Vec<Tag>>>;
    /// `Unsupported` where the instance cannot list credentials.
    fn list_credentials<'a>(
        &'a self,
        cursor: Option<&'a str>,
    ) -> BoxFuture<'a, ProviderResult<Page<CredentialMeta>>>;
    fn list_users<'a>(
        &'a self,
        cursor: Option<&'a str>,
    ) -> BoxFuture<'a, ProviderResult<Page<ProviderUser>>>;
    /// Newest first.
    fn list_executions<'a>(
        &'a self,
        cursor: Option<&'a str>,
        filter: &'a ExecutionFilter,
    ) -> BoxFuture<'a, ProviderResult<Page<Execution>>>;
}

/// The provider registry (PROV-002): the adapter for a connection's provider. An address
/// written in the base URL is checked against the client's setting here (adapters keep the
/// base URL's host for every request, and the client checks names as they resolve).
pub fn connect(
    http: &crate::net::HttpClient,
    connection: Connection,
) -> ProviderResult<Arc<dyn Provider>> {
    // No host, or a name: the adapter's own checks and the client's resolver speak.
    if let Ok(url) = reqwest::Url::parse(connection.base_url.trim())
        && let Err(crate::net::DestinationError::Refused(refused)) = http.check_literal(&url)
    {
        return Err(ProviderError::Refused(refused.to_string()));
    }
    let client = http.client().clone();
    match connection.kind {
        ProviderKind::N8n => Ok(Arc::new(crate::n8n::N8n::new(client, connection)?)),
        ProviderKind::Make => Ok(Arc::new(crate::make::Make::new(client, connection)?)),
    }
}
