#!/bin/bash
# Checks of the built packages (make package-checks; part of make test). Needs no root except for nothing:
# the rpm goes into a scratch root with --noscripts --nodeps, nothing is installed on this machine.
#   1. lintian: no error, no warning that is not overridden; every override carries a written reason
#   2. .deb: file list and modes, conffiles, generated maintainer scripts
#   3. .rpm: rpm -qp --scripts, rpm -qpl, %config(noreplace) flags, install into a scratch root whose
#      file list and modes are asserted
#   4. the unit: systemd-analyze verify (in the scratch root), no directive that creates a mount
#      namespace, systemd-analyze security --offline=yes exposure <= 4.5
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
OUT=target/packaging
MAX_EXPOSURE=4.5
pass=0 fail=0
ok()  { pass=$((pass + 1)); echo "ok   - $*"; }
bad() { fail=$((fail + 1)); echo "FAIL - $*"; }
check() { local what=$1; shift; if "$@"; then ok "$what"; else bad "$what"; fi; }

shopt -s nullglob
debs=("$OUT"/noexecd_*.deb) rpms=("$OUT"/noexecd-*.rpm)
[ "${#debs[@]}" = 1 ] || { echo "package-checks: expected one $OUT/noexecd_*.deb, found ${#debs[@]} (run make deb)" >&2; exit 1; }
[ "${#rpms[@]}" = 1 ] || { echo "package-checks: expected one $OUT/noexecd-*.rpm, found ${#rpms[@]} (run make rpm)" >&2; exit 1; }
DEB=${debs[0]} RPM=${rpms[0]}
WORK=$(mktemp -d "${TMPDIR:-/tmp}/noexecd-pkgcheck.XXXXXX")
trap 'rm -rf "$WORK"' EXIT

# The files every package carries (man8 pages beyond noexecd.8 are the subcommands' pages).
EXPECTED_COMMON='644 /etc/logrotate.d/noexecd
644 /etc/xdg/autostart/noexecd-notify.desktop
644 /usr/lib/systemd/user/noexecd-notify.service
644 /etc/noexecd/noexecd.toml
644 /etc/noexecd/policy.d/README
644 /usr/lib/systemd/system/noexecd.service
755 /usr/sbin/noexecd
644 /usr/share/bash-completion/completions/noexecd
644 /usr/share/doc/noexecd/README.md
644 /usr/share/fish/vendor_completions.d/noexecd.fish
644 /usr/share/man/man5/noexecd.toml.5.gz
644 /usr/share/man/man8/noexecd.8.gz'
EXPECTED_DEB="$EXPECTED_COMMON
644 /usr/share/doc/noexecd/changelog.Debian.gz
644 /usr/share/doc/noexecd/copyright
644 /usr/share/lintian/overrides/noexecd
644 /usr/share/zsh/vendor-completions/_noexecd"
EXPECTED_RPM="$EXPECTED_COMMON
644 /usr/share/doc/noexecd/changelog
644 /usr/share/zsh/site-functions/_noexecd"

# compare_files LABEL EXPECTED ACTUAL: ACTUAL lines are "MODE PATH"; extra man8 subcommand pages are fine.
compare_files() {
    local label=$1 expected=$2 actual=$3 diffs
    actual=$(grep -v -E '^644 /usr/share/man/man8/noexecd-[a-z]+\.8\.gz$' <<<"$actual")
    diffs=$(diff <(sort -k2 <<<"$expected") <(sort -k2 <<<"$actual"))
    if [ -z "$diffs" ]; then ok "$label: file list and modes as expected ($(wc -l <<<"$actual") files)"
    else bad "$label: file list/modes differ (< expected, > actual):"; sed 's/^/       /' <<<"$diffs"; fi
}

echo "== lintian $(lintian --version | awk '{print $2}') on $DEB"
lintian -I --show-overrides "$DEB" 2>&1 | grep -v "root privileges is not recommended" | sed 's/^/   /'
check "lintian: no error and no warning that is not overridden" bash -c 'lintian --fail-on error,warning "$1" >/dev/null 2>&1' _ "$DEB"
reasonless=$(awk '/^[[:space:]]*#/ {c=1; next} /^[[:space:]]*$/ {c=0; next} { if (!c) print; c=1 }' packaging/lintian-overrides)
if [ -z "$reasonless" ]; then ok "lintian-overrides: every override has a written reason above it"
else bad "lintian-overrides without a reason comment: $reasonless"; fi

echo "== .deb contents and maintainer scripts"
deb_files=$(dpkg-deb --fsys-tarfile "$DEB" | tar -tvf - | awk '$1 !~ /^d/ { m=$1; p=$6; sub(/^\./, "", p);
    mode=0; for (i = 2; i <= 10; i++) { mode = mode * 2 + (substr(m, i, 1) != "-") } printf "%o %s\n", mode, p }')
