//! The resolved plan of a run: how the global batch is split over devices, machines and
//! gradient-accumulation steps, the schedule, and what one step costs. `advsoup train --dry-run`
//! prints it without touching data; the loop follows it.
//!
//! Sharding: a global batch of `n` samples is cut into `shards = world · accumulation` equal
//! micro-batches; peer `r` takes shards `r · accumulation .. (r + 1) · accumulation`, one per
//! accumulation step. When mixup/CutMix is on, sample `i` is mixed with sample `n − 1 − i` of the
//! global batch, so each shard holds mirrored pairs (positions `a..a+k` and `n−a−k..n−a`) and the
//! batch-level mix is keyed by the global batch: every shard mixes exactly as one device would.

use std::fmt;

use crate::config::{Regime, TrainConfig};
use crate::{TrainError, run::learning_rate};

/// Where the peers of a data-parallel run sit: `devices` per machine on `nodes` machines, one
/// peer (thread) per device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topology {
    /// Devices (peers) on each machine.
    pub devices: usize,
    /// Machines.
    pub nodes: usize,
    /// This machine's rank in `0..nodes`.
    pub node_rank: usize,
    /// The coordinator `host:port` (node 0 runs it) when `nodes > 1`.
    pub coordinator: Option<String>,
    /// This machine's `host:port` for tensor transfers when `nodes > 1` (default: the
    /// coordinator's host, port + 1 + node rank).
    pub node_address: Option<String>,
}

impl Default for Topology {
    fn default() -> Self {
        Self::single()
    }
}

impl Topology {
    /// One device on one machine.
    pub fn single() -> Self {
        Self {
            devices: 1,
            nodes: 1,
            node_rank: 0,
            coordinator: None,
            node_address: None,
        }
    }

    /// `devices` local peers on one machine.
    pub fn local(devices: usize) -> Self {
        Self {
            devices,
            ..Self::single()
        }
    }

    /// Peers in all.
    pub fn world(&self) -> usize {
        self.devices * self.nodes
    }

    /// The global rank of local device `local`.
    pub fn rank(&self, local: usize) -> usize {
        self.node_rank * self.devices + local
    }

    /// Rejects impossible topologies, naming the option.
    pub fn validate(&self) -> Result<(), TrainError> {
        self.validate_counts()?;
        if self.nodes > 1 {
            let bad = |field: &str, message: String| TrainError::Invalid {
                field: field.into(),
                message,
            };
            let c = self.coordinator.as_deref().ok_or_else(|| {
                bad(
                    "--coordinator",
                    "required with --nodes > 1 (host:port of node 0)".into(),
                )
            })?;
            split_host_port(c).map_err(|m| bad("--coordinator", m))?;
            if let Some(a) = &self.node_address {
                split_host_port(a).map_err(|m| bad("--node-address", m))?;
            }
        }
        Ok(())
    }

    /// [`Topology::validate`] without the addresses (enough to plan).
    pub fn validate_counts(&self) -> Result<(), TrainError> {
        let bad = |field: &str, message: String| TrainError::Invalid {
            field: field.into(),
            message,
        };
        if self.devices == 0 {
            return Err(bad("--devices", "expected at least 1 device".into()));
        }
        if self.nodes == 0 {
            return Err(bad("--nodes", "expected at least 1 node".into()));
        }
        if self.node_rank >= self.nodes {
            return Err(bad(
                "--node-rank",
                format!("{} is not below --nodes {}", self.node_rank, self.nodes),
            ));
        }
        Ok(())
    }

    /// This node's `(host, port)` for the tensor data service.
    pub fn node_host_port(&self) -> Result<(String, u16), String> {
        if let Some(a) = &self.node_address {
            return split_host_port(a);
        }
        let (host, port) = split_host_port(self.coordinator.as_deref().unwrap_or("127.0.0.1:0"))?;
        let port = port
            .checked_add(1 + self.node_rank as u16)
            .ok_or_else(|| format!("port {port} + {} overflows", 1 + self.node_rank))?;
        Ok((host, port))
    }
}

