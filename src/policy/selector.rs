//! The two scopes of a policy, as KubeArmor has them: a host policy (no `[policy.selector]`) applies to the
//! host, a container policy applies inside the containers its [`Selector`] picks. Selection is pure: given a
//! container's [`Identity`] (its labels and its pod's, and its name), [`selecting`] says which container
//! policies apply and [`matcher_for`] compiles their rules into a [`Matcher`] of their own. Host rules and
//! container rules never share a matcher.
//!
//! Semantics follow KubeArmor's (a policy's selector becomes identities `namespaceName=<ns>` and `k=v` for
//! each of its `matchLabels`; a container matches when it has every one): every label must be on the
//! container or its pod, the namespace is the `io.kubernetes.pod.namespace` label the kubelet puts on every
//! container, and `kubearmor.io/container.name: "[a,b]"` narrows to containers of those names.
//! [`Expression`]s (KubeArmor's `matchExpressions`, of a KubeArmorPolicy or a KubeArmorClusterPolicy) select
//! by label (`app=nginx`) or by namespace with `In` and `NotIn`.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use crate::policy::file_rules::{FileMatcher, FileRule};
use crate::policy::matcher::{Matcher, Mode, Posture, Rule};

/// The label the kubelet puts on every container it starts: the pod's Kubernetes namespace.
pub const NAMESPACE_LABEL: &str = "io.kubernetes.pod.namespace";
/// The label the kubelet puts on every container it starts: the container's name in its pod.
pub const CONTAINER_NAME_LABEL: &str = "io.kubernetes.container.name";
/// KubeArmor's selector label naming containers (`"[a,b]"`, or one name); noexecd reads it as `containers`.
pub const KUBEARMOR_CONTAINER_LABEL: &str = "kubearmor.io/container.name";

/// Who a container is, as far as selection goes: plain values, filled by whoever knows the container.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Identity {
    /// The container's labels and its pod's, merged. The Kubernetes namespace is the [`NAMESPACE_LABEL`]
    /// entry: a container without it (docker, podman outside Kubernetes) is in no namespace.
    pub labels: BTreeMap<String, String>,
    /// The container's name (docker's or podman's name, or its name in its pod). The
    /// [`CONTAINER_NAME_LABEL`] label, when present, names it too.
    pub name: Option<String>,
}

impl Identity {
    /// The Kubernetes namespace: the [`NAMESPACE_LABEL`] label.
    pub fn namespace(&self) -> Option<&str> {
        self.labels.get(NAMESPACE_LABEL).map(String::as_str)
    }

    /// Every name the container goes by: [`Identity::name`] and the [`CONTAINER_NAME_LABEL`] label.
    fn names(&self) -> impl Iterator<Item = &str> {
        self.name.as_deref().into_iter().chain(self.labels.get(CONTAINER_NAME_LABEL).map(String::as_str))
    }
}

/// A compiled `[policy.selector]`. Empty (no labels, no namespace, no names) selects every container.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Selector {
    /// Every one must be on the container (or its pod) with this value.
    pub match_labels: BTreeMap<String, String>,
    /// The Kubernetes namespace ([`NAMESPACE_LABEL`]); `None`: any namespace, or none.
    pub namespace: Option<String>,
    /// Container names; empty: any name.
    pub containers: Vec<String>,
    /// Every one must hold (with [`Selector::match_labels`] and the rest).
    pub expressions: Vec<Expression>,
}

/// What a `match_expressions` entry tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExpressionKey {
    /// A label as `name=value`, on the container or its pod.
    Label,
    /// The Kubernetes namespace ([`NAMESPACE_LABEL`]).
    Namespace,
}

/// `In`: one of the values holds; `NotIn`: none does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operator {
    In,
    NotIn,
}

/// One `match_expressions` entry: KubeArmor's `{key, operator, values}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expression {
    pub key: ExpressionKey,
    pub operator: Operator,
    /// `name=value` for [`ExpressionKey::Label`], namespace names for [`ExpressionKey::Namespace`].
    pub values: Vec<String>,
}

impl Expression {
    /// Whether the container passes this expression. A namespace expression, `NotIn` included, selects only
    /// containers in a namespace: KubeArmor applies a cluster policy to the namespaces the API server lists.
    pub fn holds(&self, id: &Identity) -> bool {
        let any = match self.key {
            ExpressionKey::Label => self.values.iter().any(|v| {
                let (k, value) = v.split_once('=').unwrap_or((v.as_str(), ""));
                v.contains('=') && id.labels.get(k).is_some_and(|l| l == value)
            }),
            ExpressionKey::Namespace => match id.namespace() {
                Some(ns) => self.values.iter().any(|v| v == ns),
                None => return false,
            },
        };
        match self.operator {
            Operator::In => any,
            Operator::NotIn => !any,
        }
    }

