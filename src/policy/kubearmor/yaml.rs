//! The YAML model: every document parsed by serde-saphyr into a tree of [`Node`]s that keeps each value's
//! line and column and each mapping's key order, so that reports and errors can point into the file and
//! list things in the order they were written. A key written twice in one mapping is kept twice in the
//! tree; reading it gives the last one, as Kubernetes tooling reads it, and [`duplicate_keys`] lists them.

use std::collections::{HashMap, HashSet};
use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_saphyr::Spanned;

/// A YAML value at a place in its file.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub value: Value,
    /// 1-based; 0 when the parser could not tell.
    pub line: usize,
    pub col: usize,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Bool(bool),
    Int(i128),
    Float(f64),
    Str(String),
    Seq(Vec<Node>),
    /// Keys in document order.
    Map(Vec<(Node, Node)>),
}

impl Node {
    /// The value of `key` in a mapping (of its last occurrence).
    pub fn get(&self, key: &str) -> Option<&Node> {
        self.raw_entries().iter().rev().find(|(k, _)| k.key_text() == key).map(|(_, v)| v)
    }

    /// A mapping's entries as (key text, value), in document order, a key written twice only once (the
    /// last, at its place); nothing for other values.
    pub fn entries(&self) -> impl Iterator<Item = (String, &Node)> {
        let mut seen = HashSet::new();
        let mut out: Vec<(String, &Node)> = self
            .raw_entries()
            .iter()
            .rev()
            .map(|(k, v)| (k.key_text(), v))
            .filter(|(k, _)| seen.insert(k.clone()))
            .collect();
        out.reverse();
        out.into_iter()
    }

    /// The key node of `key` in a mapping (its last occurrence), for its place in the file.
    pub fn key_node(&self, key: &str) -> Option<&Node> {
        self.raw_entries().iter().rev().find(|(k, _)| k.key_text() == key).map(|(k, _)| k)
    }

    fn raw_entries(&self) -> &[(Node, Node)] {
        match &self.value {
            Value::Map(m) => m,
            _ => &[],
        }
    }

    /// A key as Kubernetes reads it (YAML to JSON): its text, so `1` and `"1"` are the same key.
    fn key_text(&self) -> String {
        self.scalar_text().unwrap_or_else(|| self.value.kind().to_owned())
    }

    pub fn is_null(&self) -> bool {
        matches!(self.value, Value::Null)
    }

    /// A scalar as text, the way a Kubernetes string field reads it (numbers and booleans included).
    pub fn scalar_text(&self) -> Option<String> {
        match &self.value {
            Value::Str(s) => Some(s.clone()),
            Value::Bool(b) => Some(b.to_string()),
            Value::Int(i) => Some(i.to_string()),
            Value::Float(f) => Some(f.to_string()),
            Value::Null | Value::Seq(_) | Value::Map(_) => None,
        }
    }
}

impl Value {
    /// What the value is, for error messages.
    pub fn kind(&self) -> &'static str {
        match self {
            Value::Null => "null",
            Value::Bool(_) => "a boolean",
            Value::Int(_) => "a number",
            Value::Float(_) => "a number",
            Value::Str(_) => "a string",
            Value::Seq(_) => "a list",
            Value::Map(_) => "a mapping",
        }
    }
}

fn node(s: Spanned<Value>) -> Node {
    let at = s.referenced;
    Node {
        value: s.value,
        line: usize::try_from(at.line()).unwrap_or(0),
        col: usize::try_from(at.column()).unwrap_or(0),
    }
}

impl<'de> Deserialize<'de> for Value {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(ValueVisitor)
    }
}

struct ValueVisitor;

impl<'de> Visitor<'de> for ValueVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any YAML value")
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Int(v.into()))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Value, E> {
        Ok(Value::Int(v.into()))
    }

    fn visit_i128<E: de::Error>(self, v: i128) -> Result<Value, E> {
        Ok(Value::Int(v))
    }

    fn visit_u128<E: de::Error>(self, v: u128) -> Result<Value, E> {
        Ok(i128::try_from(v).map_or_else(|_| Value::Str(v.to_string()), Value::Int))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value, E> {
        Ok(Value::Float(v))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Value, E> {
        Ok(Value::Str(v.to_owned()))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Value, E> {
        Ok(Value::Str(v))
    }

    fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<Value, E> {
        Ok(Value::Str(String::from_utf8_lossy(v).into_owned()))
    }

    fn visit_none<E: de::Error>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_unit<E: de::Error>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        Value::deserialize(d)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut out = Vec::new();
        while let Some(item) = seq.next_element::<Spanned<Value>>()? {
            out.push(node(item));
        }
        Ok(Value::Seq(out))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = Vec::new();
        while let Some(key) = map.next_key::<Spanned<Value>>()? {
            let value = map.next_value::<Spanned<Value>>()?;
            out.push((node(key), node(value)));
        }
        Ok(Value::Map(out))
    }
}

/// A mapping key written again later in the same mapping: the later entry replaces this one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Duplicate {
    /// The key's path in the document (`spec.process.matchPaths`).
    pub path: String,
    /// Where the replaced key is.
    pub line: usize,
    pub col: usize,
    /// Where the key that replaces it is.
    pub later_line: usize,
}

