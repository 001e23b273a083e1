//! Malformed input never makes the Bicep compiler panic or overflow its stack: random text
//! from Bicep's alphabet, random edits of real templates, and pathological nesting all end in
//! either a template or a positioned error.

use std::collections::HashMap;

use multicloud::bicep;
use proptest::prelude::*;
use serde_json::Value;

const TEMPLATES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/templates");

fn sources() -> Vec<String> {
    let mut out: Vec<String> = std::fs::read_dir(TEMPLATES)
        .expect("templates")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "bicep"))
        .map(|p| std::fs::read_to_string(p).expect("read"))
        .collect();
    out.sort();
    out
}

/// The files the random templates may read: modules (one that includes itself, one that
/// includes the main file back) and `load*` targets.
fn files() -> &'static HashMap<String, String> {
    static FILES: std::sync::OnceLock<HashMap<String, String>> = std::sync::OnceLock::new();
    FILES.get_or_init(|| {
        [
            ("m.bicep", "param p string = 'x'\noutput o string = p\n"),
            ("self.bicep", "module again 'self.bicep' = {\n  name: 'a'\n}\n"),
            ("back.bicep", "module main 'main.bicep' = {\n  name: 'b'\n}\n"),
            ("j.json", r#"{"$schema": "https://schema.management.azure.com/schemas/2019-04-01/deploymentTemplate.json#", "parameters": {"p": {"type": "string"}}, "outputs": {"o": {"type": "string", "value": "x"}}, "resources": []}"#),
            ("nos.json", r#"{"resources": []}"#),
            ("sub.bicep", "targetScope = 'subscription'\nparam p string = 'x'\nresource g 'Microsoft.Resources/resourceGroups@2022-09-01' = {\n  name: p\n  location: deployment().location\n}\noutput o string = g.id\n"),
            ("mgs.bicep", "targetScope = 'managementGroup'\nparam p string = 'x'\noutput o string = p\n"),
            ("ts.bicep", "targetScope = 'tenant'\nparam p string = 'x'\noutput o string = p\n"),
            ("t.txt", "text [x]\n"),
            ("d.json", r#"{"a": [1, {"b": "[c]"}]}"#),
            ("y.yaml", "a:\n  - 1\n  - &b {b: '[c]'}\nc: *b\nf: 1.5\n"),
            ("bad.yaml", "a: [1\nb: *nothing\n"),
        ]
        .into_iter()
        .map(|(p, s)| (p.to_string(), s.to_string()))
        .collect()
    })
}

/// Compiles `src` (as main.bicep beside `files()`); a template must be well formed, with the
/// schema of the target scope `bicep::target_scope` reads, and an error must carry a real
/// position.
fn check(src: &str) {
    let scope = bicep::target_scope(src);
    match bicep::compile_with(src, "main.bicep", files()) {
        Ok(t) => {
            if t["languageVersion"] == "2.0" {
                // Resources by symbolic name; a dependency names one of them.
                let resources = t["resources"].as_object().expect("resources by name");
                for r in resources.values() {
                    for d in r["dependsOn"].as_array().into_iter().flatten() {
                        let d = d.as_str().expect("a name or an expression");
                        assert!(
                            resources.contains_key(d) || d.starts_with("[format('"),
                            "{d} in {t}"
                        );
                    }
                }
            } else {
                assert!(t["resources"].is_array(), "{t}");
            }
            assert_balanced(&t);
            let schema = match scope.as_deref() {
                Ok("resourceGroup") => "2019-04-01/deploymentTemplate.json#",
                Ok("subscription") => "2018-05-01/subscriptionDeploymentTemplate.json#",
                Ok("managementGroup") => "2019-08-01/managementGroupDeploymentTemplate.json#",
                Ok("tenant") => "2019-08-01/tenantDeploymentTemplate.json#",
                other => panic!("compiled, but its target scope reads as {other:?}"),
            };
            assert_eq!(
                t["$schema"],
                format!("https://schema.management.azure.com/schemas/{schema}"),
                "{src}"
            );
        }
        Err(e) => {
            let lines = src.split('\n').count();
            assert!(e.line >= 1 && e.line <= lines.max(1), "{e} ({lines} lines)");
            assert!(e.column >= 1, "{e}");
            assert!(!e.message.is_empty());
        }
    }
}

/// Every expression string the compiler wrote has balanced quotes and parentheses.
fn assert_balanced(v: &Value) {
    match v {
        // What ARM reads as an expression: in brackets, not escaped.
        Value::String(s) if s.starts_with('[') && s.ends_with(']') && !s.starts_with("[[") => {
            let (mut depth, mut quoted) = (0i32, false);
            for c in s.chars() {
                match c {
                    '\'' => quoted = !quoted,
                    '(' if !quoted => depth += 1,
                    ')' if !quoted => depth -= 1,
                    _ => {}
                }
                assert!(depth >= 0, "{s}");
            }
            assert!(depth == 0 && !quoted && s.ends_with(']'), "{s}");
        }
        Value::Array(a) => a.iter().for_each(assert_balanced),
        Value::Object(m) => m.values().for_each(assert_balanced),
        _ => {}
    }
}

proptest! {
    // PROPTEST_CASES=100000 for a deeper run.
    #![proptest_config(ProptestConfig::with_cases(
        std::env::var("PROPTEST_CASES").ok().and_then(|c| c.parse().ok()).unwrap_or(2000)
    ))]

    #[test]
    fn random_text_never_panics(src in "[a-z0-9 '{}\\[\\]()@=:.,?!$|&<>+*/%#\\\\\n-]{0,300}") {
        check(&src);
    }

    #[test]
    fn random_yaml_files_never_panic(yaml in "[a-z0-9 '\"{}\\[\\]&*!|>:,?#~.\n-]{0,200}", path in "[$.a-z0-9\\[\\]'*]{0,8}") {
        let mut fs = HashMap::new();
        fs.insert("r.yaml".to_string(), yaml);
        let src = format!("var y = loadYamlContent('r.yaml', '{}')\noutput o object = {{ y: y }}\n", path.replace('\'', "\\'"));
        match bicep::compile_with(&src, "main.bicep", &fs) {
            Ok(t) => assert_balanced(&t),
            Err(e) => assert!(e.line >= 1 && e.column >= 1, "{e}"),
        }
    }

    #[test]
    fn random_statements_never_panic(
        lines in proptest::collection::vec(
            prop_oneof![
                Just("param p string = 'x'".to_string()),
                Just("@description('d')".to_string()),
                Just("var v = '${p}-${v2}'".to_string()),
                Just("var v2 = r.properties.x".to_string()),
                Just("resource r 'A.B/c@2020-01-01' = {".to_string()),
                Just("resource c 'A.B/c/d@2020-01-01' = if (p == 'x') {".to_string()),
                Just("  parent: r".to_string()),
                Just("  scope: c".to_string()),
                Just("  name: v".to_string()),
                Just("  dependsOn: [r, c]".to_string()),
                Just("  properties: { a: [1, 2], 'b-c': r.id }".to_string()),
                Just("}".to_string()),
                Just("output o string = c.name".to_string()),
                Just("var l = [for (x, i) in [p, v]: { a: x, b: i }]".to_string()),
                Just("resource m 'A.B/c@2020-01-01' = [for x in l: if (x.a != p) {".to_string()),
                Just("  tags: { copy: [for t in range(0, 2): t] }".to_string()),
                Just("output os array = [for (x, i) in l: m[i].id]".to_string()),
                Just("resource e 'A.B/c@2020-01-01' existing = {".to_string()),
                Just("  parent: m[0]".to_string()),
                Just("  dependsOn: [m[0], m, c]".to_string()),
                Just("  scope: resourceGroup('g')".to_string()),
                Just("  tags: { a: m[length(l) - 1].properties.x }".to_string()),
                Just("var f = filter(l, x => x.a == p)".to_string()),
                Just("  resource n 'd@2020-01-01' = {".to_string()),
                Just("  resource n2 'A.B/c/d@2020-01-01' existing = if (p == 'y') {".to_string()),
                Just("output on string = r::n.id".to_string()),
                Just("  properties: { x: n.id, y: r::n::n2.name }".to_string()),
                Just("var g = reduce(l, 0, (a, b) => a)".to_string()),
                Just("var mm = map(l, (x, i) => { k: x.a, i: i, r: r.id, n: filter(l, y => y == x) })".to_string()),
                Just("output ol array = map(range(0, 2), (j => m[j].id))".to_string()),
                Just("var so = toObject(sort(l, (a, b) => a.a < b.a), x => x.a, x => mapValues(x, v => v))".to_string()),
                Just("module md './m.bicep' = {".to_string()),
                Just("module mj 'j.json' = if (p == 'x') {".to_string()),
                Just("module ml 'm.bicep' = [for (x, i) in l: {".to_string()),
                Just("module ms 'self.bicep' = {".to_string()),
                Just("module mb 'back.bicep' = {".to_string()),
                Just("module mr 'br/public:x:1' = {".to_string()),
                Just("module mt 'ts:00000000-0000-0000-0000-000000000000/rg/s:1' = {".to_string()),
                Just("module mq 'br:../x:1' = {".to_string()),
                Just("  params: { p: md.outputs.o }".to_string()),
                Just("  params: { p: ml[0].outputs.o, q: r.id }".to_string()),
                Just("  scope: resourceGroup('g')".to_string()),
                Just("  name: md.name".to_string()),
                Just("  dependsOn: [md, ml, r]".to_string()),
                Just("output om string = ml[1].outputs.o".to_string()),
                Just("var lt = loadTextContent('t.txt')".to_string()),
                Just("var lj = loadJsonContent('d.json').a[0]".to_string()),
                Just("var lb = 'x${loadFileAsBase64('../t.txt')}'".to_string()),
                Just("var ly = loadYamlContent('y.yaml', '$.a[1]')".to_string()),
                Just("output oy object = loadYamlContent('y.yaml', 'c')".to_string()),
                Just("var lf = loadYamlContent('y.yaml')".to_string()),
                Just("var lx = loadYamlContent('bad.yaml', '$..a')".to_string()),
                Just("targetScope = 'subscription'".to_string()),
                Just("targetScope = 'managementGroup'".to_string()),
                Just("targetScope = 'tenant'".to_string()),
                Just("resource g 'Microsoft.Resources/resourceGroups@2022-09-01' = {".to_string()),
                Just("resource gs 'Microsoft.Resources/resourceGroups@2022-09-01' = [for x in l: {".to_string()),
                Just("module mx 'sub.bicep' = {".to_string()),
                Just("module my 'mgs.bicep' = if (p == 'x') {".to_string()),
                Just("module mz 'nos.json' = {".to_string()),
                Just("  scope: g".to_string()),
                Just("  scope: gs[0]".to_string()),
                Just("  scope: gs[i]".to_string()),
                Just("  scope: subscription()".to_string()),
                Just("  scope: subscription('s')".to_string()),
                Just("  scope: tenant()".to_string()),
                Just("  scope: managementGroup()".to_string()),
                Just("  scope: managementGroup('x')".to_string()),
                Just("  scope: resourceGroup('s', 'g')".to_string()),
                Just("  scope: resourceGroup()".to_string()),
                Just("var sc = resourceGroup().location".to_string()),
                Just("var ss = subscription().id".to_string()),
                Just("output ox string = mx.outputs.o".to_string()),
                Just("var nn = r!.properties!.x!".to_string()),
                Just("output on2 string = ml[0]!.outputs.o!".to_string()),
                Just("  properties: { a: !(p! != v!), b: md!.outputs!.o }".to_string()),
                Just("type t = { a: string, b: t?, c: u[] }".to_string()),
                Just("@sealed()".to_string()),
                Just("@export()".to_string()),
                Just("type u = 'a' | 'b'".to_string()),
                Just("type w = u[]".to_string()),
                Just("type z = [string, int]".to_string()),
                Just("type y = t.a".to_string()),
                Just("param pt t".to_string()),
                Just("param pa string[] = [p]".to_string()),
                Just("param pn int? = null".to_string()),
                Just("var tv t = { a: p, c: ['a'] }".to_string()),
                Just("func fg(x int) int => x + 1".to_string()),
                Just("func fh(x string[]) int => length(filter(x, y => y == 'a')) + fg(1)".to_string()),
                Just("func fp(x string) string => '${x}-${p}'".to_string()),
                Just("func fr() int => fs()".to_string()),
                Just("func fs() int => fr()".to_string()),
                Just("var fv = fh(pa)".to_string()),
                Just("output ot t = pt".to_string()),
                Just("output ow w = ['a']".to_string()),
                Just("  properties: { a: e.properties.x, b: e.id, c: fg(2) }".to_string()),
                "[a-z(){}'$\\[\\]:=., ]{0,30}",
            ],
            0..30,
        )
    ) {
        check(&lines.join("\n"));
    }

    #[test]
    fn edited_templates_never_panic(
        which in 0usize..15,
        edits in proptest::collection::vec((0.0f64..1.0, 0usize..40, 0u8..4, "[a-z'{}()\\[\\]$.:= \n]{0,6}"), 1..6),
    ) {
        let all = sources();
        let mut chars: Vec<char> = all[which % all.len()].chars().collect();
        for (pos, len, kind, text) in edits {
            let at = ((chars.len() as f64) * pos) as usize;
            let end = (at + len).min(chars.len());
            match kind {
                0 => { chars.drain(at..end); }
                1 => { chars.splice(at..at, text.chars()); }
                2 => { chars.splice(at..end, text.chars()); }
                _ => {
                    let copy: Vec<char> = chars[at..end].to_vec();
                    chars.splice(at..at, copy);
                }
            }
        }
        check(&chars.into_iter().collect::<String>());
    }
}

