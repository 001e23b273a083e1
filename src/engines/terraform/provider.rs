//! The provider configuration (and backend) the daemon adds next to a template.
//!
//! Templates declare `required_providers` and never configure a provider; the daemon writes
//! `multicloud_providers.tf.json` with the configuration for the clouds the template requires.
//! (design.md names this an `*_override.tf.json`; terraform refuses an override of a provider
//! block the template does not define, so it is a plain `.tf.json` file.) Credentials are never
//! written here: they reach terraform through its environment only.

use serde_json::{Value, json};

use crate::config::{Settings, StateBackend};
use crate::domain::Deployment;

pub const FILE_NAME: &str = "multicloud_providers.tf.json";
/// The schema holding terraform states in the daemon's database (one per installation).
pub const PG_SCHEMA: &str = "terraform_remote_state";

/// The generated file's JSON.
pub fn config_json(settings: &Settings, deployment: &Deployment, required: &[String]) -> Value {
    let mut providers = serde_json::Map::new();
    if required.iter().any(|p| p == "aws") {
        providers.insert("aws".into(), aws(settings, deployment));
    }
    if required.iter().any(|p| p == "google") {
        providers.insert("google".into(), google(settings, deployment));
    }
    if required.iter().any(|p| p == "azurerm") {
        providers.insert("azurerm".into(), azurerm(deployment));
    }
    let mut doc = serde_json::Map::new();
    if !providers.is_empty() {
        doc.insert("provider".into(), Value::Object(providers));
    }
    if settings.terraform.state_backend == StateBackend::Pg {
        doc.insert(
            "terraform".into(),
            json!([{ "backend": [{ "pg": [{ "schema_name": PG_SCHEMA }] }] }]),
        );
    }
    Value::Object(doc)
}

fn aws(settings: &Settings, d: &Deployment) -> Value {
    let region = non_empty(d.location.as_deref()).unwrap_or(&settings.aws.region);
    let mut p = serde_json::Map::new();
    p.insert("region".into(), json!(region));
    if let Some(account) = non_empty(d.subscription_id.as_deref()) {
        p.insert("allowed_account_ids".into(), json!([account]));
    }
    if !settings.aws.endpoint_url.is_empty() {
        // An emulator (moto, LocalStack): every service at one endpoint (AWS_ENDPOINT_URL in
        // the environment), path-style S3, and no instance metadata lookups.
        p.insert("s3_use_path_style".into(), json!(true));
        p.insert("skip_metadata_api_check".into(), json!(true));
        p.insert("skip_region_validation".into(), json!(true));
    }
    Value::Object(p)
}

fn google(settings: &Settings, d: &Deployment) -> Value {
    let mut p = serde_json::Map::new();
    if let Some(project) =
        non_empty(d.subscription_id.as_deref()).or(non_empty(Some(&settings.gcp.project)))
    {
        p.insert("project".into(), json!(project));
    }
    if let Some(location) = non_empty(d.location.as_deref()) {
        p.insert("region".into(), json!(location));
    }
    Value::Object(p)
}

fn azurerm(d: &Deployment) -> Value {
    let mut p = serde_json::Map::new();
    p.insert("features".into(), json!({}));
    if let Some(sub) = non_empty(d.subscription_id.as_deref()) {
        p.insert("subscription_id".into(), json!(sub));
    }
    Value::Object(p)
}

/// Environment variables carrying credentials and endpoints for the required providers.
/// Configuration wins; the daemon's own standard variables are the fallback.
pub fn credential_env(settings: &Settings, required: &[String]) -> Vec<(String, String)> {
    let mut env = Vec::new();
    let from = |configured: &str, var: &str| -> Option<String> {
        non_empty(Some(configured))
            .map(str::to_string)
            .or_else(|| std::env::var(var).ok().filter(|v| !v.is_empty()))
    };
    if required.iter().any(|p| p == "aws") {
        let aws = &settings.aws;
        for (configured, var) in [
            (aws.access_key_id.as_str(), "AWS_ACCESS_KEY_ID"),
            (aws.secret_access_key.as_str(), "AWS_SECRET_ACCESS_KEY"),
            ("", "AWS_SESSION_TOKEN"),
            (aws.endpoint_url.as_str(), "AWS_ENDPOINT_URL"),
            ("", "AWS_CA_BUNDLE"),
        ] {
            if let Some(v) = from(configured, var) {
                env.push((var.to_string(), v));
            }
        }
    }
    if required.iter().any(|p| p == "google") {
        let gcp = &settings.gcp;
        for (configured, var) in [
            (
                gcp.credentials_file.as_str(),
                "GOOGLE_APPLICATION_CREDENTIALS",
            ),
            ("", "GOOGLE_CREDENTIALS"),
            ("", "GOOGLE_OAUTH_ACCESS_TOKEN"),
        ] {
            if let Some(v) = from(configured, var) {
                env.push((var.to_string(), v));
            }
        }
    }
    if required.iter().any(|p| p == "azurerm") {
        let az = &settings.azure;
        // azurerm reads ARM_*; the daemon's own configuration and AZURE_* feed them.
        for (configured, arm, azure) in [
            (az.tenant_id.as_str(), "ARM_TENANT_ID", "AZURE_TENANT_ID"),
            (az.client_id.as_str(), "ARM_CLIENT_ID", "AZURE_CLIENT_ID"),
            (
                az.client_secret.as_str(),
                "ARM_CLIENT_SECRET",
                "AZURE_CLIENT_SECRET",
            ),
        ] {
            if let Some(v) = from(configured, arm).or_else(|| from("", azure)) {
                env.push((arm.to_string(), v));
            }
        }
    }
    env
}

