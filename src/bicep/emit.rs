//! From the syntax tree to an ARM template (classic, or `languageVersion` 2.0 with resources by
//! symbolic name where the official compiler writes one: see `udt`): symbols, expression
//! lowering (operators, interpolation → `format`, resource reads → `resourceId`/`reference`),
//! inlining of variables that hold runtime values, inferred `dependsOn`, and the template
//! writer with the official compiler's section and key order.

use std::collections::{BTreeSet, HashMap, HashSet};

use serde_json::{Map, Value, json};

use super::CompileError;
use super::arm::Ax;
use super::files::{Context, ModuleTemplate, Modules};
use super::scope::{self, Scope};
use super::syntax::{
    Decorator, Expr, ExprKind, ForLoop, Property, ResourceLoop, Stmt, StmtKind, TypeExpr,
    each_child, unsupported, walk,
};
use super::yaml::YamlError;

mod udt;

/// How deeply variables may refer to each other.
const MAX_DEPTH: usize = 256;

/// A module is a nested deployment of this type and API version (today's official compiler).
const NESTED_DEPLOYMENT_TYPE: &str = "Microsoft.Resources/deployments";
const NESTED_DEPLOYMENT_API_VERSION: &str = "2025-04-01";

/// The file being compiled, for what it reads (`load*` functions).
pub struct Files<'c> {
    pub context: &'c Context<'c>,
    /// Its path, relative to the root.
    pub path: &'c str,
}

struct Resource<'a> {
    /// Deployed elsewhere: referenced, not deployed. In a classic template never written and
    /// never a dependency (what it depends on is); in a 2.0 one written with `"existing": true`,
    /// and a dependency where its body is read (not only its id, name, type or API version).
    existing: bool,
    /// One resource per item of a collection (`copy`).
    looped: Option<&'a ResourceLoop>,
    symbol: &'a str,
    ty: String,
    api_version: String,
    name: &'a Expr,
    parent: Option<&'a str>,
    /// `parent: vm[i]`: the element of a parent loop.
    parent_index: Option<&'a Expr>,
    scope: Option<&'a Expr>,
    condition: Option<&'a Expr>,
    depends_on: Option<&'a Expr>,
    body: &'a [Property],
    decorators: &'a [Decorator],
    at: usize,
    /// A module: a nested deployment of this template, with these `params`.
    module: Option<&'a ModuleTemplate>,
    params: Option<&'a Expr>,
}

/// A dependency of a declaration on a resource, or on one element of a resource loop.
#[derive(Clone, Copy)]
struct Dep<'a> {
    symbol: &'a str,
    /// `ip[i]`: the index as written; two indexes written apart are two dependencies, even
    /// when equal, as the official compiler lists them.
    index: Option<&'a Expr>,
    /// Found through a variable or an existing resource: the index is read outside any loop.
    indirect: bool,
    /// Reads only what identifies the resource (`id`, `name`, `type`, `apiVersion`), calls
    /// its functions, or names it as a parent or scope: in a `languageVersion` 2.0 template,
    /// such a reference to an existing resource is not a dependency on it (but on what it
    /// depends on), as the official compiler has it.
    weak: bool,
}

impl Dep<'_> {
    fn same(&self, other: &Dep<'_>) -> bool {
        self.symbol == other.symbol
            && match (self.index, other.index) {
                (None, None) => true,
                (Some(a), Some(b)) => std::ptr::eq(a, b),
                _ => false,
            }
    }
}

enum Symbol<'a> {
    Param,
    Var(&'a Expr),
    Resource(usize),
    Output,
}

/// A loop around the expression being lowered: its item and index names, and what they become.
struct LoopScope {
    /// The resource whose loop this is, for resource loops.
    resource: Option<String>,
    item: Option<String>,
    index: Option<String>,
    source: Ax,
    /// The current position: `copyIndex()`, `copyIndex('name')`, or a given index.
    position: Ax,
}

struct Emitter<'a> {
    src: &'a str,
    /// What the template deploys to (`targetScope`).
    target: Scope,
    modules: &'a Modules,
    files: &'a Files<'a>,
    loops: std::cell::RefCell<Vec<LoopScope>>,
    /// The variables of the lambdas being lowered, innermost last.
    lambdas: std::cell::RefCell<Vec<String>>,
    symbols: HashMap<&'a str, Symbol<'a>>,
    resources: Vec<Resource<'a>>,
    /// Variables whose value needs the deployment to run (`reference`, `list*`): inlined.
    runtime_vars: HashSet<&'a str>,
    /// The `load*` calls by position: their value, inline or through a `$fxv#N` variable.
    loads: HashMap<usize, Ax>,
    /// The `$fxv#N` variables, in order.
    load_vars: Vec<(String, Value)>,
    /// A `languageVersion` 2.0 template: resources by symbolic name (see `udt`).
    symbolic: bool,
    /// The user-defined types, by name.
    types: HashMap<&'a str, &'a Stmt>,
    /// The user-defined functions, by name.
    funcs: HashMap<&'a str, &'a Stmt>,
    /// The parameters of the user-defined function whose body is being lowered.
    func_params: std::cell::RefCell<Option<Vec<String>>>,
}

pub fn emit<'a>(
    src: &'a str,
    stmts: &'a [Stmt],
    modules: &'a Modules,
    files: &'a Files<'a>,
) -> Result<Value, CompileError> {
    let mut e = Emitter {
        src,
        target: scope::declared(src, stmts)?,
        modules,
        files,
        loops: std::cell::RefCell::new(Vec::new()),
        lambdas: std::cell::RefCell::new(Vec::new()),
        symbols: HashMap::new(),
        resources: Vec::new(),
        runtime_vars: HashSet::new(),
        loads: HashMap::new(),
        load_vars: Vec::new(),
        symbolic: false,
        types: HashMap::new(),
        funcs: HashMap::new(),
        func_params: std::cell::RefCell::new(None),
    };
    e.declare(stmts)?;
    e.symbolic = files.context.symbolic_names || udt::needs_symbolic_names(stmts);
    e.check_types_and_functions()?;
    e.check_loop_variables(stmts)?;
    e.check_module_targets()?;
    e.load_files(stmts)?;
    e.find_runtime_vars()?;
    e.check_resource_cycles()?;
    e.write(stmts)
}

impl<'a> Emitter<'a> {
    fn err(&self, at: usize, msg: impl Into<String>) -> CompileError {
        CompileError::at(self.src, at, msg)
    }

    fn declare(&mut self, stmts: &'a [Stmt]) -> Result<(), CompileError> {
        for s in stmts {
            let (name, symbol) = match &s.kind {
                StmtKind::Param { name, .. } => (name, Symbol::Param),
                StmtKind::Var { name, value, .. } => (name, Symbol::Var(value)),
                StmtKind::Output { name, .. } => (name, Symbol::Output),
                StmtKind::Resource {
                    name,
                    type_ref,
                    existing,
                    looped,
                    condition,
                    body,
                    ..
                } => {
                    let (ty, api_version) = type_ref.split_once('@').ok_or_else(|| {
                        self.err(
                            s.at,
                            format!(
                                "resource type '{type_ref}' needs an API version ('Type@version')"
                            ),
                        )
                    })?;
                    if ty.split('/').count() < 2 || !ty.contains('.') {
                        return Err(self.err(s.at, format!("invalid resource type '{ty}'")));
                    }
                    let prop = |key: &str| {
                        body.iter()
                            .find(|p| p.key_expr.is_none() && p.key == key)
                            .map(|p| &p.value)
                    };
                    let name_expr = prop("name").ok_or_else(|| {
                        self.err(s.at, format!("resource '{name}' has no 'name' property"))
                    })?;
                    let (parent, parent_index) = match prop("parent").map(|e| &e.kind) {
                        None => (None, None),
                        Some(ExprKind::Ident(p)) => (Some(p.as_str()), None),
                        // One resource of a loop: `parent: vm[i]`.
                        Some(ExprKind::Index { base, index })
                            if matches!(&base.kind, ExprKind::Ident(_)) =>
                        {
                            let ExprKind::Ident(p) = &base.kind else {
                                unreachable!("matched")
                            };
                            (Some(p.as_str()), Some(&**index))
                        }
                        Some(_) => {
                            let other = prop("parent").expect("matched");
                            return Err(self.err(
                                other.at,
                                "'parent' must be the symbolic name of a resource",
                            ));
                        }
                    };
                    if *existing && let Some(d) = prop("dependsOn") {
                        return Err(unsupported(
                            self.src,
                            d.at,
                            "explicit dependencies of existing resources",
                        ));
                    }
                    let index = self.resources.len();
                    if *existing && let Some(l) = looped {
                        return Err(unsupported(self.src, l.at, "loops over existing resources"));
                    }
                    self.resources.push(Resource {
                        existing: *existing,
                        looped: looped.as_ref(),
                        symbol: name,
                        ty: ty.to_string(),
                        api_version: api_version.to_string(),
                        name: name_expr,
                        parent,
                        parent_index,
                        scope: prop("scope"),
                        condition: condition.as_ref(),
                        depends_on: prop("dependsOn"),
                        body,
                        decorators: &s.decorators,
                        at: s.at,
                        module: None,
                        params: None,
                    });
                    (name, Symbol::Resource(index))
                }
                StmtKind::Module {
                    name,
                    looped,
                    condition,
                    body,
                    ..
                } => {
                    let index = self.resources.len();
                    let r =
                        self.declare_module(s, name, looped.as_ref(), condition.as_ref(), body)?;
                    self.resources.push(r);
                    (name, Symbol::Resource(index))
                }
                StmtKind::TargetScope(_) | StmtKind::Metadata { .. } => continue,
                StmtKind::Type { name, .. } => {
                    if self.types.insert(name, s).is_some() {
                        return Err(
                            self.err(s.at, format!("type '{name}' is declared more than once"))
                        );
                    }
                    continue;
                }
                StmtKind::Func { name, .. } => {
                    if self.funcs.insert(name, s).is_some() {
                        return Err(self.err(
                            s.at,
                            format!("function '{name}' is declared more than once"),
                        ));
                    }
                    continue;
                }
            };
            let is_output = matches!(symbol, Symbol::Output);
            // Outputs have a namespace of their own.
            let key: &'a str = name.as_str();
            if is_output {
                continue;
            }
            if self.symbols.insert(key, symbol).is_some() {
                return Err(self.err(s.at, format!("'{name}' is declared more than once")));
            }
        }
        // Parents exist, are resources, and form no cycle; child types extend the parent's.
        for r in &self.resources {
            let mut seen = HashSet::new();
            let mut cur = r;
            while let Some(p) = cur.parent {
                if seen.len() > MAX_DEPTH {
                    return Err(self.err(
                        r.at,
                        format!("the parents of '{}' are nested too deeply", r.symbol),
                    ));
                }
                if !seen.insert(cur.symbol) {
                    return Err(
                        self.err(r.at, format!("resource '{}' is its own ancestor", r.symbol))
                    );
                }
                cur = match self.symbols.get(p) {
                    Some(Symbol::Resource(i)) => &self.resources[*i],
                    _ => {
                        return Err(self.err(
                            r.at,
                            format!("parent '{p}' of '{}' is not a resource", r.symbol),
                        ));
                    }
                };
            }
            if let Some(p) = r.parent {
                let parent = self.resource(p);
                if parent.module.is_some() {
                    return Err(self.err(
                        r.at,
                        format!("the parent of '{}' is a module, not a resource", r.symbol),
                    ));
                }
                // Type names are compared without case, as ARM does (`ruleSets`, `rulesets`).
                let expected = format!("{}/", parent.ty);
                let child_of = r.ty.len() > expected.len()
                    && r.ty.is_char_boundary(expected.len())
                    && r.ty[..expected.len()].eq_ignore_ascii_case(&expected)
                    && !r.ty[expected.len()..].contains('/');
                // A deployed child of an existing parent in another scope would be deployed
                // here under the wrong id.
                let mut ancestor = Some(parent);
                while let Some(a) = ancestor {
                    if let Some(scope) = a.scope {
                        let here = self.is_target_scope(scope);
                        if a.existing && !r.existing && !here {
                            return Err(unsupported(
                                self.src,
                                r.at,
                                "resources deployed under a parent in another scope",
                            ));
                        }
                        break;
                    }
                    ancestor = a.parent.map(|p| self.resource(p));
                }
                match (parent.looped.is_some(), r.parent_index) {
                    (true, None) => {
                        return Err(self.err(
                            r.at,
                            format!(
                                "the parent of '{}' is the loop '{p}': name one of its resources ({p}[i])",
                                r.symbol
                            ),
                        ));
                    }
                    (false, Some(i)) => {
                        return Err(self.err(i.at, format!("'{p}' is not a resource loop")));
                    }
                    _ => {}
                }
                if !child_of {
                    return Err(self.err(
                        r.at,
                        format!(
                            "resource type '{}' is not a child of its parent's type '{}'",
                            r.ty, parent.ty
                        ),
                    ));
                }
            }
        }
        Ok(())
    }