    fn describe(&self) -> String {
        let key = match self.key {
            ExpressionKey::Label => "label",
            ExpressionKey::Namespace => "namespace",
        };
        let op = match self.operator {
            Operator::In => "In",
            Operator::NotIn => "NotIn",
        };
        format!("{key} {op} ({})", self.values.join(","))
    }
}

impl Selector {
    /// Whether this selector picks the container.
    pub fn selects(&self, id: &Identity) -> bool {
        if self.namespace.as_deref().is_some_and(|ns| id.namespace() != Some(ns)) {
            return false;
        }
        if !self.match_labels.iter().all(|(k, v)| id.labels.get(k) == Some(v)) {
            return false;
        }
        if !self.expressions_hold(id) {
            return false;
        }
        self.containers.is_empty() || id.names().any(|n| self.containers.iter().any(|c| c == n))
    }

    /// The expressions of one key and operator are one set of values, as KubeArmor joins them: `In` holds
    /// when the container has one value of any `In` expression of that key, `NotIn` when it has none of
    /// any. Where KubeArmor lets the order of `In` and `NotIn` decide which one it reads, both hold here:
    /// never a container KubeArmor would leave out.
    fn expressions_hold(&self, id: &Identity) -> bool {
        let groups = [ExpressionKey::Label, ExpressionKey::Namespace]
            .into_iter()
            .flat_map(|k| [(k, Operator::In), (k, Operator::NotIn)]);
        for (key, operator) in groups {
            let mut of = self.expressions.iter().filter(|e| e.key == key && e.operator == operator).peekable();
            if of.peek().is_none() {
                continue;
            }
            let holds = match operator {
                Operator::In => of.any(|e| e.holds(id)),
                Operator::NotIn => of.all(|e| e.holds(id)),
            };
            if !holds {
                return false;
            }
        }
        true
    }

    /// `labels:app=wordpress,tier=web;namespace:wordpress-mysql;containers:wordpress`, with `*` for a part
    /// that does not restrict: what `noexecd check` prints.
    pub fn describe(&self) -> String {
        let mut out = String::from("labels:");
        if self.match_labels.is_empty() {
            out.push('*');
        }
        for (i, (k, v)) in self.match_labels.iter().enumerate() {
            let sep = if i == 0 { "" } else { "," };
            let _ = write!(out, "{sep}{k}={v}");
        }
        let _ = write!(out, ";namespace:{}", self.namespace.as_deref().unwrap_or("*"));
        let containers = if self.containers.is_empty() { "*".to_owned() } else { self.containers.join(",") };
        let _ = write!(out, ";containers:{containers}");
        if !self.expressions.is_empty() {
            let list: Vec<String> = self.expressions.iter().map(Expression::describe).collect();
            let _ = write!(out, ";expressions:{}", list.join(" and "));
        }
        out
    }
}

/// The names in KubeArmor's `kubearmor.io/container.name` label value, read as KubeArmor reads a list:
/// `"[a, b]"` is `a` and `b`, an empty item is skipped (`"[container-1,,]"` is `container-1`), and `"[]"` or
/// `""` name none (every container of the pod). A value without brackets is one name (KubeArmor would cut
/// its first and last characters off as if they were brackets).
pub fn kubearmor_container_names(value: &str) -> Vec<String> {
    let v = value.trim();
    let Some(inner) = v.strip_prefix('[').and_then(|s| s.strip_suffix(']')) else {
        return if v.is_empty() { Vec::new() } else { vec![v.to_owned()] };
    };
    // KubeArmor skips an empty item before trimming: `"[a, ]"` names `a` and a container called "", which
    // no container is.
    inner.split(',').filter(|n| !n.is_empty()).map(|n| n.trim().to_owned()).collect()
}

/// One container policy: its selector and its compiled rules (paths inside the container).
#[derive(Debug, Clone)]
pub struct ContainerPolicy {
    pub name: String,
    pub selector: Selector,
    /// In load order, as the host's rules are; never part of the host's matcher.
    pub rules: Vec<Rule>,
    /// `file:line:col` of its `name`.
    pub origin: String,
}

/// A container policy's file rules (`[policy.file]` of a policy with a `[policy.selector]`).
#[derive(Debug, Clone)]
pub struct ContainerFilePolicy {
    pub name: String,
    pub selector: Selector,
    /// In load order.
    pub rules: Vec<FileRule>,
    /// `file:line:col` of its `name`.
    pub origin: String,
}

/// The file matcher for a container selected by the file policies at `selected` (indexes into `policies`;
/// out of range ones are ignored): their file rules in policy order, with the default file posture and mode.
pub fn file_matcher_for(
    policies: &[ContainerFilePolicy],
    selected: &[usize],
    posture: Posture,
    mode: Mode,
) -> FileMatcher {
    let mut order = selected.to_vec();
    order.sort_unstable();
    order.dedup();
    let rules = order.iter().filter_map(|&i| policies.get(i)).flat_map(|p| p.rules.iter().cloned()).collect();
    FileMatcher::new(rules, posture, mode)
}

