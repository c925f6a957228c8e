//! The n8n adapter: the public REST API (`/api/v1`, header `X-N8N-API-KEY`), paced per
//! environment, retried with backoff honouring `Retry-After`, errors classified here.
//! Per-version rules (write bodies, capabilities) live in [`body`].

pub mod body;
mod skim;

use chrono::{DateTime, Utc};
use futures::FutureExt;
use futures::future::BoxFuture;
use reqwest::{Method, StatusCode};
use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;
use serde_json::value::RawValue;

pub use body::{Version, write_body};

use crate::http::retry_after;
use crate::limiter::{Limiter, Limits};
use crate::provider::{
    Capabilities, Connection, CredentialMeta, Execution, ExecutionFilter, InstanceInfo, Page,
    Provider, ProviderError, ProviderKind, ProviderResult, ProviderUser, RawWorkflow, Tag,
};

/// n8n's largest page.
pub const MAX_PAGE: u32 = 250;
/// Longest provider text quoted back in an error.
const QUOTE: usize = 120;
/// The longest answer read: a page of workflows is large, but not unbounded (a host that never
/// stops sending must not take the worker's memory).
const LONGEST_ANSWER: usize = 256 << 20;
/// The longest error body read for its message.
const LONGEST_ERROR: usize = 64 << 10;

fn quote(text: &str) -> String {
    crate::http::quote(text, QUOTE)
}

#[derive(Debug)]
pub struct N8n {
    http: reqwest::Client,
    root: String,
    api_key: SecretString,
    version: Option<Version>,
    limits: Limits,
    limiter: Limiter,
}

impl N8n {
    pub fn new(http: reqwest::Client, connection: Connection) -> ProviderResult<Self> {
        let root = root(&connection.base_url)?;
        Ok(Self {
            http,
            root,
            api_key: connection.api_key,
            version: connection.version.as_deref().and_then(Version::parse),
            limiter: Limiter::new(&connection.limits),
            limits: connection.limits,
        })
    }

    /// The version writes are shaped for: the known one, or the oldest rules.
    fn write_version(&self) -> Version {
        self.version.unwrap_or(Version::OLDEST)
    }

    /// One API call with pacing and retries; the parsed JSON body (Null when empty). A create
    /// (POST of a workflow or tag) is not idempotent: once it may have reached n8n (anything but
    /// a refused connection or a 429), it is not sent again — the caller decides, knowing what
    /// it asked for.
    async fn call(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<&Value>,
    ) -> ProviderResult<Value> {
        self.call_as(method, path, query, body).await
    }

