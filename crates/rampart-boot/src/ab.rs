//! The A/B boot-slot model, over bootloader environment variables.
//!
//! The variables are RAUC's U-Boot convention, so existing boot scripts work unchanged, and
//! the same names are used in the GRUB environment block:
//!
//! * `BOOT_ORDER`: the slots in boot order, primary first, e.g. `"A B"`;
//! * `BOOT_A_LEFT`, `BOOT_B_LEFT`: boot attempts left for each slot.
//!
//! The bootloader ([`AbState::boot`]) boots the first slot in `BOOT_ORDER` with attempts
//! left, decrementing them while the other slot is bootable; a slot with none left is
//! skipped (bad). The agent resets the counter of the slot it runs from once the slot is
//! healthy (mark good), so a slot that fails to come up `tries` times in a row is abandoned
//! by the bootloader by itself.

use std::collections::BTreeMap;
use std::fmt;

/// Boot attempts a slot gets when made primary or marked good, unless configured otherwise.
pub const DEFAULT_TRIES: u8 = 3;
/// Largest accepted attempts counter (U-Boot scripts compare single digits).
pub const MAX_TRIES: u8 = 9;

pub const ORDER_VAR: &str = "BOOT_ORDER";

/// One of the two slots.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
pub enum Slot {
    A,
    B,
}

impl Slot {
    pub const BOTH: [Slot; 2] = [Slot::A, Slot::B];

    /// The other slot.
    pub fn other(self) -> Slot {
        match self {
            Slot::A => Slot::B,
            Slot::B => Slot::A,
        }
    }

    /// The boot name (`A` or `B`).
    pub fn name(self) -> &'static str {
        match self {
            Slot::A => "A",
            Slot::B => "B",
        }
    }

    /// Parses a boot name (`A`/`B`, case-insensitive).
    pub fn parse(s: &str) -> Option<Slot> {
        match s.trim() {
            "A" | "a" => Some(Slot::A),
            "B" | "b" => Some(Slot::B),
            _ => None,
        }
    }

    /// The attempts-left variable of this slot.
    pub fn left_var(self) -> &'static str {
        match self {
            Slot::A => "BOOT_A_LEFT",
            Slot::B => "BOOT_B_LEFT",
        }
    }

    fn index(self) -> usize {
        match self {
            Slot::A => 0,
            Slot::B => 1,
        }
    }
}

impl fmt::Display for Slot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Why the A/B variables of an environment are unusable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AbError {
    #[error("{ORDER_VAR}={0:?} is not a boot order of slots A and B (expected \"A B\" or \"B A\")")]
    BadOrder(String),
    #[error("{var}={value:?} is not a number of boot attempts from 0 to {MAX_TRIES}")]
    BadCounter { var: &'static str, value: String },
}

/// Whether a slot may be booted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SlotHealth {
    Good,
    Bad,
}

/// The A/B state held in a bootloader environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AbState {
    /// Both slots, primary first.
    order: [Slot; 2],
    left: [u8; 2],
}

impl AbState {
    /// The state of a device fresh from the factory: A primary, both slots with `tries`.
    pub fn factory(tries: u8) -> AbState {
        AbState {
            order: [Slot::A, Slot::B],
            left: [tries; 2],
        }
    }

    /// Reads the A/B variables. Missing variables take the factory value (`tries`), as a
    /// bootloader's built-in default environment would; malformed ones are an error.
    pub fn from_vars(vars: &BTreeMap<String, String>, tries: u8) -> Result<AbState, AbError> {
        let mut state = AbState::factory(tries);
        if let Some(order) = vars.get(ORDER_VAR) {
            let names: Vec<Option<Slot>> = order.split_whitespace().map(Slot::parse).collect();
            state.order = match names.as_slice() {
                [Some(first), Some(second)] if first != second => [*first, *second],
                // A one-slot order (RAUC allows it): the other slot comes last.
                [Some(only)] => [*only, only.other()],
                _ => return Err(AbError::BadOrder(order.clone())),
            };
        }
        for slot in Slot::BOTH {
            if let Some(value) = vars.get(slot.left_var()) {
                let n: u8 = value
                    .trim()
                    .parse()
                    .ok()
                    .filter(|n| *n <= MAX_TRIES)
                    .ok_or_else(|| AbError::BadCounter {
                        var: slot.left_var(),
                        value: value.clone(),
                    })?;
                state.left[slot.index()] = n;
            }
        }
        Ok(state)
    }

