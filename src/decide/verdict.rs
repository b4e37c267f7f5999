//! What a decision gives and what it found on the way: the verdict before the answer, and the findings of one
//! event (its file's facts, how it was named, the caller's container), made for each event and dropped after
//! it.
#![forbid(unsafe_code)]

use std::sync::Arc;

use super::naming::{Named, Scratch};
use crate::guard::scopes::ContainerScope;
use crate::policy::matcher::{Action, Outcome, RuleMeta};
use crate::sys::FileFacts;

/// The rule alerts name when a file on a guarded filesystem could not be located.
pub fn unresolved_rule() -> Arc<RuleMeta> {
    Arc::new(RuleMeta {
        policy: "noexecd-unresolvable-path".to_owned(),
        action: Action::Block,
        severity: 5,
        tags: vec!["noexecd".to_owned()],
        message: "Exec denied: the file's path could not be resolved on a guarded filesystem".to_owned(),
        origin: "built in".to_owned(),
    })
}

/// The decision on one file, before the answer.
#[derive(Debug)]
pub struct Verdict {
    pub outcome: Outcome,
    /// The rule (or default posture) that made the decision; `None`: allowed without an alert.
    pub rule: Option<Arc<RuleMeta>>,
    /// How the file's canonical path was looked up for the decision.
    pub resolved: Resolved,
}

/// Where the canonical path of the current file stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resolved {
    /// Not looked up (the filesystem is decided as a whole).
    NotYet,
    /// In `Scratch::canonical`.
    Yes,
    /// Could not be found: the exec is denied.
    Failed,
    /// Not decided: the caller's container is being looked up, and the event must wait for it. Its outcome
    /// is a denial, so that a caller overlooking this refuses rather than allows.
    Asked,
}

/// What the decision of one event found out: made for each event, dropped after its answer and alert. Its
/// names are in the decider's [`Scratch`], emptied when it is made.
#[derive(Debug, Default)]
pub struct Findings {
    /// statx of the file, when it was read.
    pub facts: Option<FileFacts>,
    /// How the file was named, when it was.
    pub named: Option<Named>,
    /// The caller's container, when the decision looked it up.
    pub container: Option<Arc<ContainerScope>>,
}

impl Findings {
    pub fn new(bufs: &mut Scratch) -> Self {
        bufs.canonical.clear();
        bufs.layer_name.clear();
        Self::default()
    }
}
