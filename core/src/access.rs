//! Who may do what: an operator's role decides the verbs, its scope the
//! hosts. Both faces of the admin API (gRPC for mfctl, later REST for the
//! portal) ask this one table.
//!
//! A scope is a label selector evaluated over the labels an admin pinned on
//! a host (`mfctl hosts label`) and its id, never over what an agent reports:
//! an agent could otherwise put its host into somebody's scope. A host with
//! no pinned labels is outside every scope but the empty one.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::selector::Selector;

/// What an operator may do, each role including the one before.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Reads the inventory, readiness, waves, jobs and the audit.
    Viewer,
    /// Also pre-checks and migrates hosts, runs waves, decides held jobs.
    Operator,
    /// Also tokens, operators, labels, deleting and revoking hosts.
    Admin,
}

closed_set!(Role, "a role", {
    Role::Viewer => "viewer",
    Role::Operator => "operator",
    Role::Admin => "admin",
});

/// Every call of the admin API, by what it does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verb {
    /// An operator's own certificate, renewed.
    RenewOwnCertificate,
    ReadHosts,
    ReadWaves,
    ReadAudit,
    Precheck,
    Migrate,
    DecideJob,
    PlanWave,
    RunWave,
    CreateToken,
    ManageTokens,
    LabelHost,
    DeleteHost,
    RevokeHost,
    ManageOperators,
    VerifyAudit,
    Backup,
    ListTokens,
    ListOperators,
    ManageWebhooks,
}

closed_set!(Verb, "a verb", {
    Verb::RenewOwnCertificate => "renew-own-certificate",
    Verb::ReadHosts => "read-hosts",
    Verb::ReadWaves => "read-waves",
    Verb::ReadAudit => "read-audit",
    Verb::Precheck => "precheck",
    Verb::Migrate => "migrate",
    Verb::DecideJob => "decide-job",
    Verb::PlanWave => "plan-wave",
    Verb::RunWave => "run-wave",
    Verb::CreateToken => "create-token",
    Verb::ManageTokens => "manage-tokens",
    Verb::LabelHost => "label-host",
    Verb::DeleteHost => "delete-host",
    Verb::RevokeHost => "revoke-host",
    Verb::ManageOperators => "manage-operators",
    Verb::VerifyAudit => "verify-audit",
    Verb::Backup => "backup",
    Verb::ListTokens => "list-tokens",
    Verb::ListOperators => "list-operators",
    Verb::ManageWebhooks => "manage-webhooks",
});

impl Verb {
    /// Every verb, for tables and tests.
    pub const ALL: [Verb; 20] = [
        Verb::RenewOwnCertificate,
        Verb::ReadHosts,
        Verb::ReadWaves,
        Verb::ReadAudit,
        Verb::Precheck,
        Verb::Migrate,
        Verb::DecideJob,
        Verb::PlanWave,
        Verb::RunWave,
        Verb::CreateToken,
        Verb::ManageTokens,
        Verb::LabelHost,
        Verb::DeleteHost,
        Verb::RevokeHost,
        Verb::ManageOperators,
        Verb::VerifyAudit,
        Verb::Backup,
        Verb::ListTokens,
        Verb::ListOperators,
        Verb::ManageWebhooks,
    ];

    /// The least role that may do it.
    pub fn needs(self) -> Role {
        match self {
            Verb::RenewOwnCertificate | Verb::ReadHosts | Verb::ReadWaves | Verb::ReadAudit => {
                Role::Viewer
            }
            Verb::Precheck | Verb::Migrate | Verb::DecideJob | Verb::PlanWave | Verb::RunWave => {
                Role::Operator
            }
            Verb::CreateToken
            | Verb::ManageTokens
            | Verb::LabelHost
            | Verb::DeleteHost
            | Verb::RevokeHost
            | Verb::ManageOperators
            | Verb::VerifyAudit
            | Verb::Backup
            | Verb::ListTokens
            | Verb::ListOperators
            | Verb::ManageWebhooks => Role::Admin,
        }
    }

    /// Whether a scoped operator may do it at all: the admins' verbs act on
    /// the whole fleet or on identities, so they are for unscoped admins only.
    pub fn scopable(self) -> bool {
        self.needs() < Role::Admin
    }
}

/// Whether a host (its id and the labels pinned on it) is in `scope`; no
/// scope is the whole fleet.
pub fn in_scope(
    scope: Option<&Selector>,
    host_id: &str,
    pinned: &BTreeMap<String, String>,
) -> bool {
    scope.is_none_or(|scope| {
        scope.matches(|key| match key {
            "id" => Some(host_id),
            label => pinned.get(label).map(String::as_str),
        })
    })
}

/// Who is asking, as the store knows them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Access {
    pub name: String,
    pub role: Role,
    /// `None`: the whole fleet.
    pub scope: Option<Selector>,
}

