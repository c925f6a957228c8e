//! Pure rewrites and checks over a provider's workflow JSON (n8n's shape) for promoting a
//! workflow from a source environment to a target: credential and sub-workflow references
//! rewritten to the target's ids, the structural pre-flight gate run before writing, the webhook
//! routes a workflow would claim in the target (n8n refuses two active workflows on the same
//! method and path) and the node types the target must have installed.
//!
//! Nothing here talks to n8n: the caller builds the maps from both environments' listings and
//! decides what an unmapped reference means (block, warn, or create it first). Only a Make
//! connection is never written unmapped into another team ([`remap_credentials_for_target`]):
//! its id is one team's. Outputs follow node order, then credential type order, so a report
//! reads the same on every run.

use std::collections::{BTreeSet, HashMap, HashSet};

use serde::Serialize;
use serde_json::{Map, Value};

use crate::make::KnownConnection;

/// n8n's Execute Workflow node.
const EXECUTE_WORKFLOW: &str = "n8n-nodes-base.executeWorkflow";
/// The AI agent's "Call n8n Workflow" tool: same `source` and `workflowId` parameters as
/// Execute Workflow, so a promotion must rewrite it too.
const TOOL_WORKFLOW: &str = "@n8n/n8n-nodes-langchain.toolWorkflow";
const WEBHOOK: &str = "n8n-nodes-base.webhook";
const FORM_TRIGGER: &str = "n8n-nodes-base.formTrigger";
/// Packages every n8n instance ships with.
const BUILTIN_PREFIXES: [&str; 2] = ["n8n-nodes-base.", "@n8n/n8n-nodes-langchain."];

/// A source credential and what it becomes in the target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CredentialTarget {
    /// The target credential's id.
    pub id: String,
    /// The target credential's name (n8n shows it in the node and keeps it in the reference).
    pub name: String,
}

/// A node credential reference that `remap_credentials` found no target for (left unchanged).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct UnmappedCredential {
    /// The name of the node holding the reference.
    pub node: String,
    /// The credential type (the key under the node's `credentials`, e.g. `slackApi`).
    pub credential_type: String,
    /// The source credential's id, if the reference has one.
    pub id: Option<String>,
    /// The source credential's name, if the reference has one.
    pub name: Option<String>,
}

/// A sub-workflow reference that `remap_subworkflows` could not rewrite (left unchanged).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct UnmappedSubworkflow {
    /// The name of the Execute Workflow node.
    pub node: String,
    /// The source workflow id it calls, or the n8n expression (`=…`) that computes it.
    pub workflow_id: String,
}

fn nodes(workflow: &Value) -> &[Value] {
    workflow
        .get("nodes")
        .and_then(Value::as_array)
        .map_or(&[], Vec::as_slice)
}

fn nodes_mut(workflow: &mut Value) -> impl Iterator<Item = &mut Value> {
    workflow
        .get_mut("nodes")
        .and_then(Value::as_array_mut)
        .into_iter()
        .flatten()
}

fn node_name(node: &Value) -> String {
    node.get("name")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_owned()
}

fn node_type(node: &Value) -> &str {
    node.get("type").and_then(Value::as_str).unwrap_or("")
}

fn is_disabled(node: &Value) -> bool {
    node.get("disabled")
        .and_then(Value::as_bool)
        .unwrap_or(false)
}

/// An id as text: n8n ids are strings, but instances from before 1.0 used numbers.
/// An empty string is no id.
fn id_text(v: Option<&Value>) -> Option<String> {
    match v? {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// Rewrites every node credential reference `{type: {id, name}}` of `workflow` through `map`,
/// keyed by (credential type, source credential id) — falling back to (type, source name) only
/// when the reference has no id (a reference with an id is never matched by name: ids and names
/// share the key space, and a name equal to some other credential's id must not capture it).
/// A mapped reference gets the target's id and name. References with no entry are left as they
/// are and reported, in node order then credential type order. The bare-name form of very old
/// exports (`{type: "name"}`) is matched by name and rewritten to `{id, name}`.
pub fn remap_credentials(
    workflow: &mut Value,
    map: &HashMap<(String, String), CredentialTarget>,
) -> Vec<UnmappedCredential> {
    if crate::make::is_scenario(&*workflow) {
        return remap_connections(workflow, map, None).unmapped;
    }
    let mut unmapped = Vec::new();
    for node in nodes_mut(workflow) {
        let Some((name, creds)) = name_and_credentials(node) else {
            continue;
        };
        let mut refs: Vec<(&String, &mut Value)> = creds.iter_mut().collect();
        refs.sort_by(|a, b| a.0.cmp(b.0));
        for (cred_type, reference) in refs {
            let (id, cred_name) = match &*reference {
                Value::String(s) if !s.is_empty() => (None, Some(s.clone())),
                r => (
                    id_text(r.get("id")),
                    r.get("name")
                        .and_then(Value::as_str)
                        .filter(|s| !s.is_empty())
                        .map(str::to_owned),
                ),
            };
            let key = id.as_ref().or(cred_name.as_ref());
            let target = key.and_then(|k| map.get(&(cred_type.clone(), k.clone())));
            match target {
                Some(target) => {
                    let mut rewritten = reference.as_object().cloned().unwrap_or_default();
                    rewritten.insert("id".to_owned(), Value::String(target.id.clone()));
                    rewritten.insert("name".to_owned(), Value::String(target.name.clone()));
                    *reference = Value::Object(rewritten);
                }
                None => unmapped.push(UnmappedCredential {
                    node: name.clone(),
                    credential_type: cred_type.clone(),
                    id,
                    name: cred_name,
                }),
            }
        }
    }
    unmapped
}

/// What a promotion knows besides the credential map when it writes a Make scenario into
/// another team (see [`remap_credentials_for_target`]).
#[derive(Debug, Clone, Copy, Default)]
pub struct TargetTeam<'a> {
    /// The source team's connections by id, as the catalog lists them: what a module's
    /// designer did not cache about its connection (type, label).
    pub source_connections: Option<&'a HashMap<String, KnownConnection>>,
    /// The copy the scenario replaces in the target team, if there is one.
    pub target_copy: Option<&'a Value>,
}

/// What [`remap_credentials_for_target`] could not map.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Remapped {
    /// Every reference with no target (the promotion's credential gate judges these).
    pub unmapped: Vec<UnmappedCredential>,
    /// The Make modules among them written without a connection: neither mapped nor given one
    /// by the target copy. Always empty for n8n.
    pub without_connection: Vec<UnmappedCredential>,
}

