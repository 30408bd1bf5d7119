//! The simulated hardware of one device: two in-memory slots and the bootloader environment.
//!
//! A slot never holds image bytes (10,000 devices × two slots of firmware would not fit in
//! memory): it holds how many bytes were written from offset 0 and the SHA-256 state of them,
//! which is all that decides whether the slot boots a known image. Writes become durable only
//! at a sync, as on a real medium: a power cut returns the slot to its last synced state, and
//! overwriting an image from offset 0 destroys it (a power cut before the next sync leaves
//! garbage, never the old image).
//!
//! The bootloader environment is [`rampart_boot::ab::AbState`], the model the agent's
//! bootloader backends and the boot simulator share; every change of it is atomic (a redundant
//! U-Boot environment or a GRUB environment block written in one piece). It is a backend of the
//! agent's own [`rampart_agent::bootloader::Bootloader`] interface, written through the
//! device's [`MemDisk`] (where power cuts strike).

use rampart_agent::bootloader::{BootError, Bootloader as AgentBootloader};
use rampart_boot::ab::{AbState, Slot, SlotHealth};

use crate::power::{MemDisk, Write};

/// What a slot's bytes hash to.
#[derive(Clone)]
enum Content {
    /// A whole image flashed at the factory: its SHA-256 is known without any bytes.
    Flashed(String),
    /// Bytes written from offset 0: the running SHA-256 of them.
    Written(ring::digest::Context),
    /// Partly overwritten, or torn by a power cut: boots nothing.
    Garbage,
}

/// One slot: a length and the hash state of its content.
#[derive(Clone)]
pub(crate) struct MemSlot {
    len: u64,
    content: Content,
    /// The state at the last sync (what a power cut leaves).
    synced_len: u64,
    synced: Content,
    /// The last resume checkpoint (a sync the agent recorded in its state): the slot's first
    /// bytes up to it are still there when the stream went on after it, so an install resumes
    /// from it. Stands in for the agent re-hashing those bytes from the medium.
    checkpoint: Option<(u64, Content)>,
}

impl MemSlot {
    /// A slot holding a complete factory image.
    pub(crate) fn flashed(len: u64, sha256: &str) -> MemSlot {
        let content = Content::Flashed(sha256.to_ascii_lowercase());
        MemSlot {
            len,
            content: content.clone(),
            synced_len: len,
            synced: content,
            checkpoint: None,
        }
    }

    /// An erased slot.
    pub(crate) fn blank() -> MemSlot {
        MemSlot {
            len: 0,
            content: Content::Garbage,
            synced_len: 0,
            synced: Content::Garbage,
            checkpoint: None,
        }
    }

    pub(crate) fn len(&self) -> u64 {
        self.len
    }

    /// Writes `chunk` at `offset`. Writing at 0 starts a new content (the old one is being
    /// destroyed); otherwise writes must continue where the content ends (the agent streams).
    pub(crate) fn write(&mut self, offset: u64, chunk: &[u8]) -> Result<(), String> {
        if offset == 0 {
            self.len = 0;
            self.content = Content::Written(ring::digest::Context::new(&ring::digest::SHA256));
            // Nothing durable of the new content yet, and the old one is no longer whole.
            self.synced_len = 0;
            self.synced = Content::Garbage;
            self.checkpoint = None;
        } else if offset != self.len {
            return Err(format!(
                "write at byte {offset}, but the slot's content ends at byte {}",
                self.len
            ));
        }
        match &mut self.content {
            Content::Written(ctx) => ctx.update(chunk),
            Content::Flashed(_) | Content::Garbage => {
                return Err(format!(
                    "write at byte {offset} into a slot that was not rewritten from byte 0"
                ));
            }
        }
        self.len += chunk.len() as u64;
        Ok(())
    }

    /// Makes what was written durable (fsync).
    pub(crate) fn sync(&mut self) {
        self.synced_len = self.len;
        self.synced = self.content.clone();
    }

    /// A resume checkpoint: sync, and remember the point.
    pub(crate) fn checkpoint(&mut self) {
        self.sync();
        self.checkpoint = Some((self.len, self.content.clone()));
    }

    /// A power cut: unsynced writes are lost.
    pub(crate) fn power_loss(&mut self) {
        self.len = self.synced_len;
        self.content = self.synced.clone();
    }

    /// Positions the content at `offset` to resume writing there: possible when the slot holds
    /// exactly that many bytes now, or did at its last sync or resume checkpoint. Returns
    /// whether it could.
    pub(crate) fn rewind(&mut self, offset: u64) -> bool {
        if offset == 0 {
            return true;
        }
        if self.len == offset && matches!(self.content, Content::Written(_)) {
            return true;
        }
        let found = if self.synced_len == offset && matches!(self.synced, Content::Written(_)) {
            Some(self.synced.clone())
        } else {
            match &self.checkpoint {
                Some((at, c @ Content::Written(_))) if *at == offset => Some(c.clone()),
                _ => None,
            }
        };
        match found {
            Some(content) => {
                self.len = offset;
                self.content = content;
                true
            }
            None => false,
        }
    }

