//! The Make.com adapter: API v2 (`{zone}/api/v2`, header `Authorization: Token …`), scoped to
//! one team (an environment is a team: `https://eu1.make.com?teamId=42`), paced per
//! environment, retried with backoff honouring `Retry-After`, errors classified in [`http`].
//!
//! A workflow is a scenario and its blueprint as one JSON document ([`shape::workflow`]). Make
//! has no tags and no archive; executions are scenario logs, listed per scenario. Every write
//! and every read by id first makes sure the scenario is this team's: an API key usually
//! reaches several teams, and an environment must never touch another one's scenarios.

mod http;
pub mod shape;

use futures::future::BoxFuture;
use futures::{FutureExt, StreamExt, TryStreamExt};
use reqwest::Method;
use serde_json::Value;

pub use http::{EXPECTED_BASE_URL, Target, parse_base_url};

use self::http::{Api, quote};
use crate::provider::{
    Capabilities, Connection, CredentialMeta, Execution, ExecutionFilter, InstanceInfo, Page,
    Provider, ProviderError, ProviderKind, ProviderResult, ProviderUser, Tag,
};

/// Items asked for per page. Make may answer with fewer per page (its `pg.limit` says how
/// many it allowed), so a page is the last only when it is shorter than that.
pub const PAGE: u64 = 100;

#[derive(Debug)]
pub struct Make {
    api: Api,
    team_id: u64,
}

impl Make {
    pub fn new(http: reqwest::Client, connection: Connection) -> ProviderResult<Self> {
        let target = parse_base_url(&connection.base_url)?;
        Ok(Self {
            api: Api::new(http, target.api_root, connection.api_key, connection.limits),
            team_id: target.team_id,
        })
    }

    /// The team this environment is.
    pub fn team_id(&self) -> u64 {
        self.team_id
    }

    fn team(&self) -> (&'static str, String) {
        ("teamId", self.team_id.to_string())
    }

