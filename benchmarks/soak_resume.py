"""Soak test of preemption and resume: kill glif-train again and again, resume, compare.

Runs the default config (digits + tiny_convnet, shortened and with a checkpoint every few
steps) through ``python -m glif_jax.train``, once uninterrupted and once interrupted ``--kills``
times: each launch runs with ``--resume=auto`` and is killed at a random moment, in turn

  - SIGKILL at a random time after training started,
  - SIGTERM at a random time (glif-train saves a checkpoint and exits 143),
  - SIGKILL while a checkpoint is being written (a temporary checkpoint directory exists),

until the run finishes. A kill counts as landed during a write only when, after the process
died, a temporary checkpoint directory it started is on disk. Every relaunch must resume
(never fail) and log that it resumed from a step at least the newest checkpoint on disk
before it started (a silent restart from scratch would reach the same final state), and the
final checkpoint (params, batch statistics, optimizer state, step, RNG key) must be
bit-identical to the uninterrupted run's. When a launch finishes the run before its kill
comes, that run is checked and a new one started, so every kill is covered by a comparison.
Prints one line per kill and a summary; exits 1 on a mismatch, on a relaunch that did not
resume from the newest checkpoint, or when fewer than ``--write-kills`` kills (default: one in
three, the kills of the third kind) landed during a write.

    python benchmarks/soak_resume.py --kills 20
"""

from __future__ import annotations

import argparse
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import jax
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from glif_jax.checkpoint import Checkpointer  # noqa: E402

SHORT_RUN = ["--config.num_epochs=3", "--config.batch_size=16", "--config.steps_per_epoch=60",
             "--config.eval_steps=1", "--config.log_every_steps=1", "--config.checkpoint.every_steps=7",
             "--config.checkpoint.keep=2"]
KILL_KINDS = ("SIGKILL at a random time", "SIGTERM at a random time", "SIGKILL during a checkpoint write")
RESUMED = re.compile(r"resumed from step (\d+)")


def launch(workdir: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "glif_jax.train", "--config", str(REPO / "configs" / "default.py"),
         "--workdir", str(workdir), "--resume=auto", *SHORT_RUN],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


def wait_for_training(process: subprocess.Popen, log: list[str]) -> bool:
    """Reads stderr until the first logged train step; False when the process ended first.
    A thread keeps draining stderr afterwards so the process never blocks on a full pipe."""
    started = False
    for line in process.stderr:
        log.append(line)
        if " INFO glif_jax.train.train: step " in line:
            started = True
            break
    threading.Thread(target=lambda: log.extend(process.stderr), daemon=True).start()
    return started


def temporary_checkpoints(checkpoints: Path) -> set[tuple[str, int, int]]:
    """The temporary directories of checkpoints being written (or left by a kill) as (name,
    inode, change time): a step written again after a resume reuses the name of its leftover."""
    found = set()
    for path in checkpoints.iterdir() if checkpoints.is_dir() else ():
        try:
            if "tmp" in path.name:
                status = path.stat()
                found.add((path.name, status.st_ino, status.st_ctime_ns))
        except FileNotFoundError:   # finished (renamed) or removed meanwhile
            pass
    return found


def resumed_from(log: list[str]) -> int | None:
    """The step a launch logged that it resumed from; None when it logged no resume."""
    found = [int(match.group(1)) for line in log for match in [RESUMED.search(line)] if match]
    return found[-1] if found else None


def kill_once(workdir: Path, kind: str, rng: random.Random, max_delay: float) -> tuple[str, int | None, int | None]:
    """One launch killed as ``kind``; returns (where the kill landed, exit status, the step it
    resumed from). "during a write" is checked on disk once the process is dead: a temporary
    checkpoint directory that was not there before the launch is left behind."""
    checkpoints = workdir / "checkpoints"
    before = temporary_checkpoints(checkpoints)   # a previous kill's leftovers, removed by the launch
    process = launch(workdir)
    log: list[str] = []
    if not wait_for_training(process, log):
        process.wait()
        return "ended before training started", process.returncode, resumed_from(log)
    if kind == KILL_KINDS[2]:
        deadline = time.monotonic() + max_delay
        while time.monotonic() < deadline and process.poll() is None:
            if temporary_checkpoints(checkpoints) - before:
                break
            time.sleep(0.0005)
        process.send_signal(signal.SIGKILL)
    else:
        time.sleep(rng.uniform(0.0, max_delay))
        process.send_signal(signal.SIGKILL if kind == KILL_KINDS[0] else signal.SIGTERM)
    process.wait()
    if process.returncode not in (-signal.SIGKILL, 128 + signal.SIGTERM, 0):
        print("".join(log[-30:]), file=sys.stderr)
        raise SystemExit(f"launch failed with exit status {process.returncode} (a resume must never fail)")
    landed = "during a write" if temporary_checkpoints(checkpoints) - before else "no write left behind"
    return landed, process.returncode, resumed_from(log)


