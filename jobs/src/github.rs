//! The part of GitHub's REST API WorkflowOps uses: opening a pull request (CAN-018), finding
//! the open one for a branch when it already exists (a retried run opens no duplicate).
//!
//! The API URL is the tenant's (`github_api_url`) and the request carries the repository's
//! token: it goes through the provider client (only the networks `WFO_OUTBOUND_NETWORKS`
//! allows, no redirects; a redirect is reported with where it pointed).

use adapters::net::{DestinationError, HttpClient};
use engine::JobError;
use serde_json::{Value, json};

use crate::canonical::PullRequest;

/// What to open, and where.
pub struct PullRequestSpec<'a> {
    /// `https://api.github.com` or an Enterprise server's API.
    pub api_url: &'a str,
    /// The repository's Git URL; its last two path segments are the owner and the name.
    pub repo_url: &'a str,
    pub token: Option<&'a str>,
    pub title: &'a str,
    pub body: &'a str,
    pub head: &'a str,
    pub base: &'a str,
}

/// `owner/name` from `https://github.com/owner/name.git`, `git@github.com:owner/name.git`, ….
pub fn owner_and_name(url: &str) -> Option<(String, String)> {
    let path = url.trim_end_matches('/').trim_end_matches(".git");
    // scp-like `host:owner/name`: the part after the colon.
    let path = match path.split_once(':') {
        Some((head, tail)) if !head.contains('/') && !tail.starts_with("//") => tail,
        _ => path,
    };
    let mut parts = path.rsplit('/');
    let name = parts.next()?.to_owned();
    let owner = parts.next()?.to_owned();
    (!owner.is_empty() && !name.is_empty()).then_some((owner, name))
}

/// A request to `url`, if the client may call it (an address written in the URL is checked
/// here, a name as it resolves).
fn request(
    http: &HttpClient,
    method: reqwest::Method,
    url: &str,
    token: Option<&str>,
) -> Result<reqwest::RequestBuilder, JobError> {
    let parsed = reqwest::Url::parse(url)
        .map_err(|e| JobError::permanent(format!("the GitHub API URL is not a URL: {e}")))?;
    http.check_literal(&parsed).map_err(|e| match e {
        DestinationError::Unresolved { .. } => JobError::transient(format!("GitHub: {e}")),
        other => JobError::permanent(format!("GitHub: {other}")),
    })?;
    let mut req = http
        .client()
        .request(method, parsed)
        .header("Accept", "application/vnd.github+json")
        .header("X-GitHub-Api-Version", "2022-11-28")
        .header("User-Agent", "WorkflowOps");
    if let Some(token) = token {
        req = req.bearer_auth(token);
    }
    Ok(req)
}

/// A failed send: refused for good when the destination check stopped it, else worth a retry.
fn send_failed(e: &reqwest::Error) -> JobError {
    match adapters::net::refusal(e) {
        Some(refused) => JobError::permanent(format!("GitHub: {refused}")),
        None => JobError::transient(format!("GitHub: {e}")),
    }
}

/// A redirect is not followed (the token would go along): the user is told where it pointed.
fn redirected(response: &reqwest::Response) -> Option<JobError> {
    let status = response.status();
    if !status.is_redirection() || status == reqwest::StatusCode::NOT_MODIFIED {
        return None;
    }
    let to = response
        .headers()
        .get(reqwest::header::LOCATION)
        .and_then(|l| l.to_str().ok())
        .and_then(|l| adapters::net::redirect_target(response.url(), l))
        .unwrap_or_else(|| "an address it did not name".into());
    Some(JobError::permanent(format!(
        "GitHub answered {status}, redirecting to `{to}`; use that URL as the repository's github_api_url"
    )))
}

fn failure(status: reqwest::StatusCode, body: &Value) -> JobError {
    let message = body
        .get("message")
        .and_then(Value::as_str)
        .unwrap_or("no message")
        .to_owned();
    let text = format!("GitHub answered {status}: {message}");
    if status.is_server_error() || status == reqwest::StatusCode::TOO_MANY_REQUESTS {
        JobError::transient(text)
    } else {
        JobError::permanent(text)
    }
}

fn pull(body: &Value) -> Option<PullRequest> {
    Some(PullRequest {
        number: body.get("number")?.as_i64()?,
        url: body
            .get("html_url")
            .or_else(|| body.get("url"))?
            .as_str()?
            .to_owned(),
    })
}

/// Opens the pull request, or returns the open one from `head` to `base` if there is one.
pub async fn open_pull_request(
    http: &HttpClient,
    spec: &PullRequestSpec<'_>,
) -> Result<PullRequest, JobError> {
    let (owner, name) = owner_and_name(spec.repo_url).ok_or_else(|| {
        JobError::permanent(format!(
            "cannot tell the GitHub owner and repository from `{}`",
            spec.repo_url
        ))
    })?;
    let api = spec.api_url.trim_end_matches('/');
    let response = request(
        http,
        reqwest::Method::POST,
        &format!("{api}/repos/{owner}/{name}/pulls"),
        spec.token,
    )?
    .json(&json!({"title": spec.title, "body": spec.body, "head": spec.head, "base": spec.base}))
    .send()
    .await
    .map_err(|e| send_failed(&e))?;
    if let Some(e) = redirected(&response) {
        return Err(e);
    }
    let status = response.status();
    let body: Value = response.json().await.unwrap_or(Value::Null);
    if status.is_success() {
        return pull(&body)
            .ok_or_else(|| JobError::permanent("GitHub answered without a pull request number"));
    }
    if status == reqwest::StatusCode::UNPROCESSABLE_ENTITY {
        // Already open (a retried run): find it.
        let response = request(
            http,
            reqwest::Method::GET,
            &format!(
                "{api}/repos/{owner}/{name}/pulls?state=open&head={owner}:{}",
                spec.head
            ),
            spec.token,
        )?
        .send()
        .await
        .map_err(|e| send_failed(&e))?;
        if let Some(e) = redirected(&response) {
            return Err(e);
        }
        let list: Value = response.json().await.unwrap_or(Value::Null);
        if let Some(found) = list.as_array().and_then(|a| a.first()).and_then(pull) {
            return Ok(found);
        }
    }
    Err(failure(status, &body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owner_and_name_come_from_any_remote_form() {
        let expect = Some(("acme".to_owned(), "flows".to_owned()));
        assert_eq!(owner_and_name("https://github.com/acme/flows.git"), expect);
        assert_eq!(owner_and_name("https://github.com/acme/flows"), expect);
        assert_eq!(owner_and_name("git@github.com:acme/flows.git"), expect);
        assert_eq!(
            owner_and_name("ssh://git@github.com/acme/flows.git"),
            expect
        );
        assert_eq!(
            owner_and_name("http://127.0.0.1:8080/acme/flows.git"),
            expect
        );
        assert_eq!(owner_and_name("flows"), None);
    }
}
