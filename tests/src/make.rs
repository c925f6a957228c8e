//! A Make.com API v2 (`/api/v2`) served on a loopback port, for end-to-end tests.
//!
//! It speaks the subset WorkflowOps uses with Make's request and response shapes (the Make
//! section of the shared `providers.md` and Make's published API definitions): `Authorization:
//! Token …`, one organisation of teams (an API key reaches every team, or only some), scenarios
//! that belong to a team (another team's is 404 to a key that cannot reach it), blueprints and
//! schedulings written as JSON *text* and served as objects, `pg[offset]`/`pg[limit]` paging
//! with a `pg` object in every list (capped at a configurable page size) and `pg[sortBy]`/
//! `pg[sortDir]` sorting (scenarios and connections by name unless asked otherwise, members
//! newest first, logs newest first), connections, team members, scenario logs, start/stop, and
//! errors as `{message, detail, code, suberrors}`. Faults (5xx, 429 with `Retry-After`, slow
//! answers, dropped connections, broken JSON) can be queued to exercise clients' retry and error
//! paths, [`Quirk`]s make it answer as a broken or hostile server would, and every request is
//! counted and logged.
//! State lives in memory; tests seed and inspect it directly, without going over HTTP.
//!
//! Not implemented: organisations' listings, folders' endpoints, hooks, data stores, blueprint
//! versions, `/scenarios/{id}/run`, connection tests, `cols[]` outside `/users`, and Make's
//! checks of modules and apps inside a blueprint (any `flow` list is accepted).

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use axum::body::Bytes;
use axum::extract::{Extension, OriginalUri, Path, Query, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{Map, Value, json};
use tokio::net::TcpListener;

pub use crate::faults::Fault;
use crate::faults::{self, Faults};
use tokio::task::JoinHandle;

/// The organisation every team of the peer belongs to.
pub const ORGANIZATION_ID: u64 = 3001;
/// Items per page when a request does not say.
const DEFAULT_LIMIT: usize = 100;
const SCHEDULING_TYPES: &[&str] = &[
    "immediately",
    "indefinitely",
    "once",
    "daily",
    "weekly",
    "monthly",
    "yearly",
    "on-demand",
];
const SCENARIO_CREATE_KEYS: &[&str] = &["teamId", "folderId", "blueprint", "scheduling", "basedon"];
const SCENARIO_UPDATE_KEYS: &[&str] =
    &["name", "description", "folderId", "scheduling", "blueprint"];
const USER_COLUMNS: &[&str] = &[
    "id",
    "name",
    "email",
    "language",
    "timezoneId",
    "localeId",
    "countryId",
    "features",
    "avatar",
    "lastLogin",
];

// ---------------------------------------------------------------------------------------------
// Public interface
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone)]
pub struct MakeConfig {
    /// The key that reaches every team.
    pub api_key: String,
    /// The largest `pg[limit]` honoured; a larger one is cut to this (and `pg.limit` says so).
    pub max_page: usize,
}

impl Default for MakeConfig {
    fn default() -> Self {
        Self {
            api_key: "make-test-token".to_owned(),
            max_page: 10_000,
        }
    }
}

/// A way the peer departs from Make's API until [`MakePeer::clear_quirks`]: what a broken or
/// hostile server answers, for clients' defences.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Quirk {
    /// Lists answer without their `pg` object.
    ListsWithoutPg,
    /// Lists answer from their first item whatever `pg[offset]` asks (`pg` still echoes it).
    ListsIgnoreOffset,
    /// `GET /scenarios?teamId=` answers the scenarios of every team the key reaches.
    ListsIgnoreTeam,
    /// Scenarios (read, listed or written) are answered without their `teamId`.
    ScenariosWithoutTeam,
    /// `GET /teams/{id}` answers a team without its `id`.
    TeamWithoutId,
    /// Scenario listings leave this scenario out (as an offset shifted by a deletion during a
    /// walk does); it is still there when read by id.
    ListsSkipScenario(u64),
    /// `GET /scenarios/{id}/blueprint` answers its JSON padded with whitespace to 65 MiB, with
    /// its `Content-Length` or (`declared: false`) streamed without one.
    HugeBlueprints { declared: bool },
}

/// How long a [`Quirk::HugeBlueprints`] answer is.
pub const HUGE_BODY: usize = 65 << 20;

/// A running peer. The server stops when this is dropped.
pub struct MakePeer {
    addr: SocketAddr,
    ctx: Ctx,
    server: JoinHandle<()>,
}

