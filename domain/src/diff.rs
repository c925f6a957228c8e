//! What changed between two versions of a workflow (PROMO-003, DRIFT-003), and how risky the
//! change is (PROMO-009).
//!
//! Both sides are compared in their normalised form ([`workflow::normalize`]), so the diff
//! ignores what the content hash ignores: the workflow's id, version id, timestamps, activation
//! and archive state, tags, sharing, `meta`, `staticData` and `pinData`; node ids, webhook ids
//! and positions (moving a node is not a change); credential ids (they differ per instance: a
//! credential reference is compared by type and name); null values and `"DEFAULT"` settings.
//! Two workflows with the same content hash therefore have an empty diff. Nodes are matched by
//! name, which n8n keeps unique within a workflow; connections are compared as sets of edges.
//!
//! Risk follows the PRD's table (3.5.2, "Risk Levels"): high for credentials, expressions,
//! triggers, HTTP, code and routing; medium for error handling and settings; low for a rename
//! and other minor changes. The level is the highest any part of the change reaches.
//!
//! [`workflow::normalize`]: crate::workflow::normalize

use std::collections::{BTreeMap, BTreeSet};
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::workflow::normalize;

/// A value that differs at one path. Paths are dotted and relative to their container (a node,
/// or the settings), with array elements as `[i]`: `parameters.options.timeout`,
/// `parameters.values[0].name`, `credentials.httpBasicAuth`, `errorWorkflow`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ValueChange {
    /// Where the value sits.
    pub path: String,
    /// The value before; absent when it was added.
    pub old: Option<Value>,
    /// The value after; absent when it was removed.
    pub new: Option<Value>,
}

/// The workflow's name before and after a rename.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct NameChange {
    /// The name before.
    pub old: String,
    /// The name after.
    pub new: String,
}

/// A node that exists on one side only.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct NodeRef {
    /// The node's name (its identity across versions).
    pub name: String,
    /// The node type, e.g. `n8n-nodes-base.httpRequest`.
    #[serde(rename = "type")]
    pub node_type: String,
}

/// A node that exists on both sides with different content.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct NodeChange {
    /// The node's name.
    pub name: String,
    /// The node type after the change (a type change is listed under `changes` as `type`).
    #[serde(rename = "type")]
    pub node_type: String,
    /// What differs, in path order (keys alphabetically, array elements by index).
    pub changes: Vec<ValueChange>,
}

/// One edge of the workflow graph: an output of one node feeding an input of another.
#[derive(
    Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, utoipa::ToSchema,
)]
pub struct ConnectionRef {
    /// The source node's name.
    pub from: String,
    /// The connection type: `main`, or an AI type such as `ai_tool`.
    pub output_type: String,
    /// Which output of the source (an IF node's false branch is 1).
    pub output_index: usize,
    /// The target node's name.
    pub to: String,
    /// Which input of the target (a Merge node has two).
    pub input_index: usize,
}

/// The structural difference between two versions of a workflow. Every list is sorted: nodes by
/// name, changes by path, connections by source, type, output, target and input.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct WorkflowDiff {
    /// Set when the workflow was renamed.
    pub name: Option<NameChange>,
    /// Set when the workflow's description changed (path `description`).
    pub description: Option<ValueChange>,
    /// Nodes only in the new version.
    pub nodes_added: Vec<NodeRef>,
    /// Nodes only in the old version.
    pub nodes_removed: Vec<NodeRef>,
    /// Nodes in both versions whose content differs.
    pub nodes_changed: Vec<NodeChange>,
    /// Edges only in the new version.
    pub connections_added: Vec<ConnectionRef>,
    /// Edges only in the old version.
    pub connections_removed: Vec<ConnectionRef>,
    /// Workflow settings that differ; paths are relative to `settings`.
    pub settings_changed: Vec<ValueChange>,
}

impl WorkflowDiff {
    /// Whether the two versions do the same thing (nothing above differs).
    pub fn is_empty(&self) -> bool {
        self.name.is_none()
            && self.description.is_none()
            && self.nodes_added.is_empty()
            && self.nodes_removed.is_empty()
            && self.nodes_changed.is_empty()
            && self.connections_added.is_empty()
            && self.connections_removed.is_empty()
            && self.settings_changed.is_empty()
    }
}

