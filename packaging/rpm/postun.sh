# shellcheck shell=sh
# noexecd %postun: reload systemd. No restart on upgrade ($1 >= 1): %posttrans hands the running daemon's
# fanotify group to the new binary instead. /var/log/noexecd (the alert audit trail) is kept on erase, as
# rpm has no purge.
if [ -d /run/systemd/system ]; then
    systemctl daemon-reload >/dev/null 2>&1 || :
fi
# cargo-generate-rpm cannot own directories: remove the package's own ones when they are empty.
if [ "$1" -eq 0 ]; then
    rmdir /etc/noexecd/policy.d /etc/noexecd /usr/share/doc/noexecd 2>/dev/null || :
fi
exit 0
