//! An n8n public REST API (`/api/v1`) served on a loopback port, for end-to-end tests.
//!
//! It enforces the rules real n8n enforces (the n8n section of the shared `providers.md`): the
//! `X-N8N-API-KEY` header, per-version write allow-lists for workflow bodies and settings,
//! read-only fields, cursor pagination with its `limit=0` quirk, activation checks, and the
//! 1.x/2.x route differences. Faults (5xx, 429, slow answers, dropped connections, broken JSON)
//! can be queued to exercise clients' retry and error paths. State lives in memory; tests seed
//! and inspect it directly, without going over HTTP.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::SocketAddr;
use std::ops::Bound;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, Query, Request, State};
use axum::http::{Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;
use serde_json::{Map, Value, json};
use tokio::net::TcpListener;

pub use crate::faults::Fault;
use crate::faults::{self, Faults};
use tokio::task::JoinHandle;

/// Request bodies above this are refused, as n8n's own body parser does.
const BODY_LIMIT: usize = 16 * 1024 * 1024;
const DEFAULT_LIMIT: usize = 100;
const MAX_LIMIT: usize = 250;

const NO_TRIGGER: &str = "Workflow has no node to start the workflow - at least one trigger, poller or webhook node is required";
const WEBHOOK_NODE: &str = "n8n-nodes-base.webhook";
/// Node types whose name ends in `Trigger` (or the old `start`) but that cannot start an active
/// workflow: n8n skips them when deciding whether a workflow can be activated.
const NOT_ACTIVATING: &[&str] = &[
    "n8n-nodes-base.manualTrigger",
    "n8n-nodes-base.start",
    "n8n-nodes-base.executeWorkflowTrigger",
    "n8n-nodes-base.errorTrigger",
    "@n8n/n8n-nodes-langchain.manualChatTrigger",
];

const REQUIRED_WORKFLOW_KEYS: [&str; 4] = ["name", "nodes", "connections", "settings"];
const READ_ONLY_KEYS: &[&str] = &[
    "id",
    "active",
    "tags",
    "versionId",
    "meta",
    "shared",
    "createdAt",
    "updatedAt",
    "isArchived",
    "triggerCount",
];
const READ_ONLY_KEYS_V2: &[&str] = &["activeVersionId", "versionCounter", "activeVersion"];
const SETTINGS_V1: &[&str] = &[
    "saveExecutionProgress",
    "saveManualExecutions",
    "saveDataErrorExecution",
    "saveDataSuccessExecution",
    "executionTimeout",
    "errorWorkflow",
    "timezone",
    "executionOrder",
    "callerPolicy",
    "callerIds",
    "timeSavedPerExecution",
    "availableInMCP",
];
const SETTINGS_V2: &[&str] = &[
    "binaryMode",
    "timeSavedMode",
    "redactionPolicy",
    "customTelemetryTags",
    "credentialResolverId",
];
const EXECUTION_STATUSES: &[&str] = &["canceled", "error", "running", "success", "waiting"];

// ---------------------------------------------------------------------------------------------
// Public interface
// ---------------------------------------------------------------------------------------------

/// Which n8n the emulator pretends to be.
#[derive(Debug, Clone)]
pub struct EmulatorConfig {
    /// `versionCli`, e.g. "2.41.1" or "1.123.81"; decides the 1.x/2.x behaviour.
    pub version: String,
    pub api_key: String,
}

impl Default for EmulatorConfig {
    fn default() -> Self {
        Self {
            version: "2.41.1".to_owned(),
            api_key: "n8n-test-key".to_owned(),
        }
    }
}

/// The n8n instance a test talks to: the real one named by `N8N_URL` and `N8N_API_KEY` when
/// both are set (a throwaway instance: tests create and delete workflows in it), else an
/// emulator started with the given configuration, kept alive with the peer.
pub struct Peer {
    pub base_url: String,
    pub api_key: String,
    pub emulator: Option<N8nEmulator>,
}

impl Peer {
    pub async fn real_or(config: EmulatorConfig) -> Self {
        match (std::env::var("N8N_URL"), std::env::var("N8N_API_KEY")) {
            (Ok(base_url), Ok(api_key)) if !base_url.is_empty() => Self {
                base_url,
                api_key,
                emulator: None,
            },
            _ => {
                let e = N8nEmulator::start(config).await;
                Self {
                    base_url: e.base_url(),
                    api_key: e.api_key(),
                    emulator: Some(e),
                }
            }
        }
    }
}

/// A running emulator. The server stops when this is dropped.
pub struct N8nEmulator {
    addr: SocketAddr,
    ctx: Ctx,
    server: JoinHandle<()>,
}

impl Drop for N8nEmulator {
    fn drop(&mut self) {
        // Aborting the accept loop also tells every open connection to close once its current
        // request is answered, so a pooled client cannot keep talking to a dropped emulator.
        self.server.abort();
    }
}

impl N8nEmulator {
    pub async fn start(config: EmulatorConfig) -> Self {
        let caps = Caps::of(&config.version);
        let ctx = Ctx {
            inner: Arc::new(Mutex::new(Inner::new(caps))),
            caps,
            api_key: Arc::from(config.api_key.as_str()),
            version: Arc::from(config.version.as_str()),
        };
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap_or_else(|e| panic!("n8n emulator: bind: {e}"));
        let addr = listener
            .local_addr()
            .unwrap_or_else(|e| panic!("n8n emulator: local address: {e}"));
        let app = router(ctx.clone());
        let server = tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app).await {
                eprintln!("n8n emulator stopped: {e}");
            }
        });
        Self { addr, ctx, server }
    }

    /// `http://127.0.0.1:PORT`, without `/api/v1`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn api_key(&self) -> String {
        self.ctx.api_key.to_string()
    }

    pub fn version(&self) -> String {
        self.ctx.version.to_string()
    }

    pub fn inject(&self, fault: Fault) {
        self.ctx.lock().faults.push(fault);
    }

    /// Lets `n` workflow writes (POST/PUT) through, then refuses the next one with n8n's 400
    /// for an invalid body — a permanent failure in the middle of a batch. Once.
    pub fn reject_write_after(&self, n: u32) {
        self.ctx.lock().write_fault = Some((n, false));
    }

    /// Lets `n` workflow writes through, then carries out the next one but cuts its response
    /// short — the client cannot know the write happened (as when a worker dies right after).
    pub fn truncate_write_after(&self, n: u32) {
        self.ctx.lock().write_fault = Some((n, true));
    }

    pub fn clear_faults(&self) {
        self.ctx.lock().faults.clear();
    }

    /// How many requests under `/api/v1` arrived, faulted ones included.
    pub fn requests(&self) -> u64 {
        self.ctx.lock().requests
    }

    /// Stores a workflow as if it already existed in n8n; missing fields get defaults (a fresh
    /// id, versionId and timestamps, inactive, no tags). Returns its id.
    // Takes the value (not a reference) because callers build it inline with `json!`.
    #[allow(clippy::needless_pass_by_value)]
    pub fn insert_workflow(&self, wf: Value) -> String {
        self.ctx.lock().insert_json(&wf)
    }

    /// Adds `n` realistic workflows (deterministic per seed index) and the credentials and tags
    /// they reference. Returns their ids in creation (= listing) order.
    pub fn seed_workflows(&self, n: usize, nodes_per_workflow: usize) -> Vec<String> {
        self.ctx.lock().seed_workflows(n, nodes_per_workflow)
    }

    /// Adds `n` finished executions spread over the existing workflows (seeding one workflow if
    /// there is none): every fifth one failed, ids and start times increase.
    pub fn seed_executions(&self, n: usize) {
        self.ctx.lock().seed_executions(n);
    }

    pub fn add_credential(&self, name: &str, cred_type: &str) -> String {
        self.ctx.lock().add_credential(name, cred_type, json!({}))
    }

    /// Returns the id of the tag with this name, creating it if needed.
    pub fn add_tag(&self, name: &str) -> String {
        self.ctx.lock().tag_by_name_or_create(name)
    }

    /// `role` as n8n spells it, e.g. `global:member`.
    pub fn add_user(&self, email: &str, role: &str) -> String {
        self.ctx.lock().add_user(email, role)
    }

    /// The workflow as `GET /api/v1/workflows/{id}` would return it.
    pub fn workflow(&self, id: &str) -> Option<Value> {
        let out = {
            let s = self.ctx.lock();
            s.workflows.get(id).map(|wf| s.out(wf, true))
        };
        out.and_then(|o| o.to_value().ok())
    }

    pub fn workflow_count(&self) -> usize {
        self.ctx.lock().workflows.len()
    }

    /// Edits a workflow directly, as a user in n8n's editor would: `f` gets the workflow as GET
    /// returns it; name, description, nodes, connections, settings, staticData, pinData, meta,
    /// active, isArchived and tags are taken back. Makes a new versionId and updatedAt.
    pub fn modify_workflow(&self, id: &str, f: impl FnOnce(&mut Value)) {
        let (current, rendered) = {
            let s = self.ctx.lock();
            let Some(current) = s.workflows.get(id).cloned() else {
                panic!("n8n emulator: modify_workflow: no workflow {id}");
            };
            let rendered = s.out(&current, true);
            (current, rendered)
        };
        let mut value = rendered
            .to_value()
            .unwrap_or_else(|e| panic!("n8n emulator: render workflow {id}: {e}"));
        // Outside the lock, so that `f` may look at the emulator too.
        f(&mut value);
        let mut s = self.ctx.lock();
        let mut wf = Workflow::clone(&current);
        s.apply_json(&mut wf, &value);
        wf.version_id = new_version_id();
        wf.version_counter += 1;
        wf.updated_at = s.now();
        wf.settle_activity();
        s.workflows.insert(wf.id.clone(), Arc::new(wf));
    }

    pub fn remove_workflow(&self, id: &str) {
        self.ctx.lock().remove_workflow(id);
    }

    /// Adds one finished execution exactly as described (workflow, status, start, duration,
    /// error) — for tests that assert numbers computed from executions. Ids keep increasing, so
    /// an incremental sync picks it up whatever its start time. Returns its id.
    pub fn add_execution(&self, e: &NewExecution<'_>) -> String {
        let mut s = self.ctx.lock();
        let id = s.next_execution;
        s.next_execution += 1;
        let last_node = s
            .workflows
            .get(e.workflow_id)
            .and_then(|wf| wf.nodes.last_name.clone())
            .unwrap_or_else(|| "Start".to_owned());
        s.executions.insert(
            id,
            Execution {
                id,
                workflow_id: e.workflow_id.to_owned(),
                status: e.status,
                mode: "trigger",
                started_at: e.started_at,
                stopped_at: e.started_at + e.duration,
                last_node,
                error: e.error.map(str::to_owned),
            },
        );
        id.to_string()
    }

    /// Deletes a credential, as a user in n8n would.
    pub fn remove_credential(&self, id: &str) {
        self.ctx.lock().credentials.remove(id);
    }

    /// The names of every tag the instance has, in id (creation) order.
    pub fn tag_names(&self) -> Vec<String> {
        self.ctx
            .lock()
            .tags
            .values()
            .map(|t| t.name.clone())
            .collect()
    }
}

/// One execution for [`N8nEmulator::add_execution`].
#[derive(Debug, Clone)]
pub struct NewExecution<'a> {
    pub workflow_id: &'a str,
    /// `success`, `error`, `canceled`, `waiting` or `running` (n8n lists running ones only when
    /// asked for them).
    pub status: &'static str,
    pub started_at: DateTime<Utc>,
    pub duration: chrono::Duration,
    /// The error message of a failed execution.
    pub error: Option<&'a str>,
}

// ---------------------------------------------------------------------------------------------
// State
// ---------------------------------------------------------------------------------------------

/// What the configured version can do.
#[derive(Debug, Clone, Copy)]
struct Caps {
    v2: bool,
    /// `GET /credentials` exists from 2.8.0.
    credential_list: bool,
}

