#!/usr/bin/env python3
"""Turns bench/inner.sh's measurements into the ratio table (printed), docs/benchmarks.md and the plot.

Usage: report.py RESULTS_TSV NOEXECD_BIN BENCHMARKS_MD PLOT_BASENAME   (bench/run.sh: docs/benchmarks.md bench/plot)
Input lines: scenario<TAB>series<TAB>round<TAB>value<TAB>unit. Ratios are medians of per-round ratios: each
round measures the guarded and the unguarded side back to back, so load from elsewhere hits both alike.
"""
import os
import platform
import statistics
import subprocess
import sys
from collections import defaultdict

res_path, bin_path, md_path, plot_base = sys.argv[1:5]

data = defaultdict(dict)  # (scenario, series) -> {round: value}
units = {}
for line in open(res_path):
    parts = line.rstrip("\n").split("\t")
    if len(parts) != 5:
        continue
    sc, series, rnd, val, unit = parts
    try:
        data[(sc, series)][int(rnd)] = float(val)
    except ValueError:
        continue
    units[(sc, series)] = unit


def med(sc, series):
    vals = list(data.get((sc, series), {}).values())
    return statistics.median(vals) if vals else None


def mx(sc, series):
    vals = list(data.get((sc, series), {}).values())
    return max(vals) if vals else None


def paired(sc, a, b, f):
    """Median over rounds of f(a_round, b_round)."""
    da, db = data.get((sc, a), {}), data.get((sc, b), {})
    vals = [f(da[r], db[r]) for r in sorted(set(da) & set(db)) if r > 0]
    return statistics.median(vals) if vals else None


def ratio(sc, a, b):
    return paired(sc, a, b, lambda x, y: x / y)


def overhead(sc, a, b):
    return paired(sc, a, b, lambda x, y: x - y)


def fmt(v, spec="{:.3f}"):
    return "n/a" if v is None else spec.format(v)


def us(v):
    return "n/a" if v is None else f"{v / 1000:.1f} µs"


rows = []  # (figure, goal, measured, verdict, note)


def verdict(ok):
    return "n/a" if ok is None else ("PASS" if ok else "MISS")


# Goal 1: denied exec latency / minimal C responder.
d_ratio = ratio("denied", "noexecd", "responder")
d_ratio_path = ratio("denied", "noexecd-path", "responder")
rows.append(("denied exec latency / minimal C responder", "≤ 1.3", fmt(d_ratio, "{:.2f}"),
             verdict(None if d_ratio is None else d_ratio <= 1.3), "tmpfs decided as a whole"))
rows.append(("denied exec, path-decided (/tmp a directory of `/`) / minimal C responder", "≤ 1.15",
             fmt(d_ratio_path, "{:.2f}"), verdict(None if d_ratio_path is None else d_ratio_path <= 1.15),
             "ext4 image, /tmp a directory on it"))
# The floors of a path-decided filesystem: C responders on an image like img, plain and naming the file.
d_path_plain = ratio("denied", "noexecd-path", "responder-path")
d_path_named = ratio("denied", "noexecd-path", "responder-named")
named_cost = ratio("denied", "responder-named", "responder")
rows.append(("denied exec, path-decided / C responder on the same filesystem", "(context)",
             fmt(d_path_plain, "{:.2f}"), "",
             f"the plain responder on an ext4 twin: {us(med('denied', 'responder-path'))}, on its tmpfs "
             f"{us(med('denied', 'responder'))}"))
rows.append(("denied exec, path-decided / naming C responder (statx + readlink)", "(context)",
             fmt(d_path_named, "{:.2f}"), "",
             f"naming the file is the least a guard deciding by path must do: the naming responder on the ext4 twin "
             f"{us(med('denied', 'responder-named'))}, {fmt(named_cost, '{:.2f}')}× the minimal responder"))

# Goal 2: allowed exec on a marked filesystem, guard / no guard.
a_static = ratio("allowed", "noexecd-static", "none@noexecd-static")
a_dynamic = ratio("allowed", "noexecd-dynamic", "none@noexecd-dynamic")
worst = None if a_static is None or a_dynamic is None else max(a_static, a_dynamic)
nc_static = ratio("allowed", "noexecd-nocache-static", "none@noexecd-nocache-static")
nc_dynamic = ratio("allowed", "noexecd-nocache-dynamic", "none@noexecd-nocache-dynamic")
rows.append(("allowed exec on a marked filesystem, guard / no guard", "≤ 1.02",
             f"static {fmt(a_static)}, dynamic {fmt(a_dynamic)}", verdict(None if worst is None else worst <= 1.02),
             f"without the exec cache: static {fmt(nc_static)}, dynamic {fmt(nc_dynamic)}; "
             f"{fmt(med('cache', 'noexecd-cached-inodes'), '{:.0f}')} inodes in the exec cache in a running container"))

