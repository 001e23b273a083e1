//! Parameter schemas and the checks run on a request's parameters before it is queued.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::Value;

/// The JSON shape a parameter accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ParamType {
    String,
    Number,
    Bool,
    List,
    Map,
    Object,
    Any,
}

/// Which conversions the tool that receives the values makes, so a request is judged by the
/// rules of the engine that will run it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TypeRules {
    /// terraform converts numbers and bools to strings itself.
    Terraform,
    /// Azure Resource Manager converts nothing: a `string` parameter takes a JSON string, an
    /// `int` a JSON integer.
    Arm,
}

impl ParamType {
    fn accepts(self, v: &Value, rules: TypeRules) -> bool {
        match (self, rules) {
            (ParamType::String, TypeRules::Terraform) => {
                v.is_string() || v.is_number() || v.is_boolean()
            }
            (ParamType::String, TypeRules::Arm) => v.is_string(),
            (ParamType::Number, TypeRules::Terraform) => v.is_number(),
            (ParamType::Number, TypeRules::Arm) => v.is_i64() || v.is_u64(),
            (ParamType::Bool, _) => v.is_boolean(),
            (ParamType::List, _) => v.is_array(),
            (ParamType::Map | ParamType::Object, _) => v.is_object(),
            (ParamType::Any, _) => true,
        }
    }

    fn article(self, rules: TypeRules) -> &'static str {
        match self {
            ParamType::String => "a string",
            ParamType::Number if rules == TypeRules::Arm => "an integer",
            ParamType::Number => "a number",
            ParamType::Bool => "a boolean",
            ParamType::List => "a list",
            ParamType::Map => "a map",
            ParamType::Object => "an object",
            ParamType::Any => "any value",
        }
    }
}

/// One parameter as `/templates/.../parameters` describes it.
#[derive(Debug, Clone, Serialize)]
pub struct ParamSpec {
    pub name: String,
    #[serde(rename = "type")]
    pub param_type: ParamType,
    /// The type as the template writes it (`list(string)`, `securestring`...).
    pub type_expression: String,
    pub description: String,
    pub required: bool,
    pub default: Option<Value>,
    /// A default the template computes (Bicep `resourceGroup().location`): not required, but
    /// its value is only known at deployment.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub default_expression: Option<String>,
    pub allowed_values: Option<Vec<Value>>,
    pub min_length: Option<u64>,
    pub max_length: Option<u64>,
    pub min_value: Option<f64>,
    pub max_value: Option<f64>,
    /// Regular expressions from the template's own validation rules (`can(regex(...))`).
    pub patterns: Vec<PatternRule>,
    pub sensitive: bool,
}

/// A value must (or must not) match `pattern`; `message` is the template's own error text.
#[derive(Debug, Clone, Serialize)]
pub struct PatternRule {
    pub pattern: String,
    pub must_match: bool,
    pub message: String,
    #[serde(skip)]
    pub regex: regex::Regex,
}

impl ParamSpec {
    pub fn new(name: &str, param_type: ParamType, type_expression: String) -> ParamSpec {
        ParamSpec {
            name: name.to_string(),
            param_type,
            type_expression,
            description: String::new(),
            required: true,
            default: None,
            default_expression: None,
            allowed_values: None,
            min_length: None,
            max_length: None,
            min_value: None,
            max_value: None,
            patterns: Vec::new(),
            sensitive: false,
        }
    }

    fn check(&self, v: &Value, rules: TypeRules) -> Option<String> {
        if !self.param_type.accepts(v, rules) {
            return Some(format!("must be {}", self.param_type.article(rules)));
        }
        if let Some(allowed) = &self.allowed_values
            && !allowed.contains(v)
        {
            let list: Vec<String> = allowed.iter().map(|a| a.to_string()).collect();
            return Some(format!("must be one of {}", list.join(", ")));
        }
        let len = match v {
            Value::String(s) => Some(s.chars().count() as u64),
            Value::Array(a) => Some(a.len() as u64),
            _ => None,
        };
        if let (Some(len), Some(min)) = (len, self.min_length)
            && len < min
        {
            return Some(format!("must have a length of at least {min}"));
        }
        if let (Some(len), Some(max)) = (len, self.max_length)
            && len > max
        {
            return Some(format!("must have a length of at most {max}"));
        }
        if let Value::String(s) = v {
            for rule in &self.patterns {
                if rule.regex.is_match(s) != rule.must_match {
                    return Some(rule.message.clone());
                }
            }
        }
        if let Some(n) = v.as_f64() {
            if let Some(min) = self.min_value
                && n < min
            {
                return Some(format!("must be at least {min}"));
            }
            if let Some(max) = self.max_value
                && n > max
            {
                return Some(format!("must be at most {max}"));
            }
        }
        None
    }
}

/// Problems with a request, keyed by field (`parameters.bucket_name`), sorted. Serialized as a
/// list of `{field, problem}`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ValidationErrors(pub BTreeMap<String, String>);

impl Serialize for ValidationErrors {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeSeq;
        let mut seq = serializer.serialize_seq(Some(self.0.len()))?;
        for (field, problem) in &self.0 {
            seq.serialize_element(&serde_json::json!({ "field": field, "problem": problem }))?;
        }
        seq.end()
    }
}

