//! User-defined types and functions, typed and exported variables, and what they make of the
//! template: a `languageVersion` 2.0 one (resources by symbolic name), with `definitions`
//! (types, read through `$ref`) and `functions` (namespace `__bicep`), as the official
//! compiler writes them.

use std::collections::HashMap;

use serde_json::{Map, Value, json};

use super::{Emitter, FUNCTIONS, LAMBDA_FUNCTIONS, is_load_function};
use crate::bicep::CompileError;
use crate::bicep::arm::Ax;
use crate::bicep::syntax::{
    Decorator, Expr, ExprKind, Stmt, StmtKind, TypeExpr, TypeNode, each_child, unsupported,
};

/// The ARM types a declaration may name.
const PRIMITIVES: &[&str] = &["string", "int", "bool", "object", "array"];

/// The namespace of the functions a template declares.
const NAMESPACE: &str = "__bicep";

/// Whether the official compiler writes this file as a `languageVersion` 2.0 template (of the
/// reasons it has, those this compiler reads): type or function declarations, typed variables,
/// and object, array, union or nullable type syntax in a parameter or output.
pub(super) fn needs_symbolic_names(stmts: &[Stmt]) -> bool {
    stmts.iter().any(|s| match &s.kind {
        StmtKind::Type { .. } | StmtKind::Func { .. } | StmtKind::Var { ty: Some(_), .. } => true,
        StmtKind::Param { ty, .. } | StmtKind::Output { ty, .. } => ty.node.is_aggregate(),
        _ => false,
    })
}

