//! Privileged: an exec made from inside a container is reported in KubeArmor's container form. The test
//! builds what a container is to the host: a process in a docker-named cgroup (`.../docker/<64 hex>`) and in
//! its own pid namespace, and docker's `config.v2.json` for that id (on a tmpfs over /var/lib inside the
//! test's private mount namespace, so the host's /var/lib is untouched).

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::common::*;

/// A cgroup directory named like docker's, removed when dropped (after the processes in it are gone).
struct DockerCgroup(PathBuf);

impl DockerCgroup {
    /// `docker/<id>` in the first writable hierarchy: cgroup v2 at /sys/fs/cgroup, the v2 part of a hybrid
    /// setup, or a v1 controller.
    fn create(id: &str) -> DockerCgroup {
        let roots = ["/sys/fs/cgroup", "/sys/fs/cgroup/unified", "/sys/fs/cgroup/pids", "/sys/fs/cgroup/memory"];
        for root in roots {
            let root = Path::new(root);
            if !root.join("cgroup.procs").exists() {
                continue;
            }
            let dir = root.join("docker").join(id);
            if std::fs::create_dir_all(&dir).is_ok() {
                return DockerCgroup(dir);
            }
        }
        panic!("no writable cgroup hierarchy among {roots:?}");
    }
}

impl Drop for DockerCgroup {
    fn drop(&mut self) {
        crate::common::poll_until(std::time::Duration::from_secs(5), || std::fs::remove_dir(&self.0).ok());
        // The `docker` parent too, when this test made it and nothing else uses it.
        if let Some(parent) = self.0.parent() {
            let _ = std::fs::remove_dir(parent);
        }
    }
}

#[test]
fn exec_from_a_container_is_a_matched_policy_alert_with_container_fields() {
    let mut env = privileged!(Layout::Tmpfs, needs: Needs::WritableCgroups);
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos();
    let id = format!("{:032x}{:032x}", nanos, u128::from(std::process::id()));
    assert_eq!(id.len(), 64);
    let cgroup = DockerCgroup::create(&id);

    env.sh(&format!(
        "mount -t tmpfs -o size=1m noexecd-test-varlib /var/lib\nmkdir -p /var/lib/docker/containers/{id}\n\
         cat > /var/lib/docker/containers/{id}/config.v2.json <<'EOF'\n\
         {{\"ID\":\"{id}\",\"Name\":\"/web-1\",\"Config\":{{\"Image\":\"nginx:1.27\",\"Labels\":{{\
         \"io.kubernetes.pod.namespace\":\"shop\",\"io.kubernetes.pod.name\":\"web-7f9c\"}}}}}}\nEOF\n"
    ));
    let cfg = env.write_config(&DaemonOpts::enforce(), &dir_policy("Block", &env.fs, true));
    env.check(&cfg);
    env.start_daemon(&cfg);
    let payload = env.fs.join("payload");
    env.put_elf(&payload);
    let cwd = env.out.clone();

    // The shell joins the container's cgroup (`0` is the writer itself) inside a new pid namespace, where it
    // is pid 1, then execs the payload.
    let join = format!("echo 0 > {}/cgroup.procs", sh_quote(&cgroup.0));
    let e = env.shell_exec_with_setup("bash", &["unshare", "--pid", "--fork", "--"], &join, &payload, &cwd);
    e.assert_denied_bash("ELF exec'd from inside a container");
    assert_eq!(e.pid, 1, "the shell is pid 1 of its pid namespace\n{}", e.out);

    let alerts = env.expect_alerts(1);
    let a = &alerts[0];
    assert_eq!(get_str(a, "Type"), "MatchedPolicy", "KubeArmor's type for a container event: {a}");
    assert_eq!(get_str(a, "ContainerID"), id, "{a}");
    assert_eq!(get_str(a, "ContainerName"), "web-1", "docker's name without its slash: {a}");
    assert_eq!(get_str(a, "ContainerImage"), "nginx:1.27", "{a}");
    assert_eq!(get_str(a, "NamespaceName"), "shop", "{a}");
    assert_eq!(get_str(a, "PodName"), "web-7f9c", "{a}");
    assert_eq!(get_int(a, "PID"), 1, "PID as the container sees it: {a}");
    assert!(get_int(a, "HostPID") > 1, "HostPID is the pid on the host: {a}");
    assert_eq!(get_str(a, "Action"), "Block", "{a}");
    assert_eq!(get_str(a, "Result"), "Operation not permitted", "{a}");
    assert_eq!(get_str(a, "Resource"), payload.to_str().unwrap(), "{a}");
    assert_eq!(get_str(a, "Operation"), "Process", "{a}");
    assert_eq!(get_str(a, "Source"), real_exe("bash"), "{a}");

    // A host process on the same daemon still gets the host form.
    let host = env.bash_exec(&payload, &cwd);
    host.assert_denied_bash("the same ELF from the host");
    let alerts = env.expect_alerts(2);
    assert_exec_alert(&alerts[1], &Expect::block(&payload, &host, &cwd));
    assert!(alerts[1].get("ContainerID").is_none(), "no container fields on a host alert: {}", alerts[1]);
    drop(env);
    drop(cgroup);
}
