//! Privileged: no first-write race in a fresh container. In a WordPress container (the fixture of
//! `container_enforce`, the seed's KubeArmor policy, plus the whole `/tmp` tree), the container's first
//! command writes a script into its `/tmp` and runs it at once with `sh`: the first write copies `/tmp` up
//! into the overlay's upper layer, and the open of the script follows within a millisecond. Every attempt
//! must be refused with its alert, `runs` times in fresh containers on each host layout, also with the script
//! in a directory the command makes first (`/tmp/a`).
//!
//! The containers are started in parallel batches (`podman run --rm`), each bounded by `timeout`.

use std::fs;
use std::time::Instant;

use serde_json::Value;

use crate::common::*;
use crate::container_enforce::{expected_marks, setup};
use crate::containers::{IMAGE, SandboxLayout, WORDPRESS_LABELS, label_args, path_str};

/// The whole `/tmp` tree of the WordPress containers (the KubeArmor drop-in's `/tmp/*` stops at `/tmp`'s own
/// files): for the script in a directory made by the command.
const TREE_POLICY: &str = "ctr-block-exec-in-tmp-tree";
const TREE_TOML: &str = "\
[[policy]]
name = \"ctr-block-exec-in-tmp-tree\"
action = \"Block\"
message = \"Alert! Execution attempted inside the /tmp tree\"

[policy.selector]
match_labels = { app = \"wordpress\" }
namespace = \"wordpress-mysql\"

[[policy.process.match_directories]]
dir = \"/tmp/\"
recursive = true
";

/// Containers started at once.
const BATCH: usize = 10;

fn runs() -> usize {
    std::env::var("NOEXECD_RACE_RUNS").ok().and_then(|v| v.parse().ok()).unwrap_or(100)
}

/// Runs `script` as the first command of `n` fresh WordPress containers (`/data` holds `s.sh`), `BATCH` at a
/// time; each container's output, in order.
fn first_commands(g: &crate::container_enforce::Guarded, tag: &str, script: &str, n: usize) -> Vec<String> {
    let base = g.sb.base();
    let out = base.join(format!("race-{tag}"));
    fs::create_dir_all(g.sb.host_view(&out)).unwrap();
    let data = format!("{}:/data:ro", path_str(&base.join("data")));
    let cgroup = format!("/{}", g.sb.cgroup);
    let mut args: Vec<String> =
        ["run", "--rm", "--network", "none", "--cgroup-parent", &cgroup, "-v", &data].map(String::from).to_vec();
    args.extend(label_args(&WORDPRESS_LABELS));
    args.extend([IMAGE.to_owned(), "/bin/sh".to_owned(), "-c".to_owned(), script.to_owned()]);
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let argv: Vec<String> = g.sb.podman_argv(&refs).iter().map(|a| sh_quote(std::path::Path::new(a))).collect();
    let argv = argv.join(" ");
    let batch_len: usize = std::env::var("NOEXECD_RACE_BATCH").ok().and_then(|v| v.parse().ok()).unwrap_or(BATCH);
    let mut i = 0;
    while i < n {
        let mut batch = String::new();
        for j in i..(i + batch_len).min(n) {
            let file = sh_quote(&out.join(j.to_string()));
            batch += &format!("timeout -k 2 120 {argv} > {file} 2>&1 < /dev/null &\n");
        }
        batch += "wait\n";
        g.sb.sh(&batch);
        i += batch_len;
    }
    (0..n).map(|j| fs::read_to_string(g.sb.host_view(&out.join(j.to_string()))).unwrap_or_default()).collect()
}

fn no_first_write_race(name: &str, layout: SandboxLayout) {
    let Some(mut g) = setup(name, layout) else { return };
    let base = g.sb.base();
    fs::write(g.sb.host_view(&base.join("policy.d/tree.toml")), TREE_TOML).unwrap();
    fs::create_dir_all(g.sb.host_view(&base.join("data"))).unwrap();
    fs::write(g.sb.host_view(&base.join("data/s.sh")), "echo ran\n").unwrap();
    if std::env::var_os("NOEXECD_RACE_NO_CACHE").is_some() {
        let config = g.sb.host_view(&g.config);
        let text = fs::read_to_string(&config).unwrap().replacen("[daemon]\n", "[daemon]\nexec_cache = false\n", 1);
        fs::write(&config, text).unwrap();
    }
    let want = expected_marks(&g);
    g.start(&want);
    let n = runs();
    let mut alerts = 0;
    let mut failed = Vec::new();
    let flat = "cp /data/s.sh /tmp/s.sh; /bin/sh /tmp/s.sh";
    let subdir = "mkdir /tmp/a && cp /data/s.sh /tmp/a/s.sh && /bin/sh /tmp/a/s.sh";
    // (what, the first command, the script, its policy, whether a run is a failure): a directory made by the
    // command itself is marked by the directory tracker within milliseconds of its creation (the window
    // docs/containers.md documents), measured here and not held to 0.
    for (tag, script, resource, policy, strict) in
        [("flat", flat, "/tmp/s.sh", POLICY_NAME, true), ("subdir", subdir, "/tmp/a/s.sh", TREE_POLICY, false)]
    {
        let started = Instant::now();
        let outputs = first_commands(&g, tag, script, n);
        let ran = outputs.iter().filter(|o| o.contains("ran")).count();
        let refused = outputs.iter().filter(|o| o.contains(EPERM_TEXT)).count();
        println!(
            "{name}: {tag}: `{script}` as the first command of {n} containers: {ran} ran, {refused} refused ({:.1} s)",
            started.elapsed().as_secs_f64()
        );
        if strict && refused != n {
            let odd: Vec<&String> = outputs.iter().filter(|o| !o.contains(EPERM_TEXT)).take(3).collect();
            failed.push(format!("{tag}: {ran} of {n} ran, {refused} refused; for example:\n{odd:?}"));
        }
        // One alert per refusal, naming the script where the container sees it.
        alerts += refused;
        let a = g.expect_alerts(alerts, &format!("{tag}: one alert per refusal"));
        for x in &a[alerts - refused..] {
            assert_eq!(get_str(x, "Resource"), resource, "{name}: {tag}: {x}");
            assert_eq!(get_str(x, "PolicyName"), policy, "{name}: {tag}: {x}");
            assert!(get_str(x, "Data").starts_with("fanotify=FAN_OPEN_PERM route=interpreter"), "{name}: {x}");
            assert!(x.get("ContainerID").and_then(Value::as_str).is_some_and(|c| !c.is_empty()), "{name}: {x}");
        }
    }
    if std::env::var_os("NOEXECD_RACE_LOG").is_some() {
        println!("--- noexecd log ---\n{}", g.log_text());
    }
    assert!(failed.is_empty(), "{name}: the first write raced the guard:\n{}", failed.join("\n"));
    g.verify();
}

#[test]
fn tmp_tmpfs_no_first_write_race_in_a_fresh_container() {
    no_first_write_race(&test_name!(), SandboxLayout::TmpTmpfs);
}

#[test]
fn ext4_root_no_first_write_race_in_a_fresh_container() {
    no_first_write_race(&test_name!(), SandboxLayout::Ext4Root);
}