# Goal 3: noexecd overhead / fapolicyd overhead (scenario 1).
o = {}
for kind in ("static", "dynamic"):
    o[kind] = (overhead("allowed", f"noexecd-{kind}", f"none@noexecd-{kind}"),
               overhead("allowed", f"fapolicyd-{kind}", f"none@fapolicyd-{kind}"))
o_ratio = {k: (None if n is None or f is None or f <= 0 else n / f) for k, (n, f) in o.items()}
o_ok = None
if all(v is not None for v in o_ratio.values()):
    o_ok = all(v <= 0.1 for v in o_ratio.values())
rows.append(("noexecd overhead / fapolicyd overhead (scenario 1)", "≤ 0.1",
             f"static {fmt(o_ratio['static'], '{:.2f}')}, dynamic {fmt(o_ratio['dynamic'], '{:.2f}')}", verdict(o_ok),
             "overheads per exec: noexecd static {}, dynamic {}; fapolicyd static {}, dynamic {}".format(
                 *(f"{v / 1000:+.1f} µs" if v is not None else "n/a"
                   for v in (o["static"][0], o["dynamic"][0], o["static"][1], o["dynamic"][1])))))

# Goal 4: exec storm.
rate = med("storm", "noexecd-rate")
worst_call = mx("storm", "noexecd-worst")
# A stall is the daemon not answering (the kernel has no timeout): any exec waiting a second or more.
storm_ok = None if rate is None or worst_call is None else (rate >= 50000 and worst_call < 1e9)
rows.append(("exec storm, 2 spawners (decisions/s)", "≥ 50 000, no stall", fmt(rate, "{:,.0f}"), verdict(storm_ok),
             f"slowest single exec {us(worst_call)} (C responder {us(mx('storm', 'responder-worst'))}); path-decided: {fmt(med('storm', 'noexecd-path-rate'), '{:,.0f}')}/s; "
             f"C responder {fmt(med('storm', 'responder-rate'), '{:,.0f}')}/s; fapolicyd {fmt(med('storm', 'fapolicyd-rate'), '{:,.0f}')}/s"))

# Goal 5: RSS steady / CPU idle.
rss = max(v for v in (med("storm", "noexecd-rss"), med("idle", "noexecd-after-rss"), med("idle", "noexecd-rss"))
          if v is not None) if data.get(("idle", "noexecd-rss")) else None
cpu_idle = med("idle", "noexecd-cpu")
cpu_idle_after = med("idle", "noexecd-after-cpu")
res_ok = None if rss is None or cpu_idle is None else (rss <= 16 * 1024 and cpu_idle == 0 and (cpu_idle_after or 0) == 0)
rows.append(("RSS steady / CPU idle", "≤ 16 MiB / 0 %",
             f"{fmt(None if rss is None else rss / 1024, '{:.1f}')} MiB / {fmt(cpu_idle, '{:.0f}')} %", verdict(res_ok),
             f"CPU during the storm {fmt(med('storm', 'noexecd-cpu'), '{:.0f}')} % of one core; "
             f"fapolicyd RSS {fmt(None if med('storm', 'fapolicyd-rss') is None else med('storm', 'fapolicyd-rss') / 1024, '{:.1f}')} MiB"))

# Goal 6: the open guard's directory tracking (phase 5).
p99 = med("dirs", "mark-p99")
dirs_idle = med("dirs", "idle-cpu")
probes, guarded = med("dirs", "probes"), med("dirs", "probes-guarded")
dirs_ok = None if p99 is None else (p99 <= 50 and probes == guarded)
rows.append(("new directory's open mark during a mkdir storm (p99)", "≤ 50 ms", f"{fmt(p99, '{:.1f}')} ms", verdict(dirs_ok),
             f"{fmt(med('dirs', 'storm-dirs'), '{:,.0f}')} directories at {fmt(med('dirs', 'storm-rate'), '{:,.0f}')} mkdir/s; "
             f"{fmt(guarded, '{:.0f}')}/{fmt(probes, '{:.0f}')} probes guarded, p50 {fmt(med('dirs', 'mark-p50'), '{:.2f}')} ms, "
             f"max {fmt(med('dirs', 'mark-max'), '{:.1f}')} ms; daemon CPU during the storm {fmt(med('dirs', 'storm-cpu'), '{:.0f}')} % of one core"))
