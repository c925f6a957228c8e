//! Pure logic over a Make.com scenario as the Make adapter hands it out: the scenario's own
//! fields (`id`, `name`, `active`, `updatedAt`, `teamId`, `folderId`, `description`, …) with its
//! `scheduling` and its `blueprint` parsed:
//!
//! ```json
//! {"id": "17", "name": "Orders", "active": true, "scheduling": {"type": "indefinitely", "interval": 900},
//!  "blueprint": {"name": "Orders",
//!                "flow": [{"id": 1, "module": "gateway:CustomWebHook", "version": 1,
//!                          "parameters": {"hook": 881, "maxResults": 1}, "mapper": {},
//!                          "metadata": {"designer": {"x": 0, "y": 0}}},
//!                         {"id": 2, "module": "builtin:BasicRouter", "routes": [{"flow": […]}]}],
//!                "metadata": {"instant": true, "version": 1, "scenario": {"roundtrips": 1, …},
//!                             "designer": {"orphans": []}, "zone": "eu1.make.com"}}}
//! ```
//!
//! [`crate::workflow`] dispatches here for such documents, so the catalog, hashes, drift, diffs,
//! backups and promotions work on scenarios as they do on n8n workflows.
//!
//! Normalised form (the content hash): `name`, `description`, `scheduling` and the blueprint's
//! `flow` and `metadata.instant`/`metadata.scenario` (the scenario's settings). Removed: the
//! scenario's ids, team, folder, timestamps and activation; every module's `metadata` (canvas
//! position, the designer's cached labels and interface); and the references that differ per
//! team: connection ids (`parameters.__IMTCONN__`, replaced by the connection's type and the
//! label the designer shows for it, so switching a module to another connection is a change),
//! webhook and key ids (`__IMTHOOK__`, `__IMTKEY__`, a gateway module's `hook`). Module order is kept: it is the order Make runs
//! them in. Null values are removed and object keys sorted.
//!
//! Storage form (backups, restores): `name`, `description`, `scheduling`, the whole blueprint
//! (layout and connection ids kept, so a restore into the same team is exact) and `teamId`, the
//! team those connection, webhook and key ids belong to (a restore into another team must not
//! write them there); nulls removed.
//!
//! A module's connection is named by the type and label the designer cached for it
//! (`metadata.restore`). Scenarios built by the API or imported often have no such cache: then
//! the team's connections as the catalog lists them ([`connection_ref_in`]) say what the id is,
//! and only a connection unknown there too falls back to the module's app.

use std::collections::HashMap;

use serde_json::{Map, Value};

use crate::json::Doc;
use crate::workflow::{Graph, GraphEdge, GraphNode, strip_nulls};

/// Parameters that hold ids of things that belong to one team (a promotion remaps connections;
/// hooks and keys are the target team's own).
const TEAM_REFERENCES: [&str; 3] = ["__IMTCONN__", "__IMTHOOK__", "__IMTKEY__"];
/// The parameter holding a connection id.
pub const CONNECTION_PARAM: &str = "__IMTCONN__";

/// Whether `doc` is a Make scenario (it carries a blueprint with a flow) rather than an n8n
/// workflow.
pub fn is_scenario<D: Doc>(doc: &D) -> bool {
    doc.get("blueprint")
        .and_then(|b| b.get("flow"))
        .and_then(D::as_array)
        .is_some()
}

/// A document of any tree as a `serde_json::Value` (scenarios are small; the streaming writers
/// are for n8n's large workflows).
pub fn to_value<D: Doc>(doc: &D) -> Value {
    if let Some(members) = doc.members() {
        return Value::Object(
            members
                .map(|(k, v)| (k.to_owned(), to_value(v)))
                .collect::<Map<String, Value>>(),
        );
    }
    if let Some(items) = doc.as_array() {
        return Value::Array(items.iter().map(to_value).collect());
    }
    let mut out = Vec::new();
    doc.write_scalar(&mut out);
    serde_json::from_slice(&out).unwrap_or(Value::Null)
}

fn top_fields(scenario: &Value, out: &mut Map<String, Value>) {
    for key in ["name", "description", "scheduling"] {
        match scenario.get(key) {
            None | Some(Value::Null) => {}
            Some(Value::String(s)) if key == "description" && s.is_empty() => {}
            Some(v) => {
                out.insert(key.to_owned(), strip_nulls(v));
            }
        }
    }
}