/// The structural diff from `old` to `new` (n8n workflow JSON; see the module docs for what is
/// ignored).
pub fn diff(old: &Value, new: &Value) -> WorkflowDiff {
    // A Make scenario is compared as modules (nodes), the edges between them and its settings.
    let view = |w: &Value| {
        if crate::make::is_scenario(w) {
            normalize(&crate::make::diff_view(w))
        } else {
            normalize(w)
        }
    };
    let (old, new) = (view(old), view(new));

    let name_of = |w: &Value| {
        w.get("name")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned()
    };
    let name = (name_of(&old) != name_of(&new)).then(|| NameChange {
        old: name_of(&old),
        new: name_of(&new),
    });

    let description = (old.get("description") != new.get("description")).then(|| ValueChange {
        path: "description".to_owned(),
        old: old.get("description").cloned(),
        new: new.get("description").cloned(),
    });

    let (old_nodes, new_nodes) = (nodes_by_name(&old), nodes_by_name(&new));
    let mut out = WorkflowDiff {
        name,
        description,
        ..WorkflowDiff::default()
    };
    let names: BTreeSet<&str> = old_nodes.keys().chain(new_nodes.keys()).copied().collect();
    for name in names {
        match (old_nodes.get(name), new_nodes.get(name)) {
            (Some(o), Some(n)) => {
                let changes = diff_node(o, n);
                if !changes.is_empty() {
                    out.nodes_changed.push(NodeChange {
                        name: name.to_owned(),
                        node_type: node_type(n).to_owned(),
                        changes,
                    });
                }
            }
            (Some(o), None) => out.nodes_removed.push(node_ref(name, o)),
            (None, Some(n)) => out.nodes_added.push(node_ref(name, n)),
            (None, None) => {}
        }
    }

    let (old_edges, new_edges) = (connections(&old), connections(&new));
    out.connections_added = new_edges.difference(&old_edges).cloned().collect();
    out.connections_removed = old_edges.difference(&new_edges).cloned().collect();

    let empty = Value::Object(Map::new());
    let settings = |w: &Value| w.get("settings").cloned().unwrap_or_else(|| empty.clone());
    diff_value(
        "",
        Some(&settings(&old)),
        Some(&settings(&new)),
        &mut out.settings_changed,
    );
    out
}

/// Normalised nodes by name. Nodes that are not objects cannot be matched and are skipped.
fn nodes_by_name(workflow: &Value) -> BTreeMap<&str, &Map<String, Value>> {
    workflow
        .get("nodes")
        .and_then(Value::as_array)
        .map_or(&[][..], Vec::as_slice)
        .iter()
        .filter_map(Value::as_object)
        .map(|n| (n.get("name").and_then(Value::as_str).unwrap_or(""), n))
        .collect()
}

fn node_type(node: &Map<String, Value>) -> &str {
    node.get("type").and_then(Value::as_str).unwrap_or("")
}

fn node_ref(name: &str, node: &Map<String, Value>) -> NodeRef {
    NodeRef {
        name: name.to_owned(),
        node_type: node_type(node).to_owned(),
    }
}

/// The differences between two normalised nodes, the name (their key) aside.
fn diff_node(old: &Map<String, Value>, new: &Map<String, Value>) -> Vec<ValueChange> {
    let mut out = Vec::new();
    let keys: BTreeSet<&String> = old.keys().chain(new.keys()).collect();
    for key in keys.into_iter().filter(|k| *k != "name") {
        let (o, n) = (old.get(key), new.get(key));
        if key == "credentials" {
            // One change per credential type: a reference is swapped as a whole, and what a
            // reference holds once normalised (its name) is not worth a path of its own.
            let no_creds = Map::new();
            let oc = o.and_then(Value::as_object).unwrap_or(&no_creds);
            let nc = n.and_then(Value::as_object).unwrap_or(&no_creds);
            let types: BTreeSet<&String> = oc.keys().chain(nc.keys()).collect();
            for t in types {
                if oc.get(t) != nc.get(t) {
                    out.push(ValueChange {
                        path: format!("credentials.{t}"),
                        old: oc.get(t).cloned(),
                        new: nc.get(t).cloned(),
                    });
                }
            }
            continue;
        }
        diff_value(key, o, n, &mut out);
    }
    out
}

/// Walks two values together: into objects key by key, into arrays of equal length element by
/// element; anything else that differs is one change at `path`.
fn diff_value(path: &str, old: Option<&Value>, new: Option<&Value>, out: &mut Vec<ValueChange>) {
    match (old, new) {
        (Some(Value::Object(o)), Some(Value::Object(n))) => {
            let keys: BTreeSet<&String> = o.keys().chain(n.keys()).collect();
            for key in keys {
                let child = if path.is_empty() {
                    key.clone()
                } else {
                    format!("{path}.{key}")
                };
                diff_value(&child, o.get(key), n.get(key), out);
            }
        }
        (Some(Value::Array(o)), Some(Value::Array(n))) if o.len() == n.len() => {
            for (i, (o, n)) in o.iter().zip(n).enumerate() {
                diff_value(&format!("{path}[{i}]"), Some(o), Some(n), out);
            }
        }
        _ if old != new => out.push(ValueChange {
            path: path.to_owned(),
            old: old.cloned(),
            new: new.cloned(),
        }),
        _ => {}
    }
}

/// Every edge of a normalised workflow.
fn connections(workflow: &Value) -> BTreeSet<ConnectionRef> {
    let mut out = BTreeSet::new();
    let Some(conns) = workflow.get("connections").and_then(Value::as_object) else {
        return out;
    };
    for (from, by_type) in conns {
        let Some(by_type) = by_type.as_object() else {
            continue;
        };
        for (output_type, outputs) in by_type {
            let Some(outputs) = outputs.as_array() else {
                continue;
            };
            for (output_index, targets) in outputs.iter().enumerate() {
                for target in targets.as_array().map_or(&[][..], Vec::as_slice) {
                    let Some(to) = target.get("node").and_then(Value::as_str) else {
                        continue;
                    };
                    let input_index = target
                        .get("index")
                        .and_then(Value::as_u64)
                        .and_then(|i| usize::try_from(i).ok())
                        .unwrap_or(0);
                    out.insert(ConnectionRef {
                        from: from.clone(),
                        output_type: output_type.clone(),
                        output_index,
                        to: to.to_owned(),
                        input_index,
                    });
                }
            }
        }
    }
    out
}

