# mf-agent %postun: on an upgrade ($1 >= 1) restart a running agent on the new
# binary; its journal carries any command across the restart.
if [ -d /run/systemd/system ]; then
    /usr/bin/systemctl daemon-reload >/dev/null 2>&1 || :
    if [ "$1" -ge 1 ]; then
        /usr/bin/systemctl try-restart mf-agent.service >/dev/null 2>&1 || :
    fi
fi
exit 0
