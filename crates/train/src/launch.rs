//! Data-parallel training with burn's `collective` (feature `collective`): one peer (thread) per
//! device, several devices per machine and several machines; gradients are all-reduced (mean)
//! every optimizer step, so a run equals one device with the same global batch (up to the order
//! of float sums). Evaluation is sharded the same way and the counts are summed.
//!
//! Peers start from rank 0's parameters (a sum to which the others add zeros: burn 0.21 has no
//! multi-node broadcast) and check that they resume from the same step.
//!
//! Multi-node status: `--nodes/--node-rank/--coordinator` are wired to burn's global collective
//! (node 0 runs the orchestrator), but stock burn-collective 0.21.0 deadlocks on the second
//! global all-reduce, so multi-node runs are refused unless `ADVSOUP_ALLOW_MULTI_NODE=1` (see
//! [`multi_node_allowed`]). Several devices on one machine work and are tested. Every step makes
//! one all-reduce: the gradients, flattened into one vector, with the step's loss and stop flag.
//! Rank 0 alone writes the run directory; resuming a multi-node run needs that directory
//! on a filesystem every node sees. With dropout or drop-path the peers draw their own masks, so
//! such runs agree in distribution, not bit for bit.
//!
//! This module starts runs: [`train`] on one device, [`train_parallel`] with one peer (thread)
//! per device; [`crate::trainer`] runs each peer's loop and [`crate::parallel`] holds the
//! collective operations.

use burn::tensor::backend::AutodiffBackend;

use crate::TrainError;
use crate::config::{Regime as RegimeName, TrainConfig};
use crate::parallel::Peer;
#[cfg(feature = "collective")]
use crate::parallel::cerr;
use crate::plan::Topology;
use crate::records::RunSummary;
use crate::run_dir::{OpenRun, RunDir};
use crate::step::{Adversarial, CoTraining, Nominal};
use crate::trainer::{RunOptions, fit};
use advsoup_data::Splits;

/// Trains `config` on `splits` on one device and evaluates it; the regime picks the
/// [`TrainStep`](burn::train::TrainStep).
pub fn train<B: AutodiffBackend>(
    config: &TrainConfig,
    splits: &Splits,
    options: &RunOptions,
    device: &B::Device,
) -> Result<RunSummary, TrainError> {
    let topology = Topology::single();
    crate::trainer::check_setup(config, splits, &topology)?;
    let opened = RunDir::new(&options.runs_dir, &config.name).open(config, options.resume, true)?;
    train_peer::<B>(
        config,
        splits,
        options,
        device,
        &topology,
        Peer::SOLO,
        &opened,
    )
}

pub(crate) fn train_peer<B: AutodiffBackend>(
    config: &TrainConfig,
    splits: &Splits,
    options: &RunOptions,
    device: &B::Device,
    topology: &Topology,
    peer: Peer,
    opened: &OpenRun,
) -> Result<RunSummary, TrainError> {
    let (c, s, o, d, t) = (config, splits, options, device, topology);
    match config.regime {
        RegimeName::Nominal => fit::<B, Nominal<B>>(c, s, o, d, t, peer, opened),
        RegimeName::Adversarial => fit::<B, Adversarial<B>>(c, s, o, d, t, peer, opened),
        RegimeName::CoTraining => fit::<B, CoTraining<B>>(c, s, o, d, t, peer, opened),
    }
}

