//! The inventory task's operators: who holds which role and scope, by the
//! certificates issued to them, and the labels admins pin on hosts (what
//! scopes see). Until the first operator is added, the PKI's own operator
//! certificate (from `mfctl pki init`) is the only admin; adding the first
//! operator registers it as one.

use std::collections::{BTreeMap, HashMap};

use super::{HostView, InventoryError, State};
use crate::store::OperatorRecord;
use mf_core::access::{Access, Role};
use mf_core::facts::valid_label;
use mf_core::selector::Selector;

/// The certificate an operator presented: whose, and which.
#[derive(Debug, Clone)]
pub struct Caller {
    pub name: String,
    pub serial: String,
}

/// An operator as an admin adds them, with the certificate just signed.
#[derive(Debug, Clone)]
pub struct NewOperator {
    pub name: String,
    pub role: Role,
    pub scope: Option<Selector>,
    pub serial: String,
}

/// A change of role or scope; `None` leaves it as it is.
#[derive(Debug, Clone)]
pub struct OperatorUpdate {
    pub name: String,
    pub role: Option<Role>,
    pub scope: Option<Option<Selector>>,
}

/// Labels to pin on a host, and pinned ones to remove.
#[derive(Debug, Clone)]
pub struct LabelChange {
    pub host_id: String,
    pub set: BTreeMap<String, String>,
    pub remove: Vec<String>,
}

#[derive(Debug, Default)]
pub(super) struct Operators {
    by_name: HashMap<String, OperatorRecord>,
}

impl Operators {
    pub(super) fn load(records: Vec<OperatorRecord>) -> Self {
        Self {
            by_name: records.into_iter().map(|r| (r.name.clone(), r)).collect(),
        }
    }

    /// The role and scope of whoever presented this certificate.
    pub(super) fn access(&self, caller: &Caller) -> Result<Access, InventoryError> {
        if self.by_name.is_empty() {
            return Ok(Access {
                name: caller.name.clone(),
                role: Role::Admin,
                scope: None,
            });
        }
        let Some(record) = self.by_name.get(&caller.name) else {
            return Err(InventoryError::NoRole(format!(
                "operator {} has no role: an admin adds it (mfctl operator add)",
                caller.name
            )));
        };
        if record.revoked_unix_ms != 0 {
            return Err(InventoryError::NoRole(format!(
                "operator {} was revoked",
                caller.name
            )));
        }
        if !record.serials.contains(&caller.serial) {
            return Err(InventoryError::NoRole(format!(
                "this certificate of operator {} is not one issued to them: ask an admin for one",
                caller.name
            )));
        }
        Ok(Access {
            name: record.name.clone(),
            role: record.role,
            scope: record.scope.clone(),
        })
    }

    fn admins_left_without(&self, name: &str) -> usize {
        self.by_name
            .values()
            .filter(|r| r.name != name && r.role == Role::Admin && r.revoked_unix_ms == 0)
            .count()
    }

    pub(super) fn list(&self) -> Vec<OperatorRecord> {
        let mut list: Vec<OperatorRecord> = self.by_name.values().cloned().collect();
        list.sort_by(|a, b| a.name.cmp(&b.name));
        list
    }
}

impl State {
    pub(super) fn add_operator(
        &mut self,
        caller: &Caller,
        new: NewOperator,
    ) -> Result<OperatorRecord, InventoryError> {
        let now = self.now();
        if self
            .operators
            .by_name
            .get(&new.name)
            .is_some_and(|r| r.revoked_unix_ms == 0)
        {
            return Err(InventoryError::Conflict(format!(
                "operator {} exists (mfctl operator set changes a role or a scope)",
                new.name
            )));
        }
        if self.operators.by_name.is_empty() && caller.name != new.name {
            // The PKI's first operator keeps the admin role it had.
            let first = OperatorRecord {
                name: caller.name.clone(),
                role: Role::Admin,
                scope: None,
                serials: vec![caller.serial.clone()],
                created_unix_ms: now,
                created_by: "mfctl pki init".into(),
                revoked_unix_ms: 0,
            };
            self.store.put_operator(&first)?;
            self.operators.by_name.insert(first.name.clone(), first);
        }
        let record = OperatorRecord {
            name: new.name,
            role: new.role,
            scope: new.scope,
            serials: vec![new.serial],
            created_unix_ms: now,
            created_by: caller.name.clone(),
            revoked_unix_ms: 0,
        };
        self.store.put_operator(&record)?;
        self.operators
            .by_name
            .insert(record.name.clone(), record.clone());
        Ok(record)
    }