text_enum! {
    /// How risky a change is (PRD 3.5.2). Ordered: `low < medium < high`, so a pipeline's
    /// `maxAllowedRiskLevel` gate is `assessment.level <= max`.
    #[derive(PartialOrd, Ord)]
    pub enum RiskLevel { Low = "low", Medium = "medium", High = "high" }
}

/// A risk level that is not `low`, `medium` or `high`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown risk level `{0}` (expected low, medium or high)")]
pub struct UnknownRiskLevel(pub String);

impl FromStr for RiskLevel {
    type Err = UnknownRiskLevel;

    /// Case-insensitive, since the PRD spells the levels `Low`/`Medium`/`High`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(&s.trim().to_ascii_lowercase()).ok_or_else(|| UnknownRiskLevel(s.to_owned()))
    }
}

/// The risk of a change and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RiskAssessment {
    /// The highest level any part of the change reaches; `low` for no change.
    pub level: RiskLevel,
    /// One line per reason, without duplicates: the highest level's reasons first, each level's
    /// in diff order (name, nodes by name, connections, settings).
    pub reasons: Vec<String>,
}

/// What a node does, as far as risk is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum NodeKind {
    Trigger,
    Http,
    Code,
    Routing,
}

impl NodeKind {
    /// By the type's last segment (`n8n-nodes-base.httpRequest` → `httpRequest`), so community
    /// and LangChain packages' nodes of the same kind count too.
    fn of(node_type: &str) -> Option<Self> {
        let local = node_type
            .rsplit('.')
            .next()
            .unwrap_or(node_type)
            .to_ascii_lowercase();
        match local.as_str() {
            // The interval node is n8n's legacy timer trigger.
            "webhook" | "cron" | "schedule" | "interval" => Some(Self::Trigger),
            t if t.ends_with("trigger") => Some(Self::Trigger),
            "httprequest" | "httprequesttool" | "toolhttprequest" => Some(Self::Http),
            "code" | "function" | "functionitem" => Some(Self::Code),
            "if" | "switch" | "merge" | "router" => Some(Self::Routing),
            _ => None,
        }
    }

    /// As in "node `X`: HTTP request changed".
    fn label(self) -> &'static str {
        match self {
            Self::Trigger => "trigger",
            Self::Http => "HTTP request",
            Self::Code => "code",
            Self::Routing => "routing",
        }
    }

    /// As in "HTTP request node added: `X`".
    fn noun(self) -> &'static str {
        match self {
            Self::Trigger => "trigger",
            Self::Http => "HTTP request node",
            Self::Code => "code node",
            Self::Routing => "routing node",
        }
    }
}

/// Sticky notes are canvas annotations: they never run.
fn is_sticky_note(node_type: &str) -> bool {
    node_type
        .rsplit('.')
        .next()
        .is_some_and(|t| t.eq_ignore_ascii_case("stickyNote"))
}

/// Node fields that only document the node.
const COSMETIC: [&str; 2] = ["notes", "notesInFlow"];
/// Node fields that decide what happens when the node fails.
const ERROR_HANDLING: [&str; 5] = [
    "continueOnFail",
    "onError",
    "retryOnFail",
    "maxTries",
    "waitBetweenTries",
];

/// A path's first segment: `parameters` for `parameters.options.timeout` or `parameters[0]`.
fn top_key(path: &str) -> &str {
    path.split(['.', '[']).next().unwrap_or(path)
}

/// Whether a string is an n8n expression: `={{ … }}`, or any `{{ … }}` template.
fn is_expression(s: &str) -> bool {
    s.starts_with('=') || s.contains("{{")
}

fn expressions<'a>(v: &'a Value, out: &mut Vec<&'a str>) {
    match v {
        Value::String(s) if is_expression(s) => out.push(s),
        Value::Array(a) => a.iter().for_each(|v| expressions(v, out)),
        Value::Object(o) => o.values().for_each(|v| expressions(v, out)),
        _ => {}
    }
}

/// Whether the expressions in `old` and `new` differ, counted as a multiset: an unchanged
/// expression inside a changed array or object is not an expression change.
fn expressions_differ(old: Option<&Value>, new: Option<&Value>) -> bool {
    fn sorted(v: Option<&Value>) -> Vec<&str> {
        let mut out = Vec::new();
        if let Some(v) = v {
            expressions(v, &mut out);
        }
        out.sort_unstable();
        out
    }
    sorted(old) != sorted(new)
}

fn edge_label(c: &ConnectionRef) -> String {
    let from = if c.output_type == "main" && c.output_index == 0 {
        format!("`{}`", c.from)
    } else {
        format!("`{}` ({} output {})", c.from, c.output_type, c.output_index)
    };
    let to = if c.input_index == 0 {
        format!("`{}`", c.to)
    } else {
        format!("`{}` (input {})", c.to, c.input_index)
    };
    format!("{from} → {to}")
}