/// [`remap_credentials`] for a promotion, which writes into another environment. An n8n
/// workflow is remapped exactly as [`remap_credentials`] does (n8n resolves a kept reference by
/// name and type in the target). A Make connection id means nothing in another team (or names
/// another team's connection), so a Make scenario differs in two ways: a module's connection
/// type and label come from `team.source_connections` where the designer did not cache them
/// ([`crate::make::connection_ref_in`]); and an unmapped connection is never written as it
/// was: the module keeps the connection the target copy's module of the same id and kind has
/// (the target team's own, as webhooks are kept on an update), else it is left without one, to
/// be chosen in Make, as a new copy leaves its webhooks unset.
pub fn remap_credentials_for_target(
    workflow: &mut Value,
    map: &HashMap<(String, String), CredentialTarget>,
    team: &TargetTeam<'_>,
) -> Remapped {
    if crate::make::is_scenario(&*workflow) {
        return remap_connections(workflow, map, Some(team));
    }
    Remapped {
        unmapped: remap_credentials(workflow, map),
        without_connection: Vec::new(),
    }
}

/// [`remap_credentials`] for a Make scenario: each module's connection
/// (`parameters.__IMTCONN__`) is looked up by (connection type, source connection id) and gets
/// the target's id (a number, as Make writes it, when it is one) and, where the designer cached
/// the connection's label, the target's name. Without `team` an unmapped connection is left as
/// it is; with it, see [`remap_credentials_for_target`].
fn remap_connections(
    scenario: &mut Value,
    map: &HashMap<(String, String), CredentialTarget>,
    team: Option<&TargetTeam<'_>>,
) -> Remapped {
    use crate::make::{CONNECTION_PARAM, connection_ref_in, connections_by_module, module_key};
    let no_connections = HashMap::new();
    let known = team
        .and_then(|t| t.source_connections)
        .unwrap_or(&no_connections);
    let theirs = team
        .and_then(|t| t.target_copy)
        .map(connections_by_module)
        .unwrap_or_default();
    let mut out = Remapped::default();
    crate::make::for_each_module_mut(scenario, &mut |module| {
        let Some(r) = connection_ref_in(module, known) else {
            return;
        };
        let Some(target) = map.get(&(r.connection_type.clone(), r.id.clone())) else {
            let unmapped = UnmappedCredential {
                node: r.module,
                credential_type: r.connection_type,
                id: Some(r.id),
                name: r.label,
            };
            if team.is_some() {
                let own = theirs.get(&module_key(module));
                crate::make::set_connection(module, own);
                if own.is_none() {
                    out.without_connection.push(unmapped.clone());
                }
            }
            out.unmapped.push(unmapped);
            return;
        };
        let id = target
            .id
            .parse::<i64>()
            .map_or_else(|_| Value::String(target.id.clone()), Value::from);
        if let Some(params) = module.get_mut("parameters").and_then(Value::as_object_mut) {
            params.insert(CONNECTION_PARAM.to_owned(), id);
        }
        if let Some(restore) = module
            .pointer_mut("/metadata/restore/parameters/__IMTCONN__")
            .and_then(Value::as_object_mut)
        {
            restore.insert("label".to_owned(), Value::String(target.name.clone()));
        }
    });
    out
}

/// Splits a node into its name and its `credentials` object (if it has one) so both can be
/// used while the credentials are borrowed mutably.
fn name_and_credentials(node: &mut Value) -> Option<(String, &mut Map<String, Value>)> {
    let name = node_name(node);
    let creds = node.get_mut("credentials")?.as_object_mut()?;
    Some((name, creds))
}

/// What an Execute Workflow node's `workflowId` holds.
enum SubworkflowRef {
    /// A workflow id to remap.
    Id(String),
    /// An n8n expression: computed at run time, cannot be remapped here.
    Expression(String),
}

/// The reference of a node that calls a workflow from the database, or `None` for any other
/// node (other types, `source` other than `"database"`, no workflow chosen yet). Both shapes:
/// a plain id (typeVersion 1) and a resource locator `{__rl, value, mode, cachedResultName}`.
fn subworkflow_ref(node: &Value) -> Option<SubworkflowRef> {
    let t = node_type(node);
    if t != EXECUTE_WORKFLOW && t != TOOL_WORKFLOW {
        return None;
    }
    let params = node.get("parameters")?;
    match params.get("source") {
        None | Some(Value::Null) => {}
        Some(Value::String(s)) if s == "database" => {}
        Some(_) => return None,
    }
    let id = match params.get("workflowId")? {
        Value::Object(rl) => rl.get("value"),
        v => Some(v),
    };
    let id = id_text(id)?;
    if id.starts_with('=') {
        Some(SubworkflowRef::Expression(id))
    } else {
        Some(SubworkflowRef::Id(id))
    }
}

