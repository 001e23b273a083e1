//! The YAML files `loadYamlContent` reads, as the JSON value the official compiler inlines.
//!
//! The official compiler reads the first document of the file into untyped objects and turns
//! them into JSON: mapping keys are the keys' text, a quoted (or `!!str`) scalar is a string,
//! and a plain scalar is null (`~`, `null`, empty), a boolean (`true`/`false`, any case), an
//! integer (decimal, `0x`, `0o`, `0b`, a sign, `_` separators), a floating-point number, or else
//! a string. Duplicate keys and an empty document are errors there too.
//!
//! Aliases (`*a`) are expanded, as the official compiler does, with a bound on the values the
//! expansion may add ([`MAX_ALIASED_VALUES`]: the "billion laughs" stops there).
//!
//! What this reader does not take is refused rather than guessed: merge keys (`<<`), tags
//! other than `!!str`, infinities and NaN, and nesting deeper than
//! [`MAX_DEPTH`]. The parser is event based and the tree is built without recursion, so
//! neither the file's size nor its shape can exhaust the stack.

use saphyr_parser::{Event, Parser, ScalarStyle, Span, Tag};
use std::collections::HashMap;

use serde_json::{Map, Value};

/// The deepest nesting of mappings and sequences read (the official reader stops at 64).
pub const MAX_DEPTH: usize = 60;

/// How many values (scalars, mappings, sequences) aliases may copy in all.
pub const MAX_ALIASED_VALUES: usize = 100_000;

/// Why a YAML file gives no value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum YamlError {
    /// Not YAML, or YAML the official compiler refuses too, in words.
    Invalid(String),
    /// A construct this reader does not take (plural, for "... are not supported").
    Unsupported(String),
}

enum Frame {
    /// A sequence, its anchor id (0: none) and how many values it holds in all.
    Seq(Vec<Value>, usize, usize),
    /// A mapping, the key whose value comes next, its anchor id and its values in all.
    Map(Map<String, Value>, Option<String>, usize, usize),
}

impl Frame {
    fn add(&mut self, value: Value, size: usize) -> Result<(), YamlError> {
        match self {
            Frame::Seq(items, _, n) => {
                items.push(value);
                *n += size;
            }
            Frame::Map(map, key, _, n) => {
                let Some(key) = key.take() else {
                    return Err(YamlError::Invalid("a mapping value without a key".into()));
                };
                map.insert(key, value);
                *n += size;
            }
        }
        Ok(())
    }
}

fn position(span: Span) -> String {
    format!("line {} column {}", span.start.line(), span.start.col() + 1)
}