/// The normalised form (see the module docs); keys are sorted by the caller.
pub fn normalize(scenario: &Value) -> Value {
    let mut out = Map::new();
    top_fields(scenario, &mut out);
    let blueprint = scenario.get("blueprint");
    let mut bp = Map::new();
    if let Some(flow) = blueprint
        .and_then(|b| b.get("flow"))
        .and_then(Value::as_array)
    {
        bp.insert(
            "flow".to_owned(),
            Value::Array(flow.iter().map(normalize_module).collect()),
        );
    }
    if let Some(meta) = blueprint.and_then(|b| b.get("metadata")) {
        let mut m = Map::new();
        for key in ["instant", "scenario"] {
            if let Some(v) = meta.get(key).filter(|v| !v.is_null()) {
                m.insert(key.to_owned(), strip_nulls(v));
            }
        }
        if !m.is_empty() {
            bp.insert("metadata".to_owned(), Value::Object(m));
        }
    }
    out.insert("blueprint".to_owned(), Value::Object(bp));
    Value::Object(out)
}

fn normalize_module(module: &Value) -> Value {
    let Some(o) = module.as_object() else {
        return strip_nulls(module);
    };
    let gateway = is_gateway(module);
    let mut out = Map::new();
    for (k, v) in o {
        if v.is_null() || k == "metadata" {
            continue;
        }
        let v = match k.as_str() {
            "parameters" => {
                let mut params: Map<String, Value> = v
                    .as_object()
                    .map(|p| {
                        p.iter()
                            .filter(|(k, v)| {
                                !v.is_null()
                                    && k.as_str() != CONNECTION_PARAM
                                    && !is_team_owned(gateway, k)
                            })
                            .map(|(k, v)| (k.clone(), strip_nulls(v)))
                            .collect()
                    })
                    .unwrap_or_default();
                // Which connection, by what names it the same way in every team (its type and
                // the label the designer shows), as n8n credentials keep type and name.
                if let Some(c) = connection_ref(module) {
                    params.insert(
                        CONNECTION_PARAM.to_owned(),
                        serde_json::json!({"type": c.connection_type, "label": c.label}),
                    );
                }
                Value::Object(params)
            }
            "routes" => Value::Array(
                v.as_array()
                    .map(|routes| routes.iter().map(normalize_route).collect())
                    .unwrap_or_default(),
            ),
            "onerror" => Value::Array(
                v.as_array()
                    .map(|flow| flow.iter().map(normalize_module).collect())
                    .unwrap_or_default(),
            ),
            _ => strip_nulls(v),
        };
        out.insert(k.clone(), v);
    }
    Value::Object(out)
}

fn normalize_route(route: &Value) -> Value {
    let mut out = route
        .as_object()
        .map(|o| {
            o.iter()
                .filter(|(k, v)| k.as_str() != "flow" && !v.is_null())
                .map(|(k, v)| (k.clone(), strip_nulls(v)))
                .collect::<Map<String, Value>>()
        })
        .unwrap_or_default();
    if let Some(flow) = route.get("flow").and_then(Value::as_array) {
        out.insert(
            "flow".to_owned(),
            Value::Array(flow.iter().map(normalize_module).collect()),
        );
    }
    Value::Object(out)
}

/// The storage form (see the module docs); keys are sorted by the caller.
pub fn storage_form(scenario: &Value) -> Value {
    let mut out = Map::new();
    top_fields(scenario, &mut out);
    if let Some(bp) = scenario.get("blueprint") {
        out.insert("blueprint".to_owned(), strip_nulls(bp));
    }
    if let Some(team) = team_id(scenario) {
        out.insert("teamId".to_owned(), Value::from(team));
    }
    Value::Object(out)
}

/// The team a scenario (or its storage form) belongs to: `teamId`, a number or digits in a
/// string. `None` for a document without one (a backup written before backups recorded it).
pub fn team_id(scenario: &Value) -> Option<u64> {
    match scenario.get("teamId")? {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// A module's `module` (`app:action`).
pub fn module_name(module: &Value) -> &str {
    module.get("module").and_then(Value::as_str).unwrap_or("")
}

/// How a module is named in reports and graphs: its label on the canvas when it has one, else
/// `app:action [id]`.
pub fn module_label(module: &Value) -> String {
    let id = module_id(module);
    module
        .get("metadata")
        .and_then(|m| m.get("designer"))
        .and_then(|d| d.get("name"))
        .and_then(Value::as_str)
        .filter(|s| !s.trim().is_empty())
        .map_or_else(
            || format!("{} [{id}]", module_name(module)),
            |name| format!("{name} [{id}]"),
        )
}

/// Every module of the scenario, depth first in flow order (routes and error handlers after the
/// module that holds them).
pub fn modules(scenario: &Value) -> Vec<&Value> {
    fn walk<'a>(flow: &'a [Value], out: &mut Vec<&'a Value>) {
        for m in flow {
            out.push(m);
            for route in m
                .get("routes")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                if let Some(f) = route.get("flow").and_then(Value::as_array) {
                    walk(f, out);
                }
            }
            if let Some(handlers) = m.get("onerror").and_then(Value::as_array) {
                walk(handlers, out);
            }
        }
    }
    let mut out = Vec::new();
    if let Some(flow) = top_flow(scenario) {
        walk(flow, &mut out);
    }
    out
}

