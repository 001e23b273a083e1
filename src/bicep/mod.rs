//! A native Bicep → ARM JSON compiler for the language of resource templates (params with
//! decorators, vars, resources with `parent`/`scope`/`dependsOn`/conditions, `existing`
//! resources, loops over resources, properties, variables and outputs, outputs, the built-in
//! functions), with the official compiler's output: a classic template (no `languageVersion`)
//! equal to its `main.json` apart from `metadata._generator`.
//!
//! Anything outside that subset (modules, nested child resources, user-defined types, lambdas,
//! imports, other target scopes, reads of a whole resource collection...) is rejected with an
//! error naming the construct and its line and column; the compiler never guesses.

mod arm;
mod emit;
mod lexer;
mod syntax;

use serde_json::Value;

/// A compile error at a position of the source (1-based line and column, in characters).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}, column {column}: {message}")]
pub struct CompileError {
    pub line: usize,
    pub column: usize,
    pub message: String,
}

impl CompileError {
    fn at(src: &str, offset: usize, message: impl Into<String>) -> CompileError {
        let offset = offset.min(src.len());
        let before = src.get(..offset).unwrap_or(src);
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map(|i| i + 1).unwrap_or(0);
        let column = before[line_start..]
            .trim_start_matches('\u{feff}')
            .chars()
            .count()
            + 1;
        CompileError {
            line,
            column,
            message: message.into(),
        }
    }
}

/// A `param` declaration as the template catalog describes it.
#[derive(Debug, Clone, PartialEq)]
pub struct Parameter {
    pub name: String,
    /// The type as written (`string`, `string[]`, `'a' | 'b'`, `int?`).
    pub type_text: String,
    /// The underlying type: `string`, `int`, `bool`, `object`, `array`, or a type name.
    pub base_type: String,
    pub nullable: bool,
    /// A literal default.
    pub default: Option<Value>,
    /// A default computed at deployment (`resourceGroup().location`), as written.
    pub default_expression: Option<String>,
    pub description: Option<String>,
    pub allowed: Option<Vec<Value>>,
    pub min_length: Option<u64>,
    pub max_length: Option<u64>,
    pub min_value: Option<i64>,
    pub max_value: Option<i64>,
    pub secure: bool,
}

/// The parameters of a Bicep source with their decorators, for any template (statements
/// beyond the compiled subset are skipped, not rejected). Errors are lexical, or a `param`
/// statement that does not parse.
pub fn parameters(src: &str) -> Result<Vec<Parameter>, CompileError> {
    let tokens = lexer::tokenize(src)?;
    let stmts = syntax::parse_parameters(src, tokens)?;
    Ok(stmts
        .into_iter()
        .filter_map(|s| {
            let syntax::StmtKind::Param {
                name,
                ty,
                default,
                default_text,
            } = s.kind
            else {
                return None;
            };
            let default_value = default.as_ref().and_then(syntax::literal);
            let mut p = Parameter {
                name,
                base_type: if ty.array {
                    "array".into()
                } else {
                    ty.base.clone()
                },
                nullable: ty.nullable,
                type_text: ty.text,
                default_expression: default_text.filter(|_| default_value.is_none()),
                default: default_value,
                description: None,
                allowed: None,
                min_length: None,
                max_length: None,
                min_value: None,
                max_value: None,
                secure: false,
            };
            for d in &s.decorators {
                let arg = d.args.first().and_then(syntax::literal);
                match d.name.as_str() {
                    "description" => {
                        p.description = arg.and_then(|v| v.as_str().map(str::to_string))
                    }
                    "allowed" => p.allowed = arg.and_then(|v| v.as_array().cloned()),
                    "minLength" => p.min_length = arg.and_then(|v| v.as_u64()),
                    "maxLength" => p.max_length = arg.and_then(|v| v.as_u64()),
                    "minValue" => p.min_value = arg.and_then(|v| v.as_i64()),
                    "maxValue" => p.max_value = arg.and_then(|v| v.as_i64()),
                    "secure" => p.secure = true,
                    _ => {}
                }
            }
            Some(p)
        })
        .collect())
}

