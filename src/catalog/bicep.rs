//! Bicep templates (`templates/*.bicep`): parameters from `param` declarations and their
//! decorators, read with the built-in compiler's lexer and parser (`crate::bicep`), never
//! line regexes.

use std::path::Path;

use super::params::{ParamSpec, ParamType};
use super::{TargetScope, Template, leading_comment, name_of};
use crate::domain::ProviderType;

pub fn load(path: &Path) -> Template {
    let mut template = Template {
        name: name_of(path),
        provider_type: ProviderType::Azure,
        cloud: "azure",
        format: "bicep",
        title: String::new(),
        description: String::new(),
        path: path.to_path_buf(),
        file_name: path
            .file_name()
            .map(|f| f.to_string_lossy().into_owned())
            .unwrap_or_default(),
        parameters: Vec::new(),
        required_providers: Vec::new(),
        error: None,
        target_scope: Default::default(),
    };
    let source = match std::fs::read_to_string(path) {
        Ok(s) => s,
        Err(e) => {
            template.error = Some(format!("cannot read {}: {e}", path.display()));
            return template;
        }
    };
    (template.title, template.description) = leading_comment(&source);
    if template.title.is_empty() {
        template.title = template.name.clone();
    }
    match crate::bicep::target_scope(&source) {
        Ok(scope) => template.target_scope = TargetScope::from_name(&scope).unwrap_or_default(),
        Err(e) => {
            template.error = Some(format!("invalid Bicep at {e}"));
            return template;
        }
    }
    match parameters(&source) {
        Ok(mut params) => {
            params.sort_by(|a, b| a.name.cmp(&b.name));
            template.parameters = params;
        }
        Err(e) => template.error = Some(e),
    }
    template
}

/// Every `param` declaration of a Bicep source, with its decorators applied, read by the
/// built-in compiler's parser (which skips, rather than rejects, what it does not compile).
fn parameters(src: &str) -> Result<Vec<ParamSpec>, String> {
    let params = crate::bicep::parameters(src).map_err(|e| format!("invalid Bicep at {e}"))?;
    Ok(params
        .into_iter()
        .map(|p| {
            let param_type = match p.base_type.as_str() {
                "string" => ParamType::String,
                "int" => ParamType::Number,
                "bool" => ParamType::Bool,
                "object" => ParamType::Object,
                "array" => ParamType::List,
                _ => ParamType::Any,
            };
            let mut spec = ParamSpec::new(&p.name, param_type, p.type_text);
            spec.required = !p.nullable && p.default.is_none() && p.default_expression.is_none();
            spec.default = p.default;
            spec.default_expression = p.default_expression;
            spec.description = p.description.unwrap_or_default();
            spec.allowed_values = p.allowed;
            spec.min_length = p.min_length;
            spec.max_length = p.max_length;
            spec.min_value = p.min_value.map(|v| v as f64);
            spec.max_value = p.max_value.map(|v| v as f64);
            spec.sensitive = p.secure;
            spec
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn params_and_decorators_are_read() {
        let src = r#"// Storage
// A storage account.

@description('The account\'s name: global // not a comment')
@minLength(3)
@maxLength(24)
param name string

@allowed([
  'Standard_LRS'
  'Standard_GRS' // comment in an array
])
param sku string = 'Standard_LRS'

/* a block
   comment with param fake string */
@sys.description('Where: ${resourceGroup().location}')
param location string = resourceGroup().location

@secure()
param password string

@minValue(-1)
@maxValue(10)
param count int = 2

param tags object = {
  env: 'dev'
  'cost-center': 42
}

param names string[] = []
param optional string?
param text string = '''
multi
line'''
param escaped string = 'it\'s ${'in'}'

resource sa 'Microsoft.Storage/storageAccounts@2023-05-01' = {
  name: name
}
output id string = sa.id
"#;
        let params = parameters(src).expect("parses");
        let by = |n: &str| params.iter().find(|p| p.name == n).cloned().expect(n);
        assert_eq!(params.len(), 10);
        let name = by("name");
        assert_eq!(
            name.description,
            "The account's name: global // not a comment"
        );
        assert!(name.required);
        assert_eq!((name.min_length, name.max_length), (Some(3), Some(24)));
        let sku = by("sku");
        assert_eq!(
            sku.allowed_values,
            Some(vec![json!("Standard_LRS"), json!("Standard_GRS")])
        );
        assert_eq!(sku.default, Some(json!("Standard_LRS")));
        assert!(!sku.required);
        let location = by("location");
        assert!(!location.required);
        assert_eq!(location.default, None);
        assert_eq!(
            location.default_expression.as_deref(),
            Some("resourceGroup().location")
        );
        assert!(by("password").sensitive && by("password").required);
        let count = by("count");
        assert_eq!((count.min_value, count.max_value), (Some(-1.0), Some(10.0)));
        assert_eq!(count.param_type, ParamType::Number);
        assert_eq!(
            by("tags").default,
            Some(json!({"env": "dev", "cost-center": 42}))
        );
        assert_eq!(by("names").param_type, ParamType::List);
        assert!(!by("optional").required);
        assert_eq!(by("text").default, Some(json!("multi\nline")));
        assert_eq!(by("escaped").default, None, "interpolated: not a literal");
    }

    #[test]
    fn broken_sources_name_line_and_column() {
        let err = parameters("param a string\nparam b string = 'open\n").expect_err("unterminated");
        assert!(err.contains("line 2"), "{err}");
        assert!(parameters("/* never closed").is_err());
        let err = parameters("@description('x'\n").expect_err("unclosed decorator");
        assert!(err.contains("line 2, column 1: expected ')'"), "{err}");
        // Statements beyond the compiled subset are skipped, not rejected.
        let params = parameters(
            "param names array\nresource r 'A.B/c@1' = [for n in names: {\n  name: n\n}]\nmodule m './m.bicep' = {\n  name: 'm'\n}\nparam last string = map(names, n => n)[0]\n",
        )
        .expect("tolerated");
        assert_eq!(params.len(), 2);
        assert_eq!(
            params[1].default_expression.as_deref(),
            Some("map(names, n => n)[0]")
        );
    }
}
