//! Evaluation during training: the distribution-shift sets of a config in ImageFolder layouts
//! (ImageNet-C/-R/-A/-Sketch) and the shard of a split a data-parallel peer evaluates. The
//! evaluation itself is `advsoup-eval`'s [`advsoup_eval::EvalJob`].

use advsoup_data::ImageDataset;
use advsoup_data::folder::{
    ClassIndex, ClassSubset, FolderOptions, load_image_folder, load_imagenet_c,
};

use crate::config::{ShiftLayout, ShiftSection};

/// The slice of `0..n` that `peer` evaluates (contiguous, as even as possible).
pub(crate) fn shard_range(n: usize, peer: crate::parallel::Peer) -> std::ops::Range<usize> {
    n * peer.rank / peer.world..n * (peer.rank + 1) / peer.world
}

pub use advsoup_records::run::ShiftResult;

/// A loaded shifted set: its report name, the images (labels in the full class index) and the
/// class subset to mask to, if it holds fewer classes than the index.
pub type ShiftSet = (String, ImageDataset, Option<ClassSubset>);

/// Loads the sets of one shift section (every corruption x severity of an ImageNet-C tree),
/// decoded as the validation split is (shorter side 8/7 of `img_size`, center crop).
pub fn load_shift(
    section: &ShiftSection,
    index: &ClassIndex,
    channels: usize,
    img_size: usize,
) -> Result<Vec<ShiftSet>, crate::TrainError> {
    let img = img_size as u32;
    let opts = FolderOptions {
        channels,
        resize_shorter: Some((img * 8).div_ceil(7)),
        center_crop: Some(img),
    };
    let mut out = Vec::new();
    match section.layout {
        ShiftLayout::Folder => {
            let subset = ClassSubset::from_folder(&section.dir, index)?;
            let data = load_image_folder(&section.dir, index, &opts)?;
            let mask = (subset.indices().len() < index.len()).then_some(subset);
            out.push((section.name.clone(), data, mask));
        }
        ShiftLayout::ImagenetC => {
            for c in &section.corruptions {
                for &sev in &section.severities {
                    let data = load_imagenet_c(&section.dir, c, sev, index, &opts)?;
                    out.push((format!("{}/{c}/{sev}", section.name), data, None));
                }
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parallel::Peer;

    #[test]
    fn shards_are_contiguous_and_cover_the_split() {
        for (n, world) in [(7, 3), (2, 4), (0, 2), (10, 1)] {
            let ranges: Vec<_> = (0..world)
                .map(|rank| shard_range(n, Peer { rank, world }))
                .collect();
            assert_eq!(ranges[0].start, 0);
            assert_eq!(ranges[world - 1].end, n);
            for w in ranges.windows(2) {
                assert_eq!(w[0].end, w[1].start);
            }
            assert!(ranges.iter().all(|r| r.len() <= n.div_ceil(world)));
        }
    }
}
