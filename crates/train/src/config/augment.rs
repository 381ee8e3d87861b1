//! The training augmentation a config asks for, resolved into the data crate's
//! [`AugmentConfig`](advsoup_data::AugmentConfig).

use super::TrainConfig;
use crate::TrainError;

impl TrainConfig {
    /// The training augmentation of this config, checked.
    pub fn augment(&self) -> Result<advsoup_data::AugmentConfig, TrainError> {
        let d = &self.data;
        let rand_augment = d
            .rand_augment
            .as_deref()
            .map(advsoup_data::augment::RandAugment::parse)
            .transpose()?;
        let resized_crop =
            d.random_resized_crop
                .as_ref()
                .map(|r| advsoup_data::augment::ResizedCrop {
                    size: 0,
                    scale: r.scale,
                    ratio: r.ratio,
                });
        let a = advsoup_data::AugmentConfig {
            crop_padding: d.crop_padding,
            hflip: d.hflip,
            mixup_alpha: d.mixup_alpha,
            cutmix_alpha: d.cutmix_alpha,
            mix_prob: d.mix_prob,
            cutmix_switch_prob: d.cutmix_switch_prob,
            label_smoothing: d.label_smoothing,
            rand_augment,
            resized_crop: resized_crop.map(|mut r| {
                r.size = self.vit().map(|v| v.img_size).unwrap_or(0);
                r
            }),
        };
        a.validate()?;
        Ok(a)
    }
}