fn top_flow(scenario: &Value) -> Option<&[Value]> {
    scenario
        .get("blueprint")?
        .get("flow")?
        .as_array()
        .map(Vec::as_slice)
}

/// Mutable access to every module, in the order of [`modules`].
pub fn for_each_module_mut(scenario: &mut Value, f: &mut dyn FnMut(&mut Value)) {
    fn walk(flow: &mut [Value], f: &mut dyn FnMut(&mut Value)) {
        for m in flow {
            f(m);
            if let Some(routes) = m.get_mut("routes").and_then(Value::as_array_mut) {
                for route in routes {
                    if let Some(flow) = route.get_mut("flow").and_then(Value::as_array_mut) {
                        walk(flow, f);
                    }
                }
            }
            if let Some(handlers) = m.get_mut("onerror").and_then(Value::as_array_mut) {
                walk(handlers, f);
            }
        }
    }
    if let Some(flow) = scenario
        .get_mut("blueprint")
        .and_then(|b| b.get_mut("flow"))
        .and_then(Value::as_array_mut)
    {
        walk(flow, f);
    }
}

/// Whether the scenario's first module starts it: an instant trigger (webhooks, `gateway:`), or
/// a polling `watch…` module.
pub fn is_trigger(module: &Value, first: bool, instant: bool) -> bool {
    if !first {
        return false;
    }
    let name = module_name(module);
    let action = name.split_once(':').map_or("", |(_, a)| a);
    instant || name.starts_with("gateway:") || action.starts_with("watch")
}

/// Whether the scenario runs on a webhook (`metadata.instant`).
pub fn is_instant(scenario: &Value) -> bool {
    scenario
        .get("blueprint")
        .and_then(|b| b.get("metadata"))
        .and_then(|m| m.get("instant"))
        .and_then(Value::as_bool)
        .unwrap_or(false)
}

/// The graph the UI draws: every module at its canvas position; an edge from each module to
/// the next in its flow, from a router to the first module of each route (`output` = the
/// route's index) and from a module to its error handler (`kind` = `error`).
pub fn graph(scenario: &Value) -> Graph {
    graph_named(scenario, module_label)
}

/// [`graph`] with modules named by `name`.
fn graph_named(scenario: &Value, name: fn(&Value) -> String) -> Graph {
    fn walk(
        name: fn(&Value) -> String,
        flow: &[Value],
        instant: bool,
        top: bool,
        nodes: &mut Vec<GraphNode>,
        edges: &mut Vec<GraphEdge>,
    ) {
        let mut previous: Option<String> = None;
        for (i, m) in flow.iter().enumerate() {
            let label = name(m);
            let designer = m.get("metadata").and_then(|d| d.get("designer"));
            let coord = |k: &str| {
                designer
                    .and_then(|d| d.get(k))
                    .and_then(Value::as_f64)
                    .unwrap_or(0.0)
            };
            nodes.push(GraphNode {
                name: label.clone(),
                node_type: module_name(m).to_owned(),
                x: coord("x"),
                y: coord("y"),
                disabled: m.get("disabled").and_then(Value::as_bool).unwrap_or(false),
                trigger: top && is_trigger(m, i == 0, instant),
            });
            if let Some(from) = previous.take() {
                edges.push(GraphEdge {
                    from,
                    to: label.clone(),
                    kind: "main".into(),
                    output: 0,
                });
            }
            for (r, route) in m
                .get("routes")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .enumerate()
            {
                let Some(flow) = route.get("flow").and_then(Value::as_array) else {
                    continue;
                };
                if let Some(first) = flow.first() {
                    edges.push(GraphEdge {
                        from: label.clone(),
                        to: name(first),
                        kind: "main".into(),
                        output: r,
                    });
                }
                walk(name, flow, instant, false, nodes, edges);
            }
            if let Some(handlers) = m.get("onerror").and_then(Value::as_array) {
                if let Some(first) = handlers.first() {
                    edges.push(GraphEdge {
                        from: label.clone(),
                        to: name(first),
                        kind: "error".into(),
                        output: 0,
                    });
                }
                walk(name, handlers, instant, false, nodes, edges);
            }
            previous = Some(label);
        }
    }
    let mut nodes = Vec::new();
    let mut edges = Vec::new();
    if let Some(flow) = top_flow(scenario) {
        walk(
            name,
            flow,
            is_instant(scenario),
            true,
            &mut nodes,
            &mut edges,
        );
    }
    Graph { nodes, edges }
}

