//! How Make's JSON maps to WorkflowOps' and back: a scenario and its blueprint as one workflow
//! document, the bodies written to create or change one, and connections, users and scenario
//! logs as the catalog's rows. Pure functions, so every rule is unit-tested here.

use chrono::{DateTime, Utc};
use serde_json::{Map, Value, json};

use crate::provider::{CredentialMeta, Execution, ProviderError, ProviderResult, ProviderUser};

/// What Make schedules a scenario with when a workflow does not say: every 15 minutes.
pub fn default_scheduling() -> Value {
    json!({"type": "indefinitely", "interval": 900})
}

/// A Make id (a number, or digits in a string, as our documents carry them).
pub fn id_of(v: Option<&Value>) -> Option<u64> {
    match v? {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

fn text(v: &Value, key: &str) -> Option<String> {
    match v.get(key)? {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

fn time(v: &Value, key: &str) -> Option<DateTime<Utc>> {
    v.get(key)
        .and_then(Value::as_str)
        .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
        .map(|t| t.with_timezone(&Utc))
}

/// Make sends blueprints and schedulings as objects in some answers and as JSON text in others
/// (and takes them only as text): either way, the object.
fn object_or_text(v: &Value) -> Option<Map<String, Value>> {
    match v {
        Value::Object(o) => Some(o.clone()),
        Value::String(s) => match serde_json::from_str(s) {
            Ok(Value::Object(o)) => Some(o),
            _ => None,
        },
        _ => None,
    }
}

/// The blueprint out of `GET /scenarios/{id}/blueprint`'s `response`.
fn blueprint_of(response: &Value) -> ProviderResult<Map<String, Value>> {
    response
        .get("blueprint")
        .and_then(object_or_text)
        .filter(|b| b.get("flow").is_some_and(Value::is_array))
        .ok_or_else(|| ProviderError::InvalidResponse("a blueprint without a `flow` list".into()))
}

/// A scenario (as `GET /scenarios/{id}` or a list returns it) and its blueprint response as one
/// workflow document. Only the fields that describe the scenario are kept: Make's counters
/// (operations, transfer, dlqCount, nextExec, …) change with every run and would read as drift.
pub fn workflow(scenario: &Value, blueprint_response: &Value) -> ProviderResult<Value> {
    let id = id_of(scenario.get("id")).ok_or_else(|| {
        ProviderError::InvalidResponse("a scenario without a numeric `id`".into())
    })?;
    let name = scenario
        .get("name")
        .and_then(Value::as_str)
        .ok_or_else(|| ProviderError::InvalidResponse(format!("scenario {id} without `name`")))?;
    let blueprint = blueprint_of(blueprint_response)?;
    let scheduling = scenario
        .get("scheduling")
        .and_then(object_or_text)
        .or_else(|| {
            blueprint_response
                .get("scheduling")
                .and_then(object_or_text)
        })
        .map_or(Value::Null, Value::Object);
    let active = scenario
        .get("isActive")
        .or_else(|| scenario.get("islinked"))
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let field = |key: &str| scenario.get(key).cloned().unwrap_or(Value::Null);
    Ok(json!({
        "id": id.to_string(),
        "name": name,
        "active": active,
        "createdAt": field("created"),
        "updatedAt": field("lastEdit"),
        "teamId": field("teamId"),
        "folderId": field("folderId"),
        "description": field("description"),
        "isPaused": scenario.get("isPaused").and_then(Value::as_bool).unwrap_or(false),
        "scheduling": scheduling,
        "blueprint": Value::Object(blueprint),
    }))
}

/// A workflow's blueprint, named after the workflow (the name a scenario is created with is
/// its blueprint's).
fn blueprint_to_write(workflow: &Value) -> ProviderResult<Option<Map<String, Value>>> {
    let Some(raw) = workflow.get("blueprint").filter(|b| !b.is_null()) else {
        return Ok(None);
    };
    let mut blueprint = object_or_text(raw)
        .filter(|b| b.get("flow").is_some_and(Value::is_array))
        .ok_or_else(|| {
            ProviderError::Validation(
                "a Make scenario's `blueprint` must be an object with a `flow` list".into(),
            )
        })?;
    if let Some(name) = workflow
        .get("name")
        .and_then(Value::as_str)
        .filter(|n| !n.trim().is_empty())
    {
        blueprint.insert("name".into(), Value::String(name.to_owned()));
    }
    Ok(Some(blueprint))
}

fn scheduling_to_write(workflow: &Value) -> ProviderResult<Option<Map<String, Value>>> {
    match workflow.get("scheduling") {
        None | Some(Value::Null) => Ok(None),
        Some(v) => object_or_text(v)
            .filter(|s| s.get("type").is_some_and(Value::is_string))
            .map(Some)
            .ok_or_else(|| {
                ProviderError::Validation(
                    "a Make scenario's `scheduling` must be an object with a `type`".into(),
                )
            }),
    }
}

fn as_text(object: Map<String, Value>) -> Value {
    Value::String(Value::Object(object).to_string())
}

/// `POST /scenarios` for any workflow document of this shape, read from this team or another:
/// its id, team and read-only fields are left out, and its folder only kept within its team
/// (another team's folder id means nothing here).
pub fn create_body(workflow: &Value, team_id: u64) -> ProviderResult<Value> {
    let blueprint = blueprint_to_write(workflow)?.ok_or_else(|| {
        ProviderError::Validation("a Make scenario needs a `blueprint` object".into())
    })?;
    let scheduling = scheduling_to_write(workflow)?
        .or_else(|| default_scheduling().as_object().cloned())
        .unwrap_or_default();
    let mut body = Map::new();
    body.insert("teamId".into(), team_id.into());
    let same_team = id_of(workflow.get("teamId")).is_none_or(|t| t == team_id);
    if let Some(folder) = id_of(workflow.get("folderId")).filter(|f| same_team && *f > 0) {
        body.insert("folderId".into(), folder.into());
    }
    body.insert("blueprint".into(), as_text(blueprint));
    body.insert("scheduling".into(), as_text(scheduling));
    Ok(Value::Object(body))
}

/// A workflow's description, which `POST /scenarios` cannot take (the adapter sets it with a
/// `PATCH` after creating).
pub fn description(workflow: &Value) -> Option<&str> {
    workflow.get("description").and_then(Value::as_str)
}

/// `PATCH /scenarios/{id}`: the name, blueprint, scheduling and description the workflow
/// carries.
pub fn update_body(workflow: &Value) -> ProviderResult<Value> {
    let mut body = Map::new();
    if let Some(name) = workflow
        .get("name")
        .and_then(Value::as_str)
        .filter(|n| !n.trim().is_empty())
    {
        body.insert("name".into(), Value::String(name.to_owned()));
    }
    if let Some(blueprint) = blueprint_to_write(workflow)? {
        body.insert("blueprint".into(), as_text(blueprint));
    }
    if let Some(scheduling) = scheduling_to_write(workflow)? {
        body.insert("scheduling".into(), as_text(scheduling));
    }
    if let Some(description) = description(workflow) {
        body.insert("description".into(), Value::String(description.to_owned()));
    }
    if body.is_empty() {
        return Err(ProviderError::Validation(
            "nothing to change: give a `name`, `blueprint` or `scheduling`".into(),
        ));
    }
    Ok(Value::Object(body))
}

/// A Make connection (its credentials); the type is the connection's app (`accountName`, e.g.
/// `slack2`), what a connection elsewhere must match, else its auth kind (`accountType`).
pub fn credential(v: &Value) -> ProviderResult<CredentialMeta> {
    let missing =
        |key: &str| ProviderError::InvalidResponse(format!("a connection without `{key}`"));
    Ok(CredentialMeta {
        id: text(v, "id").ok_or_else(|| missing("id"))?,
        name: text(v, "name").ok_or_else(|| missing("name"))?,
        cred_type: text(v, "accountName")
            .or_else(|| text(v, "accountType"))
            .ok_or_else(|| missing("accountName"))?,
        created_at: None,
        updated_at: None,
    })
}

/// A team member. Make has one `name`, kept whole as the first name; the role is the team role's
/// id (`teamRoleId`), the names of which `GET /users/roles` lists.
pub fn user(v: &Value) -> ProviderResult<ProviderUser> {
    Ok(ProviderUser {
        id: text(v, "id")
            .ok_or_else(|| ProviderError::InvalidResponse("a user without `id`".into()))?,
        email: text(v, "email").unwrap_or_default(),
        first_name: text(v, "name"),
        last_name: None,
        role: text(v, "teamRoleId"),
        is_pending: false,
    })
}

/// Make's log status for a status filter: 1 success, 2 warning, 3 error.
pub fn log_status(status: &str) -> Option<u8> {
    match status {
        "success" => Some(1),
        "warning" => Some(2),
        "error" => Some(3),
        _ => None,
    }
}

/// The longest run a log's `duration` is taken to say: Make ends a run long before (40 minutes
/// at most), so anything longer is a broken or hostile answer, cut to this.
pub const LONGEST_RUN: chrono::TimeDelta = chrono::TimeDelta::days(7);

/// A log's `duration` (milliseconds) as a run's length: missing, negative or unreadable is
/// none, more than [`LONGEST_RUN`] (a number of any size or kind) is [`LONGEST_RUN`].
fn run_length(duration: Option<&Value>) -> chrono::TimeDelta {
    let longest = LONGEST_RUN.num_milliseconds();
    let ms = match duration {
        Some(Value::Number(n)) => match (n.as_i64(), n.as_u64(), n.as_f64()) {
            (Some(ms), _, _) => ms.clamp(0, longest),
            (None, Some(_), _) => longest,
            // `as` saturates (NaN is 0) and the clamp bounds the rest.
            (None, None, Some(ms)) => (ms as i64).clamp(0, longest),
            (None, None, None) => 0,
        },
        _ => 0,
    };
    chrono::TimeDelta::try_milliseconds(ms).unwrap_or(chrono::TimeDelta::zero())
}

/// One scenario log entry as an execution; None for entries that are not runs (`modify`: an
/// edit of the scenario). `timestamp` is when the run was logged; its end is that plus
/// `duration` (milliseconds, at most [`LONGEST_RUN`]; none when the sum is past what a time can
/// be). Logs carry no error text (the log's detail endpoint does).
pub fn execution(log: &Value, scenario_id: &str) -> ProviderResult<Option<Execution>> {
    if log.get("type").and_then(Value::as_str) == Some("modify") {
        return Ok(None);
    }
    let id = text(log, "id")
        .filter(|i| !i.is_empty())
        .ok_or_else(|| ProviderError::InvalidResponse("a scenario log without `id`".into()))?;
    let (status, finished) = match log.get("status").and_then(Value::as_u64) {
        Some(1) => ("success", true),
        Some(2) => ("warning", true),
        Some(3) => ("error", true),
        None | Some(0) => ("running", false),
        Some(_) => ("unknown", false),
    };
    let started_at = time(log, "timestamp");
    let stopped_at = started_at
        .filter(|_| finished)
        .and_then(|t| t.checked_add_signed(run_length(log.get("duration"))));
    Ok(Some(Execution {
        id,
        workflow_id: Some(scenario_id.to_owned()),
        status: status.to_owned(),
        mode: text(log, "type"),
        finished,
        started_at,
        stopped_at,
        error_message: None,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scenario() -> Value {
        json!({
            "id": 1234, "name": "Orders to Sheets", "teamId": 42, "folderId": 7,
            "description": "", "isActive": true, "islinked": true, "isPaused": false,
            "isinvalid": false, "usedPackages": ["google-sheets"], "operations": 512,
            "transfer": 9000, "dlqCount": 0, "nextExec": "2026-01-02T00:15:00.000Z",
            "lastEdit": "2026-01-02T00:00:00.000Z", "created": "2026-01-01T00:00:00.000Z",
            "scheduling": {"type": "indefinitely", "interval": 900},
        })
    }

    fn blueprint() -> Value {
        json!({
            "name": "Orders to Sheets",
            "flow": [{"id": 1, "module": "google-sheets:addRow", "version": 2,
                      "parameters": {"__IMTCONN__": 5001}, "mapper": {"a": "{{1.x}}"},
                      "metadata": {"designer": {"x": 0, "y": 0}}}],
            "metadata": {"instant": false, "version": 1}
        })
    }

    #[test]
    fn a_scenario_reads_as_a_workflow_without_its_counters() {
        let wf = workflow(&scenario(), &json!({"blueprint": blueprint()}))
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(wf["id"], "1234");
        assert_eq!(wf["active"], true);
        assert_eq!(wf["createdAt"], "2026-01-01T00:00:00.000Z");
        assert_eq!(wf["updatedAt"], "2026-01-02T00:00:00.000Z");
        assert_eq!(wf["teamId"], 42);
        assert_eq!(wf["scheduling"]["interval"], 900);
        assert_eq!(wf["blueprint"], blueprint());
        for counter in [
            "operations",
            "transfer",
            "dlqCount",
            "nextExec",
            "usedPackages",
        ] {
            assert!(wf.get(counter).is_none(), "{counter} is not kept");
        }
        // Blueprints and schedulings sent as JSON text read the same.
        let mut as_text = scenario();
        as_text["scheduling"] = json!(r#"{"type":"indefinitely","interval":900}"#);
        let same = workflow(&as_text, &json!({"blueprint": blueprint().to_string()}))
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(same, wf);
    }

    #[test]
    fn unreadable_scenarios_are_invalid_responses() {
        for (s, b) in [
            (json!({"name": "x"}), json!({"blueprint": blueprint()})),
            (json!({"id": 1}), json!({"blueprint": blueprint()})),
            (scenario(), json!({"blueprint": {"name": "no flow"}})),
            (scenario(), json!({})),
        ] {
            assert!(
                matches!(workflow(&s, &b), Err(ProviderError::InvalidResponse(_))),
                "{s} {b}"
            );
        }
    }

    #[test]
    fn a_create_body_sends_text_and_drops_what_belongs_to_another_team() {
        let read = workflow(&scenario(), &json!({"blueprint": blueprint()}))
            .unwrap_or_else(|e| panic!("{e}"));
        let body = create_body(&read, 99).unwrap_or_else(|e| panic!("{e}"));
        let mut keys: Vec<&String> = body
            .as_object()
            .map(|o| o.keys().collect())
            .unwrap_or_default();
        keys.sort();
        assert_eq!(keys, ["blueprint", "scheduling", "teamId"]);
        assert_eq!(body["teamId"], 99);
        let sent: Value = serde_json::from_str(body["blueprint"].as_str().unwrap_or_default())
            .unwrap_or_default();
        assert_eq!(sent, blueprint());

        let same_team = create_body(&read, 42).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(same_team["folderId"], 7);

        let bare = create_body(&json!({"name": "New", "blueprint": {"flow": []}}), 1)
            .unwrap_or_else(|e| panic!("{e}"));
        let scheduling: Value =
            serde_json::from_str(bare["scheduling"].as_str().unwrap_or_default())
                .unwrap_or_default();
        assert_eq!(scheduling, default_scheduling());
        let named: Value = serde_json::from_str(bare["blueprint"].as_str().unwrap_or_default())
            .unwrap_or_default();
        assert_eq!(named["name"], "New");

        for bad in [
            json!({"name": "x"}),
            json!({"blueprint": {"name": "no flow"}}),
            json!({"blueprint": {"flow": []}, "scheduling": {"interval": 5}}),
        ] {
            assert!(
                matches!(create_body(&bad, 1), Err(ProviderError::Validation(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn an_update_body_carries_only_what_changes() {
        let body = update_body(&json!({"name": "Renamed"})).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(body, json!({"name": "Renamed"}));
        let body =
            update_body(&json!({"description": "", "teamId": 1})).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(body, json!({"description": ""}));
        assert!(matches!(
            update_body(&json!({"id": "1"})),
            Err(ProviderError::Validation(_))
        ));
    }

    #[test]
    fn logs_map_to_executions() {
        let log = json!({"id": "a1b2", "imtId": "x", "status": 3, "type": "auto",
                         "timestamp": "2026-01-01T10:00:00.000Z", "duration": 1500});
        let e = execution(&log, "1234")
            .unwrap_or_else(|e| panic!("{e}"))
            .unwrap_or_else(|| panic!("a run"));
        assert_eq!(e.status, "error");
        assert!(e.finished);
        assert_eq!(e.workflow_id.as_deref(), Some("1234"));
        assert_eq!(
            e.stopped_at.map(|t| t.to_rfc3339()),
            Some("2026-01-01T10:00:01.500+00:00".to_owned())
        );
        let edit = json!({"id": "c3", "type": "modify", "timestamp": "2026-01-01T10:00:00.000Z"});
        assert!(matches!(execution(&edit, "1"), Ok(None)));
        assert!(execution(&json!({"status": 1}), "1").is_err());
        assert_eq!(log_status("warning"), Some(2));
        assert_eq!(log_status("waiting"), None);
    }

    #[test]
    fn a_hostile_log_duration_is_cut_short_instead_of_panicking() {
        let log = |duration: Value| {
            json!({"id": "a1", "status": 1, "type": "auto",
                   "timestamp": "9999-12-31T23:59:59.000Z", "duration": duration})
        };
        let started = DateTime::parse_from_rfc3339("9999-12-31T23:59:59.000Z")
            .map(|t| t.with_timezone(&Utc))
            .ok();
        let stop = |duration: Value| {
            execution(&log(duration), "1")
                .unwrap_or_else(|e| panic!("{e}"))
                .unwrap_or_else(|| panic!("a run"))
                .stopped_at
        };
        let longest = started.map(|t| t + LONGEST_RUN);
        for absurd in [
            json!(i64::MAX),
            json!(u64::MAX),
            json!(1e300),
            json!(f64::MAX),
        ] {
            assert_eq!(stop(absurd.clone()), longest, "{absurd}");
        }
        for none in [json!(i64::MIN), json!(-1.5), json!("soon"), Value::Null] {
            assert_eq!(stop(none.clone()), started, "{none}");
        }
        assert_eq!(
            stop(json!(1500.9)).map(|t| t - chrono::TimeDelta::milliseconds(1500)),
            started
        );
        assert_eq!(run_length(Some(&json!(2000))).num_milliseconds(), 2000);
    }

    #[test]
    fn connections_and_users_map_to_catalog_rows() {
        let c = credential(
            &json!({"id": 5001, "name": "Sheets (ops)", "accountName": "google",
                                   "accountType": "oauth", "teamId": 42}),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((c.id.as_str(), c.cred_type.as_str()), ("5001", "google"));
        let u = user(
            &json!({"id": 7, "name": "Ada Lovelace", "email": "ada@example.com",
                             "teamRoleId": 11}),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(u.first_name.as_deref(), Some("Ada Lovelace"));
        assert_eq!(u.role.as_deref(), Some("11"));
    }
}
