//! Type expressions as a tree (`TypeNode`): what a `type` declaration, a typed parameter,
//! output or variable and a user-defined function's signature are written with. The parts the
//! compiler emits are kept; every other form is read past and kept as `Unsupported` with its
//! name and position, so that it is rejected by name where it would be emitted.

use super::{CompileError, Decorator, Parser, Tok};

#[derive(Debug, Clone, PartialEq)]
pub enum TypeNode {
    /// `string`, `int`, `bool`, `object`, `array`, or the name of a declared type.
    Name(String),
    /// `T[]`.
    Array(Box<TypeNode>),
    /// `T?`.
    Nullable(Box<TypeNode>),
    /// `{ a: T, @description('...') b: U }`.
    Object(Vec<TypeProp>),
    /// A literal type: `'a'`, `1`, `-1`, `true`.
    Literal(serde_json::Value),
    /// `'a' | 'b'`.
    Union(Vec<TypeNode>),
    /// A form outside the subset: what it is (plural, for `unsupported`), and where.
    Unsupported(String, usize),
}

#[derive(Debug, Clone, PartialEq)]
pub struct TypeProp {
    pub name: String,
    pub decorators: Vec<Decorator>,
    pub ty: TypeNode,
    pub at: usize,
}

impl TypeNode {
    /// Whether the official compiler counts the syntax as a type declaration of its own
    /// (object, array, tuple, union or nullable syntax), which makes the template a
    /// `languageVersion` 2.0 one.
    pub fn is_aggregate(&self) -> bool {
        !matches!(self, TypeNode::Name(_) | TypeNode::Literal(_))
    }
}

