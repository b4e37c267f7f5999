# shellcheck shell=sh
# noexecd %posttrans: after an upgrade or downgrade (the marker %pre left), with the new files in place and
# the old package's scripts run, the running daemon hands its fanotify group to the new binary instead of
# stopping: no exec attempt runs unguarded meanwhile. A new binary that refuses the configuration leaves
# the old daemon guarding with its policy: said here, not a failed transaction.
if [ -e /run/noexecd.rpm-handover ]; then
    rm -f /run/noexecd.rpm-handover
    if [ -d /run/systemd/system ] && systemctl --quiet is-active noexecd.service; then
        if ! /usr/sbin/noexecd handover; then
            echo "noexecd: WARNING: the upgrade is installed but the daemon running before it keeps guarding (reason above); fix that, then run 'noexecd handover' (or 'systemctl restart noexecd', which leaves a gap)" >&2
        fi
    fi
fi
exit 0