/// Every key of `node` (at `path`) written twice in one mapping, in document order, looking inside the
/// values that are read (the last of each key) when `descend`.
pub fn duplicate_keys(node: &Node, path: &str, descend: bool, out: &mut Vec<Duplicate>) {
    let join = |key: &str| if path.is_empty() { key.to_owned() } else { format!("{path}.{key}") };
    match &node.value {
        Value::Map(entries) => {
            let mut last: HashMap<String, &Node> = HashMap::new();
            for (k, _) in entries {
                let text = k.key_text();
                if let Some(earlier) = last.insert(text.clone(), k) {
                    out.push(Duplicate { path: join(&text), line: earlier.line, col: earlier.col, later_line: k.line });
                }
            }
            if descend {
                for (k, v) in node.entries() {
                    duplicate_keys(v, &join(&k), true, out);
                }
            }
        }
        Value::Seq(items) if descend => {
            for (i, item) in items.iter().enumerate() {
                duplicate_keys(item, &format!("{path}[{i}]"), true, out);
            }
        }
        _ => {}
    }
}

/// Where a YAML syntax error is, and what it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyntaxError {
    pub line: usize,
    pub col: usize,
    pub message: String,
}

/// The 1-based line where each document starts, empty ones included (serde-saphyr returns only the
/// non-empty documents; this numbers them as `kubectl` and editors count them).
pub fn document_lines(text: &str) -> Vec<usize> {
    use serde_saphyr::granit_parser::{Event, Parser};
    Parser::new_from_str(text)
        .map_while(Result::ok)
        .filter(|(event, _)| matches!(event, Event::DocumentStart(..)))
        .map(|(_, span)| span.start.line())
        .collect()
}

/// The 1-based number of the document that holds `line`, among those starting at `starts`.
pub fn document_number(starts: &[usize], line: usize) -> Option<usize> {
    Some(starts.iter().filter(|&&s| s <= line).count()).filter(|&n| n > 0)
}

/// How deep mappings and lists may nest. A KubeArmor policy nests at most 7 levels (a `fromSource` entry of a
/// process rule), 9 as an item of a `kind: List`. Each level costs the deserializer tens of kB of stack in a debug
/// build: under serde-saphyr's own limit (64), 60 nested lists overflowed a 2 MiB thread stack, an abort
/// that no error handling sees.
pub const MAX_DEPTH: usize = 24;

/// Every non-empty document of a (multi-document) YAML text, in order.
pub fn parse_documents(text: &str) -> Result<Vec<Node>, SyntaxError> {
    let mut budget = serde_saphyr::Budget::default();
    budget.max_depth = MAX_DEPTH;
    // Kubernetes tooling reads a key written twice as its last value; so does noexecd, and reports it.
    let options = serde_saphyr::options! {
        with_snippet: false,
        budget: Some(budget),
        duplicate_keys: serde_saphyr::DuplicateKeyPolicy::LastWins,
    };
    serde_saphyr::from_multiple_with_options::<Spanned<Value>>(text, options)
        .map(|docs| docs.into_iter().map(node).collect())
        .map_err(|e| {
            let (line, col) = e
                .location()
                .map_or((0, 0), |l| (usize::try_from(l.line()).unwrap_or(0), usize::try_from(l.column()).unwrap_or(0)));
            let mut message = match &e {
                serde_saphyr::Error::Budget { breach: serde_saphyr::budget::BudgetBreach::Depth { .. }, .. } => {
                    format!("mappings and lists nest deeper than {MAX_DEPTH} levels here (a KubeArmor policy needs fewer than 10)")
                }
                _ => e.to_string().lines().next().unwrap_or_default().trim().to_owned(),
            };
            if text.lines().any(|l| l.trim_start_matches(' ').starts_with('\t')) {
                message.push_str(" (YAML does not allow tabs for indentation: indent with spaces)");
            }
            SyntaxError { line, col, message }
        })
}
