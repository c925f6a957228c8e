//! Pure logic over a provider's workflow JSON (n8n's shape): the normalised form and its
//! content hash (the basis of drift and diff), a summary for the catalog, the graph the UI
//! draws, complexity (WF-005) and the credentials a workflow references.
//!
//! Normalised form: only what the workflow *does*. Removed: ids and version ids, timestamps,
//! activation and archive state, tags, sharing, `meta`, `staticData` (runtime state), `pinData`
//! (test data), node ids, webhook ids and credential ids (they differ per instance; the
//! credential's type and name are kept), node positions (moving a node on the canvas is not a
//! change), null values and settings whose value is n8n's `"DEFAULT"`. Nodes are sorted by
//! name; object keys are sorted (serde_json's map is ordered). The content hash is the SHA-256
//! of the normalised form's compact JSON, in hex.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};

use serde::Serialize;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use crate::json::Doc;

const WORKFLOW_KEEP: [&str; 5] = ["name", "nodes", "connections", "settings", "description"];
const NODE_DROP: [&str; 4] = ["id", "webhookId", "position", "notesInFlow"];

pub(crate) fn strip_nulls(v: &Value) -> Value {
    match v {
        Value::Object(o) => Value::Object(
            o.iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (k.clone(), strip_nulls(v)))
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.iter().map(strip_nulls).collect()),
        other => other.clone(),
    }
}

fn normalize_node(node: &Value) -> Value {
    let Some(o) = node.as_object() else {
        return strip_nulls(node);
    };
    let mut out = Map::new();
    for (k, v) in o {
        if NODE_DROP.contains(&k.as_str()) || v.is_null() {
            continue;
        }
        if k == "credentials" {
            // {type: {id, name}} -> {type: {name}}
            let creds: Map<String, Value> = v
                .as_object()
                .map(|c| {
                    c.iter()
                        .map(|(t, r)| {
                            let name = r.get("name").cloned().unwrap_or(Value::Null);
                            (t.clone(), serde_json::json!({ "name": name }))
                        })
                        .collect()
                })
                .unwrap_or_default();
            out.insert(k.clone(), Value::Object(creds));
            continue;
        }
        out.insert(k.clone(), strip_nulls(v));
    }
    Value::Object(out)
}

/// `v` with every object's keys in sorted order, whatever map serde_json was built with (its
/// `preserve_order` feature, which any crate in a build can switch on, keeps insertion order):
/// hashes and stored files must not depend on it.
pub fn sort_keys(v: Value) -> Value {
    match v {
        Value::Object(o) => {
            let mut entries: Vec<(String, Value)> = o.into_iter().collect();
            entries.sort_by(|a, b| a.0.cmp(&b.0));
            Value::Object(
                entries
                    .into_iter()
                    .map(|(k, v)| (k, sort_keys(v)))
                    .collect(),
            )
        }
        Value::Array(a) => Value::Array(a.into_iter().map(sort_keys).collect()),
        other => other,
    }
}

/// The normalised form of a workflow (see the module docs).
pub fn normalize(workflow: &Value) -> Value {
    if crate::make::is_scenario(workflow) {
        return sort_keys(crate::make::normalize(workflow));
    }
    sort_keys(normalize_unsorted(workflow))
}

fn normalize_unsorted(workflow: &Value) -> Value {
    let mut out = Map::new();
    for key in WORKFLOW_KEEP {
        let Some(v) = workflow.get(key) else { continue };
        if v.is_null() {
            continue;
        }
        let v = match key {
            "nodes" => {
                let mut nodes: Vec<Value> = v
                    .as_array()
                    .map(|a| a.iter().map(normalize_node).collect())
                    .unwrap_or_default();
                nodes.sort_by(|a, b| {
                    let name = |n: &Value| {
                        n.get("name")
                            .and_then(Value::as_str)
                            .unwrap_or("")
                            .to_owned()
                    };
                    name(a).cmp(&name(b))
                });
                Value::Array(nodes)
            }
            "settings" => Value::Object(
                v.as_object()
                    .map(|s| {
                        s.iter()
                            .filter(|(_, v)| !v.is_null() && v.as_str() != Some("DEFAULT"))
                            .map(|(k, v)| (k.clone(), strip_nulls(v)))
                            .collect()
                    })
                    .unwrap_or_default(),
            ),
            _ => strip_nulls(v),
        };
        out.insert(key.to_owned(), v);
    }
    Value::Object(out)
}

/// The content hash: SHA-256 (hex) of the normalised form.
pub fn content_hash(workflow: &Value) -> String {
    if crate::make::is_scenario(workflow) {
        return sha256_hex(normalize(workflow).to_string().as_bytes());
    }
    let mut buf = Vec::new();
    canonical::normalized(&mut buf, workflow);
    sha256_hex(&buf)
}

/// The storage form (what backups write and restores read): the workflow's content as n8n
/// needs it to recreate the workflow — node ids, positions, webhook ids and credential
/// references kept, node order kept — without what is volatile per instance (the workflow's
/// id, version ids, timestamps, activation and archive state, tags, sharing, `meta`,
/// `staticData`, `pinData`), null values and `"DEFAULT"` settings. Keys sorted.
pub fn storage_form(workflow: &Value) -> Value {
    if crate::make::is_scenario(workflow) {
        return sort_keys(crate::make::storage_form(workflow));
    }
    sort_keys(storage_form_unsorted(workflow))
}