impl ValidationErrors {
    pub fn add(&mut self, field: impl Into<String>, problem: impl Into<String>) {
        self.0.entry(field.into()).or_insert_with(|| problem.into());
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn merge(&mut self, other: ValidationErrors) {
        for (k, v) in other.0 {
            self.add(k, v);
        }
    }

    /// One sentence naming every field, for the envelope's `message`.
    pub fn summary(&self) -> String {
        let parts: Vec<String> = self.0.iter().map(|(k, v)| format!("{k}: {v}")).collect();
        parts.join("; ")
    }
}

pub fn validate(
    specs: &[ParamSpec],
    values: &serde_json::Map<String, Value>,
    rules: TypeRules,
) -> Result<(), ValidationErrors> {
    let mut errors = ValidationErrors::default();
    for (name, value) in values {
        match specs.iter().find(|s| &s.name == name) {
            None => {
                let known: Vec<&str> = specs.iter().map(|s| s.name.as_str()).collect();
                let hint = if known.is_empty() {
                    "this template takes no parameters".to_string()
                } else {
                    format!("known parameters: {}", known.join(", "))
                };
                errors.add(
                    format!("parameters.{name}"),
                    format!("unknown parameter ({hint})"),
                );
            }
            // null means "use the default", which only works when there is one.
            Some(spec) if value.is_null() => {
                if spec.required {
                    errors.add(
                        format!("parameters.{name}"),
                        "is required and may not be null",
                    );
                }
            }
            Some(spec) => {
                if let Some(problem) = spec.check(value, rules) {
                    errors.add(format!("parameters.{name}"), problem);
                }
            }
        }
    }
    for spec in specs.iter().filter(|s| s.required) {
        if !values.contains_key(&spec.name) {
            errors.add(format!("parameters.{}", spec.name), "is required");
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn spec(name: &str, t: ParamType) -> ParamSpec {
        ParamSpec::new(name, t, format!("{t:?}"))
    }

    fn check(specs: &[ParamSpec], v: Value) -> Result<(), ValidationErrors> {
        validate(specs, v.as_object().expect("object"), TypeRules::Terraform)
    }

    #[test]
    fn arm_converts_nothing_and_terraform_converts_to_strings() {
        let mut port = spec("port", ParamType::Number);
        port.required = false;
        let mut name = spec("name", ParamType::String);
        name.required = false;
        let specs = [name, port];
        let arm = |v: Value| validate(&specs, v.as_object().expect("object"), TypeRules::Arm);
        let e = arm(json!({"name": 42})).expect_err("a number for an ARM string");
        assert_eq!(e.0["parameters.name"], "must be a string");
        assert!(arm(json!({"name": true})).is_err());
        assert!(arm(json!({"name": "42", "port": 8080})).is_ok());
        let e = arm(json!({"port": 1.5})).expect_err("ARM int is an integer");
        assert_eq!(e.0["parameters.port"], "must be an integer");
        assert!(arm(json!({"port": "80"})).is_err());
        assert!(check(&specs, json!({"name": 42, "port": 1.5})).is_ok());
    }

    #[test]
    fn each_rule_rejects_and_accepts() {
        let mut name = spec("name", ParamType::String);
        name.min_length = Some(3);
        name.max_length = Some(5);
        let mut size = spec("size", ParamType::Number);
        size.required = false;
        size.min_value = Some(1.0);
        size.max_value = Some(10.0);
        let mut tier = spec("tier", ParamType::String);
        tier.required = false;
        tier.allowed_values = Some(vec![json!("a"), json!("b")]);
        let specs = [name, size, tier];

        assert!(check(&specs, json!({"name": "abcd", "size": 3, "tier": "a"})).is_ok());
        let e = check(&specs, json!({"name": "ab"})).expect_err("too short");
        assert!(e.0["parameters.name"].contains("at least 3"));
        assert!(check(&specs, json!({"name": "abcdef"})).is_err());
        assert!(check(&specs, json!({"name": "abc", "size": 0})).is_err());
        assert!(check(&specs, json!({"name": "abc", "size": 11})).is_err());
        assert!(check(&specs, json!({"name": "abc", "size": "3"})).is_err());
        assert!(check(&specs, json!({"name": "abc", "tier": "c"})).is_err());
        assert!(check(&specs, json!({"name": "abc", "size": null})).is_ok());
        let e = check(&specs, json!({"name": "ab", "tier": "c"})).expect_err("two problems");
        assert_eq!(
            serde_json::to_value(&e).expect("json"),
            json!([
                {"field": "parameters.name", "problem": "must have a length of at least 3"},
                {"field": "parameters.tier", "problem": "must be one of \"a\", \"b\""}
            ])
        );
        let e = check(&specs, json!({"other": 1})).expect_err("unknown and missing");
        assert_eq!(e.0.len(), 2, "{e:?}");
        assert!(e.0.contains_key("parameters.other") && e.0.contains_key("parameters.name"));
    }
}

#[cfg(test)]
mod pattern_tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn pattern_rules_use_the_templates_message() {
        let mut s = ParamSpec::new("n", ParamType::String, "string".into());
        s.patterns.push(PatternRule {
            pattern: "^[a-z]+$".into(),
            must_match: true,
            message: "lowercase only".into(),
            regex: regex::Regex::new("^[a-z]+$").expect("regex"),
        });
        s.patterns.push(PatternRule {
            pattern: "xx".into(),
            must_match: false,
            message: "no double x".into(),
            regex: regex::Regex::new("xx").expect("regex"),
        });
        assert_eq!(s.check(&json!("abc"), TypeRules::Arm), None);
        assert_eq!(
            s.check(&json!("Abc"), TypeRules::Arm).as_deref(),
            Some("lowercase only")
        );
        assert_eq!(
            s.check(&json!("axxb"), TypeRules::Terraform).as_deref(),
            Some("no double x")
        );
    }
}
