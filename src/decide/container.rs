//! The caller's container: which it is (by its cgroup, remembered per pid), the container policies that select
//! it (the daemon's list, else the runtimes asked at its first exec), and the decision of a file of a
//! container's overlay or namespace by those policies, the stricter of theirs and the host's standing.
#![forbid(unsafe_code)]

use std::collections::HashMap;
use std::sync::Arc;

use arc_swap::ArcSwap;

use super::lookup::Lookups;
use super::naming::{Named, Scratch};
use super::verdict::{Findings, Resolved, Verdict};
use crate::containers;
use crate::guard::Guard;
use crate::guard::ctr_marks::FirstExecMarks;
use crate::guard::scopes::{ContainerScope, Scopes};
use crate::host::procfs::{self, ProcSubject};
use crate::policy::file_rules::FileMatcher;
use crate::policy::matcher::Scope;
use crate::sys::ProcDirs;

/// Containers remembered from their first exec until the daemon's list has them; past this, started over.
const FIRST_SEEN_MAX: usize = 256;

/// Slots of the table of callers' containers (see [`CallerContainers::container_of`]).
const PID_CONTAINERS: usize = 256;

/// The containers of callers, as far as this thread has found them, and what it does at a container's first
/// exec.
pub struct CallerContainers {
    /// The container this daemon runs in (a Kubernetes DaemonSet's pod), if any: container policies never
    /// decide in it, so the guard cannot be turned against its own probe and restart; host policies still do.
    own: Option<String>,
    /// The container of a caller, direct-mapped by pid.
    by_pid: Vec<Option<PidContainer>>,
    /// Containers looked up here because the daemon's list did not have them yet (their first exec), and
    /// those no runtime knew (`None`): each is asked for once.
    first_seen: HashMap<String, Option<Arc<ContainerScope>>>,
    /// Marks a container's own mounts at its first exec (`guard::ctr_marks`).
    first_marks: FirstExecMarks,
}

/// The container (`None`: the host) of process `pid` while it is in mount namespace `mnt_ns`.
#[derive(Clone)]
struct PidContainer {
    pid: i32,
    mnt_ns: u64,
    id: Option<Arc<str>>,
}

/// A container's policies, as far as they are known now.
enum ScopeLookup {
    Known(Option<Arc<ContainerScope>>),
    /// Being looked up by the lookup thread.
    Asked,
}

/// What the caller's container makes of a file of a container.
#[derive(Debug)]
pub enum InContainer {
    /// The host's decision stands.
    Host,
    /// The container's policies decided, stricter than the host: `canonical` is now the path the container
    /// sees, which the alert names.
    Decided(Verdict),
    /// A private mount of no container known: no policy can decide it, and no host rule may.
    Unresolvable,
    /// The container is being looked up by the lookup thread: the event waits for it.
    Asked,
}

/// Whose file rules decide an open, by the opener.
pub enum FileScope {
    /// A process of the host (or of the daemon's own container): the host's file rules.
    Host,
    /// A process of a container: the file rules of the container policies that select it (`None`: no
    /// runtime knows the container); never the host's, which are the host's processes' (as KubeArmor applies
    /// a host policy).
    Container(Option<Arc<ContainerScope>>),
    /// A process of a container being looked up by the lookup thread: the event waits for it.
    Asked,
}

/// Where a container and its policies are found: `/proc`, the daemon's list of containers, and the lookup
/// thread (`None`: the runtimes are asked here, waiting).
pub struct Lookup<'a> {
    pub procs: &'a ProcDirs,
    pub scopes: &'a ArcSwap<Scopes>,
    pub thread: Option<&'a mut Lookups>,
}

impl CallerContainers {
    /// `own`: the container this daemon runs in.
    pub fn new(own: Option<String>) -> Self {
        Self {
            own,
            by_pid: vec![None; PID_CONTAINERS],
            first_seen: HashMap::new(),
            first_marks: FirstExecMarks::none(),
        }
    }

    pub fn set_first_marks(&mut self, marks: FirstExecMarks) {
        self.first_marks = marks;
    }

