//! A native Bicep → ARM JSON compiler for the language of resource templates (params with
//! decorators, vars, resources with `parent`/`scope`/`dependsOn`/conditions, `existing`
//! resources, nested child resources and `parent::child`, loops over resources, properties,
//! variables and outputs, outputs, the built-in functions, lambdas, user-defined functions and
//! types), with the official compiler's output: a classic template (no `languageVersion`), or
//! a `languageVersion` 2.0 one (resources by symbolic name) where the official compiler writes
//! one (user-defined types and functions, typed variables, aggregate parameter and output
//! types), equal to its `main.json` apart from `metadata._generator`.
//!
//! Local modules (`module m './m.bicep'` and `.json` ARM templates) become nested deployments
//! with an inline template, when the caller names the folder the files live in
//! ([`compile_file`], [`compile_with`]); the files are read through a [`FileLoader`], and a
//! path leading outside the folder is an error.
//!
//! Every target scope compiles (`targetScope = 'subscription'`, `'managementGroup'`,
//! `'tenant'`): the schema, resource ids at that scope, and modules deployed to other scopes
//! (`scope: resourceGroup(...)`, a resource group of the file, `subscription(...)`,
//! `managementGroup(...)`, `tenant()`) as the official compiler writes them; [`target_scope`]
//! reads a file's scope without compiling it.
//!
//! Registry (`br:`, `br/public:`) and template-spec (`ts:`) modules are read from a local
//! module cache as the official CLI fills it (`bicep restore`, `~/.bicep`), when the caller
//! gives one ([`WithModuleCache`]).
//!
//! Lambdas, as arguments of the functions that take them (`map(a, x => ...)`), become ARM's
//! `lambda('x', ...)` with `lambdaVariables('x')`.
//!
//! Anything outside that subset (registry modules not in the cache, user-defined types,
//! imports, the `local` target scope, reads of a whole resource collection...) is rejected with
//! an error naming the construct and its line and column; the compiler never guesses.

mod arm;
mod emit;
mod files;
mod lexer;
mod registry;
mod scope;
mod syntax;
mod yaml;

pub use files::{FileLoader, Folder, LoadError, MAX_MODULE_DEPTH, NoFiles, WithModuleCache};
pub use scope::Scope;

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

/// The target scope a Bicep source declares (`targetScope = '...'`), without compiling it:
/// `"resourceGroup"`, `"subscription"`, `"managementGroup"` or `"tenant"`; `"resourceGroup"`
/// when there is no `targetScope` statement. Statements beyond the compiled subset are skipped,
/// not rejected. Errors are lexical, a `targetScope` that does not parse, is not one literal
/// string naming a scope, or is declared twice (with its line and column).
pub fn target_scope(src: &str) -> Result<String, CompileError> {
    let tokens = lexer::tokenize(src)?;
    let stmts = syntax::parse_parameters(src, tokens)?;
    Ok(scope::declared(src, &stmts)?.name().to_string())
}

/// Compiles Bicep source to an ARM template. It reads no other file: modules and the `load*`
/// functions are rejected (see [`compile_file`]).
pub fn compile(src: &str) -> Result<Value, CompileError> {
    compile_with(src, "main.bicep", &NoFiles)
}

/// Compiles `src`, the text of the file at `path` (relative to the root `files` reads from,
/// '/'-separated): modules and `load*` targets are resolved against `path` and read through
/// `files`. An error in a module is reported at the module's path in `src`, with the module's
/// own line and column in the message.
pub fn compile_with(src: &str, path: &str, files: &dyn FileLoader) -> Result<Value, CompileError> {
    let path = files::resolve("", path).map_err(|e| CompileError {
        line: 1,
        column: 1,
        message: format!("the template's path: {e}"),
    })?;
    files::Context::new(files).compile(src, &path)
}

/// Like [`compile_with`], with every template (modules included) written as a
/// `languageVersion` 2.0 one (resources by symbolic name), as the official compiler writes them
/// with its experimental `symbolicNameCodegen` feature on.
pub fn compile_with_symbolic_names(
    src: &str,
    path: &str,
    files: &dyn FileLoader,
) -> Result<Value, CompileError> {
    let path = files::resolve("", path).map_err(|e| CompileError {
        line: 1,
        column: 1,
        message: format!("the template's path: {e}"),
    })?;
    let mut context = files::Context::new(files);
    context.symbolic_names = true;
    context.compile(src, &path)
}

