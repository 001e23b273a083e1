//! A native Bicep → ARM JSON compiler for the language of resource templates (params with
//! decorators, vars, resources with `parent`/`scope`/`dependsOn`/conditions, outputs, the
//! built-in functions), with the official compiler's output: a classic template (no
//! `languageVersion`) equal to its `main.json` apart from `metadata._generator`.
//!
//! Anything outside that subset (loops, modules, `existing`, user-defined types, lambdas,
//! imports, other target scopes...) is rejected with an error naming the construct and its line
//! and column; the compiler never guesses.

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