/// `host:port` → parts.
pub fn split_host_port(s: &str) -> Result<(String, u16), String> {
    let s = s.strip_prefix("ws://").unwrap_or(s);
    let (host, port) = s
        .rsplit_once(':')
        .ok_or_else(|| format!("`{s}`: expected host:port"))?;
    let port: u16 = port
        .parse()
        .map_err(|_| format!("`{s}`: expected a port number after ':'"))?;
    if host.is_empty() || port == 0 {
        return Err(format!("`{s}`: expected host:port with a nonzero port"));
    }
    Ok((host.to_string(), port))
}

/// The resolved plan.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// Run name.
    pub name: String,
    /// Regime.
    pub regime: Regime,
    /// Model parameters (with the adapter).
    pub params: usize,
    /// Domain-specific parameters per domain.
    pub adapter_params: usize,
    /// Peers in all.
    pub world: usize,
    /// Devices per machine.
    pub devices: usize,
    /// Machines.
    pub nodes: usize,
    /// Samples per optimizer step over all peers (per domain).
    pub global_batch: usize,
    /// Samples per optimizer step on one device.
    pub per_device_batch: usize,
    /// Samples per forward/backward pass on one device (per domain).
    pub micro_batch: usize,
    /// Gradient-accumulation steps per optimizer step.
    pub accumulation: usize,
    /// Whether shards hold mirrored pairs (mixup/CutMix on).
    pub paired: bool,
    /// Training samples (after the held-out slice).
    pub train_samples: usize,
    /// Optimizer steps per epoch (the last incomplete batch is dropped).
    pub steps_per_epoch: usize,
    /// Epochs.
    pub epochs: usize,
    /// Optimizer steps in all.
    pub total_steps: usize,
    /// Linear warmup steps.
    pub warmup_steps: usize,
    /// `(step, lr)` at the start, end of warmup, middle and end.
    pub lr_points: Vec<(usize, f64)>,
    /// PGD steps K of the training attack (0 for nominal training).
    pub attack_steps: usize,
    /// ε and η of the training attack.
    pub attack_eps_step: (f64, f64),
    /// Forward+backward image passes per optimizer step (all peers): attack and update.
    pub passes_per_step: usize,
    /// Of which the attack's.
    pub attack_passes_per_step: usize,
    /// EMA decay (0 = off).
    pub ema_decay: f64,
    /// Compute precision of the step.
    pub precision: advsoup_vit::Precision,
    /// Initial loss scale (f16 only).
    pub loss_scale: f64,
}