    /// The SHA-256 (hex) of the content; `None` for garbage.
    pub(crate) fn sha256(&self) -> Option<String> {
        match &self.content {
            Content::Flashed(h) => Some(h.clone()),
            Content::Written(ctx) => Some(hex::encode(ctx.clone().finish())),
            Content::Garbage => None,
        }
    }
}

/// The bootloader environment (A/B variables), with the agent's bootloader operations.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Bootloader {
    pub(crate) ab: AbState,
    tries: u8,
}

impl Bootloader {
    /// A device fresh from the factory: A primary, both slots with `tries`.
    pub(crate) fn factory(tries: u8) -> Bootloader {
        Bootloader {
            ab: AbState::factory(tries),
            tries,
        }
    }

    pub(crate) fn primary(&self) -> Slot {
        self.ab.primary()
    }

    pub(crate) fn health(&self, slot: Slot) -> SlotHealth {
        self.ab.health(slot)
    }

    /// Makes `slot` boot next with a fresh counter.
    pub(crate) fn set_primary(&mut self, slot: Slot) {
        self.ab.set_primary(slot, self.tries);
    }

    pub(crate) fn set_health(&mut self, slot: Slot, health: SlotHealth) {
        self.ab.set_health(slot, health, self.tries);
    }

    /// The agent's `confirm` at start: the running slot is good (counter reset).
    #[cfg(test)]
    pub(crate) fn confirm(&mut self, slot: Slot) {
        self.set_health(slot, SlotHealth::Good);
    }

    /// Power-on: the slot the bootloader picks (its counter counted down), if any.
    pub(crate) fn boot(&mut self) -> Option<Slot> {
        self.ab.boot()
    }
}

impl AgentBootloader<MemDisk> for Bootloader {
    fn primary(&mut self) -> Result<Slot, BootError> {
        Ok(self.ab.primary())
    }

    fn health(&mut self, slot: Slot) -> Result<SlotHealth, BootError> {
        Ok(self.ab.health(slot))
    }

    fn set_primary(&mut self, disk: &MemDisk, slot: Slot) -> Result<(), BootError> {
        Ok(disk.step(Write::Primary, || Bootloader::set_primary(self, slot))?)
    }

    fn set_health(
        &mut self,
        disk: &MemDisk,
        slot: Slot,
        health: SlotHealth,
    ) -> Result<(), BootError> {
        Ok(disk.step(Write::SlotHealth(health), || {
            Bootloader::set_health(self, slot, health)
        })?)
    }

    fn describe(&self) -> String {
        "the in-memory bootloader environment".into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sha(data: &[u8]) -> String {
        hex::encode(ring::digest::digest(&ring::digest::SHA256, data))
    }

    #[test]
    fn slots_hash_what_was_written_and_lose_unsynced_writes() {
        let mut s = MemSlot::flashed(3, &sha(b"old"));
        assert_eq!(s.sha256(), Some(sha(b"old")));
        s.write(0, b"new ").unwrap();
        s.write(4, b"image").unwrap();
        assert_eq!(s.sha256(), Some(sha(b"new image")));
        assert!(s.write(3, b"x").is_err(), "no gaps, no overlaps");
        // A power cut before any sync: the old image is gone, nothing new is durable.
        s.power_loss();
        assert_eq!(s.sha256(), None);
        assert_eq!(s.len(), 0);

        s.write(0, b"new ").unwrap();
        s.sync();
        s.write(4, b"ima").unwrap();
        s.power_loss();
        assert_eq!(s.len(), 4);
        assert!(s.rewind(4));
        s.write(4, b"image").unwrap();
        assert_eq!(s.sha256(), Some(sha(b"new image")));
        assert!(!s.rewind(2), "only the current or the synced length");
        // Past a checkpoint, the stream ended (synced) but the install was not activated: it
        // resumes from the checkpoint the agent recorded.
        s.write(0, b"new ").unwrap();
        s.checkpoint();
        s.write(4, b"image").unwrap();
        s.sync();
        assert!(s.rewind(4));
        assert_eq!(s.len(), 4);
        s.write(4, b"image").unwrap();
        assert_eq!(s.sha256(), Some(sha(b"new image")));
        assert_eq!(MemSlot::blank().sha256(), None);
    }

    #[test]
    fn the_bootloader_is_the_ab_model() {
        let mut b = Bootloader::factory(2);
        b.set_health(Slot::B, SlotHealth::Bad);
        b.set_primary(Slot::B);
        assert_eq!(b.boot(), Some(Slot::B));
        assert_eq!(b.boot(), Some(Slot::B));
        assert_eq!(b.boot(), Some(Slot::A), "the counter ran out");
        assert_eq!(b.primary(), Slot::B);
        b.confirm(Slot::A);
        assert_eq!(b.health(Slot::A), SlotHealth::Good);
    }
}
