//! The one interface every attack implements.

use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;

use crate::core::AttackOutput;

/// An adversarial attack on a batch, through a logits closure `f: Fn(Tensor<AD, 4>) ->
/// Tensor<AD, 2>` (pixels in [0, 1] → logits), never a concrete model.
///
/// Implementors write [`Attack::perturb`]; callers use [`Attack::attack`], which checks the
/// arguments once for every attack and then perturbs. `f` must be deterministic and should not
/// compute parameter gradients (pass a frozen copy, `M::from_inner(model.valid()).no_grad()`,
/// with dropout off). Random choices are keyed by `(seed, ids[i], ...)`, so a sample gets the
/// same randomness in any batch; deterministic attacks ignore `ids` and `seed`.
///
/// ```
/// use advsoup_attacks::{Attack, FgsmConfig, ThreatModel};
/// use burn::backend::{Autodiff, Flex};
/// use burn::prelude::*;
///
/// type AD = Autodiff<Flex>;
/// let device = Default::default();
/// let w = Tensor::<AD, 2>::from_floats([[1.0, -1.0], [0.5, 2.0], [-1.0, 0.5], [0.0, 1.0]], &device);
/// let f = |x: Tensor<AD, 4>| x.reshape([0, 4]).matmul(w.clone());
/// let x = Tensor::<Flex, 4>::from_floats([[[[0.2, 0.8], [0.5, 0.1]]]], &device);
/// let y = Tensor::<Flex, 1, Int>::from_ints([0], &device);
///
/// fn run<A: Attack>(a: &A, f: &impl Fn(Tensor<AD, 4>) -> Tensor<AD, 2>, x: &Tensor<Flex, 4>, y: &Tensor<Flex, 1, Int>) -> [usize; 4] {
///     a.attack::<AD, _>(f, x, y, &[0], 7).x_adv.dims()
/// }
/// assert_eq!(run(&FgsmConfig::new(ThreatModel::Linf, 0.1).init()?, &f, &x, &y), [1, 1, 2, 2]);
/// # Ok::<(), advsoup_attacks::AttackError>(())
/// ```
pub trait Attack {
    /// The attack's name in panic messages (`pgd`, `apgd`, ...).
    const NAME: &'static str;

    /// The attack itself; [`Attack::attack`] has checked that `ids` has one entry per sample.
    ///
    /// # Shapes
    /// - `x`: `[n, c, h, w]` in [0, 1]; `y`: `[n]`; `ids`: `n` entries.
    fn perturb<AD, F>(
        &self,
        f: &F,
        x: &Tensor<AD::InnerBackend, 4>,
        y: &Tensor<AD::InnerBackend, 1, Int>,
        ids: &[u64],
        seed: u64,
    ) -> AttackOutput<AD::InnerBackend>
    where
        AD: AutodiffBackend,
        F: Fn(Tensor<AD, 4>) -> Tensor<AD, 2>;

    /// Attacks `x` (labels `y`) through the logits closure `f`: the shared argument check, then
    /// [`Attack::perturb`]. The output stays in the ε-ball around `x` and in [0, 1].
    ///
    /// # Shapes
    /// - `x`: `[n, c, h, w]` in [0, 1]; `y`: `[n]`; `ids`: `n` entries.
    ///
    /// # Panics
    /// If `ids.len() != n`, or (for the losses that need them) the logits have too few classes.
    fn attack<AD, F>(
        &self,
        f: &F,
        x: &Tensor<AD::InnerBackend, 4>,
        y: &Tensor<AD::InnerBackend, 1, Int>,
        ids: &[u64],
        seed: u64,
    ) -> AttackOutput<AD::InnerBackend>
    where
        AD: AutodiffBackend,
        F: Fn(Tensor<AD, 4>) -> Tensor<AD, 2>,
    {
        check_ids(Self::NAME, ids, x.dims()[0]);
        self.perturb::<AD, F>(f, x, y, ids, seed)
    }
}

/// The one sample-id check: `ids` must hold one id per sample of the batch.
///
/// # Panics
/// With `<who>: <k> sample ids for a batch of <n>` when it does not.
pub(crate) fn check_ids(who: &str, ids: &[u64], n: usize) {
    assert_eq!(
        ids.len(),
        n,
        "{who}: {} sample ids for a batch of {n}",
        ids.len()
    );
}