impl Caps {
    fn of(version: &str) -> Self {
        let mut parts = version.trim_start_matches('v').split('.').map(|p| {
            p.chars()
                .take_while(char::is_ascii_digit)
                .collect::<String>()
                .parse::<u32>()
                .unwrap_or(0)
        });
        let major = parts.next().unwrap_or(0);
        let minor = parts.next().unwrap_or(0);
        Self {
            v2: major >= 2,
            credential_list: (major, minor) >= (2, 8),
        }
    }
}

#[derive(Clone)]
struct Ctx {
    inner: Arc<Mutex<Inner>>,
    caps: Caps,
    api_key: Arc<str>,
    version: Arc<str>,
}

impl Ctx {
    /// A panicking test must not wedge every other request, so poisoning is ignored.
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[derive(Clone)]
struct Workflow {
    id: String,
    name: String,
    description: Option<String>,
    active: bool,
    archived: bool,
    // The bulky parts are kept as encoded JSON and shared, so that listing copies bytes instead
    // of cloning and re-encoding node trees.
    nodes: Arc<Nodes>,
    connections: Arc<str>,
    settings: Value,
    static_data: Value,
    pin_data: Arc<str>,
    meta: Value,
    version_id: String,
    version_counter: u64,
    trigger_count: u64,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    tag_ids: Vec<String>,
    /// The published version (2.x `activeVersion`), set while active.
    published: Option<Arc<Published>>,
}

impl Workflow {
    /// Keeps triggerCount and the published version in line with `active`.
    fn settle_activity(&mut self) {
        if self.active {
            self.trigger_count = self.nodes.triggers;
            if self.published.is_none() {
                self.published = Some(publish(self));
            }
        } else {
            self.trigger_count = 0;
            self.published = None;
        }
    }
}

struct Published {
    version_id: String,
    name: String,
    description: Option<String>,
    nodes: Arc<Nodes>,
    connections: Arc<str>,
    created_at: DateTime<Utc>,
}

/// A workflow's nodes as the JSON text GET returns, with what activation needs read out once.
struct Nodes {
    json: Box<str>,
    /// Enabled nodes that can start an active workflow.
    triggers: u64,
    webhooks: Vec<WebhookRoute>,
    last_name: Option<String>,
}

/// An enabled webhook node; n8n refuses two active webhooks on the same method and path.
struct WebhookRoute {
    node: String,
    method: String,
    path: String,
}

impl Nodes {
    fn from_value(nodes: &Value) -> Arc<Self> {
        Arc::new(Self {
            json: nodes.to_string().into_boxed_str(),
            triggers: trigger_count(nodes),
            webhooks: webhook_routes(nodes),
            last_name: nodes
                .as_array()
                .and_then(|list| list.last())
                .and_then(|node| node.get("name"))
                .and_then(Value::as_str)
                .map(str::to_owned),
        })
    }
}

/// Compact JSON text of a value.
fn encoded(v: &Value) -> Arc<str> {
    Arc::from(v.to_string())
}

#[derive(Clone)]
struct Tag {
    id: String,
    name: String,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

struct Credential {
    id: String,
    name: String,
    cred_type: String,
    /// Kept only so the emulator holds what n8n would; never returned.
    #[allow(dead_code)]
    data: Value,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

struct User {
    id: String,
    email: String,
    first_name: String,
    last_name: String,
    role: String,
    created_at: DateTime<Utc>,
}

struct Project {
    id: String,
    /// The project object as `shared[].project`, encoded once.
    json: String,
}

struct Execution {
    id: u64,
    workflow_id: String,
    status: &'static str,
    mode: &'static str,
    started_at: DateTime<Utc>,
    stopped_at: DateTime<Utc>,
    last_node: String,
    error: Option<String>,
}

struct Inner {
    caps: Caps,
    /// Source of n8n-style 16-character ids; monotonic, so creation order is id order.
    next_id: u64,
    /// Last timestamp handed out, so that every change gets a strictly later `updatedAt`.
    clock: DateTime<Utc>,
    // Shared so that a page of output clones pointers.
    workflows: BTreeMap<String, Arc<Workflow>>,
    tags: BTreeMap<String, Arc<Tag>>,
    credentials: BTreeMap<String, Credential>,
    users: BTreeMap<String, User>,
    executions: BTreeMap<u64, Execution>,
    next_execution: u64,
    last_execution_start: Option<DateTime<Utc>>,
    seeded: usize,
    project: Arc<Project>,
    faults: Faults,
    /// Writes to workflows still let through before one fails, and how it fails (true: the
    /// write happens but the response is cut short; false: it is refused with a 400).
    write_fault: Option<(u32, bool)>,
    requests: u64,
}

impl Inner {
    fn new(caps: Caps) -> Self {
        let mut s = Self {
            caps,
            next_id: 0,
            clock: DateTime::<Utc>::MIN_UTC,
            workflows: BTreeMap::new(),
            tags: BTreeMap::new(),
            credentials: BTreeMap::new(),
            users: BTreeMap::new(),
            executions: BTreeMap::new(),
            next_execution: 1,
            last_execution_start: None,
            seeded: 0,
            project: Arc::new(Project {
                id: String::new(),
                json: String::new(),
            }),
            faults: Faults::default(),
            write_fault: None,
            requests: 0,
        };
        s.add_user("owner@example.com", "global:owner");
        let project_id = s.new_id();
        let created_at = s.now();
        s.project = Arc::new(Project {
            json: json!({
                "id": project_id, "name": "Owner User <owner@example.com>", "type": "personal",
                "icon": null, "description": null,
                "createdAt": ts(created_at), "updatedAt": ts(created_at),
            })
            .to_string(),
            id: project_id,
        });
        s
    }

    fn new_id(&mut self) -> String {
        self.next_id += 1;
        nano_id(self.next_id)
    }

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

    fn out(&self, wf: &Arc<Workflow>, pin_data: bool) -> WorkflowOut {
        WorkflowOut {
            wf: Arc::clone(wf),
            tags: wf
                .tag_ids
                .iter()
                .filter_map(|id| self.tags.get(id))
                .cloned()
                .collect(),
            project: Arc::clone(&self.project),
            v2: self.caps.v2,
            pin_data,
        }
    }

    fn blank_workflow(&mut self, id: String) -> Workflow {
        let now = self.now();
        Workflow {
            id,
            name: "My workflow".to_owned(),
            description: None,
            active: false,
            archived: false,
            nodes: Nodes::from_value(&json!([])),
            connections: Arc::from("{}"),
            settings: json!({"executionOrder": "v1"}),
            static_data: Value::Null,
            pin_data: Arc::from("{}"),
            meta: Value::Null,
            version_id: new_version_id(),
            version_counter: 1,
            trigger_count: 0,
            created_at: now,
            updated_at: now,
            tag_ids: Vec::new(),
            published: None,
        }
    }

    fn insert_json(&mut self, v: &Value) -> String {
        let id = match v.get("id").and_then(Value::as_str) {
            Some(id) => id.to_owned(),
            None => self.new_id(),
        };
        let mut wf = self.blank_workflow(id.clone());
        if let Some(version) = v.get("versionId").and_then(Value::as_str) {
            version.clone_into(&mut wf.version_id);
        }
        if let Some(t) = v.get("createdAt").and_then(parse_time) {
            wf.created_at = t;
            wf.updated_at = t;
        }
        if let Some(t) = v.get("updatedAt").and_then(parse_time) {
            wf.updated_at = t;
        }
        self.apply_json(&mut wf, v);
        wf.settle_activity();
        self.workflows.insert(id.clone(), Arc::new(wf));
        id
    }

    /// Takes the editable parts of a workflow from its JSON form.
    fn apply_json(&mut self, wf: &mut Workflow, v: &Value) {
        if let Some(name) = v.get("name").and_then(Value::as_str) {
            name.clone_into(&mut wf.name);
        }
        if let Some(d) = v.get("description") {
            wf.description = d.as_str().map(str::to_owned);
        }
        if let Some(active) = v.get("active").and_then(Value::as_bool) {
            wf.active = active;
        }
        if let Some(archived) = v.get("isArchived").and_then(Value::as_bool) {
            wf.archived = archived;
        }
        if let Some(nodes) = v.get("nodes") {
            wf.nodes = Nodes::from_value(nodes);
        }
        if let Some(connections) = v.get("connections") {
            wf.connections = encoded(connections);
        }
        if let Some(settings) = v.get("settings") {
            wf.settings = settings.clone();
        }
        if let Some(static_data) = v.get("staticData") {
            wf.static_data = static_data.clone();
        }
        if let Some(pin_data) = v.get("pinData") {
            wf.pin_data = encoded(pin_data);
        }
        if let Some(meta) = v.get("meta") {
            wf.meta = meta.clone();
        }
        if let Some(tags) = v.get("tags").and_then(Value::as_array) {
            let mut ids = Vec::new();
            for tag in tags {
                if let Some(id) = self.tag_ref(tag)
                    && !ids.contains(&id)
                {
                    ids.push(id);
                }
            }
            wf.tag_ids = ids;
        }
    }

    /// A tag given as `{"id"}`, `{"name"}` or a bare name; unknown names are created.
    fn tag_ref(&mut self, tag: &Value) -> Option<String> {
        if let Some(id) = tag.get("id").and_then(Value::as_str)
            && self.tags.contains_key(id)
        {
            return Some(id.to_owned());
        }
        let name = tag
            .get("name")
            .and_then(Value::as_str)
            .or_else(|| tag.as_str())?;
        Some(self.tag_by_name_or_create(name))
    }

    fn tag_by_name_or_create(&mut self, name: &str) -> String {
        if let Some(tag) = self.tags.values().find(|t| t.name == name) {
            return tag.id.clone();
        }
        let id = self.new_id();
        let now = self.now();
        self.tags.insert(
            id.clone(),
            Arc::new(Tag {
                id: id.clone(),
                name: name.to_owned(),
                created_at: now,
                updated_at: now,
            }),
        );
        id
    }

    fn add_credential(&mut self, name: &str, cred_type: &str, data: Value) -> String {
        let id = self.new_id();
        let now = self.now();
        self.credentials.insert(
            id.clone(),
            Credential {
                id: id.clone(),
                name: name.to_owned(),
                cred_type: cred_type.to_owned(),
                data,
                created_at: now,
                updated_at: now,
            },
        );
        id
    }

    fn add_user(&mut self, email: &str, role: &str) -> String {
        let id = uuid::Uuid::new_v4().to_string();
        let local = email.split('@').next().unwrap_or(email);
        let mut chars = local.chars();
        let first_name = chars
            .next()
            .map(|c| c.to_uppercase().chain(chars).collect())
            .unwrap_or_default();
        let created_at = self.now();
        self.users.insert(
            id.clone(),
            User {
                id: id.clone(),
                email: email.to_owned(),
                first_name,
                last_name: "User".to_owned(),
                role: role.to_owned(),
                created_at,
            },
        );
        id
    }

    fn remove_workflow(&mut self, id: &str) -> Option<Arc<Workflow>> {
        let wf = self.workflows.remove(id)?;
        // n8n deletes a workflow's executions with it.
        self.executions.retain(|_, e| e.workflow_id != id);
        Some(wf)
    }

    /// n8n rewrites a credential reference whose id is unknown to the one credential with the
    /// same name and type, when exactly one exists.
    fn resolve_credentials(&self, nodes: &mut Value) {
        let Some(nodes) = nodes.as_array_mut() else {
            return;
        };
        for node in nodes {
            let Some(creds) = node.get_mut("credentials").and_then(Value::as_object_mut) else {
                continue;
            };
            for (cred_type, reference) in creds.iter_mut() {
                let known = reference
                    .get("id")
                    .and_then(Value::as_str)
                    .is_some_and(|id| self.credentials.contains_key(id));
                if known {
                    continue;
                }
                let Some(name) = reference.get("name").and_then(Value::as_str) else {
                    continue;
                };
                let mut candidates = self
                    .credentials
                    .values()
                    .filter(|c| c.name == name && &c.cred_type == cred_type);
                if let (Some(only), None) = (candidates.next(), candidates.next())
                    && let Some(obj) = reference.as_object_mut()
                {
                    obj.insert("id".to_owned(), Value::String(only.id.clone()));
                }
            }
        }
    }