    /// A module declaration, checked against the module's template: its properties, its scope
    /// (this resource group or another), and its parameters (each declared, all required ones
    /// given).
    fn declare_module(
        &self,
        s: &'a Stmt,
        name: &'a str,
        looped: Option<&'a ResourceLoop>,
        condition: Option<&'a Expr>,
        body: &'a [Property],
    ) -> Result<Resource<'a>, CompileError> {
        let Some(module) = self.modules.get(name) else {
            return Err(self.err(s.at, format!("module '{name}' was not compiled")));
        };
        for p in body {
            if p.key_expr.is_some()
                || !matches!(p.key.as_str(), "name" | "params" | "scope" | "dependsOn")
            {
                return Err(unsupported(
                    self.src,
                    p.at,
                    &format!(
                        "module properties other than name, params, scope and dependsOn ('{}')",
                        p.key
                    ),
                ));
            }
        }
        let prop = |key: &str| body.iter().find(|p| p.key == key).map(|p| &p.value);
        let Some(name_expr) = prop("name") else {
            return Err(unsupported(
                self.src,
                s.at,
                "modules without a name (generated deployment names)",
            ));
        };
        let params = prop("params");
        let mut given = Vec::new();
        if let Some(ps) = params {
            let ExprKind::Object(items) = &ps.kind else {
                return Err(self.err(ps.at, "a module's 'params' must be an object"));
            };
            for p in items {
                if p.key_expr.is_some() {
                    return Err(self.err(p.at, "a module parameter's name must be literal"));
                }
                if !module.params.iter().any(|(n, _)| *n == p.key) {
                    return Err(self.err(
                        p.at,
                        format!("module '{name}' has no parameter '{}'", p.key),
                    ));
                }
                if given.contains(&p.key.as_str()) {
                    return Err(self.err(p.at, format!("parameter '{}' is given twice", p.key)));
                }
                given.push(p.key.as_str());
            }
        }
        let missing: Vec<&str> = module
            .params
            .iter()
            .filter(|(n, required)| *required && !given.contains(&n.as_str()))
            .map(|(n, _)| n.as_str())
            .collect();
        if !missing.is_empty() {
            return Err(self.err(
                s.at,
                format!(
                    "module '{name}' needs the parameters {}",
                    missing
                        .iter()
                        .map(|m| format!("'{m}'"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            ));
        }
        Ok(Resource {
            existing: false,
            looped,
            symbol: name,
            ty: NESTED_DEPLOYMENT_TYPE.to_string(),
            api_version: NESTED_DEPLOYMENT_API_VERSION.to_string(),
            name: name_expr,
            parent: None,
            parent_index: None,
            scope: prop("scope"),
            condition,
            depends_on: prop("dependsOn"),
            body,
            decorators: &s.decorators,
            at: s.at,
            module: Some(&**module),
            params,
        })
    }

    /// Every module deploys to a scope its template targets and this template may deploy to.
    fn check_module_targets(&self) -> Result<(), CompileError> {
        for r in self.resources.iter().filter(|r| r.module.is_some()) {
            self.module_target(r)?;
        }
        Ok(())
    }

    /// Where a module deploys, as written in its `scope` (this template's scope without one),
    /// checked as the official compiler checks it: the module's own `targetScope` must be that
    /// scope, and a template deploys modules only to the scopes ARM lets a deployment at its
    /// scope reach.
    fn module_target(&self, r: &Resource<'a>) -> Result<ModuleTarget<'a>, CompileError> {
        let module = r.module.expect("a module");
        let mut t = ModuleTarget {
            scope: self.target,
            subscription: None,
            group: None,
            management_group: None,
        };
        let at = r.scope.map_or(r.at, |e| e.at);
        if let Some(e) = r.scope {
            let other = || {
                unsupported(
                    self.src,
                    e.at,
                    "module scopes other than resourceGroup(...), subscription(...), managementGroup(...), tenant() or a resource group of this file",
                )
            };
            match &e.kind {
                ExprKind::Call { name, args }
                    if !self.scope_function_available(name, args.len()) =>
                {
                    return Err(self.scope_function_error(e.at, name, args.len()));
                }
                ExprKind::Call { name, args } => match (name.as_str(), args.as_slice()) {
                    ("resourceGroup", []) => t.scope = Scope::ResourceGroup,
                    ("resourceGroup", [rg]) => {
                        t.scope = Scope::ResourceGroup;
                        t.group = Some(Group::Name(rg));
                    }
                    ("resourceGroup", [sub, rg]) => {
                        t.scope = Scope::ResourceGroup;
                        t.subscription = Some(sub);
                        t.group = Some(Group::Name(rg));
                    }
                    ("subscription", []) => t.scope = Scope::Subscription,
                    ("subscription", [sub]) => {
                        t.scope = Scope::Subscription;
                        t.subscription = Some(sub);
                    }
                    ("managementGroup", []) => t.scope = Scope::ManagementGroup,
                    ("managementGroup", [mg]) => {
                        t.scope = Scope::ManagementGroup;
                        t.management_group = Some(mg);
                    }
                    ("tenant", []) => t.scope = Scope::Tenant,
                    _ => return Err(other()),
                },
                ExprKind::Ident(_) | ExprKind::Index { .. } => {
                    let (base, index) = match &e.kind {
                        ExprKind::Index { base, index } => (&**base, Some(&**index)),
                        _ => (e, None),
                    };
                    let Some(rg) = self.resource_symbol(base).filter(|g| {
                        g.module.is_none() && g.ty.eq_ignore_ascii_case(RESOURCE_GROUP_TYPE)
                    }) else {
                        return Err(other());
                    };
                    match (index, rg.looped) {
                        (None, Some(_)) => {
                            return Err(self.err(
                                e.at,
                                format!(
                                    "'{}' is a loop of resource groups: name one of them ({0}[i])",
                                    rg.symbol
                                ),
                            ));
                        }
                        (Some(i), None) => {
                            return Err(
                                self.err(i.at, format!("'{}' is not a resource loop", rg.symbol))
                            );
                        }
                        _ => {}
                    }
                    if self.target != Scope::Subscription || rg.scope.is_some() {
                        return Err(unsupported(
                            self.src,
                            e.at,
                            "module scopes naming a resource group resource outside a subscription-scope template, or one declared with its own scope,",
                        ));
                    }
                    t.scope = Scope::ResourceGroup;
                    t.group = Some(Group::Resource(rg.symbol, index));
                }
                _ => return Err(other()),
            }
        }
        if module.scope != t.scope {
            return Err(self.err(
                at,
                format!(
                    "module '{}' has targetScope '{}' and cannot be deployed to a {} scope",
                    r.symbol,
                    module.scope.name(),
                    t.scope.name()
                ),
            ));
        }
        // The official compiler's rules (BCP113-BCP116).
        use Scope::*;
        let reachable = match t.scope {
            Tenant => true,
            ManagementGroup => matches!(self.target, Tenant | ManagementGroup),
            Subscription if t.subscription.is_some() => true,
            Subscription => matches!(self.target, Subscription | ResourceGroup),
            ResourceGroup if t.subscription.is_some() => true,
            ResourceGroup if t.group.is_some() => {
                matches!(self.target, Subscription | ResourceGroup)
            }
            ResourceGroup => self.target == ResourceGroup,
        };
        if !reachable {
            return Err(self.err(
                at,
                format!(
                    "a template with targetScope '{}' cannot deploy a module to this {} scope",
                    self.target.name(),
                    t.scope.name()
                ),
            ));
        }
        Ok(t)
    }

    /// A module's scope, lowered (in the module's loop, when it has one).
    fn module_placement(&self, r: &Resource<'a>) -> Result<ModulePlacement, CompileError> {
        let t = self.module_target(r)?;
        let group = match t.group {
            None => None,
            Some(Group::Name(e)) => Some(self.lower(e)?),
            Some(Group::Resource(symbol, index)) => {
                let rg = self.resource(symbol);
                Some(match (index, rg.looped) {
                    (Some(i), Some(l)) => {
                        let position = self.lower(i)?;
                        self.in_loop(rg, l, position, || self.lower(rg.name))?
                    }
                    _ => self.lower(rg.name)?,
                })
            }
        };
        Ok(ModulePlacement {
            scope: t.scope,
            subscription: t.subscription.map(|e| self.lower(e)).transpose()?,
            group,
            management_group: t.management_group.map(|e| self.lower(e)).transpose()?,
        })
    }

    /// Whether `scope` is the template's own scope (`resourceGroup()` in a resource group
    /// template, `subscription()` in a subscription template...).
    fn is_target_scope(&self, scope: &Expr) -> bool {
        matches!(&scope.kind, ExprKind::Call { name, args }
            if args.is_empty() && name == self.target.name())
    }

    /// The module `e` names, `m` or `m[i]` (an element of a module loop, with its index).
    fn module_ref<'e>(&self, e: &'e Expr) -> Option<(&Resource<'a>, Option<&'e Expr>)> {
        match &e.kind {
            ExprKind::Ident(_) => self
                .resource_symbol(e)
                .filter(|r| r.module.is_some())
                .map(|r| (r, None)),
            ExprKind::Index { base, index } => self
                .resource_symbol(base)
                .filter(|r| r.module.is_some() && r.looped.is_some())
                .map(|r| (r, Some(&**index))),
            _ => None,
        }
    }

    /// `f` for the module `r`, at the element `index` of its loop when given.
    fn module_read(
        &self,
        r: &Resource<'a>,
        index: Option<&Expr>,
        f: impl FnOnce() -> Result<Ax, CompileError>,
    ) -> Result<Ax, CompileError> {
        match (index, r.looped) {
            (Some(i), Some(l)) => {
                let position = self.lower(i)?;
                self.in_loop(r, l, position, f)
            }
            _ => {
                self.not_a_collection(r)?;
                f()
            }
        }
    }

    /// `reference(<deployment id>, <api version>)`: the state of a module's deployment.
    fn module_reference(&self, r: &Resource<'a>) -> Result<Ax, CompileError> {
        if self.symbolic {
            return Ok(Ax::call("reference", vec![self.resource_ref(r)?]));
        }
        Ok(Ax::call(
            "reference",
            vec![self.resource_id(r)?, Ax::Str(r.api_version.clone())],
        ))
    }

    /// `m.outputs.<name>` (or `m[i].outputs.<name>`): the output's value.
    fn module_output(
        &self,
        r: &Resource<'a>,
        index: Option<&Expr>,
        name: &str,
        at: usize,
    ) -> Result<Ax, CompileError> {
        let module = r.module.expect("a module");
        match module.outputs.iter().find(|(n, _)| n == name) {
            None => {
                return Err(self.err(at, format!("module '{}' has no output '{name}'", r.symbol)));
            }
            Some((_, true)) => {
                return Err(unsupported(self.src, at, "secure outputs of modules"));
            }
            Some(_) => {}
        }
        let reference = self.module_read(r, index, || self.module_reference(r))?;
        Ok(Ax::Prop(
            Box::new(Ax::Prop(
                Box::new(Ax::Prop(Box::new(reference), "outputs".into())),
                name.to_string(),
            )),
            "value".into(),
        ))
    }

    /// `m.name`, `m.outputs` (or of `m[i]`).
    fn module_property(
        &self,
        r: &Resource<'a>,
        index: Option<&Expr>,
        name: &str,
        at: usize,
    ) -> Result<Ax, CompileError> {
        match name {
            "name" => self.module_read(r, index, || self.lower(r.name)),
            "outputs" => {
                if r.module
                    .is_some_and(|m| m.outputs.iter().any(|(_, secure)| *secure))
                {
                    return Err(unsupported(self.src, at, "secure outputs of modules"));
                }
                let reference = self.module_read(r, index, || self.module_reference(r))?;
                Ok(Ax::Prop(Box::new(reference), "outputs".into()))
            }
            other => Err(self.err(
                at,
                format!(
                    "'{other}' is not a property of module '{}' (it has 'name' and 'outputs')",
                    r.symbol
                ),
            )),
        }
    }

    /// A module parameter's entry: `{"value": ...}`, a key vault reference for
    /// `kv.getSecret('name')`, a copy loop for a loop, and for a ternary the ternary of the
    /// entries.
    fn module_parameter(&self, e: &Expr) -> Result<Value, CompileError> {
        if let ExprKind::For(l) = &e.kind {
            let (count, input) =
                self.loop_body(l, Ax::call("copyIndex", vec![Ax::str("value")]))?;
            return Ok(json!({"copy": [{
                "name": "value",
                "count": count.to_json(),
                "input": input.to_json(),
            }]}));
        }
        Ok(self.module_parameter_ax(e, true)?.to_json())
    }

    fn module_parameter_ax(&self, e: &Expr, top: bool) -> Result<Ax, CompileError> {
        match &e.kind {
            ExprKind::MethodCall { base, name, args } if name == "getSecret" => {
                let (kv, index) = match &base.kind {
                    ExprKind::Index { base: inner, index } => {
                        (self.resource_symbol(inner), Some(&**index))
                    }
                    _ => (self.resource_symbol(base), None),
                };
                let Some(kv) = kv.filter(|kv| {
                    kv.module.is_none() && kv.ty.eq_ignore_ascii_case("Microsoft.KeyVault/vaults")
                }) else {
                    return Err(self.err(e.at, "getSecret() is called on a key vault"));
                };
                let id = match (index, kv.looped) {
                    (Some(i), Some(l)) => {
                        let position = self.lower(i)?;
                        self.in_loop(kv, l, position, || self.resource_id(kv))?
                    }
                    (None, _) => {
                        self.not_a_collection(kv)?;
                        self.resource_id(kv)?
                    }
                    (Some(i), None) => {
                        return Err(
                            self.err(i.at, format!("'{}' is not a resource loop", kv.symbol))
                        );
                    }
                };
                let mut reference = vec![(Ax::str("keyVault"), Ax::Obj(vec![(Ax::str("id"), id)]))];
                match args.as_slice() {
                    [secret] => reference.push((Ax::str("secretName"), self.lower(secret)?)),
                    [secret, version] => {
                        reference.push((Ax::str("secretName"), self.lower(secret)?));
                        reference.push((Ax::str("secretVersion"), self.lower(version)?));
                    }
                    _ => return Err(self.err(e.at, "getSecret() takes a name and a version")),
                }
                Ok(Ax::Obj(vec![(Ax::str("reference"), Ax::Obj(reference))]))
            }
            ExprKind::Ternary {
                cond,
                then,
                otherwise,
            } => Ok(Ax::call(
                "if",
                vec![
                    self.lower(cond)?,
                    self.module_parameter_ax(then, false)?,
                    self.module_parameter_ax(otherwise, false)?,
                ],
            )),
            _ => {
                let value = if top {
                    self.lower_json(e)?
                } else {
                    self.lower(e)?
                };
                Ok(Ax::Obj(vec![(Ax::str("value"), value)]))
            }
        }
    }

    /// A loop variable named like a parameter, variable, resource or module hides it inside
    /// the loop (the official compiler allows that), while this compiler reads other
    /// declarations where they are used (a resource's name and scope for its id, a variable's
    /// value computed at deployment): a hidden name that such a declaration reads is refused
    /// rather than risking the loop's variable in its place.
    fn check_loop_variables(&self, stmts: &'a [Stmt]) -> Result<(), CompileError> {
        // The loop variables named like a symbol, with where they are declared.
        let mut hiding: Vec<(String, usize)> = Vec::new();
        let mut note = |names: Vec<&String>, at: usize| {
            for n in names {
                if self.symbols.contains_key(n.as_str()) {
                    hiding.push((n.clone(), at));
                }
            }
        };
        for s in stmts {
            if let StmtKind::Resource {
                looped: Some(l), ..
            }
            | StmtKind::Module {
                looped: Some(l), ..
            } = &s.kind
            {
                note(l.item.iter().chain(&l.index).collect(), l.at);
            }
            for e in statement_exprs(s) {
                walk(e, &mut |x| {
                    if let ExprKind::For(l) = &x.kind {
                        note(l.item.iter().chain(&l.index).collect(), x.at);
                    }
                });
            }
        }
        if hiding.is_empty() {
            return Ok(());
        }
        let mut read_elsewhere: Vec<(&'a Expr, Vec<String>)> = Vec::new();
        for r in &self.resources {
            let own = self.own_loop_variables(r);
            read_elsewhere.push((r.name, own.clone()));
            read_elsewhere.extend(
                r.scope
                    .into_iter()
                    .chain(r.parent_index)
                    .map(|e| (e, own.clone())),
            );
        }
        for symbol in self.symbols.values() {
            if let Symbol::Var(v) = symbol {
                read_elsewhere.push((v, Vec::new()));
            }
        }
        for (e, mut bound) in read_elsewhere {
            let mut reads = None;
            walk_free(e, &mut bound, &mut |x| {
                if let ExprKind::Ident(n) = &x.kind
                    && reads.is_none()
                {
                    reads = hiding.iter().find(|(h, _)| h == n).cloned();
                }
            });
            if let Some((n, at)) = reads {
                return Err(unsupported(
                    self.src,
                    at,
                    &format!(
                        "loop variables named like a symbol that a resource's name or scope or a variable reads ('{n}')"
                    ),
                ));
            }
        }
        Ok(())
    }

    /// Reads the files the `load*` calls name, in source order (the official compiler's order
    /// of `$fxv#N` variables): `loadTextContent` and `loadFileAsBase64` assigned directly to a
    /// variable are inlined, every other call reads a `$fxv#N` variable.
    fn load_files(&mut self, stmts: &'a [Stmt]) -> Result<(), CompileError> {
        // Each call, and whether its value is written in place: a text or base64 load that is
        // a variable's whole value, and any load in a function's body (which reads no variable).
        let mut calls: Vec<(&'a Expr, &'a str, &'a [Expr], bool)> = Vec::new();
        for s in stmts {
            let (direct, body) = match &s.kind {
                StmtKind::Var { value, .. } => (Some(value.at), None),
                StmtKind::Func { body, .. } => (None, Some(body)),
                _ => (None, None),
            };
            for e in statement_exprs(s).into_iter().chain(body) {
                walk(e, &mut |x| {
                    let (name, args) = match &x.kind {
                        ExprKind::Call { name, args } => (name, args),
                        ExprKind::MethodCall { base, name, args } if matches!(&base.kind, ExprKind::Ident(ns) if ns == "sys") => {
                            (name, args)
                        }
                        _ => return,
                    };
                    if is_load_function(name) {
                        let inline = body.is_some()
                            || (direct == Some(x.at)
                                && matches!(name.as_str(), "loadTextContent" | "loadFileAsBase64"));
                        calls.push((x, name, args, inline));
                    }
                });
            }
        }
        if calls.is_empty() {
            return Ok(());
        }
        calls.sort_by_key(|(e, ..)| e.at);
        for (e, name, args, inline) in calls {
            let value = self.load_file(e.at, name, args)?;
            let ax = if inline {
                value
            } else {
                let var = format!("$fxv#{}", self.load_vars.len());
                self.load_vars.push((var.clone(), value.to_json()));
                Ax::call("variables", vec![Ax::Str(var)])
            };
            self.loads.insert(e.at, ax);
        }
        Ok(())
    }

    /// The value of one `load*` call, read now.
    fn load_file(&self, at: usize, name: &str, args: &[Expr]) -> Result<Ax, CompileError> {
        // The official compiler's limit on a literal's characters.
        const MAX_CHARS: usize = 131_072;
        // Its limit on a JSON or YAML file's characters.
        const MAX_FILE_CHARS: usize = 1_048_576;
        let literal = |e: &Expr| match &e.kind {
            ExprKind::Str { parts, holes } if holes.is_empty() => Some(parts[0].clone()),
            _ => None,
        };
        let Some(path) = args.first().and_then(literal) else {
            return Err(self.err(
                at,
                format!("{name}() takes the file's path as a literal string"),
            ));
        };
        let (encoding, json_path) = match (name, args.len()) {
            (_, 1) => (None, None),
            ("loadTextContent", 2) => (Some(&args[1]), None),
            ("loadJsonContent" | "loadYamlContent", 2) => (None, Some(&args[1])),
            ("loadJsonContent" | "loadYamlContent", 3) => (Some(&args[2]), Some(&args[1])),
            _ => return Err(self.err(at, format!("too many arguments for {name}()"))),
        };
        if let Some(e) = encoding
            && !literal(e).is_some_and(|s| s.eq_ignore_ascii_case("utf-8"))
        {
            return Err(unsupported(
                self.src,
                e.at,
                "file encodings other than 'utf-8'",
            ));
        }
        let json_path = match json_path {
            None => None,
            Some(e) => match literal(e) {
                Some(p) => Some((e.at, p)),
                None => {
                    return Err(self.err(
                        e.at,
                        format!("{name}() takes the JSONPath as a literal string"),
                    ));
                }
            },
        };
        let bytes = self
            .files
            .context
            .load(self.files.path, &path)
            .map_err(|(no_folder, e)| {
                if no_folder {
                    unsupported(
                        self.src,
                        at,
                        &format!(
                            "compile-time file functions ('{name}') without a templates folder"
                        ),
                    )
                } else {
                    self.err(at, format!("{name}(): {e}"))
                }
            })?;
        if name == "loadFileAsBase64" {
            use base64::Engine;
            if bytes.len() > MAX_CHARS / 4 * 3 {
                return Err(self.err(at, format!("'{path}' is larger than {name}() reads")));
            }
            return Ok(Ax::Str(
                base64::engine::general_purpose::STANDARD.encode(&bytes),
            ));
        }
        let text = String::from_utf8(bytes)
            .map_err(|_| self.err(at, format!("'{path}' is not UTF-8 text")))?;
        let text = text.strip_prefix('\u{feff}').unwrap_or(&text);
        if name == "loadTextContent" {
            if text.chars().count() > MAX_CHARS {
                return Err(self.err(at, format!("'{path}' is larger than {name}() reads")));
            }
            return Ok(Ax::Str(text.to_string()));
        }
        if text.chars().count() > MAX_FILE_CHARS {
            return Err(self.err(at, format!("'{path}' is larger than {name}() reads")));
        }
        let value: Value = if name == "loadYamlContent" {
            super::yaml::parse(text).map_err(|e| match e {
                YamlError::Invalid(e) => self.err(at, format!("'{path}' is not valid YAML: {e}")),
                YamlError::Unsupported(what) => {
                    unsupported(self.src, at, &format!("{what} in '{path}'"))
                }
            })?
        } else {
            serde_json::from_str(text)
                .map_err(|e| self.err(at, format!("'{path}' is not valid JSON: {e}")))?
        };
        let value = match json_path {
            None => value,
            Some((at, p)) => match select(&value, &p) {
                Ok(Some(v)) => v.clone(),
                Ok(None) => {
                    return Err(self.err(
                        at,
                        format!("the JSONPath '{p}' names nothing in '{path}' or is invalid"),
                    ));
                }
                Err(()) => {
                    return Err(unsupported(
                        self.src,
                        at,
                        &format!(
                            "JSONPath expressions other than names and indexes ('{p}' in {name})"
                        ),
                    ));
                }
            },
        };
        json_literal(&value).ok_or_else(|| {
            unsupported(
                self.src,
                at,
                &format!("numbers other than integers (in '{path}')"),
            )
        })
    }

    /// A resource's identity (name, parent, scope, loop source) must not depend on itself:
    /// its id could never be written (the official compiler reports such a cycle too).
    fn check_resource_cycles(&self) -> Result<(), CompileError> {
        let edges: Vec<Vec<usize>> = self
            .resources
            .iter()
            .map(|r| {
                let mut out = BTreeSet::new();
                let mut bound: Vec<String> = r
                    .looped
                    .iter()
                    .flat_map(|l| l.item.iter().chain(&l.index).cloned())
                    .collect();
                self.references_in(r.name, &mut bound, &mut out, &mut HashSet::new());
                if let Some(s) = r.scope {
                    self.references(s, &mut out);
                }
                if let Some(l) = r.looped {
                    self.references(&l.source, &mut out);
                }
                if let Some(p) = r.parent {
                    out.insert(p);
                }
                if let Some(i) = r.parent_index {
                    self.references_in(i, &mut bound, &mut out, &mut HashSet::new());
                }
                out.iter()
                    .filter_map(|s| match self.symbols.get(s) {
                        Some(Symbol::Resource(i)) => Some(*i),
                        _ => None,
                    })
                    .collect()
            })
            .collect();
        // Depth-first, iteratively: 0 unvisited, 1 on the path, 2 done.
        let mut state = vec![0u8; self.resources.len()];
        for start in 0..self.resources.len() {
            if state[start] != 0 {
                continue;
            }
            let mut path = vec![(start, 0usize)];
            state[start] = 1;
            while let Some((node, next)) = path.last_mut() {
                let node = *node;
                match edges[node].get(*next) {
                    Some(&to) => {
                        *next += 1;
                        match state[to] {
                            0 => {
                                state[to] = 1;
                                path.push((to, 0));
                            }
                            1 => {
                                let cycle: Vec<&str> = path
                                    .iter()
                                    .skip_while(|(n, _)| *n != to)
                                    .map(|(n, _)| self.resources[*n].symbol)
                                    .chain([self.resources[to].symbol])
                                    .collect();
                                return Err(self.err(
                                    self.resources[to].at,
                                    format!(
                                        "resource '{}' refers to itself through its name, parent, scope or loop: {}",
                                        self.resources[to].symbol,
                                        cycle.join(" -> ")
                                    ),
                                ));
                            }
                            _ => {}
                        }
                    }
                    None => {
                        state[node] = 2;
                        path.pop();
                    }
                }
            }
        }
        Ok(())
    }

    fn resource(&self, symbol: &str) -> &Resource<'a> {
        match self.symbols.get(symbol) {
            Some(Symbol::Resource(i)) => &self.resources[*i],
            _ => unreachable!("checked resource symbol"),
        }
    }

    /// The resource a name refers to (unless a loop variable of that name hides it).
    fn resource_symbol(&self, e: &Expr) -> Option<&Resource<'a>> {
        match &e.kind {
            ExprKind::Ident(n) if self.loop_variable(n).is_some() => None,
            ExprKind::Ident(n) => match self.symbols.get(n.as_str()) {
                Some(Symbol::Resource(i)) => Some(&self.resources[*i]),
                _ => None,
            },
            _ => None,
        }
    }

    /// Variables that hold runtime values, to a fixed point (a variable using one is one too);
    /// cycles between variables are errors.
    fn find_runtime_vars(&mut self) -> Result<(), CompileError> {
        let mut vars: Vec<(&'a str, &'a Expr)> = self
            .symbols
            .iter()
            .filter_map(|(n, s)| match s {
                Symbol::Var(e) => Some((*n, *e)),
                _ => None,
            })
            .collect();
        // In declaration order, so an error always names the same place.
        vars.sort_by_key(|(_, e)| e.at);
        let mut done = HashSet::new();
        for (name, value) in &vars {
            let mut stack = vec![*name];
            self.check_var_cycle(value, &mut stack, &mut done)?;
            done.insert(name);
        }
        loop {
            let mut changed = false;
            for (name, value) in &vars {
                if !self.runtime_vars.contains(name) && self.is_runtime(value) {
                    self.runtime_vars.insert(name);
                    changed = true;
                }
            }
            if !changed {
                return Ok(());
            }
        }
    }

    /// Depth-first over the variables `e` uses; `done` holds variables already checked, so
    /// shared sub-graphs are visited once.
    fn check_var_cycle(
        &self,
        e: &'a Expr,
        stack: &mut Vec<&'a str>,
        done: &mut HashSet<&'a str>,
    ) -> Result<(), CompileError> {
        let mut result = Ok(());
        walk(e, &mut |x| {
            if result.is_err() {
                return;
            }
            if let ExprKind::Ident(n) = &x.kind
                && let Some((name, Symbol::Var(v))) = self.symbols.get_key_value(n.as_str())
            {
                if stack.contains(name) {
                    result = Err(self.err(
                        x.at,
                        format!(
                            "variable '{n}' refers to itself through {}",
                            stack.join(" -> ")
                        ),
                    ));
                    return;
                }
                if done.contains(name) {
                    return;
                }
                if stack.len() >= MAX_DEPTH {
                    result = Err(self.err(x.at, "variables refer to each other too deeply"));
                    return;
                }
                stack.push(name);
                result = self.check_var_cycle(v, stack, done);
                stack.pop();
                done.insert(name);
            }
        });
        result
    }

    fn is_runtime(&self, e: &Expr) -> bool {
        let mut runtime = false;
        // A resource, or one element of a resource loop.
        let resource = |b: &Expr| match &b.kind {
            ExprKind::Index { base, .. } => self.looped_resource(base).is_some(),
            _ => self.resource_symbol(b).is_some_and(|r| r.looped.is_none()),
        };
        let id_property = |n: &str| matches!(n, "id" | "name" | "type" | "apiVersion");
        walk(e, &mut |x| match &x.kind {
            ExprKind::Member { base, name } if resource(base) && !id_property(name) => {
                runtime = true
            }
            // `foo[key]`: a property by a computed or non-identifier key.
            ExprKind::Index { base, index }
                if resource(base)
                    && !matches!(&index.kind, ExprKind::Str { parts, holes } if holes.is_empty() && id_property(&parts[0])) =>
            {
                runtime = true
            }
            ExprKind::MethodCall { base, .. } if self.resource_symbol(base).is_some() => {
                runtime = true
            }
            ExprKind::Call { name, .. } | ExprKind::MethodCall { name, .. }
                if name == "reference" || name.starts_with("list") =>
            {
                runtime = true
            }
            ExprKind::Ident(n) if self.runtime_vars.contains(n.as_str()) => runtime = true,
            _ => {}
        });
        runtime
    }

    // ---- expressions ------------------------------------------------------------------------

    fn lower(&self, e: &Expr) -> Result<Ax, CompileError> {
        Ok(match &e.kind {
            ExprKind::Str { parts, holes } => {
                if holes.is_empty() {
                    Ax::Str(parts[0].clone())
                } else {
                    let mut fmt = String::new();
                    let mut args = vec![Ax::Null];
                    for (i, part) in parts.iter().enumerate() {
                        fmt.push_str(&part.replace('{', "{{").replace('}', "}}"));
                        if let Some(h) = holes.get(i) {
                            fmt.push_str(&format!("{{{i}}}"));
                            args.push(self.lower(h)?);
                        }
                    }
                    args[0] = Ax::Str(fmt);
                    Ax::Call("format".into(), args)
                }
            }
            ExprKind::Int(n) => Ax::Int(*n),
            ExprKind::Bool(b) => Ax::Bool(*b),
            ExprKind::Null => Ax::Null,
            ExprKind::Ident(n) if self.lambdas.borrow().contains(n) => {
                Ax::call("lambdaVariables", vec![Ax::str(n)])
            }
            ExprKind::Ident(n) if self.func_param(n).is_some() => {
                self.func_param(n).unwrap_or(Ax::Null)
            }
            ExprKind::Lambda { .. } => {
                return Err(self.err(
                    e.at,
                    format!(
                        "a lambda is only an argument of {}",
                        LAMBDA_FUNCTIONS.join("(), ") + "()"
                    ),
                ));
            }
            ExprKind::Ident(n) if self.loop_variable(n).is_some() => {
                self.loop_variable(n).unwrap_or(Ax::Null)
            }
            ExprKind::For(_) => {
                return Err(self.err(
                    e.at,
                    "a loop ([for ...]) must be the whole value of a resource, a variable, an output or a property",
                ));
            }
            ExprKind::Ident(n) => match self.symbols.get(n.as_str()) {
                Some(Symbol::Param) => Ax::call("parameters", vec![Ax::str(n)]),
                Some(Symbol::Var(v)) if self.runtime_vars.contains(n.as_str()) => self.lower(v)?,
                Some(Symbol::Var(_)) => Ax::call("variables", vec![Ax::str(n)]),
                Some(Symbol::Resource(i)) => self.whole_resource(&self.resources[*i])?,
                Some(Symbol::Output) | None => {
                    return Err(self.err(e.at, format!("'{n}' is not declared")));
                }
            },
            ExprKind::Call { name, args } => self.function(name, args, e.at)?,
            ExprKind::MethodCall { base, name, args } => {
                if let ExprKind::Ident(ns) = &base.kind
                    && (ns == "sys" || ns == "az")
                    && !self.symbols.contains_key(ns.as_str())
                {
                    return self.function(name, args, e.at);
                }
                let Some(r) = self.resource_symbol(base).filter(|r| r.module.is_none()) else {
                    return Err(self.err(
                        e.at,
                        format!("'{name}()' can only be called on a resource or a namespace"),
                    ));
                };
                if !name.starts_with("list") {
                    return Err(unsupported(
                        self.src,
                        e.at,
                        &format!("resource functions other than list* ('{name}')"),
                    ));
                }
                let mut lowered = vec![self.resource_ref(r)?, Ax::Str(r.api_version.clone())];
                if !args.is_empty() {
                    lowered.truncate(1);
                    for a in args {
                        lowered.push(self.lower(a)?);
                    }
                }
                Ax::Call(name.clone(), lowered)
            }
            ExprKind::Member { base, name } => {
                // `m.outputs.x`, `m[i].outputs.x`: an output's value.
                if let ExprKind::Member {
                    base: inner,
                    name: outputs,
                } = &base.kind
                    && outputs == "outputs"
                    && let Some((r, index)) = self.module_ref(inner)
                {
                    return self.module_output(r, index, name, e.at);
                }
                if let Some((r, index)) = self.module_ref(base) {
                    return self.module_property(r, index, name, e.at);
                }
                if let Some(r) = self.resource_symbol(base) {
                    return self.resource_property(r, name);
                }
                // One resource of a loop: `storage[i].id`.
                if let ExprKind::Index { base: inner, index } = &base.kind
                    && let Some(r) = self.resource_symbol(inner)
                    && let Some(l) = r.looped
                {
                    let position = self.lower(index)?;
                    return self.in_loop(r, l, position, || self.resource_property(r, name));
                }
                Ax::Prop(Box::new(self.lower(base)?), name.clone())
            }
            ExprKind::Index { base, index } => {
                // `m.outputs['x']`.
                if let ExprKind::Member {
                    base: inner,
                    name: outputs,
                } = &base.kind
                    && outputs == "outputs"
                    && let Some((r, i)) = self.module_ref(inner)
                    && let ExprKind::Str { parts, holes } = &index.kind
                    && holes.is_empty()
                {
                    return self.module_output(r, i, &parts[0], e.at);
                }
                if let Some((r, i)) = self.module_ref(base)
                    && i.is_none()
                    && let ExprKind::Str { parts, holes } = &index.kind
                    && holes.is_empty()
                {
                    return self.module_property(r, None, &parts[0], e.at);
                }
                if let Some(r) = self.resource_symbol(base)
                    && let Some(l) = r.looped
                {
                    let position = self.lower(index)?;
                    return self.in_loop(r, l, position, || self.whole_resource(r));
                }
                if let Some(r) = self.resource_symbol(base)
                    && let ExprKind::Str { parts, holes } = &index.kind
                    && holes.is_empty()
                {
                    return self.resource_property(r, &parts[0]);
                }
                Ax::Index(Box::new(self.lower(base)?), Box::new(self.lower(index)?))
            }
            ExprKind::Unary { op, operand } => match (*op, &operand.kind) {
                ("-", ExprKind::Int(n)) => Ax::Int(-n),
                ("-", _) => Ax::call("sub", vec![Ax::Int(0), self.lower(operand)?]),
                _ => Ax::call("not", vec![self.lower(operand)?]),
            },
            ExprKind::Binary { op, left, right } => {
                let (l, r) = (self.lower(left)?, self.lower(right)?);
                let lower_case = |x| Ax::call("toLower", vec![x]);
                match *op {
                    "&&" => Ax::call("and", vec![l, r]),
                    "||" => Ax::call("or", vec![l, r]),
                    "==" => Ax::call("equals", vec![l, r]),
                    "!=" => Ax::call("not", vec![Ax::call("equals", vec![l, r])]),
                    "=~" => Ax::call("equals", vec![lower_case(l), lower_case(r)]),
                    "!~" => Ax::call(
                        "not",
                        vec![Ax::call("equals", vec![lower_case(l), lower_case(r)])],
                    ),
                    "<" => Ax::call("less", vec![l, r]),
                    "<=" => Ax::call("lessOrEquals", vec![l, r]),
                    ">" => Ax::call("greater", vec![l, r]),
                    ">=" => Ax::call("greaterOrEquals", vec![l, r]),
                    "+" => Ax::call("add", vec![l, r]),
                    "-" => Ax::call("sub", vec![l, r]),
                    "*" => Ax::call("mul", vec![l, r]),
                    "/" => Ax::call("div", vec![l, r]),
                    "%" => Ax::call("mod", vec![l, r]),
                    "??" => Ax::call("coalesce", vec![l, r]),
                    other => return Err(self.err(e.at, format!("unknown operator {other}"))),
                }
            }
            ExprKind::Ternary {
                cond,
                then,
                otherwise,
            } => Ax::call(
                "if",
                vec![self.lower(cond)?, self.lower(then)?, self.lower(otherwise)?],
            ),
            ExprKind::Object(props) => Ax::Obj(
                props
                    .iter()
                    .map(|p| {
                        let key = match &p.key_expr {
                            Some(k) => self.lower(k)?,
                            None => Ax::Str(p.key.clone()),
                        };
                        Ok((key, self.lower(&p.value)?))
                    })
                    .collect::<Result<_, CompileError>>()?,
            ),
            ExprKind::Array(items) => Ax::Arr(
                items
                    .iter()
                    .map(|i| self.lower(i))
                    .collect::<Result<_, _>>()?,
            ),
        })
    }

    fn function(&self, name: &str, args: &[Expr], at: usize) -> Result<Ax, CompileError> {
        if let Some(call) = self.user_function_call(name, args, at)? {
            return Ok(call);
        }
        if name == "any" {
            let [arg] = args else {
                return Err(self.err(at, "any() takes one argument"));
            };
            return self.lower(arg);
        }
        if name == "nameof" {
            return match args {
                [
                    Expr {
                        kind: ExprKind::Ident(n) | ExprKind::Member { name: n, .. },
                        ..
                    },
                ] => Ok(Ax::Str(n.clone())),
                _ => Err(self.err(at, "nameof() takes a symbol or a property access")),
            };
        }
        if is_load_function(name) || name.starts_with("load") {
            return self.loads.get(&at).cloned().ok_or_else(|| {
                unsupported(
                    self.src,
                    at,
                    &format!("compile-time file functions ('{name}')"),
                )
            });
        }
        if LAMBDA_FUNCTIONS.contains(&name) {
            return self.lambda_function(name, args, at);
        }
        if !self.scope_function_available(name, args.len()) {
            return Err(self.scope_function_error(at, name, args.len()));
        }
        if !FUNCTIONS.contains(&name) && !name.starts_with("list") {
            return Err(self.err(at, format!("unknown function '{name}()'")));
        }
        let args = args
            .iter()
            .map(|a| self.lower(a))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Ax::Call(name.to_string(), args))
    }

    /// `map(a, x => ...)` and the other functions that take lambdas: `lambda('x', body)`, the
    /// variables read as `lambdaVariables('x')`, as the official compiler writes them.
    fn lambda_function(&self, name: &str, args: &[Expr], at: usize) -> Result<Ax, CompileError> {
        // Arguments (fewest, most), the first lambda's position, its parameters (fewest, most).
        let ((min, max), first, (pmin, pmax)) = match name {
            "filter" | "map" => ((2, 2), 1, (1, 2)),
            "sort" => ((2, 2), 1, (2, 2)),
            "reduce" => ((3, 3), 2, (2, 3)),
            "toObject" | "groupBy" => ((2, 3), 1, (1, 1)),
            _ => ((2, 2), 1, (1, 1)),
        };
        if args.len() < min || args.len() > max {
            let count = if min == max {
                min.to_string()
            } else {
                format!("{min} or {max}")
            };
            return Err(self.err(at, format!("{name}() takes {count} arguments")));
        }
        let mut out = Vec::with_capacity(args.len());
        for (i, a) in args.iter().enumerate() {
            if i < first {
                out.push(self.lower(a)?);
                continue;
            }
            let ExprKind::Lambda { params, body } = &a.kind else {
                return Err(self.err(
                    a.at,
                    format!("argument {} of {name}() must be a lambda (x => ...)", i + 1),
                ));
            };
            if params.len() < pmin || params.len() > pmax {
                let count = if pmin == pmax {
                    pmin.to_string()
                } else {
                    format!("{pmin} or {pmax}")
                };
                return Err(self.err(
                    a.at,
                    format!("the lambda of {name}() takes {count} parameters"),
                ));
            }
            // The official compiler's type check, where the types are evident here: a
            // predicate returns a bool, a key a string.
            let wanted = match (name, i) {
                ("filter" | "sort", _) => Some((Known::Bool, "a bool")),
                ("toObject" | "groupBy", 1) => Some((Known::Str, "a string")),
                _ => None,
            };
            if let Some((want, what)) = wanted {
                let element = element_type(&args[0]);
                let mut vars: Vec<(&str, Option<Known>)> =
                    params.iter().map(|p| (p.as_str(), element)).collect();
                if name != "sort"
                    && let Some(index) = vars.get_mut(1)
                {
                    index.1 = Some(Known::Int);
                }
                if known_type(body, &vars).is_some_and(|t| t != want) {
                    return Err(self.err(
                        body.at,
                        format!("the lambda of {name}() must return {what}"),
                    ));
                }
            }
            out.push(self.lambda(a.at, params, body)?);
        }
        Ok(Ax::Call(name.to_string(), out))
    }

    fn lambda(&self, at: usize, params: &[String], body: &Expr) -> Result<Ax, CompileError> {
        for (i, p) in params.iter().enumerate() {
            if self.symbols.contains_key(p.as_str())
                || self.loop_variable(p).is_some()
                || self.lambdas.borrow().contains(p)
                || params[..i].contains(p)
                || matches!(p.as_str(), "sys" | "az")
            {
                return Err(unsupported(
                    self.src,
                    at,
                    &format!(
                        "lambda variables named like another symbol or variable in scope ('{p}')"
                    ),
                ));
            }
        }
        // What the official compiler refuses: a lambda variable in the arguments of a function
        // ARM must evaluate before the deployment (reference(), list*()), or indexing a
        // resource or module collection.
        let mut names: Vec<String> = self.lambdas.borrow().clone();
        names.extend(params.iter().cloned());
        walk(body, &mut |x| {
            if let ExprKind::Lambda { params, .. } = &x.kind {
                names.extend(params.iter().cloned());
            }
        });
        let reads_lambda_variable = |e: &Expr| {
            let mut found = false;
            walk(e, &mut |x| {
                found |= matches!(&x.kind, ExprKind::Ident(n) if names.contains(n));
            });
            found
        };
        let mut blocked = None;
        walk(body, &mut |x| {
            if blocked.is_some() {
                return;
            }
            match &x.kind {
                ExprKind::Call { name, args }
                    if (name == "reference" || name.starts_with("list"))
                        && args.iter().any(reads_lambda_variable) =>
                {
                    blocked = Some((
                        x.at,
                        format!("lambda variables in the arguments of {name}()"),
                    ));
                }
                ExprKind::MethodCall { base, name, args }
                    if !matches!(&base.kind, ExprKind::Ident(ns) if (ns == "sys" || ns == "az") && !self.symbols.contains_key(ns.as_str()))
                        && args.iter().any(reads_lambda_variable) =>
                {
                    blocked = Some((
                        x.at,
                        format!("lambda variables in the arguments of {name}()"),
                    ));
                }
                ExprKind::Index { base, index }
                    if matches!(&base.kind, ExprKind::Ident(n) if matches!(self.symbols.get(n.as_str()), Some(Symbol::Resource(_))))
                        && reads_lambda_variable(index) =>
                {
                    blocked = Some((
                        index.at,
                        "lambda variables indexing a resource or module collection".to_string(),
                    ));
                }
                _ => {}
            }
        });
        if let Some((at, what)) = blocked {
            return Err(self.err(
                at,
                format!("{what} are not allowed (ARM evaluates them before the deployment)"),
            ));
        }
        let before = self.lambdas.borrow().len();
        self.lambdas.borrow_mut().extend(params.iter().cloned());
        let lowered = self.lower(body);
        self.lambdas.borrow_mut().truncate(before);
        let mut out: Vec<Ax> = params.iter().map(|p| Ax::str(p)).collect();
        out.push(lowered?);
        Ok(Ax::Call("lambda".into(), out))
    }

    // ---- resources --------------------------------------------------------------------------

    /// The whole resource as a value: its full runtime state.
    fn whole_resource(&self, r: &Resource<'a>) -> Result<Ax, CompileError> {
        if r.module.is_some() {
            return Err(self.err(
                r.at,
                format!(
                    "module '{}' is read through its 'name' and 'outputs', not as a whole",
                    r.symbol
                ),
            ));
        }
        self.not_a_collection(r)?;
        Ok(Ax::call(
            "reference",
            vec![
                self.resource_ref(r)?,
                Ax::Str(r.api_version.clone()),
                Ax::str("full"),
            ],
        ))
    }

    /// What `reference()` and `list*()` name a resource by: its id, or in a `languageVersion`
    /// 2.0 template its symbolic name (`'sym'`, or `format('sym[{0}]', i)` for one resource of
    /// a loop, at the position its loop scope holds).
    fn resource_ref(&self, r: &Resource<'a>) -> Result<Ax, CompileError> {
        if !self.symbolic {
            return self.resource_id(r);
        }
        if r.looped.is_none() {
            return Ok(Ax::Str(r.symbol.to_string()));
        }
        let loops = self.loops.borrow();
        let Some(scope) = loops
            .iter()
            .rev()
            .find(|s| s.resource.as_deref() == Some(r.symbol))
        else {
            return Err(self.err(
                r.at,
                format!(
                    "'{}' is a collection: read one resource of it ('{}[i]')",
                    r.symbol, r.symbol
                ),
            ));
        };
        Ok(Ax::call(
            "format",
            vec![
                Ax::Str(format!("{}[{{0}}]", r.symbol)),
                scope.position.clone(),
            ],
        ))
    }

    /// A looped resource is read one item at a time (`storage[i].id`), or from inside its
    /// own loop.
    fn not_a_collection(&self, r: &Resource<'a>) -> Result<(), CompileError> {
        match r.looped {
            Some(_) if !self.in_loop_of(r) => Err(unsupported(
                self.src,
                r.at,
                &format!(
                    "reads of a whole resource collection ('{}' without an index)",
                    r.symbol
                ),
            )),
            _ => Ok(()),
        }
    }

    fn in_loop_of(&self, r: &Resource<'a>) -> bool {
        self.loops
            .borrow()
            .iter()
            .any(|s| s.resource.as_deref() == Some(r.symbol))
    }

    /// What a loop variable stands for, if `name` is one.
    fn loop_variable(&self, name: &str) -> Option<Ax> {
        self.loops.borrow().iter().rev().find_map(|s| {
            if s.item.as_deref() == Some(name) {
                Some(Ax::Index(
                    Box::new(s.source.clone()),
                    Box::new(s.position.clone()),
                ))
            } else if s.index.as_deref() == Some(name) {
                Some(s.position.clone())
            } else {
                None
            }
        })
    }

    /// Runs `f` with the variables of the loop of resource `r` (with loop `l`) standing for
    /// the item at `position`.
    fn in_loop<T>(
        &self,
        r: &Resource<'a>,
        l: &ResourceLoop,
        position: Ax,
        f: impl FnOnce() -> Result<T, CompileError>,
    ) -> Result<T, CompileError> {
        let source = self.lower(&l.source)?;
        self.with_scope(
            Some(r.symbol),
            l.item.clone(),
            l.index.clone(),
            source,
            position,
            f,
        )
    }

    fn with_scope<T>(
        &self,
        resource: Option<&str>,
        item: Option<String>,
        index: Option<String>,
        source: Ax,
        position: Ax,
        f: impl FnOnce() -> Result<T, CompileError>,
    ) -> Result<T, CompileError> {
        self.loops.borrow_mut().push(LoopScope {
            resource: resource.map(str::to_string),
            item,
            index,
            source,
            position,
        });
        let result = f();
        self.loops.borrow_mut().pop();
        result
    }

    /// A value at a JSON position (a variable, an output, a resource property): like `lower`,
    /// and a property whose value is a loop becomes a `copy` entry of its object.
    fn lower_json(&self, e: &Expr) -> Result<Ax, CompileError> {
        match &e.kind {
            ExprKind::Object(props) => {
                let mut copies = Vec::new();
                let mut out = Vec::new();
                for p in props {
                    let key = match &p.key_expr {
                        Some(k) => self.lower(k)?,
                        None => Ax::Str(p.key.clone()),
                    };
                    if let ExprKind::For(l) = &p.value.kind {
                        if p.key_expr.is_some() {
                            return Err(self.err(p.at, "a property loop needs a literal name"));
                        }
                        let (count, input) =
                            self.loop_body(l, Ax::call("copyIndex", vec![Ax::Str(p.key.clone())]))?;
                        copies.push(Ax::Obj(vec![
                            (Ax::str("name"), Ax::Str(p.key.clone())),
                            (Ax::str("count"), count),
                            (Ax::str("input"), input),
                        ]));
                    } else {
                        out.push((key, self.lower_json(&p.value)?));
                    }
                }
                if !copies.is_empty() {
                    out.insert(0, (Ax::str("copy"), Ax::Arr(copies)));
                }
                Ok(Ax::Obj(out))
            }
            ExprKind::Array(items) => Ok(Ax::Arr(
                items
                    .iter()
                    .map(|i| self.lower_json(i))
                    .collect::<Result<_, _>>()?,
            )),
            _ => self.lower(e),
        }
    }

    /// A loop's `count` and its body at `position`.
    fn loop_body(&self, l: &ForLoop, position: Ax) -> Result<(Ax, Ax), CompileError> {
        if let Some(c) = &l.condition {
            return Err(unsupported(
                self.src,
                c.at,
                "conditions in loops other than resource loops",
            ));
        }
        let source = self.lower(&l.source)?;
        let count = Ax::call("length", vec![source.clone()]);
        let input = self.with_scope(
            None,
            l.item.clone(),
            l.index.clone(),
            source,
            position,
            || self.lower_json(&l.body),
        )?;
        Ok((count, input))
    }

    fn resource_property(&self, r: &Resource<'a>, name: &str) -> Result<Ax, CompileError> {
        if r.module.is_some() {
            return self.module_property(r, None, name, r.at);
        }
        self.not_a_collection(r)?;
        Ok(match name {
            "id" => self.resource_id(r)?,
            "name" => self.lower(r.name)?,
            "type" => Ax::Str(r.ty.clone()),
            "apiVersion" => Ax::Str(r.api_version.clone()),
            "properties" if self.symbolic => Ax::call("reference", vec![self.resource_ref(r)?]),
            "properties" => Ax::call(
                "reference",
                vec![self.resource_id(r)?, Ax::Str(r.api_version.clone())],
            ),
            other => Ax::Prop(
                Box::new(Ax::call(
                    "reference",
                    vec![
                        self.resource_ref(r)?,
                        Ax::Str(r.api_version.clone()),
                        Ax::str("full"),
                    ],
                )),
                other.to_string(),
            ),
        })
    }

    /// The name segments of a resource, one per level of its type.
    fn segments(&self, r: &Resource<'a>) -> Result<Vec<Ax>, CompileError> {
        if let Some(p) = r.parent {
            let parent = self.resource(p);
            let mut segs = match (r.parent_index, parent.looped) {
                // The parent's name segments at the element `index` of its loop.
                (Some(index), Some(l)) => {
                    let position = self.lower(index)?;
                    self.in_loop(parent, l, position, || self.segments(parent))?
                }
                _ => self.segments(parent)?,
            };
            segs.push(self.lower(r.name)?);
            return Ok(segs);
        }
        let levels = r.ty.split('/').count() - 1;
        let name = self.lower(r.name)?;
        if levels == 1 {
            return Ok(vec![name]);
        }
        Ok((0..levels)
            .map(|i| {
                Ax::Index(
                    Box::new(Ax::call("split", vec![name.clone(), Ax::str("/")])),
                    Box::new(Ax::Int(i as i64)),
                )
            })
            .collect())
    }

    /// The `name` a resource is deployed under.
    fn full_name(&self, r: &Resource<'a>) -> Result<Ax, CompileError> {
        if r.parent.is_none() {
            return self.lower(r.name);
        }
        let segs = self.segments(r)?;
        let fmt = (0..segs.len())
            .map(|i| format!("{{{i}}}"))
            .collect::<Vec<_>>()
            .join("/");
        let mut args = vec![Ax::Str(fmt)];
        args.extend(segs);
        Ok(Ax::Call("format".into(), args))
    }

    fn resource_id(&self, r: &Resource<'a>) -> Result<Ax, CompileError> {
        if r.module.is_some() {
            return self.module_id(r);
        }
        let mut args = vec![Ax::Str(r.ty.clone())];
        args.extend(self.segments(r)?);
        Ok(match self.place(r)? {
            Place::Here => self.id_here(args),
            Place::Elsewhere(function, leading) => {
                let mut all = leading;
                all.extend(args);
                Ax::call(function, all)
            }
            Place::Extension(scope) => {
                args.insert(0, scope);
                Ax::call("extensionResourceId", args)
            }
        })
    }

    /// The id of a resource at the template's own scope: `resourceId(type, names...)` in a
    /// resource group, `subscriptionResourceId(...)`, `extensionResourceId(managementGroup().id,
    /// ...)`, `tenantResourceId(...)`.
    fn id_here(&self, args: Vec<Ax>) -> Ax {
        match self.target {
            Scope::ResourceGroup => Ax::call("resourceId", args),
            Scope::Subscription => Ax::call("subscriptionResourceId", args),
            Scope::ManagementGroup => {
                let mut all = vec![Ax::Prop(
                    Box::new(Ax::call("managementGroup", vec![])),
                    "id".into(),
                )];
                all.extend(args);
                Ax::call("extensionResourceId", all)
            }
            Scope::Tenant => Ax::call("tenantResourceId", args),
        }
    }

    /// The id of a module's nested deployment, at the scope it deploys to.
    fn module_id(&self, r: &Resource<'a>) -> Result<Ax, CompileError> {
        let args = vec![Ax::Str(r.ty.clone()), self.lower(r.name)?];
        let p = self.module_placement(r)?;
        let with = |function: &str, leading: Vec<Ax>| {
            let mut all = leading;
            all.extend(args.clone());
            Ax::call(function, all)
        };
        Ok(match p.scope {
            Scope::Tenant => with("tenantResourceId", vec![]),
            Scope::ManagementGroup => match p.management_group {
                Some(mg) => with("extensionResourceId", vec![management_group_id(mg)]),
                None => with(
                    "extensionResourceId",
                    vec![Ax::Prop(
                        Box::new(Ax::call("managementGroup", vec![])),
                        "id".into(),
                    )],
                ),
            },
            Scope::Subscription => with(
                "subscriptionResourceId",
                p.subscription.into_iter().collect(),
            ),
            Scope::ResourceGroup => match (p.subscription, p.group) {
                (None, None) => with("resourceId", vec![]),
                (sub, Some(rg)) => with(
                    "extensionResourceId",
                    vec![group_id(sub.unwrap_or_else(subscription_id), rg)],
                ),
                (Some(_), None) => unreachable!("resourceGroup(sub, rg) names both"),
            },
        })
    }

    /// Where a resource lives: its `scope`, or its parent's. A resource deployed here lives at
    /// the template's scope, at the tenant (`scope: tenant()`) or on another resource of this
    /// file (an extension resource); an existing one may live in any scope.
    fn place(&self, r: &Resource<'a>) -> Result<Place, CompileError> {
        let Some(scope) = r.scope else {
            // A child lives where its parent lives.
            let Some(p) = r.parent else {
                return Ok(Place::Here);
            };
            let parent = self.resource(p);
            return match (r.parent_index, parent.looped) {
                (Some(index), Some(l)) => {
                    let position = self.lower(index)?;
                    self.in_loop(parent, l, position, || self.place(parent))
                }
                _ => self.place(parent),
            };
        };
        if let ExprKind::Call { name, args } = &scope.kind
            && matches!(
                name.as_str(),
                "resourceGroup" | "subscription" | "managementGroup" | "tenant"
            )
        {
            let place = self.scope_call(scope.at, name, args)?;
            let deployable = match &place {
                Place::Here => true,
                Place::Elsewhere(f, leading) => *f == "tenantResourceId" && leading.is_empty(),
                Place::Extension(_) => false,
            };
            if !r.existing && !deployable {
                return Err(unsupported(
                    self.src,
                    scope.at,
                    "scopes other than a resource of this file",
                ));
            }
            return Ok(place);
        }
        match self.resource_symbol(scope) {
            Some(target) if target.module.is_some() => Err(self.err(
                scope.at,
                "the scope of a resource is a resource or a resource group, not a module",
            )),
            // An existing resource in a resource group this subscription template deploys.
            Some(target) if target.ty.eq_ignore_ascii_case(RESOURCE_GROUP_TYPE) => {
                if !r.existing
                    || self.target != Scope::Subscription
                    || target.scope.is_some()
                    || target.looped.is_some()
                {
                    return Err(unsupported(
                        self.src,
                        scope.at,
                        "resource scopes naming a resource group resource, other than for an existing resource in a subscription-scope template,",
                    ));
                }
                Ok(Place::Elsewhere(
                    "extensionResourceId",
                    vec![group_id(subscription_id(), self.lower(target.name)?)],
                ))
            }
            Some(target) => Ok(Place::Extension(self.resource_id(target)?)),
            None => Err(unsupported(
                self.src,
                scope.at,
                "scopes other than a resource of this file",
            )),
        }
    }

    /// A scope function as a resource's `scope`, where the template's scope allows it (the
    /// official compiler's overloads).
    fn scope_call(&self, at: usize, name: &str, args: &[Expr]) -> Result<Place, CompileError> {
        let lowered = args
            .iter()
            .map(|a| self.lower(a))
            .collect::<Result<Vec<_>, _>>()?;
        let here = |s: Scope| self.target == s;
        let place = match (name, lowered.as_slice()) {
            ("resourceGroup", []) if here(Scope::ResourceGroup) => Place::Here,
            ("resourceGroup", [rg]) if here(Scope::ResourceGroup) || here(Scope::Subscription) => {
                Place::Elsewhere(
                    "extensionResourceId",
                    vec![group_id(subscription_id(), rg.clone())],
                )
            }
            ("resourceGroup", [sub, rg]) => Place::Elsewhere(
                "extensionResourceId",
                vec![group_id(sub.clone(), rg.clone())],
            ),
            ("subscription", []) if here(Scope::Subscription) => Place::Here,
            ("subscription", []) if here(Scope::ResourceGroup) => {
                Place::Elsewhere("subscriptionResourceId", vec![])
            }
            ("subscription", [sub]) => {
                Place::Elsewhere("subscriptionResourceId", vec![sub.clone()])
            }
            ("managementGroup", []) if here(Scope::ManagementGroup) => Place::Here,
            ("managementGroup", [mg]) => {
                Place::Elsewhere("extensionResourceId", vec![management_group_id(mg.clone())])
            }
            ("tenant", []) if here(Scope::Tenant) => Place::Here,
            ("tenant", []) => Place::Elsewhere("tenantResourceId", vec![]),
            _ => return Err(self.scope_function_error(at, name, args.len())),
        };
        Ok(place)
    }

    /// Whether the template's scope has an overload of `name` with `arity` arguments (the scope
    /// functions have some at some target scopes only; every other function is available).
    fn scope_function_available(&self, name: &str, arity: usize) -> bool {
        match (name, arity) {
            ("resourceGroup", 0) => self.target == Scope::ResourceGroup,
            ("resourceGroup", 1) => {
                matches!(self.target, Scope::ResourceGroup | Scope::Subscription)
            }
            ("subscription", 0) => {
                matches!(self.target, Scope::ResourceGroup | Scope::Subscription)
            }
            ("managementGroup", 0) => self.target == Scope::ManagementGroup,
            _ => true,
        }
    }

    /// A scope function called where the template's scope has no such overload.
    fn scope_function_error(&self, at: usize, name: &str, arity: usize) -> CompileError {
        self.err(
            at,
            format!(
                "{name}() with {arity} argument{} is not available in a template with targetScope '{}'",
                if arity == 1 { "" } else { "s" },
                self.target.name()
            ),
        )
    }

    /// The property that tells ARM where a deployed resource goes: the resource it extends, or
    /// "/" for a tenant resource deployed from another scope.
    fn scope_property(&self, r: &Resource<'a>) -> Result<Option<Ax>, CompileError> {
        if r.scope.is_none() && r.parent.is_none() {
            return Ok(None);
        }
        Ok(match self.place(r)? {
            Place::Extension(id) => Some(id),
            Place::Elsewhere("tenantResourceId", leading)
                if leading.is_empty() && self.target != Scope::Tenant =>
            {
                Some(Ax::str("/"))
            }
            _ => None,
        })
    }

    /// In a `languageVersion` 2.0 template, where an (existing) resource in another resource
    /// group or subscription is: `subscriptionId` and `resourceGroup`, from the scope function
    /// it or its ancestor names.
    fn scope_properties(&self, r: &Resource<'a>) -> Result<Vec<(&'static str, Ax)>, CompileError> {
        let mut at = r;
        let mut indexed = false;
        let scope = loop {
            if let Some(scope) = at.scope {
                break scope;
            }
            let Some(p) = at.parent else {
                return Ok(Vec::new());
            };
            indexed |= at.parent_index.is_some();
            at = self.resource(p);
        };
        let ExprKind::Call { name, args } = &scope.kind else {
            if self
                .resource_symbol(scope)
                .is_some_and(|t| t.ty.eq_ignore_ascii_case(RESOURCE_GROUP_TYPE))
            {
                return Err(unsupported(
                    self.src,
                    scope.at,
                    "resource scopes naming a resource group resource (in languageVersion 2.0 templates)",
                ));
            }
            return Ok(Vec::new());
        };
        if indexed && !args.is_empty() {
            return Err(unsupported(
                self.src,
                scope.at,
                "children of resource loops in another scope (in languageVersion 2.0 templates)",
            ));
        }
        let lowered = args
            .iter()
            .map(|a| self.lower(a))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(match (name.as_str(), lowered.as_slice()) {
            ("resourceGroup", [rg]) => vec![("resourceGroup", rg.clone())],
            ("resourceGroup", [sub, rg]) => {
                vec![
                    ("subscriptionId", sub.clone()),
                    ("resourceGroup", rg.clone()),
                ]
            }
            ("subscription", []) if self.target == Scope::ResourceGroup => {
                vec![("subscriptionId", subscription_id())]
            }
            ("subscription", [sub]) => vec![("subscriptionId", sub.clone())],
            ("managementGroup", [_]) => {
                return Err(unsupported(
                    self.src,
                    scope.at,
                    "resources in another management group (in languageVersion 2.0 templates)",
                ));
            }
            _ => Vec::new(),
        })
    }

    /// Resources `e` refers to, directly or through variables.
    fn references(&self, e: &Expr, out: &mut BTreeSet<&'a str>) {
        self.references_in(e, &mut Vec::new(), out, &mut HashSet::new());
    }

    /// Resources `e` refers to; names in `bound` are loop variables, not symbols.
    fn references_in(
        &self,
        e: &Expr,
        bound: &mut Vec<String>,
        out: &mut BTreeSet<&'a str>,
        seen: &mut HashSet<&'a str>,
    ) {
        walk_free(e, bound, &mut |x| {
            if let ExprKind::Ident(n) = &x.kind {
                match self.symbols.get_key_value(n.as_str()) {
                    Some((k, Symbol::Resource(_))) => {
                        out.insert(*k);
                    }
                    Some((k, Symbol::Var(v))) if seen.insert(*k) => {
                        self.references_in(v, &mut Vec::new(), out, seen)
                    }
                    _ => {}
                }
            }
        });
    }

    /// The resources `e` makes its declaration depend on, in source order: a resource, or one
    /// element of a resource loop (`ip[0]`, `nic[i]`). `bound[..own]` are the variables of the
    /// declaration's own resource loop (an index may use them), the rest are variables of loops
    /// inside it (an index using them is a dependency on the whole collection). Through a
    /// variable, a dependency is `indirect`: its index is read where the variable is declared.
    fn deps_in(
        &self,
        e: &'a Expr,
        bound: &mut Vec<String>,
        own: usize,
        indirect: bool,
        out: &mut Vec<Dep<'a>>,
        seen: &mut HashSet<&'a str>,
    ) {
        match &e.kind {
            ExprKind::Ident(n) if bound.contains(n) => {}
            ExprKind::Ident(n) => match self.symbols.get_key_value(n.as_str()) {
                Some((k, Symbol::Resource(_))) => out.push(Dep {
                    symbol: k,
                    index: None,
                    indirect,
                    weak: false,
                }),
                Some((k, Symbol::Var(v))) if seen.insert(*k) => {
                    self.deps_in(v, &mut Vec::new(), 0, true, out, seen)
                }
                _ => {}
            },
            ExprKind::Index { base, index }
                if matches!(&base.kind, ExprKind::Ident(n) if !bound.contains(n))
                    && self.looped_resource(base).is_some() =>
            {
                let symbol = self.looped_resource(base).expect("matched");
                let mut inner = false;
                walk(index, &mut |x| {
                    if let ExprKind::Ident(n) = &x.kind {
                        inner |= bound[own..].contains(n);
                    }
                });
                out.push(Dep {
                    symbol,
                    index: (!inner).then_some(&**index),
                    indirect,
                    weak: false,
                });
                self.deps_in(index, bound, own, indirect, out, seen);
            }
            ExprKind::Member { base, name }
                if matches!(name.as_str(), "id" | "name" | "type" | "apiVersion") =>
            {
                self.weak_deps_in(base, bound, own, indirect, out, seen)
            }
            ExprKind::Index { base, index }
                if matches!(&index.kind, ExprKind::Str { parts, holes }
                    if holes.is_empty() && matches!(parts[0].as_str(), "id" | "name" | "type" | "apiVersion")) =>
            {
                self.weak_deps_in(base, bound, own, indirect, out, seen)
            }
            ExprKind::MethodCall { base, args, .. } => {
                self.weak_deps_in(base, bound, own, indirect, out, seen);
                for a in args {
                    self.deps_in(a, bound, own, indirect, out, seen);
                }
            }
            ExprKind::For(l) => {
                self.deps_in(&l.source, bound, own, indirect, out, seen);
                let before = bound.len();
                bound.extend(l.item.iter().chain(&l.index).cloned());
                if let Some(c) = &l.condition {
                    self.deps_in(c, bound, own, indirect, out, seen);
                }
                self.deps_in(&l.body, bound, own, indirect, out, seen);
                bound.truncate(before);
            }
            _ => each_child(e, &mut |c| self.deps_in(c, bound, own, indirect, out, seen)),
        }
    }

    /// `deps_in` for an expression whose own resource (`r` or `r[i]`) is read weakly.
    fn weak_deps_in(
        &self,
        e: &'a Expr,
        bound: &mut Vec<String>,
        own: usize,
        indirect: bool,
        out: &mut Vec<Dep<'a>>,
        seen: &mut HashSet<&'a str>,
    ) {
        let start = out.len();
        self.deps_in(e, bound, own, indirect, out, seen);
        let direct = match &e.kind {
            ExprKind::Ident(_) => true,
            ExprKind::Index { base, .. } => matches!(&base.kind, ExprKind::Ident(_)),
            _ => false,
        };
        if direct
            && let Some(d) = out.get_mut(start)
            && self
                .resource_symbol(e)
                .or_else(|| match &e.kind {
                    ExprKind::Index { base, .. } => self.resource_symbol(base),
                    _ => None,
                })
                .is_some_and(|r| r.symbol == d.symbol)
        {
            d.weak = true;
        }
    }

    /// The symbol of the resource loop `e` names.
    fn looped_resource(&self, e: &Expr) -> Option<&'a str> {
        let ExprKind::Ident(n) = &e.kind else {
            return None;
        };
        match self.symbols.get_key_value(n.as_str()) {
            Some((k, Symbol::Resource(i))) if self.resources[*i].looped.is_some() => Some(*k),
            _ => None,
        }
    }