impl Plan {
    /// Resolves `config` on `topology` for `train_samples` training samples (after the held-out
    /// slice).
    pub fn new(
        config: &TrainConfig,
        topology: &Topology,
        train_samples: usize,
    ) -> Result<Self, TrainError> {
        topology.validate_counts()?;
        let bad = |field: &str, message: String| TrainError::Invalid {
            field: field.into(),
            message,
        };
        let o = &config.optim;
        let world = topology.world();
        let n = o.batch_size;
        if !n.is_multiple_of(world) {
            return Err(bad(
                "optim.batch_size",
                format!("{n} is not divisible by the {world} devices"),
            ));
        }
        let per_device = n / world;
        let micro = o.micro_batch_size.unwrap_or(per_device).min(per_device);
        if !per_device.is_multiple_of(micro) {
            return Err(bad(
                "optim.micro_batch_size",
                format!(
                    "{micro} does not divide the per-device batch {per_device} (batch_size {n} / {world} devices)"
                ),
            ));
        }
        let accumulation = per_device / micro;
        let augment = config.augment()?;
        let paired = augment.mixup_alpha > 0.0 || augment.cutmix_alpha > 0.0;
        let shards = world * accumulation;
        if paired && shards > 1 && !n.is_multiple_of(2 * shards) {
            return Err(bad(
                "optim.batch_size",
                format!(
                    "with mixup/CutMix each of the {shards} micro-batches holds mirrored pairs: {n} must be a multiple of {}",
                    2 * shards
                ),
            ));
        }
        let steps_per_epoch = train_samples / n;
        if steps_per_epoch == 0 {
            return Err(bad(
                "optim.batch_size",
                format!("{n} exceeds the {train_samples} training samples"),
            ));
        }
        let total_steps = o.epochs * steps_per_epoch;
        let warmup_steps = ((o.warmup_epochs * steps_per_epoch as f64) as usize).min(total_steps);
        let mut points = vec![
            0,
            warmup_steps,
            (warmup_steps + total_steps) / 2,
            total_steps - 1,
        ];
        points.dedup();
        let lr_points = points
            .into_iter()
            .map(|s| (s, learning_rate(config, s, steps_per_epoch)))
            .collect();
        let vit = config.vit()?;
        let adapted = advsoup_adapters::AdaptedVitConfig {
            vit: vit.clone(),
            adapter: config.model.adapter,
        };
        let (attack_steps, domains) = match config.regime {
            Regime::Nominal => (0, 1),
            Regime::Adversarial => (config.attack.train.num_steps, 1),
            Regime::CoTraining => (config.attack.train.num_steps, 2),
        };
        let attack_passes = attack_steps * n;
        Ok(Self {
            name: config.name.clone(),
            regime: config.regime,
            params: adapted.num_params(),
            adapter_params: config.model.adapter.params_per_domain(&vit),
            world,
            devices: topology.devices,
            nodes: topology.nodes,
            global_batch: n,
            per_device_batch: per_device,
            micro_batch: micro,
            accumulation,
            paired,
            train_samples,
            steps_per_epoch,
            epochs: o.epochs,
            total_steps,
            warmup_steps,
            lr_points,
            attack_steps,
            attack_eps_step: (config.attack.train.eps, config.attack.train.step_size),
            passes_per_step: attack_passes + domains * n,
            attack_passes_per_step: attack_passes,
            ema_decay: o.ema_decay,
            precision: config.precision()?,
            loss_scale: o.loss_scale,
        })
    }

    /// Global positions (in `0..global_batch`) of micro-batch `micro` of peer `rank`.
    pub fn shard_positions(&self, rank: usize, micro: usize) -> Vec<usize> {
        shard_positions(
            self.global_batch,
            self.world * self.accumulation,
            rank * self.accumulation + micro,
            self.paired,
        )
    }
}

/// Positions of shard `s` of `shards` in a batch of `n`: contiguous, or (when `paired`) the
/// mirrored pairs `a..a+k` and `n−a−k..n−a` with `k = n / (2·shards)`, so that within the shard
/// item `j` pairs with item `len − 1 − j` exactly as in the whole batch.
pub fn shard_positions(n: usize, shards: usize, s: usize, paired: bool) -> Vec<usize> {
    assert!(
        s < shards && n.is_multiple_of(shards),
        "shard {s} of {shards} for a batch of {n}"
    );
    if shards == 1 {
        return (0..n).collect();
    }
    if !paired {
        let k = n / shards;
        return (s * k..(s + 1) * k).collect();
    }
    assert!(
        n.is_multiple_of(2 * shards),
        "paired shards need n % (2 * shards) == 0"
    );
    let k = n / (2 * shards);
    let a = s * k;
    (a..a + k).chain(n - a - k..n - a).collect()
}

