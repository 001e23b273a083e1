//! Bicep templates (`templates/*.bicep`): parameters from `param` declarations and their
//! decorators, read with a real tokenizer (comments, escaped and interpolated strings,
//! multi-line strings, nested literals), never line regexes.

use std::path::Path;

use serde_json::Value;

use super::params::{ParamSpec, ParamType};
use super::{Template, leading_comment, name_of};
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
    match parameters(&source) {
        Ok(mut params) => {
            params.sort_by(|a, b| a.name.cmp(&b.name));
            template.parameters = params;
        }
        Err(e) => template.error = Some(e),
    }
    template
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Ident(String),
    /// A string without interpolation, unescaped.
    Str(String),
    /// A string with `${...}`: not a literal.
    Template,
    Number(f64),
    Newline,
    Sym(char),
}

#[derive(Debug, Clone)]
struct Token {
    tok: Tok,
    start: usize,
    end: usize,
}

fn position(src: &str, offset: usize) -> (usize, usize) {
    let before = &src[..offset.min(src.len())];
    let line = before.matches('\n').count() + 1;
    let col = before.rfind('\n').map(|i| offset - i).unwrap_or(offset + 1);
    (line, col)
}

fn tokenize(src: &str) -> Result<Vec<Token>, String> {
    let bytes = src.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    let err = |at: usize, what: &str| {
        let (l, c) = position(src, at);
        format!("invalid Bicep at line {l}, column {c}: {what}")
    };
    while i < bytes.len() {
        let c = bytes[i];
        let start = i;
        match c {
            b' ' | b'\t' | b'\r' => i += 1,
            b'\n' => {
                out.push(Token {
                    tok: Tok::Newline,
                    start,
                    end: i + 1,
                });
                i += 1;
            }
            b'/' if bytes.get(i + 1) == Some(&b'/') => {
                while i < bytes.len() && bytes[i] != b'\n' {
                    i += 1;
                }
            }
            b'/' if bytes.get(i + 1) == Some(&b'*') => {
                let Some(end) = src[i + 2..].find("*/") else {
                    return Err(err(start, "unterminated comment"));
                };
                i += 2 + end + 2;
            }
            b'\'' if src[i..].starts_with("'''") => {
                let Some(end) = src[i + 3..].find("'''") else {
                    return Err(err(start, "unterminated multi-line string"));
                };
                let text = &src[i + 3..i + 3 + end];
                // A leading newline is not part of the value.
                let text = text
                    .strip_prefix("\r\n")
                    .or_else(|| text.strip_prefix('\n'))
                    .unwrap_or(text);
                i += 3 + end + 3;
                out.push(Token {
                    tok: Tok::Str(text.to_string()),
                    start,
                    end: i,
                });
            }
            b'\'' => {
                let (tok, end) = string(src, i).map_err(|(at, what)| err(at, what))?;
                i = end;
                out.push(Token { tok, start, end });
            }
            b'0'..=b'9' => {
                while i < bytes.len() && (bytes[i].is_ascii_digit() || bytes[i] == b'.') {
                    i += 1;
                }
                let n = src[start..i]
                    .parse::<f64>()
                    .map_err(|_| err(start, "invalid number"))?;
                out.push(Token {
                    tok: Tok::Number(n),
                    start,
                    end: i,
                });
            }
            c if c.is_ascii_alphabetic() || c == b'_' => {
                while i < bytes.len() && (bytes[i].is_ascii_alphanumeric() || bytes[i] == b'_') {
                    i += 1;
                }
                out.push(Token {
                    tok: Tok::Ident(src[start..i].to_string()),
                    start,
                    end: i,
                });
            }
            _ => {
                let ch = src[i..].chars().next().unwrap_or('?');
                i += ch.len_utf8();
                out.push(Token {
                    tok: Tok::Sym(ch),
                    start,
                    end: i,
                });
            }
        }
    }
    Ok(out)
}