impl Emitter<'_> {
    /// Names, cycles and bodies: a type named like a built-in one, types that are each other
    /// (not through an object's property), functions that call themselves, and function bodies
    /// that read anything but their own parameters are errors.
    pub(super) fn check_types_and_functions(&self) -> Result<(), CompileError> {
        let mut decls: Vec<(&str, &Stmt)> = self.types.iter().map(|(n, s)| (*n, *s)).collect();
        decls.sort_by_key(|(_, s)| s.at);
        for (name, s) in &decls {
            if PRIMITIVES.contains(name) || *name == "any" {
                return Err(unsupported(
                    self.src,
                    s.at,
                    &format!("types named like a built-in type ('{name}')"),
                ));
            }
            if self.symbols.contains_key(name) || self.funcs.contains_key(name) {
                return Err(self.err(s.at, format!("'{name}' is declared more than once")));
            }
        }
        // Through aliases, arrays, nullables and unions (not objects), back to itself: each
        // type names at most one other that way, so each chain is walked once.
        let mut state: HashMap<&str, u8> = HashMap::new();
        for (name, s) in &decls {
            let mut path = Vec::new();
            let mut at = Some(*name);
            while let Some(n) = at.filter(|n| self.types.contains_key(n)) {
                match state.get(n) {
                    Some(1) => {
                        return Err(self.err(s.at, format!("type '{name}' refers to itself")));
                    }
                    Some(_) => break,
                    None => {}
                }
                state.insert(n, 1);
                path.push(n);
                at = self.types.get(n).and_then(|t| alias_of(t));
            }
            for n in path {
                state.insert(n, 2);
            }
        }
        let mut funcs: Vec<&Stmt> = self.funcs.values().copied().collect();
        funcs.sort_by_key(|s| s.at);
        for s in &funcs {
            let StmtKind::Func {
                name, params, body, ..
            } = &s.kind
            else {
                continue;
            };
            if self.symbols.contains_key(name.as_str()) {
                return Err(self.err(s.at, format!("'{name}' is declared more than once")));
            }
            if FUNCTIONS.contains(&name.as_str())
                || LAMBDA_FUNCTIONS.contains(&name.as_str())
                || is_load_function(name)
                || ["any", "nameof"].contains(&name.as_str())
            {
                return Err(unsupported(
                    self.src,
                    s.at,
                    &format!("user-defined functions named like a built-in function ('{name}')"),
                ));
            }
            let mut error = None;
            let mut bound: Vec<String> = params.iter().map(|(p, _)| p.clone()).collect();
            free_idents(body, &mut bound, 0, &mut |e| {
                if error.is_some() {
                    return;
                }
                match &e.kind {
                    ExprKind::Ident(n) if ["sys", "az"].contains(&n.as_str()) => {}
                    ExprKind::Ident(n) => {
                        error = Some(self.err(
                            e.at,
                            format!(
                                "a user-defined function reads only its own parameters, not '{n}'"
                            ),
                        ));
                    }
                    _ => error = Some(self.err(e.at, "a function's body nests too deeply")),
                }
            });
            if let Some(e) = error {
                return Err(e);
            }
        }
        // Calls form no cycle: functions are removed once all they call are (Kahn).
        let calls: HashMap<&str, Vec<&str>> = funcs
            .iter()
            .filter_map(|s| match &s.kind {
                StmtKind::Func { name, body, .. } => {
                    let mut called = Vec::new();
                    crate::bicep::syntax::walk(body, &mut |e| {
                        if let ExprKind::Call { name: c, .. } = &e.kind
                            && let Some((k, _)) = self.funcs.get_key_value(c.as_str())
                        {
                            called.push(*k);
                        }
                    });
                    Some((name.as_str(), called))
                }
                _ => None,
            })
            .collect();
        // Depth-first, iteratively: a function still on the path when called again is in a
        // cycle.
        let mut state: HashMap<&str, u8> = HashMap::new();
        for s in &funcs {
            let Some(root) = func_name(s) else { continue };
            if state.contains_key(root) {
                continue;
            }
            let mut stack: Vec<(&str, usize)> = vec![(root, 0)];
            state.insert(root, 1);
            while let Some((n, i)) = stack.pop() {
                let next = calls.get(n).and_then(|c| c.get(i)).copied();
                let Some(callee) = next else {
                    state.insert(n, 2);
                    continue;
                };
                stack.push((n, i + 1));
                match state.get(callee) {
                    Some(1) => {
                        let at = self.funcs.get(callee).map_or(s.at, |f| f.at);
                        return Err(self.err(
                            at,
                            format!("function '{callee}' calls itself (directly or through other functions)"),
                        ));
                    }
                    Some(_) => {}
                    None => {
                        state.insert(callee, 1);
                        stack.push((callee, 0));
                    }
                }
            }
        }
        Ok(())
    }

    /// A declaration's type as an ARM type object (`{"type": "string"}`,
    /// `{"type": "array", "items": ...}`, `{"$ref": "#/definitions/x"}`).
    pub(super) fn declared_type(&self, ty: &TypeExpr) -> Result<Map<String, Value>, CompileError> {
        if !self.symbolic {
            let mut o = Map::new();
            o.insert("type".into(), Value::from(self.plain_type(ty)?));
            return Ok(o);
        }
        self.type_schema(&ty.node, ty.at, 0)
    }

    /// `at`: where the type is written, for errors.
    fn type_schema(
        &self,
        node: &TypeNode,
        at: usize,
        depth: usize,
    ) -> Result<Map<String, Value>, CompileError> {
        let mut o = Map::new();
        if depth > super::MAX_DEPTH {
            return Err(self.err(at, "type nested too deeply"));
        }
        match node {
            TypeNode::Name(n) if PRIMITIVES.contains(&n.as_str()) => {
                o.insert("type".into(), Value::from(n.as_str()));
            }
            TypeNode::Name(n) if self.types.contains_key(n.as_str()) => {
                o.insert("$ref".into(), Value::from(format!("#/definitions/{n}")));
            }
            TypeNode::Name(n) => {
                return Err(unsupported(
                    self.src,
                    at,
                    &format!("the type '{n}' (not a declared type)"),
                ));
            }
            TypeNode::Literal(v) => {
                o.insert("type".into(), Value::from(literal_kind(v)));
                o.insert("allowedValues".into(), json!([v]));
            }
            TypeNode::Union(members) => {
                let values = self.union_values(members, at)?;
                o.insert("type".into(), Value::from(literal_kind(&values[0])));
                o.insert("allowedValues".into(), Value::Array(values));
            }
            TypeNode::Array(item) => {
                o.insert("type".into(), Value::from("array"));
                match &**item {
                    TypeNode::Literal(v) => {
                        o.insert("allowedValues".into(), json!([v]));
                    }
                    TypeNode::Union(members) => {
                        o.insert(
                            "allowedValues".into(),
                            Value::Array(self.union_values(members, at)?),
                        );
                    }
                    other => {
                        o.insert(
                            "items".into(),
                            Value::Object(self.type_schema(other, at, depth + 1)?),
                        );
                    }
                }
            }
            TypeNode::Nullable(inner) => {
                o = self.type_schema(inner, at, depth + 1)?;
                o.insert("nullable".into(), Value::Bool(true));
            }
            TypeNode::Object(props) => {
                o.insert("type".into(), Value::from("object"));
                let mut schemas = Map::new();
                for p in props {
                    let schema = self.type_schema(&p.ty, p.at, depth + 1)?;
                    schemas.insert(
                        p.name.clone(),
                        Value::Object(self.type_modifiers(&p.decorators, schema, &[])?),
                    );
                }
                o.insert("properties".into(), Value::Object(schemas));
            }
            TypeNode::Unsupported(what, at) => return Err(unsupported(self.src, *at, what)),
        }
        Ok(o)
    }

    /// The values of a union of literals of one kind (strings or integers), each once.
    fn union_values(&self, members: &[TypeNode], at: usize) -> Result<Vec<Value>, CompileError> {
        let mut values: Vec<Value> = Vec::new();
        for m in members {
            match m {
                TypeNode::Literal(v @ (Value::String(_) | Value::Number(_)))
                    if values.is_empty() || literal_kind(&values[0]) == literal_kind(v) =>
                {
                    if values.contains(v) {
                        return Err(unsupported(
                            self.src,
                            at,
                            "union types that repeat a member",
                        ));
                    }
                    values.push(v.clone());
                }
                TypeNode::Unsupported(what, at) => return Err(unsupported(self.src, *at, what)),
                _ => {
                    return Err(unsupported(
                        self.src,
                        at,
                        "union types other than of string or integer literals of one kind",
                    ));
                }
            }
        }
        Ok(values)
    }

    /// The decorators of a type, a type's property or a declaration applied to its type object,
    /// as the official compiler applies them; `extra` are the decorators the caller handles.
    pub(super) fn type_modifiers(
        &self,
        decorators: &[Decorator],
        mut o: Map<String, Value>,
        extra: &[&str],
    ) -> Result<Map<String, Value>, CompileError> {
        for d in decorators {
            match d.name.as_str() {
                "secure" => {
                    if !d.args.is_empty() {
                        return Err(self.err(d.at, "@secure() takes no arguments"));
                    }
                    let secure = match o.get("type").and_then(Value::as_str) {
                        Some("string") => "securestring",
                        Some("object") => "secureObject",
                        _ => {
                            return Err(
                                self.err(d.at, "@secure() applies to string and object types")
                            );
                        }
                    };
                    o.insert("type".into(), Value::from(secure));
                }
                "sealed" => {
                    if o.get("type").and_then(Value::as_str) != Some("object") || !d.args.is_empty()
                    {
                        return Err(self.err(
                            d.at,
                            "@sealed() applies to object types and takes no arguments",
                        ));
                    }
                    o.insert("additionalProperties".into(), Value::Bool(false));
                }
                "minLength" | "maxLength" | "minValue" | "maxValue" => {
                    o.insert(d.name.clone(), self.int_arg(d)?);
                }
                "description" | "metadata" => {}
                n if extra.contains(&n) => {}
                _ => return Err(self.decorator_error(d)),
            }
        }
        let meta = self.description_metadata(
            decorators,
            &[
                "description",
                "metadata",
                "secure",
                "sealed",
                "minLength",
                "maxLength",
                "minValue",
                "maxValue",
            ]
            .iter()
            .chain(extra)
            .copied()
            .collect::<Vec<_>>(),
        )?;
        if !meta.is_empty() {
            let m = o
                .entry("metadata")
                .or_insert_with(|| Value::Object(Map::new()));
            if let Value::Object(m) = m {
                m.extend(meta);
            }
        }
        Ok(o)
    }

    /// `@export()`: whether the declaration has it (it takes no arguments).
    pub(super) fn exported(&self, s: &Stmt) -> Result<bool, CompileError> {
        match s.decorators.iter().find(|d| d.name == "export") {
            None => Ok(false),
            Some(d) if d.args.is_empty() => Ok(true),
            Some(d) => Err(self.err(d.at, "@export() takes no arguments")),
        }
    }

    /// The `definitions` section: each declared type, in order.
    pub(super) fn definitions(&self, stmts: &[Stmt]) -> Result<Map<String, Value>, CompileError> {
        let mut out = Map::new();
        for s in stmts {
            let StmtKind::Type { name, ty } = &s.kind else {
                continue;
            };
            let mut o = self.type_modifiers(
                &s.decorators,
                self.type_schema(&ty.node, ty.at, 0)?,
                &["export"],
            )?;
            if self.exported(s)? {
                self.add_metadata(&mut o, "__bicep_export!", Value::Bool(true));
            }
            out.insert(name.clone(), Value::Object(o));
        }
        Ok(out)
    }

    fn add_metadata(&self, o: &mut Map<String, Value>, key: &str, value: Value) {
        if let Value::Object(m) = o
            .entry("metadata")
            .or_insert_with(|| Value::Object(Map::new()))
        {
            m.insert(key.into(), value);
        }
    }

    /// The `functions` section: the declared functions in namespace `__bicep`, in order.
    pub(super) fn functions(&self, stmts: &[Stmt]) -> Result<Option<Value>, CompileError> {
        let mut members = Map::new();
        for s in stmts {
            let StmtKind::Func {
                name,
                params,
                output,
                body,
            } = &s.kind
            else {
                continue;
            };
            for d in &s.decorators {
                if !["description", "export"].contains(&d.name.as_str()) {
                    return Err(self.decorator_error(d));
                }
            }
            let mut parameters = Vec::new();
            for (p, ty) in params.iter() {
                let mut o = self.declared_type(ty)?;
                o.insert("name".into(), Value::from(p.as_str()));
                parameters.push(Value::Object(o));
            }
            let mut out = self.declared_type(output)?;
            let names = params.iter().map(|(p, _)| p.clone()).collect();
            let saved = self.func_params.replace(Some(names));
            let value = self.lower_json(body);
            self.func_params.replace(saved);
            out.insert("value".into(), value?.to_json());
            let mut f = Map::new();
            f.insert("parameters".into(), Value::Array(parameters));
            f.insert("output".into(), Value::Object(out));
            let mut meta = self.description_metadata(&s.decorators, &["description", "export"])?;
            if self.exported(s)? {
                meta.insert("__bicep_export!".into(), Value::Bool(true));
            }
            if !meta.is_empty() {
                f.insert("metadata".into(), Value::Object(meta));
            }
            members.insert(name.clone(), Value::Object(f));
        }
        if members.is_empty() {
            return Ok(None);
        }
        Ok(Some(json!([{"namespace": NAMESPACE, "members": members}])))
    }

    /// In a function's body, its parameter `name`.
    pub(super) fn func_param(&self, name: &str) -> Option<Ax> {
        self.func_params
            .borrow()
            .as_ref()
            .filter(|p| p.iter().any(|p| p == name))
            .map(|_| Ax::call("parameters", vec![Ax::str(name)]))
    }

    /// A call of a declared function: `__bicep.name(args)`.
    pub(super) fn user_function_call(
        &self,
        name: &str,
        args: &[Expr],
        at: usize,
    ) -> Result<Option<Ax>, CompileError> {
        let Some(StmtKind::Func { params, .. }) = self.funcs.get(name).map(|s| &s.kind) else {
            return Ok(None);
        };
        if params.len() != args.len() {
            return Err(self.err(
                at,
                format!(
                    "{name}() takes {} arguments, not {}",
                    params.len(),
                    args.len()
                ),
            ));
        }
        let args = args
            .iter()
            .map(|a| self.lower(a))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Some(Ax::Call(format!("{NAMESPACE}.{name}"), args)))
    }

    /// `metadata.__bicep_exported_variables!`: the exported variables by name (ordinal), with
    /// their description and declared type.
    pub(super) fn exported_variables(&self, stmts: &[Stmt]) -> Result<Vec<Value>, CompileError> {
        let mut out: Vec<(String, Value)> = Vec::new();
        for s in stmts {
            let StmtKind::Var { name, ty, .. } = &s.kind else {
                continue;
            };
            if !self.exported(s)? {
                continue;
            }
            if self.runtime_vars.contains(name.as_str()) {
                return Err(self.err(
                    s.at,
                    format!("exported variable '{name}' needs the deployment to run (a compile-time value is required)"),
                ));
            }
            let mut o = Map::new();
            o.insert("name".into(), Value::from(name.as_str()));
            if let Some(d) = s.decorators.iter().find(|d| d.name == "description") {
                o.insert("description".into(), self.string_arg(d)?);
            }
            if let Some(ty) = ty {
                o.insert("type".into(), Value::Object(self.declared_type(ty)?));
            }
            out.push((name.clone(), Value::Object(o)));
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(out.into_iter().map(|(_, v)| v).collect())
    }
}