impl fmt::Display for Plan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let per = |x: usize| group(x);
        writeln!(f, "plan for {} ({})", self.name, self.regime.name())?;
        writeln!(
            f,
            "  model: {} parameters, {} domain-specific per domain",
            per(self.params),
            per(self.adapter_params)
        )?;
        if self.world == 1 {
            writeln!(f, "  devices: 1 (no all-reduce)")?;
        } else {
            writeln!(
                f,
                "  devices: {} = {} per node x {} node(s); gradients all-reduced (mean) every step",
                self.world, self.devices, self.nodes
            )?;
        }
        writeln!(
            f,
            "  batch: global {} = {} device(s) x {} per device = {} x micro-batch {} ({} accumulation step{}){}",
            self.global_batch,
            self.world,
            self.per_device_batch,
            self.accumulation,
            self.micro_batch,
            self.accumulation,
            if self.accumulation == 1 { "" } else { "s" },
            if self.regime == Regime::CoTraining {
                format!(
                    "; mixed clean+adversarial forward of {} per micro-batch",
                    2 * self.micro_batch
                )
            } else {
                String::new()
            }
        )?;
        writeln!(
            f,
            "  steps: {} per epoch x {} epochs = {} ({} training samples, last partial batch dropped)",
            per(self.steps_per_epoch),
            self.epochs,
            per(self.total_steps),
            per(self.train_samples)
        )?;
        let lrs: Vec<String> = self
            .lr_points
            .iter()
            .map(|(s, lr)| format!("step {}: {lr:.3e}", per(*s)))
            .collect();
        writeln!(
            f,
            "  lr: linear warmup {} steps, then cosine; {}",
            per(self.warmup_steps),
            lrs.join(", ")
        )?;
        if self.attack_steps > 0 {
            writeln!(
                f,
                "  attack: PGD-{} l_inf eps {:.5} step {:.5}: {} forward+backward image passes per step ({} per device), {:.1}x a nominal step",
                self.attack_steps,
                self.attack_eps_step.0,
                self.attack_eps_step.1,
                per(self.attack_passes_per_step),
                per(self.attack_passes_per_step / self.world),
                self.passes_per_step as f64 / self.global_batch as f64
            )?;
        } else {
            writeln!(f, "  attack: none (nominal training)")?;
        }
        writeln!(
            f,
            "  passes: {} forward+backward image passes per step, {} in all",
            per(self.passes_per_step),
            per(self.passes_per_step * self.total_steps)
        )?;
        if self.ema_decay > 0.0 {
            writeln!(f, "  ema: decay {} every step", self.ema_decay)?;
        }
        match self.precision {
            advsoup_vit::Precision::F32 => writeln!(f, "  precision: f32")?,
            p => writeln!(
                f,
                "  precision: {p} compute, f32 master weights, optimizer, losses and attack sign{}",
                if p.needs_loss_scaling() {
                    format!("; dynamic loss scaling from {}", self.loss_scale)
                } else {
                    String::new()
                }
            )?,
        }
        Ok(())
    }
}

fn group(n: usize) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_cover_the_batch_and_keep_mirrored_pairs() {
        for (n, shards, paired) in [(8, 2, true), (12, 3, true), (12, 4, false), (6, 1, true)] {
            let mut all: Vec<usize> = (0..shards)
                .flat_map(|s| shard_positions(n, shards, s, paired))
                .collect();
            all.sort_unstable();
            assert_eq!(all, (0..n).collect::<Vec<_>>());
            if paired {
                for s in 0..shards {
                    let p = shard_positions(n, shards, s, true);
                    for (j, &pos) in p.iter().enumerate() {
                        assert_eq!(p[p.len() - 1 - j], n - 1 - pos, "{n} {shards} {s}");
                    }
                }
            }
        }
    }

    #[test]
    fn topology_checks_name_the_option() {
        assert!(Topology::local(2).validate().is_ok());
        let t = Topology {
            nodes: 2,
            ..Topology::local(2)
        };
        let e = t.validate().expect_err("needs coordinator").to_string();
        assert!(e.contains("--coordinator"), "{e}");
        let t = Topology {
            coordinator: Some("10.0.0.1:7000".into()),
            node_rank: 1,
            ..t
        };
        assert_eq!(t.rank(1), 3);
        assert_eq!(t.node_host_port(), Ok(("10.0.0.1".into(), 7002)));
        let t = Topology { node_rank: 2, ..t };
        assert!(
            t.validate()
                .unwrap_err()
                .to_string()
                .contains("--node-rank")
        );
        assert!(split_host_port("host").is_err());
        assert_eq!(split_host_port("ws://a:1"), Ok(("a".into(), 1)));
    }
}