    /// What a declaration's own dependencies are: its parent, and every resource its loop,
    /// condition and body refer to (explicit `dependsOn` entries included).
    fn direct_deps(&self, r: &Resource<'a>, indirect: bool) -> Vec<Dep<'a>> {
        let mut out = Vec::new();
        let mut seen = HashSet::new();
        if let Some(p) = r.parent {
            out.push(Dep {
                symbol: self.resource(p).symbol,
                index: r.parent_index,
                indirect,
                weak: true,
            });
            if let Some(i) = r.parent_index {
                let mut bound = self.own_loop_variables(r);
                let own = bound.len();
                self.deps_in(i, &mut bound, own, indirect, &mut out, &mut seen);
            }
        }
        if let Some(l) = r.looped {
            self.deps_in(&l.source, &mut Vec::new(), 0, indirect, &mut out, &mut seen);
        }
        if let Some(c) = r.condition {
            self.deps_in(c, &mut Vec::new(), 0, indirect, &mut out, &mut seen);
        }
        let mut bound = self.own_loop_variables(r);
        let own = bound.len();
        if let Some(c) = r.looped.and_then(|l| l.condition.as_ref()) {
            self.deps_in(c, &mut bound, own, indirect, &mut out, &mut seen);
        }
        for p in r.body {
            if p.key != "parent" {
                let start = out.len();
                self.deps_in(&p.value, &mut bound, own, indirect, &mut out, &mut seen);
                if p.key == "scope" && p.key_expr.is_none() {
                    out[start..].iter_mut().for_each(|d| d.weak = true);
                }
            }
        }
        out
    }

    fn own_loop_variables(&self, r: &Resource<'a>) -> Vec<String> {
        r.looped
            .iter()
            .flat_map(|l| l.item.iter().chain(&l.index).cloned())
            .collect()
    }

    fn depends_on(&self, r: &Resource<'a>) -> Result<Vec<Value>, CompileError> {
        if let Some(explicit) = r.depends_on {
            let ExprKind::Array(items) = &explicit.kind else {
                return Err(self.err(explicit.at, "'dependsOn' must be an array of resources"));
            };
            for item in items {
                let target = match &item.kind {
                    ExprKind::Index { base, .. } => self.looped_resource(base),
                    _ => self.resource_symbol(item).map(|t| t.symbol),
                };
                if target.is_none() {
                    return Err(self.err(
                        item.at,
                        "'dependsOn' entries must be resources or elements of resource loops",
                    ));
                }
            }
        }
        // Existing resources are not deployed: what they refer to is, transitively.
        let mut deployed = Vec::new();
        for d in self.direct_deps(r, false) {
            self.deployed_dependencies(d, &mut deployed, 0);
        }
        // By resource; a dependency on a whole loop covers those on its elements; an element
        // written twice is listed twice, as the official compiler lists it.
        let mut by_symbol: std::collections::BTreeMap<(SortKey, &str), Vec<Dep<'a>>> =
            Default::default();
        for d in deployed {
            if d.symbol == r.symbol {
                continue;
            }
            let group = by_symbol.entry((sort_key(d.symbol), d.symbol)).or_default();
            if !group.iter().any(|g| g.same(&d)) {
                group.push(d);
            }
        }
        let mut out = Vec::new();
        for ((_, symbol), group) in by_symbol {
            let target = self.resource(symbol);
            if group.iter().any(|d| d.index.is_none()) || target.looped.is_none() {
                // A dependency on a loop is on the whole collection, by its copy name.
                out.push(match target.looped {
                    Some(_) => Value::from(target.symbol),
                    None if self.symbolic => Value::from(target.symbol),
                    None => self.resource_id(target)?.to_json(),
                });
                continue;
            }
            let l = target.looped.expect("looped");
            for d in group {
                let index = d.index.expect("indexed");
                let id = |e: &Self| {
                    let position = e.lower(index)?;
                    e.in_loop(target, l, position, || e.resource_ref(target))
                };
                let id = if d.indirect {
                    self.outside_loops(|| id(self))?
                } else {
                    id(self)?
                };
                out.push(id.to_json());
            }
        }
        Ok(out)
    }

    /// Runs `f` with no loop variables bound (for an expression read where it is declared).
    fn outside_loops<T>(&self, f: impl FnOnce() -> T) -> T {
        let saved = self.loops.replace(Vec::new());
        let result = f();
        self.loops.replace(saved);
        result
    }

    /// `d` itself when it is deployed here; for an existing resource, what its declaration
    /// refers to (its parent, its name, its scope), as it is not deployed.
    fn deployed_dependencies(&self, d: Dep<'a>, out: &mut Vec<Dep<'a>>, depth: usize) {
        let r = self.resource(d.symbol);
        if !r.existing || (self.symbolic && !d.weak) {
            out.push(d);
            return;
        }
        if depth > MAX_DEPTH {
            return;
        }
        for t in self.direct_deps(r, true) {
            if t.symbol != r.symbol {
                self.deployed_dependencies(t, out, depth + 1);
            }
        }
    }

    // ---- the template -----------------------------------------------------------------------

    fn write(&self, stmts: &[Stmt]) -> Result<Value, CompileError> {
        let mut metadata = Map::new();
        metadata.insert(
            "_generator".into(),
            json!({"name": "multicloud-bicep", "version": env!("CARGO_PKG_VERSION")}),
        );
        let mut parameters = Map::new();
        let mut variables = Map::new();
        let mut resources = Vec::new();
        // The official compiler writes modules after all resources.
        let mut modules = Vec::new();
        let mut outputs = Map::new();
        let mut symbolic_resources = Map::new();
        let mut symbolic_modules = Map::new();
        let exported = self.exported_variables(stmts)?;
        if !exported.is_empty() {
            metadata.insert("__bicep_exported_variables!".into(), Value::Array(exported));
        }
        for s in stmts {
            match &s.kind {
                // Read before (`scope::declared`).
                StmtKind::TargetScope(_) => {}
                StmtKind::Metadata { name, value } => {
                    self.no_decorators(s)?;
                    metadata.insert(name.clone(), self.constant(value)?);
                }
                StmtKind::Param {
                    name, ty, default, ..
                } => {
                    let ty = self.declared_type(ty)?;
                    parameters.insert(name.clone(), self.parameter(s, ty, default.as_ref())?);
                }
                // Written in their own sections (`definitions`, `functions`).
                StmtKind::Type { .. } | StmtKind::Func { .. } => {}
                StmtKind::Var { name, value, .. } => {
                    self.description_metadata(&s.decorators, &["description", "export"])?;
                    if self.runtime_vars.contains(name.as_str()) {
                        // Inlined where it is used (ARM evaluates no `reference` in variables);
                        // a loop cannot be (the official compiler rejects most of these, BCP182).
                        if matches!(value.kind, ExprKind::For(_)) {
                            return Err(unsupported(
                                self.src,
                                value.at,
                                "variable loops over values known only during the deployment",
                            ));
                        }
                    } else if let ExprKind::For(l) = &value.kind {
                        // A variable loop: an entry of `variables.copy`.
                        let (count, input) =
                            self.loop_body(l, Ax::call("copyIndex", vec![Ax::Str(name.clone())]))?;
                        let entry = json!({"name": name, "count": count.to_json(), "input": input.to_json()});
                        if let Value::Array(copies) = variables
                            .entry("copy")
                            .or_insert_with(|| Value::Array(Vec::new()))
                        {
                            copies.push(entry);
                        }
                    } else {
                        variables.insert(name.clone(), self.lower_json(value)?.to_json());
                    }
                }
                StmtKind::Resource { name, .. } => {
                    let Some(Symbol::Resource(i)) = self.symbols.get(name.as_str()) else {
                        unreachable!("declared")
                    };
                    let r = &self.resources[*i];
                    if self.symbolic {
                        let Value::Object(mut o) = self.resource_json(r)? else {
                            unreachable!("an object")
                        };
                        if r.existing {
                            // After its copy and condition, before its type, as the official
                            // compiler writes it.
                            let (head, tail): (Vec<_>, Vec<_>) = o
                                .into_iter()
                                .partition(|(k, _)| matches!(k.as_str(), "copy" | "condition"));
                            o = head
                                .into_iter()
                                .chain([("existing".to_string(), Value::Bool(true))])
                                .chain(tail)
                                .collect();
                        }
                        symbolic_resources.insert(r.symbol.to_string(), Value::Object(o));
                    } else if r.existing {
                        // Still checked: its id must be expressible.
                        self.resource_id(r)?;
                    } else {
                        resources.push(self.resource_json(r)?);
                    }
                }
                StmtKind::Module { name, .. } => {
                    let Some(Symbol::Resource(i)) = self.symbols.get(name.as_str()) else {
                        unreachable!("declared")
                    };
                    let r = &self.resources[*i];
                    if self.symbolic {
                        symbolic_modules.insert(r.symbol.to_string(), self.resource_json(r)?);
                    } else {
                        modules.push(self.resource_json(r)?);
                    }
                }
                StmtKind::Output { name, ty, value } => {
                    let mut o = self.declared_type(ty)?;
                    if let ExprKind::For(l) = &value.kind {
                        // An output loop: `copy` with copyIndex().
                        let (count, input) = self.loop_body(l, Ax::call("copyIndex", vec![]))?;
                        o.insert(
                            "copy".into(),
                            json!({"count": count.to_json(), "input": input.to_json()}),
                        );
                    } else {
                        o.insert("value".into(), self.lower_json(value)?.to_json());
                    }
                    let meta = self.description_metadata(&s.decorators, &["description"])?;
                    if !meta.is_empty() {
                        o.insert("metadata".into(), Value::Object(meta));
                    }
                    if outputs.insert(name.clone(), Value::Object(o)).is_some() {
                        return Err(
                            self.err(s.at, format!("output '{name}' is declared more than once"))
                        );
                    }
                }
            }
        }
        if !self.load_vars.is_empty() {
            let mut all = Map::new();
            for (name, value) in &self.load_vars {
                all.insert(name.clone(), value.clone());
            }
            all.extend(variables);
            variables = all;
        }
        let mut t = Map::new();
        t.insert("$schema".into(), Value::from(self.target.schema()));
        if self.symbolic {
            t.insert("languageVersion".into(), Value::from("2.0"));
        }
        t.insert("contentVersion".into(), Value::from("1.0.0.0"));
        t.insert("metadata".into(), Value::Object(metadata));
        let definitions = self.definitions(stmts)?;
        if !definitions.is_empty() {
            t.insert("definitions".into(), Value::Object(definitions));
        }
        if let Some(functions) = self.functions(stmts)? {
            t.insert("functions".into(), functions);
        }
        if !parameters.is_empty() {
            t.insert("parameters".into(), Value::Object(parameters));
        }
        if !variables.is_empty() {
            t.insert("variables".into(), Value::Object(variables));
        }
        if self.symbolic {
            symbolic_resources.extend(symbolic_modules);
            t.insert("resources".into(), Value::Object(symbolic_resources));
        } else {
            resources.extend(modules);
            t.insert("resources".into(), Value::Array(resources));
        }
        if !outputs.is_empty() {
            t.insert("outputs".into(), Value::Object(outputs));
        }
        Ok(Value::Object(t))
    }

    /// The ARM type of a declaration; only the plain types compile to classic templates.
    fn plain_type<'t>(&self, ty: &'t TypeExpr) -> Result<&'t str, CompileError> {
        if ty.plain {
            return Ok(&ty.text);
        }
        let construct = if ty.base == "resource" {
            "resource-typed declarations".to_string()
        } else if ty.nullable || ty.array || ty.text.contains('|') {
            "nullable, union and typed-array types".to_string()
        } else if ["string", "int", "bool", "object", "array"].contains(&ty.base.as_str()) {
            format!("literal and object types ('{}')", ty.text)
        } else {
            format!(
                "the type '{}' (user-defined or typed declarations)",
                ty.text
            )
        };
        Err(unsupported(self.src, ty.at, &construct))
    }

    /// A decorator argument or metadata value: a literal, evaluated at compile time.
    fn constant(&self, e: &Expr) -> Result<Value, CompileError> {
        let ax = self.lower(e)?;
        fn literal(ax: &Ax) -> bool {
            match ax {
                Ax::Str(_) | Ax::Int(_) | Ax::Bool(_) | Ax::Null => true,
                Ax::Obj(p) => p.iter().all(|(_, v)| literal(v)),
                Ax::Arr(i) => i.iter().all(literal),
                _ => false,
            }
        }
        if !literal(&ax) {
            return Err(self.err(e.at, "expected a literal value"));
        }
        Ok(match ax {
            Ax::Str(s) => Value::String(s),
            other => other.to_json(),
        })
    }

    fn no_decorators(&self, s: &Stmt) -> Result<(), CompileError> {
        match s.decorators.first() {
            Some(d) => Err(self.err(d.at, format!("decorator '@{}' is not allowed here", d.name))),
            None => Ok(()),
        }
    }

    /// `@description` (and `@metadata`) as a `metadata` object; any decorator outside
    /// `allowed` is an error.
    fn description_metadata(
        &self,
        decorators: &[Decorator],
        allowed: &[&str],
    ) -> Result<Map<String, Value>, CompileError> {
        let mut meta = Map::new();
        // `@metadata` first: `@description` wins over a `description` inside it.
        let mut decorators: Vec<&Decorator> = decorators.iter().collect();
        decorators.sort_by_key(|d| d.name != "metadata");
        for d in decorators {
            if !allowed.contains(&d.name.as_str()) {
                return Err(self.decorator_error(d));
            }
            match d.name.as_str() {
                "description" => {
                    meta.insert("description".into(), self.string_arg(d)?);
                }
                "metadata" => {
                    let Value::Object(m) = self.single_arg(d)? else {
                        return Err(self.err(d.at, "@metadata takes an object"));
                    };
                    for (k, v) in m {
                        meta.insert(k, v);
                    }
                }
                _ => {}
            }
        }
        Ok(meta)
    }

    fn decorator_error(&self, d: &Decorator) -> CompileError {
        if [
            "sealed",
            "discriminator",
            "export",
            "onlyIfNotExists",
            "retryOn",
        ]
        .contains(&d.name.as_str())
        {
            unsupported(self.src, d.at, &format!("decorators like '@{}'", d.name))
        } else {
            self.err(d.at, format!("decorator '@{}' is not allowed here", d.name))
        }
    }

    fn single_arg(&self, d: &Decorator) -> Result<Value, CompileError> {
        match d.args.as_slice() {
            [a] => self.constant(a),
            _ => Err(self.err(d.at, format!("@{} takes one argument", d.name))),
        }
    }

    fn string_arg(&self, d: &Decorator) -> Result<Value, CompileError> {
        match self.single_arg(d)? {
            v @ Value::String(_) => Ok(v),
            _ => Err(self.err(d.at, format!("@{} takes a string", d.name))),
        }
    }

    fn int_arg(&self, d: &Decorator) -> Result<Value, CompileError> {
        match self.single_arg(d)? {
            v @ Value::Number(_) => Ok(v),
            _ => Err(self.err(d.at, format!("@{} takes an integer", d.name))),
        }
    }

    /// A parameter: its type object `p` with its default and decorators.
    fn parameter(
        &self,
        s: &Stmt,
        mut p: Map<String, Value>,
        default: Option<&Expr>,
    ) -> Result<Value, CompileError> {
        if s.decorators.iter().any(|d| d.name == "secure") {
            let secure = match p.get("type").and_then(Value::as_str) {
                Some("string") => "securestring",
                Some("object") => "secureObject",
                _ => {
                    return Err(self.err(s.at, "@secure() applies to string and object parameters"));
                }
            };
            p.insert("type".into(), Value::from(secure));
        }
        if let Some(d) = default {
            p.insert("defaultValue".into(), self.lower(d)?.to_json());
        }
        let mut limits = Map::new();
        for d in &s.decorators {
            match d.name.as_str() {
                "allowed" => {
                    let v = self.single_arg(d)?;
                    if !v.is_array() {
                        return Err(self.err(d.at, "@allowed takes an array"));
                    }
                    p.insert("allowedValues".into(), v);
                }
                "minValue" | "maxValue" | "minLength" | "maxLength" => {
                    limits.insert(d.name.clone(), self.int_arg(d)?);
                }
                "secure" if d.args.is_empty() => {}
                "secure" => return Err(self.err(d.at, "@secure() takes no arguments")),
                "sealed" if self.symbolic && d.args.is_empty() => {
                    if p.get("type").and_then(Value::as_str) != Some("object") {
                        return Err(self.err(d.at, "@sealed() applies to object types"));
                    }
                    p.insert("additionalProperties".into(), Value::Bool(false));
                }
                "description" | "metadata" => {}
                _ => return Err(self.decorator_error(d)),
            }
        }
        let meta = self.description_metadata(
            &s.decorators,
            &[
                "description",
                "metadata",
                "allowed",
                "minValue",
                "maxValue",
                "minLength",
                "maxLength",
                "secure",
                "sealed",
            ],
        )?;
        for (k, v) in limits {
            p.insert(k, v);
        }
        if !meta.is_empty() {
            p.insert("metadata".into(), Value::Object(meta));
        }
        Ok(Value::Object(p))
    }

    fn resource_json(&self, r: &Resource<'a>) -> Result<Value, CompileError> {
        let Some(l) = r.looped else {
            return self.resource_body_json(r, Map::new());
        };
        // One resource per item: `copy`, and the body with the loop's variables at copyIndex().
        let mut o = Map::new();
        let mut copy = Map::new();
        copy.insert("name".into(), Value::from(r.symbol));
        copy.insert(
            "count".into(),
            Ax::call("length", vec![self.lower(&l.source)?]).to_json(),
        );
        if let Some(d) = r.decorators.iter().find(|d| d.name == "batchSize") {
            copy.insert("mode".into(), Value::from("serial"));
            copy.insert("batchSize".into(), self.int_arg(d)?);
        }
        o.insert("copy".into(), Value::Object(copy));
        self.in_loop(r, l, Ax::call("copyIndex", vec![]), || {
            if let Some(c) = &l.condition {
                o.insert("condition".into(), self.lower(c)?.to_json());
            }
            self.resource_body_json(r, o)
        })
    }

    fn resource_body_json(
        &self,
        r: &Resource<'a>,
        mut o: Map<String, Value>,
    ) -> Result<Value, CompileError> {
        if let Some(c) = r.condition {
            o.insert("condition".into(), self.lower(c)?.to_json());
        }
        o.insert("type".into(), Value::from(r.ty.as_str()));
        o.insert("apiVersion".into(), Value::from(r.api_version.as_str()));
        if let Some(module) = r.module {
            return self.module_body_json(r, module, o);
        }
        if let Some(scope) = self.scope_property(r)? {
            o.insert("scope".into(), scope.to_json());
        }
        if self.symbolic {
            for (k, v) in self.scope_properties(r)? {
                o.insert(k.into(), v.to_json());
            }
        }
        o.insert("name".into(), self.full_name(r)?.to_json());
        for p in r.body {
            if let Some(k) = &p.key_expr {
                return Err(self.err(k.at, "a resource's own property names must be literal"));
            }
            if matches!(p.key.as_str(), "name" | "parent" | "scope" | "dependsOn") {
                continue;
            }
            o.insert(p.key.clone(), self.lower_json(&p.value)?.to_json());
        }
        self.finish_declaration(r, o, "resource")
    }
}