/// Compiles Bicep source to an ARM template.
pub fn compile(src: &str) -> Result<Value, CompileError> {
    let tokens = lexer::tokenize(src)?;
    let stmts = syntax::parse(src, tokens)?;
    emit::emit(src, &stmts)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn the_official_rules_hold_on_a_small_template() {
        let t = compile(
            "param p string\nvar key = st.listKeys().keys[0].value\nvar lit = '{x}-${p}'\n\
             resource st 'Microsoft.Storage/storageAccounts@2023-05-01' = {\n  name: p\n}\n\
             resource c 'Microsoft.Storage/storageAccounts/blobServices@2023-05-01' = if (p != 'x') {\n  parent: st\n  name: 'default'\n  properties: {\n    k: key\n    n: -1\n    '[x]': true\n  }\n}\n\
             output loc string = st.location\n",
        )
        .expect("compiles");
        // A literal brace is escaped in format(); a variable with runtime values is inlined.
        assert_eq!(
            t["variables"],
            json!({"lit": "[format('{{x}}-{0}', parameters('p'))]"})
        );
        let c = &t["resources"][1];
        assert_eq!(c["condition"], "[not(equals(parameters('p'), 'x'))]");
        assert_eq!(c["name"], "[format('{0}/{1}', parameters('p'), 'default')]");
        assert_eq!(
            c["properties"],
            json!({
                "k": "[listKeys(resourceId('Microsoft.Storage/storageAccounts', parameters('p')), '2023-05-01').keys[0].value]",
                "n": -1,
                // ARM evaluates a key starting with `[` too: a literal one is escaped.
                "[[x]": true
            })
        );
        assert_eq!(
            c["dependsOn"],
            json!(["[resourceId('Microsoft.Storage/storageAccounts', parameters('p'))]"])
        );
        assert_eq!(
            t["outputs"]["loc"]["value"],
            "[reference(resourceId('Microsoft.Storage/storageAccounts', parameters('p')), '2023-05-01', 'full').location]"
        );
    }

    #[test]
    fn existing_resources_are_referenced_never_deployed() {
        let t = compile(
            "param rg string\n\
             resource vnet 'Microsoft.Network/virtualNetworks@2023-05-01' = {\n  name: 'v'\n}\n\
             resource subnet 'Microsoft.Network/virtualNetworks/subnets@2023-05-01' existing = {\n  parent: vnet\n  name: 's'\n}\n\
             resource kv 'Microsoft.KeyVault/vaults@2023-07-01' existing = {\n  name: 'kv'\n  scope: resourceGroup(rg)\n}\n\
             resource nic 'Microsoft.Network/networkInterfaces@2023-05-01' = {\n  name: 'n'\n  properties: {\n    subnet: subnet.id\n    uri: kv.properties.vaultUri\n  }\n}\n",
        )
        .expect("compiles");
        let resources = t["resources"].as_array().expect("resources");
        assert_eq!(resources.len(), 2, "existing ones are not deployed: {t}");
        let nic = &resources[1];
        assert_eq!(
            nic["properties"]["subnet"],
            "[resourceId('Microsoft.Network/virtualNetworks/subnets', 'v', 's')]"
        );
        assert_eq!(
            nic["properties"]["uri"],
            "[reference(extensionResourceId(format('/subscriptions/{0}/resourceGroups/{1}', subscription().subscriptionId, parameters('rg')), 'Microsoft.KeyVault/vaults', 'kv'), '2023-07-01').vaultUri]"
        );
        // The existing subnet is no dependency; the vnet it lives in, deployed here, is.
        assert_eq!(
            nic["dependsOn"],
            json!(["[resourceId('Microsoft.Network/virtualNetworks', 'v')]"])
        );
    }

    #[test]
    fn loops_become_copy_loops() {
        let t = compile(
            "param names array\n\
             var sizes = [for (n, i) in names: {\n  name: n\n  size: i\n}]\n\
             @batchSize(2)\n\
             resource sa 'Microsoft.Storage/storageAccounts@2023-05-01' = [for n in names: if (n != 'x') {\n  name: n\n  properties: {\n    rules: [for r in range(0, 2): {\n      value: '${n}-${r}'\n    }]\n  }\n}]\n\
             resource lock 'Microsoft.Authorization/locks@2020-05-01' = {\n  name: 'l'\n  properties: {\n    id: sa[0].id\n  }\n}\n\
             output ids array = [for (n, i) in names: sa[i].id]\n",
        )
        .expect("compiles");
        assert_eq!(
            t["variables"]["copy"],
            json!([{"name": "sizes", "count": "[length(parameters('names'))]", "input": {
                "name": "[parameters('names')[copyIndex('sizes')]]", "size": "[copyIndex('sizes')]"}}])
        );
        let sa = &t["resources"][0];
        assert_eq!(
            sa["copy"],
            json!({"name": "sa", "count": "[length(parameters('names'))]", "mode": "serial", "batchSize": 2})
        );
        assert_eq!(
            sa["condition"],
            "[not(equals(parameters('names')[copyIndex()], 'x'))]"
        );
        assert_eq!(
            sa["properties"]["copy"],
            json!([{"name": "rules", "count": "[length(range(0, 2))]", "input": {
                "value": "[format('{0}-{1}', parameters('names')[copyIndex()], range(0, 2)[copyIndex('rules')])]"}}])
        );
        // A dependency on a loop is on the whole collection.
        assert_eq!(t["resources"][1]["dependsOn"], json!(["sa"]));
        assert_eq!(
            t["resources"][1]["properties"]["id"],
            "[resourceId('Microsoft.Storage/storageAccounts', parameters('names')[0])]"
        );
        assert_eq!(
            t["outputs"]["ids"]["copy"]["input"],
            "[resourceId('Microsoft.Storage/storageAccounts', parameters('names')[copyIndex()])]"
        );
        let e = compile(
            "resource sa 'Microsoft.Storage/storageAccounts@2023-05-01' = [for n in ['a']: {\n  name: n\n}]\noutput all array = sa\n",
        )
        .expect_err("a whole collection");
        assert!(e.message.contains("whole resource collection"), "{e}");
    }

    #[test]
    fn constructs_beyond_the_subset_are_named_with_their_position() {
        let cases = [
            ("module m './m.bicep' = {}\n", 1, 1, "modules"),
            (
                "resource r 'A.B/c@1' existing = {\n  name: 'x'\n  dependsOn: []\n}\n",
                3,
                14,
                "explicit dependencies of existing resources",
            ),
            (
                "var xs = [1, [for x in range(0, 2): x]]\n",
                1,
                14,
                "must be the whole value",
            ),
            ("targetScope = 'subscription'\n", 1, 15, "target scopes"),
            ("type t = string\n", 1, 1, "user-defined types"),
            ("param p string[]\n", 1, 9, "typed-array types"),
            ("var x = y\n", 1, 9, "'y' is not declared"),
            ("var x = 1\nvar x = 2\n", 2, 1, "declared more than once"),
            ("var x = nope()\n", 1, 9, "unknown function 'nope()'"),
            ("var a = b\nvar b = a\n", 2, 9, "refers to itself"),
            (
                "resource r 'A.B/c@1' = {\n  name: r.properties.x\n}\n",
                1,
                1,
                "'r' refers to itself through its name",
            ),
            (
                "resource a 'A.B/c@1' = {\n  name: 'a'\n  scope: b\n}\nresource b 'A.B/c@1' = {\n  name: 'b'\n  scope: a\n}\n",
                1,
                1,
                "a -> b -> a",
            ),
        ];
        for (src, line, column, what) in cases {
            let e = compile(src).expect_err(src);
            assert!(e.message.contains(what), "{src}: {e}");
            assert_eq!((e.line, e.column), (line, column), "{src}: {e}");
        }
    }
}