/// A single-quoted string starting at `start`; returns the token and the offset after it.
fn string(src: &str, start: usize) -> Result<(Tok, usize), (usize, &'static str)> {
    let bytes = src.as_bytes();
    let mut i = start + 1;
    let mut value = String::new();
    let mut interpolated = false;
    while i < bytes.len() {
        match bytes[i] {
            b'\'' => {
                return Ok((
                    if interpolated {
                        Tok::Template
                    } else {
                        Tok::Str(value)
                    },
                    i + 1,
                ));
            }
            b'\n' => return Err((start, "unterminated string")),
            b'\\' => {
                let esc = *bytes.get(i + 1).ok_or((i, "unterminated escape"))?;
                match esc {
                    b'\\' => value.push('\\'),
                    b'\'' => value.push('\''),
                    b'n' => value.push('\n'),
                    b'r' => value.push('\r'),
                    b't' => value.push('\t'),
                    b'$' => value.push('$'),
                    b'u' => {
                        let rest = &src[i + 2..];
                        let close = rest.find('}').ok_or((i, "invalid unicode escape"))?;
                        let hex = rest.get(1..close).ok_or((i, "invalid unicode escape"))?;
                        let ch = u32::from_str_radix(hex, 16)
                            .ok()
                            .and_then(char::from_u32)
                            .ok_or((i, "invalid unicode escape"))?;
                        value.push(ch);
                        i += close + 1;
                    }
                    _ => return Err((i, "unknown escape sequence")),
                }
                i += 2;
            }
            b'$' if bytes.get(i + 1) == Some(&b'{') => {
                interpolated = true;
                // Skip the interpolated expression, which may itself hold strings and braces.
                let mut depth = 0usize;
                i += 1;
                while i < bytes.len() {
                    match bytes[i] {
                        b'{' => depth += 1,
                        b'}' => {
                            depth -= 1;
                            if depth == 0 {
                                break;
                            }
                        }
                        b'\'' => {
                            let (_, end) = string(src, i)?;
                            i = end - 1;
                        }
                        _ => {}
                    }
                    i += 1;
                }
                i += 1;
            }
            _ => {
                let ch = src[i..].chars().next().unwrap_or('?');
                value.push(ch);
                i += ch.len_utf8();
            }
        }
    }
    Err((start, "unterminated string"))
}

/// A parsed expression: a JSON literal, or source text the catalog does not evaluate.
#[derive(Debug, Clone, PartialEq)]
enum Expr {
    Literal(Value),
    Source(String),
}

struct Parser<'a> {
    src: &'a str,
    toks: Vec<Token>,
    pos: usize,
}

