//! The Make.com adapter: API v2 (`{zone}/api/v2`, header `Authorization: Token …`), scoped to
//! one team (an environment is a team: `https://eu1.make.com?teamId=42`), paced per
//! environment, retried with backoff honouring `Retry-After`, errors classified in [`http`].
//!
//! A workflow is a scenario and its blueprint as one JSON document ([`shape::workflow`]). Make
//! has no tags and no archive; executions are scenario logs, listed per scenario. Every write
//! and every read by id first makes sure the scenario is this team's: an API key usually
//! reaches several teams, and an environment must never touch another one's scenarios. That
//! check fails closed: a scenario answered without its `teamId` is an invalid answer, one of
//! another team is not found (and left out of a listing, with a warning).
//!
//! Lists are paged by offset and sorted by id (`pg[sortBy]=id`, ascending; logs keep Make's
//! newest-first order), so a scenario created or renamed while a sync walks the pages moves
//! nothing across the walk's offset. A walk ends with `InvalidResponse` rather than looping when
//! an answer does not say its offset or repeats the page before.

mod http;
pub mod shape;

use std::collections::HashSet;
use std::sync::{Mutex, PoisonError};

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

/// At most this many scenarios are remembered as this team's (then the memory starts over).
const REMEMBERED: usize = 10_000;

#[derive(Debug)]
pub struct Make {
    api: Api,
    team_id: u64,
    /// Scenarios this adapter has read as its team's. Make does not move a scenario to another
    /// team, so a walk over a scenario's logs checks once, whatever cursor it starts from.
    owned: Mutex<HashSet<u64>>,
}

/// Where a walk over a list is: the next offset, and the first id of the page before (an
/// answer holding it again means the server did not page). Written `offset:id`; a plain
/// offset, as cursors were first stored, is read too.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Cursor {
    offset: u64,
    previous_first: Option<String>,
}

impl Cursor {
    fn parse(text: &str) -> ProviderResult<Self> {
        let (offset, first) = match text.split_once(':') {
            Some((offset, first)) => (offset, Some(first)),
            None => (text, None),
        };
        let offset = offset.trim().parse::<u64>().map_err(|_| {
            ProviderError::Validation(format!("`{}` is not a Make page cursor", quote(text)))
        })?;
        Ok(Self {
            offset,
            previous_first: first.filter(|f| !f.is_empty()).map(str::to_owned),
        })
    }

    fn text(&self) -> String {
        match &self.previous_first {
            Some(first) => format!("{}:{first}", self.offset),
            None => self.offset.to_string(),
        }
    }
}