/// The risk of a change (PROMO-009), following the PRD's table:
///
/// - **high**: credentials (a reference added, removed or swapped); expressions (a value
///   containing `{{` or starting with `=` added, removed or edited); triggers, HTTP request and
///   code nodes (added, removed or changed); routing (connections added or removed, IF, Switch,
///   Merge and Router nodes changed);
/// - **medium**: error handling (`continueOnFail`, `onError`, `retryOnFail`, `maxTries`,
///   `waitBetweenTries`, the error workflow) and any other settings change;
/// - **low**: a rename, the description, notes, sticky notes and other minor changes.
///
/// A node's notes and error handling are judged as such whatever the node's type: adding
/// retries to an HTTP request node is an error-handling change, not a new request. A node added
/// or removed is judged by its type alone: it runs only when wired in (or as a trigger), and
/// wiring it in or out changes connections, which are high already.
pub fn risk(diff: &WorkflowDiff) -> RiskAssessment {
    use RiskLevel::{High, Low, Medium};

    let mut found: Vec<(RiskLevel, String)> = Vec::new();
    if let Some(n) = &diff.name {
        found.push((Low, format!("workflow renamed: `{}` → `{}`", n.old, n.new)));
    }
    if diff.description.is_some() {
        found.push((Low, "description changed".to_owned()));
    }

    for (nodes, verb) in [
        (&diff.nodes_added, "added"),
        (&diff.nodes_removed, "removed"),
    ] {
        for node in nodes {
            found.push(node_presence_risk(node, verb));
        }
    }

    for node in &diff.nodes_changed {
        found.extend(node_change_risk(node));
    }

    for c in &diff.connections_added {
        found.push((High, format!("connection added: {}", edge_label(c))));
    }
    for c in &diff.connections_removed {
        found.push((High, format!("connection removed: {}", edge_label(c))));
    }

    for s in &diff.settings_changed {
        let reason = match top_key(&s.path) {
            "errorWorkflow" => "error workflow changed".to_owned(),
            key => format!("setting `{key}` changed"),
        };
        found.push((Medium, reason));
    }

    // Highest level first; the sort is stable, so each level keeps the diff's order.
    found.sort_by_key(|(level, _)| std::cmp::Reverse(*level));
    let level = found.first().map_or(Low, |(level, _)| *level);
    let mut seen = BTreeSet::new();
    let reasons = found
        .into_iter()
        .map(|(_, reason)| reason)
        .filter(|reason| seen.insert(reason.clone()))
        .collect();
    RiskAssessment { level, reasons }
}

/// The risk of a node appearing or disappearing, judged by its type. Its credentials and
/// expressions need no rule of their own: a node runs only once it is wired in (or is a
/// trigger), and wiring it in adds connections, which are high already.
fn node_presence_risk(node: &NodeRef, verb: &str) -> (RiskLevel, String) {
    if is_sticky_note(&node.node_type) {
        return (
            RiskLevel::Low,
            format!("sticky note {verb}: `{}`", node.name),
        );
    }
    match NodeKind::of(&node.node_type) {
        Some(kind) => (
            RiskLevel::High,
            format!("{} {verb}: `{}`", kind.noun(), node.name),
        ),
        None => (RiskLevel::Low, format!("node {verb}: `{}`", node.name)),
    }
}

/// The risk of each change to a node, judged by the path and the node's type before and after.
fn node_change_risk(node: &NodeChange) -> Vec<(RiskLevel, String)> {
    use RiskLevel::{High, Low, Medium};

    let name = &node.name;
    let old_type = node
        .changes
        .iter()
        .find(|c| c.path == "type")
        .and_then(|c| c.old.as_ref())
        .and_then(Value::as_str)
        .unwrap_or(&node.node_type);
    let mut kinds: Vec<NodeKind> = [old_type, node.node_type.as_str()]
        .into_iter()
        .filter_map(NodeKind::of)
        .collect();
    kinds.dedup();
    if is_sticky_note(old_type) && is_sticky_note(&node.node_type) {
        return vec![(Low, format!("sticky note changed: `{name}`"))];
    }

    let mut found = Vec::new();
    for change in &node.changes {
        let key = top_key(&change.path);
        if COSMETIC.contains(&key) {
            found.push((Low, format!("node `{name}`: notes changed")));
            continue;
        }
        if key == "credentials" {
            found.push((High, format!("credentials changed on `{name}`")));
            continue;
        }
        if ERROR_HANDLING.contains(&key) {
            found.push((Medium, format!("node `{name}`: error handling changed")));
            continue;
        }
        let mut high = false;
        if expressions_differ(change.old.as_ref(), change.new.as_ref()) {
            found.push((High, format!("node `{name}`: expression changed")));
            high = true;
        }
        for kind in &kinds {
            found.push((High, format!("node `{name}`: {} changed", kind.label())));
            high = true;
        }
        if !high {
            let what = if key == "parameters" {
                "parameters".to_owned()
            } else {
                format!("`{key}`")
            };
            found.push((Low, format!("node `{name}`: {what} changed")));
        }
    }
    found
}

