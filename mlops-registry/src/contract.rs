//! The rules every [`ModelRegistry`](crate::ModelRegistry) backend applies, in one place:
//! the compare in an alias's compare-and-set, which versions may carry an alias, which
//! status moves are allowed, when a manifest may still change, how a registration's facts
//! merge with its manifest's, and the errors that name what is missing. A backend calls
//! these instead of restating them; the conformance suite (`testkit`) checks that it did.
//!
//! The merge rule lives on [`NewVersion::merged`]: facts given with a registration win
//! over the manifest's; the manifest fills the gaps.

use crate::error::{Error, Result};
use crate::model::{Expect, ModelVersion, NewVersion, VersionStatus};
use crate::registry::VersionUpdate;

/// The facts a backend stores for a new version: `new` merged with its manifest's, then
/// checked (keys, finite metrics), so a manifest cannot bring in what a caller could not.
pub fn prepare_version(new: NewVersion) -> Result<NewVersion> {
    let new = new.merged();
    new.validate()?;
    Ok(new)
}

/// The compare in compare-and-set, shared by every backend.
pub fn check_expect(name: &str, alias: &str, current: Option<u64>, expect: Expect) -> Result<()> {
    let ok = match expect {
        Expect::Any => true,
        Expect::Absent => current.is_none(),
        Expect::Version(v) => current == Some(v),
    };
    if ok {
        return Ok(());
    }
    let now = match current {
        Some(v) => format!("points at version {v}"),
        None => "does not exist".to_owned(),
    };
    let wanted = match expect {
        Expect::Absent => "absent".to_owned(),
        Expect::Version(v) => format!("version {v}"),
        Expect::Any => unreachable!("Any always matches"),
    };
    Err(Error::Conflict(format!(
        "alias '{name}@{alias}' {now}, expected {wanted}"
    )))
}

/// A version can be aliased only when READY.
pub fn check_aliasable(v: &ModelVersion) -> Result<()> {
    if v.status != VersionStatus::Ready {
        return Err(Error::FailedPrecondition(format!(
            "model '{}' version {} is {}, only READY versions can be aliased",
            v.name, v.version, v.status
        )));
    }
    Ok(())
}

/// A version can be deleted only when no alias points at it; `aliases` are those that do.
pub fn check_deletable(name: &str, version: u64, aliases: &[String]) -> Result<()> {
    if !aliases.is_empty() {
        return Err(Error::FailedPrecondition(format!(
            "model '{name}' version {version} is the target of alias(es) {}: move them first",
            aliases.join(", ")
        )));
    }
    Ok(())
}

/// A status move `v` may make: see [`VersionStatus::can_become`]; archiving an aliased
/// version is refused.
pub fn check_transition(v: &ModelVersion, to: VersionStatus) -> Result<()> {
    if v.status == to {
        return Ok(());
    }
    if !v.status.can_become(to) {
        return Err(Error::FailedPrecondition(format!(
            "model '{}' version {} is {} and cannot become {to}",
            v.name, v.version, v.status
        )));
    }
    if to == VersionStatus::Archived && !v.aliases.is_empty() {
        return Err(Error::FailedPrecondition(format!(
            "model '{}' version {} is the target of alias(es) {}: move them before archiving",
            v.name,
            v.version,
            v.aliases.join(", ")
        )));
    }
    Ok(())
}

/// "model 'name' version N not found".
pub fn version_not_found(name: &str, version: u64) -> Error {
    Error::not_found(format!("model '{name}' version {version}"))
}

/// "model 'name' not found".
pub fn model_not_found(name: &str) -> Error {
    Error::not_found(format!("model '{name}'"))
}

/// "alias 'name@alias' not found".
pub fn alias_not_found(name: &str, alias: &str) -> Error {
    Error::not_found(format!("alias '{name}@{alias}'"))
}

/// What resolving `latest` answers when no version is READY.
pub fn no_ready_version(name: &str) -> Error {
    Error::not_found(format!("a READY version of model '{name}'"))
}

/// A manifest may be replaced only while the version is PENDING.
pub fn check_final_manifest(v: &ModelVersion, update: &VersionUpdate) -> Result<()> {
    if update.manifest.is_some() && v.status != VersionStatus::Pending {
        return Err(Error::FailedPrecondition(format!(
            "model '{}' version {} is {}: its manifest can change only while PENDING",
            v.name, v.version, v.status
        )));
    }
    Ok(())
}