    /// Why n8n would refuse to activate a workflow with these nodes, if it would.
    fn activation_error(&self, wf_id: &str, nodes: &Nodes) -> Option<String> {
        if nodes.triggers == 0 {
            return Some(NO_TRIGGER.to_owned());
        }
        for route in &nodes.webhooks {
            let taken = self
                .workflows
                .values()
                .filter(|other| other.active && other.id != wf_id)
                .flat_map(|other| &other.nodes.webhooks)
                .any(|r| r.method == route.method && r.path == route.path);
            if taken {
                return Some(format!(
                    "The URL path that the \"{}\" node uses is already taken. Please change it to something else.",
                    route.node
                ));
            }
        }
        None
    }

    fn seed_credentials(&mut self) -> Vec<(String, String)> {
        (1..=3)
            .map(|i| {
                let name = format!("Seed basic auth {i}");
                let existing = self
                    .credentials
                    .values()
                    .find(|c| c.name == name && c.cred_type == "httpBasicAuth")
                    .map(|c| c.id.clone());
                let id = existing.unwrap_or_else(|| {
                    self.add_credential(
                        &name,
                        "httpBasicAuth",
                        json!({"user": format!("seed{i}"), "password": "secret"}),
                    )
                });
                (id, name)
            })
            .collect()
    }

    fn seed_workflows(&mut self, n: usize, nodes_per_workflow: usize) -> Vec<String> {
        let creds = self.seed_credentials();
        let tags: Vec<String> = ["production", "staging", "finance", "marketing"]
            .iter()
            .map(|name| self.tag_by_name_or_create(name))
            .collect();
        let mut ids = Vec::with_capacity(n);
        for _ in 0..n {
            let index = self.seeded;
            self.seeded += 1;
            let (nodes, connections) = seed_nodes(index, nodes_per_workflow.max(1), &creds);
            let id = self.new_id();
            let mut wf = self.blank_workflow(id.clone());
            wf.name = format!("Seeded workflow {index:05}");
            wf.nodes = nodes;
            wf.connections = connections;
            wf.meta = json!({"templateCredsSetupCompleted": true});
            wf.tag_ids.push(tags[index % tags.len()].clone());
            if index.is_multiple_of(3) {
                wf.tag_ids.push(tags[(index + 1) % tags.len()].clone());
            }
            if self.caps.v2 && index % 2 == 1 {
                wf.description = Some(format!("Seeded workflow number {index}"));
            }
            self.workflows.insert(id.clone(), Arc::new(wf));
            ids.push(id);
        }
        ids
    }

