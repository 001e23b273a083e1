//! The template catalog: discovers templates under `paths.templates_dir`, describes them
//! (title, description, parameters), finds them by forgiving names, and checks a request's
//! parameters against them before anything is queued.
//!
//! Layout (design.md §6): `terraform/{aws,gcp,azure}/*.tf` and, for the native Azure engine,
//! `*.bicep` and `*.json` (ARM) templates at the top level. A Bicep and an ARM file with the
//! same stem are one template name: the Bicep file wins. A template that fails to parse is listed with its
//! error and can't be deployed; it never stops the daemon.

mod arm;
mod bicep;
mod params;
mod terraform;

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use serde::Serialize;

pub use params::{ParamSpec, ParamType, TypeRules, ValidationErrors};

use crate::domain::ProviderType;

/// One template of the catalog.
#[derive(Debug, Clone, Serialize)]
pub struct Template {
    pub name: String,
    pub provider_type: ProviderType,
    pub cloud: &'static str,
    pub format: &'static str,
    pub title: String,
    pub description: String,
    #[serde(skip)]
    pub path: PathBuf,
    pub file_name: String,
    pub parameters: Vec<ParamSpec>,
    /// Provider local names from `terraform { required_providers { ... } }`.
    pub required_providers: Vec<String>,
    /// Why the template can't be used, when it failed to parse.
    pub error: Option<String>,
    /// Where an Azure template deploys (ARM's deployment scopes); terraform templates are
    /// `resourceGroup`-free but report the default.
    pub target_scope: TargetScope,
}

/// The scope an ARM deployment is made at: a resource group (the default), the subscription
/// (the template creates its resource groups itself), a management group or the tenant. The
/// built-in Bicep compiler's type: one reading of `targetScope` and of ARM `$schema`s.
pub use crate::bicep::Scope as TargetScope;

/// A template rebuilt from a source a run ran (kept in PostgreSQL): for a deployment whose
/// template file was changed or removed since it was applied. Azure sources are the ARM JSON
/// that ran (a Bicep file's compiled template).
pub fn template_from_source(provider_type: ProviderType, name: &str, source: &str) -> Template {
    if provider_type.is_terraform() {
        terraform::from_source(
            Path::new(&format!("{name}.tf")),
            provider_type,
            Ok(source.to_string()),
        )
    } else {
        arm::from_source(Path::new(&format!("{name}.json")), Ok(source.to_string()))
    }
}

impl Template {
    /// Reads the template's source from disk.
    pub fn content(&self) -> std::io::Result<String> {
        fs::read_to_string(&self.path)
    }

    /// Names of parameters whose values must never be shown.
    pub fn sensitive_parameters(&self) -> impl Iterator<Item = &str> {
        self.parameters
            .iter()
            .filter(|p| p.sensitive)
            .map(|p| p.name.as_str())
    }

    /// The parameters a run uses: those given, plus every literal default not given. Stored
    /// with the deployment, so a re-run or a destroy uses exactly the same values.
    pub fn effective_parameters(
        &self,
        given: &serde_json::Map<String, serde_json::Value>,
    ) -> serde_json::Map<String, serde_json::Value> {
        let mut values = given.clone();
        // A sensitive default lives in the template file, not in the request: it is not copied
        // into the stored parameters (the tool applies it itself).
        for p in self.parameters.iter().filter(|p| !p.sensitive) {
            if let Some(default) = p.default.as_ref().filter(|d| !d.is_null())
                && !values.contains_key(&p.name)
            {
                values.insert(p.name.clone(), default.clone());
            }
        }
        values
    }

    /// Checks `values` against the declared parameters: unknown names, missing required ones,
    /// wrong types (by the rules of the engine that runs the template), allowed values and
    /// bounds. Every problem is reported, keyed by field.
    pub fn validate(
        &self,
        values: &serde_json::Map<String, serde_json::Value>,
    ) -> Result<(), ValidationErrors> {
        params::validate(&self.parameters, values, self.type_rules())
    }

    /// How the engine that runs this template converts parameter values.
    pub fn type_rules(&self) -> TypeRules {
        if self.provider_type == ProviderType::Azure {
            TypeRules::Arm
        } else {
            TypeRules::Terraform
        }
    }
}

/// All templates, keyed by provider type and canonical name; iteration is sorted.
#[derive(Debug, Default, Clone)]
pub struct Catalog {
    templates: BTreeMap<(ProviderType, String), Template>,
}

impl Catalog {
    /// Scans `dir`. A missing directory gives an empty catalog (and a warning).
    pub fn scan(dir: &Path) -> Catalog {
        let mut catalog = Catalog::default();
        let Ok(dir) = dir.canonicalize() else {
            tracing::warn!(dir = %dir.display(), "templates directory not found; the catalog is empty");
            return catalog;
        };
        let dir = dir.as_path();
        for (cloud_dir, provider_type) in [
            ("aws", ProviderType::TerraformAws),
            ("gcp", ProviderType::TerraformGcp),
            ("azure", ProviderType::TerraformAzure),
        ] {
            for path in files_with_extension(dir, &dir.join("terraform").join(cloud_dir), "tf") {
                catalog.add(terraform::load(&path, provider_type));
            }
        }
        for path in files_with_extension(dir, dir, "json") {
            catalog.add(arm::load(&path));
        }
        for path in files_with_extension(dir, dir, "bicep") {
            catalog.add(bicep::load(&path));
        }
        for t in catalog.templates.values().filter(|t| t.error.is_some()) {
            tracing::warn!(template = %t.name, provider_type = %t.provider_type,
                error = t.error.as_deref().unwrap_or_default(), "template failed to parse");
        }
        tracing::info!(count = catalog.templates.len(), dir = %dir.display(), "template catalog loaded");
        catalog
    }