impl Drop for MakePeer {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl MakePeer {
    /// Starts a peer with one organisation and one team ([`MakePeer::team`]).
    pub async fn start(config: MakeConfig) -> Self {
        let mut inner = Inner::new(config.max_page.max(1));
        inner
            .tokens
            .insert(config.api_key.clone(), Access { teams: None });
        let team = inner.add_team("Production");
        inner.first_team = team;
        let ctx = Ctx {
            inner: Arc::new(Mutex::new(inner)),
            api_key: Arc::from(config.api_key.as_str()),
        };
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap_or_else(|e| panic!("make peer: bind: {e}"));
        let addr = listener
            .local_addr()
            .unwrap_or_else(|e| panic!("make peer: local address: {e}"));
        let app = router(ctx.clone());
        let server = tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app).await {
                eprintln!("make peer stopped: {e}");
            }
        });
        Self { addr, ctx, server }
    }

    /// `http://127.0.0.1:PORT`, the zone's address.
    pub fn origin(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// A WorkflowOps base URL for one team: `http://127.0.0.1:PORT?teamId=N`.
    pub fn base_url(&self, team: u64) -> String {
        format!("{}?teamId={team}", self.origin())
    }

    /// The key that reaches every team.
    pub fn api_key(&self) -> String {
        self.ctx.api_key.to_string()
    }

    /// The team the peer starts with.
    pub fn team(&self) -> u64 {
        self.ctx.lock().first_team
    }

    pub fn add_team(&self, name: &str) -> u64 {
        self.ctx.lock().add_team(name)
    }

    pub fn add_folder(&self, team: u64, name: &str) -> u64 {
        self.ctx.lock().add_folder(team, name)
    }

    /// A new API key that reaches only these teams.
    pub fn add_token(&self, teams: &[u64]) -> String {
        let mut s = self.ctx.lock();
        let token = format!("make-token-{}", s.tokens.len() + 1);
        s.tokens.insert(
            token.clone(),
            Access {
                teams: Some(Arc::new(teams.iter().copied().collect())),
            },
        );
        token
    }

    /// Stores a scenario as if it had been built in Make, inactive, named after its blueprint.
    // Takes the value (not a reference) because callers build it inline with `json!`.
    #[allow(clippy::needless_pass_by_value)]
    pub fn add_scenario(&self, team: u64, blueprint: Value) -> u64 {
        let mut s = self.ctx.lock();
        let name = blueprint
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or("Untitled")
            .to_owned();
        s.add_scenario(team, None, name, blueprint, default_scheduling())
    }

    /// Adds `n` scenarios to a team (a webhook, an HTTP call and a Google Sheets row using one
    /// of the team's connections, created if it has none). Returns their ids in listing order.
    pub fn seed_scenarios(&self, team: u64, n: usize) -> Vec<u64> {
        let mut s = self.ctx.lock();
        let connection = match s.connections.values().find(|c| c.team_id == team) {
            Some(c) => c.id,
            None => s.add_connection(team, "Google (ops)", "google", "oauth"),
        };
        (0..n)
            .map(|i| {
                let name = format!("Scenario {:03}", s.scenarios.len() + i + 1);
                let blueprint = seed_blueprint(&name, connection);
                s.add_scenario(team, None, name, blueprint, default_scheduling())
            })
            .collect()
    }

    /// A connection of a team: `account_name` is its app (`google`, `slack2`), `account_type`
    /// its kind of authorisation (`oauth`, `basic`).
    pub fn add_connection(
        &self,
        team: u64,
        name: &str,
        account_name: &str,
        account_type: &str,
    ) -> u64 {
        self.ctx
            .lock()
            .add_connection(team, name, account_name, account_type)
    }

    /// A member of a team with a team role (`usersRoleId`).
    pub fn add_user(&self, team: u64, name: &str, email: &str, team_role_id: u64) -> u64 {
        let mut s = self.ctx.lock();
        let id = s.next(Kind::User);
        let last_login = s.now();
        s.users.insert(
            id,
            User {
                id,
                name: name.to_owned(),
                email: email.to_owned(),
                last_login,
            },
        );
        s.memberships.insert((team, id), team_role_id);
        id
    }

    /// Logs one run of a scenario with Make's status (1 success, 2 warning, 3 error); each log
    /// is later than the previous one. Returns the log's id.
    pub fn add_log(&self, scenario: u64, status: u8) -> String {
        self.ctx.lock().add_log(scenario, Some(status), "auto")
    }

    /// Logs an edit of a scenario (`type: modify`), which Make lists among its runs.
    pub fn add_edit_log(&self, scenario: u64) -> String {
        self.ctx.lock().add_log(scenario, None, "modify")
    }

    /// The scenario as `GET /api/v2/scenarios/{id}` returns it.
    pub fn scenario(&self, id: u64) -> Option<Value> {
        let s = self.ctx.lock();
        s.scenarios.get(&id).map(|sc| s.scenario_json(sc))
    }

    /// The blueprint stored for a scenario.
    pub fn blueprint(&self, id: u64) -> Option<Value> {
        self.ctx
            .lock()
            .scenarios
            .get(&id)
            .map(|s| s.blueprint.clone())
    }

    pub fn scenario_count(&self, team: u64) -> usize {
        self.ctx
            .lock()
            .scenarios
            .values()
            .filter(|s| s.team_id == team)
            .count()
    }

    pub fn inject(&self, fault: Fault) {
        self.ctx.lock().faults.push(fault);
    }

    pub fn clear_faults(&self) {
        self.ctx.lock().faults.clear();
    }

    pub fn set_quirk(&self, quirk: Quirk) {
        self.ctx.lock().quirks.insert(quirk);
    }

    pub fn clear_quirks(&self) {
        self.ctx.lock().quirks.clear();
    }

    /// Renames a scenario as if it had been edited in Make.
    pub fn rename_scenario(&self, id: u64, name: &str) {
        let mut s = self.ctx.lock();
        let now = s.now();
        match s.scenarios.get_mut(&id) {
            Some(sc) => {
                sc.name = name.to_owned();
                sc.last_edit = now;
            }
            None => panic!("make peer: rename_scenario: no scenario {id}"),
        }
    }

    /// How many requests under `/api/v2` arrived, faulted ones included.
    pub fn requests(&self) -> u64 {
        self.ctx.lock().requests.len() as u64
    }

    /// Every request under `/api/v2` so far, as `METHOD /api/v2/path?query` (query as sent).
    pub fn request_log(&self) -> Vec<String> {
        self.ctx.lock().requests.clone()
    }
}

fn default_scheduling() -> Value {
    json!({"type": "indefinitely", "interval": 900})
}

/// A realistic three-module blueprint whose Sheets module uses `connection`.
fn seed_blueprint(name: &str, connection: u64) -> Value {
    json!({
        "name": name,
        "flow": [
            {"id": 1, "module": "gateway:CustomWebHook", "version": 1,
             "parameters": {"hook": 1, "maxResults": 1}, "mapper": {},
             "metadata": {"designer": {"x": 0, "y": 0}}},
            {"id": 2, "module": "http:ActionSendData", "version": 3,
             "parameters": {"handleErrors": false},
             "mapper": {"url": "https://example.com/orders/{{1.id}}", "method": "get"},
             "metadata": {"designer": {"x": 300, "y": 0}}},
            {"id": 3, "module": "google-sheets:addRow", "version": 2,
             "parameters": {"__IMTCONN__": connection},
             "mapper": {"spreadsheetId": "sheet-1", "values": {"0": "{{2.data.id}}"}},
             "metadata": {"designer": {"x": 600, "y": 0}}}
        ],
        "metadata": {"instant": true, "version": 1,
                     "scenario": {"roundtrips": 1, "maxErrors": 3, "autoCommit": true,
                                  "sequential": false, "confidential": false},
                     "designer": {"orphans": []}, "zone": "eu1.make.com"}
    })
}

// ---------------------------------------------------------------------------------------------
// State
// ---------------------------------------------------------------------------------------------

#[derive(Clone)]
struct Ctx {
    inner: Arc<Mutex<Inner>>,
    api_key: Arc<str>,
}

impl Ctx {
    /// A panicking test must not wedge every other request, so poisoning is ignored.
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Which teams a request's key reaches (None: all).
#[derive(Clone)]
struct Access {
    teams: Option<Arc<HashSet<u64>>>,
}

impl Access {
    fn reaches(&self, team: u64) -> bool {
        self.teams.as_ref().is_none_or(|t| t.contains(&team))
    }
}

#[derive(Clone, Copy)]
enum Kind {
    Team,
    Folder,
    Scenario,
    Connection,
    User,
    Log,
}

struct Team {
    id: u64,
    name: String,
    folders: BTreeSet<u64>,
}

struct Scenario {
    id: u64,
    team_id: u64,
    folder_id: Option<u64>,
    name: String,
    description: String,
    blueprint: Value,
    scheduling: Value,
    active: bool,
    created: DateTime<Utc>,
    last_edit: DateTime<Utc>,
    /// Changes with every run, as Make's counters do.
    operations: u64,
}

struct Connection {
    id: u64,
    team_id: u64,
    name: String,
    account_name: String,
    account_type: String,
}

struct User {
    id: u64,
    name: String,
    email: String,
    last_login: DateTime<Utc>,
}

struct Log {
    id: String,
    scenario_id: u64,
    team_id: u64,
    /// None for an edit (`type: modify`).
    status: Option<u8>,
    kind: &'static str,
    timestamp: DateTime<Utc>,
    duration_ms: u64,
}

struct Inner {
    max_page: usize,
    first_team: u64,
    counters: [u64; 6],
    clock: DateTime<Utc>,
    tokens: BTreeMap<String, Access>,
    teams: BTreeMap<u64, Team>,
    scenarios: BTreeMap<u64, Scenario>,
    connections: BTreeMap<u64, Connection>,
    users: BTreeMap<u64, User>,
    /// (team, user) → team role id.
    memberships: BTreeMap<(u64, u64), u64>,
    logs: Vec<Log>,
    faults: Faults,
    quirks: HashSet<Quirk>,
    requests: Vec<String>,
}

impl Inner {
    fn new(max_page: usize) -> Self {
        Self {
            max_page,
            first_team: 0,
            // Each kind of id in its own range, as Make's are distinct sequences.
            counters: [40, 900, 4000, 5000, 100, 0xa000_0000],
            clock: DateTime::<Utc>::MIN_UTC,
            tokens: BTreeMap::new(),
            teams: BTreeMap::new(),
            scenarios: BTreeMap::new(),
            connections: BTreeMap::new(),
            users: BTreeMap::new(),
            memberships: BTreeMap::new(),
            logs: Vec::new(),
            faults: Faults::default(),
            quirks: HashSet::new(),
            requests: Vec::new(),
        }
    }

