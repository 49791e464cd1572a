# mf-coordinator %postun: on an upgrade ($1 >= 1) restart a running coordinator.
if [ -d /run/systemd/system ]; then
    /usr/bin/systemctl daemon-reload >/dev/null 2>&1 || :
    if [ "$1" -ge 1 ]; then
        /usr/bin/systemctl try-restart mf-coordinator.service >/dev/null 2>&1 || :
    fi
fi
exit 0