/// The value of the first document of `text`.
pub fn parse(text: &str) -> Result<Value, YamlError> {
    let mut stack: Vec<Frame> = Vec::new();
    let mut first: Option<Value> = None;
    let mut documents = 0usize;
    // Anchored values and their sizes, by anchor id; what aliases have copied so far.
    let mut anchors: HashMap<usize, (Value, usize)> = HashMap::new();
    let mut aliased = 0usize;
    for event in Parser::new_from_str(text) {
        let (event, span) = event.map_err(|e| YamlError::Invalid(e.to_string()))?;
        match event {
            Event::DocumentStart(_) => {
                documents += 1;
                continue;
            }
            Event::Nothing | Event::StreamStart | Event::StreamEnd | Event::DocumentEnd => {
                continue;
            }
            _ => {}
        }
        // Later documents are only checked to be YAML (the official reader parses the stream).
        if documents > 1 {
            continue;
        }
        let at_key = matches!(stack.last(), Some(Frame::Map(_, None, ..)));
        let (value, size) = match event {
            Event::Alias(id) => {
                if at_key {
                    return Err(YamlError::Invalid(format!(
                        "an alias as a mapping key at {}",
                        position(span)
                    )));
                }
                let Some((value, size)) = anchors.get(&id) else {
                    return Err(YamlError::Invalid(format!(
                        "an alias of an unknown or unfinished anchor at {}",
                        position(span)
                    )));
                };
                aliased += size;
                if aliased > MAX_ALIASED_VALUES {
                    return Err(YamlError::Unsupported(format!(
                        "YAML aliases copying more than {MAX_ALIASED_VALUES} values (at {})",
                        position(span)
                    )));
                }
                (value.clone(), *size)
            }
            Event::Scalar(text, style, anchor, tag) => {
                if let Some(Frame::Map(map, key @ None, ..)) = stack.last_mut() {
                    if text == "<<" {
                        return Err(YamlError::Unsupported(format!(
                            "YAML merge keys ('<<', at {})",
                            position(span)
                        )));
                    }
                    if map.contains_key(text.as_ref()) {
                        return Err(YamlError::Invalid(format!(
                            "duplicate key '{text}' at {}",
                            position(span)
                        )));
                    }
                    *key = Some(text.into_owned());
                    continue;
                }
                let value = scalar(&text, style, tag.as_deref()).map_err(|e| match e {
                    YamlError::Invalid(m) => {
                        YamlError::Invalid(format!("{m} at {}", position(span)))
                    }
                    YamlError::Unsupported(m) => {
                        YamlError::Unsupported(format!("{m} (at {})", position(span)))
                    }
                })?;
                if anchor != 0 {
                    anchors.insert(anchor, (value.clone(), 1));
                }
                (value, 1)
            }
            Event::SequenceStart(anchor, ref tag) | Event::MappingStart(anchor, ref tag) => {
                if at_key {
                    return Err(YamlError::Invalid(format!(
                        "a mapping key that is not a scalar at {}",
                        position(span)
                    )));
                }
                if let Some(tag) = tag {
                    return Err(YamlError::Unsupported(format!(
                        "YAML tags on collections ('{tag}', at {})",
                        position(span)
                    )));
                }
                if stack.len() >= MAX_DEPTH {
                    return Err(YamlError::Unsupported(format!(
                        "YAML nested more than {MAX_DEPTH} levels deep (at {})",
                        position(span)
                    )));
                }
                stack.push(if matches!(event, Event::SequenceStart(..)) {
                    Frame::Seq(Vec::new(), anchor, 1)
                } else {
                    Frame::Map(Map::new(), None, anchor, 1)
                });
                continue;
            }
            Event::SequenceEnd | Event::MappingEnd => {
                let (value, anchor, size) = match stack.pop() {
                    Some(Frame::Seq(items, anchor, size)) => (Value::Array(items), anchor, size),
                    Some(Frame::Map(map, _, anchor, size)) => (Value::Object(map), anchor, size),
                    None => return Err(YamlError::Invalid("unbalanced YAML events".into())),
                };
                if anchor != 0 {
                    anchors.insert(anchor, (value.clone(), size));
                }
                (value, size)
            }
            Event::Nothing
            | Event::StreamStart
            | Event::StreamEnd
            | Event::DocumentStart(_)
            | Event::DocumentEnd => continue,
        };
        match stack.last_mut() {
            None => {
                if first.is_none() {
                    first = Some(value);
                }
            }
            Some(frame) => frame.add(value, size)?,
        }
    }
    match first {
        None | Some(Value::Null) => Err(YamlError::Invalid("the file holds no YAML value".into())),
        Some(v) => Ok(v),
    }
}

/// The value of one scalar (not a key).
fn scalar(text: &str, style: ScalarStyle, tag: Option<&Tag>) -> Result<Value, YamlError> {
    if let Some(tag) = tag {
        if tag.is_yaml_core_schema() && tag.suffix == "str" {
            return Ok(Value::String(text.to_string()));
        }
        return Err(YamlError::Unsupported(format!(
            "YAML tags other than !!str ('{tag}')"
        )));
    }
    if style != ScalarStyle::Plain {
        return Ok(Value::String(text.to_string()));
    }
    let trimmed = text.trim();
    if trimmed.is_empty() || trimmed == "~" || trimmed.eq_ignore_ascii_case("null") {
        return Ok(Value::Null);
    }
    if trimmed.eq_ignore_ascii_case("true") {
        return Ok(Value::Bool(true));
    }
    if trimmed.eq_ignore_ascii_case("false") {
        return Ok(Value::Bool(false));
    }
    let cleaned: String = trimmed.chars().filter(|c| *c != '_').collect();
    match integer(&cleaned) {
        Integer::Value(n) => return Ok(Value::from(n)),
        Integer::Overflow => {
            return Err(YamlError::Invalid(format!(
                "'{text}' is an integer too large to read"
            )));
        }
        Integer::Not => {}
    }
    if is_float(&cleaned) {
        // A number (the compiler refuses it where it is used: it writes no fractions); .NET's
        // infinities and NaN have no JSON form here.
        return cleaned
            .parse::<f64>()
            .ok()
            .and_then(serde_json::Number::from_f64)
            .map(Value::Number)
            .ok_or_else(|| YamlError::Unsupported(format!("infinite and NaN numbers ('{text}')")));
    }
    Ok(Value::String(text.to_string()))
}

