//! Configuration errors.

use thiserror::Error;

/// Why an attack or evaluator configuration was rejected.
#[derive(Debug, Error, Clone, PartialEq)]
pub enum AttackError {
    /// `eps` is not a finite number in the allowed range.
    #[error("eps must be a finite number in [0, 1] for linf (>= 0 for l2), got {0}")]
    Eps(f64),
    /// `step_size` is not a positive finite number.
    #[error("step_size must be a positive finite number (0 only with eps = 0), got {0}")]
    StepSize(f64),
    /// A count (`steps`, `restarts`, `n_iter`, `n_queries`, ...) is zero.
    #[error("{field} must be at least 1, got 0")]
    ZeroCount {
        /// The offending field.
        field: &'static str,
    },
    /// A fraction (`rho`, `momentum`, `p_init`) is outside (0, 1].
    #[error("{field} must be in (0, 1], got {value}")]
    Fraction {
        /// The offending field.
        field: &'static str,
        /// The value given.
        value: f64,
    },
    /// The attack does not support the requested threat model.
    #[error("{attack} supports only the linf threat model, got {threat}")]
    Unsupported {
        /// The attack.
        attack: &'static str,
        /// The threat model asked for.
        threat: String,
    },
    /// An evaluator preset name was not recognised.
    #[error(
        "unknown attack preset {0:?}, expected pgd-K (e.g. pgd-40), fgsm, apgd-ce, apgd-t, square or standard"
    )]
    UnknownPreset(String),
    /// An evaluator was given no attacks.
    #[error("an evaluator needs at least one attack")]
    EmptyEnsemble,
    /// An ε sweep was not strictly increasing.
    #[error("eps values of a sweep must be strictly increasing, got {0:?}")]
    SweepOrder(Vec<f64>),
}
