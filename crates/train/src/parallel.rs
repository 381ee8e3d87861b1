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

use burn::module::{Module, ModuleMapper, ModuleVisitor, Param, ParamId};
use burn::optim::GradientsParams;
use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;

use crate::TrainError;

/// This peer's place in the run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Peer {
    /// Global rank.
    pub rank: usize,
    /// Peers in all.
    pub world: usize,
}

#[cfg(not(feature = "collective"))]
fn unsupported() -> TrainError {
    TrainError::Collective("this build has no `collective` feature".into())
}

#[cfg(feature = "collective")]
fn cerr(e: burn::collective::CollectiveError) -> TrainError {
    TrainError::Collective(format!("{e:?}"))
}

impl Peer {
    /// A run on one device.
    pub(crate) const SOLO: Peer = Peer { rank: 0, world: 1 };

    /// Rank 0 writes files and shows progress.
    pub(crate) fn leader(&self) -> bool {
        self.rank == 0
    }

    /// Element-wise sums of `values` over all peers (f32 on the wire: exact for counts below
    /// 2^24).
    pub(crate) fn sum<B: Backend>(
        &self,
        values: &[f64],
        device: &B::Device,
    ) -> Result<Vec<f64>, TrainError> {
        if self.world == 1 {
            return Ok(values.to_vec());
        }
        let flat = self.all_reduce_sum::<B>(vec![scalars::<B>(values, device)])?;
        Ok(flat.into_data().iter::<f32>().map(f64::from).collect())
    }

    /// The mean of every peer's gradients of `module`'s parameters, and the element-wise sums of
    /// `values` over the peers, in ONE all-reduce: the gradients go flattened into one vector.
    ///
    /// One collective call per step instead of one per parameter: a multi-node run pays one
    /// network round trip, and no tensor is too small for burn's ring (which needs a dimension
    /// of at least the node count). A parameter whose gradient is missing on one peer but not
    /// another makes the lengths differ, which burn refuses (shape mismatch), never a silent
    /// misalignment.
    pub(crate) fn mean_grads_and_sum<B: AutodiffBackend, M: Module<B>>(
        &self,
        module: &M,
        mut grads: GradientsParams,
        values: &[f64],
        device: &burn::prelude::Device<B::InnerBackend>,
    ) -> Result<(GradientsParams, Vec<f64>), TrainError> {
        if self.world == 1 {
            return Ok((grads, values.to_vec()));
        }
        let mut take = TakeGrads::<B> {
            grads: &mut grads,
            taken: Vec::new(),
            parts: Vec::new(),
        };
        module.visit(&mut take);
        let (taken, mut parts) = (take.taken, take.parts);
        let grad_len: usize = parts.iter().map(|t| t.dims()[0]).sum();
        parts.push(scalars::<B::InnerBackend>(values, device));
        let flat = self.all_reduce_sum::<B::InnerBackend>(parts)?;
        let sums = flat
            .clone()
            .slice(grad_len..)
            .into_data()
            .iter::<f32>()
            .map(f64::from)
            .collect();
        let mut put = PutGrads::<B> {
            grads: &mut grads,
            taken: &taken,
            flat: flat.slice(0..grad_len).div_scalar(self.world as f64),
            offset: 0,
            next: 0,
        };
        module.visit(&mut put);
        Ok((grads, sums))
    }

    /// Every peer gets rank 0's parameters (values only; ids and `require_grad` are kept).
    /// Rank 0 sends its values and the others zeros into one flattened sum (burn 0.21 has no
    /// multi-node broadcast), which is exact.
    pub(crate) fn broadcast_module<B: AutodiffBackend, M: Module<B>>(
        &self,
        module: M,
    ) -> Result<M, TrainError> {
        if self.world == 1 {
            return Ok(module);
        }
        let mut gather = GatherParams::<B> {
            leader: self.leader(),
            parts: Vec::new(),
        };
        module.visit(&mut gather);
        let flat = self.all_reduce_sum::<B::InnerBackend>(gather.parts)?;
        Ok(module.map(&mut ScatterParams::<B> { flat, offset: 0 }))
    }