impl Parser<'_> {
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.pos).map(|t| &t.tok)
    }

    fn next(&mut self) -> Option<Tok> {
        let t = self.toks.get(self.pos).map(|t| t.tok.clone());
        self.pos += 1;
        t
    }

    fn skip_newlines(&mut self) {
        while self.peek() == Some(&Tok::Newline) {
            self.pos += 1;
        }
    }

    fn error(&self, what: &str) -> String {
        let at = self
            .toks
            .get(self.pos)
            .map(|t| t.start)
            .unwrap_or(self.src.len());
        let (l, c) = position(self.src, at);
        format!("invalid Bicep at line {l}, column {c}: {what}")
    }

    /// Skips to the end of the current statement: a newline outside brackets.
    fn skip_statement(&mut self) {
        let mut depth = 0i32;
        while let Some(t) = self.next() {
            match t {
                Tok::Sym('(' | '[' | '{') => depth += 1,
                Tok::Sym(')' | ']' | '}') => depth -= 1,
                Tok::Newline if depth <= 0 => return,
                _ => {}
            }
        }
    }

    /// An expression ending at a newline, `,`, or a closing bracket outside nested brackets.
    fn expr(&mut self) -> Expr {
        let start = self.pos;
        if let Some(lit) = self.literal()
            && self.at_expr_end()
        {
            return Expr::Literal(lit);
        }
        self.pos = start;
        let mut depth = 0i32;
        while let Some(t) = self.peek() {
            match t {
                Tok::Sym('(' | '[' | '{') => depth += 1,
                Tok::Sym(')' | ']' | '}') if depth == 0 => break,
                Tok::Sym(')' | ']' | '}') => depth -= 1,
                Tok::Newline | Tok::Sym(',') if depth == 0 => break,
                _ => {}
            }
            self.pos += 1;
        }
        let from = self.toks.get(start).map(|t| t.start).unwrap_or(0);
        let to = self
            .toks
            .get(self.pos.saturating_sub(1))
            .map(|t| t.end)
            .unwrap_or(from);
        Expr::Source(self.src[from..to.max(from)].trim().to_string())
    }

    fn at_expr_end(&self) -> bool {
        matches!(
            self.peek(),
            None | Some(Tok::Newline | Tok::Sym(',' | ')' | ']' | '}'))
        )
    }

    /// A JSON literal, or None (position then undefined: callers reset it).
    fn literal(&mut self) -> Option<Value> {
        match self.next()? {
            Tok::Str(s) => Some(Value::String(s)),
            Tok::Number(n) => Some(number(n)),
            Tok::Sym('-') => match self.next()? {
                Tok::Number(n) => Some(number(-n)),
                _ => None,
            },
            Tok::Ident(i) if i == "true" => Some(Value::Bool(true)),
            Tok::Ident(i) if i == "false" => Some(Value::Bool(false)),
            Tok::Ident(i) if i == "null" => Some(Value::Null),
            Tok::Sym('[') => {
                let mut items = Vec::new();
                loop {
                    self.skip_newlines();
                    if self.peek() == Some(&Tok::Sym(']')) {
                        self.pos += 1;
                        return Some(Value::Array(items));
                    }
                    items.push(self.literal()?);
                    if self.peek() == Some(&Tok::Sym(',')) {
                        self.pos += 1;
                    }
                }
            }
            Tok::Sym('{') => {
                let mut map = serde_json::Map::new();
                loop {
                    self.skip_newlines();
                    let key = match self.next()? {
                        Tok::Sym('}') => return Some(Value::Object(map)),
                        Tok::Ident(k) | Tok::Str(k) => k,
                        _ => return None,
                    };
                    if self.next()? != Tok::Sym(':') {
                        return None;
                    }
                    map.insert(key, self.literal()?);
                    if self.peek() == Some(&Tok::Sym(',')) {
                        self.pos += 1;
                    }
                }
            }
            _ => None,
        }
    }

    /// `@name(args)` after the `@`; returns the name (without `sys.`) and its arguments.
    fn decorator(&mut self) -> Result<(String, Vec<Expr>), String> {
        let mut name = match self.next() {
            Some(Tok::Ident(n)) => n,
            _ => return Err(self.error("expected a decorator name after @")),
        };
        if self.peek() == Some(&Tok::Sym('.')) {
            self.pos += 1;
            match self.next() {
                Some(Tok::Ident(n)) => name = n,
                _ => return Err(self.error("expected a name after '.'")),
            }
        }
        if self.next() != Some(Tok::Sym('(')) {
            return Err(self.error(&format!("expected '(' after @{name}")));
        }
        let mut args = Vec::new();
        loop {
            self.skip_newlines();
            match self.peek() {
                Some(Tok::Sym(')')) => {
                    self.pos += 1;
                    return Ok((name, args));
                }
                None => return Err(self.error(&format!("unterminated @{name}("))),
                _ => {}
            }
            args.push(self.expr());
            self.skip_newlines();
            if self.peek() == Some(&Tok::Sym(',')) {
                self.pos += 1;
            }
        }
    }
}

fn number(n: f64) -> Value {
    if n.fract() == 0.0 && n.abs() < 9e15 {
        Value::from(n as i64)
    } else {
        serde_json::Number::from_f64(n)
            .map(Value::Number)
            .unwrap_or(Value::Null)
    }
}

