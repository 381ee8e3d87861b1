//! The soak's SIGTERM rounds (a training must stop with exit 143 and a complete checkpoint)
//! and concurrent-writer rounds (two processes started on one output: exactly one may run).

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use super::{Soak, check_checkpoint, complete, eval_args, json, leftover_temporaries};

/// How a process that was sent SIGTERM ended.
#[derive(Debug, PartialEq, Eq)]
enum Ended {
    /// Exit 143: it stopped as asked.
    Stopped,
    /// Exit 0: it finished before the signal had an effect.
    Finished,
    /// Killed by the signal itself: it arrived before the handlers were installed.
    Early,
}

/// Starts `args`, sends SIGTERM after `after` (unless it ended by then) and waits for it.
fn term_after(bin: &Path, args: &[String], after: Duration) -> Result<Ended> {
    let mut child = Command::new(bin)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("spawning {}", bin.display()))?;
    let t = Instant::now();
    while t.elapsed() < after && child.try_wait()?.is_none() {
        std::thread::sleep(Duration::from_millis(5));
    }
    if child.try_wait()?.is_none() {
        sigterm(child.id())?;
    }
    let out = child.wait_with_output()?;
    match out.status.code() {
        Some(143) => Ok(Ended::Stopped),
        Some(0) => Ok(Ended::Finished),
        None => Ok(Ended::Early),
        Some(c) => bail!(
            "`advsoup {}` exited {c} after SIGTERM: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ),
    }
}

fn sigterm(pid: u32) -> Result<()> {
    let status = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .context("running kill(1)")?;
    if !status.success() {
        bail!("kill -TERM {pid} failed ({status})");
    }
    Ok(())
}

/// SIGTERMs of a training run at random moments: each must end with exit 143, a complete
/// checkpoint and no temporary file (else it counts as a lost checkpoint), then `--resume` continues; the end result
/// must equal the uninterrupted run. Returns the lost checkpoints.
pub(super) fn soak_terms(soak: &mut Soak, terms: usize, base: Duration) -> Result<usize> {
    let c = soak.dir.join("c");
    let run_c = c.join("soak");
    let args = soak.train(&c, true);
    let slice = base.as_secs_f64() * 1.6 / terms.max(1) as f64;
    let (mut stopped, mut early, mut lost, mut steps) = (0, 0, 0, Vec::new());
    for _ in 0..terms {
        let at = Duration::from_secs_f64(soak.rng.next_f64() * slice);
        match term_after(&soak.bin, &args, at)? {
            Ended::Stopped => {
                stopped += 1;
                let step = check_checkpoint(&run_c)?;
                // A stop must leave a complete checkpoint and nothing half-written.
                lost += usize::from(step.is_none() || !leftover_temporaries(&run_c).is_empty());
                steps.extend(step);
            }
            Ended::Early => early += 1,
            Ended::Finished => {}
        }
    }
    complete(&soak.bin, &args)?;
    soak.count((stopped + early, terms));
    let before = soak.mismatches.len();
    soak.compare_runs("SIGTERM", &soak.dir.join("a/soak"), &run_c)?;
    println!(
        "training: {terms} SIGTERMs issued, {stopped} stopped it with exit 143 and a checkpoint \
         (steps {steps:?}), {early} landed before the handlers, lost checkpoints {lost}, \
         mismatches {}",
        soak.mismatches.len() - before
    );
    Ok(lost)
}

/// Which command the concurrent-writer rounds run.
#[derive(clap::ValueEnum, Clone, Copy, Debug)]
pub enum WriterJob {
    /// Two `advsoup train --resume` on one run.
    Train,
    /// Two `advsoup eval --out` into one file (a stand-in with the cli's own lock).
    Eval,
}