rows.append(("standing directories, idle daemon CPU", "≤ 1 %", f"{fmt(dirs_idle, '{:.2f}')} %",
             verdict(None if dirs_idle is None else dirs_idle <= 1),
             f"{fmt(med('dirs', 'storm-dirs'), '{:,.0f}')} directories; {fmt(med('dirs', 'marks'), '{:,.0f}')} inode marks; "
             f"RSS {fmt(None if med('dirs', 'idle-rss') is None else med('dirs', 'idle-rss') / 1024, '{:.1f}')} MiB"))

if data.get(("dirs", "bound-mark-p99")):
    bp99, bprobes, bguarded = med("dirs", "bound-mark-p99"), med("dirs", "bound-probes"), med("dirs", "bound-probes-guarded")
    rows.append(("the same storm in /tmp bound onto itself (mount mark too): p99", "≤ 50 ms", f"{fmt(bp99, '{:.1f}')} ms",
                 verdict(None if bp99 is None else (bp99 <= 50 and bprobes == bguarded)),
                 f"{fmt(bguarded, '{:.0f}')}/{fmt(bprobes, '{:.0f}')} probes guarded; daemon CPU during the storm "
                 f"{fmt(med('dirs', 'bound-storm-cpu'), '{:.0f}')} % of one core"))
# Goal 7: a directory made a moment ago (phase 6): sh on a script in it at once, as uid 65534.
if data.get(("race", "tmpfs-ran")):
    runs = {k: med("race", f"{k}-ran") for k in ("tmpfs", "bound", "shared")}
    attempts = med("race", "tmpfs-attempts")
    closed = None if runs["tmpfs"] is None or runs["bound"] is None else runs["tmpfs"] == 0 and runs["bound"] == 0
    rows.append(("a directory made a moment ago: runs of `sh` on a script written into it at once", "0",
                 f"{fmt(runs['tmpfs'], '{:.0f}')} / {fmt(runs['bound'], '{:.0f}')} of {fmt(attempts, '{:,.0f}')}", verdict(closed),
                 f"/tmp a tmpfs of its own {fmt(runs['tmpfs'], '{:.0f}')}, /tmp bound onto itself {fmt(runs['bound'], '{:.0f}')}; "
                 f"/tmp a plain directory of `/` (directory marks only, the window the bind closes) "
                 f"{fmt(runs['shared'], '{:.0f}')} of {fmt(med('race', 'shared-attempts'), '{:,.0f}')}"))

# Scenario 3: the open guard against the minimal C FAN_OPEN_PERM responder on the same marks.
if data.get(("open", "guard-on")):
    on = ratio("open", "guard-on", "none@on")
    resp = ratio("open", "guard-resp", "none@resp")
    off = ratio("open", "guard-off", "none@off")
    floor = ratio("open", "guard-on", "guard-resp")
    rows.append(("open-heavy work in /tmp: open guard / minimal C open responder (scenario 3)", "≤ 1.10",
                 fmt(floor), verdict(None if floor is None else floor <= 1.10),
                 f"against no guard: open guard {fmt(on)}, C responder {fmt(resp)}, noexecd with the open guard "
                 f"off {fmt(off)}; guard's CPU per open (all threads): noexecd {fmt(med('open', 'cpu-on'), '{:.0f}')} ns, "
                 f"C responder {fmt(med('open', 'cpu-resp'), '{:.0f}')} ns (ratio {fmt(ratio('open', 'cpu-on', 'cpu-resp'), '{:.2f}')})"))
    if data.get(("open", "guard-bound")):
        bound_floor = ratio("open", "guard-bound", "guard-resp")
        rows.append(("open-heavy work in /tmp bound onto itself (mount mark too) / minimal C open responder", "≤ 1.10",
                     fmt(bound_floor), verdict(None if bound_floor is None else bound_floor <= 1.10),
                     f"against no guard {fmt(ratio('open', 'guard-bound', 'none@bound'))}; against the open guard on "
                     f"/tmp a plain directory {fmt(ratio('open', 'guard-bound', 'guard-on'))}; guard's CPU per open "
                     f"{fmt(med('open', 'cpu-bound'), '{:.0f}')} ns"))
    if data.get(("open", "guard-sniff")):
        sniff_floor = ratio("open", "guard-sniff", "guard-resp")
        rows.append(("open-heavy work: sniffing C open responder (statx, 64-byte pread, readlink of the opener's exe) "
                     "/ minimal C open responder", "(context)", fmt(sniff_floor), "",
                     f"open guard / sniffing C responder {fmt(ratio('open', 'guard-on', 'guard-sniff'))}; sniffing "
                     f"responder's CPU per open {fmt(med('open', 'cpu-sniff'), '{:.0f}')} ns"))