/// Every target scope × every module scope × every module's own scope: a template or a
/// positioned error; a compiled module deployment carries a location exactly when it deploys
/// outside a resource group, and names the group (`resourceGroup`) only inside one.
#[test]
fn every_combination_of_scopes_compiles_or_is_rejected() {
    let targets = [
        "",
        "targetScope = 'subscription'\n",
        "targetScope = 'managementGroup'\n",
        "targetScope = 'tenant'\n",
    ];
    let modules = ["m.bicep", "j.json", "sub.bicep", "mgs.bicep", "ts.bicep"];
    let scopes = [
        "",
        "  scope: resourceGroup()\n",
        "  scope: resourceGroup('g')\n",
        "  scope: resourceGroup('s', 'g')\n",
        "  scope: g\n",
        "  scope: subscription()\n",
        "  scope: subscription('s')\n",
        "  scope: managementGroup()\n",
        "  scope: managementGroup('x')\n",
        "  scope: tenant()\n",
    ];
    let mut compiled = 0;
    for target in targets {
        for module in modules {
            for scope in scopes {
                let src = format!(
                    "{target}resource g 'Microsoft.Resources/resourceGroups@2022-09-01' existing = {{\n  name: 'g'\n}}\nmodule m '{module}' = {{\n  name: 'm'\n{scope}  params: {{\n    p: 'v'\n  }}\n}}\noutput o string = m.outputs.o\n"
                );
                check(&src);
                let Ok(t) = bicep::compile_with(&src, "main.bicep", files()) else {
                    continue;
                };
                compiled += 1;
                let m = &t["resources"][0];
                let inner = m["properties"]["template"]["$schema"]
                    .as_str()
                    .unwrap_or("");
                let in_group = inner.ends_with("/2019-04-01/deploymentTemplate.json#");
                assert_eq!(m.get("location").is_some(), !in_group, "{src}\n{t}");
                assert!(in_group || m.get("resourceGroup").is_none(), "{src}\n{t}");
            }
        }
    }
    println!(
        "{compiled} of {} combinations compile",
        targets.len() * modules.len() * scopes.len()
    );
    // What the official compiler accepts (BCP113-BCP116, the scope functions' overloads and a
    // module's own scope), counted by hand: 11 from a resource group, 10 from a subscription,
    // 7 from a management group, 6 from the tenant.
    assert_eq!(compiled, 34);
}