    fn next(&mut self, kind: Kind) -> u64 {
        let slot = &mut self.counters[kind as usize];
        *slot += 1;
        *slot
    }

    /// Now to the millisecond, strictly later than the previous call.
    fn now(&mut self) -> DateTime<Utc> {
        let now = Utc::now();
        let now = DateTime::from_timestamp_millis(now.timestamp_millis()).unwrap_or(now);
        self.clock = if now > self.clock {
            now
        } else {
            self.clock + chrono::Duration::milliseconds(1)
        };
        self.clock
    }

    fn add_team(&mut self, name: &str) -> u64 {
        let id = self.next(Kind::Team);
        self.teams.insert(
            id,
            Team {
                id,
                name: name.to_owned(),
                folders: BTreeSet::new(),
            },
        );
        id
    }

    fn add_folder(&mut self, team: u64, _name: &str) -> u64 {
        let id = self.next(Kind::Folder);
        match self.teams.get_mut(&team) {
            Some(t) => {
                t.folders.insert(id);
            }
            None => panic!("make peer: add_folder: no team {team}"),
        }
        id
    }

    fn add_scenario(
        &mut self,
        team: u64,
        folder: Option<u64>,
        name: String,
        blueprint: Value,
        scheduling: Value,
    ) -> u64 {
        assert!(self.teams.contains_key(&team), "make peer: no team {team}");
        let id = self.next(Kind::Scenario);
        let now = self.now();
        self.scenarios.insert(
            id,
            Scenario {
                id,
                team_id: team,
                folder_id: folder,
                name,
                description: String::new(),
                blueprint,
                scheduling,
                active: false,
                created: now,
                last_edit: now,
                operations: 0,
            },
        );
        id
    }

    fn add_connection(
        &mut self,
        team: u64,
        name: &str,
        account_name: &str,
        account_type: &str,
    ) -> u64 {
        let id = self.next(Kind::Connection);
        self.connections.insert(
            id,
            Connection {
                id,
                team_id: team,
                name: name.to_owned(),
                account_name: account_name.to_owned(),
                account_type: account_type.to_owned(),
            },
        );
        id
    }

    fn add_log(&mut self, scenario: u64, status: Option<u8>, kind: &'static str) -> String {
        let team_id = match self.scenarios.get_mut(&scenario) {
            Some(s) => {
                if status.is_some() {
                    s.operations += 3;
                }
                s.team_id
            }
            None => panic!("make peer: add_log: no scenario {scenario}"),
        };
        let id = format!("{:x}", self.next(Kind::Log));
        let timestamp = self.now();
        self.logs.push(Log {
            id: id.clone(),
            scenario_id: scenario,
            team_id,
            status,
            kind,
            timestamp,
            duration_ms: 1200,
        });
        id
    }

    fn team_json(team: &Team) -> Value {
        json!({"id": team.id, "name": team.name, "organizationId": ORGANIZATION_ID})
    }

    fn scenario_json(&self, s: &Scenario) -> Value {
        let owner = self.users.values().next().map_or_else(
            || json!({"id": 1, "name": "Owner", "email": "owner@example.com"}),
            |u| json!({"id": u.id, "name": u.name, "email": u.email}),
        );
        let mut out = json!({
            "id": s.id, "name": s.name, "teamId": s.team_id, "hookId": null, "deviceId": null,
            "deviceScope": null, "description": s.description, "folderId": s.folder_id,
            "isinvalid": false, "islinked": s.active, "isActive": s.active, "islocked": false,
            "isPaused": false, "usedPackages": used_packages(&s.blueprint),
            "lastEdit": ts(s.last_edit), "created": ts(s.created),
            "scheduling": s.scheduling, "iswaiting": false, "dlqCount": 0,
            "createdByUser": owner, "updatedByUser": owner, "nextExec": null,
            "operations": s.operations, "transfer": s.operations * 512,
        });
        if self.quirks.contains(&Quirk::ScenariosWithoutTeam)
            && let Some(o) = out.as_object_mut()
        {
            o.remove("teamId");
        }
        out
    }
}

fn ts(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// The apps a blueprint's modules (routes and error handlers included) come from.
fn used_packages(blueprint: &Value) -> Vec<String> {
    fn walk(flow: &Value, out: &mut BTreeSet<String>) {
        for module in flow.as_array().into_iter().flatten() {
            if let Some(app) = module
                .get("module")
                .and_then(Value::as_str)
                .and_then(|m| m.split(':').next())
            {
                out.insert(app.to_owned());
            }
            for route in module
                .get("routes")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                walk(&route["flow"], out);
            }
            if let Some(onerror) = module.get("onerror") {
                walk(onerror, out);
            }
        }
    }
    let mut out = BTreeSet::new();
    walk(&blueprint["flow"], &mut out);
    out.into_iter().collect()
}

/// The highest module id in a blueprint, plus one: what Make's editor numbers the next with.
fn id_sequence(blueprint: &Value) -> u64 {
    fn walk(flow: &Value, max: &mut u64) {
        for module in flow.as_array().into_iter().flatten() {
            *max = (*max).max(module.get("id").and_then(Value::as_u64).unwrap_or(0));
            for route in module
                .get("routes")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                walk(&route["flow"], max);
            }
            if let Some(onerror) = module.get("onerror") {
                walk(onerror, max);
            }
        }
    }
    let mut max = 0;
    walk(&blueprint["flow"], &mut max);
    max + 1
}

// ---------------------------------------------------------------------------------------------
// Errors, bodies, pagination
// ---------------------------------------------------------------------------------------------

/// Make's error shape: `{detail, message, code, suberrors?}`.
#[derive(Debug)]
struct ApiError {
    status: StatusCode,
    message: &'static str,
    detail: String,
    suberrors: Vec<String>,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut body = json!({
            "detail": self.detail,
            "message": self.message,
            "code": format!("SC{}", self.status.as_u16()),
        });
        if !self.suberrors.is_empty() {
            body["suberrors"] = self
                .suberrors
                .iter()
                .map(|m| json!({"message": m}))
                .collect();
        }
        (self.status, Json(body)).into_response()
    }
}