fn storage_form_unsorted(workflow: &Value) -> Value {
    let mut out = Map::new();
    for key in WORKFLOW_KEEP {
        let Some(v) = workflow.get(key) else { continue };
        if v.is_null() {
            continue;
        }
        let v = if key == "settings" {
            Value::Object(
                v.as_object()
                    .map(|s| {
                        s.iter()
                            .filter(|(_, v)| !v.is_null() && v.as_str() != Some("DEFAULT"))
                            .map(|(k, v)| (k.clone(), strip_nulls(v)))
                            .collect()
                    })
                    .unwrap_or_default(),
            )
        } else {
            strip_nulls(v)
        };
        out.insert(key.to_owned(), v);
    }
    Value::Object(out)
}

fn sha256_hex(bytes: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let digest = Sha256::digest(bytes);
    let mut out = String::with_capacity(64);
    for b in digest {
        out.push(char::from(HEX[usize::from(b >> 4)]));
        out.push(char::from(HEX[usize::from(b & 0xf)]));
    }
    out
}

/// The compact JSON of [`normalize`] and [`storage_form`], written straight from the workflow
/// without building either: syncs hash every workflow twice, and building the forms (two
/// copies of the tree, each re-sorted) cost more than reading the workflow. Byte for byte what
/// `normalize(w).to_string()` and `storage_form(w).to_string()` give (tests pin it); those
/// stay the definition.
mod canonical {
    use crate::json::Doc;

    use super::{NODE_DROP, WORKFLOW_KEEP};

    /// `normalize(workflow)`, compact.
    pub fn normalized<D: Doc>(out: &mut Vec<u8>, workflow: &D) {
        top(out, workflow, true);
    }

    /// `storage_form(workflow)`, compact.
    pub fn storage<D: Doc>(out: &mut Vec<u8>, workflow: &D) {
        top(out, workflow, false);
    }

    fn top<D: Doc>(out: &mut Vec<u8>, workflow: &D, normalized: bool) {
        let mut keys: Vec<(&str, &D)> = WORKFLOW_KEEP
            .into_iter()
            .filter_map(|k| workflow.get(k).filter(|v| !v.is_null()).map(|v| (k, v)))
            .collect();
        keys.sort_unstable_by_key(|(k, _)| *k);
        out.push(b'{');
        for (i, (key, v)) in keys.into_iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            string(out, key);
            out.push(b':');
            match key {
                "nodes" if normalized => {
                    let mut nodes: Vec<&D> =
                        v.as_array().map(|a| a.iter().collect()).unwrap_or_default();
                    nodes.sort_by(|a, b| node_name(*a).cmp(node_name(*b)));
                    out.push(b'[');
                    for (j, n) in nodes.into_iter().enumerate() {
                        if j > 0 {
                            out.push(b',');
                        }
                        node(out, n);
                    }
                    out.push(b']');
                }
                "settings" => {
                    let entries = v.members().map(|s| {
                        s.filter(|(_, v)| !v.is_null() && v.as_str() != Some("DEFAULT"))
                            .collect::<Vec<_>>()
                    });
                    object(out, entries.unwrap_or_default(), |out, _, v| {
                        sorted(out, v, true);
                    });
                }
                _ => sorted(out, v, true),
            }
        }
        out.push(b'}');
    }

    fn node_name<D: Doc>(n: &D) -> &str {
        n.get("name").and_then(D::as_str).unwrap_or("")
    }

    /// A node as `normalize_node` gives it.
    fn node<D: Doc>(out: &mut Vec<u8>, node: &D) {
        let Some(members) = node.members() else {
            return sorted(out, node, true);
        };
        let entries = members
            .filter(|(k, v)| !NODE_DROP.contains(k) && !v.is_null())
            .collect();
        object(out, entries, |out, k, v| {
            if k == "credentials" {
                // {type: {id, name}} -> {type: {name}}
                let refs = v.members().map(|c| c.collect()).unwrap_or_default();
                object(out, refs, |out, _, r| {
                    out.extend_from_slice(b"{\"name\":");
                    match r.get("name") {
                        Some(name) => sorted(out, name, false),
                        None => out.extend_from_slice(b"null"),
                    }
                    out.push(b'}');
                });
            } else {
                sorted(out, v, true);
            }
        });
    }

    /// `v` with sorted keys (and without null members when `strip`), as `strip_nulls` then
    /// `sort_keys` give it.
    fn sorted<D: Doc>(out: &mut Vec<u8>, v: &D, strip: bool) {
        if let Some(members) = v.members() {
            let entries = members.filter(|(_, v)| !(strip && v.is_null())).collect();
            object(out, entries, |out, _, v| sorted(out, v, strip));
        } else if let Some(items) = v.as_array() {
            out.push(b'[');
            for (i, e) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                sorted(out, e, strip);
            }
            out.push(b']');
        } else {
            v.write_scalar(out);
        }
    }

    /// An object of these members, keys sorted, each value written by `value`.
    fn object<'a, D: Doc>(
        out: &mut Vec<u8>,
        mut entries: Vec<(&'a str, &'a D)>,
        mut value: impl FnMut(&mut Vec<u8>, &str, &'a D),
    ) {
        entries.sort_unstable_by(|a, b| a.0.cmp(b.0));
        out.push(b'{');
        for (i, (k, v)) in entries.into_iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            string(out, k);
            out.push(b':');
            value(out, k, v);
        }
        out.push(b'}');
    }

    /// A string exactly as serde_json writes it.
    fn string(out: &mut Vec<u8>, s: &str) {
        // Writing to a Vec cannot fail.
        let _ = serde_json::to_writer(&mut *out, s);
    }
}

