//! Rules that load and do what they say, but not what they seem to: a Block pattern such as `/tmp/*` stops
//! `/tmp/x` and lets `/tmp/a/x` run (`*` stays within one path component, under KubeArmor's AppArmor and
//! BPF enforcers as here). `noexecd check` and `noexecd import` warn about them and say what to write.

use crate::policy::matcher::{Action, Rule, Target};

/// One warning: the rule's `file:line:col` and what to write instead.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lint {
    pub origin: String,
    pub message: String,
}

/// What to write instead of `pattern` when it leaves deeper paths of the directory it names open: `None`
/// when it has no wildcard in its last component, or already crosses directories (`**`).
pub fn shallow_pattern(pattern: &str) -> Option<String> {
    let (head, last) = pattern.rsplit_once('/')?;
    if pattern.contains("**") || !last.contains(['*', '?', '[']) {
        return None;
    }
    let deep = if last == "*" { format!("{head}/**") } else { format!("{head}/**/{last}") };
    let literal_head = !head.contains(['*', '?', '[', '{', '\\']);
    let dirs = if last == "*" && literal_head {
        format!(" or a match_directories rule with dir \"{head}/\" and recursive = true")
    } else {
        String::new()
    };
    let why = if last == "*" && literal_head {
        format!("\"*\" stays within one path component: {head}/a/x runs")
    } else {
        format!("wildcards stay within one path component: a match in a subdirectory of {head}/ runs")
    };
    Some(format!("pattern \"{pattern}\" leaves the deeper paths of its directory open ({why}); write \"{deep}\"{dirs}"))
}

/// The shallow Block and Audit patterns among `rules`.
pub fn rules<'r>(rules: impl Iterator<Item = &'r Rule>) -> Vec<Lint> {
    rules.filter_map(rule).collect()
}

fn rule(rule: &Rule) -> Option<Lint> {
    let Target::Pattern { glob, .. } = &rule.target else { return None };
    if rule.meta.action == Action::Allow {
        return None;
    }
    let message = shallow_pattern(glob.glob().glob())?;
    Some(Lint { origin: rule.meta.origin.clone(), message })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_star_at_the_end_leaves_deeper_paths_open() {
        let m = shallow_pattern("/tmp/*").unwrap();
        assert!(m.contains("/tmp/a/x runs"), "{m}");
        assert!(
            m.contains("write \"/tmp/**\" or a match_directories rule with dir \"/tmp/\" and recursive = true"),
            "{m}"
        );
        let m = shallow_pattern("/tmp/*.sh").unwrap();
        assert!(m.contains("write \"/tmp/**/*.sh\""), "{m}");
        assert!(!m.contains("match_directories"), "{m}");
        let m = shallow_pattern("/home/*/bin/*").unwrap();
        assert!(m.contains("write \"/home/*/bin/**\""), "{m}");
        assert!(!m.contains("match_directories"), "a wildcard directory is no dir: {m}");
    }

    #[test]
    fn deep_or_literal_patterns_are_fine() {
        for p in ["/tmp/**", "/tmp/**/*.sh", "/usr/bin/ls", "/opt/*/bin/tool", "relative"] {
            assert_eq!(shallow_pattern(p), None, "{p}");
        }
    }
}
