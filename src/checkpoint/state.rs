//! The per-worker registry of operator state that checkpoints save and restore.
//!
//! A stateful operator asks the registry for a named cell when the dataflow is
//! built: it gets its restored state when the run resumes from a checkpoint,
//! or a fresh one. The operator keeps an `Rc` of the cell; at a checkpoint
//! the driver (the same thread: a timely worker is single-threaded) serializes
//! every cell. Cells exist whether or not checkpoints are on, so operators have
//! one code path; the cost is a `RefCell` borrow per operator invocation.

use anyhow::Context;
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;

type Saver = Box<dyn Fn() -> anyhow::Result<Vec<u8>>>;

/// Named operator states of one worker.
#[derive(Default)]
pub struct StateRegistry {
    /// State read from the checkpoint being resumed, by name.
    restored: RefCell<BTreeMap<String, Vec<u8>>>,
    savers: RefCell<Vec<(String, Saver)>>,
    /// Whether checkpoints are taken (operators keep extra state only then).
    enabled: bool,
}

impl StateRegistry {
    /// A registry for a run with checkpoints on (`enabled`), resuming from
    /// `restored` states when given.
    pub fn new(enabled: bool, restored: BTreeMap<String, Vec<u8>>) -> Self {
        StateRegistry {
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
        !self.restored.borrow().is_empty()
    }

    /// The cell of state `name`: restored from the checkpoint when resuming,
    /// else `fresh()`. Names are unique within a worker's dataflow.
    pub fn cell<S: Serialize + DeserializeOwned + 'static>(
        &self,
        name: &str,
        fresh: impl FnOnce() -> S,
    ) -> anyhow::Result<Rc<RefCell<S>>> {
        let state = match self.restored.borrow_mut().remove(name) {
            Some(bytes) => bincode::deserialize(&bytes)
                .with_context(|| format!("checkpointed state of `{name}` does not decode"))?,
            None => fresh(),
        };
        let cell = Rc::new(RefCell::new(state));
        let saved = Rc::clone(&cell);
        let mut savers = self.savers.borrow_mut();
        anyhow::ensure!(
            savers.iter().all(|(n, _)| n != name),
            "two operators keep state under the name `{name}`"
        );
        savers.push((
            name.to_string(),
            Box::new(move || Ok(bincode::serialize(&*saved.borrow())?)),
        ));
        Ok(cell)
    }

    /// The serialized state of every cell, by name.
    pub fn save_all(&self) -> anyhow::Result<BTreeMap<String, Vec<u8>>> {
        self.savers
            .borrow()
            .iter()
            .map(|(name, save)| {
                Ok((
                    name.clone(),
                    save().with_context(|| format!("cannot save `{name}`"))?,
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

    #[test]
    fn a_cell_comes_back_with_the_state_it_was_saved_with() {
        let first = StateRegistry::new(true, BTreeMap::new());
        let counts = first.cell("counts", BTreeMap::<u64, f64>::new).unwrap();
        counts.borrow_mut().insert(7, 0.1 + 0.2);
        let saved = first.save_all().unwrap();

        let second = StateRegistry::new(true, saved);
        assert!(second.resuming());
        let back = second.cell("counts", BTreeMap::<u64, f64>::new).unwrap();
        assert_eq!(back.borrow().get(&7).copied(), Some(0.1 + 0.2));
        assert!(second.unclaimed().is_empty());
    }

    #[test]
    fn names_are_unique() {
        let r = StateRegistry::new(false, BTreeMap::new());
        r.cell("x", || 1u64).unwrap();
        assert!(r.cell("x", || 2u64).is_err());
    }
}
