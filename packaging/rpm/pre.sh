# shellcheck shell=sh
# noexecd %pre. $1: 1 = install, 2+ = upgrade.
# On upgrade, stop the running daemon BEFORE the new files replace the binary. Stopping releases the
# fanotify group that the daemon keeps in systemd's FD store; were the old daemon to crash after the
# binary is swapped, systemd would otherwise exec a new, unmarked binary on a filesystem that a group
# nobody answers still marks. %post starts it again (the equivalent of a restart on upgrade).
if [ "$1" -ge 2 ] && [ -d /run/systemd/system ]; then
    if systemctl --quiet is-active noexecd.service; then
        systemctl stop noexecd.service || :
        touch /run/noexecd.rpm-restart || :
    fi
fi
exit 0
