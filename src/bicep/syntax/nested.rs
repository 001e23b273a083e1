//! Nested child resources (`resource subnet 'subnets' = {...}` inside a resource body) become
//! top-level resources named `parent::child`, as the official compiler names them, with a
//! `parent` property, the parent's type prefixed to a relative type (and its API version when
//! none is given), and the parent's condition stacked on the child's. Inside a child's
//! declaration, the names of the resources nested beside it (and beside its ancestors) are
//! renamed to their full symbols; `a::b` written anywhere is already the full symbol.
//!
//! The official compiler writes nested resources before the top-level ones, depth first with
//! the children of a resource after their own nested resources; the flattened statements keep
//! that order.

use super::{Expr, ExprKind, Property, Stmt, StmtKind, unsupported, walk};
use crate::bicep::CompileError;

/// The names declared in one resource body: the prefix of their full symbols, and the names.
type Scope = (String, Vec<String>);

pub fn flatten(src: &str, stmts: Vec<Stmt>) -> Result<Vec<Stmt>, CompileError> {
    let mut nested_out = Vec::new();
    let mut top = Vec::with_capacity(stmts.len());
    for mut s in stmts {
        if let StmtKind::Resource {
            name,
            type_ref,
            condition,
            nested,
            ..
        } = &mut s.kind
            && !nested.is_empty()
        {
            let children = std::mem::take(nested);
            lower_children(
                src,
                name,
                type_ref,
                condition.as_ref(),
                children,
                &mut Vec::new(),
                &mut nested_out,
            )?;
        }
        top.push(s);
    }
    nested_out.extend(top);
    Ok(nested_out)
}

fn lower_children(
    src: &str,
    parent: &str,
    parent_type: &str,
    parent_condition: Option<&Expr>,
    children: Vec<Stmt>,
    chain: &mut Vec<Scope>,
    out: &mut Vec<Stmt>,
) -> Result<(), CompileError> {
    let names = children
        .iter()
        .filter_map(|c| match &c.kind {
            StmtKind::Resource { name, .. } => Some(name.clone()),
            _ => None,
        })
        .collect();
    chain.push((format!("{parent}::"), names));
    let mut locals = Vec::with_capacity(children.len());
    for mut child in children {
        let at = child.at;
        let StmtKind::Resource {
            name,
            type_ref,
            looped,
            condition,
            body,
            ..
        } = &mut child.kind
        else {
            continue;
        };
        if let Some(p) = body
            .iter()
            .find(|p| p.key_expr.is_none() && p.key == "parent")
        {
            return Err(CompileError::at(
                src,
                p.at,
                "a nested resource has its parent already: remove 'parent'",
            ));
        }
        let full = format!("{parent}::{name}");
        *type_ref = child_type(parent_type, type_ref);
        // Names inside the child's declaration.
        let mut bound = Vec::new();
        if let Some(c) = condition {
            rename(c, chain, &mut bound);
        }
        if let Some(l) = looped {
            rename(&mut l.source, chain, &mut bound);
            bound.extend(l.item.iter().chain(&l.index).cloned());
            if let Some(c) = &mut l.condition {
                rename(c, chain, &mut bound);
            }
        }
        for p in body.iter_mut() {
            if let Some(k) = &mut p.key_expr {
                rename(k, chain, &mut bound);
            }
            rename(&mut p.value, chain, &mut bound);
        }
        for d in child.decorators.iter_mut() {
            for a in d.args.iter_mut() {
                rename(a, chain, &mut Vec::new());
            }
        }
        let StmtKind::Resource {
            name,
            type_ref,
            looped,
            condition,
            body,
            nested,
            ..
        } = &mut child.kind
        else {
            continue;
        };
        // Children inherit the conditions of their parents.
        if let Some(pc) = parent_condition {
            if let Some(l) = looped {
                // The official compiler stacks the parent's condition on the loop's own
                // (`and(parent, own)`, evaluated per copy). Refused where that could change
                // what the parent's condition means (a loop variable named like a name it
                // reads) or where the loop's children would need it too.
                let names: Vec<&String> = l.item.iter().chain(&l.index).collect();
                let mut shadowed = false;
                walk(pc, &mut |e| {
                    if let ExprKind::Ident(n) = &e.kind {
                        let head = n.split("::").next().unwrap_or_default();
                        shadowed |= names.iter().any(|b| b.as_str() == head);
                    }
                });
                if shadowed || !nested.is_empty() {
                    return Err(unsupported(
                        src,
                        l.at,
                        "resource loops nested in conditional resources (with a loop variable named like a name the condition reads, or with children of their own)",
                    ));
                }
                l.condition = Some(and_parent(pc, l.condition.take()));
            } else {
                *condition = Some(and_parent(pc, condition.take()));
            }
        }
        body.push(Property {
            key: "parent".into(),
            key_expr: None,
            at,
            value: Expr {
                kind: ExprKind::Ident(parent.to_string()),
                at,
            },
        });
        let grandchildren = std::mem::take(nested);
        if !grandchildren.is_empty() {
            lower_children(
                src,
                &full,
                type_ref,
                condition.as_ref(),
                grandchildren,
                chain,
                out,
            )?;
        }
        *name = full;
        locals.push(child);
    }
    chain.pop();
    out.extend(locals);
    Ok(())
}