compare_files ".deb" "$EXPECTED_DEB" "$deb_files"
dpkg-deb -e "$DEB" "$WORK/control"
check ".deb: conffiles are /etc/noexecd/noexecd.toml, policy.d/README, the logrotate file and the autostart entry" \
    diff <(sort "$WORK/control/conffiles") <(printf '%s\n' /etc/logrotate.d/noexecd /etc/noexecd/noexecd.toml /etc/noexecd/policy.d/README /etc/xdg/autostart/noexecd-notify.desktop | sort)
check ".deb postinst: enables and starts the unit" \
    bash -c "grep -q 'deb-systemd-helper enable noexecd.service' '$WORK/control/postinst' && grep -q 'deb-systemd-invoke start noexecd.service' '$WORK/control/postinst'"
check ".deb prerm: stops the unit on remove only (an upgrade hands over instead)" \
    bash -c "grep -q 'deb-systemd-invoke stop noexecd.service' '$WORK/control/prerm' && grep -q '\"\$1\" = remove' '$WORK/control/prerm'"
check ".deb postinst: an upgrade or downgrade hands the group over (noexecd handover), never restarts" \
    bash -c "grep -q '/usr/sbin/noexecd handover' '$WORK/control/postinst' && ! grep -qE 'deb-systemd-invoke (restart|try-restart)' '$WORK/control/postinst'"
check ".deb postrm: purge removes /var/log/noexecd and the deb-systemd-helper state" \
    bash -c "grep -q 'rm -rf /var/log/noexecd' '$WORK/control/postrm' && grep -q 'deb-systemd-helper purge noexecd.service' '$WORK/control/postrm'"
check ".deb: maintainer scripts pass sh -n" bash -c "for s in '$WORK'/control/{postinst,prerm,postrm}; do sh -n \"\$s\" || exit 1; done"
check ".deb: the binary is static (musl) or the package depends on libc6" \
    bash -c "dpkg-deb --fsys-tarfile '$DEB' | tar -xOf - ./usr/sbin/noexecd > '$WORK/noexecd' && chmod +x '$WORK/noexecd' && { file '$WORK/noexecd' | grep -qE 'static(-pie)? linked|statically linked' || dpkg-deb -f '$DEB' Depends | grep -q libc6; }"
file "$WORK/noexecd" | sed "s#$WORK/##; s/^/   /"

echo "== .rpm: $RPM"
RPMQ=(rpm --dbpath "$WORK/rpmdb-q")
scripts=$("${RPMQ[@]}" -qp --scripts "$RPM" 2>/dev/null)
check "rpm -qp --scripts: %post enables and starts on install" \
    bash -c 'grep -q "systemctl --no-reload enable noexecd.service" <<<"$1" && grep -q "systemctl start noexecd.service" <<<"$1"' _ "$scripts"
check "rpm -qp --scripts: %preun disables and stops on erase (as %systemd_preun)" \
    bash -c 'grep -q "disable --now noexecd.service" <<<"$1"' _ "$scripts"
check "rpm -qp --scripts: no scriptlet stops or restarts the daemon on upgrade (%posttrans hands over)" \
    bash -c '! grep -qE "systemctl (stop|try-restart|restart) noexecd.service" <<<"$1" && grep -q "^posttrans scriptlet" <<<"$1" && grep -q "/usr/sbin/noexecd handover" <<<"$1"' _ "$scripts"
