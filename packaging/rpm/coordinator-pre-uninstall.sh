# mf-coordinator %preun: stop and disable it when the package goes away ($1 = 0).
if [ "$1" -eq 0 ] && [ -d /run/systemd/system ]; then
    /usr/bin/systemctl --no-reload disable mf-coordinator.service >/dev/null 2>&1 || :
    /usr/bin/systemctl stop mf-coordinator.service >/dev/null 2>&1 || :
fi
exit 0