/// Every `param` declaration of a Bicep source, with its decorators applied.
fn parameters(src: &str) -> Result<Vec<ParamSpec>, String> {
    let toks = tokenize(src)?;
    let mut p = Parser { src, toks, pos: 0 };
    let mut params = Vec::new();
    let mut decorators: Vec<(String, Vec<Expr>)> = Vec::new();
    loop {
        p.skip_newlines();
        match p.peek() {
            None => break,
            Some(Tok::Sym('@')) => {
                p.pos += 1;
                decorators.push(p.decorator()?);
            }
            Some(Tok::Ident(kw)) if kw == "param" => {
                p.pos += 1;
                let name = match p.next() {
                    Some(Tok::Ident(n)) => n,
                    _ => return Err(p.error("expected a parameter name after 'param'")),
                };
                let spec = param(&mut p, &name, std::mem::take(&mut decorators))?;
                params.push(spec);
            }
            Some(_) => {
                decorators.clear();
                p.skip_statement();
            }
        }
    }
    Ok(params)
}

fn param(
    p: &mut Parser<'_>,
    name: &str,
    decorators: Vec<(String, Vec<Expr>)>,
) -> Result<ParamSpec, String> {
    let type_start = p.toks.get(p.pos).map(|t| t.start).unwrap_or(0);
    let base = match p.next() {
        Some(Tok::Ident(t)) => t,
        Some(Tok::Str(_)) => "string".into(), // a string-literal union type
        _ => return Err(p.error(&format!("expected a type for parameter {name}"))),
    };
    let mut is_array = base == "array";
    let mut nullable = false;
    loop {
        match p.peek() {
            Some(Tok::Sym('['))
                if matches!(p.toks.get(p.pos + 1).map(|t| &t.tok), Some(Tok::Sym(']'))) =>
            {
                p.pos += 2;
                is_array = true;
            }
            Some(Tok::Sym('?')) => {
                p.pos += 1;
                nullable = true;
            }
            Some(Tok::Sym('|')) => {
                // Union of literals: `'a' | 'b'`.
                p.pos += 1;
                p.next();
            }
            _ => break,
        }
    }
    let type_end = p
        .toks
        .get(p.pos.saturating_sub(1))
        .map(|t| t.end)
        .unwrap_or(type_start);
    let type_text = p.src[type_start..type_end].trim().to_string();
    let param_type = if is_array {
        ParamType::List
    } else {
        match base.as_str() {
            "string" => ParamType::String,
            "int" => ParamType::Number,
            "bool" => ParamType::Bool,
            "object" => ParamType::Object,
            _ => ParamType::Any,
        }
    };
    let mut spec = ParamSpec::new(name, param_type, type_text);
    spec.required = !nullable;
    if p.peek() == Some(&Tok::Sym('=')) {
        p.pos += 1;
        spec.required = false;
        match p.expr() {
            Expr::Literal(v) => spec.default = Some(v),
            Expr::Source(s) => spec.default_expression = Some(s),
        }
    }
    for (decorator, args) in decorators {
        let first = args.first();
        let lit = |e: Option<&Expr>| match e {
            Some(Expr::Literal(v)) => Some(v.clone()),
            _ => None,
        };
        match decorator.as_str() {
            "description" => {
                if let Some(Value::String(d)) = lit(first) {
                    spec.description = d;
                }
            }
            "allowed" => {
                if let Some(Value::Array(values)) = lit(first) {
                    spec.allowed_values = Some(values);
                }
            }
            "minLength" => spec.min_length = lit(first).and_then(|v| v.as_u64()),
            "maxLength" => spec.max_length = lit(first).and_then(|v| v.as_u64()),
            "minValue" => spec.min_value = lit(first).and_then(|v| v.as_f64()),
            "maxValue" => spec.max_value = lit(first).and_then(|v| v.as_f64()),
            "secure" => spec.sensitive = true,
            _ => {}
        }
    }
    p.skip_statement();
    Ok(spec)
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
        assert!(err.contains("unterminated @description("), "{err}");
    }
}