    /// The scope found for container `id` at its first sight here, if it was looked up.
    pub fn first_seen(&self, id: &str) -> Option<&Option<Arc<ContainerScope>>> {
        self.first_seen.get(id)
    }

    /// A file of a container's overlay (or namespace, or private mount: `found.named`), executed by process
    /// `pid`, its path inside the container in `bufs.layer_name`: the container policies that select the
    /// caller's container decide that path; the stricter of that and the `host`'s decision stands. The first
    /// exec of a container is decided so too: the layer's event comes before any of its programs runs.
    #[allow(clippy::too_many_arguments)]
    pub fn decide(
        &mut self,
        guard: &Guard,
        host: &Verdict,
        pid: i32,
        owner: u32,
        subject: &mut ProcSubject,
        found: &mut Findings,
        bufs: &mut Scratch,
        lookup: Lookup<'_>,
    ) -> InContainer {
        let private = found.named.as_ref().is_some_and(Named::host_unnamed);
        let owning = match found.named.as_mut() {
            Some(Named::Private { owner }) => owner.take(),
            _ => None,
        };
        let scope = match owning {
            Some(scope) => scope,
            None => {
                let id = self.container_of(lookup.procs, pid, &mut bufs.proc_buf);
                // The daemon's own container (a DaemonSet pod) is never decided by container policies.
                if id.is_some() && self.own.as_deref() == id.as_deref() {
                    return InContainer::Host;
                }
                let Some(id) = id else {
                    return if private { InContainer::Unresolvable } else { InContainer::Host };
                };
                // Not known yet (its first execs): when no container policy's rule can reach this file, which
                // policies select the container cannot change the answer, so the runtimes are not asked while
                // the kernel holds the exec (podman's API answers in tens of milliseconds, more while podman is
                // starting the very container, and every container start paid for it with its first program).
                // Its own mounts are still marked now, so that they are guarded from the first instruction.
                if !identity_may_matter(guard, host, &bufs.layer_name, private)
                    && lookup.scopes.load().get(&id).is_none()
                    && !self.first_seen.contains_key(&*id)
                    && self.first_marks.unknown(guard, &id, pid)
                {
                    return InContainer::Host;
                }
                match self.scope_of(guard, &id, lookup.scopes, lookup.thread) {
                    ScopeLookup::Known(Some(scope)) => {
                        self.first_marks.selected(guard, &scope, pid);
                        scope
                    }
                    ScopeLookup::Known(None) if private => return InContainer::Unresolvable,
                    ScopeLookup::Known(None) => return InContainer::Host,
                    ScopeLookup::Asked => return InContainer::Asked,
                }
            }
        };
        let inside = scope.matcher.as_ref().map(|m| {
            let d = m.decide(Scope::Path(&bufs.layer_name), owner, subject);
            Verdict { outcome: d.outcome, rule: d.rule.cloned(), resolved: Resolved::Yes }
        });
        found.container = Some(scope);
        match inside {
            Some(inside)
                if inside.rule.is_some()
                    && (host.rule.is_none() || inside.outcome.strictness() > host.outcome.strictness()) =>
            {
                // The alert names the file as the container sees it.
                bufs.canonical.clear();
                bufs.canonical.extend_from_slice(&bufs.layer_name);
                InContainer::Decided(inside)
            }
            _ => InContainer::Host,
        }
    }

    /// Whose file rules decide an open of the file at `path` (as the opener sees it) by process `pid` (see
    /// [`FileScope`]). A container the daemon's list does not hold yet (its file-rule directories were marked
    /// at its first exec) is looked up as at a first exec, when a container policy's file rule reaches
    /// `path`; otherwise no container rule can decide the open.
    pub fn file_scope(
        &mut self,
        guard: &Guard,
        lookup: Lookup<'_>,
        pid: i32,
        path: &[u8],
        buf: &mut Vec<u8>,
    ) -> FileScope {
        let Some(id) = self.container_of(lookup.procs, pid, buf) else { return FileScope::Host };
        if self.own.as_deref() == Some(&*id) {
            return FileScope::Host;
        }
        if let Some(scope) = lookup.scopes.load().get(&id) {
            return FileScope::Container(Some(scope.clone()));
        }
        if !guard.all_container_files.as_ref().is_some_and(|all| all.reaches(path)) {
            return FileScope::Container(None);
        }
        match self.scope_of(guard, &id, lookup.scopes, lookup.thread) {
            ScopeLookup::Known(scope) => FileScope::Container(scope),
            ScopeLookup::Asked => FileScope::Asked,
        }
    }