/// Rewrites Execute Workflow node references (both shapes) through `map` (source workflow id →
/// (target workflow id, target workflow name)). A resource locator gets the target id as its
/// `value`, the target name as `cachedResultName` (when it has one or is in `list` mode) and
/// `/workflow/<target id>` as `cachedResultUrl` (when it has one). Nodes whose `source` is not
/// `"database"` are ignored; disabled nodes are rewritten too (enabling one later must not call
/// a source-environment id). Returns the references it could not map, in node order: ids with
/// no entry, and expressions (`=…`), which are only known at run time.
pub fn remap_subworkflows(
    workflow: &mut Value,
    map: &HashMap<String, (String, String)>,
) -> Vec<UnmappedSubworkflow> {
    let mut unmapped = Vec::new();
    for node in nodes_mut(workflow) {
        let id = match subworkflow_ref(node) {
            None => continue,
            Some(SubworkflowRef::Expression(expr)) => {
                unmapped.push(UnmappedSubworkflow {
                    node: node_name(node),
                    workflow_id: expr,
                });
                continue;
            }
            Some(SubworkflowRef::Id(id)) => id,
        };
        let Some((target_id, target_name)) = map.get(&id) else {
            unmapped.push(UnmappedSubworkflow {
                node: node_name(node),
                workflow_id: id,
            });
            continue;
        };
        let Some(slot) = node
            .get_mut("parameters")
            .and_then(|p| p.get_mut("workflowId"))
        else {
            continue;
        };
        match slot {
            Value::Object(rl) => {
                rl.insert("value".to_owned(), Value::String(target_id.clone()));
                let list_mode = rl.get("mode").and_then(Value::as_str) == Some("list");
                if rl.contains_key("cachedResultName") || list_mode {
                    rl.insert(
                        "cachedResultName".to_owned(),
                        Value::String(target_name.clone()),
                    );
                }
                if rl.contains_key("cachedResultUrl") {
                    rl.insert(
                        "cachedResultUrl".to_owned(),
                        Value::String(format!("/workflow/{target_id}")),
                    );
                }
            }
            other => *other = Value::String(target_id.clone()),
        }
    }
    unmapped
}

/// The workflow ids this workflow calls through Execute Workflow nodes (source = database only;
/// disabled nodes included, expressions excluded), each once, in node order. A promotion
/// promotes these first so `remap_subworkflows` finds them in the target.
pub fn subworkflow_refs(workflow: &Value) -> Vec<String> {
    let mut seen = HashSet::new();
    nodes(workflow)
        .iter()
        .filter_map(|n| match subworkflow_ref(n) {
            Some(SubworkflowRef::Id(id)) => Some(id),
            _ => None,
        })
        .filter(|id| seen.insert(id.clone()))
        .collect()
}

/// Structural checks a promotion runs before writing (the `runPreFlightValidation` gate):
/// the workflow has a non-empty name; `nodes` is an array; every node has a non-empty, unique
/// name and a non-empty type; every connection's source and target name a node (`connections`
/// may be absent, but if present must be an object). Each problem in words, workflow-level
/// first, then in node order, then by connection; empty means the workflow may be written.
pub fn preflight_problems(workflow: &Value) -> Vec<String> {
    if crate::make::is_scenario(workflow) {
        return crate::make::preflight_problems(workflow);
    }
    let mut problems = Vec::new();
    if !workflow.is_object() {
        problems.push("the workflow is not a JSON object".to_owned());
        return problems;
    }
    if workflow
        .get("name")
        .and_then(Value::as_str)
        .is_none_or(|n| n.trim().is_empty())
    {
        problems.push("the workflow has no name".to_owned());
    }
    let Some(nodes) = workflow.get("nodes").and_then(Value::as_array) else {
        problems.push("`nodes` is not an array".to_owned());
        return problems;
    };
    let mut names: HashSet<&str> = HashSet::new();
    let mut duplicates: HashSet<&str> = HashSet::new();
    for (i, node) in nodes.iter().enumerate() {
        let position = i + 1;
        if !node.is_object() {
            problems.push(format!("node {position} is not a JSON object"));
            continue;
        }
        let name = node
            .get("name")
            .and_then(Value::as_str)
            .filter(|n| !n.trim().is_empty());
        let label = name.map_or_else(|| format!("node {position}"), |n| format!("node \"{n}\""));
        match name {
            None => problems.push(format!("node {position} has no name")),
            Some(n) => {
                if !names.insert(n) && duplicates.insert(n) {
                    problems.push(format!("more than one node is named \"{n}\""));
                }
            }
        }
        if node_type(node).trim().is_empty() {
            problems.push(format!("{label} has no type"));
        }
    }
    match workflow.get("connections") {
        None | Some(Value::Null) => {}
        Some(Value::Object(conns)) => {
            for problem in connection_problems(conns, &names) {
                if !problems.contains(&problem) {
                    problems.push(problem);
                }
            }
        }
        Some(_) => problems.push("`connections` is not an object".to_owned()),
    }
    problems
}

/// Dangling ends of `connections` (`{source: {kind: [[{node, type, index}]]}}`).
fn connection_problems(conns: &Map<String, Value>, names: &HashSet<&str>) -> Vec<String> {
    let mut problems = Vec::new();
    for (from, by_kind) in conns {
        if !names.contains(from.as_str()) {
            problems.push(format!(
                "a connection starts at \"{from}\", which is not a node of the workflow"
            ));
        }
        let outputs = by_kind
            .as_object()
            .into_iter()
            .flat_map(|k| k.values())
            .filter_map(Value::as_array)
            .flatten();
        let targets = outputs.filter_map(Value::as_array).flatten();
        for target in targets {
            match target.get("node").and_then(Value::as_str) {
                Some(to) if names.contains(to) => {}
                Some(to) => problems.push(format!(
                    "the connection from \"{from}\" to \"{to}\" ends at a node the workflow does not have"
                )),
                None => problems.push(format!("a connection from \"{from}\" names no target node")),
            }
        }
    }
    problems
}

/// (HTTP method upper-case, normalised path without leading/trailing '/') of each enabled
/// webhook-style node of the workflow, in node order: Webhook nodes (one entry per method when
/// "Allow Multiple HTTP Methods" is on, GET and POST if none chosen; GET when no method is set),
/// Form Triggers (GET to show the form and POST to submit it) and any other node with a
/// `webhookId` and a `parameters.path`. As n8n does, an empty path means the node's webhook id,
/// and a path with a dynamic segment (`:param`) is served under `<webhookId>/<path>`. Paths that
/// are expressions (`=…`) are only known at run time and are left out. Not deduplicated: two
/// entries alike mean the workflow clashes with itself.
pub fn webhook_paths(workflow: &Value) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for node in nodes(workflow) {
        if is_disabled(node) {
            continue;
        }
        let t = node_type(node);
        let params = node.get("parameters");
        let raw_path = params.and_then(|p| p.get("path")).and_then(Value::as_str);
        let webhook_id = node
            .get("webhookId")
            .and_then(Value::as_str)
            .filter(|id| !id.is_empty());
        let generic = webhook_id.is_some() && raw_path.is_some();
        if t != WEBHOOK && t != FORM_TRIGGER && !generic {
            continue;
        }
        let Some(path) = listen_path(raw_path.unwrap_or(""), webhook_id) else {
            continue;
        };
        let methods = if t == FORM_TRIGGER {
            vec!["GET".to_owned(), "POST".to_owned()]
        } else {
            http_methods(params)
        };
        out.extend(methods.into_iter().map(|m| (m, path.clone())));
    }
    out
}

