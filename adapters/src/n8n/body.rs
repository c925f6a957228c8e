//! What an n8n instance accepts in a workflow write, by version: every per-version rule of the
//! write path lives here, so a workflow read from one version can be written to another.

use serde_json::{Map, Value};

/// An n8n version, `major.minor.patch`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Version {
    pub major: u32,
    pub minor: u32,
    pub patch: u32,
}

impl Version {
    pub const fn new(major: u32, minor: u32, patch: u32) -> Self {
        Self {
            major,
            minor,
            patch,
        }
    }

    /// Parses `2.41.1` (a leading `v` and a `-suffix` are ignored). None when unreadable.
    pub fn parse(s: &str) -> Option<Self> {
        let core = s.trim().trim_start_matches('v');
        let core = core.split(['-', '+']).next()?;
        let mut parts = core.split('.').map(|p| p.parse::<u32>().ok());
        let major = parts.next()??;
        let minor = parts.next().flatten().unwrap_or(0);
        let patch = parts.next().flatten().unwrap_or(0);
        Some(Self::new(major, minor, patch))
    }

    /// The version assumed when an instance does not say: the oldest rules, which every
    /// supported version accepts.
    pub const OLDEST: Self = Self::new(1, 0, 0);
}

/// `GET /credentials` exists from 2.8.0.
pub const LIST_CREDENTIALS_SINCE: Version = Version::new(2, 8, 0);
/// `archive`/`unarchive` and `publish`/`unpublish` verbs exist from 2.0.0.
pub const ARCHIVE_SINCE: Version = Version::new(2, 0, 0);

const REQUIRED: [&str; 4] = ["name", "nodes", "connections", "settings"];
const OPTIONAL_1X: &[&str] = &["staticData"];
const OPTIONAL_2X: &[&str] = &["description", "staticData", "pinData", "nodeGroups"];

const SETTINGS_1X: &[&str] = &[
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
const SETTINGS_2X_EXTRA: &[&str] = &[
    "binaryMode",
    "timeSavedMode",
    "redactionPolicy",
    "customTelemetryTags",
    "credentialResolverId",
];

fn optional_fields(v: Version) -> &'static [&'static str] {
    if v.major >= 2 {
        OPTIONAL_2X
    } else {
        OPTIONAL_1X
    }
}

fn settings_allowed(v: Version, key: &str) -> bool {
    SETTINGS_1X.contains(&key) || (v.major >= 2 && SETTINGS_2X_EXTRA.contains(&key))
}

/// The body to POST or PUT for `workflow` (any workflow JSON, e.g. as another version's GET
/// returned it) on an instance of version `v`: only the fields `v` accepts, settings keys it
/// knows, no `"DEFAULT"` values (GET returns them, writes refuse them), no null description.
/// Required fields that are missing become empty values, and `name` is kept as given.
pub fn write_body(workflow: &Value, v: Version) -> Value {
    let source = workflow.as_object();
    let get = |key: &str| source.and_then(|o| o.get(key));
    let mut body = Map::new();
    for key in REQUIRED {
        let value = match (key, get(key)) {
            ("settings", Some(Value::Object(settings))) => Value::Object(
                settings
                    .iter()
                    .filter(|(k, value)| {
                        settings_allowed(v, k)
                            && !value.is_null()
                            && value.as_str() != Some("DEFAULT")
                    })
                    .map(|(k, value)| (k.clone(), value.clone()))
                    .collect(),
            ),
            (_, Some(value)) if !value.is_null() => value.clone(),
            ("name", _) => Value::String(String::new()),
            ("nodes", _) => Value::Array(Vec::new()),
            (_, _) => Value::Object(Map::new()),
        };
        body.insert(key.to_owned(), value);
    }
    for key in optional_fields(v) {
        match get(key) {
            None | Some(Value::Null) => {}
            Some(Value::Object(o)) if o.is_empty() && *key == "pinData" => {}
            Some(value) => {
                if *key == "description" && !value.is_string() {
                    continue;
                }
                body.insert((*key).to_owned(), value.clone());
            }
        }
    }
    Value::Object(body)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn from_2x() -> Value {
        json!({
            "id": "abc", "name": "Orders", "active": true, "isArchived": false,
            "description": null, "versionId": "v1", "tags": [{"id": "1", "name": "x"}],
            "nodes": [{"name": "Start", "type": "n8n-nodes-base.manualTrigger", "typeVersion": 1,
                       "position": [0, 0], "parameters": {}}],
            "connections": {}, "staticData": null, "pinData": {}, "meta": {"a": 1},
            "settings": {"executionOrder": "v1", "binaryMode": "separate",
                         "saveManualExecutions": "DEFAULT", "callerPolicy": "workflowsFromSameOwner"},
            "shared": [], "triggerCount": 1, "activeVersionId": "v1", "versionCounter": 3,
            "createdAt": "2026-01-01T00:00:00.000Z", "updatedAt": "2026-01-02T00:00:00.000Z"
        })
    }

    #[test]
    fn versions_parse_with_and_without_suffixes() {
        assert_eq!(Version::parse("2.41.1"), Some(Version::new(2, 41, 1)));
        assert_eq!(Version::parse("v1.123.81"), Some(Version::new(1, 123, 81)));
        assert_eq!(Version::parse("2.8.0-rc.1"), Some(Version::new(2, 8, 0)));
        assert_eq!(Version::parse("2"), Some(Version::new(2, 0, 0)));
        assert_eq!(Version::parse("latest"), None);
        assert!(Version::new(2, 8, 0) >= LIST_CREDENTIALS_SINCE);
        assert!(Version::new(2, 7, 9) < LIST_CREDENTIALS_SINCE);
    }

    #[test]
    fn a_2x_workflow_written_to_1x_keeps_only_what_1x_accepts() {
        let body = write_body(&from_2x(), Version::new(1, 123, 81));
        let mut keys: Vec<&String> = body
            .as_object()
            .map(|o| o.keys().collect())
            .unwrap_or_default();
        keys.sort();
        assert_eq!(keys, ["connections", "name", "nodes", "settings"]);
        assert_eq!(
            body["settings"],
            json!({"executionOrder": "v1", "callerPolicy": "workflowsFromSameOwner"})
        );
    }

    #[test]
    fn a_2x_workflow_written_to_2x_keeps_2x_fields_but_no_read_only_ones() {
        let mut wf = from_2x();
        wf["description"] = json!("what it does");
        wf["pinData"] = json!({"Start": [{"json": {}}]});
        let body = write_body(&wf, Version::new(2, 41, 1));
        for read_only in [
            "id",
            "active",
            "tags",
            "versionId",
            "meta",
            "shared",
            "isArchived",
        ] {
            assert!(
                body.get(read_only).is_none(),
                "{read_only} must not be written"
            );
        }
        assert_eq!(body["description"], "what it does");
        assert_eq!(body["settings"]["binaryMode"], "separate");
        assert!(
            body["settings"].get("saveManualExecutions").is_none(),
            "DEFAULT is refused by writes"
        );
        assert!(body.get("pinData").is_some());
    }

    #[test]
    fn missing_required_fields_become_empty_values() {
        let body = write_body(&json!({"name": "Bare"}), Version::new(2, 0, 0));
        assert_eq!(
            body,
            json!({"name": "Bare", "nodes": [], "connections": {}, "settings": {}})
        );
    }
}