type ApiResult = Result<Response, ApiError>;

fn unauthorized(detail: &str) -> ApiError {
    ApiError {
        status: StatusCode::UNAUTHORIZED,
        message: "Access denied",
        detail: detail.to_owned(),
        suberrors: Vec::new(),
    }
}

fn denied() -> ApiError {
    ApiError {
        status: StatusCode::FORBIDDEN,
        message: "Permission denied",
        detail: "Access denied.".to_owned(),
        suberrors: Vec::new(),
    }
}

fn not_found(what: &str) -> ApiError {
    ApiError {
        status: StatusCode::NOT_FOUND,
        message: "Not found",
        detail: format!("{what} not found."),
        suberrors: Vec::new(),
    }
}

fn bad_request(detail: impl Into<String>) -> ApiError {
    ApiError {
        status: StatusCode::BAD_REQUEST,
        message: "Bad request",
        detail: detail.into(),
        suberrors: Vec::new(),
    }
}

fn invalid(detail: impl Into<String>, suberrors: Vec<String>) -> ApiError {
    ApiError {
        status: StatusCode::BAD_REQUEST,
        message: "Validation failed",
        detail: detail.into(),
        suberrors,
    }
}

fn ok(body: &Value) -> ApiResult {
    Ok(Json(body).into_response())
}

type Pairs = Query<Vec<(String, String)>>;

fn param<'a>(q: &'a [(String, String)], key: &str) -> Option<&'a str> {
    q.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
}

fn id_param(q: &[(String, String)], key: &str) -> Result<Option<u64>, ApiError> {
    match param(q, key) {
        None => Ok(None),
        Some(v) => v
            .parse::<u64>()
            .map(Some)
            .map_err(|_| invalid(format!("{key} must be an integer"), Vec::new())),
    }
}

fn path_id(raw: &str, what: &str) -> Result<u64, ApiError> {
    raw.parse::<u64>()
        .map_err(|_| invalid(format!("Invalid {what}."), Vec::new()))
}

/// `pg[offset]`, `pg[limit]` (cut to the peer's page size), `pg[sortBy]` (one of the list's
/// sortable columns) and `pg[sortDir]`.
struct Pg {
    offset: usize,
    limit: usize,
    sort_by: &'static str,
    sort_dir: &'static str,
    /// [`Quirk::ListsIgnoreOffset`]: serve from the first item whatever the offset.
    ignore_offset: bool,
    /// [`Quirk::ListsWithoutPg`]: answer without `pg`.
    hide: bool,
}

