//! How each runtime's instances are found on a node ([`Finding`]): the command line of its service and the
//! configuration file that names, and the places Kubernetes distributions put it. A flag on the command line
//! wins over the configuration file, which wins over the runtime's default.
//!
//! | runtime | service | read |
//! |---|---|---|
//! | containerd | `containerd` | `--config`/`-c` (default `/etc/containerd/config.toml`): `root`, `state`, `[grpc] address`; flags `--root`, `--state`, `--address`/`-a` |
//! | docker | `dockerd` | `--data-root` (`-g`/`--graph` before it); `--config-file` (default `/etc/docker/daemon.json`): `data-root` |
//! | CRI-O | `crio` | `--root`/`-r`; `--config`/`-c` (default `/etc/crio/crio.conf`): `[crio] root` |
//! | podman | `podman system service [URI]` | the `unix://` URI |

use std::path::{Path, PathBuf};

use crate::containers::runtime::{Finding, KnownPlace};

pub(crate) const CONTAINERD: Finding = Finding {
    comms: &["containerd"],
    identity: "containerd_state",
    from_service: containerd,
    known: &[
        KnownPlace {
            distribution: "k3s",
            places: &[
                ("containerd_socket", "/run/k3s/containerd/containerd.sock"),
                ("containerd_state", "/run/k3s/containerd"),
                ("containerd_root", "/var/lib/rancher/k3s/agent/containerd"),
            ],
            present_if: &["/run/k3s/containerd", "/var/lib/rancher/k3s/agent/containerd"],
        },
        KnownPlace {
            distribution: "rke2",
            places: &[
                ("containerd_socket", "/run/k3s/containerd/containerd.sock"),
                ("containerd_state", "/run/k3s/containerd"),
                ("containerd_root", "/var/lib/rancher/rke2/agent/containerd"),
            ],
            present_if: &["/run/k3s/containerd", "/var/lib/rancher/rke2/agent/containerd"],
        },
        KnownPlace {
            distribution: "k0s",
            places: &[
                ("containerd_socket", "/run/k0s/containerd.sock"),
                ("containerd_state", "/run/k0s/containerd"),
                ("containerd_root", "/var/lib/k0s/containerd"),
            ],
            present_if: &["/var/lib/k0s/containerd"],
        },
        KnownPlace {
            distribution: "microk8s",
            places: &[
                ("containerd_socket", "/var/snap/microk8s/common/run/containerd.sock"),
                ("containerd_state", "/var/snap/microk8s/common/run/containerd"),
                ("containerd_root", "/var/snap/microk8s/common/var/lib/containerd"),
            ],
            present_if: &["/var/snap/microk8s/common/var/lib/containerd"],
        },
    ],
};

pub(crate) const DOCKERD: Finding =
    Finding { comms: &["dockerd"], identity: "docker_root", from_service: dockerd, known: &[] };

pub(crate) const CRIO: Finding = Finding {
    comms: &["crio"],
    identity: "storage",
    from_service: crio,
    known: &[KnownPlace {
        distribution: "openshift",
        places: &[("storage", "/var/lib/containers/storage")],
        present_if: &["/var/run/crio/crio.sock"],
    }],
};

pub(crate) const PODMAN: Finding =
    Finding { comms: &["podman"], identity: "podman_socket", from_service: podman, known: &[] };

/// The value of the last of `names` in `args` (`--name value`, `--name=value`); `None` if not there.
pub(crate) fn flag(args: &[String], names: &[&str]) -> Option<String> {
    let mut found = None;
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        for name in names {
            if arg == name {
                found = it.clone().next().cloned();
            } else if let Some(v) = arg.strip_prefix(name).and_then(|r| r.strip_prefix('=')) {
                found = Some(v.to_owned());
            }
        }
    }
    found.filter(|v| !v.is_empty())
}

fn absolute(p: Option<String>) -> Option<PathBuf> {
    p.filter(|p| p.starts_with('/')).map(PathBuf::from)
}