    /// Writes the A/B variables into `vars`, leaving every other variable alone.
    pub fn to_vars(&self, vars: &mut BTreeMap<String, String>) {
        vars.insert(
            ORDER_VAR.to_owned(),
            format!("{} {}", self.order[0], self.order[1]),
        );
        for slot in Slot::BOTH {
            vars.insert(slot.left_var().to_owned(), self.left(slot).to_string());
        }
    }

    /// The first slot in the boot order (whether or not it has attempts left).
    pub fn primary(&self) -> Slot {
        self.order[0]
    }

    /// Boot attempts left for `slot`.
    pub fn left(&self, slot: Slot) -> u8 {
        self.left[slot.index()]
    }

    /// Good while the slot has attempts left.
    pub fn health(&self, slot: Slot) -> SlotHealth {
        if self.left(slot) > 0 {
            SlotHealth::Good
        } else {
            SlotHealth::Bad
        }
    }

    /// Makes `slot` the first to boot, with `tries` attempts.
    pub fn set_primary(&mut self, slot: Slot, tries: u8) {
        self.order = [slot, slot.other()];
        self.left[slot.index()] = tries;
    }

    /// Marks `slot` good (`tries` attempts) or bad (none: the bootloader skips it).
    pub fn set_health(&mut self, slot: Slot, health: SlotHealth, tries: u8) {
        self.left[slot.index()] = match health {
            SlotHealth::Good => tries,
            SlotHealth::Bad => 0,
        };
    }

    /// What the bootloader does at power-on: the first slot in the boot order with attempts
    /// left; `None` when neither slot may be booted. Its counter is decremented only while
    /// the other slot is bootable: counting is what makes the bootloader fall back, and with
    /// nothing to fall back to (the other slot marked bad while it is rewritten, or after a
    /// rollback) a counter run down by power cuts before the agent confirms the boot would
    /// leave no bootable slot at all.
    pub fn boot(&mut self) -> Option<Slot> {
        let slot = self.order.into_iter().find(|s| self.left(*s) > 0)?;
        if self.left(slot.other()) > 0 {
            self.left[slot.index()] -= 1;
        }
        Some(slot)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn missing_variables_are_the_factory_default_and_round_trip() {
        let s = AbState::from_vars(&BTreeMap::new(), 3).unwrap();
        assert_eq!(s, AbState::factory(3));
        let mut v = vars(&[("other", "kept")]);
        s.to_vars(&mut v);
        assert_eq!(
            v,
            vars(&[
                ("BOOT_ORDER", "A B"),
                ("BOOT_A_LEFT", "3"),
                ("BOOT_B_LEFT", "3"),
                ("other", "kept")
            ])
        );
        assert_eq!(AbState::from_vars(&v, 1).unwrap(), s);
    }

    #[test]
    fn malformed_variables_are_refused() {
        for bad in ["A A", "C B", "", "A B C"] {
            assert!(matches!(
                AbState::from_vars(&vars(&[("BOOT_ORDER", bad)]), 3),
                Err(AbError::BadOrder(_))
            ));
        }
        for bad in ["-1", "x", "10", "256"] {
            assert!(matches!(
                AbState::from_vars(&vars(&[("BOOT_B_LEFT", bad)]), 3),
                Err(AbError::BadCounter { .. })
            ));
        }
        let one = AbState::from_vars(&vars(&[("BOOT_ORDER", "B")]), 3).unwrap();
        assert_eq!(one.primary(), Slot::B);
    }

    #[test]
    fn a_try_boot_is_abandoned_after_its_attempts() {
        let mut s = AbState::factory(3);
        s.set_health(Slot::B, SlotHealth::Bad, 3);
        s.set_primary(Slot::B, 2);
        assert_eq!(s.boot(), Some(Slot::B));
        assert_eq!(s.boot(), Some(Slot::B));
        assert_eq!(s.health(Slot::B), SlotHealth::Bad);
        // Exhausted: the bootloader falls back to A, B stays primary in the order.
        assert_eq!(s.boot(), Some(Slot::A));
        assert_eq!(s.primary(), Slot::B);
        // Mark good resets the counter of the running slot.
        s.set_health(Slot::A, SlotHealth::Good, 3);
        assert_eq!(s.left(Slot::A), 3);
    }

    #[test]
    fn the_last_bootable_slot_is_never_counted_down() {
        let mut s = AbState::factory(1);
        s.set_health(Slot::A, SlotHealth::Bad, 1);
        for _ in 0..5 {
            assert_eq!(s.boot(), Some(Slot::B));
        }
        assert_eq!(s.left(Slot::B), 1);
        s.set_health(Slot::B, SlotHealth::Bad, 1);
        assert_eq!(s.boot(), None);
    }
}
