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

/// Compiles Bicep source to an ARM template.
pub fn compile(src: &str) -> Result<Value, CompileError> {
    let tokens = lexer::tokenize(src)?;
    let stmts = syntax::parse(src, tokens)?;
    emit::emit(src, &stmts)
}
