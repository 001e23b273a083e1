//! A plan's summary from ARM's what-if result (`POST .../deployments/{name}/whatIf`, a
//! long-running operation whose result lists `changes`): each `changeType` maps to the action
//! terraform would print. Only resource ids, types and actions are read, never `before`,
//! `after` or `delta` (which may hold secure values).

use serde_json::Value;

use super::resource_type_of;
use crate::domain::{ChangeAction, PlanSummary};

/// `Create` → create, `Modify` and `Deploy` (redeployed, properties may change) → update,
/// `Delete` → delete; `NoChange` and `Ignore` (not managed by this template) are no change.
/// `Unsupported` (what-if cannot predict it) counts as an update: a plan never hides a change
/// it cannot rule out.
pub fn summarize(result: &Value) -> Result<PlanSummary, String> {
    let changes = result
        .pointer("/properties/changes")
        .or_else(|| result.get("changes"))
        .and_then(Value::as_array)
        .ok_or("the what-if result has no changes list")?;
    let mut summary = PlanSummary::default();
    for c in changes {
        let id = c
            .get("resourceId")
            .and_then(Value::as_str)
            .ok_or("a what-if change without a resourceId")?;
        let change_type = c.get("changeType").and_then(Value::as_str).unwrap_or("");
        let action = match change_type {
            "Create" => ChangeAction::Create,
            "Modify" | "Deploy" | "Unsupported" => ChangeAction::Update,
            "Delete" => ChangeAction::Delete,
            "NoChange" | "Ignore" => continue,
            other => return Err(format!("{id}: unknown what-if changeType {other:?}")),
        };
        summary.push(id.to_string(), type_of(id), action);
    }
    Ok(summary)
}

/// A resource's type from its id (`Microsoft.Storage/storageAccounts`, a resource group's
/// `Microsoft.Resources/resourceGroups`); empty when the id does not say.
pub fn type_of(id: &str) -> String {
    resource_type_of(id)
        .map(|(ns, ty)| format!("{ns}/{ty}"))
        .unwrap_or_else(|| {
            if super::is_resource_group_id(id) {
                "Microsoft.Resources/resourceGroups".into()
            } else {
                String::new()
            }
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn change_types_map_to_actions_and_values_are_never_read() {
        let sa =
            "/subscriptions/s/resourceGroups/g/providers/Microsoft.Storage/storageAccounts/acct";
        let ip =
            "/subscriptions/s/resourceGroups/g/providers/Microsoft.Network/publicIPAddresses/ip";
        let result = json!({"status": "Succeeded", "properties": {"changes": [
            {"resourceId": sa, "changeType": "Modify", "before": {"p": "old-secret"}, "after": {"p": "new-secret"},
             "delta": [{"path": "properties.p", "propertyChangeType": "Modify"}]},
            {"resourceId": ip, "changeType": "Create", "after": {}},
            {"resourceId": "/subscriptions/s/resourceGroups/rg-new", "changeType": "Create"},
            {"resourceId": "/subscriptions/s/resourceGroups/g/providers/Microsoft.Web/sites/old", "changeType": "Delete"},
            {"resourceId": "/subscriptions/s/resourceGroups/g/providers/Microsoft.Web/sites/same", "changeType": "NoChange"},
            {"resourceId": "/subscriptions/s/resourceGroups/g/providers/Microsoft.Web/sites/other", "changeType": "Ignore"}
        ]}});
        let s = summarize(&result).expect("summary");
        assert_eq!((s.add, s.change, s.destroy), (2, 1, 1));
        assert_eq!(
            s.resources[0].resource_type,
            "Microsoft.Storage/storageAccounts"
        );
        assert_eq!(s.resources[0].action, ChangeAction::Update);
        assert_eq!(
            s.resources[2].resource_type,
            "Microsoft.Resources/resourceGroups"
        );
        let text = serde_json::to_string(&s).expect("json");
        assert!(!text.contains("secret"), "{text}");
        assert!(
            summarize(
                &json!({"properties": {"changes": [{"resourceId": sa, "changeType": "Teleport"}]}})
            )
            .is_err()
        );
        assert!(summarize(&json!({"status": "Failed"})).is_err());
    }
}
