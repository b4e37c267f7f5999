//! Builds and runs `execloop` (tests/helpers/execloop.c), the fast exec-load generator of the robustness
//! tests, and a tiny static program that exits 0 (the allowed target: one exec event, no loader, no libc).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::common::{Env, Output, SYS_PATH, run_bounded};

pub struct Tools {
    pub execloop: PathBuf,
    pub tiny_true: PathBuf,
}

fn cc(args: &[&str]) {
    let mut cmd = Command::new("cc");
    cmd.env("PATH", SYS_PATH).args(args);
    let o = run_bounded(&mut cmd, Duration::from_secs(120));
    assert!(o.status.success(), "cc {args:?} failed (is gcc installed? `make test-deps`)\n{o}");
}

/// Compiles both into the env's host scratch dir (not a guarded filesystem; the same path in the namespace).
pub fn build(env: &Env) -> Tools {
    let dir = env.base();
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/helpers/execloop.c");
    let execloop = dir.join("execloop");
    cc(&["-O2", "-Wall", "-o", execloop.to_str().unwrap(), src.to_str().unwrap()]);
    let tiny_src = dir.join("tiny_true.c");
    let tiny_true = dir.join("tiny_true");
    if cfg!(target_arch = "x86_64") {
        std::fs::write(
            &tiny_src,
            "void _start(void) { __asm__ volatile(\"mov $60, %%eax\\n xor %%edi, %%edi\\n syscall\" ::: \"memory\"); }\n",
        )
        .unwrap();
        cc(&["-O2", "-static", "-nostdlib", "-o", tiny_true.to_str().unwrap(), tiny_src.to_str().unwrap()]);
    } else {
        std::fs::write(&tiny_src, "int main(void) { return 0; }\n").unwrap();
        cc(&["-O2", "-static", "-o", tiny_true.to_str().unwrap(), tiny_src.to_str().unwrap()]);
    }
    Tools { execloop, tiny_true }
}

/// Runs `execloop args...` in the env's namespace from `cwd`, bounded by `limit` (timeout, then SIGKILL).
pub fn run(env: &Env, tools: &Tools, cwd: &Path, args: &[&str], limit: Duration) -> Output {
    let mut cmd = Command::new("nsenter");
    cmd.env("PATH", SYS_PATH)
        .arg("-t")
        .arg(env.holder_pid.to_string())
        .arg("-m")
        .arg(format!("--wd={}", cwd.display()))
        .args(["--", "timeout", "-k", "5"])
        .arg(limit.as_secs().to_string())
        .arg(&tools.execloop)
        .args(args);
    run_bounded(&mut cmd, limit + Duration::from_secs(30))
}

/// `key=value` from execloop's summary line (the last line of stdout).
pub fn count(out: &Output, key: &str) -> u64 {
    let last = out.stdout.lines().last().unwrap_or_default();
    last.split_whitespace()
        .find_map(|kv| kv.strip_prefix(key)?.strip_prefix('='))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {key}= in execloop's summary line {last:?}\n{out}"))
}

/// The number after `label` in a daemon status text ("... blocked 12, ...").
pub fn status_number(text: &str, label: &str) -> u64 {
    let at = text.find(label).unwrap_or_else(|| panic!("no {label:?} in {text:?}")) + label.len();
    let digits: String = text[at..].chars().take_while(char::is_ascii_digit).collect();
    digits.parse().unwrap_or_else(|_| panic!("no number after {label:?} in {text:?}"))
}
