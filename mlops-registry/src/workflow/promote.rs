//! Promotion: a candidate validated against the alias's current version, and the alias
//! moved by compare-and-set only if every check passes.

use mlops_core::{Infer, ModelRef};

use super::Registry;
use crate::error::{Error, Result};
use crate::model::{Change, Expect, VersionStatus};
use crate::validation::{ValidationCase, ValidationPolicy, ValidationReport, validate};

/// A request to move `alias` to a candidate version if it passes validation against the
/// version the alias points at now.
#[derive(Clone, Copy)]
#[allow(missing_debug_implementations)] // holds sessions, which need not be Debug
pub struct Promotion<'a> {
    /// The registered model.
    pub model: &'a str,
    /// The alias to move, e.g. `production`.
    pub alias: &'a str,
    /// The candidate version, and a session running it.
    pub candidate: (u64, &'a dyn Infer),
    /// The version the alias points at now, and a session running it; `None` if the alias
    /// does not exist yet. If the alias has moved since, the promotion is a
    /// [`Error::Conflict`].
    pub baseline: Option<(u64, &'a dyn Infer)>,
    /// The validation set.
    pub cases: &'a [ValidationCase],
    /// What the candidate must satisfy.
    pub policy: &'a ValidationPolicy,
}

/// What [`Registry::promote_if_valid`] did.
#[derive(Clone, Debug, PartialEq)]
pub struct PromotionOutcome {
    /// The validation report (also stored on the candidate version).
    pub report: ValidationReport,
    /// Whether the alias moved.
    pub promoted: bool,
}

impl Registry {
    /// Validates a candidate against the alias's current version and moves the alias only
    /// if every check passes. The report is stored on the candidate either way; the alias
    /// moves by compare-and-set from the baseline version, with the report in the audit
    /// event. No human in the loop.
    pub async fn promote_if_valid(
        &self,
        promotion: Promotion<'_>,
        change: &Change,
    ) -> Result<PromotionOutcome> {
        let Promotion {
            model,
            alias,
            candidate,
            baseline,
            cases,
            policy,
        } = promotion;
        crate::model::check_alias(alias)?;
        let cand = self.models.get_version(model, candidate.0).await?;
        if cand.status != VersionStatus::Ready {
            return Err(Error::FailedPrecondition(format!(
                "candidate '{model}' version {} is {}, not READY",
                cand.version, cand.status
            )));
        }
        // Fail fast if the alias already moved; the final compare-and-set re-checks.
        let current = match self.models.resolve(&ModelRef::alias(model, alias)).await {
            Ok(v) => Some(v.version),
            Err(Error::NotFound { .. }) => None,
            Err(e) => return Err(e),
        };
        let expected = baseline.map(|(v, _)| v);
        if current != expected {
            return Err(Error::Conflict(format!(
                "alias '{model}@{alias}' points at {current:?}, the promotion was prepared against {expected:?}"
            )));
        }
        let cand_ref = ModelRef::version(model, candidate.0).to_string();
        let base_ref = baseline.map(|(v, _)| ModelRef::version(model, v).to_string());
        let report = validate(
            (&cand_ref, candidate.1),
            baseline.map(|(_, s)| (base_ref.as_deref().unwrap_or_default(), s)),
            cases,
            policy,
        )
        .await?;
        self.models
            .set_validation(model, candidate.0, &report)
            .await?;
        if !report.passed {
            return Ok(PromotionOutcome {
                report,
                promoted: false,
            });
        }
        let expect = match expected {
            Some(v) => Expect::Version(v),
            None => Expect::Absent,
        };
        let why = match &change.reason {
            Some(r) => format!("{r}; {}", report.summary()),
            None => report.summary(),
        };
        let change = Change {
            actor: change.actor.clone(),
            reason: Some(why),
        };
        self.models
            .set_alias(model, alias, candidate.0, expect, &change, Some(&report))
            .await?;
        Ok(PromotionOutcome {
            report,
            promoted: true,
        })
    }
}