#[test]
fn every_prefix_of_every_template_compiles_or_is_rejected() {
    for src in sources() {
        for (i, _) in src.char_indices().step_by(7) {
            check(&src[..i]);
        }
    }
}

#[test]
fn pathological_nesting_is_an_error_not_a_stack_overflow() {
    let n = 100_000;
    let cases = [
        format!("var x = {}1{}", "(".repeat(n), ")".repeat(n)),
        format!("var x = {}1", "!".repeat(n)),
        format!("var x = 1{}", "!".repeat(n)),
        format!("var x = 1{}", " + 1".repeat(n)),
        format!("var x = {{}}{}", ".a".repeat(n)),
        format!("var x = {}", "[".repeat(n)),
        format!("var x = {}", "{a: ".repeat(n)),
        format!("var x = {}", "'${".repeat(n)),
        format!("var x = {}", "1 ? 2 : ".repeat(n)),
        format!("var x = {}1", "map([1], x => ".repeat(n)),
        format!("var x = map([1], {}x => 1", "(".repeat(n)),
    ];
    for src in &cases {
        let err = bicep::compile(src).expect_err("too deep");
        assert!(
            err.message.contains("deep") || err.message.contains("unterminated"),
            "{err}"
        );
    }
    // A long chain of variables is fine up to a bound, then an error.
    let chain: String = (0..100)
        .map(|i| format!("var v{i} = v{}\n", i + 1))
        .chain(["var v100 = 'end'\noutput o string = v0\n".to_string()])
        .collect();
    assert!(bicep::compile(&chain).is_ok());
    let chain: String = (0..5000)
        .map(|i| format!("var v{i} = v{}\n", i + 1))
        .chain(["var v5000 = 'end'\n".to_string()])
        .collect();
    let err = bicep::compile(&chain).expect_err("too deep");
    assert!(err.message.contains("too deeply"), "{err}");
    // Nested resources nest a body in a body: bounded like any nesting.
    let nested = format!(
        "resource r 'A.B/c@1' = {{\n{}",
        "resource r 'd' = {\n".repeat(n)
    );
    let err = bicep::compile(&nested).expect_err("too deep");
    assert!(err.message.contains("deep"), "{err}");
    // A long chain of parents (each an existing resource of the next level) ends in a template
    // or an error, not in a stack overflow.
    let mut ty = "A.B/c".to_string();
    let mut src = format!(
        "resource r0 '{ty}@1' existing = {{\n  name: 'x'\n  scope: resourceGroup('g')\n}}\n"
    );
    for i in 1..3000 {
        ty.push_str("/c");
        src.push_str(&format!(
            "resource r{i} '{ty}@1' existing = {{\n  parent: r{}\n  name: 'x'\n}}\n",
            i - 1
        ));
    }
    src.push_str(
        "resource d 'A.B/d@1' = {\n  name: r2999.name\n  properties: {\n    id: r2999.id\n  }\n}\n",
    );
    check(&src);
    // The same as a languageVersion 2.0 template (a type declaration makes it one).
    check(&format!("type t = string\n{src}"));
    // Types and functions: deep types are an error; long chains of type aliases and of calls
    // end in a template or an error (a cycle), not in a stack overflow.
    for src in [
        format!("type t = {}", "{a: ".repeat(n)),
        format!("type t = {{a: {}", "{\n  a: ".repeat(n)),
        format!("param p string{}", "[]".repeat(n)),
        format!("param p string{}", "?".repeat(n)),
        format!("type t = {}string", "(".repeat(n)),
        format!("type t = {}", "| 'a' ".repeat(n)),
        format!("func f() int => {}1", "(".repeat(n)),
        format!("func f({}) int => 1", "a int, ".repeat(n)),
    ] {
        check(&src);
    }
    let err = bicep::compile(&format!("type t = {}", "{a: ".repeat(n))).expect_err("too deep");
    assert!(err.message.contains("deep"), "{err}");
    let err = bicep::compile(&format!("param p string{}", "[]".repeat(n))).expect_err("deep");
    assert!(err.message.contains("deep"), "{err}");
    let aliases: String = (0..5000)
        .map(|i| format!("type t{i} = t{}[]\n", i + 1))
        .collect();
    check(&format!("{aliases}type t5000 = string\nparam p t0\n"));
    let err = bicep::compile(&format!("{aliases}type t5000 = t0\n")).expect_err("a cycle");
    assert!(err.message.contains("refers to itself"), "{err}");
    let calls: String = (0..5000)
        .map(|i| format!("func f{i}() int => f{}()\n", i + 1))
        .collect();
    check(&format!("{calls}func f5000() int => 1\nvar x = f0()\n"));
    let err = bicep::compile(&format!("{calls}func f5000() int => f0()\n")).expect_err("a cycle");
    assert!(err.message.contains("calls itself"), "{err}");
    // Modules that include each other are an error, not a stack overflow; so is a chain of
    // modules deeper than the bound.
    let mut fs = HashMap::new();
    fs.insert(
        "a.bicep".to_string(),
        "module b 'b.bicep' = {\n  name: 'b'\n}\n".to_string(),
    );
    fs.insert(
        "b.bicep".to_string(),
        "module a 'a.bicep' = {\n  name: 'a'\n}\n".to_string(),
    );
    let err = bicep::compile_with(&fs["a.bicep"], "a.bicep", &fs).expect_err("a cycle");
    assert!(
        err.message.contains("a.bicep -> b.bicep -> a.bicep"),
        "{err}"
    );
    let mut fs = HashMap::new();
    for i in 0..10_000 {
        fs.insert(
            format!("m{i}.bicep"),
            format!("module n 'm{}.bicep' = {{\n  name: 'n'\n}}\n", i + 1),
        );
    }
    let err = bicep::compile_with(&fs["m0.bicep"], "m0.bicep", &fs).expect_err("too deep");
    assert!(err.message.contains("deep"), "{err}");
    // YAML: deep nesting (flow and block) and the billion laughs are errors, quickly.
    let mut laughs = String::from("a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]\n");
    for i in 1..12 {
        let p = i - 1;
        laughs.push_str(&format!(
            "a{i}: &a{i} [*a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}]\n"
        ));
    }
    let block: String = (0..1000)
        .map(|i| format!("{}- \n", " ".repeat(i)))
        .collect();
    for (yaml, what) in [
        ("[".repeat(n), "not valid YAML"),
        ("{a: ".repeat(n), "not valid YAML"),
        ("[".repeat(61), "nested more than"),
        (block, "nested more than"),
        (laughs, "aliases copying more than"),
    ] {
        let mut fs = HashMap::new();
        fs.insert("y.yaml".to_string(), yaml);
        let err = bicep::compile_with("var y = loadYamlContent('y.yaml')\n", "main.bicep", &fs)
            .expect_err("refused");
        assert!(err.message.contains(what), "{err}");
        assert_eq!((err.line, err.column), (1, 9));
    }
}
