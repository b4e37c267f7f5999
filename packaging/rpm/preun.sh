# shellcheck shell=sh
# noexecd %preun, as %systemd_preun: on erase ($1 = 0, not an upgrade) disable and stop the service.
if [ "$1" -eq 0 ]; then
    if [ -d /run/systemd/system ]; then
        systemctl --no-reload disable --now noexecd.service >/dev/null 2>&1 || :
    else
        systemctl --no-reload disable noexecd.service >/dev/null 2>&1 || :
    fi
fi
exit 0