/// `subnets@v` under `NS/vnets@w` is `NS/vnets/subnets@v`; without a version, the parent's.
fn child_type(parent_type: &str, type_ref: &str) -> String {
    let (ty, version) = match type_ref.split_once('@') {
        Some((t, v)) => (t, Some(v)),
        None => (type_ref, None),
    };
    if ty.contains('/') {
        return type_ref.to_string();
    }
    let (parent_ty, parent_version) = match parent_type.split_once('@') {
        Some((t, v)) => (t, Some(v)),
        None => (parent_type, None),
    };
    match version.or(parent_version) {
        Some(v) => format!("{parent_ty}/{ty}@{v}"),
        None => format!("{parent_ty}/{ty}"),
    }
}

/// Renames the names nested resources declare in `chain` (innermost last) to their symbols;
/// names in `bound` are loop variables.
fn rename(e: &mut Expr, chain: &[Scope], bound: &mut Vec<String>) {
    match &mut e.kind {
        ExprKind::Ident(n) => {
            let head = n.split("::").next().unwrap_or_default();
            if bound.iter().any(|b| b == head) {
                return;
            }
            if let Some((prefix, _)) = chain
                .iter()
                .rev()
                .find(|(_, names)| names.iter().any(|x| x == head))
            {
                *n = format!("{prefix}{n}");
            }
        }
        ExprKind::For(l) => {
            rename(&mut l.source, chain, bound);
            let before = bound.len();
            bound.extend(l.item.iter().chain(&l.index).cloned());
            if let Some(c) = &mut l.condition {
                rename(c, chain, bound);
            }
            rename(&mut l.body, chain, bound);
            bound.truncate(before);
        }
        ExprKind::Lambda { params, body } => {
            let before = bound.len();
            bound.extend(params.iter().cloned());
            rename(body, chain, bound);
            bound.truncate(before);
        }
        ExprKind::Str { holes, .. } => holes.iter_mut().for_each(|h| rename(h, chain, bound)),
        ExprKind::Call { args, .. } => args.iter_mut().for_each(|a| rename(a, chain, bound)),
        ExprKind::MethodCall { base, args, .. } => {
            rename(base, chain, bound);
            args.iter_mut().for_each(|a| rename(a, chain, bound));
        }
        ExprKind::Member { base, .. } => rename(base, chain, bound),
        ExprKind::Index { base, index } => {
            rename(base, chain, bound);
            rename(index, chain, bound);
        }
        ExprKind::Unary { operand, .. } => rename(operand, chain, bound),
        ExprKind::Binary { left, right, .. } => {
            rename(left, chain, bound);
            rename(right, chain, bound);
        }
        ExprKind::Ternary {
            cond,
            then,
            otherwise,
        } => {
            rename(cond, chain, bound);
            rename(then, chain, bound);
            rename(otherwise, chain, bound);
        }
        ExprKind::Object(props) => props.iter_mut().for_each(|p| {
            if let Some(k) = &mut p.key_expr {
                rename(k, chain, bound);
            }
            rename(&mut p.value, chain, bound);
        }),
        ExprKind::Array(items) => items.iter_mut().for_each(|i| rename(i, chain, bound)),
        ExprKind::Int(_) | ExprKind::Bool(_) | ExprKind::Null => {}
    }
}

/// The parent's condition stacked on a child's own (`and(parent, own)`), or the parent's alone.
fn and_parent(parent: &Expr, own: Option<Expr>) -> Expr {
    match own {
        Some(c) => Expr {
            at: c.at,
            kind: ExprKind::Binary {
                op: "&&",
                left: Box::new(parent.clone()),
                right: Box::new(c),
            },
        },
        None => parent.clone(),
    }
}