/// Why a call is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Denied {
    #[error("operator {name} has the {role} role: {verb} needs the {needs} role")]
    Role {
        name: String,
        role: Role,
        verb: Verb,
        needs: Role,
    },
    #[error("operator {name} is scoped to {scope}: {verb} is for operators of the whole fleet")]
    Scoped {
        name: String,
        scope: String,
        verb: Verb,
    },
    #[error("host {host} is outside the scope of operator {name} ({scope})")]
    OutOfScope {
        name: String,
        scope: String,
        host: String,
    },
}

impl Access {
    /// Whether the role allows `verb` at all, and the scope if the verb acts
    /// on the whole fleet or on identities.
    pub fn check(&self, verb: Verb) -> Result<(), Denied> {
        if self.role < verb.needs() {
            return Err(Denied::Role {
                name: self.name.clone(),
                role: self.role,
                verb,
                needs: verb.needs(),
            });
        }
        match &self.scope {
            Some(scope) if !verb.scopable() => Err(Denied::Scoped {
                name: self.name.clone(),
                scope: scope.to_string(),
                verb,
            }),
            _ => Ok(()),
        }
    }

    /// Whether a host (its id and pinned labels) is in the scope.
    pub fn sees(&self, host_id: &str, pinned: &BTreeMap<String, String>) -> bool {
        in_scope(self.scope.as_ref(), host_id, pinned)
    }

    /// An operator of the whole fleet with every right: for the
    /// coordinator's own calls and tests.
    pub fn unscoped_admin(name: &str) -> Self {
        Access {
            name: name.to_string(),
            role: Role::Admin,
            scope: None,
        }
    }

    /// `check` then `sees`, for a verb on one host.
    pub fn check_host(
        &self,
        verb: Verb,
        host_id: &str,
        pinned: &BTreeMap<String, String>,
    ) -> Result<(), Denied> {
        self.check(verb)?;
        if self.sees(host_id, pinned) {
            return Ok(());
        }
        Err(Denied::OutOfScope {
            name: self.name.clone(),
            scope: self
                .scope
                .as_ref()
                .map(ToString::to_string)
                .unwrap_or_default(),
            host: host_id.to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn access(role: Role, scope: Option<&str>) -> Access {
        Access {
            name: "alice".into(),
            role,
            scope: scope.map(|s| Selector::parse(s).expect("selector")),
        }
    }

    #[test]
    fn every_verb_by_every_role_follows_the_table() {
        let expected = |role: Role, verb: Verb| match role {
            Role::Viewer => matches!(
                verb,
                Verb::RenewOwnCertificate | Verb::ReadHosts | Verb::ReadWaves | Verb::ReadAudit
            ),
            Role::Operator => !matches!(
                verb,
                Verb::CreateToken
                    | Verb::ManageTokens
                    | Verb::LabelHost
                    | Verb::DeleteHost
                    | Verb::RevokeHost
                    | Verb::ManageOperators
                    | Verb::VerifyAudit
                    | Verb::Backup
                    | Verb::ListTokens
                    | Verb::ListOperators
                    | Verb::ManageWebhooks
            ),
            Role::Admin => true,
        };
        for role in [Role::Viewer, Role::Operator, Role::Admin] {
            for verb in Verb::ALL {
                assert_eq!(
                    access(role, None).check(verb).is_ok(),
                    expected(role, verb),
                    "{role} {verb}"
                );
            }
        }
        let denied = access(Role::Viewer, None).check(Verb::Migrate);
        assert_eq!(
            denied.map_err(|e| e.to_string()),
            Err("operator alice has the viewer role: migrate needs the operator role".into())
        );
    }

    #[test]
    fn a_scope_is_over_pinned_labels_and_keeps_fleet_verbs_out() {
        let owner = access(Role::Admin, Some("app=billing"));
        let pinned = |app: &str| BTreeMap::from([("app".to_string(), app.to_string())]);
        assert!(
            owner
                .check_host(Verb::Migrate, "b1", &pinned("billing"))
                .is_ok()
        );
        assert!(matches!(
            owner.check_host(Verb::Migrate, "c1", &pinned("crm")),
            Err(Denied::OutOfScope { .. })
        ));
        // No pinned labels: outside every scope, whatever its agent says.
        assert!(!owner.sees("x", &BTreeMap::new()));
        // Even an admin's role does not lift a scope off fleet-wide verbs.
        for verb in Verb::ALL.into_iter().filter(|v| !v.scopable()) {
            assert!(
                matches!(owner.check(verb), Err(Denied::Scoped { .. })),
                "{verb}"
            );
        }
        assert!(access(Role::Viewer, None).sees("x", &BTreeMap::new()));
    }
}