for s in packaging/rpm/*.sh; do check "rpm scriptlet $s passes sh -n" sh -n "$s"; done
rpm_list=$("${RPMQ[@]}" -qpl "$RPM" 2>/dev/null)
check "rpm -qpl lists /usr/sbin/noexecd, the unit and the config" \
    bash -c 'for f in /usr/sbin/noexecd /usr/lib/systemd/system/noexecd.service /etc/noexecd/noexecd.toml; do grep -qx "$f" <<<"$1" || exit 1; done' _ "$rpm_list"
flags=$("${RPMQ[@]}" -qp --qf '[%{FILEFLAGS:fflags} %{FILENAMES}\n]' "$RPM" 2>/dev/null)
check "rpm: /etc files are %config(noreplace), the rest is not config" \
    bash -c 'diff <(grep "^c" <<<"$1" | sort) <(printf "%s\n" "cn /etc/logrotate.d/noexecd" "cn /etc/noexecd/noexecd.toml" "cn /etc/noexecd/policy.d/README" "cn /etc/xdg/autostart/noexecd-notify.desktop" | sort)' _ "$flags"
if file "$WORK/noexecd" | grep -qE 'static(-pie)? linked|statically linked'; then
    check "rpm: requires nothing but /bin/sh and rpmlib features (static binary)" \
        bash -c '! "${@:2}" -qpR "$1" 2>/dev/null | grep -vE "^(/bin/sh|rpmlib\(|config\(noexecd\))"' _ "$RPM" "${RPMQ[@]}"
else
    echo "   NOTE: glibc fallback build (the musl target was not available): the packages need the build host's glibc"
    check "rpm: a glibc binary requires libc.so.6" bash -c '"${@:2}" -qpR "$1" 2>/dev/null | grep -q "^libc.so.6"' _ "$RPM" "${RPMQ[@]}"
fi

ROOT="$WORK/root"
mkdir -p "$ROOT"
if rpm --root "$ROOT" --dbpath /var/lib/rpm --noscripts --nodeps -i "$RPM" 2> >(grep -v -E 'should not be used directly|assuming you know what you are doing' >&2); then
    ok "rpm -i --root SCRATCH --noscripts --nodeps"
else
    bad "rpm -i --root SCRATCH --noscripts --nodeps"
fi
rpm_files=$(cd "$ROOT" && find . -path ./var/lib/rpm -prune -o ! -type d -printf '%m /%P\n' | sed 's#^\([0-7]*\) /\./#\1 /#')
compare_files "rpm scratch root" "$EXPECTED_RPM" "$rpm_files"
check "rpm scratch root: installed binary runs ('noexecd version')" bash -c '"$1" version >/dev/null' _ "$ROOT/usr/sbin/noexecd"
check "rpm scratch root: installed binary accepts the shipped config ('noexecd check')" \
    bash -c '"$1" check --config "$2" >/dev/null' _ "$ROOT/usr/sbin/noexecd" "$ROOT/etc/noexecd/noexecd.toml"

echo "== the unit"
UNIT=packaging/noexecd.service
# Verify in a copy of the scratch root (plus /bin/kill, used by ExecReload=) so that ExecStart= resolves.
VROOT="$WORK/vroot"
cp -a "$ROOT" "$VROOT" && mkdir -p "$VROOT/bin" && cp "$(type -P kill)" "$VROOT/bin/kill"
verify_out=$(systemd-analyze verify --man=no --root="$VROOT" /usr/lib/systemd/system/noexecd.service 2>&1)
vrc=$?
if [ "$vrc" = 0 ] && [ -z "$verify_out" ]; then ok "systemd-analyze verify noexecd.service: clean"
else bad "systemd-analyze verify (rc=$vrc):"; sed 's/^/       /' <<<"$verify_out"; fi
check "unit file in both packages is packaging/noexecd.service" cmp -s "$UNIT" "$ROOT/usr/lib/systemd/system/noexecd.service"
forbidden=$(grep -E '^[[:space:]]*(PrivateTmp|ProtectSystem|ProtectHome|ReadWritePaths|ReadOnlyPaths|InaccessiblePaths|ExecPaths|NoExecPaths|TemporaryFileSystem|BindPaths|BindReadOnlyPaths|PrivateDevices|PrivateMounts|PrivateNetwork|PrivateUsers|ProtectKernelTunables|ProtectKernelModules|ProtectKernelLogs|ProtectControlGroups|ProtectProc|ProcSubset|ProtectClock|ProtectHostname|RootDirectory|RootImage|MountAPIVFS|NetworkNamespacePath|JoinsNamespaceOf|ExecStartPre)=' "$UNIT")
if [ -z "$forbidden" ]; then ok "unit: no directive that gives the service its own mount namespace (it would see another /tmp) or its own user namespace (fanotify_init fails), no ExecStartPre="
else bad "unit has forbidden directives: $forbidden"; fi
for d in 'Type=notify' 'NotifyAccess=main' 'ExecReload=/bin/kill -HUP $MAINPID' 'Restart=always' 'OOMScoreAdjust=-1000' \
         'LogsDirectory=noexecd' 'RuntimeDirectory=noexecd' 'FileDescriptorStoreMax=1' 'NoNewPrivileges=yes' 'MemoryDenyWriteExecute=yes'; do
    check "unit: $d" grep -qxF "$d" "$UNIT"
done
check "unit: WatchdogSec= set" grep -qE '^WatchdogSec=[1-9]' "$UNIT"
sec=$(systemd-analyze security --offline=yes --root="$VROOT" noexecd.service 2>&1)
grep -E '^✗' <<<"$sec" | sed 's/^/   /'
exposure=$(sed -n 's/.*Overall exposure level for noexecd.service: \([0-9.]*\).*/\1/p' <<<"$sec")
if [ -n "$exposure" ] && awk -v e="$exposure" -v m="$MAX_EXPOSURE" 'BEGIN { exit !(e <= m) }'; then
    ok "systemd-analyze security --offline=yes: exposure $exposure <= $MAX_EXPOSURE"
else
    bad "systemd-analyze security --offline=yes: exposure '${exposure:-?}' > $MAX_EXPOSURE"; tail -3 <<<"$sec"
fi

echo "package-checks: $pass passed, $fail failed"
[ "$fail" = 0 ]
