//! A plan's summary: address, type and action of every change; no-ops and reads are not
//! changes. Read from the `-json` stream of the `plan` that writes the saved plan file (its
//! `planned_change` and `resource_drift` messages describe that same plan, without values), or
//! from `terraform show -json <planfile>` (its `resource_changes`, `resource_drift`) when a
//! stream lacks them. Values are never read, so sensitive ones cannot leak.

use serde_json::Value;

use crate::domain::{ChangeAction, PlanSummary};

/// Reads `show -json`'s `resource_changes`. An action list terraform does not document is an
/// error, not a silently dropped change.
pub fn summarize(show_json: &Value) -> Result<PlanSummary, String> {
    summarize_list(show_json, "resource_changes")
}

/// Reads what a `plan -refresh-only` found changed outside terraform (`resource_drift`): a
/// resource changed in the cloud is an update, one deleted there a delete.
pub fn summarize_drift(show_json: &Value) -> Result<PlanSummary, String> {
    summarize_list(show_json, "resource_drift")
}

fn summarize_list(show_json: &Value, key: &str) -> Result<PlanSummary, String> {
    let mut summary = PlanSummary::default();
    let Some(changes) = show_json.get(key) else {
        return Ok(summary);
    };
    let changes = changes
        .as_array()
        .ok_or_else(|| format!("{key} is not a list"))?;
    for rc in changes {
        let address = rc
            .get("address")
            .and_then(Value::as_str)
            .ok_or("a resource change without an address")?;
        let resource_type = rc.get("type").and_then(Value::as_str).unwrap_or_default();
        let actions: Vec<&str> = rc
            .pointer("/change/actions")
            .and_then(Value::as_array)
            .ok_or_else(|| format!("{address}: no change actions"))?
            .iter()
            .filter_map(Value::as_str)
            .collect();
        let action = match actions.as_slice() {
            ["no-op"] | ["read"] => continue,
            ["create"] => ChangeAction::Create,
            ["update"] => ChangeAction::Update,
            ["delete"] => ChangeAction::Delete,
            ["delete", "create"] | ["create", "delete"] => ChangeAction::Replace,
            other => return Err(format!("{address}: unknown change actions {other:?}")),
        };
        summary.push(address.to_string(), resource_type.to_string(), action);
    }
    Ok(summary)
}

/// Reads the `change` objects of a plan's `-json` stream: its `planned_change` messages, or
/// for a drift check its `resource_drift` messages (`{resource: {addr, resource_type}, action}`).
/// An action this version does not know is an error (the caller falls back to `show -json`).
pub fn summarize_stream(changes: &[Value]) -> Result<PlanSummary, String> {
    let mut summary = PlanSummary::default();
    for change in changes {
        let address = change
            .pointer("/resource/addr")
            .and_then(Value::as_str)
            .ok_or("a planned change without an address")?;
        let resource_type = change
            .pointer("/resource/resource_type")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let action = match change.get("action").and_then(Value::as_str).unwrap_or("") {
            "noop" | "read" => continue,
            "create" => ChangeAction::Create,
            "update" => ChangeAction::Update,
            "delete" => ChangeAction::Delete,
            "replace" => ChangeAction::Replace,
            other => return Err(format!("{address}: action {other:?}")),
        };
        summary.push(address.to_string(), resource_type.to_string(), action);
    }
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn actions_map_to_terraforms_counts() {
        let show = json!({"resource_changes": [
            {"address": "aws_s3_bucket.this", "type": "aws_s3_bucket", "change": {"actions": ["create"], "after": {"bucket": "b"}}},
            {"address": "aws_instance.vm", "type": "aws_instance", "change": {"actions": ["delete", "create"]}},
            {"address": "aws_s3_bucket_versioning.v", "type": "aws_s3_bucket_versioning", "change": {"actions": ["update"]}},
            {"address": "data.aws_ami.x", "type": "aws_ami", "change": {"actions": ["read"]}},
            {"address": "aws_iam_role.r", "type": "aws_iam_role", "change": {"actions": ["no-op"]}},
            {"address": "aws_lambda_function.f", "type": "aws_lambda_function", "change": {"actions": ["delete"]}}
        ]});
        let s = summarize(&show).expect("summary");
        assert_eq!((s.add, s.change, s.destroy), (2, 1, 2));
        assert_eq!(s.resources.len(), 4);
        assert_eq!(s.headline(), "Plan: 2 to add, 1 to change, 2 to destroy.");
        assert!(!serde_json::to_string(&s).expect("json").contains("\"b\""));
        assert!(summarize(&json!({})).expect("empty").is_empty());
        assert!(
            summarize(&json!({"resource_changes": [{"address": "a.b", "change": {"actions": ["forget"]}}]}))
                .is_err()
        );
    }
}