enum Integer {
    Value(i64),
    /// A `0x`/`0o`/`0b` number beyond 64 bits (the official reader fails on it).
    Overflow,
    Not,
}

/// `s` (without `_`) as an integer the official reader takes.
fn integer(s: &str) -> Integer {
    let (negative, digits) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    if digits.is_empty() {
        return Integer::Not;
    }
    let radix = match digits.get(..2) {
        Some("0x" | "0X") => 16,
        Some("0o" | "0O") => 8,
        Some("0b" | "0B") => 2,
        _ => 10,
    };
    let magnitude = if radix == 10 {
        if !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Integer::Not;
        }
        match digits.parse::<u64>() {
            Ok(m) => m,
            // The official reader then reads it as a floating-point number.
            Err(_) => return Integer::Not,
        }
    } else {
        let rest = &digits[2..];
        if rest.is_empty() || !rest.chars().all(|c| c.is_digit(radix)) {
            return Integer::Not;
        }
        match u64::from_str_radix(rest, radix) {
            Ok(m) => m,
            Err(_) => return Integer::Overflow,
        }
    };
    let value = if negative {
        0i64.checked_sub_unsigned(magnitude)
    } else {
        i64::try_from(magnitude).ok()
    };
    match value {
        Some(n) => Integer::Value(n),
        // Out of range: a floating-point number for the official reader.
        None => Integer::Not,
    }
}

