//! Bicep tokens: identifiers, integers, strings (with `${...}` interpolation lexed recursively),
//! multi-line strings, punctuation and significant newlines. Comments, a byte-order mark and
//! `#disable-next-line`-style directives are skipped.

use super::CompileError;

#[derive(Debug, Clone, PartialEq)]
pub enum Tok {
    Ident(String),
    Int(i64),
    /// A single-quoted string: literal text between interpolations (`parts.len() ==
    /// holes.len() + 1`).
    Str {
        parts: Vec<String>,
        holes: Vec<Vec<Token>>,
    },
    Newline,
    Punct(&'static str),
    /// Valid Bicep the compiler does not take (named), lexed whole so the rest can be read.
    Unsupported(&'static str),
    Eof,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Token {
    pub tok: Tok,
    /// Byte offsets in the source: where the token starts, and just after it.
    pub at: usize,
    pub end: usize,
}

const PUNCTS: &[&str] = &[
    "&&", "||", "==", "!=", "=~", "!~", "<=", ">=", "??", "::", ".?", "=>", "...", "{", "}", "[",
    "]", "(", ")", ",", ".", ":", "?", "@", "=", "!", "<", ">", "+", "-", "*", "/", "%", "^", "|",
];

pub fn tokenize(src: &str) -> Result<Vec<Token>, CompileError> {
    let mut lx = Lexer {
        src,
        i: 0,
        holes: 0,
    };
    if src.starts_with('\u{feff}') {
        lx.i = '\u{feff}'.len_utf8();
    }
    let mut out = lx.tokens(false)?;
    out.push(Token {
        tok: Tok::Eof,
        at: src.len(),
        end: src.len(),
    });
    Ok(out)
}

struct Lexer<'a> {
    src: &'a str,
    i: usize,
    /// Interpolations open around the current position (they are lexed recursively).
    holes: usize,
}

impl<'a> Lexer<'a> {
    fn err(&self, at: usize, msg: impl Into<String>) -> CompileError {
        CompileError::at(self.src, at, msg)
    }

    fn rest(&self) -> &'a str {
        &self.src[self.i..]
    }

    /// Tokens up to the end, or (in an interpolation) up to its closing `}`, consumed.
    fn tokens(&mut self, in_hole: bool) -> Result<Vec<Token>, CompileError> {
        let mut out = Vec::new();
        let mut depth = 0usize;
        let hole_start = self.i;
        loop {
            let rest = self.rest();
            let Some(c) = rest.chars().next() else {
                if in_hole {
                    return Err(self.err(hole_start, "unterminated string interpolation"));
                }
                return Ok(out);
            };
            let at = self.i;
            match c {
                ' ' | '\t' | '\r' => self.i += 1,
                '\n' => {
                    self.i += 1;
                    out.push(Token {
                        tok: Tok::Newline,
                        at,
                        end: self.i,
                    });
                }
                '/' if rest.starts_with("//") => {
                    self.i += rest.find('\n').unwrap_or(rest.len());
                }
                '/' if rest.starts_with("/*") => {
                    let end = rest[2..]
                        .find("*/")
                        .ok_or_else(|| self.err(at, "unterminated comment"))?;
                    self.i += 2 + end + 2;
                }
                '#' => {
                    // Compiler directives (`#disable-next-line BCP081`) apply to diagnostics only.
                    let word: String = rest[1..]
                        .chars()
                        .take_while(|c| c.is_ascii_alphanumeric() || *c == '-')
                        .collect();
                    if !(word.starts_with("disable-") || word.starts_with("restore-")) {
                        return Err(self.err(at, format!("unknown directive #{word}")));
                    }
                    self.i += rest.find('\n').unwrap_or(rest.len());
                }
                '$' if rest.trim_start_matches('$').starts_with("'''") => {
                    let open = rest.find("'''").unwrap_or(0) + 3;
                    let end = rest[open..]
                        .find("'''")
                        .ok_or_else(|| self.err(at, "unterminated multi-line string"))?;
                    self.i += open + end + 3;
                    out.push(Token {
                        tok: Tok::Unsupported("interpolated multi-line strings ($'''...''')"),
                        at,
                        end: self.i,
                    });
                }
                '\'' if rest.starts_with("'''") => {
                    let body = &rest[3..];
                    let mut end = body
                        .find("'''")
                        .ok_or_else(|| self.err(at, "unterminated multi-line string"))?;
                    // The closing delimiter is the last three quotes of a run (`''''a''''` is `'a'`).
                    while body[end + 3..].starts_with('\'') {
                        end += 1;
                    }
                    let mut text = &body[..end];
                    text = text
                        .strip_prefix("\r\n")
                        .or_else(|| text.strip_prefix('\n'))
                        .unwrap_or(text);
                    self.i += 3 + end + 3;
                    out.push(Token {
                        tok: Tok::Str {
                            parts: vec![text.to_string()],
                            holes: Vec::new(),
                        },
                        at,
                        end: self.i,
                    });
                }
                '\'' => {
                    let tok = self.string()?;
                    out.push(Token {
                        tok,
                        at,
                        end: self.i,
                    });
                }
                '0'..='9' => {
                    let len = rest
                        .find(|c: char| !c.is_ascii_digit())
                        .unwrap_or(rest.len());
                    if rest[len..].starts_with('.')
                        && rest[len + 1..].starts_with(|c: char| c.is_ascii_digit())
                    {
                        return Err(self.err(
                            at,
                            "decimal numbers are not supported by Bicep (use a string or json())",
                        ));
                    }
                    let n = rest[..len]
                        .parse::<i64>()
                        .map_err(|_| self.err(at, "integer out of range"))?;
                    self.i += len;
                    out.push(Token {
                        tok: Tok::Int(n),
                        at,
                        end: self.i,
                    });
                }
                c if c.is_ascii_alphabetic() || c == '_' => {
                    let len = rest
                        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                        .unwrap_or(rest.len());
                    self.i += len;
                    out.push(Token {
                        tok: Tok::Ident(rest[..len].to_string()),
                        at,
                        end: self.i,
                    });
                }
                _ => {
                    let Some(p) = PUNCTS.iter().find(|p| rest.starts_with(**p)) else {
                        return Err(self.err(at, format!("unexpected character {c:?}")));
                    };
                    if in_hole {
                        if *p == "{" {
                            depth += 1;
                        } else if *p == "}" {
                            if depth == 0 {
                                self.i += 1;
                                return Ok(out);
                            }
                            depth -= 1;
                        }
                    }
                    self.i += p.len();
                    out.push(Token {
                        tok: Tok::Punct(p),
                        at,
                        end: self.i,
                    });
                }
            }
        }
    }

    /// A single-quoted string at `self.i`.
    fn string(&mut self) -> Result<Tok, CompileError> {
        let start = self.i;
        self.i += 1;
        let mut parts = vec![String::new()];
        let mut holes = Vec::new();
        loop {
            let rest = self.rest();
            let Some(c) = rest.chars().next() else {
                return Err(self.err(start, "unterminated string"));
            };
            match c {
                '\'' => {
                    self.i += 1;
                    return Ok(Tok::Str { parts, holes });
                }
                '\n' | '\r' => return Err(self.err(start, "unterminated string")),
                '\\' => {
                    let esc = rest[1..]
                        .chars()
                        .next()
                        .ok_or_else(|| self.err(self.i, "unterminated escape"))?;
                    let current = parts.last_mut().expect("a part");
                    let mut len = 2;
                    match esc {
                        '\\' => current.push('\\'),
                        '\'' => current.push('\''),
                        'n' => current.push('\n'),
                        'r' => current.push('\r'),
                        't' => current.push('\t'),
                        '$' => current.push('$'),
                        'u' => {
                            let (code, n) = unicode_escape(rest)
                                .ok_or_else(|| self.err(self.i, "invalid unicode escape"))?;
                            len = n;
                            let ch = match code {
                                // A UTF-16 surrogate pair written as two escapes.
                                0xD800..=0xDBFF => unicode_escape(&rest[n..])
                                    .filter(|(low, _)| (0xDC00..=0xDFFF).contains(low))
                                    .and_then(|(low, m)| {
                                        len += m;
                                        char::from_u32(
                                            0x10000 + ((code - 0xD800) << 10) + (low - 0xDC00),
                                        )
                                    }),
                                _ => char::from_u32(code),
                            }
                            .ok_or_else(|| self.err(self.i, "invalid unicode escape"))?;
                            current.push(ch);
                        }
                        other => {
                            return Err(
                                self.err(self.i, format!("invalid escape sequence \\{other}"))
                            );
                        }
                    }
                    self.i += len;
                }
                '$' if rest.starts_with("${") => {
                    if self.holes >= 32 {
                        return Err(self.err(self.i, "interpolations nested too deeply"));
                    }
                    self.i += 2;
                    self.holes += 1;
                    let hole = self.tokens(true)?;
                    self.holes -= 1;
                    let mut hole = hole;
                    hole.push(Token {
                        tok: Tok::Eof,
                        at: self.i - 1,
                        end: self.i - 1,
                    });
                    holes.push(hole);
                    parts.push(String::new());
                }
                c => {
                    parts.last_mut().expect("a part").push(c);
                    self.i += c.len_utf8();
                }
            }
        }
    }
}

/// `\u{XXXX}` at the start of `s`: the code and the escape's length in bytes.
fn unicode_escape(s: &str) -> Option<(u32, usize)> {
    let rest = s.strip_prefix("\\u{")?;
    let close = rest.find('}')?;
    let code = u32::from_str_radix(&rest[..close], 16).ok()?;
    Some((code, 3 + close + 1))
}