/// Values in `env` that must never appear in logs.
pub fn secret_values(env: &[(String, String)]) -> Vec<String> {
    env.iter()
        .filter(|(k, _)| k.contains("SECRET") || k.contains("TOKEN") || k == "PG_CONN_STR")
        .map(|(_, v)| v.clone())
        .collect()
}

fn non_empty(s: Option<&str>) -> Option<&str> {
    s.map(str::trim).filter(|s| !s.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{DeploymentId, DeploymentStatus, Operation, ProviderType};

    fn deployment(location: Option<&str>, sub: Option<&str>) -> Deployment {
        Deployment {
            id: DeploymentId::generate(),
            provider_type: ProviderType::TerraformAws,
            template_name: "storage-bucket".into(),
            resource_group: None,
            subscription_id: sub.map(Into::into),
            location: location.map(Into::into),
            management_group: None,
            status: DeploymentStatus::Running,
            operation: Operation::Deploy,
            parameters: Default::default(),
            outputs: None,
            error_message: None,
            progress: 0,
            attempts: 1,
            lease_owner: None,
            lease_expires_at: None,
            cancel_requested_at: None,
            created_at: chrono::Utc::now(),
            started_at: None,
            completed_at: None,
            updated_at: chrono::Utc::now(),
            applied_run_id: None,
            drift: None,
        }
    }

    #[test]
    fn aws_provider_uses_request_region_account_and_emulator_settings() {
        let mut s = Settings::default();
        s.aws.endpoint_url = "http://127.0.0.1:5000".into();
        s.aws.secret_access_key = "sekret".into();
        let doc = config_json(
            &s,
            &deployment(Some("eu-west-1"), Some("123456789012")),
            &["aws".into()],
        );
        assert_eq!(doc["provider"]["aws"]["region"], "eu-west-1");
        assert_eq!(
            doc["provider"]["aws"]["allowed_account_ids"],
            json!(["123456789012"])
        );
        assert_eq!(doc["provider"]["aws"]["s3_use_path_style"], true);
        assert_eq!(
            doc["terraform"][0]["backend"][0]["pg"][0]["schema_name"],
            PG_SCHEMA
        );
        assert!(
            !doc.to_string().contains("sekret"),
            "credentials never go into files"
        );
        let env = credential_env(&s, &["aws".into()]);
        assert!(env.contains(&("AWS_SECRET_ACCESS_KEY".into(), "sekret".into())));
        assert!(env.contains(&("AWS_ENDPOINT_URL".into(), "http://127.0.0.1:5000".into())));
    }

    #[test]
    fn google_and_azurerm_configuration() {
        let mut s = Settings::default();
        s.gcp.project = "default-project".into();
        s.gcp.credentials_file = "/etc/gcp.json".into();
        s.azure.tenant_id = "tenant-1".into();
        s.azure.client_id = "client-1".into();
        s.azure.client_secret = "azure-secret".into();
        let required = ["google".to_string(), "azurerm".to_string()];
        let doc = config_json(
            &s,
            &deployment(Some("europe-west1"), Some("my-project")),
            &required,
        );
        assert_eq!(
            doc["provider"]["google"],
            json!({"project": "my-project", "region": "europe-west1"})
        );
        assert_eq!(
            doc["provider"]["azurerm"],
            json!({"features": {}, "subscription_id": "my-project"})
        );
        let doc = config_json(&s, &deployment(None, None), &required);
        assert_eq!(
            doc["provider"]["google"],
            json!({"project": "default-project"})
        );
        assert_eq!(doc["provider"]["azurerm"], json!({"features": {}}));
        assert!(!doc.to_string().contains("azure-secret"));
        let env = credential_env(&s, &required);
        for pair in [
            ("GOOGLE_APPLICATION_CREDENTIALS", "/etc/gcp.json"),
            ("ARM_TENANT_ID", "tenant-1"),
            ("ARM_CLIENT_ID", "client-1"),
            ("ARM_CLIENT_SECRET", "azure-secret"),
        ] {
            assert!(
                env.contains(&(pair.0.into(), pair.1.into())),
                "{pair:?} in {env:?}"
            );
        }
        assert!(secret_values(&env).contains(&"azure-secret".to_string()));
        assert!(
            !env.iter().any(|(k, _)| k.starts_with("AWS_")),
            "only the required clouds"
        );
    }

    #[test]
    fn defaults_apply_and_unrequired_providers_are_not_configured() {
        let mut s = Settings::default();
        s.terraform.state_backend = StateBackend::Local;
        let doc = config_json(&s, &deployment(None, None), &["aws".into()]);
        assert_eq!(doc["provider"]["aws"]["region"], "us-east-1");
        assert!(doc["provider"]["aws"].get("allowed_account_ids").is_none());
        assert!(doc.get("terraform").is_none());
        assert_eq!(config_json(&s, &deployment(None, None), &[]), json!({}));
    }
}