    /// `call`, the body parsed as `T`.
    async fn call_as<T: serde::de::DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<&Value>,
    ) -> ProviderResult<T> {
        let url = format!("{}/api/v1{path}", self.root);
        let creates = method == Method::POST && (path == "/workflows" || path == "/tags");
        crate::http::call(
            &self.limiter,
            &self.limits,
            "n8n",
            &url,
            creates,
            || {
                let request = self
                    .http
                    .request(method.clone(), &url)
                    .header("X-N8N-API-KEY", self.api_key.expose_secret())
                    .header("accept", "application/json")
                    .query(query);
                match body {
                    Some(body) => request.json(body),
                    None => request,
                }
            },
            read,
        )
        .await
    }

    /// One page of a list endpoint, each item read as a `T` straight from the body (a parsed
    /// value, its text as sent, or the fields wanted of it); refuses a cursor that repeats
    /// (n8n's `limit=0` quirk).
    async fn page_of<T: serde::de::DeserializeOwned>(
        &self,
        path: &str,
        cursor: Option<&str>,
        extra: &[(&str, String)],
    ) -> ProviderResult<(Vec<T>, Option<String>)> {
        #[derive(serde::Deserialize)]
        #[serde(bound = "T: serde::de::DeserializeOwned")]
        struct Body<T> {
            data: Option<Vec<T>>,
            #[serde(rename = "nextCursor", default)]
            next_cursor: Option<Value>,
        }
        let mut query: Vec<(&str, String)> = vec![("limit", MAX_PAGE.to_string())];
        query.extend(extra.iter().cloned());
        if let Some(c) = cursor {
            query.push(("cursor", c.to_owned()));
        }
        let body: Body<T> = self.call_as(Method::GET, path, &query, None).await?;
        let next = body
            .next_cursor
            .as_ref()
            .and_then(Value::as_str)
            .filter(|c| !c.is_empty())
            .map(str::to_owned);
        let Some(items) = body.data else {
            return Err(ProviderError::InvalidResponse(format!(
                "GET {path} answered without a `data` list"
            )));
        };
        if next.is_some() && next.as_deref() == cursor {
            return Err(ProviderError::InvalidResponse(format!(
                "GET {path} returned the cursor it was given as the next one; stopping instead of looping"
            )));
        }
        Ok((items, next))
    }

    /// One page of a list endpoint as parsed values (see [`N8n::page_of`]).
    async fn page(
        &self,
        path: &str,
        cursor: Option<&str>,
        extra: &[(&str, String)],
    ) -> ProviderResult<(Vec<Value>, Option<String>)> {
        self.page_of(path, cursor, extra).await
    }

    async fn settings_version(&self) -> Option<String> {
        let res = self
            .http
            .get(format!("{}/rest/settings", self.root))
            .timeout(self.limits.timeout)
            .send()
            .await
            .ok()?;
        if !res.status().is_success() {
            return None;
        }
        let body: Value = res.json().await.ok()?;
        body.pointer("/data/versionCli")
            .and_then(Value::as_str)
            .map(str::to_owned)
    }

    async fn probe_credentials(&self) -> ProviderResult<bool> {
        match self
            .call(
                Method::GET,
                "/credentials",
                &[("limit", "1".to_owned())],
                None,
            )
            .await
        {
            Ok(_) => Ok(true),
            Err(ProviderError::NotFound(_)) => Ok(false),
            Err(ProviderError::Permanent(m)) if m.starts_with("HTTP 405") => Ok(false),
            Err(e) => Err(e),
        }
    }
}