    fn seed_executions(&mut self, n: usize) {
        if self.workflows.is_empty() {
            self.seed_workflows(1, 4);
        }
        let targets: Vec<(String, String)> = self
            .workflows
            .values()
            .map(|wf| {
                let last = wf.nodes.last_name.as_deref().unwrap_or("Start").to_owned();
                (wf.id.clone(), last)
            })
            .collect();
        let span = chrono::Duration::seconds(i64::try_from(n).unwrap_or(i64::MAX / 2));
        let mut start = Utc::now() - span;
        if let Some(last) = self.last_execution_start
            && start <= last
        {
            start = last + chrono::Duration::seconds(1);
        }
        for i in 0..n {
            let id = self.next_execution;
            self.next_execution += 1;
            let (workflow_id, last_node) = targets[i % targets.len()].clone();
            let failed = id.is_multiple_of(5);
            let offset = i64::try_from(i).unwrap_or(0);
            let started_at = start + chrono::Duration::seconds(offset);
            let stopped_at = started_at + chrono::Duration::milliseconds(150 + (offset % 7) * 40);
            self.last_execution_start = Some(started_at);
            self.executions.insert(
                id,
                Execution {
                    id,
                    workflow_id,
                    status: if failed { "error" } else { "success" },
                    mode: if id.is_multiple_of(4) {
                        "manual"
                    } else {
                        "trigger"
                    },
                    started_at,
                    stopped_at,
                    last_node,
                    error: failed.then(|| {
                        format!("The service was not able to process your request (execution {id})")
                    }),
                },
            );
        }
    }
}

/// A counter as a 16-character base62 id, left-padded so that string order is numeric order.
fn nano_id(mut n: u64) -> String {
    const ALPHABET: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    let mut out = [b'0'; 16];
    let mut i = out.len();
    while n > 0 && i > 0 {
        i -= 1;
        out[i] = ALPHABET[usize::try_from(n % 62).unwrap_or(0)];
        n /= 62;
    }
    out.iter().map(|&b| char::from(b)).collect()
}

fn new_version_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

fn ts(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

fn parse_time(v: &Value) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(v.as_str()?)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

fn publish(wf: &Workflow) -> Arc<Published> {
    Arc::new(Published {
        version_id: wf.version_id.clone(),
        name: wf.name.clone(),
        description: wf.description.clone(),
        nodes: Arc::clone(&wf.nodes),
        connections: Arc::clone(&wf.connections),
        created_at: wf.updated_at,
    })
}

fn enabled_nodes(nodes: &Value) -> impl Iterator<Item = &Value> {
    nodes
        .as_array()
        .into_iter()
        .flatten()
        .filter(|n| !n.get("disabled").and_then(Value::as_bool).unwrap_or(false))
}

fn node_type(node: &Value) -> &str {
    node.get("type").and_then(Value::as_str).unwrap_or_default()
}

fn trigger_count(nodes: &Value) -> u64 {
    let count = enabled_nodes(nodes)
        .filter(|n| {
            let t = node_type(n);
            (t.ends_with("Trigger") || t == WEBHOOK_NODE) && !NOT_ACTIVATING.contains(&t)
        })
        .count();
    u64::try_from(count).unwrap_or(u64::MAX)
}

fn webhook_routes(nodes: &Value) -> Vec<WebhookRoute> {
    enabled_nodes(nodes)
        .filter(|n| node_type(n) == WEBHOOK_NODE)
        .filter_map(|n| {
            let params = n.get("parameters");
            let path = params
                .and_then(|p| p.get("path"))
                .and_then(Value::as_str)?
                .trim_matches('/');
            let method = params
                .and_then(|p| p.get("httpMethod"))
                .and_then(Value::as_str)
                .unwrap_or("GET")
                .to_ascii_uppercase();
            let node = n.get("name").and_then(Value::as_str).unwrap_or("Webhook");
            Some(WebhookRoute {
                node: node.to_owned(),
                method,
                path: path.to_owned(),
            })
        })
        .collect()
}

/// The nodes and connections of seeded workflow `index`: a trigger, then a chain of set, HTTP
/// request (with a credential), if (two outputs) and code nodes.
///
/// Written as JSON text directly: seeding 10,000 workflows through `json!` and re-encoding them
/// takes seconds in a debug build. Every name and value here needs no escaping.
fn seed_nodes(index: usize, count: usize, creds: &[(String, String)]) -> (Arc<Nodes>, Arc<str>) {
    let node_id = |j: usize| format!("{index:08x}-{j:04x}-4a00-8000-{:012x}", index * 31 + j);
    let mut names = Vec::with_capacity(count);
    let mut nodes = Vec::with_capacity(count);
    let webhooks = if index.is_multiple_of(2) {
        names.push("Schedule Trigger".to_owned());
        nodes.push(format!(
            r#"{{"id":"{id}","name":"Schedule Trigger","type":"n8n-nodes-base.scheduleTrigger","typeVersion":1.2,"position":[0,300],"parameters":{{"rule":{{"interval":[{{"field":"hours","hoursInterval":{hours}}}]}}}}}}"#,
            id = node_id(0),
            hours = 1 + index % 6,
        ));
        Vec::new()
    } else {
        let path = format!("seed-{index}");
        names.push("Webhook".to_owned());
        nodes.push(format!(
            r#"{{"id":"{id}","name":"Webhook","type":"{WEBHOOK_NODE}","typeVersion":2,"position":[0,300],"webhookId":"{id}","parameters":{{"path":"{path}","httpMethod":"POST","options":{{}}}}}}"#,
            id = node_id(0),
        ));
        vec![WebhookRoute {
            node: "Webhook".to_owned(),
            method: "POST".to_owned(),
            path,
        }]
    };
    for j in 1..count {
        let id = node_id(j);
        let x = j * 220;
        let (name, node) = match j % 4 {
            1 => {
                let name = format!("Set {j}");
                let node = format!(
                    r#"{{"id":"{id}","name":"{name}","type":"n8n-nodes-base.set","typeVersion":3.4,"position":[{x},300],"parameters":{{"assignments":{{"assignments":[{{"id":"{assignment}","name":"field{j}","value":"value {index}-{j}","type":"string"}}]}},"options":{{}}}}}}"#,
                    assignment = node_id(j + 1000),
                );
                (name, node)
            }
            2 => {
                let name = format!("HTTP Request {j}");
                let (cred_id, cred_name) = &creds[(index + j) % creds.len()];
                let node = format!(
                    r#"{{"id":"{id}","name":"{name}","type":"n8n-nodes-base.httpRequest","typeVersion":4.2,"position":[{x},300],"parameters":{{"url":"https://api.example.com/items/{index}/{j}","authentication":"genericCredentialType","genericAuthType":"httpBasicAuth","options":{{}}}},"credentials":{{"httpBasicAuth":{{"id":"{cred_id}","name":"{cred_name}"}}}}}}"#
                );
                (name, node)
            }
            3 => {
                let name = format!("If {j}");
                let node = format!(
                    r#"{{"id":"{id}","name":"{name}","type":"n8n-nodes-base.if","typeVersion":2.2,"position":[{x},300],"parameters":{{"conditions":{{"options":{{"caseSensitive":true,"leftValue":"","typeValidation":"strict","version":2}},"conditions":[{{"id":"{condition}","leftValue":"={{{{ $json.status }}}}","rightValue":200,"operator":{{"type":"number","operation":"equals"}}}}],"combinator":"and"}},"options":{{}}}}}}"#,
                    condition = node_id(j + 2000),
                );
                (name, node)
            }
            _ => {
                let name = format!("Code {j}");
                let node = format!(
                    r#"{{"id":"{id}","name":"{name}","type":"n8n-nodes-base.code","typeVersion":2,"position":[{x},300],"parameters":{{"jsCode":"// step {j} of workflow {index}\nreturn $input.all();"}}}}"#
                );
                (name, node)
            }
        };
        names.push(name);
        nodes.push(node);
    }
    let connections: Vec<String> = names
        .windows(2)
        .map(|pair| {
            let next = format!(r#"[{{"node":"{}","type":"main","index":0}}]"#, pair[1]);
            // An `if` node has two outputs; only its true branch continues the chain.
            let outputs = if pair[0].starts_with("If ") {
                format!("{next},[]")
            } else {
                next
            };
            format!(r#""{}":{{"main":[{outputs}]}}"#, pair[0])
        })
        .collect();
    let nodes = Nodes {
        json: format!("[{}]", nodes.join(",")).into_boxed_str(),
        triggers: 1,
        webhooks,
        last_name: names.pop(),
    };
    (
        Arc::new(nodes),
        Arc::from(format!("{{{}}}", connections.join(","))),
    )
}

// ---------------------------------------------------------------------------------------------
// Rendering
// ---------------------------------------------------------------------------------------------

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct TagOut {
    id: String,
    name: String,
    created_at: String,
    updated_at: String,
}

impl From<&Tag> for TagOut {
    fn from(t: &Tag) -> Self {
        Self {
            id: t.id.clone(),
            name: t.name.clone(),
            created_at: ts(t.created_at),
            updated_at: ts(t.updated_at),
        }
    }
}

/// A workflow as GET returns it.
struct WorkflowOut {
    wf: Arc<Workflow>,
    tags: Vec<Arc<Tag>>,
    project: Arc<Project>,
    v2: bool,
    pin_data: bool,
}

/// Writes a JSON object field by field, splicing in already-encoded JSON where it has it.
struct ObjectWriter<'a> {
    out: &'a mut Vec<u8>,
    empty: bool,
}

impl<'a> ObjectWriter<'a> {
    fn new(out: &'a mut Vec<u8>) -> Self {
        out.push(b'{');
        Self { out, empty: true }
    }

    fn key(&mut self, key: &str) {
        if !self.empty {
            self.out.push(b',');
        }
        self.empty = false;
        self.out.push(b'"');
        self.out.extend_from_slice(key.as_bytes());
        self.out.extend_from_slice(b"\":");
    }

    fn field<T: Serialize + ?Sized>(&mut self, key: &str, value: &T) -> serde_json::Result<()> {
        self.key(key);
        serde_json::to_writer(&mut *self.out, value)
    }

    /// `json` must be valid JSON text.
    fn raw(&mut self, key: &str, json: &str) {
        self.key(key);
        self.out.extend_from_slice(json.as_bytes());
    }

    fn end(self) {
        self.out.push(b'}');
    }
}

impl WorkflowOut {
    fn write(&self, out: &mut Vec<u8>) -> serde_json::Result<()> {
        let wf = &self.wf;
        let mut w = ObjectWriter::new(out);
        w.field("id", &wf.id)?;
        w.field("name", &wf.name)?;
        if self.v2 {
            w.field("description", &wf.description)?;
        }
        w.field("active", &wf.active)?;
        w.field("isArchived", &wf.archived)?;
        w.raw("nodes", &wf.nodes.json);
        w.raw("connections", &wf.connections);
        w.field("settings", &wf.settings)?;
        w.field("staticData", &wf.static_data)?;
        if self.pin_data {
            w.raw("pinData", &wf.pin_data);
        }
        w.field("meta", &wf.meta)?;
        w.field("versionId", &wf.version_id)?;
        if self.v2 {
            w.field(
                "activeVersionId",
                &wf.published.as_ref().map(|p| &p.version_id),
            )?;
            w.field("versionCounter", &wf.version_counter)?;
        }
        w.field("triggerCount", &wf.trigger_count)?;
        w.field("createdAt", &ts(wf.created_at))?;
        w.field("updatedAt", &ts(wf.updated_at))?;
        w.key("tags");
        w.out.push(b'[');
        for (i, tag) in self.tags.iter().enumerate() {
            if i > 0 {
                w.out.push(b',');
            }
            let mut t = ObjectWriter::new(w.out);
            t.field("id", &tag.id)?;
            t.field("name", &tag.name)?;
            t.field("createdAt", &ts(tag.created_at))?;
            t.field("updatedAt", &ts(tag.updated_at))?;
            t.end();
        }
        w.out.push(b']');
        w.key("shared");
        w.out.push(b'[');
        let mut shared = ObjectWriter::new(w.out);
        shared.field("role", "workflow:owner")?;
        shared.field("workflowId", &wf.id)?;
        shared.field("projectId", &self.project.id)?;
        shared.field("createdAt", &ts(wf.created_at))?;
        shared.field("updatedAt", &ts(wf.created_at))?;
        shared.raw("project", &self.project.json);
        shared.end();
        w.out.push(b']');
        if self.v2 {
            match &wf.published {
                None => w.field("activeVersion", &Value::Null)?,
                Some(p) => {
                    w.key("activeVersion");
                    let mut v = ObjectWriter::new(w.out);
                    v.field("versionId", &p.version_id)?;
                    v.field("workflowId", &wf.id)?;
                    v.field("name", &p.name)?;
                    v.field("description", &p.description)?;
                    v.raw("nodes", &p.nodes.json);
                    v.raw("connections", &p.connections);
                    v.field("authors", "Owner User")?;
                    v.field("createdAt", &ts(p.created_at))?;
                    v.field("updatedAt", &ts(p.created_at))?;
                    v.end();
                }
            }
        }
        w.end();
        Ok(())
    }

    fn to_value(&self) -> serde_json::Result<Value> {
        let mut out = Vec::new();
        self.write(&mut out)?;
        serde_json::from_slice(&out)
    }
}

fn workflow_response(wf: &WorkflowOut) -> Response {
    let mut out = Vec::new();
    match wf.write(&mut out) {
        Ok(()) => json_bytes_response(StatusCode::OK, out),
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

fn workflow_list_response(data: &[WorkflowOut], next_cursor: Option<&str>) -> Response {
    let mut out = Vec::with_capacity(data.len() * 4096);
    let mut write = || -> serde_json::Result<()> {
        out.extend_from_slice(b"{\"data\":[");
        for (i, wf) in data.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            wf.write(&mut out)?;
        }
        out.extend_from_slice(b"],\"nextCursor\":");
        serde_json::to_writer(&mut out, &next_cursor)?;
        out.push(b'}');
        Ok(())
    };
    match write() {
        Ok(()) => json_bytes_response(StatusCode::OK, out),
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

fn credential_json(c: &Credential) -> Value {
    json!({
        "id": c.id, "name": c.name, "type": c.cred_type,
        "createdAt": ts(c.created_at), "updatedAt": ts(c.updated_at),
    })
}

fn user_json(u: &User, include_role: bool) -> Value {
    let mut v = json!({
        "id": u.id, "email": u.email, "firstName": u.first_name, "lastName": u.last_name,
        "isPending": false, "createdAt": ts(u.created_at), "updatedAt": ts(u.created_at),
    });
    if include_role {
        v["role"] = Value::String(u.role.clone());
    }
    v
}

fn execution_json(e: &Execution, include_data: bool) -> Value {
    let mut v = json!({
        "id": e.id.to_string(),
        "finished": e.status == "success",
        "mode": e.mode,
        "retryOf": null,
        "retrySuccessId": null,
        "startedAt": ts(e.started_at),
        "stoppedAt": ts(e.stopped_at),
        "workflowId": e.workflow_id,
        "waitTill": null,
        "status": e.status,
        "customData": {},
    });
    if include_data {
        let run = json!([{
            "startTime": e.started_at.timestamp_millis(),
            "executionTime": (e.stopped_at - e.started_at).num_milliseconds(),
            "executionStatus": e.status,
            "source": [],
            "data": {"main": [[{"json": {"ok": e.error.is_none()}}]]},
        }]);
        let mut run_data = Map::new();
        run_data.insert(e.last_node.clone(), run);
        let mut result = json!({"runData": run_data, "lastNodeExecuted": e.last_node});
        if let Some(message) = &e.error {
            result["error"] = json!({
                "message": message, "name": "NodeApiError", "node": {"name": e.last_node},
            });
        }
        v["data"] = json!({
            "startData": {},
            "resultData": result,
            "executionData": {
                "contextData": {}, "nodeExecutionStack": [], "waitingExecution": {},
                "waitingExecutionSource": {},
            },
        });
    }
    v
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ListOut<T> {
    data: Vec<T>,
    next_cursor: Option<String>,
}

fn json_response<T: Serialize + ?Sized>(status: StatusCode, body: &T) -> Response {
    match serde_json::to_vec(body) {
        Ok(bytes) => json_bytes_response(status, bytes),
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

fn json_bytes_response(status: StatusCode, bytes: Vec<u8>) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json; charset=utf-8")],
        bytes,
    )
        .into_response()
}

fn ok<T: Serialize + ?Sized>(body: &T) -> Response {
    json_response(StatusCode::OK, body)
}

// ---------------------------------------------------------------------------------------------
// Errors, bodies, pagination
// ---------------------------------------------------------------------------------------------

/// n8n's error shape: `{"message": "..."}`.
#[derive(Debug)]
struct ApiError {
    status: StatusCode,
    message: String,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        json_response(self.status, &json!({"message": self.message}))
    }
}

type ApiResult = Result<Response, ApiError>;

fn error(status: StatusCode, message: impl Into<String>) -> ApiError {
    ApiError {
        status,
        message: message.into(),
    }
}

fn bad_request(message: impl Into<String>) -> ApiError {
    error(StatusCode::BAD_REQUEST, message)
}

fn not_found() -> ApiError {
    error(StatusCode::NOT_FOUND, "Not Found")
}

fn parse_body(bytes: &Bytes) -> Result<Value, ApiError> {
    // Express turns an empty body into `{}`; the schema then names what is missing.
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(json!({}));
    }
    serde_json::from_slice(bytes).map_err(|e| {
        bad_request(format!(
            "Unexpected token in JSON at line {} column {}",
            e.line(),
            e.column()
        ))
    })
}

fn query_bool(q: &HashMap<String, String>, name: &str) -> Result<Option<bool>, ApiError> {
    match q.get(name).map(String::as_str) {
        None => Ok(None),
        Some("true") => Ok(Some(true)),
        Some("false") => Ok(Some(false)),
        Some(_) => Err(bad_request(format!("request/query/{name} must be boolean"))),
    }
}

/// Where a list request starts and how much it takes (`limit == 0` means everything).
struct Page {
    limit: usize,
    last_id: Option<String>,
}

impl Page {
    /// `strict_limit`: `/users` refuses limits above 250 where the other lists cut them.
    fn from_query(q: &HashMap<String, String>, strict_limit: bool) -> Result<Self, ApiError> {
        let mut limit = match q.get("limit") {
            None => DEFAULT_LIMIT,
            Some(raw) => {
                let n: i64 = raw
                    .parse()
                    .map_err(|_| bad_request("request/query/limit must be integer"))?;
                usize::try_from(n).map_err(|_| bad_request("request/query/limit must be >= 0"))?
            }
        };
        if limit > MAX_LIMIT {
            if strict_limit {
                return Err(bad_request("request/query/limit must be <= 250"));
            }
            limit = MAX_LIMIT;
        }
        let mut last_id = None;
        if let Some(raw) = q.get("cursor").filter(|c| !c.is_empty()) {
            let cursor = decode_cursor(raw)?;
            if let Some(l) = cursor.limit {
                limit = l.min(MAX_LIMIT);
            }
            last_id = cursor.last_id;
        }
        Ok(Self { limit, last_id })
    }

    /// `more` is the key of the last item returned when further items exist.
    fn next_cursor(&self, more: Option<String>) -> Option<String> {
        if self.limit == 0 {
            // n8n's quirk: "everything" comes with a cursor that yields the same page again.
            Some(encode_cursor(self.last_id.as_deref(), 0))
        } else {
            more.map(|last| encode_cursor(Some(&last), self.limit))
        }
    }
}

struct Cursor {
    last_id: Option<String>,
    limit: Option<usize>,
}

fn encode_cursor(last_id: Option<&str>, limit: usize) -> String {
    let mut m = Map::new();
    if let Some(id) = last_id {
        m.insert("lastId".to_owned(), Value::String(id.to_owned()));
    }
    m.insert("limit".to_owned(), Value::from(limit));
    BASE64.encode(Value::Object(m).to_string())
}

fn decode_cursor(raw: &str) -> Result<Cursor, ApiError> {
    let invalid = || bad_request("An invalid cursor was provided");
    let bytes = BASE64.decode(raw).map_err(|_| invalid())?;
    let value: Value = serde_json::from_slice(&bytes).map_err(|_| invalid())?;
    let obj = value.as_object().ok_or_else(invalid)?;
    if !obj.contains_key("limit") && !obj.contains_key("lastId") {
        return Err(invalid());
    }
    let limit = match obj.get("limit") {
        None => None,
        Some(l) => Some(
            l.as_u64()
                .and_then(|l| usize::try_from(l).ok())
                .ok_or_else(invalid)?,
        ),
    };
    let last_id = match obj.get("lastId") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(Value::Number(n)) => Some(n.to_string()),
        Some(_) => return Err(invalid()),
    };
    Ok(Cursor { last_id, limit })
}

/// Takes up to `limit` kept items (all when 0) and, when more kept items follow, the key of the
/// last one taken.
fn take_page<'a, K: Clone + 'a, V: 'a, O>(
    iter: impl Iterator<Item = (&'a K, &'a V)>,
    limit: usize,
    keep: impl Fn(&V) -> bool,
    mut render: impl FnMut(&V) -> O,
) -> (Vec<O>, Option<K>) {
    let mut items = Vec::new();
    let mut last: Option<&K> = None;
    for (key, value) in iter.filter(|(_, v)| keep(v)) {
        if limit != 0 && items.len() == limit {
            return (items, last.cloned());
        }
        items.push(render(value));
        last = Some(key);
    }
    (items, None)
}

/// The entries after `last_id` in ascending key order.
fn after<'a, V>(
    map: &'a BTreeMap<String, V>,
    last_id: Option<&str>,
) -> std::collections::btree_map::Range<'a, String, V> {
    let start = last_id.map_or(Bound::Unbounded, Bound::Excluded);
    map.range::<str, _>((start, Bound::Unbounded))
}

/// A workflow write body that passed n8n's schema.
struct WorkflowWrite {
    name: String,
    nodes: Value,
    connections: Value,
    settings: Value,
    static_data: Option<Value>,
    description: Option<String>,
    pin_data: Option<Value>,
}

fn validate_workflow_body(body: Value, caps: Caps) -> Result<WorkflowWrite, ApiError> {
    let Value::Object(mut obj) = body else {
        return Err(bad_request("request/body must be object"));
    };
    let read_only =
        |k: &str| READ_ONLY_KEYS.contains(&k) || (caps.v2 && READ_ONLY_KEYS_V2.contains(&k));
    let allowed = |k: &str| {
        REQUIRED_WORKFLOW_KEYS.contains(&k)
            || k == "staticData"
            || (caps.v2 && matches!(k, "description" | "pinData" | "nodeGroups"))
    };
    if let Some(key) = obj.keys().find(|k| read_only(k)) {
        return Err(bad_request(format!("request/body/{key} is read-only")));
    }
    if obj.keys().any(|k| !allowed(k)) {
        return Err(bad_request(
            "request/body must NOT have additional properties",
        ));
    }
    if let Some(key) = REQUIRED_WORKFLOW_KEYS
        .iter()
        .find(|k| !obj.contains_key(**k))
    {
        return Err(bad_request(format!(
            "request/body must have required property '{key}'"
        )));
    }
    let Some(Value::String(name)) = obj.remove("name") else {
        return Err(bad_request("request/body/name must be string"));
    };
    let nodes = obj.remove("nodes").unwrap_or_default();
    validate_nodes(&nodes)?;
    let connections = obj.remove("connections").unwrap_or_default();
    if !connections.is_object() {
        return Err(bad_request("request/body/connections must be object"));
    }
    let settings = obj.remove("settings").unwrap_or_default();
    validate_settings(&settings, caps)?;
    let static_data = obj.remove("staticData");
    if let Some(sd) = &static_data
        && !(sd.is_object() || sd.is_string() || sd.is_null())
    {
        return Err(bad_request("request/body/staticData must be object,string"));
    }
    let description = match obj.remove("description") {
        None => None,
        Some(Value::String(d)) => Some(d),
        Some(_) => return Err(bad_request("request/body/description must be string")),
    };
    let pin_data = match obj.remove("pinData") {
        None => None,
        Some(p @ (Value::Object(_) | Value::Null)) => Some(p),
        Some(_) => return Err(bad_request("request/body/pinData must be object")),
    };
    if obj.get("nodeGroups").is_some_and(|g| !g.is_array()) {
        return Err(bad_request("request/body/nodeGroups must be array"));
    }
    Ok(WorkflowWrite {
        name,
        nodes,
        connections,
        settings,
        static_data,
        description,
        pin_data,
    })
}

fn validate_nodes(nodes: &Value) -> Result<(), ApiError> {
    let Some(list) = nodes.as_array() else {
        return Err(bad_request("request/body/nodes must be array"));
    };
    for (i, node) in list.iter().enumerate() {
        let Some(obj) = node.as_object() else {
            return Err(bad_request(format!(
                "request/body/nodes/{i} must be object"
            )));
        };
        for key in ["name", "type", "typeVersion", "position", "parameters"] {
            if !obj.contains_key(key) {
                return Err(bad_request(format!(
                    "request/body/nodes/{i} must have required property '{key}'"
                )));
            }
        }
        let checks: [(&str, bool, &str); 5] = [
            ("name", obj["name"].is_string(), "string"),
            ("type", obj["type"].is_string(), "string"),
            ("typeVersion", obj["typeVersion"].is_number(), "number"),
            ("position", obj["position"].is_array(), "array"),
            ("parameters", obj["parameters"].is_object(), "object"),
        ];
        if let Some((key, _, kind)) = checks.iter().find(|(_, valid, _)| !valid) {
            return Err(bad_request(format!(
                "request/body/nodes/{i}/{key} must be {kind}"
            )));
        }
        if obj.get("credentials").is_some_and(|c| !c.is_object()) {
            return Err(bad_request(format!(
                "request/body/nodes/{i}/credentials must be object"
            )));
        }
    }
    Ok(())
}

fn validate_settings(settings: &Value, caps: Caps) -> Result<(), ApiError> {
    let Some(map) = settings.as_object() else {
        return Err(bad_request("request/body/settings must be object"));
    };
    let known = |k: &str| SETTINGS_V1.contains(&k) || (caps.v2 && SETTINGS_V2.contains(&k));
    if map.keys().any(|k| !known(k)) {
        return Err(bad_request(
            "request/body/settings must NOT have additional properties",
        ));
    }
    for (key, value) in map {
        let must_be =
            |what: &str| bad_request(format!("request/body/settings/{key} must be {what}"));
        let one_of = |allowed: &[&str]| value.as_str().is_some_and(|v| allowed.contains(&v));
        let enum_error = || must_be("equal to one of the allowed values");
        if value.as_str() == Some("DEFAULT") {
            return Err(enum_error());
        }
        let valid = match key.as_str() {
            "saveDataErrorExecution" | "saveDataSuccessExecution" => one_of(&["all", "none"]),
            "executionOrder" => one_of(&["v0", "v1"]),
            "callerPolicy" => one_of(&[
                "any",
                "none",
                "workflowsFromAList",
                "workflowsFromSameOwner",
            ]),
            "saveManualExecutions" | "saveExecutionProgress" | "availableInMCP" => {
                if !value.is_boolean() {
                    return Err(must_be("boolean"));
                }
                true
            }
            "executionTimeout" | "timeSavedPerExecution" => {
                if !value.is_number() {
                    return Err(must_be("number"));
                }
                true
            }
            "errorWorkflow" | "timezone" | "callerIds" => {
                if !value.is_string() {
                    return Err(must_be("string"));
                }
                true
            }
            _ => true,
        };
        if !valid {
            return Err(enum_error());
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// HTTP
// ---------------------------------------------------------------------------------------------

fn router(ctx: Ctx) -> Router {
    let api = Router::new()
        .route("/workflows", get(list_workflows).post(create_workflow))
        .route(
            "/workflows/{id}",
            get(get_workflow)
                .put(update_workflow)
                .delete(delete_workflow),
        )
        .route("/workflows/{id}/activate", post(activate_workflow))
        .route("/workflows/{id}/deactivate", post(deactivate_workflow))
        .route("/workflows/{id}/publish", post(publish_workflow))
        .route("/workflows/{id}/unpublish", post(unpublish_workflow))
        .route("/workflows/{id}/archive", post(archive_workflow))
        .route("/workflows/{id}/unarchive", post(unarchive_workflow))
        .route(
            "/workflows/{id}/tags",
            get(get_workflow_tags).put(put_workflow_tags),
        )
        .route("/tags", get(list_tags).post(create_tag))
        .route(
            "/tags/{id}",
            get(get_tag).put(update_tag).delete(delete_tag),
        )
        .route(
            "/credentials",
            get(list_credentials).post(create_credential),
        )
        .route("/credentials/{id}", delete(delete_credential))
        .route("/users", get(list_users))
        .route("/users/{id}", get(get_user))
        .route("/executions", get(list_executions))
        .route(
            "/executions/{id}",
            get(get_execution).delete(delete_execution),
        )
        .fallback(|| async { not_found() })
        .method_not_allowed_fallback(|method: Method| async move {
            error(
                StatusCode::METHOD_NOT_ALLOWED,
                format!("{method} method not allowed"),
            )
        })
        .layer(middleware::from_fn_with_state(ctx.clone(), guard))
        .layer(DefaultBodyLimit::max(BODY_LIMIT));
    Router::new()
        .route("/rest/settings", get(rest_settings))
        .nest("/api/v1", api)
        .with_state(ctx)
}

/// Counts the request, applies the next queued fault, then checks the API key.
async fn guard(State(ctx): State<Ctx>, req: Request, next: Next) -> Response {
    let write = matches!(
        *req.method(),
        axum::http::Method::POST | axum::http::Method::PUT
    ) && req.uri().path().contains("/workflows");
    let (fault, refuse, cut) = {
        let mut s = ctx.lock();
        s.requests += 1;
        let (refuse, cut) = match (write, s.write_fault) {
            (true, Some((0, truncate))) => {
                s.write_fault = None;
                (!truncate, truncate)
            }
            (true, Some((n, truncate))) => {
                s.write_fault = Some((n - 1, truncate));
                (false, false)
            }
            _ => (false, false),
        };
        (s.faults.take(), refuse, cut)
    };
    if refuse {
        return error(
            StatusCode::BAD_REQUEST,
            "request/body/nodes/0 must have required property 'typeVersion'",
        )
        .into_response();
    }
    let mut truncate = match faults::apply(fault, || {
        json_response(
            StatusCode::TOO_MANY_REQUESTS,
            &json!({"message": "Too many requests"}),
        )
    })
    .await
    {
        Ok(truncate) => truncate,
        Err(resp) => return resp,
    };
    truncate |= cut;
    match req.headers().get("x-n8n-api-key") {
        None => {
            return error(StatusCode::UNAUTHORIZED, "'X-N8N-API-KEY' header required")
                .into_response();
        }
        Some(key) if key.as_bytes() != ctx.api_key.as_bytes() => {
            return error(StatusCode::UNAUTHORIZED, "unauthorized").into_response();
        }
        Some(_) => {}
    }
    let resp = next.run(req).await;
    if truncate {
        faults::truncate(resp).await
    } else {
        resp
    }
}

async fn rest_settings(State(ctx): State<Ctx>) -> Response {
    ok(&json!({"data": {
        "versionCli": &*ctx.version,
        "publicApi": {"enabled": true, "latestVersion": 1, "path": "api", "swaggerUi": {"enabled": true}},
    }}))
}

type Q = Query<HashMap<String, String>>;

async fn list_workflows(State(ctx): State<Ctx>, Query(q): Q) -> ApiResult {
    let page = Page::from_query(&q, false)?;
    let active = query_bool(&q, "active")?;
    let exclude_pin = query_bool(&q, "excludePinnedData")?.unwrap_or(false);
    let tag_names: Option<HashSet<&str>> = q.get("tags").map(|t| {
        t.split(',')
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .collect()
    });
    let name = q.get("name").filter(|n| !n.is_empty());
    let project = q.get("projectId");
    let (data, more) = {
        let s = ctx.lock();
        if project.is_some_and(|p| *p != s.project.id) {
            (Vec::new(), None)
        } else {
            let tag_ids: Option<HashSet<&str>> = tag_names.as_ref().map(|names| {
                s.tags
                    .values()
                    .filter(|t| names.contains(t.name.as_str()))
                    .map(|t| t.id.as_str())
                    .collect()
            });
            take_page(
                after(&s.workflows, page.last_id.as_deref()),
                page.limit,
                |wf| {
                    active.is_none_or(|a| wf.active == a)
                        && name.is_none_or(|n| wf.name.contains(n.as_str()))
                        && tag_ids
                            .as_ref()
                            .is_none_or(|ids| wf.tag_ids.iter().any(|t| ids.contains(t.as_str())))
                },
                |wf| s.out(wf, !exclude_pin),
            )
        }
    };
    let next_cursor = page.next_cursor(more);
    Ok(workflow_list_response(&data, next_cursor.as_deref()))
}

async fn get_workflow(State(ctx): State<Ctx>, Path(id): Path<String>) -> ApiResult {
    let out = {
        let s = ctx.lock();
        s.workflows.get(&id).map(|wf| s.out(wf, true))
    };
    Ok(workflow_response(&out.ok_or_else(not_found)?))
}

async fn create_workflow(State(ctx): State<Ctx>, body: Bytes) -> ApiResult {
    let body = validate_workflow_body(parse_body(&body)?, ctx.caps)?;
    let out = {
        let mut s = ctx.lock();
        let id = s.new_id();
        let mut wf = s.blank_workflow(id.clone());
        let mut nodes = body.nodes;
        s.resolve_credentials(&mut nodes);
        wf.name = body.name;
        wf.nodes = Nodes::from_value(&nodes);
        wf.connections = encoded(&body.connections);
        wf.settings = body.settings;
        wf.static_data = body.static_data.unwrap_or(Value::Null);
        wf.description = body.description;
        if let Some(pin) = body.pin_data {
            wf.pin_data = encoded(&pin);
        }
        let wf = Arc::new(wf);
        let out = s.out(&wf, true);
        s.workflows.insert(id, wf);
        out
    };
    Ok(workflow_response(&out))
}

async fn update_workflow(
    State(ctx): State<Ctx>,
    Path(id): Path<String>,
    Query(q): Q,
    body: Bytes,
) -> ApiResult {
    let body = validate_workflow_body(parse_body(&body)?, ctx.caps)?;
    // 2.x can save a draft of an active workflow; otherwise saving an active one publishes it.
    let publish_now = !(ctx.caps.v2 && q.get("publishIfActive").is_some_and(|v| v == "false"));
    let (out, failure) = {
        let mut s = ctx.lock();
        let mut wf = s
            .workflows
            .get(&id)
            .map(|w| Workflow::clone(w))
            .ok_or_else(not_found)?;
        let mut nodes = body.nodes;
        s.resolve_credentials(&mut nodes);
        wf.name = body.name;
        wf.nodes = Nodes::from_value(&nodes);
        wf.connections = encoded(&body.connections);
        wf.settings = body.settings;
        if let Some(sd) = body.static_data {
            wf.static_data = sd;
        }
        if let Some(d) = body.description {
            wf.description = Some(d);
        }
        if let Some(pin) = body.pin_data {
            wf.pin_data = encoded(&pin);
        }
        wf.version_id = new_version_id();
        wf.version_counter += 1;
        wf.updated_at = s.now();
        let mut failure = None;
        if wf.active && publish_now {
            match s.activation_error(&wf.id, &wf.nodes) {
                Some(message) => {
                    wf.active = false;
                    failure = Some(message);
                }
                None => wf.published = Some(publish(&wf)),
            }
            wf.settle_activity();
        }
        let wf = Arc::new(wf);
        let out = s.out(&wf, true);
        s.workflows.insert(id, wf);
        (out, failure)
    };
    match failure {
        Some(message) => Err(bad_request(message)),
        None => Ok(workflow_response(&out)),
    }
}

async fn delete_workflow(State(ctx): State<Ctx>, Path(id): Path<String>) -> ApiResult {
    let out = {
        let mut s = ctx.lock();
        let wf = s.remove_workflow(&id).ok_or_else(not_found)?;
        s.out(&wf, true)
    };
    Ok(workflow_response(&out))
}

/// Applies `change` to a stored workflow and returns it as GET would.
fn change_workflow(
    ctx: &Ctx,
    id: &str,
    change: impl FnOnce(&mut Inner, &mut Workflow) -> Result<(), ApiError>,
) -> ApiResult {
    let out = {
        let mut s = ctx.lock();
        let mut wf = s
            .workflows
            .get(id)
            .map(|w| Workflow::clone(w))
            .ok_or_else(not_found)?;
        change(&mut s, &mut wf)?;
        let wf = Arc::new(wf);
        let out = s.out(&wf, true);
        s.workflows.insert(wf.id.clone(), wf);
        out
    };
    Ok(workflow_response(&out))
}

fn activate(s: &mut Inner, wf: &mut Workflow) -> Result<(), ApiError> {
    if wf.archived {
        return Err(bad_request("Cannot activate an archived workflow"));
    }
    if let Some(message) = s.activation_error(&wf.id, &wf.nodes) {
        return Err(bad_request(message));
    }
    wf.active = true;
    wf.published = Some(publish(wf));
    wf.settle_activity();
    Ok(())
}

fn deactivate(_: &mut Inner, wf: &mut Workflow) -> Result<(), ApiError> {
    wf.active = false;
    wf.settle_activity();
    Ok(())
}

fn require_v2(ctx: &Ctx) -> Result<(), ApiError> {
    if ctx.caps.v2 {
        Ok(())
    } else {
        Err(not_found())
    }
}

async fn activate_workflow(State(ctx): State<Ctx>, Path(id): Path<String>) -> ApiResult {
    change_workflow(&ctx, &id, activate)
}

async fn deactivate_workflow(State(ctx): State<Ctx>, Path(id): Path<String>) -> ApiResult {
    change_workflow(&ctx, &id, deactivate)
}

async fn publish_workflow(State(ctx): State<Ctx>, Path(id): Path<String>) -> ApiResult {
    require_v2(&ctx)?;
    change_workflow(&ctx, &id, activate)
}

async fn unpublish_workflow(State(ctx): State<Ctx>, Path(id): Path<String>) -> ApiResult {
    require_v2(&ctx)?;
    change_workflow(&ctx, &id, deactivate)
}

async fn archive_workflow(State(ctx): State<Ctx>, Path(id): Path<String>) -> ApiResult {
    require_v2(&ctx)?;
    change_workflow(&ctx, &id, |s, wf| {
        wf.archived = true;
        wf.active = false;
        wf.settle_activity();
        wf.updated_at = s.now();
        Ok(())
    })
}

async fn unarchive_workflow(State(ctx): State<Ctx>, Path(id): Path<String>) -> ApiResult {
    require_v2(&ctx)?;
    change_workflow(&ctx, &id, |s, wf| {
        wf.archived = false;
        wf.updated_at = s.now();
        Ok(())
    })
}

async fn get_workflow_tags(State(ctx): State<Ctx>, Path(id): Path<String>) -> ApiResult {
    let tags: Vec<TagOut> = {
        let s = ctx.lock();
        let wf = s.workflows.get(&id).ok_or_else(not_found)?;
        wf.tag_ids
            .iter()
            .filter_map(|t| s.tags.get(t))
            .map(|t| TagOut::from(&**t))
            .collect()
    };
    Ok(ok(&tags))
}

async fn put_workflow_tags(
    State(ctx): State<Ctx>,
    Path(id): Path<String>,
    body: Bytes,
) -> ApiResult {
    let body = parse_body(&body)?;
    let Some(list) = body.as_array() else {
        return Err(bad_request("request/body must be array"));
    };
    let mut wanted = Vec::with_capacity(list.len());
    for (i, item) in list.iter().enumerate() {
        let Some(tag_id) = item.get("id").and_then(Value::as_str) else {
            return Err(bad_request(format!(
                "request/body/{i} must have required property 'id'"
            )));
        };
        if !wanted.iter().any(|w| w == tag_id) {
            wanted.push(tag_id.to_owned());
        }
    }
    let tags: Vec<TagOut> = {
        let mut s = ctx.lock();
        if !s.workflows.contains_key(&id) {
            return Err(not_found());
        }
        if wanted.iter().any(|t| !s.tags.contains_key(t)) {
            return Err(error(StatusCode::NOT_FOUND, "Some tags not found"));
        }
        let tags = wanted
            .iter()
            .filter_map(|t| s.tags.get(t))
            .map(|t| TagOut::from(&**t))
            .collect();
        if let Some(wf) = s.workflows.get_mut(&id) {
            Arc::make_mut(wf).tag_ids = wanted;
        }
        tags
    };
    Ok(ok(&tags))
}

fn tag_name(body: &Bytes) -> Result<String, ApiError> {
    let Value::Object(mut obj) = parse_body(body)? else {
        return Err(bad_request("request/body must be object"));
    };
    let name = obj
        .remove("name")
        .ok_or_else(|| bad_request("request/body must have required property 'name'"))?;
    if !obj.is_empty() {
        return Err(bad_request(
            "request/body must NOT have additional properties",
        ));
    }
    match name {
        Value::String(name) if !name.trim().is_empty() => Ok(name),
        Value::String(_) => Err(bad_request("Tag name cannot be empty")),
        _ => Err(bad_request("request/body/name must be string")),
    }
}

async fn list_tags(State(ctx): State<Ctx>, Query(q): Q) -> ApiResult {
    let page = Page::from_query(&q, false)?;
    let (data, more) = {
        let s = ctx.lock();
        take_page(
            after(&s.tags, page.last_id.as_deref()),
            page.limit,
            |_| true,
            |t: &Arc<Tag>| TagOut::from(&**t),
        )
    };
    let next_cursor = page.next_cursor(more);
    Ok(ok(&ListOut { data, next_cursor }))
}

async fn create_tag(State(ctx): State<Ctx>, body: Bytes) -> ApiResult {
    let name = tag_name(&body)?;
    let out = {
        let mut s = ctx.lock();
        if s.tags.values().any(|t| t.name == name) {
            return Err(error(StatusCode::CONFLICT, "Tag already exists"));
        }
        let id = s.tag_by_name_or_create(&name);
        s.tags
            .get(&id)
            .map(|t| TagOut::from(&**t))
            .ok_or_else(not_found)?
    };
    Ok(json_response(StatusCode::CREATED, &out))
}

async fn get_tag(State(ctx): State<Ctx>, Path(id): Path<String>) -> ApiResult {
    let out = ctx.lock().tags.get(&id).map(|t| TagOut::from(&**t));
    Ok(ok(&out.ok_or_else(not_found)?))
}

async fn update_tag(State(ctx): State<Ctx>, Path(id): Path<String>, body: Bytes) -> ApiResult {
    let name = tag_name(&body)?;
    let out = {
        let mut s = ctx.lock();
        if !s.tags.contains_key(&id) {
            return Err(not_found());
        }
        if s.tags.values().any(|t| t.name == name && t.id != id) {
            return Err(error(StatusCode::CONFLICT, "Tag already exists"));
        }
        let now = s.now();
        let tag = Arc::make_mut(s.tags.get_mut(&id).ok_or_else(not_found)?);
        tag.name = name;
        tag.updated_at = now;
        TagOut::from(&*tag)
    };
    Ok(ok(&out))
}

async fn delete_tag(State(ctx): State<Ctx>, Path(id): Path<String>) -> ApiResult {
    let out = {
        let mut s = ctx.lock();
        let tag = s.tags.remove(&id).ok_or_else(not_found)?;
        for wf in s.workflows.values_mut() {
            if wf.tag_ids.contains(&id) {
                Arc::make_mut(wf).tag_ids.retain(|t| *t != id);
            }
        }
        TagOut::from(&*tag)
    };
    Ok(ok(&out))
}

async fn list_credentials(State(ctx): State<Ctx>, Query(q): Q) -> ApiResult {
    if !ctx.caps.credential_list {
        // Before 2.8.0 only POST exists on this path.
        return Err(error(
            StatusCode::METHOD_NOT_ALLOWED,
            "GET method not allowed",
        ));
    }
    let page = Page::from_query(&q, false)?;
    let (data, more) = {
        let s = ctx.lock();
        take_page(
            after(&s.credentials, page.last_id.as_deref()),
            page.limit,
            |_| true,
            credential_json,
        )
    };
    let next_cursor = page.next_cursor(more);
    Ok(ok(&ListOut { data, next_cursor }))
}

async fn create_credential(State(ctx): State<Ctx>, body: Bytes) -> ApiResult {
    let Value::Object(obj) = parse_body(&body)? else {
        return Err(bad_request("request/body must be object"));
    };
    for key in ["name", "type", "data"] {
        if !obj.contains_key(key) {
            return Err(bad_request(format!(
                "request/body must have required property '{key}'"
            )));
        }
    }
    let (Some(name), Some(cred_type)) = (obj["name"].as_str(), obj["type"].as_str()) else {
        return Err(bad_request("request/body/name must be string"));
    };
    if !obj["data"].is_object() {
        return Err(bad_request("request/body/data must be object"));
    }
    let out = {
        let mut s = ctx.lock();
        let id = s.add_credential(name, cred_type, obj["data"].clone());
        s.credentials
            .get(&id)
            .map(credential_json)
            .ok_or_else(not_found)?
    };
    Ok(ok(&out))
}

async fn delete_credential(State(ctx): State<Ctx>, Path(id): Path<String>) -> ApiResult {
    let removed = ctx.lock().credentials.remove(&id);
    Ok(ok(&credential_json(&removed.ok_or_else(not_found)?)))
}

async fn list_users(State(ctx): State<Ctx>, Query(q): Q) -> ApiResult {
    let page = Page::from_query(&q, true)?;
    let include_role = query_bool(&q, "includeRole")?.unwrap_or(false);
    let (data, more) = {
        let s = ctx.lock();
        take_page(
            after(&s.users, page.last_id.as_deref()),
            page.limit,
            |_| true,
            |u| user_json(u, include_role),
        )
    };
    let next_cursor = page.next_cursor(more);
    Ok(ok(&ListOut { data, next_cursor }))
}

async fn get_user(State(ctx): State<Ctx>, Path(id): Path<String>, Query(q): Q) -> ApiResult {
    let include_role = query_bool(&q, "includeRole")?.unwrap_or(false);
    let out = {
        let s = ctx.lock();
        s.users
            .get(&id)
            .or_else(|| s.users.values().find(|u| u.email.eq_ignore_ascii_case(&id)))
            .map(|u| user_json(u, include_role))
    };
    Ok(ok(&out.ok_or_else(not_found)?))
}

async fn list_executions(State(ctx): State<Ctx>, Query(q): Q) -> ApiResult {
    let page = Page::from_query(&q, false)?;
    let include_data = query_bool(&q, "includeData")?.unwrap_or(false);
    let status = match q.get("status") {
        None => None,
        Some(s) if EXECUTION_STATUSES.contains(&s.as_str()) => Some(s.as_str()),
        Some(_) => {
            return Err(bad_request(format!(
                "request/query/status must be equal to one of the allowed values: {}",
                EXECUTION_STATUSES.join(", ")
            )));
        }
    };
    let workflow_id = q.get("workflowId");
    let last_id = match &page.last_id {
        None => None,
        Some(raw) => Some(
            raw.parse::<u64>()
                .map_err(|_| bad_request("An invalid cursor was provided"))?,
        ),
    };
    let (data, more) = {
        let s = ctx.lock();
        // Newest first, as n8n lists them.
        let iter = match last_id {
            Some(last) => s.executions.range(..last).rev(),
            None => s.executions.range(..).rev(),
        };
        take_page(
            iter,
            page.limit,
            |e| {
                // Running executions are listed only when asked for.
                status.map_or(e.status != "running", |st| e.status == st)
                    && workflow_id.is_none_or(|w| e.workflow_id == *w)
            },
            |e| execution_json(e, include_data),
        )
    };
    let next_cursor = page.next_cursor(more.map(|id| id.to_string()));
    Ok(ok(&ListOut { data, next_cursor }))
}

async fn get_execution(State(ctx): State<Ctx>, Path(id): Path<String>, Query(q): Q) -> ApiResult {
    let include_data = query_bool(&q, "includeData")?.unwrap_or(false);
    let id: u64 = id.parse().map_err(|_| not_found())?;
    let out = ctx
        .lock()
        .executions
        .get(&id)
        .map(|e| execution_json(e, include_data));
    Ok(ok(&out.ok_or_else(not_found)?))
}

async fn delete_execution(State(ctx): State<Ctx>, Path(id): Path<String>) -> ApiResult {
    let id: u64 = id.parse().map_err(|_| not_found())?;
    let removed = ctx.lock().executions.remove(&id);
    Ok(ok(&execution_json(&removed.ok_or_else(not_found)?, false)))
}

#[cfg(test)]
mod tests {
    use reqwest::{Method, StatusCode};
    use serde_json::{Value, json};

    use super::{EmulatorConfig, Fault, N8nEmulator};

    const V1: &str = "1.123.81";
    const V2: &str = "2.41.1";

    async fn emulator(version: &str) -> N8nEmulator {
        N8nEmulator::start(EmulatorConfig {
            version: version.to_owned(),
            ..EmulatorConfig::default()
        })
        .await
    }

    fn http() -> reqwest::Client {
        let _ = rustls::crypto::ring::default_provider().install_default();
        reqwest::Client::new()
    }

    /// An authenticated API call; the body is Null when the answer is not JSON.
    async fn call(
        emu: &N8nEmulator,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> (StatusCode, Value) {
        let url = format!("{}/api/v1{path}", emu.base_url());
        let mut req = http()
            .request(method, url)
            .header("X-N8N-API-KEY", emu.api_key());
        if let Some(body) = body {
            req = req.json(body);
        }
        let resp = req
            .send()
            .await
            .unwrap_or_else(|e| panic!("request to {path}: {e}"));
        let status = resp.status();
        let body = resp.json().await.unwrap_or(Value::Null);
        (status, body)
    }

    fn message(body: &Value) -> &str {
        body["message"].as_str().unwrap_or_default()
    }

    fn workflow_body(name: &str, nodes: &Value) -> Value {
        json!({
            "name": name,
            "nodes": nodes,
            "connections": {},
            "settings": {"executionOrder": "v1"},
        })
    }

    fn webhook_nodes(path: &str) -> Value {
        json!([{
            "name": "Webhook", "type": "n8n-nodes-base.webhook", "typeVersion": 2,
            "position": [0, 0], "parameters": {"path": path, "httpMethod": "POST"},
        }])
    }

    #[tokio::test]
    async fn requests_without_the_right_api_key_are_refused() {
        let emu = emulator(V2).await;
        let url = format!("{}/api/v1/workflows", emu.base_url());

        let missing = http()
            .get(&url)
            .send()
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(missing.status(), StatusCode::UNAUTHORIZED);
        let body: Value = missing.json().await.unwrap_or(Value::Null);
        assert_eq!(message(&body), "'X-N8N-API-KEY' header required");

        let wrong = http()
            .get(&url)
            .header("X-N8N-API-KEY", "nope")
            .send()
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
        let body: Value = wrong.json().await.unwrap_or(Value::Null);
        assert_eq!(message(&body), "unauthorized");

        let bearer = http()
            .get(&url)
            .bearer_auth(emu.api_key())
            .send()
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(bearer.status(), StatusCode::UNAUTHORIZED);

        let (status, _) = call(&emu, Method::GET, "/workflows", None).await;
        assert_eq!(status, StatusCode::OK);
        let (status, body) = call(&emu, Method::GET, "/nothing-here", None).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert_eq!(message(&body), "Not Found");
        let (status, body) = call(&emu, Method::PATCH, "/workflows", None).await;
        assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(message(&body), "PATCH method not allowed");
        let malformed = http()
            .post(&url)
            .header("X-N8N-API-KEY", emu.api_key())
            .header("content-type", "application/json")
            .body("{\"name\": ")
            .send()
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(malformed.status(), StatusCode::BAD_REQUEST);
        let body: Value = malformed.json().await.unwrap_or(Value::Null);
        assert!(message(&body).starts_with("Unexpected token"), "{body}");
        assert_eq!(emu.requests(), 7);

        // The version endpoint needs no key.
        let settings: Value = http()
            .get(format!("{}/rest/settings", emu.base_url()))
            .send()
            .await
            .unwrap_or_else(|e| panic!("{e}"))
            .json()
            .await
            .unwrap_or(Value::Null);
        assert_eq!(settings["data"]["versionCli"], V2);
    }

    #[tokio::test]
    async fn pagination_walks_every_workflow_exactly_once() {
        let emu = emulator(V2).await;
        let seeded = emu.seed_workflows(600, 5);
        assert_eq!(emu.workflow_count(), 600);

        let mut seen = Vec::new();
        let mut pages = 0;
        let mut path = "/workflows?limit=250".to_owned();
        loop {
            let (status, body) = call(&emu, Method::GET, &path, None).await;
            assert_eq!(status, StatusCode::OK, "{body}");
            pages += 1;
            let data = body["data"].as_array().cloned().unwrap_or_default();
            assert!(
                data.iter()
                    .all(|wf| wf["nodes"].as_array().map(Vec::len) == Some(5))
            );
            seen.extend(
                data.iter()
                    .map(|wf| wf["id"].as_str().unwrap_or_default().to_owned()),
            );
            match body["nextCursor"].as_str() {
                Some(cursor) => {
                    assert_eq!(data.len(), 250);
                    path = format!("/workflows?cursor={}", urlencode(cursor));
                }
                None => {
                    assert_eq!(data.len(), 100);
                    break;
                }
            }
        }
        assert_eq!(pages, 3);
        assert_eq!(seen, seeded, "every workflow once, in id order");

        let (_, body) = call(&emu, Method::GET, "/workflows?limit=300", None).await;
        assert_eq!(body["data"].as_array().map(Vec::len), Some(250));

        // limit=0: everything, with a cursor that serves the same page again.
        let (_, all) = call(&emu, Method::GET, "/workflows?limit=0", None).await;
        assert_eq!(all["data"].as_array().map(Vec::len), Some(600));
        let cursor = all["nextCursor"].as_str().unwrap_or_default().to_owned();
        let (_, again) = call(
            &emu,
            Method::GET,
            &format!("/workflows?cursor={}", urlencode(&cursor)),
            None,
        )
        .await;
        assert_eq!(again["data"].as_array().map(Vec::len), Some(600));
        assert_eq!(again["nextCursor"].as_str(), Some(cursor.as_str()));

        let (status, body) = call(&emu, Method::GET, "/workflows?cursor=%%%", None).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    }

    fn urlencode(s: &str) -> String {
        s.replace('+', "%2B")
            .replace('/', "%2F")
            .replace('=', "%3D")
    }

    #[tokio::test]
    async fn users_refuse_limits_above_250() {
        let emu = emulator(V2).await;
        emu.add_user("member@example.com", "global:member");
        let (status, body) = call(&emu, Method::GET, "/users?limit=300", None).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(message(&body), "request/query/limit must be <= 250");
        let (status, body) = call(&emu, Method::GET, "/users?includeRole=true", None).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body["data"].as_array().map(Vec::len), Some(2));
        assert!(body["data"][0]["role"].is_string());
        let (status, body) = call(&emu, Method::GET, "/users/member@example.com", None).await;
        assert_eq!(status, StatusCode::OK);
        assert!(body.get("role").is_none());
    }

    #[tokio::test]
    async fn put_of_a_fetched_workflow_is_refused_but_an_allow_listed_body_is_saved() {
        let emu = emulator(V2).await;
        let id = emu.seed_workflows(1, 6).remove(0);
        let (_, fetched) = call(&emu, Method::GET, &format!("/workflows/{id}"), None).await;

        let (status, body) = call(
            &emu,
            Method::PUT,
            &format!("/workflows/{id}"),
            Some(&fetched),
        )
        .await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert!(message(&body).ends_with("is read-only"), "{body}");

        // Copy the allow-listed fields; a null description must be left out, as n8n refuses it.
        let mut write = json!({});
        for key in [
            "name",
            "nodes",
            "connections",
            "settings",
            "staticData",
            "pinData",
        ] {
            write[key] = fetched[key].clone();
        }
        assert!(fetched["description"].is_null());
        write["name"] = json!("Renamed");
        let (status, saved) =
            call(&emu, Method::PUT, &format!("/workflows/{id}"), Some(&write)).await;
        assert_eq!(status, StatusCode::OK, "{saved}");
        assert_eq!(saved["name"], "Renamed");
        assert_ne!(saved["versionId"], fetched["versionId"]);
        assert_eq!(
            emu.workflow(&id).map(|wf| wf["versionId"].clone()),
            Some(saved["versionId"].clone())
        );

        let mut extra = write.clone();
        extra["bogus"] = json!(1);
        let (status, body) =
            call(&emu, Method::PUT, &format!("/workflows/{id}"), Some(&extra)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(
            message(&body),
            "request/body must NOT have additional properties"
        );

        let mut missing = write.clone();
        missing.as_object_mut().map(|o| o.remove("settings"));
        let (status, body) = call(&emu, Method::POST, "/workflows", Some(&missing)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(
            message(&body),
            "request/body must have required property 'settings'"
        );

        let (status, body) = call(&emu, Method::GET, "/workflows/nope", None).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert_eq!(message(&body), "Not Found");
    }

    #[tokio::test]
    async fn settings_allow_list_depends_on_the_version() {
        let mut body = workflow_body("With binary mode", &webhook_nodes("bin"));
        body["settings"]["binaryMode"] = json!("filesystem");

        let old = emulator(V1).await;
        let (status, resp) = call(&old, Method::POST, "/workflows", Some(&body)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(
            message(&resp),
            "request/body/settings must NOT have additional properties"
        );
        let mut described = workflow_body("Described", &webhook_nodes("d"));
        described["description"] = json!("hello");
        let (status, resp) = call(&old, Method::POST, "/workflows", Some(&described)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(
            message(&resp),
            "request/body must NOT have additional properties"
        );

        let new = emulator(V2).await;
        let (status, resp) = call(&new, Method::POST, "/workflows", Some(&body)).await;
        assert_eq!(status, StatusCode::OK, "{resp}");
        assert_eq!(resp["active"], false);
        assert_eq!(resp["settings"]["binaryMode"], "filesystem");

        let mut defaulted = workflow_body("Default", &webhook_nodes("x"));
        defaulted["settings"]["saveManualExecutions"] = json!("DEFAULT");
        let (status, resp) = call(&new, Method::POST, "/workflows", Some(&defaulted)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(
            message(&resp),
            "request/body/settings/saveManualExecutions must be equal to one of the allowed values"
        );

        described["description"] = Value::Null;
        let (status, resp) = call(&new, Method::POST, "/workflows", Some(&described)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(message(&resp), "request/body/description must be string");
    }

    #[tokio::test]
    async fn activation_needs_a_trigger_and_a_free_webhook_path() {
        let emu = emulator(V2).await;
        let manual_only = json!([{
            "name": "Manual", "type": "n8n-nodes-base.manualTrigger", "typeVersion": 1,
            "position": [0, 0], "parameters": {},
        }]);
        let (_, wf) = call(
            &emu,
            Method::POST,
            "/workflows",
            Some(&workflow_body("Manual", &manual_only)),
        )
        .await;
        let id = wf["id"].as_str().unwrap_or_default();
        let (status, body) = call(
            &emu,
            Method::POST,
            &format!("/workflows/{id}/activate"),
            None,
        )
        .await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert!(
            message(&body).starts_with("Workflow has no node to start the workflow"),
            "{body}"
        );

        let (_, first) = call(
            &emu,
            Method::POST,
            "/workflows",
            Some(&workflow_body("A", &webhook_nodes("orders"))),
        )
        .await;
        let (_, second) = call(
            &emu,
            Method::POST,
            "/workflows",
            Some(&workflow_body("B", &webhook_nodes("orders"))),
        )
        .await;
        let first = first["id"].as_str().unwrap_or_default();
        let second = second["id"].as_str().unwrap_or_default();

        let (status, active) = call(
            &emu,
            Method::POST,
            &format!("/workflows/{first}/activate"),
            None,
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{active}");
        assert_eq!(active["active"], true);
        assert_eq!(active["triggerCount"], 1);
        assert_eq!(active["activeVersionId"], active["versionId"]);

        let (status, body) = call(
            &emu,
            Method::POST,
            &format!("/workflows/{second}/activate"),
            None,
        )
        .await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert!(message(&body).contains("is already taken"), "{body}");

        let (status, _) = call(
            &emu,
            Method::POST,
            &format!("/workflows/{first}/archive"),
            None,
        )
        .await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(
            emu.workflow(first).map(|wf| wf["active"].clone()),
            Some(json!(false))
        );
        let (status, body) = call(
            &emu,
            Method::POST,
            &format!("/workflows/{second}/publish"),
            None,
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{body}");

        let old = emulator(V1).await;
        let (_, wf) = call(
            &old,
            Method::POST,
            "/workflows",
            Some(&workflow_body("A", &webhook_nodes("a"))),
        )
        .await;
        let id = wf["id"].as_str().unwrap_or_default();
        let (status, _) = call(
            &old,
            Method::POST,
            &format!("/workflows/{id}/publish"),
            None,
        )
        .await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        let (status, _) = call(
            &old,
            Method::POST,
            &format!("/workflows/{id}/activate"),
            None,
        )
        .await;
        assert_eq!(status, StatusCode::OK);
    }

    #[tokio::test]
    async fn unknown_credential_ids_resolve_by_name_and_type() {
        let emu = emulator(V2).await;
        let cred = emu.add_credential("Shop API", "httpBasicAuth");
        let nodes = json!([{
            "name": "Webhook", "type": "n8n-nodes-base.webhook", "typeVersion": 2,
            "position": [0, 0], "parameters": {"path": "p"},
        }, {
            "name": "Call", "type": "n8n-nodes-base.httpRequest", "typeVersion": 4.2,
            "position": [200, 0], "parameters": {},
            "credentials": {"httpBasicAuth": {"id": "fromAnotherInstance", "name": "Shop API"}},
        }]);
        let (status, wf) = call(
            &emu,
            Method::POST,
            "/workflows",
            Some(&workflow_body("C", &nodes)),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{wf}");
        assert_eq!(
            wf["nodes"][1]["credentials"]["httpBasicAuth"]["id"],
            cred.as_str()
        );
    }

    #[tokio::test]
    async fn credentials_can_be_listed_only_from_2_8() {
        let old = emulator(V1).await;
        old.add_credential("Basic", "httpBasicAuth");
        let (status, body) = call(&old, Method::GET, "/credentials", None).await;
        assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(message(&body), "GET method not allowed");

        let new = emulator(V2).await;
        let created = json!({"name": "Basic", "type": "httpBasicAuth", "data": {"user": "u", "password": "p"}});
        let (status, cred) = call(&new, Method::POST, "/credentials", Some(&created)).await;
        assert_eq!(status, StatusCode::OK, "{cred}");
        assert!(cred.get("data").is_none());
        let (status, body) = call(&new, Method::GET, "/credentials", None).await;
        assert_eq!(status, StatusCode::OK);
        let listed = body["data"].as_array().cloned().unwrap_or_default();
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0]["id"], cred["id"]);
        assert!(listed[0].get("data").is_none());
    }

    #[tokio::test]
    async fn tags_are_unique_by_name() {
        let emu = emulator(V2).await;
        let (status, tag) = call(&emu, Method::POST, "/tags", Some(&json!({"name": "ops"}))).await;
        assert_eq!(status, StatusCode::CREATED);
        let (status, body) = call(&emu, Method::POST, "/tags", Some(&json!({"name": "ops"}))).await;
        assert_eq!(status, StatusCode::CONFLICT);
        assert_eq!(message(&body), "Tag already exists");

        let id = emu.seed_workflows(1, 3).remove(0);
        let tag_id = tag["id"].as_str().unwrap_or_default();
        let (status, tags) = call(
            &emu,
            Method::PUT,
            &format!("/workflows/{id}/tags"),
            Some(&json!([{"id": tag_id}])),
        )
        .await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(tags[0]["name"], "ops");
        let (status, _) = call(
            &emu,
            Method::PUT,
            &format!("/workflows/{id}/tags"),
            Some(&json!([{"id": "missing"}])),
        )
        .await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        let (_, listed) = call(&emu, Method::GET, "/workflows?tags=ops", None).await;
        assert_eq!(listed["data"].as_array().map(Vec::len), Some(1));
    }

    #[tokio::test]
    async fn executions_list_newest_first_and_filter_by_status() {
        let emu = emulator(V2).await;
        emu.seed_workflows(3, 4);
        emu.seed_executions(30);
        let (status, page) = call(&emu, Method::GET, "/executions?limit=10", None).await;
        assert_eq!(status, StatusCode::OK);
        let ids: Vec<u64> = page["data"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|e| e["id"].as_str()?.parse().ok())
            .collect();
        assert_eq!(ids, (21..=30).rev().collect::<Vec<u64>>());
        assert!(page["data"][0].get("data").is_none());
        assert!(page["nextCursor"].is_string());

        let (_, errors) = call(
            &emu,
            Method::GET,
            "/executions?status=error&includeData=true",
            None,
        )
        .await;
        let errors = errors["data"].as_array().cloned().unwrap_or_default();
        assert_eq!(errors.len(), 6);
        assert!(
            errors
                .iter()
                .all(|e| e["data"]["resultData"]["error"]["message"].is_string())
        );

        let (status, _) = call(&emu, Method::GET, "/executions?status=bogus", None).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
    }

    #[tokio::test]
    async fn injected_faults_apply_in_order_then_stop() {
        let emu = emulator(V2).await;
        emu.inject(Fault::RateLimited {
            times: 1,
            retry_after_secs: 7,
        });
        emu.inject(Fault::ServerError { times: 1 });
        emu.inject(Fault::Garbage { times: 1 });
        emu.inject(Fault::TruncatedJson { times: 1 });
        emu.inject(Fault::DropConnection { times: 1 });
        let url = format!("{}/api/v1/workflows", emu.base_url());
        let get = || {
            http()
                .get(&url)
                .header("X-N8N-API-KEY", emu.api_key())
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
        assert!(failed.text().await.unwrap_or_default().contains("<html>"));

        let garbage = get().await.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(garbage.status(), StatusCode::OK);
        assert!(garbage.json::<Value>().await.is_err());

        let truncated = get().await.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(truncated.status(), StatusCode::OK);
        assert!(truncated.json::<Value>().await.is_err());

        let dropped = get().await;
        assert!(
            dropped.is_err(),
            "expected a transport error, got {dropped:?}"
        );

        let (status, _) = call(&emu, Method::GET, "/workflows", None).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(emu.requests(), 6);

        emu.inject(Fault::ServerError { times: 5 });
        emu.clear_faults();
        let (status, _) = call(&emu, Method::GET, "/workflows", None).await;
        assert_eq!(status, StatusCode::OK);
    }

    #[tokio::test]
    async fn direct_edits_make_a_new_version() {
        let emu = emulator(V2).await;
        let id = emu.insert_workflow(json!({"name": "Inserted", "nodes": [], "connections": {}, "settings": {}, "tags": ["ops"]}));
        let before = emu.workflow(&id).unwrap_or_default();
        assert_eq!(before["active"], false);
        assert_eq!(before["tags"][0]["name"], "ops");
        emu.modify_workflow(&id, |wf| wf["name"] = json!("Edited in n8n"));
        let after = emu.workflow(&id).unwrap_or_default();
        assert_eq!(after["name"], "Edited in n8n");
        assert_ne!(after["versionId"], before["versionId"]);
        assert!(after["updatedAt"].as_str() > before["updatedAt"].as_str());
        emu.remove_workflow(&id);
        assert_eq!(emu.workflow_count(), 0);
    }

    #[tokio::test]
    async fn large_instances_serve_pages_without_scanning() {
        let emu = emulator(V2).await;
        let ids = emu.seed_workflows(2_000, 20);
        emu.seed_executions(20_000);

        let cursor = super::encode_cursor(Some(&ids[1_000]), 250);
        let deep_page = format!("/workflows?cursor={}", urlencode(&cursor));
        let (_, page) = call(&emu, Method::GET, &deep_page, None).await;
        let page = page["data"].as_array().cloned().unwrap_or_default();
        assert_eq!(page.len(), 250);
        assert_eq!(page[0]["id"].as_str(), Some(ids[1_001].as_str()));
        assert_eq!(page[0]["nodes"].as_array().map(Vec::len), Some(20));

        let (_, executions) = call(&emu, Method::GET, "/executions?limit=250", None).await;
        assert_eq!(executions["data"][0]["id"], "20000");
        let by_workflow = format!("/executions?workflowId={}", ids[0]);
        let (_, filtered) = call(&emu, Method::GET, &by_workflow, None).await;
        assert_eq!(filtered["data"].as_array().map(Vec::len), Some(10));

        // Page speed is measured by the sync benchmark (`cargo bench -p workflowops-tests`), not here.
    }
}
