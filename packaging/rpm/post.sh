# shellcheck shell=sh
# noexecd %post: like %systemd_post, but a new install is enabled and started (the package's contract:
# installing the guard turns it on; presets would leave it off on Fedora/RHEL). An upgrade is handed over
# in %posttrans, once the old package's scripts have run.
if [ "$1" -eq 1 ]; then
    systemctl --no-reload enable noexecd.service >/dev/null 2>&1 || :
fi
if [ -d /run/systemd/system ]; then
    systemctl daemon-reload >/dev/null 2>&1 || :
    if [ "$1" -eq 1 ]; then
        systemctl start noexecd.service >/dev/null 2>&1 || :
    fi
fi
exit 0
