//! A YAML tree that remembers the line of every node, so an error in a rule that is valid
//! YAML (an unknown modifier, a bad timespan) still names its line.
//!
//! Built from yaml-rust2's event parser; anchors and aliases are resolved by copying.

use std::collections::HashMap;

use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::{Marker, TScalarStyle};

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Kind {
    Null,
    Bool(bool),
    /// The number as written, for string matching, and its value.
    Number(String, f64),
    String(String),
    Seq(Vec<Node>),
    Map(Vec<(String, Node)>),
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Node {
    pub kind: Kind,
    /// 1-based.
    pub line: usize,
}

impl Node {
    pub fn get(&self, key: &str) -> Option<&Node> {
        match &self.kind {
            Kind::Map(entries) => entries.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    /// The scalar as text (numbers and booleans as written); `None` for null and collections.
    pub fn as_text(&self) -> Option<String> {
        match &self.kind {
            Kind::String(s) => Some(s.clone()),
            Kind::Number(s, _) => Some(s.clone()),
            Kind::Bool(b) => Some(b.to_string()),
            _ => None,
        }
    }

    pub fn describe(&self) -> &'static str {
        match self.kind {
            Kind::Null => "null",
            Kind::Bool(_) => "a boolean",
            Kind::Number(..) => "a number",
            Kind::String(_) => "a string",
            Kind::Seq(_) => "a list",
            Kind::Map(_) => "a map",
        }
    }
}

/// A YAML syntax error: line (1-based) and reason.
#[derive(Debug)]
pub(crate) struct SyntaxError {
    pub line: usize,
    pub reason: String,
}

enum Open {
    Seq(Vec<Node>, usize, usize),
    Map(Vec<(String, Node)>, Option<String>, usize, usize),
}

#[derive(Default)]
struct Builder {
    stack: Vec<Open>,
    docs: Vec<Node>,
    anchors: HashMap<usize, Node>,
    error: Option<SyntaxError>,
}

impl Builder {
    fn push(&mut self, node: Node, anchor: usize) {
        if anchor != 0 {
            self.anchors.insert(anchor, node.clone());
        }
        match self.stack.last_mut() {
            None => self.docs.push(node),
            Some(Open::Seq(items, _, _)) => items.push(node),
            Some(Open::Map(entries, pending, _, _)) => match pending.take() {
                Some(key) => {
                    if entries.iter().any(|(k, _)| *k == key) && self.error.is_none() {
                        self.error = Some(SyntaxError {
                            line: node.line,
                            reason: format!("duplicate key `{key}`"),
                        });
                    }
                    entries.push((key, node));
                }
                None => match node.kind {
                    Kind::String(s) | Kind::Number(s, _) => *pending = Some(s),
                    Kind::Bool(b) => *pending = Some(b.to_string()),
                    Kind::Null => *pending = Some(String::new()),
                    _ => {
                        if self.error.is_none() {
                            self.error = Some(SyntaxError {
                                line: node.line,
                                reason: "a map key must be a scalar".into(),
                            });
                        }
                        *pending = Some(String::new());
                    }
                },
            },
        }
    }
}

fn scalar(value: String, style: TScalarStyle) -> Kind {
    if style != TScalarStyle::Plain {
        return Kind::String(value);
    }
    match value.as_str() {
        "" | "~" | "null" | "Null" | "NULL" => Kind::Null,
        "true" | "True" | "TRUE" => Kind::Bool(true),
        "false" | "False" | "FALSE" => Kind::Bool(false),
        _ => {
            let looks_numeric = value
                .chars()
                .next()
                .is_some_and(|c| c.is_ascii_digit() || c == '-' || c == '+' || c == '.');
            match value.parse::<f64>() {
                Ok(n) if looks_numeric && n.is_finite() => Kind::Number(value, n),
                _ => Kind::String(value),
            }
        }
    }
}

impl MarkedEventReceiver for Builder {
    fn on_event(&mut self, ev: Event, mark: Marker) {
        let line = mark.line().max(1);
        match ev {
            Event::Scalar(value, style, anchor, _) => {
                let kind = scalar(value, style);
                self.push(Node { kind, line }, anchor);
            }
            Event::Alias(id) => {
                let node = self.anchors.get(&id).cloned().unwrap_or(Node {
                    kind: Kind::Null,
                    line,
                });
                self.push(node, 0);
            }
            Event::SequenceStart(anchor, _) => self.stack.push(Open::Seq(Vec::new(), anchor, line)),
            Event::MappingStart(anchor, _) => {
                self.stack.push(Open::Map(Vec::new(), None, anchor, line))
            }
            Event::SequenceEnd | Event::MappingEnd => {
                let (node, anchor) = match self.stack.pop() {
                    Some(Open::Seq(items, anchor, line)) => (
                        Node {
                            kind: Kind::Seq(items),
                            line,
                        },
                        anchor,
                    ),
                    Some(Open::Map(entries, _, anchor, line)) => (
                        Node {
                            kind: Kind::Map(entries),
                            line,
                        },
                        anchor,
                    ),
                    None => return,
                };
                self.push(node, anchor);
            }
            _ => {}
        }
    }
}

/// Every document of a YAML stream (Sigma files may hold several, split by `---`).
pub(crate) fn parse_documents(text: &str) -> Result<Vec<Node>, SyntaxError> {
    let mut builder = Builder::default();
    let mut parser = Parser::new_from_str(text);
    parser.load(&mut builder, true).map_err(|e| SyntaxError {
        line: e.marker().line().max(1),
        reason: e.info().to_string(),
    })?;
    if let Some(e) = builder.error {
        return Err(e);
    }
    // An empty document (a trailing `---`) carries nothing.
    builder.docs.retain(|d| d.kind != Kind::Null);
    Ok(builder.docs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nodes_carry_their_lines_and_types() {
        let docs = parse_documents("a: 1\nb:\n  - x\n  - 'true'\nc: ~\nd: true\n").unwrap();
        assert_eq!(docs.len(), 1);
        let d = &docs[0];
        assert!(matches!(d.get("a").unwrap().kind, Kind::Number(_, n) if n == 1.0));
        let b = d.get("b").unwrap();
        assert_eq!(b.line, 3);
        let Kind::Seq(items) = &b.kind else { panic!() };
        assert_eq!(items[1].kind, Kind::String("true".into()));
        assert_eq!(items[1].line, 4);
        assert_eq!(d.get("c").unwrap().kind, Kind::Null);
        assert_eq!(d.get("d").unwrap().kind, Kind::Bool(true));
    }

    #[test]
    fn several_documents_and_aliases() {
        let docs = parse_documents("a: 1\n---\na: &x [1, 2]\nb: *x\n---\n").unwrap();
        assert_eq!(docs.len(), 2);
        assert!(matches!(docs[1].get("b").unwrap().kind, Kind::Seq(ref v) if v.len() == 2));
    }

    #[test]
    fn syntax_errors_and_duplicate_keys_have_lines() {
        let e = parse_documents("a: 1\nb: [1, 2\nc: 3\n").unwrap_err();
        assert!(e.line >= 2, "{e:?}");
        let e = parse_documents("a: 1\nb: 2\na: 3\n").unwrap_err();
        assert_eq!(e.line, 3);
        assert!(e.reason.contains("duplicate key"));
    }
}