    /// Registers a renewed certificate of the caller (nothing to register
    /// while the registry is empty: the PKI's operator is the admin then).
    pub(super) fn add_operator_serial(
        &mut self,
        caller: &Caller,
        serial: String,
    ) -> Result<(), InventoryError> {
        if self.operators.by_name.is_empty() {
            return Ok(());
        }
        let record = self
            .operators
            .by_name
            .get_mut(&caller.name)
            .filter(|r| r.revoked_unix_ms == 0 && r.serials.contains(&caller.serial))
            .ok_or_else(|| {
                InventoryError::NoRole(format!("operator {} has no role", caller.name))
            })?;
        record.serials.push(serial);
        let record = record.clone();
        self.store.put_operator(&record)?;
        Ok(())
    }

    pub(super) fn update_operator(
        &mut self,
        update: OperatorUpdate,
    ) -> Result<OperatorRecord, InventoryError> {
        let lone_admin = self.operators.admins_left_without(&update.name) == 0;
        let record = self
            .operators
            .by_name
            .get_mut(&update.name)
            .filter(|r| r.revoked_unix_ms == 0)
            .ok_or_else(|| InventoryError::UnknownOperator(update.name.clone()))?;
        let demoted = update.role.is_some_and(|r| r != Role::Admin)
            || update.scope.as_ref().is_some_and(Option::is_some);
        if record.role == Role::Admin && demoted && lone_admin {
            return Err(InventoryError::Conflict(format!(
                "{} is the last admin of the whole fleet: add another admin first",
                update.name
            )));
        }
        if let Some(role) = update.role {
            record.role = role;
        }
        if let Some(scope) = update.scope {
            record.scope = scope;
        }
        let record = record.clone();
        self.store.put_operator(&record)?;
        Ok(record)
    }

    pub(super) fn revoke_operator(&mut self, name: &str) -> Result<OperatorRecord, InventoryError> {
        let now = self.now();
        let lone_admin = self.operators.admins_left_without(name) == 0;
        let record = self
            .operators
            .by_name
            .get_mut(name)
            .ok_or_else(|| InventoryError::UnknownOperator(name.to_string()))?;
        if record.role == Role::Admin && record.revoked_unix_ms == 0 && lone_admin {
            return Err(InventoryError::Conflict(format!(
                "{name} is the last admin: add another admin first"
            )));
        }
        if record.revoked_unix_ms == 0 {
            record.revoked_unix_ms = now;
        }
        let record = record.clone();
        self.store.put_operator(&record)?;
        for serial in &record.serials {
            self.revoke(&format!("operator {name}"), serial, "operator revoked");
        }
        Ok(record)
    }

    pub(super) fn label_host(&mut self, change: LabelChange) -> Result<HostView, InventoryError> {
        if let Some((key, value)) = change.set.iter().find(|(k, v)| !valid_label(k, v)) {
            return Err(InventoryError::Invalid(format!(
                "{key}={value} is not a label: keys are 1-63 and values 0-63 of [A-Za-z0-9-_.], \
                 alphanumeric at both ends"
            )));
        }
        let host = self
            .hosts
            .get_mut(&change.host_id)
            .ok_or_else(|| InventoryError::UnknownHost(change.host_id.clone()))?;
        for key in &change.remove {
            host.record.pinned_labels.remove(key);
        }
        host.record.pinned_labels.extend(change.set);
        let record = host.record.clone();
        self.store.put_host(&record)?;
        let host = self
            .hosts
            .get(&change.host_id)
            .ok_or_else(|| InventoryError::UnknownHost(change.host_id.clone()))?;
        Ok(self.view(host))
    }
}
