//! Which changeset each round of an apply executes: the plan re-planned
//! against what the last round left (apply), everything the plan owns
//! (destroy), or a saved changeset followed by its fallback chains only.

use super::Session;
use super::events::{Event, FallbackUsed};
use super::runner::{CreateOutcome, RoundOutcome};
use crate::model::Placement;
use crate::planner::{self, Action, ActionKind, Changeset};
use crate::state::State;
use chrono::{DateTime, Utc};

pub(super) trait Rounds: Send {
    /// The next round's changeset; `None` when there is nothing left to do.
    fn next(&mut self, session: &Session<'_>, state: &State, now: DateTime<Utc>) -> Option<Changeset>;

    /// Take note of what the round did.
    fn after(
        &mut self,
        session: &Session<'_>,
        changeset: &Changeset,
        outcome: RoundOutcome,
        state: &State,
        now: DateTime<Utc>,
    );

    fn destroys(&self) -> bool {
        false
    }

    fn fallbacks_used(&self) -> &[(String, FallbackUsed)] {
        &[]
    }

    fn chains_exhausted(&self) -> Vec<String> {
        Vec::new()
    }

    fn postponed(&self) -> Vec<String> {
        Vec::new()
    }
}

/// `apply PLAN`: plan again every round, with what the last one remembered.
#[derive(Default)]
pub(super) struct Replan {
    /// Creates refused last round, to report where their fleet fails over.
    refused: Vec<(String, Placement)>,
}

impl Rounds for Replan {
    fn next(&mut self, session: &Session<'_>, state: &State, now: DateTime<Utc>) -> Option<Changeset> {
        let changeset = planner::plan(session.plan, &state.instances, &state.shortages, session.catalog, now);
        for (fleet, from) in self.refused.drain(..) {
            let creates: Vec<&Action> =
                changeset.actions.iter().filter(|a| a.kind == ActionKind::Create && a.fleet == fleet).collect();
            // A spread fleet fails over within the domain first, as its chains do.
            let policy = session.plan.fleets.get(&fleet).map(|f| f.placement);
            let next = creates
                .iter()
                .find(|a| policy.is_some_and(|p| planner::spread::same_domain(p, &a.placement, &from)))
                .or(creates.first());
            if let Some(next) = next {
                session.events.emit(&Event::Failover { fleet, from, to: next.placement.clone() });
            }
        }
        (!changeset.is_empty()).then_some(changeset)
    }

    fn after(&mut self, _: &Session<'_>, changeset: &Changeset, outcome: RoundOutcome, _: &State, _: DateTime<Utc>) {
        let creates = changeset.actions.iter().filter(|a| a.kind == ActionKind::Create);
        for (action, result) in creates.zip(outcome.creates) {
            if result.outcome.is_shortfall() {
                self.refused.push((action.fleet.clone(), action.placement.clone()));
            }
        }
    }
}

/// `rebalance`: one round of what the plan needs plus the moves it decides,
/// then re-planning for what refusals left, as apply does.
#[derive(Default)]
pub(super) struct Rebalance {
    started: bool,
    replan: Replan,
}

impl Rounds for Rebalance {
    fn next(&mut self, session: &Session<'_>, state: &State, now: DateTime<Utc>) -> Option<Changeset> {
        if std::mem::replace(&mut self.started, true) {
            return self.replan.next(session, state, now);
        }
        let changeset =
            planner::rebalance::rebalance(session.plan, &state.instances, &state.shortages, session.catalog, now);
        (!changeset.is_empty()).then_some(changeset)
    }

    fn after(
        &mut self,
        session: &Session<'_>,
        changeset: &Changeset,
        outcome: RoundOutcome,
        state: &State,
        now: DateTime<Utc>,
    ) {
        self.replan.after(session, changeset, outcome, state, now);
    }
}

/// `destroy`: delete whatever the plan still owns.
pub(super) struct Destroy;

impl Rounds for Destroy {
    fn next(&mut self, session: &Session<'_>, state: &State, _: DateTime<Utc>) -> Option<Changeset> {
        let changeset = planner::destroy(&session.plan.name, &state.instances, session.catalog);
        (!changeset.is_empty()).then_some(changeset)
    }

    fn after(&mut self, _: &Session<'_>, _: &Changeset, _: RoundOutcome, _: &State, _: DateTime<Utc>) {}

    fn destroys(&self) -> bool {
        true
    }
}

/// One create of a saved plan on its way along its chain.
struct Chain {
    /// The create as saved.
    planned: Action,
    /// What to send next (the planned create, or a fallback for what is left).
    current: Action,
    /// 0 while on the planned placement, n on the n-th fallback.
    position: usize,
    kept: u32,
    open: bool,
}

/// `apply SAVED`: the saved changeset first, then, for each create refused,
/// the next offering of its saved chain for what is still missing. Nothing
/// outside what the saved plan showed is ever created.
pub(super) struct SavedChains {
    saved: Option<Changeset>,
    chains: Vec<Chain>,
    /// Make-before-break deletes held back so far.
    postponed: Vec<Action>,
    fallbacks_used: Vec<(String, FallbackUsed)>,
    exhausted: Vec<String>,
}

impl SavedChains {
    pub(super) fn new(saved: Changeset) -> SavedChains {
        let chains = saved
            .actions
            .iter()
            .filter(|a| a.kind == ActionKind::Create)
            .map(|a| Chain { planned: a.clone(), current: a.clone(), position: 0, kept: 0, open: true })
            .collect();
        SavedChains {
            saved: Some(saved),
            chains,
            postponed: Vec::new(),
            fallbacks_used: Vec::new(),
            exhausted: Vec::new(),
        }
    }

