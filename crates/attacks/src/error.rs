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
    /// A count is above its documented maximum ([`crate::MAX_STEPS`], [`crate::MAX_RESTARTS`],
    /// [`crate::MAX_QUERIES`], [`crate::MAX_TARGET_CLASSES`]): such an attack would run for
    /// days without output.
    #[error("{field} {value} is too large: at most {max}")]
    TooLarge {
        /// The offending field.
        field: &'static str,
        /// The value given.
        value: usize,
        /// The maximum.
        max: usize,
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

/// The most gradient steps (PGD `steps`, APGD `n_iter`) an attack may take.
pub const MAX_STEPS: usize = 10_000;
/// The most restarts an attack may run.
pub const MAX_RESTARTS: usize = 100;
/// The most queries a query-based attack (Square) may spend per sample.
pub const MAX_QUERIES: usize = 100_000;
/// The most target classes a targeted attack (APGD-T) may try.
pub const MAX_TARGET_CLASSES: usize = 1_000;

/// Checks that each `(field, value, max)` count is between 1 and its maximum.
pub(crate) fn check_counts(counts: &[(&'static str, usize, usize)]) -> Result<(), AttackError> {
    for &(field, value, max) in counts {
        if value == 0 {
            return Err(AttackError::ZeroCount { field });
        }
        if value > max {
            return Err(AttackError::TooLarge { field, value, max });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::{
        ApgdConfig, AttackError, Evaluator, MAX_QUERIES, MAX_RESTARTS, MAX_STEPS,
        MAX_TARGET_CLASSES, PgdConfig, SquareConfig, ThreatModel,
    };

    #[test]
    fn counts_above_their_maximum_are_refused_naming_field_and_maximum() {
        let too_large = |field: &'static str, value: usize, max: usize| {
            Err(AttackError::TooLarge { field, value, max })
        };
        let linf = ThreatModel::Linf;
        let pgd = PgdConfig::new(linf, 0.1, MAX_STEPS);
        assert_eq!(pgd.validate(), Ok(()));
        let pgd = PgdConfig::new(linf, 0.1, MAX_STEPS + 1);
        assert_eq!(pgd.validate(), too_large("steps", MAX_STEPS + 1, MAX_STEPS));
        let pgd = PgdConfig::new(linf, 0.1, 10).with_restarts(MAX_RESTARTS + 1);
        assert_eq!(pgd.validate(), too_large("restarts", 101, MAX_RESTARTS));
        let apgd = ApgdConfig::ce(linf, 0.1).with_n_iter(MAX_STEPS + 5);
        assert_eq!(
            apgd.validate(),
            too_large("n_iter", MAX_STEPS + 5, MAX_STEPS)
        );
        let apgd = ApgdConfig::targeted(linf, 0.1).with_n_target_classes(MAX_TARGET_CLASSES + 1);
        assert_eq!(
            apgd.validate(),
            too_large("n_target_classes", 1001, MAX_TARGET_CLASSES)
        );
        let square = SquareConfig::new(linf, 0.1).with_n_queries(MAX_QUERIES + 1);
        assert_eq!(
            square.validate(),
            too_large("n_queries", MAX_QUERIES + 1, MAX_QUERIES)
        );
        let e = Evaluator::preset("pgd-99999999999", linf, 0.1, 0).expect_err("too many steps");
        assert_eq!(
            e.to_string(),
            "steps 99999999999 is too large: at most 10000"
        );
        assert!(Evaluator::preset("pgd-10000", linf, 0.1, 0).is_ok());
    }
}