impl<'a> Emitter<'a> {
    /// A module's nested deployment, after its copy, condition, type and API version.
    fn module_body_json(
        &self,
        r: &Resource<'a>,
        module: &ModuleTemplate,
        mut o: Map<String, Value>,
    ) -> Result<Value, CompileError> {
        o.insert("name".into(), self.lower(r.name)?.to_json());
        // Where the deployment goes (the official compiler's properties for each scope).
        let p = self.module_placement(r)?;
        match p.scope {
            Scope::Tenant if self.target != Scope::Tenant => {
                o.insert("scope".into(), Value::from("/"));
            }
            Scope::Tenant => {}
            Scope::ManagementGroup => {
                if let Some(mg) = p.management_group {
                    // Unqualified: only tenant and management group templates name one.
                    let id = Ax::call(
                        "format",
                        vec![Ax::str("Microsoft.Management/managementGroups/{0}"), mg],
                    );
                    o.insert("scope".into(), id.to_json());
                }
            }
            Scope::Subscription => match p.subscription {
                Some(sub) => {
                    o.insert("subscriptionId".into(), sub.to_json());
                }
                None if self.target == Scope::ResourceGroup => {
                    o.insert("subscriptionId".into(), subscription_id().to_json());
                }
                None => {}
            },
            Scope::ResourceGroup => {
                if let Some(sub) = p.subscription {
                    o.insert("subscriptionId".into(), sub.to_json());
                }
                if let Some(rg) = p.group {
                    o.insert("resourceGroup".into(), rg.to_json());
                }
            }
        }
        // A deployment to a scope other than a resource group needs a location.
        if p.scope != Scope::ResourceGroup {
            let of = if self.target == Scope::ResourceGroup {
                "resourceGroup"
            } else {
                "deployment"
            };
            let location = Ax::Prop(Box::new(Ax::call(of, vec![])), "location".into());
            o.insert("location".into(), location.to_json());
        }
        let mut properties = Map::new();
        properties.insert(
            "expressionEvaluationOptions".into(),
            json!({"scope": "inner"}),
        );
        properties.insert("mode".into(), Value::from("Incremental"));
        if let Some(ps) = r.params {
            let ExprKind::Object(items) = &ps.kind else {
                return Err(self.err(ps.at, "a module's 'params' must be an object"));
            };
            let mut parameters = Map::new();
            for p in items {
                parameters.insert(p.key.clone(), self.module_parameter(&p.value)?);
            }
            properties.insert("parameters".into(), Value::Object(parameters));
        }
        match &module.link {
            // A template spec: the deployment links to it, as the official compiler writes.
            Some(id) => properties.insert("templateLink".into(), json!({ "id": id })),
            None => properties.insert("template".into(), module.template.clone()),
        };
        o.insert("properties".into(), Value::Object(properties));
        self.finish_declaration(r, o, "module")
    }

