//! [`TrainConfig::validate`]: what a config must satisfy before anything is planned or built,
//! each failure naming its field.

use advsoup_adapters::AdapterKind;
use advsoup_vit::VitConfig;

use super::{DatasetName, ShiftLayout, TrainConfig, invalid};
use crate::TrainError;

impl TrainConfig {
    /// Rejects values that cannot give a meaningful run, naming the field.
    pub fn validate(&self) -> Result<(), TrainError> {
        if self.name.is_empty()
            || self
                .name
                .chars()
                .any(|c| !(c.is_ascii_alphanumeric() || "-_.".contains(c)))
            || self.name.starts_with('.')
        {
            return Err(invalid(
                "name",
                format!(
                    "`{}` must be non-empty letters, digits, '-', '_' or '.'",
                    self.name
                ),
            ));
        }
        let vit = self.vit()?;
        self.validate_sizes(&vit)?;
        self.validate_caps()?;
        self.precision()?;
        if !(self.optim.loss_scale.is_finite() && self.optim.loss_scale >= 1.0) {
            return Err(invalid(
                "optim.loss_scale",
                format!("{} must be a finite number >= 1", self.optim.loss_scale),
            ));
        }
        for (field, a) in [
            ("attack.train", &self.attack.train),
            ("attack.eval", &self.attack.eval),
        ] {
            if !(a.eps > 0.0 && a.eps <= 1.0) {
                return Err(invalid(
                    &format!("{field}.eps"),
                    format!("expected a radius in (0, 1], got {}", a.eps),
                ));
            }
            if !(a.step_size > 0.0 && a.step_size <= a.eps) {
                return Err(invalid(
                    &format!("{field}.step_size"),
                    format!(
                        "expected a step in (0, eps = {}], got {}",
                        a.eps, a.step_size
                    ),
                ));
            }
            if a.num_steps == 0 {
                return Err(invalid(
                    &format!("{field}.num_steps"),
                    "expected at least 1 step",
                ));
            }
        }
        if !(0.0..=1.0).contains(&self.alpha) {
            return Err(invalid(
                "alpha",
                format!("expected a weight in [0, 1], got {}", self.alpha),
            ));
        }
        if self.data.train_limit == Some(0) {
            return Err(invalid(
                "data.train_limit",
                "expected a positive number of training samples (or leave it out for all)",
            ));
        }
        let o = &self.optim;
        if o.epochs == 0 {
            return Err(invalid("optim.epochs", "expected at least 1 epoch"));
        }
        if o.batch_size == 0 {
            return Err(invalid(
                "optim.batch_size",
                "expected a positive batch size",
            ));
        }
        if !(o.lr > 0.0 && o.lr.is_finite()) {
            return Err(invalid(
                "optim.lr",
                format!("expected a positive learning rate, got {}", o.lr),
            ));
        }
        if [o.weight_decay, o.warmup_epochs, o.min_lr_ratio]
            .iter()
            .any(|v| !(*v >= 0.0 && v.is_finite()))
        {
            return Err(invalid(
                "optim",
                "weight_decay, warmup_epochs and min_lr_ratio must be >= 0",
            ));
        }
        if !(0.0..1.0).contains(&o.beta1) || !(0.0..1.0).contains(&o.beta2) {
            return Err(invalid("optim.beta1/beta2", "expected values in [0, 1)"));
        }
        if self.eval.batch_size == 0 {
            return Err(invalid("eval.batch_size", "expected a positive batch size"));
        }
        if self.eval.held_out_robust > self.data.held_out {
            return Err(invalid(
                "eval.held_out_robust",
                format!(
                    "{} exceeds data.held_out = {}",
                    self.eval.held_out_robust, self.data.held_out
                ),
            ));
        }
        if !(o.grad_clip >= 0.0 && o.grad_clip.is_finite()) {
            return Err(invalid(
                "optim.grad_clip",
                format!("expected a finite value >= 0, got {}", o.grad_clip),
            ));
        }
        // An unknown preset would otherwise surface only after the whole training.
        advsoup_attacks::Evaluator::preset(
            &self.eval.test_attack,
            advsoup_attacks::ThreatModel::Linf,
            self.attack.eval.eps,
            self.seed,
        )
        .map_err(|e| invalid("eval.test_attack", e.to_string()))?;
        if !(0.0..1.0).contains(&self.data.label_smoothing) {
            return Err(invalid(
                "data.label_smoothing",
                "expected a value in [0, 1)",
            ));
        }
        if o.micro_batch_size == Some(0) {
            return Err(invalid(
                "optim.micro_batch_size",
                "expected a positive batch size",
            ));
        }
        if !(0.0..1.0).contains(&o.ema_decay) {
            return Err(invalid(
                "optim.ema_decay",
                format!("expected a decay in [0, 1), got {}", o.ema_decay),
            ));
        }
        self.augment().map_err(|e| match e {
            TrainError::Data(d) => invalid("data", d.to_string()),
            other => other,
        })?;
        for (i, shift) in self.eval.shifts.iter().enumerate() {
            let field = format!("eval.shifts[{i}]");
            if self.data.dataset != DatasetName::ImageFolder {
                return Err(invalid(
                    &field,
                    "shifted sets need data.dataset = \"image-folder\" (its class index)",
                ));
            }
            if shift.layout == ShiftLayout::ImagenetC
                && (shift.corruptions.is_empty()
                    || shift.severities.is_empty()
                    || shift.severities.iter().any(|s| !(1..=5).contains(s)))
            {
                return Err(invalid(
                    &field,
                    "imagenet_c needs corruptions and severities in 1..=5",
                ));
            }
        }
        if self.data.dataset == DatasetName::ImageFolder {
            for (field, v) in [
                ("data.train_dir", &self.data.train_dir),
                ("data.val_dir", &self.data.val_dir),
            ] {
                if v.is_none() {
                    return Err(invalid(
                        field,
                        "required when data.dataset = \"image-folder\"",
                    ));
                }
            }
            if self.data.load_size == Some(0) {
                return Err(invalid("data.load_size", "expected a positive size"));
            }
        }
        Ok(())
    }