/// Trains on `devices` (this machine's peers, one thread each) of `topology`; returns the summary
/// of this machine's first peer (on node 0: rank 0, which wrote the run directory).
///
/// Node 0 of a multi-node run also runs the coordinator (burn's global collective orchestrator)
/// on the `--coordinator` port; every node opens its tensor data service on its own port.
#[cfg(feature = "collective")]
pub fn train_parallel<B: AutodiffBackend>(
    config: &crate::TrainConfig,
    splits: &advsoup_data::Splits,
    options: &crate::RunOptions,
    devices: &[B::Device],
    topology: &crate::plan::Topology,
) -> Result<crate::RunSummary, TrainError> {
    use burn::collective::{PeerId, finish_collective, register};
    topology.validate()?;
    if devices.len() != topology.devices {
        return Err(TrainError::Invalid {
            field: "--devices".into(),
            message: format!(
                "{} devices given for a topology of {} per node",
                devices.len(),
                topology.devices
            ),
        });
    }
    // Fail before any peer waits on another: the plan and the data are the same everywhere.
    crate::trainer::check_setup(config, splits, topology)?;
    if topology.world() == 1 {
        return train::<B>(config, splits, options, &devices[0]);
    }
    if topology.nodes > 1 {
        multi_node_allowed(std::env::var_os(MULTI_NODE_ENV).as_deref())?;
    }
    // Node 0 writes the run: it locks it and checks a resume before any peer starts.
    let opened = RunDir::new(&options.runs_dir, &config.name).open(
        config,
        options.resume,
        topology.node_rank == 0,
    )?;
    let opened = &opened;
    let collective = collective_config(topology)?;
    if topology.nodes > 1 && topology.node_rank == 0 {
        let coordinator = topology.coordinator.as_deref().unwrap_or_default();
        let (_, port) =
            crate::plan::split_host_port(coordinator).map_err(|m| TrainError::Invalid {
                field: "--coordinator".into(),
                message: m,
            })?;
        start_coordinator(port)?;
    }
    let results: Vec<Result<crate::RunSummary, TrainError>> = std::thread::scope(|s| {
        let handles: Vec<_> = devices
            .iter()
            .enumerate()
            .map(|(local, device)| {
                let peer = Peer {
                    rank: topology.rank(local),
                    world: topology.world(),
                };
                let collective = collective.clone();
                s.spawn(move || -> Result<crate::RunSummary, TrainError> {
                    let id = PeerId::from(peer.rank);
                    register::<B::InnerBackend>(id, device.clone(), collective).map_err(cerr)?;
                    let out =
                        train_peer::<B>(config, splits, options, device, topology, peer, opened);
                    let finished = finish_collective::<B::InnerBackend>(id).map_err(cerr);
                    let out = out?;
                    finished?;
                    Ok(out)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join().unwrap_or_else(|_| {
                    Err(TrainError::Collective(
                        "a peer thread panicked (see above)".into(),
                    ))
                })
            })
            .collect()
    });
    first_summary(results)
}

/// The first peer's summary when every peer finished, else the error that says why: a peer's
/// own error before another peer's [`TrainError::PeerDataFailed`], which only points at it.
#[cfg(feature = "collective")]
fn first_summary(results: Vec<Result<RunSummary, TrainError>>) -> Result<RunSummary, TrainError> {
    let mut first = None;
    let mut pointer = None;
    for r in results {
        match r {
            Ok(summary) => {
                first.get_or_insert(summary);
            }
            Err(e @ TrainError::PeerDataFailed { .. }) => {
                pointer.get_or_insert(e);
            }
            Err(e) => return Err(e),
        }
    }
    if let Some(e) = pointer {
        return Err(e);
    }
    first.ok_or_else(|| TrainError::Collective("no peer ran".into()))
}

/// Set to `1` to train on several nodes with a burn-collective that has the sync fix.
pub const MULTI_NODE_ENV: &str = "ADVSOUP_ALLOW_MULTI_NODE";

/// Multi-node training is refused unless [`MULTI_NODE_ENV`] is `1`.
///
/// burn-collective 0.21.0's global all-reduce deadlocks on its second call, whatever the
/// strategy: `SyncService::sync` (src/global/node/sync.rs) ends a round by clearing a *copy* of
/// its list of synced peers (`lock().to_vec()` then `clear()`), so the shared list only grows
/// and no later round ever sees exactly one entry per node. Measured on 127.0.0.1 with two
/// processes: the first all-reduce completes, the second waits forever. With that one line
/// changed to clear the shared list, two nodes train the one-device model (README, "Several
/// machines"). Refusing up front beats a run that hangs after one step.
pub fn multi_node_allowed(env: Option<&std::ffi::OsStr>) -> Result<(), TrainError> {
    if env.is_some_and(|v| v == "1") {
        tracing::warn!(
            "{MULTI_NODE_ENV}=1: multi-node training assumes a burn-collective whose global \
             all-reduce can run more than once (stock 0.21.0 deadlocks on the second call)"
        );
        return Ok(());
    }
    Err(TrainError::Invalid {
        field: "--nodes".into(),
        message: format!(
            "burn-collective 0.21.0's global all-reduce deadlocks on its second call \
             (SyncService::sync clears a copy of its peer list); use --devices on one machine, \
             or set {MULTI_NODE_ENV}=1 with a patched burn-collective (README, \"Several machines\")"
        ),
    })
}

#[cfg(feature = "collective")]
fn collective_config(
    topology: &crate::plan::Topology,
) -> Result<burn::collective::CollectiveConfig, TrainError> {
    use std::str::FromStr;
    let mut c = burn::collective::CollectiveConfig::default().with_num_devices(topology.devices);
    if topology.nodes > 1 {
        let bad = |field: &str, message: String| TrainError::Invalid {
            field: field.into(),
            message,
        };
        let coordinator = topology.coordinator.as_deref().unwrap_or_default();
        let (host, port) =
            crate::plan::split_host_port(coordinator).map_err(|m| bad("--coordinator", m))?;
        let (node_host, node_port) = topology
            .node_host_port()
            .map_err(|m| bad("--node-address", m))?;
        let addr = |h: &str, p: u16| {
            burn_communication::Address::from_str(&format!("ws://{h}:{p}"))
                .map_err(|m| bad("--coordinator", m))
        };
        c = c
            .with_num_nodes(topology.nodes as u32)
            .with_global_address(addr(&host, port)?)
            .with_node_address(addr(&node_host, node_port)?)
            .with_data_service_port(node_port);
    }
    Ok(c)
}

#[cfg(feature = "collective")]
fn start_coordinator(port: u16) -> Result<(), TrainError> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| TrainError::Collective(format!("coordinator runtime: {e}")))?;
    std::thread::Builder::new()
        .name("advsoup-coordinator".into())
        .spawn(move || runtime.block_on(burn_collective::start_global_orchestrator(port)))
        .map_err(|e| TrainError::Collective(format!("coordinator thread: {e}")))?;
    tracing::info!(port, "coordinator listening");
    Ok(())
}