/// What the catalog keeps in columns.
#[derive(Debug, Clone, PartialEq)]
pub struct Summary {
    pub id: String,
    pub name: String,
    pub active: bool,
    pub archived: bool,
    pub tags: Vec<String>,
    pub node_count: i32,
    pub updated_at: Option<chrono::DateTime<chrono::Utc>>,
    pub content_hash: String,
    /// SHA-256 of the storage form: changes with layout and node ids too.
    pub storage_hash: String,
}

pub fn summarize(workflow: &Value) -> Option<Summary> {
    summarize_doc(workflow)
}

/// [`summarize`] of a workflow in any tree (a sync reads pages as [`crate::json::Json`]).
pub fn summarize_doc<D: Doc>(workflow: &D) -> Option<Summary> {
    if crate::make::is_scenario(workflow) {
        return summarize_scenario(&crate::make::to_value(workflow));
    }
    let id = workflow.get("id")?.as_id()?;
    let tags = workflow
        .get("tags")
        .and_then(D::as_array)
        .map(|t| {
            t.iter()
                .filter_map(|t| t.get("name").and_then(D::as_str).or_else(|| t.as_str()))
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default();
    let mut buf = Vec::new();
    canonical::normalized(&mut buf, workflow);
    let content_hash = sha256_hex(&buf);
    buf.clear();
    canonical::storage(&mut buf, workflow);
    Some(Summary {
        id,
        name: workflow
            .get("name")
            .and_then(D::as_str)
            .unwrap_or("")
            .to_owned(),
        active: workflow.get("active").and_then(D::as_bool).unwrap_or(false),
        archived: workflow
            .get("isArchived")
            .and_then(D::as_bool)
            .unwrap_or(false),
        tags,
        node_count: i32::try_from(nodes(workflow).len()).unwrap_or(i32::MAX),
        updated_at: workflow
            .get("updatedAt")
            .and_then(D::as_str)
            .and_then(|s| chrono::DateTime::parse_from_rfc3339(s).ok())
            .map(|t| t.with_timezone(&chrono::Utc)),
        content_hash,
        storage_hash: sha256_hex(&buf),
    })
}

/// [`summarize`] of a Make scenario: modules count as nodes; Make has no tags or archive.
fn summarize_scenario(scenario: &Value) -> Option<Summary> {
    let id = scenario.get("id")?.as_id()?;
    Some(Summary {
        id,
        name: scenario
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned(),
        active: scenario
            .get("active")
            .and_then(Value::as_bool)
            .unwrap_or(false),
        archived: false,
        tags: Vec::new(),
        node_count: i32::try_from(crate::make::modules(scenario).len()).unwrap_or(i32::MAX),
        updated_at: scenario
            .get("updatedAt")
            .and_then(Value::as_str)
            .and_then(|s| chrono::DateTime::parse_from_rfc3339(s).ok())
            .map(|t| t.with_timezone(&chrono::Utc)),
        content_hash: content_hash(scenario),
        storage_hash: sha256_hex(storage_form(scenario).to_string().as_bytes()),
    })
}

fn nodes<D: Doc>(workflow: &D) -> &[D] {
    workflow.get("nodes").and_then(D::as_array).unwrap_or(&[])
}

fn node_type(node: &Value) -> &str {
    node.get("type").and_then(Value::as_str).unwrap_or("")
}

/// Whether a node type starts executions (n8n: `…Trigger` types and the webhook node).
pub fn is_trigger(node_type: &str) -> bool {
    node_type.ends_with("Trigger") || node_type == "n8n-nodes-base.webhook"
}

/// A credential reference in a node.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, utoipa::ToSchema)]
pub struct CredentialRef {
    pub id: Option<String>,
    pub name: String,
    #[serde(rename = "type")]
    pub cred_type: String,
    pub node: String,
}

pub fn credential_refs<D: Doc>(workflow: &D) -> Vec<CredentialRef> {
    if crate::make::is_scenario(workflow) {
        return scenario_credential_refs(&crate::make::to_value(workflow), &HashMap::new());
    }
    let mut refs = Vec::new();
    for node in nodes(workflow) {
        let node_name = node.get("name").and_then(D::as_str).unwrap_or("");
        let Some(creds) = node.get("credentials").and_then(D::members) else {
            continue;
        };
        for (cred_type, r) in creds {
            refs.push(CredentialRef {
                id: r.get("id").and_then(D::as_id),
                name: r.get("name").and_then(D::as_str).unwrap_or("").to_owned(),
                cred_type: cred_type.to_owned(),
                node: node_name.to_owned(),
            });
        }
    }
    refs.sort();
    refs
}

/// [`credential_refs`], with a Make scenario's connections resolved through its team's
/// connections as the catalog lists them (`known`, by id) where the designer did not cache
/// their type or label ([`crate::make::connection_ref_in`]). An n8n workflow's references are
/// [`credential_refs`]'s.
pub fn credential_refs_in(
    workflow: &Value,
    known: &HashMap<String, crate::make::KnownConnection>,
) -> Vec<CredentialRef> {
    if crate::make::is_scenario(workflow) {
        return scenario_credential_refs(workflow, known);
    }
    credential_refs(workflow)
}

/// A scenario's connections as credential references (the label as the name), sorted.
fn scenario_credential_refs(
    scenario: &Value,
    known: &HashMap<String, crate::make::KnownConnection>,
) -> Vec<CredentialRef> {
    let mut refs: Vec<CredentialRef> = crate::make::modules(scenario)
        .into_iter()
        .filter_map(|m| crate::make::connection_ref_in(m, known))
        .map(|c| CredentialRef {
            id: Some(c.id),
            name: c.label.unwrap_or_default(),
            cred_type: c.connection_type,
            node: c.module,
        })
        .collect();
    refs.sort();
    refs
}

/// Graph data for drawing: nodes with positions, and edges between node names.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Graph {
    pub nodes: Vec<GraphNode>,
    pub edges: Vec<GraphEdge>,
}

#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct GraphNode {
    pub name: String,
    #[serde(rename = "type")]
    pub node_type: String,
    pub x: f64,
    pub y: f64,
    pub disabled: bool,
    pub trigger: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct GraphEdge {
    pub from: String,
    pub to: String,
    /// The connection type (`main`, `ai_tool`, …) and the source's output index.
    pub kind: String,
    pub output: usize,
}

fn edges(workflow: &Value) -> Vec<GraphEdge> {
    let mut out = Vec::new();
    let Some(conns) = workflow.get("connections").and_then(Value::as_object) else {
        return out;
    };
    for (from, by_kind) in conns {
        let Some(by_kind) = by_kind.as_object() else {
            continue;
        };
        for (kind, outputs) in by_kind {
            let Some(outputs) = outputs.as_array() else {
                continue;
            };
            for (output, targets) in outputs.iter().enumerate() {
                for target in targets.as_array().map_or(&[][..], Vec::as_slice) {
                    if let Some(to) = target.get("node").and_then(Value::as_str) {
                        out.push(GraphEdge {
                            from: from.clone(),
                            to: to.to_owned(),
                            kind: kind.clone(),
                            output,
                        });
                    }
                }
            }
        }
    }
    out
}

pub fn graph(workflow: &Value) -> Graph {
    if crate::make::is_scenario(workflow) {
        return crate::make::graph(workflow);
    }
    let nodes = nodes(workflow)
        .iter()
        .map(|n| {
            let pos = n.get("position").and_then(Value::as_array);
            let coord = |i: usize| {
                pos.and_then(|p| p.get(i))
                    .and_then(Value::as_f64)
                    .unwrap_or(0.0)
            };
            GraphNode {
                name: n
                    .get("name")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_owned(),
                node_type: node_type(n).to_owned(),
                x: coord(0),
                y: coord(1),
                disabled: n.get("disabled").and_then(Value::as_bool).unwrap_or(false),
                trigger: is_trigger(node_type(n)),
            }
        })
        .collect();
    Graph {
        nodes,
        edges: edges(workflow),
    }
}

/// WF-005: how complex a workflow is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Complexity {
    pub node_count: usize,
    pub edge_count: usize,
    pub trigger_count: usize,
    /// Nodes with more than one outgoing branch (IF, Switch, …).
    pub branching_nodes: usize,
    /// The longest path from a trigger, in nodes.
    pub depth: usize,
    pub code_nodes: usize,
    pub http_nodes: usize,
    pub credential_nodes: usize,
    /// low (≤ 10 nodes, no branching), medium, high (> 30 nodes or depth > 15 or > 5 branches).
    pub level: &'static str,
}

