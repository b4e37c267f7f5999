//! Which container a process runs in, as its cgroup tells: `/proc/PID/cgroup` names the container id and
//! its runtime (docker, containerd/CRI, CRI-O, podman). Pure parsing; `procfs` reads the file.

/// The container runtime a cgroup path belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Runtime {
    Docker,
    /// containerd, directly (nerdctl) or as the Kubernetes CRI runtime.
    Containerd,
    CriO,
    Podman,
}

/// `/docker/<id>`, `docker-<id>.scope`, `cri-containerd-<id>.scope`, `/kubepods/.../<id>`,
/// `crio-<id>.scope`, `libpod-<id>.scope` (and `.../libpod-<id>.scope/container`), `nerdctl-<id>.scope`;
/// the container id and its runtime. Conmon's own cgroups (`libpod-conmon-`, `crio-conmon-`) are not a
/// container. cgroup v1 (`N:controllers:path`) and v2 (`0::path`) lines alike; the innermost match wins.
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
    if name.starts_with("libpod-conmon-") || name.starts_with("crio-conmon-") {
        return None;
    }
    const PREFIXES: [(&str, Runtime); 5] = [
        ("docker-", Runtime::Docker),
        ("cri-containerd-", Runtime::Containerd),
        ("crio-", Runtime::CriO),
        ("libpod-", Runtime::Podman),
        ("nerdctl-", Runtime::Containerd),
    ];
    for (prefix, runtime) in PREFIXES {
        if let Some(id) = name.strip_prefix(prefix).filter(|id| is_id(id)) {
            return Some((runtime, id.to_owned()));
        }
    }
    if is_id(name) {
        if parent == "docker" {
            return Some((Runtime::Docker, name.to_owned()));
        }
        // containerd's cgroupfs layout: `/<containerd namespace>/<id>` (ctr's `default`, the CRI's `k8s.io`,
        // dockerd's `moby`).
        if matches!(parent, "k8s.io" | "default" | "moby") {
            return Some((Runtime::Containerd, name.to_owned()));
        }
        if kubepods {
            return Some((Runtime::Containerd, name.to_owned()));
        }
    }
    None
}

/// A full container id: 64 lower-case hex digits (also what makes it safe in a path).
fn is_id(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "3f2c9a7d5b1e4c8f0a6d2b9e7c5a3f1d8b6e4c2a0f9d7b5e3c1a8f6d4b2e0c9a";

    #[test]
    fn cgroup_paths_of_each_runtime() {
        let cases = [
            (format!("0::/system.slice/docker-{ID}.scope\n"), Runtime::Docker),
            (format!("12:memory:/docker/{ID}\n11:cpu,cpuacct:/docker/{ID}\n"), Runtime::Docker),
            (format!("0::/docker/{ID}\n"), Runtime::Docker),
            (
                format!(
                    "0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod7e3b1c2d_4a5f_4b6c_8d9e_0f1a2b3c4d5e.slice/cri-containerd-{ID}.scope\n"
                ),
                Runtime::Containerd,
            ),
            (format!("4:pids:/kubepods/burstable/pod7e3b1c2d-4a5f-4b6c-8d9e-0f1a2b3c4d5e/{ID}\n"), Runtime::Containerd),
            (format!("0::/kubepods/pod7e3b1c2d-4a5f-4b6c-8d9e-0f1a2b3c4d5e/{ID}\n"), Runtime::Containerd),
            (
                format!(
                    "0::/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-podx.slice/crio-{ID}.scope\n"
                ),
                Runtime::CriO,
            ),
            (format!("0::/kubepods/besteffort/podx/crio-{ID}\n"), Runtime::CriO),
            (format!("0::/machine.slice/libpod-{ID}.scope\n"), Runtime::Podman),
            (
                format!("0::/user.slice/user-1000.slice/user@1000.service/user.slice/libpod-{ID}.scope/container\n"),
                Runtime::Podman,
            ),
            (
                format!("0::/user.slice/user-1000.slice/user@1000.service/user.slice/nerdctl-{ID}.scope\n"),
                Runtime::Containerd,
            ),
        ];
        for (text, runtime) in cases {
            assert_eq!(parse_cgroup(&text), Some((runtime, ID.to_owned())), "{text}");
        }
    }

    #[test]
    fn containerd_namespaces_under_cgroupfs_name_their_containers() {
        for ns in ["k8s.io", "default", "moby"] {
            assert_eq!(parse_cgroup(&format!("0::/{ns}/{ID}\n")), Some((Runtime::Containerd, ID.to_owned())), "{ns}");
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
        assert_eq!(parse_cgroup(&text), Some((Runtime::Docker, inner)));
        let text = format!("13:rdma:/\n12:pids:/docker/{ID}\n");
        assert_eq!(parse_cgroup(&text), Some((Runtime::Docker, ID.to_owned())));
    }
}