else:
    rows.append(("open-heavy work in /tmp (scenario 3)", "(context)", "n/a (open guard not built)", "", ""))

# Scenario 3a: file rules. Opens in a directory a host owner_only Block rule covers, made by the files' owner
# (decided and let through, no alert), and opens next to it that no rule covers.
if data.get(("filerules", "covered-on")):
    fr_covered = ratio("filerules", "covered-on", "covered-resp")
    fr_uncovered = ratio("filerules", "uncovered-on", "none@on")
    rows.append(("opens a file rule covers and lets through / minimal C open responder (scenario 3a)", "≤ 1.20",
                 fmt(fr_covered), verdict(None if fr_covered is None else fr_covered <= 1.20),
                 f"per file (create+write, open+read): noexecd {us(med('filerules', 'covered-on'))}, C responder "
                 f"{us(med('filerules', 'covered-resp'))}, no guard {us(med('filerules', 'none@on'))}; against no guard: "
                 f"noexecd {fmt(ratio('filerules', 'covered-on', 'none@on'))}, C responder "
                 f"{fmt(ratio('filerules', 'covered-resp', 'none@resp'))}; alerts {fmt(med('filerules', 'alerts'), '{:.0f}')}"))
    rows.append(("opens next to them that no file rule covers / no guard (scenario 3a)", "≤ 1.02",
                 fmt(fr_uncovered), verdict(None if fr_uncovered is None else fr_uncovered <= 1.02),
                 f"noexecd {us(med('filerules', 'uncovered-on'))}, no guard {us(med('filerules', 'none@on'))} per file; "
                 f"with the C responder on the ruled directory {fmt(ratio('filerules', 'uncovered-resp', 'none@resp'))}"))
elif data.get(("filerules", "n/a")):
    rows.append(("file rules (scenario 3a)", "(context)", "n/a (file rules not enforced by this build)", "", ""))

# Scenario 7: podman containers, guarded storage against its unguarded twin.
if data.get(("container", "allowed-noexecd")):
    c_allowed = ratio("container", "allowed-noexecd", "allowed-none")
    c_denied = ratio("container", "denied-noexecd", "denied-responder")
    c_denied_named = ratio("container", "denied-noexecd", "denied-named")
    c_named_cost = ratio("container", "denied-named", "denied-responder")
    c_start = ratio("container", "start-noexecd", "start-none")
    c_rss = med("container", "rss-per-container")
    n_idle = med("container", "idle-containers")
    rows.append(("allowed exec inside a guarded container / the same unguarded", "≤ 1.03", fmt(c_allowed),
                 verdict(None if c_allowed is None else c_allowed <= 1.03),
                 f"{us(med('container', 'allowed-noexecd'))} against {us(med('container', 'allowed-none'))} per "
                 "vfork + exec + wait of the image's static hello, `podman exec` into one long-lived container per "
                 f"side ({len(data.get(('container', 'allowed-noexecd'), {}))} pairs); "
                 f"{fmt(med('container', 'cached-inodes'), '{:.0f}')} inodes in the exec cache in a running container"))
    rows.append(("denied exec in a container / minimal C responder denying it", "≤ 1.3", fmt(c_denied, "{:.2f}"),
                 verdict(None if c_denied is None else c_denied <= 1.3),
                 f"the image's /tmp/x under a container policy: {us(med('container', 'denied-noexecd'))}; "
                 f"the responder's tmpfs bound into a container: {us(med('container', 'denied-responder'))} "
                 "(`podman exec` into a long-lived container per side)"))
    rows.append(("denied exec in a container / naming C responder (statx + readlink)", "(context)",
                 fmt(c_denied_named, "{:.2f}"), "",
                 f"the naming responder's tmpfs bound into a container: {us(med('container', 'denied-named'))}, "
                 f"{fmt(c_named_cost, '{:.2f}')}× the minimal responder there"))
    first_ours, first_resp = med("container", "first-denial-noexecd"), med("container", "first-denial-responder")
    rows.append(("first denial in a fresh container (its runtime asked which policies select it)", "(context)",
                 fmt(None if first_ours is None else first_ours / 1e6, "{:.1f} ms"), "",
                 f"the minimal responder's first denial in a fresh container: "
                 f"{fmt(None if first_resp is None else first_resp / 1e6, '{:.2f} ms')}; once per container"))
    rows.append(("`podman run --rm IMAGE true`, guard / no guard", "≤ 1.10", fmt(c_start),
                 verdict(None if c_start is None else c_start <= 1.10),
                 f"{fmt(None if med('container', 'start-noexecd') is None else med('container', 'start-noexecd') / 1e6, '{:.0f}')} ms "
                 f"against {fmt(None if med('container', 'start-none') is None else med('container', 'start-none') / 1e6, '{:.0f}')} ms"))
    rows.append(("daemon RSS growth per running container", "≤ 64 KiB", f"{fmt(c_rss, '{:.0f}')} KiB",
                 verdict(None if c_rss is None else c_rss <= 64),
                 f"{fmt(n_idle, '{:.0f}')} idle containers: {fmt(med('container', 'rss-before'), '{:,.0f}')} KiB before, "
                 f"{fmt(med('container', 'rss-after'), '{:,.0f}')} KiB after"))