/// A module's name in diffs: `app:action [id]`, which a relabelling on the canvas does not change
/// (the label is the designer's, not content).
fn stable_name(module: &Value) -> String {
    format!("{} [{}]", module_name(module), module_id(module))
}

/// A module's `id` as text (a number in Make's blueprints).
fn module_id(module: &Value) -> String {
    match module.get("id") {
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
        None => String::new(),
    }
}

/// The scenario in the shape of an n8n workflow, for the structural diff
/// ([`crate::diff::diff`]): each module a node named by its kind and id (its parameters without the
/// team's references, its mapper, filter, version…; no position or designer cache), the graph's
/// edges as connections, and the schedule and scenario settings as `settings`. Routes and error
/// handlers are nodes of their own, linked by edges.
pub fn diff_view(scenario: &Value) -> Value {
    let nodes: Vec<Value> = modules(scenario)
        .into_iter()
        .map(|m| {
            let mut node = match normalize_module(m) {
                Value::Object(o) => o,
                _ => Map::new(),
            };
            for key in ["id", "module", "routes", "onerror"] {
                node.remove(key);
            }
            node.insert("name".to_owned(), Value::String(stable_name(m)));
            node.insert("type".to_owned(), Value::String(module_name(m).to_owned()));
            Value::Object(node)
        })
        .collect();
    let mut connections = Map::new();
    for edge in graph_named(scenario, stable_name).edges {
        let outputs = connections
            .entry(edge.from.clone())
            .or_insert_with(|| Value::Object(Map::new()))
            .as_object_mut()
            .and_then(|by_kind| {
                by_kind
                    .entry(edge.kind.clone())
                    .or_insert_with(|| Value::Array(Vec::new()))
                    .as_array_mut()
            });
        if let Some(outputs) = outputs {
            while outputs.len() <= edge.output {
                outputs.push(Value::Array(Vec::new()));
            }
            if let Some(targets) = outputs[edge.output].as_array_mut() {
                targets.push(serde_json::json!({"node": edge.to, "type": edge.kind, "index": 0}));
            }
        }
    }
    let normalized = normalize(scenario);
    let mut settings = Map::new();
    if let Some(s) = normalized.get("scheduling") {
        settings.insert("scheduling".to_owned(), s.clone());
    }
    if let Some(meta) = normalized.get("blueprint").and_then(|b| b.get("metadata")) {
        for (k, v) in meta.as_object().into_iter().flatten() {
            settings.insert(k.clone(), v.clone());
        }
    }
    let mut out = Map::new();
    for key in ["name", "description"] {
        if let Some(v) = normalized.get(key) {
            out.insert(key.to_owned(), v.clone());
        }
    }
    out.insert("nodes".to_owned(), Value::Array(nodes));
    out.insert("connections".to_owned(), Value::Object(connections));
    out.insert("settings".to_owned(), Value::Object(settings));
    Value::Object(out)
}

/// Whether a parameter of `module` is a reference to something its team owns other than a
/// connection (which promotions remap): webhooks and keys.
fn is_team_owned(gateway: bool, key: &str) -> bool {
    key != CONNECTION_PARAM && (TEAM_REFERENCES.contains(&key) || (gateway && key == "hook"))
}

/// Whether a module is a gateway (webhook) module, whose `hook` parameter is its team's.
fn is_gateway(module: &Value) -> bool {
    module_name(module).starts_with("gateway:")
}

/// `scenario` with every module's webhook and key references taken from the module of the same
/// id and kind in `target` (the copy it replaces in another team), or removed where the target
/// has none: a promotion must not point the target at the source team's webhooks.
pub fn with_team_references_of(scenario: &Value, target: &Value) -> Value {
    let theirs: HashMap<(String, String), Map<String, Value>> = modules(target)
        .into_iter()
        .filter_map(|m| {
            let params = m.get("parameters")?.as_object()?;
            let owned: Map<String, Value> = params
                .iter()
                .filter(|(k, _)| is_team_owned(is_gateway(m), k))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            m.get("id")?;
            Some((module_key(m), owned))
        })
        .collect();
    let mut out = scenario.clone();
    for_each_module_mut(&mut out, &mut |m| {
        let key = module_key(m);
        let gateway = is_gateway(m);
        if let Some(params) = m.get_mut("parameters").and_then(Value::as_object_mut) {
            params.retain(|k, _| !is_team_owned(gateway, k));
            if let Some(owned) = theirs.get(&key) {
                params.extend(owned.clone());
            }
        }
    });
    out
}