    /// The end of a resource's or module's JSON: its inferred `dependsOn`, its `@description`
    /// as metadata, and `@batchSize` allowed on loops only.
    fn finish_declaration(
        &self,
        r: &Resource<'a>,
        mut o: Map<String, Value>,
        what: &str,
    ) -> Result<Value, CompileError> {
        let deps = self.depends_on(r)?;
        if !deps.is_empty() {
            o.insert("dependsOn".into(), Value::Array(deps));
        }
        let meta = self.description_metadata(r.decorators, &["description", "batchSize"])?;
        if r.looped.is_none() && r.decorators.iter().any(|d| d.name == "batchSize") {
            return Err(self.err(r.at, format!("@batchSize applies to {what} loops only")));
        }
        if !meta.is_empty() {
            o.insert("metadata".into(), Value::Object(meta));
        }
        Ok(Value::Object(o))
    }
}

/// Where a resource lives.
enum Place {
    /// At the template's own scope.
    Here,
    /// Elsewhere: its id is this function with these leading arguments, then its type and
    /// names (`extensionResourceId(<group id>, ...)`, `subscriptionResourceId(<sub>, ...)`,
    /// `tenantResourceId(...)`).
    Elsewhere(&'static str, Vec<Ax>),
    /// An extension resource: the id of the resource it extends.
    Extension(Ax),
}

/// How the official compiler orders dependencies: by symbolic name, in .NET's default
/// (culture-aware) string order: letters without case first (`hubrg` < `hubVNET`), punctuation
/// before digits before letters, then lower case before upper case.
type SortKey = (Vec<(u8, u32)>, Vec<bool>);

fn sort_key(name: &str) -> SortKey {
    let primary = name
        .chars()
        .map(|c| {
            let class = if c.is_alphabetic() {
                2
            } else if c.is_ascii_digit() {
                1
            } else {
                0
            };
            let folded = c.to_lowercase().next().unwrap_or(c);
            // ICU's root order puts the low line before other punctuation.
            (class, if c == '_' { 0 } else { folded as u32 })
        })
        .collect();
    let tertiary = name.chars().map(char::is_uppercase).collect();
    (primary, tertiary)
}

/// The type of a resource group; a module may name one as its scope.
const RESOURCE_GROUP_TYPE: &str = "Microsoft.Resources/resourceGroups";

/// Where a module deploys, as written.
struct ModuleTarget<'a> {
    scope: Scope,
    subscription: Option<&'a Expr>,
    group: Option<Group<'a>>,
    management_group: Option<&'a Expr>,
}