/// The ARM type of a literal.
fn literal_kind(v: &Value) -> &'static str {
    match v {
        Value::String(_) => "string",
        Value::Number(_) => "int",
        Value::Bool(_) => "bool",
        _ => "object",
    }
}

/// The declared type a type declaration is written as, directly or in an array, nullable or
/// union (not in an object's property).
fn alias_of(s: &Stmt) -> Option<&str> {
    let StmtKind::Type { ty, .. } = &s.kind else {
        return None;
    };
    let mut node = &ty.node;
    loop {
        match node {
            TypeNode::Name(n) => return Some(n),
            TypeNode::Array(t) | TypeNode::Nullable(t) => node = t,
            TypeNode::Union(m) => node = m.first()?,
            _ => return None,
        }
    }
}

/// Calls `f` on each identifier in `e` that no lambda around it (nor `bound`) binds; `f` gets
/// the whole expression when it nests too deeply to walk.
fn free_idents<'e>(
    e: &'e Expr,
    bound: &mut Vec<String>,
    depth: usize,
    f: &mut impl FnMut(&'e Expr),
) {
    if depth > super::MAX_DEPTH {
        f(e);
        return;
    }
    match &e.kind {
        ExprKind::Ident(n) if bound.contains(n) => {}
        ExprKind::Ident(_) => f(e),
        ExprKind::Lambda { params, body } => {
            let before = bound.len();
            bound.extend(params.iter().cloned());
            free_idents(body, bound, depth + 1, f);
            bound.truncate(before);
        }
        ExprKind::For(l) => {
            free_idents(&l.source, bound, depth + 1, f);
            let before = bound.len();
            bound.extend(l.item.iter().chain(&l.index).cloned());
            if let Some(c) = &l.condition {
                free_idents(c, bound, depth + 1, f);
            }
            free_idents(&l.body, bound, depth + 1, f);
            bound.truncate(before);
        }
        _ => each_child(e, &mut |c| free_idents(c, bound, depth + 1, f)),
    }
}

fn func_name(s: &Stmt) -> Option<&str> {
    match &s.kind {
        StmtKind::Func { name, .. } => Some(name),
        _ => None,
    }
}