    /// One page of a list endpoint, the items under `key`; the cursor is the next offset.
    async fn page(
        &self,
        path: &str,
        key: &str,
        cursor: Option<&str>,
        mut query: Vec<(&'static str, String)>,
    ) -> ProviderResult<(Vec<Value>, Option<String>)> {
        let offset = match cursor {
            None => 0,
            Some(c) => c.trim().parse::<u64>().map_err(|_| {
                ProviderError::Validation(format!("`{}` is not a Make page cursor", quote(c)))
            })?,
        };
        query.push(("pg[offset]", offset.to_string()));
        query.push(("pg[limit]", PAGE.to_string()));
        let mut body = self.api.call(Method::GET, path, &query, None).await?;
        let pg = body.get("pg").cloned().unwrap_or(Value::Null);
        let Some(Value::Array(items)) = body.as_object_mut().and_then(|o| o.remove(key)) else {
            return Err(ProviderError::InvalidResponse(format!(
                "GET {path} answered without a `{key}` list"
            )));
        };
        // A server that ignored the offset would hand out the first page forever.
        if let Some(echoed) = pg.get("offset").and_then(Value::as_u64)
            && echoed != offset
        {
            return Err(ProviderError::InvalidResponse(format!(
                "GET {path} answered offset {echoed} when asked for {offset}; stopping instead of looping"
            )));
        }
        let limit = pg
            .get("limit")
            .and_then(Value::as_u64)
            .filter(|l| *l > 0)
            .map_or(PAGE, |l| l.min(PAGE));
        let len = items.len() as u64;
        let next = (len > 0 && len >= limit).then(|| (offset + len).to_string());
        Ok((items, next))
    }

    /// `GET /scenarios/{id}`'s scenario, if it is this team's.
    async fn scenario(&self, id: u64) -> ProviderResult<Value> {
        let mut body = self
            .api
            .call(Method::GET, &format!("/scenarios/{id}"), &[], None)
            .await?;
        let scenario = body
            .as_object_mut()
            .and_then(|o| o.remove("scenario"))
            .filter(Value::is_object)
            .ok_or_else(|| {
                ProviderError::InvalidResponse(format!("GET /scenarios/{id} without a `scenario`"))
            })?;
        self.own(&scenario, id)?;
        Ok(scenario)
    }

    /// A scenario of another team is, for this environment, not there.
    fn own(&self, scenario: &Value, id: u64) -> ProviderResult<()> {
        match shape::id_of(scenario.get("teamId")) {
            Some(team) if team != self.team_id => Err(ProviderError::NotFound(format!(
                "scenario {id} is not in team {}",
                self.team_id
            ))),
            _ => Ok(()),
        }
    }

    /// `GET /scenarios/{id}/blueprint`'s `response` (`{blueprint, scheduling, …}`).
    async fn blueprint(&self, id: u64) -> ProviderResult<Value> {
        let mut body = self
            .api
            .call(
                Method::GET,
                &format!("/scenarios/{id}/blueprint"),
                &[],
                None,
            )
            .await?;
        body.as_object_mut()
            .and_then(|o| o.remove("response"))
            .filter(Value::is_object)
            .ok_or_else(|| {
                ProviderError::InvalidResponse(format!(
                    "GET /scenarios/{id}/blueprint without a `response`"
                ))
            })
    }

    async fn workflow(&self, id: u64) -> ProviderResult<Value> {
        let (scenario, blueprint) =
            futures::future::try_join(self.scenario(id), self.blueprint(id)).await?;
        shape::workflow(&scenario, &blueprint)
    }

    /// The scenario a write answered with, and its blueprint as now stored (or, should that
    /// read fail, as written: the write happened, and reporting it failed would invite a
    /// second create).
    async fn written(&self, mut answer: Value, sent: &Value) -> ProviderResult<Value> {
        let scenario = answer
            .as_object_mut()
            .and_then(|o| o.remove("scenario"))
            .filter(Value::is_object)
            .ok_or_else(|| {
                ProviderError::InvalidResponse("a scenario write without a `scenario`".into())
            })?;
        let id = shape::id_of(scenario.get("id")).ok_or_else(|| {
            ProviderError::InvalidResponse("a written scenario without a numeric `id`".into())
        })?;
        let blueprint = match self.blueprint(id).await {
            Ok(b) => b,
            Err(e) => {
                tracing::warn!(error = %e, scenario = id, "reading back a written blueprint failed; answering with what was sent");
                serde_json::json!({"blueprint": sent.get("blueprint"), "scheduling": sent.get("scheduling")})
            }
        };
        shape::workflow(&scenario, &blueprint)
    }
}

/// Make's ids are numbers; anything else cannot name a scenario.
fn scenario_id(id: &str) -> ProviderResult<u64> {
    id.parse::<u64>()
        .ok()
        .filter(|i| *i > 0 && !id.starts_with('+'))
        .ok_or_else(|| {
            ProviderError::Validation(format!("`{}` is not a Make scenario id", quote(id)))
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

impl Provider for Make {
    fn kind(&self) -> ProviderKind {
        ProviderKind::Make
    }

    /// `GET /teams/{teamId}`: proves the key, the zone and the team at once. Make's API has no
    /// version to report.
    fn test_connection(&self) -> BoxFuture<'_, ProviderResult<InstanceInfo>> {
        async move {
            let path = format!("/teams/{}", self.team_id);
            let body = self.api.call(Method::GET, &path, &[], None).await?;
            let team = body.get("team").filter(|t| t.is_object()).ok_or_else(|| {
                ProviderError::InvalidResponse(format!("GET {path} answered without a `team`"))
            })?;
            if shape::id_of(team.get("id")).is_some_and(|t| t != self.team_id) {
                return Err(ProviderError::InvalidResponse(format!(
                    "GET {path} answered with another team"
                )));
            }
            Ok(InstanceInfo {
                version: None,
                capabilities: Capabilities {
                    list_credentials: true,
                    archive: false,
                    publish: false,
                },
            })
        }
        .boxed()
    }

    /// A page of the team's scenarios, each with its blueprint (fetched a few at a time, as
    /// the limiter allows). A scenario deleted between the two reads is left out.
    fn list_workflows<'a>(
        &'a self,
        cursor: Option<&'a str>,
    ) -> BoxFuture<'a, ProviderResult<Page<Value>>> {
        async move {
            let (scenarios, next) = self
                .page("/scenarios", "scenarios", cursor, vec![self.team()])
                .await?;
            let items: Vec<Option<Value>> = futures::stream::iter(scenarios)
                .map(|scenario| async move {
                    let id = shape::id_of(scenario.get("id")).ok_or_else(|| {
                        ProviderError::InvalidResponse("a scenario without a numeric `id`".into())
                    })?;
                    match self.blueprint(id).await {
                        Ok(blueprint) => shape::workflow(&scenario, &blueprint).map(Some),
                        Err(ProviderError::NotFound(_)) => Ok(None),
                        Err(e) => Err(e),
                    }
                })
                .buffered(self.api.concurrency())
                .try_collect()
                .await?;
            Ok(Page {
                items: items.into_iter().flatten().collect(),
                next_cursor: next,
            })
        }
        .boxed()
    }

    fn get_workflow<'a>(&'a self, id: &'a str) -> BoxFuture<'a, ProviderResult<Value>> {
        async move { self.workflow(scenario_id(id)?).await }.boxed()
    }

    fn create_workflow<'a>(&'a self, workflow: &'a Value) -> BoxFuture<'a, ProviderResult<Value>> {
        async move {
            let body = shape::create_body(workflow, self.team_id)?;
            let mut answer = self
                .api
                .call(Method::POST, "/scenarios", &[], Some(&body))
                .await?;
            let created = shape::id_of(answer.pointer("/scenario/id"));
            if let (Some(id), Some(description)) = (created, shape::description(workflow))
                && !description.is_empty()
            {
                // The scenario exists now: failing here would invite a second create, so a
                // description that could not be set is logged (and shows as drift) instead.
                let patch = serde_json::json!({ "description": description });
                match self
                    .api
                    .call(Method::PATCH, &format!("/scenarios/{id}"), &[], Some(&patch))
                    .await
                {
                    Ok(described) => answer = described,
                    Err(e) => {
                        tracing::warn!(error = %e, scenario = id, "setting a created scenario's description failed");
                    }
                }
            }
            self.written(answer, &body).await
        }
        .boxed()
    }

    fn update_workflow<'a>(
        &'a self,
        id: &'a str,
        workflow: &'a Value,
    ) -> BoxFuture<'a, ProviderResult<Value>> {
        async move {
            let id = scenario_id(id)?;
            let body = shape::update_body(workflow)?;
            self.scenario(id).await?;
            let answer = self
                .api
                .call(Method::PATCH, &format!("/scenarios/{id}"), &[], Some(&body))
                .await?;
            self.written(answer, &body).await
        }
        .boxed()
    }

    fn delete_workflow<'a>(&'a self, id: &'a str) -> BoxFuture<'a, ProviderResult<()>> {
        async move {
            let id = scenario_id(id)?;
            self.scenario(id).await?;
            self.api
                .call(Method::DELETE, &format!("/scenarios/{id}"), &[], None)
                .await?;
            Ok(())
        }
        .boxed()
    }

    fn set_active<'a>(&'a self, id: &'a str, active: bool) -> BoxFuture<'a, ProviderResult<Value>> {
        async move {
            let id = scenario_id(id)?;
            self.scenario(id).await?;
            let verb = if active { "start" } else { "stop" };
            let answer = self
                .api
                .call(Method::POST, &format!("/scenarios/{id}/{verb}"), &[], None)
                .await?;
            if answer
                .pointer("/scenario/isActive")
                .and_then(Value::as_bool)
                != Some(active)
            {
                return Err(ProviderError::InvalidResponse(format!(
                    "POST /scenarios/{id}/{verb} did not answer `isActive: {active}`"
                )));
            }
            self.workflow(id).await
        }
        .boxed()
    }

    fn set_archived<'a>(
        &'a self,
        _id: &'a str,
        _archived: bool,
    ) -> BoxFuture<'a, ProviderResult<Value>> {
        async move {
            Err(ProviderError::Unsupported(
                "Make scenarios cannot be archived".into(),
            ))
        }
        .boxed()
    }

    /// Make has no tags: always one empty, last page.
    fn list_tags<'a>(
        &'a self,
        _cursor: Option<&'a str>,
    ) -> BoxFuture<'a, ProviderResult<Page<Tag>>> {
        async move {
            Ok(Page {
                items: Vec::new(),
                next_cursor: None,
            })
        }
        .boxed()
    }

    fn create_tag<'a>(&'a self, _name: &'a str) -> BoxFuture<'a, ProviderResult<Tag>> {
        async move { Err(ProviderError::Unsupported("Make has no tags".into())) }.boxed()
    }

    fn set_workflow_tags<'a>(
        &'a self,
        _id: &'a str,
        _tag_ids: &'a [String],
    ) -> BoxFuture<'a, ProviderResult<Vec<Tag>>> {
        async move { Err(ProviderError::Unsupported("Make has no tags".into())) }.boxed()
    }

    /// The team's connections (`GET /connections?teamId`).
    fn list_credentials<'a>(
        &'a self,
        cursor: Option<&'a str>,
    ) -> BoxFuture<'a, ProviderResult<Page<CredentialMeta>>> {
        async move {
            typed(
                self.page("/connections", "connections", cursor, vec![self.team()])
                    .await?,
                shape::credential,
            )
        }
        .boxed()
    }

    /// The team's members (`GET /users?teamId`), with their team role's id.
    fn list_users<'a>(
        &'a self,
        cursor: Option<&'a str>,
    ) -> BoxFuture<'a, ProviderResult<Page<ProviderUser>>> {
        async move {
            let mut query = vec![self.team()];
            for col in ["id", "name", "email", "teamRoleId"] {
                query.push(("cols[]", col.to_owned()));
            }
            typed(
                self.page("/users", "users", cursor, query).await?,
                shape::user,
            )
        }
        .boxed()
    }

    /// One scenario's logs, newest first (`GET /scenarios/{id}/logs`). Make lists runs per
    /// scenario only, so without `workflow_id` this is `Unsupported`: walking every scenario
    /// could not keep the newest-first order the trait promises. Statuses: success, warning,
    /// error (Make's 1, 2, 3); no other status filter exists.
    fn list_executions<'a>(
        &'a self,
        cursor: Option<&'a str>,
        filter: &'a ExecutionFilter,
    ) -> BoxFuture<'a, ProviderResult<Page<Execution>>> {
        async move {
            let Some(workflow_id) = filter.workflow_id.as_deref() else {
                return Err(ProviderError::Unsupported(
                    "Make lists executions per scenario: give a workflow id".into(),
                ));
            };
            let id = scenario_id(workflow_id)?;
            let mut query = Vec::new();
            if let Some(status) = filter.status.as_deref() {
                let code = shape::log_status(status).ok_or_else(|| {
                    ProviderError::Unsupported(format!(
                        "Make cannot filter executions by status `{}` (only success, warning, error)",
                        quote(status)
                    ))
                })?;
                query.push(("status", code.to_string()));
            }
            if cursor.is_none() {
                self.scenario(id).await?;
            }
            let path = format!("/scenarios/{id}/logs");
            let (logs, next) = self.page(&path, "scenarioLogs", cursor, query).await?;
            let scenario = id.to_string();
            let mut items = Vec::with_capacity(logs.len());
            for log in &logs {
                items.extend(shape::execution(log, &scenario)?);
            }
            Ok(Page {
                items,
                next_cursor: next,
            })
        }
        .boxed()
    }
}