/// The path n8n registers for a node's `path` parameter (see `webhook_paths`).
fn listen_path(raw: &str, webhook_id: Option<&str>) -> Option<String> {
    if raw.starts_with('=') {
        return None;
    }
    let path = raw.trim_matches('/');
    if path.is_empty() {
        return webhook_id
            .map(|id| id.trim_matches('/').to_owned())
            .filter(|p| !p.is_empty());
    }
    let dynamic = path.split('/').any(|segment| segment.starts_with(':'));
    match webhook_id {
        Some(id) if dynamic => Some(format!("{}/{path}", id.trim_matches('/'))),
        _ => Some(path.to_owned()),
    }
}

/// The methods a Webhook-style node listens to, upper-case, each once.
fn http_methods(params: Option<&Value>) -> Vec<String> {
    let multiple = params
        .and_then(|p| p.get("multipleMethods"))
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let chosen: Vec<String> = match params.and_then(|p| p.get("httpMethod")) {
        Some(Value::String(m)) => vec![m.clone()],
        Some(Value::Array(ms)) => ms
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_owned)
            .collect(),
        _ => Vec::new(),
    };
    let mut methods: Vec<String> = Vec::new();
    for m in chosen {
        let m = m.trim().to_ascii_uppercase();
        if !m.is_empty() && !methods.contains(&m) {
            methods.push(m);
        }
    }
    if methods.is_empty() {
        if multiple {
            methods = vec!["GET".to_owned(), "POST".to_owned()];
        } else {
            methods.push("GET".to_owned());
        }
    }
    methods
}

/// The distinct node types the workflow uses (disabled nodes included: the target must still
/// know the type to import the workflow), sorted. Nodes without a type are skipped.
pub fn node_types(workflow: &Value) -> Vec<String> {
    nodes(workflow)
        .iter()
        .map(node_type)
        .filter(|t| !t.is_empty())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .map(str::to_owned)
        .collect()
}