/// The resource group a module deploys to.
enum Group<'a> {
    /// `resourceGroup(name)`, `resourceGroup(sub, name)`.
    Name(&'a Expr),
    /// A resource group of this file (`scope: rg`, `scope: rgs[i]`).
    Resource(&'a str, Option<&'a Expr>),
}

/// Where a module deploys, lowered.
struct ModulePlacement {
    scope: Scope,
    subscription: Option<Ax>,
    group: Option<Ax>,
    management_group: Option<Ax>,
}

fn subscription_id() -> Ax {
    Ax::Prop(
        Box::new(Ax::call("subscription", vec![])),
        "subscriptionId".into(),
    )
}

/// `tenantResourceId('Microsoft.Management/managementGroups', name)`.
fn management_group_id(name: Ax) -> Ax {
    Ax::call(
        "tenantResourceId",
        vec![Ax::str("Microsoft.Management/managementGroups"), name],
    )
}

fn is_load_function(name: &str) -> bool {
    matches!(
        name,
        "loadTextContent" | "loadFileAsBase64" | "loadJsonContent" | "loadYamlContent"
    )
}

/// The value a JSONPath of names and indexes (`$`, `.a`, `a.b[0]`, `['a b']`) selects in `v`,
/// as Json.NET's `SelectTokens` does for the official compiler: Ok(None) when it selects nothing
/// or is malformed (an error there too), Err for anything else (wildcards, `..`, slices, unions,
/// filters), which this compiler does not read.
fn select<'v>(v: &'v Value, path: &str) -> Result<Option<&'v Value>, ()> {
    let name_char = |c: char| c.is_alphanumeric() || c == '_' || c == '-';
    let mut rest = path.strip_prefix('$').unwrap_or(path);
    if rest.len() == path.len() && rest.is_empty() {
        return Err(());
    }
    let mut at = Some(v);
    let mut first = rest.len() == path.len();
    while !rest.is_empty() {
        let bare = first && !rest.starts_with(['.', '[']);
        first = false;
        if bare || rest.starts_with('.') {
            let after = if bare { rest } else { &rest[1..] };
            let end = after.find(['.', '[']).unwrap_or(after.len());
            let name = &after[..end];
            if name.is_empty() {
                // `$.` and `.` are malformed; `..` is the recursive descent.
                return if after.is_empty() { Ok(None) } else { Err(()) };
            }
            if !name.chars().all(name_char) {
                return Err(());
            }
            at = at.and_then(|x| x.as_object()).and_then(|m| m.get(name));
            rest = &after[end..];
            continue;
        }
        if !rest.starts_with('[') {
            return Err(());
        }
        let Some(close) = rest.find(']') else {
            return Ok(None);
        };
        let inner = &rest[1..close];
        if inner.is_empty() {
            return Ok(None);
        }
        if let Some(name) = inner.strip_prefix('\'').and_then(|n| n.strip_suffix('\'')) {
            if name.contains(['\'', '\\']) {
                return Err(());
            }
            at = at.and_then(|x| x.as_object()).and_then(|m| m.get(name));
        } else if inner.bytes().all(|b| b.is_ascii_digit()) {
            let i: usize = inner.parse().map_err(|_| ())?;
            at = at.and_then(|x| x.as_array()).and_then(|a| a.get(i));
        } else {
            return Err(());
        }
        rest = &rest[close + 1..];
    }
    Ok(at)
}