/// `scenario` without webhook and key references (for a new copy in another team).
pub fn without_team_references(scenario: &Value) -> Value {
    with_team_references_of(scenario, &Value::Null)
}

/// A connection reference: the module's connection id, and what the designer cached about it
/// (`metadata.restore.parameters.__IMTCONN__`: `label`, `data.connection` = the connection type).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectionRef {
    pub module: String,
    pub id: String,
    pub label: Option<String>,
    /// The connection type (`google`, `slack2`, …), else the module's app.
    pub connection_type: String,
}

/// A connection of a team as the catalog lists it: its type (Make's `accountName`, what the
/// designer caches as `data.connection`) and its name (what the designer shows as its label).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KnownConnection {
    pub connection_type: String,
    pub name: String,
}

/// Connections as `(provider id, type, name)` rows, by provider id.
pub fn known_by_id(
    rows: impl IntoIterator<Item = (String, String, String)>,
) -> HashMap<String, KnownConnection> {
    rows.into_iter()
        .map(|(id, connection_type, name)| {
            (
                id,
                KnownConnection {
                    connection_type,
                    name,
                },
            )
        })
        .collect()
}

/// A module's connection reference from what the designer cached alone ([`connection_ref_in`]
/// with no known connections).
pub fn connection_ref(module: &Value) -> Option<ConnectionRef> {
    connection_ref_in(module, &HashMap::new())
}

/// A module's connection reference. Its type and label are the designer's cache where it has
/// them; otherwise the connection of that id in `known` (the module's team's connections by
/// id) says them; a connection unknown there too takes the module's app as its type (which a
/// connection type seldom is: `google-sheets` modules use `google` connections) and no label.
pub fn connection_ref_in(
    module: &Value,
    known: &HashMap<String, KnownConnection>,
) -> Option<ConnectionRef> {
    let id = connection_id(module)?;
    let restore = module
        .get("metadata")
        .and_then(|m| m.get("restore"))
        .and_then(|r| r.get("parameters"))
        .and_then(|p| p.get(CONNECTION_PARAM));
    let cached = |value: Option<&Value>| {
        value
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
    };
    let listed = known.get(&id);
    let label = cached(restore.and_then(|r| r.get("label")))
        .or_else(|| listed.map(|c| c.name.clone()).filter(|n| !n.is_empty()));
    let connection_type = cached(
        restore
            .and_then(|r| r.get("data"))
            .and_then(|d| d.get("connection")),
    )
    .or_else(|| {
        listed
            .map(|c| c.connection_type.clone())
            .filter(|t| !t.is_empty())
    })
    .unwrap_or_else(|| app(module_name(module)).to_owned());
    Some(ConnectionRef {
        module: module_label(module),
        id,
        label,
        connection_type,
    })
}

/// A module's connection id (`parameters.__IMTCONN__`, a number or a string) as text.
fn connection_id(module: &Value) -> Option<String> {
    match module.get("parameters")?.get(CONNECTION_PARAM)? {
        Value::Number(n) => Some(n.to_string()),
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        _ => None,
    }
}

/// What a module holds about its connection: the `__IMTCONN__` parameter and the designer's
/// cache of it (`metadata.restore.parameters.__IMTCONN__`), to be put on another module.
#[derive(Debug, Clone, PartialEq)]
pub struct ModuleConnection {
    pub id: Value,
    pub cache: Option<Value>,
}

/// Each module's connection in `scenario`, by the module's id and kind (how a copy of the
/// scenario in another team is matched to it, as [`with_team_references_of`] does).
pub fn connections_by_module(scenario: &Value) -> HashMap<(String, String), ModuleConnection> {
    modules(scenario)
        .into_iter()
        .filter_map(|m| {
            m.get("id")?;
            let id = m.get("parameters")?.get(CONNECTION_PARAM)?;
            if id.is_null() || id.as_str().is_some_and(str::is_empty) {
                return None;
            }
            Some((
                module_key(m),
                ModuleConnection {
                    id: id.clone(),
                    cache: m
                        .pointer("/metadata/restore/parameters/__IMTCONN__")
                        .cloned(),
                },
            ))
        })
        .collect()
}

/// A module's id and kind, which identify it across copies of a scenario.
pub fn module_key(module: &Value) -> (String, String) {
    (
        module.get("id").map(Value::to_string).unwrap_or_default(),
        module_name(module).to_owned(),
    )
}