/// The instance's address to put `/api/v1/…` after: the base URL as the URL parser writes it
/// (so nothing in it can change which host a request goes to), without a trailing slash or
/// `/api/v1`. A query, a fragment or credentials are refused: appended paths would land in
/// them, and the key belongs in the API key.
fn root(base_url: &str) -> ProviderResult<String> {
    let raw = base_url.trim();
    let invalid = |why: &str| {
        ProviderError::Validation(format!(
            "the base URL {why}, e.g. `https://n8n.example.com` (got `{}`)",
            quote(raw)
        ))
    };
    let url =
        reqwest::Url::parse(raw).map_err(|_| invalid("must be an http:// or https:// URL"))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none_or(str::is_empty) {
        return Err(invalid("must be an http:// or https:// URL"));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(invalid("must have no `?` or `#` part"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(invalid("must carry no credentials"));
    }
    let root = url.as_str().trim_end_matches('/');
    Ok(root.strip_suffix("/api/v1").unwrap_or(root).to_owned())
}

/// Classifies a response: 2xx parsed as JSON, everything else an error with n8n's message.
async fn read<T: serde::de::DeserializeOwned>(response: reqwest::Response) -> ProviderResult<T> {
    let status = response.status();
    let wait = retry_after(response.headers());
    let bytes = crate::http::capped_body(response, LONGEST_ANSWER, LONGEST_ERROR).await?;
    if status.is_success() {
        // An empty body reads as `null` (n8n answers some writes with nothing).
        let json: &[u8] = if bytes.iter().all(u8::is_ascii_whitespace) {
            b"null"
        } else {
            &bytes
        };
        // The body is not quoted, nor serde's message (which quotes values from it): whatever
        // answered may be some other server the base URL reached, and its text is not the
        // caller's to read. The detail goes to the log.
        return serde_json::from_slice(json).map_err(|e| {
            let what = if e.is_data() {
                "not shaped as n8n's API answers"
            } else {
                "not valid JSON"
            };
            tracing::warn!(status = status.as_u16(), error = %e, "an n8n answer could not be read");
            ProviderError::InvalidResponse(format!(
                "HTTP {} with a body that is {what} (at line {}, column {}; {} bytes)",
                status.as_u16(),
                e.line(),
                e.column(),
                bytes.len()
            ))
        });
    }
    let message = serde_json::from_slice::<Value>(&bytes)
        .ok()
        .and_then(|v| v.get("message").and_then(Value::as_str).map(quote))
        .unwrap_or_else(|| status.canonical_reason().unwrap_or("error").to_owned());
    let code = status.as_u16();
    Err(match status {
        StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => ProviderError::Auth(message),
        StatusCode::NOT_FOUND => ProviderError::NotFound(message),
        StatusCode::TOO_MANY_REQUESTS => ProviderError::RateLimited { retry_after: wait },
        StatusCode::REQUEST_TIMEOUT => ProviderError::Transient(format!("HTTP {code}: {message}")),
        s if s.is_server_error() => ProviderError::Transient(format!("HTTP {code}: {message}")),
        StatusCode::BAD_REQUEST | StatusCode::CONFLICT | StatusCode::UNPROCESSABLE_ENTITY => {
            ProviderError::Validation(message)
        }
        _ => ProviderError::Permanent(format!("HTTP {code}: {message}")),
    })
}

fn text(v: &Value, key: &str) -> Option<String> {
    match v.get(key)? {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

fn time(v: &Value, key: &str) -> Option<DateTime<Utc>> {
    v.get(key)
        .and_then(Value::as_str)
        .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
        .map(|t| t.with_timezone(&Utc))
}

fn required(v: &Value, key: &str, what: &str) -> ProviderResult<String> {
    text(v, key).ok_or_else(|| ProviderError::InvalidResponse(format!("a {what} without `{key}`")))
}

fn tag(v: &Value) -> ProviderResult<Tag> {
    Ok(Tag {
        id: required(v, "id", "tag")?,
        name: required(v, "name", "tag")?,
    })
}

fn credential(v: &Value) -> ProviderResult<CredentialMeta> {
    Ok(CredentialMeta {
        id: required(v, "id", "credential")?,
        name: required(v, "name", "credential")?,
        cred_type: required(v, "type", "credential")?,
        created_at: time(v, "createdAt"),
        updated_at: time(v, "updatedAt"),
    })
}

fn user(v: &Value) -> ProviderResult<ProviderUser> {
    Ok(ProviderUser {
        id: required(v, "id", "user")?,
        email: text(v, "email").unwrap_or_default(),
        first_name: text(v, "firstName"),
        last_name: text(v, "lastName"),
        role: text(v, "role"),
        is_pending: v.get("isPending").and_then(Value::as_bool).unwrap_or(false),
    })
}

fn typed<T>(
    (items, next): (Vec<Value>, Option<String>),
    parse: fn(&Value) -> ProviderResult<T>,
) -> ProviderResult<Page<T>> {
    Ok(Page {
        items: items.iter().map(parse).collect::<ProviderResult<_>>()?,
        next_cursor: next,
    })
}

fn check_workflow(v: Value) -> ProviderResult<Value> {
    if v.get("id").is_some() && v.get("nodes").is_some_and(Value::is_array) {
        Ok(v)
    } else {
        Err(ProviderError::InvalidResponse(
            "a workflow without `id` or `nodes`".into(),
        ))
    }
}

/// [`check_workflow`] of a workflow's text, without parsing it into a tree.
fn check_workflow_text(text: &RawValue) -> ProviderResult<()> {
    #[derive(serde::Deserialize)]
    struct Shape<'a> {
        #[serde(borrow)]
        id: Option<&'a RawValue>,
        #[serde(borrow)]
        nodes: Option<&'a RawValue>,
    }
    let shape: Shape = serde_json::from_str(text.get())
        .map_err(|e| ProviderError::InvalidResponse(format!("a workflow's JSON: {e}")))?;
    match (shape.id, shape.nodes) {
        (Some(id), Some(nodes)) if id.get() != "null" && nodes.get().starts_with('[') => Ok(()),
        _ => Err(ProviderError::InvalidResponse(
            "a workflow without `id` or `nodes`".into(),
        )),
    }
}

fn path_id(id: &str) -> ProviderResult<&str> {
    if !id.is_empty()
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        Ok(id)
    } else {
        Err(ProviderError::Validation(format!(
            "`{}` is not an n8n id",
            quote(id)
        )))
    }
}

impl Provider for N8n {
    fn kind(&self) -> ProviderKind {
        ProviderKind::N8n
    }

    fn test_connection(&self) -> BoxFuture<'_, ProviderResult<InstanceInfo>> {
        async move {
            let version = self.settings_version().await;
            // Proves the key: every instance lists workflows.
            self.call(
                Method::GET,
                "/workflows",
                &[("limit", "1".to_owned())],
                None,
            )
            .await?;
            let parsed = version.as_deref().and_then(Version::parse);
            let list_credentials = match parsed {
                Some(v) => v >= body::LIST_CREDENTIALS_SINCE,
                None => self.probe_credentials().await?,
            };
            let archive = parsed.is_some_and(|v| v >= body::ARCHIVE_SINCE);
            Ok(InstanceInfo {
                version,
                capabilities: Capabilities {
                    list_credentials,
                    archive,
                    publish: archive,
                },
            })
        }
        .boxed()
    }

    fn list_workflows<'a>(
        &'a self,
        cursor: Option<&'a str>,
    ) -> BoxFuture<'a, ProviderResult<Page<Value>>> {
        async move {
            let (items, next) = self.page("/workflows", cursor, &[]).await?;
            Ok(Page {
                items: items
                    .into_iter()
                    .map(check_workflow)
                    .collect::<ProviderResult<_>>()?,
                next_cursor: next,
            })
        }
        .boxed()
    }

    fn list_workflows_raw<'a>(
        &'a self,
        cursor: Option<&'a str>,
    ) -> BoxFuture<'a, ProviderResult<Page<RawWorkflow>>> {
        async move {
            let (items, next) = self
                .page_of::<Box<RawValue>>("/workflows", cursor, &[])
                .await?;
            Ok(Page {
                items: items
                    .into_iter()
                    .map(|text| {
                        check_workflow_text(&text)?;
                        Ok(RawWorkflow { text })
                    })
                    .collect::<ProviderResult<_>>()?,
                next_cursor: next,
            })
        }
        .boxed()
    }

    fn get_workflow<'a>(&'a self, id: &'a str) -> BoxFuture<'a, ProviderResult<Value>> {
        async move {
            let path = format!("/workflows/{}", path_id(id)?);
            check_workflow(self.call(Method::GET, &path, &[], None).await?)
        }
        .boxed()
    }

    fn create_workflow<'a>(&'a self, workflow: &'a Value) -> BoxFuture<'a, ProviderResult<Value>> {
        async move {
            let body = write_body(workflow, self.write_version());
            check_workflow(
                self.call(Method::POST, "/workflows", &[], Some(&body))
                    .await?,
            )
        }
        .boxed()
    }

    fn update_workflow<'a>(
        &'a self,
        id: &'a str,
        workflow: &'a Value,
    ) -> BoxFuture<'a, ProviderResult<Value>> {
        async move {
            let body = write_body(workflow, self.write_version());
            let path = format!("/workflows/{}", path_id(id)?);
            check_workflow(self.call(Method::PUT, &path, &[], Some(&body)).await?)
        }
        .boxed()
    }

    fn delete_workflow<'a>(&'a self, id: &'a str) -> BoxFuture<'a, ProviderResult<()>> {
        async move {
            let path = format!("/workflows/{}", path_id(id)?);
            self.call(Method::DELETE, &path, &[], None).await?;
            Ok(())
        }
        .boxed()
    }

    fn set_active<'a>(&'a self, id: &'a str, active: bool) -> BoxFuture<'a, ProviderResult<Value>> {
        async move {
            let verb = if active { "activate" } else { "deactivate" };
            let path = format!("/workflows/{}/{verb}", path_id(id)?);
            check_workflow(self.call(Method::POST, &path, &[], None).await?)
        }
        .boxed()
    }

    fn set_archived<'a>(
        &'a self,
        id: &'a str,
        archived: bool,
    ) -> BoxFuture<'a, ProviderResult<Value>> {
        async move {
            if self.version.is_none_or(|v| v < body::ARCHIVE_SINCE) {
                return Err(ProviderError::Unsupported(
                    "archiving needs n8n 2.0 or later".into(),
                ));
            }
            let verb = if archived { "archive" } else { "unarchive" };
            let path = format!("/workflows/{}/{verb}", path_id(id)?);
            check_workflow(self.call(Method::POST, &path, &[], None).await?)
        }
        .boxed()
    }

    fn list_tags<'a>(
        &'a self,
        cursor: Option<&'a str>,
    ) -> BoxFuture<'a, ProviderResult<Page<Tag>>> {
        async move { typed(self.page("/tags", cursor, &[]).await?, tag) }.boxed()
    }

    fn create_tag<'a>(&'a self, name: &'a str) -> BoxFuture<'a, ProviderResult<Tag>> {
        async move {
            let body = serde_json::json!({ "name": name });
            tag(&self.call(Method::POST, "/tags", &[], Some(&body)).await?)
        }
        .boxed()
    }

    fn set_workflow_tags<'a>(
        &'a self,
        id: &'a str,
        tag_ids: &'a [String],
    ) -> BoxFuture<'a, ProviderResult<Vec<Tag>>> {
        async move {
            let path = format!("/workflows/{}/tags", path_id(id)?);
            let body: Vec<Value> = tag_ids
                .iter()
                .map(|t| serde_json::json!({ "id": t }))
                .collect();
            let tags = self
                .call(Method::PUT, &path, &[], Some(&Value::Array(body)))
                .await?;
            tags.as_array()
                .ok_or_else(|| {
                    ProviderError::InvalidResponse("workflow tags that are not a list".into())
                })?
                .iter()
                .map(tag)
                .collect()
        }
        .boxed()
    }

    fn list_credentials<'a>(
        &'a self,
        cursor: Option<&'a str>,
    ) -> BoxFuture<'a, ProviderResult<Page<CredentialMeta>>> {
        async move {
            if self
                .version
                .is_some_and(|v| v < body::LIST_CREDENTIALS_SINCE)
            {
                return Err(ProviderError::Unsupported(
                    "listing credentials needs n8n 2.8 or later".into(),
                ));
            }
            match self.page("/credentials", cursor, &[]).await {
                Err(ProviderError::Permanent(m)) if m.starts_with("HTTP 405") => Err(
                    ProviderError::Unsupported("this n8n cannot list credentials".into()),
                ),
                other => typed(other?, credential),
            }
        }
        .boxed()
    }

    fn list_users<'a>(
        &'a self,
        cursor: Option<&'a str>,
    ) -> BoxFuture<'a, ProviderResult<Page<ProviderUser>>> {
        async move {
            typed(
                self.page("/users", cursor, &[("includeRole", "true".to_owned())])
                    .await?,
                user,
            )
        }
        .boxed()
    }

    fn list_executions<'a>(
        &'a self,
        cursor: Option<&'a str>,
        filter: &'a ExecutionFilter,
    ) -> BoxFuture<'a, ProviderResult<Page<Execution>>> {
        async move {
            let mut extra = vec![("includeData", filter.include_data.to_string())];
            if let Some(w) = &filter.workflow_id {
                extra.push(("workflowId", w.clone()));
            }
            if let Some(s) = &filter.status {
                extra.push(("status", s.clone()));
            }
            let (items, next) = self
                .page_of::<skim::ExecutionShape>("/executions", cursor, &extra)
                .await?;
            Ok(Page {
                items: items
                    .into_iter()
                    .map(skim::execution)
                    .collect::<ProviderResult<_>>()?,
                next_cursor: next,
            })
        }
        .boxed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_root_is_the_parsed_base_url_without_the_api_path() {
        for (base, root_url) in [
            ("https://n8n.example.com", "https://n8n.example.com"),
            (" https://n8n.example.com/ ", "https://n8n.example.com"),
            ("https://n8n.example.com/api/v1/", "https://n8n.example.com"),
            ("http://10.0.0.5:5678/n8n", "http://10.0.0.5:5678/n8n"),
            ("http://[::1]:5678", "http://[::1]:5678"),
        ] {
            assert_eq!(root(base).as_deref(), Ok(root_url), "{base}");
        }
    }

    #[test]
    fn a_base_url_whose_query_or_fragment_would_swallow_the_api_path_is_refused() {
        for base in [
            "http://169.254.169.254/latest/meta-data#",
            "http://internal.example/secret?",
            "http://internal.example/?x=1",
            "http://user:pass@n8n.example.com",
            "ftp://n8n.example.com",
            "n8n.example.com",
            "http://",
        ] {
            assert!(
                matches!(root(base), Err(ProviderError::Validation(_))),
                "{base}: {:?}",
                root(base)
            );
        }
    }
}