pub fn complexity(workflow: &Value) -> Complexity {
    if crate::make::is_scenario(workflow) {
        let graph = crate::make::graph(workflow);
        let modules = crate::make::modules(workflow);
        let apps = |pred: &dyn Fn(&str) -> bool| {
            modules
                .iter()
                .filter(|m| pred(crate::make::app(crate::make::module_name(m))))
                .count()
        };
        return complexity_of(
            &graph,
            apps(&|a| a == "code" || a == "javascript"),
            apps(&|a| a == "http"),
            modules
                .iter()
                .filter(|m| crate::make::connection_ref(m).is_some())
                .count(),
        );
    }
    let nodes = nodes(workflow);
    let count = |pred: &dyn Fn(&str) -> bool| nodes.iter().filter(|n| pred(node_type(n))).count();
    let code_nodes = count(&|t| {
        t.ends_with(".code") || t.ends_with(".function") || t.ends_with(".functionItem")
    });
    let http_nodes = count(&|t| t.ends_with(".httpRequest"));
    let credential_nodes = nodes
        .iter()
        .filter(|n| {
            n.get("credentials")
                .and_then(Value::as_object)
                .is_some_and(|c| !c.is_empty())
        })
        .count();
    complexity_of(&graph(workflow), code_nodes, http_nodes, credential_nodes)
}