/// Puts `connection` on `module` (its id, and the designer's cache of it if it has one), or
/// with `None` leaves the module without a connection, to be chosen in Make.
pub fn set_connection(module: &mut Value, connection: Option<&ModuleConnection>) {
    if let Some(params) = module.get_mut("parameters").and_then(Value::as_object_mut) {
        match connection {
            Some(c) => {
                params.insert(CONNECTION_PARAM.to_owned(), c.id.clone());
            }
            None => {
                params.remove(CONNECTION_PARAM);
            }
        }
    }
    // The designer's cache describes the connection the module has: the new one's, or none.
    if let Some(restore) = module
        .pointer_mut("/metadata/restore/parameters")
        .and_then(Value::as_object_mut)
    {
        restore.remove(CONNECTION_PARAM);
    }
    if let Some(cache) = connection.and_then(|c| c.cache.clone())
        && let Some(restore) = object_at(module, &["metadata", "restore", "parameters"])
    {
        restore.insert(CONNECTION_PARAM.to_owned(), cache);
    }
}

/// The object at `path` under `value`, made (empty) where missing; `None` where something
/// other than an object is in the way.
fn object_at<'a>(value: &'a mut Value, path: &[&str]) -> Option<&'a mut Map<String, Value>> {
    let mut at = value;
    for key in path {
        at = at
            .as_object_mut()?
            .entry(*key)
            .or_insert_with(|| Value::Object(Map::new()));
    }
    at.as_object_mut()
}

/// The app of `app:action`.
pub fn app(module: &str) -> &str {
    module.split_once(':').map_or(module, |(a, _)| a)
}

/// Problems that make a scenario unfit to write (the promotion pre-flight): no name, no flow,
/// modules that are not objects or lack `id`/`module`, duplicate module ids.
pub fn preflight_problems(scenario: &Value) -> Vec<String> {
    let mut problems = Vec::new();
    if scenario
        .get("name")
        .and_then(Value::as_str)
        .is_none_or(|n| n.trim().is_empty())
    {
        problems.push("the scenario has no name".to_owned());
    }
    if top_flow(scenario).is_none() {
        problems.push("the blueprint's `flow` is not an array".to_owned());
        return problems;
    }
    let mut seen = std::collections::HashSet::new();
    for (i, m) in modules(scenario).into_iter().enumerate() {
        let position = i + 1;
        if !m.is_object() {
            problems.push(format!("module {position} is not a JSON object"));
            continue;
        }
        if module_name(m).split_once(':').is_none() {
            problems.push(format!(
                "module {position} has no `module` of the form app:action"
            ));
        }
        match m.get("id") {
            Some(Value::Number(n)) => {
                if !seen.insert(n.to_string()) {
                    problems.push(format!("module id {n} is used twice"));
                }
            }
            _ => problems.push(format!("module {position} has no numeric `id`")),
        }
    }
    problems
}

#[cfg(test)]
pub(crate) mod tests {
    use serde_json::json;

    use super::*;

    /// A scenario as the adapter returns it: webhook → router → (sheets | slack), an error
    /// handler on the sheets module.
    pub(crate) fn sample() -> Value {
        let sheets = json!({
            "id": 3, "module": "google-sheets:addRow", "version": 2,
            "parameters": {"__IMTCONN__": 5501, "mode": "select"},
            "mapper": {"values": {"0": "{{1.order}}"}},
            "metadata": {
                "designer": {"x": 600, "y": -150, "name": "Log order"},
                "restore": {"parameters": {"__IMTCONN__": {
                    "label": "Sales Google", "data": {"scoped": "true", "connection": "google"}}}}
            },
            "onerror": [{"id": 5, "module": "builtin:Ignore", "version": 1,
                         "metadata": {"designer": {"x": 900, "y": -150}}}]
        });
        let slack = json!({
            "id": 4, "module": "slack:CreateMessage", "version": 4,
            "parameters": {"__IMTCONN__": "7702"}, "mapper": {"text": "{{1.order}}"},
            "metadata": {"designer": {"x": 600, "y": 150}}
        });
        let router = json!({
            "id": 2, "module": "builtin:BasicRouter", "version": 1, "mapper": null,
            "metadata": {"designer": {"x": 300, "y": 0}},
            "routes": [{"flow": [sheets]}, {"flow": [slack]}]
        });
        let hook = json!({
            "id": 1, "module": "gateway:CustomWebHook", "version": 1,
            "parameters": {"hook": 881, "maxResults": 1}, "mapper": {},
            "metadata": {"designer": {"x": 0, "y": 0}}
        });
        json!({
            "id": "17", "name": "Orders", "active": true, "teamId": 42, "folderId": null,
            "createdAt": "2026-01-01T00:00:00.000Z", "updatedAt": "2026-01-02T03:04:05.000Z",
            "description": "", "isPaused": false,
            "scheduling": {"type": "immediately"},
            "blueprint": {
                "name": "Orders",
                "flow": [hook, router],
                "metadata": {"instant": true, "version": 1,
                             "scenario": {"roundtrips": 1, "maxErrors": 3, "autoCommit": true},
                             "designer": {"orphans": []}, "zone": "eu1.make.com"}
            }
        })
    }

