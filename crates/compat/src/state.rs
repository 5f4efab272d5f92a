//! A device's compatibility state, in one word: what its findings call for.

use crate::judge::{Finding, FindingKind};
use crate::plan::PlanOutcome;

/// `compatible`; `software` (a software set fixes it); `hardware` (only other units can);
/// `unknown` (the catalog does not know something the device has, or the plan search could
/// not finish).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum State {
    Compatible,
    Software,
    Hardware,
    Unknown,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Compatible => "compatible",
            State::Software => "software",
            State::Hardware => "hardware",
            State::Unknown => "unknown",
        }
    }

    /// The state from the findings alone, as judgement gives it before any plan is searched:
    /// `hardware` if only hardware can fix one, else `software` if a plan may, else
    /// `unknown` if the catalog does not know something, else `compatible`.
    pub fn judged(kinds: impl IntoIterator<Item = FindingKind>) -> State {
        let mut state = State::Compatible;
        for k in kinds {
            state = match (state, k) {
                (_, k) if k.hardware() => return State::Hardware,
                (_, k) if k.software_fixable() => State::Software,
                (State::Compatible, _) => State::Unknown,
                (s, _) => s,
            };
        }
        state
    }

    /// The state once the plan is known: `software` only where a software set fixes every
    /// finding software could fix. Where the search finds none, what else is wrong decides —
    /// `unknown` when the catalog lacks something the device has, else `hardware` (its advice
    /// says which units would do); a search that ran out of time leaves it `unknown`. `plan`
    /// is looked at only when the findings call for one.
    pub fn settled(findings: &[Finding], plan: Option<&PlanOutcome>) -> State {
        let kinds: Vec<FindingKind> = findings.iter().map(|f| f.kind).collect();
        State::settled_kinds(&kinds, plan)
    }

    /// [`State::settled`] from the findings' kinds.
    pub fn settled_kinds(kinds: &[FindingKind], plan: Option<&PlanOutcome>) -> State {
        let judged = State::judged(kinds.iter().copied());
        if judged != State::Software {
            return judged;
        }
        let catalog_lacks = kinds.iter().any(|k| k.unknown());
        match plan {
            Some(PlanOutcome::NoSolution(_)) if catalog_lacks => State::Unknown,
            Some(PlanOutcome::NoSolution(_)) => State::Hardware,
            Some(PlanOutcome::OutOfTime) => State::Unknown,
            _ => State::Software,
        }
    }
}
