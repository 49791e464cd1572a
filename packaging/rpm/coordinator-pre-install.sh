# mf-coordinator %pre: the service user and group, as the Fedora/EL packaging
# guidelines do it (systemd-sysusers is not on EL7).
getent group mf-coordinator >/dev/null || groupadd -r mf-coordinator
getent passwd mf-coordinator >/dev/null || \
    useradd -r -g mf-coordinator -d /var/lib/mf-coordinator -s /sbin/nologin \
        -c "Migration Factory coordinator" mf-coordinator
exit 0