    #[test]
    fn a_scenario_is_told_from_a_workflow_by_its_blueprint() {
        assert!(is_scenario(&sample()));
        assert!(!is_scenario(&json!({"name": "w", "nodes": []})));
        assert!(!is_scenario(&json!({"blueprint": "not parsed"})));
    }

    #[test]
    fn modules_are_walked_through_routes_and_error_handlers() {
        let s = sample();
        let ids: Vec<i64> = modules(&s)
            .iter()
            .filter_map(|m| m.get("id").and_then(Value::as_i64))
            .collect();
        assert_eq!(ids, vec![1, 2, 3, 5, 4]);
        assert_eq!(module_label(modules(&s)[2]), "Log order [3]");
        assert_eq!(module_label(modules(&s)[4]), "slack:CreateMessage [4]");
    }

    #[test]
    fn the_normalised_form_drops_layout_and_team_references_but_keeps_order() {
        let n = normalize(&sample());
        assert_eq!(n["name"], "Orders");
        assert!(
            n.get("description").is_none(),
            "an empty description is no content"
        );
        assert!(n.get("id").is_none() && n.get("active").is_none() && n.get("teamId").is_none());
        let flow = &n["blueprint"]["flow"];
        assert_eq!(
            flow[0]["parameters"],
            json!({"maxResults": 1}),
            "the hook id is the team's"
        );
        assert!(flow[0].get("metadata").is_none());
        let sheets = &flow[1]["routes"][0]["flow"][0];
        assert_eq!(
            sheets["parameters"],
            json!({"mode": "select", "__IMTCONN__": {"type": "google", "label": "Sales Google"}}),
            "the connection by type and label, not by this team's id"
        );
        assert_eq!(sheets["onerror"][0]["module"], "builtin:Ignore");
        assert_eq!(
            n["blueprint"]["metadata"],
            json!({"instant": true, "scenario": {"roundtrips": 1, "maxErrors": 3, "autoCommit": true}})
        );
        assert!(flow[1].get("mapper").is_none(), "nulls are dropped");
    }

    #[test]
    fn the_storage_form_keeps_the_whole_blueprint() {
        let s = storage_form(&sample());
        assert_eq!(s["blueprint"]["flow"][0]["parameters"]["hook"], 881);
        assert_eq!(s["blueprint"]["metadata"]["zone"], "eu1.make.com");
        assert!(s.get("id").is_none() && s.get("updatedAt").is_none());
        assert_eq!(s["scheduling"], json!({"type": "immediately"}));
        assert_eq!(s["teamId"], 42, "whose ids the blueprint holds");
        assert_eq!(team_id(&s), Some(42));
        assert_eq!(team_id(&json!({"teamId": "7"})), Some(7));
        let mut unknown = sample();
        unknown["teamId"] = Value::Null;
        assert!(storage_form(&unknown).get("teamId").is_none());
        assert_eq!(
            normalize(&s),
            normalize(&sample()),
            "the team is not content"
        );
    }

    #[test]
    fn connection_references_carry_the_designers_label_and_type() {
        let s = sample();
        let refs: Vec<ConnectionRef> = modules(&s).into_iter().filter_map(connection_ref).collect();
        assert_eq!(
            refs,
            vec![
                ConnectionRef {
                    module: "Log order [3]".into(),
                    id: "5501".into(),
                    label: Some("Sales Google".into()),
                    connection_type: "google".into(),
                },
                ConnectionRef {
                    module: "slack:CreateMessage [4]".into(),
                    id: "7702".into(),
                    label: None,
                    connection_type: "slack".into(),
                },
            ]
        );
    }

    #[test]
    fn what_the_designer_did_not_cache_comes_from_the_teams_connections() {
        let s = sample();
        let slack = modules(&s)[4];
        let known = HashMap::from([
            (
                "7702".to_owned(),
                KnownConnection {
                    connection_type: "slack2".into(),
                    name: "Ops Slack".into(),
                },
            ),
            (
                "5501".to_owned(),
                KnownConnection {
                    connection_type: "other".into(),
                    name: "Renamed since".into(),
                },
            ),
        ]);
        let resolved = connection_ref_in(slack, &known).unwrap_or_else(|| panic!("no ref"));
        assert_eq!(
            (resolved.connection_type.as_str(), resolved.label.as_deref()),
            ("slack2", Some("Ops Slack"))
        );
        let sheets = modules(&s)[2];
        assert_eq!(
            connection_ref_in(sheets, &known),
            connection_ref(sheets),
            "the designer's cache comes first"
        );
        let unknown = connection_ref_in(slack, &HashMap::new());
        assert_eq!(
            unknown.map(|r| (r.connection_type, r.label)),
            Some(("slack".to_owned(), None)),
            "an id the team does not list falls back to the app"
        );
    }

