//! advsoup-adapters: domain-specific parameters ("adapters") for a ViT, routed per sample.
//!
//! Rebuffi, Croce & Gowal 2023 ("Revisiting Adapters with Adversarial Training") give each input
//! domain — clean and adversarial — a few parameters of its own and share the rest. This crate
//! holds those parameters ([`DomainAdapter`]), wraps a [`Vit`](advsoup_vit::Vit) into an
//! [`AdaptedVit`], and routes each sample of a batch through its own adapter in ONE forward pass
//! ([`Route::PerSample`]). [`Mode::Soup`] uses φ = β·φ_clean + (1 − β)·φ_adv.
//!
//! Invariants: w = 1 is exactly φ_clean and w = 0 exactly φ_adv (bit for bit); the parameter
//! counts of [`AdapterKind::params_per_domain`] are the tensors' sizes. This crate does no IO
//! except the explicit file functions of [`io`], and knows nothing of data, attacks or training.
//!
//! ```
//! use advsoup_adapters::{AdaptedVitConfig, AdapterKind, Mode, Route};
//! use advsoup_vit::VitConfig;
//! use burn::backend::Flex;
//! use burn::prelude::*;
//!
//! let device = Default::default();
//! let vit = VitConfig::new().with_img_size(8).with_patch_size(4).with_in_chans(1).with_num_classes(3).with_embed_dim(16).with_depth(2).with_num_heads(2).with_mean(vec![0.5]).with_std(vec![0.5]);
//! let model = AdaptedVitConfig { vit, adapter: AdapterKind::ClsToken }
//!     .try_init::<Flex>(&device)
//!     .unwrap();
//! let x = Tensor::<Flex, 4>::zeros([4, 1, 8, 8], &device);
//! // two clean then two adversarial samples, one forward pass
//! let logits = model.forward(x.clone(), &Route::split(2, 2, &device));
//! assert_eq!(logits.dims(), [4, 3]);
//! let robust = model.forward_mode(x, Mode::Adversarial);
//! assert_eq!(model.params_per_domain(), 16);
//! ```
#![warn(missing_docs)]

/// The burn this crate is built on (`=0.21.0`), so users get the matching version and types.
pub use burn;

pub mod io;
mod kind;
mod model;

pub use kind::AdapterKind;
pub use model::{AdaptedVit, AdaptedVitConfig, Domain, DomainAdapter, LoraPair, Mode, Route};

#[cfg(test)]
mod tests;
