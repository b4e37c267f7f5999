//! What a KubeArmor policy converts to, each value with its place in the YAML: read by `convert`, written
//! as TOML by `emit`.

use super::yaml::Node;

/// Where a value came from: its path in the document (`spec.process.matchPaths[0].path`) and position.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Src {
    pub path: String,
    pub line: usize,
    pub col: usize,
}

impl Src {
    pub fn at(path: impl Into<String>, node: &Node) -> Self {
        Self { path: path.into(), line: node.line, col: node.col }
    }
}

/// A value with the place it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct At<T> {
    pub value: T,
    pub src: Src,
}

/// `action`, `severity`, `tags`, `message` of one level.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Meta {
    /// Normalised: "Block", "Audit" or "Allow".
    pub action: Option<At<&'static str>>,
    pub severity: Option<At<u8>>,
    pub tags: Option<At<Vec<String>>>,
    pub message: Option<At<String>>,
}

impl Meta {
    pub fn is_empty(&self) -> bool {
        self.action.is_none() && self.severity.is_none() && self.tags.is_none() && self.message.is_none()
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Path(At<String>),
    Dir {
        dir: At<String>,
        recursive: Option<At<bool>>,
    },
    Pattern(At<String>),
    /// `execname`: a program's name in any directory.
    Name(At<String>),
}

/// One process or file rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    pub src: Src,
    pub target: Target,
    /// `readOnly`: file rules only.
    pub read_only: Option<At<bool>>,
    pub owner_only: Option<At<bool>>,
    pub from_source: Vec<At<String>>,
    pub meta: Meta,
}

/// A KubeArmorPolicy's containers (`metadata.namespace`, `spec.selector.matchLabels` and
/// `matchExpressions`), or a KubeArmorClusterPolicy's (its `matchExpressions`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Selector {
    /// `spec.selector`, or `spec` when there is none.
    pub src: Src,
    pub namespace: Option<At<String>>,
    /// (key, value) in document order.
    pub labels: Vec<(At<String>, At<String>)>,
    pub expressions: Vec<Expression>,
}

/// One `matchExpressions` entry, as written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expression {
    pub src: Src,
    pub key: At<String>,
    pub operator: At<String>,
    pub values: Vec<At<String>>,
}

/// One KubeArmorPolicy or KubeArmorHostPolicy, as far as noexecd enforces it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    pub kind: String,
    pub name: At<String>,
    pub doc: String,
    pub meta: Meta,
    /// `Some` for a KubeArmorPolicy: a container policy.
    pub selector: Option<Selector>,
    pub process_meta: Meta,
    /// In the order the loader compiles them: matchPaths, matchDirectories, matchPatterns.
    pub rules: Vec<Rule>,
    /// `spec.file`'s action, severity, tags and message.
    pub file_meta: Meta,
    /// `spec.file`'s rules, in the same order as `rules`.
    pub file_rules: Vec<Rule>,
}

impl Policy {
    /// Whether a process rule allows.
    pub fn has_allow(&self) -> bool {
        self.rules.iter().any(|r| self.is_allow(r, &self.process_meta))
    }

    /// Whether a file rule allows.
    pub fn has_file_allow(&self) -> bool {
        self.file_rules.iter().any(|r| self.is_allow(r, &self.file_meta))
    }

    /// Whether `rule` of the section whose own meta is `section` is an Allow rule.
    pub fn is_allow(&self, rule: &Rule, section: &Meta) -> bool {
        let action = [&rule.meta, section, &self.meta].into_iter().find_map(|m| m.action.as_ref());
        action.is_some_and(|a| a.value == "Allow")
    }
}