    #[test]
    fn a_connection_is_moved_between_copies_with_its_designer_cache_or_removed() {
        let s = sample();
        let theirs = connections_by_module(&s);
        let sheets_key = ("3".to_owned(), "google-sheets:addRow".to_owned());
        assert_eq!(theirs.len(), 2);
        let mut fresh = json!({"id": 3, "module": "google-sheets:addRow",
                               "parameters": {"__IMTCONN__": 1, "mode": "select"},
                               "metadata": {"designer": {"x": 1, "y": 1}}});
        set_connection(&mut fresh, theirs.get(&sheets_key));
        assert_eq!(fresh["parameters"]["__IMTCONN__"], 5501);
        assert_eq!(
            fresh["metadata"]["restore"]["parameters"]["__IMTCONN__"]["label"],
            "Sales Google"
        );
        set_connection(&mut fresh, None);
        assert_eq!(fresh["parameters"], json!({"mode": "select"}));
        assert_eq!(fresh["metadata"]["restore"]["parameters"], json!({}));
        assert!(connection_ref(&fresh).is_none());
    }

    #[test]
    fn the_graph_follows_flows_routes_and_error_handlers() {
        let g = graph(&sample());
        let names: Vec<&str> = g.nodes.iter().map(|n| n.name.as_str()).collect();
        assert_eq!(
            names,
            vec![
                "gateway:CustomWebHook [1]",
                "builtin:BasicRouter [2]",
                "Log order [3]",
                "builtin:Ignore [5]",
                "slack:CreateMessage [4]"
            ]
        );
        assert!(g.nodes[0].trigger && !g.nodes[1].trigger);
        assert_eq!((g.nodes[2].x, g.nodes[2].y), (600.0, -150.0));
        let edges: Vec<(&str, &str, &str, usize)> = g
            .edges
            .iter()
            .map(|e| (e.from.as_str(), e.to.as_str(), e.kind.as_str(), e.output))
            .collect();
        assert_eq!(
            edges,
            vec![
                (
                    "gateway:CustomWebHook [1]",
                    "builtin:BasicRouter [2]",
                    "main",
                    0
                ),
                ("builtin:BasicRouter [2]", "Log order [3]", "main", 0),
                ("Log order [3]", "builtin:Ignore [5]", "error", 0),
                (
                    "builtin:BasicRouter [2]",
                    "slack:CreateMessage [4]",
                    "main",
                    1
                ),
            ]
        );
    }

    #[test]
    fn a_copy_in_another_team_keeps_that_teams_webhook_and_never_the_sources() {
        let source = sample();
        let mut target = sample();
        target["blueprint"]["flow"][0]["parameters"]["hook"] = json!(990);
        let written = with_team_references_of(&source, &target);
        assert_eq!(written["blueprint"]["flow"][0]["parameters"]["hook"], 990);
        assert_eq!(
            written["blueprint"]["flow"][0]["parameters"]["maxResults"],
            1
        );
        let sheets = &written["blueprint"]["flow"][1]["routes"][0]["flow"][0]["parameters"];
        assert_eq!(
            sheets["__IMTCONN__"], 5501,
            "connections are the remap's business"
        );
        let fresh = without_team_references(&source);
        assert!(
            fresh["blueprint"]["flow"][0]["parameters"]
                .get("hook")
                .is_none()
        );
        assert_eq!(normalize(&fresh), normalize(&source), "not content");
    }

    #[test]
    fn preflight_names_what_make_would_refuse() {
        assert!(preflight_problems(&sample()).is_empty());
        let mut bad = sample();
        bad["name"] = json!(" ");
        bad["blueprint"]["flow"][1]["routes"][1]["flow"][0]["id"] = json!(3);
        bad["blueprint"]["flow"][0]["module"] = json!("webhook");
        assert_eq!(
            preflight_problems(&bad),
            vec![
                "the scenario has no name".to_owned(),
                "module 1 has no `module` of the form app:action".to_owned(),
                "module id 3 is used twice".to_owned(),
            ]
        );
        let mut none = sample();
        none["blueprint"]["flow"] = json!({});
        assert!(!is_scenario(&none));
    }

    #[test]
    fn any_tree_converts_to_the_same_value() {
        let s = sample();
        let text = s.to_string();
        let json = crate::json::Json::parse(&text).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(to_value(&json), s);
    }
}