fn complexity_of(
    graph: &Graph,
    code_nodes: usize,
    http_nodes: usize,
    credential_nodes: usize,
) -> Complexity {
    let node_count = graph.nodes.len();
    let mut outputs: HashMap<&str, BTreeSet<usize>> = HashMap::new();
    let mut next: HashMap<&str, Vec<&str>> = HashMap::new();
    for e in &graph.edges {
        outputs.entry(e.from.as_str()).or_default().insert(e.output);
        next.entry(e.from.as_str()).or_default().push(e.to.as_str());
    }
    let branching_nodes = outputs.values().filter(|o| o.len() > 1).count();
    let starts: Vec<&str> = graph
        .nodes
        .iter()
        .filter(|n| n.trigger)
        .map(|n| n.name.as_str())
        .collect();
    // Longest path by BFS levels, each node counted once (cycles cannot loop forever).
    let mut depth = 0;
    let mut seen: BTreeMap<&str, usize> = BTreeMap::new();
    let mut queue: VecDeque<(&str, usize)> = starts.iter().map(|s| (*s, 1)).collect();
    while let Some((name, d)) = queue.pop_front() {
        if seen.get(name).is_some_and(|&best| best >= d) || d > node_count {
            continue;
        }
        seen.insert(name, d);
        depth = depth.max(d);
        for to in next.get(name).map_or(&[][..], Vec::as_slice) {
            queue.push_back((to, d + 1));
        }
    }
    let level = if node_count > 30 || depth > 15 || branching_nodes > 5 {
        "high"
    } else if node_count > 10 || branching_nodes > 0 {
        "medium"
    } else {
        "low"
    };
    Complexity {
        node_count,
        edge_count: graph.edges.len(),
        trigger_count: starts.len(),
        branching_nodes,
        depth,
        code_nodes,
        http_nodes,
        credential_nodes,
        level,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn sample() -> Value {
        json!({
            "id": "w1", "name": "Orders", "active": true, "versionId": "a",
            "updatedAt": "2026-01-02T03:04:05.000Z", "tags": [{"id": "t", "name": "sales"}],
            "nodes": [
                {"id": "n1", "name": "Hook", "type": "n8n-nodes-base.webhook", "typeVersion": 2,
                 "position": [0, 0], "webhookId": "abc", "parameters": {"path": "orders"}},
                {"id": "n2", "name": "Check", "type": "n8n-nodes-base.if", "typeVersion": 2,
                 "position": [200, 0], "parameters": {}},
                {"id": "n3", "name": "Call", "type": "n8n-nodes-base.httpRequest", "typeVersion": 4,
                 "position": [400, -100], "parameters": {"url": "https://x"},
                 "credentials": {"httpBasicAuth": {"id": "c1", "name": "Shop"}}},
                {"id": "n4", "name": "Log", "type": "n8n-nodes-base.code", "typeVersion": 2,
                 "position": [400, 100], "parameters": {"jsCode": "return []"}}
            ],
            "connections": {
                "Hook": {"main": [[{"node": "Check", "type": "main", "index": 0}]]},
                "Check": {"main": [[{"node": "Call", "type": "main", "index": 0}],
                                   [{"node": "Log", "type": "main", "index": 0}]]}
            },
            "settings": {"executionOrder": "v1", "saveManualExecutions": "DEFAULT"},
            "staticData": {"lastId": 7}, "pinData": {}
        })
    }

    #[test]
    fn volatile_fields_do_not_change_the_hash() {
        let base = content_hash(&sample());
        let mut moved = sample();
        moved["id"] = json!("other");
        moved["versionId"] = json!("b");
        moved["active"] = json!(false);
        moved["updatedAt"] = json!("2027-01-01T00:00:00.000Z");
        moved["staticData"] = json!({"lastId": 99});
        moved["tags"] = json!([]);
        moved["nodes"][0]["position"] = json!([50, 50]);
        moved["nodes"][0]["id"] = json!("zz");
        moved["nodes"][2]["credentials"]["httpBasicAuth"]["id"] = json!("c9");
        moved["settings"]["saveManualExecutions"] = json!(null);
        // Node order does not matter either.
        if let Some(nodes) = moved["nodes"].as_array_mut() {
            nodes.reverse();
        }
        assert_eq!(content_hash(&moved), base);
    }

    #[test]
    fn real_changes_change_the_hash() {
        let base = content_hash(&sample());
        for change in [
            ("/nodes/2/parameters/url", json!("https://y")),
            ("/name", json!("Orders v2")),
            ("/settings/executionOrder", json!("v0")),
            (
                "/nodes/2/credentials/httpBasicAuth/name",
                json!("Other shop"),
            ),
        ] {
            let mut wf = sample();
            if let Some(slot) = wf.pointer_mut(change.0) {
                *slot = change.1.clone();
            }
            assert_ne!(content_hash(&wf), base, "{} must count", change.0);
        }
    }

    #[test]
    fn the_storage_form_keeps_what_a_restore_needs_and_hashes_to_the_same_content() {
        let stored = storage_form(&sample());
        assert_eq!(stored["nodes"][0]["position"], json!([0, 0]));
        assert_eq!(stored["nodes"][0]["webhookId"], "abc");
        assert_eq!(
            stored["nodes"][2]["credentials"]["httpBasicAuth"]["id"],
            "c1"
        );
        for volatile in [
            "id",
            "versionId",
            "active",
            "updatedAt",
            "tags",
            "staticData",
            "pinData",
        ] {
            assert!(stored.get(volatile).is_none(), "{volatile}");
        }
        assert!(stored["settings"].get("saveManualExecutions").is_none());
        assert_eq!(content_hash(&stored), content_hash(&sample()));
        let mut moved = sample();
        moved["nodes"][0]["position"] = json!([9, 9]);
        let s = |w: &Value| summarize(w).map(|s| s.storage_hash).unwrap_or_default();
        assert_ne!(
            s(&moved),
            s(&sample()),
            "a moved node changes the storage form"
        );
    }

    #[test]
    fn the_hash_is_stable_hex_sha256() {
        let h = content_hash(&sample());
        assert_eq!(h.len(), 64);
        assert!(h.chars().all(|c| c.is_ascii_hexdigit()));
        assert_eq!(h, content_hash(&sample()));
    }

    #[test]
    fn summary_graph_and_complexity() {
        let s = summarize(&sample()).unwrap_or_else(|| panic!("summary"));
        assert_eq!(
            (s.id.as_str(), s.name.as_str(), s.active, s.node_count),
            ("w1", "Orders", true, 4)
        );
        assert_eq!(s.tags, ["sales"]);
        let g = graph(&sample());
        assert_eq!(g.nodes.len(), 4);
        assert_eq!(g.edges.len(), 3);
        assert!(g.nodes.iter().any(|n| n.name == "Hook" && n.trigger));
        let c = complexity(&sample());
        assert_eq!(c.branching_nodes, 1);
        assert_eq!(c.depth, 3);
        assert_eq!(
            (
                c.code_nodes,
                c.http_nodes,
                c.credential_nodes,
                c.trigger_count
            ),
            (1, 1, 1, 1)
        );
        assert_eq!(c.level, "medium");
        let refs = credential_refs(&sample());
        assert_eq!(refs.len(), 1);
        assert_eq!(refs[0].name, "Shop");
        assert_eq!(refs[0].id.as_deref(), Some("c1"));
    }
}

#[cfg(test)]
mod order_tests {
    use super::*;

    // serde_json's `preserve_order` (switched on by any crate in the build) must not change hashes.
    #[test]
    fn hashes_do_not_depend_on_key_order() {
        let a = serde_json::json!({"name": "x", "settings": {"b": 1, "a": 2}, "nodes": [{"type": "t", "name": "n", "parameters": {"z": 1, "y": {"q": 1, "p": 2}}}], "connections": {}});
        let b = serde_json::json!({"connections": {}, "nodes": [{"parameters": {"y": {"p": 2, "q": 1}, "z": 1}, "name": "n", "type": "t"}], "settings": {"a": 2, "b": 1}, "name": "x"});
        assert_eq!(content_hash(&a), content_hash(&b));
        assert_eq!(storage_form(&a).to_string(), storage_form(&b).to_string());
        let text = storage_form(&b).to_string();
        assert!(
            text.find("\"connections\"") < text.find("\"name\""),
            "keys sorted: {text}"
        );
    }
}

#[cfg(test)]
mod canonical_tests {
    use serde_json::{Map, Value, json};

    use super::*;

    /// A small deterministic generator (xorshift), so failures reproduce.
    struct Gen(u64);

    impl Gen {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }

        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }

        fn key(&mut self) -> String {
            const KEYS: [&str; 16] = [
                "id",
                "name",
                "type",
                "position",
                "credentials",
                "webhookId",
                "parameters",
                "notesInFlow",
                "z",
                "a",
                "Ä",
                "é\"q",
                "10",
                "2",
                "",
                "DEFAULT",
            ];
            KEYS[self.below(16) as usize].to_owned()
        }

        fn value(&mut self, depth: u32) -> Value {
            match self.below(if depth == 0 { 6 } else { 8 }) {
                0 => Value::Null,
                1 => json!(self.below(2) == 0),
                2 => json!(self.below(1000) as i64 - 500),
                3 => json!((self.below(100_000) as f64) / 7.0),
                4 => json!(["DEFAULT", "x\n\t\"\\ü😀", "", "n8n"][self.below(4) as usize]),
                5 => json!(format!("s{}", self.below(50))),
                6 => Value::Array((0..self.below(4)).map(|_| self.value(depth - 1)).collect()),
                _ => {
                    let mut m = Map::new();
                    for _ in 0..self.below(5) {
                        let k = self.key();
                        m.insert(k, self.value(depth - 1));
                    }
                    Value::Object(m)
                }
            }
        }

        fn node(&mut self) -> Value {
            if self.below(10) == 0 {
                return self.value(2);
            }
            let mut node = match self.value(3) {
                Value::Object(m) => m,
                _ => Map::new(),
            };
            if self.below(4) > 0 {
                node.insert("name".into(), json!(format!("n{}", self.below(5))));
            }
            if self.below(2) == 0 {
                let mut creds = Map::new();
                for _ in 0..self.below(3) {
                    let r = match self.below(4) {
                        0 => json!({"id": "1", "name": self.value(1)}),
                        1 => json!({"id": "2"}),
                        2 => self.value(1),
                        _ => json!({"id": "3", "name": "Basic"}),
                    };
                    creds.insert(self.key(), r);
                }
                node.insert("credentials".into(), Value::Object(creds));
            }
            Value::Object(node)
        }

        fn workflow(&mut self) -> Value {
            let mut w = Map::new();
            for key in [
                "id",
                "name",
                "nodes",
                "connections",
                "settings",
                "description",
                "tags",
                "active",
                "staticData",
            ] {
                if self.below(6) == 0 {
                    continue;
                }
                let v = match key {
                    "nodes" if self.below(8) > 0 => {
                        Value::Array((0..self.below(6)).map(|_| self.node()).collect())
                    }
                    "settings" if self.below(4) > 0 => {
                        let mut m = Map::new();
                        for _ in 0..self.below(5) {
                            let v = match self.below(3) {
                                0 => json!("DEFAULT"),
                                _ => self.value(2),
                            };
                            m.insert(self.key(), v);
                        }
                        Value::Object(m)
                    }
                    _ => self.value(3),
                };
                w.insert(key.into(), v);
            }
            Value::Object(w)
        }
    }

    // The streamed forms are byte for byte the built ones, over many odd workflows (nulls,
    // "DEFAULT" settings, credentials without names, nodes that are not objects, escapes).
    #[test]
    fn streamed_forms_are_the_built_forms() {
        let mut g = Gen(0x9e37_79b9_7f4a_7c15);
        for i in 0..5_000 {
            let w = g.workflow();
            let mut buf = Vec::new();
            canonical::normalized(&mut buf, &w);
            assert_eq!(
                String::from_utf8_lossy(&buf),
                normalize(&w).to_string(),
                "normalized form of #{i}: {w}"
            );
            buf.clear();
            canonical::storage(&mut buf, &w);
            assert_eq!(
                String::from_utf8_lossy(&buf),
                storage_form(&w).to_string(),
                "storage form of #{i}: {w}"
            );
            // Read in place from text whose members come in another order, some keys
            // repeated (the last one counts), everything summarised the same.
            let text = scrambled(&w, i);
            // (Compared with the Value parsed from the same text: serde_json's float parsing
            // may land one step away from a float made in memory.)
            let doc = crate::json::Json::parse(&text).unwrap_or_else(|e| panic!("{e}: {text}"));
            let parsed: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}"));
            let mut in_place = Vec::new();
            canonical::storage(&mut in_place, &doc);
            buf.clear();
            canonical::storage(&mut buf, &parsed);
            assert_eq!(
                String::from_utf8_lossy(&in_place),
                String::from_utf8_lossy(&buf),
                "storage form of #{i} read in place: {text}"
            );
            assert_eq!(
                summarize_doc(&doc),
                summarize(&parsed),
                "summary of #{i} read in place: {text}"
            );
            assert_eq!(credential_refs(&doc), credential_refs(&parsed), "{text}");
        }
    }

    /// `v` as JSON text with each object's members reversed and, every third object, its
    /// first member written twice (a decoy value first).
    fn scrambled(v: &Value, seed: usize) -> String {
        fn write(out: &mut String, v: &Value, n: &mut usize) {
            match v {
                Value::Object(o) => {
                    *n += 1;
                    out.push('{');
                    let members: Vec<_> = o.iter().rev().collect();
                    if (*n).is_multiple_of(3)
                        && let Some((k, _)) = members.first()
                    {
                        out.push_str(&Value::from(k.as_str()).to_string());
                        out.push_str(":\"decoy\",");
                    }
                    for (i, (k, v)) in members.into_iter().enumerate() {
                        if i > 0 {
                            out.push(',');
                        }
                        out.push_str(&Value::from(k.as_str()).to_string());
                        out.push(':');
                        write(out, v, n);
                    }
                    out.push('}');
                }
                Value::Array(a) => {
                    out.push('[');
                    for (i, e) in a.iter().enumerate() {
                        if i > 0 {
                            out.push(',');
                        }
                        write(out, e, n);
                    }
                    out.push(']');
                }
                other => out.push_str(&other.to_string()),
            }
        }
        let mut out = String::new();
        write(&mut out, v, &mut seed.clone());
        out
    }

    // Hashes stored by earlier versions stay valid: the value is pinned (computed independently
    // with Python: json.dumps(form, sort_keys=True, separators=(",", ":"), ensure_ascii=False)).
    #[test]
    fn hashes_are_pinned() {
        let w = json!({"id": "7", "name": "Orders", "active": true, "settings": {"executionOrder": "v1", "timezone": "DEFAULT", "x": null},
            "nodes": [{"id": "b", "name": "Zed", "type": "n8n-nodes-base.set", "position": [1, 2], "parameters": {"v": null, "k": "é"}},
                      {"id": "a", "name": "Alpha", "type": "n8n-nodes-base.webhook", "credentials": {"httpBasicAuth": {"id": "9", "name": "Basic"}}}],
            "connections": {"Alpha": {"main": [[{"node": "Zed", "type": "main", "index": 0}]]}}});
        assert_eq!(
            sha256_hex(normalize(&w).to_string().as_bytes()),
            content_hash(&w)
        );
        assert_eq!(
            content_hash(&w),
            "298d2a0322f2b6f07f3704a88888861d4f0407e4a6c68dcdf4b126b683d6df0d"
        );
        let text = w.to_string();
        let doc = crate::json::Json::parse(&text).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            summarize_doc(&doc).map(|s| s.content_hash),
            Some(content_hash(&w))
        );
    }
}

