//! Which container a process runs in, as its cgroup tells: `/proc/PID/cgroup` names the container id, and
//! the runtime whose [`CgroupForm`]s match it. The parsing is pure; [`container_of`] and
//! [`container_of_with`] read the file.

use super::record::is_id;
use super::runtime::{CgroupForm, Runtime};
use super::runtimes;
use crate::sys::ProcDirs;

/// The innermost cgroup path component that names a container, with its runtime: a runtime's
/// [`CgroupForm::Prefixed`] or [`CgroupForm::Below`] form first (in registry order), then a bare id under a
/// `kubepods*` component ([`CgroupForm::UnderKubepods`]). cgroup v1 (`N:controllers:path`) and v2
/// (`0::path`) lines alike; the first line naming one wins.
pub fn parse_cgroup(text: &str) -> Option<(Runtime, String)> {
    text.lines().find_map(|line| {
        let path = line.splitn(3, ':').nth(2)?;
        let components: Vec<&str> = path.split('/').filter(|c| !c.is_empty()).collect();
        let kubepods = components.iter().any(|c| c.starts_with("kubepods"));
        (0..components.len()).rev().find_map(|i| {
            let c = components.get(i)?;
            let parent = i.checked_sub(1).and_then(|p| components.get(p)).copied().unwrap_or("");
            component(c, parent, kubepods)
        })
    })
}

fn component(c: &str, parent: &str, kubepods: bool) -> Option<(Runtime, String)> {
    let name = c.strip_suffix(".scope").unwrap_or(c);
    let found = |runtime: Runtime| Some((runtime, name.to_owned()));
    for runtime in runtimes::all() {
        for form in runtime.0.cgroup_forms() {
            match *form {
                CgroupForm::Prefixed(prefix) => {
                    if let Some(id) = name.strip_prefix(prefix).filter(|id| is_id(id)) {
                        return Some((runtime, id.to_owned()));
                    }
                }
                CgroupForm::Below(dir) if dir == parent && is_id(name) => return found(runtime),
                CgroupForm::Below(_) | CgroupForm::UnderKubepods => {}
            }
        }
    }
    if kubepods && is_id(name) {
        return runtimes::all().find(|r| r.0.cgroup_forms().contains(&CgroupForm::UnderKubepods)).and_then(found);
    }
    None
}

/// The runtime and id of the container process `pid` runs in, from its cgroup; `None` on the host.
pub fn container_of(pid: i32) -> Option<(Runtime, String)> {
    std::fs::read_to_string(format!("/proc/{pid}/cgroup")).ok().and_then(|t| parse_cgroup(&t))
}

/// [`container_of`] on the decision path: `/proc/PID/cgroup` read through `procs` into the caller's buffer.
pub fn container_of_with(procs: &ProcDirs, pid: i32, buf: &mut Vec<u8>) -> Option<(Runtime, String)> {
    procs.read_pid_file(pid, b"cgroup", buf).ok()?;
    std::str::from_utf8(buf).ok().and_then(parse_cgroup)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::containers::runtimes::containerd::CONTAINERD;
    use crate::containers::runtimes::crio::CRIO;
    use crate::containers::runtimes::docker::DOCKER;
    use crate::containers::runtimes::podman::PODMAN;

    const ID: &str = "3f2c9a7d5b1e4c8f0a6d2b9e7c5a3f1d8b6e4c2a0f9d7b5e3c1a8f6d4b2e0c9a";

    #[test]
    fn cgroup_paths_of_each_runtime() {
        let cases = [
            (format!("0::/system.slice/docker-{ID}.scope\n"), DOCKER),
            (format!("12:memory:/docker/{ID}\n11:cpu,cpuacct:/docker/{ID}\n"), DOCKER),
            (format!("0::/docker/{ID}\n"), DOCKER),
            (
                format!(
                    "0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod7e3b1c2d_4a5f_4b6c_8d9e_0f1a2b3c4d5e.slice/cri-containerd-{ID}.scope\n"
                ),
                CONTAINERD,
            ),
            (format!("4:pids:/kubepods/burstable/pod7e3b1c2d-4a5f-4b6c-8d9e-0f1a2b3c4d5e/{ID}\n"), CONTAINERD),
            (format!("0::/kubepods/pod7e3b1c2d-4a5f-4b6c-8d9e-0f1a2b3c4d5e/{ID}\n"), CONTAINERD),
            (
                format!(
                    "0::/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-podx.slice/crio-{ID}.scope\n"
                ),
                CRIO,
            ),
            (format!("0::/kubepods/besteffort/podx/crio-{ID}\n"), CRIO),
            (format!("0::/machine.slice/libpod-{ID}.scope\n"), PODMAN),
            (
                format!("0::/user.slice/user-1000.slice/user@1000.service/user.slice/libpod-{ID}.scope/container\n"),
                PODMAN,
            ),
            (format!("0::/user.slice/user-1000.slice/user@1000.service/user.slice/nerdctl-{ID}.scope\n"), CONTAINERD),
        ];
        for (text, runtime) in cases {
            assert_eq!(parse_cgroup(&text), Some((runtime, ID.to_owned())), "{text}");
        }
    }

    #[test]
    fn containerd_namespaces_under_cgroupfs_name_their_containers() {
        for ns in ["k8s.io", "default", "moby"] {
            assert_eq!(parse_cgroup(&format!("0::/{ns}/{ID}\n")), Some((CONTAINERD, ID.to_owned())), "{ns}");
        }
        assert_eq!(parse_cgroup(&format!("0::/other/{ID}\n")), None);
    }

    #[test]
    fn host_processes_and_look_alikes_are_not_containers() {
        for text in [
            "0::/init.scope\n",
            "0::/system.slice/docker.service\n",
            "0::/system.slice/containerd.service\n",
            "0::/user.slice/user-1000.slice/session-3.scope\n",
            // conmon watches a container; it is not in it.
            &format!("0::/machine.slice/libpod-conmon-{ID}.scope\n"),
            &format!(
                "0::/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-podx.slice/crio-conmon-{ID}.scope\n"
            ),
            // The pod's own slice, no container.
            "0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod7e3b.slice\n",
            // Not 64 lower-case hex digits.
            "0::/docker/3f2c9a7d5b1e\n",
            &format!("0::/docker/{}\n", ID.to_uppercase()),
            &format!("0::/system.slice/docker-{ID}x.scope\n"),
            &format!("0::/docker-{}/../../etc.scope\n", &ID[..60]),
            // A 64-hex directory outside docker and kubepods.
            &format!("0::/user.slice/{ID}\n"),
            "",
            "garbage without colons\n",
        ] {
            assert_eq!(parse_cgroup(text), None, "{text}");
        }
    }

    #[test]
    fn innermost_container_wins_and_any_v1_line_counts() {
        let inner = "a".repeat(64);
        let text = format!("0::/docker/{ID}/docker/{inner}\n");
        assert_eq!(parse_cgroup(&text), Some((DOCKER, inner)));
        let text = format!("13:rdma:/\n12:pids:/docker/{ID}\n");
        assert_eq!(parse_cgroup(&text), Some((DOCKER, ID.to_owned())));
    }

    #[test]
    fn both_readers_agree_on_our_own_process() {
        let me = i32::try_from(std::process::id()).unwrap();
        let mut buf = Vec::new();
        let procs = ProcDirs::open();
        assert_eq!(container_of_with(&procs, me, &mut buf), container_of(me));
        assert_eq!(container_of_with(&procs, i32::MAX, &mut buf), None);
    }
}