/// The indexes (ascending) of the policies that select the container.
pub fn selecting(policies: &[ContainerPolicy], id: &Identity) -> Vec<usize> {
    policies.iter().enumerate().filter(|(_, p)| p.selector.selects(id)).map(|(i, _)| i).collect()
}

/// The matcher for a container selected by the policies at `selected` (indexes into `policies`; out of
/// range ones are ignored): their rules in policy order, with the host's posture and mode. No policy
/// selected: a matcher with no rules, which allows everything silently.
pub fn matcher_for(policies: &[ContainerPolicy], selected: &[usize], posture: Posture, mode: Mode) -> Matcher {
    let mut order = selected.to_vec();
    order.sort_unstable();
    order.dedup();
    let rules = order.iter().filter_map(|&i| policies.get(i)).flat_map(|p| p.rules.iter().cloned()).collect();
    Matcher::new(rules, posture, mode)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
    }

    fn id(pairs: &[(&str, &str)], name: Option<&str>) -> Identity {
        Identity { labels: labels(pairs), name: name.map(str::to_owned) }
    }

    fn sel(pairs: &[(&str, &str)], namespace: Option<&str>, containers: &[&str]) -> Selector {
        Selector {
            match_labels: labels(pairs),
            namespace: namespace.map(str::to_owned),
            containers: containers.iter().map(|c| (*c).to_owned()).collect(),
            expressions: Vec::new(),
        }
    }

    #[test]
    fn every_label_is_required() {
        let s = sel(&[("app", "wordpress"), ("tier", "web")], None, &[]);
        assert!(s.selects(&id(&[("app", "wordpress"), ("tier", "web"), ("extra", "x")], None)));
        assert!(!s.selects(&id(&[("app", "wordpress")], None)), "one label missing");
        assert!(!s.selects(&id(&[("app", "wordpress"), ("tier", "db")], None)), "one label different");
        assert!(!s.selects(&id(&[], None)));
    }

    #[test]
    fn namespace_is_the_kubelet_label() {
        let s = sel(&[("app", "wordpress")], Some("wordpress-mysql"), &[]);
        assert!(s.selects(&id(&[("app", "wordpress"), (NAMESPACE_LABEL, "wordpress-mysql")], None)));
        assert!(!s.selects(&id(&[("app", "wordpress"), (NAMESPACE_LABEL, "default")], None)));
        assert!(!s.selects(&id(&[("app", "wordpress")], None)), "no namespace: not in wordpress-mysql");
        // No namespace in the selector: labels alone decide, in any namespace or none.
        let any = sel(&[("app", "wordpress")], None, &[]);
        assert!(any.selects(&id(&[("app", "wordpress"), (NAMESPACE_LABEL, "default")], None)));
        assert!(any.selects(&id(&[("app", "wordpress")], None)));
        assert_eq!(id(&[(NAMESPACE_LABEL, "ns")], None).namespace(), Some("ns"));
    }

    #[test]
    fn empty_selector_selects_every_container_in_its_namespace() {
        let all = Selector::default();
        assert!(all.selects(&id(&[], None)));
        assert!(all.selects(&id(&[("app", "x"), (NAMESPACE_LABEL, "kube-system")], Some("c"))));
        let ns = sel(&[], Some("shop"), &[]);
        assert!(ns.selects(&id(&[(NAMESPACE_LABEL, "shop")], None)));
        assert!(!ns.selects(&id(&[(NAMESPACE_LABEL, "other")], None)));
        assert!(!ns.selects(&id(&[], None)));
    }

    #[test]
    fn container_names_narrow_the_selection() {
        let s = sel(&[("app", "wordpress")], None, &["wordpress", "php"]);
        assert!(s.selects(&id(&[("app", "wordpress")], Some("wordpress"))));
        assert!(s.selects(&id(&[("app", "wordpress"), (CONTAINER_NAME_LABEL, "php")], None)));
        assert!(!s.selects(&id(&[("app", "wordpress")], Some("sidecar"))));
        assert!(!s.selects(&id(&[("app", "wordpress")], None)), "an unnamed container is not one of the names");
        assert!(!s.selects(&id(&[], Some("wordpress"))), "the labels still apply");
    }

    #[test]
    fn kubearmor_container_label_values() {
        let names = |v: &[&str]| v.iter().map(|n| (*n).to_owned()).collect::<Vec<_>>();
        assert_eq!(kubearmor_container_names("[a, b]"), names(&["a", "b"]));
        assert_eq!(kubearmor_container_names("wordpress"), names(&["wordpress"]));
        assert_eq!(kubearmor_container_names(" [ one ] "), names(&["one"]));
        assert_eq!(kubearmor_container_names("[a,,b]"), names(&["a", "b"]));
        assert_eq!(kubearmor_container_names("[container-1,,]"), names(&["container-1"]));
        assert_eq!(kubearmor_container_names("[a, ]"), names(&["a", ""]), "KubeArmor trims after skipping");
        assert!(kubearmor_container_names("[]").is_empty());
        assert!(kubearmor_container_names("").is_empty());
        assert!(kubearmor_container_names("[,]").is_empty());
    }

    #[test]
    fn describe_names_every_part() {
        assert_eq!(Selector::default().describe(), "labels:*;namespace:*;containers:*");
        assert_eq!(
            sel(&[("tier", "web"), ("app", "wp")], Some("ns"), &["a", "b"]).describe(),
            "labels:app=wp,tier=web;namespace:ns;containers:a,b"
        );
    }

    fn expr(key: ExpressionKey, operator: Operator, values: &[&str]) -> Expression {
        Expression { key, operator, values: values.iter().map(|v| (*v).to_owned()).collect() }
    }

    fn with(expressions: Vec<Expression>) -> Selector {
        Selector { expressions, ..Selector::default() }
    }

    #[test]
    fn label_expressions_in_and_not_in() {
        use ExpressionKey::Label;
        let inside = with(vec![expr(Label, Operator::In, &["app=nginx", "app=nginx-dev"])]);
        assert!(inside.selects(&id(&[("app", "nginx")], None)));
        assert!(inside.selects(&id(&[("app", "nginx-dev")], None)));
        assert!(!inside.selects(&id(&[("app", "other")], None)));
        assert!(!inside.selects(&id(&[], None)));
        let outside = with(vec![expr(Label, Operator::NotIn, &["app=nginx"])]);
        assert!(!outside.selects(&id(&[("app", "nginx")], None)));
        assert!(outside.selects(&id(&[("app", "other")], None)));
        assert!(outside.selects(&id(&[], None)), "no such label: not in");
        // Two In expressions are one set of values, as KubeArmor joins them.
        let two = with(vec![expr(Label, Operator::In, &["a=1"]), expr(Label, Operator::In, &["b=2"])]);
        assert!(two.selects(&id(&[("a", "1")], None)));
        assert!(two.selects(&id(&[("b", "2")], None)));
        // In and NotIn both hold, whatever their order (KubeArmor reads only one of them; never more).
        for both in [
            vec![expr(Label, Operator::In, &["tier=web"]), expr(Label, Operator::NotIn, &["app=old"])],
            vec![expr(Label, Operator::NotIn, &["app=old"]), expr(Label, Operator::In, &["tier=web"])],
        ] {
            let s = with(both);
            assert!(s.selects(&id(&[("tier", "web"), ("app", "new")], None)));
            assert!(!s.selects(&id(&[("tier", "web"), ("app", "old")], None)));
            assert!(!s.selects(&id(&[("app", "new")], None)));
        }
        // A value without '=' names no label: In never holds, NotIn always does.
        assert!(!with(vec![expr(Label, Operator::In, &["app"])]).selects(&id(&[("app", "")], None)));
        // An '=' in the value: the first one splits.
        assert!(with(vec![expr(Label, Operator::In, &["k=a=b"])]).selects(&id(&[("k", "a=b")], None)));
    }

    #[test]
    fn namespace_expressions_need_a_namespace() {
        use ExpressionKey::Namespace;
        let ns = |n: &str| id(&[(NAMESPACE_LABEL, n)], None);
        let inside = with(vec![expr(Namespace, Operator::In, &["nginx1", "nginx-later"])]);
        assert!(inside.selects(&ns("nginx1")) && inside.selects(&ns("nginx-later")));
        assert!(!inside.selects(&ns("nginx2")));
        assert!(!inside.selects(&id(&[], None)));
        let outside = with(vec![expr(Namespace, Operator::NotIn, &["nginx1"])]);
        assert!(!outside.selects(&ns("nginx1")));
        assert!(outside.selects(&ns("nginx2")));
        assert!(!outside.selects(&id(&[], None)), "a container in no namespace is in none KubeArmor lists");
        let anywhere = with(vec![expr(Namespace, Operator::NotIn, &[])]);
        assert!(anywhere.selects(&ns("default")));
        assert!(!anywhere.selects(&id(&[], None)));
        let s = with(vec![expr(Namespace, Operator::In, &["a"]), expr(ExpressionKey::Label, Operator::In, &["x=1"])]);
        assert_eq!(s.describe(), "labels:*;namespace:*;containers:*;expressions:namespace In (a) and label In (x=1)");
    }
}
