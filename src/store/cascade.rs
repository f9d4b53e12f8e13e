//! The member deletion cascade: each feature registers one function that erases a
//! departing member's rows of that feature, and account deletion runs them all inside its
//! transaction without knowing what the features are.
//!
//! The composition root (`app::member_cascade`) lists the features; a new feature that
//! keeps rows about members adds its eraser there.

use redb::WriteTransaction;

use super::{Id, StoreError};

/// How a member leaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Removal {
    /// The member is gone but a decoy keeps their name (destruction, their own deletion,
    /// an operator's removal): everything they made or can open goes, as if they had
    /// removed their connections, withdrawn their requests and invitations, left their
    /// groups and deleted their files and messages; what others made towards them stays as
    /// it would for a live account that does not answer (requests and invitations waiting
    /// for them, files shared with them, denials and blocks between them and others).
    Decoy,
    /// Nothing of the member stays (inactivity, or a decoy's own inactivity).
    Full,
}

/// One feature's eraser: removes `member`'s rows of that feature inside the deletion's
/// transaction. The member's `USERS` row is still there for `Removal::Decoy` (the decoy)
/// and already gone for `Removal::Full`.
pub type Eraser = fn(&WriteTransaction, &Id, Removal) -> Result<(), StoreError>;

/// The erasers of every feature, in the order they run.
#[derive(Clone, Default)]
pub struct Cascade {
    erasers: Vec<(&'static str, Eraser)>,
}

impl std::fmt::Debug for Cascade {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.erasers.iter().map(|(name, _)| name))
            .finish()
    }
}

impl Cascade {
    /// An empty cascade.
    pub fn new() -> Self {
        Self::default()
    }

    /// Register a feature's eraser.
    #[must_use]
    pub fn with(mut self, feature: &'static str, eraser: Eraser) -> Self {
        self.erasers.push((feature, eraser));
        self
    }

    /// Run every eraser for `member`, in registration order.
    pub fn run(
        &self,
        txn: &WriteTransaction,
        member: &Id,
        removal: Removal,
    ) -> Result<(), StoreError> {
        for (_, eraser) in &self.erasers {
            eraser(txn, member, removal)?;
        }
        Ok(())
    }

    /// The registered features, in order (for status and tests).
    pub fn features(&self) -> Vec<&'static str> {
        self.erasers.iter().map(|(name, _)| *name).collect()
    }
}
