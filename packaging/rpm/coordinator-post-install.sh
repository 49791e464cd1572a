# mf-coordinator %post: its state directory (0700 mf-coordinator) and systemd's
# view of the unit. The PKI is the operator's step: mfctl pki init --owner.
if [ -x /usr/bin/systemd-tmpfiles ]; then
    /usr/bin/systemd-tmpfiles --create /usr/lib/tmpfiles.d/mf-coordinator.conf >/dev/null 2>&1 || :
fi
if [ -d /run/systemd/system ]; then
    /usr/bin/systemctl daemon-reload >/dev/null 2>&1 || :
fi
exit 0