    /// Whether process `pid` runs in a container other than the daemon's own.
    pub fn in_container(&mut self, procs: &ProcDirs, pid: i32, buf: &mut Vec<u8>) -> bool {
        self.container_of(procs, pid, buf).is_some_and(|id| self.own.as_deref() != Some(&*id))
    }

    /// The id of the container process `pid` runs in (by its cgroup, read into `buf`), `None` on the host.
    /// Remembered per pid with the pid's mount namespace, one readlink instead of reading and parsing its
    /// cgroup file: a pid given to another process, or a process that entered other namespaces, reads another
    /// namespace and is looked up again. (A caller waiting on its exec cannot move meanwhile; every container
    /// has a mount namespace of its own.)
    fn container_of(&mut self, procs: &ProcDirs, pid: i32, buf: &mut Vec<u8>) -> Option<Arc<str>> {
        let ns = procfs::mount_namespace_with(procs, pid);
        let slot = usize::try_from(pid.unsigned_abs()).unwrap_or(0) % PID_CONTAINERS;
        if let (Some(ns), Some(Some(known))) = (ns, self.by_pid.get(slot))
            && (known.pid, known.mnt_ns) == (pid, ns)
        {
            return known.id.clone();
        }
        let id: Option<Arc<str>> = containers::container_of_with(procs, pid, buf).map(|(_, id)| Arc::from(id));
        if let (Some(ns), Some(entry)) = (ns, self.by_pid.get_mut(slot)) {
            *entry = Some(PidContainer { pid, mnt_ns: ns, id: id.clone() });
        }
        id
    }

    /// The container `id` and the policies that select it. One the daemon's list (`scopes`) does not hold yet is
    /// being started now (this is its first exec that a container policy's rule could reach): the runtimes are
    /// asked once, by the lookup `thread` while the event waits (`Asked`), or here when there is none (or too
    /// many events wait already), so that its policies decide that program too. Bounded by the runtimes' own
    /// timeouts; never again for the same container.
    fn scope_of(
        &mut self,
        guard: &Guard,
        id: &str,
        scopes: &ArcSwap<Scopes>,
        thread: Option<&mut Lookups>,
    ) -> ScopeLookup {
        if let Some(scope) = scopes.load().get(id) {
            return ScopeLookup::Known(Some(scope.clone()));
        }
        if let Some(seen) = self.first_seen.get(id) {
            return ScopeLookup::Known(seen.clone());
        }
        if let Some(lookups) = thread
            && lookups.ask(id, &guard.config.containers.sources)
        {
            return ScopeLookup::Asked;
        }
        let found = containers::discover(&guard.config.containers.sources).into_iter().find(|c| c.info.id == id);
        ScopeLookup::Known(self.first_sight(guard, id, found))
    }

    /// Remembers what the runtimes said of container `id` at its first sight.
    pub fn first_sight(
        &mut self,
        guard: &Guard,
        id: &str,
        found: Option<containers::Container>,
    ) -> Option<Arc<ContainerScope>> {
        let scope = found.map(|c| Arc::new(ContainerScope::new(&guard.config, c)));
        if self.first_seen.len() >= FIRST_SEEN_MAX {
            self.first_seen.clear();
        }
        self.first_seen.insert(id.to_owned(), scope.clone());
        scope
    }
}