/// A one-line summary, e.g. "renamed, 2 nodes added, 1 removed, 3 changed, 1 connection added,
/// settings changed"; "no changes" for an empty diff.
pub fn render_summary(diff: &WorkflowDiff) -> String {
    fn counts(noun: &str, parts: &[(usize, &str)]) -> Vec<String> {
        let mut out = Vec::new();
        for &(n, verb) in parts.iter().filter(|(n, _)| *n > 0) {
            if out.is_empty() {
                let plural = if n == 1 { "" } else { "s" };
                out.push(format!("{n} {noun}{plural} {verb}"));
            } else {
                out.push(format!("{n} {verb}"));
            }
        }
        out
    }

    let mut parts = Vec::new();
    if diff.name.is_some() {
        parts.push("renamed".to_owned());
    }
    if diff.description.is_some() {
        parts.push("description changed".to_owned());
    }
    parts.extend(counts(
        "node",
        &[
            (diff.nodes_added.len(), "added"),
            (diff.nodes_removed.len(), "removed"),
            (diff.nodes_changed.len(), "changed"),
        ],
    ));
    parts.extend(counts(
        "connection",
        &[
            (diff.connections_added.len(), "added"),
            (diff.connections_removed.len(), "removed"),
        ],
    ));
    if !diff.settings_changed.is_empty() {
        parts.push("settings changed".to_owned());
    }
    if parts.is_empty() {
        "no changes".to_owned()
    } else {
        parts.join(", ")
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
                 "position": [200, 0], "parameters": {"conditions": {"number": []}}},
                {"id": "n3", "name": "HTTP Request", "type": "n8n-nodes-base.httpRequest",
                 "typeVersion": 4, "position": [400, -100],
                 "parameters": {"url": "https://shop.example/api", "options": {"timeout": 1000}},
                 "credentials": {"httpBasicAuth": {"id": "c1", "name": "Shop"}}},
                {"id": "n4", "name": "Shape", "type": "n8n-nodes-base.set", "typeVersion": 3,
                 "position": [600, -100],
                 "parameters": {
                     "values": {"string": [
                         {"name": "status", "value": "new"},
                         {"name": "total", "value": "={{ $json.total }}"}
                     ]},
                     "options": {"dotNotation": {"enabled": true, "depth": 2}}
                 }},
                {"id": "n5", "name": "Postgres", "type": "n8n-nodes-base.postgres",
                 "typeVersion": 2, "position": [800, -100],
                 "parameters": {"table": "orders"},
                 "credentials": {"postgres": {"id": "p1", "name": "Orders DB"}}},
                {"id": "n6", "name": "Log", "type": "n8n-nodes-base.code", "typeVersion": 2,
                 "position": [400, 100], "parameters": {"jsCode": "return []"}}
            ],
            "connections": {
                "Hook": {"main": [[{"node": "Check", "type": "main", "index": 0}]]},
                "Check": {"main": [[{"node": "HTTP Request", "type": "main", "index": 0}],
                                   [{"node": "Log", "type": "main", "index": 0}]]},
                "HTTP Request": {"main": [[{"node": "Shape", "type": "main", "index": 0}]]},
                "Shape": {"main": [[{"node": "Postgres", "type": "main", "index": 0}]]}
            },
            "settings": {"executionOrder": "v1", "saveManualExecutions": "DEFAULT"},
            "staticData": {"lastId": 7}, "pinData": {}
        })
    }

    /// The sample with the value at an existing JSON pointer replaced.
    fn edited(pointer: &str, value: Value) -> Value {
        let mut wf = sample();
        match wf.pointer_mut(pointer) {
            Some(slot) => *slot = value,
            None => panic!("no {pointer} in the sample"),
        }
        wf
    }

    fn change(path: &str, old: Option<Value>, new: Option<Value>) -> ValueChange {
        ValueChange {
            path: path.to_owned(),
            old,
            new,
        }
    }

    #[test]
    fn identical_content_with_other_ids_positions_and_versions_is_no_change_and_low_risk() {
        // PROMO-009
        let mut other = sample();
        other["id"] = json!("w2");
        other["versionId"] = json!("b");
        other["active"] = json!(false);
        other["updatedAt"] = json!("2027-01-01T00:00:00.000Z");
        other["staticData"] = json!({"lastId": 99});
        other["meta"] = json!({"instanceId": "x"});
        other["tags"] = json!([]);
        other["nodes"][0]["position"] = json!([500, 500]);
        other["nodes"][0]["id"] = json!("zz");
        other["nodes"][0]["webhookId"] = json!("def");
        other["nodes"][2]["credentials"]["httpBasicAuth"]["id"] = json!("c9");
        if let Some(nodes) = other["nodes"].as_array_mut() {
            nodes.reverse();
        }
        let d = diff(&sample(), &other);
        assert!(d.is_empty(), "{d:?}");
        assert_eq!(d, WorkflowDiff::default());
        assert_eq!(
            risk(&d),
            RiskAssessment {
                level: RiskLevel::Low,
                reasons: vec![]
            }
        );
        assert_eq!(render_summary(&d), "no changes");
    }

    #[test]
    fn added_and_removed_nodes_are_listed_with_their_types() {
        let mut new = sample();
        if let Some(nodes) = new["nodes"].as_array_mut() {
            nodes.retain(|n| n["name"] != "Log");
            nodes.push(
                json!({"name": "Note", "type": "n8n-nodes-base.noOp", "parameters": {},
                              "position": [0, 0]}),
            );
        }
        let d = diff(&sample(), &new);
        assert_eq!(
            d.nodes_added,
            [NodeRef {
                name: "Note".into(),
                node_type: "n8n-nodes-base.noOp".into()
            }]
        );
        assert_eq!(
            d.nodes_removed,
            [NodeRef {
                name: "Log".into(),
                node_type: "n8n-nodes-base.code".into()
            }]
        );
        assert!(d.nodes_changed.is_empty());
        // The connection to the removed node stays in the JSON here, so only the node counts.
        let r = risk(&d);
        assert_eq!(r.level, RiskLevel::High);
        assert_eq!(
            r.reasons,
            ["code node removed: `Log`", "node added: `Note`"]
        );
    }

    #[test]
    fn a_deep_parameter_change_has_its_dotted_path_and_is_low_on_a_plain_node() {
        // PROMO-003, PROMO-009
        let d = diff(
            &sample(),
            &edited("/nodes/3/parameters/options/dotNotation/depth", json!(3)),
        );
        assert_eq!(
            d.nodes_changed,
            [NodeChange {
                name: "Shape".into(),
                node_type: "n8n-nodes-base.set".into(),
                changes: vec![change(
                    "parameters.options.dotNotation.depth",
                    Some(json!(2)),
                    Some(json!(3))
                )],
            }]
        );
        let r = risk(&d);
        assert_eq!(r.level, RiskLevel::Low);
        assert_eq!(r.reasons, ["node `Shape`: parameters changed"]);
    }

    #[test]
    fn an_array_element_change_has_its_index_and_a_resized_array_changes_whole() {
        let d = diff(
            &sample(),
            &edited("/nodes/3/parameters/values/string/0/value", json!("paid")),
        );
        assert_eq!(
            d.nodes_changed[0].changes,
            [change(
                "parameters.values.string[0].value",
                Some(json!("new")),
                Some(json!("paid"))
            )]
        );
        assert_eq!(risk(&d).level, RiskLevel::Low);

        let resized = edited(
            "/nodes/3/parameters/values/string",
            json!([{"name": "status", "value": "new"}]),
        );
        let d = diff(&sample(), &resized);
        let changes = &d.nodes_changed[0].changes;
        assert_eq!(changes.len(), 1);
        assert_eq!(changes[0].path, "parameters.values.string");
        assert_eq!(
            changes[0].new,
            Some(json!([{"name": "status", "value": "new"}]))
        );
        // The expression went away with the element.
        assert_eq!(risk(&d).level, RiskLevel::High);
    }

    #[test]
    fn a_credentials_change_is_high() {
        // PROMO-009
        let d = diff(
            &sample(),
            &edited(
                "/nodes/4/credentials/postgres",
                json!({"id": "p2", "name": "Other DB"}),
            ),
        );
        assert_eq!(
            d.nodes_changed[0].changes,
            [change(
                "credentials.postgres",
                Some(json!({"name": "Orders DB"})),
                Some(json!({"name": "Other DB"}))
            )]
        );
        let r = risk(&d);
        assert_eq!(r.level, RiskLevel::High);
        assert_eq!(r.reasons, ["credentials changed on `Postgres`"]);
    }

    #[test]
    fn an_expression_change_is_high() {
        // PROMO-009
        let d = diff(
            &sample(),
            &edited(
                "/nodes/3/parameters/values/string/1/value",
                json!("={{ $json.total * 100 }}"),
            ),
        );
        assert_eq!(
            d.nodes_changed[0].changes[0].path,
            "parameters.values.string[1].value"
        );
        let r = risk(&d);
        assert_eq!(r.level, RiskLevel::High);
        assert_eq!(r.reasons, ["node `Shape`: expression changed"]);

        // A plain value becoming an expression counts too.
        let d = diff(
            &sample(),
            &edited("/nodes/4/parameters/table", json!("={{ $json.t }}")),
        );
        assert_eq!(risk(&d).level, RiskLevel::High);
    }

    #[test]
    fn an_http_request_change_is_high_with_one_reason_per_node() {
        // PROMO-009
        let mut new = edited("/nodes/2/parameters/url", json!("https://shop.example/v2"));
        new["nodes"][2]["parameters"]["options"]["timeout"] = json!(5000);
        let d = diff(&sample(), &new);
        let paths: Vec<&str> = d.nodes_changed[0]
            .changes
            .iter()
            .map(|c| c.path.as_str())
            .collect();
        assert_eq!(paths, ["parameters.options.timeout", "parameters.url"]);
        let r = risk(&d);
        assert_eq!(r.level, RiskLevel::High);
        assert_eq!(r.reasons, ["node `HTTP Request`: HTTP request changed"]);
    }

    #[test]
    fn connection_changes_are_high_and_listed() {
        // PROMO-009
        let mut new = sample();
        new["connections"]["Check"]["main"][1] =
            json!([{"node": "Postgres", "type": "main", "index": 0}]);
        let d = diff(&sample(), &new);
        let edge = |to: &str| ConnectionRef {
            from: "Check".into(),
            output_type: "main".into(),
            output_index: 1,
            to: to.into(),
            input_index: 0,
        };
        assert_eq!(d.connections_added, [edge("Postgres")]);
        assert_eq!(d.connections_removed, [edge("Log")]);
        assert!(d.nodes_changed.is_empty());
        let r = risk(&d);
        assert_eq!(r.level, RiskLevel::High);
        assert_eq!(
            r.reasons,
            [
                "connection added: `Check` (main output 1) → `Postgres`",
                "connection removed: `Check` (main output 1) → `Log`",
            ]
        );
        assert_eq!(render_summary(&d), "1 connection added, 1 removed");

        let mut new = sample();
        new["connections"]["Postgres"] =
            json!({"main": [[{"node": "Log", "type": "main", "index": 0}]]});
        assert_eq!(
            risk(&diff(&sample(), &new)).reasons,
            ["connection added: `Postgres` → `Log`"]
        );
    }

    #[test]
    fn routing_and_trigger_node_changes_are_high() {
        // PROMO-009
        let d = diff(
            &sample(),
            &edited(
                "/nodes/1/parameters/conditions/number",
                json!([{"value1": 1}]),
            ),
        );
        assert_eq!(risk(&d).reasons, ["node `Check`: routing changed"]);
        let d = diff(
            &sample(),
            &edited("/nodes/0/parameters/path", json!("orders-v2")),
        );
        assert_eq!(risk(&d).reasons, ["node `Hook`: trigger changed"]);
        let mut new = sample();
        if let Some(nodes) = new["nodes"].as_array_mut() {
            nodes.push(
                json!({"name": "Every hour", "type": "n8n-nodes-base.scheduleTrigger",
                              "parameters": {}}),
            );
        }
        let r = risk(&diff(&sample(), &new));
        assert_eq!(r.level, RiskLevel::High);
        assert_eq!(r.reasons, ["trigger added: `Every hour`"]);
    }

    #[test]
    fn a_type_change_is_judged_by_both_types() {
        let d = diff(
            &sample(),
            &edited("/nodes/3/type", json!("n8n-nodes-base.code")),
        );
        assert_eq!(d.nodes_changed[0].node_type, "n8n-nodes-base.code");
        assert_eq!(
            d.nodes_changed[0].changes,
            [change(
                "type",
                Some(json!("n8n-nodes-base.set")),
                Some(json!("n8n-nodes-base.code"))
            )]
        );
        assert_eq!(risk(&d).reasons, ["node `Shape`: code changed"]);
    }

    #[test]
    fn error_handling_is_medium() {
        // PROMO-009
        let mut new = sample();
        new["settings"]["errorWorkflow"] = json!("wf-errors");
        let d = diff(&sample(), &new);
        assert_eq!(
            d.settings_changed,
            [change("errorWorkflow", None, Some(json!("wf-errors")))]
        );
        let r = risk(&d);
        assert_eq!(r.level, RiskLevel::Medium);
        assert_eq!(r.reasons, ["error workflow changed"]);
        assert_eq!(render_summary(&d), "settings changed");

        // On an HTTP request node too: retries are error handling, not a new request.
        let mut new = sample();
        new["nodes"][2]["retryOnFail"] = json!(true);
        new["nodes"][2]["maxTries"] = json!(5);
        let r = risk(&diff(&sample(), &new));
        assert_eq!(r.level, RiskLevel::Medium);
        assert_eq!(r.reasons, ["node `HTTP Request`: error handling changed"]);
    }

    #[test]
    fn other_settings_are_medium_and_default_settings_are_no_change() {
        let d = diff(&sample(), &edited("/settings/executionOrder", json!("v0")));
        assert_eq!(risk(&d).reasons, ["setting `executionOrder` changed"]);
        assert_eq!(risk(&d).level, RiskLevel::Medium);
        let d = diff(
            &sample(),
            &edited("/settings/saveManualExecutions", json!(null)),
        );
        assert!(d.is_empty(), "{d:?}");
    }

    #[test]
    fn a_notes_only_change_is_low_even_on_an_http_node() {
        // PROMO-009
        let mut new = sample();
        new["nodes"][2]["notes"] = json!("calls the shop's {{ order }} API");
        let d = diff(&sample(), &new);
        assert_eq!(d.nodes_changed[0].changes[0].path, "notes");
        let r = risk(&d);
        assert_eq!(r.level, RiskLevel::Low);
        assert_eq!(r.reasons, ["node `HTTP Request`: notes changed"]);
    }

    #[test]
    fn a_rename_is_low_and_recorded() {
        // PROMO-009
        let d = diff(&sample(), &edited("/name", json!("Orders v2")));
        assert_eq!(
            d.name,
            Some(NameChange {
                old: "Orders".into(),
                new: "Orders v2".into()
            })
        );
        assert!(!d.is_empty());
        let r = risk(&d);
        assert_eq!(r.level, RiskLevel::Low);
        assert_eq!(r.reasons, ["workflow renamed: `Orders` → `Orders v2`"]);
        assert_eq!(render_summary(&d), "renamed");

        let mut new = sample();
        new["description"] = json!("Imports orders");
        let d = diff(&sample(), &new);
        assert_eq!(
            d.description,
            Some(change("description", None, Some(json!("Imports orders"))))
        );
        assert_eq!(risk(&d).reasons, ["description changed"]);
    }

    #[test]
    fn reasons_put_the_highest_level_first() {
        let mut new = edited("/name", json!("Orders v2"));
        new["settings"]["timezone"] = json!("Europe/Berlin");
        new["nodes"][5]["parameters"]["jsCode"] = json!("return [{json: {}}]");
        let r = risk(&diff(&sample(), &new));
        assert_eq!(r.level, RiskLevel::High);
        assert_eq!(
            r.reasons,
            [
                "node `Log`: code changed",
                "setting `timezone` changed",
                "workflow renamed: `Orders` → `Orders v2`",
            ]
        );
    }

    #[test]
    fn the_summary_counts_nodes_and_connections() {
        let mut new = edited("/nodes/4/parameters/table", json!("orders_v2"));
        new["nodes"][0]["parameters"]["path"] = json!("v2");
        if let Some(nodes) = new["nodes"].as_array_mut() {
            nodes.retain(|n| n["name"] != "Log");
            nodes.push(json!({"name": "A", "type": "n8n-nodes-base.noOp"}));
            nodes.push(json!({"name": "B", "type": "n8n-nodes-base.noOp"}));
        }
        new["connections"]["Postgres"] =
            json!({"main": [[{"node": "A", "type": "main", "index": 0}]]});
        new["settings"]["timezone"] = json!("UTC");
        assert_eq!(
            render_summary(&diff(&sample(), &new)),
            "2 nodes added, 1 removed, 2 changed, 1 connection added, settings changed"
        );
    }

    #[test]
    fn risk_levels_order_parse_and_print_lowercase() {
        assert!(RiskLevel::Low < RiskLevel::Medium && RiskLevel::Medium < RiskLevel::High);
        for level in RiskLevel::ALL {
            assert_eq!(level.to_string().parse::<RiskLevel>(), Ok(*level));
        }
        assert_eq!("High".parse::<RiskLevel>(), Ok(RiskLevel::High));
        assert_eq!(
            "severe".parse::<RiskLevel>(),
            Err(UnknownRiskLevel("severe".into()))
        );
        assert_eq!(RiskLevel::Medium.to_string(), "medium");
        let json = serde_json::to_value(RiskAssessment {
            level: RiskLevel::Medium,
            reasons: vec![],
        })
        .unwrap_or_default();
        assert_eq!(json, json!({"level": "medium", "reasons": []}));
    }

    #[test]
    fn the_diff_round_trips_through_json() {
        let mut new = edited("/name", json!("Orders v2"));
        new["nodes"][2]["parameters"]["url"] = json!("https://x");
        let d = diff(&sample(), &new);
        let back: Option<WorkflowDiff> = serde_json::to_value(&d)
            .ok()
            .and_then(|v| serde_json::from_value(v).ok());
        assert_eq!(back, Some(d));
    }

    #[test]
    fn a_scenarios_diff_names_modules_mappings_routes_and_schedule() {
        let old = crate::make::tests::sample();
        let mut new = old.clone();
        new["blueprint"]["flow"][1]["routes"][1]["flow"][0]["mapper"]["text"] =
            json!("{{1.total}}");
        new["scheduling"] = json!({"type": "indefinitely", "interval": 60});
        // A module moved on the canvas and another connection: no change.
        new["blueprint"]["flow"][0]["metadata"]["designer"] = json!({"x": 5, "y": 5});
        new["blueprint"]["flow"][1]["routes"][0]["flow"][0]["parameters"]["__IMTCONN__"] = json!(1);
        // A third route.
        if let Some(routes) = new["blueprint"]["flow"][1]["routes"].as_array_mut() {
            routes.push(
                json!({"flow": [{"id": 6, "module": "email:ActionSendEmail", "version": 7,
                                         "mapper": {"to": "ops@example.com"}}]}),
            );
        }
        let d = diff(&old, &new);
        assert_eq!(
            d.nodes_changed
                .iter()
                .map(|c| (c.name.as_str(), c.changes[0].path.as_str()))
                .collect::<Vec<_>>(),
            vec![("slack:CreateMessage [4]", "mapper.text")]
        );
        assert_eq!(
            d.nodes_added
                .iter()
                .map(|n| n.name.as_str())
                .collect::<Vec<_>>(),
            vec!["email:ActionSendEmail [6]"]
        );
        assert_eq!(d.connections_added.len(), 1);
        assert_eq!(d.connections_added[0].output_index, 2);
        assert_eq!(
            d.settings_changed
                .iter()
                .map(|c| c.path.as_str())
                .collect::<Vec<_>>(),
            vec!["scheduling.interval", "scheduling.type"]
        );
        assert!(diff(&old, &old).is_empty());
        let mut relabelled = old.clone();
        relabelled["blueprint"]["flow"][1]["routes"][0]["flow"][0]["metadata"]["designer"]["name"] =
            json!("Append the order");
        assert!(
            diff(&old, &relabelled).is_empty(),
            "a label on the canvas is not content"
        );
    }
}
