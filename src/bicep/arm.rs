//! ARM template expressions: the tree the emitter builds and its text form
//! (`[format('{0}-x', parameters('p'))]`), following the official serializer's rules.

use serde_json::{Map, Value};

#[derive(Debug, Clone, PartialEq)]
pub enum Ax {
    Str(String),
    Int(i64),
    Bool(bool),
    Null,
    Call(String, Vec<Ax>),
    Prop(Box<Ax>, String),
    Index(Box<Ax>, Box<Ax>),
    /// Keys are string literals, or expressions for interpolated keys.
    Obj(Vec<(Ax, Ax)>),
    Arr(Vec<Ax>),
}

impl Ax {
    pub fn call(name: &str, args: Vec<Ax>) -> Ax {
        Ax::Call(name.to_string(), args)
    }

    pub fn str(s: &str) -> Ax {
        Ax::Str(s.to_string())
    }

    /// The value at a JSON position: literals stay JSON (recursively), anything else becomes
    /// an expression string `[...]`. A literal string starting with `[` is escaped as `[[`.
    pub fn to_json(&self) -> Value {
        match self {
            // ARM reads a string in brackets as an expression: a literal one is escaped.
            Ax::Str(s) if s.starts_with('[') && s.ends_with(']') => Value::String(format!("[{s}")),
            Ax::Str(s) => Value::String(s.clone()),
            Ax::Int(n) => Value::from(*n),
            Ax::Bool(b) => Value::Bool(*b),
            Ax::Null => Value::Null,
            Ax::Obj(props) => {
                let mut m = Map::new();
                for (k, v) in props {
                    let key = match k.to_json() {
                        Value::String(s) => s,
                        other => other.to_string(),
                    };
                    m.insert(key, v.to_json());
                }
                Value::Object(m)
            }
            Ax::Arr(items) => Value::Array(items.iter().map(Ax::to_json).collect()),
            other => Value::String(format!("[{}]", other.expression())),
        }
    }

    /// The expression text, without the outer brackets.
    pub fn expression(&self) -> String {
        let mut out = String::new();
        self.write(&mut out);
        out
    }

    fn write(&self, out: &mut String) {
        match self {
            Ax::Str(s) => {
                out.push('\'');
                out.push_str(&s.replace('\'', "''"));
                out.push('\'');
            }
            Ax::Int(n) if i32::try_from(*n).is_err() => {
                out.push_str(&format!("json('{n}')"));
            }
            Ax::Int(n) => out.push_str(&n.to_string()),
            Ax::Bool(true) => out.push_str("true()"),
            Ax::Bool(false) => out.push_str("false()"),
            Ax::Null => out.push_str("null()"),
            Ax::Call(name, args) => {
                out.push_str(name);
                out.push('(');
                for (i, a) in args.iter().enumerate() {
                    if i > 0 {
                        out.push_str(", ");
                    }
                    a.write(out);
                }
                out.push(')');
            }
            Ax::Prop(base, name) => {
                base.write(out);
                if is_identifier(name) {
                    out.push('.');
                    out.push_str(name);
                } else {
                    out.push('[');
                    Ax::Str(name.clone()).write(out);
                    out.push(']');
                }
            }
            Ax::Index(base, index) => {
                base.write(out);
                out.push('[');
                index.write(out);
                out.push(']');
            }
            Ax::Obj(props) => {
                let args = props
                    .iter()
                    .flat_map(|(k, v)| [k.clone(), v.clone()])
                    .collect();
                Ax::Call("createObject".into(), args).write(out);
            }
            Ax::Arr(items) => Ax::Call("createArray".into(), items.clone()).write(out),
        }
    }
}

fn is_identifier(s: &str) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literals_stay_json_and_expressions_are_bracketed() {
        let p = Ax::call("parameters", vec![Ax::str("name")]);
        assert_eq!(Ax::str("[x]").to_json(), Value::from("[[x]"));
        assert_eq!(
            Ax::call("format", vec![Ax::str("it's {0}"), p.clone()]).to_json(),
            Value::from("[format('it''s {0}', parameters('name'))]")
        );
        assert_eq!(
            Ax::Obj(vec![
                (Ax::str("a"), Ax::Bool(true)),
                (Ax::str("b"), Ax::Null)
            ])
            .expression(),
            "createObject('a', true(), 'b', null())"
        );
        assert_eq!(Ax::Int(2199023255552).expression(), "json('2199023255552')");
        assert_eq!(
            Ax::Prop(Box::new(p), "odd-name".into()).expression(),
            "parameters('name')['odd-name']"
        );
    }
}