/// One concurrent-writer round: starts `args` twice at once; exactly one must be refused with
/// the lock line (exit 2). The other is sent SIGTERM after `stop_after` (when given) or run to
/// the end. Returns whether the running one finished.
fn writers_round(bin: &Path, args: &[String], stop_after: Option<Duration>) -> Result<bool> {
    let spawn = || {
        Command::new(bin)
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("spawning {}", bin.display()))
    };
    let mut pair = [spawn()?, spawn()?];
    // The refused one exits first, at once.
    let t = Instant::now();
    let refused = loop {
        if let Some(i) = (0..2).find(|&i| matches!(pair[i].try_wait(), Ok(Some(_)))) {
            break i;
        }
        if t.elapsed() > Duration::from_secs(600) {
            bail!("neither concurrent `advsoup {}` ended", args.join(" "));
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let [first, second] = pair;
    let (loser, mut winner) = if refused == 0 {
        (first, second)
    } else {
        (second, first)
    };
    let out = loser.wait_with_output()?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    if out.status.code() != Some(2) || !stderr.contains("in use by process") {
        let _ = winner.kill();
        bail!(
            "a second `advsoup {}` was not refused with the lock line (exit {:?}): {}",
            args.join(" "),
            out.status.code(),
            stderr.trim()
        );
    }
    if let Some(after) = stop_after {
        while t.elapsed() < after && winner.try_wait()?.is_none() {
            std::thread::sleep(Duration::from_millis(5));
        }
        if winner.try_wait()?.is_none() {
            sigterm(winner.id())?;
        }
    }
    let out = winner.wait_with_output()?;
    match out.status.code() {
        Some(0) => Ok(true),
        // 143: stopped with a checkpoint; no code: the signal came before its handlers.
        Some(143) | None if stop_after.is_some() => Ok(false),
        c => bail!(
            "the running `advsoup {}` ended with {c:?}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ),
    }
}

/// `writers` rounds of [`writers_round`] on `args`, each but the last stopped by SIGTERM at a
/// moment drawn in [0, slice]; then the job runs to its end if the last round did not finish it.
fn writer_rounds(soak: &mut Soak, args: &[String], writers: usize, slice: Duration) -> Result<()> {
    let mut finished = false;
    for k in 0..writers {
        let stop = (k + 1 < writers).then(|| slice.mul_f64(soak.rng.next_f64()));
        finished = writers_round(&soak.bin, args, stop)?;
    }
    if !finished {
        complete(&soak.bin, args)?;
    }
    Ok(())
}

/// `writers` rounds of two concurrent `advsoup train --resume` on one run, each but the last
/// stopped by SIGTERM at a random moment; the run must end equal to the uninterrupted one.
pub(super) fn soak_train_writers(soak: &mut Soak, writers: usize, base: Duration) -> Result<()> {
    if writers == 0 {
        return Ok(());
    }
    let d = soak.dir.join("d");
    let args = soak.train(&d, true);
    writer_rounds(soak, &args, writers, base.mul_f64(1.6 / writers as f64))?;
    let before = soak.mismatches.len();
    soak.compare_runs("writers", &soak.dir.join("a/soak"), &d.join("soak"))?;
    println!(
        "training: {writers} rounds of two concurrent writers, one refused each time, \
         mismatches {}",
        soak.mismatches.len() - before
    );
    Ok(())
}

/// The same rounds on `advsoup eval --out` into one file (the stand-in while `train` has no
/// lock): compared with an uninterrupted evaluation.
pub(super) fn soak_eval_writers(soak: &mut Soak, writers: usize, ra: &Path) -> Result<()> {
    if writers == 0 {
        return Ok(());
    }
    let whole = soak.dir.join("eval-w-a.json");
    let t = complete(&soak.bin, &eval_args(ra, &whole))?;
    let args = eval_args(ra, &soak.dir.join("eval-w-b.json"));
    writer_rounds(soak, &args, writers, t)?;
    let equal = json(&whole)? == json(&soak.dir.join("eval-w-b.json"))?;
    if !equal {
        soak.mismatches.push("writers: eval report".into());
    }
    println!(
        "eval: {writers} rounds of two concurrent writers, one refused each time, result \
         equal: {equal}"
    );
    Ok(())
}