/// Whether the caller's container (which policies select it) may change the answer for a file of a
/// container's overlay, `layer_name` inside it: yes unless no rule of any container policy reaches that path
/// (`Guard::all_container_rules`, as for the exec cache: no Allow rule, so no default posture, and the path
/// outside every rule's scope). Then whatever policies select the container, none applies, and the host's
/// decision stands as it is. Always yes on a `private` mount (a container no runtime knows is refused there)
/// and when the host's decision raises an alert (which carries the container's fields).
fn identity_may_matter(guard: &Guard, host: &Verdict, layer_name: &[u8], private: bool) -> bool {
    private
        || host.rule.is_some()
        || !guard.all_container_rules.as_ref().is_none_or(|all| all.untouched_by_rules(layer_name))
        || guard.all_container_files.as_ref().is_some_and(FileMatcher::whitelist)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decide::test_scene::{guard_for, scene};
    use crate::decide::verdict::unresolved_rule;
    use crate::policy::matcher::Outcome;

    /// A container policy for `app=wordpress` blocking execs below `/tmp/`; `{extra}` adds rules.
    const SELECTING: &str = r#"
[[policy]]
name = "host"
[[policy.process.match_directories]]
dir = "{dir}/"
recursive = true

[[policy]]
name = "ctr"
[policy.selector]
match_labels = { app = "wordpress" }
[[policy.process.match_directories]]
dir = "/tmp/"
recursive = true
{extra}
"#;

    #[test]
    fn an_unknown_containers_identity_matters_only_where_a_container_rule_reaches() {
        let s = scene();
        let g = guard_for(&s, &SELECTING.replace("{extra}", ""));
        let allowed = Verdict { outcome: Outcome::Allow, rule: None, resolved: Resolved::Yes };
        assert!(
            !identity_may_matter(&g, &allowed, b"/bin/true", false),
            "no container rule reaches /bin/true: no lookup"
        );
        assert!(
            identity_may_matter(&g, &allowed, b"/tmp/x", false),
            "the policy's rule reaches /tmp/x: its selection decides"
        );
        assert!(
            !identity_may_matter(&g, &allowed, b"/tmpx/y", false),
            "a directory rule reaches whole components only"
        );
        let alerted = Verdict { outcome: Outcome::Block, rule: Some(unresolved_rule()), resolved: Resolved::Yes };
        assert!(identity_may_matter(&g, &alerted, b"/bin/true", false), "a host alert carries the container's fields");
        assert!(
            identity_may_matter(&g, &allowed, b"/bin/true", true),
            "a private mount of an unknown container is refused"
        );
        // An Allow rule in a container policy is a default posture: it reaches every path.
        let posture = "[[policy]]\nname = \"ok\"\naction = \"Allow\"\n[policy.selector]\n\
                       match_labels = { app = \"other\" }\n[[policy.process.match_paths]]\npath = \"/bin/ok\"\n";
        let g = guard_for(&s, &SELECTING.replace("{extra}", posture));
        assert!(identity_may_matter(&g, &allowed, b"/bin/true", false), "an Allow rule decides /bin/true too");
        // Container policies with file rules only: no exec of theirs to decide, so no lookup at a first exec
        // (their directories are marked without it, and an open there waits for the lookup instead).
        // The host policy keeps the scene's filesystem marked whatever runtimes this machine has (their image
        // layers' filesystems are marked for container policies only where their directories exist).
        let files = "[[policy]]\nname = \"host\"\n[[policy.process.match_directories]]\ndir = \"{dir}/\"\n\
                     [[policy]]\nname = \"files\"\n[policy.selector]\nmatch_labels = { app = \"wordpress\" }\n\
                     [[policy.file.match_paths]]\npath = \"/etc/app/secret\"\n";
        let g = guard_for(&s, files);
        assert!(g.all_container_rules.is_none() && g.all_container_files.is_some());
        assert!(g.config.reads_containers(), "the containers are read for their file rules");
        assert!(!identity_may_matter(&g, &allowed, b"/bin/true", false), "no process rule: no lookup");
        assert!(!identity_may_matter(&g, &allowed, b"/etc/app/secret", false), "an exec is no open");
    }
}