/// Compiles the Bicep file `file` (a path under `root`, or relative to it) with the files under
/// `root` readable as modules and `load*` targets (and nothing outside it).
pub fn compile_file(root: &std::path::Path, file: &std::path::Path) -> Result<Value, CompileError> {
    let outside = || CompileError {
        line: 1,
        column: 1,
        message: format!("{} is not a file under {}", file.display(), root.display()),
    };
    let rel = files::relative_to(root, file).ok_or_else(outside)?;
    let folder = Folder::new(root);
    let bytes = folder.load(&rel).map_err(|e| CompileError {
        line: 1,
        column: 1,
        message: format!("{}: {e}", file.display()),
    })?;
    let src = String::from_utf8(bytes).map_err(|_| CompileError {
        line: 1,
        column: 1,
        message: format!("{} is not UTF-8 text", file.display()),
    })?;
    compile_with(&src, &rel, &folder)
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
    fn non_null_assertions_emit_the_inner_expression() {
        // `x!` only narrows a type: the official compiler writes the expression it asserts.
        let with = |bang: &str| {
            format!(
                "param o object
                 param xs array = []
                 resource sa 'Microsoft.Storage/storageAccounts@2023-01-01' = {{
  name: 's'
}}
                 resource r 'A.B/c@1' = {{
  name: o{b}.name
  properties: {{
    a: sa{b}.properties{b}.primaryEndpoints.blob
    b: (o{b}){b}.x[0]{b}
    c: !(o{b}.f{b})
    d: o{b}.y{b} != xs[0]{b}
    e: -length(xs{b}){b}
  }}
}}
                 output n string = toLower(o{b}.name{b})
",
                b = bang
            )
        };
        let plain = compile(&with("")).expect("compiles without");
        let asserted = compile(&with("!")).expect("compiles with");
        assert_eq!(asserted, plain);
        let r = &asserted["resources"][1];
        assert_eq!(r["name"], "[parameters('o').name]");
        assert_eq!(
            r["properties"]["a"],
            "[reference(resourceId('Microsoft.Storage/storageAccounts', 's'), '2023-01-01').primaryEndpoints.blob]"
        );
        assert_eq!(
            r["properties"]["d"],
            "[not(equals(parameters('o').y, parameters('xs')[0]))]"
        );
        assert_eq!(
            r["dependsOn"],
            json!(["[resourceId('Microsoft.Storage/storageAccounts', 's')]"])
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
        // A dependency on one element of a loop is on that element.
        assert_eq!(
            t["resources"][1]["dependsOn"],
            json!(["[resourceId('Microsoft.Storage/storageAccounts', parameters('names')[0])]"])
        );
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
    fn loop_elements_are_parents_and_dependencies_by_their_own_id() {
        let t = compile(
            "param n int\n\
             resource ip 'Microsoft.Network/publicIPAddresses@2023-05-01' = [for i in range(0, n): {\n  name: 'ip${i}'\n}]\n\
             resource vm 'Microsoft.Compute/virtualMachines@2023-03-01' = [for i in range(0, n): {\n  name: 'vm${i}'\n  properties: {\n    a: ip[i].properties.ipAddress\n    b: [for j in range(0, 2): ip[j].id]\n  }\n}]\n\
             resource ext 'Microsoft.Compute/virtualMachines/extensions@2023-03-01' = [for i in range(0, n): {\n  parent: vm[i]\n  name: 'ext'\n  dependsOn: [\n    ip[0]\n  ]\n}]\n\
             resource fw 'Microsoft.Network/azureFirewalls@2023-05-01' = {\n  name: 'fw'\n  properties: {\n    x: ip[0].properties.ipAddress\n    y: ip[0].properties.ipAddress\n  }\n}\n",
        )
        .expect("compiles");
        let vm = &t["resources"][1];
        // The index inside a property loop names no element of the resource's own loop.
        assert_eq!(vm["dependsOn"], json!(["ip"]));
        let ext = &t["resources"][2];
        assert_eq!(
            ext["name"],
            "[format('{0}/{1}', format('vm{0}', range(0, parameters('n'))[range(0, parameters('n'))[copyIndex()]]), 'ext')]"
        );
        assert_eq!(
            ext["dependsOn"],
            json!([
                "[resourceId('Microsoft.Network/publicIPAddresses', format('ip{0}', range(0, parameters('n'))[0]))]",
                "[resourceId('Microsoft.Compute/virtualMachines', format('vm{0}', range(0, parameters('n'))[range(0, parameters('n'))[copyIndex()]]))]"
            ])
        );
        // One element read twice is listed twice, as the official compiler writes it.
        let ip0 = "[resourceId('Microsoft.Network/publicIPAddresses', format('ip{0}', range(0, parameters('n'))[0]))]";
        assert_eq!(t["resources"][3]["dependsOn"], json!([ip0, ip0]));
        let e = compile(
            "resource vm 'A.B/vms@1' = [for i in range(0, 2): {\n  name: 'vm${i}'\n}]\nresource x 'A.B/vms/x@1' = {\n  parent: vm\n  name: 'x'\n}\n",
        )
        .expect_err("a whole loop as parent");
        assert!(e.message.contains("name one of its resources"), "{e}");
    }

    #[test]
    fn an_existing_child_lives_in_the_group_of_its_parent() {
        let t = compile(
            "param rg string\n\
             resource vnet 'Microsoft.Network/virtualNetworks@2023-05-01' existing = {\n  scope: resourceGroup(rg)\n  name: 'v'\n}\n\
             resource subnet 'Microsoft.Network/virtualNetworks/subnets@2023-05-01' existing = {\n  parent: vnet\n  name: 's'\n}\n\
             output id string = subnet.id\n",
        )
        .expect("compiles");
        assert_eq!(
            t["outputs"]["id"]["value"],
            "[extensionResourceId(format('/subscriptions/{0}/resourceGroups/{1}', subscription().subscriptionId, parameters('rg')), 'Microsoft.Network/virtualNetworks/subnets', 'v', 's')]"
        );
        // Deploying a child there from here would write a wrong id: rejected.
        let e = compile(
            "resource vnet 'Microsoft.Network/virtualNetworks@2023-05-01' existing = {\n  scope: resourceGroup('other')\n  name: 'v'\n}\n\
             resource subnet 'Microsoft.Network/virtualNetworks/subnets@2023-05-01' = {\n  parent: vnet\n  name: 's'\n}\n",
        )
        .expect_err("a deployed child in another group");
        assert!(e.message.contains("parent in another scope"), "{e}");
        assert_eq!((e.line, e.column), (5, 1));
    }

    #[test]
    fn child_types_are_compared_without_case() {
        let t = compile(
            "resource p 'Microsoft.Cdn/profiles/ruleSets@2023-05-01' existing = {\n  name: 'p/r'\n}\n\
             resource c 'Microsoft.Cdn/profiles/rulesets/rules@2023-05-01' = {\n  parent: p\n  name: 'c'\n}\n",
        )
        .expect("compiles");
        assert_eq!(
            t["resources"][0]["type"],
            "Microsoft.Cdn/profiles/rulesets/rules"
        );
    }

    #[test]
    fn a_loop_variable_hiding_a_name_another_declaration_reads_is_refused() {
        let head = "param name string\nparam list array\n\
             resource a 'Microsoft.Storage/storageAccounts@2023-01-01' = {\n  name: name\n  location: 'x'\n}\n";
        // a.id inside the loop would read the loop's `name`: refused.
        let src = format!(
            "{head}resource b 'Microsoft.Storage/storageAccounts@2023-01-01' = [for name in list: {{\n  name: name\n  location: 'x'\n  tags: {{\n    id: a.id\n  }}\n}}]\n"
        );
        let e = compile(&src).expect_err("hidden");
        assert!(e.message.contains("loop variables named like a symbol that a resource's name or scope or a variable reads ('name')"), "{e}");
        assert_eq!((e.line, e.column), (7, 61));
        // Conservatively, wherever the loop is (the resource's name reads the parameter).
        let src = format!("{head}var v = [for name in list: name]\n");
        let e = compile(&src).expect_err("hidden");
        assert!(e.message.contains("('name')"), "{e}");
        // Hiding a name nothing else reads (here the resource's own symbol) compiles.
        let t = compile(
            "param list array\n\
             resource runbook 'A.B/c@2020-01-01' = [for runbook in list: {\n  name: runbook.n\n}]\n",
        )
        .expect("compiles");
        assert_eq!(
            t["resources"][0]["name"],
            "[parameters('list')[copyIndex()].n]"
        );
    }

    #[test]
    fn lambdas_become_arm_lambdas() {
        let src = "param names array\n\
             param n int\n\
             var m = map(names, (x, i) => '${i}:${x}')\n\
             var r = reduce(names, 0, (acc, cur, i) => acc + length(cur) + i)\n\
             var g = groupBy(names, x => substring(x, 0, 1), x => toUpper(x))\n\
             resource s 'Microsoft.Storage/storageAccounts@2023-01-01' = [for (name, k) in names: {\n  name: name\n  location: 'x'\n  tags: {\n    t: string(filter(names, y => y != name && k < n))\n  }\n}]\n\
             output o array = map(range(0, 2), z => s[0].properties.primaryEndpoints.blob)\n\
             output v object = mapValues({ a: 1 }, q => q * n)\n";
        let t = compile(src).expect("compiles");
        assert_eq!(
            t["variables"]["m"],
            "[map(parameters('names'), lambda('x', 'i', format('{0}:{1}', lambdaVariables('i'), lambdaVariables('x'))))]"
        );
        assert_eq!(
            t["variables"]["r"],
            "[reduce(parameters('names'), 0, lambda('acc', 'cur', 'i', add(add(lambdaVariables('acc'), length(lambdaVariables('cur'))), lambdaVariables('i'))))]"
        );
        assert_eq!(
            t["variables"]["g"],
            "[groupBy(parameters('names'), lambda('x', substring(lambdaVariables('x'), 0, 1)), lambda('x', toUpper(lambdaVariables('x'))))]"
        );
        assert_eq!(
            t["resources"][0]["tags"]["t"],
            "[string(filter(parameters('names'), lambda('y', and(not(equals(lambdaVariables('y'), parameters('names')[copyIndex()])), less(copyIndex(), parameters('n'))))))]"
        );
        assert_eq!(
            t["outputs"]["o"]["value"],
            "[map(range(0, 2), lambda('z', reference(resourceId('Microsoft.Storage/storageAccounts', parameters('names')[0]), '2023-01-01').primaryEndpoints.blob))]"
        );
        assert_eq!(
            t["outputs"]["v"]["value"],
            "[mapValues(createObject('a', 1), lambda('q', mul(lambdaVariables('q'), parameters('n'))))]"
        );
        for (src, at, what) in [
            (
                "var x = i => i\n",
                (1, 9),
                "lambda expressions are not supported",
            ),
            (
                "var x = concat([1], i => i)\n",
                (1, 21),
                "a lambda is only an argument of filter(), map()",
            ),
            (
                "var x = map([1], 2)\n",
                (1, 18),
                "argument 2 of map() must be a lambda",
            ),
            (
                "var x = sort([1], a => a)\n",
                (1, 19),
                "the lambda of sort() takes 2 parameters",
            ),
            (
                "var x = map([1], (a, b, c) => a)\n",
                (1, 18),
                "the lambda of map() takes 1 or 2 parameters",
            ),
            (
                "var x = reduce([1], (a, b) => a)\n",
                (1, 9),
                "reduce() takes 3 arguments",
            ),
            (
                "var x = filter(range(0, 10), i => i)\n",
                (1, 35),
                "the lambda of filter() must return a bool",
            ),
            (
                "var x = filter([true, 'a'], i => i)\n",
                (1, 34),
                "the lambda of filter() must return a bool",
            ),
            (
                "var x = filter(['a'], (i, k) => k + 1)\n",
                (1, 35),
                "the lambda of filter() must return a bool",
            ),
            (
                "var x = sort(range(0, 10), (i, j) => i)\n",
                (1, 38),
                "the lambda of sort() must return a bool",
            ),
            (
                "var x = toObject(range(0, 10), i => i)\n",
                (1, 37),
                "the lambda of toObject() must return a string",
            ),
            (
                "var x = groupBy([1], i => {})\n",
                (1, 27),
                "the lambda of groupBy() must return a string",
            ),
            (
                "param p int\nvar x = map([1], p => p)\n",
                (2, 18),
                "lambda variables named like another symbol",
            ),
            (
                "var x = map([1], a => map([2], a => a))\n",
                (1, 32),
                "lambda variables named like another symbol",
            ),
            (
                "var x = map([1], (a, a) => a)\n",
                (1, 18),
                "lambda variables named like another symbol",
            ),
            (
                "resource s 'A.B/c@2020-01-01' = [for i in range(0, 2): {\n  name: 'n${i}'\n}]\nvar x = map(range(0, 2), j => s[j].id)\n",
                (4, 33),
                "lambda variables indexing a resource or module collection are not allowed",
            ),
            (
                "output x array = map(['a'], j => reference(j).x)\n",
                (1, 34),
                "lambda variables in the arguments of reference() are not allowed",
            ),
        ] {
            let e = compile(src).expect_err(src);
            assert!(e.message.contains(what), "{src}: {e}");
            assert_eq!((e.line, e.column), at, "{src}: {e}");
        }
    }

    #[test]
    fn nested_resources_are_children_written_first() {
        let t = compile(
            "param c bool\n\
             resource vnet 'Microsoft.Network/virtualNetworks@2023-05-01' = if (c) {\n  name: 'v'\n  resource subnet 'subnets' = {\n    name: 's'\n    properties: {\n      other: other.id\n    }\n  }\n  resource other 'subnets@2022-01-01' existing = {\n    name: 'o'\n  }\n}\n\
             output id string = vnet::subnet.id\n",
        )
        .expect("compiles");
        let subnet = &t["resources"][0];
        assert_eq!(subnet["type"], "Microsoft.Network/virtualNetworks/subnets");
        assert_eq!(subnet["apiVersion"], "2023-05-01");
        // The parent's condition holds for its children.
        assert_eq!(subnet["condition"], "[parameters('c')]");
        assert_eq!(subnet["name"], "[format('{0}/{1}', 'v', 's')]");
        assert_eq!(
            subnet["properties"]["other"],
            "[resourceId('Microsoft.Network/virtualNetworks/subnets', 'v', 'o')]"
        );
        assert_eq!(
            subnet["dependsOn"],
            json!(["[resourceId('Microsoft.Network/virtualNetworks', 'v')]"])
        );
        assert_eq!(
            t["resources"][1]["type"],
            "Microsoft.Network/virtualNetworks"
        );
        assert_eq!(
            t["outputs"]["id"]["value"],
            "[resourceId('Microsoft.Network/virtualNetworks/subnets', 'v', 's')]"
        );
        for (src, line, column, what) in [
            (
                "resource v 'A.B/c@1' = [for i in range(0, 2): {\n  name: 'v${i}'\n  resource s 'd' = {\n    name: 's'\n  }\n}]\n",
                3,
                3,
                "nested child resources of resource loops",
            ),
            (
                "resource v 'A.B/c@1' = {\n  name: 'v'\n  resource s 'd' = {\n    name: 's'\n    parent: v\n  }\n}\n",
                5,
                5,
                "has its parent already",
            ),
            (
                "resource v 'A.B/c@1' = {\n  name: 'v'\n  properties: {\n    resource s 'd' = {}\n  }\n}\n",
                4,
                5,
                "only be declared in a resource body",
            ),
            (
                "var xs = [for i in range(0, 2): v.properties]\nresource v 'A.B/c@1' = {\n  name: 'v'\n}\n",
                1,
                10,
                "variable loops over values known only during the deployment",
            ),
        ] {
            let e = compile(src).expect_err(src);
            assert!(e.message.contains(what), "{src}: {e}");
            assert_eq!((e.line, e.column), (line, column), "{src}: {e}");
        }
    }

    #[test]
    fn constructs_beyond_the_subset_are_named_with_their_position() {
        let cases = [
            ("module m './m.bicep' = {}\n", 1, 10, "modules"),
            (
                "var x = vm[0]::ext.id\n",
                1,
                14,
                "nested resource access (::) other than",
            ),
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
            (
                "targetScope = 'local'\n",
                1,
                15,
                "target scopes like 'local'",
            ),
            (
                "type t = resourceInput<'A.B/c@1'>.name\n",
                1,
                10,
                "resource-derived types ('resourceInput<...>')",
            ),
            ("param p [string, int]\n", 1, 9, "tuple types"),
            ("param p 'a' | 1\n", 1, 9, "union types other than"),
            (
                "import {a} from './a.bicep'\n",
                1,
                1,
                "compile-time imports",
            ),
            (
                "type string = int\n",
                1,
                1,
                "types named like a built-in type",
            ),
            (
                "func f() int => g()\nfunc g() int => f()\n",
                1,
                1,
                "calls itself",
            ),
            (
                "param p int\nfunc f() int => p\n",
                2,
                17,
                "reads only its own parameters",
            ),
            (
                "func length(a array) int => 1\n",
                1,
                1,
                "named like a built-in function",
            ),
            (
                "func f(a int) int => a\nvar x = f()\n",
                2,
                9,
                "f() takes 1 arguments",
            ),
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

    #[test]
    fn user_defined_functions_make_a_language_version_2_template() {
        let src = "func isEven(i int) bool => i % 2 == 0\n\
                   @description('Greets')\n\
                   func hello(names string[]) string[] => map(names, n => 'Hi ${n}${isEven(length(n)) ? \'!\' : \'\'}')\n\
                   param who string[] = ['a']\n\
                   var x = hello(who)\n\
                   resource sa 'Microsoft.Storage/storageAccounts@2023-01-01' existing = {\n  name: 'sa'\n}\n\
                   resource c 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-01-01' = {\n  name: 'sa/default/${x[0]}'\n  properties: {\n    metadata: {\n      id: sa.id\n      ep: sa.properties.primaryEndpoints.blob\n    }\n  }\n}\n\
                   output o string[] = x\n";
        let t = compile(src).expect("compiles");
        assert_eq!(t["languageVersion"], "2.0");
        assert_eq!(
            t["functions"],
            serde_json::json!([{"namespace": "__bicep", "members": {
                "isEven": {
                    "parameters": [{"type": "int", "name": "i"}],
                    "output": {"type": "bool", "value": "[equals(mod(parameters('i'), 2), 0)]"}
                },
                "hello": {
                    "parameters": [{"type": "array", "items": {"type": "string"}, "name": "names"}],
                    "output": {
                        "type": "array",
                        "items": {"type": "string"},
                        "value": "[map(parameters('names'), lambda('n', format('Hi {0}{1}', lambdaVariables('n'), if(__bicep.isEven(length(lambdaVariables('n'))), '!', ''))))]"
                    },
                    "metadata": {"description": "Greets"}
                }
            }}])
        );
        assert_eq!(t["variables"]["x"], "[__bicep.hello(parameters('who'))]");
        assert_eq!(
            t["parameters"]["who"],
            serde_json::json!({"type": "array", "items": {"type": "string"}, "defaultValue": ["a"]})
        );
        // Resources by symbolic name; the existing one is kept; a dependency on it is by name,
        // and only for a read of its body (not of its id).
        assert_eq!(
            t["resources"]["sa"],
            serde_json::json!({"existing": true, "type": "Microsoft.Storage/storageAccounts", "apiVersion": "2023-01-01", "name": "sa"})
        );
        let c = &t["resources"]["c"];
        assert_eq!(c["dependsOn"], serde_json::json!(["sa"]));
        assert_eq!(
            c["properties"]["metadata"]["ep"],
            "[reference('sa').primaryEndpoints.blob]"
        );
        assert_eq!(
            c["properties"]["metadata"]["id"],
            "[resourceId('Microsoft.Storage/storageAccounts', 'sa')]"
        );
        assert_eq!(
            t["outputs"]["o"],
            serde_json::json!({"type": "array", "items": {"type": "string"}, "value": "[variables('x')]"})
        );
        // Only an id read: no dependency.
        let t = compile(
            "type t = string\nresource sa 'A.B/c@1' existing = {\n  name: 'sa'\n}\nresource d 'A.B/d@1' = {\n  name: 'd'\n  properties: {\n    id: sa.id\n  }\n}\n",
        )
        .expect("compiles");
        assert!(t["resources"]["d"].get("dependsOn").is_none(), "{t}");
        // A conditional existing resource keeps its condition, before `existing`.
        let t = compile(
            "type t = string\nparam p bool\nresource e 'A.B/c@1' existing = if (p) {\n  name: 'e'\n}\n",
        )
        .expect("compiles");
        let keys: Vec<&String> = t["resources"]["e"].as_object().expect("e").keys().collect();
        assert_eq!(
            keys,
            ["condition", "existing", "type", "apiVersion", "name"],
            "{t}"
        );
        assert_eq!(t["resources"]["e"]["condition"], "[parameters('p')]");
    }

    #[test]
    fn user_defined_types_become_definitions() {
        let src = "@description('A thing')\n\
                   @sealed()\n\
                   type thing = {\n  @minLength(1)\n  name: string\n  size: 'S' | 'M' | 'L'\n  tags: string[]?\n  next: thing?\n}\n\
                   @export()\n\
                   type names = thing[]\n\
                   param p thing\n\
                   @export()\n\
                   var v int = 1\n\
                   output o names = [p]\n";
        let t = compile(src).expect("compiles");
        assert_eq!(t["languageVersion"], "2.0");
        assert_eq!(
            t["definitions"],
            serde_json::json!({
                "thing": {
                    "type": "object",
                    "properties": {
                        "name": {"type": "string", "minLength": 1},
                        "size": {"type": "string", "allowedValues": ["S", "M", "L"]},
                        "tags": {"type": "array", "items": {"type": "string"}, "nullable": true},
                        "next": {"$ref": "#/definitions/thing", "nullable": true}
                    },
                    "additionalProperties": false,
                    "metadata": {"description": "A thing"}
                },
                "names": {
                    "type": "array",
                    "items": {"$ref": "#/definitions/thing"},
                    "metadata": {"__bicep_export!": true}
                }
            })
        );
        assert_eq!(
            t["parameters"]["p"],
            serde_json::json!({"$ref": "#/definitions/thing"})
        );
        assert_eq!(
            t["outputs"]["o"],
            serde_json::json!({"$ref": "#/definitions/names", "value": ["[parameters('p')]"]})
        );
        assert_eq!(
            t["metadata"]["__bicep_exported_variables!"],
            serde_json::json!([{"name": "v", "type": {"type": "int"}}])
        );
        assert_eq!(t["resources"], serde_json::json!({}));
        for (src, what) in [
            ("type a = b\ntype b = a[]\n", "refers to itself"),
            (
                "type t = string\nparam p nope\n",
                "the type 'nope' (not a declared type)",
            ),
            ("type t = 'a' | 'a'\n", "union types that repeat a member"),
            (
                "type t = {\n  *: string\n}\n",
                "additional properties types",
            ),
            (
                "@discriminator('k')\ntype t = {\n  k: 'a'\n}\n",
                "decorators like '@discriminator'",
            ),
        ] {
            let e = compile(src).expect_err(src);
            assert!(e.message.contains(what), "{src}: {e}");
        }
    }

    fn files(list: &[(&str, &str)]) -> std::collections::HashMap<String, String> {
        list.iter()
            .map(|(p, s)| (p.to_string(), s.to_string()))
            .collect()
    }

    #[test]
    fn modules_become_nested_deployments() {
        let fs = files(&[
            (
                "mods/st.bicep",
                "param name string\nparam sku string = 'Standard_LRS'\n\
                 resource st 'Microsoft.Storage/storageAccounts@2023-05-01' = {\n  name: name\n}\n\
                 output id string = st.id\noutput names array = [name]\n",
            ),
            (
                "mods/plain.json",
                r#"{"$schema": "https://schema.management.azure.com/schemas/2019-04-01/deploymentTemplate.json#", "contentVersion": "1.0.0.0", "parameters": {"p": {"type": "string"}}, "resources": [], "outputs": {"o": {"type": "string", "value": "[parameters('p')]"}}}"#,
            ),
        ]);
        let src = "param n string\n\
             @description('the storage')\n\
             module st 'mods/st.bicep' = {\n  name: 'st-${n}'\n  params: {\n    name: n\n  }\n}\n\
             module other './mods/plain.json' = if (n != 'x') {\n  name: 'other'\n  scope: resourceGroup('rg2')\n  params: {\n    p: st.outputs.id\n  }\n}\n\
             @batchSize(1)\n\
             module many 'mods/st.bicep' = [for (x, i) in ['a', 'b']: {\n  name: 'many${i}'\n  params: {\n    name: x\n    sku: i == 0 ? 'a' : 'b'\n  }\n  dependsOn: [\n    other\n  ]\n}]\n\
             resource lock 'Microsoft.Authorization/locks@2020-05-01' = {\n  name: 'l'\n  properties: {\n    notes: many[1].outputs.names[0]\n  }\n}\n\
             output fromJson string = other.outputs.o\noutput name string = st.name\n";
        let t = compile_with(src, "main.bicep", &fs).expect("compiles");
        let r = t["resources"].as_array().expect("resources");
        // Resources first, then the modules in source order.
        assert_eq!(r[0]["type"], "Microsoft.Authorization/locks");
        let st = &r[1];
        assert_eq!(st["type"], "Microsoft.Resources/deployments");
        assert_eq!(st["apiVersion"], "2025-04-01");
        assert_eq!(st["name"], "[format('st-{0}', parameters('n'))]");
        assert_eq!(st["metadata"]["description"], "the storage");
        assert_eq!(
            st["properties"]["expressionEvaluationOptions"],
            json!({"scope": "inner"})
        );
        assert_eq!(st["properties"]["mode"], "Incremental");
        assert_eq!(
            st["properties"]["parameters"],
            json!({"name": {"value": "[parameters('n')]"}})
        );
        assert_eq!(
            st["properties"]["template"]["resources"][0]["type"],
            "Microsoft.Storage/storageAccounts"
        );
        let other = &r[2];
        assert_eq!(other["condition"], "[not(equals(parameters('n'), 'x'))]");
        assert_eq!(other["resourceGroup"], "rg2");
        assert_eq!(
            other["properties"]["parameters"]["p"]["value"],
            "[reference(resourceId('Microsoft.Resources/deployments', format('st-{0}', parameters('n'))), '2025-04-01').outputs.id.value]"
        );
        assert_eq!(
            other["properties"]["template"]["outputs"]["o"]["value"],
            "[parameters('p')]"
        );
        assert_eq!(
            other["dependsOn"],
            json!([
                "[resourceId('Microsoft.Resources/deployments', format('st-{0}', parameters('n')))]"
            ])
        );
        let many = &r[3];
        assert_eq!(
            many["copy"],
            json!({"name": "many", "count": "[length(createArray('a', 'b'))]", "mode": "serial", "batchSize": 1})
        );
        assert_eq!(
            many["properties"]["parameters"]["sku"],
            "[if(equals(copyIndex(), 0), createObject('value', 'a'), createObject('value', 'b'))]"
        );
        let other_id = "[extensionResourceId(format('/subscriptions/{0}/resourceGroups/{1}', subscription().subscriptionId, 'rg2'), 'Microsoft.Resources/deployments', 'other')]";
        assert_eq!(many["dependsOn"], json!([other_id]));
        assert_eq!(
            r[0]["properties"]["notes"],
            "[reference(resourceId('Microsoft.Resources/deployments', format('many{0}', 1)), '2025-04-01').outputs.names.value[0]]"
        );
        assert_eq!(
            r[0]["dependsOn"],
            json!(["[resourceId('Microsoft.Resources/deployments', format('many{0}', 1))]"])
        );
        assert_eq!(
            t["outputs"]["fromJson"]["value"],
            format!(
                "[reference({}, '2025-04-01').outputs.o.value]",
                &other_id[1..other_id.len() - 1]
            )
        );
        assert_eq!(
            t["outputs"]["name"]["value"],
            "[format('st-{0}', parameters('n'))]"
        );
    }

    #[test]
    fn module_params_loops_and_key_vault_secrets_follow_the_official_forms() {
        let fs = files(&[("m.bicep", "@secure()\nparam s string\nparam xs array\n")]);
        let src = "resource kv 'Microsoft.KeyVault/vaults@2023-07-01' existing = {\n  name: 'kv'\n}\n\
             module m 'm.bicep' = {\n  name: 'm'\n  params: {\n    s: kv.getSecret('pw')\n    xs: [for i in range(0, 2): 'x${i}']\n  }\n}\n";
        let t = compile_with(src, "main.bicep", &fs).expect("compiles");
        assert_eq!(
            t["resources"][0]["properties"]["parameters"],
            json!({
                "s": {"reference": {"keyVault": {"id": "[resourceId('Microsoft.KeyVault/vaults', 'kv')]"}, "secretName": "pw"}},
                "xs": {"copy": [{"name": "value", "count": "[length(range(0, 2))]", "input": "[format('x{0}', range(0, 2)[copyIndex('value')])]"}]}
            })
        );
        assert!(
            t["resources"][0].get("dependsOn").is_none(),
            "an existing vault is no dependency"
        );
    }

    #[test]
    fn module_mistakes_and_unreachable_modules_are_errors_with_positions() {
        let fs = files(&[
            ("m.bicep", "param p string\noutput o string = p\n"),
            (
                "self.bicep",
                "module again './self.bicep' = {\n  name: 'x'\n}\n",
            ),
            ("a.bicep", "module b 'sub/b.bicep' = {\n  name: 'b'\n}\n"),
            ("sub/b.bicep", "module a '../a.bicep' = {\n  name: 'a'\n}\n"),
            ("bad.bicep", "var x = \n"),
            ("scoped.bicep", "targetScope = 'subscription'\n"),
            ("nojson.json", r#"{"resources": []}"#),
        ]);
        let cases = [
            (
                "module m 'm.bicep' = {\n  name: 'm'\n}\n",
                1,
                1,
                "needs the parameters 'p'",
            ),
            (
                "module m 'm.bicep' = {\n  name: 'm'\n  params: {\n    p: 'a'\n    q: 1\n  }\n}\n",
                5,
                5,
                "has no parameter 'q'",
            ),
            (
                "module m 'm.bicep' = {\n  name: 'm'\n  params: {\n    p: 'a'\n  }\n}\noutput x string = m.outputs.nope\n",
                7,
                29,
                "has no output 'nope'",
            ),
            (
                "module m 'm.bicep' = {\n  name: 'm'\n  params: {\n    p: 'a'\n  }\n}\noutput x object = m\n",
                1,
                1,
                "not as a whole",
            ),
            (
                "module m 'm.bicep' = {\n  params: {\n    p: 'a'\n  }\n}\n",
                1,
                1,
                "modules without a name",
            ),
            (
                "module m 'm.bicep' = {\n  name: 'm'\n  scope: subscription()\n  params: {\n    p: 'a'\n  }\n}\n",
                3,
                10,
                "module 'm' has targetScope 'resourceGroup' and cannot be deployed to a subscription scope",
            ),
            (
                "module m 'nope.bicep' = {\n  name: 'm'\n}\n",
                1,
                10,
                "no such file",
            ),
            (
                "module m '../m.bicep' = {\n  name: 'm'\n}\n",
                1,
                10,
                "outside the templates folder",
            ),
            (
                "module m '/etc/passwd.bicep' = {\n  name: 'm'\n}\n",
                1,
                10,
                "not a relative path",
            ),
            (
                "module m 'br:mcr.microsoft.com/bicep/x:1.0' = {\n  name: 'm'\n}\n",
                1,
                10,
                "registry module 'br:mcr.microsoft.com/bicep/x:1.0' needs the local module cache of the Bicep CLI, and none is configured (set azure.bicep_module_cache",
            ),
            (
                "module m 'ts:sub/rg/spec:1.0' = {\n  name: 'm'\n}\n",
                1,
                10,
                "module 'ts:sub/rg/spec:1.0' is not a valid template spec reference",
            ),
            (
                "module m 'self.bicep' = {\n  name: 'm'\n}\n",
                1,
                10,
                "self.bicep -> self.bicep",
            ),
            (
                "module m 'a.bicep' = {\n  name: 'm'\n}\n",
                1,
                10,
                "a.bicep -> sub/b.bicep -> a.bicep",
            ),
            (
                "module m 'bad.bicep' = {\n  name: 'm'\n}\n",
                1,
                10,
                "in module 'bad.bicep' (bad.bicep), line 1, column 9",
            ),
            (
                "module m 'scoped.bicep' = {\n  name: 'm'\n}\n",
                1,
                1,
                "module 'm' has targetScope 'subscription' and cannot be deployed to a resourceGroup scope",
            ),
            (
                "module m 'nojson.json' = {\n  name: 'm'\n}\n",
                1,
                10,
                "names no deployment template schema",
            ),
            (
                "module m 'm.txt' = {\n  name: 'm'\n}\n",
                1,
                10,
                "a .bicep file or a .json ARM template",
            ),
        ];
        for (src, line, column, what) in cases {
            let e = compile_with(src, "main.bicep", &fs).expect_err(src);
            assert!(e.message.contains(what), "{src}: {e}");
            assert_eq!((e.line, e.column), (line, column), "{src}: {e}");
        }
        // Without a folder, a module is named as unsupported (the old entry point).
        let e = compile("module m 'm.bicep' = {\n  name: 'm'\n}\n").expect_err("no folder");
        assert!(
            e.message.contains(
                "modules (this caller compiles without a templates folder) are not supported"
            ),
            "{e}"
        );
    }

    #[test]
    fn module_nesting_is_bounded() {
        let mut fs = std::collections::HashMap::new();
        for i in 0..40 {
            fs.insert(
                format!("m{i}.bicep"),
                format!("module next 'm{}.bicep' = {{\n  name: 'n'\n}}\n", i + 1),
            );
        }
        fs.insert("m40.bicep".into(), String::new());
        let e = compile_with(&fs["m0.bicep"].clone(), "m0.bicep", &fs).expect_err("too deep");
        assert!(e.message.contains("levels deep"), "{e}");
        // Each module used twice by the one above: the embedded total is bounded too.
        let mut fs = std::collections::HashMap::new();
        for i in 0..14 {
            fs.insert(
                format!("m{i}.bicep"),
                format!("module a 'm{0}.bicep' = {{\n  name: 'a'\n}}\nmodule b 'm{0}.bicep' = {{\n  name: 'b'\n}}\n", i + 1),
            );
        }
        fs.insert("m14.bicep".into(), String::new());
        let e = compile_with(&fs["m0.bicep"].clone(), "m0.bicep", &fs).expect_err("too many");
        assert!(e.message.contains("templates in all"), "{e}");
    }

    #[test]
    fn load_functions_read_files_beside_the_template() {
        let fs = files(&[
            ("cfg/a.txt", "line1\r\nline2"),
            ("cfg/b.json", r#"{"k": [1, "[x]"], "n": null}"#),
            ("cfg/bin", "AB"),
            ("cfg/f.json", "1.5"),
        ]);
        let src = "var t = loadTextContent('cfg/a.txt')\n\
             var j = loadJsonContent('./cfg/b.json')\n\
             var b = loadFileAsBase64('cfg/bin')\n\
             var i = 'x${loadTextContent('cfg/a.txt', 'utf-8')}'\n";
        let t = compile_with(src, "main.bicep", &fs).expect("compiles");
        assert_eq!(
            t["variables"],
            json!({
                "$fxv#0": {"k": [1, "[[x]"], "n": null},
                "$fxv#1": "line1\r\nline2",
                "t": "line1\r\nline2",
                "j": "[variables('$fxv#0')]",
                "b": "QUI=",
                "i": "[format('x{0}', variables('$fxv#1'))]",
            })
        );
        for (src, what) in [
            (
                "var t = loadTextContent('../x.txt')\n",
                "outside the templates folder",
            ),
            (
                "var t = loadTextContent('/etc/passwd')\n",
                "not a relative path",
            ),
            ("var t = loadTextContent('cfg/none.txt')\n", "no such file"),
            (
                "var t = loadTextContent('cfg/a.txt', 'utf-16')\n",
                "file encodings other than 'utf-8' are not supported",
            ),
            (
                "var t = loadJsonContent('cfg/b.json', '$..k')\n",
                "JSONPath expressions other than names and indexes",
            ),
            (
                "var t = loadJsonContent('cfg/b.json', '$.x')\n",
                "names nothing in 'cfg/b.json'",
            ),
            (
                "var t = loadJsonContent('cfg/f.json')\n",
                "numbers other than integers",
            ),
            ("var t = loadYamlContent('cfg/none.yaml')\n", "no such file"),
            (
                "var p = 'cfg/a.txt'\nvar t = loadTextContent(p)\n",
                "literal string",
            ),
        ] {
            let e = compile_with(src, "main.bicep", &fs).expect_err(src);
            assert!(e.message.contains(what), "{src}: {e}");
        }
        let e = compile("var t = loadTextContent('a.txt')\n").expect_err("no folder");
        assert!(
            e.message
                .contains("without a templates folder are not supported"),
            "{e}"
        );
        assert_eq!((e.line, e.column), (1, 9));
    }

    #[test]
    fn registry_and_template_spec_modules_come_from_the_module_cache() {
        let template = r#"{"$schema": "https://schema.management.azure.com/schemas/2019-04-01/deploymentTemplate.json#", "contentVersion": "1.0.0.0", "metadata": {"_generator": {"name": "bicep"}}, "parameters": {"p": {"type": "string"}}, "resources": [], "outputs": {"o": {"type": "string", "value": "[parameters('p')]"}}}"#;
        let spec_id = "/subscriptions/00000000-0000-0000-0000-000000000001/resourceGroups/Specs/providers/Microsoft.Resources/templateSpecs/net/versions/V2";
        let cache = files(&[
            (
                "br/mcr.microsoft.com/bicep$app$thing/1.0.1$/main.json",
                template,
            ),
            ("br/my.azurecr.io$5000/team$m/Latest$1/main.json", template),
            (
                "ts/00000000-0000-0000-0000-000000000001/specs/net/v2/main.json",
                &format!(r#"{{"id": "{spec_id}", "properties": {{"mainTemplate": {template}}}}}"#),
            ),
            ("br/r.io/broken/1$/main.json", "{"),
        ]);
        let fs = files(&[("m.json", template)]);
        let loader = WithModuleCache {
            files: &fs,
            cache: &cache,
        };
        let src = "module a 'br/public:app/thing:1.0.1' = {\n  name: 'a'\n  params: { p: 'x' }\n}\n\
             module b 'br:My.azurecr.io:5000/team/m:Latest' = {\n  name: 'b'\n  params: { p: a.outputs.o }\n}\n\
             module c 'ts:00000000-0000-0000-0000-000000000001/Specs/net:V2' = {\n  name: 'c'\n  params: { p: 'z' }\n}\n\
             module d 'm.json' = {\n  name: 'd'\n  params: { p: 'w' }\n}\n\
             output o string = c.outputs.o\n";
        let t = compile_with(src, "main.bicep", &loader).expect("compiles");
        let embedded: Value = serde_json::from_str(template).expect("json");
        let r = &t["resources"];
        // A registry module is embedded exactly like a local JSON module.
        assert_eq!(r[0]["properties"]["template"], embedded);
        assert_eq!(r[1]["properties"]["template"], embedded);
        assert_eq!(r[3]["properties"]["template"], embedded);
        assert_eq!(
            r[1]["dependsOn"],
            json!(["[resourceId('Microsoft.Resources/deployments', 'a')]"])
        );
        // A template spec is linked by its id.
        assert_eq!(r[2]["properties"]["templateLink"], json!({ "id": spec_id }));
        assert!(r[2]["properties"].get("template").is_none());
        assert_eq!(
            r[2]["properties"]["parameters"],
            json!({"p": {"value": "z"}})
        );
        assert_eq!(
            t["outputs"]["o"]["value"],
            json!(
                "[reference(resourceId('Microsoft.Resources/deployments', 'c'), '2025-04-01').outputs.o.value]"
            )
        );
        for (src, what) in [
            (
                "module a 'br/public:app/thing:9.9.9' = {\n  name: 'a'\n}\n",
                "registry module 'br/public:app/thing:9.9.9' is not in the local module cache (azure.bicep_module_cache): no br/mcr.microsoft.com/bicep$app$thing/9.9.9$/main.json",
            ),
            (
                "module a 'ts:00000000-0000-0000-0000-000000000001/specs/net:v3' = {\n  name: 'a'\n}\n",
                "template spec module 'ts:00000000-0000-0000-0000-000000000001/specs/net:v3' is not in the local module cache",
            ),
            (
                "module a 'br:r.io/broken:1' = {\n  name: 'a'\n}\n",
                "is not valid JSON",
            ),
            (
                "module a 'br:r.io/../x:1' = {\n  name: 'a'\n}\n",
                "not a valid registry module reference",
            ),
            (
                "module a 'br/mine:x:1' = {\n  name: 'a'\n}\n",
                "the module alias 'br/mine' would come from a bicepconfig.json",
            ),
            (
                "module a 'br/public:app/thing:1.0.1' = {\n  name: 'a'\n  params: { q: 1 }\n}\n",
                "q",
            ),
        ] {
            let e = compile_with(src, "main.bicep", &loader).expect_err(src);
            assert!(e.message.contains(what), "{src}: {e}");
            assert_eq!(
                (e.line, e.column),
                if what == "q" {
                    (e.line, e.column)
                } else {
                    (1, 10)
                }
            );
        }
    }

    #[test]
    fn a_loop_nested_in_a_conditional_resource_stacks_the_condition() {
        let src = "param on bool\nparam ids array\n\
             resource p 'A.B/c@2020-01-01' = if (on) {\n  name: 'p'\n\
               resource l 'd' = [for id in ids: if (id != 'x') {\n    name: id\n  }]\n\
               resource m 'd' = [for id in ids: {\n    name: 'm${id}'\n  }]\n}\n";
        let t = compile(src).expect("compiles");
        let r = &t["resources"];
        assert_eq!(
            r[0]["copy"],
            json!({"name": "p::l", "count": "[length(parameters('ids'))]"})
        );
        assert_eq!(
            r[0]["condition"],
            json!("[and(parameters('on'), not(equals(parameters('ids')[copyIndex()], 'x')))]")
        );
        assert_eq!(r[1]["condition"], json!("[parameters('on')]"));
        assert_eq!(r[1]["copy"]["name"], json!("p::m"));
        // A loop variable named like a name the parent's condition reads: refused.
        let src = "param on bool\nparam ids array\n\
             resource p 'A.B/c@2020-01-01' = if (on) {\n  name: 'p'\n\
               resource l 'd' = [for on in ids: {\n    name: on\n  }]\n}\n";
        let e = compile(src).expect_err("shadowed");
        assert!(
            e.message
                .contains("resource loops nested in conditional resources"),
            "{e}"
        );
        assert_eq!((e.line, e.column), (5, 18));
    }

    #[test]
    fn yaml_files_load_like_json_files() {
        let fs = files(&[
            (
                "cfg/s.yaml",
                "name: '[x]'\nlist:\n  - 1\n  - &b {on: true}\ncopy: *b\nratio: 1.5\n",
            ),
            ("cfg/bad.yaml", "a: 1\na: 2\n"),
            ("cfg/deep.yaml", &"[".repeat(70)),
            ("cfg/j.json", r#"{"a": {"b": [10, 20]}, "f": 0.5}"#),
        ]);
        let src = "var y = loadYamlContent('cfg/s.yaml', '$.list')\n\
             output o object = loadYamlContent('./cfg/s.yaml', 'copy')\n\
             var j = loadJsonContent('cfg/j.json', '.a.b[1]', 'utf-8')\n\
             var k = loadJsonContent('cfg/j.json', '$[\\'a\\']')\n";
        let t = compile_with(src, "main.bicep", &fs).expect("compiles");
        assert_eq!(
            t["variables"],
            json!({
                "$fxv#0": [1, {"on": true}],
                "$fxv#1": {"on": true},
                "$fxv#2": 20,
                "$fxv#3": {"b": [10, 20]},
                "y": "[variables('$fxv#0')]",
                "j": "[variables('$fxv#2')]",
                "k": "[variables('$fxv#3')]",
            })
        );
        assert_eq!(t["outputs"]["o"]["value"], json!("[variables('$fxv#1')]"));
        for (src, what, at) in [
            (
                "var t = loadYamlContent('cfg/s.yaml')\n",
                "numbers other than integers",
                (1, 9),
            ),
            (
                "var t = loadYamlContent('cfg/bad.yaml')\n",
                "'cfg/bad.yaml' is not valid YAML: duplicate key 'a' at line 2 column 1",
                (1, 9),
            ),
            (
                "var t = loadYamlContent('cfg/deep.yaml')\n",
                "YAML nested more than 60 levels deep",
                (1, 9),
            ),
            (
                "var t = loadYamlContent('cfg/s.yaml', '$.list[5]')\n",
                "names nothing",
                (1, 39),
            ),
            (
                "var t = loadYamlContent('cfg/s.yaml', '$.list[*]')\n",
                "JSONPath expressions other than names and indexes",
                (1, 39),
            ),
            (
                "var t = loadYamlContent('cfg/s.yaml', '$', 'utf-16')\n",
                "file encodings other than 'utf-8'",
                (1, 44),
            ),
            (
                "var t = loadYamlContent('../s.yaml')\n",
                "outside the templates folder",
                (1, 9),
            ),
            (
                "var t = loadYamlContent('cfg/j.json', '$.f')\n",
                "numbers other than integers",
                (1, 9),
            ),
        ] {
            let e = compile_with(src, "main.bicep", &fs).expect_err(src);
            assert!(e.message.contains(what), "{src}: {e}");
            assert_eq!((e.line, e.column), at, "{src}: {e}");
        }
    }

    fn scoped_files() -> std::collections::HashMap<String, String> {
        files(&[
            (
                "rg.bicep",
                "param p string = ''\nresource st 'Microsoft.Storage/storageAccounts@2023-05-01' = {\n  name: 'st'\n  location: resourceGroup().location\n}\noutput o string = st.id\n",
            ),
            (
                "sub.bicep",
                "targetScope = 'subscription'\nresource g 'Microsoft.Resources/resourceGroups@2022-09-01' = {\n  name: 'g'\n  location: deployment().location\n}\noutput o string = g.id\n",
            ),
            ("mg.bicep", "targetScope = 'managementGroup'\n"),
        ])
    }

    #[test]
    fn subscription_templates_deploy_groups_and_modules_into_them() {
        let src = "targetScope = 'subscription'\n\
             param rgName string\n\
             param location string = deployment().location\n\
             resource rg 'Microsoft.Resources/resourceGroups@2022-09-01' = {\n  name: rgName\n  location: location\n}\n\
             resource def 'Microsoft.Authorization/roleDefinitions@2022-04-01' existing = {\n  name: 'reader'\n}\n\
             resource kv 'Microsoft.KeyVault/vaults@2023-07-01' existing = {\n  name: 'kv'\n  scope: rg\n}\n\
             resource assignment 'Microsoft.Authorization/roleAssignments@2022-04-01' = {\n  name: guid(subscription().id, 'x')\n  properties: {\n    roleDefinitionId: def.id\n    vault: kv.id\n  }\n}\n\
             module inGroup 'rg.bicep' = {\n  name: 'in-group'\n  scope: rg\n  params: {\n    p: assignment.id\n  }\n}\n\
             module byName 'rg.bicep' = {\n  name: 'by-name'\n  scope: resourceGroup('other')\n  params: {\n    p: inGroup.outputs.o\n  }\n}\n\
             module atSub 'sub.bicep' = {\n  name: 'at-sub'\n  scope: subscription()\n}\n\
             module here 'sub.bicep' = {\n  name: 'here'\n}\n\
             output o string = atSub.outputs.o\n";
        let t = compile_with(src, "main.bicep", &scoped_files()).expect("compiles");
        assert_eq!(
            t["$schema"],
            "https://schema.management.azure.com/schemas/2018-05-01/subscriptionDeploymentTemplate.json#"
        );
        assert_eq!(
            t["parameters"]["location"]["defaultValue"],
            "[deployment().location]"
        );
        let r = t["resources"].as_array().expect("resources");
        assert_eq!(r.len(), 6, "{t}");
        assert_eq!(r[0]["type"], "Microsoft.Resources/resourceGroups");
        assert_eq!(r[0]["name"], "[parameters('rgName')]");
        let group =
            "[subscriptionResourceId('Microsoft.Resources/resourceGroups', parameters('rgName'))]";
        // Ids at the subscription; an existing resource in the group by its full id.
        assert_eq!(
            r[1]["properties"],
            json!({
                "roleDefinitionId": "[subscriptionResourceId('Microsoft.Authorization/roleDefinitions', 'reader')]",
                "vault": "[extensionResourceId(format('/subscriptions/{0}/resourceGroups/{1}', subscription().subscriptionId, parameters('rgName')), 'Microsoft.KeyVault/vaults', 'kv')]"
            })
        );
        // Through the existing vault, the assignment waits for the group it lives in.
        assert_eq!(r[1]["dependsOn"], json!([group]));
        let assignment = "[subscriptionResourceId('Microsoft.Authorization/roleAssignments', guid(subscription().id, 'x'))]";
        // A module in a resource group: `resourceGroup`, no location, the group as dependency.
        let in_group = &r[2];
        assert_eq!(in_group["resourceGroup"], "[parameters('rgName')]");
        assert!(in_group.get("location").is_none(), "{in_group}");
        assert_eq!(in_group["dependsOn"], json!([assignment, group]));
        assert_eq!(
            in_group["properties"]["parameters"]["p"]["value"],
            assignment
        );
        assert_eq!(
            in_group["properties"]["template"]["$schema"],
            "https://schema.management.azure.com/schemas/2019-04-01/deploymentTemplate.json#"
        );
        let in_group_id = "extensionResourceId(format('/subscriptions/{0}/resourceGroups/{1}', subscription().subscriptionId, parameters('rgName')), 'Microsoft.Resources/deployments', 'in-group')";
        let by_name = &r[3];
        assert_eq!(by_name["resourceGroup"], "other");
        assert_eq!(
            by_name["properties"]["parameters"]["p"]["value"],
            format!("[reference({in_group_id}, '2025-04-01').outputs.o.value]")
        );
        assert_eq!(by_name["dependsOn"], json!([format!("[{in_group_id}]")]));
        // Modules at the subscription: a location, no group.
        for (m, name) in [(&r[4], "at-sub"), (&r[5], "here")] {
            assert_eq!(m["name"], name);
            assert_eq!(m["location"], "[deployment().location]");
            assert!(m.get("resourceGroup").is_none() && m.get("subscriptionId").is_none());
            assert_eq!(
                m["properties"]["template"]["outputs"]["o"]["value"],
                "[subscriptionResourceId('Microsoft.Resources/resourceGroups', 'g')]"
            );
        }
        assert_eq!(
            t["outputs"]["o"]["value"],
            "[reference(subscriptionResourceId('Microsoft.Resources/deployments', 'at-sub'), '2025-04-01').outputs.o.value]"
        );
    }

    #[test]
    fn what_a_scope_cannot_do_is_an_error_with_its_position() {
        let fs = scoped_files();
        let sub = "targetScope = 'subscription'\n";
        let cases = [
            (
                format!("{sub}var x = resourceGroup().location\n"),
                2,
                9,
                "resourceGroup() with 0 arguments is not available in a template with targetScope 'subscription'",
            ),
            (
                format!("{sub}module m 'rg.bicep' = {{\n  name: 'm'\n}}\n"),
                2,
                1,
                "module 'm' has targetScope 'resourceGroup' and cannot be deployed to a subscription scope",
            ),
            (
                format!("{sub}module m 'mg.bicep' = {{\n  name: 'm'\n  scope: managementGroup('x')\n}}\n"),
                4,
                10,
                "a template with targetScope 'subscription' cannot deploy a module to this managementGroup scope",
            ),
            (
                format!("{sub}resource r 'A.B/c@1' = {{\n  name: 'r'\n  scope: resourceGroup('g')\n}}\n"),
                4,
                10,
                "scopes other than a resource of this file are not supported",
            ),
            (
                format!("{sub}resource r 'A.B/c@1' existing = {{\n  name: 'r'\n  scope: resourceGroup()\n}}\n"),
                4,
                10,
                "resourceGroup() with 0 arguments is not available",
            ),
            (
                format!("{sub}resource g 'Microsoft.Resources/resourceGroups@1' = [for x in ['a']: {{\n  name: x\n}}]\nmodule m 'rg.bicep' = {{\n  name: 'm'\n  scope: g\n}}\n"),
                7,
                10,
                "'g' is a loop of resource groups",
            ),
            (
                "module m 'rg.bicep' = {\n  name: 'm'\n  scope: resourceGroup('a', 'b', 'c')\n}\n".to_string(),
                3,
                10,
                "module scopes other than",
            ),
            (
                "var x = managementGroup().id\n".to_string(),
                1,
                9,
                "managementGroup() with 0 arguments is not available in a template with targetScope 'resourceGroup'",
            ),
            (
                "targetScope = 'tenant'\nmodule m 'mg.bicep' = {\n  name: 'm'\n  scope: managementGroup()\n}\n".to_string(),
                4,
                10,
                "managementGroup() with 0 arguments is not available in a template with targetScope 'tenant'",
            ),
            (format!("{sub}targetScope = 'tenant'\n"), 2, 1, "declared more than once"),
            ("targetScope = 'sub${x}'\n".to_string(), 1, 15, "a literal string"),
            ("targetScope = 'group'\n".to_string(), 1, 15, "'group' is not a target scope"),
        ];
        for (src, line, column, what) in cases {
            let e = compile_with(&src, "main.bicep", &fs).expect_err(&src);
            assert!(e.message.contains(what), "{src}: {e}");
            assert_eq!((e.line, e.column), (line, column), "{src}: {e}");
        }
    }

    #[test]
    fn management_group_and_tenant_templates_follow_the_official_forms() {
        let fs = scoped_files();
        let src = "targetScope = 'managementGroup'\n\
             resource pol 'Microsoft.Authorization/policyDefinitions@2021-06-01' = {\n  name: 'p'\n}\n\
             resource alias 'Microsoft.Subscription/aliases@2021-10-01' = {\n  scope: tenant()\n  name: 'a'\n}\n\
             module s 'sub.bicep' = {\n  name: 's'\n  scope: subscription('0000')\n}\n\
             module g 'rg.bicep' = {\n  name: 'g'\n  scope: resourceGroup('0000', 'grp')\n  params: {\n    p: pol.id\n  }\n}\n\
             output id string = pol.id\noutput sub string = alias.properties.subscriptionId\n";
        let t = compile_with(src, "main.bicep", &fs).expect("compiles");
        assert_eq!(
            t["$schema"],
            "https://schema.management.azure.com/schemas/2019-08-01/managementGroupDeploymentTemplate.json#"
        );
        let pol = "[extensionResourceId(managementGroup().id, 'Microsoft.Authorization/policyDefinitions', 'p')]";
        assert_eq!(t["outputs"]["id"]["value"], pol);
        assert_eq!(
            t["outputs"]["sub"]["value"],
            "[reference(tenantResourceId('Microsoft.Subscription/aliases', 'a'), '2021-10-01').subscriptionId]"
        );
        let r = t["resources"].as_array().expect("resources");
        assert_eq!(r[1]["scope"], "/");
        assert_eq!(r[2]["subscriptionId"], "0000");
        assert_eq!(r[2]["location"], "[deployment().location]");
        assert_eq!(r[3]["subscriptionId"], "0000");
        assert_eq!(r[3]["resourceGroup"], "grp");
        assert!(r[3].get("location").is_none());
        assert_eq!(r[3]["dependsOn"], json!([pol]));

        let src = "targetScope = 'tenant'\n\
             resource mg 'Microsoft.Management/managementGroups@2021-04-01' = {\n  name: 'mg'\n}\n\
             module m 'mg.bicep' = {\n  name: 'm'\n  scope: managementGroup('mg')\n}\n\
             output id string = mg.id\n";
        let t = compile_with(src, "main.bicep", &fs).expect("compiles");
        assert_eq!(
            t["$schema"],
            "https://schema.management.azure.com/schemas/2019-08-01/tenantDeploymentTemplate.json#"
        );
        assert_eq!(
            t["outputs"]["id"]["value"],
            "[tenantResourceId('Microsoft.Management/managementGroups', 'mg')]"
        );
        let m = &t["resources"][1];
        assert_eq!(
            m["scope"],
            "[format('Microsoft.Management/managementGroups/{0}', 'mg')]"
        );
        assert_eq!(m["location"], "[deployment().location]");

        // From a resource group, a module at the subscription names it, with the group's
        // location.
        let src = "module s 'sub.bicep' = {\n  name: 's'\n  scope: subscription()\n}\noutput o string = s.outputs.o\n";
        let t = compile_with(src, "main.bicep", &fs).expect("compiles");
        let s = &t["resources"][0];
        assert_eq!(s["subscriptionId"], "[subscription().subscriptionId]");
        assert_eq!(s["location"], "[resourceGroup().location]");
        assert_eq!(
            t["outputs"]["o"]["value"],
            "[reference(subscriptionResourceId('Microsoft.Resources/deployments', 's'), '2025-04-01').outputs.o.value]"
        );
    }

    #[test]
    fn the_target_scope_is_read_without_compiling() {
        assert_eq!(
            target_scope("param p string\n").as_deref(),
            Ok("resourceGroup")
        );
        assert_eq!(
            target_scope("// a comment\ntargetScope = 'subscription'\ntype t = string\nresource r 'A.B/c@1' = {\n  name: 'x'\n}\n")
                .as_deref(),
            Ok("subscription")
        );
        assert_eq!(
            target_scope("targetScope='managementGroup'\n").as_deref(),
            Ok("managementGroup")
        );
        assert_eq!(
            target_scope("targetScope = 'tenant'").as_deref(),
            Ok("tenant")
        );
        let e = target_scope("targetScope = 'nope'\n").expect_err("unknown");
        assert_eq!((e.line, e.column), (1, 15), "{e}");
        let e = target_scope("targetScope = concat('a')\n").expect_err("computed");
        assert!(e.message.contains("literal string"), "{e}");
        let e = target_scope("targetScope 'x'\n").expect_err("no =");
        assert_eq!(e.line, 1, "{e}");
    }
}
