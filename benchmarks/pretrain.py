"""Pretraining throughput: samples per second and peak memory of MAE training steps.

LESS ViT-Ti and -S with the paper's decoder (width 512, depth 4, 16 heads) and masking
(positions 0.75, bands 0.5), AdamW steps on real windows from the bundled samples:
13-band EuroSAT-MS scenes at 64 px and 204-band Salinas-A windows at 32 px. Each
configuration runs in a fresh process (peak memory as in ``benchmarks/encoders.py``: the
rise of the peak resident set, or of ``torch.cuda.max_memory_allocated`` on a GPU).

Usage:
    python benchmarks/pretrain.py --record docs/benchmarks.md
    python benchmarks/pretrain.py --quick       # one tiny configuration, for the tests
    python benchmarks/pretrain.py --device cuda --record docs/benchmarks.md
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

from encoders import _Peak, device_text, record  # noqa: E402

SOURCES = {
    "EuroSAT-MS 13 bands 64 px": {"path": "samples/eurosat_ms", "card": "eurosat_ms", "size": 64},
    "Salinas-A 204 bands 32 px": {
        "path": "samples/salinas_a/SalinasA_corrected.hdr",
        "card": "salinas_a",
        "size": 32,
    },
}
MODELS = {"LESS ViT-Ti": ("less_vit_tiny", {}), "LESS ViT-S": ("less_vit_small", {})}


def run_child(spec: dict) -> None:
    import torch

    from geofm.data.datamodules import PretrainDataModule
    from geofm.tasks.mae import MAEPretrainTask

    device = torch.device(spec["device"])
    torch.manual_seed(0)
    data = PretrainDataModule(
        [{**spec["source"], "windows": spec["batch"]}], batch_size=spec["batch"], val_windows=0
    )
    data.setup()
    batch = next(iter(data.train_dataloader()))
    batch = {k: v.to(device) if torch.is_tensor(v) else v for k, v in batch.items()}
    task = MAEPretrainTask(
        model=spec["model"], model_kwargs=spec["overrides"], **spec["decoder"]
    ).to(device)
    task.mae.encoder.validate_inputs = False
    optimizer = torch.optim.AdamW(task.parameters(), lr=1e-4)
    peak = _Peak(device)

    def step():
        loss = task(batch).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if device.type == "cuda":
            torch.cuda.synchronize()

    peak.reset()
    step()  # cold: allocates optimizer state
    cold_peak = peak.rise()
    t0 = time.perf_counter()
    for _ in range(spec["steps"]):
        step()
    seconds = (time.perf_counter() - t0) / spec["steps"]
    print(
        json.dumps(
            {
                "samples_per_s": spec["batch"] / seconds,
                "step_s": seconds,
                "peak_mb": cold_peak / 2**20,
            }
        ),
        flush=True,
    )


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--record", type=Path, default=None)
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        run_child(json.loads(args.child))
        return 0
    models, sources = MODELS, SOURCES
    decoder = {"decoder_dim": 512, "decoder_depth": 4, "decoder_heads": 16}
    if args.quick:
        models = {"LESS ViT-Ti depth 1": ("less_vit_tiny", {"depth": 1})}
        sources = {"EuroSAT-MS 13 bands 64 px": SOURCES["EuroSAT-MS 13 bands 64 px"]}
        decoder = {"decoder_dim": 32, "decoder_depth": 1, "decoder_heads": 2}
        args.batch, args.steps = 2, 1
    rows = []
    for source_label, source in sources.items():
        for label, (name, overrides) in models.items():
            spec = dict(
                model=name,
                overrides=overrides,
                source=source,
                batch=args.batch,
                steps=args.steps,
                device=args.device,
                decoder=decoder,
            )
            print(f"{label:12s} {source_label} ...", end=" ", flush=True)
            done = subprocess.run(
                [sys.executable, __file__, "--child", json.dumps(spec)],
                capture_output=True,
                text=True,
            )
            lines = [ln for ln in done.stdout.splitlines() if ln.startswith("{")]
            if done.returncode != 0 or not lines:
                result = {"error": (done.stderr.strip().splitlines() or ["?"])[-1][:120]}
            else:
                result = json.loads(lines[-1])
            rows.append((label, source_label, result))
            print(result, flush=True)
    import torch

    lines = [
        f"### Pretraining steps on {args.device.upper()}: {device_text(args.device)}",
        "",
        f"`python benchmarks/pretrain.py{' --device cuda' if args.device == 'cuda' else ''}`, "
        f"{time.strftime('%Y-%m-%d')}, torch {torch.__version__}, batch {args.batch}, float32, "
        f"decoder {decoder['decoder_dim']} wide and {decoder['decoder_depth']} deep, masking "
        "0.75 / 0.5, AdamW; mean of "
        f"{args.steps} steps after a cold one; peak memory of the cold step (with the "
        "optimizer state).",
        "",
        "| model | data | samples/s | s/step | peak MiB |",
        "|---|---|---|---|---|",
    ]
    for label, source_label, r in rows:
        if "error" in r:
            lines.append(f"| {label} | {source_label} | - | - | - ({r['error']}) |")
        else:
            lines.append(
                f"| {label} | {source_label} | {r['samples_per_s']:.2f} | "
                f"{r['step_s']:.2f} | {r['peak_mb']:,.0f} |"
            )
    text = "\n".join(lines) + "\n"
    print()
    print(text)
    if args.record:
        record(text, args.record, "pretrain")
        print(f"recorded in {args.record}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