    /// A held-back consolidation runs once its fleet has all the nodes it
    /// planned, in the regions it planned them.
    fn consolidation_ready(&self, fleet: &str) -> bool {
        self.chains
            .iter()
            .filter(|c| c.planned.fleet == fleet)
            .all(|c| !c.open && c.kept >= c.planned.count && c.current.placement.region == c.planned.placement.region)
    }
}

impl Rounds for SavedChains {
    fn next(&mut self, session: &Session<'_>, _: &State, _: DateTime<Utc>) -> Option<Changeset> {
        if let Some(saved) = self.saved.take() {
            return (!saved.is_empty()).then_some(saved);
        }
        let mut actions: Vec<Action> = self.chains.iter().filter(|c| c.open).map(|c| c.current.clone()).collect();
        let (ready, waiting): (Vec<Action>, Vec<Action>) =
            std::mem::take(&mut self.postponed).into_iter().partition(|d| self.consolidation_ready(&d.fleet));
        self.postponed = waiting;
        actions.extend(ready);
        let changeset = Changeset {
            plan: session.plan.name.clone(),
            actions,
            fleets: Vec::new(),
            skipped: Vec::new(),
            cost: crate::planner::CostSummary { before_per_hour: 0.0, after_per_hour: 0.0, has_unknown_prices: false },
        };
        (!changeset.is_empty()).then_some(changeset)
    }

    fn after(
        &mut self,
        session: &Session<'_>,
        changeset: &Changeset,
        outcome: RoundOutcome,
        state: &State,
        now: DateTime<Utc>,
    ) {
        self.postponed.extend(outcome.postponed);
        let sent: Vec<&Action> = changeset.actions.iter().filter(|a| a.kind == ActionKind::Create).collect();
        let mut results = sent.iter().zip(outcome.creates);
        for chain in self.chains.iter_mut().filter(|c| c.open) {
            let Some((_, result)) = results.next() else { break };
            chain.kept += result.kept;
            if result.kept > 0 && chain.position > 0 {
                self.fallbacks_used.push((
                    chain.planned.fleet.clone(),
                    FallbackUsed {
                        planned: chain.planned.placement.to_string(),
                        used: chain.current.placement.to_string(),
                        position: chain.position,
                    },
                ));
            }
            let missing = chain.planned.count.saturating_sub(chain.kept);
            if !result.outcome.is_shortfall() || missing == 0 {
                // Filled, failed for good (reported as an error), or never sent.
                chain.open = result.outcome == CreateOutcome::NotStarted;
                continue;
            }
            let gpu = session.plan.fleets.get(&chain.planned.fleet).map(|f| f.gpu.as_str()).unwrap_or_default();
            let live = |p: &Placement| state.shortages.iter().any(|s| s.expires_at > now && s.scope.covers(p, gpu));
            let next = chain.planned.fallbacks.iter().enumerate().skip(chain.position).find(|(_, p)| !live(p));
            match next {
                Some((index, placement)) => {
                    session.events.emit(&Event::Failover {
                        fleet: chain.planned.fleet.clone(),
                        from: chain.current.placement.clone(),
                        to: placement.clone(),
                    });
                    chain.position = index + 1;
                    chain.current = Action {
                        placement: placement.clone(),
                        count: missing,
                        min_count: chain.planned.min_count.saturating_sub(chain.kept).clamp(1, missing),
                        price_per_hour: planner::price_of(placement, session.catalog),
                        ..chain.planned.clone()
                    };
                }
                None => {
                    chain.open = false;
                    let tried: Vec<String> = std::iter::once(&chain.planned.placement)
                        .chain(&chain.planned.fallbacks)
                        .map(|p| p.to_string())
                        .collect();
                    self.exhausted.push(format!(
                        "fleet `{}`: {missing} node(s) found no place on the saved chain [{}]; \
                         run `gpufleet plan` again to look further",
                        chain.planned.fleet,
                        tried.join(", ")
                    ));
                }
            }
        }
    }

    fn fallbacks_used(&self) -> &[(String, FallbackUsed)] {
        &self.fallbacks_used
    }

    fn chains_exhausted(&self) -> Vec<String> {
        self.exhausted.clone()
    }

    fn postponed(&self) -> Vec<String> {
        self.postponed
            .iter()
            .map(|d| {
                format!(
                    "fleet `{}`: {} node(s) at {} kept ({}); its new nodes did not all land as planned. \
                     Run `gpufleet plan` again.",
                    d.fleet, d.count, d.placement, d.reason
                )
            })
            .collect()
    }
}