#[cfg(test)]
mod make_scenarios {
    use serde_json::json;

    use super::*;
    use crate::make::tests::sample;

    #[test]
    fn a_scenarios_hash_ignores_layout_ids_and_team_references() {
        let base = content_hash(&sample());
        let mut moved = sample();
        moved["id"] = json!("99");
        moved["teamId"] = json!(7);
        moved["active"] = json!(false);
        moved["updatedAt"] = json!("2027-01-01T00:00:00.000Z");
        moved["blueprint"]["flow"][0]["metadata"]["designer"] = json!({"x": 10, "y": 20});
        moved["blueprint"]["flow"][0]["parameters"]["hook"] = json!(12);
        moved["blueprint"]["flow"][1]["routes"][0]["flow"][0]["parameters"]["__IMTCONN__"] =
            json!(9);
        moved["blueprint"]["metadata"]["zone"] = json!("us1.make.com");
        assert_eq!(content_hash(&moved), base);

        let mut changed = sample();
        changed["blueprint"]["flow"][1]["routes"][1]["flow"][0]["mapper"]["text"] =
            json!("{{1.total}}");
        assert_ne!(content_hash(&changed), base, "a mapping is content");
        let mut rescheduled = sample();
        rescheduled["scheduling"] = json!({"type": "indefinitely", "interval": 60});
        assert_ne!(content_hash(&rescheduled), base, "the schedule is content");
        let mut settings = sample();
        settings["blueprint"]["metadata"]["scenario"]["maxErrors"] = json!(1);
        assert_ne!(
            content_hash(&settings),
            base,
            "the scenario's settings are content"
        );
        let mut switched = sample();
        switched["blueprint"]["flow"][1]["routes"][0]["flow"][0]["metadata"]["restore"]["parameters"]
            ["__IMTCONN__"]["label"] = json!("Personal Google");
        assert_ne!(
            content_hash(&switched),
            base,
            "another connection of the same type is a change"
        );
    }

