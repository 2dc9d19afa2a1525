"""The α/β sweep behind style-fig2's scoring ratio (``EVALUATION_BETA`` in benchmarks/tasks/style.py).

Gatys et al.'s α/β balances content against style in THEIR network (VGG-19): 1e-3 for Fig. 2 B–D. Another network
needs its own. This optimises chosen pairs of the task from white noise by L-BFGS in the task's evaluation network
(the suite's StyleVGG) at several ratios (α = 1), as the entries do, and writes for each image its content and style
losses in that network and its score at the task's ratio, beside the photograph's own score (the photograph returned
unchanged: the answer with no style in it), with one picture: photograph | painting | one image per ratio, a row per
pair. Look at the picture: the numbers say which images score well, the picture says which look like Fig. 2.

Run:  python -m benchmarks.tools.style_ratios    (pairs 1 and 4, ratios 1e-3 … 1e-6, 500 iterations:
      ~1 min per pair and ratio on one core; writes leaderboards/probes/style-ratios/ratios.json and .png)
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from benchmarks.core import paths
from benchmarks.core.results import write_atomic
from benchmarks.tasks.style import EVAL_NET, EVALUATION_BETA, StyleFig2Data, save_rows, scored_pairs
from lightning_modules.gatys import style_transfer_losses, white_noise

OUT_DIR = paths.REPO_ROOT / "leaderboards" / "probes" / "style-ratios"


def optimise(net, content, target, beta: float, iterations: int, seed: int, index: int) -> torch.Tensor:
    """Pair ``index``'s image from the entries' white noise, ``iterations`` L-BFGS iterations at α = 1 and ``beta``
    (NeuralStyle's settings: history 100, strong Wolfe, no early stop), unclipped: the task reads it clipped."""
    image = torch.nn.Parameter(white_noise(tuple(content.shape[1:]), seed, index))
    optimizer = torch.optim.LBFGS([image], lr=1.0, max_iter=iterations, history_size=100, tolerance_grad=0.0,
                                  tolerance_change=0.0, line_search_fn="strong_wolfe")  # fmt: skip

    def closure():
        optimizer.zero_grad()
        loss = style_transfer_losses(net, image[None], *target, beta=beta)["total"]
        loss.backward()
        return loss

    optimizer.step(closure)
    return image.detach()


def sweep(datamodule, pairs: list[int], ratios: list[float], iterations: int, seed: int = 0) -> tuple[dict, list]:
    """({pair: {"photograph": …, "<ratio>": {content, style, score, seconds, content_unclipped}}}, picture rows): the
    losses and score of the image clipped to [0, 1], as the task reads it, and the content loss of the image as the
    optimiser left it."""
    datamodule.setup()
    unknown = sorted(set(pairs) - set(range(len(datamodule.pairs))))
    if unknown:
        last = len(datamodule.pairs) - 1
        raise SystemExit(f"style_ratios: error: no pair {unknown[0]}: style-fig2 has pairs 0-{last}")
    net = datamodule.evaluation_network()
    found, rows = {}, []
    for index, content, target, reference in scored_pairs(net, datamodule):  # the task's targets and reference noise
        if index not in pairs:
            continue
        style = datamodule.pairs[index][1]

        def measured(image, seconds=None, target=target, reference=reference):
            losses = style_transfer_losses(net, image[None], *target, beta=EVALUATION_BETA)
            out = {"content": float(losses["content"]), "style": float(losses["style"]),
                   "score": float(losses["total"]) / float(reference)}  # fmt: skip
            return out | ({"seconds": round(seconds, 1)} if seconds is not None else {})

        name = " + ".join(datamodule.names[index])
        found[name] = {"photograph": measured(content)}
        row = [content, style]
        for ratio in ratios:
            start = time.perf_counter()
            image = optimise(net, content, target, 1.0 / ratio, iterations, seed, index)
            seconds = time.perf_counter() - start
            unclipped = float(style_transfer_losses(net, image[None], *target, beta=1.0 / ratio)["content"])
            image = image.clamp(0, 1)  # as the task reads the entries' images
            found[name][f"{ratio:g}"] = measured(image, seconds) | {"content_unclipped": unclipped}
            print(f"{name} α/β {ratio:g}: {found[name][f'{ratio:g}']}", flush=True)
            row.append(image)
        rows.append(row)
    return found, rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pairs", default="1,4",
                        help="the task's pair indices, drawn in its order (0-2 Tübingen; 3-5 Imagenette)")  # fmt: skip
    parser.add_argument("--ratios", default="1e-3,1e-4,1e-5,1e-6", help="α/β values, α = 1")
    parser.add_argument("--iterations", type=int, default=500, help="L-BFGS iterations per image (the entries': 500)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--data-dir", default=None, help="default: MILESTONES_DATA or the project's data folder")
    parser.add_argument("--out-dir", type=Path, default=OUT_DIR)
    parser.add_argument("--example-data", action="store_true", help="the task's generated example (a smoke test)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.example_data:
        datamodule = StyleFig2Data.example(args.out_dir / "example", batch_size=1)
    else:
        datamodule = StyleFig2Data(paths.data_dir(args.data_dir), batch_size=1, download=False)
    pairs, ratios = [int(p) for p in args.pairs.split(",")], [float(r) for r in args.ratios.split(",")]
    found, rows = sweep(datamodule, pairs, ratios, args.iterations)
    network = "untrained (the example's)" if args.example_data else f"{EVAL_NET[0]} sha256:{EVAL_NET[1]}"
    record = {"what": "style-fig2 pairs optimised from white noise (seed 0) in the evaluation network at each α/β; "
              f"content and style losses there, score = total at the task's α/β {1 / EVALUATION_BETA:g} relative to "
              "the reference noise's (the task's measure), of the image clipped to [0, 1] as the task reads it; "
              "content_unclipped: as the optimiser left it; 'photograph' = the photograph returned unchanged",
              "iterations": args.iterations, "threads": args.threads, "evaluation_network": network,
              "pairs": found}  # fmt: skip
    write_atomic(json.dumps(record, indent=1, ensure_ascii=False) + "\n", args.out_dir / "ratios.json", overwrite=True)
    print(f"wrote {args.out_dir / 'ratios.json'} and {save_rows(rows, args.out_dir / 'ratios.png', height=160)}")


if __name__ == "__main__":
    main()