else:
    rows.append(("podman containers (scenario 7)", "(context)", "n/a (podman not available)", "", ""))

table = ["| figure | goal | measured (median) | verdict | context |", "|---|---|---|---|---|"]
for fig, goal, meas, ver, note in rows:
    table.append(f"| {fig} | {goal} | {meas} | {ver} | {note} |")
table_md = "\n".join(table)
print(table_md)

# Absolute figures, as context.
abs_rows = ["| scenario | series | median | unit |", "|---|---|---|---|"]
for (sc, series) in sorted(data):
    if "warmup" in series or series == "n/a" or (sc, series) not in units:
        continue
    m = med(sc, series)
    unit = units[(sc, series)]
    if unit == "ns":
        abs_rows.append(f"| {sc} | {series} | {m / 1000:.2f} | µs |")
    elif unit == "KiB":
        abs_rows.append(f"| {sc} | {series} | {m / 1024:.1f} | MiB |")
    else:
        abs_rows.append(f"| {sc} | {series} | {m:,.0f} | {unit} |")
abs_md = "\n".join(abs_rows)

# The plot: per-exec times, allowed (left) and denied (right), each on its own scale.
panels = {
    "allowed": [
        ("static: no guard", "allowed", "none@noexecd-static"), ("static: noexecd", "allowed", "noexecd-static"),
        ("static: noexecd, no cache", "allowed", "noexecd-nocache-static"),
        ("static: fapolicyd", "allowed", "fapolicyd-static"),
        ("dynamic: no guard", "allowed", "none@noexecd-dynamic"), ("dynamic: noexecd", "allowed", "noexecd-dynamic"),
        ("dynamic: noexecd, no cache", "allowed", "noexecd-nocache-dynamic"),
        ("dynamic: fapolicyd", "allowed", "fapolicyd-dynamic"),
    ],
    "denied": [
        ("noexec mount", "denied", "noexec"), ("C responder", "denied", "responder"),
        ("C responder (ext4)", "denied", "responder-path"),
        ("naming C responder (ext4)", "denied", "responder-named"),
        ("noexecd (tmpfs)", "denied", "noexecd"), ("noexecd (ext4, path)", "denied", "noexecd-path"),
        ("fapolicyd (ext4)", "denied", "fapolicyd"),
    ],
}
dat = {}
plotted = {}
for name, items in panels.items():
    dat[name] = os.path.join(os.path.dirname(os.path.abspath(res_path)), f"plot-{name}.dat")
    plotted[name] = 0
    with open(dat[name], "w") as f:
        f.write('"label" value_us\n')
        for label, sc, series in items:
            m = med(sc, series)
            if m is not None:
                f.write(f'"{label}" {m / 1000:.2f}\n')
                plotted[name] += 1
plot_file = plot_base + ".png"
gp = f"""set terminal pngcairo size 1100,520 font 'sans,10'
set output '{plot_file}'
set multiplot layout 1,2 title 'noexecd make bench: time per exec, median (lower is better)'
set style data histograms
set style fill solid 0.8 border -1
set boxwidth 0.8
set xtics rotate by -35 left
set grid ytics
set key off
set bmargin 10
set yrange [0:*]
set title 'allowed exec: vfork + execve + wait (µs)'
plot '{dat["allowed"]}' using 2:xtic(1) linecolor rgb '#3a6ea5', '' using 0:2:(sprintf('%.0f', $2)) with labels offset 0,0.7
set title 'denied execve, one process looping (µs)'
plot '{dat["denied"]}' using 2:xtic(1) linecolor rgb '#a53a3a', '' using 0:2:(sprintf('%.1f', $2)) with labels offset 0,0.7
unset multiplot
"""
# gnuplot cannot draw an empty panel (a run of some phases only): no plot then.
plot_ok = all(plotted.values()) and subprocess.run(["gnuplot"], input=gp, text=True).returncode == 0