    /// Sizes a machine can hold: a typo such as `embed_dim = 6400000` must be an error naming
    /// the field here, not an allocation failure (an abort) or a burn panic when the model is
    /// built.
    fn validate_sizes(&self, vit: &VitConfig) -> Result<(), TrainError> {
        const MAX_PARAMS: usize = 1 << 32;
        for (field, value, max) in [
            ("model.embed_dim", vit.embed_dim, 1 << 16),
            ("model.depth", vit.depth, 1 << 10),
            ("model.num_classes", vit.num_classes, 1 << 20),
            ("data.crop_padding", self.data.crop_padding, vit.img_size),
            ("data.workers", self.data.workers, 256),
        ] {
            if value > max {
                return Err(invalid(
                    field,
                    format!("{value} is too large: expected at most {max}"),
                ));
            }
        }
        let hidden = vit.mlp_hidden();
        if hidden > 1 << 22 {
            return Err(invalid(
                "model.mlp_ratio",
                format!(
                    "{} gives an MLP width of {hidden}: expected at most {}",
                    vit.mlp_ratio,
                    1 << 22
                ),
            ));
        }
        match self.model.adapter {
            AdapterKind::Prompt { tokens } if tokens == 0 || tokens > 1 << 16 => {
                return Err(invalid(
                    "model.adapter",
                    format!("prompt tokens = {tokens}: expected 1 to 65536"),
                ));
            }
            AdapterKind::Lora { rank } if rank == 0 || rank > vit.embed_dim => {
                return Err(invalid(
                    "model.adapter",
                    format!(
                        "lora rank = {rank}: expected 1 to embed_dim = {}",
                        vit.embed_dim
                    ),
                ));
            }
            _ => {}
        }
        // With the bounds above this count cannot overflow.
        let params = advsoup_adapters::AdaptedVitConfig {
            vit: vit.clone(),
            adapter: self.model.adapter,
        }
        .num_params();
        if params > MAX_PARAMS {
            return Err(invalid(
                "model",
                format!("{params} parameters: expected at most {MAX_PARAMS}"),
            ));
        }
        Ok(())
    }
}