/// A JSON value as a literal expression (a string in brackets is escaped when written); None
/// for a number Bicep has no literal for (a fraction, beyond 64 bits).
fn json_literal(v: &Value) -> Option<Ax> {
    Some(match v {
        Value::Null => Ax::Null,
        Value::Bool(b) => Ax::Bool(*b),
        Value::Number(n) => Ax::Int(n.as_i64()?),
        Value::String(s) => Ax::Str(s.clone()),
        Value::Array(a) => Ax::Arr(a.iter().map(json_literal).collect::<Option<_>>()?),
        Value::Object(m) => Ax::Obj(
            m.iter()
                .map(|(k, x)| Some((Ax::Str(k.clone()), json_literal(x)?)))
                .collect::<Option<_>>()?,
        ),
    })
}

/// `/subscriptions/<sub>/resourceGroups/<rg>`.
fn group_id(sub: Ax, rg: Ax) -> Ax {
    Ax::call(
        "format",
        vec![Ax::str("/subscriptions/{0}/resourceGroups/{1}"), sub, rg],
    )
}

/// Like `walk`, but a loop's item and index are bound in its body: identifiers naming a bound
/// variable are not passed to `f`.
fn walk_free<'e>(e: &'e Expr, bound: &mut Vec<String>, f: &mut impl FnMut(&'e Expr)) {
    match &e.kind {
        ExprKind::Ident(n) if bound.contains(n) => {}
        ExprKind::For(l) => {
            f(e);
            walk_free(&l.source, bound, f);
            let before = bound.len();
            bound.extend(l.item.iter().chain(&l.index).cloned());
            if let Some(c) = &l.condition {
                walk_free(c, bound, f);
            }
            walk_free(&l.body, bound, f);
            bound.truncate(before);
        }
        _ => {
            f(e);
            each_child(e, &mut |c| walk_free(c, bound, f));
        }
    }
}

