//! What a plan would change, engine-neutral: terraform's saved plan (`show -json`) and ARM's
//! what-if both become a `PlanSummary` of counts and the list of resource changes. Only
//! addresses, types and actions: never an attribute value, so nothing sensitive can appear.

use serde::{Deserialize, Serialize};

/// What a plan does to one resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ChangeAction {
    Create,
    Update,
    Delete,
    /// Destroyed and created again (terraform's delete-then-create or create-then-delete).
    Replace,
}

/// One resource change of a plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResourceChange {
    /// terraform: the resource address (`aws_s3_bucket.this`); ARM: the resource id.
    pub address: String,
    #[serde(rename = "type")]
    pub resource_type: String,
    pub action: ChangeAction,
}

/// The counts the way terraform prints them ("Plan: 1 to add, 0 to change, 0 to destroy.":
/// a replacement counts as one to add and one to destroy) and every change, in plan order.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlanSummary {
    pub add: u32,
    pub change: u32,
    pub destroy: u32,
    pub resources: Vec<ResourceChange>,
}

impl PlanSummary {
    pub fn push(&mut self, address: String, resource_type: String, action: ChangeAction) {
        match action {
            ChangeAction::Create => self.add += 1,
            ChangeAction::Update => self.change += 1,
            ChangeAction::Delete => self.destroy += 1,
            ChangeAction::Replace => {
                self.add += 1;
                self.destroy += 1;
            }
        }
        self.resources.push(ResourceChange {
            address,
            resource_type,
            action,
        });
    }

    /// Nothing would change.
    pub fn is_empty(&self) -> bool {
        self.resources.is_empty()
    }

    /// terraform's own line: `Plan: 1 to add, 0 to change, 0 to destroy.`
    pub fn headline(&self) -> String {
        if self.is_empty() {
            return "No changes. Your infrastructure matches the configuration.".into();
        }
        format!(
            "Plan: {} to add, {} to change, {} to destroy.",
            self.add, self.change, self.destroy
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_replacement_counts_as_an_add_and_a_destroy() {
        let mut p = PlanSummary::default();
        assert_eq!(
            p.headline(),
            "No changes. Your infrastructure matches the configuration."
        );
        p.push("a.x".into(), "a".into(), ChangeAction::Create);
        p.push("b.y".into(), "b".into(), ChangeAction::Replace);
        p.push("c.z".into(), "c".into(), ChangeAction::Update);
        assert_eq!(p.headline(), "Plan: 2 to add, 1 to change, 1 to destroy.");
        assert_eq!(
            serde_json::to_value(&p.resources[1]).expect("json"),
            serde_json::json!({"address": "b.y", "type": "b", "action": "replace"})
        );
    }
}