    #[test]
    fn a_scenario_summarises_the_same_from_either_tree() {
        let s = sample();
        let text = s.to_string();
        let json = crate::json::Json::parse(&text).unwrap_or_else(|e| panic!("{e}"));
        let from_json = summarize_doc(&json).unwrap_or_else(|| panic!("no summary"));
        let from_value = summarize(&s).unwrap_or_else(|| panic!("no summary"));
        assert_eq!(from_json, from_value);
        assert_eq!(from_value.id, "17");
        assert!(from_value.active && !from_value.archived);
        assert_eq!(from_value.node_count, 5);
        assert_eq!(from_value.content_hash, content_hash(&s));
        let mut moved = s;
        moved["blueprint"]["flow"][0]["metadata"]["designer"] = json!({"x": 10, "y": 20});
        let moved = summarize(&moved).unwrap_or_else(|| panic!("no summary"));
        assert_eq!(moved.content_hash, from_value.content_hash);
        assert_ne!(
            moved.storage_hash, from_value.storage_hash,
            "layout is stored"
        );
    }

    #[test]
    fn a_scenarios_connections_are_its_credential_references() {
        let refs = credential_refs(&sample());
        assert_eq!(
            refs.iter()
                .map(|r| (
                    r.id.as_deref(),
                    r.name.as_str(),
                    r.cred_type.as_str(),
                    r.node.as_str()
                ))
                .collect::<Vec<_>>(),
            vec![
                (Some("5501"), "Sales Google", "google", "Log order [3]"),
                (Some("7702"), "", "slack", "slack:CreateMessage [4]"),
            ]
        );
    }

    #[test]
    fn a_scenarios_complexity_counts_modules_branches_and_depth() {
        let c = complexity(&sample());
        assert_eq!(c.node_count, 5);
        assert_eq!(c.edge_count, 4);
        assert_eq!(c.trigger_count, 1);
        assert_eq!(c.branching_nodes, 1, "the router has two routes");
        assert_eq!(c.depth, 4, "hook → router → sheets → error handler");
        assert_eq!(c.credential_nodes, 2);
        assert_eq!(c.level, "medium");
    }
}
