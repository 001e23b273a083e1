use std::fmt;

use serde::{Deserialize, Serialize};

/// The canonical provider types of design.md §7 ("compatibility").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum ProviderType {
    #[serde(rename = "azure")]
    Azure,
    #[serde(rename = "terraform-aws")]
    TerraformAws,
    #[serde(rename = "terraform-gcp")]
    TerraformGcp,
    #[serde(rename = "terraform-azure")]
    TerraformAzure,
}

impl ProviderType {
    pub const ALL: [ProviderType; 4] = [
        ProviderType::Azure,
        ProviderType::TerraformAws,
        ProviderType::TerraformGcp,
        ProviderType::TerraformAzure,
    ];

    /// Parses a canonical name or one of the accepted aliases (`bicep`, `arm`, `aws`, `gcp`),
    /// ignoring case and surrounding space.
    pub fn parse(value: &str) -> Option<ProviderType> {
        match value.trim().to_ascii_lowercase().as_str() {
            "azure" | "bicep" | "arm" => Some(ProviderType::Azure),
            "terraform-aws" | "aws" => Some(ProviderType::TerraformAws),
            "terraform-gcp" | "gcp" => Some(ProviderType::TerraformGcp),
            "terraform-azure" => Some(ProviderType::TerraformAzure),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ProviderType::Azure => "azure",
            ProviderType::TerraformAws => "terraform-aws",
            ProviderType::TerraformGcp => "terraform-gcp",
            ProviderType::TerraformAzure => "terraform-azure",
        }
    }

    /// The cloud this provider type deploys to.
    pub fn cloud(self) -> &'static str {
        match self {
            ProviderType::Azure | ProviderType::TerraformAzure => "azure",
            ProviderType::TerraformAws => "aws",
            ProviderType::TerraformGcp => "gcp",
        }
    }

    /// The template format this provider type reads.
    pub fn format(self) -> &'static str {
        match self {
            ProviderType::Azure => "bicep/arm",
            _ => "terraform",
        }
    }

    pub fn is_terraform(self) -> bool {
        !matches!(self, ProviderType::Azure)
    }
}

impl fmt::Display for ProviderType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aliases_resolve_to_canonical_types() {
        assert_eq!(ProviderType::parse("Bicep"), Some(ProviderType::Azure));
        assert_eq!(ProviderType::parse("arm"), Some(ProviderType::Azure));
        assert_eq!(ProviderType::parse("aws"), Some(ProviderType::TerraformAws));
        assert_eq!(
            ProviderType::parse(" GCP "),
            Some(ProviderType::TerraformGcp)
        );
        assert_eq!(
            ProviderType::parse("terraform-azure"),
            Some(ProviderType::TerraformAzure)
        );
        assert_eq!(ProviderType::parse("azurerm"), None);
        for p in ProviderType::ALL {
            assert_eq!(ProviderType::parse(p.as_str()), Some(p));
        }
    }
}