/// A string at a dotted path of a TOML document.
fn toml_string(doc: &toml::Table, path: &[&str]) -> Option<String> {
    let (last, tables) = path.split_last()?;
    let mut table = doc;
    for t in tables {
        table = table.get(*t)?.as_table()?;
    }
    table.get(*last)?.as_str().map(str::to_owned)
}

fn toml_doc(text: Option<String>) -> toml::Table {
    text.and_then(|t| t.parse::<toml::Table>().ok()).unwrap_or_default()
}

fn containerd(args: &[String], read: &dyn Fn(&Path) -> Option<String>) -> Vec<(&'static str, PathBuf)> {
    let config = flag(args, &["--config", "-c"]).unwrap_or_else(|| "/etc/containerd/config.toml".to_owned());
    let doc = toml_doc(read(Path::new(&config)));
    let pick = |flags: &[&str], at: &[&str]| absolute(flag(args, flags)).or_else(|| absolute(toml_string(&doc, at)));
    let mut out = Vec::new();
    let state = pick(&["--state"], &["state"]);
    let socket = pick(&["--address", "-a"], &["grpc", "address"]);
    let root = pick(&["--root"], &["root"]);
    out.extend(state.map(|p| ("containerd_state", p)));
    out.extend(socket.map(|p| ("containerd_socket", p)));
    out.extend(root.map(|p| ("containerd_root", p)));
    out
}

fn dockerd(args: &[String], read: &dyn Fn(&Path) -> Option<String>) -> Vec<(&'static str, PathBuf)> {
    let config = flag(args, &["--config-file"]).unwrap_or_else(|| "/etc/docker/daemon.json".to_owned());
    let file = read(Path::new(&config)).and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok());
    let from_file = |key: &str| file.as_ref().and_then(|v| v.get(key)).and_then(|v| v.as_str()).map(str::to_owned);
    let root = absolute(flag(args, &["--data-root", "--graph", "-g"]))
        .or_else(|| absolute(from_file("data-root")))
        .or_else(|| absolute(from_file("graph")));
    root.map(|p| ("docker_root", p)).into_iter().collect()
}

fn crio(args: &[String], read: &dyn Fn(&Path) -> Option<String>) -> Vec<(&'static str, PathBuf)> {
    let config = flag(args, &["--config", "-c"]).unwrap_or_else(|| "/etc/crio/crio.conf".to_owned());
    let doc = toml_doc(read(Path::new(&config)));
    let root = absolute(flag(args, &["--root", "-r"])).or_else(|| absolute(toml_string(&doc, &["crio", "root"])));
    root.map(|p| ("storage", p)).into_iter().collect()
}

