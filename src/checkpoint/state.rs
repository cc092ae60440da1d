//! The per-worker registry of operator state that checkpoints save and restore.
//!
//! A stateful operator asks the registry for a named cell when the dataflow is
//! built: it gets its restored state when the run resumes from a checkpoint,
//! or a fresh one. The operator keeps an `Rc` of the cell; at a checkpoint
//! the driver (the same thread: a timely worker is single-threaded) saves
//! every cell, cut into key groups (`crate::rescale::parts`), so that a run
//! of another layout restores each key's state on the worker that owns it
//! now. Cells exist whether or not checkpoints are on, so operators have
//! one code path; the cost is a `RefCell` borrow per operator invocation.

use crate::rescale::groups::KeyGroups;
use crate::rescale::parts::{Grouped, RestoredParts, SavedParts};
use anyhow::Context;
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;

type Saver = Box<dyn Fn(KeyGroups) -> anyhow::Result<SavedParts>>;

/// Named operator states of one worker.
#[derive(Default)]
pub struct StateRegistry {
    /// State read from the checkpoint being resumed, by name.
    restored: RefCell<BTreeMap<String, RestoredParts>>,
    resuming: bool,
    savers: RefCell<Vec<(String, Saver)>>,
    /// Whether checkpoints are taken (operators keep extra state only then).
    enabled: bool,
}

impl StateRegistry {
    /// A registry for a run with checkpoints on (`enabled`), resuming from
    /// `restored` states when given.
    pub fn new(enabled: bool, restored: BTreeMap<String, RestoredParts>) -> Self {
        StateRegistry {
            resuming: !restored.is_empty(),
            restored: RefCell::new(restored),
            savers: RefCell::default(),
            enabled,
        }
    }

    /// Whether checkpoints are taken in this run.
    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// Whether the run resumes from a checkpoint.
    pub fn resuming(&self) -> bool {
        self.resuming
    }

    /// The cell of state `name`: `fresh()`, restored from the checkpoint's
    /// parts when resuming. Names are unique within a worker's dataflow.
    pub fn cell<S: Grouped>(
        &self,
        name: &str,
        fresh: impl FnOnce() -> S,
    ) -> anyhow::Result<Rc<RefCell<S>>> {
        let mut state = fresh();
        if let Some(parts) = self.restored.borrow_mut().remove(name) {
            state
                .restore_parts(&parts)
                .with_context(|| format!("checkpointed state of `{name}` does not decode"))?;
        }
        let cell = Rc::new(RefCell::new(state));
        let saved = Rc::clone(&cell);
        let mut savers = self.savers.borrow_mut();
        anyhow::ensure!(
            savers.iter().all(|(n, _)| n != name),
            "two operators keep state under the name `{name}`"
        );
        savers.push((
            name.to_string(),
            Box::new(move |groups| saved.borrow_mut().save_parts(groups)),
        ));
        Ok(cell)
    }

    /// Every cell's state, cut into `groups`, by name.
    pub fn save_all(&self, groups: KeyGroups) -> anyhow::Result<BTreeMap<String, SavedParts>> {
        self.savers
            .borrow()
            .iter()
            .map(|(name, save)| {
                Ok((
                    name.clone(),
                    save(groups).with_context(|| format!("cannot save `{name}`"))?,
                ))
            })
            .collect()
    }

    /// Names restored from the checkpoint that no operator claimed: a sign the
    /// dataflow differs from the one that wrote it.
    pub fn unclaimed(&self) -> Vec<String> {
        self.restored.borrow().keys().cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rescale::parts::redistribute;
    use rustc_hash::FxHashMap;

    #[test]
    fn a_cell_comes_back_with_the_state_it_was_saved_with() {
        let groups = KeyGroups::default();
        let first = StateRegistry::new(true, BTreeMap::new());
        let counts = first
            .cell("counts", FxHashMap::<u64, f64>::default)
            .unwrap();
        counts.borrow_mut().insert(7, 0.1 + 0.2);
        let saved = first.save_all(groups).unwrap();

        let restored = redistribute(&[saved["counts"].clone()], groups, 1).remove(0);
        let second = StateRegistry::new(true, [("counts".to_string(), restored)].into());
        assert!(second.resuming());
        let back = second
            .cell("counts", FxHashMap::<u64, f64>::default)
            .unwrap();
        assert_eq!(back.borrow().get(&7).copied(), Some(0.1 + 0.2));
        assert!(second.unclaimed().is_empty());
    }

    #[test]
    fn names_are_unique() {
        let r = StateRegistry::new(false, BTreeMap::new());
        r.cell("x", FxHashMap::<u64, u64>::default).unwrap();
        assert!(r.cell("x", FxHashMap::<u64, u64>::default).is_err());
    }
}
