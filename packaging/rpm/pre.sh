# shellcheck shell=sh
# noexecd %pre. $1: 1 = install, 2+ = upgrade.
# On upgrade the running daemon is NOT stopped: it guards while rpm replaces the files, and %posttrans
# hands its fanotify group to the new binary (noexecd handover). The marker says a hand-over is due
# (%posttrans gets no argument that tells an upgrade from an install).
if [ "$1" -ge 2 ] && [ -d /run/systemd/system ]; then
    if systemctl --quiet is-active noexecd.service; then
        touch /run/noexecd.rpm-handover || :
    fi
fi
exit 0
