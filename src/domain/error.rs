//! Domain outcomes that are not successes.
//!
//! A *rejection* is a business outcome (out of stock, offer not in the wallet, empty cart): the
//! shopper reacts to it, it is not an error. *Not found* and *invalid* are the caller's fault.
//! *Store* errors are the database's.

use crate::store::StoreError;

/// Business rejections, each with its own stable code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RejectCode {
    /// The user has not selected a store yet.
    NoStoreSelected,
    /// The selected store does not have enough units.
    InsufficientInventory,
    /// Checkout of an empty cart.
    EmptyCart,
    /// The coupon is not an active offer in the user's wallet.
    OfferNotInWallet,
}

impl RejectCode {
    /// The code as it appears in JSON errors.
    pub fn as_str(self) -> &'static str {
        match self {
            RejectCode::NoStoreSelected => "no_store_selected",
            RejectCode::InsufficientInventory => "insufficient_inventory",
            RejectCode::EmptyCart => "empty_cart",
            RejectCode::OfferNotInWallet => "offer_not_in_wallet",
        }
    }

    /// All codes (clients use this list to tell outcomes from errors).
    pub const ALL: [RejectCode; 4] = [
        RejectCode::NoStoreSelected,
        RejectCode::InsufficientInventory,
        RejectCode::EmptyCart,
        RejectCode::OfferNotInWallet,
    ];
}

/// Why a domain operation did not succeed.
#[derive(Debug, thiserror::Error)]
pub enum DomainError {
    /// A business rejection (an outcome, not an error).
    #[error("{message}")]
    Rejected {
        /// Stable code.
        code: RejectCode,
        /// Explanation for people.
        message: String,
    },
    /// An id that does not exist.
    #[error("{what} not found")]
    NotFound {
        /// Stable code, e.g. `product_not_found`.
        code: &'static str,
        /// What was looked for, e.g. `product 7b0…`.
        what: String,
    },
    /// Bad input (e.g. a quantity of 0).
    #[error("{message}")]
    Invalid {
        /// Stable code, e.g. `invalid_quantity`.
        code: &'static str,
        /// Explanation.
        message: String,
    },
    /// The database failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl DomainError {
    /// Shorthand for a rejection.
    pub fn rejected(code: RejectCode, message: impl Into<String>) -> Self {
        DomainError::Rejected {
            code,
            message: message.into(),
        }
    }
}