impl Pg {
    /// `sorts` are the columns the list sorts by, the first its default.
    fn from_query(
        s: &Inner,
        q: &[(String, String)],
        sorts: &[&'static str],
        sort_dir: &'static str,
    ) -> Result<Self, ApiError> {
        let number = |key: &str| -> Result<Option<usize>, ApiError> {
            param(q, key)
                .map(|v| {
                    v.parse::<usize>().map_err(|_| {
                        invalid(format!("{key} must be a non-negative integer"), Vec::new())
                    })
                })
                .transpose()
        };
        let offset = number("pg[offset]")?.unwrap_or(0);
        let limit = match number("pg[limit]")? {
            Some(0) => return Err(invalid("pg[limit] must be at least 1", Vec::new())),
            Some(l) => l.min(s.max_page),
            None => DEFAULT_LIMIT.min(s.max_page),
        };
        let sort_by = match param(q, "pg[sortBy]") {
            None => sorts[0],
            Some(by) => *sorts.iter().find(|c| **c == by).ok_or_else(|| {
                invalid(
                    format!("pg[sortBy] must be one of {}", sorts.join(", ")),
                    Vec::new(),
                )
            })?,
        };
        let sort_dir = match param(q, "pg[sortDir]") {
            None => sort_dir,
            Some("asc") => "asc",
            Some("desc") => "desc",
            Some(_) => return Err(invalid("pg[sortDir] must be one of asc, desc", Vec::new())),
        };
        Ok(Self {
            offset,
            limit,
            sort_by,
            sort_dir,
            ignore_offset: s.quirks.contains(&Quirk::ListsIgnoreOffset),
            hide: s.quirks.contains(&Quirk::ListsWithoutPg),
        })
    }

    /// This page of `items`, which are in ascending order of [`Pg::sort_by`].
    fn take<T>(&self, mut items: Vec<T>) -> Vec<T> {
        if self.sort_dir == "desc" {
            items.reverse();
        }
        let skip = if self.ignore_offset { 0 } else { self.offset };
        items.into_iter().skip(skip).take(self.limit).collect()
    }

    /// A list's answer: its items under `key`, and `pg`.
    fn answer(&self, key: &str, page: Vec<Value>) -> Value {
        let mut body = Map::new();
        body.insert(key.to_owned(), Value::Array(page));
        if !self.hide {
            body.insert(
                "pg".to_owned(),
                json!({"sortBy": self.sort_by, "sortDir": self.sort_dir,
                       "limit": self.limit, "offset": self.offset}),
            );
        }
        Value::Object(body)
    }
}

fn parse_object(bytes: &Bytes) -> Result<Map<String, Value>, ApiError> {
    match serde_json::from_slice(bytes) {
        Ok(Value::Object(o)) => Ok(o),
        Ok(_) => Err(bad_request("The request body must be a JSON object.")),
        Err(e) => Err(bad_request(format!("Invalid JSON body: {e}"))),
    }
}

fn unknown_keys(body: &Map<String, Value>, allowed: &[&str]) -> Result<(), ApiError> {
    let extra: Vec<String> = body
        .keys()
        .filter(|k| !allowed.contains(&k.as_str()))
        .map(|k| format!("Unknown property '{k}'."))
        .collect();
    if extra.is_empty() {
        Ok(())
    } else {
        Err(invalid("The request body has unknown properties.", extra))
    }
}

/// A blueprint or scheduling, which Make takes only as JSON text.
fn json_text(body: &Map<String, Value>, key: &str) -> Result<Option<Value>, ApiError> {
    match body.get(key) {
        None => Ok(None),
        Some(Value::String(s)) => match serde_json::from_str::<Value>(s) {
            Ok(v @ Value::Object(_)) => Ok(Some(v)),
            _ => Err(invalid(
                format!("Invalid {key}."),
                vec![format!("{key} must be a JSON-encoded object.")],
            )),
        },
        Some(_) => Err(invalid(
            format!("Invalid {key}."),
            vec![format!("{key} must be a string.")],
        )),
    }
}

fn check_blueprint(blueprint: &Value) -> Result<(), ApiError> {
    if blueprint.get("flow").is_some_and(Value::is_array) {
        Ok(())
    } else {
        Err(invalid(
            "Invalid blueprint.",
            vec!["The blueprint has no flow.".to_owned()],
        ))
    }
}

fn check_scheduling(scheduling: &Value) -> Result<(), ApiError> {
    let kind = scheduling.get("type").and_then(Value::as_str);
    if kind.is_some_and(|k| SCHEDULING_TYPES.contains(&k)) {
        Ok(())
    } else {
        Err(invalid(
            "Invalid scheduling.",
            vec![format!(
                "scheduling.type must be one of {}.",
                SCHEDULING_TYPES.join(", ")
            )],
        ))
    }
}

fn folder_of(
    s: &Inner,
    team: u64,
    body: &Map<String, Value>,
) -> Result<Option<Option<u64>>, ApiError> {
    match body.get("folderId") {
        None => Ok(None),
        Some(Value::Null) => Ok(Some(None)),
        Some(v) => {
            let folder = v
                .as_u64()
                .ok_or_else(|| invalid("folderId must be an integer", Vec::new()))?;
            if s.teams
                .get(&team)
                .is_some_and(|t| t.folders.contains(&folder))
            {
                Ok(Some(Some(folder)))
            } else {
                Err(not_found("Folder"))
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// HTTP
// ---------------------------------------------------------------------------------------------

fn router(ctx: Ctx) -> Router {
    let api = Router::new()
        .route("/teams/{id}", get(get_team))
        .route("/scenarios", get(list_scenarios).post(create_scenario))
        .route(
            "/scenarios/{id}",
            get(get_scenario)
                .patch(update_scenario)
                .delete(delete_scenario),
        )
        .route("/scenarios/{id}/blueprint", get(get_blueprint))
        .route("/scenarios/{id}/start", post(start_scenario))
        .route("/scenarios/{id}/stop", post(stop_scenario))
        .route("/scenarios/{id}/logs", get(list_logs))
        .route("/connections", get(list_connections))
        .route("/users", get(list_users))
        .fallback(|| async { not_found("Resource") })
        .layer(middleware::from_fn_with_state(ctx.clone(), guard));
    Router::new().nest("/api/v2", api).with_state(ctx)
}

/// Counts and logs the request, applies the next queued fault, then checks the API key.
async fn guard(State(ctx): State<Ctx>, mut req: Request, next: Next) -> Response {
    let fault = {
        let mut s = ctx.lock();
        // The URI as sent: inside the nested router the `/api/v2` prefix is already gone.
        let uri = req
            .extensions()
            .get::<OriginalUri>()
            .map_or_else(|| req.uri().clone(), |o| o.0.clone());
        let line = format!(
            "{} {}",
            req.method(),
            uri.path_and_query()
                .map_or_else(|| uri.path(), |p| p.as_str())
        );
        s.requests.push(line);
        s.faults.take()
    };
    let truncate = match faults::apply(fault, || {
        Json(json!({
            "detail": "Requests limit for organization exceeded, please try again later.",
            "message": "Too many requests",
            "code": "SC429",
        }))
        .into_response()
    })
    .await
    {
        Ok(truncate) => truncate,
        Err(resp) => return resp,
    };
    let token = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let access = match token.as_deref().map(|t| t.split_once(' ')) {
        None => return unauthorized("Missing authorization header.").into_response(),
        Some(Some(("Token", key))) => ctx.lock().tokens.get(key.trim()).cloned(),
        Some(_) => return unauthorized("Unsupported authorization scheme.").into_response(),
    };
    let Some(access) = access else {
        return unauthorized("Invalid access token.").into_response();
    };
    req.extensions_mut().insert(access);
    let resp = next.run(req).await;
    if truncate {
        faults::truncate(resp).await
    } else {
        resp
    }
}

async fn get_team(
    State(ctx): State<Ctx>,
    Extension(access): Extension<Access>,
    Path(id): Path<String>,
) -> ApiResult {
    let id = path_id(&id, "teamId")?;
    let s = ctx.lock();
    let team = s.teams.get(&id).ok_or_else(|| not_found("Team"))?;
    if !access.reaches(id) {
        return Err(denied());
    }
    let mut team = Inner::team_json(team);
    if s.quirks.contains(&Quirk::TeamWithoutId)
        && let Some(o) = team.as_object_mut()
    {
        o.remove("id");
    }
    ok(&json!({ "team": team }))
}

/// `teamId` or `organizationId`, exactly one, reachable by the key. None: the organisation.
fn team_scope(s: &Inner, access: &Access, q: &[(String, String)]) -> Result<Option<u64>, ApiError> {
    match (id_param(q, "teamId")?, id_param(q, "organizationId")?) {
        (Some(_), Some(_)) => Err(bad_request(
            "teamId and organizationId cannot be used together",
        )),
        (None, None) => Err(bad_request(
            "Missing required parameter teamId or organizationId",
        )),
        (Some(team), None) => {
            if !s.teams.contains_key(&team) {
                Err(not_found("Team"))
            } else if access.reaches(team) {
                Ok(Some(team))
            } else {
                Err(denied())
            }
        }
        (None, Some(org)) if org == ORGANIZATION_ID => Ok(None),
        (None, Some(_)) => Err(not_found("Organization")),
    }
}

async fn list_scenarios(
    State(ctx): State<Ctx>,
    Extension(access): Extension<Access>,
    Query(q): Pairs,
) -> ApiResult {
    let s = ctx.lock();
    let team = team_scope(&s, &access, &q)?;
    let pg = Pg::from_query(&s, &q, &["name", "id"], "asc")?;
    let every_team = s.quirks.contains(&Quirk::ListsIgnoreTeam);
    let mut mine: Vec<&Scenario> = s
        .scenarios
        .values()
        .filter(|sc| {
            (every_team || team.is_none_or(|t| sc.team_id == t))
                && access.reaches(sc.team_id)
                && !s.quirks.contains(&Quirk::ListsSkipScenario(sc.id))
        })
        .collect();
    if pg.sort_by == "name" {
        mine.sort_by(|a, b| a.name.cmp(&b.name).then(a.id.cmp(&b.id)));
    }
    let page: Vec<Value> = pg
        .take(mine)
        .into_iter()
        .map(|sc| s.scenario_json(sc))
        .collect();
    ok(&pg.answer("scenarios", page))
}

/// The scenario if the key reaches its team; otherwise, as for a missing one, 404.
fn reachable<'a>(s: &'a Inner, access: &Access, id: &str) -> Result<&'a Scenario, ApiError> {
    let id = path_id(id, "scenarioId")?;
    s.scenarios
        .get(&id)
        .filter(|sc| access.reaches(sc.team_id))
        .ok_or_else(|| not_found("Scenario"))
}

async fn get_scenario(
    State(ctx): State<Ctx>,
    Extension(access): Extension<Access>,
    Path(id): Path<String>,
) -> ApiResult {
    let s = ctx.lock();
    let sc = reachable(&s, &access, &id)?;
    ok(&json!({"scenario": s.scenario_json(sc)}))
}

async fn get_blueprint(
    State(ctx): State<Ctx>,
    Extension(access): Extension<Access>,
    Path(id): Path<String>,
) -> ApiResult {
    let s = ctx.lock();
    let sc = reachable(&s, &access, &id)?;
    let body = json!({"code": "OK", "response": {
        "blueprint": sc.blueprint,
        "scheduling": sc.scheduling,
        "idSequence": id_sequence(&sc.blueprint),
        "created": ts(sc.last_edit),
    }});
    let huge = [true, false].into_iter().find(|declared| {
        s.quirks.contains(&Quirk::HugeBlueprints {
            declared: *declared,
        })
    });
    let Some(declared) = huge else {
        return ok(&body);
    };
    let mut padded = body.to_string().into_bytes();
    padded.resize(HUGE_BODY.max(padded.len()), b' ');
    let json = [(header::CONTENT_TYPE, "application/json")];
    if declared {
        return Ok((json, padded).into_response());
    }
    let chunks: Vec<Result<Bytes, std::io::Error>> = padded
        .chunks(1 << 20)
        .map(|c| Ok(Bytes::copy_from_slice(c)))
        .collect();
    Ok((
        json,
        axum::body::Body::from_stream(futures::stream::iter(chunks)),
    )
        .into_response())
}

async fn create_scenario(
    State(ctx): State<Ctx>,
    Extension(access): Extension<Access>,
    body: Bytes,
) -> ApiResult {
    let body = parse_object(&body)?;
    unknown_keys(&body, SCENARIO_CREATE_KEYS)?;
    let mut s = ctx.lock();
    let team = body
        .get("teamId")
        .and_then(Value::as_u64)
        .ok_or_else(|| invalid("Missing value of required parameter 'teamId'.", Vec::new()))?;
    if !s.teams.contains_key(&team) {
        return Err(not_found("Team"));
    }
    if !access.reaches(team) {
        return Err(denied());
    }
    let blueprint = json_text(&body, "blueprint")?.ok_or_else(|| {
        invalid(
            "Missing value of required parameter 'blueprint'.",
            Vec::new(),
        )
    })?;
    check_blueprint(&blueprint)?;
    let scheduling = json_text(&body, "scheduling")?.ok_or_else(|| {
        invalid(
            "Missing value of required parameter 'scheduling'.",
            Vec::new(),
        )
    })?;
    check_scheduling(&scheduling)?;
    let folder = folder_of(&s, team, &body)?.flatten();
    let name = blueprint
        .get("name")
        .and_then(Value::as_str)
        .filter(|n| !n.trim().is_empty())
        .unwrap_or("New scenario")
        .to_owned();
    let id = s.add_scenario(team, folder, name, blueprint, scheduling);
    let out = s
        .scenarios
        .get(&id)
        .map(|sc| s.scenario_json(sc))
        .unwrap_or_default();
    ok(&json!({"scenario": out}))
}

async fn update_scenario(
    State(ctx): State<Ctx>,
    Extension(access): Extension<Access>,
    Path(id): Path<String>,
    body: Bytes,
) -> ApiResult {
    let body = parse_object(&body)?;
    let mut s = ctx.lock();
    let (id, team) = {
        let sc = reachable(&s, &access, &id)?;
        (sc.id, sc.team_id)
    };
    unknown_keys(&body, SCENARIO_UPDATE_KEYS)?;
    let blueprint = json_text(&body, "blueprint")?;
    if let Some(b) = &blueprint {
        check_blueprint(b)?;
    }
    let scheduling = json_text(&body, "scheduling")?;
    if let Some(sch) = &scheduling {
        check_scheduling(sch)?;
    }
    let name = match body.get("name") {
        None => None,
        Some(Value::String(n)) if !n.trim().is_empty() => Some(n.clone()),
        Some(_) => return Err(invalid("name must be a non-empty string", Vec::new())),
    };
    let description = match body.get("description") {
        None => None,
        Some(Value::String(d)) => Some(d.clone()),
        Some(_) => return Err(invalid("description must be a string", Vec::new())),
    };
    let folder = folder_of(&s, team, &body)?;
    let now = s.now();
    let Some(sc) = s.scenarios.get_mut(&id) else {
        return Err(not_found("Scenario"));
    };
    if let Some(b) = blueprint {
        sc.blueprint = b;
    }
    if let Some(sch) = scheduling {
        sc.scheduling = sch;
    }
    if let Some(n) = name {
        sc.name = n;
    }
    if let Some(d) = description {
        sc.description = d;
    }
    if let Some(f) = folder {
        sc.folder_id = f;
    }
    sc.last_edit = now;
    let out = s
        .scenarios
        .get(&id)
        .map(|sc| s.scenario_json(sc))
        .unwrap_or_default();
    ok(&json!({"scenario": out}))
}

async fn delete_scenario(
    State(ctx): State<Ctx>,
    Extension(access): Extension<Access>,
    Path(id): Path<String>,
) -> ApiResult {
    let mut s = ctx.lock();
    let id = reachable(&s, &access, &id)?.id;
    s.scenarios.remove(&id);
    s.logs.retain(|l| l.scenario_id != id);
    ok(&json!({"scenario": id}))
}

fn set_active(ctx: &Ctx, access: &Access, id: &str, active: bool) -> ApiResult {
    let mut s = ctx.lock();
    let id = reachable(&s, access, id)?.id;
    if let Some(sc) = s.scenarios.get_mut(&id) {
        sc.active = active;
    }
    ok(&json!({"scenario": {"id": id, "isActive": active, "islinked": active}}))
}

async fn start_scenario(
    State(ctx): State<Ctx>,
    Extension(access): Extension<Access>,
    Path(id): Path<String>,
) -> ApiResult {
    set_active(&ctx, &access, &id, true)
}

async fn stop_scenario(
    State(ctx): State<Ctx>,
    Extension(access): Extension<Access>,
    Path(id): Path<String>,
) -> ApiResult {
    set_active(&ctx, &access, &id, false)
}

fn log_json(l: &Log) -> Value {
    match l.status {
        None => json!({
            "id": l.id, "type": l.kind, "timestamp": ts(l.timestamp), "authorId": 1,
            "detail": {"author": {"name": "Owner", "staff": false}},
        }),
        Some(status) => json!({
            "id": l.id, "imtId": format!("{}-{}", l.scenario_id, l.id),
            "duration": l.duration_ms, "operations": 3, "transfer": 1536,
            "organizationId": ORGANIZATION_ID, "teamId": l.team_id, "type": l.kind,
            "authorId": 1, "instant": false, "timestamp": ts(l.timestamp), "status": status,
        }),
    }
}

/// Newest first; `status` (1, 2, 3) keeps only runs with it, `from`/`to` bound the time
/// (milliseconds since the epoch).
async fn list_logs(
    State(ctx): State<Ctx>,
    Extension(access): Extension<Access>,
    Path(id): Path<String>,
    Query(q): Pairs,
) -> ApiResult {
    let s = ctx.lock();
    let id = reachable(&s, &access, &id)?.id;
    let status = match param(&q, "status") {
        None => None,
        Some(v) => match v.parse::<u8>() {
            Ok(n @ 1..=3) => Some(n),
            _ => return Err(invalid("status must be one of 1, 2, 3", Vec::new())),
        },
    };
    let bound = |key: &str| -> Result<Option<i64>, ApiError> {
        param(&q, key)
            .map(|v| {
                v.parse::<i64>()
                    .map_err(|_| invalid(format!("{key} must be a timestamp"), Vec::new()))
            })
            .transpose()
    };
    let (from, to) = (bound("from")?, bound("to")?);
    let pg = Pg::from_query(&s, &q, &["imtId"], "desc")?;
    let logs = s
        .logs
        .iter()
        .filter(|l| {
            let at = l.timestamp.timestamp_millis();
            l.scenario_id == id
                && status.is_none_or(|st| l.status == Some(st))
                && from.is_none_or(|f| at >= f)
                && to.is_none_or(|t| at <= t)
        })
        .collect();
    let page: Vec<Value> = pg.take(logs).into_iter().map(log_json).collect();
    ok(&pg.answer("scenarioLogs", page))
}

async fn list_connections(
    State(ctx): State<Ctx>,
    Extension(access): Extension<Access>,
    Query(q): Pairs,
) -> ApiResult {
    let s = ctx.lock();
    let team =
        id_param(&q, "teamId")?.ok_or_else(|| bad_request("Missing required parameter teamId"))?;
    if !s.teams.contains_key(&team) {
        return Err(not_found("Team"));
    }
    if !access.reaches(team) {
        return Err(denied());
    }
    let pg = Pg::from_query(&s, &q, &["name", "id"], "asc")?;
    let mut mine: Vec<&Connection> = s
        .connections
        .values()
        .filter(|c| c.team_id == team)
        .collect();
    if pg.sort_by == "name" {
        mine.sort_by(|a, b| a.name.cmp(&b.name).then(a.id.cmp(&b.id)));
    }
    let page: Vec<Value> = pg
        .take(mine)
        .into_iter()
        .map(|c| {
            json!({
                "id": c.id, "name": c.name, "accountName": c.account_name,
                "accountLabel": c.account_name, "packageName": null, "expire": null,
                "metadata": {"type": "email", "value": "ops@example.com"}, "teamId": c.team_id,
                "theme": "#34a853", "upgradeable": false, "scopes": 0, "scoped": true,
                "accountType": c.account_type, "editable": false, "uid": null,
            })
        })
        .collect();
    ok(&pg.answer("connections", page))
}

/// A team's or the organisation's members, newest (highest id) first unless asked otherwise;
/// `cols[]` picks the columns, `teamRoleId` among them when listing a team.
async fn list_users(
    State(ctx): State<Ctx>,
    Extension(access): Extension<Access>,
    Query(q): Pairs,
) -> ApiResult {
    let s = ctx.lock();
    let team = team_scope(&s, &access, &q)?;
    let cols: Vec<&str> = q
        .iter()
        .filter(|(k, _)| k == "cols[]" || k == "cols")
        .map(|(_, v)| v.as_str())
        .collect();
    for col in &cols {
        let known = USER_COLUMNS.contains(col) || (*col == "teamRoleId" && team.is_some());
        if !known {
            return Err(invalid(
                "Invalid cols.",
                vec![format!("Column '{col}' is not allowed.")],
            ));
        }
    }
    let cols: Vec<&str> = if cols.is_empty() {
        USER_COLUMNS.to_vec()
    } else {
        cols
    };
    let pg = Pg::from_query(&s, &q, &["id", "name", "email"], "desc")?;
    let mut members: Vec<(&User, u64)> = s
        .users
        .values()
        .filter_map(|u| {
            let role = match team {
                Some(t) => *s.memberships.get(&(t, u.id))?,
                None => s
                    .memberships
                    .keys()
                    .any(|(t, user)| *user == u.id && access.reaches(*t))
                    .then_some(0)?,
            };
            Some((u, role))
        })
        .collect();
    match pg.sort_by {
        "name" => members.sort_by(|(a, _), (b, _)| a.name.cmp(&b.name).then(a.id.cmp(&b.id))),
        "email" => members.sort_by(|(a, _), (b, _)| a.email.cmp(&b.email).then(a.id.cmp(&b.id))),
        _ => {}
    }
    let page: Vec<Value> = pg
        .take(members)
        .into_iter()
        .map(|(u, role)| {
            let full = json!({
                "id": u.id, "name": u.name, "email": u.email, "language": "en",
                "timezoneId": 113, "localeId": 1, "countryId": 1, "features": {},
                "avatar": "https://secure.gravatar.com/avatar/0.jpg?d=mm",
                "lastLogin": ts(u.last_login), "teamRoleId": role,
            });
            Value::Object(
                cols.iter()
                    .filter_map(|c| full.get(*c).map(|v| ((*c).to_owned(), v.clone())))
                    .collect(),
            )
        })
        .collect();
    ok(&pg.answer("users", page))
}

#[cfg(test)]
mod tests {
    use axum::http::{Method, StatusCode};
    use serde_json::{Value, json};

    use super::{Fault, MakeConfig, MakePeer};

    async fn peer() -> MakePeer {
        MakePeer::start(MakeConfig::default()).await
    }

    fn http() -> reqwest::Client {
        let _ = rustls::crypto::ring::default_provider().install_default();
        reqwest::Client::new()
    }

    /// An API call with the given key; the body is Null when the answer is not JSON.
    async fn call_as(
        make: &MakePeer,
        key: &str,
        method: Method,
        path_and_query: &str,
        body: Option<&Value>,
    ) -> (StatusCode, Value) {
        let url = format!("{}/api/v2{path_and_query}", make.origin());
        let mut req = http()
            .request(method, url)
            .header("Authorization", format!("Token {key}"));
        if let Some(body) = body {
            req = req.json(body);
        }
        let resp = req
            .send()
            .await
            .unwrap_or_else(|e| panic!("request to {path_and_query}: {e}"));
        let status = resp.status();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    async fn call(
        make: &MakePeer,
        method: Method,
        path_and_query: &str,
        body: Option<&Value>,
    ) -> (StatusCode, Value) {
        call_as(make, &make.api_key(), method, path_and_query, body).await
    }

    fn create_body(team: u64, name: &str) -> Value {
        json!({
            "teamId": team,
            "blueprint": json!({"name": name, "flow": [], "metadata": {"version": 1}}).to_string(),
            "scheduling": json!({"type": "on-demand"}).to_string(),
        })
    }

    #[tokio::test]
    async fn requests_need_a_token_in_makes_scheme() {
        let make = peer().await;
        let team = make.team();
        let url = format!("{}/api/v2/teams/{team}", make.origin());
        for auth in [
            None,
            Some(format!("Bearer {}", make.api_key())),
            Some("Token nope".into()),
        ] {
            let mut req = http().get(&url);
            if let Some(a) = auth {
                req = req.header("Authorization", a);
            }
            let resp = req.send().await.unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
            let body: Value = resp.json().await.unwrap_or_default();
            assert_eq!(body["message"], "Access denied");
            assert_eq!(body["code"], "SC401");
        }
        let (status, body) = call(&make, Method::GET, &format!("/teams/{team}"), None).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body["team"]["id"], team);
    }

    #[tokio::test]
    async fn scenarios_are_created_from_json_text_and_belong_to_a_team() {
        let make = peer().await;
        let team = make.team();
        let mut as_objects = create_body(team, "Objects");
        as_objects["blueprint"] = json!({"name": "Objects", "flow": []});
        let (status, body) = call(&make, Method::POST, "/scenarios", Some(&as_objects)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(body["message"], "Validation failed");
        assert_eq!(
            body["suberrors"][0]["message"],
            "blueprint must be a string."
        );

        let mut extra = create_body(team, "Extra");
        extra["isActive"] = json!(true);
        let (status, body) = call(&make, Method::POST, "/scenarios", Some(&extra)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(
            body["suberrors"][0]["message"],
            "Unknown property 'isActive'."
        );

        let (status, body) = call(
            &make,
            Method::POST,
            "/scenarios",
            Some(&create_body(team, "Good")),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["scenario"]["name"], "Good");
        assert_eq!(body["scenario"]["isActive"], false);
        let id = body["scenario"]["id"].as_u64().unwrap_or_default();
        let (_, bp) = call(
            &make,
            Method::GET,
            &format!("/scenarios/{id}/blueprint"),
            None,
        )
        .await;
        assert_eq!(bp["response"]["blueprint"]["name"], "Good");
        assert_eq!(bp["response"]["scheduling"]["type"], "on-demand");

        // A key for another team: the scenario is not there for it, and its team is refused.
        let other = make.add_team("Staging");
        let key = make.add_token(&[other]);
        let (status, _) =
            call_as(&make, &key, Method::GET, &format!("/scenarios/{id}"), None).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        let (status, body) = call_as(
            &make,
            &key,
            Method::GET,
            &format!("/scenarios?teamId={team}"),
            None,
        )
        .await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        assert_eq!(body["message"], "Permission denied");
        let (status, _) = call(&make, Method::GET, "/scenarios", None).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
    }

    #[tokio::test]
    async fn pages_follow_offset_and_limit_and_say_so() {
        let make = MakePeer::start(MakeConfig {
            max_page: 4,
            ..MakeConfig::default()
        })
        .await;
        let team = make.team();
        let ids = make.seed_scenarios(team, 10);
        let (_, page) = call(
            &make,
            Method::GET,
            &format!("/scenarios?teamId={team}&pg%5Boffset%5D=4&pg%5Blimit%5D=100"),
            None,
        )
        .await;
        let got: Vec<u64> = page["scenarios"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|s| s["id"].as_u64())
            .collect();
        assert_eq!(got, ids[4..8], "seeded names sort as their ids do");
        assert_eq!(
            page["pg"],
            json!({"sortBy": "name", "sortDir": "asc", "limit": 4, "offset": 4})
        );

        // Renamed, the last sorts first by name, and stays last by id.
        make.rename_scenario(ids[9], "A first");
        let ids_of = |page: &Value| -> Vec<u64> {
            page["scenarios"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|s| s["id"].as_u64())
                .collect()
        };
        let (_, by_name) = call(
            &make,
            Method::GET,
            &format!("/scenarios?teamId={team}"),
            None,
        )
        .await;
        assert_eq!(ids_of(&by_name)[0], ids[9]);
        let (_, by_id) = call(
            &make,
            Method::GET,
            &format!("/scenarios?teamId={team}&pg%5BsortBy%5D=id&pg%5BsortDir%5D=desc"),
            None,
        )
        .await;
        assert_eq!(ids_of(&by_id), [ids[9], ids[8], ids[7], ids[6]]);
        assert_eq!(by_id["pg"]["sortBy"], "id");

        for bad in [
            "pg%5Blimit%5D=x",
            "pg%5BsortBy%5D=operations",
            "pg%5BsortDir%5D=up",
        ] {
            let (status, _) = call(
                &make,
                Method::GET,
                &format!("/scenarios?teamId={team}&{bad}"),
                None,
            )
            .await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}");
        }
    }

    #[tokio::test]
    async fn logs_list_newest_first_and_filter_by_status() {
        let make = peer().await;
        let id = make.seed_scenarios(make.team(), 1)[0];
        let first = make.add_log(id, 1);
        make.add_edit_log(id);
        let last = make.add_log(id, 3);
        let (_, logs) = call(&make, Method::GET, &format!("/scenarios/{id}/logs"), None).await;
        assert_eq!(logs["scenarioLogs"].as_array().map(Vec::len), Some(3));
        assert_eq!(logs["scenarioLogs"][0]["id"], last.as_str());
        assert_eq!(logs["scenarioLogs"][1]["type"], "modify");
        let (_, ok) = call(
            &make,
            Method::GET,
            &format!("/scenarios/{id}/logs?status=1"),
            None,
        )
        .await;
        assert_eq!(ok["scenarioLogs"][0]["id"], first.as_str());
        assert_eq!(ok["scenarioLogs"].as_array().map(Vec::len), Some(1));
    }

    #[tokio::test]
    async fn users_come_with_the_columns_asked_for() {
        let make = peer().await;
        let team = make.team();
        make.add_user(team, "Ada", "ada@example.com", 11);
        let (_, users) = call(
            &make,
            Method::GET,
            &format!("/users?teamId={team}&cols%5B%5D=id&cols%5B%5D=teamRoleId"),
            None,
        )
        .await;
        let keys: Vec<&String> = users["users"][0]
            .as_object()
            .map(|o| o.keys().collect())
            .unwrap_or_default();
        assert_eq!(keys, ["id", "teamRoleId"]);
        assert_eq!(users["users"][0]["teamRoleId"], 11);
        let (status, _) = call(
            &make,
            Method::GET,
            &format!("/users?teamId={team}&cols%5B%5D=password"),
            None,
        )
        .await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
    }

    #[tokio::test]
    async fn injected_faults_apply_in_order_then_stop() {
        let make = peer().await;
        make.inject(Fault::RateLimited {
            times: 1,
            retry_after_secs: 7,
        });
        make.inject(Fault::ServerError { times: 1 });
        make.inject(Fault::Garbage { times: 1 });
        make.inject(Fault::TruncatedJson { times: 1 });
        make.inject(Fault::DropConnection { times: 1 });
        let url = format!("{}/api/v2/teams/{}", make.origin(), make.team());
        let get = || {
            http()
                .get(&url)
                .header("Authorization", format!("Token {}", make.api_key()))
                .send()
        };
        let limited = get().await.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(limited.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(
            limited
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok()),
            Some("7")
        );
        let failed = get().await.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(failed.status(), StatusCode::INTERNAL_SERVER_ERROR);
        let garbage = get().await.unwrap_or_else(|e| panic!("{e}"));
        assert!(garbage.json::<Value>().await.is_err());
        let truncated = get().await.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(truncated.status(), StatusCode::OK);
        assert!(truncated.json::<Value>().await.is_err());
        assert!(get().await.is_err(), "the connection is dropped");
        let fine = get().await.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(fine.status(), StatusCode::OK);
        assert_eq!(make.requests(), 6);
        assert!(make.request_log()[0].starts_with("GET /api/v2/teams/"));
    }
}