#[cfg(all(test, feature = "collective"))]
mod tests {
    use super::*;
    use crate::plan::Topology;
    use crate::{RunOptions, TrainConfig};
    use advsoup_data::{ImageDataset, Splits};
    use burn::backend::{Autodiff, Flex};

    type TestBackend = Autodiff<Flex>;

    /// 28x28 grey images whose class c has a bright band at rows 2c+4..2c+6.
    fn data(n: usize, salt: usize) -> ImageDataset {
        let mut pixels = Vec::with_capacity(n * 784);
        for i in 0..n {
            for r in 0..28 {
                for c in 0..28 {
                    let noise = ((i * 31 + r * 7 + c * 13 + salt) % 17) as u8;
                    pixels.push(if r / 2 == i % 10 + 2 {
                        200 + noise
                    } else {
                        noise * 3
                    });
                }
            }
        }
        let labels = (0..n).map(|i| (i % 10) as u32).collect();
        ImageDataset::new([1, 28, 28], pixels, labels, 10).expect("dataset")
    }

    fn config(extra: &[&str]) -> TrainConfig {
        let text = r#"
name = "dp"
seed = 5
regime = "co_training"
[model]
preset = "vit_mini_patch4_28"
adapter = "cls_token"
patch_size = 7
embed_dim = 16
depth = 1
num_heads = 2
mlp_ratio = 2.0
[data]
dataset = "fashion-mnist"
held_out = 12
crop_padding = 1
mixup_alpha = 0.8
cutmix_alpha = 1.0
label_smoothing = 0.1
workers = 1
[attack.train]
eps = 0.1
num_steps = 2
step_size = 0.0625
[attack.eval]
eps = 0.1
num_steps = 2
step_size = 0.05
[optim]
epochs = 2
batch_size = 16
lr = 2e-3
warmup_epochs = 0.5
weight_decay = 0.05
grad_clip = 1.0
ema_decay = 0.9
[eval]
held_out_robust = 6
test_robust = 10
test_attack = "pgd-3"
batch_size = 8
"#;
        let extra: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
        TrainConfig::parse(text, "dp.toml".as_ref(), &extra).expect("config")
    }

    #[test]
    fn several_nodes_need_the_explicit_opt_in() {
        use std::ffi::OsStr;
        for env in [None, Some(OsStr::new("0")), Some(OsStr::new("yes"))] {
            let e = multi_node_allowed(env).expect_err("refused").to_string();
            assert!(e.contains("--nodes") && e.contains(MULTI_NODE_ENV), "{e}");
        }
        multi_node_allowed(Some(OsStr::new("1"))).expect("opted in");
    }