def steps_on_disk(workdir: Path) -> list[int]:
    if not (workdir / "checkpoints").is_dir():
        return []
    with Checkpointer(workdir / "checkpoints", read_only=True) as checkpointer:
        return checkpointer.all_steps()


def final_state(workdir: Path):
    with Checkpointer(workdir / "checkpoints", read_only=True) as checkpointer:
        state, _ = checkpointer.restore()
    return state


def compare(expected, actual) -> list[str]:
    """Paths of the leaves that differ (``["<structure>"]`` when the trees differ)."""
    leaves_expected = jax.tree_util.tree_flatten_with_path(expected)[0]
    leaves_actual = jax.tree_util.tree_flatten_with_path(actual)[0]
    if [path for path, _ in leaves_expected] != [path for path, _ in leaves_actual]:
        return ["<structure>"]
    return [jax.tree_util.keystr(path) for (path, want), (_, got) in zip(leaves_expected, leaves_actual)
            if np.asarray(want).shape != np.asarray(got).shape
            or np.asarray(want).tobytes() != np.asarray(got).tobytes()]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kills", type=int, default=20, help="interruptions of the soaked run (default 20)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the kill times")
    parser.add_argument("--max-delay", type=float, default=1.5,
                        help="kill at most this many seconds after training (re)started (default 1.5)")
    parser.add_argument("--write-kills", type=int, default=None,
                        help="how many kills must land during a checkpoint write, as seen on disk "
                             "(default: --kills // 3, the kills of the third kind)")
    parser.add_argument("--keep", action="store_true", help="keep the work directories")
    args = parser.parse_args()
    write_kills = args.kills // len(KILL_KINDS) if args.write_kills is None else args.write_kills
    rng = random.Random(args.seed)
    root = Path(tempfile.mkdtemp(prefix="glif_soak_"))
    try:
        start = time.perf_counter()
        reference = launch(root / "reference")
        _, err = reference.communicate()
        if reference.returncode != 0:
            print(err[-3000:], file=sys.stderr)
            raise SystemExit("the uninterrupted run failed")
        print(f"uninterrupted run: {time.perf_counter() - start:.1f} s")
        expected = final_state(root / "reference")

        soaked = root / "soaked"
        kills, during_writes, exits, completed, mismatches, bad_resumes = 0, 0, {}, 0, [], []

        def check_resume(seen: list[int], step: int | None) -> str:
            """A relaunch over checkpoints must log a resume from the newest one it found (or later)."""
            if not seen:
                return "new run"
            if step is None or step < seen[-1]:
                bad_resumes.append((seen[-1], step))
                return f"DID NOT RESUME from step {seen[-1]} (logged: {step})"
            return f"resumed from {step}"

        def check_finished_run() -> None:
            nonlocal completed
            completed += 1
            differing = compare(expected, final_state(soaked))
            print(f"  soaked run {completed} finished after kill {kills}: "
                  + ("final state BIT-IDENTICAL to the uninterrupted run" if not differing
                     else f"final state DIFFERS in {differing[:5]}"))
            if differing:
                mismatches.append(differing)

        while kills < args.kills:
            kind = KILL_KINDS[kills % len(KILL_KINDS)]
            seen = steps_on_disk(soaked)
            landed, status, step = kill_once(soaked, kind, rng, args.max_delay)
            resume = check_resume(seen, step)
            if status == 0:   # this launch finished the run before the kill came: check it, start over
                print(f"  a launch finished the run ({resume})")
                check_finished_run()
                shutil.rmtree(soaked)
                continue
            kills += 1
            during_writes += landed == "during a write"
            exits[status] = exits.get(status, 0) + 1
            print(f"kill {kills:2d}: {kind:34s} exit {status:4d}  {landed:22s} {resume:24s} "
                  f"checkpoints {steps_on_disk(soaked)}")
        seen = steps_on_disk(soaked)
        finish = launch(soaked)
        _, err = finish.communicate()
        if finish.returncode != 0:
            print(err[-3000:], file=sys.stderr)
            raise SystemExit(f"the final resume failed with exit status {finish.returncode}")
        print(f"  the last launch finished the run ({check_resume(seen, resumed_from(err.splitlines()))})")
        check_finished_run()
        problems = ([f"{len(mismatches)} final states DIFFER"] if mismatches else []) + (
            [f"{len(bad_resumes)} relaunches did not resume from the newest checkpoint"] if bad_resumes else []) + (
            [f"only {during_writes} of the {write_kills} kills asked for landed during a write"]
            if during_writes < write_kills else [])
        print(f"\n{kills} kills ({during_writes} landed during a checkpoint write, {write_kills} asked for; "
              f"exit statuses {exits}) over {completed} soaked runs: "
              + ("every relaunch resumed from the newest checkpoint, every final state bit-identical to the "
                 "uninterrupted run" if not problems else "FAILED: " + "; ".join(problems)))
        print(f"total {time.perf_counter() - start:.0f} s; work directories in {root}" if args.keep else
              f"total {time.perf_counter() - start:.0f} s")
        return 0 if not problems else 1
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