    /// The element-wise sum over all peers of the concatenation of `parts`.
    ///
    /// The vector is zero-padded to at least `world` elements: burn's global ring all-reduce
    /// splits it into one slice per node.
    fn all_reduce_sum<B: Backend>(
        &self,
        parts: Vec<Tensor<B, 1>>,
    ) -> Result<Tensor<B, 1>, TrainError> {
        #[cfg(feature = "collective")]
        {
            use burn::collective::{PeerId, ReduceOperation, all_reduce};
            use burn::tensor::TensorPrimitive;
            let Some(first) = parts.first() else {
                return Ok(Tensor::empty([0], &Default::default()));
            };
            let device = first.device();
            let len: usize = parts.iter().map(|t| t.dims()[0]).sum();
            let mut parts = parts;
            if len < self.world {
                parts.push(Tensor::zeros([self.world - len], &device));
            }
            let out = all_reduce::<B>(
                PeerId::from(self.rank),
                Tensor::cat(parts, 0).into_primitive().tensor(),
                ReduceOperation::Sum,
            )
            .map_err(cerr)?;
            Ok(Tensor::<B, 1>::from_primitive(TensorPrimitive::Float(out)).slice(0..len))
        }
        #[cfg(not(feature = "collective"))]
        {
            let _ = parts;
            Err(unsupported())
        }
    }
}

/// `values` as an f32 vector on `device`.
fn scalars<B: Backend>(values: &[f64], device: &B::Device) -> Tensor<B, 1> {
    let v: Vec<f32> = values.iter().map(|x| *x as f32).collect();
    Tensor::from_data(TensorData::new(v, [values.len()]), device)
}

/// The next `shape`-sized piece of `flat` from `offset` (advanced past it), in that shape.
fn next_slice<B: Backend, const D: usize>(
    flat: &Tensor<B, 1>,
    offset: &mut usize,
    shape: burn::tensor::Shape,
) -> Tensor<B, D> {
    let n = shape.num_elements();
    let piece = flat.clone().slice(*offset..*offset + n).reshape(shape);
    *offset += n;
    piece
}

/// Takes the gradients out, flattened, in the module's parameter order.
struct TakeGrads<'a, B: AutodiffBackend> {
    grads: &'a mut GradientsParams,
    taken: Vec<ParamId>,
    parts: Vec<Tensor<B::InnerBackend, 1>>,
}

impl<B: AutodiffBackend> ModuleVisitor<B> for TakeGrads<'_, B> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        if let Some(g) = self.grads.remove::<B::InnerBackend, D>(param.id) {
            self.taken.push(param.id);
            self.parts.push(g.flatten::<1>(0, D - 1));
        }
    }
}

/// Puts the reduced gradients back, for the parameters [`TakeGrads`] took, in its order.
struct PutGrads<'a, B: AutodiffBackend> {
    grads: &'a mut GradientsParams,
    taken: &'a [ParamId],
    flat: Tensor<B::InnerBackend, 1>,
    offset: usize,
    next: usize,
}

impl<B: AutodiffBackend> ModuleVisitor<B> for PutGrads<'_, B> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        if self.taken.get(self.next) != Some(&param.id) {
            return;
        }
        self.next += 1;
        let g = next_slice(&self.flat, &mut self.offset, param.shape());
        self.grads.register::<B::InnerBackend, D>(param.id, g);
    }
}

/// Rank 0's parameter values (zeros on the other peers), flattened in the module's order.
struct GatherParams<B: AutodiffBackend> {
    leader: bool,
    parts: Vec<Tensor<B::InnerBackend, 1>>,
}

impl<B: AutodiffBackend> ModuleVisitor<B> for GatherParams<B> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        let v = param.val().inner().flatten::<1>(0, D - 1);
        self.parts
            .push(if self.leader { v } else { v.zeros_like() });
    }
}

/// Gives every parameter its slice of the summed vector, in [`GatherParams`]' order.
struct ScatterParams<B: AutodiffBackend> {
    flat: Tensor<B::InnerBackend, 1>,
    offset: usize,
}

impl<B: AutodiffBackend> ModuleMapper<B> for ScatterParams<B> {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<B, D>>) -> Param<Tensor<B, D>> {
        param.map(|t| {
            let rg = t.is_require_grad();
            let v = next_slice(&self.flat, &mut self.offset, t.shape());
            Tensor::from_inner(v).set_require_grad(rg)
        })
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
    crate::run::check_setup(config, splits, topology)?;
    if topology.world() == 1 {
        return crate::run::train::<B>(config, splits, options, &devices[0]);
    }
    if topology.nodes > 1 {
        multi_node_allowed(std::env::var_os(MULTI_NODE_ENV).as_deref())?;
    }
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
                    let out = crate::run::train_peer::<B>(
                        config, splits, options, device, topology, peer,
                    );
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
    let mut first = None;
    for r in results {
        let summary = r?;
        first.get_or_insert(summary);
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