    fn assert_same_curve(a: &crate::RunSummary, b: &crate::RunSummary, what: &str) {
        assert_eq!(a.step_losses.len(), b.step_losses.len(), "{what}");
        for (step, (x, y)) in a.step_losses.iter().zip(&b.step_losses).enumerate() {
            assert!((x - y).abs() <= 1e-5, "{what}: step {step}: {x} vs {y}");
        }
        let (ra, rb) = (a.report.as_ref().expect("a"), b.report.as_ref().expect("b"));
        assert_eq!(ra.clean_mode_clean_acc, rb.clean_mode_clean_acc, "{what}");
        assert_eq!(
            ra.robust_mode_robust_acc, rb.robust_mode_robust_acc,
            "{what}"
        );
        // The config keeps an EMA: its weights are evaluated too, sharded the same way.
        let (ea, eb) = (
            ra.ema.as_ref().expect("EMA evaluated"),
            rb.ema.as_ref().expect("EMA evaluated"),
        );
        assert!(
            ea.ema.is_none() && ra.table().contains("EMA weights"),
            "{what}"
        );
        assert_eq!(ea.clean_mode_clean_acc, eb.clean_mode_clean_acc, "{what}");
        assert_eq!(
            ea.robust_mode_robust_acc, eb.robust_mode_robust_acc,
            "{what}"
        );
        for (ea, eb) in a.epochs.iter().zip(&b.epochs) {
            assert!((ea.loss - eb.loss).abs() <= 1e-5, "{what}");
            assert_eq!(
                (ea.clean_acc, ea.robust_acc),
                (eb.clean_acc, eb.robust_acc),
                "{what}"
            );
        }
    }

    #[test]
    fn two_peers_and_accumulation_follow_the_one_device_loss_curve() {
        let _rng = crate::test_support::serial();
        let splits = Splits::from_train_test(data(76, 0), data(20, 5), 12, 5).expect("splits");
        let tmp = tempfile::tempdir().expect("tempdir");
        let device = Default::default();
        let cfg = config(&[]);
        let one = crate::train::<TestBackend>(
            &cfg,
            &splits,
            &RunOptions::new(tmp.path().join("one")),
            &device,
        )
        .expect("one device");
        assert_eq!(one.step_losses.len(), 8, "64 samples / 16 x 2 epochs");
        assert!(one.step_losses.iter().all(|l| l.is_finite() && *l > 0.0));
        let two = train_parallel::<TestBackend>(
            &cfg,
            &splits,
            &RunOptions::new(tmp.path().join("two")),
            &[device, device],
            &Topology::local(2),
        )
        .expect("two peers");
        assert_same_curve(&one, &two, "2 peers");
        // The same global batch reached by accumulating 2 micro-batches of 8 on one device,
        // and 2 peers accumulating 2 micro-batches of 4.
        let acc = config(&["optim.micro_batch_size=8"]);
        let one_acc = crate::train::<TestBackend>(
            &acc,
            &splits,
            &RunOptions::new(tmp.path().join("acc")),
            &device,
        )
        .expect("accumulation");
        assert_same_curve(&one, &one_acc, "accumulation");
        let acc4 = config(&["optim.micro_batch_size=4"]);
        let two_acc = train_parallel::<TestBackend>(
            &acc4,
            &splits,
            &RunOptions::new(tmp.path().join("two-acc")),
            &[device, device],
            &Topology::local(2),
        )
        .expect("two peers accumulating");
        assert_same_curve(&one, &two_acc, "2 peers x 2 micro-batches");
        // Only rank 0 wrote the run, with the EMA weights.
        for dir in ["two", "two-acc"] {
            let run = tmp.path().join(dir).join("dp");
            assert!(
                run.join("final.json").is_file() && run.join("model_ema.safetensors").is_file()
            );
        }
        // A batch the peers cannot split evenly is refused before anything runs.
        let odd = config(&["optim.batch_size=15"]);
        let e = train_parallel::<TestBackend>(
            &odd,
            &splits,
            &RunOptions::new(tmp.path().join("odd")),
            &[device, device],
            &Topology::local(2),
        )
        .expect_err("15 over 2 devices")
        .to_string();
        assert!(
            e.contains("optim.batch_size") && e.contains("2 devices"),
            "{e}"
        );
    }
}