    fn add(&mut self, template: Template) {
        self.templates
            .insert((template.provider_type, template.name.clone()), template);
    }

    /// Finds a template by a forgiving name: case is ignored, spaces and underscores count as
    /// hyphens, and a trailing extension is allowed. Names that can't be template names (`/`,
    /// `..`, control characters) find nothing.
    pub fn find(&self, provider_type: ProviderType, name: &str) -> Option<&Template> {
        let key = normalize_name(name)?;
        self.templates.get(&(provider_type, key))
    }

    /// Templates in name order, optionally of one provider type and/or cloud.
    pub fn list(
        &self,
        provider_type: Option<ProviderType>,
        cloud: Option<&str>,
    ) -> impl Iterator<Item = &Template> {
        let cloud = cloud.map(|c| c.to_ascii_lowercase());
        self.templates.values().filter(move |t| {
            provider_type.is_none_or(|p| t.provider_type == p)
                && cloud.as_deref().is_none_or(|c| t.cloud == c)
        })
    }

    pub fn count(&self, provider_type: ProviderType) -> usize {
        self.list(Some(provider_type), None).count()
    }
}

/// The canonical form of a template name, or None when it can't be one.
pub fn normalize_name(name: &str) -> Option<String> {
    let name = name.trim();
    let name = [".tf", ".json", ".bicep"]
        .iter()
        .find_map(|ext| name.strip_suffix(ext))
        .unwrap_or(name);
    if name.is_empty() || name.len() > 128 {
        return None;
    }
    let mut out = String::with_capacity(name.len());
    for c in name.chars() {
        match c {
            'a'..='z' | '0'..='9' | '-' => out.push(c),
            'A'..='Z' => out.push(c.to_ascii_lowercase()),
            ' ' | '_' => out.push('-'),
            _ => return None,
        }
    }
    Some(out)
}

/// The catalog name of a file: its stem in kebab-case.
fn name_of(path: &Path) -> String {
    let stem = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    normalize_name(&stem).unwrap_or(stem)
}

/// Files of `dir` ending in `.ext`, resolved (symlinks followed); a file that resolves outside
/// `root` (the canonical templates folder) is skipped, so no template can make the daemon read
/// a file elsewhere.
fn files_with_extension(root: &Path, dir: &Path, ext: &str) -> Vec<PathBuf> {
    let Ok(entries) = fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.is_file() && p.extension().is_some_and(|e| e == ext))
        .filter_map(|p| {
            let real = p.canonicalize().ok()?;
            if real.starts_with(root) {
                Some(p)
            } else {
                tracing::warn!(path = %p.display(), "skipping a template that points outside the templates folder");
                None
            }
        })
        .collect();
    files.sort();
    files
}

/// Title and description from the leading comment block (`#` or `//` lines).
fn leading_comment(source: &str) -> (String, String) {
    let mut lines = Vec::new();
    for line in source.lines() {
        let trimmed = line.trim();
        let text = trimmed
            .strip_prefix("//")
            .or_else(|| trimmed.strip_prefix('#'));
        match text {
            Some(t) => lines.push(t.trim().to_string()),
            None if trimmed.is_empty() && lines.is_empty() => continue,
            None => break,
        }
    }
    let mut iter = lines.into_iter();
    let title = iter.next().unwrap_or_default();
    let description = iter
        .skip_while(|l| l.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
        .trim()
        .to_string();
    (title, description)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_forgiving_but_safe() {
        assert_eq!(
            normalize_name("Storage Account").as_deref(),
            Some("storage-account")
        );
        assert_eq!(
            normalize_name("storage_bucket.tf").as_deref(),
            Some("storage-bucket")
        );
        for bad in ["", "../etc/passwd", "a/b", "a\0b", "a.b", ".."] {
            assert_eq!(normalize_name(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn leading_comment_gives_title_and_description() {
        let src = "# S3 bucket\n#\n# A private bucket\n# with tags.\n\nvariable \"x\" {}\n";
        let (t, d) = leading_comment(src);
        assert_eq!(t, "S3 bucket");
        assert_eq!(d, "A private bucket with tags.");
    }
}

/// The current catalog, shared by the HTTP handlers and the runs; replaced whole on re-scan.
#[derive(Clone, Default)]
pub struct CatalogHandle(std::sync::Arc<std::sync::RwLock<std::sync::Arc<Catalog>>>);

impl CatalogHandle {
    pub fn new(catalog: Catalog) -> CatalogHandle {
        CatalogHandle(std::sync::Arc::new(std::sync::RwLock::new(
            std::sync::Arc::new(catalog),
        )))
    }

    pub fn get(&self) -> std::sync::Arc<Catalog> {
        match self.0.read() {
            Ok(guard) => guard.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    pub fn replace(&self, catalog: Catalog) {
        let new = std::sync::Arc::new(catalog);
        match self.0.write() {
            Ok(mut guard) => *guard = new,
            Err(poisoned) => *poisoned.into_inner() = new,
        }
    }
}