/// Whether .NET reads `s` (without `_`) as a floating-point number: digits with a point and an
/// exponent, or infinity and NaN as YAML and .NET write them.
fn is_float(s: &str) -> bool {
    let lower = s.to_ascii_lowercase();
    let unsigned = lower
        .strip_prefix('-')
        .or_else(|| lower.strip_prefix('+'))
        .unwrap_or(&lower);
    if matches!(unsigned, ".inf" | ".nan" | "infinity" | "nan" | "∞") {
        return true;
    }
    let (mantissa, exponent) = match unsigned.split_once('e') {
        Some((m, e)) => (m, Some(e)),
        None => (unsigned, None),
    };
    let (whole, fraction) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let digits = |p: &str| p.bytes().all(|b| b.is_ascii_digit());
    if whole.is_empty() && fraction.is_empty() || !digits(whole) || !digits(fraction) {
        return false;
    }
    match exponent {
        None => true,
        Some(e) => {
            let e = e.strip_prefix(['+', '-']).unwrap_or(e);
            !e.is_empty() && digits(e)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ok(text: &str) -> Value {
        parse(text).unwrap_or_else(|e| panic!("{text}: {e:?}"))
    }

    #[test]
    fn scalars_resolve_as_the_official_reader_does() {
        let v = ok("a: 1\n\
             b: -0x10\n\
             c: 0o17\n\
             d: 0b101\n\
             e: 1_000\n\
             f: TRUE\n\
             g: False\n\
             h: ~\n\
             i:\n\
             j: Null\n\
             k: '1'\n\
             l: \"true\"\n\
             m: !!str 12\n\
             n: yes\n\
             o: 0xZZ\n\
             p: 007\n\
             q: 1.2.3\n\
             r: text, with comma\n\
             s: |\n  line1\n  line2\n\
             t: [1, x, {u: v}]\n\
             1: key as text\n");
        assert_eq!(
            v,
            json!({"a": 1, "b": -16, "c": 15, "d": 5, "e": 1000, "f": true, "g": false,
                   "h": null, "i": null, "j": null, "k": "1", "l": "true", "m": "12",
                   "n": "yes", "o": "0xZZ", "p": 7, "q": "1.2.3", "r": "text, with comma",
                   "s": "line1\nline2\n", "t": [1, "x", {"u": "v"}], "1": "key as text"})
        );
        let keys: Vec<&String> = v
            .as_object()
            .map(|m| m.keys().collect())
            .unwrap_or_default();
        assert_eq!(keys.first().map(|k| k.as_str()), Some("a"));
        assert_eq!(keys.last().map(|k| k.as_str()), Some("1"));
        assert_eq!(ok("- a\n- 2\n"), json!(["a", 2]));
        assert_eq!(ok("just text"), json!("just text"));
        assert_eq!(ok("--- {a: 1}\n--- {b: 2}\n"), json!({"a": 1}));
        assert_eq!(ok("-9223372036854775808"), json!(i64::MIN));
        assert_eq!(ok("&anchor {a: 1}"), json!({"a": 1}));
        // Aliases copy the anchored value (the official compiler's issues 20067 and 20119).
        assert_eq!(
            ok(
                "defs:\n  ex: &EX\n    name: ex\n    on: true\nitems:\n  ex: *EX\n\
                src: &CIDR 10.0.0.0/17\nalias: *CIDR\n"
            ),
            json!({"defs": {"ex": {"name": "ex", "on": true}}, "items": {"ex": {"name": "ex", "on": true}},
                   "src": "10.0.0.0/17", "alias": "10.0.0.0/17"})
        );
    }

    #[test]
    fn what_is_not_taken_is_an_error() {
        let unsupported = |t: &str| match parse(t) {
            Err(YamlError::Unsupported(m)) => m,
            other => panic!("{}: {other:?}", &t[..t.len().min(100)]),
        };
        let invalid = |t: &str| match parse(t) {
            Err(YamlError::Invalid(m)) => m,
            other => panic!("{t}: {other:?}"),
        };
        assert!(unsupported("a: &x {b: 1}\nc:\n  <<: *x\n").contains("merge keys"));
        assert!(invalid("a: &x [*x]\n").contains("unknown or unfinished anchor"));
        assert!(invalid("a: &x k\n*x : 1\n").contains("alias as a mapping key"));
        for t in ["a: .inf", "a: -.NaN", "a: Infinity"] {
            assert!(unsupported(t).contains("infinite and NaN numbers"), "{t}");
        }
        // Fractions are numbers (refused where they are used: the compiler writes none).
        assert_eq!(
            ok("a: 1.5\nb: 1e3\nc: 99999999999999999999\nd: .5\ne: 1_0.5\n"),
            json!({"a": 1.5, "b": 1000.0, "c": 1e20, "d": 0.5, "e": 10.5})
        );
        assert!(unsupported("a: !!int 3\n").contains("tags"));
        assert!(unsupported("a: !custom {b: 1}\n").contains("tags"));
        assert!(invalid("a: 1\na: 2\n").contains("duplicate key 'a' at line 2 column 1"));
        assert!(invalid("a: 0xFFFFFFFFFFFFFFFFFF\n").contains("too large"));
        assert!(invalid("").contains("no YAML value"));
        assert!(invalid("~\n").contains("no YAML value"));
        assert!(invalid("? [a]\n: 1\n").contains("not a scalar"));
        assert!(matches!(parse("a: [1, 2\n"), Err(YamlError::Invalid(_))));
        assert!(matches!(parse("a: 1\n--- [\n"), Err(YamlError::Invalid(_))));
        // Bounded depth, without recursion, whatever the input.
        let deep = format!("{}{}", "[".repeat(100), "]".repeat(100));
        assert!(unsupported(&deep).contains("nested more than"));
        let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
        assert!(parse(&deep).is_err());
        let deep = (0..200)
            .map(|i| format!("{}k:\n", " ".repeat(i)))
            .collect::<String>();
        assert!(unsupported(&deep).contains("nested more than"));
        // The billion laughs: refused once the copies pass the bound, long before 2^30.
        let mut laughs = String::from("a0: &a0 [lol, lol]\n");
        for i in 1..30 {
            let p = i - 1;
            laughs.push_str(&format!("a{i}: &a{i} [*a{p}, *a{p}]\n"));
        }
        assert!(unsupported(&laughs).contains("aliases copying more than"));
    }
}
