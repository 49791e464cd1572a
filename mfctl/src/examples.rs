//! The examples shown by `--help` (the long help) of the commands an operator
//! uses most; `mfctl -h` stays short. A test runs the parser over each one.

pub const PKI_INIT: &str = "Examples:
  mfctl pki init --dir /etc/mf-coordinator/pki --name coordinator.example.com --owner mf-coordinator
  mfctl pki init --dir ./pki --name 127.0.0.1 --operator alice -o json";

pub const TOKEN_CREATE: &str = "Examples:
  mfctl token create --ttl 24h --uses 500          # the fleet's agents, for a day
  mfctl token create --host-id web-01.example.com  # one host (also to re-enroll it)
  mfctl token create --uses 10 -o json";

pub const HOSTS_LIST: &str = "Examples:
  mfctl hosts list -l 'app=billing,dc in (dc1,dc2),os!=rhel'
  mfctl hosts list -l connected=false -o wide
  mfctl hosts list -l app=billing --watch
  mfctl hosts list -o json | jq -r '.[].id'";

pub const PRECHECK: &str = "Examples:
  mfctl precheck --target rhel-8.10 -l app=billing
  mfctl precheck --target rhel-8.10 --wait --fail-on-blocked   # exit 10 if a host is blocked
  mfctl precheck --target rhel-9.6 -l os=rhel,version=8.10 --watch --timeout 30m -o json";

pub const MIGRATE: &str = "Examples:
  mfctl migrate web-01.example.com --target rhel-8.10 --wait
  mfctl migrate db-01.example.com --target rhel-9.6 --on-failure hold
  mfctl migrate web-02.example.com --target rhel-8.10 --wait -o json";

pub const READINESS: &str = "Examples:
  mfctl report readiness -l app=billing
  mfctl report readiness -o wide          # finding titles whole
  mfctl report readiness -o yaml";

pub const WAVE_CREATE: &str = "Examples:
  mfctl wave create rhel8-wave1 -l os=rhel,version=7.9 --target rhel-8.10 --canary 2 \\
      --batches 10%,100% --max-parallel 20 --budget app=1 --budget dc=10% \\
      --stage-errors 1 --total-errors 2% --window 'sat 22:00-sun 06:00 Europe/Paris' --dry-run
  mfctl wave create billing -l app=billing --target rhel-9.6 --canary-selector role=canary --approve-stages";

/// Every example with the command it documents, for the test.
pub const ALL: [(&str, &str); 7] = [
    ("pki init", PKI_INIT),
    ("token create", TOKEN_CREATE),
    ("hosts list", HOSTS_LIST),
    ("precheck", PRECHECK),
    ("migrate", MIGRATE),
    ("report readiness", READINESS),
    ("wave create", WAVE_CREATE),
];