def sh(cmd):
    try:
        return subprocess.run(cmd, shell=True, capture_output=True, text=True, timeout=10).stdout.strip()
    except Exception:
        return ""


misses = [f"- **{fig}**: goal {goal}, measured {meas}." for fig, goal, meas, ver, _ in rows if ver == "MISS"]
closing_md = ("Every goal is met." if not misses else "Goals missed in this run:\n\n" + "\n".join(misses))
analysis = os.path.join(os.path.dirname(os.path.abspath(__file__)), "analysis.md")
if os.path.exists(analysis):
    closing_md += "\n\n" + open(analysis).read().strip()

cpu = sh("awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo")
mem = sh("awk '/MemTotal/ {printf \"%.0f GiB\", $2/1048576}' /proc/meminfo")
osr = sh(". /etc/os-release && echo $PRETTY_NAME")
fapo = sh("dpkg-query -W -f '${Version}' fapolicyd")
rev = sh("git rev-parse --short HEAD")
shown_bin = os.path.relpath(bin_path) if bin_path.startswith(os.getcwd() + "/") else bin_path
load = sh("cut -d' ' -f1-3 /proc/loadavg")

md = f"""# noexecd benchmarks

Produced by `make bench` (bench/run.sh → bench/inner.sh → bench/report.py). Every figure below comes from one
run; the ratios compare measurements taken side by side in that run, round by round, so that load from
elsewhere on the machine hits the guarded and the unguarded side alike. Absolute times are context only.

## Machine

| | |
|---|---|
| CPU | {cpu}, {os.cpu_count()} cores |
| memory | {mem} |
| OS, kernel | {osr}, Linux {platform.release()} |
| noexecd | `{shown_bin}` (git {rev}) |
| fapolicyd | {fapo or "not installed"} (Debian package) |
| load average at the end | {load} |

## Ratios and goals

{table_md}

![time per exec]({os.path.relpath(plot_file, os.path.dirname(md_path) or ".")})

## What is measured, and how

Everything runs as root inside `unshare --mount --propagation private`, on filesystems the bench mounts
itself below a fresh tmpfs: nothing marks the machine's own `/` or `/tmp` (`noexecd check` output is checked
before each start; fapolicyd runs chrooted in the image and sees only the image's mounts).

- **img**: a loop-mounted ext4 image standing for `/`: `/usr/bin/hello-static`, `/usr/bin/hello-dynamic`
  with its `ld.so` and `libc.so.6`, and `/tmp` (1777) inside it. The spawner `chroot`s into it, so the
  dynamic program's loader and libc come from the marked filesystem too. **base** is an identical image that
  nobody marks: the no-guard side, measured back to back with the guarded side in every round (the order
  alternates from round to round). **rimg** and **nimg** are two more twins that only the C responders mark
  (scenario 2), one responder each.
- Every process of the bench (the daemons, the C responders, fapolicyd and the loops) runs at real-time
  priority (`chrt -f 10`; `BENCH_RT=0` for nice -19 instead), so that other work on the machine (this one is
  shared with compilers) does not land in one side of a pair and not the other. Every process is bounded by
  `timeout`.
- noexecd's policy protects `img/tmp/`, `img/var/tmp/` and a tmpfs `prot/` (the default policy's shape): on
  `img` the path decides, on `prot` the filesystem does.
- **Scenario 1** (allowed): `execloop spawn`, vfork + execve + waitpid of each program, {{BENCH_SPAWN}} times per run.
- **Scenario 2** (denied): `execloop deny`, execve of a protected file in a loop inside one process: on a
  `noexec` tmpfs (EACCES, no guard involved), on a tmpfs marked by `bench/responder.c` (the smallest useful
  fanotify responder: FAN_CLASS_CONTENT, FAN_MARK_FILESYSTEM, FAN_OPEN_EXEC_PERM, FAN_DENY to everything),
  on noexecd's tmpfs and on noexecd's path-decided `img/tmp`; and the floors of a path-decided filesystem:
  the same responder's `/tmp/x` on `rimg`, and with `-n` (naming: before each answer, a statx of the event
  fd and a readlink of `/proc/self/fd/N`, the least any guard that decides by path must do) on `nimg`. The
  goal stays judged against the responder on its tmpfs; two context rows compare noexecd's path-decided
  denial with these floors. Six series, three runs each per round, order rotating.
- **Scenario 3** (open-heavy work in /tmp): create, write, open, read small files under `img/tmp/work`
  (two opens per file): no guard (`base`), `bench/open_responder.c` (the smallest FAN_OPEN_PERM responder:
  inode marks with FAN_EVENT_ON_CHILD on `img/tmp` and `img/tmp/work`, as noexecd marks a path-decided
  filesystem's protected directories, FAN_ALLOW to everything, the same 64 KiB read), the same responder with
  `-s` (the sniffing floor: before each answer a statx of the event fd, a pread of its first 64 bytes and a
  readlink of the opener's `/proc/PID/exe`, what any guard telling a file that could run from one that cannot
  must look at), noexecd with the open guard on, and off, and on with `img/tmp` bound onto itself (its mount
  then carries the open guard's FAN_OPEN_PERM mount mark besides the directory marks). The guard's CPU time per open (every thread's
  `schedstat` over the guarded run, divided by the opens) is taken in the same runs.
- **Scenario 3a** (file rules): the same create+write, open+read loop under `img/srv/ruled`, which a host
  Block rule with `owner_only = true` covers (`match_directories`, recursive): the bench runs as root and owns
  the files, so every open there, for writing or reading, is decided and let through with no alert, and no
  `/proc/PID/syscall` read (a `read_only` rule would refuse the loop's write opens; an Audit rule would alert);
  and under `img/srv/plain` next to it, which no rule covers. Sides: no guard (`base/srv/ruled`), noexecd
  (open guard on, its default), and `bench/open_responder.c -i img/srv/ruled` (the same directory mark,
  FAN_ALLOW to everything). Before the first round, nobody's (uid 65534) open of a covered file is checked to
  be refused, and afterwards that no open of the loop raised an alert.
- **Scenario 4** (storm): two `execloop storm` processes deny-looping for {{BENCH_STORM_SECS}} s; decisions per
  second and the slowest single execve (a stall would show there).
- **Scenario 5**: fapolicyd {fapo} from Debian, `trust = file`, `integrity = none`, `watch_fs = ext4`,
  `allow_filesystem_mark = 0` (FAN_MARK_MOUNT on the image's mount), `q_size = 640` as shipped,
  `nice_val = 0` (shipped: 14; with 0 it keeps the bench's priority, like noexecd), and rules equivalent to noexecd's default policy:
  `deny_audit perm=execute all : dir=/tmp/` (and `/var/tmp/`, `/dev/shm/`), then `allow perm=any all : all`.
  It runs in the foreground (`--debug-deny`, output to a tmpfs file) so that the bench owns its pid and
  stops it whatever happens; the package's systemd unit is masked before installing it. As deployed,
  fapolicyd also subscribes to FAN_OPEN_PERM, so it is asked about every open on the image (the loader
  opening libc, for instance); noexecd only about execs.
- **Scenario 7** (containers, `bench/containers.sh`): podman with runc and cgroupfs, no network, two private
  storages (`--root`/`--runroot`): one on `img` (its layers on the marked filesystem), one on `base`; one image
  (a static busybox, execloop, hello, `/tmp/x`) imported into each from a tarball. noexecd reads podman's API
  and holds a container policy (KubeArmor YAML drop-in) blocking exec in `/tmp/` and `/var/tmp/` for
  `app=bench` containers. Allowed: `execloop spawn /bin/hello` through `podman exec` into one long-lived
  container per side (`podman run -d IMAGE /bin/sleep`, started once after the warm-up: a container's start
  or stop changes the mount table, which flushes the exec cache, while a running workload sees it full),
  guarded storage against the twin, three pairs per round, order alternating, the ratio the median of the
  per-pair ratios; denied: `execloop deny /tmp/x` through `podman exec` into the same long-lived guarded
  container, against the C responder's tmpfs bound into the twin's long-lived container, and the naming
  responder's (`-n`) the same way (a context row: how much of the denial's cost naming the file explains);
  the first denial of a fresh container (`podman run --rm IMAGE execloop deny /tmp/x 1`), on its own: it also
  waits for the runtime to say which policies select the container, once per container (in a loop of
  {{BENCH_DENY}} denials in a fresh container, as this bench measured before, that one wait moved the mean by
  up to half); a container's life: `podman run --rm IMAGE true`, {{BENCH_CTR_STARTS}} per side and round;
  memory: the daemon's VmRSS before and after starting {{BENCH_CTR_IDLE}} idle containers (its list is refreshed
  every 500 ms).
- **Scenario 6**: the daemon's VmRSS (`/proc/PID/status`) and utime+stime (`/proc/PID/stat`) over 5 s idle,
  and during the storm.
- **Scenario 8** (directory tracking): a tmpfs holding a protected directory and an unprotected one (decided
  by path, as /tmp on `/`); `bench/dirstorm.c` makes {{BENCH_DIRS}} directories in it at {{BENCH_DIR_RATE}} mkdir/s
  while probing every 5 ms: mkdir, write a loadable ELF in the new directory, open it until the open
  guard refuses it (EPERM); the time from mkdir to the first refusal is the probe's mark latency. Then the
  daemon's CPU over 10 s idle with those directories standing. The storm runs first with the directory bound
  onto itself (its mount then carries the open guard's mount mark too), in a tree removed afterwards.
- **Scenario 9** (a directory made a moment ago): `bench/dirrace.c` as uid 65534, {{BENCH_RACE}} times per layout:
  mkdir in the protected directory, write `exit 42` into it as a script and run `sh` on it at once; a run is an
  attempt whose script ran. Layouts: a tmpfs of its own, the image's /tmp bound onto itself, the image's /tmp a
  plain directory of its `/`.

Commands: `make bench` (as root). Knobs: `BENCH_ROUNDS` (default 11), `BENCH_SPAWN` (1000), `BENCH_DENY`
(5000 per run, three runs per round), `BENCH_STORM_SECS` (3, three storms each), `BENCH_DIRS` (100000), `BENCH_PHASES`
(some of `exec nocache open filerules containers fapolicyd dirs race`: such a run prints its table, the rest as n/a, and
writes its report to `target/bench/benchmarks.md`, leaving this file to whole runs). Raw measurements:
`target/bench/results.tsv`. Ratios are medians of per-round ratios; the storm rate is the median of three
storms and "slowest single exec" the worst of them.

## The exec cache (why allowed execs cost nothing)

Where /tmp is a directory on `/`, noexecd's filesystem mark covers every exec on the host. After it allows an
exec there, it puts an inode ignore mark for FAN_OPEN_EXEC_PERM on the file, so that the kernel raises no
event for it again, but only when the file can never get a name in protected scope from anyone but root:

1. no rule can apply to it whoever runs it (no Allow rule loaded, its path is outside every rule's scope,
   and it raised no alert);
2. it is a regular file owned by root, not writable by group or others, with one link, and
   `fs.protected_hardlinks = 1` (else no cache at all): nobody else can hard-link it into /tmp;
3. every directory from its parent up to its filesystem's root is owned by root and not writable by group or
   others: nobody else can rename it, or a directory holding it, into /tmp;
4. the mark is dropped by the kernel when the file is modified (no `FAN_MARK_IGNORED_SURV_MODIFY`);
5. every reload flushes all inode marks (a mount-table change does not: only root can give a cached file
   a new name by mounting); more than 65 536 marks flush too.

Left open, by design: root moving or hard-linking a cached file into /tmp, or handing it to a user (chown,
chmod: attribute changes keep the mark), lets it run from there until the next reload.
`tests/it/exec_cache.rs` checks each part, including that a file a user ran outside and then moved into /tmp
is still blocked.

## Closing note

{closing_md}

## Absolute figures (context)

{abs_md}
"""
with open(md_path, "w") as f:
    f.write(md.replace("{BENCH_SPAWN}", os.environ.get("BENCH_SPAWN", "1000"))
            .replace("{BENCH_STORM_SECS}", os.environ.get("BENCH_STORM_SECS", "3"))
            .replace("{BENCH_DENY}", os.environ.get("BENCH_DENY", "5000"))
            .replace("{BENCH_CTR_STARTS}", os.environ.get("BENCH_CTR_STARTS", "5"))
            .replace("{BENCH_CTR_IDLE}", os.environ.get("BENCH_CTR_IDLE", "50"))
            .replace("{BENCH_DIRS}", os.environ.get("BENCH_DIRS", "100000"))
            .replace("{BENCH_DIR_RATE}", os.environ.get("BENCH_DIR_RATE", "20000"))
            .replace("{BENCH_RACE}", os.environ.get("BENCH_RACE", "10000")))
print(f"\nwrote {md_path}" + (f" and {plot_file}" if plot_ok else
                               " (no plot: gnuplot failed)" if all(plotted.values()) else " (no plot: a panel has no figures)"))