impl Parser<'_> {
    /// A type: `['|'] postfix ('|' postfix)*`.
    pub(super) fn type_node(&mut self) -> Result<TypeNode, CompileError> {
        self.nest(1)?;
        let t = self.type_union();
        self.depth -= 1;
        t
    }

    fn type_union(&mut self) -> Result<TypeNode, CompileError> {
        let leading = self.eat_punct("|");
        if leading {
            self.skip_newlines();
        }
        let mut members = vec![self.type_postfix()?];
        while self.continues_with("|") {
            self.skip_newlines();
            self.bump();
            self.skip_newlines();
            members.push(self.type_postfix()?);
        }
        Ok(if members.len() == 1 && !leading {
            members.remove(0)
        } else {
            TypeNode::Union(members)
        })
    }

    fn type_postfix(&mut self) -> Result<TypeNode, CompileError> {
        let mut t = self.type_primary()?;
        let mut levels = 0;
        loop {
            levels += 1;
            if levels > super::MAX_NESTING {
                return Err(self.err(
                    self.at(),
                    format!("type nested more than {} levels deep", super::MAX_NESTING),
                ));
            }
            if self.is_punct("[")
                && self.tokens.get(self.pos + 1).map(|t| &t.tok) == Some(&Tok::Punct("]"))
            {
                self.bump();
                self.bump();
                t = TypeNode::Array(Box::new(t));
            } else if self.is_punct("?") {
                self.bump();
                t = TypeNode::Nullable(Box::new(t));
            } else if self.is_punct("[") || self.is_punct(".") {
                // `T[*]`, `T[0]`, `T.prop`, `T.*`: a part of another type.
                let at = self.at();
                if self.is_punct("[") {
                    self.skip_brackets();
                } else {
                    self.bump();
                    self.bump();
                }
                if !matches!(t, TypeNode::Unsupported(..)) {
                    t = TypeNode::Unsupported("type member accesses ('T.prop', 'T[*]')".into(), at);
                }
            } else {
                return Ok(t);
            }
        }
    }

    fn type_primary(&mut self) -> Result<TypeNode, CompileError> {
        let at = self.at();
        Ok(match self.peek().clone() {
            Tok::Ident(t) if t == "true" || t == "false" => {
                self.bump();
                TypeNode::Literal(serde_json::Value::Bool(t == "true"))
            }
            Tok::Ident(t) if t == "null" => {
                self.bump();
                TypeNode::Unsupported("null types".into(), at)
            }
            Tok::Ident(t)
                if matches!(
                    self.tokens.get(self.pos + 1).map(|t| &t.tok),
                    Some(Tok::Punct("<"))
                ) =>
            {
                // `resource<'Type@version'>`, `resourceInput<...>`: up to its `>`.
                self.bump();
                while !matches!(self.peek(), Tok::Punct(">") | Tok::Newline | Tok::Eof) {
                    self.bump();
                }
                self.expect_punct(">")?;
                TypeNode::Unsupported(format!("resource-derived types ('{t}<...>')"), at)
            }
            Tok::Ident(t) if t == "resource" && self.next_is_str() => {
                self.bump();
                self.bump();
                TypeNode::Unsupported("resource-typed declarations".into(), at)
            }
            Tok::Ident(t) => {
                self.bump();
                TypeNode::Name(t)
            }
            Tok::Str { parts, holes } if holes.is_empty() => {
                self.bump();
                TypeNode::Literal(serde_json::Value::from(parts[0].clone()))
            }
            Tok::Int(n) => {
                self.bump();
                TypeNode::Literal(serde_json::Value::from(n))
            }
            Tok::Punct("-")
                if matches!(
                    self.tokens.get(self.pos + 1).map(|t| &t.tok),
                    Some(Tok::Int(_))
                ) =>
            {
                self.bump();
                let Tok::Int(n) = self.bump().tok else {
                    unreachable!("matched")
                };
                TypeNode::Literal(serde_json::Value::from(-n))
            }
            Tok::Punct("{") => self.object_type()?,
            Tok::Punct("[") => {
                self.skip_brackets();
                TypeNode::Unsupported("tuple types".into(), at)
            }
            Tok::Punct("(") => {
                self.skip_brackets();
                TypeNode::Unsupported("parenthesized types".into(), at)
            }
            Tok::Punct("!") => {
                self.bump();
                self.type_primary()?;
                TypeNode::Unsupported("negated types ('!')".into(), at)
            }
            _ => return Err(self.unexpected("a type")),
        })
    }

    fn next_is_str(&self) -> bool {
        matches!(
            self.tokens.get(self.pos + 1).map(|t| &t.tok),
            Some(Tok::Str { .. })
        )
    }

    /// `{ [decorators] name: type (newline | ,) ... }`.
    fn object_type(&mut self) -> Result<TypeNode, CompileError> {
        self.expect_punct("{")?;
        let mut props = Vec::new();
        let mut unsupported = None;
        loop {
            while matches!(self.peek(), Tok::Newline) || self.is_punct(",") {
                self.bump();
            }
            if self.eat_punct("}") {
                break;
            }
            let decorators = self.decorators()?;
            let at = self.at();
            let name = match self.peek().clone() {
                Tok::Ident(n) => n,
                Tok::Str { parts, holes } if holes.is_empty() => parts[0].clone(),
                Tok::Punct("*") => {
                    unsupported
                        .get_or_insert(("additional properties types ('*: T')".to_string(), at));
                    "*".into()
                }
                _ => return Err(self.unexpected("a property name")),
            };
            self.bump();
            self.expect_punct(":")?;
            self.skip_newlines();
            let ty = self.type_node()?;
            if props.iter().any(|p: &TypeProp| p.name == name) {
                return Err(self.err(at, format!("property '{name}' is declared more than once")));
            }
            props.push(TypeProp {
                name,
                decorators,
                ty,
                at,
            });
            if !(matches!(self.peek(), Tok::Newline) || self.is_punct(",") || self.is_punct("}")) {
                return Err(self.unexpected("a new line or '}' after a property type"));
            }
        }
        if let Some((what, at)) = unsupported {
            return Ok(TypeNode::Unsupported(what, at));
        }
        Ok(TypeNode::Object(props))
    }
}