/// `podman [global flags] system service [flags] [URI]`: only an API service is a podman instance.
fn podman(args: &[String], _read: &dyn Fn(&Path) -> Option<String>) -> Vec<(&'static str, PathBuf)> {
    let Some(at) = args.windows(2).position(|w| matches!(w, [a, b] if a == "system" && b == "service")) else {
        return Vec::new();
    };
    let mut rest = args.iter().skip(at + 2);
    let mut uri = None;
    while let Some(a) = rest.next() {
        if a == "--time" || a == "-t" {
            rest.next();
        } else if !a.starts_with('-') {
            uri = Some(a.clone());
        }
    }
    let path = match uri {
        Some(u) => u.strip_prefix("unix://").or_else(|| u.strip_prefix("unix:")).map(str::to_owned),
        None => Some("/run/podman/podman.sock".to_owned()),
    };
    absolute(path).map(|p| ("podman_socket", p)).into_iter().collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn args(s: &str) -> Vec<String> {
        s.split_whitespace().map(str::to_owned).collect()
    }

    fn files(list: &'static [(&'static str, &'static str)]) -> impl Fn(&Path) -> Option<String> {
        move |p: &Path| list.iter().find(|(at, _)| Path::new(at) == p).map(|(_, t)| (*t).to_owned())
    }

    fn pairs<'a>(v: &'a [(&'static str, PathBuf)]) -> Vec<(&'static str, &'a str)> {
        v.iter().map(|(k, p)| (*k, p.to_str().unwrap())).collect()
    }

    #[test]
    fn flags_in_both_spellings_the_last_wins() {
        let a = args("-c /a --config=/b --root /r --root=");
        assert_eq!(flag(&a, &["--config", "-c"]).as_deref(), Some("/b"));
        assert_eq!(flag(&a, &["--root"]), None, "an empty value is none");
        assert_eq!(flag(&args("--state"), &["--state"]), None);
        assert_eq!(flag(&args("--stateful /x"), &["--state"]), None);
    }

    #[test]
    fn containerd_as_k3s_runs_it() {
        let a = args(
            "-c /var/lib/rancher/k3s/agent/etc/containerd/config.toml -a /run/k3s/containerd/containerd.sock \
             --state /run/k3s/containerd --root /var/lib/rancher/k3s/agent/containerd",
        );
        assert_eq!(
            pairs(&containerd(&a, &files(&[]))),
            [
                ("containerd_state", "/run/k3s/containerd"),
                ("containerd_socket", "/run/k3s/containerd/containerd.sock"),
                ("containerd_root", "/var/lib/rancher/k3s/agent/containerd"),
            ]
        );
    }

    #[test]
    fn containerd_from_its_config_file_flags_first() {
        let read = files(&[(
            "/etc/ctd.toml",
            "version = 2\nroot = \"/data/containerd\"\nstate = \"/run/ctd\"\n[grpc]\naddress = \"/run/ctd/ctd.sock\"\n",
        )]);
        assert_eq!(
            pairs(&containerd(&args("--config /etc/ctd.toml --root /other"), &read)),
            [
                ("containerd_state", "/run/ctd"),
                ("containerd_socket", "/run/ctd/ctd.sock"),
                ("containerd_root", "/other")
            ]
        );
        // The default file, and nothing where it says nothing: the runtime's defaults stay.
        let read = files(&[("/etc/containerd/config.toml", "version = 2\nroot = \"/srv/ctd\"\n")]);
        assert_eq!(pairs(&containerd(&[], &read)), [("containerd_root", "/srv/ctd")]);
        let read = files(&[("/etc/containerd/config.toml", "this is [not toml")]);
        assert!(containerd(&[], &read).is_empty());
        let read = files(&[("/etc/containerd/config.toml", "root = \"relative\"")]);
        assert!(containerd(&[], &read).is_empty(), "a relative path is no place");
    }

    #[test]
    fn dockerd_data_root() {
        assert_eq!(
            pairs(&dockerd(&args("-H unix:///run/d.sock --data-root /srv/docker"), &files(&[]))),
            [("docker_root", "/srv/docker")]
        );
        let read = files(&[("/etc/docker/daemon.json", r#"{"data-root": "/data/docker"}"#)]);
        assert_eq!(pairs(&dockerd(&[], &read)), [("docker_root", "/data/docker")]);
        let read = files(&[("/x.json", r#"{"graph": "/old"}"#)]);
        assert_eq!(pairs(&dockerd(&args("--config-file=/x.json"), &read)), [("docker_root", "/old")]);
        assert!(dockerd(&[], &files(&[])).is_empty());
    }

    #[test]
    fn crio_root() {
        let read = files(&[("/etc/crio/crio.conf", "[crio]\nroot = \"/var/lib/ocp/storage\"\n")]);
        assert_eq!(pairs(&crio(&[], &read)), [("storage", "/var/lib/ocp/storage")]);
        assert_eq!(pairs(&crio(&args("--root=/r"), &read)), [("storage", "/r")]);
    }

    #[test]
    fn podman_service_socket() {
        assert_eq!(
            pairs(&podman(&args("system service --time=0 unix:///run/p/p.sock"), &files(&[]))),
            [("podman_socket", "/run/p/p.sock")]
        );
        assert_eq!(
            pairs(&podman(&args("--log-level info system service -t 0"), &files(&[]))),
            [("podman_socket", "/run/podman/podman.sock")]
        );
        assert!(podman(&args("run --rm alpine"), &files(&[])).is_empty(), "a podman that is no service");
        assert!(podman(&args("system service tcp://0.0.0.0:8080"), &files(&[])).is_empty());
    }
}
