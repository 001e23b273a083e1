//! The saved plan of a gated Azure run: exactly what the what-if previewed (the template JSON,
//! compiled once at plan time, and the ARM parameters object) and where it goes. A confirmed run
//! PUTs these bytes' template and parameters as they are, never a recompiled template. The bytes
//! hold secure parameter values: the deployment actor stores them encrypted.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::domain::{ChangeAction, PlanSummary};

/// The layout of the bytes; another one is refused rather than guessed at.
pub const FORMAT: u32 = 1;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SavedPlan {
    pub format: u32,
    /// The deployment's scope (`/subscriptions/s[/resourcegroups/g]`) and its ARM name.
    pub scope: String,
    pub deployment_name: String,
    /// Where a subscription-scope deployment keeps its record.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<String>,
    #[serde(flatten)]
    pub action: PlannedAction,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "operation", rename_all = "snake_case")]
pub enum PlannedAction {
    /// PUT of the deployment (mode Incremental) with this template and parameters object
    /// (`{name: {"value": v}}`).
    Deploy { template: Value, parameters: Value },
    /// DELETE of these resources (the deployment's `outputResources`), newest last.
    Destroy { resources: Vec<String> },
}

impl SavedPlan {
    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a saved plan is plain JSON")
    }

    pub fn from_bytes(bytes: &[u8]) -> Result<SavedPlan, String> {
        let plan: SavedPlan = serde_json::from_slice(bytes)
            .map_err(|e| format!("the saved plan is not an Azure plan: {e}"))?;
        if plan.format != FORMAT {
            return Err(format!(
                "the saved plan has format {} and this daemon reads format {FORMAT}: plan again",
                plan.format
            ));
        }
        Ok(plan)
    }
}

/// The run log's line for one change, terraform's way: `  + id (type)`. Only the id, type and
/// action are shown, never values.
pub fn change_line(address: &str, resource_type: &str, action: ChangeAction) -> String {
    let marker = match action {
        ChangeAction::Create => "+",
        ChangeAction::Update => "~",
        ChangeAction::Delete => "-",
        ChangeAction::Replace => "-/+",
    };
    format!("  {marker} {address} ({resource_type})")
}

/// Every line a plan (or drift check) writes to the run's log: its headline, then one line per
/// resource change.
pub fn log_lines(summary: &PlanSummary, drift: bool) -> Vec<String> {
    let headline = match (drift, summary.is_empty()) {
        (false, _) => summary.headline(),
        (true, true) => "Drift: none. The cloud matches the applied template.".to_string(),
        (true, false) => format!(
            "Drift: {} resource(s) differ from the applied template.",
            summary.resources.len()
        ),
    };
    std::iter::once(headline)
        .chain(
            summary
                .resources
                .iter()
                .map(|r| change_line(&r.address, &r.resource_type, r.action)),
        )
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn saved_plans_round_trip_and_other_formats_are_refused() {
        let plan = SavedPlan {
            format: FORMAT,
            scope: "/subscriptions/s/resourcegroups/g".into(),
            deployment_name: "multicloud-deploy-1".into(),
            location: None,
            action: PlannedAction::Deploy {
                template: json!({"resources": []}),
                parameters: json!({"a": {"value": 1}}),
            },
        };
        let bytes = plan.to_bytes();
        let text: Value = serde_json::from_slice(&bytes).expect("json");
        assert_eq!(text["operation"], "deploy");
        assert_eq!(text["parameters"]["a"]["value"], 1);
        assert!(text.get("location").is_none());
        assert_eq!(SavedPlan::from_bytes(&bytes), Ok(plan));

        let destroy = SavedPlan {
            format: FORMAT,
            scope: "/subscriptions/s".into(),
            deployment_name: "d".into(),
            location: Some("westeurope".into()),
            action: PlannedAction::Destroy {
                resources: vec!["/x".into()],
            },
        };
        assert_eq!(
            SavedPlan::from_bytes(&destroy.to_bytes()),
            Ok(destroy.clone())
        );

        let mut later = serde_json::to_value(&destroy).expect("json");
        later["format"] = json!(2);
        let err = SavedPlan::from_bytes(&serde_json::to_vec(&later).expect("json"))
            .expect_err("format 2");
        assert!(err.contains("format 2"), "{err}");
        assert!(SavedPlan::from_bytes(b"terraform plan bytes").is_err());
    }

    #[test]
    fn log_lines_name_resources_and_actions_only() {
        let mut s = PlanSummary::default();
        s.push(
            "/subscriptions/s/resourceGroups/g/providers/Microsoft.Storage/storageAccounts/a"
                .into(),
            "Microsoft.Storage/storageAccounts".into(),
            ChangeAction::Update,
        );
        s.push(
            "/subscriptions/s/resourceGroups/n".into(),
            "Microsoft.Resources/resourceGroups".into(),
            ChangeAction::Create,
        );
        assert_eq!(
            log_lines(&s, false),
            vec![
                "Plan: 1 to add, 1 to change, 0 to destroy.".to_string(),
                "  ~ /subscriptions/s/resourceGroups/g/providers/Microsoft.Storage/storageAccounts/a (Microsoft.Storage/storageAccounts)".into(),
                "  + /subscriptions/s/resourceGroups/n (Microsoft.Resources/resourceGroups)".into(),
            ]
        );
        assert_eq!(
            log_lines(&s, true)[0],
            "Drift: 2 resource(s) differ from the applied template."
        );
        assert_eq!(
            log_lines(&PlanSummary::default(), true),
            vec!["Drift: none. The cloud matches the applied template.".to_string()]
        );
    }
}
