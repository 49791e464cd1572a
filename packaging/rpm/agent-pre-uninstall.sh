# mf-agent %preun: stop and disable the agent when the package goes away
# ($1 = 0), not on an upgrade.
if [ "$1" -eq 0 ] && [ -d /run/systemd/system ]; then
    /usr/bin/systemctl --no-reload disable mf-agent.service >/dev/null 2>&1 || :
    /usr/bin/systemctl stop mf-agent.service >/dev/null 2>&1 || :
fi
exit 0