/// The expressions of a statement (its decorators' arguments first).
fn statement_exprs(s: &Stmt) -> Vec<&Expr> {
    let mut exprs: Vec<&Expr> = s.decorators.iter().flat_map(|d| &d.args).collect();
    match &s.kind {
        StmtKind::Param { default, .. } => exprs.extend(default),
        // A function's body is read where it is declared (`udt`); a type has no expressions.
        StmtKind::Type { .. } | StmtKind::Func { .. } => {}
        StmtKind::Var { value, .. } | StmtKind::Output { value, .. } => exprs.push(value),
        StmtKind::Metadata { value, .. } | StmtKind::TargetScope(value) => exprs.push(value),
        StmtKind::Resource {
            looped,
            condition,
            body,
            ..
        }
        | StmtKind::Module {
            looped,
            condition,
            body,
            ..
        } => {
            if let Some(l) = looped {
                exprs.push(&l.source);
                exprs.extend(&l.condition);
            }
            exprs.extend(condition);
            exprs.extend(
                body.iter()
                    .flat_map(|p| p.key_expr.iter().chain([&p.value])),
            );
        }
    }
    exprs
}

/// A type evident without type inference (`Mixed`: values of different types).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Known {
    Bool,
    Int,
    Str,
    Array,
    Object,
    Null,
    Mixed,
}

/// The type of `e` when it is evident from its form, with `vars` the evident types of the
/// lambda variables in scope; None when it may be anything.
fn known_type(e: &Expr, vars: &[(&str, Option<Known>)]) -> Option<Known> {
    match &e.kind {
        ExprKind::Int(_) => Some(Known::Int),
        ExprKind::Bool(_) => Some(Known::Bool),
        ExprKind::Null => Some(Known::Null),
        ExprKind::Str { .. } => Some(Known::Str),
        ExprKind::Array(_) | ExprKind::For(_) => Some(Known::Array),
        ExprKind::Object(_) => Some(Known::Object),
        ExprKind::Unary { op, .. } => Some(if *op == "!" { Known::Bool } else { Known::Int }),
        ExprKind::Binary { op, .. } => match *op {
            "&&" | "||" | "==" | "!=" | "=~" | "!~" | "<" | "<=" | ">" | ">=" => Some(Known::Bool),
            "+" | "-" | "*" | "/" | "%" => Some(Known::Int),
            _ => None,
        },
        ExprKind::Ident(n) => vars
            .iter()
            .rev()
            .find(|(v, _)| v == n)
            .and_then(|(_, t)| *t),
        _ => None,
    }
}

/// The evident type of the elements of `source` (`range()`, an array of literals).
fn element_type(source: &Expr) -> Option<Known> {
    match &source.kind {
        ExprKind::Call { name, .. } if name == "range" => Some(Known::Int),
        ExprKind::Array(items) => {
            let mut types = items.iter().map(|i| known_type(i, &[]));
            let first = types.next()??;
            let mut mixed = false;
            for t in types {
                match t {
                    None => return None,
                    Some(t) => mixed |= t != first,
                }
            }
            Some(if mixed { Known::Mixed } else { first })
        }
        _ => None,
    }
}

/// Functions that take lambdas.
const LAMBDA_FUNCTIONS: &[&str] = &[
    "filter",
    "map",
    "reduce",
    "sort",
    "toObject",
    "groupBy",
    "mapValues",
];

/// Bicep's built-in functions (namespaces `sys` and `az`) that are emitted as ARM functions of
/// the same name. `list*` resource functions are accepted by prefix.
const FUNCTIONS: &[&str] = &[
    "array",
    "base64",
    "base64ToJson",
    "base64ToString",
    "bool",
    "cidrHost",
    "cidrSubnet",
    "coalesce",
    "concat",
    "contains",
    "dataUri",
    "dataUriToString",
    "dateTimeAdd",
    "dateTimeFromEpoch",
    "dateTimeToEpoch",
    "deployer",
    "deployment",
    "distinct",
    "empty",
    "endsWith",
    "environment",
    "extensionResourceId",
    "first",
    "flatten",
    "format",
    "guid",
    "indexOf",
    "int",
    "intersection",
    "items",
    "join",
    "json",
    "last",
    "lastIndexOf",
    "length",
    "like",
    "managementGroup",
    "managementGroupResourceId",
    "max",
    "min",
    "newGuid",
    "objectKeys",
    "padLeft",
    "parseCidr",
    "pickZones",
    "providers",
    "range",
    "reference",
    "replace",
    "resourceGroup",
    "resourceId",
    "shallowMerge",
    "skip",
    "split",
    "startsWith",
    "string",
    "subscription",
    "subscriptionResourceId",
    "substring",
    "take",
    "tenant",
    "tenantResourceId",
    "toLower",
    "toUpper",
    "trim",
    "tryGet",
    "union",
    "uniqueString",
    "uri",
    "uriComponent",
    "uriComponentToString",
    "utcNow",
];
