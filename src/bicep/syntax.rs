//! The Bicep syntax tree and its recursive-descent parser (precedence climbing for operators).
//! Only the language of resource templates is accepted; every other construct is rejected with
//! its name and position (see `unsupported`).

use super::CompileError;
use super::lexer::{Tok, Token};

#[derive(Debug, Clone, PartialEq)]
pub struct Expr {
    pub kind: ExprKind,
    /// Byte offset in the source.
    pub at: usize,
}

#[derive(Debug, Clone, PartialEq)]
pub enum ExprKind {
    /// Literal text between interpolations (`parts.len() == holes.len() + 1`).
    Str {
        parts: Vec<String>,
        holes: Vec<Expr>,
    },
    Int(i64),
    Bool(bool),
    Null,
    Ident(String),
    Call {
        name: String,
        args: Vec<Expr>,
    },
    /// `base.name`.
    Member {
        base: Box<Expr>,
        name: String,
    },
    /// `base.name(args)`: a namespaced function (`sys.concat()`) or a resource function
    /// (`storage.listKeys()`).
    MethodCall {
        base: Box<Expr>,
        name: String,
        args: Vec<Expr>,
    },
    Index {
        base: Box<Expr>,
        index: Box<Expr>,
    },
    Unary {
        op: &'static str,
        operand: Box<Expr>,
    },
    Binary {
        op: &'static str,
        left: Box<Expr>,
        right: Box<Expr>,
    },
    Ternary {
        cond: Box<Expr>,
        then: Box<Expr>,
        otherwise: Box<Expr>,
    },
    Object(Vec<Property>),
    Array(Vec<Expr>),
    /// `[for item in source: body]`, `[for (item, index) in source: body]`; for resources
    /// also `[for ...: if (condition) {...}]`.
    For(Box<ForLoop>),
    /// `x => body`, `(acc, x, i) => body`: only as an argument of the functions that take one
    /// (`map`, `filter`, `reduce`, ...).
    Lambda {
        params: Vec<String>,
        body: Box<Expr>,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub struct ForLoop {
    pub item: Option<String>,
    pub index: Option<String>,
    pub source: Expr,
    pub condition: Option<Expr>,
    pub body: Expr,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Property {
    /// The key as written; for an interpolated key (`'${id}': {}`), its source text.
    pub key: String,
    /// An interpolated key, emitted as an expression.
    pub key_expr: Option<Expr>,
    pub at: usize,
    pub value: Expr,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Decorator {
    pub name: String,
    pub args: Vec<Expr>,
    pub at: usize,
}

/// A declared type as written. Only the plain types (`string`, `int`, `bool`, `object`,
/// `array`) compile; the others are read so the catalog can describe any template.
#[derive(Debug, Clone, PartialEq)]
pub struct TypeExpr {
    /// The source text (`string[]`, `'a' | 'b'`, `int?`).
    pub text: String,
    /// The underlying type: the first name, or `string`/`int`/`bool` for a literal union.
    pub base: String,
    /// `T[]`.
    pub array: bool,
    /// `T?`.
    pub nullable: bool,
    /// Just one of the plain types.
    pub plain: bool,
    pub at: usize,
    /// The type as a tree.
    pub node: TypeNode,
}

#[derive(Debug, Clone, PartialEq)]
pub enum StmtKind {
    TargetScope(Expr),
    Metadata {
        name: String,
        value: Expr,
    },
    Param {
        name: String,
        ty: TypeExpr,
        default: Option<Expr>,
        /// The default's source text (also when it lies outside the expression grammar, which
        /// only the tolerant parameter scan accepts: then `default` is None).
        default_text: Option<String>,
    },
    Var {
        name: String,
        /// `var x string = ...`: a typed variable.
        ty: Option<TypeExpr>,
        value: Expr,
    },
    /// `type name = ...`: a user-defined type.
    Type {
        name: String,
        ty: TypeExpr,
    },
    /// `func name(a int, b string) string => body`: a user-defined function.
    Func {
        name: String,
        params: Vec<(String, TypeExpr)>,
        output: TypeExpr,
        body: Expr,
    },
    Resource {
        name: String,
        type_ref: String,
        /// `existing`: a reference to a resource deployed elsewhere, not deployed here.
        existing: bool,
        /// `= [for ...: {...}]`: one resource per item.
        looped: Option<ResourceLoop>,
        condition: Option<Expr>,
        body: Vec<Property>,
        /// Child resources declared in the body (`resource subnet 'subnets' = {...}`); after
        /// parsing, they are top-level statements named `parent::child` with a `parent`.
        nested: Vec<Stmt>,
    },
    Output {
        name: String,
        ty: TypeExpr,
        value: Expr,
    },
    /// `module m './file.bicep' = {...}`: a nested deployment of another file.
    Module {
        name: String,
        /// The path as written (`./m.bicep`, `br:...`).
        path: String,
        path_at: usize,
        looped: Option<ResourceLoop>,
        condition: Option<Expr>,
        body: Vec<Property>,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub struct ResourceLoop {
    pub item: Option<String>,
    pub index: Option<String>,
    pub source: Expr,
    pub condition: Option<Expr>,
    pub at: usize,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Stmt {
    pub decorators: Vec<Decorator>,
    pub kind: StmtKind,
    pub at: usize,
}

pub fn parse(src: &str, tokens: Vec<Token>) -> Result<Vec<Stmt>, CompileError> {
    let mut p = Parser {
        src,
        tokens,
        pos: 0,
        depth: 0,
        resource_body: None,
        nested: Vec::new(),
    };
    let stmts = p.program()?;
    nested::flatten(src, stmts)
}

/// The `param` and `targetScope` statements of a source, tolerating everything else: other
/// statements are skipped by their brackets, and a default outside the expression grammar keeps
/// only its text. For describing templates that only the official compiler may compile.
pub fn parse_parameters(src: &str, tokens: Vec<Token>) -> Result<Vec<Stmt>, CompileError> {
    let mut p = Parser {
        src,
        tokens,
        pos: 0,
        depth: 0,
        resource_body: None,
        nested: Vec::new(),
    };
    let mut out = Vec::new();
    loop {
        p.skip_newlines();
        if matches!(p.peek(), Tok::Eof) {
            return Ok(out);
        }
        let decorators = p.decorators()?;
        if matches!(p.peek(), Tok::Ident(k) if k == "param") {
            let at = p.bump().at;
            let kind = p.param(true)?;
            out.push(Stmt {
                decorators,
                kind,
                at,
            });
        } else if matches!(p.peek(), Tok::Ident(k) if k == "targetScope") {
            let at = p.bump().at;
            p.expect_punct("=")?;
            let kind = StmtKind::TargetScope(p.expr()?);
            out.push(Stmt {
                decorators,
                kind,
                at,
            });
        }
        p.skip_statement();
    }
}

struct Parser<'a> {
    src: &'a str,
    tokens: Vec<Token>,
    pos: usize,
    /// How deeply the expression being parsed nests (bounded: the tree is walked recursively).
    depth: usize,
    /// Set right before a resource body: whether the next object may declare nested child
    /// resources (`Some(false)`: the body of a resource loop).
    resource_body: Option<bool>,
    /// The nested child resources of the resource body being parsed.
    nested: Vec<Stmt>,
}

/// The deepest expression accepted; real templates stay far below it.
const MAX_NESTING: usize = 64;

/// Binary operators by precedence, loosest first (Bicep's own table).
const LEVELS: &[&[&str]] = &[
    &["??"],
    &["||"],
    &["&&"],
    &["==", "!=", "=~", "!~"],
    &["<", "<=", ">", ">="],
    &["+", "-"],
    &["*", "/", "%"],
];

impl<'a> Parser<'a> {
    fn peek(&self) -> &Tok {
        &self.tokens[self.pos].tok
    }

    fn at(&self) -> usize {
        self.tokens[self.pos].at
    }

    fn bump(&mut self) -> Token {
        let t = self.tokens[self.pos].clone();
        if self.pos + 1 < self.tokens.len() {
            self.pos += 1;
        }
        t
    }

    fn err(&self, at: usize, msg: impl Into<String>) -> CompileError {
        CompileError::at(self.src, at, msg)
    }

    fn unexpected(&self, expected: &str) -> CompileError {
        let found = match self.peek() {
            Tok::Ident(s) => format!("'{s}'"),
            Tok::Int(n) => n.to_string(),
            Tok::Str { .. } => "a string".into(),
            Tok::Newline => "a new line".into(),
            Tok::Punct(p) => format!("'{p}'"),
            Tok::Unsupported(what) => what.to_string(),
            Tok::Eof => "the end of the file".into(),
        };
        self.err(self.at(), format!("expected {expected}, found {found}"))
    }

    fn is_punct(&self, p: &str) -> bool {
        matches!(self.peek(), Tok::Punct(q) if *q == p)
    }

    fn eat_punct(&mut self, p: &str) -> bool {
        if self.is_punct(p) {
            self.bump();
            true
        } else {
            false
        }
    }

    fn expect_punct(&mut self, p: &str) -> Result<usize, CompileError> {
        if self.is_punct(p) {
            Ok(self.bump().at)
        } else {
            Err(self.unexpected(&format!("'{p}'")))
        }
    }

    fn skip_newlines(&mut self) {
        while matches!(self.peek(), Tok::Newline) {
            self.bump();
        }
    }

    fn ident(&mut self, what: &str) -> Result<(String, usize), CompileError> {
        match self.peek().clone() {
            Tok::Ident(s) => Ok((s, self.bump().at)),
            _ => Err(self.unexpected(what)),
        }
    }

    fn end_of_statement(&mut self) -> Result<(), CompileError> {
        match self.peek() {
            Tok::Newline | Tok::Eof => {
                self.skip_newlines();
                Ok(())
            }
            _ => Err(self.unexpected("a new line after the statement")),
        }
    }

    fn program(&mut self) -> Result<Vec<Stmt>, CompileError> {
        let mut out = Vec::new();
        self.skip_newlines();
        while !matches!(self.peek(), Tok::Eof) {
            out.push(self.statement()?);
            self.end_of_statement()?;
        }
        Ok(out)
    }

    /// To the end of the current statement: the next new line outside brackets.
    fn skip_statement(&mut self) {
        let mut depth = 0i32;
        loop {
            match self.peek() {
                Tok::Eof => return,
                Tok::Newline if depth <= 0 => return,
                Tok::Punct("(" | "[" | "{") => depth += 1,
                Tok::Punct(")" | "]" | "}") => depth -= 1,
                _ => {}
            }
            self.bump();
        }
    }

    /// After `param`: the name, the type and the default. `tolerant`: a default outside the
    /// expression grammar is kept as text.
    fn param(&mut self, tolerant: bool) -> Result<StmtKind, CompileError> {
        let (name, _) = self.ident("a parameter name")?;
        let ty = if tolerant {
            self.described_type()?
        } else {
            self.type_expr("parameter")?
        };
        let (mut default, mut default_text) = (None, None);
        if self.eat_punct("=") {
            let start = self.pos;
            match self.expr() {
                Ok(e) => default = Some(e),
                Err(e) if !tolerant => return Err(e),
                Err(_) => {
                    self.pos = start;
                    self.depth = 0;
                    self.skip_statement();
                }
            }
            let from = self.tokens[start].at;
            let to = self.tokens[self.pos.saturating_sub(1).max(start)].end;
            default_text = Some(self.src[from..to.max(from)].trim().to_string());
        }
        Ok(StmtKind::Param {
            name,
            ty,
            default,
            default_text,
        })
    }

    fn decorators(&mut self) -> Result<Vec<Decorator>, CompileError> {
        let mut decorators = Vec::new();
        while self.is_punct("@") {
            let at = self.bump().at;
            let expr = self.postfix()?;
            let (name, args) = match expr.kind {
                ExprKind::Call { name, args } => (name, args),
                ExprKind::MethodCall { base, name, args } if matches!(&base.kind, ExprKind::Ident(ns) if ns == "sys") => {
                    (name, args)
                }
                _ => return Err(self.err(at, "a decorator must be a function call")),
            };
            decorators.push(Decorator { name, args, at });
            self.skip_newlines();
        }
        Ok(decorators)
    }

    fn statement(&mut self) -> Result<Stmt, CompileError> {
        let decorators = self.decorators()?;
        let (keyword, at) = self.ident("a declaration (param, var, resource, output)")?;
        let kind = match keyword.as_str() {
            "targetScope" => {
                self.expect_punct("=")?;
                StmtKind::TargetScope(self.expr()?)
            }
            "metadata" => {
                let (name, _) = self.ident("a metadata name")?;
                self.expect_punct("=")?;
                StmtKind::Metadata {
                    name,
                    value: self.expr()?,
                }
            }
            "param" => self.param(false)?,
            "var" => {
                let (name, _) = self.ident("a variable name")?;
                let ty = if self.is_punct("=") {
                    None
                } else {
                    Some(self.type_expr("variable")?)
                };
                self.expect_punct("=")?;
                StmtKind::Var {
                    name,
                    ty,
                    value: self.expr()?,
                }
            }
            "type" => {
                let (name, _) = self.ident("a type name")?;
                self.expect_punct("=")?;
                self.skip_newlines();
                StmtKind::Type {
                    name,
                    ty: self.type_expr("declared")?,
                }
            }
            "func" => self.func()?,
            "resource" => {
                let (name, _) = self.ident("a resource symbolic name")?;
                let type_at = self.at();
                let type_ref = match self.bump().tok {
                    Tok::Str { mut parts, holes } if holes.is_empty() => parts.remove(0),
                    _ => {
                        return Err(self.err(
                            type_at,
                            "expected the resource type as a plain string ('Type@version')",
                        ));
                    }
                };
                let existing = matches!(self.peek(), Tok::Ident(s) if s == "existing");
                if existing {
                    self.bump();
                }
                self.expect_punct("=")?;
                self.skip_newlines();
                let condition = self.if_condition()?;
                let body_at = self.at();
                self.resource_body = Some(self.is_punct("{"));
                let outer = std::mem::take(&mut self.nested);
                let parsed = self.primary();
                self.resource_body = None;
                let nested = std::mem::replace(&mut self.nested, outer);
                let (body, looped) =
                    self.declaration_body(parsed?, condition.is_none(), body_at, "resource")?;
                StmtKind::Resource {
                    name,
                    type_ref,
                    existing,
                    condition,
                    looped,
                    body,
                    nested,
                }
            }
            "output" => {
                let (name, _) = self.ident("an output name")?;
                let ty = self.type_expr("output")?;
                self.expect_punct("=")?;
                StmtKind::Output {
                    name,
                    ty,
                    value: self.expr()?,
                }
            }
            "module" => {
                let (name, _) = self.ident("a module symbolic name")?;
                let path_at = self.at();
                let path = match self.bump().tok {
                    Tok::Str { mut parts, holes } if holes.is_empty() => parts.remove(0),
                    _ => {
                        return Err(self.err(
                            path_at,
                            "expected the module's path as a plain string ('./file.bicep')",
                        ));
                    }
                };
                self.expect_punct("=")?;
                self.skip_newlines();
                let condition = self.if_condition()?;
                let body_at = self.at();
                let parsed = self.primary()?;
                let (body, looped) =
                    self.declaration_body(parsed, condition.is_none(), body_at, "module")?;
                StmtKind::Module {
                    name,
                    path,
                    path_at,
                    looped,
                    condition,
                    body,
                }
            }
            "existing" => return Err(unsupported(self.src, at, "existing resources")),
            "import" => return Err(unsupported(self.src, at, "compile-time imports")),
            "extension" | "provider" => return Err(unsupported(self.src, at, "extensions")),
            "assert" => return Err(unsupported(self.src, at, "assertions")),
            "test" => return Err(unsupported(self.src, at, "tests")),
            "using" => return Err(unsupported(self.src, at, "parameter files (using)")),
            other => {
                return Err(self.err(
                    at,
                    format!(
                        "expected a declaration (param, var, resource, output), found '{other}'"
                    ),
                ));
            }
        };
        Ok(Stmt {
            decorators,
            kind,
            at,
        })
    }

    /// After `func`: `name(a int, b string) string => body`.
    fn func(&mut self) -> Result<StmtKind, CompileError> {
        let (name, _) = self.ident("a function name")?;
        self.expect_punct("(")?;
        let mut params = Vec::new();
        loop {
            self.skip_newlines();
            if self.eat_punct(")") {
                break;
            }
            if !params.is_empty() {
                self.expect_punct(",")?;
                self.skip_newlines();
            }
            let (p, at) = self.ident("a parameter name")?;
            if params.iter().any(|(q, _)| *q == p) {
                return Err(self.err(at, format!("parameter '{p}' is declared more than once")));
            }
            params.push((p, self.type_expr("parameter")?));
        }
        let output = self.type_expr("output")?;
        self.expect_punct("=>")?;
        self.skip_newlines();
        Ok(StmtKind::Func {
            name,
            params,
            output,
            body: self.expr()?,
        })
    }

    /// A type as written: a name (`string`), a literal or a union of literals (`'a' | 'b'`),
    /// an object or tuple type, `resource '<type>'`, with `[]` and `?`; also as a tree
    /// (`node`), read first; the flat reading is what describes parameters to the catalog.
    fn type_expr(&mut self, what: &str) -> Result<TypeExpr, CompileError> {
        let start = self.pos;
        let t = self.type_expr_or_flat(what)?;
        if let TypeNode::Unsupported(..) = t.node {
            // If only the flat reading understood it, the tree's error is the one to give.
            let (end, depth) = (self.pos, self.depth);
            self.pos = start;
            self.type_node()?;
            (self.pos, self.depth) = (end, depth);
        }
        Ok(t)
    }

    /// A parameter's type for describing it (`parse_parameters`): whatever the flat reading
    /// understands is accepted.
    fn described_type(&mut self) -> Result<TypeExpr, CompileError> {
        self.type_expr_or_flat("parameter")
    }

    fn type_expr_or_flat(&mut self, what: &str) -> Result<TypeExpr, CompileError> {
        let at = self.at();
        let start = self.pos;
        let depth = self.depth;
        let tree = self.type_node().map(|n| (n, self.pos));
        self.depth = depth;
        if what == "declared" {
            // A `type` declaration: only the tree is read.
            let node = tree?.0;
            return Ok(self.tree_type(at, start, node));
        }
        self.pos = start;
        match (self.flat_type(what, at, start), tree) {
            (Ok(mut flat), Ok((node, end))) => {
                if end == self.pos {
                    flat.node = node;
                } else {
                    // Read differently: the tree knows more forms.
                    self.pos = end;
                    flat = self.unread_type(at, start, node);
                }
                Ok(flat)
            }
            (Ok(mut flat), Err(_)) => {
                flat.node = TypeNode::Unsupported("this type syntax".into(), at);
                Ok(flat)
            }
            (Err(_), Ok((node, end))) => {
                self.pos = end;
                Ok(self.unread_type(at, start, node))
            }
            (Err(e), Err(_)) => Err(e),
        }
    }

    /// A type that only the tree reading understands (its flat description is empty).
    fn unread_type(&self, at: usize, start: usize, node: TypeNode) -> TypeExpr {
        let node = match node.is_aggregate() {
            // The flat reading failed on it: some part is outside the subset.
            true => node,
            false => TypeNode::Unsupported("this type syntax".into(), at),
        };
        self.tree_type(at, start, node)
    }

    /// A type described by its tree alone: the source text from `at` to the last token read.
    fn tree_type(&self, at: usize, start: usize, node: TypeNode) -> TypeExpr {
        TypeExpr {
            text: self.src[at..self.tokens[self.pos.saturating_sub(1).max(start)].end]
                .trim()
                .to_string(),
            base: String::new(),
            array: false,
            nullable: false,
            plain: false,
            at,
            node,
        }
    }

    /// The flat reading of a type (its base, `[]`, `?`), for describing parameters.
    fn flat_type(&mut self, what: &str, at: usize, start: usize) -> Result<TypeExpr, CompileError> {
        let mut base = None;
        let mut members = 0;
        loop {
            members += 1;
            let member_base = match self.peek().clone() {
                Tok::Ident(t) if t == "true" || t == "false" => {
                    self.bump();
                    "bool".to_string()
                }
                Tok::Ident(t) => {
                    self.bump();
                    if t == "resource" && matches!(self.peek(), Tok::Str { .. }) {
                        self.bump();
                    }
                    t
                }
                Tok::Str { .. } => {
                    self.bump();
                    "string".into()
                }
                Tok::Int(_) => {
                    self.bump();
                    "int".into()
                }
                Tok::Punct("-")
                    if matches!(
                        self.tokens.get(self.pos + 1).map(|t| &t.tok),
                        Some(Tok::Int(_))
                    ) =>
                {
                    self.bump();
                    self.bump();
                    "int".into()
                }
                Tok::Punct(open @ ("{" | "[")) => {
                    self.skip_brackets();
                    if open == "{" {
                        "object".into()
                    } else {
                        "array".into()
                    }
                }
                _ => return Err(self.unexpected(&format!("the {what} type"))),
            };
            base.get_or_insert(member_base);
            let mut more = false;
            while let Tok::Punct(p) = self.peek() {
                match *p {
                    "[" if self.tokens.get(self.pos + 1).map(|t| &t.tok)
                        == Some(&Tok::Punct("]")) =>
                    {
                        self.bump();
                        self.bump();
                        base = Some("array".into());
                    }
                    "?" => {
                        self.bump();
                    }
                    "|" => {
                        self.bump();
                        self.skip_newlines();
                        more = true;
                        break;
                    }
                    _ => break,
                }
            }
            if !more {
                break;
            }
        }
        let text = self.src[at..self.tokens[self.pos - 1].end]
            .trim()
            .to_string();
        let nullable = text.ends_with('?');
        let array = text.ends_with("[]") || text.ends_with("[]?");
        let base = base.unwrap_or_default();
        let node = TypeNode::Unsupported("this type syntax".into(), at);
        let plain = members == 1
            && !nullable
            && !array
            && self.pos == start + 1
            && ["string", "int", "bool", "object", "array"].contains(&text.as_str());
        Ok(TypeExpr {
            text,
            base,
            array,
            nullable,
            plain,
            at,
            node,
        })
    }

    /// Past a balanced `{...}` or `[...]` starting at the current token.
    fn skip_brackets(&mut self) {
        let mut depth = 0i32;
        loop {
            match self.peek() {
                Tok::Eof => return,
                Tok::Punct("(" | "[" | "{") => depth += 1,
                Tok::Punct(")" | "]" | "}") => depth -= 1,
                _ => {}
            }
            self.bump();
            if depth <= 0 {
                return;
            }
        }
    }

    /// Whether the next token after any new lines is the punctuation `p` (an operator that
    /// continues an expression on the next line, like a ternary's `?` and `:`).
    fn continues_with(&self, p: &'static str) -> bool {
        self.tokens[self.pos..]
            .iter()
            .find(|t| t.tok != Tok::Newline)
            .is_some_and(|t| t.tok == Tok::Punct(p))
    }

    /// One level deeper into the expression; an error past `MAX_NESTING`.
    fn nest(&mut self, levels: usize) -> Result<(), CompileError> {
        self.depth += levels;
        if self.depth > MAX_NESTING {
            return Err(self.err(
                self.at(),
                format!("expression nested more than {MAX_NESTING} levels deep"),
            ));
        }
        Ok(())
    }

    pub fn expr(&mut self) -> Result<Expr, CompileError> {
        self.nest(1)?;
        let e = self.ternary();
        self.depth -= 1;
        e
    }

    fn ternary(&mut self) -> Result<Expr, CompileError> {
        let cond = self.binary(0)?;
        if self.continues_with("?") {
            self.skip_newlines();
            let at = self.bump().at;
            self.skip_newlines();
            let then = self.expr()?;
            self.skip_newlines();
            self.expect_punct(":")?;
            self.skip_newlines();
            let otherwise = self.expr()?;
            return Ok(Expr {
                kind: ExprKind::Ternary {
                    cond: Box::new(cond),
                    then: Box::new(then),
                    otherwise: Box::new(otherwise),
                },
                at,
            });
        }
        Ok(cond)
    }

    /// Operators binding at least as tightly as `LEVELS[min_level]`, by precedence climbing
    /// (left-associative).
    fn binary(&mut self, min_level: usize) -> Result<Expr, CompileError> {
        let mut left = self.unary()?;
        let mut chain = 0;
        loop {
            let found = match self.peek() {
                Tok::Punct(p) => LEVELS
                    .iter()
                    .enumerate()
                    .skip(min_level)
                    .find_map(|(level, ops)| ops.iter().find(|o| **o == *p).map(|o| (level, *o))),
                _ => None,
            };
            let Some((level, op)) = found else { break };
            // Each operator of a chain nests the tree one level deeper.
            self.nest(1)?;
            chain += 1;
            let at = self.bump().at;
            self.skip_newlines();
            let right = self.binary(level + 1)?;
            left = Expr {
                kind: ExprKind::Binary {
                    op,
                    left: Box::new(left),
                    right: Box::new(right),
                },
                at,
            };
        }
        self.depth -= chain;
        Ok(left)
    }

    fn unary(&mut self) -> Result<Expr, CompileError> {
        for op in ["!", "-"] {
            if self.is_punct(op) {
                let at = self.bump().at;
                self.nest(1)?;
                let operand = self.unary()?;
                self.depth -= 1;
                return Ok(Expr {
                    kind: ExprKind::Unary {
                        op,
                        operand: Box::new(operand),
                    },
                    at,
                });
            }
        }
        self.postfix()
    }

    fn postfix(&mut self) -> Result<Expr, CompileError> {
        let depth = self.depth;
        let mut e = self.primary()?;
        loop {
            // Each access of a chain nests the tree one level deeper.
            self.nest(1)?;
            if self.is_punct(".") {
                self.bump();
                let (name, at) = self.ident("a property name")?;
                if self.is_punct("(") {
                    let args = self.args()?;
                    e = Expr {
                        kind: ExprKind::MethodCall {
                            base: Box::new(e),
                            name,
                            args,
                        },
                        at,
                    };
                } else {
                    e = Expr {
                        kind: ExprKind::Member {
                            base: Box::new(e),
                            name,
                        },
                        at,
                    };
                }
            } else if self.is_punct("[") {
                let at = self.bump().at;
                self.skip_newlines();
                if self.is_punct("^") {
                    return Err(unsupported(
                        self.src,
                        self.at(),
                        "index from the end ([^n])",
                    ));
                }
                let index = self.expr()?;
                self.skip_newlines();
                self.expect_punct("]")?;
                e = Expr {
                    kind: ExprKind::Index {
                        base: Box::new(e),
                        index: Box::new(index),
                    },
                    at,
                };
            } else if self.is_punct(".?") {
                return Err(unsupported(self.src, self.at(), "safe access (.?)"));
            } else if self.is_punct("::") {
                // `parent::child`: the nested resource's symbol.
                let ExprKind::Ident(base) = &e.kind else {
                    return Err(unsupported(
                        self.src,
                        self.at(),
                        "nested resource access (::) other than on a resource's symbol",
                    ));
                };
                self.bump();
                let (name, _) = self.ident("a nested resource name")?;
                e = Expr {
                    kind: ExprKind::Ident(format!("{base}::{name}")),
                    at: e.at,
                };
            } else if self.is_punct("!") {
                // Non-null assertion (`x!`): a type-level construct; the official compiler
                // emits the inner expression unchanged.
                self.bump();
            } else {
                break;
            }
        }
        self.depth = depth;
        Ok(e)
    }

    /// Whether a lambda (`x => ...`, `(x, i) => ...`, `() => ...`) starts here.
    fn lambda_ahead(&self) -> bool {
        let tok = |i: usize| self.tokens.get(self.pos + i).map(|t| &t.tok);
        let arrow = |i: usize| matches!(tok(i), Some(Tok::Punct("=>")));
        match tok(0) {
            Some(Tok::Ident(_)) => arrow(1),
            Some(Tok::Punct("(")) => {
                let mut i = 1;
                loop {
                    match tok(i) {
                        Some(Tok::Punct(")")) => return arrow(i + 1),
                        Some(Tok::Ident(_) | Tok::Punct(",") | Tok::Newline) => i += 1,
                        _ => return false,
                    }
                }
            }
            _ => false,
        }
    }

    /// One argument of a call: an expression, or a lambda (also in parentheses).
    fn argument(&mut self) -> Result<Expr, CompileError> {
        if self.lambda_ahead() {
            return self.lambda();
        }
        if self.is_punct("(") {
            let saved = self.pos;
            self.bump();
            self.skip_newlines();
            let parenthesized = self.lambda_ahead() || self.is_punct("(");
            if parenthesized {
                self.nest(1)?;
                let inner = self.argument();
                self.depth -= 1;
                let inner = inner?;
                if matches!(inner.kind, ExprKind::Lambda { .. }) {
                    self.skip_newlines();
                    self.expect_punct(")")?;
                    return Ok(inner);
                }
            }
            self.pos = saved;
        }
        self.expr()
    }

    /// `x => body` or `(x, y) => body` (`lambda_ahead` said one starts here).
    fn lambda(&mut self) -> Result<Expr, CompileError> {
        let at = self.at();
        let mut params = Vec::new();
        if self.eat_punct("(") {
            self.skip_newlines();
            while let Tok::Ident(name) = self.peek().clone() {
                self.bump();
                params.push(name);
                self.skip_newlines();
                if !self.eat_punct(",") {
                    break;
                }
                self.skip_newlines();
            }
            self.expect_punct(")")?;
        } else if let Tok::Ident(name) = self.peek().clone() {
            self.bump();
            params.push(name);
        }
        self.expect_punct("=>")?;
        self.skip_newlines();
        let body = self.expr()?;
        Ok(Expr {
            kind: ExprKind::Lambda {
                params,
                body: Box::new(body),
            },
            at,
        })
    }

    /// The arguments of a call.
    fn args(&mut self) -> Result<Vec<Expr>, CompileError> {
        self.expect_punct("(")?;
        let mut args = Vec::new();
        self.skip_newlines();
        if self.eat_punct(")") {
            return Ok(args);
        }
        loop {
            args.push(self.argument()?);
            self.skip_newlines();
            if self.eat_punct(",") {
                self.skip_newlines();
                continue;
            }
            self.expect_punct(")")?;
            return Ok(args);
        }
    }

    fn primary(&mut self) -> Result<Expr, CompileError> {
        let at = self.at();
        if self.lambda_ahead() {
            return Err(unsupported(self.src, at, "lambda expressions"));
        }
        let kind = match self.peek().clone() {
            Tok::Int(n) => {
                self.bump();
                ExprKind::Int(n)
            }
            Tok::Str { parts, holes } => {
                self.bump();
                let mut exprs = Vec::new();
                for hole in holes {
                    let mut sub = Parser {
                        src: self.src,
                        tokens: hole,
                        pos: 0,
                        depth: self.depth,
                        resource_body: None,
                        nested: Vec::new(),
                    };
                    sub.skip_newlines();
                    let e = sub.expr()?;
                    sub.skip_newlines();
                    if !matches!(sub.peek(), Tok::Eof) {
                        return Err(sub.unexpected("'}' closing the interpolation"));
                    }
                    exprs.push(e);
                }
                ExprKind::Str {
                    parts,
                    holes: exprs,
                }
            }
            Tok::Ident(name) => {
                self.bump();
                match name.as_str() {
                    "true" => ExprKind::Bool(true),
                    "false" => ExprKind::Bool(false),
                    "null" => ExprKind::Null,
                    _ if self.is_punct("(") => {
                        let args = self.args()?;
                        ExprKind::Call { name, args }
                    }
                    _ => ExprKind::Ident(name),
                }
            }
            Tok::Punct("(") => {
                self.bump();
                self.skip_newlines();
                let e = self.expr()?;
                self.skip_newlines();
                if self.is_punct("=>") || self.is_punct("=") {
                    return Err(unsupported(self.src, self.at(), "lambdas"));
                }
                self.expect_punct(")")?;
                return Ok(e);
            }
            Tok::Punct("{") => {
                self.bump();
                ExprKind::Object(self.object_body()?)
            }
            Tok::Punct("[") => {
                self.bump();
                self.skip_newlines();
                if matches!(self.peek(), Tok::Ident(s) if s == "for") {
                    return Ok(Expr {
                        kind: ExprKind::For(Box::new(self.for_loop()?)),
                        at,
                    });
                }
                let mut items = Vec::new();
                loop {
                    self.skip_newlines();
                    if self.eat_punct("]") {
                        break;
                    }
                    if self.is_punct("...") {
                        return Err(unsupported(self.src, self.at(), "spread (...)"));
                    }
                    items.push(self.expr()?);
                    if !self.eat_punct(",")
                        && !matches!(self.peek(), Tok::Newline)
                        && !self.is_punct("]")
                    {
                        return Err(self.unexpected("a new line, ',' or ']' after an array item"));
                    }
                }
                ExprKind::Array(items)
            }
            Tok::Unsupported(what) => return Err(unsupported(self.src, at, what)),
            _ => return Err(self.unexpected("an expression")),
        };
        Ok(Expr { kind, at })
    }

    /// `if (condition)` before a resource body, if there.
    /// The body of a resource or module declaration: an object, or (`loop_allowed`: the
    /// declaration has no `if`) a `[for ...: { ... }]` loop over one.
    fn declaration_body(
        &self,
        parsed: Expr,
        loop_allowed: bool,
        body_at: usize,
        what: &str,
    ) -> Result<(Vec<Property>, Option<ResourceLoop>), CompileError> {
        match parsed.kind {
            ExprKind::Object(props) => Ok((props, None)),
            ExprKind::For(l) if loop_allowed => {
                let ForLoop {
                    item,
                    index,
                    source,
                    condition,
                    body,
                } = *l;
                match body.kind {
                    ExprKind::Object(props) => Ok((
                        props,
                        Some(ResourceLoop {
                            item,
                            index,
                            source,
                            condition,
                            at: body_at,
                        }),
                    )),
                    _ => Err(self.err(body.at, format!("expected the {what} body {{ ... }}"))),
                }
            }
            _ => Err(self.err(body_at, format!("expected the {what} body {{ ... }}"))),
        }
    }

    fn if_condition(&mut self) -> Result<Option<Expr>, CompileError> {
        if !matches!(self.peek(), Tok::Ident(s) if s == "if") {
            return Ok(None);
        }
        self.bump();
        self.expect_punct("(")?;
        self.skip_newlines();
        let c = self.expr()?;
        self.skip_newlines();
        self.expect_punct(")")?;
        Ok(Some(c))
    }

    /// After `[`, at `for`: the loop, up to and including `]`.
    fn for_loop(&mut self) -> Result<ForLoop, CompileError> {
        self.bump();
        let (item, index) = if self.eat_punct("(") {
            let (item, _) = self.ident("the loop's item name")?;
            self.expect_punct(",")?;
            let (index, _) = self.ident("the loop's index name")?;
            self.expect_punct(")")?;
            (Some(item), Some(index))
        } else {
            (Some(self.ident("the loop's item name")?.0), None)
        };
        match self.peek() {
            Tok::Ident(s) if s == "in" => {
                self.bump();
            }
            _ => return Err(self.unexpected("'in'")),
        }
        let source = self.expr()?;
        self.expect_punct(":")?;
        self.skip_newlines();
        let condition = self.if_condition()?;
        let body = self.expr()?;
        self.skip_newlines();
        self.expect_punct("]")?;
        Ok(ForLoop {
            item,
            index,
            source,
            condition,
            body,
        })
    }

    /// Properties after `{`, up to and including `}`.
    fn object_body(&mut self) -> Result<Vec<Property>, CompileError> {
        // Only the object right after a resource's `=` is its body.
        let resource_body = self.resource_body.take();
        let mut props = Vec::new();
        loop {
            self.skip_newlines();
            if self.eat_punct("}") {
                return Ok(props);
            }
            let at = self.at();
            let mut key_expr = None;
            let declaration = matches!(self.peek(), Tok::Ident(s) if s == "resource")
                && matches!(
                    self.tokens.get(self.pos + 1).map(|t| &t.tok),
                    Some(Tok::Ident(_))
                );
            if declaration || self.is_punct("@") {
                match resource_body {
                    Some(true) => {
                        // A nested body nests like an expression: bounded.
                        let depth = self.depth;
                        self.nest(1)?;
                        let stmt = self.statement()?;
                        self.depth = depth;
                        if !matches!(stmt.kind, StmtKind::Resource { .. }) {
                            return Err(
                                self.err(stmt.at, "only resources can be declared in a resource")
                            );
                        }
                        self.nested.push(stmt);
                        if !matches!(self.peek(), Tok::Newline) && !self.is_punct("}") {
                            return Err(self.unexpected("a new line after the nested resource"));
                        }
                        continue;
                    }
                    Some(false) => {
                        return Err(unsupported(
                            self.src,
                            at,
                            "nested child resources of resource loops",
                        ));
                    }
                    None if declaration => {
                        return Err(
                            self.err(at, "resources can only be declared in a resource body")
                        );
                    }
                    None => {}
                }
            }
            let key = match self.peek().clone() {
                Tok::Ident(s) => {
                    self.bump();
                    s
                }
                Tok::Str { mut parts, holes } if holes.is_empty() => {
                    self.bump();
                    parts.remove(0)
                }
                Tok::Str { .. } => {
                    let e = self.primary()?;
                    let end = self.at();
                    key_expr = Some(e);
                    self.src.get(at..end).unwrap_or_default().trim().to_string()
                }
                Tok::Punct("...") => return Err(unsupported(self.src, at, "spread (...)")),
                _ => return Err(self.unexpected("a property name or '}'")),
            };
            self.expect_punct(":")?;
            self.skip_newlines();
            let value = self.expr()?;
            props.push(Property {
                key,
                key_expr,
                at,
                value,
            });
            if !self.eat_punct(",") && !matches!(self.peek(), Tok::Newline) && !self.is_punct("}") {
                return Err(self.unexpected("a new line, ',' or '}' after a property"));
            }
        }
    }
}

mod nested;
mod types;

pub use types::TypeNode;

pub fn unsupported(src: &str, at: usize, construct: &str) -> CompileError {
    CompileError::at(
        src,
        at,
        format!("{construct} are not supported by the built-in Bicep compiler"),
    )
}

/// The JSON value of a literal expression (strings without interpolation, integers, booleans,
/// null, and objects and arrays of those); None for anything computed.
pub fn literal(e: &Expr) -> Option<serde_json::Value> {
    use serde_json::Value;
    Some(match &e.kind {
        ExprKind::Str { parts, holes } if holes.is_empty() => Value::String(parts[0].clone()),
        ExprKind::Int(n) => Value::from(*n),
        ExprKind::Bool(b) => Value::Bool(*b),
        ExprKind::Null => Value::Null,
        ExprKind::Unary { op: "-", operand } => match operand.kind {
            ExprKind::Int(n) => Value::from(-n),
            _ => return None,
        },
        ExprKind::Array(items) => Value::Array(items.iter().map(literal).collect::<Option<_>>()?),
        ExprKind::Object(props) => {
            let mut m = serde_json::Map::new();
            for p in props {
                if p.key_expr.is_some() {
                    return None;
                }
                m.insert(p.key.clone(), literal(&p.value)?);
            }
            Value::Object(m)
        }
        _ => return None,
    })
}

/// Calls `f` on `e` and every expression inside it.
pub fn walk<'e>(e: &'e Expr, f: &mut impl FnMut(&'e Expr)) {
    f(e);
    each_child(e, &mut |c| walk(c, f));
}

/// Calls `f` on each expression directly inside `e`.
pub fn each_child<'e>(e: &'e Expr, f: &mut impl FnMut(&'e Expr)) {
    match &e.kind {
        ExprKind::Str { holes, .. } => holes.iter().for_each(f),
        ExprKind::Call { args, .. } => args.iter().for_each(f),
        ExprKind::MethodCall { base, args, .. } => {
            f(base);
            args.iter().for_each(f);
        }
        ExprKind::Member { base, .. } => f(base),
        ExprKind::Index { base, index } => {
            f(base);
            f(index);
        }
        ExprKind::Unary { operand, .. } => f(operand),
        ExprKind::Binary { left, right, .. } => {
            f(left);
            f(right);
        }
        ExprKind::Ternary {
            cond,
            then,
            otherwise,
        } => {
            f(cond);
            f(then);
            f(otherwise);
        }
        ExprKind::Object(props) => props.iter().for_each(|p| {
            if let Some(k) = &p.key_expr {
                f(k);
            }
            f(&p.value)
        }),
        ExprKind::Array(items) => items.iter().for_each(f),
        ExprKind::For(l) => {
            f(&l.source);
            if let Some(c) = &l.condition {
                f(c);
            }
            f(&l.body);
        }
        ExprKind::Lambda { body, .. } => f(body),
        ExprKind::Int(_) | ExprKind::Bool(_) | ExprKind::Null | ExprKind::Ident(_) => {}
    }
}