/// A listed item's id as text (Make's are numbers, a log's are hex strings).
fn item_id(item: &Value) -> Option<String> {
    match item.get("id")? {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// The cursor after the page asked for at `asked` that answered `items` and `pg`; None when it
/// was the last (shorter than the page size Make allowed, `pg.limit`). An answer that does not
/// echo the offset asked for, or holds the previous page's first item again, would be walked
/// forever: it is refused, as is one with more items than a page holds.
fn next_cursor(
    path: &str,
    asked: &Cursor,
    pg: Option<&Value>,
    items: &[Value],
) -> ProviderResult<Option<String>> {
    let offset = asked.offset;
    let Some(echoed) = pg.and_then(|pg| pg.get("offset")).and_then(Value::as_u64) else {
        return Err(ProviderError::InvalidResponse(format!(
            "GET {path} answered without `pg.offset`; stopping instead of walking pages it may not have"
        )));
    };
    if echoed != offset {
        return Err(ProviderError::InvalidResponse(format!(
            "GET {path} answered offset {echoed} when asked for {offset}; stopping instead of looping"
        )));
    }
    if let Some(first) = &asked.previous_first
        && items.iter().any(|i| item_id(i).as_ref() == Some(first))
    {
        return Err(ProviderError::InvalidResponse(format!(
            "GET {path} at offset {offset} answered `{}` of the page before again; stopping instead of looping",
            quote(first)
        )));
    }
    let limit = pg
        .and_then(|pg| pg.get("limit"))
        .and_then(Value::as_u64)
        .filter(|l| *l > 0)
        .map_or(PAGE, |l| l.min(PAGE));
    let len = items.len() as u64;
    // More than asked for would also mean that many blueprint reads for one page.
    if len > PAGE {
        return Err(ProviderError::InvalidResponse(format!(
            "GET {path} answered {len} items when asked for at most {PAGE}"
        )));
    }
    if len == 0 || len < limit {
        return Ok(None);
    }
    let next = offset.checked_add(len).ok_or_else(|| {
        ProviderError::InvalidResponse(format!("GET {path}: no offset follows {offset}"))
    })?;
    Ok(Some(
        Cursor {
            offset: next,
            previous_first: items.first().and_then(item_id),
        }
        .text(),
    ))
}

/// `query` sorted by id, ascending: an order no edit changes and new items join at the end.
fn by_id(mut query: Vec<(&'static str, String)>) -> Vec<(&'static str, String)> {
    query.push(("pg[sortBy]", "id".to_owned()));
    query.push(("pg[sortDir]", "asc".to_owned()));
    query
}

impl Make {
    pub fn new(http: reqwest::Client, connection: Connection) -> ProviderResult<Self> {
        let target = parse_base_url(&connection.base_url)?;
        Ok(Self {
            api: Api::new(http, target.api_root, connection.api_key, connection.limits),
            team_id: target.team_id,
            owned: Mutex::new(HashSet::new()),
        })
    }

    /// The team this environment is.
    pub fn team_id(&self) -> u64 {
        self.team_id
    }

    fn team(&self) -> (&'static str, String) {
        ("teamId", self.team_id.to_string())
    }

    /// One page of a list endpoint, the items under `key`, and the cursor to the next
    /// ([`next_cursor`]).
    async fn page(
        &self,
        path: &str,
        key: &str,
        cursor: Option<&str>,
        mut query: Vec<(&'static str, String)>,
    ) -> ProviderResult<(Vec<Value>, Option<String>)> {
        let asked = match cursor {
            None => Cursor {
                offset: 0,
                previous_first: None,
            },
            Some(c) => Cursor::parse(c)?,
        };
        query.push(("pg[offset]", asked.offset.to_string()));
        query.push(("pg[limit]", PAGE.to_string()));
        let mut body = self.api.call(Method::GET, path, &query, None).await?;
        let Some(object) = body.as_object_mut() else {
            return Err(ProviderError::InvalidResponse(format!(
                "GET {path} answered without a `{key}` list"
            )));
        };
        let pg = object.remove("pg");
        let Some(Value::Array(items)) = object.remove(key) else {
            return Err(ProviderError::InvalidResponse(format!(
                "GET {path} answered without a `{key}` list"
            )));
        };
        let next = next_cursor(path, &asked, pg.as_ref(), &items)?;
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
        self.remember(id);
        Ok(scenario)
    }

    /// Whether `scenario` (`id`) is this team's, failing closed: one of another team is, for this
    /// environment, not there; one answered without its team cannot be told to be ours.
    fn own(&self, scenario: &Value, id: u64) -> ProviderResult<()> {
        match shape::id_of(scenario.get("teamId")) {
            Some(team) if team == self.team_id => Ok(()),
            Some(_) => Err(ProviderError::NotFound(format!(
                "scenario {id} is not in team {}",
                self.team_id
            ))),
            None => Err(ProviderError::InvalidResponse(format!(
                "scenario {id} was answered without its `teamId`"
            ))),
        }
    }

    fn remember(&self, id: u64) {
        let mut owned = self.owned.lock().unwrap_or_else(PoisonError::into_inner);
        if owned.len() >= REMEMBERED {
            owned.clear();
        }
        owned.insert(id);
    }

    fn known_own(&self, id: u64) -> bool {
        self.owned
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .contains(&id)
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
            match shape::id_of(team.get("id")) {
                Some(id) if id == self.team_id => {}
                Some(_) => {
                    return Err(ProviderError::InvalidResponse(format!(
                        "GET {path} answered with another team"
                    )));
                }
                None => {
                    return Err(ProviderError::InvalidResponse(format!(
                        "GET {path} answered a team without its `id`"
                    )));
                }
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

    /// A page of the team's scenarios (by id), each with its blueprint (fetched a few at a
    /// time, as the limiter allows). A scenario deleted between the two reads is left out, and
    /// so is one of another team (with a warning: Make was asked for this team's); one without
    /// its `teamId` makes the page an invalid answer (left out, it would read as deleted).
    fn list_workflows<'a>(
        &'a self,
        cursor: Option<&'a str>,
    ) -> BoxFuture<'a, ProviderResult<Page<Value>>> {
        async move {
            let (scenarios, next) = self
                .page("/scenarios", "scenarios", cursor, by_id(vec![self.team()]))
                .await?;
            let mut ours = Vec::with_capacity(scenarios.len());
            for scenario in scenarios {
                let id = shape::id_of(scenario.get("id")).ok_or_else(|| {
                    ProviderError::InvalidResponse("a scenario without a numeric `id`".into())
                })?;
                match self.own(&scenario, id) {
                    Ok(()) => ours.push((id, scenario)),
                    Err(ProviderError::NotFound(_)) => tracing::warn!(
                        scenario = id,
                        team = self.team_id,
                        "Make listed another team's scenario; left out"
                    ),
                    Err(e) => return Err(e),
                }
            }
            let items: Vec<Option<Value>> = futures::stream::iter(ours)
                .map(|(id, scenario)| async move {
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

    /// The team's connections (`GET /connections?teamId`), by id.
    fn list_credentials<'a>(
        &'a self,
        cursor: Option<&'a str>,
    ) -> BoxFuture<'a, ProviderResult<Page<CredentialMeta>>> {
        async move {
            typed(
                self.page(
                    "/connections",
                    "connections",
                    cursor,
                    by_id(vec![self.team()]),
                )
                .await?,
                shape::credential,
            )
        }
        .boxed()
    }

    /// The team's members (`GET /users?teamId`), by id, with their team role's id.
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
                self.page("/users", "users", cursor, by_id(query)).await?,
                shape::user,
            )
        }
        .boxed()
    }

    /// One scenario's logs, newest first (`GET /scenarios/{id}/logs`). Make lists runs per
    /// scenario only, so without `workflow_id` this is `Unsupported`: walking every scenario
    /// could not keep the newest-first order the trait promises. Statuses: success, warning,
    /// error (Make's 1, 2, 3); no other status filter exists. The scenario must be this team's:
    /// checked once per walk (on whichever page this adapter reads first, cursor or not).
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
            if !self.known_own(id) {
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

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn page(ids: &[u64]) -> Vec<Value> {
        ids.iter().map(|i| json!({"id": i})).collect()
    }

    fn at(offset: u64, previous_first: Option<&str>) -> Cursor {
        Cursor {
            offset,
            previous_first: previous_first.map(str::to_owned),
        }
    }

    #[test]
    fn cursors_carry_the_offset_and_the_page_befores_first_id() {
        let read = |c: &str| Cursor::parse(c).unwrap_or_else(|e| panic!("{c}: {e}"));
        assert_eq!(read("200:4101"), at(200, Some("4101")));
        assert_eq!(read("200:a0000001"), at(200, Some("a0000001")));
        assert_eq!(read("100"), at(100, None), "a cursor stored before");
        assert_eq!(read(" 100 "), at(100, None));
        assert_eq!(read("100:"), at(100, None));
        assert_eq!(read("5:x:y"), at(5, Some("x:y")));
        for c in ["200:4101", "100", "5:x:y"] {
            assert_eq!(read(c).text(), c);
        }
        for bad in ["", ":1", "x", "-1", "1.5", "18446744073709551616"] {
            assert!(
                matches!(Cursor::parse(bad), Err(ProviderError::Validation(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn a_full_page_leads_to_the_next_and_a_short_one_ends_the_walk() {
        let pg =
            |offset: u64, limit: u64| json!({"sortBy": "id", "offset": offset, "limit": limit});
        let next = |asked: &Cursor, pg: Value, items: &[Value]| {
            next_cursor("/scenarios", asked, Some(&pg), items).unwrap_or_else(|e| panic!("{e}"))
        };
        assert_eq!(
            next(&at(0, None), pg(0, 2), &page(&[7, 9])),
            Some("2:7".to_owned())
        );
        assert_eq!(
            next(&at(2, Some("7")), pg(2, 2), &page(&[11, 12])),
            Some("4:11".to_owned())
        );
        assert_eq!(next(&at(4, Some("11")), pg(4, 2), &page(&[13])), None);
        assert_eq!(next(&at(4, Some("11")), pg(4, 2), &[]), None);
        // Make allowed fewer than asked: a page of that many is full.
        assert_eq!(
            next(&at(0, None), pg(0, 1), &page(&[7])),
            Some("1:7".to_owned())
        );
        // A page of log entries, keyed by their hex ids.
        let logs = [json!({"id": "a2"}), json!({"id": "a1"})];
        assert_eq!(next(&at(0, None), pg(0, 2), &logs), Some("2:a2".to_owned()));
    }

    #[test]
    fn a_page_that_does_not_say_its_offset_or_repeats_the_last_ends_the_walk() {
        let invalid = |asked: &Cursor, pg: Option<Value>, items: &[Value]| {
            matches!(
                next_cursor("/scenarios", asked, pg.as_ref(), items),
                Err(ProviderError::InvalidResponse(_))
            )
        };
        assert!(invalid(&at(0, None), None, &page(&[1, 2])), "no `pg`");
        assert!(invalid(
            &at(0, None),
            Some(json!({"limit": 2})),
            &page(&[1])
        ));
        assert!(invalid(
            &at(2, None),
            Some(json!({"offset": 0, "limit": 2})),
            &page(&[1, 2])
        ));
        assert!(
            invalid(
                &at(2, Some("1")),
                Some(json!({"offset": 2, "limit": 2})),
                &page(&[1, 2])
            ),
            "the first page again"
        );
        assert!(
            invalid(
                &at(u64::MAX - 1, None),
                Some(json!({"offset": u64::MAX - 1, "limit": 2})),
                &page(&[1, 2])
            ),
            "no offset follows"
        );
        let too_many: Vec<u64> = (0..=PAGE).collect();
        assert!(
            invalid(
                &at(0, None),
                Some(json!({"offset": 0, "limit": PAGE})),
                &page(&too_many)
            ),
            "more than a page"
        );
    }
}