/// Whether a node type ships with every n8n instance (`n8n-nodes-base.*` and
/// `@n8n/n8n-nodes-langchain.*`); others are community/custom nodes the target must have
/// installed. A bare prefix with no node name after it is not a node type.
pub fn is_builtin_node_type(t: &str) -> bool {
    BUILTIN_PREFIXES
        .iter()
        .any(|p| t.strip_prefix(p).is_some_and(|rest| !rest.is_empty()))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn cred_map(
        entries: &[(&str, &str, &str, &str)],
    ) -> HashMap<(String, String), CredentialTarget> {
        entries
            .iter()
            .map(|(t, key, id, name)| {
                (
                    ((*t).to_owned(), (*key).to_owned()),
                    CredentialTarget {
                        id: (*id).to_owned(),
                        name: (*name).to_owned(),
                    },
                )
            })
            .collect()
    }

    fn wf_map(entries: &[(&str, &str, &str)]) -> HashMap<String, (String, String)> {
        entries
            .iter()
            .map(|(src, id, name)| ((*src).to_owned(), ((*id).to_owned(), (*name).to_owned())))
            .collect()
    }

    #[test]
    fn credentials_are_remapped_by_type_and_id() {
        let mut wf = json!({"name": "W", "nodes": [
            {"name": "Slack", "type": "n8n-nodes-base.slack",
             "credentials": {"slackApi": {"id": "s1", "name": "Slack dev"}}}
        ]});
        let map = cred_map(&[("slackApi", "s1", "t9", "Slack prod")]);
        let unmapped = remap_credentials(&mut wf, &map);
        assert_eq!(unmapped, vec![]);
        assert_eq!(
            wf["nodes"][0]["credentials"]["slackApi"],
            json!({"id": "t9", "name": "Slack prod"})
        );
    }

    #[test]
    fn credentials_with_numeric_ids_are_matched_as_text() {
        let mut wf = json!({"nodes": [
            {"name": "Pg", "type": "n8n-nodes-base.postgres",
             "credentials": {"postgres": {"id": 7, "name": "DB"}}}
        ]});
        let map = cred_map(&[("postgres", "7", "t7", "DB prod")]);
        assert_eq!(remap_credentials(&mut wf, &map), vec![]);
        assert_eq!(wf["nodes"][0]["credentials"]["postgres"]["id"], "t7");
    }

    #[test]
    fn credentials_without_id_fall_back_to_name() {
        let mut wf = json!({"nodes": [
            {"name": "A", "type": "n8n-nodes-base.httpRequest",
             "credentials": {"httpBasicAuth": {"name": "Shop"}}},
            {"name": "B", "type": "n8n-nodes-base.httpRequest",
             "credentials": {"httpBasicAuth": {"id": "", "name": "Shop"}}},
            {"name": "C", "type": "n8n-nodes-base.httpRequest",
             "credentials": {"httpBasicAuth": "Shop"}}
        ]});
        let map = cred_map(&[("httpBasicAuth", "Shop", "t1", "Shop (prod)")]);
        assert_eq!(remap_credentials(&mut wf, &map), vec![]);
        for i in 0..3 {
            assert_eq!(
                wf["nodes"][i]["credentials"]["httpBasicAuth"],
                json!({"id": "t1", "name": "Shop (prod)"}),
                "node {i}"
            );
        }
    }

    #[test]
    fn credentials_with_an_id_are_not_matched_by_name() {
        let mut wf = json!({"nodes": [
            {"name": "A", "type": "x", "credentials": {"httpBasicAuth": {"id": "c1", "name": "Shop"}}}
        ]});
        let before = wf.clone();
        let map = cred_map(&[("httpBasicAuth", "Shop", "t1", "Shop")]);
        let unmapped = remap_credentials(&mut wf, &map);
        assert_eq!(
            unmapped,
            vec![UnmappedCredential {
                node: "A".into(),
                credential_type: "httpBasicAuth".into(),
                id: Some("c1".into()),
                name: Some("Shop".into()),
            }]
        );
        assert_eq!(wf, before);
    }

    #[test]
    fn credential_map_is_keyed_by_type_too() {
        let mut wf = json!({"nodes": [
            {"name": "A", "type": "x", "credentials": {"slackOAuth2Api": {"id": "s1", "name": "S"}}}
        ]});
        let map = cred_map(&[("slackApi", "s1", "t9", "S")]);
        assert_eq!(remap_credentials(&mut wf, &map).len(), 1);
        assert_eq!(wf["nodes"][0]["credentials"]["slackOAuth2Api"]["id"], "s1");
    }

    #[test]
    fn unmapped_credentials_are_reported_in_node_then_type_order_and_left_alone() {
        let mut wf = json!({"nodes": [
            {"name": "First", "type": "x", "credentials": {
                "zetaApi": {"id": "z1", "name": "Z"},
                "alphaApi": {"id": "a1", "name": "A"},
                "mappedApi": {"id": "m1", "name": "M"}
            }},
            {"name": "NoCreds", "type": "x"},
            {"name": "Second", "type": "x", "credentials": {"betaApi": {"name": "B"}}},
            {"name": "Third", "type": "x", "credentials": {"gammaApi": {}}}
        ]});
        let map = cred_map(&[("mappedApi", "m1", "t1", "M prod")]);
        let unmapped = remap_credentials(&mut wf, &map);
        let summary: Vec<(&str, &str, Option<&str>, Option<&str>)> = unmapped
            .iter()
            .map(|u| {
                (
                    u.node.as_str(),
                    u.credential_type.as_str(),
                    u.id.as_deref(),
                    u.name.as_deref(),
                )
            })
            .collect();
        assert_eq!(
            summary,
            vec![
                ("First", "alphaApi", Some("a1"), Some("A")),
                ("First", "zetaApi", Some("z1"), Some("Z")),
                ("Second", "betaApi", None, Some("B")),
                ("Third", "gammaApi", None, None),
            ]
        );
        assert_eq!(
            wf["nodes"][0]["credentials"]["zetaApi"],
            json!({"id": "z1", "name": "Z"})
        );
        assert_eq!(
            wf["nodes"][0]["credentials"]["mappedApi"],
            json!({"id": "t1", "name": "M prod"})
        );
    }

    #[test]
    fn credential_remap_tolerates_odd_shapes() {
        let mut wf = json!({"name": "W", "nodes": "nope"});
        assert_eq!(remap_credentials(&mut wf, &HashMap::new()), vec![]);
        let mut wf = json!({"nodes": [1, {"name": "A", "credentials": "x"}]});
        assert_eq!(remap_credentials(&mut wf, &HashMap::new()), vec![]);
    }

    fn subworkflow_sample() -> Value {
        json!({"name": "Parent", "nodes": [
            {"name": "Old", "type": "n8n-nodes-base.executeWorkflow", "typeVersion": 1,
             "parameters": {"workflowId": "src-1"}},
            {"name": "New", "type": "n8n-nodes-base.executeWorkflow", "typeVersion": 1.2,
             "parameters": {"source": "database", "workflowId":
                {"__rl": true, "value": "src-2", "mode": "list",
                 "cachedResultName": "Child dev", "cachedResultUrl": "/workflow/src-2"}}},
            {"name": "ById", "type": "n8n-nodes-base.executeWorkflow", "typeVersion": 1.1,
             "parameters": {"workflowId": {"__rl": true, "value": "src-1", "mode": "id"}}},
            {"name": "Inline", "type": "n8n-nodes-base.executeWorkflow",
             "parameters": {"source": "parameter", "workflowJson": "{}", "workflowId": "src-1"}},
            {"name": "File", "type": "n8n-nodes-base.executeWorkflow",
             "parameters": {"source": "localFile", "workflowPath": "/x.json"}},
            {"name": "Url", "type": "n8n-nodes-base.executeWorkflow",
             "parameters": {"source": "url", "workflowUrl": "https://x"}},
            {"name": "Http", "type": "n8n-nodes-base.httpRequest",
             "parameters": {"workflowId": "src-1"}}
        ]})
    }

    #[test]
    fn subworkflow_references_of_both_shapes_are_remapped() {
        let mut wf = subworkflow_sample();
        let map = wf_map(&[
            ("src-1", "tgt-1", "Child one"),
            ("src-2", "tgt-2", "Child two"),
        ]);
        let unmapped = remap_subworkflows(&mut wf, &map);
        assert_eq!(unmapped, vec![]);
        assert_eq!(wf["nodes"][0]["parameters"]["workflowId"], "tgt-1");
        assert_eq!(
            wf["nodes"][1]["parameters"]["workflowId"],
            json!({"__rl": true, "value": "tgt-2", "mode": "list",
                   "cachedResultName": "Child two", "cachedResultUrl": "/workflow/tgt-2"})
        );
        // `id` mode without a cached name: only the value changes.
        assert_eq!(
            wf["nodes"][2]["parameters"]["workflowId"],
            json!({"__rl": true, "value": "tgt-1", "mode": "id"})
        );
    }

    #[test]
    fn subworkflow_sources_other_than_database_are_ignored() {
        let mut wf = subworkflow_sample();
        let before = wf.clone();
        let map = wf_map(&[
            ("src-1", "tgt-1", "Child one"),
            ("src-2", "tgt-2", "Child two"),
        ]);
        remap_subworkflows(&mut wf, &map);
        for i in 3..7 {
            assert_eq!(wf["nodes"][i], before["nodes"][i], "node {i}");
        }
        assert_eq!(subworkflow_refs(&before), vec!["src-1", "src-2"]);
    }

    #[test]
    fn unmapped_subworkflows_are_reported_and_left_alone() {
        let mut wf = subworkflow_sample();
        let before = wf.clone();
        let map = wf_map(&[("src-2", "tgt-2", "Child two")]);
        let unmapped = remap_subworkflows(&mut wf, &map);
        assert_eq!(
            unmapped,
            vec![
                UnmappedSubworkflow {
                    node: "Old".into(),
                    workflow_id: "src-1".into()
                },
                UnmappedSubworkflow {
                    node: "ById".into(),
                    workflow_id: "src-1".into()
                },
            ]
        );
        assert_eq!(wf["nodes"][0], before["nodes"][0]);
        assert_eq!(wf["nodes"][2], before["nodes"][2]);
        assert_eq!(wf["nodes"][1]["parameters"]["workflowId"]["value"], "tgt-2");
    }

    #[test]
    fn subworkflow_expressions_are_reported_not_rewritten() {
        let mut wf = json!({"nodes": [
            {"name": "Dyn", "type": "n8n-nodes-base.executeWorkflow",
             "parameters": {"workflowId": {"__rl": true, "value": "={{ $json.id }}", "mode": "id"}}}
        ]});
        let before = wf.clone();
        let unmapped = remap_subworkflows(&mut wf, &wf_map(&[("x", "y", "z")]));
        assert_eq!(
            unmapped,
            vec![UnmappedSubworkflow {
                node: "Dyn".into(),
                workflow_id: "={{ $json.id }}".into()
            }]
        );
        assert_eq!(wf, before);
        assert_eq!(subworkflow_refs(&before), Vec::<String>::new());
    }

    #[test]
    fn list_mode_gets_a_cached_name_and_numeric_ids_become_text() {
        let mut wf = json!({"nodes": [
            {"name": "L", "type": "n8n-nodes-base.executeWorkflow",
             "parameters": {"workflowId": {"__rl": true, "value": "a", "mode": "list"}}},
            {"name": "N", "type": "n8n-nodes-base.executeWorkflow", "parameters": {"workflowId": 12}},
            {"name": "Tool", "type": "@n8n/n8n-nodes-langchain.toolWorkflow",
             "parameters": {"workflowId": {"__rl": true, "value": "a", "mode": "list",
                                           "cachedResultName": "A dev"}}},
            {"name": "Empty", "type": "n8n-nodes-base.executeWorkflow",
             "parameters": {"workflowId": {"__rl": true, "value": "", "mode": "list"}}}
        ]});
        let map = wf_map(&[("a", "ta", "A prod"), ("12", "t12", "Twelve")]);
        assert_eq!(remap_subworkflows(&mut wf, &map), vec![]);
        assert_eq!(
            wf["nodes"][0]["parameters"]["workflowId"]["cachedResultName"],
            "A prod"
        );
        assert_eq!(wf["nodes"][1]["parameters"]["workflowId"], "t12");
        assert_eq!(wf["nodes"][2]["parameters"]["workflowId"]["value"], "ta");
        assert_eq!(
            wf["nodes"][2]["parameters"]["workflowId"]["cachedResultName"],
            "A prod"
        );
        assert_eq!(wf["nodes"][3]["parameters"]["workflowId"]["value"], "");
    }

    #[test]
    fn subworkflow_refs_are_distinct_in_node_order_including_disabled_nodes() {
        let wf = json!({"nodes": [
            {"name": "A", "type": "n8n-nodes-base.executeWorkflow", "parameters": {"workflowId": "b"}},
            {"name": "B", "type": "n8n-nodes-base.executeWorkflow", "disabled": true,
             "parameters": {"workflowId": {"__rl": true, "value": "a", "mode": "list"}}},
            {"name": "C", "type": "n8n-nodes-base.executeWorkflow", "parameters": {"workflowId": "b"}},
            {"name": "D", "type": "n8n-nodes-base.executeWorkflow", "parameters": {}}
        ]});
        assert_eq!(subworkflow_refs(&wf), vec!["b", "a"]);
        assert_eq!(subworkflow_refs(&json!({})), Vec::<String>::new());
    }

    fn valid() -> Value {
        json!({
            "name": "Orders",
            "nodes": [
                {"name": "Hook", "type": "n8n-nodes-base.webhook", "parameters": {"path": "o"}},
                {"name": "Check", "type": "n8n-nodes-base.if", "parameters": {}},
                {"name": "Call", "type": "n8n-nodes-base.httpRequest", "parameters": {}}
            ],
            "connections": {
                "Hook": {"main": [[{"node": "Check", "type": "main", "index": 0}]]},
                "Check": {"main": [[{"node": "Call", "type": "main", "index": 0}], []]}
            },
            "settings": {}
        })
    }

    #[test]
    fn preflight_passes_a_well_formed_workflow() {
        assert_eq!(preflight_problems(&valid()), Vec::<String>::new());
        let mut no_connections = valid();
        no_connections["connections"] = Value::Null;
        assert_eq!(preflight_problems(&no_connections), Vec::<String>::new());
    }

    #[test]
    fn preflight_catches_duplicate_node_names_once() {
        let mut wf = valid();
        wf["nodes"][2]["name"] = json!("Check");
        if let Some(nodes) = wf["nodes"].as_array_mut() {
            nodes.push(json!({"name": "Check", "type": "n8n-nodes-base.set"}));
        }
        wf["connections"]["Check"]["main"][0] = json!([]);
        assert_eq!(
            preflight_problems(&wf),
            vec!["more than one node is named \"Check\"".to_owned()]
        );
    }

    #[test]
    fn preflight_catches_dangling_connections() {
        let mut wf = valid();
        wf["connections"]["Ghost"] =
            json!({"main": [[{"node": "Call", "type": "main", "index": 0}]]});
        if let Some(targets) = wf["connections"]["Hook"]["main"][0].as_array_mut() {
            targets.push(json!({"node": "Nowhere", "type": "main", "index": 0}));
        }
        wf["connections"]["Check"]["ai_tool"] = json!([[{"type": "ai_tool", "index": 0}]]);
        let problems = preflight_problems(&wf);
        assert_eq!(problems.len(), 3, "{problems:?}");
        assert!(problems.contains(
            &"a connection starts at \"Ghost\", which is not a node of the workflow".to_owned()
        ));
        assert!(problems.contains(
            &"the connection from \"Hook\" to \"Nowhere\" ends at a node the workflow does not have"
                .to_owned()
        ));
        assert!(problems.contains(&"a connection from \"Check\" names no target node".to_owned()));
    }

    #[test]
    fn preflight_catches_missing_and_empty_types_and_names() {
        let mut wf = valid();
        wf["name"] = json!("  ");
        wf["nodes"][0]["name"] = json!("");
        if let Some(node) = wf["nodes"][1].as_object_mut() {
            node.remove("type");
        }
        wf["nodes"][2]["type"] = json!("");
        wf["connections"] = json!({});
        assert_eq!(
            preflight_problems(&wf),
            vec![
                "the workflow has no name".to_owned(),
                "node 1 has no name".to_owned(),
                "node \"Check\" has no type".to_owned(),
                "node \"Call\" has no type".to_owned(),
            ]
        );
    }

    #[test]
    fn preflight_rejects_wrong_top_level_shapes() {
        assert_eq!(
            preflight_problems(&json!([])),
            vec!["the workflow is not a JSON object".to_owned()]
        );
        assert_eq!(
            preflight_problems(&json!({"name": "W", "nodes": {}})),
            vec!["`nodes` is not an array".to_owned()]
        );
        assert_eq!(
            preflight_problems(&json!({"nodes": []})),
            vec!["the workflow has no name".to_owned()]
        );
        assert_eq!(
            preflight_problems(&json!({"name": "W", "nodes": [7], "connections": []})),
            vec![
                "node 1 is not a JSON object".to_owned(),
                "`connections` is not an object".to_owned()
            ]
        );
    }

    fn pairs(v: &[(&str, &str)]) -> Vec<(String, String)> {
        v.iter()
            .map(|(m, p)| ((*m).to_owned(), (*p).to_owned()))
            .collect()
    }

    #[test]
    fn webhook_paths_default_to_get_and_are_normalised() {
        let wf = json!({"nodes": [
            {"name": "A", "type": "n8n-nodes-base.webhook", "webhookId": "w-a",
             "parameters": {"path": "/orders/new/"}},
            {"name": "B", "type": "n8n-nodes-base.webhook", "webhookId": "w-b",
             "parameters": {"path": "orders", "httpMethod": "post"}},
            {"name": "Set", "type": "n8n-nodes-base.set", "parameters": {"path": "not/a/hook"}}
        ]});
        assert_eq!(
            webhook_paths(&wf),
            pairs(&[("GET", "orders/new"), ("POST", "orders")])
        );
    }

    #[test]
    fn webhook_paths_skip_disabled_nodes() {
        let wf = json!({"nodes": [
            {"name": "Off", "type": "n8n-nodes-base.webhook", "disabled": true,
             "parameters": {"path": "off"}},
            {"name": "On", "type": "n8n-nodes-base.webhook", "disabled": false,
             "parameters": {"path": "on"}}
        ]});
        assert_eq!(webhook_paths(&wf), pairs(&[("GET", "on")]));
    }

    #[test]
    fn webhook_paths_cover_forms_multiple_methods_and_other_webhook_nodes() {
        let wf = json!({"nodes": [
            {"name": "Form", "type": "n8n-nodes-base.formTrigger", "webhookId": "f",
             "parameters": {"path": "signup"}},
            {"name": "Multi", "type": "n8n-nodes-base.webhook", "webhookId": "m",
             "parameters": {"path": "multi", "multipleMethods": true,
                            "httpMethod": ["put", "DELETE", "PUT"]}},
            {"name": "MultiDefault", "type": "n8n-nodes-base.webhook", "webhookId": "md",
             "parameters": {"path": "md", "multipleMethods": true}},
            {"name": "Mcp", "type": "@n8n/n8n-nodes-langchain.mcpTrigger", "webhookId": "x",
             "parameters": {"path": "mcp/"}},
            {"name": "Slack", "type": "n8n-nodes-base.slackTrigger", "webhookId": "s",
             "parameters": {}}
        ]});
        assert_eq!(
            webhook_paths(&wf),
            pairs(&[
                ("GET", "signup"),
                ("POST", "signup"),
                ("PUT", "multi"),
                ("DELETE", "multi"),
                ("GET", "md"),
                ("POST", "md"),
                ("GET", "mcp"),
            ])
        );
    }

    #[test]
    fn webhook_paths_follow_n8n_for_empty_dynamic_and_expression_paths() {
        let wf = json!({"nodes": [
            {"name": "Empty", "type": "n8n-nodes-base.webhook", "webhookId": "abc-123",
             "parameters": {"path": ""}},
            {"name": "Dynamic", "type": "n8n-nodes-base.webhook", "webhookId": "dyn",
             "parameters": {"path": "/users/:id", "httpMethod": "PATCH"}},
            {"name": "Expr", "type": "n8n-nodes-base.webhook", "webhookId": "e",
             "parameters": {"path": "={{ $env.P }}"}},
            {"name": "Nothing", "type": "n8n-nodes-base.webhook", "parameters": {}}
        ]});
        assert_eq!(
            webhook_paths(&wf),
            pairs(&[("GET", "abc-123"), ("PATCH", "dyn/users/:id")])
        );
    }

    #[test]
    fn node_types_are_sorted_and_distinct() {
        let wf = json!({"nodes": [
            {"name": "a", "type": "n8n-nodes-base.set"},
            {"name": "b", "type": "n8n-nodes-base.code"},
            {"name": "c", "type": "n8n-nodes-base.set", "disabled": true},
            {"name": "d", "type": "n8n-nodes-community.thing"},
            {"name": "e"},
            {"name": "f", "type": ""}
        ]});
        assert_eq!(
            node_types(&wf),
            vec![
                "n8n-nodes-base.code",
                "n8n-nodes-base.set",
                "n8n-nodes-community.thing"
            ]
        );
        assert_eq!(node_types(&json!({"nodes": null})), Vec::<String>::new());
    }

    #[test]
    fn builtin_node_types_are_recognised() {
        assert!(is_builtin_node_type("n8n-nodes-base.webhook"));
        assert!(is_builtin_node_type("@n8n/n8n-nodes-langchain.agent"));
        assert!(!is_builtin_node_type("n8n-nodes-base."));
        assert!(!is_builtin_node_type(
            "n8n-nodes-evolution-api.evolutionApi"
        ));
        assert!(!is_builtin_node_type("@acme/n8n-nodes-base.thing"));
        assert!(!is_builtin_node_type("N8N-NODES-BASE.webhook"));
        assert!(!is_builtin_node_type(""));
    }

    #[test]
    fn a_scenarios_connections_are_remapped_by_type_and_id() {
        let mut scenario = crate::make::tests::sample();
        let map = HashMap::from([(
            ("google".to_owned(), "5501".to_owned()),
            CredentialTarget {
                id: "9001".into(),
                name: "Prod Google".into(),
            },
        )]);
        let unmapped = remap_credentials(&mut scenario, &map);
        let sheets = &scenario["blueprint"]["flow"][1]["routes"][0]["flow"][0];
        assert_eq!(sheets["parameters"]["__IMTCONN__"], json!(9001));
        assert_eq!(
            sheets["metadata"]["restore"]["parameters"]["__IMTCONN__"]["label"],
            "Prod Google"
        );
        assert_eq!(
            unmapped,
            vec![UnmappedCredential {
                node: "slack:CreateMessage [4]".into(),
                credential_type: "slack".into(),
                id: Some("7702".into()),
                name: None,
            }]
        );
        let slack = &scenario["blueprint"]["flow"][1]["routes"][1]["flow"][0];
        assert_eq!(slack["parameters"]["__IMTCONN__"], "7702", "left as it was");
        assert!(preflight_problems(&scenario).is_empty());
        assert!(webhook_paths(&scenario).is_empty() && node_types(&scenario).is_empty());
    }

    fn slack_of(scenario: &Value) -> &Value {
        &scenario["blueprint"]["flow"][1]["routes"][1]["flow"][0]
    }

    #[test]
    fn a_connection_the_designer_did_not_cache_is_typed_by_the_source_teams_connections() {
        let map = HashMap::from([(
            ("slack2".to_owned(), "7702".to_owned()),
            CredentialTarget {
                id: "8800".into(),
                name: "Prod Slack".into(),
            },
        )]);
        let known = HashMap::from([(
            "7702".to_owned(),
            KnownConnection {
                connection_type: "slack2".into(),
                name: "Ops Slack".into(),
            },
        )]);
        let mut scenario = crate::make::tests::sample();
        let team = TargetTeam {
            source_connections: Some(&known),
            target_copy: None,
        };
        let out = remap_credentials_for_target(&mut scenario, &map, &team);
        assert_eq!(slack_of(&scenario)["parameters"]["__IMTCONN__"], 8800);
        assert_eq!(out.unmapped.len(), 1, "{out:?}");
        assert_eq!(out.unmapped[0].node, "Log order [3]");
        // Without the source team's connections the app is taken for the type: no match.
        let mut plain = crate::make::tests::sample();
        let unmapped = remap_credentials(&mut plain, &map);
        assert_eq!(unmapped.len(), 2, "{unmapped:?}");
    }

    #[test]
    fn an_unmapped_connection_takes_the_target_copys_own_or_none() {
        let mut target = crate::make::tests::sample();
        target["blueprint"]["flow"][1]["routes"][1]["flow"][0]["parameters"]["__IMTCONN__"] =
            json!(9911);
        if let Some(p) =
            target["blueprint"]["flow"][1]["routes"][0]["flow"][0]["parameters"].as_object_mut()
        {
            p.remove("__IMTCONN__");
        }
        let mut scenario = crate::make::tests::sample();
        let team = TargetTeam {
            source_connections: None,
            target_copy: Some(&target),
        };
        let out = remap_credentials_for_target(&mut scenario, &HashMap::new(), &team);
        assert_eq!(out.unmapped.len(), 2);
        assert_eq!(
            out.without_connection,
            vec![UnmappedCredential {
                node: "Log order [3]".into(),
                credential_type: "google".into(),
                id: Some("5501".into()),
                name: Some("Sales Google".into()),
            }]
        );
        assert_eq!(
            slack_of(&scenario)["parameters"]["__IMTCONN__"],
            9911,
            "the target's own"
        );
        let sheets = &scenario["blueprint"]["flow"][1]["routes"][0]["flow"][0];
        assert_eq!(sheets["parameters"], json!({"mode": "select"}));
        assert!(
            sheets["metadata"]["restore"]["parameters"]
                .get("__IMTCONN__")
                .is_none(),
            "no cache of a connection the module no longer has"
        );
        // A new copy: nothing of the source team's is written.
        let mut fresh = crate::make::tests::sample();
        let out = remap_credentials_for_target(&mut fresh, &HashMap::new(), &TargetTeam::default());
        assert_eq!(out.without_connection.len(), 2);
        assert!(crate::make::connections_by_module(&fresh).is_empty());
    }

    #[test]
    fn an_n8n_workflow_is_remapped_for_a_target_as_it_always_was() {
        let wf = json!({"nodes": [
            {"name": "DB", "type": "n8n-nodes-base.postgres",
             "credentials": {"postgres": {"id": "sc1", "name": "Main DB"}}},
            {"name": "Chat", "type": "n8n-nodes-base.slack",
             "credentials": {"slackApi": {"id": "sc2", "name": "Alerts"}}}
        ]});
        let map = HashMap::from([(
            ("postgres".to_owned(), "sc1".to_owned()),
            CredentialTarget {
                id: "tc1".into(),
                name: "Main DB".into(),
            },
        )]);
        let (mut a, mut b) = (wf.clone(), wf);
        let out = remap_credentials_for_target(&mut a, &map, &TargetTeam::default());
        let unmapped = remap_credentials(&mut b, &map);
        assert_eq!(a, b);
        assert_eq!(out.unmapped, unmapped);
        assert!(out.without_connection.is_empty());
        assert_eq!(
            a["nodes"][1]["credentials"]["slackApi"]["id"], "sc2",
            "kept"
        );
    }
}
